//! The vault's lock against the real daemon: it locks by itself after the `auto_lock` idle
//! time (and not while requests keep needing secrets) and when logind announces a suspend on
//! the system bus — but not when anyone else sends the same signal; an older copy put back
//! while it was stopped is refused at unlock; and the real dashboard's title says who can read
//! the store, following the lock.

use serde_json::{Value, json};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::{Bus, Dashboard, Sandbox, expect, nonce, wait_for};

const PASS: &str = "correct horse battery staple";

fn pass_file(env: &Sandbox) -> PathBuf {
    let p = env.root.join(format!("pass-{}", nonce()));
    env.write_private(&p, format!("{PASS}\n"));
    p
}

fn with_pass(p: &Path) -> Vec<(String, OsString)> {
    vec![("KEYCHAIN_AUTH_PASSPHRASE_FILE".into(), p.into())]
}

fn read(target: &str) -> String {
    json!({"type":"REQUEST","action":"read","service":"aws","targets":[target]}).to_string()
}

/// A vault (cheap KDF) holding `aws/t` = `value`, written through the file store and imported;
/// the reference client may read `aws`.
fn vault_with_secret(value: &str) -> (Sandbox, PathBuf) {
    let mut env = Sandbox::new();
    env.extra_env
        .push(("KEYCHAIN_AUTH_VAULT_KDF".into(), "floor".into()));
    env.register_reference_client(&["aws"]);
    {
        let _d = env.start();
        let line = json!({"type":"REQUEST","action":"write","service":"aws",
            "targets":["t"],"values":[value]});
        expect(&env.send(line), "success", None);
    }
    let pass = pass_file(&env);
    let out = env.cli_env(&with_pass(&pass), &["init", "--import", "--remove-plain"]);
    assert!(
        out.status.success(),
        "init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (env, pass)
}

/// Sets a top-level setting of config.json by hand and adopts the edit with the passphrase.
fn set_setting(env: &Sandbox, pass: &Path, name: &str, value: Value) {
    let path = env.config();
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config[name] = value.clone();
    env.write_private(&path, config.to_string());
    let out = env.cli_env(&with_pass(pass), &["policy", "accept", "--yes"]);
    assert!(
        out.status.success(),
        "policy accept: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let adopted: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(adopted[name], value, "{adopted}");
}

fn lock_records(env: &Sandbox, reason: &str) -> Vec<Value> {
    env.audit_records()
        .into_iter()
        .filter(|r| r["event"] == "vault" && r["action"] == "lock" && r["reason"] == reason)
        .collect()
}

#[test]
fn auto_lock_locks_an_idle_vault_and_not_one_in_use() {
    let value = format!("idle-{}", nonce());
    let (env, pass) = vault_with_secret(&value);
    let d = env.start_env(&with_pass(&pass));
    expect(&env.send(read("t")), "success", None);
    assert_eq!(d.status()["locked"], false, "{}", d.status());
    set_setting(&env, &pass, "auto_lock", json!("3s"));
    let doctor = env.cli(&["doctor"]);
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(text.contains("auto-lock after 3s"), "{text}");
    // In use: a read every half second for twice the idle time, all served.
    let until = Instant::now() + Duration::from_secs(7);
    while Instant::now() < until {
        let r = env.send(read("t"));
        expect(&r, "success", None);
        assert_eq!(r["results"][0]["value"], value.as_str());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(lock_records(&env, "idle").is_empty(), "locked while in use");
    // Idle (nothing asks for a secret; the audit log is read from the file): locked, and
    // the next read is refused vault_locked with the fix.
    let idle_from = Instant::now();
    wait_for(15, "the idle vault to lock", || {
        (!lock_records(&env, "idle").is_empty()).then_some(())
    });
    assert!(
        idle_from.elapsed() >= Duration::from_secs(2),
        "locked too soon"
    );
    let r = env.send(read("t"));
    expect(&r, "denied", Some("vault_locked"));
    assert_eq!(d.status()["locked"], true, "STATUS says so too");
    assert!(!r.to_string().contains(&value));
    assert!(
        r["message"]
            .as_str()
            .is_some_and(|m| m.contains("keychain-auth unlock")),
        "{r}"
    );
    // Audited as a lock by the daemon with its reason, at once.
    let locks = lock_records(&env, "idle");
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert_eq!(locks[0]["source"], "daemon");
    assert_eq!(locks[0]["status"], "success");
    assert!(
        locks[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("3s") && m.contains("auto_lock")),
        "{:?}",
        locks[0]
    );
    // The owner unlocks again and is served.
    let out = env.cli_env(&with_pass(&pass), &["unlock"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    expect(&env.send(read("t")), "success", None);
}

#[test]
fn auto_lock_is_off_by_default() {
    let (env, pass) = vault_with_secret("v");
    let d = env.start_env(&with_pass(&pass));
    std::thread::sleep(Duration::from_secs(4));
    expect(&env.send(read("t")), "success", None);
    assert!(lock_records(&env, "idle").is_empty());
    assert!(!d.stderr().contains("auto_lock"), "{}", d.stderr());
    let doctor = env.cli(&["doctor"]);
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(text.contains("auto-lock is off"), "{text}");
    assert!(
        text.contains("locked when logind announces a suspend"),
        "{text}"
    );
}

/// A connection to the bus at `address`, owning `name` when given.
async fn connect(address: &str, name: Option<&'static str>) -> zbus::Connection {
    let mut b = zbus::connection::Builder::address(address).expect("bus address");
    if let Some(n) = name {
        b = b.name(n).expect("name");
    }
    b.build().await.expect("connect to the test bus")
}

async fn prepare_for_sleep(conn: &zbus::Connection, going: bool) {
    conn.emit_signal(
        None::<&str>,
        "/org/freedesktop/login1",
        "org.freedesktop.login1.Manager",
        "PrepareForSleep",
        &going,
    )
    .await
    .expect("emit PrepareForSleep");
}

#[test]
fn a_suspend_announced_by_logind_locks_the_vault_and_the_same_signal_from_anyone_else_does_not() {
    if !testkit::tools_available(&["dbus-daemon"], "dbus") {
        return;
    }
    let value = format!("sleep-{}", nonce());
    let (env, pass) = vault_with_secret(&value);
    // A private bus stands in for the system bus; a test connection owns logind's name on it.
    let bus = Bus::start(&env);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let logind = rt.block_on(connect(&bus.address, Some("org.freedesktop.login1")));
    let attacker = rt.block_on(connect(&bus.address, None));
    let mut extra = with_pass(&pass);
    extra.push(("DBUS_SYSTEM_BUS_ADDRESS".into(), bus.address.clone().into()));
    let d = env.start_env(&extra);
    wait_for(20, "the daemon to listen for suspends", || {
        d.stderr()
            .contains("locked when logind announces a suspend")
            .then_some(())
    });
    expect(&env.send(read("t")), "success", None);

    // The attack: another connection on the system bus sends logind's signal. It arrives
    // (the daemon says it ignored it) and the vault stays unlocked.
    rt.block_on(prepare_for_sleep(&attacker, true));
    wait_for(20, "the forged signal to be ignored", || {
        d.stderr()
            .contains("ignored a suspend signal from")
            .then_some(())
    });
    let r = env.send(read("t"));
    expect(&r, "success", None);
    assert_eq!(r["results"][0]["value"], value.as_str());
    assert!(lock_records(&env, "suspend").is_empty());

    // logind announcing the resume (false) does nothing either.
    rt.block_on(prepare_for_sleep(&logind, false));
    std::thread::sleep(Duration::from_millis(500));
    expect(&env.send(read("t")), "success", None);

    // With "lock_on_suspend": false (adopted with the passphrase) a suspend leaves it unlocked.
    set_setting(&env, &pass, "lock_on_suspend", json!(false));
    rt.block_on(prepare_for_sleep(&logind, true));
    wait_for(20, "the suspend to be let pass", || {
        d.stderr()
            .contains("the vault stays unlocked")
            .then_some(())
    });
    expect(&env.send(read("t")), "success", None);
    set_setting(&env, &pass, "lock_on_suspend", json!(true));

    // logind announces a suspend: locked, refused vault_locked, audited with the reason.
    rt.block_on(prepare_for_sleep(&logind, true));
    wait_for(20, "the vault to lock on suspend", || {
        let r = env.send(read("t"));
        (r["reason"] == "vault_locked").then_some(())
    });
    let locks = lock_records(&env, "suspend");
    assert_eq!(locks.len(), 1, "{locks:?}");
    assert_eq!(locks[0]["source"], "daemon");
    assert!(
        locks[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("suspend")),
        "{:?}",
        locks[0]
    );
}

#[test]
fn without_a_system_bus_the_daemon_says_so_once_and_serves() {
    let (env, pass) = vault_with_secret("v");
    let mut extra = with_pass(&pass);
    extra.push((
        "DBUS_SYSTEM_BUS_ADDRESS".into(),
        format!("unix:path={}", env.root.join("no-bus").display()).into(),
    ));
    let d = env.start_env(&extra);
    let line = wait_for(20, "the line about suspends", || {
        let err = d.stderr();
        err.lines()
            .find(|l| l.contains("not locked on suspend"))
            .map(String::from)
    });
    assert!(line.contains("no system bus"), "{line}");
    assert_eq!(d.stderr().matches("not locked on suspend").count(), 1);
    expect(&env.send(read("t")), "success", None);
}

#[test]
fn a_vault_put_back_older_while_the_daemon_was_stopped_is_refused_at_unlock() {
    let first = format!("first-{}", nonce());
    let (env, pass) = vault_with_secret(&first);
    let vault = env.root.join("data/keychain-auth/vault");
    // The attacker's copy, taken while the owner's secret was `first`.
    let old = std::fs::read(&vault).unwrap();
    let second = format!("second-{}", nonce());
    {
        let mut d = env.start_env(&with_pass(&pass));
        let line = json!({"type":"REQUEST","action":"write","service":"aws",
            "targets":["t"],"values":[second]});
        expect(&env.send(line), "success", None);
        d.stop_with(nix::sys::signal::Signal::SIGTERM);
    }
    // While no daemon runs, a program running as the user puts the old copy back.
    env.write_private(&vault, &old);

    // doctor says so without the passphrase.
    let out = env.cli(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("older copy of the vault may have been put back"),
        "{text}"
    );
    // A start with the passphrase file refuses to serve it, saying why.
    let out = env
        .command(testkit::daemon_bin())
        .envs(with_pass(&pass))
        .arg("start")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("older copy of the vault was put back") && err.contains("generation"),
        "{err}"
    );
    // A command that opens the vault itself (no daemon) refuses it too.
    let out = env.cli_env(&with_pass(&pass), &["secret", "get", "aws", "t"]);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&first));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("older copy"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Started locked, `unlock` with the right passphrase is refused vault_rollback; nothing
    // is served.
    let mut d = env.start();
    let out = env.cli_env(&with_pass(&pass), &["unlock"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("older copy of the vault was put back"),
        "{err}"
    );
    let r = env.send(read("t"));
    expect(&r, "denied", Some("vault_locked"));
    assert!(!r.to_string().contains(&first));
    assert!(d.stderr().contains("older copy of the vault was put back"));
    // Positive control: the owner restored it on purpose and says so (to the same daemon).
    let out = env.cli_env(&with_pass(&pass), &["unlock", "--accept-rollback"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = env.send(read("t"));
    assert_eq!(r["results"][0]["value"], first.as_str());
    let accepted: Vec<Value> = env
        .audit_records()
        .into_iter()
        .filter(|r| r["action"] == "unlock" && r["reason"] == "vault_rollback_accepted")
        .collect();
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    // The refused attempt is in the log too, now that it can be written.
    assert!(
        env.audit_records()
            .iter()
            .any(|r| r["action"] == "unlock" && r["reason"] == "vault_rollback"),
    );
    d.stop_with(nix::sys::signal::Signal::SIGTERM);
    // From then on it opens as any vault, and the chain verifies.
    let _d = env.start_env(&with_pass(&pass));
    expect(&env.send(read("t")), "success", None);
    let out = env.cli_env(&with_pass(&pass), &["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The dashboard's first line.
fn title(tmux: &Dashboard) -> String {
    tmux.capture().lines().next().unwrap_or("").to_string()
}

#[test]
fn the_dashboard_title_says_a_plain_store_is_readable_by_your_programs() {
    if !testkit::tools_available(&["tmux"], "tmux") {
        return;
    }
    let env = Sandbox::new();
    let tmux = Dashboard::start(&env, &["tui", "--embed"]);
    tmux.wait_screen("the warning in the title", |s| {
        s.lines()
            .next()
            .is_some_and(|l| l.contains("EMBEDDED") && l.contains("readable by your programs"))
    });
    tmux.keys(&["q"]);
}

#[test]
fn the_dashboard_title_follows_the_vaults_lock_live() {
    if !testkit::tools_available(&["tmux"], "tmux") {
        return;
    }
    let (env, pass) = vault_with_secret("v");
    // Connected to a daemon started unlocked.
    let d = env.start_env(&with_pass(&pass));
    let tmux = Dashboard::start(&env, &["tui", "--connect"]);
    tmux.wait_screen("vault unlocked in the title", |s| {
        s.lines()
            .next()
            .is_some_and(|l| l.contains("vault unlocked"))
    });
    assert!(!title(&tmux).contains("readable"), "{}", title(&tmux));
    env.cli_ok(&["lock"]);
    tmux.wait_screen("vault locked in the title", |s| {
        s.lines().next().is_some_and(|l| l.contains("vault locked"))
    });
    let out = env.cli_env(&with_pass(&pass), &["unlock"]);
    assert!(out.status.success());
    tmux.wait_screen("vault unlocked again", |s| {
        s.lines()
            .next()
            .is_some_and(|l| l.contains("vault unlocked"))
    });
    tmux.keys(&["q"]);
    drop(tmux);
    drop(d);
    // Embedded: it starts locked, and an unlock sent to it shows at once.
    let tmux = Dashboard::start(&env, &["tui", "--embed"]);
    tmux.wait_screen("vault locked in the embedded title", |s| {
        s.lines()
            .next()
            .is_some_and(|l| l.contains("EMBEDDED") && l.contains("vault locked"))
    });
    let out = env.cli_env(&with_pass(&pass), &["unlock"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tmux.wait_screen("vault unlocked in the embedded title", |s| {
        s.lines()
            .next()
            .is_some_and(|l| l.contains("vault unlocked"))
    });
    tmux.keys(&["q"]);
}

#[test]
fn with_the_secret_service_store_start_and_doctor_say_every_program_can_read_it() {
    let Some(s) = testkit::KeyringSandbox::start() else {
        return;
    };
    let d = s.sandbox.start();
    assert_eq!(d.status()["backend"], "keyring");
    assert!(d.status().get("locked").is_none(), "{}", d.status());
    let err = d.stderr();
    let first = err.lines().next().unwrap_or("");
    assert!(
        first.contains("any program running as you can read every Secret Service item")
            && first.contains("keychain-auth init"),
        "{err}"
    );
    let out = s.sandbox.cli(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("exposure")
            && text.contains("any program running as you can read every Secret Service item"),
        "{text}"
    );
}
