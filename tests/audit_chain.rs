//! The tamper-evident audit log against the real daemon and CLI: the chain verifies across
//! restarts and rotation, `audit verify` locates every kind of tampering, the real `logrotate`
//! (rename and copytruncate) is noticed and recorded, and rotation under load loses nothing.

use nix::sys::signal::Signal;
use serde_json::Value;
use std::path::{Path, PathBuf};
use testkit::{Daemon, Sandbox, request};

/// Writes the rotation settings into a fresh config.json (before any policy exists).
fn rotation_config(env: &Sandbox, max_bytes: u64, keep: usize) {
    env.write_private(
        &env.config(),
        format!(
            r#"{{"protocol_version":"1","audit_max_bytes":{max_bytes},"audit_keep":{keep},"registered_binaries":[]}}"#
        ),
    );
}

/// `audit verify --json`: (exit success, report).
fn verify(env: &Sandbox) -> (bool, Value) {
    let out = env.cli(&["audit", "verify", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.success(), report["ok"] == true, "{report}");
    (out.status.success(), report)
}

fn first_break(report: &Value) -> (String, String, u64, Option<u64>) {
    let b = &report["breaks"][0];
    (
        b["kind"].as_str().expect("kind").to_string(),
        b["file"].as_str().expect("file").to_string(),
        b["line"].as_u64().expect("line"),
        b["seq"].as_u64(),
    )
}

/// Every audit file, oldest first.
fn audit_files(env: &Sandbox) -> Vec<PathBuf> {
    let mut numbered: Vec<(usize, PathBuf)> = std::fs::read_dir(env.audit().parent().expect("d"))
        .expect("read dir")
        .filter_map(|e| {
            let p = e.ok()?.path();
            let n = p.extension()?.to_str()?.parse::<usize>().ok()?;
            Some((n, p))
        })
        .collect();
    numbered.sort();
    let mut files: Vec<PathBuf> = numbered.into_iter().rev().map(|(_, p)| p).collect();
    if env.audit().exists() {
        files.push(env.audit());
    }
    files
}

/// Every record in every audit file, oldest first.
fn all_records(env: &Sandbox) -> Vec<Value> {
    audit_files(env)
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .expect("read")
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("json"))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn stop(mut d: Daemon) {
    let st = d.stop_with(Signal::SIGTERM);
    assert!(st.success(), "daemon exit: {st:?} {}", d.output());
}

/// Sends `n` read requests with ids `{tag}-{i}` on one connection.
fn reads(env: &Sandbox, client: &Path, tag: &str, n: usize) {
    let lines: Vec<String> = (0..n)
        .map(|i| {
            format!(r#"{{"type":"REQUEST","id":"{tag}-{i}","action":"read","service":"aws","match":"prefix","targets":[""]}}"#)
        })
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let out = env.run_client_stdin(client, &refs);
    assert_eq!(out.len(), n, "{out:?}");
    for r in &out {
        assert_eq!(r["status"], "success", "{r}");
    }
}

#[test]
fn honest_log_verifies_across_restarts_and_rotation() {
    let env = Sandbox::new();
    rotation_config(&env, 8 * 1024, 50);
    let client = env.registered_client("honest", &["--read", "aws", "--search"]);
    let d = env.start();
    reads(&env, &client, "a", 40);
    stop(d);
    env.cli_ok(&["grant", client.to_str().expect("utf8"), "--write", "aws"]);
    let d = env.start();
    reads(&env, &client, "b", 40);
    stop(d);
    let files = audit_files(&env);
    assert!(files.len() >= 3, "expected rotated files: {files:?}");
    let (ok, report) = verify(&env);
    assert!(ok, "{report}");
    let recs = all_records(&env);
    let seqs: Vec<u64> = recs
        .iter()
        .map(|r| r["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (1..=recs.len() as u64).collect::<Vec<_>>());
    assert_eq!(report["records"], recs.len());
    // 80 requests, 2 policy changes (register, grant), 2 starts and 2 stops
    let count = |ev: &str| recs.iter().filter(|r| r["event"] == ev).count();
    assert_eq!(count("request"), 80);
    assert_eq!(count("policy_change"), 2);
    assert_eq!(count("daemon"), 4);
    // a rotated file removed from the middle: verify names it
    let victim = files[1].clone();
    let saved = std::fs::read(&victim).expect("read rotated");
    std::fs::remove_file(&victim).expect("remove");
    let (ok, broken) = verify(&env);
    assert!(!ok, "{broken}");
    let (kind, file, _, _) = first_break(&broken);
    assert_eq!(kind, "missing");
    assert_eq!(file, victim.to_str().expect("utf8"), "{broken}");
    std::fs::write(&victim, saved).expect("restore rotated");
    assert!(verify(&env).0);
    // the key is in the store, never in the log, the state or the config
    let key = std::fs::read_to_string(env.file_store()).expect("store");
    let key: Value = serde_json::from_str(&key).expect("store json");
    let key = key["items"]["keychain-auth.internal"]["audit-key"]["value"]
        .as_str()
        .expect("key stored")
        .to_string();
    assert_eq!(key.len(), 64);
    for f in audit_files(&env)
        .into_iter()
        .chain([env.config(), env.audit().with_file_name("audit.state")])
    {
        let text = std::fs::read_to_string(&f).expect("read");
        assert!(!text.contains(&key), "key leaked into {f:?}");
    }
}

#[test]
fn a_hand_edit_of_the_rotation_settings_applies_only_once_accepted() {
    let env = Sandbox::new();
    let client = env.registered_client("rotating", &["--read", "aws", "--search"]);
    // A hand edit that would rotate at every record and keep one file: history deleted by the
    // broker's own rotation, which verify cannot tell from an honest one.
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(env.config()).expect("config"))
            .expect("config json");
    config["audit_max_bytes"] = 1.into();
    config["audit_keep"] = 1.into();
    std::fs::write(env.config(), config.to_string()).expect("edit config");
    let d = env.start();
    reads(&env, &client, "a", 5);
    stop(d);
    assert_eq!(
        audit_files(&env),
        vec![env.audit()],
        "the edit took effect before it was accepted"
    );
    let before = all_records(&env).len();
    env.cli_ok(&["policy", "accept", "--yes"]);
    let d = env.start();
    reads(&env, &client, "b", 5);
    stop(d);
    let files = audit_files(&env);
    assert_eq!(
        files.len(),
        2,
        "accepted: rotated, one file kept: {files:?}"
    );
    assert!(all_records(&env).len() < before, "older files were removed");
    let (ok, report) = verify(&env);
    assert!(ok, "{report}");
}

#[test]
fn a_log_removed_with_its_rotated_files_and_state_is_reported() {
    let env = Sandbox::new();
    let client = env.registered_client("witness", &["--read", "aws", "--search"]);
    let d = env.start();
    reads(&env, &client, "a", 3);
    stop(d);
    assert!(verify(&env).0);
    assert!(
        !all_records(&env)
            .iter()
            .any(|r| r["action"] == "state_missing"),
        "a fresh log carries no removal note"
    );
    // Everything removed: the log, rotated files (none here) and the state.
    for f in audit_files(&env) {
        std::fs::remove_file(f).expect("rm log");
    }
    std::fs::remove_file(env.audit().with_file_name("audit.state")).expect("rm state");
    let (ok, report) = verify(&env);
    assert!(!ok, "{report}");
    let (kind, _, _, _) = first_break(&report);
    assert_eq!(kind, "missing", "{report}");
    // The next record says so, and starts the chain again from there.
    let d = env.start();
    reads(&env, &client, "b", 1);
    stop(d);
    let recs = all_records(&env);
    assert_eq!(recs[0]["action"], "state_missing", "{:?}", recs[0]);
    assert!(
        recs[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("were removed")),
        "{:?}",
        recs[0]
    );
    assert!(verify(&env).0);
}

#[test]
fn verify_locates_every_kind_of_tampering() {
    let env = Sandbox::new();
    rotation_config(&env, 0, 5);
    let client = env.registered_client("tamper", &["--read", "aws", "--search"]);
    let d = env.start();
    reads(&env, &client, "t", 20);
    stop(d);
    assert!(verify(&env).0);
    let current = env.audit();
    let original = std::fs::read_to_string(&current).expect("log");
    let lines: Vec<&str> = original.lines().collect();
    assert!(lines.len() >= 12, "{}", lines.len());
    let seq_at = |i: usize| -> u64 {
        serde_json::from_str::<Value>(lines[i]).expect("json")["seq"]
            .as_u64()
            .expect("seq")
    };
    let cur = current.to_str().expect("utf8").to_string();
    let with_lines = |ls: Vec<String>| {
        let text: String = ls.into_iter().map(|l| l + "\n").collect();
        std::fs::write(&current, text).expect("write");
    };
    let owned = || {
        lines
            .iter()
            .map(std::string::ToString::to_string)
            .collect::<Vec<_>>()
    };
    let check = |what: &str, kind: &str, line: u64, seq: Option<u64>| {
        let (ok, report) = verify(&env);
        assert!(!ok, "{what}: verify passed: {report}");
        assert_eq!(
            first_break(&report),
            (kind.to_string(), cur.clone(), line, seq),
            "{what}: {report}"
        );
        let out = env.cli(&["audit", "verify"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("line {line}")),
            "{what}: the one-line reason names the line: {err}"
        );
        std::fs::write(&current, &original).expect("restore");
        assert!(verify(&env).0, "{what}: restored log verifies");
    };

    // edited: one target name changed on line 5 (doctor says so too)
    let mut ls = owned();
    assert!(ls[4].contains("\"id\":\""), "{}", ls[4]);
    ls[4] = ls[4].replacen("\"id\":\"t-", "\"id\":\"x-", 1);
    with_lines(ls);
    let doc = env.cli(&["doctor"]);
    let doc_text = String::from_utf8_lossy(&doc.stdout);
    assert!(!doc.status.success());
    assert!(
        doc_text.contains("BROKEN") && doc_text.contains("line 5"),
        "{doc_text}"
    );
    check("edited", "edited", 5, Some(seq_at(4)));

    // deleted: line 5 removed; line 5 now holds the next record
    let mut ls = owned();
    ls.remove(4);
    with_lines(ls);
    check("deleted", "missing", 5, Some(seq_at(5)));

    // inserted: a plain JSON record slipped in before line 5
    let mut ls = owned();
    ls.insert(4, r#"{"ts":"2026-01-01T00:00:00.000Z","event":"request","source":"daemon","status":"success"}"#.into());
    with_lines(ls);
    check("inserted plain", "malformed", 5, None);

    // inserted: a forged chained record with the next seq and a made-up chain value
    let mut ls = owned();
    let forged = lines[4].replacen("\"id\":\"t-", "\"id\":\"forged-", 1);
    ls.insert(4, forged);
    with_lines(ls);
    check("inserted forged", "edited", 5, Some(seq_at(4)));

    // reordered: lines 5 and 6 swapped
    let mut ls = owned();
    ls.swap(4, 5);
    with_lines(ls);
    check("reordered", "reordered", 5, Some(seq_at(5)));

    // truncated: the last three records cut off
    let mut ls = owned();
    let n = ls.len();
    ls.truncate(n - 3);
    with_lines(ls);
    check(
        "truncated",
        "truncated",
        (n - 3) as u64,
        Some(seq_at(n - 4)),
    );

    // cut mid-record
    let cut = &original[..original.len() - 20];
    std::fs::write(&current, cut).expect("cut");
    let (ok, report) = verify(&env);
    assert!(!ok);
    assert_eq!(first_break(&report).0, "malformed", "{report}");
    assert_eq!(first_break(&report).2, lines.len() as u64, "{report}");
    std::fs::write(&current, &original).expect("restore");
    assert!(verify(&env).0);
}

#[test]
fn reserved_service_is_never_granted_or_served() {
    let env = Sandbox::new();
    let client = env.registered_client("greedy", &["--read", "aws"]);
    let err = env.cli_err(&[
        "grant",
        client.to_str().expect("utf8"),
        "--read",
        "keychain-auth.internal",
    ]);
    assert!(err.contains("reserved"), "{err}");
    let _d = env.start();
    let r = &env.run_client(
        &client,
        &[&request("read", "keychain-auth.internal", &["audit-key"])],
    )[0];
    testkit::expect(r, "denied", Some("service_not_allowed"));
    assert!(
        r.get("results")
            .is_none_or(|v| v.as_array().is_none_or(std::vec::Vec::is_empty)),
        "{r}"
    );
}

fn logrotate() -> Option<PathBuf> {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let p = Path::new(dir).join("logrotate");
        if p.exists() {
            return Some(p);
        }
    }
    let msg = "logrotate is not installed (Debian package `logrotate`)";
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// Runs the real logrotate once, forced, on the audit log with `mode` (`create` or
/// `copytruncate`).
fn run_logrotate(env: &Sandbox, bin: &Path, mode: &str) {
    let conf = env.root.join(format!("logrotate-{mode}.conf"));
    std::fs::write(
        &conf,
        format!(
            "{} {{\n  rotate 20\n  missingok\n  notifempty\n  nocompress\n  {mode}\n}}\n",
            env.audit().display()
        ),
    )
    .expect("conf");
    testkit::set_mode(&conf, 0o644);
    let out = std::process::Command::new(bin)
        .arg("-f")
        .arg("-s")
        .arg(env.root.join("logrotate.status"))
        .arg(&conf)
        .output()
        .expect("run logrotate");
    assert!(
        out.status.success(),
        "logrotate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn real_logrotate_rename_and_copytruncate_are_noticed_and_recorded() {
    let Some(bin) = logrotate() else { return };
    let env = Sandbox::new();
    rotation_config(&env, 0, 5); // built-in rotation off: logrotate does it
    let client = env.registered_client("rotated", &["--read", "aws", "--search"]);
    let d = env.start();
    reads(&env, &client, "before", 5);

    run_logrotate(&env, &bin, "create 0600");
    assert!(env.audit().with_extension("log.1").exists());
    reads(&env, &client, "after-rename", 5);
    let current = env.audit_records();
    assert_eq!(current[0]["action"], "log_replaced", "{:?}", current[0]);
    assert!(current[0]["prev_mac"].is_string());
    assert_eq!(
        current.iter().filter(|r| r["event"] == "request").count(),
        5,
        "the records after the rename went to the new file"
    );

    run_logrotate(&env, &bin, "copytruncate");
    reads(&env, &client, "after-copytruncate", 5);
    let current = env.audit_records();
    assert_eq!(current[0]["action"], "log_truncated", "{:?}", current[0]);

    // rename again, compressing the older rotated file (compress + delaycompress)
    run_logrotate(&env, &bin, "create 0600\n  compress\n  delaycompress");
    reads(&env, &client, "after-compress", 5);
    stop(d);
    let gz = env.audit().with_extension("log.2.gz");
    assert!(gz.exists(), "logrotate compressed the older rotated file");

    let (ok, report) = verify(&env);
    assert!(ok, "{report}");
    let notices = report["notices"].to_string();
    assert!(
        notices.contains("renamed") && notices.contains("cut"),
        "{notices}"
    );
    // `audit --json` reads the compressed file too
    let recs: Vec<Value> = env
        .cli_ok(&["audit", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    for tag in [
        "before",
        "after-rename",
        "after-copytruncate",
        "after-compress",
    ] {
        let n = recs
            .iter()
            .filter(|r| r["id"].as_str().is_some_and(|i| i.starts_with(tag)))
            .count();
        assert_eq!(n, 5, "{tag}");
    }
}

#[test]
fn rotation_under_concurrent_load_loses_no_record() {
    let env = Sandbox::new();
    rotation_config(&env, 16 * 1024, 1000);
    let clients: Vec<PathBuf> = (0..4).map(|i| env.client(&format!("load{i}"))).collect();
    for c in &clients {
        env.register(c, &["--read", "aws", "--search"]);
    }
    let d = env.start();
    let per = 150;
    std::thread::scope(|s| {
        for (i, c) in clients.iter().enumerate() {
            let env = &env;
            s.spawn(move || reads(env, c, &format!("w{i}"), per));
        }
        // policy changes from the CLI while the daemon writes: same chain, no fork
        s.spawn(|| {
            for _ in 0..5 {
                env.cli_ok(&["grant", clients[0].to_str().expect("utf8"), "--write", "x"]);
                env.cli_ok(&["revoke", clients[0].to_str().expect("utf8"), "--write", "x"]);
            }
        });
    });
    stop(d);
    let files = audit_files(&env);
    assert!(files.len() >= 5, "rotated under load: {files:?}");
    let recs = all_records(&env);
    for i in 0..4 {
        let mut ids: Vec<String> = recs
            .iter()
            .filter_map(|r| r["id"].as_str())
            .filter(|id| id.starts_with(&format!("w{i}-")))
            .map(str::to_string)
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), per, "client {i}");
    }
    assert_eq!(
        recs.iter()
            .filter(|r| r["event"] == "policy_change")
            .count(),
        4 + 10
    );
    let (ok, report) = verify(&env);
    assert!(ok, "{report}");
    assert_eq!(report["records"], recs.len());
    assert!(
        report["notices"]
            .as_array()
            .is_some_and(std::vec::Vec::is_empty),
        "{report}"
    );
    // the table and JSON forms read across the rotated files
    let json = env.cli_ok(&[
        "audit", "--json", "--binary", "load2", "--status", "success", "--action", "read",
    ]);
    assert_eq!(json.lines().count(), per);
    let table = env.cli_ok(&["audit", "-n", "3", "--action", "read"]);
    assert_eq!(table.lines().count(), 4, "{table}");
    assert!(
        !table.contains('\x1b'),
        "no colour when not a terminal: {table}"
    );
}

#[test]
fn follow_prints_every_record_across_rotations() {
    let env = Sandbox::new();
    rotation_config(&env, 4 * 1024, 100);
    let client = env.registered_client("followed", &["--read", "aws", "--search"]);
    let d = env.start();
    let mut follower = env
        .command(testkit::daemon_bin())
        .args(["audit", "--follow", "--json", "--action", "read"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn audit --follow");
    let stdout = follower.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(400));
    // 3 batches, each several rotations' worth, with pauses so the follower sees some live
    reads(&env, &client, "f1", 30);
    std::thread::sleep(std::time::Duration::from_millis(300));
    reads(&env, &client, "f2", 30);
    reads(&env, &client, "f3", 30);
    let mut ids = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while ids.len() < 90 && std::time::Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
            let v: Value = serde_json::from_str(&line).expect("json line");
            ids.push(v["id"].as_str().expect("id").to_string());
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    stop(d);
    assert!(audit_files(&env).len() >= 6, "rotated several times");
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "printed twice: {ids:?}");
    assert_eq!(ids.len(), 90, "follow missed records: {ids:?}");
}

/// Runs `keychain-auth policy accept` on a pseudo-terminal (util-linux `script`), typing
/// `answer`; returns (success, everything the terminal showed).
fn accept_on_a_tty(env: &Sandbox, answer: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = env
        .command("script")
        .args([
            "-qec",
            &format!("{} policy accept", testkit::daemon_bin()),
            "/dev/null",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux)");
    // answer once the prompt is up (typed earlier, the terminal would still queue it)
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(answer.as_bytes()).expect("type");
    stdin.flush().expect("flush");
    let out = child.wait_with_output().expect("script output");
    drop(stdin);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn out_of_band_config_edit_is_held_detected_and_adopted() {
    let env = Sandbox::new();
    let good = env.client("good");
    let widened = env.client("widened");
    env.register(&good, &["--read", "aws", "--search"]);
    env.register(&widened, &["--read", "aws", "--search"]);
    let d = env.start();
    let prefix_read = |svc: &str| {
        format!(
            r#"{{"type":"REQUEST","action":"read","service":"{svc}","match":"prefix","targets":[""]}}"#
        )
    };
    testkit::expect(
        &env.run_client(&widened, &[&prefix_read("aws")])[0],
        "success",
        None,
    );

    // An editor widens one entry: gcp added to its read services.
    let text = std::fs::read_to_string(env.config()).expect("config");
    let mut v: Value = serde_json::from_str(&text).expect("json");
    let wpath = std::fs::canonicalize(&widened).expect("canonical");
    for b in v["registered_binaries"].as_array_mut().expect("array") {
        if b["path"] == wpath.to_str().expect("utf8") {
            b["allowed_read_services"] = serde_json::json!(["aws", "gcp"]);
        }
    }
    std::fs::write(env.config(), serde_json::to_vec_pretty(&v).expect("json")).expect("edit");

    // The touched entry is not served at all; the untouched one still is.
    for svc in ["gcp", "aws"] {
        let r = &env.run_client(&widened, &[&prefix_read(svc)])[0];
        let msg = testkit::expect(r, "denied", Some("unregistered_binary"));
        assert!(
            msg.contains("outside keychain-auth") && msg.contains("policy accept"),
            "{msg}"
        );
    }
    testkit::expect(
        &env.run_client(&good, &[&prefix_read("aws")])[0],
        "success",
        None,
    );
    assert!(
        env.pending_entries().is_empty(),
        "a held entry is not queued as unknown"
    );

    // doctor shows what changed
    let doc = env.cli(&["doctor"]);
    let doc_text =
        String::from_utf8_lossy(&doc.stdout).into_owned() + &String::from_utf8_lossy(&doc.stderr);
    assert!(
        doc_text.contains("edited outside keychain-auth"),
        "{doc_text}"
    );
    assert!(
        doc_text.contains("+ now") && doc_text.contains("aws,gcp"),
        "{doc_text}"
    );

    // keychain-auth's own writers do not seal it unreviewed
    let err = env.cli_err(&["grant", good.to_str().expect("utf8"), "--write", "aws"]);
    assert!(err.contains("policy accept"), "{err}");

    // policy accept needs a terminal
    let no_tty = env
        .command("setsid")
        .args(["-w", testkit::daemon_bin(), "policy", "accept"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("setsid");
    assert!(!no_tty.status.success());
    assert!(
        String::from_utf8_lossy(&no_tty.stderr).contains("terminal"),
        "{}",
        String::from_utf8_lossy(&no_tty.stderr)
    );

    // answered "n" on the terminal: nothing adopted
    let (ok, shown) = accept_on_a_tty(&env, "n\n");
    assert!(!ok, "{shown}");
    assert!(
        shown.contains("aws,gcp") && shown.contains("[y/N]"),
        "{shown}"
    );
    testkit::expect(
        &env.run_client(&widened, &[&prefix_read("gcp")])[0],
        "denied",
        Some("unregistered_binary"),
    );

    // answered "y": adopted, sealed, served, audited
    let (ok, shown) = accept_on_a_tty(&env, "y\n");
    assert!(ok, "{shown}");
    testkit::expect(
        &env.run_client(&widened, &[&prefix_read("gcp")])[0],
        "success",
        None,
    );
    let doc = env.cli(&["doctor"]);
    assert!(
        String::from_utf8_lossy(&doc.stdout).contains("matches its seal"),
        "{}",
        String::from_utf8_lossy(&doc.stdout)
    );
    env.cli_ok(&["grant", good.to_str().expect("utf8"), "--write", "aws"]);
    stop(d);
    let recs = all_records(&env);
    assert!(
        recs.iter().any(|r| r["action"] == "accept"),
        "accept is audited"
    );
    assert!(verify(&env).0);
}

#[test]
fn a_request_whose_record_cannot_be_chained_is_not_carried_out() {
    let env = Sandbox::new();
    let client = env.registered_client("failclosed", &["--read", "aws", "--write", "aws"]);
    let d = env.start();
    let w = |t: &str| testkit::write_request("aws", &[t], &["v"], serde_json::json!({}));
    testkit::expect(
        &env.run_client_stdin(&client, &[&w("before")])[0],
        "success",
        None,
    );

    // The state file replaced by a symlink: the writer will not follow it, so no record can be
    // chained, and nothing is granted.
    let state = env.audit().with_file_name("audit.state");
    let saved = std::fs::read(&state).expect("state");
    std::fs::remove_file(&state).expect("rm state");
    std::os::unix::fs::symlink(env.root.join("elsewhere"), &state).expect("symlink");
    let r = &env.run_client_stdin(&client, &[&w("during")])[0];
    let msg = testkit::expect(r, "error", Some("internal_error"));
    assert!(msg.contains("not carried out"), "{msg}");
    let r = &env.run_client(&client, &[&request("read", "aws", &["before"])])[0];
    testkit::expect(r, "error", Some("internal_error"));
    assert!(
        r.get("results")
            .is_none_or(|v| v.as_array().is_none_or(std::vec::Vec::is_empty)),
        "a read is withheld: {r}"
    );
    assert!(!env.root.join("elsewhere").exists());

    // Repaired: the write that failed was undone, the chain carries on and still verifies.
    std::fs::remove_file(&state).expect("rm symlink");
    std::fs::write(&state, &saved).expect("restore state");
    testkit::set_mode(&state, 0o600);
    let r = &env.run_client(&client, &[&request("read", "aws", &["during"])])[0];
    testkit::expect(r, "error", Some("not_found"));
    stop(d);
    let (ok, report) = verify(&env);
    assert!(ok, "{report}");
}
