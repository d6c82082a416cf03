//! Policy integrity: config.json carries `"seal"`, an HMAC-SHA-256 over its content keyed with
//! the audit key (kept in the store), and every keychain-auth writer leaves a copy of what it
//! sealed in `config.sealed.json` beside it. An edit made by anything else (an editor, a script)
//! no longer matches the seal; the entries it touched are then not served, and `doctor`, the
//! dashboard and `keychain-auth policy accept` show the difference against the sealed copy.
//!
//! **Sealed bytes.** `HMAC-SHA-256(key, "keychain-auth policy seal v1\n" || C)` where `C` is the
//! compact JSON of the whole file without `"seal"`, object keys sorted (serde_json's canonical
//! map order), so re-indenting the file does not break the seal but changing any value does.
//!
//! **Granularity.** Per entry, by hash: an entry identical to the sealed copy's entry with the
//! same hash is served; an entry added or changed is held. Top-level settings (`backend`,
//! `max_request_bytes`, `audit_*`) changed outside keychain-auth are reported, and while any
//! difference is unaccepted, keychain-auth's own writers refuse to change the file (so an edit
//! is never sealed without being reviewed). Without a valid sealed copy, the whole file is held.
//!
//! A file with neither a seal nor a sealed copy was written before sealing existed (or by hand
//! on a new machine): it is served as it is until the first keychain-auth write seals it, unless
//! the store records that this user's policy was sealed before (the reserved item
//! `keychain-auth.internal/policy-sealed`), in which case it is held like any edit.

use crate::audit::{KeySource, chain};
use crate::backend::{Backend, Item};
use crate::identity::BinaryHash;
use crate::keys::Key;
use crate::policy::{BinaryPolicy, PolicyFile};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The store item recording that a policy was sealed at least once.
pub const MARKER_TARGET: &str = "policy-sealed";

/// The policy could not be encoded for sealing.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SealError(#[from] serde_json::Error);

/// The MAC of `file` (its `seal` field ignored), hex.
pub fn compute(key: &Key, file: &PolicyFile) -> Result<String, SealError> {
    let mut unsealed = file.clone();
    unsealed.seal = None;
    let value = serde_json::to_value(&unsealed)?;
    let canonical = serde_json::to_vec(&value)?;
    Ok(hex::encode(
        key.mac(&[b"keychain-auth policy seal v1\n", &canonical]),
    ))
}

/// True when `file` carries a seal that matches its content.
pub fn is_sealed(key: &Key, file: &PolicyFile) -> bool {
    match (&file.seal, compute(key, file)) {
        (Some(s), Ok(want)) => *s == want,
        _ => false,
    }
}

/// For `now`, an edit of `config` made outside keychain-auth: puts the sealed copy's top-level
/// settings (everything but the entries and the seal) back into it, since a setting changed by
/// hand does not take effect until the edit is accepted. False when there is no valid sealed
/// copy to take them from (then `now` is left as it is).
pub fn keep_sealed_settings(config: &Path, now: &mut PolicyFile, key: &Key) -> bool {
    let Some(mut sealed) = read_copy(config, key) else {
        return false;
    };
    sealed.registered_binaries = std::mem::take(&mut now.registered_binaries);
    sealed.seal = now.seal.take();
    *now = sealed;
    true
}

/// `config.sealed.json` beside `config`.
pub fn copy_path(config: &Path) -> PathBuf {
    config.with_file_name("config.sealed.json")
}

/// The sealed copy, when it exists and its own seal holds.
pub fn read_copy(config: &Path, key: &Key) -> Option<PolicyFile> {
    let bytes = crate::fsutil::read_optional(&copy_path(config)).ok()??;
    let file: PolicyFile = serde_json::from_slice(&bytes).ok()?;
    is_sealed(key, &file).then_some(file)
}

/// Whether the store says a policy was sealed before; unknown (no store) counts as yes.
pub fn marker(store: Option<&dyn Backend>) -> bool {
    match store {
        Some(s) => !matches!(s.get(chain::KEY_SERVICE, MARKER_TARGET), Ok(None)),
        None => true,
    }
}

/// Records in the store that a policy has been sealed.
pub fn set_marker(store: &dyn Backend) {
    if let Ok(None) = store.get(chain::KEY_SERVICE, MARKER_TARGET) {
        let item = Item {
            value: "1".into(),
            attributes: Default::default(),
        };
        let _ = store.set(chain::KEY_SERVICE, MARKER_TARGET, &item);
    }
}

