//! The gateway side of the tunnel (`claw gateway run --tunnel`).
//!
//! Nothing crosses the UDP socket before mutual TLS: revoked keys fail the handshake, unknown keys
//! may only redeem a pairing code on the control stream, paired keys open streams to the gateway's
//! WebSocket (served in-process, with the TLS-authenticated device id as the origin) or to
//! services exposed by name. Address validation (retry) is on and handshakes are rate-limited.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use claw_gateway::auth::decide::Origin;
use claw_gateway::presence::{Link, Transport};
use claw_gateway::state::{GatewayEvent, GatewayState};
use claw_gateway::store::{NewDevice, Redeemed};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use quinn::{Connection, Endpoint, RecvStream, SendStream, VarInt};
use tokio::sync::broadcast::error::RecvError;

use super::config::server_config;
use super::lines::{read_line, LineReader};
use super::liveness::{Liveness, SILENT_AFTER};
use super::{close_code, TunnelError};
use crate::control::{self, ClientMsg, ServerMsg, StreamHeader, TunnelCode};
use crate::identity::Identity;
use crate::verify::{key_id_of_cert, KeyLookup, KeyStatus};

/// Tunnel listener settings.
#[derive(Debug, Clone)]
pub struct TunnelConfig {
    /// UDP address to listen on (the one non-loopback socket claw opens).
    pub listen: SocketAddr,
    /// Loopback services reachable by name (`--expose NAME=127.0.0.1:PORT`).
    pub exposes: HashMap<String, SocketAddr>,
    /// New handshakes per second, all sources together.
    pub handshakes_per_sec: u32,
    /// New handshakes per second from one source address.
    pub handshakes_per_source: u32,
    /// Pairing attempts per minute from one source address.
    pub pair_attempts_per_min: u32,
    /// The SSH forward, told to devices at pairing; set once it is bound (it starts after the
    /// tunnel).
    pub ssh: Arc<std::sync::OnceLock<crate::control::SshHint>>,
    /// Set when the gateway serves through relays: paired devices are handed relay tickets for
    /// their key (at pairing, on hello, and every [`TICKET_REFRESH`]).
    pub relay_tickets: Option<claw_mesh::ticket::TicketSigner>,
}

/// How often a connected device is handed a fresh relay ticket: a day, against the tickets'
/// week, so a device that was online in the last six days can come back through the relay.
pub const TICKET_REFRESH: Duration = Duration::from_secs(24 * 3600);

impl Default for TunnelConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 18790)),
            exposes: HashMap::new(),
            handshakes_per_sec: 500,
            handshakes_per_source: 50,
            pair_attempts_per_min: 10,
            ssh: Arc::default(),
            relay_tickets: None,
        }
    }
}

/// Shared by the connection tasks.
struct Shared {
    state: Arc<GatewayState>,
    cfg: TunnelConfig,
    pair_limit: DefaultKeyedRateLimiter<IpAddr>,
}

fn lookup(state: &Arc<GatewayState>) -> KeyLookup {
    let state = state.clone();
    Arc::new(move |id: &str| status(&state, id))
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).expect("nonzero")
}

/// Binds the tunnel. Returns the endpoint (for its local address) and the serving future.
pub fn bind(
    state: Arc<GatewayState>,
    identity: &Identity,
    cfg: TunnelConfig,
) -> Result<(Endpoint, impl std::future::Future<Output = ()>), TunnelError> {
    let server = server_config(identity, lookup(&state))?;
    let endpoint =
        super::config::endpoint(cfg.listen, Some(server)).map_err(|source| TunnelError::Bind {
            addr: cfg.listen.to_string(),
            source,
        })?;
    let fut = accept_loop(endpoint.clone(), state, cfg);
    Ok((endpoint, fut))
}

