//! The one seam between the dashboard and a broker: embedded (the same server and backends,
//! in-process, stopped when the dashboard quits) or connected (a broker already answering on
//! the socket, asked for STATUS).

use crate::paths::Paths;
use crate::protocol::StatusInfo;
use crate::server::{Limits, Server};
use std::time::Duration;

/// How `keychain-auth tui` finds its broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeChoice {
    /// Connect when a broker answers, else embed one.
    Auto,
    /// Embed; fail when a broker already runs.
    Embed,
    /// Connect; fail when none answers.
    Connect,
}

/// The broker the dashboard shows.
pub enum Broker {
    /// Running in this process.
    Embedded {
        /// Its shared state (counters).
        state: std::sync::Arc<crate::server::Broker>,
        /// The runtime serving it.
        runtime: tokio::runtime::Runtime,
        /// Stops it.
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        /// The server task: done once its sessions drained, the socket is removed and "stop"
        /// is audited.
        served: tokio::task::JoinHandle<()>,
        /// The backend selection's notice (fallback to the file store, locked keyring).
        notice: Option<String>,
        /// The store chosen.
        kind: crate::backend::BackendKind,
    },
    /// Another process, reached over the socket.
    Connected {
        /// The socket.
        socket: std::path::PathBuf,
    },
}

impl Broker {
    /// Carries out an admin change from the dashboard: in the embedded broker's own state, or
    /// sent to the connected broker as an admin request.
    ///
    /// While a vault is served, a change that widens access needs `passphrase` (presence, typed
    /// for this change): the embedded broker checks it here, a connected one when the admin
    /// request arrives. Without it, nothing is changed.
    pub fn carry(
        &self,
        paths: &Paths,
        op: crate::admin::Op,
        passphrase: Option<&super::state::Secret>,
    ) -> Result<crate::admin::Done, String> {
        let source = crate::admin::Source::Dashboard;
        match self {
            Broker::Embedded { state, .. } => {
                if op.widens() && crate::server::presence::required(state) {
                    let Some(p) = passphrase else {
                        return Err("this broker serves a vault: a change that widens access needs the vault passphrase; nothing was changed".into());
                    };
                    let pid = i32::try_from(std::process::id()).unwrap_or(0);
                    crate::server::presence::prove(
                        state,
                        p.expose().as_bytes(),
                        pid,
                        "a change made in the embedded dashboard",
                    )
                    .map_err(|e| format!("{e}; nothing was changed"))?;
                }
                op.run(&state.world(), source).map_err(|e| e.to_string())
            }
            Broker::Connected { .. } => crate::control::carry(
                paths,
                source,
                op,
                passphrase.map(super::state::Secret::expose),
            )
            .map_err(|e| e.to_string()),
        }
    }

    /// The Secrets view's list: every service's targets and attributes (never a value). With a
    /// vault, `passphrase` is needed and checked (by the embedded broker here, or the daemon).
    pub fn secrets_list(
        &self,
        passphrase: Option<&super::state::Secret>,
    ) -> Result<Vec<crate::server::owner_view::OwnerService>, String> {
        match self {
            Broker::Embedded { state, .. } => crate::server::owner_view::list(
                state,
                passphrase.map(|p| p.expose().as_bytes()),
                own_pid(),
            ),
            Broker::Connected { socket } => {
                let mut line = serde_json::json!({"type": "OWNER", "op": "ls"});
                if let Some(p) = passphrase {
                    line["passphrase"] = p.expose().into();
                }
                let reply = owner_request(socket, &line)?;
                reply
                    .services
                    .clone()
                    .ok_or_else(|| "the broker sent no list".to_string())
            }
        }
    }

