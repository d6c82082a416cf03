//! Choosing the store (SPEC §9): `KEYCHAIN_AUTH_BACKEND=auto|keyring|file`, else config.json's
//! `"backend"`, else `auto`.
//!
//! The rules, in the order they apply:
//! - An explicit `keyring` or `file` in the environment wins over everything.
//! - An unset (or `auto`) environment defers to an explicit `keyring` or `file` in config.json.
//!   That is how a pin holds: `auto` means "decide for me", and a recorded decision is one.
//! - `keyring` (explicit or pinned) never falls back: when no Secret Service is reachable,
//!   `start` fails at once saying what to set or run; when it is locked or slow, the daemon
//!   starts and requests answer `backend_unavailable` with the cause.
//! - `auto` probes read-only with a short timeout. Only "unreachable" (no session bus, nothing
//!   on it provides `org.freedesktop.secrets`) selects the file store, with a one-line notice.
//!   A timeout, an error or a locked collection keeps the keyring.
//! - Under `auto` (or `keyring` from the environment), the first successful keyring write
//!   records `"backend": "keyring"` in config.json unless it already names a backend, so a
//!   later failure (or a start without the variable) cannot silently switch to the file store.
//!
//! Selecting has no side effects: nothing here prints, writes config.json or the audit log.
//! `Selection` says what was chosen, why, what to tell the user (`Selection::notice`) and
//! whether the choice should be pinned (`Selection::pin`); the layer that starts serving does
//! that, through `PinOnWrite` and a hook of its own.

use crate::backend::secret_service::{self, Probe, SecretServiceStore};
use crate::backend::{Backend, BackendError, BackendKind, Change, Entry, Item};
use crate::paths::Paths;
use crate::protocol::Attributes;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The environment variable that chooses the store.
pub(crate) const ENV: &str = "KEYCHAIN_AUTH_BACKEND";

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Preference {
    /// Probe, prefer the keyring.
    Auto,
    /// The Secret Service, or nothing.
    Keyring,
    /// The JSON file store.
    File,
}

impl Preference {
    /// Parses `auto`, `keyring` or `file`.
    pub(crate) fn parse(s: &str) -> Option<Preference> {
        match s {
            "auto" => Some(Preference::Auto),
            "keyring" => Some(Preference::Keyring),
            "file" => Some(Preference::File),
            _ => None,
        }
    }

    /// The name as written in config and the environment.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Preference::Auto => "auto",
            Preference::Keyring => "keyring",
            Preference::File => "file",
        }
    }
}

/// Where the preference came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// `KEYCHAIN_AUTH_BACKEND`.
    Env,
    /// config.json `"backend"`.
    Config,
    /// Neither says anything.
    Default,
}

/// The effective preference and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Requested {
    /// What is asked for.
    pub preference: Preference,
    /// Who asked.
    pub origin: Origin,
    /// config.json could not be read (so a pin in it is unknown).
    pub config_error: Option<String>,
}

impl Requested {
    /// "KEYCHAIN_AUTH_BACKEND=keyring", "config.json \"backend\": \"file\"", "the default (auto)".
    pub(crate) fn origin_text(&self) -> String {
        match self.origin {
            Origin::Env => format!("{ENV}={}", self.preference.as_str()),
            Origin::Config => format!("config.json \"backend\": \"{}\"", self.preference.as_str()),
            Origin::Default => "the default (auto)".into(),
        }
    }
}

/// Why no store was selected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// `KEYCHAIN_AUTH_BACKEND` names no backend.
    #[error(
        "{ENV}={0:?} is not a backend: use auto, keyring or file (or vault, once `keychain-auth init` created one)"
    )]
    BadEnv(String),
    /// config.json's `"backend"` names no backend.
    #[error("{}: \"backend\": {value:?} is not a backend: use auto, keyring or file", .config.display())]
    BadConfig {
        /// config.json.
        config: PathBuf,
        /// What it says.
        value: String,
    },
    /// The Secret Service client could not be created.
    #[error(transparent)]
    Store(#[from] BackendError),
    /// The rules refuse to start (the message says what to set or run).
    #[error("{0}")]
    Refused(String),
}

