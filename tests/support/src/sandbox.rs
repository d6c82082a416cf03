//! The sandbox: an isolated HOME/XDG tree with its own socket, and everything run inside it.

use crate::client::{Session, expect, parse_lines, write_request};
use crate::daemon::Daemon;
use crate::{
    append_unique, client_bin, copy_executable, daemon_bin, nonce, run_with_input, set_mode,
};
use serde_json::Value;
use std::ffi::{OsStr, OsString};
use std::fmt::Display;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// An isolated HOME and XDG tree (removed on drop) with its own socket path. Every command
/// started through it sees exactly its environment ([`Sandbox::env_vars`]).
pub struct Sandbox {
    /// Root of the tree: `home/`, `config/`, `data/`, `cache/`, `run/` (0700) and whatever a
    /// test puts there (client copies go to `bin/`).
    pub root: PathBuf,
    /// The socket the daemon listens on (`KEYCHAIN_AUTH_SOCKET`).
    pub socket: PathBuf,
    /// Extra environment for every command (a backend choice, a bus address, …).
    pub extra_env: Vec<(String, OsString)>,
    _dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

impl Sandbox {
    /// A fresh tree whose commands use the file store (`KEYCHAIN_AUTH_BACKEND=file`).
    pub fn new() -> Sandbox {
        let mut s = Sandbox::auto();
        s.extra_env
            .push(("KEYCHAIN_AUTH_BACKEND".into(), "file".into()));
        s
    }

    /// A fresh tree that leaves the backend to the product's default (`auto`): no
    /// `KEYCHAIN_AUTH_BACKEND`, no session bus unless one is added ([`KeyringSandbox`]).
    ///
    /// [`KeyringSandbox`]: crate::KeyringSandbox
    pub fn auto() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("ka-test-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().to_path_buf();
        for d in ["home", "config", "data", "cache", "run"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        set_mode(&root.join("run"), 0o700);
        Sandbox {
            socket: root.join("run/keychain-auth/agent.sock"),
            root,
            extra_env: Vec::new(),
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
        self.home().join(".keychain-auth/keyring.json")
    }

    /// Writes `contents` to `path` as the product keeps its state files: the file 0600 in a
    /// 0700 directory (created when missing).
    pub fn write_private(&self, path: &Path, contents: impl AsRef<[u8]>) {
        let dir = path.parent().expect("a file in a directory");
        std::fs::create_dir_all(dir).expect("state dir");
        set_mode(dir, 0o700);
        std::fs::write(path, contents).expect("state file");
        set_mode(path, 0o600);
    }

    /// Every variable the product reads, pointing into this tree, then [`Sandbox::extra_env`].
    pub fn env_vars(&self) -> Vec<(String, OsString)> {
        let mut v: Vec<(String, OsString)> = vec![
            ("HOME".into(), self.home().into()),
            ("XDG_CONFIG_HOME".into(), self.root.join("config").into()),
            ("XDG_DATA_HOME".into(), self.root.join("data").into()),
            ("XDG_CACHE_HOME".into(), self.root.join("cache").into()),
            ("XDG_RUNTIME_DIR".into(), self.root.join("run").into()),
            ("KEYCHAIN_AUTH_SOCKET".into(), self.socket.clone().into()),
            // No system bus unless a test gives one: a vault daemon would otherwise listen to
            // the machine's logind for suspends.
            (
                "DBUS_SYSTEM_BUS_ADDRESS".into(),
                format!("unix:path={}", self.root.join("no-system-bus").display()).into(),
            ),
            (
                "PATH".into(),
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            ),
        ];
        v.extend(self.extra_env.iter().cloned());
        v
    }

    /// A command for `program` with a clean environment pointing into this tree.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env_clear().envs(self.env_vars());
        c
    }

    /// Runs `keychain-auth ARGS` (standard input empty).
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_env(&[], args)
    }

    /// Runs `keychain-auth ARGS` with `extra` environment on top of the sandbox's.
    pub fn cli_env(&self, extra: &[(String, OsString)], args: &[&str]) -> Output {
        self.command(daemon_bin())
            .envs(extra.iter().cloned())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run cli")
    }

