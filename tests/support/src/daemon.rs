//! The real daemon as a child process, and STATUS as an outside client asks for it.

use crate::daemon_bin;
use crate::sandbox::Sandbox;
use serde_json::Value;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A running `keychain-auth start`; SIGTERM, then SIGKILL after 5 s, on drop.
pub struct Daemon {
    /// The process (taken by [`Daemon::stop_with`]).
    pub child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
    socket: PathBuf,
}

impl Daemon {
    /// Starts `keychain-auth start` in `sandbox` with `extra` environment, and waits until it
    /// answers STATUS (30 s at most).
    pub(crate) fn start(sandbox: &Sandbox, extra: &[(String, OsString)]) -> Daemon {
        Daemon::start_args(sandbox, extra, &[])
    }

    /// Starts `keychain-auth start ARGS` (e.g. `--secret-service`) like [`Daemon::start`].
    pub(crate) fn start_args(
        sandbox: &Sandbox,
        extra: &[(String, OsString)],
        args: &[&str],
    ) -> Daemon {
        let stdout = sandbox.root.join(format!("daemon-{}.out", crate::nonce()));
        let stderr = stdout.with_extension("err");
        let child = sandbox
            .command(daemon_bin())
            .envs(extra.iter().cloned())
            .arg("start")
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn daemon");
        let mut d = Daemon {
            child: Some(child),
            stdout,
            stderr,
            socket: sandbox.socket.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if status(&d.socket).is_some() {
                return d;
            }
            if let Some(Ok(Some(code))) = d.child.as_mut().map(Child::try_wait) {
                panic!("daemon exited with {code} before listening: {}", d.output());
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not answer STATUS: {}",
                d.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Everything it printed so far (stdout, then stderr).
    pub fn output(&self) -> String {
        format!(
            "{}{}",
            std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            self.stderr()
        )
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Its STATUS now, which it must answer.
    pub fn status(&self) -> Value {
        status(&self.socket).expect("the daemon answers STATUS")
    }

    /// Sends `signal` and waits for the exit status.
    pub fn stop_with(&mut self, signal: nix::sys::signal::Signal) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon still running");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal);
        child.wait().expect("wait daemon")
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child);
        }
    }
}

/// Stops a child: SIGCONT (it may be frozen) and SIGTERM, then SIGKILL after 5 s.
pub(crate) fn stop(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return; // already reaped: never signal a pid that may have been reused
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// STATUS from the daemon at `socket`, if one answers within 5 s (asked with a raw line, as
/// any outside client could).
pub fn status(socket: &Path) -> Option<Value> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(b"{\"type\":\"STATUS\"}\n").ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    serde_json::from_str(&line).ok()
}
