//! Presence (SPEC §15) in the dashboard: the passphrase dialog and what needs it.
//!
//! While the broker serves a vault, the dashboard asks for the vault passphrase when it attaches
//! (until then it is shown no prompts and answers none), to unlock the vault for a request held
//! while it is locked, and again for every change that widens access: a prompt's "for a time"
//! and "always", approve, saved permissions, register, upgrade. Narrowing (deny, dismiss,
//! unregister) never asks. The broker checks every passphrase; the dialog only carries it, and
//! says when it was wrong (with the attempt count).

use super::super::action::{Command, Effect, PassOutcome};
use super::super::state::{PassDialog, PassPurpose, State, VaultInfo};
use crate::server::approval::Decision;

/// Whether `fx` widens access (needs the passphrase again while a vault is served).
pub fn widens(fx: &Effect) -> bool {
    match fx {
        Effect::Approve(..) | Effect::SetGrants(..) | Effect::Register(_) | Effect::Upgrade(_) => {
            true
        }
        Effect::Answer(_, d, _) => matches!(d, Decision::For(_) | Decision::Always(_)),
        _ => false,
    }
}

/// What a widening effect does, in words, for the dialog.
fn what(state: &State, fx: &Effect) -> String {
    let name = |h: &crate::identity::BinaryHash| {
        state
            .policies
            .iter()
            .find(|r| r.entry.hash == *h)
            .map(|r| r.entry.path.display().to_string())
            .or_else(|| {
                state
                    .pending
                    .iter()
                    .find(|e| e.hash == *h)
                    .map(|e| e.path.display().to_string())
            })
            .unwrap_or_else(|| h.short().to_string())
    };
    match fx {
        Effect::Approve(h, _) => format!("approve {}", name(h)),
        Effect::SetGrants(h, _) => format!("save the permissions of {}", name(h)),
        Effect::Register(p) => format!("register {p}"),
        Effect::Upgrade(p) => format!("upgrade {p} (its permissions move to the new binary)"),
        Effect::SecretsList => "list your secrets (services, targets, attributes)".into(),
        Effect::SecretReveal(service, target) => {
            format!("reveal the value of {service} / {target}")
        }
        Effect::Answer(id, d, _) => {
            let how = match d {
                Decision::For(t) => {
                    format!("allow for {}", crate::policy::human_duration(t.as_secs()))
                }
                _ => "always allow".to_string(),
            };
            match state.prompts.iter().find(|p| p.id == *id) {
                Some(p) => format!("{how}: {} ({})", crate::tui::state::who(p), super::asked(p)),
                None => how,
            }
        }
        _ => String::new(),
    }
}

/// Effects that widen access wait behind the dialog while a vault is served: the first one
/// opens it (and runs once the passphrase is typed); the others pass.
pub(super) fn gate(state: &mut State, effects: Vec<Effect>) -> Vec<Effect> {
    if !state.needs_presence() {
        return effects;
    }
    let mut out = Vec::with_capacity(effects.len());
    for fx in effects {
        let asks = widens(&fx) || fx.shows_secrets();
        if asks && state.passphrase.is_none() {
            let text = what(state, &fx);
            state.passphrase = Some(PassDialog::new(PassPurpose::Widen(Box::new(fx), text)));
        } else if asks {
            state.message = Some((
                false,
                "one change at a time: finish the passphrase dialog first".into(),
            ));
        } else {
            out.push(fx);
        }
    }
    out
}

/// The broker serves a vault and this dashboard has not proven presence (it just attached, or
/// its broker restarted): the dialog opens, unless another is open.
pub(super) fn needed(state: &mut State, locked: bool) -> Vec<Effect> {
    state.vault = Some(VaultInfo {
        present: false,
        locked,
    });
    if state.passphrase.is_none() {
        state.passphrase = Some(PassDialog::new(PassPurpose::Attach));
    }
    vec![]
}

