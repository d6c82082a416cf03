//! The daemon's view of config.json: a parsed [`Snapshot`] with a hash index, re-read only when
//! the file changed (a file watch in a broker), its seal checked so an outside edit is held.

use super::{BinaryPolicy, PolicyError, PolicyFile, PolicyProblem, load};
use crate::fsutil::FileStamp;
use crate::identity::{BinaryHash, Program};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A parsed policy with a hash index, shared by the daemon's connections.
#[derive(Debug)]
pub struct Snapshot {
    /// The parsed file.
    pub file: PolicyFile,
    index: HashMap<BinaryHash, usize>,
    /// Entries edited outside keychain-auth, not served until accepted.
    held: std::collections::HashSet<BinaryHash>,
    /// What was edited outside keychain-auth, when anything was.
    pub edited: Option<String>,
}

impl Snapshot {
    fn new(file: PolicyFile, held: Vec<BinaryHash>, edited: Option<String>) -> Snapshot {
        let index = file
            .registered_binaries
            .iter()
            .enumerate()
            .map(|(i, b)| (b.hash.clone(), i))
            .collect();
        Snapshot {
            file,
            index,
            held: held.into_iter().collect(),
            edited,
        }
    }

    /// The entry approved for `hash`; `None` also when that entry is held (see [`Snapshot::is_held`]).
    pub fn lookup(&self, hash: &BinaryHash) -> Option<&BinaryPolicy> {
        if self.held.contains(hash) {
            return None;
        }
        self.index
            .get(hash)
            .map(|&i| &self.file.registered_binaries[i])
    }

    /// True when the entry for `hash` was added or changed outside keychain-auth and is not
    /// served until `keychain-auth policy accept`.
    pub fn is_held(&self, hash: &BinaryHash) -> bool {
        self.held.contains(hash)
    }

    /// The entry that serves a caller running the executable `exe` with `program` (SPEC §10):
    /// a binary by its own hash; a script by the pair (script hash, interpreter hash); and an
    /// interpreter running anything else only through a bare entry with `allow_any_script`.
    pub fn lookup_caller(&self, exe: &BinaryHash, program: &Program) -> Option<&BinaryPolicy> {
        let any_script = || self.lookup(exe).filter(|b| b.allow_any_script);
        match program {
            Program::Binary => self.lookup(exe).filter(|b| b.interpreter.is_none()),
            Program::Script { hash, .. } => self
                .lookup(hash)
                .filter(|b| b.interpreter.as_ref().is_some_and(|i| &i.hash == exe))
                .or_else(any_script),
            Program::NoFile(_) => any_script(),
        }
    }
}

/// The stamp of the file last parsed (`Some(None)`: it did not exist) and what parsing gave.
type Cached = (
    Option<Option<FileStamp>>,
    Result<Arc<Snapshot>, PolicyError>,
);

/// The daemon's view of config.json: re-read only when the file's stamp changes, so a policy
/// edit applies to the very next request (also on open connections) without a parse per request.
#[derive(Debug)]
pub struct PolicyCache {
    path: PathBuf,
    /// In a broker: a file watch on config.json, so an unchanged file is not even `stat`ed.
    watch: Option<crate::fsutil::NameWatch>,
    /// Where the seal key comes from and the audit log it belongs to; `None`: seal not checked.
    seal: Option<(crate::audit::KeySource, PathBuf)>,
    state: Mutex<Cached>,
}

impl PolicyCache {
    /// A cache for the config at `path`; nothing is read until [`PolicyCache::current`].
    /// The seal is not checked: for tools and tests; the daemon uses [`PolicyCache::sealed`].
    pub fn new(path: &Path) -> PolicyCache {
        PolicyCache {
            path: path.to_path_buf(),
            watch: None,
            seal: None,
            state: Mutex::new((
                None,
                Err(PolicyError {
                    path: path.to_path_buf(),
                    why: PolicyProblem::NotLoaded,
                }),
            )),
        }
    }

    /// A cache of `paths.config` that checks its seal with the key from `keys`: entries edited
    /// outside keychain-auth are held (see [`crate::policy::seal`]).
    pub fn sealed(paths: &crate::paths::Paths, keys: crate::audit::KeySource) -> PolicyCache {
        let mut c = PolicyCache::new(&paths.config);
        c.seal = Some((keys, paths.audit.clone()));
        c
    }

    /// Notices edits of config.json with a file watch from now on (a broker, which reads it
    /// for every request): the file is looked at again only after an event. Without a watch
    /// (it cannot be set up) every request `stat`s it, as a one-shot reader does.
    #[must_use]
    pub fn watched(mut self) -> PolicyCache {
        self.watch = match (self.path.parent(), self.path.file_name()) {
            (Some(dir), Some(name)) => crate::fsutil::NameWatch::new(dir, &[name], false),
            _ => None,
        };
        self
    }

