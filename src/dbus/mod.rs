//! The Secret Service (`org.freedesktop.secrets`), served by the broker (SPEC §17).
//!
//! `keychain-auth start --secret-service` (or `"secret_service": true` in config.json) owns the
//! name on the session bus, without queueing behind another provider, and serves the
//! Secret Service API from the broker's store. This module only translates: every call that
//! touches an item becomes a broker request by the process the bus names ([`caller`]), decided
//! by the one decision path ([`crate::server::front::request`]): identity, policy, pending
//! queue, live prompt, audit (`"front":"dbus"`). Items belong to service namespaces by the rule
//! of [`namespace`]; an item outside the caller's services is invisible to it.
//!
//! One file per object: [`service`] (`/org/freedesktop/secrets`), [`collection`] (the one
//! collection, `/org/freedesktop/secrets/collection/login`, also the alias `default`),
//! [`item`] (its items, `…/collection/login/i<N>`), [`session`] (`plain` and
//! `dh-ietf1024-sha256-aes128-cbc-pkcs7`). Item paths are numbers handed out as items are
//! found, so the object tree itself names no service or target.

pub mod activation;
pub mod caller;
pub mod collection;
pub mod import;
pub mod item;
pub mod namespace;
pub mod service;
pub mod session;

use crate::audit::Record;
use crate::protocol::{self, Action, Attributes, Incoming, Reason, Response, Status};
use crate::server::Broker;
use caller::Pinned;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use zbus::Connection;
use zbus::fdo::{DBusProxy, RequestNameFlags, RequestNameReply};
use zbus::names::BusName;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

/// The well-known name.
pub const NAME: &str = "org.freedesktop.secrets";
/// The service object.
pub const SERVICE_PATH: &str = "/org/freedesktop/secrets";
/// The one collection.
pub const COLLECTION_PATH: &str = "/org/freedesktop/secrets/collection/login";
/// The `default` alias of it.
pub const ALIAS_PATH: &str = "/org/freedesktop/secrets/aliases/default";
/// Most sessions open at once (all connections together).
pub const MAX_SESSIONS: usize = 4096;
/// The "no prompt needed" path.
pub const NO_PROMPT: &str = "/";
/// The longest a D-Bus call is held for an approver: clients give up on a call after about
/// 25 s (libsecret, GDBus and secretstorage's default), so the held call is answered first.
pub const HOLD_CAP: Duration = Duration::from_secs(20);

/// The errors the Secret Service API names, and the bus's own.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.freedesktop")]
pub enum SecretError {
    /// A transport error.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// No such item or collection (also: one outside the caller's services).
    #[zbus(name = "Secret.Error.NoSuchObject")]
    NoSuchObject(String),
    /// The session does not exist or is not the caller's.
    #[zbus(name = "Secret.Error.NoSession")]
    NoSession(String),
    /// The object is locked.
    #[zbus(name = "Secret.Error.IsLocked")]
    IsLocked(String),
    /// The broker refused the caller; the text says why and what to run.
    #[zbus(name = "DBus.Error.AccessDenied")]
    AccessDenied(String),
    /// Bad arguments.
    #[zbus(name = "DBus.Error.InvalidArgs")]
    InvalidArgs(String),
    /// Not offered by this provider.
    #[zbus(name = "DBus.Error.NotSupported")]
    NotSupported(String),
    /// The store or the broker failed.
    #[zbus(name = "DBus.Error.Failed")]
    Failed(String),
}

impl From<SecretError> for zbus::fdo::Error {
    fn from(e: SecretError) -> Self {
        match e {
            SecretError::ZBus(e) => zbus::fdo::Error::ZBus(e),
            SecretError::NoSuchObject(m) => zbus::fdo::Error::UnknownObject(m),
            SecretError::AccessDenied(m) => zbus::fdo::Error::AccessDenied(m),
            SecretError::InvalidArgs(m) => zbus::fdo::Error::InvalidArgs(m),
            SecretError::NotSupported(m) => zbus::fdo::Error::NotSupported(m),
            SecretError::NoSession(m) | SecretError::IsLocked(m) | SecretError::Failed(m) => {
                zbus::fdo::Error::Failed(m)
            }
        }
    }
}

