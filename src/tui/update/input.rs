//! The one-line text inputs: the audit filter, the path to register, and how long a prompt's
//! "allow for a time" lasts. Typed characters and backspace land here (and in the editor's
//! input).

use super::super::action::{Command, Effect};
use super::super::state::{Field, Modal, Search, State};
use super::panes::follow;
use crate::server::approval::Decision;

/// Opens the filter input with the current filter.
pub(super) fn open_filter(state: &mut State) -> Vec<Effect> {
    state.modal = Some(Modal::Filter(state.filter.clone()));
    vec![]
}

/// Opens the register input, empty.
pub(super) fn open_register(state: &mut State) -> Vec<Effect> {
    state.modal = Some(Modal::Register(String::new()));
    vec![]
}

/// Clears the filter (and stops its search) with no dialog open.
pub(super) fn clear_filter(state: &mut State) -> Vec<Effect> {
    let searching = state.search.take().is_some();
    state.filter.clear();
    follow(state);
    if searching {
        vec![Effect::CancelSearch]
    } else {
        vec![]
    }
}

/// The filter input: Enter applies `text` (a non-empty filter searches the whole log).
pub(super) fn filter_command(state: &mut State, text: String, c: Command) -> Vec<Effect> {
    match c {
        Command::Enter => apply_filter(state, text),
        Command::Escape | Command::Quit => vec![],
        _ => {
            state.modal = Some(Modal::Filter(text));
            vec![]
        }
    }
}

/// Makes `text` the filter and starts a search of the whole log for it (or cancels the search
/// when it is empty).
fn apply_filter(state: &mut State, text: String) -> Vec<Effect> {
    state.filter = text;
    state.audit_sel = 0;
    state.follow = true;
    let fx = if state.filter.is_empty() {
        state.search = None;
        vec![Effect::CancelSearch]
    } else {
        state.search_gen += 1;
        state.search = Some(Search {
            generation: state.search_gen,
            matches: vec![],
            progress: Default::default(),
        });
        vec![Effect::Search(state.search_gen, state.filter.clone())]
    };
    follow(state);
    fx
}

/// The register input: Enter registers a non-empty path.
pub(super) fn register_command(state: &mut State, path: String, c: Command) -> Vec<Effect> {
    match c {
        Command::Enter if !path.trim().is_empty() => vec![Effect::Register(path.trim().into())],
        Command::Escape | Command::Quit => vec![],
        _ => {
            state.modal = Some(Modal::Register(path));
            vec![]
        }
    }
}

/// The duration input of prompt `id`: Enter answers "allow for" `text` when it is a duration
/// longer than zero, else says why and stays open.
pub(super) fn duration_command(
    state: &mut State,
    id: String,
    text: String,
    c: Command,
) -> Vec<Effect> {
    match c {
        Command::Enter => match crate::policy::parse_duration(text.trim()) {
            Ok(secs) if secs > 0 => super::prompt::answer(
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
    }
}

/// A typed character, into the open input (the editor's search field takes none).
pub(super) fn type_char(state: &mut State, c: char) {
    if c.is_control() {
        return;
    }
    match &mut state.modal {
        Some(Modal::Filter(t) | Modal::Register(t) | Modal::PromptFor(_, t)) => t.push(c),
        Some(Modal::Editor(ed)) if !ed.field.is_toggle() => ed.input.push(c),
        _ => {}
    }
}

/// Backspace: deletes a character; in the editor with an empty input, the field's last service
/// (or search).
pub(super) fn backspace(state: &mut State) {
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
            Field::Via => {
                ed.via.pop();
            }
            Field::For => ed.expires = None,
            Field::Search => ed.search = false,
            Field::Once => ed.once = false,
            Field::Confirm => ed.confirm = false,
        },
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::tui::action::{Action, Command, Effect};
    use crate::tui::state::Modal;
    use crate::tui::test_support::*;
    use crate::tui::update::update;

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
        let mut p = crate::tui::state::SearchProgress {
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
}
