//! The vault file's layout, and the bounds a file must meet before any key is derived from it.
//!
//! The file is two lines:
//!
//! 1. the body, compact JSON: `{"format":"keychain-auth vault","version":1,"vault_id":"<32 hex>",
//!    "generation":N,"slots":[…],"records":[…]}`;
//! 2. `mac:<64 hex>`: HMAC-SHA-256 over the exact bytes of line 1, keyed with a subkey of the
//!    vault key (see [`super::records`]).
//!
//! Line 1 is authenticated byte for byte, so nothing (a slot, a record, the generation, their
//! order) can be changed, added or removed without the vault key. The slots must be readable
//! before the key is known: their KDF parameters are checked against [`KdfParams::check`] before
//! the KDF runs, so a file cannot make an unlock take minutes or gigabytes.

use serde::{Deserialize, Serialize};

/// The `format` member of every vault.
pub const FORMAT: &str = "keychain-auth vault";
/// The version this code writes and reads.
pub const VERSION: u32 = 1;
/// A vault file larger than this is refused unread (10,000 secrets take about 3 MB).
pub const MAX_FILE: u64 = 256 * 1024 * 1024;

/// Argon2id parameters of a passphrase slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Always `argon2id`.
    pub algorithm: String,
    /// Argon2 version (0x13 = 19).
    pub version: u32,
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
    /// 32 random bytes, hex.
    pub salt: String,
}

/// The cheapest parameters a vault may carry: OWASP's minimum for Argon2id (19 MiB, 2 passes,
/// 1 lane). Creation calibrates far above this (about one second); only an explicit creation-time
/// choice ([`super::slots::Cost::Floor`], used by tests) writes it.
pub const FLOOR: (u32, u32, u32) = (19 * 1024, 2, 1);
/// The most memory a slot may ask for (1 GiB).
pub const MAX_M_KIB: u32 = 1024 * 1024;
/// The most passes a slot may ask for.
pub const MAX_T: u32 = 64;
/// The most lanes a slot may ask for.
pub const MAX_P: u32 = 8;

/// Why a file's parameters are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the passphrase slot's KDF parameters are out of bounds ({0}); the vault file was altered or written by something else"
)]
pub struct OutOfBounds(pub String);

impl KdfParams {
    /// Checks the parameters against the bounds, before any KDF runs.
    pub fn check(&self) -> Result<(), OutOfBounds> {
        let (m0, t0, p0) = FLOOR;
        let bad = if self.algorithm != "argon2id" {
            Some(format!("algorithm {:?}, not argon2id", self.algorithm))
        } else if self.version != 0x13 {
            Some(format!("argon2 version {}, not 19", self.version))
        } else if !(m0..=MAX_M_KIB).contains(&self.m_kib) {
            Some(format!("memory {} KiB, not {m0}..={MAX_M_KIB}", self.m_kib))
        } else if !(t0..=MAX_T).contains(&self.t) {
            Some(format!("passes {}, not {t0}..={MAX_T}", self.t))
        } else if !(p0..=MAX_P).contains(&self.p) {
            Some(format!("lanes {}, not {p0}..={MAX_P}", self.p))
        } else if self.salt.len() != 64 || hex::decode(&self.salt).is_err() {
            Some("the salt is not 32 bytes of hex".into())
        } else {
            None
        };
        bad.map_or(Ok(()), |b| Err(OutOfBounds(b)))
    }

    /// The canonical text of the parameters, bound into the slot's associated data.
    pub fn canonical(&self) -> String {
        format!(
            "{}|v={}|m={}|t={}|p={}|salt={}",
            self.algorithm, self.version, self.m_kib, self.t, self.p, self.salt
        )
    }
}

/// One key slot: the vault key wrapped under a key derived from something the person has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slot {
    /// `passphrase` (the only kind so far).
    pub kind: String,
    /// How the wrapping key is derived from the passphrase.
    pub kdf: KdfParams,
    /// XChaCha20-Poly1305 nonce (24 bytes, hex).
    pub nonce: String,
    /// The wrapped vault key with its tag (48 bytes, hex).
    pub wrapped: String,
}

/// One encrypted record: a service, a target, a value and attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// HMAC of (service, target) under the index key (32 bytes, hex): opaque without the key.
    pub id: String,
    /// XChaCha20-Poly1305 nonce (24 bytes, hex).
    pub nonce: String,
    /// Ciphertext and tag, hex.
    pub ct: String,
}

/// Line 1 of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Body {
    /// [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// 16 random bytes (hex) naming this vault; bound into every slot and record.
    pub vault_id: String,
    /// Incremented by every write; a file older than one already seen is refused.
    pub generation: u64,
    /// The key slots.
    pub slots: Vec<Slot>,
    /// The records.
    pub records: Vec<Record>,
}

