//! Ask, don't refuse (issue 11), the broker's half: held requests, answers, timeouts, hang-ups,
//! several approvers, grants that end. The broker runs in this process (as the dashboard embeds
//! it) so the test can be the approver; callers are real client processes on the real socket.
//! The socket approver (SUBSCRIBE) is a child running this test binary ([`Relay`]), the same
//! executable as the embedded broker — exactly the rule for a connected dashboard.

use keychain_auth::admin::{Grants, Op};
use keychain_auth::server::approval::{Answer, ApproverEvent, Decision, Events, Prompt};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;
use testkit::EmbeddedBroker;
use testkit::{Raw, Relay, Sandbox, expect, held_response, request};

struct Embedded {
    env: Sandbox,
    running: EmbeddedBroker,
    reader: PathBuf,
}

/// An embedded broker on the file store with one secret in `aws`, and an unregistered
/// reader client.
fn embedded() -> Embedded {
    let env = Sandbox::new();
    // Registered before the broker starts (the CLI then changes the files itself): once it
    // runs, changes are made in it (see `EmbeddedBroker::admin`).
    let writer = env.registered_client("writer", &["--write", "aws"]);
    let running = EmbeddedBroker::start(&env);
    env.write_ok(&writer, "aws", &[("k", "v")]);
    let reader = env.client("reader");
    Embedded {
        env,
        running,
        reader,
    }
}

impl Embedded {
    /// Sets config.json's `prompt_timeout_s` by hand and adopts the edit (a hand edit is held
    /// until `policy accept`), checking that the adopted file says `secs`.
    fn set_prompt_timeout(&self, secs: u64) {
        let path = self.env.config();
        let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .expect("config.json parses");
        config["prompt_timeout_s"] = secs.into();
        std::fs::write(&path, config.to_string()).unwrap();
        self.running.accept_config();
        let adopted: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(adopted["prompt_timeout_s"], secs, "{adopted}");
    }

    fn next_prompt(&self, rx: &mut Events) -> Prompt {
        self.running.rt.block_on(async {
            loop {
                match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
                    Ok(Some(ApproverEvent::Prompt(p))) => return *p,
                    Ok(Some(_)) => {}
                    other => panic!("no prompt: {other:?}"),
                }
            }
        })
    }

    fn answer(&self, p: &Prompt, decision: Decision) {
        self.running
            .broker
            .approvals
            .answer(
                &p.id,
                Answer {
                    decision,
                    by: "test approver".into(),
                },
            )
            .unwrap();
    }
}

#[test]
fn a_held_caller_is_decided_by_the_approver() {
    let e = embedded();
    let (_id, mut rx) = e.running.broker.approvals.attach();
    let read = request("read", "aws", &["k"]);
    // Allow once: this request only.
    let c = e.env.spawn_client(&e.reader, &read);
    let p = e.next_prompt(&mut rx);
    assert_eq!(p.path, e.reader.to_str().unwrap());
    assert_eq!((p.action.as_str(), p.service.as_str()), ("read", "aws"));
    assert_eq!(p.targets, ["k"]);
    assert!(!p.registered);
    // The chain starts at the caller and goes on with its direct parent: this test process.
    assert_eq!(p.chain[0].path, e.reader.to_str().unwrap(), "{:?}", p.chain);
    assert_eq!(p.chain[0].pid, p.pid);
    assert_eq!(
        p.chain.get(1).map(|l| l.pid),
        Some(std::process::id() as i32),
        "{:?}",
        p.chain
    );
    e.answer(&p, Decision::Once);
    let r = held_response(c);
    expect(&r, "success", None);
    assert_eq!(r["results"][0]["value"], "v");
    // The next request asks again; deny refuses it.
    let c = e.env.spawn_client(&e.reader, &read);
    let p = e.next_prompt(&mut rx);
    e.answer(&p, Decision::Deny);
    let msg = expect(&held_response(c), "denied", Some("unregistered_binary"));
    assert!(msg.contains("test approver denied"), "{msg}");
    // Allow for a time: approved with a grant that ends; served without asking meanwhile.
    let c = e.env.spawn_client(&e.reader, &read);
    let p = e.next_prompt(&mut rx);
    e.answer(&p, Decision::For(Duration::from_secs(3600)));
    expect(&held_response(c), "success", None);
    expect(
        &held_response(e.env.spawn_client(&e.reader, &read)),
        "success",
        None,
    );
    let list = e.env.registered();
    let reader_entry = list
        .iter()
        .find(|b| b["path"] == e.reader.to_str().unwrap())
        .expect("approved by the answer");
    assert!(
        reader_entry["service_terms"]["aws"]["expires_at"].is_string(),
        "{reader_entry}"
    );
    // Every prompt and answer is in the audit log with who answered.
    let recs = e.env.audit_records();
    assert!(recs.iter().filter(|r| r["event"] == "prompt").count() >= 3);
    assert!(recs.iter().any(|r| r["decision"] == "once"
        && r["answered_by"] == "test approver"
        && r["status"] == "success"));
    assert!(
        recs.iter()
            .any(|r| r["decision"] == "deny" && r["status"] == "denied")
    );
    assert!(
        recs.iter()
            .any(|r| r["event"] == "policy_change" && r["source"] == "dashboard")
    );
}

