//! Talking to the daemon: request lines, response checks, a long-lived client session and a
//! raw connection from the test process itself.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Output};
use std::time::Duration;

/// A request line (`read`, `delete`, `search`, … of `targets` in `service`).
pub fn request(action: &str, service: &str, targets: &[&str]) -> String {
    serde_json::json!({"type":"REQUEST","action":action,"service":service,"targets":targets})
        .to_string()
}

/// A write request line: `values[i]` for `targets[i]`, all with `attributes`.
pub fn write_request(
    service: &str,
    targets: &[&str],
    values: &[&str],
    attributes: Value,
) -> String {
    serde_json::json!({"type":"REQUEST","action":"write","service":service,"targets":targets,
        "values":values,"attributes":attributes})
    .to_string()
}

/// Asserts a response's status and reason; returns its message.
pub fn expect(resp: &Value, status: &str, reason: Option<&str>) -> String {
    assert_eq!(resp["type"], "RESPONSE", "{resp}");
    assert_eq!(resp["status"], status, "{resp}");
    match reason {
        Some(r) => assert_eq!(resp["reason"], r, "{resp}"),
        None => assert!(resp.get("reason").is_none(), "{resp}"),
    }
    resp["message"].as_str().unwrap_or_default().to_string()
}

/// Target names of a response's results.
pub fn targets(resp: &Value) -> Vec<String> {
    resp["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["target"].as_str().expect("target").to_string())
        .collect()
}

/// The first response line a caller printed on stdout; panics with its output if there is none.
pub fn first_response(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().next().unwrap_or_default()).unwrap_or_else(|e| {
        panic!(
            "no response ({e}): {text:?} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The response of a held caller ([`Sandbox::spawn_client`](crate::Sandbox::spawn_client)),
/// once it has one: waits for it to exit.
pub fn held_response(child: Child) -> Value {
    first_response(&child.wait_with_output().expect("client output"))
}

/// Every line of a client's output, parsed as JSON.
pub(crate) fn parse_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

/// A client process fed one request line at a time over one connection (killed on drop);
/// made by [`Sandbox::session`](crate::Sandbox::session).
pub struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Session {
    pub(crate) fn new(child: Child, stdin: ChildStdin, stdout: BufReader<ChildStdout>) -> Session {
        Session {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one request line and returns the parsed response.
    pub fn send(&mut self, line: &str) -> Value {
        writeln!(self.stdin, "{line}").expect("write to session");
        self.stdin.flush().expect("flush");
        let mut resp = String::new();
        self.stdout.read_line(&mut resp).expect("read response");
        serde_json::from_str(&resp).unwrap_or_else(|e| panic!("bad response {resp:?}: {e}"))
    }

    /// The client's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw connection from the test process itself (for malformed input).
pub struct Raw {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Raw {
    /// Connects to `socket` (reads time out after 20 s).
    pub fn connect(socket: &Path) -> Raw {
        let stream = UnixStream::connect(socket).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        Raw { stream, reader }
    }

    /// Sends raw bytes (no newline added).
    pub fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one response line; `None` when the daemon closed the connection.
    pub fn read_line(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&line).expect("response is JSON")),
        }
    }

    /// Sends `bytes` plus a newline and reads the response.
    pub fn round_trip(&mut self, bytes: &[u8]) -> Option<Value> {
        let mut v = bytes.to_vec();
        v.push(b'\n');
        self.send_bytes(&v).ok()?;
        self.read_line()
    }

    /// True when the daemon has closed the connection (EOF within the read timeout).
    pub fn closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(self.reader.read(&mut buf), Ok(0) | Err(_))
    }
}
