//! The daemon locks the vault by itself: after a time with no request that needed a secret
//! (config.json `"auto_lock"`, off by default), and when logind announces a suspend
//! (`PrepareForSleep(true)` on the system bus; config.json `"lock_on_suspend": false` turns it
//! off).
//!
//! Either lock is the same as `keychain-auth lock`: the key page is zeroed and unmapped, and the
//! audit key forgotten. Each is audited as a vault `lock` with its reason (`idle`, `suspend`),
//! written before the key goes, so it is in the chain at once.
//!
//! The settings are read from config.json as the daemon applies it (an edit made outside
//! keychain-auth is not in force until `keychain-auth policy accept`), while the vault is
//! unlocked — the only time they matter.
//!
//! The suspend signal is believed only from the connection that owns `org.freedesktop.login1`
//! when it arrives (asked of the bus for each signal): any other program on the system bus can
//! send a signal with the same path, interface and member, and is ignored.

use super::Broker;
use crate::audit::Record;
use crate::backend::vault::VaultStore;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The shortest `auto_lock` accepted (a shorter one is raised to it).
pub const MIN_AUTO_LOCK: Duration = Duration::from_secs(2);
/// The longest `auto_lock` accepted (a longer one is lowered to it).
pub const MAX_AUTO_LOCK: Duration = Duration::from_secs(7 * 86_400);
/// What an `auto_lock` the daemon cannot read means: the setting asked for a lock, so it
/// locks after this rather than never.
pub const UNREADABLE_AUTO_LOCK: Duration = Duration::from_secs(15 * 60);

/// How often the idle time is looked at.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// logind's bus name.
pub const LOGIND: &str = "org.freedesktop.login1";

/// The `auto_lock` setting, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoLock {
    /// Not set, `false`, `null` or `"off"`: the vault stays unlocked until locked.
    Off,
    /// Lock after this long without a request that needed a secret.
    After(Duration),
    /// Set, but not to something the daemon understands (or out of bounds): the duration it
    /// applies instead, and what to tell the user.
    Fixed(Duration, String),
}

impl AutoLock {
    /// The idle time after which the vault is locked, if any.
    pub fn limit(&self) -> Option<Duration> {
        match self {
            AutoLock::Off => None,
            AutoLock::After(d) | AutoLock::Fixed(d, _) => Some(*d),
        }
    }
}

/// Reads config.json's `"auto_lock"` value: a duration as for grants (`"90s"`, `"15m"`,
/// `"1h30m"`), or `false` / `"off"` / absent for none.
pub fn parse_auto_lock(value: Option<&Value>) -> AutoLock {
    let text = match value {
        None | Some(Value::Null | Value::Bool(false)) => return AutoLock::Off,
        Some(Value::String(s)) if s == "off" => return AutoLock::Off,
        Some(Value::String(s)) => s,
        Some(other) => {
            return AutoLock::Fixed(
                UNREADABLE_AUTO_LOCK,
                format!(
                    "config.json's auto_lock {} is not a duration (use for example \"15m\"); the vault locks after {} idle instead",
                    crate::display::clean(&other.to_string()),
                    crate::policy::human_duration(UNREADABLE_AUTO_LOCK.as_secs())
                ),
            );
        }
    };
    match crate::policy::parse_duration(text) {
        Ok(secs) => {
            let d = Duration::from_secs(secs);
            let bounded = d.clamp(MIN_AUTO_LOCK, MAX_AUTO_LOCK);
            if bounded == d {
                AutoLock::After(d)
            } else {
                AutoLock::Fixed(
                    bounded,
                    format!(
                        "config.json's auto_lock {:?} is outside {}..{}; the vault locks after {} idle",
                        crate::display::clean(text),
                        crate::policy::human_duration(MIN_AUTO_LOCK.as_secs()),
                        crate::policy::human_duration(MAX_AUTO_LOCK.as_secs()),
                        crate::policy::human_duration(bounded.as_secs())
                    ),
                )
            }
        }
        Err(e) => AutoLock::Fixed(
            UNREADABLE_AUTO_LOCK,
            format!(
                "config.json's auto_lock: {e}; the vault locks after {} idle instead",
                crate::policy::human_duration(UNREADABLE_AUTO_LOCK.as_secs())
            ),
        ),
    }
}

/// The settings in force (`None`: config.json cannot be read or vouched for now).
fn setting(broker: &Broker, name: &str) -> Option<Option<Value>> {
    broker
        .policy
        .current()
        .ok()
        .map(|p| p.file.extra.get(name).cloned())
}

/// Locks the vault for `reason` (`idle`, `suspend`), audited before the key goes. Returns
/// whether it was unlocked.
pub fn lock_for(broker: &Broker, reason: &str, message: &str) -> bool {
    let Some(store) = crate::backend::vault::VaultStore::of(broker.backend.as_ref()) else {
        return false;
    };
    if !store.is_unlocked() {
        return false;
    }
    let mut rec = Record::new("vault", "daemon");
    rec.action = Some("lock".into());
    rec.pid = i32::try_from(std::process::id()).ok();
    rec.status = Some("success".into());
    rec.reason = Some(reason.into());
    rec.message = Some(message.into());
    // Written while the audit key is still there; if it cannot be, it waits for the next
    // unlock like any record of a locked vault.
    super::vault_admin::audit(broker, rec);
    let was = store.lock();
    broker.audit.reset_key();
    tracing::info!("keychain-auth: {message}");
    was
}

