//! The IO shell: TCP listener (HTTP + WebSocket on one port), the Unix admin socket, periodic
//! ticks/pings, and graceful shutdown.

pub mod admin;
mod http;
mod metered;
mod session;
mod tasks;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::protocol::errors::CLOSE_SERVICE_RESTART;
use crate::state::GatewayState;

/// The HTTP request-head parser of the gateway port (bounded by [`MAX_HEAD`]), public so the fuzz
/// targets in `fuzz/` can reach it.
pub use http::{parse_head, Head, MAX_HEAD};
pub use session::serve_stream;

/// Server errors.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding a listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What the gateway tells its caller once it accepts connections.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The bound WebSocket addresses (ports resolved when 0 was asked).
    pub addrs: Vec<SocketAddr>,
}

/// Runs the gateway until shutdown is requested (see [`GatewayState::request_shutdown`]).
/// Binds every listener first, then reports `ready`.
pub async fn run(
    state: Arc<GatewayState>,
    ready: tokio::sync::oneshot::Sender<Ready>,
) -> Result<(), ServerError> {
    let mut listeners = Vec::new();
    for addr in &state.config.listen {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        listeners.push(l);
    }
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let admin = admin::bind(&state).map_err(|source| ServerError::Bind {
        addr: state.home.admin_socket_path().display().to_string(),
        source,
    })?;
    {
        let mut origins = state.origins.write().unwrap_or_else(|e| e.into_inner());
        for a in &addrs {
            origins.add_fixed(crate::origin::loopback_origins(a.port()));
        }
    }
    if let Some(first) = addrs.first() {
        *state.url.lock().unwrap_or_else(|e| e.into_inner()) = format!("ws://{first}");
    }
    let mut tasks = tokio::task::JoinSet::new();
    for l in listeners {
        tasks.spawn(accept_loop(state.clone(), l));
    }
    tasks.spawn(admin::serve(state.clone(), admin));
    tasks.spawn(tasks::ticker(state.clone()));
    tasks.spawn(tasks::pinger(state.clone()));
    tasks.spawn(tasks::snapshotter(state.clone()));
    tasks.spawn(crate::web::watch_events(state.clone()));
    let _ = ready.send(Ready { addrs });

    let mut stop = state.shutdown.subscribe();
    let _ = stop.wait_for(|s| *s).await;
    tracing::info!("gateway stopping");
    tasks.abort_all();
    drain(&state).await;
    let _ = std::fs::remove_file(state.home.admin_socket_path());
    Ok(())
}

/// Sends `shutdown` and closes every session with 1012, then waits briefly for them to go.
async fn drain(state: &GatewayState) {
    let ev = crate::protocol::frames::event(
        "shutdown",
        &serde_json::json!({"reason": "gateway stopping"}),
        Some(state.next_seq()),
    );
    state.broadcast(&ev);
    state.close_sessions(
        |_| true,
        CLOSE_SERVICE_RESTART,
        &crate::protocol::close::CloseReason::ServiceRestart.to_string(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while state.sessions_alive.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Accepts TCP connections. A socket counts against `max_connections` from the moment it is
/// accepted — before its HTTP head is read — so sockets that never finish their head cannot
/// pile up past the cap (and the fd limit); over the cap a socket is answered 503 and closed.
async fn accept_loop(state: Arc<GatewayState>, listener: TcpListener) {
    let answering = Arc::new(tokio::sync::Semaphore::new(OVER_CAP_ANSWERS));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Some(counted) = OpenSocket::take(&state) else {
                    // Told why, by a bounded number of short-lived answerers; past them, closed.
                    if let Ok(permit) = answering.clone().try_acquire_owned() {
                        tokio::spawn(async move {
                            answer_over_cap(stream).await;
                            drop(permit);
                        });
                    }
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                tokio::spawn(async move {
                    let bound = stream.local_addr().ok();
                    // The kernel names the uid of the client's socket: budgets are charged per
                    // user.
                    let uid = bound.and_then(|local| crate::peer_uid::of_peer(peer, local));
                    session::serve_loopback(state, stream, peer.ip(), uid, bound).await;
                    drop(counted);
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// What a socket over `max_connections` is told before it is closed.
const OVER_CAP: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 51\r\n\r\ngateway is at its connection limit; try again soon\n";

/// Sockets over the cap being answered at once (each holds a descriptor for at most
/// [`OVER_CAP_WAIT`]; they come out of the reserve `limits::connection_cap` keeps).
const OVER_CAP_ANSWERS: usize = 32;

/// How long an over-cap socket may take to send its request head.
const OVER_CAP_WAIT: Duration = Duration::from_secs(2);

/// Reads the request head (so closing is a FIN, not a reset that would discard the answer),
/// writes [`OVER_CAP`] and closes; bounded by [`OVER_CAP_WAIT`].
async fn answer_over_cap(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(OVER_CAP_WAIT, async {
        let mut head = Vec::new();
        let mut buf = [0u8; 2048];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < http::MAX_HEAD {
            match stream.read(&mut buf).await? {
                0 => break,
                n => head.extend_from_slice(&buf[..n]),
            }
        }
        stream.write_all(OVER_CAP).await?;
        stream.shutdown().await
    })
    .await;
}

/// How long an accept loop waits after a failed `accept` (EMFILE: a spinning loop would burn a
/// core and starve the tasks that free descriptors).
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// One socket counted in `open_sockets`; uncounted on drop.
struct OpenSocket(Arc<GatewayState>);

impl OpenSocket {
    /// Counts a socket, or `None` when `max_connections` are already open.
    fn take(state: &Arc<GatewayState>) -> Option<Self> {
        let before = state.open_sockets.fetch_add(1, Ordering::Relaxed);
        if before as usize >= state.config.max_connections {
            state.open_sockets.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Self(state.clone()))
    }
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.open_sockets.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_over_cap_answer_is_a_well_formed_503_with_its_length() {
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut res = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head) = res.parse(OVER_CAP).unwrap() else {
            panic!("incomplete head");
        };
        assert_eq!(res.code, Some(503));
        let len: usize = res
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
            .unwrap();
        assert_eq!(OVER_CAP.len() - head, len);
    }
}
