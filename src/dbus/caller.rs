//! Who is calling over D-Bus: the process the bus names, identified like a socket peer.
//!
//! The bus daemon knows the process behind each connection from the kernel
//! (`SO_PEERCRED` when the client connected); `GetConnectionCredentials` tells the broker.
//! Where the bus offers a `ProcessFD` (dbus-broker, newer dbus-daemon) that pidfd pins the
//! process. Debian 12's dbus-daemon 1.14 gives only the pid: the broker opens a pidfd on it at
//! once and then asks the bus again, so a connection that closed (its pid free for reuse) in
//! between is never mistaken for whoever has that pid now. From then on every call checks
//! that the pinned process is still alive (a connection kept by a child after its opener exited
//! is refused), still runs the executable it was identified with, and has no tracer: the same
//! checks as the socket's ([`crate::identity::revalidate`]).
//!
//! What the bus does not tell: which thread of the process made the call, or whether the
//! process handed its connection to another (a forked child that inherited it is answered as
//! the parent while the parent lives). See README, "The Secret Service".

use super::{Front, SecretError, Who};
use crate::audit::Record;
use crate::identity::{self, Exe, Hashing, Peer};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use zbus::fdo::DBusProxy;
use zbus::message::Header;
use zbus::names::BusName;

/// A bus connection's process, pinned, and who it was found to be.
pub struct Pinned {
    /// Its pid.
    pub pid: i32,
    pidfd: OwnedFd,
    peer: std::sync::Mutex<Arc<Peer>>,
}

impl Pinned {
    /// Whether the pinned process has exited.
    pub fn exited(&self) -> bool {
        identity::exited(self.pidfd.as_fd())
    }
}

/// The unique bus name of the caller of `hdr`.
pub fn sender(hdr: &Header<'_>) -> Result<String, SecretError> {
    hdr.sender()
        .map(ToString::to_string)
        .ok_or_else(|| SecretError::AccessDenied("a call without a sender".into()))
}

/// The identity of the process behind the connection that sent `hdr`, and its pin. A caller
/// that cannot be verified is returned as [`Exe::Unverifiable`] (the decision path refuses and
/// audits it); a caller of another uid, or one the bus cannot describe, is an error.
pub async fn identify(front: &Arc<Front>, hdr: &Header<'_>) -> Result<Who, SecretError> {
    identify_name(front, sender(hdr)?).await
}

/// [`identify`] for the connection with unique bus name `name` (a prompt completing later on
/// behalf of the connection that opened it).
pub async fn identify_name(front: &Arc<Front>, name: String) -> Result<Who, SecretError> {
    let known = front
        .callers
        .lock()
        .ok()
        .and_then(|m| m.get(&name).cloned());
    if let Some(pin) = known {
        let peer = recheck(front, &pin).await;
        return Ok(Who { peer, pin });
    }
    let pin = Arc::new(pin_caller(front, &name).await?);
    let peer = identify_pid(front, &pin).await?;
    if let Ok(mut p) = pin.peer.lock() {
        *p = peer.clone();
    }
    if let Ok(mut m) = front.callers.lock() {
        if m.len() >= 4096 {
            // A flood of short-lived connections; their owners are gone or will be re-pinned.
            m.retain(|_, p| !p.exited());
        }
        m.insert(name, pin.clone());
    }
    Ok(Who { peer, pin })
}

