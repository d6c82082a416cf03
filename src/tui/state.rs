//! The dashboard's state: everything the views draw, nothing they compute.

pub use super::model::{MAX_PASSPHRASE, OnDisk, PolicyEdit, PolicyRow, SearchProgress, Secret};
use crate::audit::Record;
use crate::identity::BinaryHash;
use crate::pending::PendingEntry;
use crate::server::approval::Prompt;

/// The three panes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    /// Callers waiting for approval.
    Pending,
    /// The tailed audit log.
    Audit,
    /// Registered binaries.
    Policies,
}

impl Pane {
    /// All panes in tab order.
    pub const ALL: [Pane; 3] = [Pane::Pending, Pane::Audit, Pane::Policies];

    /// The pane's title.
    pub fn title(self) -> &'static str {
        match self {
            Pane::Pending => "Pending",
            Pane::Audit => "Audit",
            Pane::Policies => "Policies",
        }
    }
}

/// How the dashboard reaches the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// True when the broker runs inside this process.
    pub embedded: bool,
    /// The socket it serves.
    pub socket: String,
    /// `keyring` or `file` (or `?` before the first STATUS).
    pub backend: String,
    /// Open connections (callers).
    pub connections: u64,
    /// Requests served.
    pub requests: u64,
    /// The broker's pid.
    pub pid: u32,
    /// False while a connected broker does not answer (the dashboard keeps retrying).
    pub reachable: bool,
    /// Who can read the store, for the title (`None` until the broker says).
    pub store: Option<StoreGuard>,
}

/// What the title says about the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreGuard {
    /// The file store or the Secret Service: any program running as the user can read it.
    Plain,
    /// The vault, locked.
    Locked,
    /// The vault, unlocked.
    Unlocked,
}

impl StoreGuard {
    /// The vault in the state `locked`.
    pub fn vault(locked: bool) -> StoreGuard {
        if locked {
            StoreGuard::Locked
        } else {
            StoreGuard::Unlocked
        }
    }

    /// From STATUS: the backend's name and, with the vault, whether it is locked.
    pub fn of(backend: &str, locked: Option<bool>) -> Option<StoreGuard> {
        match (backend, locked) {
            ("file" | "keyring", _) => Some(StoreGuard::Plain),
            ("vault", Some(l)) => Some(StoreGuard::vault(l)),
            _ => None,
        }
    }

    /// The title's words.
    pub fn label(self) -> &'static str {
        match self {
            StoreGuard::Plain => "readable by your programs",
            StoreGuard::Locked => "vault locked",
            StoreGuard::Unlocked => "vault unlocked",
        }
    }
}

/// Which list of the permission editor has the focus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// Services it may read.
    Read,
    /// Services it may write.
    Write,
    /// The search flag.
    Search,
    /// Launch rules (`--via`).
    Via,
    /// How long the grants saved last (`--for`).
    For,
    /// One use (`--once`).
    Once,
    /// Confirm every use (`--confirm`).
    Confirm,
}

impl Field {
    /// The fields in the order `tab` visits them.
    pub const ORDER: [Field; 7] = [
        Field::Read,
        Field::Write,
        Field::Search,
        Field::Via,
        Field::For,
        Field::Once,
        Field::Confirm,
    ];

    /// Whether the field is a yes/no toggled with `space` (it takes no typing).
    pub fn is_toggle(self) -> bool {
        matches!(self, Field::Search | Field::Once | Field::Confirm)
    }
}

/// What saving the permission editor does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditorGoal {
    /// Approve a pending caller.
    Approve(BinaryHash),
    /// Replace a registered binary's permissions.
    Edit(BinaryHash),
    /// Answer a prompt "always" with the edited grants (the prompt's id).
    Always(String),
}

