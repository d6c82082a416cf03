//! The wire protocol (SPEC §3): newline-delimited JSON over a Unix stream socket.
//!
//! [`parse_line`] turns one request line into a validated [`Incoming`] or a [`Response`] carrying
//! `malformed_request`; nothing past this module ever sees unvalidated input.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Default cap on one request line, newline excluded.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;
/// Most targets one request may name.
pub const MAX_TARGETS: usize = 1000;
/// Longest service name, in bytes.
pub const MAX_SERVICE_LEN: usize = 256;
/// Longest target name, in bytes.
pub const MAX_TARGET_LEN: usize = 1024;
/// Most attributes on one request.
pub const MAX_ATTRIBUTES: usize = 64;
/// Longest attribute name or value, in bytes.
pub const MAX_ATTRIBUTE_LEN: usize = 1024;
/// Longest request id, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// Attribute pairs as carried on the wire (sorted for stable output).
pub type Attributes = BTreeMap<String, String>;

/// What a request asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Return values and attributes.
    Read,
    /// Store values (and attributes).
    Write,
    /// Remove targets.
    Delete,
    /// List targets and attributes, never values.
    Search,
}

impl Action {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Write => "write",
            Action::Delete => "delete",
            Action::Search => "search",
        }
    }

    fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "read" => Action::Read,
            "write" => Action::Write,
            "delete" => Action::Delete,
            "search" => Action::Search,
            _ => return None,
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How `targets` are matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchMode {
    /// Each target names exactly one item.
    Exact,
    /// Each target is a prefix; `""` matches every target of the service.
    Prefix,
}

impl MatchMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchMode::Exact => "exact",
            MatchMode::Prefix => "prefix",
        }
    }
}

/// A validated `REQUEST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The caller's id, echoed in the response.
    pub id: Option<String>,
    /// What to do.
    pub action: Action,
    /// The service namespace.
    pub service: String,
    /// How targets match. Search always matches by prefix.
    pub mode: MatchMode,
    /// Target names (exact) or prefixes. Never empty after validation.
    pub targets: Vec<String>,
    /// Values to write, aligned with `targets` (write only).
    pub values: Vec<String>,
    /// Attributes to store (write) or to filter by (search, prefix read/delete).
    pub attributes: Attributes,
    /// Whether the caller may be held while an approver decides (`"prompt":false` opts out).
    pub prompt: bool,
}

/// An approver's answer to a prompt (`{"type":"ANSWER"}`, SPEC §11): the one typed message that
/// a connected dashboard writes ([`AnswerLine::to_line`]) and the daemon reads back (the
/// validation of [`parse_line`]), so both sides agree on every field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerLine {
    /// The prompt answered.
    pub prompt: String,
    /// What was decided.
    pub decision: AnswerDecision,
    /// The vault passphrase, for an answer that widens access ("time", "always") while the
    /// broker serves a vault (presence, SPEC §15); checked by the daemon, never logged.
    pub passphrase: Option<Passphrase>,
}

/// A vault passphrase on the wire (an `ANSWER`'s or a `PRESENCE` line's): never shown by
/// `Debug`, and wiped from memory when dropped (with the daemon's runtime).
#[derive(Clone, PartialEq, Eq)]
pub struct Passphrase(String);

impl Passphrase {
    /// Wraps a passphrase.
    pub fn new(p: String) -> Passphrase {
        Passphrase(p)
    }

    /// The passphrase's bytes, for the check.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The passphrase, for the line that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<not shown>)")
    }
}

impl Drop for Passphrase {
    fn drop(&mut self) {
        #[cfg(feature = "daemon")]
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// The decision of an [`AnswerLine`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerDecision {
    /// `once`: serve the held request only.
    Once,
    /// `time`: grant what was asked for `for_s` seconds.
    Time {
        /// How long the grant lasts, in seconds (at least 1).
        for_s: u64,
    },
    /// `always`: a persistent grant of these permissions and terms.
    Always(AlwaysAnswer),
    /// `deny`: refuse the held request.
    Deny,
    /// `forget`: refuse it and dismiss the caller from the pending queue.
    Forget,
    /// `editing`: no decision yet: the approver is editing its answer (the "always" editor or
    /// the duration input is open), so the prompt's countdown is paused, within a bound.
    Editing,
}

/// What an `always` answer grants: services, launch rules and terms, exactly as the approver
/// set them. All empty means "what was asked".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlwaysAnswer {
    /// Services to read.
    pub read: Vec<String>,
    /// Services to write and delete in.
    pub write: Vec<String>,
    /// The search flag.
    pub search: bool,
    /// Launchers (hashes or paths, resolved by the daemon) the caller must run under.
    pub via: Vec<String>,
    /// When the granted services' grants end (Unix milliseconds).
    pub expires_at_ms: Option<i64>,
    /// How many successful uses the granted services' grants have.
    pub uses_left: Option<u32>,
    /// Every use of the granted services is held for an approver.
    pub confirm: bool,
}

