//! Drawing: pure functions from [`State`] to a frame. Nothing here changes state or does I/O;
//! the layout helpers are shared with the reducer for mouse hit-testing.

use super::keymap::{self, KEYMAP, Scope};
use super::state::{Field, Modal, OnDisk, Pane, State};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Cell, Clear, Paragraph, Row, Table, TableState, Wrap};

/// Where everything goes.
#[derive(Debug, Clone, Copy)]
pub struct Areas {
    /// The status bar.
    pub status: Rect,
    /// Pending, Audit, Policies.
    pub panes: [Rect; 3],
    /// The hint bar.
    pub hints: Rect,
}

/// Status bar on top, hint bar at the bottom, the three panes stacked between; the focused
/// pane gets twice the height of the others.
pub fn layout(area: Rect, focused: Pane) -> Areas {
    let [status, body, hints] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let weight = |p: Pane| if p == focused { 2 } else { 1 };
    let [a, b, c] = Layout::vertical([
        Constraint::Fill(weight(Pane::Pending)),
        Constraint::Fill(weight(Pane::Audit)),
        Constraint::Fill(weight(Pane::Policies)),
    ])
    .areas(body);
    Areas {
        status,
        panes: [a, b, c],
        hints,
    }
}

/// The rows of a pane's list: inside the border, below the header row.
pub fn list_area(pane: Rect) -> Rect {
    let inner = Block::bordered().inner(pane);
    Rect {
        y: inner.y.saturating_add(1),
        height: inner.height.saturating_sub(1),
        ..inner
    }
}

/// The first visible row so that `sel` stays on screen (selection kept at the bottom edge).
pub fn scroll_offset(sel: usize, len: usize, height: usize) -> usize {
    if height == 0 || len <= height {
        return 0;
    }
    sel.saturating_sub(height - 1).min(len - height)
}

/// Draws the whole dashboard.
pub fn draw(frame: &mut Frame<'_>, state: &State) {
    let areas = layout(frame.area(), state.pane);
    status_bar(frame, areas.status, state);
    pending(frame, areas.panes[0], state);
    audit(frame, areas.panes[1], state);
    policies(frame, areas.panes[2], state);
    hint_bar(frame, areas.hints, state);
    if let Some(m) = &state.modal {
        modal(frame, state, m);
    }
}

fn status_bar(frame: &mut Frame<'_>, area: Rect, s: &State) {
    let mode = if s.broker.embedded {
        Span::styled(" EMBEDDED broker ", Style::new().black().on_yellow().bold())
    } else {
        Span::styled(" CONNECTED ", Style::new().black().on_green().bold())
    };
    let mut spans = vec![
        Span::styled(" keychain-auth ", Style::new().bold().reversed()),
        mode,
        Span::raw(format!(
            " backend {} · {} conn · {} req · {} pending · {} binaries · pid {} · {}",
            s.broker.backend,
            s.broker.connections,
            s.broker.requests,
            s.pending.len(),
            s.policies.len(),
            s.broker.pid,
            s.broker.socket,
        )),
    ];
    if !s.filter.is_empty() {
        spans.push(Span::styled(
            format!(" · filter: {}", s.filter),
            Style::new().cyan(),
        ));
    }
    frame.render_widget(Line::from(spans), area);
}

fn hint_bar(frame: &mut Frame<'_>, area: Rect, s: &State) {
    if let Some((ok, msg)) = &s.message {
        let style = if *ok {
            Style::new().green()
        } else {
            Style::new().red().bold()
        };
        frame.render_widget(Line::styled(format!(" {msg}"), style), area);
        return;
    }
    let scope = match &s.modal {
        Some(Modal::Editor(_)) => Scope::Editor,
        Some(Modal::Confirm { .. }) => Scope::Confirm,
        _ => Scope::Pane(s.pane),
    };
    let mut spans = vec![];
    for b in keymap::hints(scope) {
        spans.push(Span::styled(
            format!(" {} ", b.label),
            Style::new().black().on_gray(),
        ));
        spans.push(Span::raw(format!(" {} ", b.desc)));
    }
    frame.render_widget(Line::from(spans), area);
}

