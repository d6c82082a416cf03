//! The broker as a systemd user service: `install` / `uninstall` write and remove the socket
//! and service units (naming the binary that ran `install`, accepted by `systemd-analyze
//! verify`), and the daemon started as systemd starts it — the listening socket passed as
//! descriptor 3 with LISTEN_FDS/LISTEN_PID — serves callers on it and says READY=1 on
//! NOTIFY_SOCKET.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;
use testkit::{Sandbox, daemon_bin, request, write_executable};

fn unit_dir(env: &Sandbox) -> PathBuf {
    env.root.join("config/systemd/user")
}

/// A `systemctl` on PATH that records its arguments (one call a line) and exits `code`.
fn fake_systemctl(env: &Sandbox, code: i32) -> (Vec<(String, OsString)>, PathBuf) {
    let dir = env.root.join("fakebin");
    std::fs::create_dir_all(&dir).expect("fakebin");
    let log = env.root.join("systemctl.log");
    write_executable(
        &dir.join("systemctl"),
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\n[ {code} -eq 0 ] || echo 'Failed to connect to bus: No medium found' >&2\nexit {code}\n",
            log.display()
        )
        .as_bytes(),
    );
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
    );
    (vec![("PATH".into(), path.into())], log)
}

fn calls(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn install_writes_units_naming_this_binary_and_enables_the_socket_idempotently() {
    let env = Sandbox::new();
    let (fake, log) = fake_systemctl(&env, 0);
    let out = ok(&env.cli_env(&fake, &["install"]));
    assert!(
        out.contains("wrote keychain-auth.socket and keychain-auth.service"),
        "{out}"
    );
    assert!(out.contains("enabled and listening"), "{out}");

    let bin = std::fs::canonicalize(daemon_bin()).expect("canonical binary");
    let service = std::fs::read_to_string(unit_dir(&env).join("keychain-auth.service"))
        .expect("service unit");
    let socket =
        std::fs::read_to_string(unit_dir(&env).join("keychain-auth.socket")).expect("socket unit");
    assert!(
        service.contains(&format!("\nExecStart=\"{}\" start\n", bin.display())),
        "{service}"
    );
    assert!(service.contains("\nType=notify\n"), "{service}");
    // The service reads the same files as the shell that ran install.
    assert!(
        service.contains(&format!(
            "\nEnvironment=\"XDG_CONFIG_HOME={}\"\n",
            env.root.join("config").display()
        )),
        "{service}"
    );
    assert!(service.contains("\nEnvironment=\"KEYCHAIN_AUTH_BACKEND=file\"\n"));
    // KEYCHAIN_AUTH_SOCKET is set in the sandbox: systemd listens exactly there.
    assert!(
        socket.contains(&format!("\nListenStream={}\n", env.socket.display())),
        "{socket}"
    );
    assert!(socket.contains("\nSocketMode=0600\n") && socket.contains("\nDirectoryMode=0700\n"));
    assert_eq!(
        calls(&log),
        [
            "--user daemon-reload",
            "--user enable --now keychain-auth.socket"
        ]
    );

    // Again: nothing rewritten, same answer.
    let before = std::fs::metadata(unit_dir(&env).join("keychain-auth.service"))
        .expect("meta")
        .modified()
        .expect("mtime");
    let again = ok(&env.cli_env(&fake, &["install"]));
    assert!(again.contains("already installed"), "{again}");
    let after = std::fs::metadata(unit_dir(&env).join("keychain-auth.service"))
        .expect("meta")
        .modified()
        .expect("mtime");
    assert_eq!(before, after, "an unchanged unit is not rewritten");
}

#[test]
fn installed_units_pass_systemd_analyze_verify() {
    if !testkit::tools_available(&["systemd-analyze"], "systemd") {
        return;
    }
    let env = Sandbox::new();
    ok(&env.cli(&["install", "--no-enable"]));
    // systemd-analyze runs a user manager of its own: it needs a runtime directory.
    let out = env
        .command("systemd-analyze")
        .current_dir(unit_dir(&env))
        .args([
            "--user",
            "verify",
            "keychain-auth.socket",
            "keychain-auth.service",
        ])
        .output()
        .expect("systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verify failed: {err}");
    // Warnings (an unknown key, a bad value) leave the exit status 0: none is allowed.
    assert!(err.trim().is_empty(), "verify warned: {err}");

    // The check is real: a unit naming a binary that is not there fails it.
    let service = unit_dir(&env).join("keychain-auth.service");
    let text = std::fs::read_to_string(&service).expect("service");
    let bin = std::fs::canonicalize(daemon_bin()).expect("canonical binary");
    std::fs::write(
        &service,
        text.replace(&bin.display().to_string(), "/nonexistent/keychain-auth"),
    )
    .expect("edit");
    let out = env
        .command("systemd-analyze")
        .current_dir(unit_dir(&env))
        .args([
            "--user",
            "verify",
            "keychain-auth.socket",
            "keychain-auth.service",
        ])
        .output()
        .expect("systemd-analyze");
    assert!(
        !out.status.success(),
        "a missing ExecStart binary must fail verify"
    );
}

#[test]
fn install_without_a_user_manager_fails_in_one_line_and_no_enable_does_not_ask() {
    let env = Sandbox::new();
    let (fake, log) = fake_systemctl(&env, 1);
    let out = env.cli_env(&fake, &["install"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("could not enable them"), "{err}");
    assert!(err.contains("Failed to connect to bus"), "{err}");
    assert!(
        err.contains("systemctl --user enable --now keychain-auth.socket"),
        "{err}"
    );
    // The units are written all the same, for a later `systemctl --user enable`.
    assert!(unit_dir(&env).join("keychain-auth.service").is_file());

    std::fs::remove_file(&log).expect("reset log");
    let out = ok(&env.cli_env(&fake, &["install", "--no-enable"]));
    assert!(out.contains("not enabled (--no-enable)"), "{out}");
    assert!(calls(&log).is_empty(), "--no-enable must not run systemctl");
}

#[test]
fn uninstall_stops_and_removes_only_what_install_wrote() {
    let env = Sandbox::new();
    let (fake, log) = fake_systemctl(&env, 0);
    ok(&env.cli_env(&fake, &["install"]));
    std::fs::remove_file(&log).expect("reset log");
    let out = ok(&env.cli_env(&fake, &["uninstall"]));
    assert!(out.contains("stopped and disabled"), "{out}");
    assert!(!unit_dir(&env).join("keychain-auth.service").exists());
    assert!(!unit_dir(&env).join("keychain-auth.socket").exists());
    assert_eq!(
        calls(&log),
        [
            "--user disable --now keychain-auth.socket keychain-auth.service",
            "--user daemon-reload"
        ]
    );
    // Nothing left: says so, exit 0, no systemctl.
    std::fs::remove_file(&log).expect("reset log");
    let out = ok(&env.cli_env(&fake, &["uninstall"]));
    assert!(out.contains("nothing to remove"), "{out}");
    assert!(calls(&log).is_empty());

    // A unit file of the same name that install did not write is neither replaced nor removed.
    std::fs::write(
        unit_dir(&env).join("keychain-auth.service"),
        "[Service]\nExecStart=/bin/mine\n",
    )
    .expect("own unit");
    for cmd in ["install", "uninstall"] {
        let out = env.cli_env(&fake, &[cmd]);
        assert!(!out.status.success(), "{cmd} must refuse a foreign unit");
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("was not written by keychain-auth install"),
            "{cmd}"
        );
        assert_eq!(
            std::fs::read_to_string(unit_dir(&env).join("keychain-auth.service")).expect("kept"),
            "[Service]\nExecStart=/bin/mine\n"
        );
    }
}

/// The daemon started as systemd starts it: bash puts the listening socket on descriptor 3 and
/// execs the daemon (same pid, so `LISTEN_PID=$$` names it).
struct Activated {
    child: Option<Child>,
}

impl Activated {
    fn start(
        env: &Sandbox,
        listener: &UnixListener,
        extra: &[(&str, &Path)],
        listen_pid: Option<&str>,
    ) -> Activated {
        let fd = listener.as_raw_fd();
        // Inheritable for this one spawn (std opens it close-on-exec).
        nix::fcntl::fcntl(
            listener,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        )
        .expect("clear cloexec");
        let pid = listen_pid.unwrap_or("$$");
        let move_fd = if fd == 3 {
            String::new()
        } else {
            format!("exec 3<&{fd} {fd}<&-; ")
        };
        let child = env
            .command("bash")
            .envs(
                extra
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.as_os_str().to_owned())),
            )
            .arg("-c")
            .arg(format!(
                "{move_fd}LISTEN_PID={pid} LISTEN_FDS=1 exec \"$0\" start"
            ))
            .arg(daemon_bin())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        nix::fcntl::fcntl(
            listener,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .expect("set cloexec");
        Activated { child: Some(child) }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn stop(mut self) -> String {
        let child = self.child.take().expect("running");
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "clean exit on SIGTERM: {out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Activated {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A listening socket bound where the sandbox's broker is expected, as systemd binds it.
fn bind_like_systemd(env: &Sandbox) -> UnixListener {
    let dir = env.socket.parent().expect("dir");
    std::fs::create_dir_all(dir).expect("socket dir");
    testkit::set_mode(dir, 0o700);
    let l = UnixListener::bind(&env.socket).expect("bind");
    testkit::set_mode(&env.socket, 0o600);
    // PassCredentials=yes in keychain-auth.socket: credentials on every message, also those a
    // caller writes before the daemon has started.
    nix::sys::socket::setsockopt(&l, nix::sys::socket::sockopt::PassCred, &true)
        .expect("SO_PASSCRED");
    l
}

#[test]
fn socket_activated_daemon_serves_the_passed_socket_and_signals_readiness() {
    let env = Sandbox::new();
    let tool = env.registered_client("tool", &["--read", "s", "--write", "s"]);
    let listener = bind_like_systemd(&env);
    // A caller may connect before the daemon runs (that connection starts it under systemd):
    // it is queued on the socket and served once the daemon takes it over.
    let early = env.spawn_client(&tool, &request("read", "s", &["nothing-yet"]));
    let notify_path = env.root.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let daemon = Activated::start(&env, &listener, &[("NOTIFY_SOCKET", &notify_path)], None);
    drop(listener);

    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("READY=1 within 20 s");
    assert_eq!(&buf[..n], b"READY=1");

    // Served on the passed socket, as the process systemd started (exec kept the pid).
    let st = testkit::status(&env.socket).expect("status");
    assert_eq!(st["pid"], daemon.pid());
    env.write_ok(&tool, "s", &[("k", "v1")]);
    let got = env.run_client(&tool, &[&request("read", "s", &["k"])]);
    assert_eq!(got[0]["status"], "success", "{got:?}");
    assert_eq!(got[0]["results"][0]["value"], "v1");
    // The caller that connected before the daemon ran was identified and answered.
    let early = early.wait_with_output().expect("early caller");
    let answer = String::from_utf8_lossy(&early.stdout);
    assert!(
        answer.contains("\"reason\":\"not_found\""),
        "{answer} {}",
        String::from_utf8_lossy(&early.stderr)
    );
    // An unapproved caller is still refused and queued: identity works on the adopted socket.
    let stranger = env.client("stranger");
    let r = env.run_client(&stranger, &[&request("read", "s", &["k"])]);
    assert_eq!(r[0]["reason"], "unregistered_binary", "{r:?}");

    let stderr = daemon.stop();
    let n = notify.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1", "{stderr}");
    // The socket file is systemd's: the daemon leaves it for the next activation.
    assert!(
        env.socket.exists(),
        "the activated daemon must not remove systemd's socket"
    );
}

#[test]
fn a_socket_passed_to_another_pid_is_not_taken() {
    // LISTEN_PID names another process (the variables leaked into this one's environment):
    // the daemon ignores descriptor 3 and binds its own socket.
    let env = Sandbox::new();
    let listener = bind_like_systemd(&env);
    let own = env.root.join("run/own.sock");
    let daemon = Activated::start(
        &env,
        &listener,
        &[("KEYCHAIN_AUTH_SOCKET", &own)],
        Some("1"),
    );
    let st = testkit::wait_for(20, "the daemon on its own socket", || testkit::status(&own));
    assert_eq!(st["pid"], daemon.pid());
    drop(daemon);
}
