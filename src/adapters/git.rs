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
use crate::protocol::{Attributes, ResultItem};
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
            "password_expiry_utc" => d.password_expiry_utc = Some(expiry(&value)?),
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

/// A `password_expiry_utc` value: Unix seconds, digits only. Anything else is refused rather
/// than dropped (a dropped expiry would keep an expired password forever); the error does not
/// quote the value.
fn expiry(value: &str) -> Result<u64, String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(
            "invalid credential input: password_expiry_utc is not a number of seconds since 1970 (UTC)"
                .into(),
        );
    }
    value
        .parse()
        .map_err(|_| "invalid credential input: password_expiry_utc is out of range".to_string())
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

/// What `--help` prints.
const USAGE: &str = "usage: git-credential-keychain-auth get|store|erase

A git credential helper backed by the keychain-auth broker: git runs it with an action and the
credential description on standard input. Credentials live in service `git`, target
protocol://host (protocol://host/path with credential.useHttpPath), the username as attribute
`username`. A miss or a refusal prints nothing on standard output and exits 0, so git asks its
next helper; a refusal says why on standard error.

Set up:  git config --global credential.helper keychain-auth
Approve: keychain-auth register PATH-OF-THIS-HELPER --read git --write git --via \"$(command -v git)\"

  -h, --help      print this help
  -V, --version   print the version";

/// Runs one helper action. Returns the exit status.
pub fn run(
    action: Option<&str>,
    input: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
    connect: &mut dyn FnMut() -> Result<Client, ClientError>,
) -> i32 {
    match action {
        // git never passes these (it passes get, store or erase): they are for a person.
        Some("-h" | "--help") => {
            let _ = writeln!(out, "{USAGE}");
            return 0;
        }
        Some("-V" | "--version") => {
            let _ = writeln!(out, "{NAME} (keychain-auth) {}", crate::VERSION);
            return 0;
        }
        _ => {}
    }
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
    let (d, target) = match read_request(input) {
        Ok(Some(request)) => request,
        Ok(None) => return 0, // quit
        Err(why) => {
            let _ = writeln!(err, "{NAME}: {why}");
            return 1;
        }
    };
    let Some(call) = call_for(action, &d, &target) else {
        return 0; // git stores only complete credentials; nothing to do
    };
    let Some((mut client, items)) = ask(connect, &call, err) else {
        return 0;
    };
    if action == "store" {
        return 0;
    }
    let Some(stored) = items
        .into_iter()
        .next()
        .and_then(|item| Stored::for_user(item, d.username.as_deref()))
    else {
        return 0;
    };
    if action == "erase" {
        if let Err(e) = client.delete(SERVICE, &[&target])
            && !e.is_not_found()
        {
            let _ = writeln!(err, "{NAME}: {}", one_line(&e.to_string()));
        }
        return 0;
    }
    if let Some(text) = stored.answer(now()) {
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    }
    0
}

/// Reads and parses git's description and its target; `None` when git said `quit`. The error
/// is the reason, never quoting the input.
fn read_request(input: &mut dyn Read) -> Result<Option<(Description, String)>, String> {
    let bytes = match read_input(input) {
        Ok(b) => b,
        Err(true) => return Err("credential input larger than 1 MiB; ignored".into()),
        Err(false) => return Err("cannot read standard input".into()),
    };
    let d = parse(&bytes)?;
    if d.quit {
        return Ok(None);
    }
    let target = d.target()?;
    Ok(Some((d, target)))
}

/// The broker request for `action`: `get` and `erase` read the credential first (erase checks
/// its username), `store` writes it; `None` for a `store` without both username and password.
fn call_for(action: &str, d: &Description, target: &str) -> Option<Call> {
    if action != "store" {
        return Some(Call::read(SERVICE, &[target]));
    }
    let (Some(user), Some(pass)) = (&d.username, &d.password) else {
        return None;
    };
    let mut attrs = Attributes::new();
    attrs.insert("username".into(), user.clone());
    if let Some(exp) = d.password_expiry_utc {
        attrs.insert("password_expiry_utc".into(), exp.to_string());
    }
    Some(Call::write(SERVICE, &[target], vec![pass.clone()]).with_attributes(attrs))
}

