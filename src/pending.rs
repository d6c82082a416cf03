//! The pending queue: `pending.json`, callers that were refused because their binary is not
//! approved, kept for the user to review (SPEC §6).
//!
//! One entry per hash. Entries expire 24 h after they were last seen, and the queue holds at most
//! [`MAX_ENTRIES`] (the least recently seen are evicted) so a flood of callers cannot fill the disk.

use crate::fsutil::{self, FileLock};
use crate::identity::BinaryHash;
use crate::identity::{Link, kept_argv, kept_word};
use crate::policy::{InterpreterRef, SelectorError, match_hash};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Most entries kept.
pub const MAX_ENTRIES: usize = 500;
/// How long an entry lives after it was last seen.
pub const EXPIRY_HOURS: i64 = 24;

/// One refused binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingEntry {
    /// Its hash.
    pub hash: BinaryHash,
    /// Its executable path as the kernel reported it.
    pub path: PathBuf,
    /// The pid of the latest attempt.
    pub pid: i32,
    /// The command line of the latest attempt (shortened).
    pub argv: Vec<String>,
    /// First refusal.
    pub first_seen: DateTime<Utc>,
    /// Latest refusal.
    pub last_seen: DateTime<Utc>,
    /// Refusals so far.
    pub attempts: u64,
    /// What it asked for last (`read`, `write`, …).
    pub last_action: String,
    /// The service it asked for last.
    pub last_service: String,
    /// When this path is registered under another hash: that hash (the binary changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_from: Option<BinaryHash>,
    /// For a script: the interpreter that ran it (`hash`/`path` above are the script's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<InterpreterRef>,
    /// Who launched the latest attempt: the caller first, then its ancestors (shortened).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<Link>,
}

/// The whole pending.json.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingFile {
    /// The entries, in no particular order.
    #[serde(default)]
    pub entries: Vec<PendingEntry>,
}

/// One refused attempt to record.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The caller's hash.
    pub hash: BinaryHash,
    /// Its executable path.
    pub path: PathBuf,
    /// Its pid.
    pub pid: i32,
    /// Its command line.
    pub argv: Vec<String>,
    /// What it asked.
    pub action: String,
    /// Which service.
    pub service: String,
    /// The registered hash of the same path, if any.
    pub changed_from: Option<BinaryHash>,
    /// For a script: its interpreter.
    pub interpreter: Option<InterpreterRef>,
    /// The caller chain, caller first.
    pub chain: Vec<Link>,
}

/// Why pending.json could not be read or changed, or a selector names no entry.
#[derive(Debug, thiserror::Error)]
pub enum PendingError {
    /// The file is not one keychain-auth may read (a link, a FIFO, another user's).
    #[error("{0}")]
    Unsafe(std::io::Error),
    /// The file cannot be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// pending.json.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a queue.
    #[error("{} is not valid ({why})", .path.display())]
    Invalid {
        /// pending.json.
        path: PathBuf,
        /// The parser's message.
        why: String,
    },
    /// The lock cannot be taken.
    #[error("cannot lock {}: {source}", .path.display())]
    Lock {
        /// pending.json.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The queue cannot be encoded.
    #[error("{0}")]
    Encode(#[from] serde_json::Error),
    /// The file cannot be written.
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        /// pending.json.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No pending caller has the hash given.
    #[error(
        "no pending caller with hash {0}; list them with: keychain-auth list-pending (or register a binary by path with: keychain-auth register PATH)"
    )]
    NoEntry(String),
    /// The selector is not a usable hash or prefix.
    #[error(transparent)]
    Selector(SelectorError),
}

/// Reads pending.json (missing → empty), dropping expired entries.
pub fn load(path: &Path) -> Result<PendingFile, PendingError> {
    parse(path, read(path)?)
}

/// The bytes of pending.json (`None`: missing), read through [`fsutil::open_state`].
fn read(path: &Path) -> Result<Option<Vec<u8>>, PendingError> {
    fsutil::read_optional(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => PendingError::Unsafe(e),
        _ => PendingError::Read {
            path: path.to_path_buf(),
            source: e,
        },
    })
}

