//! The reducer: `update(state, action) -> effects`. Pure — no I/O, no clock, no terminal — so
//! every interaction is unit-tested by feeding actions and checking state and effects.

use super::action::{Action, Command, Effect, WatchedFile};
use super::state::{Confirm, Editor, EditorGoal, Field, Modal, OnDisk, Pane, State};
use super::view;
use crate::admin::Grants;
use crate::server::approval::{ApproverEvent, Decision, Prompt};
use ratatui::crossterm::event::{self, KeyCode};

/// Most audit records kept in memory; older ones are dropped (and can be paged in again).
pub const MAX_AUDIT_IN_MEMORY: usize = 20_000;

/// Applies `action` to `state` and returns the effects to run.
pub fn update(state: &mut State, action: Action) -> Vec<Effect> {
    match action {
        Action::Key(k) => match key_action(state, k) {
            Some(a) => update(state, a),
            None => vec![],
        },
        Action::Command(c) if state.prompt_focus() => prompt_command(state, c),
        Action::Command(c) => command(state, c),
        Action::Char(c) => {
            in_prompt_modal(state, |s| type_char(s, c));
            vec![]
        }
        Action::Backspace => {
            in_prompt_modal(state, backspace);
            vec![]
        }
        Action::Click(x, y) => {
            if !state.prompt_focus() {
                click(state, x, y);
            }
            vec![]
        }
        Action::Clock(ms) => {
            state.now_ms = ms;
            vec![]
        }
        Action::Approver(ev) => approver_event(state, ev),
        Action::ApproverLost => {
            let n = state.prompts.len();
            state.prompts.clear();
            state.prompt_modal = None;
            state.answered.clear();
            if n > 0 {
                state.message = Some((
                    false,
                    format!("the broker went away: {n} prompt(s) closed unanswered"),
                ));
            }
            vec![]
        }
        Action::Scroll(d) => {
            if state.modal.is_none() && !state.prompt_focus() {
                move_sel(state, i64::from(d));
            }
            vec![]
        }
        Action::Resize(w, h) => {
            state.size = (w, h);
            vec![]
        }
        Action::PendingLoaded(mut entries) => {
            entries.sort_by_key(|e| std::cmp::Reverse(e.last_seen));
            state.pending = entries;
            state.pending_sel = clamp(state.pending_sel, state.pending.len());
            vec![]
        }
        Action::PoliciesLoaded(rows) => {
            state.policies = rows;
            state.policy_sel = clamp(state.policy_sel, state.policies.len());
            vec![]
        }
        Action::AuditLoaded(records, more_before) => {
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
        Action::SearchFound(generation, found, progress) => {
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
        Action::AuditAppended(mut records) => {
            if let Some(search) = &mut state.search {
                let f = state.filter.to_lowercase();
                search.matches.extend(
                    records
                        .iter()
                        .filter(|r| super::state::record_text(r).to_lowercase().contains(&f))
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
        Action::Status {
            backend,
            connections,
            requests,
            pid,
        } => {
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
        Action::StatusFailed(why) => {
            state.status_in_flight = false;
            if state.broker.reachable {
                state.broker.reachable = false;
                state.message = Some((false, why));
            }
            vec![]
        }
        Action::LoadFailed(why) => {
            state.message = Some((false, why));
            vec![]
        }
        Action::Log(warning, text) => {
            state.message = Some((!warning, text));
            vec![]
        }
        Action::Tick if state.status_in_flight => vec![],
        Action::Tick => {
            state.status_in_flight = true;
            vec![Effect::LoadStatus]
        }
        Action::UpgradePreview {
            path,
            old,
            new,
            size,
            mtime,
        } => {
            state.modal = Some(Modal::Confirm {
                lines: vec![
                    format!("Upgrade {path}?"),
                    format!("approved hash  {}", old.short()),
                    format!("hash on disk   {}", new.short()),
                    format!("on disk: {}, modified {mtime}", human_size(size)),
                    "Its permissions move to the new binary.".into(),
                ],
                what: Confirm::Upgrade(path),
            });
            vec![]
        }
        Action::FileChanged(file) => match file {
            WatchedFile::Pending => vec![Effect::LoadPending],
            WatchedFile::Config => vec![Effect::LoadPolicies],
            // A new audit record means a request: the counters moved too.
            WatchedFile::Audit => vec![Effect::LoadAuditNew, Effect::LoadStatus],
        },
        Action::Integrity(text) => {
            state.integrity = Some(text);
            Vec::new()
        }
        Action::QuitChecked(connections) => {
            state.broker.connections = connections;
            if connections > 0 {
                state.modal = Some(Modal::Confirm {
                    lines: vec![
                        format!(
                            "{connections} caller connection(s) are open to the embedded broker."
                        ),
                        "Quitting stops the broker. Quit?".into(),
                    ],
                    what: Confirm::Quit,
                });
            } else {
                state.quit = true;
            }
            vec![]
        }
        Action::Done(ok, msg) => {
            state.message = Some((ok, msg));
            vec![
                Effect::LoadPending,
                Effect::LoadPolicies,
                Effect::LoadStatus,
            ]
        }
    }
}

/// Runs `f` on the shown prompt's dialog when there is one (else on the ordinary modal).
fn in_prompt_modal<R>(state: &mut State, f: impl FnOnce(&mut State) -> R) -> R {
    if !state.prompt_focus() {
        return f(state);
    }
    std::mem::swap(&mut state.modal, &mut state.prompt_modal);
    let r = f(state);
    std::mem::swap(&mut state.modal, &mut state.prompt_modal);
    r
}

/// A prompt opened or changed, or one was resolved.
fn approver_event(state: &mut State, ev: ApproverEvent) -> Vec<Effect> {
    match ev {
        ApproverEvent::Prompt(p) => {
            if state.answered.contains(&p.id) {
                return vec![];
            }
            if let Some(old) = state.prompts.iter_mut().find(|o| o.id == p.id) {
                // More (or fewer) requests waiting on it: no new ring.
                *old = *p;
                return vec![];
            }
            state.prompts.push(*p);
            // The prompt's keys show in the hint bar, not an old message.
            state.message = None;
            vec![Effect::Bell]
        }
        ApproverEvent::Resolved { id, outcome, by } => {
            if let Some(i) = state.answered.iter().position(|a| *a == id) {
                // Our own answer: its result is already said.
                state.answered.remove(i);
                return vec![];
            }
            let Some(i) = state.prompts.iter().position(|p| p.id == id) else {
                return vec![];
            };
            let p = state.prompts.remove(i);
            if i == 0 {
                state.prompt_modal = None;
            }
            let how = match outcome.as_str() {
                "timeout" => "timed out: refused".to_string(),
                "withdrawn" => "withdrawn: the caller hung up".to_string(),
                "no_answer" => "closed: no approver answered".to_string(),
                decision => format!(
                    "answered \"{}\" by {}",
                    decision_name(decision),
                    by.as_deref().unwrap_or("another approver")
                ),
            };
            state.message = Some((
                true,
                format!("prompt for {} ({}): {how}", who(&p), asked(&p)),
            ));
            vec![]
        }
    }
}

/// How a decision is said: `once` → `allow once`.
fn decision_name(d: &str) -> &str {
    match d {
        "once" => "allow once",
        "time" => "allow for a time",
        "always" => "always",
        "deny" => "deny",
        "forget" => "deny and dismiss",
        other => other,
    }
}

/// The caller a prompt is about: its script, else its executable.
pub fn who(p: &Prompt) -> &str {
    p.script.as_deref().unwrap_or(&p.path)
}

/// What a prompt asks: `read aws`.
pub fn asked(p: &Prompt) -> String {
    format!("{} {}", p.action, p.service)
}

/// Exactly what a prompt asks, as grants (what the broker grants for an empty "always").
pub fn asked_grants(p: &Prompt) -> Grants {
    let mut g = Grants {
        search: p.action == "search" || p.mode == "prefix",
        ..Grants::default()
    };
    match p.action.as_str() {
        "write" | "delete" => g.write.push(p.service.clone()),
        _ => g.read.push(p.service.clone()),
    }
    g
}

/// `script run by …` and `launched by …` for a prompt's caller.
fn prompt_about(p: &Prompt) -> Vec<String> {
    let mut v = vec![];
    if p.script.is_some() {
        v.push(format!("script run by {}", p.path));
    }
    if let Some(l) = view::launched_by(&p.chain) {
        v.push(format!("launched by {l}"));
    }
    v
}

/// `script run by …` and `launched by …` for a pending caller.
pub fn pending_about(e: &crate::pending::PendingEntry) -> Vec<String> {
    let mut v = vec![];
    if let Some(i) = &e.interpreter {
        v.push(format!("script run by {}", i.path.display()));
    }
    if let Some(l) = view::launched_by(&e.chain) {
        v.push(format!("launched by {l}"));
    }
    v
}

/// Answers the prompt `id`: it leaves the screen at once; the executor sends the answer.
fn answer(state: &mut State, id: &str, decision: Decision) -> Vec<Effect> {
    let Some(i) = state.prompts.iter().position(|p| p.id == id) else {
        return vec![];
    };
    let p = state.prompts.remove(i);
    // Bounded: an answer the broker refused never comes back resolved.
    if state.answered.len() >= 64 {
        state.answered.remove(0);
    }
    state.answered.push(p.id.clone());
    let verb = match &decision {
        Decision::Once => "allowed once".to_string(),
        Decision::For(d) => format!("allowed for {}", crate::policy::human_duration(d.as_secs())),
        Decision::Always(_) => "allowed always".to_string(),
        Decision::Deny => "denied".to_string(),
        Decision::Forget => "denied and dismissed".to_string(),
    };
    let label = format!("{verb}: {} ({})", who(&p), asked(&p));
    vec![Effect::Answer(p.id, decision, label)]
}

/// Keys while a prompt is shown: its answers, or its dialog's keys.
fn prompt_command(state: &mut State, c: Command) -> Vec<Effect> {
    if state.prompt_modal.is_some() {
        return in_prompt_modal(state, |s| modal_command(s, c));
    }
    let Some(p) = state.prompts.first() else {
        return vec![];
    };
    let id = p.id.clone();
    match c {
        Command::AllowOnce => answer(state, &id, Decision::Once),
        Command::AllowFor => {
            state.prompt_modal = Some(Modal::PromptFor(id, "1h".into()));
            vec![]
        }
        Command::AllowAlways => {
            let g = asked_grants(p);
            let field = if g.write.is_empty() {
                Field::Read
            } else {
                Field::Write
            };
            state.prompt_modal = Some(Modal::Editor(Editor {
                goal: EditorGoal::Always(id),
                path: who(p).to_string(),
                about: prompt_about(p),
                read: g.read,
                write: g.write,
                search: g.search,
                field,
                input: String::new(),
            }));
            vec![]
        }
        Command::Deny => answer(state, &id, Decision::Deny),
        Command::Forget => answer(state, &id, Decision::Forget),
        Command::Quit => {
            // Asked for during a prompt (ctrl-c): no second question hidden behind the prompt.
            // Quitting detaches the approver, and the broker refuses what it held.
            state.quit = true;
            vec![]
        }
        _ => vec![],
    }
}

/// Maps a key to an action in the current context: the keymap for the open modal or pane, and
/// text input for modals that take text.
pub fn key_action(state: &State, key: event::KeyEvent) -> Option<Action> {
    use super::keymap::{self, Scope};
    let scope = keymap::scope(state);
    // Text scopes have only their own bindings: every other key is text.
    let text_modal = matches!(scope, Scope::Editor | Scope::Input);
    if let Some(c) = keymap::lookup(scope, key) {
        return Some(Action::Command(c));
    }
    if scope == Scope::Viewer {
        // Any other key closes an overlay too.
        return Some(Action::Command(Command::Escape));
    }
    match key.code {
        KeyCode::Char(c) if text_modal => Some(Action::Char(c)),
        KeyCode::Backspace if text_modal => Some(Action::Backspace),
        _ => None,
    }
}

/// A size for people: `4.0 MiB (4,194,304 bytes)`; small sizes in bytes only.
pub fn human_size(bytes: u64) -> String {
    let mut digits = bytes.to_string();
    let mut i = digits.len();
    while i > 3 {
        i -= 3;
        digits.insert(i, ',');
    }
    if bytes < 1024 {
        return format!("{digits} bytes");
    }
    let units = ["KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {} ({digits} bytes)", units[u])
}

fn clamp(sel: usize, len: usize) -> usize {
    sel.min(len.saturating_sub(1))
}

fn follow(state: &mut State) {
    let n = state.audit_rows().len();
    if state.follow {
        state.audit_sel = n.saturating_sub(1);
    } else {
        state.audit_sel = clamp(state.audit_sel, n);
    }
}

fn len_of(state: &State, pane: Pane) -> usize {
    match pane {
        Pane::Pending => state.pending.len(),
        Pane::Audit => state.audit_rows().len(),
        Pane::Policies => state.policies.len(),
    }
}

fn sel_mut(state: &mut State, pane: Pane) -> &mut usize {
    match pane {
        Pane::Pending => &mut state.pending_sel,
        Pane::Audit => &mut state.audit_sel,
        Pane::Policies => &mut state.policy_sel,
    }
}

fn move_sel(state: &mut State, delta: i64) -> Vec<Effect> {
    let pane = state.pane;
    let len = len_of(state, pane);
    let sel = sel_mut(state, pane);
    let at_top = *sel == 0;
    let next = (*sel as i64 + delta).clamp(0, len.saturating_sub(1) as i64) as usize;
    *sel = next;
    if pane == Pane::Audit {
        state.follow = len > 0 && next == len - 1;
        if delta < 0 && at_top && state.audit_more_before {
            return vec![Effect::LoadAuditOlder];
        }
    }
    vec![]
}

fn command(state: &mut State, c: Command) -> Vec<Effect> {
    if state.modal.is_some() {
        return modal_command(state, c);
    }
    state.message = None;
    match c {
        Command::Quit => {
            if state.broker.embedded {
                // The count on screen may be stale: ask the broker now.
                vec![Effect::CheckQuit]
            } else {
                state.quit = true;
                vec![]
            }
        }
        Command::Help => {
            state.modal = Some(Modal::Help);
            state.scroll = 0;
            vec![]
        }
        Command::NextPane | Command::PrevPane => {
            let i = Pane::ALL.iter().position(|p| *p == state.pane).unwrap_or(0);
            let step = if c == Command::NextPane { 1 } else { 2 };
            state.pane = Pane::ALL[(i + step) % 3];
            vec![]
        }
        Command::Focus(n) => {
            if let Some(p) = Pane::ALL.get(usize::from(n.saturating_sub(1))) {
                state.pane = *p;
            }
            vec![]
        }
        Command::Down => move_sel(state, 1),
        Command::Up => move_sel(state, -1),
        Command::Top => {
            let more = state.pane == Pane::Audit && state.audit_more_before;
            let at_top = *sel_mut(state, state.pane) == 0;
            *sel_mut(state, state.pane) = 0;
            if state.pane == Pane::Audit {
                state.follow = false;
            }
            if more && at_top {
                vec![Effect::LoadAuditOlder]
            } else {
                vec![]
            }
        }
        Command::Bottom => {
            let len = len_of(state, state.pane);
            *sel_mut(state, state.pane) = len.saturating_sub(1);
            if state.pane == Pane::Audit {
                state.follow = true;
            }
            vec![]
        }
        Command::Reload => vec![
            Effect::LoadPending,
            Effect::LoadPolicies,
            Effect::LoadAuditNew,
            Effect::LoadStatus,
        ],
        Command::Escape => {
            let searching = state.search.take().is_some();
            state.filter.clear();
            follow(state);
            if searching {
                vec![Effect::CancelSearch]
            } else {
                vec![]
            }
        }
        Command::Approve => {
            if let Some(e) = state.pending.get(state.pending_sel) {
                let field = if matches!(e.last_action.as_str(), "write" | "delete") {
                    Field::Write
                } else {
                    Field::Read
                };
                state.modal = Some(Modal::Editor(Editor {
                    goal: EditorGoal::Approve(e.hash.clone()),
                    path: e.path.display().to_string(),
                    about: pending_about(e),
                    read: vec![],
                    write: vec![],
                    search: false,
                    field,
                    input: e.last_service.clone(),
                }));
            }
            vec![]
        }
        Command::Dismiss => {
            if let Some(e) = state.pending.get(state.pending_sel) {
                state.modal = Some(Modal::Confirm {
                    lines: vec![
                        format!("Dismiss the pending caller {}?", e.path.display()),
                        format!("hash {} · {} attempt(s)", e.hash.short(), e.attempts),
                        "It is queued again if it calls again.".into(),
                    ],
                    what: Confirm::Dismiss(e.hash.clone()),
                });
            }
            vec![]
        }
        Command::Enter => {
            match state.pane {
                Pane::Pending => return command(state, Command::Approve),
                Pane::Policies => return command(state, Command::Edit),
                Pane::Audit => {
                    if let Some(r) = state.audit_rows().get(state.audit_sel) {
                        state.modal = Some(Modal::Detail(Box::new((*r).clone())));
                        state.scroll = 0;
                    }
                }
            }
            vec![]
        }
        Command::Filter => {
            state.modal = Some(Modal::Filter(state.filter.clone()));
            vec![]
        }
        Command::Follow => {
            state.follow = !state.follow;
            follow(state);
            vec![]
        }
        Command::Edit => {
            if let Some(row) = state.policies.get(state.policy_sel) {
                let e = &row.entry;
                state.modal = Some(Modal::Editor(Editor {
                    goal: EditorGoal::Edit(e.hash.clone()),
                    path: e.path.display().to_string(),
                    about: vec![],
                    read: e.allowed_read_services.iter().cloned().collect(),
                    write: e.allowed_write_services.iter().cloned().collect(),
                    search: e.can_search,
                    field: Field::Read,
                    input: String::new(),
                }));
            }
            vec![]
        }
        Command::Upgrade => {
            let Some(row) = state.policies.get(state.policy_sel) else {
                return vec![];
            };
            let path = row.entry.path.display().to_string();
            match &row.on_disk {
                OnDisk::Changed(_) => vec![Effect::PreviewUpgrade(path)],
                OnDisk::Ok => {
                    state.message =
                        Some((true, format!("{path} is unchanged: nothing to upgrade")));
                    vec![]
                }
                OnDisk::Missing => {
                    state.message =
                        Some((false, format!("{path} is missing: nothing to upgrade to")));
                    vec![]
                }
                OnDisk::Unknown => {
                    state.message = Some((false, format!("{path} has not been checked yet")));
                    vec![Effect::LoadPolicies]
                }
            }
        }
        Command::Register => {
            state.modal = Some(Modal::Register(String::new()));
            vec![]
        }
        Command::Unregister => {
            if let Some(row) = state.policies.get(state.policy_sel) {
                let e = &row.entry;
                state.modal = Some(Modal::Confirm {
                    lines: vec![
                        format!("Unregister {}?", e.path.display()),
                        format!("hash {}: it loses every permission", e.hash.short()),
                    ],
                    what: Confirm::Unregister(e.hash.clone()),
                });
            }
            vec![]
        }
        Command::NextField
        | Command::PrevField
        | Command::PageDown
        | Command::PageUp
        | Command::Toggle
        | Command::Yes
        | Command::No
        | Command::AllowOnce
        | Command::AllowFor
        | Command::AllowAlways
        | Command::Deny
        | Command::Forget => {
            vec![]
        }
    }
}

fn modal_command(state: &mut State, c: Command) -> Vec<Effect> {
    let Some(modal) = state.modal.take() else {
        return vec![];
    };
    match modal {
        Modal::Help | Modal::Detail(_) => {
            let (len, page) = view::overlay_extent(state, &modal);
            let max = len.saturating_sub(page);
            let page = page.max(1);
            state.scroll = match c {
                Command::Down => state.scroll + 1,
                Command::Up => state.scroll.saturating_sub(1),
                Command::PageDown => state.scroll + page,
                Command::PageUp => state.scroll.saturating_sub(page),
                Command::Top => 0,
                Command::Bottom => max,
                // Anything else closes it.
                _ => return vec![],
            }
            .min(max);
            state.modal = Some(modal);
            vec![]
        }
        Modal::Filter(text) => match c {
            Command::Enter => {
                state.filter = text;
                state.audit_sel = 0;
                state.follow = true;
                let fx = if state.filter.is_empty() {
                    state.search = None;
                    vec![Effect::CancelSearch]
                } else {
                    state.search_gen += 1;
                    state.search = Some(super::state::Search {
                        generation: state.search_gen,
                        matches: vec![],
                        progress: Default::default(),
                    });
                    vec![Effect::Search(state.search_gen, state.filter.clone())]
                };
                follow(state);
                fx
            }
            Command::Escape | Command::Quit => vec![],
            _ => {
                state.modal = Some(Modal::Filter(text));
                vec![]
            }
        },
        Modal::Register(path) => match c {
            Command::Enter if !path.trim().is_empty() => vec![Effect::Register(path.trim().into())],
            Command::Escape | Command::Quit => vec![],
            _ => {
                state.modal = Some(Modal::Register(path));
                vec![]
            }
        },
        Modal::PromptFor(id, text) => match c {
            Command::Enter => match crate::policy::parse_duration(text.trim()) {
                Ok(secs) if secs > 0 => answer(
                    state,
                    &id,
                    Decision::For(std::time::Duration::from_secs(secs)),
                ),
                Ok(_) => {
                    state.message = Some((false, "a duration must be longer than 0".into()));
                    state.modal = Some(Modal::PromptFor(id, text));
                    vec![]
                }
                Err(e) => {
                    state.message = Some((false, e.to_string()));
                    state.modal = Some(Modal::PromptFor(id, text));
                    vec![]
                }
            },
            Command::Escape | Command::Quit => vec![],
            _ => {
                state.modal = Some(Modal::PromptFor(id, text));
                vec![]
            }
        },
        Modal::Confirm { what, lines } => match c {
            Command::Yes => match what {
                Confirm::Dismiss(h) => vec![Effect::Dismiss(h)],
                Confirm::Unregister(h) => vec![Effect::Unregister(h)],
                Confirm::Upgrade(p) => vec![Effect::Upgrade(p)],
                Confirm::Quit => {
                    state.quit = true;
                    vec![]
                }
            },
            Command::No | Command::Escape => vec![],
            _ => {
                state.modal = Some(Modal::Confirm { what, lines });
                vec![]
            }
        },
        Modal::Editor(mut ed) => match c {
            Command::Escape | Command::Quit => vec![],
            Command::NextField | Command::PrevField => {
                let order = [Field::Read, Field::Write, Field::Search];
                let i = order.iter().position(|f| *f == ed.field).unwrap_or(0);
                let step = if c == Command::NextField { 1 } else { 2 };
                ed.field = order[(i + step) % 3];
                state.modal = Some(Modal::Editor(ed));
                vec![]
            }
            Command::Toggle => {
                if ed.field == Field::Search {
                    ed.search = !ed.search;
                } else {
                    ed.input.push(' ');
                }
                state.modal = Some(Modal::Editor(ed));
                vec![]
            }
            Command::Enter => {
                let input = ed.input.trim().to_string();
                if input.is_empty() {
                    let grants = Grants {
                        read: ed.read,
                        write: ed.write,
                        search: ed.search,
                        ..Grants::default()
                    };
                    return match ed.goal {
                        EditorGoal::Approve(h) => vec![Effect::Approve(h, grants)],
                        EditorGoal::Edit(h) => vec![Effect::SetGrants(h, grants)],
                        EditorGoal::Always(id) => {
                            // Our own dialog is closed by now; the prompt goes with it.
                            answer(state, &id, Decision::Always(grants))
                        }
                    };
                }
                let list = match ed.field {
                    Field::Read => Some(&mut ed.read),
                    Field::Write => Some(&mut ed.write),
                    Field::Search => None,
                };
                if let Some(list) = list
                    && !list.contains(&input)
                {
                    list.push(input);
                    list.sort();
                }
                ed.input.clear();
                state.modal = Some(Modal::Editor(ed));
                vec![]
            }
            _ => {
                state.modal = Some(Modal::Editor(ed));
                vec![]
            }
        },
    }
}

fn type_char(state: &mut State, c: char) {
    if c.is_control() {
        return;
    }
    match &mut state.modal {
        Some(Modal::Filter(t) | Modal::Register(t) | Modal::PromptFor(_, t)) => t.push(c),
        Some(Modal::Editor(ed)) if ed.field != Field::Search => ed.input.push(c),
        _ => {}
    }
}

fn backspace(state: &mut State) {
    match &mut state.modal {
        Some(Modal::Filter(t) | Modal::Register(t) | Modal::PromptFor(_, t)) => {
            t.pop();
        }
        Some(Modal::Editor(ed)) if !ed.input.is_empty() => {
            ed.input.pop();
        }
        Some(Modal::Editor(ed)) => match ed.field {
            Field::Read => {
                ed.read.pop();
            }
            Field::Write => {
                ed.write.pop();
            }
            Field::Search => ed.search = false,
        },
        _ => {}
    }
}

fn click(state: &mut State, x: u16, y: u16) {
    if state.modal.is_some() {
        return;
    }
    let area = ratatui::layout::Rect::new(0, 0, state.size.0, state.size.1);
    let l = view::layout(area, state);
    for (pane, rect) in Pane::ALL.iter().zip(l.panes) {
        if rect.contains(ratatui::layout::Position::new(x, y)) {
            state.pane = *pane;
            let list = view::list_area(rect);
            if y >= list.y && y < list.y + list.height {
                let len = len_of(state, *pane);
                let sel = *sel_mut(state, *pane);
                let offset = view::scroll_offset(sel, len, list.height as usize);
                let i = offset + usize::from(y - list.y);
                if i < len {
                    *sel_mut(state, *pane) = i;
                    if *pane == Pane::Audit {
                        state.follow = i + 1 == len;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn navigation_moves_and_clamps_per_pane() {
        let mut s = sample_state();
        assert_eq!(s.pane, Pane::Pending);
        update(&mut s, Action::Command(Command::Down));
        update(&mut s, Action::Command(Command::Down));
        update(&mut s, Action::Command(Command::Down));
        assert_eq!(s.pending_sel, 1, "clamped to the last of two");
        update(&mut s, Action::Command(Command::Top));
        assert_eq!(s.pending_sel, 0);
        update(&mut s, Action::Command(Command::NextPane));
        assert_eq!(s.pane, Pane::Audit);
        update(&mut s, Action::Command(Command::Focus(3)));
        assert_eq!(s.pane, Pane::Policies);
        update(&mut s, Action::Command(Command::PrevPane));
        assert_eq!(s.pane, Pane::Audit);
        update(&mut s, Action::Command(Command::Top));
        assert_eq!(s.audit_sel, 0);
        assert!(!s.follow, "leaving the bottom stops following");
        update(&mut s, Action::Command(Command::Bottom));
        assert!(s.follow);
    }

    #[test]
    fn approve_opens_the_editor_preset_to_zero_with_the_asked_service_and_saves() {
        let mut s = sample_state();
        let hash = s.pending[0].hash.clone();
        assert!(update(&mut s, Action::Command(Command::Approve)).is_empty());
        let Some(Modal::Editor(ed)) = &s.modal else {
            panic!("editor expected")
        };
        assert!(ed.read.is_empty() && ed.write.is_empty() && !ed.search);
        assert_eq!(ed.input, "aws", "suggests the service it asked for");
        assert_eq!(ed.field, Field::Read);
        update(&mut s, Action::Command(Command::Enter)); // add aws
        update(&mut s, Action::Command(Command::NextField));
        for c in "gcp".chars() {
            update(&mut s, Action::Char(c));
        }
        update(&mut s, Action::Command(Command::Enter)); // add gcp to write
        update(&mut s, Action::Command(Command::NextField));
        update(&mut s, Action::Command(Command::Toggle)); // search on
        let fx = update(&mut s, Action::Command(Command::Enter)); // save
        assert_eq!(
            fx,
            vec![Effect::Approve(
                hash,
                Grants {
                    read: vec!["aws".into()],
                    write: vec!["gcp".into()],
                    search: true,
                    ..Grants::default()
                }
            )]
        );
        assert!(s.modal.is_none());
    }

    #[test]
    fn editor_backspace_edits_input_then_removes_services_and_escape_cancels() {
        let mut s = sample_state();
        update(&mut s, Action::Command(Command::Focus(3)));
        update(&mut s, Action::Command(Command::Edit));
        let Some(Modal::Editor(ed)) = &s.modal else {
            panic!()
        };
        assert_eq!(ed.read, ["aws"]);
        update(&mut s, Action::Char('x'));
        update(&mut s, Action::Backspace); // removes x
        update(&mut s, Action::Backspace); // removes aws
        let Some(Modal::Editor(ed)) = &s.modal else {
            panic!()
        };
        assert!(ed.read.is_empty());
        let hash = s.policies[0].entry.hash.clone();
        let fx = update(&mut s, Action::Command(Command::Enter));
        assert_eq!(
            fx,
            vec![Effect::SetGrants(
                hash,
                Grants {
                    read: vec![],
                    write: vec!["aws".into()],
                    search: false,
                    ..Grants::default()
                }
            )]
        );
        update(&mut s, Action::Command(Command::Edit));
        assert!(update(&mut s, Action::Command(Command::Escape)).is_empty());
        assert!(s.modal.is_none(), "escape cancels without effects");
    }

    #[test]
    fn destructive_actions_confirm_first() {
        let mut s = sample_state();
        let pending = s.pending[0].hash.clone();
        assert!(update(&mut s, Action::Command(Command::Dismiss)).is_empty());
        assert!(matches!(s.modal, Some(Modal::Confirm { .. })));
        assert!(update(&mut s, Action::Command(Command::No)).is_empty());
        assert!(s.modal.is_none());
        update(&mut s, Action::Command(Command::Dismiss));
        assert_eq!(
            update(&mut s, Action::Command(Command::Yes)),
            vec![Effect::Dismiss(pending)]
        );
        update(&mut s, Action::Command(Command::Focus(3)));
        let reg = s.policies[0].entry.hash.clone();
        update(&mut s, Action::Command(Command::Unregister));
        assert_eq!(
            update(&mut s, Action::Command(Command::Yes)),
            vec![Effect::Unregister(reg)]
        );
    }

    #[test]
    fn upgrade_previews_then_confirms_and_refuses_unchanged_binaries() {
        let mut s = sample_state();
        update(&mut s, Action::Command(Command::Focus(3)));
        // row 0 is unchanged on disk
        assert!(update(&mut s, Action::Command(Command::Upgrade)).is_empty());
        assert!(
            s.message
                .as_ref()
                .is_some_and(|m| m.1.contains("unchanged"))
        );
        update(&mut s, Action::Command(Command::Down));
        let path = s.policies[1].entry.path.display().to_string();
        assert_eq!(
            update(&mut s, Action::Command(Command::Upgrade)),
            vec![Effect::PreviewUpgrade(path.clone())]
        );
        update(
            &mut s,
            Action::UpgradePreview {
                path: path.clone(),
                old: hash('b'),
                new: hash('c'),
                size: 1234,
                mtime: "2026-11-24 10:00:00".into(),
            },
        );
        let Some(Modal::Confirm { lines, .. }) = &s.modal else {
            panic!()
        };
        assert!(lines.iter().any(|l| l.contains("bbbbbbbbbbbb")));
        assert!(lines.iter().any(|l| l.contains("cccccccccccc")));
        assert_eq!(
            update(&mut s, Action::Command(Command::Yes)),
            vec![Effect::Upgrade(path)]
        );
    }

    #[test]
    fn register_takes_a_path() {
        let mut s = sample_state();
        update(&mut s, Action::Command(Command::Register));
        assert!(
            update(&mut s, Action::Command(Command::Enter)).is_empty(),
            "empty path: nothing"
        );
        for c in "/usr/bin/tool".chars() {
            update(&mut s, Action::Char(c));
        }
        assert_eq!(
            update(&mut s, Action::Command(Command::Enter)),
            vec![Effect::Register("/usr/bin/tool".into())]
        );
    }

    #[test]
    fn filter_narrows_the_audit_and_escape_clears_it() {
        let mut s = sample_state();
        update(&mut s, Action::Command(Command::Focus(2)));
        assert_eq!(s.audit_visible().len(), 3);
        update(&mut s, Action::Command(Command::Filter));
        for c in "denied".chars() {
            update(&mut s, Action::Char(c));
        }
        // Applying the filter starts a search of the whole log.
        let fx = update(&mut s, Action::Command(Command::Enter));
        assert_eq!(s.filter, "denied");
        assert_eq!(fx, vec![Effect::Search(1, "denied".into())]);
        assert!(s.audit_rows().is_empty(), "nothing found yet");
        // Results arrive newest first, batch by batch, older batches going above.
        let mut newer = record("denied", "gcp");
        newer.id = Some("newer".into());
        let mut older = record("denied", "gcp");
        older.id = Some("older".into());
        let mut p = crate::tui::data::SearchProgress {
            records: 1000,
            bytes: 100,
            total_bytes: 1000,
            done: false,
        };
        update(&mut s, Action::SearchFound(1, vec![newer], p));
        p.done = true;
        p.bytes = 1000;
        update(&mut s, Action::SearchFound(1, vec![older], p));
        let ids: Vec<_> = s.audit_rows().iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids, [Some("older".into()), Some("newer".into())]);
        assert_eq!(s.audit_sel, 1, "following: the newest match");
        // A stale search's results are dropped.
        update(
            &mut s,
            Action::SearchFound(0, vec![record("denied", "x")], p),
        );
        assert_eq!(s.audit_rows().len(), 2);
        update(&mut s, Action::Command(Command::Enter));
        assert!(matches!(s.modal, Some(Modal::Detail(_))));
        update(&mut s, Action::Command(Command::Escape));
        assert_eq!(
            update(&mut s, Action::Command(Command::Escape)),
            vec![Effect::CancelSearch]
        );
        assert!(s.filter.is_empty() && s.search.is_none());
        assert_eq!(s.audit_rows().len(), 3);
    }

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
    fn quitting_the_embedded_broker_with_callers_asks_first() {
        let mut s = sample_state();
        s.broker.embedded = true;
        s.broker.connections = 0; // stale: the broker is asked
        assert_eq!(
            update(&mut s, Action::Command(Command::Quit)),
            vec![Effect::CheckQuit]
        );
        update(&mut s, Action::QuitChecked(2));
        assert!(!s.quit);
        assert!(matches!(s.modal, Some(Modal::Confirm { .. })));
        update(&mut s, Action::Command(Command::Yes));
        assert!(s.quit);
        let mut s = sample_state();
        s.broker.connections = 5; // stale the other way
        update(&mut s, Action::Command(Command::Quit));
        update(&mut s, Action::QuitChecked(0));
        assert!(s.quit, "nobody connected: quit at once");
        let mut s = sample_state();
        s.broker.embedded = false;
        s.broker.connections = 2;
        update(&mut s, Action::Command(Command::Quit));
        assert!(
            s.quit,
            "connected mode quits at once: the broker keeps running"
        );
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
    fn sizes_are_in_human_units() {
        assert_eq!(human_size(0), "0 bytes");
        assert_eq!(human_size(1023), "1,023 bytes");
        assert_eq!(human_size(4_194_304), "4.0 MiB (4,194,304 bytes)");
        assert_eq!(human_size(1_536), "1.5 KiB (1,536 bytes)");
        assert_eq!(human_size(3 << 30), "3.0 GiB (3,221,225,472 bytes)");
    }

    #[test]
    fn keys_follow_the_mode() {
        use ratatui::crossterm::event::{KeyEvent, KeyModifiers};
        let key = |c| Action::Key(KeyEvent::new(c, KeyModifiers::NONE));
        // In a text input, pane keys are text.
        let mut s = sample_state();
        update(&mut s, Action::Command(Command::Focus(2)));
        update(&mut s, Action::Command(Command::Filter));
        for c in ['q', 'd', '?', '1'] {
            update(&mut s, key(KeyCode::Char(c)));
        }
        assert_eq!(s.modal, Some(Modal::Filter("qd?1".into())));
        assert!(!s.quit);
        // Shift-Tab goes back a field in the editor.
        let mut s = sample_state();
        update(&mut s, Action::Command(Command::Approve));
        let field = |s: &State| match &s.modal {
            Some(Modal::Editor(ed)) => ed.field,
            _ => panic!("editor closed"),
        };
        assert_eq!(field(&s), Field::Read);
        update(&mut s, key(KeyCode::BackTab));
        assert_eq!(field(&s), Field::Search);
        update(&mut s, key(KeyCode::BackTab));
        assert_eq!(field(&s), Field::Write);
        update(&mut s, key(KeyCode::Tab));
        assert_eq!(field(&s), Field::Search);
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

    #[test]
    fn mouse_selects_panes_and_rows() {
        let mut s = sample_state();
        s.size = (120, 36);
        let l = view::layout(ratatui::layout::Rect::new(0, 0, 120, 36), &s);
        let policies = view::list_area(l.panes[2]);
        update(&mut s, Action::Click(policies.x + 2, policies.y + 1));
        assert_eq!(s.pane, Pane::Policies);
        assert_eq!(s.policy_sel, 1);
        let l = view::layout(ratatui::layout::Rect::new(0, 0, 120, 36), &s);
        let pending = view::list_area(l.panes[0]);
        update(&mut s, Action::Click(pending.x, pending.y));
        assert_eq!((s.pane, s.pending_sel), (Pane::Pending, 0));
        update(&mut s, Action::Scroll(1));
        assert_eq!(s.pending_sel, 1);
    }

    fn with_prompts(ids: &[&str]) -> (State, Vec<Vec<Effect>>) {
        let mut s = sample_state();
        s.now_ms = now_ms();
        let fx = ids
            .iter()
            .map(|id| {
                update(
                    &mut s,
                    Action::Approver(ApproverEvent::Prompt(Box::new(prompt(id)))),
                )
            })
            .collect();
        (s, fx)
    }

    fn press(s: &mut State, c: char) -> Vec<Effect> {
        let k = event::KeyEvent::new(KeyCode::Char(c), event::KeyModifiers::NONE);
        update(s, Action::Key(k))
    }

    #[test]
    fn a_prompt_takes_focus_and_rings_once() {
        let (mut s, fx) = with_prompts(&["p1"]);
        assert_eq!(fx, vec![vec![Effect::Bell]]);
        assert_eq!(
            super::super::keymap::scope(&s),
            super::super::keymap::Scope::Prompt
        );
        // An update of the same prompt (more requests waiting) does not ring again.
        let mut again = prompt("p1");
        again.waiting = 3;
        let fx = update(
            &mut s,
            Action::Approver(ApproverEvent::Prompt(Box::new(again))),
        );
        assert!(fx.is_empty());
        assert_eq!(s.prompts.len(), 1);
        assert_eq!(s.prompts[0].waiting, 3);
        // Pane keys do nothing while the prompt has the keyboard.
        assert!(press(&mut s, 'j').is_empty());
        assert_eq!(s.pending_sel, 0);
    }

    #[test]
    fn o_allows_once_and_the_next_prompt_shows() {
        let (mut s, _) = with_prompts(&["p1", "p2"]);
        let fx = press(&mut s, 'o');
        assert!(
            matches!(&fx[..], [Effect::Answer(id, Decision::Once, label)] if id == "p1" && label.contains("allowed once")),
            "{fx:?}"
        );
        assert_eq!(s.prompts.len(), 1);
        assert_eq!(s.prompts[0].id, "p2");
        // Our own answer coming back resolved says nothing more.
        update(
            &mut s,
            Action::Approver(ApproverEvent::Resolved {
                id: "p1".into(),
                outcome: "once".into(),
                by: Some("dashboard".into()),
            }),
        );
        assert!(s.answered.is_empty());
        assert_eq!(s.message, None);
    }

    #[test]
    fn n_denies_and_x_denies_and_dismisses() {
        let (mut s, _) = with_prompts(&["p1", "p2"]);
        assert!(
            matches!(&press(&mut s, 'n')[..], [Effect::Answer(id, Decision::Deny, _)] if id == "p1")
        );
        assert!(
            matches!(&press(&mut s, 'x')[..], [Effect::Answer(id, Decision::Forget, _)] if id == "p2")
        );
        assert!(s.prompts.is_empty());
        assert_eq!(
            super::super::keymap::scope(&s),
            super::super::keymap::Scope::Pane(Pane::Pending)
        );
    }

    #[test]
    fn t_asks_how_long_default_one_hour_and_validates() {
        let (mut s, _) = with_prompts(&["p1"]);
        assert!(press(&mut s, 't').is_empty());
        assert_eq!(
            s.prompt_modal,
            Some(Modal::PromptFor("p1".into(), "1h".into()))
        );
        assert_eq!(
            super::super::keymap::scope(&s),
            super::super::keymap::Scope::Input
        );
        // Edit it: 1h → 10m.
        update(&mut s, Action::Backspace);
        update(&mut s, Action::Backspace);
        for c in "10x".chars() {
            press(&mut s, c);
        }
        assert!(update(&mut s, Action::Command(Command::Enter)).is_empty());
        assert!(matches!(&s.message, Some((false, m)) if m.contains("not a duration")));
        assert!(
            s.prompt_modal.is_some(),
            "a bad duration keeps the input open"
        );
        update(&mut s, Action::Backspace);
        press(&mut s, 'm');
        let fx = update(&mut s, Action::Command(Command::Enter));
        assert_eq!(
            fx,
            vec![Effect::Answer(
                "p1".into(),
                Decision::For(std::time::Duration::from_secs(600)),
                "allowed for 10m: /home/me/bin/deploy.py (read aws)".into()
            )]
        );
        assert!(s.prompts.is_empty() && s.prompt_modal.is_none());
    }

    #[test]
    fn t_then_esc_goes_back_to_the_prompt_and_enter_defaults_to_an_hour() {
        let (mut s, _) = with_prompts(&["p1"]);
        press(&mut s, 't');
        update(&mut s, Action::Command(Command::Escape));
        assert_eq!(s.prompt_modal, None);
        assert_eq!(s.prompts.len(), 1);
        press(&mut s, 't');
        let fx = update(&mut s, Action::Command(Command::Enter));
        assert!(matches!(&fx[..], [Effect::Answer(_, Decision::For(d), _)] if d.as_secs() == 3600));
    }

    #[test]
    fn a_opens_the_editor_with_exactly_what_was_asked() {
        let (mut s, _) = with_prompts(&["p1"]);
        // A dialog the prompt interrupted stays underneath.
        s.modal = Some(Modal::Register("/opt/half-typed".into()));
        press(&mut s, 'a');
        match &s.prompt_modal {
            Some(Modal::Editor(ed)) => {
                assert_eq!(ed.goal, EditorGoal::Always("p1".into()));
                assert_eq!(
                    (ed.read.clone(), ed.write.clone(), ed.search),
                    (vec!["aws".to_string()], vec![], false)
                );
                assert_eq!(ed.path, "/home/me/bin/deploy.py");
            }
            other => panic!("{other:?}"),
        }
        // Edit: add gcp to read, then save.
        for c in "gcp".chars() {
            press(&mut s, c);
        }
        update(&mut s, Action::Command(Command::Enter));
        let fx = update(&mut s, Action::Command(Command::Enter));
        match &fx[..] {
            [Effect::Answer(id, Decision::Always(g), _)] => {
                assert_eq!(id, "p1");
                assert_eq!(g.read, vec!["aws".to_string(), "gcp".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        assert!(s.prompts.is_empty() && s.prompt_modal.is_none());
        assert_eq!(s.modal, Some(Modal::Register("/opt/half-typed".into())));
    }

    #[test]
    fn always_for_a_write_or_a_search_prefills_that() {
        let mut p = prompt("p1");
        p.action = "write".into();
        assert_eq!(asked_grants(&p).write, vec!["aws".to_string()]);
        p.action = "search".into();
        let g = asked_grants(&p);
        assert!(g.search && g.read == vec!["aws".to_string()]);
    }

    #[test]
    fn a_prompt_resolved_elsewhere_disappears_with_how_it_ended() {
        for (outcome, by, said) in [
            ("timeout", None, "timed out"),
            ("withdrawn", None, "withdrawn"),
            (
                "deny",
                Some("dashboard pid 77"),
                "answered \"deny\" by dashboard pid 77",
            ),
        ] {
            let (mut s, _) = with_prompts(&["p1", "p2"]);
            press(&mut s, 't'); // its dialog closes with it
            let fx = update(
                &mut s,
                Action::Approver(ApproverEvent::Resolved {
                    id: "p1".into(),
                    outcome: outcome.into(),
                    by: by.map(str::to_string),
                }),
            );
            assert!(fx.is_empty());
            assert_eq!(s.prompts.len(), 1, "{outcome}");
            assert_eq!(s.prompt_modal, None, "{outcome}");
            let (_, msg) = s.message.clone().expect("a message");
            assert!(msg.contains(said) && msg.contains("deploy.py"), "{msg}");
        }
    }

    #[test]
    fn ctrl_c_during_a_prompt_quits_without_a_hidden_question() {
        let (mut s, _) = with_prompts(&["p1"]);
        let k = event::KeyEvent::new(KeyCode::Char('c'), event::KeyModifiers::CONTROL);
        assert!(update(&mut s, Action::Key(k)).is_empty());
        assert!(s.quit);
        let (mut s, _) = with_prompts(&["p1"]);
        assert!(press(&mut s, 'q').is_empty(), "q is not an answer");
        assert!(!s.quit && s.prompts.len() == 1);
    }

    #[test]
    fn losing_the_broker_drops_its_prompts() {
        let (mut s, _) = with_prompts(&["p1", "p2"]);
        update(&mut s, Action::ApproverLost);
        assert!(s.prompts.is_empty());
        assert!(matches!(&s.message, Some((false, m)) if m.contains("2 prompt(s)")));
    }

    #[test]
    fn the_clock_counts_prompts_down() {
        let (mut s, _) = with_prompts(&["p1"]);
        assert_eq!(
            view::seconds_left(s.prompts[0].deadline_ms, s.now_ms),
            Some(25)
        );
        update(&mut s, Action::Clock(now_ms() + 10_500));
        assert_eq!(
            view::seconds_left(s.prompts[0].deadline_ms, s.now_ms),
            Some(15)
        );
        update(&mut s, Action::Clock(now_ms() + 40_000));
        assert_eq!(
            view::seconds_left(s.prompts[0].deadline_ms, s.now_ms),
            Some(0)
        );
    }
}
