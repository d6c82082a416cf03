//! Who wrote each chunk of a connection: per-message credentials (SPEC §5).
//!
//! The listening socket gets `SO_PASSCRED` and, where the kernel has it (Linux 6.5 and later),
//! `SO_PASSPIDFD`; every accepted connection gets them too. The kernel then attaches to each chunk
//! it delivers the writer's pid, uid and gid (`SCM_CREDENTIALS`) and a pidfd pinning the writing
//! process (`SCM_PIDFD`). A stream read never joins the bytes of two writers, so every chunk
//! [`recv`] returns has exactly one [`Sender`]: a socket passed on, inherited, or kept across a
//! fork is answered as whoever wrote the request, not as whoever connected.
//!
//! Descriptors a peer sends along (`SCM_RIGHTS`) are closed at once; the control buffer has room
//! for the most one message can carry, so they can neither truncate the credentials nor pile up.

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
use nix::{setsockopt_impl, sockopt_impl};
use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `SO_PASSPIDFD` (the asm-generic value, also x86 and arm; Linux 6.5+).
const SO_PASSPIDFD: libc::c_int = 76;
/// `SCM_PIDFD` (Linux 6.5+).
const SCM_PIDFD: libc::c_int = 0x04;
/// Most descriptors one `SCM_RIGHTS` message carries (`SCM_MAX_FD`).
const SCM_MAX_FD: usize = 253;

sockopt_impl!(
    /// `SO_PASSPIDFD`: attach a pidfd of the writer to every message.
    PassPidfd,
    SetOnly,
    libc::SOL_SOCKET,
    SO_PASSPIDFD,
    bool
);

/// The process that wrote a chunk, as the kernel reports it.
#[derive(Debug)]
pub struct Sender {
    /// Its pid in the daemon's pid namespace (0 when the writer is not visible there).
    pub pid: i32,
    /// Its uid in the daemon's user namespace.
    pub uid: u32,
    /// A pidfd of the writing process (`SCM_PIDFD`), when the kernel sends one.
    pub pidfd: Option<OwnedFd>,
}

/// Turns on per-message credentials for `sock` (a listener, or an accepted connection). Returns
/// whether pidfds come with them; `SO_PASSCRED` itself is required.
pub fn enable(sock: BorrowedFd<'_>) -> io::Result<bool> {
    setsockopt(&sock, sockopt::PassCred, &true).map_err(io::Error::from)?;
    Ok(setsockopt(&sock, PassPidfd, &true).is_ok())
}

/// The receive buffer for control messages: credentials, a pidfd, and the most descriptors one
/// `SCM_RIGHTS` message can carry.
pub fn control_buffer() -> Vec<u8> {
    nix::cmsg_space!(libc::ucred, RawFd, [RawFd; SCM_MAX_FD])
}

/// Reads one chunk into `buf`. `Ok((0, _))` is end of stream. The sender is `None` when the
/// kernel attached no credentials, or a pidfd slot saying the writer is gone (with [`enable`]d
/// sockets, both must be treated as unknown).
/// `WouldBlock` is returned as an error, for use inside tokio's `try_io`.
pub fn recv(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    control: &mut [u8],
) -> io::Result<(usize, Option<Sender>)> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(control),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let bytes = msg.bytes;
    let mut cred = None;
    let mut pidfd = None;
    let mut gone = false;
    // With MSG_CTRUNC the messages cannot be read: the sender stays unknown (fail closed). The
    // buffer is large enough that the kernel never truncates what it sends on a stream socket.
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::ScmCredentials(uc) => cred = Some((uc.pid(), uc.uid())),
                ControlMessageOwned::ScmRights(fds) => fds.into_iter().for_each(close_received),
                ControlMessageOwned::Unknown(u)
                    if u.cmsg_header.cmsg_level == libc::SOL_SOCKET
                        && u.cmsg_header.cmsg_type == SCM_PIDFD =>
                {
                    match <[u8; 4]>::try_from(u.data_bytes.as_slice()).map(RawFd::from_ne_bytes) {
                        // Kernels before 6.16 put an error number here (not a descriptor) when
                        // the writer was reaped before the read.
                        Ok(raw) if raw >= 0 => pidfd = Some(own_received(raw)),
                        _ => gone = true,
                    }
                }
                _ => {}
            }
        }
    }
    // A writer the kernel could not pin (it has exited and been reaped) stays unknown: its pid
    // may already name another process (fail closed).
    if gone {
        cred = None;
    }
    Ok((bytes, cred.map(|(pid, uid)| Sender { pid, uid, pidfd })))
}

/// Takes ownership of a descriptor the kernel just installed in this process for a control
/// message (`SCM_PIDFD`, `SCM_RIGHTS`).
#[allow(unsafe_code)]
fn own_received(raw: RawFd) -> OwnedFd {
    // SAFETY: `raw` was installed in this process's descriptor table by the recvmsg call that
    // returned it, as part of a control message; nothing else in the process knows the number,
    // so this OwnedFd is its one and only owner and closes it exactly once.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

fn close_received(raw: RawFd) {
    drop(own_received(raw));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn every_chunk_names_its_writer() {
        let (a, mut b) = UnixStream::pair().unwrap();
        enable(a.as_fd()).unwrap();
        b.write_all(b"hello\n").unwrap();
        let mut buf = [0u8; 64];
        let mut control = control_buffer();
        let (n, sender) = recv(a.as_fd(), &mut buf, &mut control).unwrap();
        assert_eq!(&buf[..n], b"hello\n");
        let sender = sender.expect("credentials");
        assert_eq!(sender.pid, std::process::id() as i32);
        assert_eq!(sender.uid, nix::unistd::geteuid().as_raw());
        // Nothing more queued: WouldBlock, not a hang.
        let e = recv(a.as_fd(), &mut buf, &mut control).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn a_child_writing_on_an_inherited_socket_is_told_apart_from_its_parent() {
        use nix::fcntl::{FcntlArg, FdFlag, fcntl};
        let (a, mut b) = UnixStream::pair().unwrap();
        enable(a.as_fd()).unwrap();
        b.write_all(b"parent\n").unwrap();
        // The child inherits `b` (close-on-exec cleared) and writes on it.
        fcntl(&b, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf 'child\\n' >&{}", b.as_raw_fd()))
            .spawn()
            .unwrap();
        let child_pid = child.id() as i32;
        assert!(child.wait().unwrap().success());
        let mut buf = [0u8; 64];
        let mut control = control_buffer();
        let (n, first) = recv(a.as_fd(), &mut buf, &mut control).unwrap();
        assert_eq!(&buf[..n], b"parent\n", "one writer per chunk");
        assert_eq!(first.unwrap().pid, std::process::id() as i32);
        let (n, second) = recv(a.as_fd(), &mut buf, &mut control).unwrap();
        assert_eq!(&buf[..n], b"child\n");
        assert_eq!(second.unwrap().pid, child_pid);
    }
}
