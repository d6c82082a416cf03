//! Who is calling: kernel credentials → executable → SHA-256 (SPEC §5, §10).
//!
//! Nothing the caller says is trusted. Identity belongs to the process that *wrote* each request:
//! [`sender`] reads the writer's pid and uid from the kernel with every chunk (`SCM_CREDENTIALS`)
//! and a pidfd pinning it (`SCM_PIDFD`), so a socket handed to, inherited by or kept across a
//! fork by another process is answered as that process. [`identify`] then establishes what the
//! writer runs:
//! - a writer of another uid, or one that exits (its pid could be reused) before verification
//!   ends, is not served at all;
//! - a writer in another user namespace is not trusted: there, `PR_SET_MM_MAP` can point
//!   `/proc/<pid>/exe` at a binary the process never ran;
//! - the executable is opened through `/proc/<pid>/exe` and hashed from that open file, never by
//!   re-opening a path that may since have been replaced; deleted and in-memory executables
//!   cannot be approved;
//! - its tracer (`TracerPid`) and the loader/interpreter injection variables of its environment
//!   are recorded in [`Integrity`] for the policy to judge ([`process::INJECTION_VARS`]), with
//!   the start-up files its interpreter runs from places the user can write ([`startup`]).
//!
//! Hashes are cached by the file's whole change stamp ([`cache`]), so a known binary costs a few
//! `/proc` reads, not a hash, per identification.

pub mod cache;
pub mod chain;
pub mod hash;
pub mod process;
pub mod recorded;
pub mod script;
pub mod sender;
pub mod startup;

pub use cache::{HashCache, hash_path, hash_reader};

pub use hash::{BinaryHash, NotAHash};
use nix::sys::socket::{getsockopt, sockopt};
use process::FileId;
pub use recorded::{Chain, Recorded};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A verified (or refused) writer of requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its uid.
    pub uid: u32,
    /// Its pid.
    pub pid: i32,
    /// What it runs.
    pub exe: Exe,
    /// Its caller chain as its records carry it, made once ([`Peer::recorded_chain`]). A peer
    /// built from another with a different `exe` takes a fresh one.
    pub recorded: Recorded,
}

impl Peer {
    /// Whether `self` and `other` were both verified running the same binary and the same
    /// program (script) — a writer identified again is still the one approved before.
    pub fn same_program(&self, other: &Peer) -> bool {
        match (&self.exe, &other.exe) {
            (
                Exe::Verified { hash, program, .. },
                Exe::Verified {
                    hash: h2,
                    program: p2,
                    ..
                },
            ) => hash == h2 && program == p2,
            _ => false,
        }
    }
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
        /// The (device, inode) of the opened executable, to notice an exec later.
        file: FileId,
        /// Tracer and environment.
        integrity: Integrity,
        /// What it runs, when it is an interpreter.
        program: Program,
        /// Who launched it: parent first ([`chain`]).
        chain: Vec<Link>,
        /// Open handles that tell whether the process has since executed a program or been
        /// traced ([`revalidate`]).
        watch: std::sync::Arc<process::Watch>,
    },
    /// An executable that cannot be trusted (another user namespace, deleted file, memfd,
    /// unreadable); the text says why.
    Unverifiable {
        /// Its path as far as it is known.
        path: Option<PathBuf>,
        /// Why it is refused.
        why: String,
    },
}

/// One process of the caller chain (SPEC §10), as recorded in audit records and pending entries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Link {
    /// Its executable's path as the kernel reports it.
    pub path: String,
    /// SHA-256 of its opened executable; `null` when it could not be read.
    pub hash: Option<BinaryHash>,
    /// Its pid.
    pub pid: i32,
    /// Its command line.
    #[serde(default)]
    pub argv: Vec<String>,
}

/// Most argv words kept of one process, the longest word and the most bytes in all. A process
/// chooses its own command line (up to megabytes, and an ancestor's as well), so what is kept of
/// it for audit records, pending entries and prompts is bounded: a long command line cannot grow
/// every record of its callers.
pub(crate) const MAX_ARGS: usize = 32;
/// See [`MAX_ARGS`].
pub(crate) const MAX_ARG_BYTES: usize = 256;
/// See [`MAX_ARGS`].
pub(crate) const MAX_ARGV_BYTES: usize = 1024;

