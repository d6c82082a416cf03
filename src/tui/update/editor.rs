//! The permission editor: read and write services and search, for approving a pending caller,
//! editing a registered binary, or answering a prompt "always".

use super::super::action::{Command, Effect};
use super::super::state::{Editor, EditorGoal, Field, Modal, State};
use super::prompt::{answer, pending_about};
use crate::admin::Grants;
use crate::server::approval::Decision;

/// Opens the editor for the selected pending caller: no grants yet, the service it asked for
/// typed in, in the field of what it asked to do.
pub(super) fn open_approve(state: &mut State) -> Vec<Effect> {
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
            via: vec![],
            expires: None,
            once: false,
            confirm: false,
            field,
            input: e.last_service.clone(),
        }));
    }
    vec![]
}

/// Opens the editor on the selected registered binary's permissions.
pub(super) fn open_edit(state: &mut State) -> Vec<Effect> {
    if let Some(row) = state.policies.get(state.policy_sel) {
        let e = &row.entry;
        state.modal = Some(Modal::Editor(Editor {
            goal: EditorGoal::Edit(e.hash.clone()),
            path: e.path.display().to_string(),
            about: vec![],
            read: e.allowed_read_services.iter().cloned().collect(),
            write: e.allowed_write_services.iter().cloned().collect(),
            search: e.can_search,
            via: e.launched_by.iter().map(ToString::to_string).collect(),
            expires: None,
            once: false,
            confirm: false,
            field: Field::Read,
            input: String::new(),
        }));
    }
    vec![]
}

/// A command for the editor `ed` (taken out of the state).
pub(super) fn command(state: &mut State, mut ed: Editor, c: Command) -> Vec<Effect> {
    match c {
        Command::Escape | Command::Quit => return vec![],
        Command::NextField | Command::PrevField => {
            let order = Field::ORDER;
            let i = order.iter().position(|f| *f == ed.field).unwrap_or(0);
            let step = if c == Command::NextField {
                1
            } else {
                order.len() - 1
            };
            ed.field = order[(i + step) % order.len()];
        }
        Command::Toggle => match ed.field {
            Field::Search => ed.search = !ed.search,
            Field::Once => ed.once = !ed.once,
            Field::Confirm => ed.confirm = !ed.confirm,
            _ => ed.input.push(' '),
        },
        Command::Enter => {
            let input = ed.input.trim().to_string();
            if input.is_empty() {
                return save(state, ed);
            }
            match ed.field {
                Field::For => match crate::policy::parse_duration(&input) {
                    Ok(_) => {
                        ed.expires = Some(input);
                        ed.input.clear();
                    }
                    Err(e) => state.message = Some((false, e.to_string())),
                },
                _ => add_item(&mut ed, input),
            }
        }
        _ => {}
    }
    state.modal = Some(Modal::Editor(ed));
    vec![]
}

/// Adds the typed service (or launcher) to the focused field's list (sorted, once) and clears
/// the input.
fn add_item(ed: &mut Editor, item: String) {
    let list = match ed.field {
        Field::Read => Some(&mut ed.read),
        Field::Write => Some(&mut ed.write),
        Field::Via => Some(&mut ed.via),
        Field::Search | Field::For | Field::Once | Field::Confirm => None,
    };
    if let Some(list) = list
        && !list.contains(&item)
    {
        list.push(item);
        list.sort();
    }
    ed.input.clear();
}

/// Enter on an empty input: the editor closes and its grants go where it was opened for.
fn save(state: &mut State, ed: Editor) -> Vec<Effect> {
    let expires_at = ed
        .expires
        .as_deref()
        .and_then(|d| crate::policy::parse_duration(d).ok())
        .and_then(|secs| i64::try_from(secs.saturating_mul(1000)).ok())
        .and_then(|ms| chrono::DateTime::from_timestamp_millis(state.now_ms.saturating_add(ms)));
    let grants = Grants {
        read: ed.read,
        write: ed.write,
        search: ed.search,
        via: ed.via,
        terms: crate::policy::GrantTerms {
            expires_at,
            uses_left: ed.once.then_some(1),
            confirm: ed.confirm,
        },
        ..Grants::default()
    };
    match ed.goal {
        EditorGoal::Approve(h) => vec![Effect::Approve(h, grants)],
        EditorGoal::Edit(h) => vec![Effect::SetGrants(h, grants)],
        EditorGoal::Always(id) => {
            // Our own dialog is closed by now; the prompt goes with it.
            answer(state, &id, Decision::Always(grants))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::admin::Grants;
    use crate::tui::action::{Action, Command, Effect};
    use crate::tui::state::{Field, Modal};
    use crate::tui::test_support::*;
    use crate::tui::update::update;

    #[test]
    fn the_editor_sets_launch_rules_and_terms() {
        let mut s = sample_state();
        let hash = s.pending[0].hash.clone();
        update(&mut s, Action::Command(Command::Approve));
        update(&mut s, Action::Command(Command::Enter)); // read aws
        let field = |s: &crate::tui::state::State| match &s.modal {
            Some(Modal::Editor(ed)) => ed.field,
            _ => panic!("editor closed"),
        };
        while field(&s) != Field::Via {
            update(&mut s, Action::Command(Command::NextField));
        }
        for c in "/usr/bin/git".chars() {
            update(&mut s, Action::Char(c));
        }
        update(&mut s, Action::Command(Command::Enter));
        update(&mut s, Action::Command(Command::NextField));
        assert_eq!(field(&s), Field::For);
        // Not a duration: said, and nothing set.
        for c in "soon".chars() {
            update(&mut s, Action::Char(c));
        }
        update(&mut s, Action::Command(Command::Enter));
        assert!(
            s.message.as_ref().is_some_and(|(ok, _)| !ok),
            "{:?}",
            s.message
        );
        let Some(Modal::Editor(ed)) = &mut s.modal else {
            panic!("editor closed")
        };
        assert_eq!(ed.expires, None);
        ed.input.clear();
        for c in "2h".chars() {
            update(&mut s, Action::Char(c));
        }
        update(&mut s, Action::Command(Command::Enter));
        update(&mut s, Action::Command(Command::NextField));
        assert_eq!(field(&s), Field::Once);
        update(&mut s, Action::Char('x')); // a toggle takes no typing
        update(&mut s, Action::Command(Command::Toggle));
        let fx = update(&mut s, Action::Command(Command::Enter)); // save
        let expires = chrono::DateTime::from_timestamp_millis(s.now_ms + 2 * 3600 * 1000);
        assert_eq!(
            fx,
            vec![Effect::Approve(
                hash,
                Grants {
                    read: vec!["aws".into()],
                    via: vec!["/usr/bin/git".into()],
                    terms: crate::policy::GrantTerms {
                        expires_at: expires,
                        uses_left: Some(1),
                        confirm: false,
                    },
                    ..Grants::default()
                }
            )]
        );
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
}
