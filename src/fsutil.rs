//! Safe file primitives for the state files (config.json, pending.json, audit.log, the file
//! store and their `.lock` files).
//!
//! - `open_state` is the one way a state file is opened: never through a symbolic link
//!   (`O_NOFOLLOW`), never waiting on a FIFO or device (`O_NONBLOCK`, and an `lstat` first so
//!   such a file is not opened at all), then `fstat` of what was opened: a regular file, owned by
//!   us, with no group/other permission bits. Anything else is refused with a one-line reason
//!   saying how to fix it.
//! - `ensure_private_dir` creates a missing directory 0700 and refuses (never chmods) an
//!   existing one that another user owns or that group/others may write, or that sits below such
//!   a directory.
//! - `FileLock` is an advisory lock held across a whole read-modify-write, given up with an
//!   error (not a hang) when another process keeps it too long.
//! - [`write_atomic`] replaces a file through a 0600 temp file in the same directory (fsync,
//!   rename, fsync of the directory), so a reader never sees a half-written file;
//!   `remove_stale_temps` deletes the temp files an interrupted write left behind.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long [`FileLock::acquire`] waits for another holder before giving up.
pub(crate) const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// How a state file is opened by `open_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only; a missing file is `Ok(None)`.
    Read,
    /// Append (created 0600 when missing), for the audit log.
    Append,
    /// Read-write (created 0600 when missing), for lock files.
    Lock,
}

fn refused(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, msg)
}

fn kind_name(ft: &fs::FileType) -> &'static str {
    if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() || ft.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Fails unless `meta` (from `lstat` or `fstat`) is a regular file owned by us with no
/// group/other permission bits; the error says what is wrong and how to fix it.
pub(crate) fn check_state_file(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let ft = meta.file_type();
    if !ft.is_file() {
        let what = kind_name(&ft);
        let fix = if ft.is_symlink() {
            "state files are never followed through links: put the file itself there"
        } else {
            "state files must be regular files: remove it or move it away"
        };
        return Err(refused(format!(
            "{} is {what}, not a regular file; {fix} (rm {})",
            path.display(),
            path.display()
        )));
    }
    check_private(path, meta).map_err(|e| refused(e.to_string()))
}

/// Opens the state file at `path` without following a symbolic link and without blocking, and
/// checks what was opened (see [`check_state_file`]). `Ok(None)`: it does not exist (only for
/// [`Access::Read`]; the other modes create it 0600).
pub(crate) fn open_state(path: &Path, access: Access) -> io::Result<Option<File>> {
    // A FIFO or device is refused before it is opened at all (opening one can block or have
    // side effects); the fstat below is what decides, whatever happens in between.
    match fs::symlink_metadata(path) {
        Ok(m) => check_state_file(path, &m)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if access == Access::Read {
                return Ok(None);
            }
        }
        Err(e) => return Err(e),
    }
    let mut opts = OpenOptions::new();
    match access {
        Access::Read => {
            opts.read(true);
        }
        Access::Append => {
            opts.append(true).create(true).mode(0o600);
        }
        Access::Lock => {
            opts.read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600);
        }
    }
    opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC);
    let file = match opts.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound && access == Access::Read => {
            return Ok(None);
        }
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(refused(format!(
                "{} is a symbolic link, not a regular file; state files are never followed through links: put the file itself there (rm {})",
                path.display(),
                path.display()
            )));
        }
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            return Err(refused(format!(
                "{} is a FIFO (named pipe), not a regular file; state files must be regular files: remove it or move it away (rm {})",
                path.display(),
                path.display()
            )));
        }
        Err(e) => return Err(e),
    };
    check_state_file(path, &file.metadata()?)?;
    Ok(Some(file))
}

/// Reads the whole state file (through [`open_state`]), or `None` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    read_with_meta(path).map(|o| o.map(|(bytes, _)| bytes))
}

