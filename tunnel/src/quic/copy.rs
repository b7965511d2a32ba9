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

use bytes::{Buf, Bytes, BytesMut};
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

/// Most chunks taken from quinn at once and written with one `writev`. A chunk is one STREAM
/// frame, so on a 1,500-byte path ~1,400 bytes: taken one at a time, every packet cost a TCP
/// `write` and a task wake-up (docs/benchmarks-tunnel.md, *Per-byte cost*).
pub const CHUNKS_PER_WRITE: usize = 32;

/// QUIC → TCP: quinn's received chunks are written as they are, as many as are ready at once in
/// one vectored write.
pub async fn stream_to_tcp<W: AsyncWrite + Unpin>(
    recv: &mut RecvStream,
    w: &mut W,
) -> std::io::Result<u64> {
    let mut total = 0u64;
    let mut chunks: [Bytes; CHUNKS_PER_WRITE] = Default::default();
    loop {
        match recv
            .read_chunks(&mut chunks)
            .await
            .map_err(std::io::Error::other)?
        {
            Some(n) => {
                total += chunks[..n].iter().map(|c| c.len() as u64).sum::<u64>();
                write_all_vectored(w, &mut chunks[..n]).await?;
            }
            None => {
                w.shutdown().await?;
                return Ok(total);
            }
        }
    }
}

/// Writes every byte of `chunks` (consuming them), as few `writev` calls as the writer takes.
/// Each call makes progress or fails (a zero-byte write is `WriteZero`), so the loop is bounded
/// by the byte count.
pub async fn write_all_vectored<W: AsyncWrite + Unpin>(
    w: &mut W,
    chunks: &mut [Bytes],
) -> std::io::Result<()> {
    let mut first = 0;
    while first < chunks.len() {
        if chunks[first].is_empty() {
            first += 1;
            continue;
        }
        let slices: Vec<std::io::IoSlice<'_>> = chunks[first..]
            .iter()
            .map(|c| std::io::IoSlice::new(c))
            .collect();
        let mut n = w.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while n > 0 {
            let take = n.min(chunks[first].len());
            chunks[first].advance(take);
            n -= take;
            if chunks[first].is_empty() {
                first += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `max` bytes per call and records what it got.
    struct Trickle {
        got: Vec<u8>,
        max: usize,
        calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.max);
            self.got.extend_from_slice(&buf[..n]);
            self.calls += 1;
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let mut left = self.max;
            let mut n = 0;
            for b in bufs {
                let k = b.len().min(left);
                self.got.extend_from_slice(&b[..k]);
                left -= k;
                n += k;
                if left == 0 {
                    break;
                }
            }
            self.calls += 1;
            std::task::Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// Chunks of `sizes` bytes holding a running counter, and all of it in one piece.
    fn chunks(sizes: &[usize]) -> (Vec<Bytes>, Vec<u8>) {
        let total: usize = sizes.iter().sum();
        let flat: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        let mut at = 0;
        let v = sizes
            .iter()
            .map(|&n| {
                at += n;
                Bytes::copy_from_slice(&flat[at - n..at])
            })
            .collect();
        (v, flat)
    }

    #[tokio::test]
    async fn partial_vectored_writes_deliver_every_byte_in_order() {
        for max in [1, 7, 1400, 1401, 5000, 1 << 20] {
            let (mut v, want) = chunks(&[1400, 0, 3, 1400, 1, 2800, 0]);
            let mut w = Trickle {
                got: vec![],
                max,
                calls: 0,
            };
            write_all_vectored(&mut w, &mut v).await.unwrap();
            assert_eq!(w.got, want, "max {max}");
            assert!(v.iter().all(|c| c.is_empty()));
        }
    }

    #[tokio::test]
    async fn ready_chunks_go_out_in_one_write_when_the_writer_takes_them() {
        let (mut v, want) = chunks(&[1400; CHUNKS_PER_WRITE]);
        let mut w = Trickle {
            got: vec![],
            max: usize::MAX,
            calls: 0,
        };
        write_all_vectored(&mut w, &mut v).await.unwrap();
        assert_eq!((w.got, w.calls), (want, 1));
    }

    #[tokio::test]
    async fn a_writer_that_takes_nothing_is_an_error_not_a_spin() {
        let (mut v, _) = chunks(&[10]);
        let mut w = Trickle {
            got: vec![],
            max: 0,
            calls: 0,
        };
        let e = write_all_vectored(&mut w, &mut v).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WriteZero);
    }
}
