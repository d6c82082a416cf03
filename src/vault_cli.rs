//! The vault's commands (`init`, `unlock`, `lock`) and presence: how the person's passphrase is
//! read. Never from an argument or an environment value: from the controlling terminal with
//! echo off, from a descriptor the caller opened (`--passphrase-fd N`), or from a file named by
//! `KEYCHAIN_AUTH_PASSPHRASE_FILE` that is a regular file of yours that nobody else can read.

use crate::audit::{self, KeySource, Record};
use crate::backend::vault::VaultStore;
use crate::backend::{Backend, Change};
use crate::cli::failure::Failure;
use crate::paths::Paths;
use crate::vault::slots::Cost;
use std::io::{BufRead, Read, Write};
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// Names a 0600 file holding the passphrase (headless machines, tests).
pub(crate) const PASSPHRASE_FILE: &str = "KEYCHAIN_AUTH_PASSPHRASE_FILE";
/// `floor` at `init`: the cheapest KDF parameters the load-time bounds accept (tests).
pub(crate) const KDF_ENV: &str = "KEYCHAIN_AUTH_VAULT_KDF";
/// The longest passphrase read.
const MAX_PASSPHRASE: u64 = 4096;

fn strip_newline(mut s: String) -> Zeroizing<String> {
    while s.ends_with('\n') || s.ends_with('\r') {
        s.pop();
    }
    Zeroizing::new(s)
}

/// The passphrase from the file `KEYCHAIN_AUTH_PASSPHRASE_FILE` names, refused unless it is a
/// regular file you own that group and others cannot read; `None` when the variable is unset.
pub(crate) fn from_env_file() -> Result<Option<Zeroizing<String>>, String> {
    let Some(path) = std::env::var_os(PASSPHRASE_FILE).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let path = std::path::PathBuf::from(path);
    let bytes = crate::fsutil::read_optional(&path)
        .map_err(|e| format!("{PASSPHRASE_FILE}: {e}"))?
        .ok_or_else(|| format!("{PASSPHRASE_FILE}: {} does not exist", path.display()))?;
    let bytes = Zeroizing::new(bytes);
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| format!("{PASSPHRASE_FILE}: {} is not UTF-8 text", path.display()))?;
    Ok(Some(strip_newline(text)))
}

fn from_fd(fd: i32) -> Result<Zeroizing<String>, String> {
    // Reopened through /proc, so no descriptor is adopted unsafely; a pipe reopens as itself.
    let f = std::fs::File::open(format!("/proc/self/fd/{fd}"))
        .map_err(|e| format!("--passphrase-fd {fd}: {e}"))?;
    let mut s = String::new();
    (&f).take(MAX_PASSPHRASE)
        .read_to_string(&mut s)
        .map_err(|e| format!("--passphrase-fd {fd}: {e}"))?;
    let first = s.lines().next().unwrap_or_default().to_string();
    zeroize::Zeroize::zeroize(&mut s);
    Ok(strip_newline(first))
}

/// Asks on the controlling terminal with echo off (a secret value).
pub(crate) fn ask_hidden(prompt: &str) -> Result<Zeroizing<String>, String> {
    from_tty(prompt)
}

/// Asks on the controlling terminal with echo on (a name, an access key id).
pub(crate) fn ask_visible(prompt: &str) -> Result<String, String> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| "no terminal".to_string())?;
    let mut w = &tty;
    let _ = write!(w, "{prompt}");
    let _ = w.flush();
    let mut line = String::new();
    std::io::BufReader::new(&tty)
        .read_line(&mut line)
        .map_err(|e| format!("the terminal: {e}"))?;
    Ok(line.trim().to_string())
}

/// Asks on the controlling terminal with echo off.
fn from_tty(prompt: &str) -> Result<Zeroizing<String>, String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| "no terminal".to_string())?;
    let saved = tcgetattr(&tty).map_err(|e| format!("the terminal: {e}"))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(&tty, SetArg::TCSAFLUSH, &quiet).map_err(|e| format!("the terminal: {e}"))?;
    let mut w = &tty;
    let _ = write!(w, "{prompt}");
    let _ = w.flush();
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    let _ = tcsetattr(&tty, SetArg::TCSAFLUSH, &saved);
    read.map_err(|e| format!("the terminal: {e}"))?;
    Ok(strip_newline(line))
}

