//! The file store: `~/.keychain-auth/keyring.json`, 0600 in a 0700 directory.
//!
//! For headless machines, containers and WSL, where no Secret Service runs. Values sit in the
//! file in plain text, protected only by file permissions (the same posture as a dotfile
//! token). The parsed file is cached and re-read only when its stamp changes; a batch is
//! committed with a single atomic replace, so it is all-or-nothing by construction.

use super::{Backend, BackendError, BackendKind, Change, Entry, Item, matches_filter};
use crate::fsutil::{self, FileLock, FileStamp};
use crate::protocol::Attributes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Default, Clone, Serialize, Deserialize)]
struct StoredItem {
    value: String,
    #[serde(default)]
    attributes: Attributes,
}

/// service → target → item.
type Items = BTreeMap<String, BTreeMap<String, StoredItem>>;

#[derive(Default, Serialize, Deserialize)]
struct StoreFile {
    version: u32,
    #[serde(default)]
    items: Items,
}

#[derive(Default)]
struct Cache {
    stamp: Option<FileStamp>,
    items: Items,
}

/// The JSON file keychain.
pub struct FileStore {
    path: PathBuf,
    cache: Mutex<Cache>,
    /// In a broker: a file watch on the store, so an unchanged file is not even `stat`ed.
    watch: std::sync::OnceLock<Option<crate::fsutil::NameWatch>>,
    /// Serialises this process's writers, so they queue here (woken at once) and only other
    /// processes contend for the file lock.
    writer: Mutex<()>,
}

impl FileStore {
    /// A store at `path`; the file is created on the first write.
    pub fn new(path: &Path) -> FileStore {
        FileStore {
            path: path.to_path_buf(),
            cache: Mutex::new(Cache::default()),
            watch: std::sync::OnceLock::new(),
            writer: Mutex::new(()),
        }
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn unavailable(&self, what: impl std::fmt::Display) -> BackendError {
        BackendError::Unavailable(format!("file store {}: {what}", self.path.display()))
    }

    /// Checks that the store's directory holds nothing others can reach: ours, 0700-like, in
    /// directories only we (or root) can change. Never chmods anything.
    pub(crate) fn check_dir(&self) -> Result<(), BackendError> {
        match self.path.parent() {
            Some(dir) => fsutil::ensure_secret_dir(dir).map_err(|e| self.unavailable(e)),
            None => Ok(()),
        }
    }

    /// Checks the store as the daemon does before serving it: its directory (created 0700 when
    /// missing) and, when it exists, the file (a regular file of ours that only we can read).
    pub(crate) fn check(&self) -> Result<(), BackendError> {
        self.check_dir()?;
        let mut cache = self.lock_cache();
        cache.stamp = None;
        self.refresh(&mut cache)
    }

    /// Re-reads the file when it changed since the cached copy (one `lstat` when it did not;
    /// nothing at all when a file watch says it did not).
    fn refresh(&self, cache: &mut Cache) -> Result<(), BackendError> {
        let out = self.reload(cache);
        if out.is_err() {
            // A failure is not cached: the file is looked at again next time, watch or not.
            cache.stamp = None;
        }
        out
    }

    /// [`FileStore::refresh`] before its failure rule.
    fn reload(&self, cache: &mut Cache) -> Result<(), BackendError> {
        if cache.stamp.is_some()
            && let Some(Some(w)) = self.watch.get()
            && !w.changed()
        {
            return Ok(());
        }
        let stamp = match FileStamp::of_path(&self.path) {
            Ok(Some(s)) => s,
            Ok(None) => {
                cache.stamp = None;
                cache.items.clear();
                return Ok(());
            }
            Err(e) => return Err(self.unavailable(e)),
        };
        if cache.stamp == Some(stamp) {
            return Ok(());
        }
        self.check_dir()?;
        // Opened without following links or blocking; only a regular 0600 file of ours.
        let Some((bytes, meta)) =
            fsutil::read_with_meta(&self.path).map_err(|e| self.unavailable(e))?
        else {
            cache.stamp = None;
            cache.items.clear();
            return Ok(());
        };
        let stamp = FileStamp::of(&meta);
        let file: StoreFile = serde_json::from_slice(&bytes).map_err(|e| {
            self.unavailable(format!(
                "is not valid ({}, line {}); it was left untouched: repair or move it away",
                match e.classify() {
                    serde_json::error::Category::Data => "unexpected structure",
                    _ => "not valid JSON",
                },
                e.line()
            ))
        })?;
        cache.items = file.items;
        cache.stamp = Some(stamp);
        Ok(())
    }

    /// Runs `f` on the current items under the file lock and commits the result atomically.
    /// The in-memory cache is not held during the write (and its fsync), so reads go on.
    fn mutate<T>(&self, f: impl FnOnce(&mut Items) -> T) -> Result<T, BackendError> {
        self.check_dir()?;
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _lock = FileLock::acquire(&self.path).map_err(|e| self.unavailable(e))?;
        let mut items = {
            let mut cache = self.lock_cache();
            self.refresh(&mut cache)?;
            cache.items.clone()
        };
        let out = f(&mut items);
        items.retain(|_, targets| !targets.is_empty());
        let file = StoreFile { version: 1, items };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| self.unavailable(e))?;
        fsutil::write_atomic(&self.path, &bytes).map_err(|e| self.unavailable(e))?;
        let mut cache = self.lock_cache();
        cache.items = file.items;
        cache.stamp = FileStamp::of_path(&self.path).ok().flatten();
        Ok(out)
    }