    /// One value for the Secrets view (with a vault, after `passphrase` was checked).
    pub fn secret_get(
        &self,
        service: &str,
        target: &str,
        passphrase: Option<&super::state::Secret>,
    ) -> Result<super::state::Secret, String> {
        match self {
            Broker::Embedded { state, .. } => crate::server::owner_view::get(
                state,
                service,
                target,
                passphrase.map(|p| p.expose().as_bytes()),
                own_pid(),
            )
            .map(|v| super::state::Secret::of(&v)),
            Broker::Connected { socket } => {
                let mut line = serde_json::json!({"type": "OWNER", "op": "get", "service": service, "target": target});
                if let Some(p) = passphrase {
                    line["passphrase"] = p.expose().into();
                }
                let reply = owner_request(socket, &line)?;
                reply
                    .value
                    .as_deref()
                    .map(super::state::Secret::of)
                    .ok_or_else(|| "the broker sent no value".to_string())
            }
        }
    }

    /// Connects or embeds according to `choice`; the error says why neither is possible.
    pub fn open(paths: &Paths, choice: ModeChoice) -> Result<Broker, String> {
        // Nothing listening fails at once; a listener gets time to answer: under socket
        // activation (`keychain-auth install`) this very question starts the broker, which
        // then chooses its store before it answers.
        let running = crate::client::status(&paths.socket, Duration::from_secs(10)).is_ok();
        match (choice, running) {
            (ModeChoice::Auto | ModeChoice::Connect, true) => Ok(Broker::Connected {
                socket: paths.socket.clone(),
            }),
            (ModeChoice::Connect, false) => Err(format!(
                "no broker answers on {} (start one with `keychain-auth start`, or drop --connect to embed one)",
                paths.socket.display()
            )),
            (ModeChoice::Embed, true) => Err(format!(
                "a broker already runs on {}; drop --embed to connect to it",
                paths.socket.display()
            )),
            (ModeChoice::Auto | ModeChoice::Embed, false) => Self::embed(paths),
        }
    }

    fn embed(paths: &Paths) -> Result<Broker, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("embedded-broker")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the embedded broker: {e}"))?;
        let selection = crate::selection::select(paths).map_err(|e| e.to_string())?;
        let notice = selection.notice.clone();
        let notice_record = notice
            .as_deref()
            .map(|n| crate::audit::Record::backend_notice(selection.kind(), n));
        let backend = crate::admin::serving_backend(paths, &selection);
        let server = runtime
            .block_on(async { Server::bind(paths.clone(), backend, Limits::default()) })
            .map_err(|e| e.to_string())?;
        let state = server.broker();
        // Audited only now that the broker will serve.
        if let Some(rec) = &notice_record
            && state.audit.append(rec).is_err()
        {
            // The key is in the locked keyring: written by the first append that can.
            crate::audit::defer(state.audit.path(), rec.clone());
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let served = runtime.spawn(server.run(async move {
            let _ = rx.await;
        }));
        Ok(Broker::Embedded {
            state,
            runtime,
            stop: Some(tx),
            served,
            notice,
            kind: selection.kind(),
        })
    }

    /// The first screen's notice, in plain words: an embedded broker lives only as long as this
    /// dashboard (and how to keep one running), and a store other programs can read, or a
    /// keyring that does not answer, is said without the protocol's names (`doctor` has them).
    pub fn first_screen_notice(&self) -> Option<String> {
        match self {
            Broker::Embedded { notice, kind, .. } => {
                Some(first_screen_text(notice.is_some().then_some(*kind)))
            }
            Broker::Connected { .. } => None,
        }
    }

    /// What the embedded broker's backend selection wants the user to know, if anything.
    pub fn notice(&self) -> Option<&str> {
        match self {
            Broker::Embedded { notice, .. } => notice.as_deref(),
            Broker::Connected { .. } => None,
        }
    }