/// An open session: its owner (a unique bus name) and keys.
struct OpenSession {
    owner: String,
    keys: session::Keys,
}

/// The items handed out paths so far: number ↔ (namespace, target).
#[derive(Default)]
struct Registry {
    by_key: HashMap<(String, String), u64>,
    by_id: HashMap<u64, (String, String)>,
}

/// What a recent property read found, kept briefly so that one `GetAll` is one request.
type Seen = HashMap<(String, u64), (std::time::Instant, namespace::Shown)>;

/// The state shared by the D-Bus objects.
pub struct Front {
    /// The broker deciding every call.
    pub broker: Arc<Broker>,
    conn: OnceLock<Connection>,
    /// Pinned callers by unique bus name.
    pub(crate) callers: Mutex<HashMap<String, Arc<Pinned>>>,
    sessions: Mutex<HashMap<String, OpenSession>>,
    items: Mutex<Registry>,
    seen: Mutex<Seen>,
    next: AtomicU64,
}

/// A caller: who the bus says it is, and its pinned process.
#[derive(Clone)]
pub struct Who {
    /// Its identity for this call.
    pub peer: Arc<crate::identity::Peer>,
    /// Its pinned process.
    pub pin: Arc<Pinned>,
}

/// An item found for a caller: where it is and what it shows.
#[derive(Debug, Clone)]
pub struct Found {
    /// Its namespace.
    pub ns: String,
    /// Its target.
    pub target: String,
    /// What a client sees.
    pub shown: namespace::Shown,
}