/// Like [`read_optional`], with the metadata of the file that was read.
pub(crate) fn read_with_meta(path: &Path) -> io::Result<Option<(Vec<u8>, fs::Metadata)>> {
    let Some(mut f) = open_state(path, Access::Read)? else {
        return Ok(None);
    };
    let meta = f.metadata()?;
    let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    f.read_to_end(&mut buf)?;
    Ok(Some((buf, meta)))
}

/// How [`open_regular`] treats a symbolic link at the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Links {
    /// Follow it, as the program that owns the path would (a path a person gave, a registered
    /// binary, another program's configuration).
    Follow,
    /// Refuse it (files in keychain-auth's own directories, such as rotated audit logs).
    Refuse,
}

/// Opens `path` for reading only if it is a regular file, without ever blocking: a FIFO put in
/// its place is opened non-blocking and refused with the devices and directories ([`regular`]).
pub(crate) fn open_regular(path: &Path, links: Links) -> io::Result<File> {
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    if links == Links::Refuse {
        flags |= libc::O_NOFOLLOW;
    }
    regular(
        OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(path)?,
    )
}

/// `file` if what was opened is a regular file; anything else (a FIFO, device or directory) is
/// an `InvalidInput` error saying "not a regular file".
pub(crate) fn regular(file: File) -> io::Result<File> {
    if file.metadata()?.is_file() {
        Ok(file)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ))
    }
}

/// Reads at most `max` bytes of a file that belongs to another program (a tool's own
/// configuration, such as `~/.aws/config`) through [`open_regular`], following links.
/// `Ok(None)`: it does not exist.
pub(crate) fn read_foreign(path: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
    let file = match open_regular(path, Links::Follow) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf = Vec::new();
    file.take(max).read_to_end(&mut buf)?;
    Ok(Some(buf))
}

/// Makes sure `dir` is a safe place for state: creates it (and missing parents) with mode 0700
/// when missing; an existing directory is never chmodded but refused when another user owns it
/// or group/others may write it. Every directory above it must be owned by us or root and not
/// writable by group/others unless sticky (as `/tmp` is), or its owner could swap `dir`.
pub(crate) fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    ensure_dir(dir, 0o022)
}

/// [`ensure_private_dir`] for a directory holding secrets (the file store): group/others may
/// not even read or enter it.
pub(crate) fn ensure_secret_dir(dir: &Path) -> io::Result<()> {
    ensure_dir(dir, 0o077)
}

fn ensure_dir(dir: &Path, forbidden: u32) -> io::Result<()> {
    let me = nix::unistd::geteuid().as_raw();
    // A symbolic link on the way that another user owns could be pointed elsewhere later.
    for comp in dir.ancestors() {
        if comp.as_os_str().is_empty() {
            continue;
        }
        let m = match fs::symlink_metadata(comp) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if m.file_type().is_symlink() && m.uid() != me && m.uid() != 0 {
            return Err(refused(format!(
                "{} goes through the symbolic link {}, which uid {} owns and could point elsewhere; use a directory of your own",
                dir.display(),
                comp.display(),
                m.uid()
            )));
        }
    }
    create_missing(dir)?;
    let real = fs::canonicalize(dir)?;
    let meta = fs::metadata(&real)?;
    if !meta.is_dir() {
        return Err(refused(format!("{} is not a directory", dir.display())));
    }
    if meta.uid() != me {
        return Err(refused(format!(
            "directory {} is owned by uid {}, not by you (uid {me}); use a directory of your own",
            dir.display(),
            meta.uid()
        )));
    }
    if meta.mode() & forbidden != 0 {
        let what = if forbidden & 0o055 != 0 {
            "accessible"
        } else {
            "writable"
        };
        return Err(refused(format!(
            "directory {} is {what} by group or others (mode {:o}); run: chmod 700 {}",
            dir.display(),
            meta.mode() & 0o7777,
            dir.display()
        )));
    }
    for anc in real.ancestors().skip(1) {
        let m = fs::metadata(anc)?;
        if m.uid() != me && m.uid() != 0 {
            return Err(refused(format!(
                "{} is inside {}, which uid {} owns and could replace; use a directory of your own",
                dir.display(),
                anc.display(),
                m.uid()
            )));
        }
        if m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0 {
            return Err(refused(format!(
                "{} is inside {}, which group or others may write (mode {:o}) and so replace it; run: chmod go-w {}",
                dir.display(),
                anc.display(),
                m.mode() & 0o7777,
                anc.display()
            )));
        }
    }
    Ok(())
}