    /// Sends [`Action::VaultLocked`](crate::tui::action::Action::VaultLocked) to `tx` each time
    /// the embedded broker's vault is locked or unlocked (its
    /// [`watch_unlocked`](crate::backend::vault::VaultStore::watch_unlocked)); nothing for a
    /// connected broker (its STATUS says, every tick) or a plain store.
    pub fn watch_vault(&self, tx: std::sync::mpsc::Sender<crate::tui::action::Action>) {
        let Broker::Embedded { state, runtime, .. } = self else {
            return;
        };
        let Some(store) = crate::backend::vault::VaultStore::of(state.backend.as_ref()) else {
            return;
        };
        let mut rx = store.watch_unlocked();
        runtime.spawn(async move {
            while rx.changed().await.is_ok() {
                let locked = !*rx.borrow_and_update();
                if tx
                    .send(crate::tui::action::Action::VaultLocked(locked))
                    .is_err()
                {
                    break;
                }
            }
        });
    }

    /// True for the in-process broker.
    pub fn embedded(&self) -> bool {
        matches!(self, Broker::Embedded { .. })
    }

    /// The broker's counters.
    pub fn status(&self) -> Result<StatusInfo, String> {
        match self {
            Broker::Embedded { state, .. } => Ok(state.status()),
            Broker::Connected { socket } => crate::client::status(socket, Duration::from_secs(2))
                .map_err(|e| format!("the broker on {} does not answer: {e}", socket.display())),
        }
    }

    /// Stops an embedded broker (removing its socket); nothing for a connected one.
    pub fn shutdown(self) {
        if let Broker::Embedded {
            runtime,
            mut stop,
            served,
            ..
        } = self
        {
            if let Some(tx) = stop.take() {
                let _ = tx.send(());
            }
            // `run` drains the sessions (bounded), removes the socket and audits "stop".
            let limit = crate::server::shutdown::DRAIN_LIMIT + Duration::from_secs(1);
            runtime.block_on(async {
                let _ = tokio::time::timeout(limit, served).await;
            });
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// The embedded dashboard's first-screen notice; `store_notice`: the store the backend selection
/// had something to say about (a fallback to the file store, a keyring that does not answer).
pub fn first_screen_text(store_notice: Option<crate::backend::BackendKind>) -> String {
    let mut text = "This dashboard is running the broker: quitting it stops the broker for every program. To keep one running on its own: keychain-auth install.".to_string();
    match store_notice {
        Some(crate::backend::BackendKind::File) => text.push_str(
            " No keyring answered, so secrets are kept in a file that your other programs can read (keychain-auth doctor explains).",
        ),
        Some(crate::backend::BackendKind::Keyring) => text.push_str(
            " The keyring does not answer yet: requests that need a secret are refused until it does (keychain-auth doctor explains).",
        ),
        Some(crate::backend::BackendKind::Vault) => text.push_str(
            " The vault is locked: the passphrase you type here unlocks it (or keychain-auth unlock); until then requests that need a secret are refused, or held while this dashboard asks.",
        ),
        None => {}
    }
    text
}

/// This process's pid, as the audit log's vault and owner records name it.
fn own_pid() -> i32 {
    i32::try_from(std::process::id()).unwrap_or(0)
}

/// Sends one OWNER line to the broker on `socket` and reads its reply (`Err`: why not done).
fn owner_request(
    socket: &std::path::Path,
    line: &serde_json::Value,
) -> Result<crate::server::owner_view::OwnerReply, String> {
    let mut client = crate::client::Client::connect(socket, Duration::from_secs(30))
        .map_err(|e| format!("cannot reach the broker: {e}"))?;
    let bytes = zeroize::Zeroizing::new(line.to_string());
    let text = zeroize::Zeroizing::new(
        client
            .round_trip(bytes.as_bytes())
            .map_err(|e| format!("the broker did not answer: {e}"))?,
    );
    let reply: crate::server::owner_view::OwnerReply =
        serde_json::from_str(&text).map_err(|_| {
            format!(
                "the broker answered: {}",
                crate::display::bounded(&text, 200)
            )
        })?;
    if reply.ok {
        Ok(reply)
    } else {
        Err(reply
            .error
            .clone()
            .unwrap_or_else(|| "the broker refused".into()))
    }
}
