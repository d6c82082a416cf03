//! The reducer: `update(state, action) -> effects`. Pure — no I/O, no clock, no terminal — so
//! every interaction is unit-tested by feeding actions and checking state and effects.
//!
//! This module dispatches; the work is split by mode: `panes` (no dialog open), `viewer`
//! (help and detail overlays), `editor` (the permission editor), `confirm` (yes/no
//! questions), `input` (one-line text inputs), `prompt` (the broker's live-approval
//! prompts) and `results` (what effects and the broker report back).

mod confirm;
mod editor;
mod input;
mod panes;
mod passphrase;
mod prompt;
mod results;
mod secrets;
mod viewer;

use super::action::{Action, Command, Effect};
use super::state::{Modal, Pane, State};
use ratatui::crossterm::event::{self, KeyCode};

pub use confirm::human_size;
use passphrase::gate;
pub use passphrase::widens;
pub use prompt::{asked, asked_grants, pending_about};

/// Applies `action` to `state` and returns the effects to run. While a vault is served, an
/// effect that widens access waits behind the passphrase dialog (`passphrase`).
pub fn update(state: &mut State, action: Action) -> Vec<Effect> {
    let fx = apply(state, action);
    gate(state, fx)
}

fn apply(state: &mut State, action: Action) -> Vec<Effect> {
    if matches!(action, Action::Key(_) | Action::Click(..)) {
        // The person has read the first screen.
        state.notice = None;
    }
    match action {
        Action::Key(k) => match key_action(state, k) {
            Some(a) => update(state, a),
            None => vec![],
        },
        Action::Command(c) if state.passphrase.is_some() => passphrase::command(state, c),
        Action::Command(c) if state.prompt_focus() => prompt::command(state, c),
        Action::Command(c) if state.secrets.is_some() => secrets::command(state, c),
        Action::Command(c) => command(state, c),
        Action::Char(c) if state.passphrase.is_some() => {
            passphrase::type_char(state, c);
            vec![]
        }
        Action::Backspace if state.passphrase.is_some() => {
            passphrase::backspace(state);
            vec![]
        }
        Action::Char(c) => {
            prompt::in_prompt_modal(state, |s| input::type_char(s, c));
            vec![]
        }
        Action::Backspace => {
            prompt::in_prompt_modal(state, input::backspace);
            vec![]
        }
        Action::PresenceNeeded { locked } => passphrase::needed(state, locked),
        Action::Passphrase(o) => passphrase::outcome(state, o),
        Action::Answered { id, error } => passphrase::answered(state, id, error),
        Action::Click(x, y) => panes::click(state, x, y),
        Action::Scroll(d) => panes::scroll(state, d),
        Action::Resize(w, h) => {
            state.size = (w, h);
            vec![]
        }
        Action::Clock(ms) => {
            state.now_ms = ms;
            secrets::tick(state, ms);
            vec![]
        }
        Action::SecretsLoaded(list) => secrets::loaded(state, list),
        Action::SecretRevealed(service, target, value) => {
            secrets::revealed(state, service, target, value);
            vec![]
        }
        Action::Approver(ev) => prompt::approver_event(state, ev),
        Action::ApproverLost => prompt::approver_lost(state),
        Action::PendingLoaded(entries) => results::pending_loaded(state, entries),
        Action::PoliciesLoaded(rows) => results::policies_loaded(state, rows),
        Action::DiskChecked(now) => {
            results::disk_checked(state, now);
            vec![]
        }
        Action::AuditLoaded(records, more) => results::audit_loaded(state, records, more),
        Action::SearchFound(generation, found, progress) => {
            results::search_found(state, generation, found, progress)
        }
        Action::AuditAppended(records) => results::audit_appended(state, records),
        Action::Status {
            backend,
            connections,
            requests,
            pid,
            locked,
        } => results::status(state, backend, connections, requests, pid, locked),
        Action::VaultLocked(locked) => {
            state.broker.store = Some(super::state::StoreGuard::vault(locked));
            if let Some(v) = &mut state.vault {
                v.locked = locked;
            }
            vec![]
        }
        Action::StatusFailed(why) => results::status_failed(state, why),
        Action::Tick => results::tick(state),
        Action::FileChanged(file) => results::file_changed(file),
        Action::LoadFailed(why) => results::show(state, false, why),
        Action::Log(warning, text) => results::show(state, !warning, text),
        Action::LastUses(index) => {
            state.last_uses = index;
            vec![]
        }
        Action::Integrity(text) => {
            state.integrity = Some(text);
            vec![]
        }
        Action::PolicyEdit(edit) => {
            if state.policy_edit.is_none() && edit.is_some() {
                state.message = Some((
                    false,
                    "config.json was edited outside keychain-auth: what it added or changed is not served (Policies, D shows it)".into(),
                ));
            }
            state.policy_edit = edit;
            vec![]
        }
        Action::Done(ok, msg) => results::done(state, ok, msg),
        Action::UpgradePreview {
            path,
            old,
            new,
            size,
            mtime,
        } => confirm::ask_upgrade(state, path, &old, &new, size, &mtime),
        Action::QuitChecked(connections) => confirm::quit_checked(state, connections),
    }
}

