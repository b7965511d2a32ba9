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
use crate::auth::decide::{decide, Accept, AuthInput, Decision, DeviceAction, Origin};
use crate::methods::{self, Ctx};
use crate::protocol::connect::{negotiate_protocol, parse_connect, ConnectParams};
use crate::protocol::errors::{Rejection, CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG};
use crate::protocol::frames::{self, FrameError, MAX_PAYLOAD, MAX_PREAUTH_PAYLOAD};
use crate::protocol::hello::{hello_ok, Hello};
use crate::state::{GatewayState, Outbound, SessionHandle};
use crate::store::NewDevice;

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(4 * MAX_PAYLOAD)
        .max_message_size(Some(MAX_PAYLOAD))
        .max_frame_size(Some(MAX_PAYLOAD))
}

/// Who a socket's pre-auth limits and failure delays are charged to: the source address for a
/// loopback socket, the device for a tunnelled or SSH-forwarded one (the transport already
/// authenticated its key). Devices behind one NAT then never share a budget: after a rotation,
/// every one of them reconnecting at once is not "one source with too many sockets".
fn source_key(source: IpAddr, origin: &Origin) -> String {
    match origin {
        Origin::Loopback => source.to_string(),
        Origin::Tunnel { device_id } => format!("device:{device_id}"),
    }
}

/// An unauthenticated socket's place in its source's pre-auth budget.
type PreauthSlot = crate::limits::Slot<String>;

type Ws<S> = WebSocketStream<S>;

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
pub async fn serve_stream<S>(
    state: Arc<GatewayState>,
    mut stream: S,
    source: IpAddr,
    origin: Origin,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some((head, rest)) = http::read_head(&mut stream, state.config.handshake_timeout).await
    else {
        return;
    };
    let key = match head {
        Head::Upgrade { key } => key,
        Head::Get { path } if path == "/health" || path == "/healthz" => {
            return http::respond(
                &mut stream,
                "200 OK",
                "application/json",
                r#"{"ok":true,"status":"live"}"#,
            )
            .await;
        }
        Head::Get { path } if path == "/ready" || path == "/readyz" => {
            return http::respond(
                &mut stream,
                "200 OK",
                "application/json",
                r#"{"ready":true,"failing":[]}"#,
            )
            .await;
        }
        // OpenClaw clients ask whether start-up has finished before they connect.
        Head::Get { path } if path == "/startupz" || path == "/startup" => {
            return http::respond(
                &mut stream,
                "200 OK",
                "application/json",
                r#"{"ok":true,"status":"started"}"#,
            )
            .await;
        }
        _ => {
            return http::respond(
                &mut stream,
                "404 Not Found",
                "text/plain; charset=utf-8",
                "Not Found",
            )
            .await
        }
    };
    let total = state.open_sockets.load(Ordering::Relaxed) as usize;
    let slot = if total > state.config.max_connections {
        None
    } else {
        state.preauth.try_take(source_key(source, &origin))
    };
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
    let ws =
        WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(ws_config())).await;
    session(state, ws, origin, slot).await;
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
}

async fn session<S>(state: Arc<GatewayState>, mut ws: Ws<S>, origin: Origin, mut slot: PreauthSlot)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(live) = authenticate(&state, &mut ws, origin, &mut slot).await else {
        return;
    };
    drop(slot);
    let Live {
        conn_id,
        ctx,
        rx,
        last_seen,
    } = live;
    let close_with = request_loop(&state, &mut ws, rx, &ctx, &last_seen).await;
    // Leave the registry before the closing handshake, so counts and rotations never see a
    // session that is only waiting for its peer's close reply.
    state.unregister(conn_id);
    if let Some((code, reason)) = close_with {
        close(&mut ws, code, &reason).await;
    }
    state.sessions_alive.fetch_sub(1, Ordering::Relaxed);
}

