//! The Secret Service served by the broker (`start --secret-service`), with real clients on a
//! private session bus where gnome-keyring does not run: secret-tool (libsecret), Debian's
//! python3-keyring (secretstorage, Diffie-Hellman sessions), a raw `gdbus call`, and the
//! refusal to start while gnome-keyring owns the name.

use serde_json::Value;
use std::path::Path;
use std::process::Output;
use testkit::{Bus, Daemon, Keyring, Sandbox, run_with_input, tools_available, wait_for};

const NAME: &str = "org.freedesktop.secrets";

/// A broker serving the Secret Service on a private bus. Dropped daemon first, then the bus,
/// then the tree.
struct Served {
    daemon: Daemon,
    bus: Bus,
    env: Sandbox,
}

/// secret-tool's registration in most tests: read, write and search in `myapp`.
const SECRET_TOOL_MYAPP: &[&str] = &[
    "/usr/bin/secret-tool",
    "--read",
    "myapp",
    "--write",
    "myapp",
    "--search",
];

/// Registers secret-tool as [`SECRET_TOOL_MYAPP`] says.
fn register_myapp(env: &Sandbox) {
    let mut args = vec!["register"];
    args.extend_from_slice(SECRET_TOOL_MYAPP);
    env.cli_ok(&args);
}

fn tools() -> bool {
    tools_available(
        &["dbus-daemon", "dbus-send", "secret-tool", "gdbus"],
        "dbus libsecret-tools libglib2.0-bin",
    )
}

/// `keychain-auth start --secret-service` (file store) on a fresh private bus.
fn served() -> Option<Served> {
    if !tools() {
        return None;
    }
    let mut env = Sandbox::new();
    let bus = Bus::start(&env);
    env.extra_env.extend(bus.env());
    let daemon = env.start_args(&["--secret-service"]);
    bus.wait_for_owner(&env, NAME);
    Some(Served { daemon, bus, env })
}

impl Served {
    /// Runs `secret-tool ARGS` with `stdin`.
    fn secret_tool(&self, args: &[&str], stdin: &str) -> Output {
        let mut cmd = self.env.command("secret-tool");
        cmd.args(args);
        run_with_input(cmd, stdin.as_bytes())
    }

    /// Runs `gdbus call` on the broker's name: `object`, `method`, then `args`.
    fn gdbus(&self, program: &Path, object: &str, method: &str, args: &[&str]) -> Output {
        self.env
            .command(program)
            .args(["call", "--session", "--dest", NAME, "--object-path", object])
            .args(["--method", method])
            .args(args)
            .output()
            .expect("gdbus")
    }

    /// The audit records the D-Bus front wrote.
    fn dbus_records(&self) -> Vec<Value> {
        self.env
            .audit_records()
            .into_iter()
            .filter(|r| r["front"] == "dbus")
            .collect()
    }

    /// Every file of the tree except the plain file store holds no `needle`.
    fn nowhere_but_the_store(&self, needle: &str) {
        let store = self.env.file_store();
        for path in files(&self.env.root) {
            if path == store {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap_or_default();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "the secret is in {} ({})",
                path.display(),
                self.daemon.output()
            );
        }
    }
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(files(&p)),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
    out
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn secret_tool_is_refused_and_pending_until_approved_then_served() {
    let Some(s) = served() else { return };
    let secret = "pw-secret-tool-7f3a";
    // Unapproved: refused with the command that approves it, and queued.
    let out = s.secret_tool(
        &["store", "--label=x", "service", "myapp", "username", "bob"],
        secret,
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("is not approved"), "{}", text(&out));
    let out = s.secret_tool(&["lookup", "service", "myapp", "username", "bob"], "");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(secret));
    let pending = s.env.pending_entries();
    let entry = pending
        .iter()
        .find(|e| e["path"] == "/usr/bin/secret-tool")
        .unwrap_or_else(|| panic!("secret-tool is pending: {pending:?}"));
    assert_eq!(entry["last_service"], "myapp");

    // Approved for myapp: store, lookup, search, clear.
    register_myapp(&s.env);
    let out = s.secret_tool(
        &[
            "store",
            "--label=Bob",
            "service",
            "myapp",
            "username",
            "bob",
        ],
        secret,
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = s.secret_tool(&["lookup", "service", "myapp", "username", "bob"], "");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), secret);
    let out = s.secret_tool(&["search", "service", "myapp", "username", "bob"], "");
    // secret-tool prints the attributes on stderr.
    let shown = text(&out);
    assert!(out.status.success(), "{}", text(&out));
    for line in [
        "label = Bob",
        "attribute.service = myapp",
        "attribute.username = bob",
    ] {
        assert!(shown.contains(line), "{shown}");
    }
    assert!(
        !shown.contains("keychain-auth:"),
        "bookkeeping shown: {shown}"
    );
    // Stored again with the same attributes: replaced, not duplicated.
    let out = s.secret_tool(
        &[
            "store",
            "--label=Bob",
            "service",
            "myapp",
            "username",
            "bob",
        ],
        "pw-second",
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = s.secret_tool(&["search", "--all", "service", "myapp"], "");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches("secret = ")
            .count(),
        1,
        "{}",
        text(&out)
    );
    let out = s.secret_tool(&["clear", "service", "myapp", "username", "bob"], "");
    assert!(out.status.success(), "{}", text(&out));
    let out = s.secret_tool(&["lookup", "service", "myapp", "username", "bob"], "");
    assert!(
        !out.status.success() && out.stdout.is_empty(),
        "{}",
        text(&out)
    );

    // Every step a broker request through the D-Bus front, by secret-tool, chained.
    let records = s.dbus_records();
    for action in ["write", "search", "read", "delete"] {
        assert!(
            records.iter().any(|r| r["action"] == action
                && r["status"] == "success"
                && r["path"] == "/usr/bin/secret-tool"
                && r["service"] == "myapp"),
            "no {action} record: {records:?}"
        );
    }
    assert!(records.iter().any(|r| r["status"] == "denied"
        && r["reason"] == "unregistered_binary"
        && r["action"] == "write"));
    assert!(records.iter().all(|r| r["chain"][0]["path"] == r["path"]));
    s.env.cli_ok(&["audit", "verify"]);
    // The first value was written to the plain file store only (its store, which same-user
    // code can read: that is what the file store is); not to the audit log, the pending
    // queue, config.json or the daemon's output.
    s.nowhere_but_the_store(secret);
}

