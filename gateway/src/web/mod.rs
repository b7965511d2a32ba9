//! The control page on the gateway's loopback port: every request that is not a WebSocket
//! upgrade is served here by hyper (HTTP/1.1, one request per connection), after the gateway's
//! own bounded head reader has told it apart from an upgrade — so the upgrade path OpenClaw
//! clients use is untouched.
//!
//! Pure parts: [`policy`] (Host check, security headers, routes), [`login`] (one-time codes,
//! page sessions), [`cookie`] (the session cookie). This file is the IO shell: hyper, the store's
//! root generation, and telling page WebSocket sessions about changes.

pub mod assets;
pub mod cookie;
pub mod login;
pub mod policy;
mod prefixed;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::auth::decide::{Accept, DeviceAction};
use crate::protocol::connect::ConnectParams;
use crate::protocol::hello::AuthMethod;
use crate::state::{GatewayEvent, GatewayState, Outbound};
use login::SessionId;
pub use prefixed::Prefixed;

/// The client string page sessions are registered with (`gateway.status` clients).
pub const PAGE_CLIENT: &str = "claw-dashboard/page";
/// Event sent to page sessions when something they show changed (`{kind, deviceId?}`).
pub const CHANGED_EVENT: &str = "dashboard.changed";
/// Close reason of a page session whose login ended (logout, rotation, expiry).
pub const SESSION_ENDED: &str = "dashboard session ended (log in again: claw dashboard)";
/// Methods a page session may not call even though it acts for the local operator: the shared
/// token never reaches a browser.
pub const PAGE_DENIED: &[&str] = &["gateway.token.show"];
/// Methods a paired device's page (through its tunnel) may not call either: stopping the
/// gateway and minting loopback login links stay with the gateway host's own operator.
pub const DEVICE_PAGE_DENIED: &[&str] = &["gateway.stop", "dashboard.login"];
/// Largest request body read (a login code).
const MAX_BODY: usize = 1024;

/// Builds a pairing URI and its QR code (SVG) from a code, its expiry (epoch ms) and a name;
/// installed by the binary when a tunnel runs (the URI format belongs to the tunnel crate).
pub struct PairUri(pub PairUriFn);

/// See [`PairUri`].
pub type PairUriFn = Box<dyn Fn(&str, u64, Option<&str>) -> Option<(String, String)> + Send + Sync>;

impl std::fmt::Debug for PairUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairUri(..)")
    }
}

/// Where a page request arrived: the gateway's loopback listener (its port), or a paired
/// device's tunnel or SSH forward (the device id the transport authenticated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// The loopback listener on this port.
    Loopback(u16),
    /// Through this device's tunnel.
    Device(String),
    /// Neither (a stream handed in without a listener): only the probes.
    Other,
}

impl Place {
    /// The owner of codes and sessions made here (see [`login::Owner`]).
    pub fn owner(&self) -> Option<&str> {
        match self {
            Place::Device(d) => Some(d),
            _ => None,
        }
    }

    fn audit_name(&self) -> &'static str {
        match self {
            Place::Device(_) => "tunnel",
            _ => "loopback",
        }
    }
}

