//! Mistakes are refused with one line and a non-zero exit, and change nothing: service names
//! with white space at an end or control characters, upper-case names (unless `--any-case`),
//! unknown `audit --status` / `--action` values, revoking what was never granted, approving twice
//! ("already approved"), `put` of an empty value; and `put` at a terminal asks twice, echo off.

use std::path::{Path, PathBuf};
use std::process::Command;
use testkit::{Sandbox, daemon_bin, nonce, request, write_executable};

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

#[test]
fn service_names_with_edge_white_space_or_control_characters_are_refused() {
    let env = Sandbox::new();
    let tool = env.registered_client("tool", &["--read", "api"]);
    let before = std::fs::read_to_string(env.config()).expect("config");
    for bad in ["api ", " api", "api\t", "a\u{1b}[31mb", "api\n", ""] {
        let err = env.cli_err(&["grant", path_str(&tool), "--read", bad]);
        assert!(
            err.contains("is not a valid service name"),
            "{bad:?}: {err}"
        );
        let err = env.cli_err(&["grant", path_str(&tool), "--write", bad]);
        assert!(
            err.contains("is not a valid service name"),
            "{bad:?}: {err}"
        );
        // The escape sequence is shown, never sent to the terminal.
        assert!(!err.contains('\u{1b}'), "{err:?}");
    }
    let err = env.cli_err(&["grant", path_str(&tool), "--read", "api "]);
    assert!(err.contains("begins or ends with white space"), "{err}");
    let err = env.cli_err(&["grant", path_str(&tool), "--read", "a\tb"]);
    assert!(err.contains("control character"), "{err}");
    // register refuses the same names, and registers nothing.
    let other = env.client("other");
    let err = env.cli_err(&["register", path_str(&other), "--read", "api "]);
    assert!(err.contains("is not a valid service name"), "{err}");
    assert_eq!(
        std::fs::read_to_string(env.config()).expect("config"),
        before
    );
}

#[test]
fn upper_case_service_names_are_refused_unless_any_case() {
    let env = Sandbox::new();
    let tool = env.registered_client("tool", &[]);
    let err = env.cli_err(&["grant", path_str(&tool), "--read", "API"]);
    assert!(err.contains("upper-case"), "{err}");
    assert!(err.contains("use \"api\""), "{err}");
    assert_eq!(
        env.registered()[0]["allowed_read_services"],
        serde_json::json!([])
    );
    let err = env.cli_err(&[
        "register",
        path_str(&env.client("two")),
        "--write",
        "Docker",
    ]);
    assert!(err.contains("use \"docker\""), "{err}");
    // As typed, when asked for.
    env.cli_ok(&["grant", path_str(&tool), "--read", "API", "--any-case"]);
    assert_eq!(
        env.registered()[0]["allowed_read_services"],
        serde_json::json!(["API"])
    );
    // revoke removes it without the flag (it must exist, so a slip cannot pass).
    env.cli_ok(&["revoke", path_str(&tool), "--read", "API"]);
    assert_eq!(
        env.registered()[0]["allowed_read_services"],
        serde_json::json!([])
    );
}

#[test]
fn unknown_audit_status_and_action_values_are_refused() {
    let env = Sandbox::new();
    let _d = env.start();
    let tool = env.registered_client("tool", &["--read", "s"]);
    env.run_client(&tool, &[&request("read", "s", &["k"])]);
    let err = env.cli_err(&["audit", "--status", "failed"]);
    assert!(err.contains("unknown --status \"failed\""), "{err}");
    assert!(err.contains("success, denied, error"), "{err}");
    let err = env.cli_err(&["audit", "--action", "frobnicate"]);
    assert!(err.contains("unknown --action \"frobnicate\""), "{err}");
    // Known values pass, also with no matching record (nothing was deleted yet).
    let out = env.cli_ok(&["audit", "--status", "error", "--action", "delete"]);
    assert!(!out.contains("\"s\""), "{out}");
    let out = env.cli_ok(&["audit", "--action", "read", "--json"]);
    assert!(out.contains("\"action\":\"read\""), "{out}");
    // An event name (not an action) is a filter too.
    let out = env.cli_ok(&["audit", "--action", "policy_change", "--json"]);
    assert!(out.contains("\"action\":\"register\""), "{out}");
}

