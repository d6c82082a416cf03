//! The executor: runs the reducer's effects — state-file reads, audit pages and searches,
//! broker calls, admin actions, answers to prompts — on its own thread, and sends each result
//! back as an [`Action`].

use super::action::{Action, Effect, PassOutcome};
use super::approver::Approver;
use super::broker::Broker;
use super::data;
use super::state::Secret;
use crate::admin::{Done, Grants, Op};
use crate::identity::HashCache;
use crate::paths::Paths;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

/// Runs effects until the channel closes, sending results back as actions.
pub(super) fn run(
    paths: &Paths,
    broker: &Broker,
    approver: &Approver,
    effects: &mpsc::Receiver<Effect>,
    tx: &mpsc::Sender<Action>,
) {
    let mut executor = Executor {
        paths,
        broker,
        approver,
        tx,
        hashes: HashCache::new(),
        tail: data::AuditTail::new(paths.audit.clone()),
        tail_opened: false,
        current_search: Arc::new(AtomicU64::new(0)),
    };
    for fx in effects {
        let Some(action) = executor.effect(fx) else {
            continue;
        };
        if tx.send(action).is_err() {
            return;
        }
    }
}

/// What the executor keeps between effects.
struct Executor<'a> {
    paths: &'a Paths,
    broker: &'a Broker,
    approver: &'a Approver,
    tx: &'a mpsc::Sender<Action>,
    hashes: HashCache,
    tail: data::AuditTail,
    tail_opened: bool,
    /// The number of the search that may run; a search thread stops once it changes.
    current_search: Arc<AtomicU64>,
}

/// The message for an answer of the wrong kind (never sent by a broker of this version).
fn unexpected(d: &Done) -> String {
    format!("the broker answered with something else: {d:?}")
}

