//! Ask, don't refuse (SPEC §11): approvers and held requests.
//!
//! An approver is a dashboard — embedded, or connected over the socket with `SUBSCRIBE` — that
//! receives [`ApproverEvent`]s. A request that would be refused as `unregistered_binary`,
//! `service_not_allowed` or `action_not_in_policy`, or that uses a grant marked `confirm`, is
//! held while an approver is attached: [`Approvals::ask`] queues a prompt (requests of the same
//! caller asking the same action on the same service join the prompt already shown, which then
//! lists all their targets) and the caller's session waits
//! for the first [`Answer`], a timeout, or its own disconnection. The first answer wins; every
//! approver is told the prompt is resolved.

use crate::admin::Grants;
use crate::identity::Link;
use crate::policy::GrantTerms;
use crate::protocol::{AlwaysAnswer, AnswerDecision, Reason};
use serde::Serialize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a held request waits for an answer unless config.json says otherwise.
pub const DEFAULT_PROMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Most events queued for one approver. An approver that falls this far behind (stopped, or
/// not reading) is dropped: its queue is closed, and it is told when it reads again
/// ([`Events`] ends).
pub const APPROVER_QUEUE: usize = 256;

/// Most prompts held at once for one caller (its executable or script hash): beyond, a request
/// asking something new is refused at once instead of held.
pub const MAX_HELD_PER_CALLER: usize = 4;

/// Most prompts held at once in all. When full, a prompt from a launcher that has fewer held
/// prompts than the busiest one takes the place of that launcher's oldest prompt (so a flood
/// from one launcher cannot keep another caller from being shown); one from the busiest
/// launcher is refused at once.
pub const MAX_HELD: usize = 32;

/// How long past its own deadline a prompt may be kept open while an approver edits its answer
/// ([`Approvals::editing`]): the countdown pauses, but not forever.
pub const EDIT_HOLD: Duration = Duration::from_secs(300);

/// Most targets a prompt lists (of every request waiting on it).
pub const MAX_TARGETS_SHOWN: usize = 100;

/// What an approver receives: [`ApproverEvent`]s, ending (`None`) when it is detached or was
/// dropped for falling [`APPROVER_QUEUE`] events behind.
pub type Events = mpsc::Receiver<ApproverEvent>;

/// What an approver is shown (sent as a `PROMPT` line; the dashboard reads it back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Prompt {
    /// The prompt's id, quoted in answers.
    pub id: String,
    /// The caller's executable path.
    pub path: String,
    /// Its hash.
    pub hash: String,
    /// For a script: its path (the identity is the script).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    /// The script's hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script_hash: Option<String>,
    /// The caller's pid.
    pub pid: i32,
    /// Its command line.
    pub argv: Vec<String>,
    /// The caller chain: the caller itself first, then who launched it (parent first), as in
    /// audit records and pending entries.
    pub chain: Vec<Link>,
    /// Whether the caller is approved at all.
    pub registered: bool,
    /// What it asks: `read`, `write`, `delete`, `search`.
    pub action: String,
    /// In which service.
    pub service: String,
    /// `exact` or `prefix`.
    #[serde(rename = "match")]
    pub mode: String,
    /// The targets of every request waiting on it (first [`MAX_TARGETS_SHOWN`]).
    pub targets: Vec<String>,
    /// Why it would be refused without an answer.
    pub reason: Reason,
    /// The refusal's message.
    pub message: String,
    /// When the prompt times out (Unix milliseconds).
    pub deadline_ms: i64,
    /// Requests waiting on this prompt (repeats coalesce).
    pub waiting: usize,
}

/// What an approver decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Serve this request (and the repeats waiting with it) only.
    Once,
    /// Grant what was asked for this long.
    For(Duration),
    /// A persistent grant of exactly these permissions (what was asked, possibly edited).
    Always(Grants),
    /// Refuse this request.
    Deny,
    /// Refuse and dismiss the caller from the pending queue.
    Forget,
}

impl Decision {
    /// The name used in answers and the audit log.
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Once => "once",
            Decision::For(_) => "time",
            Decision::Always(_) => "always",
            Decision::Deny => "deny",
            Decision::Forget => "forget",
        }
    }
}

