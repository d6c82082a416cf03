//! The adapters and the client SDK with real clients, against the real daemon: `git credential`
//! with the helper configured, botocore through `credential_process`, the docker helper through
//! its documented protocol, `keychain-auth get/put`, the SDK's dependency tree, and a socket
//! served by another uid.

use std::path::Path;
use std::process::{Command, Stdio};
use testkit::{Sandbox, run_with_input};

const GIT_HELPER: &str = env!("CARGO_BIN_EXE_git-credential-keychain-auth");
const AWS_HELPER: &str = env!("CARGO_BIN_EXE_keychain-auth-aws");
const DOCKER_HELPER: &str = env!("CARGO_BIN_EXE_docker-credential-keychain-auth");

/// Stores `items` in `service` through a registered writer of its own (a client copy).
fn seed(env: &Sandbox, service: &str, items: &[(&str, &str)]) {
    let writer =
        env.registered_client(&format!("seed-{}", testkit::nonce()), &["--write", service]);
    env.write_ok(&writer, service, items);
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts `secret` appears in none of stderr, the audit log, pending.json.
fn assert_secret_nowhere(env: &Sandbox, secret: &str, stderrs: &[&str]) {
    for e in stderrs {
        assert!(!e.contains(secret), "secret on stderr: {e}");
    }
    let audit = std::fs::read_to_string(env.audit()).unwrap_or_default();
    assert!(!audit.is_empty(), "the audit log should have records");
    assert!(!audit.contains(secret), "secret in the audit log");
    let pending = std::fs::read_to_string(env.pending()).unwrap_or_default();
    assert!(!pending.contains(secret), "secret in pending.json");
}

/// `git` with an isolated configuration: `helpers` in order (an empty entry resets the list).
fn git(env: &Sandbox, helpers: &[&str], args: &[&str]) -> Command {
    let mut c = env.command("git");
    c.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .arg("-c")
        .arg("credential.helper=");
    for h in helpers {
        c.arg("-c").arg(format!("credential.helper={h}"));
    }
    c.args(args);
    c
}

const FALLBACK: &str =
    "!f() { test \"$1\" = get && echo username=next-user && echo password=from-next-helper; }; f";

#[test]
fn git_credential_approve_fill_reject_with_the_real_git() {
    if !testkit::tools_available(&["git"], "git") {
        return;
    }
    let env = Sandbox::new();
    let _d = env.start();
    let helper = env.copy_unique(GIT_HELPER, "git-credential-keychain-auth");
    env.register(&helper, &["--read", "git", "--write", "git"]);
    let h = helper.to_str().expect("utf8");
    let secret = format!("ghp-SECRET-{}", testkit::nonce());

    let approve = run_with_input(
        git(&env, &[h], &["credential", "approve"]),
        format!("protocol=https\nhost=git.example.com\nusername=alice\npassword={secret}\n\n")
            .as_bytes(),
    );
    assert!(approve.status.success(), "{}", text(&approve.stderr));
    let fill = run_with_input(
        git(&env, &[h, FALLBACK], &["credential", "fill"]),
        b"protocol=https\nhost=git.example.com\n\n",
    );
    assert!(fill.status.success(), "{}", text(&fill.stderr));
    let out = text(&fill.stdout);
    assert!(out.contains(&format!("password={secret}\n")), "{out}");
    assert!(out.contains("username=alice\n"), "{out}");
    // Stored under service git, target protocol://host, username as an attribute.
    let rec = env
        .audit_records()
        .into_iter()
        .rev()
        .find(|r| r.to_string().contains("https://git.example.com"))
        .expect("an audit record naming the target");
    assert!(rec.to_string().contains("\"git\""), "{rec}");

    // Another username for that host is not ours: git goes on to the next helper.
    let other = run_with_input(
        git(&env, &[h, FALLBACK], &["credential", "fill"]),
        b"protocol=https\nhost=git.example.com\nusername=mallory\n\n",
    );
    assert!(text(&other.stdout).contains("from-next-helper"));

    let reject = run_with_input(
        git(&env, &[h], &["credential", "reject"]),
        b"protocol=https\nhost=git.example.com\nusername=alice\n\n",
    );
    assert!(reject.status.success(), "{}", text(&reject.stderr));
    // A miss is silent and falls through to the next helper.
    let miss = run_with_input(
        git(&env, &[h, FALLBACK], &["credential", "fill"]),
        b"protocol=https\nhost=git.example.com\n\n",
    );
    assert!(miss.status.success(), "{}", text(&miss.stderr));
    assert!(text(&miss.stdout).contains("password=from-next-helper"));
    assert_eq!(text(&miss.stderr), "", "a miss prints nothing");
    assert_secret_nowhere(
        &env,
        &secret,
        &[
            &text(&approve.stderr),
            &text(&fill.stderr),
            &text(&miss.stderr),
        ],
    );
}

#[test]
fn git_helper_unapproved_gets_nothing_and_git_falls_through() {
    if !testkit::tools_available(&["git"], "git") {
        return;
    }
    let env = Sandbox::new();
    let _d = env.start();
    let good = env.copy_unique(GIT_HELPER, "git-credential-keychain-auth");
    env.register(&good, &["--read", "git", "--write", "git"]);
    let secret = format!("SECRET-{}", testkit::nonce());
    let approve = run_with_input(
        git(
            &env,
            &[good.to_str().expect("utf8")],
            &["credential", "approve"],
        ),
        format!("protocol=https\nhost=h.example\nusername=u\npassword={secret}\n\n").as_bytes(),
    );
    assert!(approve.status.success());
    // Same program, another hash, never approved.
    let rogue = env.copy_unique(GIT_HELPER, "git-credential-rogue");
    let fill = run_with_input(
        git(
            &env,
            &[rogue.to_str().expect("utf8"), FALLBACK],
            &["credential", "fill"],
        ),
        b"protocol=https\nhost=h.example\n\n",
    );
    assert!(fill.status.success(), "{}", text(&fill.stderr));
    let out = text(&fill.stdout);
    assert!(!out.contains(&secret), "{out}");
    assert!(out.contains("from-next-helper"), "{out}");
    let err = text(&fill.stderr);
    assert!(
        err.contains("unregistered_binary"),
        "a denial says why: {err}"
    );
    assert!(
        env.pending_entries()
            .iter()
            .any(|p| p.to_string().contains("git-credential-rogue")),
        "the rogue helper is queued for review"
    );
    assert_secret_nowhere(&env, &secret, &[&err, &text(&approve.stderr)]);
}

#[test]
fn git_helper_malformed_input_is_refused_without_echo() {
    let env = Sandbox::new();
    let _d = env.start();
    let helper = env.copy_unique(GIT_HELPER, "git-credential-keychain-auth");
    env.register(&helper, &["--read", "git", "--write", "git"]);
    let huge = vec![b'a'; 2 * 1024 * 1024];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"SECRET-GARBAGE-LINE\n\n".to_vec()),
        ("not utf8", b"protocol=\xff\xfe\n".to_vec()),
        ("nul", b"protocol=https\nhost=a\0b\n".to_vec()),
        ("no protocol", b"host=example.com\n\n".to_vec()),
        ("no host", b"protocol=https\n\n".to_vec()),
        ("huge", huge),
    ];
    for (what, input) in cases {
        let mut c = env.command(&helper);
        c.arg("get");
        let out = run_with_input(c, &input);
        assert_eq!(out.status.code(), Some(1), "{what}");
        assert!(out.stdout.is_empty(), "{what}: no output");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
        assert!(!err.contains("SECRET"), "{what}: input not echoed: {err}");
    }
    // Unknown actions are ignored (gitcredentials(7)); quit stops at once.
    let mut c = env.command(&helper);
    c.arg("frobnicate");
    let out = run_with_input(c, b"protocol=https\nhost=x\n\n");
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
}