/// `word` cut to at most [`MAX_ARG_BYTES`] bytes, at a character boundary, the cut marked `…`.
pub(crate) fn kept_word(word: &str) -> String {
    if word.len() <= MAX_ARG_BYTES {
        return word.to_string();
    }
    let mut end = MAX_ARG_BYTES - '…'.len_utf8();
    while !word.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &word[..end])
}

/// `argv` as records keep it: each word through [`kept_word`], at most [`MAX_ARGS`] words and
/// [`MAX_ARGV_BYTES`] bytes; when words are left out, the last word is `…`. Keeping what was
/// kept changes nothing.
pub(crate) fn kept_argv(argv: Vec<String>) -> Vec<String> {
    let words: Vec<String> = argv.iter().map(|w| kept_word(w)).collect();
    if words.len() <= MAX_ARGS && words.iter().map(String::len).sum::<usize>() <= MAX_ARGV_BYTES {
        return words;
    }
    let marker = "…";
    let mut kept = Vec::new();
    let mut bytes = marker.len();
    for w in words {
        if kept.len() + 1 == MAX_ARGS || bytes + w.len() > MAX_ARGV_BYTES {
            break;
        }
        bytes += w.len();
        kept.push(w);
    }
    kept.push(marker.to_string());
    kept
}

/// A chain for people: `name (hash, pid N) ← name (hash, pid N)`, caller first.
pub fn describe_chain(links: &[Link]) -> String {
    links
        .iter()
        .map(|l| {
            let name = Path::new(&l.path)
                .file_name()
                .map_or_else(|| l.path.clone(), |n| n.to_string_lossy().into_owned());
            match &l.hash {
                Some(h) => format!("{name} ({}, pid {})", h.short(), l.pid),
                None => format!("{name} (pid {})", l.pid),
            }
        })
        .collect::<Vec<_>>()
        .join(" ← ")
}

/// What the peer's executable runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// The executable itself (not an interpreter).
    Binary,
    /// An interpreter running a script file.
    Script {
        /// The script's canonical path.
        path: PathBuf,
        /// SHA-256 of the opened script.
        hash: BinaryHash,
    },
    /// An interpreter running code that has no file (inline, standard input, REPL, module
    /// search); the text says which.
    NoFile(String),
}

/// What could make an approved binary act for someone else (SPEC §10, injection guard).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Integrity {
    /// The pid tracing it (`TracerPid`), 0 when none.
    pub tracer: i32,
    /// Injection variables set in its environment ([`process::is_injection_var`]).
    pub injected: Vec<String>,
    /// Start-up files its interpreter runs from places the user can write, before the script
    /// ([`startup`]).
    pub startup: Vec<startup::Startup>,
}

/// Why a connection or a request cannot be served at all.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The kernel would not say who the peer is.
    #[error("cannot read peer credentials: {0}")]
    Credentials(nix::Error),
    /// The kernel attached no credentials to a request.
    #[error("a request arrived without the writer's credentials")]
    NoSender,
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

/// How far [`identify`] may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hashing {
    /// Hash the executable when its hash is not cached (may take long for a large binary).
    Allowed,
    /// Only use the cache; answer `Ok(None)` on a miss (cheap enough for an async worker).
    CachedOnly,
}

/// The daemon's effective uid, read once (it never changes): compared with every writer's.
pub fn own_uid() -> u32 {
    static UID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UID.get_or_init(|| nix::unistd::geteuid().as_raw())
}

/// The connecting peer as `SO_PEERCRED` saw it at `connect()`. A peer of another uid is
/// refused here, before anything is read.
#[derive(Debug)]
pub struct Connector {
    /// Its pid at connect time.
    pub pid: i32,
    /// Its uid.
    pub uid: u32,
}

