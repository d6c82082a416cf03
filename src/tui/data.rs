//! Reading what the panes show: pending.json, config.json with each binary's state on disk, and
//! the audit log's tail — read backwards from the end in chunks, so a log of a million lines
//! costs only the records on screen (plus paging), never the whole file.

use super::state::{OnDisk, PolicyRow, SearchProgress};
use crate::audit::Record;
use crate::identity::HashCache;
use crate::paths::Paths;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;

/// How many records one page (initial tail or one step back) holds.
pub const PAGE: usize = 2000;

/// The policies with their on-disk state (hashing through a cache keyed by file stamp).
pub fn load_policies(paths: &Paths, hashes: &HashCache) -> Result<Vec<PolicyRow>, String> {
    let policy = crate::policy::load(&paths.config).map_err(|e| e.to_string())?;
    Ok(policy
        .registered_binaries
        .into_iter()
        .map(|entry| {
            let on_disk =
                match crate::fsutil::open_regular(&entry.path, crate::fsutil::Links::Follow) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => OnDisk::Missing,
                    Err(_) => OnDisk::Unknown,
                    Ok(f) => match hashes.hash_file(&f) {
                        Ok(h) if h == entry.hash => OnDisk::Ok,
                        Ok(h) => OnDisk::Changed(h),
                        Err(_) => OnDisk::Unknown,
                    },
                };
            PolicyRow { entry, on_disk }
        })
        .collect())
}

/// The edit of config.json made outside keychain-auth, checked against its seal with the key
/// from the selected store; `None` when it matches its seal (or cannot be checked: the
/// integrity line says so).
pub fn policy_edit(paths: &Paths) -> Option<super::state::PolicyEdit> {
    let file = crate::policy::load(&paths.config).ok()?;
    let keys = crate::selection::key_source(paths);
    match crate::policy::sealed::integrity(paths, &keys, &file).ok()? {
        crate::policy::seal::Integrity::Edited(d) => Some(super::state::PolicyEdit {
            summary: d.summary(),
            lines: d.render().lines().map(str::to_string).collect(),
            held: d.held(&file),
        }),
        crate::policy::seal::Integrity::Sealed | crate::policy::seal::Integrity::Unsealed => None,
    }
}

/// Opens the audit log for reading through [`crate::fsutil::open_state`] (no link followed, no
/// wait on a FIFO).
fn open_log(path: &std::path::Path) -> io::Result<File> {
    crate::fsutil::open_state(path, crate::fsutil::Access::Read)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the audit log is gone"))
}

/// A window onto the end of the audit log: bytes `[start, end)` are loaded.
#[derive(Debug)]
pub struct AuditTail {
    path: PathBuf,
    start: u64,
    end: u64,
}

impl AuditTail {
    /// A tail of the log at `path`; nothing read yet.
    pub fn new(path: PathBuf) -> AuditTail {
        AuditTail {
            path,
            start: 0,
            end: 0,
        }
    }

