//! `keychain-auth import --from secret-service`: copies the items of the Secret Service that
//! runs now (gnome-keyring, KWallet) into the store the broker serves the name from, before the
//! switch.
//!
//! Every unlocked collection is read through a Diffie-Hellman session. Each item lands where
//! the broker will serve it ([`super::namespace`]): an item keychain-auth itself stored in the
//! keyring (schema `org.keychain-auth.Secret`) goes back to its own service and target with its
//! caller attributes; any other item goes to the namespace of its attributes, under the target
//! its attributes name, with its label, times and content type kept. An identical item already
//! there is not copied again (a second run is harmless); a different one under the same name
//! gets a ` #N` suffix. Nothing is removed from the source. Locked collections and secrets that
//! are not UTF-8 text are skipped and counted.

use super::namespace::{self, Shown};
use crate::backend::secret_service::{CALLER_PREFIX, SCHEMA, SERVICE_ATTR, TARGET_ATTR};
use crate::backend::{Backend, Item};
use crate::paths::Paths;
use crate::protocol::Attributes;
use secret_service::{EncryptionType, SecretService};
use std::collections::HashMap;
use std::time::Duration;

/// One item as the provider gave it.
struct Source {
    attributes: HashMap<String, String>,
    label: String,
    secret: Vec<u8>,
    content_type: String,
    created: u64,
    modified: u64,
}

/// What an import did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Items copied.
    pub copied: usize,
    /// Items already in the store, identical.
    pub already: usize,
    /// Items skipped, each with why.
    pub skipped: Vec<String>,
}

/// The whole import bounded by this (a provider that stops answering).
const TIMEOUT: Duration = Duration::from_secs(60);

/// Reads every unlocked item of the running Secret Service.
async fn fetch(skipped: &mut Vec<String>) -> Result<Vec<Source>, String> {
    let ss = SecretService::connect(EncryptionType::Dh)
        .await
        .map_err(|e| format!("cannot reach the Secret Service to import from: {e}"))?;
    let mut out = Vec::new();
    let collections = ss
        .get_all_collections()
        .await
        .map_err(|e| format!("cannot list the Secret Service's collections: {e}"))?;
    for c in collections {
        let label = c.get_label().await.unwrap_or_default();
        if c.is_locked().await.unwrap_or(true) {
            skipped.push(format!(
                "collection {label:?} is locked (unlock it, e.g. by logging in to the desktop, and import again)"
            ));
            continue;
        }
        let items = c
            .get_all_items()
            .await
            .map_err(|e| format!("cannot list the items of collection {label:?}: {e}"))?;
        for item in items {
            let read = async {
                Ok::<_, secret_service::Error>(Source {
                    attributes: item.get_attributes().await?,
                    label: item.get_label().await?,
                    secret: item.get_secret().await?,
                    content_type: item
                        .get_secret_content_type()
                        .await
                        .unwrap_or_else(|_| "text/plain".into()),
                    created: item.get_created().await.unwrap_or(0),
                    modified: item.get_modified().await.unwrap_or(0),
                })
            };
            match read.await {
                Ok(s) => out.push(s),
                Err(e) => skipped.push(format!("an item of {label:?} could not be read: {e}")),
            }
        }
    }
    Ok(out)
}

/// Where `s` goes: (namespace, target, item), or why it is skipped.
fn place(s: Source) -> Result<(String, String, Item), String> {
    let value = String::from_utf8(s.secret)
        .map_err(|_| format!("{:?}: its secret is not UTF-8 text", s.label))?;
    let attrs: Attributes = s.attributes.into_iter().collect();
    if attrs.get("xdg:schema").map(String::as_str) == Some(SCHEMA)
        && let (Some(service), Some(target)) = (attrs.get(SERVICE_ATTR), attrs.get(TARGET_ATTR))
    {
        let caller: Attributes = attrs
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(CALLER_PREFIX)
                    .map(|k| (k.to_string(), v.clone()))
            })
            .collect();
        return Ok((
            service.clone(),
            target.clone(),
            Item {
                value,
                attributes: caller,
            },
        ));
    }
    let hidden: Attributes = attrs
        .into_iter()
        .filter(|(k, _)| !k.starts_with(namespace::HIDDEN))
        .collect();
    let ns = namespace::of_attributes(&hidden);
    let target = namespace::target_for(&hidden, &s.label, None);
    let shown = Shown {
        attributes: hidden,
        label: s.label,
        created: s.created,
        modified: s.modified,
        content_type: s.content_type,
    };
    Ok((
        ns,
        target,
        Item {
            value,
            attributes: namespace::stored(&shown),
        },
    ))
}