/// The permission editor (approve and edit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Editor {
    /// What saving does.
    pub goal: EditorGoal,
    /// The binary's path, for the title.
    pub path: String,
    /// Who it is beyond its path: `script run by …`, `launched by …` (may be empty).
    pub about: Vec<String>,
    /// Read services.
    pub read: Vec<String>,
    /// Write services.
    pub write: Vec<String>,
    /// Search flag.
    pub search: bool,
    /// Launch rules: launchers (`HASH` or `PATH`) one of which must be among the caller's
    /// ancestors (`--via`).
    pub via: Vec<String>,
    /// How long the grants saved last (`--for`, a duration such as `2h`); `None`: for good.
    pub expires: Option<String>,
    /// The grants saved serve one successful use (`--once`).
    pub once: bool,
    /// Every use of the grants saved is confirmed in the dashboard (`--confirm`).
    pub confirm: bool,
    /// Focused field.
    pub field: Field,
    /// The service name being typed.
    pub input: String,
}

/// A destructive action waiting for `y`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirm {
    /// Drop a pending entry.
    Dismiss(BinaryHash),
    /// Remove a registered binary.
    Unregister(BinaryHash),
    /// Move a binary's permissions to the file now at its path.
    Upgrade(String),
    /// Quit (stopping the embedded broker with callers connected).
    Quit,
}

/// A modal on top of the panes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modal {
    /// The keymap.
    Help,
    /// Typing the audit filter.
    Filter(String),
    /// One audit record in full.
    Detail(Box<Record>),
    /// The difference an edit of config.json made outside keychain-auth makes.
    PolicyEdit,
    /// One registered binary in full (looked up by hash when drawn, so it stays current).
    Binary(BinaryHash),
    /// The permission editor.
    Editor(Editor),
    /// A yes/no question with the facts to decide on.
    Confirm {
        /// What `y` does.
        what: Confirm,
        /// The question and facts, one entry per line.
        lines: Vec<String>,
    },
    /// Typing a path to register.
    Register(String),
    /// Typing how long "allow for a time" lasts: the prompt's id and the text (`1h`).
    PromptFor(String, String),
}

/// The vault behind the broker, as far as the dashboard knows (`None` in [`State::vault`]: a
/// plain store, nothing asks for a passphrase).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaultInfo {
    /// This dashboard proved presence (its approver is attached to the prompts).
    pub present: bool,
    /// The vault is locked (as last heard).
    pub locked: bool,
}

/// What the passphrase dialog is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassPurpose {
    /// Presence for this dashboard: its prompts are shown and answered only after it (a locked
    /// vault is unlocked by it too).
    Attach,
    /// Unlocking the vault for the request held by this prompt (its id).
    Unlock(String),
    /// A change that widens access, run with the passphrase once it is typed: the effect, and
    /// what it does in words.
    Widen(Box<super::action::Effect>, String),
}

/// The passphrase dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassDialog {
    /// What it is for.
    pub purpose: PassPurpose,
    /// What is typed (never drawn: one mark per character).
    pub input: Secret,
    /// The last check's refusal (`wrong passphrase (attempt N …)`).
    pub error: Option<String>,
    /// Sent for checking; the answer has not come back yet.
    pub checking: bool,
}

impl PassDialog {
    /// A fresh dialog for `purpose`.
    pub fn new(purpose: PassPurpose) -> PassDialog {
        PassDialog {
            purpose,
            input: Secret::new(),
            error: None,
            checking: false,
        }
    }
}

/// A value revealed in the Secrets view, hidden again at `until_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revealed {
    /// Its service.
    pub service: String,
    /// Its target.
    pub target: String,
    /// The value (never shown by `Debug`, wiped when hidden).
    pub value: Secret,
    /// When it is hidden again (Unix milliseconds).
    pub until_ms: i64,
}

/// How long a revealed value stays on screen.
pub const REVEAL_MS: i64 = 30_000;

/// The Secrets view: the store's services, their targets and attributes; values only on
/// request, after presence.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretsView {
    /// The services listed (none until loaded).
    pub services: Vec<crate::server::owner_view::OwnerService>,
    /// Loaded at least once.
    pub loaded: bool,
    /// The selected item, counted over every service's items in order.
    pub sel: usize,
    /// The value shown, if any.
    pub revealed: Option<Revealed>,
}

