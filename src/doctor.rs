//! `keychain-auth doctor` and `keychain-auth migrate`: the operator commands around the stores.
//!
//! `doctor` prints one screen of checks — active backend and why, the Secret Service's state,
//! the daemon, permissions of the socket and files, config validity, pending count, audit log
//! size — each problem with its fix, and fails when there is a problem. `migrate` moves every
//! item between the file store and the keyring (see [`crate::backend::migrate`]).

use crate::audit::{self, Record};
use crate::backend::file::FileStore;
use crate::backend::migrate::{self, Report};
use crate::backend::secret_service::{self, Probe, SecretServiceStore};
use crate::backend::{Backend, BackendKind};
use crate::display::clean;
use crate::paths::Paths;
use crate::selection::{self, Decision, Preference};
use crate::{pending, policy};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Info,
    Warn,
    Problem,
}

struct Check {
    level: Level,
    topic: &'static str,
    text: String,
    fix: Option<String>,
}

#[derive(Default)]
struct Checks(Vec<Check>);

impl Checks {
    fn add(&mut self, level: Level, topic: &'static str, text: impl Into<String>) {
        self.0.push(Check {
            level,
            topic,
            text: text.into(),
            fix: None,
        });
    }

    fn problem(&mut self, topic: &'static str, text: impl Into<String>, fix: impl Into<String>) {
        self.0.push(Check {
            level: Level::Problem,
            topic,
            text: text.into(),
            fix: Some(fix.into()),
        });
    }

    fn warn(&mut self, topic: &'static str, text: impl Into<String>, fix: impl Into<String>) {
        self.0.push(Check {
            level: Level::Warn,
            topic,
            text: text.into(),
            fix: Some(fix.into()),
        });
    }
}

/// Runs every check, prints the screen, and fails with the problem count when there is one.
pub fn doctor(paths: &Paths) -> Result<(), String> {
    let mut c = Checks::default();
    check_config(paths, &mut c);
    check_seal(paths, &mut c);
    let daemon = crate::control::running(&paths.socket);
    let serving = match &daemon {
        crate::control::Running::Yes(s) => Some(s.backend.as_str()),
        _ => None,
    };
    check_backend(paths, serving, &mut c);
    check_daemon(paths, &daemon, &mut c);
    check_secret_service_owner(&mut c);
    check_socket(&paths.socket, &mut c);
    check_adapters(paths, &mut c);
    for (what, path) in [
        ("config", &paths.config),
        ("pending", &paths.pending),
        ("audit log", &paths.audit),
        ("file store", &paths.file_store),
    ] {
        check_file(what, path, &mut c);
    }
    check_pending(paths, &mut c);
    check_audit_log(paths, &mut c);
    check_ptrace(&mut c);
    print(&c);
    let problems = c.0.iter().filter(|x| x.level == Level::Problem).count();
    if problems > 0 {
        return Err(format!(
            "{problems} problem(s) found; each is listed above with its fix"
        ));
    }
    Ok(())
}

/// Who serves `org.freedesktop.secrets` on the session bus (gnome-keyring, this broker with
/// `--secret-service`, or nobody).
fn check_secret_service_owner(c: &mut Checks) {
    match crate::dbus::owner_report() {
        Ok(who) => c.add(Level::Info, "secret service", who),
        Err(why) => c.add(
            Level::Info,
            "secret service",
            format!("cannot tell who owns {} ({why})", crate::dbus::NAME),
        ),
    }
}

/// Whether a daemon answers on the socket, and what it says about itself.
fn check_daemon(paths: &Paths, daemon: &crate::control::Running, c: &mut Checks) {
    match daemon {
        crate::control::Running::Yes(s) => c.add(
            Level::Ok,
            "daemon",
            format!(
                "running on {} (pid {}, version {}, up {} s, {} store)",
                paths.socket.display(),
                s.pid,
                s.version,
                s.uptime_s,
                s.backend
            ),
        ),
        crate::control::Running::Silent(e) => c.problem(
            "daemon",
            format!(
                "something listens on {} but did not answer STATUS ({e})",
                paths.socket.display()
            ),
            "check the daemon's output; restart it (stop it, then keychain-auth start)",
        ),
        crate::control::Running::No => c.problem(
            "daemon",
            format!("no daemon answers on {}", paths.socket.display()),
            "run: keychain-auth start",
        ),
    }
}

