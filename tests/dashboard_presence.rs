//! Presence for dashboards on a vault (issue 20): an approver answers nothing until the person
//! at it typed the vault passphrase (verified by the broker), "for a time" and "always" need it
//! again each time, narrowing never does, and a request that arrives while the vault is locked
//! is held for an attached dashboard to unlock it.
//!
//! Protocol attacks run against the broker's real server code embedded in this test process,
//! whose own executable is this test binary: a [`Relay`] child running it is "keychain-auth
//! itself" there, exactly the rule for a connected dashboard (the real daemon accepts an
//! approver only from its own executable, which a test cannot write raw lines from). The tmux
//! tests drive the real `keychain-auth tui --connect` against the real daemon.

use serde_json::{Value, json};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::{
    Dashboard, EmbeddedBroker, Relay, Sandbox, expect, held_response, nonce, request, wait_for,
};

const PASS: &str = "correct horse battery staple";

fn pass_file(env: &Sandbox, pass: &str) -> PathBuf {
    let p = env.root.join(format!("pass-{}", nonce()));
    env.write_private(&p, format!("{pass}\n"));
    p
}

fn with_pass(p: &Path) -> Vec<(String, OsString)> {
    vec![("KEYCHAIN_AUTH_PASSPHRASE_FILE".into(), p.into())]
}

/// A sandbox whose store is a vault holding `aws/prod-key` = `s3cret`, with `registered`
/// approved to read aws before the vault was made (the rest are unknown).
fn vault_env(registered: &[&str]) -> (Sandbox, Vec<PathBuf>) {
    vault_env_with(registered, None)
}