fn pane_block(title: &str, n: u8, focused: bool, extra: String) -> Block<'static> {
    let style = if focused {
        Style::new().cyan().bold()
    } else {
        Style::new().dark_gray()
    };
    Block::bordered()
        .border_type(if focused {
            BorderType::Thick
        } else {
            BorderType::Plain
        })
        .border_style(style)
        .title(Line::styled(format!(" {n} {title} "), style))
        .title(Line::styled(extra, Style::new().gray()).right_aligned())
}

/// Below this width, columns marked secondary are left out.
const NARROW: u16 = 110;

/// A table column: header, width, and whether it is dropped on narrow terminals.
type Column<'a> = (&'a str, Constraint, bool);

#[allow(clippy::too_many_arguments)]
fn table_in<'a>(
    frame: &mut Frame<'_>,
    area: Rect,
    block: Block<'a>,
    columns: &[Column<'a>],
    cells: Vec<Vec<Cell<'a>>>,
    sel: usize,
    focused: bool,
    empty: &'a str,
) {
    let keep: Vec<bool> = columns
        .iter()
        .map(|(_, _, secondary)| !secondary || area.width >= NARROW)
        .collect();
    let header: Vec<&str> = columns
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(c, _)| c.0)
        .collect();
    let widths: Vec<Constraint> = columns
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(c, _)| c.1)
        .collect();
    let rows: Vec<Row<'a>> = cells
        .into_iter()
        .map(|row| {
            Row::new(
                row.into_iter()
                    .zip(&keep)
                    .filter(|(_, k)| **k)
                    .map(|(c, _)| c),
            )
        })
        .collect();
    let len = rows.len();
    if len == 0 {
        let inner = block.inner(area);
        frame.render_widget(block, area);
        frame.render_widget(Paragraph::new(empty).dark_gray().italic(), inner);
        return;
    }
    let height = list_area(area).height as usize;
    let mut ts = TableState::default()
        .with_selected(Some(sel))
        .with_offset(scroll_offset(sel, len, height));
    let highlight = if focused {
        Style::new()
            .bg(Color::Blue)
            .fg(Color::White)
            .add_modifier(Modifier::BOLD)
    } else {
        Style::new().bg(Color::DarkGray)
    };
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(Style::new().bold().underlined()))
        .block(block)
        .row_highlight_style(highlight);
    frame.render_stateful_widget(table, area, &mut ts);
}

fn time(ts: &chrono::DateTime<chrono::Utc>) -> String {
    ts.format("%m-%d %H:%M:%S").to_string()
}

fn pending(frame: &mut Frame<'_>, area: Rect, s: &State) {
    let focused = s.pane == Pane::Pending;
    let rows = s
        .pending
        .iter()
        .map(|e| {
            let path = match &e.changed_from {
                Some(old) => Line::from(vec![
                    Span::raw(e.path.display().to_string()),
                    Span::styled(
                        format!(" (changed version of {})", old.short()),
                        Style::new().yellow().bold(),
                    ),
                ]),
                None => Line::raw(e.path.display().to_string()),
            };
            vec![
                Cell::from(e.hash.short().to_string()),
                Cell::from(path),
                Cell::from(format!("{} {}", e.last_action, e.last_service)),
                Cell::from(e.attempts.to_string()),
                Cell::from(time(&e.first_seen)),
                Cell::from(time(&e.last_seen)),
                Cell::from(e.argv.join(" ")).dark_gray(),
            ]
        })
        .collect();
    table_in(
        frame,
        area,
        pane_block(
            "Pending",
            1,
            focused,
            format!(" {} waiting ", s.pending.len()),
        ),
        &[
            ("hash", Constraint::Length(12), false),
            ("path", Constraint::Fill(2), false),
            ("asked", Constraint::Length(14), false),
            ("tries", Constraint::Length(5), false),
            ("first seen", Constraint::Length(14), true),
            ("last seen", Constraint::Length(14), false),
            ("argv", Constraint::Fill(1), true),
        ],
        rows,
        s.pending_sel,
        focused,
        "No caller is waiting. Unknown binaries that call the broker appear here.",
    );
}

