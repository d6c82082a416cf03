//! The audit log: one JSON object per line, chained and tamper-evident (SPEC §7, §13).
//!
//! Every request (granted, denied, error), every refused connection and every policy change is
//! recorded. Target names and counts are logged; secret values never are — [`Record`] has no field
//! that could hold one.
//!
//! Each line carries `"seq"` (1, 2, 3, … with no gap, across rotated files and restarts) and
//! `"mac"`, the chain value: an HMAC-SHA-256 keyed with a secret kept in the store (see [`chain`] for the exact
//! bytes). [`AuditLog`] writes them; [`verify`] checks them; [`show`] prints the log for people
//! and scripts.

pub mod chain;
pub mod generation;
pub mod show;
pub mod verify;

use crate::backend::Backend;
use crate::fsutil;
use crate::keys::{Key, KeyError};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Most target names written into one record; the count is always exact.
pub(crate) const MAX_LOGGED_TARGETS: usize = 100;

/// One audit record. Optional fields are omitted when empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the chain (set by the writer; first member of every chained line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The `mac` of the record this one follows, hex; only on the first record of a file and on
    /// records written after a break, so each file can be checked on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_mac: Option<String>,
    /// RFC 3339 timestamp (UTC, milliseconds).
    pub ts: String,
    /// `request`, `connection_refused`, `policy_change`, `daemon`, `migrate`, `audit` (a break
    /// the writer noticed).
    pub event: String,
    /// Who caused it: `daemon`, `cli`, `dashboard`.
    pub source: String,
    /// Caller pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Caller uid (on refused connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Executable path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Executable hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// The request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// read, write, delete, search; or for policy changes: approve, register, upgrade, grant,
    /// revoke, unregister, dismiss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// exact / prefix.
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Target names (requested, or returned by search and prefix operations).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// How many targets, exact even when `targets` is shortened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    /// success / denied / error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Reason code when not success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Previous hash (upgrade).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_hash: Option<String>,
    /// Services granted or revoked for reading (policy changes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<String>,
    /// Services granted or revoked for writing (policy changes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write: Vec<String>,
    /// Search flag granted or revoked (policy changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<bool>,
    /// Injection variables allowed or disallowed by a policy change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_env: Vec<String>,
    /// The caller chain: the caller first, then who launched it (SPEC §10).
    #[serde(default, skip_serializing_if = "crate::identity::Chain::is_empty")]
    pub chain: crate::identity::Chain,
    /// For an interpreter running a script: the script's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// The script's hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_hash: Option<String>,
    /// Launch rules added or removed by a policy change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<String>,
    /// Live approval (SPEC §11): the decision an approver gave (`once`, `time`, `always`,
    /// `deny`, `forget`), or `timeout` / `withdrawn` / `no_answer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// Who answered (`dashboard`, `dashboard pid N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// The prompt a record belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Repeats of one refusal folded into this record (the server's counted refusals): how
    /// many refusals it stands for; it is the latest of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeated: Option<u64>,
    /// With `repeated`: when the first of them happened (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_ts: Option<String>,
    /// The front end a request came through when it is not the socket: `dbus` (the Secret
    /// Service, SPEC §17).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub front: Option<String>,
    /// With the vault: its generation when the record was written (set by the writer). The
    /// highest one in the chain is what an unlock compares the vault file against, so an older
    /// copy put back is refused ([`generation`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_generation: Option<u64>,
    /// HMAC-SHA-256 chain value, hex (set by the writer; last member of every chained line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// Who made a request, as its records name them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Caller {
    /// Its pid.
    pub pid: i32,
    /// Its executable's path, when known.
    pub path: Option<String>,
    /// Its executable's hash, when verified.
    pub hash: Option<String>,
    /// For an interpreter running a script: the script's path and hash.
    pub script: Option<(String, String)>,
    /// The caller chain: the caller first, then who launched it.
    pub chain: crate::identity::Chain,
}

impl Record {
    /// A record of `event` from `source`, stamped now. Prefer the constructor of the event
    /// (below), which fills exactly the fields that event has.
    pub fn new(event: &str, source: &str) -> Record {
        Record {
            ts: now(),
            event: event.into(),
            source: source.into(),
            ..Record::default()
        }
    }

    /// A request from `caller` (`event:"request"`); what it asked is added with
    /// [`Record::with_request`] (or [`Record::with_id`] for a line that was not a request), how it
    /// ended with [`Record::set_outcome`].
    pub(crate) fn request(caller: Caller) -> Record {
        let mut r = Record::new("request", "daemon");
        r.pid = Some(caller.pid);
        r.path = caller.path;
        r.hash = caller.hash;
        if let Some((path, hash)) = caller.script {
            r.script = Some(path);
            r.script_hash = Some(hash);
        }
        r.chain = caller.chain;
        r
    }

    /// What `req` asked: id, action, service, match and targets.
    pub(crate) fn with_request(mut self, req: &crate::protocol::Request) -> Record {
        self.id = req.id.clone();
        self.action = Some(req.action.as_str().into());
        self.service = Some(req.service.clone());
        self.mode = Some(req.mode.as_str().into());
        self.with_targets(req.targets.iter())
    }

    /// The request id (of a line refused before it was a request).
    pub(crate) fn with_id(mut self, id: Option<String>) -> Record {
        self.id = id;
        self
    }

    /// How the request ended: its status, reason code and message.
    pub(crate) fn set_outcome(
        &mut self,
        status: crate::protocol::Status,
        reason: Option<crate::protocol::Reason>,
        message: Option<String>,
    ) {
        self.status = Some(status.as_str().into());
        self.reason = reason.map(|r| r.as_str().into());
        self.message = message;
    }

    /// The prompt a held request belongs to (live approval).
    pub(crate) fn with_prompt(mut self, prompt_id: &str) -> Record {
        self.prompt = Some(prompt_id.into());
        self
    }

    /// How a held request was decided: the approver's decision and who gave it, or
    /// `timeout` / `withdrawn` / `no_answer` with nobody.
    pub(crate) fn with_decision(mut self, decision: &str, answered_by: Option<String>) -> Record {
        self.decision = Some(decision.into());
        self.answered_by = answered_by;
        self
    }

    /// A prompt opened for this request (`event:"prompt"`), with the refusal it would get.
    pub(crate) fn into_prompt(
        mut self,
        prompt_id: &str,
        reason: Option<crate::protocol::Reason>,
        message: Option<String>,
    ) -> Record {
        self.event = "prompt".into();
        self.prompt = Some(prompt_id.into());
        self.reason = reason.map(|r| r.as_str().into());
        self.message = message;
        self
    }

    /// A connection dropped before any request because its peer cannot be served
    /// (`event:"connection_refused"`, `status:"denied"`).
    pub(crate) fn connection_denied(pid: Option<i32>, uid: Option<u32>, message: String) -> Record {
        let mut r = Record::new("connection_refused", "daemon");
        r.status = Some("denied".into());
        r.pid = pid;
        r.uid = uid;
        r.message = Some(message);
        r
    }

    /// A connection turned away because the broker cannot take it now (`status:"error"`).
    pub(crate) fn connection_error(message: String) -> Record {
        let mut r = Record::new("connection_refused", "daemon");
        r.status = Some("error".into());
        r.message = Some(message);
        r
    }

    /// A successful policy change `action` (approve, grant, accept, …) made from `source`
    /// (`cli`, `dashboard`, `daemon`).
    pub(crate) fn policy_change(source: &str, action: &str) -> Record {
        let mut r = Record::new("policy_change", source);
        r.action = Some(action.into());
        r.status = Some("success".into());
        r
    }

    /// A policy change `action` to the entry of the binary at `path` with `hash`.
    pub(crate) fn binary_change(
        source: &str,
        action: &str,
        path: &Path,
        hash: &crate::identity::BinaryHash,
    ) -> Record {
        let mut r = Record::policy_change(source, action);
        r.path = Some(path.display().to_string());
        r.hash = Some(hash.to_string());
        r
    }

    /// A grant of `service` that ended (time up, last use consumed): `expire` by the daemon.
    pub(crate) fn expired(
        path: &Path,
        hash: &crate::identity::BinaryHash,
        service: &str,
        message: String,
    ) -> Record {
        let mut r = Record::binary_change("daemon", "expire", path, hash);
        r.service = Some(service.into());
        r.message = Some(message);
        r
    }

    /// The hash an upgraded entry had before.
    pub(crate) fn with_old_hash(mut self, old: &crate::identity::BinaryHash) -> Record {
        self.old_hash = Some(old.to_string());
        self
    }