/// `P`: proves presence (again); with a plain store there is no passphrase.
pub(super) fn open_presence(state: &mut State) -> Vec<Effect> {
    match state.vault {
        None => {
            state.message = Some((
                true,
                "this broker serves a plain store: there is no passphrase to prove presence with"
                    .into(),
            ));
        }
        Some(v) if v.present && !v.locked => {
            state.message = Some((true, "presence is already proven on this dashboard".into()));
        }
        Some(_) => state.passphrase = Some(PassDialog::new(PassPurpose::Attach)),
    }
    vec![]
}

/// A typed character (not while the passphrase is being checked).
pub(super) fn type_char(state: &mut State, c: char) {
    if let Some(d) = &mut state.passphrase
        && !d.checking
        && !c.is_control()
    {
        d.input.push(c);
    }
}

/// Backspace.
pub(super) fn backspace(state: &mut State) {
    if let Some(d) = &mut state.passphrase
        && !d.checking
    {
        d.input.pop();
    }
}

/// A command while the dialog is open: enter sends the passphrase for checking, escape
/// cancels (an unlock prompt's request is then refused `vault_locked`; a widening change is
/// not made), ctrl-c quits.
pub(super) fn command(state: &mut State, c: Command) -> Vec<Effect> {
    let Some(mut d) = state.passphrase.take() else {
        return vec![];
    };
    match c {
        Command::Enter if d.checking => {
            state.passphrase = Some(d);
            vec![]
        }
        Command::Enter if d.input.is_empty() => {
            d.error = Some("type the vault passphrase first".into());
            state.passphrase = Some(d);
            vec![]
        }
        Command::Enter => {
            let secret = std::mem::take(&mut d.input);
            d.checking = true;
            d.error = None;
            let fx = match &d.purpose {
                PassPurpose::Attach | PassPurpose::Unlock(_) => Effect::Presence(secret),
                PassPurpose::Widen(fx, _) => Effect::Present(fx.clone(), secret),
            };
            state.passphrase = Some(d);
            vec![fx]
        }
        Command::Escape => cancel(state, d),
        Command::Quit => {
            let mut fx = cancel(state, d);
            fx.extend(super::confirm::quit(state));
            fx
        }
        _ => {
            state.passphrase = Some(d);
            vec![]
        }
    }
}

/// Closes the dialog without a passphrase.
fn cancel(state: &mut State, d: PassDialog) -> Vec<Effect> {
    match d.purpose {
        PassPurpose::Attach => {
            if state.vault.is_some_and(|v| !v.present) {
                state.message = Some((
                    false,
                    "no presence: this dashboard is shown no prompts and answers none until you type the vault passphrase (P)".into(),
                ));
            }
            vec![]
        }
        // The held request is refused now, `vault_locked` with the fix.
        PassPurpose::Unlock(id) => super::prompt::answer(state, &id, Decision::Deny),
        PassPurpose::Widen(fx, _) => {
            // An answer goes back to its prompt, which still waits for one.
            let what = match *fx {
                Effect::Answer(..) => {
                    "not answered (a change that widens access needs the vault passphrase)"
                }
                Effect::SecretsList => {
                    state.secrets = None;
                    "the Secrets view shows nothing without the vault passphrase"
                }
                Effect::SecretReveal(..) => {
                    "not revealed (a value is shown only after the vault passphrase)"
                }
                _ => "nothing was changed (a change that widens access needs the vault passphrase)",
            };
            state.message = Some((false, format!("cancelled: {what}")));
            vec![]
        }
    }
}

/// A passphrase check came back.
pub(super) fn outcome(state: &mut State, o: PassOutcome) -> Vec<Effect> {
    let Some(mut d) = state.passphrase.take() else {
        // The dialog was cancelled meanwhile: only say what happened.
        let (ok, m) = match o {
            PassOutcome::Accepted(m) => (true, m),
            PassOutcome::Wrong(m) | PassOutcome::Failed(m) => (false, m),
        };
        state.message = Some((ok, m));
        return vec![];
    };
    match o {
        PassOutcome::Wrong(why) => {
            d.checking = false;
            d.error = Some(why);
            state.passphrase = Some(d);
            vec![]
        }
        PassOutcome::Failed(why) => {
            state.message = Some((false, why));
            vec![]
        }
        PassOutcome::Accepted(msg) => accepted(state, d.purpose, msg),
    }
}