impl AnswerLine {
    /// The line a connected approver writes (newline-terminated).
    pub fn to_line(&self) -> Vec<u8> {
        let mut v = serde_json::json!({"type": "ANSWER", "prompt_id": self.prompt});
        let word = match &self.decision {
            AnswerDecision::Once => "once",
            AnswerDecision::Time { for_s } => {
                v["for_s"] = (*for_s).into();
                "time"
            }
            AnswerDecision::Always(a) => {
                v["read"] = a.read.clone().into();
                v["write"] = a.write.clone().into();
                v["search"] = a.search.into();
                if !a.via.is_empty() {
                    v["via"] = a.via.clone().into();
                }
                if let Some(ms) = a.expires_at_ms {
                    v["expires_at_ms"] = ms.into();
                }
                if let Some(n) = a.uses_left {
                    v["uses_left"] = n.into();
                }
                if a.confirm {
                    v["confirm"] = true.into();
                }
                "always"
            }
            AnswerDecision::Deny => "deny",
            AnswerDecision::Forget => "forget",
            AnswerDecision::Editing => "editing",
        };
        v["decision"] = word.into();
        if let Some(p) = &self.passphrase {
            v["passphrase"] = p.expose().into();
        }
        let mut line = serde_json::to_vec(&v).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// One validated line from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A keychain request.
    Request(Request),
    /// `{"type":"STATUS"}`.
    Status,
    /// `{"type":"SUBSCRIBE"}`: become an approver (only keychain-auth itself may).
    Subscribe,
    /// `{"type":"ANSWER",…}` from a subscribed approver.
    Answer(AnswerLine),
    /// `{"type":"PRESENCE","passphrase":…}` from a subscribed approver while the broker serves
    /// a vault: the person proves presence for this subscription (and unlocks a locked vault).
    Presence(Passphrase),
    /// `{"type":"ADMIN","source":…,"admin":{…}}`: a policy change for the running daemon to
    /// carry out (only keychain-auth itself may send one). The change is checked by the daemon.
    Admin {
        /// `cli` or `dashboard`, as the audit log records it.
        source: String,
        /// The change (`{"kind":"approve",…}`).
        admin: serde_json::Value,
        /// The vault passphrase, for a change that widens access while the broker serves a
        /// vault (presence); never logged.
        passphrase: Option<String>,
    },
}

/// The raw shape of a request line, before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
    action: Option<String>,
    service: Option<String>,
    #[serde(rename = "match")]
    mode: Option<String>,
    targets: Option<Vec<String>>,
    values: Option<Vec<String>>,
    attributes: Option<Attributes>,
    prompt: Option<bool>,
    prompt_id: Option<String>,
    decision: Option<String>,
    for_s: Option<u64>,
    read: Option<Vec<String>>,
    write: Option<Vec<String>>,
    search: Option<bool>,
    via: Option<Vec<String>>,
    expires_at_ms: Option<i64>,
    uses_left: Option<u32>,
    confirm: Option<bool>,
    source: Option<String>,
    admin: Option<serde_json::Value>,
    passphrase: Option<String>,
}

impl RawRequest {
    /// Whether any field of a request (beyond type and id) is present.
    fn has_request_fields(&self) -> bool {
        self.action.is_some()
            || self.service.is_some()
            || self.mode.is_some()
            || self.targets.is_some()
            || self.values.is_some()
            || self.attributes.is_some()
            || self.prompt.is_some()
    }

    /// Whether any field of an answer is present.
    fn has_answer_fields(&self) -> bool {
        self.prompt_id.is_some()
            || self.decision.is_some()
            || self.for_s.is_some()
            || self.always_fields()
    }

    /// Whether any field of an admin request is present.
    fn has_admin_fields(&self) -> bool {
        self.source.is_some() || self.admin.is_some() || self.passphrase.is_some()
    }

