//! A `quinn::AsyncUdpSocket` whose packets travel over a relay: quinn on quinn 0.11, unchanged,
//! sends to one fake address per peer ([`crate::peers`]); this socket hands each packet to a
//! task that holds the iroh-relay connection (reconnecting by itself) and back.
//!
//! - **Readiness is real**: packets wait in a bounded queue for the relay connection; a full
//!   queue makes `try_send` return `WouldBlock` and the poller wakes quinn when there is room, so
//!   a bulk transfer is paced by the relay's TCP connection instead of dropping packets.
//! - **No fragmentation** (`may_fragment` false): quinn runs MTU discovery, bounded by the
//!   endpoint's ceiling ([`MESH_MAX_UDP_PAYLOAD`]), so the same settings fit a later direct path.
//! - A gateway's socket gives every new peer key an address (`accept_new`); a device's only
//!   talks to the gateway key it was given.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use iroh_base::PublicKey;
use iroh_relay::protos::relay::{ClientToRelayMsg, Datagrams, RelayToClientMsg};
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::client::{connect, RelayTarget};
use crate::peers::{self, PeerMap};

/// Largest UDP payload on mesh paths: what fits a 1,500-byte path under IPv6 and UDP headers,
/// and the ceiling of quinn's MTU discovery there (claw's direct tunnel allows more).
pub const MESH_MAX_UDP_PAYLOAD: u16 = 1452;
/// Packets queued for the relay connection before `try_send` says `WouldBlock`.
const OUT_QUEUE: usize = 1024;
/// Packets from the relay waiting for quinn.
const IN_QUEUE: usize = 1024;
/// Packets written to the relay's WebSocket before one flush.
const BATCH: usize = 64;

/// The state of one relay link, for `claw tunnel status` and logs.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RelayLinkStatus {
    /// The relay.
    pub url: String,
    /// Connected to the relay now.
    pub connected: bool,
    /// When the current relay connection was made (unix ms).
    pub since_ms: Option<u64>,
    /// Relay connections made so far, the first included.
    pub connects: u64,
    /// The last failure.
    pub last_error: Option<String>,
}

struct Outgoing {
    dst: [u8; 32],
    contents: Bytes,
}

struct Incoming {
    rx: mpsc::Receiver<(SocketAddr, Bytes)>,
    pending: VecDeque<(SocketAddr, Bytes)>,
}

/// The socket quinn sees.
pub struct RelaySocket {
    peers: Arc<Mutex<PeerMap>>,
    out: mpsc::Sender<Outgoing>,
    incoming: Mutex<Incoming>,
}

impl fmt::Debug for RelaySocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelaySocket").finish_non_exhaustive()
    }
}

/// Who the socket serves.
#[derive(Debug, Clone)]
pub enum Peers {
    /// A gateway: any admitted key may start a connection (the TLS verifier judges it).
    Any,
    /// A device: only this gateway key.
    Only([u8; 32]),
}