impl Front {
    fn new(broker: Arc<Broker>) -> Front {
        Front {
            broker,
            conn: OnceLock::new(),
            callers: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            items: Mutex::new(Registry::default()),
            seen: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }

    fn conn(&self) -> Result<Connection, SecretError> {
        self.conn
            .get()
            .cloned()
            .ok_or_else(|| SecretError::Failed("not connected to the bus".into()))
    }

    fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Opens a session for `owner`; returns its path. At most [`MAX_SESSIONS`] are open.
    fn add_session(
        &self,
        owner: &str,
        keys: session::Keys,
    ) -> Result<OwnedObjectPath, SecretError> {
        let path = format!("{SERVICE_PATH}/session/s{}", self.next_id());
        if let Ok(mut m) = self.sessions.lock() {
            if m.len() >= MAX_SESSIONS {
                return Err(SecretError::Failed(format!(
                    "{MAX_SESSIONS} sessions are open; close some (Session.Close) first"
                )));
            }
            m.insert(
                path.clone(),
                OpenSession {
                    owner: owner.into(),
                    keys,
                },
            );
        }
        OwnedObjectPath::try_from(path).map_err(|e| SecretError::Failed(e.to_string()))
    }

    /// The keys of session `path` when `owner` opened it.
    fn session_keys(&self, path: &str, owner: &str) -> Result<session::Keys, SecretError> {
        let m = self
            .sessions
            .lock()
            .map_err(|_| SecretError::Failed("session table".into()))?;
        match m.get(path) {
            Some(s) if s.owner == owner => Ok(s.keys.clone()),
            _ => Err(SecretError::NoSession(format!(
                "{path} is not a session of this connection"
            ))),
        }
    }

    /// Closes session `path` if `owner` opened it.
    fn close_session(&self, path: &str, owner: &str) -> bool {
        let Ok(mut m) = self.sessions.lock() else {
            return false;
        };
        if m.get(path).is_some_and(|s| s.owner == owner) {
            m.remove(path);
            return true;
        }
        false
    }

    /// A connection left the bus: its pin and sessions go.
    fn forget(&self, name: &str) {
        if let Ok(mut m) = self.callers.lock() {
            m.remove(name);
        }
        let gone: Vec<String> = self
            .sessions
            .lock()
            .map(|mut m| {
                let paths: Vec<String> = m
                    .iter()
                    .filter(|(_, s)| s.owner == name)
                    .map(|(p, _)| p.clone())
                    .collect();
                for p in &paths {
                    m.remove(p);
                }
                paths
            })
            .unwrap_or_default();
        if let (Ok(conn), false) = (self.conn(), gone.is_empty()) {
            tokio::spawn(async move {
                for p in gone {
                    if let Ok(path) = ObjectPath::try_from(p.as_str()) {
                        let _ = conn
                            .object_server()
                            .remove::<session::SessionObject, _>(path)
                            .await;
                    }
                }
            });
        }
        if let Ok(mut s) = self.seen.lock() {
            s.retain(|(n, _), _| n != name);
        }
    }

    /// The path of the item (`ns`, `target`), serving an object there when it is new.
    async fn item_path(self: &Arc<Self>, ns: &str, target: &str) -> OwnedObjectPath {
        let key = (ns.to_string(), target.to_string());
        let (id, new) = {
            let Ok(mut r) = self.items.lock() else {
                return no_prompt();
            };
            match r.by_key.get(&key) {
                Some(id) => (*id, false),
                None => {
                    let id = self.next_id();
                    r.by_key.insert(key.clone(), id);
                    r.by_id.insert(id, key);
                    (id, true)
                }
            }
        };
        let path = format!("{COLLECTION_PATH}/i{id}");
        if new && let Ok(conn) = self.conn() {
            let obj = item::ItemObject {
                front: self.clone(),
                id,
            };
            let _ = conn.object_server().at(path.as_str(), obj).await;
        }
        OwnedObjectPath::try_from(path).unwrap_or_else(|_| no_prompt())
    }

    /// The (namespace, target) of item number `id`.
    fn item_key(&self, id: u64) -> Option<(String, String)> {
        self.items.lock().ok()?.by_id.get(&id).cloned()
    }

    /// The (namespace, target) of the item at `path`.
    fn item_at(&self, path: &str) -> Option<(u64, String, String)> {
        let id: u64 = path
            .strip_prefix(COLLECTION_PATH)?
            .strip_prefix("/i")?
            .parse()
            .ok()?;
        let (ns, target) = self.item_key(id)?;
        Some((id, ns, target))
    }

    /// An item is gone: its path and object too.
    async fn drop_item(&self, id: u64) {
        if let Ok(mut r) = self.items.lock()
            && let Some(key) = r.by_id.remove(&id)
        {
            r.by_key.remove(&key);
        }
        if let Ok(conn) = self.conn() {
            let path = format!("{COLLECTION_PATH}/i{id}");
            let _ = conn
                .object_server()
                .remove::<item::ItemObject, _>(path.as_str())
                .await;
        }
    }

    /// Asks the broker, as `peer`, for `action` on `ns`: the one decision path, audited with
    /// `"front":"dbus"`, held for an approver at most [`HOLD_CAP`].
    async fn ask(
        &self,
        who: &Who,
        action: Action,
        ns: &str,
        targets: Option<Vec<String>>,
        values: Option<Vec<String>>,
        attributes: Option<Attributes>,
    ) -> Result<Response, SecretError> {
        let line = serde_json::json!({
            "type": "REQUEST", "action": action.as_str(), "service": ns,
        });
        self.ask_line(who, line, targets, values, attributes).await
    }

    /// [`Front::ask`] for a `search` that is never held for an approver (a property read).
    async fn search_unheld(&self, who: &Who, ns: &str) -> Result<Response, SecretError> {
        let line = serde_json::json!({
            "type": "REQUEST", "action": "search", "service": ns, "prompt": false,
        });
        self.ask_line(who, line, None, None, None).await
    }

    /// Completes the request `line` and decides it (see [`Front::ask`]). A request larger than
    /// the socket's line cap is refused as it is there (`request_too_large`, audited).
    async fn ask_line(
        &self,
        who: &Who,
        mut line: serde_json::Value,
        targets: Option<Vec<String>>,
        values: Option<Vec<String>>,
        attributes: Option<Attributes>,
    ) -> Result<Response, SecretError> {
        if let Some(o) = line.as_object_mut() {
            if let Some(t) = targets {
                o.insert("targets".into(), t.into());
            }
            if let Some(v) = values {
                o.insert("values".into(), v.into());
            }
            if let Some(a) = attributes {
                o.insert(
                    "attributes".into(),
                    serde_json::to_value(a).unwrap_or_default(),
                );
            }
        }
        let bytes = serde_json::to_vec(&line).map_err(|e| SecretError::Failed(e.to_string()))?;
        let max = self.broker.limits.max_line;
        if bytes.len() > max {
            crate::server::handler::audit_too_large(&self.broker, &who.peer);
            return Err(SecretError::InvalidArgs(format!(
                "the request is larger than the broker's {max}-byte limit"
            )));
        }
        let req = match protocol::parse_line(&bytes) {
            Ok(Incoming::Request(r)) => r,
            Ok(_) => return Err(SecretError::InvalidArgs("not a request".into())),
            Err(resp) => {
                return Err(SecretError::InvalidArgs(
                    resp.message.unwrap_or_else(|| "invalid request".into()),
                ));
            }
        };
        let pin = who.pin.clone();
        let gone = async move {
            while !pin.exited() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        Ok(crate::server::front::request(
            &self.broker,
            who.peer.clone(),
            req,
            "dbus",
            gone,
            Some(HOLD_CAP),
        )
        .await)
    }

    /// Every item whose attributes contain `filter`, as the caller may see them: a `search`
    /// request in the namespace the attributes name (`service`, else `xdg:schema`); when they
    /// name none, one in each service the caller may read and search (`default` for a caller
    /// with none, so an unknown caller is refused and queued for something).
    async fn search(&self, who: &Who, filter: &Attributes) -> Result<Vec<Found>, SecretError> {
        let named = ["service", "xdg:schema"]
            .iter()
            .any(|k| filter.get(*k).is_some_and(|v| !v.is_empty()));
        let namespaces = if named {
            vec![namespace::of_attributes(filter)]
        } else {
            let mine = readable_services(self, &who.peer);
            if mine.is_empty() {
                vec!["default".to_string()]
            } else {
                mine
            }
        };
        let single = namespaces.len() == 1;
        let mut found = Vec::new();
        for ns in namespaces {
            let resp = self.ask(who, Action::Search, &ns, None, None, None).await?;
            let results = match refusal_or(resp, SecretError::AccessDenied) {
                Ok(r) => r,
                Err(e) if single => return Err(e),
                Err(_) => continue,
            };
            found.extend(
                results
                    .into_iter()
                    .map(|r| Found {
                        shown: namespace::shown(&ns, &r.target, &r.attributes.unwrap_or_default()),
                        ns: ns.clone(),
                        target: r.target,
                    })
                    .filter(|f| namespace::matches(&f.shown.attributes, filter)),
            );
        }
        Ok(found)
    }

    /// What `peer` may see of item `id` (a `search` for its target), briefly cached per
    /// connection so that reading all its properties is one request.
    async fn look(&self, who: &Who, sender: &str, id: u64) -> Result<Found, SecretError> {
        let (ns, target) = self.item_key(id).ok_or_else(no_such_item)?;
        let key = (sender.to_string(), id);
        if let Ok(seen) = self.seen.lock()
            && let Some((at, shown)) = seen.get(&key)
            && at.elapsed() < Duration::from_secs(1)
        {
            return Ok(Found {
                ns,
                target,
                shown: shown.clone(),
            });
        }
        let resp = self
            .ask(
                who,
                Action::Search,
                &ns,
                Some(vec![target.clone()]),
                None,
                None,
            )
            .await?;
        let results = refusal_or(resp, |_| no_such_item())?;
        let r = results
            .into_iter()
            .find(|r| r.target == target)
            .ok_or_else(no_such_item)?;
        let shown = namespace::shown(&ns, &target, &r.attributes.unwrap_or_default());
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() > 4096 {
                seen.clear();
            }
            seen.insert(key, (std::time::Instant::now(), shown.clone()));
        }
        Ok(Found { ns, target, shown })
    }

    /// Keeps what connection `sender` just stored as item `id`, for the property reads that
    /// follow at once (secretstorage reads the label of the item it created): it is what that
    /// connection itself sent, so answering it reveals nothing.
    fn remember(&self, sender: &str, id: u64, shown: namespace::Shown) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert((sender.to_string(), id), (std::time::Instant::now(), shown));
        }
    }

    /// Forgets what `look` cached for item `id` (it changed).
    fn changed(&self, id: u64) {
        if let Ok(mut s) = self.seen.lock() {
            s.retain(|(_, i), _| *i != id);
        }
    }

    /// The values and stored attributes of `targets` in `ns` (an exact `read`); `None` when
    /// the broker refuses (the items are invisible to the caller).
    async fn read(
        &self,
        who: &Who,
        ns: &str,
        targets: Vec<String>,
    ) -> Result<Option<Vec<protocol::ResultItem>>, SecretError> {
        let resp = self
            .ask(who, Action::Read, ns, Some(targets), None, None)
            .await?;
        match resp.status {
            Status::Success => Ok(Some(resp.results.unwrap_or_default())),
            _ if resp.reason == Some(Reason::BackendUnavailable) => {
                Err(SecretError::Failed(resp.message.unwrap_or_default()))
            }
            _ => Ok(None),
        }
    }

    /// Stores one item (a `write`).
    async fn write(
        &self,
        who: &Who,
        ns: &str,
        target: &str,
        value: String,
        stored: Attributes,
        refused: fn(String) -> SecretError,
    ) -> Result<(), SecretError> {
        let resp = self
            .ask(
                who,
                Action::Write,
                ns,
                Some(vec![target.to_string()]),
                Some(vec![value]),
                Some(stored),
            )
            .await?;
        refusal_or(resp, refused).map(|_| ())
    }
}

