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
    let (path, hash, argv, script, chain) = match &peer.exe {
        Exe::Verified {
            path,
            hash,
            argv,
            program,
            chain,
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
            chain.clone(),
        ),
        Exe::Unverifiable { path, .. } => (
            path.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            String::new(),
            Vec::new(),
            None,
            Vec::new(),
        ),
    };
    let key = format!("{}|{}|{}", ask.subject, req.action, req.service);
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
        targets: req.targets.iter().take(100).cloned().collect(),
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
    let mut rec = ask.rec.clone();
    rec.event = "prompt".into();
    rec.prompt = Some(prompt_id.into());
    rec.reason = ask.refusal.reason.map(|r| r.as_str().into());
    rec.message = ask.refusal.message.clone();
    let _ = broker.audit.append(&rec);
}

/// A held request nobody allowed (`why`: timeout, withdrawn, stopping, no answer): its
/// refusal, with the reason appended, audited.
fn unanswered(broker: &Broker, mut rec: Record, mut refusal: Response, why: &str) -> Vec<u8> {
    rec.decision = Some(why.into());
    let note = match why {
        "timeout" => "no approver answered in time",
        "withdrawn" => "the caller hung up",
        "stopping" => "the broker is stopping",
        _ => "no approver answered",
    };
    refusal.message = Some(format!("{} ({note})", refusal.message.unwrap_or_default()));
    handler::refuse(broker, rec, refusal).to_line()
}

/// Decides a held request: `answer` is the approver's, or `None` with `why` (`timeout`,
/// `withdrawn`, `no_answer`). Returns the response line.
pub fn settle(
    broker: &Broker,
    peer: &Peer,
    ask: Ask,
    prompt_id: &str,
    answer: Option<Answer>,
    why: &str,
) -> Vec<u8> {
    let Ask {
        req,
        refusal,
        mut rec,
        registered,
        confirm,
        subject,
    } = ask;
    rec.prompt = Some(prompt_id.into());
    let Some(answer) = answer else {
        return unanswered(broker, rec, refusal, why);
    };
    rec.decision = Some(answer.decision.as_str().into());
    rec.answered_by = Some(answer.by.clone());
    let refused = |rec: Record, refusal: Response, what: &str| {
        let mut r = refusal;
        r.message = Some(format!("{} {what} this request", answer.by));
        handler::refuse(broker, rec, r).to_line()
    };
    let change = match (&answer.decision, confirm) {
        (Decision::Deny, _) => return refused(rec, refusal, "denied"),
        (Decision::Forget, _) => {
            if !registered {
                let _ = admin::dismiss(&broker.paths, Source::Dashboard, subject.as_str());
            }
            return refused(rec, refusal, "denied (and dismissed the caller)");
        }
        // Confirmation of an allowed use: any "allow" serves this request as it stands.
        (_, true) | (Decision::Once, false) => {
            return handler::carry_out(broker, rec, &req).to_line();
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
        admin::grant(&broker.paths, Source::Dashboard, subject.as_str(), &change).map(|_| ())
    } else {
        admin::approve(&broker.paths, Source::Dashboard, subject.as_str(), &change).map(|_| ())
    };
    if let Err(e) = applied {
        let mut r = refusal;
        r.message = Some(format!(
            "{} allowed this request, but the grant could not be saved: {e}",
            answer.by
        ));
        return handler::refuse(broker, rec, r).to_line();
    }
    // Decided again under the new policy, without holding it a second time.
    let again = Request {
        prompt: false,
        ..req
    };
    match handler::decide(broker, peer, &again, None) {
        Verdict::Done(resp) => resp.to_line(),
        Verdict::Ask(a) => handler::refuse(broker, a.rec, a.refusal).to_line(),
    }
}
