//! The device side: `claw tunnel pair` (redeem a code, store the result) and `claw tunnel up`
//! (local loopback listeners whose connections become QUIC streams to the gateway, a control
//! stream that receives fresh tokens, reconnects with capped exponential backoff and full jitter,
//! and QUIC connection migration when the local socket changes).

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quinn::{Connection, Endpoint};
use relay_client::backoff::{Backoff, BackoffPolicy};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::config::{client_config, SERVER_NAME};
use super::liveness::{Liveness, DEAD_AFTER};
use super::TunnelError;
use crate::control::{self, ClientMsg, ServerMsg, StreamHeader, TunnelCode};
use crate::device::{DeviceHome, Pairing};
use crate::identity::Identity;
use crate::pairing::PairingUri;
use crate::verify::PinnedServerVerifier;

/// Connects to one gateway, pinning its key.
pub struct Dialer {
    endpoint: Endpoint,
    verifier: Arc<PinnedServerVerifier>,
    gateway_id: String,
    /// Set when the dialer reaches the gateway over a relay: the gateway's fake address and the
    /// link that keeps the relay connection (dropped with the dialer).
    relay: Option<(SocketAddr, claw_mesh::socket::RelayLink)>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("gateway_id", &self.gateway_id)
            .finish()
    }
}

fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr}: no address"))
}

fn unspecified_for(target: &SocketAddr) -> SocketAddr {
    if target.is_ipv6() {
        SocketAddr::from(([0u16; 8], 0))
    } else {
        SocketAddr::from(([0, 0, 0, 0], 0))
    }
}

impl Dialer {
    /// A dialer for the gateway `gateway_id`, bound like `first_addr` (IPv4 or IPv6).
    pub fn new(
        identity: &Identity,
        gateway_id: &str,
        first_addr: &str,
    ) -> Result<Self, TunnelError> {
        let target = resolve(first_addr).map_err(|reason| TunnelError::Unreachable {
            addrs: first_addr.into(),
            reason,
        })?;
        let bind = if target.ip().is_loopback() {
            SocketAddr::new(target.ip(), 0)
        } else {
            unspecified_for(&target)
        };
        let mut endpoint =
            super::config::endpoint(bind, None).map_err(|source| TunnelError::Bind {
                addr: bind.to_string(),
                source,
            })?;
        let (cfg, verifier) = client_config(identity, gateway_id)?;
        endpoint.set_default_client_config(cfg);
        Ok(Self {
            endpoint,
            verifier,
            gateway_id: gateway_id.to_string(),
            relay: None,
        })
    }

    /// A dialer that reaches the gateway through a relay: the device dials the relay out (as
    /// the key `relay_seed`, with `ticket`), then runs the same pinned QUIC/TLS over it with its
    /// identity. `gateway_key` is the gateway's raw Ed25519 public key (its relay address). A
    /// paired device is its identity key on the relay too; an unpaired one uses the pairing key
    /// its URI's ticket names ([`crate::pairing::PairingUri::pairing_relay_credentials`]).
    pub fn over_relay(
        identity: &Identity,
        gateway_id: &str,
        gateway_key: [u8; 32],
        relay: claw_mesh::client::RelayTarget,
        relay_seed: [u8; 32],
        ticket: tokio::sync::watch::Receiver<Option<String>>,
    ) -> Result<Self, TunnelError> {
        if claw_proto::signature::device_id_for_key(&gateway_key) != gateway_id {
            return Err(TunnelError::Config(
                "the gateway key does not match the pinned gateway id".into(),
            ));
        }
        let (socket, link) = claw_mesh::socket::RelaySocket::spawn(
            relay,
            relay_seed,
            ticket,
            claw_mesh::socket::Peers::Only(gateway_key),
        );
        let target = socket
            .addr_of(&gateway_key)
            .ok_or_else(|| TunnelError::Config("no relay address for the gateway".into()))?;
        let mut endpoint = claw_mesh::socket::endpoint(socket, None)
            .map_err(|e| TunnelError::Config(e.to_string()))?;
        let (cfg, verifier) = client_config(identity, gateway_id)?;
        endpoint.set_default_client_config(cfg);
        Ok(Self {
            endpoint,
            verifier,
            gateway_id: gateway_id.to_string(),
            relay: Some((target, link)),
        })
    }

    /// The dialer for a stored pairing: its tunnel addresses when it has any, else its first
    /// relay (as the device's own key, with the ticket `ticket` holds).
    pub fn for_pairing(
        identity: &Identity,
        pairing: &Pairing,
        ticket: watch::Receiver<Option<String>>,
    ) -> Result<Self, TunnelError> {
        if let Some(first) = pairing.addrs.first() {
            return Self::new(identity, &pairing.gateway_id, first);
        }
        let relay = pairing.relays.first().ok_or_else(|| {
            TunnelError::Config("the pairing names no tunnel address and no relay".into())
        })?;
        let key = pairing.gateway_key().ok_or_else(|| {
            TunnelError::Config("the pairing names a relay but not the gateway's key".into())
        })?;
        Self::over_relay(
            identity,
            &pairing.gateway_id,
            key,
            relay.target(),
            *identity.key().seed(),
            ticket,
        )
    }

