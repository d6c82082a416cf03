//! One connection: identify the peer once, then answer its request lines in order until it
//! closes, goes idle or sends an over-long line.

use super::Broker;
use super::frame::{self, Frame};
use super::handler;
use crate::audit::Record;
use crate::identity::{self, Hashing, IdentityError, Peer};
use crate::protocol::{Reason, Response, Status};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Keeps the open-connection gauge right however the session ends.
struct Gauge(Arc<Broker>);

impl Drop for Gauge {
    fn drop(&mut self) {
        self.0.stats.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one accepted connection to the end.
pub async fn serve(stream: UnixStream, broker: Arc<Broker>) {
    broker.stats.connections.fetch_add(1, Ordering::Relaxed);
    let _gauge = Gauge(broker.clone());
    let Some((stream, peer)) = identify(stream, &broker).await else {
        return;
    };
    let peer = Arc::new(peer);
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
                handler::audit_too_large(&broker, &peer);
                let _ = write.write_all(&r.to_line()).await;
                let _ = write.shutdown().await;
                return;
            }
            Ok(Ok(Frame::Line)) => {
                let parsed = handler::parse(&line);
                if handler::is_quick(&broker, &peer, &parsed) {
                    handler::respond(&broker, &peer, parsed)
                } else {
                    let (b, p) = (broker.clone(), peer.clone());
                    tokio::task::spawn_blocking(move || handler::respond(&b, &p, parsed))
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
            }
        };
        if write.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// Identifies the peer: on the async worker when its executable's hash is cached, else off the
/// workers (hashing a large binary takes long). Drops (and audits) foreign users and peers that
/// vanish before verification.
async fn identify(stream: UnixStream, broker: &Arc<Broker>) -> Option<(UnixStream, Peer)> {
    use std::os::fd::AsFd;
    let quick = identity::identify(stream.as_fd(), &broker.hashes, Hashing::CachedOnly);
    let (stream, result) = match quick {
        Ok(None) => {
            let std_stream = stream.into_std().ok()?;
            let b = broker.clone();
            let (std_stream, r) = tokio::task::spawn_blocking(move || {
                let r = identity::identify(std_stream.as_fd(), &b.hashes, Hashing::Allowed);
                (std_stream, r)
            })
            .await
            .ok()?;
            (UnixStream::from_std(std_stream).ok()?, r)
        }
        other => (stream, other),
    };
    match result {
        Ok(Some(peer)) => Some((stream, peer)),
        // Hashing::Allowed never answers None; treat it as unidentifiable all the same.
        Ok(None) => None,
        Err(e) => {
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
            None
        }
    }
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