#[test]
fn timeouts_opt_outs_hangups_and_other_callers() {
    let e = embedded();
    e.set_prompt_timeout(1);
    let (_id, mut rx) = e.running.broker.approvals.attach();
    let read = request("read", "aws", &["k"]);
    // No answer: the refusal of today, and the pending entry.
    let c = e.env.spawn_client(&e.reader, &read);
    let _p = e.next_prompt(&mut rx);
    let msg = expect(&held_response(c), "denied", Some("unregistered_binary"));
    assert!(msg.contains("no approver answered in time"), "{msg}");
    assert_eq!(e.env.pending_entries().len(), 1);
    // "prompt":false: refused at once although an approver is attached.
    let no_prompt = serde_json::json!({"type":"REQUEST","action":"read","service":"aws","targets":["k"],"prompt":false}).to_string();
    let t = std::time::Instant::now();
    expect(
        &held_response(e.env.spawn_client(&e.reader, &no_prompt)),
        "denied",
        Some("unregistered_binary"),
    );
    assert!(t.elapsed() < Duration::from_millis(900), "not held");
    // A held request does not hold up STATUS or an approved caller.
    e.set_prompt_timeout(30);
    let held = e.env.spawn_client(&e.reader, &read);
    let p = e.next_prompt(&mut rx);
    assert!(testkit::status(&e.env.socket).is_some());
    let approved = e.env.client("approved");
    e.running.register(
        &approved,
        Grants {
            read: vec!["aws".into()],
            ..Grants::default()
        },
    );
    expect(&e.env.run_client(&approved, &[&read])[0], "success", None);
    // The caller hangs up: its prompt is withdrawn.
    let mut held = held;
    held.kill().unwrap();
    let _ = held.wait();
    let resolved = e.running.rt.block_on(async {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some(ApproverEvent::Resolved { id, outcome, .. })) if id == p.id => {
                    return outcome;
                }
                Ok(Some(_)) => {}
                other => panic!("not resolved: {other:?}"),
            }
        }
    });
    assert_eq!(resolved, "withdrawn");
    // Both ends are in the audit log, each with its prompt and its decision.
    let recs = e.env.audit_records();
    let decided = |d: &str| {
        recs.iter()
            .any(|r| r["event"] == "request" && r["decision"] == d && r["prompt"].is_string())
    };
    assert!(decided("timeout"), "{recs:?}");
    testkit::wait_for(10, "the withdrawn record", || {
        e.env
            .audit_records()
            .iter()
            .any(|r| r["decision"] == "withdrawn" && r["prompt"] == p.id.as_str())
            .then_some(())
    });
    // No approver attached any more: refused at once.
    e.running.broker.approvals.detach(_id);
    expect(
        &held_response(e.env.spawn_client(&e.reader, &read)),
        "denied",
        Some("unregistered_binary"),
    );
}

