//! The vault's generation as the audit chain records it, for noticing a vault rolled back to an
//! older copy while no daemon was watching.
//!
//! Every record written while the vault is unlocked carries `"vault_generation"` (the writer
//! stamps it, as the last member before `"mac"`). [`highest`] reads the log (the current file,
//! else the newest rotated one that has such records) and returns the highest generation among
//! the records whose chain value holds under the vault's audit key. A program without the key
//! cannot write such a record, and the *highest* counts, so neither a forged line nor an old
//! genuine line copied to the end can lower it: only taking records out of the log can, which
//! the chain and `audit.state` show (`audit verify`) — unless the log and its state are rolled
//! back together with the vault.

use super::Key;
use super::chain::{CHAIN_SUFFIX_LEN, chain_of, split_line};
use std::io::BufRead;
use std::path::Path;

/// The highest vault generation recorded by a genuine record of the log at `log` (`None`: no
/// such record, or no log): the newest of the log's files (current, then rotated, plain or
/// compressed) that has one.
pub fn highest(log: &Path, key: &Key) -> Option<u64> {
    newest_first(log).find_map(|p| highest_in(&p, key))
}

/// The log's files, the current one first, then the rotated ones from the newest.
fn newest_first(log: &Path) -> impl Iterator<Item = std::path::PathBuf> {
    let (files, _gaps) = super::verify::log_files(log);
    files.into_iter().rev().filter(|p| p.exists())
}

/// What the log says without the key (`doctor`, which has no passphrase): the highest
/// generation any record claims. Only a hint — [`highest`] is what an unlock trusts.
pub fn claimed(log: &Path) -> Option<u64> {
    newest_first(log).find_map(|p| {
        let mut top = None;
        each_line(&p, |l| top = top.max(claim(l)))?;
        top
    })
}

/// What doctor says about the vault file against the log: `Some` when the file is older than
/// a generation the log claims.
pub fn doctor_warning(vault: &Path, log: &Path) -> Option<String> {
    let bytes = std::fs::read(vault).ok()?;
    let found = crate::vault::format::parse(&bytes).ok()?.body.generation;
    let claimed = claimed(log)?;
    (found < claimed).then(|| {
        format!(
            "the vault file is generation {found}, but the audit log records generation {claimed}: an older copy of the vault may have been put back; `keychain-auth unlock` checks this under the vault's key and refuses such a copy"
        )
    })
}

/// Calls `f` with each line of the file (newline stripped), reading it through one buffer.
/// `None` when it cannot be opened.
fn each_line(path: &Path, mut f: impl FnMut(&[u8])) -> Option<()> {
    let mut r = super::verify::open_lines(path).ok()?;
    let mut buf = Vec::with_capacity(4096);
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return Some(()),
            Ok(_) => f(buf.strip_suffix(b"\n").unwrap_or(&buf)),
        }
    }
}

/// The generation a chained line claims, read from its end without checking anything.
fn claim(line: &[u8]) -> Option<u64> {
    let cut = line.len().checked_sub(CHAIN_SUFFIX_LEN)?;
    stamped(&line[..cut])
}

/// Most rounds of "the highest claim does not hold, try the next" before every stamped line
/// is checked in one pass (a log with that many forged claims is under attack anyway).
const ROUNDS: usize = 4;

/// The highest genuine generation in one file. A genuine log's generations only grow, so the
/// highest claim is checked first (two cheap passes: find it, verify a line that makes it);
/// only when forged lines claim more is it narrowed down, and after [`ROUNDS`] every stamped
/// line is checked.
fn highest_in(path: &Path, key: &Key) -> Option<u64> {
    let mut below = u64::MAX;
    for _ in 0..ROUNDS {
        let mut top = None;
        each_line(path, |l| {
            if let Some(g) = claim(l).filter(|&g| g < below) {
                top = top.max(Some(g));
            }
        })?;
        let top = top?;
        if verified_max(path, key, Some(top)) == Some(top) {
            return Some(top);
        }
        below = top;
    }
    verified_max(path, key, None).filter(|&g| g < below)
}

/// The highest generation among the lines whose chain value holds, checking only lines that
/// claim `only` when it is given.
fn verified_max(path: &Path, key: &Key, only: Option<u64>) -> Option<u64> {
    let mut prev_hex = [0u8; 64];
    let mut have_prev = false;
    let mut best = None;
    each_line(path, |line| {
        let wanted = claim(line).filter(|&g| only.is_none_or(|o| o == g) && Some(g) > best);
        if let Some(g) = wanted
            && let Some((head, mac)) = split_line(line)
        {
            let mut prev = [0u8; 32];
            let from_line = prev_mac(head);
            let ok = match from_line {
                Some(p) => chain_of(key, &p, head) == mac,
                None => {
                    have_prev
                        && hex::decode_to_slice(prev_hex, &mut prev).is_ok()
                        && chain_of(key, &prev, head) == mac
                }
            };
            if ok {
                best = Some(g);
            }
        }
        // The chain value of this line, as the next line's predecessor (decoded only if used).
        match line.len().checked_sub(CHAIN_SUFFIX_LEN) {
            Some(cut) if line[cut..].starts_with(b",\"mac\":\"") && line.ends_with(b"\"}") => {
                prev_hex.copy_from_slice(&line[cut + 8..cut + 72]);
                have_prev = true;
            }
            _ => have_prev = false,
        }
    })?;
    best
}

