//! Policy changes seen by a running daemon: upgrade of a replaced binary, revocation on an open
//! connection, a corrupt config that denies and recovers, concurrent CLI edits.

use serde_json::json;
use testkit::{Sandbox, expect, request, write_request};

#[test]
fn replaced_binary_needs_upgrade_and_keeps_its_permissions() {
    let env = Sandbox::new();
    let _d = env.start();
    let tool = env.client("tool");
    let path = std::fs::canonicalize(&tool).expect("canonical");
    let path_s = path.to_str().expect("utf8");
    env.register(&tool, &["--read", "s", "--write", "s", "--search"]);
    let old_hash = env.registered()[0]["hash"]
        .as_str()
        .expect("hash")
        .to_string();
    env.write_ok(&tool, "s", &[("k", "v")]);

    // Replace the binary the way a package manager does: new file, renamed over the old one.
    let staged = env.client("staged");
    std::fs::rename(&staged, &path).expect("replace");
    let r = &env.run_client(&tool, &[&request("read", "s", &["k"])])[0];
    let msg = expect(r, "denied", Some("unregistered_binary"));
    assert!(
        msg.contains(&format!("keychain-auth upgrade {path_s}")),
        "{msg}"
    );
    let pending = env.pending_entries();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["changed_from"], old_hash.as_str());
    let new_hash = pending[0]["hash"].as_str().expect("hash").to_string();
    assert_ne!(new_hash, old_hash);
    // Approving the changed version as a new binary is refused with the upgrade hint.
    let err = env.cli_err(&["approve", &new_hash]);
    assert!(err.contains("keychain-auth upgrade"), "{err}");

    let out = env.cli_ok(&["upgrade", path_s]);
    assert!(out.contains("permissions kept"), "{out}");
    let reg = env.registered();
    assert_eq!(reg.len(), 1);
    assert_eq!(reg[0]["hash"], new_hash.as_str());
    assert_eq!(reg[0]["allowed_read_services"], json!(["s"]));
    assert_eq!(reg[0]["allowed_write_services"], json!(["s"]));
    assert_eq!(reg[0]["can_search"], true);
    assert!(env.pending_entries().is_empty());
    let r = &env.run_client(&tool, &[&request("read", "s", &["k"])])[0];
    expect(r, "success", None);
    assert_eq!(r["results"][0]["value"], "v");
    // Upgrading again is a no-op that succeeds.
    assert!(
        env.cli_ok(&["upgrade", path_s])
            .contains("already up to date")
    );
    let audit = env.audit_records();
    let up: Vec<_> = audit
        .iter()
        .filter(|r| r["event"] == "policy_change" && r["action"] == "upgrade")
        .collect();
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0]["old_hash"], old_hash.as_str());
    assert_eq!(up[0]["hash"], new_hash.as_str());
    assert_eq!(up[0]["source"], "cli");
}

#[test]
fn revocation_applies_to_an_open_connection() {
    let env = Sandbox::new();
    let _d = env.start();
    let tool = env.registered_client("tool", &["--read", "s", "--write", "s"]);
    let mut session = env.session(&tool);
    expect(
        &session.send(&write_request("s", &["k"], &["v"], json!({}))),
        "success",
        None,
    );
    expect(
        &session.send(&request("read", "s", &["k"])),
        "success",
        None,
    );
    env.cli_ok(&["revoke", tool.to_str().expect("utf8"), "--read", "s"]);
    // Same connection, next request: denied.
    expect(
        &session.send(&request("read", "s", &["k"])),
        "denied",
        Some("service_not_allowed"),
    );
    // Unregistering takes everything away, still on the same connection.
    env.cli_ok(&["unregister", tool.to_str().expect("utf8")]);
    expect(
        &session.send(&write_request("s", &["k"], &["v2"], json!({}))),
        "denied",
        Some("unregistered_binary"),
    );
}

#[test]
fn corrupt_config_denies_with_a_reason_and_recovers_without_restart() {
    let env = Sandbox::new();
    let d = env.start();
    let tool = env.registered_client("tool", &["--read", "s", "--write", "s"]);
    env.write_ok(&tool, "s", &[("k", "v")]);
    let good = std::fs::read(env.config()).expect("config");
    std::fs::write(
        env.config(),
        b"{\"protocol_version\":\"1\",\"registered_binaries\":[",
    )
    .expect("corrupt");
    let r = &env.run_client(&tool, &[&request("read", "s", &["k"])])[0];
    let msg = expect(r, "denied", Some("internal_error"));
    assert!(
        msg.contains("config.json") && msg.contains("not valid"),
        "{msg}"
    );
    // The CLI refuses to overwrite it either.
    let err = env.cli_err(&["grant", tool.to_str().expect("utf8"), "--read", "x"]);
    assert!(err.contains("not valid"), "{err}");
    // A config others may write is not trusted either.
    std::fs::write(env.config(), &good).expect("repair");
    testkit::set_mode(&env.config(), 0o666);
    let msg = expect(
        &env.run_client(&tool, &[&request("read", "s", &["k"])])[0],
        "denied",
        Some("internal_error"),
    );
    assert!(msg.contains("chmod 600"), "{msg}");
    testkit::set_mode(&env.config(), 0o600);
    let r = &env.run_client(&tool, &[&request("read", "s", &["k"])])[0];
    expect(r, "success", None);
    assert_eq!(
        testkit::status(&env.socket).expect("status")["pid"],
        d.pid(),
        "same daemon process throughout"
    );
}

#[test]
fn concurrent_cli_edits_lose_no_update() {
    let env = Sandbox::new();
    env.registered_client("tool", &[]);
    let hash = env.registered()[0]["hash"]
        .as_str()
        .expect("hash")
        .to_string();
    std::thread::scope(|s| {
        for side in ["a", "b"] {
            let (env, hash) = (&env, &hash);
            s.spawn(move || {
                for i in 0..200 {
                    env.cli_ok(&["grant", hash, "--read", &format!("{side}-{i}")]);
                }
            });
        }
    });
    let reg = env.registered();
    let services = reg[0]["allowed_read_services"].as_array().expect("array");
    assert_eq!(services.len(), 400, "every grant survived");
    let audit = env.audit_records();
    assert_eq!(
        audit
            .iter()
            .filter(|r| r["event"] == "policy_change" && r["action"] == "grant")
            .count(),
        400
    );
}