/// How many callers wait for approval; a pending queue that cannot be read is a problem.
fn check_pending(paths: &Paths, c: &mut Checks) {
    match pending::load(&paths.pending) {
        Ok(q) if q.entries.is_empty() => c.add(Level::Ok, "pending", "no pending callers"),
        Ok(q) => c.add(
            Level::Info,
            "pending",
            format!(
                "{} pending caller(s): review with `keychain-auth list-pending`",
                q.entries.len()
            ),
        ),
        Err(e) => c.problem(
            "pending",
            e.to_string(),
            format!("repair or move away {}", paths.pending.display()),
        ),
    }
}

/// The audit log's size and its chain; not existing yet is fine.
fn check_audit_log(paths: &Paths, c: &mut Checks) {
    match std::fs::metadata(&paths.audit) {
        Ok(m) => {
            c.add(
                Level::Ok,
                "audit log",
                format!("{} ({})", paths.audit.display(), human_size(m.len())),
            );
            check_chain(paths, c);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => c.add(
            Level::Info,
            "audit log",
            format!(
                "{} does not exist yet (created by the first event)",
                paths.audit.display()
            ),
        ),
        Err(e) => c.problem(
            "audit log",
            format!("{}: {e}", paths.audit.display()),
            "make the file readable and writable by you (chmod 600)",
        ),
    }
}

/// Where the kernel says its Yama ptrace scope; absent when Yama is not in the kernel.
const PTRACE_SCOPE: &str = "/proc/sys/kernel/yama/ptrace_scope";

/// The fix for a ptrace scope that lets your programs rewrite an approved program.
const PTRACE_FIX: &str = "sudo sysctl -w kernel.yama.ptrace_scope=2, and keep it in /etc/sysctl.d/ (debuggers then need root)";

/// What the machine's ptrace setting lets your own programs do to an approved program.
fn check_ptrace(c: &mut Checks) {
    let setting = std::fs::read_to_string(PTRACE_SCOPE);
    let (level, text, fix) = ptrace_verdict(match &setting {
        Ok(s) => Some(s.trim()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(_) => Some("unreadable"),
    });
    match fix {
        Some(fix) => c.warn("ptrace", text, fix),
        None => c.add(level, "ptrace", text),
    }
}

/// The level, wording and fix for a Yama `ptrace_scope` value (`None`: no Yama).
fn ptrace_verdict(scope: Option<&str>) -> (Level, String, Option<&'static str>) {
    const ANY: &str = "any program of yours may trace any other of your processes, read and write its memory (/proc/<pid>/mem, process_vm_writev) and take its descriptors (pidfd_getfd): it can start an approved program, rewrite its request and read the answer (the broker itself is non-dumpable and out of reach)";
    match scope {
        None => (
            Level::Warn,
            format!("the kernel has no Yama ptrace restrictions: {ANY}"),
            Some("boot with Yama enabled (lsm=...,yama), then sudo sysctl -w kernel.yama.ptrace_scope=2"),
        ),
        Some("0") => (
            Level::Warn,
            format!("kernel.yama.ptrace_scope=0 (classic): {ANY}"),
            Some(PTRACE_FIX),
        ),
        Some("1") => (
            Level::Warn,
            "kernel.yama.ptrace_scope=1 (restricted): a program may trace, rewrite the memory of and take descriptors from its own descendants only, so a program of yours can still start an approved program, rewrite its request and read the answer".into(),
            Some(PTRACE_FIX),
        ),
        Some("2") => (
            Level::Ok,
            "kernel.yama.ptrace_scope=2 (admin-only): only root may trace or rewrite another process, so no program of yours can rewrite an approved one, not even its own child".into(),
            None,
        ),
        Some("3") => (
            Level::Ok,
            "kernel.yama.ptrace_scope=3 (no attach): no process may trace or rewrite another until reboot".into(),
            None,
        ),
        Some(other) => (
            Level::Warn,
            format!("cannot tell what the ptrace setting allows ({PTRACE_SCOPE}: {other})"),
            Some(PTRACE_FIX),
        ),
    }
}

fn print(c: &Checks) {
    crate::outln!("keychain-auth {} doctor", crate::VERSION);
    for x in &c.0 {
        let tag = match x.level {
            Level::Ok => "ok",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Problem => "PROBLEM",
        };
        crate::outln!("{tag:<8} {:<15} {}", x.topic, clean(&x.text));
        if let Some(fix) = &x.fix {
            crate::outln!("{:<8} {:<15} fix: {}", "", "", clean(fix));
        }
    }
}

fn human_size(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} bytes"),
    }
}

