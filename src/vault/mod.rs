//! The vault: the broker's own encrypted store (`$XDG_DATA_HOME/keychain-auth/vault`).
//!
//! Every value, target name and attribute is encrypted with XChaCha20-Poly1305 under a random
//! 256-bit vault key ([`records`]); the key is stored only wrapped, in key slots ([`slots`]); the
//! file ([`format`]) is authenticated as a whole and carries a generation counter; it is only
//! ever replaced atomically ([`io`]). While unlocked, the keys live in one page the kernel keeps
//! out of reach ([`locked`]).
//!
//! [`Vault`] is an unlocked vault in memory: target names and attributes decrypted (so lists
//! and searches need no decryption), each value decrypted only when it is read.

pub mod format;
pub mod io;
pub mod locked;
pub mod records;
pub mod slots;

use crate::item::{Entry, Item, matches_filter};
use crate::protocol::Attributes;
use format::{Body, FormatError, Parsed};
use records::{DERIVED, Plain, Sub};
use slots::{Cost, SlotError};
use std::collections::BTreeMap;
use zeroize::Zeroize;

/// Why a vault cannot be opened or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    /// The file is not a vault this code reads.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// No slot opens with this passphrase.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// The body does not match its MAC under the vault key.
    #[error(
        "the vault file was altered outside keychain-auth (its MAC does not match); it was not used. Restore it from a backup (keychain-auth export --age)"
    )]
    Tampered,
    /// A record does not open.
    #[error(transparent)]
    Record(#[from] records::BadRecord),
    /// The file is older than one already seen by this process.
    #[error(
        "the vault file went back from generation {seen} to {found} (an older copy was put in its place); it was not used"
    )]
    Rollback {
        /// The generation held.
        seen: u64,
        /// The file's.
        found: u64,
    },
    /// Key derivation, randomness or encoding failed.
    #[error(transparent)]
    Slot(#[from] SlotError),
    /// No memory for the key page.
    #[error("cannot allocate protected memory for the vault key: {0}")]
    Memory(String),
}

/// A stored record with its decrypted name and attributes.
#[derive(Clone)]
struct Stored {
    attributes: Attributes,
    record: records::Sealed,
}

/// service → target → record.
type Index = BTreeMap<String, BTreeMap<String, Stored>>;

/// What a failed write restores: generation, slots, index.
type Snapshot = (u64, Vec<format::Slot>, Index);

/// An unlocked vault.
pub struct Vault {
    keys: locked::KeyPage,
    vault_id: String,
    generation: u64,
    slots: Vec<format::Slot>,
    index: Index,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Vault(generation {}, {} services, <keys redacted>)",
            self.generation,
            self.index.len()
        )
    }
}

fn page_for(vault_key: &[u8; 32], vault_id: &str) -> Result<locked::KeyPage, VaultError> {
    let mut page = locked::KeyPage::new().map_err(|e| VaultError::Memory(e.to_string()))?;
    let bytes = page.bytes_mut();
    bytes[Sub::Vault.range()].copy_from_slice(vault_key);
    for sub in DERIVED {
        let (head, tail) = bytes.split_at_mut(sub.range().start);
        records::derive(&head[Sub::Vault.range()], vault_id, sub, &mut tail[..32]);
    }
    Ok(page)
}

impl Vault {
    /// A new, empty vault with a random key and one passphrase slot.
    pub fn create(passphrase: &[u8], cost: Cost) -> Result<Vault, VaultError> {
        let mut id = [0u8; 16];
        slots::random(&mut id)?;
        let vault_id = hex::encode(id);
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        slots::random(key.as_mut())?;
        let slot = slots::wrap(&vault_id, passphrase, slots::choose(cost)?, &key)?;
        Ok(Vault {
            keys: page_for(&key, &vault_id)?,
            vault_id,
            generation: 0,
            slots: vec![slot],
            index: Index::new(),
        })
    }