/// The credentials of `name` from the bus, the process pinned.
async fn pin_caller(front: &Front, name: &str) -> Result<Pinned, SecretError> {
    let bus = DBusProxy::new(&front.conn()?)
        .await
        .map_err(|e| SecretError::Failed(format!("cannot ask the bus: {e}")))?;
    let bus_name = BusName::try_from(name.to_string())
        .map_err(|e| SecretError::AccessDenied(format!("bad sender name: {e}")))?;
    let creds = bus
        .get_connection_credentials(bus_name.clone())
        .await
        .map_err(|e| SecretError::AccessDenied(format!("the bus does not describe {name}: {e}")))?;
    let (Some(pid), Some(uid)) = (creds.process_id(), creds.unix_user_id()) else {
        return Err(SecretError::AccessDenied(format!(
            "the bus gives no pid and uid for {name}"
        )));
    };
    let pid = i32::try_from(pid).map_err(|_| SecretError::AccessDenied("bad pid".into()))?;
    if uid != identity::own_uid() {
        let _ = front.broker.audit.append(&Record::connection_denied(
            Some(pid),
            Some(uid),
            format!("D-Bus caller {name} (pid {pid}) runs as uid {uid}, not the broker's user"),
        ));
        return Err(SecretError::AccessDenied(format!(
            "uid {uid} is not the broker's user"
        )));
    }
    let gone = || {
        SecretError::AccessDenied(format!(
            "the process behind {name} (pid {pid}) exited before it could be verified"
        ))
    };
    if let Some(fd) = creds.process_fd() {
        let pidfd = fd.as_fd().try_clone_to_owned().map_err(|_| gone())?;
        return Ok(Pinned {
            pid,
            pidfd,
            peer: std::sync::Mutex::new(Arc::new(placeholder(pid))),
        });
    }
    let raw = rustix::process::Pid::from_raw(pid).ok_or_else(gone)?;
    let pidfd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty())
        .map_err(|_| gone())?;
    // Asked again with the pid pinned: the same connection still has the same pid, so the
    // pidfd is its process and not a newcomer that reused the pid.
    let again = bus
        .get_connection_credentials(bus_name)
        .await
        .map_err(|_| gone())?;
    if again.process_id() != Some(pid as u32) {
        return Err(gone());
    }
    Ok(Pinned {
        pid,
        pidfd,
        peer: std::sync::Mutex::new(Arc::new(placeholder(pid))),
    })
}

fn placeholder(pid: i32) -> Peer {
    Peer {
        uid: identity::own_uid(),
        pid,
        exe: Exe::Unverifiable {
            path: None,
            why: "not identified yet".into(),
        },
        recorded: crate::identity::Recorded::default(),
    }
}

/// Identifies the pinned process (off the async worker: hashing may take a while).
async fn identify_pid(front: &Arc<Front>, pin: &Arc<Pinned>) -> Result<Arc<Peer>, SecretError> {
    let (f, p) = (front.clone(), pin.clone());
    let peer = tokio::task::spawn_blocking(move || {
        let b = &f.broker;
        let extra = b
            .policy
            .current()
            .map(|p| p.file.interpreters.clone())
            .unwrap_or_default();
        identity::identify(
            p.pid,
            identity::own_uid(),
            Some(p.pidfd.as_fd()),
            &b.identity,
            &b.hashes,
            Hashing::Allowed,
            &extra,
        )
    })
    .await
    .map_err(|_| SecretError::Failed("identification failed".into()))?;
    match peer {
        Ok(Some(peer)) => Ok(Arc::new(peer)),
        Ok(None) | Err(_) => Err(SecretError::AccessDenied(format!(
            "pid {} exited before it could be verified",
            pin.pid
        ))),
    }
}

/// The identity of an already pinned caller for this call: refused for good once its process
/// exited (the connection outlived it), executed another program or got a tracer.
async fn recheck(front: &Arc<Front>, pin: &Arc<Pinned>) -> Arc<Peer> {
    let current = match pin.peer.lock() {
        Ok(p) => p.clone(),
        Err(_) => return Arc::new(placeholder(pin.pid)),
    };
    let refused = |why: String| {
        let path = match &current.exe {
            Exe::Verified { path, .. } => Some(path.clone()),
            Exe::Unverifiable { path, .. } => path.clone(),
        };
        Arc::new(Peer {
            uid: current.uid,
            pid: current.pid,
            exe: Exe::Unverifiable { path, why },
            recorded: crate::identity::Recorded::default(),
        })
    };
    let next = if pin.exited() {
        refused(format!(
            "pid {} that opened this D-Bus connection has exited; whoever holds the connection now is not served: reconnect",
            pin.pid
        ))
    } else if let Err(why) = identity::revalidate(&current) {
        refused(why.to_string())
    } else if identity::revalidates(&current) {
        return current;
    } else {
        match identify_pid(front, pin).await {
            Ok(now) if current.same_program(&now) => now,
            Ok(_) => refused(format!(
                "pid {} started another program (execve) after it first called; reconnect",
                pin.pid
            )),
            Err(e) => refused(e.to_string()),
        }
    };
    if let Ok(mut p) = pin.peer.lock() {
        *p = next.clone();
    }
    next
}
