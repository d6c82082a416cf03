//! `git-credential-keychain-auth`: git's credential helper protocol
//! (`gitcredentials(7)`, `git-credential(1)`).
//!
//! git runs `git-credential-keychain-auth get|store|erase` with `key=value` lines on standard
//! input, ended by a blank line or end of input. The credential lives in service `git` under
//! target `protocol://host[/path]` (`path` only when git sends one, i.e. with
//! `credential.useHttpPath`), the username as attribute `username`, and `password_expiry_utc`,
//! when git sends one, as an attribute of that name.
//!
//! - `get` prints `username=`, `password=` (and `password_expiry_utc=`) lines; it prints
//!   nothing when it has no matching credential (a miss, an expired password, another username)
//!   so git asks its next helper or the user.
//! - `store` saves `password` (only when both `username` and `password` are given); `erase`
//!   deletes the credential when the username (if given) matches.
//! - Unknown keys are ignored; `capability[]` is read but no capability is announced, so git
//!   sends and expects only the classic username/password fields; `quit=1|true` makes the
//!   helper stop at once; an unknown action is ignored, as git asks of helpers.
//! - A refusal by the broker (unapproved helper, missing permission) or no broker prints one
//!   line on standard error, no output, and exits 0: git falls through to its next helper and
//!   the user sees why. A miss prints nothing at all.
//! - Malformed input (a line without `=`, not UTF-8, NUL bytes, more than 1 MiB, no `protocol`,
//!   neither `host` nor `path`) prints one line on standard error — never the input — and exits
//!   1; git then continues with its next helper.

use super::{one_line, read_input};
use crate::client::{Call, Client, ClientError};
use crate::protocol::Attributes;
use std::io::{Read, Write};

/// The service credentials are stored under.
pub const SERVICE: &str = "git";
const NAME: &str = "git-credential-keychain-auth";

/// The fields of one credential description.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Description {
    /// `protocol`.
    pub protocol: Option<String>,
    /// `host` (may carry `:port`).
    pub host: Option<String>,
    /// `path`.
    pub path: Option<String>,
    /// `username`.
    pub username: Option<String>,
    /// `password`.
    pub password: Option<String>,
    /// `password_expiry_utc` (Unix seconds).
    pub password_expiry_utc: Option<u64>,
    /// `capability[]` values announced by git.
    pub capabilities: Vec<String>,
    /// `quit` was true.
    pub quit: bool,
}

/// Parses the helper's standard input; the error is the reason (never quoting the input).
pub fn parse(input: &[u8]) -> Result<Description, String> {
    if input.contains(&0) {
        return Err("invalid credential input: it contains a NUL byte".into());
    }
    let text = std::str::from_utf8(input)
        .map_err(|_| "invalid credential input: not UTF-8".to_string())?;
    let mut d = Description::default();
    for (n, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("invalid credential line {}: no '='", n + 1))?;
        let value = value.to_string();
        match key {
            "protocol" => d.protocol = Some(value),
            "host" => d.host = Some(value),
            "path" => d.path = Some(value),
            "username" => d.username = Some(value),
            "password" => d.password = Some(value),
            "password_expiry_utc" => d.password_expiry_utc = value.parse().ok(),
            "capability[]" => d.capabilities.push(value),
            "quit" => d.quit = matches!(value.as_str(), "1" | "true"),
            "url" => {
                // git sends the parts; a hand-written `url=` is broken down like git does.
                if let Some((proto, rest)) = value.split_once("://") {
                    d.protocol = Some(proto.to_string());
                    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
                    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
                    d.host = Some(host.to_string());
                    d.path = (!path.is_empty()).then(|| path.to_string());
                }
            }
            _ => {} // unknown keys are ignored, as git asks of helpers
        }
    }
    Ok(d)
}

