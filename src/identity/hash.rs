//! A binary's identity as the policy names it: its SHA-256 in the text form
//! `sha256:<64 lowercase hex>`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A binary's SHA-256 in its text form `sha256:<64 lowercase hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct BinaryHash(String);

/// Written as its text, borrowed (`serde(into = "String")` would clone it for every record).
impl Serialize for BinaryHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl BinaryHash {
    /// From raw digest bytes.
    pub fn from_digest(digest: &[u8]) -> BinaryHash {
        BinaryHash(format!("sha256:{}", hex::encode(digest)))
    }

    /// Parses `sha256:<hex>` or bare hex (64 digits, any case).
    pub fn parse(s: &str) -> Result<BinaryHash, NotAHash> {
        let hexpart = s.strip_prefix("sha256:").unwrap_or(s);
        if hexpart.len() != 64 || !hexpart.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(NotAHash(s.to_string()));
        }
        Ok(BinaryHash(format!(
            "sha256:{}",
            hexpart.to_ascii_lowercase()
        )))
    }

    /// The full text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The first 12 hex digits, for display.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }
}

/// A text that is not a SHA-256 hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a SHA-256 hash (expected sha256:<64 hex digits>)")]
pub struct NotAHash(pub String);

impl TryFrom<String> for BinaryHash {
    type Error = NotAHash;
    fn try_from(s: String) -> Result<Self, NotAHash> {
        BinaryHash::parse(&s)
    }
}

impl From<BinaryHash> for String {
    fn from(h: BinaryHash) -> String {
        h.0
    }
}

impl fmt::Display for BinaryHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