    /// Reads the last [`PAGE`] records. Returns them (oldest first) and whether older ones
    /// exist.
    pub fn open_tail(&mut self) -> io::Result<(Vec<Record>, bool)> {
        let len = match std::fs::metadata(&self.path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        self.start = len;
        self.end = len;
        self.older()
    }

    /// Reads up to [`PAGE`] records before the loaded ones.
    pub fn older(&mut self) -> io::Result<(Vec<Record>, bool)> {
        if self.start == 0 {
            return Ok((Vec::new(), false));
        }
        let mut f = open_log(&self.path)?;
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut pos = self.start;
        let mut carry: Vec<u8> = Vec::new();
        const CHUNK: u64 = 64 * 1024;
        while pos > 0 && lines.len() < PAGE {
            let from = pos.saturating_sub(CHUNK);
            let mut buf = vec![0u8; (pos - from) as usize];
            f.seek(SeekFrom::Start(from))?;
            f.read_exact(&mut buf)?;
            buf.extend_from_slice(&carry);
            // Split off complete lines from the end; the first piece may be partial.
            let mut parts: Vec<&[u8]> = buf.split(|&b| b == b'\n').collect();
            let first = parts.remove(0);
            for p in parts.into_iter().rev() {
                if !p.is_empty() {
                    lines.push(p.to_vec());
                }
                if lines.len() >= PAGE {
                    break;
                }
            }
            carry = first.to_vec();
            pos = from;
            if lines.len() >= PAGE {
                // Where the oldest kept line starts.
                let consumed: usize = lines.iter().map(|l| l.len() + 1).sum();
                pos = self.start.saturating_sub(consumed as u64);
                carry.clear();
            }
        }
        if pos == 0 && !carry.is_empty() && lines.len() < PAGE {
            lines.push(carry);
        }
        self.start = pos;
        lines.reverse();
        Ok((parse(&lines), self.start > 0))
    }

    /// Reads the records appended since the last read. A log that shrank (rotated or
    /// truncated) is re-opened from its tail: `Ok(None)` tells the caller to reload.
    pub fn newer(&mut self) -> io::Result<Option<Vec<Record>>> {
        let len = match std::fs::metadata(&self.path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if len < self.end {
            return Ok(None);
        }
        if len == self.end {
            return Ok(Some(Vec::new()));
        }
        let mut f = open_log(&self.path)?;
        f.seek(SeekFrom::Start(self.end))?;
        let mut buf = Vec::with_capacity((len - self.end) as usize);
        f.take(len - self.end).read_to_end(&mut buf)?;
        // Only complete lines; a partial last line is read next time.
        let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.end += complete as u64;
        let lines: Vec<Vec<u8>> = buf[..complete]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        Ok(Some(parse(&lines)))
    }
}

fn parse(lines: &[Vec<u8>]) -> Vec<Record> {
    lines
        .iter()
        .map(|l| {
            serde_json::from_slice(l).unwrap_or_else(|_| {
                let mut r = Record::new("unreadable", "?");
                r.ts = String::new();
                r.message = Some(String::from_utf8_lossy(l).chars().take(200).collect());
                r
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write_log(path: &std::path::Path, n: usize) {
        let mut f = std::fs::File::create(path).unwrap();
        // The audit log is only read when it is a private regular file, as the daemon makes it.
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        for i in 0..n {
            let mut r = Record::new("request", "daemon");
            r.id = Some(format!("{i}"));
            f.write_all(&r.to_line()).unwrap();
        }
    }

    fn ids(v: &[Record]) -> Vec<usize> {
        v.iter()
            .map(|r| r.id.as_ref().unwrap().parse().unwrap())
            .collect()
    }

    #[test]
    fn tail_pages_backwards_and_follows_appends() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("audit.log");
        write_log(&p, PAGE * 2 + 10);
        let mut tail = AuditTail::new(p.clone());
        let (last, more) = tail.open_tail().unwrap();
        assert!(more);
        assert_eq!(ids(&last), (PAGE + 10..PAGE * 2 + 10).collect::<Vec<_>>());
        let (older, more) = tail.older().unwrap();
        assert!(more);
        assert_eq!(ids(&older), (10..PAGE + 10).collect::<Vec<_>>());
        let (oldest, more) = tail.older().unwrap();
        assert!(!more);
        assert_eq!(ids(&oldest), (0..10).collect::<Vec<_>>());
        // appended, with a partial line that only counts once complete
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        let mut r = Record::new("request", "daemon");
        r.id = Some("999999".into());
        let line = r.to_line();
        f.write_all(&line[..10]).unwrap();
        assert_eq!(tail.newer().unwrap().unwrap().len(), 0);
        f.write_all(&line[10..]).unwrap();
        assert_eq!(ids(&tail.newer().unwrap().unwrap()), [999_999]);
        // truncated: reload
        std::fs::write(&p, b"").unwrap();
        assert!(tail.newer().unwrap().is_none());
    }

    #[test]
    fn a_registered_path_that_is_now_a_fifo_is_unknown_not_waited_on() {
        let t = tempfile::tempdir().unwrap();
        let paths = crate::paths::Paths::flat_in(t.path());
        let fifo = t.path().join("tool");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o700)).unwrap();
        let entry = crate::policy::BinaryPolicy::new(
            fifo,
            crate::identity::BinaryHash::from_digest(&[7; 32]),
        );
        // Unsealed and without a sealed copy: served as written (a first-release config).
        let config = serde_json::json!({"protocol_version": "1", "registered_binaries": [entry]});
        crate::fsutil::write_atomic(&paths.config, config.to_string().as_bytes()).unwrap();
        let rows = load_policies(&paths, &HashCache::new()).unwrap();
        assert_eq!(rows.len(), 1);
        assert!(
            matches!(rows[0].on_disk, OnDisk::Unknown),
            "{:?}",
            rows[0].on_disk
        );
    }

    #[test]
    fn small_and_missing_logs() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("audit.log");
        let mut tail = AuditTail::new(p.clone());
        assert_eq!(tail.open_tail().unwrap().0.len(), 0);
        write_log(&p, 3);
        let mut tail = AuditTail::new(p);
        let (v, more) = tail.open_tail().unwrap();
        assert_eq!(ids(&v), [0, 1, 2]);
        assert!(!more);
    }
}

/// The newest successful request time per caller hash (a script caller's under its script's
/// hash, as its policy entry has it) in the whole log: the current file and the rotated ones
/// (compressed ones are skipped). Lines are screened as text before any is parsed.
pub fn last_uses(path: &std::path::Path) -> std::collections::HashMap<String, String> {
    use std::io::BufRead;
    let mut out: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let (files, _) = crate::audit::verify::log_files(path);
    for file in files
        .iter()
        .filter(|f| f.extension().is_none_or(|e| e != "gz"))
    {
        let Ok(f) = crate::fsutil::open_regular(file, crate::fsutil::Links::Refuse) else {
            continue;
        };
        for line in io::BufReader::new(f).split(b'\n').map_while(Result::ok) {
            let text = String::from_utf8_lossy(&line);
            if !(text.contains("\"event\":\"request\"") && text.contains("\"status\":\"success\""))
            {
                continue;
            }
            let Ok(r) = serde_json::from_slice::<Record>(&line) else {
                continue;
            };
            if r.event != "request" || r.status.as_deref() != Some("success") {
                continue;
            }
            if let Some(h) = r.script_hash.or(r.hash) {
                let newest = out.entry(h).or_default();
                if r.ts > *newest {
                    *newest = r.ts;
                }
            }
        }
    }
    out
}

/// Bytes read per step of a backwards search.
const SEARCH_CHUNK: usize = 1 << 20;

/// Searches the whole log at `path` — the current file, then the rotated ones (`audit.log.1`,
/// `.2`, …; compressed ones are skipped) — for records whose text
/// ([`super::state::record_text`], any case) contains `filter`, from the newest backwards.
/// After each chunk `found` gets the matches of that chunk (newest first) and the progress; it
/// returns false to stop (cancel).
pub fn search_backwards(
    path: &std::path::Path,
    filter: &str,
    mut found: impl FnMut(Vec<Record>, SearchProgress) -> bool,
) -> io::Result<()> {
    let needle = filter.to_lowercase();
    // Raw lines are pre-screened as lowercased ASCII; a filter the JSON text may not contain
    // literally (non-ASCII, quote, backslash) screens nothing out and every line is parsed.
    let screen = needle.is_ascii() && !needle.contains(['"', '\\']);
    let (mut files, _) = crate::audit::verify::log_files(path);
    files.retain(|f| f.extension().is_none_or(|e| e != "gz"));
    files.reverse();
    if files.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no audit log at {}", path.display()),
        ));
    }
    let sizes: Vec<u64> = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .collect();
    let mut progress = SearchProgress {
        total_bytes: sizes.iter().sum(),
        ..SearchProgress::default()
    };
    let mut before = 0u64;
    let last = files.len().saturating_sub(1);
    for (i, file) in files.iter().enumerate() {
        // Never a FIFO put in a rotated file's place (the search would wait on it).
        let go_on = match crate::fsutil::open_regular(file, crate::fsutil::Links::Refuse) {
            Ok(f) => search_file(
                f,
                before,
                i == last,
                &needle,
                screen,
                &mut progress,
                &mut found,
            )?,
            // Rotated away between the listing and now: nothing left to read in it.
            Err(e) if e.kind() == io::ErrorKind::NotFound && i > 0 => true,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", file.display()))),
        };
        if !go_on {
            return Ok(());
        }
        before += sizes[i];
    }
    if !progress.done {
        // The oldest file went away before it was read: the search is over all the same.
        progress.done = true;
        found(vec![], progress);
    }
    Ok(())
}

