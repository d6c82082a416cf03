//! The daemon: a tokio Unix-socket listener whose connections are sessions.
//!
//! [`Server::bind`] prepares the socket safely ([`socket`]); [`Server::run`] accepts connections
//! with a cap and error back-off, and gives each a [`session`] that identifies the peer once and
//! then answers its request lines in order through [`handler`]. The state they share is
//! [`Broker`]. The dashboard embeds the same `Server` in-process.

pub mod activation;
pub mod admission;
pub mod approval;
pub mod ask;
mod broker;
pub mod conduit;
pub mod frame;
pub mod front;
pub mod handler;
pub mod known;
pub mod notify;
pub mod owner_view;
pub mod preflight;
pub mod presence;
pub mod refusals;
pub mod session;
pub mod shutdown;
pub mod socket;
pub mod vault_admin;
pub mod vault_guard;

pub use broker::{Broker, Limits, Stats};

use crate::audit::{AuditLog, KeySource, Record};
use crate::backend::Backend;
use crate::identity;
use crate::paths::Paths;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Another broker answers on the socket.
    #[error("a keychain-auth daemon is already running on {socket} (pid {pid})")]
    AlreadyRunning {
        /// The socket.
        socket: String,
        /// Its pid.
        pid: u32,
    },
    /// Any other failure, with what to do.
    #[error("{0}")]
    Other(String),
}

/// A bound, not yet running broker.
pub struct Server {
    listener: UnixListener,
    broker: Arc<Broker>,
    socket_id: Option<(u64, u64)>,
}

impl Server {
    /// Binds the socket (refusing when a live daemon answers there, replacing a stale one) and
    /// opens the audit log, after the [`preflight`] checks. Must be called inside a tokio runtime.
    pub fn bind(
        paths: Paths,
        backend: Arc<dyn Backend>,
        limits: Limits,
    ) -> Result<Server, StartError> {
        Server::listen(paths, backend, limits, None)
    }

    /// [`Server::bind`] on a socket a service manager already bound and passed in
    /// ([`activation::inherited_listener`]): `paths.socket` is where it is bound. The socket file
    /// belongs to the service manager: it is neither checked for a running daemon nor removed
    /// when the server stops (the manager keeps listening and starts the daemon again on the
    /// next connection).
    pub fn adopt(
        paths: Paths,
        backend: Arc<dyn Backend>,
        limits: Limits,
        listener: std::os::unix::net::UnixListener,
    ) -> Result<Server, StartError> {
        Server::listen(paths, backend, limits, Some(listener))
    }

    fn listen(
        paths: Paths,
        backend: Arc<dyn Backend>,
        mut limits: Limits,
        inherited: Option<std::os::unix::net::UnixListener>,
    ) -> Result<Server, StartError> {
        protect_process()?;
        if inherited.is_some() {
            preflight::check_activated(&paths)?;
        } else {
            preflight::check(&paths)?;
        }
        if backend.kind() == crate::backend::BackendKind::File {
            preflight::check_file_store(&paths)?;
        }
        let keys = KeySource::Store(backend.clone());
        let settings = crate::policy::sealed::in_force(&paths, &keys);
        let rotation = crate::policy::sealed::rotation(settings.as_ref());
        let audit = AuditLog::open(&paths.audit, keys, rotation).map_err(|e| {
            StartError::Other(format!(
                "cannot open the audit log {}: {e}",
                paths.audit.display()
            ))
        })?;
        // Fetch the chain key now; when the store cannot give it yet (a locked keyring), every
        // request is refused until it can, since nothing unchained is granted.
        if let Err(e) = audit.warm_key() {
            tracing::warn!(
                "keychain-auth: {e}; requests are refused until the audit key can be read"
            );
        }
        // A limit from an edit not yet accepted (or not vouched for) is not applied.
        if let Some((p, true)) = &settings
            && let Some(max) = p.max_request_bytes
        {
            limits.max_line = max.max(1024);
        }
        let (listener, socket_id) = match inherited {
            Some(std_listener) => (socket::adopt(std_listener)?, None),
            None => socket::bind(&paths.socket)?,
        };
        identity::sender::enable(std::os::fd::AsFd::as_fd(&listener)).map_err(|e| {
            StartError::Other(format!(
                "cannot ask the kernel for per-message credentials on {}: {e}",
                paths.socket.display()
            ))
        })?;
        // From here on this broker is the audit log's only writer (the CLI sends it its
        // changes): no lock round trip, no state read or write per record.
        // Another process holding the lock now (a stopped CLI, or a hostile `flock`) does not
        // keep the broker from starting: it then takes the lock for every record instead.
        if let Err(e) = audit.hold() {
            tracing::warn!(
                "keychain-auth: warning: another process holds the audit log's lock ({e}); every record waits for it"
            );
        }
        backend.watch_for_changes();
        let broker = Arc::new(Broker::new(paths, backend, audit, limits));
        Ok(Server {
            listener,
            broker,
            socket_id,
        })
    }

