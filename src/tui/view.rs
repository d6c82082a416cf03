//! Drawing: pure functions from [`State`] to a frame. Nothing here changes state or does I/O;
//! the layout helpers are shared with the reducer for mouse hit-testing. Every text a caller
//! controls goes through [`crate::display`] before it is drawn.

use super::keymap::{self, KEYMAP, Scope};
use super::state::{Editor, EditorGoal, Field, Modal, OnDisk, Pane, PolicyRow, State};
use crate::audit::Record;
use crate::display::{self, clean};
use crate::pending::PendingEntry;
use crate::policy::BinaryPolicy;
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
    /// The first screen's notice (no height once it is gone).
    pub notice: Rect,
    /// The hint bar.
    pub hints: Rect,
}

/// Most lines the message line grows to (a long message wraps instead of losing its end).
const MAX_MESSAGE_LINES: usize = 4;
/// Most lines the first screen's notice takes.
const MAX_NOTICE_LINES: usize = 5;

/// How many lines the message (or hint) line needs at `width`.
fn message_height(s: &State, width: u16) -> u16 {
    let Some((_, msg)) = &s.message else { return 1 };
    message_paragraph(msg)
        .line_count(width)
        .clamp(1, MAX_MESSAGE_LINES) as u16
}

/// The message line's text, wrapped at word boundaries.
fn message_paragraph(msg: &str) -> Paragraph<'static> {
    Paragraph::new(format!(" {}", clean(msg))).wrap(Wrap { trim: true })
}

/// Status bar on top, hint bar (or the message, wrapped) at the bottom, the three panes stacked
/// between; the focused pane gets twice the height of the others.
pub fn layout(area: Rect, s: &State) -> Areas {
    let notice_height = s.notice.as_deref().map_or(0, |n| {
        Paragraph::new(n.to_string())
            .wrap(Wrap { trim: true })
            .line_count(area.width)
            .clamp(1, MAX_NOTICE_LINES) as u16
    });
    let [status, body, notice, hints] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(notice_height),
        Constraint::Length(message_height(s, area.width)),
    ])
    .areas(area);
    let focused = s.pane;
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
        notice,
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
    let areas = layout(frame.area(), state);
    status_bar(frame, areas.status, state);
    pending(frame, areas.panes[0], state);
    audit(frame, areas.panes[1], state);
    policies(frame, areas.panes[2], state);
    if let Some(n) = &state.notice {
        frame.render_widget(
            Paragraph::new(clean(n).into_owned())
                .wrap(Wrap { trim: true })
                .style(Style::new().yellow()),
            areas.notice,
        );
    }
    hint_bar(frame, areas.hints, state);
    if let Some(m) = &state.modal {
        modal(frame, state, m);
    }
    if let Some(v) = &state.secrets {
        secrets_view(frame, state, v);
    }
    if let Some(p) = state.prompts.first() {
        prompt(frame, state, p);
        if let Some(m) = &state.prompt_modal {
            modal(frame, state, m);
        }
    }
    if let Some(d) = &state.passphrase {
        passphrase_dialog(frame, state, d);
    }
    if state.mono {
        monochrome(frame.buffer_mut());
    }
}

/// The passphrase dialog: what it is for, one mark per character typed (never the text), the
/// last refusal (a wrong passphrase, with the attempt count), and its keys.
fn passphrase_dialog(frame: &mut Frame<'_>, s: &State, d: &super::state::PassDialog) {
    use super::state::PassPurpose;
    let area = frame.area();
    let w = 72.min(area.width);
    let room = usize::from(w.saturating_sub(4));
    let wrap = |t: &str| -> Vec<Line<'static>> {
        wrap_words(t, room).into_iter().map(Line::raw).collect()
    };
    let (title, mut lines) = match &d.purpose {
        PassPurpose::Attach => {
            let mut l = wrap(
                "This broker keeps secrets in a vault. Type the vault passphrase to be shown prompts here and to answer them: until then this dashboard answers nothing.",
            );
            if s.vault.is_some_and(|v| v.locked) {
                l.extend(wrap("The vault is locked: the passphrase unlocks it too."));
            }
            ("Prove presence: the vault passphrase", l)
        }
        PassPurpose::Unlock(id) => {
            let mut l = wrap("The vault is locked. A caller is waiting for a secret:");
            if let Some(p) = s.prompts.iter().find(|p| p.id == *id) {
                l.push(wants_line(p, room.saturating_sub(24)));
            }
            l.extend(wrap(
                "The passphrase unlocks the vault and the request is served; esc refuses it.",
            ));
            ("Unlock the vault", l)
        }
        PassPurpose::Widen(fx, what) if fx.shows_secrets() => {
            let mut l = wrap("The Secrets view asks for the vault passphrase to:");
            l.push(Line::styled(
                format!(" {}", display::bounded(what, room.saturating_sub(1))),
                Style::new().yellow().bold(),
            ));
            ("Passphrase to see your secrets", l)
        }
        PassPurpose::Widen(_, what) => {
            let mut l = wrap("This widens what a program may do:");
            l.push(Line::styled(
                format!(" {}", display::bounded(what, room.saturating_sub(1))),
                Style::new().yellow().bold(),
            ));
            l.extend(wrap(
                "Type the vault passphrase again: every change that widens access asks for it.",
            ));
            ("Passphrase for this change", l)
        }
    };
    lines.push(Line::raw(""));
    let marks = "•".repeat(d.input.chars().min(room.saturating_sub(14)));
    lines.push(Line::from(vec![
        Span::raw(" passphrase  "),
        Span::styled(format!("{marks}▏"), Style::new().cyan()),
    ]));
    if d.checking {
        lines.push(Line::styled(
            " checking… (a wrong passphrase takes longer each time)",
            Style::new().yellow(),
        ));
    } else if let Some(e) = &d.error {
        for l in wrap_words(&clean(e), room) {
            lines.push(Line::styled(l, Style::new().red().bold()));
        }
    }
    lines.push(Line::raw(""));
    lines.push(Line::raw("enter: check · esc: cancel · never shown, never logged").dark_gray());
    let lines_len = lines.len();
    dialog(
        frame,
        area,
        w,
        Paragraph::new(lines),
        lines_len,
        Block::bordered()
            .border_type(BorderType::Thick)
            .border_style(Style::new().magenta().bold())
            .title(format!(" {title} ")),
    );
}

/// The Secrets view: services, their targets and attributes, the selected row marked, and the
/// one value revealed (beside its row, with the seconds until it hides). Values and names are
/// the store's text: escaped like any caller text.
fn secrets_view(frame: &mut Frame<'_>, s: &State, v: &super::state::SecretsView) {
    let area = frame.area();
    let w = area.width.saturating_sub(4).min(110);
    let h = area.height.saturating_sub(4);
    let rect = centered(area, w, h);
    let room = usize::from(w.saturating_sub(4));
    let items = v.items();
    let mut lines: Vec<Line<'static>> = vec![];
    let mut selected_line = 0usize;
    if !v.loaded {
        lines.push(Line::raw("loading…").dark_gray());
    } else if items.is_empty() {
        lines.push(Line::raw(
            "No secrets in the store yet (keychain-auth secret put SERVICE TARGET adds one).",
        ));
    }
    let target_w = items
        .iter()
        .map(|(_, i)| i.target.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(8, room / 2);
    let mut n = 0usize;
    for service in &v.services {
        lines.push(Line::styled(
            format!(
                "{}  ({} item(s))",
                shorten_middle(&clean(&service.service), room.saturating_sub(14)),
                service.items.len()
            ),
            Style::new().cyan().bold(),
        ));
        for item in &service.items {
            let sel = n == v.sel;
            if sel {
                selected_line = lines.len();
            }
            let attrs: Vec<String> = item
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let target = shorten_middle(&clean(&item.target), target_w);
            let rest = display::bounded(&attrs.join(" "), room.saturating_sub(target_w + 6));
            let style = if sel {
                Style::new().black().on_cyan()
            } else {
                Style::new()
            };
            lines.push(Line::styled(
                format!(
                    "  {} {target:<target_w$}  {rest}",
                    if sel { "▶" } else { " " }
                ),
                style,
            ));
            if let Some(r) = &v.revealed
                && r.service == service.service
                && r.target == item.target
            {
                let left = ((r.until_ms - s.now_ms).max(0) + 999) / 1000;
                lines.push(Line::from(vec![
                    Span::raw("      value  "),
                    Span::styled(
                        display::bounded(r.value.expose(), room.saturating_sub(40)),
                        Style::new().yellow().bold(),
                    ),
                    Span::raw(format!("   (hidden in {left} s · h hides)")).dark_gray(),
                ]));
            }
            n += 1;
        }
    }
    let page = usize::from(rect.height.saturating_sub(2));
    let first = selected_line.saturating_sub(page.saturating_sub(2));
    let store = match s.vault {
        Some(_) => "vault: each value after the passphrase".to_string(),
        None => "plain store: readable by your other programs".to_string(),
    };
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines.into_iter().skip(first).take(page).collect::<Vec<_>>()).block(
            Block::bordered()
                .border_type(BorderType::Rounded)
                .border_style(Style::new().cyan())
                .title(format!(
                    " Secrets · {} in {} service(s) ",
                    items.len(),
                    v.services.len()
                ))
                .title(Line::raw(format!(" {store} ")).right_aligned()),
        ),
        rect,
    );
}

