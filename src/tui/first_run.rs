//! The dashboard's first run (SPEC §16): started on a fresh home — no vault, no file store, no
//! config.json, no audit log, and no store chosen by `KEYCHAIN_AUTH_BACKEND` — it offers to keep
//! the secrets in a vault, asks for the passphrase twice (never shown), and creates it before
//! the dashboard's broker starts; or, declined, says that the plain store is kept. Its own small
//! screen, in the same style: a pure [`update`] on key presses, a [`draw`], and [`run`].

use super::action::Command;
use super::keymap::{self, Scope};
use super::state::Secret;
use crate::paths::Paths;
use ratatui::Frame;
use ratatui::crossterm::event::{self, Event, KeyEvent, KeyEventKind};
use ratatui::layout::Rect;
use ratatui::style::{Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph, Wrap};

/// Whether this is a first run the dashboard offers a vault on.
pub fn fresh(paths: &Paths) -> bool {
    let chosen = std::env::var("KEYCHAIN_AUTH_BACKEND").ok();
    matches!(chosen.as_deref(), None | Some("" | "auto" | "vault"))
        && !paths.vault.exists()
        && !paths.file_store.exists()
        && !paths.config.exists()
        && !paths.audit.exists()
}

/// Where the first run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The question: a vault, or the plain store.
    Ask,
    /// The passphrase, first time.
    First,
    /// The passphrase again.
    Second,
    /// Being created (the key derivation takes about a second).
    Creating,
}

/// The first run's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstRun {
    /// The step.
    pub step: Step,
    /// The passphrase typed the first time.
    pub first: Secret,
    /// What is being typed.
    pub input: Secret,
    /// Why the last step failed (the passphrases differ, the creation failed).
    pub error: Option<String>,
}

impl Default for FirstRun {
    fn default() -> FirstRun {
        FirstRun {
            step: Step::Ask,
            first: Secret::new(),
            input: Secret::new(),
            error: None,
        }
    }
}

/// What a key press leads to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stay on this screen.
    Stay,
    /// Create the vault with this passphrase.
    Create(Secret),
    /// Keep the plain store.
    Declined,
    /// Quit (ctrl-c).
    Quit,
}

/// The keymap scope of a step: its keys come from the keymap, like the dashboard's.
pub fn scope(s: &FirstRun) -> Scope {
    match s.step {
        Step::Ask | Step::Creating => Scope::FirstRun,
        Step::First | Step::Second => Scope::Passphrase,
    }
}

/// Applies one key press.
pub fn update(s: &mut FirstRun, key: KeyEvent) -> Outcome {
    if s.step == Step::Creating {
        return Outcome::Stay;
    }
    let command = keymap::lookup(scope(s), key);
    match (s.step, command) {
        (_, Some(Command::Quit)) => Outcome::Quit,
        (Step::Ask, Some(Command::Yes)) => {
            s.step = Step::First;
            s.error = None;
            Outcome::Stay
        }
        (Step::Ask, Some(Command::No)) => Outcome::Declined,
        (Step::First | Step::Second, Some(Command::Escape)) => {
            *s = FirstRun::default();
            Outcome::Stay
        }
        (Step::First, Some(Command::Enter)) if s.input.is_empty() => {
            s.error = Some("an empty passphrase is refused".into());
            Outcome::Stay
        }
        (Step::First, Some(Command::Enter)) => {
            s.first = std::mem::take(&mut s.input);
            s.step = Step::Second;
            s.error = None;
            Outcome::Stay
        }
        (Step::Second, Some(Command::Enter)) => {
            let again = std::mem::take(&mut s.input);
            if again == s.first {
                s.step = Step::Creating;
                s.error = None;
                Outcome::Create(again)
            } else {
                s.first = Secret::new();
                s.step = Step::First;
                s.error = Some("the two passphrases differ: type it again".into());
                Outcome::Stay
            }
        }
        (Step::First | Step::Second, None) => {
            match key.code {
                event::KeyCode::Char(c) if !c.is_control() => s.input.push(c),
                event::KeyCode::Backspace => s.input.pop(),
                _ => {}
            }
            Outcome::Stay
        }
        _ => Outcome::Stay,
    }
}