#[test]
fn namespaces_follow_the_rule_and_other_services_are_invisible() {
    let Some(s) = served() else { return };
    // Stored by a socket caller under aws: shown to D-Bus with service aws and its target.
    let writer = s
        .env
        .registered_client("writer", &["--write", "aws", "--write", "ops"]);
    s.env
        .write_ok(&writer, "aws", &[("prod-api-key", "aws-value-1")]);
    s.env.write_ok(&writer, "ops", &[("root", "ops-value-2")]);
    s.env.cli_ok(&[
        "register",
        "/usr/bin/secret-tool",
        "--read",
        "aws",
        "--search",
    ]);
    let out = s.secret_tool(&["lookup", "service", "aws", "target", "prod-api-key"], "");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "aws-value-1");
    // ops is not among secret-tool's services: refused, nothing shown.
    let out = s.secret_tool(&["search", "--all", "service", "ops"], "");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("ops-value-2") && !text(&out).contains("root"));
    // An item secret-tool may not write is not written.
    let out = s.secret_tool(&["store", "--label=l", "service", "aws", "k", "v"], "x");
    assert!(!out.status.success(), "{}", text(&out));
    // xdg:schema names the namespace when there is no service attribute.
    s.env.cli_ok(&[
        "grant",
        "/usr/bin/secret-tool",
        "--write",
        "org.example.Schema",
        "--read",
        "org.example.Schema",
    ]);
    let out = s.secret_tool(
        &[
            "store",
            "--label=l",
            "xdg:schema",
            "org.example.Schema",
            "user",
            "u",
        ],
        "schema-value",
    );
    assert!(out.status.success(), "{}", text(&out));
    let w = s
        .dbus_records()
        .into_iter()
        .rev()
        .find(|r| r["action"] == "write")
        .expect("a write record");
    assert_eq!(w["service"], "org.example.Schema");
    assert_eq!(w["targets"][0], "user=u");
}

/// Whether Debian's python3-keyring (with secretstorage) is installed; in CI its absence fails
/// the test, elsewhere the test says SKIPPED.
fn python_keyring() -> bool {
    let ok = Path::new("/usr/bin/python3").exists()
        && std::process::Command::new("/usr/bin/python3")
            .args(["-c", "import keyring, secretstorage"])
            .status()
            .is_ok_and(|st| st.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "this test needs python3-keyring (apt-get install python3-keyring)"
        );
        eprintln!("SKIPPED: needs python3-keyring (apt-get install python3-keyring)");
    }
    ok
}

#[test]
fn python_keyring_serves_an_approved_script_only() {
    let Some(s) = served() else { return };
    if !python_keyring() {
        return;
    }
    let dir = s.env.root.join("py");
    std::fs::create_dir_all(&dir).expect("py dir");
    let prelude = "#!/usr/bin/python3\nimport sys, keyring\nfrom keyring.backends import SecretService\nkeyring.set_keyring(SecretService.Keyring())\n";
    let set = dir.join("set.py");
    let get = dir.join("get.py");
    let other = dir.join("other.py");
    std::fs::write(
        &set,
        format!("{prelude}keyring.set_password('pyapp', 'alice', sys.stdin.read())\n"),
    )
    .expect("set.py");
    let getter = format!("{prelude}print(keyring.get_password('pyapp', 'alice'))\n");
    std::fs::write(&get, &getter).expect("get.py");
    std::fs::write(&other, format!("{getter}# another script\n")).expect("other.py");
    let py = |script: &Path, stdin: &str| {
        let mut cmd = s.env.command("/usr/bin/python3");
        cmd.arg(script);
        run_with_input(cmd, stdin.as_bytes())
    };
    let secret = "py-secret-51c0";
    s.env
        .cli_ok(&["register", set.to_str().expect("utf8"), "--write", "pyapp"]);
    s.env.cli_ok(&[
        "register",
        get.to_str().expect("utf8"),
        "--read",
        "pyapp",
        "--search",
    ]);
    let out = py(&set, secret);
    assert!(out.status.success(), "{}", text(&out));
    let out = py(&get, "");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), secret);
    // Another script run by the same interpreter is not approved.
    let out = py(&other, "");
    assert!(!text(&out).contains(secret), "{}", text(&out));
    assert!(text(&out).contains("is not approved"), "{}", text(&out));
    // Inline code has no script to approve: refused as on the socket.
    let out = s
        .env
        .command("/usr/bin/python3")
        .args([
            "-c",
            &format!("{prelude}print(keyring.get_password('pyapp', 'alice'))"),
        ])
        .output()
        .expect("python3 -c");
    assert!(!text(&out).contains(secret), "{}", text(&out));
    let records = s.dbus_records();
    let get_str = get.to_str().expect("utf8");
    assert!(
        records
            .iter()
            .any(|r| r["script"] == get_str && r["action"] == "read" && r["status"] == "success")
    );
    let other_str = other.to_str().expect("utf8");
    assert!(records.iter().any(|r| r["script"] == other_str
        && r["status"] == "denied"
        && r["reason"] == "unregistered_binary"));
    assert!(records.iter().any(
        |r| r["path"].as_str().is_some_and(|p| p.contains("python3"))
            && r["script"].is_null()
            && r["status"] == "denied"
    ));
    s.env.cli_ok(&["audit", "verify"]);
    s.nowhere_but_the_store(secret);
}

