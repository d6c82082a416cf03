//! A minimal blocking protocol client: the status probe used by `start` and the dashboard, and the
//! engine of the reference client `keychain-auth-client`.

use crate::protocol::StatusInfo;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// One connection to a broker (one session).
pub struct Client {
    reader: BufReader<UnixStream>,
}

impl Client {
    /// Connects to the broker at `socket`; reads and writes time out after `timeout`.
    pub fn connect(socket: &Path, timeout: Duration) -> io::Result<Client> {
        // std opens Unix sockets with SOCK_CLOEXEC, as the protocol's security contract requires.
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Client {
            reader: BufReader::new(stream),
        })
    }

    /// Sends one line (a newline is appended) and returns the response line without its
    /// newline.
    pub fn round_trip(&mut self, line: &[u8]) -> io::Result<String> {
        let mut out = Vec::with_capacity(line.len() + 1);
        out.extend_from_slice(line);
        out.push(b'\n');
        self.reader.get_mut().write_all(&out)?;
        let mut resp = String::new();
        if self.reader.read_line(&mut resp)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the broker closed the connection",
            ));
        }
        if resp.ends_with('\n') {
            resp.pop();
        }
        Ok(resp)
    }

    /// Asks for STATUS.
    pub fn status(&mut self) -> io::Result<StatusInfo> {
        let line = self.round_trip(br#"{"type":"STATUS"}"#)?;
        serde_json::from_str(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// Connects to `socket` and asks for STATUS: `Ok` means a broker is running there.
pub fn status(socket: &Path, timeout: Duration) -> io::Result<StatusInfo> {
    Client::connect(socket, timeout)?.status()
}