/// The passphrase, from `--passphrase-fd`, else `KEYCHAIN_AUTH_PASSPHRASE_FILE`, else the
/// terminal (asked twice when `confirm`). `what` names the command for the refusal.
pub(crate) fn passphrase(
    fd: Option<i32>,
    what: &str,
    confirm: bool,
) -> Result<Zeroizing<String>, String> {
    let p = if let Some(fd) = fd {
        from_fd(fd)?
    } else if let Some(p) = from_env_file()? {
        p
    } else {
        let first = from_tty("Vault passphrase: ").map_err(|_| {
            format!(
                "{what} needs your vault passphrase and there is no terminal to ask it on; \
                 run it in a terminal, or give it with --passphrase-fd N or {PASSPHRASE_FILE} (a 0600 file)"
            )
        })?;
        if confirm && *from_tty("Again: ")? != *first {
            return Err("the two passphrases differ; nothing was changed".into());
        }
        first
    };
    if p.is_empty() {
        return Err("an empty passphrase is refused".into());
    }
    Ok(p)
}

/// The KDF cost of a new slot: calibrated to about a second, or the floor when
/// `KEYCHAIN_AUTH_VAULT_KDF=floor` asks for it.
pub(crate) fn cost() -> Result<Cost, String> {
    match std::env::var(KDF_ENV).ok().as_deref() {
        None | Some("") => Ok(Cost::Calibrated(Duration::from_secs(1))),
        Some("floor") => Ok(Cost::Floor),
        Some(other) => Err(format!("{KDF_ENV}={other:?}: the only value is floor")),
    }
}

/// Presence for a command that widens access: when a vault exists, the passphrase opens it in
/// this process (so config.json's seal and the audit log can be written); without a vault there
/// is nothing to prove. Refused without the passphrase.
pub(crate) fn presence(
    paths: &Paths,
    fd: Option<i32>,
    what: &str,
) -> Result<Option<Zeroizing<String>>, Failure> {
    let store = VaultStore::shared(&paths.vault);
    if !store.file().exists() || store.is_unlocked() {
        return Ok(None);
    }
    let p = passphrase(fd, what, false)?;
    if carried_by_daemon(what) && daemon_answers(paths) {
        // The daemon verifies it (audited, slowed when wrong) and makes the change. Opening the
        // vault here would make this process non-dumpable, and a daemon that is not root could
        // then no longer see that it is keychain-auth: it refuses admin requests it cannot
        // identify.
        return Ok(Some(p));
    }
    if let Err(e) = store.unlock(p.as_bytes(), crate::audit::generation::highest) {
        if matches!(e, crate::backend::vault::UnlockError::Wrong { .. }) {
            report_failure(paths, what);
        }
        return Err(format!("{what}: {e}; nothing was changed").into());
    }
    // Also the running daemon's proof: it checks it again before it makes a widening change.
    Ok(Some(p))
}

/// The widening changes a running daemon carries out itself (admin requests, the owner's calls
/// on the store included); only `audit verify` opens the vault in this process.
fn carried_by_daemon(what: &str) -> bool {
    matches!(
        what,
        "approve"
            | "register"
            | "upgrade"
            | "grant"
            | "policy accept"
            | "secret"
            | "aws add"
            | "export"
    )
}

/// Whether a daemon answers STATUS on the socket now.
fn daemon_answers(paths: &Paths) -> bool {
    crate::client::status(&paths.socket, Duration::from_secs(2)).is_ok()
}

/// Tells a running daemon that `what` was given a wrong passphrase: it audits the attempt and
/// answers after the growing delay, which this command waits out. Without a daemon there is no
/// key to write the audit log with; the attempt is then only refused.
fn report_failure(paths: &Paths, what: &str) {
    if !daemon_answers(paths) {
        return;
    }
    let mut line = serde_json::json!({"type":"VAULT","op":"failed","command":what}).to_string();
    line.push('\n');
    let _ = admin_line(paths, line.as_bytes());
}

/// At `start`: with `KEYCHAIN_AUTH_PASSPHRASE_FILE` set, unlock now (a wrong one refuses the
/// start); without it, the daemon starts locked. Returns a line for the start-up log.
pub(crate) fn unlock_at_start(backend: &dyn Backend) -> Result<Option<String>, Failure> {
    let Some(store) = crate::backend::vault::VaultStore::of(backend) else {
        return Ok(None);
    };
    match from_env_file()? {
        Some(p) => {
            store
                .unlock(p.as_bytes(), crate::audit::generation::highest)
                .map_err(|e| {
                format!("{PASSPHRASE_FILE} does not open {}: {e}", backend.describe())
            })?;
            Ok(Some(format!(
                "the vault is unlocked (keys in a {})",
                store
                    .protection()
                    .map_or("?", crate::vault::locked::Protection::describe)
            )))
        }
        None => Ok(Some(
            "the vault is locked: requests that need a secret are refused vault_locked until `keychain-auth unlock`".into(),
        )),
    }
}