/// The audit chain, as `audit verify` checks it.
fn check_chain(paths: &Paths, c: &mut Checks) {
    let key = crate::selection::select(paths)
        .map_err(crate::keys::KeyError::from)
        .and_then(|s| audit::chain::load(s.backend.as_ref()));
    match key {
        Ok(Some(key)) => {
            let r = audit::verify::verify(&paths.audit, &key);
            match r.breaks.first() {
                None => c.add(
                    Level::Ok,
                    "audit chain",
                    format!("verified: {} records in {} file(s)", r.records, r.files.len()),
                ),
                Some(b) => c.problem(
                    "audit chain",
                    format!(
                        "BROKEN: {} break(s), the first in {} line {}: {}",
                        r.breaks.len(),
                        b.file.display(),
                        b.line,
                        b.message
                    ),
                    "see `keychain-auth audit verify` for every break; the log was changed by something other than keychain-auth",
                ),
            }
        }
        Ok(None) => c.add(
            Level::Info,
            "audit chain",
            "no audit key in the store yet: nothing chained",
        ),
        Err(e) => c.add(Level::Warn, "audit chain", format!("not checked: {e}")),
    }
}

/// config.json's seal: edits made outside keychain-auth, and what they changed.
fn check_seal(paths: &Paths, c: &mut Checks) {
    use crate::policy::seal::Integrity;
    let Ok(file) = policy::load(&paths.config) else {
        return; // reported by the config check
    };
    match policy::sealed::integrity(paths, &crate::selection::key_source(paths), &file) {
        Err(e) => c.problem(
            "config seal",
            format!("cannot check the seal of {}: {e}", paths.config.display()),
            "make the store reachable (see the backend check); until then the daemon denies every request",
        ),
        Ok(Integrity::Sealed) => c.add(
            Level::Ok,
            "config seal",
            format!("{} matches its seal", paths.config.display()),
        ),
        Ok(Integrity::Unsealed) => c.add(
            Level::Warn,
            "config seal",
            format!(
                "{} is not sealed yet (written before sealing existed, or by hand); the next keychain-auth change seals it",
                paths.config.display()
            ),
        ),
        Ok(Integrity::Edited(d)) => c.problem(
            "config seal",
            format!(
                "{}; the added or changed entries are not served:\n{}",
                d.summary(),
                d.render().trim_end()
            ),
            "review and adopt it with `keychain-auth policy accept`, or undo the edit",
        ),
    }
}

fn check_config(paths: &Paths, c: &mut Checks) {
    match policy::load(&paths.config) {
        Ok(p) => c.add(
            Level::Ok,
            "config",
            format!(
                "{}: valid, {} registered binar{}{}",
                paths.config.display(),
                p.registered_binaries.len(),
                if p.registered_binaries.len() == 1 {
                    "y"
                } else {
                    "ies"
                },
                match &p.backend {
                    Some(b) => format!(", \"backend\": \"{b}\""),
                    None => String::new(),
                }
            ),
        ),
        Err(e) => c.problem(
            "config",
            e.to_string(),
            format!(
                "repair {} (or move it away to start with an empty policy); until then every request is denied",
                paths.config.display()
            ),
        ),
    }
}