/// [`vault_env`], with config.json's `prompt_timeout_s` set (and adopted) when given.
fn vault_env_with(registered: &[&str], timeout: Option<u64>) -> (Sandbox, Vec<PathBuf>) {
    let mut env = Sandbox::new();
    env.extra_env
        .push(("KEYCHAIN_AUTH_VAULT_KDF".into(), "floor".into()));
    env.write_private(
        &env.file_store(),
        br#"{"version":1,"items":{"aws":{"prod-key":{"value":"s3cret","attributes":{}}}}}"#,
    );
    if let Some(secs) = timeout {
        env.write_private(
            &env.config(),
            json!({"protocol_version":"1","prompt_timeout_s":secs}).to_string(),
        );
        env.cli_ok(&["policy", "accept", "--yes"]);
    }
    let clients = registered
        .iter()
        .map(|n| env.registered_client(n, &["--read", "aws"]))
        .collect();
    let pass = pass_file(&env, PASS);
    let out = env.cli_env(&with_pass(&pass), &["init", "--import", "--remove-plain"]);
    assert!(
        out.status.success(),
        "init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (env, clients)
}

/// The broker's server code on the vault of `env`, locked.
fn vault_broker(env: &Sandbox) -> EmbeddedBroker {
    EmbeddedBroker::start_on(
        env,
        EmbeddedBroker::vault(env),
        keychain_auth::server::Limits::default(),
    )
}

fn line(v: Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// Sends `v` and reads lines until one of type `kind` (others, such as prompts, are returned
/// too, in order).
fn until(relay: &mut Relay, v: Value, kind: &str) -> (Value, Vec<Value>) {
    let mut bytes = line(v);
    bytes.push(b'\n');
    relay.send_bytes(&bytes).expect("send");
    let mut others = vec![];
    loop {
        let got = relay.read_line().expect("the broker answered");
        if got["type"] == kind {
            return (got, others);
        }
        others.push(got);
    }
}

fn subscribe(env: &Sandbox) -> (Relay, Value) {
    let mut r = Relay::start(env, "relay", None, &[]);
    let ack = r.round_trip(br#"{"type":"SUBSCRIBE"}"#).expect("ack");
    (r, ack)
}

fn entry_of(env: &Sandbox, client: &Path) -> Option<Value> {
    env.registered()
        .into_iter()
        .find(|e| e["path"] == client.to_str().expect("utf-8"))
}

fn vault_records(env: &Sandbox) -> Vec<Value> {
    env.audit_records()
        .into_iter()
        .filter(|r| r["event"] == "vault")
        .collect()
}

#[test]
fn a_subscription_without_presence_answers_nothing_and_widening_answers_need_the_passphrase() {
    let (env, _) = vault_env(&[]);
    let running = vault_broker(&env);
    let reader = env.client("reader");
    let read = request("read", "aws", &["prod-key"]);

    // Attached without presence: told so, shown nothing, and nothing is held for it.
    let (mut person, ack) = subscribe(&env);
    assert_eq!(ack["type"], "SUBSCRIBED", "{ack}");
    assert_eq!(ack["presence"], "required", "{ack}");
    assert_eq!(ack["locked"], true, "{ack}");
    let t = Instant::now();
    expect(
        &env.run_client(&reader, &[&read])[0],
        "denied",
        Some("vault_locked"),
    );
    assert!(t.elapsed() < Duration::from_secs(10), "refused, not held");

    // A wrong passphrase is refused with its attempt count; the right one unlocks and attaches.
    let (r, _) = until(
        &mut person,
        json!({"type":"PRESENCE","passphrase":"not it"}),
        "PRESENCE",
    );
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .starts_with("wrong passphrase (attempt 1"),
        "{r}"
    );
    let (r, _) = until(
        &mut person,
        json!({"type":"PRESENCE","passphrase":PASS}),
        "PRESENCE",
    );
    assert_eq!(
        (r["ok"].clone(), r["locked"].clone()),
        (json!(true), json!(false)),
        "{r}"
    );

    // The attacker: keychain-auth itself, subscribed, without the passphrase.
    let (mut attacker, ack) = subscribe(&env);
    assert_eq!(ack["presence"], "required");
    assert_eq!(ack["locked"], false);

    let held = env.spawn_client(&reader, &read);
    let prompt = person.read_line().expect("the prompt");
    assert_eq!(prompt["type"], "PROMPT", "{prompt}");
    let id = prompt["id"].as_str().unwrap().to_string();

    // It may not answer at all: always, once, deny.
    for decision in [
        json!({"type":"ANSWER","prompt_id":id,"decision":"always"}),
        json!({"type":"ANSWER","prompt_id":id,"decision":"once"}),
        json!({"type":"ANSWER","prompt_id":id,"decision":"deny"}),
    ] {
        let (r, others) = until(&mut attacker, decision.clone(), "ANSWERED");
        assert!(others.is_empty(), "shown nothing: {others:?}");
        let why = r["error"].as_str().unwrap_or_default();
        assert!(why.contains("not proven presence"), "{decision}: {r}");
    }
    // Guessing the passphrase on an answer does not help either.
    let (r, _) = until(
        &mut attacker,
        json!({"type":"ANSWER","prompt_id":id,"decision":"always","passphrase":"guess"}),
        "ANSWERED",
    );
    assert!(
        r["error"].as_str().unwrap().contains("not proven presence"),
        "{r}"
    );

    // The present approver's "always" without the passphrase: refused, nothing saved.
    let (r, _) = until(
        &mut person,
        json!({"type":"ANSWER","prompt_id":id,"decision":"always"}),
        "ANSWERED",
    );
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("needs the vault passphrase"),
        "{r}"
    );
    // "For a time" too, and a wrong passphrase.
    let (r, _) = until(
        &mut person,
        json!({"type":"ANSWER","prompt_id":id,"decision":"time","for_s":600}),
        "ANSWERED",
    );
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("needs the vault passphrase"),
        "{r}"
    );
    let (r, _) = until(
        &mut person,
        json!({"type":"ANSWER","prompt_id":id,"decision":"always","passphrase":"wrong"}),
        "ANSWERED",
    );
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .starts_with("wrong passphrase (attempt"),
        "{r}"
    );
    assert!(entry_of(&env, &reader).is_none(), "no grant was saved");

    // With the passphrase it is saved, and the held request served.
    let (r, others) = until(
        &mut person,
        json!({"type":"ANSWER","prompt_id":id,"decision":"always","passphrase":PASS}),
        "ANSWERED",
    );
    assert!(r.get("error").is_none(), "{r}");
    let resp = held_response(held);
    expect(&resp, "success", None);
    assert_eq!(resp["results"][0]["value"], "s3cret");
    let saved = entry_of(&env, &reader).expect("saved");
    assert_eq!(saved["allowed_read_services"], json!(["aws"]));
    // The resolution came to the present approver (before or after its ANSWERED).
    let resolved = others
        .into_iter()
        .chain(std::iter::from_fn(|| person.read_line()))
        .find(|l| l["type"] == "RESOLVED")
        .expect("resolved");
    assert_eq!(resolved["outcome"], "always", "{resolved}");

    // "Once" from the present approver needs nothing more.
    let other = env.client("other");
    let held = env.spawn_client(&other, &read);
    let prompt = loop {
        let l = person.read_line().expect("a line");
        if l["type"] == "PROMPT" {
            break l;
        }
    };
    let (r, _) = until(
        &mut person,
        json!({"type":"ANSWER","prompt_id":prompt["id"],"decision":"once"}),
        "ANSWERED",
    );
    assert!(r.get("error").is_none(), "{r}");
    expect(&held_response(held), "success", None);
    assert!(entry_of(&env, &other).is_none(), "once saves nothing");

    // Every attempt is in the audit log: the wrong ones with their reason.
    let recs = vault_records(&env);
    let wrong = recs
        .iter()
        .filter(|r| r["reason"] == "wrong_passphrase")
        .count();
    assert!(wrong >= 2, "{recs:#?}");
    assert!(
        recs.iter().any(|r| r["reason"] == "no_presence"),
        "{recs:#?}"
    );
    assert!(
        recs.iter()
            .any(|r| r["action"] == "presence" && r["status"] == "success"),
        "{recs:#?}"
    );
    drop((person, attacker));
    running.stop();
}