    fn snapshot(&self, file: PolicyFile) -> Result<Arc<Snapshot>, PolicyError> {
        let Some((keys, audit)) = &self.seal else {
            return Ok(Arc::new(Snapshot::new(file, Vec::new(), None)));
        };
        let key = keys.get(audit).map_err(|e| PolicyError {
            path: self.path.clone(),
            why: PolicyProblem::SealUnchecked(e),
        })?;
        let store = keys.store();
        Ok(Arc::new(
            match crate::policy::seal::check(&self.path, &file, &key, store.as_deref()) {
                crate::policy::seal::Integrity::Edited(d) => {
                    let held = d.held(&file);
                    let mut file = file;
                    crate::policy::seal::keep_sealed_settings(&self.path, &mut file, &key);
                    Snapshot::new(file, held, Some(d.summary()))
                }
                _ => Snapshot::new(file, Vec::new(), None),
            },
        ))
    }

    /// Forgets what was read: the next [`PolicyCache::current`] reads config.json again (the
    /// broker calls it after each change it makes itself).
    pub fn invalidate(&self) {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0 = None;
    }

    /// The policy in force now, or why there is none (in which case everything is denied).
    pub fn current(&self) -> Result<Arc<Snapshot>, PolicyError> {
        if let Some(w) = &self.watch
            && !w.changed()
        {
            let state = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if state.0.is_some() {
                return state.1.clone();
            }
        }
        let stamp = match FileStamp::of_path(&self.path) {
            Ok(s) => s,
            Err(e) => {
                return Err(PolicyError {
                    path: self.path.clone(),
                    why: PolicyProblem::Unreadable(e.to_string()),
                });
            }
        };
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.0 != Some(stamp) {
            state.1 = load(&self.path).and_then(|f| self.snapshot(f));
            // A failure is not cached: the next request tries again (a keyring being unlocked
            // gives the seal key back without config.json changing).
            state.0 = state.1.is_ok().then_some(stamp);
        }
        state.1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::BinaryPolicy;
    use crate::policy::sealed::{UpdateError, accept, update_with};

    fn h(c: char) -> BinaryHash {
        BinaryHash::parse(&c.to_string().repeat(64)).unwrap()
    }

    fn test_paths(dir: &Path) -> crate::paths::Paths {
        crate::paths::Paths {
            socket: dir.join("s.sock"),
            config: dir.join("cfg/config.json"),
            pending: dir.join("cfg/pending.json"),
            audit: dir.join("data/audit.log"),
            file_store: dir.join("store.json"),
            vault: dir.join("data/vault"),
        }
    }

    fn keys() -> crate::audit::KeySource {
        crate::audit::KeySource::Fixed(crate::keys::Key::from_bytes(&[6u8; 32]))
    }

    #[test]
    fn update_and_cache_follow_changes() {
        let t = tempfile::tempdir().unwrap();
        let paths = test_paths(t.path());
        let path = paths.config.clone();
        let cache = PolicyCache::sealed(&paths, keys());
        assert!(cache.current().unwrap().lookup(&h('a')).is_none());
        update_with(&paths, &keys(), |p| {
            p.registered_binaries
                .push(BinaryPolicy::new("/bin/x".into(), h('a')));
            p.registered_binaries
                .push(BinaryPolicy::new("/bin/y".into(), h('b')));
            Ok::<_, UpdateError>(())
        })
        .unwrap();
        assert!(cache.current().unwrap().lookup(&h('a')).is_some());
        // edited outside keychain-auth: the touched entry is held, the other still served
        let mut edited = load(&path).unwrap();
        edited.registered_binaries[0]
            .allowed_read_services
            .insert("prod".into());
        std::fs::write(&path, serde_json::to_vec(&edited).unwrap()).unwrap();
        let snap = cache.current().unwrap();
        assert!(snap.lookup(&h('a')).is_none() && snap.is_held(&h('a')));
        assert!(snap.lookup(&h('b')).is_some());
        assert!(snap.edited.as_deref().unwrap().contains("1 changed"));
        // keychain-auth's writers refuse to seal it unreviewed; accept adopts it
        let err = update_with(&paths, &keys(), |_| Ok::<_, UpdateError>(())).unwrap_err();
        assert!(err.to_string().contains("policy accept"), "{err}");
        assert!(accept(&paths, &keys(), |_| false).is_err());
        assert!(cache.current().unwrap().is_held(&h('a')));
        assert!(accept(&paths, &keys(), |d| d.changed.len() == 1).unwrap());
        let snap = cache.current().unwrap();
        assert!(
            snap.lookup(&h('a'))
                .unwrap()
                .allowed_read_services
                .contains("prod")
        );
        // corrupt: denied with a reason, not overwritten by update
        std::fs::write(&path, b"{oops").unwrap();
        let err = cache.current().unwrap_err();
        assert!(err.why.to_string().contains("not valid"), "{err}");
        assert!(update_with(&paths, &keys(), |_| Ok::<_, UpdateError>(())).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"{oops");
        // moved away: an empty policy (removing entries grants nothing), sealed by the next write
        std::fs::remove_file(&path).unwrap();
        update_with(&paths, &keys(), |_| Ok::<_, UpdateError>(())).unwrap();
        assert!(cache.current().unwrap().lookup(&h('a')).is_none());
    }
}