/// Creates the missing components of `dir` one by one with mode 0700. Existing ones are left
/// exactly as they are.
fn create_missing(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = dir;
    loop {
        match fs::symlink_metadata(cur) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(cur);
                match cur.parent() {
                    Some(p) if !p.as_os_str().is_empty() => cur = p,
                    _ => break,
                }
            }
            Err(e) => return Err(e),
        }
    }
    for d in missing.into_iter().rev() {
        match fs::DirBuilder::new().mode(0o700).create(d) {
            Ok(()) => {}
            // Someone else made it meanwhile: it is checked like any existing directory.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// An exclusive advisory lock on `<file>.lock`, released on drop.
///
/// A separate lock file is used because the data file itself is replaced by rename, which
/// would leave a lock on the old inode.
#[derive(Debug)]
pub(crate) struct FileLock {
    file: File,
}

impl FileLock {
    /// Takes the exclusive lock for `path`, waiting at most [`LOCK_TIMEOUT`] for another holder.
    pub(crate) fn acquire(path: &Path) -> io::Result<FileLock> {
        Self::acquire_within(path, LOCK_TIMEOUT)
    }

    /// Takes the exclusive lock for `path`, waiting at most `timeout`.
    pub(crate) fn acquire_within(path: &Path, timeout: Duration) -> io::Result<FileLock> {
        if let Some(dir) = path.parent() {
            ensure_private_dir(dir)?;
        }
        let lock = lock_path(path);
        let file = open_state(&lock, Access::Lock)?
            .ok_or_else(|| io::Error::other("lock file vanished"))?;
        lock_within(&file, &lock, timeout)?;
        Ok(FileLock { file })
    }
}

/// Takes the exclusive lock on `file` (at `path`, for the message), waiting at most `timeout`
/// for another process to release it; then fails saying how to find that process.
pub(crate) fn lock_within(file: &fs::File, path: &Path, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "another process has held {} for more than {} s; find it with: fuser {}",
                    path.display(),
                    timeout.as_secs(),
                    path.display()
                ),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
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

/// The prefix of the temp files [`write_atomic`] creates for `path`: `.<name>.tmp-`.
fn temp_prefix(path: &Path) -> String {
    format!(
        ".{}.tmp-",
        path.file_name().unwrap_or_default().to_string_lossy()
    )
}

/// A new temp file for replacing `path`: in the same directory, created `O_EXCL` with mode 0600
/// whatever the umask.
fn temp_for(path: &Path, dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(&temp_prefix(path))
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
}

/// Atomically replaces `path` with `contents`, mode 0600, in a 0700 parent directory.
///
/// The data is written to a 0600 temporary file in the same directory, fsynced, renamed over
/// the target, and the directory is fsynced so the rename itself is durable.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    ensure_private_dir(dir)?;
    let mut tmp = temp_for(path, dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Removes the temp files an interrupted [`write_atomic`] of `path` left next to it (and the
/// `.tmp-*` names earlier versions used), holding `path`'s lock so that no write in progress
/// loses its temp file. Returns the names removed; a missing directory is nothing to do.
pub(crate) fn remove_stale_temps(path: &Path) -> io::Result<Vec<String>> {
    let Some(dir) = path.parent() else {
        return Ok(Vec::new());
    };
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let _lock = FileLock::acquire(path)?;
    let prefix = temp_prefix(path);
    let mut removed = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with(&prefix) || name.starts_with(".tmp-")) {
            continue;
        }
        if entry.file_type()?.is_dir() {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => removed.push(name),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// A file watch (inotify, through the `notify` crate) on a few names in one directory, for a
/// process that holds files open for long (the broker): [`NameWatch::changed`] says whether any
/// of them may have changed since it was last asked, so nothing needs a `stat` before every
/// request. It errs towards "changed": at the start, after lost events, and for good once the
/// directory itself is removed or renamed (the watch is gone then).
pub(crate) struct NameWatch {
    changed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    broken: std::sync::Arc<std::sync::atomic::AtomicBool>,
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for NameWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameWatch").finish_non_exhaustive()
    }
}

impl NameWatch {
    /// Watches `names` in `dir`: any event on them, or with `renames_only` only their
    /// creation, removal and renames (the data a process writes itself is then no event).
    /// `None` when the watch cannot be set up (no such directory, inotify limits reached).
    pub(crate) fn new(
        dir: &Path,
        names: &[&std::ffi::OsStr],
        renames_only: bool,
    ) -> Option<NameWatch> {
        use notify::Watcher;
        use notify::event::{EventKind, ModifyKind};
        use std::sync::atomic::{AtomicBool, Ordering};
        let changed = std::sync::Arc::new(AtomicBool::new(true));
        let broken = std::sync::Arc::new(AtomicBool::new(false));
        let (c, b) = (changed.clone(), broken.clone());
        let dir_buf = dir.to_path_buf();
        let names: Vec<std::ffi::OsString> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let ev = match res {
                Ok(ev) if !ev.need_rescan() => ev,
                // Events were lost: anything may have changed.
                _ => {
                    c.store(true, Ordering::SeqCst);
                    return;
                }
            };
            // The directory itself removed or renamed: the watch is gone with it. (Listing
            // or reading the directory is an event on it too, and changes nothing.)
            if ev.paths.contains(&dir_buf)
                && matches!(
                    ev.kind,
                    EventKind::Remove(_)
                        | EventKind::Modify(ModifyKind::Name(_))
                        | EventKind::Other
                )
            {
                b.store(true, Ordering::SeqCst);
            }
            let kind_counts = match ev.kind {
                EventKind::Access(_) => false,
                EventKind::Create(_)
                | EventKind::Remove(_)
                | EventKind::Modify(ModifyKind::Name(_))
                | EventKind::Any
                | EventKind::Other => true,
                EventKind::Modify(_) => !renames_only,
            };
            if kind_counts
                && ev
                    .paths
                    .iter()
                    .any(|p| p.file_name().is_some_and(|n| names.iter().any(|m| m == n)))
            {
                c.store(true, Ordering::SeqCst);
            }
        })
        .ok()?;
        watcher
            .watch(dir, notify::RecursiveMode::NonRecursive)
            .ok()?;
        Some(NameWatch {
            changed,
            broken,
            _watcher: watcher,
        })
    }

    /// Whether a watched name may have changed since the last call (and clears that).
    pub(crate) fn changed(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.changed.swap(false, Ordering::SeqCst) || self.broken.load(Ordering::SeqCst)
    }
}

/// A watch for renames, removals and creations of a few names in one directory, asked without
/// a thread: [`RenameWatch::moved`] reads the pending events without blocking (one `read`
/// when nothing happened). The audit log's only writer asks it before each record: exact (an
/// event is queued by the kernel before the rename returns) and woken by nothing else (its own
/// writes are no event).
pub(crate) struct RenameWatch {
    inotify: nix::sys::inotify::Inotify,
    names: Vec<std::ffi::OsString>,
}

impl std::fmt::Debug for RenameWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenameWatch").finish_non_exhaustive()
    }
}