    /// How this dialer reaches the gateway: `"relay"` or `"direct"` (UDP to an address).
    pub fn via(&self) -> &'static str {
        if self.relay.is_some() {
            "relay"
        } else {
            "direct"
        }
    }

    /// The relay link's state as it changes, when dialing over a relay.
    pub fn relay_status_watch(
        &self,
    ) -> Option<watch::Receiver<claw_mesh::socket::RelayLinkStatus>> {
        self.relay.as_ref().map(|(_, l)| l.status.clone())
    }

    /// The relay link's state, when dialing over a relay.
    pub fn relay_status(&self) -> Option<claw_mesh::socket::RelayLinkStatus> {
        self.relay.as_ref().map(|(_, l)| l.status.borrow().clone())
    }

    /// Tries each address in order (over a relay: the gateway's relay address); a pinned-key
    /// mismatch stops at once. A device with both addresses and relays dials through
    /// [`super::paths::Paths`] instead, which tries them in the documented order.
    pub async fn connect(&self, addrs: &[String]) -> Result<Connection, TunnelError> {
        let relay_addr = self.relay_target().map(|a| vec![a]);
        let addrs = relay_addr.as_deref().unwrap_or(addrs);
        // Over a relay the first packets wait for the relay connection itself.
        let limit = Duration::from_secs(if self.relay.is_some() { 20 } else { 10 });
        let mut last = String::from("no address");
        for a in addrs {
            match self.connect_one(a, limit).await {
                Ok(conn) => return Ok(conn),
                Err(TunnelError::Unreachable { reason, .. }) => last = reason,
                Err(fatal) => return Err(fatal),
            }
        }
        Err(TunnelError::Unreachable {
            addrs: addrs.join(", "),
            reason: last,
        })
    }

    /// The gateway's address on this dialer's relay socket, when it dials over a relay.
    pub fn relay_target(&self) -> Option<String> {
        self.relay.as_ref().map(|(a, _)| a.to_string())
    }

    /// One connection attempt to `a`, given up after `limit`. `Unreachable` is a network
    /// failure (try another path); `FingerprintMismatch` and `Refused` are final.
    pub async fn connect_one(&self, a: &str, limit: Duration) -> Result<Connection, TunnelError> {
        let unreachable = |reason: String| TunnelError::Unreachable {
            addrs: a.to_string(),
            reason,
        };
        let target = resolve(a).map_err(unreachable)?;
        let connecting = self
            .endpoint
            .connect(target, SERVER_NAME)
            .map_err(|e| unreachable(format!("{a}: {e}")))?;
        match tokio::time::timeout(limit, connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => {
                // The gateway may refuse a revoked key before the client finishes (TLS alert
                // 44, certificate_revoked): that is final, not a network problem.
                if matches!(&e, quinn::ConnectionError::ConnectionClosed(c) if c.error_code == quinn::TransportErrorCode::crypto(44))
                {
                    return Err(revoked());
                }
                if let Some(seen) = self
                    .verifier
                    .seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                {
                    if seen != self.gateway_id {
                        return Err(TunnelError::FingerprintMismatch {
                            expected: self.gateway_id.clone(),
                            seen,
                        });
                    }
                }
                Err(unreachable(format!("{a}: {e}")))
            }
            Err(_) => Err(unreachable(format!("{a}: timed out"))),
        }
    }

    /// Closes this dialer's endpoint (every connection on it) and waits up to `grace` for the
    /// close to be delivered.
    pub async fn close_endpoint(&self, grace: Duration) {
        self.endpoint.close(0u32.into(), b"device going down");
        let _ = tokio::time::timeout(grace, self.endpoint.wait_idle()).await;
    }

    /// Moves the tunnel to a fresh local UDP socket (QUIC connection migration: open streams
    /// survive). Used when the network changes (and by `SIGUSR1` on `claw tunnel up`).
    pub fn rebind(&self) -> std::io::Result<SocketAddr> {
        let local = self.endpoint.local_addr()?;
        let sock = std::net::UdpSocket::bind(SocketAddr::new(local.ip(), 0))?;
        super::config::enlarge_buffers(&sock);
        let addr = sock.local_addr()?;
        self.endpoint.rebind(sock)?;
        Ok(addr)
    }

    /// The local UDP address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }
}

/// Opens the control stream and sends `first`.
async fn open_control(
    conn: &Connection,
    first: &ClientMsg,
) -> Result<(quinn::SendStream, quinn::RecvStream), TunnelError> {
    // The TLS 1.3 client finishes its handshake before the gateway has judged its key, so a
    // revoked key's alert can arrive while the stream is being opened: say so, not "connection".
    let failed = |e: String| {
        if revoked_in_handshake(conn) {
            revoked()
        } else {
            TunnelError::Connection(e)
        }
    };
    let (mut send, recv) = conn.open_bi().await.map_err(|e| failed(e.to_string()))?;
    send.write_all(&control::encode(&StreamHeader::Control))
        .await
        .map_err(|e| failed(e.to_string()))?;
    send.write_all(&control::encode(first))
        .await
        .map_err(|e| failed(e.to_string()))?;
    Ok((send, recv))
}

/// The refusal of a revoked key.
fn revoked() -> TunnelError {
    TunnelError::Refused {
        code: TunnelCode::Revoked,
        message: "this device's key was revoked by the gateway operator".into(),
    }
}