/// The passphrase was right: what it was for is done.
fn accepted(state: &mut State, purpose: PassPurpose, msg: String) -> Vec<Effect> {
    let mut msg = msg;
    match purpose {
        PassPurpose::Attach | PassPurpose::Unlock(_) => {
            let was_locked = state.vault.is_some_and(|v| v.locked);
            state.vault = Some(VaultInfo {
                present: true,
                locked: false,
            });
            if msg.is_empty() {
                msg = match purpose {
                    PassPurpose::Unlock(_) => {
                        "the vault is unlocked: the held request goes on".into()
                    }
                    _ if was_locked => "the vault is unlocked and presence proven: prompts are shown and answered here".into(),
                    _ => "presence proven: prompts are shown and answered here; \"for a time\", \"always\" and other changes that widen access ask for the passphrase again".into(),
                };
            }
        }
        PassPurpose::Widen(fx, _) => {
            if let Effect::Answer(id, ..) = *fx {
                // Answered: the prompt leaves the screen (its resolution is ours).
                if let Some(i) = state.prompts.iter().position(|p| p.id == id) {
                    state.prompts.remove(i);
                    if i == 0 {
                        state.prompt_modal = None;
                    }
                    super::prompt::note_answered(state, id);
                }
            }
        }
    }
    if !msg.is_empty() {
        state.message = Some((true, msg));
    }
    vec![]
}

/// A connected broker's reply to an answer: the passphrase dialog's result when it is waiting
/// for this answer, else a failure is said.
pub(super) fn answered(state: &mut State, id: String, error: Option<String>) -> Vec<Effect> {
    let waiting = state.passphrase.as_ref().and_then(|d| match &d.purpose {
        PassPurpose::Widen(fx, _) if d.checking => match fx.as_ref() {
            Effect::Answer(pid, _, label) if *pid == id => Some(label.clone()),
            _ => None,
        },
        _ => None,
    });
    match (waiting, error) {
        (Some(label), None) => outcome(state, PassOutcome::Accepted(label)),
        (Some(_), Some(e)) => outcome(state, PassOutcome::of_error(e)),
        (None, Some(e)) => {
            super::results::done(state, false, format!("the answer was not taken: {e}"))
        }
        (None, None) => vec![],
    }
}

#[cfg(test)]
mod tests {
    use crate::server::approval::{ApproverEvent, Decision};
    use crate::tui::action::{Action, Command, Effect, PassOutcome};
    use crate::tui::keymap::{self, Scope};
    use crate::tui::state::{Modal, PassPurpose, State, VaultInfo};
    use crate::tui::test_support::*;
    use crate::tui::update::update;

    fn typed(s: &mut State, text: &str) {
        for c in text.chars() {
            update(s, Action::Char(c));
        }
    }

    fn enter(s: &mut State) -> Vec<Effect> {
        update(s, Action::Command(Command::Enter))
    }

    /// A dashboard on a vault, presence proven, with prompt `id` on screen.
    fn present_with_prompt(id: &str) -> State {
        let mut s = sample_state();
        s.now_ms = now_ms();
        s.vault = Some(VaultInfo {
            present: true,
            locked: false,
        });
        update(
            &mut s,
            Action::Approver(ApproverEvent::Prompt(Box::new(prompt(id)))),
        );
        s
    }

