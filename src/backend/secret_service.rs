//! The Secret Service store (GNOME Keyring, KWallet) over D-Bus, through the `secret-service`
//! crate.
//!
//! Item schema (documented in README, "Secret Service item schema"):
//!
//! | attribute | value |
//! |---|---|
//! | `xdg:schema` | `org.keychain-auth.Secret` |
//! | `keychain-auth:service` | the service namespace |
//! | `keychain-auth:target` | the target name |
//! | `attr:<name>` | each caller attribute `<name>` |
//!
//! Caller attributes live under `attr:`, so a caller attribute called `service`, `target` or
//! `keychain-auth:service` can never be mistaken for ours. The label is
//! `keychain-auth: <service>/<target>`. Lookups and searches are the Secret Service's own
//! attribute search; prefixes are filtered client-side. There is no second index.
//!
//! Every call runs on the store's own small tokio runtime and is bounded by a timeout: a
//! keyring that does not answer yields [`BackendError::Unavailable`], never a hang. The daemon
//! never triggers an interactive prompt: a locked collection is reported, with how to unlock it.

use super::{Backend, BackendError, BackendKind, Entry, Item, matches_filter};
use crate::protocol::Attributes;
use secret_service::{EncryptionType, SecretService};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// `xdg:schema` of every item the broker writes.
pub(crate) const SCHEMA: &str = "org.keychain-auth.Secret";
/// Attribute holding the service namespace.
pub(crate) const SERVICE_ATTR: &str = "keychain-auth:service";
/// Attribute holding the target name.
pub(crate) const TARGET_ATTR: &str = "keychain-auth:target";
/// Prefix of caller attributes.
pub(crate) const CALLER_PREFIX: &str = "attr:";
/// The well-known bus name of the Secret Service.
const BUS_NAME: &str = "org.freedesktop.secrets";
/// Content type of stored values (the protocol carries UTF-8 text).
const CONTENT_TYPE: &str = "text/plain; charset=utf8";

/// Default bound on one store operation (all its D-Bus calls together).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on the start-up probe.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What to tell a person whose keyring is locked.
pub(crate) const UNLOCK_HINT: &str = "the keyring (Secret Service default collection) is locked: unlock it \
     by logging in to your desktop session or from Seahorse (\"Passwords and Keys\"); on a headless \
     machine run `gnome-keyring-daemon --replace --unlock --components=secrets` and type the password, \
     then Ctrl-D. keychain-auth never prompts on its own";

/// The label of the item at (service, target).
pub(crate) fn label(service: &str, target: &str) -> String {
    format!("keychain-auth: {service}/{target}")
}

/// The attributes that identify the item at (service, target).
fn key_attributes<'a>(service: &'a str, target: &'a str) -> HashMap<&'a str, &'a str> {
    HashMap::from([
        ("xdg:schema", SCHEMA),
        (SERVICE_ATTR, service),
        (TARGET_ATTR, target),
    ])
}

/// The caller attributes among an item's stored attributes, without their prefix.
fn caller_attributes(stored: &HashMap<String, String>) -> Attributes {
    stored
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(CALLER_PREFIX)
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect()
}

/// What the start-up probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Probe {
    /// A Secret Service answered and its default collection is unlocked.
    Available,
    /// It answered, but the default collection is locked.
    Locked,
    /// No session bus, or nothing on it provides the Secret Service. The text says why.
    Unreachable(String),
    /// Something answered but could not be used (timeout, no default collection, an error).
    /// This is not "unreachable": the keyring may be busy or being unlocked.
    Trouble(String),
}

/// Why one operation failed, before it becomes a [`BackendError`].
#[derive(Debug)]
enum Fail {
    Locked,
    Timeout,
    Other(String),
}

impl From<secret_service::Error> for Fail {
    fn from(e: secret_service::Error) -> Fail {
        if is_locked_error(&e) {
            Fail::Locked
        } else if is_timeout(&e) {
            Fail::Timeout
        } else {
            Fail::Other(describe_error(&e))
        }
    }
}

impl From<zbus::Error> for Fail {
    fn from(e: zbus::Error) -> Fail {
        Fail::from(secret_service::Error::from(e))
    }
}

