//! The optional keyring layer on top of a [`Sandbox`]: a private D-Bus session bus and a real
//! gnome-keyring, unlocked, for the keyring tests and the bench's keyring row.
//!
//! Every process started here is a child of the test and is stopped (SIGTERM, then SIGKILL) on
//! drop. The bus runs with a private configuration without service directories, so nothing is
//! D-Bus-activated behind the test's back: the Secret Service exists exactly when the test
//! started gnome-keyring.
//!
//! ```ignore
//! let Some(s) = KeyringSandbox::start() else { return }; // SKIPPED without gnome-keyring
//! let d = s.sandbox.start(); // the daemon picks the keyring (auto)
//! assert_eq!(d.status()["backend"], "keyring");
//! ```

use crate::daemon::stop;
use crate::sandbox::Sandbox;
use crate::{run_with_input, tools_available, wait_for};
use keychain_auth::backend::secret_service::SecretServiceStore;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

/// The password of the test keyring.
pub const PASSWORD: &str = "test-pass";

/// True when gnome-keyring, dbus-daemon, secret-tool and dbus-send exist; otherwise fails
/// under CI and returns false (skip, with a SKIPPED line) elsewhere.
pub fn keyring_tools_available() -> bool {
    tools_available(
        &[
            "gnome-keyring-daemon",
            "dbus-daemon",
            "secret-tool",
            "dbus-send",
        ],
        "gnome-keyring libsecret-tools dbus dbus-user-session",
    )
}

/// Runs `dbus-send --session --print-reply --dest=org.freedesktop.secrets ARGS` in `sandbox`
/// on the bus at `address`.
fn dbus_send(sandbox: &Sandbox, address: &str, args: &[&str]) -> Output {
    sandbox
        .command("dbus-send")
        .env("DBUS_SESSION_BUS_ADDRESS", address)
        .args([
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.secrets",
        ])
        .args(args)
        .output()
        .expect("dbus-send")
}

/// A private session bus (`dbus-daemon`), stopped on drop.
pub struct Bus {
    child: Child,
    /// Its address.
    pub address: String,
}

impl Bus {
    /// Starts `dbus-daemon` with a private configuration listening in the sandbox's root.
    pub fn start(sandbox: &Sandbox) -> Bus {
        Bus::start_with_services(sandbox, None)
    }

    /// [`Bus::start`], with `services` as the one directory of D-Bus activation files (the
    /// bus starts a service named there on the first call to its name).
    pub fn start_with_services(sandbox: &Sandbox, services: Option<&std::path::Path>) -> Bus {
        let servicedir = services
            .map(|d| format!("  <servicedir>{}</servicedir>\n", d.display()))
            .unwrap_or_default();
        let conf = sandbox.root.join("bus.conf");
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
{servicedir}</busconfig>
"#,
                sandbox.root.join("bus").display()
            ),
        )
        .expect("bus.conf");
        let mut child = sandbox
            .command("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dbus-daemon");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("dbus-daemon's address");
        let address = line.trim().to_string();
        assert!(address.starts_with("unix:"), "dbus-daemon printed {line:?}");
        Bus { child, address }
    }

    /// `DBUS_SESSION_BUS_ADDRESS` for a command's extra environment.
    pub fn env(&self) -> Vec<(String, OsString)> {
        vec![(
            "DBUS_SESSION_BUS_ADDRESS".into(),
            self.address.clone().into(),
        )]
    }

    /// Whether `name` has an owner on this bus (asked with `dbus-send`).
    pub fn has_owner(&self, sandbox: &Sandbox, name: &str) -> bool {
        let out = sandbox
            .command("dbus-send")
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
            ])
            .arg(format!("string:{name}"))
            .output()
            .expect("dbus-send");
        String::from_utf8_lossy(&out.stdout).contains("boolean true")
    }

    /// Waits (10 s at most) until `name` has an owner on this bus.
    pub fn wait_for_owner(&self, sandbox: &Sandbox, name: &str) {
        wait_for(10, name, || self.has_owner(sandbox, name).then_some(()));
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

/// A gnome-keyring-daemon (secrets component) in the foreground on a [`Bus`], stopped on drop.
pub struct Keyring {
    child: Child,
}

impl Keyring {
    /// Starts gnome-keyring with its files in `sandbox`, creating or unlocking the login
    /// keyring with [`PASSWORD`], and waits until it serves a default collection.
    pub fn start(sandbox: &Sandbox, bus: &Bus) -> Keyring {
        let mut child = sandbox
            .command("gnome-keyring-daemon")
            .envs(bus.env())
            .args(["--foreground", "--unlock", "--components=secrets"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn gnome-keyring-daemon");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(PASSWORD.as_bytes())
            .expect("password");
        let k = Keyring { child };
        wait_for(20, "gnome-keyring's default collection", || {
            let out = dbus_send(
                sandbox,
                &bus.address,
                &[
                    "/org/freedesktop/secrets",
                    "org.freedesktop.Secret.Service.ReadAlias",
                    "string:default",
                ],
            );
            let text = String::from_utf8_lossy(&out.stdout);
            text.contains("/collection/").then_some(())
        });
        k
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
        .expect("kill");
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

/// A sandbox (backend left to `auto`) with a private bus and an unlocked gnome-keyring; every
/// command of the sandbox sees the bus. Dropped in field order: keyring, bus, then the tree.
pub struct KeyringSandbox {
    /// The keyring (`None` once a test took it to stop it).
    pub keyring: Option<Keyring>,
    /// The bus.
    pub bus: Bus,
    /// The sandbox; its [`Sandbox::extra_env`] holds the bus address.
    pub sandbox: Sandbox,
}

impl KeyringSandbox {
    /// Everything started, or `None` (skip) when the tools are missing outside CI.
    pub fn start() -> Option<KeyringSandbox> {
        if !keyring_tools_available() {
            return None;
        }
        let mut sandbox = Sandbox::auto();
        let bus = Bus::start(&sandbox);
        sandbox.extra_env.extend(bus.env());
        let keyring = Keyring::start(&sandbox, &bus);
        Some(KeyringSandbox {
            keyring: Some(keyring),
            bus,
            sandbox,
        })
    }

    /// Locks the login collection through D-Bus (as a screen lock would).
    pub fn lock_keyring(&self) {
        let out = dbus_send(
            &self.sandbox,
            &self.bus.address,
            &[
                "/org/freedesktop/secrets",
                "org.freedesktop.Secret.Service.Lock",
                "array:objpath:/org/freedesktop/secrets/collection/login",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A Secret Service store on this bus, in this process.
    pub fn store(&self) -> SecretServiceStore {
        SecretServiceStore::at(Some(&self.bus.address), Duration::from_secs(10))
            .expect("a store on the test bus")
    }

    /// How many items (duplicates included) the Secret Service's own SearchItems finds for
    /// `key=value`, counted from `dbus-send`'s reply.
    pub fn count_items(&self, key: &str, value: &str) -> usize {
        let out = dbus_send(
            &self.sandbox,
            &self.bus.address,
            &[
                "/org/freedesktop/secrets",
                "org.freedesktop.Secret.Service.SearchItems",
                &format!("dict:string:string:{key},{value}"),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .matches("object path \"/org/freedesktop/secrets/collection/")
            .count()
    }

    /// Runs `secret-tool ARGS` on this bus with `stdin` as its input.
    pub fn secret_tool(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.sandbox.command("secret-tool");
        cmd.args(args);
        run_with_input(cmd, stdin.unwrap_or_default().as_bytes())
    }
}
