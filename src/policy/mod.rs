//! The policy: `config.json`, the binaries the user approved and what each may do (SPEC §4):
//! its types, parsing and the rules that authorise a request. Below it nothing knows the policy
//! (identity computes hashes, the audit log records them); above it, in this folder:
//!
//! - [`seal`]: the HMAC seal over config.json, so an edit made outside keychain-auth is held;
//! - [`sealed`]: every write under an exclusive lock, atomic and sealed, so the CLI, the
//!   dashboard and the daemon never lose each other's edits, and the settings in force;
//! - [`cache`]: the daemon's view, re-parsed only when the file changed, turning a corrupt or
//!   unsafe file into a denial with a reason, never into access.

pub mod cache;
pub mod seal;
pub mod sealed;

use crate::fsutil;
use crate::identity::BinaryHash;
use crate::protocol::{Action, MatchMode, Reason, Request};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The protocol version written into new config files.
pub const PROTOCOL_VERSION: &str = "1";

/// One approved binary and its permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryPolicy {
    /// Where the binary lives (canonical path).
    pub path: PathBuf,
    /// Its approved hash.
    pub hash: BinaryHash,
    /// When it was approved or registered (RFC 3339).
    pub registered_at: String,
    /// Services it may read.
    #[serde(default)]
    pub allowed_read_services: BTreeSet<String>,
    /// Services it may write and delete in.
    #[serde(default)]
    pub allowed_write_services: BTreeSet<String>,
    /// Whether it may search and use prefix matches.
    #[serde(default)]
    pub can_search: bool,
    /// Injection variables (`LD_PRELOAD`, `PYTHONPATH`, …) it may run with (SPEC §10).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub allow_env: BTreeSet<String>,
    /// For a script: the interpreter it was approved under (`path`/`hash` above are the
    /// script's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<InterpreterRef>,
    /// For a bare interpreter: serve it whatever script or inline code it runs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_any_script: bool,
    /// Launch rule: served only when one of these hashes is among its ancestors.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub launched_by: BTreeSet<BinaryHash>,
    /// Grants that end or need confirmation, per service (SPEC §11).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_terms: BTreeMap<String, GrantTerms>,
    /// Fields written by newer versions, kept as they are.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl BinaryPolicy {
    /// A zero-privilege entry.
    pub fn new(path: PathBuf, hash: BinaryHash) -> BinaryPolicy {
        BinaryPolicy {
            path,
            hash,
            registered_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            allowed_read_services: BTreeSet::new(),
            allowed_write_services: BTreeSet::new(),
            can_search: false,
            allow_env: BTreeSet::new(),
            interpreter: None,
            allow_any_script: false,
            launched_by: BTreeSet::new(),
            service_terms: BTreeMap::new(),
            extra: serde_json::Map::new(),
        }
    }

    /// Whether `req` is allowed; the error is the reason and a message for the person.
    pub fn authorize(&self, req: &Request) -> Result<(), (Reason, String)> {
        let short = self.hash.short();
        let path = self.path.display();
        // keychain-auth's own secrets (the audit key) are never served, whatever config.json says.
        if crate::keys::is_reserved_service(&req.service) {
            return Err((
                Reason::ServiceNotAllowed,
                format!(
                    "service {:?} is reserved for keychain-auth itself and is never served",
                    req.service
                ),
            ));
        }
        let needs_search = req.action == Action::Search || req.mode == MatchMode::Prefix;
        if needs_search && !self.can_search {
            let what = if req.action == Action::Search {
                "search".to_string()
            } else {
                format!("prefix {}", req.action)
            };
            return Err((
                Reason::ActionNotInPolicy,
                format!(
                    "{path} may not {what}; allow it with: keychain-auth grant {short} --search"
                ),
            ));
        }
        let (allowed, flag, verb) = match req.action {
            Action::Read | Action::Search => (&self.allowed_read_services, "--read", "read"),
            Action::Write | Action::Delete => (&self.allowed_write_services, "--write", "write"),
        };
        if !allowed.contains(&req.service) {
            return Err((
                Reason::ServiceNotAllowed,
                format!(
                    "{path} may not {verb} service {:?}; allow it with: keychain-auth grant {short} {flag} {}",
                    req.service,
                    shell_word(&req.service)
                ),
            ));
        }
        if let Some(t) = self.terms_for(&req.service)
            && t.expired(chrono::Utc::now())
        {
            return Err((
                Reason::ServiceNotAllowed,
                format!(
                    "the grant of service {:?} to {path} expired; grant it again with: keychain-auth grant {short} {flag} {}",
                    req.service,
                    shell_word(&req.service)
                ),
            ));
        }
        Ok(())
    }

    /// The terms of the grants for `service`, when they end or need confirmation.
    pub fn terms_for(&self, service: &str) -> Option<&GrantTerms> {
        self.service_terms.get(service).filter(|t| !t.is_empty())
    }
}