    /// Whether any field that only an `always` answer takes is present.
    fn always_fields(&self) -> bool {
        self.read.is_some()
            || self.write.is_some()
            || self.search.is_some()
            || self.via.is_some()
            || self.expires_at_ms.is_some()
            || self.uses_left.is_some()
            || self.confirm.is_some()
    }
}

/// Why a request was refused or failed; clients treat unknown reasons as denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The caller's hash is not approved (or its approved path now holds another binary).
    UnregisteredBinary,
    /// The binary's policy does not allow this kind of action (search, prefix match).
    ActionNotInPolicy,
    /// The binary has a launch rule and none of the allowed launchers is among its ancestors.
    LauncherNotAllowed,
    /// The caller runs under a tracer, or with a loader or interpreter injection variable its
    /// policy does not allow (SPEC §10).
    InjectedEnvironment,
    /// The binary has no access of the needed kind to this service.
    ServiceNotAllowed,
    /// The request is not valid protocol.
    MalformedRequest,
    /// The request line exceeds the size cap.
    RequestTooLarge,
    /// An exact read or delete named targets that do not exist.
    NotFound,
    /// The keychain backend cannot be used right now.
    BackendUnavailable,
    /// The store is the vault and it is locked: the message says how to unlock it.
    VaultLocked,
    /// Anything else that went wrong inside the broker.
    InternalError,
}

impl Reason {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::UnregisteredBinary => "unregistered_binary",
            Reason::ActionNotInPolicy => "action_not_in_policy",
            Reason::InjectedEnvironment => "injected_environment",
            Reason::LauncherNotAllowed => "launcher_not_allowed",
            Reason::ServiceNotAllowed => "service_not_allowed",
            Reason::MalformedRequest => "malformed_request",
            Reason::RequestTooLarge => "request_too_large",
            Reason::NotFound => "not_found",
            Reason::BackendUnavailable => "backend_unavailable",
            Reason::VaultLocked => "vault_locked",
            Reason::InternalError => "internal_error",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Outcome class of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The request was carried out.
    Success,
    /// Policy (or the impossibility of establishing it) refused the request.
    Denied,
    /// The request was invalid or failed.
    Error,
}

impl Status {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Denied => "denied",
            Status::Error => "error",
        }
    }
}

/// One item of a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultItem {
    /// The target name.
    pub target: String,
    /// The secret (read only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The target's attributes (read and search).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Attributes>,
}

/// A `RESPONSE` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Always `"RESPONSE"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request's id, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The outcome.
    pub status: Status,
    /// Present whenever status is not success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// What a person should do; present whenever status is not success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The results of a successful request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<ResultItem>>,
}

impl Response {
    /// A success with `results`.
    pub fn success(id: Option<String>, results: Vec<ResultItem>) -> Response {
        Response {
            kind: "RESPONSE".into(),
            id,
            status: Status::Success,
            reason: None,
            message: None,
            results: Some(results),
        }
    }

    /// A refusal or failure.
    pub fn failure(
        id: Option<String>,
        status: Status,
        reason: Reason,
        message: impl Into<String>,
    ) -> Response {
        Response {
            kind: "RESPONSE".into(),
            id,
            status,
            reason: Some(reason),
            message: Some(message.into()),
            results: None,
        }
    }

    /// `malformed_request` with an explanation.
    pub fn malformed(id: Option<String>, why: impl fmt::Display) -> Response {
        Response::failure(
            id,
            Status::Error,
            Reason::MalformedRequest,
            format!("malformed request: {why}"),
        )
    }

    /// Serialises to one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        to_line(self)
    }
}

/// The answer to `{"type":"STATUS"}`: liveness facts only, never a secret, target or policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// Always `"STATUS"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The broker's version.
    pub version: String,
    /// The daemon's process id.
    pub pid: u32,
    /// Seconds since the daemon started.
    pub uptime_s: u64,
    /// `keyring` or `file`.
    pub backend: String,
    /// Connections open right now (this one included).
    pub connections: u64,
    /// Requests served since start.
    pub requests: u64,
    /// With the vault: whether it is locked now (absent with a plain store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
}

impl StatusInfo {
    /// Serialises to one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        to_line(self)
    }
}

fn to_line<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail; fall back to a fixed error line regardless.
    let mut out = serde_json::to_vec(v).unwrap_or_else(|_| {
        br#"{"type":"RESPONSE","status":"error","reason":"internal_error","message":"could not encode the response"}"#.to_vec()
    });
    out.push(b'\n');
    out
}

