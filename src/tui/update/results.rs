//! What comes back: loaded state files and audit pages, search batches, the broker's status and
//! the clock that asks for it, watched files that changed, and effects that finished.

use super::super::action::{Effect, WatchedFile};
use super::super::state::MAX_AUDIT_IN_MEMORY;
use super::super::state::SearchProgress;
use super::super::state::{PolicyRow, State, record_text};
use super::panes::{clamp, follow};
use crate::audit::Record;
use crate::pending::PendingEntry;

/// A fresh pending queue, newest caller first.
pub(super) fn pending_loaded(state: &mut State, mut entries: Vec<PendingEntry>) -> Vec<Effect> {
    entries.sort_by_key(|e| std::cmp::Reverse(e.last_seen));
    state.pending = entries;
    state.pending_sel = clamp(state.pending_sel, state.pending.len());
    vec![]
}

/// Fresh policies.
pub(super) fn policies_loaded(state: &mut State, rows: Vec<PolicyRow>) -> Vec<Effect> {
    state.policies = rows;
    state.policy_sel = clamp(state.policy_sel, state.policies.len());
    vec![]
}

/// The audit tail, or an older page prepended (the selection stays on the same record).
pub(super) fn audit_loaded(
    state: &mut State,
    records: Vec<Record>,
    more_before: bool,
) -> Vec<Effect> {
    let added = records.len();
    let first_load = state.audit.is_empty();
    if first_load {
        state.audit = records;
        state.audit_more_before = more_before;
    } else {
        // Older records, prepended: keep the selection on the same record.
        let mut older = records;
        older.append(&mut state.audit);
        state.audit = older;
        state.audit_more_before = more_before;
        state.audit_sel += added;
    }
    follow(state);
    vec![]
}

/// A batch of search `generation`'s matches (newest first), older than those already found.
pub(super) fn search_found(
    state: &mut State,
    generation: u64,
    found: Vec<Record>,
    progress: SearchProgress,
) -> Vec<Effect> {
    let Some(search) = state.search.as_mut().filter(|s| s.generation == generation) else {
        return vec![]; // a cancelled search
    };
    let added = found.len();
    let mut older: Vec<_> = found.into_iter().rev().collect();
    older.append(&mut search.matches);
    search.matches = older;
    search.progress = progress;
    if !state.follow {
        state.audit_sel += added;
    }
    if search.matches.len() >= MAX_AUDIT_IN_MEMORY {
        // Enough to page through: stop, and say the count is a floor.
        search.progress.done = false;
        follow(state);
        return vec![Effect::CancelSearch];
    }
    follow(state);
    vec![]
}

/// Records appended to the log: to the tail (at most [`MAX_AUDIT_IN_MEMORY`] kept) and, when
/// they match, to the running search.
pub(super) fn audit_appended(state: &mut State, mut records: Vec<Record>) -> Vec<Effect> {
    if let Some(search) = &mut state.search {
        let f = state.filter.to_lowercase();
        search.matches.extend(
            records
                .iter()
                .filter(|r| record_text(r).to_lowercase().contains(&f))
                .cloned(),
        );
    }
    state.audit.append(&mut records);
    if state.audit.len() > MAX_AUDIT_IN_MEMORY {
        let drop = state.audit.len() - MAX_AUDIT_IN_MEMORY;
        state.audit.drain(..drop);
        state.audit_more_before = true;
        state.audit_sel = state.audit_sel.saturating_sub(drop);
    }
    follow(state);
    vec![]
}

/// The broker answered STATUS; after an outage that says so and reloads what changed meanwhile.
pub(super) fn status(
    state: &mut State,
    backend: String,
    connections: u64,
    requests: u64,
    pid: u32,
) -> Vec<Effect> {
    state.broker.backend = backend;
    state.broker.connections = connections;
    state.broker.requests = requests;
    state.broker.pid = pid;
    state.status_in_flight = false;
    if state.broker.reachable {
        return vec![];
    }
    // Back: the error that said it was gone is stale now, and whatever happened
    // meanwhile is on disk.
    state.broker.reachable = true;
    state.message = Some((true, "reconnected to the broker".into()));
    vec![
        Effect::LoadPending,
        Effect::LoadPolicies,
        Effect::LoadAuditNew,
    ]
}

