//! The keys below the vault key, and the encrypted records.
//!
//! Every key is HKDF-SHA-256 of the vault key (salt: the vault's id; info: its purpose), so one
//! random 256-bit key is all that slots wrap, and no subkey reveals another:
//!
//! | subkey | use |
//! |---|---|
//! | records | XChaCha20-Poly1305 of each record |
//! | index | a record's id: HMAC of its (service, target) |
//! | file | the MAC over the whole body line |
//! | audit | the audit chain and config.json's seal (outside the vault) |
//!
//! A record's plaintext is `{"service","target","value","attributes"}`; its associated data is
//! `keychain-auth vault record v1|<vault id>|<record id>`, and the id is the keyed HMAC of the
//! service and target. Opening a record checks that its plaintext names the service and target
//! its id stands for, so a ciphertext moved onto another record's id (or into another vault)
//! does not open.

use super::format;
use crate::protocol::Attributes;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::Mac;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

/// Where each key sits in the key page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    /// The vault key itself.
    Vault = 0,
    /// Record encryption.
    Records = 1,
    /// Record ids.
    Index = 2,
    /// The body's MAC.
    File = 3,
    /// The audit chain and the policy seal.
    Audit = 4,
}

impl Sub {
    fn info(self) -> &'static [u8] {
        match self {
            Sub::Vault => b"",
            Sub::Records => b"keychain-auth vault v1 records",
            Sub::Index => b"keychain-auth vault v1 index",
            Sub::File => b"keychain-auth vault v1 file mac",
            Sub::Audit => b"keychain-auth vault v1 audit chain and policy seal",
        }
    }

    /// The byte range of this key in the key page.
    pub fn range(self) -> std::ops::Range<usize> {
        let at = self as usize * 32;
        at..at + 32
    }
}

/// The subkeys other than the vault key, in page order.
pub const DERIVED: [Sub; 4] = [Sub::Records, Sub::Index, Sub::File, Sub::Audit];

/// Fills `out` with subkey `sub` of `vault_key` for the vault `vault_id`.
pub fn derive(vault_key: &[u8], vault_id: &str, sub: Sub, out: &mut [u8]) {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(vault_id.as_bytes()), vault_key);
    // 32 bytes is far below HKDF-SHA-256's limit of 8,160.
    let _ = hk.expand(sub.info(), out);
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// HMAC-SHA-256 of `parts` under `key`.
pub fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..key.len().min(64)].copy_from_slice(&key[..key.len().min(64)]);
    let mut m = <HmacSha256 as hmac::KeyInit>::new(&block.into());
    block.zeroize();
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// The id of (service, target): lengths first, so no two pairs share their bytes.
pub fn record_id(index_key: &[u8], service: &str, target: &str) -> String {
    let s = (service.len() as u64).to_be_bytes();
    let t = (target.len() as u64).to_be_bytes();
    hex::encode(mac(
        index_key,
        &[&s, service.as_bytes(), &t, target.as_bytes()],
    ))
}

fn aad(vault_id: &str, id: &str) -> Vec<u8> {
    format!("keychain-auth vault record v1|{vault_id}|{id}").into_bytes()
}

/// What a record holds.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plain {
    /// The service namespace.
    pub service: String,
    /// The target name.
    pub target: String,
    /// The secret.
    pub value: String,
    /// Its attributes.
    #[serde(default)]
    pub attributes: Attributes,
}

impl Drop for Plain {
    fn drop(&mut self) {
        self.value.zeroize();
    }
}

/// Why a record does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a record of the vault does not open under its key (altered, moved or from another vault)")]
pub struct BadRecord;

/// A record as held in memory: its id, and its nonce and ciphertext decoded from hex once.
#[derive(Clone)]
pub struct Sealed {
    /// The record's id (hex, as in the file and the associated data).
    pub id: String,
    /// The nonce.
    pub nonce: [u8; 24],
    /// Ciphertext and tag.
    pub ct: Vec<u8>,
}

impl Sealed {
    /// Decodes a record of the file.
    pub fn decode(record: &format::Record) -> Result<Sealed, BadRecord> {
        let mut nonce = [0u8; 24];
        hex::decode_to_slice(&record.nonce, &mut nonce).map_err(|_| BadRecord)?;
        Ok(Sealed {
            id: record.id.clone(),
            nonce,
            ct: hex::decode(&record.ct).map_err(|_| BadRecord)?,
        })
    }

    /// The record as the file holds it.
    pub fn encode(&self) -> format::Record {
        format::Record {
            id: self.id.clone(),
            nonce: hex::encode(self.nonce),
            ct: hex::encode(&self.ct),
        }
    }
}

/// Encrypts `plain` into a record.
pub fn seal(keys: &[u8], vault_id: &str, plain: &Plain) -> Result<Sealed, super::slots::SlotError> {
    let id = record_id(&keys[Sub::Index.range()], &plain.service, &plain.target);
    let mut nonce = [0u8; 24];
    super::slots::random(&mut nonce)?;
    let msg = Zeroizing::new(
        serde_json::to_vec(plain)
            .map_err(|e| super::slots::SlotError::Kdf(format!("record encoding: {e}")))?,
    );
    let cipher = XChaCha20Poly1305::new(
        keys[Sub::Records.range()]
            .try_into()
            .map_err(|_| super::slots::SlotError::Kdf("the record key is not 32 bytes".into()))?,
    );
    let aad = aad(vault_id, &id);
    let ct = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &msg,
                aad: &aad,
            },
        )
        .map_err(|_| super::slots::SlotError::Kdf("encryption failed".into()))?;
    Ok(Sealed { id, nonce, ct })
}

/// Decrypts `record`. With `check_id` (every record read from a file), also checks that it
/// names the service and target its id stands for; a record already checked, or sealed here,
/// needs only the AEAD (whose associated data binds it to that id).
pub fn open(
    keys: &[u8],
    vault_id: &str,
    record: &Sealed,
    check_id: bool,
) -> Result<Plain, BadRecord> {
    let cipher = XChaCha20Poly1305::new(
        keys[Sub::Records.range()]
            .try_into()
            .map_err(|_| BadRecord)?,
    );
    let aad = aad(vault_id, &record.id);
    let msg = Zeroizing::new(
        cipher
            .decrypt(
                &XNonce::from(record.nonce),
                Payload {
                    msg: &record.ct,
                    aad: &aad,
                },
            )
            .map_err(|_| BadRecord)?,
    );
    let plain: Plain = serde_json::from_slice(&msg).map_err(|_| BadRecord)?;
    if check_id && record_id(&keys[Sub::Index.range()], &plain.service, &plain.target) != record.id
    {
        return Err(BadRecord);
    }
    Ok(plain)
}