/// Parses and validates one request line (without its newline).
///
/// On failure the returned response is `malformed_request`, echoing the id when one could be
/// recovered from the line.
pub fn parse_line(line: &[u8]) -> Result<Incoming, Box<Response>> {
    let raw: RawRequest = match serde_json::from_slice(line) {
        Ok(r) => r,
        Err(e) => {
            return Err(Box::new(Response::malformed(
                recover_id(line),
                json_error(&e),
            )));
        }
    };
    let id = raw.id.clone();
    validate(raw).map_err(|why| Box::new(Response::malformed(id, why)))
}

fn json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => format!("not valid JSON ({e})"),
        Category::Io => "could not read the request".into(),
        // serde's "invalid type" messages quote the offending value, which may be a secret:
        // only the messages that name keys are passed on.
        Category::Data => {
            let text = e.to_string();
            if let Some(rest) = text.strip_prefix("unknown field `") {
                // The key is the caller's: bounded and escaped, never echoed whole. serde's
                // message ends in "`, expected one of `type`, …" (names that are ours).
                let (key, expected) = match rest.rfind("`, expected") {
                    Some(end) => (&rest[..end], &rest[end + 1..]),
                    None => (rest, ""),
                };
                format!("unknown field {}{expected}", quote(key))
            } else if text.starts_with("missing field") {
                text
            } else {
                format!(
                    "a field has the wrong type (line {} column {}): type, id, action, service and match are strings; targets and values are arrays of strings; attributes is an object of strings",
                    e.line(),
                    e.column()
                )
            }
        }
    }
}

/// Best effort: the `id` of a line that failed strict parsing, when it is a JSON object with a
/// short string id.
fn recover_id(line: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    let id = v.get("id")?.as_str()?;
    (id.len() <= MAX_ID_LEN && !id.chars().any(char::is_control)).then(|| id.to_string())
}

/// Why a line is not a valid request (the message of its `malformed_request`). Caller text in
/// a message is bounded and escaped ([`quote`]) before it is stored here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum LineError {
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("{what} is longer than {max} bytes")]
    TooLong { what: &'static str, max: usize },
    #[error("{0} contains a control character")]
    Control(&'static str),
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("{0} takes no fields besides type and id")]
    NoFields(&'static str),
    #[error(
        "ANSWER takes prompt_id, decision, for_s, read, write, search, via, expires_at_ms, uses_left, confirm and passphrase"
    )]
    AnswerFields,
    #[error("{0}")]
    AnswerField(&'static str),
    #[error("ADMIN takes type, id, source, admin and passphrase")]
    AdminFields,
    #[error("PRESENCE takes type, id and passphrase")]
    PresenceFields,
    #[error("REQUEST takes no answer or admin fields")]
    RequestFields,
    #[error("unknown decision {0}: expected once, time, always, deny or forget")]
    Decision(String),
    #[error("unknown type {0}: expected REQUEST or STATUS")]
    Type(String),
    #[error("unknown action {0}: expected read, write, delete or search")]
    Action(String),
    #[error("unknown match {0}: expected exact or prefix")]
    Match(String),
    #[error("more than {MAX_ATTRIBUTES} attributes")]
    TooManyAttributes,
    #[error("targets must not be empty")]
    NoTargets,
    #[error("more than {MAX_TARGETS} targets")]
    TooManyTargets,
    #[error("target {0} is named twice")]
    Twice(String),
    #[error("match \"prefix\" is not allowed for write")]
    PrefixWrite,
    #[error("write needs values")]
    NoValues,
    #[error("write has {targets} targets but {values} values")]
    ValueCount { targets: usize, values: usize },
    #[error("{0} takes no values")]
    Values(Action),
    #[error("attributes filter only prefix {0}; an exact {0} takes none")]
    ExactAttributes(Action),
}

fn check_text(what: &'static str, s: &str, max: usize, allow_empty: bool) -> Result<(), LineError> {
    if s.is_empty() && !allow_empty {
        return Err(LineError::Empty(what));
    }
    if s.len() > max {
        return Err(LineError::TooLong { what, max });
    }
    if s.chars().any(char::is_control) {
        return Err(LineError::Control(what));
    }
    Ok(())
}