/// The colour of an audit status.
fn status_style(status: Option<&str>) -> Style {
    match status {
        Some("success") => Style::new().green(),
        Some("denied") => Style::new().red().bold(),
        Some("error") => Style::new().yellow(),
        _ => Style::new().cyan(),
    }
}

fn audit(frame: &mut Frame<'_>, area: Rect, s: &State) {
    let focused = s.pane == Pane::Audit;
    let visible = s.audit_visible();
    let rows = visible
        .iter()
        .map(|&i| {
            let r = &s.audit[i];
            let what = match (&r.action, &r.service) {
                (Some(a), Some(svc)) => format!("{a} {svc}"),
                (Some(a), None) => a.clone(),
                _ => String::new(),
            };
            let status = r.status.clone().unwrap_or_else(|| r.event.clone());
            let detail = match (&r.reason, r.targets.is_empty()) {
                (Some(reason), _) => reason.clone(),
                (None, false) => r.targets.join(","),
                (None, true) => r.message.clone().unwrap_or_default(),
            };
            let who = r
                .path
                .as_deref()
                .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
                .unwrap_or_else(|| r.source.clone());
            vec![
                Cell::from(r.ts.get(5..19).unwrap_or(&r.ts).replace('T', " ")),
                Cell::from(status).style(status_style(r.status.as_deref())),
                Cell::from(who),
                Cell::from(what),
                Cell::from(detail),
            ]
        })
        .collect();
    let extra = format!(
        " {}{} records{}{} ",
        if s.audit_more_before { "… " } else { "" },
        visible.len(),
        if s.follow { " · following" } else { "" },
        s.integrity
            .as_deref()
            .map_or_else(String::new, |i| format!(" · {i}"))
    );
    table_in(
        frame,
        area,
        pane_block("Audit", 2, focused, extra),
        &[
            ("time", Constraint::Length(14), false),
            ("status", Constraint::Length(9), false),
            ("binary", Constraint::Length(16), false),
            ("what", Constraint::Length(16), false),
            ("detail", Constraint::Fill(1), false),
        ],
        rows,
        s.audit_sel,
        focused,
        "No audit records yet.",
    );
}

fn policies(frame: &mut Frame<'_>, area: Rect, s: &State) {
    let focused = s.pane == Pane::Policies;
    let rows = s
        .policies
        .iter()
        .map(|row| {
            let e = &row.entry;
            let (state, style) = match &row.on_disk {
                OnDisk::Ok => ("ok".to_string(), Style::new().green()),
                OnDisk::Changed(h) => (
                    format!("changed → {}", &h.short()[..8]),
                    Style::new().yellow().bold(),
                ),
                OnDisk::Missing => ("missing".to_string(), Style::new().red()),
                OnDisk::Unknown => ("…".to_string(), Style::new().dark_gray()),
            };
            let list = |v: &std::collections::BTreeSet<String>| {
                if v.is_empty() {
                    "-".to_string()
                } else {
                    v.iter().cloned().collect::<Vec<_>>().join(",")
                }
            };
            vec![
                Cell::from(e.hash.short().to_string()),
                Cell::from(e.path.display().to_string()),
                Cell::from(state).style(style),
                Cell::from(list(&e.allowed_read_services)),
                Cell::from(list(&e.allowed_write_services)),
                Cell::from(if e.can_search { "yes" } else { "no" }),
                Cell::from(
                    e.registered_at
                        .get(..16)
                        .unwrap_or(&e.registered_at)
                        .replace('T', " "),
                ),
                Cell::from(
                    s.last_used(&e.hash)
                        .and_then(|t| t.get(5..19))
                        .map(|t| t.replace('T', " "))
                        .unwrap_or_else(|| "-".into()),
                ),
            ]
        })
        .collect();
    table_in(
        frame,
        area,
        pane_block(
            "Policies",
            3,
            focused,
            format!(" {} registered ", s.policies.len()),
        ),
        &[
            ("hash", Constraint::Length(12), false),
            ("path", Constraint::Fill(2), false),
            ("state", Constraint::Length(17), false),
            ("read", Constraint::Fill(1), false),
            ("write", Constraint::Fill(1), false),
            ("search", Constraint::Length(6), false),
            ("registered", Constraint::Length(16), true),
            ("last used", Constraint::Length(14), true),
        ],
        rows,
        s.policy_sel,
        focused,
        "No registered binary. Press n to register one, or approve a pending caller.",
    );
}