impl Executor<'_> {
    /// Runs one effect: its result, or `None` when it has none to report now (a search reports
    /// from its own thread).
    fn effect(&mut self, fx: Effect) -> Option<Action> {
        let paths = self.paths;
        Some(match fx {
            Effect::Search(generation, filter) => {
                self.search(generation, filter);
                return None;
            }
            Effect::CancelSearch => {
                self.current_search.store(0, Ordering::SeqCst);
                return None;
            }
            Effect::Bell => {
                ring_bell();
                return None;
            }
            Effect::LoadPending => match crate::pending::load(&paths.pending) {
                Ok(q) => Action::PendingLoaded(q.entries),
                Err(e) => Action::LoadFailed(e.to_string()),
            },
            Effect::LoadPolicies => match data::load_policies(paths, &self.hashes) {
                Ok(rows) => {
                    let _ = self.tx.send(Action::PolicyEdit(data::policy_edit(paths)));
                    Action::PoliciesLoaded(rows)
                }
                Err(e) => Action::LoadFailed(e.clone()),
            },
            Effect::CheckDisk => match data::load_policies(paths, &self.hashes) {
                Ok(rows) => Action::DiskChecked(
                    rows.into_iter()
                        .map(|r| (r.entry.hash, r.on_disk))
                        .collect(),
                ),
                // A config.json that cannot be read is said by the next load, not every tick.
                Err(_) => return None,
            },
            Effect::LoadAuditOlder => self.audit_older(),
            Effect::LoadAuditNew => self.audit_newer(),
            Effect::LoadStatus => self.status(),
            Effect::CheckQuit => match self.broker.status() {
                Ok(st) => Action::QuitChecked(st.connections),
                // The broker cannot say: assume callers may be connected and ask.
                Err(_) => Action::QuitChecked(1),
            },
            Effect::PreviewUpgrade(p) => preview_upgrade(paths, &p),
            Effect::Editing(id) => match self.approver.editing(&id) {
                Ok(()) => return None,
                Err(e) => Action::Done(false, e),
            },
            Effect::Answer(id, decision, label) => {
                done(self.approver.answer(&id, decision, None).map(|()| label))
            }
            Effect::Presence(secret) => return self.approver.prove(&secret),
            Effect::Present(inner, secret) => return self.present(*inner, &secret),
            Effect::SecretsList => match self.broker.secrets_list(None) {
                Ok(list) => Action::SecretsLoaded(list),
                Err(e) => Action::Done(false, e),
            },
            Effect::SecretReveal(service, target) => {
                match self.broker.secret_get(&service, &target, None) {
                    Ok(v) => Action::SecretRevealed(service, target, v),
                    Err(e) => Action::Done(false, e),
                }
            }
            other => match self.admin(other, None) {
                Some(r) => done(r),
                None => return None,
            },
        })
    }

    /// Runs a widening effect with the passphrase typed for it: the check's result goes back to
    /// the passphrase dialog (a connected broker's reply to an answer comes on the subscription).
    fn present(&self, fx: Effect, secret: &Secret) -> Option<Action> {
        let outcome = match fx {
            Effect::Answer(id, decision, label) => {
                match self.approver.answer(&id, decision, Some(secret)) {
                    Ok(()) if self.approver.replies_later() => return None,
                    Ok(()) => PassOutcome::Accepted(label),
                    Err(e) => PassOutcome::of_error(e),
                }
            }
            Effect::SecretsList => match self.broker.secrets_list(Some(secret)) {
                Ok(list) => {
                    let _ = self.tx.send(Action::SecretsLoaded(list));
                    PassOutcome::Accepted(String::new())
                }
                Err(e) => PassOutcome::of_error(e),
            },
            Effect::SecretReveal(service, target) => {
                match self.broker.secret_get(&service, &target, Some(secret)) {
                    Ok(v) => {
                        let _ = self.tx.send(Action::SecretRevealed(service, target, v));
                        PassOutcome::Accepted(String::new())
                    }
                    Err(e) => PassOutcome::of_error(e),
                }
            }
            other => match self.admin(other, Some(secret))? {
                Ok(m) => PassOutcome::Accepted(m),
                Err(e) => PassOutcome::of_error(e),
            },
        };
        Some(Action::Passphrase(outcome))
    }

    /// An admin change from the dashboard, with the passphrase when one was typed for it;
    /// `None` for an effect that is not one.
    fn admin(&self, fx: Effect, pass: Option<&Secret>) -> Option<Result<String, String>> {
        let carry = |op| self.broker.carry(self.paths, op, pass);
        Some(match fx {
            Effect::Approve(h, g) => carry(Op::Approve {
                selector: h.to_string(),
                grants: g,
            })
            .and_then(|d| match d {
                Done::Binary(b) => Ok(format!(
                    "approved {} ({})",
                    b.path.display(),
                    b.hash.short()
                )),
                other => Err(unexpected(&other)),
            }),
            Effect::SetGrants(h, g) => carry(Op::SetGrants {
                selector: h.to_string(),
                grants: g,
            })
            .and_then(|d| match d {
                Done::Binary(b) => Ok(format!("saved permissions of {}", b.path.display())),
                other => Err(unexpected(&other)),
            }),
            Effect::Dismiss(h) => carry(Op::Dismiss {
                selector: h.to_string(),
            })
            .and_then(|d| match d {
                Done::Dismissed(e) => Ok(format!("dismissed {}", e.path.display())),
                other => Err(unexpected(&other)),
            }),
            Effect::Unregister(h) => carry(Op::Unregister {
                selector: h.to_string(),
            })
            .and_then(|d| match d {
                Done::Binary(b) => Ok(format!("unregistered {}", b.path.display())),
                other => Err(unexpected(&other)),
            }),
            Effect::Register(p) => carry(Op::Register {
                path: p.into(),
                grants: Grants::default(),
            })
            .and_then(|d| match d {
                Done::Binary(b) => Ok(format!(
                    "registered {} with zero privileges",
                    b.path.display()
                )),
                other => Err(unexpected(&other)),
            }),
            Effect::Upgrade(p) => carry(Op::Upgrade { path: p.into() }).and_then(|d| match d {
                Done::Upgraded(u) => Ok(format!(
                    "upgraded {} (permissions kept)",
                    u.entry.path.display()
                )),
                other => Err(unexpected(&other)),
            }),
            _ => return None,
        })
    }

    /// Starts search `generation` for `filter` on its own thread; it sends its batches until
    /// another search starts or this one is cancelled.
    fn search(&self, generation: u64, filter: String) {
        self.current_search.store(generation, Ordering::SeqCst);
        let (current, tx, log) = (
            self.current_search.clone(),
            self.tx.clone(),
            self.paths.audit.clone(),
        );
        std::thread::spawn(move || {
            let r = data::search_backwards(&log, &filter, |found, progress| {
                current.load(Ordering::SeqCst) == generation
                    && tx
                        .send(Action::SearchFound(generation, found, progress))
                        .is_ok()
            });
            if let Err(e) = r {
                let _ = tx.send(Action::LoadFailed(format!(
                    "cannot search the audit log: {e}"
                )));
            }
        });
    }

    /// The first page of the audit log's tail, then the page before the loaded ones.
    fn audit_older(&mut self) -> Action {
        let page = if self.tail_opened {
            self.tail.older()
        } else {
            self.tail_opened = true;
            self.tail.open_tail()
        };
        match page {
            Ok((records, more)) => Action::AuditLoaded(records, more),
            Err(e) => Action::Done(false, format!("cannot read the audit log: {e}")),
        }
    }

    /// Records appended since the last read; after a rotation or truncation, the new tail.
    fn audit_newer(&mut self) -> Action {
        let records = match self.tail.newer() {
            Ok(Some(records)) => Ok(records),
            // Rotated or truncated: start over from the new tail.
            Ok(None) => self.tail.open_tail().map(|(records, _)| records),
            Err(e) => Err(e),
        };
        match records {
            Ok(records) => Action::AuditAppended(records),
            Err(e) => Action::Done(false, format!("cannot read the audit log: {e}")),
        }
    }

    /// The broker's counters, or why it does not answer.
    fn status(&self) -> Action {
        match self.broker.status() {
            Ok(st) => Action::Status {
                backend: st.backend,
                connections: st.connections,
                requests: st.requests,
                pid: st.pid,
                locked: st.locked,
            },
            Err(e) => Action::StatusFailed(e),
        }
    }
}