#[test]
fn revoking_what_was_not_granted_is_refused_and_changes_nothing() {
    let env = Sandbox::new();
    let tool = env.registered_client("tool", &["--read", "s", "--write", "w"]);
    let config = std::fs::read_to_string(env.config()).expect("config");
    let records = env.audit_records().len();
    for (flags, named) in [
        (&["--read", "nonexistent"][..], "read \"nonexistent\""),
        (&["--write", "s"][..], "write \"s\""),
        (&["--read", "w"][..], "read \"w\""),
        (&["--search"][..], "--search"),
        (
            &["--allow-env", "LD_PRELOAD"][..],
            "--allow-env \"LD_PRELOAD\"",
        ),
        // One granted and one not: the whole revoke is refused.
        (&["--read", "s", "--read", "typo"][..], "read \"typo\""),
    ] {
        let mut args = vec!["revoke", path_str(&tool)];
        args.extend_from_slice(flags);
        let err = env.cli_err(&args);
        assert!(
            err.contains(&format!("{named} is not granted to")),
            "{flags:?}: {err}"
        );
        assert!(err.contains("nothing was changed"), "{err}");
    }
    assert_eq!(
        std::fs::read_to_string(env.config()).expect("config"),
        config
    );
    assert_eq!(env.audit_records().len(), records, "nothing audited");
    // What is granted is revoked as before.
    env.cli_ok(&["revoke", path_str(&tool), "--read", "s"]);
    assert_eq!(
        env.registered()[0]["allowed_read_services"],
        serde_json::json!([])
    );
}

#[test]
fn approving_twice_says_already_approved() {
    let env = Sandbox::new();
    let _d = env.start();
    let caller = env.client("caller");
    let r = env.run_client(&caller, &[&request("read", "s", &["k"])]);
    assert_eq!(r[0]["reason"], "unregistered_binary");
    let hash = env.pending_entries()[0]["hash"]
        .as_str()
        .expect("hash")
        .to_string();
    env.cli_ok(&["approve", &hash, "--read", "s"]);
    // The full hash, and a unique prefix of 8 hex digits.
    let prefix = &hash["sha256:".len()..][..8];
    for form in [hash.as_str(), prefix] {
        let err = env.cli_err(&["approve", form, "--read", "s"]);
        assert!(err.contains("is already approved"), "{form}: {err}");
        assert!(err.contains(path_str(&caller)), "{err}");
        assert!(err.contains("keychain-auth grant"), "{err}");
    }
    // A hash nobody has is still "no pending caller".
    let err = env.cli_err(&["approve", "0123456789abcdef"]);
    assert!(err.contains("no pending caller"), "{err}");
}

/// A script registered to read and write `s`, running `body` (with `$KA` the CLI).
fn script(env: &Sandbox, name: &str, body: &str) -> PathBuf {
    let dir = env.root.join("scripts");
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    write_executable(
        &path,
        format!("#!/bin/bash\nKA='{}'\n{body}\n", daemon_bin()).as_bytes(),
    );
    env.register(&path, &["--read", "s", "--write", "s"]);
    path
}

