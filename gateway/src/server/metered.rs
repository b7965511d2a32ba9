//! A byte stream whose reads are metered until the socket authenticates: at most
//! [`PREAUTH_READ_PER_SOCKET`] bytes per socket, and all sockets together within the gateway's
//! [`SharedBudget`] of pre-auth bytes. Past either, reads fail and the socket closes.
//!
//! tungstenite checks its message-size limit only against a configuration fixed when the
//! WebSocket is created (tokio-tungstenite 0.30 has no way to change it later), and the
//! post-auth limit is 1 MiB; metering the reads underneath enforces the 64 KiB pre-auth limit
//! *while* the bytes arrive, so no pre-auth message is ever buffered past it. After `hello-ok`
//! the session calls [`Metered::lift`] and the stream reads freely.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::limits::{SharedBudget, PREAUTH_READ_PER_SOCKET};

/// See the module docs.
pub(super) struct Metered<S> {
    inner: S,
    meter: Option<Meter>,
}

struct Meter {
    used: usize,
    global: Arc<SharedBudget>,
}

impl<S> Metered<S> {
    /// Meters `inner`'s reads against `global` (and the per-socket cap) until [`Metered::lift`].
    pub(super) fn new(inner: S, global: Arc<SharedBudget>) -> Self {
        Self {
            inner,
            meter: Some(Meter { used: 0, global }),
        }
    }

    /// Authenticated: reads are no longer metered; the bytes charged go back to the budget.
    pub(super) fn lift(&mut self) {
        if let Some(m) = self.meter.take() {
            m.global.refund(m.used);
        }
    }
}

impl<S> Drop for Metered<S> {
    fn drop(&mut self) {
        self.lift();
    }
}

/// The error a metered read fails with: the socket sent more than it may before
/// authenticating (answered with close 1009, like any oversized message).
#[derive(Debug, thiserror::Error)]
#[error("pre-auth read budget spent ({0})")]
pub(super) struct BudgetSpent(&'static str);

impl BudgetSpent {
    /// True when `e` is a metered read's refusal.
    pub(super) fn is(e: &io::Error) -> bool {
        e.get_ref().is_some_and(|i| i.is::<BudgetSpent>())
    }
}

fn spent(what: &'static str) -> io::Error {
    io::Error::other(BudgetSpent(what))
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(m) = this.meter.as_mut() else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        let room = PREAUTH_READ_PER_SOCKET.saturating_sub(m.used);
        if room == 0 {
            return Poll::Ready(Err(spent("this socket")));
        }
        let want = room.min(buf.remaining());
        let mut sub = ReadBuf::new(buf.initialize_unfilled_to(want));
        match Pin::new(&mut this.inner).poll_read(cx, &mut sub) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let n = sub.filled().len();
        if !m.global.try_charge(n) {
            return Poll::Ready(Err(spent("all sockets")));
        }
        m.used += n;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_stop_at_the_per_socket_cap_and_the_shared_budget_until_lifted() {
        let global = Arc::new(SharedBudget::new(1 << 30));
        let (mut tx, rx) = tokio::io::duplex(1 << 20);
        let mut m = Metered::new(rx, global.clone());
        tx.write_all(&vec![b'x'; PREAUTH_READ_PER_SOCKET + 10])
            .await
            .unwrap();
        let mut got = vec![0u8; PREAUTH_READ_PER_SOCKET];
        m.read_exact(&mut got).await.unwrap();
        assert_eq!(global.used(), PREAUTH_READ_PER_SOCKET);
        let mut one = [0u8; 1];
        let e = m.read(&mut one).await.unwrap_err();
        assert!(BudgetSpent::is(&e), "past the per-socket cap: {e}");
        m.lift();
        assert_eq!(global.used(), 0, "lifting refunds");
        assert_eq!(
            m.read(&mut one).await.unwrap(),
            1,
            "reads freely once lifted"
        );

        // A small shared budget: the socket that would overdraw it fails.
        let global = Arc::new(SharedBudget::new(100));
        let (mut tx, rx) = tokio::io::duplex(4096);
        let mut m = Metered::new(rx, global.clone());
        tx.write_all(&[b'y'; 200]).await.unwrap();
        let mut buf = [0u8; 200];
        assert!(m.read(&mut buf).await.is_err());
        drop(m);
        assert_eq!(global.used(), 0);
    }
}
