//! The client SDK: a small blocking client of the broker's wire protocol, with no dependency on
//! the daemon's runtime (build the crate with `default-features = false` to get only this, the
//! wire types of [`crate::protocol`] and [`crate::paths`]).
//!
//! - [`Client::connect`] opens the socket close-on-exec and, before sending anything, checks
//!   with `SO_PEERCRED` that the process serving it runs as our effective uid or as root: a
//!   socket swapped in by another user is refused ([`ClientError::ForeignServer`]) and never
//!   sees a byte.
//! - Reads and writes time out; one connection carries any number of requests.
//! - [`Client::batch`] sends several requests at once (pipelined) and returns one typed
//!   [`Reply`] per request, in order; [`Client::read`], [`Client::write`], [`Client::delete`]
//!   and [`Client::search`] are one-request shorthands that turn a refusal into
//!   [`ClientError::Refused`].
//!
//! ```no_run
//! use keychain_auth::client::Client;
//! let mut c = Client::connect_default(std::time::Duration::from_secs(30))?;
//! let items = c.read("aws", &["prod/access_key_id"])?;
//! # Ok::<(), keychain_auth::client::ClientError>(())
//! ```

use crate::paths::Paths;
use crate::protocol::{Action, Attributes, MatchMode, ResultItem, StatusInfo};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The longest response line the client accepts (a read of 1,000 large values fits).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// Everything that can go wrong talking to the broker.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached (no broker running, wrong path, …).
    #[error(
        "cannot connect to the broker at {socket}: {source}; is it running? start it with `keychain-auth start`"
    )]
    Connect {
        /// The socket path tried.
        socket: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The process serving the socket is another user: nothing was sent.
    #[error(
        "refusing the broker at {socket}: it is served by uid {server_uid}, not by you (uid {our_uid}) or root; another user may have replaced the socket, nothing was sent"
    )]
    ForeignServer {
        /// The socket path.
        socket: PathBuf,
        /// The server's uid as the kernel reports it.
        server_uid: u32,
        /// Our effective uid.
        our_uid: u32,
    },
    /// The server's credentials could not be read (then nothing is sent either).
    #[error("cannot check who serves {socket}: {source}; nothing was sent")]
    PeerCredentials {
        /// The socket path.
        socket: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Reading or writing failed (including a timeout) after connecting.
    #[error("talking to the broker failed: {0}")]
    Io(#[from] io::Error),
    /// The broker closed the connection before answering.
    #[error("the broker closed the connection")]
    Closed,
    /// The broker's answer was not a response this client understands.
    #[error("the broker sent an unexpected answer: {0}")]
    Protocol(String),
    /// A request was refused or failed (status `denied` or `error`).
    #[error("{status}: {reason}: {message}")]
    Refused {
        /// `denied` or `error`.
        status: String,
        /// The reason code (unknown codes are kept as sent, and mean denial).
        reason: String,
        /// What the broker says to do.
        message: String,
    },
}

impl ClientError {
    /// Whether this is a refusal with reason `not_found` (an exact read or delete of a missing
    /// target).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Refused { reason, .. } if reason == "not_found")
    }

    /// Whether the broker could not be reached at all.
    pub fn is_connect(&self) -> bool {
        matches!(self, ClientError::Connect { .. })
    }
}

/// One request to send: build it with [`Call::read`] and friends, refine with the `with_*`
/// methods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Call {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    action: Action,
    service: String,
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    mode: Option<MatchMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    targets: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    values: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<Attributes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<bool>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(std::string::ToString::to_string).collect()
}

impl Call {
    fn new(action: Action, service: &str, targets: Option<Vec<String>>) -> Call {
        Call {
            kind: "REQUEST",
            id: None,
            action,
            service: service.to_string(),
            mode: None,
            targets,
            values: None,
            attributes: None,
            prompt: None,
        }
    }

    /// Read the exact `targets` of `service` (values and attributes).
    pub fn read(service: &str, targets: &[&str]) -> Call {
        Call::new(Action::Read, service, Some(strings(targets)))
    }

    /// Write `values[i]` to `targets[i]` in `service`.
    pub fn write(service: &str, targets: &[&str], values: Vec<String>) -> Call {
        let mut c = Call::new(Action::Write, service, Some(strings(targets)));
        c.values = Some(values);
        c
    }

    /// Delete the exact `targets` of `service`.
    pub fn delete(service: &str, targets: &[&str]) -> Call {
        Call::new(Action::Delete, service, Some(strings(targets)))
    }

    /// List targets (and attributes, never values) of `service` starting with any of
    /// `prefixes` (every target when empty).
    pub fn search(service: &str, prefixes: &[&str]) -> Call {
        let targets = (!prefixes.is_empty()).then(|| strings(prefixes));
        Call::new(Action::Search, service, targets)
    }

    /// Match targets by prefix (read and delete; needs the search permission).
    pub fn with_prefix(mut self) -> Call {
        self.mode = Some(MatchMode::Prefix);
        self
    }

