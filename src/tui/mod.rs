//! The dashboard, `keychain-auth tui`.
//!
//! Elm-style: terminal input, file-watch events and effect results become [`action::Action`]s;
//! the pure [`update::update`] turns each into state changes plus [`action::Effect`]s; an executor
//! thread runs the effects (admin calls, file reads) and sends results back as actions; the
//! [`view`] draws the state and nothing else. The keymap is data ([`keymap`]) and generates the
//! help overlay and the hint bar.

pub mod action;
pub mod approver;
pub mod broker;
pub mod data;
mod executor;
pub mod first_run;
pub mod keymap;
pub mod log;
pub mod model;
#[cfg(all(test, feature = "screenshots"))]
mod screenshots;
pub mod state;
#[cfg(test)]
mod test_support;
pub mod update;
pub mod view;

use crate::paths::Paths;
use action::{Action, Effect, WatchedFile};
use broker::{Broker, ModeChoice};
use notify::Watcher;
use ratatui::crossterm::event::{
    self, DisableMouseCapture, EnableMouseCapture, Event, KeyEventKind, MouseButton, MouseEventKind,
};
use ratatui::crossterm::execute;
use state::{BrokerInfo, State};
use std::sync::mpsc;

/// How often the dashboard checks on the broker.
pub const TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs the dashboard until the user quits.
pub fn run(paths: Paths, choice: ModeChoice) -> Result<(), String> {
    let (tx, rx) = mpsc::channel::<Action>();
    // Before the broker starts: whatever it logs goes to the message line, never over the
    // screen.
    log::install(tx.clone());
    // A fresh home: a vault, or clearly the plain store, before the broker starts on either.
    let mut first = None;
    if choice != ModeChoice::Connect
        && first_run::fresh(&paths)
        && crate::client::status(&paths.socket, std::time::Duration::from_secs(1)).is_err()
    {
        match first_run::run(&paths)? {
            first_run::Choice::Quit => return Ok(()),
            c => first = Some(c),
        }
    }
    let created = first == Some(first_run::Choice::Created);
    let broker = Broker::open(&paths, choice)?;
    let mut state = initial_state(&paths, &broker);
    if created {
        // The passphrase was just typed twice: presence is proven.
        state.vault = Some(state::VaultInfo {
            present: true,
            locked: false,
        });
        state.message = Some((
            true,
            "vault created: secrets added from now on are encrypted under your passphrase (keychain-auth secret put, or programs you approve)".into(),
        ));
    } else if first == Some(first_run::Choice::Declined) {
        let kept = " You kept the plain store: no passphrase, and your other programs can read what it holds; keychain-auth init makes a vault later.";
        state.notice = Some(format!("{}{kept}", state.notice.take().unwrap_or_default()));
    }
    let (fx_tx, fx_rx) = mpsc::channel::<Effect>();

    // File watcher: any change in the config or data directory reloads what changed.
    let _watcher = watch(&paths, tx.clone());
    spawn_integrity_check(&paths, tx.clone());
    spawn_last_uses(&paths, tx.clone());
    let input_tx = tx.clone();
    std::thread::spawn(move || input_loop(&input_tx));
    spawn_clock(tx.clone());
    // The title follows the embedded vault's lock at once (a connected one: each STATUS).
    broker.watch_vault(tx.clone());
    // The approver: prompts from the broker come in as actions from here on.
    let approver = approver::Approver::start(&broker, tx.clone(), created);

    let mut terminal = ratatui::try_init().map_err(|e| format!("cannot open the terminal: {e}"))?;
    let _ = execute!(std::io::stdout(), EnableMouseCapture);
    let result = std::thread::scope(|scope| {
        let exec_tx = tx.clone();
        let (paths_ref, broker_ref, approver_ref) = (&paths, &broker, &approver);
        scope.spawn(move || executor::run(paths_ref, broker_ref, approver_ref, &fx_rx, &exec_tx));
        let outcome = event_loop(&mut terminal, &mut state, &rx, &fx_tx);
        drop(fx_tx); // stops the executor
        outcome
    });
    let _ = execute!(std::io::stdout(), DisableMouseCapture);
    ratatui::restore();
    approver.stop();
    let embedded = broker.embedded();
    broker.shutdown();
    if embedded && result.is_ok() {
        // Said after the screen is restored, where it stays readable.
        eprintln!(
            "keychain-auth: the dashboard's broker stopped; programs that ask now find none (keychain-auth install keeps one running)"
        );
    }
    result
}