    /// The permissions a grant or revoke named (services read and written, search, injection
    /// variables, launchers) and, when it set terms, their description.
    pub(crate) fn with_permissions(
        mut self,
        read: &[String],
        write: &[String],
        search: bool,
        allow_env: &[String],
        via: &[String],
        terms: Option<String>,
    ) -> Record {
        self.read = read.to_vec();
        self.write = write.to_vec();
        self.search = search.then_some(true);
        self.allow_env = allow_env.to_vec();
        self.via = via.to_vec();
        if terms.is_some() {
            self.message = terms;
        }
        self
    }

    /// `policy accept` adopted config.json (`message` says what).
    pub(crate) fn policy_accepted(message: String) -> Record {
        let mut r = Record::policy_change("cli", "accept");
        r.message = Some(message);
        r
    }

    /// The daemon recorded `"backend": "keyring"` after the first keyring write.
    pub(crate) fn pin_backend() -> Record {
        let mut r = Record::policy_change("daemon", "pin_backend");
        r.message = Some(
            "backend pinned to keyring in config.json after the first successful keyring write"
                .into(),
        );
        r
    }

    /// A daemon event (`start`, `stop`, `backend_notice`, `backend_fallback`).
    fn daemon(action: &str, message: Option<String>) -> Record {
        let mut r = Record::new("daemon", "daemon");
        r.action = Some(action.into());
        r.message = message;
        r
    }

    /// The broker started serving (`message`: where, with which store).
    pub(crate) fn daemon_start(message: String) -> Record {
        Record::daemon("start", Some(message))
    }

    /// The broker stopped (`message`: why not cleanly, when it did not).
    pub(crate) fn daemon_stop(message: Option<String>) -> Record {
        Record::daemon("stop", message)
    }

    /// The store selection's start-up notice: `backend_fallback` when the file store was
    /// chosen, `backend_notice` (locked, not answering) for the keyring.
    pub(crate) fn backend_notice(kind: crate::backend::BackendKind, notice: &str) -> Record {
        let action = match kind {
            crate::backend::BackendKind::File => "backend_fallback",
            crate::backend::BackendKind::Keyring | crate::backend::BackendKind::Vault => {
                "backend_notice"
            }
        };
        Record::daemon(action, Some(notice.into()))
    }

    /// `keychain-auth migrate` (`event:"migrate"`): items moved, names left in conflict,
    /// whether it completed cleanly, and its summary.
    pub(crate) fn migrate(
        moved: usize,
        conflicts: Vec<String>,
        clean: bool,
        message: String,
    ) -> Record {
        let mut r = Record::new("migrate", "cli");
        r.action = Some("migrate".into());
        r.count = Some(moved);
        r.targets = conflicts;
        r.status = Some(if clean { "success" } else { "error" }.into());
        r.message = Some(message);
        r
    }

    /// A break in the log the writer noticed (`event:"audit"`): `log_replaced`,
    /// `log_truncated`, `log_appended`, `state_missing`, `state_invalid`.
    pub(crate) fn audit_break(action: &str, message: String) -> Record {
        let mut r = Record::new("audit", "daemon");
        r.action = Some(action.into());
        r.status = Some("error".into());
        r.message = Some(message);
        r
    }

    /// Sets the target names (shortened to [`MAX_LOGGED_TARGETS`]) and their exact count.
    pub(crate) fn with_targets<'a>(
        mut self,
        targets: impl ExactSizeIterator<Item = &'a String>,
    ) -> Record {
        self.count = Some(targets.len());
        self.targets = targets.take(MAX_LOGGED_TARGETS).cloned().collect();
        self
    }

    /// The record as one unchained JSON line, newline included (tests and benchmarks; the log
    /// itself is written by [`AuditLog::append`], which adds `seq` and `mac`).
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self)
            .unwrap_or_else(|_| br#"{"event":"audit_encoding_failed"}"#.to_vec());
        line.push(b'\n');
        line
    }
}

#[cfg(test)]
mod record_tests {
    //! Each event constructor fills exactly the fields its event had when call sites filled
    //! them one by one: the JSON below is what those sites wrote (timestamp aside).
    use super::*;
    use crate::identity::BinaryHash;
    use crate::protocol::{Reason, Status};

    fn json(mut r: Record) -> String {
        r.ts = "T".into();
        String::from_utf8(r.to_line()).unwrap()
    }

    fn hash() -> BinaryHash {
        BinaryHash::parse(&"ab".repeat(32)).unwrap()
    }

    #[test]
    fn requests_name_the_caller_the_request_and_the_outcome() {
        let caller = Caller {
            pid: 7,
            path: Some("/usr/bin/python3".into()),
            hash: Some("sha256:aa".into()),
            script: Some(("/home/u/s.py".into(), "sha256:bb".into())),
            chain: Default::default(),
        };
        let line =
            r#"{"type":"REQUEST","id":"r1","action":"read","service":"aws","targets":["k1","k2"]}"#;
        let Ok(crate::protocol::Incoming::Request(req)) =
            crate::protocol::parse_line(line.as_bytes())
        else {
            panic!("not a request");
        };
        let mut r = Record::request(caller).with_request(&req);
        r.set_outcome(
            Status::Denied,
            Some(Reason::ServiceNotAllowed),
            Some("no".into()),
        );
        assert_eq!(
            json(r),
            "{\"ts\":\"T\",\"event\":\"request\",\"source\":\"daemon\",\"pid\":7,\"path\":\"/usr/bin/python3\",\"hash\":\"sha256:aa\",\"id\":\"r1\",\"action\":\"read\",\"service\":\"aws\",\"match\":\"exact\",\"targets\":[\"k1\",\"k2\"],\"count\":2,\"status\":\"denied\",\"reason\":\"service_not_allowed\",\"message\":\"no\",\"script\":\"/home/u/s.py\",\"script_hash\":\"sha256:bb\"}\n"
        );
        let unverified = Caller {
            pid: 9,
            ..Caller::default()
        };
        let mut r = Record::request(unverified).with_id(Some("x".into()));
        r.set_outcome(Status::Error, Some(Reason::RequestTooLarge), None);
        assert_eq!(
            json(r),
            "{\"ts\":\"T\",\"event\":\"request\",\"source\":\"daemon\",\"pid\":9,\"id\":\"x\",\"status\":\"error\",\"reason\":\"request_too_large\"}\n"
        );
    }

    #[test]
    fn prompts_carry_their_id_and_decision() {
        let base = Record::request(Caller {
            pid: 1,
            ..Caller::default()
        });
        assert_eq!(
            json(base.clone().into_prompt(
                "p1",
                Some(Reason::UnregisteredBinary),
                Some("m".into())
            )),
            "{\"ts\":\"T\",\"event\":\"prompt\",\"source\":\"daemon\",\"pid\":1,\"reason\":\"unregistered_binary\",\"message\":\"m\",\"prompt\":\"p1\"}\n"
        );
        assert_eq!(
            json(
                base.with_prompt("p1")
                    .with_decision("once", Some("dashboard".into()))
            ),
            "{\"ts\":\"T\",\"event\":\"request\",\"source\":\"daemon\",\"pid\":1,\"decision\":\"once\",\"answered_by\":\"dashboard\",\"prompt\":\"p1\"}\n"
        );
    }

    #[test]
    fn refused_connections_and_daemon_events() {
        assert_eq!(
            json(Record::connection_denied(
                Some(3),
                Some(1001),
                "foreign".into()
            )),
            "{\"ts\":\"T\",\"event\":\"connection_refused\",\"source\":\"daemon\",\"pid\":3,\"uid\":1001,\"status\":\"denied\",\"message\":\"foreign\"}\n"
        );
        assert_eq!(
            json(Record::connection_error("busy".into())),
            "{\"ts\":\"T\",\"event\":\"connection_refused\",\"source\":\"daemon\",\"status\":\"error\",\"message\":\"busy\"}\n"
        );
        assert_eq!(
            json(Record::daemon_start("listening".into())),
            "{\"ts\":\"T\",\"event\":\"daemon\",\"source\":\"daemon\",\"action\":\"start\",\"message\":\"listening\"}\n"
        );
        assert_eq!(
            json(Record::daemon_stop(None)),
            "{\"ts\":\"T\",\"event\":\"daemon\",\"source\":\"daemon\",\"action\":\"stop\"}\n"
        );
        assert_eq!(
            json(Record::daemon_stop(Some("busy".into()))),
            "{\"ts\":\"T\",\"event\":\"daemon\",\"source\":\"daemon\",\"action\":\"stop\",\"message\":\"busy\"}\n"
        );
        assert_eq!(
            json(Record::backend_notice(
                crate::backend::BackendKind::File,
                "fell back"
            )),
            "{\"ts\":\"T\",\"event\":\"daemon\",\"source\":\"daemon\",\"action\":\"backend_fallback\",\"message\":\"fell back\"}\n"
        );
        assert_eq!(
            json(Record::backend_notice(
                crate::backend::BackendKind::Keyring,
                "locked"
            )),
            "{\"ts\":\"T\",\"event\":\"daemon\",\"source\":\"daemon\",\"action\":\"backend_notice\",\"message\":\"locked\"}\n"
        );
    }

