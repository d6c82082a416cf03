//! The vault against the real daemon: created from the file store (imported, plain copies
//! removed), nothing readable on disk, locked after a restart, unlocked only with the
//! passphrase, widening commands refused without it, and never torn by kill -9.

use nix::sys::signal::Signal;
use serde_json::json;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use testkit::{Sandbox, expect, nonce, run_with_input};

const PASS: &str = "correct horse battery staple";

fn vault_sandbox() -> Sandbox {
    let mut env = Sandbox::new();
    env.extra_env
        .push(("KEYCHAIN_AUTH_VAULT_KDF".into(), "floor".into()));
    env
}

fn pass_file(env: &Sandbox, pass: &str) -> PathBuf {
    let p = env.root.join(format!("pass-{}", nonce()));
    env.write_private(&p, format!("{pass}\n"));
    p
}

fn with_pass(p: &Path) -> Vec<(String, OsString)> {
    vec![("KEYCHAIN_AUTH_PASSPHRASE_FILE".into(), p.into())]
}

fn read(service: &str, target: &str) -> String {
    json!({"type":"REQUEST","action":"read","service":service,"targets":[target]}).to_string()
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else if p.is_file() {
            out.push(p);
        }
    }
}

/// A sandbox with a secret written through the file store, then `init --import --remove-plain`.
fn vault_with_secret(value: &str, target: &str) -> (Sandbox, PathBuf) {
    let env = vault_sandbox();
    env.register_reference_client(&["aws"]);
    {
        let _d = env.start();
        let line = json!({"type":"REQUEST","action":"write","service":"aws",
            "targets":[target],"values":[value]});
        expect(&env.send(line), "success", None);
    }
    assert!(
        std::fs::read_to_string(env.file_store())
            .unwrap()
            .contains(value)
    );
    let pass = pass_file(&env, PASS);
    let out = env.cli_env(&with_pass(&pass), &["init", "--import", "--remove-plain"]);
    assert!(
        out.status.success(),
        "init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (env, pass)
}

#[test]
fn the_vault_serves_with_the_passphrase_and_nothing_on_disk_gives_a_secret_away() {
    let value = format!("AKIA{}", nonce());
    let target = format!("prod-key-{}", nonce());
    let (env, pass) = vault_with_secret(&value, &target);
    let vault = env.root.join("data/keychain-auth/vault");
    assert!(vault.exists());
    // Positive control: started with the passphrase file, the daemon serves the imported item.
    let mut d = env.start_env(&with_pass(&pass));
    let r = env.send(read("aws", &target));
    expect(&r, "success", None);
    assert_eq!(r["results"][0]["value"], value.as_str());
    // Written through the vault now: a second secret.
    let value2 = format!("SECOND{}", nonce());
    let line = json!({"type":"REQUEST","action":"write","service":"aws",
        "targets":["second-target-name"],"values":[value2]});
    expect(&env.send(line), "success", None);
    d.stop_with(Signal::SIGTERM);
    // No file under HOME / XDG holds a value or a target name in plain text (the plain copy
    // was removed by --remove-plain; the audit log names targets, so it is checked apart).
    let mut files = Vec::new();
    files_under(&env.root, &mut files);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&value), "{} holds the value", f.display());
        assert!(!text.contains(&value2), "{} holds the value", f.display());
        let audit = f
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("audit"))
            || f.to_string_lossy().contains("audit-before-vault")
            || f.to_string_lossy().contains("/daemon-");
        if !audit && !f.to_string_lossy().contains("/pass-") {
            assert!(
                !text.contains(&target),
                "{} holds the target name",
                f.display()
            );
        }
    }
}

