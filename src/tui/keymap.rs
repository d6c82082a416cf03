//! The keymap as data. Each binding has the keys, the command, a description and the scope it
//! applies in; the `?` overlay and the hint bar are generated from this table, so they cannot
//! drift from what the keys do.

use super::action::Command;
use super::state::{Modal, Pane, State};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Where a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every pane (no modal open).
    Global,
    /// One pane.
    Pane(Pane),
    /// The permission editor.
    Editor,
    /// A one-line text input (audit filter, register path).
    Input,
    /// A read-only overlay (help, one audit record, an edit of config.json, one binary).
    Viewer,
    /// A yes/no confirmation.
    Confirm,
    /// A live prompt from the broker (a caller is waiting).
    Prompt,
    /// A prompt for a request held while the vault is locked.
    Unlock,
    /// The passphrase dialog (presence, unlock, a change that widens access).
    Passphrase,
    /// The Secrets view.
    Secrets,
    /// The first run's question (a vault, or the plain store).
    FirstRun,
}

impl Scope {
    /// How README's key table names the scope.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Global => "everywhere",
            Scope::Pane(p) => p.title(),
            Scope::Editor => "permission editor",
            Scope::Input => "text input",
            Scope::Viewer => "help, record detail, policy edit, binary",
            Scope::Confirm => "confirmation",
            Scope::Prompt => "prompt",
            Scope::Unlock => "unlock prompt",
            Scope::Passphrase => "passphrase",
            Scope::Secrets => "Secrets view",
            Scope::FirstRun => "first run",
        }
    }
}

/// The scope keys are looked up in, and hints shown for, in this state: the open modal's, else
/// the focused pane's. Dispatch and the hint bar both use this, so they cannot disagree.
pub fn scope(state: &State) -> Scope {
    if state.passphrase.is_some() {
        return Scope::Passphrase;
    }
    if state.prompt_focus() {
        return match &state.prompt_modal {
            None if state
                .prompts
                .first()
                .is_some_and(|p| p.reason == crate::protocol::Reason::VaultLocked) =>
            {
                Scope::Unlock
            }
            None => Scope::Prompt,
            Some(Modal::Editor(_)) => Scope::Editor,
            // Quitting, asked over the prompt: y / n answer the question, not the prompt.
            Some(Modal::Confirm { .. }) => Scope::Confirm,
            Some(_) => Scope::Input,
        };
    }
    if state.secrets.is_some() {
        return Scope::Secrets;
    }
    match &state.modal {
        None => Scope::Pane(state.pane),
        Some(Modal::Editor(_)) => Scope::Editor,
        Some(Modal::Filter(_) | Modal::Register(_) | Modal::PromptFor(..)) => Scope::Input,
        Some(Modal::Help | Modal::Detail(_) | Modal::PolicyEdit | Modal::Binary(_)) => {
            Scope::Viewer
        }
        Some(Modal::Confirm { .. }) => Scope::Confirm,
    }
}

/// One binding.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    /// The keys, as matched.
    pub keys: &'static [KeyCode],
    /// How the keys are shown.
    pub label: &'static str,
    /// What they do.
    pub command: Command,
    /// The description shown in help and hints.
    pub desc: &'static str,
    /// Where it applies.
    pub scope: Scope,
    /// Shown in the hint bar (the help overlay shows all).
    pub hint: bool,
}

const fn b(
    keys: &'static [KeyCode],
    label: &'static str,
    command: Command,
    desc: &'static str,
    scope: Scope,
    hint: bool,
) -> Binding {
    Binding {
        keys,
        label,
        command,
        desc,
        scope,
        hint,
    }
}

use KeyCode::{BackTab, Char, Down, End, Enter, Esc, Home, PageDown, PageUp, Tab, Up};
use Scope::{Confirm, Editor, Global, Input, Viewer};