/// Redeems the pairing URI: generates the device key if needed, connects pinning the gateway,
/// presents the code and stores what comes back (0600). `on_pending` is called with the request
/// id when the code requires approval; the call then waits until the operator decides.
pub async fn pair(
    home: &DeviceHome,
    uri: &PairingUri,
    name: Option<String>,
    on_pending: impl Fn(&str),
) -> Result<Pairing, TunnelError> {
    // Expiry is judged by the gateway (the device clock may be wrong), which also audits it.
    let identity = Identity::load_or_create(&home.identity_path())?;
    // Addresses first, then the relays (super::paths).
    let paths = super::paths::Paths::for_uri(&identity, uri)?;
    let conn = paths.connect().await?;
    let msg = ClientMsg::Pair {
        code: uri.code.clone(),
        name: name.or_else(|| uri.name.clone()),
        platform: std::env::consts::OS.into(),
    };
    let (_send, recv) = open_control(&conn, &msg).await?;
    let mut lines = BufReader::new(recv).split(b'\n');
    loop {
        let line = match lines.next_segment().await {
            Ok(Some(l)) => l,
            _ if revoked_in_handshake(&conn) => {
                return Err(TunnelError::Refused {
                    code: TunnelCode::Revoked,
                    message: "this device's key was revoked by the gateway operator".into(),
                })
            }
            Ok(None) => {
                return Err(TunnelError::Connection(
                    "the gateway closed the pairing stream".into(),
                ))
            }
            Err(e) => return Err(TunnelError::Connection(e.to_string())),
        };
        match control::decode::<ServerMsg>(&line)
            .map_err(|e| TunnelError::Connection(e.to_string()))?
        {
            ServerMsg::Pending { request_id } => on_pending(&request_id),
            ServerMsg::Paired {
                device_id,
                device_token,
                generation,
                ssh,
                relay_ticket,
            } => {
                if device_id != identity.id() {
                    return Err(TunnelError::Connection(
                        "the gateway named another device id".into(),
                    ));
                }
                // The SSH host key is the gateway's identity key: believed only when it is the
                // key this device pinned, then written to known_hosts for `ssh -o
                // UserKnownHostsFile=…`.
                let ssh = match ssh {
                    Some(h) if ssh_key_is(&h.host_key, &uri.gateway_id) => Some(h),
                    Some(_) => {
                        return Err(TunnelError::Connection(
                            "the gateway's SSH host key is not its pinned key".into(),
                        ))
                    }
                    None => None,
                };
                let p = Pairing {
                    gateway_id: uri.gateway_id.clone(),
                    addrs: uri.addrs.clone(),
                    device_id,
                    paired_at_ms: claw_home::now_ms(),
                    ssh: ssh.clone(),
                    relays: uri.relays.clone(),
                    gateway_key: uri.gateway_key.map(|k| {
                        use base64::Engine;
                        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k)
                    }),
                };
                if let Some(h) = &ssh {
                    let text = crate::device::known_hosts_text(&p.addrs, h.port, &h.host_key);
                    claw_home::write_secret_atomic(&home.known_hosts_path(), text.as_bytes())
                        .map_err(|source| {
                            TunnelError::Device(crate::device::DeviceFileError::Io {
                                path: home.known_hosts_path().display().to_string(),
                                source,
                            })
                        })?;
                }
                if let Some(t) = relay_ticket.as_deref().and_then(stored_ticket) {
                    home.save_relay_ticket(&t)?;
                }
                home.save_pairing(&p)?;
                home.save_token(&device_token, generation)?;
                conn.close(0u32.into(), b"paired");
                return Ok(p);
            }
            ServerMsg::Error { code, message } => {
                return Err(TunnelError::Refused { code, message })
            }
            ServerMsg::Token { .. }
            | ServerMsg::Probe { .. }
            | ServerMsg::RelayTicket { .. }
            | ServerMsg::Candidates { .. } => {}
        }
    }
}

/// A relay ticket the gateway handed over, as stored: only one that parses (its signature is
/// the relay's to judge).
fn stored_ticket(text: &str) -> Option<crate::device::StoredRelayTicket> {
    let t = claw_mesh::ticket::DeviceTicket::parse(text).ok()?;
    Some(crate::device::StoredRelayTicket {
        ticket: text.to_string(),
        expires_at: t.expires_at,
    })
}

/// True when the OpenSSH public key line `line` is the Ed25519 key whose id is `gateway_id`.
fn ssh_key_is(line: &str, gateway_id: &str) -> bool {
    russh::keys::PublicKey::from_openssh(line.trim())
        .ok()
        .and_then(|k| crate::identity::device_id_of_ssh_key(&k))
        .is_some_and(|id| id == gateway_id)
}

/// Asks the paired gateway for its current root generation over the tunnel, issuing nothing.
pub async fn probe(home: &DeviceHome) -> Result<u64, TunnelError> {
    let pairing = home.pairing()?;
    let identity = Identity::load_or_create(&home.identity_path())?;
    let ticket = home.relay_ticket().ok().flatten().map(|t| t.ticket);
    let paths = super::paths::Paths::for_pairing(&identity, &pairing, watch::channel(ticket).1)?;
    let conn = paths.connect().await?;
    let (_send, recv) = open_control(&conn, &ClientMsg::Probe).await?;
    let mut lines = BufReader::new(recv).split(b'\n');
    let line = match lines.next_segment().await {
        Ok(Some(l)) => l,
        _ if revoked_in_handshake(&conn) => {
            return Err(TunnelError::Refused {
                code: TunnelCode::Revoked,
                message: "this device's key was revoked by the gateway operator".into(),
            })
        }
        other => {
            return Err(TunnelError::Connection(format!(
                "no answer to the probe: {}",
                other
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "stream closed".into())
            )))
        }
    };
    conn.close(0u32.into(), b"probe done");
    match control::decode::<ServerMsg>(&line).map_err(|e| TunnelError::Connection(e.to_string()))? {
        ServerMsg::Probe { generation } => Ok(generation),
        ServerMsg::Error { code, message } => Err(TunnelError::Refused { code, message }),
        other => Err(TunnelError::Connection(format!(
            "unexpected answer {other:?}"
        ))),
    }
}