    fn read<T>(&self, f: impl FnOnce(&Items) -> T) -> Result<T, BackendError> {
        let mut cache = self.lock_cache();
        self.refresh(&mut cache)?;
        Ok(f(&cache.items))
    }
}

impl Backend for FileStore {
    fn kind(&self) -> BackendKind {
        BackendKind::File
    }

    fn watch_for_changes(&self) {
        self.watch
            .get_or_init(|| match (self.path.parent(), self.path.file_name()) {
                (Some(dir), Some(name)) => crate::fsutil::NameWatch::new(dir, &[name], false),
                _ => None,
            });
    }

    fn describe(&self) -> String {
        format!("file store {}", self.path.display())
    }

    /// Reads come from the cached parse (one `stat` to notice external edits).
    fn fast_reads(&self) -> bool {
        true
    }

    fn get(&self, service: &str, target: &str) -> Result<Option<Item>, BackendError> {
        self.read(|items| {
            items
                .get(service)
                .and_then(|t| t.get(target))
                .map(|i| Item {
                    value: i.value.clone(),
                    attributes: i.attributes.clone(),
                })
        })
    }

    fn set(&self, service: &str, target: &str, item: &Item) -> Result<(), BackendError> {
        self.apply(&[Change::Set {
            service: service.into(),
            target: target.into(),
            item: item.clone(),
        }])
    }

    fn delete(&self, service: &str, target: &str) -> Result<bool, BackendError> {
        self.mutate(|items| {
            items
                .get_mut(service)
                .and_then(|t| t.remove(target))
                .is_some()
        })
    }

    fn list(
        &self,
        service: &str,
        prefix: &str,
        filter: &Attributes,
    ) -> Result<Vec<Entry>, BackendError> {
        self.read(|items| {
            items
                .get(service)
                .map(|targets| {
                    targets
                        .range(prefix.to_string()..)
                        .take_while(|(t, _)| t.starts_with(prefix))
                        .filter(|(_, i)| matches_filter(&i.attributes, filter))
                        .map(|(t, i)| Entry {
                            target: t.clone(),
                            attributes: i.attributes.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    fn services(&self) -> Result<Vec<String>, BackendError> {
        self.read(|items| {
            items
                .iter()
                .filter(|(_, t)| !t.is_empty())
                .map(|(s, _)| s.clone())
                .collect()
        })
    }

    /// One locked read-modify-write and one atomic replace for the whole batch.
    fn apply(&self, changes: &[Change]) -> Result<(), BackendError> {
        self.mutate(|items| {
            for change in changes {
                match change {
                    Change::Set {
                        service,
                        target,
                        item,
                    } => {
                        items.entry(service.clone()).or_default().insert(
                            target.clone(),
                            StoredItem {
                                value: item.value.clone(),
                                attributes: item.attributes.clone(),
                            },
                        );
                    }
                    Change::Delete { service, target } => {
                        if let Some(t) = items.get_mut(service) {
                            t.remove(target);
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn item(v: &str, attrs: &[(&str, &str)]) -> Item {
        Item {
            value: v.into(),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn round_trip_and_list() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join(".keychain-auth/keyring.json");
        let s = FileStore::new(&path);
        assert_eq!(s.get("aws", "k").unwrap(), None);
        s.set("aws", "prod-a", &item("1", &[("env", "prod")]))
            .unwrap();
        s.set("aws", "prod-b", &item("2", &[("env", "dev")]))
            .unwrap();
        s.set("aws", "qa", &item("3", &[])).unwrap();
        s.set("gcp", "prod-a", &item("4", &[])).unwrap();
        assert_eq!(s.get("aws", "prod-a").unwrap().unwrap().value, "1");
        let prod: Vec<_> = s
            .list("aws", "prod-", &Attributes::new())
            .unwrap()
            .into_iter()
            .map(|e| e.target)
            .collect();
        assert_eq!(prod, ["prod-a", "prod-b"]);
        let filter = item("", &[("env", "prod")]).attributes;
        assert_eq!(s.list("aws", "", &filter).unwrap().len(), 1);
        assert!(s.delete("aws", "qa").unwrap());
        assert!(!s.delete("aws", "qa").unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        // A second instance (another process) sees the same data.
        let other = FileStore::new(&path);
        assert_eq!(other.get("gcp", "prod-a").unwrap().unwrap().value, "4");
        // An external change is picked up.
        other.set("aws", "prod-a", &item("changed", &[])).unwrap();
        assert_eq!(s.get("aws", "prod-a").unwrap().unwrap().value, "changed");
    }

    #[test]
    fn corrupt_file_is_unavailable_and_left_alone() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("store/keyring.json");
        crate::fsutil::ensure_secret_dir(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"{not json").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let s = FileStore::new(&path);
        let err = s.get("a", "b").unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        assert!(s.set("a", "b", &item("x", &[])).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"{not json");
    }

    #[test]
    fn batch_is_one_commit() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("store/keyring.json");
        let s = FileStore::new(&path);
        s.apply(&[
            Change::Set {
                service: "a".into(),
                target: "1".into(),
                item: item("x", &[]),
            },
            Change::Set {
                service: "a".into(),
                target: "2".into(),
                item: item("y", &[]),
            },
            Change::Delete {
                service: "a".into(),
                target: "1".into(),
            },
        ])
        .unwrap();
        assert_eq!(s.get("a", "1").unwrap(), None);
        assert_eq!(s.get("a", "2").unwrap().unwrap().value, "y");
    }
}