/// The generation a record's canonical head ends with (`…,"vault_generation":N`).
fn stamped(head: &[u8]) -> Option<u64> {
    let digits = head.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let (rest, num) = head.split_at(head.len() - digits);
    if !rest.ends_with(b",\"vault_generation\":") {
        return None;
    }
    std::str::from_utf8(num).ok()?.parse().ok()
}

/// The `prev_mac` a record that starts a file carries (`{"seq":N,"prev_mac":"<hex>",…`).
fn prev_mac(head: &[u8]) -> Option<[u8; 32]> {
    let rest = head.strip_prefix(b"{\"seq\":")?;
    let at = rest.iter().position(|b| !b.is_ascii_digit())?;
    let hexpart = rest[at..].strip_prefix(b",\"prev_mac\":\"")?.get(..64)?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hexpart, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditLog, KeySource, Record, Rotation};

    fn stamped_record(g: Option<u64>) -> Record {
        let mut r = Record::new("vault", "daemon");
        r.vault_generation = g;
        r
    }

    #[test]
    fn the_highest_genuine_generation_counts_and_forged_or_replayed_lines_do_not_lower_it() {
        let t = tempfile::tempdir().unwrap();
        let log = t.path().join("audit.log");
        let key = Key::from_bytes(&[7; 32]);
        assert_eq!(highest(&log, &key), None, "no log");
        let audit =
            AuditLog::open(&log, KeySource::Fixed(key.clone()), Rotation::default()).unwrap();
        audit.append(&stamped_record(None)).unwrap();
        assert_eq!(highest(&log, &key), None, "no stamped record");
        for g in [3, 5, 9, 9] {
            audit.append(&stamped_record(Some(g))).unwrap();
        }
        audit.append(&stamped_record(None)).unwrap();
        assert_eq!(highest(&log, &key), Some(9));
        // Another key vouches for nothing.
        assert_eq!(highest(&log, &Key::from_bytes(&[8; 32])), None);
        // A line forged without the key, and an old genuine line copied to the end: still 9.
        let text = std::fs::read_to_string(&log).unwrap();
        let old = text.lines().nth(1).unwrap().to_string();
        let forged = old.replace("\"vault_generation\":3", "\"vault_generation\":1");
        let edited_down = text.replace("\"vault_generation\":9", "\"vault_generation\":2");
        std::fs::write(&log, format!("{text}{old}\n{forged}\n")).unwrap();
        assert_eq!(highest(&log, &key), Some(9));
        // Lines forged to claim more are not believed, one or many (past the rounds).
        let high = |g: u64| {
            old.replace(
                "\"vault_generation\":3",
                &format!("\"vault_generation\":{g}"),
            )
        };
        std::fs::write(&log, format!("{text}{}\n", high(99))).unwrap();
        assert_eq!(highest(&log, &key), Some(9));
        assert_eq!(claimed(&log), Some(99), "doctor's hint reads claims");
        let many: String = (100..110).map(|g| format!("{}\n", high(g))).collect();
        std::fs::write(&log, format!("{text}{many}")).unwrap();
        assert_eq!(highest(&log, &key), Some(9));
        // Rotated away: read from the newest rotated file when the current one has none.
        std::fs::write(&log, &text).unwrap();
        std::fs::rename(&log, crate::audit::rotated_path(&log, 1)).unwrap();
        std::fs::write(&log, "").unwrap();
        assert_eq!(highest(&log, &key), Some(9));
        std::fs::rename(crate::audit::rotated_path(&log, 1), &log).unwrap();
        // Records edited down no longer hold: the highest genuine one left counts.
        std::fs::write(&log, edited_down).unwrap();
        assert_eq!(highest(&log, &key), Some(5));
    }

    #[test]
    fn a_generation_is_read_only_from_the_end_of_the_head() {
        assert_eq!(
            stamped(br#"{"seq":1,"event":"x","vault_generation":42"#),
            Some(42)
        );
        assert_eq!(
            stamped(br#"{"seq":1,"message":"\"vault_generation\":4"#),
            None
        );
        assert_eq!(stamped(br#"{"seq":1,"count":42"#), None);
        let hexv = "ab".repeat(32);
        let head = format!(r#"{{"seq":12,"prev_mac":"{hexv}","ts":"t""#);
        assert_eq!(prev_mac(head.as_bytes()), Some([0xab; 32]));
        assert_eq!(prev_mac(br#"{"seq":12,"ts":"t""#), None);
    }
}