#[test]
fn repeats_coalesce_and_the_first_of_two_approvers_wins() {
    let e = embedded();
    let (_a, mut rx_a) = e.running.broker.approvals.attach();
    let (_b, mut rx_b) = e.running.broker.approvals.attach();
    let read = request("read", "aws", &["k"]);
    let c1 = e.env.spawn_client(&e.reader, &read);
    let p = e.next_prompt(&mut rx_a);
    let c2 = e.env.spawn_client(&e.reader, &read);
    // The repeat joins the same prompt (shown again with two waiting).
    let again = e.next_prompt(&mut rx_a);
    assert_eq!(again.id, p.id);
    assert_eq!(again.waiting, 2);
    let seen_by_b = e.next_prompt(&mut rx_b);
    assert_eq!(seen_by_b.id, p.id);
    e.answer(&p, Decision::Once);
    let late = e.running.broker.approvals.answer(
        &p.id,
        Answer {
            decision: Decision::Deny,
            by: "second approver".into(),
        },
    );
    assert!(late.is_err(), "the first answer won");
    expect(&held_response(c1), "success", None);
    expect(&held_response(c2), "success", None);
}

#[test]
fn every_use_of_a_confirm_grant_is_asked_and_the_answer_decides() {
    let e = embedded();
    e.running.register(&e.reader, Grants::default());
    e.running.admin(Op::Grant {
        selector: e.reader.to_str().unwrap().into(),
        grants: Grants {
            read: vec!["aws".into()],
            terms: keychain_auth::admin::GrantTerms {
                confirm: true,
                ..Default::default()
            },
            ..Grants::default()
        },
    });
    let (_id, mut rx) = e.running.broker.approvals.attach();
    let read = request("read", "aws", &["k"]);
    // A registered caller's use is held like an unknown caller's, and "once" serves it.
    let c = e.env.spawn_client(&e.reader, &read);
    let p = e.next_prompt(&mut rx);
    assert!(p.registered, "{p:?}");
    e.answer(&p, Decision::Once);
    expect(&held_response(c), "success", None);
    // The next use asks again, and "deny" refuses it; the grant stays.
    let c = e.env.spawn_client(&e.reader, &read);
    let p = e.next_prompt(&mut rx);
    e.answer(&p, Decision::Deny);
    expect(&held_response(c), "denied", Some("service_not_allowed"));
    assert!(e.env.cli_ok(&["list"]).contains("aws: confirm each use"));
}

#[test]
fn an_answer_covers_only_the_request_it_was_asked_about() {
    let e = embedded();
    let (_a, mut rx) = e.running.broker.approvals.attach();
    let exact = e
        .env
        .spawn_client(&e.reader, &request("read", "aws", &["k"]));
    let p1 = e.next_prompt(&mut rx);
    // The same caller, meanwhile, asks for every secret of the service.
    let every = serde_json::json!({"type":"REQUEST","action":"read","service":"aws","match":"prefix","targets":[""]}).to_string();
    let prefix = e.env.spawn_client(&e.reader, &every);
    let p2 = e.next_prompt(&mut rx);
    assert_ne!(p2.id, p1.id, "a different request is a different question");
    assert_eq!(p2.mode, "prefix");
    e.answer(&p1, Decision::Once);
    expect(&held_response(exact), "success", None);
    e.answer(&p2, Decision::Deny);
    expect(
        &held_response(prefix),
        "denied",
        Some("unregistered_binary"),
    );
}

