//! Attacks on the broker's files and directories, each against the real daemon binary: FIFOs and
//! symbolic links in place of state files, socket directories others own or may write, a store
//! others may read, stale temp copies of the store. The daemon must refuse with a reason, never
//! hang, never chmod what it did not create, and always stop on SIGTERM.

use nix::sys::signal::Signal;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};
use testkit::{Sandbox, expect, request, write_request};

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
}

/// STATUS answers, and within a second.
fn status_is_quick(env: &Sandbox) {
    let t = Instant::now();
    let st = testkit::status(&env.socket).expect("STATUS answers while a state file is a FIFO");
    assert_eq!(st["type"], "STATUS", "{st}");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "STATUS took {:?}",
        t.elapsed()
    );
}

/// SIGTERM stops the daemon within a few seconds, however it is stuck.
fn sigterm_stops(mut d: testkit::Daemon) {
    let pid = nix::unistd::Pid::from_raw(d.pid() as i32);
    let mut child = d.child.take().expect("running");
    let t = Instant::now();
    nix::sys::signal::kill(pid, Signal::SIGTERM).expect("kill");
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the daemon ignored SIGTERM for 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A daemon with `tool` allowed to read and write service `s`, holding `s/k` = "v".
fn serving() -> (Sandbox, testkit::Daemon, std::path::PathBuf) {
    let env = Sandbox::new();
    let d = env.start();
    let tool = env.registered_client("tool", &["--read", "s", "--write", "s"]);
    env.write_ok(&tool, "s", &[("k", "v")]);
    (env, d, tool)
}

/// Swaps `path` for a FIFO; returns the original bytes.
fn swap_for_fifo(path: &Path) -> Vec<u8> {
    let good = std::fs::read(path).expect("original");
    std::fs::remove_file(path).expect("rm");
    mkfifo(path);
    good
}

fn restore(path: &Path, bytes: &[u8]) {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, bytes).expect("restore");
    testkit::set_mode(path, 0o600);
}

fn read_k(env: &Sandbox, tool: &Path) -> serde_json::Value {
    let t = Instant::now();
    let r = env
        .run_client(tool, &[&request("read", "s", &["k"])])
        .remove(0);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "a request took {:?}",
        t.elapsed()
    );
    r
}

#[test]
fn fifo_in_place_of_config_json() {
    let (env, d, tool) = serving();
    let good = swap_for_fifo(&env.config());
    // The running daemon learns of the swap from its file watch (within milliseconds).
    let r = testkit::wait_for(5, "the swap to be noticed", || {
        let r = read_k(&env, &tool);
        (r["status"] != "success").then_some(r)
    });
    let msg = expect(&r, "denied", Some("internal_error"));
    assert!(msg.contains("FIFO") && msg.contains("config.json"), "{msg}");
    status_is_quick(&env);
    let err = env.cli_err(&["list"]);
    assert!(err.contains("FIFO"), "{err}");
    restore(&env.config(), &good);
    testkit::wait_for(5, "the restored config to be served", || {
        (read_k(&env, &tool)["status"] == "success").then_some(())
    });
    std::fs::remove_file(env.config()).expect("rm");
    mkfifo(&env.config());
    testkit::wait_for(5, "the second swap to be noticed", || {
        (read_k(&env, &tool)["reason"] == "internal_error").then_some(())
    });
    sigterm_stops(d);
    // And a start with the FIFO there is refused with one line.
    let err = env.cli_err(&["start"]);
    assert!(err.contains("FIFO") && err.contains("config.json"), "{err}");
}

#[test]
fn fifo_in_place_of_pending_json() {
    let (env, d, _tool) = serving();
    let _ = std::fs::remove_file(env.pending());
    mkfifo(&env.pending());
    let stranger = env.client("stranger");
    let r = &env.run_client(&stranger, &[&request("read", "s", &["k"])])[0];
    expect(r, "denied", Some("unregistered_binary"));
    status_is_quick(&env);
    let err = env.cli_err(&["list-pending"]);
    assert!(
        err.contains("FIFO") && err.contains("pending.json"),
        "{err}"
    );
    assert!(
        std::fs::symlink_metadata(env.pending())
            .expect("still there")
            .file_type()
            .is_fifo_like(),
        "the FIFO was refused, not silently replaced"
    );
    std::fs::remove_file(env.pending()).expect("rm");
    let r = &env.run_client(&stranger, &[&request("read", "s", &["k"])])[0];
    expect(r, "denied", Some("unregistered_binary"));
    assert_eq!(env.pending_entries().len(), 1, "queued again once repaired");
    std::fs::remove_file(env.pending()).expect("rm");
    mkfifo(&env.pending());
    let r = &env.run_client(&stranger, &[&request("read", "s", &["k"])])[0];
    expect(r, "denied", Some("unregistered_binary"));
    sigterm_stops(d);
}

