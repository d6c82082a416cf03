//! The vault's admin requests on the socket, from `keychain-auth unlock` / `lock` / `vault
//! status`:
//!
//! ```json
//! {"type":"VAULT","op":"unlock","passphrase":"…"}
//! {"type":"VAULT","op":"unlock","passphrase":"…","accept_rollback":true}
//! {"type":"VAULT","op":"lock"}
//! {"type":"VAULT","op":"status"}
//! {"type":"VAULT","op":"failed","command":"approve"}
//! ```
//!
//! `failed` is sent by a keychain-auth command that was given a wrong passphrase for the vault it
//! opens itself (presence): the daemon audits it and answers after the same growing delay as a
//! wrong unlock (the failures in a row are counted together).
//!
//! answered with `{"type":"VAULT","status":"success|denied|error","locked":bool,"message":"…"}`
//! (and `"reason"` when not success: `wrong_passphrase`, `vault_rollback`, `vault_unusable`,
//! `no_vault`, `not_keychain_auth`, `malformed_request`). `accept_rollback` opens a vault file
//! older than the audit log records (the person restored it on purpose) and takes it past that
//! generation; without it such a file is refused `vault_rollback`. Only keychain-auth's own executable may send them (the session checks
//! the writer's hash before [`answer`] runs). Every unlock attempt and every lock is audited; a
//! wrong passphrase is answered after a delay that grows with each failure in a row, and its
//! record waits for the audit key until the vault is unlocked.

use super::Broker;
use crate::audit::Record;
use crate::backend::vault::Rollback;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use zeroize::Zeroizing;

/// What a VAULT line asks.
pub enum Op {
    /// Unlock with this passphrase.
    Unlock(Zeroizing<String>),
    /// Unlock with this passphrase, accepting a vault file older than the audit log records.
    UnlockAcceptingRollback(Zeroizing<String>),
    /// Forget the keys.
    Lock,
    /// Locked or not.
    Status,
    /// A command was given a wrong passphrase (audited, answered after the delay).
    Failed(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(rename = "type")]
    kind: String,
    op: String,
    passphrase: Option<String>,
    command: Option<String>,
    accept_rollback: Option<bool>,
}

/// The answer line.
#[derive(Debug, Serialize, Deserialize)]
pub struct VaultReply {
    /// Always `VAULT`.
    #[serde(rename = "type")]
    pub kind: String,
    /// success, denied or error.
    pub status: String,
    /// Why not success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Whether the vault is locked now.
    pub locked: bool,
    /// For a person.
    pub message: String,
}

impl VaultReply {
    fn new(status: &str, reason: Option<&str>, locked: bool, message: String) -> VaultReply {
        VaultReply {
            kind: "VAULT".into(),
            status: status.into(),
            reason: reason.map(Into::into),
            locked,
            message,
        }
    }

    /// The line to send (newline included).
    pub fn to_line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec());
        v.push(b'\n');
        v
    }
}

/// `None`: not a VAULT line (handled as any other line); else the op or why it is malformed.
pub fn parse(line: &[u8]) -> Option<Result<Op, VaultReply>> {
    // Cheap test first: every other line is left to the protocol parser untouched.
    if !line.windows(7).any(|w| w == b"\"VAULT\"") {
        return None;
    }
    let parsed: Line = serde_json::from_slice(line).ok()?;
    if parsed.kind != "VAULT" {
        return None;
    }
    let bad = |m: &str| {
        Some(Err(VaultReply::new(
            "error",
            Some("malformed_request"),
            true,
            m.into(),
        )))
    };
    if let ("failed", None) = (parsed.op.as_str(), &parsed.passphrase) {
        return Some(match parsed.command {
            Some(c) if !c.is_empty() && c.len() <= 64 && !c.chars().any(char::is_control) => {
                Ok(Op::Failed(c))
            }
            _ => Err(VaultReply::new(
                "error",
                Some("malformed_request"),
                true,
                "failed needs \"command\": a short name".into(),
            )),
        });
    }
    if parsed.command.is_some() {
        return bad("only failed carries a command");
    }
    let accept = parsed.accept_rollback == Some(true);
    if parsed.accept_rollback.is_some() && parsed.op != "unlock" {
        return bad("only unlock carries accept_rollback");
    }
    Some(Ok(match (parsed.op.as_str(), parsed.passphrase) {
        ("unlock", Some(p)) if accept => Op::UnlockAcceptingRollback(Zeroizing::new(p)),
        ("unlock", Some(p)) => Op::Unlock(Zeroizing::new(p)),
        ("unlock", None) => return bad("unlock needs \"passphrase\""),
        ("lock", None) => Op::Lock,
        ("status", None) => Op::Status,
        (_, Some(_)) => return bad("only unlock carries a passphrase"),
        _ => return bad("op is unlock, lock, status or failed"),
    }))
}

