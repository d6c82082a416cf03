//! The command line's definition (clap): every command, subcommand and flag of `keychain-auth`,
//! and the permission flags turned into [`Grants`]. It runs nothing: [`crate::cli`] dispatches,
//! and `completions`/`man` ([`crate::manual`]) are generated from [`Cli`].

use crate::admin::Grants;
use crate::policy;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// keychain-auth: a security broker between command-line tools and the OS keychain.
#[derive(Debug, Parser)]
#[command(name = "keychain-auth", version, about, long_about = None)]
pub struct Cli {
    /// Socket path (overrides KEYCHAIN_AUTH_SOCKET and the XDG default).
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Read the vault passphrase from this open descriptor (never from an argument).
    #[arg(long, global = true, value_name = "N")]
    pub passphrase_fd: Option<i32>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground.
    Start {
        /// Also serve the Secret Service (org.freedesktop.secrets) on the session bus.
        #[arg(long)]
        secret_service: bool,
    },
    /// The dashboard: connects to a running broker, else embeds one.
    Tui {
        /// Always embed a broker (fail when one already runs).
        #[arg(long, conflicts_with = "connect")]
        embed: bool,
        /// Always connect (fail when none runs).
        #[arg(long)]
        connect: bool,
    },
    /// List callers refused because their binary is not approved.
    ListPending {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending caller by hash (zero privileges unless flags are given).
    Approve {
        /// Full hash, bare hex, or a unique prefix of at least 8 hex digits.
        hash: String,
        /// The permissions.
        #[command(flatten)]
        grants: GrantArgs,
    },
    /// Register the binary at PATH (hashing it now).
    Register {
        /// The executable.
        path: PathBuf,
        /// The permissions.
        #[command(flatten)]
        grants: GrantArgs,
    },
    /// Re-hash a changed binary, keeping its permissions.
    Upgrade {
        /// The registered executable.
        path: PathBuf,
    },
    /// Add permissions to a registered binary.
    Grant {
        /// Hash (or unique prefix) or path.
        binary: String,
        /// The permissions.
        #[command(flatten)]
        grants: GrantArgs,
    },
    /// Remove permissions from a registered binary.
    Revoke {
        /// Hash (or unique prefix) or path.
        binary: String,
        /// The permissions.
        #[command(flatten)]
        grants: GrantArgs,
    },
    /// Remove a registered binary.
    Unregister {
        /// Hash (or unique prefix) or path.
        binary: String,
    },
    /// List registered binaries and their permissions.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Move every secret into the keyring or the file store (stop the daemon first).
    Migrate {
        /// Destination: keyring or file.
        #[arg(long, value_name = "keyring|file")]
        to: String,
    },
    /// Check the setup: backend and why, Secret Service, daemon, permissions, config.
    Doctor,
    /// Policy integrity: `policy accept` adopts an edit made outside keychain-auth.
    Policy {
        /// What to do.
        #[command(subcommand)]
        action: PolicyAction,
    },
    /// Print the audit log (a table, or JSON lines); `audit verify` checks its chain.
    #[command(args_conflicts_with_subcommands = true)]
    Audit {
        /// `verify`: check the chain.
        #[command(subcommand)]
        check: Option<AuditCheck>,
        /// What to show.
        #[command(flatten)]
        show: AuditArgs,
    },
    /// Copy another provider's items into the broker's store before switching to it.
    Import {
        /// Where from: `secret-service` (the Secret Service running now, e.g. gnome-keyring).
        #[arg(long, value_name = "secret-service")]
        from: String,
    },
    /// Print one secret (for scripts): the value of TARGET in SERVICE, through the broker.
    Get {
        /// The service.
        service: String,
        /// The target.
        target: String,
    },
    /// Store one secret (for scripts): the value is read from standard input, never an argument
    /// (at a terminal: typed twice, not shown).
    Put {
        /// The service.
        service: String,
        /// The target.
        target: String,
        /// Store an empty value (refused otherwise).
        #[arg(long)]
        allow_empty: bool,
    },
    /// Run the broker as a systemd user service (socket-activated), naming this binary.
    Install {
        /// Only write the unit files; do not ask systemd to enable and start the socket.
        #[arg(long)]
        no_enable: bool,
        /// Also serve the Secret Service (org.freedesktop.secrets): the service runs
        /// `start --secret-service`, and a D-Bus activation file points the bus at it.
        #[arg(long)]
        secret_service: bool,
    },
    /// Stop and remove the systemd user units that `install` wrote.
    Uninstall,
    /// Print a shell completion script (bash, zsh or fish) for keychain-auth.
    Completions {
        /// The shell.
        shell: Shell,
    },
    /// Print the manual page (roff), e.g. `keychain-auth man | man -l -`.
    Man {
        /// Write every page (keychain-auth.1 and one per command) into DIR instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Create the vault (passphrase asked twice, never echoed).
    Init {
        /// Copy the current store's secrets into the vault.
        #[arg(long)]
        import: bool,
        /// With --import: remove the plain copies afterwards.
        #[arg(long)]
        remove_plain: bool,
    },
    /// Give the vault passphrase to the running daemon.
    Unlock {
        /// Open a vault file older than the audit log records (you restored it on purpose).
        #[arg(long)]
        accept_rollback: bool,
    },
    /// The owner's own secrets, without approving a shell (needs the vault passphrase).
    Secret {
        /// What to do.
        #[command(subcommand)]
        action: SecretAction,
    },
    /// Write every secret to an age-encrypted backup (needs the vault passphrase).
    Export {
        /// The file to create (never overwritten).
        #[arg(long = "age", value_name = "FILE")]
        age: PathBuf,
        /// Encrypt to this age recipient (age1…) instead of a passphrase asked at the terminal.
        #[arg(long, value_name = "AGE1…")]
        recipient: Option<String>,
    },
    /// AWS profiles for keychain-auth-aws.
    Aws {
        /// What to do.
        #[command(subcommand)]
        action: AwsAction,
    },
    /// Make the running daemon forget the vault's keys.
    Lock,
}

/// `keychain-auth secret ...`.
#[derive(Debug, Subcommand)]
pub enum SecretAction {
    /// Services and targets (with attributes), never values.
    Ls {
        /// Only this service.
        service: Option<String>,
    },
    /// Print one value.
    Get {
        /// The service.
        service: String,
        /// The target.
        target: String,
    },
    /// Store one value: asked twice without echo at a terminal, else standard input.
    Put {
        /// The service.
        service: String,
        /// The target.
        target: String,
        /// Store an empty value (refused otherwise).
        #[arg(long)]
        allow_empty: bool,
    },
    /// Remove one secret.
    Rm {
        /// The service.
        service: String,
        /// The target.
        target: String,
    },
}

/// `keychain-auth aws ...`.
#[derive(Debug, Subcommand)]
pub enum AwsAction {
    /// Store a profile's access key pair (and optional session token) in one step.
    Add {
        /// The profile name (as in ~/.aws/config).
        profile: String,
    },
}

/// `keychain-auth policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyAction {
    /// Show how config.json was edited outside keychain-auth and, when you answer y on the
    /// terminal, adopt the edit (seal it, serve it).
    Accept {
        /// Adopt without asking (for scripts; the difference is still printed).
        #[arg(long)]
        yes: bool,
    },
}

/// `keychain-auth audit verify`.
#[derive(Debug, Subcommand)]
pub enum AuditCheck {
    /// Check every record of the log and its rotated files; exit non-zero on any break.
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Filters and output of `keychain-auth audit`.
#[derive(Debug, Args, Clone, Default)]
pub struct AuditArgs {
    /// Keep printing new records (also across rotation) until interrupted.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// JSON lines as written, for scripts.
    #[arg(long)]
    pub json: bool,
    /// Records at or after T (RFC 3339, a local date or "date time", or an age: 30m, 2h, 7d).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    /// Records before T (same forms as --since).
    #[arg(long, value_name = "T")]
    pub until: Option<String>,
    /// Caller binary: a path substring or a hash prefix.
    #[arg(long, value_name = "X")]
    pub binary: Option<String>,
    /// Service name.
    #[arg(long, value_name = "S")]
    pub service: Option<String>,
    /// success, denied or error.
    #[arg(long, value_name = "S")]
    pub status: Option<String>,
    /// An action (read, write, delete, search, approve, grant, …) or event (request, policy_change, connection_refused, daemon, audit).
    #[arg(long, value_name = "A")]
    pub action: Option<String>,
    /// Only the last N matching records (with --follow: 10 unless given).
    #[arg(short = 'n', value_name = "N")]
    pub last: Option<usize>,
}

/// Permission flags shared by approve, register, grant and revoke.
#[derive(Debug, Args, Clone, Default)]
pub struct GrantArgs {
    /// A service it may read (repeatable).
    #[arg(long = "read", value_name = "SVC")]
    pub read: Vec<String>,
    /// A service it may write and delete in (repeatable).
    #[arg(long = "write", value_name = "SVC")]
    pub write: Vec<String>,
    /// Allow search and prefix matches.
    #[arg(long)]
    pub search: bool,
    /// An injection variable (LD_PRELOAD, PYTHONPATH, …) it may run with (repeatable).
    #[arg(long = "allow-env", value_name = "VAR")]
    pub allow_env: Vec<String>,
    /// Serve it only when this launcher (path or full hash) is among its ancestors (repeatable).
    #[arg(long = "via", value_name = "HASH|PATH")]
    pub via: Vec<String>,
    /// For an interpreter: serve it whatever script or inline code it runs.
    #[arg(long = "allow-any-script")]
    pub allow_any_script: bool,
    /// The services named here are granted for this long only (10m, 2h, 1d).
    #[arg(long = "for", value_name = "DURATION")]
    pub for_: Option<String>,
    /// The services named here are granted for one successful use.
    #[arg(long)]
    pub once: bool,
    /// Every use of the services named here is held for a dashboard to confirm.
    #[arg(long)]
    pub confirm: bool,
    /// Accept service names with upper-case letters as typed (they are matched exactly).
    #[arg(long = "any-case")]
    pub any_case: bool,
}

impl GrantArgs {
    /// Refuses a service name with upper-case letters unless `--any-case`: names are matched
    /// exactly and callers ask in lower case (git, aws, docker), so `API` is almost always a
    /// slip for `api` that would grant nothing anyone asks for. (`revoke` does not ask: it can
    /// remove any name that is there, and refuses one that is not.)
    pub(crate) fn check_case(&self) -> Result<(), String> {
        if self.any_case {
            return Ok(());
        }
        // A dotted name is a Secret Service schema (`org.gnome.keyring.NetworkPassword`), a
        // namespace the broker's D-Bus front end serves as typed: its case is meant.
        match self
            .read
            .iter()
            .chain(&self.write)
            .find(|s| !s.contains('.') && s.chars().any(char::is_uppercase))
        {
            Some(s) => Err(format!(
                "\"{s}\" has upper-case letters: service names are matched exactly and callers ask in lower case; use \"{}\", or --any-case to grant \"{s}\" as typed",
                s.to_lowercase()
            )),
            None => Ok(()),
        }
    }
}

impl TryFrom<GrantArgs> for Grants {
    type Error = String;
    fn try_from(g: GrantArgs) -> Result<Grants, String> {
        let expires_at = match &g.for_ {
            Some(d) => Some(
                chrono::Utc::now()
                    + chrono::Duration::seconds(
                        i64::try_from(policy::parse_duration(d).map_err(|e| e.to_string())?)
                            .unwrap_or(i64::MAX / 2),
                    ),
            ),
            None => None,
        };
        if (expires_at.is_some() || g.once || g.confirm) && g.read.is_empty() && g.write.is_empty()
        {
            return Err(
                "--for, --once and --confirm apply to the services named with --read or --write"
                    .into(),
            );
        }
        Ok(Grants {
            terms: policy::GrantTerms {
                expires_at,
                uses_left: g.once.then_some(1),
                confirm: g.confirm,
            },
            read: g.read,
            write: g.write,
            search: g.search,
            allow_env: g.allow_env,
            via: g.via,
            allow_any_script: g.allow_any_script,
        })
    }
}

/// The shells `completions` writes for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    /// bash (`source <(keychain-auth completions bash)`).
    Bash,
    /// zsh (a `_keychain-auth` file in a directory on `$fpath`).
    Zsh,
    /// fish (`~/.config/fish/completions/keychain-auth.fish`).
    Fish,
}