#[test]
fn aws_credential_process_json_and_errors() {
    let env = Sandbox::new();
    let _d = env.start();
    let aws = env.copy_unique(AWS_HELPER, "keychain-auth-aws");
    env.register(&aws, &["--read", "aws"]);
    let key = "AKIAEXAMPLE";
    let secret = format!("aws-SECRET-{}", testkit::nonce());
    seed(
        &env,
        "aws",
        &[
            ("prod/access_key_id", key),
            ("prod/secret_access_key", &secret),
        ],
    );
    let out = env.command(&aws).arg("prod").output().expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["Version"], 1);
    assert_eq!(v["AccessKeyId"], key);
    assert_eq!(v["SecretAccessKey"], secret.as_str());
    assert!(v.get("SessionToken").is_none());
    // With the optional pair.
    seed(
        &env,
        "aws",
        &[
            ("prod/session_token", "tok-1"),
            ("prod/expiration", "2099-01-01T00:00:00Z"),
        ],
    );
    let out = env.command(&aws).arg("prod").output().expect("run");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["SessionToken"], "tok-1");
    assert_eq!(v["Expiration"], "2099-01-01T00:00:00Z");

    // A missing profile, an unapproved copy, a wrong command line: non-zero, reason on stderr.
    let miss = env.command(&aws).arg("nope").output().expect("run");
    assert_eq!(miss.status.code(), Some(1));
    assert!(text(&miss.stderr).contains("no credentials stored"));
    let rogue = env.copy_unique(AWS_HELPER, "aws-rogue");
    let denied = env.command(&rogue).arg("prod").output().expect("run");
    assert_eq!(denied.status.code(), Some(1));
    assert!(denied.stdout.is_empty());
    assert!(text(&denied.stderr).contains("unregistered_binary"));
    for args in [vec![], vec!["a", "b"], vec!["../x"], vec!["a\u{1b}]0;x"]] {
        let out = env.command(&aws).args(&args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
    }
    assert_secret_nowhere(
        &env,
        &secret,
        &[
            &text(&out.stderr),
            &text(&denied.stderr),
            &text(&miss.stderr),
        ],
    );
}