/// Reads the preference from `env_value` (the environment variable) and config.json.
pub(crate) fn requested_from(
    paths: &Paths,
    env_value: Option<&str>,
) -> Result<Requested, SelectError> {
    let env = match env_value.filter(|s| !s.is_empty()) {
        Some(s) => Some(Preference::parse(s).ok_or_else(|| SelectError::BadEnv(s.into()))?),
        None => None,
    };
    let (config, config_error) = match crate::policy::load(&paths.config) {
        Ok(p) => match p.backend.as_deref() {
            None | Some("") => (None, None),
            Some(s) => (
                Some(Preference::parse(s).ok_or_else(|| SelectError::BadConfig {
                    config: paths.config.clone(),
                    value: s.into(),
                })?),
                None,
            ),
        },
        Err(e) => (None, Some(e.to_string())),
    };
    let (preference, origin) = match (env, config) {
        (Some(p @ (Preference::Keyring | Preference::File)), _) => (p, Origin::Env),
        (_, Some(p @ (Preference::Keyring | Preference::File))) => (p, Origin::Config),
        (Some(Preference::Auto), _) => (Preference::Auto, Origin::Env),
        (None, Some(Preference::Auto)) => (Preference::Auto, Origin::Config),
        (None, None) => (Preference::Auto, Origin::Default),
    };
    Ok(Requested {
        preference,
        origin,
        config_error,
    })
}

/// What to do given the request and, for `auto` and `keyring`, the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Serve the Secret Service.
    Keyring {
        /// Why, for status screens.
        reason: String,
        /// A one-line notice for start-up (locked, not answering).
        notice: Option<String>,
        /// Record `"backend": "keyring"` after the first successful write.
        pin: bool,
    },
    /// Serve the file store.
    File {
        /// Why.
        reason: String,
        /// A one-line notice for start-up (the auto fallback).
        notice: Option<String>,
    },
    /// Do not start: the message says what to set or run.
    Refuse(String),
}

/// The fix offered when the keyring is required but unreachable.
const START_ONE: &str = "start one (a desktop session runs it; on a headless machine: \
    `dbus-run-session -- $SHELL`, then `gnome-keyring-daemon --unlock --components=secrets` and type the password, then Ctrl-D), \
    or use the file store with KEYCHAIN_AUTH_BACKEND=file (secrets kept in the keyring are not there: \
    `keychain-auth migrate --to file` moves them while the keyring is reachable)";