/// The control page's login codes, page sessions and the WebSockets they opened.
#[derive(Debug, Default)]
pub struct WebState {
    /// How `dashboard.pair` makes a URI (set once a tunnel runs).
    pub pair_uri: std::sync::OnceLock<PairUri>,
    codes: Mutex<login::Codes>,
    sessions: Mutex<login::Sessions>,
    page_conns: Mutex<HashMap<u64, SessionId>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl WebState {
    /// Mints a one-time login code for the local operator (`dashboard.login` on the admin
    /// socket).
    pub fn mint_code(&self) -> (String, u64) {
        lock(&self.codes).mint(crate::now_ms(), None)
    }

    /// The live page session of `owner` a cookie value names under root `generation`.
    pub fn session(&self, value: &str, generation: u64, owner: Option<&str>) -> Option<SessionId> {
        lock(&self.sessions).check(value, crate::now_ms(), generation, owner)
    }

    /// The device a page session belongs to (`None`: the local operator's, or gone).
    pub fn session_device(&self, id: SessionId) -> Option<String> {
        lock(&self.sessions).owner(id).flatten().map(str::to_string)
    }

    /// True while `id` is live under `generation`.
    pub fn valid(&self, id: SessionId, generation: u64) -> bool {
        lock(&self.sessions).valid(id, crate::now_ms(), generation)
    }

    /// See [`login::Sessions::follow_rotation`].
    pub fn follow_rotation(&self, id: SessionId, on: bool) {
        lock(&self.sessions).follow_rotation(id, on)
    }

    /// Records a page WebSocket of session `id`.
    pub fn page_opened(&self, conn_id: u64, id: SessionId) {
        lock(&self.page_conns).insert(conn_id, id);
    }

    /// Forgets a page WebSocket.
    pub fn page_closed(&self, conn_id: u64) {
        lock(&self.page_conns).remove(&conn_id);
    }

    /// Live page sessions.
    pub fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }
}

fn generation(state: &GatewayState) -> Option<u64> {
    crate::store::off_worker(|| state.store().root().ok().map(|(g, _)| g))
}

/// Closes every page WebSocket whose session is no longer live (after a logout or a rotation).
pub fn sweep(state: &GatewayState) {
    let Some(g) = generation(state) else {
        return;
    };
    let conns: Vec<(u64, SessionId)> = lock(&state.web.page_conns)
        .iter()
        .map(|(c, s)| (*c, *s))
        .collect();
    let dead: Vec<u64> = conns
        .into_iter()
        .filter(|(_, s)| !state.web.valid(*s, g))
        .map(|(c, _)| c)
        .collect();
    if dead.is_empty() {
        return;
    }
    state.close_sessions(
        |s| dead.contains(&s.conn_id),
        crate::protocol::errors::CLOSE_POLICY,
        SESSION_ENDED,
    );
}

/// Sends an event to the page sessions only (OpenClaw clients are not sent claw's own events).
pub fn notify_pages(state: &GatewayState, event: &str, payload: &Value) {
    let conns: Vec<u64> = lock(&state.web.page_conns).keys().copied().collect();
    if conns.is_empty() {
        return;
    }
    let ev = crate::protocol::frames::event(event, payload, Some(state.next_seq()));
    for (id, s) in state.sessions().iter() {
        if conns.contains(id) {
            let _ = s.tx.send(Outbound::Text(ev.clone()));
        }
    }
}

/// Forwards credential events to the page sessions as [`CHANGED_EVENT`], and ends page
/// sessions a rotation ended. Runs for the gateway's lifetime.
pub async fn watch_events(state: Arc<GatewayState>) {
    let mut rx = state.events.subscribe();
    loop {
        let ev = match rx.recv().await {
            Ok(ev) => ev,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => return,
        };
        let payload = match &ev {
            GatewayEvent::RootRotated { generation } => {
                sweep(&state);
                json!({"kind": "rotated", "generation": generation})
            }
            GatewayEvent::DeviceTokenRotated { device_id } => {
                json!({"kind": "token-rotated", "deviceId": device_id})
            }
            GatewayEvent::DeviceRevoked { device_id } => {
                lock(&state.web.sessions).end_owner(device_id);
                sweep(&state);
                json!({"kind": "revoked", "deviceId": device_id})
            }
            GatewayEvent::DeviceRemoved { device_id } => {
                lock(&state.web.sessions).end_owner(device_id);
                sweep(&state);
                json!({"kind": "removed", "deviceId": device_id})
            }
            GatewayEvent::PairingResolved {
                device_id,
                approved,
            } => json!({"kind": "pairing-resolved", "deviceId": device_id, "approved": approved}),
        };
        notify_pages(&state, CHANGED_EVENT, &payload);
    }
}

/// The scopes of paired device `device_id` when it holds `operator.admin` and is not revoked
/// (what a device needs to be served the control page through its tunnel).
pub fn admin_device_scopes(state: &GatewayState, device_id: &str) -> Option<Vec<String>> {
    let d = crate::store::off_worker(|| state.store().device(device_id).ok().flatten())?;
    (d.revoked_at_ms.is_none()
        && crate::auth::scopes::has_scope(&d.scopes, crate::auth::scopes::ADMIN))
    .then_some(d.scopes)
}

