//! `org.freedesktop.Secret.Service` at `/org/freedesktop/secrets`.
//!
//! The broker serves one collection (`login`, also the alias `default`). `CreateCollection`
//! answers the one collection (what a client asking for `default` expects).
//!
//! While the store is a locked vault, `SearchItems` cannot look inside it: it answers one
//! "locked item" standing for the search, and `Unlock` answers a [`super::prompt`] that
//! completes once the person unlocks the vault, with the items the search finds then (made as
//! the caller, a broker request like any other). `Lock` locks the vault, for a caller that
//! policy knows ([`may_lock`]); anyone else locks nothing.

use super::session::{self, OpenError, Secret, SessionObject};
use super::{ALIAS_PATH, COLLECTION_PATH, Front, SecretError, caller, no_prompt};
use crate::protocol::Attributes;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use zbus::message::Header;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};

/// The service object.
pub struct ServiceObject {
    /// The front end.
    pub front: Arc<Front>,
}

fn collection_path() -> OwnedObjectPath {
    OwnedObjectPath::from(ObjectPath::from_static_str_unchecked(COLLECTION_PATH))
}

/// A secret for the caller: `value` sealed under session `path`'s keys.
pub(crate) fn secret_for(
    keys: &session::Keys,
    path: &ObjectPath<'_>,
    value: &str,
    content_type: &str,
) -> Result<Secret, SecretError> {
    let (iv, bytes) = keys.seal(value.as_bytes())?;
    Ok((
        OwnedObjectPath::from(path.clone()),
        iv,
        bytes,
        content_type.to_string(),
    ))
}

/// The text of a secret a client sent through one of its sessions, and its content type.
pub(crate) fn secret_from(
    front: &Front,
    owner: &str,
    secret: &Secret,
) -> Result<(String, String), SecretError> {
    let (path, iv, value, content_type) = secret;
    let keys = front.session_keys(path.as_str(), owner)?;
    let bytes = keys.open(iv, value)?;
    let text = String::from_utf8(bytes).map_err(|_| {
        SecretError::InvalidArgs("keychain-auth stores text secrets; this one is not UTF-8".into())
    })?;
    Ok((text, content_type.clone()))
}

