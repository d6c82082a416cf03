//! The `keychain-auth` command line (SPEC §8). Every command exits non-zero with a one-line
//! reason on failure.

use crate::admin::{Grants, Op, Source};
use crate::display::clean;
use crate::paths::Paths;
use crate::server::{Limits, Server};
use crate::{pending, policy};
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
        shell: crate::manual::Shell,
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
    Unlock,
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
    fn check_case(&self) -> Result<(), String> {
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

/// Parses the process arguments and runs the command; the error is the one-line reason.
///
/// `--help` and `--version` print and exit 0; a usage error is reduced to clap's first line (the
/// full usage stays one `--help` away), so every failure is one line.
pub fn main() -> Result<(), String> {
    match Cli::try_parse() {
        Ok(cli) => run(cli).map_err(|e| e.to_string()),
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => Err(usage_error(&e.to_string())),
    }
}

/// A clap error folded into one line (its text before the usage block, without the `error: `
/// prefix), plus a pointer to `--help`.
fn usage_error(rendered: &str) -> String {
    let text: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:"))
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("tip:")
        })
        .collect();
    let text = text.join(" ");
    let text = text.trim_start_matches("error: ");
    format!(
        "{} (see keychain-auth --help)",
        if text.is_empty() {
            "invalid arguments"
        } else {
            text
        }
    )
}

/// Why a command failed: a core module's typed error or the command's own words; `main`
/// prints its message as the one-line reason.
pub type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), Failure> {
    let paths = Paths::from_env(cli.socket.as_deref())?;
    let presence = match (widening(&cli.command), narrowing(&cli.command)) {
        (Some(what), _) => crate::vault_cli::presence(&paths, cli.passphrase_fd, what)?,
        // A narrowing change needs no passphrase: the running daemon carries it out with the
        // key it holds. Only with no daemon does this process need the key to seal config.json.
        (None, Some(what))
            if paths.vault.exists()
                && crate::client::status(&paths.socket, std::time::Duration::from_secs(2))
                    .is_err() =>
        {
            crate::vault_cli::presence(&paths, cli.passphrase_fd, what)?
        }
        _ => None,
    };
    let pass = presence.as_deref().map(String::as_str);
    let carry = |paths: &Paths, op: Op| crate::control::carry(paths, Source::Cli, op, pass);
    match cli.command {
        Command::Init {
            import,
            remove_plain,
        } => crate::vault_cli::init(&paths, cli.passphrase_fd, import, remove_plain),
        Command::Unlock => crate::vault_cli::unlock(&paths, cli.passphrase_fd),
        Command::Lock => crate::vault_cli::lock(&paths),
        Command::Secret { action } => owner(&paths, action),
        Command::Export { age, recipient } => {
            crate::owner::export_age(&paths, &age, recipient.as_deref())
        }
        Command::Aws {
            action: AwsAction::Add { profile },
        } => crate::owner::aws_add(&paths, &profile),
        Command::Start { secret_service } => start(paths, secret_service),
        Command::Tui { embed, connect } => Ok(crate::tui::run(paths, tui_mode(embed, connect))?),
        Command::ListPending { json } => list_pending(&paths, json),
        Command::Approve { hash, grants } => {
            grants.check_case()?;
            let b = binary(carry(
                &paths,
                Op::Approve {
                    selector: hash,
                    grants: grants.try_into()?,
                },
            )?)?;
            crate::outln!(
                "approved {} ({})",
                crate::display::path(&b.path),
                b.hash.short()
            );
            print_permissions(&b);
            Ok(())
        }
        Command::Register { path, grants } => {
            grants.check_case()?;
            let b = binary(carry(
                &paths,
                Op::Register {
                    path,
                    grants: grants.try_into()?,
                },
            )?)?;
            crate::outln!(
                "registered {} ({})",
                crate::display::path(&b.path),
                b.hash.short()
            );
            print_permissions(&b);
            Ok(())
        }
        Command::Upgrade { path } => upgrade(&paths, &path, pass),
        Command::Grant { binary, grants } => {
            grants.check_case()?;
            let b = self::binary(carry(
                &paths,
                Op::Grant {
                    selector: binary,
                    grants: grants.try_into()?,
                },
            )?)?;
            print_permissions(&b);
            Ok(())
        }
        Command::Revoke { binary, grants } => {
            let b = self::binary(carry(
                &paths,
                Op::Revoke {
                    selector: binary,
                    grants: grants.try_into()?,
                },
            )?)?;
            print_permissions(&b);
            Ok(())
        }
        Command::Unregister { binary } => {
            let b = self::binary(carry(&paths, Op::Unregister { selector: binary })?)?;
            crate::outln!(
                "unregistered {} ({})",
                crate::display::path(&b.path),
                b.hash.short()
            );
            Ok(())
        }
        Command::List { json } => list(&paths, json),
        Command::Migrate { .. } if paths.vault.exists() => Err(format!(
            "a vault exists ({}): it is the store, and migrate moves only between the keyring and the file store; take secrets out with `keychain-auth export --age FILE`",
            paths.vault.display()
        )
        .into()),
        Command::Migrate { to } => Ok(crate::doctor::migrate(&paths, &to)?),
        Command::Doctor => Ok(crate::doctor::doctor(&paths)?),
        Command::Audit {
            check: Some(AuditCheck::Verify { json }),
            ..
        } => audit_verify(&paths, json),
        Command::Audit { check: None, show } => audit_show(&paths, show),
        Command::Policy {
            action: PolicyAction::Accept { yes },
        } => policy_accept(&paths, yes, pass),
        Command::Import { from } => import(&paths, &from),
        Command::Get { service, target } => Ok(crate::scripts::get(
            &paths,
            &service,
            &target,
            &mut std::io::stdout().lock(),
        )?),
        Command::Install {
            no_enable,
            secret_service,
        } => {
            let explicit = cli.socket.is_some()
                || std::env::var_os("KEYCHAIN_AUTH_SOCKET").is_some_and(|s| !s.is_empty());
            Ok(crate::install::run_install(
                &paths,
                explicit,
                no_enable,
                secret_service,
            )?)
        }
        Command::Uninstall => Ok(crate::install::run_uninstall(&paths)?),
        Command::Completions { shell } => Ok(crate::manual::completions(shell)?),
        Command::Man { dir } => Ok(crate::manual::man(dir.as_deref())?),
        Command::Put {
            service,
            target,
            allow_empty,
        } => Ok(put(&paths, &service, &target, allow_empty)?),
    }
}