#[test]
fn a_raw_gdbus_call_from_an_unapproved_program_finds_and_reads_nothing() {
    let Some(s) = served() else { return };
    let secret = "raw-secret-9d21";
    register_myapp(&s.env);
    let out = s.secret_tool(
        &["store", "--label=l", "service", "myapp", "username", "eve"],
        secret,
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = s.secret_tool(&["search", "service", "myapp"], "");
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    // secret-tool prints the item's path relative to the collection: "[/iN]".
    let item = listed
        .lines()
        .find_map(|l| l.strip_prefix("[/").and_then(|l| l.strip_suffix(']')))
        .unwrap_or_else(|| panic!("an item path in {listed}"));
    let item_path = format!("/org/freedesktop/secrets/collection/login/{item}");

    // An unapproved program with its own hash.
    let gdbus = s.env.copy_unique("/usr/bin/gdbus", "gdbus");
    let service = "/org/freedesktop/secrets";
    let out = s.gdbus(
        &gdbus,
        service,
        "org.freedesktop.Secret.Service.SearchItems",
        &["{'service': 'myapp'}"],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("AccessDenied"), "{}", text(&out));
    let out = s.gdbus(
        &gdbus,
        service,
        "org.freedesktop.Secret.Service.OpenSession",
        &["plain", "<''>"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let session = String::from_utf8_lossy(&out.stdout)
        .split('\'')
        .find(|p| p.starts_with("/org/freedesktop/secrets/session/"))
        .expect("a session path")
        .to_string();
    // Every gdbus call is its own connection: a session opened by one is nobody else's.
    for (object, method, args) in [
        (
            service,
            "org.freedesktop.Secret.Service.GetSecrets",
            vec![format!("['{item_path}']"), session.clone()],
        ),
        (
            item_path.as_str(),
            "org.freedesktop.Secret.Item.GetSecret",
            vec![session.clone()],
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = s.gdbus(&gdbus, object, method, &args);
        assert!(!out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("NoSession"), "{}", text(&out));
        assert!(!text(&out).contains(secret));
    }
    let out = s.gdbus(
        &gdbus,
        &item_path,
        "org.freedesktop.DBus.Properties.GetAll",
        &["org.freedesktop.Secret.Item"],
    );
    assert_eq!(text(&out).trim(), "(@a{sv} {},)", "no property is answered");
    let out = s.gdbus(
        &gdbus,
        &item_path,
        "org.freedesktop.DBus.Properties.Get",
        &["org.freedesktop.Secret.Item", "Attributes"],
    );
    assert!(text(&out).contains("UnknownObject"), "{}", text(&out));
    assert!(!text(&out).contains("eve"), "{}", text(&out));
    let out = s.gdbus(
        &gdbus,
        "/org/freedesktop/secrets/collection/login",
        "org.freedesktop.DBus.Properties.Get",
        &["org.freedesktop.Secret.Collection", "Items"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("/i"), "{}", text(&out));
    // Another connection may not use the session the first one opened.
    let out = s.secret_tool(&["lookup", "service", "myapp", "username", "eve"], "");
    assert_eq!(String::from_utf8_lossy(&out.stdout), secret);
    let out = s.gdbus(
        Path::new("/usr/bin/gdbus"),
        &item_path,
        "org.freedesktop.Secret.Item.Delete",
        &[],
    );
    assert!(!out.status.success(), "{}", text(&out));
    let out = s.secret_tool(&["lookup", "service", "myapp", "username", "eve"], "");
    assert_eq!(String::from_utf8_lossy(&out.stdout), secret, "still there");

    let gdbus_str = gdbus.to_str().expect("utf8");
    let records = s.dbus_records();
    let denied: Vec<&Value> = records.iter().filter(|r| r["path"] == gdbus_str).collect();
    assert!(denied.len() >= 3, "{records:?}");
    assert!(denied.iter().all(|r| r["status"] == "denied"), "{denied:?}");
    s.env.cli_ok(&["audit", "verify"]);
    s.nowhere_but_the_store(secret);
}

#[test]
fn start_refuses_in_one_line_while_gnome_keyring_owns_the_name() {
    if !tools() || !testkit::keyring::keyring_tools_available() {
        return;
    }
    let mut env = Sandbox::new();
    let bus = Bus::start(&env);
    env.extra_env.extend(bus.env());
    let _keyring = Keyring::start(&env, &bus);
    let out = env.cli_within(20, &["start", "--secret-service"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("gnome-keyring-daemon"), "{err}");
    assert!(err.contains("is already owned by pid "), "{err}");
    assert!(err.contains("systemctl --user mask"), "{err}");
    // Nothing is left listening.
    assert!(testkit::status(&env.socket).is_none());
}

#[test]
fn losing_the_bus_is_noticed_and_audited() {
    let Some(mut s) = served() else { return };
    s.bus.stop();
    wait_for(10, "the loss in the daemon's output", || {
        s.daemon.output().contains("no longer reach").then_some(())
    });
    wait_for(10, "the loss in the audit log", || {
        s.env
            .audit_records()
            .iter()
            .any(|r| {
                r["action"] == "secret_service"
                    && r["status"] == "error"
                    && r["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("no longer reach"))
            })
            .then_some(())
    });
    // The socket still serves.
    assert!(s.daemon.status()["pid"].is_number());
}

#[test]
fn a_held_dbus_call_is_decided_by_the_approver() {
    use keychain_auth::server::approval::{Answer, ApproverEvent, Decision};
    if !tools() {
        return;
    }
    let mut env = Sandbox::new();
    let bus = Bus::start(&env);
    env.extra_env.extend(bus.env());
    // Registered before the in-process broker starts (the CLI sends changes only to a broker
    // running keychain-auth itself, and this one runs inside the test).
    let writer = env.registered_client("writer", &["--write", "myapp"]);
    let running = testkit::EmbeddedBroker::start(&env);
    let _secrets = running.rt.block_on(async {
        keychain_auth::dbus::connect_at(Some(&bus.address))
            .await
            .expect("the bus")
            .serve(running.broker.clone())
            .await
            .expect("the name")
    });
    env.write_ok(&writer, "myapp", &[("tok", "held-value-3b")]);
    let (_id, mut rx) = running.broker.approvals.attach();
    let next_prompt = |rx: &mut keychain_auth::server::approval::Events| {
        running.rt.block_on(async {
            loop {
                match tokio::time::timeout(std::time::Duration::from_secs(20), rx.recv()).await {
                    Ok(Some(ApproverEvent::Prompt(p))) => return *p,
                    Ok(Some(_)) => {}
                    other => panic!("no prompt: {other:?}"),
                }
            }
        })
    };
    let lookup = || {
        env.command("secret-tool")
            .args(["lookup", "service", "myapp", "target", "tok"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("secret-tool")
    };
    let answer = |id: &str, decision: Decision| {
        running
            .broker
            .approvals
            .answer(
                id,
                Answer {
                    decision,
                    by: "test approver".into(),
                },
            )
            .expect("an open prompt");
    };
    // Denied: the held call gets the refusal.
    let child = lookup();
    let p = next_prompt(&mut rx);
    assert_eq!(p.path, "/usr/bin/secret-tool");
    assert_eq!((p.action.as_str(), p.service.as_str()), ("search", "myapp"));
    answer(&p.id, Decision::Deny);
    let out = child.wait_with_output().expect("wait");
    assert!(
        !out.status.success() && out.stdout.is_empty(),
        "{}",
        text(&out)
    );
    // Once: the search is served, then the read asks in turn.
    let child = lookup();
    let p = next_prompt(&mut rx);
    answer(&p.id, Decision::Once);
    let p = next_prompt(&mut rx);
    assert_eq!((p.action.as_str(), p.service.as_str()), ("read", "myapp"));
    answer(&p.id, Decision::Once);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "held-value-3b",
        "{}",
        text(&out)
    );
    // Always: a grant of what the search needs (read and search myapp); served from then on.
    let child = lookup();
    let p = next_prompt(&mut rx);
    answer(&p.id, Decision::Always(Default::default()));
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "held-value-3b",
        "{}",
        text(&out)
    );
    let out = lookup().wait_with_output().expect("wait");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "held-value-3b",
        "{}",
        text(&out)
    );
    let records = env.audit_records();
    assert!(
        records
            .iter()
            .any(|r| r["event"] == "prompt" && r["front"] == "dbus")
    );
    assert!(records.iter().any(|r| r["decision"] == "once"
        && r["front"] == "dbus"
        && r["status"] == "success"
        && r["action"] == "read"));
    env.cli_ok(&["audit", "verify"]);
}

/// The attack the pidfd pin stops: an approved script opens a bus connection, is served, forks
/// and exits; its child keeps the connection (the bus still names the parent's pid) and asks
/// again.
#[test]
fn a_connection_kept_by_a_child_after_its_opener_exited_is_refused() {
    let Some(s) = served() else { return };
    if !std::process::Command::new("/usr/bin/python3")
        .args(["-c", "import secretstorage"])
        .status()
        .is_ok_and(|st| st.success())
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "needs python3-secretstorage"
        );
        eprintln!("SKIPPED: needs python3-secretstorage");
        return;
    }
    let writer = s.env.registered_client("writer", &["--write", "pyapp"]);
    s.env
        .write_ok(&writer, "pyapp", &[("tok", "fork-secret-e4")]);
    let script = s.env.root.join("fork.py");
    std::fs::write(
        &script,
        r#"#!/usr/bin/python3
import os, time, secretstorage
conn = secretstorage.dbus_init()
coll = secretstorage.get_default_collection(conn)
query = {'service': 'pyapp', 'target': 'tok'}
print('PARENT', [i.get_secret().decode() for i in coll.search_items(query)], flush=True)
parent = os.getpid()
if os.fork() != 0:
    os._exit(0)
while os.getppid() == parent:
    time.sleep(0.05)
try:
    print('CHILD', [i.get_secret().decode() for i in coll.search_items(query)], flush=True)
except Exception as e:
    print('REFUSED', e, flush=True)
"#,
    )
    .expect("fork.py");
    s.env.cli_ok(&[
        "register",
        script.to_str().expect("utf8"),
        "--read",
        "pyapp",
        "--search",
    ]);
    // Its output ends when the child, which holds the pipe, is done.
    let out = s
        .env
        .command("/usr/bin/python3")
        .arg(&script)
        .output()
        .expect("fork.py");
    let printed = text(&out);
    assert!(
        printed.contains("PARENT ['fork-secret-e4']"),
        "the opener is served: {printed}"
    );
    assert!(printed.contains("REFUSED"), "{printed}");
    assert!(!printed.contains("CHILD"), "{printed}");
    assert!(
        s.dbus_records().iter().any(|r| r["status"] == "denied"
            && r["message"]
                .as_str()
                .is_some_and(|m| m.contains("has exited"))),
        "{:?}",
        s.dbus_records()
    );
}

/// git-credential-libsecret, built from the source Debian's git ships, built once per test.
fn build_libsecret_helper(env: &Sandbox) -> Option<std::path::PathBuf> {
    let src = Path::new("/usr/share/doc/git/contrib/credential/libsecret");
    let have_dev = std::process::Command::new("pkg-config")
        .args(["--exists", "libsecret-1", "glib-2.0"])
        .status()
        .is_ok_and(|s| s.success());
    if !src.join("git-credential-libsecret.c").exists()
        || !have_dev
        || !tools_available(
            &["git", "gcc", "make"],
            "git libsecret-1-dev gcc make pkg-config",
        )
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "needs git's libsecret helper source and libsecret-1-dev"
        );
        eprintln!("SKIPPED: needs git, libsecret-1-dev, gcc, make, pkg-config");
        return None;
    }
    let dir = env.root.join("libsecret-helper");
    std::fs::create_dir_all(&dir).expect("helper dir");
    for f in ["Makefile", "git-credential-libsecret.c"] {
        std::fs::copy(src.join(f), dir.join(f)).expect("copy the helper's source");
    }
    let out = std::process::Command::new("make")
        .arg("-s")
        .current_dir(&dir)
        .output()
        .expect("make");
    assert!(out.status.success(), "make: {}", text(&out));
    Some(dir.join("git-credential-libsecret"))
}

#[test]
fn git_credential_libsecret_approves_fills_and_rejects_through_the_broker() {
    let Some(s) = served() else { return };
    let Some(helper) = build_libsecret_helper(&s.env) else {
        return;
    };
    let helper_str = helper.to_str().expect("utf8").to_string();
    let git = |helper: &str, op: &str, input: &str| {
        let mut cmd = s.env.command("git");
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args([
                "-c",
                &format!("credential.helper={helper}"),
                "credential",
                op,
            ]);
        run_with_input(cmd, input.as_bytes())
    };
    let full = "protocol=https\nhost=git.example.com\nusername=alice\npassword=git-pw-0c7e\n\n";
    let ask = "protocol=https\nhost=git.example.com\n\n";
    // Not approved: nothing is stored, nothing is filled.
    git(&helper_str, "approve", full);
    let out = git(&helper_str, "fill", ask);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("git-pw-0c7e"));
    let ns = "org.gnome.keyring.NetworkPassword";
    assert!(
        s.env
            .pending_entries()
            .iter()
            .any(|e| e["path"] == helper_str.as_str() && e["last_service"] == ns),
        "the helper is pending for {ns}"
    );
    s.env.cli_ok(&[
        "register",
        &helper_str,
        "--read",
        ns,
        "--write",
        ns,
        "--search",
    ]);
    let out = git(&helper_str, "approve", full);
    assert!(out.status.success(), "{}", text(&out));
    let out = git(&helper_str, "fill", ask);
    assert!(out.status.success(), "{}", text(&out));
    let filled = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(filled.contains("username=alice\n"), "{filled}");
    assert!(filled.contains("password=git-pw-0c7e\n"), "{filled}");
    // The same helper rebuilt with another hash is another program: not served.
    let copy = s.env.copy_unique(&helper, "git-credential-libsecret-copy");
    let out = git(copy.to_str().expect("utf8"), "fill", ask);
    assert!(!text(&out).contains("git-pw-0c7e"), "{}", text(&out));
    // Reject erases it.
    let out = git(&helper_str, "reject", full);
    assert!(out.status.success(), "{}", text(&out));
    let out = git(&helper_str, "fill", ask);
    assert!(!out.status.success(), "{}", text(&out));
    let records = s.dbus_records();
    for action in ["write", "search", "read", "delete"] {
        assert!(
            records.iter().any(|r| r["action"] == action
                && r["status"] == "success"
                && r["path"] == helper_str.as_str()
                && r["service"] == ns),
            "no {action}: {records:?}"
        );
    }
    s.env.cli_ok(&["audit", "verify"]);
    s.nowhere_but_the_store("git-pw-0c7e");
}

#[test]
fn import_copies_gnome_keyring_items_then_the_broker_serves_them() {
    let Some(mut k) = testkit::KeyringSandbox::start() else {
        return;
    };
    if !tools() {
        return;
    }
    let out = k.secret_tool(
        &[
            "store",
            "--label=Bob",
            "service",
            "myapp",
            "username",
            "bob",
        ],
        Some("imported-pw-1"),
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = k.secret_tool(
        &[
            "store",
            "--label=Git",
            "xdg:schema",
            "org.example.Net",
            "server",
            "h",
        ],
        Some("imported-pw-2"),
    );
    assert!(out.status.success(), "{}", text(&out));
    k.sandbox
        .extra_env
        .push(("KEYCHAIN_AUTH_BACKEND".into(), "file".into()));
    let first = k.sandbox.cli_ok(&["import", "--from", "secret-service"]);
    assert!(first.contains("imported 2 item(s)"), "{first}");
    let again = k.sandbox.cli_ok(&["import", "--from", "secret-service"]);
    assert!(
        again.contains("imported 0 item(s)") && again.contains("2 already there"),
        "{again}"
    );
    // Switch: gnome-keyring stops, the broker takes the name.
    k.keyring.take().expect("keyring").stop();
    let daemon = k.sandbox.start_args(&["--secret-service"]);
    k.bus.wait_for_owner(&k.sandbox, NAME);
    k.sandbox.cli_ok(&[
        "register",
        "/usr/bin/secret-tool",
        "--read",
        "myapp",
        "--read",
        "org.example.Net",
        "--search",
    ]);
    let out = k.secret_tool(&["lookup", "service", "myapp", "username", "bob"], None);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "imported-pw-1",
        "{}",
        text(&out)
    );
    let out = k.secret_tool(
        &["search", "xdg:schema", "org.example.Net", "server", "h"],
        None,
    );
    assert!(text(&out).contains("label = Git"), "{}", text(&out));
    assert!(
        text(&out).contains("secret = imported-pw-2"),
        "{}",
        text(&out)
    );
    // doctor names who owns the name now.
    let doctor = k.sandbox.cli(&["doctor"]);
    let shown = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        shown.contains(&format!("{NAME} is owned by pid {}", daemon.pid())),
        "{shown}"
    );
    assert!(
        k.sandbox
            .audit_records()
            .iter()
            .any(|r| r["action"] == "import" && r["count"] == 2),
        "the import is audited"
    );
    k.sandbox.cli_ok(&["audit", "verify"]);
}

