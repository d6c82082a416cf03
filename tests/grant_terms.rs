//! Grants that end (issue 11): `--once`, `--for`, `--confirm`, against the real daemon.

use testkit::{Sandbox, expect, request};

fn setup() -> (Sandbox, testkit::Daemon, std::path::PathBuf) {
    let env = Sandbox::new();
    let d = env.start();
    let writer = env.registered_client("writer", &["--write", "aws"]);
    env.write_ok(&writer, "aws", &[("k", "v")]);
    let reader = env.registered_client("reader", &[]);
    (env, d, reader)
}

#[test]
fn a_once_grant_is_consumed_by_the_next_successful_use() {
    let (env, _d, reader) = setup();
    let r = reader.to_str().unwrap();
    env.cli_ok(&["grant", r, "--read", "aws", "--once"]);
    let list = env.cli_ok(&["list"]);
    assert!(list.contains("aws: 1 use left"), "{list}");
    let read = request("read", "aws", &["k"]);
    // A failed use does not consume it.
    let missing = request("read", "aws", &["nope"]);
    expect(
        &env.run_client(&reader, &[&missing])[0],
        "error",
        Some("not_found"),
    );
    expect(&env.run_client(&reader, &[&read])[0], "success", None);
    expect(
        &env.run_client(&reader, &[&read])[0],
        "denied",
        Some("service_not_allowed"),
    );
    assert!(env.registered()[1]["allowed_read_services"] == serde_json::json!([]));
    let recs = env.audit_records();
    assert!(
        recs.iter()
            .any(|r| r["action"] == "expire" && r["service"] == "aws" && r["source"] == "daemon"),
        "the end of the grant is audited"
    );
}

#[test]
fn a_once_grant_serves_one_of_many_requests_at_once() {
    let (env, _d, reader) = setup();
    env.cli_ok(&["grant", reader.to_str().unwrap(), "--read", "aws", "--once"]);
    let read = request("read", "aws", &["k"]);
    let callers: Vec<_> = (0..16).map(|_| env.spawn_client(&reader, &read)).collect();
    let answers: Vec<_> = callers.into_iter().map(testkit::held_response).collect();
    let served = answers.iter().filter(|a| a["status"] == "success").count();
    assert_eq!(served, 1, "{answers:?}");
    for a in answers.iter().filter(|a| a["status"] != "success") {
        expect(a, "denied", Some("service_not_allowed"));
    }
}

#[test]
fn a_timed_grant_ends_and_is_pruned() {
    let (env, _d, reader) = setup();
    let r = reader.to_str().unwrap();
    let err = env.cli_err(&["grant", r, "--read", "aws", "--for", "soon"]);
    assert!(err.contains("not a duration"), "{err}");
    let err = env.cli_err(&["grant", r, "--search", "--for", "1m"]);
    assert!(err.contains("--read or --write"), "{err}");
    // Long enough that a loaded machine still reads within it; the wait after is measured
    // from the grant, not from the read.
    let term = std::time::Duration::from_secs(8);
    env.cli_ok(&["grant", r, "--read", "aws", "--for", "8s"]);
    let granted = std::time::Instant::now();
    let list = env.cli_ok(&["list"]);
    assert!(list.contains("aws: expires in"), "{list}");
    let read = request("read", "aws", &["k"]);
    expect(&env.run_client(&reader, &[&read])[0], "success", None);
    std::thread::sleep(
        (term + std::time::Duration::from_millis(300)).saturating_sub(granted.elapsed()),
    );
    // Never served after the end, whether or not it has been pruned yet.
    expect(
        &env.run_client(&reader, &[&read])[0],
        "denied",
        Some("service_not_allowed"),
    );
    testkit::wait_for(15, "the expired grant to be pruned", || {
        let list = env.registered();
        let b = list.iter().find(|b| b["path"] == r)?;
        (b["allowed_read_services"] == serde_json::json!([]) && b.get("service_terms").is_none())
            .then_some(())
    });
    // The record follows the config write that removed the grant.
    testkit::wait_for(5, "the expiry to be audited", || {
        env.audit_records()
            .iter()
            .any(|r| r["action"] == "expire" && r["source"] == "daemon")
            .then_some(())
    });
}

#[test]
fn a_confirm_grant_is_refused_when_no_dashboard_answers() {
    let (env, _d, reader) = setup();
    let r = reader.to_str().unwrap();
    env.cli_ok(&["grant", r, "--read", "aws", "--confirm"]);
    let list = env.cli_ok(&["list"]);
    assert!(list.contains("aws: confirm each use"), "{list}");
    let msg = expect(
        &env.run_client(&reader, &[&request("read", "aws", &["k"])])[0],
        "denied",
        Some("service_not_allowed"),
    );
    assert!(msg.contains("must be confirmed"), "{msg}");
    // Granting the service again without terms makes it plain.
    env.cli_ok(&["grant", r, "--read", "aws"]);
    expect(
        &env.run_client(&reader, &[&request("read", "aws", &["k"])])[0],
        "success",
        None,
    );
}