/// What `claw tunnel status` shows.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelStatus {
    /// Connected now.
    pub connected: bool,
    /// The gateway's id.
    pub gateway_id: String,
    /// This device's id.
    pub device_id: String,
    /// Smoothed RTT.
    pub rtt_ms: Option<f64>,
    /// The QUIC path as quinn sees it (while connected).
    pub path: Option<PathInfo>,
    /// How the tunnel reaches the gateway: `"relay"` or `"direct"` (while connected).
    pub via: Option<String>,
    /// The relay in use, when `via` is `"relay"`.
    pub relay: Option<String>,
    /// Since when the current path is in use (unix ms).
    pub via_since_ms: Option<u64>,
    /// Forwarded connections open now.
    pub streams: u64,
    /// Bytes sent to the gateway.
    pub bytes_up: u64,
    /// Bytes received.
    pub bytes_down: u64,
    /// Reconnects so far.
    pub reconnects: u64,
    /// Re-pairs of the device home followed so far (another gateway, or the same gateway at a
    /// new address), without a restart.
    pub repairs: u64,
    /// Generation of the stored device token.
    pub token_generation: u64,
    /// Last error.
    pub last_error: Option<String>,
    /// Local listeners.
    pub listen: Vec<String>,
    /// Pid of `claw tunnel up`.
    pub pid: u32,
    /// When this was written.
    pub updated_at_ms: u64,
}

/// The QUIC path of the current connection: what MTU discovery and congestion control found.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PathInfo {
    /// Largest UDP payload in use (MTU discovery climbs to what the path carries, up to
    /// [`crate::quic::config::MAX_UDP_PAYLOAD`]).
    pub mtu: u16,
    /// Congestion window, bytes.
    pub cwnd: u64,
    /// Packets sent on this connection.
    pub sent_packets: u64,
    /// Packets declared lost.
    pub lost_packets: u64,
    /// Congestion events (window reductions).
    pub congestion_events: u64,
}

impl PathInfo {
    /// The path statistics of a live connection.
    pub fn of(conn: &Connection) -> Self {
        let p = conn.stats().path;
        Self {
            mtu: p.current_mtu,
            cwnd: p.cwnd,
            sent_packets: p.sent_packets,
            lost_packets: p.lost_packets,
            congestion_events: p.congestion_events,
        }
    }
}

/// `claw tunnel up` settings.
#[derive(Debug, Clone)]
pub struct UpConfig {
    /// Loopback listener for the gateway's WebSocket.
    pub listen: SocketAddr,
    /// Extra listeners: local address → exposed name.
    pub forwards: Vec<(SocketAddr, String)>,
}

/// Counters shared by the forwarding tasks.
#[derive(Debug, Default)]
struct Counters {
    streams: AtomicU64,
    up: AtomicU64,
    down: AtomicU64,
}

/// The paths in use: replaced when the device home is re-paired (another gateway, or the same
/// gateway at new addresses), so `claw tunnel up` follows a re-pair without a restart.
type DialerSlot = Arc<Mutex<Arc<super::paths::Paths>>>;

/// How often `claw tunnel up` looks at the device home's `tunnel.json` for a re-pair.
pub const PAIRING_POLL: Duration = Duration::from_secs(1);

/// A running tunnel.
#[derive(Debug)]
pub struct Tunnel {
    dialer: DialerSlot,
    conn: watch::Receiver<Option<Connection>>,
    status: Arc<Mutex<TunnelStatus>>,
    /// Bound local listener addresses (main first).
    pub local_addrs: Vec<SocketAddr>,
    done: watch::Receiver<Option<String>>,
}

impl Tunnel {
    /// The current status.
    pub fn status(&self) -> TunnelStatus {
        let mut s = self
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(c) = self.conn.borrow().as_ref() {
            s.rtt_ms = Some(c.rtt().as_secs_f64() * 1000.0);
            s.path = Some(PathInfo::of(c));
        }
        s
    }
    /// Migrates to a new local UDP socket (when the current path is direct).
    pub fn rebind(&self) -> std::io::Result<SocketAddr> {
        let paths = self
            .dialer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match paths.current() {
            Some(d) if d.via() == "direct" => d.rebind(),
            _ => Err(std::io::Error::other(
                "the tunnel has no direct UDP path to rebind",
            )),
        }
    }
    /// Closes the connection to the gateway politely (QUIC `CONNECTION_CLOSE`, up to 1 s to
    /// deliver it), so the gateway shows the device offline at once rather than after its idle
    /// timeout. What `claw tunnel up` does on SIGTERM and Ctrl-C.
    pub async fn close(&self) {
        // The endpoint, not just the connection: a closed endpoint also stops the reconnect
        // loop from dialling again (its new connection would outlive this process on the
        // gateway until the idle timeout).
        let paths = self
            .dialer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        paths.close().await;
    }

    /// Waits until the tunnel stops for good (revoked device); returns the reason.
    pub async fn stopped(&mut self) -> String {
        let r = self.done.wait_for(|d| d.is_some()).await;
        r.map(|d| d.clone().unwrap_or_default()).unwrap_or_default()
    }
}

/// True when the gateway closed the connection with the application code for a revoked or
/// removed device.
fn closed_as_revoked(conn: &Connection) -> bool {
    matches!(
        conn.close_reason(),
        Some(quinn::ConnectionError::ApplicationClosed(c)) if c.error_code == quinn::VarInt::from_u32(super::close_code::REVOKED)
    )
}

