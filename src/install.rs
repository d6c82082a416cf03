//! `keychain-auth install` / `uninstall`: the broker as a systemd user service that outlives any
//! terminal or dashboard.
//!
//! Two units go to `$XDG_CONFIG_HOME/systemd/user/` (default `~/.config/systemd/user/`):
//! `keychain-auth.socket`, with which systemd listens on the broker's socket, and
//! `keychain-auth.service`, which systemd starts on the first connection; the daemon takes the
//! socket over (LISTEN_FDS) and says when it serves (READY=1, see
//! [`crate::server::activation`]). The units are the ones shipped in `assets/`, with `ExecStart`
//! naming the binary that ran `install`. Writing them is idempotent; `uninstall` removes only
//! files that carry the mark `install` writes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The socket unit's file name.
pub const SOCKET_UNIT: &str = "keychain-auth.socket";
/// The service unit's file name.
pub const SERVICE_UNIT: &str = "keychain-auth.service";

const SOCKET_TEMPLATE: &str = include_str!("../assets/keychain-auth.socket");
const SERVICE_TEMPLATE: &str = include_str!("../assets/keychain-auth.service");
/// The shipped `ExecStart` line that `install` replaces.
const SHIPPED_EXEC: &str = "ExecStart=%h/.cargo/bin/keychain-auth start";
/// The shipped `ListenStream` line that `install` replaces when the socket is not the default.
const SHIPPED_LISTEN: &str = "ListenStream=%t/keychain-auth/agent.sock";
/// The first line of every unit `install` writes; `uninstall` removes only files that have it.
const MARK: &str = "# Written by `keychain-auth install`; `keychain-auth uninstall` removes it.";

/// Environment variables the daemon reads that are copied into the service when set, so the
/// service uses the same files as the shell that ran `install`.
pub const CARRIED_ENV: &[&str] = &["XDG_CONFIG_HOME", "XDG_DATA_HOME", "KEYCHAIN_AUTH_BACKEND"];

/// Why `install` or `uninstall` failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Neither `XDG_CONFIG_HOME` nor `HOME` gives a unit directory.
    #[error("cannot find where systemd user units go: set HOME")]
    NoHome,
    /// The running binary cannot be named in a unit.
    #[error("cannot name this binary in a unit: {0}")]
    Binary(String),
    /// A path cannot be written in a unit file.
    #[error("{what} {path} cannot be written in a unit file: {why}")]
    Unwritable {
        /// What the path is.
        what: &'static str,
        /// The path, escaped for display.
        path: String,
        /// Why.
        why: &'static str,
    },
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A unit file is there but `install` did not write it.
    #[error(
        "{0} was not written by keychain-auth install; move it away (or remove it) and run the command again"
    )]
    Foreign(String),
}

