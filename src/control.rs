//! Admin changes where they belong (SPEC §19): while a broker runs (the daemon, or a dashboard's
//! embedded broker) it holds the policy, the pending queue and the audit log, so the CLI and a
//! connected dashboard send it each change as an `ADMIN` request on its socket; with no broker
//! running, the change is carried out here, on the files, under their locks.
//!
//! The CLI sends a change only to a broker that runs this same keychain-auth executable: a
//! process that bound the socket after killing the daemon is told nothing.

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
/// there, else here on the files.
pub fn carry(paths: &Paths, source: Source, op: Op) -> Result<Done, ControlError> {
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
    let line = serde_json::json!({
        "type": "ADMIN",
        "source": source,
        "admin": op,
    });
    let text = client
        .round_trip(line.to_string().as_bytes())
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