    #[test]
    fn policy_changes_name_the_entry_and_what_changed() {
        let path = Path::new("/usr/bin/tool");
        let r = Record::binary_change("cli", "grant", path, &hash()).with_permissions(
            &["aws".into()],
            &[],
            true,
            &[],
            &["sha256:cc".into()],
            Some("expires in 1h".into()),
        );
        let h = hash();
        assert_eq!(
            json(r),
            format!(
                "{{\"ts\":\"T\",\"event\":\"policy_change\",\"source\":\"cli\",\"path\":\"/usr/bin/tool\",\"hash\":\"{h}\",\"action\":\"grant\",\"status\":\"success\",\"message\":\"expires in 1h\",\"read\":[\"aws\"],\"search\":true,\"via\":[\"sha256:cc\"]}}\n"
            )
        );
        assert_eq!(
            json(Record::binary_change("dashboard", "upgrade", path, &h).with_old_hash(&h)),
            format!(
                "{{\"ts\":\"T\",\"event\":\"policy_change\",\"source\":\"dashboard\",\"path\":\"/usr/bin/tool\",\"hash\":\"{h}\",\"action\":\"upgrade\",\"status\":\"success\",\"old_hash\":\"{h}\"}}\n"
            )
        );
        assert_eq!(
            json(Record::expired(
                path,
                &h,
                "aws",
                "the grant of aws ended".into()
            )),
            format!(
                "{{\"ts\":\"T\",\"event\":\"policy_change\",\"source\":\"daemon\",\"path\":\"/usr/bin/tool\",\"hash\":\"{h}\",\"action\":\"expire\",\"service\":\"aws\",\"status\":\"success\",\"message\":\"the grant of aws ended\"}}\n"
            )
        );
        assert_eq!(
            json(Record::pin_backend()),
            "{\"ts\":\"T\",\"event\":\"policy_change\",\"source\":\"daemon\",\"action\":\"pin_backend\",\"status\":\"success\",\"message\":\"backend pinned to keyring in config.json after the first successful keyring write\"}\n"
        );
        assert_eq!(
            json(Record::policy_accepted("adopted".into())),
            "{\"ts\":\"T\",\"event\":\"policy_change\",\"source\":\"cli\",\"action\":\"accept\",\"status\":\"success\",\"message\":\"adopted\"}\n"
        );
    }

    #[test]
    fn migrations_count_what_moved_and_name_conflicts() {
        assert_eq!(
            json(Record::migrate(
                3,
                vec!["aws/k".into()],
                false,
                "moved 3".into()
            )),
            "{\"ts\":\"T\",\"event\":\"migrate\",\"source\":\"cli\",\"action\":\"migrate\",\"targets\":[\"aws/k\"],\"count\":3,\"status\":\"error\",\"message\":\"moved 3\"}\n"
        );
        assert_eq!(
            json(Record::migrate(0, Vec::new(), true, "nothing".into())),
            "{\"ts\":\"T\",\"event\":\"migrate\",\"source\":\"cli\",\"action\":\"migrate\",\"count\":0,\"status\":\"success\",\"message\":\"nothing\"}\n"
        );
    }
}

/// The current time as the log writes it.
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Default size at which the daemon rotates the log (64 MiB).
pub(crate) const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Default number of rotated files kept (`audit.log.1` … `audit.log.5`).
pub(crate) const DEFAULT_KEEP: usize = 5;

/// When the log is rotated: config.json `"audit_max_bytes"` (0 turns rotation off) and
/// `"audit_keep"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before a record would take the file past this size; 0: never.
    pub max_bytes: u64,
    /// Rotated files kept (at least 1).
    pub keep: usize,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_bytes: DEFAULT_MAX_BYTES,
            keep: DEFAULT_KEEP,
        }
    }
}

impl Rotation {
    /// The rotation config.json's `audit_max_bytes` and `audit_keep` ask for (the defaults for
    /// what it leaves out). Settings not `vouched` for by the seal (edited outside
    /// keychain-auth) keep at least the defaults' history.
    pub(crate) fn from_settings(
        max_bytes: Option<u64>,
        keep: Option<usize>,
        vouched: bool,
    ) -> Rotation {
        let mut r = Rotation::default();
        if let Some(m) = max_bytes {
            r.max_bytes = m;
        }
        if let Some(k) = keep {
            r.keep = k.max(1);
        }
        if vouched { r } else { r.at_least_default() }
    }

    /// Keeps at least as much history as the defaults: rotation off stays off, a smaller size
    /// or fewer files become the defaults.
    fn at_least_default(self) -> Rotation {
        let d = Rotation::default();
        Rotation {
            max_bytes: if self.max_bytes == 0 {
                0
            } else {
                self.max_bytes.max(d.max_bytes)
            },
            keep: self.keep.max(d.keep),
        }
    }
}

/// Chooses the store that holds the chain key, when the key is first needed (the CLI's
/// selection, which may probe the session bus: see `crate::selection::key_source`).
pub type ChooseStore = Arc<dyn Fn() -> Result<Arc<dyn Backend>, KeyError> + Send + Sync>;

/// Where the writer gets the chain key.
#[derive(Clone)]
pub enum KeySource {
    /// From this store (created there on first use).
    Store(Arc<dyn Backend>),
    /// From the store chosen when the key is first needed (the CLI: the store selection is not
    /// the audit log's business, so the caller hands it in).
    Chosen {
        /// Chooses the store.
        choose: ChooseStore,
        /// Where the vault would be: while this process holds it unlocked, its generation is
        /// stamped on each record.
        vault: PathBuf,
    },
    /// A key given directly (tests and benchmarks).
    Fixed(Key),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Store(s) => write!(f, "Store({})", s.describe()),
            KeySource::Chosen { .. } => f.write_str("Chosen"),
            KeySource::Fixed(_) => f.write_str("Fixed"),
        }
    }
}

/// Keys already read in this process, by log path (a CLI command or the dashboard appends
/// several records; the store is asked once).
static KEYS: std::sync::Mutex<Vec<(PathBuf, Key)>> = std::sync::Mutex::new(Vec::new());

impl KeySource {
    /// The key, created in the store when there is none yet.
    pub(crate) fn get(&self, log: &Path) -> Result<Key, KeyError> {
        if let KeySource::Fixed(k) = self {
            return Ok(k.clone());
        }
        let cached = KEYS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|(p, _)| p == log)
            .map(|(_, k)| k.clone());
        if let Some(k) = cached {
            return Ok(k);
        }
        let k = self.fetch(log)?;
        let mut keys = KEYS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.retain(|(p, _)| p != log);
        keys.push((log.to_path_buf(), k.clone()));
        Ok(k)
    }

    /// The store itself, when this source names one (the CLI's selection is made again).
    pub(crate) fn store(&self) -> Option<Arc<dyn Backend>> {
        match self {
            KeySource::Store(s) => Some(s.clone()),
            KeySource::Chosen { choose, .. } => choose().ok(),
            KeySource::Fixed(_) => None,
        }
    }

    fn fetch(&self, log: &Path) -> Result<Key, KeyError> {
        match self {
            KeySource::Fixed(k) => Ok(k.clone()),
            KeySource::Store(s) => chain::load_or_create(s.as_ref(), log),
            KeySource::Chosen { choose, .. } => chain::load_or_create(choose()?.as_ref(), log),
        }
    }
}

/// The chain position after the last record, kept in `audit.state` next to the log (0600) so
/// that a truncated log is noticed, and which file (device, inode, size) it was written to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct State {
    /// The last record's seq (0: none yet).
    pub seq: u64,
    /// Its chain value, hex.
    pub chain: String,
    /// Device of the file it went to.
    pub dev: u64,
    /// Inode of the file it went to.
    pub ino: u64,
    /// Size of that file just after it.
    pub end: u64,
    /// HMAC over the fields above, so the state cannot be rewritten to match a cut log.
    pub mac: String,
}

impl State {
    fn mac_input(&self) -> String {
        format!(
            "keychain-auth audit state v1|{}|{}|{}|{}|{}",
            self.seq, self.chain, self.dev, self.ino, self.end
        )
    }

