//! Reading bounded lines from a QUIC receive stream without over-reading past the newline (the
//! bytes after a stream header belong to the forwarded connection).
//!
//! The [`MAX_LINE`] bound is enforced while reading: a peer that never sends a newline costs at
//! most [`MAX_LINE`] bytes of memory, never more, whatever it sends.

use quinn::RecvStream;

use crate::control::MAX_LINE;

/// Reads lines from one stream, one byte at a time (control lines are short). Cancel-safe: bytes
/// read before a cancelled [`LineReader::next`] stay in the buffer for the next call, so it can
/// sit in a `select!` loop.
#[derive(Debug, Default)]
pub struct LineReader {
    buf: Vec<u8>,
}

impl LineReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next line (without `\n`); `Ok(None)` at a clean end of stream; an error for a line
    /// longer than [`MAX_LINE`] (detected at byte `MAX_LINE + 1`), a stream that ends mid-line or
    /// a reset.
    pub async fn next(&mut self, recv: &mut RecvStream) -> Result<Option<Vec<u8>>, String> {
        let mut byte = [0u8; 1];
        loop {
            match recv.read(&mut byte).await {
                Ok(Some(0)) => continue,
                Ok(Some(_)) => {
                    if byte[0] == b'\n' {
                        return Ok(Some(std::mem::take(&mut self.buf)));
                    }
                    if self.buf.len() >= MAX_LINE {
                        return Err("line too long".into());
                    }
                    if self.buf.capacity() == 0 {
                        self.buf.reserve(128);
                    }
                    self.buf.push(byte[0]);
                }
                Ok(None) if self.buf.is_empty() => return Ok(None),
                Ok(None) => return Err("stream ended mid-line".into()),
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}

/// Reads one line (without `\n`), byte-exact: nothing after the newline is consumed.
/// `Ok(None)` at a clean end of stream.
pub async fn read_line(recv: &mut RecvStream) -> Result<Option<Vec<u8>>, String> {
    LineReader::new().next(recv).await
}
