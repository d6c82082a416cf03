//! Who is calling: peer credentials from the kernel → executable → SHA-256 (SPEC §5).
//!
//! Nothing the caller says is trusted. The uid and pid come from `SO_PEERCRED`; where the kernel
//! offers `SO_PEERPIDFD`, a pidfd pins the process so that one which exits (and whose pid could be
//! reused) before verification completes is refused. The executable is opened through
//! `/proc/<pid>/exe` and hashed from that open file, never by re-opening a path that may since
//! have been replaced. Hashes are cached by (device, inode, size, mtime, ctime) of the opened
//! file, so a large client costs one hash, not one per connection.

use crate::policy::BinaryHash;
use nix::sys::socket::{getsockopt, sockopt};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

/// Most cached hashes; the cache is cleared when full.
const CACHE_CAP: usize = 4096;

/// What the kernel says about the peer of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The peer's uid.
    pub uid: u32,
    /// The peer's pid at connect time.
    pub pid: i32,
    /// What it runs.
    pub exe: Exe,
}

/// The peer's executable, or why it cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exe {
    /// A regular executable on disk.
    Verified {
        /// Its path as the kernel reports it.
        path: PathBuf,
        /// SHA-256 of the opened file.
        hash: BinaryHash,
        /// Its command line (from `/proc/<pid>/cmdline`).
        argv: Vec<String>,
    },
    /// An executable that cannot be approved (deleted file, memfd, unreadable); the text says
    /// why.
    Unverifiable {
        /// Its path as far as it is known.
        path: Option<PathBuf>,
        /// Why it is refused.
        why: String,
    },
}

/// Why a connection cannot be served at all.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The kernel would not say who the peer is.
    #[error("cannot read peer credentials: {0}")]
    Credentials(nix::Error),
    /// The peer belongs to another user.
    #[error("peer uid {uid} (pid {pid}) is not the daemon's user")]
    ForeignUid {
        /// The peer's uid.
        uid: u32,
        /// The peer's pid.
        pid: i32,
    },
    /// The peer exited before it could be verified.
    #[error("peer pid {0} exited before it could be verified")]
    Exited(i32),
}

