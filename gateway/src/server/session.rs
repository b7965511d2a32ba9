//! One connection: HTTP head, WebSocket upgrade, challenge, `connect`, then the request loop.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::http::{self, Head};
use super::metered::{BudgetSpent, Metered};
use crate::auth::decide::{decide, Accept, AuthInput, Decision, Origin};
use crate::methods::{self, Ctx};
use crate::protocol::connect::{negotiate_protocol, parse_connect, ConnectParams};
use crate::protocol::errors::{Rejection, CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG};
use crate::protocol::frames::{self, FrameError, MAX_PAYLOAD, MAX_PREAUTH_PAYLOAD};
use crate::protocol::hello::{hello_ok, Hello};
use crate::service::connect as service;
use crate::state::{GatewayState, Outbound, SessionHandle};

/// A downstream socket's WebSocket limits. In upstream mode a client may send what the upstream
/// accepts (OpenClaw's 25 MiB `MAX_PAYLOAD_BYTES`), else claw's own [`MAX_PAYLOAD`]; before
/// authentication the reads underneath are metered to 64 KiB either way (`Metered`).
fn ws_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        // Room for one upstream message (upstream mode forwards OpenClaw's largest) and more.
        .max_write_buffer_size(crate::upstream::MAX_UPSTREAM_MESSAGE + 4 * MAX_PAYLOAD)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// The largest message a client may send after `hello-ok` (see [`ws_config`]).
fn max_inbound(state: &GatewayState) -> usize {
    if state.upstream.get().is_some() {
        crate::upstream::MAX_UPSTREAM_MESSAGE
    } else {
        MAX_PAYLOAD
    }
}

/// An unauthenticated socket's place in its source's pre-auth budget.
type PreauthSlot = crate::limits::Slot<String>;

type Ws<S> = WebSocketStream<S>;

/// A socket whose reads are metered until it authenticates.
type MeteredWs<S> = WebSocketStream<Metered<S>>;

async fn close<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut Ws<S>, code: u16, reason: &str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_string().into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = ws.close(Some(frame)).await;
        // Drain until the peer answers the close (or goes away).
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Serves one byte stream (a loopback TCP socket, or a tunnelled stream whose device the
/// transport authenticated): HTTP head, then the WebSocket session.
pub async fn serve_stream<S>(state: Arc<GatewayState>, stream: S, source: IpAddr, origin: Origin)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve(state, stream, source, origin, None, None).await
}

/// [`serve_stream`] for a loopback socket of the gateway's own listener `bound`: the client's uid
/// the kernel named (`peer_uid`) charges its budgets (see `limits::preauth_key` and
/// `limits::failure_key`), and `bound` is the address the gateway signs in its identity proof, so
/// a client can tell it talks to this listener and not to a relay (see `auth::gateway_proof`).
pub(super) async fn serve_loopback<S>(
    state: Arc<GatewayState>,
    stream: S,
    source: IpAddr,
    peer_uid: Option<u32>,
    bound: Option<std::net::SocketAddr>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve(state, stream, source, Origin::Loopback, peer_uid, bound).await
}

