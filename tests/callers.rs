//! Identity, second form (issue 10), against the real daemon: scripts under interpreters, code
//! without a file, launch rules, and the caller chain in the audit log and the pending queue.

use serde_json::Value;
use std::path::{Path, PathBuf};
use testkit::{Sandbox, expect, first_response, request};

/// Debian's python3 (a real binary, not a version manager's shim).
fn python() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/bin/python3");
    if p.exists() {
        return Some(std::fs::canonicalize(p).expect("canonical python"));
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI needs /usr/bin/python3 for the script tests"
    );
    eprintln!("SKIPPED: no /usr/bin/python3");
    None
}

/// A Python script that sends `REQ` (environment) to the broker itself and prints the answer.
fn python_script(env: &Sandbox, name: &str, python: &Path) -> PathBuf {
    let path = env.root.join("scripts").join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    testkit::write_executable(
        &path,
        format!(
            "#!{}\nimport os, socket\n# {}\ns = socket.socket(socket.AF_UNIX)\ns.connect(os.environ['KEYCHAIN_AUTH_SOCKET'])\ns.sendall((os.environ['REQ'] + '\\n').encode())\nprint(s.makefile().readline(), end='')\n",
            python.display(),
            testkit::nonce()
        )
        .as_bytes(),
    );
    path
}

fn run(env: &Sandbox, program: &Path, args: &[&str], req: &str) -> Value {
    let out = env
        .command(program)
        .args(args)
        .env("REQ", req)
        .current_dir(env.root.join("scripts"))
        .output()
        .unwrap();
    first_response(&out)
}

#[test]
fn a_script_is_served_by_its_own_hash_and_another_under_the_same_interpreter_is_not() {
    let Some(py) = python() else { return };
    let env = Sandbox::new();
    let _d = env.start();
    let good = python_script(&env, "good.py", &py);
    let other = python_script(&env, "other.py", &py);
    env.cli_ok(&["register", good.to_str().unwrap(), "--read", "aws"]);
    let listed = env.registered();
    assert_eq!(listed[0]["path"], good.to_str().unwrap());
    assert_eq!(listed[0]["interpreter"]["path"], py.to_str().unwrap());
    let read = request("read", "aws", &["k"]);
    // Served as the script (not_found: the broker looked; nothing is stored yet).
    expect(
        &run(&env, &py, &["good.py"], &read),
        "error",
        Some("not_found"),
    );
    // Relative to the caller's working directory, through flags before the script.
    expect(
        &run(&env, &py, &["-u", "-W", "ignore", "./good.py"], &read),
        "error",
        Some("not_found"),
    );
    // Run through its #! line.
    expect(&run(&env, &good, &[], &read), "error", Some("not_found"));
    // Another script under the very same interpreter is a stranger.
    let msg = expect(
        &run(&env, &py, &["other.py"], &read),
        "denied",
        Some("unregistered_binary"),
    );
    assert!(msg.contains("other.py"), "{msg}");
    let pending = env.pending_entries();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(
        pending[0]["path"],
        other.to_str().unwrap(),
        "grouped under the script"
    );
    assert_eq!(pending[0]["interpreter"]["path"], py.to_str().unwrap());
    // Approving it from the queue approves the pair.
    let hash = pending[0]["hash"].as_str().unwrap().to_string();
    env.cli_ok(&["approve", &hash, "--read", "aws"]);
    expect(
        &run(&env, &py, &["other.py"], &read),
        "error",
        Some("not_found"),
    );
}

#[test]
fn code_without_a_file_is_refused_with_the_reason_and_not_queued() {
    let Some(py) = python() else { return };
    let env = Sandbox::new();
    let _d = env.start();
    std::fs::create_dir_all(env.root.join("scripts")).unwrap();
    let read = request("read", "aws", &["k"]);
    let inline = "import os,socket\ns=socket.socket(socket.AF_UNIX)\ns.connect(os.environ['KEYCHAIN_AUTH_SOCKET'])\ns.sendall((os.environ['REQ']+'\\n').encode())\nprint(s.makefile().readline(),end='')";
    let msg = expect(
        &run(&env, &py, &["-c", inline], &read),
        "denied",
        Some("unregistered_binary"),
    );
    assert!(msg.contains("-c runs inline code"), "{msg}");
    // The same code on standard input.
    let mut child = env
        .command(&py)
        .env("REQ", &read)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), inline.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let resp: Value = serde_json::from_slice(&out.stdout).unwrap();
    let msg = expect(&resp, "denied", Some("unregistered_binary"));
    assert!(msg.contains("standard input"), "{msg}");
    // A shell's -c, writing on a connection a launcher made for it.
    let resp = through_shell(
        &env,
        &[
            "-c",
            "printf '%s\\n' \"$REQ\" >&\"$FD\"; head -n 1 <&\"$FD\"",
        ],
        &read,
    );
    let msg = expect(&resp, "denied", Some("unregistered_binary"));
    assert!(msg.contains("-c runs inline code"), "{msg}");
    assert!(env.pending_entries().is_empty(), "nothing to approve");
    // Approving the bare interpreter is refused unless asked for explicitly.
    let err = env.cli_err(&["register", py.to_str().unwrap(), "--read", "aws"]);
    assert!(err.contains("--allow-any-script"), "{err}");
    env.cli_ok(&[
        "register",
        py.to_str().unwrap(),
        "--read",
        "aws",
        "--allow-any-script",
    ]);
    expect(
        &run(&env, &py, &["-c", inline], &read),
        "error",
        Some("not_found"),
    );
    let list = String::from_utf8_lossy(&env.cli(&["list"]).stdout).into_owned();
    assert!(list.contains("ANY script"), "{list}");
}