/// The state before anything is loaded: the broker's mode and socket, colour or not, and the
/// first screen's notice (an embedded broker stops with the dashboard; a fallback to the file
/// store, or a locked keyring, is said, not silent).
fn initial_state(paths: &Paths, broker: &Broker) -> State {
    let mut state = State::new(BrokerInfo {
        embedded: broker.embedded(),
        socket: paths.socket.display().to_string(),
        backend: "?".into(),
        connections: 0,
        requests: 0,
        pid: 0,
        reachable: true,
        store: None,
    });
    state.mono = monochrome(
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var("TERM").ok().as_deref(),
    );
    // Above the hint bar, in plain words (the backend's own notice is in the audit log).
    state.notice = broker.first_screen_notice();
    state
}

/// "Last used" from the whole log, read once in the background (the Policies pane shows what
/// the loaded records say until it is done).
fn spawn_last_uses(paths: &Paths, tx: mpsc::Sender<Action>) {
    let audit = paths.audit.clone();
    std::thread::spawn(move || {
        let _ = tx.send(Action::LastUses(data::last_uses(&audit)));
    });
}

/// Audit chain and policy seal, checked once in the background (a long log takes a while),
/// with progress.
fn spawn_integrity_check(paths: &Paths, tx: mpsc::Sender<Action>) {
    let paths = paths.clone();
    std::thread::spawn(move || {
        let line = integrity_line(&paths, &mut |pct| {
            let _ = tx.send(Action::Integrity(format!("checking log… {pct}%")));
        });
        let _ = tx.send(Action::Integrity(line));
    });
}

/// The clock: the reducer asks the broker for STATUS on each tick, so a broker that died shows
/// as DISCONNECTED within a tick and a restarted one is picked up by itself.
fn spawn_clock(tx: mpsc::Sender<Action>) {
    std::thread::spawn(move || {
        while tx
            .send(Action::Clock(chrono::Utc::now().timestamp_millis()))
            .is_ok()
            && tx.send(Action::Tick).is_ok()
        {
            std::thread::sleep(TICK);
        }
    });
}

/// Loads everything once, then draws, waits for actions, applies all that are queued and draws
/// again, until the user quits or every sender is gone.
fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    state: &mut State,
    rx: &mpsc::Receiver<Action>,
    fx_tx: &mpsc::Sender<Effect>,
) -> Result<(), String> {
    for fx in [
        Effect::LoadPending,
        Effect::LoadPolicies,
        Effect::LoadAuditOlder,
        Effect::LoadStatus,
    ] {
        let _ = fx_tx.send(fx);
    }
    let size = terminal.size().map_err(|e| e.to_string())?;
    state.size = (size.width, size.height);
    loop {
        terminal
            .draw(|f| view::draw(f, state))
            .map_err(|e| format!("cannot draw: {e}"))?;
        let Ok(first) = rx.recv() else {
            return Ok(());
        };
        // Apply everything already queued before drawing again.
        for action in std::iter::once(first).chain(rx.try_iter()) {
            for fx in update::update(state, action) {
                let _ = fx_tx.send(fx);
            }
        }
        if state.quit {
            return Ok(());
        }
    }
}