/// Connects and sends `call`: the connection and the items, or `None` after a miss (silent: git
/// asks the next helper) or a refusal or broker failure (one line on `err`).
fn ask(
    connect: &mut dyn FnMut() -> Result<Client, ClientError>,
    call: &Call,
    err: &mut dyn Write,
) -> Option<(Client, Vec<ResultItem>)> {
    let mut client = match connect() {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(err, "{NAME}: {}", one_line(&e.to_string()));
            return None;
        }
    };
    match client
        .call(call)
        .and_then(super::super::client::Reply::into_results)
    {
        Ok(items) => Some((client, items)),
        Err(e) if e.is_not_found() => None, // a miss: silent, git asks the next helper
        Err(ClientError::Refused {
            reason, message, ..
        }) => {
            let _ = writeln!(err, "{NAME}: {reason}: {}", one_line(&message));
            None
        }
        Err(e) => {
            let _ = writeln!(err, "{NAME}: {}", one_line(&e.to_string()));
            None
        }
    }
}

/// A stored credential: username, password and expiry.
struct Stored {
    user: Option<String>,
    pass: Option<String>,
    expiry: Option<u64>,
}

impl Stored {
    /// The credential in `item`, unless it belongs to another user than the one git named
    /// (then it is not ours to give or erase).
    fn for_user(item: ResultItem, wanted: Option<&str>) -> Option<Stored> {
        let attrs = item.attributes.unwrap_or_default();
        let user = attrs.get("username").cloned();
        if let (Some(want), Some(have)) = (wanted, &user)
            && want != have
        {
            return None;
        }
        // A stored expiry that is not a number (written by another client) is not dropped: the
        // credential is not given out, as if expired.
        let expiry = match attrs.get("password_expiry_utc") {
            Some(e) => Some(expiry(e).ok()?),
            None => None,
        };
        Some(Stored {
            user,
            pass: item.value,
            expiry,
        })
    }

    /// The `get` answer at `now` (Unix seconds): `username=`, `password=` (and
    /// `password_expiry_utc=`) lines; `None` when expired, incomplete, or not sayable in git's
    /// line protocol.
    fn answer(self, now: u64) -> Option<String> {
        if self.expiry.is_some_and(|e| e <= now) {
            return None; // expired: git must not be given it
        }
        let (Some(user), Some(pass)) = (self.user, self.pass) else {
            return None;
        };
        if user.contains('\n') || pass.contains('\n') {
            return None; // cannot be said in git's line protocol
        }
        let mut text = format!("username={user}\npassword={pass}\n");
        if let Some(e) = self.expiry {
            text.push_str(&format!("password_expiry_utc={e}\n"));
        }
        Some(text)
    }
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

    #[test]
    fn an_expiry_that_is_not_a_number_of_seconds_is_refused() {
        let ok = parse(b"protocol=https\nhost=h\npassword_expiry_utc=1700000000\n").unwrap();
        assert_eq!(ok.password_expiry_utc, Some(1_700_000_000));
        for bad in [
            "tomorrow",
            "",
            "-1",
            "1700000000.5",
            " 1700000000",
            "1e9",
            "99999999999999999999999",
        ] {
            let input = format!("protocol=https\nhost=h\npassword_expiry_utc={bad}\n");
            let e = parse(input.as_bytes()).unwrap_err();
            assert!(e.contains("password_expiry_utc"), "{bad:?}: {e}");
            assert!(bad.is_empty() || !e.contains(bad), "not quoted: {e}");
        }
        let item = |e: &str| ResultItem {
            target: "https://h".into(),
            value: Some("pw".into()),
            attributes: Some([("password_expiry_utc".to_string(), e.to_string())].into()),
        };
        assert!(Stored::for_user(item("soon"), None).is_none(), "not served");
        assert_eq!(Stored::for_user(item("42"), None).unwrap().expiry, Some(42));
    }
}