#[test]
fn fifo_in_place_of_the_file_store() {
    let (env, d, tool) = serving();
    let good = swap_for_fifo(&env.file_store());
    // The running daemon learns of the swap from its file watch (within milliseconds).
    testkit::wait_for(5, "the swap to be noticed", || {
        (read_k(&env, &tool)["status"] == "error").then_some(())
    });
    for _ in 0..3 {
        let msg = expect(&read_k(&env, &tool), "error", Some("backend_unavailable"));
        assert!(
            msg.contains("FIFO") && msg.contains("keyring.json"),
            "{msg}"
        );
    }
    let w = &env.run_client_stdin(&tool, &[&write_request("s", &["k2"], &["v2"], json!({}))]);
    expect(&w[0], "error", Some("backend_unavailable"));
    status_is_quick(&env);
    restore(&env.file_store(), &good);
    let r = testkit::wait_for(5, "the restored store to be served", || {
        let r = read_k(&env, &tool);
        (r["status"] == "success").then_some(r)
    });
    assert_eq!(r["results"][0]["value"], "v", "{r}");
    std::fs::remove_file(env.file_store()).expect("rm");
    mkfifo(&env.file_store());
    testkit::wait_for(5, "the second swap to be noticed", || {
        (read_k(&env, &tool)["reason"] == "backend_unavailable").then_some(())
    });
    sigterm_stops(d);
}

#[test]
fn fifo_in_place_of_the_audit_log() {
    let (env, d, tool) = serving();
    // The daemon holds the log open; once it is unlinked, the next record reopens the path.
    std::fs::remove_file(env.audit()).expect("rm");
    mkfifo(&env.audit());
    let msg = expect(&read_k(&env, &tool), "error", Some("internal_error"));
    assert!(msg.contains("audit log") && msg.contains("FIFO"), "{msg}");
    status_is_quick(&env);
    std::fs::remove_file(env.audit()).expect("rm");
    expect(&read_k(&env, &tool), "success", None);
    assert!(
        std::fs::symlink_metadata(env.audit())
            .expect("recreated")
            .is_file()
    );
    std::fs::remove_file(env.audit()).expect("rm");
    mkfifo(&env.audit());
    expect(&read_k(&env, &tool), "error", Some("internal_error"));
    sigterm_stops(d);
    let err = env.cli_err(&["start"]);
    assert!(err.contains("audit log") && err.contains("FIFO"), "{err}");
}

#[test]
fn fifo_in_place_of_a_lock_file() {
    let (env, d, tool) = serving();
    let lock = env.file_store().with_file_name("keyring.json.lock");
    std::fs::remove_file(&lock).expect("rm lock");
    mkfifo(&lock);
    let w = &env.run_client_stdin(&tool, &[&write_request("s", &["k"], &["v2"], json!({}))]);
    let msg = expect(&w[0], "error", Some("backend_unavailable"));
    assert!(
        msg.contains("FIFO") && msg.contains("keyring.json.lock"),
        "{msg}"
    );
    status_is_quick(&env);
    let r = read_k(&env, &tool);
    assert_eq!(
        r["results"][0]["value"], "v",
        "the write changed nothing: {r}"
    );
    sigterm_stops(d);
}

/// Lets the FIFO tests say "still a FIFO" without another import.
trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}