#[test]
fn botocore_resolves_a_profile_through_credential_process() {
    let probe = Command::new("python3")
        .args(["-c", "import botocore"])
        .output();
    if !probe.map(|o| o.status.success()).unwrap_or(false) {
        assert!(
            std::env::var_os("CI").is_none(),
            "botocore is missing in CI (.ci/run installs it)"
        );
        eprintln!("SKIPPED: python3 botocore is not installed (pip install botocore)");
        return;
    }
    let env = Sandbox::new();
    let _d = env.start();
    let aws = env.copy_unique(AWS_HELPER, "keychain-auth-aws");
    env.register(&aws, &["--read", "aws"]);
    let secret = format!("boto-SECRET-{}", testkit::nonce());
    seed(
        &env,
        "aws",
        &[
            ("dev/access_key_id", "AKIABOTO"),
            ("dev/secret_access_key", &secret),
        ],
    );
    let config = env.root.join("aws-config");
    std::fs::write(
        &config,
        format!(
            "[profile dev]\ncredential_process = {} dev\n",
            aws.display()
        ),
    )
    .expect("aws config");
    let script = "import botocore.session\n\
                  c = botocore.session.Session(profile='dev').get_credentials()\n\
                  print(c.method)\nprint(c.access_key)\nprint(c.secret_key)\n";
    let out = env
        .command("python3")
        .args(["-c", script])
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_SHARED_CREDENTIALS_FILE", env.root.join("none"))
        .output()
        .expect("python3");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(lines, vec!["custom-process", "AKIABOTO", secret.as_str()]);
    assert_secret_nowhere(&env, &secret, &[&text(&out.stderr)]);
}

fn docker(env: &Sandbox, helper: &Path, action: &str, input: &[u8]) -> (Option<i32>, String) {
    let mut c = env.command(helper);
    c.arg(action);
    let out = run_with_input(c, input);
    assert!(out.stderr.is_empty(), "docker helpers report on stdout");
    (out.status.code(), text(&out.stdout))
}

#[test]
fn docker_helper_speaks_the_credential_helpers_protocol() {
    let env = Sandbox::new();
    let _d = env.start();
    let helper = env.copy_unique(DOCKER_HELPER, "docker-credential-keychain-auth");
    env.register(&helper, &["--read", "docker", "--write", "docker"]);
    let secret = format!("dkr-SECRET-{}", testkit::nonce());
    let url = "https://registry.example.com";
    let creds = serde_json::json!({"ServerURL": url, "Username": "bob", "Secret": secret});
    assert_eq!(
        docker(&env, &helper, "store", creds.to_string().as_bytes()),
        (Some(0), String::new())
    );
    let (code, out) = docker(&env, &helper, "get", format!("{url}\n").as_bytes());
    assert_eq!(code, Some(0), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        v,
        serde_json::json!({"ServerURL": url, "Username": "bob", "Secret": secret})
    );
    // list needs the search permission.
    let (code, out) = docker(&env, &helper, "list", b"");
    assert_eq!(code, Some(1));
    assert!(out.contains("action_not_in_policy"), "{out}");
    env.cli_ok(&["grant", helper.to_str().expect("utf8"), "--search"]);
    let (code, out) = docker(&env, &helper, "list", b"");
    assert_eq!(code, Some(0), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v, serde_json::json!({url: "bob"}));
    assert!(!out.contains(&secret));
    // erase, then the exact miss message and exit 1.
    assert_eq!(
        docker(&env, &helper, "erase", url.as_bytes()),
        (Some(0), String::new())
    );
    assert_eq!(
        docker(&env, &helper, "get", url.as_bytes()),
        (
            Some(1),
            "credentials not found in native keychain\n".to_string()
        )
    );
    // Malformed input: the helpers' error shapes, on stdout, exit 1, no secret echoed.
    let huge = vec![b'x'; 2 * 1024 * 1024];
    let cases: Vec<(&str, &[u8], &str)> = vec![
        ("store", b"{not json SECRET-X", "invalid character"),
        (
            "store",
            br#"{"Username":"u","Secret":"SECRET-X"}"#,
            "no credentials server URL",
        ),
        (
            "store",
            br#"{"ServerURL":"s","Secret":"SECRET-X"}"#,
            "no credentials username",
        ),
        ("get", b"\n", "no credentials server URL"),
        ("get", &huge, "token too long"),
        ("frob", b"", "unknown action"),
    ];
    for (action, input, want) in cases {
        let (code, out) = docker(&env, &helper, action, input);
        assert_eq!(code, Some(1), "{action}: {out}");
        assert!(out.contains(want), "{action}: {out}");
        assert!(!out.contains("SECRET-X"), "{action}: echoed: {out}");
    }
    // An unapproved copy gets nothing.
    let rogue = env.copy_unique(DOCKER_HELPER, "docker-credential-rogue");
    docker(&env, &helper, "store", creds.to_string().as_bytes());
    let (code, out) = docker(&env, &rogue, "get", url.as_bytes());
    assert_eq!(code, Some(1));
    assert!(
        out.contains("unregistered_binary") && !out.contains(&secret),
        "{out}"
    );
    assert_secret_nowhere(&env, &secret, &[]);
}