impl RenameWatch {
    /// Watches `names` in `dir`; `None` when the watch cannot be set up.
    pub(crate) fn new(dir: &Path, names: &[&std::ffi::OsStr]) -> Option<RenameWatch> {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
        inotify
            .add_watch(
                dir,
                AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_DELETE
                    | AddWatchFlags::IN_MOVED_FROM
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_DELETE_SELF
                    | AddWatchFlags::IN_MOVE_SELF
                    | AddWatchFlags::IN_ONLYDIR,
            )
            .ok()?;
        Some(RenameWatch {
            inotify,
            names: names.iter().map(|n| (*n).to_owned()).collect(),
        })
    }

    /// Whether a watched name was created, removed or renamed since the last call, or the
    /// directory itself went, or events were lost (then, and on any error: yes).
    pub(crate) fn moved(&self) -> bool {
        use nix::sys::inotify::AddWatchFlags;
        let mut moved = false;
        loop {
            match self.inotify.read_events() {
                Ok(events) if events.is_empty() => return moved,
                Ok(events) => {
                    for ev in events {
                        moved |= ev.mask.intersects(
                            AddWatchFlags::IN_Q_OVERFLOW
                                | AddWatchFlags::IN_DELETE_SELF
                                | AddWatchFlags::IN_MOVE_SELF
                                | AddWatchFlags::IN_IGNORED,
                        ) || ev.name.as_ref().is_some_and(|n| {
                            self.names.iter().any(|m| m.as_os_str() == n.as_os_str())
                        });
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => return moved,
                Err(_) => return true,
            }
        }
    }
}

/// A cheap fingerprint of a file's identity and last change, used to notice external edits
/// without re-reading the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    /// The stamp of `meta`.
    pub(crate) fn of(meta: &fs::Metadata) -> FileStamp {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }

    /// The stamp of the file at `path` (not following a symbolic link), `None` when it does not
    /// exist.
    pub(crate) fn of_path(path: &Path) -> io::Result<Option<FileStamp>> {
        match fs::symlink_metadata(path) {
            Ok(m) => Ok(Some(FileStamp::of(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Why a state file is not private to the user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NotPrivate {
    /// Another user owns it.
    #[error(
        "{} is owned by uid {owner}, not by you (uid {me}); move it away and recreate it",
        .path.display()
    )]
    Owner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The effective uid.
        me: u32,
    },
    /// Group or others may read (`readable`) or write (`writable`) it.
    #[error(
        "{} is {what} by group or others (mode {mode:o}); run: chmod 600 {}",
        .path.display(),
        .path.display()
    )]
    Mode {
        /// The file.
        path: PathBuf,
        /// `readable` or `writable`.
        what: &'static str,
        /// Its permission bits.
        mode: u32,
    },
}

/// Fails when `meta` describes a file another user owns or that group or others may read or
/// write: such a policy or state file cannot be trusted (or may leak).
pub(crate) fn check_private(path: &Path, meta: &fs::Metadata) -> Result<(), NotPrivate> {
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(NotPrivate::Owner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    if meta.mode() & 0o077 != 0 {
        let what = if meta.mode() & 0o022 != 0 {
            "writable"
        } else {
            "readable"
        };
        return Err(NotPrivate::Mode {
            path: path.to_path_buf(),
            what,
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits up to 2 s for the watch to report a change.
    fn reports(w: &NameWatch) -> bool {
        (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            w.changed()
        })
    }

    #[test]
    fn a_rename_watch_reports_renames_of_its_names_only() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a");
        std::fs::write(&a, "1").unwrap();
        let w = RenameWatch::new(t.path(), &[std::ffi::OsStr::new("a")]).unwrap();
        assert!(!w.moved());
        std::fs::write(&a, "2").unwrap();
        std::fs::write(t.path().join("b"), "x").unwrap();
        let _ = std::fs::read_dir(t.path()).unwrap().count();
        assert!(!w.moved(), "data, another name and a listing are no events");
        std::fs::rename(&a, t.path().join("a.1")).unwrap();
        assert!(w.moved(), "a rename, at once");
        assert!(!w.moved(), "reported once");
        std::fs::write(&a, "new").unwrap();
        assert!(w.moved(), "a creation");
        std::fs::remove_file(&a).unwrap();
        assert!(w.moved(), "a removal");
    }

    #[test]
    fn a_name_watch_reports_its_names_and_only_them() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::write(&a, "1").unwrap();
        let w = NameWatch::new(t.path(), &[std::ffi::OsStr::new("a")], false).unwrap();
        assert!(w.changed(), "changed at the start");
        std::fs::write(&b, "x").unwrap();
        assert!(!reports(&w), "another name is no event");
        std::fs::write(&a, "2").unwrap();
        assert!(reports(&w), "a write");
        assert!(!w.changed(), "reported once");
        write_atomic(&a, b"3").unwrap();
        assert!(reports(&w), "a replace");
        // Listing the directory is no event.
        let _ = std::fs::read_dir(t.path()).unwrap().count();
        assert!(!reports(&w), "a listing");
        let renames = NameWatch::new(t.path(), &[std::ffi::OsStr::new("a")], true).unwrap();
        assert!(renames.changed());
        std::fs::write(&a, "4").unwrap();
        assert!(!reports(&renames), "data is no event with renames_only");
        std::fs::rename(&a, t.path().join("a.1")).unwrap();
        assert!(reports(&renames), "a rename");
    }

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
    fn a_foreign_file_is_read_through_links_and_never_blocks() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        fs::write(&real, b"0123456789").unwrap();
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(read_foreign(&link, 4).unwrap().unwrap(), b"0123");
        assert_eq!(read_foreign(&t.path().join("none"), 4).unwrap(), None);
        // A FIFO with no writer: an error at once, not a read that waits for one.
        let fifo = t.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = read_foreign(&fifo, 4).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        assert!(
            read_foreign(t.path(), 4).is_err(),
            "a directory is not read"
        );
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

    /// A 0700 directory of our own inside a fresh temp dir (tempdir's own mode follows the umask).
    fn private_tmp() -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("d");
        ensure_secret_dir(&d).unwrap();
        (t, d)
    }

    #[test]
    fn open_state_refuses_fifo_symlink_dir_and_loose_modes_without_blocking() {
        let (_t, d) = private_tmp();
        let fifo = d.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let t0 = Instant::now();
        for access in [Access::Read, Access::Append, Access::Lock] {
            let e = open_state(&fifo, access).unwrap_err();
            assert!(e.to_string().contains("FIFO"), "{e}");
        }
        assert!(t0.elapsed() < Duration::from_secs(1), "no open may block");
        let real = d.join("real");
        fs::write(&real, b"x").unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o600)).unwrap();
        let link = d.join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        for access in [Access::Read, Access::Append, Access::Lock] {
            let e = open_state(&link, access).unwrap_err();
            assert!(e.to_string().contains("symbolic link"), "{e}");
        }
        // A dangling link is not created through either.
        let dangling = d.join("dangling");
        std::os::unix::fs::symlink(d.join("target"), &dangling).unwrap();
        assert!(open_state(&dangling, Access::Append).is_err());
        assert!(!d.join("target").exists());
        let e = open_state(&d, Access::Read).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
        assert!(open_state(&real, Access::Read).unwrap().is_some());
        fs::set_permissions(&real, fs::Permissions::from_mode(0o644)).unwrap();
        let e = open_state(&real, Access::Read).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        assert_eq!(
            fs::metadata(&real).unwrap().mode() & 0o777,
            0o644,
            "never chmodded"
        );
        assert!(
            open_state(&d.join("missing"), Access::Read)
                .unwrap()
                .is_none()
        );
        let created = d.join("created");
        open_state(&created, Access::Append).unwrap().unwrap();
        assert_eq!(fs::metadata(&created).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn open_state_refuses_another_users_file() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root to chown a file to another uid");
            return;
        }
        let (_t, d) = private_tmp();
        let p = d.join("x");
        fs::write(&p, b"{}").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
        let e = open_state(&p, Access::Read).unwrap_err();
        assert!(e.to_string().contains("owned by uid 65534"), "{e}");
    }

