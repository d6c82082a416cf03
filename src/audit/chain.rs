//! The audit chain's cryptography: the key kept in the store, the canonical bytes of a record,
//! and the HMAC-SHA-256 that links each record to the one before it.
//!
//! **Canonical bytes.** A chained line is the record's compact JSON with `"seq"` as its first
//! member and `"mac"` (the chain value) as its last: `{"seq":7,…,"mac":"<64 hex>"}`. Its
//! canonical bytes are the line exactly as written, without the newline and without the final
//! `,"mac":"<64 hex>"` member, so they end with the closing `}`. (The member is not called
//! `"chain"`: that name holds the caller chain of SPEC §10.) Byte-exact (not re-serialised)
//! on purpose: no JSON library's key order or number format can change the result, anyone can
//! reproduce it with a string operation, and any change to a byte of the line breaks the chain.
//!
//! **Chain value.** `chain(n) = HMAC-SHA-256(key, chain(n-1) || canonical(n))`, where
//! `chain(n-1)` is the previous record's 32 raw bytes (32 zero bytes before the first record).
//! The first record of every file also carries `"prev_mac"` (that input, in hex), so a file
//! can be checked on its own after older files were rotated away.

use crate::backend::{Backend, BackendError, Item};
use crate::fsutil::FileLock;
pub(crate) use crate::keys::{KEY_SERVICE, KEY_TARGET};
use crate::keys::{Key, KeyError};
use std::path::Path;

/// The store item (beside the key) recording that a chain was started with this key, so a log
/// removed together with its state is told from a log that never existed.
pub(crate) const STARTED_TARGET: &str = "audit-chain-started";

/// Whether the store says a chain was started with its key (`false` when it cannot be asked).
pub(crate) fn started(store: &dyn Backend) -> bool {
    matches!(store.get(KEY_SERVICE, STARTED_TARGET), Ok(Some(_)))
}

/// Records in the store that a chain was started with its key.
pub(crate) fn set_started(store: &dyn Backend) -> Result<(), BackendError> {
    let item = Item {
        value: "1".into(),
        attributes: Default::default(),
    };
    store.set(KEY_SERVICE, STARTED_TARGET, &item)
}

/// The `,"mac":"` that precedes a record's chain value.
const CHAIN_OPEN: &[u8] = b",\"mac\":\"";
/// Bytes after the canonical part of a chained line (without `}`): `,"mac":"<64 hex>"}`.
pub(crate) const CHAIN_SUFFIX_LEN: usize = CHAIN_OPEN.len() + 64 + 2;

/// Splits a chained line (without newline) into its canonical bytes' prefix (everything before
/// `,"mac":"`; the canonical bytes are this followed by `}`) and the chain value.
pub(crate) fn split_line(line: &[u8]) -> Option<(&[u8], [u8; 32])> {
    if line.len() < CHAIN_SUFFIX_LEN + 2 || !line.ends_with(b"\"}") {
        return None;
    }
    let cut = line.len() - CHAIN_SUFFIX_LEN;
    let (head, tail) = line.split_at(cut);
    let hexpart = tail.strip_prefix(CHAIN_OPEN)?.strip_suffix(b"\"}")?;
    let mut chain = [0u8; 32];
    hex::decode_to_slice(hexpart, &mut chain).ok()?;
    Some((head, chain))
}

/// The chain value of a line split by [`split_line`], computed from `prev`.
pub(crate) fn chain_of(key: &Key, prev: &[u8; 32], head: &[u8]) -> [u8; 32] {
    key.mac(&[prev, head, b"}"])
}

/// Turns the compact JSON of a record without `chain` (ending in `}`) into its chained line
/// (newline included) and returns the chain value.
pub(crate) fn seal_line(key: &Key, prev: &[u8; 32], mut canonical: Vec<u8>) -> (Vec<u8>, [u8; 32]) {
    let chain = key.chain(prev, &canonical);
    canonical.pop(); // the closing brace
    canonical.extend_from_slice(CHAIN_OPEN);
    let mut hexbuf = [0u8; 64];
    // 32 bytes always fit 64 hex digits.
    let _ = hex::encode_to_slice(chain, &mut hexbuf);
    canonical.extend_from_slice(&hexbuf);
    canonical.extend_from_slice(b"\"}\n");
    (canonical, chain)
}