#[test]
fn the_dashboard_may_subscribe_when_every_regular_slot_is_taken() {
    let env = Sandbox::new();
    let limits = keychain_auth::server::Limits {
        max_connections: 4,
        reserve: 2,
        ..keychain_auth::server::Limits::default()
    };
    let running = EmbeddedBroker::start_with(&env, limits);
    // Another process holds every regular slot (each answers STATUS, so it is surely admitted).
    let reader = env.client("hog");
    let hog: Vec<_> = (0..4)
        .map(|_| {
            let mut c = Raw::connect(&env.socket);
            assert_eq!(
                c.round_trip(br#"{"type":"STATUS"}"#).unwrap()["type"],
                "STATUS"
            );
            c
        })
        .collect();
    // A caller on a reserve slot gets nothing but STATUS...
    let r = env.run_client(&reader, &[r#"{"type":"SUBSCRIBE"}"#]);
    assert_ne!(r[0]["type"], "SUBSCRIBED", "{:?}", r[0]);
    // ...and keychain-auth itself (a process running the broker's executable) may subscribe.
    let mut sub = Relay::start(&env, "relay", None, &[]);
    let ack = sub.round_trip(br#"{"type":"SUBSCRIBE"}"#).unwrap();
    assert_eq!(ack["type"], "SUBSCRIBED", "{ack}");
    drop(hog);
    running.stop();
}

#[test]
fn a_subscribed_socket_approver_answers_and_other_binaries_may_not_subscribe() {
    let e = embedded();
    // A client binary that is not keychain-auth cannot subscribe.
    let r = e.env.run_client(&e.reader, &[r#"{"type":"SUBSCRIBE"}"#]);
    let msg = expect(&r[0], "denied", Some("unregistered_binary"));
    assert!(msg.contains("only keychain-auth itself"), "{msg}");
    // A process running the broker's own executable may.
    let mut sub = Relay::start(&e.env, "relay", None, &[]);
    let ack = sub.round_trip(br#"{"type":"SUBSCRIBE"}"#).unwrap();
    assert_eq!(ack["type"], "SUBSCRIBED");
    let c = e
        .env
        .spawn_client(&e.reader, &request("read", "aws", &["k"]));
    let prompt = sub.read_line().unwrap();
    assert_eq!(prompt["type"], "PROMPT", "{prompt}");
    assert_eq!(prompt["path"], e.reader.to_str().unwrap());
    let answer = serde_json::json!({"type":"ANSWER","prompt_id":prompt["id"],"decision":"always"});
    let mut line = answer.to_string().into_bytes();
    line.push(b'\n');
    sub.send_bytes(&line).unwrap();
    // The answer is acknowledged and the prompt resolved (in either order).
    let mut got = vec![sub.read_line().unwrap(), sub.read_line().unwrap()];
    got.sort_by_key(|v| v["type"].as_str().unwrap_or_default().to_string());
    assert_eq!(got[0]["type"], "ANSWERED", "{got:?}");
    assert!(got[0].get("error").is_none(), "{got:?}");
    assert_eq!(got[1]["type"], "RESOLVED");
    assert_eq!(got[1]["outcome"], "always");
    expect(&held_response(c), "success", None);
    // "Always" is a persistent grant of exactly what was asked.
    let list = e.env.registered();
    let entry = list
        .iter()
        .find(|b| b["path"] == e.reader.to_str().unwrap())
        .unwrap();
    assert_eq!(entry["allowed_read_services"], serde_json::json!(["aws"]));
    assert_eq!(entry["allowed_write_services"], serde_json::json!([]));
    assert!(entry.get("service_terms").is_none());
}

#[test]
fn stopping_the_broker_answers_a_held_request_before_it_audits_stop() {
    let e = embedded();
    let (_id, mut rx) = e.running.broker.approvals.attach();
    let c = e
        .env
        .spawn_client(&e.reader, &request("read", "aws", &["k"]));
    let p = e.next_prompt(&mut rx);
    // An idle connection too: it must not hold the stop up until its idle timeout.
    let _idle = Raw::connect(&e.env.socket);
    let started = std::time::Instant::now();
    let Embedded { env, running, .. } = e;
    running.stop();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the idle connection (30 s idle timeout) held the stop up: {:?}",
        started.elapsed()
    );
    assert!(!env.socket.exists(), "socket removed once drained");
    let msg = expect(&held_response(c), "denied", Some("unregistered_binary"));
    assert!(msg.contains("the broker is stopping"), "{msg}");
    // The held request's refusal is in the log before "stop", which is last.
    let records = env.audit_records();
    let refusal = records
        .iter()
        .position(|r| r["prompt"] == p.id.as_str() && r["decision"] == "stopping")
        .unwrap_or_else(|| panic!("no refusal for the held request: {records:?}"));
    let last = records.last().unwrap();
    assert_eq!(
        (&last["event"], &last["action"]),
        (&Value::from("daemon"), &Value::from("stop"))
    );
    assert!(refusal < records.len() - 1);
    assert!(
        last.get("message").is_none(),
        "every session ended in time: {last}"
    );
}

/// The socket approver's side of [`Relay`]: run only as a child of the tests above.
#[test]
#[ignore = "the child process of the socket-approver tests (testkit::Relay)"]
fn relay() {
    testkit::relay_main();
}
