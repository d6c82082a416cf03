//! What `/proc/<pid>` says about a process: its executable, command line, user namespace, tracer
//! and environment. Every reader here fails closed: an unreadable fact is an error, never a
//! default that would let a process through.

use nix::sys::stat::FileStat;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;

/// Loader and interpreter variables that inject code into a process or make it print what it
/// runs (SPEC §10), by exact name. A peer whose environment carries one (or a name starting
/// with one of [`INJECTION_PREFIXES`]) is refused unless its policy lists the name in
/// `allow_env`. Found in: glibc's list of variables it strips for set-uid programs
/// (`unsecvars.h`: loader, iconv, locale and message-catalog paths), and the ENVIRONMENT
/// sections of python(1), bash(1), zsh(1), perlrun(1), ruby(1), node(1) and php(1): every
/// variable that names code or a directory of code to load, turns on a mode that runs or prints
/// code (inspect, xtrace, a debugger), or defines shell functions.
pub const INJECTION_VARS: &[&str] = &[
    // The dynamic loader and glibc (unsecvars.h).
    "LD_PRELOAD",
    "LD_AUDIT",
    "LD_LIBRARY_PATH",
    "LD_DEBUG",
    "LD_DEBUG_OUTPUT",
    "LD_PROFILE",
    "LD_PROFILE_OUTPUT",
    "LD_ORIGIN_PATH",
    "LD_DYNAMIC_WEAK",
    "LD_USE_LOAD_BIAS",
    "LD_HWCAP_MASK",
    "GCONV_PATH",
    "GETCONF_DIR",
    "LOCPATH",
    "NLSPATH",
    "MALLOC_TRACE",
    // Python.
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "PYTHONUSERBASE",
    "PYTHONINSPECT",
    "PYTHONPYCACHEPREFIX",
    "PYTHONPLATLIBDIR",
    "PYTHONBREAKPOINT",
    "PYTHONWARNINGS",
    "PYTHONEXECUTABLE",
    // Node.js.
    "NODE_OPTIONS",
    "NODE_PATH",
    "NODE_REPL_EXTERNAL_MODULE",
    // Perl.
    "PERL5LIB",
    "PERLLIB",
    "PERL5OPT",
    "PERL5DB",
    "PERLIO",
    // Ruby (every RUBY* name is matched by prefix, see INJECTION_PREFIXES).
    "RUBYOPT",
    "RUBYLIB",
    "GEM_HOME",
    "GEM_PATH",
    // POSIX shells, bash and zsh.
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "BASH_XTRACEFD",
    "BASH_LOADABLES_PATH",
    "PROMPT_COMMAND",
    "CDPATH",
    "ZDOTDIR",
    "FPATH",
    // PHP.
    "PHPRC",
    "PHP_INI_SCAN_DIR",
];

/// Name prefixes that are injection variables ([`INJECTION_VARS`]) whatever follows: exported
/// bash functions (`BASH_FUNC_name%%`, which override any command a bash script runs) and
/// Ruby's variables (`RUBYOPT`, `RUBYLIB`, `RUBYSHELL`, `RUBYGEMS_GEMDEPS`, …).
pub const INJECTION_PREFIXES: &[&str] = &["BASH_FUNC_", "RUBY"];

