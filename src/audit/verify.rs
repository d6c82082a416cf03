//! `keychain-auth audit verify`: checks the chain of every record in the log and its rotated
//! files, oldest first, and the state file's last position, and reports the first break with its
//! file, line and seq.
//!
//! What counts as a break: a line that does not match its chain value (edited, or inserted with
//! a forged value), a gap in `seq` (records deleted, or a rotated file removed), a `seq` that
//! goes backwards (records reordered or duplicated), a line that is not a chained record where
//! one is expected (inserted, or cut in half), and a log that ends before the last record the
//! state file remembers (truncated). Lines without `seq` before the first chained record were
//! written by a version without the chain; they are counted, not checked.

use super::chain;
use super::{State, read_state};
use crate::keys::Key;
use serde::Serialize;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// What kind of break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// The line does not match its chain value: edited, or inserted with a forged value.
    Edited,
    /// `seq` skips: records (or a whole rotated file) are missing.
    Missing,
    /// `seq` goes backwards: records reordered or duplicated.
    Reordered,
    /// Not a chained record where one is expected (inserted plain JSON, a cut line).
    Malformed,
    /// The log ends before the last record the state file remembers.
    Truncated,
    /// The state file is missing, damaged or names a record the log does not hold.
    State,
}

/// One break.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    /// What kind.
    pub kind: BreakKind,
    /// The file it is in.
    pub file: PathBuf,
    /// 1-based line number (0: the break is about the file or the state, not a line).
    pub line: u64,
    /// The seq of the record at that line, when it has one.
    pub seq: Option<u64>,
    /// What is wrong, for a person.
    pub message: String,
}

/// One file that was checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileSummary {
    /// Its path.
    pub file: PathBuf,
    /// Chained records in it.
    pub records: u64,
    /// First seq.
    pub first_seq: Option<u64>,
    /// Last seq.
    pub last_seq: Option<u64>,
}

/// A break the writer itself noticed and recorded (a chained `"event":"audit"` record), or a
/// remark that is not a break.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (0: not about a line).
    pub line: u64,
    /// The text.
    pub message: String,
}

/// The result of a verification.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// True when no break was found.
    pub ok: bool,
    /// Files checked, oldest first.
    pub files: Vec<FileSummary>,
    /// Chained records checked.
    pub records: u64,
    /// Lines from before the chain (not checked).
    pub unchained: u64,
    /// The last seq found.
    pub last_seq: Option<u64>,
    /// Breaks, in log order (at most `MAX_BREAKS`).
    pub breaks: Vec<Break>,
    /// Recorded breaks and remarks.
    pub notices: Vec<Notice>,
}

/// The seq of the first chained record of a file, if it starts with one.
pub(super) fn first_seq(path: &Path) -> Option<u64> {
    let mut line = Vec::new();
    open_lines(path).ok()?.read_until(b'\n', &mut line).ok()?;
    chain::line_seq(&line)
}

/// The lines of a log file, decompressed when its name ends in `.gz`.
pub(crate) fn open_lines(path: &Path) -> std::io::Result<Box<dyn BufRead>> {
    // Never through a link, never waiting on a FIFO put in the log's place.
    let f = crate::fsutil::open_regular(path, crate::fsutil::Links::Refuse)?;
    Ok(if path.extension().is_some_and(|e| e == "gz") {
        Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(f),
        ))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, f))
    })
}

/// Most breaks listed; the first is the one that matters.
pub(crate) const MAX_BREAKS: usize = 100;