    fn sealed(key: &Key, seq: u64, chain: &[u8; 32], dev: u64, ino: u64, end: u64) -> State {
        let mut s = State {
            seq,
            chain: hex::encode(chain),
            dev,
            ino,
            end,
            mac: String::new(),
        };
        s.mac = hex::encode(key.mac(&[s.mac_input().as_bytes()]));
        s
    }

    /// Parses state bytes and checks their MAC; `Ok(None)` when empty.
    pub(crate) fn parse(bytes: &[u8], key: &Key) -> Result<Option<State>, StateError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let s: State =
            serde_json::from_slice(bytes).map_err(|e| StateError::Invalid(e.to_string()))?;
        let want = hex::encode(key.mac(&[s.mac_input().as_bytes()]));
        if want != s.mac {
            return Err(StateError::Mac);
        }
        if s.chain.len() != 64 || hex::decode(&s.chain).is_err() {
            return Err(StateError::Chain);
        }
        Ok(Some(s))
    }

    fn chain_bytes(&self) -> [u8; 32] {
        let mut c = [0u8; 32];
        let _ = hex::decode_to_slice(&self.chain, &mut c);
        c
    }
}

/// What is wrong with the bytes of `audit.state` (the message follows the file's name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StateError {
    /// Not the JSON of a state.
    #[error("is not valid ({0})")]
    Invalid(String),
    /// Its MAC does not hold.
    #[error("does not match its MAC (edited, or written with another key)")]
    Mac,
    /// The chain value is not 64 hex digits.
    #[error("has a malformed chain value")]
    Chain,
}

/// Why the state of a log could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadStateError {
    /// The state file is damaged.
    #[error("{} {source}", .path.display())]
    Damaged {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        source: StateError,
    },
    /// The state file cannot be read.
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        /// The state file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Where the state of the log at `log` is kept: `audit.state` in the same directory.
pub(crate) fn state_path(log: &Path) -> PathBuf {
    log.with_file_name("audit.state")
}

/// The path of rotated file `n` (`audit.log.1` is the newest).
pub(crate) fn rotated_path(log: &Path, n: usize) -> PathBuf {
    let mut name = log.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{n}"));
    log.with_file_name(name)
}

/// Reads the state of the log at `log`, checking its MAC with `key`.
pub(crate) fn read_state(log: &Path, key: &Key) -> Result<Option<State>, ReadStateError> {
    let path = state_path(log);
    match fsutil::read_optional(&path) {
        Ok(Some(b)) => {
            State::parse(&b, key).map_err(|source| ReadStateError::Damaged { path, source })
        }
        Ok(None) => Ok(None),
        Err(source) => Err(ReadStateError::Io { path, source }),
    }
}

/// Size the state file is padded to, so it is rewritten in place without truncation.
const STATE_LEN: usize = 320;

/// How long an append waits for another process (the CLI, the dashboard) to release the log's
/// lock. Appends also run on the daemon's serving thread, so a process holding the lock (a
/// stopped `keychain-auth approve`, a hostile `flock`) must not stall the daemon for good: the
/// append fails instead, and what it would have recorded is not carried out.
const STATE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The chain position while appending.
#[derive(Clone, Copy)]
struct Pos {
    seq: u64,
    chain: [u8; 32],
}

#[derive(Default)]
struct Inner {
    log: Option<File>,
    state: Option<File>,
    key: Option<Key>,
    /// The state bytes this process last wrote or checked, and what they say: when the file
    /// still holds exactly these bytes, their MAC need not be checked again.
    last_state: Option<(Vec<u8>, State)>,
    /// When the key last could not be had, and why: the store is not asked again for
    /// [`KEY_RETRY`], so a hung keyring does not stall every append (some run on the async
    /// workers) for its whole timeout.
    key_failed: Option<(std::time::Instant, String)>,
    /// Set while this process is the log's only writer (see [`AuditLog::hold`]).
    exclusive: Option<Exclusive>,
}

/// The only writer's own account of the log: kept in memory, written to `audit.state` once a
/// second, on rotation and on stop, instead of after every record.
struct Exclusive {
    /// Where the chain and the file stood after this process's last write (`None` until its
    /// first, which takes the careful path).
    at: Option<At>,
    /// `audit.state` lags `at`.
    dirty: bool,
    /// Says when the log or the state was renamed, removed or created by anyone (a rename by
    /// logrotate): the next append takes the careful path. Without it, every append does.
    watch: Option<crate::fsutil::RenameWatch>,
}

/// Where [`Exclusive`] stands: raw while the key is here, sealed when the key is forgotten.
enum At {
    /// The fast path's position, sealed only when `audit.state` is written.
    Held(Held),
    /// Sealed at [`AuditLog::reset_key`], so that no copy of the key outlives it (a vault's
    /// lock): the next record takes the careful path, under the key fetched again.
    Sealed(State),
}

impl At {
    fn sealed(&self) -> State {
        match self {
            At::Held(h) => h.sealed(),
            At::Sealed(s) => s.clone(),
        }
    }
}

/// The position [`Exclusive`] keeps between writes of `audit.state`: the fields of a [`State`],
/// raw, and the key its MAC is to be made with. Sealed into a `State` only when the state is
/// written (once a second, on rotation, on stop), not after every record.
struct Held {
    seq: u64,
    chain: [u8; 32],
    dev: u64,
    ino: u64,
    end: u64,
    key: Key,
}

impl Held {
    fn of(state: &State, key: &Key) -> Held {
        Held {
            seq: state.seq,
            chain: state.chain_bytes(),
            dev: state.dev,
            ino: state.ino,
            end: state.end,
            key: key.clone(),
        }
    }

    fn sealed(&self) -> State {
        State::sealed(
            &self.key,
            self.seq,
            &self.chain,
            self.dev,
            self.ino,
            self.end,
        )
    }
}

/// How long a failure to get the key is remembered before the store is asked again.
pub(crate) const KEY_RETRY: std::time::Duration = std::time::Duration::from_secs(2);

/// An open, chained audit log. Every append takes an exclusive lock on `audit.state` (shared
/// with every other keychain-auth process), reads the chain position from it, checks that the
/// file at the log's path is the one the last record went to, rotates when due, writes the
/// record with a single `write`, and records the new position.
///
/// What another program did to the log is noticed on the next append and recorded as its own
/// chained record before the one being appended (`"event":"audit"`): the file renamed or
/// removed (`log_replaced`; the log is reopened at its path), truncated (`log_truncated`),
/// appended to (`log_appended`), or the state file missing or damaged (`state_missing`,
/// `state_invalid`; the chain resumes from the log's last record).
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    state_path: PathBuf,
    keys: KeySource,
    rotation: Rotation,
    inner: std::sync::Mutex<Inner>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("open", &self.log.is_some())
            .finish()
    }
}

fn other(msg: String) -> io::Error {
    io::Error::other(msg)
}

impl AuditLog {
    /// Opens (creating 0600 in a 0700 directory) the log at `path` and its state file; the key
    /// is fetched on the first append, so a locked keyring delays it without failing the start.
    pub fn open(path: &Path, keys: KeySource, rotation: Rotation) -> io::Result<AuditLog> {
        let log = AuditLog {
            path: path.to_path_buf(),
            state_path: state_path(path),
            keys,
            rotation,
            inner: std::sync::Mutex::new(Inner::default()),
        };
        {
            let mut inner = log.lock_inner();
            inner.log = Some(open_append(path)?);
            inner.state = Some(open_state(&log.state_path)?);
        }
        Ok(log)
    }

    /// Where it writes.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The rotation settings in force.
    pub fn rotation(&self) -> Rotation {
        self.rotation
    }