#[test]
fn put_reads_standard_input_and_get_prints_it() {
    let env = Sandbox::new();
    let _d = env.start();
    // keychain-auth itself is a conduit, never a caller: it cannot be registered.
    let err = env.cli_err(&["register", testkit::daemon_bin(), "--read", "ci"]);
    assert!(err.contains("never a caller"), "{err}");
    // A script that uses get/put is answered as itself (interpreter + script hash).
    let dir = env.root.join("scripts");
    std::fs::create_dir_all(&dir).expect("dir");
    let script = dir.join("deploy.sh");
    let ka = testkit::daemon_bin();
    testkit::write_executable(
        &script,
        format!(
            "#!/bin/bash\nprintf 's3cr3t value\\n' | {ka} put ci token || exit 1\n{ka} get ci token\nstatus=$?\n{ka} put ci token s3cr3t 2>&1\nexit $status\n"
        )
        .as_bytes(),
    );
    let run = |s: &Path| {
        env.command("/bin/bash")
            .arg(s)
            .current_dir(&dir)
            .output()
            .expect("bash")
    };
    let out = run(&script);
    assert!(!out.status.success(), "unregistered script is refused");
    assert!(
        text(&out.stderr).contains("unregistered_binary"),
        "{}",
        text(&out.stderr)
    );
    let pending = env.pending_entries();
    assert_eq!(
        pending[0]["path"],
        script.to_str().expect("utf8"),
        "queued as the script"
    );
    env.register(&script, &["--read", "ci", "--write", "ci"]);
    let out = run(&script);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("s3cr3t value\n"), "{stdout}");
    // `put` takes no value argument.
    assert!(stdout.contains("unexpected argument"), "{stdout}");
    let served = env
        .audit_records()
        .into_iter()
        .rev()
        .find(|r| r["action"] == "read" && r["status"] == "success")
        .expect("audited");
    assert_eq!(served["script"], script.to_str().expect("utf8"), "{served}");
    // The value went through the broker only: not into the audit log, the pending queue,
    // config.json or anything the script printed on stderr.
    for file in [env.audit(), env.pending(), env.config()] {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            !text.contains("s3cr3t value"),
            "the secret is in {}",
            file.display()
        );
    }
    assert!(
        !text(&out.stderr).contains("s3cr3t value"),
        "{}",
        text(&out.stderr)
    );
    // Run by something unapproved (this test), get is refused as that program.
    let err = env.cli_err(&["get", "ci", "token"]);
    assert!(err.contains("unregistered_binary"), "{err}");
    let err = env.cli_err(&["get", "other", "token"]);
    assert!(err.contains("unregistered_binary"), "{err}");
}

