//! Hardening, round three (issue 18), against the real daemon: each attack of the outside
//! review performed, and now refused; beside each, the clean approved caller still served.
//!
//! Interpreters load only what was approved: options that load or run other code (python `-i`,
//! node `--require`/`-r`/`--import`, perl `-I`/`-M`/`-d`, bash `-x`/`-i`), the environment
//! variables that do (`PYTHONUSERBASE`, `PYTHONINSPECT`, `SHELLOPTS`, `PS4`, `BASH_FUNC_*`,
//! `PERL5DB`, …) and Python's user-site start-up files.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use testkit::{Sandbox, expect, request};

/// The secret every approved script here may read, stored before the attacks.
fn store_secret(env: &Sandbox) -> String {
    let secret = format!("s3cr3t-{}", testkit::nonce());
    let writer = env.registered_client("writer", &["--write", "aws"]);
    env.write_ok(&writer, "aws", &[("k", &secret)]);
    secret
}

/// Runs `program ARGS` in the sandbox's scripts directory with `REQ` (a read of the secret) and
/// `extra` in its environment and `stdin` on standard input; returns its first response line
/// and the whole output.
fn run(
    env: &Sandbox,
    program: &Path,
    args: &[&str],
    extra: &[(&str, &str)],
    stdin: &str,
) -> (Value, Output) {
    let mut child = env
        .command(program)
        .args(args)
        .env("REQ", request("read", "aws", &["k"]))
        .envs(extra.iter().copied())
        .current_dir(env.root.join("scripts"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "no response from {program:?} {args:?}: {text:?} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string();
    (serde_json::from_str(&line).unwrap(), out)
}

/// The caller was served the secret.
fn served(resp: &(Value, Output), secret: &str) {
    expect(&resp.0, "success", None);
    assert!(resp.0.to_string().contains(secret), "{}", resp.0);
}

/// The caller was refused for `reason`, the message names `names`, and the secret appears
/// nowhere in what it printed.
fn refused(resp: &(Value, Output), reason: &str, names: &str, secret: &str) -> String {
    let msg = expect(&resp.0, "denied", Some(reason));
    assert!(msg.contains(names), "{names:?} not in: {msg}");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&resp.1.stdout),
        String::from_utf8_lossy(&resp.1.stderr)
    );
    assert!(!all.contains(secret), "the secret leaked: {all}");
    msg
}

fn write_script(env: &Sandbox, name: &str, body: &str) -> PathBuf {
    let path = env.root.join("scripts").join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    testkit::write_executable(&path, body.as_bytes());
    path
}

fn have(path: &str) -> bool {
    if Path::new(path).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI needs {path} for the interpreter tests"
    );
    eprintln!("SKIPPED: no {path}");
    false
}

const PYTHON: &str = "/usr/bin/python3";

/// An approved Python script that reads the secret itself and prints the answer.
fn python_script(env: &Sandbox) -> PathBuf {
    let py = std::fs::canonicalize(PYTHON).unwrap();
    let script = write_script(
        env,
        "good.py",
        &format!(
            "#!{}\nimport os, socket\ns = socket.socket(socket.AF_UNIX)\ns.connect(os.environ['KEYCHAIN_AUTH_SOCKET'])\ns.sendall((os.environ['REQ'] + '\\n').encode())\nprint(s.makefile().readline(), end='')\n",
            py.display()
        ),
    );
    env.cli_ok(&["register", script.to_str().unwrap(), "--read", "aws"]);
    script
}

#[test]
fn python_options_and_variables_that_run_other_code_are_refused() {
    if !have(PYTHON) {
        return;
    }
    let env = Sandbox::new();
    let _d = env.start();
    let secret = store_secret(&env);
    python_script(&env);
    let py = Path::new(PYTHON);
    served(&run(&env, py, &["good.py"], &[], ""), &secret);
    // Code on standard input, run once the approved script ends (with -i, and with -I -i).
    let steal = "print('STOLEN', open('/proc/self/cmdline').read())\n";
    for args in [
        &["-i", "good.py"][..],
        &["-I", "-i", "good.py"],
        &["-Ii", "good.py"],
    ] {
        let r = run(&env, py, args, &[], steal);
        refused(&r, "unregistered_binary", "-i reads and runs code", &secret);
    }
    // PYTHONINSPECT: the same without the option.
    let r = run(&env, py, &["good.py"], &[("PYTHONINSPECT", "1")], steal);
    refused(&r, "injected_environment", "PYTHONINSPECT", &secret);
    // Still served with harmless options.
    served(&run(&env, py, &["-u", "-B", "good.py"], &[], ""), &secret);
}