#[test]
fn the_activation_file_starts_the_broker_on_the_first_call() {
    if !tools() {
        return;
    }
    let mut env = Sandbox::new();
    let services = env.root.join("data/dbus-1/services");
    std::fs::create_dir_all(&services).expect("services dir");
    let file =
        keychain_auth::dbus::activation::activation_file(Path::new(testkit::daemon_bin()), None)
            .expect("activation file");
    std::fs::write(
        services.join(keychain_auth::dbus::activation::FILE_NAME),
        file,
    )
    .expect("write it");
    let bus = Bus::start_with_services(&env, Some(&services));
    env.extra_env.extend(bus.env());
    register_myapp(&env);
    assert!(testkit::status(&env.socket).is_none(), "nothing runs yet");
    let mut cmd = env.command("secret-tool");
    cmd.args(["store", "--label=l", "service", "myapp", "username", "act"]);
    let out = run_with_input(cmd, b"activated-pw");
    // The bus started the broker for this call; stop it whatever happens next.
    let status = testkit::status(&env.socket);
    if let Some(pid) = status.as_ref().and_then(|s| s["pid"].as_i64()) {
        let stop = scopeguard(pid as i32);
        assert!(out.status.success(), "{}", text(&out));
        let mut cmd = env.command("secret-tool");
        cmd.args(["lookup", "service", "myapp", "username", "act"]);
        let out = run_with_input(cmd, b"");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "activated-pw");
        drop(stop);
    } else {
        panic!("the bus did not start the broker: {}", text(&out));
    }
}

