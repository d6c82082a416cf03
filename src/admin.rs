//! Policy changes, shared by the CLI and the dashboard: approve, register, upgrade, grant,
//! revoke, unregister and dismiss. Each is one locked, atomic update of config.json (or
//! pending.json) followed by an audit record naming where it came from.
//!
//! The daemon's own changes live here too: grants that expire ([`prune_expired`],
//! [`consume_use`]) and the keyring pin after the first keyring write (`serving_backend`),
//! which the store selection only asks for. Failures are [`AdminError`]s.

use crate::audit::{self, Record};
use crate::backend::Backend;
use crate::identity;
use crate::identity::BinaryHash;
use crate::paths::Paths;
use crate::pending::{self, PendingEntry};
use crate::policy::{self, canonical_or_literal};
pub use crate::policy::{BinaryPolicy, GrantTerms};
use crate::selection::{PinOnWrite, Preference, Selection};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a policy change was refused or not completed. Nothing is changed unless the variant
/// says so ([`AdminError::Unaudited`]).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A service name that is empty, too long, has control characters or begins or ends with
    /// white space.
    #[error("\"{name}\" is not a valid service name: {why}")]
    InvalidService {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// `revoke` named something the binary does not have; nothing was changed.
    #[error("{what} is not granted to {}; nothing was changed (see keychain-auth list)", .path.display())]
    NotGranted {
        /// What was named (`read "api"`, `--search`, …).
        what: String,
        /// The binary.
        path: PathBuf,
    },
    /// A reserved service (`keychain-auth.…`).
    #[error("{0:?} is reserved for keychain-auth itself (its audit key) and cannot be granted")]
    ReservedService(String),
    /// `--allow-env` of a variable the broker does not check.
    #[error(
        "{0:?} is not an injection variable the broker checks (those are: {vars}, and every name starting with {prefixes})",
        vars = crate::identity::process::INJECTION_VARS.join(", "),
        prefixes = crate::identity::process::INJECTION_PREFIXES.join(" or ")
    )]
    NotInjectionVar(String),
    /// A `--via` that is neither a path nor a full hash.
    #[error("--via {0:?}: give the launcher's path or its full sha256 hash")]
    BadVia(String),
    /// grant/revoke with nothing named (the change's name).
    #[error(
        "nothing to {0}: give --read SERVICE, --write SERVICE, --search, --allow-env VAR, --via HASH|PATH or --allow-any-script"
    )]
    NothingNamed(String),
    /// The audit log cannot be opened, so nothing is changed.
    #[error("cannot open the audit log {}: {source}", .path.display())]
    AuditNotReady {
        /// The audit log.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The change was made but its record could not be written.
    #[error("the change was made but the audit log {} could not be written: {source}", .path.display())]
    Unaudited {
        /// The audit log.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The dismissal was made but its record could not be written.
    #[error("{0}")]
    Audit(io::Error),
    /// config.json could not be changed.
    #[error(transparent)]
    Policy(#[from] policy::sealed::UpdateError),
    /// `policy accept`: config.json changed again after it was reviewed.
    #[error(
        "config.json changed again while you were reviewing it; nothing was adopted: run `keychain-auth policy accept` again"
    )]
    Review,
    /// pending.json could not be read or changed, or names no such caller.
    #[error(transparent)]
    Pending(#[from] pending::PendingError),
    /// A `HASH|PATH` that names no single entry.
    #[error(transparent)]
    Selector(#[from] policy::SelectorError),
    /// A bare interpreter without `--allow-any-script`.
    #[error(
        "{} is an interpreter: approving it would serve every script and every line of inline code it runs. Register the script instead (keychain-auth register SCRIPT), or pass --allow-any-script if that is really what you want",
        .0.display()
    )]
    BareInterpreter(PathBuf),
    /// The pending caller's hash is approved already.
    #[error(
        "{} is already approved (as {}); change its permissions with keychain-auth grant",
        .hash.short(),
        .path.display()
    )]
    AlreadyApproved {
        /// The caller's hash.
        hash: BinaryHash,
        /// Where it is registered.
        path: PathBuf,
    },
    /// The pending caller's path is registered with another hash.
    #[error(
        "{} is registered with another hash ({}): this is a changed binary; keep its permissions with: keychain-auth upgrade {}",
        .path.display(),
        .hash.short(),
        .path.display()
    )]
    ChangedBinary {
        /// The registered path.
        path: PathBuf,
        /// The hash registered there.
        hash: BinaryHash,
    },
    /// The file at a pending caller's path is not the binary that called.
    #[error(
        "the file at {path:?} is not the binary that asked (it has hash {}, the caller ran {}); the caller may run from another mount namespace or the file was replaced. Nothing was approved; register the file you trust with: keychain-auth register PATH",
        .found.short(),
        .ran.short()
    )]
    NotTheCaller {
        /// The file.
        path: PathBuf,
        /// Its hash.
        found: BinaryHash,
        /// The caller's.
        ran: BinaryHash,
    },
    /// The file at a pending caller's path cannot be read.
    #[error(
        "cannot read {path:?} to check that it is the binary that asked ({source}); nothing was approved"
    )]
    CannotCheck {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// `register` of keychain-auth itself.
    #[error(
        "{} is keychain-auth itself, which is never a caller: `keychain-auth get` and `put` are answered as the script or program that runs them. Register that instead",
        .0.display()
    )]
    SelfRegister(PathBuf),
    /// The binary is registered already.
    #[error("this binary ({}) is already registered as {}", .hash.short(), .path.display())]
    AlreadyRegistered {
        /// Its hash.
        hash: BinaryHash,
        /// Where it is registered.
        path: PathBuf,
    },
    /// The path is registered with another hash.
    #[error(
        "{} is already registered with another hash ({}); if the binary was updated, run: keychain-auth upgrade {}",
        .path.display(),
        .hash.short(),
        .path.display()
    )]
    RegisteredOtherHash {
        /// The path.
        path: PathBuf,
        /// The hash registered there.
        hash: BinaryHash,
    },
    /// `upgrade` to a binary registered at another path.
    #[error(
        "the binary at {} is identical to the one registered as {}; unregister one of them first",
        .path.display(),
        .other.display()
    )]
    Identical {
        /// The binary upgraded.
        path: PathBuf,
        /// Where the same hash is registered.
        other: PathBuf,
    },
    /// `upgrade` of a path that is not registered.
    #[error(
        "{} is not registered; register it with: keychain-auth register {}",
        .0.display(),
        .0.display()
    )]
    NotRegistered(PathBuf),
    /// A file cannot be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Not a regular file.
    #[error("{} is not a regular file", .0.display())]
    NotAFile(PathBuf),
    /// A file cannot be hashed.
    #[error("cannot hash {}: {source}", .path.display())]
    Hash {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A script's `#!/usr/bin/env NAME` names nothing on `PATH`.
    #[error(
        "{} runs `{name}` through /usr/bin/env, and no {name} is on PATH",
        .script.display()
    )]
    NotOnPath {
        /// The script.
        script: PathBuf,
        /// The interpreter's name.
        name: String,
    },
    /// A script's interpreter is itself a script.
    #[error(
        "{} is run by {}, which is itself a script (a version manager's shim?); write the real interpreter's path in the #! line",
        .script.display(),
        .interpreter.display()
    )]
    ShimInterpreter {
        /// The script.
        script: PathBuf,
        /// Its interpreter.
        interpreter: PathBuf,
    },
    /// A script's interpreter is not one the broker knows.
    #[error(
        "{} is run by {}, which is not an interpreter the broker knows; add its name to \"interpreters\" in config.json first",
        .script.display(),
        .interpreter.display()
    )]
    UnknownInterpreter {
        /// The script.
        script: PathBuf,
        /// Its interpreter.
        interpreter: PathBuf,
    },
}

