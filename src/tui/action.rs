//! Inputs to the reducer ([`Action`]) and the work it asks for ([`Effect`]).

use super::model::PolicyRow;
use crate::admin::Grants;
use crate::audit::Record;
use crate::identity::BinaryHash;
use crate::pending::PendingEntry;

/// Everything that can change the state: keyboard commands, mouse, and results of effects.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A raw key press, mapped through the keymap for the open modal or pane.
    Key(ratatui::crossterm::event::KeyEvent),
    /// A key bound in the keymap.
    Command(Command),
    /// A printable character typed into a modal's input.
    Char(char),
    /// Backspace in a modal's input.
    Backspace,
    /// A left click at (column, row).
    Click(u16, u16),
    /// Mouse wheel (positive: down).
    Scroll(i8),
    /// The terminal was resized.
    Resize(u16, u16),
    /// Fresh pending queue.
    PendingLoaded(Vec<PendingEntry>),
    /// Fresh policies.
    PoliciesLoaded(Vec<PolicyRow>),
    /// What is on disk at each registered path now (hash, state), from [`Effect::CheckDisk`].
    DiskChecked(Vec<(BinaryHash, super::model::OnDisk)>),
    /// The audit tail: records (oldest first) and whether older ones exist.
    AuditLoaded(Vec<Record>, bool),
    /// Records appended since the last load.
    AuditAppended(Vec<Record>),
    /// Broker counters.
    Status {
        /// Backend name.
        backend: String,
        /// Open connections.
        connections: u64,
        /// Requests served.
        requests: u64,
        /// Broker pid.
        pid: u32,
        /// With the vault: whether it is locked.
        locked: Option<bool>,
    },
    /// The embedded broker's vault was locked (`true`) or unlocked (`false`) just now.
    VaultLocked(bool),
    /// The broker did not answer STATUS: why.
    StatusFailed(String),
    /// A log event from the process (the embedded broker): whether it is a warning or worse,
    /// and its text. Shown on the message line.
    Log(bool, String),
    /// A batch of a whole-log search: its number, the matches (newest first), the progress.
    SearchFound(u64, Vec<Record>, super::model::SearchProgress),
    /// The wall clock, in Unix milliseconds (sent with each tick; prompts count down by it).
    Clock(i64),
    /// An event for the approver: a prompt opened or changed, or one was resolved.
    Approver(crate::server::approval::ApproverEvent),
    /// The approver connection was lost (the broker stopped): the prompts it held are gone.
    ApproverLost,
    /// The clock ticked ([`crate::tui::TICK`]): time to check on the broker.
    Tick,
    /// Facts for the upgrade confirmation.
    UpgradePreview {
        /// The binary's path.
        path: String,
        /// Registered hash.
        old: BinaryHash,
        /// Hash now on disk.
        new: BinaryHash,
        /// Size now on disk.
        size: u64,
        /// Modification time now on disk.
        mtime: String,
    },
    /// Reading a state file failed: why. Shown, and not retried until the file changes (a
    /// retry on every failure would spin).
    LoadFailed(String),
    /// An effect finished: success flag and a message.
    Done(bool, String),
    /// The background integrity check finished: audit chain and policy seal, one short line.
    Integrity(String),
    /// The whole log was read for "last used": the newest successful request time per hash
    /// (a script caller's under its script's hash).
    LastUses(std::collections::HashMap<String, String>),
    /// config.json was read: the edit made outside keychain-auth it carries, if any.
    PolicyEdit(Option<super::model::PolicyEdit>),
    /// The live connection count, asked for when quitting an embedded broker.
    QuitChecked(u64),
    /// A watched file changed on disk.
    FileChanged(WatchedFile),
    /// The broker serves a vault: this dashboard must prove presence before it is shown prompts
    /// (and whether the vault is locked).
    PresenceNeeded {
        /// The vault is locked (the passphrase unlocks it).
        locked: bool,
    },
    /// A passphrase typed in the dialog was checked.
    Passphrase(PassOutcome),
    /// The Secrets view's list: services, targets, attributes.
    SecretsLoaded(Vec<crate::server::owner_view::OwnerService>),
    /// A value asked for in the Secrets view: service, target, value.
    SecretRevealed(String, String, super::model::Secret),
    /// A connected broker's reply to one of this dashboard's answers: why it decided nothing.
    Answered {
        /// The prompt answered.
        id: String,
        /// Why not taken (`None`: taken).
        error: Option<String>,
    },
}

/// The result of a passphrase check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassOutcome {
    /// Right: what was asked is done (the message says what).
    Accepted(String),
    /// Wrong: the dialog stays open and says so (with the attempt count).
    Wrong(String),
    /// Failed for another reason (the prompt is gone, the change refused): the dialog closes.
    Failed(String),
}

impl PassOutcome {
    /// The outcome of a check whose error text is `e`: a wrong passphrase, or another failure.
    pub fn of_error(e: String) -> PassOutcome {
        if e.starts_with("wrong passphrase") {
            PassOutcome::Wrong(e)
        } else {
            PassOutcome::Failed(e)
        }
    }
}

