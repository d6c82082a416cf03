//! `keychain-auth audit`: the log for people (a table in local time, coloured status) and for
//! scripts (JSON lines, as written), filtered by time, binary, service, status and action, with
//! `--follow` that keeps reading across rotation.
//!
//! Everything a caller controls (paths, ids, services, targets, messages) is printed with its
//! control characters escaped, so a record cannot move the cursor or recolour the terminal.
//!
//! Nothing here writes to the terminal itself: `run` writes records to the writer it is given
//! and notices (skipped lines, records rotated away) to another, which the command line makes
//! standard output and standard error.

use super::Record;
use super::verify::log_files;
use chrono::{DateTime, Local, Utc};
use std::fs::File;
use std::io::{self, BufRead, IsTerminal, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// The filters and output form.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    /// Records at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Records before this instant.
    pub until: Option<DateTime<Utc>>,
    /// Path substring, or hash (prefix) of the caller.
    pub binary: Option<String>,
    /// Exact service.
    pub service: Option<String>,
    /// success, denied or error.
    pub status: Option<String>,
    /// Action (read, write, approve, …) or event (request, policy_change, …).
    pub action: Option<String>,
}

/// The statuses a record can have.
pub(crate) const STATUSES: [&str; 3] = ["success", "denied", "error"];

/// The events and actions keychain-auth writes (`--action` matches either). A value not listed
/// here is still accepted when a record of the log has it (a newer release's event).
pub(crate) const ACTIONS: &[&str] = &[
    // events
    "request",
    "prompt",
    "connection_refused",
    "policy_change",
    "daemon",
    "migrate",
    "audit",
    // request actions
    "read",
    "write",
    "delete",
    "search",
    // policy changes
    "approve",
    "register",
    "upgrade",
    "grant",
    "revoke",
    "unregister",
    "dismiss",
    "accept",
    "expire",
    "pin_backend",
    // the daemon
    "start",
    "stop",
    "backend_fallback",
    "backend_notice",
    // the log's own notes
    "log_appended",
    "log_replaced",
    "log_truncated",
    "state_invalid",
    "state_missing",
];

/// Refuses a `--status` or `--action` that no record can have (a typo would otherwise print
/// nothing and exit 0, as if nothing had happened). An action outside [`ACTIONS`] is looked up
/// in the current log before it is refused.
pub(crate) fn check_filter(filter: &Filter, log: &Path) -> Result<(), String> {
    if let Some(s) = &filter.status
        && !STATUSES.contains(&s.as_str())
    {
        return Err(format!(
            "unknown --status \"{s}\": use one of {}",
            STATUSES.join(", ")
        ));
    }
    if let Some(a) = &filter.action
        && !ACTIONS.contains(&a.as_str())
        && !seen_in_log(log, a)
    {
        return Err(format!(
            "unknown --action \"{a}\": use an action (read, write, delete, search, approve, register, upgrade, grant, revoke, unregister, dismiss, accept, expire, …) or an event (request, prompt, policy_change, connection_refused, daemon, migrate, audit)"
        ));
    }
    Ok(())
}

/// Whether a record of the current log has `value` as its action or event.
fn seen_in_log(log: &Path, value: &str) -> bool {
    let Ok(Some(file)) = crate::fsutil::open_state(log, crate::fsutil::Access::Read) else {
        return false;
    };
    io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .any(|line| {
            // Cheap first: only lines that contain the word are parsed.
            line.contains(value)
                && serde_json::from_str::<Record>(&line)
                    .is_ok_and(|r| r.event == value || r.action.as_deref() == Some(value))
        })
}

