//! The full SPEC flow as one function, so it can run against every keychain backend: unknown
//! caller → pending → approve with zero privileges → grant → write → read → search → prefix read
//! → delete, with the refusals in between.

use crate::{Sandbox, expect, request, targets, write_request};
use serde_json::{Value, json};

/// Runs the flow against the daemon already running for `env`. `service` namespaces the items so
/// a shared keyring does not mix runs.
pub fn full_flow(env: &Sandbox, service: &str) {
    let client = env.client("mycli");
    let client_path = std::fs::canonicalize(&client).expect("canonical");
    let read_key = request("read", service, &["prod-api-key"]);

    // 1. Unknown caller: denied, queued as pending with what it asked.
    let r = &env.run_client(&client, &[&read_key])[0];
    let msg = expect(r, "denied", Some("unregistered_binary"));
    assert!(msg.contains("keychain-auth approve"), "{msg}");
    let pending = env.pending_entries();
    assert_eq!(pending.len(), 1, "{pending:?}");
    let p = &pending[0];
    let hash = p["hash"].as_str().expect("hash").to_string();
    assert!(hash.starts_with("sha256:") && hash.len() == 71, "{hash}");
    assert_eq!(p["path"], client_path.to_str().expect("utf8"));
    assert_eq!(p["attempts"], 1);
    assert_eq!(p["last_action"], "read");
    assert_eq!(p["last_service"], service);
    assert!(
        p["argv"][0].as_str().expect("argv0").ends_with("mycli"),
        "{p}"
    );
    assert!(p["first_seen"].is_string() && p["last_seen"].is_string());

    // 2. Approve by an 8-digit prefix: zero privileges.
    env.cli_ok(&["approve", &hash["sha256:".len().."sha256:".len() + 8]]);
    assert!(
        env.pending_entries().is_empty(),
        "approved entry leaves the queue"
    );
    let reg = env.registered();
    assert_eq!(reg[0]["hash"], hash.as_str());
    assert_eq!(reg[0]["allowed_read_services"], json!([]));
    assert_eq!(reg[0]["can_search"], false);
    let r = &env.run_client(&client, &[&read_key])[0];
    let msg = expect(r, "denied", Some("service_not_allowed"));
    assert!(msg.contains("keychain-auth grant"), "{msg}");

    // 3. Grant, then a write batch with attributes.
    env.cli_ok(&["grant", &hash, "--read", service, "--write", service]);
    let w = write_request(
        service,
        &["prod-api-key", "prod-db-password"],
        &["k-1", "p-2"],
        json!({"environment":"production"}),
    );
    let dev = write_request(
        service,
        &["dev-key"],
        &["d-3"],
        json!({"environment":"dev"}),
    );
    let rs = env.run_client_stdin(&client, &[&w, &dev]);
    expect(&rs[0], "success", None);
    assert_eq!(targets(&rs[0]), ["prod-api-key", "prod-db-password"]);
    assert!(
        rs[0]["results"][0].get("value").is_none(),
        "write returns targets only"
    );
    expect(&rs[1], "success", None);

    // 4. Read batch: values and attributes.
    let r = &env.run_client(
        &client,
        &[&request(
            "read",
            service,
            &["prod-db-password", "prod-api-key"],
        )],
    )[0];
    expect(r, "success", None);
    assert_eq!(r["results"][0]["target"], "prod-db-password");
    assert_eq!(r["results"][0]["value"], "p-2");
    assert_eq!(r["results"][1]["value"], "k-1");
    assert_eq!(
        r["results"][1]["attributes"],
        json!({"environment":"production"})
    );

    // 5. Search and prefix read need --search.
    let search = json!({"type":"REQUEST","action":"search","service":service,
        "attributes":{"environment":"production"}})
    .to_string();
    let prefix_read =
        json!({"type":"REQUEST","action":"read","service":service,"match":"prefix","targets":["prod-"]})
            .to_string();
    let rs = env.run_client(&client, &[&search, &prefix_read]);
    expect(&rs[0], "denied", Some("action_not_in_policy"));
    expect(&rs[1], "denied", Some("action_not_in_policy"));
    env.cli_ok(&["grant", &hash, "--search"]);
    let rs = env.run_client(&client, &[&search, &prefix_read]);
    expect(&rs[0], "success", None);
    assert_eq!(targets(&rs[0]), ["prod-api-key", "prod-db-password"]);
    for item in rs[0]["results"].as_array().expect("results") {
        assert!(
            item.get("value").is_none(),
            "search never returns values: {item}"
        );
        assert_eq!(item["attributes"], json!({"environment":"production"}));
    }
    expect(&rs[1], "success", None);
    let values: Vec<&str> = rs[1]["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|i| i["value"].as_str().expect("value"))
        .collect();
    assert_eq!(values, ["k-1", "p-2"]);

    // 6. Exact read/delete naming a missing target: the whole batch fails, nothing deleted.
    let rs = env.run_client(
        &client,
        &[
            &request("read", service, &["prod-api-key", "nope"]),
            &request("delete", service, &["prod-api-key", "nope"]),
            &request("read", service, &["prod-api-key"]),
        ],
    );
    assert!(expect(&rs[0], "error", Some("not_found")).contains("\"nope\""));
    assert!(expect(&rs[1], "error", Some("not_found")).contains("\"nope\""));
    expect(&rs[2], "success", None);

    // 7. Delete: exact, then prefix with an attribute filter.
    let prefix_delete_dev = json!({"type":"REQUEST","action":"delete","service":service,
        "match":"prefix","targets":[""],"attributes":{"environment":"dev"}})
    .to_string();
    let everything = json!({"type":"REQUEST","action":"search","service":service}).to_string();
    let rs = env.run_client(
        &client,
        &[
            &request("delete", service, &["prod-api-key"]),
            &request("read", service, &["prod-api-key"]),
            &prefix_delete_dev,
            &everything,
        ],
    );
    expect(&rs[0], "success", None);
    expect(&rs[1], "error", Some("not_found"));
    expect(&rs[2], "success", None);
    assert_eq!(targets(&rs[2]), ["dev-key"]);
    assert_eq!(targets(&rs[3]), ["prod-db-password"]);

    // 8. A write-only binary cannot read what it writes.
    let writer = env.client("writer");
    env.register(&writer, &["--write", service]);
    let rs = env.run_client_stdin(
        &writer,
        &[
            &write_request(service, &["w"], &["w-1"], json!({})),
            &request("read", service, &["w"]),
        ],
    );
    expect(&rs[0], "success", None);
    expect(&rs[1], "denied", Some("service_not_allowed"));

    // 9. Every decision was audited with the caller's hash; no value was.
    let audit = env.audit_records();
    let mine: Vec<&Value> = audit
        .iter()
        .filter(|r| r["event"] == "request" && r["hash"] == hash.as_str())
        .collect();
    assert!(
        mine.iter()
            .any(|r| r["status"] == "denied" && r["reason"] == "unregistered_binary")
    );
    assert!(
        mine.iter()
            .any(|r| r["status"] == "success" && r["action"] == "search")
    );
    assert!(
        mine.iter()
            .any(|r| r["status"] == "error" && r["reason"] == "not_found")
    );
    let text = std::fs::read_to_string(env.audit()).expect("audit");
    for secret in ["k-1", "p-2", "d-3", "w-1"] {
        assert!(
            !text.contains(&format!("\"{secret}\"")),
            "{secret} leaked into the audit log"
        );
    }
    assert!(audit.iter().any(|r| r["event"] == "policy_change"
        && r["action"] == "approve"
        && r["source"] == "cli"));
}