/// What changed against the sealed copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Diff {
    /// No valid sealed copy: nothing can be compared, the whole file is held.
    pub whole: bool,
    /// Entries present now but not in the sealed copy.
    pub added: Vec<BinaryPolicy>,
    /// Entries in the sealed copy that are gone.
    pub removed: Vec<BinaryPolicy>,
    /// Entries whose content differs: (sealed, now).
    pub changed: Vec<(BinaryPolicy, BinaryPolicy)>,
    /// Top-level settings that differ: (name, sealed value, value now).
    pub settings: Vec<(String, String, String)>,
}

impl Diff {
    /// The hashes whose entries are not served.
    pub fn held(&self, now: &PolicyFile) -> Vec<BinaryHash> {
        if self.whole {
            return now
                .registered_binaries
                .iter()
                .map(|b| b.hash.clone())
                .collect();
        }
        self.added
            .iter()
            .map(|b| b.hash.clone())
            .chain(self.changed.iter().map(|(_, b)| b.hash.clone()))
            .collect()
    }

    /// True when the edit grants or changes something (entries added or changed, settings
    /// changed, or nothing to compare with). An edit that only removes entries takes nothing
    /// from the sealed policy but access, and is sealed by the next keychain-auth write.
    pub fn needs_review(&self) -> bool {
        self.whole
            || !self.added.is_empty()
            || !self.changed.is_empty()
            || !self.settings.is_empty()
    }

    /// A readable diff, one line per difference (`-` sealed, `+` now).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if self.whole {
            out.push_str(
                "  (no valid sealed copy to compare with: every entry is held until accepted)\n",
            );
        }
        let show = |b: &BinaryPolicy| {
            format!(
                "{} {}  read: {}  write: {}  search: {}",
                b.hash.short(),
                crate::audit::show::sanitize(&b.path.display().to_string()),
                join(&b.allowed_read_services),
                join(&b.allowed_write_services),
                if b.can_search { "yes" } else { "no" }
            )
        };
        for b in &self.added {
            out.push_str(&format!("  + added    {}\n", show(b)));
        }
        for b in &self.removed {
            out.push_str(&format!("  - removed  {}\n", show(b)));
        }
        for (old, new) in &self.changed {
            out.push_str(&format!("  - was      {}\n", show(old)));
            out.push_str(&format!("  + now      {}\n", show(new)));
        }
        for (k, old, new) in &self.settings {
            out.push_str(&format!(
                "  ~ {}: {} -> {}\n",
                crate::audit::show::sanitize(k),
                crate::audit::show::sanitize(old),
                crate::audit::show::sanitize(new)
            ));
        }
        out
    }

    /// One line: how many entries were added, removed, changed.
    pub fn summary(&self) -> String {
        if self.whole {
            return "config.json does not match its seal and there is no valid sealed copy".into();
        }
        format!(
            "config.json was edited outside keychain-auth: {} entr{} added, {} removed, {} changed, {} setting(s) changed",
            self.added.len(),
            if self.added.len() == 1 { "y" } else { "ies" },
            self.removed.len(),
            self.changed.len(),
            self.settings.len()
        )
    }
}

fn join(s: &std::collections::BTreeSet<String>) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.iter()
            .map(|x| crate::audit::show::sanitize(x))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The state of config.json's seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrity {
    /// The seal matches: everything is served.
    Sealed,
    /// Never sealed (written before sealing existed): served, sealed by the next write.
    Unsealed,
    /// Edited outside keychain-auth.
    Edited(Diff),
}

/// Compares `now` (just read from `config`) with its seal and the sealed copy.
pub fn check(config: &Path, now: &PolicyFile, key: &Key, store: Option<&dyn Backend>) -> Integrity {
    if is_sealed(key, now) {
        return Integrity::Sealed;
    }
    let copy = read_copy(config, key);
    let empty = {
        let mut bare = now.clone();
        bare.seal = None;
        bare == PolicyFile::default()
    };
    if !copy_path(config).exists() && (empty || (now.seal.is_none() && !marker(store))) {
        // Nothing granted yet, or a file from before sealing.
        return Integrity::Unsealed;
    }
    let Some(sealed) = copy else {
        return Integrity::Edited(Diff {
            whole: true,
            ..Diff::default()
        });
    };
    Integrity::Edited(diff(&sealed, now))
}