/// Where an admin change is made (SPEC §19): inside a running broker, on the audit log, seal
/// key and policy cache it holds; or, with no daemon running, by a command on the files
/// themselves (each opened for the change, under its lock).
pub enum World<'a> {
    /// No broker: config.json, pending.json and the audit log are opened for each change.
    Files(&'a Paths),
    /// A running broker's own state (the daemon, or the dashboard's embedded broker).
    Held {
        /// Where its files are.
        paths: &'a Paths,
        /// Its audit log (the only writer while it runs).
        audit: &'a audit::AuditLog,
        /// Where its seal key comes from (its store).
        keys: audit::KeySource,
        /// Its policy, told of every change it makes.
        policy: &'a policy::cache::PolicyCache,
    },
}

impl World<'_> {
    /// Where the files are.
    pub fn paths(&self) -> &Paths {
        match self {
            World::Files(paths) | World::Held { paths, .. } => paths,
        }
    }

    /// [`policy::sealed::update_with`] in this world: a broker seals with its own key and reloads its cache.
    fn update_policy<T>(
        &self,
        f: impl FnOnce(&mut policy::PolicyFile) -> Result<T, AdminError>,
    ) -> Result<T, AdminError> {
        match self {
            World::Files(paths) => {
                policy::sealed::update_with(paths, &crate::selection::key_source(paths), f)
            }
            World::Held {
                paths,
                keys,
                policy,
                ..
            } => {
                let out = policy::sealed::update_with(paths, keys, f);
                policy.invalidate();
                out
            }
        }
    }

    /// Where the seal key comes from in this world.
    fn seal_keys(&self) -> audit::KeySource {
        match self {
            World::Files(paths) => crate::selection::key_source(paths),
            World::Held { keys, .. } => keys.clone(),
        }
    }

    /// Appends the record of a change already made.
    fn audit(&self, rec: &Record) -> Result<(), AdminError> {
        let written = match self {
            World::Files(paths) => crate::audit_once::append_once(paths, rec),
            World::Held { audit, .. } => audit.append(rec),
        };
        written.map_err(|source| AdminError::Unaudited {
            path: self.paths().audit.clone(),
            source,
        })
    }

    /// Checks before a change that the audit log can be written, so a change is not made that
    /// cannot then be audited.
    fn audit_ready(&self) -> Result<(), AdminError> {
        let ready = match self {
            World::Files(paths) => crate::audit_once::ready(paths),
            World::Held { audit, .. } => audit.warm_key(),
        };
        ready.map_err(|source| AdminError::AuditNotReady {
            path: self.paths().audit.clone(),
            source,
        })
    }
}

/// Where a policy change came from, as the audit log records it (the daemon's own changes are
/// recorded as `daemon` by their record constructors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The `keychain-auth` command line.
    Cli,
    /// The dashboard.
    Dashboard,
}