/// Reads and checks the credentials of a connected socket's peer (one `getsockopt`: the
/// connector is only counted against the caps; requests are attributed to their writers).
pub fn connector(sock: BorrowedFd<'_>) -> Result<Connector, IdentityError> {
    let cred = getsockopt(&sock, sockopt::PeerCredentials).map_err(IdentityError::Credentials)?;
    let (uid, pid) = (cred.uid(), cred.pid());
    if uid != own_uid() {
        return Err(IdentityError::ForeignUid { uid, pid });
    }
    Ok(Connector { pid, uid })
}

/// The daemon's view of itself that identification compares against.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// The daemon's own user namespace; `None` when it cannot be read (then no peer is trusted).
    pub user_ns: Option<FileId>,
}

impl Context {
    /// Reads the daemon's own namespace.
    pub fn current() -> Context {
        Context {
            user_ns: process::own_user_ns().ok(),
        }
    }
}

/// Identifies the process `pid` (uid `uid`, pinned by `pidfd` when the kernel gave one), as the
/// writer of a request; `interpreters` are the names config.json adds to
/// [`script::DEFAULT_INTERPRETERS`]. With [`Hashing::CachedOnly`] it answers `Ok(None)` instead
/// of hashing an executable it has not seen, so the server can run the full identification off
/// its workers.
pub fn identify(
    pid: i32,
    uid: u32,
    pidfd: Option<BorrowedFd<'_>>,
    ctx: &Context,
    cache: &HashCache,
    hashing: Hashing,
    interpreters: &[String],
) -> Result<Option<Peer>, IdentityError> {
    if uid != own_uid() {
        return Err(IdentityError::ForeignUid { uid, pid });
    }
    if pidfd.is_some_and(exited) {
        return Err(IdentityError::Exited(pid));
    }
    let Some(exe) = read_exe(pid, ctx, cache, hashing, interpreters) else {
        return Ok(None);
    };
    // Everything above was read through /proc/<pid>; if the process is gone now, the pid may
    // already belong to someone else, so none of it can be trusted.
    if pidfd.is_some_and(exited) {
        return Err(IdentityError::Exited(pid));
    }
    Ok(Some(Peer {
        uid,
        pid,
        exe,
        recorded: Recorded::default(),
    }))
}

/// Whether [`revalidate`] can vouch for `peer` on a later request. It cannot tell an `execve` of
/// the same program by a process that started with an empty environment: such a writer is
/// identified afresh for every request instead of being remembered.
pub fn revalidates(peer: &Peer) -> bool {
    match &peer.exe {
        Exe::Verified { watch, .. } => watch.sees_exec(),
        Exe::Unverifiable { .. } => true,
    }
}

/// Whether a successful [`revalidate`] of `peer` also proves that the process it pinned is alive
/// and still owns its pid: true for a verified writer whose watch sees an `execve`, since every
/// read of that watch goes through the process's own `/proc/<pid>` entry and address space,
/// which stop answering once it has exited (so its pidfd need not be polled as well).
pub fn revalidation_pins(peer: &Peer) -> bool {
    matches!(&peer.exe, Exe::Verified { watch, .. } if watch.sees_exec())
}

/// Checks, before a request of an already identified writer is served, that it still runs the
/// executable it was identified with and that no tracer has attached since. `Err` says why not.
pub fn revalidate(peer: &Peer) -> Result<(), Changed> {
    let pid = peer.pid;
    let Exe::Verified { file, watch, .. } = &peer.exe else {
        return Ok(());
    };
    match watch.exe_id() {
        Ok(now) if now == *file => {}
        Ok(_) => return Err(Changed::Executed(pid)),
        Err(e) => {
            return Err(Changed::Unreadable {
                pid,
                what: "executable",
                error: e.to_string(),
            });
        }
    }
    match watch.check() {
        Ok(()) => Ok(()),
        Err(process::Change::Executed) => Err(Changed::Executed(pid)),
        Err(process::Change::Traced(tracer)) => Err(Changed::Traced { pid, tracer }),
        Err(process::Change::Unreadable(error)) => Err(Changed::Unreadable {
            pid,
            what: "status",
            error,
        }),
    }
}