impl SecretsView {
    /// Every item as (service, item), in the order shown.
    pub fn items(&self) -> Vec<(&str, &crate::server::owner_view::OwnerItem)> {
        self.services
            .iter()
            .flat_map(|s| s.items.iter().map(move |i| (s.service.as_str(), i)))
            .collect()
    }
}

/// The whole dashboard state.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// The broker.
    pub broker: BrokerInfo,
    /// Focused pane.
    pub pane: Pane,
    /// Pending callers, most recent first.
    pub pending: Vec<PendingEntry>,
    /// Selected pending row.
    pub pending_sel: usize,
    /// Registered binaries.
    pub policies: Vec<PolicyRow>,
    /// Selected policy row.
    pub policy_sel: usize,
    /// Loaded audit records, oldest first.
    pub audit: Vec<Record>,
    /// True when older records exist before the loaded ones.
    pub audit_more_before: bool,
    /// Selected row among the filtered audit records.
    pub audit_sel: usize,
    /// Keep the selection on the newest record.
    pub follow: bool,
    /// Audit filter text (empty: none).
    pub filter: String,
    /// The open modal.
    pub modal: Option<Modal>,
    /// A one-line message (result of the last action).
    pub message: Option<(bool, String)>,
    /// The first screen's notice, in plain words (the embedded broker lives only as long as
    /// this dashboard; the store is one other programs can read): shown above the hint bar,
    /// never instead of it, until the first key or click.
    pub notice: Option<String>,
    /// Set when the dashboard should exit.
    pub quit: bool,
    /// Clock ticks seen (paces the look at binaries on disk).
    pub ticks: u64,
    /// The newest successful request per hash in the whole log (read once in the background;
    /// records loaded since count through `audit`).
    pub last_uses: std::collections::HashMap<String, String>,
    /// The terminal size, for mouse hit-testing.
    pub size: (u16, u16),
    /// A STATUS asked for by the clock has not been answered yet (ticks do not pile up
    /// behind a broker that hangs).
    pub status_in_flight: bool,
    /// Draw without colour (`NO_COLOR`, monochrome terminals): what colour marked is shown in
    /// reverse video instead.
    pub mono: bool,
    /// First line shown of the open overlay (help, record detail).
    pub scroll: usize,
    /// The whole-log search behind the audit filter, while a filter is set.
    pub search: Option<Search>,
    /// Numbers searches, so results of a cancelled one are recognised and dropped.
    pub search_gen: u64,
    /// The audit chain and policy seal, as checked in the background (`None`: still checking).
    pub integrity: Option<String>,
    /// An edit of config.json made outside keychain-auth, as it stands now (`None`: none).
    pub policy_edit: Option<PolicyEdit>,
    /// Prompts from the broker waiting for an answer, oldest first; the first is shown.
    pub prompts: Vec<Prompt>,
    /// The dialog of the shown prompt (duration input, "always" editor), kept apart from
    /// [`State::modal`] so a dialog the prompt interrupted is still there afterwards.
    pub prompt_modal: Option<Modal>,
    /// Prompts this dashboard answered whose resolution has not come back yet.
    pub answered: Vec<String>,
    /// The wall clock at the last tick (Unix milliseconds): prompts count down by it.
    pub now_ms: i64,
    /// The vault behind the broker (`None`: a plain store).
    pub vault: Option<VaultInfo>,
    /// The passphrase dialog, over everything else while open.
    pub passphrase: Option<PassDialog>,
    /// The Secrets view, while open.
    pub secrets: Option<SecretsView>,
}

/// A search of the whole audit log for the filter text.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    /// Its number ([`State::search_gen`] when it started).
    pub generation: u64,
    /// The matches found so far, oldest first.
    pub matches: Vec<Record>,
    /// How far it got.
    pub progress: SearchProgress,
}