impl Description {
    /// `protocol://host[/path]`, or why there is none.
    pub fn target(&self) -> Result<String, String> {
        let protocol = self
            .protocol
            .as_deref()
            .filter(|p| !p.is_empty())
            .ok_or("invalid credential input: no protocol")?;
        let host = self.host.as_deref().unwrap_or("");
        let path = self.path.as_deref().unwrap_or("");
        if host.is_empty() && path.is_empty() {
            return Err("invalid credential input: neither host nor path".into());
        }
        let mut t = format!("{protocol}://{host}");
        if !path.is_empty() {
            t.push('/');
            t.push_str(path.trim_start_matches('/'));
        }
        Ok(t)
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs one helper action. Returns the exit status.
pub fn run(
    action: Option<&str>,
    input: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
    connect: &mut dyn FnMut() -> Result<Client, ClientError>,
) -> i32 {
    let Some(action @ ("get" | "store" | "erase")) = action else {
        if action.is_none() {
            let _ = writeln!(
                err,
                "usage: {NAME} get|store|erase  (a git credential helper: git config credential.helper keychain-auth)"
            );
            return 1;
        }
        return 0; // an unknown action is ignored, as gitcredentials(7) asks
    };
    let bytes = match read_input(input) {
        Ok(b) => b,
        Err(true) => {
            let _ = writeln!(err, "{NAME}: credential input larger than 1 MiB; ignored");
            return 1;
        }
        Err(false) => {
            let _ = writeln!(err, "{NAME}: cannot read standard input");
            return 1;
        }
    };
    let d = match parse(&bytes) {
        Ok(d) => d,
        Err(why) => {
            let _ = writeln!(err, "{NAME}: {why}");
            return 1;
        }
    };
    if d.quit {
        return 0;
    }
    let target = match d.target() {
        Ok(t) => t,
        Err(why) => {
            let _ = writeln!(err, "{NAME}: {why}");
            return 1;
        }
    };
    let call = match action {
        "get" => Call::read(SERVICE, &[&target]),
        "erase" => Call::read(SERVICE, &[&target]),
        _ => {
            let (Some(user), Some(pass)) = (&d.username, &d.password) else {
                return 0; // git stores only complete credentials; nothing to do
            };
            let mut attrs = Attributes::new();
            attrs.insert("username".into(), user.clone());
            if let Some(exp) = d.password_expiry_utc {
                attrs.insert("password_expiry_utc".into(), exp.to_string());
            }
            Call::write(SERVICE, &[&target], vec![pass.clone()]).with_attributes(attrs)
        }
    };
    let mut client = match connect() {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(err, "{NAME}: {}", one_line(&e.to_string()));
            return 0;
        }
    };
    let reply = client.call(&call).and_then(|r| r.into_results());
    let items = match reply {
        Ok(items) => items,
        Err(e) if e.is_not_found() => return 0, // a miss: silent, git asks the next helper
        Err(ClientError::Refused {
            reason, message, ..
        }) => {
            let _ = writeln!(err, "{NAME}: {reason}: {}", one_line(&message));
            return 0;
        }
        Err(e) => {
            let _ = writeln!(err, "{NAME}: {}", one_line(&e.to_string()));
            return 0;
        }
    };
    if action == "store" {
        return 0;
    }
    let Some(item) = items.into_iter().next() else {
        return 0;
    };
    let attrs = item.attributes.unwrap_or_default();
    let stored_user = attrs.get("username").cloned();
    if let (Some(want), Some(have)) = (&d.username, &stored_user)
        && want != have
    {
        return 0; // a credential for another user of this host: not ours to give or erase
    }
    let expiry = attrs
        .get("password_expiry_utc")
        .and_then(|e| e.parse::<u64>().ok());
    if action == "erase" {
        if let Err(e) = client.delete(SERVICE, &[&target])
            && !e.is_not_found()
        {
            let _ = writeln!(err, "{NAME}: {}", one_line(&e.to_string()));
        }
        return 0;
    }
    if expiry.is_some_and(|e| e <= now()) {
        return 0; // expired: git must not be given it
    }
    let (Some(user), Some(pass)) = (stored_user, item.value) else {
        return 0;
    };
    if user.contains('\n') || pass.contains('\n') {
        return 0; // cannot be said in git's line protocol
    }
    let mut text = format!("username={user}\npassword={pass}\n");
    if let Some(e) = expiry {
        text.push_str(&format!("password_expiry_utc={e}\n"));
    }
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_git_input() {
        let d = parse(b"capability[]=authtype\nprotocol=https\nhost=example.com:8443\npath=a/b.git\nusername=bob\nwwwauth[]=Basic\n\nprotocol=ignored\n").unwrap();
        assert_eq!(d.target().unwrap(), "https://example.com:8443/a/b.git");
        assert_eq!(d.username.as_deref(), Some("bob"));
        assert_eq!(d.capabilities, vec!["authtype"]);
        assert_eq!(
            parse(b"protocol=https\nhost=h").unwrap().target().unwrap(),
            "https://h"
        );
        let u = parse(b"url=https://me@h.example/x/y.git\n").unwrap();
        assert_eq!(u.target().unwrap(), "https://h.example/x/y.git");
    }

    #[test]
    fn rejects_malformed_without_quoting_it() {
        let e = parse(b"protocol=https\nSECRET-NO-EQUALS\n").unwrap_err();
        assert!(!e.contains("SECRET"), "{e}");
        assert!(parse(b"a=\0").is_err());
        assert!(parse(&[0xff, b'=', b'\n']).is_err());
        assert!(parse(b"host=h\n").unwrap().target().is_err());
        assert!(parse(b"protocol=https\n").unwrap().target().is_err());
    }
}