/// The log's files, oldest first: the rotated files `audit.log.N` and `audit.log.N.gz`
/// (compressed by logrotate) ordered by the seq of their first record (files from before the
/// chain first, highest number first), then `audit.log`. Both forms of one number can exist
/// (a switch to `compress` leaves the plain file behind); both are read. A gap in the numbering
/// is returned as the missing numbers.
pub(crate) fn log_files(log: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let dir = log.parent().unwrap_or(Path::new("."));
    let name = log.file_name().unwrap_or_default().to_string_lossy();
    let mut found: Vec<(usize, PathBuf)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.filter_map(std::result::Result::ok) {
            let n = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = n.strip_prefix(&*name).and_then(|r| r.strip_prefix('.')) else {
                continue;
            };
            let digits = rest.strip_suffix(".gz").unwrap_or(rest);
            if let Ok(k) = digits.parse::<usize>()
                && k > 0
            {
                found.push((k, e.path()));
            }
        }
    }
    let numbers: std::collections::BTreeSet<usize> = found.iter().map(|(k, _)| *k).collect();
    let highest = numbers.last().copied().unwrap_or(0);
    let missing = (1..highest)
        .filter(|k| !numbers.contains(k))
        .map(|k| super::rotated_path(log, k))
        .collect();
    let mut keyed: Vec<(Option<u64>, std::cmp::Reverse<usize>, PathBuf)> = found
        .into_iter()
        .map(|(k, p)| (first_seq(&p), std::cmp::Reverse(k), p))
        .collect();
    keyed.sort();
    let mut files: Vec<PathBuf> = keyed.into_iter().map(|(_, _, p)| p).collect();
    if log.exists() {
        files.push(log.to_path_buf());
    }
    (files, missing)
}

struct Walker<'a> {
    key: &'a Key,
    report: Report,
    prev: Option<(u64, [u8; 32], PathBuf, u64)>,
    /// The chain value of the record with the state's seq, once seen.
    state_seq: Option<u64>,
    state_chain_seen: Option<[u8; 32]>,
    /// An open "missing" break that a later record may turn into "reordered": (index, from, to).
    gap: Option<(usize, u64, u64)>,
}

/// What to do with a record after looking at what it follows.
enum Follows {
    /// Check its chain value against this previous value.
    Check([u8; 32]),
    /// A break was recorded; the record is the new position, its value unchecked.
    Accept,
    /// A break was recorded; the record goes backwards and is passed over.
    Skip,
}