/// Serves the tunnel over a relay (`claw gateway run --relay`): the same TLS verifier, limits
/// and streams as [`bind`], on a quinn endpoint whose socket is a relay link — no socket that
/// accepts anything from the network. `cfg.listen` is unused.
pub fn bind_relay(
    state: Arc<GatewayState>,
    identity: &Identity,
    cfg: TunnelConfig,
    socket: Arc<claw_mesh::socket::RelaySocket>,
) -> Result<(Endpoint, impl std::future::Future<Output = ()>), TunnelError> {
    let server = server_config(identity, lookup(&state))?;
    let endpoint = claw_mesh::socket::endpoint(socket, Some(server))
        .map_err(|e| TunnelError::Config(e.to_string()))?;
    let fut = accept_loop(endpoint.clone(), state, cfg);
    Ok((endpoint, fut))
}

/// Accepts tunnel connections on `ep`: rate limits, address validation, then [`connection`].
fn accept_loop(
    ep: Endpoint,
    state: Arc<GatewayState>,
    cfg: TunnelConfig,
) -> impl std::future::Future<Output = ()> {
    let global: DefaultDirectRateLimiter =
        RateLimiter::direct(Quota::per_second(nz(cfg.handshakes_per_sec)));
    let per_source: DefaultKeyedRateLimiter<IpAddr> =
        RateLimiter::keyed(Quota::per_second(nz(cfg.handshakes_per_source)));
    let shared = Arc::new(Shared {
        pair_limit: RateLimiter::keyed(Quota::per_minute(nz(cfg.pair_attempts_per_min))),
        state,
        cfg,
    });
    async move {
        while let Some(incoming) = ep.accept().await {
            let ip = incoming.remote_address().ip();
            if global.check().is_err() || per_source.check_key(&ip).is_err() {
                incoming.refuse();
                continue;
            }
            if !incoming.remote_address_validated() {
                // QUIC address validation: the client must echo a retry token first.
                let _ = incoming.retry();
                continue;
            }
            let shared = shared.clone();
            tokio::spawn(async move {
                match incoming.accept() {
                    Ok(connecting) => match connecting.await {
                        Ok(conn) => connection(shared, conn).await,
                        Err(e) => {
                            // A wrong pin on the device, a revoked key, garbage: all end here.
                            tracing::info!(error = %e, %ip, "tunnel handshake failed");
                            shared.state.audit(
                                "tunnel.handshake_failed",
                                None,
                                Some("tunnel"),
                                &format!("from={ip} error={e}"),
                            );
                        }
                    },
                    Err(e) => tracing::debug!(error = %e, "tunnel accept failed"),
                }
            });
            if per_source.len() > 100_000 {
                per_source.retain_recent();
            }
        }
    }
}

fn peer_key(conn: &Connection) -> Option<[u8; 32]> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    crate::verify::key_of_cert(certs.first()?).ok()
}

/// A fresh relay ticket for the device behind `conn`, when the gateway serves through relays.
fn relay_ticket(shared: &Shared, conn: &Connection) -> Option<claw_mesh::ticket::DeviceTicket> {
    let signer = shared.cfg.relay_tickets.as_ref()?;
    Some(signer.issue(peer_key(conn)?, claw_home::now_ms() / 1000))
}

fn relay_ticket_msg(shared: &Shared, conn: &Connection) -> Option<ServerMsg> {
    relay_ticket(shared, conn).map(|t| ServerMsg::RelayTicket {
        ticket: t.encode(),
        expires_at: t.expires_at,
    })
}

/// Sends the device a fresh relay ticket (when the gateway has relays); false when the stream
/// is gone.
async fn send_relay_ticket(send: &mut SendStream, shared: &Shared, conn: &Connection) -> bool {
    match relay_ticket_msg(shared, conn) {
        Some(m) => send_msg(send, &m).await,
        None => true,
    }
}

fn peer_id(conn: &Connection) -> Option<String> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    key_id_of_cert(certs.first()?).ok()
}

/// What the store says about a key (the gateway's one answer, used by the TLS verifier and
/// every stream).
fn status(state: &GatewayState, id: &str) -> KeyStatus {
    claw_gateway::service::key_status(state, id)
}

