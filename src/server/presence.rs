//! Presence on the broker's side (SPEC §15) for approvers, and requests held for unlock (§14).
//!
//! While the broker serves a vault, an approver (a dashboard) answers nothing until the person
//! at it proved presence: the vault passphrase, sent on the subscription as
//! `{"type":"PRESENCE","passphrase":…}` (a connected dashboard) or checked in-process (an
//! embedded one), verified here — a locked vault is unlocked by it. Only then is the
//! subscription attached to the prompts. Its "once", deny and confirm answers need nothing
//! more; an answer that widens access ("for a time", "always") carries the passphrase again and
//! is checked again. Every attempt is audited (`"event":"vault"`); a wrong passphrase is
//! answered after the store's growing delay, counted with the unlock failures.
//!
//! A request that arrives while the vault is locked and an approver is attached is held for
//! unlock ([`wait_for_unlock`]): the approvers are shown a prompt naming the caller (reason
//! `vault_locked`); the person types the passphrase, the vault unlocks and the request goes on;
//! a denial, a timeout or the caller hanging up leaves it refused `vault_locked` with the fix.

use super::Broker;
use super::approval::NotHeld;
use crate::identity::Peer;
use crate::protocol::{AnswerDecision, Passphrase, Request};
use std::future::Future;
use std::sync::Arc;

/// Whether an answer widens access, and so needs the passphrase again while a vault is served.
pub fn widens(d: &AnswerDecision) -> bool {
    matches!(d, AnswerDecision::Time { .. } | AnswerDecision::Always(_))
}

/// Whether the broker serves a vault (then approvers must prove presence).
pub fn required(broker: &Broker) -> bool {
    crate::backend::vault::VaultStore::of(broker.backend.as_ref()).is_some()
}

/// Whether the vault the broker serves is locked now (`false` without a vault).
pub fn locked(broker: &Broker) -> bool {
    crate::backend::vault::VaultStore::of(broker.backend.as_ref()).is_some_and(|v| !v.is_unlocked())
}

/// Checks `passphrase` for the keychain-auth process `pid` (`what`: "a dashboard's presence",
/// "a dashboard's always answer"): a locked vault is unlocked with it, an unlocked one verifies
/// it. Blocking (the KDF takes about a second; a wrong passphrase waits longer). Audited either
/// way. `Err` is the one-line reason (`wrong passphrase (attempt N …)`). Without a vault there
/// is nothing to check.
pub fn prove(broker: &Broker, passphrase: &[u8], pid: i32, what: &str) -> Result<(), String> {
    let Some(store) = crate::backend::vault::VaultStore::of(broker.backend.as_ref()) else {
        return Ok(());
    };
    if store.is_unlocked() {
        return match store.verify(passphrase) {
            Ok(()) => {
                let msg = format!("presence proven for {what}");
                super::vault_admin::audit(
                    broker,
                    super::vault_admin::record("presence", pid, "success", &msg),
                );
                Ok(())
            }
            Err(e) => {
                let msg = format!("presence for {what}: {e}");
                let mut rec = super::vault_admin::record("presence", pid, "denied", &msg);
                rec.reason = Some("wrong_passphrase".into());
                super::vault_admin::audit(broker, rec);
                Err(e.to_string())
            }
        };
    }
    match store.unlock(passphrase, crate::audit::generation::highest) {
        Ok(()) => {
            broker.audit.reset_key();
            let msg = format!("the vault was unlocked by {what}");
            super::vault_admin::audit(
                broker,
                super::vault_admin::record("unlock", pid, "success", &msg),
            );
            Ok(())
        }
        Err(e) => {
            let msg = format!("unlock for {what}: {e}");
            let mut rec = super::vault_admin::record("unlock", pid, "denied", &msg);
            if matches!(e, crate::backend::vault::UnlockError::Wrong { .. }) {
                rec.reason = Some("wrong_passphrase".into());
            }
            super::vault_admin::audit(broker, rec);
            Err(e.to_string())
        }
    }
}

