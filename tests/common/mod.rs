//! Integration-test harness: an isolated HOME/XDG tree, the real daemon binary on a temporary
//! socket, client binaries with distinct hashes, and helpers to talk to the daemon as an outside
//! client would.
#![allow(dead_code)] // each test file uses a different part of the harness

pub mod embedded;
pub mod flow;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The daemon/CLI binary under test.
pub const DAEMON: &str = env!("CARGO_BIN_EXE_keychain-auth");
/// The reference client.
pub const CLIENT: &str = env!("CARGO_BIN_EXE_keychain-auth-client");

/// Polls `f` until it returns `Some`, failing with `what` after `secs` seconds.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An isolated HOME and XDG tree with its own socket path.
pub struct TestEnv {
    /// Root of the tree.
    pub root: PathBuf,
    /// The socket the daemon listens on.
    pub socket: PathBuf,
    /// Extra environment for every command (e.g. a backend choice).
    pub extra_env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl TestEnv {
    /// A fresh tree using the file store.
    pub fn new() -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("ka-test-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().to_path_buf();
        for d in ["home", "config", "data", "run"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        set_mode(&root.join("run"), 0o700);
        TestEnv {
            socket: root.join("run/keychain-auth/agent.sock"),
            root,
            extra_env: vec![("KEYCHAIN_AUTH_BACKEND".into(), "file".into())],
            _dir: dir,
        }
    }

    /// The isolated HOME.
    pub fn home(&self) -> PathBuf {
        self.root.join("home")
    }
    /// config.json.
    pub fn config(&self) -> PathBuf {
        self.root.join("config/keychain-auth/config.json")
    }
    /// pending.json.
    pub fn pending(&self) -> PathBuf {
        self.root.join("config/keychain-auth/pending.json")
    }
    /// audit.log.
    pub fn audit(&self) -> PathBuf {
        self.root.join("data/keychain-auth/audit.log")
    }
    /// The file store.
    pub fn file_store(&self) -> PathBuf {
        self.root.join("home/.keychain-auth/keyring.json")
    }

    /// Every variable the product reads, pointing into this tree.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = vec![
            ("HOME".into(), s(&self.home())),
            ("XDG_CONFIG_HOME".into(), s(&self.root.join("config"))),
            ("XDG_DATA_HOME".into(), s(&self.root.join("data"))),
            ("XDG_RUNTIME_DIR".into(), s(&self.root.join("run"))),
            ("KEYCHAIN_AUTH_SOCKET".into(), s(&self.socket)),
            (
                "PATH".into(),
                std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
            ),
        ];
        v.extend(self.extra_env.iter().cloned());
        v
    }