impl State {
    /// An empty state.
    pub fn new(broker: BrokerInfo) -> State {
        State {
            broker,
            pane: Pane::Pending,
            pending: Vec::new(),
            pending_sel: 0,
            policies: Vec::new(),
            policy_sel: 0,
            audit: Vec::new(),
            audit_more_before: false,
            audit_sel: 0,
            follow: true,
            filter: String::new(),
            modal: None,
            message: None,
            notice: None,
            quit: false,
            ticks: 0,
            last_uses: std::collections::HashMap::new(),
            size: (80, 24),
            status_in_flight: false,
            mono: false,
            scroll: 0,
            search: None,
            search_gen: 0,
            integrity: None,
            policy_edit: None,
            prompts: Vec::new(),
            prompt_modal: None,
            answered: Vec::new(),
            now_ms: 0,
            vault: None,
            passphrase: None,
            secrets: None,
        }
    }

    /// True when the shown prompt has the keyboard (its own keys, not a dialog of it).
    pub fn prompt_focus(&self) -> bool {
        !self.prompts.is_empty()
    }

    /// Whether a change that widens access needs the passphrase typed again (a vault is served).
    pub fn needs_presence(&self) -> bool {
        self.vault.is_some()
    }

    /// Indices into `audit` of the records the filter keeps.
    pub fn audit_visible(&self) -> Vec<usize> {
        let f = self.filter.to_lowercase();
        self.audit
            .iter()
            .enumerate()
            .filter(|(_, r)| f.is_empty() || record_text(r).to_lowercase().contains(&f))
            .map(|(i, _)| i)
            .collect()
    }

    /// The records the Audit pane lists: the search's matches while a filter is set, else the
    /// loaded tail.
    pub fn audit_rows(&self) -> Vec<&Record> {
        match &self.search {
            Some(search) => search.matches.iter().collect(),
            None => self
                .audit_visible()
                .into_iter()
                .map(|i| &self.audit[i])
                .collect(),
        }
    }

    /// The newest successful request time of the binary (or script) with `hash`: from the
    /// whole log as read at start, or from a record loaded since, whichever is newer.
    pub fn last_used(&self, hash: &BinaryHash) -> Option<&str> {
        let indexed = self.last_uses.get(&hash.to_string()).map(String::as_str);
        let loaded = self.last_used_loaded(hash);
        // RFC 3339 times in UTC, all written alike: they order as text.
        indexed.max(loaded)
    }

    /// The newest successful request time per binary hash among the loaded records.
    fn last_used_loaded(&self, hash: &BinaryHash) -> Option<&str> {
        self.audit
            .iter()
            .rev()
            .find(|r| {
                r.event == "request"
                    && r.status.as_deref() == Some("success")
                    // A script entry's hash is the script's: its caller records carry it as
                    // script_hash (hash is the interpreter's).
                    && (r.script_hash.as_deref().or(r.hash.as_deref()) == Some(hash.as_str()))
            })
            .map(|r| r.ts.as_str())
    }
}

/// The text the audit filter matches: status, reason, binary, script, service, action, targets.
pub fn record_text(r: &Record) -> String {
    let mut parts: Vec<&str> = vec![r.event.as_str(), r.source.as_str()];
    for s in [
        &r.status,
        &r.reason,
        &r.path,
        &r.hash,
        &r.script,
        &r.script_hash,
        &r.service,
        &r.action,
        &r.message,
    ]
    .into_iter()
    .flatten()
    {
        parts.push(s);
    }
    parts.extend(r.targets.iter().map(String::as_str));
    parts.join(" ")
}

/// Most audit records kept in memory; older ones are dropped (and can be paged in again).
pub const MAX_AUDIT_IN_MEMORY: usize = 20_000;

/// The caller a prompt is about: its script, else its executable.
pub fn who(p: &Prompt) -> &str {
    p.script.as_deref().unwrap_or(&p.path)
}

/// The registered path of a prompt's caller when that path is registered with another hash (a
/// changed program, which `keychain-auth upgrade PATH` moves to the binary asking).
pub fn changed_program(state: &State, p: &Prompt) -> Option<String> {
    let subject = p.script_hash.as_deref().unwrap_or(&p.hash);
    let path = who(p);
    state
        .policies
        .iter()
        .find(|r| r.entry.path == std::path::Path::new(path) && r.entry.hash.to_string() != subject)
        .map(|_| path.to_string())
}