/// Searches one file of the log backwards ([`search_backwards`]); `before` bytes of newer
/// files were read already. Returns false when `found` asked to stop.
fn search_file(
    mut f: File,
    before: u64,
    last_file: bool,
    needle: &str,
    screen: bool,
    progress: &mut SearchProgress,
    found: &mut impl FnMut(Vec<Record>, SearchProgress) -> bool,
) -> io::Result<bool> {
    let total = f.metadata()?.len();
    let mut end = total;
    let mut carry: Vec<u8> = Vec::new(); // the start of a line whose beginning is further back
    let mut buf = vec![0u8; SEARCH_CHUNK];
    loop {
        let start = end.saturating_sub(SEARCH_CHUNK as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf[..n])?;
        let mut chunk = Vec::with_capacity(n + carry.len());
        chunk.extend_from_slice(&buf[..n]);
        chunk.append(&mut carry);
        // All but the first (maybe partial) line are whole, unless this is the file's start.
        let first_nl = if start == 0 {
            None
        } else {
            chunk.iter().position(|&b| b == b'\n')
        };
        let body = match first_nl {
            Some(i) => {
                carry = chunk[..=i].to_vec();
                carry.pop();
                &chunk[i + 1..]
            }
            None if start == 0 => &chunk[..],
            None => {
                // One line longer than a chunk: keep reading back.
                carry = chunk;
                end = start;
                progress.bytes = before + total - end;
                continue;
            }
        };
        let mut lower = body.to_vec();
        lower.make_ascii_lowercase();
        let mut matches = vec![];
        let mut line_end = body.len();
        for (i, _) in lower.iter().enumerate().rev().filter(|(_, b)| **b == b'\n') {
            scan_line(
                &body[i + 1..line_end],
                &lower[i + 1..line_end],
                needle,
                screen,
                &mut matches,
                progress,
            );
            line_end = i;
        }
        scan_line(
            &body[..line_end],
            &lower[..line_end],
            needle,
            screen,
            &mut matches,
            progress,
        );
        end = start;
        progress.bytes = before + total - end;
        progress.done = start == 0 && last_file;
        if !found(matches, *progress) {
            return Ok(false);
        }
        if start == 0 {
            return Ok(true);
        }
    }
}

