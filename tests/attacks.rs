//! The identity attacks of issue 8, performed against the real daemon: each small C program in
//! `tests/attacks/` is compiled by the test and does what a hostile same-user process would.
//! Before the fix each of them read the secret; now each must be refused and audited.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use testkit::{Sandbox, expect, request};

const SECRET: &str = "s3cret-attack-canary";

/// Compiles `sources` (under tests/attacks) into `out` with `cc`; `None` (and a SKIPPED line)
/// when there is no C compiler, which fails the test under CI.
fn compile(out: &Path, sources: &[&str], flags: &[&str]) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/attacks");
    let mut cmd = Command::new("cc");
    cmd.args(["-O1", "-Wall", "-o"]).arg(out);
    for s in sources {
        cmd.arg(dir.join(s));
    }
    cmd.args(flags);
    match cmd.output() {
        Ok(o) if o.status.success() => Some(out.to_path_buf()),
        Ok(o) => panic!("cc failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI needs a C compiler for the attack tests: {e}"
            );
            eprintln!("SKIPPED: no C compiler ({e})");
            None
        }
    }
}

/// A daemon with a secret in service `aws`, written by a registered writer, and a registered
/// reader client that may read it.
fn broker_with_secret() -> (Sandbox, testkit::Daemon, PathBuf) {
    let env = Sandbox::new();
    let d = env.start();
    let writer = env.registered_client("writer", &["--write", "aws"]);
    env.write_ok(&writer, "aws", &[("prod", SECRET)]);
    let reader = env.registered_client("reader", &["--read", "aws"]);
    let r = env.run_client(&reader, &[&request("read", "aws", &["prod"])]);
    expect(&r[0], "success", None);
    (env, d, reader)
}

fn first_json_line(bytes: &[u8]) -> Value {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().next().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("no response line in {text:?}: {e}"))
}

fn no_secret(v: &Value) {
    assert!(!v.to_string().contains(SECRET), "the secret leaked: {v}");
}