/// True when the gateway aborted the handshake with TLS alert 44 (`certificate_revoked`).
fn revoked_in_handshake(conn: &Connection) -> bool {
    matches!(
        conn.close_reason(),
        Some(quinn::ConnectionError::ConnectionClosed(c)) if c.error_code == quinn::TransportErrorCode::crypto(44)
    )
}

/// Starts `claw tunnel up`: binds the local listeners, then keeps a QUIC connection to the
/// gateway, reconnecting as needed. Returns once the listeners are bound.
pub async fn up(home: DeviceHome, cfg: UpConfig) -> Result<Tunnel, TunnelError> {
    let pairing = home.pairing()?;
    let identity = Identity::load_or_create(&home.identity_path())?;
    let (ticket_tx, ticket_rx) =
        watch::channel(home.relay_ticket().ok().flatten().map(|t| t.ticket));
    let dialer: DialerSlot = Arc::new(Mutex::new(Arc::new(super::paths::Paths::for_pairing(
        &identity, &pairing, ticket_rx,
    )?)));
    let mut listeners = Vec::new();
    let main = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| TunnelError::Bind {
            addr: cfg.listen.to_string(),
            source,
        })?;
    listeners.push((main, StreamHeader::Gateway));
    for (addr, name) in &cfg.forwards {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| TunnelError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        listeners.push((l, StreamHeader::Expose { name: name.clone() }));
    }
    let local_addrs: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|(l, _)| l.local_addr().ok())
        .collect();
    let (conn_tx, conn_rx) = watch::channel::<Option<Connection>>(None);
    let (done_tx, done_rx) = watch::channel::<Option<String>>(None);
    let counters = Arc::new(Counters::default());
    let status = Arc::new(Mutex::new(TunnelStatus {
        gateway_id: pairing.gateway_id.clone(),
        device_id: pairing.device_id.clone(),
        listen: local_addrs.iter().map(|a| a.to_string()).collect(),
        pid: std::process::id(),
        token_generation: home
            .token()
            .ok()
            .flatten()
            .map(|t| t.generation)
            .unwrap_or(0),
        ..Default::default()
    }));
    for (l, header) in listeners {
        tokio::spawn(accept_loop(
            l,
            header,
            conn_rx.clone(),
            counters.clone(),
            status.clone(),
        ));
    }
    let (pairing_tx, pairing_rx) = watch::channel(pairing.clone());
    tokio::spawn(watch_pairing(home.clone(), pairing, pairing_tx));
    tokio::spawn(manage(
        home.clone(),
        identity,
        ticket_tx,
        pairing_rx,
        dialer.clone(),
        conn_tx,
        done_tx,
        status.clone(),
    ));
    // Before `up` returns: whoever saw the ready line finds the status file (the listen address).
    publish_status(&home, &status, &conn_rx, &counters);
    tokio::spawn(write_status(
        home,
        status.clone(),
        conn_rx.clone(),
        counters,
    ));
    Ok(Tunnel {
        dialer,
        conn: conn_rx,
        status,
        local_addrs,
        done: done_rx,
    })
}

/// Publishes the device home's pairing whenever `tunnel.json` changes (a `claw tunnel pair` while
/// the tunnel runs: another gateway, or the same one at a new address). An unreadable or
/// half-written file is ignored until it reads whole again.
async fn watch_pairing(home: DeviceHome, mut last: Pairing, tx: watch::Sender<Pairing>) {
    let mut iv = tokio::time::interval(PAIRING_POLL);
    loop {
        iv.tick().await;
        if tx.is_closed() {
            return;
        }
        match home.pairing() {
            Ok(p) if p != last && (!p.addrs.is_empty() || !p.relays.is_empty()) => {
                tracing::info!(
                    gateway = %p.gateway_id.chars().take(16).collect::<String>(),
                    addrs = %p.addrs.join(", "),
                    "the device home was re-paired; reconnecting"
                );
                last = p.clone();
                let _ = tx.send(p);
            }
            _ => {}
        }
    }
}

/// Sleeps `delay`, or less when the pairing changes meanwhile (then a reconnect is due at once).
async fn sleep_or_repair(delay: Duration, pairing: &mut watch::Receiver<Pairing>) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        _ = pairing.changed() => {}
    }
}