    #[test]
    fn dirs_are_created_0700_and_existing_ones_never_chmodded() {
        let (_t, d) = private_tmp();
        let deep = d.join("a/b");
        ensure_private_dir(&deep).unwrap();
        assert_eq!(fs::metadata(d.join("a")).unwrap().mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(&deep).unwrap().mode() & 0o777, 0o700);
        // An existing world-writable sticky directory (like /tmp) is refused and left as it is.
        let shared = d.join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        let e = ensure_private_dir(&shared).unwrap_err();
        assert!(e.to_string().contains("writable by group or others"), "{e}");
        assert_eq!(fs::metadata(&shared).unwrap().mode() & 0o7777, 0o1777);
        // Below a directory others may write (and that is not sticky): refused.
        let open = d.join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let e = ensure_private_dir(&open.join("mine")).unwrap_err();
        assert!(e.to_string().contains("is inside"), "{e}");
        // A symbolic link on the way owned by another uid is refused (as root only: chown).
        if nix::unistd::geteuid().is_root() {
            let link = d.join("link");
            std::os::unix::fs::symlink(&deep, &link).unwrap();
            std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
            let e = ensure_private_dir(&link.join("sub")).unwrap_err();
            assert!(e.to_string().contains("symbolic link"), "{e}");
            assert!(
                !deep.join("sub").exists(),
                "nothing created through the link"
            );
        }
        // 0755 of ours: fine for state, not for the secret store; unchanged either way.
        let rx = d.join("rx");
        fs::create_dir(&rx).unwrap();
        fs::set_permissions(&rx, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&rx).unwrap();
        let e = ensure_secret_dir(&rx).unwrap_err();
        assert!(e.to_string().contains("chmod 700"), "{e}");
        assert_eq!(fs::metadata(&rx).unwrap().mode() & 0o777, 0o755);
    }