    fn lock_inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets the key and any recent failure to get it (the vault was locked or unlocked): the
    /// next append asks the store again.
    pub(crate) fn reset_key(&self) {
        let mut inner = self.lock_inner();
        // The held position keeps a copy of the key until it is sealed: seal it now.
        if let Some(ex) = inner.exclusive.as_mut()
            && let Some(At::Held(h)) = &ex.at
        {
            ex.at = Some(At::Sealed(h.sealed()));
        }
        inner.key = None;
        inner.key_failed = None;
        KEYS.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(p, _)| p != &self.path);
    }

    /// Whether the key comes from a vault that is unlocked now.
    fn vault_open(&self) -> bool {
        matches!(&self.keys, KeySource::Store(b)
            if crate::backend::vault::VaultStore::of(b.as_ref()).is_some_and(crate::backend::vault::VaultStore::is_unlocked))
    }

    /// Fetches the key now (the daemon warms it at start); an error says why it cannot be had.
    pub(crate) fn warm_key(&self) -> io::Result<()> {
        let mut inner = self.lock_inner();
        self.key(&mut inner).map(|_| ())
    }

    fn key(&self, inner: &mut Inner) -> io::Result<Key> {
        if let Some(k) = &inner.key {
            return Ok(k.clone());
        }
        // A failure remembered while the vault was locked does not outlive the lock: an
        // unlocked vault gives the key from memory, so whoever waited for the unlock (a held
        // request, a D-Bus prompt) is audited at once, before the unlock's caller resets.
        if let Some((at, why)) = &inner.key_failed
            && at.elapsed() < KEY_RETRY
            && !self.vault_open()
        {
            return Err(other(why.clone()));
        }
        match self.keys.get(&self.path) {
            Ok(k) => {
                inner.key = Some(k.clone());
                inner.key_failed = None;
                Ok(k)
            }
            Err(why) => {
                let why = why.to_string();
                inner.key_failed = Some((std::time::Instant::now(), why.clone()));
                Err(other(why))
            }
        }
    }

    /// Makes this process the log's only writer while the log is open (the daemon, SPEC §19):
    /// the lock on `audit.state` is taken now and kept, so no record needs a lock round trip,
    /// a read of the state or a write of it. Another keychain-auth process that tries to
    /// append meanwhile waits for the lock and fails; the CLI sends its changes to the daemon
    /// instead. A rename, removal or creation of the log or the state by anything else
    /// (logrotate) is noticed by a file watch; a cut or an append by another program by the
    /// size of the file held, checked before each record.
    pub fn hold(&self) -> io::Result<()> {
        let mut inner = self.lock_inner();
        let state = self.lock_state(&mut inner)?;
        inner.state = Some(state);
        let watch = match (
            self.path.parent(),
            self.path.file_name(),
            self.state_path.file_name(),
        ) {
            (Some(dir), Some(log), Some(state)) => {
                crate::fsutil::RenameWatch::new(dir, &[log, state])
            }
            _ => None,
        };
        if watch.is_none() {
            // Without the watch a rename is noticed only by the size check: take the careful
            // path every time instead (correct, one lock-free stat more per record).
            tracing::warn!(
                "keychain-auth: cannot watch {} for renames; every record checks the file at its path",
                self.path.display()
            );
        }
        inner.exclusive = Some(Exclusive {
            at: None,
            dirty: false,
            watch,
        });
        Ok(())
    }

    /// Writes `audit.state` when it lags what was written (the daemon calls it once a second
    /// and when it stops).
    pub fn flush_state(&self) -> io::Result<()> {
        let mut inner = self.lock_inner();
        self.write_held_state(&mut inner)
    }

    fn write_held_state(&self, inner: &mut Inner) -> io::Result<()> {
        let Some(ex) = inner.exclusive.as_mut() else {
            return Ok(());
        };
        let (Some(at), true) = (ex.at.as_ref().map(At::sealed), ex.dirty) else {
            return Ok(());
        };
        let Some(state_file) = inner.state.as_ref() else {
            return Err(other("the audit state is not open".into()));
        };
        let bytes = state_bytes(&at)?;
        state_file.write_all_at(&bytes, 0)?;
        ex.dirty = false;
        inner.last_state = Some((bytes, at));
        Ok(())
    }

    /// The generation of the vault this log's key comes from, while it is unlocked in this
    /// process (stamped on every record then).
    fn vault_generation(&self) -> Option<u64> {
        match &self.keys {
            KeySource::Store(b) => crate::backend::vault::VaultStore::of(b.as_ref())
                .and_then(crate::backend::vault::VaultStore::generation),
            KeySource::Chosen { vault, .. } => {
                crate::backend::vault::VaultStore::existing(vault).and_then(|s| s.generation())
            }
            KeySource::Fixed(_) => None,
        }
    }

    /// Appends one record, chained. An error means the record is not in the log and the caller
    /// must not grant what it describes.
    pub fn append(&self, record: &Record) -> io::Result<()> {
        let stamped;
        let record = match self.vault_generation() {
            Some(g) if record.vault_generation.is_none() => {
                stamped = Record {
                    vault_generation: Some(g),
                    ..record.clone()
                };
                &stamped
            }
            _ => record,
        };
        let mut inner = self.lock_inner();
        let key = self.key(&mut inner)?;
        let deferred = take_deferred(&self.path);
        let out = if inner.exclusive.is_some() {
            self.append_held(&mut inner, &key, &deferred, record)
        } else {
            let state = self.lock_state(&mut inner)?;
            let out = self.append_locked(&mut inner, &state, &key, &deferred, record);
            let _ = state.unlock();
            inner.state = Some(state);
            out
        };
        if out.is_err() {
            for r in deferred {
                defer(&self.path, r);
            }
        }
        out
    }

    /// The only writer's append: when nothing moved the log, it is still the size this
    /// process left it at and no rotation is due, the records are sealed from the position in
    /// memory and written with one `write` (one `fstat` before it); otherwise the state is
    /// brought up to date and the careful path notices and records what happened.
    fn append_held(
        &self,
        inner: &mut Inner,
        key: &Key,
        deferred: &[Record],
        record: &Record,
    ) -> io::Result<()> {
        if let Some(done) = self.append_fast(inner, key, deferred, record) {
            return done;
        }
        let out = self.write_held_state(inner).and_then(|()| {
            let state = self.lock_state(inner)?;
            let out = self.append_locked(inner, &state, key, deferred, record);
            inner.state = Some(state);
            out
        });
        // After a failure the careful path is taken again until it succeeds (a state file
        // replaced by a link keeps every request refused until it is repaired).
        if let Some(ex) = inner.exclusive.as_mut() {
            ex.at = match (&out, &inner.last_state) {
                (Ok(()), Some((_, s))) => Some(At::Held(Held::of(s, key))),
                _ => None,
            };
            ex.dirty = false;
        }
        out
    }

    /// The fast path of [`AuditLog::append_held`]; `None` when it does not apply.
    fn append_fast(
        &self,
        inner: &mut Inner,
        key: &Key,
        deferred: &[Record],
        record: &Record,
    ) -> Option<io::Result<()>> {
        let ex = inner.exclusive.as_ref()?;
        let Some(At::Held(at)) = ex.at.as_ref() else {
            return None;
        };
        let (dev, ino, end) = (at.dev, at.ino, at.end);
        if ex
            .watch
            .as_ref()
            .is_none_or(crate::fsutil::RenameWatch::moved)
        {
            return None;
        }
        let hint = deferred
            .iter()
            .chain(std::iter::once(record))
            .map(|r| 512 + record_len_hint(r))
            .sum::<u64>();
        if at.end == 0 || (self.rotation.max_bytes > 0 && at.end + hint > self.rotation.max_bytes) {
            return None;
        }
        let log = inner.log.as_ref()?;
        match log.metadata() {
            Ok(m) if m.size() == end && (m.dev(), m.ino()) == (dev, ino) => {}
            _ => return None,
        }
        let pos = Pos {
            seq: at.seq,
            chain: at.chain,
        };
        let all = deferred.iter().chain(std::iter::once(record));
        let (out, pos) = match seal_all(key, pos, false, all) {
            Ok(x) => x,
            Err(e) => return Some(Err(e)),
        };
        let written = match (&*log).write(&out) {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        if written != out.len() {
            return Some(Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write to the audit log",
            )));
        }
        // The record is written: from here on the answer is Ok whatever is kept.
        if let Some(ex) = inner.exclusive.as_mut() {
            // Moved on in place: the held key is the one just used (a new key seals the
            // position first, and the careful path holds it again under that key).
            match ex.at.as_mut() {
                Some(At::Held(held)) => {
                    held.seq = pos.seq;
                    held.chain = pos.chain;
                    held.end = end + out.len() as u64;
                }
                _ => ex.at = None,
            }
            ex.dirty = true;
        }
        Some(Ok(()))
    }

    /// Takes the cross-process lock on the state file, reopening it when it was replaced; the
    /// caller unlocks it and puts it back in `inner`.
    fn lock_state(&self, inner: &mut Inner) -> io::Result<File> {
        for _ in 0..8 {
            let f = match inner.state.take() {
                Some(f) => f,
                None => open_state(&self.state_path)?,
            };
            crate::fsutil::lock_within(&f, &self.state_path, STATE_LOCK_WAIT)?;
            let held = f.metadata()?;
            match std::fs::symlink_metadata(&self.state_path) {
                Ok(m) if m.dev() == held.dev() && m.ino() == held.ino() => return Ok(f),
                _ => {
                    // Removed or replaced while we waited: lock the file now at the path.
                    let _ = f.unlock();
                }
            }
        }
        Err(other(format!(
            "{} keeps being replaced; cannot lock it",
            self.state_path.display()
        )))
    }

    /// Appends `deferred` and `record` with the state file locked: checks that the file at the
    /// path is the one held, finds where the chain stands (noting any break found), rotates
    /// when due, then seals and writes every record with one write and the state after it.
    fn append_locked(
        &self,
        inner: &mut Inner,
        state_file: &File,
        key: &Key,
        deferred: &[Record],
        record: &Record,
    ) -> io::Result<()> {
        // 1. The file at the path must be the one we hold.
        let (dev, ino, size) = self.hold_current(inner)?;
        // 2. Where the chain stands, and whether the log is still as we left it.
        let mut notes: Vec<Record> = Vec::new();
        let pos = self.chain_position(inner, state_file, key, (dev, ino, size), &mut notes)?;
        // 3. Rotate when this record would take the file past the limit.
        let (mut size, mut fresh) = (size, size == 0 || !notes.is_empty());
        if self.rotation.max_bytes > 0
            && size > 0
            && size + 512 + record_len_hint(record) > self.rotation.max_bytes
        {
            self.rotate()?;
            inner.log = Some(open_append(&self.path)?);
            size = 0;
            fresh = true;
        }
        let Some(log) = inner.log.as_ref() else {
            return Err(other("the audit log is not open".into()));
        };
        let (dev, ino) = if size == 0 && fresh {
            let meta = log.metadata()?;
            size = meta.size();
            (meta.dev(), meta.ino())
        } else {
            (dev, ino)
        };
        fresh |= size == 0;
        // 4. Seal and write the notes and the record with one write, then the state.
        let starts_chain = pos.seq == 0;
        let all = notes.iter().chain(deferred).chain(std::iter::once(record));
        let (out, pos) = seal_all(key, pos, fresh, all)?;
        let written = (&*log).write(&out)?;
        if written != out.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write to the audit log",
            ));
        }
        let end = size + out.len() as u64;
        let state = State::sealed(key, pos.seq, &pos.chain, dev, ino, end);
        let bytes = state_bytes(&state)?;
        state_file.write_all_at(&bytes, 0)?;
        inner.last_state = Some((bytes, state));
        if starts_chain {
            self.mark_started();
        }
        Ok(())
    }

    /// Records in the store, once the first record of a chain is written, that a chain was
    /// started with its key (see [`chain::started`]).
    fn mark_started(&self) {
        if let Some(store) = self.keys.store()
            && !chain::started(store.as_ref())
            && let Err(e) = chain::set_started(store.as_ref())
        {
            tracing::warn!(
                "keychain-auth: cannot record in the store that the audit chain started: {e}"
            );
        }
    }

    /// Makes sure the log held open is the file at the path (reopening it after a rename or
    /// removal by another program); returns its (device, inode, size).
    fn hold_current(&self, inner: &mut Inner) -> io::Result<(u64, u64, u64)> {
        let at_path = match std::fs::symlink_metadata(&self.path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let held = match &inner.log {
            Some(f) => Some(f.metadata()?),
            None => None,
        };
        let meta = match (held, &at_path) {
            (Some(h), Some(p)) if h.dev() == p.dev() && h.ino() == p.ino() => h,
            _ => {
                let f = open_append(&self.path)?;
                let m = f.metadata()?;
                inner.log = Some(f);
                m
            }
        };
        Ok((meta.dev(), meta.ino(), meta.size()))
    }

    /// The chain position from the log's own last record, when the state file is missing
    /// (`why` is `None`) or invalid; the gap is noted when there was a chain to resume.
    fn resume_from_log(
        &self,
        log: &File,
        size: u64,
        why: Option<String>,
        notes: &mut Vec<Record>,
    ) -> Pos {
        let pos = tail_pos(log, size);
        let state = self.state_path.display();
        match why {
            // A fresh log, or one removed together with its state: the store tells which.
            None if pos.seq == 0 => {
                // (A fixed key has no store: nothing to tell by.)
                if let Some(store) = self.keys.store()
                    && chain::started(store.as_ref())
                {
                    notes.push(note(
                        "state_missing",
                        format!(
                            "{state} and the log were both missing although a chain was started with this key: the records before this one were removed"
                        ),
                    ));
                }
            }
            None => notes.push(note(
                "state_missing",
                format!(
                    "{state} was missing; the chain resumes from the log's last record (seq {})",
                    pos.seq
                ),
            )),
            Some(why) => notes.push(note(
                "state_invalid",
                format!(
                    "{state} {why}; the chain resumes from the log's last record (seq {})",
                    pos.seq
                ),
            )),
        }
        pos
    }

    /// Where the chain stands, from the state file (its MAC checked unless it holds exactly
    /// the bytes this process last wrote), checked against the log held: a replaced, cut or
    /// appended-to log, or a missing or invalid state, is added to `notes` and the chain
    /// resumes from what the log itself says.
    fn chain_position(
        &self,
        inner: &Inner,
        state_file: &File,
        key: &Key,
        (dev, ino, size): (u64, u64, u64),
        notes: &mut Vec<Record>,
    ) -> io::Result<Pos> {
        let Some(log) = inner.log.as_ref() else {
            return Err(other("the audit log is not open".into()));
        };
        let mut buf = Vec::with_capacity(STATE_LEN);
        read_all_at(state_file, &mut buf)?;
        let parsed = match &inner.last_state {
            Some((bytes, s)) if *bytes == buf => Ok(Some(s.clone())),
            _ => State::parse(&buf, key),
        };
        let s = match parsed {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(self.resume_from_log(log, size, None, notes)),
            Err(why) => return Ok(self.resume_from_log(log, size, Some(why.to_string()), notes)),
        };
        let pos = Pos {
            seq: s.seq,
            chain: s.chain_bytes(),
        };
        if (s.dev, s.ino) != (dev, ino) {
            notes.push(note(
                "log_replaced",
                format!(
                    "{} is not the file the previous record (seq {}) went to: it was renamed or removed by another program (logrotate?); continuing in the file now at that path",
                    self.path.display(),
                    s.seq
                ),
            ));
        } else if size < s.end {
            notes.push(note(
                "log_truncated",
                format!(
                    "{} was cut from {} to {size} bytes by another program (copytruncate?) after seq {}",
                    self.path.display(),
                    s.end,
                    s.seq
                ),
            ));
        } else if size > s.end {
            match adopt_tail(log, s.end, size, key, pos) {
                Some(p) => return Ok(p),
                None => notes.push(note(
                    "log_appended",
                    format!(
                        "{} bytes were added to {} by another program after seq {}",
                        size - s.end,
                        self.path.display(),
                        s.seq
                    ),
                )),
            }
        }
        Ok(pos)
    }

    /// `audit.log` becomes `audit.log.1`, `.1` becomes `.2`, …; the oldest beyond `keep` goes.
    fn rotate(&self) -> io::Result<()> {
        let keep = self.rotation.keep.max(1);
        for n in (1..keep).rev() {
            let from = rotated_path(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, rotated_path(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, rotated_path(&self.path, 1))?;
        // Files beyond `keep` (left when `audit_keep` was lowered) go too.
        for old in verify::log_files(&self.path).0 {
            let n = old
                .extension()
                .and_then(|e| e.to_str())
                .and_then(|e| e.parse::<usize>().ok());
            if n.is_some_and(|n| n > keep) {
                std::fs::remove_file(&old)?;
            }
        }
        Ok(())
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        // The only writer's last position reaches `audit.state` when it closes the log.
        let _ = self.flush_state();
    }
}

/// The bytes of `audit.state` for `state` (padded, so a shorter state overwrites a longer one
/// in place).
fn state_bytes(state: &State) -> io::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec(state).map_err(|e| other(e.to_string()))?;
    bytes.resize(bytes.len().max(STATE_LEN), b' ');
    bytes.push(b'\n');
    Ok(bytes)
}

/// A break noticed while appending.
/// Seals `records` in order after `pos` (the first carries `prev_mac` when it starts a file),
/// returning the bytes to write and where the chain then stands.
fn seal_all<'a>(
    key: &Key,
    mut pos: Pos,
    fresh: bool,
    records: impl Iterator<Item = &'a Record>,
) -> io::Result<(Vec<u8>, Pos)> {
    let mut out = Vec::with_capacity(512);
    for (i, r) in records.enumerate() {
        let prev_mac = (fresh && i == 0).then(|| hex::encode(pos.chain));
        let canonical = canonical(r, pos.seq + 1, prev_mac).map_err(|e| other(e.to_string()))?;
        let (line, chain) = chain::seal_line(key, &pos.chain, canonical);
        out.extend_from_slice(&line);
        pos = Pos {
            seq: pos.seq + 1,
            chain,
        };
    }
    Ok((out, pos))
}