#[test]
fn a_request_while_the_vault_is_locked_is_held_for_an_attached_dashboards_unlock() {
    let (env, clients) = vault_env_with(&["reader"], Some(3));
    let reader = &clients[0];
    let running = vault_broker(&env);
    let read = request("read", "aws", &["prod-key"]);
    let (mut person, _) = subscribe(&env);
    let (r, _) = until(
        &mut person,
        json!({"type":"PRESENCE","passphrase":PASS}),
        "PRESENCE",
    );
    assert_eq!(r["ok"], true, "{r}");
    expect(&env.run_client(reader, &[&read])[0], "success", None);

    // Locked again (keychain-auth lock, from keychain-auth itself).
    let mut locker = Relay::start(&env, "relay", None, &[]);
    let r = locker
        .round_trip(br#"{"type":"VAULT","op":"lock"}"#)
        .expect("lock");
    assert_eq!(r["locked"], true, "{r}");

    // Held: the approver is shown an unlock prompt naming the caller.
    let held = env.spawn_client(reader, &read);
    let prompt = person.read_line().expect("the unlock prompt");
    assert_eq!(prompt["type"], "PROMPT", "{prompt}");
    assert_eq!(prompt["reason"], "vault_locked", "{prompt}");
    assert_eq!(prompt["path"], reader.to_str().unwrap());
    // The passphrase unlocks it; the held request is served.
    let (r, others) = until(
        &mut person,
        json!({"type":"PRESENCE","passphrase":PASS}),
        "PRESENCE",
    );
    assert_eq!(
        (r["ok"].clone(), r["locked"].clone()),
        (json!(true), json!(false)),
        "{r}"
    );
    let resp = held_response(held);
    expect(&resp, "success", None);
    assert_eq!(resp["results"][0]["value"], "s3cret");
    let resolved = others
        .into_iter()
        .chain(person.read_line())
        .find(|l| l["type"] == "RESOLVED")
        .expect("the prompt resolved");
    assert_eq!(resolved["outcome"], "unlocked", "{resolved}");

    // Refused from the dashboard (its esc): vault_locked, with the fix.
    let r = locker
        .round_trip(br#"{"type":"VAULT","op":"lock"}"#)
        .expect("lock");
    assert_eq!(r["locked"], true, "{r}");
    let held = env.spawn_client(reader, &read);
    let prompt = person.read_line().expect("the unlock prompt");
    assert_eq!(prompt["reason"], "vault_locked");
    let (r, _) = until(
        &mut person,
        json!({"type":"ANSWER","prompt_id":prompt["id"],"decision":"deny"}),
        "ANSWERED",
    );
    assert!(r.get("error").is_none(), "{r}");
    let msg = expect(&held_response(held), "denied", Some("vault_locked"));
    assert!(msg.contains("keychain-auth unlock"), "{msg}");

    // Nobody unlocks it in time: refused the same way when the prompt times out.
    let t = Instant::now();
    let held = env.spawn_client(reader, &read);
    let prompt = loop {
        let l = person.read_line().expect("a line");
        if l["type"] == "PROMPT" {
            break l;
        }
    };
    assert_eq!(prompt["reason"], "vault_locked");
    let msg = expect(&held_response(held), "denied", Some("vault_locked"));
    assert!(msg.contains("keychain-auth unlock"), "{msg}");
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "held until the timeout"
    );
    let resolved = loop {
        let l = person.read_line().expect("a line");
        if l["type"] == "RESOLVED" && l["prompt_id"] == prompt["id"] {
            break l;
        }
    };
    assert_eq!(resolved["outcome"], "timeout", "{resolved}");

    // With no approver attached: refused at once, as before.
    drop(person);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    expect(
        &env.run_client(reader, &[&read])[0],
        "denied",
        Some("vault_locked"),
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    drop(locker);
    running.stop();
}

/// The real dashboard against the real daemon: the presence dialog, a wrong passphrase said
/// with its attempt count, then an "always" that asks for the passphrase again.
#[test]
fn a_connected_dashboard_proves_presence_and_answers_always_with_the_passphrase() {
    if !testkit::tools_available(&["tmux"], "tmux") {
        return;
    }
    let (env, _) = vault_env(&[]);
    let pass = pass_file(&env, PASS);
    let _daemon = env.start_env(&with_pass(&pass));
    let tmux = Dashboard::start(&env, &["tui", "--connect"]);
    tmux.wait_screen("the presence dialog", |s| {
        s.contains("Prove presence") && s.contains("enter: check")
    });
    let client = env.client("e2e-vault");
    let read = request("read", "aws", &["prod-key"]);
    // Not present: nothing is held for this dashboard.
    expect(
        &env.run_client(&client, &[&read])[0],
        "denied",
        Some("unregistered_binary"),
    );
    tmux.keys(&["-l", "not the passphrase"]);
    let screen = tmux.capture();
    assert!(
        !screen.contains("not the passphrase"),
        "never echoed:\n{screen}"
    );
    tmux.keys(&["Enter"]);
    tmux.wait_screen("the wrong passphrase said", |s| {
        s.contains("wrong passphrase (attempt 1")
    });
    tmux.keys(&["-l", PASS]);
    tmux.keys(&["Enter"]);
    tmux.wait_screen("presence proven", |s| s.contains("presence proven"));

    let held = env.spawn_client(&client, &read);
    tmux.wait_screen("the prompt", |s| {
        s.contains("A caller is waiting") && s.contains("e2e-vault")
    });
    tmux.keys(&["a"]);
    tmux.wait_screen("the always editor", |s| s.contains("Always allow"));
    tmux.keys(&["Enter"]);
    tmux.wait_screen("the passphrase for this change", |s| {
        s.contains("Passphrase for this change") && s.contains("always allow")
    });
    tmux.keys(&["-l", "wrong again"]);
    tmux.keys(&["Enter"]);
    tmux.wait_screen("the wrong passphrase said", |s| {
        s.contains("wrong passphrase (attempt")
    });
    assert!(entry_of(&env, &client).is_none(), "nothing saved yet");
    tmux.keys(&["-l", PASS]);
    tmux.keys(&["Enter"]);
    let resp = held_response(held);
    expect(&resp, "success", None);
    let saved = entry_of(&env, &client).expect("saved by the always answer");
    assert_eq!(saved["allowed_read_services"], json!(["aws"]));
    tmux.wait_screen("the answer said", |s| s.contains("answered always"));
    tmux.keys(&["q"]);
}

/// The real daemon locked while a present dashboard is attached: a request is held, the
/// dashboard's unlock prompt names the caller, the passphrase unlocks and it is served.
#[test]
fn a_connected_dashboard_unlocks_the_vault_for_a_held_request() {
    if !testkit::tools_available(&["tmux"], "tmux") {
        return;
    }
    let (env, clients) = vault_env(&["e2e-locked"]);
    let reader = &clients[0];
    let _daemon = env.start();
    let tmux = Dashboard::start(&env, &["tui", "--connect"]);
    tmux.wait_screen("the presence dialog, locked", |s| {
        s.contains("Prove presence") && s.contains("unlocks it too")
    });
    tmux.keys(&["-l", PASS]);
    tmux.keys(&["Enter"]);
    tmux.wait_screen("unlocked", |s| s.contains("vault is unlocked"));
    let read = request("read", "aws", &["prod-key"]);
    expect(&env.run_client(reader, &[&read])[0], "success", None);
    let out = env.cli(&["lock"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let held = env.spawn_client(reader, &read);
    tmux.wait_screen("the unlock prompt", |s| {
        s.contains("The vault is locked: a caller is waiting")
            && s.contains("e2e-locked")
            && s.contains("unlock the vault")
    });
    tmux.keys(&["Enter"]);
    tmux.wait_screen("the unlock dialog", |s| s.contains("Unlock the vault"));
    tmux.keys(&["-l", PASS]);
    tmux.keys(&["Enter"]);
    let resp = held_response(held);
    expect(&resp, "success", None);
    assert_eq!(resp["results"][0]["value"], "s3cret");
    wait_for(10, "the unlock audited", || {
        env.audit_records()
            .iter()
            .any(|r| {
                r["event"] == "vault"
                    && r["action"] == "unlock"
                    && r["status"] == "success"
                    && r["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("dashboard"))
            })
            .then_some(())
    });
    tmux.keys(&["q"]);
}

/// The Secrets view's requests: only keychain-auth itself, and on a vault only with the
/// passphrase, get names; a value comes only with the passphrase, and each is audited as the
/// owner's (never the value).
#[test]
fn the_secrets_views_requests_need_keychain_auth_and_the_passphrase() {
    let (env, _) = vault_env(&[]);
    let running = vault_broker(&env);
    let mut me = Relay::start(&env, "relay", None, &[]);
    let r = me
        .round_trip(
            json!({"type":"VAULT","op":"unlock","passphrase":PASS})
                .to_string()
                .as_bytes(),
        )
        .expect("unlock");
    assert_eq!(r["locked"], false, "{r}");
    let ls = json!({"type":"OWNER","op":"ls","passphrase":PASS}).to_string();
    // Another program of yours, even with the passphrase: refused.
    let stranger = env.client("stranger");
    let r = &env.run_client(&stranger, &[&ls])[0];
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("only keychain-auth itself"),
        "{r}"
    );
    assert!(r.get("services").is_none());
    // keychain-auth itself without the passphrase, or with a wrong one: nothing.
    for line in [
        json!({"type":"OWNER","op":"ls"}),
        json!({"type":"OWNER","op":"get","service":"aws","target":"prod-key"}),
        json!({"type":"OWNER","op":"get","service":"aws","target":"prod-key","passphrase":"guess"}),
    ] {
        let r = me.round_trip(line.to_string().as_bytes()).expect("reply");
        assert_eq!(r["ok"], false, "{line}: {r}");
        assert!(
            r.get("value").is_none() && r.get("services").is_none(),
            "{r}"
        );
    }
    // With it: names and attributes, never a value; then the value.
    let r = me.round_trip(ls.as_bytes()).expect("reply");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["services"][0]["service"], "aws", "{r}");
    assert_eq!(r["services"][0]["items"][0]["target"], "prod-key", "{r}");
    assert!(!r.to_string().contains("s3cret"), "{r}");
    let r = me
        .round_trip(
            json!({"type":"OWNER","op":"get","service":"aws","target":"prod-key","passphrase":PASS})
                .to_string()
                .as_bytes(),
        )
        .expect("reply");
    assert_eq!(
        (r["ok"].clone(), r["value"].clone()),
        (json!(true), json!("s3cret")),
        "{r}"
    );
    let owner: Vec<Value> = env
        .audit_records()
        .into_iter()
        .filter(|r| r["source"] == "owner")
        .collect();
    assert!(
        owner.iter().any(|r| r["action"] == "read"
            && r["status"] == "success"
            && r["targets"] == json!(["prod-key"])),
        "{owner:#?}"
    );
    assert!(owner.iter().any(|r| r["action"] == "search"), "{owner:#?}");
    let log = std::fs::read_to_string(env.audit()).unwrap();
    assert!(!log.contains("s3cret"), "a value in the log");
    assert!(
        vault_records(&env)
            .iter()
            .any(|r| r["reason"] == "wrong_passphrase"),
        "the wrong one audited"
    );
    drop(me);
    running.stop();
}

/// The embedded dashboard on a locked vault: the presence dialog unlocks it, a prompt's
/// "always" and an approval from the Pending pane each ask for the passphrase again (a wrong
/// one saves nothing, esc changes nothing), "deny" does not.
#[test]
fn an_embedded_dashboard_on_a_vault_asks_for_presence_and_for_every_widening_change() {
    if !testkit::tools_available(&["tmux"], "tmux") {
        return;
    }
    let (env, _) = vault_env(&[]);
    let tmux = Dashboard::start(&env, &["tui", "--embed"]);
    tmux.wait_screen("the presence dialog, locked", |s| {
        s.contains("Prove presence") && s.contains("unlocks it too") && s.contains("EMBEDDED")
    });
    tmux.keys(&["-l", PASS]);
    tmux.keys(&["Enter"]);
    tmux.wait_screen("unlocked and present", |s| {
        s.contains("vault unlocked") && s.contains(" present ·")
    });
    let read = request("read", "aws", &["prod-key"]);

    // Deny: no passphrase.
    let denied = env.client("e2e-denied");
    let held = env.spawn_client(&denied, &read);
    tmux.wait_screen("the prompt", |s| {
        s.contains("e2e-denied") && s.contains("A caller is waiting")
    });
    tmux.keys(&["n"]);
    expect(&held_response(held), "denied", Some("unregistered_binary"));

    // Always: the passphrase again; a wrong one saves nothing.
    let always = env.client("e2e-always");
    let held = env.spawn_client(&always, &read);
    tmux.wait_screen("the prompt", |s| {
        s.contains("e2e-always") && s.contains("A caller is waiting")
    });
    tmux.keys(&["a"]);
    tmux.wait_screen("the always editor", |s| s.contains("Always allow"));
    tmux.keys(&["Enter"]);
    tmux.wait_screen("the passphrase for this change", |s| {
        s.contains("Passphrase for this change")
    });
    tmux.keys(&["-l", "wrong"]);
    tmux.keys(&["Enter"]);
    tmux.wait_screen("said wrong", |s| s.contains("wrong passphrase (attempt"));
    assert!(entry_of(&env, &always).is_none());
    tmux.keys(&["-l", PASS]);
    tmux.keys(&["Enter"]);
    expect(&held_response(held), "success", None);
    assert!(entry_of(&env, &always).is_some());

    // Approve from the Pending pane (the denied caller is pending): the editor, then the
    // passphrase; esc there changes nothing.
    tmux.wait_screen("only the denied caller pending", |s| {
        s.contains(" 1 pending ") && s.contains("e2e-denied")
    });
    tmux.keys(&["1", "a"]);
    tmux.wait_screen("the approve editor", |s| {
        s.contains("e2e-denied") && s.contains("read")
    });
    tmux.keys(&["Enter", "Enter"]);
    tmux.wait_screen("the passphrase for this change", |s| {
        s.contains("Passphrase for this change") && s.contains("approve")
    });
    tmux.keys(&["Escape"]);
    tmux.wait_screen("cancelled", |s| s.contains("nothing was changed"));
    assert!(entry_of(&env, &denied).is_none(), "cancelled: not approved");
    tmux.keys(&["1", "a"]);
    tmux.wait_screen("the approve editor", |s| {
        s.contains("e2e-denied") && s.contains("read")
    });
    tmux.keys(&["Enter", "Enter"]);
    tmux.wait_screen("the passphrase for this change", |s| {
        s.contains("Passphrase for this change")
    });
    tmux.keys(&["-l", PASS]);
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_screen("approved", |s| s.contains("approved "));
    let entry = entry_of(&env, &denied)
        .unwrap_or_else(|| panic!("approved: {:?}\n{screen}", env.registered()));
    assert_eq!(entry["allowed_read_services"], json!(["aws"]));
    expect(&env.run_client(&denied, &[&read])[0], "success", None);
    tmux.keys(&["q"]);
}

/// Words of a screen, whatever wraps them.
fn words(screen: &str) -> String {
    screen.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A fresh home: the dashboard offers a vault (passphrase twice, never shown) and runs on it;
/// declined, it says the plain store is kept, makes no vault, and does not ask again.
#[test]
fn the_first_run_creates_a_vault_or_clearly_keeps_the_plain_store() {
    if !testkit::tools_available(&["tmux"], "tmux") {
        return;
    }
    let mut env = Sandbox::auto();
    env.extra_env
        .push(("KEYCHAIN_AUTH_VAULT_KDF".into(), "floor".into()));
    let vault = env.audit().with_file_name("vault");
    let tmux = Dashboard::start(&env, &["tui"]);
    tmux.wait_screen("the first-run question", |s| {
        s.contains("keep your secrets in a vault?") && s.contains("create a vault")
    });
    tmux.keys(&["y"]);
    tmux.wait_screen("the passphrase", |s| s.contains("Vault passphrase"));
    tmux.keys(&["-l", PASS]);
    let screen = tmux.capture();
    assert!(!screen.contains(PASS), "never shown:\n{screen}");
    tmux.keys(&["Enter"]);
    tmux.wait_screen("asked again", |s| s.contains("The same again"));
    tmux.keys(&["-l", "a different one"]);
    tmux.keys(&["Enter"]);
    tmux.wait_screen("they differ", |s| s.contains("passphrases differ"));
    assert!(!vault.exists());
    tmux.keys(&["-l", PASS]);
    tmux.keys(&["Enter"]);
    tmux.wait_screen("asked again", |s| s.contains("The same again"));
    tmux.keys(&["-l", PASS]);
    tmux.keys(&["Enter"]);
    tmux.wait_screen("the dashboard on its new vault", |s| {
        s.contains("EMBEDDED") && s.contains("vault unlocked") && s.contains(" present ·")
    });
    assert!(vault.exists());
    tmux.keys(&["q"]);
    wait_for(10, "the dashboard gone", || {
        (!env.socket.exists()).then_some(())
    });
    // It is the store now, and it opens only with that passphrase.
    let pass = pass_file(&env, PASS);
    let out = env.cli_env(&with_pass(&pass), &["secret", "ls"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = env.cli_err(&["secret", "ls"]);
    assert!(err.contains("passphrase"), "{err}");
    let wrong = pass_file(&env, "not it");
    let out = env.cli_env(&with_pass(&wrong), &["secret", "ls"]);
    assert!(!out.status.success());

    // Declined: the plain store, said plainly; no vault; not asked again.
    let mut env = Sandbox::auto();
    env.extra_env
        .push(("KEYCHAIN_AUTH_VAULT_KDF".into(), "floor".into()));
    let vault = env.audit().with_file_name("vault");
    let tmux = Dashboard::start(&env, &["tui"]);
    tmux.wait_screen("the first-run question", |s| {
        s.contains("keep your secrets in a vault?")
    });
    tmux.keys(&["n"]);
    let screen = tmux.wait_screen("the plain store said", |s| {
        words(s).contains("You kept the plain store")
    });
    assert!(screen.contains("EMBEDDED"), "{screen}");
    assert!(!screen.contains("vault ·"), "{screen}");
    assert!(!vault.exists());
    tmux.keys(&["q"]);
    wait_for(10, "the dashboard gone", || {
        (!env.socket.exists()).then_some(())
    });
    drop(tmux);
    let again = Dashboard::start(&env, &["tui"]);
    let screen = again.wait_screen("the dashboard, at once", |s| s.contains("EMBEDDED"));
    assert!(
        !screen.contains("keep your secrets in a vault?"),
        "{screen}"
    );
    again.keys(&["q"]);
}

#[test]
#[ignore = "the child process of the socket-approver tests (testkit::Relay)"]
fn relay() {
    testkit::relay_main();
}