/// The adapter executables `cargo install` puts next to `keychain-auth`.
const ADAPTERS: [&str; 3] = [
    "git-credential-keychain-auth",
    "keychain-auth-aws",
    "docker-credential-keychain-auth",
];

/// Where `name` is installed: next to this binary first, else on `PATH`.
fn find_adapter(name: &str) -> Option<std::path::PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(name)));
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    beside
        .into_iter()
        .chain(on_path)
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
}

/// Each adapter: installed (where), and registered (by its current hash) or not. Informational:
/// an adapter you do not use is not a problem.
fn check_adapters(paths: &Paths, c: &mut Checks) {
    let policy = policy::load(&paths.config).ok();
    for name in ADAPTERS {
        check_adapter(name, policy.as_ref(), c);
        c.add(
            Level::Info,
            "adapter",
            format!("{name}: {}", tool_config(name)),
        );
    }
}

/// Where the adapter `name` is installed and whether that binary is registered.
fn check_adapter(name: &str, policy: Option<&policy::PolicyFile>, c: &mut Checks) {
    let Some(found) = find_adapter(name) else {
        c.add(
            Level::Info,
            "adapter",
            format!("{name}: not installed (cargo install --path . installs it)"),
        );
        return;
    };
    let path = policy::canonical_or_literal(&found);
    let hash = crate::identity::cache::hash_path(&path).ok();
    let entry = policy.and_then(|p| {
        hash.as_ref()
            .and_then(|h| p.by_hash(h))
            .or_else(|| p.by_path(&path))
    });
    match entry {
            Some(e) if Some(&e.hash) == hash.as_ref() => {
                let mut grants: Vec<String> = e
                    .allowed_read_services
                    .iter()
                    .map(|s| format!("read {s}"))
                    .chain(e.allowed_write_services.iter().map(|s| format!("write {s}")))
                    .collect();
                if e.can_search {
                    grants.push("search".into());
                }
                if !e.launched_by.is_empty() {
                    grants.push(format!("via {} launcher(s)", e.launched_by.len()));
                }
                c.add(
                    Level::Ok,
                    "adapter",
                    format!(
                        "{name}: {} registered ({})",
                        path.display(),
                        if grants.is_empty() { "no permissions".into() } else { grants.join(", ") }
                    ),
                );
            }
            Some(_) => c.warn(
                "adapter",
                format!("{name}: {} changed since it was registered", path.display()),
                format!("run: keychain-auth upgrade {}", path.display()),
            ),
            None => c.add(
                Level::Info,
                "adapter",
                format!(
                    "{name}: {} installed, not registered (README, \"Use it with git / AWS / docker / scripts\")",
                    path.display()
                ),
            ),
        }
}

/// Whether the tool the adapter `name` serves is set up to use it, and where (or the line that
/// would set it up): git's `credential.helper`, the AWS config's `credential_process`, docker's
/// `credsStore`/`credHelpers`.
fn tool_config(name: &str) -> String {
    match name {
        "git-credential-keychain-auth" => git_config(),
        "keychain-auth-aws" => aws_config(),
        _ => docker_config(),
    }
}

fn git_config() -> String {
    let out = std::process::Command::new("git")
        .args(["config", "--get-all", "credential.helper"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output();
    let Ok(out) = out else {
        return "git is not installed".into();
    };
    let helpers = String::from_utf8_lossy(&out.stdout);
    if helpers.lines().any(|h| h.contains("keychain-auth")) {
        "git uses it (credential.helper)".into()
    } else {
        "git does not use it yet: git config --global credential.helper keychain-auth".into()
    }
}

/// A tool's configuration file (at most 1 MiB), empty when it is absent; a file that cannot be
/// read (a FIFO in its place is never waited on) is what doctor reports instead.
fn read_tool_config(file: Option<&Path>) -> Result<Vec<u8>, String> {
    let Some(file) = file else {
        return Ok(Vec::new());
    };
    match crate::fsutil::read_foreign(file, 1 << 20) {
        Ok(bytes) => Ok(bytes.unwrap_or_default()),
        Err(e) => Err(format!(
            "cannot read {}: {}",
            crate::display::path(file),
            clean(&e.to_string())
        )),
    }
}

fn aws_config() -> String {
    let file = std::env::var_os("AWS_CONFIG_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".aws/config")));
    let text = match read_tool_config(file.as_deref()) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(why) => return why,
    };
    let mut section = String::new();
    let mut profiles = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).trim().to_string();
        } else if let Some((key, value)) = line.split_once('=')
            && key.trim() == "credential_process"
            && value.contains("keychain-auth-aws")
        {
            profiles.push(clean(&section).into_owned());
        }
    }
    if profiles.is_empty() {
        "no AWS profile uses it yet: credential_process = keychain-auth-aws PROFILE in ~/.aws/config".into()
    } else {
        format!("AWS uses it for {}", profiles.join(", "))
    }
}