/// `put`: from the terminal (typed twice, echo off) when standard input is one, else from
/// standard input.
fn put(
    paths: &Paths,
    service: &str,
    target: &str,
    allow_empty: bool,
) -> Result<(), crate::scripts::ScriptError> {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        crate::scripts::put_from_terminal(paths, service, target, allow_empty)
    } else {
        crate::scripts::put(paths, service, target, &mut stdin.lock(), allow_empty)
    }
}

/// The entry a change of a registered binary answers with.
fn binary(done: crate::admin::Done) -> Result<policy::BinaryPolicy, Failure> {
    match done {
        crate::admin::Done::Binary(b) => Ok(b),
        _ => Err("the broker answered the change with something else".into()),
    }
}

/// The commands that need the passphrase every time a vault exists: the widening ones (SPEC
/// §15: approve, register, upgrade, grant, policy accept, the owner's `secret`, `aws add` and
/// `export`; a running daemon checks it again before a widening change), and `audit verify`
/// (the chain's key is the vault's).
fn widening(c: &Command) -> Option<&'static str> {
    match c {
        Command::Approve { .. } => Some("approve"),
        Command::Register { .. } => Some("register"),
        Command::Upgrade { .. } => Some("upgrade"),
        Command::Grant { .. } => Some("grant"),
        Command::Policy { .. } => Some("policy accept"),
        Command::Secret { .. } => Some("secret"),
        Command::Aws { .. } => Some("aws add"),
        Command::Export { .. } => Some("export"),
        // Not widening, but the chain's key is the vault's.
        Command::Audit {
            check: Some(AuditCheck::Verify { .. }),
            ..
        } => Some("audit verify"),
        _ => None,
    }
}

/// The narrowing changes (SPEC §15): never a passphrase while a daemon runs to carry them out.
fn narrowing(c: &Command) -> Option<&'static str> {
    match c {
        Command::Revoke { .. } => Some("revoke"),
        Command::Unregister { .. } => Some("unregister"),
        _ => None,
    }
}

