//! Live approval, the daemon's half (SPEC §11): what an approver is shown for a held request,
//! and what each answer does. Allow once serves this request only; allow for a time grants
//! exactly what was asked until a deadline; always makes a persistent grant (of what was asked,
//! or what the approver edited it to); deny refuses; deny-and-forget also dismisses the caller
//! from the pending queue. No answer — a timeout, the caller hanging up, the last approver
//! detaching — is the refusal of today. Every prompt and answer is audited with its source.

use super::Broker;
use super::approval::{Answer, Decision, Prompt};
use super::handler::{self, Ask, Verdict};
use crate::admin::{self, Grants, Source};
use crate::audit::Record;
use crate::identity::{Exe, Peer, Program};
use crate::policy::GrantTerms;
use crate::protocol::{Action, MatchMode, Request, Response};
use std::time::Duration;

/// The prompt for a held request and the key that coalesces its repeats (same caller, action
/// and service).
pub fn prompt_for(peer: &Peer, ask: &Ask, timeout: Duration) -> (String, Prompt) {
    let req = &ask.req;
    // Caller first, then who launched it, as in audit records and pending entries.
    let chain = peer.caller_chain();
    let (path, hash, argv, script) = match &peer.exe {
        Exe::Verified {
            path,
            hash,
            argv,
            program,
            ..
        } => (
            path.display().to_string(),
            hash.to_string(),
            argv.clone(),
            match program {
                Program::Script { path, hash } => {
                    Some((path.display().to_string(), hash.to_string()))
                }
                _ => None,
            },
        ),
        Exe::Unverifiable { path, .. } => (
            path.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            String::new(),
            Vec::new(),
            None,
        ),
    };
    let key = coalesce_key(ask.subject.as_str(), req, &chain);
    let deadline = chrono::Utc::now()
        + chrono::Duration::from_std(timeout).unwrap_or_else(|_| chrono::Duration::seconds(30));
    let prompt = Prompt {
        id: String::new(),
        path,
        hash,
        script: script.as_ref().map(|s| s.0.clone()),
        script_hash: script.map(|s| s.1),
        pid: peer.pid,
        argv,
        chain,
        registered: ask.registered,
        action: req.action.as_str().into(),
        service: req.service.clone(),
        mode: req.mode.as_str().into(),
        targets: req
            .targets
            .iter()
            .take(super::approval::MAX_TARGETS_SHOWN)
            .cloned()
            .collect(),
        reason: ask
            .refusal
            .reason
            .unwrap_or(crate::protocol::Reason::InternalError),
        message: ask.refusal.message.clone().unwrap_or_default(),
        deadline_ms: deadline.timestamp_millis(),
        waiting: 1,
    };
    (key, prompt)
}

/// Requests that join one prompt: the same caller (and launch chain, by hashes) asking the same
/// action on the same service with the same match mode; their targets may differ (one tool
/// resolving a profile reads a key pair, a token and an expiry: one prompt lists them all, and
/// one answer decides every request waiting on it). The match mode stays in the key so that a
/// prefix read of a whole service never rides on the approval of one exact key, and the action
/// so that a write is never carried out on the approval of a read.
fn coalesce_key(
    subject: &str,
    req: &crate::protocol::Request,
    chain: &[crate::identity::Link],
) -> String {
    let launchers: Vec<String> = chain
        .iter()
        .map(|l| {
            l.hash
                .as_ref()
                .map_or_else(|| "?".into(), ToString::to_string)
        })
        .collect();
    serde_json::json!([
        subject,
        req.action.as_str(),
        req.service,
        req.mode.as_str(),
        launchers
    ])
    .to_string()
}

/// Exactly the permissions `req` needs (what "allow for a time" and "always" grant by default).
pub fn needed(req: &Request) -> Grants {
    let search = req.action == Action::Search || req.mode == MatchMode::Prefix;
    let mut g = Grants {
        search,
        ..Grants::default()
    };
    match req.action {
        Action::Read | Action::Search => g.read.push(req.service.clone()),
        Action::Write | Action::Delete => g.write.push(req.service.clone()),
    }
    g
}

/// Audits that a prompt was opened for `ask`.
pub fn audit_prompt(broker: &Broker, ask: &Ask, prompt_id: &str) {
    let rec =
        ask.rec
            .clone()
            .into_prompt(prompt_id, ask.refusal.reason, ask.refusal.message.clone());
    let _ = broker.audit.append(&rec);
}

