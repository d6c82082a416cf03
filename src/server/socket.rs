//! Creating the listening socket without a window in which it is reachable by others: a missing
//! directory is created 0700; an existing one is never chmodded, and is refused when another
//! user owns it or group/others may write it (they could swap the socket); the socket is bound
//! under a 0177 umask and then set to 0600. A socket file left by a dead daemon is replaced; a
//! live daemon is never displaced.

use super::StartError;
use crate::fsutil;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;
use tokio::net::UnixListener;

/// Checks (creating it 0700 when missing) the socket's directory, refuses when a live daemon
/// answers on `path`, and removes a stale socket file. Changes nothing else.
pub fn prepare(path: &Path) -> Result<(), StartError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fsutil::ensure_private_dir(dir).map_err(|e| {
        StartError::Other(match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                format!("unsafe socket directory: {e} (or choose another path with --socket)")
            }
            _ => format!("cannot create socket directory {}: {e}", dir.display()),
        })
    })?;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(StartError::Other(format!(
                "{} exists and is not a socket; move it away or choose another path with --socket",
                path.display()
            )));
        }
        // Only "nobody is listening" makes a socket stale. A listener that answers slowly (or
        // not at all) is alive: never unlink a live daemon's socket.
        match std::os::unix::net::UnixStream::connect(path) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(|e| {
                    StartError::Other(format!(
                        "cannot remove stale socket {}: {e}",
                        path.display()
                    ))
                })?;
            }
            Err(e) => {
                return Err(StartError::Other(format!(
                    "cannot check whether a daemon already listens on {}: {e}",
                    path.display()
                )));
            }
            Ok(_) => {
                return Err(match crate::client::status(path, Duration::from_secs(10)) {
                    Ok(st) => StartError::AlreadyRunning {
                        socket: path.display().to_string(),
                        pid: st.pid,
                    },
                    Err(e) => StartError::Other(format!(
                        "something listens on {} but does not answer STATUS ({e}); stop it, or remove the socket file if you are sure no daemon runs",
                        path.display()
                    )),
                });
            }
        }
    }
    Ok(())
}

/// Binds `path` (after [`prepare`]), returning the listener and the socket file's (dev, inode).
pub fn bind(path: &Path) -> Result<(UnixListener, Option<(u64, u64)>), StartError> {
    prepare(path)?;
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let std_listener = bound
        .map_err(|e| StartError::Other(format!("cannot listen on {}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| StartError::Other(format!("cannot restrict {}: {e}", path.display())))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| StartError::Other(e.to_string()))?;
    let listener = UnixListener::from_std(std_listener)
        .map_err(|e| StartError::Other(format!("cannot register the socket: {e}")))?;
    let id = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    Ok((listener, id))
}

/// Registers a listener a service manager passed in (already bound, listening, 0600 by its
/// unit's `SocketMode=`) with tokio.
pub fn adopt(std_listener: std::os::unix::net::UnixListener) -> Result<UnixListener, StartError> {
    std_listener
        .set_nonblocking(true)
        .map_err(|e| StartError::Other(e.to_string()))?;
    UnixListener::from_std(std_listener)
        .map_err(|e| StartError::Other(format!("cannot register the socket: {e}")))
}

/// Removes the socket file if it is still the one this daemon bound.
pub fn remove_if_ours(path: &Path, id: Option<(u64, u64)>) {
    if let Ok(m) = std::fs::symlink_metadata(path)
        && Some((m.dev(), m.ino())) == id
    {
        let _ = std::fs::remove_file(path);
    }
}
