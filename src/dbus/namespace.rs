//! Which service namespace a Secret Service item belongs to, and how the broker's store holds
//! what D-Bus clients see (label, attributes, times, content type).
//!
//! The rule (README, "The Secret Service"): an item the broker stored for a socket caller
//! belongs to the service it was stored under; an item a D-Bus client creates belongs to its
//! `service` attribute, else its `xdg:schema` attribute, else `default`. A search's namespace
//! follows the same rule applied to the attributes it searches for.
//!
//! What the store keeps for an item a D-Bus client made: its attributes as given, plus the
//! broker's own bookkeeping under attribute names starting with `keychain-auth:` (label,
//! created, modified, content type), which D-Bus clients never see. An item stored by a socket
//! caller is shown to D-Bus clients with `service` set to its namespace and `target` to its
//! name (unless it has a `target` attribute), so `secret-tool lookup service aws target
//! prod-api-key` finds what `keychain-auth put aws prod-api-key` stored.

use crate::protocol::Attributes;

/// Attribute names the broker keeps for itself start with this; D-Bus clients never see them
/// and may not set them.
pub const HIDDEN: &str = "keychain-auth:";
/// The item's label.
const LABEL: &str = "keychain-auth:label";
/// Creation time (Unix seconds).
const CREATED: &str = "keychain-auth:created";
/// Last change (Unix seconds).
const MODIFIED: &str = "keychain-auth:modified";
/// The secret's content type.
const CONTENT_TYPE: &str = "keychain-auth:content-type";

/// The namespace of a search or of a new item with these attributes.
pub fn of_attributes(attrs: &Attributes) -> String {
    attrs
        .get("service")
        .or_else(|| attrs.get("xdg:schema"))
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| "default".into())
}

/// What a D-Bus client sees of an item besides its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// Its attributes (the broker's own left out).
    pub attributes: Attributes,
    /// Its label.
    pub label: String,
    /// Created, Unix seconds (0 when unknown).
    pub created: u64,
    /// Last changed, Unix seconds (0 when unknown).
    pub modified: u64,
    /// The secret's content type.
    pub content_type: String,
}

/// How the item stored as (`ns`, `target`) with `stored` attributes is shown.
pub fn shown(ns: &str, target: &str, stored: &Attributes) -> Shown {
    let mut attributes: Attributes = stored
        .iter()
        .filter(|(k, _)| !k.starts_with(HIDDEN))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let made_on_dbus = stored.contains_key(LABEL);
    if !made_on_dbus {
        // Stored by a socket caller: its namespace is its service.
        attributes.insert("service".into(), ns.into());
        attributes
            .entry("target".into())
            .or_insert_with(|| target.into());
    }
    let time = |k: &str| stored.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
    Shown {
        label: stored.get(LABEL).cloned().unwrap_or_else(|| target.into()),
        created: time(CREATED),
        modified: time(MODIFIED),
        content_type: stored
            .get(CONTENT_TYPE)
            .cloned()
            .unwrap_or_else(|| "text/plain".into()),
        attributes,
    }
}

/// The attributes to store for an item shown as `shown` (the broker's bookkeeping added).
pub fn stored(shown: &Shown) -> Attributes {
    let mut a = shown.attributes.clone();
    a.insert(LABEL.into(), shown.label.clone());
    a.insert(CREATED.into(), shown.created.to_string());
    a.insert(MODIFIED.into(), shown.modified.to_string());
    a.insert(CONTENT_TYPE.into(), shown.content_type.clone());
    a
}

/// Whether every pair of `filter` is among `attrs`.
pub fn matches(attrs: &Attributes, filter: &Attributes) -> bool {
    filter.iter().all(|(k, v)| attrs.get(k) == Some(v))
}

/// The target name of a new item: its attributes (`service` and `xdg:schema`, which name the
/// namespace, left out) as `name=value` pairs, so that the item a client stores again with the
/// same attributes (`replace`) is the same target. `unique` adds a suffix (a second item with
/// the same attributes, `replace` false). Long names become a digest.
pub fn target_for(attrs: &Attributes, label: &str, unique: Option<u64>) -> String {
    use sha2::Digest;
    let pairs: Vec<String> = attrs
        .iter()
        .filter(|(k, _)| k.as_str() != "service" && k.as_str() != "xdg:schema")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut name = if pairs.is_empty() {
        if label.is_empty() {
            "item".to_string()
        } else {
            label.to_string()
        }
    } else {
        pairs.join(",")
    };
    name.retain(|c| !c.is_control());
    if name.len() > 200 {
        let digest = sha2::Sha256::digest(name.as_bytes());
        name = format!("item-{}", hex::encode(&digest[..8]));
    }
    match unique {
        Some(n) => format!("{name} #{n}"),
        None => name,
    }
}

/// Why attributes a client gave cannot be stored.
pub fn check_client_attributes(attrs: &Attributes) -> Result<(), String> {
    match attrs.keys().find(|k| k.starts_with(HIDDEN)) {
        Some(k) => Err(format!(
            "attribute names starting with {HIDDEN} are the broker's own ({k})"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> Attributes {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_namespace_is_service_else_schema_else_default() {
        assert_eq!(
            of_attributes(&attrs(&[("service", "aws"), ("xdg:schema", "x")])),
            "aws"
        );
        assert_eq!(
            of_attributes(&attrs(&[("xdg:schema", "org.git.Password"), ("user", "a")])),
            "org.git.Password"
        );
        assert_eq!(of_attributes(&attrs(&[("user", "a")])), "default");
        assert_eq!(of_attributes(&attrs(&[("service", "")])), "default");
    }

    #[test]
    fn a_socket_item_shows_its_service_and_target_and_no_bookkeeping() {
        let s = shown("aws", "prod-api-key", &attrs(&[("env", "prod")]));
        assert_eq!(
            s.attributes,
            attrs(&[
                ("env", "prod"),
                ("service", "aws"),
                ("target", "prod-api-key")
            ])
        );
        assert_eq!(s.label, "prod-api-key");
        assert_eq!(of_attributes(&s.attributes), "aws");
    }

    #[test]
    fn a_dbus_item_round_trips_without_showing_the_bookkeeping() {
        let given = Shown {
            attributes: attrs(&[("service", "myapp"), ("username", "bob")]),
            label: "Password for bob".into(),
            created: 5,
            modified: 6,
            content_type: "text/plain".into(),
        };
        let kept = stored(&given);
        assert!(kept.keys().any(|k| k.starts_with(HIDDEN)));
        assert_eq!(shown("myapp", "username=bob", &kept), given);
        assert!(check_client_attributes(&kept).is_err());
        assert!(check_client_attributes(&given.attributes).is_ok());
    }

    #[test]
    fn targets_name_the_attributes_and_stay_bounded() {
        let a = attrs(&[("service", "myapp"), ("username", "bob"), ("host", "h")]);
        assert_eq!(target_for(&a, "l", None), "host=h,username=bob");
        assert_eq!(target_for(&a, "l", Some(3)), "host=h,username=bob #3");
        assert_eq!(target_for(&attrs(&[("service", "s")]), "", None), "item");
        let long = attrs(&[("k", &"v".repeat(500))]);
        assert!(target_for(&long, "", None).starts_with("item-"));
        assert!(target_for(&long, "", None).len() < 40);
    }
}