/// `text` cut into lines of at most `width` columns at spaces (a longer word is cut).
fn wrap_words(text: &str, width: usize) -> Vec<String> {
    let width = width.max(8);
    let mut out = vec![];
    let mut line = String::new();
    for word in text.split(' ') {
        let need = line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
        if !line.is_empty() && need > width {
            out.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        while line.chars().count() > width {
            let head: String = line.chars().take(width).collect();
            let tail: String = line.chars().skip(width).collect();
            out.push(head);
            line = tail;
        }
    }
    if !line.is_empty() {
        out.push(line);
    }
    out
}

/// Drops every colour; whatever had a background colour (the selected row, badges, key caps)
/// is drawn in reverse video instead, so the selection stays visible without colour.
fn monochrome(buf: &mut ratatui::buffer::Buffer) {
    for cell in &mut buf.content {
        if cell.bg != Color::Reset {
            cell.modifier.insert(Modifier::REVERSED);
        }
        cell.fg = Color::Reset;
        cell.bg = Color::Reset;
    }
}

/// `s` cut to `width` characters in the middle, keeping the file name whole when it fits:
/// `/home/me/…/deploy-tool`.
pub fn shorten_middle(s: &str, width: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= width {
        return s.to_string();
    }
    if width <= 1 {
        return "…".chars().take(width).collect();
    }
    let tail_start = s.rfind('/').map_or(0, |i| s[..i].chars().count());
    let tail_len = chars.len() - tail_start;
    if tail_len + 1 >= width {
        // Not even the file name fits: its end.
        let keep = width - 1;
        return std::iter::once('…')
            .chain(chars[chars.len() - keep..].iter().copied())
            .collect();
    }
    let head_room = width - 1 - tail_len;
    let mut head: String = chars[..head_room].iter().collect();
    if let Some(slash) = head.rfind('/')
        && slash > 0
    {
        head.truncate(slash + 1);
    }
    format!("{head}…{}", chars[tail_start..].iter().collect::<String>())
}

/// A path cut to `width` like [`shorten_middle`] (the file name kept whole while the
/// directories go), except that a file name that does not fit keeps its start and its end
/// (`git-cred…ain-auth`): the start tells apart names that end alike (the helpers).
pub fn shorten_path(s: &str, width: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    let tail_start = s.rfind('/').map_or(0, |i| s[..i].chars().count());
    if chars.len() <= width || width <= 1 || chars.len() - tail_start + 1 < width {
        return shorten_middle(s, width);
    }
    let name = &chars[(tail_start + 1).min(chars.len())..];
    let keep = width - 1;
    if name.len() <= keep {
        return std::iter::once('…').chain(name.iter().copied()).collect();
    }
    let head = keep.div_ceil(2);
    name[..head]
        .iter()
        .copied()
        .chain(std::iter::once('…'))
        .chain(name[name.len() - (keep - head)..].iter().copied())
        .collect()
}

/// Each `(text, width)` fitted by [`shorten_path`], then made distinct: texts that differ
/// but came out the same (two helpers named `…-keychain-auth`, two `bin/deploy` in different
/// trees) show the part where they differ instead, cut on both sides.
pub fn fit_distinct(items: &[(String, usize)]) -> Vec<String> {
    let first: Vec<String> = items.iter().map(|(t, w)| shorten_path(t, *w)).collect();
    let mut out = first.clone();
    for i in 0..items.len() {
        let clash: Vec<usize> = (0..items.len())
            .filter(|&j| j != i && first[j] == first[i] && items[j].0 != items[i].0)
            .collect();
        if clash.is_empty() {
            continue;
        }
        let mine: Vec<char> = items[i].0.chars().collect();
        // Where it first differs from the others it clashes with.
        let at = clash
            .iter()
            .map(|&j| {
                let other: Vec<char> = items[j].0.chars().collect();
                mine.iter()
                    .zip(&other)
                    .position(|(a, b)| a != b)
                    .unwrap_or(mine.len().min(other.len()))
            })
            .min()
            .unwrap_or(0);
        out[i] = window(&mine, at, items[i].1);
    }
    out
}

/// At most `width` characters of `text` around index `at`, with `…` where it was cut.
fn window(text: &[char], at: usize, width: usize) -> String {
    if text.len() <= width {
        return text.iter().collect();
    }
    if width < 3 {
        return text.iter().take(width).collect();
    }
    let room = width - 2;
    let start = at.saturating_sub(room / 2).min(text.len() - room);
    let (start, room) = if start == 0 {
        (0, width - 1)
    } else if start + room >= text.len() {
        (text.len() - (width - 1), width - 1)
    } else {
        (start, room)
    };
    let mut s = String::new();
    if start > 0 {
        s.push('…');
    }
    s.extend(&text[start..start + room]);
    if start + room < text.len() {
        s.push('…');
    }
    s
}

fn status_bar(frame: &mut Frame<'_>, area: Rect, s: &State) {
    let (mode, mode_style) = if s.broker.embedded {
        (" EMBEDDED broker ", Style::new().black().on_yellow().bold())
    } else if s.broker.reachable {
        (" CONNECTED ", Style::new().black().on_green().bold())
    } else {
        (
            " DISCONNECTED · reconnecting… ",
            Style::new().white().on_red().bold(),
        )
    };
    let name = " keychain-auth ";
    // Who can read the store, right after the mode: never left out.
    let store = store_badge(s);
    let store_len = store.as_ref().map_or(0, |(t, _)| t.chars().count());
    // Whole segments, most important first; what does not fit is left out whole, never cut
    // mid-word. The socket path is shortened in the middle instead.
    let mut segments = status_segments(s);
    let filter = (!s.filter.is_empty()).then(|| format!(" · filter: {}", clean(&s.filter)));
    let width = usize::from(area.width);
    let socket = &s.broker.socket;
    let text_len = |segs: &[(u8, String)], socket_len: usize| {
        segs.iter()
            .map(|(_, t)| t.chars().count() + 3)
            .sum::<usize>()
            + socket_len
            + 1
    };
    // On a narrow screen "reconnecting…" goes before the socket path is cut short.
    let kept: Vec<(u8, String)> = segments.iter().filter(|(p, _)| *p < 2).cloned().collect();
    let fixed_with = |mode: &str| {
        name.chars().count()
            + mode.chars().count()
            + store_len
            + filter.as_ref().map_or(0, |f| f.chars().count())
    };
    let mode = if !s.broker.embedded
        && !s.broker.reachable
        && fixed_with(mode) + text_len(&kept, 24.min(socket.chars().count())) > width
    {
        " DISCONNECTED "
    } else {
        mode
    };
    let fixed = fixed_with(mode);
    // The socket path whole when it is of a usual length: counters go first.
    let min_socket = 48.min(socket.chars().count());
    while fixed + text_len(&segments, min_socket) > width {
        // The counts of pending callers and binaries always stay.
        let Some(drop) = segments
            .iter()
            .enumerate()
            .filter(|(_, (p, _))| *p >= 2)
            .max_by_key(|(_, (p, _))| *p)
            .map(|(i, _)| i)
        else {
            break;
        };
        segments.remove(drop);
    }
    // Still too wide (the store's warning takes room): the count of binaries goes before the
    // line is cut.
    while fixed + text_len(&segments, 0) > width {
        let Some(drop) = segments.iter().rposition(|(p, _)| *p >= 1) else {
            break;
        };
        segments.remove(drop);
    }
    let room = width.saturating_sub(fixed + text_len(&segments, 0));
    let mut text = String::new();
    for (_, t) in &segments {
        text.push(' ');
        text.push_str(t);
        text.push_str(" ·");
    }
    // A socket path cut to a few characters says nothing: then it is left out.
    if room >= 8.min(socket.chars().count()) {
        text.push(' ');
        text.push_str(&shorten_middle(socket, room));
    } else if let Some(t) = text.strip_suffix(" ·") {
        text = t.to_string();
    }
    let mut spans = vec![
        Span::styled(name, Style::new().bold().reversed()),
        Span::styled(mode, mode_style),
    ];
    if let Some((t, style)) = store {
        spans.push(Span::styled(t, style));
    }
    spans.push(Span::raw(text));
    if let Some(f) = filter {
        spans.push(Span::styled(f, Style::new().cyan()));
    }
    frame.render_widget(Line::from(spans), area);
}

/// The title's word on the store: a plain store is readable by every program the user runs; the
/// vault is locked or unlocked (live). Nothing while the broker does not answer or has not said.
fn store_badge(s: &State) -> Option<(String, Style)> {
    use super::state::StoreGuard;
    let g = s.broker.store.filter(|_| s.broker.reachable)?;
    let style = match g {
        StoreGuard::Plain => Style::new().white().on_red().bold(),
        StoreGuard::Locked => Style::new().black().on_cyan().bold(),
        StoreGuard::Unlocked => Style::new().black().on_green(),
    };
    Some((format!(" {} ", g.label()), style))
}

/// The status bar's counters, each with its priority (0 is never left out; the highest goes
/// first when the bar is too narrow).
fn status_segments(s: &State) -> Vec<(u8, String)> {
    let mut segments: Vec<(u8, String)> = vec![];
    if s.broker.reachable {
        segments.push((2, format!("backend {}", s.broker.backend)));
        segments.push((3, format!("{} conn", s.broker.connections)));
        segments.push((4, format!("{} req", s.broker.requests)));
    }
    if let Some(v) = s.vault {
        // The store's badge already says locked or unlocked: then only presence is added.
        let badge = s.broker.reachable && s.broker.store.is_some();
        let text = match (v.locked, v.present, badge) {
            (true, _, true) => None,
            (true, _, false) => Some("vault LOCKED"),
            (false, false, true) => Some("no presence"),
            (false, true, true) => Some("present"),
            (false, false, false) => Some("vault · no presence"),
            (false, true, false) => Some("vault · present"),
        };
        if let Some(t) = text {
            segments.push((0, t.to_string()));
        }
    }
    if !s.prompts.is_empty() {
        segments.push((0, format!("{} prompt(s)", s.prompts.len())));
    }
    segments.push((0, format!("{} pending", s.pending.len())));
    segments.push((1, format!("{} binaries", s.policies.len())));
    if s.broker.reachable {
        segments.push((5, format!("pid {}", s.broker.pid)));
    }
    segments
}

fn hint_bar(frame: &mut Frame<'_>, area: Rect, s: &State) {
    if let Some((ok, msg)) = &s.message {
        let style = if *ok {
            Style::new().green()
        } else {
            Style::new().red().bold()
        };
        frame.render_widget(message_paragraph(msg).style(style), area);
        return;
    }
    // Hints that do not fit are dropped, least important (last) first; help, quit and the
    // keys that leave a dialog always stay.
    let mut hints = keymap::hints(keymap::scope(s));
    let essential = |b: &keymap::Binding| {
        matches!(
            b.command,
            super::action::Command::Help
                | super::action::Command::Quit
                | super::action::Command::Escape
                | super::action::Command::Yes
                | super::action::Command::No
        )
    };
    let width = |hs: &[&keymap::Binding]| {
        hs.iter()
            .map(|b| b.label.chars().count() + b.desc.chars().count() + 4)
            .sum::<usize>()
    };
    while width(&hints) > usize::from(area.width) {
        let Some(i) = hints.iter().rposition(|b| !essential(b)) else {
            break;
        };
        hints.remove(i);
    }
    let mut spans = vec![];
    for b in hints {
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
/// Below this width, the Policies pane leaves out its registration date.
const WIDE: u16 = 150;

/// The width column `index` gets in a pane of `area` (0 when it is left out).
fn column_width(area: Rect, columns: &[Column<'_>], index: usize) -> usize {
    let kept: Vec<(usize, Constraint)> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| area.width >= c.2)
        .map(|(i, c)| (i, c.1))
        .collect();
    let inner = Block::bordered().inner(area);
    let rects = Layout::horizontal(kept.iter().map(|(_, c)| *c))
        .spacing(1)
        .split(Rect::new(0, 0, inner.width, 1));
    kept.iter()
        .position(|(i, _)| *i == index)
        .map_or(0, |k| usize::from(rects[k].width))
}

/// A table column: header, width, and the terminal width below which it is left out (0: never).
type Column<'a> = (&'a str, Constraint, u16);

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
        .map(|(_, _, min_width)| area.width >= *min_width)
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

const PENDING_COLUMNS: &[Column<'static>] = &[
    ("hash", Constraint::Length(12), 0),
    ("path", Constraint::Fill(2), 0),
    ("asked", Constraint::Length(14), 0),
    ("tries", Constraint::Length(5), 0),
    ("first seen", Constraint::Length(14), NARROW),
    ("last seen", Constraint::Length(14), 0),
    ("launched by · argv", Constraint::Fill(1), NARROW),
];

fn pending(frame: &mut Frame<'_>, area: Rect, s: &State) {
    let focused = s.pane == Pane::Pending;
    let path_w = column_width(area, PENDING_COLUMNS, 1);
    let markers: Vec<_> = s
        .pending
        .iter()
        .map(|e| pending_marker(e, path_w))
        .collect();
    let labels = fit_distinct(
        &s.pending
            .iter()
            .zip(&markers)
            .map(|(e, (room, _))| (display::path(&e.path), *room))
            .collect::<Vec<_>>(),
    );
    let rows = s
        .pending
        .iter()
        .zip(markers)
        .zip(labels)
        .map(|((e, (_, marker)), label)| pending_row(e, label, marker))
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
        PENDING_COLUMNS,
        rows,
        s.pending_sel,
        focused,
        "No caller is waiting. Unknown binaries that call the broker appear here.",
    );
}

/// One pending caller's cells: its path shown as `label` (fitted by [`fit_distinct`]), then
/// its marker.
fn pending_row(
    e: &PendingEntry,
    label: String,
    marker: Option<(String, Style)>,
) -> Vec<Cell<'static>> {
    let mut path = vec![Span::raw(label)];
    if let Some((m, style)) = marker {
        path.push(Span::styled(m, style));
    }
    vec![
        Cell::from(e.hash.short().to_string()),
        Cell::from(Line::from(path)),
        Cell::from(format!(
            "{} {}",
            clean(&e.last_action),
            clean(&e.last_service)
        )),
        Cell::from(e.attempts.to_string()),
        Cell::from(time(&e.first_seen)),
        Cell::from(time(&e.last_seen)),
        Cell::from(launchers_and_argv(e)).dark_gray(),
    ]
}