/// Draws the first-run screen.
pub fn draw(frame: &mut Frame<'_>, s: &FirstRun) {
    let area = frame.area();
    let w = 76.min(area.width);
    let mut lines: Vec<Line<'static>> = vec![
        Line::raw("keychain-auth keeps your secrets. Where?"),
        Line::raw(""),
        Line::from(vec![
            Span::styled("A vault (recommended): ", Style::new().green().bold()),
            Span::raw(
                "encrypted under a passphrase only you know. Only the broker can read it, and widening what a program may do needs the passphrase, so a program running as you cannot approve itself.",
            ),
        ]),
        Line::raw(""),
        Line::from(vec![
            Span::styled("The plain store: ", Style::new().yellow().bold()),
            Span::raw(
                "no passphrase; the keyring, or a file in your home, which other programs of yours can read (keychain-auth init makes a vault later).",
            ),
        ]),
        Line::raw(""),
    ];
    match s.step {
        Step::Ask => lines.push(Line::styled(
            "Create a vault now? y: yes, n: keep the plain store",
            Style::new().bold(),
        )),
        Step::First | Step::Second => {
            let which = if s.step == Step::First {
                "Vault passphrase"
            } else {
                "The same again"
            };
            let marks = "•".repeat(s.input.chars().min(usize::from(w.saturating_sub(24))));
            lines.push(Line::from(vec![
                Span::raw(format!("{which:<18}")),
                Span::styled(format!("{marks}▏"), Style::new().cyan()),
            ]));
            lines.push(
                Line::raw("never shown; forgotten, it cannot be recovered: nothing opens the vault without it")
                    .dark_gray(),
            );
        }
        Step::Creating => lines.push(Line::styled(
            "creating the vault (the key derivation takes about a second)…",
            Style::new().yellow(),
        )),
    }
    if let Some(e) = &s.error {
        lines.push(Line::styled(e.clone(), Style::new().red().bold()));
    }
    let inner = w.saturating_sub(2).max(1);
    let height = Paragraph::new(lines.clone())
        .wrap(Wrap { trim: false })
        .line_count(inner);
    let h = u16::try_from(height).unwrap_or(u16::MAX).saturating_add(2);
    let rect = centered(area, w, h.min(area.height.saturating_sub(1)));
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::bordered()
                .border_type(BorderType::Thick)
                .border_style(Style::new().magenta().bold())
                .title(" First run: keep your secrets in a vault? "),
        ),
        rect,
    );
    // The keys, from the keymap.
    let mut spans = vec![];
    for b in keymap::hints(scope(s)) {
        spans.push(Span::styled(
            format!(" {} ", b.label),
            Style::new().black().on_gray(),
        ));
        spans.push(Span::raw(format!(" {} ", b.desc)));
    }
    let bar = Rect {
        y: area.bottom().saturating_sub(1),
        height: 1.min(area.height),
        ..area
    };
    frame.render_widget(Line::from(spans), bar);
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    Rect {
        x: area.x + area.width.saturating_sub(w) / 2,
        y: area.y + area.height.saturating_sub(h) / 2,
        width: w.min(area.width),
        height: h.min(area.height),
    }
}

/// What the person chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The vault was created (and is held unlocked in this process).
    Created,
    /// The plain store is kept.
    Declined,
    /// ctrl-c: quit the dashboard.
    Quit,
}