/// The D-Bus error name inside `e`, if it is a method error.
fn error_name(e: &secret_service::Error) -> Option<String> {
    match e {
        secret_service::Error::Zbus(zbus::Error::MethodError(name, _, _)) => Some(name.to_string()),
        secret_service::Error::Zbus(zbus::Error::FDO(fdo)) => {
            Some(zbus::DBusError::name(fdo.as_ref()).to_string())
        }
        secret_service::Error::ZbusFdo(fdo) => Some(zbus::DBusError::name(fdo).to_string()),
        _ => None,
    }
}

/// True when a D-Bus call ran into the connection's method timeout.
fn is_timeout(e: &secret_service::Error) -> bool {
    matches!(e, secret_service::Error::Zbus(zbus::Error::InputOutput(io))
        if io.kind() == std::io::ErrorKind::TimedOut)
        || error_name(e).is_some_and(|n| n.ends_with(".TimedOut") || n.ends_with(".NoReply"))
}

fn is_locked_error(e: &secret_service::Error) -> bool {
    matches!(e, secret_service::Error::Locked)
        || error_name(e).is_some_and(|n| n.ends_with(".IsLocked"))
}

/// True when `e` says nothing provides the Secret Service on the bus.
fn is_no_service_error(e: &secret_service::Error) -> bool {
    matches!(e, secret_service::Error::Unavailable)
        || error_name(e).is_some_and(|n| {
            n.ends_with(".ServiceUnknown")
                || n.ends_with(".NameHasNoOwner")
                || n.contains(".Spawn.")
        })
}

fn describe_error(e: &secret_service::Error) -> String {
    match e {
        secret_service::Error::Unavailable => {
            "no Secret Service provider or D-Bus session bus was found".into()
        }
        e => e.to_string(),
    }
}

/// One connection to the session bus with an open Secret Service session.
struct Conn {
    ss: SecretService<'static>,
}

/// A [`Backend`] over the Secret Service on the D-Bus session bus.
pub struct SecretServiceStore {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    conn: Arc<tokio::sync::Mutex<Option<Arc<Conn>>>>,
    timeout: Duration,
    address: Option<Arc<str>>,
}

impl SecretServiceStore {
    /// A store whose operations are each bounded by `timeout`. Connects lazily (and reconnects
    /// after a failure), so creating it never touches D-Bus.
    pub(crate) fn new(timeout: Duration) -> Result<SecretServiceStore, BackendError> {
        SecretServiceStore::at(None, timeout)
    }

    /// Like `SecretServiceStore::new`, on the bus at `address` (a D-Bus address such as
    /// `unix:path=/run/user/1000/bus`) instead of the session bus the environment names.
    pub fn at(
        address: Option<&str>,
        timeout: Duration,
    ) -> Result<SecretServiceStore, BackendError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("keychain-auth-dbus")
            .enable_all()
            .build()
            .map_err(|e| {
                BackendError::Unavailable(format!("cannot start the D-Bus runtime: {e}"))
            })?;
        Ok(SecretServiceStore {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            conn: Arc::new(tokio::sync::Mutex::new(None)),
            timeout,
            address: address.map(Arc::from),
        })
    }

    /// Runs `op` against a connected Secret Service on the store's runtime, bounded by the
    /// store's timeout. Callable from any thread, including async contexts.
    fn call<T, F, Fut>(&self, what: &str, op: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Conn>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Fail>> + Send,
    {
        let slot = self.conn.clone();
        let timeout = self.timeout;
        let address = self.address.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let result = tokio::time::timeout(timeout, async {
                let conn = connect(&slot, address.as_deref(), timeout).await?;
                let out = op(conn).await;
                if let Err(Fail::Other(_)) = &out {
                    // The connection may be broken (bus gone, service restarted): reconnect
                    // on the next call.
                    *slot.lock().await = None;
                }
                out
            })
            .await;
            let _ = tx.send(result);
        });
        let outcome = match rx.recv_timeout(timeout + Duration::from_secs(1)) {
            Ok(Ok(r)) => r,
            Ok(Err(_)) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Fail::Timeout),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Err(Fail::Other("the D-Bus worker stopped unexpectedly".into()))
            }
        };
        outcome.map_err(|f| match f {
            Fail::Locked => BackendError::Unavailable(UNLOCK_HINT.into()),
            Fail::Timeout => BackendError::Unavailable(format!(
                "the Secret Service did not answer within {} s while trying to {what}; \
                 is gnome-keyring (or KWallet) hung or waiting for a prompt?",
                timeout.as_secs_f32()
            )),
            Fail::Other(m) => {
                BackendError::Unavailable(format!(
                "Secret Service, trying to {what}: {m}; is the keyring still running on the session bus? `keychain-auth doctor` checks"
            ))
            }
        })
    }

    /// Checks, read-only and within `timeout`, whether a Secret Service can be used: connects
    /// to the session bus, asks whether anything provides `org.freedesktop.secrets` (running
    /// or activatable), opens a session and reads whether the default collection is locked.
    /// Never prompts and never writes.
    pub(crate) fn probe(&self, timeout: Duration) -> Probe {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let address = self.address.clone();
        self.handle.spawn(async move {
            let r = tokio::time::timeout(timeout, probe_inner(address.as_deref(), timeout)).await;
            let _ = tx.send(r);
        });
        match rx.recv_timeout(timeout + Duration::from_secs(1)) {
            Ok(Ok(p)) => p,
            _ => Probe::Trouble(format!(
                "the Secret Service did not answer within {} s (it may be busy or waiting to be unlocked)",
                timeout.as_secs_f32()
            )),
        }
    }

    /// Every service that has at least one item of ours.
    pub(crate) fn all_services(&self) -> Result<Vec<String>, BackendError> {
        self.call("list services", |c| async move {
            let found =
                c.ss.search_items(HashMap::from([("xdg:schema", SCHEMA)]))
                    .await?;
            if !found.locked.is_empty() {
                return Err(Fail::Locked);
            }
            let mut services = std::collections::BTreeSet::new();
            for item in &found.unlocked {
                let attrs = item.get_attributes().await?;
                if let (Some(s), Some(_)) = (attrs.get(SERVICE_ATTR), attrs.get(TARGET_ATTR)) {
                    services.insert(s.clone());
                }
            }
            Ok(services.into_iter().collect())
        })
    }
}

