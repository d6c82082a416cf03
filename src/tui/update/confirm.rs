//! Yes/no questions before what cannot be undone: dismissing a pending caller, unregistering or
//! upgrading a binary, and quitting an embedded broker that has callers.

use super::super::action::{Command, Effect};
use super::super::state::{Confirm, Modal, OnDisk, State};
use crate::identity::BinaryHash;

/// A command for the question (taken out of the state): Yes does it, No or Escape closes it.
pub(super) fn command(
    state: &mut State,
    what: Confirm,
    lines: Vec<String>,
    c: Command,
) -> Vec<Effect> {
    match c {
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
    }
}

/// Asks before dismissing the selected pending caller.
pub(super) fn ask_dismiss(state: &mut State) -> Vec<Effect> {
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

/// Asks before unregistering the selected binary.
pub(super) fn ask_unregister(state: &mut State) -> Vec<Effect> {
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

/// Upgrade of the selected binary: when another binary is on disk, fetch the facts for the
/// question ([`ask_upgrade`]); otherwise say why there is nothing to upgrade.
pub(super) fn upgrade(state: &mut State) -> Vec<Effect> {
    let Some(row) = state.policies.get(state.policy_sel) else {
        return vec![];
    };
    let path = row.entry.path.display().to_string();
    match &row.on_disk {
        OnDisk::Changed(_) => vec![Effect::PreviewUpgrade(path)],
        OnDisk::Ok => {
            state.message = Some((true, format!("{path} is unchanged: nothing to upgrade")));
            vec![]
        }
        OnDisk::Missing => {
            state.message = Some((false, format!("{path} is missing: nothing to upgrade to")));
            vec![]
        }
        OnDisk::Unknown => {
            state.message = Some((false, format!("{path} has not been checked yet")));
            vec![Effect::LoadPolicies]
        }
    }
}

/// Asks before upgrading `path` from hash `old` to the binary now on disk.
pub(super) fn ask_upgrade(
    state: &mut State,
    path: String,
    old: &BinaryHash,
    new: &BinaryHash,
    size: u64,
    mtime: &str,
) -> Vec<Effect> {
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

/// Quit: an embedded broker is asked for its live connection count first
/// ([`quit_checked`]); a connected dashboard quits at once.
pub(super) fn quit(state: &mut State) -> Vec<Effect> {
    if state.broker.embedded {
        // The count on screen may be stale: ask the broker now.
        vec![Effect::CheckQuit]
    } else {
        state.quit = true;
        vec![]
    }
}

/// The embedded broker's connection count came back: with callers connected or requests held
/// for an answer, say what they lose and ask; else quit (the dashboard says on exit that the
/// broker stopped).
pub(super) fn quit_checked(state: &mut State, connections: u64) -> Vec<Effect> {
    state.broker.connections = connections;
    let held = state.prompts.len();
    if connections == 0 && held == 0 {
        state.quit = true;
        return vec![];
    }
    let mut lines = vec!["This dashboard runs the only broker: quitting stops it.".to_string()];
    if connections > 0 {
        lines.push(format!(
            "{connections} connected caller(s) lose it now; programs that ask later find no broker."
        ));
    }
    if held > 0 {
        lines.push(format!(
            "{held} request(s) waiting for your answer are refused."
        ));
    }
    lines.push("To keep a broker running on its own: keychain-auth install".into());
    lines.push("Quit and stop the broker?".into());
    let question = Some(Modal::Confirm {
        lines,
        what: Confirm::Quit,
    });
    // Over the prompt when one has the keyboard, else over the panes.
    if state.prompt_focus() {
        state.prompt_modal = question;
    } else {
        state.modal = question;
    }
    vec![]
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

#[cfg(test)]
mod tests {
    use super::human_size;
    use crate::tui::action::{Action, Command, Effect};
    use crate::tui::state::Modal;
    use crate::tui::test_support::*;
    use crate::tui::update::update;

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
    fn quitting_says_what_callers_lose_and_how_to_keep_a_broker() {
        let mut s = sample_state();
        s.broker.embedded = true;
        update(&mut s, Action::Command(Command::Quit));
        update(&mut s, Action::QuitChecked(3));
        let Some(Modal::Confirm { lines, .. }) = &s.modal else {
            panic!("asks")
        };
        let text = lines.join("\n");
        assert!(text.contains("runs the only broker"), "{text}");
        assert!(text.contains("3 connected caller(s) lose it"), "{text}");
        assert!(text.contains("keychain-auth install"), "{text}");
        assert!(!text.contains("waiting for your answer"), "{text}");
    }

    #[test]
    fn quitting_with_a_held_request_asks_over_the_prompt() {
        use crate::tui::test_support::prompt;
        let mut s = sample_state();
        s.broker.embedded = true;
        s.prompts.push(prompt("p1"));
        // ctrl-c while the prompt has the keyboard: the broker is asked, then the question
        // shows over the prompt, even with no caller connected.
        assert_eq!(
            update(&mut s, Action::Command(Command::Quit)),
            vec![Effect::CheckQuit]
        );
        assert!(!s.quit);
        update(&mut s, Action::QuitChecked(0));
        assert!(!s.quit);
        let Some(Modal::Confirm { lines, .. }) = &s.prompt_modal else {
            panic!("asks over the prompt: {:?}", s.prompt_modal)
        };
        assert!(
            lines
                .iter()
                .any(|l| l.contains("1 request(s) waiting for your answer are refused")),
            "{lines:?}"
        );
        // The keys answer the question, not the prompt: n is "no", not "deny".
        assert_eq!(
            crate::tui::keymap::scope(&s),
            crate::tui::keymap::Scope::Confirm
        );
        // No: the prompt is still there to answer.
        update(&mut s, Action::Command(Command::No));
        assert!(!s.quit && s.prompt_modal.is_none() && s.prompts.len() == 1);
        update(&mut s, Action::Command(Command::Quit));
        update(&mut s, Action::QuitChecked(0));
        update(&mut s, Action::Command(Command::Yes));
        assert!(s.quit);
        // A connected dashboard quits at once: the broker keeps running.
        let mut s = sample_state();
        s.broker.embedded = false;
        s.prompts.push(prompt("p1"));
        update(&mut s, Action::Command(Command::Quit));
        assert!(s.quit);
    }

    #[test]
    fn sizes_are_in_human_units() {
        assert_eq!(human_size(0), "0 bytes");
        assert_eq!(human_size(1023), "1,023 bytes");
        assert_eq!(human_size(4_194_304), "4.0 MiB (4,194,304 bytes)");
        assert_eq!(human_size(1_536), "1.5 KiB (1,536 bytes)");
        assert_eq!(human_size(3 << 30), "3.0 GiB (3,221,225,472 bytes)");
    }
}