fn docker_config() -> String {
    let file = std::env::var_os("DOCKER_CONFIG")
        .map(|d| Path::new(&d).join("config.json"))
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker/config.json")));
    let config: serde_json::Value = match read_tool_config(file.as_deref()) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(why) => return why,
    };
    let store = config["credsStore"] == "keychain-auth";
    let hosts: Vec<String> = config["credHelpers"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| *v == "keychain-auth")
                .map(|(k, _)| clean(k).into_owned())
                .collect()
        })
        .unwrap_or_default();
    match (store, hosts.is_empty()) {
        (true, _) => "docker uses it for every registry (credsStore)".into(),
        (false, false) => format!("docker uses it for {} (credHelpers)", hosts.join(", ")),
        (false, true) => {
            "docker does not use it yet: \"credsStore\": \"keychain-auth\" in ~/.docker/config.json"
                .into()
        }
    }
}

/// The Secret Service's state, the store a start would choose and why, whether the running
/// daemon serves another, and items left behind in the file store.
fn check_backend(paths: &Paths, running: Option<&str>, c: &mut Checks) {
    if std::fs::symlink_metadata(&paths.vault).is_ok() {
        c.add(
            Level::Ok,
            "backend",
            format!(
                "vault {} (a vault exists, so it is the store): values, target names and the audit and seal keys are encrypted; programs running as you cannot read them or approve themselves without the passphrase",
                paths.vault.display()
            ),
        );
        if let Some(r) = running
            && r != "vault"
        {
            c.warn(
                "backend",
                format!("the running daemon serves the {r} store, not the vault"),
                "restart the daemon (stop it, then keychain-auth start)",
            );
        }
        return;
    }
    let env = std::env::var(selection::ENV).ok();
    let requested = match selection::requested_from(paths, env.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            c.problem(
                "backend",
                e.to_string(),
                format!("set {} to auto, keyring or file", selection::ENV),
            );
            return;
        }
    };
    let probe = match SecretServiceStore::new(secret_service::DEFAULT_TIMEOUT) {
        Ok(s) => s.probe(secret_service::PROBE_TIMEOUT),
        Err(e) => Probe::Trouble(e.to_string()),
    };
    check_secret_service(&probe, requested.preference, c);
    let file_store = paths.file_store.display().to_string();
    let Some(chosen) = check_choice(&requested, &probe, &file_store, c) else {
        return;
    };
    if let Some(r) = running
        && r != chosen.as_str()
    {
        c.warn(
            "backend",
            format!(
                "the running daemon serves the {r} store, but a start now would choose {chosen}"
            ),
            "restart the daemon (stop it, then keychain-auth start)",
        );
    }
    if chosen == BackendKind::Keyring {
        check_left_in_file_store(paths, &file_store, c);
    }
    if let Some(exposed) = chosen.exposure() {
        c.warn("exposure", exposed, crate::backend::VAULT_FIX);
    }
}

