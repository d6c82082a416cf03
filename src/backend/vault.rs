//! The vault as the broker's store (`KEYCHAIN_AUTH_BACKEND=vault`, and whenever a vault exists).
//!
//! Locked, it answers every call with [`BackendError::Locked`] (the `vault_locked` refusal, with
//! the fix). Unlocked, it holds the vault in memory (keys in a protected page, names and
//! attributes decrypted, each value decrypted only when read) and writes every change as one
//! atomic replace of the file, so a batch is all-or-nothing by construction. A change another
//! process wrote (the CLI holding the passphrase) is picked up by a stat before each call.
//!
//! One store per vault path and process ([`VaultStore::shared`]): the CLI unlocks it once with
//! the passphrase, and every part of that command (config.json's seal, the audit log) then finds
//! the same unlocked vault.
//!
//! The audit chain's key (`keychain-auth.internal/audit-key`) is not a stored item here: it is
//! derived from the vault key, so it exists only while the vault is unlocked and nothing on disk
//! gives it away.

use super::{Backend, BackendError, BackendKind, Change, Entry, Item};
use crate::fsutil::FileStamp;
use crate::protocol::Attributes;
use crate::vault::io::{FileError, VaultFile};
use crate::vault::slots::Cost;
use crate::vault::{Vault, VaultError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// What a request that needs a secret is told while the vault is locked.
pub const LOCKED_FIX: &str =
    "the vault is locked: unlock it with `keychain-auth unlock` (it asks for your passphrase)";

/// Why an unlock failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnlockError {
    /// Wrong passphrase; `delay` was waited before answering.
    #[error("wrong passphrase (attempt {attempts} since the last unlock)")]
    Wrong {
        /// Failed attempts in a row.
        attempts: u32,
    },
    /// The file cannot be used.
    #[error(transparent)]
    File(#[from] FileError),
    /// The file is older than the audit log says the vault was: a copy put back.
    #[error(
        "the vault file is generation {found}, older than generation {recorded} that the audit log records: an older copy of the vault was put back (a restore, or a program running as you undoing your changes); it was not unlocked. Put the newest copy back; if you restored this one on purpose, run `keychain-auth unlock --accept-rollback`"
    )]
    Rollback {
        /// The file's generation.
        found: u64,
        /// The highest generation the audit chain vouches for.
        recorded: u64,
    },
}

impl UnlockError {
    /// The refusal's reason on the wire: `wrong_passphrase`, `vault_rollback` or
    /// `vault_unusable`.
    pub fn reason(&self) -> &'static str {
        match self {
            UnlockError::Wrong { .. } => "wrong_passphrase",
            UnlockError::Rollback { .. } => "vault_rollback",
            UnlockError::File(_) => "vault_unusable",
        }
    }
}

/// Where an unlock learns the highest vault generation the audit log beside the vault (the
/// path) records under the vault's audit key (the key); `None` when it records none. The
/// daemon and the commands pass `audit::generation::highest`: the store sits below the audit
/// log and does not read it itself.
pub type Ledger = fn(&Path, &crate::keys::Key) -> Option<u64>;

/// What an unlock does with a vault file older than the audit log says it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollback {
    /// Refuse it ([`UnlockError::Rollback`]).
    Refuse,
    /// Open it, and take it past the recorded generation so the next unlock accepts it (the
    /// person restored it on purpose). Returns the generation it was accepted over.
    Accept,
}

struct Open {
    vault: Vault,
    stamp: FileStamp,
}

#[derive(Default)]
struct State {
    open: Option<Open>,
    failures: u32,
    /// When a caller's request last needed a secret (or the vault was unlocked): the idle
    /// time auto-lock measures.
    last_use: Option<std::time::Instant>,
}