impl FifoLike for std::fs::FileType {
    fn is_fifo_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

#[test]
fn a_symlinked_config_is_not_followed() {
    let (env, d, tool) = serving();
    // A permissive policy elsewhere, pointed to by config.json: it must not take effect.
    let stranger = env.client("stranger");
    let evil = env.root.join("evil-config.json");
    let mut policy: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.config()).expect("config")).expect("json");
    let hash = {
        let out = env.cli_ok(&["register", stranger.to_str().expect("utf8"), "--read", "s"]);
        assert!(out.contains("registered"), "{out}");
        let list = env.registered();
        list.iter()
            .find(|b| b["path"].as_str() == stranger.to_str())
            .expect("stranger")
            .clone()
    };
    env.cli_ok(&["unregister", stranger.to_str().expect("utf8")]);
    policy["registered_binaries"]
        .as_array_mut()
        .expect("array")
        .push(hash);
    std::fs::write(&evil, serde_json::to_vec(&policy).expect("json")).expect("evil");
    testkit::set_mode(&evil, 0o600);
    expect(
        &env.run_client(&stranger, &[&request("read", "s", &["k"])])[0],
        "denied",
        Some("unregistered_binary"),
    );
    let good = std::fs::read(env.config()).expect("config");
    std::fs::remove_file(env.config()).expect("rm");
    std::os::unix::fs::symlink(&evil, env.config()).expect("symlink");
    let r = &env.run_client(&stranger, &[&request("read", "s", &["k"])])[0];
    assert_ne!(
        r["status"], "success",
        "the symlinked policy was followed: {r}"
    );
    let msg = expect(r, "denied", Some("internal_error"));
    assert!(msg.contains("symbolic link"), "{msg}");
    status_is_quick(&env);
    restore(&env.config(), &good);
    expect(&read_k(&env, &tool), "success", None);
    std::fs::remove_file(env.config()).expect("rm");
    std::os::unix::fs::symlink(&evil, env.config()).expect("symlink");
    sigterm_stops(d);
    let err = env.cli_err(&["start"]);
    assert!(err.contains("symbolic link"), "{err}");
}

#[test]
fn a_socket_dir_owned_by_another_uid_is_refused_and_left_alone() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to chown a directory to uid 65534");
        return;
    }
    let env = Sandbox::new();
    let dir = env.root.join("theirs");
    std::fs::create_dir(&dir).expect("mkdir");
    testkit::set_mode(&dir, 0o777);
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).expect("chown");
    let sock = dir.join("agent.sock");
    let err = env.cli_err(&["--socket", sock.to_str().expect("utf8"), "start"]);
    assert!(err.contains("owned by uid 65534"), "{err}");
    assert_eq!(testkit::mode(&dir), 0o777, "the directory was chmodded");
    assert!(!sock.exists());
    assert!(
        env.audit_records().is_empty(),
        "a refused start audits nothing"
    );
}

#[test]
fn an_existing_sticky_world_writable_dir_keeps_its_mode() {
    let env = Sandbox::new();
    let dir = env.root.join("shared");
    std::fs::create_dir(&dir).expect("mkdir");
    testkit::set_mode(&dir, 0o777);
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o1777))
        .expect("chmod 1777");
    let sock = dir.join("agent.sock");
    let err = env.cli_err(&["--socket", sock.to_str().expect("utf8"), "start"]);
    assert!(
        err.contains("writable by group or others") && err.contains("--socket"),
        "{err}"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&dir).expect("meta").permissions(),
    ) & 0o7777;
    assert_eq!(mode, 0o1777, "the directory was chmodded");
    assert!(!sock.exists());
    // A directory that did not exist is created 0700 and used.
    let fresh = env.root.join("fresh/sub");
    let mut cmd = env.command(testkit::daemon_bin());
    cmd.args([
        "--socket",
        fresh.join("a.sock").to_str().expect("utf8"),
        "start",
    ]);
    let mut child = cmd
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    testkit::wait_for(20, "daemon on the fresh socket", || {
        testkit::status(&fresh.join("a.sock"))
    });
    assert_eq!(testkit::mode(&fresh), 0o700);
    assert_eq!(testkit::mode(fresh.parent().expect("parent")), 0o700);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGTERM,
    );
    child.wait().expect("wait");
}