/// Runs the first-run screen on the terminal until a choice is made (and the vault created).
pub fn run(paths: &Paths) -> Result<Choice, String> {
    let mut terminal = ratatui::try_init().map_err(|e| format!("cannot open the terminal: {e}"))?;
    let mut s = FirstRun::default();
    let result = loop {
        if let Err(e) = terminal.draw(|f| draw(f, &s)) {
            break Err(format!("cannot draw: {e}"));
        }
        let key = match event::read() {
            Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => k,
            Ok(_) => continue,
            Err(e) => break Err(format!("cannot read the terminal: {e}")),
        };
        match update(&mut s, key) {
            Outcome::Stay => {}
            Outcome::Declined => break Ok(Choice::Declined),
            Outcome::Quit => break Ok(Choice::Quit),
            Outcome::Create(secret) => {
                let _ = terminal.draw(|f| draw(f, &s));
                match crate::vault_cli::create_fresh(paths, secret.expose().as_bytes()) {
                    Ok(()) => break Ok(Choice::Created),
                    Err(e) => {
                        s = FirstRun {
                            error: Some(format!("the vault was not created: {e}")),
                            ..FirstRun::default()
                        };
                    }
                }
            }
        }
    };
    ratatui::restore();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::{KeyCode, KeyModifiers};

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    fn typed(s: &mut FirstRun, t: &str) {
        for c in t.chars() {
            assert_eq!(update(s, key(KeyCode::Char(c))), Outcome::Stay);
        }
    }

    /// The screen at a size, as text.
    fn render(s: &FirstRun, w: u16, h: u16) -> String {
        let mut t =
            ratatui::Terminal::new(ratatui::backend::TestBackend::new(w, h)).expect("terminal");
        t.draw(|f| draw(f, s)).expect("draw");
        t.backend().to_string()
    }

    fn snap(name: &str, s: &FirstRun) {
        insta::assert_snapshot!(format!("{name}_120x36"), render(s, 120, 36));
        insta::assert_snapshot!(format!("{name}_80x24"), render(s, 80, 24));
    }

    #[test]
    fn yes_asks_the_passphrase_twice_and_creates_only_when_they_match() {
        let mut s = FirstRun::default();
        assert_eq!(update(&mut s, key(KeyCode::Char('y'))), Outcome::Stay);
        assert_eq!(s.step, Step::First);
        // Empty: refused.
        assert_eq!(update(&mut s, key(KeyCode::Enter)), Outcome::Stay);
        assert!(s.error.is_some());
        // y and n are text here.
        typed(&mut s, "yn horse");
        assert_eq!(update(&mut s, key(KeyCode::Enter)), Outcome::Stay);
        assert_eq!(s.step, Step::Second);
        assert!(!format!("{s:?}").contains("horse"), "never in Debug");
        typed(&mut s, "yn hors");
        assert_eq!(update(&mut s, key(KeyCode::Enter)), Outcome::Stay);
        assert_eq!(s.step, Step::First, "they differ: from the start");
        assert!(s.error.as_deref().unwrap().contains("differ"));
        typed(&mut s, "yn horse");
        update(&mut s, key(KeyCode::Enter));
        typed(&mut s, "yn horsx");
        update(&mut s, key(KeyCode::Backspace));
        typed(&mut s, "e");
        match update(&mut s, key(KeyCode::Enter)) {
            Outcome::Create(p) => assert_eq!(p.expose(), "yn horse"),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.step, Step::Creating);
        assert_eq!(update(&mut s, key(KeyCode::Char('n'))), Outcome::Stay);
    }

    #[test]
    fn no_keeps_the_plain_store_and_esc_goes_back() {
        let mut s = FirstRun::default();
        update(&mut s, key(KeyCode::Char('y')));
        typed(&mut s, "abc");
        update(&mut s, key(KeyCode::Esc));
        assert_eq!(s, FirstRun::default());
        assert_eq!(update(&mut s, key(KeyCode::Char('n'))), Outcome::Declined);
        let mut s = FirstRun::default();
        assert_eq!(update(&mut s, key(KeyCode::Esc)), Outcome::Declined);
        assert_eq!(
            update(
                &mut FirstRun::default(),
                KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)
            ),
            Outcome::Quit
        );
    }

    #[test]
    fn first_run_screens() {
        let mut s = FirstRun::default();
        snap("first_run_ask", &s);
        update(&mut s, key(KeyCode::Char('y')));
        typed(&mut s, "horse");
        update(&mut s, key(KeyCode::Enter));
        typed(&mut s, "hors");
        update(&mut s, key(KeyCode::Enter));
        typed(&mut s, "bat");
        snap("first_run_differ", &s);
    }

    #[test]
    fn only_a_fresh_home_is_a_first_run() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = |n: &str| dir.path().join(n);
        let paths = Paths {
            socket: p("sock"),
            config: p("config.json"),
            pending: p("pending.json"),
            audit: p("audit.log"),
            file_store: p("keyring.json"),
            vault: p("vault"),
        };
        if std::env::var_os("KEYCHAIN_AUTH_BACKEND").is_some() {
            return;
        }
        assert!(fresh(&paths));
        for f in ["audit.log", "keyring.json", "config.json", "vault"] {
            std::fs::write(p(f), b"x").expect("write");
            assert!(!fresh(&paths), "{f}");
            std::fs::remove_file(p(f)).expect("rm");
        }
    }
}
