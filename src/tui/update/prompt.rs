//! The broker's live-approval prompts: they arrive from the approver, take the keyboard while
//! shown, and are answered once, allow for a time (a duration input) or always (the editor).
//! A prompt's own dialog lives in `state.prompt_modal`, so a dialog it interrupted stays
//! underneath.

use super::super::action::{Command, Effect};
use super::super::state::{
    Editor, EditorGoal, Field, Modal, PassDialog, PassPurpose, State, changed_program, who,
};
use super::super::view;
use crate::admin::Grants;
use crate::server::approval::{ApproverEvent, Decision, Prompt};

/// Runs `f` on the shown prompt's dialog when there is one (else on the ordinary modal).
pub(super) fn in_prompt_modal<R>(state: &mut State, f: impl FnOnce(&mut State) -> R) -> R {
    if !state.prompt_focus() {
        return f(state);
    }
    std::mem::swap(&mut state.modal, &mut state.prompt_modal);
    let r = f(state);
    std::mem::swap(&mut state.modal, &mut state.prompt_modal);
    r
}

/// A prompt opened or changed, or one was resolved.
pub(super) fn approver_event(state: &mut State, ev: ApproverEvent) -> Vec<Effect> {
    match ev {
        ApproverEvent::Prompt(p) => opened(state, *p),
        ApproverEvent::Resolved { id, outcome, by } => resolved(state, &id, &outcome, by),
        ApproverEvent::NotSaved { id, message } => {
            // Replaces "answered always: …": the caller was refused, and nothing was saved.
            state.message = Some((
                false,
                format!(
                    "NOT SAVED: the grant your answer to prompt {id} asked for: {}; the caller was refused",
                    crate::display::bounded(&message, 200)
                ),
            ));
            vec![]
        }
    }
}

/// A prompt opened (it rings) or changed (it does not).
fn opened(state: &mut State, p: Prompt) -> Vec<Effect> {
    if state.answered.contains(&p.id) {
        return vec![];
    }
    if let Some(old) = state.prompts.iter_mut().find(|o| o.id == p.id) {
        // More (or fewer) requests waiting on it: no new ring.
        *old = p;
        return vec![];
    }
    if p.reason == crate::protocol::Reason::VaultLocked
        && let Some(v) = &mut state.vault
    {
        // A request held for unlock: the vault is locked now, whoever locked it.
        v.locked = true;
    }
    state.prompts.push(p);
    // The prompt's keys show in the hint bar, not an old message.
    state.message = None;
    vec![Effect::Bell]
}

/// Prompt `id` was resolved: ours says nothing more; one resolved elsewhere leaves, saying how.
fn resolved(state: &mut State, id: &str, outcome: &str, by: Option<String>) -> Vec<Effect> {
    if let Some(i) = state.answered.iter().position(|a| *a == id) {
        // Our own answer: its result is already said.
        state.answered.remove(i);
        return vec![];
    }
    let Some(i) = state.prompts.iter().position(|p| p.id == id) else {
        return vec![];
    };
    let p = state.prompts.remove(i);
    if i == 0 {
        state.prompt_modal = None;
    }
    let how = match outcome {
        "timeout" => "timed out: refused".to_string(),
        "withdrawn" => "withdrawn: the caller hung up".to_string(),
        "no_answer" => "closed: no approver answered".to_string(),
        decision => format!(
            "answered \"{}\" by {}",
            decision_name(decision),
            by.as_deref().unwrap_or("another approver")
        ),
    };
    state.message = Some((
        true,
        format!("prompt for {} ({}): {how}", who(&p), asked(&p)),
    ));
    vec![]
}

/// The approver connection was lost: the prompts it held are gone, and that is said.
pub(super) fn approver_lost(state: &mut State) -> Vec<Effect> {
    let n = state.prompts.len();
    state.prompts.clear();
    state.prompt_modal = None;
    state.answered.clear();
    if n > 0 {
        state.message = Some((
            false,
            format!("the broker went away: {n} prompt(s) closed unanswered"),
        ));
    }
    vec![]
}

/// How a decision is said: `once` → `allow once`.
fn decision_name(d: &str) -> &str {
    match d {
        "once" => "allow once",
        "time" => "allow for a time",
        "always" => "always",
        "deny" => "deny",
        "forget" => "deny and dismiss",
        other => other,
    }
}