    /// The shared state (for the dashboard's embedded mode).
    pub fn broker(&self) -> Arc<Broker> {
        self.broker.clone()
    }

    /// Serves until `stop` completes; then drains the sessions ([`shutdown`]), removes the
    /// socket file and audits "stop".
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let Server {
            listener,
            broker,
            socket_id,
        } = self;
        let start = Record::daemon_start(format!(
            "listening on {} with the {}",
            broker.paths.socket.display(),
            broker.backend.describe()
        ));
        let _ = broker.audit.append(&start);
        let drain = shutdown::Drain::new();
        tokio::select! {
            () = accept_loop(&listener, &broker, &drain) => {}
            () = prune_loop(&broker) => {}
            () = flush_loop(&broker) => {}
            () = refusals_loop(&broker) => {}
            () = vault_guard::idle_loop(&broker) => {}
            () = vault_guard::suspend_loop(&broker) => {}
            () = stop => {}
        }
        // Stop accepting, then let the sessions finish (see `shutdown`).
        drop(listener);
        let drained = drain.drain(shutdown::DRAIN_LIMIT).await;
        socket::remove_if_ours(&broker.paths.socket, socket_id);
        for r in broker.refusals.all() {
            let _ = broker.audit.append(&r);
        }
        let busy = (!drained).then(|| {
            format!(
                "stopped with sessions still busy after {} s",
                shutdown::DRAIN_LIMIT.as_secs()
            )
        });
        let _ = broker.audit.append(&Record::daemon_stop(busy));
        if let Err(e) = broker.audit.flush_state() {
            tracing::warn!("keychain-auth: could not write the audit state: {e}");
        }
    }
}

/// How often the only writer brings `audit.state` up to date (see [`AuditLog::hold`]).
pub const STATE_FLUSH: Duration = Duration::from_secs(1);

/// Writes `audit.state` once a second when records were appended since.
async fn flush_loop(broker: &Arc<Broker>) {
    loop {
        tokio::time::sleep(STATE_FLUSH).await;
        let b = broker.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || b.audit.flush_state()).await {
            tracing::warn!("keychain-auth: could not write the audit state: {e}");
        }
    }
}

/// Removes grants whose time is up, every few seconds (they are never served in the meantime:
/// every request checks the end time itself).
async fn prune_loop(broker: &Arc<Broker>) {
    loop {
        let b = broker.clone();
        let pruned =
            tokio::task::spawn_blocking(move || crate::admin::prune_expired(&b.world())).await;
        if let Ok(Err(e)) = pruned {
            tracing::warn!("keychain-auth: could not prune expired grants: {e}");
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Writes the counted record of every window of repeated refusals that has passed, every few
/// seconds ([`refusals`]).
async fn refusals_loop(broker: &Arc<Broker>) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let b = broker.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for r in b.refusals.expired() {
                let _ = b.audit.append(&r);
            }
        })
        .await;
    }
}

/// The broker protects itself (SPEC §10): non-dumpable, so no same-user process can ptrace it or
/// read its memory through `/proc/<pid>/mem`, and no core file, so no secret lands on disk if it
/// crashes.
///
/// It also raises its descriptor limit to the hard limit (at most 65,536): every connection, and
/// every writer it verified (pidfd, `/proc/<pid>`, `status`, `environ`), holds descriptors, and the default soft
/// limit of 1,024 would refuse callers long before the 512-connection cap.
fn protect_process() -> Result<(), StartError> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| StartError::Other(format!("cannot make the broker non-dumpable: {e}")))?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0)
        .map_err(|e| StartError::Other(format!("cannot disable core dumps: {e}")))?;
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let want = hard.min(65_536);
        if soft < want
            && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, want, hard)
        {
            tracing::warn!("keychain-auth: cannot raise the descriptor limit to {want}: {e}");
        }
    }
    Ok(())
}

async fn accept_loop(listener: &UnixListener, broker: &Arc<Broker>, drain: &shutdown::Drain) {
    let mut backoff = Duration::from_millis(5);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(5);
                tokio::spawn(session::serve(stream, broker.clone(), drain.subscribe()));
            }
            Err(e) => {
                // EMFILE/ENFILE and friends: wait for descriptors to free up instead of spinning.
                tracing::warn!("keychain-auth: accept failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}
