//! Carrying out an authorised request against a [`Backend`], all-or-nothing.
//!
//! Every target is checked before anything changes: an exact read or delete that names a missing
//! target fails as a whole with `not_found`. Mutations go to the store as one batch through
//! [`Backend::apply`], which restores what it already changed when a step fails. The outcome also
//! carries the inverse batch, so the caller can take a change back when it cannot be audited.

use crate::backend::{Backend, BackendError, Change, Item};
use crate::protocol::{Action, MatchMode, Reason, Request, Response, ResultItem, Status};
use std::collections::BTreeMap;

/// What running a request produced.
#[derive(Debug)]
pub struct Outcome {
    /// The answer for the client.
    pub response: Response,
    /// The target names concerned (requested, or matched by a prefix), for the audit log.
    pub targets: Vec<String>,
    /// The batch that restores the store to how it was before this request (empty for reads).
    pub undo: Vec<Change>,
}

/// How many missing names a `not_found` message lists before it abbreviates.
const MAX_NAMED_MISSING: usize = 20;

/// Runs `req`, which the caller has already authorised.
pub fn execute(backend: &dyn Backend, req: &Request) -> Outcome {
    match run(backend, req) {
        Ok(o) => o,
        Err(e) => Outcome {
            response: backend_failure(req, &e),
            targets: req.targets.clone(),
            undo: Vec::new(),
        },
    }
}

/// The response for a store failure.
pub fn backend_failure(req: &Request, e: &BackendError) -> Response {
    if let BackendError::Locked(how) = e {
        return Response::failure(
            req.id.clone(),
            Status::Denied,
            Reason::VaultLocked,
            how.clone(),
        );
    }
    Response::failure(
        req.id.clone(),
        Status::Error,
        Reason::BackendUnavailable,
        format!("the keychain could not be used: {e}"),
    )
}

fn run(backend: &dyn Backend, req: &Request) -> Result<Outcome, BackendError> {
    match (req.action, req.mode) {
        (Action::Read, MatchMode::Exact) => read_exact(backend, req),
        (Action::Read, MatchMode::Prefix) => read_prefix(backend, req),
        (Action::Search, _) => search(backend, req),
        (Action::Write, _) => write(backend, req),
        (Action::Delete, MatchMode::Exact) => delete_exact(backend, req),
        (Action::Delete, MatchMode::Prefix) => delete_prefix(backend, req),
    }
}

/// Every named target, or `not_found` for all of them.
fn read_exact(backend: &dyn Backend, req: &Request) -> Result<Outcome, BackendError> {
    let items = get_all(backend, &req.service, &req.targets)?;
    if let Err(missing) = all_present(&items) {
        return Ok(not_found(req, missing));
    }
    let results = items
        .into_iter()
        .filter_map(|(t, i)| i.map(|i| read_result(t, i)))
        .collect();
    Ok(outcome(
        req.id.clone(),
        results,
        req.targets.clone(),
        Vec::new(),
    ))
}

/// Every target matching a prefix (and the attribute filter).
fn read_prefix(backend: &dyn Backend, req: &Request) -> Result<Outcome, BackendError> {
    let names = matching(backend, req)?;
    let mut results = Vec::with_capacity(names.len());
    for name in &names {
        // An item deleted between listing and reading is simply not returned.
        if let Some(item) = backend.get(&req.service, name)? {
            results.push(read_result(name.clone(), item));
        }
    }
    Ok(outcome(req.id.clone(), results, names, Vec::new()))
}

/// Names and attributes (never values) of the targets matching any prefix.
fn search(backend: &dyn Backend, req: &Request) -> Result<Outcome, BackendError> {
    let mut found: BTreeMap<String, ResultItem> = BTreeMap::new();
    for prefix in &req.targets {
        for e in backend.list(&req.service, prefix, &req.attributes)? {
            found.insert(
                e.target.clone(),
                ResultItem {
                    target: e.target,
                    value: None,
                    attributes: Some(e.attributes),
                },
            );
        }
    }
    let names = found.keys().cloned().collect();
    Ok(outcome(
        req.id.clone(),
        found.into_values().collect(),
        names,
        Vec::new(),
    ))
}

