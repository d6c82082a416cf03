//! Shutdown that drains (tokio mini-redis's pattern). When the broker is asked to stop, it
//! stops accepting, tells every session, and waits for them: a session that is answering a
//! line finishes and sends its answer, one waiting for a line stops waiting, and a held
//! request is answered with a refusal ("the broker is stopping"). Only when every session has
//! ended (or [`DRAIN_LIMIT`] has passed) is the socket removed and "stop" audited.

use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The longest the broker waits for its sessions (a request stuck in a slow keyring must not
/// keep a stopped daemon alive).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// A session's view of the shutdown signal.
#[derive(Debug, Clone)]
pub struct Shutdown {
    notify: watch::Receiver<bool>,
    /// Held while the session runs; the broker waits until every copy is dropped.
    _drain: mpsc::Sender<()>,
}

impl Shutdown {
    /// Whether the broker is stopping.
    pub fn is_shutdown(&self) -> bool {
        *self.notify.borrow()
    }

    /// Completes once the broker is stopping (at once if it already is).
    pub async fn recv(&mut self) {
        // An error means the broker is gone: stopping too.
        let _ = self.notify.wait_for(|stopping| *stopping).await;
    }
}

/// The broker's side: hands out [`Shutdown`]s, then signals and waits.
#[derive(Debug)]
pub struct Drain {
    notify: watch::Sender<bool>,
    drain_tx: mpsc::Sender<()>,
    drain_rx: mpsc::Receiver<()>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain::new()
    }
}

impl Drain {
    /// Nothing stopping yet.
    pub fn new() -> Drain {
        let (notify, _) = watch::channel(false);
        let (drain_tx, drain_rx) = mpsc::channel(1);
        Drain {
            notify,
            drain_tx,
            drain_rx,
        }
    }

    /// A signal for one session.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            notify: self.notify.subscribe(),
            _drain: self.drain_tx.clone(),
        }
    }

    /// Tells every session and waits until all have ended, at most `limit`; true when they
    /// all did.
    pub async fn drain(self, limit: Duration) -> bool {
        let Drain {
            notify,
            drain_tx,
            mut drain_rx,
        } = self;
        let _ = notify.send(true);
        drop(drain_tx);
        // `recv` yields `None` once every session's sender is dropped (none sends).
        tokio::time::timeout(limit, drain_rx.recv()).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_every_session_to_finish() {
        let drain = Drain::new();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<&str>();
        for name in ["a", "b"] {
            let mut s = drain.subscribe();
            let done = done_tx.clone();
            tokio::spawn(async move {
                s.recv().await;
                assert!(s.is_shutdown());
                // Finishing the line in hand takes a moment.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = done.send(name);
            });
        }
        drop(done_tx);
        assert!(
            drain.drain(Duration::from_secs(5)).await,
            "both ended in time"
        );
        let mut ended = vec![done_rx.recv().await, done_rx.recv().await];
        ended.sort();
        assert_eq!(
            ended,
            vec![Some("a"), Some("b")],
            "both finished before drain returned"
        );
    }

    #[tokio::test]
    async fn a_session_that_does_not_end_is_given_up_on() {
        let drain = Drain::new();
        let stuck = drain.subscribe();
        assert!(!drain.drain(Duration::from_millis(50)).await);
        drop(stuck);
    }
}