/// A pending caller's marker (a changed version of a registered binary, or a script and its
/// interpreter) and the room left for its path in `path_w` columns.
fn pending_marker(e: &PendingEntry, path_w: usize) -> (usize, Option<(String, Style)>) {
    let (full, short, style) = match (&e.changed_from, &e.interpreter) {
        (Some(old), _) => (
            format!(" (changed version of {})", old.short()),
            " (changed version)",
            Style::new().yellow().bold(),
        ),
        // A script: which interpreter runs it.
        (None, Some(i)) => {
            let name = display::path(&i.path);
            let name = name.rsplit('/').next().unwrap_or(&name).to_string();
            (
                format!(" (script run by {name})"),
                " (script)",
                Style::new().cyan(),
            )
        }
        (None, None) => return (path_w, None),
    };
    // The marker is never cut: its short form when the full one leaves the path too little
    // room.
    let marker = if path_w >= full.chars().count() + 12 {
        full
    } else {
        short.to_string()
    };
    let room = path_w.saturating_sub(marker.chars().count());
    (room, Some((marker, style)))
}

/// Who launched a pending caller (nearest first) and its arguments.
fn launchers_and_argv(e: &PendingEntry) -> String {
    let launchers: Vec<String> = e
        .chain
        .iter()
        .skip(1)
        .map(|l| {
            let p = clean(&l.path);
            p.rsplit('/').next().unwrap_or(&p).to_string()
        })
        .collect();
    if launchers.is_empty() {
        display::join(&e.argv)
    } else {
        format!("{} · {}", launchers.join(" ← "), display::join(&e.argv))
    }
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
    let visible = s.audit_rows();
    let rows = visible.iter().map(|&r| audit_row(r)).collect();
    let (title, extra, empty) = audit_title(s, visible.len());
    table_in(
        frame,
        area,
        pane_block(&title, 2, focused, extra),
        &[
            ("time", Constraint::Length(14), 0),
            ("status", Constraint::Length(9), 0),
            ("binary", Constraint::Length(16), 0),
            ("what", Constraint::Length(16), 0),
            ("detail", Constraint::Fill(1), 0),
        ],
        rows,
        s.audit_sel,
        focused,
        &empty,
    );
}

/// One audit record's cells: time, status, binary, what it asked, detail.
fn audit_row(r: &Record) -> Vec<Cell<'static>> {
    let what = match (&r.action, &r.service) {
        (Some(a), Some(svc)) => format!("{a} {svc}"),
        (Some(a), None) => a.clone(),
        _ => String::new(),
    };
    let status = r.status.clone().unwrap_or_else(|| r.event.clone());
    let detail = match (&r.reason, r.targets.is_empty()) {
        _ if r.event == "policy_change" => policy_change(r).unwrap_or_default(),
        (Some(reason), _) => reason.clone(),
        (None, false) => r.targets.join(","),
        (None, true) => r.message.clone().unwrap_or_default(),
    };
    // A script caller by its script (the interpreter is in the record's detail).
    let who = r
        .script
        .as_deref()
        .or(r.path.as_deref())
        .map(|p| p.rsplit('/').next().unwrap_or(p).to_string())
        .unwrap_or_else(|| r.source.clone());
    vec![
        Cell::from(r.ts.get(5..19).unwrap_or(&r.ts).replace('T', " ")),
        Cell::from(clean(&status).into_owned()).style(status_style(r.status.as_deref())),
        Cell::from(clean(&who).into_owned()),
        Cell::from(clean(&what).into_owned()),
        Cell::from(clean(&detail).into_owned()),
    ]
}

/// The audit pane's title, the count in its border, and what it says when empty: the tail,
/// or a search's filter and progress. `shown` is the number of rows shown.
fn audit_title(s: &State, shown: usize) -> (String, String, String) {
    let following = format!(
        "{}{}{}",
        if s.follow { " · following" } else { "" },
        s.integrity
            .as_deref()
            .map_or_else(String::new, |i| format!(" · {i}")),
        if s.policy_edit.is_some() {
            " · config EDITED outside keychain-auth: policy accept"
        } else {
            ""
        },
    );
    let Some(search) = &s.search else {
        return (
            "Audit".to_string(),
            format!(
                " {}{shown} records{following} ",
                if s.audit_more_before { "… " } else { "" },
            ),
            "No audit records yet.".to_string(),
        );
    };
    let p = &search.progress;
    let n = thousands(p.records);
    let matches = if shown == 1 { "match" } else { "matches" };
    let extra = if p.done {
        format!(" {shown} {matches} in {n} records{following} ")
    } else if p.bytes == 0 || search.matches.len() >= super::state::MAX_AUDIT_IN_MEMORY {
        format!(" {shown} {matches} · searched {n} records{following} ")
    } else {
        format!(
            " {shown} {matches} · searching… {n} records ({}%) · esc cancels ",
            p.bytes * 100 / p.total_bytes.max(1)
        )
    };
    let empty = if p.done {
        format!("No match in {n} records.")
    } else {
        format!("Searching the whole log… {n} records so far.")
    };
    (
        format!("Audit · filter \"{}\"", clean(&s.filter)),
        extra,
        empty,
    )
}

const POLICY_COLUMNS: &[Column<'static>] = &[
    ("hash", Constraint::Length(12), 0),
    ("path", Constraint::Fill(2), 0),
    ("state", Constraint::Length(17), 0),
    ("read", Constraint::Fill(1), 0),
    ("write", Constraint::Fill(1), 0),
    ("search", Constraint::Length(6), 0),
    ("terms · via", Constraint::Fill(2), NARROW),
    // Left out below WIDE, so that at 120 columns the terms and launch rules read whole.
    ("registered", Constraint::Length(10), WIDE),
    ("last used", Constraint::Length(14), NARROW),
];

/// The marker of an interpreter approved to run any script (also shown without colour).
pub const ANY_SCRIPT: &str = "⚠ ANY SCRIPT ";

fn policies(frame: &mut Frame<'_>, area: Rect, s: &State) {
    let focused = s.pane == Pane::Policies;
    let path_w = column_width(area, POLICY_COLUMNS, 1);
    let labels = fit_distinct(
        &s.policies
            .iter()
            .map(|row| (display::path(&row.entry.path), path_w))
            .collect::<Vec<_>>(),
    );
    let rows = s
        .policies
        .iter()
        .zip(labels)
        .map(|(row, label)| policy_row(s, row, label))
        .collect();
    let mut block = pane_block(
        "Policies",
        3,
        focused,
        match &s.policy_edit {
            None => format!(" {} registered ", s.policies.len()),
            Some(_) => format!(
                " {} registered · EDITED outside keychain-auth: D shows it ",
                s.policies.len()
            ),
        },
    );
    if let Some(line) = policy_detail(s, area) {
        block = block.title_bottom(Line::styled(line, Style::new().gray()));
    }
    table_in(
        frame,
        area,
        block,
        POLICY_COLUMNS,
        rows,
        s.policy_sel,
        focused,
        "No registered binary. Press n to register one, or approve a pending caller.",
    );
}

/// The texts of a registered binary's cells that may be left out or cut.
struct PolicyTexts {
    /// Services it may read (`-` for none).
    read: String,
    /// Services it may write.
    write: String,
    /// Its terms and launch rules in few words ([`terms_and_launchers`]).
    terms: String,
    /// Its last successful use, `MM-DD HH:MM:SS` (`-` when the log has none).
    last_used: String,
}

fn policy_texts(s: &State, e: &BinaryPolicy) -> PolicyTexts {
    let list = |v: &std::collections::BTreeSet<String>| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.iter().map(|x| clean(x)).collect::<Vec<_>>().join(",")
        }
    };
    let now = chrono::DateTime::from_timestamp_millis(s.now_ms).unwrap_or_default();
    PolicyTexts {
        read: list(&e.allowed_read_services),
        write: list(&e.allowed_write_services),
        terms: terms_and_launchers(s, e, now),
        last_used: s
            .last_used(&e.hash)
            .and_then(|t| t.get(5..19))
            .map(|t| t.replace('T', " "))
            .unwrap_or_else(|| "-".into()),
    }
}

/// The Policies pane's bottom line: what the selected row does not show whole because its
/// column is left out at this width (terms and launch rules, last use) or too narrow for it
/// (`read`, `write`, `terms`); `i` shows the entry in full. None when the row shows it all.
fn policy_detail(s: &State, area: Rect) -> Option<String> {
    let row = s.policies.get(s.policy_sel)?;
    let t = policy_texts(s, &row.entry);
    let hidden = |index: usize, text: &str| {
        let w = column_width(area, POLICY_COLUMNS, index);
        w == 0 || text.chars().count() > w
    };
    let mut parts = vec![];
    if hidden(3, &t.read) {
        parts.push(format!("read {}", t.read));
    }
    if hidden(4, &t.write) {
        parts.push(format!("write {}", t.write));
    }
    if hidden(6, &t.terms) {
        parts.push(if t.terms == "-" {
            "no terms, no launch rule".to_string()
        } else {
            t.terms
        });
    }
    if hidden(8, &t.last_used) {
        parts.push(if t.last_used == "-" {
            "no use in the log".to_string()
        } else {
            format!("last used {}", t.last_used)
        });
    }
    if parts.is_empty() {
        return None;
    }
    let name = display::path(&row.entry.path);
    let name = name.rsplit('/').next().unwrap_or(&name).to_string();
    // The bottom border keeps a corner and a dash on each side.
    let room = usize::from(area.width).saturating_sub(4);
    let text = format!(" {name}: {} ", parts.join(" · "));
    Some(if text.chars().count() > room {
        let cut: String = text.chars().take(room.saturating_sub(2)).collect();
        format!("{cut}… ")
    } else {
        text
    })
}

/// One registered binary's cells, its path shown as `label` (fitted by [`fit_distinct`]).
fn policy_row(s: &State, row: &PolicyRow, label: String) -> Vec<Cell<'static>> {
    let e = &row.entry;
    // An interpreter that runs any script: the path in red and the marker first in
    // the state column (kept without colour).
    let path_style = if e.allow_any_script {
        Style::new().red()
    } else {
        Style::new()
    };
    let path = Line::styled(label, path_style);
    let (state, style) = if s
        .policy_edit
        .as_ref()
        .is_some_and(|edit| edit.held.contains(&e.hash))
    {
        // Added or changed by an edit made outside keychain-auth: not served until adopted.
        ("HELD: edited".to_string(), Style::new().red().bold())
    } else {
        policy_state(row)
    };
    let t = policy_texts(s, e);
    vec![
        Cell::from(e.hash.short().to_string()),
        Cell::from(path),
        Cell::from(state).style(style),
        Cell::from(t.read),
        Cell::from(t.write),
        Cell::from(if e.can_search { "yes" } else { "no" }),
        Cell::from(t.terms),
        Cell::from(
            e.registered_at
                .get(..10)
                .unwrap_or(&e.registered_at)
                .to_string(),
        ),
        Cell::from(t.last_used),
    ]
}

/// The state column: what is on disk at the path, after [`ANY_SCRIPT`] for an interpreter
/// approved to run any script.
fn policy_state(row: &PolicyRow) -> (String, Style) {
    let (state, style) = match &row.on_disk {
        OnDisk::Ok => ("ok".to_string(), Style::new().green()),
        OnDisk::Changed(h) => (
            format!("changed → {}", &h.short()[..8]),
            Style::new().yellow().bold(),
        ),
        OnDisk::Missing => ("missing".to_string(), Style::new().red()),
        OnDisk::Unknown => ("…".to_string(), Style::new().dark_gray()),
    };
    if row.entry.allow_any_script {
        (format!("{ANY_SCRIPT}{state}"), Style::new().red().bold())
    } else {
        (state, style)
    }
}