/// Stores every value as one batch; the undo puts back what was there.
fn write(backend: &dyn Backend, req: &Request) -> Result<Outcome, BackendError> {
    let service = req.service.as_str();
    let before = get_all(backend, service, &req.targets)?;
    let changes: Vec<Change> = req
        .targets
        .iter()
        .zip(&req.values)
        .map(|(t, v)| Change::Set {
            service: service.into(),
            target: t.clone(),
            item: Item {
                value: v.clone(),
                attributes: req.attributes.clone(),
            },
        })
        .collect();
    backend.apply(&changes)?;
    Ok(outcome(
        req.id.clone(),
        name_results(&req.targets),
        req.targets.clone(),
        restore(service, before),
    ))
}

/// Deletes every named target, or none when one is missing (`not_found`).
fn delete_exact(backend: &dyn Backend, req: &Request) -> Result<Outcome, BackendError> {
    let before = get_all(backend, &req.service, &req.targets)?;
    if let Err(missing) = all_present(&before) {
        return Ok(not_found(req, missing));
    }
    delete_all(backend, &req.service, req.id.clone(), before)
}

/// Deletes every target matching a prefix that still exists.
fn delete_prefix(backend: &dyn Backend, req: &Request) -> Result<Outcome, BackendError> {
    let names = matching(backend, req)?;
    let before = get_all(backend, &req.service, &names)?;
    // Only what still exists is deleted (and restorable).
    let before = before.into_iter().filter(|(_, i)| i.is_some()).collect();
    delete_all(backend, &req.service, req.id.clone(), before)
}

fn delete_all(
    backend: &dyn Backend,
    service: &str,
    id: Option<String>,
    before: Vec<(String, Option<Item>)>,
) -> Result<Outcome, BackendError> {
    let names: Vec<String> = before.iter().map(|(t, _)| t.clone()).collect();
    let changes: Vec<Change> = names
        .iter()
        .map(|t| Change::Delete {
            service: service.into(),
            target: t.clone(),
        })
        .collect();
    backend.apply(&changes)?;
    Ok(outcome(
        id,
        name_results(&names),
        names,
        restore(service, before),
    ))
}

fn outcome(
    id: Option<String>,
    results: Vec<ResultItem>,
    targets: Vec<String>,
    undo: Vec<Change>,
) -> Outcome {
    Outcome {
        response: Response::success(id, results),
        targets,
        undo,
    }
}

fn get_all(
    backend: &dyn Backend,
    service: &str,
    targets: &[String],
) -> Result<Vec<(String, Option<Item>)>, BackendError> {
    targets
        .iter()
        .map(|t| Ok((t.clone(), backend.get(service, t)?)))
        .collect()
}

fn all_present(items: &[(String, Option<Item>)]) -> Result<(), Vec<&str>> {
    let missing: Vec<&str> = items
        .iter()
        .filter(|(_, i)| i.is_none())
        .map(|(t, _)| t.as_str())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}

/// Every target matching any prefix of `req` and its attribute filter, sorted, without
/// duplicates.
fn matching(backend: &dyn Backend, req: &Request) -> Result<Vec<String>, BackendError> {
    let mut names = std::collections::BTreeSet::new();
    for prefix in &req.targets {
        for e in backend.list(&req.service, prefix, &req.attributes)? {
            names.insert(e.target);
        }
    }
    Ok(names.into_iter().collect())
}

fn restore(service: &str, before: Vec<(String, Option<Item>)>) -> Vec<Change> {
    before
        .into_iter()
        .map(|(target, old)| match old {
            Some(item) => Change::Set {
                service: service.into(),
                target,
                item,
            },
            None => Change::Delete {
                service: service.into(),
                target,
            },
        })
        .collect()
}

fn read_result(target: String, item: Item) -> ResultItem {
    ResultItem {
        target,
        value: Some(item.value),
        attributes: Some(item.attributes),
    }
}

fn name_results(names: &[String]) -> Vec<ResultItem> {
    names
        .iter()
        .map(|t| ResultItem {
            target: t.clone(),
            value: None,
            attributes: None,
        })
        .collect()
}