#[allow(clippy::too_many_arguments)]
async fn manage(
    home: DeviceHome,
    identity: Identity,
    ticket_tx: watch::Sender<Option<String>>,
    mut pairing_rx: watch::Receiver<Pairing>,
    dialer_slot: DialerSlot,
    conn_tx: watch::Sender<Option<Connection>>,
    done_tx: watch::Sender<Option<String>>,
    status: Arc<Mutex<TunnelStatus>>,
) {
    // Capped exponential backoff with full jitter, from relay-client (the same policy every
    // claw client uses): 250 ms base, 30 s cap, reset after a stable connection.
    let mut backoff = Backoff::new(BackoffPolicy {
        base: Duration::from_millis(250),
        cap: Duration::from_secs(30),
    });
    let set =
        |f: &dyn Fn(&mut TunnelStatus)| f(&mut status.lock().unwrap_or_else(|e| e.into_inner()));
    let mut pairing = pairing_rx.borrow_and_update().clone();
    loop {
        let latest = pairing_rx.borrow_and_update().clone();
        if latest != pairing {
            // Re-paired: pin the (possibly new) gateway and dial its addresses from now on.
            match super::paths::Paths::for_pairing(&identity, &latest, ticket_tx.subscribe()) {
                Ok(d) => {
                    *dialer_slot.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(d);
                    pairing = latest;
                    set(&|s| {
                        s.gateway_id = pairing.gateway_id.clone();
                        s.device_id = pairing.device_id.clone();
                        s.repairs += 1;
                    });
                    backoff.reset();
                }
                Err(e) => {
                    set(&|s| s.last_error = Some(e.to_string()));
                    sleep_or_repair(backoff.next_delay(), &mut pairing_rx).await;
                    continue;
                }
            }
        }
        let paths = dialer_slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        // Addresses first, then the relays, on every reconnect (super::paths).
        let conn = match paths.connect().await {
            Ok(c) => c,
            Err(e) => {
                let fatal = matches!(
                    e,
                    TunnelError::FingerprintMismatch { .. } | TunnelError::Refused { .. }
                );
                let msg = e.to_string();
                tracing::warn!(error = %msg, "tunnel connect failed");
                set(&|s| s.last_error = Some(msg.clone()));
                if fatal {
                    let _ = done_tx.send(Some(msg));
                    return;
                }
                sleep_or_repair(backoff.next_delay(), &mut pairing_rx).await;
                continue;
            }
        };
        let generation = home
            .token()
            .ok()
            .flatten()
            .map(|t| t.generation)
            .unwrap_or(0);
        let (send, recv) = match open_control(&conn, &ClientMsg::Hello { generation }).await {
            Ok(s) => s,
            Err(TunnelError::Refused {
                code: TunnelCode::Revoked,
                ..
            }) => {
                let msg = "the gateway refused this device's key during the TLS handshake: it was revoked by the operator".to_string();
                tracing::error!("{msg}; not reconnecting");
                set(&|s| s.last_error = Some(msg.clone()));
                let _ = done_tx.send(Some(msg));
                return;
            }
            Err(e) => {
                set(&|s| s.last_error = Some(e.to_string()));
                sleep_or_repair(backoff.next_delay(), &mut pairing_rx).await;
                continue;
            }
        };
        // The TLS 1.3 client finishes before the gateway has judged its key: only the gateway's
        // first control message proves the tunnel is authenticated.
        let mut lines = BufReader::new(recv).split(b'\n');
        let first = tokio::time::timeout(Duration::from_secs(10), lines.next_segment()).await;
        let first = match first {
            Ok(Ok(Some(line))) => line,
            other => {
                if revoked_in_handshake(&conn) {
                    let msg = "the gateway refused this device's key during the TLS handshake: it was revoked by the operator".to_string();
                    tracing::error!("{msg}; not reconnecting");
                    set(&|s| s.last_error = Some(msg.clone()));
                    let _ = done_tx.send(Some(msg));
                    return;
                }
                let msg = match other {
                    Err(_) => "timed out waiting for the gateway".to_string(),
                    _ => conn
                        .close_reason()
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "control stream closed".into()),
                };
                set(&|s| s.last_error = Some(msg.clone()));
                sleep_or_repair(backoff.next_delay(), &mut pairing_rx).await;
                continue;
            }
        };
        let started = Instant::now();
        let _ = conn_tx.send(Some(conn.clone()));
        let Some(dialer) = paths.current() else {
            continue;
        };
        let relay_url = dialer.relay_status().map(|r| r.url);
        set(&|s| {
            s.connected = true;
            s.last_error = None;
            s.via = Some(dialer.via().to_string());
            s.relay = relay_url.clone();
            s.via_since_ms = Some(claw_home::now_ms());
        });
        tracing::info!("tunnel connected");
        let mut pending = Some(first);
        let silence = gateway_silent(&conn);
        tokio::pin!(silence);
        let mut went_silent = false;
        let mut re_paired = false;
        // Control stream: store every token the gateway sends; stop for good when revoked.
        let fatal = loop {
            let next = match pending.take() {
                Some(l) => Ok(Some(l)),
                None => tokio::select! {
                    n = lines.next_segment() => n,
                    () = &mut silence => {
                        went_silent = true;
                        break None;
                    }
                    _ = pairing_rx.changed() => {
                        re_paired = true;
                        break None;
                    }
                },
            };
            match next {
                Ok(Some(line)) => match control::decode::<ServerMsg>(&line) {
                    Ok(ServerMsg::Token {
                        device_token,
                        generation,
                    }) => match home.save_token(&device_token, generation) {
                        Ok(()) => {
                            tracing::info!(generation, "stored a fresh device token");
                            set(&|s| s.token_generation = generation);
                        }
                        Err(e) => tracing::error!(error = %e, "cannot store the device token"),
                    },
                    Ok(ServerMsg::RelayTicket { ticket, .. }) => match stored_ticket(&ticket) {
                        Some(t) => {
                            if let Err(e) = home.save_relay_ticket(&t) {
                                tracing::error!(error = %e, "cannot store the relay ticket");
                            }
                            tracing::info!(
                                expires_at = t.expires_at,
                                "stored a fresh relay ticket"
                            );
                            let _ = ticket_tx.send(Some(t.ticket));
                        }
                        None => tracing::warn!("the gateway sent a malformed relay ticket"),
                    },
                    Ok(ServerMsg::Error { code, message }) if code.is_final() => {
                        break Some(format!("{message} ({code})"));
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "bad control message"),
                },
                _ => break None,
            }
        };
        // The gateway cuts a revoked (or removed) device's connection with close code REVOKED,
        // often before its control message arrives: that is as final as the message.
        let fatal = fatal.or_else(|| {
            matches!(
                conn.close_reason(),
                Some(quinn::ConnectionError::ApplicationClosed(c))
                    if c.error_code == quinn::VarInt::from_u32(super::close_code::REVOKED)
            )
            .then(|| {
                "this device was revoked or removed by the gateway operator (revoked)".to_string()
            })
        });
        drop(send);
        let _ = conn_tx.send(None);
        let reason = if re_paired {
            conn.close(0u32.into(), b"re-paired");
            "the device home was re-paired; reconnecting".to_string()
        } else if went_silent {
            let msg = format!(
                "no answer from the gateway for {} s (is it running and reachable?); reconnecting",
                DEAD_AFTER.as_secs()
            );
            tracing::warn!("{msg}");
            conn.close(0u32.into(), b"gateway silent");
            msg
        } else {
            conn.close_reason()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "control stream ended".into())
        };
        set(&|s| {
            s.connected = false;
            s.last_error = Some(reason.clone());
            s.via = None;
            s.relay = None;
            s.via_since_ms = None;
        });
        // The gateway closed the connection because the device was revoked (it may do so before
        // the control stream's `revoked` message arrives): as final as that message.
        let fatal = fatal.or_else(|| {
            closed_as_revoked(&conn).then(|| {
                "this device was revoked or removed by the gateway operator (revoked)".to_string()
            })
        });
        if let Some(msg) = fatal {
            tracing::error!(error = %msg, "the gateway refused this device; not reconnecting");
            set(&|s| s.last_error = Some(msg.clone()));
            conn.close(0u32.into(), b"bye");
            let _ = done_tx.send(Some(msg));
            return;
        }
        tracing::info!(reason = %reason, "tunnel control stream ended; reconnecting");
        // The old connection is abandoned: say so, or the gateway keeps it (and shows this
        // device connected twice) until its idle timeout.
        conn.close(0u32.into(), b"reconnecting");
        set(&|s| s.reconnects += 1);
        if started.elapsed() > Duration::from_secs(10) {
            backoff.reset();
        }
        sleep_or_repair(backoff.next_delay(), &mut pairing_rx).await;
    }
}

