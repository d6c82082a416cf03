//! `org.freedesktop.Secret.Service` at `/org/freedesktop/secrets`.
//!
//! The broker serves one collection (`login`, also the alias `default`). Its store is never
//! locked from here: the plain file store cannot be, so `Unlock` answers every object it knows
//! as unlocked without a prompt and `Lock` locks nothing. `CreateCollection` answers the one
//! collection (what a client asking for `default` expects).

use super::session::{self, OpenError, Secret, SessionObject};
use super::{COLLECTION_PATH, Front, SecretError, caller, no_prompt};
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
        let found = self.front.search(&who, &filter).await?;
        let mut paths = Vec::with_capacity(found.len());
        for f in found {
            paths.push(self.front.item_path(&f.ns, &f.target).await);
        }
        Ok((paths, Vec::new()))
    }

    /// The objects it knows, unlocked, with no prompt; `IsLocked` (how to unlock) while the
    /// store is a locked vault.
    #[zbus(out_args("unlocked", "prompt"))]
    async fn unlock(
        &self,
        objects: Vec<OwnedObjectPath>,
    ) -> Result<(Vec<OwnedObjectPath>, OwnedObjectPath), SecretError> {
        if let Some(how) = self.front.broker.backend.locked() {
            // No prompt can take the passphrase over the bus: the person unlocks the vault.
            return Err(SecretError::IsLocked(how));
        }
        let known = objects
            .into_iter()
            .filter(|o| {
                let p = o.as_str();
                p == COLLECTION_PATH || p == super::ALIAS_PATH || self.front.item_at(p).is_some()
            })
            .collect();
        Ok((known, no_prompt()))
    }

    /// The broker's store cannot be locked from the bus: nothing is locked.
    #[zbus(out_args("locked", "Prompt"))]
    async fn lock(
        &self,
        objects: Vec<OwnedObjectPath>,
    ) -> Result<(Vec<OwnedObjectPath>, OwnedObjectPath), SecretError> {
        let _ = objects;
        Ok((Vec::new(), no_prompt()))
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

    /// Aliases are fixed.
    async fn set_alias(&self, name: &str, collection: ObjectPath<'_>) -> Result<(), SecretError> {
        let _ = (name, collection);
        Err(SecretError::NotSupported(
            "the broker serves one collection; its alias default cannot be changed".into(),
        ))
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