/// What a prompt asks: `read aws`.
pub fn asked(p: &Prompt) -> String {
    format!("{} {}", p.action, p.service)
}

/// Exactly what a prompt asks, as grants (what the broker grants for an empty "always").
pub fn asked_grants(p: &Prompt) -> Grants {
    let mut g = Grants {
        search: p.action == "search" || p.mode == "prefix",
        ..Grants::default()
    };
    match p.action.as_str() {
        "write" | "delete" => g.write.push(p.service.clone()),
        _ => g.read.push(p.service.clone()),
    }
    g
}

/// `script run by …` and `launched by …` for a prompt's caller.
fn prompt_about(p: &Prompt) -> Vec<String> {
    let mut v = vec![];
    if p.script.is_some() {
        v.push(format!("script run by {}", p.path));
    }
    if let Some(l) = view::launched_by(&p.chain) {
        v.push(format!("launched by {l}"));
    }
    v
}

/// `script run by …` and `launched by …` for a pending caller.
pub fn pending_about(e: &crate::pending::PendingEntry) -> Vec<String> {
    let mut v = vec![];
    if let Some(i) = &e.interpreter {
        v.push(format!("script run by {}", i.path.display()));
    }
    if let Some(l) = view::launched_by(&e.chain) {
        v.push(format!("launched by {l}"));
    }
    v
}

/// Answers the prompt `id`: it leaves the screen at once; the executor sends the answer.
pub(super) fn answer(state: &mut State, id: &str, decision: Decision) -> Vec<Effect> {
    let Some(i) = state.prompts.iter().position(|p| p.id == id) else {
        return vec![];
    };
    if state.needs_presence() && matches!(decision, Decision::For(_) | Decision::Always(_)) {
        // The prompt stays (its countdown paused) until the broker took the passphrase.
        let label = answer_label(&state.prompts[i], &decision);
        let fx = Effect::Answer(id.to_string(), decision, label);
        state.prompt_modal = None;
        return super::gate(state, vec![fx, Effect::Editing(id.to_string())]);
    }
    let p = state.prompts.remove(i);
    note_answered(state, p.id.clone());
    let label = answer_label(&p, &decision);
    vec![Effect::Answer(p.id, decision, label)]
}

/// Remembers that this dashboard answered prompt `id` (its resolution is then not said again).
pub(super) fn note_answered(state: &mut State, id: String) {
    // Bounded: an answer the broker refused never comes back resolved.
    if state.answered.len() >= 64 {
        state.answered.remove(0);
    }
    state.answered.push(id);
}

/// What the message line says once an answer is sent: `allowed once: /usr/bin/x (read aws)`.
fn answer_label(p: &Prompt, decision: &Decision) -> String {
    let verb = match &decision {
        Decision::Once => "allowed once".to_string(),
        Decision::For(d) => format!("allowed for {}", crate::policy::human_duration(d.as_secs())),
        // Not "allowed": the broker saves the grant after the answer (a failure is said then).
        Decision::Always(_) => "answered always".to_string(),
        Decision::Deny => "denied".to_string(),
        Decision::Forget => "denied and dismissed".to_string(),
    };
    // "always" saves what the editor holds, which may be more than was asked.
    let what = match decision {
        Decision::Always(g) => saved_grants(g).unwrap_or_else(|| asked(p)),
        _ => asked(p),
    };
    format!("{verb}: {} ({what})", who(p))
}