/// The accept of a page session's `connect`: only for a socket whose upgrade carried a live
/// session cookie from the page's own origin (the caller checked), and only when the
/// connect itself presents no secret and no device (a page never holds one). A local page then
/// acts for the local operator, like the admin socket, minus [`PAGE_DENIED`]; a device's page
/// (through its tunnel) acts as that device, with its approved scopes, while it holds
/// `operator.admin`.
pub fn page_accept(state: &GatewayState, sid: SessionId, params: &ConnectParams) -> Option<Accept> {
    if params.secret().is_some() || params.device.is_some() || params.role != "operator" {
        return None;
    }
    if let Some(device) = state.web.session_device(sid) {
        let scopes = admin_device_scopes(state, &device)?;
        return Some(Accept {
            method: AuthMethod::Transport,
            role: "operator".into(),
            scopes,
            device_id: Some(device),
            action: DeviceAction::None,
        });
    }
    Some(Accept {
        method: AuthMethod::Token,
        role: "operator".into(),
        scopes: vec![
            crate::auth::scopes::ADMIN.to_string(),
            crate::auth::scopes::READ.to_string(),
            crate::auth::scopes::PAIRING.to_string(),
        ],
        device_id: None,
        action: DeviceAction::None,
    })
}

/// Serves one request of a page socket: the session must still be live (`Err(None)`: close the
/// socket); [`PAGE_DENIED`] methods are refused; a rotation asked by this page keeps this
/// page's session (every other page session ends with it); the admin-socket view of the method
/// table is used, plus the page's own `dashboard.*` methods.
pub async fn page_request(
    state: &std::sync::Arc<GatewayState>,
    ctx: &crate::methods::Ctx,
    page: Option<SessionId>,
    req: &crate::protocol::frames::Request,
) -> Result<Value, Option<crate::protocol::frames::ErrorShape>> {
    use crate::protocol::frames::ErrorShape;
    let sid = page.ok_or(None)?;
    let g = generation(state).ok_or_else(|| {
        Some(crate::protocol::errors::unavailable(
            crate::fault::FaultKind::Internal,
        ))
    })?;
    if !state.web.valid(sid, g) {
        return Err(None);
    }
    let device = state.web.session_device(sid);
    if let Some(d) = &device {
        // Re-checked on every request: a device that lost admin (or was revoked) loses its page.
        if admin_device_scopes(state, d).is_none() {
            lock(&state.web.sessions).end(sid);
            return Err(None);
        }
    }
    if PAGE_DENIED.contains(&req.method.as_str())
        || (device.is_some() && DEVICE_PAGE_DENIED.contains(&req.method.as_str()))
    {
        return Err(Some(ErrorShape::new(
            claw_proto::codes::FORBIDDEN,
            "not available to the control page",
        )));
    }
    let rotating = req.method == "gateway.token.rotate";
    if rotating {
        state.web.follow_rotation(sid, true);
    }
    let out = crate::methods::dispatch(state, ctx, &req.method, &req.params, false).await;
    if rotating {
        // Adopt the new generation now (if the rotation happened), then stop following.
        if let Some(g) = generation(state) {
            state.web.valid(sid, g);
        }
        state.web.follow_rotation(sid, false);
        sweep(state);
    }
    out.map_err(Some)
}

/// The page session an upgrade carries, if any: its cookie names a live session of this
/// place's owner and its `Origin` is the page's own — the loopback listener's (`Place::Loopback`)
/// or, through a device's tunnel, the loopback origin its `Host` names, while the device holds
/// `operator.admin`.
pub fn upgrade_session(
    state: &GatewayState,
    cookie: Option<&str>,
    origin: Option<&str>,
    host: Option<&str>,
    place: &Place,
) -> Option<SessionId> {
    let value = cookie?;
    match place {
        Place::Loopback(port) if policy::own_origin(origin, *port) => {}
        Place::Device(d) => {
            let own = policy::tunnel_host(host)?;
            if !policy::same_origin(origin, &own) {
                return None;
            }
            admin_device_scopes(state, d)?;
        }
        _ => return None,
    }
    state.web.session(value, generation(state)?, place.owner())
}