/// The `"seq"` of a chained line: it must start with `{"seq":<digits>,`.
pub(crate) fn line_seq(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(b"{\"seq\":")?;
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    if end == 0 || end > 19 || rest[end] != b',' {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

fn parse_key(item: &Item) -> Result<Key, KeyError> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(item.value.trim(), &mut bytes).map_err(|_| KeyError::Malformed)?;
    Ok(Key::from_bytes(&bytes))
}

/// Reads the key from `store`; `Ok(None)` when there is none yet.
pub(crate) fn load(store: &dyn Backend) -> Result<Option<Key>, KeyError> {
    match store.get(KEY_SERVICE, KEY_TARGET) {
        Ok(Some(item)) => parse_key(&item).map(Some),
        Ok(None) => Ok(None),
        Err(source) => Err(KeyError::Read {
            store: store.describe(),
            source,
        }),
    }
}

/// Reads the key from `store`, creating it on first use. Creation is serialised by a lock next
/// to `lock_near` (the audit log) so two processes never make two keys, and refused when the
/// log's chain has already started (its state file is not empty): then this process is looking
/// at another store than the one holding the key (a CLI without the daemon's session bus, or
/// another `KEYCHAIN_AUTH_BACKEND`), and a second key would fork the chain.
pub(crate) fn load_or_create(store: &dyn Backend, lock_near: &Path) -> Result<Key, KeyError> {
    if let Some(k) = load(store)? {
        return Ok(k);
    }
    let key_lock = lock_near.with_file_name("audit.key");
    let _lock = FileLock::acquire(&key_lock).map_err(|e| KeyError::Lock {
        path: key_lock.clone(),
        source: std::sync::Arc::new(e),
    })?;
    if let Some(k) = load(store)? {
        return Ok(k);
    }
    let state = super::state_path(lock_near);
    if std::fs::metadata(&state).is_ok_and(|m| m.len() > 0) {
        return Err(KeyError::Forked {
            store: store.describe(),
            state,
        });
    }
    let (bytes, key) = Key::generate()?;
    let item = Item {
        value: hex::encode(bytes),
        attributes: Default::default(),
    };
    store
        .set(KEY_SERVICE, KEY_TARGET, &item)
        .map_err(|source| KeyError::Store {
            store: store.describe(),
            source,
        })?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryStore;
    use crate::keys::is_reserved_service;

    #[test]
    fn sealed_lines_split_back_and_verify() {
        let key = Key::from_bytes(&[7u8; 32]);
        let prev = [0u8; 32];
        let (line, chain) = seal_line(&key, &prev, br#"{"seq":1,"ts":"x"}"#.to_vec());
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.starts_with(r#"{"seq":1,"ts":"x","mac":""#), "{text}");
        assert!(text.ends_with("\"}\n"));
        let body = &line[..line.len() - 1];
        let (head, c) = split_line(body).unwrap();
        assert_eq!(c, chain);
        assert_eq!(head, br#"{"seq":1,"ts":"x""#);
        assert_eq!(chain_of(&key, &prev, head), chain);
        assert_eq!(line_seq(body), Some(1));
        // one byte changed: the chain no longer matches
        let edited = text.replace("\"x\"", "\"y\"");
        let (head2, c2) = split_line(edited.trim_end().as_bytes()).unwrap();
        assert_ne!(chain_of(&key, &prev, head2), c2);
        // another key gives another chain
        assert_ne!(chain_of(&Key::from_bytes(&[8u8; 32]), &prev, head), chain);
    }

    #[test]
    fn seq_parsing_is_strict() {
        assert_eq!(line_seq(br#"{"seq":12,"x":1}"#), Some(12));
        assert_eq!(line_seq(br#"{"ts":"x","seq":12}"#), None);
        assert_eq!(line_seq(br#"{"seq":,"x":1}"#), None);
        assert_eq!(line_seq(br#"{"seq":-1,"x":1}"#), None);
        assert_eq!(split_line(br#"{"seq":1}"#), None);
    }

    #[test]
    fn key_is_created_once_and_reserved() {
        let t = tempfile::tempdir().unwrap();
        let store = MemoryStore::new();
        let log = t.path().join("audit.log");
        assert!(load(&store).unwrap().is_none());
        let a = load_or_create(&store, &log).unwrap();
        let b = load_or_create(&store, &log).unwrap();
        assert_eq!(a.mac(&[b"x"]), b.mac(&[b"x"]));
        // another store, once the chain has started: no second key
        std::fs::write(crate::audit::state_path(&log), b"{}").unwrap();
        let other = MemoryStore::new();
        let err = load_or_create(&other, &log).unwrap_err();
        assert!(err.to_string().contains("another store"), "{err}");
        assert!(load(&other).unwrap().is_none());
        assert!(is_reserved_service(KEY_SERVICE));
        assert!(!is_reserved_service("keychain-auth"));
        assert_eq!(format!("{a:?}"), "Key(<redacted>)");
    }
}
