//! Deciding one request line: parse, identify, look up the policy, queue unknown callers,
//! authorise, execute, audit. Fail closed at every step: without an identity, a readable policy
//! or a written audit record, nothing is granted.

use super::Broker;
use crate::audit::{Caller, Record};
use crate::exec;
use crate::identity::BinaryHash;
use crate::identity::{self, Exe, Integrity, Link, Peer, Program};
use crate::pending::Attempt;
use crate::policy::cache::Snapshot;
use crate::policy::{BinaryPolicy, InterpreterRef};
use crate::protocol::{self, Action, Incoming, Reason, Request, Response, Status};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// A request line after parsing: the request, or the `malformed_request` answer.
pub type Parsed = Result<Incoming, Box<Response>>;

/// Parses one request line (without its newline).
pub fn parse(line: &[u8]) -> Parsed {
    protocol::parse_line(line)
}

/// Where a request line is answered.
pub enum Lane {
    /// On the async worker: it cannot wait on anything slow. Carries the policy already read to
    /// decide this, so it is not read twice.
    Quick(Option<Arc<Snapshot>>),
    /// Off the workers: it may wait on IPC, an fsync or the pending queue.
    Blocking,
}

/// Chooses the lane: STATUS, malformed input, and reads or searches by an approved caller on a
/// store with fast reads are quick; everything else blocks.
pub fn lane(broker: &Broker, peer: &Peer, parsed: &Parsed) -> Lane {
    let req = match parsed {
        Ok(Incoming::Request(r)) => r,
        Ok(
            Incoming::Status
            | Incoming::Subscribe
            | Incoming::Answer(_)
            | Incoming::Presence(_)
            | Incoming::Admin { .. },
        )
        | Err(_) => {
            return Lane::Quick(None);
        }
    };
    if !matches!(req.action, Action::Read | Action::Search) || !broker.backend.fast_reads() {
        return Lane::Blocking;
    }
    let Exe::Verified { hash, program, .. } = &peer.exe else {
        return Lane::Blocking;
    };
    match broker.policy.current() {
        // Grants with terms may need a config write (uses) or an approver (confirm).
        Ok(p)
            if p.lookup_caller(hash, program)
                .is_some_and(|b| b.terms_for(&req.service).is_none()) =>
        {
            Lane::Quick(Some(p))
        }
        _ => Lane::Blocking,
    }
}

/// Answers STATUS (to any same-uid peer, verified or not).
pub fn status_line(broker: &Broker) -> Vec<u8> {
    broker.stats.requests.fetch_add(1, Ordering::Relaxed);
    broker.status().to_line()
}

/// What answering a request line produced.
pub enum Reply {
    /// The response line.
    Line(Vec<u8>),
    /// The request is refused unless an approver allows it: hold it and ask ([`super::ask`]).
    Ask(Box<Ask>),
}

/// A request held for an approver, with the refusal it gets when nobody allows it.
pub struct Ask {
    /// The request.
    pub req: Request,
    /// The refusal it gets without an answer.
    pub refusal: Response,
    /// Its audit record so far.
    pub rec: Record,
    /// Whether the caller is approved at all (an unknown caller is approved by an answer).
    pub registered: bool,
    /// Whether it is allowed but its grant asks for confirmation of every use.
    pub confirm: bool,
    /// The hash of the policy entry (registered) or pending entry (unknown) an answer changes.
    pub subject: BinaryHash,
}

/// Answers one parsed request line from `peer`, with the policy when the caller already read
/// it; returns the response line, or the request to hold for an approver.
pub fn respond(
    broker: &Broker,
    peer: &Peer,
    parsed: Parsed,
    policy: Option<Arc<Snapshot>>,
) -> Reply {
    let req = match parsed {
        Ok(Incoming::Status) => return Reply::Line(status_line(broker)),
        Ok(Incoming::Request(req)) => Ok(req),
        Ok(
            Incoming::Subscribe
            | Incoming::Answer(_)
            | Incoming::Presence(_)
            | Incoming::Admin { .. },
        ) => Err(Box::new(Response::malformed(
            None,
            "SUBSCRIBE opens an approver connection, ANSWER and PRESENCE are only accepted on one, and ADMIN is answered by the session",
        ))),
        Err(resp) => Err(resp),
    };
    broker.stats.requests.fetch_add(1, Ordering::Relaxed);
    match req {
        Ok(req) => match decide(broker, peer, &req, policy) {
            Verdict::Done(resp) => Reply::Line(resp.to_line()),
            Verdict::Ask(ask) => Reply::Ask(ask),
        },
        Err(resp) => {
            let rec = base_record(peer).with_id(resp.id.clone());
            Reply::Line(refuse_counted(broker, rec, *resp).to_line())
        }
    }
}