/// Sends SIGTERM to `pid` (a broker the bus started for a test) when dropped.
fn scopeguard(pid: i32) -> impl Drop {
    struct Stop(i32);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
    Stop(pid)
}

/// A broker serving the Secret Service from a vault (started locked), and the passphrase.
struct Vaulted {
    _daemon: Daemon,
    _bus: Bus,
    env: Sandbox,
    with_pass: [(String, std::ffi::OsString); 1],
}

/// `init` a vault, run `registrations` (each the arguments after `register`) with presence,
/// then `start --secret-service` without the passphrase: the vault is locked.
fn vaulted(registrations: &[&[&str]]) -> Option<Vaulted> {
    vaulted_with(registrations, &[])
}

/// [`vaulted`], with `config` keys set in config.json by hand and adopted (`policy accept`,
/// with presence) before the start.
fn vaulted_with(registrations: &[&[&str]], config: &[(&str, Value)]) -> Option<Vaulted> {
    if !tools() {
        return None;
    }
    let mut env = Sandbox::new();
    env.extra_env
        .push(("KEYCHAIN_AUTH_VAULT_KDF".into(), "floor".into()));
    let pass = env.root.join("pass");
    env.write_private(&pass, "vault pass phrase\n");
    let with_pass = [(
        "KEYCHAIN_AUTH_PASSPHRASE_FILE".to_string(),
        std::ffi::OsString::from(&pass),
    )];
    let out = env.cli_env(&with_pass, &["init"]);
    assert!(out.status.success(), "init: {}", text(&out));
    for args in registrations {
        let mut all = vec!["register"];
        all.extend_from_slice(args);
        let out = env.cli_env(&with_pass, &all);
        assert!(out.status.success(), "register: {}", text(&out));
    }
    if !config.is_empty() {
        let path = env.config();
        let mut file: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("config.json"))
                .expect("config.json parses");
        for (k, v) in config {
            file[*k] = v.clone();
        }
        std::fs::write(&path, file.to_string()).expect("config.json");
        let out = env.cli_env(&with_pass, &["policy", "accept", "--yes"]);
        assert!(out.status.success(), "policy accept: {}", text(&out));
    }
    let bus = Bus::start(&env);
    env.extra_env.extend(bus.env());
    let daemon = env.start_args(&["--secret-service"]);
    bus.wait_for_owner(&env, NAME);
    Some(Vaulted {
        _daemon: daemon,
        _bus: bus,
        env,
        with_pass,
    })
}

impl Vaulted {
    /// `keychain-auth unlock` (or `lock`), which must succeed.
    fn vault(&self, op: &str) {
        let out = self.env.cli_env(&self.with_pass, &[op]);
        assert!(out.status.success(), "{op}: {}", text(&out));
    }

    /// `secret-tool ARGS` with `stdin`, run to its end.
    fn secret_tool(&self, args: &[&str], stdin: &str) -> Output {
        let mut cmd = self.env.command("secret-tool");
        cmd.args(args);
        run_with_input(cmd, stdin.as_bytes())
    }

    /// `PROGRAM ARGS` started with `stdin` written and closed, its output piped.
    fn spawn(&self, program: &str, args: &[&str], stdin: &str) -> std::process::Child {
        use std::io::Write;
        let mut child = self
            .env
            .command(program)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin.as_bytes()).expect("stdin");
        drop(input);
        child
    }

    /// The prompt objects the broker serves now.
    fn prompts(&self) -> usize {
        let out = self
            .env
            .command("gdbus")
            .args(["introspect", "--session", "--dest", NAME])
            .args(["--object-path", "/org/freedesktop/secrets/prompt"])
            .output()
            .expect("gdbus introspect");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.trim_start().starts_with("node p"))
            .count()
    }

    /// Whether the collection says it is locked.
    fn collection_locked(&self) -> bool {
        let out = self
            .env
            .command("gdbus")
            .args(["call", "--session", "--dest", NAME])
            .args(["--object-path", "/org/freedesktop/secrets/collection/login"])
            .args(["--method", "org.freedesktop.DBus.Properties.Get"])
            .args(["org.freedesktop.Secret.Collection", "Locked"])
            .output()
            .expect("gdbus");
        let shown = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(shown.contains("true") || shown.contains("false"), "{shown}");
        shown.contains("true")
    }

    /// Every file of the tree holds no `needle` (the vault encrypts).
    fn nowhere_on_disk(&self, needle: &str) {
        for path in files(&self.env.root) {
            let bytes = std::fs::read(&path).unwrap_or_default();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "the secret is in {}",
                path.display()
            );
        }
    }
}

