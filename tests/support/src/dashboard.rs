//! The dashboard seen from outside: the real `keychain-auth tui` in a private tmux server,
//! driven with send-keys and read with capture-pane.

use crate::sandbox::Sandbox;
use crate::{daemon_bin, nonce, wait_for};
use std::process::Command;

/// `keychain-auth ARGS` in a 120×36 tmux session named `dash` on a private tmux server, which
/// is killed on drop.
pub struct Dashboard {
    socket: String,
}

impl Dashboard {
    /// Starts `keychain-auth ARGS` (e.g. `["tui", "--embed"]`) with the sandbox's environment
    /// and `TERM=xterm-256color`. Returns at once: wait for the screen with
    /// [`Dashboard::wait_screen`].
    pub fn start(sandbox: &Sandbox, args: &[&str]) -> Dashboard {
        let d = Dashboard {
            socket: format!("ka-e2e-{}", nonce()),
        };
        let mut new = d.tmux();
        new.env_clear()
            .envs(sandbox.env_vars())
            .env("TERM", "xterm-256color")
            .args(["new-session", "-d", "-s", "dash", "-x", "120", "-y", "36"])
            .arg(daemon_bin())
            .args(args);
        assert!(new.status().expect("tmux").success(), "tmux new-session");
        d
    }

    /// A `tmux` command on this private server.
    pub fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    /// The screen as text.
    pub fn capture(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-t", "dash"])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `keys` (tmux send-keys arguments: key names, or `-l` and literal text).
    pub fn keys(&self, keys: &[&str]) {
        let ok = self
            .tmux()
            .args(["send-keys", "-t", "dash"])
            .args(keys)
            .status()
            .expect("send-keys")
            .success();
        assert!(ok, "send-keys {keys:?}");
    }

    /// `1` once the program in the window rang the terminal bell.
    pub fn bell(&self) -> String {
        let out = self
            .tmux()
            .args(["display-message", "-p", "-t", "dash", "#{window_bell_flag}"])
            .output()
            .expect("display-message");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The program's pid (the pane's), if tmux names one.
    pub fn pid(&self) -> Option<u32> {
        let out = self
            .tmux()
            .args(["list-panes", "-t", "dash", "-F", "#{pane_pid}"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    /// Polls the screen until `f` accepts it (20 s at most) and returns it; on a timeout, fails
    /// showing the last screen.
    pub fn wait_screen(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(20, what, || {
                last = self.capture();
                f(&last).then(|| last.clone())
            })
        }));
        match found {
            Ok(screen) => screen,
            Err(_) => panic!("timed out waiting for {what}; the screen was:\n{last}"),
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").status();
    }
}
