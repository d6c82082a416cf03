//! The Secrets view (SPEC §16): the store's services, their targets and attributes, and one
//! value at a time, revealed only on request — after presence (the vault passphrase) when a
//! vault is served — and hidden again by `h`, by moving, by closing, or after
//! [`REVEAL_MS`](super::super::state::REVEAL_MS).

use super::super::action::{Command, Effect};
use super::super::state::{REVEAL_MS, Revealed, Secret, SecretsView, State};

/// `s`: opens the view and asks for the list (behind the passphrase dialog on a vault).
pub(super) fn open(state: &mut State) -> Vec<Effect> {
    state.secrets = Some(SecretsView::default());
    vec![Effect::SecretsList]
}

/// A command while the view has the keyboard.
pub(super) fn command(state: &mut State, c: Command) -> Vec<Effect> {
    let Some(view) = &mut state.secrets else {
        return vec![];
    };
    let n = view.items().len();
    match c {
        Command::Down | Command::Up => {
            let next = if c == Command::Down {
                (view.sel + 1).min(n.saturating_sub(1))
            } else {
                view.sel.saturating_sub(1)
            };
            if next != view.sel {
                view.sel = next;
                // A value is shown only beside its own row.
                view.revealed = None;
            }
            vec![]
        }
        Command::Reveal => match view.items().get(view.sel) {
            Some((service, item)) => {
                vec![Effect::SecretReveal(
                    (*service).to_string(),
                    item.target.clone(),
                )]
            }
            None => vec![],
        },
        Command::Hide => {
            view.revealed = None;
            vec![]
        }
        Command::Escape => {
            state.secrets = None;
            vec![]
        }
        Command::Quit => {
            state.secrets = None;
            super::confirm::quit(state)
        }
        _ => vec![],
    }
}

/// The list came.
pub(super) fn loaded(
    state: &mut State,
    services: Vec<crate::server::owner_view::OwnerService>,
) -> Vec<Effect> {
    if let Some(view) = &mut state.secrets {
        view.services = services;
        view.loaded = true;
        view.sel = view.sel.min(view.items().len().saturating_sub(1));
        view.revealed = None;
    }
    vec![]
}

/// A value came: shown beside its row until hidden, at most [`REVEAL_MS`].
pub(super) fn revealed(state: &mut State, service: String, target: String, value: Secret) {
    let now = state.now_ms;
    if let Some(view) = &mut state.secrets {
        view.revealed = Some(Revealed {
            service,
            target,
            value,
            until_ms: now.saturating_add(REVEAL_MS),
        });
    }
}

/// The clock: a value shown long enough is hidden.
pub(super) fn tick(state: &mut State, now_ms: i64) {
    if let Some(view) = &mut state.secrets
        && view.revealed.as_ref().is_some_and(|r| r.until_ms <= now_ms)
    {
        view.revealed = None;
    }
}

#[cfg(test)]
mod tests {
    use crate::tui::action::{Action, Command, Effect, PassOutcome};
    use crate::tui::keymap::{self, Scope};
    use crate::tui::state::{PassPurpose, Secret, State, VaultInfo};
    use crate::tui::test_support::*;
    use crate::tui::update::update;

    fn vault_state() -> State {
        let mut s = sample_state();
        s.now_ms = now_ms();
        s.vault = Some(VaultInfo {
            present: true,
            locked: false,
        });
        s
    }

    #[test]
    fn on_a_vault_the_list_and_each_value_need_the_passphrase() {
        let mut s = vault_state();
        assert!(update(&mut s, Action::Command(Command::Secrets)).is_empty());
        // The list waits behind the passphrase dialog.
        assert!(matches!(
            s.passphrase.as_ref().map(|d| &d.purpose),
            Some(PassPurpose::Widen(fx, _)) if **fx == Effect::SecretsList
        ));
        for c in "pw".chars() {
            update(&mut s, Action::Char(c));
        }
        let fx = update(&mut s, Action::Command(Command::Enter));
        assert!(
            matches!(fx.as_slice(), [Effect::Present(fx, p)] if **fx == Effect::SecretsList && p.expose() == "pw")
        );
        update(&mut s, Action::SecretsLoaded(sample_secrets()));
        update(
            &mut s,
            Action::Passphrase(PassOutcome::Accepted(String::new())),
        );
        assert!(s.passphrase.is_none());
        assert_eq!(keymap::scope(&s), Scope::Secrets);
        assert_eq!(s.secrets.as_ref().unwrap().items().len(), 3);
        // j moves; enter asks for the value, again behind the dialog.
        update(&mut s, Action::Command(Command::Down));
        update(&mut s, Action::Command(Command::Reveal));
        let purpose = s.passphrase.as_ref().map(|d| d.purpose.clone());
        assert!(
            matches!(&purpose, Some(PassPurpose::Widen(fx, what)) if matches!(fx.as_ref(), Effect::SecretReveal(sv, t) if sv == "aws" && t == "prod/secret_access_key") && what.contains("reveal")),
            "{purpose:?}"
        );
        // Escape: not revealed, the view stays.
        update(&mut s, Action::Command(Command::Escape));
        assert!(s.secrets.is_some());
        assert!(s.secrets.as_ref().unwrap().revealed.is_none());
        // Revealed: shown, never in Debug, hidden by h, by moving, or after the time.
        update(
            &mut s,
            Action::SecretRevealed(
                "aws".into(),
                "prod/secret_access_key".into(),
                Secret::of("wJalr-s3cret"),
            ),
        );
        assert!(s.secrets.as_ref().unwrap().revealed.is_some());
        assert!(!format!("{s:?}").contains("wJalr"));
        update(&mut s, Action::Command(Command::Hide));
        assert!(s.secrets.as_ref().unwrap().revealed.is_none());
        update(
            &mut s,
            Action::SecretRevealed(
                "aws".into(),
                "prod/secret_access_key".into(),
                Secret::of("v"),
            ),
        );
        update(&mut s, Action::Command(Command::Up));
        assert!(
            s.secrets.as_ref().unwrap().revealed.is_none(),
            "moving hides"
        );
        update(
            &mut s,
            Action::SecretRevealed("aws".into(), "prod/access_key_id".into(), Secret::of("v")),
        );
        update(&mut s, Action::Clock(now_ms() + 29_000));
        assert!(s.secrets.as_ref().unwrap().revealed.is_some());
        update(&mut s, Action::Clock(now_ms() + 30_000));
        assert!(
            s.secrets.as_ref().unwrap().revealed.is_none(),
            "hidden after 30 s"
        );
        update(&mut s, Action::Command(Command::Escape));
        assert!(s.secrets.is_none());
    }

    #[test]
    fn the_list_refused_closes_the_view_and_a_plain_store_asks_nothing() {
        let mut s = vault_state();
        update(&mut s, Action::Command(Command::Secrets));
        update(&mut s, Action::Command(Command::Escape));
        assert!(s.secrets.is_none(), "no list without the passphrase");
        assert!(s.message.as_ref().unwrap().1.contains("passphrase"));
        let mut plain = sample_state();
        assert_eq!(
            update(&mut plain, Action::Command(Command::Secrets)),
            vec![Effect::SecretsList]
        );
        update(&mut plain, Action::SecretsLoaded(sample_secrets()));
        assert_eq!(
            update(&mut plain, Action::Command(Command::Reveal)),
            vec![Effect::SecretReveal(
                "aws".into(),
                "prod/access_key_id".into()
            )]
        );
    }
}
