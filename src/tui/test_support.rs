//! Fixed sample data for reducer and snapshot tests (fixed clock, fixed hashes).

use super::state::{BrokerInfo, OnDisk, PolicyRow, State};
use crate::audit::Record;
use crate::identity::BinaryHash;
use crate::pending::PendingEntry;
use crate::policy::BinaryPolicy;
use chrono::{DateTime, TimeZone, Utc};

/// 2026-11-24 10:00:00 UTC.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0)
        .single()
        .expect("valid time")
}

/// A hash of 64 × `c`.
pub fn hash(c: char) -> BinaryHash {
    BinaryHash::parse(&c.to_string().repeat(64)).expect("hash")
}

/// A request record with `status` for `service`.
pub fn record(status: &str, service: &str) -> Record {
    let mut r = Record::new("request", "daemon");
    r.ts = "2026-11-24T09:59:30.000Z".into();
    r.pid = Some(4242);
    r.path = Some("/usr/local/bin/mycli".into());
    r.hash = Some(hash('a').to_string());
    r.action = Some("read".into());
    r.service = Some(service.into());
    r.mode = Some("exact".into());
    r.targets = vec!["prod-api-key".into()];
    r.count = Some(1);
    r.status = Some(status.into());
    if status != "success" {
        r.reason = Some("service_not_allowed".into());
    }
    r
}

/// A state with nothing loaded.
pub fn empty_state() -> State {
    State::new(BrokerInfo {
        embedded: true,
        socket: "/run/user/1000/keychain-auth/agent.sock".into(),
        backend: "file".into(),
        connections: 0,
        requests: 0,
        pid: 4100,
        reachable: true,
        store: None,
    })
}

/// Two pending callers (a script, a changed binary), three policies (one changed on disk, one an
/// interpreter allowed any script), three audit
/// records.
pub fn sample_state() -> State {
    let mut s = empty_state();
    s.pending = sample_pending();
    s.policies = sample_policies();
    s.audit = vec![
        record("success", "aws"),
        record("denied", "gcp"),
        record("success", "aws"),
    ];
    s.audit_sel = 2;
    s.broker.connections = 1;
    s.broker.requests = 17;
    s.now_ms = now_ms();
    s
}

/// The sample's pending callers: a script run by node (launched by npm from bash), and a
/// changed version of a registered binary.
fn sample_pending() -> Vec<PendingEntry> {
    let t = now();
    vec![
        PendingEntry {
            hash: hash('d'),
            path: "/home/me/.npm/_npx/1f2e/node_modules/.bin/leftpad".into(),
            pid: 5150,
            argv: vec!["leftpad".into(), "--fix".into()],
            first_seen: t - chrono::Duration::minutes(3),
            last_seen: t - chrono::Duration::seconds(20),
            attempts: 3,
            last_action: "read".into(),
            last_service: "aws".into(),
            changed_from: None,
            interpreter: Some(crate::policy::InterpreterRef {
                path: "/usr/bin/node".into(),
                hash: hash('9'),
            }),
            chain: vec![
                link("/usr/bin/node", 5150, &["node", "leftpad", "--fix"]),
                link("/usr/bin/npm", 5140, &["npm", "exec", "leftpad"]),
                link("/usr/bin/bash", 5100, &["bash"]),
            ],
        },
        PendingEntry {
            hash: hash('c'),
            path: "/usr/local/bin/deploy".into(),
            pid: 5200,
            argv: vec!["deploy".into(), "prod".into()],
            first_seen: t - chrono::Duration::minutes(1),
            last_seen: t - chrono::Duration::minutes(1),
            attempts: 1,
            last_action: "write".into(),
            last_service: "k8s".into(),
            changed_from: Some(hash('b')),
            interpreter: None,
            chain: Vec::new(),
        },
    ]
}