/// Runs `bash ARGS` with a connection to the broker on descriptor $FD, opened by a Python
/// launcher (so that bash itself writes the request), and returns the response.
fn through_shell(env: &Sandbox, bash_args: &[&str], req: &str) -> Value {
    let launcher = "import os, socket, subprocess, sys\ns = socket.socket(socket.AF_UNIX)\ns.connect(os.environ['KEYCHAIN_AUTH_SOCKET'])\nfd = s.fileno()\nsubprocess.run(['/bin/bash'] + sys.argv[1:], pass_fds=[fd], env=dict(os.environ, FD=str(fd)))\n";
    let out = env
        .command("/usr/bin/python3")
        .arg("-c")
        .arg(launcher)
        .args(bash_args)
        .env("REQ", req)
        .current_dir(env.root.join("scripts"))
        .output()
        .unwrap();
    first_response(&out)
}

#[test]
fn a_bash_script_is_approved_by_its_own_hash_and_a_changed_one_needs_upgrade() {
    if python().is_none() {
        return;
    }
    let env = Sandbox::new();
    let _d = env.start();
    let dir = env.root.join("scripts");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("deploy.sh");
    let body = "#!/bin/bash\nprintf '%s\\n' \"$REQ\" >&\"$FD\"\nhead -n 1 <&\"$FD\"\n";
    std::fs::write(&script, body).unwrap();
    testkit::set_mode(&script, 0o755);
    let read = request("read", "aws", &["k"]);
    expect(
        &through_shell(&env, &["deploy.sh"], &read),
        "denied",
        Some("unregistered_binary"),
    );
    env.cli_ok(&["register", script.to_str().unwrap(), "--read", "aws"]);
    expect(
        &through_shell(&env, &["deploy.sh"], &read),
        "error",
        Some("not_found"),
    );
    // The script changes: it is "changed", not unknown, and upgrade keeps its permissions.
    std::fs::write(&script, format!("{body}# edited\n")).unwrap();
    let msg = expect(
        &through_shell(&env, &["deploy.sh"], &read),
        "denied",
        Some("unregistered_binary"),
    );
    assert!(
        msg.contains("changed since it was approved") && msg.contains("upgrade"),
        "{msg}"
    );
    env.cli_ok(&["upgrade", script.to_str().unwrap()]);
    expect(
        &through_shell(&env, &["deploy.sh"], &read),
        "error",
        Some("not_found"),
    );
}