/// Refuses a stream because the store is unavailable: the retryable `unavailable`, naming the
/// fault. The device keeps its key and token and retries.
async fn refuse_unavailable(send: SendStream) {
    refuse(
        send,
        TunnelCode::Unavailable,
        "the gateway's state store is unavailable (disk full, read-only or locked); retrying (operator: run `claw doctor`)",
    )
    .await
}

fn audit(state: &GatewayState, event: &str, device: &str, detail: &str) {
    state.audit(event, Some(device), Some("tunnel"), detail);
}

/// Streams a key that is not paired may have open at once: one control stream to redeem a
/// pairing code, one spare. The transport already grants no more than this at the handshake (see
/// [`super::config::server_transport`]); a paired key is raised to the full limits.
pub const UNPAIRED_STREAMS: u32 = 2;
/// Time an unpaired key's stream has to send its header and first control line.
pub const UNPAIRED_DEADLINE: Duration = Duration::from_secs(5);

/// Lifts a paired device's connection from the handshake's small limits to the full ones.
fn raise_limits(conn: &Connection) {
    conn.set_max_concurrent_bi_streams(VarInt::from_u32(super::config::MAX_STREAMS));
    conn.set_receive_window(VarInt::from_u32(super::config::CONN_WINDOW));
}

/// True when `ev` ends `device_id`'s access (revoked or removed).
fn cuts_off(ev: &GatewayEvent, device_id: &str) -> bool {
    matches!(ev, GatewayEvent::DeviceRevoked { device_id: d } | GatewayEvent::DeviceRemoved { device_id: d } if d == device_id)
}

async fn connection(shared: Arc<Shared>, conn: Connection) {
    let Some(device_id) = peer_id(&conn) else {
        conn.close(VarInt::from_u32(close_code::PROTOCOL), b"no client key");
        return;
    };
    let remote = conn.remote_address();
    // Subscribed before the key is looked up: a revocation from this instant on is seen.
    let mut events = shared.state.events.subscribe();
    let mut paired = match status(&shared.state, &device_id) {
        KeyStatus::Revoked => {
            conn.close(VarInt::from_u32(close_code::REVOKED), b"device revoked");
            return;
        }
        KeyStatus::Paired => true,
        // The store failed between the TLS check and here: keep the small limits; each stream
        // re-checks the key and is answered `unavailable` until the store is back.
        KeyStatus::Unpaired | KeyStatus::Unavailable => false,
    };
    if paired {
        raise_limits(&conn);
    }
    // The device's presence for as long as this connection lives.
    let open_link = |d: &str| Link::open(&shared.state, d, Transport::Tunnel);
    let mut link = paired.then(|| open_link(&device_id));
    tracing::info!(device = %device_id, %remote, paired, "tunnel connection");
    // A device silent for three keep-alives shows offline (a `kill -9`, a lost network) while the
    // connection waits out the idle timeout; its next packet shows it online again.
    let mut heard =
        Liveness::with_limit(conn.stats().udp_rx.datagrams, Instant::now(), SILENT_AFTER);
    let mut check = tokio::time::interval(Duration::from_secs(1));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Streams of an unpaired key being served right now (the transport caps them too).
    let unpaired_streams = Arc::new(tokio::sync::Semaphore::new(UNPAIRED_STREAMS as usize));
    loop {
        let (send, mut recv) = tokio::select! {
            s = conn.accept_bi() => match s {
                Ok(s) => s,
                Err(_) => return,
            },
            _ = check.tick() => {
                let silent = heard.silent(conn.stats().udp_rx.datagrams, Instant::now());
                if silent && link.is_some() {
                    tracing::info!(device = %device_id, %remote, "tunnel device silent; shown offline until it is heard again");
                    link = None;
                } else if !silent && paired && link.is_none() {
                    link = Some(open_link(&device_id));
                }
                continue;
            }
            ev = events.recv() => {
                match ev {
                    Ok(ev) if cuts_off(&ev, &device_id) => {}
                    Ok(GatewayEvent::PairingResolved { device_id: d, approved: true }) if d == device_id => {
                        paired = true;
                        raise_limits(&conn);
                        link.get_or_insert_with(|| open_link(&device_id));
                        continue;
                    }
                    Ok(_) => continue,
                    // Missed events: ask the store.
                    Err(RecvError::Lagged(_)) => match status(&shared.state, &device_id) {
                        KeyStatus::Revoked => {}
                        KeyStatus::Unpaired if paired => {}
                        _ => continue,
                    },
                    Err(RecvError::Closed) => return,
                }
                // Revoked or removed: every stream of this connection ends now, whether or not
                // the device ever opened a control stream.
                tracing::info!(device = %device_id, %remote, "tunnel connection of a revoked device closed");
                conn.close(VarInt::from_u32(close_code::REVOKED), b"device revoked");
                return;
            }
        };
        if let Some(l) = &link {
            l.touch();
        }
        let permit = if paired {
            None
        } else {
            match unpaired_streams.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    let _ = recv.stop(VarInt::from_u32(close_code::PROTOCOL));
                    continue;
                }
            }
        };
        let deadline = if paired {
            Duration::from_secs(10)
        } else {
            UNPAIRED_DEADLINE
        };
        let shared = shared.clone();
        let device_id = device_id.clone();
        let conn2 = conn.clone();
        // The header is read in the stream's own task: a stream whose first line is slow (loss,
        // a stalled client) must not hold up the streams opened after it.
        tokio::spawn(async move {
            let _permit = permit;
            let header = match tokio::time::timeout(deadline, read_line(&mut recv)).await {
                Ok(Ok(Some(line))) => control::decode::<StreamHeader>(&line),
                _ => {
                    let _ = recv.stop(VarInt::from_u32(close_code::PROTOCOL));
                    return;
                }
            };
            match header {
                Ok(StreamHeader::Control) => {
                    control_stream(shared, conn2, device_id, send, recv).await
                }
                Ok(h) => data_stream(shared, device_id, remote.ip(), h, send, recv).await,
                Err(e) => {
                    let _ = recv.stop(VarInt::from_u32(close_code::PROTOCOL));
                    let mut send = send;
                    let _ = send
                        .write_all(&control::encode(&ServerMsg::Error {
                            code: TunnelCode::BadRequest,
                            message: e.to_string(),
                        }))
                        .await;
                    let _ = send.finish();
                }
            }
        });
    }
}