/// Why an identified writer no longer holds ([`revalidate`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Changed {
    /// It executed a program since it was verified.
    #[error(
        "pid {0} started another program (execve) while connected; its requests on this connection are refused: reconnect"
    )]
    Executed(i32),
    /// A tracer attached.
    #[error("{}", traced_message(*pid, *tracer))]
    Traced {
        /// The writer.
        pid: i32,
        /// Its tracer.
        tracer: i32,
    },
    /// Its `/proc` entry cannot be read.
    #[error("cannot read the {what} of pid {pid}: {error}")]
    Unreadable {
        /// The writer.
        pid: i32,
        /// What could not be read.
        what: &'static str,
        /// Why.
        error: String,
    },
}

/// The message for a traced peer.
pub fn traced_message(pid: i32, tracer: i32) -> String {
    format!(
        "pid {pid} is being traced by pid {tracer} (a debugger or tracer can make it send any request and read the answers); run it without a tracer"
    )
}

/// Whether the process behind `pidfd` has exited (a pidfd polls readable then).
pub fn exited(pidfd: BorrowedFd<'_>) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(pidfd, PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(n) => n > 0,
        Err(_) => true,
    }
}

/// The process's executable; `None` when `hashing` is cache-only and the cache misses. Read
/// through one open `/proc/<pid>` directory: a `stat` of the executable is enough when its
/// hash is cached, and `status`/`environ` stay open as the [`process::Watch`].
fn read_exe(
    pid: i32,
    ctx: &Context,
    cache: &HashCache,
    hashing: Hashing,
    interpreters: &[String],
) -> Option<Exe> {
    let dir = process::ProcDir::open(pid);
    let path = dir.as_ref().ok().and_then(|d| d.read_link("exe").ok());
    let unverifiable = |why: String| Exe::Unverifiable {
        path: path.clone(),
        why,
    };
    if pid <= 0 {
        return Some(unverifiable(
            "the writer runs in a pid namespace the broker cannot see into".into(),
        ));
    }
    let dir = match dir {
        Ok(d) => d,
        Err(e) => {
            return Some(unverifiable(format!(
                "cannot read the executable of pid {pid}: {e}"
            )));
        }
    };
    if let Err(why) = same_user_ns(pid, &dir, ctx) {
        return Some(unverifiable(why.to_string()));
    }
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
    let (hash, id) = match exe_hash(&dir, cache, hashing) {
        Ok(Some(found)) => found,
        Ok(None) => return None,
        Err(e) => return Some(unverifiable(format!("cannot hash {text}: {e}"))),
    };
    let (watch, status, environ) = match dir.watch() {
        Ok(w) => w,
        Err(e) => {
            return Some(unverifiable(format!(
                "cannot read the status and environment of pid {pid}: {e}"
            )));
        }
    };
    let argv = dir.cmdline();
    let family = script::family_of(p, interpreters);
    let program = match family {
        None => Program::Binary,
        Some(family) => program_of(&dir, pid, family, &argv, cache, hashing)?,
    };
    let startup = match (family, &program) {
        (Some(family), Program::Script { .. }) => {
            let home = std::env::var_os("HOME").map(PathBuf::from);
            startup::startup_files(family, p, &argv, &environ, home.as_deref())
        }
        _ => Vec::new(),
    };
    let chain = chain::ancestors(&dir, status.ppid, ctx, cache, hashing)?;
    Some(Exe::Verified {
        path: p.clone(),
        hash,
        argv: kept_argv(argv),
        file: id,
        integrity: Integrity {
            tracer: status.tracer,
            injected: environ.injected,
            startup,
        },
        program,
        chain,
        watch: std::sync::Arc::new(watch),
    })
}

/// Why a process cannot be trusted for its user namespace.
#[derive(Debug, thiserror::Error)]
enum Namespace {
    #[error(
        "pid {0} runs in another user namespace (a sandbox or container), where the executable the kernel reports can be forged; run it outside the namespace"
    )]
    Other(i32),
    #[error("cannot read the user namespace of pid {0}: {1}")]
    Unreadable(i32, std::io::Error),
    #[error("the broker cannot read its own user namespace, so no caller can be verified")]
    OwnUnknown,
}