/// Checks the id, then the line as the kind its `type` names.
fn validate(raw: RawRequest) -> Result<Incoming, LineError> {
    if let Some(id) = &raw.id {
        check_text("id", id, MAX_ID_LEN, true)?;
    }
    match raw.kind.as_str() {
        "STATUS" | "SUBSCRIBE" => validate_bare(&raw),
        "ANSWER" => validate_answer(raw),
        "REQUEST" => validate_request(raw),
        "ADMIN" => validate_admin(raw),
        "PRESENCE" => validate_presence(raw),
        other => Err(LineError::Type(quote(other))),
    }
}

/// `ADMIN`: a source and a change, nothing else.
fn validate_admin(raw: RawRequest) -> Result<Incoming, LineError> {
    if raw.has_request_fields() || raw.has_answer_fields() {
        return Err(LineError::AdminFields);
    }
    let source = raw.source.ok_or(LineError::Missing("source"))?;
    check_text("source", &source, MAX_ID_LEN, false)?;
    let admin = raw.admin.ok_or(LineError::Missing("admin"))?;
    Ok(Incoming::Admin {
        source,
        admin,
        passphrase: raw.passphrase,
    })
}

/// `PRESENCE`: a passphrase, nothing else.
fn validate_presence(mut raw: RawRequest) -> Result<Incoming, LineError> {
    let passphrase = raw.passphrase.take();
    if raw.has_request_fields() || raw.has_answer_fields() || raw.has_admin_fields() {
        return Err(LineError::PresenceFields);
    }
    match passphrase {
        Some(p) if !p.is_empty() => Ok(Incoming::Presence(Passphrase::new(p))),
        _ => Err(LineError::Missing("passphrase")),
    }
}

/// `STATUS` and `SUBSCRIBE`: nothing but type and id.
fn validate_bare(raw: &RawRequest) -> Result<Incoming, LineError> {
    let (kind, incoming) = if raw.kind == "STATUS" {
        ("STATUS", Incoming::Status)
    } else {
        ("SUBSCRIBE", Incoming::Subscribe)
    };
    if raw.has_request_fields() || raw.has_answer_fields() || raw.has_admin_fields() {
        return Err(LineError::NoFields(kind));
    }
    Ok(incoming)
}

/// `ANSWER`: a prompt id, a known decision, valid service names.
fn validate_answer(mut raw: RawRequest) -> Result<Incoming, LineError> {
    // An answer may carry the vault passphrase (presence), nothing else of an admin request.
    let passphrase = raw.passphrase.take();
    if raw.has_request_fields() || raw.has_admin_fields() {
        return Err(LineError::AnswerFields);
    }
    let always_fields = raw.always_fields();
    let prompt = raw.prompt_id.ok_or(LineError::Missing("prompt_id"))?;
    check_text("prompt_id", &prompt, MAX_ID_LEN, false)?;
    let word = raw.decision.ok_or(LineError::Missing("decision"))?;
    if raw.for_s.is_some() && word != "time" {
        return Err(LineError::AnswerField("for_s goes only with decision time"));
    }
    if always_fields && word != "always" {
        return Err(LineError::AnswerField(
            "read, write, search, via, expires_at_ms, uses_left and confirm go only with decision always",
        ));
    }
    let decision = match word.as_str() {
        "once" => AnswerDecision::Once,
        "time" => AnswerDecision::Time {
            for_s: match raw.for_s {
                Some(s) if s >= 1 => s,
                Some(_) => return Err(LineError::AnswerField("for_s must be at least 1")),
                None => return Err(LineError::Missing("for_s")),
            },
        },
        "always" => {
            for s in raw.read.iter().chain(&raw.write).flatten() {
                check_text("service", s, MAX_SERVICE_LEN, false)?;
            }
            for v in raw.via.iter().flatten() {
                check_text("via", v, MAX_TARGET_LEN, false)?;
            }
            if raw.uses_left == Some(0) {
                return Err(LineError::AnswerField("uses_left must be at least 1"));
            }
            AnswerDecision::Always(AlwaysAnswer {
                read: raw.read.unwrap_or_default(),
                write: raw.write.unwrap_or_default(),
                search: raw.search.unwrap_or(false),
                via: raw.via.unwrap_or_default(),
                expires_at_ms: raw.expires_at_ms,
                uses_left: raw.uses_left,
                confirm: raw.confirm.unwrap_or(false),
            })
        }
        "deny" => AnswerDecision::Deny,
        "forget" => AnswerDecision::Forget,
        "editing" => AnswerDecision::Editing,
        _ => return Err(LineError::Decision(quote(&word))),
    };
    if passphrase.is_some() && !matches!(word.as_str(), "time" | "always") {
        return Err(LineError::AnswerField(
            "passphrase goes only with decision time or always",
        ));
    }
    Ok(Incoming::Answer(AnswerLine {
        prompt,
        decision,
        passphrase: passphrase.map(Passphrase::new),
    }))
}