    /// Opens the vault file `bytes` with `passphrase`: bounds, slot, MAC, every record.
    pub fn unlock(bytes: &[u8], passphrase: &[u8]) -> Result<Vault, VaultError> {
        let parsed = format::parse(bytes)?;
        let mut key = None;
        for slot in &parsed.body.slots {
            match slots::unwrap(&parsed.body.vault_id, slot, passphrase) {
                Ok(k) => {
                    key = Some(k);
                    break;
                }
                Err(SlotError::Wrong) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let key = key.ok_or(VaultError::WrongPassphrase)?;
        let keys = page_for(&key, &parsed.body.vault_id)?;
        Self::from_parsed(keys, parsed)
    }

    /// Re-reads the file `bytes` (changed by another process) with the keys already held:
    /// refused when it was altered, belongs to another vault or went back in generation.
    pub fn reload(&self, bytes: &[u8]) -> Result<Vault, VaultError> {
        let parsed = format::parse(bytes)?;
        if parsed.body.vault_id != self.vault_id {
            return Err(VaultError::Tampered);
        }
        if parsed.body.generation < self.generation {
            return Err(VaultError::Rollback {
                seen: self.generation,
                found: parsed.body.generation,
            });
        }
        let mut keys = locked::KeyPage::new().map_err(|e| VaultError::Memory(e.to_string()))?;
        let n = Sub::Audit.range().end;
        keys.bytes_mut()[..n].copy_from_slice(&self.keys.bytes()[..n]);
        Self::from_parsed(keys, parsed)
    }

    fn from_parsed(keys: locked::KeyPage, parsed: Parsed) -> Result<Vault, VaultError> {
        let want = records::mac(&keys.bytes()[Sub::File.range()], &[&parsed.body_bytes]);
        if !constant_eq(&want, &parsed.mac) {
            return Err(VaultError::Tampered);
        }
        let Body {
            vault_id,
            generation,
            slots,
            records: recs,
            ..
        } = parsed.body;
        let mut index = Index::new();
        for record in recs {
            let record = records::Sealed::decode(&record)?;
            let plain = records::open(keys.bytes(), &vault_id, &record, true)?;
            index.entry(plain.service.clone()).or_default().insert(
                plain.target.clone(),
                Stored {
                    attributes: plain.attributes.clone(),
                    record,
                },
            );
        }
        Ok(Vault {
            keys,
            vault_id,
            generation,
            slots,
            index,
        })
    }

    /// The file's bytes for the next generation (the generation is taken by this call).
    pub fn next_generation_bytes(&mut self) -> Result<Vec<u8>, VaultError> {
        self.generation += 1;
        let body = Body {
            format: format::FORMAT.into(),
            version: format::VERSION,
            vault_id: self.vault_id.clone(),
            generation: self.generation,
            slots: self.slots.clone(),
            records: self
                .index
                .values()
                .flat_map(|t| t.values().map(|s| s.record.encode()))
                .collect(),
        };
        let body_bytes = serde_json::to_vec(&body)
            .map_err(|e| SlotError::Kdf(format!("vault encoding: {e}")))?;
        let mac = records::mac(&self.keys.bytes()[Sub::File.range()], &[&body_bytes]);
        Ok(format::assemble(&body_bytes, &mac))
    }

    /// The generation of the file this vault was read from or last written to.
    #[cfg(test)]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// How the key page is protected.
    pub fn protection(&self) -> locked::Protection {
        self.keys.protection()
    }

    /// The raw bytes of the audit chain's key (wiped when dropped).
    pub fn audit_key_bytes(&self) -> zeroize::Zeroizing<[u8; 32]> {
        let mut k = zeroize::Zeroizing::new([0u8; 32]);
        k.copy_from_slice(&self.keys.bytes()[Sub::Audit.range()]);
        k
    }

    /// The key of the audit chain and of config.json's seal.
    pub fn audit_key(&self) -> crate::keys::Key {
        let mut k = [0u8; 32];
        k.copy_from_slice(&self.keys.bytes()[Sub::Audit.range()]);
        let key = crate::keys::Key::from_bytes(&k);
        k.zeroize();
        key
    }

    /// The item at (service, target), decrypted now.
    pub fn get(&self, service: &str, target: &str) -> Result<Option<Item>, VaultError> {
        let Some(stored) = self.index.get(service).and_then(|t| t.get(target)) else {
            return Ok(None);
        };
        let plain = records::open(self.keys.bytes(), &self.vault_id, &stored.record, false)?;
        Ok(Some(Item {
            value: plain.value.clone(),
            attributes: plain.attributes.clone(),
        }))
    }

    /// Stores `item` at (service, target) in memory (written by the next [`Vault::next_generation_bytes`]).
    pub fn set(&mut self, service: &str, target: &str, item: &Item) -> Result<(), VaultError> {
        let plain = Plain {
            service: service.into(),
            target: target.into(),
            value: item.value.clone(),
            attributes: item.attributes.clone(),
        };
        let record = records::seal(self.keys.bytes(), &self.vault_id, &plain)?;
        self.index.entry(service.into()).or_default().insert(
            target.into(),
            Stored {
                attributes: item.attributes.clone(),
                record,
            },
        );
        Ok(())
    }

    /// Removes (service, target) in memory; whether it was there.
    pub fn delete(&mut self, service: &str, target: &str) -> bool {
        let Some(t) = self.index.get_mut(service) else {
            return false;
        };
        let had = t.remove(target).is_some();
        if t.is_empty() {
            self.index.remove(service);
        }
        had
    }

    /// Targets of `service` starting with `prefix` whose attributes match `filter`, sorted.
    pub fn list(&self, service: &str, prefix: &str, filter: &Attributes) -> Vec<Entry> {
        self.index
            .get(service)
            .map(|t| {
                t.range(prefix.to_string()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .filter(|(_, s)| matches_filter(&s.attributes, filter))
                    .map(|(k, s)| Entry {
                        target: k.clone(),
                        attributes: s.attributes.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every service with at least one item, sorted.
    pub fn services(&self) -> Vec<String> {
        self.index.keys().cloned().collect()
    }

    /// How many items the vault holds.
    pub fn count(&self) -> usize {
        self.index.values().map(BTreeMap::len).sum()
    }

    /// Replaces every slot with one for `passphrase` (the old passphrase no longer opens it).
    pub fn change_passphrase(&mut self, passphrase: &[u8], cost: Cost) -> Result<(), VaultError> {
        let mut key = [0u8; 32];
        key.copy_from_slice(&self.keys.bytes()[Sub::Vault.range()]);
        let slot = slots::wrap(&self.vault_id, passphrase, slots::choose(cost)?, &key);
        key.zeroize();
        self.slots = vec![slot?];
        Ok(())
    }

    /// A snapshot of the index to restore when a write fails.
    fn snapshot(&self) -> Snapshot {
        (self.generation, self.slots.clone(), self.index.clone())
    }

    fn restore(&mut self, snap: Snapshot) {
        (self.generation, self.slots, self.index) = snap;
    }
}

fn constant_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