/// The Secret Service's state: a problem only when the keyring is wanted.
fn check_secret_service(probe: &Probe, preference: Preference, c: &mut Checks) {
    let keyring_wanted = preference != Preference::File;
    match probe {
        Probe::Available => c.add(Level::Ok, "secret service", "reachable and unlocked"),
        Probe::Locked if keyring_wanted => c.problem(
            "secret service",
            "reachable but locked: requests answer backend_unavailable",
            secret_service::UNLOCK_HINT,
        ),
        Probe::Locked => c.add(Level::Info, "secret service", "reachable but locked"),
        Probe::Unreachable(w) if preference == Preference::Keyring => c.problem(
            "secret service",
            format!("unreachable: {w}"),
            "start a Secret Service (see `keychain-auth start`'s message) or set KEYCHAIN_AUTH_BACKEND=file",
        ),
        Probe::Unreachable(w) => c.add(Level::Info, "secret service", format!("unreachable: {w}")),
        Probe::Trouble(t) if keyring_wanted => c.problem(
            "secret service",
            format!("not usable: {t}"),
            "check that gnome-keyring (or KWallet) runs and answers, then run doctor again",
        ),
        Probe::Trouble(t) => c.add(Level::Info, "secret service", format!("not usable: {t}")),
    }
}

/// The store a start would choose now and why; `None` when it would refuse (a problem).
fn check_choice(
    requested: &selection::Requested,
    probe: &Probe,
    file_store: &str,
    c: &mut Checks,
) -> Option<BackendKind> {
    match selection::decide(requested, Some(probe), file_store) {
        Decision::Keyring { reason, pin, .. } => {
            let pinned = if pin {
                " (to be pinned in config.json by the first successful write)"
            } else {
                ""
            };
            c.add(Level::Ok, "backend", format!("{reason}{pinned}"));
            Some(BackendKind::Keyring)
        }
        Decision::File { reason, .. } => {
            c.add(Level::Ok, "backend", reason);
            Some(BackendKind::File)
        }
        Decision::Refuse(m) => {
            c.problem(
                "backend",
                "no store can be used: `keychain-auth start` would refuse",
                m,
            );
            None
        }
    }
}

/// With the keyring chosen, items still in the file store are not served: a warning.
fn check_left_in_file_store(paths: &Paths, file_store: &str, c: &mut Checks) {
    let file = FileStore::new(&paths.file_store);
    let n = file.services().ok().map(|services| {
        services
            .iter()
            .filter_map(|s| file.list(s, "", &Default::default()).ok())
            .map(|v| v.len())
            .sum::<usize>()
    });
    if let Some(n @ 1..) = n {
        c.warn(
            "file store",
            format!("{file_store} still holds {n} item(s) the keyring backend does not serve"),
            "keychain-auth migrate --to keyring",
        );
    }
}

fn check_socket(socket: &Path, c: &mut Checks) {
    if let Some(dir) = socket.parent() {
        match std::fs::metadata(dir) {
            Ok(m) => check_mode(c, "socket dir", dir, &m, 0o077, "chmod 700"),
            Err(_) => return,
        }
    }
    match std::fs::symlink_metadata(socket) {
        Ok(m) if m.file_type().is_socket() => {
            check_mode(c, "socket", socket, &m, 0o077, "chmod 600");
        }
        Ok(_) => c.problem(
            "socket",
            format!("{} exists but is not a socket", socket.display()),
            format!(
                "remove it (rm {}) and run keychain-auth start",
                socket.display()
            ),
        ),
        Err(_) => {}
    }
}