impl Decision {
    /// The decision a connected approver's `ANSWER` line carries (the daemon's side of
    /// [`crate::protocol::AnswerLine`]); a time grant is bounded to a year. `None` for
    /// `editing`, which decides nothing ([`Approvals::editing`]).
    pub fn from_answer(d: AnswerDecision) -> Option<Decision> {
        Some(match d {
            AnswerDecision::Once => Decision::Once,
            AnswerDecision::Time { for_s } => {
                Decision::For(Duration::from_secs(for_s.clamp(1, 366 * 86_400)))
            }
            AnswerDecision::Always(a) => Decision::Always(Grants {
                read: a.read,
                write: a.write,
                search: a.search,
                via: a.via,
                terms: GrantTerms {
                    expires_at: a
                        .expires_at_ms
                        .and_then(chrono::DateTime::from_timestamp_millis),
                    uses_left: a.uses_left,
                    confirm: a.confirm,
                },
                ..Grants::default()
            }),
            AnswerDecision::Deny => Decision::Deny,
            AnswerDecision::Forget => Decision::Forget,
            AnswerDecision::Editing => return None,
        })
    }

    /// What a connected approver sends for this decision (the dashboard's side).
    pub fn to_answer(&self) -> AnswerDecision {
        match self {
            Decision::Once => AnswerDecision::Once,
            Decision::For(d) => AnswerDecision::Time {
                for_s: d.as_secs().max(1),
            },
            Decision::Always(g) => AnswerDecision::Always(AlwaysAnswer {
                read: g.read.clone(),
                write: g.write.clone(),
                search: g.search,
                via: g.via.clone(),
                expires_at_ms: g.terms.expires_at.map(|t| t.timestamp_millis()),
                uses_left: g.terms.uses_left,
                confirm: g.terms.confirm,
            }),
            Decision::Deny => AnswerDecision::Deny,
            Decision::Forget => AnswerDecision::Forget,
        }
    }
}

/// An answer and who gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The decision.
    pub decision: Decision,
    /// Which approver (`dashboard`, or `dashboard pid N` over the socket).
    pub by: String,
}

/// What approvers receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApproverEvent {
    /// A new prompt (or the current state of one, e.g. more requests waiting).
    Prompt(Box<Prompt>),
    /// A prompt is gone: answered (by whom, how), timed out or withdrawn.
    Resolved {
        /// The prompt.
        id: String,
        /// What ended it: a decision name, `timeout` or `withdrawn`.
        outcome: String,
        /// Who answered, when someone did.
        by: Option<String>,
    },
    /// An answer that grants ("always", "for a time") was taken, but its grant could not be
    /// saved: the caller was refused, and the approver must not believe it worked.
    NotSaved {
        /// The prompt answered.
        id: String,
        /// Why (the one-line reason the broker gave the caller).
        message: String,
    },
}