/// `secret ls|get|put|rm`.
fn owner(paths: &Paths, action: SecretAction) -> Result<(), Failure> {
    match action {
        SecretAction::Ls { service } => crate::owner::ls(paths, service.as_deref()),
        SecretAction::Get { service, target } => crate::owner::get(paths, &service, &target),
        SecretAction::Put {
            service,
            target,
            allow_empty,
        } => crate::owner::put(paths, &service, &target, allow_empty),
        SecretAction::Rm { service, target } => crate::owner::rm(paths, &service, &target),
    }
}

/// `tui --embed` / `--connect`, else whichever the socket calls for.
fn tui_mode(embed: bool, connect: bool) -> crate::tui::broker::ModeChoice {
    match (embed, connect) {
        (true, _) => crate::tui::broker::ModeChoice::Embed,
        (_, true) => crate::tui::broker::ModeChoice::Connect,
        _ => crate::tui::broker::ModeChoice::Auto,
    }
}

/// `upgrade PATH`: moves the permissions to the binary now at `path`, and says old -> new.
fn upgrade(paths: &Paths, path: &std::path::Path, pass: Option<&str>) -> Result<(), Failure> {
    let crate::admin::Done::Upgraded(u) = crate::control::carry(
        paths,
        Source::Cli,
        Op::Upgrade {
            path: path.to_path_buf(),
        },
        pass,
    )?
    else {
        return Err("the broker answered the upgrade with something else".into());
    };
    match u.old_hash {
        Some(old) => crate::outln!(
            "upgraded {}: {} -> {} (permissions kept)",
            crate::display::path(&u.entry.path),
            old.short(),
            u.entry.hash.short()
        ),
        None => crate::outln!(
            "{} is already up to date ({})",
            crate::display::path(&u.entry.path),
            u.entry.hash.short()
        ),
    }
    Ok(())
}

fn print_permissions(b: &policy::BinaryPolicy) {
    crate::outln!(
        "{}  read: {}  write: {}  search: {}",
        crate::display::path(&b.path),
        join_or_dash(b.allowed_read_services.iter()),
        join_or_dash(b.allowed_write_services.iter()),
        if b.can_search { "yes" } else { "no" }
    );
}

fn join_or_dash<'a>(items: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<std::borrow::Cow<'a, str>> = items.map(|s| clean(s)).collect();
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}

/// Sends the daemon's log events to stderr as `keychain-auth: …` lines (the messages carry their
/// prefix), info and above.
fn log_to_stderr() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .with_level(false)
        .with_ansi(false)
        .try_init();
}