async fn serve<S>(
    state: Arc<GatewayState>,
    mut stream: S,
    source: IpAddr,
    origin: Origin,
    peer_uid: Option<u32>,
    bound: Option<std::net::SocketAddr>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some((head, mut buf, used)) =
        http::read_head(&mut stream, state.config.handshake_timeout).await
    else {
        return;
    };
    let place = match (&origin, bound) {
        (Origin::Tunnel { device_id, .. }, _) => crate::web::Place::Device(device_id.clone()),
        (Origin::Loopback, Some(b)) => crate::web::Place::Loopback(b.port()),
        (Origin::Loopback, None) => crate::web::Place::Other,
    };
    let (key, proof_nonce, page) = match head {
        Head::Upgrade {
            key,
            origin: o,
            proof_nonce,
            cookie,
            host,
        } => {
            // A control page's socket (its own origin checked with its cookie) needs no entry in
            // the origin allow-list: through a device's tunnel its origin is the device's port.
            let page = crate::web::upgrade_session(
                &state,
                cookie.as_deref(),
                o.as_deref(),
                host.as_deref(),
                &place,
            );
            if page.is_none() && !origin_allowed(&state, o.as_deref(), &origin) {
                return http::respond(
                    &mut stream,
                    "403 Forbidden",
                    "text/plain; charset=utf-8",
                    "Origin not allowed (claw gateway origins add ORIGIN, or --allow-origin)",
                )
                .await;
            }
            (key, proof_nonce, page)
        }
        // Everything else is plain HTTP: the probes and the control page (hyper).
        _ => return crate::web::serve_http(state, stream, buf, place).await,
    };
    let rest = buf.split_off(used);
    let total = state.open_sockets.load(Ordering::Relaxed) as usize;
    let device = match &origin {
        Origin::Loopback => None,
        Origin::Tunnel { device_id, .. } => Some(device_id.as_str()),
    };
    let own_uid = nix::unistd::geteuid().as_raw();
    let slot = if total > state.config.max_connections {
        None
    } else {
        state.preauth.try_take(crate::limits::preauth_key(
            source, device, peer_uid, own_uid,
        ))
    };
    let fail_key = crate::limits::failure_key(device, peer_uid);
    let Some(slot) = slot else {
        return http::respond(
            &mut stream,
            "503 Service Unavailable",
            "text/plain; charset=utf-8",
            "Too many unauthenticated sockets",
        )
        .await;
    };
    if http::accept_upgrade(&mut stream, &key).await.is_err() {
        return;
    }
    let stream = Metered::new(stream, state.preauth_bytes.clone());
    let ws = WebSocketStream::from_partially_read(
        stream,
        rest,
        Role::Server,
        Some(ws_config(max_inbound(&state))),
    )
    .await;
    let proof = proof_nonce.map(|n| (n, bound));
    session(state, ws, origin, slot, fail_key, proof, (source, page)).await;
}

/// Checks an upgrade's `Origin` against the allow-list; a refusal is logged (escaped) and
/// audited once per distinct origin.
fn origin_allowed(state: &GatewayState, header: Option<&str>, origin: &Origin) -> bool {
    use crate::origin::Verdict;
    let verdict = state
        .origins
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .check(header);
    let Verdict::Refused(sent) = verdict else {
        return true;
    };
    let shown: String = sent.escape_debug().take(300).collect();
    let first = state
        .origin_refusals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .record(&sent);
    if first {
        tracing::info!(origin = %shown, "browser origin refused");
        let detail = format!("origin_not_allowed {shown}");
        crate::store::off_worker(|| {
            state.audit("auth.failed", None, Some(origin.audit_name()), &detail)
        });
    } else {
        tracing::debug!(origin = %shown, "browser origin refused again");
    }
    false
}

/// Reads the next text message before authentication. `Err(code)` = close with that code.
async fn next_text<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut Ws<S>) -> Result<String, u16> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Binary(_))) => return Err(CLOSE_NORMAL),
            Some(Ok(Message::Close(_))) | None => return Err(0),
            Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(_))) => {
                return Err(CLOSE_TOO_BIG)
            }
            // More pre-auth bytes than the meter allows: an oversized message, cut while it
            // arrived.
            Some(Err(tokio_tungstenite::tungstenite::Error::Io(e))) if BudgetSpent::is(&e) => {
                return Err(CLOSE_TOO_BIG)
            }
            Some(Err(_)) => return Err(0),
        }
    }
}

/// What an authenticated socket keeps for its lifetime (the handshake's frames, params and
/// `hello-ok` are dropped before the request loop, so an idle session stays small).
struct Live {
    conn_id: u64,
    ctx: Ctx,
    rx: mpsc::UnboundedReceiver<Outbound>,
    last_seen: Arc<AtomicU64>,
    /// The device's presence while a device-authenticated WebSocket on loopback is open
    /// (tunnelled sockets are counted by their tunnel or SSH connection).
    _link: Option<crate::presence::Link>,
    /// The control page's session, for a page socket.
    page: Option<crate::web::login::SessionId>,
    /// Upstream mode: this session's upstream (see [`crate::upstream`]).
    upstream: Option<crate::upstream::UpstreamHandle>,
}