/// Audits a request line that exceeded the cap.
pub fn audit_too_large(broker: &Broker, peer: &Peer) {
    let mut rec = base_record(peer);
    rec.set_outcome(Status::Error, Some(Reason::RequestTooLarge), None);
    let _ = broker.audit.append(&rec);
}

/// A request while the vault is locked: refused `vault_locked` with the fix. Its record waits
/// (in memory, capped) for the audit key, which comes back with the unlock.
fn locked(broker: &Broker, mut rec: Record, req: &Request, how: String) -> Verdict {
    let resp = Response::failure(req.id.clone(), Status::Denied, Reason::VaultLocked, how);
    finish(&mut rec, &resp);
    if broker.audit.append(&rec).is_err() {
        crate::audit::defer_capped(broker.audit.path(), rec);
    }
    Verdict::Done(resp)
}

/// A request that would be refused only because the vault is locked, in the form a prompt is
/// made from ([`super::ask::prompt_for`]): held for unlock while an approver is attached
/// ([`super::presence::wait_for_unlock`]). `None` for a caller that cannot be identified.
pub(crate) fn locked_ask(peer: &Peer, req: &Request, how: String) -> Option<Ask> {
    let Exe::Verified { hash, program, .. } = &peer.exe else {
        return None;
    };
    let subject = match program {
        Program::Script { hash, .. } => hash.clone(),
        _ => hash.clone(),
    };
    Some(Ask {
        req: req.clone(),
        refusal: Response::failure(req.id.clone(), Status::Denied, Reason::VaultLocked, how),
        rec: request_record(peer, req),
        registered: false,
        confirm: false,
        subject,
    })
}

fn base_record(peer: &Peer) -> Record {
    Record::request(match &peer.exe {
        Exe::Verified {
            path,
            hash,
            program,
            ..
        } => Caller {
            pid: peer.pid,
            path: Some(path.to_string_lossy().into_owned()),
            hash: Some(hash.to_string()),
            script: match program {
                Program::Script { path, hash } => {
                    Some((path.display().to_string(), hash.to_string()))
                }
                _ => None,
            },
            chain: peer.recorded_chain(),
        },
        Exe::Unverifiable { path, .. } => Caller {
            pid: peer.pid,
            path: path.as_ref().map(|p| p.display().to_string()),
            ..Caller::default()
        },
    })
}

fn request_record(peer: &Peer, req: &Request) -> Record {
    base_record(peer).with_request(req)
}

pub(crate) fn finish(rec: &mut Record, resp: &Response) {
    rec.set_outcome(resp.status, resp.reason, resp.message.clone());
}

/// Audits a refusal and returns it.
pub(crate) fn refuse(broker: &Broker, mut rec: Record, resp: Response) -> Response {
    finish(&mut rec, &resp);
    let _ = broker.audit.append(&rec);
    resp
}

/// Why the injection guard or the launch rule refuses a caller.
#[derive(Debug, thiserror::Error)]
enum Guard {
    /// A tracer is attached.
    #[error("{}", identity::traced_message(*pid, *tracer))]
    Traced { pid: i32, tracer: i32 },
    /// An injection variable the policy does not allow is set.
    #[error(
        "{} (pid {pid}) runs with {var} set, which can inject code into it; unset {var}, or if this is intended allow it with: keychain-auth grant {} --allow-env {var}",
        path.display(),
        hash.short()
    )]
    Injected {
        path: std::path::PathBuf,
        pid: i32,
        var: String,
        hash: BinaryHash,
    },
    /// The interpreter runs a start-up file from a place the user can write before the script.
    #[error(
        "{} (pid {pid}) would first run {}, {why}, which is not part of what was approved; remove it, or run the script without start-up files (python -s or -I, zsh -f)",
        path.display(),
        file.display()
    )]
    Startup {
        path: std::path::PathBuf,
        pid: i32,
        file: std::path::PathBuf,
        why: &'static str,
    },
    /// No allowed launcher among the ancestors.
    #[error(
        "{} may only be used when launched by {allowed} and was launched by: {chain}",
        path.display()
    )]
    Launcher {
        path: std::path::PathBuf,
        allowed: String,
        chain: String,
    },
}