/// Maps a key to an action in the current context: the keymap for the open modal or pane, and
/// text input for modals that take text.
pub fn key_action(state: &State, key: event::KeyEvent) -> Option<Action> {
    use super::keymap::{self, Scope};
    let scope = keymap::scope(state);
    // Text scopes have only their own bindings: every other key is text.
    let text_modal = matches!(scope, Scope::Editor | Scope::Input | Scope::Passphrase);
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

/// A command while no prompt is shown: to the open dialog, else to the focused pane.
fn command(state: &mut State, c: Command) -> Vec<Effect> {
    if state.modal.is_some() {
        return modal_command(state, c);
    }
    state.message = None;
    match c {
        Command::Quit => confirm::quit(state),
        Command::Help => viewer::open_help(state),
        Command::NextPane => panes::cycle(state, 1),
        Command::PrevPane => panes::cycle(state, 2),
        Command::Focus(n) => panes::focus(state, n),
        Command::Down => panes::move_sel(state, 1),
        Command::Up => panes::move_sel(state, -1),
        Command::Top => panes::top(state),
        Command::Bottom => panes::bottom(state),
        Command::Follow => panes::toggle_follow(state),
        Command::Reload => vec![
            Effect::LoadPending,
            Effect::LoadPolicies,
            Effect::LoadAuditNew,
            Effect::LoadStatus,
        ],
        Command::Enter => match state.pane {
            Pane::Pending => editor::open_approve(state),
            Pane::Policies => editor::open_edit(state),
            Pane::Audit => viewer::open_detail(state),
        },
        Command::Escape => input::clear_filter(state),
        Command::Filter => input::open_filter(state),
        Command::Register => input::open_register(state),
        Command::Approve => editor::open_approve(state),
        Command::Edit => editor::open_edit(state),
        Command::Dismiss => confirm::ask_dismiss(state),
        Command::Unregister => confirm::ask_unregister(state),
        Command::Upgrade => confirm::upgrade(state),
        Command::ShowEdit => viewer::open_policy_edit(state),
        Command::ShowBinary => viewer::open_binary(state),
        Command::Presence => passphrase::open_presence(state),
        Command::Secrets => secrets::open(state),
        Command::Unlock
        | Command::Reveal
        | Command::Hide
        | Command::NextField
        | Command::PrevField
        | Command::PageDown
        | Command::PageUp
        | Command::Toggle
        | Command::Yes
        | Command::No
        | Command::AllowOnce
        | Command::AllowFor
        | Command::AllowAlways
        | Command::AllowBoth
        | Command::Deny
        | Command::Forget => vec![],
    }
}

/// A command for the open dialog. The dialog is taken out of the state; each mode puts it back
/// unless the command closes it.
fn modal_command(state: &mut State, c: Command) -> Vec<Effect> {
    let Some(modal) = state.modal.take() else {
        return vec![];
    };
    match modal {
        Modal::Help | Modal::Detail(_) | Modal::PolicyEdit | Modal::Binary(_) => {
            viewer::command(state, modal, c)
        }
        Modal::Filter(text) => input::filter_command(state, text, c),
        Modal::Register(path) => input::register_command(state, path, c),
        Modal::PromptFor(id, text) => input::duration_command(state, id, text, c),
        Modal::Confirm { what, lines } => confirm::command(state, what, lines, c),
        Modal::Editor(ed) => editor::command(state, ed, c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::state::Field;
    use crate::tui::test_support::*;

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
        assert_eq!(field(&s), Field::Confirm);
        update(&mut s, key(KeyCode::BackTab));
        assert_eq!(field(&s), Field::Once);
        update(&mut s, key(KeyCode::Tab));
        assert_eq!(field(&s), Field::Confirm);
        update(&mut s, key(KeyCode::Tab));
        assert_eq!(field(&s), Field::Read);
    }
}