/// Where a socket came from: the source address, and the control page's session when the
/// upgrade carried a live one from the gateway's own origin.
type From = (IpAddr, Option<crate::web::login::SessionId>);

/// A client's request for the gateway's identity proof: its nonce and the listener address.
type ProofAsk = Option<(String, Option<std::net::SocketAddr>)>;

async fn session<S>(
    state: Arc<GatewayState>,
    mut ws: MeteredWs<S>,
    origin: Origin,
    mut slot: PreauthSlot,
    fail_key: String,
    proof: ProofAsk,
    from: From,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(live) = authenticate(&state, &mut ws, origin, &mut slot, &fail_key, proof, from).await
    else {
        return;
    };
    drop(slot);
    let Live {
        conn_id,
        ctx,
        rx,
        last_seen,
        _link,
        page,
        upstream,
    } = live;
    let close_with = request_loop(
        &state,
        &mut ws,
        rx,
        &ctx,
        &last_seen,
        page,
        upstream.as_ref(),
    )
    .await;
    drop(upstream);
    // Leave the registry before the closing handshake, so counts and rotations never see a
    // session that is only waiting for its peer's close reply.
    state.unregister(conn_id);
    state.web.page_closed(conn_id);
    if let Some((code, reason)) = close_with {
        close(&mut ws, code, &reason).await;
    }
    state.sessions_alive.fetch_sub(1, Ordering::Relaxed);
    drop(_link);
}