/// The injection guard (SPEC §10): a traced caller is refused, and so is one whose environment
/// carries an injection variable its policy does not list in `allow_env`, and one whose
/// interpreter runs a start-up file the user can write before its script.
fn injection_guard(pid: i32, binary: &BinaryPolicy, integrity: &Integrity) -> Result<(), Guard> {
    if integrity.tracer != 0 {
        return Err(Guard::Traced {
            pid,
            tracer: integrity.tracer,
        });
    }
    match integrity
        .injected
        .iter()
        .find(|v| !binary.allow_env.contains(v.as_str()))
    {
        Some(var) => Err(Guard::Injected {
            path: binary.path.clone(),
            pid,
            var: var.clone(),
            hash: binary.hash.clone(),
        }),
        None => match integrity.startup.first() {
            Some(s) => Err(Guard::Startup {
                path: binary.path.clone(),
                pid,
                file: s.file.clone(),
                why: s.why,
            }),
            None => Ok(()),
        },
    }
}

/// The launch rule (SPEC §10): with `launched_by`, one of those hashes must be an ancestor.
fn launch_rule(peer: &Peer, binary: &BinaryPolicy, chain: &[Link]) -> Result<(), Guard> {
    if binary.launched_by.is_empty()
        || chain.iter().any(|l| {
            l.hash
                .as_ref()
                .is_some_and(|h| binary.launched_by.contains(h))
        })
    {
        return Ok(());
    }
    let allowed: Vec<&str> = binary.launched_by.iter().map(BinaryHash::short).collect();
    Err(Guard::Launcher {
        path: binary.path.clone(),
        allowed: allowed.join(", "),
        chain: identity::describe_chain(&peer.recorded_chain()),
    })
}

/// Why an unknown caller is refused, and the pending entry it makes (none for code without a
/// file, which cannot be approved as such).
fn unknown_caller(policy: &Snapshot, peer: &Peer, req: &Request) -> (String, Option<Attempt>) {
    let Exe::Verified {
        path: exe_path,
        hash: exe_hash,
        argv,
        program,
        ..
    } = &peer.exe
    else {
        return (String::new(), None);
    };
    let (path, hash, interpreter) = match program {
        Program::NoFile(why) => {
            return (
                format!(
                    "{why}; run a script file (without such options) instead and approve it, or approve the interpreter itself with: keychain-auth register {} --allow-any-script (any code it runs is then served)",
                    exe_path.display()
                ),
                None,
            );
        }
        Program::Binary => (exe_path, exe_hash, None),
        Program::Script { path, hash } => (
            path,
            hash,
            Some(InterpreterRef {
                path: exe_path.clone(),
                hash: exe_hash.clone(),
            }),
        ),
    };
    let registered = policy.file.by_path(path);
    let changed_from = registered.map(|b| b.hash.clone());
    let message = match registered {
        Some(b) if &b.hash == hash => format!(
            "{} is approved to run under {}, but now runs under {} ({}); if the interpreter was updated, keep its permissions with: keychain-auth upgrade {}",
            path.display(),
            b.interpreter
                .as_ref()
                .map_or_else(|| "no interpreter".into(), |i| i.path.display().to_string()),
            exe_path.display(),
            exe_hash.short(),
            path.display()
        ),
        Some(b) => format!(
            "{} changed since it was approved (approved {}, now {}); if you updated it, keep its permissions with: keychain-auth upgrade {}",
            path.display(),
            b.hash.short(),
            hash.short(),
            path.display()
        ),
        None => format!(
            "{}{} ({}) is not approved; review it with `keychain-auth list-pending` and approve it with: keychain-auth approve {}",
            path.display(),
            interpreter
                .as_ref()
                .map_or_else(String::new, |i| format!(" run by {}", i.path.display())),
            hash.short(),
            hash.short()
        ),
    };
    let attempt = Attempt {
        hash: hash.clone(),
        path: path.clone(),
        pid: peer.pid,
        argv: argv.clone(),
        action: req.action.as_str().into(),
        service: req.service.clone(),
        changed_from,
        interpreter,
        chain: peer.caller_chain(),
    };
    (message, Some(attempt))
}

