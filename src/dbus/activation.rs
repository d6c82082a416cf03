//! The D-Bus activation file for `org.freedesktop.secrets` (SPEC §17, §18): with it the session
//! bus starts `keychain-auth start --secret-service` on the first call to the name, as it
//! starts gnome-keyring from the file gnome-keyring ships. Written to the user's service
//! directory (`$XDG_DATA_HOME/dbus-1/services`), which the bus searches before the system's, so
//! it wins over gnome-keyring's own file. `keychain-auth install` writes it next to the
//! systemd user unit; [`SystemdService`](activation_file)'s unit name makes the bus ask systemd
//! to start that unit instead of running the command itself.

use std::path::{Path, PathBuf};

/// The file's name.
pub const FILE_NAME: &str = "org.freedesktop.secrets.service";

/// The activation file's text for the broker at `exe`; with `unit`, the bus starts that
/// systemd user unit (which must run `start --secret-service`) instead of `Exec`.
pub fn activation_file(exe: &Path, unit: Option<&str>) -> Result<String, String> {
    let exe = exe
        .to_str()
        .filter(|e| e.starts_with('/') && !e.chars().any(|c| c.is_whitespace() || c.is_control()))
        .ok_or_else(|| {
            format!(
                "{} cannot be named in a D-Bus activation file: it must be an absolute path without spaces",
                exe.display()
            )
        })?;
    let mut text = format!(
        "# Written by keychain-auth: the broker serves the Secret Service.\n[D-BUS Service]\nName={}\nExec={exe} start --secret-service\n",
        super::NAME
    );
    if let Some(unit) = unit {
        text.push_str(&format!("SystemdService={unit}\n"));
    }
    Ok(text)
}

/// Where the user's activation file goes: `$XDG_DATA_HOME/dbus-1/services/` (default
/// `~/.local/share/dbus-1/services/`).
pub fn activation_path() -> Result<PathBuf, String> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .ok_or("neither XDG_DATA_HOME nor HOME is set")?;
    Ok(data.join("dbus-1/services").join(FILE_NAME))
}

/// Writes the activation file for the broker at `exe` (0644: the bus reads it) and returns its
/// path.
pub fn install_activation(exe: &Path, unit: Option<&str>) -> Result<PathBuf, String> {
    let text = activation_file(exe, unit)?;
    let path = activation_path()?;
    let dir = path.parent().ok_or("no directory")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".{FILE_NAME}.tmp"));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// Removes the activation file, if it is keychain-auth's; `Ok(false)` when there was none.
pub fn remove_activation() -> Result<bool, String> {
    let path = activation_path()?;
    match std::fs::read_to_string(&path) {
        Ok(t) if t.starts_with("# Written by keychain-auth") => std::fs::remove_file(&path)
            .map(|()| true)
            .map_err(|e| format!("cannot remove {}: {e}", path.display())),
        Ok(_) => Err(format!(
            "{} was not written by keychain-auth; left alone",
            path.display()
        )),
        Err(_) => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_names_the_broker_and_optionally_its_unit() {
        let t = activation_file(Path::new("/usr/local/bin/keychain-auth"), None).unwrap();
        assert!(t.contains("[D-BUS Service]\nName=org.freedesktop.secrets\n"));
        assert!(t.contains("Exec=/usr/local/bin/keychain-auth start --secret-service\n"));
        assert!(!t.contains("SystemdService"));
        let t = activation_file(
            Path::new("/usr/bin/keychain-auth"),
            Some("keychain-auth.service"),
        )
        .unwrap();
        assert!(t.ends_with("SystemdService=keychain-auth.service\n"));
        assert!(activation_file(Path::new("relative/ka"), None).is_err());
        assert!(activation_file(Path::new("/a b/ka"), None).is_err());
    }
}
