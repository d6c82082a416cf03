//! keychain-auth: a per-user security broker between command-line tools and the OS keychain.
//!
//! A caller connects to a Unix socket ([`server`]); the daemon learns from the kernel who it is
//! ([`identity`]), looks the executable's SHA-256 up in the user's approved binaries (`policy`),
//! and serves batch requests ([`protocol`], `exec`) against a keychain [`backend`] only inside the
//! service namespaces that binary was granted. Every decision is appended to the [`audit`] log;
//! unknown binaries are refused and queued in `pending` for the user to approve from the [`cli`].
//!
//! With `default-features = false` the crate is only the client SDK: [`client`], the wire types
//! of [`protocol`], the socket location of [`paths`] and the [`adapters`], without the daemon's runtime (no tokio,
//! ratatui, zbus, clap). The default feature `daemon` adds everything else.
//!
//! Two layers: the core (protocol, identity, policy, pending, audit, backend, exec, server and
//! the modules they use) returns typed errors (`thiserror` enums whose messages are the ones
//! users see) and never prints; the app layer ([`cli`], [`doctor`], [`tui`]) words failures and
//! owns every line of output. Modules only the crate itself uses (control, exec, pending, policy,
//! scripts, seal) are not public; the public ones expose what the binaries, the client SDK, the
//! integration tests and the benchmarks need.
//!
//! The module tree follows the request path:
//!
//! | module | the one thing it does |
//! |---|---|
//! | [`paths`] | where every file and the socket live (environment-derived, so tests isolate) |
//! | [`fsutil`] | locked, atomic, 0600 writes of the JSON state files |
//! | [`protocol`] | the wire format: typed requests/responses, strict validation |
//! | [`identity`] | peer credentials → executable → cached SHA-256 |
//! | `policy` | config.json: approved binaries and what each may do |
//! | `seal` | config.json's seal: edits made outside keychain-auth are held, not served |
//! | `pending` | pending.json: refused callers waiting for review; a running broker holds the queue and alone writes the file |
//! | [`audit`] | the JSON-lines audit log |
//! | [`backend`] | the keychain seam and its stores |
//! | `vault` | the broker's own encrypted store: format, key slots, records, file I/O |
//! | [`admin`] | policy changes shared by the CLI and the dashboard, each audited, in a broker's held state or on the files |
//! | `control` | a change sent to the running broker as an admin request, or made here when none runs |
//! | `exec` | authorise a request, run it all-or-nothing against a backend |
//! | [`server`] | the Unix-socket listener and per-connection sessions |
//! | [`dbus`] | the Secret Service on the session bus, every item call a broker request |
//! | [`client`] | the client SDK: connect (server uid checked), batch requests, typed replies |
//! | `scripts` | `keychain-auth get` / `put` for shell scripts |
//! | [`doctor`] | `doctor` (setup checks) and `migrate` (move secrets between stores) |
//! | [`display`] | caller-controlled text made safe to print (escapes, bounds, EPIPE) |
//! | [`adapters`] | git, AWS and docker credential helpers on the client SDK |
//! | [`cli`] | the `keychain-auth` command line: [`cli::args`] (the clap definition) and [`cli::failure`] (the error every command returns), which `install`, `manual`, `owner` and `vault_cli` import; `cli` itself parses and dispatches to them |
//! | [`manual`] | `completions` and `man`, generated from the clap definition |
//! | [`install`] | `install` / `uninstall`: the broker as a socket-activated systemd user service |
//! | [`tui`] | the dashboard: live panes over the broker, approvals and edits |

pub mod adapters;
#[cfg(feature = "daemon")]
pub mod admin;
#[cfg(feature = "daemon")]
pub mod audit;
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
pub(crate) mod seal;
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