/// Terms of a service's grants (SPEC §11): an end time, a number of uses, confirmation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantTerms {
    /// After this (RFC 3339) the grants of the service are never served, and are pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Successful uses left; the grants go when it reaches 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses_left: Option<u32>,
    /// Every use is held for an approver, and refused when none answers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub confirm: bool,
}

impl GrantTerms {
    /// No terms at all.
    pub fn is_empty(&self) -> bool {
        self.expires_at.is_none() && self.uses_left.is_none() && !self.confirm
    }

    /// Whether the grants have ended at `now` (time passed, or no use left).
    pub fn expired(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.expires_at.is_some_and(|t| t <= now) || self.uses_left == Some(0)
    }

    /// For people: `expires in 9m`, `1 use left`, `confirm`.
    pub fn describe(&self, now: chrono::DateTime<chrono::Utc>) -> String {
        let mut parts = Vec::new();
        if let Some(t) = self.expires_at {
            let left = (t - now).num_seconds();
            parts.push(if left <= 0 {
                "expired".to_string()
            } else {
                format!("expires in {}", human_duration(left as u64))
            });
        }
        if let Some(n) = self.uses_left {
            parts.push(format!("{n} use{} left", if n == 1 { "" } else { "s" }));
        }
        if self.confirm {
            parts.push("confirm each use".into());
        }
        parts.join(", ")
    }
}

/// `90` → `1m30s`, `7200` → `2h`, `90000` → `1d1h`.
pub fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(d, "d"), (h, "h"), (m, "m"), (s, "s")] {
        if n > 0 && out.len() < 6 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() { "0s".into() } else { out }
}

/// A text that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration: use for example 10m, 2h or 1d")]
pub struct BadDuration(pub String);

/// Parses `10m`, `2h`, `1d`, `90s`, `1h30m` into seconds.
pub fn parse_duration(text: &str) -> Result<u64, BadDuration> {
    let bad = || BadDuration(text.to_string());
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = total.saturating_add(n.saturating_mul(unit));
        num.clear();
    }
    if !num.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(total)
}

/// Quotes `s` for a shell command line when it needs it.
fn shell_word(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./:@%+=,".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The interpreter a script entry was approved under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterpreterRef {
    /// The interpreter's path.
    pub path: PathBuf,
    /// Its hash.
    pub hash: BinaryHash,
}

