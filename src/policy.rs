//! The policy: `config.json`, the binaries the user approved and what each may do (SPEC §4).
//!
//! Every write goes through [`update`]: an exclusive lock held for the whole read-modify-write and
//! an atomic replace, so the CLI, the dashboard and the daemon never lose each other's edits.
//! The daemon reads through [`PolicyCache`], which re-parses only when the file changed and turns
//! a corrupt or unsafe file into a denial with a reason, never into access.

use crate::fsutil::{self, FileLock, FileStamp};
use crate::identity::Program;
use crate::protocol::{Action, MatchMode, Reason, Request};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The protocol version written into new config files.
pub const PROTOCOL_VERSION: &str = "1";

/// A binary's SHA-256 in its text form `sha256:<64 lowercase hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BinaryHash(String);

impl BinaryHash {
    /// From raw digest bytes.
    pub fn from_digest(digest: &[u8]) -> BinaryHash {
        BinaryHash(format!("sha256:{}", hex::encode(digest)))
    }

    /// Parses `sha256:<hex>` or bare hex (64 digits, any case).
    pub fn parse(s: &str) -> Result<BinaryHash, String> {
        let hexpart = s.strip_prefix("sha256:").unwrap_or(s);
        if hexpart.len() != 64 || !hexpart.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{s:?} is not a SHA-256 hash (expected sha256:<64 hex digits>)"
            ));
        }
        Ok(BinaryHash(format!(
            "sha256:{}",
            hexpart.to_ascii_lowercase()
        )))
    }

    /// The full text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The first 12 hex digits, for display.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }
}

impl TryFrom<String> for BinaryHash {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        BinaryHash::parse(&s)
    }
}

impl From<BinaryHash> for String {
    fn from(h: BinaryHash) -> String {
        h.0
    }
}

impl fmt::Display for BinaryHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

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

