//! What a store holds and how a store call fails: the data every store, the vault format and
//! the audit key's storage share, apart from the store trait itself.

use crate::protocol::Attributes;
use std::fmt;

/// A stored secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Item {
    /// The secret value.
    pub value: String,
    /// Its attributes.
    pub attributes: Attributes,
}

impl fmt::Debug for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret, even in a debug dump or a panic message.
        f.debug_struct("Item")
            .field("value", &"<redacted>")
            .field("attributes", &self.attributes)
            .finish()
    }
}

/// A target name with its attributes, as search returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The target name.
    pub target: String,
    /// Its attributes.
    pub attributes: Attributes,
}

/// One step of a batch.
#[derive(Clone, PartialEq, Eq)]
pub enum Change {
    /// Store `item` at (service, target), replacing any earlier value and attributes.
    Set {
        /// Service namespace.
        service: String,
        /// Target name.
        target: String,
        /// What to store.
        item: Item,
    },
    /// Remove (service, target) if present.
    Delete {
        /// Service namespace.
        service: String,
        /// Target name.
        target: String,
    },
}

impl fmt::Debug for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Set {
                service, target, ..
            } => write!(f, "Set({service}/{target})"),
            Change::Delete { service, target } => write!(f, "Delete({service}/{target})"),
        }
    }
}

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The store cannot be reached or used now (locked, corrupt, no bus); the message says what
    /// to do.
    #[error("{0}")]
    Unavailable(String),
    /// The vault is locked; the message says how to unlock it.
    #[error("{0}")]
    Locked(String),
}

/// True when `attributes` contains every pair of `filter`.
pub(crate) fn matches_filter(attributes: &Attributes, filter: &Attributes) -> bool {
    filter
        .iter()
        .all(|(k, v)| attributes.get(k).is_some_and(|a| a == v))
}
