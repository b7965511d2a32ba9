//! Reading bounded lines from a QUIC receive stream without over-reading past the newline (the
//! bytes after a stream header belong to the forwarded connection).

use quinn::RecvStream;

use crate::control::MAX_LINE;

/// Reads one line (without `\n`), byte-exact: nothing after the newline is consumed.
/// `Ok(None)` at a clean end of stream.
pub async fn read_line(recv: &mut RecvStream) -> Result<Option<Vec<u8>>, String> {
    let mut line = Vec::with_capacity(128);
    let mut byte = [0u8; 1];
    loop {
        match recv.read(&mut byte).await {
            Ok(Some(0)) => continue,
            Ok(Some(_)) => {
                if byte[0] == b'\n' {
                    return Ok(Some(line));
                }
                if line.len() >= MAX_LINE {
                    return Err("line too long".into());
                }
                line.push(byte[0]);
            }
            Ok(None) if line.is_empty() => return Ok(None),
            Ok(None) => return Err("stream ended mid-line".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
}