#[test]
fn exe_masquerade_in_a_user_namespace_is_refused() {
    let (env, _d, reader) = broker_with_secret();
    let bin = env.root.join("bin");
    let Some(lib) = compile(
        &bin.join("libmasquerade.so"),
        &["masquerade_lib.c"],
        &["-shared", "-fPIC", "-Wl,-z,now"],
    ) else {
        return;
    };
    let rpath = format!("-Wl,-rpath,{}", bin.display());
    let Some(masq) = compile(
        &bin.join("masquerade"),
        &["masquerade_main.c"],
        &[lib.to_str().unwrap(), &rpath, "-Wl,-z,now"],
    ) else {
        return;
    };
    let out = env
        .command(&masq)
        .arg(&env.socket)
        .arg(&reader)
        .arg(request("read", "aws", &["prod"]))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("unshare") || err.contains("PR_SET_MM_MAP") {
        // No user namespaces or no checkpoint/restore here: the forgery itself is impossible.
        assert!(
            std::env::var_os("CI").is_none() || !err.contains("unshare"),
            "{err}"
        );
        eprintln!("SKIPPED: this kernel does not allow the masquerade: {err}");
        return;
    }
    assert!(
        err.contains(&format!("now {}", reader.display())),
        "the forgery worked as the attack intends: {err}"
    );
    let resp = first_json_line(&out.stdout);
    no_secret(&resp);
    let msg = expect(&resp, "denied", Some("unregistered_binary"));
    assert!(msg.contains("another user namespace"), "{msg}");
    let rec = testkit::wait_for(5, "audit record of the refusal", || {
        env.audit_records().into_iter().rev().find(|r| {
            r["status"] == "denied"
                && r["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("another user namespace"))
        })
    });
    assert_eq!(rec["path"], reader.to_str().unwrap(), "{rec}");
    assert!(
        env.pending_entries().is_empty(),
        "a forged identity is not offered for approval"
    );
}

#[test]
fn an_approved_binary_inside_a_user_namespace_is_refused() {
    let (env, _d, reader) = broker_with_secret();
    let out = env
        .command("unshare")
        .args(["--user", "--"])
        .arg(&reader)
        .arg(request("read", "aws", &["prod"]))
        .output()
        .unwrap();
    if !out.status.success() && out.stdout.is_empty() {
        eprintln!(
            "SKIPPED: cannot create a user namespace here: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let resp = first_json_line(&out.stdout);
    no_secret(&resp);
    let msg = expect(&resp, "denied", Some("unregistered_binary"));
    assert!(msg.contains("another user namespace"), "{msg}");
}

#[test]
fn a_child_keeping_the_socket_after_its_parent_execs_an_approved_binary_is_refused() {
    let (env, _d, reader) = broker_with_secret();
    let Some(race) = compile(&env.root.join("bin/exec_race"), &["exec_race.c"], &[]) else {
        return;
    };
    for round in 0..10 {
        // The parent becomes the approved reader (which waits on its standard input); the
        // child, still the unapproved program, writes on the connection the parent opened.
        let mut child = env
            .command(&race)
            .arg(&env.socket)
            .arg(&reader)
            .arg(request("read", "aws", &["prod"]))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while std::io::Read::read(&mut stdout, &mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        drop(stdin); // lets the approved reader finish
        let _ = child.wait();
        let resp = first_json_line(&line);
        no_secret(&resp);
        let msg = expect(&resp, "denied", Some("unregistered_binary"));
        assert!(
            msg.contains("exec_race"),
            "round {round}: answered as the writer, not the connector: {msg}"
        );
    }
}

#[test]
fn a_process_that_execs_an_approved_program_after_connecting_is_refused() {
    let (env, _d, _reader) = broker_with_secret();
    let Some(prog) = compile(
        &env.root.join("bin/exec_in_place"),
        &["exec_in_place.c"],
        &[],
    ) else {
        return;
    };
    // An approved shell: it really writes the request, on a connection an unapproved program
    // opened and handed over by exec.
    let sh = env.copy_unique("/bin/sh", "approved-sh");
    env.register(&sh, &["--read", "aws"]);
    let out = env
        .command(&prog)
        .arg(&env.socket)
        .arg(&sh)
        .arg(request("read", "aws", &["prod"]))
        .output()
        .unwrap();
    let resp = first_json_line(&out.stdout);
    no_secret(&resp);
    let msg = expect(&resp, "denied", Some("unregistered_binary"));
    assert!(msg.contains("after it connected"), "{msg}");
}

#[test]
fn ld_preload_and_interpreter_variables_are_refused_unless_allowed() {
    let (env, _d, reader) = broker_with_secret();
    let Some(lib) = compile(
        &env.root.join("bin/inject.so"),
        &["inject.c"],
        &["-shared", "-fPIC"],
    ) else {
        return;
    };
    let read = request("read", "aws", &["prod"]);
    for (var, value) in [
        ("LD_PRELOAD", lib.to_str().unwrap()),
        ("LD_AUDIT", lib.to_str().unwrap()),
        ("PYTHONPATH", "/tmp/evil"),
        ("BASH_ENV", "/tmp/evil.sh"),
    ] {
        let out = env
            .command(&reader)
            .env(var, value)
            .arg(&read)
            .output()
            .unwrap();
        let resp = first_json_line(&out.stdout);
        no_secret(&resp);
        let msg = expect(&resp, "denied", Some("injected_environment"));
        assert!(msg.contains(var), "{var}: {msg}");
        assert!(!msg.contains(value), "the value is not echoed: {msg}");
    }
    let rec = env
        .audit_records()
        .into_iter()
        .rev()
        .find(|r| r["reason"] == "injected_environment")
        .expect("audited");
    assert_eq!(rec["status"], "denied");
    // Allowed for this binary: served.
    env.cli_ok(&[
        "grant",
        reader.to_str().unwrap(),
        "--allow-env",
        "LD_PRELOAD",
    ]);
    let out = env
        .command(&reader)
        .env("LD_PRELOAD", &lib)
        .arg(&read)
        .output()
        .unwrap();
    let resp = first_json_line(&out.stdout);
    expect(&resp, "success", None);
    // A name the broker does not check is refused by the CLI rather than silently stored.
    let err = env.cli_err(&["grant", reader.to_str().unwrap(), "--allow-env", "HOME"]);
    assert!(err.contains("not an injection variable"), "{err}");
}

#[test]
fn a_traced_caller_is_refused() {
    let (env, _d, reader) = broker_with_secret();
    let Some(tracer) = compile(&env.root.join("bin/tracer"), &["tracer.c"], &[]) else {
        return;
    };
    let out = env
        .command(&tracer)
        .arg(&reader)
        .arg(request("read", "aws", &["prod"]))
        .output()
        .unwrap();
    let resp = first_json_line(&out.stdout);
    no_secret(&resp);
    let msg = expect(&resp, "denied", Some("injected_environment"));
    assert!(msg.contains("traced"), "{msg}");
}

/// A client copy named `name` that asked and was refused: its path and the pending hash.
fn pending_caller(env: &Sandbox, name: &str) -> (std::path::PathBuf, String) {
    let caller = env.client(name);
    let r = env.run_client(&caller, &[&request("read", "aws", &["prod"])]);
    expect(&r[0], "denied", Some("unregistered_binary"));
    let hash = env.pending_entries()[0]["hash"]
        .as_str()
        .unwrap()
        .to_string();
    (caller, hash)
}

#[test]
fn approve_checks_that_the_file_at_the_path_is_the_caller() {
    let env = Sandbox::new();
    let _d = env.start();
    let (caller, hash) = pending_caller(&env, "shown-path");
    // What a caller in another mount namespace achieves: the path it shows holds another file.
    testkit::copy_executable(Path::new("/bin/true"), &caller);
    let err = env.cli_err(&["approve", &hash, "--read", "aws"]);
    assert!(err.contains("is not the binary that asked"), "{err}");
    assert!(env.registered().is_empty(), "nothing was approved");
    assert_eq!(env.pending_entries().len(), 1, "the entry stays for review");
}

#[test]
fn a_fifo_at_a_pending_callers_path_blocks_neither_approve_nor_doctor() {
    let env = Sandbox::new();
    let _d = env.start();
    let (caller, hash) = pending_caller(&env, "vanishing");
    // The caller replaces its file with a FIFO: whoever hashes the path to check it would wait
    // for a writer that never comes (before: `approve` and the dashboard hung).
    std::fs::remove_file(&caller).expect("rm");
    nix::unistd::mkfifo(&caller, nix::sys::stat::Mode::from_bits_truncate(0o700)).expect("fifo");
    let out = env.cli_within(30, &["approve", &hash, "--read", "aws"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a regular file"), "{err}");
    assert!(env.registered().is_empty(), "nothing was approved");
    // A registered binary whose path became a FIFO: doctor reports instead of waiting.
    let tool = env.registered_client("kept", &["--read", "aws"]);
    std::fs::remove_file(&tool).expect("rm");
    nix::unistd::mkfifo(&tool, nix::sys::stat::Mode::from_bits_truncate(0o700)).expect("fifo");
    let out = env.cli_within(30, &["doctor"]);
    assert!(out.status.code().is_some(), "doctor finished");
}

#[test]
fn one_process_holding_many_connections_locks_nobody_out() {
    let (env, _d, reader) = broker_with_secret();
    let Some(holder) = compile(&env.root.join("bin/holder"), &["holder.c"], &[]) else {
        return;
    };
    let hold = |n: usize| {
        let mut c = env
            .command(&holder)
            .arg(&env.socket)
            .arg(n.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = c.stdout.take().unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while std::io::Read::read(&mut out, &mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        assert!(String::from_utf8_lossy(&line).starts_with("held "));
        c
    };
    let read = request("read", "aws", &["prod"]);
    // One process with 600 connections: capped at 64, everyone else still served.
    let mut one = hold(600);
    let st = testkit::status(&env.socket).expect("STATUS answered");
    assert!(st["connections"].as_u64().unwrap() <= 70, "{st}");
    expect(&env.run_client(&reader, &[&read])[0], "success", None);
    let rec = env
        .audit_records()
        .into_iter()
        .find(|r| {
            r["event"] == "connection_refused"
                && r["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("already holds"))
        })
        .expect("the refusals are audited");
    assert_eq!(rec["status"], "error");
    let _ = one.kill();
    let _ = one.wait();
    // Ten processes filling every regular slot: STATUS still answers from the reserve.
    let mut many: Vec<_> = (0..10).map(|_| hold(60)).collect();
    testkit::wait_for(10, "all regular slots taken", || {
        let st = testkit::status(&env.socket)?;
        (st["connections"].as_u64()? >= 511).then_some(())
    });
    let st = testkit::status(&env.socket).expect("STATUS answered from the reserve");
    assert_eq!(st["type"], "STATUS");
    for c in &mut many {
        let _ = c.kill();
        let _ = c.wait();
    }
    testkit::wait_for(10, "slots released", || {
        let st = testkit::status(&env.socket)?;
        (st["connections"].as_u64()? < 10).then_some(())
    });
    expect(&env.run_client(&reader, &[&read])[0], "success", None);
}

#[test]
fn a_program_name_cut_inside_a_character_is_still_identified() {
    // The kernel keeps the first 15 bytes of the name; eight 2-byte characters are cut in two.
    let (env, _d, _reader) = broker_with_secret();
    let client = env.client("éééééééé");
    let r = env.run_client(&client, &[&request("read", "aws", &["prod"])]);
    let msg = expect(&r[0], "denied", Some("unregistered_binary"));
    assert!(
        msg.contains("is not approved"),
        "queued for approval, not refused: {msg}"
    );
    assert_eq!(env.pending_entries().len(), 1);
}