/// Challenge, `connect`, decision; on success registers the session and sends `hello-ok`.
async fn authenticate<S>(
    state: &Arc<GatewayState>,
    ws: &mut MeteredWs<S>,
    origin: Origin,
    slot: &mut PreauthSlot,
    fail_key: &str,
    proof: ProofAsk,
    (source, page): From,
) -> Option<Live>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let nonce = uuid::Uuid::new_v4().to_string();
    let ts = crate::now_ms();
    let mut payload = json!({"nonce": nonce, "ts": ts});
    if let (Some((client_nonce, bound)), Some(key)) = (proof, state.identity.get()) {
        payload["gatewayProof"] =
            crate::auth::gateway_proof::sign(key, &client_nonce, &nonce, ts, bound);
    }
    let challenge = frames::event("connect.challenge", &payload, None);
    if ws.send(Message::Text(challenge.into())).await.is_err() {
        return None;
    }
    let first = match tokio::time::timeout(state.config.handshake_timeout, next_text(ws)).await {
        Err(_) => {
            close(ws, CLOSE_NORMAL, "").await;
            return None;
        }
        Ok(Err(0)) => return None,
        Ok(Err(code)) => {
            close(ws, code, "").await;
            return None;
        }
        Ok(Ok(t)) => t,
    };
    let req = match frames::parse_request(&first, MAX_PREAUTH_PAYLOAD) {
        Ok(r) => r,
        Err(FrameError::TooLarge(_)) => {
            close(
                ws,
                CLOSE_TOO_BIG,
                &crate::protocol::close::CloseReason::ConnectFrameTooLarge.to_string(),
            )
            .await;
            return None;
        }
        Err(FrameError::NotJson) => {
            close(ws, CLOSE_NORMAL, "").await;
            return None;
        }
        Err(FrameError::Invalid(_)) => {
            let f = Rejection::FirstRequestNotConnect.frame();
            close(ws, f.close_code, &f.close_reason).await;
            return None;
        }
    };
    let outcome = handshake(state, &req, &nonce, &origin, fail_key, (source, page)).await;
    let accept = match outcome {
        Ok(a) => a,
        Err(rej) => {
            let f = rej.frame();
            let _ = ws
                .send(Message::Text(
                    frames::response_err(&req.id, &f.error).into(),
                ))
                .await;
            close(ws, f.close_code, &f.close_reason).await;
            return None;
        }
    };
    let (accept, params, token) = accept;
    // The control page: a live session cookie and a connect with no secret and no device.
    let page = page.filter(|_| params.secret().is_none() && params.device.is_none());
    let conn_id = state.next_conn_id();
    let methods = methods::served_methods();
    // Upstream mode: what the client can really call, claw's methods and the upstream's.
    let union = state.upstream.get().map(|u| u.advertised_methods(&methods));
    let union_refs: Option<Vec<&str>> = union
        .as_ref()
        .map(|v| v.iter().map(String::as_str).collect());
    let events = state.upstream.get().map(|u| u.advertised_events());
    let event_refs: Option<Vec<&str>> = events
        .as_ref()
        .map(|v| v.iter().map(String::as_str).collect());
    let hello = hello_ok(&Hello {
        protocol: negotiate_protocol(
            params.min_protocol,
            params.max_protocol,
            &params.client.mode,
        )
        .unwrap_or(4),
        conn_id: &format!("{conn_id}-{}", &nonce[..8]),
        methods: union_refs.as_deref().unwrap_or(&methods),
        events: event_refs.as_deref(),
        max_payload: state.upstream.get().map(|_| max_inbound(state)),
        method: accept.method,
        role: &accept.role,
        scopes: &accept.scopes,
        device_token: token.as_ref().map(|(t, at)| (t.as_str(), *at)),
        uptime_ms: state.uptime_ms(),
        tick_interval_ms: state.config.tick_interval.as_millis() as u64,
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let upstream = match state.upstream.get().filter(|_| page.is_none()) {
        Some(u) => {
            let client = crate::upstream::link::Client {
                connect: req.params.clone(),
                role: accept.role.clone(),
                scopes: accept.scopes.clone(),
                device_id: accept.device_id.clone(),
            };
            crate::upstream::link::open(state, u, client, tx.clone())
        }
        None => None,
    };
    let last_seen = Arc::new(AtomicU64::new(state.uptime_ms()));
    let link = match (&origin, &accept.device_id) {
        (Origin::Loopback, Some(d)) => Some(crate::presence::Link::open(
            state,
            d,
            crate::presence::Transport::Ws,
        )),
        _ => None,
    };
    state.register(
        conn_id,
        SessionHandle {
            conn_id,
            method: accept.method,
            device_id: accept.device_id.clone(),
            origin: origin.clone(),
            client: match page {
                Some(_) => crate::web::PAGE_CLIENT.to_string(),
                None => format!("{}/{}", params.client.id, params.client.mode),
            },
            connected_at_ms: crate::now_ms(),
            tx,
            last_seen: last_seen.clone(),
        },
    );
    slot.release();
    ws.get_mut().lift();
    state.sessions_alive.fetch_add(1, Ordering::Relaxed);
    let ctx = match page {
        // The page acts for the local operator (admin-socket methods, minus PAGE_DENIED).
        // A device's page (through its tunnel) acts as that device, with its scopes.
        Some(sid) if accept.device_id.is_some() => {
            state.web.page_opened(conn_id, sid);
            Ctx {
                scopes: accept.scopes.clone(),
                device_id: accept.device_id.clone(),
                method: Some(accept.method),
                conn_id,
                actor: "dashboard",
            }
        }
        Some(sid) => {
            state.web.page_opened(conn_id, sid);
            Ctx {
                conn_id,
                ..Ctx::admin("dashboard")
            }
        }
        None => Ctx {
            scopes: accept.scopes.clone(),
            device_id: accept.device_id.clone(),
            method: Some(accept.method),
            conn_id,
            actor: "ws",
        },
    };
    if ws
        .send(Message::Text(frames::response_ok(&req.id, &hello).into()))
        .await
        .is_err()
    {
        state.unregister(conn_id);
        state.web.page_closed(conn_id);
        state.sessions_alive.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    Some(Live {
        conn_id,
        ctx,
        rx,
        last_seen,
        _link: link,
        page,
        upstream,
    })
}

type Accepted = (Accept, ConnectParams, Option<(String, u64)>);

/// Validates `connect` and carries out the decision against the store.
async fn handshake(
    state: &Arc<GatewayState>,
    req: &frames::Request,
    nonce: &str,
    origin: &Origin,
    source_key: &str,
    (source, page): From,
) -> Result<Accepted, Rejection> {
    if req.method != "connect" {
        return Err(Rejection::FirstRequestNotConnect);
    }
    let params = parse_connect(&req.params).map_err(Rejection::InvalidParams)?;
    if negotiate_protocol(
        params.min_protocol,
        params.max_protocol,
        &params.client.mode,
    )
    .is_none()
    {
        return Err(Rejection::ProtocolMismatch {
            client_min: params.min_protocol,
            client_max: params.max_protocol,
        });
    }
    // A control page's socket: its session cookie, not a secret in the connect, is the
    // credential (see `web::page_accept`).
    if let Some(a) = page.and_then(|sid| crate::web::page_accept(state, sid, &params)) {
        return Ok((a, params, None));
    }
    // A key with recent failures has at most `FAILING_IN_FLIGHT_PER_KEY` secrets in flight
    // (evaluated or sleeping off their delay), all keys together `FAILING_IN_FLIGHT_ALL`: more
    // sockets or more source addresses then buy no more guesses per delay.
    let mut in_flight = None;
    if params.secret().is_some() && failing(state, source_key) {
        in_flight = Some(wait_in_flight(state, source_key).await.ok_or_else(|| {
            tracing::info!(origin = ?origin, "connect refused: too many wrong secrets in flight");
            Rejection::TokenMismatch {
                can_retry_with_device_token: false,
            }
        })?);
    }
    let shared = state.shared_token();
    let mut recorded_role: Option<String> = None;
    let decision = crate::store::off_worker(|| -> Result<Decision, Rejection> {
        let store = state.store();
        let generation = store.root().map_err(|e| fault(state, e))?.0;
        // Through the tunnel or SSH forward, the device the transport authenticated (a proof
        // by another key is a sub-identity of it); on loopback, the device a proof names.
        let device_id = match (&params.device, origin) {
            (_, Origin::Tunnel { device_id, .. }) => Some(device_id.as_str()),
            (Some(d), Origin::Loopback) => Some(d.id.as_str()),
            (None, Origin::Loopback) => None,
        };
        let info = match device_id {
            Some(id) => store.device(id).map_err(|e| fault(state, e))?,
            None => None,
        };
        recorded_role = info.as_ref().map(|d| d.role.clone());
        let device = info.map(|d| d.record());
        let token = match params
            .secret()
            .filter(|s| !crate::auth::secrets::secrets_equal(s, &shared))
        {
            Some(s) => store.token_record(s).map_err(|e| fault(state, e))?,
            None => None,
        };
        Ok(decide(&AuthInput {
            params: &params,
            nonce,
            origin,
            shared_token: &shared,
            generation,
            device: device.as_ref(),
            token: token.as_ref(),
            now_ms: crate::now_ms(),
            transport_identity: !state.config.strict_device_auth,
        }))
    })?;
    let origin_name = origin.audit_name();
    let decision = restrict_role(decision, origin, recorded_role.as_deref());
    match decision {
        Decision::Reject(r) => {
            let device_id = params.device.as_ref().map(|d| d.id.as_str());
            crate::store::off_worker(|| {
                state.audit("auth.failed", device_id, Some(origin_name), r.audit_name())
            });
            tracing::info!(
                reason = r.audit_name(),
                origin = origin_name,
                "connect refused"
            );
            if r.is_bad_secret() {
                let wait = state
                    .failures
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .on_failure(&source_key.to_string(), Instant::now());
                // The first failures of a key had no slot to wait for: take one if free.
                let _held = in_flight.or_else(|| take_in_flight(state, source_key));
                tokio::time::sleep(wait).await;
            }
            Err(r)
        }
        Decision::NeedsApproval { device_id } => {
            let remote = source.to_string();
            let req = crate::store::off_worker(|| {
                service::request_pairing(state, &params, &device_id, origin_name, &remote)
            })
            .map_err(|e| fault(state, e))?;
            Err(Rejection::PairingRequired {
                request_id: req.request_id,
            })
        }
        Decision::Accept(a) => {
            let token =
                crate::store::off_worker(|| service::carry_out(state, &a, &params, origin_name))
                    .map_err(|e| fault(state, e))?;
            state
                .failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .on_success(&source_key.to_string());
            Ok((a, params, token))
        }
    }
}

/// A paired device keeps the role it was paired with: through the tunnel or SSH, or with its
/// device token, a connect asking for another role is refused like a scope upgrade (OpenClaw
/// asks for approval of a role upgrade), so no made-up role string ever mints a token row. Only
/// the shared token on loopback (an operator) may re-pair a device under another role.
///
/// A transport-identity session (a stock client or a sub-identity through the tunnel) mints no
/// token, so it may take either OpenClaw role — `openclaw node run` on an operator device
/// connects as `node` — still with the device's scopes at most; any other role is refused.
fn restrict_role(decision: Decision, origin: &Origin, recorded: Option<&str>) -> Decision {
    use crate::protocol::hello::AuthMethod;
    match decision {
        Decision::Accept(a) if a.method == AuthMethod::Transport => {
            if matches!(a.role.as_str(), "operator" | "node") {
                Decision::Accept(a)
            } else {
                Decision::Reject(Rejection::ScopeMismatch)
            }
        }
        Decision::Accept(a)
            if a.device_id.is_some()
                && recorded.is_some_and(|r| r != a.role)
                && (matches!(origin, Origin::Tunnel { .. })
                    || a.method == AuthMethod::DeviceToken) =>
        {
            Decision::Reject(Rejection::ScopeMismatch)
        }
        d => d,
    }
}

/// Slots of one connect in flight for a failing key (see [`handshake`]).
type InFlight = (crate::limits::Slot<String>, crate::limits::Slot<()>);

fn failing(state: &GatewayState, key: &str) -> bool {
    state
        .failures
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_failing(&key.to_string(), Instant::now())
}

fn take_in_flight(state: &GatewayState, key: &str) -> Option<InFlight> {
    let one = state.failing.try_take(key.to_string())?;
    let all = state.failing_all.try_take(())?;
    Some((one, all))
}

/// Waits (up to the handshake timeout) for an in-flight slot of `key`; `None` when none freed
/// up — the connect is then refused without its secret being looked at.
async fn wait_in_flight(state: &GatewayState, key: &str) -> Option<InFlight> {
    let end = Instant::now() + state.config.handshake_timeout;
    loop {
        if let Some(s) = take_in_flight(state, key) {
            return Some(s);
        }
        if Instant::now() >= end {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A store failure on the connect path: the credentials were not judged, so the answer is a
/// retryable `UNAVAILABLE` naming the fault (close 1013), never an auth rejection.
fn fault(state: &GatewayState, e: crate::store::StoreError) -> Rejection {
    let kind = state.fault_of(&e);
    tracing::error!(error = %e, fault = kind.name(), "store failure during connect");
    Rejection::Unavailable(kind)
}

/// Sends `msg`, unless the client turns out a slow consumer of its upstream session while the
/// send waits for it to read (then the send is abandoned and the session closes). `Err` is what
/// the request loop returns: `None` when the peer is gone.
async fn send_unless_slow<S>(
    ws: &mut Ws<S>,
    msg: Message,
    upstream: Option<&crate::upstream::UpstreamHandle>,
) -> Result<(), Option<(u16, String)>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slowed = async {
        match upstream {
            Some(u) => u.slowed().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = ws.send(msg) => r.map_err(|_| None),
        _ = slowed => Err(Some(crate::upstream::link::slow_consumer_close())),
    }
}

/// Serves requests until the peer leaves (`None`) or the session must close (`Some(code, reason)`).
async fn request_loop<S>(
    state: &Arc<GatewayState>,
    ws: &mut Ws<S>,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
    ctx: &Ctx,
    last_seen: &AtomicU64,
    page: Option<crate::web::login::SessionId>,
    upstream: Option<&crate::upstream::UpstreamHandle>,
) -> Option<(u16, String)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    loop {
        tokio::select! {
            msg = ws.next() => {
                last_seen.store(state.uptime_ms(), Ordering::Relaxed);
                if let Some(d) = &ctx.device_id {
                    state.presence().touch(d, None, crate::now_ms());
                }
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    // Upstream mode reads a binary frame as its UTF-8 text, as OpenClaw does.
                    Some(Ok(Message::Binary(b))) if upstream.is_some() && std::str::from_utf8(&b).is_ok() => {
                        match crate::upstream::inbound::binary_text(b) { Some(t) => t, None => continue }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        let e = frames::ErrorShape::new(crate::protocol::codes::INVALID_REQUEST, "binary frames are not supported; send JSON text frames");
                        if ws.send(Message::Text(frames::response_err("", &e).into())).await.is_err() { return None; }
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | None => return None,
                    Some(Ok(_)) => continue,
                    Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(_))) => {
                        return Some((CLOSE_TOO_BIG, crate::protocol::close::CloseReason::MessageTooBig.to_string()));
                    }
                    Some(Err(_)) => return None,
                };
                let reply = match frames::parse_request(&text, max_inbound(state)) {
                    Ok(req) if page.is_some() => {
                        match crate::web::page_request(state, ctx, page, &req).await {
                            Ok(payload) => frames::response_ok(&req.id, &payload),
                            Err(None) => return Some((CLOSE_POLICY, crate::web::SESSION_ENDED.into())),
                            Err(Some(e)) => frames::response_err(&req.id, &e),
                        }
                    }
                    // Upstream mode: claw's scope check, then the upstream answers.
                    Ok(req) if upstream.is_some() => {
                        use crate::upstream::link::Handled;
                        match upstream.unwrap().handle(&req, &text).await {
                            Handled::Sent => continue,
                            Handled::Reply(r) => r,
                            Handled::Claw => match methods::dispatch(state, ctx, &req.method, &req.params, true).await {
                                Ok(payload) => frames::response_ok(&req.id, &payload),
                                Err(e) => frames::response_err(&req.id, &e),
                            },
                        }
                    }
                    // Sync handlers run on the blocking pool: a locked store waits up to BUSY_TIMEOUT there.
                    Ok(req) => match methods::dispatch(state, ctx, &req.method, &req.params, true).await {
                        Ok(payload) => frames::response_ok(&req.id, &payload),
                        Err(e) => frames::response_err(&req.id, &e),
                    },
                    Err(e) => {
                        let id = serde_json::from_str::<Value>(&text).ok()
                            .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_string))
                            .unwrap_or_default();
                        frames::response_err(&id, &frames::ErrorShape::new(crate::protocol::codes::INVALID_REQUEST, e.to_string()))
                    }
                };
                if let Err(end) = send_unless_slow(ws, Message::Text(reply.into()), upstream).await {
                    return end;
                }
            }
            // Upstream mode: the upstream session's frames, bounded by its backlog.
            down = async { match upstream { Some(u) => u.next().await, None => std::future::pending().await } } => match down {
                crate::upstream::link::Down::Frame(t, _held) => {
                    if let Err(end) = send_unless_slow(ws, Message::Text(t.into()), upstream).await {
                        return end;
                    }
                }
                crate::upstream::link::Down::Slow => return Some(crate::upstream::link::slow_consumer_close()),
            },
            out = rx.recv() => match out {
                Some(Outbound::Text(t)) => {
                    if let Err(end) = send_unless_slow(ws, Message::Text(t.into()), upstream).await {
                        return end;
                    }
                }
                Some(Outbound::Ping) => {
                    if ws.send(Message::Ping(Vec::new().into())).await.is_err() { return None; }
                }
                Some(Outbound::Close(code, reason)) => return Some((code, reason)),
                None => return Some((CLOSE_POLICY, crate::protocol::close::CloseReason::SessionDropped.to_string())),
            }
        }
    }
}
