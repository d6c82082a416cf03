//! `keychain-auth get SERVICE TARGET` and `keychain-auth put SERVICE TARGET`: one secret in or
//! out for shell scripts, through the broker like any other caller (the broker identifies the
//! `keychain-auth` binary and the chain that launched it; see README, "Use it with … scripts").
//!
//! `get` prints the value and a newline. `put` reads the value from standard input (at most
//! 64 KiB less the request's envelope; one trailing newline is dropped), never from an argument,
//! which other processes could see.

use crate::client::{Client, ClientError};
use crate::paths::Paths;
use std::io::{Read, Write};
use std::time::Duration;

/// Requests may be held while a person approves them (live approval).
const TIMEOUT: Duration = Duration::from_secs(60);
/// The most a value read by `put` may hold.
const MAX_VALUE: usize = 60 * 1024;

fn connect(paths: &Paths) -> Result<Client, String> {
    Client::connect(&paths.socket, TIMEOUT).map_err(|e| e.to_string())
}

fn refusal(e: ClientError, service: &str, target: &str) -> String {
    match e {
        e if e.is_not_found() => format!("{service}/{target}: not found"),
        ClientError::Refused {
            reason, message, ..
        } => format!("{reason}: {}", crate::adapters::one_line(&message)),
        e => e.to_string(),
    }
}

/// `get`: prints the value of `target` in `service`.
pub fn get(paths: &Paths, service: &str, target: &str) -> Result<(), String> {
    let items = connect(paths)?
        .read(service, &[target])
        .map_err(|e| refusal(e, service, target))?;
    let value = items
        .into_iter()
        .next()
        .and_then(|i| i.value)
        .ok_or_else(|| format!("{service}/{target}: the broker returned no value"))?;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{value}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write the value: {e}"))
        }
        _ => Ok(()),
    }
}

/// `put`: stores standard input as the value of `target` in `service`.
pub fn put(paths: &Paths, service: &str, target: &str) -> Result<(), String> {
    let mut buf = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_VALUE as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read the value from standard input: {e}"))?;
    if buf.len() > MAX_VALUE {
        return Err(format!(
            "the value on standard input is larger than {} KiB; nothing was stored",
            MAX_VALUE / 1024
        ));
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    let value = String::from_utf8(buf)
        .map_err(|_| "the value on standard input is not UTF-8; nothing was stored".to_string())?;
    connect(paths)?
        .write(service, &[target], vec![value], Default::default())
        .map_err(|e| refusal(e, service, target))
}