    /// Runs `keychain-auth ARGS` like [`Sandbox::cli`], but gives it `secs` seconds: a command
    /// still running then is killed and the test fails saying it hung (for commands an attack
    /// tries to block, such as a FIFO put where a file is read).
    pub fn cli_within(&self, secs: u64, args: &[&str]) -> Output {
        let mut child = self
            .command(daemon_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run cli");
        // Read on threads, so a full pipe cannot stall the command while it is timed.
        let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_end(&mut bytes);
                }
                bytes
            })
        };
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("keychain-auth {args:?} still runs after {secs} s: it hung");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        Output {
            status,
            stdout: stdout.join().expect("stdout"),
            stderr: stderr.join().expect("stderr"),
        }
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
        Daemon::start(self, &[])
    }

    /// Starts `keychain-auth start ARGS` (e.g. `--secret-service`) and waits until it answers
    /// STATUS.
    pub fn start_args(&self, args: &[&str]) -> Daemon {
        Daemon::start_args(self, &[], args)
    }

    /// Starts the daemon with `extra` environment on top of the sandbox's.
    pub fn start_env(&self, extra: &[(String, OsString)]) -> Daemon {
        Daemon::start(self, extra)
    }

    /// A copy of the reference client in `bin/` with unique trailing bytes (so a unique hash),
    /// padded to at least `min_size` bytes.
    pub fn client_named(&self, name: &str, min_size: u64) -> PathBuf {
        let dir = self.root.join("bin");
        std::fs::create_dir_all(&dir).expect("bin dir");
        let path = dir.join(name);
        // Copied, marked and padded by a child process: see `append_unique`.
        let status = Command::new("sh")
            .arg("-c")
            .arg(r#"cp "$1" "$2" && printf '\n#%s#' "$3" >> "$2" && chmod 755 "$2" && if [ "$(stat -c %s "$2")" -lt "$4" ]; then truncate -s "$4" "$2"; fi"#)
            .args(["sh", client_bin()])
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

    /// A copy of the executable `src` in `bin/` named `name`, with a unique hash (any program:
    /// a helper, a shell).
    pub fn copy_unique(&self, src: impl AsRef<Path>, name: &str) -> PathBuf {
        let dir = self.root.join("bin");
        std::fs::create_dir_all(&dir).expect("bin dir");
        let path = dir.join(name);
        // Written by child processes: a concurrent fork cannot hold it open (ETXTBSY).
        copy_executable(src.as_ref(), &path);
        append_unique(&path);
        path
    }

    /// A client copy registered with CLI flags (e.g. `["--read", "s", "--write", "s"]`).
    pub fn registered_client(&self, name: &str, flags: &[&str]) -> PathBuf {
        let c = self.client(name);
        self.register(&c, flags);
        c
    }

    /// Registers `client` by path with CLI flags (e.g. `["--read", "aws"]`).
    pub fn register(&self, client: &Path, flags: &[&str]) {
        let mut args = vec!["register", client.to_str().expect("utf8 path")];
        args.extend_from_slice(flags);
        self.cli_ok(&args);
    }

    /// `client` writes `items` (target, value) into `service` in one request on standard
    /// input; the write must succeed.
    pub fn write_ok(&self, client: &Path, service: &str, items: &[(&str, &str)]) {
        let targets: Vec<&str> = items.iter().map(|(t, _)| *t).collect();
        let values: Vec<&str> = items.iter().map(|(_, v)| *v).collect();
        let line = write_request(service, &targets, &values, serde_json::json!({}));
        expect(&self.run_client_stdin(client, &[&line])[0], "success", None);
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
        self.run_stdin(client, lines).0
    }

    /// Runs `client` with `lines` on standard input: the parsed responses and its stderr.
    fn run_stdin(&self, client: &Path, lines: &[impl Display]) -> (Vec<Value>, String) {
        let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let out = run_with_input(self.command(client), input.as_bytes());
        (
            parse_lines(&out.stdout),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Registers the reference client itself (not a copy) with read, write and search on
    /// `services`, for [`Sandbox::send`].
    pub fn register_reference_client(&self, services: &[&str]) {
        let mut args = vec!["register", client_bin()];
        for s in services {
            args.extend(["--read", s, "--write", s]);
        }
        args.push("--search");
        self.cli_ok(&args);
    }

    /// Sends request lines (strings or JSON values) through the reference client itself, on
    /// standard input and one connection; returns one parsed response each.
    pub fn send_all(&self, lines: &[impl Display]) -> Vec<Value> {
        let (resps, stderr) = self.run_stdin(Path::new(client_bin()), lines);
        assert_eq!(
            resps.len(),
            lines.len(),
            "client output: {resps:?} / {stderr}"
        );
        resps
    }

    /// One request through the reference client itself, one response.
    pub fn send(&self, line: impl Display) -> Value {
        self.send_all(&[line]).remove(0)
    }

    /// Starts `client` with one request line as its argument, stdout and stderr captured; it
    /// runs until the broker answers (a held request waits): see [`held_response`].
    ///
    /// [`held_response`]: crate::held_response
    pub fn spawn_client(&self, client: &Path, line: &str) -> Child {
        self.command(client)
            .arg(line)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn client")
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
        Session::new(child, stdin, stdout)
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

    /// config.json's `"backend"`.
    pub fn configured_backend(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.config()).ok()?;
        let v: Value = serde_json::from_str(&text).expect("config.json is JSON");
        v.get("backend").and_then(|b| b.as_str()).map(String::from)
    }

    /// Writes config.json's `"backend"` by hand, as a user editing the file would (nothing
    /// else is in it in the tests that use this, so there is no policy the seal would hold).
    pub fn set_configured_backend(&self, backend: &str) {
        let path = self.config();
        let mut v: Value = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| serde_json::json!({"protocol_version": "1"}));
        v["backend"] = Value::String(backend.into());
        self.write_private(&path, serde_json::to_vec_pretty(&v).expect("json"));
    }
}