/// `read api,extra · write api · search` for an "always" answer's grants (`None`: nothing).
fn saved_grants(g: &Grants) -> Option<String> {
    let mut parts = vec![];
    if !g.read.is_empty() {
        parts.push(format!("read {}", g.read.join(",")));
    }
    if !g.write.is_empty() {
        parts.push(format!("write {}", g.write.join(",")));
    }
    if g.search {
        parts.push("search".to_string());
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// An unlock prompt's enter: the passphrase dialog, for that prompt (its countdown pauses
/// meanwhile); the dialog's keys are `passphrase`'s.
fn open_unlock(state: &mut State, id: String) -> Vec<Effect> {
    state.passphrase = Some(PassDialog::new(PassPurpose::Unlock(id.clone())));
    vec![Effect::Editing(id)]
}

/// Keys while a prompt is shown: its answers, or its dialog's keys.
pub(super) fn command(state: &mut State, c: Command) -> Vec<Effect> {
    if state.prompt_modal.is_some() {
        return in_prompt_modal(state, |s| super::modal_command(s, c));
    }
    let Some(p) = state.prompts.first() else {
        return vec![];
    };
    let id = p.id.clone();
    if p.reason == crate::protocol::Reason::VaultLocked {
        // A request held while the vault is locked: unlock it, or refuse the request.
        return match c {
            Command::Unlock => open_unlock(state, id),
            Command::Deny => answer(state, &id, Decision::Deny),
            Command::Quit => super::confirm::quit(state),
            _ => vec![],
        };
    }
    match c {
        Command::AllowOnce => answer(state, &id, Decision::Once),
        // Editing an answer pauses the prompt's countdown (within the broker's bound).
        Command::AllowFor => {
            state.prompt_modal = Some(Modal::PromptFor(id.clone(), "1h".into()));
            vec![Effect::Editing(id)]
        }
        Command::AllowAlways => {
            state.prompt_modal = Some(Modal::Editor(always_editor(p, id.clone())));
            vec![Effect::Editing(id)]
        }
        Command::AllowBoth => {
            let mut ed = always_editor(p, id.clone());
            // A caller that reads a service usually writes it back (git stores what it was
            // given): one answer for both, shown in the editor before it is saved.
            for list in [&mut ed.read, &mut ed.write] {
                if !list.contains(&p.service) {
                    list.push(p.service.clone());
                }
            }
            state.prompt_modal = Some(Modal::Editor(ed));
            vec![Effect::Editing(id)]
        }
        Command::Deny => answer(state, &id, Decision::Deny),
        Command::Forget => answer(state, &id, Decision::Forget),
        // A changed program: its registered entry moves to the binary asking (permissions
        // kept); the prompt stays, to be answered — then allowed by the upgraded entry.
        Command::Upgrade => match changed_program(state, p) {
            Some(path) => vec![Effect::Upgrade(path)],
            None => {
                state.message = Some((
                    false,
                    "u upgrades only a changed program (its path registered with another hash)"
                        .into(),
                ));
                vec![]
            }
        },
        // Asked for during a prompt (ctrl-c): a connected dashboard quits at once (detaching
        // the approver; the broker refuses what it held); one that embeds the broker asks first,
        // in a dialog over the prompt (see `confirm::quit_checked`).
        Command::Quit => super::confirm::quit(state),
        _ => vec![],
    }
}

/// The editor for answering prompt `id` "always": preset to exactly what it asks.
fn always_editor(p: &Prompt, id: String) -> Editor {
    let g = asked_grants(p);
    let field = if g.write.is_empty() {
        Field::Read
    } else {
        Field::Write
    };
    Editor {
        goal: EditorGoal::Always(id),
        path: who(p).to_string(),
        about: prompt_about(p),
        read: g.read,
        write: g.write,
        search: g.search,
        via: vec![],
        expires: None,
        once: false,
        confirm: false,
        field,
        input: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::asked_grants;
    use crate::server::approval::{ApproverEvent, Decision};
    use crate::tui::action::{Action, Command, Effect};
    use crate::tui::keymap;
    use crate::tui::state::{EditorGoal, Modal, Pane, State};
    use crate::tui::test_support::*;
    use crate::tui::update::update;
    use crate::tui::view;
    use ratatui::crossterm::event::{self, KeyCode};

    #[test]
    fn an_always_answer_says_what_it_saves_not_only_what_was_asked() {
        let p = prompt("p1");
        let mut g = asked_grants(&p);
        g.read.push("extra".into());
        let label = super::answer_label(&p, &Decision::Always(g));
        assert!(label.starts_with("answered always"), "{label}");
        assert!(label.contains(",extra"), "{label}");
        let once = super::answer_label(&p, &Decision::Once);
        assert!(!once.contains("extra"), "{once}");
    }

    fn with_prompts(ids: &[&str]) -> (State, Vec<Vec<Effect>>) {
        let mut s = sample_state();
        s.now_ms = now_ms();
        let fx = ids
            .iter()
            .map(|id| {
                update(
                    &mut s,
                    Action::Approver(ApproverEvent::Prompt(Box::new(prompt(id)))),
                )
            })
            .collect();
        (s, fx)
    }

    fn press(s: &mut State, c: char) -> Vec<Effect> {
        let k = event::KeyEvent::new(KeyCode::Char(c), event::KeyModifiers::NONE);
        update(s, Action::Key(k))
    }

    #[test]
    fn a_prompt_takes_focus_and_rings_once() {
        let (mut s, fx) = with_prompts(&["p1"]);
        assert_eq!(fx, vec![vec![Effect::Bell]]);
        assert_eq!(keymap::scope(&s), keymap::Scope::Prompt);
        // An update of the same prompt (more requests waiting) does not ring again.
        let mut again = prompt("p1");
        again.waiting = 3;
        let fx = update(
            &mut s,
            Action::Approver(ApproverEvent::Prompt(Box::new(again))),
        );
        assert!(fx.is_empty());
        assert_eq!(s.prompts.len(), 1);
        assert_eq!(s.prompts[0].waiting, 3);
        // Pane keys do nothing while the prompt has the keyboard.
        assert!(press(&mut s, 'j').is_empty());
        assert_eq!(s.pending_sel, 0);
    }

    #[test]
    fn o_allows_once_and_the_next_prompt_shows() {
        let (mut s, _) = with_prompts(&["p1", "p2"]);
        let fx = press(&mut s, 'o');
        assert!(
            matches!(&fx[..], [Effect::Answer(id, Decision::Once, label)] if id == "p1" && label.contains("allowed once")),
            "{fx:?}"
        );
        assert_eq!(s.prompts.len(), 1);
        assert_eq!(s.prompts[0].id, "p2");
        // Our own answer coming back resolved says nothing more.
        update(
            &mut s,
            Action::Approver(ApproverEvent::Resolved {
                id: "p1".into(),
                outcome: "once".into(),
                by: Some("dashboard".into()),
            }),
        );
        assert!(s.answered.is_empty());
        assert_eq!(s.message, None);
    }

    #[test]
    fn n_denies_and_x_denies_and_dismisses() {
        let (mut s, _) = with_prompts(&["p1", "p2"]);
        assert!(
            matches!(&press(&mut s, 'n')[..], [Effect::Answer(id, Decision::Deny, _)] if id == "p1")
        );
        assert!(
            matches!(&press(&mut s, 'x')[..], [Effect::Answer(id, Decision::Forget, _)] if id == "p2")
        );
        assert!(s.prompts.is_empty());
        assert_eq!(keymap::scope(&s), keymap::Scope::Pane(Pane::Pending));
    }

    #[test]
    fn t_asks_how_long_default_one_hour_and_validates() {
        let (mut s, _) = with_prompts(&["p1"]);
        // Opening the input tells the broker an answer is being edited: the countdown pauses.
        assert_eq!(press(&mut s, 't'), vec![Effect::Editing("p1".into())]);
        assert_eq!(
            s.prompt_modal,
            Some(Modal::PromptFor("p1".into(), "1h".into()))
        );
        assert_eq!(keymap::scope(&s), keymap::Scope::Input);
        // Edit it: 1h → 10m.
        update(&mut s, Action::Backspace);
        update(&mut s, Action::Backspace);
        for c in "10x".chars() {
            press(&mut s, c);
        }
        assert!(update(&mut s, Action::Command(Command::Enter)).is_empty());
        assert!(matches!(&s.message, Some((false, m)) if m.contains("not a duration")));
        assert!(
            s.prompt_modal.is_some(),
            "a bad duration keeps the input open"
        );
        update(&mut s, Action::Backspace);
        press(&mut s, 'm');
        let fx = update(&mut s, Action::Command(Command::Enter));
        assert_eq!(
            fx,
            vec![Effect::Answer(
                "p1".into(),
                Decision::For(std::time::Duration::from_secs(600)),
                "allowed for 10m: /home/me/bin/deploy.py (read aws)".into()
            )]
        );
        assert!(s.prompts.is_empty() && s.prompt_modal.is_none());
    }

    #[test]
    fn t_then_esc_goes_back_to_the_prompt_and_enter_defaults_to_an_hour() {
        let (mut s, _) = with_prompts(&["p1"]);
        press(&mut s, 't');
        update(&mut s, Action::Command(Command::Escape));
        assert_eq!(s.prompt_modal, None);
        assert_eq!(s.prompts.len(), 1);
        press(&mut s, 't');
        let fx = update(&mut s, Action::Command(Command::Enter));
        assert!(matches!(&fx[..], [Effect::Answer(_, Decision::For(d), _)] if d.as_secs() == 3600));
    }

    #[test]
    fn a_opens_the_editor_with_exactly_what_was_asked() {
        let (mut s, _) = with_prompts(&["p1"]);
        // A dialog the prompt interrupted stays underneath.
        s.modal = Some(Modal::Register("/opt/half-typed".into()));
        assert_eq!(press(&mut s, 'a'), vec![Effect::Editing("p1".into())]);
        match &s.prompt_modal {
            Some(Modal::Editor(ed)) => {
                assert_eq!(ed.goal, EditorGoal::Always("p1".into()));
                assert_eq!(
                    (ed.read.clone(), ed.write.clone(), ed.search),
                    (vec!["aws".to_string()], vec![], false)
                );
                assert_eq!(ed.path, "/home/me/bin/deploy.py");
            }
            other => panic!("{other:?}"),
        }
        // Edit: add gcp to read, then save.
        for c in "gcp".chars() {
            press(&mut s, c);
        }
        update(&mut s, Action::Command(Command::Enter));
        let fx = update(&mut s, Action::Command(Command::Enter));
        match &fx[..] {
            [Effect::Answer(id, Decision::Always(g), _)] => {
                assert_eq!(id, "p1");
                assert_eq!(g.read, vec!["aws".to_string(), "gcp".to_string()]);
            }
            other => panic!("{other:?}"),
        }
        assert!(s.prompts.is_empty() && s.prompt_modal.is_none());
        assert_eq!(s.modal, Some(Modal::Register("/opt/half-typed".into())));
    }

    #[test]
    fn b_offers_read_and_write_in_one_answer() {
        for action in ["read", "write"] {
            let (mut s, _) = with_prompts(&["p1"]);
            s.prompts[0].action = action.into();
            assert_eq!(press(&mut s, 'b'), vec![Effect::Editing("p1".into())]);
            match &s.prompt_modal {
                Some(Modal::Editor(ed)) => {
                    assert_eq!(ed.goal, EditorGoal::Always("p1".into()));
                    assert_eq!(
                        (ed.read.clone(), ed.write.clone(), ed.search),
                        (vec!["aws".to_string()], vec!["aws".to_string()], false),
                        "{action}"
                    );
                }
                other => panic!("{other:?}"),
            }
            // Saved as it stands: the answer grants both.
            let fx = update(&mut s, Action::Command(Command::Enter));
            match &fx[..] {
                [Effect::Answer(id, Decision::Always(g), _)] => {
                    assert_eq!(id, "p1");
                    assert_eq!(
                        (g.read.as_slice(), g.write.as_slice()),
                        (&["aws".to_string()][..], &["aws".to_string()][..])
                    );
                }
                other => panic!("{action}: {other:?}"),
            }
        }
    }

    #[test]
    fn always_for_a_write_or_a_search_prefills_that() {
        let mut p = prompt("p1");
        p.action = "write".into();
        assert_eq!(asked_grants(&p).write, vec!["aws".to_string()]);
        p.action = "search".into();
        let g = asked_grants(&p);
        assert!(g.search && g.read == vec!["aws".to_string()]);
    }

    #[test]
    fn a_prompt_resolved_elsewhere_disappears_with_how_it_ended() {
        for (outcome, by, said) in [
            ("timeout", None, "timed out"),
            ("withdrawn", None, "withdrawn"),
            (
                "deny",
                Some("dashboard pid 77"),
                "answered \"deny\" by dashboard pid 77",
            ),
        ] {
            let (mut s, _) = with_prompts(&["p1", "p2"]);
            press(&mut s, 't'); // its dialog closes with it
            let fx = update(
                &mut s,
                Action::Approver(ApproverEvent::Resolved {
                    id: "p1".into(),
                    outcome: outcome.into(),
                    by: by.map(str::to_string),
                }),
            );
            assert!(fx.is_empty());
            assert_eq!(s.prompts.len(), 1, "{outcome}");
            assert_eq!(s.prompt_modal, None, "{outcome}");
            let (_, msg) = s.message.clone().expect("a message");
            assert!(msg.contains(said) && msg.contains("deploy.py"), "{msg}");
        }
    }

    #[test]
    fn ctrl_c_during_a_prompt_quits_without_a_hidden_question() {
        let k = event::KeyEvent::new(KeyCode::Char('c'), event::KeyModifiers::CONTROL);
        // Connected: at once.
        let (mut s, _) = with_prompts(&["p1"]);
        s.broker.embedded = false;
        assert!(update(&mut s, Action::Key(k)).is_empty());
        assert!(s.quit);
        // Embedding the only broker: asked, in a dialog over the prompt (never hidden behind
        // it); see confirm::tests.
        let (mut s, _) = with_prompts(&["p1"]);
        s.broker.embedded = true;
        assert_eq!(update(&mut s, Action::Key(k)), vec![Effect::CheckQuit]);
        update(&mut s, Action::QuitChecked(0));
        assert!(!s.quit && s.prompt_modal.is_some());
        let (mut s, _) = with_prompts(&["p1"]);
        assert!(press(&mut s, 'q').is_empty(), "q is not an answer");
        assert!(!s.quit && s.prompts.len() == 1);
    }

    #[test]
    fn a_grant_that_was_not_saved_is_said_as_such() {
        let (mut s, _) = with_prompts(&["p1"]);
        update(&mut s, Action::Command(Command::AllowAlways));
        let fx = update(&mut s, Action::Command(Command::Enter));
        match &fx[..] {
            [Effect::Answer(_, Decision::Always(_), label)] => {
                assert!(
                    label.starts_with("answered always") && !label.contains("allowed"),
                    "no success claimed before the broker saved it: {label}"
                );
            }
            other => panic!("{other:?}"),
        }
        update(&mut s, Action::Done(true, "answered always: x".into()));
        update(
            &mut s,
            Action::Approver(ApproverEvent::NotSaved {
                id: "p1".into(),
                message: "run keychain-auth upgrade /home/me/bin/deploy.py".into(),
            }),
        );
        match &s.message {
            Some((false, m)) => {
                assert!(m.contains("NOT SAVED") && m.contains("upgrade"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_changed_programs_prompt_offers_upgrade() {
        let (mut s, _) = with_prompts(&["p1"]);
        // Not a changed program: u says why it does nothing.
        assert!(press(&mut s, 'u').is_empty());
        assert!(matches!(&s.message, Some((false, m)) if m.contains("changed program")));
        // Its path registered with another hash: the prompt says so, and u upgrades it.
        let mut row = s.policies[0].clone();
        row.entry.path = "/home/me/bin/deploy.py".into();
        assert_ne!(
            Some(row.entry.hash.to_string()),
            s.prompts[0].script_hash,
            "another hash"
        );
        s.policies.push(row);
        assert_eq!(
            press(&mut s, 'u'),
            vec![Effect::Upgrade("/home/me/bin/deploy.py".into())]
        );
        assert_eq!(s.prompts.len(), 1, "the prompt stays, to be answered");
    }

    #[test]
    fn losing_the_broker_drops_its_prompts() {
        let (mut s, _) = with_prompts(&["p1", "p2"]);
        update(&mut s, Action::ApproverLost);
        assert!(s.prompts.is_empty());
        assert!(matches!(&s.message, Some((false, m)) if m.contains("2 prompt(s)")));
    }

    #[test]
    fn the_clock_counts_prompts_down() {
        let (mut s, _) = with_prompts(&["p1"]);
        assert_eq!(
            view::seconds_left(s.prompts[0].deadline_ms, s.now_ms),
            Some(25)
        );
        update(&mut s, Action::Clock(now_ms() + 10_500));
        assert_eq!(
            view::seconds_left(s.prompts[0].deadline_ms, s.now_ms),
            Some(15)
        );
        update(&mut s, Action::Clock(now_ms() + 40_000));
        assert_eq!(
            view::seconds_left(s.prompts[0].deadline_ms, s.now_ms),
            Some(0)
        );
    }
}
