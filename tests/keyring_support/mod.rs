//! A private D-Bus session bus with a real gnome-keyring, an isolated home, and a broker daemon
//! started as an outside process — for the keyring tests.
//!
//! Every process started here is a child of the test and is killed (SIGTERM, then SIGKILL) on
//! drop. The bus runs with a private configuration without service directories, so nothing is
//! D-Bus-activated behind the test's back: the Secret Service exists exactly when the test
//! started gnome-keyring.

#![allow(dead_code)]

use keychain_auth::protocol::StatusInfo;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The password of the test keyring.
pub const PASSWORD: &str = "test-pass";

/// True when the tools exist; otherwise fails under CI and returns false (skip) elsewhere.
pub fn keyring_tools_available() -> bool {
    let missing: Vec<&str> = [
        "gnome-keyring-daemon",
        "dbus-daemon",
        "secret-tool",
        "dbus-send",
    ]
    .into_iter()
    .filter(|t| which(t).is_none())
    .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "keyring tests need {} (apt-get install gnome-keyring libsecret-tools dbus dbus-user-session)",
        missing.join(", ")
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

/// Polls `f` every 20 ms until it returns `Some`, or panics after `limit` naming `what`.
pub fn poll<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stop(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return; // already reaped: never signal a pid that may have been reused
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// An isolated home: HOME and every XDG directory in one temporary directory.
pub struct Home {
    /// The temporary directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// The session bus every command of this home sees (set by [`Session::start`]): the CLI
    /// must use the same store as the daemon, since both read the audit key from it.
    pub bus: Option<OsString>,
}

impl Home {
    /// A fresh home.
    pub fn new() -> Home {
        let dir = tempfile::Builder::new().prefix("kat").tempdir().unwrap();
        for d in ["run", "config", "data", "cache"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("run"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        Home { dir, bus: None }
    }

    /// The home directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's socket.
    pub fn socket(&self) -> PathBuf {
        self.path().join("run/keychain-auth/agent.sock")
    }

    /// config.json.
    pub fn config(&self) -> PathBuf {
        self.path().join("config/keychain-auth/config.json")
    }

    /// The audit log.
    pub fn audit(&self) -> PathBuf {
        self.path().join("data/keychain-auth/audit.log")
    }

    /// The file store.
    pub fn file_store(&self) -> PathBuf {
        self.path().join(".keychain-auth/keyring.json")
    }

    /// The base environment (no D-Bus address: add one with [`Bus::env`]).
    pub fn env(&self) -> Vec<(String, OsString)> {
        let p = self.path();
        let mut v: Vec<(String, OsString)> = vec![
            ("HOME".into(), p.into()),
            ("XDG_RUNTIME_DIR".into(), p.join("run").into()),
            ("XDG_CONFIG_HOME".into(), p.join("config").into()),
            ("XDG_DATA_HOME".into(), p.join("data").into()),
            ("XDG_CACHE_HOME".into(), p.join("cache").into()),
            (
                "PATH".into(),
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            ),
        ];
        if let Some(bus) = &self.bus {
            v.push(("DBUS_SESSION_BUS_ADDRESS".into(), bus.clone()));
        }
        v
    }

    /// A command with exactly this home's environment plus `extra`.
    pub fn command(
        &self,
        program: impl AsRef<std::ffi::OsStr>,
        extra: &[(String, OsString)],
    ) -> Command {
        let mut c = Command::new(program);
        c.env_clear().envs(self.env()).envs(extra.iter().cloned());
        c
    }

    /// Runs `keychain-auth ARGS` to completion.
    pub fn cli(&self, extra: &[(String, OsString)], args: &[&str]) -> Output {
        self.command(env!("CARGO_BIN_EXE_keychain-auth"), extra)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Registers the reference client with read, write and search on `services`.
    pub fn register_client(&self, services: &[&str]) {
        let mut args = vec!["register", env!("CARGO_BIN_EXE_keychain-auth-client")];
        for s in services {
            args.extend(["--read", s, "--write", s]);
        }
        args.push("--search");
        let out = self.cli(&[], &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sends request lines through the reference client; returns one parsed response each.
    pub fn client(&self, lines: &[serde_json::Value]) -> Vec<serde_json::Value> {
        let mut child = self
            .command(env!("CARGO_BIN_EXE_keychain-auth-client"), &[])
            .env("KEYCHAIN_AUTH_SOCKET", self.socket())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            let mut stdin = child.stdin.take().unwrap();
            for l in lines {
                writeln!(stdin, "{l}").unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let resps: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            resps.len(),
            lines.len(),
            "client output: {text} / {}",
            String::from_utf8_lossy(&out.stderr)
        );
        resps
    }

    /// One request, one response.
    pub fn request(&self, line: serde_json::Value) -> serde_json::Value {
        self.client(&[line]).remove(0)
    }

    /// The audit log's lines.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.audit())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// config.json's `"backend"`.
    pub fn configured_backend(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.config()).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v.get("backend").and_then(|b| b.as_str()).map(String::from)
    }

    /// Writes config.json's `"backend"` by hand, as a user editing the file would (nothing
    /// else is in it in the tests that use this, so there is no policy the seal would hold).
    pub fn set_configured_backend(&self, backend: &str) {
        let path = self.config();
        let mut v: serde_json::Value = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| serde_json::json!({"protocol_version": "1"}));
        v["backend"] = serde_json::Value::String(backend.into());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    }
}

/// A private session bus.
pub struct Bus {
    child: Child,
    /// Its address.
    pub address: String,
}

impl Bus {
    /// Starts `dbus-daemon` with a private configuration listening in `home`.
    pub fn start(home: &Home) -> Bus {
        let conf = home.path().join("bus.conf");
        std::fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                home.path().join("bus").display()
            ),
        )
        .unwrap();
        let mut child = home
            .command("dbus-daemon", &[])
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line.trim().to_string();
        assert!(address.starts_with("unix:"), "dbus-daemon printed {line:?}");
        Bus { child, address }
    }

    /// `DBUS_SESSION_BUS_ADDRESS` for commands.
    pub fn env(&self) -> Vec<(String, OsString)> {
        vec![(
            "DBUS_SESSION_BUS_ADDRESS".into(),
            self.address.clone().into(),
        )]
    }

    /// Stops the bus (every connection on it breaks).
    pub fn stop(&mut self) {
        stop(&mut self.child);
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A gnome-keyring-daemon (secrets component) in the foreground on a [`Bus`].
pub struct Keyring {
    child: Child,
}

impl Keyring {
    /// Starts gnome-keyring with its files in `home`, creating or unlocking the login keyring
    /// with [`PASSWORD`], and waits until it serves a default collection.
    pub fn start(home: &Home, bus: &Bus) -> Keyring {
        let mut child = home
            .command("gnome-keyring-daemon", &bus.env())
            .args(["--foreground", "--unlock", "--components=secrets"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(PASSWORD.as_bytes())
            .unwrap();
        let k = Keyring { child };
        poll(
            "gnome-keyring's default collection",
            Duration::from_secs(20),
            || {
                let out = home
                    .command("dbus-send", &bus.env())
                    .args([
                        "--session",
                        "--print-reply",
                        "--dest=org.freedesktop.secrets",
                        "/org/freedesktop/secrets",
                        "org.freedesktop.Secret.Service.ReadAlias",
                        "string:default",
                    ])
                    .output()
                    .ok()?;
                let text = String::from_utf8_lossy(&out.stdout);
                text.contains("/collection/").then_some(())
            },
        );
        k
    }

    /// Locks the login collection through D-Bus (as a screen lock would).
    pub fn lock(home: &Home, bus: &Bus) {
        let out = home
            .command("dbus-send", &bus.env())
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.secrets",
                "/org/freedesktop/secrets",
                "org.freedesktop.Secret.Service.Lock",
                "array:objpath:/org/freedesktop/secrets/collection/login",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the daemon: calls to it hang while frozen.
    pub fn freeze(&self, frozen: bool) {
        use nix::sys::signal::{Signal, kill};
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        kill(
            pid,
            if frozen {
                Signal::SIGSTOP
            } else {
                Signal::SIGCONT
            },
        )
        .unwrap();
    }

    /// Stops the daemon.
    pub fn stop(&mut self) {
        stop(&mut self.child);
    }
}

impl Drop for Keyring {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A running broker daemon.
pub struct Daemon {
    child: Child,
    stderr: PathBuf,
}

impl Daemon {
    /// Starts `keychain-auth start` with `extra` environment and waits for STATUS.
    pub fn start(home: &Home, extra: &[(String, OsString)]) -> (Daemon, StatusInfo) {
        let stderr = home.path().join(format!(
            "daemon-{}.err",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let mut child = home
            .command(env!("CARGO_BIN_EXE_keychain-auth"), extra)
            .arg("start")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let socket = home.socket();
        let status = poll("the daemon's STATUS", Duration::from_secs(30), || {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "daemon exited with {st}: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            keychain_auth::client::status(&socket, Duration::from_secs(2)).ok()
        });
        (Daemon { child, stderr }, status)
    }

    /// What the daemon wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A home with a bus and an unlocked gnome-keyring.
pub struct Session {
    /// Stops last (declared last).
    pub keyring: Option<Keyring>,
    /// The bus.
    pub bus: Bus,
    /// The home.
    pub home: Home,
}

impl Session {
    /// Everything started, or `None` (skip) when the tools are missing outside CI.
    pub fn start() -> Option<Session> {
        if !keyring_tools_available() {
            return None;
        }
        let mut home = Home::new();
        let bus = Bus::start(&home);
        home.bus = Some(bus.address.clone().into());
        let keyring = Keyring::start(&home, &bus);
        Some(Session {
            keyring: Some(keyring),
            bus,
            home,
        })
    }

    /// The bus environment for commands.
    pub fn env(&self) -> Vec<(String, OsString)> {
        self.bus.env()
    }

    /// A store on this session's bus, in this process.
    pub fn store(&self) -> keychain_auth::backend::secret_service::SecretServiceStore {
        keychain_auth::backend::secret_service::SecretServiceStore::at(
            Some(&self.bus.address),
            Duration::from_secs(10),
        )
        .unwrap()
    }

    /// How many items (duplicates included) the Secret Service's own SearchItems finds for
    /// `key=value`, counted from `dbus-send`'s reply.
    pub fn count_items(&self, key: &str, value: &str) -> usize {
        let out = self
            .home
            .command("dbus-send", &self.env())
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.secrets",
                "/org/freedesktop/secrets",
                "org.freedesktop.Secret.Service.SearchItems",
                &format!("dict:string:string:{key},{value}"),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .matches("object path \"/org/freedesktop/secrets/collection/")
            .count()
    }

    /// Runs `secret-tool ARGS` on this session's bus.
    pub fn secret_tool(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = self
            .home
            .command("secret-tool", &self.env())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            let mut i = child.stdin.take().unwrap();
            if let Some(s) = stdin {
                i.write_all(s.as_bytes()).unwrap();
            }
        }
        child.wait_with_output().unwrap()
    }
}