/// Resolves once nothing has arrived from the gateway for [`DEAD_AFTER`].
async fn gateway_silent(conn: &Connection) {
    let mut live = Liveness::new(conn.stats().udp_rx.datagrams, Instant::now());
    let mut iv = tokio::time::interval(Duration::from_secs(1));
    loop {
        iv.tick().await;
        if live.silent(conn.stats().udp_rx.datagrams, Instant::now()) {
            return;
        }
    }
}

/// How long a local connection waits for the tunnel to come (back) up before it is told the
/// gateway is unreachable: long enough for a reconnect after a blip, short enough that a client
/// fails fast and clearly when the gateway is gone.
pub const LOCAL_WAIT: Duration = Duration::from_secs(5);

async fn accept_loop(
    l: TcpListener,
    header: StreamHeader,
    conn: watch::Receiver<Option<Connection>>,
    counters: Arc<Counters>,
    status: Arc<Mutex<TunnelStatus>>,
) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let Ok((tcp, _)) = l.accept().await else {
            // EMFILE and friends: back off instead of spinning.
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            continue;
        };
        backoff = Duration::from_millis(10);
        let _ = tcp.set_nodelay(true);
        tokio::spawn(forward(
            tcp,
            header.clone(),
            conn.clone(),
            counters.clone(),
            status.clone(),
        ));
    }
}

