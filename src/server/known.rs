//! Writers verified recently, remembered across connections, so that a program that connects
//! again (a long-running tool, a loop in a script's parent) is not identified from scratch each
//! time.
//!
//! An entry is pinned by the pidfd that came with the writer's bytes (`SCM_PIDFD`) and is used
//! only while that very process is alive: a pid is never reused while its process lives, so a
//! living pinned process with the writer's pid *is* the writer. Every use then revalidates the
//! remembered identity ([`identity::revalidate`]: the same executable file, the same memory image
//! — no `execve` since, even of the same program — and no tracer), exactly as a second request
//! on one connection is; an entry that fails is forgotten and the writer identified afresh.
//! Without pidfds (kernels before 6.5) nothing is remembered.

use crate::identity::sender::Sender;
use crate::identity::{self, Exe, Peer};
use std::collections::HashMap;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};

/// Most processes remembered; each holds four descriptors (its pidfd, and its `/proc/<pid>`
/// directory, `status` and `environ`).
const CAP: usize = 128;

/// The remembered writers, by pid.
#[derive(Default)]
pub struct KnownWriters {
    map: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_pid: HashMap<i32, Entry>,
    clock: u64,
}

struct Entry {
    pin: Arc<Sender>,
    peer: Arc<Peer>,
    used: u64,
}

impl KnownWriters {
    /// The identity remembered for the writer `s`, revalidated; `None` when there is none, its
    /// process is gone, or it no longer holds (then it is forgotten).
    pub fn get(&self, s: &Sender) -> Option<Arc<Peer>> {
        // The bytes' own pidfd must show a living writer: the kernel fills in the pid of a
        // writer that has since exited (even been reaped, its pid reused by the remembered
        // process). A living writer and the living pinned process with the same pid are one.
        let writer_alive = s
            .pidfd
            .as_ref()
            .is_some_and(|fd| !identity::exited(fd.as_fd()));
        let (pin, peer) = {
            let mut inner = self.lock();
            inner.clock += 1;
            let clock = inner.clock;
            let e = inner.by_pid.get_mut(&s.pid)?;
            e.used = clock;
            (e.pin.clone(), e.peer.clone())
        };
        let alive = pin
            .pidfd
            .as_ref()
            .is_some_and(|fd| !identity::exited(fd.as_fd()));
        if !writer_alive {
            // Not this entry's writer (or not provably): the entry stays while its process lives.
            if !alive {
                self.forget(&pin);
            }
            return None;
        }
        if alive && pin.uid == s.uid && identity::revalidate(&peer).is_ok() {
            return Some(peer);
        }
        self.forget(&pin);
        None
    }

    /// Remembers `peer` as the identity of the writer `pin`: only a verified writer answered as
    /// itself (not through a conduit), pinned by a pidfd.
    pub fn remember(&self, pin: &Arc<Sender>, peer: &Arc<Peer>) {
        if pin.pidfd.is_none()
            || peer.pid != pin.pid
            || !matches!(peer.exe, Exe::Verified { .. })
            || !identity::revalidates(peer)
        {
            return;
        }
        let mut inner = self.lock();
        if inner.by_pid.len() >= CAP && !inner.by_pid.contains_key(&pin.pid) {
            // Processes that exited go first, then the least recently used.
            inner.by_pid.retain(|_, e| {
                e.pin
                    .pidfd
                    .as_ref()
                    .is_some_and(|fd| !identity::exited(fd.as_fd()))
            });
            if inner.by_pid.len() >= CAP
                && let Some(oldest) = inner
                    .by_pid
                    .iter()
                    .min_by_key(|(_, e)| e.used)
                    .map(|(pid, _)| *pid)
            {
                inner.by_pid.remove(&oldest);
            }
        }
        inner.clock += 1;
        let used = inner.clock;
        inner.by_pid.insert(
            pin.pid,
            Entry {
                pin: pin.clone(),
                peer: peer.clone(),
                used,
            },
        );
    }

    /// Forgets the entry pinned by `pin` (not a newer one for the same pid).
    fn forget(&self, pin: &Arc<Sender>) {
        let mut inner = self.lock();
        if inner
            .by_pid
            .get(&pin.pid)
            .is_some_and(|e| Arc::ptr_eq(&e.pin, pin))
        {
            inner.by_pid.remove(&pin.pid);
        }
    }

