//! Moving every item between two stores (`keychain-auth migrate`).
//!
//! Item by item: copy to the destination, read the copy back and compare, then delete the
//! source (only if it still holds what was copied). An item already present in the destination
//! with the same value and attributes — a copy made by an interrupted run — is not copied again,
//! only removed from the source. So a run killed at any point and started again loses nothing
//! and duplicates nothing. A destination item with a different value is a conflict: both are
//! left untouched and reported.
//!
//! keychain-auth's own reserved items (the audit key, see [`crate::audit::chain`]) are not moved
//! item by item: `copy_reserved` copies them first, and `drop_reserved` removes them from
//! the source only once config.json names the destination, so the key is in the store that
//! config.json selects at every moment of an interrupted run.

use super::{Backend, BackendError};
use crate::protocol::Attributes;

/// What a migration did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    /// Items copied, verified and removed from the source.
    pub moved: usize,
    /// Items whose identical copy was already in the destination (removed from the source).
    pub already_there: usize,
    /// `service/target` names left in both stores because their contents differ.
    pub conflicts: Vec<String>,
}

/// Why a migration stopped, with what it had done until then.
#[derive(Debug)]
pub(crate) struct Stopped {
    /// Work done before the failure (all of it is safe to keep).
    pub report: Report,
    /// The failure.
    pub error: MigrateError,
}

/// Why moving items (or the reserved items) stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MigrateError {
    /// A step failed (what was being done, then why).
    #[error("{what}: {source}")]
    Step {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: BackendError,
    },
    /// A store failed.
    #[error(transparent)]
    Store(#[from] BackendError),
    /// The copy of an item read back differently (`service/target`).
    #[error("the copy of {0} read back differently; the source was kept")]
    Mismatch(String),
}

fn step(what: String) -> impl FnOnce(BackendError) -> MigrateError {
    move |source| MigrateError::Step { what, source }
}

/// Moves every item of `from` into `to`. `progress` is called after each item with
/// (service, target).
pub(crate) fn migrate(
    from: &dyn Backend,
    to: &dyn Backend,
    progress: &mut dyn FnMut(&str, &str),
) -> Result<Report, Stopped> {
    let mut report = Report::default();
    let fail = |report: &Report, what: String, source: BackendError| Stopped {
        report: report.clone(),
        error: MigrateError::Step { what, source },
    };
    let services = from
        .services()
        .map_err(|e| fail(&report, format!("listing {}", from.describe()), e))?;
    for service in services
        .iter()
        .filter(|s| !crate::keys::is_reserved_service(s))
    {
        let entries = from
            .list(service, "", &Attributes::new())
            .map_err(|e| fail(&report, format!("listing {service}"), e))?;
        for entry in entries {
            let target = entry.target.as_str();
            let name = format!("{service}/{target}");
            let Some(item) = from
                .get(service, target)
                .map_err(|e| fail(&report, format!("reading {name}"), e))?
            else {
                continue; // removed meanwhile: nothing to move
            };
            match to
                .get(service, target)
                .map_err(|e| fail(&report, format!("checking {name} in the destination"), e))?
            {
                Some(existing) if existing == item => report.already_there += 1,
                Some(_) => {
                    report.conflicts.push(name);
                    continue;
                }
                None => {
                    to.set(service, target, &item)
                        .map_err(|e| fail(&report, format!("copying {name}"), e))?;
                    let copy = to
                        .get(service, target)
                        .map_err(|e| fail(&report, format!("verifying {name}"), e))?;
                    if copy.as_ref() != Some(&item) {
                        return Err(Stopped {
                            report,
                            error: MigrateError::Mismatch(name),
                        });
                    }
                    report.moved += 1;
                }
            }
            // Delete the source only if it still holds what was copied.
            let now = from
                .get(service, target)
                .map_err(|e| fail(&report, format!("re-reading {name}"), e))?;
            if now.as_ref() == Some(&item) {
                from.delete(service, target)
                    .map_err(|e| fail(&report, format!("removing {name} from the source"), e))?;
            } else if now.is_some() {
                report
                    .conflicts
                    .push(format!("{name} (changed during the migration)"));
            }
            progress(service, target);
        }
    }
    Ok(report)
}

/// Copies keychain-auth's reserved items from `from` to `to` (no deletion); returns the names
/// that exist in both with different contents (left as they are).
pub(crate) fn copy_reserved(
    from: &dyn Backend,
    to: &dyn Backend,
) -> Result<Vec<String>, MigrateError> {
    let service = crate::keys::KEY_SERVICE;
    let entries = from
        .list(service, "", &Attributes::new())
        .map_err(step(format!(
            "listing {service} in the {}",
            from.describe()
        )))?;
    let mut conflicts = Vec::new();
    for entry in entries {
        let name = format!("{service}/{}", entry.target);
        let Some(item) = from
            .get(service, &entry.target)
            .map_err(step(format!("reading {name}")))?
        else {
            continue;
        };
        match to
            .get(service, &entry.target)
            .map_err(step(format!("checking {name} in the destination")))?
        {
            Some(existing) if existing == item => {}
            Some(_) => conflicts.push(name),
            None => to
                .set(service, &entry.target, &item)
                .map_err(step(format!("copying {name}")))?,
        }
    }
    Ok(conflicts)
}