/// Locks the vault once no request has needed a secret for the `auto_lock` time.
pub(super) async fn idle_loop(broker: &Arc<Broker>) {
    if crate::backend::vault::VaultStore::of(broker.backend.as_ref()).is_none() {
        return std::future::pending().await;
    }
    let mut told: Option<String> = None;
    loop {
        tokio::time::sleep(IDLE_CHECK).await;
        let Some(store) = crate::backend::vault::VaultStore::of(broker.backend.as_ref()) else {
            continue;
        };
        let Some(idle) = store.idle() else {
            continue;
        };
        let Some(value) = setting(broker, "auto_lock") else {
            continue;
        };
        let auto = parse_auto_lock(value.as_ref());
        if let AutoLock::Fixed(_, why) = &auto
            && told.as_ref() != Some(why)
        {
            tracing::warn!("keychain-auth: warning: {why}");
            told = Some(why.clone());
        }
        if let Some(limit) = auto.limit()
            && idle >= limit
        {
            lock_for(
                broker,
                "idle",
                &format!(
                    "the vault was locked after {} with no request that needed a secret (auto_lock)",
                    crate::policy::human_duration(limit.as_secs())
                ),
            );
        }
    }
}

/// Locks the vault when logind announces a suspend. Without a system bus or logind: one info
/// line, and nothing else.
pub(super) async fn suspend_loop(broker: &Arc<Broker>) {
    if crate::backend::vault::VaultStore::of(broker.backend.as_ref()).is_some()
        && let Err(why) = watch_suspend(broker).await
    {
        tracing::info!("keychain-auth: {why}: the vault is not locked on suspend");
    }
    std::future::pending::<()>().await;
}

async fn watch_suspend(broker: &Arc<Broker>) -> Result<(), String> {
    use futures_util::StreamExt;
    let conn = tokio::time::timeout(Duration::from_secs(5), zbus::Connection::system())
        .await
        .map_err(|_| "the system bus does not answer".to_string())?
        .map_err(|e| format!("no system bus ({e})"))?;
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface("org.freedesktop.login1.Manager")
        .and_then(|b| b.member("PrepareForSleep"))
        .and_then(|b| b.path("/org/freedesktop/login1"))
        .map_err(|e| format!("cannot listen for suspends ({e})"))?
        .build();
    let mut signals = zbus::MessageStream::for_match_rule(rule, &conn, Some(16))
        .await
        .map_err(|e| format!("cannot listen for suspends on the system bus ({e})"))?;
    let bus = zbus::fdo::DBusProxy::new(&conn)
        .await
        .map_err(|e| format!("the system bus does not answer ({e})"))?;
    let logind = zbus::names::BusName::from_static_str(LOGIND)
        .map_err(|e| format!("cannot name logind ({e})"))?;
    if bus.get_name_owner(logind.clone()).await.is_ok() {
        tracing::info!("keychain-auth: the vault is locked when logind announces a suspend");
    } else {
        tracing::info!(
            "keychain-auth: no logind on the system bus: the vault is not locked on suspend unless it appears"
        );
    }
    while let Some(msg) = signals.next().await {
        let Ok(msg) = msg else { continue };
        let Ok(going) = msg.body().deserialize::<bool>() else {
            continue;
        };
        if !going {
            continue;
        }
        let sender = msg.header().sender().map(std::string::ToString::to_string);
        let owner = bus
            .get_name_owner(logind.clone())
            .await
            .ok()
            .map(|o| o.to_string());
        if sender.is_none() || sender != owner {
            tracing::warn!(
                "keychain-auth: warning: ignored a suspend signal from {}, which does not own {LOGIND}",
                crate::display::clean(sender.as_deref().unwrap_or("an unnamed sender"))
            );
            continue;
        }
        if matches!(
            setting(broker, "lock_on_suspend"),
            Some(Some(Value::Bool(false)))
        ) {
            if crate::backend::vault::VaultStore::of(broker.backend.as_ref())
                .is_some_and(VaultStore::is_unlocked)
            {
                tracing::info!(
                    "keychain-auth: logind announced a suspend; the vault stays unlocked (lock_on_suspend is false)"
                );
            }
            continue;
        }
        lock_for(
            broker,
            "suspend",
            "the vault was locked: logind announced a suspend",
        );
    }
    Err("the system bus went away".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn auto_lock_is_off_unless_set_and_bounded_when_set() {
        assert_eq!(parse_auto_lock(None), AutoLock::Off);
        assert_eq!(parse_auto_lock(Some(&json!(false))), AutoLock::Off);
        assert_eq!(parse_auto_lock(Some(&json!("off"))), AutoLock::Off);
        assert_eq!(parse_auto_lock(Some(&Value::Null)), AutoLock::Off);
        assert_eq!(
            parse_auto_lock(Some(&json!("15m"))),
            AutoLock::After(Duration::from_secs(900))
        );
        assert_eq!(
            parse_auto_lock(Some(&json!("1h30m"))).limit(),
            Some(Duration::from_secs(5400))
        );
        // Out of bounds: brought to the bound, and said.
        let AutoLock::Fixed(d, why) = parse_auto_lock(Some(&json!("1s"))) else {
            panic!("1s is below the bound")
        };
        assert_eq!(d, MIN_AUTO_LOCK);
        assert!(why.contains("outside"), "{why}");
        assert_eq!(
            parse_auto_lock(Some(&json!("30d"))).limit(),
            Some(MAX_AUTO_LOCK)
        );
        // Unreadable: locks after the fallback rather than never.
        for bad in [json!("15 minutes"), json!(true), json!(900), json!("")] {
            let AutoLock::Fixed(d, why) = parse_auto_lock(Some(&bad)) else {
                panic!("{bad} is not a duration")
            };
            assert_eq!(d, UNREADABLE_AUTO_LOCK, "{bad}");
            assert!(why.contains("auto_lock"), "{why}");
        }
    }
}