impl Walker<'_> {
    fn brk(&mut self, kind: BreakKind, file: &Path, line: u64, seq: Option<u64>, message: String) {
        if self.report.breaks.len() < MAX_BREAKS {
            self.report.breaks.push(Break {
                kind,
                file: file.to_path_buf(),
                line,
                seq,
                message,
            });
        }
    }

    /// Checks one line (without its newline) of `file`.
    fn line(&mut self, file: &Path, lineno: u64, line: &[u8], summary: &mut FileSummary) {
        let Some(seq) = chain::line_seq(line) else {
            if self.prev.is_none() && self.report.records == 0 && !line.is_empty() {
                self.report.unchained += 1;
            } else {
                self.brk(
                    BreakKind::Malformed,
                    file,
                    lineno,
                    None,
                    "not a chained record (inserted, or a cut line)".into(),
                );
            }
            return;
        };
        let Some((head, value)) = chain::split_line(line) else {
            self.brk(
                BreakKind::Malformed,
                file,
                lineno,
                Some(seq),
                format!("record seq {seq} has no valid chain value (cut or edited)"),
            );
            return;
        };
        match self.follows(file, lineno, seq, prev_mac_field(head, seq)) {
            Follows::Skip => return,
            Follows::Accept => {}
            Follows::Check(prev) => self.check_value(file, lineno, seq, &prev, head, value),
        }
        self.accept(file, lineno, seq, value, summary);
    }

    /// Where record `seq` stands against the one before it (or, for the first record, against
    /// its `prev_mac`): a break is recorded for a record that goes backwards, skips, or says it
    /// follows another chain value.
    fn follows(&mut self, file: &Path, lineno: u64, seq: u64, field: Option<[u8; 32]>) -> Follows {
        match (&self.prev, field) {
            (Some((pseq, pchain, _, _)), field) => {
                let (pseq, pchain) = (*pseq, *pchain);
                if seq <= pseq {
                    self.backwards(file, lineno, seq);
                    return Follows::Skip;
                }
                if seq != pseq + 1 {
                    self.skipped(file, lineno, seq);
                    return Follows::Accept;
                }
                if field.is_some_and(|f| f != pchain) {
                    self.brk(
                        BreakKind::Edited,
                        file,
                        lineno,
                        Some(seq),
                        format!(
                            "record seq {seq} says it follows another chain value than seq {} has",
                            seq - 1
                        ),
                    );
                    return Follows::Accept;
                }
                Follows::Check(pchain)
            }
            (None, Some(f)) => {
                if seq > 1 {
                    self.report.notices.push(Notice {
                        file: file.to_path_buf(),
                        line: lineno,
                        message: format!(
                            "the oldest record kept is seq {seq}; records 1–{} were rotated away",
                            seq - 1
                        ),
                    });
                }
                Follows::Check(f)
            }
            (None, None) if seq == 1 => Follows::Check([0u8; 32]),
            (None, None) => {
                self.brk(
                    BreakKind::Missing,
                    file,
                    lineno,
                    Some(seq),
                    format!(
                        "the first record found is seq {seq} and does not say what it follows: records before it are missing"
                    ),
                );
                Follows::Accept
            }
        }
    }

    /// The record before this one, for a break's message: (seq, file, line).
    fn prev_place(&self) -> (u64, PathBuf, u64) {
        self.prev
            .as_ref()
            .map(|(s, _, f, l)| (*s, f.clone(), *l))
            .unwrap_or_default()
    }

    /// Record `seq` goes backwards: it closes an open gap that it falls in (reordered), or is
    /// a duplicate.
    fn backwards(&mut self, file: &Path, lineno: u64, seq: u64) {
        let (pseq, pfile, pline) = self.prev_place();
        match self.gap {
            Some((i, from, to)) if (from..=to).contains(&seq) => {
                let b = &mut self.report.breaks[i];
                b.kind = BreakKind::Reordered;
                b.message = format!(
                    "record seq {} comes before seq {seq}: records were reordered",
                    b.seq.unwrap_or_default()
                );
                self.gap = None;
            }
            _ => self.brk(
                BreakKind::Reordered,
                file,
                lineno,
                Some(seq),
                format!(
                    "seq {seq} follows seq {pseq} ({} line {pline}): reordered or duplicated",
                    pfile.display()
                ),
            ),
        }
    }

    /// Record `seq` skips numbers: the records between are missing (for now: a later record
    /// may show they were reordered).
    fn skipped(&mut self, file: &Path, lineno: u64, seq: u64) {
        let (pseq, pfile, pline) = self.prev_place();
        let whole_file = lineno == 1 && pfile != file;
        let idx = self.report.breaks.len();
        self.brk(
            BreakKind::Missing,
            file,
            lineno,
            Some(seq),
            format!(
                "seq {seq} follows seq {pseq} ({} line {pline}): records {}–{} are missing{}",
                pfile.display(),
                pseq + 1,
                seq - 1,
                if whole_file {
                    " (a rotated file was removed?)"
                } else {
                    ""
                }
            ),
        );
        if idx < self.report.breaks.len() {
            self.gap = Some((idx, pseq + 1, seq - 1));
        }
    }

    /// Checks the chain value of record `seq` (canonical bytes `head`) following `prev`; a
    /// break the writer recorded (`"event":"audit"`) becomes a notice.
    fn check_value(
        &mut self,
        file: &Path,
        lineno: u64,
        seq: u64,
        prev: &[u8; 32],
        head: &[u8],
        value: [u8; 32],
    ) {
        if chain::chain_of(self.key, prev, head) != value {
            self.brk(
                BreakKind::Edited,
                file,
                lineno,
                Some(seq),
                format!(
                    "record seq {seq} does not match its chain value: it was edited, or inserted"
                ),
            );
        } else if head.windows(16).any(|w| w == b"\"event\":\"audit\",") {
            let msg = serde_json::from_slice::<serde_json::Value>(&[head, b"}"].concat())
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_default();
            self.report.notices.push(Notice {
                file: file.to_path_buf(),
                line: lineno,
                message: format!("recorded at seq {seq}: {msg}"),
            });
        }
    }

    fn accept(
        &mut self,
        file: &Path,
        lineno: u64,
        seq: u64,
        value: [u8; 32],
        summary: &mut FileSummary,
    ) {
        self.prev = Some((seq, value, file.to_path_buf(), lineno));
        self.report.records += 1;
        self.report.last_seq = Some(seq);
        summary.records += 1;
        summary.first_seq.get_or_insert(seq);
        summary.last_seq = Some(seq);
        if Some(seq) == self.state_seq {
            self.state_chain_seen = Some(value);
        }
    }
}

/// The `"prev_mac"` of a canonical head `{"seq":N,"prev_mac":"<hex>",…`, if it has one.
fn prev_mac_field(head: &[u8], seq: u64) -> Option<[u8; 32]> {
    let digits = seq.to_string();
    let rest = head
        .strip_prefix(b"{\"seq\":")?
        .strip_prefix(digits.as_bytes())?
        .strip_prefix(b",\"prev_mac\":\"")?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(rest.get(..64)?, &mut out).ok()?;
    Some(out)
}