/// Whether `name` is an injection variable: one of [`INJECTION_VARS`] or a name starting with
/// one of [`INJECTION_PREFIXES`].
pub fn is_injection_var(name: &str) -> bool {
    INJECTION_VARS.contains(&name) || INJECTION_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Variables of a caller's environment that identity reads for what they say (not as
/// injection): where Python's user site directory and zsh's startup files are.
pub(crate) const READ_VARS: &[&str] = &["HOME", "PYTHONUSERBASE", "PYTHONNOUSERSITE", "ZDOTDIR"];

/// What identity learns from a process's environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Environ {
    /// The injection variables set in it, by name, each once.
    pub injected: Vec<String>,
    /// The values of [`READ_VARS`] that are set (the first of each).
    pub read: Vec<(&'static str, String)>,
}

impl Environ {
    /// The value of one of [`READ_VARS`], when set and not empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.read
            .iter()
            .find(|(n, v)| *n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

/// A file's (device, inode).
pub(crate) type FileId = (u64, u64);

/// The (device, inode) of the file the process runs now: one `stat` through `/proc/<pid>/exe`.
pub(crate) fn exe_id(pid: i32) -> io::Result<FileId> {
    let m = std::fs::metadata(format!("/proc/{pid}/exe"))?;
    Ok((m.dev(), m.ino()))
}

/// The daemon's own user namespace.
pub(crate) fn own_user_ns() -> io::Result<FileId> {
    let m = std::fs::metadata("/proc/self/ns/user")?;
    Ok((m.dev(), m.ino()))
}

/// The parent pid of a process.
pub fn parent_pid(pid: i32) -> io::Result<i32> {
    ProcDir::open(pid)?.status().map(|s| s.ppid)
}

/// The tracer pid of a process (0: none).
#[cfg(test)]
pub(crate) fn tracer_pid(pid: i32) -> io::Result<i32> {
    ProcDir::open(pid)?.status().map(|s| s.tracer)
}

/// What `/proc/<pid>/status` says that identity needs, parsed from one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Status {
    /// The parent pid.
    pub ppid: i32,
    /// The real uid.
    pub uid: u32,
    /// The pid of the tracer attached to it (0: none).
    pub tracer: i32,
}

impl Status {
    /// Parses the fields; all three must be there (fail closed). The bytes, not a `str`: the
    /// `Name:` line holds the first 15 bytes of the program's name, which may cut a multi-byte
    /// character in two.
    fn parse(status: &[u8]) -> io::Result<Status> {
        let field = |name: &[u8]| {
            status.split(|&b| b == b'\n').find_map(|l| {
                let v = l.strip_prefix(name)?;
                let v = std::str::from_utf8(v).ok()?;
                v.split_whitespace().next()?.parse::<i64>().ok()
            })
        };
        let ppid = field(b"PPid:").and_then(|v| i32::try_from(v).ok());
        let uid = field(b"Uid:").and_then(|v| u32::try_from(v).ok());
        let tracer = field(b"TracerPid:").and_then(|v| i32::try_from(v).ok());
        match (ppid, uid, tracer) {
            (Some(ppid), Some(uid), Some(tracer)) => Ok(Status { ppid, uid, tracer }),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no PPid/Uid/TracerPid in status",
            )),
        }
    }
}

/// Reads `f` from `offset` to its end into `buf` (cleared first), straight into its spare
/// capacity: procfs files report a size of 0, and `read_to_end` would then probe with small reads
/// and seek. One `pread` per 4 KiB, plus the one that finds the end.
fn read_at_into(f: &File, offset: u64, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    loop {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        let len = buf.len();
        buf.resize(buf.capacity(), 0);
        match f.read_at(&mut buf[len..], offset + len as u64) {
            Ok(0) => {
                buf.truncate(len);
                return Ok(());
            }
            Ok(n) => buf.truncate(len + n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => buf.truncate(len),
            Err(e) => {
                buf.truncate(len);
                return Err(e);
            }
        }
    }
}

/// Open handles on a verified process that tell, with a read or two and no path lookup,
/// whether it has since executed a program (even the same one again: `environ` was opened on
/// the memory of the image that was verified, and reads nothing once an `execve` replaced it)
/// or had a tracer attached (`status`). Not part of what identifies a process: two watches
/// always compare equal.
#[derive(Debug)]
pub struct Watch {
    /// `/proc/<pid>`, for the executable's inode without a path lookup from `/`.
    dir: ProcDir,
    status: File,
    /// `None` when the environment was empty: then only the executable's inode tells an exec.
    environ: Option<File>,
}

impl PartialEq for Watch {
    fn eq(&self, _: &Watch) -> bool {
        true
    }
}

impl Eq for Watch {}

/// What a [`Watch`] saw change.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// The memory image that was verified is gone: an `execve` (or the process exited).
    Executed,
    /// A tracer is attached (its pid).
    Traced(i32),
    /// `status` cannot be read (the process is gone).
    Unreadable(String),
}

impl Watch {
    /// The (device, inode) of the file the process runs now: one `fstatat`.
    pub(crate) fn exe_id(&self) -> io::Result<FileId> {
        let st = self.dir.stat("exe")?;
        Ok((st.st_dev, st.st_ino))
    }

    /// Whether the watch can tell an `execve` of the same program: only through the
    /// environment, so not for a process that started with an empty one.
    pub(crate) fn sees_exec(&self) -> bool {
        self.environ.is_some()
    }