/// True when the dashboard must not rely on colour: `NO_COLOR` set to anything non-empty
/// (<https://no-color.org>), or a terminal type without colours.
pub fn monochrome(no_color: Option<&std::ffi::OsStr>, term: Option<&str>) -> bool {
    no_color.is_some_and(|v| !v.is_empty())
        || term.is_some_and(|t| {
            matches!(t, "dumb" | "vt100" | "vt102" | "vt220" | "linux-m") || t.ends_with("-mono")
        })
}

/// "log verified" / "log BROKEN (line N)". (config.json's seal is checked whenever the file is
/// read, by `data::policy_edit`.)
fn integrity_line(paths: &Paths, progress: &mut dyn FnMut(u64)) -> String {
    use crate::audit::{chain, verify};
    let store = crate::selection::select(paths).map(|s| s.backend);
    let key = match &store {
        Ok(s) => chain::load(s.as_ref()),
        Err(e) => Err(e.clone().into()),
    };
    match &key {
        Ok(Some(k)) => {
            // Asked before the log is read: a chain marked started then has its first record
            // written already.
            let started = store.as_ref().is_ok_and(|s| chain::started(s.as_ref()));
            let mut last = 0u64;
            let mut r = verify::verify_with_progress(&paths.audit, k, &mut |done, total| {
                let pct = done.saturating_mul(100) / total.max(1);
                if pct >= last + 5 {
                    last = pct;
                    progress(pct);
                }
            });
            if started {
                verify::expect_history(&mut r, &paths.audit);
            }
            match r.breaks.first() {
                None => "log verified".to_string(),
                Some(b) => format!("log BROKEN (line {}): audit verify", b.line),
            }
        }
        Ok(None) => "log not chained yet".into(),
        Err(_) => "log unchecked (no key)".into(),
    }
}

/// Turns terminal events into actions, by way of the keymap for the current modal or pane.
fn input_loop(tx: &mpsc::Sender<Action>) {
    // Keys are sent raw: what they mean depends on the state (modal, pane), which the reducer
    // owns.
    loop {
        let Ok(ev) = event::read() else { return };
        let action = match ev {
            Event::Key(k) if k.kind != KeyEventKind::Release => Some(Action::Key(k)),
            Event::Mouse(m) => match m.kind {
                MouseEventKind::Down(MouseButton::Left) => Some(Action::Click(m.column, m.row)),
                MouseEventKind::ScrollDown => Some(Action::Scroll(1)),
                MouseEventKind::ScrollUp => Some(Action::Scroll(-1)),
                _ => None,
            },
            Event::Resize(w, h) => Some(Action::Resize(w, h)),
            _ => None,
        };
        if let Some(a) = action
            && tx.send(a).is_err()
        {
            return;
        }
    }
}

/// Watches the config and data directories; a change to pending.json, config.json or the
/// audit log becomes a [`Action::FileChanged`] for the reducer.
fn watch(paths: &Paths, tx: mpsc::Sender<Action>) -> Option<notify::RecommendedWatcher> {
    let pending = paths.pending.file_name()?.to_os_string();
    let config = paths.config.file_name()?.to_os_string();
    let audit = paths.audit.file_name()?.to_os_string();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        if ev.kind.is_access() {
            return;
        }
        for p in &ev.paths {
            let name = p.file_name();
            let file = if name == Some(pending.as_os_str()) {
                WatchedFile::Pending
            } else if name == Some(config.as_os_str()) {
                WatchedFile::Config
            } else if name == Some(audit.as_os_str()) {
                WatchedFile::Audit
            } else {
                continue;
            };
            let _ = tx.send(Action::FileChanged(file));
        }
    })
    .ok()?;
    for dir in [paths.config.parent(), paths.audit.parent()]
        .into_iter()
        .flatten()
    {
        let _ = crate::fsutil::ensure_private_dir(dir);
        let _ = watcher.watch(dir, notify::RecursiveMode::NonRecursive);
    }
    Some(watcher)
}
