//! The owner's calls on the store (`secret ls|get|put|rm`, `aws add`, `export`), each one call,
//! carried out where the store is open: by the running broker (an admin request with the
//! passphrase, SPEC §16 and §19: the daemon holds the store and is its only writer), or by the
//! command itself when no broker runs.
//!
//! With a broker running, the command never opens the vault itself: a process that held the
//! vault key would make itself non-dumpable, and a broker that is not root could then no longer
//! see that it is keychain-auth (it refuses what it cannot identify).

use crate::backend::{Backend, BackendError, Change, Entry, Item};
use crate::protocol::Attributes;
use serde::{Deserialize, Serialize};

/// One call of the owner's commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case", deny_unknown_fields)]
pub enum OwnerCall {
    /// The entries of `service`, or of every service but keychain-auth's own.
    List {
        /// One service, or all.
        service: Option<String>,
    },
    /// One item.
    Get {
        /// Its service.
        service: String,
        /// Its target.
        target: String,
    },
    /// One batch, all-or-nothing (put, aws add).
    Apply {
        /// The steps.
        changes: Vec<Change>,
    },
    /// Removes one item; answers whether it existed.
    Remove {
        /// Its service.
        service: String,
        /// Its target.
        target: String,
    },
    /// Every item but keychain-auth's own (export).
    Dump,
}

/// What an [`OwnerCall`] gave back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case", deny_unknown_fields)]
pub enum OwnerAnswer {
    /// Services with their entries, sorted.
    Listing {
        /// `(service, entries)`.
        services: Vec<(String, Vec<Entry>)>,
    },
    /// The item, if any.
    Item {
        /// It.
        item: Option<Item>,
    },
    /// The batch was applied.
    Applied,
    /// Whether the removed item existed.
    Removed {
        /// It did.
        existed: bool,
    },
    /// Every item: `(service, target, item)`.
    Items {
        /// Them.
        items: Vec<(String, String, Item)>,
    },
}

impl OwnerCall {
    /// A call that names one of keychain-auth's own services is refused: the owner's commands
    /// never touch the audit key or the seal markers.
    fn names_reserved(&self) -> bool {
        let reserved = crate::keys::is_reserved_service;
        match self {
            OwnerCall::List { service } => service.as_deref().is_some_and(reserved),
            OwnerCall::Get { service, .. } | OwnerCall::Remove { service, .. } => reserved(service),
            OwnerCall::Apply { changes } => changes.iter().any(|c| match c {
                Change::Set { service, .. } | Change::Delete { service, .. } => reserved(service),
            }),
            OwnerCall::Dump => false,
        }
    }

    /// Carries the call out on `store`.
    pub fn run(&self, store: &dyn Backend) -> Result<OwnerAnswer, BackendError> {
        if self.names_reserved() {
            return Err(BackendError::Unavailable(
                "that service is reserved for keychain-auth itself".into(),
            ));
        }
        let services = |one: &Option<String>| -> Result<Vec<String>, BackendError> {
            Ok(match one {
                Some(s) => vec![s.clone()],
                None => store
                    .services()?
                    .into_iter()
                    .filter(|s| !crate::keys::is_reserved_service(s))
                    .collect(),
            })
        };
        Ok(match self {
            OwnerCall::List { service } => {
                let mut out = vec![];
                for s in services(service)? {
                    let entries = store.list(&s, "", &Attributes::new())?;
                    out.push((s, entries));
                }
                OwnerAnswer::Listing { services: out }
            }
            OwnerCall::Get { service, target } => OwnerAnswer::Item {
                item: store.get(service, target)?,
            },
            OwnerCall::Apply { changes } => {
                store.apply(changes)?;
                OwnerAnswer::Applied
            }
            OwnerCall::Remove { service, target } => OwnerAnswer::Removed {
                existed: store.delete(service, target)?,
            },
            OwnerCall::Dump => {
                let mut items = vec![];
                for s in services(&None)? {
                    for e in store.list(&s, "", &Attributes::new())? {
                        if let Some(item) = store.get(&s, &e.target)? {
                            items.push((s.clone(), e.target, item));
                        }
                    }
                }
                OwnerAnswer::Items { items }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryStore;

    fn item(v: &str) -> Item {
        Item {
            value: v.into(),
            attributes: Attributes::new(),
        }
    }

    #[test]
    fn calls_round_trip_and_never_touch_reserved_services() {
        let store = MemoryStore::new();
        let put = OwnerCall::Apply {
            changes: vec![Change::Set {
                service: "aws".into(),
                target: "k".into(),
                item: item("v"),
            }],
        };
        let wire = serde_json::to_string(&put).unwrap();
        assert_eq!(serde_json::from_str::<OwnerCall>(&wire).unwrap(), put);
        assert_eq!(put.run(&store).unwrap(), OwnerAnswer::Applied);
        store
            .set(
                crate::keys::KEY_SERVICE,
                crate::keys::KEY_TARGET,
                &item("00"),
            )
            .unwrap();
        let get = OwnerCall::Get {
            service: "aws".into(),
            target: "k".into(),
        };
        assert_eq!(
            get.run(&store).unwrap(),
            OwnerAnswer::Item {
                item: Some(item("v"))
            }
        );
        let OwnerAnswer::Items { items } = OwnerCall::Dump.run(&store).unwrap() else {
            panic!("dump");
        };
        assert_eq!(items, vec![("aws".into(), "k".into(), item("v"))]);
        let reserved = OwnerCall::Get {
            service: crate::keys::KEY_SERVICE.into(),
            target: crate::keys::KEY_TARGET.into(),
        };
        assert!(reserved.run(&store).is_err());
        let remove = OwnerCall::Remove {
            service: "aws".into(),
            target: "k".into(),
        };
        assert_eq!(
            remove.run(&store).unwrap(),
            OwnerAnswer::Removed { existed: true }
        );
        assert_eq!(
            remove.run(&store).unwrap(),
            OwnerAnswer::Removed { existed: false }
        );
    }
}