/// `$XDG_CONFIG_HOME/systemd/user`, else `~/.config/systemd/user`.
pub fn unit_dir() -> Result<PathBuf, InstallError> {
    if let Some(c) = std::env::var_os("XDG_CONFIG_HOME").filter(|c| !c.is_empty())
        && Path::new(&c).is_absolute()
    {
        return Ok(PathBuf::from(c).join("systemd/user"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".config/systemd/user"))
        .ok_or(InstallError::NoHome)
}

/// The two unit files' text: the shipped units with `ExecStart` running `exe start`, the
/// environment in [`CARRIED_ENV`] that is set, and `ListenStream` on `socket` when it is not the
/// default (`None`: systemd's `%t/keychain-auth/agent.sock`).
pub fn render(
    exe: &Path,
    socket: Option<&Path>,
    env: &[(String, String)],
) -> Result<(String, String), InstallError> {
    render_with(exe, socket, env, false)
}

/// [`render`], the service also serving the Secret Service (`start --secret-service`).
pub fn render_with(
    exe: &Path,
    socket: Option<&Path>,
    env: &[(String, String)],
    secret_service: bool,
) -> Result<(String, String), InstallError> {
    let exec = format!(
        "ExecStart={} start{}",
        exec_word(exe)?,
        if secret_service {
            " --secret-service"
        } else {
            ""
        }
    );
    let mut service_lines = vec![exec];
    for (k, v) in env {
        service_lines.push(format!(
            "Environment={}",
            quoted(&format!("{k}={v}"), "environment value", Path::new(v))?
        ));
    }
    let service = replace_line(SERVICE_TEMPLATE, SHIPPED_EXEC, &service_lines.join("\n"))?;
    let socket_unit = match socket {
        None => SOCKET_TEMPLATE.to_string(),
        Some(p) => {
            let listen = format!("ListenStream={}", specifier_escaped(p, "socket path")?);
            replace_line(SOCKET_TEMPLATE, SHIPPED_LISTEN, &listen)?
        }
    };
    Ok((
        format!("{MARK}\n{socket_unit}"),
        format!("{MARK}\n{service}"),
    ))
}

fn replace_line(template: &str, line: &str, with: &str) -> Result<String, InstallError> {
    if !template.lines().any(|l| l == line) {
        // The shipped asset changed without this code: never write a unit that runs
        // something else.
        return Err(InstallError::Binary(format!(
            "the shipped unit has no `{line}` line"
        )));
    }
    Ok(template
        .lines()
        .map(|l| if l == line { with } else { l })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n")
}

/// A path as systemd reads it in a value: `%` doubled; control characters (a newline would end
/// the line) and relative paths refused.
fn specifier_escaped(p: &Path, what: &'static str) -> Result<String, InstallError> {
    let unwritable = |why| InstallError::Unwritable {
        what,
        path: crate::display::path(p),
        why,
    };
    let s = p.to_str().ok_or_else(|| unwritable("it is not UTF-8"))?;
    if !p.is_absolute() {
        return Err(unwritable("it is not absolute"));
    }
    if s.chars().any(char::is_control) {
        return Err(unwritable("it contains a control character"));
    }
    Ok(s.replace('%', "%%"))
}

/// One word of a command line or an assignment in a unit: double-quoted, with `\`, `"`, `%` and
/// `$` escaped as systemd's command-line parser expects.
fn quoted(s: &str, what: &'static str, shown: &Path) -> Result<String, InstallError> {
    if s.chars().any(char::is_control) {
        return Err(InstallError::Unwritable {
            what,
            path: crate::display::path(shown),
            why: "it contains a control character",
        });
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

fn exec_word(exe: &Path) -> Result<String, InstallError> {
    // Checked (absolute, UTF-8, no control character), then quoted: it may hold spaces.
    specifier_escaped(exe, "the binary")?;
    quoted(&exe.to_string_lossy(), "the binary", exe)
}

/// What [`install`] did.
#[derive(Debug)]
pub struct Installed {
    /// Where the units are.
    pub dir: PathBuf,
    /// The binary `ExecStart` runs.
    pub exe: PathBuf,
    /// Whether either file changed (false: they were already exactly so).
    pub changed: bool,
}

/// The running binary, as the kernel names it (symbolic links resolved).
pub fn current_binary() -> Result<PathBuf, InstallError> {
    let exe = std::env::current_exe().map_err(|e| InstallError::Binary(e.to_string()))?;
    if exe.to_string_lossy().ends_with(" (deleted)") || !exe.is_file() {
        return Err(InstallError::Binary(format!(
            "{} is no longer on disk (rebuilt or removed); run install from the binary you mean to keep",
            crate::display::path(&exe)
        )));
    }
    Ok(exe)
}

/// Writes both units (each only when its text differs), naming `exe`; with `secret_service` the
/// service also serves the Secret Service.
pub fn install(
    dir: &Path,
    exe: &Path,
    socket: Option<&Path>,
    env: &[(String, String)],
    secret_service: bool,
) -> Result<Installed, InstallError> {
    let (socket_text, service_text) = render_with(exe, socket, env, secret_service)?;
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut changed = false;
    for (name, text) in [(SOCKET_UNIT, &socket_text), (SERVICE_UNIT, &service_text)] {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(old) if &old == text => continue,
            Ok(old) if !old.starts_with(MARK) => {
                return Err(InstallError::Foreign(crate::display::path(&path)));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path, e)),
        }
        write_atomic(dir, &path, text)?;
        changed = true;
    }
    Ok(Installed {
        dir: dir.to_path_buf(),
        exe: exe.to_path_buf(),
        changed,
    })
}

fn write_atomic(dir: &Path, path: &Path, text: &str) -> Result<(), InstallError> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".keychain-auth-unit")
        .tempfile_in(dir)
        .map_err(|e| io(dir, e))?;
    tmp.write_all(text.as_bytes()).map_err(|e| io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| io(path, e))?;
    // Unit files are configuration, readable like the rest of ~/.config/systemd.
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .map_err(|e| io(path, e))?;
    tmp.persist(path).map_err(|e| io(path, e.error))?;
    Ok(())
}