/// Decides the store; pure, so the whole matrix is unit-tested.
pub(crate) fn decide(req: &Requested, probe: Option<&Probe>, file_store: &str) -> Decision {
    let how = req.origin_text();
    let keyring_state = |probe: &Probe| match probe {
        Probe::Available => ("the Secret Service answered".to_string(), None),
        Probe::Locked => (
            "the Secret Service answered but is locked".to_string(),
            Some(format!(
                "{}; until then requests answer backend_unavailable",
                secret_service::UNLOCK_HINT
            )),
        ),
        Probe::Trouble(t) => (
            format!("the Secret Service is not usable right now ({t})"),
            Some(format!(
                "the Secret Service is not usable right now ({t}); staying on the keyring, requests answer backend_unavailable until it answers"
            )),
        ),
        Probe::Unreachable(w) => (w.clone(), None),
    };
    match (req.preference, probe) {
        (Preference::File, _) => Decision::File {
            reason: format!("file store {file_store}, chosen by {how}"),
            notice: None,
        },
        (_, None) => Decision::Refuse("the Secret Service was not probed".into()),
        (Preference::Keyring, Some(Probe::Unreachable(why))) => Decision::Refuse(format!(
            "the keyring backend is required ({how}) but no Secret Service is reachable: {why}. Fix: {START_ONE}"
        )),
        (Preference::Keyring, Some(p)) => {
            let (state, notice) = keyring_state(p);
            Decision::Keyring {
                reason: format!("keyring, chosen by {how}: {state}"),
                notice,
                // Chosen by the environment: record it too, so that a later start without the
                // variable cannot fall back to the file store.
                pin: req.origin == Origin::Env && req.config_error.is_none(),
            }
        }
        (Preference::Auto, Some(Probe::Unreachable(why))) => match &req.config_error {
            Some(e) => Decision::Refuse(format!(
                "no Secret Service is reachable ({why}) and {e}, so whether the keyring was pinned is unknown; \
                 auto will not guess the file store: repair config.json, or set {ENV}=file or {ENV}=keyring"
            )),
            None => Decision::File {
                reason: format!("file store {file_store}: {how} found no Secret Service ({why})"),
                notice: Some(format!(
                    "no Secret Service reachable ({why}); using the file store {file_store}. Set {ENV}=keyring to require the keyring"
                )),
            },
        },
        (Preference::Auto, Some(p)) => {
            let (state, notice) = keyring_state(p);
            Decision::Keyring {
                reason: format!("keyring, chosen by {how}: {state}"),
                notice,
                pin: req.config_error.is_none(),
            }
        }
    }
}

/// The chosen store and why.
pub(crate) struct Selection {
    /// The store to serve (not yet wrapped in [`PinOnWrite`]; see [`Selection::pin`]).
    pub backend: Arc<dyn Backend>,
    /// Why this store (for doctor, the start-up line and the dashboard).
    pub reason: String,
    /// A one-line notice to show at start (fallback, locked, not answering).
    pub notice: Option<String>,
    /// Pin the choice after the first successful write: the server wraps [`Selection::backend`]
    /// in a [`PinOnWrite`] whose hook records it.
    pub pin: bool,
}

impl Selection {
    /// Which kind of store was chosen.
    pub(crate) fn kind(&self) -> BackendKind {
        self.backend.kind()
    }
}

/// Chooses the store without side effects (nothing is printed, written or audited).
pub(crate) fn select(paths: &Paths) -> Result<Selection, SelectError> {
    let env = std::env::var(ENV).ok();
    if let Some(sel) = select_vault(paths, env.as_deref())? {
        return Ok(sel);
    }
    select_plain_with(paths, env)
}

/// The plain store (keyring or file) the rules choose, ignoring any vault and a
/// `KEYCHAIN_AUTH_BACKEND=vault` (for `init`, which imports from it).
pub(crate) fn select_plain(paths: &Paths) -> Result<Selection, SelectError> {
    let env = std::env::var(ENV).ok().filter(|e| e != "vault");
    select_plain_with(paths, env)
}

fn select_plain_with(paths: &Paths, env: Option<String>) -> Result<Selection, SelectError> {
    let requested = requested_from(paths, env.as_deref())?;
    let file_store = paths.file_store.display().to_string();
    let mut store = None;
    let mut probe = None;
    if requested.preference != Preference::File {
        let s = SecretServiceStore::new(secret_service::DEFAULT_TIMEOUT)?;
        probe = Some(s.probe(secret_service::PROBE_TIMEOUT));
        store = Some(s);
    }
    let decision = decide(&requested, probe.as_ref(), &file_store);
    let (backend, reason, notice, pin): (Arc<dyn Backend>, _, _, _) = match decision {
        Decision::Refuse(m) => return Err(SelectError::Refused(m)),
        Decision::File { reason, notice } => (
            Arc::new(crate::backend::file::FileStore::new(&paths.file_store)),
            reason,
            notice,
            false,
        ),
        Decision::Keyring {
            reason,
            notice,
            pin,
        } => {
            let store = store.ok_or_else(|| {
                SelectError::Refused("the Secret Service store was not created".into())
            })?;
            (Arc::new(store), reason, notice, pin)
        }
    };
    Ok(Selection {
        backend,
        reason,
        notice,
        pin,
    })
}

