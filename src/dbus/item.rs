//! `org.freedesktop.Secret.Item` at `/org/freedesktop/secrets/collection/login/i<N>`.
//!
//! Every call is a broker request by the caller: `GetSecret` a `read`, `Delete` a `delete`,
//! the properties a `search` for the item's target, `SetSecret` and the property setters a
//! `read` (what is stored now) then a `write`. An item the caller may not see answers
//! `NoSuchObject`, exactly as one that does not exist.

use super::namespace::{self, Shown};
use super::service::{secret_for, secret_from};
use super::session::Secret;
use super::{Front, SecretError, caller, no_prompt, no_such_item, now_s};
use crate::protocol::{Action, Attributes};
use std::collections::HashMap;
use std::sync::Arc;
use zbus::message::Header;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

/// One item.
pub struct ItemObject {
    /// The front end.
    pub front: Arc<Front>,
    /// Its number (the last part of its path).
    pub id: u64,
}

impl ItemObject {
    /// Its namespace and target (gone once deleted).
    fn key(&self) -> Result<(String, String), SecretError> {
        self.front.item_key(self.id).ok_or_else(no_such_item)
    }

    /// What the caller may see of it.
    async fn look(&self, hdr: Option<Header<'_>>) -> Result<Shown, SecretError> {
        let hdr = hdr.ok_or_else(no_such_item)?;
        let sender = caller::sender(&hdr)?;
        let who = caller::identify(&self.front, &hdr).await?;
        Ok(self.front.look(&who, &sender, self.id).await?.shown)
    }

    /// Rewrites the item with `change` applied to what it shows (its value kept): a `read`,
    /// then a `write` in the same namespace.
    async fn rewrite(
        &self,
        hdr: &Header<'_>,
        value: Option<String>,
        change: impl FnOnce(&mut Shown),
    ) -> Result<(), SecretError> {
        let (ns, target) = self.key()?;
        let who = caller::identify(&self.front, hdr).await?;
        let current = self
            .front
            .read(&who, &ns, vec![target.clone()])
            .await?
            .and_then(|r| r.into_iter().find(|r| r.target == target))
            .ok_or_else(no_such_item)?;
        let mut shown = namespace::shown(&ns, &target, &current.attributes.unwrap_or_default());
        change(&mut shown);
        namespace::check_client_attributes(&shown.attributes).map_err(SecretError::InvalidArgs)?;
        if namespace::of_attributes(&shown.attributes) != ns {
            return Err(SecretError::InvalidArgs(format!(
                "these attributes would move the item out of its service namespace {ns} (its service or xdg:schema attribute); store a new item instead"
            )));
        }
        shown.modified = now_s();
        let value = value.or(current.value).unwrap_or_default();
        self.front
            .write(&who, &ns, &target, value, namespace::stored(&shown), |_| {
                no_such_item()
            })
            .await?;
        self.front.changed(self.id);
        Ok(())
    }
}

#[zbus::interface(name = "org.freedesktop.Secret.Item")]
impl ItemObject {
    /// The secret, through one of the caller's sessions (a `read` request).
    #[zbus(out_args("secret"))]
    async fn get_secret(
        &self,
        session: ObjectPath<'_>,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(Secret,), SecretError> {
        let owner = caller::sender(&hdr)?;
        let keys = self.front.session_keys(session.as_str(), &owner)?;
        let (ns, target) = self.key()?;
        let who = caller::identify(&self.front, &hdr).await?;
        let r = self
            .front
            .read(&who, &ns, vec![target.clone()])
            .await?
            .and_then(|r| r.into_iter().find(|r| r.target == target))
            .ok_or_else(no_such_item)?;
        let shown = namespace::shown(&ns, &target, &r.attributes.unwrap_or_default());
        // One out argument, the struct `(oayays)` (a bare tuple would be four).
        Ok((secret_for(
            &keys,
            &session,
            r.value.as_deref().unwrap_or_default(),
            &shown.content_type,
        )?,))
    }

    /// Replaces the secret (a `read`, then a `write`).
    async fn set_secret(
        &self,
        secret: Secret,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<(), SecretError> {
        let owner = caller::sender(&hdr)?;
        let (value, content_type) = secret_from(&self.front, &owner, &secret)?;
        self.rewrite(&hdr, Some(value), |s| s.content_type = content_type)
            .await
    }

    /// Deletes the item (a `delete` request); no prompt.
    async fn delete(
        &self,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<OwnedObjectPath, SecretError> {
        let (ns, target) = self.key()?;
        let who = caller::identify(&self.front, &hdr).await?;
        let resp = self
            .front
            .ask(&who, Action::Delete, &ns, Some(vec![target]), None, None)
            .await?;
        super::refusal_or(resp, |_| no_such_item())?;
        self.front.drop_item(self.id).await;
        Ok(no_prompt())
    }

    /// Locked while the broker's store is (a vault); otherwise answered only to a caller that
    /// may see the item.
    #[zbus(property)]
    async fn locked(&self, #[zbus(header)] hdr: Option<Header<'_>>) -> zbus::fdo::Result<bool> {
        if self.front.broker.backend.locked().is_some() {
            return Ok(true);
        }
        self.look(hdr).await?;
        Ok(false)
    }

    /// Its attributes.
    #[zbus(property)]
    async fn attributes(
        &self,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> zbus::fdo::Result<HashMap<String, String>> {
        Ok(self.look(hdr).await?.attributes.into_iter().collect())
    }

    /// Replaces its attributes (they must keep it in its namespace).
    #[zbus(property)]
    async fn set_attributes(
        &self,
        value: HashMap<String, String>,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> zbus::fdo::Result<()> {
        let hdr = hdr.ok_or_else(no_such_item)?;
        let attrs: Attributes = value.into_iter().collect();
        Ok(self.rewrite(&hdr, None, |s| s.attributes = attrs).await?)
    }

    /// Its label.
    #[zbus(property)]
    async fn label(&self, #[zbus(header)] hdr: Option<Header<'_>>) -> zbus::fdo::Result<String> {
        Ok(self.look(hdr).await?.label)
    }

    /// Replaces its label.
    #[zbus(property)]
    async fn set_label(
        &self,
        value: String,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> zbus::fdo::Result<()> {
        let hdr = hdr.ok_or_else(no_such_item)?;
        Ok(self.rewrite(&hdr, None, |s| s.label = value).await?)
    }

    /// Created, Unix seconds.
    #[zbus(property)]
    async fn created(&self, #[zbus(header)] hdr: Option<Header<'_>>) -> zbus::fdo::Result<u64> {
        Ok(self.look(hdr).await?.created)
    }

    /// Last changed, Unix seconds.
    #[zbus(property)]
    async fn modified(&self, #[zbus(header)] hdr: Option<Header<'_>>) -> zbus::fdo::Result<u64> {
        Ok(self.look(hdr).await?.modified)
    }
}
