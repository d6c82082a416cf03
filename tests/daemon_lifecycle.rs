//! The daemon as a process: file and socket modes, refusing a second instance, replacing a stale
//! socket, cleaning up on SIGTERM; and the CLI's failure contract.

use nix::sys::signal::Signal;
use testkit::{Sandbox, request};

#[test]
fn files_and_socket_are_private() {
    let env = Sandbox::new();
    let _d = env.start();
    let tool = env.client("tool");
    env.run_client(&tool, &[&request("read", "s", &["k"])]);
    env.register(&env.client("other"), &["--write", "s"]);
    assert_eq!(testkit::mode(env.socket.parent().expect("dir")), 0o700);
    assert_eq!(testkit::mode(&env.socket), 0o600);
    for p in [env.config(), env.pending(), env.audit()] {
        assert_eq!(testkit::mode(&p), 0o600, "{}", p.display());
        assert_eq!(
            testkit::mode(p.parent().expect("dir")),
            0o700,
            "{}",
            p.display()
        );
    }
}

#[test]
fn second_start_is_refused_stale_socket_is_replaced_sigterm_cleans_up() {
    let env = Sandbox::new();
    let mut first = env.start();
    let err = env.cli_err(&["start"]);
    assert!(err.contains("already running"), "{err}");
    assert!(err.contains(&first.pid().to_string()), "{err}");
    // A daemon killed outright leaves its socket file behind...
    first.stop_with(Signal::SIGKILL);
    assert!(env.socket.exists(), "stale socket left by SIGKILL");
    // ...which the next start replaces.
    let mut second = env.start();
    assert_eq!(
        testkit::status(&env.socket).expect("status")["pid"],
        second.pid()
    );
    let status = second.stop_with(Signal::SIGTERM);
    assert!(status.success(), "SIGTERM is a clean exit: {status:?}");
    assert!(!env.socket.exists(), "SIGTERM removes the socket");
    let audit = env.audit_records();
    assert!(
        audit
            .iter()
            .any(|r| r["event"] == "daemon" && r["action"] == "stop")
    );
}

#[test]
fn sighup_and_sigquit_stop_the_daemon_as_cleanly_as_sigterm() {
    // A terminal closing sends SIGHUP; SIGQUIT is ctrl-\. Either used to kill the daemon
    // outright, leaving its socket and no "stop" record.
    for signal in [Signal::SIGHUP, Signal::SIGQUIT] {
        let env = Sandbox::new();
        let mut d = env.start();
        let status = d.stop_with(signal);
        assert!(status.success(), "{signal}: a clean exit: {status:?}");
        assert!(!env.socket.exists(), "{signal} removes the socket");
        assert!(
            env.audit_records()
                .iter()
                .any(|r| r["event"] == "daemon" && r["action"] == "stop"),
            "{signal}: stop audited"
        );
    }
}

#[test]
fn start_refuses_a_socket_path_that_is_not_a_socket() {
    let env = Sandbox::new();
    std::fs::create_dir_all(env.socket.parent().expect("dir")).expect("dir");
    std::fs::write(&env.socket, b"precious").expect("file");
    let err = env.cli_err(&["start"]);
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(&env.socket).expect("kept"), b"precious");
}

#[test]
fn cli_failures_are_one_line_and_hashes_take_every_form() {
    let env = Sandbox::new();
    let tool = env.client("tool");
    let tool_s = tool.to_str().expect("utf8");
    // Failures: each exits non-zero with one line (cli_err asserts both).
    assert!(
        env.cli_err(&["approve", "deadbeef"])
            .contains("no pending caller")
    );
    assert!(env.cli_err(&["approve", "abc"]).contains("at least 8"));
    assert!(
        env.cli_err(&["register", "/nonexistent/tool"])
            .contains("cannot read")
    );
    assert!(
        env.cli_err(&["grant", "deadbeefdead"])
            .contains("nothing to grant")
    );
    assert!(
        env.cli_err(&["unregister", "deadbeefdead"])
            .contains("no binary")
    );
    assert!(env.cli_err(&["upgrade", tool_s]).contains("not registered"));
    env.cli_err(&["grant"]);
    env.cli_err(&["no-such-command"]);
    // Every hash form names the same binary.
    env.register(&tool, &[]);
    assert!(
        env.cli_err(&["register", tool_s])
            .contains("already registered")
    );
    let full = env.registered()[0]["hash"]
        .as_str()
        .expect("hash")
        .to_string();
    let bare = full.trim_start_matches("sha256:").to_string();
    for (form, svc) in [
        (full.as_str(), "a"),
        (bare.as_str(), "b"),
        (&bare[..8], "c"),
        (&bare.to_uppercase()[..10], "d"),
        (tool_s, "e"),
    ] {
        env.cli_ok(&["grant", form, "--read", svc]);
    }
    assert_eq!(
        env.registered()[0]["allowed_read_services"],
        serde_json::json!(["a", "b", "c", "d", "e"])
    );
    env.cli_ok(&["revoke", &bare[..8], "--read", "a", "--read", "b"]);
    assert_eq!(
        env.registered()[0]["allowed_read_services"],
        serde_json::json!(["c", "d", "e"])
    );
    // The daemon is not running: a client says so and exits 2.
    let out = env
        .command(&tool)
        .arg(request("read", "s", &["k"]))
        .output()
        .expect("client");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn start_never_unlinks_a_live_listener_that_is_slow_to_answer() {
    let env = Sandbox::new();
    std::fs::create_dir_all(env.socket.parent().expect("dir")).expect("dir");
    // Something listens but never answers (a daemon busy hashing, a hung process).
    let silent = std::os::unix::net::UnixListener::bind(&env.socket).expect("bind");
    let out = env
        .command(testkit::daemon_bin())
        .arg("start")
        .output()
        .expect("start");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not answer STATUS"), "{err}");
    assert!(env.socket.exists(), "the live listener's socket was kept");
    drop(silent);
}

#[test]
fn dashboard_mode_flags_fail_clearly_when_impossible() {
    let env = Sandbox::new();
    // Nothing runs: --connect cannot connect.
    let err = env.cli_err(&["tui", "--connect"]);
    assert!(err.contains("no broker answers"), "{err}");
    // A broker runs: --embed cannot embed a second one.
    let _d = env.start();
    let err = env.cli_err(&["tui", "--embed"]);
    assert!(err.contains("already runs"), "{err}");
    assert!(
        testkit::status(&env.socket).is_some(),
        "the running broker is untouched"
    );
    env.cli_err(&["tui", "--embed", "--connect"]);
}

/// The harness finds the binaries next to the test executable; they must be the ones Cargo
/// built for this test (`CARGO_BIN_EXE_*`).
#[test]
fn the_harness_runs_the_binaries_cargo_built_for_this_test() {
    for (found, built) in [
        (testkit::daemon_bin(), env!("CARGO_BIN_EXE_keychain-auth")),
        (
            testkit::client_bin(),
            env!("CARGO_BIN_EXE_keychain-auth-client"),
        ),
    ] {
        assert_eq!(
            std::fs::canonicalize(found).expect("found"),
            std::fs::canonicalize(built).expect("built")
        );
    }
}