/// The terms column, short enough to read whole in its column: each service's terms at `now`
/// (`k8s 9m left`, `aws 1 use`, `db confirm`), then the launchers it is approved via, by name
/// where the dashboard knows the path of that hash (`via git`), else by short hash.
fn terms_and_launchers(s: &State, e: &BinaryPolicy, now: chrono::DateTime<chrono::Utc>) -> String {
    let mut terms: Vec<String> = e
        .service_terms
        .iter()
        .filter(|(_, t)| !t.is_empty())
        .map(|(svc, t)| format!("{} {}", clean(svc), short_terms(t, now)))
        .collect();
    if !e.launched_by.is_empty() {
        let via: Vec<String> = e.launched_by.iter().map(|h| launcher_name(s, h)).collect();
        terms.push(format!("via {}", via.join(",")));
    }
    if terms.is_empty() {
        "-".to_string()
    } else {
        terms.join("; ")
    }
}

/// A grant's terms in a few words: `9m left`, `1 use`, `confirm`, `expired`.
fn short_terms(t: &crate::policy::GrantTerms, now: chrono::DateTime<chrono::Utc>) -> String {
    let mut parts = Vec::new();
    if let Some(end) = t.expires_at {
        let left = (end - now).num_seconds();
        parts.push(if left <= 0 {
            "expired".to_string()
        } else {
            format!("{} left", crate::policy::human_duration(left as u64))
        });
    }
    if let Some(n) = t.uses_left {
        parts.push(format!("{n} use{}", if n == 1 { "" } else { "s" }));
    }
    if t.confirm {
        parts.push("confirm".into());
    }
    parts.join(" ")
}

/// A launcher's name: the file name of [`launcher_path`], else its short hash.
fn launcher_name(s: &State, h: &crate::identity::BinaryHash) -> String {
    match launcher_path(s, h) {
        Some(path) => path.rsplit('/').next().unwrap_or(&path).to_string(),
        None => h.short().chars().take(8).collect(),
    }
}

/// A path known to have hash `h` (escaped): a registered binary's, else a process's in a
/// loaded record's or a pending caller's chain.
fn launcher_path(s: &State, h: &crate::identity::BinaryHash) -> Option<String> {
    let registered = s
        .policies
        .iter()
        .find(|r| &r.entry.hash == h)
        .map(|r| display::path(&r.entry.path));
    let seen = || {
        s.audit
            .iter()
            .rev()
            .flat_map(|r| r.chain.iter())
            .chain(s.pending.iter().flat_map(|e| e.chain.iter()))
            .find(|l| l.hash.as_ref() == Some(h))
            .map(|l| clean(&l.path).into_owned())
    };
    registered.or_else(seen)
}

/// A registered binary in full (the `i` overlay), wrapped at `width`: path, hash, what is on
/// disk, services, every term with its date, every launch rule by path and hash, registration
/// and last use.
fn binary_lines(s: &State, h: &crate::identity::BinaryHash, width: usize) -> Vec<Line<'static>> {
    let Some(row) = s.policies.iter().find(|r| &r.entry.hash == h) else {
        return vec![Line::raw("No longer registered.")];
    };
    let e = &row.entry;
    let t = policy_texts(s, e);
    let now = chrono::DateTime::from_timestamp_millis(s.now_ms).unwrap_or_default();
    let mut out: Vec<Line<'static>> = wrap_chars(&display::path(&e.path), width)
        .into_iter()
        .map(|l| Line::styled(l, Style::new().bold()))
        .collect();
    let mut field = |label: &str, value: String, style: Style| {
        // The label's column, then the value wrapped under itself.
        let pad = 12;
        for (i, piece) in wrap_chars(&value, width.saturating_sub(pad).max(1))
            .into_iter()
            .enumerate()
        {
            let head = if i == 0 { label } else { "" };
            out.push(Line::from(vec![
                Span::styled(format!("{head:<pad$}"), Style::new().dark_gray()),
                Span::styled(piece, style),
            ]));
        }
    };
    field("hash", e.hash.to_string(), Style::new());
    let (state, style) = policy_state(row);
    let on_disk = match &row.on_disk {
        OnDisk::Changed(new) => {
            format!("{state}: the file is now {new} (u in the pane upgrades the entry)")
        }
        _ => state,
    };
    field("on disk", on_disk, style);
    if e.allow_any_script {
        field(
            "scripts",
            "runs any script with these grants (--allow-any-script)".into(),
            Style::new().red().bold(),
        );
    }
    field("read", t.read, Style::new());
    field("write", t.write, Style::new());
    field(
        "search",
        if e.can_search { "yes" } else { "no" }.into(),
        Style::new(),
    );
    let terms: Vec<String> = e
        .service_terms
        .iter()
        .filter(|(_, t)| !t.is_empty())
        .map(|(svc, t)| {
            let until = t
                .expires_at
                .map(|end| format!("until {} UTC", end.format("%Y-%m-%d %H:%M:%S")));
            let words = short_terms(t, now);
            match until {
                Some(u) => format!("{}: {words} ({u})", clean(svc)),
                None => format!("{}: {words}", clean(svc)),
            }
        })
        .collect();
    if terms.is_empty() {
        field(
            "terms",
            "none (the grants last until revoked)".into(),
            Style::new(),
        );
    }
    for (i, term) in terms.into_iter().enumerate() {
        field(if i == 0 { "terms" } else { "" }, term, Style::new());
    }
    if e.launched_by.is_empty() {
        field("via", "any launcher (no launch rule)".into(), Style::new());
    }
    for (i, l) in e.launched_by.iter().enumerate() {
        let text = match launcher_path(s, l) {
            Some(path) => format!("{path} ({l})"),
            None => format!("{l} (no path with this hash seen)"),
        };
        field(if i == 0 { "via" } else { "" }, text, Style::new());
    }
    field(
        "registered",
        clean(&e.registered_at).into_owned(),
        Style::new(),
    );
    field(
        "last used",
        s.last_used(&e.hash)
            .map_or_else(|| "no use in the log".into(), |t| clean(t).into_owned()),
        Style::new(),
    );
    out
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

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let mut digits = n.to_string();
    let mut i = digits.len();
    while i > 3 {
        i -= 3;
        digits.insert(i, ',');
    }
    digits
}

/// Where a scrolling overlay (help, record detail, policy edit) goes on a screen of `area`.
fn overlay_rect(area: Rect, s: &State, m: &Modal) -> Rect {
    let w = if matches!(m, Modal::Help) { 76 } else { 90 };
    let inner_w = w.min(area.width).saturating_sub(2);
    let len = overlay_lines(s, m, inner_w).len() as u16;
    centered(
        area,
        w,
        len.saturating_add(2).min(area.height.saturating_sub(2)),
    )
}

/// The lines of a scrolling overlay, already cut to `width` columns (so the reducer and the
/// view agree on how far it scrolls).
fn overlay_lines(s: &State, m: &Modal, width: u16) -> Vec<Line<'static>> {
    match m {
        Modal::Help => help_lines(),
        Modal::Detail(r) => detail_lines(r, usize::from(width.max(1))),
        Modal::Binary(h) => binary_lines(s, h, usize::from(width.max(1))),
        Modal::PolicyEdit => s
            .policy_edit
            .as_ref()
            .map(|e| edit_lines(e, usize::from(width.max(1))))
            .unwrap_or_default(),
        _ => vec![],
    }
}

/// `text` cut into pieces of at most `width` characters (at least one piece).
fn wrap_chars(text: &str, width: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    chars
        .chunks(width.max(1))
        .map(|c| c.iter().collect())
        .collect()
}

/// The difference an edit of config.json made outside keychain-auth makes, wrapped at `width`,
/// then what to do about it.
fn edit_lines(e: &crate::tui::state::PolicyEdit, width: usize) -> Vec<Line<'static>> {
    let mut out = vec![Line::styled(
        clean(&e.summary).into_owned(),
        Style::new().yellow().bold(),
    )];
    out.push(Line::raw(""));
    for l in &e.lines {
        let style = match l.trim_start().chars().next() {
            Some('+') => Style::new().green(),
            Some('-') => Style::new().red(),
            _ => Style::new(),
        };
        for piece in wrap_chars(&clean(l), width) {
            out.push(Line::styled(piece, style));
        }
    }
    out.push(Line::raw(""));
    for l in [
        "Entries the edit added or changed are not served until it is adopted.",
        "Adopt it with: keychain-auth policy accept (it shows this again and asks).",
        "Or undo it: put config.sealed.json back as config.json.",
    ] {
        for piece in wrap_chars(l, width) {
            out.push(Line::raw(piece));
        }
    }
    out
}

/// For a scrolling overlay on the current screen: how many lines it has and how many show at
/// once. The reducer clamps the scroll offset with this.
pub fn overlay_extent(state: &State, m: &Modal) -> (usize, usize) {
    let area = Rect::new(0, 0, state.size.0, state.size.1);
    let rect = overlay_rect(area, state, m);
    let len = overlay_lines(state, m, rect.width.saturating_sub(2)).len();
    (len, usize::from(rect.height.saturating_sub(2)))
}

/// Every field of a record (as stored, JSON), long lines wrapped at `width` characters; a
/// policy change first says what it changed.
fn detail_lines(r: &crate::audit::Record, width: usize) -> Vec<Line<'static>> {
    let mut out = vec![];
    if let Some(change) = policy_change(r) {
        out.push(Line::styled(
            clean(&change).into_owned(),
            Style::new().bold(),
        ));
        out.push(Line::raw(""));
    }
    let mut about = vec![];
    if let Some(script) = &r.script {
        about.push(format!(
            "script {} run by {}",
            script,
            r.path.as_deref().unwrap_or("?")
        ));
    }
    if let Some(l) = launched_by(&r.chain) {
        about.push(format!("launched by {l}"));
    }
    if !about.is_empty() {
        for a in about {
            for piece in wrap_chars(&clean(&a), width) {
                out.push(Line::styled(piece, Style::new().cyan()));
            }
        }
        out.push(Line::raw(""));
    }
    let json = serde_json::to_string_pretty(r).unwrap_or_default();
    for l in json.lines() {
        for piece in wrap_chars(&display::clean_json(l), width) {
            out.push(Line::raw(piece));
        }
    }
    out
}

/// What a policy-change record changed, in one line: `grant read +aws +gcp · search +`,
/// `revoke write -k8s`, `upgrade aaaa… → bbbb…`; `None` for other records.
pub fn policy_change(r: &crate::audit::Record) -> Option<String> {
    if r.event != "policy_change" {
        return None;
    }
    let action = r.action.as_deref().unwrap_or("change");
    let sign = if action == "revoke" { "-" } else { "+" };
    let mut parts = vec![];
    for (what, list) in [("read", &r.read), ("write", &r.write)] {
        if !list.is_empty() {
            let items: Vec<String> = list.iter().map(|x| format!("{sign}{x}")).collect();
            parts.push(format!("{what} {}", items.join(" ")));
        }
    }
    if r.search == Some(true) {
        parts.push(format!("search {sign}"));
    }
    if let (Some(old), Some(new)) = (&r.old_hash, &r.hash) {
        let short = |h: &str| {
            h.trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect::<String>()
        };
        parts.push(format!("{} → {}", short(old), short(new)));
    }
    if parts.is_empty() && matches!(action, "approve" | "register") {
        parts.push("zero privileges".into());
    }
    Some(if parts.is_empty() {
        action.to_string()
    } else {
        format!("{action} {}", parts.join(" · "))
    })
}

fn overlay(frame: &mut Frame<'_>, s: &State, m: &Modal) {
    let rect = overlay_rect(frame.area(), s, m);
    let lines = overlay_lines(s, m, rect.width.saturating_sub(2));
    let page = usize::from(rect.height.saturating_sub(2));
    let len = lines.len();
    let first = s.scroll.min(len.saturating_sub(page));
    let title = match m {
        Modal::Help => "Keys",
        Modal::PolicyEdit => "config.json edited outside keychain-auth",
        Modal::Binary(_) => "Registered binary",
        _ => "Audit record",
    };
    let position = if len > page {
        format!(
            " {}–{} of {} · j/k PgUp/PgDn ",
            first + 1,
            (first + page).min(len),
            len
        )
    } else {
        String::new()
    };
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines.into_iter().skip(first).take(page).collect::<Vec<_>>()).block(
            Block::bordered()
                .border_type(BorderType::Rounded)
                .border_style(Style::new().cyan())
                .title(format!(" {title} "))
                .title(Line::raw(position).right_aligned()),
        ),
        rect,
    );
}

