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
    // The caller chain holds the command lines of whatever ran this test (bounded on their own,
    // see below): the echo is measured without it.
    let mut echoed = rec.clone();
    echoed.as_object_mut().expect("object").remove("chain");
    let echoed = echoed.to_string();
    assert!(
        echoed.len() < 4000,
        "audit record of {} bytes",
        echoed.len()
    );
    assert_argv_bounded(&rec["chain"]);
    assert!(!text.contains(&"k".repeat(65)), "{text}");
    let m = rec["message"].as_str().expect("message");
    assert_eq!(m, msg);
    assert_no_raw_controls("audit message", m);
}

/// Every link of a caller chain keeps at most 32 words and 1,024 bytes of its command line.
fn assert_argv_bounded(chain: &serde_json::Value) {
    for link in chain.as_array().expect("chain") {
        let argv: Vec<&str> = link["argv"]
            .as_array()
            .expect("argv")
            .iter()
            .map(|w| w.as_str().expect("word"))
            .collect();
        let bytes: usize = argv.iter().map(|w| w.len()).sum();
        assert!(argv.len() <= 32 && bytes <= 1024, "{link}");
    }
}

#[test]
fn a_huge_command_line_of_a_caller_or_its_launcher_is_kept_short() {
    let env = Sandbox::new();
    let _d = env.start();
    let client = env.client("tool");
    // The launcher (sh) carries 4,000 words and one 100 KB word; the caller one 100 KB word
    // after its request. Every record of the caller would carry both.
    let huge = "h".repeat(100_000);
    let words: Vec<String> = (0..4000).map(|i| format!("w{i}")).collect();
    let out = env
        .command("sh")
        .arg("-c")
        .arg(r#""$1" "$2" "$3"; exit 0"#)
        .arg("sh")
        .arg(&client)
        .arg(request("read", "svc", &["k"]))
        .arg(&huge)
        .arg(&huge)
        .args(&words)
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    let rec = testkit::wait_for(10, "the refusal's record", || {
        env.audit_records()
            .into_iter()
            .find(|r| r["reason"] == "unregistered_binary")
    });
    let text = rec.to_string();
    assert!(text.len() < 16_384, "audit record of {} bytes", text.len());
    assert!(!text.contains(&"h".repeat(300)), "a word is cut");
    assert_argv_bounded(&rec["chain"]);
    let chain = rec["chain"].as_array().expect("chain");
    assert!(
        chain[0]["argv"][2].as_str().expect("word").ends_with('…'),
        "{rec}"
    );
    let launcher = chain[1]["argv"].as_array().expect("launcher's argv");
    assert_eq!(launcher.last().and_then(|w| w.as_str()), Some("…"), "{rec}");
    let pending = env.pending_entries();
    assert_eq!(pending.len(), 1);
    assert!(pending[0].to_string().len() < 16_384);
    assert_argv_bounded(&pending[0]["chain"]);
}
