//! Bounded resources (issue 18, item 4), measured: the broker's resident memory stays flat
//! under the loads of the outside review. The broker runs embedded in this test process (its
//! own test binary, so no other test shares the memory measured); its `VmRSS` is read from
//! `/proc/self/status` before and after each load, and the growth must stay under a generous
//! bound (an unbounded queue grew by hundreds of MiB under the same load).

use std::path::Path;
use testkit::{EmbeddedBroker, Relay, Sandbox, request};

/// This process's resident set size in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

const PYTHON: &str = "/usr/bin/python3";

/// Approvers that never read: 20 subscribers (children running this test binary, the embedded
/// broker's executable) whose output nobody reads, while a caller makes thousands of prompt
/// events (50 held requests joining one prompt and hanging up, round after round). Each
/// approver is dropped once its queue is full and told so; the broker's memory stays flat.
#[test]
fn approvers_that_never_read_are_dropped_and_memory_stays_flat() {
    if !Path::new(PYTHON).exists() {
        assert!(std::env::var_os("CI").is_none(), "CI needs {PYTHON}");
        eprintln!("SKIPPED: no {PYTHON}");
        return;
    }
    let env = Sandbox::new();
    let running = EmbeddedBroker::start(&env);
    let dir = env.root.join("scripts");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("flood.py");
    testkit::write_executable(
        &script,
        format!(
            "#!{PYTHON}\nimport os, socket, time\nreq = (os.environ['REQ'] + '\\n').encode()\nfor _ in range(int(os.environ['ROUNDS'])):\n    socks = []\n    for _ in range(50):\n        s = socket.socket(socket.AF_UNIX)\n        s.connect(os.environ['KEYCHAIN_AUTH_SOCKET'])\n        s.sendall(req)\n        socks.append(s)\n    time.sleep(0.02)\n    for s in socks:\n        s.close()\n"
        )
        .as_bytes(),
    );
    // Approved, but not for this service: every request is held for an approver.
    env.cli_ok(&["register", script.to_str().unwrap(), "--read", "other"]);
    let flood = |rounds: u32| {
        let out = env
            .command(&script)
            .env("REQ", request("read", "aws", &["k"]))
            .env("ROUNDS", rounds.to_string())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let subscribe = br#"{"type":"SUBSCRIBE"}"#;
    let approvers: Vec<Relay> = (0..20)
        .map(|_| {
            let mut r = Relay::start(&env, "relay", None, &[]);
            assert_eq!(r.round_trip(subscribe).unwrap()["type"], "SUBSCRIBED");
            r
        })
        .collect();
    flood(2);
    let before = rss_kib();
    flood(150);
    // Let the last hang-ups be seen and the dropped approvers' sessions end.
    std::thread::sleep(std::time::Duration::from_secs(6));
    let after = rss_kib();
    let grown = after.saturating_sub(before);
    eprintln!("RSS {before} KiB -> {after} KiB (+{grown} KiB) under 20 approvers that never read");
    assert!(
        grown < 48 * 1024,
        "the broker grew by {grown} KiB under approvers that never read"
    );
    // Each approver was dropped (none is attached any more), though every one still runs.
    assert!(
        !running.broker.approvals.attached(),
        "approvers that never read are dropped"
    );
    drop(approvers);
    running.stop();
}

/// The socket approvers' side of [`Relay`]: run only as a child of the test above.
#[test]
#[ignore = "the child process of the approver test (testkit::Relay)"]
fn relay() {
    testkit::relay_main();
}