/// Serves one HTTP connection whose first `prefix` bytes were already read, arrived at `place`
/// (elsewhere than the loopback listener or an admin device's tunnel, only the probes are
/// served).
pub async fn serve_http<S>(state: Arc<GatewayState>, stream: S, prefix: Vec<u8>, place: Place)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(Prefixed::new(prefix, stream));
    let timeout = state.config.handshake_timeout;
    let svc = hyper::service::service_fn(move |req| {
        let (state, place) = (state.clone(), place.clone());
        async move { Ok::<_, Infallible>(handle(&state, req, &place).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .max_buf_size(16 * 1024)
        .serve_connection(io, svc);
    if tokio::time::timeout(timeout + Duration::from_secs(5), conn)
        .await
        .is_err()
    {
        tracing::debug!("http request timed out");
    }
}

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    if let Ok(v) = ctype.parse() {
        h.insert("content-type", v);
    }
    for (k, v) in policy::SECURITY_HEADERS {
        if let Ok(v) = v.parse() {
            h.insert(*k, v);
        }
    }
    r
}

fn text(status: StatusCode, body: &'static str) -> Resp {
    respond(status, "text/plain; charset=utf-8", body)
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn cookie_session(
    state: &GatewayState,
    req: &Request<Incoming>,
    place: &Place,
) -> Option<SessionId> {
    let value = header(req, "cookie").and_then(cookie::session_value)?;
    state.web.session(value, generation(state)?, place.owner())
}

/// The Host, Origin and scope rules of a page route at `place`; `Some(answer)` refuses.
fn page_gate(
    state: &GatewayState,
    req: &Request<Incoming>,
    route: policy::Route,
    place: &Place,
) -> Option<Resp> {
    use policy::Route;
    let origin = header(req, "origin");
    match place {
        Place::Other => Some(text(StatusCode::NOT_FOUND, "Not Found")),
        Place::Loopback(_) if route == Route::TunnelLogin => {
            Some(text(StatusCode::NOT_FOUND, "Not Found"))
        }
        Place::Loopback(port) => {
            if !policy::host_allowed(header(req, "host"), *port) {
                return Some(text(
                    StatusCode::MISDIRECTED_REQUEST,
                    "Host not allowed: open the control page as http://127.0.0.1:PORT (claw dashboard)",
                ));
            }
            // A state change must come from the page itself.
            (matches!(route, Route::Login | Route::Logout) && !policy::own_origin(origin, *port))
                .then(|| text(StatusCode::FORBIDDEN, "Origin not allowed"))
        }
        Place::Device(d) => {
            let Some(own) = policy::tunnel_host(header(req, "host")) else {
                return Some(text(
                    StatusCode::MISDIRECTED_REQUEST,
                    "Host not allowed: open the control page at the device's own loopback address (claw tunnel dashboard)",
                ));
            };
            // Strict mode wants a device's token or signature on every tunnelled client; the
            // page has neither, so it stays on the gateway host.
            if state.config.strict_device_auth {
                return Some(text(
                    StatusCode::FORBIDDEN,
                    "with --strict-device-auth the control page is served on the gateway host only (claw dashboard there)",
                ));
            }
            if admin_device_scopes(state, d).is_none() {
                return Some(text(
                    StatusCode::FORBIDDEN,
                    "this device does not hold operator.admin: the control page is not served to it",
                ));
            }
            let refused = match route {
                Route::Login | Route::Logout => !policy::same_origin(origin, &own),
                // A program on the device, never a page in its browser (see TUNNEL_LOGIN_HEADER).
                Route::TunnelLogin => {
                    origin.is_some() || header(req, policy::TUNNEL_LOGIN_HEADER) != Some("1")
                }
                _ => false,
            };
            refused.then(|| text(StatusCode::FORBIDDEN, "Origin not allowed"))
        }
    }
}

async fn handle(state: &Arc<GatewayState>, req: Request<Incoming>, place: &Place) -> Resp {
    use policy::Route;
    let route = policy::route(req.method().as_str(), req.uri().path());
    if policy::is_page(route) {
        if let Some(refusal) = page_gate(state, &req, route, place) {
            return refusal;
        }
    }
    match route {
        Route::Health => respond(
            StatusCode::OK,
            "application/json",
            r#"{"ok":true,"status":"live"}"#,
        ),
        Route::Ready => respond(
            StatusCode::OK,
            "application/json",
            r#"{"ready":true,"failing":[]}"#,
        ),
        Route::Startup => respond(
            StatusCode::OK,
            "application/json",
            r#"{"ok":true,"status":"started"}"#,
        ),
        Route::Page => match cookie_session(state, &req, place) {
            Some(_) => respond(StatusCode::OK, "text/html; charset=utf-8", assets::INDEX),
            None => {
                let mut r = text(StatusCode::SEE_OTHER, "log in: run claw dashboard");
                if let Ok(v) = "/login".parse() {
                    r.headers_mut().insert("location", v);
                }
                r
            }
        },
        Route::LoginPage => respond(StatusCode::OK, "text/html; charset=utf-8", assets::LOGIN),
        Route::Asset(i) => {
            let a = &assets::ASSETS[i];
            respond(StatusCode::OK, a.content_type, a.body)
        }
        Route::Login => login(state, req, place).await,
        Route::TunnelLogin => tunnel_login(state, place),
        Route::Logout => {
            if let Some(id) = cookie_session(state, &req, place) {
                lock(&state.web.sessions).end(id);
                sweep(state);
                crate::store::off_worker(|| {
                    state.audit(
                        "dashboard.logout",
                        place.owner(),
                        Some(place.audit_name()),
                        "",
                    )
                });
            }
            let mut r = respond(StatusCode::NO_CONTENT, "text/plain", "");
            if let Ok(v) = cookie::clear_session().parse() {
                r.headers_mut().insert("set-cookie", v);
            }
            r
        }
        Route::NotFound => text(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// `POST /api/tunnel-login` through an admin device's tunnel (the gate checked the device and
/// the request): a one-time code owned by that device, `{code, expiresAtMs}`; the device builds
/// the link on its own loopback address.
fn tunnel_login(state: &GatewayState, place: &Place) -> Resp {
    let Place::Device(d) = place else {
        return text(StatusCode::NOT_FOUND, "Not Found");
    };
    let (code, expires) = lock(&state.web.codes).mint(crate::now_ms(), Some(d.clone()));
    crate::store::off_worker(|| state.audit("dashboard.code.created", Some(d), Some("tunnel"), ""));
    let body = json!({"code": code, "expiresAtMs": expires}).to_string();
    respond(StatusCode::OK, "application/json", body)
}

async fn login(state: &Arc<GatewayState>, req: Request<Incoming>, place: &Place) -> Resp {
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
    };
    let code = String::from_utf8_lossy(&body).trim().to_string();
    let ok = lock(&state.web.codes).redeem(&code, crate::now_ms(), place.owner());
    if !ok {
        tracing::info!("dashboard login refused (code used, wrong or expired)");
        return text(
            StatusCode::UNAUTHORIZED,
            "This login link was already used, is wrong or has expired: run `claw dashboard` again.",
        );
    }
    let Some(g) = generation(state) else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the gateway's state store is unavailable (run claw doctor)",
        );
    };
    let owner = place.owner().map(str::to_string);
    let value = lock(&state.web.sessions).start(crate::now_ms(), g, owner);
    crate::store::off_worker(|| {
        state.audit(
            "dashboard.login",
            place.owner(),
            Some(place.audit_name()),
            "",
        )
    });
    let mut r = respond(StatusCode::NO_CONTENT, "text/plain", "");
    let max_age = login::SESSION_TTL_MS / 1000;
    if let Ok(v) = cookie::set_session(&value, max_age).parse() {
        r.headers_mut().insert("set-cookie", v);
    }
    r
}