/// The services `peer`'s policy lets it read and search (none for an unknown caller).
pub(crate) fn readable_services(front: &Front, peer: &crate::identity::Peer) -> Vec<String> {
    let crate::identity::Exe::Verified { hash, program, .. } = &peer.exe else {
        return Vec::new();
    };
    let Ok(policy) = front.broker.policy.current() else {
        return Vec::new();
    };
    policy
        .lookup_caller(hash, program)
        .filter(|b| b.can_search)
        .map(|b| b.allowed_read_services.iter().cloned().collect())
        .unwrap_or_default()
}

/// The results of a successful response, or the refusal as `refused(message)` (a store that
/// cannot be used is `Failed`, a malformed request `InvalidArgs`).
fn refusal_or(
    resp: Response,
    refused: impl FnOnce(String) -> SecretError,
) -> Result<Vec<protocol::ResultItem>, SecretError> {
    let message = resp.message.clone().unwrap_or_default();
    match (resp.status, resp.reason) {
        (Status::Success, _) => Ok(resp.results.unwrap_or_default()),
        (_, Some(Reason::BackendUnavailable | Reason::InternalError)) => {
            Err(SecretError::Failed(message))
        }
        (_, Some(Reason::VaultLocked)) => Err(SecretError::IsLocked(message)),
        (_, Some(Reason::MalformedRequest | Reason::RequestTooLarge)) => {
            Err(SecretError::InvalidArgs(message))
        }
        _ => Err(refused(message)),
    }
}

