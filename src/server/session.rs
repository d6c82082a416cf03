//! One connection: identify the peer once (its uid at once, its executable's hash in the
//! background when not cached), then answer its request lines in order until it closes, goes
//! idle or sends an over-long line.

use super::Broker;
use super::frame::{self, Frame};
use super::handler;
use crate::audit::Record;
use crate::identity::{self, Hashing, IdentityError, Peer};
use crate::protocol::{Incoming, Reason, Response, Status};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::task::JoinHandle;

/// Keeps the open-connection gauge right however the session ends.
struct Gauge(Arc<Broker>);

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0.stats.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What is known of the peer: its identity, or the background task still hashing its
/// executable (a large binary seen for the first time).
enum Identity {
    Known(Arc<Peer>),
    Hashing(JoinHandle<Result<Option<Peer>, IdentityError>>),
}

impl Identity {
    /// Checks the peer's credentials on the async worker and its executable against the hash
    /// cache; on a cache miss, hashing starts off the workers. `None` when the peer is refused
    /// (another uid, gone).
    fn start(stream: &UnixStream, broker: &Arc<Broker>) -> Option<Identity> {
        use std::os::fd::AsFd;
        match identity::identify(stream.as_fd(), &broker.hashes, Hashing::CachedOnly) {
            Ok(Some(peer)) => Some(Identity::Known(Arc::new(peer))),
            Ok(None) => {
                // The hashing task gets its own descriptor of the same socket.
                let fd = stream.as_fd().try_clone_to_owned().ok()?;
                let b = broker.clone();
                Some(Identity::Hashing(tokio::task::spawn_blocking(move || {
                    identity::identify(fd.as_fd(), &b.hashes, Hashing::Allowed)
                })))
            }
            Err(e) => {
                refused(broker, e);
                None
            }
        }
    }

    /// The verified peer, waiting for the hash if need be; `None` when it cannot be verified.
    async fn peer(&mut self, broker: &Broker) -> Option<Arc<Peer>> {
        if let Identity::Hashing(task) = self {
            match task.await {
                Ok(Ok(Some(peer))) => *self = Identity::Known(Arc::new(peer)),
                Ok(Err(e)) => {
                    refused(broker, e);
                    return None;
                }
                // Hashing::Allowed never answers None; a failed task verifies nothing either.
                Ok(Ok(None)) | Err(_) => return None,
            }
        }
        match self {
            Identity::Known(peer) => Some(peer.clone()),
            Identity::Hashing(_) => None,
        }
    }
}

/// Serves one accepted connection to the end. STATUS is answered at once; every other line waits
/// until the peer is verified.
pub async fn serve(stream: UnixStream, broker: Arc<Broker>) {
    broker.stats.connections.fetch_add(1, Ordering::Relaxed);
    let _gauge = Gauge(broker.clone());
    let Some(mut identity) = Identity::start(&stream, &broker) else {
        return;
    };
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::with_capacity(1024);
    loop {
        let next = tokio::time::timeout(
            broker.limits.idle_timeout,
            frame::read_line(&mut reader, &mut line, broker.limits.max_line),
        )
        .await;
        let reply = match next {
            Err(_) | Ok(Err(_)) | Ok(Ok(Frame::Eof)) => return,
            Ok(Ok(Frame::TooLarge)) => {
                let r = Response::failure(
                    None,
                    Status::Error,
                    Reason::RequestTooLarge,
                    format!(
                        "request line is longer than {} bytes; the connection is closed",
                        broker.limits.max_line
                    ),
                );
                if let Some(peer) = identity.peer(&broker).await {
                    handler::audit_too_large(&broker, &peer);
                }
                let _ = write.write_all(&r.to_line()).await;
                let _ = write.shutdown().await;
                return;
            }
            Ok(Ok(Frame::Line)) => {
                let parsed = handler::parse(&line);
                if matches!(parsed, Ok(Incoming::Status)) {
                    handler::status_line(&broker)
                } else {
                    let Some(peer) = identity.peer(&broker).await else {
                        return;
                    };
                    answer(&broker, peer, parsed).await
                }
            }
        };
        if write.write_all(&reply).await.is_err() {
            return;
        }
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
fn refused(broker: &Broker, e: IdentityError) {
    let mut rec = Record::new("connection_refused", "daemon");
    rec.status = Some("denied".into());
    rec.message = Some(e.to_string());
    match e {
        IdentityError::ForeignUid { uid, pid } => {
            rec.uid = Some(uid);
            rec.pid = Some(pid);
        }
        IdentityError::Exited(pid) => rec.pid = Some(pid),
        IdentityError::Credentials(_) => {}
    }
    let _ = broker.audit.append(&rec);
}

/// Answers a connection over the cap with one line and closes it.
pub async fn refuse_busy(mut stream: UnixStream, broker: Arc<Broker>) {
    let mut rec = Record::new("connection_refused", "daemon");
    rec.status = Some("error".into());
    rec.message = Some(format!(
        "more than {} connections open",
        broker.limits.max_connections
    ));
    let _ = broker.audit.append(&rec);
    let r = Response::failure(
        None,
        Status::Error,
        Reason::InternalError,
        format!(
            "the broker is serving its maximum of {} connections; try again shortly",
            broker.limits.max_connections
        ),
    );
    let _ = stream.write_all(&r.to_line()).await;
    let _ = stream.shutdown().await;
}