/// The handle that keeps a relay link running (dropping it stops the link).
#[derive(Debug)]
pub struct RelayLink {
    /// The link's state.
    pub status: watch::Receiver<RelayLinkStatus>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RelayLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RelaySocket {
    /// Starts a link to `target` as the key `seed`, presenting the latest `ticket` at each
    /// (re)connect, and returns the socket for `quinn::Endpoint::new_with_abstract_socket`.
    pub fn spawn(
        target: RelayTarget,
        seed: [u8; 32],
        ticket: watch::Receiver<Option<String>>,
        who: Peers,
    ) -> (Arc<Self>, RelayLink) {
        let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
        let (in_tx, in_rx) = mpsc::channel(IN_QUEUE);
        let mut map = PeerMap::default();
        let accept_new = match &who {
            Peers::Any => true,
            Peers::Only(k) => {
                map.addr_of(k);
                false
            }
        };
        let peers = Arc::new(Mutex::new(map));
        let (status_tx, status) = watch::channel(RelayLinkStatus {
            url: target.url.clone(),
            ..Default::default()
        });
        let task = tokio::spawn(drive(
            target,
            seed,
            ticket,
            Driver {
                peers: peers.clone(),
                accept_new,
                out_rx,
                in_tx,
                status: status_tx,
            },
        ));
        (
            Arc::new(Self {
                peers,
                out: out_tx,
                incoming: Mutex::new(Incoming {
                    rx: in_rx,
                    pending: VecDeque::new(),
                }),
            }),
            RelayLink { status, task },
        )
    }

    /// The fake address quinn uses for `key` (allocated if new).
    pub fn addr_of(&self, key: &[u8; 32]) -> Option<SocketAddr> {
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .addr_of(key)
    }

    /// The peer key behind a fake address.
    pub fn key_of(&self, addr: &SocketAddr) -> Option<[u8; 32]> {
        self.peers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .key_of(addr)
    }
}

impl AsyncUdpSocket for RelaySocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Poller {
            tx: self.out.clone(),
            waiting: Mutex::new(None),
        })
    }

    fn try_send(&self, t: &Transmit) -> io::Result<()> {
        let Some(dst) = self.key_of(&t.destination) else {
            // Not a relay peer (or forgotten): like a packet to an unroutable address.
            return Ok(());
        };
        let permit = match self.out.try_reserve() {
            Ok(p) => p,
            Err(mpsc::error::TrySendError::Full(())) => {
                return Err(io::ErrorKind::WouldBlock.into())
            }
            Err(mpsc::error::TrySendError::Closed(())) => {
                return Err(io::Error::other("relay link stopped"))
            }
        };
        // quinn is told `max_transmit_segments() == 1`: one datagram per transmit.
        permit.send(Outgoing {
            dst,
            contents: Bytes::copy_from_slice(t.contents),
        });
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut inc = self.incoming.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        while n < bufs.len().min(meta.len()) {
            let next = match inc.pending.pop_front() {
                Some(p) => p,
                None => match inc.rx.poll_recv(cx) {
                    Poll::Ready(Some(p)) => p,
                    Poll::Ready(None) if n == 0 => {
                        return Poll::Ready(Err(io::Error::other("relay link stopped")))
                    }
                    Poll::Ready(None) | Poll::Pending => break,
                },
            };
            let (addr, data) = next;
            let len = data.len().min(bufs[n].len());
            bufs[n][..len].copy_from_slice(&data[..len]);
            meta[n] = RecvMeta {
                addr,
                len,
                stride: len,
                ecn: None,
                dst_ip: None,
            };
            n += 1;
        }
        if n == 0 {
            Poll::Pending
        } else {
            Poll::Ready(Ok(n))
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(peers::local_addr())
    }

    fn may_fragment(&self) -> bool {
        false
    }
}

type Reserve = Pin<Box<dyn Future<Output = bool> + Send>>;

/// Wakes quinn when the relay queue has room again.
struct Poller {
    tx: mpsc::Sender<Outgoing>,
    waiting: Mutex<Option<Reserve>>,
}

impl fmt::Debug for Poller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Poller").finish_non_exhaustive()
    }
}