/// An admin action's result for the message line.
fn done(r: Result<String, impl std::fmt::Display>) -> Action {
    match r {
        Ok(m) => Action::Done(true, m),
        Err(e) => Action::Done(false, e.to_string()),
    }
}

/// Rings the terminal bell.
fn ring_bell() {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(b"\x07").and_then(|()| out.flush());
}

/// The facts for the upgrade question: the registered hash and the binary now on disk (hash,
/// size, modification time).
fn preview_upgrade(paths: &Paths, path: &str) -> Action {
    let policy = match crate::policy::load(&paths.config) {
        Ok(p) => p,
        Err(e) => return Action::Done(false, e.to_string()),
    };
    let Some(entry) = policy.by_path(Path::new(path)) else {
        return Action::Done(false, format!("{path} is no longer registered"));
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return Action::Done(false, format!("cannot read {path}: {e}")),
    };
    match crate::identity::hash_path(Path::new(path)) {
        Ok(new) => Action::UpgradePreview {
            path: path.into(),
            old: entry.hash.clone(),
            new,
            size: meta.len(),
            mtime: meta
                .modified()
                .map(|t| {
                    chrono::DateTime::<chrono::Utc>::from(t)
                        .format("%Y-%m-%d %H:%M:%S UTC")
                        .to_string()
                })
                .unwrap_or_else(|_| "?".into()),
        },
        Err(e) => Action::Done(false, format!("cannot hash {path}: {e}")),
    }
}