#[test]
fn a_refused_start_prints_one_line_and_audits_no_fallback() {
    // auto with no session bus: the daemon would fall back to the file store with a notice.
    let mut env = Sandbox::new();
    env.extra_env.clear();
    let first = env.start();
    let before = env.audit_records().len();
    let out = env.cli(&["start"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
    assert!(err.contains("already running"), "{err}");
    let after = env.audit_records();
    assert_eq!(
        after.len(),
        before,
        "the refused start added audit records: {:?}",
        &after[before..]
    );
    drop(first);
}

#[test]
fn a_store_others_can_read_is_refused_with_the_fix() {
    let env = Sandbox::new();
    let store = env.file_store();
    let dir = store.parent().expect("dir").to_path_buf();
    std::fs::create_dir_all(&dir).expect("mkdir");
    testkit::set_mode(&dir, 0o755);
    std::fs::write(
        &store,
        br#"{"version":1,"items":{"s":{"k":{"value":"v","attributes":{}}}}}"#,
    )
    .expect("store");
    testkit::set_mode(&store, 0o644);
    let err = env.cli_err(&["start"]);
    assert!(
        err.contains(&format!("chmod 700 {}", dir.display())),
        "{err}"
    );
    assert_eq!(testkit::mode(&dir), 0o755, "not tightened behind your back");
    testkit::set_mode(&dir, 0o700);
    let err = env.cli_err(&["start"]);
    assert!(
        err.contains(&format!("chmod 600 {}", store.display())),
        "{err}"
    );
    assert_eq!(testkit::mode(&store), 0o644);
    testkit::set_mode(&store, 0o600);
    let d = env.start();
    let tool = env.registered_client("tool", &["--read", "s"]);
    expect(&read_k(&env, &tool), "success", None);
    // Loosened while running: refused at the next read.
    testkit::set_mode(&store, 0o644);
    let msg = expect(&read_k(&env, &tool), "error", Some("backend_unavailable"));
    assert!(msg.contains("chmod 600"), "{msg}");
    drop(d);
}

#[test]
fn stale_temp_copies_are_removed_at_start() {
    let env = Sandbox::new();
    let dir = env.file_store().parent().expect("dir").to_path_buf();
    std::fs::create_dir_all(&dir).expect("mkdir");
    testkit::set_mode(&dir, 0o700);
    let config_dir = env.config().parent().expect("dir").to_path_buf();
    std::fs::create_dir_all(&config_dir).expect("mkdir");
    testkit::set_mode(&config_dir, 0o700);
    let stale = [
        dir.join(".keyring.json.tmp-AbC123"),
        dir.join(".tmpXYZ"),
        dir.join(".tmp-old123"),
        config_dir.join(".config.json.tmp-Q1w2E3"),
        config_dir.join(".pending.json.tmp-zzzzzz"),
    ];
    for p in &stale {
        std::fs::write(p, b"{\"s\":{\"k\":{\"value\":\"deleted-secret\"}}}").expect("stale");
        testkit::set_mode(p, 0o600);
    }
    let d = env.start();
    for p in [&stale[0], &stale[2], &stale[3], &stale[4]] {
        assert!(!p.exists(), "{} survived the start", p.display());
    }
    assert!(
        stale[1].exists(),
        "only names this program uses are removed"
    );
    assert!(d.output().contains("interrupted write"), "{}", d.output());
}

#[test]
fn sigterm_stops_the_daemon_while_a_request_waits_on_a_held_lock() {
    let (env, d, tool) = serving();
    // Another process of yours holds the store's lock and never lets go.
    let lock_path = env.file_store().with_file_name("keyring.json.lock");
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .open(&lock_path)
        .expect("lock file");
    lock.lock().expect("flock");
    let mut writer = env
        .command(&tool)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("client");
    {
        use std::io::Write;
        let mut stdin = writer.stdin.take().expect("stdin");
        writeln!(stdin, "{}", write_request("s", &["k"], &["v2"], json!({}))).expect("send");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        writer.try_wait().expect("wait").is_none(),
        "the write should be waiting for the lock"
    );
    status_is_quick(&env);
    sigterm_stops(d);
    let _ = writer.kill();
    let _ = writer.wait();
    drop(lock);
}

#[test]
fn a_process_holding_the_audit_lock_stalls_the_daemon_for_seconds_not_for_good() {
    let (env, d, tool) = serving();
    let state_path = env.audit().with_file_name("audit.state");
    // While the daemon runs it holds the lock itself: another process of yours cannot take it
    // (and so cannot stall the daemon's records).
    let state = std::fs::OpenOptions::new()
        .write(true)
        .open(&state_path)
        .expect("audit.state");
    assert!(
        matches!(state.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        "the running daemon holds the audit log's lock"
    );
    sigterm_stops(d);
    // Taken while no daemon runs (a stopped `keychain-auth approve`, or a hostile `flock`),
    // and never let go: the daemon still starts, and takes the lock for every record.
    state.lock().expect("flock");
    let d = env.start();
    let read = r#"{"type":"REQUEST","action":"read","service":"s","targets":["k"]}"#;
    // A refusal is audited on the serving thread: answered once the wait gives up.
    let stranger = env.client("stranger");
    let refused = env.run_client(&stranger, &[read]);
    assert_eq!(refused[0]["status"], "denied", "{:?}", refused[0]);
    // An approved read whose record cannot be written is not carried out.
    let withheld = env.run_client(&tool, &[read]);
    assert_ne!(withheld[0]["status"], "success", "{:?}", withheld[0]);
    assert!(
        !withheld[0].to_string().contains("\"v\""),
        "{:?}",
        withheld[0]
    );
    status_is_quick(&env);
    drop(state);
    assert_eq!(env.run_client(&tool, &[read])[0]["status"], "success");
    sigterm_stops(d);
}