/// `Err` unless the process lives in the broker's own user namespace: in another one,
/// `PR_SET_MM_MAP` can point `/proc/<pid>/exe` at a binary the process never ran.
fn same_user_ns(pid: i32, dir: &process::ProcDir, ctx: &Context) -> Result<(), Namespace> {
    match (dir.user_ns(), ctx.user_ns) {
        (Ok(ns), Some(own)) if ns == own => Ok(()),
        (Ok(_), Some(_)) => Err(Namespace::Other(pid)),
        (Err(e), _) => Err(Namespace::Unreadable(pid, e)),
        (Ok(_), None) => Err(Namespace::OwnUnknown),
    }
}

/// The hash and (device, inode) of the executable behind `dir/exe`: from the cache by one
/// `stat` when the file's whole change stamp is known, else (when `hashing` allows) by opening
/// and hashing it. `Ok(None)`: cache-only and not cached.
pub(crate) fn exe_hash(
    dir: &process::ProcDir,
    cache: &HashCache,
    hashing: Hashing,
) -> std::io::Result<Option<(BinaryHash, FileId)>> {
    let st = dir.stat("exe")?;
    let id = (st.st_dev, st.st_ino);
    if let Some(h) = cache.cached_key(&cache::FileKey::of_stat(&st)) {
        return Ok(Some((h, id)));
    }
    if hashing == Hashing::CachedOnly {
        return Ok(None);
    }
    let file = dir.open_file("exe")?;
    let m = file.metadata()?;
    Ok(Some((cache.hash_file(&file)?, (m.dev(), m.ino()))))
}

/// The script an interpreter runs, found the way `family` parses its command line, opened and
/// hashed; `None` when `hashing` is cache-only and its hash is not cached.
fn program_of(
    dir: &process::ProcDir,
    pid: i32,
    family: script::Family,
    argv: &[String],
    cache: &HashCache,
    hashing: Hashing,
) -> Option<Program> {
    let arg = match script::script_arg(family, argv) {
        script::ScriptArg::NoFile(why) => return Some(Program::NoFile(why)),
        script::ScriptArg::File(arg) => arg,
    };
    Some(match open_script(dir, &arg) {
        Ok((path, file)) => {
            let hashed = match hashing {
                Hashing::Allowed => cache.hash_file(&file).map(Some),
                Hashing::CachedOnly => cache.cached(&file),
            };
            match hashed {
                Ok(Some(hash)) => Program::Script { path, hash },
                Ok(None) => return None,
                Err(e) => Program::NoFile(format!("cannot read the script {arg:?}: {e}")),
            }
        }
        Err(e) => Program::NoFile(format!(
            "cannot open the script {arg:?} that pid {pid} runs: {e}"
        )),
    })
}

/// directory, through `/proc/<pid>/cwd`); returns its canonical path and the open file.
fn open_script(dir: &process::ProcDir, arg: &str) -> std::io::Result<(PathBuf, File)> {
    use std::os::fd::AsRawFd;
    // Non-blocking: a FIFO at the script's path must not hold the broker (it is refused as not
    // a regular file).
    let file = if Path::new(arg).is_absolute() {
        crate::fsutil::open_regular(Path::new(arg), crate::fsutil::Links::Follow)?
    } else {
        // Relative to the process's working directory, through its pinned `/proc` entry.
        crate::fsutil::regular(dir.open_file(&format!("cwd/{arg}"))?)?
    };
    let path = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    Ok((path, file))
}