/// Runs the daemon. Everything that can refuse the start (socket directory, a daemon already
/// running, state directories and files, the backend) is checked before anything is printed or
/// audited, so a refused start prints exactly one line: the reason.
fn start(mut paths: Paths, secret_service: bool) -> Result<(), Failure> {
    // Socket activation (`keychain-auth install`): systemd bound the socket and passed it in.
    let inherited = crate::server::activation::inherited_listener()?;
    let notes = match &inherited {
        Some((_, bound)) => {
            if bound != &paths.socket {
                // Callers find the broker where systemd listens; say so when it is not the
                // path this environment would choose.
                eprintln!(
                    "keychain-auth: serving the socket systemd passed in, {} (this environment's socket would be {})",
                    crate::display::path(bound),
                    crate::display::path(&paths.socket)
                );
            }
            paths.socket = bound.clone();
            crate::server::preflight::check_activated(&paths)?
        }
        None => crate::server::preflight::check(&paths)?,
    };
    // Chosen before the runtime starts: the probe blocks (briefly, bounded). No side effects.
    let selection = crate::selection::select(&paths)?;
    let notice = selection.notice.clone();
    let notice_record = notice
        .as_deref()
        .map(|n| crate::audit::Record::backend_notice(selection.kind(), n));
    // The pin after the first keyring write, when the selection asks for one, is done here,
    // above the store: config.json and the audit log are not the store's business.
    let backend = crate::admin::serving_backend(&paths, &selection);
    let vault_line = crate::vault_cli::unlock_at_start(backend.as_ref())?;
    let kind = backend.kind();
    log_to_stderr();
    let reason = selection.reason.clone();
    // One thread runs every session: a request costs a few system calls and no computation
    // (hashing, fsync'd writes and D-Bus go to tokio's blocking pool), so a second async worker
    // only adds cross-thread wake-ups — about four context switches per connection, measured.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let served = runtime.block_on(async move {
        let socket = paths.socket.clone();
        let bus = secret_service_bus(&paths, &backend, secret_service).await?;
        let server = match inherited {
            Some((listener, _)) => Server::adopt(paths, backend, Limits::default(), listener),
            None => Server::bind(paths, backend, Limits::default()),
        }
        .map_err(|e| e.to_string())?;
        let secrets = match bus {
            Some(bus) => Some(bus.serve(server.broker()).await?),
            None => None,
        };
        if let Some(notice) = &notice {
            tracing::warn!("keychain-auth: {notice}");
        }
        if let Some(rec) = &notice_record
            && let Err(e) = server.broker().audit.append(rec)
        {
            // Typically the audit key is in the locked keyring this notice is about: the
            // record is written (chained) by the first append that can read the key.
            tracing::warn!(
                "keychain-auth: the backend notice is not in the audit log yet ({e}); it is written once the audit key can be read"
            );
            let audit = server.broker().audit.path().to_path_buf();
            crate::audit::defer(&audit, rec.clone());
        }
        for note in &notes {
            tracing::warn!("keychain-auth: {note}");
        }
        if let Some(line) = &vault_line {
            tracing::info!("keychain-auth: {line}");
        }
        if let Some(exposed) = kind.exposure() {
            tracing::warn!(
                "keychain-auth: warning: {exposed}; {}",
                crate::backend::VAULT_FIX
            );
        }
        tracing::info!(
            "keychain-auth {}: listening on {} ({})",
            crate::VERSION,
            socket.display(),
            reason
        );
        if secrets.is_some() {
            tracing::info!(
                "keychain-auth: serving the Secret Service ({}) on the session bus",
                crate::dbus::NAME
            );
        }
        // Under systemd (Type=notify): accepting from here on.
        if let Err(e) = crate::server::activation::notify("READY=1") {
            tracing::warn!("keychain-auth: could not tell the service manager it is ready: {e}");
        }
        server
            .run(async {
                shutdown_signal().await;
                let _ = crate::server::activation::notify("STOPPING=1");
            })
            .await;
        drop(secrets);
        Ok(())
    });
    // A request still stuck in blocking work (a slow keyring, a lock held by another process)
    // must not keep a stopped daemon alive: `run` already waited for it (the drain), so exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    if served.is_ok() {
        tracing::info!("keychain-auth: stopped");
    }
    served
}

/// `import --from secret-service`: the Secret Service's items into the file store, with a
/// summary line and the items skipped and why.
fn import(paths: &Paths, from: &str) -> Result<(), Failure> {
    if from != "secret-service" {
        return Err(format!("--from {from:?}: use secret-service").into());
    }
    let r = crate::dbus::import::import(paths)?;
    crate::outln!(
        "imported {} item(s) from the Secret Service into {} ({} already there, {} skipped)",
        r.copied,
        crate::display::path(&paths.file_store),
        r.already,
        r.skipped.len()
    );
    for why in &r.skipped {
        crate::outln!("  skipped: {}", clean(why));
    }
    Ok(())
}

/// The session bus to serve the Secret Service on, when `--secret-service` or config.json's
/// `"secret_service": true` asks for it: connected, and nobody else owning the name (else the
/// one-line refusal naming the owner).
async fn secret_service_bus(
    paths: &Paths,
    backend: &std::sync::Arc<dyn crate::backend::Backend>,
    flag: bool,
) -> Result<Option<crate::dbus::Bus>, Failure> {
    if !(flag || crate::dbus::configured(paths, backend)) {
        return Ok(None);
    }
    if backend.kind() == crate::backend::BackendKind::Keyring {
        // Serving the name from a store that is a client of the same name would call itself.
        return Err(format!(
            "the Secret Service cannot be served from the {}: it would be its own client; serve it from the file store (KEYCHAIN_AUTH_BACKEND=file, after `keychain-auth import --from secret-service`)",
            backend.describe()
        )
        .into());
    }
    Ok(Some(crate::dbus::connect().await?))
}

/// Completes on SIGINT, SIGTERM, SIGHUP (the terminal it was started from closed) or SIGQUIT:
/// each stops the daemon the same orderly way (drained, socket removed, "stop" audited) instead
/// of the default action that would leave the socket and no record.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term), Ok(mut hup), Ok(mut quit)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
        signal(SignalKind::quit()),
    ) else {
        // Without signal handlers the daemon still runs; it just cannot clean up on a signal.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
        _ = quit.recv() => {}
    }
}

