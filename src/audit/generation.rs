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
use super::chain::{chain_of, split_line};
use std::io::BufRead;
use std::path::Path;

/// How many rotated files are looked at when the current one has no stamped record.
const ROTATED: usize = 5;

/// The highest vault generation recorded by a genuine record of the log at `log` (`None`: no
/// such record, or no log).
pub fn highest(log: &Path, key: &Key) -> Option<u64> {
    std::iter::once(log.to_path_buf())
        .chain((1..=ROTATED).map(|n| super::rotated_path(log, n)))
        .filter(|p| p.exists())
        .find_map(|p| highest_in(&p, key))
}

/// What the log says without the key (`doctor`, which has no passphrase): the highest
/// generation any record claims. Only a hint — [`highest`] is what an unlock trusts.
pub fn claimed(log: &Path) -> Option<u64> {
    std::iter::once(log.to_path_buf())
        .chain((1..=ROTATED).map(|n| super::rotated_path(log, n)))
        .filter(|p| p.exists())
        .find_map(|p| {
            let lines = super::verify::open_lines(&p).ok()?;
            lines
                .split(b'\n')
                .map_while(Result::ok)
                .filter_map(|l| split_line(&l).and_then(|(head, _)| stamped(head)))
                .max()
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

fn highest_in(path: &Path, key: &Key) -> Option<u64> {
    let lines = super::verify::open_lines(path).ok()?;
    let mut prev: Option<[u8; 32]> = None;
    let mut best: Option<u64> = None;
    for line in lines.split(b'\n') {
        let Ok(line) = line else { break };
        let Some((head, mac)) = split_line(&line) else {
            prev = None;
            continue;
        };
        if let Some(g) = stamped(head)
            && let Some(p) = prev_mac(head).or(prev)
            && chain_of(key, &p, head) == mac
        {
            best = best.max(Some(g));
        }
        prev = Some(mac);
    }
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
