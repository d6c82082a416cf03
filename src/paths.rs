//! Where keychain-auth keeps its socket and files (SPEC §2).
//!
//! Every path derives from environment variables (`KEYCHAIN_AUTH_SOCKET`, `XDG_RUNTIME_DIR`,
//! `XDG_CONFIG_HOME`, `XDG_DATA_HOME`, `HOME`) so that tests and users can isolate an instance.

use std::path::{Path, PathBuf};

/// The directory name used under each XDG base directory.
const APP: &str = "keychain-auth";

/// All locations one broker instance uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The Unix socket the daemon listens on.
    pub socket: PathBuf,
    /// The policy file (`config.json`).
    pub config: PathBuf,
    /// The pending queue (`pending.json`).
    pub pending: PathBuf,
    /// The JSON-lines audit log.
    pub audit: PathBuf,
    /// The file keychain backend (`~/.keychain-auth/keyring.json`).
    pub file_store: PathBuf,
    /// The vault (`$XDG_DATA_HOME/keychain-auth/vault`).
    pub vault: PathBuf,
}

#[cfg(test)]
impl Paths {
    /// Every path directly in `dir` (unit tests).
    pub(crate) fn flat_in(dir: &Path) -> Paths {
        Paths {
            socket: dir.join("s.sock"),
            config: dir.join("config.json"),
            pending: dir.join("pending.json"),
            audit: dir.join("audit.log"),
            file_store: dir.join("keyring.json"),
            vault: dir.join("vault"),
        }
    }
}

/// Errors while deriving paths.
#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    /// Neither `HOME` nor the password database gives a home directory.
    #[error("cannot find the home directory: set HOME")]
    NoHome,
}

impl Paths {
    /// Derives every path from the process environment; `socket_override` (from `--socket`) wins.
    pub fn from_env(socket_override: Option<&Path>) -> Result<Self, PathsError> {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .ok_or(PathsError::NoHome)?;
        let xdg = xdg::BaseDirectories::with_prefix(APP);
        let config_dir = xdg
            .get_config_home()
            .unwrap_or_else(|| home.join(".config").join(APP));
        let data_dir = if cfg!(target_os = "macos") {
            home.join("Library/Logs").join(APP)
        } else {
            xdg.get_data_home()
                .unwrap_or_else(|| home.join(".local/share").join(APP))
        };
        let socket = match socket_override {
            Some(p) => p.to_path_buf(),
            None => default_socket(&home),
        };
        Ok(Paths {
            socket,
            config: config_dir.join("config.json"),
            pending: config_dir.join("pending.json"),
            audit: data_dir.join("audit.log"),
            vault: data_dir.join("vault"),
            file_store: home.join(".keychain-auth").join("keyring.json"),
        })
    }
}

/// `$KEYCHAIN_AUTH_SOCKET`, else `$XDG_RUNTIME_DIR/keychain-auth/agent.sock`, else
/// `~/.cache/keychain-auth/agent.sock`.
fn default_socket(home: &Path) -> PathBuf {
    if let Some(s) = std::env::var_os("KEYCHAIN_AUTH_SOCKET").filter(|s| !s.is_empty()) {
        return PathBuf::from(s);
    }
    if let Some(rt) = std::env::var_os("XDG_RUNTIME_DIR").filter(|s| !s.is_empty()) {
        let rt = PathBuf::from(rt);
        if rt.is_absolute() {
            return rt.join(APP).join("agent.sock");
        }
    }
    home.join(".cache").join(APP).join("agent.sock")
}
