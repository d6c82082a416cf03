//! The read-only overlays: the help, an audit record's detail, an edit of config.json and a
//! registered binary in full. They scroll; any other key closes them.

use super::super::action::{Command, Effect};
use super::super::state::{Modal, State};
use super::super::view;

/// Opens the help overlay at its top.
pub(super) fn open_help(state: &mut State) -> Vec<Effect> {
    state.modal = Some(Modal::Help);
    state.scroll = 0;
    vec![]
}

/// Opens the selected audit record's detail.
pub(super) fn open_detail(state: &mut State) -> Vec<Effect> {
    if let Some(r) = state.audit_rows().get(state.audit_sel) {
        state.modal = Some(Modal::Detail(Box::new((*r).clone())));
        state.scroll = 0;
    }
    vec![]
}

/// Opens the difference of an edit of config.json made outside keychain-auth; says so when
/// there is none.
pub(super) fn open_policy_edit(state: &mut State) -> Vec<Effect> {
    if state.policy_edit.is_some() {
        state.modal = Some(Modal::PolicyEdit);
        state.scroll = 0;
    } else {
        state.message = Some((
            true,
            "config.json matches its seal: no edit made outside keychain-auth".into(),
        ));
    }
    vec![]
}

/// Opens the selected registered binary in full (nothing when none is registered).
pub(super) fn open_binary(state: &mut State) -> Vec<Effect> {
    if let Some(row) = state.policies.get(state.policy_sel) {
        state.modal = Some(Modal::Binary(row.entry.hash.clone()));
        state.scroll = 0;
    }
    vec![]
}

/// Scrolls the overlay `modal` (taken out of the state); anything else leaves it closed.
pub(super) fn command(state: &mut State, modal: Modal, c: Command) -> Vec<Effect> {
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