/// Answers a local WebSocket client while the tunnel is down: HTTP 503 with the reason, so it
/// fails at once with a message instead of hanging (`claw health` exits 69).
async fn refuse_unreachable(tcp: &mut TcpStream, status: &Mutex<TunnelStatus>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let why = status
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .last_error
        .clone()
        .unwrap_or_else(|| "not connected yet".into());
    let body = format!(
        "claw tunnel: the gateway is unreachable ({}); see `claw tunnel status`\n",
        why.escape_debug()
    );
    // Read what the client sent first (bounded), so the answer is not lost to a reset.
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut buf)).await;
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.write_all(resp.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

async fn forward(
    mut tcp: TcpStream,
    header: StreamHeader,
    mut conn: watch::Receiver<Option<Connection>>,
    counters: Arc<Counters>,
    status: Arc<Mutex<TunnelStatus>>,
) {
    // Wait (bounded) for a live connection, e.g. while reconnecting.
    let live = tokio::time::timeout(LOCAL_WAIT, conn.wait_for(|c| c.is_some()))
        .await
        .ok()
        .and_then(|r| r.ok().and_then(|c| c.clone()));
    let Some(c) = live else {
        if header == StreamHeader::Gateway {
            refuse_unreachable(&mut tcp, &status).await;
        }
        return;
    };
    let Ok((mut send, recv)) = c.open_bi().await else {
        return;
    };
    if send.write_all(&control::encode(&header)).await.is_err() {
        return;
    }
    counters.streams.fetch_add(1, Ordering::Relaxed);
    if let StreamHeader::Expose { name } = &header {
        expose(tcp, send, recv, name, &counters, &status).await;
        counters.streams.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let mut recv = recv;
    if let Ok((up, down)) = super::copy::splice(&mut tcp, &mut send, &mut recv).await {
        counters.up.fetch_add(up, Ordering::Relaxed);
        counters.down.fetch_add(down, Ordering::Relaxed);
    }
    counters.streams.fetch_sub(1, Ordering::Relaxed);
}

/// The start of a control-line refusal (`ServerMsg::Error`), as the gateway writes it on a data
/// stream it will not serve.
const REFUSAL_PREFIX: &[u8] = b"{\"type\":\"error\"";

/// Decides whether the first bytes from the gateway on a forward are its refusal: a
/// [`ServerMsg::Error`] line and then the end of the stream. Pure.
pub fn refusal_of(first: &[u8], ended: bool) -> Option<(TunnelCode, String)> {
    if !ended || !first.starts_with(REFUSAL_PREFIX) {
        return None;
    }
    let line = first.strip_suffix(b"\n").unwrap_or(first);
    match control::decode::<ServerMsg>(line) {
        Ok(ServerMsg::Error { code, message }) => Some((code, message)),
        _ => None,
    }
}

/// A `--forward` connection to an exposed service. The gateway refuses an unknown name (or an
/// unreachable service) with a control line on the stream; that line must never reach the
/// application as if the service had sent it: the local connection is closed instead and the
/// reason goes to the log and `claw tunnel status`.
async fn expose(
    mut tcp: TcpStream,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    name: &str,
    counters: &Counters,
    status: &Mutex<TunnelStatus>,
) {
    use tokio::io::AsyncWriteExt;
    let mut refused = None;
    let copied = {
        let (mut tcp_r, mut tcp_w) = tcp.split();
        let up = super::copy::tcp_to_stream(&mut tcp_r, &mut send);
        let down = async {
            let (first, ended) = first_bytes(&mut recv).await;
            if let Some(r) = refusal_of(&first, ended) {
                refused = Some(r);
                return Err(std::io::Error::other("refused by the gateway"));
            }
            tcp_w.write_all(&first).await?;
            let rest = super::copy::stream_to_tcp(&mut recv, &mut tcp_w).await?;
            Ok(first.len() as u64 + rest)
        };
        tokio::try_join!(up, down)
    };
    if let Some((code, message)) = refused {
        let msg = format!("--forward to {name:?}: the gateway refused: {message} ({code})");
        tracing::warn!("{}", msg.escape_debug());
        status.lock().unwrap_or_else(|e| e.into_inner()).last_error = Some(msg);
        let _ = tcp.shutdown().await;
        return;
    }
    match copied {
        Ok((up, down)) => {
            counters.up.fetch_add(up, Ordering::Relaxed);
            counters.down.fetch_add(down, Ordering::Relaxed);
        }
        Err(_) => super::copy::broken(&mut tcp, &mut send, &mut recv),
    }
}

/// The gateway's first bytes on an exposed service's stream, and whether the stream ended: a
/// refusal is one short line and then the end of the stream; anything not shaped like one is
/// the service's own data, and inspection stops at once.
pub(super) async fn first_bytes(recv: &mut quinn::RecvStream) -> (Vec<u8>, bool) {
    let mut first = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match recv.read(&mut buf).await {
            Ok(Some(n)) => first.extend_from_slice(&buf[..n]),
            _ => return (first, true),
        }
        let k = first.len().min(REFUSAL_PREFIX.len());
        if first[..k] != REFUSAL_PREFIX[..k] || first.len() > control::MAX_LINE {
            return (first, false);
        }
        if first.ends_with(b"\n") {
            // A complete line: it is a refusal only if the stream ends right after it.
            return match tokio::time::timeout(Duration::from_secs(5), recv.read(&mut buf)).await {
                Ok(Ok(Some(n))) => {
                    first.extend_from_slice(&buf[..n]);
                    (first, false)
                }
                Ok(_) => (first, true),
                Err(_) => (first, false),
            };
        }
    }
}

/// Writes the device home's status file (`claw tunnel status`, `claw tunnel dashboard` read
/// it) from the live counters and connection.
fn publish_status(
    home: &DeviceHome,
    status: &Mutex<TunnelStatus>,
    conn: &watch::Receiver<Option<Connection>>,
    counters: &Counters,
) {
    let snapshot = {
        let mut s = status.lock().unwrap_or_else(|e| e.into_inner());
        s.streams = counters.streams.load(Ordering::Relaxed);
        s.bytes_up = counters.up.load(Ordering::Relaxed);
        s.bytes_down = counters.down.load(Ordering::Relaxed);
        let live = conn.borrow();
        s.rtt_ms = live.as_ref().map(|c| c.rtt().as_secs_f64() * 1000.0);
        s.path = live.as_ref().map(PathInfo::of);
        drop(live);
        s.updated_at_ms = claw_home::now_ms();
        s.clone()
    };
    let data = serde_json::to_vec_pretty(&snapshot).unwrap_or_default();
    let _ = claw_home::write_volatile_atomic(&home.status_path(), &data);
}

async fn write_status(
    home: DeviceHome,
    status: Arc<Mutex<TunnelStatus>>,
    conn: watch::Receiver<Option<Connection>>,
    counters: Arc<Counters>,
) {
    let mut iv = tokio::time::interval(Duration::from_secs(1));
    iv.tick().await; // the first tick is immediate; `up` has just written the file
    loop {
        iv.tick().await;
        publish_status(&home, &status, &conn, &counters);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_whole_error_line_then_the_end_is_a_refusal() {
        let line = control::encode(&ServerMsg::Error {
            code: TunnelCode::NotExposed,
            message: "the gateway exposes nothing named \"x\"".into(),
        });
        assert_eq!(
            refusal_of(&line, true),
            Some((
                TunnelCode::NotExposed,
                "the gateway exposes nothing named \"x\"".into()
            ))
        );
        assert_eq!(refusal_of(&line, false), None, "the stream goes on: data");
        assert_eq!(refusal_of(b"HTTP/1.1 200 OK\r\n", true), None);
        assert_eq!(refusal_of(b"{\"type\":\"hello\"}\n", true), None);
        assert_eq!(refusal_of(b"{\"type\":\"error\"", true), None, "cut short");
        assert_eq!(refusal_of(b"", true), None);
    }
}