    #[test]
    fn attaching_to_a_vault_asks_for_presence_and_says_a_wrong_passphrase() {
        let mut s = sample_state();
        update(&mut s, Action::PresenceNeeded { locked: true });
        assert_eq!(s.vault.map(|v| (v.present, v.locked)), Some((false, true)));
        assert_eq!(keymap::scope(&s), Scope::Passphrase);
        // Pane keys are text here: q does not quit, j does not move.
        typed(&mut s, "qj hunter2");
        assert!(!s.quit);
        assert_eq!(s.pending_sel, 0);
        let d = s.passphrase.as_ref().unwrap();
        assert_eq!(d.input.chars(), 10);
        // Never in Debug (what a panic or a log line could show).
        assert!(!format!("{s:?}").contains("hunter2"), "{s:?}");
        let fx = enter(&mut s);
        match fx.as_slice() {
            [Effect::Presence(p)] => assert_eq!(p.expose(), "qj hunter2"),
            other => panic!("{other:?}"),
        }
        assert!(s.passphrase.as_ref().unwrap().checking);
        assert!(
            s.passphrase.as_ref().unwrap().input.is_empty(),
            "sent, not kept"
        );
        // Typing while it is checked does nothing; a wrong one is said with the attempt count.
        typed(&mut s, "x");
        assert!(s.passphrase.as_ref().unwrap().input.is_empty());
        update(
            &mut s,
            Action::Passphrase(PassOutcome::of_error(
                "wrong passphrase (attempt 2 since the last unlock)".into(),
            )),
        );
        let d = s.passphrase.as_ref().unwrap();
        assert!(!d.checking);
        assert_eq!(
            d.error.as_deref(),
            Some("wrong passphrase (attempt 2 since the last unlock)")
        );
        assert_eq!(s.vault.map(|v| v.present), Some(false));
        typed(&mut s, "right");
        assert!(matches!(enter(&mut s).as_slice(), [Effect::Presence(_)]));
        update(
            &mut s,
            Action::Passphrase(PassOutcome::Accepted(String::new())),
        );
        assert!(s.passphrase.is_none());
        assert_eq!(s.vault.map(|v| (v.present, v.locked)), Some((true, false)));
        assert!(
            s.message.as_ref().unwrap().1.contains("unlocked"),
            "{:?}",
            s.message
        );
    }

    #[test]
    fn declining_presence_says_what_it_costs_and_p_asks_again() {
        let mut s = sample_state();
        update(&mut s, Action::PresenceNeeded { locked: false });
        assert!(enter(&mut s).is_empty(), "nothing typed: nothing sent");
        assert!(s.passphrase.as_ref().unwrap().error.is_some());
        assert!(update(&mut s, Action::Command(Command::Escape)).is_empty());
        assert!(s.passphrase.is_none());
        assert!(s.message.as_ref().unwrap().1.contains("answers none"));
        update(&mut s, Action::Command(Command::Presence));
        assert_eq!(
            s.passphrase.as_ref().map(|d| d.purpose.clone()),
            Some(PassPurpose::Attach)
        );
        // With a plain store there is nothing to prove.
        let mut plain = sample_state();
        update(&mut plain, Action::Command(Command::Presence));
        assert!(plain.passphrase.is_none());
    }