impl Filter {
    /// True when `r` passes every filter given.
    pub(crate) fn matches(&self, r: &Record) -> bool {
        if self.since.is_some() || self.until.is_some() {
            let Ok(ts) = DateTime::parse_from_rfc3339(&r.ts) else {
                return false;
            };
            let ts = ts.with_timezone(&Utc);
            if self.since.is_some_and(|s| ts < s) || self.until.is_some_and(|u| ts >= u) {
                return false;
            }
        }
        if let Some(b) = &self.binary {
            let hex = b.strip_prefix("sha256:").unwrap_or(b).to_ascii_lowercase();
            // The executable, or the script a script caller ran (by path or by its hash).
            let by_hash = [&r.hash, &r.script_hash].into_iter().flatten().any(|h| {
                !hex.is_empty()
                    && hex.bytes().all(|c| c.is_ascii_hexdigit())
                    && h.trim_start_matches("sha256:").starts_with(&hex)
            });
            let by_path = [&r.path, &r.script]
                .into_iter()
                .flatten()
                .any(|p| p.contains(b.as_str()));
            if !by_hash && !by_path {
                return false;
            }
        }
        if self
            .service
            .as_ref()
            .is_some_and(|s| r.service.as_ref() != Some(s))
        {
            return false;
        }
        if self
            .status
            .as_ref()
            .is_some_and(|s| r.status.as_ref() != Some(s))
        {
            return false;
        }
        if let Some(a) = &self.action
            && r.action.as_ref() != Some(a)
            && &r.event != a
        {
            return false;
        }
        true
    }
}

/// Parses a time for `--since`/`--until`: RFC 3339 (`2026-05-01T12:00:00Z`), a local date
/// (`2026-05-01`) or date and time (`2026-05-01 12:00`), or an age (`30s`, `15m`, `2h`, `7d`).
pub(crate) fn parse_time(s: &str) -> Result<DateTime<Utc>, BadTime> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let local = |naive: chrono::NaiveDateTime| {
        naive
            .and_local_timezone(Local)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    };
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(n) = chrono::NaiveDateTime::parse_from_str(s, fmt)
            && let Some(t) = local(n)
        {
            return Ok(t);
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0).and_then(local)
    {
        return Ok(t);
    }
    if let Some(unit) = s.chars().last()
        && let Ok(n) = s[..s.len() - unit.len_utf8()].parse::<i64>()
    {
        let secs = match unit {
            's' => Some(n),
            'm' => n.checked_mul(60),
            'h' => n.checked_mul(3600),
            'd' => n.checked_mul(86_400),
            _ => None,
        };
        if let Some(secs) = secs.and_then(chrono::TimeDelta::try_seconds) {
            return Ok(Utc::now() - secs);
        }
    }
    Err(BadTime(s.to_string()))
}

/// A `--since`/`--until` value that is not a time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a time: use RFC 3339 (2026-05-01T12:00:00Z), a local date (2026-05-01), \
     date and time (\"2026-05-01 12:00\"), or an age (30s, 15m, 2h, 7d)"
)]
pub(crate) struct BadTime(pub String);

/// Why printing the log stopped (a closed reader is not an error).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ShowError {
    /// The header could not be written.
    #[error("cannot write")]
    Header,
    /// A log file could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The output could not be written.
    #[error("{0}")]
    Write(io::Error),
    /// Following failed.
    #[error("following {}: {source}", .path.display())]
    Follow {
        /// The log.
        path: std::path::PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// `s` with control characters (and other invisible format characters) escaped, so it prints
/// as one inert line. (A private copy: the shared sanitiser of the dashboard was not available
/// to this module when it was written.)
pub(crate) fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// How records are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// The table, without colour.
    Plain,
    /// The table with a coloured status.
    Colour,
    /// The JSON lines as written.
    Json,
}

impl Format {
    /// Table or JSON; colour only on a terminal and when `NO_COLOR` is unset.
    pub(crate) fn choose(json: bool) -> Format {
        if json {
            Format::Json
        } else if io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        {
            Format::Colour
        } else {
            Format::Plain
        }
    }
}

/// The table header.
pub(crate) const HEADER: &str = "TIME                 SEQ      EVENT           STATUS   BINARY                    SERVICE          TARGETS / DETAIL";