    #[test]
    fn temp_files_are_0600_and_stale_ones_are_removed() {
        let (_t, d) = private_tmp();
        let p = d.join("keyring.json");
        let tmp = temp_for(&p, &d).unwrap();
        assert_eq!(tmp.as_file().metadata().unwrap().mode() & 0o777, 0o600);
        let name = tmp
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(name.starts_with(".keyring.json.tmp-"), "{name}");
        // Left behind, as by a kill -9 mid-write.
        let (_, kept) = tmp.keep().unwrap();
        fs::write(d.join(".tmp-legacy"), b"secret").unwrap();
        fs::write(d.join("other.json"), b"{}").unwrap();
        let mut removed = remove_stale_temps(&p).unwrap();
        removed.sort();
        assert_eq!(removed, vec![name, ".tmp-legacy".to_string()]);
        assert!(!kept.exists());
        assert!(d.join("other.json").exists());
    }

    #[test]
    fn a_lock_held_elsewhere_times_out_with_a_reason() {
        let (_t, d) = private_tmp();
        let p = d.join("config.json");
        let held = FileLock::acquire(&p).unwrap();
        let t0 = Instant::now();
        let e = FileLock::acquire_within(&p, Duration::from_millis(200)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("config.json.lock"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(2));
        drop(held);
        FileLock::acquire_within(&p, Duration::from_millis(200)).unwrap();
    }

    #[test]
    fn check_private_rejects_group_writable() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x");
        fs::write(&p, b"{}").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o620)).unwrap();
        let err = check_private(&p, &fs::metadata(&p).unwrap()).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        check_private(&p, &fs::metadata(&p).unwrap()).unwrap();
    }
}