fn check_file(topic: &'static str, path: &Path, c: &mut Checks) {
    // As the daemon sees it: a link, FIFO or other non-regular file is refused, not followed.
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => {
            let why = crate::fsutil::check_state_file(path, &m)
                .err()
                .map_or_else(|| "not a regular file".to_string(), |e| e.to_string());
            c.problem(
                topic,
                why,
                format!("remove it or move it away: {}", path.display()),
            );
        }
        Ok(m) => {
            check_mode(c, topic, path, &m, 0o077, "chmod 600");
            // The file store's directory may not even be readable by others.
            let forbidden = if topic == "file store" { 0o077 } else { 0o022 };
            if let Some(dir) = path.parent()
                && let Ok(dm) = std::fs::metadata(dir)
            {
                check_mode(c, topic, dir, &dm, forbidden, "chmod 700");
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => c.problem(
            topic,
            format!("{}: {e}", path.display()),
            "make it readable by you",
        ),
    }
}

/// A problem when `path` is not ours or has any of `forbidden` mode bits.
fn check_mode(
    c: &mut Checks,
    topic: &'static str,
    path: &Path,
    m: &std::fs::Metadata,
    forbidden: u32,
    chmod: &str,
) {
    let me = nix::unistd::geteuid().as_raw();
    if m.uid() != me {
        c.problem(
            topic,
            format!(
                "{} is owned by uid {}, not by you (uid {me})",
                path.display(),
                m.uid()
            ),
            format!("chown it to yourself or move it away: {}", path.display()),
        );
    } else if m.mode() & forbidden != 0 {
        c.problem(
            topic,
            format!(
                "{} has mode {:o}: others can reach it",
                path.display(),
                m.mode() & 0o777
            ),
            format!("{chmod} {}", path.display()),
        );
    } else {
        c.add(
            Level::Ok,
            topic,
            format!("{} (mode {:o})", path.display(), m.mode() & 0o777),
        );
    }
}

/// `keychain-auth migrate --to keyring|file`: moves every item from the other store, audits
/// the counts, and records the destination as `"backend"` in config.json.
pub fn migrate(paths: &Paths, to: &str) -> Result<(), String> {
    let Some(dest @ (Preference::Keyring | Preference::File)) = Preference::parse(to) else {
        return Err(format!("--to {to:?}: use keyring or file"));
    };
    crate::control::no_daemon_serves(paths)?;
    let keyring = usable_keyring()?;
    let file = FileStore::new(&paths.file_store);
    let (from, into): (&dyn Backend, &dyn Backend) = match dest {
        Preference::Keyring => (&file, &keyring),
        _ => (&keyring, &file),
    };
    let mut done = 0usize;
    // keychain-auth's own key goes first and stays in the source until config.json names the
    // destination (see backend::migrate).
    let reserved_conflicts = migrate::copy_reserved(from, into).map_err(|e| e.to_string())?;
    let result = migrate::migrate(from, into, &mut |_, _| done += 1);
    let (mut report, error) = match result {
        Ok(r) => (r, None),
        Err(s) => (s.report, Some(s.error)),
    };
    report.conflicts.extend(reserved_conflicts.iter().cloned());
    let summary = summary(&report, from, into);
    audit_migration(paths, &report, &summary, error.as_ref());
    crate::outln!("{}", clean(&summary));
    if let Some(e) = error {
        return Err(format!(
            "migration stopped: {e}; what was moved is safe, run the same command again to finish"
        ));
    }
    policy::sealed::update_with(paths, &crate::selection::key_source(paths), |p| {
        p.backend = Some(dest.as_str().into());
        Ok::<_, policy::sealed::UpdateError>(())
    })
    .map_err(|e| e.to_string())?;
    crate::outln!("config.json now records \"backend\": \"{}\"", dest.as_str());
    if reserved_conflicts.is_empty() {
        migrate::drop_reserved(from, into).map_err(|e| e.to_string())?;
    }
    warn_if_env_overrides(dest);
    if !report.conflicts.is_empty() {
        return Err(format!(
            "{} item(s) differ between the stores and were left in both: {}; delete the copy you do not want, then run migrate again",
            report.conflicts.len(),
            report.conflicts.join(", ")
        ));
    }
    Ok(())
}

/// The keyring, reachable and unlocked (either direction needs it).
fn usable_keyring() -> Result<SecretServiceStore, String> {
    let keyring =
        SecretServiceStore::new(secret_service::DEFAULT_TIMEOUT).map_err(|e| e.to_string())?;
    match keyring.probe(secret_service::PROBE_TIMEOUT) {
        Probe::Available => Ok(keyring),
        Probe::Locked => Err(secret_service::UNLOCK_HINT.into()),
        Probe::Unreachable(w) => Err(format!(
            "migrating needs the Secret Service, and none is reachable: {w}; run this where your keyring runs (your desktop session)"
        )),
        Probe::Trouble(t) => Err(format!("the Secret Service is not usable: {t}")),
    }
}

/// The `migrate` audit record: counts, conflicts, and where it stopped (a warning on stderr
/// when the log cannot be written).
fn audit_migration(
    paths: &Paths,
    report: &Report,
    summary: &str,
    error: Option<&impl std::fmt::Display>,
) {
    let rec = Record::migrate(
        report.moved,
        report.conflicts.clone(),
        error.is_none() && report.conflicts.is_empty(),
        match error {
            Some(e) => format!("{summary}; stopped: {e}"),
            None => summary.to_string(),
        },
    );
    if let Err(e) = crate::audit_once::append_once(paths, &rec) {
        eprintln!("keychain-auth: warning: cannot write the audit log: {e}");
    }
}

/// A backend set in the environment overrides config.json: say so.
fn warn_if_env_overrides(dest: Preference) {
    if let Ok(v) = std::env::var(selection::ENV)
        && !v.is_empty()
        && v != dest.as_str()
        && v != "auto"
    {
        eprintln!(
            "keychain-auth: warning: {}={v} is set in your environment and overrides config.json: unset it or set it to {}",
            selection::ENV,
            dest.as_str()
        );
    }
}

fn summary(r: &Report, from: &dyn Backend, into: &dyn Backend) -> String {
    format!(
        "migrate from the {} to the {}: {} moved, {} already there, {} conflict(s)",
        from.describe(),
        into.describe(),
        r.moved,
        r.already_there,
        r.conflicts.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ptrace_setting_is_said_with_what_it_allows() {
        let (level, text, fix) = ptrace_verdict(None);
        assert!(
            level == Level::Warn && text.contains("no Yama") && fix.is_some(),
            "{text}"
        );
        let (level, text, _) = ptrace_verdict(Some("0"));
        assert!(
            level == Level::Warn && text.contains("any program of yours"),
            "{text}"
        );
        let (level, text, fix) = ptrace_verdict(Some("1"));
        assert!(
            level == Level::Warn && text.contains("its own descendants"),
            "{text}"
        );
        assert!(fix.is_some_and(|f| f.contains("ptrace_scope=2")));
        let (level, text, fix) = ptrace_verdict(Some("2"));
        assert!(
            level == Level::Ok && text.contains("only root") && fix.is_none(),
            "{text}"
        );
        let (level, _, fix) = ptrace_verdict(Some("3"));
        assert!(level == Level::Ok && fix.is_none());
        let (level, text, _) = ptrace_verdict(Some("7"));
        assert!(
            level == Level::Warn && text.contains("cannot tell"),
            "{text}"
        );
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(12), "12 bytes");
        assert_eq!(human_size(2048), "2.0 KiB");
        assert_eq!(human_size(3 << 20), "3.0 MiB");
    }

    #[test]
    fn group_readable_file_store_is_a_problem_with_a_fix() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("store");
        crate::fsutil::ensure_secret_dir(&dir).unwrap();
        let p = dir.join("keyring.json");
        std::fs::write(&p, b"{}").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let mut c = Checks::default();
        check_file("file store", &p, &mut c);
        let bad: Vec<_> = c.0.iter().filter(|x| x.level == Level::Problem).collect();
        assert_eq!(bad.len(), 1);
        assert!(bad[0].fix.as_deref().unwrap().starts_with("chmod 600"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut c = Checks::default();
        check_file("file store", &p, &mut c);
        assert!(c.0.iter().all(|x| x.level != Level::Problem));
        // A store directory others may read is a problem too (the daemon refuses it).
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut c = Checks::default();
        check_file("file store", &p, &mut c);
        let bad: Vec<_> = c.0.iter().filter(|x| x.level == Level::Problem).collect();
        assert_eq!(bad.len(), 1);
        assert!(bad[0].fix.as_deref().unwrap().starts_with("chmod 700"));
        // A FIFO in its place is reported, not opened.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::remove_file(&p).unwrap();
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let mut c = Checks::default();
        check_file("file store", &p, &mut c);
        let bad: Vec<_> = c.0.iter().filter(|x| x.level == Level::Problem).collect();
        assert_eq!(bad.len(), 1);
        assert!(bad[0].text.contains("FIFO"), "{}", bad[0].text);
    }
}