fn no_such_item() -> SecretError {
    SecretError::NoSuchObject("no such item".into())
}

/// The path `/`.
pub fn no_prompt() -> OwnedObjectPath {
    OwnedObjectPath::from(ObjectPath::from_static_str_unchecked(NO_PROMPT))
}

/// Seconds since the epoch.
fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why the Secret Service cannot be served (one line, for `start`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClaimError(pub String);

/// The session bus, connected, before anything is served on it.
pub struct Bus {
    conn: Connection,
}

/// Connects to the session bus and checks that nobody owns the name yet (so `start` refuses
/// before it binds the socket).
pub async fn connect() -> Result<Bus, ClaimError> {
    connect_at(None).await
}

/// [`connect`] to the bus at `address` (`None`: the session bus of the environment; the
/// dashboard and tests embed a broker with a bus of their own).
pub async fn connect_at(address: Option<&str>) -> Result<Bus, ClaimError> {
    let builder = match address {
        Some(a) => zbus::connection::Builder::address(a),
        None => zbus::connection::Builder::session(),
    };
    let conn = builder
        .map_err(|e| ClaimError(format!("cannot reach the session bus: {e}")))?
        .build()
        .await
        .map_err(|e| {
            ClaimError(format!(
                "cannot connect to the session bus ({e}); --secret-service needs a desktop session or DBUS_SESSION_BUS_ADDRESS"
            ))
        })?;
    if let Some(owner) = owner_of(&conn).await {
        return Err(ClaimError(owner));
    }
    Ok(Bus { conn })
}

/// "org.freedesktop.secrets is owned by pid N (exe); how to stop it", when someone owns it.
async fn owner_of(conn: &Connection) -> Option<String> {
    let bus = DBusProxy::new(conn).await.ok()?;
    let name = BusName::try_from(NAME).ok()?;
    let owner = bus.get_name_owner(name).await.ok()?;
    let pid = bus
        .get_connection_unix_process_id(BusName::from(owner.clone().into_inner()))
        .await
        .ok();
    let exe = pid
        .and_then(|p| std::fs::read_link(format!("/proc/{p}/exe")).ok())
        .map_or_else(|| "an unknown program".into(), |p| p.display().to_string());
    let pid_text = pid.map_or_else(|| "an unknown pid".into(), |p| format!("pid {p}"));
    let stop = if exe.contains("gnome-keyring") {
        format!(
            "stop it with `systemctl --user mask --now gnome-keyring-daemon.service gnome-keyring-daemon.socket` (or kill {})",
            pid.map_or_else(|| "it".into(), |p| p.to_string())
        )
    } else {
        format!(
            "stop it (kill {}) or turn off its Secret Service",
            pid.map_or_else(|| "it".into(), |p| p.to_string())
        )
    };
    Some(format!(
        "{NAME} is already owned by {pid_text} ({exe}, {owner}); {stop}, then start keychain-auth --secret-service again"
    ))
}

/// Who owns `org.freedesktop.secrets` on the session bus now, in words (for `doctor`):
/// `Ok` with the owner's pid and executable, or that nobody does (and whether the bus would
/// start a provider on the first call); `Err` when there is no session bus to ask.
pub fn owner_report() -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(3), async {
            let conn = zbus::connection::Builder::session()
                .map_err(|e| format!("no session bus: {e}"))?
                .build()
                .await
                .map_err(|e| format!("no session bus: {e}"))?;
            let bus = DBusProxy::new(&conn).await.map_err(|e| e.to_string())?;
            let name = BusName::try_from(NAME).map_err(|e| e.to_string())?;
            let Ok(owner) = bus.get_name_owner(name).await else {
                let activatable = bus
                    .list_activatable_names()
                    .await
                    .map(|n| n.iter().any(|n| n.as_str() == NAME))
                    .unwrap_or(false);
                return Ok(if activatable {
                    format!("{NAME} has no owner; the bus starts a provider for it on the first call (D-Bus activation)")
                } else {
                    format!("{NAME} has no owner")
                });
            };
            let pid = bus
                .get_connection_unix_process_id(BusName::from(owner.into_inner()))
                .await
                .map_err(|e| e.to_string())?;
            let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
                .map_or_else(|_| "an unknown program".into(), |p| p.display().to_string());
            Ok(format!("{NAME} is owned by pid {pid} ({exe})"))
        })
        .await
        .map_err(|_| "the session bus did not answer within 3 s".to_string())?
    })
}