#[test]
fn python_user_site_start_up_files_refuse_the_caller_unless_it_runs_with_s() {
    if !have(PYTHON) {
        return;
    }
    let env = Sandbox::new();
    let _d = env.start();
    let secret = store_secret(&env);
    python_script(&env);
    let py = Path::new(PYTHON);
    let version = String::from_utf8(
        std::process::Command::new(PYTHON)
            .args([
                "-c",
                "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let site = env
        .home()
        .join(format!(".local/lib/python{}/site-packages", version.trim()));
    std::fs::create_dir_all(&site).unwrap();
    let marker = env.root.join("ran");
    let payload = format!("open({:?}, 'w').write('ran')\n", marker.to_str().unwrap());

    // usercustomize.py: imported by Python before the approved script.
    std::fs::write(site.join("usercustomize.py"), &payload).unwrap();
    let r = run(&env, py, &["good.py"], &[], "");
    let msg = refused(&r, "injected_environment", "usercustomize.py", &secret);
    assert!(msg.contains("-s"), "{msg}");
    assert!(
        marker.exists(),
        "the attack ran: the start-up file was imported"
    );
    // -E does not turn the user site off.
    let r = run(&env, py, &["-E", "good.py"], &[], "");
    refused(&r, "injected_environment", "usercustomize.py", &secret);
    // -s and -I do: then nothing of it runs and the script is served.
    served(&run(&env, py, &["-s", "good.py"], &[], ""), &secret);
    served(&run(&env, py, &["-I", "good.py"], &[], ""), &secret);
    std::fs::remove_file(site.join("usercustomize.py")).unwrap();

    // A .pth file: its import lines run at start-up.
    std::fs::write(
        site.join("zz-evil.pth"),
        format!("import os; {}", payload.trim()),
    )
    .unwrap();
    let r = run(&env, py, &["good.py"], &[], "");
    refused(&r, "injected_environment", "zz-evil.pth", &secret);
    std::fs::remove_file(site.join("zz-evil.pth")).unwrap();
    served(&run(&env, py, &["good.py"], &[], ""), &secret);

    // PYTHONUSERBASE pointing at a directory with one.
    let base = env.root.join("elsewhere");
    let other = base.join(format!("lib/python{}/site-packages", version.trim()));
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join("x.pth"),
        format!("import os; {}", payload.trim()),
    )
    .unwrap();
    let r = run(
        &env,
        py,
        &["good.py"],
        &[("PYTHONUSERBASE", base.to_str().unwrap())],
        "",
    );
    refused(&r, "injected_environment", "PYTHONUSERBASE", &secret);
}

#[test]
fn bash_options_and_variables_that_print_or_run_other_code_are_refused() {
    if !have(PYTHON) || !have("/bin/bash") {
        return;
    }
    let env = Sandbox::new();
    let _d = env.start();
    let secret = store_secret(&env);
    let script = write_script(
        &env,
        "deploy.sh",
        "#!/bin/bash\nprintf '%s\\n' \"$REQ\" >&\"$FD\"\nhead -n 1 <&\"$FD\"\n",
    );
    env.cli_ok(&["register", script.to_str().unwrap(), "--read", "aws"]);
    // bash writes the request itself, on a connection a Python launcher opened for it.
    let launcher = "import os, socket, subprocess, sys\ns = socket.socket(socket.AF_UNIX)\ns.connect(os.environ['KEYCHAIN_AUTH_SOCKET'])\nfd = s.fileno()\nsubprocess.run(['/bin/bash'] + sys.argv[1:], pass_fds=[fd], env=dict(os.environ, FD=str(fd)))\n";
    let bash = |args: &[&str], extra: &[(&str, &str)]| {
        let mut all = vec!["-c", launcher];
        all.extend_from_slice(args);
        run(&env, Path::new(PYTHON), &all, extra, "")
    };
    served(&bash(&["deploy.sh"], &[]), &secret);
    // xtrace would print the answer (and the secret in it) to standard error.
    refused(
        &bash(&["-x", "deploy.sh"], &[]),
        "unregistered_binary",
        "-x prints",
        &secret,
    );
    refused(
        &bash(&["-o", "xtrace", "deploy.sh"], &[]),
        "unregistered_binary",
        "-o xtrace",
        &secret,
    );
    refused(
        &bash(&["deploy.sh"], &[("SHELLOPTS", "xtrace")]),
        "injected_environment",
        "SHELLOPTS",
        &secret,
    );
    // PS4 is expanded (command substitution included) before every traced command.
    refused(
        &bash(&["deploy.sh"], &[("PS4", "$(echo PS4 RAN >&2)")]),
        "injected_environment",
        "PS4",
        &secret,
    );
    // An exported function overriding a command the approved script runs.
    let r = bash(
        &["deploy.sh"],
        &[("BASH_FUNC_head%%", "() {  cat; echo HIJACKED\n}")],
    );
    refused(&r, "injected_environment", "BASH_FUNC_head%%", &secret);
    // -i runs ~/.bashrc first.
    let marker = env.root.join("bashrc-ran");
    std::fs::write(
        env.home().join(".bashrc"),
        format!("touch {}\n", marker.display()),
    )
    .unwrap();
    refused(
        &bash(&["-i", "deploy.sh"], &[]),
        "unregistered_binary",
        "~/.bashrc",
        &secret,
    );
    refused(
        &bash(&["--rcfile", ".bashrc", "deploy.sh"], &[]),
        "unregistered_binary",
        "--rcfile",
        &secret,
    );
    served(&bash(&["-e", "-o", "pipefail", "deploy.sh"], &[]), &secret);
}

#[test]
fn node_options_that_load_modules_are_refused() {
    if !have("/usr/bin/node") {
        return;
    }
    let env = Sandbox::new();
    let _d = env.start();
    let secret = store_secret(&env);
    let node = std::fs::canonicalize("/usr/bin/node").unwrap();
    let script = write_script(
        &env,
        "a.js",
        &format!(
            "#!{}\nconst net = require('net');\nconst s = net.createConnection(process.env.KEYCHAIN_AUTH_SOCKET, () => s.write(process.env.REQ + '\\n'));\nlet b = '';\ns.on('data', d => {{ b += d; const i = b.indexOf('\\n'); if (i >= 0) {{ process.stdout.write(b.slice(0, i + 1)); s.end(); }} }});\n",
            node.display()
        ),
    );
    env.cli_ok(&["register", script.to_str().unwrap(), "--read", "aws"]);
    let dir = env.root.join("scripts");
    std::fs::write(
        dir.join("evil.js"),
        "process.stdout.write('EVIL LOADED\\n');\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("evil.mjs"),
        "process.stdout.write('EVIL LOADED\\n');\n",
    )
    .unwrap();
    served(&run(&env, &node, &["a.js"], &[], ""), &secret);
    for (args, names) in [
        (&["--require", "./evil.js", "a.js"][..], "--require loads"),
        (&["-r", "./evil.js", "a.js"], "-r loads"),
        (&["--import=./evil.mjs", "a.js"], "--import loads"),
        (&["--import", "./evil.mjs", "a.js"], "--import loads"),
    ] {
        let r = run(&env, &node, args, &[], "");
        assert!(
            String::from_utf8_lossy(&r.1.stdout).contains("EVIL LOADED"),
            "the attack ran"
        );
        refused(&r, "unregistered_binary", names, &secret);
    }
    served(
        &run(&env, &node, &["--no-warnings", "a.js"], &[], ""),
        &secret,
    );
}

#[test]
fn perl_module_and_debugger_options_are_refused() {
    if !have("/usr/bin/perl") {
        return;
    }
    let env = Sandbox::new();
    let _d = env.start();
    let secret = store_secret(&env);
    let perl = std::fs::canonicalize("/usr/bin/perl").unwrap();
    let script = write_script(
        &env,
        "t.pl",
        &format!(
            "#!{}\nuse IO::Socket::UNIX;\nmy $s = IO::Socket::UNIX->new(Peer => $ENV{{KEYCHAIN_AUTH_SOCKET}}) or die;\nprint $s \"$ENV{{REQ}}\\n\";\nmy $l = <$s>;\nprint $l;\n",
            perl.display()
        ),
    );
    env.cli_ok(&["register", script.to_str().unwrap(), "--read", "aws"]);
    let lib = env.root.join("scripts/A");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(
        lib.join("Evil.pm"),
        "package Evil; print \"EVIL LOADED\\n\"; 1;\n",
    )
    .unwrap();
    served(&run(&env, &perl, &["t.pl"], &[], ""), &secret);
    let r = run(&env, &perl, &["-I", "A", "-MEvil", "t.pl"], &[], "");
    assert!(String::from_utf8_lossy(&r.1.stdout).contains("EVIL LOADED"));
    refused(&r, "unregistered_binary", "-I adds a directory", &secret);
    // PERL5DB with -d: the "debugger" is any code. Refused for -d, and for the variable alone.
    let debugger = [(
        "PERL5DB",
        "BEGIN { print qq(EVIL DEBUGGER\\n) } sub DB::DB {}",
    )];
    let r = run(&env, &perl, &["-d", "t.pl"], &debugger, "");
    assert!(String::from_utf8_lossy(&r.1.stdout).contains("EVIL DEBUGGER"));
    refused(
        &r,
        "unregistered_binary",
        "-d runs the script under a debugger",
        &secret,
    );
    let r = run(&env, &perl, &["t.pl"], &debugger, "");
    refused(&r, "injected_environment", "PERL5DB", &secret);
}

/// Compiles `sources` (under tests/attacks) into `out` with `cc`; `None` (and a SKIPPED line)
/// when there is no C compiler, which fails the test under CI.
fn compile(out: &Path, sources: &[&str], flags: &[&str]) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/attacks");
    let mut cmd = std::process::Command::new("cc");
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

/// Approvers pass the caller's checks: keychain-auth itself (here: a child running the
/// embedded broker's executable) with `LD_PRELOAD` set, or under a tracer, is refused before
/// `SUBSCRIBE` is accepted, so it is never shown a prompt to answer; the clean one subscribes.
#[test]
fn an_approver_with_an_injection_variable_or_a_tracer_may_not_subscribe() {
    let env = Sandbox::new();
    let running = testkit::EmbeddedBroker::start(&env);
    let bin = env.root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let Some(lib) = compile(&bin.join("inject.so"), &["inject.c"], &["-shared", "-fPIC"]) else {
        return;
    };
    let Some(tracer) = compile(&bin.join("tracer"), &["tracer.c"], &[]) else {
        return;
    };
    let stranger = env.client("stranger");
    let subscribe = br#"{"type":"SUBSCRIBE"}"#;

    // The attack: keychain-auth with a preload library subscribes (to answer "always" to its
    // own caller's prompt, headless).
    let mut preloaded = testkit::Relay::start(
        &env,
        "relay",
        None,
        &[("LD_PRELOAD", lib.to_str().unwrap())],
    );
    let r = preloaded.round_trip(subscribe).unwrap();
    let msg = expect(&r, "denied", Some("injected_environment"));
    assert!(
        msg.contains("LD_PRELOAD") && msg.contains("approver"),
        "{msg}"
    );
    // Nobody is attached: an unknown caller is refused at once, not held for a prompt.
    let r = &env.run_client(&stranger, &[&request("read", "aws", &["k"])])[0];
    expect(r, "denied", Some("unregistered_binary"));
    let audited = env
        .audit_records()
        .into_iter()
        .any(|rec| rec.to_string().contains("LD_PRELOAD") && rec.to_string().contains("approver"));
    assert!(audited, "the refused approver is audited");

    // Under a tracer.
    let mut traced = testkit::Relay::start(&env, "relay", Some(&tracer), &[]);
    let r = traced.round_trip(subscribe).unwrap();
    let msg = expect(&r, "denied", Some("injected_environment"));
    assert!(msg.contains("traced"), "{msg}");

    // The clean one subscribes and is shown the caller's prompt.
    let mut clean = testkit::Relay::start(&env, "relay", None, &[]);
    assert_eq!(clean.round_trip(subscribe).unwrap()["type"], "SUBSCRIBED");
    let held = env.spawn_client(&stranger, &request("read", "aws", &["k"]));
    let prompt = clean.read_line().unwrap();
    assert_eq!(prompt["type"], "PROMPT", "{prompt}");
    drop(clean);
    expect(
        &testkit::held_response(held),
        "denied",
        Some("unregistered_binary"),
    );
    running.stop();
}

/// The socket approver's side of [`testkit::Relay`]: run only as a child of the test above.
#[test]
#[ignore = "the child process of the approver test (testkit::Relay)"]
fn relay() {
    testkit::relay_main();
}

/// git: a `password_expiry_utc` that is not a number of seconds is refused, not dropped (a
/// dropped expiry kept an expiring password forever); the password is not stored.
#[test]
fn a_git_store_with_an_expiry_that_is_not_seconds_is_refused() {
    let env = Sandbox::new();
    let _d = env.start();
    let helper = env.copy_unique(
        env!("CARGO_BIN_EXE_git-credential-keychain-auth"),
        "git-credential-keychain-auth",
    );
    env.register(&helper, &["--read", "git", "--write", "git"]);
    let store = |expiry: &str| {
        let mut c = env.command(&helper);
        c.arg("store");
        testkit::run_with_input(
            c,
            format!(
                "protocol=https\nhost=git.example.com\nusername=alice\npassword=pw-{expiry}\npassword_expiry_utc={expiry}\n\n"
            )
            .as_bytes(),
        )
    };
    let get = || {
        let mut c = env.command(&helper);
        c.arg("get");
        let out = testkit::run_with_input(c, b"protocol=https\nhost=git.example.com\n\n");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for bad in ["tomorrow", "2030-01-01T00:00:00Z", "-5", ""] {
        let out = store(bad);
        assert_eq!(out.status.code(), Some(1), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("password_expiry_utc"), "{bad:?}: {err}");
        assert_eq!(get(), "", "{bad:?}: nothing was stored");
    }
    // A number of seconds in the future is stored and served with its expiry.
    assert!(store("4102444800").status.success());
    let got = get();
    assert!(
        got.contains("password=pw-4102444800\n") && got.contains("password_expiry_utc=4102444800"),
        "{got}"
    );
}

/// Display: a caller whose path reads as `/usr/bin/git` through a Hangul filler and fraction
/// slashes, with a look-alike space in its argv, is shown escaped by `list-pending` (text and
/// JSON), never as those characters.
#[test]
fn look_alike_paths_and_argv_are_shown_escaped_by_list_pending() {
    let env = Sandbox::new();
    let _d = env.start();
    let dir = env.root.join("x");
    std::fs::create_dir_all(&dir).unwrap();
    let fake = dir.join("\u{3164}\u{2044}usr\u{2044}bin\u{2044}git");
    testkit::copy_executable(Path::new(testkit::client_bin()), &fake);
    let out = env
        .command(&fake)
        .arg(request("read", "aws", &["k"]))
        .arg("credential\u{00A0}fill")
        .output()
        .unwrap();
    expect(
        &testkit::first_response(&out),
        "denied",
        Some("unregistered_binary"),
    );
    let text = env.cli_ok(&["list-pending"]);
    let json = env.cli_ok(&["list-pending", "--json"]);
    for shown in [&text, &json] {
        for raw in ['\u{3164}', '\u{2044}', '\u{00A0}'] {
            assert!(!shown.contains(raw), "{raw:?} shown as itself: {shown}");
        }
    }
    assert!(
        text.contains("x/\\u{3164}\\u{2044}usr\\u{2044}bin\\u{2044}git"),
        "{text}"
    );
    assert!(text.contains("credential\\u{a0}fill"), "{text}");
    // The JSON still decodes to the real path.
    let entries: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(entries[0]["path"], fake.to_str().unwrap());
}

/// `doctor` reports the machine's ptrace setting and what it lets your programs do to an
/// approved program (the review: this kernel had no Yama at all).
#[test]
fn doctor_reports_the_ptrace_setting_and_what_it_allows() {
    let env = Sandbox::new();
    let report = String::from_utf8_lossy(&env.cli(&["doctor"]).stdout).into_owned();
    let line = report
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("ptrace"))
        .unwrap_or_else(|| panic!("no ptrace line:\n{report}"));
    match std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope") {
        Err(_) => {
            assert!(
                line.starts_with("warn") && line.contains("no Yama"),
                "{line}"
            );
            assert!(line.contains("rewrite its request"), "{line}");
        }
        Ok(v) => {
            let v = v.trim();
            assert!(line.contains(&format!("ptrace_scope={v}")), "{line}");
            let expected = if matches!(v, "2" | "3") { "ok" } else { "warn" };
            assert!(line.starts_with(expected), "{line}");
        }
    }
}

/// Admin changes sent to a running daemon pass the same checks: `keychain-auth register` run
/// with `LD_PRELOAD` is refused by the daemon and changes nothing; run clean, it registers.
#[test]
fn an_admin_change_from_a_keychain_auth_with_an_injection_variable_is_refused() {
    let env = Sandbox::new();
    let _d = env.start();
    let bin = env.root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let Some(lib) = compile(&bin.join("inject.so"), &["inject.c"], &["-shared", "-fPIC"]) else {
        return;
    };
    let tool = env.client("tool");
    let preload = [("LD_PRELOAD".to_string(), lib.clone().into_os_string())];
    let out = env.cli_env(
        &preload,
        &["register", tool.to_str().unwrap(), "--read", "aws"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("LD_PRELOAD") && err.contains("admin changes"),
        "{err}"
    );
    assert!(env.registered().is_empty(), "nothing was registered");
    env.register(&tool, &["--read", "aws"]);
    assert_eq!(env.registered().len(), 1);
}