#[test]
fn put_refuses_an_empty_value_unless_allow_empty() {
    let env = Sandbox::new();
    // Refused before anything is sent: no broker is needed to say so.
    for input in ["", "\n", "\r\n"] {
        let out = testkit::run_with_input(
            {
                let mut c = env.command(daemon_bin());
                c.args(["put", "s", "k"]);
                c
            },
            input.as_bytes(),
        );
        assert!(!out.status.success(), "{input:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(
            err.contains("the value is empty; nothing was stored"),
            "{err}"
        );
        assert!(err.contains("--allow-empty"), "{err}");
    }
    let _d = env.start();
    let s = script(
        &env,
        "put-empty.sh",
        "printf '' | \"$KA\" put s k; echo \"refused=$?\"\nprintf '' | \"$KA\" put s k --allow-empty || exit 1\n\"$KA\" get s k | od -An -c",
    );
    let out = env.command(&s).output().expect("script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("refused=1"), "{stdout}");
    // get printed exactly the empty value and its newline.
    assert_eq!(
        stdout.lines().last().map(str::trim),
        Some("\\n"),
        "{stdout}"
    );
}

/// A private tmux server running one command in a 100×20 window.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(env: &Sandbox, cmd: &Path) -> Tmux {
        let t = Tmux {
            socket: format!("ka-put-{}", nonce()),
        };
        let ok = t
            .tmux()
            .env_clear()
            .envs(env.env_vars())
            .env("TERM", "xterm-256color")
            .args(["new-session", "-d", "-s", "put", "-x", "100", "-y", "20"])
            .arg(cmd)
            .status()
            .expect("tmux")
            .success();
        assert!(ok, "tmux new-session");
        t
    }
    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }
    fn screen(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-t", "put"])
            .output()
            .expect("capture");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn wait_for(&self, text: &str) -> String {
        testkit::wait_for(20, text, || {
            let s = self.screen();
            s.contains(text).then_some(s)
        })
    }
    /// Waits until `text` shows `n` times.
    fn wait_count(&self, text: &str, n: usize) -> String {
        testkit::wait_for(20, text, || {
            let s = self.screen();
            (s.matches(text).count() >= n).then_some(s)
        })
    }
    fn type_line(&self, text: &str) {
        for keys in [&["-l", text][..], &["Enter"][..]] {
            let ok = self
                .tmux()
                .args(["send-keys", "-t", "put"])
                .args(keys)
                .status()
                .expect("send-keys")
                .success();
            assert!(ok);
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").status();
    }
}

#[test]
fn put_at_a_terminal_asks_twice_with_echo_off() {
    if !testkit::tools_available(&["tmux"], "tmux") {
        return;
    }
    let env = Sandbox::new();
    let _d = env.start();
    let s = script(
        &env,
        "put-tty.sh",
        "\"$KA\" put s k; echo \"put-exit=$?\"\n\"$KA\" put s k; echo \"second-exit=$?\"\nsleep 60",
    );
    let t = Tmux::start(&env, &s);
    t.wait_for("value for s/k (not shown):");
    t.type_line("hunter2-typed");
    t.wait_for("the same value again:");
    t.type_line("hunter2-typed");
    let screen = t.wait_for("put-exit=");
    assert!(screen.contains("put-exit=0"), "{screen}");
    assert!(
        !screen.contains("hunter2"),
        "the value was echoed: {screen}"
    );
    // Two different entries: nothing stored, one line, non-zero.
    t.wait_count("value for s/k (not shown):", 2);
    t.type_line("first");
    t.wait_count("the same value again:", 2);
    t.type_line("second");
    let screen = t.wait_for("second-exit=");
    assert!(screen.contains("second-exit=1"), "{screen}");
    assert!(
        screen.contains("the two values typed differ; nothing was stored"),
        "{screen}"
    );
    assert!(
        !screen.contains("first")
            && !screen
                .lines()
                .any(|l| l.contains("second") && !l.contains("second-exit")),
        "{screen}"
    );
    // The first value is what the broker holds.
    let reader = env.registered_client("reader", &["--read", "s"]);
    let got = env.run_client(&reader, &[&request("read", "s", &["k"])]);
    assert_eq!(got[0]["results"][0]["value"], "hunter2-typed", "{got:?}");
}
