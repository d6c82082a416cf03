//! Reading newline-delimited request lines with a hard size cap, each with the process that
//! wrote it.
//!
//! Bytes arrive in chunks, each with its writer's credentials ([`sender::recv`]). A line's
//! writer is the sender of every chunk it was assembled from: one process, or [`Writer::Mixed`]
//! when two processes' bytes meet in one line (never honoured), or [`Writer::Unknown`] when the
//! kernel attached no credentials.

use crate::identity::sender::{self, Sender};
use std::collections::VecDeque;
use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use tokio::io::Interest;
use tokio::net::UnixStream;

/// Bytes read per receive call, at least: received straight into the line buffer's spare room.
const CHUNK: usize = 4 * 1024;

/// Who wrote a line.
#[derive(Debug, Clone)]
pub enum Writer {
    /// One process wrote all of it.
    One(Arc<Sender>),
    /// Bytes of more than one process.
    Mixed,
    /// Some bytes came without credentials.
    Unknown,
}

/// What the next read produced.
#[derive(Debug)]
pub enum Frame {
    /// A complete line is in [`LineReader::line`] (newline and a trailing `\r` stripped).
    Line(Writer),
    /// The peer closed the connection with nothing pending.
    Eof,
    /// The line exceeded the cap; the connection cannot be resynchronised.
    TooLarge(Writer),
}

/// Splits a connection's byte stream into lines and keeps track of who wrote which bytes.
pub struct LineReader {
    /// Received bytes not yet returned as a line.
    buf: Vec<u8>,
    /// The chunks `buf` is made of, in order: (length, sender).
    chunks: VecDeque<(usize, Option<Arc<Sender>>)>,
    /// The last line returned.
    line: Vec<u8>,
    control: Vec<u8>,
}

impl Default for LineReader {
    fn default() -> Self {
        LineReader::new()
    }
}

impl LineReader {
    /// A reader with empty buffers.
    pub fn new() -> LineReader {
        LineReader {
            buf: Vec::with_capacity(1024),
            chunks: VecDeque::new(),
            line: Vec::with_capacity(1024),
            control: sender::control_buffer(),
        }
    }

    /// The line the last [`Frame::Line`] announced.
    pub fn line(&self) -> &[u8] {
        &self.line
    }

    /// Reads until a whole line is buffered (at most `max` bytes, newline excluded). A final line
    /// without a newline before end of stream counts as a line.
    pub async fn next(&mut self, stream: &UnixStream, max: usize) -> io::Result<Frame> {
        let mut scanned = 0;
        loop {
            if let Some(i) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + i;
                if end > max {
                    return Ok(Frame::TooLarge(self.take(self.buf.len())));
                }
                self.line.clear();
                self.line.extend_from_slice(&self.buf[..end]);
                if self.line.last() == Some(&b'\r') {
                    self.line.pop();
                }
                return Ok(Frame::Line(self.take(end + 1)));
            }
            scanned = self.buf.len();
            if scanned > max {
                return Ok(Frame::TooLarge(self.take(scanned)));
            }
            let (n, from) = self.recv(stream).await?;
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(Frame::Eof);
                }
                self.line.clear();
                self.line.extend_from_slice(&self.buf);
                return Ok(Frame::Line(self.take(self.buf.len())));
            }
            self.chunks.push_back((n, from.map(Arc::new)));
        }
    }

    /// Receives one chunk, appended to `buf`. Cancel-safe (the approver's `select!` drops it
    /// while waiting): `buf` only grows by bytes received, inside one synchronous call.
    async fn recv(&mut self, stream: &UnixStream) -> io::Result<(usize, Option<Sender>)> {
        let (buf, control) = (&mut self.buf, &mut self.control);
        loop {
            let received = stream.try_io(Interest::READABLE, || {
                let len = buf.len();
                if buf.capacity() - len < CHUNK {
                    buf.reserve(CHUNK);
                }
                buf.resize(buf.capacity(), 0);
                let r = sender::recv(stream.as_fd(), &mut buf[len..], control);
                buf.truncate(len + r.as_ref().map_or(0, |(n, _)| *n));
                r
            });
            match received {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.readable().await?,
                r => return r,
            }
        }
    }

    /// Consumes the first `n` buffered bytes and returns who wrote them.
    fn take(&mut self, n: usize) -> Writer {
        self.buf.drain(..n);
        let mut left = n;
        let mut writer: Option<Writer> = None;
        while left > 0 {
            let Some((len, from)) = self.chunks.front_mut() else {
                break;
            };
            let this = match from {
                Some(s) => Writer::One(s.clone()),
                None => Writer::Unknown,
            };
            writer = Some(match (writer, this) {
                (None, w) => w,
                // One pid for both chunks is one process only while both writers live (a pid is
                // reused once its process is reaped); a line pieced together across an exit is
                // nobody's.
                (Some(Writer::One(a)), Writer::One(b))
                    if a.pid == b.pid && a.uid == b.uid && !gone(&a) && !gone(&b) =>
                {
                    Writer::One(a)
                }
                (Some(Writer::Unknown), _) | (_, Writer::Unknown) => Writer::Unknown,
                _ => Writer::Mixed,
            });
            if *len > left {
                *len -= left;
                left = 0;
            } else {
                left -= *len;
                self.chunks.pop_front();
            }
        }
        writer.unwrap_or(Writer::Unknown)
    }
}