/// Copies `items` into `store`.
fn copy(store: &dyn Backend, items: Vec<Source>, report: &mut Report) -> Result<(), String> {
    for s in items {
        let (ns, target, item) = match place(s) {
            Ok(p) => p,
            Err(why) => {
                report.skipped.push(why);
                continue;
            }
        };
        if crate::keys::is_reserved_service(&ns) {
            report.skipped.push(format!(
                "an item claiming keychain-auth's own service {ns:?}"
            ));
            continue;
        }
        let mut name = target.clone();
        let mut n = 1;
        loop {
            match store.get(&ns, &name).map_err(|e| e.to_string())? {
                Some(existing) if existing == item => {
                    report.already += 1;
                    break;
                }
                Some(_) if n < 100 => {
                    n += 1;
                    name = format!("{target} #{n}");
                }
                Some(_) => {
                    report.skipped.push(format!(
                        "{ns}/{target}: too many different items of that name"
                    ));
                    break;
                }
                None => {
                    store.set(&ns, &name, &item).map_err(|e| e.to_string())?;
                    report.copied += 1;
                    break;
                }
            }
        }
    }
    Ok(())
}

/// `keychain-auth import --from secret-service`: into the file store (the store
/// `start --secret-service` serves from), with the daemon stopped. Audited.
pub fn import(paths: &Paths) -> Result<Report, String> {
    crate::control::no_daemon_serves(paths)?;
    crate::server::preflight::check_file_store(paths).map_err(|e| e.to_string())?;
    let store = crate::backend::file::FileStore::new(&paths.file_store);
    let mut report = Report::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let items = runtime.block_on(async {
        tokio::time::timeout(TIMEOUT, fetch(&mut report.skipped))
            .await
            .map_err(|_| {
                format!(
                    "the Secret Service did not answer within {} s",
                    TIMEOUT.as_secs()
                )
            })?
    })?;
    let result = copy(&store, items, &mut report);
    let message = format!(
        "imported {} item(s) from the Secret Service into the {} ({} already there, {} skipped)",
        report.copied,
        store.describe(),
        report.already,
        report.skipped.len()
    );
    let mut rec = crate::audit::Record::migrate(
        report.copied,
        Vec::new(),
        result.is_ok(),
        result
            .as_ref()
            .err()
            .map_or_else(|| message.clone(), |e| format!("{message}; stopped: {e}")),
    );
    rec.action = Some("import".into());
    // Chained with the key of the store the broker will serve from.
    let keys = crate::audit::KeySource::Store(std::sync::Arc::new(
        crate::backend::file::FileStore::new(&paths.file_store),
    ));
    let _ = crate::audit_once::append_with(paths, keys, &rec);
    result.map(|()| report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(attrs: &[(&str, &str)], secret: &[u8]) -> Source {
        Source {
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            label: "L".into(),
            secret: secret.to_vec(),
            content_type: "text/plain".into(),
            created: 1,
            modified: 2,
        }
    }

    #[test]
    fn items_land_where_the_broker_serves_them() {
        let (ns, target, item) =
            place(source(&[("service", "myapp"), ("username", "bob")], b"pw")).unwrap();
        assert_eq!((ns.as_str(), target.as_str()), ("myapp", "username=bob"));
        assert_eq!(item.value, "pw");
        let shown = namespace::shown(&ns, &target, &item.attributes);
        assert_eq!(shown.label, "L");
        assert_eq!(shown.created, 1);
        // keychain-auth's own keyring items go back to their service and target.
        let (ns, target, item) = place(source(
            &[
                ("xdg:schema", SCHEMA),
                (SERVICE_ATTR, "aws"),
                (TARGET_ATTR, "prod"),
                ("attr:env", "p"),
            ],
            b"v",
        ))
        .unwrap();
        assert_eq!((ns.as_str(), target.as_str()), ("aws", "prod"));
        assert_eq!(item.attributes.get("env").map(String::as_str), Some("p"));
        assert!(place(source(&[], &[0xff, 0xfe])).is_err());
    }

    #[test]
    fn a_second_import_copies_nothing_and_a_clash_gets_a_suffix() {
        let store = crate::backend::memory::MemoryStore::default();
        let mut r = Report::default();
        copy(
            &store,
            vec![source(&[("service", "s"), ("u", "a")], b"1")],
            &mut r,
        )
        .unwrap();
        copy(
            &store,
            vec![source(&[("service", "s"), ("u", "a")], b"1")],
            &mut r,
        )
        .unwrap();
        copy(
            &store,
            vec![source(&[("service", "s"), ("u", "a")], b"2")],
            &mut r,
        )
        .unwrap();
        assert_eq!((r.copied, r.already), (2, 1));
        assert_eq!(store.get("s", "u=a #2").unwrap().unwrap().value, "2");
    }
}