/// The vault, when one exists at `paths.vault` (it is then the store, whatever else is asked
/// for: a plain store beside it would hand secrets to same-user code again) or when
/// `KEYCHAIN_AUTH_BACKEND=vault` asks for it (refused when there is none).
fn select_vault(paths: &Paths, env: Option<&str>) -> Result<Option<Selection>, SelectError> {
    let store = crate::backend::vault::VaultStore::shared(&paths.vault);
    let asked = env == Some("vault");
    if !store.file().exists() {
        return if asked {
            Err(SelectError::Refused(format!(
                "{ENV}=vault but there is no vault at {}: create one with `keychain-auth init`",
                paths.vault.display()
            )))
        } else {
            Ok(None)
        };
    }
    let ignored = match env {
        Some(e @ ("file" | "keyring" | "auto")) => {
            format!(" ({ENV}={e} is ignored while a vault exists)")
        }
        _ => String::new(),
    };
    let why = if asked {
        format!("chosen by {ENV}=vault")
    } else {
        "a vault exists, so it is the store".into()
    };
    Ok(Some(Selection {
        reason: format!("vault {}: {why}{ignored}", paths.vault.display()),
        notice: (!ignored.is_empty()).then(|| ignored.trim().trim_matches(['(', ')']).to_string()),
        backend: store,
        pin: false,
    }))
}

/// Called after a successful write by a caller (not keychain-auth's own reserved items);
/// returns `true` once the choice is recorded, after which it is not called again.
pub(crate) type PinHook = Box<dyn Fn() -> bool + Send + Sync>;

/// A store whose first successful caller write runs a hook (the server's: record
/// `"backend": "keyring"` in config.json and audit it), until the hook says it is done.
pub(crate) struct PinOnWrite {
    inner: Arc<dyn Backend>,
    hook: PinHook,
    pinned: AtomicBool,
}

impl PinOnWrite {
    /// Wraps `inner`; `hook` runs after successful writes until it returns `true`.
    pub(crate) fn new(inner: Arc<dyn Backend>, hook: PinHook) -> PinOnWrite {
        PinOnWrite {
            inner,
            hook,
            pinned: AtomicBool::new(false),
        }
    }

    fn pin(&self) {
        if !self.pinned.load(Ordering::SeqCst) && (self.hook)() {
            self.pinned.store(true, Ordering::SeqCst);
        }
    }
}

impl Backend for PinOnWrite {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn get(&self, service: &str, target: &str) -> Result<Option<Item>, BackendError> {
        self.inner.get(service, target)
    }

    fn set(&self, service: &str, target: &str, item: &Item) -> Result<(), BackendError> {
        self.inner.set(service, target, item)?;
        // keychain-auth's own key (audit chain) is not a caller's write: storing it neither
        // pins nor audits (it happens while the audit log waits for that key).
        if !crate::keys::is_reserved_service(service) {
            self.pin();
        }
        Ok(())
    }

    fn delete(&self, service: &str, target: &str) -> Result<bool, BackendError> {
        self.inner.delete(service, target)
    }

    fn list(
        &self,
        service: &str,
        prefix: &str,
        filter: &Attributes,
    ) -> Result<Vec<Entry>, BackendError> {
        self.inner.list(service, prefix, filter)
    }

    fn services(&self) -> Result<Vec<String>, BackendError> {
        self.inner.services()
    }

    fn fast_reads(&self) -> bool {
        self.inner.fast_reads()
    }

    fn watch_for_changes(&self) {
        self.inner.watch_for_changes();
    }

    fn locked(&self) -> Option<String> {
        self.inner.locked()
    }

