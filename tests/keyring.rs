//! The Secret Service backend against a real gnome-keyring on a private D-Bus session bus:
//! protocol flow through the daemon, `secret-tool` interop, the backend selection matrix,
//! locked and hung keyrings, rollback under an injected failure, `migrate` (also killed half-way)
//! and `doctor`.
//!
//! Skipped with a message when gnome-keyring is not installed, unless `CI` is set (then they
//! fail).

use keychain_auth::backend::{Backend, BackendError, BackendKind, Change, Entry, Item};
use keychain_auth::protocol::Attributes;
use serde_json::{Value, json};
use std::ffi::OsString;
use std::time::{Duration, Instant};
use testkit::keyring::keyring_tools_available;
use testkit::{Bus, Daemon, Keyring, KeyringSandbox, Sandbox, request, wait_for, write_request};

/// `KEYCHAIN_AUTH_BACKEND=value` as extra environment.
fn backend(value: &str) -> Vec<(String, OsString)> {
    vec![("KEYCHAIN_AUTH_BACKEND".into(), value.into())]
}

fn assert_success(r: &Value) {
    assert_eq!(r["status"], "success", "{r}");
}

fn assert_unavailable(r: &Value) -> String {
    assert_eq!(r["status"], "error", "{r}");
    assert_eq!(r["reason"], "backend_unavailable", "{r}");
    r["message"].as_str().unwrap().to_string()
}

/// Callers' items in the file store (keychain-auth's own reserved items, the audit key, are
/// not counted).
fn file_item_count(home: &Sandbox) -> usize {
    let Ok(text) = std::fs::read_to_string(home.file_store()) else {
        return 0;
    };
    let Ok(v) = serde_json::from_str::<Value>(&text) else {
        return usize::MAX; // caught mid-write: not a count
    };
    v["items"]
        .as_object()
        .map(|s| {
            s.iter()
                .filter(|(svc, _)| !svc.starts_with("keychain-auth."))
                .map(|(_, t)| t.as_object().map_or(0, serde_json::Map::len))
                .sum()
        })
        .unwrap_or(0)
}