fn parse(path: &Path, bytes: Option<Vec<u8>>) -> Result<PendingFile, PendingError> {
    let mut file: PendingFile = match bytes {
        None => PendingFile::default(),
        Some(b) => serde_json::from_slice(&b).map_err(|e| PendingError::Invalid {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?,
    };
    expire(&mut file, Utc::now());
    Ok(file)
}

fn expire(file: &mut PendingFile, now: DateTime<Utc>) {
    let cutoff = now - Duration::hours(EXPIRY_HOURS);
    file.entries.retain(|e| e.last_seen > cutoff);
}

/// Runs `f` under the lock on a fresh copy and writes the result atomically. A corrupt queue is
/// replaced (it only holds refusals, which the next attempt records again); a file that is not
/// a private regular file of ours (a link, a FIFO, another user's) is refused, not replaced.
pub fn update<T>(path: &Path, f: impl FnOnce(&mut PendingFile) -> T) -> Result<T, PendingError> {
    let _lock = FileLock::acquire(path).map_err(|source| PendingError::Lock {
        path: path.to_path_buf(),
        source,
    })?;
    let mut file = parse(path, read(path)?).unwrap_or_default();
    let out = f(&mut file);
    let mut bytes = serde_json::to_vec_pretty(&file)?;
    bytes.push(b'\n');
    fsutil::write_atomic(path, &bytes).map_err(|source| PendingError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(out)
}

/// Records a refused attempt; `true` when the caller is new to the queue.
pub fn record(path: &Path, attempt: Attempt) -> Result<bool, PendingError> {
    update(path, |file| apply_attempt(file, attempt, Utc::now()))
}

fn apply_attempt(file: &mut PendingFile, a: Attempt, now: DateTime<Utc>) -> bool {
    expire(file, now);
    // Identity keeps argv bounded already; entries are bounded here too, whatever made them.
    let argv = kept_argv(a.argv);
    let chain: Vec<Link> = a
        .chain
        .into_iter()
        .map(|mut l| {
            l.argv = kept_argv(l.argv);
            l.path = kept_word(&l.path);
            l
        })
        .collect();
    if let Some(e) = file.entries.iter_mut().find(|e| e.hash == a.hash) {
        e.path = a.path;
        e.pid = a.pid;
        e.argv = argv;
        e.last_seen = now;
        e.attempts = e.attempts.saturating_add(1);
        e.last_action = a.action;
        e.last_service = a.service;
        e.changed_from = a.changed_from;
        e.interpreter = a.interpreter;
        e.chain = chain;
        return false;
    }
    if file.entries.len() >= MAX_ENTRIES {
        file.entries.sort_by_key(|e| std::cmp::Reverse(e.last_seen));
        file.entries.truncate(MAX_ENTRIES - 1);
    }
    file.entries.push(PendingEntry {
        hash: a.hash,
        path: a.path,
        pid: a.pid,
        argv,
        first_seen: now,
        last_seen: now,
        attempts: 1,
        last_action: a.action,
        last_service: a.service,
        changed_from: a.changed_from,
        interpreter: a.interpreter,
        chain,
    });
    true
}

/// The entry a `HASH` argument (full, bare hex or unique ≥ 8-digit prefix) names.
pub fn find<'a>(file: &'a PendingFile, selector: &str) -> Result<&'a PendingEntry, PendingError> {
    let hashes: Vec<&BinaryHash> = file.entries.iter().map(|e| &e.hash).collect();
    let h = match_hash(selector, &hashes).map_err(|e| match e {
        SelectorError::NoHash(_) => PendingError::NoEntry(selector.into()),
        e => PendingError::Selector(e),
    })?;
    file.entries
        .iter()
        .find(|e| &e.hash == h)
        .ok_or_else(|| PendingError::NoEntry(selector.into()))
}

/// Removes the entry for `hash`; true when there was one.
pub fn remove(path: &Path, hash: &BinaryHash) -> Result<bool, PendingError> {
    update(path, |file| {
        let before = file.entries.len();
        file.entries.retain(|e| &e.hash != hash);
        before != file.entries.len()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(i: usize) -> Attempt {
        Attempt {
            hash: BinaryHash::from_digest(&{
                let mut d = [0u8; 32];
                d[0] = i as u8;
                d[1] = (i >> 8) as u8;
                d
            }),
            path: format!("/bin/x{i}").into(),
            pid: i as i32,
            argv: vec!["x".into(), "y".repeat(1000)],
            action: "read".into(),
            service: "aws".into(),
            changed_from: None,
            interpreter: None,
            chain: Vec::new(),
        }
    }

    #[test]
    fn upsert_counts_attempts_and_shortens_argv() {
        let mut f = PendingFile::default();
        let t0 = Utc::now();
        apply_attempt(&mut f, attempt(1), t0);
        apply_attempt(&mut f, attempt(1), t0 + Duration::minutes(5));
        assert_eq!(f.entries.len(), 1);
        let e = &f.entries[0];
        assert_eq!(e.attempts, 2);
        assert_eq!(e.first_seen, t0);
        assert_eq!(e.last_seen, t0 + Duration::minutes(5));
        assert!(e.argv[1].len() <= crate::identity::MAX_ARG_BYTES);
    }

    #[test]
    fn expires_after_a_day_and_caps_size() {
        let mut f = PendingFile::default();
        let t0 = Utc::now();
        apply_attempt(&mut f, attempt(1), t0);
        apply_attempt(&mut f, attempt(2), t0 + Duration::hours(25));
        assert_eq!(f.entries.len(), 1);
        assert_eq!(f.entries[0].pid, 2);
        for i in 0..(MAX_ENTRIES + 100) {
            apply_attempt(
                &mut f,
                attempt(i + 10),
                t0 + Duration::hours(26) + Duration::seconds(i as i64),
            );
        }
        assert_eq!(f.entries.len(), MAX_ENTRIES);
        // the newest survive
        assert!(
            f.entries
                .iter()
                .any(|e| e.pid == (MAX_ENTRIES + 109) as i32)
        );
        assert!(!f.entries.iter().any(|e| e.pid == 10));
    }

    #[test]
    fn record_and_find_on_disk() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("pending.json");
        record(&p, attempt(7)).unwrap();
        let f = load(&p).unwrap();
        let h = f.entries[0].hash.clone();
        assert_eq!(find(&f, &h.hex()[..8]).unwrap().pid, 7);
        assert!(
            find(&f, "ffffffff")
                .unwrap_err()
                .to_string()
                .contains("list-pending")
        );
        assert!(remove(&p, &h).unwrap());
        assert!(load(&p).unwrap().entries.is_empty());
    }
}