    #[test]
    fn once_and_deny_need_nothing_more_for_a_time_and_always_ask_again() {
        // Once: answered at once.
        let mut s = present_with_prompt("p1");
        let fx = update(&mut s, Action::Command(Command::AllowOnce));
        assert!(matches!(fx.as_slice(), [Effect::Answer(id, Decision::Once, _)] if id == "p1"));
        assert!(s.passphrase.is_none());
        // Deny: answered at once.
        let mut s = present_with_prompt("p2");
        let fx = update(&mut s, Action::Command(Command::Deny));
        assert!(matches!(
            fx.as_slice(),
            [Effect::Answer(_, Decision::Deny, _)]
        ));
        // For a time: the duration, then the passphrase; the prompt stays until it is taken.
        let mut s = present_with_prompt("p3");
        update(&mut s, Action::Command(Command::AllowFor));
        let fx = enter(&mut s);
        assert_eq!(
            fx,
            vec![Effect::Editing("p3".into())],
            "the countdown pauses"
        );
        assert_eq!(s.prompts.len(), 1, "still on screen");
        assert!(s.prompt_modal.is_none());
        match &s.passphrase.as_ref().unwrap().purpose {
            PassPurpose::Widen(fx, what) => {
                assert!(matches!(
                    fx.as_ref(),
                    Effect::Answer(_, Decision::For(_), _)
                ));
                assert!(what.contains("allow for 1h"), "{what}");
                assert!(what.contains("deploy.py"), "{what}");
            }
            other => panic!("{other:?}"),
        }
        typed(&mut s, "pw");
        let fx = enter(&mut s);
        match fx.as_slice() {
            [Effect::Present(inner, p)] => {
                assert!(
                    matches!(inner.as_ref(), Effect::Answer(id, Decision::For(_), _) if id == "p3")
                );
                assert_eq!(p.expose(), "pw");
            }
            other => panic!("{other:?}"),
        }
        // The broker refused it: wrong passphrase; the dialog says so and stays.
        update(
            &mut s,
            Action::Answered {
                id: "p3".into(),
                error: Some(
                    "wrong passphrase (attempt 1 since the last unlock); nothing was decided"
                        .into(),
                ),
            },
        );
        assert!(
            s.passphrase
                .as_ref()
                .unwrap()
                .error
                .as_deref()
                .unwrap()
                .contains("attempt 1")
        );
        assert_eq!(s.prompts.len(), 1);
        typed(&mut s, "pw2");
        enter(&mut s);
        update(
            &mut s,
            Action::Answered {
                id: "p3".into(),
                error: None,
            },
        );
        assert!(s.passphrase.is_none());
        assert!(s.prompts.is_empty(), "answered");
        assert!(s.message.as_ref().unwrap().1.starts_with("allowed for 1h"));
        // Its resolution is ours: not said again.
        update(
            &mut s,
            Action::Approver(ApproverEvent::Resolved {
                id: "p3".into(),
                outcome: "time".into(),
                by: Some("dashboard".into()),
            }),
        );
        assert!(s.message.as_ref().unwrap().1.starts_with("allowed for 1h"));
        // Always: the editor, then the passphrase; cancelling goes back to the prompt.
        let mut s = present_with_prompt("p4");
        update(&mut s, Action::Command(Command::AllowAlways));
        assert!(matches!(s.prompt_modal, Some(Modal::Editor(_))));
        enter(&mut s);
        assert!(matches!(
            s.passphrase.as_ref().map(|d| &d.purpose),
            Some(PassPurpose::Widen(fx, _)) if matches!(fx.as_ref(), Effect::Answer(_, Decision::Always(_), _))
        ));
        assert!(update(&mut s, Action::Command(Command::Escape)).is_empty());
        assert_eq!(s.prompts.len(), 1, "back to the prompt");
        assert_eq!(keymap::scope(&s), Scope::Prompt);
        assert!(s.message.as_ref().unwrap().1.contains("not answered"));
    }