/// Parses `10m`, `2h`, `1d`, `90s`, `1h30m` into seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a duration: use for example 10m, 2h or 1d");
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
    /// The approved binaries.
    #[serde(default)]
    pub registered_binaries: Vec<BinaryPolicy>,
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
            registered_binaries: Vec::new(),
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
    pub fn resolve(&self, selector: &str) -> Result<usize, String> {
        if selector.contains('/') {
            let wanted = canonical_or_literal(Path::new(selector));
            return self
                .registered_binaries
                .iter()
                .position(|b| b.path == wanted || b.path == Path::new(selector))
                .ok_or_else(|| format!("no registered binary at {}", wanted.display()));
        }
        let hashes: Vec<&BinaryHash> = self.registered_binaries.iter().map(|b| &b.hash).collect();
        let found = match_hash(selector, &hashes)?;
        Ok(self
            .registered_binaries
            .iter()
            .position(|b| &b.hash == found)
            .unwrap_or_default())
    }

    fn validate(&self) -> Result<(), String> {
        if self.protocol_version != PROTOCOL_VERSION {
            return Err(format!(
                "protocol_version {:?} is not supported (expected {PROTOCOL_VERSION:?})",
                self.protocol_version
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for b in &self.registered_binaries {
            if !seen.insert(&b.hash) {
                return Err(format!("hash {} is registered twice", b.hash));
            }
        }
        Ok(())
    }
}

/// Finds the one hash among `candidates` that `selector` names (full form, bare hex, or a unique
/// prefix of at least 8 hex digits).
pub fn match_hash<'a>(
    selector: &str,
    candidates: &[&'a BinaryHash],
) -> Result<&'a BinaryHash, String> {
    let hexpart = selector.strip_prefix("sha256:").unwrap_or(selector);
    if !hexpart.bytes().all(|b| b.is_ascii_hexdigit()) || hexpart.is_empty() {
        return Err(format!(
            "{selector:?} is neither a path (it has no /) nor a hash (hex digits)"
        ));
    }
    if hexpart.len() < 8 {
        return Err(format!(
            "hash prefix {selector:?} is too short: give at least 8 hex digits"
        ));
    }
    let hexpart = hexpart.to_ascii_lowercase();
    let matches: Vec<&&BinaryHash> = candidates
        .iter()
        .filter(|h| h.hex().starts_with(&hexpart))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(format!("no binary with hash {selector}")),
        many => Err(format!(
            "hash prefix {selector} is ambiguous: it matches {}",
            many.iter()
                .map(|h| h.short())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// `path` canonicalised (symlinks resolved, as the kernel reports executables), or as given
/// when it cannot be (e.g. the file was removed).
pub fn canonical_or_literal(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Why the policy could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy file {path}: {why}")]
pub struct PolicyError {
    /// The config file.
    pub path: PathBuf,
    /// What is wrong and, where possible, how to fix it.
    pub why: String,
}

/// Reads and validates config.json; a missing file is an empty policy.
pub fn load(path: &Path) -> Result<PolicyFile, PolicyError> {
    let err = |why: String| PolicyError {
        path: path.to_path_buf(),
        why,
    };
    // Opened without following links or blocking, and checked: a regular file of ours that
    // group and others cannot read or write.
    match fsutil::read_optional(path) {
        Ok(None) => Ok(PolicyFile::default()),
        Ok(Some(bytes)) => parse(&bytes).map_err(err),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(err(e.to_string())),
        Err(e) => Err(err(format!("cannot be read: {e}"))),
    }
}

/// Parses config.json text.
pub fn parse(bytes: &[u8]) -> Result<PolicyFile, String> {
    let file: PolicyFile = serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "is not valid ({e}); requests are denied until it is repaired (or moved away to start empty)"
        )
    })?;
    file.validate()?;
    Ok(file)
}

/// Runs `f` on the current policy under the exclusive lock and writes the result atomically when
/// `f` succeeds. A corrupt file is never overwritten.
pub fn update<T>(
    path: &Path,
    f: impl FnOnce(&mut PolicyFile) -> Result<T, String>,
) -> Result<T, String> {
    let _lock =
        FileLock::acquire(path).map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
    let mut policy = load(path).map_err(|e| e.to_string())?;
    let out = f(&mut policy)?;
    let mut bytes = serde_json::to_vec_pretty(&policy).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    fsutil::write_atomic(path, &bytes)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(out)
}

/// A parsed policy with a hash index, shared by the daemon's connections.
#[derive(Debug)]
pub struct Snapshot {
    /// The parsed file.
    pub file: PolicyFile,
    index: HashMap<BinaryHash, usize>,
}

impl Snapshot {
    fn new(file: PolicyFile) -> Snapshot {
        let index = file
            .registered_binaries
            .iter()
            .enumerate()
            .map(|(i, b)| (b.hash.clone(), i))
            .collect();
        Snapshot { file, index }
    }

    /// The entry approved for `hash`.
    pub fn lookup(&self, hash: &BinaryHash) -> Option<&BinaryPolicy> {
        self.index
            .get(hash)
            .map(|&i| &self.file.registered_binaries[i])
    }

    /// The entry that serves a caller running the executable `exe` with `program` (SPEC §10):
    /// a binary by its own hash; a script by the pair (script hash, interpreter hash); and an
    /// interpreter running anything else only through a bare entry with `allow_any_script`.
    pub fn lookup_caller(&self, exe: &BinaryHash, program: &Program) -> Option<&BinaryPolicy> {
        let any_script = || self.lookup(exe).filter(|b| b.allow_any_script);
        match program {
            Program::Binary => self.lookup(exe).filter(|b| b.interpreter.is_none()),
            Program::Script { hash, .. } => self
                .lookup(hash)
                .filter(|b| b.interpreter.as_ref().is_some_and(|i| &i.hash == exe))
                .or_else(any_script),
            Program::NoFile(_) => any_script(),
        }
    }
}

/// The stamp of the file last parsed (`Some(None)`: it did not exist) and what parsing gave.
type Cached = (
    Option<Option<FileStamp>>,
    Result<Arc<Snapshot>, PolicyError>,
);

/// The daemon's view of config.json: re-read only when the file's stamp changes, so a policy
/// edit applies to the very next request (also on open connections) without a parse per request.
#[derive(Debug)]
pub struct PolicyCache {
    path: PathBuf,
    state: Mutex<Cached>,
}

impl PolicyCache {
    /// A cache for the config at `path`; nothing is read until [`PolicyCache::current`].
    pub fn new(path: &Path) -> PolicyCache {
        PolicyCache {
            path: path.to_path_buf(),
            state: Mutex::new((
                None,
                Err(PolicyError {
                    path: path.to_path_buf(),
                    why: "not loaded yet".into(),
                }),
            )),
        }
    }

    /// The policy in force now, or why there is none (in which case everything is denied).
    pub fn current(&self) -> Result<Arc<Snapshot>, PolicyError> {
        let stamp = match FileStamp::of_path(&self.path) {
            Ok(s) => s,
            Err(e) => {
                return Err(PolicyError {
                    path: self.path.clone(),
                    why: format!("cannot be read: {e}"),
                });
            }
        };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.0 != Some(stamp) {
            state.1 = load(&self.path).map(|f| Arc::new(Snapshot::new(f)));
            state.0 = Some(stamp);
        }
        state.1.clone()
    }
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
        assert!(match_hash("bbbb", &all).unwrap_err().contains("at least 8"));
        assert!(match_hash("abababab", &all).is_ok());
        assert_eq!(match_hash("aaaaaaaa", &all).unwrap(), &c);
        assert!(
            match_hash("ffffffff", &all)
                .unwrap_err()
                .contains("no binary")
        );
        let d = BinaryHash::parse(&format!("{}{}", "a".repeat(8), "d".repeat(56))).unwrap();
        let all = [&c, &d];
        assert!(
            match_hash("aaaaaaaa", &all)
                .unwrap_err()
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
    fn update_and_cache_follow_changes() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("cfg/config.json");
        let cache = PolicyCache::new(&path);
        assert!(cache.current().unwrap().lookup(&h('a')).is_none());
        update(&path, |p| {
            p.registered_binaries
                .push(BinaryPolicy::new("/bin/x".into(), h('a')));
            Ok(())
        })
        .unwrap();
        assert!(cache.current().unwrap().lookup(&h('a')).is_some());
        // corrupt: denied with a reason, not overwritten by update
        std::fs::write(&path, b"{oops").unwrap();
        let err = cache.current().unwrap_err();
        assert!(err.why.contains("not valid"), "{err}");
        assert!(update(&path, |_| Ok(())).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"{oops");
        // repaired: back
        update_repair(&path);
        assert!(cache.current().unwrap().lookup(&h('a')).is_none());
    }

    fn update_repair(path: &Path) {
        std::fs::remove_file(path).unwrap();
        update(path, |_| Ok(())).unwrap();
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
        assert!(parse(&bytes).unwrap_err().contains("twice"));
    }
}