fn not_found(req: &Request, missing: Vec<&str>) -> Outcome {
    let mut named: Vec<String> = missing
        .iter()
        .take(MAX_NAMED_MISSING)
        .map(|t| format!("{t:?}"))
        .collect();
    if missing.len() > MAX_NAMED_MISSING {
        named.push(format!("and {} more", missing.len() - MAX_NAMED_MISSING));
    }
    Outcome {
        response: Response::failure(
            req.id.clone(),
            Status::Error,
            Reason::NotFound,
            format!(
                "nothing was {}: {} target(s) not found in service {:?}: {}",
                if req.action == Action::Read {
                    "returned"
                } else {
                    "deleted"
                },
                missing.len(),
                req.service,
                named.join(", ")
            ),
        ),
        targets: req.targets.clone(),
        undo: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryStore;
    use crate::protocol::{Incoming, parse_line};

    fn req(line: &str) -> Request {
        match parse_line(line.as_bytes()).unwrap() {
            Incoming::Request(r) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn write(store: &MemoryStore, targets: &[&str]) -> Outcome {
        let t: Vec<String> = targets.iter().map(|t| format!("{t:?}")).collect();
        let v: Vec<String> = targets.iter().map(|t| format!("\"v-{t}\"")).collect();
        execute(
            store,
            &req(&format!(
                r#"{{"type":"REQUEST","action":"write","service":"s","targets":[{}],"values":[{}],"attributes":{{"env":"prod"}}}}"#,
                t.join(","),
                v.join(",")
            )),
        )
    }

    #[test]
    fn write_read_search_delete() {
        let s = MemoryStore::new();
        assert_eq!(write(&s, &["a", "b"]).response.status, Status::Success);
        let o = execute(
            &s,
            &req(r#"{"type":"REQUEST","action":"read","service":"s","targets":["b","a"]}"#),
        );
        let r = o.response.results.unwrap();
        assert_eq!(r[0].target, "b");
        assert_eq!(r[0].value.as_deref(), Some("v-b"));
        assert_eq!(r[0].attributes.as_ref().unwrap()["env"], "prod");
        let o = execute(
            &s,
            &req(
                r#"{"type":"REQUEST","action":"search","service":"s","attributes":{"env":"prod"}}"#,
            ),
        );
        let r = o.response.results.unwrap();
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|i| i.value.is_none()));
        let o = execute(
            &s,
            &req(
                r#"{"type":"REQUEST","action":"delete","service":"s","match":"prefix","targets":[""]}"#,
            ),
        );
        assert_eq!(o.targets, ["a", "b"]);
        assert!(s.snapshot().is_empty());
        // the undo batch puts them back
        s.apply(&o.undo).unwrap();
        assert_eq!(s.snapshot().len(), 2);
    }

    #[test]
    fn missing_target_fails_the_whole_batch() {
        let s = MemoryStore::new();
        write(&s, &["a"]);
        for action in ["read", "delete"] {
            let o = execute(
                &s,
                &req(&format!(
                    r#"{{"type":"REQUEST","action":"{action}","service":"s","targets":["a","zz"]}}"#
                )),
            );
            assert_eq!(o.response.reason, Some(Reason::NotFound));
            assert!(o.response.message.unwrap().contains("\"zz\""));
        }
        assert_eq!(s.snapshot().len(), 1, "nothing deleted");
    }

    #[test]
    fn failure_mid_write_restores_earlier_items() {
        let s = MemoryStore::new();
        write(&s, &["a", "b"]);
        let before = s.snapshot();
        // 3 targets: the 3rd set fails; a and b were overwritten and c is new.
        s.fail_on_mutation(3);
        let o = write(&s, &["b", "a", "c"]);
        assert_eq!(o.response.reason, Some(Reason::BackendUnavailable));
        assert_eq!(s.snapshot(), before);
    }

    #[test]
    fn failure_mid_delete_restores_deleted_items() {
        let s = MemoryStore::new();
        write(&s, &["a", "b", "c"]);
        let before = s.snapshot();
        s.fail_on_mutation(2);
        let o = execute(
            &s,
            &req(r#"{"type":"REQUEST","action":"delete","service":"s","targets":["a","b","c"]}"#),
        );
        assert_eq!(o.response.reason, Some(Reason::BackendUnavailable));
        assert_eq!(s.snapshot(), before);
    }
}