async fn refuse(mut send: SendStream, code: TunnelCode, message: &str) {
    let _ = send
        .write_all(&control::encode(&ServerMsg::Error {
            code,
            message: message.into(),
        }))
        .await;
    let _ = send.finish();
    // Let the error reach the peer before the stream is dropped.
    let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
}

async fn data_stream(
    shared: Arc<Shared>,
    device_id: String,
    ip: IpAddr,
    header: StreamHeader,
    send: SendStream,
    recv: RecvStream,
) {
    let key_status = status(&shared.state, &device_id);
    if key_status == KeyStatus::Unavailable {
        return refuse_unavailable(send).await;
    }
    if key_status != KeyStatus::Paired {
        audit(
            &shared.state,
            "tunnel.refused",
            &device_id,
            "unpaired key opened a data stream",
        );
        return refuse(
            send,
            TunnelCode::NotPaired,
            "this key is not paired with the gateway; pair it with `claw tunnel pair URI`",
        )
        .await;
    }
    match header {
        StreamHeader::Gateway => {
            let io = tokio::io::join(recv, send);
            claw_gateway::server::serve_stream(
                shared.state.clone(),
                io,
                ip,
                Origin::quic(device_id),
            )
            .await;
        }
        StreamHeader::Expose { name } => {
            let Some(target) = shared.cfg.exposes.get(&name).copied() else {
                return refuse(
                    send,
                    TunnelCode::NotExposed,
                    &format!("the gateway exposes nothing named {name:?}"),
                )
                .await;
            };
            match tokio::net::TcpStream::connect(target).await {
                Ok(mut tcp) => {
                    let _ = tcp.set_nodelay(true);
                    let (mut send, mut recv) = (send, recv);
                    let _ = super::copy::splice(&mut tcp, &mut send, &mut recv).await;
                }
                Err(e) => refuse(send, TunnelCode::Unreachable, &format!("{name}: {e}")).await,
            }
        }
        StreamHeader::Ssh => ssh_stream(&shared, send, recv).await,
        StreamHeader::Control => {}
    }
}