/// Every binding, in the order help shows them.
pub const KEYMAP: &[Binding] = &[
    b(
        &[Char('a'), Enter],
        "a/enter",
        Command::Approve,
        "approve (opens the permission editor)",
        Scope::Pane(Pane::Pending),
        true,
    ),
    b(
        &[Char('d')],
        "d",
        Command::Dismiss,
        "dismiss the caller (confirm)",
        Scope::Pane(Pane::Pending),
        true,
    ),
    b(
        &[Enter],
        "enter",
        Command::Enter,
        "show the record in full",
        Scope::Pane(Pane::Audit),
        true,
    ),
    b(
        &[Char('/')],
        "/",
        Command::Filter,
        "filter by text, status, binary or service",
        Scope::Pane(Pane::Audit),
        true,
    ),
    b(
        &[Char('f')],
        "f",
        Command::Follow,
        "follow new records on/off",
        Scope::Pane(Pane::Audit),
        true,
    ),
    b(
        &[Char('e'), Enter],
        "e/enter",
        Command::Edit,
        "edit permissions",
        Scope::Pane(Pane::Policies),
        true,
    ),
    b(
        &[Char('i')],
        "i",
        Command::ShowBinary,
        "show the binary in full",
        Scope::Pane(Pane::Policies),
        true,
    ),
    b(
        &[Char('u')],
        "u",
        Command::Upgrade,
        "upgrade a changed binary (confirm)",
        Scope::Pane(Pane::Policies),
        true,
    ),
    b(
        &[Char('n')],
        "n",
        Command::Register,
        "register a binary by path",
        Scope::Pane(Pane::Policies),
        true,
    ),
    b(
        &[Char('x')],
        "x",
        Command::Unregister,
        "unregister (confirm)",
        Scope::Pane(Pane::Policies),
        true,
    ),
    b(
        &[Char('D')],
        "D",
        Command::ShowEdit,
        "show an edit of config.json made outside keychain-auth",
        Scope::Pane(Pane::Policies),
        false,
    ),
    b(
        &[Char('j'), Down],
        "j/↓",
        Command::Down,
        "down",
        Global,
        false,
    ),
    b(&[Char('k'), Up], "k/↑", Command::Up, "up", Global, false),
    b(
        &[Char('g'), Home],
        "g",
        Command::Top,
        "first row (audit: load older)",
        Global,
        false,
    ),
    b(
        &[Char('G'), End],
        "G",
        Command::Bottom,
        "last row",
        Global,
        false,
    ),
    b(&[Tab], "tab", Command::NextPane, "next pane", Global, true),
    b(
        &[BackTab],
        "S-tab",
        Command::PrevPane,
        "previous pane",
        Global,
        false,
    ),
    b(
        &[Char('1')],
        "1",
        Command::Focus(1),
        "Pending pane",
        Global,
        false,
    ),
    b(
        &[Char('2')],
        "2",
        Command::Focus(2),
        "Audit pane",
        Global,
        false,
    ),
    b(
        &[Char('3')],
        "3",
        Command::Focus(3),
        "Policies pane",
        Global,
        false,
    ),
    b(
        &[Char('r')],
        "r",
        Command::Reload,
        "reload from disk",
        Global,
        false,
    ),
    b(
        &[Esc],
        "esc",
        Command::Escape,
        "clear the filter / close",
        Global,
        false,
    ),
    b(
        &[Char('s')],
        "s",
        Command::Secrets,
        "the Secrets view: services, targets, values after presence",
        Global,
        false,
    ),
    b(
        &[Char('P')],
        "P",
        Command::Presence,
        "prove presence with the vault passphrase",
        Global,
        false,
    ),
    b(&[Char('?')], "?", Command::Help, "help", Global, true),
    b(&[Char('q')], "q", Command::Quit, "quit", Global, true),
    b(
        &[Tab],
        "tab",
        Command::NextField,
        "next field",
        Editor,
        true,
    ),
    b(
        &[Enter],
        "enter",
        Command::Enter,
        "add what is typed; save when empty",
        Editor,
        true,
    ),
    b(
        &[Char(' ')],
        "space",
        Command::Toggle,
        "toggle search, once or confirm",
        Editor,
        true,
    ),
    b(
        &[BackTab],
        "S-tab",
        Command::PrevField,
        "previous field",
        Editor,
        true,
    ),
    b(&[Esc], "esc", Command::Escape, "cancel", Editor, true),
    b(&[Enter], "enter", Command::Enter, "apply", Input, true),
    b(&[Esc], "esc", Command::Escape, "cancel", Input, true),
    b(
        &[Char('j'), Down],
        "j/↓",
        Command::Down,
        "scroll down",
        Viewer,
        true,
    ),
    b(
        &[Char('k'), Up],
        "k/↑",
        Command::Up,
        "scroll up",
        Viewer,
        false,
    ),
    b(
        &[PageDown, Char(' ')],
        "PgDn",
        Command::PageDown,
        "page down",
        Viewer,
        true,
    ),
    b(&[PageUp], "PgUp", Command::PageUp, "page up", Viewer, true),
    b(&[Char('g'), Home], "g", Command::Top, "top", Viewer, false),
    b(
        &[Char('G'), End],
        "G",
        Command::Bottom,
        "bottom",
        Viewer,
        false,
    ),
    b(
        &[Esc, Char('q'), Enter],
        "esc/q",
        Command::Escape,
        "close",
        Viewer,
        true,
    ),
    b(
        &[Char('o')],
        "o",
        Command::AllowOnce,
        "once",
        Scope::Prompt,
        true,
    ),
    b(
        &[Char('t')],
        "t",
        Command::AllowFor,
        "for a time",
        Scope::Prompt,
        true,
    ),
    b(
        &[Char('a')],
        "a",
        Command::AllowAlways,
        "always",
        Scope::Prompt,
        true,
    ),
    b(
        &[Char('b')],
        "b",
        Command::AllowBoth,
        "always r+w",
        Scope::Prompt,
        true,
    ),
    b(
        &[Char('n')],
        "n",
        Command::Deny,
        "deny",
        Scope::Prompt,
        true,
    ),
    b(
        &[Char('x')],
        "x",
        Command::Forget,
        "deny + dismiss",
        Scope::Prompt,
        true,
    ),
    // Shown in the prompt itself, only when the caller is a changed program.
    b(
        &[Char('u')],
        "u",
        Command::Upgrade,
        "upgrade a changed program",
        Scope::Prompt,
        false,
    ),
    b(
        &[Enter],
        "enter",
        Command::Unlock,
        "unlock the vault (passphrase)",
        Scope::Unlock,
        true,
    ),
    b(
        &[Char('n')],
        "n",
        Command::Deny,
        "refuse the request",
        Scope::Unlock,
        true,
    ),
    b(
        &[Enter],
        "enter",
        Command::Enter,
        "check the passphrase",
        Scope::Passphrase,
        true,
    ),
    b(
        &[Esc],
        "esc",
        Command::Escape,
        "cancel",
        Scope::Passphrase,
        true,
    ),
    b(
        &[Char('j'), Down],
        "j/↓",
        Command::Down,
        "next secret",
        Scope::Secrets,
        true,
    ),
    b(
        &[Char('k'), Up],
        "k/↑",
        Command::Up,
        "previous secret",
        Scope::Secrets,
        false,
    ),
    b(
        &[Enter, Char('v')],
        "enter/v",
        Command::Reveal,
        "reveal the value (passphrase)",
        Scope::Secrets,
        true,
    ),
    b(
        &[Char('h')],
        "h",
        Command::Hide,
        "hide the value",
        Scope::Secrets,
        true,
    ),
    b(
        &[Esc, Char('q')],
        "esc/q",
        Command::Escape,
        "close",
        Scope::Secrets,
        true,
    ),
    b(
        &[Char('y')],
        "y",
        Command::Yes,
        "create a vault (passphrase twice)",
        Scope::FirstRun,
        true,
    ),
    b(
        &[Char('n'), Esc],
        "n/esc",
        Command::No,
        "keep the plain store",
        Scope::FirstRun,
        true,
    ),
    b(&[Char('y')], "y", Command::Yes, "yes", Confirm, true),
    b(&[Char('n'), Esc], "n/esc", Command::No, "no", Confirm, true),
];

