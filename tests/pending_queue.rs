//! The pending queue is held by the daemon (SPEC §19): read once when it starts, changed in its
//! memory (a refusal recorded, an entry approved or registered) and written to pending.json by
//! it alone, so `list-pending` and the dashboard read what it holds; edits of pending.json by
//! anything else are noticed with a file watch.

use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use testkit::{Sandbox, expect, request};

/// A read of "aws" that is refused at once (no approver is asked).
fn refused_read() -> String {
    let mut line: Value = serde_json::from_str(&request("read", "aws", &["k"])).expect("json");
    line["prompt"] = false.into();
    line.to_string()
}

/// Runs `client` once; it must be refused as unknown.
fn refuse(env: &Sandbox, client: &Path) {
    expect(
        &env.run_client(client, &[&refused_read()])[0],
        "denied",
        Some("unregistered_binary"),
    );
}

/// pending.json as the file holds it (it must be valid JSON).
fn on_disk(env: &Sandbox) -> Value {
    let text = std::fs::read_to_string(env.pending()).expect("pending.json");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("pending.json is not JSON ({e})"))
}

/// The entry of pending.json whose path is `client`.
fn entry_of(file: &Value, client: &Path) -> Option<Value> {
    file["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["path"].as_str() == client.to_str())
        .cloned()
}

/// Replaces pending.json as an editor would (a new file renamed over it, private).
fn edit_outside(env: &Sandbox, contents: &Value) {
    let tmp = env.pending().with_extension("edit");
    env.write_private(&tmp, serde_json::to_vec_pretty(contents).expect("json"));
    std::fs::rename(&tmp, env.pending()).expect("rename");
}

/// The daemon's file watch reports within milliseconds; this leaves it ample time.
fn let_the_watch_report() {
    std::thread::sleep(Duration::from_millis(1000));
}

/// A refused caller is in `list-pending` (read from the file the daemon writes), counted once
/// per refusal; approving it through the daemon takes it out of the daemon's queue and the
/// file: a later refusal of another caller, written from the daemon's memory, does not bring
/// it back.
#[test]
fn approve_through_the_daemon_removes_the_entry_from_memory_and_file() {
    let env = Sandbox::new();
    let _daemon = env.start();
    let a = env.client("tool-a");
    let b = env.client("tool-b");
    refuse(&env, &a);
    refuse(&env, &a);
    refuse(&env, &b);
    let listed = env.pending_entries();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let file = on_disk(&env);
    let ea = entry_of(&file, &a).expect("a is pending");
    assert_eq!(ea["attempts"], 2);
    assert_eq!(entry_of(&file, &b).expect("b is pending")["attempts"], 1);
    let hash_a = ea["hash"].as_str().expect("hash").to_string();

    env.cli_ok(&["approve", &hash_a, "--read", "aws"]);
    assert!(entry_of(&on_disk(&env), &a).is_none(), "a left the file");
    // The next write comes from the daemon's memory: a is not there either.
    refuse(&env, &b);
    let file = on_disk(&env);
    assert!(entry_of(&file, &a).is_none(), "a came back: {file}");
    assert_eq!(entry_of(&file, &b).expect("b")["attempts"], 2);
    // Served now, and approving it again says it is approved already.
    expect(
        &env.run_client(&a, &[&request("read", "aws", &["k"])])[0],
        "error",
        Some("not_found"),
    );
    let err = env.cli_err(&["approve", &hash_a]);
    assert!(err.contains("already approved"), "{err}");
}

/// Attack on the held copy: an entry removed from pending.json by another program while the
/// daemon runs is gone from the daemon too (it cannot be approved through it, and no later
/// write of the daemon brings it back); an entry put back by an outside edit can be approved
/// through the daemon.
#[test]
fn an_outside_edit_of_pending_json_is_noticed_by_the_running_daemon() {
    let env = Sandbox::new();
    let _daemon = env.start();
    let a = env.client("tool-a");
    let b = env.client("tool-b");
    refuse(&env, &a);
    refuse(&env, &b);
    let before = on_disk(&env);
    let hash_a = entry_of(&before, &a).expect("a")["hash"]
        .as_str()
        .expect("hash")
        .to_string();

    // Removed outside keychain-auth.
    let mut without_a = before.clone();
    without_a["entries"]
        .as_array_mut()
        .expect("entries")
        .retain(|e| e["path"].as_str() != a.to_str());
    edit_outside(&env, &without_a);
    let_the_watch_report();
    let err = env.cli_err(&["approve", &hash_a, "--read", "aws"]);
    assert!(err.contains("no pending caller"), "{err}");
    assert!(env.registered().is_empty());
    refuse(&env, &b);
    let file = on_disk(&env);
    assert!(
        entry_of(&file, &a).is_none(),
        "the daemon wrote a back: {file}"
    );
    assert_eq!(entry_of(&file, &b).expect("b")["attempts"], 2);

    // Put back outside keychain-auth: the daemon approves it.
    edit_outside(&env, &before);
    let_the_watch_report();
    env.cli_ok(&["approve", &hash_a, "--read", "aws"]);
    let reg = env.registered();
    assert_eq!(reg.len(), 1, "{reg:?}");
    assert_eq!(reg[0]["hash"].as_str(), Some(hash_a.as_str()));
    assert!(entry_of(&on_disk(&env), &a).is_none());
}

/// A hash the synthetic entries use: `n` in its last digits.
fn fake_hash(n: usize) -> String {
    format!("sha256:{:064x}", n + 1)
}

/// Attack: a queue filled to its cap (500 entries, written outside while the daemon runs)
/// and many refusals at once from several processes. The file stays bounded and valid JSON,
/// the newest callers are kept, and every refusal is counted.
#[test]
fn many_refusals_keep_pending_json_bounded_and_valid() {
    const CAP: usize = 500;
    let env = Sandbox::new();
    let _daemon = env.start();
    let now = chrono::Utc::now();
    let entries: Vec<Value> = (0..CAP)
        .map(|n| {
            let seen = (now - chrono::Duration::seconds(600 - (n as i64 % 600))).to_rfc3339();
            json!({
                "hash": fake_hash(n),
                "path": format!("/opt/fake/tool{n}"),
                "pid": 1000 + n,
                "argv": [format!("tool{n}")],
                "first_seen": seen,
                "last_seen": seen,
                "attempts": 1,
                "last_action": "read",
                "last_service": "aws",
            })
        })
        .collect();
    edit_outside(&env, &json!({ "entries": entries }));
    let_the_watch_report();

    let a = env.client("tool-a");
    let b = env.client("tool-b");
    const PER_SESSION: usize = 10;
    let sessions = 6;
    std::thread::scope(|s| {
        for i in 0..sessions {
            let client = if i % 2 == 0 { &a } else { &b };
            let env = &env;
            s.spawn(move || {
                let mut session = env.session(client);
                for _ in 0..PER_SESSION {
                    expect(
                        &session.send(&refused_read()),
                        "denied",
                        Some("unregistered_binary"),
                    );
                }
            });
        }
    });
    let file = on_disk(&env);
    let listed = file["entries"].as_array().expect("entries");
    assert_eq!(listed.len(), CAP, "bounded at {CAP}");
    let per_client = (sessions / 2 * PER_SESSION) as u64;
    assert_eq!(entry_of(&file, &a).expect("a kept")["attempts"], per_client);
    assert_eq!(entry_of(&file, &b).expect("b kept")["attempts"], per_client);
    // The least recently seen were evicted to make room.
    assert!(
        !listed
            .iter()
            .any(|e| e["hash"].as_str() == Some(fake_hash(0).as_str())),
        "the oldest entry was kept"
    );
    assert_eq!(env.pending_entries().len(), CAP);
}