#[test]
fn a_launch_rule_serves_through_its_launcher_only_and_the_chain_is_recorded() {
    let Some(py) = python() else { return };
    let env = Sandbox::new();
    let _d = env.start();
    let helper = python_script(&env, "helper.py", &py);
    // The launcher: a copy of sh with a hash of its own.
    let shell = ["/bin/dash", "/bin/sh"]
        .into_iter()
        .find(|s| Path::new(s).exists())
        .expect("a shell");
    let launcher = env.copy_unique(shell, "launcher");
    env.cli_ok(&[
        "register",
        helper.to_str().unwrap(),
        "--read",
        "aws",
        "--via",
        launcher.to_str().unwrap(),
    ]);
    let read = request("read", "aws", &["k"]);
    let via = |shell: &Path| {
        let out = env
            .command(shell)
            .arg("-c")
            .arg(format!("{} helper.py; true", py.display()))
            .env("REQ", &read)
            .current_dir(env.root.join("scripts"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        serde_json::from_str::<Value>(text.lines().next().unwrap_or_default()).unwrap()
    };
    expect(&via(&launcher), "error", Some("not_found"));
    let msg = expect(
        &via(Path::new("/bin/sh")),
        "denied",
        Some("launcher_not_allowed"),
    );
    assert!(
        msg.contains("launched by") && msg.contains("python3"),
        "{msg}"
    );
    let msg = expect(
        &run(&env, &py, &["helper.py"], &read),
        "denied",
        Some("launcher_not_allowed"),
    );
    assert!(msg.contains("helper.py"), "{msg}");
    // The chain: the caller first, then the launcher, in every record.
    let recs = env.audit_records();
    let served = recs
        .iter()
        .find(|r| r["event"] == "request" && r["reason"] == "not_found")
        .expect("served record");
    let chain = served["chain"].as_array().expect("chain");
    assert_eq!(chain[0]["path"], py.to_str().unwrap(), "{served}");
    assert_eq!(chain[1]["path"], launcher.to_str().unwrap(), "{served}");
    assert!(chain[1]["hash"].as_str().unwrap().starts_with("sha256:"));
    assert!(chain.len() <= 5);
    assert_eq!(served["script"], helper.to_str().unwrap());
    // And in pending.json, for a caller that is refused.
    let stranger = python_script(&env, "stranger.py", &py);
    let out = env
        .command(&launcher)
        .arg("-c")
        .arg(format!("{} {}; true", py.display(), stranger.display()))
        .env("REQ", &read)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("unregistered_binary"));
    let pending: Value = serde_json::from_slice(&std::fs::read(env.pending()).unwrap()).unwrap();
    let entry = &pending["entries"][0];
    assert_eq!(
        entry["chain"][1]["path"],
        launcher.to_str().unwrap(),
        "{entry}"
    );
    let text = String::from_utf8_lossy(&env.cli(&["list-pending"]).stdout).into_owned();
    assert!(text.contains("launched by launcher"), "{text}");
}

/// The exec-after-connect attack under one interpreter: an approved script is served, then
/// executes another script under the same python3 (same pid, same executable file) and that
/// script writes on the inherited connection. Only the new image's memory tells them apart.
#[test]
fn an_approved_script_that_execs_another_script_on_its_connection_is_refused() {
    script_execs_another_on_its_connection(false);
}

/// The same with an empty environment, where the watch has no environment to read: the writer
/// is identified afresh for every request, and a different script is an exec.
#[test]
fn an_approved_script_with_an_empty_environment_that_execs_another_is_refused() {
    script_execs_another_on_its_connection(true);
}

fn script_execs_another_on_its_connection(empty_environment: bool) {
    let Some(py) = python() else { return };
    let env = Sandbox::new();
    let _d = env.start();
    let dir = env.root.join("scripts");
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.py");
    // argv: SOCKET REQUEST (nothing from the environment, which may be empty).
    testkit::write_executable(
        &good,
        format!(
            "#!{}\nimport os, socket, sys\n# {}\ns = socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ns.sendall((sys.argv[2] + '\\n').encode())\nprint(s.makefile().readline(), end='', flush=True)\nos.set_inheritable(s.fileno(), True)\nos.execv(sys.executable, [sys.executable, 'evil.py', str(s.fileno()), sys.argv[2]])\n",
            py.display(),
            testkit::nonce()
        )
        .as_bytes(),
    );
    testkit::write_executable(
        &dir.join("evil.py"),
        b"import os, socket, sys\ns = socket.socket(fileno=int(sys.argv[1]))\ns.sendall((sys.argv[2] + '\\n').encode())\nprint(s.makefile().readline(), end='', flush=True)\n",
    );
    env.cli_ok(&["register", good.to_str().unwrap(), "--read", "aws"]);
    let mut cmd = env.command(&py);
    if empty_environment {
        cmd.env_clear();
    }
    let out = cmd
        .arg("good.py")
        .arg(&env.socket)
        .arg(request("read", "aws", &["k"]))
        .current_dir(&dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    expect(&lines[0], "error", Some("not_found"));
    let msg = expect(&lines[1], "denied", Some("unregistered_binary"));
    assert!(msg.contains("execve"), "{msg}");
}

#[test]
fn a_fifo_in_place_of_the_script_is_refused_and_holds_nobody() {
    // The script swaps itself for a FIFO before it connects: the broker opening "the script"
    // must neither hang (STATUS and other callers keep being answered) nor serve it.
    let Some(py) = python() else { return };
    let env = Sandbox::new();
    let _d = env.start();
    let path = env.root.join("scripts").join("swap.py");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    testkit::write_executable(
        &path,
        format!(
            "#!{}\nimport os, socket, sys\nos.rename(sys.argv[0], sys.argv[0] + '.old')\nos.mkfifo(sys.argv[0], 0o600)\ns = socket.socket(socket.AF_UNIX)\ns.connect(os.environ['KEYCHAIN_AUTH_SOCKET'])\ns.sendall((os.environ['REQ'] + '\\n').encode())\nprint(s.makefile().readline(), end='')\n",
            py.display()
        )
        .as_bytes(),
    );
    let read = request("read", "aws", &["k"]);
    let answer = std::thread::scope(|scope| {
        let caller = scope.spawn(|| run(&env, &py, &[path.to_str().unwrap()], &read));
        testkit::wait_for(10, "the FIFO in place", || {
            std::fs::symlink_metadata(&path)
                .ok()
                .filter(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()))
        });
        for _ in 0..3 {
            assert!(
                testkit::status(&env.socket).is_some(),
                "STATUS answered while the caller's script is a FIFO"
            );
        }
        caller.join().unwrap()
    });
    let msg = expect(&answer, "denied", Some("unregistered_binary"));
    assert!(msg.contains("not a regular file"), "{msg}");
}