/// Verifies the log at `log` (and its rotated files) with `key`.
pub fn verify(log: &Path, key: &Key) -> Report {
    verify_with_progress(log, key, &mut |_, _| {})
}

/// Marks `report` broken when it found no record at all although the log is known to have
/// had some (the store records that a chain was started with this key): a log removed
/// together with its rotated files and its state leaves nothing else to compare with.
pub(crate) fn expect_history(report: &mut Report, log: &Path) {
    if report.records == 0 && report.unchained == 0 && report.breaks.is_empty() {
        report.breaks.push(Break {
            kind: BreakKind::Missing,
            file: log.to_path_buf(),
            line: 0,
            seq: None,
            message: "no audit record is left, but a chain was started with this key: the log, \
                      its rotated files and its state were removed"
                .into(),
        });
        report.ok = false;
    }
}

/// [`verify`], calling `progress(bytes read, bytes in all files)` every 64 Ki lines.
pub(crate) fn verify_with_progress(
    log: &Path,
    key: &Key,
    progress: &mut dyn FnMut(u64, u64),
) -> Report {
    let (files, missing) = log_files(log);
    let total: u64 = files
        .iter()
        .filter_map(|f| std::fs::symlink_metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let state = read_state(log, key);
    let mut w = Walker {
        key,
        report: Report::default(),
        prev: None,
        state_seq: state.as_ref().ok().and_then(|s| s.as_ref().map(|s| s.seq)),
        state_chain_seen: None,
        gap: None,
    };
    for m in &missing {
        w.brk(
            BreakKind::Missing,
            m,
            0,
            None,
            format!(
                "{} is missing between the rotated files around it",
                m.display()
            ),
        );
    }
    let mut read = Progress {
        done: 0,
        total,
        report: progress,
    };
    for file in &files {
        let summary = w.file(file, &mut read);
        w.report.files.push(summary);
    }
    check_state(&mut w, log, state);
    w.report.ok = w.report.breaks.is_empty();
    w.report
}

/// Bytes read of all files, reported every 64 Ki lines.
struct Progress<'a> {
    done: u64,
    total: u64,
    report: &'a mut dyn FnMut(u64, u64),
}

impl Walker<'_> {
    /// Checks every line of `file`.
    fn file(&mut self, file: &Path, read: &mut Progress<'_>) -> FileSummary {
        let mut summary = FileSummary {
            file: file.to_path_buf(),
            records: 0,
            first_seq: None,
            last_seq: None,
        };
        let mut r = match open_lines(file) {
            Ok(r) => r,
            Err(e) => {
                self.brk(
                    BreakKind::Malformed,
                    file,
                    0,
                    None,
                    format!("cannot be opened: {e}"),
                );
                return summary;
            }
        };
        let mut buf = Vec::with_capacity(1024);
        let mut lineno = 0u64;
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    self.brk(
                        BreakKind::Malformed,
                        file,
                        lineno + 1,
                        None,
                        format!("cannot be read: {e}"),
                    );
                    break;
                }
            }
            lineno += 1;
            read.done += buf.len() as u64;
            if lineno.is_multiple_of(65_536) {
                (read.report)(read.done, read.total);
            }
            if buf.pop_if(|b| *b == b'\n').is_none() {
                self.brk(
                    BreakKind::Malformed,
                    file,
                    lineno,
                    chain::line_seq(&buf),
                    "the last line is cut off (no newline): the log was truncated mid-record"
                        .into(),
                );
                continue;
            }
            self.line(file, lineno, &buf, &mut summary);
        }
        summary
    }
}

/// Checks the log's end against the state file: missing or damaged state, or a log that ends
/// before (or elsewhere than) the last record written.
fn check_state(
    w: &mut Walker<'_>,
    log: &Path,
    state: Result<Option<State>, super::ReadStateError>,
) {
    let state_file = super::state_path(log);
    match state {
        Err(e) => w.brk(
            BreakKind::State,
            &state_file,
            0,
            None,
            format!("{e}: a truncated log cannot be ruled out"),
        ),
        Ok(None) => {
            if w.report.records > 0 {
                w.brk(
                    BreakKind::State,
                    &state_file,
                    0,
                    None,
                    format!(
                        "{} is missing: a truncated log cannot be ruled out",
                        state_file.display()
                    ),
                );
            }
        }
        Ok(Some(s)) => check_end(w, log, state_file, &s),
    }
}

