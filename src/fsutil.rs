//! Safe file primitives for the state files: private directories, advisory locks held across a
//! whole read-modify-write, and atomic replacement (temp file in the same directory, fsync,
//! rename, fsync of the directory) so a reader never sees a half-written file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Creates `dir` (and parents) with mode 0700 if missing; an existing directory is tightened to
/// 0700 when it is ours and wider.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = fs::metadata(dir)?;
    if meta.uid() == nix::unistd::geteuid().as_raw() && meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// An exclusive advisory lock on `<file>.lock`, released on drop.
///
/// A separate lock file is used because the data file itself is replaced by rename, which
/// would leave a lock on the old inode.
#[derive(Debug)]
pub struct FileLock {
    file: File,
}

impl FileLock {
    /// Blocks until the exclusive lock for `path` is held.
    pub fn acquire(path: &Path) -> io::Result<FileLock> {
        if let Some(dir) = path.parent() {
            ensure_private_dir(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(lock_path(path))?;
        file.lock()?;
        Ok(FileLock { file })
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    path.with_file_name(name)
}

/// Reads the whole file, or `None` when it does not exist.
pub fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match File::open(path) {
        Ok(mut f) => {
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            Ok(Some(buf))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Atomically replaces `path` with `contents`, mode 0600, in a 0700 parent directory.
///
/// The data is written to a temporary file in the same directory, fsynced, renamed over the
/// target, and the directory is fsynced so the rename itself is durable.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    ensure_private_dir(dir)?;
    // tempfile creates the file with mode 0600 and O_EXCL in the target directory.
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// A cheap fingerprint of a file's identity and last change, used to notice external edits
/// without re-reading the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    /// The stamp of `meta`.
    pub fn of(meta: &fs::Metadata) -> FileStamp {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }

    /// The stamp of the file at `path`, `None` when it does not exist.
    pub fn of_path(path: &Path) -> io::Result<Option<FileStamp>> {
        match fs::metadata(path) {
            Ok(m) => Ok(Some(FileStamp::of(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Fails when `meta` describes a file another user owns or others may write: such a policy or
/// state file cannot be trusted.
pub fn check_private(path: &Path, meta: &fs::Metadata) -> Result<(), String> {
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(format!(
            "{} is owned by uid {}, not by you (uid {me})",
            path.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by group or others (mode {:o}); run: chmod 600 {}",
            path.display(),
            meta.mode() & 0o777,
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_creates_private_file_and_dir() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("sub/x.json");
        write_atomic(&p, b"hello").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"hello");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(p.parent().unwrap()).unwrap().mode() & 0o777,
            0o700
        );
        write_atomic(&p, b"second").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
        // no temp files left behind
        let names: Vec<_> = fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.json")]);
    }

    #[test]
    fn stamp_changes_on_replace() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x");
        assert_eq!(FileStamp::of_path(&p).unwrap(), None);
        write_atomic(&p, b"a").unwrap();
        let a = FileStamp::of_path(&p).unwrap();
        write_atomic(&p, b"b").unwrap();
        let b = FileStamp::of_path(&p).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn check_private_rejects_group_writable() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x");
        fs::write(&p, b"{}").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o620)).unwrap();
        let err = check_private(&p, &fs::metadata(&p).unwrap()).unwrap_err();
        assert!(err.contains("chmod 600"), "{err}");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        check_private(&p, &fs::metadata(&p).unwrap()).unwrap();
    }
}