    /// Attributes to store (write) or to filter by (search, prefix read/delete).
    pub fn with_attributes(mut self, attributes: Attributes) -> Call {
        self.attributes = Some(attributes);
        self
    }

    /// `false`: never be held while a person is asked (live approval); a request that would be
    /// held is refused at once instead.
    pub fn with_prompt(mut self, prompt: bool) -> Call {
        self.prompt = Some(prompt);
        self
    }

    /// An id the broker echoes back.
    pub fn with_id(mut self, id: impl Into<String>) -> Call {
        self.id = Some(id.into());
        self
    }
}

/// The broker's answer to one [`Call`]. Unknown reason codes are kept as text (and, as the
/// protocol requires, mean denial).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Reply {
    /// The request's id, when it had one.
    #[serde(default)]
    pub id: Option<String>,
    /// `success`, `denied` or `error` (anything else is treated as a refusal).
    pub status: String,
    /// The reason code when not a success.
    #[serde(default)]
    pub reason: Option<String>,
    /// What a person should do, when not a success.
    #[serde(default)]
    pub message: Option<String>,
    /// The results of a success.
    #[serde(default)]
    pub results: Option<Vec<ResultItem>>,
}

impl Reply {
    /// Whether the request was carried out.
    pub fn is_success(&self) -> bool {
        self.status == "success"
    }

    /// The results of a success, or the refusal as an error.
    pub fn into_results(self) -> Result<Vec<ResultItem>, ClientError> {
        if self.is_success() {
            return Ok(self.results.unwrap_or_default());
        }
        Err(ClientError::Refused {
            status: self.status,
            reason: self.reason.unwrap_or_else(|| "unknown".into()),
            message: self.message.unwrap_or_default(),
        })
    }
}

/// One connection to the broker (one session: it may carry any number of requests).
pub struct Client {
    reader: BufReader<UnixStream>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

/// The uid of the process at the other end of `stream` (`SO_PEERCRED`).
fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    use nix::sys::socket::{getsockopt, sockopt};
    getsockopt(stream, sockopt::PeerCredentials)
        .map(|c| c.uid())
        .map_err(io::Error::from)
}