/// A centred rectangle of at most `w`×`h` inside `area`.
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn modal(frame: &mut Frame<'_>, s: &State, m: &Modal) {
    let area = frame.area();
    let (title, lines, w): (&str, Vec<Line<'_>>, u16) = match m {
        Modal::Help => ("Keys", help_lines(), 76),
        Modal::Filter(text) => (
            "Filter audit records",
            vec![
                Line::from(vec![
                    Span::raw("/ "),
                    Span::styled(format!("{text}▏"), Style::new().cyan()),
                ]),
                Line::raw(""),
                Line::raw("Matches status, reason, binary path or hash, service, action, targets.")
                    .dark_gray(),
                Line::raw("enter: apply · esc: cancel").dark_gray(),
            ],
            70,
        ),
        Modal::Register(text) => (
            "Register a binary",
            vec![
                Line::raw("Path of the executable (it is hashed now; zero privileges):"),
                Line::styled(format!("{text}▏"), Style::new().cyan()),
                Line::raw(""),
                Line::raw("enter: register · esc: cancel").dark_gray(),
            ],
            70,
        ),
        Modal::Detail(r) => {
            let json = serde_json::to_string_pretty(r.as_ref()).unwrap_or_default();
            (
                "Audit record",
                json.lines().map(|l| Line::raw(l.to_string())).collect(),
                90,
            )
        }
        Modal::Confirm { lines, .. } => {
            let mut v: Vec<Line<'_>> = lines.iter().map(|l| Line::raw(l.clone())).collect();
            v.push(Line::raw(""));
            v.push(Line::from(vec![
                Span::styled(" y ", Style::new().black().on_green()),
                Span::raw(" yes   "),
                Span::styled(" n ", Style::new().black().on_red()),
                Span::raw(" no"),
            ]));
            ("Confirm", v, 72)
        }
        Modal::Editor(ed) => {
            let field = |f: Field, label: &str, value: String| {
                let focused = ed.field == f;
                let mut spans = vec![
                    Span::styled(
                        format!("{} {label:<7}", if focused { "▶" } else { " " }),
                        if focused {
                            Style::new().cyan().bold()
                        } else {
                            Style::new()
                        },
                    ),
                    Span::raw(value),
                ];
                if focused && f != Field::Search {
                    spans.push(Span::styled(
                        format!("  + {}▏", ed.input),
                        Style::new().cyan(),
                    ));
                }
                Line::from(spans)
            };
            let join = |v: &Vec<String>| {
                if v.is_empty() {
                    "-".to_string()
                } else {
                    v.join(", ")
                }
            };
            let title = match ed.goal {
                super::state::EditorGoal::Approve(_) => "Approve",
                super::state::EditorGoal::Edit(_) => "Edit permissions",
            };
            (
                title,
                vec![
                    Line::styled(ed.path.clone(), Style::new().bold()),
                    Line::raw(""),
                    field(Field::Read, "read", join(&ed.read)),
                    field(Field::Write, "write", join(&ed.write)),
                    field(
                        Field::Search,
                        "search",
                        if ed.search { "yes".into() } else { "no".into() },
                    ),
                    Line::raw(""),
                    Line::raw("type a service + enter to add · backspace removes · tab next field")
                        .dark_gray(),
                    Line::raw("space toggles search · enter on an empty field saves · esc cancels")
                        .dark_gray(),
                ],
                76,
            )
        }
    };
    let _ = s;
    // Help wraps its lines: give it the whole height.
    let h = if matches!(m, Modal::Help) {
        area.height.saturating_sub(2)
    } else {
        (lines.len() as u16).saturating_add(2)
    };
    let rect = centered(area, w, h);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::bordered()
                .border_type(BorderType::Rounded)
                .border_style(Style::new().cyan())
                .title(format!(" {title} ")),
        ),
        rect,
    );
}