/// The broker did not answer STATUS: the first failure says why (not every retry).
pub(super) fn status_failed(state: &mut State, why: String) -> Vec<Effect> {
    state.status_in_flight = false;
    if state.broker.reachable {
        state.broker.reachable = false;
        state.message = Some((false, why));
    }
    vec![]
}

/// The clock ticked: ask for STATUS, unless the last question is unanswered.
pub(super) fn tick(state: &mut State) -> Vec<Effect> {
    let mut fx = vec![];
    // Binaries are not watched (they live anywhere): what is at each path is looked at again
    // every few ticks (an open and an fstat each; hashed only when the file's stamp changed).
    state.ticks = state.ticks.wrapping_add(1);
    if state.ticks.is_multiple_of(DISK_CHECK_TICKS) && !state.policies.is_empty() {
        fx.push(Effect::CheckDisk);
    }
    if !state.status_in_flight {
        state.status_in_flight = true;
        fx.push(Effect::LoadStatus);
    }
    fx
}

/// Ticks between two looks at the registered binaries on disk.
pub(super) const DISK_CHECK_TICKS: u64 = 3;

/// What is on disk now at each registered path: rows of those hashes take it (rows loaded since
/// with other entries are left to their own load).
pub(super) fn disk_checked(
    state: &mut State,
    now: Vec<(crate::identity::BinaryHash, super::super::state::OnDisk)>,
) {
    for (hash, on_disk) in now {
        if let Some(row) = state.policies.iter_mut().find(|r| r.entry.hash == hash) {
            row.on_disk = on_disk;
        }
    }
}

/// A watched file changed: reload what it holds.
pub(super) fn file_changed(file: WatchedFile) -> Vec<Effect> {
    match file {
        WatchedFile::Pending => vec![Effect::LoadPending],
        WatchedFile::Config => vec![Effect::LoadPolicies],
        // A new audit record means a request: the counters moved too.
        WatchedFile::Audit => vec![Effect::LoadAuditNew, Effect::LoadStatus],
    }
}

/// Shows `text` on the message line (`ok` false: as an error), reloading nothing.
pub(super) fn show(state: &mut State, ok: bool, text: String) -> Vec<Effect> {
    state.message = Some((ok, text));
    vec![]
}

/// An effect finished: say how, and reload what it may have changed.
pub(super) fn done(state: &mut State, ok: bool, msg: String) -> Vec<Effect> {
    state.message = Some((ok, msg));
    vec![
        Effect::LoadPending,
        Effect::LoadPolicies,
        Effect::LoadStatus,
    ]
}

#[cfg(test)]
mod tests {
    use super::DISK_CHECK_TICKS;
    use crate::tui::action::{Action, Command, Effect, WatchedFile};
    use crate::tui::state::OnDisk;
    use crate::tui::test_support::*;
    use crate::tui::update::update;

    #[test]
    fn follow_tracks_appended_records_and_older_pages_load_at_the_top() {
        let mut s = sample_state();
        update(&mut s, Action::Command(Command::Focus(2)));
        assert_eq!(s.audit_sel, 2);
        update(
            &mut s,
            Action::AuditAppended(vec![record("success", "gcp")]),
        );
        assert_eq!(s.audit_sel, 3, "following the newest");
        update(&mut s, Action::Command(Command::Follow));
        update(
            &mut s,
            Action::AuditAppended(vec![record("success", "gcp")]),
        );
        assert_eq!(s.audit_sel, 3, "not following: selection stays");
        s.audit_more_before = true;
        update(&mut s, Action::Command(Command::Top));
        assert_eq!(
            update(&mut s, Action::Command(Command::Up)),
            vec![Effect::LoadAuditOlder]
        );
        update(
            &mut s,
            Action::AuditLoaded(vec![record("error", "old")], false),
        );
        assert_eq!(s.audit.len(), 6);
        assert_eq!(s.audit_sel, 1, "selection stays on the same record");
        assert_eq!(s.audit[0].service.as_deref(), Some("old"));
    }