impl UdpPoller for Poller {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let waiting = this.waiting.get_mut().unwrap_or_else(|e| e.into_inner());
        let fut = waiting.get_or_insert_with(|| {
            let tx = this.tx.clone();
            // The permit is released at once: readiness only, the packet goes via try_send.
            Box::pin(async move { tx.reserve_owned().await.is_ok() })
        });
        match fut.as_mut().poll(cx) {
            Poll::Ready(open) => {
                *waiting = None;
                if open {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Ready(Err(io::Error::other("relay link stopped")))
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

struct Driver {
    peers: Arc<Mutex<PeerMap>>,
    accept_new: bool,
    out_rx: mpsc::Receiver<Outgoing>,
    in_tx: mpsc::Sender<(SocketAddr, Bytes)>,
    status: watch::Sender<RelayLinkStatus>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Reconnect delay after `failures` failed attempts in a row: 250 ms doubling to 10 s, with
/// up to 50 % jitter so many clients of a restarted relay do not come back at once.
fn backoff(failures: u32) -> Duration {
    let base = 250u64.saturating_mul(1 << failures.min(6)).min(10_000);
    let jitter = (now_ms().wrapping_mul(2_654_435_761) % 1000) * base / 2000;
    Duration::from_millis(base - jitter)
}

/// Keeps the relay connection up and moves packets both ways until the socket is dropped.
async fn drive(
    target: RelayTarget,
    seed: [u8; 32],
    ticket: watch::Receiver<Option<String>>,
    mut d: Driver,
) {
    let mut failures = 0u32;
    loop {
        let t = ticket.borrow().clone();
        let client = match connect(&target, &seed, t.as_deref()).await {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(relay = %target.url, error = %e, "relay connect failed");
                d.status.send_modify(|s| {
                    s.connected = false;
                    s.last_error = Some(e.to_string());
                });
                tokio::time::sleep(backoff(failures)).await;
                failures = failures.saturating_add(1);
                continue;
            }
        };
        failures = 0;
        tracing::info!(relay = %target.url, "relay connected");
        d.status.send_modify(|s| {
            s.connected = true;
            s.since_ms = Some(now_ms());
            s.connects += 1;
        });
        let (mut stream, mut sink) = client.split();
        let why = loop {
            tokio::select! {
                out = d.out_rx.recv() => {
                    let Some(first) = out else { return };
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match d.out_rx.try_recv() {
                            Ok(o) => batch.push(o),
                            Err(_) => break,
                        }
                    }
                    let mut failed = None;
                    for o in batch {
                        let Ok(dst) = PublicKey::from_bytes(&o.dst) else { continue };
                        let msg = ClientToRelayMsg::Datagrams {
                            dst_endpoint_id: dst,
                            datagrams: Datagrams { ecn: None, segment_size: None, contents: o.contents },
                        };
                        if let Err(e) = sink.feed(msg).await {
                            failed = Some(e.to_string());
                            break;
                        }
                    }
                    if failed.is_none() {
                        if let Err(e) = sink.flush().await {
                            failed = Some(e.to_string());
                        }
                    }
                    if let Some(e) = failed {
                        break e;
                    }
                }
                msg = stream.next() => match msg {
                    Some(Ok(RelayToClientMsg::Datagrams { remote_endpoint_id, datagrams })) => {
                        let key = *remote_endpoint_id.as_bytes();
                        let addr = {
                            let mut m = d.peers.lock().unwrap_or_else(|e| e.into_inner());
                            if d.accept_new { m.addr_of(&key) } else { m.known(&key) }
                        };
                        let Some(addr) = addr else { continue };
                        let seg = datagrams.segment_size.map(|s| s.get() as usize);
                        let contents = datagrams.contents;
                        let parts: Vec<Bytes> = match seg {
                            Some(s) if s > 0 && s < contents.len() => (0..contents.len())
                                .step_by(s)
                                .map(|i| contents.slice(i..(i + s).min(contents.len())))
                                .collect(),
                            _ => vec![contents],
                        };
                        for p in parts {
                            // Waiting here pushes back on the relay's TCP connection.
                            if d.in_tx.send((addr, p)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Some(Ok(RelayToClientMsg::Status(s))) => {
                        tracing::info!(relay = %target.url, status = %s, "relay status");
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break e.to_string(),
                    None => break "the relay closed the connection".to_string(),
                }
            }
        };
        tracing::info!(relay = %target.url, reason = %why, "relay connection lost; reconnecting");
        d.status.send_modify(|s| {
            s.connected = false;
            s.last_error = Some(why.clone());
        });
        tokio::time::sleep(backoff(0)).await;
    }
}

/// quinn endpoint settings for a mesh socket: QUIC's fixed bit is never greased (a later
/// direct path tells its own probes from QUIC packets by that bit) and the UDP payload is
/// bounded by [`MESH_MAX_UDP_PAYLOAD`].
pub fn endpoint_config() -> quinn::EndpointConfig {
    let mut e = quinn::EndpointConfig::default();
    e.grease_quic_bit(false);
    e.max_udp_payload_size(MESH_MAX_UDP_PAYLOAD)
        .expect("within QUIC's limits");
    e
}

/// A quinn endpoint over a relay socket.
pub fn endpoint(
    socket: Arc<RelaySocket>,
    server: Option<quinn::ServerConfig>,
) -> io::Result<quinn::Endpoint> {
    quinn::Endpoint::new_with_abstract_socket(
        endpoint_config(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) <= Duration::from_millis(250));
        assert!(backoff(0) >= Duration::from_millis(125));
        assert!(backoff(30) <= Duration::from_secs(10));
        assert!(backoff(30) >= Duration::from_secs(5));
    }
}