#[test]
fn restarted_without_the_passphrase_it_is_locked_and_only_unlock_with_it_opens_it() {
    let value = format!("VAL{}", nonce());
    let (env, pass) = vault_with_secret(&value, "t1");
    // Started the way an attacker restarting it would: no passphrase.
    let mut d = env.start();
    let r = env.send(read("aws", "t1"));
    let msg = expect(&r, "denied", Some("vault_locked"));
    assert!(msg.contains("keychain-auth unlock"), "{msg}");
    assert!(!r.to_string().contains(&value));
    // unlock without a terminal and without a passphrase source: refused.
    let err = env.cli_err(&["unlock"]);
    assert!(err.contains("passphrase"), "{err}");
    // A wrong passphrase: refused and audited (written once the vault opens).
    let wrong = pass_file(&env, "not it");
    let out = env.cli_env(&with_pass(&wrong), &["unlock"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));
    expect(&env.send(read("aws", "t1")), "denied", Some("vault_locked"));
    // --passphrase-fd with the right one (from a pipe on descriptor 0).
    let mut cmd = env.command(testkit::daemon_bin());
    cmd.args(["unlock", "--passphrase-fd", "0"]);
    let out = run_with_input(cmd, format!("{PASS}\n").as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = env.send(read("aws", "t1"));
    assert_eq!(r["results"][0]["value"], value.as_str());
    let records = env.audit_records();
    let unlocks: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["event"] == "vault" && r["action"] == "unlock")
        .collect();
    assert!(
        unlocks
            .iter()
            .any(|r| r["status"] == "denied" && r["reason"] == "wrong_passphrase"),
        "{unlocks:?}"
    );
    assert!(unlocks.iter().any(|r| r["status"] == "success"));
    // lock: served nobody again.
    env.cli_ok(&["lock"]);
    expect(&env.send(read("aws", "t1")), "denied", Some("vault_locked"));
    // Killed with SIGKILL and restarted: locked.
    env.cli_env(&with_pass(&pass), &["unlock"]);
    d.stop_with(Signal::SIGKILL);
    let _d = env.start();
    expect(&env.send(read("aws", "t1")), "denied", Some("vault_locked"));
    // The audit chain is verified under the vault's key (only with the passphrase).
    let out = env.cli_env(&with_pass(&pass), &["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn widening_commands_need_the_passphrase_and_work_with_it() {
    let (env, pass) = vault_with_secret("v", "t");
    let c = env.client("newcomer");
    let config_before = std::fs::read(env.config()).unwrap();
    let _d = env.start_env(&with_pass(&pass));
    // The newcomer is refused and queued.
    expect(
        &env.run_client(&c, &[&read("aws", "t")])[0],
        "denied",
        Some("unregistered_binary"),
    );
    let hash = env.pending_entries()[0]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    let cpath = c.to_str().unwrap();
    // Same user, no terminal, no passphrase: every widening command is refused.
    for args in [
        vec!["approve", hash.as_str(), "--read", "aws"],
        vec!["register", cpath, "--read", "aws"],
        vec!["grant", "reference", "--read", "aws"],
        vec!["upgrade", cpath],
        vec!["policy", "accept", "--yes"],
    ] {
        let err = env.cli_err(&args);
        assert!(err.contains("passphrase"), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read(env.config()).unwrap(), config_before);
    expect(
        &env.run_client(&c, &[&read("aws", "t")])[0],
        "denied",
        Some("unregistered_binary"),
    );
    // A hand edit of config.json (no key to seal it) is not served.
    let mut cfg: serde_json::Value = serde_json::from_slice(&config_before).unwrap();
    cfg["registered_binaries"][0]["allowed_read_services"] = json!(["aws", "other"]);
    cfg["registered_binaries"].as_array_mut().unwrap().push(
        json!({"path": cpath, "hash": hash, "registered_at": "2026-01-01T00:00:00Z",
            "allowed_read_services": ["aws"], "allowed_write_services": [], "can_search": false}),
    );
    env.write_private(&env.config(), serde_json::to_vec(&cfg).unwrap());
    let r = env.run_client(&c, &[&read("aws", "t")]);
    assert_ne!(r[0]["status"], "success", "{r:?}");
    env.write_private(&env.config(), &config_before);
    // Positive control: with the passphrase, approve works and the read is served.
    let out = env.cli_env(&with_pass(&pass), &["approve", &hash, "--read", "aws"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = env.run_client(&c, &[&read("aws", "t")]);
    expect(&r[0], "success", None);
    // Narrowing never needs the passphrase: the running daemon carries it out with its key.
    let out = env.cli(&["revoke", &hash, "--read", "aws"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = env.run_client(&c, &[&read("aws", "t")]);
    expect(&r[0], "denied", Some("service_not_allowed"));
    let out = env.cli(&["unregister", &hash]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kill_9_during_writes_never_leaves_a_vault_that_does_not_open() {
    let (env, pass) = vault_with_secret("v0", "t0");
    for round in 0..6 {
        let mut d = env.start_env(&with_pass(&pass));
        // A writer hammering the vault while the daemon is killed mid-stream.
        let lines: Vec<String> = (0..40)
            .map(|i| {
                json!({"type":"REQUEST","action":"write","service":"aws",
                    "targets":[format!("k{round}-{i}")],"values":[format!("v{i}")]})
                .to_string()
            })
            .collect();
        let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let mut child = env
            .command(testkit::client_bin())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            let _ = stdin.write_all(input.as_bytes());
        }
        std::thread::sleep(std::time::Duration::from_millis(20 + 15 * round));
        d.stop_with(Signal::SIGKILL);
        let _ = child.wait();
        // The vault opens (whatever generation it reached) and still holds the first item.
        let _d = env.start_env(&with_pass(&pass));
        let r = env.send(read("aws", "t0"));
        expect(&r, "success", None);
    }
}

/// What a same-uid process gets from another's memory: `open /proc/PID/mem`, read
/// `/proc/PID/environ`, `ptrace(PTRACE_ATTACH)`; one word each: `ok` or the error name.
const PEEK: &str = r#"
import ctypes, errno, os, sys, time
pid = int(sys.argv[1])
out = []
for path in ("/proc/%d/mem" % pid, "/proc/%d/environ" % pid):
    try:
        # The permission check is at open (reading mem at offset 0 would be EIO anyway).
        with open(path, "rb") as f:
            if path.endswith("environ"):
                f.read(1)
        out.append("ok")
    except OSError as e:
        out.append(errno.errorcode.get(e.errno, str(e.errno)))
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
if libc.ptrace(16, pid, None, None) == 0:
    os.waitpid(pid, 0)
    libc.ptrace(17, pid, None, None)
    out.append("ok")
else:
    out.append(errno.errorcode.get(ctypes.get_errno(), "?"))
print(" ".join(out))
"#;

#[test]
fn the_unlocked_daemon_refuses_proc_mem_and_ptrace_to_its_own_uid() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run the daemon and the attacker as uid 65534 (setpriv)");
        return;
    }
    let env = vault_sandbox();
    let pass = pass_file(&env, PASS);
    give_to_nobody(&env);
    let as_user = |program: &str| as_nobody(&env, program);
    let out = as_user(testkit::daemon_bin())
        .envs(with_pass(&pass))
        .arg("init")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut daemon = as_user(testkit::daemon_bin())
        .envs(with_pass(&pass))
        .arg("start")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    testkit::wait_for(30, "the daemon's socket", || {
        env.socket.exists().then_some(())
    });
    // A process of the same uid that is not protected: the control, which the attacker can read.
    let mut sleeper = as_user("/bin/sleep").arg("30").spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let peek = |pid: u32| {
        let out = as_user("/usr/bin/python3")
            .args(["-c", PEEK, &pid.to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let control = peek(sleeper.id());
    let attack = peek(daemon.id());
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        Signal::SIGTERM,
    );
    let _ = daemon.wait();
    assert_eq!(control, "ok ok ok", "the control: same uid, not protected");
    assert_eq!(attack, "EACCES EACCES EPERM", "the unlocked daemon");
}

/// The unprivileged uid the daemon and the attacker run as where uid matters.
const NOBODY: u32 = 65534;

/// Gives the sandbox's whole tree to [`NOBODY`] (the daemon and its files are that user's).
fn give_to_nobody(env: &Sandbox) {
    let mut all = vec![env.root.clone()];
    files_under(&env.root, &mut all);
    for d in ["home", "config", "data", "cache", "run", "bin"] {
        all.push(env.root.join(d));
    }
    for p in all.iter().filter(|p| p.exists()) {
        nix::unistd::chown(
            p,
            Some(nix::unistd::Uid::from_raw(NOBODY)),
            Some(nix::unistd::Gid::from_raw(NOBODY)),
        )
        .unwrap();
    }
}

/// `program` run as [`NOBODY`] in the sandbox's environment.
fn as_nobody(env: &Sandbox, program: &str) -> std::process::Command {
    let mut c = env.command("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        program,
    ]);
    c
}

#[test]
fn as_an_unprivileged_user_same_uid_code_without_the_passphrase_cannot_widen_or_read() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run the daemon and the attacker as uid 65534 (setpriv)");
        return;
    }
    let env = vault_sandbox();
    let pass = pass_file(&env, PASS);
    let newcomer = env.client("newcomer");
    let backup = env.root.join("backup.age");
    give_to_nobody(&env);
    let ka = testkit::daemon_bin();
    let run = |cmd: &mut std::process::Command, input: &str| {
        run_with_input(
            std::mem::replace(cmd, std::process::Command::new("true")),
            input.as_bytes(),
        )
    };
    let out = run(as_nobody(&env, ka).envs(with_pass(&pass)).arg("init"), "");
    assert!(
        out.status.success(),
        "init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value = format!("nobody-{}", nonce());
    let out = run(
        as_nobody(&env, ka)
            .envs(with_pass(&pass))
            .args(["secret", "put", "aws", "t"]),
        &format!("{value}\n"),
    );
    assert!(
        out.status.success(),
        "put: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut daemon = as_nobody(&env, ka)
        .envs(with_pass(&pass))
        .arg("start")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    testkit::wait_for(30, "the daemon's socket", || {
        env.socket.exists().then_some(())
    });
    let read_as_newcomer = || {
        let out = as_nobody(&env, newcomer.to_str().unwrap())
            .arg(read("aws", "t"))
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(
            out.stdout.split(|b| *b == b'\n').next().unwrap_or_default(),
        )
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
    };
    expect(&read_as_newcomer(), "denied", Some("unregistered_binary"));
    let pending = run(as_nobody(&env, ka).args(["list-pending", "--json"]), "");
    let pending: serde_json::Value = serde_json::from_slice(&pending.stdout).unwrap();
    let hash = pending[0]["hash"].as_str().unwrap().to_string();
    let config_before = std::fs::read(env.config()).ok();
    // The attacker: uid 65534 like the daemon, no terminal, no passphrase.
    let cpath = newcomer.to_str().unwrap();
    let f = backup.to_str().unwrap();
    let recipient = age::x25519::Identity::generate().to_public().to_string();
    for args in [
        vec!["approve", hash.as_str(), "--read", "aws"],
        vec!["register", cpath, "--read", "aws"],
        vec!["grant", cpath, "--read", "aws"],
        vec!["policy", "accept", "--yes"],
        vec!["secret", "get", "aws", "t"],
        vec!["export", "--age", f, "--recipient", &recipient],
    ] {
        let out = run(as_nobody(&env, ka).args(&args), "");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded as same-uid code");
        assert!(err.contains("passphrase"), "{args:?}: {err}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains(&value),
            "{args:?} printed the secret"
        );
    }
    assert_eq!(
        std::fs::read(env.config()).ok(),
        config_before,
        "config.json unchanged"
    );
    assert!(!backup.exists(), "no backup written");
    expect(&read_as_newcomer(), "denied", Some("unregistered_binary"));
    // The owner, same uid, with the passphrase: the approval is carried out by the daemon and
    // the newcomer is served.
    let out = run(
        as_nobody(&env, ka)
            .envs(with_pass(&pass))
            .args(["approve", &hash, "--read", "aws"]),
        "",
    );
    assert!(
        out.status.success(),
        "approve: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = read_as_newcomer();
    expect(&r, "success", None);
    assert_eq!(r["results"][0]["value"], value.as_str(), "{r}");
    // The owner's own command, same uid, with the passphrase, while the daemon runs.
    let out = run(
        as_nobody(&env, ka)
            .envs(with_pass(&pass))
            .args(["secret", "get", "aws", "t"]),
        "",
    );
    assert!(
        out.status.success(),
        "secret get: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), value);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        Signal::SIGTERM,
    );
    let _ = daemon.wait();
}

/// Re-chains the audit log's last record after changing one word of it, with the key given in
/// hex, and re-seals the state file the same way: what same-user code does with a key it found.
const RECHAIN: &str = r#"
import hashlib, hmac, json, sys
log, key = sys.argv[1], bytes.fromhex(sys.argv[2])
lines = open(log, "rb").read().split(b"\n")[:-1]
def mac_of(line):
    at = line.rindex(b',"mac":"')
    return line[:at], bytes.fromhex(line[at + 8:-2].decode())
_, prev = mac_of(lines[-2])
head, _ = mac_of(lines[-1])
assert b'"source":"daemon"' in head
head = head.replace(b'"source":"daemon"', b'"source":"DAEMON"', 1)
new = hmac.new(key, prev + head + b"}", hashlib.sha256).hexdigest()
lines[-1] = head + b',"mac":"' + new.encode() + b'"}'
open(log, "wb").write(b"\n".join(lines) + b"\n")
state = log[:-len("audit.log")] + "audit.state"
raw = open(state, "rb").read()
s = json.loads(raw)
s["chain"] = new
text = "keychain-auth audit state v1|%d|%s|%d|%d|%d" % (s["seq"], s["chain"], s["dev"], s["ino"], s["end"])
s["mac"] = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
out = json.dumps(s, separators=(",", ":")).encode()
open(state, "wb").write(out + b" " * (len(raw) - 1 - len(out)) + b"\n")
print("rechained")
"#;

fn plain_audit_key(env: &Sandbox) -> String {
    let store: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.file_store()).unwrap()).unwrap();
    store["items"]["keychain-auth.internal"]["audit-key"]["value"]
        .as_str()
        .expect("the plain store's audit key")
        .to_string()
}

fn rechain(env: &Sandbox, key: &str) {
    let out = env
        .command("/usr/bin/python3")
        .args(["-c", RECHAIN, env.audit().to_str().unwrap(), key])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("rechained"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_log_rechained_with_any_key_on_disk_is_found_once_a_vault_holds_the_key() {
    // The control: with the plain file store, the key is on disk and the forgery verifies.
    let plain = vault_sandbox();
    plain.register_reference_client(&["aws"]);
    drop(plain.start());
    rechain(&plain, &plain_audit_key(&plain));
    let out = plain.cli(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "the forgery passes with the plain store's key: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // With the vault: the only key on disk is the old plain one, and it no longer chains.
    let (env, pass) = vault_with_secret("v", "t");
    drop(env.start_env(&with_pass(&pass)));
    let out = env.cli_env(&with_pass(&pass), &["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    rechain(&env, &plain_audit_key(&env));
    let out = env.cli_env(&with_pass(&pass), &["audit", "verify"]);
    assert!(!out.status.success(), "the forgery is found");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NOT verified"), "{err}");
    // And without the passphrase there is no key to check (or forge) with at all.
    let err = env.cli_err(&["audit", "verify"]);
    assert!(err.contains("passphrase"), "{err}");
}

#[test]
fn config_sealed_by_a_keychain_auth_that_does_not_see_the_vault_is_not_served() {
    let (env, pass) = vault_with_secret("v", "t");
    let _d = env.start_env(&with_pass(&pass));
    let c = env.client("forger");
    expect(
        &env.run_client(&c, &[&read("aws", "t")])[0],
        "denied",
        Some("unregistered_binary"),
    );
    let hash = env.pending_entries()[0]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    // Same-user code runs keychain-auth itself with its data directory elsewhere, so it finds
    // no vault and asks for no passphrase. The running daemon makes the change, and it checks
    // presence itself: refused, nothing changed.
    let elsewhere = env.root.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    testkit::set_mode(&elsewhere, 0o700);
    let blind = [("XDG_DATA_HOME".to_string(), OsString::from(&elsewhere))];
    let out = env.cli_env(&blind, &["approve", hash.as_str(), "--read", "aws"]);
    assert!(!out.status.success(), "approve was carried out");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs the vault passphrase"), "{err}");
    // policy accept is reviewed by the daemon, with the vault's key: config.json matches its
    // seal, so there is nothing to adopt and nothing changes.
    let out = env.cli_env(&blind, &["policy", "accept", "--yes"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing to accept"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !std::fs::read_to_string(env.config())
            .unwrap()
            .contains(&hash)
    );
    expect(
        &env.run_client(&c, &[&read("aws", "t")])[0],
        "denied",
        Some("unregistered_binary"),
    );
    // It also hides from the daemon (another socket): it then changes config.json itself,
    // sealed with the plain store's key: accepted, then approved.
    let away = [
        ("XDG_DATA_HOME".to_string(), OsString::from(&elsewhere)),
        (
            "KEYCHAIN_AUTH_SOCKET".to_string(),
            OsString::from(elsewhere.join("no.sock")),
        ),
    ];
    let out = env.cli_env(&away, &["policy", "accept", "--yes"]);
    let out2 = env.cli_env(&away, &["approve", &hash, "--read", "aws"]);
    assert!(
        out2.status.success(),
        "the forger's approve wrote config.json: {} / {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out2.stderr)
    );
    assert!(
        std::fs::read_to_string(env.config())
            .unwrap()
            .contains(&hash)
    );
    // The daemon checks the seal with the vault's key: the forged entry is not served.
    let r = env.run_client(&c, &[&read("aws", "t")]);
    assert_ne!(r[0]["status"], "success", "{r:?}");
    // The owner adopts it knowingly (with the passphrase): then it is served.
    let out = env.cli_env(&with_pass(&pass), &["policy", "accept", "--yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    expect(
        &env.run_client(&c, &[&read("aws", "t")])[0],
        "success",
        None,
    );
}

fn cli_input(
    env: &Sandbox,
    extra: &[(String, OsString)],
    args: &[&str],
    input: &str,
) -> std::process::Output {
    let mut cmd = env.command(testkit::daemon_bin());
    cmd.envs(extra.iter().cloned()).args(args);
    run_with_input(cmd, input.as_bytes())
}

#[test]
fn the_owners_commands_need_the_passphrase_and_are_audited_as_the_owner() {
    let (env, pass) = vault_with_secret("first-value", "t");
    let _d = env.start_env(&with_pass(&pass));
    let p = with_pass(&pass);
    // Same-user code without the passphrase: nothing read, nothing stored, nothing listed.
    for args in [
        vec!["secret", "get", "aws", "t"],
        vec!["secret", "ls"],
        vec!["secret", "rm", "aws", "t"],
    ] {
        let out = env.cli(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("first-value"));
        assert!(String::from_utf8_lossy(&out.stderr).contains("passphrase"));
    }
    let out = cli_input(&env, &[], &["secret", "put", "aws", "t"], "attacker\n");
    assert!(!out.status.success());
    // The owner: put (standard input), get, ls (no values), rm.
    let value = format!("owner-{}", nonce());
    let out = cli_input(
        &env,
        &p,
        &["secret", "put", "npm", "registry-token"],
        &format!("{value}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env.cli_env(&p, &["secret", "get", "npm", "registry-token"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{value}\n"));
    let out = env.cli_env(&p, &["secret", "get", "aws", "t"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "first-value\n");
    let ls = String::from_utf8_lossy(&env.cli_env(&p, &["secret", "ls"]).stdout).into_owned();
    assert!(
        ls.contains("npm  registry-token") && ls.contains("aws  t"),
        "{ls}"
    );
    assert!(!ls.contains(&value) && !ls.contains("first-value"), "{ls}");
    // Empty values only when asked for.
    let out = cli_input(&env, &p, &["secret", "put", "npm", "empty"], "\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty value is refused"));
    let out = cli_input(
        &env,
        &p,
        &["secret", "put", "npm", "empty", "--allow-empty"],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The running daemon serves what the owner stored (an approved reader of npm).
    let reader = env.client("npm-reader");
    let out = env.cli_env(&p, &["register", reader.to_str().unwrap(), "--read", "npm"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = env.run_client(&reader, &[&read("npm", "registry-token")]);
    assert_eq!(r[0]["results"][0]["value"], value.as_str(), "{r:?}");
    let out = env.cli_env(&p, &["secret", "rm", "npm", "registry-token"]);
    assert!(out.status.success());
    expect(
        &env.run_client(&reader, &[&read("npm", "registry-token")])[0],
        "error",
        Some("not_found"),
    );
    // aws add: the key pair and a token in one step, where keychain-auth-aws reads them.
    let out = cli_input(
        &env,
        &p,
        &["aws", "add", "prod"],
        "AKIAOWNER\nsecretkey\ntok\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env.cli_env(&p, &["secret", "get", "aws", "prod/secret_access_key"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "secretkey\n");
    // Audited with source owner, values never in the log.
    let owner: Vec<serde_json::Value> = env
        .audit_records()
        .into_iter()
        .filter(|r| r["source"] == "owner")
        .collect();
    for action in ["read", "write", "delete", "search"] {
        assert!(
            owner.iter().any(|r| r["action"] == action),
            "{action}: {owner:?}"
        );
    }
    let log = std::fs::read_to_string(env.audit()).unwrap();
    assert!(!log.contains(&value) && !log.contains("secretkey"));
}

#[test]
fn with_the_plain_file_store_the_owners_commands_need_no_passphrase() {
    let env = Sandbox::new();
    let out = cli_input(&env, &[], &["secret", "put", "svc", "t"], "plain\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&env.cli(&["secret", "get", "svc", "t"]).stdout),
        "plain\n"
    );
    assert!(
        std::fs::read_to_string(env.file_store())
            .unwrap()
            .contains("plain")
    );
}

#[test]
fn start_and_doctor_say_plainly_whether_same_user_code_can_read_the_store() {
    let plain = Sandbox::new();
    let d = plain.start();
    let err = d.stderr();
    assert!(
        err.contains("plain text") && err.contains("keychain-auth init"),
        "{err}"
    );
    let out = plain.cli(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("exposure") && text.contains("any program running as you can read"),
        "{text}"
    );
    drop(d);
    let (env, pass) = vault_with_secret("v", "t");
    let d = env.start_env(&with_pass(&pass));
    let err = d.stderr();
    assert!(!err.contains("plain text"), "{err}");
    assert!(err.contains("the vault is unlocked"), "{err}");
    let out = env.cli(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("exposure"), "{text}");
    assert!(text.contains("cannot read them"), "{text}");
}

#[test]
fn export_age_writes_a_backup_the_age_library_decrypts_and_needs_the_passphrase() {
    let value = format!("exported-{}", nonce());
    let (env, pass) = vault_with_secret(&value, "backup-target");
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let file = env.root.join("backup.age");
    let f = file.to_str().unwrap();
    // Without the passphrase: refused, nothing written.
    let err = env.cli_err(&["export", "--age", f, "--recipient", &recipient]);
    assert!(err.contains("passphrase"), "{err}");
    assert!(!file.exists());
    // The owner.
    let out = env.cli_env(
        &with_pass(&pass),
        &["export", "--age", f, "--recipient", &recipient],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let bytes = std::fs::read(&file).unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains(&value));
    assert!(bytes.starts_with(b"age-encryption.org/v1"));
    // The age library opens it with the identity, and it is the file store's format.
    let decryptor = age::Decryptor::new(&bytes[..]).unwrap();
    let mut reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .unwrap();
    let mut plain = String::new();
    std::io::Read::read_to_string(&mut reader, &mut plain).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&plain).unwrap();
    assert_eq!(
        doc["items"]["aws"]["backup-target"]["value"],
        value.as_str()
    );
    assert!(doc["items"].get("keychain-auth.internal").is_none());
    // Never over an existing file.
    let out = env.cli_env(
        &with_pass(&pass),
        &["export", "--age", f, "--recipient", &recipient],
    );
    assert!(!out.status.success());
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    assert!(
        env.audit_records()
            .iter()
            .any(|r| r["source"] == "owner" && r["action"] == "export" && r["count"] == 1)
    );
}

#[test]
fn wrong_passphrases_given_to_commands_slow_down_and_are_audited() {
    let (env, pass) = vault_with_secret("v", "t");
    let _d = env.start_env(&with_pass(&pass));
    let wrong = pass_file(&env, "guess");
    let mut took = Vec::new();
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let out = env.cli_env(&with_pass(&wrong), &["grant", "x", "--read", "aws"]);
        took.push(t.elapsed());
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));
    }
    // The second and third wait (0.5 s, then 1 s) on top of the key derivation.
    assert!(took[1] >= std::time::Duration::from_millis(500), "{took:?}");
    assert!(took[2] >= std::time::Duration::from_secs(1), "{took:?}");
    let denied: Vec<serde_json::Value> = env
        .audit_records()
        .into_iter()
        .filter(|r| r["action"] == "presence" && r["reason"] == "wrong_passphrase")
        .collect();
    assert_eq!(denied.len(), 3, "{denied:?}");
    assert!(denied[0]["message"].as_str().unwrap().contains("grant"));
    // The right passphrase still works (and resets nothing it should not).
    let out = env.cli_env(&with_pass(&pass), &["list"]);
    assert!(out.status.success());
}

#[test]
fn a_passphrase_file_others_can_read_or_a_link_is_refused() {
    let (env, pass) = vault_with_secret("v", "t");
    let _d = env.start();
    let open = env.root.join("open-pass");
    std::fs::write(&open, format!("{PASS}\n")).unwrap();
    testkit::set_mode(&open, 0o644);
    let link = env.root.join("link-pass");
    std::os::unix::fs::symlink(&pass, &link).unwrap();
    for bad in [&open, &link] {
        let out = env.cli_env(&with_pass(bad), &["unlock"]);
        assert!(!out.status.success(), "{}", bad.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("KEYCHAIN_AUTH_PASSPHRASE_FILE"), "{err}");
    }
    expect(&env.send(read("aws", "t")), "denied", Some("vault_locked"));
    // A start with such a file refuses to start instead of starting unlocked or locked.
    let out = env
        .command(testkit::daemon_bin())
        .envs(with_pass(&open))
        .env("KEYCHAIN_AUTH_SOCKET", env.root.join("other.sock"))
        .arg("start")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("KEYCHAIN_AUTH_PASSPHRASE_FILE"), "{err}");
    // The control: the 0600 file of ours unlocks.
    let out = env.cli_env(&with_pass(&pass), &["unlock"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_brute_force_through_unlock_is_slowed_and_audited() {
    let (env, pass) = vault_with_secret("v", "t");
    let _d = env.start();
    let mut took = Vec::new();
    for i in 0..4 {
        let guess = pass_file(&env, &format!("guess {i}"));
        let t = std::time::Instant::now();
        let out = env.cli_env(&with_pass(&guess), &["unlock"]);
        took.push(t.elapsed());
        assert!(!out.status.success());
    }
    // Nothing, then 0.5 s, 1 s, 2 s before each answer (on top of the KDF).
    assert!(took[1] >= std::time::Duration::from_millis(500), "{took:?}");
    assert!(took[2] >= std::time::Duration::from_secs(1), "{took:?}");
    assert!(took[3] >= std::time::Duration::from_secs(2), "{took:?}");
    expect(&env.send(read("aws", "t")), "denied", Some("vault_locked"));
    // The attempts are in the log once the owner unlocks (the key comes with the vault).
    let out = env.cli_env(&with_pass(&pass), &["unlock"]);
    assert!(out.status.success());
    let wrong = env
        .audit_records()
        .into_iter()
        .filter(|r| r["action"] == "unlock" && r["reason"] == "wrong_passphrase")
        .count();
    assert_eq!(wrong, 4);
}

#[test]
fn at_a_terminal_init_offers_the_import_and_asks_the_passphrase_twice_without_echo() {
    if !testkit::tools_available(&["tmux"], "tmux") {
        return;
    }
    let env = vault_sandbox();
    env.register_reference_client(&["aws"]);
    {
        let _d = env.start();
        let line = json!({"type":"REQUEST","action":"write","service":"aws",
            "targets":["t"],"values":["plain-secret"]});
        expect(&env.send(line), "success", None);
    }
    let typed = "typed pass phrase 42";
    let d = testkit::Dashboard::start(&env, &["init"]);
    // Keep the pane (and what it shows) after init exits.
    let _ = d
        .tmux()
        .args(["set-option", "-t", "dash", "remain-on-exit", "on"])
        .status();
    d.wait_screen("the import offer", |s| s.contains("Import the 1 secret"));
    d.keys(&["y", "Enter"]);
    d.wait_screen("the removal offer", |s| {
        s.contains("remove them from there")
    });
    d.keys(&["y", "Enter"]);
    d.wait_screen("the passphrase prompt", |s| s.contains("Vault passphrase:"));
    d.keys(&["-l", typed]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!d.capture().contains(typed), "echoed:\n{}", d.capture());
    d.keys(&["Enter"]);
    d.wait_screen("the second prompt", |s| s.contains("Again:"));
    d.keys(&["-l", typed]);
    d.keys(&["Enter"]);
    let screen = d.wait_screen("the vault created", |s| s.contains("vault created"));
    assert!(!screen.contains(typed), "{screen}");
    assert!(screen.contains("imported 1 item(s)"), "{screen}");
    // What was typed opens the vault; the plain copy is gone.
    let pass = pass_file(&env, typed);
    let out = env.cli_env(&with_pass(&pass), &["secret", "get", "aws", "t"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "plain-secret\n");
    assert!(
        !std::fs::read_to_string(env.file_store())
            .unwrap()
            .contains("plain-secret")
    );
    // secret put at a terminal: asked twice, never echoed.
    let d = testkit::Dashboard::start(&env, &["secret", "put", "npm", "token"]);
    let _ = d
        .tmux()
        .args(["set-option", "-t", "dash", "remain-on-exit", "on"])
        .status();
    d.wait_screen("the passphrase prompt", |s| s.contains("Vault passphrase:"));
    d.keys(&["-l", typed]);
    d.keys(&["Enter"]);
    d.wait_screen("the value prompt", |s| s.contains("Value:"));
    d.keys(&["-l", "npm-secret-value"]);
    d.keys(&["Enter"]);
    d.wait_screen("the second value prompt", |s| s.contains("Again:"));
    d.keys(&["-l", "npm-secret-value"]);
    d.keys(&["Enter"]);
    let screen = d.wait_screen("stored", |s| s.contains("stored token in npm"));
    assert!(!screen.contains("npm-secret-value"), "{screen}");
    let out = env.cli_env(&with_pass(&pass), &["secret", "get", "npm", "token"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "npm-secret-value\n");
}