impl Client {
    /// Connects to the broker at `socket`, checks who serves it, and sets `timeout` on every
    /// read and write. Nothing is sent when the server is neither our uid nor root.
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Client, ClientError> {
        // std opens Unix sockets with SOCK_CLOEXEC: a program we exec does not inherit it.
        let stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
            socket: socket.to_path_buf(),
            source,
        })?;
        let server_uid = peer_uid(&stream).map_err(|source| ClientError::PeerCredentials {
            socket: socket.to_path_buf(),
            source,
        })?;
        let our_uid = nix::unistd::geteuid().as_raw();
        if server_uid != our_uid && server_uid != 0 {
            return Err(ClientError::ForeignServer {
                socket: socket.to_path_buf(),
                server_uid,
                our_uid,
            });
        }
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Client {
            reader: BufReader::new(stream),
        })
    }

    /// The pid of the process serving this connection (`SO_PEERCRED`: the process that
    /// created the listening socket).
    pub fn server_pid(&self) -> io::Result<i32> {
        use nix::sys::socket::{getsockopt, sockopt};
        getsockopt(self.reader.get_ref(), sockopt::PeerCredentials)
            .map(|c| c.pid())
            .map_err(io::Error::from)
    }

    /// Connects to the default socket (`$KEYCHAIN_AUTH_SOCKET`, else the XDG default), as
    /// [`Client::connect`] does.
    pub fn connect_default(timeout: Duration) -> Result<Client, ClientError> {
        let paths = Paths::from_env(None).map_err(|e| ClientError::Connect {
            socket: PathBuf::new(),
            source: io::Error::new(io::ErrorKind::NotFound, e.to_string()),
        })?;
        Client::connect(&paths.socket, timeout)
    }

    /// Sends one line (a newline is appended) and returns the response line without its
    /// newline. The reference client uses this to pass arbitrary lines through.
    pub fn round_trip(&mut self, line: &[u8]) -> Result<String, ClientError> {
        self.send_lines(&[line.to_vec()])?;
        self.recv_line()
    }

    fn send_lines(&mut self, lines: &[Vec<u8>]) -> Result<(), ClientError> {
        let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for l in lines {
            out.extend_from_slice(l);
            out.push(b'\n');
        }
        self.reader.get_mut().write_all(&out)?;
        Ok(())
    }

    fn recv_line(&mut self) -> Result<String, ClientError> {
        let mut resp = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_RESPONSE as u64 + 1)
            .read_until(b'\n', &mut resp)?;
        if n == 0 {
            return Err(ClientError::Closed);
        }
        if resp.last() != Some(&b'\n') {
            return Err(if resp.len() > MAX_RESPONSE {
                ClientError::Protocol("a response line is too long".into())
            } else {
                ClientError::Closed
            });
        }
        resp.pop();
        String::from_utf8(resp).map_err(|_| ClientError::Protocol("a response is not UTF-8".into()))
    }

    /// Sends every call at once and returns one reply per call, in order.
    pub fn batch(&mut self, calls: &[Call]) -> Result<Vec<Reply>, ClientError> {
        let lines = calls
            .iter()
            .map(|c| serde_json::to_vec(c).map_err(|e| ClientError::Protocol(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        self.send_lines(&lines)?;
        let mut replies = Vec::with_capacity(calls.len());
        for _ in calls {
            let line = self.recv_line()?;
            let reply: Reply = serde_json::from_str(&line)
                .map_err(|_| ClientError::Protocol("a response is not a RESPONSE object".into()))?;
            replies.push(reply);
        }
        Ok(replies)
    }

    /// Sends one call and returns its reply.
    pub fn call(&mut self, call: &Call) -> Result<Reply, ClientError> {
        self.batch(std::slice::from_ref(call))?
            .pop()
            .ok_or(ClientError::Closed)
    }

    /// Reads the exact `targets` of `service`; a refusal (including `not_found`) is an error.
    pub fn read(
        &mut self,
        service: &str,
        targets: &[&str],
    ) -> Result<Vec<ResultItem>, ClientError> {
        self.call(&Call::read(service, targets))?.into_results()
    }

    /// Writes `values[i]` to `targets[i]` with `attributes` on each.
    pub fn write(
        &mut self,
        service: &str,
        targets: &[&str],
        values: Vec<String>,
        attributes: Attributes,
    ) -> Result<(), ClientError> {
        let mut call = Call::write(service, targets, values);
        if !attributes.is_empty() {
            call = call.with_attributes(attributes);
        }
        self.call(&call)?.into_results().map(|_| ())
    }

    /// Deletes the exact `targets` of `service`.
    pub fn delete(&mut self, service: &str, targets: &[&str]) -> Result<(), ClientError> {
        self.call(&Call::delete(service, targets))?
            .into_results()
            .map(|_| ())
    }

    /// Lists targets of `service` (with attributes, never values) under `prefixes`.
    pub fn search(
        &mut self,
        service: &str,
        prefixes: &[&str],
    ) -> Result<Vec<ResultItem>, ClientError> {
        self.call(&Call::search(service, prefixes))?.into_results()
    }

    /// Asks for STATUS.
    pub fn status(&mut self) -> Result<StatusInfo, ClientError> {
        let line = self.round_trip(br#"{"type":"STATUS"}"#)?;
        serde_json::from_str(&line)
            .map_err(|_| ClientError::Protocol("the STATUS answer is not a STATUS object".into()))
    }
}

/// Connects to `socket` and asks for STATUS: `Ok` means a broker is running there. Errors keep
/// the kind of the underlying I/O error (`NotFound`, `ConnectionRefused`, …); a server of
/// another uid is `PermissionDenied`.
pub fn status(socket: &Path, timeout: Duration) -> io::Result<StatusInfo> {
    let to_io = |e: ClientError| match e {
        ClientError::Connect { source, .. }
        | ClientError::PeerCredentials { source, .. }
        | ClientError::Io(source) => source,
        e @ ClientError::ForeignServer { .. } => {
            io::Error::new(io::ErrorKind::PermissionDenied, e.to_string())
        }
        e => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
    };
    Client::connect(socket, timeout)
        .map_err(to_io)?
        .status()
        .map_err(to_io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_serialise_to_protocol_lines() {
        let c = Call::read("aws", &["a", "b"]).with_id("7");
        let v: serde_json::Value = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"REQUEST","id":"7","action":"read","service":"aws","targets":["a","b"]})
        );
        let line = serde_json::to_vec(&Call::search("git", &[])).unwrap();
        let parsed = crate::protocol::parse_line(&line).map_err(|e| e.message);
        assert!(parsed.is_ok(), "{parsed:?}");
        let w = Call::write("s", &["t"], vec!["v".into()]).with_prompt(false);
        assert!(crate::protocol::parse_line(&serde_json::to_vec(&w).unwrap()).is_ok());
    }

    #[test]
    fn unknown_reasons_are_refusals() {
        let r: Reply = serde_json::from_str(
            r#"{"type":"RESPONSE","status":"denied","reason":"some_future_reason","message":"m"}"#,
        )
        .unwrap();
        let e = r.into_results().unwrap_err();
        assert!(
            matches!(e, ClientError::Refused { ref reason, .. } if reason == "some_future_reason")
        );
        let r: Reply =
            serde_json::from_str(r#"{"type":"RESPONSE","status":"weird","results":[]}"#).unwrap();
        assert!(r.into_results().is_err());
    }

    #[test]
    fn connect_error_names_the_start_command() {
        let e =
            Client::connect(Path::new("/nonexistent/ka.sock"), Duration::from_secs(1)).unwrap_err();
        assert!(e.is_connect());
        assert!(e.to_string().contains("keychain-auth start"), "{e}");
    }
}