/// The refusal for a writer that is not keychain-auth itself.
pub fn not_keychain_auth() -> VaultReply {
    VaultReply::new(
        "denied",
        Some("not_keychain_auth"),
        true,
        "only keychain-auth itself may unlock or lock the vault: run `keychain-auth unlock`".into(),
    )
}

/// The record of a vault event (`"event":"vault"`) for the keychain-auth process `pid`.
pub(super) fn record(action: &str, pid: i32, status: &str, message: &str) -> Record {
    let mut r = Record::new("vault", "cli");
    r.action = Some(action.into());
    r.pid = Some(pid);
    r.status = Some(status.into());
    if message.starts_with("wrong passphrase") {
        r.reason = Some("wrong_passphrase".into());
    }
    r.message = Some(message.into());
    r
}

/// Appends `rec`, or keeps it for when the audit key can be had again (the vault is locked).
pub(super) fn audit(broker: &Broker, rec: Record) {
    if broker.audit.append(&rec).is_err() {
        crate::audit::defer_capped(broker.audit.path(), rec);
    }
}

/// Carries out `op` for the process `pid` (already checked to be keychain-auth).
pub async fn answer(broker: &Arc<Broker>, op: Op, pid: i32) -> VaultReply {
    let Some(store) = crate::backend::vault::VaultStore::of(broker.backend.as_ref()) else {
        return VaultReply::new(
            "error",
            Some("no_vault"),
            false,
            format!(
                "this broker serves the {}, not a vault (create one with: keychain-auth init)",
                broker.backend.describe()
            ),
        );
    };
    match op {
        Op::Failed(command) => {
            let attempts = store.note_failure();
            tokio::time::sleep(crate::backend::vault::failure_delay(attempts)).await;
            let msg = format!(
                "wrong passphrase for `keychain-auth {command}` (attempt {attempts} in a row)"
            );
            let mut rec = record("presence", pid, "denied", &msg);
            rec.reason = Some("wrong_passphrase".into());
            audit(broker, rec);
            VaultReply::new(
                "denied",
                Some("wrong_passphrase"),
                !store.is_unlocked(),
                msg,
            )
        }
        Op::Status => {
            let locked = !store.is_unlocked();
            VaultReply::new(
                "success",
                None,
                locked,
                if locked {
                    "the vault is locked".into()
                } else {
                    "the vault is unlocked".into()
                },
            )
        }
        Op::Lock => {
            let was = store.lock();
            broker.audit.reset_key();
            let msg = if was {
                "the vault is locked: its keys were wiped from the daemon's memory"
            } else {
                "the vault was already locked"
            };
            // The key is gone: the record waits for the next unlock.
            audit(broker, record("lock", pid, "success", msg));
            VaultReply::new("success", None, true, msg.into())
        }
        Op::Unlock(passphrase) => unlock(broker, passphrase, Rollback::Refuse, pid).await,
        Op::UnlockAcceptingRollback(passphrase) => {
            unlock(broker, passphrase, Rollback::Accept, pid).await
        }
    }
}

/// Unlocks the daemon's vault for the keychain-auth process `pid`.
async fn unlock(
    broker: &Arc<Broker>,
    passphrase: Zeroizing<String>,
    rollback: Rollback,
    pid: i32,
) -> VaultReply {
    let Some(store) = crate::backend::vault::VaultStore::of(broker.backend.as_ref()) else {
        return VaultReply::new("error", Some("no_vault"), false, "no vault".into());
    };
    if store.is_unlocked() {
        return VaultReply::new(
            "success",
            None,
            false,
            "the vault is already unlocked".into(),
        );
    }
    let b = broker.clone();
    let out = tokio::task::spawn_blocking(move || {
        let Some(store) = crate::backend::vault::VaultStore::of(b.backend.as_ref()) else {
            return Err(("vault_unusable", "the store is not a vault".to_string()));
        };
        store
            .unlock_with(
                passphrase.as_bytes(),
                rollback,
                crate::audit::generation::highest,
            )
            .map_err(|e| (e.reason(), e.to_string()))
    })
    .await
    .unwrap_or_else(|e| Err(("vault_unusable", format!("the unlock did not finish: {e}"))));
    match out {
        Ok(accepted) => {
            broker.audit.reset_key();
            let mut rec = record("unlock", pid, "success", "the vault was unlocked");
            if let Some(recorded) = accepted {
                let msg = format!(
                    "the vault was unlocked from a copy older than generation {recorded} that the audit log records, accepted with --accept-rollback; it now continues past that generation"
                );
                tracing::warn!("keychain-auth: warning: {msg}");
                rec.reason = Some("vault_rollback_accepted".into());
                rec.message = Some(msg);
            }
            audit(broker, rec);
            VaultReply::new("success", None, false, "the vault is unlocked".into())
        }
        Err((reason, why)) => {
            let mut rec = record("unlock", pid, "denied", &why);
            rec.reason = Some(reason.into());
            audit(broker, rec);
            if reason == "vault_rollback" {
                tracing::warn!("keychain-auth: warning: {why}");
            }
            VaultReply::new("denied", Some(reason), true, why)
        }
    }
}