impl Source {
    /// The source an `ADMIN` request names (`cli` or `dashboard`).
    pub fn parse(name: &str) -> Result<Source, String> {
        match name {
            "cli" => Ok(Source::Cli),
            "dashboard" => Ok(Source::Dashboard),
            other => Err(format!(
                "unknown source {}: expected cli or dashboard",
                crate::display::bounded(other, 64)
            )),
        }
    }

    /// The audit log's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cli => "cli",
            Source::Dashboard => "dashboard",
        }
    }
}

/// Why `name` cannot be a service name, or `None`: empty, longer than the protocol allows, a
/// control character, or white space at either end (`"api "` would be a service of its own that
/// no caller asks for).
pub fn service_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name.len() > crate::protocol::MAX_SERVICE_LEN {
        Some("it is too long")
    } else if name.chars().any(char::is_control) {
        Some("it contains a control character")
    } else if name.trim() != name {
        Some("it begins or ends with white space")
    } else {
        None
    }
}

/// Permissions to add or remove.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grants {
    /// Services to read.
    pub read: Vec<String>,
    /// Services to write and delete in.
    pub write: Vec<String>,
    /// The search flag.
    pub search: bool,
    /// Injection variables it may run with (`allow_env`, SPEC §10).
    pub allow_env: Vec<String>,
    /// Launchers (`--via HASH|PATH`): once resolved, full hashes (`launched_by`, SPEC §10).
    pub via: Vec<String>,
    /// For an interpreter: serve it whatever it runs (`allow_any_script`).
    pub allow_any_script: bool,
    /// Terms for the services named here (`--for`, `--once`, `--confirm`, SPEC §11); empty
    /// terms make the grants of those services plain again.
    pub terms: policy::GrantTerms,
}

impl Grants {
    /// True when nothing is named.
    pub fn is_empty(&self) -> bool {
        self.read.is_empty()
            && self.write.is_empty()
            && !self.search
            && self.allow_env.is_empty()
            && self.via.is_empty()
            && !self.allow_any_script
    }

    /// Checks every name and turns each `--via` into a full hash (a path is hashed now).
    fn resolve(&self) -> Result<Grants, AdminError> {
        self.validate()?;
        let mut out = self.clone();
        out.via = self
            .via
            .iter()
            .map(|v| launcher_hash(v).map(|h| h.to_string()))
            .collect::<Result<_, _>>()?;
        Ok(out)
    }

    fn validate(&self) -> Result<(), AdminError> {
        for s in self.read.iter().chain(&self.write) {
            if let Some(why) = service_name_problem(s) {
                return Err(AdminError::InvalidService {
                    name: s.clone(),
                    why,
                });
            }
            if crate::keys::is_reserved_service(s) {
                return Err(AdminError::ReservedService(s.clone()));
            }
        }
        for v in &self.allow_env {
            if !crate::identity::process::is_injection_var(v) {
                return Err(AdminError::NotInjectionVar(v.clone()));
            }
        }
        Ok(())
    }

    fn add_to(&self, b: &mut BinaryPolicy) {
        b.allowed_read_services.extend(self.read.iter().cloned());
        b.allowed_write_services.extend(self.write.iter().cloned());
        b.can_search |= self.search;
        b.allow_env.extend(self.allow_env.iter().cloned());
        b.launched_by
            .extend(self.via.iter().filter_map(|v| BinaryHash::parse(v).ok()));
        b.allow_any_script |= self.allow_any_script;
        for svc in self.read.iter().chain(&self.write) {
            if self.terms.is_empty() {
                b.service_terms.remove(svc);
            } else {
                b.service_terms.insert(svc.clone(), self.terms.clone());
            }
        }
    }

    /// The first thing named here that `b` does not have (for `revoke`: removing what was never
    /// granted is a mistake, most often a typo, and is refused).
    fn first_not_granted(&self, b: &BinaryPolicy) -> Option<String> {
        // Raw: whoever prints the error escapes it once (see `crate::display`).
        let quoted = |s: &str| format!("\"{s}\"");
        if let Some(s) = self
            .read
            .iter()
            .find(|s| !b.allowed_read_services.contains(*s))
        {
            return Some(format!("read {}", quoted(s)));
        }
        if let Some(s) = self
            .write
            .iter()
            .find(|s| !b.allowed_write_services.contains(*s))
        {
            return Some(format!("write {}", quoted(s)));
        }
        if self.search && !b.can_search {
            return Some("--search".into());
        }
        if let Some(v) = self.allow_env.iter().find(|v| !b.allow_env.contains(*v)) {
            return Some(format!("--allow-env {}", quoted(v)));
        }
        if let Some(v) = self
            .via
            .iter()
            .find(|v| BinaryHash::parse(v).map_or(true, |h| !b.launched_by.contains(&h)))
        {
            return Some(format!("--via {}", quoted(v)));
        }
        if self.allow_any_script && !b.allow_any_script {
            return Some("--allow-any-script".into());
        }
        None
    }

    fn remove_from(&self, b: &mut BinaryPolicy) {
        for s in &self.read {
            b.allowed_read_services.remove(s);
        }
        for s in &self.write {
            b.allowed_write_services.remove(s);
        }
        if self.search {
            b.can_search = false;
        }
        for v in &self.allow_env {
            b.allow_env.remove(v);
        }
        for v in self.via.iter().filter_map(|v| BinaryHash::parse(v).ok()) {
            b.launched_by.remove(&v);
        }
        if self.allow_any_script {
            b.allow_any_script = false;
        }
        for svc in self.read.iter().chain(&self.write) {
            if !b.allowed_read_services.contains(svc) && !b.allowed_write_services.contains(svc) {
                b.service_terms.remove(svc);
            }
        }
    }

