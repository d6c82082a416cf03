//! The state every session shares: paths, store, policy, hash and writer caches, identity
//! context, connection caps, approvals, audit log, counters and limits.

use super::admission::Admissions;
use super::{approval, known};
use crate::audit::{AuditLog, KeySource};
use crate::backend::Backend;
use crate::identity::{self, HashCache};
use crate::paths::Paths;
use crate::policy::cache::PolicyCache;
use crate::protocol::StatusInfo;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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
    /// The policy as of the latest change on disk (its own changes at once, anyone else's as
    /// soon as the file watch reports them).
    pub policy: PolicyCache,
    /// Executable hashes already computed.
    pub hashes: HashCache,
    /// Writers verified recently, across connections.
    pub known: known::KnownWriters,
    /// The daemon's own view (its user namespace) that callers are compared against.
    pub identity: identity::Context,
    /// Connection caps.
    pub admissions: Arc<Admissions>,
    /// Attached approvers and held requests (SPEC §11).
    pub approvals: approval::Approvals,
    /// Repeated refusals being counted instead of written one by one.
    pub refusals: super::refusals::Refusals,
    own_hash: std::sync::OnceLock<Option<crate::identity::BinaryHash>>,
    /// The audit log.
    pub audit: AuditLog,
    /// Counters.
    pub stats: Stats,
    /// Limits.
    pub limits: Limits,
    /// Held while a request under a grant with a number of uses is checked, carried out and
    /// counted.
    pub(crate) counted_uses: std::sync::Mutex<()>,
    started: Instant,
}

impl Broker {
    /// The shared state of a broker serving `paths` from `backend`, auditing to `audit`.
    pub(crate) fn new(
        paths: Paths,
        backend: Arc<dyn Backend>,
        audit: AuditLog,
        limits: Limits,
    ) -> Broker {
        Broker {
            approvals: approval::Approvals::new(),
            refusals: super::refusals::Refusals::default(),
            own_hash: std::sync::OnceLock::new(),
            identity: identity::Context::current(),
            admissions: Admissions::new(
                limits.max_connections,
                limits.max_per_process,
                limits.reserve,
            ),
            policy: PolicyCache::sealed(&paths, KeySource::Store(backend.clone())).watched(),
            paths,
            backend,
            hashes: HashCache::new(),
            known: known::KnownWriters::default(),
            audit,
            stats: Stats::default(),
            limits,
            counted_uses: std::sync::Mutex::new(()),
            started: Instant::now(),
        }
    }

    /// The hash of the broker's own executable: only keychain-auth itself may subscribe as an
    /// approver. `None` when it cannot be read (then nobody may).
    pub fn own_hash(&self) -> Option<&crate::identity::BinaryHash> {
        self.own_hash
            .get_or_init(|| {
                std::fs::File::open("/proc/self/exe")
                    .and_then(|f| self.hashes.hash_file(&f))
                    .ok()
            })
            .as_ref()
    }

    /// Where admin changes are made inside this broker: its own audit log, store key and
    /// policy cache (SPEC §19), never a second copy opened from the paths.
    pub fn world(&self) -> crate::admin::World<'_> {
        crate::admin::World::Held {
            paths: &self.paths,
            audit: &self.audit,
            keys: KeySource::Store(self.backend.clone()),
            policy: &self.policy,
        }
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
