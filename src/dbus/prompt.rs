//! `org.freedesktop.Secret.Prompt` at `/org/freedesktop/secrets/prompt/p<N>`: an unlock that
//! waits for the person.
//!
//! While the broker's vault is locked, `Service.Unlock` answers with a prompt instead of the
//! unlocked objects. No passphrase travels over the bus: the client calls `Prompt(window_id)`
//! and the prompt waits until the person unlocks the vault — `keychain-auth unlock` or an
//! attached dashboard — then emits `Completed(false, <the unlocked object paths>)`, sent to the
//! connection that opened it only (as gnome-keyring does). `Dismiss` completes it
//! `Completed(true, [])`, and so does the bound ([`super::UNLOCK_TIMEOUT`], 5 minutes
//! unless config.json's `secret_service_unlock_timeout_s` says otherwise). A completed prompt
//! leaves the bus; a connection holds at most [`MAX_PER_CONNECTION`] prompts, and one that
//! leaves the bus takes its prompts with it. Only the connection that opened a prompt may run
//! or dismiss it.

use super::{Front, SecretError, caller};
use std::sync::Arc;
use zbus::message::Header;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, Value};

/// Where prompts are served: this, then their number.
pub const PROMPT_PREFIX: &str = "/org/freedesktop/secrets/prompt/p";
/// Most prompts one connection may hold open at once.
pub const MAX_PER_CONNECTION: usize = 8;
/// Most prompts open at once (all connections together).
pub const MAX_PROMPTS: usize = 1024;

/// One prompt.
pub struct PromptObject {
    /// The front end.
    pub front: Arc<Front>,
    /// Its number (the last part of its path).
    pub id: u64,
}

/// How a prompt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The vault was unlocked.
    Unlocked,
    /// Its connection dismissed it.
    Dismissed,
    /// Nobody unlocked the vault within the bound.
    TimedOut,
    /// Its connection left the bus (nothing to tell anyone).
    Gone,
}

/// Waits until `unlocked` turns true, `dismiss` fires (or is dropped: the prompt was
/// forgotten) or `bound` passes.
pub async fn wait(
    mut unlocked: tokio::sync::watch::Receiver<bool>,
    dismiss: tokio::sync::oneshot::Receiver<()>,
    bound: std::time::Duration,
) -> Outcome {
    tokio::select! {
        r = unlocked.wait_for(|u| *u) => if r.is_ok() { Outcome::Unlocked } else { Outcome::Gone },
        d = dismiss => if d.is_ok() { Outcome::Dismissed } else { Outcome::Gone },
        () = tokio::time::sleep(bound) => Outcome::TimedOut,
    }
}

/// Runs prompt `id` to its end and completes it.
async fn run(front: Arc<Front>, id: u64, dismiss: tokio::sync::oneshot::Receiver<()>) {
    let outcome = match crate::backend::vault::VaultStore::of(front.broker.backend.as_ref()) {
        Some(store) => wait(store.watch_unlocked(), dismiss, front.unlock_timeout()).await,
        // Not a vault: nothing to wait for.
        None => Outcome::Unlocked,
    };
    complete(&front, id, outcome).await;
}

/// While prompt `id` waits, an attached dashboard is asked to unlock the vault for its caller
/// (the same unlock prompt a socket request held for unlock gets, naming the program the bus
/// names): the passphrase typed there completes this prompt too. A refusal there, or that
/// prompt's own timeout, dismisses this one. Nothing when no dashboard is attached or the caller
/// cannot be identified (`keychain-auth unlock` still completes it).
async fn ask_attached_dashboard(
    front: Arc<Front>,
    id: u64,
    owner: String,
    done: tokio::sync::oneshot::Receiver<()>,
) {
    let broker = front.broker.clone();
    let Some(store) = crate::backend::vault::VaultStore::of(broker.backend.as_ref()) else {
        return;
    };
    if !broker.approvals.attached() {
        return;
    }
    let Ok(who) = caller::identify_name(&front, owner).await else {
        return;
    };
    // What the dashboard shows: the caller wants to search the login collection, which an
    // unlock of the whole vault opens.
    let req = crate::protocol::Request {
        id: None,
        action: crate::protocol::Action::Search,
        service: "default".into(),
        mode: crate::protocol::MatchMode::Prefix,
        targets: vec![],
        values: vec![],
        attributes: Default::default(),
        prompt: true,
    };
    let gone = async {
        let _ = done.await;
    };
    let answered = crate::server::presence::wait_for_unlock(
        &broker,
        &who.peer,
        &req,
        std::future::pending(),
        gone,
    )
    .await;
    if answered && !store.is_unlocked() {
        front.dismiss_prompt(id);
    }
}