    fn concrete(&self) -> &dyn std::any::Any {
        self.inner.concrete()
    }

    fn apply(&self, changes: &[Change]) -> Result<(), BackendError> {
        self.inner.apply(changes)?;
        if changes.iter().any(|c| matches!(c, Change::Set { .. })) {
            self.pin();
        }
        Ok(())
    }
}

/// The chain key's source for a command run on `paths`: the store these rules select, chosen
/// only when the key is first needed.
pub(crate) fn key_source(paths: &Paths) -> crate::audit::KeySource {
    let paths = paths.clone();
    crate::audit::KeySource::Chosen(Arc::new(move || Ok(select(&paths)?.backend)))
}

impl From<SelectError> for crate::keys::KeyError {
    fn from(e: SelectError) -> Self {
        crate::keys::KeyError::Select(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_keys() -> crate::audit::KeySource {
        crate::audit::KeySource::Fixed(crate::keys::Key::from_bytes(&[5u8; 32]))
    }

    fn write_config(p: &Paths, backend: &str) {
        crate::policy::sealed::update_with(p, &test_keys(), |c| {
            c.backend = Some(backend.into());
            Ok::<_, crate::policy::sealed::UpdateError>(())
        })
        .unwrap();
    }

    #[test]
    fn environment_wins_and_auto_defers_to_a_pin() {
        let t = tempfile::tempdir().unwrap();
        let p = Paths::flat_in(t.path());
        let r = requested_from(&p, None).unwrap();
        assert_eq!(
            (r.preference, r.origin),
            (Preference::Auto, Origin::Default)
        );
        write_config(&p, "keyring");
        let r = requested_from(&p, Some("file")).unwrap();
        assert_eq!((r.preference, r.origin), (Preference::File, Origin::Env));
        let r = requested_from(&p, Some("auto")).unwrap();
        assert_eq!(
            (r.preference, r.origin),
            (Preference::Keyring, Origin::Config)
        );
        let r = requested_from(&p, None).unwrap();
        assert_eq!(
            (r.preference, r.origin),
            (Preference::Keyring, Origin::Config)
        );
        write_config(&p, "file");
        let r = requested_from(&p, Some("keyring")).unwrap();
        assert_eq!((r.preference, r.origin), (Preference::Keyring, Origin::Env));
        assert!(
            requested_from(&p, Some("kwallet"))
                .unwrap_err()
                .to_string()
                .contains("auto, keyring or file")
        );
        write_config(&p, "bogus");
        assert!(
            requested_from(&p, None)
                .unwrap_err()
                .to_string()
                .contains("\"bogus\"")
        );
    }

    #[test]
    fn corrupt_config_is_reported_not_ignored() {
        let t = tempfile::tempdir().unwrap();
        let p = Paths::flat_in(t.path());
        std::fs::write(&p.config, b"{broken").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p.config, std::fs::Permissions::from_mode(0o600)).unwrap();
        let r = requested_from(&p, None).unwrap();
        assert!(r.config_error.is_some());
        let d = decide(&r, Some(&Probe::Unreachable("no bus".into())), "f");
        assert!(matches!(d, Decision::Refuse(m) if m.contains("repair config.json")));
        let d = decide(&r, Some(&Probe::Available), "f");
        assert!(matches!(d, Decision::Keyring { pin: false, .. }));
    }

    fn req(preference: Preference, origin: Origin) -> Requested {
        Requested {
            preference,
            origin,
            config_error: None,
        }
    }

    #[test]
    fn decision_matrix() {
        let unreachable = Probe::Unreachable("no session bus".into());
        let timeout = Probe::Trouble("did not answer within 3 s".into());
        let auto = req(Preference::Auto, Origin::Default);
        // auto + reachable → keyring, pinned on first write.
        assert!(matches!(
            decide(&auto, Some(&Probe::Available), "f"),
            Decision::Keyring {
                pin: true,
                notice: None,
                ..
            }
        ));
        // auto + unreachable → file with a notice.
        match decide(&auto, Some(&unreachable), "/x/keyring.json") {
            Decision::File {
                notice: Some(n), ..
            } => {
                assert!(
                    n.contains("no session bus") && n.contains("/x/keyring.json"),
                    "{n}"
                );
            }
            d => panic!("{d:?}"),
        }
        // auto + timeout or locked → still keyring, with a notice.
        for p in [&timeout, &Probe::Locked] {
            assert!(matches!(
                decide(&auto, Some(p), "f"),
                Decision::Keyring {
                    notice: Some(_),
                    pin: true,
                    ..
                }
            ));
        }
        // explicit (or pinned) keyring + unreachable → refuse, saying what to run or set.
        for origin in [Origin::Env, Origin::Config] {
            match decide(&req(Preference::Keyring, origin), Some(&unreachable), "f") {
                Decision::Refuse(m) => {
                    assert!(
                        m.contains("gnome-keyring-daemon")
                            && m.contains("KEYCHAIN_AUTH_BACKEND=file"),
                        "{m}"
                    );
                }
                d => panic!("{d:?}"),
            }
        }
        // explicit keyring + locked → keyring with the unlock hint; pinned when the choice came
        // from the environment, not when config.json already says keyring.
        match decide(
            &req(Preference::Keyring, Origin::Env),
            Some(&Probe::Locked),
            "f",
        ) {
            Decision::Keyring {
                notice: Some(n),
                pin: true,
                ..
            } => assert!(n.contains("unlock"), "{n}"),
            d => panic!("{d:?}"),
        }
        assert!(matches!(
            decide(
                &req(Preference::Keyring, Origin::Config),
                Some(&Probe::Available),
                "f"
            ),
            Decision::Keyring { pin: false, .. }
        ));
        // file → file, whatever the probe.
        assert!(matches!(
            decide(&req(Preference::File, Origin::Env), None, "f"),
            Decision::File { notice: None, .. }
        ));
    }

    #[test]
    fn pin_only_replaces_auto_or_nothing() {
        let t = tempfile::tempdir().unwrap();
        let p = Paths::flat_in(t.path());
        assert!(crate::admin::pin_keyring(&p, &test_keys()).unwrap());
        assert_eq!(
            crate::policy::load(&p.config).unwrap().backend.as_deref(),
            Some("keyring")
        );
        assert!(!crate::admin::pin_keyring(&p, &test_keys()).unwrap());
        write_config(&p, "file");
        assert!(!crate::admin::pin_keyring(&p, &test_keys()).unwrap());
        assert_eq!(
            crate::policy::load(&p.config).unwrap().backend.as_deref(),
            Some("file")
        );
    }

    #[test]
    fn pin_on_write_runs_its_hook_after_caller_writes_until_it_is_done() {
        use std::sync::atomic::AtomicUsize;
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        // The hook fails once (say config.json is locked), then records the pin.
        let hook: PinHook = Box::new(move || seen.fetch_add(1, Ordering::SeqCst) >= 1);
        let store = PinOnWrite::new(Arc::new(crate::backend::memory::MemoryStore::new()), hook);
        let item = Item {
            value: "v".into(),
            attributes: Attributes::new(),
        };
        store.get("svc", "t").unwrap();
        store
            .set(crate::keys::KEY_SERVICE, "audit-key", &item)
            .unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "reads and reserved items never pin"
        );
        store.set("svc", "t", &item).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        store
            .apply(&[Change::Set {
                service: "svc".into(),
                target: "u".into(),
                item: item.clone(),
            }])
            .unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "tried again after the failure"
        );
        store.set("svc", "w", &item).unwrap();
        store.delete("svc", "w").unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "done once the hook said so"
        );
        assert_eq!(store.get("svc", "u").unwrap(), Some(item));
    }
}