/// `REQUEST`: action, service, match, attributes, targets and values, each checked.
fn validate_request(raw: RawRequest) -> Result<Incoming, LineError> {
    if raw.has_answer_fields() || raw.has_admin_fields() {
        return Err(LineError::RequestFields);
    }
    let action_name = raw.action.ok_or(LineError::Missing("action"))?;
    let action =
        Action::parse(&action_name).ok_or_else(|| LineError::Action(quote(&action_name)))?;
    let service = raw.service.ok_or(LineError::Missing("service"))?;
    check_text("service", &service, MAX_SERVICE_LEN, false)?;
    let mode = match_mode(raw.mode.as_deref())?;
    let attributes = raw.attributes.unwrap_or_default();
    check_attributes(&attributes)?;
    // Search always matches by prefix; a missing target list means every target.
    let mode = if action == Action::Search {
        MatchMode::Prefix
    } else {
        mode
    };
    let targets = check_targets(raw.targets, action, mode)?;
    let values = check_values(raw.values, action, mode, targets.len())?;
    if matches!(action, Action::Read | Action::Delete)
        && mode == MatchMode::Exact
        && !attributes.is_empty()
    {
        return Err(LineError::ExactAttributes(action));
    }
    Ok(Incoming::Request(Request {
        id: raw.id,
        action,
        service,
        mode,
        targets,
        values,
        attributes,
        prompt: raw.prompt.unwrap_or(true),
    }))
}

fn match_mode(mode: Option<&str>) -> Result<MatchMode, LineError> {
    match mode {
        None | Some("exact") => Ok(MatchMode::Exact),
        Some("prefix") => Ok(MatchMode::Prefix),
        Some(other) => Err(LineError::Match(quote(other))),
    }
}

fn check_attributes(attributes: &Attributes) -> Result<(), LineError> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(LineError::TooManyAttributes);
    }
    for (k, v) in attributes {
        check_text("attribute name", k, MAX_ATTRIBUTE_LEN, false)?;
        check_text("attribute value", v, MAX_ATTRIBUTE_LEN, true)?;
    }
    Ok(())
}

/// The target list: present (but for search), bounded, each name valid, no name twice in an
/// exact request.
fn check_targets(
    targets: Option<Vec<String>>,
    action: Action,
    mode: MatchMode,
) -> Result<Vec<String>, LineError> {
    let targets = match targets {
        Some(t) => t,
        None if action == Action::Search => vec![String::new()],
        None => return Err(LineError::Missing("targets")),
    };
    if targets.is_empty() {
        return Err(LineError::NoTargets);
    }
    if targets.len() > MAX_TARGETS {
        return Err(LineError::TooManyTargets);
    }
    for t in &targets {
        check_text("target", t, MAX_TARGET_LEN, mode == MatchMode::Prefix)?;
    }
    if mode == MatchMode::Exact {
        let mut seen = std::collections::HashSet::with_capacity(targets.len());
        if let Some(dup) = targets.iter().find(|t| !seen.insert(t.as_str())) {
            return Err(LineError::Twice(quote(dup)));
        }
    }
    Ok(targets)
}

/// The values: one per target for an exact write, none for anything else.
fn check_values(
    values: Option<Vec<String>>,
    action: Action,
    mode: MatchMode,
    targets: usize,
) -> Result<Vec<String>, LineError> {
    if action != Action::Write {
        if values.is_some() {
            return Err(LineError::Values(action));
        }
        return Ok(Vec::new());
    }
    if mode == MatchMode::Prefix {
        return Err(LineError::PrefixWrite);
    }
    let values = values.ok_or(LineError::NoValues)?;
    if values.len() != targets {
        return Err(LineError::ValueCount {
            targets,
            values: values.len(),
        });
    }
    Ok(values)
}

/// Most characters of a caller's text quoted back in an error message.
pub const MAX_ECHO_CHARS: usize = 64;