fn list_pending(paths: &Paths, json: bool) -> Result<(), Failure> {
    let mut queue = pending::load(&paths.pending)?;
    queue
        .entries
        .sort_by_key(|e| std::cmp::Reverse(e.last_seen));
    if json {
        let text = serde_json::to_string_pretty(&queue.entries)?;
        crate::outln!("{}", crate::display::json(&text));
        return Ok(());
    }
    if queue.entries.is_empty() {
        crate::outln!("no pending callers");
        return Ok(());
    }
    crate::outln!(
        "{:<12}  {:>8}  {:<20}  {:<24}  PATH / ARGV",
        "HASH",
        "ATTEMPTS",
        "LAST SEEN",
        "ASKED"
    );
    for e in &queue.entries {
        let asked = format!("{} {}", clean(&e.last_action), clean(&e.last_service));
        crate::outln!(
            "{:<12}  {:>8}  {:<20}  {:<24}  {}{}",
            e.hash.short(),
            e.attempts,
            e.last_seen.format("%Y-%m-%d %H:%M:%S"),
            asked,
            crate::display::path(&e.path),
            match &e.changed_from {
                Some(old) => format!("  (changed version of registered {})", old.short()),
                None => String::new(),
            }
        );
        crate::outln!("{:<70}  {}", "", crate::display::join(&e.argv));
        if let Some(i) = &e.interpreter {
            crate::outln!(
                "{:<70}  run by {} ({})",
                "",
                crate::display::path(&i.path),
                i.hash.short()
            );
        }
        if e.chain.len() > 1 {
            crate::outln!(
                "{:<70}  launched by {}",
                "",
                clean(&crate::identity::describe_chain(&e.chain[1..]))
            );
        }
    }
    Ok(())
}

fn list(paths: &Paths, json: bool) -> Result<(), Failure> {
    let policy = policy::load(&paths.config)?;
    if json {
        let text = serde_json::to_string_pretty(&policy.registered_binaries)?;
        crate::outln!("{}", crate::display::json(&text));
        return Ok(());
    }
    if policy.registered_binaries.is_empty() {
        crate::outln!("no registered binaries");
        return Ok(());
    }
    crate::outln!(
        "{:<12}  {:<20}  {:<20}  {:<6}  PATH",
        "HASH",
        "READ",
        "WRITE",
        "SEARCH"
    );
    for b in &policy.registered_binaries {
        crate::outln!(
            "{:<12}  {:<20}  {:<20}  {:<6}  {}",
            b.hash.short(),
            join_or_dash(b.allowed_read_services.iter()),
            join_or_dash(b.allowed_write_services.iter()),
            if b.can_search { "yes" } else { "no" },
            crate::display::path(&b.path)
        );
        for note in policy_notes(b) {
            crate::outln!("{:<66}  {}", "", clean(&note));
        }
    }
    Ok(())
}

fn audit_verify(paths: &Paths, json: bool) -> Result<(), Failure> {
    use crate::audit::{chain, verify};
    let sel = crate::selection::select(paths)?;
    let Some(key) = chain::load(sel.backend.as_ref())? else {
        let (files, _) = verify::log_files(&paths.audit);
        if files.is_empty() {
            crate::outln!("no audit log yet at {}", paths.audit.display());
            return Ok(());
        }
        return Err(format!(
            "the {} holds no audit key ({}/{}), so the log cannot be checked: was it written with another store? (KEYCHAIN_AUTH_BACKEND chooses)",
            sel.backend.describe(),
            chain::KEY_SERVICE,
            chain::KEY_TARGET
        )
        .into());
    };
    // Asked before the log is read: a chain marked started has its first record written.
    let started = chain::started(sel.backend.as_ref());
    let mut report = verify::verify(&paths.audit, &key);
    if started {
        verify::expect_history(&mut report, &paths.audit);
    }
    // A reader that stops early (`| head`) must not turn a broken log into exit status 0.
    if json {
        crate::display::print_keeping_status(&serde_json::to_string(&report)?);
    } else {
        crate::display::print_keeping_status(report.render().trim_end_matches('\n'));
    }
    match report.breaks.first() {
        None => Ok(()),
        Some(b) => Err(format!(
            "audit log NOT verified: first break in {}{}{}: {}",
            b.file.display(),
            if b.line > 0 {
                format!(" line {}", b.line)
            } else {
                String::new()
            },
            b.seq.map_or(String::new(), |s| format!(" (seq {s})")),
            b.message
        )
        .into()),
    }
}