#[test]
fn an_attached_dashboard_completes_a_locked_vaults_prompt_with_the_passphrase() {
    if !tools_available(&["tmux"], "tmux") {
        return;
    }
    let Some(v) = vaulted(&[SECRET_TOOL_MYAPP]) else {
        return;
    };
    v.vault("unlock");
    let out = v.secret_tool(
        &["store", "--label=l", "service", "myapp", "username", "v"],
        "dash-pw-41",
    );
    assert!(out.status.success(), "{}", text(&out));
    // A connected dashboard proves presence, then the vault is locked again.
    let tmux = testkit::Dashboard::start(&v.env, &["tui", "--connect"]);
    tmux.wait_screen("the presence dialog", |s| s.contains("Prove presence"));
    tmux.keys(&["-l", "vault pass phrase"]);
    tmux.keys(&["Enter"]);
    tmux.wait_screen("present", |s| s.contains(" present ·"));
    v.vault("lock");
    tmux.wait_screen("locked", |s| s.contains("vault locked"));

    // secret-tool waits on its Prompt; the dashboard shows an unlock prompt naming it.
    let lookup = v.spawn(
        "secret-tool",
        &["lookup", "service", "myapp", "username", "v"],
        "",
    );
    tmux.wait_screen("the unlock prompt for secret-tool", |s| {
        s.contains("The vault is locked: a caller is waiting") && s.contains("secret-tool")
    });
    tmux.keys(&["Enter"]);
    tmux.wait_screen("the unlock dialog", |s| s.contains("Unlock the vault"));
    tmux.keys(&["-l", "vault pass phrase"]);
    tmux.keys(&["Enter"]);
    let out = lookup.wait_with_output().expect("lookup");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "dash-pw-41");

    // Refused at the dashboard: the client's prompt is dismissed, nothing is read.
    v.vault("lock");
    let lookup = v.spawn(
        "secret-tool",
        &["lookup", "service", "myapp", "username", "v"],
        "",
    );
    tmux.wait_screen("the unlock prompt again", |s| {
        s.contains("The vault is locked: a caller is waiting") && s.contains("secret-tool")
    });
    tmux.keys(&["n"]);
    let out = lookup.wait_with_output().expect("lookup");
    assert!(
        out.stdout.is_empty() && !text(&out).contains("dash-pw-41"),
        "{}",
        text(&out)
    );
    assert!(v.collection_locked(), "a refusal unlocks nothing");
    tmux.keys(&["q"]);
}

