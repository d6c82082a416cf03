//! Reading and writing the vault file: 0600 in a 0700 directory, opened without following
//! links or blocking (the state-file rules of [`crate::fsutil`]), replaced only atomically (temp
//! file, fsync, rename, fsync of the directory) under the file's lock, so a reader or a crash
//! never sees half a vault. Every write takes the next generation.

use super::{Vault, VaultError, slots::Cost};
use crate::fsutil::{self, FileLock, FileStamp};
use std::path::{Path, PathBuf};

/// Why the vault file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The file or its directory cannot be read, written or is not private.
    #[error("vault {}: {message}", .path.display())]
    Io {
        /// The vault file.
        path: PathBuf,
        /// What happened.
        message: String,
    },
    /// The content is refused.
    #[error("vault {}: {source}", .path.display())]
    Vault {
        /// The vault file.
        path: PathBuf,
        /// Why.
        source: VaultError,
    },
    /// `init` where a vault exists.
    #[error("a vault already exists at {}", .0.display())]
    Exists(PathBuf),
    /// No vault there.
    #[error("no vault at {} (create one with: keychain-auth init)", .0.display())]
    Missing(PathBuf),
}

/// The vault file at one path.
#[derive(Debug, Clone)]
pub struct VaultFile {
    path: PathBuf,
}

impl VaultFile {
    /// The file at `path` (nothing is touched).
    pub fn new(path: &Path) -> VaultFile {
        VaultFile {
            path: path.to_path_buf(),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a vault exists there (anything at the path counts: a vault that cannot be read
    /// is still the store, and says why it cannot be used).
    pub fn exists(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok()
    }

    fn io(&self, e: impl std::fmt::Display) -> FileError {
        FileError::Io {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Wraps a content error with the path.
    pub fn refused(&self, source: VaultError) -> FileError {
        FileError::Vault {
            path: self.path.clone(),
            source,
        }
    }

    fn check_dir(&self) -> Result<(), FileError> {
        match self.path.parent() {
            Some(d) => fsutil::ensure_secret_dir(d).map_err(|e| self.io(e)),
            None => Ok(()),
        }
    }

    /// The file's bytes and stamp; [`FileError::Missing`] when there is none.
    pub(crate) fn read(&self) -> Result<(Vec<u8>, FileStamp), FileError> {
        self.check_dir()?;
        match fsutil::read_with_meta(&self.path).map_err(|e| self.io(e))? {
            Some((bytes, meta)) if meta.len() <= super::format::MAX_FILE => {
                Ok((bytes, FileStamp::of(&meta)))
            }
            Some(_) => Err(self.io("larger than any vault (256 MiB); not read")),
            None => Err(FileError::Missing(self.path.clone())),
        }
    }

    /// The stamp of the file now (`None`: missing).
    pub(crate) fn stamp(&self) -> Result<Option<FileStamp>, FileError> {
        FileStamp::of_path(&self.path).map_err(|e| self.io(e))
    }

    /// Opens the vault with `passphrase`.
    pub(crate) fn unlock(&self, passphrase: &[u8]) -> Result<(Vault, FileStamp), FileError> {
        let (bytes, stamp) = self.read()?;
        let v = Vault::unlock(&bytes, passphrase).map_err(|e| self.refused(e))?;
        Ok((v, stamp))
    }

    /// Takes the file's lock (held across a read-modify-write).
    pub(crate) fn lock(&self) -> Result<FileLock, FileError> {
        self.check_dir()?;
        FileLock::acquire(&self.path).map_err(|e| self.io(e))
    }

    fn write_locked(&self, vault: &mut Vault) -> Result<FileStamp, FileError> {
        let bytes = vault.next_generation_bytes().map_err(|e| self.refused(e))?;
        fsutil::write_atomic(&self.path, &bytes).map_err(|e| self.io(e))?;
        self.stamp()?
            .ok_or_else(|| self.io("vanished right after it was written"))
    }

    /// Creates a new vault with `passphrase` (refused when one exists).
    pub(crate) fn create(
        &self,
        passphrase: &[u8],
        cost: Cost,
    ) -> Result<(Vault, FileStamp), FileError> {
        let _lock = self.lock()?;
        if self.exists() {
            return Err(FileError::Exists(self.path.clone()));
        }
        let mut v = Vault::create(passphrase, cost).map_err(|e| self.refused(e))?;
        let stamp = self.write_locked(&mut v)?;
        Ok((v, stamp))
    }

    /// Brings `vault` up to date with the file when it changed since `stamp` (another process
    /// wrote it): refused when altered or rolled back. Call with the lock held to write after.
    pub(crate) fn refresh(
        &self,
        vault: &mut Vault,
        stamp: &mut FileStamp,
    ) -> Result<(), FileError> {
        match self.stamp()? {
            Some(now) if now == *stamp => Ok(()),
            Some(_) => {
                let (bytes, now) = self.read()?;
                *vault = vault.reload(&bytes).map_err(|e| self.refused(e))?;
                *stamp = now;
                Ok(())
            }
            None => Err(FileError::Missing(self.path.clone())),
        }
    }

    /// Runs `f` on the vault under the file's lock (after [`VaultFile::refresh`]) and writes the
    /// result as the next generation. When `f` or the write fails, the vault in memory is as
    /// before and the file untouched.
    pub(crate) fn commit<T>(
        &self,
        vault: &mut Vault,
        stamp: &mut FileStamp,
        f: impl FnOnce(&mut Vault) -> Result<T, VaultError>,
    ) -> Result<T, FileError> {
        let _lock = self.lock()?;
        self.refresh(vault, stamp)?;
        let snap = vault.snapshot();
        let out = match f(vault) {
            Ok(out) => out,
            Err(e) => {
                vault.restore(snap);
                return Err(self.refused(e));
            }
        };
        match self.write_locked(vault) {
            Ok(s) => {
                *stamp = s;
                Ok(out)
            }
            Err(e) => {
                vault.restore(snap);
                Err(e)
            }
        }
    }
}
