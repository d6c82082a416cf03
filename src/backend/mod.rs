//! The keychain seam: where secrets actually live.
//!
//! [`Backend`] is the one trait the broker talks to. Stores implement single-item primitives;
//! batches go through [`Backend::apply`], which must be all-or-nothing. Its default
//! implementation (`apply_with_rollback`) records what each step replaced and restores it when a
//! later step fails; a store that can commit a batch atomically overrides it.

pub mod file;
#[cfg(test)]
pub(crate) mod memory;
pub mod migrate;
pub mod secret_service;
pub mod vault;

pub(crate) use crate::item::matches_filter;
pub use crate::item::{BackendError, Change, Entry, Item};

use crate::protocol::Attributes;
use std::fmt;

/// Which kind of store serves the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// The OS keychain (Secret Service on Linux).
    Keyring,
    /// The JSON file store for headless machines.
    File,
    /// The broker's own encrypted vault.
    Vault,
}

impl BackendKind {
    /// The name used in STATUS, config and `KEYCHAIN_AUTH_BACKEND`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BackendKind::Keyring => "keyring",
            BackendKind::File => "file",
            BackendKind::Vault => "vault",
        }
    }
}

impl BackendKind {
    /// What same-user code can do with this store, said plainly (`None` for the vault).
    pub fn exposure(self) -> Option<&'static str> {
        match self {
            BackendKind::File => Some(
                "the file store keeps every secret in plain text: any program running as you can read them all, and approve itself (no passphrase guards the policy)",
            ),
            BackendKind::Keyring => Some(
                "any program running as you can read every Secret Service item over D-Bus, and approve itself (no passphrase guards the policy)",
            ),
            BackendKind::Vault => None,
        }
    }
}

/// The fix offered wherever [`BackendKind::exposure`] is shown.
pub const VAULT_FIX: &str =
    "`keychain-auth init --import --remove-plain` moves them into an encrypted vault";

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The keychain seam. Implementations must never log or format secret values.
pub trait Backend: Send + Sync {
    /// Which kind of store this is.
    fn kind(&self) -> BackendKind;

    /// A short human description (e.g. the file path) for status screens and notices.
    fn describe(&self) -> String;

    /// The item at (service, target), if any.
    fn get(&self, service: &str, target: &str) -> Result<Option<Item>, BackendError>;

    /// Stores one item, replacing value and attributes.
    fn set(&self, service: &str, target: &str, item: &Item) -> Result<(), BackendError>;

    /// Removes one item; `Ok(false)` when it did not exist.
    fn delete(&self, service: &str, target: &str) -> Result<bool, BackendError>;

    /// Targets of `service` starting with `prefix` whose attributes contain every pair of
    /// `filter`, sorted by target.
    fn list(
        &self,
        service: &str,
        prefix: &str,
        filter: &Attributes,
    ) -> Result<Vec<Entry>, BackendError>;

    /// Called by a broker that serves this store for as long as it runs: a store that caches a
    /// file may watch it from now on instead of checking it before every batch. Nothing by
    /// default.
    fn watch_for_changes(&self) {}

    /// True when `get` and `list` answer from memory or the page cache, never waiting on IPC or
    /// a sync to disk, so the server may call them on its async workers. Mutations are always
    /// run off the workers.
    fn fast_reads(&self) -> bool {
        false
    }

    /// `Some(how to unlock)` when this store is a locked vault: nothing that needs a secret
    /// (or the audit key) can be served until it is unlocked.
    fn locked(&self) -> Option<String> {
        None
    }

    /// The store itself under any wrapper, for the one caller that needs a concrete store (the
    /// vault's unlock, lock and owner commands find it with `VaultStore::of`). Nothing in
    /// particular by default.
    fn concrete(&self) -> &dyn std::any::Any {
        &()
    }

    /// Every service that holds at least one item, sorted; with [`Backend::list`] this
    /// enumerates the whole store (used by `keychain-auth migrate`). Stores that cannot
    /// enumerate say so.
    fn services(&self) -> Result<Vec<String>, BackendError> {
        Err(BackendError::Unavailable(format!(
            "the {} cannot list its services",
            self.describe()
        )))
    }

    /// Applies `changes` all-or-nothing: on failure, everything already changed is restored.
    fn apply(&self, changes: &[Change]) -> Result<(), BackendError> {
        apply_with_rollback(self, changes)
    }
}

/// Applies `changes` one by one, remembering what each replaced; when a step fails, restores
/// the earlier steps in reverse order and returns the failure.
pub(crate) fn apply_with_rollback<B: Backend + ?Sized>(
    backend: &B,
    changes: &[Change],
) -> Result<(), BackendError> {
    let mut undo: Vec<(String, String, Option<Item>)> = Vec::with_capacity(changes.len());
    for change in changes {
        let (service, target) = match change {
            Change::Set {
                service, target, ..
            }
            | Change::Delete { service, target } => (service, target),
        };
        let step = backend.get(service, target).and_then(|old| {
            match change {
                Change::Set { item, .. } => backend.set(service, target, item)?,
                Change::Delete { .. } => {
                    backend.delete(service, target)?;
                }
            }
            Ok(old)
        });
        match step {
            Ok(old) => undo.push((service.clone(), target.clone(), old)),
            Err(e) => {
                let mut failed_restores = 0usize;
                for (service, target, old) in undo.into_iter().rev() {
                    let restored = match old {
                        Some(item) => backend.set(&service, &target, &item),
                        None => backend.delete(&service, &target).map(|_| ()),
                    };
                    if restored.is_err() {
                        failed_restores += 1;
                    }
                }
                return Err(match (e, failed_restores) {
                    (e, 0) => e,
                    (BackendError::Unavailable(m) | BackendError::Locked(m), n) => {
                        BackendError::Unavailable(format!(
                            "{m}; restoring the batch also failed for {n} item(s)"
                        ))
                    }
                });
            }
        }
    }
    Ok(())
}
