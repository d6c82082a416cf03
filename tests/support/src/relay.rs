//! A connection to the broker written by another process that runs the test binary itself.
//!
//! An embedded broker's own executable is the test binary, so a process running it is
//! "keychain-auth itself" to that broker (the rule for a connected dashboard). The test process
//! cannot be that approver: Cargo starts tests with `LD_LIBRARY_PATH` set, which the injection
//! guard refuses in an approver as in any caller. A [`Relay`] starts the test binary again with
//! the sandbox's clean environment, running one ignored test that calls [`relay_main`]: it
//! connects to the socket and copies lines from its standard input to the socket and from the
//! socket to its standard output, so every byte on the connection is written by that child.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::time::Duration;

/// The child side: connects to `KEYCHAIN_AUTH_SOCKET` and relays lines both ways until either
/// side closes (or nothing arrives from the broker for 20 s). Call it from an `#[ignore]`d test
/// that [`Relay::start`] names.
pub fn relay_main() {
    let socket = std::env::var_os("KEYCHAIN_AUTH_SOCKET").expect("KEYCHAIN_AUTH_SOCKET");
    let stream = UnixStream::connect(socket).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut to_broker = stream.try_clone().expect("clone");
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut stdin = std::io::stdin().lock();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || to_broker.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let mut from_broker = BufReader::new(stream);
    let mut out = std::io::stdout().lock();
    let mut line = String::new();
    while matches!(from_broker.read_line(&mut line), Ok(n) if n > 0) {
        // Each line alone, marked, so the parent can tell it from the test harness's output.
        if out.write_all(format!("\nRELAY {line}").as_bytes()).is_err() || out.flush().is_err() {
            break;
        }
        line.clear();
    }
}

/// The parent side: a running relay child and its pipes.
pub struct Relay {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Relay {
    /// Starts the ignored test `helper` of the running test binary (which must call
    /// [`relay_main`]) with the sandbox's environment plus `env`, run by `wrapper` (for
    /// instance a tracer taking the program as its first argument) when given.
    pub fn start(
        sandbox: &crate::Sandbox,
        helper: &str,
        wrapper: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Relay {
        let exe = std::env::current_exe().expect("the test binary");
        let mut cmd = match wrapper {
            Some(w) => {
                let mut c = sandbox.command(w);
                c.arg(&exe);
                c
            }
            None => sandbox.command(&exe),
        };
        cmd.args([
            helper,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("start the relay");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Relay {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends raw bytes (no newline added).
    pub fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stdin.write_all(bytes)?;
        self.stdin.flush()
    }

    /// Reads the broker's next line; `None` when the connection closed.
    pub fn read_line(&mut self) -> Option<Value> {
        let mut line = String::new();
        loop {
            line.clear();
            match self.stdout.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            if let Some(json) = line.strip_prefix("RELAY ") {
                return Some(serde_json::from_str(json).expect("the broker's line is JSON"));
            }
        }
    }

    /// Sends `bytes` plus a newline and reads the broker's next line.
    pub fn round_trip(&mut self, bytes: &[u8]) -> Option<Value> {
        let mut v = bytes.to_vec();
        v.push(b'\n');
        self.send_bytes(&v).ok()?;
        self.read_line()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