/// A held request nobody allowed (`why`: timeout, withdrawn, stopping, no answer): its
/// refusal, with the reason appended, audited.
fn unanswered(broker: &Broker, rec: Record, mut refusal: Response, why: &str) -> Response {
    let rec = rec.with_decision(why, None);
    let note = match why {
        "timeout" => "no approver answered in time",
        "withdrawn" => "the caller hung up",
        "stopping" => "the broker is stopping",
        _ => "no approver answered",
    };
    refusal.message = Some(format!("{} ({note})", refusal.message.unwrap_or_default()));
    handler::refuse(broker, rec, refusal)
}

/// A request that could not be held (too many prompts waiting, `why`): its refusal, with the
/// reason appended, audited.
pub fn not_held(broker: &Broker, ask: Ask, why: &str) -> Response {
    let rec = ask.rec.with_decision("not_held", None);
    let mut refusal = ask.refusal;
    refusal.message = Some(format!(
        "{} (not held for an approver: {why})",
        refusal.message.unwrap_or_default()
    ));
    handler::refuse(broker, rec, refusal)
}

/// Decides a held request: `answer` is the approver's, or `None` with `why` (`timeout`,
/// `withdrawn`, `no_answer`). Returns the typed response (the socket sends it as a line).
pub fn settle(
    broker: &Broker,
    peer: &Peer,
    ask: Ask,
    prompt_id: &str,
    answer: Option<Answer>,
    why: &str,
) -> Response {
    let Ask {
        req,
        refusal,
        rec,
        registered,
        confirm,
        subject,
    } = ask;
    let front = rec.front.clone();
    let rec = rec.with_prompt(prompt_id);
    let Some(answer) = answer else {
        return unanswered(broker, rec, refusal, why);
    };
    let rec = rec.with_decision(answer.decision.as_str(), Some(answer.by.clone()));
    let refused = |rec: Record, refusal: Response, what: &str| {
        let mut r = refusal;
        r.message = Some(format!("{} {what} this request", answer.by));
        handler::refuse(broker, rec, r)
    };
    let change = match (&answer.decision, confirm) {
        (Decision::Deny, _) => return refused(rec, refusal, "denied"),
        (Decision::Forget, _) => {
            if !registered {
                let _ = admin::dismiss(&broker.world(), Source::Dashboard, subject.as_str());
            }
            return refused(rec, refusal, "denied (and dismissed the caller)");
        }
        // Confirmation of an allowed use: any "allow" serves this request as it stands.
        (_, true) | (Decision::Once, false) => {
            return handler::carry_out(broker, rec, &req);
        }
        (Decision::For(d), false) => Grants {
            terms: GrantTerms {
                expires_at: Some(
                    chrono::Utc::now()
                        + chrono::Duration::from_std(*d)
                            .unwrap_or_else(|_| chrono::Duration::hours(1)),
                ),
                ..GrantTerms::default()
            },
            ..needed(&req)
        },
        (Decision::Always(g), false) if g.is_empty() => needed(&req),
        (Decision::Always(g), false) => g.clone(),
    };
    let applied = if registered {
        admin::grant(
            &broker.world(),
            Source::Dashboard,
            subject.as_str(),
            &change,
        )
        .map(|_| ())
    } else {
        match admin::approve(
            &broker.world(),
            Source::Dashboard,
            subject.as_str(),
            &change,
        ) {
            // Another request waiting on the same prompt was settled first and approved the
            // caller: this one adds its grant (the same change, or its own targets' service).
            Err(admin::AdminError::AlreadyApproved { .. }) => admin::grant(
                &broker.world(),
                Source::Dashboard,
                subject.as_str(),
                &change,
            )
            .map(|_| ()),
            other => other.map(|_| ()),
        }
    };
    if let Err(e) = applied {
        // The approver is told too: its answer did not do what it meant.
        broker.approvals.not_saved(prompt_id, e.to_string());
        let mut r = refusal;
        r.message = Some(format!(
            "{} allowed this request, but the grant could not be saved: {e}",
            answer.by
        ));
        return handler::refuse(broker, rec, r);
    }
    // Decided again under the new policy, without holding it a second time.
    let again = Request {
        prompt: false,
        ..req
    };
    match handler::decide_as(broker, peer, &again, None, front.as_deref()) {
        Verdict::Done(resp) => resp,
        Verdict::Ask(a) => handler::refuse(broker, a.rec, a.refusal),
    }
}
