//! Reading newline-delimited request lines with a hard size cap.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// What the next read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete line is in the buffer (newline and a trailing `\r` stripped).
    Line,
    /// The peer closed the connection with nothing pending.
    Eof,
    /// The line exceeded the cap; the connection cannot be resynchronised.
    TooLarge,
}

/// Reads one line into `buf` (cleared first), never buffering more than `max` bytes of it. A
/// final line without a newline before EOF counts as a line.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Frame> {
    buf.clear();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(if buf.is_empty() {
                Frame::Eof
            } else {
                Frame::Line
            });
        }
        if let Some(i) = available.iter().position(|&b| b == b'\n') {
            if buf.len() + i > max {
                return Ok(Frame::TooLarge);
            }
            buf.extend_from_slice(&available[..i]);
            reader.consume(i + 1);
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(Frame::Line);
        }
        let n = available.len();
        if buf.len() + n > max {
            return Ok(Frame::TooLarge);
        }
        buf.extend_from_slice(available);
        reader.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8], max: usize) -> Vec<(Frame, Vec<u8>)> {
        let mut r = tokio::io::BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        loop {
            let f = read_line(&mut r, &mut buf, max).await.unwrap();
            let stop = f != Frame::Line;
            out.push((f, buf.clone()));
            if stop {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn splits_lines_and_caps() {
        let f = frames(b"ab\r\ncd\nef", 10).await;
        assert_eq!(f[0], (Frame::Line, b"ab".to_vec()));
        assert_eq!(f[1], (Frame::Line, b"cd".to_vec()));
        assert_eq!(f[2], (Frame::Line, b"ef".to_vec()));
        assert_eq!(f[3].0, Frame::Eof);
        let f = frames(b"0123456789\n", 10).await;
        assert_eq!(f[0], (Frame::Line, b"0123456789".to_vec()));
        let f = frames(b"0123456789A\n", 10).await;
        assert_eq!(f[0].0, Frame::TooLarge);
        let f = frames(&[b'x'; 100], 10).await;
        assert_eq!(f[0].0, Frame::TooLarge);
    }
}