#[test]
fn client_sdk_has_no_daemon_runtime_in_its_dependency_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = env!("CARGO_MANIFEST_DIR");
    std::fs::create_dir_all(dir.path().join("src")).expect("src");
    std::fs::write(
        dir.path().join("Cargo.toml"),
        format!(
            "[package]\nname = \"sdk-consumer\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\n[dependencies]\nkeychain-auth = {{ path = {manifest:?}, default-features = false }}\n\n[workspace]\n"
        ),
    )
    .expect("manifest");
    std::fs::write(
        dir.path().join("src/main.rs"),
        "fn main() { let _ = keychain_auth::client::Client::connect_default(std::time::Duration::from_secs(1)); }\n",
    )
    .expect("main");
    std::fs::copy(
        Path::new(manifest).join("Cargo.lock"),
        dir.path().join("Cargo.lock"),
    )
    .expect("lock");
    let out = Command::new(env!("CARGO"))
        .args(["tree", "-e", "normal", "--prefix", "none", "--offline"])
        .current_dir(dir.path())
        .output()
        .expect("cargo tree");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tree = text(&out.stdout);
    println!("{tree}");
    assert!(tree.contains("keychain-auth v"), "{tree}");
    for banned in [
        "tokio",
        "ratatui",
        "zbus",
        "secret-service",
        "notify",
        "clap",
    ] {
        assert!(
            !tree.lines().any(|l| l.starts_with(&format!("{banned} v"))),
            "{banned} in the SDK's tree:\n{tree}"
        );
    }
}

/// Kills the child when the test ends, also on a failed assertion.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn client_refuses_a_socket_served_by_another_uid_before_sending() {
    // The system interpreter: a per-user shim (pyenv) is not readable by uid 65534.
    const PY: &str = "/usr/bin/python3";
    if !nix::unistd::geteuid().is_root() || !Path::new(PY).exists() {
        eprintln!("SKIPPED: needs root and {PY} to run a fake server as uid 65534");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    testkit::set_mode(dir.path(), 0o777);
    let sock = dir.path().join("agent.sock");
    let count = dir.path().join("count");
    let ready = dir.path().join("ready");
    // The other user's fake broker: counts every byte it receives from each connection.
    let server = format!(
        "import socket,os\n\
         s=socket.socket(socket.AF_UNIX); s.bind({sock:?}); os.chmod({sock:?},0o777); s.listen(8)\n\
         open({ready:?},'w').close()\n\
         total=0\n\
         for _ in range(2):\n\
         \x20   c,_=s.accept(); c.settimeout(2)\n\
         \x20   try:\n\
         \x20       while True:\n\
         \x20           b=c.recv(65536)\n\
         \x20           if not b: break\n\
         \x20           total+=len(b)\n\
         \x20   except Exception: pass\n\
         \x20   c.close()\n\
         \x20   with open({count:?},'w') as f: f.write(str(total))\n",
        sock = sock.to_str().expect("utf8"),
        ready = ready.to_str().expect("utf8"),
        count = count.to_str().expect("utf8"),
    );
    let fake = Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            PY,
            "-c",
        ])
        .arg(&server)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("setpriv python3");
    let mut fake = KillOnDrop(fake);
    testkit::wait_for(10, "the fake server", || ready.exists().then_some(()));
    let env = Sandbox::new();
    // The reference client and the git helper, both pointed at the fake socket.
    let out = env
        .command(testkit::client_bin())
        .env("KEYCHAIN_AUTH_SOCKET", &sock)
        .arg(r#"{"type":"REQUEST","action":"write","service":"s","targets":["t"],"values":["SECRET"]}"#)
        .output()
        .expect("client");
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("uid 65534") && err.contains("nothing was sent"),
        "{err}"
    );
    let mut c = env.command(GIT_HELPER);
    c.env("KEYCHAIN_AUTH_SOCKET", &sock).arg("store");
    let out = run_with_input(
        c,
        b"protocol=https\nhost=h\nusername=u\npassword=SECRET\n\n",
    );
    assert!(
        text(&out.stderr).contains("uid 65534"),
        "{}",
        text(&out.stderr)
    );
    let status = testkit::wait_for(20, "the fake server to finish", || {
        fake.0.try_wait().expect("try_wait")
    });
    assert!(status.success());
    assert_eq!(
        std::fs::read_to_string(&count).expect("count"),
        "0",
        "the foreign server received bytes"
    );
}