/// A [`StreamHeader::Ssh`] stream: spliced to the gateway's own SSH forward on loopback, which
/// then authenticates the device's SSH key as for any SSH client. Refused when the gateway runs
/// no SSH forward.
async fn ssh_stream(shared: &Shared, send: SendStream, recv: quinn::RecvStream) {
    let Some(port) = shared.cfg.ssh.get().map(|h| h.port) else {
        return refuse(
            send,
            TunnelCode::NotExposed,
            "the gateway runs no SSH forward (start it with `claw gateway run --ssh 127.0.0.1:PORT`)",
        )
        .await;
    };
    let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    let tcp = match tokio::net::TcpStream::connect(v4).await {
        Ok(t) => Ok(t),
        Err(_) => tokio::net::TcpStream::connect(v6).await,
    };
    match tcp {
        Ok(mut tcp) => {
            let _ = tcp.set_nodelay(true);
            let (mut send, mut recv) = (send, recv);
            let _ = super::copy::splice(&mut tcp, &mut send, &mut recv).await;
        }
        Err(e) => refuse(send, TunnelCode::Unreachable, &format!("ssh: {e}")).await,
    }
}

async fn send_msg(send: &mut SendStream, m: &ServerMsg) -> bool {
    send.write_all(&control::encode(m)).await.is_ok()
}

fn token_msg(state: &GatewayState, device_id: &str) -> ServerMsg {
    match claw_gateway::service::pairing::current_token(state, device_id, "operator", "tunnel") {
        Ok(t) => ServerMsg::Token {
            device_token: t.token,
            generation: t.generation,
        },
        // A fault is not a revocation: the device keeps the token it has and is sent the
        // current one with the next hello or rotation.
        Err(e) if e.fault().is_some() => {
            tracing::error!(error = %e, device = %device_id, "store failure minting a tunnel token");
            ServerMsg::Error {
                code: TunnelCode::Unavailable,
                message: e.fault_or_internal().message(),
            }
        }
        Err(e) => ServerMsg::Error {
            code: TunnelCode::Revoked,
            message: e.to_string(),
        },
    }
}