impl Drop for SecretServiceStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside an async context: let it go in the
        // background instead.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The shared connection, opening it when there is none.
async fn connect(
    slot: &tokio::sync::Mutex<Option<Arc<Conn>>>,
    address: Option<&str>,
    timeout: Duration,
) -> Result<Arc<Conn>, Fail> {
    let mut guard = slot.lock().await;
    if let Some(c) = guard.as_ref() {
        return Ok(c.clone());
    }
    let bus = session_bus(address, timeout)
        .await
        .map_err(|e| Fail::Other(format!("cannot connect to the D-Bus session bus: {e}")))?;
    let ss = SecretService::connect_with_existing(EncryptionType::Dh, bus).await?;
    let conn = Arc::new(Conn { ss });
    *guard = Some(conn.clone());
    Ok(conn)
}

async fn session_bus(address: Option<&str>, timeout: Duration) -> zbus::Result<zbus::Connection> {
    match address {
        Some(a) => zbus::connection::Builder::address(a)?,
        None => zbus::connection::Builder::session()?,
    }
    .method_timeout(timeout)
    .build()
    .await
}

async fn probe_inner(address: Option<&str>, timeout: Duration) -> Probe {
    let bus = match session_bus(address, timeout).await {
        Ok(b) => b,
        Err(e) => {
            return Probe::Unreachable(format!(
                "no D-Bus session bus could be reached ({e}); DBUS_SESSION_BUS_ADDRESS is {}",
                match std::env::var("DBUS_SESSION_BUS_ADDRESS") {
                    Ok(a) if !a.is_empty() => format!("{a:?}"),
                    _ => "not set".into(),
                }
            ));
        }
    };
    match provided(&bus).await {
        Ok(true) => {}
        Ok(false) => {
            return Probe::Unreachable(
                "the D-Bus session bus has no Secret Service (nothing owns or can start org.freedesktop.secrets)"
                    .into(),
            );
        }
        Err(e) => return Probe::Trouble(format!("asking the session bus failed: {e}")),
    }
    let ss = match SecretService::connect_with_existing(EncryptionType::Dh, bus.clone()).await {
        Ok(ss) => ss,
        Err(e) if is_no_service_error(&e) => {
            return Probe::Unreachable(format!(
                "the Secret Service could not be started: {}",
                describe_error(&e)
            ));
        }
        Err(e) => return Probe::Trouble(describe_error(&e)),
    };
    let collection = match ss.get_default_collection().await {
        Ok(c) => c,
        Err(secret_service::Error::NoResult) => {
            return Probe::Trouble(
                "the Secret Service has no default collection (create one, e.g. with Seahorse)"
                    .into(),
            );
        }
        Err(e) => return Probe::Trouble(describe_error(&e)),
    };
    match collection.is_locked().await {
        Ok(true) => Probe::Locked,
        Ok(false) => Probe::Available,
        Err(e) => Probe::Trouble(describe_error(&e)),
    }
}