/// Whether the writer's pidfd shows that it has exited.
fn gone(s: &Sender) -> bool {
    s.pidfd
        .as_ref()
        .is_some_and(|fd| crate::identity::exited(fd.as_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A child running `sh -c script` with one end of a socket pair as its stdout, and the
    /// sender of the first chunk it writes (with its pidfd, as the kernel sends it).
    fn writer(script: &str) -> (std::process::Child, Sender) {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        sender::enable(ours.as_fd()).unwrap();
        let child = std::process::Command::new("sh")
            .args(["-c", script])
            .stdout(std::os::fd::OwnedFd::from(theirs))
            .spawn()
            .unwrap();
        let (mut buf, mut control) = ([0u8; 16], sender::control_buffer());
        loop {
            match sender::recv(ours.as_fd(), &mut buf, &mut control) {
                Ok((n, Some(s))) if n > 0 => return (child, s),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_line_pieced_together_across_a_writers_exit_is_nobodys() {
        // Two chunks naming one pid: the first from a writer that has exited since (its pidfd
        // says so), the second from a living process that now has that pid number.
        let (mut dead, first) = writer("echo x");
        dead.wait().unwrap();
        let (mut live, second) = writer("echo x; sleep 5");
        if first.pidfd.is_none() {
            eprintln!("SKIPPED: this kernel sends no SCM_PIDFD");
            let _ = live.kill();
            return;
        }
        let chunk = |s: Sender| {
            Some(Arc::new(Sender {
                pid: 4242,
                uid: s.uid,
                pidfd: s.pidfd,
            }))
        };
        let mut r = LineReader::new();
        r.buf.extend_from_slice(b"{\"type\":\"STATUS\"}\n");
        r.chunks.push_back((12, chunk(first)));
        r.chunks.push_back((6, chunk(second)));
        let w = r.take(18);
        let _ = live.kill();
        let _ = live.wait();
        assert!(matches!(w, Writer::Mixed), "{w:?}");
    }

    async fn frames(input: &[&[u8]], max: usize) -> Vec<(String, Vec<u8>)> {
        let (a, mut b) = UnixStream::pair().unwrap();
        sender::enable(a.as_fd()).unwrap();
        for part in input {
            b.write_all(part).await.unwrap();
        }
        drop(b);
        let mut r = LineReader::new();
        let mut out = Vec::new();
        loop {
            let f = r.next(&a, max).await.unwrap();
            let (name, stop) = match &f {
                Frame::Line(Writer::One(s)) => {
                    assert_eq!(s.pid, std::process::id() as i32);
                    ("line", false)
                }
                Frame::Line(w) => panic!("writer {w:?}"),
                Frame::Eof => ("eof", true),
                Frame::TooLarge(_) => ("too large", true),
            };
            out.push((name.to_string(), r.line().to_vec()));
            if stop {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn splits_lines_and_caps() {
        let f = frames(&[b"ab\r\ncd\nef"], 10).await;
        assert_eq!(f[0], ("line".into(), b"ab".to_vec()));
        assert_eq!(f[1], ("line".into(), b"cd".to_vec()));
        assert_eq!(f[2], ("line".into(), b"ef".to_vec()));
        assert_eq!(f[3].0, "eof");
        let f = frames(&[b"01234", b"56789\n"], 10).await;
        assert_eq!(f[0], ("line".into(), b"0123456789".to_vec()));
        let f = frames(&[b"0123456789A\n"], 10).await;
        assert_eq!(f[0].0, "too large");
        let f = frames(&[&[b'x'; 100]], 10).await;
        assert_eq!(f[0].0, "too large");
    }

    #[tokio::test]
    async fn a_read_cancelled_while_waiting_loses_and_adds_nothing() {
        // The approver session races `next` against its event channel in `select!`.
        let (a, mut b) = UnixStream::pair().unwrap();
        sender::enable(a.as_fd()).unwrap();
        let mut r = LineReader::new();
        b.write_all(b"{\"x\":").await.unwrap();
        for _ in 0..3 {
            let waited =
                tokio::time::timeout(std::time::Duration::from_millis(20), r.next(&a, 100)).await;
            assert!(waited.is_err(), "no whole line yet");
        }
        b.write_all(b"1}\n").await.unwrap();
        assert!(matches!(r.next(&a, 100).await.unwrap(), Frame::Line(_)));
        assert_eq!(r.line(), b"{\"x\":1}");
    }

    #[test]
    fn a_line_of_two_writers_is_mixed() {
        let me = std::process::id() as i32;
        let s = |pid| {
            Some(Arc::new(Sender {
                pid,
                uid: 0,
                pidfd: None,
            }))
        };
        let mut r = LineReader::new();
        r.buf.extend_from_slice(b"{\"a\"\n{\"b\":1}\n");
        r.chunks.push_back((3, s(me)));
        r.chunks.push_back((2, s(me + 1)));
        r.chunks.push_back((8, s(me + 1)));
        assert!(matches!(r.take(5), Writer::Mixed));
        match r.take(8) {
            Writer::One(w) => assert_eq!(w.pid, me + 1),
            w => panic!("{w:?}"),
        }
        r.buf.extend_from_slice(b"x\n");
        r.chunks.push_back((2, None));
        assert!(matches!(r.take(2), Writer::Unknown));
    }
}
