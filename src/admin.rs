//! Policy changes, shared by the CLI and the dashboard: approve, register, upgrade, grant,
//! revoke, unregister and dismiss. Each is one locked, atomic update of config.json (or
//! pending.json) followed by an audit record naming where it came from.

use crate::audit::{self, Record};
use crate::identity;
use crate::paths::Paths;
use crate::pending::{self, PendingEntry};
use crate::policy::{self, BinaryHash, BinaryPolicy, canonical_or_literal};
use std::path::{Path, PathBuf};

/// Where a policy change came from, as the audit log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The `keychain-auth` command line.
    Cli,
    /// The dashboard.
    Dashboard,
    /// The daemon itself (expiry of grants).
    Daemon,
}

impl Source {
    /// The audit log's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cli => "cli",
            Source::Dashboard => "dashboard",
            Source::Daemon => "daemon",
        }
    }
}

/// Permissions to add or remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    fn resolve(&self) -> Result<Grants, String> {
        self.validate()?;
        let mut out = self.clone();
        out.via = self
            .via
            .iter()
            .map(|v| launcher_hash(v).map(|h| h.to_string()))
            .collect::<Result<_, _>>()?;
        Ok(out)
    }

    fn validate(&self) -> Result<(), String> {
        for s in self.read.iter().chain(&self.write) {
            if s.is_empty()
                || s.len() > crate::protocol::MAX_SERVICE_LEN
                || s.chars().any(char::is_control)
            {
                return Err(format!("{s:?} is not a valid service name"));
            }
            if crate::audit::chain::is_reserved_service(s) {
                return Err(format!(
                    "{s:?} is reserved for keychain-auth itself (its audit key) and cannot be granted"
                ));
            }
        }
        for v in &self.allow_env {
            if !crate::identity::process::INJECTION_VARS.contains(&v.as_str()) {
                return Err(format!(
                    "{v:?} is not an injection variable the broker checks (those are: {})",
                    crate::identity::process::INJECTION_VARS.join(", ")
                ));
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

    fn record(&self, rec: &mut Record) {
        rec.read = self.read.clone();
        rec.write = self.write.clone();
        rec.search = self.search.then_some(true);
        rec.allow_env = self.allow_env.clone();
        rec.via = self.via.clone();
        if !self.terms.is_empty() {
            rec.message = Some(self.terms.describe(chrono::Utc::now()));
        }
    }
}

/// The result of an upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The binary's entry after the upgrade.
    pub entry: BinaryPolicy,
    /// The hash it had before; `None` when it was already current.
    pub old_hash: Option<BinaryHash>,
}

fn audit_change(
    paths: &Paths,
    source: Source,
    change: &str,
    entry: &BinaryPolicy,
    fill: impl FnOnce(&mut Record),
) -> Result<(), String> {
    let mut rec = Record::policy_change(source.as_str(), change);
    rec.path = Some(entry.path.display().to_string());
    rec.hash = Some(entry.hash.to_string());
    fill(&mut rec);
    audit::append_once(paths, &rec).map_err(|e| {
        format!(
            "the change was made but the audit log {} could not be written: {e}",
            paths.audit.display()
        )
    })
}

/// Counts one successful use of a grant with `uses_left` for `service`; the grants of the
/// service go when none is left (audited as `expire`).
pub fn consume_use(paths: &Paths, hash: &BinaryHash, service: &str) -> Result<(), String> {
    let gone = policy::update(paths, |p| {
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
        audit_change(paths, Source::Daemon, "expire", &b, |r| {
            r.service = Some(service.into());
            r.message = Some(format!("the last use of {service} was consumed"));
        })?;
    }
    Ok(())
}

/// Removes every grant whose time is up (audited as `expire`); returns how many.
pub fn prune_expired(paths: &Paths) -> Result<usize, String> {
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
    match policy::load(&paths.config) {
        Ok(p) if due(&p).is_empty() => return Ok(0),
        Err(_) => return Ok(0),
        Ok(_) => {}
    }
    let removed = policy::update(paths, |p| {
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
        audit_change(paths, Source::Daemon, "expire", b, |r| {
            r.service = Some(svc.clone());
            r.message = Some(format!("the grant of {svc} ended"));
        })?;
    }
    Ok(removed.len())
}

fn drop_service(b: &mut BinaryPolicy, service: &str) {
    b.allowed_read_services.remove(service);
    b.allowed_write_services.remove(service);
    b.service_terms.remove(service);
}

/// Checks before a change that the audit log can be opened, so a change is not made unaudited.
fn audit_ready(paths: &Paths) -> Result<(), String> {
    audit::ready(paths)
        .map_err(|e| format!("cannot open the audit log {}: {e}", paths.audit.display()))
}

/// Approves a pending caller by hash with `grants` (zero privileges when empty).
pub fn approve(
    paths: &Paths,
    source: Source,
    selector: &str,
    grants: &Grants,
) -> Result<BinaryPolicy, String> {
    let grants = &grants.resolve()?;
    audit_ready(paths)?;
    let queue = pending::load(&paths.pending)?;
    let entry: PendingEntry = pending::find(&queue, selector)?.clone();
    check_pending_path(&entry)?;
    if entry.interpreter.is_none()
        && crate::identity::script::family_of(&entry.path, &interpreters(paths)).is_some()
        && !grants.allow_any_script
    {
        return Err(bare_interpreter(&entry.path));
    }
    let added = policy::update(paths, |p| {
        if let Some(b) = p.by_hash(&entry.hash) {
            return Err(format!(
                "{} is already approved (as {})",
                entry.hash.short(),
                b.path.display()
            ));
        }
        if let Some(b) = p.by_path(&entry.path) {
            return Err(format!(
                "{} is registered with another hash ({}): this is a changed binary; keep its permissions with: keychain-auth upgrade {}",
                b.path.display(),
                b.hash.short(),
                b.path.display()
            ));
        }
        let mut b = BinaryPolicy::new(entry.path.clone(), entry.hash.clone());
        b.interpreter = entry.interpreter.clone();
        grants.add_to(&mut b);
        p.registered_binaries.push(b.clone());
        Ok(b)
    })?;
    pending::remove(&paths.pending, &entry.hash)?;
    audit_change(paths, source, "approve", &added, |r| grants.record(r))?;
    Ok(added)
}

/// Checks that the file at a pending caller's path is the binary that called: the path comes
/// from the caller's side (in another mount namespace it can name any file), so approving must
/// never bind a path to a hash the file there does not have.
fn check_pending_path(entry: &PendingEntry) -> Result<(), String> {
    if let Some(i) = &entry.interpreter {
        check_file_hash(&i.path, &i.hash)?;
    }
    check_file_hash(&entry.path, &entry.hash)
}

fn check_file_hash(path: &Path, hash: &BinaryHash) -> Result<(), String> {
    let shown = format!("{path:?}");
    match identity::hash_path(path) {
        Ok(h) if &h == hash => Ok(()),
        Ok(h) => Err(format!(
            "the file at {shown} is not the binary that asked (it has hash {}, the caller ran {}); the caller may run from another mount namespace or the file was replaced. Nothing was approved; register the file you trust with: keychain-auth register PATH",
            h.short(),
            hash.short()
        )),
        Err(e) => Err(format!(
            "cannot read {shown} to check that it is the binary that asked ({e}); nothing was approved"
        )),
    }
}

/// Registers the binary at `path` (hashing it now) with `grants`.
pub fn register(
    paths: &Paths,
    source: Source,
    path: &Path,
    grants: &Grants,
) -> Result<BinaryPolicy, String> {
    let grants = &grants.resolve()?;
    let (path, hash, interpreter) = identify_file(paths, path)?;
    if identity::hash_path(Path::new("/proc/self/exe"))
        .ok()
        .as_ref()
        == Some(&hash)
    {
        return Err(format!(
            "{} is keychain-auth itself, which is never a caller: `keychain-auth get` and `put` are answered as the script or program that runs them. Register that instead",
            path.display()
        ));
    }
    if interpreter.is_none()
        && crate::identity::script::family_of(&path, &interpreters(paths)).is_some()
        && !grants.allow_any_script
    {
        return Err(bare_interpreter(&path));
    }
    audit_ready(paths)?;
    let added = policy::update(paths, |p| {
        if let Some(b) = p.by_hash(&hash) {
            return Err(format!(
                "this binary ({}) is already registered as {}",
                hash.short(),
                b.path.display()
            ));
        }
        if let Some(b) = p.by_path(&path) {
            return Err(format!(
                "{} is already registered with another hash ({}); if the binary was updated, run: keychain-auth upgrade {}",
                path.display(),
                b.hash.short(),
                path.display()
            ));
        }
        let mut b = BinaryPolicy::new(path.clone(), hash.clone());
        b.interpreter = interpreter.clone();
        grants.add_to(&mut b);
        p.registered_binaries.push(b.clone());
        Ok(b)
    })?;
    pending::remove(&paths.pending, &hash)?;
    audit_change(paths, source, "register", &added, |r| grants.record(r))?;
    Ok(added)
}

/// Re-hashes the binary registered at `path` and moves its permissions to the new hash.
pub fn upgrade(paths: &Paths, source: Source, path: &Path) -> Result<Upgrade, String> {
    let (path, hash) = hash_binary(path)?;
    audit_ready(paths)?;
    let result = policy::update(paths, |p| {
        if let Some(other) = p.by_hash(&hash)
            && other.path != path
        {
            return Err(format!(
                "the binary at {} is identical to the one registered as {}; unregister one of them first",
                path.display(),
                other.path.display()
            ));
        }
        let b = p
            .registered_binaries
            .iter_mut()
            .find(|b| b.path == path)
            .ok_or_else(|| {
                format!(
                    "{} is not registered; register it with: keychain-auth register {}",
                    path.display(),
                    path.display()
                )
            })?;
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
        pending::remove(&paths.pending, &hash)?;
        audit_change(paths, source, "upgrade", &result.entry, |r| {
            r.old_hash = Some(old.to_string());
        })?;
    }
    Ok(result)
}

/// Adds permissions to the binary `selector` names (hash, prefix or path).
pub fn grant(
    paths: &Paths,
    source: Source,
    selector: &str,
    grants: &Grants,
) -> Result<BinaryPolicy, String> {
    change_grants(paths, source, selector, grants, "grant", Grants::add_to)
}

/// Removes permissions from the binary `selector` names.
pub fn revoke(
    paths: &Paths,
    source: Source,
    selector: &str,
    grants: &Grants,
) -> Result<BinaryPolicy, String> {
    change_grants(
        paths,
        source,
        selector,
        grants,
        "revoke",
        Grants::remove_from,
    )
}

fn change_grants(
    paths: &Paths,
    source: Source,
    selector: &str,
    grants: &Grants,
    change: &str,
    apply: fn(&Grants, &mut BinaryPolicy),
) -> Result<BinaryPolicy, String> {
    if grants.is_empty() {
        return Err(format!(
            "nothing to {change}: give --read SERVICE, --write SERVICE, --search, --allow-env VAR, --via HASH|PATH or --allow-any-script"
        ));
    }
    let grants = &grants.resolve()?;
    audit_ready(paths)?;
    let entry = policy::update(paths, |p| {
        let i = p.resolve(selector)?;
        let b = &mut p.registered_binaries[i];
        apply(grants, b);
        Ok(b.clone())
    })?;
    audit_change(paths, source, change, &entry, |r| grants.record(r))?;
    Ok(entry)
}

/// Replaces the permissions of the binary `selector` names with exactly `grants` (the
/// dashboard's permission editor); audited as grant and/or revoke of the difference.
pub fn set_grants(
    paths: &Paths,
    source: Source,
    selector: &str,
    grants: &Grants,
) -> Result<BinaryPolicy, String> {
    grants.validate()?;
    audit_ready(paths)?;
    let (before, after) = policy::update(paths, |p| {
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
        b.can_search = grants.search;
        Ok((before, b.clone()))
    })?;
    let added = Grants::gained(&before, &after);
    let removed = Grants::gained(&after, &before);
    if !added.is_empty() {
        audit_change(paths, source, "grant", &after, |r| added.record(r))?;
    }
    if !removed.is_empty() {
        audit_change(paths, source, "revoke", &after, |r| removed.record(r))?;
    }
    Ok(after)
}

/// Removes the binary `selector` names.
pub fn unregister(paths: &Paths, source: Source, selector: &str) -> Result<BinaryPolicy, String> {
    audit_ready(paths)?;
    let removed = policy::update(paths, |p| {
        let i = p.resolve(selector)?;
        Ok(p.registered_binaries.remove(i))
    })?;
    audit_change(paths, source, "unregister", &removed, |_| {})?;
    Ok(removed)
}

/// Drops a pending entry without approving it.
pub fn dismiss(paths: &Paths, source: Source, selector: &str) -> Result<PendingEntry, String> {
    audit_ready(paths)?;
    let entry = pending::update(&paths.pending, |q| {
        let e = pending::find(q, selector)?.clone();
        q.entries.retain(|x| x.hash != e.hash);
        Ok::<_, String>(e)
    })??;
    let mut rec = Record::policy_change(source.as_str(), "dismiss");
    rec.path = Some(entry.path.display().to_string());
    rec.hash = Some(entry.hash.to_string());
    audit::append_once(paths, &rec).map_err(|e| e.to_string())?;
    Ok(entry)
}

/// The interpreter names config.json adds (none when it cannot be read: the built-in list).
fn interpreters(paths: &Paths) -> Vec<String> {
    policy::load(&paths.config)
        .map(|p| p.interpreters)
        .unwrap_or_default()
}

/// Why a bare interpreter is not approved without `--allow-any-script`.
fn bare_interpreter(path: &Path) -> String {
    format!(
        "{} is an interpreter: approving it would serve every script and every line of inline code it runs. Register the script instead (keychain-auth register SCRIPT), or pass --allow-any-script if that is really what you want",
        path.display()
    )
}

/// The hash a `--via` argument names: a path (hashed now) or a full hash.
fn launcher_hash(selector: &str) -> Result<BinaryHash, String> {
    if selector.contains('/') {
        return hash_binary(Path::new(selector)).map(|(_, h)| h);
    }
    BinaryHash::parse(selector).map_err(|_| {
        format!("--via {selector:?}: give the launcher's path or its full sha256 hash")
    })
}

/// What `register PATH` registers: a binary by its own hash, or a script (a file starting with
/// `#!`) by its hash together with the interpreter its `#!` line names (`/usr/bin/env NAME` is
/// looked up on `PATH`).
fn identify_file(
    paths: &Paths,
    path: &Path,
) -> Result<(PathBuf, BinaryHash, Option<policy::InterpreterRef>), String> {
    use crate::identity::script::{self, Shebang};
    use std::io::BufRead;
    let (path, hash) = hash_binary(path)?;
    let mut first = Vec::new();
    std::fs::File::open(&path)
        .map(std::io::BufReader::new)
        .and_then(|mut r| r.read_until(b'\n', &mut first))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
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
            .ok_or_else(|| {
                format!(
                    "{} runs `{name}` through /usr/bin/env, and no {name} is on PATH",
                    path.display()
                )
            })?,
    };
    let (interp_path, interp_hash) = hash_binary(&interp)?;
    let mut magic = [0u8; 2];
    if std::fs::File::open(&interp_path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && &magic == b"#!"
    {
        return Err(format!(
            "{} is run by {}, which is itself a script (a version manager's shim?); write the real interpreter's path in the #! line",
            path.display(),
            interp_path.display()
        ));
    }
    if script::family_of(&interp_path, &interpreters(paths)).is_none() {
        return Err(format!(
            "{} is run by {}, which is not an interpreter the broker knows; add its name to \"interpreters\" in config.json first",
            path.display(),
            interp_path.display()
        ));
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
fn hash_binary(path: &Path) -> Result<(PathBuf, BinaryHash), String> {
    let canonical = canonical_or_literal(path);
    let meta = std::fs::metadata(&canonical)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let hash = identity::hash_path(&canonical)
        .map_err(|e| format!("cannot hash {}: {e}", canonical.display()))?;
    Ok((canonical, hash))
}