/// The whole config.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFile {
    /// Always "1" for now.
    pub protocol_version: String,
    /// Preferred backend (`auto`, `keyring`, `file`); `KEYCHAIN_AUTH_BACKEND` wins over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Cap on one request line in bytes (default 64 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_bytes: Option<usize>,
    /// Size at which the daemon rotates the audit log (default 64 MiB; 0 turns rotation off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_max_bytes: Option<u64>,
    /// Rotated audit files kept (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_keep: Option<usize>,
    /// The approved binaries.
    #[serde(default)]
    pub registered_binaries: Vec<BinaryPolicy>,
    /// HMAC over the rest of the file, written by keychain-auth (see [`crate::policy::seal`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
    /// Interpreter names added to the built-in list (SPEC §10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interpreters: Vec<String>,
    /// How long a request is held for an approver's answer, in seconds (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_timeout_s: Option<u64>,
    /// Fields written by newer versions, kept as they are.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for PolicyFile {
    fn default() -> Self {
        PolicyFile {
            protocol_version: PROTOCOL_VERSION.into(),
            backend: None,
            max_request_bytes: None,
            audit_max_bytes: None,
            audit_keep: None,
            registered_binaries: Vec::new(),
            seal: None,
            interpreters: Vec::new(),
            prompt_timeout_s: None,
            extra: serde_json::Map::new(),
        }
    }
}

impl PolicyFile {
    /// The entry approved for `hash`.
    pub fn by_hash(&self, hash: &BinaryHash) -> Option<&BinaryPolicy> {
        self.registered_binaries.iter().find(|b| &b.hash == hash)
    }

    /// The entry registered at `path`.
    pub fn by_path(&self, path: &Path) -> Option<&BinaryPolicy> {
        self.registered_binaries.iter().find(|b| b.path == path)
    }

    /// Finds the one entry a `HASH|PATH` argument names: a path when it contains `/`, else a
    /// full hash, bare hex, or a unique prefix of at least 8 hex digits.
    pub fn resolve(&self, selector: &str) -> Result<usize, SelectorError> {
        if selector.contains('/') {
            let wanted = canonical_or_literal(Path::new(selector));
            return self
                .registered_binaries
                .iter()
                .position(|b| b.path == wanted || b.path == Path::new(selector))
                .ok_or(SelectorError::NoPath(wanted));
        }
        let hashes: Vec<&BinaryHash> = self.registered_binaries.iter().map(|b| &b.hash).collect();
        let found = match_hash(selector, &hashes)?;
        Ok(self
            .registered_binaries
            .iter()
            .position(|b| &b.hash == found)
            .unwrap_or_default())
    }

    fn validate(&self) -> Result<(), ParseError> {
        if self.protocol_version != PROTOCOL_VERSION {
            return Err(ParseError::Version(self.protocol_version.clone()));
        }
        let mut seen = std::collections::HashSet::new();
        for b in &self.registered_binaries {
            if !seen.insert(&b.hash) {
                return Err(ParseError::Duplicate(b.hash.clone()));
            }
        }
        Ok(())
    }
}

/// Why a `HASH|PATH` argument names no single entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A path no entry is registered at.
    #[error("no registered binary at {}", .0.display())]
    NoPath(PathBuf),
    /// Neither a path nor hex digits.
    #[error("{0:?} is neither a path (it has no /) nor a hash (hex digits)")]
    Neither(String),
    /// Fewer than 8 hex digits.
    #[error("hash prefix {0:?} is too short: give at least 8 hex digits")]
    TooShort(String),
    /// No hash starts with it.
    #[error("no binary with hash {0}")]
    NoHash(String),
    /// Several hashes start with it (their short forms, comma-separated).
    #[error("hash prefix {selector} is ambiguous: it matches {matches}")]
    Ambiguous {
        /// The prefix given.
        selector: String,
        /// The short forms it matches, joined.
        matches: String,
    },
}

/// Why config.json's text is not a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON of the expected shape.
    #[error(
        "is not valid ({0}); requests are denied until it is repaired (or moved away to start empty)"
    )]
    Invalid(String),
    /// An unknown `protocol_version`.
    #[error("protocol_version {0:?} is not supported (expected {PROTOCOL_VERSION:?})")]
    Version(String),
    /// Two entries with one hash.
    #[error("hash {0} is registered twice")]
    Duplicate(BinaryHash),
}