/// The command `key` means in `scope`, falling back to global bindings for pane scopes.
pub fn lookup(scope: Scope, key: KeyEvent) -> Option<Command> {
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return (key.code == Char('c')).then_some(Command::Quit);
    }
    let find = |s: Scope| {
        KEYMAP
            .iter()
            .find(|b| b.scope == s && b.keys.contains(&key.code))
            .map(|b| b.command)
    };
    match scope {
        Scope::Pane(_) => find(scope).or_else(|| find(Global)),
        other => find(other),
    }
}

/// The bindings the hint bar shows for `scope`: its own first, then the global hints.
pub fn hints(scope: Scope) -> Vec<&'static Binding> {
    let own = KEYMAP.iter().filter(|b| b.hint && b.scope == scope);
    let global = KEYMAP
        .iter()
        .filter(move |b| b.hint && b.scope == Global && matches!(scope, Scope::Pane(_)));
    own.chain(global).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn pane_bindings_win_over_global_ones() {
        let p = Scope::Pane(Pane::Policies);
        assert_eq!(lookup(p, key(Char('n'))), Some(Command::Register));
        assert_eq!(lookup(p, key(Char('j'))), Some(Command::Down));
        assert_eq!(
            lookup(Scope::Pane(Pane::Pending), key(Enter)),
            Some(Command::Approve)
        );
        assert_eq!(lookup(Confirm, key(Char('n'))), Some(Command::No));
        assert_eq!(
            lookup(Editor, key(Char('q'))),
            None,
            "typing q in the editor is text"
        );
        assert_eq!(
            lookup(Editor, KeyEvent::new(Char('c'), KeyModifiers::CONTROL)),
            Some(Command::Quit)
        );
    }

    #[test]
    fn no_key_is_bound_twice_in_one_scope() {
        for (i, a) in KEYMAP.iter().enumerate() {
            for b in &KEYMAP[i + 1..] {
                if a.scope == b.scope {
                    for k in a.keys {
                        assert!(!b.keys.contains(k), "{:?} bound twice in {:?}", k, a.scope);
                    }
                }
            }
        }
    }

    #[test]
    fn modals_hint_their_own_keys_only() {
        let labels = |sc| hints(sc).iter().map(|b| b.label).collect::<Vec<_>>();
        assert_eq!(labels(Input), ["enter", "esc"]);
        assert_eq!(labels(Viewer), ["j/↓", "PgDn", "PgUp", "esc/q"]);
        assert_eq!(labels(Confirm), ["y", "n/esc"]);
        assert!(labels(Editor).contains(&"S-tab"));
        assert!(!labels(Editor).contains(&"q"));
    }

    #[test]
    fn hints_come_from_the_table() {
        let h: Vec<&str> = hints(Scope::Pane(Pane::Audit))
            .iter()
            .map(|b| b.label)
            .collect();
        assert_eq!(h, ["enter", "/", "f", "tab", "?", "q"]);
    }
}

#[cfg(test)]
mod readme {
    use super::*;

    /// README's key table is the keymap: every binding has its row.
    #[test]
    fn readme_lists_every_binding() {
        let readme = include_str!("../../README.md");
        for b in KEYMAP {
            let row = format!("| `{}` | {} | {} |", b.label, b.scope.name(), b.desc);
            assert!(readme.contains(&row), "README lacks the row: {row}");
        }
    }
}