#[test]
fn secret_tool_waits_on_a_locked_vault_and_is_served_once_the_person_unlocks_it() {
    let Some(v) = vaulted(&[SECRET_TOOL_MYAPP]) else {
        return;
    };
    assert!(v.collection_locked());
    v.vault("unlock");
    let out = v.secret_tool(
        &["store", "--label=l", "service", "myapp", "username", "v"],
        "vault-pw-77",
    );
    assert!(out.status.success(), "{}", text(&out));
    v.vault("lock");
    assert!(v.collection_locked());

    // Locked: lookup (SearchItems, Unlock, Prompt) and store (CreateItem refused IsLocked,
    // Unlock, Prompt) both wait for the person, one prompt each.
    let lookup = v.spawn(
        "secret-tool",
        &["lookup", "service", "myapp", "username", "v"],
        "",
    );
    let store = v.spawn(
        "secret-tool",
        &["store", "--label=w", "service", "myapp", "username", "w"],
        "stored-while-locked-5e",
    );
    wait_for(20, "two prompts", || (v.prompts() == 2).then_some(()));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (mut lookup, mut store) = (lookup, store);
    assert!(lookup.try_wait().expect("wait").is_none(), "lookup waits");
    assert!(store.try_wait().expect("wait").is_none(), "store waits");

    // The person unlocks: both complete.
    v.vault("unlock");
    let out = lookup.wait_with_output().expect("lookup");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "vault-pw-77");
    let out = store.wait_with_output().expect("store");
    assert!(out.status.success(), "{}", text(&out));
    let out = v.secret_tool(&["lookup", "service", "myapp", "username", "w"], "");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "stored-while-locked-5e"
    );
    // Completed prompts leave the bus.
    wait_for(10, "prompts removed", || (v.prompts() == 0).then_some(()));

    // A lookup of something that is not there waits too, then finds nothing.
    v.vault("lock");
    let mut missing = v.spawn(
        "secret-tool",
        &["lookup", "service", "myapp", "username", "nobody"],
        "",
    );
    wait_for(20, "a prompt", || (v.prompts() == 1).then_some(()));
    assert!(missing.try_wait().expect("wait").is_none());
    v.vault("unlock");
    let out = missing.wait_with_output().expect("lookup");
    assert!(
        !out.status.success() && out.stdout.is_empty(),
        "{:?} {}",
        out.status,
        text(&out)
    );

    // An unapproved program's search kept over the lock is decided for it after the unlock,
    // like any other: refused, audited, nothing found.
    v.vault("lock");
    let stranger = v.env.copy_unique("/usr/bin/secret-tool", "secret-tool");
    let stranger_s = stranger.to_str().expect("utf8");
    let probing = v.spawn(
        stranger_s,
        &["lookup", "service", "myapp", "username", "v"],
        "",
    );
    wait_for(20, "a prompt", || (v.prompts() == 1).then_some(()));
    v.vault("unlock");
    let out = probing.wait_with_output().expect("lookup");
    assert!(out.stdout.is_empty(), "{}", text(&out));
    assert!(!text(&out).contains("vault-pw-77"));
    assert!(
        v.env.audit_records().iter().any(|r| r["front"] == "dbus"
            && r["path"] == stranger_s
            && r["action"] == "search"
            && r["status"] == "denied"),
        "the kept search was decided and refused"
    );

    // The lookups and the store were broker requests as secret-tool, after the unlock.
    let records: Vec<Value> = v
        .env
        .audit_records()
        .into_iter()
        .filter(|r| r["front"] == "dbus" && r["path"] == "/usr/bin/secret-tool")
        .collect();
    assert!(
        records
            .iter()
            .any(|r| r["action"] == "read" && r["status"] == "success"),
        "{records:?}"
    );
    assert!(
        records
            .iter()
            .filter(|r| r["action"] == "write" && r["status"] == "success")
            .count()
            >= 2,
        "{records:?}"
    );
    let out = v.env.cli_env(&v.with_pass, &["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
    v.nowhere_on_disk("vault-pw-77");
    v.nowhere_on_disk("stored-while-locked-5e");
}

#[test]
fn python_keyring_unlocks_through_the_prompt_and_a_dismissed_prompt_unlocks_nothing() {
    if !python_keyring() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let prelude = "#!/usr/bin/python3\nimport sys, keyring\nfrom keyring.backends import SecretService\nkeyring.set_keyring(SecretService.Keyring())\n";
    let set = dir.path().join("set.py");
    let get = dir.path().join("get.py");
    std::fs::write(
        &set,
        format!("{prelude}keyring.set_password('pyapp', 'alice', sys.stdin.read())\n"),
    )
    .expect("set.py");
    std::fs::write(
        &get,
        format!("{prelude}print(keyring.get_password('pyapp', 'alice'))\n"),
    )
    .expect("get.py");
    let (set_s, get_s) = (set.to_str().expect("utf8"), get.to_str().expect("utf8"));
    let Some(v) = vaulted(&[
        &[set_s, "--write", "pyapp"],
        &[get_s, "--read", "pyapp", "--search"],
    ]) else {
        return;
    };
    v.vault("unlock");
    let mut cmd = v.env.command("/usr/bin/python3");
    cmd.arg(&set);
    let out = run_with_input(cmd, b"py-locked-secret-2d");
    assert!(out.status.success(), "{}", text(&out));
    v.vault("lock");

    // keyring sees the collection locked, calls Unlock and runs the prompt: it waits.
    let mut getter = v.spawn("/usr/bin/python3", &[get_s], "");
    wait_for(20, "a prompt", || (v.prompts() == 1).then_some(()));
    assert!(getter.try_wait().expect("wait").is_none(), "keyring waits");
    v.vault("unlock");
    let out = getter.wait_with_output().expect("get.py");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "py-locked-secret-2d"
    );

    // Dismissed: Completed(true, []) to the connection that opened the prompt, which another
    // connection can neither run nor dismiss; the prompt then leaves the bus.
    v.vault("lock");
    let dismiss = dir.path().join("dismiss.py");
    std::fs::write(
        &dismiss,
        r#"#!/usr/bin/python3
import subprocess, secretstorage
from secretstorage.util import DBusAddressWrapper
from jeepney import MatchRule, MessageType
conn = secretstorage.dbus_init()
svc = DBusAddressWrapper('/org/freedesktop/secrets', 'org.freedesktop.Secret.Service', conn)
unlocked, prompt = svc.call('Unlock', 'ao', ['/org/freedesktop/secrets/aliases/default'])
print('unlock', len(unlocked), prompt.startswith('/org/freedesktop/secrets/prompt/p'))
other = subprocess.run(['gdbus', 'call', '--session', '--dest', 'org.freedesktop.secrets',
                        '--object-path', prompt, '--method', 'org.freedesktop.Secret.Prompt.Dismiss'],
                       capture_output=True, text=True)
print('other', other.returncode, 'NoSuchObject' in other.stderr or 'UnknownObject' in other.stderr)
p = DBusAddressWrapper(prompt, 'org.freedesktop.Secret.Prompt', conn)
rule = MatchRule(path=prompt, interface='org.freedesktop.Secret.Prompt', member='Completed',
                 type=MessageType.signal)
with conn.filter(rule) as signals:
    p.call('Prompt', 's', '')
    p.call('Dismiss', '')
    dismissed, result = conn.recv_until_filtered(signals, timeout=10).body
print('completed', dismissed, result[0], list(result[1]))
try:
    p.call('Prompt', 's', '')
    print('still there')
except Exception as e:
    print('gone', type(e).__name__)
opened = 0
try:
    for _ in range(9):
        svc.call('Unlock', 'ao', ['/org/freedesktop/secrets/collection/login'])
        opened += 1
    print('unbounded')
except Exception as e:
    print('bounded', opened, 'unlock prompts' in str(e))
"#,
    )
    .expect("dismiss.py");
    let out = v
        .env
        .command("/usr/bin/python3")
        .arg(&dismiss)
        .output()
        .expect("dismiss.py");
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    for line in [
        "unlock 0 True",
        "other 1 True",
        "completed True ao []",
        "gone ",
        "bounded 8 True",
    ] {
        assert!(shown.contains(line), "{line:?} in {shown}");
    }
    assert!(v.collection_locked(), "a dismissed prompt unlocks nothing");
    // The eight prompts it left unrun went with its connection.
    wait_for(10, "prompts removed", || (v.prompts() == 0).then_some(()));
}

#[test]
fn an_unlock_prompt_nobody_answers_completes_dismissed_at_the_bound() {
    let Some(v) = vaulted_with(
        &[SECRET_TOOL_MYAPP],
        &[("secret_service_unlock_timeout_s", 2.into())],
    ) else {
        return;
    };
    v.vault("unlock");
    let out = v.secret_tool(
        &["store", "--label=l", "service", "myapp", "username", "t"],
        "bounded-wait-0a",
    );
    assert!(out.status.success(), "{}", text(&out));
    v.vault("lock");
    let started = std::time::Instant::now();
    let child = v.spawn(
        "secret-tool",
        &["lookup", "service", "myapp", "username", "t"],
        "",
    );
    wait_for(20, "a prompt", || (v.prompts() == 1).then_some(()));
    let out = child.wait_with_output().expect("lookup");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "completed before the bound"
    );
    assert!(
        !out.status.success() && out.stdout.is_empty(),
        "{}",
        text(&out)
    );
    wait_for(10, "prompt removed", || (v.prompts() == 0).then_some(()));
    assert!(v.collection_locked());
}

