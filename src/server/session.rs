//! One connection: admit it, then answer its request lines in order until it closes, goes idle
//! or sends an over-long line. Every line is answered as the process that wrote it (per-message
//! credentials, [`frame`]): the connection remembers each writer it verified, pinned by its
//! pidfd, and re-checks before every request that it still runs the same executable with no
//! tracer attached. A process that executes another program while connected is refused for the
//! rest of the connection.

use super::Broker;
use super::admission::Slot;
use super::frame::{Frame, LineReader, Writer};
use super::handler;
use crate::audit::Record;
use crate::identity::process::FileId;
use crate::identity::sender::{self, Sender};
use crate::identity::{self, Connector, Exe, Hashing, IdentityError, Peer};
use crate::protocol::{Incoming, Reason, Response, Status};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

/// A reserve (STATUS-only) connection is closed after this long without a line.
const RESERVE_IDLE: Duration = Duration::from_secs(2);
/// Most distinct writers one connection may have; more is not a client, it is a probe.
const MAX_WRITERS: usize = 16;

/// Keeps the open-connection gauge right however the session ends.
struct Gauge(Arc<Broker>);

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0.stats.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A writer this connection verified, pinned by the chunk that carried its pidfd.
struct Known {
    peer: Arc<Peer>,
    pin: Arc<Sender>,
}

/// One admitted connection's state.
struct Session {
    broker: Arc<Broker>,
    connector: Connector,
    /// What the connecting process ran when the connection was accepted.
    connect_exe: Option<FileId>,
    known: Vec<Known>,
}

/// Serves one accepted connection to the end: checks the connecting uid, admits it under the
/// caps, and answers its lines.
pub async fn serve(mut stream: UnixStream, broker: Arc<Broker>) {
    let connector = match identity::connector(stream.as_fd()) {
        Ok(c) => c,
        Err(e) => return refused(&broker, &e),
    };
    let ticket = match broker.admissions.admit(connector.pid) {
        Ok(t) => t,
        Err(why) => return refuse_busy(stream, &broker, why).await,
    };
    // Inherited from the listener; set again so no kernel leaves a window without credentials.
    if let Err(e) = sender::enable(stream.as_fd()) {
        let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EINVAL));
        return refused(&broker, &IdentityError::Credentials(errno));
    }
    broker.stats.connections.fetch_add(1, Ordering::Relaxed);
    let _gauge = Gauge(broker.clone());
    let mut session = Session {
        connect_exe: identity::process::exe_id(connector.pid).ok(),
        connector,
        broker,
        known: Vec::new(),
    };
    let reserve = ticket.slot == Slot::Reserve;
    let idle = if reserve {
        RESERVE_IDLE
    } else {
        session.broker.limits.idle_timeout
    };
    let max = session.broker.limits.max_line;
    let mut lines = LineReader::new();
    loop {
        let frame = match tokio::time::timeout(idle, lines.next(&stream, max)).await {
            Ok(Ok(f)) => f,
            Err(_) | Ok(Err(_)) => return,
        };
        let (writer, too_large) = match frame {
            Frame::Eof => return,
            Frame::Line(w) => (w, false),
            Frame::TooLarge(w) => (w, true),
        };
        let Some(sender) = session.sender(writer) else {
            return;
        };
        if too_large {
            let r = Response::failure(
                None,
                Status::Error,
                Reason::RequestTooLarge,
                format!("request line is longer than {max} bytes; the connection is closed"),
            );
            if let Some(peer) = session.peer(&sender).await {
                handler::audit_too_large(&session.broker, &peer);
            }
            let _ = stream.write_all(&r.to_line()).await;
            let _ = stream.shutdown().await;
            return;
        }
        let parsed = handler::parse(lines.line());
        let reply = if matches!(parsed, Ok(Incoming::Status)) {
            handler::status_line(&session.broker)
        } else if reserve {
            let why = format!(
                "the broker is serving its maximum of {} connections; try again shortly",
                session.broker.limits.max_connections
            );
            return refuse_busy(stream, &session.broker, why).await;
        } else {
            let Some(peer) = session.peer(&sender).await else {
                return;
            };
            answer(&session.broker, peer, parsed).await
        };
        if stream.write_all(&reply).await.is_err() {
            return;
        }
    }
}

impl Session {
    /// The single, same-uid process that wrote a line; `None` (connection dropped, audited)
    /// otherwise.
    fn sender(&self, writer: Writer) -> Option<Arc<Sender>> {
        match writer {
            Writer::One(s) if s.uid == nix::unistd::geteuid().as_raw() => Some(s),
            Writer::One(s) => {
                refused(
                    &self.broker,
                    &IdentityError::ForeignUid {
                        uid: s.uid,
                        pid: s.pid,
                    },
                );
                None
            }
            Writer::Unknown => {
                refused(&self.broker, &IdentityError::NoSender);
                None
            }
            Writer::Mixed => {
                let mut rec = Record::new("connection_refused", "daemon");
                rec.status = Some("denied".into());
                rec.pid = Some(self.connector.pid);
                rec.message = Some(
                    "a request line was written by more than one process; the connection was closed"
                        .into(),
                );
                let _ = self.broker.audit.append(&rec);
                None
            }
        }
    }

