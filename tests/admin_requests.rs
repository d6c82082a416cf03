//! Admin changes while a broker runs (SPEC §19): the CLI sends each one to the daemon as an
//! `ADMIN` request, and the daemon makes it on the state it holds. Nobody else may send one, and
//! the CLI sends one to nothing but the keychain-auth it is.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use testkit::{Sandbox, expect, request};

/// An `approve` line for the pending entry `hash`.
fn approve_line(hash: &str) -> String {
    serde_json::json!({
        "type": "ADMIN",
        "source": "cli",
        "admin": {"kind": "approve", "selector": hash, "grants": {"read": ["aws"]}},
    })
    .to_string()
}

/// A client refused as unknown, and its pending hash.
fn refused_client(env: &Sandbox, name: &str) -> (std::path::PathBuf, String) {
    let c = env.client(name);
    let mut line: serde_json::Value =
        serde_json::from_str(&request("read", "aws", &["k"])).expect("json");
    line["prompt"] = false.into();
    expect(
        &env.run_client(&c, &[&line.to_string()])[0],
        "denied",
        Some("unregistered_binary"),
    );
    let hash = env.pending_entries()[0]["hash"]
        .as_str()
        .expect("hash")
        .to_string();
    (c, hash)
}

/// The change is made by the daemon: a CLI whose own config directory is elsewhere still
/// changes the daemon's config.json, and leaves its own directory untouched.
#[test]
fn the_running_daemon_carries_out_the_clis_changes() {
    let env = Sandbox::new();
    let _daemon = env.start();
    let (client, hash) = refused_client(&env, "tool");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let extra = [(
        "XDG_CONFIG_HOME".to_string(),
        OsString::from(elsewhere.path()),
    )];
    let out = env.cli_env(&extra, &["approve", &hash, "--read", "aws"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read_dir(elsewhere.path())
            .expect("dir")
            .next()
            .is_none(),
        "the CLI wrote files of its own"
    );
    let reg = env.registered();
    assert_eq!(reg.len(), 1, "{reg:?}");
    assert_eq!(reg[0]["allowed_read_services"], serde_json::json!(["aws"]));
    // The daemon's own policy has it at once: served, not refused.
    let r = &env.run_client(&client, &[&request("read", "aws", &["k"])])[0];
    expect(r, "error", Some("not_found"));
    // Errors come back as the change's own words, with a failing exit.
    let out = env.cli_env(
        &extra,
        &["grant", &hash, "--read", "keychain-auth.internal"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is reserved for keychain-auth itself"),
        "{err}"
    );
    // The record names the CLI as the source and is in the daemon's chain.
    assert!(env.audit_records().iter().any(|r| {
        r["event"] == "policy_change" && r["action"] == "approve" && r["source"] == "cli"
    }));
    assert!(
        env.cli_ok(&["audit", "verify"])
            .contains("audit log verified")
    );
}

/// Attack: a program that is not keychain-auth sends the daemon an ADMIN line approving
/// itself. Refused, nothing changes, the attempt is audited.
#[test]
fn an_admin_request_from_any_other_program_is_refused() {
    let env = Sandbox::new();
    let _daemon = env.start();
    let (client, hash) = refused_client(&env, "self-approver");
    let r = &env.run_client(&client, &[&approve_line(&hash)])[0];
    let msg = expect(r, "denied", Some("unregistered_binary"));
    assert!(msg.contains("only keychain-auth itself"), "{msg}");
    assert!(env.registered().is_empty());
    assert_eq!(env.pending_entries().len(), 1);
    assert!(env.audit_records().iter().any(|r| {
        r["event"] == "connection_refused"
            && r["message"]
                .as_str()
                .is_some_and(|m| m.contains("admin request"))
    }));
    // Still refused on its next read.
    let mut line: serde_json::Value =
        serde_json::from_str(&request("read", "aws", &["k"])).expect("json");
    line["prompt"] = false.into();
    expect(
        &env.run_client(&client, &[&line.to_string()])[0],
        "denied",
        Some("unregistered_binary"),
    );
}

/// Malformed admin lines are `malformed_request` or refused changes; the daemon stays up.
#[test]
fn malformed_admin_requests_change_nothing() {
    let env = Sandbox::new();
    let _daemon = env.start();
    let c = env.client("tool");
    for line in [
        r#"{"type":"ADMIN","admin":{"kind":"approve"}}"#,
        r#"{"type":"ADMIN","source":"cli"}"#,
        r#"{"type":"ADMIN","source":"cli","admin":{},"service":"aws"}"#,
    ] {
        let r = &env.run_client(&c, &[line])[0];
        expect(r, "error", Some("malformed_request"));
    }
    assert_eq!(env.send(r#"{"type":"STATUS"}"#)["type"], "STATUS");
}

/// Attack: the daemon is killed and another program binds the socket. The CLI checks who serves
/// it and sends that program nothing.
#[test]
fn the_cli_sends_no_change_to_a_program_that_took_the_socket() {
    let env = Sandbox::new();
    let socket: std::path::PathBuf = env
        .env_vars()
        .into_iter()
        .find(|(k, _)| k == "KEYCHAIN_AUTH_SOCKET")
        .map(|(_, v)| v.into())
        .expect("the sandbox names its socket");
    std::fs::create_dir_all(socket.parent().expect("dir")).expect("mkdir");
    let listener = UnixListener::bind(&socket).expect("bind");
    let fake = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut got = String::new();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        let _ = BufReader::new(s.try_clone().expect("clone")).read_line(&mut got);
        if !got.is_empty() {
            let _ = s
                .write_all(b"{\"type\":\"ADMIN\",\"ok\":true,\"done\":{\"done\":\"dismissed\"}}\n");
        }
        got
    });
    let out = env.cli(&["unregister", "sha256:0000"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not this keychain-auth"), "{err}");
    let got = fake.join().expect("fake server");
    assert!(got.is_empty(), "the CLI sent the fake daemon: {got}");
}