/// `keychain-auth init`: creates the vault, optionally copies the current store's secrets into
/// it (and removes them there), re-seals config.json with the vault's key, and starts the audit
/// chain anew under it (the log written under the plain store's key is moved aside).
pub(crate) fn init(
    paths: &Paths,
    fd: Option<i32>,
    import: bool,
    remove_plain: bool,
) -> Result<(), Failure> {
    let store = VaultStore::shared(&paths.vault);
    if store.file().exists() {
        return Err(format!("a vault already exists at {}", paths.vault.display()).into());
    }
    if crate::client::status(&paths.socket, Duration::from_secs(2)).is_ok() {
        return Err("a keychain-auth daemon is running: stop it first, then run init (it is started again on the vault)".into());
    }
    if remove_plain && !import {
        return Err("--remove-plain removes the plain copies after --import; give both".into());
    }
    // The current (plain) store, its key, and config.json's state under that key.
    let old = crate::selection::select_plain(paths)?.backend;
    let old_key = audit::chain::load(old.as_ref())?;
    let file = crate::policy::load(&paths.config)?;
    if let Some(k) = &old_key
        && let crate::policy::seal::Integrity::Edited(d) =
            crate::policy::sealed::integrity(paths, &KeySource::Fixed(k.clone()), &file)?
    {
        return Err(format!(
            "config.json was edited outside keychain-auth ({}); review it with `keychain-auth policy accept` before init",
            d.summary()
        )
        .into());
    }
    let (import, remove_plain) = offer_import(old.as_ref(), import, remove_plain)?;
    let p = passphrase(fd, "init", true)?;
    let cost = cost()?;
    crate::outln!("creating the vault (the key derivation is calibrated to about a second)…");
    store.create(p.as_bytes(), cost)?;
    let vault: Arc<dyn Backend> = store.clone();
    let moved = if import {
        copy_all(old.as_ref(), vault.as_ref(), remove_plain)?
    } else {
        0
    };
    let keys = KeySource::Store(vault.clone());
    // The old chain is closed and moved aside; the new one starts under the vault's key.
    let aside = retire_old_chain(paths, old_key)?;
    if paths.config.exists() {
        crate::policy::sealed::accept(paths, &keys, |_| true)?;
    }
    let mut rec = Record::new("vault", "cli");
    rec.action = Some("init".into());
    rec.status = Some("success".into());
    rec.message = Some(format!(
        "vault created at {}; {moved} item(s) imported from the {}{}",
        paths.vault.display(),
        old.describe(),
        if remove_plain {
            " and removed there"
        } else {
            ""
        }
    ));
    crate::audit_once::append_with(paths, keys, &rec)?;
    crate::outln!("vault created: {}", paths.vault.display());
    if import {
        crate::outln!(
            "imported {moved} item(s) from the {}{}",
            old.describe(),
            if remove_plain {
                " and removed them there"
            } else {
                " (the plain copies are still there: `keychain-auth init --import --remove-plain` removes them, or delete them yourself)"
            }
        );
    }
    if let Some(dir) = aside {
        crate::outln!(
            "the audit log written under the plain store's key was moved to {}",
            dir.display()
        );
    }
    crate::outln!("start the daemon and unlock it: keychain-auth start, then keychain-auth unlock");
    Ok(())
}

/// The dashboard's first run on a fresh home (nothing stored, no config.json, no audit log):
/// creates the vault with `passphrase` (typed twice in the dashboard) and starts the audit chain
/// under its key. The vault is then held unlocked in this process.
pub(crate) fn create_fresh(paths: &Paths, passphrase: &[u8]) -> Result<(), Failure> {
    let store = VaultStore::shared(&paths.vault);
    if store.file().exists() {
        return Err(format!("a vault already exists at {}", paths.vault.display()).into());
    }
    if passphrase.is_empty() {
        return Err("an empty passphrase is refused".into());
    }
    store.create(passphrase, cost()?)?;
    let vault: Arc<dyn Backend> = store.clone();
    let mut rec = Record::new("vault", "dashboard");
    rec.action = Some("init".into());
    rec.status = Some("success".into());
    rec.message = Some(format!(
        "vault created at {} by the dashboard's first run",
        paths.vault.display()
    ));
    crate::audit_once::append_with(paths, KeySource::Store(vault), &rec)?;
    Ok(())
}

/// At a terminal, without `--import`, offers to import what the current store holds and then to
/// remove the plain copies; elsewhere the flags decide.
fn offer_import(
    old: &dyn Backend,
    import: bool,
    remove_plain: bool,
) -> Result<(bool, bool), Failure> {
    use std::io::IsTerminal;
    if import || !std::io::stdin().is_terminal() {
        return Ok((import, remove_plain));
    }
    let n: usize = old
        .services()
        .unwrap_or_default()
        .iter()
        .filter(|s| !crate::keys::is_reserved_service(s))
        .filter_map(|s| old.list(s, "", &Default::default()).ok())
        .map(|v| v.len())
        .sum();
    if n == 0 {
        return Ok((false, false));
    }
    let yes = |a: &str| matches!(a.trim(), "y" | "Y" | "yes" | "Yes" | "YES");
    let import = yes(&ask_visible(&format!(
        "Import the {n} secret(s) the {} holds into the vault? [y/N] ",
        old.describe()
    ))?);
    let remove = import
        && yes(&ask_visible(
            "Then remove them from there (same-user code could still read those copies)? [y/N] ",
        )?);
    Ok((import, remove))
}

