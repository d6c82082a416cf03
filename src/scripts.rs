//! `keychain-auth get SERVICE TARGET` and `keychain-auth put SERVICE TARGET`: one secret in or
//! out for shell scripts, through the broker like any other caller (the broker identifies the
//! `keychain-auth` binary and the chain that launched it; see README, "Use it with … scripts").
//!
//! `get` prints the value and a newline. `put` reads the value from standard input (at most
//! 64 KiB less the request's envelope; one trailing newline is dropped), never from an argument,
//! which other processes could see; at a terminal it asks twice with echo off. An empty value is
//! refused unless `--allow-empty` is given.

use crate::client::{Client, ClientError};
use crate::paths::Paths;
use std::io::{Read, Write};
use std::time::Duration;

/// Requests may be held while a person approves them (live approval).
const TIMEOUT: Duration = Duration::from_secs(60);
/// The most a value read by `put` may hold.
const MAX_VALUE: usize = 60 * 1024;

/// Why `get` or `put` failed.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The broker could not be reached or answered badly.
    #[error(transparent)]
    Client(ClientError),
    /// The item does not exist.
    #[error("{service}/{target}: not found")]
    NotFound {
        /// The service.
        service: String,
        /// The target.
        target: String,
    },
    /// The broker refused (reason code, its message on one line).
    #[error("{reason}: {message}")]
    Refused {
        /// The reason code.
        reason: String,
        /// The broker's message, on one line.
        message: String,
    },
    /// A read answered without a value.
    #[error("{service}/{target}: the broker returned no value")]
    NoValue {
        /// The service.
        service: String,
        /// The target.
        target: String,
    },
    /// Standard output cannot be written.
    #[error("cannot write the value: {0}")]
    Write(std::io::Error),
    /// Standard input cannot be read.
    #[error("cannot read the value from standard input: {0}")]
    ReadInput(std::io::Error),
    /// Standard input holds more than a value may.
    #[error("the value on standard input is larger than {} KiB; nothing was stored", MAX_VALUE / 1024)]
    TooLarge,
    /// Standard input is not UTF-8.
    #[error("the value on standard input is not UTF-8; nothing was stored")]
    NotUtf8,
    /// The value is empty (and `--allow-empty` was not given).
    #[error("the value is empty; nothing was stored (pass --allow-empty to store an empty value)")]
    Empty,
    /// The value typed at the terminal could not be read.
    #[error("cannot read the value from the terminal: {0}")]
    Terminal(std::io::Error),
    /// The two values typed at the terminal differ.
    #[error("the two values typed differ; nothing was stored")]
    Mismatch,
}

fn connect(paths: &Paths) -> Result<Client, ScriptError> {
    Client::connect(&paths.socket, TIMEOUT).map_err(ScriptError::Client)
}

fn refusal(e: ClientError, service: &str, target: &str) -> ScriptError {
    match e {
        e if e.is_not_found() => ScriptError::NotFound {
            service: service.into(),
            target: target.into(),
        },
        ClientError::Refused {
            reason, message, ..
        } => ScriptError::Refused {
            reason: reason.clone(),
            message: crate::adapters::one_line(&message),
        },
        e => ScriptError::Client(e),
    }
}

/// `get`: writes the value of `target` in `service` and a newline to `out` (the command line's
/// standard output); a reader that went away is not an error.
pub fn get(
    paths: &Paths,
    service: &str,
    target: &str,
    out: &mut dyn Write,
) -> Result<(), ScriptError> {
    let items = connect(paths)?
        .read(service, &[target])
        .map_err(|e| refusal(e, service, target))?;
    let value = items
        .into_iter()
        .next()
        .and_then(|i| i.value)
        .ok_or_else(|| ScriptError::NoValue {
            service: service.into(),
            target: target.into(),
        })?;
    match writeln!(out, "{value}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(ScriptError::Write(e)),
        _ => Ok(()),
    }
}

/// `put`: stores what `input` holds (the command line's standard input) as the value of
/// `target` in `service`.
pub fn put(
    paths: &Paths,
    service: &str,
    target: &str,
    input: &mut dyn Read,
    allow_empty: bool,
) -> Result<(), ScriptError> {
    store(paths, service, target, read_value(input)?, allow_empty)
}

/// `put` at a terminal: the value is typed twice with echo off (on the controlling terminal,
/// `/dev/tty`), and stored only when both agree.
pub fn put_from_terminal(
    paths: &Paths,
    service: &str,
    target: &str,
    allow_empty: bool,
) -> Result<(), ScriptError> {
    let shown = format!(
        "{}/{}",
        crate::display::clean(service),
        crate::display::clean(target)
    );
    let first = rpassword::prompt_password(format!("value for {shown} (not shown): "))
        .map_err(ScriptError::Terminal)?;
    if first.is_empty() && !allow_empty {
        return Err(ScriptError::Empty);
    }
    let again =
        rpassword::prompt_password("the same value again: ").map_err(ScriptError::Terminal)?;
    if first != again {
        return Err(ScriptError::Mismatch);
    }
    if first.len() > MAX_VALUE {
        return Err(ScriptError::TooLarge);
    }
    store(paths, service, target, first, allow_empty)
}

fn store(
    paths: &Paths,
    service: &str,
    target: &str,
    value: String,
    allow_empty: bool,
) -> Result<(), ScriptError> {
    if value.is_empty() && !allow_empty {
        return Err(ScriptError::Empty);
    }
    connect(paths)?
        .write(service, &[target], vec![value], Default::default())
        .map_err(|e| refusal(e, service, target))
}

/// The value `put` stores: all of `input` (at most [`MAX_VALUE`] bytes, UTF-8) without one
/// trailing newline (`\n` or `\r\n`).
fn read_value(input: &mut dyn Read) -> Result<String, ScriptError> {
    let mut buf = Vec::new();
    input
        .take(MAX_VALUE as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(ScriptError::ReadInput)?;
    if buf.len() > MAX_VALUE {
        return Err(ScriptError::TooLarge);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    String::from_utf8(buf).map_err(|_| ScriptError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(bytes: &[u8]) -> Result<String, ScriptError> {
        read_value(&mut &bytes[..])
    }

    #[test]
    fn one_trailing_newline_is_dropped() {
        assert_eq!(value(b"s3cret\n").unwrap(), "s3cret");
        assert_eq!(value(b"s3cret\r\n").unwrap(), "s3cret");
        assert_eq!(value(b"two\n\n").unwrap(), "two\n");
        assert_eq!(value(b"none").unwrap(), "none");
        assert_eq!(value(b"").unwrap(), "");
    }

    #[test]
    fn oversized_or_binary_input_is_refused_with_its_message() {
        let big = vec![b'a'; MAX_VALUE + 1];
        let err = value(&big).unwrap_err();
        assert!(matches!(err, ScriptError::TooLarge));
        assert_eq!(
            err.to_string(),
            "the value on standard input is larger than 60 KiB; nothing was stored"
        );
        assert_eq!(value(&vec![b'a'; MAX_VALUE]).unwrap().len(), MAX_VALUE);
        let err = value(b"\xff\xfe").unwrap_err();
        assert_eq!(
            err.to_string(),
            "the value on standard input is not UTF-8; nothing was stored"
        );
    }
}