/// Identifies the peer of a connected socket as of `connect()` (used where one process owns the
/// connection, such as tests and tools); the server identifies each request's writer instead.
pub fn identify_connector(
    sock: BorrowedFd<'_>,
    cache: &HashCache,
    hashing: Hashing,
) -> Result<Option<Peer>, IdentityError> {
    let c = connector(sock)?;
    let pidfd = getsockopt(&sock, sockopt::PeerPidfd).ok();
    identify(
        c.pid,
        c.uid,
        pidfd.as_ref().map(AsFd::as_fd),
        &Context::current(),
        cache,
        hashing,
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_long_command_line_is_kept_bounded_and_marked() {
        let short: Vec<String> = ["git", "credential", "fill"].map(String::from).to_vec();
        assert_eq!(
            kept_argv(short.clone()),
            short,
            "a usual command line is kept whole"
        );

        // One huge word (a `bash -c` script), cut inside a multi-byte character.
        let huge = vec![
            "bash".to_string(),
            "-c".into(),
            format!("x{}", "é".repeat(20_000)),
        ];
        let kept = kept_argv(huge);
        assert_eq!(kept.len(), 3);
        assert!(
            kept[2].len() <= MAX_ARG_BYTES && kept[2].ends_with('…'),
            "{}",
            kept[2]
        );

        // Many words: at most MAX_ARGS and MAX_ARGV_BYTES, the last one the marker.
        let many: Vec<String> = (0..10_000).map(|i| format!("arg{i}")).collect();
        let kept = kept_argv(many.clone());
        assert!(kept.len() <= MAX_ARGS, "{}", kept.len());
        assert_eq!(kept.last().map(String::as_str), Some("…"));
        assert_eq!(kept[..kept.len() - 1], many[..kept.len() - 1]);
        let wide: Vec<String> = (0..20).map(|_| "w".repeat(200)).collect();
        let kept = kept_argv(wide);
        assert!(kept.iter().map(String::len).sum::<usize>() <= MAX_ARGV_BYTES);
        assert_eq!(kept.last().map(String::as_str), Some("…"));

        // Keeping what was kept changes nothing (pending entries are bounded again).
        for argv in [kept, kept_argv(many)] {
            assert_eq!(kept_argv(argv.clone()), argv);
        }
    }

    #[test]
    fn identifies_own_process_over_a_socketpair() {
        let (a, _b) = UnixStream::pair().unwrap();
        let cache = HashCache::new();
        assert_eq!(
            identify_connector(a.as_fd(), &cache, Hashing::CachedOnly).unwrap(),
            None,
            "cold cache: cache-only identification must not hash"
        );
        let peer = identify_connector(a.as_fd(), &cache, Hashing::Allowed)
            .unwrap()
            .unwrap();
        assert_eq!(
            identify_connector(a.as_fd(), &cache, Hashing::CachedOnly).unwrap(),
            Some(peer.clone()),
            "warm cache"
        );
        assert_eq!(peer.pid, std::process::id() as i32);
        assert_eq!(revalidate(&peer), Ok(()));
        let Exe::Verified {
            path,
            hash,
            argv,
            integrity,
            ..
        } = peer.exe
        else {
            panic!("{:?}", peer.exe)
        };
        assert_eq!(path, std::env::current_exe().unwrap());
        assert_eq!(hash, hash_path(&path).unwrap());
        assert!(!argv.is_empty());
        assert_eq!(integrity.tracer, 0);
    }

    #[test]
    fn a_foreign_namespace_is_never_verified() {
        let cache = HashCache::new();
        let ctx = Context {
            user_ns: Some((u64::MAX, u64::MAX)),
        };
        let me = std::process::id() as i32;
        let uid = nix::unistd::geteuid().as_raw();
        let peer = identify(me, uid, None, &ctx, &cache, Hashing::Allowed, &[])
            .unwrap()
            .unwrap();
        let Exe::Unverifiable { why, .. } = peer.exe else {
            panic!("{:?}", peer.exe)
        };
        assert!(why.contains("another user namespace"), "{why}");
    }

    #[test]
    fn another_uid_is_refused_before_anything_is_read() {
        let cache = HashCache::new();
        let uid = nix::unistd::geteuid().as_raw().wrapping_add(1);
        let r = identify(
            1,
            uid,
            None,
            &Context::current(),
            &cache,
            Hashing::Allowed,
            &[],
        );
        assert!(matches!(r, Err(IdentityError::ForeignUid { .. })), "{r:?}");
    }
}
