//! `org.freedesktop.Secret.Collection` at `/org/freedesktop/secrets/collection/login` (and the
//! alias `/org/freedesktop/secrets/aliases/default`): the broker's one collection.
//!
//! `Items` lists what the caller may see without asking anyone: every item of the services
//! its policy lets it read and search (one `search` request each, never held for an approver).
//! `SearchItems` and `CreateItem` are broker requests like the service's.

use super::namespace::{self, Shown};
use super::service::secret_from;
use super::session::Secret;
use super::{Front, SecretError, caller, no_prompt, now_s};
use crate::protocol::Attributes;
use std::collections::HashMap;
use std::sync::Arc;
use zbus::message::Header;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

/// The collection object.
pub struct CollectionObject {
    /// The front end.
    pub front: Arc<Front>,
}

/// The item property names CreateItem reads.
const LABEL: &str = "org.freedesktop.Secret.Item.Label";
const ATTRIBUTES: &str = "org.freedesktop.Secret.Item.Attributes";

#[zbus::interface(name = "org.freedesktop.Secret.Collection")]
impl CollectionObject {
    /// The items of the searched namespace matching every attribute.
    async fn search_items(
        &self,
        attributes: HashMap<String, String>,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<Vec<OwnedObjectPath>, SecretError> {
        let who = caller::identify(&self.front, &hdr).await?;
        if let Some(how) = self.front.broker.backend.locked() {
            // Nothing inside a locked vault can be searched; the client unlocks (a prompt).
            return Err(SecretError::IsLocked(how));
        }
        let filter: Attributes = attributes.into_iter().collect();
        let found = self.front.search(&who, &filter).await?;
        let mut paths = Vec::with_capacity(found.len());
        for f in found {
            paths.push(self.front.item_path(&f.ns, &f.target).await);
        }
        Ok(paths)
    }

    /// Stores a new item in the namespace of its attributes (a `write` request). With
    /// `replace`, the item stored earlier with the same attributes is overwritten.
    #[zbus(out_args("item", "prompt"))]
    async fn create_item(
        &self,
        properties: HashMap<String, OwnedValue>,
        secret: Secret,
        replace: bool,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(OwnedObjectPath, OwnedObjectPath), SecretError> {
        let owner = caller::sender(&hdr)?;
        let (value, content_type) = secret_from(&self.front, &owner, &secret)?;
        let label = match properties.get(LABEL) {
            Some(v) => {
                String::try_from(v.try_clone().map_err(bad_property)?).map_err(bad_property)?
            }
            None => String::new(),
        };
        let attributes: Attributes = match properties.get(ATTRIBUTES) {
            Some(v) => HashMap::<String, String>::try_from(v.try_clone().map_err(bad_property)?)
                .map_err(bad_property)?
                .into_iter()
                .collect(),
            None => Attributes::new(),
        };
        namespace::check_client_attributes(&attributes).map_err(SecretError::InvalidArgs)?;
        let ns = namespace::of_attributes(&attributes);
        let unique = (!replace).then(|| {
            let mut b = [0u8; 4];
            let _ = getrandom::fill(&mut b);
            u64::from(u32::from_le_bytes(b))
        });
        let target = namespace::target_for(&attributes, &label, unique);
        let now = now_s();
        let shown = Shown {
            attributes,
            label,
            created: now,
            modified: now,
            content_type,
        };
        let who = caller::identify(&self.front, &hdr).await?;
        self.front
            .write(
                &who,
                &ns,
                &target,
                value,
                namespace::stored(&shown),
                SecretError::AccessDenied,
            )
            .await?;
        let path = self.front.item_path(&ns, &target).await;
        if let Some((id, _, _)) = self.front.item_at(path.as_str()) {
            self.front.changed(id);
            self.front.remember(&owner, id, shown);
        }
        Ok((path, no_prompt()))
    }

    /// Refused: the one collection holds the items of every service, most of them outside the
    /// caller's, so deleting it is not a request any one caller could be allowed. The refusal
    /// is audited (`"front":"dbus"`); nothing is deleted. A client deletes items one by one
    /// (each a broker request).
    async fn delete(
        &self,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<OwnedObjectPath, SecretError> {
        let who = caller::identify(&self.front, &hdr).await?;
        let why = "the broker's one collection holds every service's items and cannot be deleted; delete the items you own one by one";
        let mut rec = super::caller_record(&who.peer, "request", "delete_collection");
        rec.status = Some("denied".into());
        rec.message = Some(why.into());
        super::audit_or_defer(&self.front.broker, rec);
        Err(SecretError::AccessDenied(why.into()))
    }

    /// What the caller may see without asking: the items of every service its policy lets it
    /// read and search.
    #[zbus(property)]
    async fn items(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> zbus::fdo::Result<Vec<OwnedObjectPath>> {
        let Some(hdr) = hdr else {
            return Ok(Vec::new());
        };
        let who = caller::identify(&self.front, &hdr).await?;
        let services = super::readable_services(&self.front, &who.peer);
        let mut paths = Vec::new();
        for ns in services {
            let resp = self.front.search_unheld(&who, &ns).await?;
            let Ok(results) = super::refusal_or(resp, SecretError::AccessDenied) else {
                continue;
            };
            for r in results {
                paths.push(self.front.item_path(&ns, &r.target).await);
            }
        }
        Ok(paths)
    }

    /// The collection's label.
    #[zbus(property)]
    async fn label(&self) -> String {
        "Login".into()
    }

    /// Whether the broker's store is locked (a vault waiting for `keychain-auth unlock`).
    #[zbus(property)]
    async fn locked(&self) -> bool {
        self.front.broker.backend.locked().is_some()
    }

    /// Unknown (0).
    #[zbus(property)]
    async fn created(&self) -> u64 {
        0
    }

    /// Unknown (0).
    #[zbus(property)]
    async fn modified(&self) -> u64 {
        0
    }
}

fn bad_property(e: impl std::fmt::Display) -> SecretError {
    SecretError::InvalidArgs(format!("bad item property: {e}"))
}