async fn control_stream(
    shared: Arc<Shared>,
    conn: Connection,
    device_id: String,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let state = shared.state.clone();
    let mut events = state.events.subscribe();
    // A control stream carries a handful of short lines, each bounded by `MAX_LINE` while it is
    // read; an unpaired key has a short deadline for its first one.
    let mut lines = LineReader::new();
    let deadline = if status(&state, &device_id) == KeyStatus::Paired {
        Duration::from_secs(30)
    } else {
        UNPAIRED_DEADLINE
    };
    let first = match tokio::time::timeout(deadline, lines.next(&mut recv)).await {
        Ok(Ok(Some(l))) => l,
        _ => {
            let _ = recv.stop(VarInt::from_u32(close_code::PROTOCOL));
            return;
        }
    };
    match control::decode::<ClientMsg>(&first) {
        Ok(ClientMsg::Pair {
            code,
            name,
            platform,
        }) => {
            if shared
                .pair_limit
                .check_key(&conn.remote_address().ip())
                .is_err()
            {
                audit(
                    &state,
                    "pairing.rate_limited",
                    &device_id,
                    &conn.remote_address().ip().to_string(),
                );
                return refuse(
                    send,
                    TunnelCode::RateLimited,
                    "too many pairing attempts from this address; wait a minute",
                )
                .await;
            }
            // The name is what the operator reads before approving: printable text only.
            let name = name.filter(|n| !n.is_empty());
            if let Some(Err(e)) = name
                .as_deref()
                .map(|n| claw_gateway::text::check_label("device name", n, 64))
            {
                audit(&state, "pairing.refused", &device_id, &e.to_string());
                return refuse(send, TunnelCode::InvalidName, &e.to_string()).await;
            }
            let platform: String = platform
                .chars()
                .filter(|c| !claw_gateway::text::is_forbidden(*c))
                .take(32)
                .collect();
            let d = NewDevice {
                device_id: device_id.clone(),
                public_key: String::new(),
                display_name: name,
                platform,
                device_family: String::new(),
                client_id: "claw-tunnel".into(),
                client_mode: "tunnel".into(),
                role: "operator".into(),
                scopes: vec!["operator.read".into(), "operator.write".into()],
            };
            let remote = conn.remote_address().to_string();
            let outcome =
                claw_gateway::service::pairing::redeem_code(&state, &code, &d, "tunnel", &remote);
            match outcome {
                Ok(Ok(Redeemed::Paired)) => {}
                Ok(Ok(Redeemed::Pending { request_id })) => {
                    if !send_msg(&mut send, &ServerMsg::Pending { request_id }).await {
                        return;
                    }
                    // Wait for the operator; the device completes without re-running anything.
                    loop {
                        match events.recv().await {
                            Ok(GatewayEvent::PairingResolved {
                                device_id: d,
                                approved,
                            }) if d == device_id => {
                                if !approved {
                                    return refuse(
                                        send,
                                        TunnelCode::Rejected,
                                        "the operator rejected this pairing request",
                                    )
                                    .await;
                                }
                                break;
                            }
                            Ok(_) | Err(RecvError::Lagged(_)) => {}
                            Err(RecvError::Closed) => return,
                        }
                    }
                }
                Ok(Err(verdict)) => {
                    let code = match verdict {
                        claw_gateway::auth::pairing_code::Verdict::Wrong { .. } => {
                            TunnelCode::CodeWrong
                        }
                        claw_gateway::auth::pairing_code::Verdict::Expired
                        | claw_gateway::auth::pairing_code::Verdict::ClockMovedBack => {
                            TunnelCode::CodeExpired
                        }
                        claw_gateway::auth::pairing_code::Verdict::Used => TunnelCode::CodeUsed,
                        claw_gateway::auth::pairing_code::Verdict::Burned => TunnelCode::CodeBurned,
                        _ => TunnelCode::CodeUnknown,
                    };
                    return refuse(send, code, verdict.message()).await;
                }
                Err(e) if e.fault().is_some() => return refuse_unavailable(send).await,
                Err(e) => {
                    // Details stay in the gateway's log; the device is told what to do.
                    tracing::error!(device = %device_id, error = %e, "pairing could not be recorded");
                    return refuse(
                        send,
                        TunnelCode::ServerError,
                        "the gateway could not record the pairing (its log says why); try again or ask its operator",
                    )
                    .await;
                }
            }
            match token_msg(&state, &device_id) {
                ServerMsg::Token {
                    device_token,
                    generation,
                } => {
                    tracing::info!(device = %device_id, "paired over the tunnel");
                    if !send_msg(
                        &mut send,
                        &ServerMsg::Paired {
                            device_id: device_id.clone(),
                            device_token,
                            generation,
                            ssh: shared.cfg.ssh.get().cloned(),
                            relay_ticket: relay_ticket(&shared, &conn).map(|t| t.encode()),
                        },
                    )
                    .await
                    {
                        return;
                    }
                }
                ServerMsg::Error { code, message } => return refuse(send, code, &message).await,
                _ => {
                    tracing::error!(device = %device_id, "no token to hand a freshly paired device");
                    return refuse(
                        send,
                        TunnelCode::ServerError,
                        "the gateway paired this device but could not issue its token; run `claw tunnel up` to fetch it",
                    )
                    .await;
                }
            }
        }
        Ok(ClientMsg::Probe) => {
            let key_status = status(&state, &device_id);
            if key_status == KeyStatus::Unavailable {
                return refuse_unavailable(send).await;
            }
            if key_status != KeyStatus::Paired {
                return refuse(
                    send,
                    TunnelCode::NotPaired,
                    "this key is not paired with the gateway",
                )
                .await;
            }
            // Read-only: nothing is minted for a probe.
            let generation = state.store().root().map(|(g, _)| g).unwrap_or(0);
            let _ = send_msg(&mut send, &ServerMsg::Probe { generation }).await;
            let _ = send.finish();
            let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
            return;
        }
        Ok(ClientMsg::Hello { .. }) => {
            let key_status = status(&state, &device_id);
            if key_status == KeyStatus::Unavailable {
                return refuse_unavailable(send).await;
            }
            if key_status != KeyStatus::Paired {
                audit(
                    &state,
                    "tunnel.refused",
                    &device_id,
                    "unpaired key sent hello",
                );
                return refuse(
                    send,
                    TunnelCode::NotPaired,
                    "this key is not paired with the gateway; pair it with `claw tunnel pair URI`",
                )
                .await;
            }
            // Handed out at every tunnel handshake: a device that was offline during a rotation
            // gets its new token here.
            if !send_msg(&mut send, &token_msg(&state, &device_id)).await {
                return;
            }
            if !send_relay_ticket(&mut send, &shared, &conn).await {
                return;
            }
        }
        Ok(ClientMsg::Candidates { .. }) => {
            let why = "a control stream starts with pair, probe or hello";
            return refuse(send, TunnelCode::BadRequest, why).await;
        }
        Err(e) => return refuse(send, TunnelCode::BadRequest, &e.to_string()).await,
    }
    let mut refresh =
        tokio::time::interval_at(tokio::time::Instant::now() + TICKET_REFRESH, TICKET_REFRESH);
    // Paired: push fresh tokens after rotations and fresh relay tickets every day; cut the
    // device off when revoked.
    loop {
        tokio::select! {
            _ = refresh.tick() => {
                if !send_relay_ticket(&mut send, &shared, &conn).await { return; }
            }
            ev = events.recv() => match ev {
                Ok(GatewayEvent::RootRotated { .. }) => {
                    let m = token_msg(&state, &device_id);
                    audit(&state, "device.repaired", &device_id, "token pushed over the tunnel after rotation");
                    if !send_msg(&mut send, &m).await { return; }
                }
                Ok(GatewayEvent::DeviceTokenRotated { device_id: d }) if d == device_id => {
                    if !send_msg(&mut send, &token_msg(&state, &device_id)).await { return; }
                }
                Ok(GatewayEvent::DeviceRevoked { device_id: d } | GatewayEvent::DeviceRemoved { device_id: d }) if d == device_id => {
                    let _ = send_msg(&mut send, &ServerMsg::Error { code: TunnelCode::Revoked, message: "this device was revoked or removed by the gateway operator".into() }).await;
                    let _ = send.finish();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    conn.close(VarInt::from_u32(close_code::REVOKED), b"device revoked");
                    return;
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
            line = lines.next(&mut recv) => match line {
                Ok(Some(l)) => {
                    if let Ok(ClientMsg::Hello { .. }) = control::decode::<ClientMsg>(&l) {
                        if !send_msg(&mut send, &token_msg(&state, &device_id)).await { return; }
                        if !send_relay_ticket(&mut send, &shared, &conn).await { return; }
                    }
                }
                _ => return,
            },
        }
    }
}

/// Runs the tunnel until the gateway stops; closes every tunnel connection on shutdown.
pub async fn serve(
    state: Arc<GatewayState>,
    endpoint: Endpoint,
    fut: impl std::future::Future<Output = ()>,
) {
    let mut stop = state.shutdown.subscribe();
    tokio::select! {
        _ = fut => {}
        _ = stop.wait_for(|s| *s) => {}
    }
    endpoint.close(VarInt::from_u32(close_code::SHUTDOWN), b"gateway stopping");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
}