    /// Checks that the watched image still runs, untraced.
    pub(crate) fn check(&self) -> Result<(), Change> {
        if let Some(env) = &self.environ {
            let mut one = [0u8; 1];
            match env.read_at(&mut one, 0) {
                Ok(1) => {}
                _ => return Err(Change::Executed),
            }
        }
        // One pread: `status` is a seq_file produced whole by one show(), and a read of a
        // seq_file fills the buffer as far as the text goes, so a short read is all of it.
        let mut buf = [0u8; 4096];
        let status = match self.status.read_at(&mut buf, 0) {
            Ok(n) if n < buf.len() => Status::parse(&buf[..n]),
            Ok(_) => {
                let mut all = Vec::new();
                read_at_into(&self.status, 0, &mut all).and_then(|()| Status::parse(&all))
            }
            Err(e) => Err(e),
        }
        .map_err(|e| Change::Unreadable(e.to_string()))?;
        match status.tracer {
            0 => Ok(()),
            t => Err(Change::Traced(t)),
        }
    }
}

/// A process pinned through its `/proc/<pid>` directory: every read goes through this open
/// directory (`*at` calls, no path lookups from `/`), so once the process has exited reads fail
/// instead of reaching a process that reused the pid.
#[derive(Debug)]
pub(crate) struct ProcDir {
    dir: OwnedFd,
}

impl ProcDir {
    /// Opens `/proc/<pid>`.
    pub(crate) fn open(pid: i32) -> io::Result<ProcDir> {
        use nix::fcntl::{OFlag, open};
        use nix::sys::stat::Mode;
        let dir = open(
            format!("/proc/{pid}").as_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(ProcDir { dir })
    }

    /// Opens a file below the directory (`exe`, `cmdline`, …).
    pub(crate) fn open_file(&self, name: &str) -> io::Result<File> {
        use nix::fcntl::{OFlag, openat};
        use nix::sys::stat::Mode;
        // Non-blocking, so a FIFO put where a file is expected (a script path) is opened at
        // once and refused by its type instead of holding the serving thread forever.
        let fd = openat(
            &self.dir,
            name,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
            Mode::empty(),
        )?;
        Ok(File::from(fd))
    }

    /// Reads a whole file below the directory.
    pub(crate) fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        read_at_into(&self.open_file(name)?, 0, &mut buf)?;
        Ok(buf)
    }

    /// Where a link below the directory points (`exe`, `cwd`).
    pub(crate) fn read_link(&self, name: &str) -> io::Result<PathBuf> {
        Ok(PathBuf::from(nix::fcntl::readlinkat(&self.dir, name)?))
    }

    /// `stat` of what a name below the directory is or points at (`exe`: the executable file
    /// itself, `ns/user`: the namespace): one `fstatat`, nothing opened.
    pub(crate) fn stat(&self, name: &str) -> io::Result<FileStat> {
        Ok(nix::sys::stat::fstatat(
            self.dir.as_fd(),
            name,
            nix::fcntl::AtFlags::empty(),
        )?)
    }

    /// The parent pid, uid and tracer, from `status`.
    pub(crate) fn status(&self) -> io::Result<Status> {
        Status::parse(&self.read("status")?)
    }

    /// The command line, one string a word.
    pub(crate) fn cmdline(&self) -> Vec<String> {
        self.read("cmdline")
            .map(|bytes| split_cmdline(&bytes))
            .unwrap_or_default()
    }

    /// The user namespace's (device, inode).
    pub(crate) fn user_ns(&self) -> io::Result<FileId> {
        let st = self.stat("ns/user")?;
        Ok((st.st_dev, st.st_ino))
    }

    /// Reads `status` and `environ` once, keeping both open as the process's [`Watch`]; also
    /// returns the status and what the environment says ([`Environ`]).
    pub(crate) fn watch(&self) -> io::Result<(Watch, Status, Environ)> {
        let dir = ProcDir {
            dir: self.dir.try_clone()?,
        };
        let status_file = self.open_file("status")?;
        let environ_file = self.open_file("environ")?;
        let mut buf = Vec::with_capacity(4096);
        read_at_into(&environ_file, 0, &mut buf)?;
        let environ_facts = environ_in(&buf);
        let environ = (!buf.is_empty()).then_some(environ_file);
        read_at_into(&status_file, 0, &mut buf)?;
        let status = Status::parse(&buf)?;
        let watch = Watch {
            dir,
            status: status_file,
            environ,
        };
        Ok((watch, status, environ_facts))
    }
}