/// True when something owns `org.freedesktop.secrets` or the bus can start it.
async fn provided(bus: &zbus::Connection) -> zbus::Result<bool> {
    let dbus = zbus::fdo::DBusProxy::new(bus).await?;
    let name = zbus::names::BusName::try_from(BUS_NAME)?;
    if dbus.name_has_owner(name).await? {
        return Ok(true);
    }
    let activatable = dbus.list_activatable_names().await?;
    Ok(activatable.iter().any(|n| n.as_str() == BUS_NAME))
}

/// The unlocked items at (service, target); `Locked` when a matching item is locked.
async fn find<'a>(
    ss: &'a SecretService<'static>,
    service: &str,
    target: &str,
) -> Result<Vec<secret_service::Item<'a>>, Fail> {
    let found = ss.search_items(key_attributes(service, target)).await?;
    if !found.locked.is_empty() {
        return Err(Fail::Locked);
    }
    Ok(found.unlocked)
}

/// Fails with `Locked` when the default collection is locked (a miss there proves nothing).
async fn check_default_unlocked(ss: &SecretService<'static>) -> Result<(), Fail> {
    match ss.get_default_collection().await {
        Ok(c) if c.is_locked().await? => Err(Fail::Locked),
        Ok(_) => Ok(()),
        Err(secret_service::Error::NoResult) => Err(Fail::Other(
            "the Secret Service has no default collection: create one (e.g. with Seahorse) or set KEYCHAIN_AUTH_BACKEND=file"
                .into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// The most recently modified of `items` (several only when another tool duplicated one).
async fn newest<'a, 'b>(
    items: &'b [secret_service::Item<'a>],
) -> Result<Option<&'b secret_service::Item<'a>>, Fail> {
    if items.len() <= 1 {
        return Ok(items.first());
    }
    let mut best: Option<(u64, &secret_service::Item<'a>)> = None;
    for item in items {
        let m = item.get_modified().await?;
        if best.is_none_or(|(b, _)| m > b) {
            best = Some((m, item));
        }
    }
    Ok(best.map(|(_, i)| i))
}

impl Backend for SecretServiceStore {
    fn kind(&self) -> BackendKind {
        BackendKind::Keyring
    }

    fn describe(&self) -> String {
        "Secret Service (org.freedesktop.secrets, default collection)".into()
    }

    fn get(&self, service: &str, target: &str) -> Result<Option<Item>, BackendError> {
        let (service, target) = (service.to_string(), target.to_string());
        let what = format!("read {service}/{target}");
        self.call(&what, move |c| async move {
            let items = find(&c.ss, &service, &target).await?;
            let Some(item) = newest(&items).await? else {
                check_default_unlocked(&c.ss).await?;
                return Ok(None);
            };
            let bytes = item.get_secret().await?;
            let attributes = caller_attributes(&item.get_attributes().await?);
            let value = String::from_utf8(bytes).map_err(|_| {
                Fail::Other(format!(
                    "the item {} holds a secret that is not UTF-8 text; keychain-auth only serves text",
                    label(&service, &target)
                ))
            })?;
            Ok(Some(Item { value, attributes }))
        })
    }

    fn set(&self, service: &str, target: &str, item: &Item) -> Result<(), BackendError> {
        let (service, target, item) = (service.to_string(), target.to_string(), item.clone());
        let what = format!("write {service}/{target}");
        self.call(&what, move |c| async move {
            let old = find(&c.ss, &service, &target).await?;
            let collection = match c.ss.get_default_collection().await {
                Ok(col) => col,
                Err(secret_service::Error::NoResult) => {
                    return Err(Fail::Other(
                        "the Secret Service has no default collection: create one (e.g. with Seahorse) or set KEYCHAIN_AUTH_BACKEND=file"
                            .into(),
                    ));
                }
                Err(e) => return Err(e.into()),
            };
            if collection.is_locked().await? {
                // Creating an item in a locked collection would pop up a prompt: refuse instead.
                return Err(Fail::Locked);
            }
            let prefixed: Vec<(String, &str)> = item
                .attributes
                .iter()
                .map(|(k, v)| (format!("{CALLER_PREFIX}{k}"), v.as_str()))
                .collect();
            let mut attributes = key_attributes(&service, &target);
            for (k, v) in &prefixed {
                attributes.insert(k.as_str(), v);
            }
            let created = collection
                .create_item(
                    &label(&service, &target),
                    attributes,
                    item.value.as_bytes(),
                    true,
                    CONTENT_TYPE,
                )
                .await?;
            // With other attributes the old item was not replaced in place: remove it so there
            // is one item per (service, target). If that fails, take the new one back.
            for o in old.iter().filter(|o| o.item_path != created.item_path) {
                if let Err(e) = o.delete().await {
                    let _ = created.delete().await;
                    return Err(e.into());
                }
            }
            Ok(())
        })
    }

    fn delete(&self, service: &str, target: &str) -> Result<bool, BackendError> {
        let (service, target) = (service.to_string(), target.to_string());
        let what = format!("delete {service}/{target}");
        self.call(&what, move |c| async move {
            let items = find(&c.ss, &service, &target).await?;
            if items.is_empty() {
                check_default_unlocked(&c.ss).await?;
                return Ok(false);
            }
            for item in &items {
                item.delete().await?;
            }
            Ok(true)
        })
    }

    fn list(
        &self,
        service: &str,
        prefix: &str,
        filter: &Attributes,
    ) -> Result<Vec<Entry>, BackendError> {
        let (service, prefix, filter) = (service.to_string(), prefix.to_string(), filter.clone());
        let what = format!("search {service}");
        self.call(&what, move |c| async move {
            let prefixed: Vec<(String, &str)> = filter
                .iter()
                .map(|(k, v)| (format!("{CALLER_PREFIX}{k}"), v.as_str()))
                .collect();
            let mut query =
                HashMap::from([("xdg:schema", SCHEMA), (SERVICE_ATTR, service.as_str())]);
            for (k, v) in &prefixed {
                query.insert(k.as_str(), v);
            }
            let found = c.ss.search_items(query).await?;
            if !found.locked.is_empty() {
                return Err(Fail::Locked);
            }
            if found.unlocked.is_empty() {
                check_default_unlocked(&c.ss).await?;
            }
            let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
            for item in &found.unlocked {
                let stored = item.get_attributes().await?;
                let Some(target) = stored.get(TARGET_ATTR) else {
                    continue;
                };
                if stored.get(SERVICE_ATTR) != Some(&service) || !target.starts_with(&prefix) {
                    continue;
                }
                let attributes = caller_attributes(&stored);
                if matches_filter(&attributes, &filter) {
                    entries.insert(
                        target.clone(),
                        Entry {
                            target: target.clone(),
                            attributes,
                        },
                    );
                }
            }
            Ok(entries.into_values().collect())
        })
    }

    fn services(&self) -> Result<Vec<String>, BackendError> {
        self.all_services()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_attributes_are_namespaced_and_ours_are_hidden() {
        let stored: HashMap<String, String> = [
            ("xdg:schema", SCHEMA),
            (SERVICE_ATTR, "aws"),
            (TARGET_ATTR, "k"),
            ("attr:service", "evil"),
            ("attr:env", "prod"),
            ("unrelated", "x"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let attrs = caller_attributes(&stored);
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs["service"], "evil");
        assert_eq!(attrs["env"], "prod");
        let key = key_attributes("aws", "k");
        assert_eq!(key[SERVICE_ATTR], "aws");
        assert_eq!(key[TARGET_ATTR], "k");
        assert_eq!(
            label("aws", "prod-api-key"),
            "keychain-auth: aws/prod-api-key"
        );
    }
}

#[cfg(test)]
mod timeout_tests {
    use super::*;

    #[test]
    fn zbus_timeouts_are_recognised() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
        let e = secret_service::Error::Zbus(zbus::Error::InputOutput(Arc::new(io)));
        assert!(is_timeout(&e), "{e:?}");
    }
}