/// Removes keychain-auth's reserved items from `from` once they are in `to` (identical).
pub(crate) fn drop_reserved(from: &dyn Backend, to: &dyn Backend) -> Result<(), MigrateError> {
    let service = crate::keys::KEY_SERVICE;
    let entries = from
        .list(service, "", &Attributes::new())
        .map_err(step(format!("listing {service}")))?;
    for entry in entries {
        let here = from.get(service, &entry.target)?;
        let there = to.get(service, &entry.target)?;
        if here.is_some() && here == there {
            from.delete(service, &entry.target).map_err(step(format!(
                "removing {service}/{} from the source",
                entry.target
            )))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Item;
    use crate::backend::memory::MemoryStore;

    fn item(v: &str, env: &str) -> Item {
        Item {
            value: v.into(),
            attributes: [("env".to_string(), env.to_string())].into(),
        }
    }

    fn fill(s: &MemoryStore, n: usize) {
        for i in 0..n {
            s.set(
                &format!("svc{}", i % 3),
                &format!("t{i:03}"),
                &item(&format!("v{i}"), "p"),
            )
            .unwrap();
        }
    }

    #[test]
    fn moves_everything_with_attributes() {
        let (a, b) = (MemoryStore::new(), MemoryStore::new());
        fill(&a, 30);
        let expected = a.snapshot();
        let r = migrate(&a, &b, &mut |_, _| {}).unwrap();
        assert_eq!(r.moved, 30);
        assert!(a.snapshot().is_empty());
        assert_eq!(b.snapshot(), expected);
        // Idempotent: a second run finds nothing to do.
        let r = migrate(&a, &b, &mut |_, _| {}).unwrap();
        assert_eq!(r, Report::default());
        assert_eq!(b.snapshot(), expected);
    }

    #[test]
    fn interrupted_at_every_step_then_rerun_loses_and_duplicates_nothing() {
        // Fail the Nth mutation (in either store) for every N the run performs, then rerun.
        for fail_in_dest in [true, false] {
            for n in 1..=10 {
                let (a, b) = (MemoryStore::new(), MemoryStore::new());
                fill(&a, 10);
                let expected = a.snapshot();
                if fail_in_dest {
                    b.fail_on_mutation(n);
                } else {
                    a.fail_on_mutation(n);
                }
                let first = migrate(&a, &b, &mut |_, _| {});
                assert!(first.is_err(), "mutation {n} should have failed");
                // Nothing lost: every item is in at least one store, with its contents.
                let (sa, sb) = (a.snapshot(), b.snapshot());
                for (k, v) in &expected {
                    assert!(sa.get(k) == Some(v) || sb.get(k) == Some(v), "{k:?} lost");
                }
                let second = migrate(&a, &b, &mut |_, _| {}).unwrap();
                assert!(second.conflicts.is_empty());
                assert!(a.snapshot().is_empty());
                assert_eq!(b.snapshot(), expected);
            }
        }
    }

    #[test]
    fn a_different_destination_item_is_a_conflict_left_alone() {
        let (a, b) = (MemoryStore::new(), MemoryStore::new());
        a.set("s", "x", &item("new", "p")).unwrap();
        a.set("s", "y", &item("y", "p")).unwrap();
        b.set("s", "x", &item("old", "p")).unwrap();
        let r = migrate(&a, &b, &mut |_, _| {}).unwrap();
        assert_eq!(r.conflicts, ["s/x"]);
        assert_eq!(r.moved, 1);
        assert_eq!(a.get("s", "x").unwrap().unwrap().value, "new");
        assert_eq!(b.get("s", "x").unwrap().unwrap().value, "old");
        assert_eq!(b.get("s", "y").unwrap().unwrap().value, "y");
    }

    #[test]
    fn the_audit_key_is_copied_first_and_dropped_last() {
        let from = MemoryStore::new();
        let to = MemoryStore::new();
        let key = Item {
            value: "ab".repeat(32),
            attributes: Attributes::new(),
        };
        from.set("keychain-auth.internal", "audit-key", &key)
            .unwrap();
        from.set("aws", "k", &key).unwrap();
        assert!(copy_reserved(&from, &to).unwrap().is_empty());
        let r = migrate(&from, &to, &mut |_, _| {}).unwrap();
        assert_eq!(r.moved, 1, "only the caller's item is counted");
        // still in the source until dropped
        assert!(
            from.get("keychain-auth.internal", "audit-key")
                .unwrap()
                .is_some()
        );
        drop_reserved(&from, &to).unwrap();
        assert!(
            from.get("keychain-auth.internal", "audit-key")
                .unwrap()
                .is_none()
        );
        assert_eq!(
            to.get("keychain-auth.internal", "audit-key").unwrap(),
            Some(key.clone())
        );
        // a different key in the destination is a conflict, and nothing is dropped
        from.set(
            "keychain-auth.internal",
            "audit-key",
            &Item {
                value: "cd".repeat(32),
                ..key
            },
        )
        .unwrap();
        assert_eq!(copy_reserved(&from, &to).unwrap().len(), 1);
    }
}