/// What deciding a request produced.
pub(crate) enum Verdict {
    /// The final response.
    Done(Response),
    /// Refused unless an approver allows it.
    Ask(Box<Ask>),
}

pub(crate) fn decide(
    broker: &Broker,
    peer: &Peer,
    req: &Request,
    policy: Option<Arc<Snapshot>>,
) -> Verdict {
    decide_as(broker, peer, req, policy, None)
}

/// [`decide`] for a request that came through `front` (`Some("dbus")`; `None` is the socket):
/// its audit records name the front end.
pub(crate) fn decide_as(
    broker: &Broker,
    peer: &Peer,
    req: &Request,
    policy: Option<Arc<Snapshot>>,
    front: Option<&str>,
) -> Verdict {
    let mut rec = request_record(peer, req);
    rec.front = front.map(str::to_string);
    if let Some(how) = broker.backend.locked() {
        return locked(broker, rec, req, how);
    }
    let (hash, integrity, program, chain) = match &peer.exe {
        Exe::Verified {
            hash,
            integrity,
            program,
            chain,
            ..
        } => (hash, integrity, program, chain),
        Exe::Unverifiable { why, .. } => {
            return done(
                broker,
                rec,
                denied(req, Reason::UnregisteredBinary, why.clone()),
            );
        }
    };
    let policy = match policy.map_or_else(|| broker.policy.current(), Ok) {
        Ok(p) => p,
        Err(e) => {
            let msg = format!("{e}; every request is denied until the policy can be read");
            return done(broker, rec, denied(req, Reason::InternalError, msg));
        }
    };
    let Some(binary) = policy.lookup_caller(hash, program) else {
        return unregistered(broker, &policy, peer, req, rec);
    };
    if let Err(why) = launch_rule(peer, binary, chain) {
        let refusal = denied(req, Reason::LauncherNotAllowed, why.to_string());
        return done(broker, rec, refusal);
    }
    if let Err(why) = injection_guard(peer.pid, binary, integrity) {
        let refusal = denied(req, Reason::InjectedEnvironment, why.to_string());
        return done(broker, rec, refusal);
    }
    if let Err((reason, message)) = binary.authorize(req) {
        let refusal = denied(req, reason, message);
        return ask_or_refuse(broker, req, rec, refusal, &binary.hash, (true, false));
    }
    let terms = binary.terms_for(&req.service);
    if terms.is_some_and(|t| t.confirm) {
        let refusal = denied(
            req,
            Reason::ServiceNotAllowed,
            format!(
                "every use of {} by {} must be confirmed in the dashboard, and no dashboard answered",
                req.service,
                binary.path.display()
            ),
        );
        return ask_or_refuse(broker, req, rec, refusal, &binary.hash, (true, true));
    }
    if terms.is_some_and(|t| t.uses_left.is_some()) {
        return Verdict::Done(carry_out_counted(broker, rec, req, binary, (hash, program)));
    }
    Verdict::Done(carry_out(broker, rec, req))
}

/// A request under a grant with a number of uses: checked again, carried out and counted as one
/// step (on a blocking thread, see `lane`), so two requests at once cannot both spend its last
/// use.
fn carry_out_counted(
    broker: &Broker,
    rec: Record,
    req: &Request,
    binary: &crate::policy::BinaryPolicy,
    (hash, program): (&BinaryHash, &Program),
) -> Response {
    let _one_at_a_time = broker
        .counted_uses
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !still_allowed(broker, hash, program, req) {
        let refusal = denied(
            req,
            Reason::ServiceNotAllowed,
            format!(
                "the grant of {} to {} was used up by another request",
                req.service,
                binary.path.display()
            ),
        );
        return refuse(broker, rec, refusal);
    }
    let resp = carry_out(broker, rec, req);
    if resp.status == Status::Success
        && let Err(e) = crate::admin::consume_use(&broker.world(), &binary.hash, &req.service)
    {
        tracing::warn!("keychain-auth: could not count a use of a one-time grant: {e}");
    }
    resp
}

/// Whether the policy in force now (re-read if it changed) still allows `req` to the caller:
/// a use counted meanwhile may have ended the grant.
fn still_allowed(broker: &Broker, hash: &BinaryHash, program: &Program, req: &Request) -> bool {
    broker.policy.current().is_ok_and(|p| {
        p.lookup_caller(hash, program)
            .is_some_and(|b| b.authorize(req).is_ok())
    })
}