/// The canonical JSON of `r` as record `seq` of the chain (what its MAC covers): `r` with `seq`
/// and `prev_mac` set and no `mac`. `seq` and `prev_mac` are a record's first members and `mac`
/// its last, each left out when `None`, so for a fresh record (the usual case) they are written
/// around its own serialisation instead of into a clone of it.
fn canonical(r: &Record, seq: u64, prev_mac: Option<String>) -> serde_json::Result<Vec<u8>> {
    if r.seq.is_some() || r.prev_mac.is_some() || r.mac.is_some() {
        let mut r = r.clone();
        r.seq = Some(seq);
        r.prev_mac = prev_mac;
        r.mac = None;
        return serde_json::to_vec(&r);
    }
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.push(b',');
    if let Some(p) = prev_mac {
        out.extend_from_slice(b"\"prev_mac\":");
        serde_json::to_writer(&mut out, &p)?;
        out.push(b',');
    }
    let members = out.len();
    serde_json::to_writer(&mut out, r)?;
    // Drop the serialisation's own opening brace: its members follow ours. A record always has
    // members (`ts`, `event`, `source`), so the comma before it is right.
    out.remove(members);
    Ok(out)
}

fn note(action: &str, message: String) -> Record {
    Record::audit_break(action, message)
}

fn record_len_hint(r: &Record) -> u64 {
    (r.targets.iter().map(|t| t.len() + 3).sum::<usize>()
        + r.message.as_ref().map_or(0, String::len)
        + r.path.as_ref().map_or(0, String::len)) as u64
}