/// A served Secret Service; dropping it leaves the bus.
pub struct Running {
    _conn: Connection,
    _watch: tokio::task::JoinHandle<()>,
}

impl Bus {
    /// Serves the objects for `broker` and takes the name without queueing. Losing the name or
    /// the bus later is logged and audited.
    pub async fn serve(self, broker: Arc<Broker>) -> Result<Running, ClaimError> {
        let conn = self.conn;
        let front = Arc::new(Front::new(broker.clone()));
        let _ = front.conn.set(conn.clone());
        let server = conn.object_server();
        let fail = |e: zbus::Error| ClaimError(format!("cannot serve the Secret Service: {e}"));
        server
            .at(
                SERVICE_PATH,
                service::ServiceObject {
                    front: front.clone(),
                },
            )
            .await
            .map_err(fail)?;
        for path in [COLLECTION_PATH, ALIAS_PATH] {
            server
                .at(
                    path,
                    collection::CollectionObject {
                        front: front.clone(),
                    },
                )
                .await
                .map_err(fail)?;
        }
        let bus = DBusProxy::new(&conn).await.map_err(fail)?;
        let lost = bus.receive_name_lost().await.map_err(fail)?;
        let left = bus.receive_name_owner_changed().await.map_err(fail)?;
        let reply = conn
            .request_name_with_flags(NAME, RequestNameFlags::DoNotQueue.into())
            .await
            .map_err(fail)?;
        match reply {
            RequestNameReply::PrimaryOwner | RequestNameReply::AlreadyOwner => {}
            RequestNameReply::Exists | RequestNameReply::InQueue => {
                let who = owner_of(&conn)
                    .await
                    .unwrap_or_else(|| format!("{NAME} is already owned by another program"));
                return Err(ClaimError(who));
            }
        }
        let _ = broker.audit.append(&name_record(format!(
            "serving the Secret Service ({NAME}) on the session bus from the {}",
            broker.backend.describe()
        )));
        let watch = tokio::spawn(watch(front, lost, left));
        Ok(Running {
            _conn: conn,
            _watch: watch,
        })
    }
}