/// The files the dashboard watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchedFile {
    /// pending.json.
    Pending,
    /// config.json.
    Config,
    /// The audit log.
    Audit,
}

/// Keyboard commands; the keymap binds keys to these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Quit (asks first when the embedded broker has callers).
    Quit,
    /// Toggle the help overlay.
    Help,
    /// Next pane.
    NextPane,
    /// Previous pane.
    PrevPane,
    /// Focus pane 1, 2, 3.
    Focus(u8),
    /// Selection down.
    Down,
    /// Selection up.
    Up,
    /// First row.
    Top,
    /// Last row.
    Bottom,
    /// Open: approve (pending), detail (audit), edit (policies); save in the editor.
    Enter,
    /// Close the modal / clear the filter.
    Escape,
    /// Approve the selected pending caller.
    Approve,
    /// Dismiss the selected pending caller.
    Dismiss,
    /// Start typing the audit filter.
    Filter,
    /// Toggle follow mode.
    Follow,
    /// Edit the selected binary's permissions.
    Edit,
    /// Upgrade the selected binary.
    Upgrade,
    /// Show the difference of an edit of config.json made outside keychain-auth.
    ShowEdit,
    /// Show the selected registered binary in full.
    ShowBinary,
    /// Register a binary by path.
    Register,
    /// Unregister the selected binary.
    Unregister,
    /// Editor: next field.
    NextField,
    /// Editor: previous field.
    PrevField,
    /// Editor: toggle search / confirm: yes.
    Toggle,
    /// Confirm: yes.
    Yes,
    /// Confirm: no.
    No,
    /// Reload everything from disk.
    Reload,
    /// Prompt: allow this request once.
    AllowOnce,
    /// Prompt: allow for a time (opens the duration input).
    AllowFor,
    /// Prompt: always (opens the permission editor with what was asked).
    AllowAlways,
    /// Prompt: always, reading and writing the service (opens the editor with both).
    AllowBoth,
    /// Prompt: deny this request.
    Deny,
    /// Prompt: deny and dismiss the caller.
    Forget,
    /// Overlay: one page down.
    PageDown,
    /// Overlay: one page up.
    PageUp,
    /// Prove presence (type the vault passphrase): shows prompts here, unlocks a locked vault.
    Presence,
    /// An unlock prompt: type the passphrase to unlock the vault for the held request.
    Unlock,
    /// Open the Secrets view.
    Secrets,
    /// Secrets view: reveal the selected value (after presence).
    Reveal,
    /// Secrets view: hide the value shown.
    Hide,
}

/// Work the reducer asks the executor to do; results come back as [`Action`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Re-read pending.json.
    LoadPending,
    /// Re-read config.json and check binaries on disk.
    LoadPolicies,
    /// Check again what is on disk at each registered path (every few seconds: an update or a
    /// rebuild of a binary shows as `changed` without `r`).
    CheckDisk,
    /// Read audit records appended since the last read.
    LoadAuditNew,
    /// Read older audit records before the loaded ones.
    LoadAuditOlder,
    /// Ask the broker for its counters.
    LoadStatus,
    /// Ask the broker how many callers are connected, before quitting.
    CheckQuit,
    /// Approve with grants.
    Approve(BinaryHash, Grants),
    /// Replace permissions.
    SetGrants(BinaryHash, Grants),
    /// Dismiss a pending entry.
    Dismiss(BinaryHash),
    /// Hash the file at a path and report old → new for confirmation.
    PreviewUpgrade(String),
    /// Upgrade the binary at a path.
    Upgrade(String),
    /// Register a path with zero privileges.
    Register(String),
    /// Unregister a binary.
    Unregister(BinaryHash),
    /// Search the whole audit log (backwards from the end) for the text; the search's number.
    Search(u64, String),
    /// Stop the running search.
    CancelSearch,
    /// Answer a prompt: its id, the decision, and the message to show once it is accepted.
    Answer(String, crate::server::approval::Decision, String),
    /// Tell the broker an answer to this prompt is being edited (its countdown pauses).
    Editing(String),
    /// Ring the terminal bell (a new prompt).
    Bell,
    /// Prove presence with the passphrase typed (unlocks a locked vault).
    Presence(super::model::Secret),
    /// List the store's services, targets and attributes (the Secrets view).
    SecretsList,
    /// Read one value for the Secrets view: service, target.
    SecretReveal(String, String),
    /// Run the widening effect with the passphrase typed (checked by the broker again).
    Present(Box<Effect>, super::model::Secret),
}

impl Effect {
    /// Whether this effect shows secrets (the Secrets view's list or a value): on a vault it
    /// needs presence, like a change that widens access.
    pub fn shows_secrets(&self) -> bool {
        matches!(self, Effect::SecretsList | Effect::SecretReveal(..))
    }
}