/// The difference from `sealed` to `now`.
pub fn diff(sealed: &PolicyFile, now: &PolicyFile) -> Diff {
    let old: BTreeMap<&BinaryHash, &BinaryPolicy> = sealed
        .registered_binaries
        .iter()
        .map(|b| (&b.hash, b))
        .collect();
    let new: BTreeMap<&BinaryHash, &BinaryPolicy> = now
        .registered_binaries
        .iter()
        .map(|b| (&b.hash, b))
        .collect();
    let mut d = Diff::default();
    for (h, b) in &new {
        match old.get(h) {
            None => d.added.push((*b).clone()),
            Some(o) if o != b => d.changed.push(((*o).clone(), (*b).clone())),
            Some(_) => {}
        }
    }
    for (h, b) in &old {
        if !new.contains_key(h) {
            d.removed.push((*b).clone());
        }
    }
    let top = |f: &PolicyFile| -> BTreeMap<String, String> {
        let mut f = f.clone();
        f.registered_binaries.clear();
        f.seal = None;
        match serde_json::to_value(&f) {
            Ok(serde_json::Value::Object(m)) => m
                .into_iter()
                .filter(|(k, _)| k != "registered_binaries")
                .map(|(k, v)| (k, v.to_string()))
                .collect(),
            _ => BTreeMap::new(),
        }
    };
    let (a, b) = (top(sealed), top(now));
    for k in a
        .keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (x, y) = (a.get(k), b.get(k));
        if x != y {
            d.settings.push((
                k.clone(),
                x.cloned().unwrap_or_else(|| "(unset)".into()),
                y.cloned().unwrap_or_else(|| "(unset)".into()),
            ));
        }
    }
    d
}

/// Seals `file` with `key` and returns the bytes to write to config.json (also the sealed
/// copy's bytes).
pub fn seal_bytes(key: &Key, file: &mut PolicyFile) -> Result<Vec<u8>, SealError> {
    file.seal = Some(compute(key, file)?);
    let mut bytes = serde_json::to_vec_pretty(file)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The key and (when known) the store for sealing the policy of `keys`.
pub fn key_and_store(
    keys: &KeySource,
    audit: &Path,
) -> Result<(Key, Option<std::sync::Arc<dyn Backend>>), crate::keys::KeyError> {
    let key = keys.get(audit)?;
    Ok((key, keys.store()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::BinaryHash;

    fn entry(c: char, read: &str) -> BinaryPolicy {
        let mut b = BinaryPolicy::new(
            format!("/bin/{c}").into(),
            BinaryHash::parse(&c.to_string().repeat(64)).unwrap(),
        );
        b.allowed_read_services.insert(read.into());
        b
    }

    #[test]
    fn seal_detects_edits_and_diffs_per_entry() {
        let t = tempfile::tempdir().unwrap();
        let config = t.path().join("config.json");
        let key = Key::from_bytes(&[3u8; 32]);
        let mut f = PolicyFile::default();
        f.registered_binaries.push(entry('a', "aws"));
        f.registered_binaries.push(entry('b', "gcp"));
        let bytes = seal_bytes(&key, &mut f).unwrap();
        crate::fsutil::write_atomic(&config, &bytes).unwrap();
        crate::fsutil::write_atomic(&copy_path(&config), &bytes).unwrap();
        let parsed: PolicyFile = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(check(&config, &parsed, &key, None), Integrity::Sealed);
        // re-indented: still sealed
        let compact: PolicyFile =
            serde_json::from_slice(&serde_json::to_vec(&parsed).unwrap()).unwrap();
        assert!(is_sealed(&key, &compact));
        // b widened, c added, a untouched
        let mut edited = parsed.clone();
        edited.registered_binaries[1]
            .allowed_read_services
            .insert("prod".into());
        edited.registered_binaries.push(entry('c', "aws"));
        edited.backend = Some("file".into());
        let Integrity::Edited(d) = check(&config, &edited, &key, None) else {
            panic!("edit not detected");
        };
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.added.len(), 1);
        assert_eq!(d.settings[0].0, "backend");
        let held = d.held(&edited);
        assert_eq!(held.len(), 2);
        assert!(!held.contains(&edited.registered_binaries[0].hash));
        assert!(d.render().contains("+ now"), "{}", d.render());
        // another key does not verify
        assert!(!is_sealed(&Key::from_bytes(&[4u8; 32]), &parsed));
        // no copy, unsealed, no store marker: a file from before sealing
        std::fs::remove_file(copy_path(&config)).unwrap();
        let mut legacy = parsed.clone();
        legacy.seal = None;
        let store = crate::backend::memory::MemoryStore::new();
        assert_eq!(
            check(&config, &legacy, &key, Some(&store)),
            Integrity::Unsealed
        );
        // once the store says a policy was sealed, the same file is held whole
        set_marker(&store);
        assert!(matches!(
            check(&config, &legacy, &key, Some(&store)),
            Integrity::Edited(Diff { whole: true, .. })
        ));
    }
}