#[test]
fn doctor_reports_installed_and_registered_adapters() {
    let env = Sandbox::new();
    let _d = env.start();
    env.register(Path::new(GIT_HELPER), &["--read", "git"]);
    // The tools' own configuration: AWS and docker set up to use their adapters, git not.
    let home = env.home();
    std::fs::create_dir_all(home.join(".aws")).expect("aws dir");
    std::fs::write(
        home.join(".aws/config"),
        "[profile ci]\ncredential_process = keychain-auth-aws ci\n[profile other]\nregion = x\n",
    )
    .expect("aws config");
    std::fs::create_dir_all(home.join(".docker")).expect("docker dir");
    std::fs::write(
        home.join(".docker/config.json"),
        r#"{"credHelpers":{"ghcr.io":"keychain-auth"}}"#,
    )
    .expect("docker config");
    // doctor looks next to its own binary (target/debug holds every adapter).
    let report = text(&env.cli(&["doctor"]).stdout);
    let line = |name: &str| {
        report
            .lines()
            .find(|l| l.contains(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{report}"))
            .to_string()
    };
    let git = line("git-credential-keychain-auth");
    assert!(git.contains("registered (read git)"), "{git}");
    let aws = line("keychain-auth-aws");
    assert!(aws.contains("not registered"), "{aws}");
    assert!(line("docker-credential-keychain-auth").contains("not registered"));
    // And whether each tool is set up to use its adapter.
    let uses = |needle: &str| report.lines().any(|l| l.contains(needle));
    assert!(uses("AWS uses it for profile ci"), "{report}");
    assert!(uses("docker uses it for ghcr.io (credHelpers)"), "{report}");
    if testkit::tools_available(&["git"], "git") {
        assert!(uses("git does not use it yet"), "{report}");
        std::fs::write(
            home.join(".gitconfig"),
            "[credential]\n\thelper = keychain-auth\n",
        )
        .expect("gitconfig");
        let again = text(&env.cli(&["doctor"]).stdout);
        assert!(again.contains("git uses it (credential.helper)"), "{again}");
    }
}

#[test]
fn doctor_reports_a_fifo_in_place_of_a_tools_config_instead_of_waiting_on_it() {
    let env = Sandbox::new();
    let home = env.home();
    for (dir, file) in [(".aws", "config"), (".docker", "config.json")] {
        std::fs::create_dir_all(home.join(dir)).expect("dir");
        nix::unistd::mkfifo(
            &home.join(dir).join(file),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .expect("mkfifo");
    }
    // Before, doctor opened the FIFO for a blocking read and never finished.
    let report = text(&env.cli_within(30, &["doctor"]).stdout);
    for file in [".aws/config", ".docker/config.json"] {
        assert!(
            report.lines().any(|l| l.contains("cannot read")
                && l.contains(file)
                && l.contains("not a regular file")),
            "{file}:\n{report}"
        );
    }
}

#[test]
fn git_helper_approved_via_git_serves_git_and_not_a_direct_run() {
    if !testkit::tools_available(&["git"], "git") {
        return;
    }
    let git_path = Command::new("sh")
        .args(["-c", "command -v git"])
        .output()
        .map(|o| text(&o.stdout).trim().to_string())
        .expect("find git");
    let env = Sandbox::new();
    let _d = env.start();
    let helper = env.copy_unique(GIT_HELPER, "git-credential-keychain-auth");
    let h = helper.to_str().expect("utf8");
    env.register(
        &helper,
        &["--read", "git", "--write", "git", "--via", &git_path],
    );
    let secret = format!("via-SECRET-{}", testkit::nonce());
    let approve = run_with_input(
        git(&env, &[h], &["credential", "approve"]),
        format!("protocol=https\nhost=v.example\nusername=u\npassword={secret}\n\n").as_bytes(),
    );
    assert!(approve.status.success(), "{}", text(&approve.stderr));
    let fill = run_with_input(
        git(&env, &[h, FALLBACK], &["credential", "fill"]),
        b"protocol=https\nhost=v.example\n\n",
    );
    assert!(
        text(&fill.stdout).contains(&format!("password={secret}")),
        "launched by git: served ({})",
        text(&fill.stderr)
    );
    // The same helper run on its own (not by git): nothing, and the reason on stderr.
    let mut direct = env.command(&helper);
    direct.arg("get");
    let out = run_with_input(direct, b"protocol=https\nhost=v.example\n\n");
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("launcher_not_allowed"),
        "{}",
        text(&out.stderr)
    );
    assert_secret_nowhere(&env, &secret, &[&text(&out.stderr), &text(&fill.stderr)]);
}

/// A dumb-HTTP git server on 127.0.0.1 that demands basic auth (`user`/`password`).
/// The end of every test HTTP server below: serve handler `H` on a free loopback port and
/// write the port to the file named by the last argument.
const SERVE: &str = r#"
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
with open(portfile + ".tmp", "w") as f:
    f.write(str(s.server_address[1]))
os.rename(portfile + ".tmp", portfile)
s.serve_forever()
"#;

/// Starts the Python HTTP server `handler` (ending in [`SERVE`]) with `args` and a port file;
/// returns the guard that stops it and its port.
fn http_server(env: &Sandbox, handler: &str, args: &[&str]) -> (KillOnDrop, String) {
    let portfile = env.root.join(format!("http-port-{}", testkit::nonce()));
    let server = env
        .command("python3")
        .arg("-c")
        .arg(format!("{handler}{SERVE}"))
        .args(args)
        .arg(&portfile)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("http server");
    let guard = KillOnDrop(server);
    let port = testkit::wait_for(20, "the HTTP server", || {
        std::fs::read_to_string(&portfile).ok()
    });
    (guard, port)
}

const AUTH_SERVER: &str = r#"
import base64, http.server, sys, os
root, user, password, portfile = sys.argv[1:5]
want = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
class H(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k):
        super().__init__(*a, directory=root, **k)
    def do_GET(self):
        if self.headers.get("Authorization") != want:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()
    def log_message(self, *a):
        pass
"#;

#[test]
fn git_clone_over_http_with_basic_auth_uses_the_helper() {
    if !testkit::tools_available(&["git", "python3"], "git python3") {
        return;
    }
    let env = Sandbox::new();
    let _d = env.start();
    let helper = env.copy_unique(GIT_HELPER, "git-credential-keychain-auth");
    env.register(&helper, &["--read", "git", "--write", "git"]);
    let h = helper.to_str().expect("utf8");
    let password = format!("http-SECRET-{}", testkit::nonce());
    // A bare repository with one commit, served as dumb HTTP.
    let srv = env.root.join("srv");
    let work = env.root.join("work");
    let sh = |script: &str| {
        let out = env
            .command("sh")
            .args(["-c", script])
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .expect("sh");
        assert!(out.status.success(), "{script}: {}", text(&out.stderr));
    };
    sh(&format!(
        "set -e; git init -q {w}; cd {w}; echo hello > f; git add f; \
         git -c user.name=t -c user.email=t@t commit -qm one; \
         git clone -q --bare {w} {s}/repo.git; cd {s}/repo.git; git update-server-info",
        w = work.display(),
        s = srv.display()
    ));
    let srv_arg = srv.to_str().expect("utf8");
    let (_server, port) = http_server(&env, AUTH_SERVER, &[srv_arg, "alice", &password]);
    let url = format!("http://127.0.0.1:{port}/repo.git");
    // Without a credential: the helper misses silently, git cannot prompt, the clone fails.
    let out = git(&env, &[h], &["clone", "-q", &url, "c1"])
        .current_dir(&env.root)
        .output()
        .expect("clone");
    assert!(!out.status.success());
    // Store it through the helper, as git does after a prompt succeeds.
    let approve = run_with_input(
        git(&env, &[h], &["credential", "approve"]),
        format!("protocol=http\nhost=127.0.0.1:{port}\nusername=alice\npassword={password}\n\n")
            .as_bytes(),
    );
    assert!(approve.status.success());
    let out = git(&env, &[h], &["clone", "-q", &url, "c2"])
        .current_dir(&env.root)
        .output()
        .expect("clone");
    assert!(out.status.success(), "clone failed: {}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(env.root.join("c2/f")).expect("cloned file"),
        "hello\n"
    );
    // A wrong stored password: the server refuses it, git tells the helper to erase it.
    let approve = run_with_input(
        git(&env, &[h], &["credential", "approve"]),
        format!("protocol=http\nhost=127.0.0.1:{port}\nusername=alice\npassword=wrong\n\n")
            .as_bytes(),
    );
    assert!(approve.status.success());
    let out = git(&env, &[h], &["clone", "-q", &url, "c3"])
        .current_dir(&env.root)
        .output()
        .expect("clone");
    assert!(!out.status.success());
    let gone = run_with_input(
        git(&env, &[h], &["credential", "fill"]),
        format!("protocol=http\nhost=127.0.0.1:{port}\n\n").as_bytes(),
    );
    assert!(
        !text(&gone.stdout).contains("password=wrong"),
        "git's reject erased the refused credential"
    );
    assert_secret_nowhere(&env, &password, &[&text(&out.stderr)]);
}

/// A registry that demands basic auth (`/v2/` and one manifest, `app:1`), as containers/image
/// expects one: argv user, password, port file.
const REGISTRY: &str = r#"
import base64, hashlib, http.server, json, sys, os
user, password, portfile = sys.argv[1:4]
want = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                     "rootfs": {"type": "layers", "diff_ids": []}}).encode()
manifest = json.dumps({"schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
               "size": len(config), "digest": "sha256:" + hashlib.sha256(config).hexdigest()},
    "layers": []}).encode()