/// Cache of executable hashes keyed by the opened file's identity and change times.
#[derive(Debug, Default)]
pub struct HashCache {
    map: Mutex<HashMap<ExeKey, BinaryHash>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ExeKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl ExeKey {
    fn of(m: &std::fs::Metadata) -> ExeKey {
        ExeKey {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

impl HashCache {
    /// An empty cache.
    pub fn new() -> HashCache {
        HashCache::default()
    }

    /// The cached hash of the opened file `f`, if it was hashed before in this state.
    pub fn cached(&self, f: &File) -> io::Result<Option<BinaryHash>> {
        let key = ExeKey::of(&f.metadata()?);
        Ok(self.lock().get(&key).cloned())
    }

    /// The hash of the opened file `f`, computed once per (dev, ino, size, mtime, ctime).
    pub fn hash_file(&self, f: &File) -> io::Result<BinaryHash> {
        let m = f.metadata()?;
        let key = ExeKey::of(&m);
        if let Some(h) = self.lock().get(&key) {
            return Ok(h.clone());
        }
        let h = hash_reader(f)?;
        // The file may have changed while it was read; only cache a hash whose stamp held.
        let after = f.metadata()?;
        if after.mtime() == m.mtime()
            && after.mtime_nsec() == m.mtime_nsec()
            && after.ctime_nsec() == m.ctime_nsec()
            && after.size() == m.size()
        {
            let mut map = self.lock();
            if map.len() >= CACHE_CAP {
                map.clear();
            }
            map.insert(key, h.clone());
        }
        Ok(h)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ExeKey, BinaryHash>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// SHA-256 of everything `r` yields, in the text form.
pub fn hash_reader(mut r: impl Read) -> io::Result<BinaryHash> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(BinaryHash::from_digest(&hasher.finalize()))
}

/// Hashes the file at `path` (used by `register` and `upgrade`).
pub fn hash_path(path: &std::path::Path) -> io::Result<BinaryHash> {
    hash_reader(File::open(path)?)
}

/// How far [`identify`] may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hashing {
    /// Hash the executable when its hash is not cached (may take long for a large binary).
    Allowed,
    /// Only use the cache; answer `Ok(None)` on a miss (cheap enough for an async worker).
    CachedOnly,
}

/// Identifies the peer of a connected Unix socket. With [`Hashing::Allowed`] it may read a large
/// file, so the server first tries [`Hashing::CachedOnly`] on its async worker and runs the full
/// identification off the workers only on a cache miss.
pub fn identify(
    sock: BorrowedFd<'_>,
    cache: &HashCache,
    hashing: Hashing,
) -> Result<Option<Peer>, IdentityError> {
    let cred = getsockopt(&sock, sockopt::PeerCredentials).map_err(IdentityError::Credentials)?;
    let (uid, pid) = (cred.uid(), cred.pid());
    if uid != nix::unistd::geteuid().as_raw() {
        return Err(IdentityError::ForeignUid { uid, pid });
    }
    // A pidfd taken at connect time; absent on kernels before 6.5, where the pid alone is used.
    let pidfd: Option<OwnedFd> = getsockopt(&sock, sockopt::PeerPidfd).ok();
    if pidfd.as_ref().is_some_and(|fd| exited(fd.as_fd())) {
        return Err(IdentityError::Exited(pid));
    }
    let Some(exe) = read_exe(pid, cache, hashing) else {
        return Ok(None);
    };
    // Everything above was read through /proc/<pid>; if the process is gone now, the pid may
    // already belong to someone else, so none of it can be trusted.
    if pidfd.as_ref().is_some_and(|fd| exited(fd.as_fd())) {
        return Err(IdentityError::Exited(pid));
    }
    Ok(Some(Peer { uid, pid, exe }))
}

/// A pidfd polls readable once its process has exited.
fn exited(pidfd: BorrowedFd<'_>) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(pidfd, PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(n) => n > 0,
        Err(_) => true,
    }
}

/// The peer's executable; `None` when `hashing` is cache-only and the cache misses.
fn read_exe(pid: i32, cache: &HashCache, hashing: Hashing) -> Option<Exe> {
    let link = format!("/proc/{pid}/exe");
    let path = std::fs::read_link(&link).ok();
    let unverifiable = |why: String| Exe::Unverifiable {
        path: path.clone(),
        why,
    };
    let Some(p) = path.as_ref() else {
        return Some(unverifiable(format!(
            "cannot read the executable of pid {pid}"
        )));
    };
    let text = p.to_string_lossy();
    if text.starts_with("/memfd:") {
        return Some(unverifiable(format!(
            "pid {pid} runs an in-memory executable ({text}), which cannot be approved"
        )));
    }
    if text.ends_with(" (deleted)") {
        return Some(unverifiable(format!(
            "pid {pid} runs an executable that was deleted from disk ({text}), which cannot be approved; restart it from an installed file"
        )));
    }
    let file = match File::open(&link) {
        Ok(f) => f,
        Err(e) => {
            return Some(unverifiable(format!(
                "cannot open the executable of pid {pid}: {e}"
            )));
        }
    };
    let hashed = match hashing {
        Hashing::Allowed => cache.hash_file(&file).map(Some),
        Hashing::CachedOnly => cache.cached(&file),
    };
    let hash = match hashed {
        Ok(Some(h)) => h,
        Ok(None) => return None,
        Err(e) => return Some(unverifiable(format!("cannot hash {text}: {e}"))),
    };
    Some(Exe::Verified {
        path: p.clone(),
        hash,
        argv: read_cmdline(pid),
    })
}

fn read_cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| {
            bytes
                .split(|&b| b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn identifies_own_process_over_a_socketpair() {
        let (a, _b) = UnixStream::pair().unwrap();
        let cache = HashCache::new();
        assert_eq!(
            identify(a.as_fd(), &cache, Hashing::CachedOnly).unwrap(),
            None,
            "cold cache: cache-only identification must not hash"
        );
        let peer = identify(a.as_fd(), &cache, Hashing::Allowed)
            .unwrap()
            .unwrap();
        assert_eq!(
            identify(a.as_fd(), &cache, Hashing::CachedOnly).unwrap(),
            Some(peer.clone()),
            "warm cache"
        );
        assert_eq!(peer.pid, std::process::id() as i32);
        let Exe::Verified { path, hash, argv } = peer.exe else {
            panic!("{:?}", peer.exe)
        };
        assert_eq!(path, std::env::current_exe().unwrap());
        assert_eq!(hash, hash_path(&path).unwrap());
        assert!(!argv.is_empty());
    }

    #[test]
    fn cache_keys_on_file_stamp() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("bin");
        std::fs::write(&p, b"one").unwrap();
        let cache = HashCache::new();
        let h1 = cache.hash_file(&File::open(&p).unwrap()).unwrap();
        assert_eq!(h1, hash_reader(&b"one"[..]).unwrap());
        assert_eq!(cache.hash_file(&File::open(&p).unwrap()).unwrap(), h1);
        std::fs::write(&p, b"two!").unwrap();
        let h2 = cache.hash_file(&File::open(&p).unwrap()).unwrap();
        assert_eq!(h2, hash_reader(&b"two!"[..]).unwrap());
    }
}
