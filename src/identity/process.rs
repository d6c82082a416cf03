//! What `/proc/<pid>` says about a process: its executable, command line, user namespace, tracer
//! and environment. Every reader here fails closed: an unreadable fact is an error, never a
//! default that would let a process through.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// Loader and interpreter variables that inject code into a process (SPEC §10). A peer whose
/// environment carries one is refused unless its policy lists the name in `allow_env`.
pub const INJECTION_VARS: &[&str] = &[
    "LD_PRELOAD",
    "LD_AUDIT",
    "LD_LIBRARY_PATH",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "NODE_OPTIONS",
    "NODE_PATH",
    "PERL5LIB",
    "PERL5OPT",
    "RUBYOPT",
    "RUBYLIB",
    "BASH_ENV",
    "ENV",
];

/// A file's (device, inode).
pub(crate) type FileId = (u64, u64);

/// The path `/proc/<pid>/exe` points at.
pub(crate) fn exe_link(pid: i32) -> io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe"))
}

/// The (device, inode) of the file the process runs now: one `stat` through `/proc/<pid>/exe`.
pub(crate) fn exe_id(pid: i32) -> io::Result<FileId> {
    let m = std::fs::metadata(format!("/proc/{pid}/exe"))?;
    Ok((m.dev(), m.ino()))
}

/// The (device, inode) of the user namespace the process lives in.
pub(crate) fn user_ns(pid: i32) -> io::Result<FileId> {
    let m = std::fs::metadata(format!("/proc/{pid}/ns/user"))?;
    Ok((m.dev(), m.ino()))
}

/// The daemon's own user namespace.
pub(crate) fn own_user_ns() -> io::Result<FileId> {
    let m = std::fs::metadata("/proc/self/ns/user")?;
    Ok((m.dev(), m.ino()))
}

/// The command line, one string a word (lossy UTF-8); empty when unreadable.
pub(crate) fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|bytes| split_cmdline(&bytes))
        .unwrap_or_default()
}

/// The parent pid of `pid` (`PPid` in its status).
pub fn parent_pid(pid: i32) -> io::Result<i32> {
    ProcDir::open(pid)?.parent_and_uid().map(|(p, _)| p)
}

/// The pid of the process tracing this one (`TracerPid`), 0 when none.
pub(crate) fn tracer_pid(pid: i32) -> io::Result<i32> {
    // The bytes, not a String: the `Name:` line holds the first 15 bytes of the program's name,
    // which may cut a multi-byte character in two.
    let status = std::fs::read(format!("/proc/{pid}/status"))?;
    parse_tracer_pid(&String::from_utf8_lossy(&status))
}

fn parse_tracer_pid(status: &str) -> io::Result<i32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no TracerPid in status"))
}

/// The names of the [`INJECTION_VARS`] set in the process's initial environment, in order.
pub(crate) fn injection_vars(pid: i32) -> io::Result<Vec<String>> {
    let environ = std::fs::read(format!("/proc/{pid}/environ"))?;
    Ok(injection_vars_in(&environ))
}

fn injection_vars_in(environ: &[u8]) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for entry in environ.split(|&b| b == 0) {
        let name = entry.split(|&b| b == b'=').next().unwrap_or_default();
        if let Some(v) = INJECTION_VARS.iter().find(|v| v.as_bytes() == name)
            && !found.iter().any(|f| f == v)
        {
            found.push((*v).to_string());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracer_pid_is_parsed_and_required() {
        let status = "Name:\tx\nState:\tS\nTracerPid:\t4242\nUid:\t1\n";
        assert_eq!(parse_tracer_pid(status).unwrap(), 4242);
        assert_eq!(parse_tracer_pid("TracerPid:\t0\n").unwrap(), 0);
        assert!(
            parse_tracer_pid("Name:\tx\n").is_err(),
            "missing field fails closed"
        );
        assert_eq!(tracer_pid(std::process::id() as i32).unwrap(), 0);
    }

    #[test]
    fn injection_variables_are_found_by_exact_name() {
        let env =
            b"HOME=/h\0LD_PRELOAD=/tmp/x.so\0LD_PRELOADX=1\0ENV=/e\0PATH=/bin\0LD_PRELOAD=2\0";
        assert_eq!(injection_vars_in(env), vec!["LD_PRELOAD", "ENV"]);
        assert!(injection_vars_in(b"HOME=/h\0MYENV=1\0").is_empty());
        assert!(injection_vars_in(b"").is_empty());
    }

    #[test]
    fn own_process_facts() {
        let pid = std::process::id() as i32;
        assert_eq!(user_ns(pid).unwrap(), own_user_ns().unwrap());
        let exe = std::fs::metadata(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(exe_id(pid).unwrap(), (exe.dev(), exe.ino()));
        assert!(!cmdline(pid).is_empty());
    }
}

/// A process pinned through its `/proc/<pid>` directory: every read goes through this open
/// directory, so once the process has exited reads fail instead of reaching a process that
/// reused the pid.
#[derive(Debug)]
pub(crate) struct ProcDir {
    dir: std::os::fd::OwnedFd,
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
    pub(crate) fn open_file(&self, name: &str) -> io::Result<std::fs::File> {
        use nix::fcntl::{OFlag, openat};
        use nix::sys::stat::Mode;
        let fd = openat(
            &self.dir,
            name,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(std::fs::File::from(fd))
    }

    /// Reads a whole file below the directory.
    pub(crate) fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let mut buf = Vec::new();
        self.open_file(name)?.read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// Where a link below the directory points (`exe`, `cwd`).
    pub(crate) fn read_link(&self, name: &str) -> io::Result<PathBuf> {
        Ok(PathBuf::from(nix::fcntl::readlinkat(&self.dir, name)?))
    }

    /// The parent pid and the real uid, from `status`.
    pub(crate) fn parent_and_uid(&self) -> io::Result<(i32, u32)> {
        let status = String::from_utf8_lossy(&self.read("status")?).into_owned();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next().map(str::to_string))
        };
        let ppid = field("PPid:").and_then(|v| v.parse().ok());
        let uid = field("Uid:").and_then(|v| v.parse().ok());
        match (ppid, uid) {
            (Some(p), Some(u)) => Ok((p, u)),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no PPid/Uid in status",
            )),
        }
    }

    /// The command line, one string a word.
    pub(crate) fn cmdline(&self) -> Vec<String> {
        self.read("cmdline")
            .map(|bytes| split_cmdline(&bytes))
            .unwrap_or_default()
    }

    /// The user namespace's (device, inode).
    pub(crate) fn user_ns(&self) -> io::Result<FileId> {
        let m = self.open_file("ns/user")?.metadata()?;
        Ok((m.dev(), m.ino()))
    }
}

/// Splits a NUL-separated `cmdline`.
pub(crate) fn split_cmdline(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}
