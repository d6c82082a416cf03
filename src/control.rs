//! Admin changes where they belong (SPEC §19): while a broker runs (the daemon, or a dashboard's
//! embedded broker) it holds the policy, the pending queue and the audit log, so the CLI and a
//! connected dashboard send it each change as an `ADMIN` request on its socket; with no broker
//! running, the change is carried out here, on the files, under their locks.
//!
//! Where the kernel lets it see the executable serving the socket (root, or a server that is
//! not protected from its own user), the CLI sends a change only to a broker that runs this
//! same keychain-auth executable. A user's CLI cannot see a running daemon's executable (it is
//! not dumpable), and cannot tell it from another program of the same user that took the socket
//! and hid itself the same way.
//!
//! [`running`] asks the socket who serves it (doctor, migrate and imports refuse to run under a
//! live daemon).

use crate::admin::{AdminError, AdminReply, Done, Op, Source, World};
use crate::client::{Client, ClientError};
use crate::paths::Paths;
use std::io;
use std::path::Path;
use std::time::Duration;

/// How long a change may take in the daemon (register and upgrade hash binaries).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Refused or failed where it was carried out here.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The running broker refused it (its own one-line reason).
    #[error("{0}")]
    Refused(String),
    /// The broker on the socket cannot be asked.
    #[error("{0}")]
    Broker(String),
}

/// Carries out `op` from `source`: by the broker running on `paths.socket` when one answers
/// there (with `passphrase`, the vault's, when the command was given it: the broker checks it
/// again before a widening change), else here on the files.
pub fn carry(
    paths: &Paths,
    source: Source,
    op: Op,
    passphrase: Option<&str>,
) -> Result<Done, ControlError> {
    let op = absolute(op)?;
    let mut client = match Client::connect(&paths.socket, ADMIN_TIMEOUT) {
        Ok(c) => c,
        Err(ClientError::Connect { source: e, .. })
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(op.run(&World::Files(paths), source)?);
        }
        Err(e) => return Err(ControlError::Broker(e.to_string())),
    };
    check_same_program(&client, &paths.socket)?;
    let mut line = serde_json::json!({
        "type": "ADMIN",
        "source": source,
        "admin": op,
    });
    if let Some(p) = passphrase {
        line["passphrase"] = p.into();
    }
    let line = zeroize::Zeroizing::new(line.to_string());
    let text = client
        .round_trip(line.as_bytes())
        .map_err(|e| ControlError::Broker(format!("the running broker did not answer: {e}")))?;
    match serde_json::from_str::<AdminReply>(&text) {
        Ok(AdminReply {
            ok: true,
            done: Some(done),
            ..
        }) => Ok(done),
        Ok(AdminReply { error, .. }) => {
            Err(ControlError::Refused(error.unwrap_or_else(|| {
                "the running broker made no change".into()
            })))
        }
        // A refusal (`only keychain-auth itself …`) or an older broker's `malformed_request`.
        Err(_) => Err(ControlError::Refused(refusal_text(&text))),
    }
}

/// Appends `record` (made by this command) to the audit log: by the running broker, its only
/// writer, when one runs; else here.
pub fn record(paths: &Paths, record: &crate::audit::Record) -> Result<(), ControlError> {
    carry(
        paths,
        Source::Cli,
        Op::Record {
            record: Box::new(record.clone()),
        },
        None,
    )
    .map(|_| ())
}

/// Paths in `op` made absolute here, where the command was typed.
fn absolute(op: Op) -> Result<Op, ControlError> {
    let abs = |p: &Path| {
        std::path::absolute(p).map_err(|e| {
            ControlError::Broker(format!("cannot resolve {}: {e}", crate::display::path(p)))
        })
    };
    Ok(match op {
        Op::Register { path, grants } => Op::Register {
            path: abs(&path)?,
            grants,
        },
        Op::Upgrade { path } => Op::Upgrade { path: abs(&path)? },
        other => other,
    })
}

/// The broker serving `socket` runs this very executable (same file, or same SHA-256);
/// otherwise no change is sent to it.
fn check_same_program(client: &Client, socket: &Path) -> Result<(), ControlError> {
    let pid = client
        .server_pid()
        .map_err(|e| ControlError::Broker(format!("cannot tell who serves the socket: {e}")))?;
    let theirs = format!("/proc/{pid}/exe");
    // The daemon is not dumpable, so for anyone but root the kernel hides its executable: a
    // user's CLI cannot tell it from another program that made itself not dumpable either, and
    // goes on (README says so). What it can see, it checks.
    match std::fs::symlink_metadata(&theirs) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(()),
        Err(e) => {
            return Err(ControlError::Broker(format!(
                "cannot tell who serves {} (pid {pid}): {e}",
                crate::display::path(socket)
            )));
        }
    }
    if std::fs::read_link(&theirs).is_err() {
        return Ok(());
    }
    let same_file = |a: &str, b: &str| {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    };
    if same_file(&theirs, "/proc/self/exe") {
        return Ok(());
    }
    let hash = |p: &str| crate::identity::hash_path(Path::new(p)).ok();
    match (hash(&theirs), hash("/proc/self/exe")) {
        (Some(a), Some(b)) if a == b => Ok(()),
        _ => Err(ControlError::Broker(format!(
            "the process serving {} (pid {pid}, {}) is not this keychain-auth ({}): no change was sent to it; stop it, or run the keychain-auth it runs",
            crate::display::path(socket),
            std::fs::read_link(&theirs).map_or_else(
                |_| "unknown executable".into(),
                |p| crate::display::path(&p)
            ),
            std::fs::read_link("/proc/self/exe")
                .map_or_else(|_| "unknown".into(), |p| crate::display::path(&p)),
        ))),
    }
}

/// The message of a response line that is not an admin reply.
fn refusal_text(line: &str) -> String {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| {
            format!(
                "the running broker answered: {}",
                crate::display::bounded(line, 200)
            )
        })
}

/// How long doctor and migrate wait for a daemon's STATUS (a daemon hashes a new caller's
/// executable once before answering, which takes a moment for a large binary).
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether a daemon serves the socket.
pub(crate) enum Running {
    /// It answered STATUS.
    Yes(crate::protocol::StatusInfo),
    /// Something accepts connections there but did not answer STATUS.
    Silent(String),
    /// Nothing listens there.
    No,
}

/// Asks the socket's server for its STATUS (see [`Running`]).
pub(crate) fn running(socket: &Path) -> Running {
    match crate::client::status(socket, STATUS_TIMEOUT) {
        Ok(s) => Running::Yes(s),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            Running::No
        }
        Err(e) => Running::Silent(e.to_string()),
    }
}

/// Migrating under a running daemon would leave it serving the old store: refused.
pub(crate) fn no_daemon_serves(paths: &Paths) -> Result<(), String> {
    match running(&paths.socket) {
        Running::Yes(s) => Err(format!(
            "a keychain-auth daemon (pid {}) is running on {} and serving the {} store: stop it, migrate, then start it again so it serves the new store",
            s.pid,
            paths.socket.display(),
            s.backend
        )),
        Running::Silent(e) => Err(format!(
            "something listens on {} but did not answer STATUS ({e}): stop the daemon, then migrate",
            paths.socket.display()
        )),
        Running::No => Ok(()),
    }
}
