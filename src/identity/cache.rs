//! Executable hashes, computed once per file state.
//!
//! A hash is keyed by the opened file's whole change stamp — device, inode, size, and both the
//! modification and the status-change time to the nanosecond — so a binary rewritten in place,
//! even within the same second, is hashed again; and a hash is only cached when that stamp held
//! while the file was read.

use super::BinaryHash;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

/// Most cached hashes; the cache is cleared when full.
const CACHE_CAP: usize = 4096;

/// Cache of executable hashes keyed by the opened file's identity and change times.
#[derive(Debug, Default)]
pub struct HashCache {
    map: Mutex<HashMap<FileKey, BinaryHash>>,
}

/// A file's identity and change stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileKey {
    /// The key of a file from its `stat`.
    pub(crate) fn of_stat(st: &nix::sys::stat::FileStat) -> FileKey {
        FileKey {
            dev: st.st_dev,
            ino: st.st_ino,
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }

    /// The key of a file's metadata.
    pub(crate) fn of(m: &std::fs::Metadata) -> FileKey {
        FileKey {
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
        let key = FileKey::of(&f.metadata()?);
        Ok(self.lock().get(&key).cloned())
    }

    /// The hash cached for a file whose `stat` gave `key`, if any (no I/O).
    pub(crate) fn cached_key(&self, key: &FileKey) -> Option<BinaryHash> {
        self.lock().get(key).cloned()
    }

    /// The hash of the opened file `f`, computed once per change stamp.
    pub fn hash_file(&self, f: &File) -> io::Result<BinaryHash> {
        let key = FileKey::of(&f.metadata()?);
        if let Some(h) = self.lock().get(&key) {
            return Ok(h.clone());
        }
        let h = hash_reader(f)?;
        // The file may have changed while it was read; only cache a hash whose stamp held.
        if FileKey::of(&f.metadata()?) == key {
            let mut map = self.lock();
            if map.len() >= CACHE_CAP {
                map.clear();
            }
            map.insert(key, h.clone());
        }
        Ok(h)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<FileKey, BinaryHash>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

/// Hashes the regular file at `path` (used by `register`, `approve` and `upgrade`, doctor and
/// the dashboard). A FIFO or device in its place is an error at once: the path may be one a
/// caller reported, and must not hang whoever checks it.
pub fn hash_path(path: &std::path::Path) -> io::Result<BinaryHash> {
    hash_reader(crate::fsutil::open_regular(
        path,
        crate::fsutil::Links::Follow,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn same_size_rewrite_with_restored_mtime_is_rehashed() {
        // A same-size rewrite whose mtime is set back still moves ctime: it must miss the cache.
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("bin");
        std::fs::write(&p, b"aaaa").unwrap();
        let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
        let cache = HashCache::new();
        let h1 = cache.hash_file(&File::open(&p).unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&p, b"bbbb").unwrap();
        File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let h2 = cache.hash_file(&File::open(&p).unwrap()).unwrap();
        assert_ne!(h1, h2);
        assert_eq!(h2, hash_reader(&b"bbbb"[..]).unwrap());
    }
}