fn read_all_at(f: &File, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 1024];
    let mut off = 0u64;
    loop {
        let n = f.read_at(&mut chunk, off)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        off += n as u64;
        if n < chunk.len() {
            return Ok(()); // a short read of a regular file is its end
        }
        if buf.len() > 64 * 1024 {
            return Err(other("the audit state file is too large".into()));
        }
    }
}

/// The bytes of `f` in `from..to`, when that is at most 1 MiB.
fn read_range(f: &File, from: u64, to: u64) -> Option<Vec<u8>> {
    let len = usize::try_from(to.checked_sub(from)?).ok()?;
    if len > 1 << 20 {
        return None;
    }
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, from).ok()?;
    Some(buf)
}

/// After a crash between writing records and recording the state, the log holds complete
/// records the state does not know: adopt them when they chain on from `pos`.
fn adopt_tail(f: &File, from: u64, to: u64, key: &Key, mut pos: Pos) -> Option<Pos> {
    let bytes = read_range(f, from, to)?;
    if !bytes.ends_with(b"\n") {
        return None;
    }
    for line in bytes[..bytes.len() - 1].split(|&b| b == b'\n') {
        let seq = chain::line_seq(line)?;
        let (head, c) = chain::split_line(line)?;
        if seq != pos.seq + 1 || chain::chain_of(key, &pos.chain, head) != c {
            return None;
        }
        pos = Pos { seq, chain: c };
    }
    Some(pos)
}

/// The position after the last chained record of `f` (unverified; used only when the state
/// file is gone), or the start of a new chain.
fn tail_pos(f: &File, size: u64) -> Pos {
    let start = size.saturating_sub(64 * 1024);
    let genesis = Pos {
        seq: 0,
        chain: [0u8; 32],
    };
    let Some(bytes) = read_range(f, start, size) else {
        return genesis;
    };
    bytes
        .split(|&b| b == b'\n')
        .rev()
        .find_map(|line| {
            let seq = chain::line_seq(line)?;
            let (_, chain) = chain::split_line(line)?;
            Some(Pos { seq, chain })
        })
        .unwrap_or(genesis)
}

/// Opens (creating 0600) a file of the log with the rules of every state file
/// ([`fsutil::check_state_file`]): never through a link, never blocking on a FIFO put in its
/// place, only a regular file of ours that others cannot write. The log is opened readable too
/// (the writer reads its tail after a crash or a lost state file).
fn open_checked(path: &Path, opts: &mut OpenOptions) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        fsutil::ensure_private_dir(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) => fsutil::check_state_file(path, &m)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let f = opts
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)?;
    fsutil::check_state_file(path, &f.metadata()?)?;
    Ok(f)
}

fn open_append(path: &Path) -> io::Result<File> {
    open_checked(
        path,
        OpenOptions::new().create(true).read(true).append(true),
    )
}

fn open_state(path: &Path) -> io::Result<File> {
    open_checked(
        path,
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true),
    )
}

/// Records waiting for the audit key, by log path (see [`defer`]).
static DEFERRED: std::sync::Mutex<Vec<(PathBuf, Record)>> = std::sync::Mutex::new(Vec::new());

/// Keeps `record` until the next append to the log at `log` in this process can be chained
/// (the key is in a locked keyring), which writes it first, with its original time.
pub(crate) fn defer(log: &Path, record: Record) {
    DEFERRED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((log.to_path_buf(), record));
}

/// At most this many records wait for the key (a flood of refused requests while a vault is
/// locked cannot grow the daemon's memory without bound).
pub(crate) const DEFERRED_CAP: usize = 1_000;

/// [`defer`], unless [`DEFERRED_CAP`] records already wait; returns whether it was kept.
pub(crate) fn defer_capped(log: &Path, record: Record) -> bool {
    let mut all = DEFERRED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if all.len() >= DEFERRED_CAP {
        return false;
    }
    all.push((log.to_path_buf(), record));
    true
}

