//! Running under a service manager (systemd): socket activation and readiness.
//!
//! With `keychain-auth install`, systemd owns the listening socket (`keychain-auth.socket`) and
//! starts the daemon when the first caller connects, passing the socket as descriptor 3 with
//! `LISTEN_FDS=1` and `LISTEN_PID` set to the daemon's pid. [`inherited_listener`] takes it (the
//! descriptor handling, the only `unsafe` part, is the `listenfd` crate's); [`notify()`] tells the
//! manager on `NOTIFY_SOCKET` that the daemon is ready (`READY=1`) or stopping (`STOPPING=1`).
//!
//! Only a descriptor meant for this very process is taken: `LISTEN_PID` must be present and equal
//! to our pid (a variable inherited from some other process's environment is ignored), and the
//! descriptor must be a listening Unix stream socket bound to a path.

use super::StartError;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::PathBuf;

/// The socket a service manager passed to this process, with the path it is bound to; `None`
/// when the process was not socket-activated.
pub fn inherited_listener() -> Result<Option<(UnixListener, PathBuf)>, StartError> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    if !for_us || count == 0 {
        return Ok(None);
    }
    if count != 1 {
        return Err(StartError::Other(format!(
            "the service manager passed {count} sockets; keychain-auth listens on exactly one (ListenStream= once in keychain-auth.socket)"
        )));
    }
    let refused = |why: String| {
        StartError::Other(format!(
            "the socket passed by the service manager (descriptor 3) {why}"
        ))
    };
    // Takes descriptor 3 (checked to be a Unix stream socket, marked close-on-exec) and removes
    // LISTEN_PID / LISTEN_FDS from the environment. Nothing else runs threads yet.
    let listener = listenfd::ListenFd::from_env()
        .take_unix_listener(0)
        .map_err(|e| refused(format!("cannot be used: {e}")))?
        .ok_or_else(|| refused("is missing".into()))?;
    let listening = nix::sys::socket::getsockopt(&listener, nix::sys::socket::sockopt::AcceptConn)
        .map_err(|e| refused(format!("cannot be inspected: {e}")))?;
    if !listening {
        return Err(refused("is not listening".into()));
    }
    let addr = listener
        .local_addr()
        .map_err(|e| refused(format!("has no address: {e}")))?;
    let path = addr
        .as_pathname()
        .ok_or_else(|| refused("is not bound to a path (use ListenStream=/path)".into()))?
        .to_path_buf();
    Ok(Some((listener, path)))
}

/// Sends `state` (`READY=1`, `STOPPING=1`, …) to the service manager's `NOTIFY_SOCKET`, when one
/// is set; a path, or an abstract name written `@name`. Returns whether it was sent: without a
/// service manager there is nobody to tell, and a failure to tell it is not fatal (systemd then
/// times the start out and says so in its own log).
pub fn notify(state: &str) -> std::io::Result<bool> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let target = target.as_encoded_bytes();
    let sock = UnixDatagram::unbound()?;
    match target.split_first() {
        None => return Ok(false),
        Some((b'@', name)) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        }
        Some(_) => {
            use std::os::unix::ffi::OsStrExt;
            sock.send_to(
                state.as_bytes(),
                std::path::Path::new(std::ffi::OsStr::from_bytes(target)),
            )?;
        }
    }
    Ok(true)
}
