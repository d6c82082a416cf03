//! The adapters (SPEC §12): programs users already run reach the broker through small
//! executables, each speaking its host's credential protocol exactly and each its own binary (so
//! its own hash and its own policy). The protocol logic lives here, on the client SDK only; the
//! `src/bin/` programs are thin wrappers.
//!
//! | adapter | host protocol | service | target |
//! |---|---|---|---|
//! | [`git`] | git credential helper | `git` | `protocol://host[/path]` |
//! | [`aws`] | AWS `credential_process` | `aws` | `PROFILE/access_key_id` … |
//! | [`docker`] | docker-credential-helpers | `docker` | the server URL |

pub mod aws;
pub mod docker;
pub mod git;

use crate::client::{Client, ClientError};
use std::io::Read;
use std::time::Duration;

/// How long an adapter waits for the broker (a request may be held while a person approves it).
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Most bytes an adapter reads from its standard input.
pub const MAX_INPUT: usize = 1024 * 1024;

/// Connects to the broker at the default socket.
pub fn connect() -> Result<Client, ClientError> {
    Client::connect_default(TIMEOUT)
}

/// Reads at most [`MAX_INPUT`] bytes; `Err(true)` when the input is larger, `Err(false)` on a
/// read error.
pub fn read_input(input: &mut dyn Read) -> Result<Vec<u8>, bool> {
    let mut buf = Vec::new();
    match input.take(MAX_INPUT as u64 + 1).read_to_end(&mut buf) {
        Ok(_) if buf.len() > MAX_INPUT => Err(true),
        Ok(_) => Ok(buf),
        Err(_) => Err(false),
    }
}

/// A broker message shown to a person: one line, control characters replaced, bounded.
pub fn one_line(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(400)
        .collect();
    if s.chars().count() > 400 {
        out.push('…');
    }
    out
}