/// The vault store.
pub struct VaultStore {
    file: VaultFile,
    state: Mutex<State>,
    /// Whether the vault is unlocked, for whoever waits for an unlock (a held request, a
    /// D-Bus `Prompt`) or a lock (the dashboard's title).
    unlocked: tokio::sync::watch::Sender<bool>,
}

/// The stores of this process, by vault path.
static SHARED: Mutex<Vec<(PathBuf, Arc<VaultStore>)>> = Mutex::new(Vec::new());

/// The delay before a wrong passphrase is answered: nothing for the first, then doubling from
/// half a second up to 30 s (on top of the KDF's own second).
pub fn failure_delay(failures: u32) -> Duration {
    if failures <= 1 {
        return Duration::ZERO;
    }
    let ms = 500u64.saturating_mul(1u64 << (failures - 2).min(6));
    Duration::from_millis(ms.min(30_000))
}

/// A process that is about to hold the vault key makes itself non-dumpable (no same-user
/// ptrace or `/proc/<pid>/mem`) and turns core files off, before the key is derived.
fn protect_process() {
    let _ = nix::sys::prctl::set_dumpable(false);
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
}

impl VaultStore {
    /// This process's store for the vault at `path`, locked until [`VaultStore::unlock`].
    pub fn shared(path: &Path) -> Arc<VaultStore> {
        let mut all = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, s)) = all.iter().find(|(p, _)| p == path) {
            return s.clone();
        }
        let s = Arc::new(VaultStore {
            file: VaultFile::new(path),
            state: Mutex::new(State::default()),
            unlocked: tokio::sync::watch::Sender::new(false),
        });
        all.push((path.to_path_buf(), s.clone()));
        s
    }

    /// The vault behind `backend`, when the store that serves is one (under any wrapper).
    pub fn of(backend: &dyn Backend) -> Option<&VaultStore> {
        backend.concrete().downcast_ref()
    }

    /// This process's store for the vault at `path`, if one was made.
    pub fn existing(path: &Path) -> Option<Arc<VaultStore>> {
        SHARED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, s)| s.clone())
    }

    /// The vault file.
    pub fn file(&self) -> &VaultFile {
        &self.file
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the vault is unlocked in this process.
    pub fn is_unlocked(&self) -> bool {
        self.lock_state().open.is_some()
    }

    /// A receiver that sees every change between locked (`false`) and unlocked (`true`): a
    /// request held for unlock, or a D-Bus `Prompt`, waits on it with `wait_for(|u| *u)`.
    pub fn watch_unlocked(&self) -> tokio::sync::watch::Receiver<bool> {
        self.unlocked.subscribe()
    }

    /// Unlocks with `passphrase`. A wrong one is answered after a delay that grows with each
    /// failure in a row ([`failure_delay`]); the count resets on success. A file older than
    /// `ledger` says the audit log records is refused ([`UnlockError::Rollback`]).
    pub fn unlock(&self, passphrase: &[u8], ledger: Ledger) -> Result<(), UnlockError> {
        self.unlock_with(passphrase, Rollback::Refuse, ledger)
            .map(|_| ())
    }

    /// The audit log beside the vault (the paths put both in the same data directory).
    fn audit_log(&self) -> PathBuf {
        self.file.path().with_file_name("audit.log")
    }

    /// [`VaultStore::unlock`], choosing what to do with a rolled-back file. Returns the
    /// generation an accepted rollback was taken past (`None`: no rollback).
    pub fn unlock_with(
        &self,
        passphrase: &[u8],
        rollback: Rollback,
        ledger: Ledger,
    ) -> Result<Option<u64>, UnlockError> {
        protect_process();
        match self.file.unlock(passphrase) {
            Ok((mut vault, mut stamp)) => {
                let recorded = ledger(&self.audit_log(), &vault.audit_key())
                    .filter(|&r| vault.generation() < r);
                if let Some(recorded) = recorded {
                    match rollback {
                        // The vault (and its key page) is dropped, zeroed, here.
                        Rollback::Refuse => {
                            return Err(UnlockError::Rollback {
                                found: vault.generation(),
                                recorded,
                            });
                        }
                        Rollback::Accept => {
                            self.file
                                .commit(&mut vault, &mut stamp, |v| {
                                    v.raise_generation(recorded);
                                    Ok(())
                                })
                                .map_err(UnlockError::File)?;
                        }
                    }
                }
                let mut st = self.lock_state();
                st.open = Some(Open { vault, stamp });
                st.failures = 0;
                st.last_use = Some(std::time::Instant::now());
                drop(st);
                self.unlocked.send_replace(true);
                Ok(recorded)
            }
            Err(FileError::Vault {
                source: VaultError::WrongPassphrase,
                ..
            }) => {
                let attempts = {
                    let mut st = self.lock_state();
                    st.failures = st.failures.saturating_add(1);
                    st.failures
                };
                std::thread::sleep(failure_delay(attempts));
                Err(UnlockError::Wrong { attempts })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Checks `passphrase` against the vault's passphrase slot without changing what is held
    /// (presence for a change the running daemon makes). A wrong one is counted and answered
    /// after the same growing delay as a wrong unlock.
    pub fn verify(&self, passphrase: &[u8]) -> Result<(), UnlockError> {
        match self.file.unlock(passphrase) {
            Ok(_) => {
                self.lock_state().failures = 0;
                Ok(())
            }
            Err(FileError::Vault {
                source: VaultError::WrongPassphrase,
                ..
            }) => {
                let attempts = self.note_failure();
                std::thread::sleep(failure_delay(attempts));
                Err(UnlockError::Wrong { attempts })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Counts a wrong passphrase given elsewhere (a command's presence check) with the unlock
    /// failures; returns the count in a row.
    pub fn note_failure(&self) -> u32 {
        let mut st = self.lock_state();
        st.failures = st.failures.saturating_add(1);
        st.failures
    }

    /// Creates the vault at this store's path and holds it unlocked.
    pub fn create(&self, passphrase: &[u8], cost: Cost) -> Result<(), FileError> {
        protect_process();
        let (vault, stamp) = self.file.create(passphrase, cost)?;
        let mut st = self.lock_state();
        st.open = Some(Open { vault, stamp });
        st.last_use = Some(std::time::Instant::now());
        drop(st);
        self.unlocked.send_replace(true);
        Ok(())
    }

    /// Forgets the keys (the page is zeroed and unmapped). Returns whether it was unlocked.
    pub fn lock(&self) -> bool {
        let was = self.lock_state().open.take().is_some();
        self.unlocked.send_replace(false);
        was
    }

    /// How long no request has needed a secret (since the last one, or since the unlock);
    /// `None` while locked. What auto-lock measures.
    pub fn idle(&self) -> Option<Duration> {
        let st = self.lock_state();
        st.open.as_ref()?;
        Some(st.last_use.map_or(Duration::ZERO, |t| t.elapsed()))
    }

    /// Notes that a request needed a secret of `service` now (the broker's own items, the
    /// audit key and the seal marker, are not a use: they are read by the daemon itself).
    fn touch(&self, service: &str) {
        if !crate::keys::is_reserved_service(service) {
            self.lock_state().last_use = Some(std::time::Instant::now());
        }
    }

    /// The generation of the vault held (`None` while locked).
    pub fn generation(&self) -> Option<u64> {
        self.lock_state()
            .open
            .as_ref()
            .map(|o| o.vault.generation())
    }

    /// How the key page is protected (`None` while locked).
    pub fn protection(&self) -> Option<crate::vault::locked::Protection> {
        self.lock_state()
            .open
            .as_ref()
            .map(|o| o.vault.protection())
    }

    /// The audit chain's and the policy seal's key (`None` while locked).
    pub fn audit_key(&self) -> Option<crate::keys::Key> {
        self.lock_state().open.as_ref().map(|o| o.vault.audit_key())
    }

    /// How many items it holds (`None` while locked).
    pub fn count(&self) -> Option<usize> {
        self.lock_state().open.as_ref().map(|o| o.vault.count())
    }

    /// Replaces the passphrase (unlocked only).
    pub fn change_passphrase(&self, passphrase: &[u8], cost: Cost) -> Result<(), BackendError> {
        self.write(|v| v.change_passphrase(passphrase, cost))
    }

    fn locked_error() -> BackendError {
        BackendError::Locked(LOCKED_FIX.into())
    }

    fn unavailable(e: impl std::fmt::Display) -> BackendError {
        BackendError::Unavailable(e.to_string())
    }

    /// Runs `f` on the current vault (refreshed from the file when another process wrote it).
    fn read<T>(
        &self,
        f: impl FnOnce(&Vault) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        let mut st = self.lock_state();
        let open = st.open.as_mut().ok_or_else(Self::locked_error)?;
        self.file
            .refresh(&mut open.vault, &mut open.stamp)
            .map_err(Self::unavailable)?;
        f(&open.vault)
    }

    /// Runs `f` and writes the vault as its next generation, all or nothing.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut Vault) -> Result<T, VaultError>,
    ) -> Result<T, BackendError> {
        let mut st = self.lock_state();
        let open = st.open.as_mut().ok_or_else(Self::locked_error)?;
        self.file
            .commit(&mut open.vault, &mut open.stamp, f)
            .map_err(Self::unavailable)
    }

    fn is_audit_key(service: &str, target: &str) -> bool {
        service == crate::keys::KEY_SERVICE && target == crate::keys::KEY_TARGET
    }
}

impl Backend for VaultStore {
    fn kind(&self) -> BackendKind {
        BackendKind::Vault
    }

    fn describe(&self) -> String {
        format!("vault {}", self.file.path().display())
    }

    /// Reads are answered from memory (one `stat` to notice another writer).
    fn fast_reads(&self) -> bool {
        true
    }

    fn locked(&self) -> Option<String> {
        (!self.is_unlocked()).then(|| LOCKED_FIX.to_string())
    }

    fn concrete(&self) -> &dyn std::any::Any {
        self
    }

    fn get(&self, service: &str, target: &str) -> Result<Option<Item>, BackendError> {
        if Self::is_audit_key(service, target) {
            // Given in the form the chain code reads a stored key in (hex); it never leaves the
            // process.
            return self.read(|v| {
                Ok(Some(Item {
                    value: hex::encode(*v.audit_key_bytes()),
                    attributes: Attributes::new(),
                }))
            });
        }
        self.touch(service);
        self.read(|v| v.get(service, target).map_err(Self::unavailable))
    }

    fn set(&self, service: &str, target: &str, item: &Item) -> Result<(), BackendError> {
        self.apply(&[Change::Set {
            service: service.into(),
            target: target.into(),
            item: item.clone(),
        }])
    }

    fn delete(&self, service: &str, target: &str) -> Result<bool, BackendError> {
        if Self::is_audit_key(service, target) {
            return Err(Self::unavailable(
                "the vault's audit key is derived from the vault key and cannot be deleted",
            ));
        }
        self.touch(service);
        self.write(|v| Ok(v.delete(service, target)))
    }

    fn list(
        &self,
        service: &str,
        prefix: &str,
        filter: &Attributes,
    ) -> Result<Vec<Entry>, BackendError> {
        self.touch(service);
        self.read(|v| Ok(v.list(service, prefix, filter)))
    }

    fn services(&self) -> Result<Vec<String>, BackendError> {
        self.touch("");
        self.read(|v| Ok(v.services()))
    }

    fn apply(&self, changes: &[Change]) -> Result<(), BackendError> {
        for c in changes {
            let (Change::Set {
                service, target, ..
            }
            | Change::Delete { service, target }) = c;
            if Self::is_audit_key(service, target) {
                return Err(Self::unavailable(
                    "the vault's audit key is derived from the vault key and cannot be stored",
                ));
            }
            self.touch(service);
        }
        self.write(|v| {
            for c in changes {
                match c {
                    Change::Set {
                        service,
                        target,
                        item,
                    } => v.set(service, target, item)?,
                    Change::Delete { service, target } => {
                        v.delete(service, target);
                    }
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An audit log that records no generation (these tests are not about rollback).
    fn no_ledger(_: &Path, _: &crate::keys::Key) -> Option<u64> {
        None
    }

    fn item(v: &str) -> Item {
        Item {
            value: v.into(),
            attributes: Attributes::new(),
        }
    }

    #[test]
    fn locked_refuses_unlocked_serves_and_lock_forgets() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("d").join("vault");
        let s = VaultStore::shared(&path);
        assert!(Arc::ptr_eq(&s, &VaultStore::shared(&path)), "one per path");
        s.create(b"pw", Cost::Floor).unwrap();
        s.set("svc", "t", &item("v")).unwrap();
        assert!(s.locked().is_none());
        assert!(s.lock());
        assert!(s.locked().unwrap().contains("keychain-auth unlock"));
        assert!(matches!(s.get("svc", "t"), Err(BackendError::Locked(_))));
        assert!(matches!(
            s.set("svc", "u", &item("v")),
            Err(BackendError::Locked(_))
        ));
        assert!(matches!(
            s.unlock(b"nope", no_ledger),
            Err(UnlockError::Wrong { attempts: 1 })
        ));
        s.unlock(b"pw", no_ledger).unwrap();
        assert_eq!(s.get("svc", "t").unwrap(), Some(item("v")));
        // A batch is one write: a reserved item in it refuses the whole batch.
        let err = s
            .apply(&[
                Change::Set {
                    service: "svc".into(),
                    target: "x".into(),
                    item: item("1"),
                },
                Change::Set {
                    service: crate::keys::KEY_SERVICE.into(),
                    target: crate::keys::KEY_TARGET.into(),
                    item: item("00"),
                },
            ])
            .unwrap_err();
        assert!(err.to_string().contains("derived"), "{err}");
        assert_eq!(s.get("svc", "x").unwrap(), None);
        // The audit key is the derived one, the same after a relock.
        let k1 = crate::audit::chain::load(s.as_ref()).unwrap().unwrap();
        s.lock();
        s.unlock(b"pw", no_ledger).unwrap();
        let k2 = crate::audit::chain::load(s.as_ref()).unwrap().unwrap();
        assert_eq!(k1.mac(&[b"m"]), k2.mac(&[b"m"]));
    }

    #[test]
    fn the_lock_state_is_watched() {
        let t = tempfile::tempdir().unwrap();
        let s = VaultStore::shared(&t.path().join("d").join("vault"));
        let mut w = s.watch_unlocked();
        assert!(!*w.borrow_and_update());
        s.create(b"pw", Cost::Floor).unwrap();
        assert!(w.has_changed().unwrap() && *w.borrow_and_update());
        s.lock();
        assert!(w.has_changed().unwrap() && !*w.borrow_and_update());
        assert!(s.unlock(b"nope", no_ledger).is_err());
        assert!(
            !w.has_changed().unwrap(),
            "a wrong passphrase changes nothing"
        );
        s.unlock(b"pw", no_ledger).unwrap();
        assert!(*w.borrow_and_update());
    }

    #[test]
    fn wrong_passphrases_slow_down() {
        assert_eq!(failure_delay(1), Duration::ZERO);
        assert_eq!(failure_delay(2), Duration::from_millis(500));
        assert_eq!(failure_delay(3), Duration::from_secs(1));
        assert!(failure_delay(5) > failure_delay(4));
        assert_eq!(failure_delay(50), Duration::from_secs(30));
    }
}