/// The caller in the table: file name and short hash of the script for a script caller (the
/// interpreter is in `--json`), else of the executable.
fn short_binary(r: &Record) -> String {
    let (path, hash) = match &r.script {
        Some(script) => (Some(script), r.script_hash.as_ref()),
        None => (r.path.as_ref(), r.hash.as_ref()),
    };
    let name = path.map(|p| p.rsplit('/').next().unwrap_or(p).to_string());
    let hash = hash.map(|h| {
        h.trim_start_matches("sha256:")
            .chars()
            .take(8)
            .collect::<String>()
    });
    match (name, hash) {
        (Some(n), Some(h)) => format!("{n} {h}"),
        (Some(n), None) => n,
        (None, Some(h)) => h,
        (None, None) => match r.pid {
            Some(p) => format!("pid {p}"),
            None => r.source.clone(),
        },
    }
}

fn fit(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n <= w {
        format!("{s:<w$}")
    } else {
        let mut t: String = s.chars().take(w.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// One table row (no newline).
pub(crate) fn row(r: &Record, colour: bool) -> String {
    let time = DateTime::parse_from_rfc3339(&r.ts)
        .map(|t| {
            t.with_timezone(&Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| sanitize(&r.ts));
    let event = match &r.action {
        Some(a) if r.event == "request" => a.clone(),
        Some(a) => format!("{}:{a}", r.event.replace("policy_change", "policy")),
        None => r.event.clone(),
    };
    let status = r.status.clone().unwrap_or_default();
    let status_cell = fit(&status, 8);
    let status_cell = match (colour, status.as_str()) {
        (true, "success") => format!("\x1b[32m{status_cell}\x1b[0m"),
        (true, "denied") => format!("\x1b[33m{status_cell}\x1b[0m"),
        (true, "error") => format!("\x1b[31m{status_cell}\x1b[0m"),
        _ => status_cell,
    };
    let mut detail = String::new();
    if let Some(c) = r.count {
        detail.push_str(&format!("{c}: {}", r.targets.join(", ")));
        if r.targets.len() < c {
            detail.push_str(", …");
        }
    }
    for (flag, list) in [("read", &r.read), ("write", &r.write)] {
        if !list.is_empty() {
            detail.push_str(&format!(" {flag} {}", list.join(",")));
        }
    }
    if r.search == Some(true) {
        detail.push_str(" search");
    }
    if let Some(reason) = &r.reason {
        detail.push_str(&format!(" [{reason}]"));
    }
    if let Some(m) = &r.message {
        detail.push_str(&format!(" {m}"));
    }
    format!(
        "{} {} {} {} {} {} {}",
        fit(&time, 20),
        fit(&r.seq.map_or("-".into(), |s| s.to_string()), 8),
        fit(&sanitize(&event), 15),
        status_cell,
        fit(&sanitize(&short_binary(r)), 25),
        fit(&sanitize(r.service.as_deref().unwrap_or("")), 16),
        sanitize(detail.trim_start()),
    )
}

fn parse(line: &[u8]) -> Option<Record> {
    serde_json::from_slice(line).ok()
}

fn broken(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// A write error, or `Ok` when the reader went away (`| head`): then printing just stops.
fn unless_broken(e: io::Error) -> Result<(), ShowError> {
    if broken(&e) {
        Ok(())
    } else {
        Err(ShowError::Write(e))
    }
}

/// Prints the matching records of the log at `log` and its rotated files (oldest first), the
/// last `last` of them when given, to `out`; with `follow`, keeps printing new records (across
/// rotation) until the output is closed. Notices go to `notes`.
pub(crate) fn run(
    log: &Path,
    filter: &Filter,
    last: Option<usize>,
    format: Format,
    follow: bool,
    out: &mut dyn Write,
    notes: &mut dyn Write,
) -> Result<(), ShowError> {
    let mut p = Printer {
        filter,
        format,
        out,
        notes,
    };
    if format != Format::Json
        && let Err(e) = writeln!(p.out, "{HEADER}")
    {
        return if broken(&e) {
            Ok(())
        } else {
            Err(ShowError::Header)
        };
    }
    let Some(scan) = p.print_files(log, last)? else {
        return Ok(());
    };
    if scan.skipped > 0 {
        let _ = writeln!(
            p.notes,
            "keychain-auth: {} line(s) that are not audit records were skipped",
            scan.skipped
        );
    }
    if let Err(e) = p.out.flush() {
        return unless_broken(e);
    }
    if follow {
        match p.follow_log(log, scan.last_seq) {
            Err(e) if !broken(&e) => {
                return Err(ShowError::Follow {
                    path: log.to_path_buf(),
                    source: e,
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// What reading the files found besides the records printed.
struct Scan {
    /// Lines that are not records.
    skipped: u64,
    /// The last seq seen, printed or not.
    last_seq: Option<u64>,
}

/// Where and how records are printed.
struct Printer<'a> {
    filter: &'a Filter,
    format: Format,
    out: &'a mut dyn Write,
    notes: &'a mut dyn Write,
}

impl Printer<'_> {
    /// Prints the matching records of every file (the last `last` of them when given);
    /// `None` when the reader went away.
    fn print_files(&mut self, log: &Path, last: Option<usize>) -> Result<Option<Scan>, ShowError> {
        let mut ring: std::collections::VecDeque<(Vec<u8>, Record)> = Default::default();
        let mut scan = Scan {
            skipped: 0,
            last_seq: None,
        };
        for f in &log_files(log).0 {
            let Ok(reader) = super::verify::open_lines(f) else {
                continue;
            };
            for line in reader.split(b'\n') {
                let line = line.map_err(|source| ShowError::Read {
                    path: f.clone(),
                    source,
                })?;
                let Some(r) = parse(&line) else {
                    scan.skipped += u64::from(!line.is_empty());
                    continue;
                };
                scan.last_seq = r.seq.or(scan.last_seq);
                if !self.filter.matches(&r) {
                    continue;
                }
                match last {
                    Some(0) => {}
                    Some(n) => {
                        if ring.len() == n {
                            ring.pop_front();
                        }
                        ring.push_back((line, r));
                    }
                    None => {
                        if let Err(e) = self.emit(&line, &r) {
                            return unless_broken(e).map(|()| None);
                        }
                    }
                }
            }
        }
        for (line, r) in &ring {
            if let Err(e) = self.emit(line, r) {
                return unless_broken(e).map(|()| None);
            }
        }
        Ok(Some(scan))
    }

    /// Prints one line (a record that passed the filter).
    fn emit(&mut self, line: &[u8], r: &Record) -> io::Result<()> {
        match self.format {
            Format::Json => {
                self.out.write_all(line)?;
                self.out.write_all(b"\n")
            }
            Format::Plain | Format::Colour => {
                writeln!(self.out, "{}", row(r, self.format == Format::Colour))
            }
        }
    }

    /// Prints `line` when it is a record after `last_seq` that passes the filter; moves
    /// `last_seq`. With `strict`, a record that skips seq numbers (`last_seq + 2` or later) is
    /// not consumed and `false` is returned: the records between were rotated away under the
    /// reader, which then looks again. Without `strict` the skip is accepted and said in the
    /// notices.
    fn feed(&mut self, line: &[u8], last_seq: &mut Option<u64>, strict: bool) -> io::Result<bool> {
        let Some(r) = parse(line) else {
            return Ok(true);
        };
        if let Some(s) = r.seq {
            if let Some(l) = *last_seq {
                if s <= l {
                    return Ok(true); // already printed (or passed over) before a rotation
                }
                if s > l + 1 {
                    if strict {
                        return Ok(false);
                    }
                    let _ = writeln!(
                        self.notes,
                        "keychain-auth: records {} to {} were not found in the log files (rotated away before they could be read, or removed)",
                        l + 1,
                        s - 1
                    );
                }
            }
            *last_seq = Some(s);
        }
        if self.filter.matches(&r) {
            self.emit(line, &r)?;
        }
        Ok(true)
    }

    /// Feeds every complete line appended to the held file since the last look.
    fn read_held(
        &mut self,
        held: &mut Held,
        buf: &mut [u8],
        last_seq: &mut Option<u64>,
        strict: bool,
    ) -> io::Result<Progress> {
        let mut read = Progress {
            progressed: false,
            gap: false,
        };
        let pos = held.file.stream_position()?;
        if held.file.metadata()?.len() < pos {
            held.file.seek(SeekFrom::Start(0))?; // truncated in place
            held.partial.clear();
        }
        loop {
            let n = held.file.read(buf)?;
            if n == 0 {
                break;
            }
            read.progressed = true;
            held.partial.extend_from_slice(&buf[..n]);
            while let Some(i) = held.partial.iter().position(|&b| b == b'\n') {
                if !self.feed(&held.partial[..i], last_seq, strict)? {
                    read.gap = true;
                    self.out.flush()?;
                    return Ok(read);
                }
                held.partial.drain(..=i);
            }
        }
        self.out.flush()?;
        Ok(read)
    }

    /// Reads, in order, every record after `last_seq` from the rotated files and then the file
    /// now at the path, which is returned (read to its end) to be followed. Rotated files wholly
    /// before `last_seq` are passed over by their first seq. Several rotations may happen while
    /// this reads: a name then holds another file than when listed, which shows as a skip in seq
    /// numbers, and the catch-up starts again from the listing.
    fn catch_up(
        &mut self,
        log: &Path,
        buf: &mut [u8],
        last_seq: &mut Option<u64>,
    ) -> io::Result<Option<Held>> {
        'attempt: for attempt in 0..=CATCH_UP_TRIES {
            let strict = attempt < CATCH_UP_TRIES;
            let (files, _) = log_files(log);
            let rotated: Vec<_> = files.iter().filter(|f| f.as_path() != log).collect();
            for (i, f) in rotated.iter().enumerate() {
                let next_first = rotated.get(i + 1).and_then(|n| super::verify::first_seq(n));
                if let (Some(l), Some(n)) = (*last_seq, next_first)
                    && n <= l + 1
                {
                    continue; // everything in `f` comes before `n`: already seen
                }
                let Ok(reader) = super::verify::open_lines(f) else {
                    continue;
                };
                for line in reader.split(b'\n') {
                    if !self.feed(&line?, last_seq, strict)? {
                        continue 'attempt;
                    }
                }
            }
            let Ok(file) = crate::fsutil::open_regular(log, crate::fsutil::Links::Refuse) else {
                self.out.flush()?;
                return Ok(None);
            };
            let mut held = Held {
                ino: file.metadata()?.ino(),
                file,
                partial: Vec::new(),
            };
            if self.read_held(&mut held, buf, last_seq, strict)?.gap {
                continue;
            }
            return Ok(Some(held));
        }
        Ok(None)
    }

    /// Prints records appended from now on. A rename (rotation by the daemon or logrotate) is
    /// noticed by the path's inode changing; the follower then catches up from the rotated files
    /// (see [`Printer::catch_up`]) and goes on with the new file. Records are printed once each,
    /// in seq order, with none skipped while they still exist in some file. A truncation
    /// restarts at the beginning of the file.
    fn follow_log(&mut self, log: &Path, mut last_seq: Option<u64>) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut cur: Option<Held> = None;
        if let Ok(mut file) = crate::fsutil::open_regular(log, crate::fsutil::Links::Refuse) {
            let ino = file.metadata()?.ino();
            file.seek(SeekFrom::End(0))?;
            cur = Some(Held {
                file,
                ino,
                partial: Vec::new(),
            });
        }
        loop {
            let mut read = Progress {
                progressed: false,
                gap: false,
            };
            if let Some(held) = cur.as_mut() {
                read = self.read_held(held, &mut buf, &mut last_seq, true)?;
            }
            let at_path = std::fs::metadata(log).ok().map(|m| m.ino());
            let held = cur.as_ref().map(|h| h.ino);
            if read.gap || (at_path.is_some() && at_path != held) {
                cur = self.catch_up(log, &mut buf, &mut last_seq)?;
                continue;
            }
            if !read.progressed {
                // A closed reader (`| head`) ends the follow at the next record printed (EPIPE).
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// The file being followed: its inode (to notice a rename) and the unfinished last line.
struct Held {
    file: File,
    ino: u64,
    partial: Vec<u8>,
}

/// What reading the held file to its current end found.
struct Progress {
    /// Some bytes were read.
    progressed: bool,
    /// A record skipped seq numbers (see [`Printer::feed`]); reading stopped before it.
    gap: bool,
}

/// How many times a catch-up is retried when rotation moves files under it before a skip in
/// seq numbers is accepted as records really gone.
const CATCH_UP_TRIES: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(sanitize("a\x1b[31mb\nc"), "a\\u{1b}[31mb\\nc");
        assert_eq!(sanitize("évite\u{202e}x"), "évite\\u{202e}x");
        let mut r = Record::new("request", "daemon");
        r.service = Some("aws\x1b]0;pwned\x07".into());
        r.targets = vec!["k\r".into()];
        r.count = Some(1);
        let line = row(&r, true);
        assert!(!line.contains('\x07') && !line.contains('\r'), "{line:?}");
        assert!(line.contains("aws\\u{1b}]0;pwn"), "{line}");
    }

    #[test]
    fn times_and_filters() {
        assert!(parse_time("2026-05-01T12:00:00Z").is_ok());
        assert!(parse_time("2026-05-01").is_ok());
        assert!(parse_time("2026-05-01 12:30").is_ok());
        let two_h = parse_time("2h").unwrap();
        assert!((Utc::now() - two_h).num_seconds() >= 7199);
        assert!(parse_time("yesterday").is_err());
        let mut r = Record::new("request", "daemon");
        r.ts = "2026-05-01T12:00:00.000Z".into();
        r.path = Some("/usr/bin/mycli".into());
        r.hash = Some(format!("sha256:{}", "ab".repeat(32)));
        r.service = Some("aws".into());
        r.status = Some("denied".into());
        r.action = Some("read".into());
        let f = |g: Filter| g.matches(&r);
        assert!(f(Filter::default()));
        assert!(f(Filter {
            binary: Some("mycli".into()),
            ..Default::default()
        }));
        assert!(f(Filter {
            binary: Some("abab".into()),
            ..Default::default()
        }));
        assert!(!f(Filter {
            binary: Some("other".into()),
            ..Default::default()
        }));
        assert!(!f(Filter {
            status: Some("success".into()),
            ..Default::default()
        }));
        assert!(f(Filter {
            action: Some("request".into()),
            service: Some("aws".into()),
            ..Default::default()
        }));
        assert!(f(Filter {
            since: Some(parse_time("2026-05-01T11:00:00Z").unwrap()),
            until: Some(parse_time("2026-05-01T13:00:00Z").unwrap()),
            ..Default::default()
        }));
        assert!(!f(Filter {
            since: Some(parse_time("2026-05-01T12:00:01Z").unwrap()),
            ..Default::default()
        }));
    }

    #[test]
    fn a_script_caller_is_named_and_found_by_its_script() {
        let mut r = Record::new("request", "daemon");
        r.path = Some("/usr/bin/python3.11".into());
        r.hash = Some(format!("sha256:{}", "f1".repeat(32)));
        r.script = Some("/home/me/bin/weather.py".into());
        r.script_hash = Some(format!("sha256:{}", "5c".repeat(32)));
        assert_eq!(short_binary(&r), "weather.py 5c5c5c5c");
        assert!(row(&r, false).contains("weather.py 5c5c5c5c"));
        let by = |b: &str| {
            Filter {
                binary: Some(b.into()),
                ..Default::default()
            }
            .matches(&r)
        };
        assert!(by("weather"));
        assert!(by("5c5c5c5c"));
        // The interpreter still finds it too.
        assert!(by("python3"));
        assert!(!by("deploy"));
    }
}
