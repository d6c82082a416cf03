//! The daemon: a tokio Unix-socket listener whose connections are sessions.
//!
//! [`Server::bind`] prepares the socket safely ([`socket`]); [`Server::run`] accepts connections
//! with a cap and error back-off, and gives each a [`session`] that identifies the peer once and
//! then answers its request lines in order through [`handler`]. The shared state is [`Broker`].
//! The dashboard embeds the same `Server` in-process.

pub mod admission;
pub mod approval;
pub mod ask;
pub mod conduit;
pub mod frame;
pub mod handler;
pub mod notify;
pub mod preflight;
pub mod session;
pub mod socket;

use crate::audit::{AuditLog, KeySource, Record, Rotation};
use crate::backend::Backend;
use crate::identity::{self, HashCache};
use crate::paths::Paths;
use crate::policy::PolicyCache;
use crate::protocol::StatusInfo;
use admission::Admissions;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::UnixListener;

/// Tunables of a running broker.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Cap on one request line (bytes, newline excluded).
    pub max_line: usize,
    /// A connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// Most connections served at once; more are refused with a message.
    pub max_connections: usize,
    /// Most connections one connecting process may hold.
    pub max_per_process: usize,
    /// STATUS-only slots kept beyond `max_connections`.
    pub reserve: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: crate::protocol::DEFAULT_MAX_LINE,
            idle_timeout: Duration::from_secs(30),
            max_connections: 512,
            max_per_process: 64,
            reserve: 16,
        }
    }
}

/// Counters reported by STATUS and shown by the dashboard.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections open now.
    pub connections: AtomicU64,
    /// Requests answered since start.
    pub requests: AtomicU64,
}

/// Everything the sessions share.
pub struct Broker {
    /// Where the files are.
    pub paths: Paths,
    /// The keychain.
    pub backend: Arc<dyn Backend>,
    /// The policy as of the latest change on disk.
    pub policy: PolicyCache,
    /// Executable hashes already computed.
    pub hashes: HashCache,
    /// The daemon's own view (its user namespace) that callers are compared against.
    pub identity: identity::Context,
    /// Connection caps.
    pub admissions: Arc<Admissions>,
    /// Attached approvers and held requests (SPEC §11).
    pub approvals: approval::Approvals,
    own_hash: std::sync::OnceLock<Option<crate::policy::BinaryHash>>,
    /// The audit log.
    pub audit: AuditLog,
    /// Counters.
    pub stats: Stats,
    /// Limits.
    pub limits: Limits,
    started: Instant,
}

impl Broker {
    /// The hash of the broker's own executable: only keychain-auth itself may subscribe as an
    /// approver. `None` when it cannot be read (then nobody may).
    pub fn own_hash(&self) -> Option<&crate::policy::BinaryHash> {
        self.own_hash
            .get_or_init(|| {
                std::fs::File::open("/proc/self/exe")
                    .and_then(|f| self.hashes.hash_file(&f))
                    .ok()
            })
            .as_ref()
    }

    /// How long a held request waits for an answer (config.json `prompt_timeout_s`).
    pub fn prompt_timeout(&self) -> Duration {
        self.policy
            .current()
            .ok()
            .and_then(|p| p.file.prompt_timeout_s)
            .map_or(approval::DEFAULT_PROMPT_TIMEOUT, |s| {
                Duration::from_secs(s.clamp(1, 3600))
            })
    }

    /// The STATUS answer.
    pub fn status(&self) -> StatusInfo {
        StatusInfo {
            kind: "STATUS".into(),
            version: crate::VERSION.into(),
            pid: std::process::id(),
            uptime_s: self.started.elapsed().as_secs(),
            backend: self.backend.kind().as_str().into(),
            connections: self.stats.connections.load(Ordering::Relaxed),
            requests: self.stats.requests.load(Ordering::Relaxed),
        }
    }
}

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
        mut limits: Limits,
    ) -> Result<Server, StartError> {
        protect_process()?;
        preflight::check(&paths)?;
        if backend.kind() == crate::backend::BackendKind::File {
            preflight::check_file_store(&paths)?;
        }
        let keys = KeySource::Store(backend.clone());
        let rotation = Rotation::from_config(&paths.config);
        let audit = AuditLog::open(&paths.audit, keys, rotation).map_err(|e| {
            StartError::Other(format!(
                "cannot open the audit log {}: {e}",
                paths.audit.display()
            ))
        })?;
        // Fetch the chain key now; when the store cannot give it yet (a locked keyring), every
        // request is refused until it can, since nothing unchained is granted.
        if let Err(e) = audit.warm_key() {
            eprintln!("keychain-auth: {e}; requests are refused until the audit key can be read");
        }
        if let Ok(p) = crate::policy::load(&paths.config)
            && let Some(max) = p.max_request_bytes
        {
            limits.max_line = max.max(1024);
        }
        let (listener, socket_id) = socket::bind(&paths.socket)?;
        identity::sender::enable(std::os::fd::AsFd::as_fd(&listener)).map_err(|e| {
            StartError::Other(format!(
                "cannot ask the kernel for per-message credentials on {}: {e}",
                paths.socket.display()
            ))
        })?;
        let broker = Arc::new(Broker {
            approvals: approval::Approvals::new(),
            own_hash: std::sync::OnceLock::new(),
            identity: identity::Context::current(),
            admissions: Admissions::new(
                limits.max_connections,
                limits.max_per_process,
                limits.reserve,
            ),
            policy: PolicyCache::sealed(&paths, KeySource::Store(backend.clone())),
            paths,
            backend,
            hashes: HashCache::new(),
            audit,
            stats: Stats::default(),
            limits,
            started: Instant::now(),
        });
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

    /// Serves until `shutdown` completes, then removes the socket file.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
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
        tokio::select! {
            () = accept_loop(&listener, &broker) => {}
            () = prune_loop(&broker) => {}
            () = shutdown => {}
        }
        socket::remove_if_ours(&broker.paths.socket, socket_id);
        let _ = broker.audit.append(&Record::daemon_stop());
    }
}

/// Removes grants whose time is up, every few seconds (they are never served in the meantime:
/// every request checks the end time itself).
async fn prune_loop(broker: &Arc<Broker>) {
    loop {
        let paths = broker.paths.clone();
        let pruned = tokio::task::spawn_blocking(move || crate::admin::prune_expired(&paths)).await;
        if let Ok(Err(e)) = pruned {
            tracing::warn!("keychain-auth: could not prune expired grants: {e}");
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// The broker protects itself (SPEC §10): non-dumpable, so no same-user process can ptrace it or
/// read its memory through `/proc/<pid>/mem`, and no core file, so no secret lands on disk if it
/// crashes.
fn protect_process() -> Result<(), StartError> {
    use nix::sys::resource::{Resource, setrlimit};
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| StartError::Other(format!("cannot make the broker non-dumpable: {e}")))?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0)
        .map_err(|e| StartError::Other(format!("cannot disable core dumps: {e}")))
}

async fn accept_loop(listener: &UnixListener, broker: &Arc<Broker>) {
    let mut backoff = Duration::from_millis(5);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(5);
                tokio::spawn(session::serve(stream, broker.clone()));
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