/// A caller no policy entry serves: refused as `unregistered_binary` and queued as pending
/// (unless its entry was edited outside keychain-auth and is held, or it runs code without a
/// file), or held for an approver.
fn unregistered(
    broker: &Broker,
    policy: &Snapshot,
    peer: &Peer,
    req: &Request,
    rec: Record,
) -> Verdict {
    let Exe::Verified { hash, program, .. } = &peer.exe else {
        return done(
            broker,
            rec,
            denied(req, Reason::UnregisteredBinary, String::new()),
        );
    };
    let entry = match program {
        Program::Script { hash: script, .. } => script,
        _ => hash,
    };
    if policy.is_held(entry) || policy.is_held(hash) {
        let message = format!(
            "the policy entry for {} ({}) was added or changed outside keychain-auth and is not served; review and adopt it with: keychain-auth policy accept",
            policy
                .file
                .by_hash(entry)
                .map_or_else(String::new, |b| b.path.display().to_string()),
            entry.short()
        );
        return done(
            broker,
            rec,
            denied(req, Reason::UnregisteredBinary, message),
        );
    }
    let (message, attempt) = unknown_caller(policy, peer, req);
    let refusal = denied(req, Reason::UnregisteredBinary, message);
    let Some(attempt) = attempt else {
        return done(broker, rec, refusal);
    };
    let subject = attempt.hash.clone();
    let shown = attempt.path.display().to_string();
    match broker.pending.record(attempt) {
        Ok(true) if !broker.approvals.attached() => {
            super::notify::new_caller(&shown, req.action.as_str(), &req.service);
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("keychain-auth: could not record a pending caller: {e}"),
    }
    ask_or_refuse(broker, req, rec, refusal, &subject, (false, false))
}

/// A `denied` response to `req`.
fn denied(req: &Request, reason: Reason, message: String) -> Response {
    Response::failure(req.id.clone(), Status::Denied, reason, message)
}

/// The refusal, audited as a counted refusal ([`super::refusals`]): repeats of it are folded.
fn done(broker: &Broker, rec: Record, resp: Response) -> Verdict {
    Verdict::Done(refuse_counted(broker, rec, resp))
}

/// Audits a refusal through the counted refusals and returns it.
fn refuse_counted(broker: &Broker, mut rec: Record, resp: Response) -> Response {
    finish(&mut rec, &resp);
    for r in broker.refusals.record(rec) {
        let _ = broker.audit.append(&r);
    }
    resp
}

/// Holds the request for an approver where one is attached and the caller did not opt out
/// (`"prompt": false`); refuses it otherwise. `(registered, confirm)` describe the prompt.
fn ask_or_refuse(
    broker: &Broker,
    req: &Request,
    rec: Record,
    refusal: Response,
    subject: &BinaryHash,
    (registered, confirm): (bool, bool),
) -> Verdict {
    if !(req.prompt && broker.approvals.attached()) {
        return done(broker, rec, refusal);
    }
    Verdict::Ask(Box::new(Ask {
        req: req.clone(),
        refusal,
        rec,
        registered,
        confirm,
        subject: subject.clone(),
    }))
}

/// Runs an authorised request against the store and audits it. What cannot be audited is not
/// granted: a change is taken back, a read withheld.
pub(crate) fn carry_out(broker: &Broker, rec: Record, req: &Request) -> Response {
    let outcome = exec::execute(broker.backend.as_ref(), req);
    let mut rec = rec.with_targets(outcome.targets.iter());
    finish(&mut rec, &outcome.response);
    if let Err(e) = broker.audit.append(&rec) {
        let mut message = format!(
            "the audit log {} cannot be written ({e}); the request was not carried out",
            broker.audit.path().display()
        );
        if outcome.response.status == Status::Success
            && !outcome.undo.is_empty()
            && let Err(undo) = broker.backend.apply(&outcome.undo)
        {
            message = format!(
                "the audit log {} cannot be written ({e}) and undoing the change failed: {undo}",
                broker.audit.path().display()
            );
        }
        return Response::failure(
            req.id.clone(),
            Status::Error,
            Reason::InternalError,
            message,
        );
    }
    outcome.response
}
