//! config.json as keychain-auth writes it: every change under the exclusive lock, atomically,
//! sealed (see [`crate::policy::seal`]); an edit made outside keychain-auth is held until `policy
//! accept` adopts it, and the settings in force are the sealed ones.

use super::{PolicyError, PolicyFile, load};
use crate::fsutil::{self, FileLock};
use std::path::PathBuf;

/// Why a change to config.json was not made.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The seal key cannot be had.
    #[error("cannot seal {}: {source}", .path.display())]
    SealKey {
        /// config.json.
        path: PathBuf,
        /// Why.
        source: crate::keys::KeyError,
    },
    /// The lock cannot be taken.
    #[error("cannot lock {}: {source}", .path.display())]
    Lock {
        /// config.json.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The current file cannot be read.
    #[error(transparent)]
    Load(#[from] PolicyError),
    /// The new content cannot be sealed.
    #[error(transparent)]
    Seal(#[from] crate::policy::seal::SealError),
    /// A file cannot be written.
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        /// config.json or its sealed copy.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file was edited outside keychain-auth (the summary of the edit).
    #[error(
        "{0}; nothing was changed. Review it with `keychain-auth policy accept` (which shows the difference and adopts it), or undo the edit"
    )]
    NeedsReview(String),
    /// `policy accept` was declined.
    #[error("not adopted: nothing was changed")]
    NotAdopted,
}

/// Runs `f` on the current policy under the exclusive lock and writes the result atomically,
/// sealed (see [`crate::policy::seal`]), when `f` succeeds. A corrupt file is never overwritten, and a
/// file edited outside keychain-auth is not changed (so the edit is never sealed unreviewed)
/// until `keychain-auth policy accept` adopts it.
///
/// The seal key comes from `keys` (the broker's store, or the CLI's selection:
/// `crate::selection::key_source`). `f`'s error type is the caller's, so a change can fail with its own reasons.
pub fn update_with<T, E: From<UpdateError>>(
    paths: &crate::paths::Paths,
    keys: &crate::audit::KeySource,
    f: impl FnOnce(&mut PolicyFile) -> Result<T, E>,
) -> Result<T, E> {
    write_sealed(paths, keys, |policy, integrity| {
        if let crate::policy::seal::Integrity::Edited(d) = integrity
            && d.needs_review()
        {
            return Err(UpdateError::NeedsReview(d.summary()).into());
        }
        f(policy)
    })
}

/// Adopts the current config.json as it is (an edit made outside keychain-auth) when `confirm`
/// approves the difference shown to it; returns whether anything was adopted.
pub fn accept(
    paths: &crate::paths::Paths,
    keys: &crate::audit::KeySource,
    confirm: impl FnOnce(&crate::policy::seal::Diff) -> bool,
) -> Result<bool, UpdateError> {
    write_sealed(paths, keys, |_, integrity| match integrity {
        crate::policy::seal::Integrity::Edited(d) => {
            if confirm(d) {
                Ok(true)
            } else {
                Err(UpdateError::NotAdopted)
            }
        }
        _ => Ok(false),
    })
}

/// The seal state of `file` (just read from `paths.config`), with the key from `keys`.
pub fn integrity(
    paths: &crate::paths::Paths,
    keys: &crate::audit::KeySource,
    file: &PolicyFile,
) -> Result<crate::policy::seal::Integrity, crate::keys::KeyError> {
    let (key, store) = crate::policy::seal::key_and_store(keys, &paths.audit)?;
    Ok(crate::policy::seal::check(
        &paths.config,
        file,
        &key,
        store.as_deref(),
    ))
}

fn write_sealed<T, E: From<UpdateError>>(
    paths: &crate::paths::Paths,
    keys: &crate::audit::KeySource,
    f: impl FnOnce(&mut PolicyFile, &crate::policy::seal::Integrity) -> Result<T, E>,
) -> Result<T, E> {
    let path = &paths.config;
    let (key, store) =
        crate::policy::seal::key_and_store(keys, &paths.audit).map_err(|source| {
            UpdateError::SealKey {
                path: path.clone(),
                source,
            }
        })?;
    let _lock = FileLock::acquire(path).map_err(|source| UpdateError::Lock {
        path: path.clone(),
        source,
    })?;
    let mut policy = load(path).map_err(UpdateError::from)?;
    let integrity = crate::policy::seal::check(path, &policy, &key, store.as_deref());
    let out = f(&mut policy, &integrity)?;
    let bytes = crate::policy::seal::seal_bytes(&key, &mut policy).map_err(UpdateError::from)?;
    for target in [path.clone(), crate::policy::seal::copy_path(path)] {
        fsutil::write_atomic(&target, &bytes).map_err(|source| UpdateError::Write {
            path: target.clone(),
            source,
        })?;
    }
    if let Some(s) = &store {
        crate::policy::seal::set_marker(s.as_ref());
    }
    Ok(out)
}

/// config.json as the broker applies it, with the integrity of its settings: an edit made
/// outside keychain-auth keeps the sealed copy's top-level settings until it is accepted. The
/// flag is false when the settings could not be vouched for (no key, or an edit with no valid
/// sealed copy to take them from); callers then choose the safe side. `None` when the file
/// cannot be read.
pub(crate) fn in_force(
    paths: &crate::paths::Paths,
    keys: &crate::audit::KeySource,
) -> Option<(PolicyFile, bool)> {
    let mut now = load(&paths.config).ok()?;
    let Ok((key, store)) = crate::policy::seal::key_and_store(keys, &paths.audit) else {
        return Some((now, false));
    };
    let vouched = match crate::policy::seal::check(&paths.config, &now, &key, store.as_deref()) {
        crate::policy::seal::Integrity::Edited(_) => {
            crate::policy::seal::keep_sealed_settings(&paths.config, &mut now, &key)
        }
        crate::policy::seal::Integrity::Sealed | crate::policy::seal::Integrity::Unsealed => true,
    };
    Some((now, vouched))
}

/// The audit log's rotation the user approved (see [`in_force`]): an edit of
/// `audit_max_bytes`/`audit_keep` made outside keychain-auth applies only once accepted, so a
/// hand edit cannot rotate the history away; unvouched settings keep at least the defaults'
/// history (never less than the file asks for).
pub(crate) fn rotation(settings: Option<&(PolicyFile, bool)>) -> crate::audit::Rotation {
    match settings {
        None => crate::audit::Rotation::default(),
        Some((f, vouched)) => {
            crate::audit::Rotation::from_settings(f.audit_max_bytes, f.audit_keep, *vouched)
        }
    }
}