/// Removes the units `install` wrote; returns the files removed (none: nothing was installed).
/// A unit file without the mark is left alone and reported.
pub fn uninstall(dir: &Path) -> Result<Vec<PathBuf>, InstallError> {
    let mut removed = Vec::new();
    for name in [SERVICE_UNIT, SOCKET_UNIT] {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) if text.starts_with(MARK) => {
                std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
                removed.push(path);
            }
            Ok(_) => return Err(InstallError::Foreign(crate::display::path(&path))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path, e)),
        }
    }
    Ok(removed)
}

/// The environment [`CARRIED_ENV`] that is set here (absolute paths only, as the daemon reads
/// them).
pub fn carried_env() -> Vec<(String, String)> {
    CARRIED_ENV
        .iter()
        .filter_map(|k| {
            let v = std::env::var(k).ok().filter(|v| !v.is_empty())?;
            (*k == "KEYCHAIN_AUTH_BACKEND" || Path::new(&v).is_absolute())
                .then(|| ((*k).to_string(), v))
        })
        .collect()
}

/// Runs `systemctl --user ARGS`; the error is its one-line reason (its stderr's first line, or
/// why it could not run).
pub fn systemctl(args: &[&str]) -> Result<(), String> {
    let out = Command::new("systemctl")
        .arg("--user")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run systemctl: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    Err(format!(
        "systemctl --user {} failed: {}",
        args.join(" "),
        crate::display::clean(line.trim())
    ))
}

fn io(path: &Path, source: std::io::Error) -> InstallError {
    InstallError::Io {
        path: crate::display::path(path),
        source,
    }
}

/// `keychain-auth install`: writes the units naming this binary, then (unless `no_enable`) has
/// systemd reload them and enable and start the socket. `explicit_socket`: the socket path was
/// chosen (`--socket` or `KEYCHAIN_AUTH_SOCKET`) and goes into the socket unit; otherwise systemd
/// listens on the default (`$XDG_RUNTIME_DIR/keychain-auth/agent.sock`).
pub fn run_install(
    paths: &crate::paths::Paths,
    explicit_socket: bool,
    no_enable: bool,
    secret_service: bool,
) -> Result<(), crate::cli::failure::Failure> {
    let dir = unit_dir()?;
    let exe = current_binary()?;
    let socket = explicit_socket.then_some(paths.socket.as_path());
    let done = install(&dir, &exe, socket, &carried_env(), secret_service)?;
    if secret_service {
        let file = crate::dbus::activation::install_activation(&exe, Some(SERVICE_UNIT))?;
        crate::outln!(
            "wrote {}: the session bus asks systemd for {SERVICE_UNIT} on the first Secret Service call",
            crate::display::path(&file)
        );
        crate::outln!(
            "to keep gnome-keyring from serving secrets too: create ~/.config/autostart/gnome-keyring-secrets.desktop with the lines `[Desktop Entry]` and `Hidden=true`, then log out and in (gnome-keyring still serves SSH and PKCS#11); back: keychain-auth uninstall, and remove that file"
        );
    }
    crate::outln!(
        "{} {SOCKET_UNIT} and {SERVICE_UNIT} in {} (the service runs {} start)",
        if done.changed {
            "wrote"
        } else {
            "already installed:"
        },
        crate::display::path(&done.dir),
        crate::display::path(&done.exe)
    );
    let shown = exe.to_string_lossy();
    if shown.contains("/target/debug/") || shown.contains("/target/release/") {
        crate::outln!(
            "note: this is a build output that the next build replaces; `cargo install --path .` and run `keychain-auth install` from there to keep a stable path"
        );
    }
    let enable =
        "systemctl --user daemon-reload && systemctl --user enable --now keychain-auth.socket";
    if no_enable {
        crate::outln!("not enabled (--no-enable); to start it: {enable}");
        return Ok(());
    }
    let running = crate::client::status(&paths.socket, std::time::Duration::from_secs(2)).ok();
    let steps: &[&[&str]] = if running.is_some() {
        &[&["daemon-reload"], &["enable", SOCKET_UNIT]]
    } else {
        &[&["daemon-reload"], &["enable", "--now", SOCKET_UNIT]]
    };
    for step in steps {
        systemctl(step).map_err(|e| {
            format!(
                "wrote the units to {}, but could not enable them: {e} (in your login session run: {enable}; or use --no-enable)",
                crate::display::path(&dir)
            )
        })?;
    }
    match running {
        Some(st) => crate::outln!(
            "enabled; a broker already answers on {} (pid {}): if it is this service, `systemctl --user restart {SERVICE_UNIT}` runs the binary just installed; otherwise stop it, then `systemctl --user start {SOCKET_UNIT}`",
            crate::display::path(&paths.socket),
            st.pid
        ),
        None => crate::outln!(
            "enabled and listening: systemd starts the broker on the first connection, and at every login"
        ),
    }
    Ok(())
}