#[zbus::interface(name = "org.freedesktop.Secret.Service")]
impl ServiceObject {
    /// Opens a session (`plain` or `dh-ietf1024-sha256-aes128-cbc-pkcs7`).
    #[zbus(out_args("output", "result"))]
    async fn open_session(
        &self,
        algorithm: &str,
        input: OwnedValue,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(object_server)] server: &zbus::ObjectServer,
    ) -> Result<(OwnedValue, OwnedObjectPath), SecretError> {
        let owner = caller::sender(&hdr)?;
        let bytes = Vec::<u8>::try_from(input).ok();
        let (keys, output) = session::open(algorithm, bytes).map_err(|e| match e {
            OpenError::Unsupported(a) => {
                SecretError::NotSupported(format!("the session algorithm {a} is not supported"))
            }
            OpenError::BadKey => SecretError::InvalidArgs("bad Diffie-Hellman public key".into()),
        })?;
        let path = self.front.add_session(&owner, keys)?;
        server
            .at(
                path.as_str(),
                SessionObject {
                    front: self.front.clone(),
                },
            )
            .await?;
        let value = match output {
            Some(public) => Value::from(public),
            None => Value::from(""),
        };
        let value = OwnedValue::try_from(value).map_err(|e| SecretError::Failed(e.to_string()))?;
        Ok((value, path))
    }

    /// Items of the searched namespace matching every attribute, that the caller may see.
    #[zbus(out_args("unlocked", "locked"))]
    async fn search_items(
        &self,
        attributes: HashMap<String, String>,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(Vec<OwnedObjectPath>, Vec<OwnedObjectPath>), SecretError> {
        let who = caller::identify(&self.front, &hdr).await?;
        let filter: Attributes = attributes.into_iter().collect();
        if crate::backend::vault::VaultStore::of(self.front.broker.backend.as_ref()).is_some()
            && self.front.broker.backend.locked().is_some()
        {
            // Nothing can be searched inside a locked vault: one locked "item" stands for the
            // search until the client unlocks it (Unlock, then the prompt).
            check_size(&self.front, &filter)?;
            let owner = caller::sender(&hdr)?;
            let placeholder = self.front.add_locked_search(&owner, filter)?;
            return Ok((Vec::new(), vec![placeholder]));
        }
        let found = self.front.search(&who, &filter).await?;
        let mut paths = Vec::with_capacity(found.len());
        for f in found {
            paths.push(self.front.item_path(&f.ns, &f.target).await);
        }
        Ok((paths, Vec::new()))
    }

    /// While the vault is locked: no object yet, and a prompt that completes once the person
    /// unlocks it (no passphrase travels over the bus). Otherwise the objects it knows,
    /// unlocked, with no prompt (a search made while the vault was locked is made now).
    #[zbus(out_args("unlocked", "prompt"))]
    async fn unlock(
        &self,
        objects: Vec<OwnedObjectPath>,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(Vec<OwnedObjectPath>, OwnedObjectPath), SecretError> {
        let owner = caller::sender(&hdr)?;
        if objects.len() > 4096 {
            return Err(SecretError::InvalidArgs("too many objects".into()));
        }
        if let Some(how) = self.front.broker.backend.locked() {
            if crate::backend::vault::VaultStore::of(self.front.broker.backend.as_ref()).is_none() {
                return Err(SecretError::IsLocked(how));
            }
            let prompt = self.front.open_prompt(&owner, objects).await?;
            return Ok((Vec::new(), prompt));
        }
        Ok((
            self.front.unlocked_paths(&owner, objects).await,
            no_prompt(),
        ))
    }

    /// Locks the vault (all of it: its keys leave the daemon's memory) for a caller that
    /// [`may_lock`]; for anyone else, or a store that cannot be locked, nothing is locked.
    /// Audited either way (`"front":"dbus"`).
    #[zbus(out_args("locked", "Prompt"))]
    async fn lock(
        &self,
        objects: Vec<OwnedObjectPath>,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(Vec<OwnedObjectPath>, OwnedObjectPath), SecretError> {
        let who = caller::identify(&self.front, &hdr).await?;
        let Some(store) = crate::backend::vault::VaultStore::of(self.front.broker.backend.as_ref())
        else {
            return Ok((Vec::new(), no_prompt()));
        };
        let broker = &self.front.broker;
        let mut rec = super::caller_record(&who.peer, "vault", "lock");
        if let Err(why) = may_lock(&self.front, &who.peer) {
            rec.status = Some("denied".into());
            rec.reason = Some("unregistered_binary".into());
            rec.message = Some(why);
            super::audit_or_defer(broker, rec);
            return Ok((Vec::new(), no_prompt()));
        }
        let was = store.lock();
        broker.audit.reset_key();
        rec.status = Some("success".into());
        rec.message = Some(
            if was {
                "the vault is locked (Secret Service Lock): its keys were wiped from the daemon's memory"
            } else {
                "the vault was already locked"
            }
            .into(),
        );
        // The audit key went with the vault's: the record waits for the next unlock.
        super::audit_or_defer(broker, rec);
        let locked = objects
            .into_iter()
            .filter(|o| {
                let p = o.as_str();
                p == COLLECTION_PATH || p == ALIAS_PATH || self.front.item_at(p).is_some()
            })
            .collect();
        Ok((locked, no_prompt()))
    }

    /// The secrets of `items` that the caller may read (one `read` request per namespace);
    /// the others are left out.
    async fn get_secrets(
        &self,
        items: Vec<OwnedObjectPath>,
        session: ObjectPath<'_>,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<HashMap<OwnedObjectPath, Secret>, SecretError> {
        let owner = caller::sender(&hdr)?;
        let keys = self.front.session_keys(session.as_str(), &owner)?;
        let who = caller::identify(&self.front, &hdr).await?;
        let mut by_ns: BTreeMap<String, Vec<(String, OwnedObjectPath)>> = BTreeMap::new();
        for path in items {
            if let Some((_, ns, target)) = self.front.item_at(path.as_str()) {
                by_ns.entry(ns).or_default().push((target, path));
            }
        }
        let mut out = HashMap::new();
        for (ns, wanted) in by_ns {
            let mut targets: Vec<String> = wanted.iter().map(|(t, _)| t.clone()).collect();
            targets.sort();
            targets.dedup();
            let Some(results) = self.front.read(&who, &ns, targets).await? else {
                continue;
            };
            for r in results {
                let stored = r.attributes.clone().unwrap_or_default();
                let shown = super::namespace::shown(&ns, &r.target, &stored);
                let value = r.value.unwrap_or_default();
                for (t, path) in &wanted {
                    if *t == r.target {
                        out.insert(
                            path.clone(),
                            secret_for(&keys, &session, &value, &shown.content_type)?,
                        );
                    }
                }
            }
        }
        Ok(out)
    }

    /// `default` is the broker's collection; no other alias exists.
    async fn read_alias(&self, name: &str) -> OwnedObjectPath {
        if name == "default" || name == "login" {
            collection_path()
        } else {
            no_prompt()
        }
    }

    /// Aliases are fixed: `default` (and `login`) pointed at the broker's one collection is
    /// accepted and changes nothing (what a client making sure of its default sends); any
    /// other alias, or removing `default`, is refused.
    async fn set_alias(&self, name: &str, collection: ObjectPath<'_>) -> Result<(), SecretError> {
        let ours = collection.as_str() == COLLECTION_PATH || collection.as_str() == ALIAS_PATH;
        match (name, ours) {
            ("default" | "login", true) => Ok(()),
            ("default" | "login", false) => Err(SecretError::NotSupported(format!(
                "the alias {name} always names the broker's one collection ({COLLECTION_PATH}); it cannot be moved or removed"
            ))),
            _ => Err(SecretError::NotSupported(format!(
                "the broker serves one collection and no alias but default; {name} cannot be set"
            ))),
        }
    }

    /// The broker serves one collection: it is the answer, with no prompt.
    #[zbus(out_args("collection", "prompt"))]
    async fn create_collection(
        &self,
        properties: HashMap<String, OwnedValue>,
        alias: &str,
    ) -> (OwnedObjectPath, OwnedObjectPath) {
        let _ = (properties, alias);
        (collection_path(), no_prompt())
    }

    /// The collections.
    #[zbus(property)]
    async fn collections(&self) -> Vec<OwnedObjectPath> {
        vec![collection_path()]
    }
}

/// Whether the caller `peer` may lock the vault over D-Bus: `Ok` for a verified caller that
/// policy knows with at least one service (registered or approved, its script included),
/// else why not. Locking is narrowing and needs no presence, but any same-user process can call
/// the bus: an unknown one locking the vault at will would deny every other client until the
/// person unlocks again.
pub fn may_lock(front: &Front, peer: &crate::identity::Peer) -> Result<(), String> {
    let crate::identity::Exe::Verified {
        hash,
        program,
        path,
        ..
    } = &peer.exe
    else {
        return Err("the caller could not be verified; it may not lock the vault".into());
    };
    let known = front
        .broker
        .policy
        .current()
        .ok()
        .and_then(|p| {
            p.lookup_caller(hash, program).map(|b| {
                !b.allowed_read_services.is_empty() || !b.allowed_write_services.is_empty()
            })
        })
        .unwrap_or(false);
    if known {
        Ok(())
    } else {
        Err(format!(
            "{} is not registered for any service; only a caller the policy knows may lock the vault over D-Bus (the person runs keychain-auth lock)",
            path.display()
        ))
    }
}

/// A search kept for the unlock is no larger than a request may be.
fn check_size(front: &Front, filter: &Attributes) -> Result<(), SecretError> {
    let size: usize = filter.iter().map(|(k, v)| k.len() + v.len() + 8).sum();
    let max = front.broker.limits.max_line;
    if size > max {
        return Err(SecretError::InvalidArgs(format!(
            "the search is larger than the broker's {max}-byte limit"
        )));
    }
    Ok(())
}