fn help_lines() -> Vec<Line<'static>> {
    let mut lines = vec![];
    let groups: [(&str, Scope); 6] = [
        ("Everywhere", Scope::Global),
        ("Pending", Scope::Pane(Pane::Pending)),
        ("Audit", Scope::Pane(Pane::Audit)),
        ("Policies", Scope::Pane(Pane::Policies)),
        ("Permission editor", Scope::Editor),
        ("Confirmations", Scope::Confirm),
    ];
    for (name, scope) in groups {
        lines.push(Line::styled(name, Style::new().bold().underlined()));
        let items: Vec<Span<'static>> = KEYMAP
            .iter()
            .filter(|b| b.scope == scope)
            .flat_map(|b| {
                [
                    Span::styled(format!(" {} ", b.label), Style::new().cyan().bold()),
                    Span::raw(format!("{}  ", b.desc)),
                ]
            })
            .collect();
        lines.push(Line::from(items));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::tui::action::{Action, Command};
    use crate::tui::update::update;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn render(state: &State, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).expect("terminal");
        t.draw(|f| draw(f, state)).expect("draw");
        t.backend().to_string()
    }

    fn snap(name: &str, state: &State) {
        insta::assert_snapshot!(format!("{name}_120x36"), render(state, 120, 36));
        insta::assert_snapshot!(format!("{name}_80x24"), render(state, 80, 24));
    }

    #[test]
    fn audit_title_shows_the_integrity_check() {
        let mut s = empty_state();
        assert!(!render(&s, 120, 36).contains("verified"));
        update(
            &mut s,
            Action::Integrity("log BROKEN (line 7): audit verify".into()),
        );
        let screen = render(&s, 120, 36);
        assert!(screen.contains("log BROKEN (line 7)"), "{screen}");
    }

    #[test]
    fn empty_dashboard() {
        snap("empty", &empty_state());
    }

    #[test]
    fn panes_with_data() {
        let mut s = sample_state();
        snap("pending_focused", &s);
        update(&mut s, Action::Command(Command::Focus(2)));
        snap("audit_focused", &s);
        update(&mut s, Action::Command(Command::Focus(3)));
        snap("policies_focused", &s);
    }

    #[test]
    fn modals() {
        let mut s = sample_state();
        update(&mut s, Action::Command(Command::Help));
        snap("help", &s);
        let mut s = sample_state();
        update(&mut s, Action::Command(Command::Approve));
        snap("approve_editor", &s);
        update(&mut s, Action::Command(Command::Enter));
        snap("approve_editor_added", &s);
        let mut s = sample_state();
        update(&mut s, Action::Command(Command::Dismiss));
        snap("confirm_dismiss", &s);
        let mut s = sample_state();
        update(&mut s, Action::Command(Command::Focus(2)));
        update(&mut s, Action::Command(Command::Filter));
        update(&mut s, Action::Char('d'));
        snap("filter", &s);
        update(&mut s, Action::Command(Command::Enter));
        update(&mut s, Action::Command(Command::Enter));
        snap("audit_detail", &s);
        let mut s = sample_state();
        update(&mut s, Action::Command(Command::Focus(3)));
        update(&mut s, Action::Command(Command::Down));
        update(
            &mut s,
            Action::UpgradePreview {
                path: "/usr/local/bin/deploy".into(),
                old: hash('b'),
                new: hash('c'),
                size: 4_194_304,
                mtime: "2026-11-24 09:58:12".into(),
            },
        );
        snap("confirm_upgrade", &s);
        let mut s = sample_state();
        update(&mut s, Action::Command(Command::Register));
        for c in "/usr/local/bin/mycli".chars() {
            update(&mut s, Action::Char(c));
        }
        snap("register", &s);
    }

    #[test]
    fn scroll_keeps_the_selection_visible() {
        assert_eq!(scroll_offset(0, 100, 10), 0);
        assert_eq!(scroll_offset(9, 100, 10), 0);
        assert_eq!(scroll_offset(10, 100, 10), 1);
        assert_eq!(scroll_offset(99, 100, 10), 90);
        assert_eq!(scroll_offset(5, 3, 10), 0);
    }
}
