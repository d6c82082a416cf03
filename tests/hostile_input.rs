//! Bad and hostile input: the malformed catalogue, oversize lines, secret canaries, peers of
//! another uid, descriptor exhaustion. The daemon answers clearly, loses nothing and keeps
//! serving.

use serde_json::{Value, json};
use testkit::{Raw, Sandbox, expect, request, write_request};

/// An approved client with one stored item, for checking the daemon still serves.
fn approved_reader(env: &Sandbox) -> std::path::PathBuf {
    let c = env.registered_client("reader", &["--read", "s", "--write", "s"]);
    env.write_ok(&c, "s", &[("k", "v")]);
    c
}

fn still_serving(env: &Sandbox, reader: &std::path::Path) {
    assert!(testkit::status(&env.socket).is_some(), "STATUS answers");
    let r = &env.run_client(reader, &[&request("read", "s", &["k"])])[0];
    expect(r, "success", None);
}

#[test]
fn malformed_catalogue_is_answered_and_the_daemon_keeps_serving() {
    let env = Sandbox::new();
    let _d = env.start();
    let reader = approved_reader(&env);
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_obj = format!(
        "{{\"type\":\"REQUEST\",\"action\":\"read\",\"service\":\"s\",\"targets\":[\"k\"],\"attributes\":{}1{}}}",
        "{\"a\":".repeat(5000),
        "}".repeat(5000)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("invalid JSON", b"{\"type\":".to_vec()),
        ("invalid UTF-8", b"{\"type\":\"REQUEST\",\"service\":\"\xff\xfe\"}".to_vec()),
        ("raw NUL", b"{\"type\":\"REQUEST\"\0}".to_vec()),
        (
            "escaped NUL in a target",
            br#"{"type":"REQUEST","action":"read","service":"s","targets":["k\u0000"]}"#.to_vec(),
        ),
        ("deep array", deep.into_bytes()),
        ("deep object", deep_obj.into_bytes()),
        (
            "unknown field",
            br#"{"type":"REQUEST","action":"read","service":"s","targets":["k"],"sudo":true}"#
                .to_vec(),
        ),
        ("null", b"null".to_vec()),
        ("empty object", b"{}".to_vec()),
        (
            "empty service",
            br#"{"type":"REQUEST","action":"read","service":"","targets":["k"]}"#.to_vec(),
        ),
        (
            "prefix write",
            br#"{"type":"REQUEST","action":"write","service":"s","match":"prefix","targets":["k"],"values":["v"]}"#
                .to_vec(),
        ),
        (
            "values misaligned",
            br#"{"type":"REQUEST","action":"write","service":"s","targets":["a","b"],"values":["v"]}"#
                .to_vec(),
        ),
        ("empty line", b"".to_vec()),
    ];
    // All on one connection: each is answered and the connection stays usable.
    let mut raw = Raw::connect(&env.socket);
    for (what, bytes) in &cases {
        let r = raw
            .round_trip(bytes)
            .unwrap_or_else(|| panic!("{what}: connection closed"));
        let msg = expect(&r, "error", Some("malformed_request"));
        assert!(msg.starts_with("malformed request: "), "{what}: {msg}");
    }
    let r = raw.round_trip(br#"{"type":"STATUS"}"#).expect("status");
    assert_eq!(r["type"], "STATUS");
    still_serving(&env, &reader);
    // The id is echoed when it can be recovered.
    let r = raw
        .round_trip(
            br#"{"type":"REQUEST","id":"x-1","action":"steal","service":"s","targets":["k"]}"#,
        )
        .expect("answer");
    assert_eq!(r["id"], "x-1");
}

#[test]
fn oversize_line_is_refused_and_closed_and_nothing_else_suffers() {
    let env = Sandbox::new();
    let _d = env.start();
    let reader = approved_reader(&env);
    let mut raw = Raw::connect(&env.socket);
    // 1 MiB without a newline: the daemon answers once the cap is passed, then closes.
    let _ = raw.send_bytes(&vec![b'a'; 1024 * 1024]);
    let r = raw.read_line().expect("an answer before the close");
    let msg = expect(&r, "error", Some("request_too_large"));
    assert!(msg.contains("65536"), "{msg}");
    assert!(raw.closed(), "connection closed after request_too_large");
    // A line just under the cap is parsed (and is malformed), not refused as too large.
    let mut raw = Raw::connect(&env.socket);
    let mut big = br#"{"type":"REQUEST","action":"read","service":"s","targets":[""#.to_vec();
    big.resize(65_000, b'x');
    big.extend_from_slice(br#""]}"#);
    let r = raw.round_trip(&big).expect("answer");
    expect(&r, "error", Some("malformed_request"));
    still_serving(&env, &reader);
    let audit = env.audit_records();
    assert!(audit.iter().any(|r| r["reason"] == "request_too_large"));
}

#[test]
fn status_answers_unregistered_peers_and_reveals_nothing() {
    let env = Sandbox::new();
    let _d = env.start();
    approved_reader(&env);
    let stranger = env.client("stranger");
    let r = &env.run_client(&stranger, &[r#"{"type":"STATUS"}"#])[0];
    let keys: Vec<&str> = r
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "backend",
            "connections",
            "pid",
            "requests",
            "type",
            "uptime_s",
            "version"
        ]
    );
    assert_eq!(r["backend"], "file");
    let text = r.to_string();
    assert!(
        !text.contains("\"s\"") && !text.contains("reader"),
        "{text}"
    );
    // STATUS does not queue the stranger as pending.
    assert!(env.pending_entries().is_empty());
}

#[test]
fn secret_canary_never_reaches_logs_queue_config_or_output() {
    let env = Sandbox::new();
    let d = env.start();
    let canary = format!("CANARY-{}", testkit::nonce());
    let tool = env.registered_client("tool", &["--read", "s", "--write", "s", "--search"]);
    let rs = env.run_client_stdin(
        &tool,
        &[
            &write_request("s", &["k"], &[&canary], json!({"env":"prod"})),
            &request("read", "s", &["k"]),
            // malformed requests carrying the canary in different places
            &format!(r#"{{"type":"REQUEST","action":"write","service":"s","targets":["k"],"values":"{canary}"}}"#),
            &format!(r#"{{"type":"REQUEST","action":"write","service":"s","targets":["k","j"],"values":["{canary}"]}}"#),
            &format!(r#"{{"type":"REQUEST","action":"read","service":"s","targets":["k"],"values":["{canary}"]}}"#),
            &format!(r#"{{"type":"REQUEST","action":"write","service":"s","targets":["k"],"values":[{canary:?}],"bogus":1}}"#),
        ],
    );
    expect(&rs[0], "success", None);
    assert_eq!(
        rs[1]["results"][0]["value"],
        canary.as_str(),
        "the owner gets it back"
    );
    for r in &rs[2..] {
        let msg = expect(r, "error", Some("malformed_request"));
        assert!(
            !msg.contains(&canary),
            "malformed message echoes the value: {msg}"
        );
    }
    // An unapproved caller sending the canary (on stdin) is queued, but its request body is not.
    let stranger = env.client("stranger");
    let r = &env.run_client_stdin(
        &stranger,
        &[&write_request("s", &["k"], &[&canary], json!({}))],
    )[0];
    expect(r, "denied", Some("unregistered_binary"));
    drop(d);
    for (what, path) in [
        ("audit log", env.audit()),
        ("pending queue", env.pending()),
        ("config", env.config()),
    ] {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(!text.is_empty(), "{what} exists");
        assert!(!text.contains(&canary), "canary leaked into the {what}");
    }
    // The daemon's own output (it was stopped by the drop above, so it is complete).
    for entry in std::fs::read_dir(&env.root).expect("root") {
        let p = entry.expect("entry").path();
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("daemon-"))
        {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            assert!(
                !text.contains(&canary),
                "canary in daemon output {}",
                p.display()
            );
        }
    }
    // It is stored where it should be: in the file store.
    assert!(
        std::fs::read_to_string(env.file_store())
            .expect("store")
            .contains(&canary)
    );
}

#[test]
fn a_peer_of_another_uid_is_dropped_and_audited() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run a client as another uid (setpriv)");
        return;
    }
    let env = Sandbox::new();
    let _d = env.start();
    // Deliberately widen the way to the socket so uid 65534 can reach it at all.
    for dir in [
        env.root.clone(),
        env.root.join("run"),
        env.socket.parent().expect("dir").to_path_buf(),
        env.root.join("bin"),
    ] {
        std::fs::create_dir_all(&dir).expect("dir");
        testkit::set_mode(&dir, 0o711);
    }
    testkit::set_mode(&env.socket, 0o666);
    let client = env.client("other-uid");
    let out = env
        .command("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&client)
        .arg(r#"{"type":"STATUS"}"#)
        .output()
        .expect("setpriv");
    assert_eq!(
        out.status.code(),
        Some(2),
        "the connection is dropped without an answer: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "no STATUS for another uid");
    let audit = testkit::wait_for(10, "connection_refused record", || {
        env.audit_records()
            .into_iter()
            .find(|r| r["event"] == "connection_refused" && r["uid"] == 65534)
    });
    assert!(
        audit["message"]
            .as_str()
            .expect("message")
            .contains("65534")
    );
}

#[test]
fn descriptor_exhaustion_does_not_kill_or_spin_the_accept_loop() {
    let env = Sandbox::new();
    let d = env.start();
    let reader = approved_reader(&env);
    // Leave the daemon very few descriptors (soft limit only, so it can be restored), then hold
    // more connections than that.
    let pid = d.pid().to_string();
    let soft = env
        .command("prlimit")
        .args([
            "--pid",
            &pid,
            "--nofile",
            "--raw",
            "--noheadings",
            "--output=SOFT",
        ])
        .output()
        .expect("prlimit");
    let soft = String::from_utf8_lossy(&soft.stdout).trim().to_string();
    assert!(soft.parse::<u64>().is_ok(), "current soft limit: {soft:?}");
    let limit = env
        .command("prlimit")
        .args(["--pid", &pid, "--nofile=32:"])
        .status()
        .expect("prlimit");
    assert!(limit.success());
    let held: Vec<std::os::unix::net::UnixStream> = (0..60)
        .filter_map(|_| std::os::unix::net::UnixStream::connect(&env.socket).ok())
        .collect();
    // The daemon hits EMFILE and backs off; give it time to log at most a few lines.
    testkit::wait_for(10, "accept failure logged", || {
        d.output().contains("accept failed").then_some(())
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let failures = d.output().matches("accept failed").count();
    assert!(
        failures < 50,
        "back-off keeps the log (and the CPU) quiet: {failures} accept failures logged"
    );
    drop(held);
    let limit = env
        .command("prlimit")
        .args(["--pid", &pid, &format!("--nofile={soft}:")])
        .status()
        .expect("prlimit");
    assert!(limit.success());
    testkit::wait_for(10, "daemon serving again", || testkit::status(&env.socket));
    still_serving(&env, &reader);
}

#[test]
fn an_invalid_target_in_a_batch_touches_nothing() {
    let env = Sandbox::new();
    let _d = env.start();
    let tool = env.registered_client("tool", &["--read", "s", "--write", "s", "--search"]);
    let rs = env.run_client_stdin(
        &tool,
        &[
            &write_request("s", &["a", "b"], &["1", "2"], json!({})),
            // one empty target, one with a control character, one named twice
            &write_request("s", &["a", ""], &["x", "y"], json!({})),
            &write_request("s", &["a", "b\u{7}"], &["x", "y"], json!({})),
            &write_request("s", &["c", "c"], &["x", "y"], json!({})),
            &request("delete", "s", &["a", "b", "missing"]),
            &json!({"type":"REQUEST","action":"search","service":"s"}).to_string(),
            &request("read", "s", &["a", "b"]),
        ],
    );
    expect(&rs[0], "success", None);
    for r in &rs[1..4] {
        expect(r, "error", Some("malformed_request"));
    }
    expect(&rs[4], "error", Some("not_found"));
    assert_eq!(
        testkit::targets(&rs[5]),
        ["a", "b"],
        "nothing added or removed"
    );
    let values: Vec<&Value> = rs[6]["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| &r["value"])
        .collect();
    assert_eq!(values, [&json!("1"), &json!("2")], "nothing overwritten");
}

#[test]
fn corrupt_file_store_is_backend_unavailable_and_left_untouched() {
    let env = Sandbox::new();
    let _d = env.start();
    let tool = env.registered_client("tool", &["--read", "s", "--write", "s"]);
    std::fs::create_dir_all(env.file_store().parent().expect("dir")).expect("dir");
    std::fs::write(env.file_store(), b"{\"version\":1,\"items\":").expect("corrupt");
    testkit::set_mode(&env.file_store(), 0o600);
    let rs = env.run_client_stdin(
        &tool,
        &[
            &request("read", "s", &["k"]),
            &write_request("s", &["k"], &["v"], json!({})),
        ],
    );
    for r in &rs {
        let msg = expect(r, "error", Some("backend_unavailable"));
        assert!(msg.contains("keyring.json"), "{msg}");
    }
    assert_eq!(
        std::fs::read(env.file_store()).expect("store"),
        b"{\"version\":1,\"items\":",
        "the corrupt store was not overwritten"
    );
}
