//! The key of the audit chain and the policy seal, and the names reserved for keychain-auth's
//! own items in a store. Below every store and the vault (which derives this key), above
//! nothing but the store's item types: whoever keeps or uses the key imports it from here.

use crate::item::BackendError;
use hmac::{KeyInit, Mac};
use std::path::PathBuf;

/// Why the audit key (which also seals the policy) cannot be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyError {
    /// The item in the store is not a key.
    #[error("the audit key ({KEY_SERVICE}/{KEY_TARGET}) in the store is not 64 hex digits")]
    Malformed,
    /// The store cannot be read.
    #[error("cannot read the audit key from the {store}: {source}")]
    Read {
        /// The store's description.
        store: String,
        /// Why.
        source: BackendError,
    },
    /// The lock serialising the key's creation cannot be taken.
    #[error("cannot lock {}: {source}", .path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why (shared, so that the error can be cloned: the policy cache keeps it).
        source: std::sync::Arc<std::io::Error>,
    },
    /// The store has no key but the chain has started: another store than the daemon's.
    #[error(
        "the {store} holds no audit key ({KEY_SERVICE}/{KEY_TARGET}) but the audit log's chain has started ({} exists): \
         this command is probably using another store than the daemon (check the session bus and KEYCHAIN_AUTH_BACKEND; \
         `keychain-auth doctor` says which store is chosen). If the key is really lost, move {} away to start a new chain \
         (audit verify will report the change)",
        .state.display(),
        .state.display()
    )]
    Forked {
        /// The store's description.
        store: String,
        /// The audit state file.
        state: PathBuf,
    },
    /// No random bytes for a new key.
    #[error("the OS gave no random bytes: {0}")]
    Random(getrandom::Error),
    /// The new key cannot be stored.
    #[error("cannot store the audit key in the {store}: {source}")]
    Store {
        /// The store's description.
        store: String,
        /// Why.
        source: BackendError,
    },
    /// No store could be selected to hold it (the selection's message).
    #[error("{0}")]
    Select(String),
}

/// Services starting with this are reserved for keychain-auth itself: no request, policy entry
/// or grant may name one.
pub(crate) const RESERVED_PREFIX: &str = "keychain-auth.";
/// The reserved service holding the key.
pub(crate) const KEY_SERVICE: &str = "keychain-auth.internal";
/// The target holding the key.
pub(crate) const KEY_TARGET: &str = "audit-key";

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// True when `service` is reserved for keychain-auth (see [`RESERVED_PREFIX`]).
pub(crate) fn is_reserved_service(service: &str) -> bool {
    service.starts_with(RESERVED_PREFIX)
}

/// The 32-byte key of the audit chain and the policy seal. Never printed.
#[derive(Clone)]
pub struct Key {
    mac: HmacSha256,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Key {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Key {
        // HMAC pads a key shorter than the hash's 64-byte block with zeros (RFC 2104), so the
        // padded block is the same key, given in the form that needs no length check.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(bytes);
        let mac = <HmacSha256 as KeyInit>::new(&block.into());
        Key { mac }
    }

    /// 32 fresh random bytes from the OS.
    pub(crate) fn generate() -> Result<([u8; 32], Key), KeyError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(KeyError::Random)?;
        Ok((bytes, Key::from_bytes(&bytes)))
    }

    /// HMAC-SHA-256 over the concatenation of `parts`.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = self.mac.clone();
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// The chain value of a record with `canonical` bytes following `prev`.
    pub(crate) fn chain(&self, prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
        self.mac(&[prev, canonical])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_padded_key_is_rfc_2104_hmac() {
        // RFC 4231 test case 1: key 0x0b × 20, "Hi There". Zero-padding the key to 32 bytes
        // gives the same HMAC block, so the same value.
        let mut rfc = [0u8; 32];
        rfc[..20].fill(0x0b);
        assert_eq!(
            hex::encode(Key::from_bytes(&rfc).mac(&[b"Hi There"])),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        let bytes = [0x0bu8; 32];
        let mut reference = <HmacSha256 as KeyInit>::new_from_slice(&bytes).unwrap();
        reference.update(b"Hi There");
        let want: [u8; 32] = reference.finalize().into_bytes().into();
        assert_eq!(Key::from_bytes(&bytes).mac(&[b"Hi", b" There"]), want);
    }
}