fn scan_line(
    raw: &[u8],
    lower: &[u8],
    needle: &str,
    screen: bool,
    matches: &mut Vec<Record>,
    progress: &mut SearchProgress,
) {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    progress.records += 1;
    if screen && !std::str::from_utf8(lower).is_ok_and(|l| l.contains(needle)) {
        return;
    }
    if let Ok(r) = serde_json::from_slice::<Record>(raw)
        && super::state::record_text(&r)
            .to_lowercase()
            .contains(needle)
    {
        matches.push(r);
    }
}

#[cfg(test)]
mod search_tests {
    use super::*;
    use crate::tui::test_support::record;

    fn log_of(n: usize, chunk_breaker: bool) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        for i in 0..n {
            let mut r = record(if i % 100 == 7 { "denied" } else { "success" }, "aws");
            r.id = Some(format!("r{i}"));
            if chunk_breaker && i == 3 {
                r.message = Some("x".repeat(3 * SEARCH_CHUNK));
            }
            f.write_all(&r.to_line()).expect("write");
        }
        f
    }

    fn run(f: &tempfile::NamedTempFile, filter: &str) -> (Vec<String>, SearchProgress) {
        let mut ids = vec![];
        let mut last = SearchProgress::default();
        search_backwards(f.path(), filter, |m, p| {
            ids.extend(m.into_iter().filter_map(|r| r.id));
            last = p;
            true
        })
        .expect("search");
        (ids, last)
    }

    #[test]
    fn finds_every_match_newest_first_across_chunks() {
        let f = log_of(30_000, true);
        let (ids, p) = run(&f, "DENIED");
        let want: Vec<String> = (0..30_000)
            .rev()
            .filter(|i| i % 100 == 7)
            .map(|i| format!("r{i}"))
            .collect();
        assert_eq!(ids, want);
        assert!(p.done);
        assert_eq!(p.records, 30_000);
        assert_eq!(p.bytes, p.total_bytes);
        let (ids, p) = run(&f, "no-such-thing");
        assert!(ids.is_empty());
        assert_eq!(p.records, 30_000);
    }

    #[test]
    fn a_script_caller_is_found_by_its_script_name_and_last_use_counts_for_it() {
        use std::io::Write;
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        let mut r = record("success", "weather");
        r.id = Some("script-read".into());
        r.path = Some("/usr/bin/python3.11".into());
        r.script = Some("/home/me/bin/weather.py".into());
        let script_hash = crate::tui::test_support::hash('5');
        r.script_hash = Some(script_hash.to_string());
        f.write_all(&r.to_line()).expect("write");
        let (ids, _) = run(&f, "WEATHER.PY");
        assert_eq!(ids, ["script-read"]);
        let (ids, _) = run(&f, "55555555");
        assert_eq!(ids, ["script-read"]);
        // The Policies pane's "last used" of the script's entry (its hash is the script's).
        let mut s = crate::tui::test_support::empty_state();
        s.audit = vec![r];
        assert_eq!(s.last_used(&script_hash), Some("2026-11-24T09:59:30.000Z"));
        // The loaded-tail filter matches it by name too.
        s.filter = "weather.py".into();
        assert_eq!(s.audit_visible(), [0]);
    }

    #[test]
    fn last_used_comes_from_the_whole_log() {
        use std::io::Write;
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        // An old use of mycli (hash a…), then 5,000 records of others: far beyond the
        // dashboard's first page of 2,000.
        let mut old = record("success", "aws");
        old.ts = "2026-10-01T08:00:00.000Z".into();
        f.write_all(&old.to_line()).expect("write");
        let mut denied_later = record("denied", "aws");
        denied_later.ts = "2026-10-02T08:00:00.000Z".into();
        f.write_all(&denied_later.to_line()).expect("write");
        let mut script = record("success", "weather");
        script.ts = "2026-10-03T08:00:00.000Z".into();
        script.path = Some("/usr/bin/python3.11".into());
        script.script = Some("/home/me/bin/weather.py".into());
        script.script_hash = Some(crate::tui::test_support::hash('5').to_string());
        f.write_all(&script.to_line()).expect("write");
        for i in 0..5_000 {
            let mut r = record("success", "k8s");
            r.hash = Some(crate::tui::test_support::hash('b').to_string());
            r.ts = format!("2026-11-01T08:{:02}:{:02}.000Z", i / 60 % 60, i % 60);
            f.write_all(&r.to_line()).expect("write");
        }
        let index = last_uses(f.path());
        let a = crate::tui::test_support::hash('a');
        assert_eq!(
            index[&a.to_string()],
            "2026-10-01T08:00:00.000Z",
            "a denial is no use"
        );
        assert_eq!(
            index[&crate::tui::test_support::hash('5').to_string()],
            "2026-10-03T08:00:00.000Z",
            "a script's use counts for its script"
        );
        // The Policies pane: the index, or a record loaded since when newer.
        let mut s = crate::tui::test_support::sample_state();
        s.audit.clear();
        assert_eq!(s.last_used(&a), None);
        s.last_uses = index;
        assert_eq!(s.last_used(&a), Some("2026-10-01T08:00:00.000Z"));
        s.audit = vec![record("success", "aws")];
        assert_eq!(s.last_used(&a), Some("2026-11-24T09:59:30.000Z"));
    }

    #[test]
    fn stops_when_told() {
        let f = log_of(30_000, false);
        let mut calls = 0;
        search_backwards(f.path(), "denied", |_, _| {
            calls += 1;
            false
        })
        .expect("search");
        assert_eq!(calls, 1);
    }

    #[test]
    fn the_search_goes_on_into_rotated_files_newest_first() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tmp");
        let log = dir.path().join("audit.log");
        let write = |path: &std::path::Path, ids: &[&str]| {
            let mut f = File::create(path).expect("create");
            for id in ids {
                let mut r = record("success", if id.contains("hit") { "needle" } else { "aws" });
                r.id = Some((*id).to_string());
                writeln!(f, "{}", serde_json::to_string(&r).expect("json")).expect("write");
            }
        };
        write(&dir.path().join("audit.log.2"), &["oldest-hit", "o2"]);
        write(&dir.path().join("audit.log.1"), &["o1", "older-hit"]);
        write(&log, &["new", "newest-hit"]);
        let total: u64 = ["audit.log", "audit.log.1", "audit.log.2"]
            .iter()
            .map(|n| std::fs::metadata(dir.path().join(n)).expect("meta").len())
            .sum();
        let mut ids = vec![];
        let mut last = SearchProgress::default();
        search_backwards(&log, "needle", |found, progress| {
            ids.extend(found.into_iter().filter_map(|r| r.id));
            last = progress;
            true
        })
        .expect("search");
        assert_eq!(ids, ["newest-hit", "older-hit", "oldest-hit"]);
        assert!(last.done);
        assert_eq!(last.records, 6);
        assert_eq!((last.bytes, last.total_bytes), (total, total));
    }

    #[test]
    fn a_fifo_in_place_of_a_rotated_file_ends_the_search_with_an_error_not_a_wait() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = dir.path().join("audit.log");
        let mut r = record("success", "needle");
        r.id = Some("newest-hit".into());
        std::fs::write(&log, r.to_line()).expect("log");
        let fifo = dir.path().join("audit.log.1");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("fifo");
        let mut ids = vec![];
        let e = search_backwards(&log, "needle", |found, _| {
            ids.extend(found.into_iter().filter_map(|r| r.id));
            true
        })
        .expect_err("a FIFO is not searched");
        assert_eq!(ids, ["newest-hit"], "the current file was searched first");
        let e = e.to_string();
        assert!(
            e.contains("audit.log.1") && e.contains("not a regular file"),
            "{e}"
        );
    }
}