/// Copies every item of `from` (but keychain-auth's own) into `to`; removes them from `from`
/// when `remove`. Returns how many.
fn copy_all(from: &dyn Backend, to: &dyn Backend, remove: bool) -> Result<usize, Failure> {
    let mut n = 0;
    for service in from.services()? {
        if crate::keys::is_reserved_service(&service) {
            continue;
        }
        let entries = from.list(&service, "", &Default::default())?;
        let mut changes = Vec::with_capacity(entries.len());
        for e in &entries {
            if let Some(item) = from.get(&service, &e.target)? {
                changes.push(Change::Set {
                    service: service.clone(),
                    target: e.target.clone(),
                    item,
                });
            }
        }
        to.apply(&changes)?;
        n += changes.len();
        if remove {
            let gone: Vec<Change> = entries
                .iter()
                .map(|e| Change::Delete {
                    service: service.clone(),
                    target: e.target.clone(),
                })
                .collect();
            from.apply(&gone)?;
        }
    }
    Ok(n)
}

/// Closes the audit chain kept under the plain store's key (a last record says why) and moves
/// the log, its rotated files and its state into `audit-before-vault/` beside it.
fn retire_old_chain(
    paths: &Paths,
    old_key: Option<crate::keys::Key>,
) -> Result<Option<std::path::PathBuf>, Failure> {
    let (mut files, _) = crate::audit::verify::log_files(&paths.audit);
    if files.is_empty() {
        return Ok(None);
    }
    if let Some(k) = old_key {
        let mut rec = Record::new("vault", "cli");
        rec.action = Some("init".into());
        rec.message = Some(
            "a vault was created: this chain ends here; the log continues under the vault's key"
                .into(),
        );
        crate::audit_once::append_with(paths, KeySource::Fixed(k), &rec)?;
    }
    let dir = paths.audit.with_file_name("audit-before-vault");
    crate::fsutil::ensure_private_dir(&dir)?;
    files.push(crate::audit::state_path(&paths.audit));
    for f in files {
        if let Some(name) = f.file_name()
            && f.exists()
        {
            std::fs::rename(&f, dir.join(name))?;
        }
    }
    Ok(Some(dir))
}

fn admin_line(
    paths: &Paths,
    line: &[u8],
) -> Result<crate::server::vault_admin::VaultReply, Failure> {
    let mut c =
        crate::client::Client::connect(&paths.socket, Duration::from_secs(30)).map_err(|e| {
            format!(
                "no keychain-auth daemon answers on {} ({e}); start it first",
                paths.socket.display()
            )
        })?;
    let answer = c.round_trip(line)?;
    Ok(serde_json::from_str(&answer).map_err(|_| {
        format!(
            "the daemon answered something else: {}",
            crate::display::clean(&answer)
        )
    })?)
}

/// `keychain-auth unlock`: gives the passphrase to the running daemon.
pub(crate) fn unlock(paths: &Paths, fd: Option<i32>, accept_rollback: bool) -> Result<(), Failure> {
    if !paths.vault.exists() {
        return Err(format!(
            "no vault at {} (create one with: keychain-auth init)",
            paths.vault.display()
        )
        .into());
    }
    let p = passphrase(fd, "unlock", false)?;
    let mut request = serde_json::json!({"type":"VAULT","op":"unlock","passphrase":p.as_str()});
    if accept_rollback {
        request["accept_rollback"] = true.into();
    }
    let line = Zeroizing::new(serde_json::to_vec(&request)?);
    drop(request);
    let mut line = line.to_vec();
    line.push(b'\n');
    let r = admin_line(paths, &line);
    zeroize::Zeroize::zeroize(&mut line);
    let r = r?;
    if r.status != "success" {
        return Err(r.message.into());
    }
    crate::outln!("{}", crate::display::clean(&r.message));
    Ok(())
}

/// `keychain-auth lock`: the running daemon forgets the keys (needs no passphrase).
pub(crate) fn lock(paths: &Paths) -> Result<(), Failure> {
    let r = admin_line(paths, b"{\"type\":\"VAULT\",\"op\":\"lock\"}\n")?;
    if r.status != "success" {
        return Err(r.message.into());
    }
    crate::outln!("{}", crate::display::clean(&r.message));
    Ok(())
}