/// `keychain-auth uninstall`: stops and disables the units (when systemd's user manager is
/// reachable), then removes the files `install` wrote.
pub fn run_uninstall(paths: &crate::paths::Paths) -> Result<(), crate::cli::failure::Failure> {
    let dir = unit_dir()?;
    let present = [SOCKET_UNIT, SERVICE_UNIT]
        .iter()
        .any(|u| dir.join(u).symlink_metadata().is_ok());
    if !present {
        crate::outln!(
            "nothing to remove: no keychain-auth units in {}",
            crate::display::path(&dir)
        );
        return Ok(());
    }
    // Before the files go: systemd needs them to know what to stop and disable.
    let stopped = systemctl(&["disable", "--now", SOCKET_UNIT, SERVICE_UNIT]);
    let mut removed = uninstall(&dir)?;
    if crate::dbus::activation::remove_activation()? {
        removed.push(crate::dbus::activation::activation_path()?);
    }
    for file in &removed {
        crate::outln!("removed {}", crate::display::path(file));
    }
    match stopped.and_then(|()| systemctl(&["daemon-reload"])) {
        Ok(()) => crate::outln!(
            "stopped and disabled; callers now need a broker started by hand (`keychain-auth start`) or a dashboard"
        ),
        Err(e) => crate::outln!(
            "note: {e}; a service already running keeps serving {} until it stops or you log out",
            crate::display::path(&paths.socket)
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_start_names_the_binary_quoted_and_escaped() {
        let (_, service) =
            render(Path::new("/opt/my tools/100%/keychain-auth"), None, &[]).unwrap();
        assert!(
            service.contains("\nExecStart=\"/opt/my tools/100%%/keychain-auth\" start\n"),
            "{service}"
        );
        assert!(!service.contains(SHIPPED_EXEC));
        assert!(service.starts_with(MARK));
    }

    #[test]
    fn control_characters_and_relative_paths_are_refused() {
        assert!(render(Path::new("/bin/a\nExecStartPre=/bin/evil"), None, &[]).is_err());
        assert!(render(Path::new("bin/keychain-auth"), None, &[]).is_err());
        assert!(render(Path::new("/bin/k"), Some(Path::new("/run/a\nb")), &[]).is_err());
    }

    #[test]
    fn socket_override_and_environment_are_written() {
        let (socket, service) = render(
            Path::new("/bin/k"),
            Some(Path::new("/run/x/agent.sock")),
            &[("XDG_DATA_HOME".into(), "/d $x".into())],
        )
        .unwrap();
        assert!(
            socket.contains("\nListenStream=/run/x/agent.sock\n"),
            "{socket}"
        );
        assert!(!socket.contains(SHIPPED_LISTEN));
        assert!(
            service.contains("\nEnvironment=\"XDG_DATA_HOME=/d $$x\"\n"),
            "{service}"
        );
    }
}