/// Challenge, `connect`, decision; on success registers the session and sends `hello-ok`.
async fn authenticate<S>(
    state: &Arc<GatewayState>,
    ws: &mut Ws<S>,
    origin: Origin,
    slot: &mut PreauthSlot,
) -> Option<Live>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let nonce = uuid::Uuid::new_v4().to_string();
    let ts = crate::now_ms();
    let challenge = frames::event(
        "connect.challenge",
        &json!({"nonce": nonce, "ts": ts}),
        None,
    );
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
            close(ws, CLOSE_TOO_BIG, "connect frame too large").await;
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
    // The key the pre-auth slot was taken under also keys the failure delay.
    let source_key = slot.key().clone();
    let outcome = handshake(state, &req, &nonce, &origin, &source_key).await;
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
    let conn_id = state.next_conn_id();
    let methods = methods::served_methods();
    let hello = hello_ok(&Hello {
        protocol: negotiate_protocol(
            params.min_protocol,
            params.max_protocol,
            &params.client.mode,
        )
        .unwrap_or(4),
        conn_id: &format!("{conn_id}-{}", &nonce[..8]),
        methods: &methods,
        method: accept.method,
        role: &accept.role,
        scopes: &accept.scopes,
        device_token: token.as_ref().map(|(t, at)| (t.as_str(), *at)),
        uptime_ms: state.uptime_ms(),
        tick_interval_ms: state.config.tick_interval.as_millis() as u64,
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let last_seen = Arc::new(AtomicU64::new(state.uptime_ms()));
    state.register(
        conn_id,
        SessionHandle {
            conn_id,
            method: accept.method,
            device_id: accept.device_id.clone(),
            origin: origin.clone(),
            client: format!("{}/{}", params.client.id, params.client.mode),
            connected_at_ms: crate::now_ms(),
            tx,
            last_seen: last_seen.clone(),
        },
    );
    slot.release();
    state.sessions_alive.fetch_add(1, Ordering::Relaxed);
    let ctx = Ctx {
        scopes: accept.scopes.clone(),
        device_id: accept.device_id.clone(),
        method: Some(accept.method),
        conn_id,
        actor: "ws",
    };
    if ws
        .send(Message::Text(frames::response_ok(&req.id, &hello).into()))
        .await
        .is_err()
    {
        state.unregister(conn_id);
        state.sessions_alive.fetch_sub(1, Ordering::Relaxed);
        return None;
    }
    Some(Live {
        conn_id,
        ctx,
        rx,
        last_seen,
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
    let shared = state.shared_token();
    let decision = crate::store::off_worker(|| -> Result<Decision, Rejection> {
        let store = state.store();
        let generation = store.root().map_err(|e| fault(state, e))?.0;
        let device = match params.device.as_ref() {
            Some(d) => store
                .device(&d.id)
                .map_err(|e| fault(state, e))?
                .map(|d| d.record()),
            None => None,
        };
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
        }))
    })?;
    let origin_name = match origin {
        Origin::Loopback => "loopback",
        Origin::Tunnel { .. } => "tunnel",
    };
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
                tokio::time::sleep(wait).await;
            }
            Err(r)
        }
        Decision::NeedsApproval { device_id } => {
            let d = new_device(&params, &device_id);
            let ttl = state.config.pairing_request_ttl.as_millis() as u64;
            let req =
                crate::store::off_worker(|| state.store().request_pairing(&d, origin_name, ttl))
                    .map_err(|e| fault(state, e))?;
            let ev = frames::event(
                "device.pair.requested",
                &json!({"requestId": req.request_id, "deviceId": device_id}),
                Some(state.next_seq()),
            );
            state.broadcast(&ev);
            Err(Rejection::PairingRequired {
                request_id: req.request_id,
            })
        }
        Decision::Accept(a) => {
            let token = crate::store::off_worker(|| carry_out(state, &a, &params, origin_name))?;
            state
                .failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .on_success(&source_key.to_string());
            Ok((a, params, token))
        }
    }
}

/// A store failure on the connect path: the credentials were not judged, so the answer is a
/// retryable `UNAVAILABLE` naming the fault (close 1013), never an auth rejection.
fn fault(state: &GatewayState, e: crate::store::StoreError) -> Rejection {
    let kind = state.fault_of(&e);
    tracing::error!(error = %e, fault = kind.name(), "store failure during connect");
    Rejection::Unavailable(kind)
}