/// Caller-supplied text quoted back in an error message: at most [`MAX_ECHO_CHARS`] characters
/// (then `…`), control and bidi characters escaped, in double quotes.
fn quote(s: &str) -> String {
    format!("\"{}\"", crate::display::bounded(s, MAX_ECHO_CHARS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Incoming, Box<Response>> {
        parse_line(s.as_bytes())
    }

    fn malformed(s: &str) -> String {
        let r = parse(s).expect_err("should be malformed");
        assert_eq!(r.reason, Some(Reason::MalformedRequest), "{s}");
        assert_eq!(r.status, Status::Error);
        r.message.unwrap()
    }

    #[test]
    fn parses_full_write() {
        let r = parse(r#"{"type":"REQUEST","id":"7","action":"write","service":"aws","targets":["a","b"],"values":["1","2"],"attributes":{"env":"prod"}}"#).unwrap();
        let Incoming::Request(r) = r else { panic!() };
        assert_eq!(r.id.as_deref(), Some("7"));
        assert_eq!(r.action, Action::Write);
        assert_eq!(r.mode, MatchMode::Exact);
        assert_eq!(r.values, vec!["1", "2"]);
        assert_eq!(r.attributes["env"], "prod");
    }

    #[test]
    fn search_defaults_to_all_targets_by_prefix() {
        let Incoming::Request(r) =
            parse(r#"{"type":"REQUEST","action":"search","service":"aws"}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.targets, vec![String::new()]);
        assert_eq!(r.mode, MatchMode::Prefix);
    }

    /// An answer says exactly one thing: an unknown word, a field of another decision or a
    /// time without its length is refused, never guessed.
    #[test]
    fn answers_are_strict() {
        for bad in [
            r#"{"type":"ANSWER","prompt_id":"p","decision":"frobnicate"}"#,
            r#"{"type":"ANSWER","prompt_id":"p","decision":"time"}"#,
            r#"{"type":"ANSWER","prompt_id":"p","decision":"time","for_s":0}"#,
            r#"{"type":"ANSWER","prompt_id":"p","decision":"once","for_s":60}"#,
            r#"{"type":"ANSWER","prompt_id":"p","decision":"deny","read":["aws"]}"#,
            r#"{"type":"ANSWER","prompt_id":"p","decision":"time","for_s":60,"confirm":true}"#,
            r#"{"type":"ANSWER","prompt_id":"p","decision":"always","uses_left":0}"#,
            r#"{"type":"ANSWER","prompt_id":"p","decision":"always","via":["a\u0007"]}"#,
        ] {
            malformed(bad);
        }
        let Incoming::Answer(a) = parse(
            r#"{"type":"ANSWER","prompt_id":"p","decision":"always","read":["aws"],"via":["/usr/bin/git"],"expires_at_ms":5,"uses_left":2,"confirm":true}"#,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            a.decision,
            AnswerDecision::Always(AlwaysAnswer {
                read: vec!["aws".into()],
                via: vec!["/usr/bin/git".into()],
                expires_at_ms: Some(5),
                uses_left: Some(2),
                confirm: true,
                ..AlwaysAnswer::default()
            })
        );
    }

    #[test]
    fn status_is_recognised() {
        assert_eq!(parse(r#"{"type":"STATUS"}"#).unwrap(), Incoming::Status);
        malformed(r#"{"type":"STATUS","service":"x"}"#);
    }

    #[test]
    fn rejects_catalogue() {
        let cases = [
            "",
            "null",
            "{}",
            "[]",
            "not json",
            r#"{"type":"REQUEST"}"#,
            r#"{"type":"request","action":"read","service":"s","targets":["a"]}"#,
            r#"{"type":"REQUEST","action":"steal","service":"s","targets":["a"]}"#,
            r#"{"type":"REQUEST","action":"read","service":"","targets":["a"]}"#,
            r#"{"type":"REQUEST","action":"read","service":"s","targets":[]}"#,
            r#"{"type":"REQUEST","action":"read","service":"s","targets":[""]}"#,
            r#"{"type":"REQUEST","action":"read","service":"s","targets":["a\u0000"]}"#,
            r#"{"type":"REQUEST","action":"read","service":"s\n","targets":["a"]}"#,
            r#"{"type":"REQUEST","action":"read","service":"s","targets":["a"],"extra":1}"#,
            r#"{"type":"REQUEST","action":"read","service":"s","match":"fuzzy","targets":["a"]}"#,
            r#"{"type":"REQUEST","action":"write","service":"s","targets":["a"]}"#,
            r#"{"type":"REQUEST","action":"write","service":"s","targets":["a","b"],"values":["1"]}"#,
            r#"{"type":"REQUEST","action":"write","service":"s","match":"prefix","targets":["a"],"values":["1"]}"#,
            r#"{"type":"REQUEST","action":"read","service":"s","targets":["a"],"values":["1"]}"#,
            r#"{"type":"REQUEST","action":"read","service":"s","targets":["a","a"]}"#,
            r#"{"type":"REQUEST","action":"read","service":"s","targets":["a"],"attributes":{"k":"v"}}"#,
            r#"{"type":"REQUEST","action":"read","service":1,"targets":["a"]}"#,
        ];
        for c in cases {
            malformed(c);
        }
    }

    #[test]
    fn rejects_too_many_targets() {
        let targets: Vec<String> = (0..=MAX_TARGETS).map(|i| format!("\"t{i}\"")).collect();
        let line = format!(
            r#"{{"type":"REQUEST","action":"read","service":"s","targets":[{}]}}"#,
            targets.join(",")
        );
        assert!(malformed(&line).contains("1000"));
    }

    #[test]
    fn deep_nesting_is_malformed_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        malformed(&deep);
        let deep_obj = format!(
            r#"{{"type":"REQUEST","attributes":{}}}"#,
            "{\"a\":".repeat(5000) + "1" + &"}".repeat(5000)
        );
        malformed(&deep_obj);
    }

    #[test]
    fn id_is_echoed_on_malformed_when_recoverable() {
        let r =
            parse(r#"{"type":"REQUEST","id":"abc","action":"nope","service":"s"}"#).unwrap_err();
        assert_eq!(r.id.as_deref(), Some("abc"));
        let r = parse(r#"{"type":"REQUEST","id":"abc","bogus":true}"#).unwrap_err();
        assert_eq!(r.id.as_deref(), Some("abc"));
    }

    #[test]
    fn error_messages_do_not_echo_values() {
        let line = r#"{"type":"REQUEST","action":"write","service":"s","targets":["a","b"],"values":["SECRET-CANARY"]}"#;
        let msg = malformed(line);
        assert!(!msg.contains("SECRET-CANARY"), "{msg}");
        let line = r#"{"type":"REQUEST","action":"write","service":"s","targets":["a"],"values":"SECRET-CANARY"}"#;
        let msg = malformed(line);
        assert!(!msg.contains("SECRET-CANARY"), "{msg}");
        let line =
            r#"{"type":"REQUEST","action":"write","service":"s","targets":["a"],"values":[7]}"#;
        assert!(malformed(line).contains("wrong type"));
    }

    #[test]
    fn echoed_keys_and_values_are_bounded_and_escaped() {
        let key = format!("\\u001b]0;pwned\\u0007{}", "k".repeat(100_000));
        let line = format!(r#"{{"type":"REQUEST","{key}":1}}"#);
        let msg = malformed(&line);
        // The escaped key is cut to 64 characters; the rest is our own list of field names.
        assert!(msg.len() < 400, "{} bytes", msg.len());
        assert!(!msg.chars().any(char::is_control), "{msg}");
        assert!(
            msg.contains("unknown field \"\\x1b]0;pwned\\x07kkk"),
            "{msg}"
        );
        assert!(msg.contains("…\""), "{msg}");
        let long = format!("\\u202e{}", "a".repeat(5000));
        for line in [
            format!(r#"{{"type":"{long}"}}"#),
            format!(r#"{{"type":"REQUEST","action":"{long}","service":"s"}}"#),
            format!(r#"{{"type":"REQUEST","action":"read","service":"s","match":"{long}"}}"#),
        ] {
            let msg = malformed(&line);
            assert!(msg.len() < 200, "{msg}");
            assert!(
                msg.contains("\\u{202e}aaa") && !msg.contains('\u{202e}'),
                "{msg}"
            );
        }
    }

    #[test]
    fn response_shape() {
        let ok = Response::success(Some("1".into()), vec![]);
        let v: serde_json::Value = serde_json::from_slice(&ok.to_line()).unwrap();
        assert_eq!(v["type"], "RESPONSE");
        assert_eq!(v["status"], "success");
        assert!(v.get("reason").is_none());
        let no = Response::failure(None, Status::Denied, Reason::NotFound, "x");
        let v: serde_json::Value = serde_json::from_slice(&no.to_line()).unwrap();
        assert_eq!(v["reason"], "not_found");
        assert_eq!(v["message"], "x");
    }
}