    /// The verified identity of the writer `s`; `None` when it cannot be served at all (gone,
    /// too many writers).
    async fn peer(&mut self, s: &Arc<Sender>) -> Option<Arc<Peer>> {
        if let Some(i) = self.known.iter().position(|k| k.peer.pid == s.pid) {
            let pinned_alive = self.known[i]
                .pin
                .pidfd
                .as_ref()
                .is_none_or(|fd| !identity::exited(fd.as_fd()));
            if pinned_alive {
                let k = &mut self.known[i];
                if let Err(why) = identity::revalidate(&k.peer) {
                    // Sticky: an exec or a tracer is not forgotten on this connection.
                    k.peer = Arc::new(unverifiable(&k.peer, why));
                }
                return Some(k.peer.clone());
            }
            // The process it was is gone; whoever has its pid now is identified afresh.
            self.known.swap_remove(i);
        }
        if self.known.len() >= MAX_WRITERS {
            let mut rec = Record::new("connection_refused", "daemon");
            rec.status = Some("denied".into());
            rec.pid = Some(s.pid);
            rec.message = Some(format!(
                "more than {MAX_WRITERS} processes wrote on one connection; it was closed"
            ));
            let _ = self.broker.audit.append(&rec);
            return None;
        }
        let mut peer = match self.identify(s).await {
            Ok(p) => p,
            Err(e) => {
                refused(&self.broker, &e);
                return None;
            }
        };
        if s.pid == self.connector.pid
            && let (Some(before), Exe::Verified { file, .. }) = (self.connect_exe, &peer.exe)
            && before != *file
        {
            peer = unverifiable(
                &peer,
                format!(
                    "pid {} started another program (execve) after it connected; its requests on this connection are refused: reconnect",
                    s.pid
                ),
            );
        }
        let peer = Arc::new(peer);
        self.known.push(Known {
            peer: peer.clone(),
            pin: s.clone(),
        });
        Some(peer)
    }

    /// Identifies `s` on the async worker when its executable's hash is cached, else off it.
    async fn identify(&self, s: &Arc<Sender>) -> Result<Peer, IdentityError> {
        let b = &self.broker;
        // Interpreters config.json adds; a policy that cannot be read denies everything anyway.
        let extra = b
            .policy
            .current()
            .map(|p| p.file.interpreters.clone())
            .unwrap_or_default();
        let fd = s.pidfd.as_ref().map(|f| f.as_fd());
        let cheap = identity::identify_with(
            s.pid,
            s.uid,
            fd,
            &b.identity,
            &b.hashes,
            Hashing::CachedOnly,
            &extra,
        )?;
        if let Some(p) = cheap {
            return Ok(p);
        }
        let pid = s.pid;
        let (b, s) = (self.broker.clone(), s.clone());
        tokio::task::spawn_blocking(move || {
            let fd = s.pidfd.as_ref().map(|f| f.as_fd());
            identity::identify_with(
                s.pid,
                s.uid,
                fd,
                &b.identity,
                &b.hashes,
                Hashing::Allowed,
                &extra,
            )
        })
        .await
        .map_err(|_| IdentityError::Exited(pid))?
        .and_then(|p| p.ok_or(IdentityError::Exited(pid)))
    }
}

/// `peer` refused for `why`, keeping its path for the audit record.
fn unverifiable(peer: &Peer, why: String) -> Peer {
    let path = match &peer.exe {
        Exe::Verified { path, .. } => Some(path.clone()),
        Exe::Unverifiable { path, .. } => path.clone(),
    };
    Peer {
        uid: peer.uid,
        pid: peer.pid,
        exe: Exe::Unverifiable { path, why },
    }
}

/// Answers a request line: on the async worker when that cannot block, else off it.
async fn answer(broker: &Arc<Broker>, peer: Arc<Peer>, parsed: handler::Parsed) -> Vec<u8> {
    if let handler::Lane::Quick(policy) = handler::lane(broker, &peer, &parsed) {
        return handler::respond(broker, &peer, parsed, policy);
    }
    let b = broker.clone();
    tokio::task::spawn_blocking(move || handler::respond(&b, &peer, parsed, None))
        .await
        .unwrap_or_else(|_| {
            Response::failure(
                None,
                Status::Error,
                Reason::InternalError,
                "the request could not be processed",
            )
            .to_line()
        })
}

/// Audits a connection that is dropped because its peer cannot be served.
fn refused(broker: &Broker, e: &IdentityError) {
    let mut rec = Record::new("connection_refused", "daemon");
    rec.status = Some("denied".into());
    rec.message = Some(e.to_string());
    match e {
        IdentityError::ForeignUid { uid, pid } => {
            rec.uid = Some(*uid);
            rec.pid = Some(*pid);
        }
        IdentityError::Exited(pid) => rec.pid = Some(*pid),
        IdentityError::Credentials(_) | IdentityError::NoSender => {}
    }
    let _ = broker.audit.append(&rec);
}

/// Answers a connection that cannot be admitted with one line and closes it.
async fn refuse_busy(mut stream: UnixStream, broker: &Broker, why: String) {
    let mut rec = Record::new("connection_refused", "daemon");
    rec.status = Some("error".into());
    rec.message = Some(why.clone());
    let _ = broker.audit.append(&rec);
    let r = Response::failure(None, Status::Error, Reason::InternalError, why);
    let _ = stream.write_all(&r.to_line()).await;
    let _ = stream.shutdown().await;
}