    /// What `to` allows that `from` did not.
    fn gained(from: &BinaryPolicy, to: &BinaryPolicy) -> Grants {
        Grants {
            read: to
                .allowed_read_services
                .difference(&from.allowed_read_services)
                .cloned()
                .collect(),
            write: to
                .allowed_write_services
                .difference(&from.allowed_write_services)
                .cloned()
                .collect(),
            search: to.can_search && !from.can_search,
            allow_env: to.allow_env.difference(&from.allow_env).cloned().collect(),
            via: to
                .launched_by
                .difference(&from.launched_by)
                .map(ToString::to_string)
                .collect(),
            allow_any_script: to.allow_any_script && !from.allow_any_script,
            terms: policy::GrantTerms::default(),
        }
    }

    /// `rec` with these permissions (and their terms) named.
    fn record(&self, rec: Record) -> Record {
        rec.with_permissions(
            &self.read,
            &self.write,
            self.search,
            &self.allow_env,
            &self.via,
            (!self.terms.is_empty()).then(|| self.terms.describe(chrono::Utc::now())),
        )
    }
}

/// The result of an upgrade.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Upgrade {
    /// The binary's entry after the upgrade.
    pub entry: BinaryPolicy,
    /// The hash it had before; `None` when it was already current.
    pub old_hash: Option<BinaryHash>,
}

/// The record of `change` to `entry` from `source`.
fn change_record(source: Source, change: &str, entry: &BinaryPolicy) -> Record {
    Record::binary_change(source.as_str(), change, &entry.path, &entry.hash)
}

/// Counts one successful use of a grant with `uses_left` for `service`; the grants of the
/// service go when none is left (audited as `expire`).
pub fn consume_use(w: &World<'_>, hash: &BinaryHash, service: &str) -> Result<(), AdminError> {
    let gone = w.update_policy(|p| {
        let Some(b) = p.registered_binaries.iter_mut().find(|b| &b.hash == hash) else {
            return Ok(None);
        };
        let Some(t) = b.service_terms.get_mut(service) else {
            return Ok(None);
        };
        if let Some(n) = t.uses_left.as_mut() {
            *n = n.saturating_sub(1);
        }
        if t.uses_left == Some(0) {
            drop_service(b, service);
            return Ok(Some(b.clone()));
        }
        Ok(None)
    })?;
    if let Some(b) = gone {
        let message = format!("the last use of {service} was consumed");
        w.audit(&Record::expired(&b.path, &b.hash, service, message))?;
    }
    Ok(())
}

/// Removes every grant whose time is up (audited as `expire`); returns how many.
pub fn prune_expired(w: &World<'_>) -> Result<usize, AdminError> {
    let now = chrono::Utc::now();
    let due = |p: &policy::PolicyFile| {
        p.registered_binaries
            .iter()
            .flat_map(|b| {
                b.service_terms
                    .iter()
                    .filter(|(_, t)| t.expired(now))
                    .map(move |(s, _)| (b.hash.clone(), s.clone()))
            })
            .collect::<Vec<_>>()
    };
    // Cheap check first: most of the time nothing is due and the file is not rewritten.
    match policy::load(&w.paths().config) {
        Ok(p) if due(&p).is_empty() => return Ok(0),
        Err(_) => return Ok(0),
        Ok(_) => {}
    }
    let removed = w.update_policy(|p| {
        let list = due(p);
        let mut out = Vec::new();
        for (hash, svc) in list {
            if let Some(b) = p.registered_binaries.iter_mut().find(|b| b.hash == hash) {
                drop_service(b, &svc);
                out.push((b.clone(), svc));
            }
        }
        Ok(out)
    })?;
    for (b, svc) in &removed {
        let message = format!("the grant of {svc} ended");
        w.audit(&Record::expired(&b.path, &b.hash, svc, message))?;
    }
    Ok(removed.len())
}

fn drop_service(b: &mut BinaryPolicy, service: &str) {
    b.allowed_read_services.remove(service);
    b.allowed_write_services.remove(service);
    b.service_terms.remove(service);
}

