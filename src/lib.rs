//! keychain-auth: a per-user security broker between command-line tools and the OS keychain.
//!
//! A caller connects to a Unix socket or the session bus (the front ends: [`server`],
//! [`dbus`]); the daemon learns from the kernel who it is ([`identity`]), looks the executable's
//! SHA-256 up in the user's approved binaries (`policy`), holds or asks when the answer is not
//! yet known, carries the batch out against the store ([`backend`], `exec`) only inside the
//! service namespaces that binary was granted, and appends every decision to the [`audit`] log.
//! Unknown binaries are refused and queued in `pending` for the user to approve from the [`cli`]
//! or the dashboard ([`tui`]).
//!
//! With `default-features = false` the crate is only the client SDK: [`client`], the wire types
//! of [`protocol`], the socket location of [`paths`] and the [`adapters`], without the daemon's
//! runtime (no tokio, ratatui, zbus, clap). The default feature `daemon` adds everything else.
//!
//! The core returns typed errors (`thiserror` enums whose messages are the ones users see) and
//! never prints; the apps ([`cli`], [`doctor`], [`tui`]) word failures and own every line of
//! output. Modules only the crate itself uses are not public; the public ones expose what the
//! binaries, the client SDK, the integration tests and the benchmarks need.
//!
//! Imports point one way, down this table (a module uses only modules below it; `cargo doc`
//! shows each one's items):
//!
//! | layer | module | the one thing it does |
//! |---|---|---|
//! | apps | [`cli`] | the `keychain-auth` command line |
//! | | [`tui`] | the dashboard: live panes over the broker, approvals and edits |
//! | | [`doctor`] | `doctor` (setup checks) and `migrate` (move secrets between stores) |
//! | | [`install`], [`manual`] | the systemd user service; completions and the man page |
//! | | `owner`, `vault_cli` | the owner's `secret` / `aws add` commands; `init`, `unlock`, `lock`, presence |
//! | front ends | [`dbus`] | the Secret Service on the session bus, every item call a broker request |
//! | | [`server`] | the broker: the socket front end, and the one decision path every front end calls (`server::front`) |
//! | changes | `control` | a change sent to the running broker as an admin request, or made here when none runs |
//! | | [`admin`] | policy changes shared by the CLI and the dashboard, each audited, in the broker's held state or on the files |
//! | | `audit_once` | a command's own audit record (key from its selected store, rotation in force) |
//! | core | [`selection`] | which store serves: the vault, the Secret Service client or the plain file |
//! | | `pending` | pending.json: refused callers waiting for review |
//! | | `policy` | config.json: approved binaries and what each may do; its seal, sealed writes and the daemon's cache |
//! | | [`audit`] | the JSON-lines audit log, chained with the key from [`keys`] |
//! | | `exec` | carry an authorised request out all-or-nothing against a store |
//! | | [`backend`] | the store seam and its stores (vault, file, Secret Service client) |
//! | | `vault` | the broker's own encrypted store: format, key slots, records, file I/O |
//! | | [`identity`] | peer credentials → executable, script, chain → SHA-256 ([`identity::BinaryHash`]) |
//! | base | [`keys`] | the audit chain's and policy seal's key; names reserved for keychain-auth's items |
//! | | [`item`] | what a store holds and how a store call fails |
//! | | [`protocol`] | the wire format: typed requests/responses, strict validation |
//! | | [`fsutil`], [`paths`], [`display`] | locked atomic 0600 writes and file watches; where files live; safe printing of caller text |
//! | SDK | [`client`], [`adapters`], `scripts` | the client SDK, the git/AWS/docker helpers on it, and `keychain-auth get` / `put` for shell scripts |

pub mod adapters;
#[cfg(feature = "daemon")]
pub mod admin;
#[cfg(feature = "daemon")]
pub mod audit;
#[cfg(feature = "daemon")]
pub(crate) mod audit_once;
#[cfg(feature = "daemon")]
pub mod backend;
#[cfg(feature = "daemon")]
pub mod cli;
pub mod client;
#[cfg(feature = "daemon")]
pub(crate) mod control;
#[cfg(feature = "daemon")]
pub mod dbus;
pub mod display;
#[cfg(feature = "daemon")]
pub mod doctor;
#[cfg(feature = "daemon")]
pub(crate) mod exec;
#[cfg(feature = "daemon")]
pub mod fsutil;
#[cfg(feature = "daemon")]
pub mod identity;
#[cfg(feature = "daemon")]
pub mod install;
#[cfg(feature = "daemon")]
pub mod item;
#[cfg(feature = "daemon")]
pub mod keys;
#[cfg(feature = "daemon")]
pub mod manual;
#[cfg(feature = "daemon")]
pub(crate) mod owner;
pub mod paths;
#[cfg(feature = "daemon")]
pub(crate) mod pending;
#[cfg(feature = "daemon")]
pub(crate) mod policy;
pub mod protocol;
#[cfg(feature = "daemon")]
pub(crate) mod scripts;
#[cfg(feature = "daemon")]
pub mod selection;
#[cfg(feature = "daemon")]
pub mod server;
#[cfg(feature = "daemon")]
pub mod tui;
#[cfg(feature = "daemon")]
pub(crate) mod vault;
#[cfg(feature = "daemon")]
pub(crate) mod vault_cli;

/// The version reported by `STATUS` and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