    /// A command for `program` with a clean environment pointing into this tree.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env_clear().envs(self.env_vars());
        c
    }

    /// Runs `keychain-auth ARGS`.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(DAEMON).args(args).output().expect("run cli")
    }

    /// Runs `keychain-auth ARGS`, which must succeed; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "keychain-auth {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `keychain-auth ARGS`, which must fail with a one-line reason; returns that line.
    pub fn cli_err(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(!out.status.success(), "keychain-auth {args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "keychain-auth {args:?}: failure must be one line, got {err:?}"
        );
        assert!(err.starts_with("keychain-auth: "), "{err}");
        err.trim_end().to_string()
    }

    /// Starts the daemon and waits until it answers STATUS.
    pub fn start(&self) -> Daemon {
        self.start_with(&[])
    }

    /// Starts the daemon behind `prefix` (e.g. `["dbus-run-session", "--"]`).
    pub fn start_with(&self, prefix: &[&str]) -> Daemon {
        let out = self.root.join(format!("daemon-{}.out", nonce()));
        let err = out.with_extension("err");
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = self.command(first);
                c.args(rest).arg(DAEMON);
                c
            }
            None => self.command(DAEMON),
        };
        let child = cmd
            .arg("start")
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"))
            .spawn()
            .expect("spawn daemon");
        let mut d = Daemon {
            child: Some(child),
            stdout: out,
            stderr: err,
            socket: self.socket.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if status(&self.socket).is_some() {
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

    /// A copy of the reference client with unique trailing bytes (so a unique hash), padded to
    /// at least `min_size` bytes.
    pub fn client_named(&self, name: &str, min_size: u64) -> PathBuf {
        let dir = self.root.join("bin");
        std::fs::create_dir_all(&dir).expect("bin dir");
        let path = dir.join(name);
        // Copied, marked and padded by a child process: see `append_unique`.
        let status = Command::new("sh")
            .arg("-c")
            .arg(r#"cp "$1" "$2" && printf '\n#%s#' "$3" >> "$2" && chmod 755 "$2" && if [ "$(stat -c %s "$2")" -lt "$4" ]; then truncate -s "$4" "$2"; fi"#)
            .args(["sh", CLIENT])
            .arg(&path)
            .arg(nonce())
            .arg(min_size.to_string())
            .status()
            .expect("sh");
        assert!(status.success(), "could not make the client copy {name}");
        path
    }

    /// A client copy with a unique hash.
    pub fn client(&self, name: &str) -> PathBuf {
        self.client_named(name, 0)
    }

    /// Runs `client` with request lines as arguments; returns the parsed responses.
    pub fn run_client(&self, client: &Path, lines: &[&str]) -> Vec<Value> {
        let out = self
            .command(client)
            .args(lines)
            .output()
            .expect("run client");
        assert_ne!(
            out.status.code(),
            Some(2),
            "client could not connect: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        parse_lines(&out.stdout)
    }

    /// Runs `client` sending `lines` on standard input (keeps them out of argv).
    pub fn run_client_stdin(&self, client: &Path, lines: &[&str]) -> Vec<Value> {
        let mut child = self
            .command(client)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn client");
        {
            let mut stdin = child.stdin.take().expect("stdin");
            for l in lines {
                writeln!(stdin, "{l}").expect("write stdin");
            }
        }
        let out = child.wait_with_output().expect("client output");
        parse_lines(&out.stdout)
    }

    /// Starts `client` as a long-lived session fed line by line.
    pub fn session(&self, client: &Path) -> Session {
        let mut child = self
            .command(client)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn session");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Session {
            child,
            stdin,
            stdout,
        }
    }

    /// Registers `client` by path with CLI flags (e.g. `["--read", "aws"]`).
    pub fn register(&self, client: &Path, flags: &[&str]) {
        let mut args = vec!["register", client.to_str().expect("utf8 path")];
        args.extend_from_slice(flags);
        self.cli_ok(&args);
    }

    /// The audit log's records.
    pub fn audit_records(&self) -> Vec<Value> {
        std::fs::read_to_string(self.audit())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect()
    }

    /// `list-pending --json`.
    pub fn pending_entries(&self) -> Vec<Value> {
        serde_json::from_str(&self.cli_ok(&["list-pending", "--json"])).expect("pending json")
    }

    /// `list --json`.
    pub fn registered(&self) -> Vec<Value> {
        serde_json::from_str(&self.cli_ok(&["list", "--json"])).expect("list json")
    }
}

/// A running daemon; SIGTERM then SIGKILL on drop.
pub struct Daemon {
    /// The process (taken by `kill`).
    pub child: Option<Child>,
    /// Where its stdout goes.
    pub stdout: PathBuf,
    /// Where its stderr goes.
    pub stderr: PathBuf,
    socket: PathBuf,
}

impl Daemon {
    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        format!(
            "{}{}",
            std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
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
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
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
    }
}

/// A client process fed one request line at a time over one connection.
pub struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Session {
    /// Sends one request line and returns the parsed response.
    pub fn send(&mut self, line: &str) -> Value {
        writeln!(self.stdin, "{line}").expect("write to session");
        self.stdin.flush().expect("flush");
        let mut resp = String::new();
        self.stdout.read_line(&mut resp).expect("read response");
        serde_json::from_str(&resp).unwrap_or_else(|e| panic!("bad response {resp:?}: {e}"))
    }

    /// The client's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw connection from the test process itself (for malformed input).
pub struct Raw {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Raw {
    /// Connects to `socket`.
    pub fn connect(socket: &Path) -> Raw {
        let stream = UnixStream::connect(socket).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Raw { stream, reader }
    }

    /// Sends raw bytes (no newline added).
    pub fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one response line; `None` when the daemon closed the connection.
    pub fn read_line(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&line).expect("response is JSON")),
        }
    }

    /// Sends `bytes` plus a newline and reads the response.
    pub fn round_trip(&mut self, bytes: &[u8]) -> Option<Value> {
        let mut v = bytes.to_vec();
        v.push(b'\n');
        self.send_bytes(&v).ok()?;
        self.read_line()
    }

    /// True when the daemon has closed the connection (EOF within the read timeout).
    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0) | Err(_))
    }
}