fn new_device(params: &ConnectParams, device_id: &str) -> NewDevice {
    NewDevice {
        device_id: device_id.to_string(),
        public_key: params
            .device
            .as_ref()
            .map(|d| d.public_key.clone())
            .unwrap_or_default(),
        display_name: params.client.display_name.clone(),
        platform: params.client.platform.clone(),
        device_family: params.client.device_family.clone(),
        client_id: params.client.id.clone(),
        client_mode: params.client.mode.clone(),
        role: params.role.clone(),
        scopes: params.scopes.clone(),
    }
}

/// Applies the device side of an accepted connect; returns the device token to hand out.
fn carry_out(
    state: &GatewayState,
    a: &Accept,
    params: &ConnectParams,
    origin: &str,
) -> Result<Option<(String, u64)>, Rejection> {
    let Some(device_id) = &a.device_id else {
        return Ok(None);
    };
    let mut store = state.store();
    let issued = match a.action {
        DeviceAction::None => return Ok(None),
        DeviceAction::PairSilently | DeviceAction::Refresh => {
            store
                .pair_device(&new_device(params, device_id), "silent", origin)
                .map_err(|e| fault(state, e))?;
            store
                .current_token(device_id, &a.role, origin)
                .map_err(|e| fault(state, e))?
        }
        DeviceAction::RepairOverTunnel => {
            let t = store
                .current_token(device_id, &a.role, origin)
                .map_err(|e| fault(state, e))?;
            drop(store);
            state.audit(
                "device.repaired",
                Some(device_id),
                Some(origin),
                "stale token replaced over the tunnel",
            );
            t
        }
        DeviceAction::Keep => {
            // `last_seen` is bookkeeping: a store that cannot write does not stop a device whose
            // token verified.
            if let Err(e) = store.touch_device(device_id) {
                tracing::debug!(error = %e, "could not record last_seen");
            }
            // Same token back (a device token is re-derivable from the root).
            return Ok(Some((
                params.secret().unwrap_or_default().to_string(),
                crate::now_ms(),
            )));
        }
    };
    Ok(Some((issued.token, issued.issued_at_ms)))
}

/// Serves requests until the peer leaves (`None`) or the session must close (`Some(code, reason)`).
async fn request_loop<S>(
    state: &Arc<GatewayState>,
    ws: &mut Ws<S>,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
    ctx: &Ctx,
    last_seen: &AtomicU64,
) -> Option<(u16, String)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    loop {
        tokio::select! {
            msg = ws.next() => {
                last_seen.store(state.uptime_ms(), Ordering::Relaxed);
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => {
                        let e = frames::ErrorShape::new("INVALID_REQUEST", "binary frames are not supported; send JSON text frames");
                        if ws.send(Message::Text(frames::response_err("", &e).into())).await.is_err() { return None; }
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | None => return None,
                    Some(Ok(_)) => continue,
                    Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(_))) => {
                        return Some((CLOSE_TOO_BIG, "message too big".into()));
                    }
                    Some(Err(_)) => return None,
                };
                let reply = match frames::parse_request(&text, MAX_PAYLOAD) {
                    // Off the async worker: a locked store waits up to BUSY_TIMEOUT.
                    Ok(req) => match crate::store::off_worker(|| methods::dispatch(state, ctx, &req.method, &req.params, true)) {
                        Ok(payload) => frames::response_ok(&req.id, &payload),
                        Err(e) => frames::response_err(&req.id, &e),
                    },
                    Err(e) => {
                        let id = serde_json::from_str::<Value>(&text).ok()
                            .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_string))
                            .unwrap_or_default();
                        frames::response_err(&id, &frames::ErrorShape::new("INVALID_REQUEST", e.to_string()))
                    }
                };
                if ws.send(Message::Text(reply.into())).await.is_err() {
                    return None;
                }
            }
            out = rx.recv() => match out {
                Some(Outbound::Text(t)) => {
                    if ws.send(Message::Text(t.into())).await.is_err() { return None; }
                }
                Some(Outbound::Ping) => {
                    if ws.send(Message::Ping(Vec::new().into())).await.is_err() { return None; }
                }
                Some(Outbound::Close(code, reason)) => return Some((code, reason)),
                None => return Some((CLOSE_POLICY, "session dropped".into())),
            }
        }
    }
}
