//! The data path of a forwarded connection: one TCP connection ↔ one QUIC stream, both
//! directions at once in one task.
//!
//! Unlike `tokio::io::copy_bidirectional`, which copies every byte into its own buffer and then
//! again into quinn, this hands buffers to quinn as they are: TCP is read straight into a fresh
//! [`BytesMut`] that becomes the stream's chunk ([`SendStream::write_chunk`], no copy), and
//! received chunks are written to TCP from quinn's own buffers ([`RecvStream::read_chunk`], no
//! copy). The semantics are those of `copy_bidirectional`: an EOF on one side half-closes the
//! other (TCP EOF → the stream is finished; the stream's end → TCP write shutdown), the copy ends
//! when both directions have. An error in either direction ends both and is passed on as an
//! error, never as a clean end: the stream is reset and the TCP connection is closed with a
//! reset, so the program at the other end can tell a broken transfer from a complete one.

use bytes::BytesMut;
use quinn::{RecvStream, SendStream, VarInt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest chunk read from TCP or taken from quinn at once. Large chunks mean fewer wake-ups and
/// syscalls per megabyte; quinn splits them into packets anyway.
pub const CHUNK: usize = super::config::COPY_CHUNK;

/// Copies `tcp` to the stream and the stream to `tcp` until both directions end; returns the
/// bytes sent to the stream and the bytes received from it.
pub async fn splice(
    tcp: &mut TcpStream,
    send: &mut SendStream,
    recv: &mut RecvStream,
) -> std::io::Result<(u64, u64)> {
    let (mut r, mut w) = tcp.split();
    let r = tokio::try_join!(tcp_to_stream(&mut r, send), stream_to_tcp(recv, &mut w));
    if r.is_err() {
        broken(tcp, send, recv);
    }
    r
}

/// After an error in either direction: resets the stream, stops its receiving side and makes
/// the TCP connection's close a reset, so neither end mistakes a broken transfer for a whole one.
pub fn broken(tcp: &mut TcpStream, send: &mut SendStream, recv: &mut RecvStream) {
    let _ = send.reset(VarInt::from_u32(BROKEN));
    let _ = recv.stop(VarInt::from_u32(BROKEN));
    // Closing with SO_LINGER 0 sends a TCP reset instead of a FIN.
    let _ = tcp.set_zero_linger();
}

/// Application error code of a stream reset or stopped because its other half broke.
pub const BROKEN: u32 = 1;

/// TCP → QUIC: each read becomes one chunk, handed over without a copy.
pub async fn tcp_to_stream<R: AsyncRead + Unpin>(
    r: &mut R,
    send: &mut SendStream,
) -> std::io::Result<u64> {
    let mut total = 0u64;
    loop {
        let mut buf = BytesMut::with_capacity(CHUNK);
        let n = r.read_buf(&mut buf).await?;
        if n == 0 {
            // EOF: finish the stream (quinn keeps delivering what is queued).
            let _ = send.finish();
            return Ok(total);
        }
        total += n as u64;
        send.write_chunk(buf.freeze())
            .await
            .map_err(std::io::Error::other)?;
    }
}

/// QUIC → TCP: quinn's received chunks are written as they are.
pub async fn stream_to_tcp<W: AsyncWrite + Unpin>(
    recv: &mut RecvStream,
    w: &mut W,
) -> std::io::Result<u64> {
    let mut total = 0u64;
    loop {
        match recv
            .read_chunk(CHUNK, true)
            .await
            .map_err(std::io::Error::other)?
        {
            Some(chunk) => {
                total += chunk.bytes.len() as u64;
                w.write_all(&chunk.bytes).await?;
            }
            None => {
                w.shutdown().await?;
                return Ok(total);
            }
        }
    }
}