/// [`prove`] off the async workers.
pub async fn prove_async(
    broker: &Arc<Broker>,
    passphrase: Passphrase,
    pid: i32,
    what: String,
) -> Result<(), String> {
    let b = broker.clone();
    tokio::task::spawn_blocking(move || prove(&b, passphrase.as_bytes(), pid, &what))
        .await
        .unwrap_or_else(|_| Err("the passphrase check did not finish".into()))
}

/// Whether an approver's answer may decide a prompt: with a vault, only from an approver that
/// proved presence (`present`), and an answer that widens access only with the passphrase
/// again, verified. `Err` is why nothing was decided (audited when it is a refusal of presence).
pub async fn check_answer(
    broker: &Arc<Broker>,
    present: bool,
    decision: &AnswerDecision,
    passphrase: Option<Passphrase>,
    pid: i32,
) -> Result<(), String> {
    if !required(broker) {
        return Ok(());
    }
    if !present {
        let msg = "this approver has not proven presence: while the broker serves a vault, a dashboard answers only after the vault passphrase (PRESENCE) was verified; nothing was decided";
        let mut rec = super::vault_admin::record("presence", pid, "denied", msg);
        rec.reason = Some("no_presence".into());
        super::vault_admin::audit(broker, rec);
        return Err(msg.into());
    }
    if !widens(decision) {
        return Ok(());
    }
    let Some(p) = passphrase else {
        let msg = "an answer that widens access (for a time, always) needs the vault passphrase with it; nothing was decided";
        let mut rec = super::vault_admin::record("presence", pid, "denied", msg);
        rec.reason = Some("no_presence".into());
        super::vault_admin::audit(broker, rec);
        return Err(msg.into());
    };
    let what = match decision {
        AnswerDecision::Time { .. } => "a dashboard's \"for a time\" answer",
        _ => "a dashboard's \"always\" answer",
    };
    prove_async(broker, p, pid, what.into())
        .await
        .map_err(|e| format!("{e}; nothing was decided"))
}

/// Holds `req` from `peer` while the vault is locked and an approver is attached (and the
/// caller accepts waiting): every approver is shown a prompt naming the caller (reason
/// `vault_locked`) until the vault is unlocked, an approver denies it, the prompt times out,
/// the broker stops (`stopping`) or the caller goes away (`gone`). Returns `false` when the
/// caller went away (nothing is to be answered); `true` otherwise — the request is then decided
/// as usual, served when the vault is now unlocked, else refused `vault_locked` with the fix.
pub async fn wait_for_unlock(
    broker: &Arc<Broker>,
    peer: &Arc<Peer>,
    req: &Request,
    stopping: impl Future<Output = ()>,
    gone: impl Future<Output = ()>,
) -> bool {
    let Some(store) = crate::backend::vault::VaultStore::of(broker.backend.as_ref()) else {
        return true;
    };
    if store.is_unlocked() || !req.prompt || !broker.approvals.attached() {
        return true;
    }
    let Some(ask) =
        super::handler::locked_ask(peer, req, crate::backend::vault::LOCKED_FIX.to_string())
    else {
        return true;
    };
    let mut unlocked = store.watch_unlocked();
    let (key, prompt) = super::ask::prompt_for(peer, &ask, broker.prompt_timeout());
    let mut wait = match broker.approvals.ask(format!("unlock:{key}"), prompt) {
        Ok(w) => w,
        Err(NotHeld::NoApprover | NotHeld::TooMany(_)) => return true,
    };
    if wait.opened {
        super::ask::audit_prompt(broker, &ask, &wait.id);
    }
    let id = wait.id.clone();
    tokio::select! {
        // Any answer ends the hold: a denial refuses at once, anything else cannot open a
        // locked vault, so the request is decided as it stands.
        _ = &mut wait.answer => true,
        r = unlocked.wait_for(|u| *u) => {
            broker.approvals.leave(&id, wait.ticket, if r.is_ok() { "unlocked" } else { "stopping" });
            true
        }
        () = super::front::expired(broker, &id, None) => {
            broker.approvals.leave(&id, wait.ticket, "timeout");
            true
        }
        () = stopping => {
            broker.approvals.leave(&id, wait.ticket, "stopping");
            true
        }
        () = gone => {
            broker.approvals.leave(&id, wait.ticket, "withdrawn");
            false
        }
    }
}
