//! The one decision path as a typed call, for front ends other than the socket (SPEC §19).
//!
//! The socket session parses a line and writes the answer back; a front end such as the
//! Secret Service on D-Bus ([`crate::dbus`]) has no line and no stream. [`request`] is the
//! same path for it: identify (done by the front end, from the kernel or the bus) → policy →
//! hold and ask an approver → carry out → audit, returning the typed [`Response`]. Its audit
//! records name the front end (`"front":"dbus"`). The socket's own hold loop is [`hold`] too,
//! with its stream's hang-up as the caller going away.

use super::Broker;
use super::approval::NotHeld;
use super::ask;
use super::handler::{self, Ask, Verdict};
use crate::identity::Peer;
use crate::protocol::{Reason, Request, Response, Status};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Decides `req` from `peer`, which came through `front` (`"dbus"`): the same identity checks,
/// policy, pending queue, live prompt and audit as a socket request. A request that an
/// approver may allow is held for at most the prompt timeout, and at most `cap` when given (a
/// D-Bus client gives up on a call after about 25 s). `gone` completes when the caller went
/// away: the held request is then withdrawn.
pub async fn request(
    broker: &Arc<Broker>,
    peer: Arc<Peer>,
    req: Request,
    front: &'static str,
    gone: impl Future<Output = ()>,
    cap: Option<Duration>,
) -> Response {
    let (b, p) = (broker.clone(), peer.clone());
    let verdict = tokio::task::spawn_blocking(move || {
        b.stats
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        handler::decide_as(&b, &p, &req, None, Some(front))
    })
    .await;
    match verdict {
        Ok(Verdict::Done(resp)) => resp,
        Ok(Verdict::Ask(ask)) => {
            let id = ask.req.id.clone();
            hold(broker, peer, *ask, std::future::pending(), gone, cap)
                .await
                .unwrap_or_else(|| {
                    Response::failure(
                        id,
                        Status::Denied,
                        Reason::UnregisteredBinary,
                        "the caller went away while its request was held",
                    )
                })
        }
        Err(_) => internal_error(),
    }
}

/// Holds a request for an approver (SPEC §11) until the first answer, the prompt timeout (or
/// `cap`, when shorter), the broker stopping (`stopping`) or the caller going away (`gone`);
/// `None` when the caller is gone (the withdrawal is audited).
pub async fn hold(
    broker: &Arc<Broker>,
    peer: Arc<Peer>,
    ask: Ask,
    stopping: impl Future<Output = ()>,
    gone: impl Future<Output = ()>,
    cap: Option<Duration>,
) -> Option<Response> {
    let timeout = cap.map_or_else(
        || broker.prompt_timeout(),
        |c| c.min(broker.prompt_timeout()),
    );
    let (key, prompt) = ask::prompt_for(&peer, &ask, timeout);
    let settle = |ask, id: String, answer, why: &'static str| {
        let (b, peer) = (broker.clone(), peer.clone());
        async move {
            tokio::task::spawn_blocking(move || ask::settle(&b, &peer, ask, &id, answer, why))
                .await
                .unwrap_or_else(|_| internal_error())
        }
    };
    let mut wait = match broker.approvals.ask(key, prompt) {
        Ok(wait) => wait,
        Err(NotHeld::NoApprover) => {
            return Some(settle(ask, String::new(), None, "no_answer").await);
        }
        Err(NotHeld::TooMany(why)) => {
            let b = broker.clone();
            return Some(
                tokio::task::spawn_blocking(move || ask::not_held(&b, ask, &why))
                    .await
                    .unwrap_or_else(|_| internal_error()),
            );
        }
    };
    if wait.opened {
        ask::audit_prompt(broker, &ask, &wait.id);
    }
    let id = wait.id.clone();
    let (answer, why) = tokio::select! {
        a = &mut wait.answer => (a.ok(), "no_answer"),
        () = expired(broker, &id, cap) => {
            broker.approvals.leave(&id, wait.ticket, "timeout");
            // An answer that raced the deadline still counts.
            (wait.answer.try_recv().ok(), "timeout")
        }
        () = stopping => {
            broker.approvals.leave(&id, wait.ticket, "stopping");
            (wait.answer.try_recv().ok(), "stopping")
        }
        () = gone => {
            broker.approvals.leave(&id, wait.ticket, "withdrawn");
            let mut rec = ask.rec.clone().with_prompt(&id).with_decision("withdrawn", None);
            rec.set_outcome(
                Status::Denied,
                None,
                Some("the caller hung up while its request was held".into()),
            );
            let _ = broker.audit.append(&rec);
            return None;
        }
    };
    Some(settle(ask, id, answer, why).await)
}

/// Resolves when prompt `id`'s deadline has passed — it moves while an approver edits its
/// answer ([`super::approval::Approvals::editing`]) — or `cap` after now when given, or at once
/// when the prompt is gone (its answer, if any, is then waiting).
pub(super) async fn expired(broker: &Broker, id: &str, cap: Option<Duration>) {
    let hard = cap.map(|c| tokio::time::Instant::now() + c);
    loop {
        let Some(deadline) = broker.approvals.deadline_ms(id) else {
            return;
        };
        let left = deadline.saturating_sub(chrono::Utc::now().timestamp_millis());
        let Ok(left) = u64::try_from(left) else {
            return;
        };
        if left == 0 {
            return;
        }
        let wake = tokio::time::Instant::now() + Duration::from_millis(left);
        let wake = hard.map_or(wake, |h| wake.min(h));
        tokio::time::sleep_until(wake).await;
        if hard.is_some_and(|h| tokio::time::Instant::now() >= h) {
            return;
        }
    }
}

fn internal_error() -> Response {
    Response::failure(
        None,
        Status::Error,
        Reason::InternalError,
        "the request could not be processed",
    )
}
