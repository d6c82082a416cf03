//! The one harness of keychain-auth's integration tests (`tests/*.rs`) and of the bench
//! (`benches/broker.rs`): everything talks to the real binaries as an outside caller would.
//!
//! What it offers:
//! - [`Sandbox`]: an isolated HOME/XDG tree with its own socket, the paths of config.json,
//!   pending.json, the audit log and the file store, commands and `keychain-auth` CLI runs with
//!   exactly its environment, client copies with unique hashes ([`Sandbox::client`]) and the
//!   client helpers ([`Sandbox::run_client`], [`Sandbox::session`], [`Sandbox::send`], …);
//! - [`Daemon`]: the real `keychain-auth start`, waited for until it answers STATUS, stopped on
//!   drop; [`EmbeddedBroker`]: the broker inside the test process, as the dashboard runs it;
//!   [`Dashboard`]: the real `keychain-auth tui` in a private tmux server;
//! - the request builders [`request`] and [`write_request`], the response checks [`expect`]
//!   and [`targets`], a raw connection [`Raw`], and the one polling helper [`wait_for`];
//! - [`Relay`]: a connection written by a clean child running the test binary itself, as an
//!   embedded broker's socket approver ([`relay_main`] is the child's side);
//! - [`full_flow`]: the SPEC's whole flow, to run against any backend;
//! - [`keyring`]: an optional layer on top of a sandbox, a private D-Bus session bus with an
//!   unlocked gnome-keyring ([`KeyringSandbox`]).
//!
//! A new test file needs no `mod` line: the package is a dev-dependency of keychain-auth
//! (`keychain-auth-testkit`, imported as `testkit`).
//!
//! ```ignore
//! use testkit::{Sandbox, expect, request};
//!
//! #[test]
//! fn an_unknown_caller_is_refused() {
//!     let env = Sandbox::new();
//!     let _daemon = env.start();
//!     let tool = env.client("tool");
//!     let r = &env.run_client(&tool, &[&request("read", "aws", &["k"])])[0];
//!     expect(r, "denied", Some("unregistered_binary"));
//! }
//! ```
//!
//! The binaries under test are found next to the running test or bench executable, as Cargo
//! lays them out (`target/<profile>/deps/<test>-<hash>` runs, `target/<profile>/keychain-auth`
//! is the daemon): Cargo builds a package's binaries before its integration tests and benches,
//! so they are always there and current. `tests/daemon_lifecycle.rs` checks that the paths
//! found are the ones Cargo names in `CARGO_BIN_EXE_*`.

#![warn(missing_docs)]

mod client;
mod daemon;
mod dashboard;
mod embedded;
mod flow;
pub mod keyring;
mod relay;
mod sandbox;

pub use client::{
    Raw, Session, expect, first_response, held_response, request, targets, write_request,
};
pub use daemon::{Daemon, status};
pub use dashboard::Dashboard;
pub use embedded::EmbeddedBroker;
pub use flow::full_flow;
pub use keyring::{Bus, Keyring, KeyringSandbox};
pub use relay::{Relay, relay_main};
pub use sandbox::Sandbox;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The directory of the package's binaries: the running executable's, or its parent when
/// the executable sits in `deps/` (integration tests and benches do).
fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test's own executable");
        let mut dir = exe.parent().expect("its directory").to_path_buf();
        if dir.ends_with("deps") {
            dir.pop();
        }
        dir
    })
}

/// The path of the package's binary `name`, which must exist.
fn bin(name: &str) -> String {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} not found: the harness runs from a test or bench built by cargo",
        path.display()
    );
    path.to_str().expect("utf8 path").to_string()
}

/// The daemon/CLI binary under test (`keychain-auth`).
pub fn daemon_bin() -> &'static str {
    static P: OnceLock<String> = OnceLock::new();
    P.get_or_init(|| bin("keychain-auth"))
}

/// The reference client (`keychain-auth-client`).
pub fn client_bin() -> &'static str {
    static P: OnceLock<String> = OnceLock::new();
    P.get_or_init(|| bin("keychain-auth-client"))
}

/// Polls `f` every 20 ms until it returns `Some`, failing with `what` after `secs` seconds.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True when every tool in `tools` is on PATH. Otherwise panics under CI (`CI` set) and, outside
/// it, prints a SKIPPED line naming the apt packages (`packages`) and returns false.
pub fn tools_available(tools: &[&str], packages: &str) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "these tests need {} (apt-get install {packages})",
        missing.join(", ")
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

/// Runs `cmd` with `input` on standard input, stdout and stderr captured. A program that stops
/// reading early (an oversized input) is not an error: EPIPE is ignored.
pub fn run_with_input(mut cmd: Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().expect("wait")
}

/// A process-unique string.
pub fn nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}

/// Copies the executable `src` to `dst` in a child process (see [`append_unique`] for why).
pub fn copy_executable(src: &Path, dst: &Path) {
    let status = Command::new("cp").arg(src).arg(dst).status().expect("cp");
    assert!(status.success(), "cp {} {}", src.display(), dst.display());
}

/// Writes an executable file (mode 0755) in a child process (see [`append_unique`] for why).
pub fn write_executable(path: &Path, contents: &[u8]) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"cat > "$1" && chmod 755 "$1""#)
        .arg("sh")
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("sh");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(contents)
        .expect("write");
    assert!(
        child.wait().expect("wait").success(),
        "write {}",
        path.display()
    );
}

/// Appends unique bytes to the file at `path` (a new hash; an ELF runs fine with them).
///
/// The file is written by a child process, never by this one: a test binary runs its tests on
/// several threads, and a child another thread forks while this process holds the file open
/// for writing would keep that descriptor until it execs, making an exec of the file fail with
/// ETXTBSY ("Text file busy").
pub fn append_unique(path: &Path) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#"printf '\n#%s#' "$2" >> "$1" && chmod 755 "$1""#)
        .arg("sh")
        .arg(path)
        .arg(nonce())
        .status()
        .expect("sh");
    assert!(status.success(), "could not mark {}", path.display());
}

/// chmod.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A file's permission bits.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}