#[test]
fn lock_over_dbus_locks_for_a_registered_caller_only_and_is_audited() {
    if !python_keyring() {
        return;
    }
    // A real client: secretstorage's Collection.lock(). (Debian 12's secret-tool 0.20.5 `lock`
    // sends the same Service.Lock but then dies of SIGSEGV after the reply; not used here.)
    let dir = tempfile::tempdir().expect("dir");
    let lock = dir.path().join("lock.py");
    std::fs::write(
        &lock,
        "#!/usr/bin/python3\nimport secretstorage\nc = secretstorage.get_default_collection(secretstorage.dbus_init())\nc.lock()\nprint('locked', c.is_locked())\n",
    )
    .expect("lock.py");
    let lock_s = lock.to_str().expect("utf8");
    let Some(v) = vaulted(&[SECRET_TOOL_MYAPP, &[lock_s, "--read", "myapp"]]) else {
        return;
    };
    v.vault("unlock");
    assert!(!v.collection_locked());
    // An unregistered program (its own hash): nothing is locked, the refusal is audited.
    let gdbus = v.env.copy_unique("/usr/bin/gdbus", "gdbus");
    let out = v
        .env
        .command(&gdbus)
        .args(["call", "--session", "--dest", NAME])
        .args(["--object-path", "/org/freedesktop/secrets"])
        .args(["--method", "org.freedesktop.Secret.Service.Lock"])
        .arg("['/org/freedesktop/secrets/collection/login']")
        .output()
        .expect("gdbus");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(text(&out).trim(), "(@ao [], objectpath '/')");
    assert!(!v.collection_locked(), "an unknown caller locks nothing");
    let out = v.secret_tool(
        &["store", "--label=l", "service", "myapp", "username", "v"],
        "still-served-81",
    );
    assert!(out.status.success(), "{}", text(&out));

    // A script registered for myapp: the vault is locked, its keys gone.
    let mut cmd = v.env.command("/usr/bin/python3");
    cmd.arg(&lock);
    let out = run_with_input(cmd, b"");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("locked True"), "{}", text(&out));
    assert!(
        v.collection_locked(),
        "the registered caller locked the vault"
    );

    // Both audited with "front":"dbus" (the records wait for the unlock and the audit key).
    v.vault("unlock");
    let records = v.env.audit_records();
    let locks: Vec<&Value> = records
        .iter()
        .filter(|r| r["event"] == "vault" && r["action"] == "lock" && r["front"] == "dbus")
        .collect();
    let gdbus_s = gdbus.to_str().expect("utf8");
    assert!(
        locks
            .iter()
            .any(|r| r["path"] == gdbus_s && r["status"] == "denied"),
        "{locks:?}"
    );
    assert!(
        locks
            .iter()
            .any(|r| r["script"] == lock_s && r["status"] == "success"),
        "{locks:?}"
    );
    let out = v.env.cli_env(&v.with_pass, &["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn set_alias_accepts_only_default_and_the_collection_cannot_be_deleted() {
    let Some(s) = served() else { return };
    register_myapp(&s.env);
    let out = s.secret_tool(
        &["store", "--label=l", "service", "myapp", "username", "d"],
        "kept-value-3c",
    );
    assert!(out.status.success(), "{}", text(&out));
    let gdbus = Path::new("/usr/bin/gdbus");
    let service = "/org/freedesktop/secrets";
    let collection = "/org/freedesktop/secrets/collection/login";
    // default pointed at the one collection: accepted, changes nothing.
    for target in [collection, "/org/freedesktop/secrets/aliases/default"] {
        let out = s.gdbus(
            gdbus,
            service,
            "org.freedesktop.Secret.Service.SetAlias",
            &["default", target],
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    // Anything else is refused with the reason.
    for (name, target) in [
        ("default", "/"),
        ("default", "/org/freedesktop/secrets/collection/other"),
        ("work", collection),
    ] {
        let out = s.gdbus(
            gdbus,
            service,
            "org.freedesktop.Secret.Service.SetAlias",
            &[name, target],
        );
        assert!(!out.status.success(), "{name} {target}: {}", text(&out));
        assert!(text(&out).contains("NotSupported"), "{}", text(&out));
        assert!(text(&out).contains("one collection"), "{}", text(&out));
    }
    let out = s.gdbus(
        gdbus,
        service,
        "org.freedesktop.Secret.Service.ReadAlias",
        &["default"],
    );
    assert!(text(&out).contains(collection), "{}", text(&out));

    // Deleting the collection would delete every service's items: refused, even to a caller
    // approved for one service, and audited; nothing is deleted.
    let py = s.env.root.join("delete.py");
    std::fs::write(
        &py,
        "#!/usr/bin/python3\nimport secretstorage\nc = secretstorage.get_default_collection(secretstorage.dbus_init())\ntry:\n    c.delete()\n    print('deleted')\nexcept Exception as e:\n    print('refused', e)\n",
    )
    .expect("delete.py");
    let py_s = py.to_str().expect("utf8");
    s.env
        .cli_ok(&["register", py_s, "--read", "myapp", "--write", "myapp"]);
    let out = s
        .env
        .command("/usr/bin/python3")
        .arg(&py)
        .output()
        .expect("delete.py");
    assert!(text(&out).contains("refused"), "{}", text(&out));
    assert!(
        !text(&out).lines().any(|l| l == "deleted"),
        "{}",
        text(&out)
    );
    let out = s.gdbus(
        gdbus,
        collection,
        "org.freedesktop.Secret.Collection.Delete",
        &[],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("AccessDenied"), "{}", text(&out));
    let out = s.secret_tool(&["lookup", "service", "myapp", "username", "d"], "");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "kept-value-3c");
    let records = s.dbus_records();
    assert!(
        records.iter().any(|r| r["action"] == "delete_collection"
            && r["status"] == "denied"
            && r["script"] == py_s),
        "{records:?}"
    );
    s.env.cli_ok(&["audit", "verify"]);
}

#[test]
fn a_search_kept_over_the_lock_is_answered_by_unlock_without_a_prompt_once_unlocked() {
    use std::io::{BufRead, Write};
    if !python_keyring() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let script = dir.path().join("kept.py");
    std::fs::write(
        &script,
        r#"#!/usr/bin/python3
import sys, secretstorage
from secretstorage.util import DBusAddressWrapper
conn = secretstorage.dbus_init()
svc = DBusAddressWrapper('/org/freedesktop/secrets', 'org.freedesktop.Secret.Service', conn)
unlocked, locked = svc.call('SearchItems', 'a{ss}', {'service': 'myapp', 'username': 'k'})
print('searched', len(unlocked), [p.rsplit('/', 1)[1][0] for p in locked], flush=True)
sys.stdin.readline()
paths, prompt = svc.call('Unlock', 'ao', locked)
print('unlock', prompt, [p.rsplit('/', 1)[1][0] for p in paths], flush=True)
"#,
    )
    .expect("kept.py");
    let script_s = script.to_str().expect("utf8");
    let Some(v) = vaulted(&[
        SECRET_TOOL_MYAPP,
        &[script_s, "--read", "myapp", "--search"],
    ]) else {
        return;
    };
    v.vault("unlock");
    let out = v.secret_tool(
        &["store", "--label=l", "service", "myapp", "username", "k"],
        "kept-search-9b",
    );
    assert!(out.status.success(), "{}", text(&out));
    v.vault("lock");
    let mut child = v
        .env
        .command("/usr/bin/python3")
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kept.py");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(
        first, "searched 0 ['q']",
        "one locked item stands for the search"
    );
    // Unlocked in between: Unlock makes the kept search now and needs no prompt.
    v.vault("unlock");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("go");
    let second = lines.next().and_then(Result::ok).unwrap_or_default();
    let out = child.wait_with_output().expect("kept.py");
    assert_eq!(second, "unlock / ['i']", "{}", text(&out));
    assert!(v.env.audit_records().iter().any(|r| r["front"] == "dbus"
        && r["script"] == script_s
        && r["action"] == "search"
        && r["status"] == "success"));
}