fn name_record(message: String) -> Record {
    let mut r = Record::new("daemon", "daemon");
    r.action = Some("secret_service".into());
    r.message = Some(message);
    r
}

/// Notices the name lost (another program took it over or the bus went away) and callers
/// leaving the bus.
async fn watch(
    front: Arc<Front>,
    mut lost: zbus::fdo::NameLostStream,
    mut left: zbus::fdo::NameOwnerChangedStream,
) {
    loop {
        tokio::select! {
            l = lost.next() => {
                let why = match l.as_ref().and_then(|s| s.args().ok()) {
                    Some(a) if a.name().as_str() == NAME => {
                        format!("the broker lost {NAME} on the session bus; D-Bus clients no longer reach it (restart with --secret-service)")
                    }
                    Some(_) => continue,
                    None => format!("the session bus went away; D-Bus clients no longer reach the broker's {NAME}"),
                };
                tracing::warn!("keychain-auth: {why}");
                let mut rec = name_record(why);
                rec.status = Some("error".into());
                let _ = front.broker.audit.append(&rec);
                return;
            }
            c = left.next() => {
                let Some(c) = c else {
                    let why = format!("the session bus went away; D-Bus clients no longer reach the broker's {NAME}");
                    tracing::warn!("keychain-auth: {why}");
                    let mut rec = name_record(why);
                    rec.status = Some("error".into());
                    let _ = front.broker.audit.append(&rec);
                    return;
                };
                if let Ok(a) = c.args()
                    && a.new_owner().is_none()
                    && a.name().as_str().starts_with(':')
                {
                    front.forget(a.name().as_str());
                }
            }
        }
    }
}

/// Whether config.json (as vouched for by its seal) asks for the Secret Service.
pub fn configured(paths: &crate::paths::Paths, backend: &Arc<dyn crate::backend::Backend>) -> bool {
    let keys = crate::audit::KeySource::Store(backend.clone());
    crate::policy::sealed::in_force(paths, &keys).is_some_and(|(p, vouched)| {
        vouched
            && p.extra
                .get("secret_service")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false)
    })
}
