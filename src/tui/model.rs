//! What the dashboard's loaders and the broker hand it, as plain data: the actions carry these
//! and the state keeps them (neither knows the other through them).

use crate::identity::BinaryHash;
use crate::policy::BinaryPolicy;

/// What is on disk at a registered binary's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnDisk {
    /// Same hash as registered.
    Ok,
    /// Another binary: its hash.
    Changed(BinaryHash),
    /// Nothing there.
    Missing,
    /// Not hashed yet.
    Unknown,
}

/// A registered binary as the Policies pane shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRow {
    /// The entry from config.json.
    pub entry: BinaryPolicy,
    /// What is at its path now.
    pub on_disk: OnDisk,
}

/// An edit of config.json made outside keychain-auth: what it changed against the sealed copy.
/// Until `keychain-auth policy accept` adopts it, the entries it added or changed are not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyEdit {
    /// One line: how much changed.
    pub summary: String,
    /// The difference, one line each (`+ added`, `- removed`, `- was` / `+ now`, `~ setting`).
    pub lines: Vec<String>,
    /// The entries not served until the edit is accepted.
    pub held: Vec<BinaryHash>,
}

/// A passphrase being typed in the dashboard: never drawn, never shown by `Debug`, wiped from
/// memory when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(zeroize::Zeroizing<String>);

impl Default for Secret {
    fn default() -> Secret {
        Secret::new()
    }
}

/// Longest passphrase the dialog takes, in characters (its buffer is reserved once, so typing
/// never leaves copies behind in freed memory).
pub const MAX_PASSPHRASE: usize = 1024;

impl Secret {
    /// An empty passphrase with its whole buffer reserved.
    pub fn new() -> Secret {
        Secret(zeroize::Zeroizing::new(String::with_capacity(
            MAX_PASSPHRASE * 4,
        )))
    }

    /// Appends a typed character (beyond [`MAX_PASSPHRASE`], nothing).
    pub fn push(&mut self, c: char) {
        if self.0.chars().count() < MAX_PASSPHRASE {
            self.0.push(c);
        }
    }

    /// Deletes the last character.
    pub fn pop(&mut self) {
        self.0.pop();
    }

    /// How many characters were typed (the dialog shows one mark each).
    pub fn chars(&self) -> usize {
        self.0.chars().count()
    }

    /// Nothing typed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The passphrase, for the check (the daemon's, or the embedded broker's).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<not shown>)")
    }
}

impl Secret {
    /// A secret holding `value` (a revealed value).
    pub fn of(value: &str) -> Secret {
        let mut s = Secret(zeroize::Zeroizing::new(String::with_capacity(value.len())));
        s.0.push_str(value);
        s
    }
}

/// How far a whole-log search has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SearchProgress {
    /// Records (lines) looked at so far.
    pub records: u64,
    /// Bytes read so far, from the end.
    pub bytes: u64,
    /// The log's size when the search started.
    pub total_bytes: u64,
    /// True when the whole log was searched.
    pub done: bool,
}