/// STATUS from the daemon at `socket`, if one answers.
pub fn status(socket: &Path) -> Option<Value> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(b"{\"type\":\"STATUS\"}\n").ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    serde_json::from_str(&line).ok()
}

/// A request line.
pub fn request(action: &str, service: &str, targets: &[&str]) -> String {
    serde_json::json!({"type":"REQUEST","action":action,"service":service,"targets":targets})
        .to_string()
}

/// A write request line.
pub fn write_request(
    service: &str,
    targets: &[&str],
    values: &[&str],
    attributes: Value,
) -> String {
    serde_json::json!({"type":"REQUEST","action":"write","service":service,"targets":targets,
        "values":values,"attributes":attributes})
    .to_string()
}

/// Asserts a response's status and reason; returns its message.
pub fn expect(resp: &Value, status: &str, reason: Option<&str>) -> String {
    assert_eq!(resp["type"], "RESPONSE", "{resp}");
    assert_eq!(resp["status"], status, "{resp}");
    match reason {
        Some(r) => assert_eq!(resp["reason"], r, "{resp}"),
        None => assert!(resp.get("reason").is_none(), "{resp}"),
    }
    resp["message"].as_str().unwrap_or_default().to_string()
}

/// Target names of a response's results.
pub fn targets(resp: &Value) -> Vec<String> {
    resp["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["target"].as_str().expect("target").to_string())
        .collect()
}

fn parse_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

fn s(p: &Path) -> String {
    p.to_str().expect("utf8 path").to_string()
}

/// A process-unique string.
pub fn nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}

/// Copies the executable `src` to `dst` in a child process (see [`append_unique`] for why).
pub fn copy_executable(src: &Path, dst: &Path) {
    let status = Command::new("cp").arg(src).arg(dst).status().expect("cp");
    assert!(status.success(), "cp {} {}", src.display(), dst.display());
}

/// Writes an executable file (mode 0755) in a child process (see [`append_unique`] for why).
pub fn write_executable(path: &Path, contents: &[u8]) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"cat > "$1" && chmod 755 "$1""#)
        .arg("sh")
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("sh");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(contents)
        .expect("write");
    assert!(
        child.wait().expect("wait").success(),
        "write {}",
        path.display()
    );
}

/// Appends unique bytes to the file at `path` (a new hash; an ELF runs fine with them).
///
/// The file is written by a child process, never by this one: a test binary runs its tests on
/// several threads, and a child another thread forks while this process holds the file open
/// for writing would keep that descriptor until it execs, making an exec of the file fail with
/// ETXTBSY ("Text file busy").
pub fn append_unique(path: &Path) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#"printf '\n#%s#' "$2" >> "$1" && chmod 755 "$1""#)
        .arg("sh")
        .arg(path)
        .arg(nonce())
        .status()
        .expect("sh");
    assert!(status.success(), "could not mark {}", path.display());
}

/// chmod.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A file's permission bits.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}
