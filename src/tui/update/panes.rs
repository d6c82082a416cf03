//! The three panes with no dialog open: focus, selection, following the audit tail, and the
//! mouse.

use super::super::action::Effect;
use super::super::state::{Pane, State};
use super::super::view;

/// Focuses the pane `step` places on in tab order (1: next, 2: previous).
pub(super) fn cycle(state: &mut State, step: usize) -> Vec<Effect> {
    let i = Pane::ALL.iter().position(|p| *p == state.pane).unwrap_or(0);
    state.pane = Pane::ALL[(i + step) % 3];
    vec![]
}

/// Focuses pane `n` (1, 2, 3); another number changes nothing.
pub(super) fn focus(state: &mut State, n: u8) -> Vec<Effect> {
    if let Some(p) = Pane::ALL.get(usize::from(n.saturating_sub(1))) {
        state.pane = *p;
    }
    vec![]
}

/// Moves the focused pane's selection by `delta` rows; moving up past the first audit record
/// loads an older page when there is one.
pub(super) fn move_sel(state: &mut State, delta: i64) -> Vec<Effect> {
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

/// First row; already there in the audit pane, an older page loads.
pub(super) fn top(state: &mut State) -> Vec<Effect> {
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

/// Last row; in the audit pane that follows the tail again.
pub(super) fn bottom(state: &mut State) -> Vec<Effect> {
    let len = len_of(state, state.pane);
    *sel_mut(state, state.pane) = len.saturating_sub(1);
    if state.pane == Pane::Audit {
        state.follow = true;
    }
    vec![]
}

/// Following the audit tail on or off.
pub(super) fn toggle_follow(state: &mut State) -> Vec<Effect> {
    state.follow = !state.follow;
    follow(state);
    vec![]
}

/// The mouse wheel moves the selection when nothing covers the panes (it never pages in older
/// records).
pub(super) fn scroll(state: &mut State, delta: i8) -> Vec<Effect> {
    if state.modal.is_none() && !state.prompt_focus() {
        move_sel(state, i64::from(delta));
    }
    vec![]
}

/// A left click focuses the pane under it and selects the row under it.
pub(super) fn click(state: &mut State, x: u16, y: u16) -> Vec<Effect> {
    if state.modal.is_some() || state.prompt_focus() {
        return vec![];
    }
    let area = ratatui::layout::Rect::new(0, 0, state.size.0, state.size.1);
    let l = view::layout(area, state);
    for (pane, rect) in Pane::ALL.iter().zip(l.panes) {
        if rect.contains(ratatui::layout::Position::new(x, y)) {
            state.pane = *pane;
            click_row(state, *pane, view::list_area(rect), y);
        }
    }
    vec![]
}

/// Selects the row at screen line `y` of `pane`'s list, when there is one.
fn click_row(state: &mut State, pane: Pane, list: ratatui::layout::Rect, y: u16) {
    if y < list.y || y >= list.y + list.height {
        return;
    }
    let len = len_of(state, pane);
    let sel = *sel_mut(state, pane);
    let offset = view::scroll_offset(sel, len, list.height as usize);
    let i = offset + usize::from(y - list.y);
    if i < len {
        *sel_mut(state, pane) = i;
        if pane == Pane::Audit {
            state.follow = i + 1 == len;
        }
    }
}

/// `sel` kept inside a list of `len` rows.
pub(super) fn clamp(sel: usize, len: usize) -> usize {
    sel.min(len.saturating_sub(1))
}

/// Keeps the audit selection on the newest row while following, else inside the rows.
pub(super) fn follow(state: &mut State) {
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

#[cfg(test)]
mod tests {
    use crate::tui::action::{Action, Command};
    use crate::tui::state::Pane;
    use crate::tui::test_support::*;
    use crate::tui::update::update;
    use crate::tui::view;

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
}