/// Approves a pending caller by hash with `grants` (zero privileges when empty).
pub fn approve(
    w: &World<'_>,
    source: Source,
    selector: &str,
    grants: &Grants,
) -> Result<BinaryPolicy, AdminError> {
    let grants = &grants.resolve()?;
    w.audit_ready()?;
    let queue = pending::load(&w.paths().pending)?;
    let entry: PendingEntry = match pending::find(&queue, selector) {
        Ok(e) => e.clone(),
        Err(e @ pending::PendingError::NoEntry(_)) => {
            // Approved a moment ago (the entry left the queue then): say so, not "no pending
            // caller".
            if let Ok(p) = policy::load(&w.paths().config)
                && let Ok(i) = p.resolve(selector)
            {
                let b = &p.registered_binaries[i];
                return Err(AdminError::AlreadyApproved {
                    hash: b.hash.clone(),
                    path: b.path.clone(),
                });
            }
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    check_pending_path(&entry)?;
    if entry.interpreter.is_none()
        && crate::identity::script::family_of(&entry.path, &interpreters(w.paths())).is_some()
        && !grants.allow_any_script
    {
        return Err(AdminError::BareInterpreter(entry.path.clone()));
    }
    let added = w.update_policy(|p| {
        if let Some(b) = p.by_hash(&entry.hash) {
            return Err(AdminError::AlreadyApproved {
                hash: entry.hash.clone(),
                path: b.path.clone(),
            });
        }
        if let Some(b) = p.by_path(&entry.path) {
            return Err(AdminError::ChangedBinary {
                path: b.path.clone(),
                hash: b.hash.clone(),
            });
        }
        let mut b = BinaryPolicy::new(entry.path.clone(), entry.hash.clone());
        b.interpreter = entry.interpreter.clone();
        grants.add_to(&mut b);
        p.registered_binaries.push(b.clone());
        Ok(b)
    })?;
    pending::remove(&w.paths().pending, &entry.hash)?;
    w.audit(&grants.record(change_record(source, "approve", &added)))?;
    Ok(added)
}

/// Checks that the file at a pending caller's path is the binary that called: the path comes
/// from the caller's side (in another mount namespace it can name any file), so approving must
/// never bind a path to a hash the file there does not have.
fn check_pending_path(entry: &PendingEntry) -> Result<(), AdminError> {
    if let Some(i) = &entry.interpreter {
        check_file_hash(&i.path, &i.hash)?;
    }
    check_file_hash(&entry.path, &entry.hash)
}

fn check_file_hash(path: &Path, hash: &BinaryHash) -> Result<(), AdminError> {
    match identity::hash_path(path) {
        Ok(h) if &h == hash => Ok(()),
        Ok(found) => Err(AdminError::NotTheCaller {
            path: path.to_path_buf(),
            found,
            ran: hash.clone(),
        }),
        Err(source) => Err(AdminError::CannotCheck {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Registers the binary at `path` (hashing it now) with `grants`.
pub fn register(
    w: &World<'_>,
    source: Source,
    path: &Path,
    grants: &Grants,
) -> Result<BinaryPolicy, AdminError> {
    let grants = &grants.resolve()?;
    let (path, hash, interpreter) = identify_file(w.paths(), path)?;
    if identity::hash_path(Path::new("/proc/self/exe"))
        .ok()
        .as_ref()
        == Some(&hash)
    {
        return Err(AdminError::SelfRegister(path));
    }
    if interpreter.is_none()
        && crate::identity::script::family_of(&path, &interpreters(w.paths())).is_some()
        && !grants.allow_any_script
    {
        return Err(AdminError::BareInterpreter(path.clone()));
    }
    w.audit_ready()?;
    let added = w.update_policy(|p| {
        if let Some(b) = p.by_hash(&hash) {
            return Err(AdminError::AlreadyRegistered {
                hash: hash.clone(),
                path: b.path.clone(),
            });
        }
        if let Some(b) = p.by_path(&path) {
            return Err(AdminError::RegisteredOtherHash {
                path: path.clone(),
                hash: b.hash.clone(),
            });
        }
        let mut b = BinaryPolicy::new(path.clone(), hash.clone());
        b.interpreter = interpreter.clone();
        grants.add_to(&mut b);
        p.registered_binaries.push(b.clone());
        Ok(b)
    })?;
    pending::remove(&w.paths().pending, &hash)?;
    w.audit(&grants.record(change_record(source, "register", &added)))?;
    Ok(added)
}

/// Re-hashes the binary registered at `path` and moves its permissions to the new hash.
pub fn upgrade(w: &World<'_>, source: Source, path: &Path) -> Result<Upgrade, AdminError> {
    let (path, hash) = hash_binary(path)?;
    w.audit_ready()?;
    let result = w.update_policy(|p| {
        if let Some(other) = p.by_hash(&hash)
            && other.path != path
        {
            return Err(AdminError::Identical {
                path: path.clone(),
                other: other.path.clone(),
            });
        }
        let b = p
            .registered_binaries
            .iter_mut()
            .find(|b| b.path == path)
            .ok_or_else(|| AdminError::NotRegistered(path.clone()))?;
        // A script keeps its interpreter's path; both hashes are taken again.
        let new_interpreter = match &b.interpreter {
            Some(i) => Some(policy::InterpreterRef {
                path: i.path.clone(),
                hash: hash_binary(&i.path)?.1,
            }),
            None => None,
        };
        if b.hash == hash && b.interpreter == new_interpreter {
            return Ok(Upgrade {
                entry: b.clone(),
                old_hash: None,
            });
        }
        b.interpreter = new_interpreter;
        let old = std::mem::replace(&mut b.hash, hash.clone());
        Ok(Upgrade {
            entry: b.clone(),
            old_hash: Some(old),
        })
    })?;
    if let Some(old) = &result.old_hash {
        pending::remove(&w.paths().pending, &hash)?;
        w.audit(&change_record(source, "upgrade", &result.entry).with_old_hash(old))?;
    }
    Ok(result)
}

/// Adds permissions to the binary `selector` names (hash, prefix or path).
pub fn grant(
    w: &World<'_>,
    source: Source,
    selector: &str,
    grants: &Grants,
) -> Result<BinaryPolicy, AdminError> {
    change_grants(w, source, selector, grants, "grant", Grants::add_to)
}

/// Removes permissions from the binary `selector` names.
pub fn revoke(
    w: &World<'_>,
    source: Source,
    selector: &str,
    grants: &Grants,
) -> Result<BinaryPolicy, AdminError> {
    change_grants(w, source, selector, grants, "revoke", Grants::remove_from)
}

fn change_grants(
    w: &World<'_>,
    source: Source,
    selector: &str,
    grants: &Grants,
    change: &str,
    apply: fn(&Grants, &mut BinaryPolicy),
) -> Result<BinaryPolicy, AdminError> {
    if grants.is_empty() {
        return Err(AdminError::NothingNamed(change.into()));
    }
    let grants = &grants.resolve()?;
    w.audit_ready()?;
    let entry = w.update_policy(|p| {
        let i = p.resolve(selector)?;
        let b = &mut p.registered_binaries[i];
        if change == "revoke"
            && let Some(what) = grants.first_not_granted(b)
        {
            return Err(AdminError::NotGranted {
                what,
                path: b.path.clone(),
            });
        }
        apply(grants, b);
        Ok(b.clone())
    })?;
    w.audit(&grants.record(change_record(source, change, &entry)))?;
    Ok(entry)
}

/// Replaces the permissions of the binary `selector` names with exactly `grants` (the
/// dashboard's permission editor); audited as grant and/or revoke of the difference.
pub fn set_grants(
    w: &World<'_>,
    source: Source,
    selector: &str,
    grants: &Grants,
) -> Result<BinaryPolicy, AdminError> {
    let grants = grants.resolve()?;
    w.audit_ready()?;
    let (before, after) = w.update_policy(|p| {
        let i = p.resolve(selector)?;
        let b = &mut p.registered_binaries[i];
        let before = b.clone();
        b.allowed_read_services = grants.read.iter().cloned().collect();
        b.allowed_write_services = grants.write.iter().cloned().collect();
        let kept: Vec<String> = b
            .allowed_read_services
            .union(&b.allowed_write_services)
            .cloned()
            .collect();
        b.service_terms.retain(|svc, _| kept.contains(svc));
        // Terms apply to the services this change grants anew; the others keep theirs.
        if !grants.terms.is_empty() {
            for svc in &kept {
                let had = before.allowed_read_services.contains(svc)
                    || before.allowed_write_services.contains(svc);
                if !had {
                    b.service_terms.insert(svc.clone(), grants.terms.clone());
                }
            }
        }
        b.can_search = grants.search;
        b.launched_by = grants
            .via
            .iter()
            .filter_map(|v| BinaryHash::parse(v).ok())
            .collect();
        Ok((before, b.clone()))
    })?;
    let added = Grants::gained(&before, &after);
    let removed = Grants::gained(&after, &before);
    if !added.is_empty() {
        w.audit(&added.record(change_record(source, "grant", &after)))?;
    }
    if !removed.is_empty() {
        w.audit(&removed.record(change_record(source, "revoke", &after)))?;
    }
    Ok(after)
}

/// Removes the binary `selector` names.
pub fn unregister(
    w: &World<'_>,
    source: Source,
    selector: &str,
) -> Result<BinaryPolicy, AdminError> {
    w.audit_ready()?;
    let removed = w.update_policy(|p| {
        let i = p.resolve(selector)?;
        Ok(p.registered_binaries.remove(i))
    })?;
    w.audit(&change_record(source, "unregister", &removed))?;
    Ok(removed)
}

/// Adopts config.json as it is now (an edit made outside keychain-auth, or a file never
/// sealed) when its difference from the seal is still exactly `reviewed`; audited as
/// `policy_accept`. Returns whether anything was adopted.
pub fn accept_edit(
    w: &World<'_>,
    reviewed: Option<&crate::policy::seal::Diff>,
) -> Result<bool, AdminError> {
    w.audit_ready()?;
    let keys = w.seal_keys();
    let adopted = policy::sealed::accept(w.paths(), &keys, |now| Some(now) == reviewed).map_err(
        |e| match e {
            policy::sealed::UpdateError::NotAdopted => AdminError::Review,
            e => e.into(),
        },
    );
    if let World::Held { policy, .. } = w {
        policy.invalidate();
    }
    let adopted = adopted?;
    let rec = Record::policy_accepted(match reviewed {
        Some(d) => format!(
            "adopted an edit made outside keychain-auth: {}",
            d.summary()
        ),
        None => "sealed a config.json written before sealing".into(),
    });
    w.audit(&rec)?;
    Ok(adopted)
}

/// Adopts config.json exactly as it is now, whatever it differs by (for a program that embeds
/// the broker and its tests; the CLI shows the difference first and sends
/// [`Op::PolicyAccept`] with what it showed).
pub fn accept_as_is(w: &World<'_>) -> Result<bool, AdminError> {
    let file = policy::load(&w.paths().config).map_err(policy::sealed::UpdateError::from)?;
    let reviewed = match policy::sealed::integrity(w.paths(), &w.seal_keys(), &file) {
        Ok(crate::policy::seal::Integrity::Sealed) => return Ok(false),
        Ok(crate::policy::seal::Integrity::Unsealed) => None,
        Ok(crate::policy::seal::Integrity::Edited(d)) => Some(d),
        Err(source) => {
            return Err(policy::sealed::UpdateError::SealKey {
                path: w.paths().config.clone(),
                source,
            }
            .into());
        }
    };
    accept_edit(w, reviewed.as_ref())
}

/// Drops a pending entry without approving it.
pub fn dismiss(w: &World<'_>, source: Source, selector: &str) -> Result<PendingEntry, AdminError> {
    w.audit_ready()?;
    let entry = pending::update(&w.paths().pending, |q| {
        let e = pending::find(q, selector)?.clone();
        q.entries.retain(|x| x.hash != e.hash);
        Ok::<_, pending::PendingError>(e)
    })??;
    let rec = Record::binary_change(source.as_str(), "dismiss", &entry.path, &entry.hash);
    w.audit(&rec)?;
    Ok(entry)
}

/// One admin change, as the CLI and a connected dashboard send it to the running daemon (an
/// `ADMIN` request, SPEC §19) or carry it out themselves when none runs: the same function
/// runs it in either [`World`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// [`approve`] the pending caller `selector` names.
    Approve {
        /// Hash, prefix or path of the pending entry.
        selector: String,
        /// What to grant.
        grants: Grants,
    },
    /// [`register`] the binary at `path`.
    Register {
        /// An absolute path.
        path: PathBuf,
        /// What to grant.
        grants: Grants,
    },
    /// [`upgrade`] the binary registered at `path`.
    Upgrade {
        /// An absolute path.
        path: PathBuf,
    },
    /// [`grant`] more to the binary `selector` names.
    Grant {
        /// Hash, prefix or path of the entry.
        selector: String,
        /// What to add.
        grants: Grants,
    },
    /// [`revoke`] from the binary `selector` names.
    Revoke {
        /// Hash, prefix or path of the entry.
        selector: String,
        /// What to remove.
        grants: Grants,
    },
    /// [`set_grants`]: exactly these permissions.
    SetGrants {
        /// Hash, prefix or path of the entry.
        selector: String,
        /// The permissions it ends with.
        grants: Grants,
    },
    /// [`unregister`] the binary `selector` names.
    Unregister {
        /// Hash, prefix or path of the entry.
        selector: String,
    },
    /// [`dismiss`] the pending caller `selector` names.
    Dismiss {
        /// Hash, prefix or path of the pending entry.
        selector: String,
    },
    /// [`accept_edit`]: adopt config.json as it is, when it still differs from its seal by
    /// exactly what was reviewed.
    PolicyAccept {
        /// The difference the person saw (`None`: a config.json never sealed).
        reviewed: Option<crate::policy::seal::Diff>,
    },
    /// Appends a record that a keychain-auth command made (the owner's secret commands): the
    /// running broker is the log's only writer.
    Record {
        /// The record, unchained.
        record: Box<Record>,
    },
}

/// What an [`Op`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "done", rename_all = "snake_case")]
pub enum Done {
    /// The entry after the change (or the entry removed, for unregister).
    Binary(BinaryPolicy),
    /// The result of an upgrade.
    Upgraded(Upgrade),
    /// The pending entry dismissed.
    Dismissed(PendingEntry),
    /// `policy accept`: whether anything was adopted.
    Accepted {
        /// False when config.json already matched its seal.
        adopted: bool,
    },
    /// The record was appended.
    Recorded,
}

/// The daemon's answer to an `ADMIN` request: `{"type":"ADMIN","ok":true,"done":{…}}` or
/// `{"type":"ADMIN","ok":false,"error":"…"}` (the change's own one-line reason).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminReply {
    /// Always `ADMIN`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether the change was made.
    pub ok: bool,
    /// What it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<Done>,
    /// Why it was not made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl AdminReply {
    /// The reply for `result`.
    pub fn of(result: Result<Done, String>) -> AdminReply {
        let (ok, done, error) = match result {
            Ok(d) => (true, Some(d), None),
            Err(e) => (false, None, Some(e)),
        };
        AdminReply {
            kind: "ADMIN".into(),
            ok,
            done,
            error,
        }
    }

    /// The newline-terminated line.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

impl Op {
    /// Whether this change can widen what a caller may do, and so needs presence (the vault
    /// passphrase) when the broker serves a vault (SPEC §15). Narrowing never does.
    pub fn widens(&self) -> bool {
        match self {
            Op::Approve { .. }
            | Op::Register { .. }
            | Op::Upgrade { .. }
            | Op::Grant { .. }
            | Op::SetGrants { .. }
            | Op::PolicyAccept { .. } => true,
            Op::Revoke { .. } | Op::Unregister { .. } | Op::Dismiss { .. } | Op::Record { .. } => {
                false
            }
        }
    }

    /// Carries the change out in `w`, recorded as coming from `source`.
    pub fn run(self, w: &World<'_>, source: Source) -> Result<Done, AdminError> {
        Ok(match self {
            Op::Approve { selector, grants } => {
                Done::Binary(approve(w, source, &selector, &grants)?)
            }
            Op::Register { path, grants } => Done::Binary(register(w, source, &path, &grants)?),
            Op::Upgrade { path } => Done::Upgraded(upgrade(w, source, &path)?),
            Op::Grant { selector, grants } => Done::Binary(grant(w, source, &selector, &grants)?),
            Op::Revoke { selector, grants } => Done::Binary(revoke(w, source, &selector, &grants)?),
            Op::SetGrants { selector, grants } => {
                Done::Binary(set_grants(w, source, &selector, &grants)?)
            }
            Op::Unregister { selector } => Done::Binary(unregister(w, source, &selector)?),
            Op::Dismiss { selector } => Done::Dismissed(dismiss(w, source, &selector)?),
            Op::PolicyAccept { reviewed } => Done::Accepted {
                adopted: accept_edit(w, reviewed.as_ref())?,
            },
            Op::Record { record } => {
                let mut r = *record;
                // The chain fields are the writer's, never the sender's.
                (r.seq, r.prev_mac, r.mac) = (None, None, None);
                w.audit(&r)?;
                Done::Recorded
            }
        })
    }
}

/// Records `"backend": "keyring"` in config.json unless an explicit choice is already there.
/// Returns whether the file changed.
pub fn pin_keyring(
    paths: &Paths,
    keys: &audit::KeySource,
) -> Result<bool, policy::sealed::UpdateError> {
    policy::sealed::update_with(paths, keys, |p| match p.backend.as_deref() {
        None | Some("" | "auto") => {
            p.backend = Some(Preference::Keyring.as_str().into());
            Ok(true)
        }
        Some(_) => Ok(false),
    })
}

/// The store a server (the daemon, the dashboard's embedded broker) serves for `sel`: when the
/// selection asks for a pin, its first successful caller write records `"backend": "keyring"`
/// in config.json (audited as `pin_backend` in the broker's next record; a failure is logged
/// and tried again next write).
pub(crate) fn serving_backend(paths: &Paths, sel: &Selection) -> Arc<dyn Backend> {
    if !sel.pin {
        return sel.backend.clone();
    }
    let paths = paths.clone();
    let store = sel.backend.clone();
    let hook = Box::new(move || {
        // The seal key from the store being served (no second selection), and the record
        // written by this broker's own log, first in its next append (the write's own record
        // follows at once): the broker is the log's only writer.
        let keys = audit::KeySource::Store(store.clone());
        match pin_keyring(&paths, &keys) {
            Ok(changed) => {
                if changed {
                    audit::defer(&paths.audit, Record::pin_backend());
                }
                true
            }
            // Not pinned yet: try again after the next write, and say so.
            Err(e) => {
                tracing::warn!(
                    "keychain-auth: warning: could not record \"backend\": \"keyring\" in {}: {e}",
                    paths.config.display()
                );
                false
            }
        }
    });
    Arc::new(PinOnWrite::new(sel.backend.clone(), hook))
}

/// The interpreter names config.json adds (none when it cannot be read: the built-in list).
fn interpreters(paths: &Paths) -> Vec<String> {
    policy::load(&paths.config)
        .map(|p| p.interpreters)
        .unwrap_or_default()
}

/// The hash a `--via` argument names: a path (hashed now) or a full hash.
fn launcher_hash(selector: &str) -> Result<BinaryHash, AdminError> {
    if selector.contains('/') {
        return hash_binary(Path::new(selector)).map(|(_, h)| h);
    }
    BinaryHash::parse(selector).map_err(|_| AdminError::BadVia(selector.into()))
}

/// What `register PATH` registers: a binary by its own hash, or a script (a file starting with
/// `#!`) by its hash together with the interpreter its `#!` line names (`/usr/bin/env NAME` is
/// looked up on `PATH`).
fn identify_file(
    paths: &Paths,
    path: &Path,
) -> Result<(PathBuf, BinaryHash, Option<policy::InterpreterRef>), AdminError> {
    use crate::identity::script::{self, Shebang};
    use std::io::BufRead;
    let (path, hash) = hash_binary(path)?;
    let mut first = Vec::new();
    crate::fsutil::open_regular(&path, crate::fsutil::Links::Follow)
        .map(std::io::BufReader::new)
        .and_then(|mut r| r.read_until(b'\n', &mut first))
        .map_err(|source| AdminError::Read {
            path: path.clone(),
            source,
        })?;
    let Some(bang) = script::shebang(first.strip_suffix(b"\n").unwrap_or(&first)) else {
        return Ok((path, hash, None));
    };
    let interp = match bang {
        Shebang::Path(p) => PathBuf::from(p),
        Shebang::Env(name) => std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join(&name))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.is_file())
            .ok_or_else(|| AdminError::NotOnPath {
                script: path.clone(),
                name: name.clone(),
            })?,
    };
    let (interp_path, interp_hash) = hash_binary(&interp)?;
    let mut magic = [0u8; 2];
    if crate::fsutil::open_regular(&interp_path, crate::fsutil::Links::Follow)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && &magic == b"#!"
    {
        return Err(AdminError::ShimInterpreter {
            script: path,
            interpreter: interp_path,
        });
    }
    if script::family_of(&interp_path, &interpreters(paths)).is_none() {
        return Err(AdminError::UnknownInterpreter {
            script: path,
            interpreter: interp_path,
        });
    }
    Ok((
        path,
        hash,
        Some(policy::InterpreterRef {
            path: interp_path,
            hash: interp_hash,
        }),
    ))
}

/// Canonical path and hash of a binary given on the command line.
fn hash_binary(path: &Path) -> Result<(PathBuf, BinaryHash), AdminError> {
    let canonical = canonical_or_literal(path);
    let meta = std::fs::metadata(&canonical).map_err(|source| AdminError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(AdminError::NotAFile(path.to_path_buf()));
    }
    let hash = identity::hash_path(&canonical).map_err(|source| AdminError::Hash {
        path: canonical.clone(),
        source,
    })?;
    Ok((canonical, hash))
}