/// Every line the daemon writes on an approver's subscription after `SUBSCRIBED`: the one typed
/// message of that direction, written by the daemon ([`SubscriptionLine::to_line`]) and read
/// by a connected dashboard (`serde_json::from_str`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "type")]
pub enum SubscriptionLine {
    /// A prompt to show ([`ApproverEvent::Prompt`]).
    #[serde(rename = "PROMPT")]
    Prompt(Box<Prompt>),
    /// A prompt is gone ([`ApproverEvent::Resolved`]).
    #[serde(rename = "RESOLVED")]
    Resolved {
        /// The prompt.
        prompt_id: String,
        /// What ended it.
        outcome: String,
        /// Who answered.
        by: Option<String>,
    },
    /// The last line to an approver dropped for falling behind (the connection then closes).
    #[serde(rename = "DROPPED")]
    Dropped {
        /// What happened and what to do.
        message: String,
    },
    /// A grant an answer asked for could not be saved ([`ApproverEvent::NotSaved`]).
    #[serde(rename = "NOT_SAVED")]
    NotSaved {
        /// The prompt answered.
        prompt_id: String,
        /// Why.
        message: String,
    },
    /// The reply to this approver's `PRESENCE` line (while a vault is served): whether the
    /// passphrase was right (the approver is then attached to the prompts), whether the vault is
    /// locked now, and why not (`wrong passphrase (attempt N …)`).
    #[serde(rename = "PRESENCE")]
    Presence {
        /// The passphrase was verified (and unlocked the vault when it was locked).
        ok: bool,
        /// Whether the vault is locked now.
        locked: bool,
        /// Why presence was not proven.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The reply to this approver's own `ANSWER`: `error` says why it decided nothing.
    #[serde(rename = "ANSWERED")]
    Answered {
        /// The prompt answered.
        prompt_id: String,
        /// Why the answer was not taken (the prompt was gone, the grant invalid, …).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

impl SubscriptionLine {
    /// The newline-terminated JSON line.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

impl From<ApproverEvent> for SubscriptionLine {
    fn from(ev: ApproverEvent) -> SubscriptionLine {
        match ev {
            ApproverEvent::Prompt(p) => SubscriptionLine::Prompt(p),
            ApproverEvent::Resolved { id, outcome, by } => SubscriptionLine::Resolved {
                prompt_id: id,
                outcome,
                by,
            },
            ApproverEvent::NotSaved { id, message } => SubscriptionLine::NotSaved {
                prompt_id: id,
                message,
            },
        }
    }
}

struct Held {
    prompt: Prompt,
    /// The latest deadline editing may push the prompt to: its first deadline plus
    /// [`EDIT_HOLD`].
    limit_ms: i64,
    key: String,
    waiters: Vec<(u64, oneshot::Sender<Answer>)>,
}

#[derive(Default)]
struct State {
    approvers: Vec<(u64, mpsc::Sender<ApproverEvent>)>,
    held: Vec<Held>,
}

/// The approvers attached to a broker and the prompts they have been asked.
#[derive(Default)]
pub struct Approvals {
    state: Mutex<State>,
    next: AtomicU64,
}

/// A request's place in a prompt: await `answer`, and withdraw with `ticket` if the caller goes.
pub struct Waiting {
    /// The prompt's id.
    pub id: String,
    /// This waiter.
    pub ticket: u64,
    /// Resolves with the first answer; dropped (an error) when the prompt ends without one.
    pub answer: oneshot::Receiver<Answer>,
    /// Whether this request opened the prompt (false: it joined a repeat's prompt).
    pub opened: bool,
}

/// Why a request is not held ([`Approvals::ask`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotHeld {
    /// No approver is attached.
    NoApprover,
    /// Too many prompts are held (for this caller, or in all); the text says which.
    TooMany(String),
}

/// The caller a prompt is for: its script's hash, else its executable's.
fn subject(p: &Prompt) -> &str {
    p.script_hash.as_deref().unwrap_or(&p.hash)
}

/// The launcher a prompt's caller was started by (its parent's pid; its own without one): the
/// unit of fairness between floods and other callers.
fn launcher(p: &Prompt) -> i32 {
    p.chain.get(1).map_or(p.pid, |l| l.pid)
}

/// An answer came for a prompt that is no longer open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("prompt {0} is no longer open (answered, withdrawn or timed out)")]
pub struct Closed(pub String);

impl Approvals {
    /// No approvers, no prompts.
    pub fn new() -> Approvals {
        Approvals::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Attaches an approver; it is sent every prompt already waiting.
    pub fn attach(&self) -> (u64, Events) {
        let (tx, rx) = mpsc::channel(APPROVER_QUEUE);
        let id = self.id();
        let mut st = self.lock();
        for h in &st.held {
            let _ = tx.try_send(ApproverEvent::Prompt(Box::new(h.prompt.clone())));
        }
        st.approvers.push((id, tx));
        (id, rx)
    }

    /// Detaches an approver. When none is left, every held request gets its refusal.
    pub fn detach(&self, approver: u64) {
        let mut st = self.lock();
        st.approvers.retain(|(id, _)| *id != approver);
        if st.approvers.is_empty() {
            // Dropping the senders ends every wait without an answer.
            st.held.clear();
        }
    }

    /// Whether any approver is attached (dead channels are pruned first).
    pub fn attached(&self) -> bool {
        let mut st = self.lock();
        st.approvers.retain(|(_, tx)| !tx.is_closed());
        !st.approvers.is_empty()
    }

    /// Holds a request: joins the prompt of the same `key` (same caller, launch chain, action,
    /// service and match mode; its targets are added to the prompt's list) or opens a new one, within [`MAX_HELD_PER_CALLER`] and [`MAX_HELD`]. `Err` says why it
    /// is not held.
    pub fn ask(&self, key: String, mut prompt: Prompt) -> Result<Waiting, NotHeld> {
        let ticket = self.id();
        let (tx, rx) = oneshot::channel();
        let mut st = self.lock();
        st.approvers.retain(|(_, t)| !t.is_closed());
        if st.approvers.is_empty() {
            return Err(NotHeld::NoApprover);
        }
        if let Some(h) = st.held.iter_mut().find(|h| h.key == key) {
            h.waiters.push((ticket, tx));
            h.prompt.waiting = h.waiters.len();
            // Another target of the same service joins the prompt: it lists every target its
            // answer will decide (the first MAX_TARGETS_SHOWN).
            for t in prompt.targets {
                if h.prompt.targets.len() < MAX_TARGETS_SHOWN && !h.prompt.targets.contains(&t) {
                    h.prompt.targets.push(t);
                }
            }
            let (id, update) = (h.prompt.id.clone(), h.prompt.clone());
            broadcast(&mut st, ApproverEvent::Prompt(Box::new(update)));
            return Ok(Waiting {
                id,
                ticket,
                answer: rx,
                opened: false,
            });
        }
        make_room(&mut st, &prompt)?;
        prompt.id = format!("p{ticket}");
        prompt.waiting = 1;
        let id = prompt.id.clone();
        broadcast(&mut st, ApproverEvent::Prompt(Box::new(prompt.clone())));
        if st.approvers.is_empty() {
            // Every approver was dropped for falling behind: nobody to ask.
            return Err(NotHeld::NoApprover);
        }
        st.held.push(Held {
            limit_ms: prompt
                .deadline_ms
                .saturating_add(i64::try_from(EDIT_HOLD.as_millis()).unwrap_or(i64::MAX)),
            prompt,
            key,
            waiters: vec![(ticket, tx)],
        });
        Ok(Waiting {
            id,
            ticket,
            answer: rx,
            opened: true,
        })
    }

    /// Answers prompt `id`: the first answer wins; every waiting request gets it and every
    /// approver is told. `Err` when the prompt is already gone.
    pub fn answer(&self, id: &str, answer: Answer) -> Result<Prompt, Closed> {
        let mut st = self.lock();
        let i = st
            .held
            .iter()
            .position(|h| h.prompt.id == id)
            .ok_or_else(|| Closed(id.to_string()))?;
        let held = st.held.remove(i);
        broadcast(
            &mut st,
            ApproverEvent::Resolved {
                id: id.to_string(),
                outcome: answer.decision.as_str().into(),
                by: Some(answer.by.clone()),
            },
        );
        for (_, w) in held.waiters {
            let _ = w.send(answer.clone());
        }
        Ok(held.prompt)
    }

    /// Ends one waiter's part in prompt `id` (its caller disconnected, or its time ran out);
    /// the prompt closes when nobody waits on it any more. Returns the prompt when it closed.
    pub fn leave(&self, id: &str, ticket: u64, outcome: &str) -> Option<Prompt> {
        let mut st = self.lock();
        let i = st.held.iter().position(|h| h.prompt.id == id)?;
        st.held[i].waiters.retain(|(t, _)| *t != ticket);
        if !st.held[i].waiters.is_empty() {
            let h = &mut st.held[i];
            h.prompt.waiting = h.waiters.len();
            let update = h.prompt.clone();
            broadcast(&mut st, ApproverEvent::Prompt(Box::new(update)));
            return None;
        }
        let held = st.held.remove(i);
        broadcast(
            &mut st,
            ApproverEvent::Resolved {
                id: id.to_string(),
                outcome: outcome.into(),
                by: None,
            },
        );
        Some(held.prompt)
    }

    /// An approver is editing its answer to prompt `id`: its countdown pauses — the deadline
    /// moves to [`EDIT_HOLD`] from now, but never past its first deadline plus [`EDIT_HOLD`] —
    /// and every approver is shown the new deadline. `Err` when the prompt is gone.
    pub fn editing(&self, id: &str) -> Result<Prompt, Closed> {
        let mut st = self.lock();
        let h = st
            .held
            .iter_mut()
            .find(|h| h.prompt.id == id)
            .ok_or_else(|| Closed(id.to_string()))?;
        let hold = i64::try_from(EDIT_HOLD.as_millis()).unwrap_or(i64::MAX);
        let wanted = chrono::Utc::now()
            .timestamp_millis()
            .saturating_add(hold)
            .min(h.limit_ms);
        if wanted <= h.prompt.deadline_ms {
            return Ok(h.prompt.clone());
        }
        h.prompt.deadline_ms = wanted;
        let update = h.prompt.clone();
        broadcast(&mut st, ApproverEvent::Prompt(Box::new(update.clone())));
        Ok(update)
    }

    /// Prompt `id`'s deadline now (Unix milliseconds); `None` when it is gone.
    pub fn deadline_ms(&self, id: &str) -> Option<i64> {
        self.lock()
            .held
            .iter()
            .find(|h| h.prompt.id == id)
            .map(|h| h.prompt.deadline_ms)
    }

    /// Tells every approver that the grant its answer to prompt `id` asked for was not saved.
    pub fn not_saved(&self, id: &str, message: String) {
        let mut st = self.lock();
        broadcast(
            &mut st,
            ApproverEvent::NotSaved {
                id: id.to_string(),
                message,
            },
        );
    }

    /// The prompts waiting now.
    pub fn pending(&self) -> Vec<Prompt> {
        self.lock().held.iter().map(|h| h.prompt.clone()).collect()
    }
}

/// Makes room for a new prompt like `new` within the caps, or says why it is not held. When the
/// held prompts are at [`MAX_HELD`], the oldest prompt of the busiest launcher is ended
/// (its requests get their refusal) unless `new` comes from that busiest launcher itself.
fn make_room(st: &mut State, new: &Prompt) -> Result<(), NotHeld> {
    let mine = st
        .held
        .iter()
        .filter(|h| subject(&h.prompt) == subject(new))
        .count();
    if mine >= MAX_HELD_PER_CALLER {
        return Err(NotHeld::TooMany(format!(
            "{MAX_HELD_PER_CALLER} prompts of this caller are already waiting for an answer"
        )));
    }
    if st.held.len() < MAX_HELD {
        return Ok(());
    }
    let count = |pid: i32| {
        st.held
            .iter()
            .filter(|h| launcher(&h.prompt) == pid)
            .count()
    };
    let busiest = st
        .held
        .iter()
        .map(|h| launcher(&h.prompt))
        .max_by_key(|pid| count(*pid))
        .unwrap_or(0);
    if count(launcher(new)) >= count(busiest) {
        return Err(NotHeld::TooMany(format!(
            "{MAX_HELD} prompts are already waiting, the most of them from callers launched by the same process as this one"
        )));
    }
    if let Some(i) = st.held.iter().position(|h| launcher(&h.prompt) == busiest) {
        // Dropping its waiters' senders refuses their requests ("no answer").
        let evicted = st.held.remove(i);
        broadcast(
            st,
            ApproverEvent::Resolved {
                id: evicted.prompt.id,
                outcome: "evicted".into(),
                by: None,
            },
        );
    }
    Ok(())
}

/// Sends `ev` to every approver. One whose queue is full is dropped (its sender goes, so its
/// [`Events`] ends once drained); when none is left, every held request gets its refusal.
fn broadcast(st: &mut State, ev: ApproverEvent) {
    st.approvers.retain(|(id, tx)| match tx.try_send(ev.clone()) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Closed(_)) => false,
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::warn!(
                "keychain-auth: approver {id} fell {APPROVER_QUEUE} events behind and was dropped"
            );
            false
        }
    });
    if st.approvers.is_empty() {
        // Dropping the senders ends every wait without an answer.
        st.held.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt() -> Prompt {
        Prompt {
            id: String::new(),
            path: "/bin/x".into(),
            hash: "sha256:00".into(),
            script: None,
            script_hash: None,
            pid: 1,
            argv: vec![],
            chain: vec![],
            registered: false,
            action: "read".into(),
            service: "aws".into(),
            mode: "exact".into(),
            targets: vec!["k".into()],
            reason: Reason::UnregisteredBinary,
            message: "m".into(),
            deadline_ms: 0,
            waiting: 0,
        }
    }

    #[tokio::test]
    async fn no_approver_means_no_prompt() {
        let a = Approvals::new();
        assert_eq!(a.ask("k".into(), prompt()).err(), Some(NotHeld::NoApprover));
        let (id, rx) = a.attach();
        drop(rx);
        assert!(!a.attached(), "a closed approver does not count");
        a.detach(id);
    }

    #[tokio::test]
    async fn repeats_coalesce_and_the_first_answer_wins_for_all() {
        let a = Approvals::new();
        let (one, mut rx1) = a.attach();
        let (_two, mut rx2) = a.attach();
        let w1 = a.ask("caller:read:aws".into(), prompt()).unwrap();
        let w2 = a.ask("caller:read:aws".into(), prompt()).unwrap();
        assert!(w1.opened && !w2.opened);
        assert_eq!(w1.id, w2.id);
        let other = a.ask("caller:write:aws".into(), prompt()).unwrap();
        assert_ne!(other.id, w1.id);
        assert_eq!(a.pending().len(), 2);
        let answer = Answer {
            decision: Decision::Once,
            by: "dashboard".into(),
        };
        a.answer(&w1.id, answer.clone()).unwrap();
        assert!(
            a.answer(&w1.id, answer.clone()).is_err(),
            "only the first answer counts"
        );
        assert_eq!(w1.answer.await.unwrap(), answer);
        assert_eq!(w2.answer.await.unwrap(), answer);
        // Both approvers saw the prompt and its resolution.
        for rx in [&mut rx1, &mut rx2] {
            let mut saw_resolved = false;
            while let Ok(ev) = rx.try_recv() {
                if let ApproverEvent::Resolved { id, outcome, by } = ev
                    && id == w2.id
                {
                    assert_eq!(outcome, "once");
                    assert_eq!(by.as_deref(), Some("dashboard"));
                    saw_resolved = true;
                }
            }
            assert!(saw_resolved);
        }
        // The last approver leaving ends the other prompt without an answer.
        a.detach(one);
        a.detach(_two);
        assert!(other.answer.await.is_err());
    }

    /// A prompt of caller `hash` launched by `parent`.
    fn prompt_of(hash: &str, parent: i32) -> Prompt {
        let link = |pid| Link {
            path: "/bin/x".into(),
            hash: None,
            pid,
            argv: vec![],
        };
        Prompt {
            hash: hash.into(),
            chain: vec![link(parent + 1), link(parent)],
            ..prompt()
        }
    }

    #[tokio::test]
    async fn an_approver_that_stops_reading_is_dropped_and_its_queue_is_bounded() {
        let a = Approvals::new();
        let (_slow, mut slow) = a.attach();
        let (_fast, mut fast) = a.attach();
        let mut asked = vec![];
        // The fast approver reads everything; the slow one reads nothing.
        for i in 0..(APPROVER_QUEUE + 10) {
            let w = a.ask(
                format!("k{i}"),
                prompt_of(&format!("h{i}"), 1000 + i as i32),
            );
            if let Ok(w) = w {
                assert!(a.leave(&w.id, w.ticket, "withdrawn").is_some());
                asked.push(w.id);
            }
            while fast.try_recv().is_ok() {}
        }
        assert_eq!(
            asked.len(),
            APPROVER_QUEUE + 10,
            "the fast approver is still asked"
        );
        // The slow one got at most its queue's worth, then its queue was closed: it is told by
        // its events ending.
        let mut got = 0;
        while let Some(_ev) = slow.recv().await {
            got += 1;
        }
        assert!(got <= APPROVER_QUEUE, "{got}");
        assert_eq!(
            a.lock().approvers.len(),
            1,
            "only the fast approver is left"
        );
    }

    #[tokio::test]
    async fn held_prompts_are_bounded_per_caller_and_in_all_and_a_new_launcher_is_shown() {
        let a = Approvals::new();
        let (_id, _rx) = a.attach();
        // One caller: at most MAX_HELD_PER_CALLER different prompts; a repeat still joins.
        let mut mine = vec![];
        for i in 0..MAX_HELD_PER_CALLER {
            mine.push(a.ask(format!("same:{i}"), prompt_of("same", 7)).unwrap());
        }
        let r = a.ask("same:more".into(), prompt_of("same", 7));
        assert!(
            matches!(r, Err(NotHeld::TooMany(ref why)) if why.contains("this caller")),
            "{:?}",
            r.err()
        );
        assert!(
            a.ask("same:0".into(), prompt_of("same", 7)).is_ok(),
            "a repeat joins"
        );
        // A flood of distinct callers from one launcher fills the rest, then is refused.
        let mut flood = vec![];
        for i in 0..(MAX_HELD - MAX_HELD_PER_CALLER) {
            flood.push(
                a.ask(format!("f{i}"), prompt_of(&format!("flood{i}"), 666))
                    .unwrap(),
            );
        }
        assert_eq!(a.pending().len(), MAX_HELD);
        let r = a.ask("f-more".into(), prompt_of("flood-more", 666));
        assert!(
            matches!(r, Err(NotHeld::TooMany(_))),
            "the busiest launcher is refused"
        );
        // A new caller from another launcher is still held and shown, in place of the
        // flood's oldest prompt, whose request gets its refusal.
        let real = a.ask("real".into(), prompt_of("real-tool", 4242)).unwrap();
        assert!(real.opened);
        let shown = a.pending();
        assert_eq!(shown.len(), MAX_HELD);
        assert!(shown.iter().any(|p| p.hash == "real-tool"));
        assert!(
            !shown.iter().any(|p| p.hash == "flood0"),
            "the flood's oldest made room"
        );
        assert!(flood.remove(0).answer.await.is_err(), "evicted: no answer");
        assert!(shown.iter().filter(|p| p.hash == "same").count() == MAX_HELD_PER_CALLER);
    }

    #[tokio::test]
    async fn a_prompt_closes_when_its_last_waiter_leaves() {
        let a = Approvals::new();
        let (_id, _rx) = a.attach();
        let w1 = a.ask("k".into(), prompt()).unwrap();
        let w2 = a.ask("k".into(), prompt()).unwrap();
        assert!(a.leave(&w1.id, w1.ticket, "withdrawn").is_none());
        assert_eq!(a.pending()[0].waiting, 1);
        assert!(a.leave(&w2.id, w2.ticket, "timeout").is_some());
        assert!(a.pending().is_empty());
    }

    #[tokio::test]
    async fn other_targets_join_the_prompt_and_are_listed() {
        let a = Approvals::new();
        let (_id, mut rx) = a.attach();
        let with = |t: &[&str]| Prompt {
            targets: t.iter().map(ToString::to_string).collect(),
            ..prompt()
        };
        let w1 = a
            .ask("caller:read:aws".into(), with(&["key_id", "secret"]))
            .unwrap();
        let w2 = a
            .ask("caller:read:aws".into(), with(&["session_token", "secret"]))
            .unwrap();
        let w3 = a
            .ask("caller:read:aws".into(), with(&["expiration"]))
            .unwrap();
        assert!(w1.opened && !w2.opened && !w3.opened);
        assert_eq!(a.pending().len(), 1);
        let shown = &a.pending()[0];
        assert_eq!(
            shown.targets,
            ["key_id", "secret", "session_token", "expiration"]
        );
        assert_eq!(shown.waiting, 3);
        // The approver was shown the grown list before it could answer.
        let mut last = None;
        while let Ok(ApproverEvent::Prompt(p)) = rx.try_recv() {
            last = Some(p);
        }
        assert_eq!(last.map(|p| p.targets.len()), Some(4));
        let answer = Answer {
            decision: Decision::Once,
            by: "dashboard".into(),
        };
        a.answer(&w1.id, answer.clone()).unwrap();
        for w in [w1, w2, w3] {
            assert_eq!(w.answer.await.unwrap(), answer, "one answer decides all");
        }
    }

    #[tokio::test]
    async fn editing_pauses_the_countdown_within_a_bound() {
        let a = Approvals::new();
        let (_id, mut rx) = a.attach();
        let now = chrono::Utc::now().timestamp_millis();
        let w = a
            .ask(
                "k".into(),
                Prompt {
                    deadline_ms: now + 1_000,
                    ..prompt()
                },
            )
            .unwrap();
        while rx.try_recv().is_ok() {}
        let hold = i64::try_from(EDIT_HOLD.as_millis()).unwrap();
        let p = a.editing(&w.id).unwrap();
        // Moved to EDIT_HOLD from now, which is past the first deadline plus EDIT_HOLD by the
        // time elapsed: the bound wins.
        assert!(p.deadline_ms > now + 1_000, "{}", p.deadline_ms);
        assert!(p.deadline_ms <= now + 1_000 + hold, "{}", p.deadline_ms);
        assert_eq!(a.deadline_ms(&w.id), Some(p.deadline_ms));
        // Every approver is shown the new deadline.
        match rx.try_recv() {
            Ok(ApproverEvent::Prompt(shown)) => assert_eq!(shown.deadline_ms, p.deadline_ms),
            other => panic!("{other:?}"),
        }
        // Editing again never moves it past the bound.
        let again = a.editing(&w.id).unwrap();
        assert!(again.deadline_ms <= now + 1_000 + hold);
        assert!(a.editing("p-none").is_err(), "a closed prompt says so");
        assert_eq!(a.deadline_ms("p-none"), None);
    }
}