fn take_deferred(log: &Path) -> Vec<Record> {
    let mut all = DEFERRED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (mine, rest): (Vec<_>, Vec<_>) = all.drain(..).partition(|(p, _)| p == log);
    *all = rest;
    mine.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn key() -> Key {
        Key::from_bytes(&[42u8; 32])
    }

    fn open(p: &Path, rotation: Rotation) -> AuditLog {
        AuditLog::open(p, KeySource::Fixed(key()), rotation).unwrap()
    }

    fn lines(p: &Path) -> Vec<Record> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The clone-free canonical form is byte for byte what serialising the record with `seq`
    /// and `prev_mac` set gives, with and without `prev_mac`, and for a record that already
    /// carries chain members (the clone path).
    #[test]
    fn the_canonical_form_written_around_a_record_equals_its_serialisation_with_the_members_set() {
        let targets = [String::from("a\"b"), String::from("c")];
        let mut r = Record::new("request", "daemon").with_targets(targets.iter());
        r.message = Some("line\nbreak é".into());
        r.chain = vec![crate::identity::Link {
            path: "/usr/bin/x".into(),
            hash: None,
            pid: 7,
            argv: vec!["x".into(), "--y=\"z\"".into()],
        }]
        .into();
        for prev in [None, Some("ab".repeat(32))] {
            let mut set = r.clone();
            set.seq = Some(41);
            set.prev_mac = prev.clone();
            let want = serde_json::to_vec(&set).unwrap();
            assert_eq!(canonical(&r, 41, prev.clone()).unwrap(), want);
            // A record that already has chain members set takes the clone path, same result.
            let mut stale = r.clone();
            stale.seq = Some(3);
            stale.mac = Some("00".into());
            assert_eq!(canonical(&stale, 41, prev).unwrap(), want);
        }
    }

    /// The held writer's position survives a key reset (a vault's lock) sealed, without a copy
    /// of the key: records before and after it form one chain, and the state written on stop
    /// matches the log.
    #[test]
    fn a_held_log_continues_its_chain_across_a_key_reset() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("data/audit.log");
        let log = open(&p, Rotation::default());
        log.hold().unwrap();
        for _ in 0..3 {
            log.append(&Record::new("request", "daemon")).unwrap();
        }
        assert!(matches!(
            log.lock_inner()
                .exclusive
                .as_ref()
                .and_then(|e| e.at.as_ref()),
            Some(At::Held(_))
        ));
        log.reset_key();
        assert!(matches!(
            log.lock_inner()
                .exclusive
                .as_ref()
                .and_then(|e| e.at.as_ref()),
            Some(At::Sealed(_))
        ));
        for _ in 0..2 {
            log.append(&Record::new("request", "daemon")).unwrap();
        }
        log.flush_state().unwrap();
        let recs = lines(&p);
        assert_eq!(
            recs.iter().map(|r| r.seq.unwrap()).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        let r = verify::verify(&p, &key());
        assert!(r.ok, "{:?}", r.breaks);
        assert_eq!(r.records, 5);
    }

    #[test]
    fn appends_chained_lines_with_private_mode() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("data/audit.log");
        let log = open(&p, Rotation::default());
        let targets: Vec<String> = (0..150).map(|i| format!("t{i}")).collect();
        log.append(&Record::new("request", "daemon").with_targets(targets.iter()))
            .unwrap();
        // a second writer (another process, e.g. the CLI) continues the same chain
        open(&p, Rotation::default())
            .append(&Record::new("policy_change", "cli"))
            .unwrap();
        log.append(&Record::new("daemon", "daemon")).unwrap();
        let recs = lines(&p);
        assert_eq!(recs.len(), 3);
        assert_eq!(
            recs.iter().map(|r| r.seq.unwrap()).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(recs[0].prev_mac.as_deref(), Some(&*"0".repeat(64)));
        assert!(recs[1].prev_mac.is_none());
        assert_eq!(recs[0].count, Some(150));
        assert_eq!(recs[0].targets.len(), MAX_LOGGED_TARGETS);
        assert_eq!(recs[1].source, "cli");
        for f in [&p, &state_path(&p)] {
            assert_eq!(
                std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let r = verify::verify(&p, &key());
        assert!(r.ok, "{}", r.render());
        assert_eq!(r.records, 3);
        // the wrong key verifies nothing
        assert!(!verify::verify(&p, &Key::from_bytes(&[1u8; 32])).ok);
    }

    #[test]
    fn removal_while_open_is_noticed_and_recorded() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("audit.log");
        let log = open(&p, Rotation::default());
        log.append(&Record::new("request", "daemon")).unwrap();
        std::fs::rename(&p, rotated_path(&p, 1)).unwrap();
        log.append(&Record::new("request", "daemon")).unwrap();
        let recs = lines(&p);
        assert_eq!(recs.len(), 2, "{recs:?}");
        assert_eq!(recs[0].event, "audit");
        assert_eq!(recs[0].action.as_deref(), Some("log_replaced"));
        assert!(recs[0].prev_mac.is_some());
        let r = verify::verify(&p, &key());
        assert!(r.ok, "{}", r.render());
        assert_eq!(r.records, 3);
        assert!(r.notices.iter().any(|n| n.message.contains("renamed")));
        // removed outright: reopened, recorded, and verify reports the lost file's records
        std::fs::remove_file(&p).unwrap();
        log.append(&Record::new("request", "daemon")).unwrap();
        let r = verify::verify(&p, &key());
        assert!(!r.ok);
        assert_eq!(
            r.breaks[0].kind,
            verify::BreakKind::Missing,
            "{}",
            r.render()
        );
    }

    #[test]
    fn rotation_keeps_the_chain_and_the_count() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("audit.log");
        let rot = Rotation {
            max_bytes: 4096,
            keep: 50,
        };
        let log = open(&p, rot);
        for i in 0..200 {
            let mut r = Record::new("request", "daemon");
            r.id = Some(format!("r{i}"));
            log.append(&r).unwrap();
        }
        let (files, _) = verify::log_files(&p);
        assert!(files.len() > 5, "{files:?}");
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() <= 4096, "{f:?}");
        }
        let r = verify::verify(&p, &key());
        assert!(r.ok, "{}", r.render());
        assert_eq!(r.records, 200);
        // keep 2: older files go, what is kept still verifies on its own
        let small = Rotation {
            max_bytes: 4096,
            keep: 2,
        };
        let log = open(&p, small);
        for _ in 0..100 {
            log.append(&Record::new("request", "daemon")).unwrap();
        }
        let r = verify::verify(&p, &key());
        assert!(r.ok, "{}", r.render());
        assert_eq!(r.last_seq, Some(300));
    }

    #[test]
    fn rotated_files_compressed_by_logrotate_are_read() {
        use std::io::Write as _;
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("audit.log");
        let log = open(
            &p,
            Rotation {
                max_bytes: 2048,
                keep: 20,
            },
        );
        for _ in 0..40 {
            log.append(&Record::new("request", "daemon")).unwrap();
        }
        // logrotate `compress`: audit.log.2 becomes audit.log.2.gz
        let plain = rotated_path(&p, 2);
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(format!("{}.gz", plain.display())).unwrap(),
            flate2::Compression::default(),
        );
        gz.write_all(&std::fs::read(&plain).unwrap()).unwrap();
        gz.finish().unwrap();
        std::fs::remove_file(&plain).unwrap();
        let r = verify::verify(&p, &key());
        assert!(r.ok, "{}", r.render());
        assert_eq!(r.records, 40);
        assert!(
            r.files
                .iter()
                .any(|f| f.file.extension().is_some_and(|e| e == "gz"))
        );
        // a corrupted compressed file is a break, not a crash
        let gzp = format!("{}.gz", plain.display());
        let mut bytes = std::fs::read(&gzp).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&gzp, bytes).unwrap();
        assert!(!verify::verify(&p, &key()).ok);
    }

    #[test]
    fn concurrent_writers_never_fork_the_chain() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("audit.log");
        let rot = Rotation {
            max_bytes: 16 * 1024,
            keep: 1000,
        };
        let handles: Vec<_> = (0..4)
            .map(|w| {
                let p = p.clone();
                std::thread::spawn(move || {
                    // a separate open per thread: separate locks, like separate processes
                    let log = open(&p, rot);
                    for i in 0..250 {
                        let mut r = Record::new("request", "daemon");
                        r.id = Some(format!("{w}-{i}"));
                        log.append(&r).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let r = verify::verify(&p, &key());
        assert!(r.ok, "{}", r.render());
        assert_eq!(r.records, 1000);
        assert!(r.notices.is_empty(), "{}", r.render());
    }

    #[test]
    fn truncation_and_state_loss_are_caught() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("audit.log");
        let log = open(&p, Rotation::default());
        for _ in 0..5 {
            log.append(&Record::new("request", "daemon")).unwrap();
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let kept: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
        std::fs::write(&p, &kept).unwrap();
        let r = verify::verify(&p, &key());
        assert_eq!(r.breaks[0].kind, verify::BreakKind::Truncated);
        assert_eq!(r.breaks[0].line, 3);
        assert_eq!(r.breaks[0].seq, Some(3));
        // the next append records the cut and carries on from seq 5
        log.append(&Record::new("request", "daemon")).unwrap();
        let recs = lines(&p);
        assert_eq!(recs[3].action.as_deref(), Some("log_truncated"));
        assert_eq!(recs[3].seq, Some(6));
        // a lost state file is recorded, and verify says truncation cannot be ruled out
        std::fs::remove_file(state_path(&p)).unwrap();
        let r = verify::verify(&p, &key());
        assert_eq!(r.breaks.last().unwrap().kind, verify::BreakKind::State);
        drop(log);
        open(&p, Rotation::default())
            .append(&Record::new("request", "daemon"))
            .unwrap();
        let recs = lines(&p);
        assert_eq!(
            recs[recs.len() - 2].action.as_deref(),
            Some("state_missing")
        );
        assert_eq!(recs.last().unwrap().seq, Some(9));
    }

    #[test]
    fn symlinks_and_fifos_in_place_of_the_files_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("audit.log");
        let log = open(&p, Rotation::default());
        log.append(&Record::new("request", "daemon")).unwrap();
        // the state file replaced by a symlink to a file the attacker chose: not followed
        let decoy = t.path().join("decoy");
        std::fs::write(&decoy, b"").unwrap();
        std::fs::remove_file(state_path(&p)).unwrap();
        std::os::unix::fs::symlink(&decoy, state_path(&p)).unwrap();
        assert!(log.append(&Record::new("request", "daemon")).is_err());
        assert_eq!(std::fs::read(&decoy).unwrap(), b"");
        std::fs::remove_file(state_path(&p)).unwrap();
        // a FIFO as a rotated file: verify reports it instead of hanging
        nix::unistd::mkfifo(&rotated_path(&p, 1), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let r = verify::verify(&p, &key());
        assert!(!r.ok);
        assert!(r.render().contains("not a regular file"), "{}", r.render());
    }

    #[test]
    fn a_crash_between_log_and_state_is_adopted() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("audit.log");
        let log = open(&p, Rotation::default());
        log.append(&Record::new("request", "daemon")).unwrap();
        let state = std::fs::read(state_path(&p)).unwrap();
        log.append(&Record::new("request", "daemon")).unwrap();
        std::fs::write(state_path(&p), &state).unwrap(); // as if the state write was lost
        let r = verify::verify(&p, &key());
        assert!(r.ok, "{}", r.render());
        assert!(r.notices.iter().any(|n| n.message.contains("crash")));
        log.append(&Record::new("request", "daemon")).unwrap();
        let recs = lines(&p);
        assert_eq!(recs.len(), 3, "adopted without a break record: {recs:?}");
        assert!(verify::verify(&p, &key()).notices.is_empty());
    }
}