/// Finds the one hash among `candidates` that `selector` names (full form, bare hex, or a unique
/// prefix of at least 8 hex digits).
pub fn match_hash<'a>(
    selector: &str,
    candidates: &[&'a BinaryHash],
) -> Result<&'a BinaryHash, SelectorError> {
    let hexpart = selector.strip_prefix("sha256:").unwrap_or(selector);
    if !hexpart.bytes().all(|b| b.is_ascii_hexdigit()) || hexpart.is_empty() {
        return Err(SelectorError::Neither(selector.into()));
    }
    if hexpart.len() < 8 {
        return Err(SelectorError::TooShort(selector.into()));
    }
    let hexpart = hexpart.to_ascii_lowercase();
    let matches: Vec<&&BinaryHash> = candidates
        .iter()
        .filter(|h| h.hex().starts_with(&hexpart))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(SelectorError::NoHash(selector.into())),
        many => Err(SelectorError::Ambiguous {
            selector: selector.into(),
            matches: many
                .iter()
                .map(|h| h.short())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// `path` canonicalised (symlinks resolved, as the kernel reports executables), or as given
/// when it cannot be (e.g. the file was removed).
pub fn canonical_or_literal(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Why the policy could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("policy file {path}: {why}")]
pub struct PolicyError {
    /// The config file.
    pub path: PathBuf,
    /// What is wrong and, where possible, how to fix it.
    pub why: PolicyProblem,
}

/// What is wrong with config.json (the message follows the file's name).
#[derive(Debug, Clone, thiserror::Error)]
pub enum PolicyProblem {
    /// Its text is not a valid policy.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// It is not a private regular file of the user's (the message says what it is and the fix).
    #[error("{0}")]
    Unsafe(String),
    /// It cannot be read.
    #[error("cannot be read: {0}")]
    Unreadable(String),
    /// The seal key cannot be had, so its seal cannot be checked.
    #[error("its seal cannot be checked ({0}); every request is denied until it can")]
    SealUnchecked(crate::keys::KeyError),
    /// Not read yet.
    #[error("not loaded yet")]
    NotLoaded,
}

/// Reads and validates config.json; a missing file is an empty policy.
pub fn load(path: &Path) -> Result<PolicyFile, PolicyError> {
    let err = |why: PolicyProblem| PolicyError {
        path: path.to_path_buf(),
        why,
    };
    // Opened without following links or blocking, and checked: a regular file of ours that
    // group and others cannot read or write.
    match fsutil::read_optional(path) {
        Ok(None) => Ok(PolicyFile::default()),
        Ok(Some(bytes)) => parse(&bytes).map_err(|e| err(e.into())),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(err(PolicyProblem::Unsafe(e.to_string())))
        }
        Err(e) => Err(err(PolicyProblem::Unreadable(e.to_string()))),
    }
}

/// Parses config.json text.
pub fn parse(bytes: &[u8]) -> Result<PolicyFile, ParseError> {
    let file: PolicyFile =
        serde_json::from_slice(bytes).map_err(|e| ParseError::Invalid(e.to_string()))?;
    file.validate()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Incoming, parse_line};

    fn h(c: char) -> BinaryHash {
        BinaryHash::parse(&c.to_string().repeat(64)).unwrap()
    }

    fn req(line: &str) -> Request {
        match parse_line(line.as_bytes()).unwrap() {
            Incoming::Request(r) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn hash_forms() {
        let a = BinaryHash::parse(&"AB".repeat(32)).unwrap();
        assert_eq!(a.as_str(), format!("sha256:{}", "ab".repeat(32)));
        assert!(BinaryHash::parse("sha256:abc").is_err());
        assert!(BinaryHash::parse(&"g".repeat(64)).is_err());
        let b = h('b');
        let c = BinaryHash::parse(&format!("{}{}", "a".repeat(8), "c".repeat(56))).unwrap();
        let all = [&a, &b, &c];
        assert_eq!(match_hash("bbbbbbbb", &all).unwrap(), &b);
        assert_eq!(match_hash(b.as_str(), &all).unwrap(), &b);
        assert!(
            match_hash("bbbb", &all)
                .unwrap_err()
                .to_string()
                .contains("at least 8")
        );
        assert!(match_hash("abababab", &all).is_ok());
        assert_eq!(match_hash("aaaaaaaa", &all).unwrap(), &c);
        assert!(
            match_hash("ffffffff", &all)
                .unwrap_err()
                .to_string()
                .contains("no binary")
        );
        let d = BinaryHash::parse(&format!("{}{}", "a".repeat(8), "d".repeat(56))).unwrap();
        let all = [&c, &d];
        assert!(
            match_hash("aaaaaaaa", &all)
                .unwrap_err()
                .to_string()
                .contains("ambiguous")
        );
    }

    #[test]
    fn authorisation_matrix() {
        let mut p = BinaryPolicy::new("/bin/x".into(), h('a'));
        let read = req(r#"{"type":"REQUEST","action":"read","service":"aws","targets":["k"]}"#);
        let write = req(
            r#"{"type":"REQUEST","action":"write","service":"aws","targets":["k"],"values":["v"]}"#,
        );
        let delete = req(r#"{"type":"REQUEST","action":"delete","service":"aws","targets":["k"]}"#);
        let search = req(r#"{"type":"REQUEST","action":"search","service":"aws"}"#);
        let pread = req(
            r#"{"type":"REQUEST","action":"read","service":"aws","match":"prefix","targets":[""]}"#,
        );
        let pdel = req(
            r#"{"type":"REQUEST","action":"delete","service":"aws","match":"prefix","targets":[""]}"#,
        );
        let reason = |p: &BinaryPolicy, r: &Request| p.authorize(r).err().map(|e| e.0);
        // zero privileges
        for r in [&read, &write, &delete] {
            assert_eq!(reason(&p, r), Some(Reason::ServiceNotAllowed));
        }
        for r in [&search, &pread, &pdel] {
            assert_eq!(reason(&p, r), Some(Reason::ActionNotInPolicy));
        }
        // write-only cannot read
        p.allowed_write_services.insert("aws".into());
        assert_eq!(reason(&p, &write), None);
        assert_eq!(reason(&p, &delete), None);
        assert_eq!(reason(&p, &read), Some(Reason::ServiceNotAllowed));
        // search needs can_search and read access
        p.can_search = true;
        assert_eq!(reason(&p, &search), Some(Reason::ServiceNotAllowed));
        assert_eq!(reason(&p, &pdel), None);
        p.allowed_read_services.insert("aws".into());
        assert_eq!(reason(&p, &search), None);
        assert_eq!(reason(&p, &pread), None);
        // other services stay closed
        let other = req(r#"{"type":"REQUEST","action":"read","service":"gcp","targets":["k"]}"#);
        let (r, msg) = p.authorize(&other).unwrap_err();
        assert_eq!(r, Reason::ServiceNotAllowed);
        assert!(
            msg.contains("keychain-auth grant aaaaaaaaaaaa --read gcp"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let text = format!(
            r#"{{"protocol_version":"1","future":{{"x":1}},"registered_binaries":[{{"path":"/bin/x","hash":"sha256:{}","registered_at":"2026-01-01T00:00:00Z","allowed_read_services":["aws"],"allowed_write_services":[],"can_search":false,"note":"mine"}}]}}"#,
            "a".repeat(64)
        );
        let p = parse(text.as_bytes()).unwrap();
        let back = serde_json::to_value(&p).unwrap();
        assert_eq!(back["future"]["x"], 1);
        assert_eq!(back["registered_binaries"][0]["note"], "mine");
    }

    #[test]
    fn duplicate_hashes_are_invalid() {
        let mut p = PolicyFile::default();
        p.registered_binaries
            .push(BinaryPolicy::new("/a".into(), h('a')));
        p.registered_binaries
            .push(BinaryPolicy::new("/b".into(), h('a')));
        let bytes = serde_json::to_vec(&p).unwrap();
        assert!(parse(&bytes).unwrap_err().to_string().contains("twice"));
    }
}