    #[test]
    fn effect_results_show_a_message_and_reload() {
        let mut s = sample_state();
        let fx = update(&mut s, Action::Done(false, "no such binary".into()));
        assert_eq!(s.message, Some((false, "no such binary".into())));
        assert!(fx.contains(&Effect::LoadPolicies) && fx.contains(&Effect::LoadPending));
        update(
            &mut s,
            Action::Status {
                backend: "keyring".into(),
                connections: 4,
                requests: 99,
                pid: 7,
            },
        );
        assert_eq!(s.broker.backend, "keyring");
        assert_eq!(s.broker.connections, 4);
        assert_eq!(
            update(&mut s, Action::FileChanged(WatchedFile::Audit)),
            vec![Effect::LoadAuditNew, Effect::LoadStatus]
        );
        assert_eq!(
            update(&mut s, Action::FileChanged(WatchedFile::Config)),
            vec![Effect::LoadPolicies]
        );
        update(&mut s, Action::PendingLoaded(vec![]));
        assert_eq!(s.pending_sel, 0);
        assert!(update(&mut s, Action::Command(Command::Approve)).is_empty());
        assert!(s.modal.is_none(), "nothing to approve");
    }

    #[test]
    fn a_broker_that_stops_answering_shows_disconnected_and_reconnects_by_itself() {
        let mut s = sample_state();
        s.broker.embedded = false;
        s.policies.clear(); // no binaries to look at on disk: only STATUS (tested below)
        assert_eq!(update(&mut s, Action::Tick), vec![Effect::LoadStatus]);
        assert!(
            update(&mut s, Action::Tick).is_empty(),
            "ticks do not pile up behind an unanswered STATUS"
        );
        update(
            &mut s,
            Action::StatusFailed("the broker on /s does not answer".into()),
        );
        assert!(!s.broker.reachable);
        assert_eq!(
            s.message,
            Some((false, "the broker on /s does not answer".into()))
        );
        // Still down: the clock keeps asking, the message is not repeated.
        s.message = None;
        assert_eq!(update(&mut s, Action::Tick), vec![Effect::LoadStatus]);
        update(&mut s, Action::StatusFailed("again".into()));
        assert_eq!(s.message, None);
        // Back: the stale error goes, and what happened meanwhile is reloaded.
        update(&mut s, Action::Tick);
        s.message = Some((false, "the broker on /s does not answer".into()));
        let fx = update(
            &mut s,
            Action::Status {
                backend: "file".into(),
                connections: 0,
                requests: 1,
                pid: 9,
            },
        );
        assert!(s.broker.reachable);
        assert_eq!(s.message, Some((true, "reconnected to the broker".into())));
        assert!(fx.contains(&Effect::LoadAuditNew) && fx.contains(&Effect::LoadPending));
        assert_eq!(update(&mut s, Action::Tick), vec![Effect::LoadStatus]);
    }

    #[test]
    fn a_binary_changed_on_disk_shows_without_a_reload() {
        let mut s = sample_state();
        assert_eq!(s.policies[0].on_disk, OnDisk::Ok);
        let mut asked = 0;
        for _ in 0..DISK_CHECK_TICKS * 2 {
            let fx = update(&mut s, Action::Tick);
            asked += fx.iter().filter(|e| **e == Effect::CheckDisk).count();
            update(
                &mut s,
                Action::Status {
                    backend: "file".into(),
                    connections: 0,
                    requests: 0,
                    pid: 9,
                },
            );
        }
        assert_eq!(asked, 2, "every {DISK_CHECK_TICKS} ticks");
        let changed_to = crate::tui::test_support::hash('9');
        let mycli = s.policies[0].entry.hash.clone();
        update(
            &mut s,
            Action::DiskChecked(vec![(mycli, OnDisk::Changed(changed_to.clone()))]),
        );
        assert_eq!(s.policies[0].on_disk, OnDisk::Changed(changed_to));
        // Nothing registered: nothing to look at.
        let mut s = sample_state();
        s.policies.clear();
        for _ in 0..DISK_CHECK_TICKS * 2 {
            assert!(!update(&mut s, Action::Tick).contains(&Effect::CheckDisk));
        }
    }

    #[test]
    fn log_events_and_load_failures_show_without_reloading() {
        let mut s = sample_state();
        assert!(
            update(
                &mut s,
                Action::LoadFailed("cannot read pending.json".into())
            )
            .is_empty()
        );
        assert_eq!(s.message, Some((false, "cannot read pending.json".into())));
        assert!(update(&mut s, Action::Log(true, "accept failed".into())).is_empty());
        assert_eq!(s.message, Some((false, "accept failed".into())));
        update(&mut s, Action::Log(false, "stopped".into()));
        assert_eq!(s.message, Some((true, "stopped".into())));
    }
}
