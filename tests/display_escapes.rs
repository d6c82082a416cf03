//! Caller-controlled text never drives the terminal: a caller whose file name and argv carry
//! ESC/OSC/CSI sequences, BEL and a newline is shown escaped by `list-pending` and `list`, and
//! `--json` stays exact JSON; output into a closed pipe exits quietly.

use std::io::Read;
use std::process::Stdio;
use testkit::{Sandbox, request};

const OSC_TITLE: &str = "\x1b]0;pwned\x07";
const CLEAR: &str = "\x1b[2J";

fn assert_no_raw_controls(what: &str, text: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| c != '\n' && (c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)))
        .collect();
    assert!(bad.is_empty(), "{what} has raw controls {bad:?}:\n{text}");
}

/// A pending caller with a hostile name and argv; returns its path.
fn hostile_pending(env: &Sandbox) -> std::path::PathBuf {
    let plain = env.client("plain");
    let evil = plain.with_file_name("evil\x1b[31m\nname-tool\u{202e}");
    std::fs::rename(&plain, &evil).expect("rename");
    let req = request("read", "svc", &["k"]);
    let out = env
        .command(&evil)
        .args([req.as_str(), OSC_TITLE, CLEAR])
        .output()
        .expect("run hostile client");
    assert_ne!(out.status.code(), Some(2), "client could not connect");
    assert_eq!(
        env.pending_entries().len(),
        1,
        "the caller is pending; it was told {}",
        String::from_utf8_lossy(&out.stdout)
    );
    evil
}

#[test]
fn list_pending_and_list_escape_hostile_names_and_argv() {
    let env = Sandbox::new();
    let _d = env.start();
    let evil = hostile_pending(&env);

    let text = env.cli_ok(&["list-pending"]);
    assert_no_raw_controls("list-pending", &text);
    assert!(text.contains("\\x1b]0;pwned\\x07"), "{text}");
    assert!(text.contains("\\x1b[2J"), "{text}");
    assert!(
        text.contains("evil\\x1b[31m\\nname-tool\\u{202e}"),
        "{text}"
    );

    // --json: exact JSON, same values, nothing raw.
    let json = env.cli_ok(&["list-pending", "--json"]);
    assert_no_raw_controls("list-pending --json", &json);
    let v: serde_json::Value = serde_json::from_str(&json).expect("exact JSON");
    let argv: Vec<&str> = v[0]["argv"]
        .as_array()
        .expect("argv")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(
        argv.contains(&OSC_TITLE) && argv.contains(&CLEAR),
        "{argv:?}"
    );

    env.register(&evil, &["--read", "svc"]);
    let text = env.cli_ok(&["list"]);
    assert_no_raw_controls("list", &text);
    assert!(
        text.contains("evil\\x1b[31m\\nname-tool\\u{202e}"),
        "{text}"
    );
    let json = env.cli_ok(&["list", "--json"]);
    assert_no_raw_controls("list --json", &json);
    serde_json::from_str::<serde_json::Value>(&json).expect("exact JSON");

    // Errors quoting the path are escaped too.
    let err = env.cli_err(&["unregister", "/nonexistent/\x1b]0;x\x07"]);
    assert_no_raw_controls("error", &err);
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    let env = Sandbox::new();
    let _d = env.start();
    hostile_pending(&env);
    // Enough pending callers that the output outgrows any pipe buffer: copies of the real entry.
    let mut file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.pending()).expect("pending.json")).expect("json");
    let entry = file["entries"][0].clone();
    let entries: Vec<serde_json::Value> = (0..400)
        .map(|i| {
            let mut e = entry.clone();
            e["hash"] = format!("{i:064x}").into();
            e["argv"] = vec!["\x1b[2J".repeat(50); 8].into();
            e
        })
        .collect();
    file["entries"] = entries.into();
    std::fs::write(env.pending(), serde_json::to_vec(&file).expect("json")).expect("write");
    for args in [&["list-pending"][..], &["list-pending", "--json"]] {
        let full = env.cli_ok(args);
        assert!(
            full.len() > 1 << 19,
            "{args:?}: output must outgrow the pipe"
        );
    }
    for args in [&["list-pending"][..], &["list-pending", "--json"]] {
        let mut child = env
            .command(testkit::daemon_bin())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut first = [0u8; 10];
        child
            .stdout
            .take()
            .expect("stdout")
            .read_exact(&mut first)
            .expect("first bytes");
        // The reader is gone (like `| head -c 10`).
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut stderr)
            .expect("stderr");
        let status = child.wait().expect("wait");
        assert!(status.success(), "{args:?}: {status:?}, stderr {stderr:?}");
        assert_eq!(stderr, "", "{args:?}");
    }
}

#[test]
fn a_huge_unknown_key_is_echoed_short_and_escaped_in_the_response_and_the_audit_log() {
    let env = Sandbox::new();
    // A cap large enough that a 100 KB key is within the line limit.
    std::fs::create_dir_all(env.config().parent().expect("dir")).expect("mkdir");
    std::fs::write(
        env.config(),
        r#"{"protocol_version":"1","max_request_bytes":262144}"#,
    )
    .expect("config");
    std::fs::set_permissions(
        env.config(),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    let _d = env.start();
    let key = format!("\\u001b]0;pwned\\u0007\\u202e{}", "k".repeat(100_000));
    let line =
        format!(r#"{{"type":"REQUEST","action":"read","service":"s","targets":["t"],"{key}":1}}"#);
    let mut raw = testkit::Raw::connect(&env.socket);
    let r = raw.round_trip(line.as_bytes()).expect("answer");
    let msg = testkit::expect(&r, "error", Some("malformed_request"));
    // The key is cut to 64 characters; the rest (the expected field names) is ours.
    assert!(msg.len() < 1000, "message of {} bytes", msg.len());
    assert!(!msg.contains(&"k".repeat(65)), "{msg}");
    assert!(
        msg.contains("unknown field \"\\x1b]0;pwned\\x07\\u{202e}kkk"),
        "{msg}"
    );
    assert!(msg.contains("…\""), "{msg}");
    assert_no_raw_controls("response", &msg);
    let recs = testkit::wait_for(10, "the audit record", || {
        let recs = env.audit_records();
        recs.iter()
            .any(|r| r["reason"] == "malformed_request")
            .then_some(recs)
    });
    let rec = recs
        .iter()
        .find(|r| r["reason"] == "malformed_request")
        .expect("record");
    let text = rec.to_string();
    assert!(text.len() < 4000, "audit record of {} bytes", text.len());
    assert!(!text.contains(&"k".repeat(65)), "{text}");
    let m = rec["message"].as_str().expect("message");
    assert_eq!(m, msg);
    assert_no_raw_controls("audit message", m);
}