fn modal(frame: &mut Frame<'_>, s: &State, m: &Modal) {
    let area = frame.area();
    let (title, mut lines, w): (&str, Vec<Line<'_>>, u16) = match m {
        Modal::Help | Modal::Detail(_) | Modal::PolicyEdit | Modal::Binary(_) => {
            return overlay(frame, s, m);
        }
        Modal::Filter(text) => ("Filter audit records", filter_lines(text), 70),
        Modal::Register(text) => (
            "Register a binary",
            input_lines(
                "Path of the executable (it is hashed now; zero privileges):",
                text,
                "enter: register · esc: cancel",
            ),
            70,
        ),
        Modal::PromptFor(_, text) => (
            "Allow for a time",
            input_lines(
                "How long the grant lasts (10m, 2h, 1d, 1h30m):",
                text,
                "enter: allow · esc: back to the prompt",
            ),
            60,
        ),
        Modal::Confirm { lines, .. } => ("Confirm", confirm_lines(lines), 72),
        Modal::Editor(ed) => {
            let (title, lines) = editor_dialog(s, ed);
            (title, lines, EDITOR_WIDTH)
        }
    };
    // An answer being edited: how long the caller still waits (the countdown is paused, within
    // a bound), never hidden behind the dialog.
    let answering = match m {
        Modal::PromptFor(id, _) => Some(id),
        Modal::Editor(ed) => match &ed.goal {
            EditorGoal::Always(id) => Some(id),
            _ => None,
        },
        _ => None,
    };
    if let Some(p) = answering.and_then(|id| s.prompts.iter().find(|p| p.id == *id)) {
        let left =
            seconds_left(p.deadline_ms, s.now_ms).map_or_else(|| "?".into(), |n| format!("{n} s"));
        lines.push(Line::styled(
            format!(
                "caller waits {left} more; paused while editing, up to {} min",
                crate::server::approval::EDIT_HOLD.as_secs() / 60
            ),
            Style::new().yellow(),
        ));
    }
    let n = lines.len();
    dialog(
        frame,
        area,
        w,
        Paragraph::new(lines).wrap(Wrap { trim: false }),
        n,
        Block::bordered()
            .border_type(BorderType::Rounded)
            .border_style(Style::new().cyan())
            .title(format!(" {title} ")),
    );
}

/// The filter input: what is typed, what it matches, its keys.
fn filter_lines(text: &str) -> Vec<Line<'static>> {
    vec![
        Line::from(vec![
            Span::raw("/ "),
            Span::styled(format!("{}▏", clean(text)), Style::new().cyan()),
        ]),
        Line::raw(""),
        Line::raw("Matches status, reason, binary path or hash, service, action, targets.")
            .dark_gray(),
        Line::raw("enter: apply · esc: cancel").dark_gray(),
    ]
}

/// A one-line text input: the question, what is typed, its keys.
fn input_lines(question: &'static str, text: &str, keys: &'static str) -> Vec<Line<'static>> {
    vec![
        Line::raw(question),
        Line::styled(format!("{}▏", clean(text)), Style::new().cyan()),
        Line::raw(""),
        Line::raw(keys).dark_gray(),
    ]
}

/// A yes/no question: its lines, then the y and n keys.
fn confirm_lines(lines: &[String]) -> Vec<Line<'static>> {
    let mut v: Vec<Line<'static>> = lines
        .iter()
        .map(|l| Line::raw(clean(l).into_owned()))
        .collect();
    v.push(Line::raw(""));
    v.push(Line::from(vec![
        Span::styled(" y ", Style::new().black().on_green()),
        Span::raw(" yes   "),
        Span::styled(" n ", Style::new().black().on_red()),
        Span::raw(" no"),
    ]));
    v
}

/// The permission editor dialog's width.
const EDITOR_WIDTH: u16 = 76;

/// The permission editor's title and lines: the binary (path, hash, script and launcher
/// notes), its three fields, and its keys.
fn editor_dialog(s: &State, ed: &Editor) -> (&'static str, Vec<Line<'static>>) {
    let join = |v: &Vec<String>| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    let (title, hash) = editor_title(s, &ed.goal);
    // Cut to the dialog's inner width here, so its height counts every row drawn.
    let inner = usize::from(EDITOR_WIDTH - 2);
    let lines = wrap_chars(&clean(&ed.path), inner)
        .into_iter()
        .map(|l| Line::styled(l, Style::new().bold()))
        .chain([Line::raw(clean(&hash).into_owned())])
        .chain(ed.about.iter().flat_map(|a| {
            wrap_chars(&clean(a), inner)
                .into_iter()
                .map(|l| Line::styled(l, Style::new().cyan()))
        }))
        .chain([
            Line::raw(""),
            editor_field(ed, Field::Read, "read", join(&ed.read)),
            editor_field(ed, Field::Write, "write", join(&ed.write)),
            editor_field(ed, Field::Search, "search", yes_no(ed.search)),
            Line::raw(""),
            editor_field(ed, Field::Via, "via", join(&ed.via)),
            editor_field(
                ed,
                Field::For,
                "for",
                ed.expires.clone().unwrap_or_else(|| "-".into()),
            ),
            editor_field(ed, Field::Once, "once", yes_no(ed.once)),
            editor_field(ed, Field::Confirm, "confirm", yes_no(ed.confirm)),
            Line::raw(""),
            Line::raw("type + enter adds · backspace removes · space toggles · tab next field")
                .dark_gray(),
            Line::raw("via: a launcher's path or hash · for, once, confirm: terms of this grant")
                .dark_gray(),
            Line::raw("enter on an empty field saves").dark_gray(),
        ])
        .collect();
    (title, lines)
}

/// What the editor is for, and the hash it is about (a prompt's script hash when it has one).
fn editor_title(s: &State, goal: &EditorGoal) -> (&'static str, String) {
    match goal {
        EditorGoal::Approve(h) => ("Approve", h.to_string()),
        EditorGoal::Edit(h) => ("Edit permissions", h.to_string()),
        EditorGoal::Always(id) => (
            "Always allow (saving answers the prompt)",
            s.prompts
                .iter()
                .find(|p| p.id == *id)
                .map(|p| p.script_hash.clone().unwrap_or_else(|| p.hash.clone()))
                .unwrap_or_default(),
        ),
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// One editor field: a marker when focused, its label and value, and the input being typed.
fn editor_field(ed: &Editor, f: Field, label: &str, value: String) -> Line<'static> {
    let focused = ed.field == f;
    let mut spans = vec![
        Span::styled(
            format!("{} {label:<8}", if focused { "▶" } else { " " }),
            if focused {
                Style::new().cyan().bold()
            } else {
                Style::new()
            },
        ),
        Span::raw(clean(&value).into_owned()),
    ];
    if focused && !f.is_toggle() {
        spans.push(Span::styled(
            format!("  + {}▏", clean(&ed.input)),
            Style::new().cyan(),
        ));
    }
    Line::from(spans)
}

/// "launched by" for a caller chain (the caller first, so skipped): `/bin/bash (pid 7) ← …`.
/// Raw text: escape it ([`clean`]) where it is drawn.
pub fn launched_by(chain: &[crate::identity::Link]) -> Option<String> {
    let rest: Vec<String> = chain
        .iter()
        .skip(1)
        .map(|l| format!("{} (pid {})", l.path, l.pid))
        .collect();
    (!rest.is_empty()).then(|| rest.join(" ← "))
}

/// Seconds left before a prompt times out, rounded up (`None` before the clock is known).
pub fn seconds_left(deadline_ms: i64, now_ms: i64) -> Option<i64> {
    (now_ms > 0).then(|| ((deadline_ms - now_ms).max(0) + 999) / 1000)
}

/// The live prompt: who asks, what, how long it may wait, and the keys that answer.
fn prompt(frame: &mut Frame<'_>, s: &State, p: &crate::server::approval::Prompt) {
    let area = frame.area();
    let w = 96.min(area.width);
    let room = usize::from(w.saturating_sub(16)).max(8);
    let mut lines = vec![wants_line(p, room), Line::raw("")];
    lines.extend(prompt_caller(p, room));
    lines.extend(prompt_request(s, p, room));
    let n = lines.len();
    dialog(
        frame,
        area,
        w,
        Paragraph::new(lines),
        n,
        Block::bordered()
            .border_type(BorderType::Thick)
            .border_style(Style::new().yellow().bold())
            .title(if p.reason == crate::protocol::Reason::VaultLocked {
                " The vault is locked: a caller is waiting "
            } else {
                " A caller is waiting for your answer "
            })
            .title(Line::raw(format!(" prompt 1 of {} ", s.prompts.len())).right_aligned()),
    );
}

/// `PATH wants to read aws`: the first line of a prompt and of the unlock dialog.
fn wants_line(p: &crate::server::approval::Prompt, room: usize) -> Line<'static> {
    Line::from(vec![
        Span::styled(
            format!(" {} ", shorten_middle(&clean(super::state::who(p)), room)),
            Style::new().bold(),
        ),
        Span::raw("wants to "),
        Span::styled(
            format!("{} {}", clean(&p.action), clean(&p.service)),
            Style::new().yellow().bold(),
        ),
    ])
}

/// A dialog of `rows` lines (plus its border) `w` wide, centered in `area` over what is below.
fn dialog(
    frame: &mut Frame<'_>,
    area: Rect,
    w: u16,
    body: Paragraph<'_>,
    rows: usize,
    block: Block<'_>,
) {
    let h = u16::try_from(rows).unwrap_or(u16::MAX).saturating_add(2);
    let rect = centered(area, w, h);
    frame.render_widget(Clear, rect);
    frame.render_widget(body.block(block), rect);
}

/// A prompt row's label column.
fn prompt_label(t: &str) -> Span<'static> {
    Span::styled(format!(" {t:<12}"), Style::new().gray())
}

/// A prompt row: label and value.
fn prompt_row(t: &str, v: String) -> Line<'static> {
    Line::from(vec![prompt_label(t), Span::raw(v)])
}

/// The prompt's caller: script (and its hash) run by the caller, or the caller; its hash, pid,
/// argv and who launched it. Each value fitted to `room` columns.
fn prompt_caller(p: &crate::server::approval::Prompt, room: usize) -> Vec<Line<'static>> {
    let mut lines = vec![];
    if let Some(script) = &p.script {
        lines.push(prompt_row("script", shorten_middle(&clean(script), room)));
        if let Some(h) = &p.script_hash {
            lines.push(prompt_row("script hash", display::bounded(h, room)));
        }
        lines.push(prompt_row("run by", shorten_middle(&clean(&p.path), room)));
    } else {
        lines.push(prompt_row("caller", shorten_middle(&clean(&p.path), room)));
    }
    lines.push(prompt_row("hash", display::bounded(&p.hash, room)));
    lines.push(prompt_row("pid · argv", {
        // Cleaned once, by `bounded` (joining cleaned words first escaped every escape twice).
        format!(
            "{} · {}",
            p.pid,
            display::bounded(&p.argv.join(" "), room.saturating_sub(10))
        )
    }));
    if let Some(chain) = launched_by(&p.chain) {
        lines.push(prompt_row("launched by", display::bounded(&chain, room)));
    }
    lines
}