/// The sample's policies: mycli (unchanged), deploy (changed on disk, a timed term, approved
/// via a launcher), and python3.11 allowed to run any script.
fn sample_policies() -> Vec<PolicyRow> {
    let t = now();
    let mut mycli = BinaryPolicy::new("/usr/local/bin/mycli".into(), hash('a'));
    mycli.registered_at = "2026-11-20T08:00:00Z".into();
    mycli.allowed_read_services.insert("aws".into());
    mycli.allowed_write_services.insert("aws".into());
    let mut deploy = BinaryPolicy::new("/usr/local/bin/deploy".into(), hash('b'));
    deploy.registered_at = "2026-11-21T12:30:00Z".into();
    deploy.allowed_read_services.insert("k8s".into());
    deploy.can_search = true;
    deploy.launched_by.insert(hash('7'));
    deploy.service_terms.insert(
        "k8s".into(),
        crate::policy::GrantTerms {
            expires_at: Some(t + chrono::Duration::minutes(9)),
            ..Default::default()
        },
    );
    let mut python = BinaryPolicy::new("/usr/bin/python3.11".into(), hash('e'));
    python.registered_at = "2026-11-22T09:00:00Z".into();
    python.allowed_read_services.insert("pypi".into());
    python.allow_any_script = true;
    vec![
        PolicyRow {
            entry: mycli,
            on_disk: OnDisk::Ok,
        },
        PolicyRow {
            entry: deploy,
            on_disk: OnDisk::Changed(hash('c')),
        },
        PolicyRow {
            entry: python,
            on_disk: OnDisk::Ok,
        },
    ]
}

/// A chain link with hash 64 × `e`.
pub fn link(path: &str, pid: i32, argv: &[&str]) -> crate::identity::Link {
    crate::identity::Link {
        path: path.into(),
        hash: Some(hash('e')),
        pid,
        argv: argv.iter().map(std::string::ToString::to_string).collect(),
    }
}

/// A prompt: `python3 deploy.py`, launched by bash, asks to read `aws`; 25 s left at
/// [`now`] (see [`now_ms`]).
pub fn prompt(id: &str) -> crate::server::approval::Prompt {
    crate::server::approval::Prompt {
        id: id.into(),
        path: "/usr/bin/python3.11".into(),
        hash: hash('e').to_string(),
        script: Some("/home/me/bin/deploy.py".into()),
        script_hash: Some(hash('f').to_string()),
        pid: 6001,
        argv: vec!["python3".into(), "deploy.py".into(), "--prod".into()],
        chain: vec![
            link("/usr/bin/python3.11", 6001, &["python3", "deploy.py"]),
            link("/usr/bin/bash", 5990, &["bash"]),
            link("/usr/sbin/sshd", 5900, &["sshd: me"]),
        ],
        registered: false,
        action: "read".into(),
        service: "aws".into(),
        mode: "exact".into(),
        targets: vec!["prod-api-key".into()],
        reason: crate::protocol::Reason::UnregisteredBinary,
        message: "unregistered binary /home/me/bin/deploy.py".into(),
        deadline_ms: now_ms() + 25_000,
        waiting: 1,
    }
}

/// [`now`] in Unix milliseconds.
pub fn now_ms() -> i64 {
    now().timestamp_millis()
}

/// Two services for the Secrets view: aws (two keys with an attribute), git (one credential).
pub fn sample_secrets() -> Vec<crate::server::owner_view::OwnerService> {
    use crate::server::owner_view::{OwnerItem, OwnerService};
    let item = |t: &str, attrs: &[(&str, &str)]| OwnerItem {
        target: t.into(),
        attributes: attrs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect(),
    };
    vec![
        OwnerService {
            service: "aws".into(),
            items: vec![
                item("prod/access_key_id", &[("environment", "production")]),
                item("prod/secret_access_key", &[("environment", "production")]),
            ],
        },
        OwnerService {
            service: "git".into(),
            items: vec![item("https://github.com", &[("username", "me")])],
        },
    ]
}
