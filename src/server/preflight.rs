//! Checks made before the daemon serves, and before it prints or audits anything: the socket
//! directory and "is one already running" ([`super::socket::prepare`]), the state directories,
//! the state files that exist, and the file store when it is the backend. A problem refuses the
//! start with one line that says how to fix it; nothing is chmodded. Stale temp files left by an
//! interrupted atomic write are removed here.

use super::StartError;
use crate::backend::file::FileStore;
use crate::fsutil::{self, Access};
use crate::paths::Paths;
use std::path::Path;

/// Runs every check that does not depend on the backend; returns notes for the start-up output
/// (stale temp files removed). Safe to run twice.
pub fn check(paths: &Paths) -> Result<Vec<String>, StartError> {
    super::socket::prepare(&paths.socket)?;
    check_state(paths)
}

/// [`check`] for a socket-activated daemon: the service manager bound the socket and holds it
/// (asking it whether a daemon already answers would start waiting on ourselves), so only its
/// directory is checked, then everything else as in [`check`].
pub fn check_activated(paths: &Paths) -> Result<Vec<String>, StartError> {
    if let Some(dir) = paths.socket.parent() {
        fsutil::ensure_private_dir(dir).map_err(|e| {
            StartError::Other(format!(
                "unsafe socket directory: {e} (the socket unit's DirectoryMode= must be 0700)"
            ))
        })?;
    }
    check_state(paths)
}

/// The state directories and files, and stale temp files (shared by both checks).
fn check_state(paths: &Paths) -> Result<Vec<String>, StartError> {
    for (what, file) in [("config", &paths.config), ("data", &paths.audit)] {
        if let Some(dir) = file.parent() {
            fsutil::ensure_private_dir(dir)
                .map_err(|e| StartError::Other(format!("unsafe {what} directory: {e}")))?;
        }
    }
    for (what, file) in [
        ("policy file", &paths.config),
        ("pending queue", &paths.pending),
        ("audit log", &paths.audit),
    ] {
        state_file(what, file)?;
    }
    let mut notes = Vec::new();
    for file in [&paths.config, &paths.pending, &paths.file_store] {
        match fsutil::remove_stale_temps(file) {
            Ok(removed) => notes.extend(removed.into_iter().map(|name| {
                format!(
                    "removed {} (a temporary copy left by an interrupted write)",
                    file.with_file_name(name).display()
                )
            })),
            Err(e) => notes.push(format!(
                "warning: could not remove stale temporary files next to {}: {e}",
                file.display()
            )),
        }
    }
    Ok(notes)
}

/// Refuses a state file that exists but is not a regular 0600 file of ours.
fn state_file(what: &str, path: &Path) -> Result<(), StartError> {
    fsutil::open_state(path, Access::Read)
        .map(drop)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                StartError::Other(format!("unsafe {what}: {e}"))
            }
            _ => StartError::Other(format!("cannot read the {what} {}: {e}", path.display())),
        })
}

/// Checks the file store as the backend: its directory (0700, ours) and file (0600, ours,
/// regular, valid).
pub fn check_file_store(paths: &Paths) -> Result<(), StartError> {
    FileStore::new(&paths.file_store)
        .check()
        .map_err(|e| StartError::Other(e.to_string()))
}
