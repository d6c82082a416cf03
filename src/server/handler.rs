//! Deciding one request line: parse, identify, look up the policy, queue unknown callers,
//! authorise, execute, audit. Fail closed at every step: without an identity, a readable policy
//! or a written audit record, nothing is granted.

use super::Broker;
use crate::audit::Record;
use crate::exec;
use crate::identity::{Exe, Peer};
use crate::pending::{self, Attempt};
use crate::policy::Snapshot;
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
        Ok(Incoming::Status) | Err(_) => return Lane::Quick(None),
    };
    if !matches!(req.action, Action::Read | Action::Search) || !broker.backend.fast_reads() {
        return Lane::Blocking;
    }
    let Exe::Verified { hash, .. } = &peer.exe else {
        return Lane::Blocking;
    };
    match broker.policy.current() {
        Ok(p) if p.lookup(hash).is_some() => Lane::Quick(Some(p)),
        _ => Lane::Blocking,
    }
}

/// Answers STATUS (to any same-uid peer, verified or not).
pub fn status_line(broker: &Broker) -> Vec<u8> {
    broker.stats.requests.fetch_add(1, Ordering::Relaxed);
    broker.status().to_line()
}

/// Answers one parsed request line from `peer`, with the policy when the caller already read
/// it; returns the response line.
pub fn respond(
    broker: &Broker,
    peer: &Peer,
    parsed: Parsed,
    policy: Option<Arc<Snapshot>>,
) -> Vec<u8> {
    let req = match parsed {
        Ok(Incoming::Status) => return status_line(broker),
        Ok(Incoming::Request(req)) => Ok(req),
        Err(resp) => Err(resp),
    };
    broker.stats.requests.fetch_add(1, Ordering::Relaxed);
    match req {
        Ok(req) => decide(broker, peer, &req, policy).to_line(),
        Err(resp) => {
            let mut rec = base_record(peer);
            rec.id = resp.id.clone();
            finish(&mut rec, &resp);
            let _ = broker.audit.append(&rec);
            resp.to_line()
        }
    }
}

/// Audits a request line that exceeded the cap.
pub fn audit_too_large(broker: &Broker, peer: &Peer) {
    let mut rec = base_record(peer);
    rec.status = Some(Status::Error.as_str().into());
    rec.reason = Some(Reason::RequestTooLarge.as_str().into());
    let _ = broker.audit.append(&rec);
}

fn base_record(peer: &Peer) -> Record {
    let mut rec = Record::new("request", "daemon");
    rec.pid = Some(peer.pid);
    match &peer.exe {
        Exe::Verified { path, hash, .. } => {
            rec.path = Some(path.display().to_string());
            rec.hash = Some(hash.to_string());
        }
        Exe::Unverifiable { path, .. } => {
            rec.path = path.as_ref().map(|p| p.display().to_string());
        }
    }
    rec
}

fn request_record(peer: &Peer, req: &Request) -> Record {
    let mut rec = base_record(peer);
    rec.id = req.id.clone();
    rec.action = Some(req.action.as_str().into());
    rec.service = Some(req.service.clone());
    rec.mode = Some(req.mode.as_str().into());
    rec.with_targets(req.targets.iter())
}

fn finish(rec: &mut Record, resp: &Response) {
    rec.status = Some(resp.status.as_str().into());
    rec.reason = resp.reason.map(|r| r.as_str().into());
    rec.message = resp.message.clone();
}

/// Audits a refusal and returns it.
fn refuse(broker: &Broker, mut rec: Record, resp: Response) -> Response {
    finish(&mut rec, &resp);
    let _ = broker.audit.append(&rec);
    resp
}

fn decide(broker: &Broker, peer: &Peer, req: &Request, policy: Option<Arc<Snapshot>>) -> Response {
    let rec = request_record(peer, req);
    let id = req.id.clone();
    let denied =
        |reason, message: String| Response::failure(id.clone(), Status::Denied, reason, message);
    let (path, hash, argv) = match &peer.exe {
        Exe::Verified { path, hash, argv } => (path, hash, argv),
        Exe::Unverifiable { why, .. } => {
            return refuse(broker, rec, denied(Reason::UnregisteredBinary, why.clone()));
        }
    };
    let policy = match policy.map_or_else(|| broker.policy.current(), Ok) {
        Ok(p) => p,
        Err(e) => {
            let msg = format!("{e}; every request is denied until the policy can be read");
            return refuse(broker, rec, denied(Reason::InternalError, msg));
        }
    };
    let Some(binary) = policy.lookup(hash) else {
        if policy.is_held(hash) {
            let message = format!(
                "the policy entry for {} ({}) was added or changed outside keychain-auth and is not served; review and adopt it with: keychain-auth policy accept",
                path.display(),
                hash.short()
            );
            return refuse(broker, rec, denied(Reason::UnregisteredBinary, message));
        }
        let changed_from = policy.file.by_path(path).map(|b| b.hash.clone());
        let message = match &changed_from {
            Some(old) => format!(
                "{} changed since it was approved (approved {}, now {}); if you updated it, keep its permissions with: keychain-auth upgrade {}",
                path.display(),
                old.short(),
                hash.short(),
                path.display()
            ),
            None => format!(
                "{} ({}) is not an approved binary; review it with `keychain-auth list-pending` and approve it with: keychain-auth approve {}",
                path.display(),
                hash.short(),
                hash.short()
            ),
        };
        let queued = pending::record(
            &broker.paths.pending,
            Attempt {
                hash: hash.clone(),
                path: path.clone(),
                pid: peer.pid,
                argv: argv.clone(),
                action: req.action.as_str().into(),
                service: req.service.clone(),
                changed_from,
            },
        );
        if let Err(e) = queued {
            eprintln!("keychain-auth: could not record a pending caller: {e}");
        }
        return refuse(broker, rec, denied(Reason::UnregisteredBinary, message));
    };
    if let Err((reason, message)) = binary.authorize(req) {
        return refuse(broker, rec, denied(reason, message));
    }
    let outcome = exec::execute(broker.backend.as_ref(), req);
    let mut rec = rec.with_targets(outcome.targets.iter());
    finish(&mut rec, &outcome.response);
    if let Err(e) = broker.audit.append(&rec) {
        // What cannot be audited is not granted: take a change back, withhold a read.
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
        return Response::failure(id, Status::Error, Reason::InternalError, message);
    }
    outcome.response
}