/// The injection variables ([`is_injection_var`]) set in a NUL-separated environment block, and
/// the values of [`READ_VARS`].
fn environ_in(environ: &[u8]) -> Environ {
    let mut facts = Environ::default();
    for entry in environ.split(|&b| b == 0) {
        let mut parts = entry.splitn(2, |&b| b == b'=');
        let name = parts.next().unwrap_or_default();
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        if is_injection_var(name) && !facts.injected.iter().any(|f| f == name) {
            facts.injected.push(name.to_string());
        }
        if let Some(known) = READ_VARS.iter().find(|v| **v == name)
            && !facts.read.iter().any(|(n, _)| n == known)
        {
            let value = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            facts.read.push((known, value));
        }
    }
    facts
}

/// Splits a NUL-separated `cmdline`.
pub(crate) fn split_cmdline(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_parsed_and_required() {
        let status =
            b"Name:\tx\xc3\nState:\tS\nPPid:\t7\nTracerPid:\t4242\nUid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(
            Status::parse(status).unwrap(),
            Status {
                ppid: 7,
                uid: 1000,
                tracer: 4242
            }
        );
        assert!(
            Status::parse(b"Name:\tx\nPPid:\t7\nUid:\t1\n").is_err(),
            "a missing TracerPid fails closed"
        );
        assert_eq!(tracer_pid(std::process::id() as i32).unwrap(), 0);
    }

    #[test]
    fn injection_variables_are_found_by_exact_name() {
        let env =
            b"HOME=/h\0LD_PRELOAD=/tmp/x.so\0LD_PRELOADX=1\0ENV=/e\0PATH=/bin\0LD_PRELOAD=2\0";
        let facts = environ_in(env);
        assert_eq!(facts.injected, vec!["LD_PRELOAD", "ENV"]);
        assert_eq!(facts.get("HOME"), Some("/h"));
        assert!(environ_in(b"HOME=/h\0MYENV=1\0").injected.is_empty());
        assert!(environ_in(b"").injected.is_empty());
        // Prefixes: exported bash functions and every RUBY* variable, by their full names.
        let facts = environ_in(
            b"BASH_FUNC_sha256sum%%=() {  echo x\n}\0RUBYSHELL=/bin/sh\0PYTHONUSERBASE=/u\0",
        );
        assert_eq!(
            facts.injected,
            vec!["BASH_FUNC_sha256sum%%", "RUBYSHELL", "PYTHONUSERBASE"]
        );
        assert_eq!(facts.get("PYTHONUSERBASE"), Some("/u"));
        assert!(is_injection_var("SHELLOPTS") && is_injection_var("PS4"));
        assert!(!is_injection_var("PATH") && !is_injection_var("BASH_FUNC"));
    }

    #[test]
    fn own_process_facts() {
        let pid = std::process::id() as i32;
        let dir = ProcDir::open(pid).unwrap();
        assert_eq!(dir.user_ns().unwrap(), own_user_ns().unwrap());
        let exe = std::fs::metadata(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(exe_id(pid).unwrap(), (exe.dev(), exe.ino()));
        let st = dir.stat("exe").unwrap();
        assert_eq!((st.st_dev, st.st_ino), (exe.dev(), exe.ino()));
        assert!(!dir.cmdline().is_empty());
        assert_eq!(dir.status().unwrap().ppid, nix::unistd::getppid().as_raw());
        let (watch, status, _) = dir.watch().unwrap();
        assert_eq!(status.tracer, 0);
        assert_eq!(watch.check(), Ok(()));
    }

    #[test]
    fn a_watch_sees_an_exec_of_the_same_program() {
        // sh, then `exec sh` once told to: same pid, same executable inode, a new image. Each
        // image writes a line before it is looked at, as a caller writes its request: until the
        // first sh runs, it may still share this process's memory (posix_spawn's vfork).
        use std::io::{BufRead, Write};
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "echo started; read go; exec sh -c 'echo ready; sleep 5'",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let (mut started, mut ready) = (String::new(), String::new());
        out.read_line(&mut started).unwrap();
        let before = exe_id(pid).unwrap();
        let (watch, _, _) = ProcDir::open(pid).unwrap().watch().unwrap();
        assert_eq!(watch.check(), Ok(()), "still the image that was watched");
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        out.read_line(&mut ready).unwrap();
        let seen = watch.check();
        let after = exe_id(pid).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(ready, "ready\n");
        assert_eq!(before, after, "the same executable file before and after");
        assert_eq!(seen, Err(Change::Executed));
    }
}