/// The broker's protocol flow, identical for both stores: runs against the daemon in `home`.
fn store_flow(home: &Sandbox) {
    home.register_reference_client(&["aws"]);
    let names = |r: &Value| -> Vec<String> {
        r["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["target"].as_str().unwrap().to_string())
            .collect()
    };
    // Several requests on one connection; awkward values survive byte for byte.
    let values = ["line1\nline2", "quote \" backslash \\ tab\t", "ünï 🔑", ""];
    let targets: Vec<String> = (0..4).map(|i| format!("app/k{i}")).collect();
    let t: Vec<&str> = targets.iter().map(String::as_str).collect();
    let rs = home.send_all(&[
        write_request("aws", &t, &values, json!({"env":"prod","service":"not-ours"})),
        request("read", "aws", &t),
        json!({"type":"REQUEST","action":"search","service":"aws","targets":["app/"],"attributes":{"env":"prod"}}).to_string(),
    ]);
    assert_success(&rs[0]);
    assert_success(&rs[1]);
    for (i, v) in values.iter().enumerate() {
        assert_eq!(rs[1]["results"][i]["value"], *v);
        assert_eq!(
            rs[1]["results"][i]["attributes"],
            json!({"env":"prod","service":"not-ours"})
        );
    }
    assert_eq!(names(&rs[2]), targets);
    // A 100-target batch, then a prefix read of all of it.
    let many: Vec<String> = (0..100).map(|i| format!("bulk/{i:03}")).collect();
    let m: Vec<&str> = many.iter().map(String::as_str).collect();
    let vals: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
    let v: Vec<&str> = vals.iter().map(String::as_str).collect();
    assert_success(&home.send(write_request("aws", &m, &v, json!({"kind":"bulk"}))));
    let r = home.send(json!({"type":"REQUEST","action":"read","service":"aws","match":"prefix","targets":["bulk/"]}));
    assert_success(&r);
    assert_eq!(names(&r), many);
    assert_eq!(r["results"][42]["value"], "v42");
    // Exact read naming a missing target fails as a whole and names it.
    let r = home.send(request("read", "aws", &["app/k0", "app/nope"]));
    assert_eq!(r["reason"], "not_found", "{r}");
    assert!(r["message"].as_str().unwrap().contains("app/nope"));
    assert!(r.get("results").is_none() || r["results"].is_null());
    // Exact delete naming a missing target deletes nothing.
    let r = home.send(
        json!({"type":"REQUEST","action":"delete","service":"aws","targets":["app/k0","app/nope"]}),
    );
    assert_eq!(r["reason"], "not_found");
    assert_success(&home.send(request("read", "aws", &["app/k0"])));
    // A service the binary may not use is refused, nothing touched.
    let r = home.send(write_request("gcp", &["x"], &["y"], json!({})));
    assert_eq!(r["reason"], "service_not_allowed", "{r}");
    // Prefix delete with an attribute filter removes only the matching items.
    assert_success(&home.send(write_request(
        "aws",
        &["app/other"],
        &["o"],
        json!({"env":"dev"}),
    )));
    let r = home.send(json!({"type":"REQUEST","action":"delete","service":"aws","match":"prefix","targets":["app/"],"attributes":{"env":"prod"}}));
    assert_success(&r);
    assert_eq!(names(&r), targets);
    let r =
        home.send(json!({"type":"REQUEST","action":"search","service":"aws","targets":["app/"]}));
    assert_eq!(names(&r), ["app/other"]);
    // Delete everything; search finds nothing.
    assert_success(&home.send(
        json!({"type":"REQUEST","action":"delete","service":"aws","match":"prefix","targets":[""]}),
    ));
    let r = home.send(json!({"type":"REQUEST","action":"search","service":"aws"}));
    assert_success(&r);
    assert!(r["results"].as_array().unwrap().is_empty());
    // Every request was audited, without values.
    let audit = std::fs::read_to_string(home.audit()).unwrap();
    assert!(audit.contains("\"action\":\"write\"") && !audit.contains("ünï 🔑"));
}

#[test]
fn same_flow_on_the_file_store() {
    let home = Sandbox::auto();
    let d = home.start_env(&backend("file"));
    let status = d.status();
    assert_eq!(status["backend"], "file");
    store_flow(&home);
}

#[test]
fn same_flow_on_the_keyring() {
    let Some(s) = KeyringSandbox::start() else {
        return;
    };
    let d = s.sandbox.start();
    let status = d.status();
    assert_eq!(status["backend"], "keyring");
    store_flow(&s.sandbox);
    // Only keychain-auth's own reserved items remain: the audit key, the policy marker and the
    // chain-started marker.
    let reserved = s.count_items("keychain-auth:service", "keychain-auth.internal");
    assert_eq!(reserved, 3);
    assert_eq!(
        s.count_items("xdg:schema", "org.keychain-auth.Secret"),
        reserved
    );
    assert!(!s.sandbox.file_store().exists());
}

/// The full SPEC flow of the broker suite (`testkit::full_flow`, also run on the file store by
/// `tests/flow.rs`), here against a daemon serving a real gnome-keyring.
#[test]
fn full_spec_flow_on_the_keyring() {
    let Some(s) = KeyringSandbox::start() else {
        return;
    };
    let mut env = Sandbox::new();
    env.extra_env = backend("keyring");
    env.extra_env.extend(s.bus.env());
    let _d = env.start();
    assert_eq!(testkit::status(&env.socket).unwrap()["backend"], "keyring");
    testkit::full_flow(&env, "aws-full-flow");
    // What the flow left lives in gnome-keyring, not in a file.
    assert!(!env.file_store().exists());
    assert_eq!(
        s.count_items("keychain-auth:service", "aws-full-flow"),
        2,
        "prod-db-password and w remain"
    );
}

#[test]
fn protocol_flow_on_the_keyring_and_secret_tool_interop() {
    let Some(s) = KeyringSandbox::start() else {
        return;
    };
    let d = s.sandbox.start();
    let status = d.status();
    assert_eq!(status["backend"], "keyring");
    s.sandbox.register_reference_client(&["aws"]);
    assert_eq!(
        s.sandbox.configured_backend(),
        None,
        "pinned before any write"
    );

    // Caller attributes named like ours cannot confuse lookup.
    let attrs = json!({"environment":"production","service":"gcp","target":"other","keychain-auth:target":"x"});
    let r = s.sandbox.send(write_request(
        "aws",
        &["prod-api-key", "prod-db"],
        &["v1", "ünï 🔑"],
        attrs.clone(),
    ));
    assert_success(&r);
    // Pin on the first successful write under auto.
    assert_eq!(s.sandbox.configured_backend().as_deref(), Some("keyring"));
    assert!(
        s.sandbox
            .audit_records()
            .iter()
            .any(|l| l["action"] == "pin_backend")
    );

    let r = s
        .sandbox
        .send(request("read", "aws", &["prod-api-key", "prod-db"]));
    assert_success(&r);
    assert_eq!(r["results"][0]["value"], "v1");
    assert_eq!(r["results"][1]["value"], "ünï 🔑");
    assert_eq!(r["results"][0]["attributes"], attrs);

    // Rewrite replaces value and attributes: still one item.
    let r = s.sandbox.send(write_request(
        "aws",
        &["prod-api-key"],
        &["v2"],
        json!({"environment":"staging"}),
    ));
    assert_success(&r);
    let r = s.sandbox.send(request("read", "aws", &["prod-api-key"]));
    assert_eq!(r["results"][0]["value"], "v2");
    assert_eq!(
        r["results"][0]["attributes"],
        json!({"environment":"staging"})
    );

    // Search by prefix and by attribute filter through the Secret Service's search.
    let r = s
        .sandbox
        .send(json!({"type":"REQUEST","action":"search","service":"aws","targets":["prod-"]}));
    assert_success(&r);
    let names: Vec<&str> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["target"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["prod-api-key", "prod-db"]);
    assert!(r["results"][0].get("value").is_none());
    let r = s.sandbox.send(json!({"type":"REQUEST","action":"search","service":"aws","attributes":{"environment":"production"}}));
    let names: Vec<&str> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["target"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["prod-db"]);
    let r = s.sandbox.send(json!({"type":"REQUEST","action":"read","service":"aws","match":"prefix","targets":["prod-a"]}));
    assert_eq!(r["results"].as_array().unwrap().len(), 1);
    assert_eq!(r["results"][0]["value"], "v2");

    // secret-tool finds what the broker wrote, with its attributes.
    let out = s.secret_tool(
        &[
            "search",
            "--all",
            "keychain-auth:service",
            "aws",
            "attr:environment",
            "production",
        ],
        None,
    );
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("label = keychain-auth: aws/prod-db"),
        "{text}"
    );
    assert!(
        text.contains("attribute.keychain-auth:target = prod-db"),
        "{text}"
    );
    assert!(text.contains("attribute.attr:service = gcp"), "{text}");
    assert!(text.contains("schema = org.keychain-auth.Secret"), "{text}");
    assert!(!text.contains("prod-api-key"), "{text}");

    // An item made by secret-tool with the schema is readable through the broker.
    let out = s.secret_tool(
        &[
            "store",
            "--label=keychain-auth: aws/from-secret-tool",
            "xdg:schema",
            "org.keychain-auth.Secret",
            "keychain-auth:service",
            "aws",
            "keychain-auth:target",
            "from-secret-tool",
            "attr:owner",
            "ops",
        ],
        Some("made-by-secret-tool"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = s
        .sandbox
        .send(request("read", "aws", &["from-secret-tool"]));
    assert_success(&r);
    assert_eq!(r["results"][0]["value"], "made-by-secret-tool");
    assert_eq!(r["results"][0]["attributes"], json!({"owner":"ops"}));

    // A delete through the broker removes it from the keyring.
    let r = s.sandbox.send(
        json!({"type":"REQUEST","action":"delete","service":"aws","targets":["from-secret-tool"]}),
    );
    assert_success(&r);
    let out = s.secret_tool(
        &[
            "search",
            "--all",
            "keychain-auth:target",
            "from-secret-tool",
        ],
        None,
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("from-secret-tool"));
    let r = s
        .sandbox
        .send(request("read", "aws", &["from-secret-tool", "prod-db"]));
    assert_eq!(r["reason"], "not_found", "{r}");

    // A failing batch (exact delete naming a missing target) touches nothing.
    let r = s.sandbox.send(
        json!({"type":"REQUEST","action":"delete","service":"aws","targets":["prod-db","missing"]}),
    );
    assert_eq!(r["reason"], "not_found");
    assert_success(&s.sandbox.send(request("read", "aws", &["prod-db"])));

    // Prefix delete empties the service; the keyring holds no caller item of ours afterwards
    // (only keychain-auth's own reserved items: the audit key and the policy-sealed marker).
    let r = s.sandbox.send(
        json!({"type":"REQUEST","action":"delete","service":"aws","match":"prefix","targets":[""]}),
    );
    assert_success(&r);
    let out = s.secret_tool(
        &["search", "--all", "xdg:schema", "org.keychain-auth.Secret"],
        None,
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    let ours: Vec<&str> = listed
        .lines()
        .filter(|l| l.starts_with("label = keychain-auth: "))
        .collect();
    assert!(
        ours.iter()
            .all(|l| l.starts_with("label = keychain-auth: keychain-auth.internal/")),
        "{ours:?}"
    );
    // Nothing went to the file store.
    assert!(!s.sandbox.file_store().exists());
}

#[test]
fn auto_with_a_bus_selects_the_keyring() {
    let Some(s) = KeyringSandbox::start() else {
        return;
    };
    let d = s.sandbox.start();
    let status = d.status();
    assert_eq!(status["backend"], "keyring");
    assert!(
        d.stderr().contains("the Secret Service answered"),
        "{}",
        d.stderr()
    );
}

#[test]
fn auto_without_a_reachable_secret_service_falls_back_to_the_file_store_with_a_notice() {
    if !keyring_tools_available() {
        return;
    }
    // (a) no bus address at all, (b) a dead address, (c) a live bus with no Secret Service.
    let home = Sandbox::auto();
    let bus_without_keyring = Bus::start(&home);
    let cases: Vec<(&str, Vec<(String, OsString)>)> = vec![
        ("no address", vec![]),
        (
            "dead address",
            vec![(
                "DBUS_SESSION_BUS_ADDRESS".into(),
                format!("unix:path={}/nothing-here", home.root.display()).into(),
            )],
        ),
        ("bus without keyring", bus_without_keyring.env()),
    ];
    for (name, env) in cases {
        let h = Sandbox::auto();
        let d = h.start_env(&env);
        let status = d.status();
        assert_eq!(status["backend"], "file", "{name}");
        let err = d.stderr();
        assert!(
            err.contains("no Secret Service reachable") && err.contains("using the file store"),
            "{name}: {err}"
        );
        assert_eq!(
            err.lines()
                .filter(|l| l.contains("no Secret Service reachable"))
                .count(),
            1,
            "{err}"
        );
        let audit = h.audit_records();
        assert!(
            audit.iter().any(|l| l["action"] == "backend_fallback"
                && l["message"]
                    .as_str()
                    .unwrap()
                    .contains("no Secret Service reachable")),
            "{name}: {audit:?}"
        );
        // The file store really serves.
        h.register_reference_client(&["svc"]);
        assert_success(&h.send(write_request("svc", &["t"], &["v"], json!({}))));
        assert_eq!(file_item_count(&h), 1);
        assert_eq!(
            h.configured_backend(),
            None,
            "{name}: a fallback must not pin anything"
        );
        drop(d);
    }
}

#[test]
fn explicit_keyring_without_a_bus_fails_fast_with_what_to_do() {
    if !keyring_tools_available() {
        return;
    }
    for env in [
        vec![(
            "KEYCHAIN_AUTH_BACKEND".to_string(),
            OsString::from("keyring"),
        )],
        vec![
            (
                "KEYCHAIN_AUTH_BACKEND".to_string(),
                OsString::from("keyring"),
            ),
            (
                "DBUS_SESSION_BUS_ADDRESS".to_string(),
                OsString::from("unix:path=/nonexistent/bus"),
            ),
        ],
    ] {
        let h = Sandbox::auto();
        let t = Instant::now();
        let out = h.cli_env(&env, &["start"]);
        let took = t.elapsed();
        eprintln!("explicit keyring without a bus: start exited after {took:?}");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("KEYCHAIN_AUTH_BACKEND=keyring")
                && err.contains("no Secret Service is reachable"),
            "{err}"
        );
        assert!(
            err.contains("KEYCHAIN_AUTH_BACKEND=file") && err.contains("gnome-keyring-daemon"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one-line reason: {err}");
        assert!(!h.file_store().exists());
        assert!(!h.socket.exists());
    }
}

#[test]
fn environment_beats_config() {
    let Some(s) = KeyringSandbox::start() else {
        return;
    };
    // config says keyring, environment says file: the file store, even with a keyring present.
    s.sandbox.set_configured_backend("keyring");
    let env = backend("file");
    let d = s.sandbox.start_env(&env);
    let status = d.status();
    assert_eq!(status["backend"], "file");
    drop(d);
    // config says file, environment says keyring: the keyring.
    s.sandbox.set_configured_backend("file");
    let env = backend("keyring");
    let d = s.sandbox.start_env(&env);
    let status = d.status();
    assert_eq!(status["backend"], "keyring");
    drop(d);
    // config says file, environment silent (or auto): config.
    let d = s.sandbox.start_env(&backend("auto"));
    let status = d.status();
    assert_eq!(status["backend"], "file");
    drop(d);
}

/// A daemon on `s`'s keyring with the reference client allowed on `aws`, which has written
/// `aws/k` = "v" with `attributes`.
fn serving_k(s: &KeyringSandbox, attributes: Value) -> Daemon {
    let d = s.sandbox.start();
    s.sandbox.register_reference_client(&["aws"]);
    assert_success(
        &s.sandbox
            .send(write_request("aws", &["k"], &["v"], attributes)),
    );
    d
}

#[test]
fn pinned_keyring_with_the_bus_gone_answers_backend_unavailable_never_the_file_store() {
    let Some(mut s) = KeyringSandbox::start() else {
        return;
    };
    let d = serving_k(&s, json!({}));
    assert_eq!(s.sandbox.configured_backend().as_deref(), Some("keyring"));
    // The keyring and the bus go away under the running daemon.
    s.keyring.take().unwrap().stop();
    s.bus.stop();
    let t = Instant::now();
    let msg = assert_unavailable(&s.sandbox.send(request("read", "aws", &["k"])));
    eprintln!(
        "read with the bus gone answered in {:?}: {msg}",
        t.elapsed()
    );
    assert!(msg.contains("Secret Service"), "{msg}");
    assert_unavailable(
        &s.sandbox
            .send(write_request("aws", &["k2"], &["v"], json!({}))),
    );
    assert!(
        !s.sandbox.file_store().exists(),
        "a write went to the file store"
    );
    drop(d);
    // Restarting with the pin and no bus (environment silent or auto) refuses to start.
    for env in [
        vec![],
        vec![("KEYCHAIN_AUTH_BACKEND".to_string(), OsString::from("auto"))],
    ] {
        let out = s.sandbox.cli_env(&env, &["start"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("config.json \"backend\": \"keyring\"")
                && err.contains("KEYCHAIN_AUTH_BACKEND=file"),
            "{err}"
        );
    }
    assert!(!s.sandbox.file_store().exists());
}

#[test]
fn a_locked_keyring_is_not_unavailable_it_answers_with_how_to_unlock() {
    let Some(mut s) = KeyringSandbox::start() else {
        return;
    };
    let d = serving_k(&s, json!({"a":"b"}));
    s.lock_keyring();
    for req in [
        request("read", "aws", &["k"]),
        request("read", "aws", &["absent"]),
        write_request("aws", &["k2"], &["v"], json!({})),
        json!({"type":"REQUEST","action":"search","service":"aws"}).to_string(),
        json!({"type":"REQUEST","action":"delete","service":"aws","targets":["k"]}).to_string(),
    ] {
        let msg = assert_unavailable(&s.sandbox.send(&req));
        assert!(
            msg.contains("locked") && msg.contains("--unlock"),
            "{req}: {msg}"
        );
    }
    drop(d);
    // A daemon started under auto while the keyring is locked stays on the keyring.
    let d = s.sandbox.start_env(&backend("auto"));
    let status = d.status();
    assert_eq!(status["backend"], "keyring");
    assert!(d.stderr().contains("locked"), "{}", d.stderr());
    assert!(!s.sandbox.file_store().exists());
    // Unlocked again (the keyring restarted with the password): the same daemon serves it.
    s.keyring.take().unwrap().stop();
    s.keyring = Some(Keyring::start(&s.sandbox, &s.bus));
    let r = wait_for(30, "the daemon to serve the unlocked keyring", || {
        let r = s.sandbox.send(request("read", "aws", &["k"]));
        (r["status"] == "success").then_some(r)
    });
    assert_eq!(r["results"][0]["value"], "v");
    assert!(
        s.sandbox
            .audit_records()
            .iter()
            .any(|l| l["action"] == "backend_notice")
    );
}

#[test]
fn a_hung_keyring_times_out_with_backend_unavailable_not_a_hang() {
    let Some(s) = KeyringSandbox::start() else {
        return;
    };
    let _d = serving_k(&s, json!({}));
    s.keyring.as_ref().unwrap().freeze(true);
    let t = Instant::now();
    let msg = assert_unavailable(&s.sandbox.send(request("read", "aws", &["k"])));
    eprintln!(
        "read from a frozen keyring answered after {:?}: {msg}",
        t.elapsed()
    );
    assert!(msg.contains("did not answer"), "{msg}");
    // STATUS still answers at once while the keyring hangs.
    assert!(keychain_auth::client::status(&s.sandbox.socket, Duration::from_secs(2)).is_ok());
    s.keyring.as_ref().unwrap().freeze(false);
    let r = wait_for(30, "reads after the keyring thaws", || {
        let r = s.sandbox.send(request("read", "aws", &["k"]));
        (r["status"] == "success").then_some(r)
    });
    assert_eq!(r["results"][0]["value"], "v");
}

/// Wraps a store and fails exactly its Nth mutating call.
struct FailOn<B> {
    inner: B,
    n: usize,
    seen: std::sync::atomic::AtomicUsize,
}

impl<B: Backend> FailOn<B> {
    fn mutation(&self) -> Result<(), BackendError> {
        let k = self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        if k == self.n {
            return Err(BackendError::Unavailable(format!(
                "injected failure on mutation {k}"
            )));
        }
        Ok(())
    }
}

impl<B: Backend> Backend for FailOn<B> {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn get(&self, s: &str, t: &str) -> Result<Option<Item>, BackendError> {
        self.inner.get(s, t)
    }
    fn set(&self, s: &str, t: &str, i: &Item) -> Result<(), BackendError> {
        self.mutation()?;
        self.inner.set(s, t, i)
    }
    fn delete(&self, s: &str, t: &str) -> Result<bool, BackendError> {
        self.mutation()?;
        self.inner.delete(s, t)
    }
    fn list(&self, s: &str, p: &str, f: &Attributes) -> Result<Vec<Entry>, BackendError> {
        self.inner.list(s, p, f)
    }
}

fn item(v: &str, attrs: &[(&str, &str)]) -> Item {
    Item {
        value: v.into(),
        attributes: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn snapshot(b: &dyn Backend, service: &str) -> Vec<(String, Item)> {
    b.list(service, "", &Attributes::new())
        .unwrap()
        .into_iter()
        .map(|e| {
            let i = b.get(service, &e.target).unwrap().unwrap();
            (e.target, i)
        })
        .collect()
}

#[test]
fn a_batch_failing_half_way_on_the_keyring_is_rolled_back() {
    let Some(s) = KeyringSandbox::start() else {
        return;
    };
    let store = s.store();
    store.set("svc", "a", &item("a0", &[("k", "1")])).unwrap();
    store.set("svc", "c", &item("c0", &[])).unwrap();
    let before = snapshot(&store, "svc");
    let batch = vec![
        Change::Set {
            service: "svc".into(),
            target: "a".into(),
            item: item("a1", &[("k", "2")]),
        },
        Change::Set {
            service: "svc".into(),
            target: "b".into(),
            item: item("b1", &[]),
        },
        Change::Delete {
            service: "svc".into(),
            target: "c".into(),
        },
        Change::Set {
            service: "svc".into(),
            target: "d".into(),
            item: item("d1", &[]),
        },
    ];
    // Fail the 1st..4th step in turn: every time the keyring ends as it began.
    for n in 1..=4 {
        let faulty = FailOn {
            inner: s.store(),
            n,
            seen: 0.into(),
        };
        let err = faulty.apply(&batch).unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        assert_eq!(
            snapshot(&store, "svc"),
            before,
            "after a failure at step {n}"
        );
    }
    // And the keyring holds exactly one item per target (no duplicates left by the restores).
    assert_eq!(s.count_items("keychain-auth:service", "svc"), 2);
    // Without a fault the batch applies.
    store.apply(&batch).unwrap();
    let names: Vec<String> = snapshot(&store, "svc")
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(names, ["a", "b", "d"]);
}

fn fill_file_store(home: &Sandbox, n: usize) -> serde_json::Map<String, Value> {
    let mut items = serde_json::Map::new();
    for i in 0..n {
        let svc = format!("svc{}", i % 4);
        items
            .entry(svc)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .unwrap()
            .insert(format!("t{i:04}"), json!({"value": format!("value {i} ✓"), "attributes": {"n": i.to_string(), "service": "x"}}));
    }
    let path = home.file_store();
    keychain_auth::fsutil::write_atomic(
        &path,
        serde_json::to_string(&json!({"version":1,"items":items}))
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    items
}

fn assert_all_in(store: &dyn Backend, expected: &serde_json::Map<String, Value>) {
    let mut total = 0;
    for (svc, targets) in expected {
        let listed = store.list(svc, "", &Attributes::new()).unwrap();
        assert_eq!(listed.len(), targets.as_object().unwrap().len(), "{svc}");
        for (t, v) in targets.as_object().unwrap() {
            let got = store
                .get(svc, t)
                .unwrap()
                .unwrap_or_else(|| panic!("{svc}/{t} lost"));
            assert_eq!(got.value, v["value"].as_str().unwrap());
            assert_eq!(got.attributes["n"], v["attributes"]["n"].as_str().unwrap());
            assert_eq!(got.attributes["service"], "x");
            total += 1;
        }
    }
    // keychain-auth's own reserved items (the audit key) move too and are not in `expected`.
    let services: Vec<String> = store
        .services()
        .unwrap()
        .into_iter()
        .filter(|s| !s.starts_with("keychain-auth."))
        .collect();
    assert_eq!(services.len(), expected.len());
    eprintln!("verified {total} items");
}

/// Starts `migrate --to DEST`, SIGKILLs it once `progressed` says it is half-way, and
/// returns whether it was killed (false: it finished first).
fn migrate_killed_half_way(s: &KeyringSandbox, dest: &str, progressed: impl Fn() -> bool) -> bool {
    let mut child = s
        .sandbox
        .command(testkit::daemon_bin())
        .args(["migrate", "--to", dest])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if progressed() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return true;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "migrate made no progress"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn migrate_both_ways_survives_a_kill_half_way_and_reruns() {
    let Some(s) = KeyringSandbox::start() else {
        return;
    };
    const N: usize = 400;
    let expected = fill_file_store(&s.sandbox, N);
    let store = s.store();

    // file → keyring, killed once some items have left the file store.
    let killed = migrate_killed_half_way(&s, "keyring", || {
        let n = file_item_count(&s.sandbox);
        n < N - 20 && n > 0
    });
    assert!(
        killed,
        "migrate finished before it could be killed; raise N"
    );
    let left = file_item_count(&s.sandbox);
    let in_keyring: usize = store
        .services()
        .unwrap()
        .iter()
        .map(|sv| store.list(sv, "", &Attributes::new()).unwrap().len())
        .sum();
    eprintln!("killed half-way: {left} left in the file store, {in_keyring} in the keyring");
    assert!(left > 0 && left < N);
    assert!(left + in_keyring >= N, "items lost by the kill");
    let out = s.sandbox.cli(&["migrate", "--to", "keyring"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0 conflict(s)"), "{text}");
    assert_eq!(file_item_count(&s.sandbox), 0);
    assert_all_in(&store, &expected);
    // No duplicates in the keyring itself (besides the callers' items: keychain-auth's own
    // reserved items, the audit key and the policy and chain-started markers).
    let reserved = s.count_items("keychain-auth:service", "keychain-auth.internal");
    assert!(reserved <= 3, "{reserved}");
    assert_eq!(
        s.count_items("xdg:schema", "org.keychain-auth.Secret"),
        N + reserved
    );
    assert_eq!(s.sandbox.configured_backend().as_deref(), Some("keyring"));
    // Idempotent.
    let out = s.sandbox.cli(&["migrate", "--to", "keyring"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 moved, 0 already there"));

    // keyring → file, killed once some items have arrived in the file store.
    let killed = migrate_killed_half_way(&s, "file", || {
        let n = file_item_count(&s.sandbox);
        n > 20 && n < N
    });
    assert!(
        killed,
        "migrate finished before it could be killed; raise N"
    );
    let out = s.sandbox.cli(&["migrate", "--to", "file"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(file_item_count(&s.sandbox), N);
    let file = keychain_auth::backend::file::FileStore::new(&s.sandbox.file_store());
    assert_all_in(&file, &expected);
    assert!(store.services().unwrap().is_empty());
    assert_eq!(s.count_items("xdg:schema", "org.keychain-auth.Secret"), 0);
    assert_eq!(s.sandbox.configured_backend().as_deref(), Some("file"));
    // Audited with counts, never values.
    let audit = s.sandbox.audit_records();
    let runs: Vec<&Value> = audit.iter().filter(|l| l["event"] == "migrate").collect();
    assert!(runs.len() >= 3, "{audit:?}");
    let text = std::fs::read_to_string(s.sandbox.audit()).unwrap();
    assert!(!text.contains("value 1 ✓"));
}

#[test]
fn migrate_refuses_while_a_daemon_runs_and_when_the_keyring_is_locked() {
    let Some(s) = KeyringSandbox::start() else {
        return;
    };
    let d = s.sandbox.start();
    let out = s.sandbox.cli(&["migrate", "--to", "file"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stop it, migrate"));
    drop(d);
    s.lock_keyring();
    let out = s.sandbox.cli(&["migrate", "--to", "file"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("locked"));
    let out = s.sandbox.cli(&["migrate", "--to", "elsewhere"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("use keyring or file"));
}

#[test]
fn doctor_reports_each_problem_with_its_fix() {
    let Some(s) = KeyringSandbox::start() else {
        return;
    };
    let d = s.sandbox.start();
    let out = s.sandbox.cli(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("reachable and unlocked"), "{text}");
    assert!(
        text.contains("keyring, chosen by the default (auto)"),
        "{text}"
    );
    assert!(
        text.contains("pending") && text.contains("audit log"),
        "{text}"
    );
    assert!(!text.contains("PROBLEM"), "{text}");

    // Locked keyring, loose permissions on the file store: problems, each with a fix.
    s.lock_keyring();
    std::fs::create_dir_all(s.sandbox.file_store().parent().unwrap()).unwrap();
    std::fs::write(s.sandbox.file_store(), br#"{"version":1,"items":{}}"#).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        s.sandbox.file_store(),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = s.sandbox.cli(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("PROBLEM  secret service  reachable but locked"),
        "{text}"
    );
    assert!(text.contains("--unlock"), "{text}");
    assert!(
        text.contains(&format!(
            "fix: chmod 600 {}",
            s.sandbox.file_store().display()
        )),
        "{text}"
    );
    drop(d);
    // No daemon: a problem with `keychain-auth start` as the fix.
    let out = s.sandbox.cli(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("fix: run: keychain-auth start"), "{text}");
}

/// Latency of one read through the broker (keyring backend) vs one direct read with the same
/// crate in the same process. Run with:
/// `cargo test --release --test keyring -- --ignored --nocapture read_latency`
#[test]
#[ignore = "measurement, prints figures"]
fn read_latency_broker_vs_direct() {
    let Some(s) = KeyringSandbox::start() else {
        return;
    };
    let _d = s.sandbox.start();
    s.sandbox.register_reference_client(&["bench"]);
    assert_success(&s.sandbox.send(write_request(
        "bench",
        &["k"],
        &["some secret value"],
        json!({"a":"b"}),
    )));
    const N: usize = 300;
    let store = s.store();
    store.get("bench", "k").unwrap().unwrap();
    let mut direct = Vec::with_capacity(N);
    for _ in 0..N {
        let t = Instant::now();
        store.get("bench", "k").unwrap().unwrap();
        direct.push(t.elapsed());
    }
    let mut client =
        keychain_auth::client::Client::connect(&s.sandbox.socket, Duration::from_secs(30)).unwrap();
    let line = serde_json::to_vec(&request("read", "bench", &["k"])).unwrap();
    client.round_trip(&line).unwrap();
    // The broker sees this test binary as the caller: register it too.
    let exe = std::env::current_exe().unwrap();
    let out = s
        .sandbox
        .cli(&["register", exe.to_str().unwrap(), "--read", "bench"]);
    assert!(out.status.success());
    let mut broker = Vec::with_capacity(N);
    for _ in 0..N {
        let t = Instant::now();
        let r = client.round_trip(&line).unwrap();
        broker.push(t.elapsed());
        assert!(r.contains("\"success\""), "{r}");
    }
    let stats = |v: &mut Vec<Duration>| {
        v.sort();
        (
            v[v.len() / 2],
            v[v.len() * 95 / 100],
            v.iter().sum::<Duration>() / v.len() as u32,
        )
    };
    let (dm, d95, davg) = stats(&mut direct);
    let (bm, b95, bavg) = stats(&mut broker);
    println!(
        "direct SecretServiceStore::get: median {dm:?}, p95 {d95:?}, mean {davg:?} ({N} reads)"
    );
    println!(
        "through the broker (socket, identity, policy, audit, keyring): median {bm:?}, p95 {b95:?}, mean {bavg:?} ({N} reads)"
    );
}