class H(http.server.BaseHTTPRequestHandler):
    def reply(self, code, body, ctype="application/json"):
        self.send_response(code)
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        if code == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="registry"')
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
    def do_GET(self):
        if self.headers.get("Authorization") != want:
            return self.reply(401, b'{"errors":[{"code":"UNAUTHORIZED","message":"no"}]}')
        if self.path == "/v2/":
            return self.reply(200, b"{}")
        if self.path == "/v2/app/manifests/1":
            return self.reply(200, manifest, "application/vnd.docker.distribution.manifest.v2+json")
        return self.reply(404, b'{"errors":[{"code":"NOT_FOUND","message":"no"}]}')
    do_HEAD = do_GET
    def log_message(self, *a):
        pass
"#;

#[test]
fn skopeo_logs_in_pulls_and_logs_out_through_the_docker_helper() {
    if !testkit::tools_available(&["skopeo", "python3"], "skopeo python3") {
        return;
    }
    let env = Sandbox::new();
    let _d = env.start();
    let helper = env.copy_unique(DOCKER_HELPER, "docker-credential-keychain-auth");
    let skopeo = std::fs::canonicalize(
        text(
            &Command::new("sh")
                .args(["-c", "command -v skopeo"])
                .output()
                .expect("sh")
                .stdout,
        )
        .trim(),
    )
    .expect("skopeo path");
    // Served only when skopeo launched it (the container tools run helpers as children).
    env.register(
        &helper,
        &[
            "--read",
            "docker",
            "--write",
            "docker",
            "--via",
            skopeo.to_str().expect("utf8"),
        ],
    );
    let password = format!("reg-SECRET-{}", testkit::nonce());
    let (_server, port) = http_server(&env, REGISTRY, &["bob", &password]);
    let registry = format!("127.0.0.1:{port}");
    // containers-auth.json naming the helper for this registry; the helper found on PATH.
    let authfile = env.root.join("auth.json");
    std::fs::write(
        &authfile,
        serde_json::json!({"credHelpers": {&registry: "keychain-auth"}}).to_string(),
    )
    .expect("authfile");
    let path = format!(
        "{}:{}",
        helper.parent().expect("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let auth = authfile.to_str().expect("utf8");
    let run = |args: &[&str], input: &str| {
        let mut c = env.command(&skopeo);
        c.env("PATH", &path).args(args);
        run_with_input(c, input.as_bytes())
    };
    let image = format!("docker://{registry}/app:1");
    let pull = || {
        run(
            &[
                "inspect",
                "--raw",
                "--tls-verify=false",
                "--authfile",
                auth,
                &image,
            ],
            "",
        )
    };

    // Nothing stored yet: the registry refuses.
    assert!(!pull().status.success(), "served without credentials");
    // A wrong password is refused by the registry and never stored.
    let out = run(
        &[
            "login",
            "--tls-verify=false",
            "--authfile",
            auth,
            "-u",
            "bob",
            "--password-stdin",
            &registry,
        ],
        "wrong\n",
    );
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(
        !env.audit_records()
            .iter()
            .any(|r| r["action"] == "write" && r["service"] == "docker"),
        "a refused login wrote a credential"
    );
    // skopeo login checks the password with the registry, then stores it through the helper.
    let login = run(
        &[
            "login",
            "--tls-verify=false",
            "--authfile",
            auth,
            "-u",
            "bob",
            "--password-stdin",
            &registry,
        ],
        &format!("{password}\n"),
    );
    assert!(login.status.success(), "login: {}", text(&login.stderr));
    assert!(
        text(&login.stdout).contains("Login Succeeded"),
        "{}",
        text(&login.stdout)
    );
    let who = run(&["login", "--get-login", "--authfile", auth, &registry], "");
    assert_eq!(text(&who.stdout).trim(), "bob", "{}", text(&who.stderr));
    // The pull authenticates with what the helper read from the broker.
    let out = pull();
    assert!(out.status.success(), "inspect: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("\"schemaVersion\": 2"),
        "{}",
        text(&out.stdout)
    );
    // The same helper run without skopeo as its launcher gets nothing.
    let (code, out) = docker(&env, &helper, "get", registry.as_bytes());
    assert_eq!(code, Some(1));
    assert!(
        out.contains("launcher_not_allowed") && !out.contains(&password),
        "{out}"
    );
    // logout erases it through the helper; the next pull is refused again.
    let out = run(&["logout", "--authfile", auth, &registry], "");
    assert!(out.status.success(), "logout: {}", text(&out.stderr));
    assert!(!pull().status.success(), "served after logout");
    let records = env.audit_records();
    for action in ["write", "read", "delete"] {
        assert!(
            records.iter().any(|r| r["action"] == action
                && r["service"] == "docker"
                && r["status"] == "success"
                && r["chain"][1]["path"] == skopeo.to_str().expect("utf8")),
            "no {action} launched by skopeo in the audit log"
        );
    }
    assert_secret_nowhere(&env, &password, &[&text(&login.stderr)]);
}