/// The last record read against the state `s`: the log must reach the record it names, and
/// hold that very record.
fn check_end(w: &mut Walker<'_>, log: &Path, state_file: PathBuf, s: &State) {
    let last = w.prev.as_ref().map(|(s, c, f, l)| (*s, *c, f.clone(), *l));
    match last {
        None => w.brk(
            BreakKind::Truncated,
            log,
            0,
            None,
            format!(
                "the log holds no chained record but the last one written was seq {}: it was emptied or removed",
                s.seq
            ),
        ),
        Some((seq, _, file, line)) if seq < s.seq => w.brk(
            BreakKind::Truncated,
            &file,
            line,
            Some(seq),
            format!(
                "the log ends at seq {seq} but the last record written was seq {}: records {}–{} were cut off",
                s.seq,
                seq + 1,
                s.seq
            ),
        ),
        Some((seq, chain, file, line)) => {
            let want = s.chain_bytes();
            let seen = if seq == s.seq {
                Some(chain)
            } else {
                w.state_chain_seen
            };
            if seen != Some(want) {
                w.brk(
                    BreakKind::State,
                    &file,
                    line,
                    Some(s.seq),
                    format!(
                        "record seq {} is not the one last written (the log was replaced or rewritten)",
                        s.seq
                    ),
                );
            } else if seq > s.seq {
                w.report.notices.push(Notice {
                    file: state_file,
                    line: 0,
                    message: format!(
                        "records after seq {} are not yet in the state file (a crash between the two writes); the next append adopts them",
                        s.seq
                    ),
                });
            }
        }
    }
}

impl Report {
    /// The human summary: OK with counts, or the first break and how many there are.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for n in &self.notices {
            out.push_str(&format!(
                "note: {}{}: {}\n",
                n.file.display(),
                if n.line > 0 {
                    format!(":{}", n.line)
                } else {
                    String::new()
                },
                n.message
            ));
        }
        if self.ok {
            out.push_str(&format!(
                "audit log verified: {} records in {} file(s), seq {}–{}{}\n",
                self.records,
                self.files.len(),
                self.files
                    .iter()
                    .find_map(|f| f.first_seq)
                    .map_or("-".into(), |s| s.to_string()),
                self.last_seq.map_or("-".into(), |s| s.to_string()),
                if self.unchained > 0 {
                    format!(
                        "; {} older lines written before the chain were not checked",
                        self.unchained
                    )
                } else {
                    String::new()
                }
            ));
        } else {
            for b in &self.breaks {
                out.push_str(&format!(
                    "BROKEN ({:?}) {}{}{}: {}\n",
                    b.kind,
                    b.file.display(),
                    if b.line > 0 {
                        format!(" line {}", b.line)
                    } else {
                        String::new()
                    },
                    b.seq.map_or(String::new(), |s| format!(" seq {s}")),
                    b.message
                ));
            }
            out.push_str(&format!(
                "audit log NOT verified: {} break(s); {} records checked\n",
                self.breaks.len(),
                self.records
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_reported_on_a_long_log() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("audit.log");
        let key = Key::from_bytes(&[1u8; 32]);
        let mut prev = [0u8; 32];
        let mut out = Vec::new();
        for seq in 1..=70_000u64 {
            let (line, c) = chain::seal_line(
                &key,
                &prev,
                format!("{{\"seq\":{seq},\"ts\":\"x\"}}").into_bytes(),
            );
            out.extend_from_slice(&line);
            prev = c;
        }
        std::fs::write(&log, &out).unwrap();
        let mut calls = Vec::new();
        let r = verify_with_progress(&log, &key, &mut |done, total| calls.push((done, total)));
        assert_eq!(r.records, 70_000);
        // no state file: verify says a truncation cannot be ruled out, and nothing else
        assert_eq!(r.breaks.len(), 1, "{}", r.render());
        assert_eq!(r.breaks[0].kind, BreakKind::State);
        assert_eq!(calls.len(), 1);
        assert!(calls[0].0 < calls[0].1 && calls[0].1 == out.len() as u64);
    }
}
