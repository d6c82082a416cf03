//! A broker embedded in the test process, as the dashboard runs it: the process can then be
//! the approver of live approval. Callers stay real client processes on the real socket.

use crate::Sandbox;
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
        let backend = Arc::new(FileStore::new(&paths.file_store));
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

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