fn policy_accept(paths: &Paths, yes: bool, pass: Option<&str>) -> Result<(), Failure> {
    use crate::policy::seal::Integrity;
    use std::io::{BufRead, Write};
    let keys = crate::selection::key_source(paths);
    let file = policy::load(&paths.config)?;
    let shown = match policy::sealed::integrity(paths, &keys, &file)? {
        Integrity::Sealed => {
            crate::outln!(
                "{} matches its seal: nothing to accept",
                paths.config.display()
            );
            return Ok(());
        }
        Integrity::Unsealed => None,
        Integrity::Edited(d) => Some(d),
    };
    match &shown {
        Some(d) => crate::outln!("{}:\n{}", d.summary(), d.render().trim_end()),
        None => crate::outln!(
            "{} is not sealed yet (written before sealing existed, or by hand)",
            paths.config.display()
        ),
    }
    if !yes {
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .map_err(|_| {
                "policy accept asks for confirmation on a terminal and none is attached; run it in one (or pass --yes)".to_string()
            })?;
        let mut w = &tty;
        write!(w, "Adopt this and serve it? [y/N] ")?;
        w.flush()?;
        let mut answer = String::new();
        std::io::BufReader::new(&tty).read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            return Err("not adopted: nothing was changed".into());
        }
    }
    let crate::admin::Done::Accepted { adopted } = crate::control::carry(
        paths,
        Source::Cli,
        Op::PolicyAccept {
            reviewed: shown.clone(),
        },
        pass,
    )?
    else {
        return Err("the broker answered the change with something else".into());
    };
    crate::outln!(
        "{} {}",
        if adopted || shown.is_none() {
            "adopted:"
        } else {
            "nothing to adopt:"
        },
        paths.config.display()
    );
    Ok(())
}

fn audit_show(paths: &Paths, a: AuditArgs) -> Result<(), Failure> {
    use crate::audit::show;
    let time = |t: Option<String>| t.as_deref().map(show::parse_time).transpose();
    let filter = show::Filter {
        since: time(a.since)?,
        until: time(a.until)?,
        binary: a.binary,
        service: a.service,
        status: a.status,
        action: a.action,
    };
    show::check_filter(&filter, &paths.audit)?;
    // Like `tail -f`: a follow without -n starts from the last 10 matching records.
    let last = a.last.or(a.follow.then_some(10));
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    show::run(
        &paths.audit,
        &filter,
        last,
        show::Format::choose(a.json),
        a.follow,
        &mut out,
        &mut std::io::stderr(),
    )?;
    Ok(())
}

/// The second-form details of an entry (SPEC §10), one line each.
fn policy_notes(b: &policy::BinaryPolicy) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(i) = &b.interpreter {
        notes.push(format!(
            "script run by {} ({})",
            i.path.display(),
            i.hash.short()
        ));
    }
    if b.allow_any_script {
        notes.push("INTERPRETER: serves ANY script or inline code it runs".into());
    }
    if !b.launched_by.is_empty() {
        let v: Vec<&str> = b
            .launched_by
            .iter()
            .map(crate::identity::BinaryHash::short)
            .collect();
        notes.push(format!("only when launched by {}", v.join(", ")));
    }
    for (svc, t) in &b.service_terms {
        if !t.is_empty() {
            notes.push(format!("{svc}: {}", t.describe(chrono::Utc::now())));
        }
    }
    if !b.allow_env.is_empty() {
        let v: Vec<&str> = b.allow_env.iter().map(String::as_str).collect();
        notes.push(format!("may run with {}", v.join(", ")));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_are_one_line() {
        for args in [
            &["keychain-auth", "grant"][..],
            &["keychain-auth", "frobnicate"],
            &["keychain-auth", "approve", "abc", "--read"],
        ] {
            let e = Cli::try_parse_from(args).unwrap_err();
            let line = usage_error(&e.to_string());
            assert!(!line.contains('\n'), "{line}");
            assert!(!line.starts_with("error:"), "{line}");
            assert!(line.ends_with("(see keychain-auth --help)"), "{line}");
            assert_eq!(line.matches("--help").count(), 1, "{line}");
        }
    }
}