/// Completes prompt `id`: `Completed` to its connection (unless it left), then the prompt
/// leaves the bus.
pub(super) async fn complete(front: &Arc<Front>, id: u64, outcome: Outcome) {
    let Some(open) = front.take_prompt(id) else {
        return;
    };
    let path = format!("{PROMPT_PREFIX}{id}");
    if outcome == Outcome::TimedOut {
        tracing::info!(
            "keychain-auth: a D-Bus unlock prompt of {} ended: the vault was not unlocked in time",
            open.owner
        );
    }
    if outcome != Outcome::Gone
        && let Ok(conn) = front.conn()
    {
        let paths = if outcome == Outcome::Unlocked {
            front.unlocked_paths(&open.owner, open.objects).await
        } else {
            Vec::new()
        };
        let paths: Vec<ObjectPath<'_>> = paths.iter().map(|p| p.as_ref()).collect();
        // Sent to the connection that opened the prompt only (its item paths are nobody
        // else's business), as gnome-keyring does.
        let _ = conn
            .emit_signal(
                Some(open.owner.as_str()),
                path.as_str(),
                "org.freedesktop.Secret.Prompt",
                "Completed",
                &(outcome != Outcome::Unlocked, Value::from(paths)),
            )
            .await;
    }
    if let Ok(conn) = front.conn() {
        let _ = conn
            .object_server()
            .remove::<PromptObject, _>(path.as_str())
            .await;
    }
}

impl PromptObject {
    /// The caller, when it is the connection that opened this prompt.
    fn check_owner(&self, hdr: &Header<'_>) -> Result<String, SecretError> {
        let sender = caller::sender(hdr)?;
        if self.front.prompt_owner(self.id).as_deref() == Some(sender.as_str()) {
            Ok(sender)
        } else {
            Err(SecretError::NoSuchObject(
                "no such prompt: a prompt is run or dismissed only by the connection that opened it"
                    .into(),
            ))
        }
    }
}

#[zbus::interface(name = "org.freedesktop.Secret.Prompt")]
impl PromptObject {
    /// Starts waiting for the person to unlock the vault (`window_id` is not used: no window
    /// is shown; the person unlocks with `keychain-auth unlock` or the dashboard).
    async fn prompt(
        &self,
        window_id: &str,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), SecretError> {
        let _ = window_id;
        let owner = self.check_owner(&hdr)?;
        let Some(dismiss) = self.front.start_prompt(self.id) else {
            // Already running: one wait is enough.
            return Ok(());
        };
        let (front, id) = (self.front.clone(), self.id);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(ask_attached_dashboard(front.clone(), id, owner, done_rx));
        tokio::spawn(async move {
            run(front, id, dismiss).await;
            let _ = done_tx.send(());
        });
        Ok(())
    }

    /// Gives up: `Completed(true, [])`. (`Completed(dismissed b, result v)` is emitted by
    /// [`complete`], to the prompt's connection only.)
    async fn dismiss(&self, #[zbus(header)] hdr: Header<'_>) -> Result<(), SecretError> {
        self.check_owner(&hdr)?;
        if !self.front.dismiss_prompt(self.id) {
            // Not started yet: completed here (after this reply).
            let (front, id) = (self.front.clone(), self.id);
            tokio::spawn(async move { complete(&front, id, Outcome::Dismissed).await });
        }
        Ok(())
    }
}

/// The path of prompt `id`.
pub(super) fn path_of(id: u64) -> Result<OwnedObjectPath, SecretError> {
    OwnedObjectPath::try_from(format!("{PROMPT_PREFIX}{id}"))
        .map_err(|e| SecretError::Failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_prompt_ends_on_unlock_dismissal_or_the_bound() {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let (_keep, d) = tokio::sync::oneshot::channel();
        let waiting = tokio::spawn(wait(rx.clone(), d, Duration::from_secs(30)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "still locked: still waiting");
        tx.send_replace(true);
        assert_eq!(waiting.await.unwrap(), Outcome::Unlocked);

        tx.send_replace(false);
        let (dtx, d) = tokio::sync::oneshot::channel();
        let waiting = tokio::spawn(wait(rx.clone(), d, Duration::from_secs(30)));
        dtx.send(()).unwrap();
        assert_eq!(waiting.await.unwrap(), Outcome::Dismissed);

        let (dtx, d) = tokio::sync::oneshot::channel::<()>();
        drop(dtx);
        assert_eq!(
            wait(rx.clone(), d, Duration::from_secs(30)).await,
            Outcome::Gone,
            "a forgotten prompt ends quietly"
        );

        let (_keep, d) = tokio::sync::oneshot::channel();
        let started = std::time::Instant::now();
        assert_eq!(
            wait(rx, d, Duration::from_millis(200)).await,
            Outcome::TimedOut
        );
        assert!(started.elapsed() >= Duration::from_millis(200));
    }
}
