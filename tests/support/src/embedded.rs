//! A broker embedded in the test process, as the dashboard runs it: the process can then be
//! the approver of live approval. Callers stay real client processes on the real socket.

use crate::Sandbox;
use keychain_auth::admin::{Done, Grants, Op, Source};
use keychain_auth::backend::file::FileStore;
use keychain_auth::paths::Paths;
use keychain_auth::server::{Broker, Limits, Server};
use std::sync::Arc;

/// A running embedded broker on the file store of `env`; stopped when dropped.
pub struct EmbeddedBroker {
    /// The shared state (approvals, policy, …).
    pub broker: Arc<Broker>,
    /// The runtime it runs on.
    pub rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Binds the socket of `env` and serves it on a two-worker runtime.
    pub fn start(env: &Sandbox) -> EmbeddedBroker {
        EmbeddedBroker::start_with(env, Limits::default())
    }

    /// [`EmbeddedBroker::start`] with other connection limits.
    pub fn start_with(env: &Sandbox, limits: Limits) -> EmbeddedBroker {
        let backend = Arc::new(FileStore::new(&env.file_store()));
        EmbeddedBroker::start_on(env, backend, limits)
    }

    /// The paths of `env` as the broker sees them.
    pub fn paths(env: &Sandbox) -> Paths {
        Paths {
            socket: env.socket.clone(),
            config: env.config(),
            pending: env.pending(),
            audit: env.audit(),
            file_store: env.file_store(),
            vault: env.audit().with_file_name("vault"),
        }
    }

    /// The vault of `env` (made by `keychain-auth init`), as this process's store: locked
    /// until something unlocks it (the broker's presence check, or the test).
    pub fn vault(env: &Sandbox) -> Arc<keychain_auth::backend::vault::VaultStore> {
        keychain_auth::backend::vault::VaultStore::shared(&EmbeddedBroker::paths(env).vault)
    }

    /// [`EmbeddedBroker::start`] on another store (for instance [`EmbeddedBroker::vault`]).
    pub fn start_on(
        env: &Sandbox,
        backend: Arc<dyn keychain_auth::backend::Backend>,
        limits: Limits,
    ) -> EmbeddedBroker {
        let paths = Paths {
            socket: env.socket.clone(),
            config: env.config(),
            pending: env.pending(),
            audit: env.audit(),
            file_store: env.file_store(),
            vault: env.audit().with_file_name("vault"),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (broker, served) = rt.block_on(async {
            let server = Server::bind(paths, backend, limits).expect("bind");
            let broker = server.broker();
            let served = tokio::spawn(server.run(async {
                let _ = stopped.await;
            }));
            (broker, served)
        });
        EmbeddedBroker {
            broker,
            rt,
            stop: Some(stop),
            served: Some(served),
        }
    }

    /// Stops the broker and waits until `run` has returned (sessions drained, socket removed,
    /// "stop" audited).
    pub fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(served) = self.served.take() {
            self.rt.block_on(served).expect("the server task");
        }
    }
}

impl EmbeddedBroker {
    /// Carries out an admin change in this broker, as the CLI's admin request would (the CLI
    /// sends changes only to a broker that runs keychain-auth's own executable, and this test
    /// process is not one): `Source::Cli` in the audit log.
    pub fn admin(&self, op: Op) -> Done {
        op.run(&self.broker.world(), Source::Cli)
            .unwrap_or_else(|e| panic!("admin change refused: {e}"))
    }

    /// Registers `client` by path with `grants` (the in-process `keychain-auth register`).
    pub fn register(&self, client: &std::path::Path, grants: Grants) {
        self.admin(Op::Register {
            path: client.to_path_buf(),
            grants,
        });
    }

    /// Adopts config.json as it is now (the in-process `keychain-auth policy accept --yes`).
    pub fn accept_config(&self) {
        keychain_auth::admin::accept_as_is(&self.broker.world())
            .unwrap_or_else(|e| panic!("policy accept refused: {e}"));
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