    /// How many writers are remembered.
    pub fn len(&self) -> usize {
        self.lock().by_pid.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::sender;
    use crate::identity::{Context, HashCache, Hashing};
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;
    use std::process::{Child, Command, Stdio};

    /// Runs `sh -c script` with its standard output on a socket with credentials turned on, and
    /// returns the sender of the first bytes it writes (pid and pidfd, as the broker gets them)
    /// and our end of the socket.
    fn spawn_writer(script: &str) -> (Child, Arc<Sender>, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        sender::enable(ours.as_fd()).unwrap();
        let child = Command::new("sh")
            .args(["-c", script])
            .stdout(Stdio::from(OwnedFd::from(theirs)))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let (mut buf, mut control) = ([0u8; 2], sender::control_buffer());
        loop {
            match sender::recv(ours.as_fd(), &mut buf, &mut control) {
                Ok((n, Some(s))) if n > 0 => {
                    assert!(s.pidfd.is_some(), "this kernel sends pidfds");
                    return (child, Arc::new(s), ours);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    fn identified(pid: i32) -> Arc<Peer> {
        let peer = identity::identify(
            pid,
            nix::unistd::geteuid().as_raw(),
            None,
            &Context::current(),
            &HashCache::new(),
            Hashing::Allowed,
            &[],
        )
        .unwrap()
        .unwrap();
        Arc::new(peer)
    }

    /// Another chunk from the process `pin` pins, with its own pidfd, as the kernel sends it.
    fn again(pin: &Sender) -> Sender {
        Sender {
            pid: pin.pid,
            uid: pin.uid,
            pidfd: pin.pidfd.as_ref().map(|fd| fd.try_clone().unwrap()),
        }
    }

    fn unpinned(pid: i32) -> Sender {
        Sender {
            pid,
            uid: nix::unistd::geteuid().as_raw(),
            pidfd: None,
        }
    }

    #[test]
    fn a_living_unchanged_writer_is_remembered_and_an_exited_one_is_not() {
        let known = KnownWriters::default();
        let (mut child, pin, _socket) = spawn_writer("echo x; sleep 5");
        let peer = identified(pin.pid);
        known.remember(&pin, &peer);
        assert_eq!(known.get(&again(&pin)).as_deref(), Some(&*peer));
        // Bytes whose writer cannot be shown alive (no pidfd of their own) are not its.
        assert_eq!(
            known.get(&unpinned(pin.pid)),
            None,
            "no living writer shown"
        );
        assert_eq!(known.len(), 1, "the entry stays while its process lives");
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(known.get(&again(&pin)), None, "exited: forgotten");
        assert!(known.is_empty());
    }

    #[test]
    fn bytes_from_a_writer_that_has_exited_are_not_served_as_the_remembered_process() {
        // The kernel names the writer of queued bytes by pid even after it exited; when that
        // pid now belongs to a remembered process, the bytes' own (exited) pidfd tells them apart.
        let known = KnownWriters::default();
        let (mut child, pin, _socket) = spawn_writer("echo x; sleep 5");
        known.remember(&pin, &identified(pin.pid));
        let (mut gone, dead, _s) = spawn_writer("echo x");
        gone.wait().unwrap();
        let from_dead = Sender {
            pid: pin.pid,
            uid: pin.uid,
            pidfd: dead.pidfd.as_ref().map(|fd| fd.try_clone().unwrap()),
        };
        assert!(identity::exited(from_dead.pidfd.as_ref().unwrap().as_fd()));
        assert_eq!(known.get(&from_dead), None);
        assert!(
            known.get(&again(&pin)).is_some(),
            "the living writer still is"
        );
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn a_writer_that_executed_since_is_forgotten() {
        // The same program again (sh, then `exec sh` once told to): same pid, same executable;
        // the new image writes before it is looked up, as it would to send a request.
        use std::io::{Read, Write};
        let known = KnownWriters::default();
        let (mut child, pin, ours) = spawn_writer("echo x; read go; exec sh -c 'echo y; sleep 5'");
        known.remember(&pin, &identified(pin.pid));
        assert!(known.get(&pin).is_some());
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let mut y = [0u8; 2];
        (&ours).read_exact(&mut y).unwrap();
        let after = known.get(&pin);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(&y, b"y\n");
        assert_eq!(after, None, "the image it was verified as is gone");
        assert!(known.is_empty());
    }

    #[test]
    fn without_a_pidfd_or_through_a_conduit_nothing_is_remembered() {
        let known = KnownWriters::default();
        let pid = std::process::id() as i32;
        known.remember(&Arc::new(unpinned(pid)), &identified(pid));
        assert!(known.is_empty(), "no pidfd");
        let (mut child, pin, _socket) = spawn_writer("echo x; sleep 5");
        known.remember(&pin, &identified(pid));
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            known.is_empty(),
            "answered as another process (a conduit's caller)"
        );
    }
}