/// What the prompt asks, why it is held, the time left and what waits on it.
fn prompt_request(
    s: &State,
    p: &crate::server::approval::Prompt,
    room: usize,
) -> Vec<Line<'static>> {
    let targets = if p.targets.is_empty() {
        "-".to_string()
    } else {
        display::bounded(&p.targets.join(", "), room.saturating_sub(20))
    };
    let left = match seconds_left(p.deadline_ms, s.now_ms) {
        Some(n) => format!("{n} s, then refused"),
        None => "?".into(),
    };
    let queued = s.prompts.len().saturating_sub(1);
    let mut lines = vec![
        prompt_row(
            "asks",
            format!(
                "{} in {} · {} · {targets}",
                clean(&p.action),
                clean(&p.service),
                clean(&p.mode)
            ),
        ),
        prompt_row("why held", display::bounded(&p.message, room)),
        Line::from(vec![
            prompt_label("time left"),
            Span::styled(left, Style::new().yellow().bold()),
        ]),
        prompt_row(
            "waiting",
            format!(
                "{} request(s) on this prompt{}",
                p.waiting,
                if queued > 0 {
                    format!(" · {queued} more prompt(s) queued")
                } else {
                    String::new()
                }
            ),
        ),
    ];
    if super::state::changed_program(s, p).is_some() {
        lines.push(Line::from(vec![
            prompt_label("changed"),
            Span::styled(
                "registered with another hash: u upgrades it (grants kept)",
                Style::new().yellow().bold(),
            ),
        ]));
    }
    lines
}