    #[test]
    fn edits_that_widen_ask_again_and_narrowing_never_asks() {
        let mut s = sample_state();
        s.vault = Some(VaultInfo {
            present: true,
            locked: false,
        });
        // Approve from Pending: the editor (enter adds the service asked for, enter again
        // saves), then the passphrase.
        update(&mut s, Action::Command(Command::Approve));
        assert!(enter(&mut s).is_empty());
        assert!(s.passphrase.is_none());
        assert!(enter(&mut s).is_empty());
        let purpose = s.passphrase.as_ref().map(|d| d.purpose.clone());
        assert!(
            matches!(&purpose, Some(PassPurpose::Widen(fx, what)) if matches!(fx.as_ref(), Effect::Approve(..)) && what.starts_with("approve ")),
            "{purpose:?}"
        );
        typed(&mut s, "pw");
        assert!(
            matches!(enter(&mut s).as_slice(), [Effect::Present(fx, _)] if matches!(fx.as_ref(), Effect::Approve(..)))
        );
        update(
            &mut s,
            Action::Passphrase(PassOutcome::Accepted("approved x".into())),
        );
        assert!(s.passphrase.is_none());
        assert_eq!(s.message, Some((true, "approved x".into())));
        // Register: asks.
        update(&mut s, Action::Command(Command::Focus(3)));
        update(&mut s, Action::Command(Command::Register));
        typed(&mut s, "/usr/bin/tool");
        assert!(enter(&mut s).is_empty());
        assert!(s.passphrase.is_some());
        update(&mut s, Action::Command(Command::Escape));
        assert!(
            s.message
                .as_ref()
                .unwrap()
                .1
                .contains("nothing was changed")
        );
        // Dismiss and unregister: never ask.
        let mut s = sample_state();
        s.vault = Some(VaultInfo {
            present: true,
            locked: false,
        });
        update(&mut s, Action::Command(Command::Dismiss));
        let fx = update(&mut s, Action::Command(Command::Yes));
        assert!(matches!(fx.as_slice(), [Effect::Dismiss(_)]), "{fx:?}");
        assert!(s.passphrase.is_none());
        update(&mut s, Action::Command(Command::Focus(3)));
        update(&mut s, Action::Command(Command::Unregister));
        let fx = update(&mut s, Action::Command(Command::Yes));
        assert!(matches!(fx.as_slice(), [Effect::Unregister(_)]), "{fx:?}");
        // A plain store never asks.
        let mut plain = sample_state();
        update(&mut plain, Action::Command(Command::Approve));
        enter(&mut plain);
        assert!(matches!(
            enter(&mut plain).as_slice(),
            [Effect::Approve(..)]
        ));
    }

    #[test]
    fn an_unlock_prompt_unlocks_with_the_passphrase_or_refuses_on_escape() {
        let mut s = sample_state();
        s.now_ms = now_ms();
        s.vault = Some(VaultInfo {
            present: true,
            locked: false,
        });
        let mut p = prompt("p9");
        p.reason = crate::protocol::Reason::VaultLocked;
        update(
            &mut s,
            Action::Approver(ApproverEvent::Prompt(Box::new(p.clone()))),
        );
        assert_eq!(keymap::scope(&s), Scope::Unlock);
        assert_eq!(
            s.vault.map(|v| v.locked),
            Some(true),
            "an unlock prompt: locked"
        );
        update(&mut s, Action::VaultLocked(false));
        assert_eq!(s.vault.map(|v| v.locked), Some(false));
        update(&mut s, Action::VaultLocked(true));
        // Answers of an ordinary prompt do nothing here.
        assert!(update(&mut s, Action::Command(Command::AllowOnce)).is_empty());
        let fx = update(&mut s, Action::Command(Command::Unlock));
        assert_eq!(fx, vec![Effect::Editing("p9".into())]);
        assert_eq!(
            s.passphrase.as_ref().map(|d| d.purpose.clone()),
            Some(PassPurpose::Unlock("p9".into()))
        );
        typed(&mut s, "pw");
        assert!(matches!(enter(&mut s).as_slice(), [Effect::Presence(_)]));
        update(
            &mut s,
            Action::Passphrase(PassOutcome::Accepted(String::new())),
        );
        assert_eq!(s.vault.map(|v| v.locked), Some(false));
        assert!(s.message.as_ref().unwrap().1.contains("unlocked"));
        // The broker closes the prompt ("unlocked"); escape instead refuses the request.
        let mut s2 = sample_state();
        s2.vault = s.vault;
        update(
            &mut s2,
            Action::Approver(ApproverEvent::Prompt(Box::new(p))),
        );
        update(&mut s2, Action::Command(Command::Unlock));
        let fx = update(&mut s2, Action::Command(Command::Escape));
        assert!(
            matches!(fx.as_slice(), [Effect::Answer(id, Decision::Deny, _)] if id == "p9"),
            "{fx:?}"
        );
        assert!(s2.prompts.is_empty());
    }
}