/// Why a vault file cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Not two lines, or the second is not `mac:<64 hex>`.
    #[error("the vault file is not a keychain-auth vault (expected a body line and a mac line)")]
    Layout,
    /// The body is not valid.
    #[error("the vault file's body is not valid: {0}")]
    Body(String),
    /// Another format or version.
    #[error(
        "the vault file is format {0:?} version {1}; this keychain-auth reads {FORMAT:?} version {VERSION}"
    )]
    Version(String, u32),
    /// A slot's parameters are out of bounds.
    #[error(transparent)]
    Bounds(#[from] OutOfBounds),
}

/// A parsed file: the body, its exact bytes (what the MAC covers) and the MAC.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The body.
    pub body: Body,
    /// Line 1 exactly as stored.
    pub body_bytes: Vec<u8>,
    /// Line 2's MAC.
    pub mac: [u8; 32],
}

/// Splits and parses a vault file, checking the format, version and every slot's bounds (no
/// key is needed or derived).
pub fn parse(bytes: &[u8]) -> Result<Parsed, FormatError> {
    let text = bytes.strip_suffix(b"\n").ok_or(FormatError::Layout)?;
    let nl = text
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(FormatError::Layout)?;
    let (body_bytes, rest) = text.split_at(nl);
    let mac_hex = rest[1..].strip_prefix(b"mac:").ok_or(FormatError::Layout)?;
    let mut mac = [0u8; 32];
    hex::decode_to_slice(mac_hex, &mut mac).map_err(|_| FormatError::Layout)?;
    let body: Body =
        serde_json::from_slice(body_bytes).map_err(|e| FormatError::Body(e.to_string()))?;
    if body.format != FORMAT || body.version != VERSION {
        return Err(FormatError::Version(body.format, body.version));
    }
    if body.vault_id.len() != 32 || hex::decode(&body.vault_id).is_err() {
        return Err(FormatError::Body("vault_id is not 16 bytes of hex".into()));
    }
    if body.slots.is_empty() {
        return Err(FormatError::Body("it has no key slot".into()));
    }
    for s in &body.slots {
        if s.kind != "passphrase" {
            return Err(FormatError::Body(format!("unknown slot kind {:?}", s.kind)));
        }
        s.kdf.check()?;
    }
    Ok(Parsed {
        body,
        body_bytes: body_bytes.to_vec(),
        mac,
    })
}

/// The file for `body_bytes` (line 1) with `mac`.
pub fn assemble(body_bytes: &[u8], mac: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body_bytes.len() + 70);
    out.extend_from_slice(body_bytes);
    out.extend_from_slice(b"\nmac:");
    out.extend_from_slice(hex::encode(mac).as_bytes());
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn params(m: u32, t: u32, p: u32) -> KdfParams {
        KdfParams {
            algorithm: "argon2id".into(),
            version: 0x13,
            m_kib: m,
            t,
            p,
            salt: "ab".repeat(32),
        }
    }

    #[test]
    fn bounds_refuse_cheap_huge_and_foreign_parameters() {
        let (m, t, p) = FLOOR;
        assert!(params(m, t, p).check().is_ok());
        assert!(params(65536, 8, 1).check().is_ok());
        for bad in [
            params(m - 1, t, p),
            params(m, t - 1, p),
            params(m, t, 0),
            params(MAX_M_KIB + 1, t, p),
            params(m, MAX_T + 1, p),
            params(m, t, MAX_P + 1),
            KdfParams {
                algorithm: "argon2i".into(),
                ..params(m, t, p)
            },
            KdfParams {
                version: 0x10,
                ..params(m, t, p)
            },
            KdfParams {
                salt: "ab".into(),
                ..params(m, t, p)
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn layout_is_strict() {
        for bad in [
            &b""[..],
            b"{}\n",
            b"{}\nmac:00\n",
            b"{}\nmac:zz\n",
            b"{}\nmac:0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let body = Body {
            format: FORMAT.into(),
            version: VERSION,
            vault_id: "00".repeat(16),
            generation: 1,
            slots: vec![],
            records: vec![],
        };
        let bytes = serde_json::to_vec(&body).unwrap();
        let err = parse(&assemble(&bytes, &[0; 32])).unwrap_err();
        assert!(err.to_string().contains("no key slot"), "{err}");
        let other = Body { version: 2, ..body };
        let bytes = serde_json::to_vec(&other).unwrap();
        assert!(matches!(
            parse(&assemble(&bytes, &[0; 32])),
            Err(FormatError::Version(_, 2))
        ));
    }
}