/// The help overlay: a key column and a description column, grouped by where the keys apply,
/// generated from the keymap.
fn help_lines() -> Vec<Line<'static>> {
    let groups = [
        Scope::Global,
        Scope::Pane(Pane::Pending),
        Scope::Pane(Pane::Audit),
        Scope::Pane(Pane::Policies),
        Scope::Editor,
        Scope::Input,
        Scope::Viewer,
        Scope::Confirm,
        Scope::Prompt,
        Scope::Unlock,
        Scope::Passphrase,
        Scope::Secrets,
    ];
    let mut lines = vec![];
    for scope in groups {
        if !lines.is_empty() {
            lines.push(Line::raw(""));
        }
        let name = scope.name();
        let mut heading: String = name.chars().take(1).flat_map(char::to_uppercase).collect();
        heading.extend(name.chars().skip(1));
        lines.push(Line::styled(heading, Style::new().bold().underlined()));
        for b in KEYMAP.iter().filter(|b| b.scope == scope) {
            lines.push(Line::from(vec![
                Span::styled(format!("  {:<10}", b.label), Style::new().cyan().bold()),
                Span::raw(b.desc),
            ]));
        }
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
    use ratatui::crossterm::event;

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
    fn a_changed_programs_prompt_says_u_upgrades_it() {
        let mut s = sample_state();
        s.now_ms = now_ms();
        update(
            &mut s,
            Action::Approver(crate::server::approval::ApproverEvent::Prompt(Box::new(
                super::super::test_support::prompt("p1"),
            ))),
        );
        assert!(!render(&s, 120, 36).contains("u upgrades it"));
        let mut row = s.policies[0].clone();
        row.entry.path = "/home/me/bin/deploy.py".into();
        s.policies.push(row);
        snap("prompt_changed", &s);
        for (w, h) in [(120, 36), (80, 24)] {
            let screen = render(&s, w, h);
            assert!(
                screen.contains("registered with another hash: u"),
                "{screen}"
            );
        }
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
    fn an_edit_made_outside_keychain_auth_is_marked_and_shown() {
        let mut s = sample_state();
        let held = s.policies[0].entry.hash.clone();
        update(&mut s, Action::Command(Command::Focus(3)));
        // No edit: D says so.
        update(&mut s, Action::Command(Command::ShowEdit));
        assert!(s.modal.is_none());
        assert!(
            s.message
                .as_ref()
                .is_some_and(|(_, m)| m.contains("matches its seal"))
        );
        update(
            &mut s,
            Action::PolicyEdit(Some(crate::tui::state::PolicyEdit {
                summary: "1 entry changed, 1 setting changed".into(),
                lines: vec![
                    format!("- was {} read: -", held.short()),
                    format!("+ now {} read: aws,prod", held.short()),
                    "~ audit_keep: 5 -> 1".into(),
                ],
                held: vec![held],
            })),
        );
        snap("policy_edited", &s);
        update(&mut s, Action::Command(Command::ShowEdit));
        assert_eq!(s.modal, Some(Modal::PolicyEdit));
        snap("policy_edit_overlay", &s);
        // Any key but the scrolling ones closes it.
        update(&mut s, Action::Command(Command::Escape));
        assert!(s.modal.is_none());
        update(&mut s, Action::PolicyEdit(None));
        assert!(!render(&s, 120, 36).contains("EDITED"));
    }

    #[test]
    fn a_wide_terminal_gives_the_columns_room() {
        // 200x60: every secondary column shown, paths whole.
        let mut s = sample_state();
        insta::assert_snapshot!("pending_focused_200x60", render(&s, 200, 60));
        update(&mut s, Action::Command(Command::Focus(3)));
        let screen = render(&s, 200, 60);
        insta::assert_snapshot!("policies_focused_200x60", screen);
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
    fn prompt_modal() {
        let mut s = sample_state();
        s.now_ms = now_ms();
        for id in ["p1", "p2"] {
            update(
                &mut s,
                Action::Approver(crate::server::approval::ApproverEvent::Prompt(Box::new(
                    super::super::test_support::prompt(id),
                ))),
            );
        }
        snap("prompt", &s);
        let screen = render(&s, 120, 36);
        for want in [
            "/home/me/bin/deploy.py",
            "launched by",
            "/usr/bin/bash (pid 5990) ← /usr/sbin/sshd (pid 5900)",
            "25 s, then refused",
            "1 more prompt(s) queued",
            " 2 prompt(s) ·",
            " o  once",
        ] {
            assert!(screen.contains(want), "{want} missing:\n{screen}");
        }
        // Every answer key fits the hint bar at 80 columns.
        let narrow = render(&s, 80, 24);
        for key in [
            " o  once",
            " t  for a time",
            " a  always",
            " b  always r+w",
            " n  deny",
            " x  deny + dismiss",
        ] {
            assert!(narrow.contains(key), "{key} missing:\n{narrow}");
        }
        update(&mut s, Action::Command(Command::AllowFor));
        snap("prompt_for", &s);
        // The countdown is not hidden behind the dialog.
        let screen = render(&s, 80, 24);
        assert!(
            screen.contains("caller waits 25 s more; paused"),
            "{screen}"
        );
        update(&mut s, Action::Command(Command::Escape));
        update(&mut s, Action::Command(Command::AllowAlways));
        snap("prompt_always", &s);
    }

    #[test]
    fn a_prompt_shows_every_launcher_and_escapes_look_alike_paths() {
        // The review's caller: `…/x/` then a Hangul filler and fraction slashes, which read as
        // /usr/bin/git; launched by a look-alike of bash, launched by sshd (two links).
        let mut p = super::super::test_support::prompt("p1");
        let fake = "/home/me/x/\u{3164}\u{2044}usr\u{2044}bin\u{2044}git";
        p.path = fake.into();
        p.script = None;
        p.script_hash = None;
        p.argv = vec!["git".into(), "credential\u{00A0}fill".into()];
        p.chain = vec![
            super::super::test_support::link(fake, 6001, &["git"]),
            super::super::test_support::link("/usr\u{2215}bin\u{2215}bash", 5990, &["bash"]),
            super::super::test_support::link("/usr/sbin/sshd", 5900, &["sshd: me"]),
        ];
        p.message = format!("{fake} (eeeeeeeeeeee) is not approved");
        let mut s = sample_state();
        s.now_ms = now_ms();
        update(
            &mut s,
            Action::Approver(crate::server::approval::ApproverEvent::Prompt(Box::new(p))),
        );
        let screen = render(&s, 120, 36);
        for raw in ['\u{3164}', '\u{2044}', '\u{2215}', '\u{00A0}'] {
            assert!(!screen.contains(raw), "{raw:?} shown as itself:\n{screen}");
        }
        for want in [
            "/home/me/x/\\u{3164}\\u{2044}usr\\u{2044}bin\\u{2044}git",
            "launched by /usr\\u{2215}bin\\u{2215}bash (pid 5990) ← /usr/sbin/sshd (pid 5900)",
            "credential\\u{a0}fill",
        ] {
            assert!(screen.contains(want), "{want} missing:\n{screen}");
        }
        insta::assert_snapshot!("prompt_look_alike_120x36", screen);
    }

    #[test]
    fn who_launched_and_what_may_run_is_shown() {
        let mut s = sample_state();
        // Pending: the script's interpreter and who launched it (the caller itself skipped).
        let screen = render(&s, 200, 36);
        assert!(screen.contains("leftpad (script run by node)"), "{screen}");
        assert!(screen.contains("npm ← bash · leftpad --fix"), "{screen}");
        // Policies: any-script interpreter marked (also without colour), terms and launchers.
        assert!(screen.contains("/usr/bin/python3.11"), "{screen}");
        assert!(screen.contains("⚠ ANY SCRIPT ok"), "{screen}");
        // Terms in few words; a launcher nobody has seen by its short hash…
        assert!(screen.contains("k8s 9m left; via 77777777"), "{screen}");
        // …and one the dashboard knows a path for (registered, or in a chain) by its name.
        let mut known = s.clone();
        known.policies[1].entry.launched_by =
            [crate::tui::test_support::hash('e')].into_iter().collect();
        let screen = render(&known, 200, 36);
        assert!(screen.contains("k8s 9m left; via python3.11"), "{screen}");
        known.policies[1].entry.launched_by =
            [crate::identity::BinaryHash::parse(&"9".repeat(64)).expect("hash")]
                .into_iter()
                .collect();
        known.audit[0].chain = vec![crate::identity::Link {
            hash: Some(crate::identity::BinaryHash::parse(&"9".repeat(64)).expect("hash")),
            ..crate::tui::test_support::link("/usr/bin/git", 77, &["git"])
        }]
        .into();
        let screen = render(&known, 200, 36);
        assert!(screen.contains("k8s 9m left; via git"), "{screen}");
        snap("launch_rule_by_name", &known);
        let mut t = Terminal::new(TestBackend::new(200, 36)).expect("terminal");
        t.draw(|f| draw(f, &s)).expect("draw");
        let buf = t.backend().buffer();
        let row = (0..36u16)
            .find(|&y| {
                (0..200u16)
                    .map(|x| buf[(x, y)].symbol())
                    .collect::<String>()
                    .contains("ANY SCRIPT")
            })
            .expect("the any-script row");
        let x = (0..200u16)
            .find(|&x| buf[(x, row)].symbol() == "⚠")
            .expect("marker");
        assert_eq!(buf[(x, row)].fg, Color::Red, "marked in red");
        s.mono = true;
        assert!(
            render(&s, 200, 36).contains("⚠ ANY SCRIPT"),
            "marker kept in NO_COLOR"
        );
        s.mono = false;
        // The approve editor says it in full.
        update(&mut s, Action::Command(Command::Approve));
        let screen = render(&s, 120, 36);
        assert!(screen.contains("script run by /usr/bin/node"), "{screen}");
        assert!(
            screen.contains("launched by /usr/bin/npm (pid 5140) ← /usr/bin/bash (pid 5100)"),
            "{screen}"
        );
        // The audit detail: the record's chain and script on top of its fields.
        let mut s = sample_state();
        let mut r = record("success", "aws");
        r.path = Some("/usr/bin/python3.11".into());
        r.script = Some("/home/me/bin/deploy.py".into());
        r.chain = vec![
            link("/usr/bin/python3.11", 6001, &["python3"]),
            link("/usr/bin/bash", 5990, &["bash"]),
        ]
        .into();
        s.audit = vec![r];
        s.audit_sel = 0;
        // The Audit pane's row names the script, not the interpreter.
        let screen = render(&s, 120, 36);
        let row = screen
            .lines()
            .find(|l| l.contains("read aws") && l.contains("prod-api-key"))
            .unwrap_or_else(|| panic!("no audit row: {screen}"));
        assert!(
            row.contains("deploy.py") && !row.contains("python3.11"),
            "{row}"
        );
        update(&mut s, Action::Command(Command::Focus(2)));
        update(&mut s, Action::Command(Command::Enter));
        let screen = render(&s, 120, 36);
        assert!(
            screen.contains("script /home/me/bin/deploy.py run by /usr/bin/python3.11"),
            "{screen}"
        );
        assert!(
            screen.contains("launched by /usr/bin/bash (pid 5990)"),
            "{screen}"
        );
        snap("audit_detail_chain", &s);
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

    /// The passphrase dialog for each of its purposes, and the unlock prompt (fixed clock).
    #[test]
    fn presence_dialogs() {
        use crate::server::approval::ApproverEvent;
        use crate::tui::action::PassOutcome;
        let typed = |s: &mut State, t: &str| {
            for c in t.chars() {
                update(s, Action::Char(c));
            }
        };
        // Attaching to a locked vault: presence (and unlock).
        let mut s = sample_state();
        s.now_ms = now_ms();
        update(&mut s, Action::PresenceNeeded { locked: true });
        typed(&mut s, "correct horse");
        snap("presence_attach", &s);
        // A wrong one: said, with the attempt count.
        update(&mut s, Action::Command(Command::Enter));
        snap("presence_checking", &s);
        update(
            &mut s,
            Action::Passphrase(PassOutcome::of_error(
                "wrong passphrase (attempt 3 since the last unlock)".into(),
            )),
        );
        snap("presence_wrong", &s);
        // A request held while the vault is locked, then its unlock dialog.
        let mut s = sample_state();
        s.now_ms = now_ms();
        s.vault = Some(crate::tui::state::VaultInfo {
            present: true,
            locked: true,
        });
        let mut p = super::super::test_support::prompt("p7");
        p.reason = crate::protocol::Reason::VaultLocked;
        p.message = crate::backend::vault::LOCKED_FIX.into();
        update(&mut s, Action::Approver(ApproverEvent::Prompt(Box::new(p))));
        snap("unlock_prompt", &s);
        update(&mut s, Action::Command(Command::Unlock));
        typed(&mut s, "pw");
        snap("unlock_dialog", &s);
        // "Always" asks again.
        let mut s = sample_state();
        s.now_ms = now_ms();
        s.vault = Some(crate::tui::state::VaultInfo {
            present: true,
            locked: false,
        });
        update(
            &mut s,
            Action::Approver(ApproverEvent::Prompt(Box::new(
                super::super::test_support::prompt("p8"),
            ))),
        );
        update(&mut s, Action::Command(Command::AllowAlways));
        update(&mut s, Action::Command(Command::Enter));
        snap("presence_always", &s);
    }

    /// The Secrets view: the list, then one value revealed (fixed clock: 23 s left).
    #[test]
    fn secrets_view() {
        let mut s = sample_state();
        s.now_ms = now_ms();
        s.vault = Some(crate::tui::state::VaultInfo {
            present: true,
            locked: false,
        });
        s.secrets = Some(crate::tui::state::SecretsView::default());
        update(&mut s, Action::SecretsLoaded(sample_secrets()));
        update(&mut s, Action::Command(Command::Down));
        snap("secrets", &s);
        update(
            &mut s,
            Action::SecretRevealed(
                "aws".into(),
                "prod/secret_access_key".into(),
                crate::tui::state::Secret::of("wJalrXUtnFEMI/K7MDENG"),
            ),
        );
        update(&mut s, Action::Clock(now_ms() + 7_000));
        snap("secrets_revealed", &s);
        // The list waits for the passphrase on a vault.
        let mut s = sample_state();
        s.vault = Some(crate::tui::state::VaultInfo {
            present: true,
            locked: false,
        });
        update(&mut s, Action::Command(Command::Secrets));
        snap("secrets_passphrase", &s);
    }

    #[test]
    fn status_bar_tells_connected_from_disconnected() {
        let mut s = sample_state();
        s.broker.embedded = false;
        let up = render(&s, 120, 36);
        assert!(up.lines().next().is_some_and(|l| l.contains(" CONNECTED ")));
        update(&mut s, Action::StatusFailed("the broker on /run/user/1000/keychain-auth/agent.sock does not answer: connection refused".into()));
        snap("disconnected", &s);
    }

    #[test]
    fn the_title_says_who_can_read_the_store_and_follows_the_vaults_lock() {
        // A plain store, as STATUS reports it: the warning, whole, at 80 columns.
        let mut s = sample_state();
        update(
            &mut s,
            Action::Status {
                backend: "file".into(),
                connections: 1,
                requests: 2,
                pid: 4100,
                locked: None,
            },
        );
        let top = |s: &State, w: u16| render(s, w, 24).lines().next().unwrap_or("").to_string();
        assert!(
            top(&s, 80).contains(" readable by your programs "),
            "{}",
            top(&s, 80)
        );
        snap("store_plain", &s);
        // The keyring is no better.
        update(
            &mut s,
            Action::Status {
                backend: "keyring".into(),
                connections: 1,
                requests: 2,
                pid: 4100,
                locked: None,
            },
        );
        assert!(top(&s, 80).contains("readable by your programs"));
        // The vault: locked, then unlocked live (the embedded broker's watch), no warning.
        update(
            &mut s,
            Action::Status {
                backend: "vault".into(),
                connections: 1,
                requests: 2,
                pid: 4100,
                locked: Some(true),
            },
        );
        assert!(top(&s, 80).contains(" vault locked "), "{}", top(&s, 80));
        assert!(!top(&s, 80).contains("readable"));
        snap("store_vault_locked", &s);
        update(&mut s, Action::VaultLocked(false));
        assert!(top(&s, 80).contains(" vault unlocked "), "{}", top(&s, 80));
        update(&mut s, Action::VaultLocked(true));
        assert!(top(&s, 80).contains(" vault locked "));
        // A broker that does not answer says nothing about a store it cannot see.
        update(&mut s, Action::StatusFailed("gone".into()));
        assert!(!top(&s, 80).contains("vault"), "{}", top(&s, 80));
    }

    #[test]
    fn no_color_keeps_the_selection_visible_in_reverse_video() {
        let mut s = sample_state();
        s.mono = true;
        let mut t = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
        t.draw(|f| draw(f, &s)).expect("draw");
        let buf = t.backend().buffer();
        assert!(
            buf.content
                .iter()
                .all(|c| c.fg == Color::Reset && c.bg == Color::Reset),
            "no colour at all"
        );
        // The selected pending row (first data row) is reversed; the next row is not.
        let row = |y: u16| (1..79).map(|x| buf[(x, y)].modifier).collect::<Vec<_>>();
        assert!(row(3).iter().all(|m| m.contains(Modifier::REVERSED)));
        assert!(row(4).iter().all(|m| !m.contains(Modifier::REVERSED)));
        insta::assert_debug_snapshot!("no_color_80x24", buf);
    }

    #[test]
    fn monochrome_is_detected_from_no_color_and_term() {
        use crate::tui::monochrome;
        use std::ffi::OsStr;
        assert!(monochrome(Some(OsStr::new("1")), Some("xterm-256color")));
        assert!(!monochrome(Some(OsStr::new("")), Some("xterm-256color")));
        assert!(!monochrome(None, Some("xterm-256color")));
        assert!(monochrome(None, Some("vt100")));
        assert!(monochrome(None, Some("xterm-mono")));
    }

    fn policy_record(action: &str, read: &[&str], write: &[&str]) -> crate::audit::Record {
        let mut r = crate::audit::Record::new("policy_change", "dashboard");
        r.ts = "2026-11-24T09:59:50.000Z".into();
        r.action = Some(action.into());
        r.path = Some("/usr/local/bin/deploy".into());
        r.hash = Some(hash('c').to_string());
        r.status = Some("success".into());
        r.read = read.iter().map(std::string::ToString::to_string).collect();
        r.write = write.iter().map(std::string::ToString::to_string).collect();
        r
    }

    #[test]
    fn policy_changes_say_what_changed() {
        let r = policy_record("grant", &["aws", "gcp"], &["k8s"]);
        assert_eq!(
            policy_change(&r).as_deref(),
            Some("grant read +aws +gcp · write +k8s")
        );
        let mut r = policy_record("revoke", &[], &["k8s"]);
        r.search = Some(true);
        assert_eq!(
            policy_change(&r).as_deref(),
            Some("revoke write -k8s · search -")
        );
        let r = policy_record("approve", &[], &[]);
        assert_eq!(
            policy_change(&r).as_deref(),
            Some("approve zero privileges")
        );
        let mut r = policy_record("upgrade", &[], &[]);
        r.old_hash = Some(hash('b').to_string());
        assert_eq!(
            policy_change(&r).as_deref(),
            Some("upgrade bbbbbbbbbbbb → cccccccccccc")
        );
        assert_eq!(policy_change(&record("success", "aws")), None);
        let mut s = sample_state();
        s.audit.push(policy_record("grant", &["aws"], &[]));
        s.audit.push(policy_record("revoke", &[], &["k8s"]));
        update(&mut s, Action::Command(Command::Focus(2)));
        snap("audit_policy_changes", &s);
    }

    #[test]
    fn record_detail_scrolls_and_shows_every_field() {
        let mut s = sample_state();
        s.size = (80, 24);
        let mut r = policy_record("grant", &["aws"], &["k8s"]);
        r.message = Some(format!("a long message {}", "x".repeat(150)));
        r.targets = (0..20).map(|i| format!("target-{i}")).collect();
        s.audit.push(r);
        update(&mut s, Action::Command(Command::Focus(2)));
        update(&mut s, Action::Command(Command::Bottom));
        update(&mut s, Action::Command(Command::Enter));
        assert!(matches!(s.modal, Some(Modal::Detail(_))));
        let top = render(&s, 80, 24);
        assert!(top.contains("grant read +aws · write +k8s"), "{top}");
        insta::assert_snapshot!("detail_scroll_top_80x24", top);
        let key = |c| Action::Key(event::KeyEvent::new(c, event::KeyModifiers::NONE));
        update(&mut s, key(event::KeyCode::Char('j')));
        assert_eq!(s.scroll, 1);
        update(&mut s, key(event::KeyCode::PageDown));
        assert_eq!(s.scroll, 21);
        update(&mut s, key(event::KeyCode::Char('G')));
        let (len, page) = overlay_extent(&s, s.modal.as_ref().expect("modal"));
        assert_eq!(s.scroll, len - page);
        update(&mut s, key(event::KeyCode::Char('j')));
        assert_eq!(s.scroll, len - page, "clamped at the end");
        let bottom = render(&s, 80, 24);
        assert!(bottom.contains("\"write\""), "{bottom}");
        insta::assert_snapshot!("detail_scroll_bottom_80x24", bottom);
        update(&mut s, key(event::KeyCode::PageUp));
        assert_eq!(s.scroll, len - page - 20);
        update(&mut s, key(event::KeyCode::Esc));
        assert!(s.modal.is_none());
    }

    #[test]
    fn paths_are_shortened_in_the_middle() {
        assert_eq!(shorten_middle("/usr/bin/ls", 20), "/usr/bin/ls");
        assert_eq!(
            shorten_middle("/home/me/projects/acme/tools/bin/deploy-tool", 24),
            "/home/me/…/deploy-tool"
        );
        assert_eq!(shorten_middle("/a/very-long-file-name", 10), "…file-name");
        // In the panes, a name that does not fit keeps its start and its end.
        assert_eq!(shorten_path("/a/very-long-file-name", 10), "very-…name");
        assert_eq!(
            shorten_path("/home/me/.cargo/bin/git-credential-keychain-auth", 17),
            "git-cred…ain-auth"
        );
        for w in 0..40 {
            let out = shorten_path("/home/me/projects/acme/tools/bin/deploy-tool", w);
            assert!(out.chars().count() <= w, "{w}: {out}");
        }
        for w in 0..40 {
            let out = shorten_middle("/home/me/projects/acme/tools/bin/deploy-tool", w);
            assert!(out.chars().count() <= w, "{w}: {out}");
        }
    }

    #[test]
    fn entries_that_cut_alike_are_told_apart() {
        let w = 17;
        let items: Vec<(String, usize)> = [
            "/home/me/.cargo/bin/git-credential-keychain-auth",
            "/home/me/.cargo/bin/docker-credential-keychain-auth",
            "/srv/a/release-2026-11/bin/deploy-production-tool",
            "/srv/a/release-2026-12/bin/deploy-production-tool",
            "/usr/bin/ls",
        ]
        .iter()
        .map(|p| (p.to_string(), w))
        .collect();
        let out = fit_distinct(&items);
        for (i, a) in out.iter().enumerate() {
            assert!(a.chars().count() <= w, "{a}");
            for b in &out[i + 1..] {
                assert_ne!(a, b, "{out:?}");
            }
        }
        assert_eq!(out[0], "git-cred…ain-auth");
        assert_eq!(out[1], "docker-c…ain-auth");
        assert!(out[2].contains("11") && out[3].contains("12"), "{out:?}");
        assert_eq!(out[4], "/usr/bin/ls");
        // At 120×36 and 80×24, in the Policies pane.
        let mut s = sample_state();
        for (i, (path, _)) in items.iter().take(4).enumerate() {
            let mut row = s.policies[0].clone();
            row.entry.path = path.into();
            row.entry.hash = crate::tui::test_support::hash(char::from(b'1' + i as u8));
            s.policies.push(row);
        }
        s.pane = Pane::Policies;
        for (w, h) in [(120, 36), (80, 24)] {
            let screen = render(&s, w, h);
            let rows: Vec<&str> = screen
                .lines()
                .filter(|l| {
                    l.contains("credential")
                        || l.contains("…ain-auth")
                        || l.contains("deploy-pro")
                        || l.contains("…tool")
                })
                .collect();
            for (i, a) in rows.iter().enumerate() {
                for b in &rows[i + 1..] {
                    assert_ne!(a[13..40], b[13..40], "{w}x{h}:\n{screen}");
                }
            }
        }
        snap("distinct_paths", &s);
    }

    #[test]
    fn policies_keep_terms_and_launch_rules_readable_at_80x24() {
        let mut s = sample_state();
        // deploy: a timed term and a launch rule whose launcher the dashboard knows by path;
        // mycli: used; python3.11: neither term nor use.
        let git = crate::identity::BinaryHash::parse(&"9".repeat(64)).expect("hash");
        s.policies[1].entry.launched_by = [git.clone()].into_iter().collect();
        s.audit[0].chain = vec![crate::identity::Link {
            hash: Some(git),
            ..link("/usr/bin/git", 77, &["git"])
        }]
        .into();
        s.pane = Pane::Policies;
        // Every row, selected in turn: what its columns leave out at 80 columns is on the
        // pane's bottom line, and the hint bar names the key that shows the entry in full.
        let expected = [
            "mycli: no terms, no launch rule · last used 11-24 09:59:30",
            "deploy: k8s 9m left; via git · no use in the log",
            "python3.11: no terms, no launch rule · no use in the log",
        ];
        for (i, want) in expected.iter().enumerate() {
            s.policy_sel = i;
            let screen = render(&s, 80, 24);
            let lines: Vec<&str> = screen.lines().collect();
            assert!(lines[22].contains(want), "row {i}: {}", lines[22]);
            assert!(
                lines[23].contains("i  show the binary in full"),
                "{}",
                lines[23]
            );
        }
        // Unfocused, the pane still says it for its selected row.
        s.pane = Pane::Pending;
        assert!(render(&s, 80, 24).contains(expected[2]), "unfocused");
        s.pane = Pane::Policies;
        s.policy_sel = 1;
        snap("policies_detail", &s);
        // At 120 columns the terms fit their column: no bottom line. Two launch rules do not:
        // the line says them whole.
        let screen = render(&s, 120, 36);
        assert!(screen.contains("k8s 9m left; via git"), "{screen}");
        assert!(!screen.contains("deploy: k8s"), "{screen}");
        let mut two = s.clone();
        two.policies[1]
            .entry
            .launched_by
            .insert(crate::tui::test_support::hash('e'));
        let screen = render(&two, 120, 36);
        assert!(
            screen.contains("deploy: k8s 9m left; via git,python3.11"),
            "{screen}"
        );
        // A line longer than the border is cut with "…" (i shows it whole); a hostile service
        // name is escaped there as everywhere.
        let mut long = s.clone();
        for i in 0..12 {
            long.policies[1]
                .entry
                .allowed_read_services
                .insert(format!("service-number-{i}"));
        }
        long.policies[1]
            .entry
            .allowed_write_services
            .insert("evil\u{1b}[2J".into());
        let screen = render(&long, 80, 24);
        let bottom = screen.lines().nth(22).expect("bottom line");
        assert!(
            bottom.contains("deploy: read k8s,service-number-0,"),
            "{bottom}"
        );
        assert!(
            bottom.contains("… ━") && bottom.ends_with("┛\""),
            "cut: {bottom}"
        );
        // 80 columns between the quotes render() puts around each line.
        assert_eq!(bottom.chars().count(), 82, "within the border: {bottom}");
        long.policies[1].entry.allowed_read_services.clear();
        let screen = render(&long, 80, 24);
        let bottom = screen.lines().nth(22).expect("bottom line");
        assert!(!bottom.contains('\u{1b}'), "{bottom}");
        assert!(bottom.contains("write evil"), "{bottom}");
        // i: the entry in full, launch rules by path and hash, terms with their end.
        update(&mut s, Action::Command(Command::ShowBinary));
        assert!(matches!(s.modal, Some(Modal::Binary(_))));
        for (w, h) in [(80, 24), (120, 36)] {
            let screen = render(&s, w, h);
            for want in [
                "/usr/local/bin/deploy",
                "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
                "changed → cccccccc: the file is now sha256:cccc",
                "k8s: 9m left (until 2026-11-24 10:",
                "/usr/bin/git (sha256:9999999999",
                "registered  2026-11-21T12:30:00Z",
                "last used   no use in the log",
            ] {
                assert!(screen.contains(want), "{w}x{h} lacks {want}:\n{screen}");
            }
        }
        snap("binary_in_full", &s);
        update(&mut s, Action::Command(Command::Escape));
        assert!(s.modal.is_none());
    }

    #[test]
    fn last_used_shows_uses_older_than_the_loaded_records() {
        let mut s = sample_state();
        s.audit.clear();
        s.last_uses.insert(
            crate::tui::test_support::hash('b').to_string(),
            "2026-09-30T23:10:00.000Z".into(),
        );
        s.pane = Pane::Policies;
        let screen = render(&s, 120, 36);
        let deploy = screen
            .lines()
            .find(|l| l.contains("bbbbbbbbbbbb"))
            .expect("deploy row");
        assert!(deploy.contains("09-30 23:10:00"), "{deploy}");
        snap("last_used_whole_log", &s);
    }

    #[test]
    fn layout_keeps_what_matters_at_80x24() {
        let mut s = sample_state();
        s.broker.socket =
            "/run/user/1000/keychain-auth/a-rather-long-directory-name/agent.sock".into();
        s.pending[0].path = "/home/me/projects/acme/tools/node_modules/.bin/deploy-tool".into();
        s.pending[0].interpreter = None;
        let screen = render(&s, 80, 24);
        let lines: Vec<&str> = screen.lines().collect();
        assert!(
            lines[0].contains("agent.sock"),
            "socket path kept whole at its end: {}",
            lines[0]
        );
        assert!(lines[0].contains("2 pending"), "{}", lines[0]);
        assert!(screen.contains("/home/me/…/deploy-tool"), "{screen}");
        assert!(screen.contains("(changed version"), "{screen}");
        assert!(screen.contains("version)"), "marker not cut: {screen}");
        let hints = lines[23];
        assert!(
            hints.contains("? ") && hints.contains("help") && hints.contains("q  quit"),
            "{hints}"
        );
        insta::assert_snapshot!("layout_80x24", screen);
        // The first-run notice (embedded, file store): whole, in plain words, above the hint
        // bar, which stays.
        s.notice = Some(crate::tui::broker::first_screen_text(Some(
            crate::backend::BackendKind::File,
        )));
        let screen = render(&s, 80, 24);
        let lines: Vec<&str> = screen.lines().collect();
        assert!(screen.contains("keychain-auth install."), "{screen}");
        assert!(
            screen.contains("(keychain-auth doctor explains)."),
            "{screen}"
        );
        assert!(!screen.contains("Secret Service") && !screen.contains("org.freedesktop"));
        assert!(
            lines[23].contains("q  quit"),
            "hint bar kept: {}",
            lines[23]
        );
        assert!(
            lines[22].contains("doctor explains"),
            "right above it: {screen}"
        );
        assert!(screen.contains("3 Policies"), "the panes stay: {screen}");
        insta::assert_snapshot!("notice_wraps_80x24", screen);
        let screen = render(&s, 120, 36);
        assert!(
            screen.contains("(keychain-auth doctor explains)."),
            "{screen}"
        );
        insta::assert_snapshot!("notice_wraps_120x36", screen);
        // Gone at the first key; the panes take the room back.
        update(
            &mut s,
            Action::Key(event::KeyEvent::new(
                event::KeyCode::Char('j'),
                event::KeyModifiers::NONE,
            )),
        );
        assert!(s.notice.is_none());
    }

    #[test]
    fn search_shows_its_filter_progress_and_no_match() {
        let mut s = sample_state();
        update(&mut s, Action::Command(Command::Focus(2)));
        update(&mut s, Action::Command(Command::Filter));
        for c in "denied".chars() {
            update(&mut s, Action::Char(c));
        }
        update(&mut s, Action::Command(Command::Enter));
        let mut p = crate::tui::state::SearchProgress {
            records: 120_345,
            bytes: 30_000_000,
            total_bytes: 250_000_000,
            done: false,
        };
        update(
            &mut s,
            Action::SearchFound(1, vec![record("denied", "gcp")], p),
        );
        let running = render(&s, 120, 36);
        assert!(running.contains("Audit · filter \"denied\""), "{running}");
        assert!(
            running.contains("searching… 120,345 records (12%)"),
            "{running}"
        );
        insta::assert_snapshot!("search_running_120x36", running);
        p.done = true;
        p.records = 1_000_000;
        p.bytes = p.total_bytes;
        update(&mut s, Action::SearchFound(1, vec![], p));
        assert!(render(&s, 120, 36).contains("1 match in 1,000,000 records"));
        // No match at all.
        update(&mut s, Action::Command(Command::Filter));
        update(&mut s, Action::Char('z'));
        update(&mut s, Action::Command(Command::Enter));
        update(&mut s, Action::SearchFound(2, vec![], p));
        let none = render(&s, 120, 36);
        assert!(none.contains("No match in 1,000,000 records."), "{none}");
        insta::assert_snapshot!("search_no_match_120x36", none);
    }

    #[test]
    fn hostile_names_are_shown_escaped() {
        let mut s = sample_state();
        s.pending[0].path = "/tmp/evil\x1b[31m\nname\u{202e}gpj".into();
        s.pending[0].argv = vec!["evil".into(), "\x1b]0;pwned\x07".into(), "\x1b[2J".into()];
        s.pending[0].interpreter = None;
        s.pending[0].chain[1].path = "/tmp/np\x1b[2Jm\u{202e}".into();
        s.audit[0].path = Some("/tmp/evil\x1b[31m\nname".into());
        s.audit[0].reason = Some("bad\rreason\u{9b}".into());
        let screen = render(&s, 120, 36);
        assert!(!screen.contains('\x1b') && !screen.contains('\u{202e}'));
        insta::assert_snapshot!("hostile_names_120x36", screen);
        update(&mut s, Action::Command(Command::Approve));
        let screen = render(&s, 120, 36);
        assert!(!screen.contains('\x1b') && !screen.contains('\u{202e}'));
        assert!(screen.contains("launched by /tmp/np\\x1b[2Jm"), "{screen}");
        insta::assert_snapshot!("hostile_names_approve_120x36", screen);
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
