//! The IO shell of upstream mode: one upstream WebSocket per downstream session, opened after
//! the client's `hello-ok`, re-opened when the upstream drops (restart, 1012) while the
//! downstream socket stays open. The decisions live in the pure modules next to this one.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::backlog::{Backlog, Reserved};
use super::handshake::{self, Refusal, Secret};
use super::identity::{name_for, pick, StoredToken};
use super::inbound::{self, Inbound};
use super::{Features, Upstream};
use crate::protocol::frames::ErrorShape;
use crate::state::{GatewayState, Outbound};

/// How long a call waits for an upstream session that is (re)connecting.
pub const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// Time for one upstream connect (TCP, upgrade, challenge, `connect` answered).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Reconnect rounds after the upstream was lost, before the session stops trying (about ten
/// minutes at the 5 s backoff cap); the downstream socket stays open and its calls fail
/// retryable.
const MAX_ROUNDS: u32 = 120;

type UpWs = WebSocketStream<TcpStream>;

/// The upstream session's state as callers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LinkState {
    Connecting,
    Up,
    Down(String),
}

/// A downstream session's upstream: [`UpstreamHandle::forward`] sends a request; responses and
/// events arrive on the session's own outbound queue. Dropping it closes the upstream socket.
#[derive(Debug)]
pub struct UpstreamHandle {
    to_up: mpsc::Sender<String>,
    down: tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Reserved)>>,
    slow: watch::Receiver<bool>,
    in_flight: Arc<Mutex<HashSet<String>>>,
    buffered: Arc<AtomicUsize>,
    state: watch::Receiver<LinkState>,
    upstream: Arc<Upstream>,
    role: String,
    scopes: Vec<String>,
    task: tokio::task::JoinHandle<()>,
}

/// What the session's request loop does with a request in upstream mode.
#[derive(Debug)]
pub enum Handled {
    /// claw answers it (a method claw owns).
    Claw,
    /// Sent upstream; the answer arrives on the session's queue.
    Sent,
    /// Refused or not carried: send this error response.
    Reply(String),
}

impl Drop for UpstreamHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Who the downstream client is, as the upstream session needs it.
pub struct Client {
    /// The client's `connect` params as received.
    pub connect: Value,
    /// The role claw granted.
    pub role: String,
    /// The scopes claw granted.
    pub scopes: Vec<String>,
    /// The verified device (`None`: the shared token without a device).
    pub device_id: Option<String>,
}

/// Opens the upstream session of a downstream session whose outbound queue is `tx`. When the
/// device holds its share of upstream sessions already, the handle's forwarded calls fail
/// retryable. `None` only for a device id claw's auth never produces.
pub fn open(
    state: &Arc<GatewayState>,
    upstream: &Arc<Upstream>,
    client: Client,
    tx: mpsc::UnboundedSender<Outbound>,
) -> Option<UpstreamHandle> {
    name_for(client.device_id.as_deref())?;
    let (to_up, rx) = mpsc::channel(super::MAX_IN_FLIGHT);
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let buffered = Arc::new(AtomicUsize::new(0));
    let (role, scopes) = (client.role.clone(), client.scopes.clone());
    let (down_tx, down_rx) = mpsc::unbounded_channel();
    let (slow_tx, slow_rx) = watch::channel(false);
    let picked = pick(client.device_id.as_deref(), |n| {
        upstream.per_device.try_take(n.to_string())
    });
    let Some((name, slot)) = picked else {
        // Over the device's share: its forwarded calls fail retryable, claw's own still work.
        let why = match client.device_id {
            Some(_) => format!(
                "this device holds {} upstream sessions already",
                super::MAX_SESSIONS_PER_DEVICE
            ),
            None => format!(
                "clients without a device hold {} upstream sessions already",
                super::MAX_SESSIONS_PER_DEVICE * super::identity::OPERATOR_POOL
            ),
        };
        let (_, state_rx) = watch::channel(LinkState::Down(why));
        return Some(UpstreamHandle {
            to_up,
            down: tokio::sync::Mutex::new(down_rx),
            slow: slow_rx,
            in_flight,
            buffered,
            state: state_rx,
            upstream: upstream.clone(),
            role,
            scopes,
            task: tokio::spawn(async {}),
        });
    };
    let (state_tx, state_rx) = watch::channel(LinkState::Connecting);
    let task = tokio::spawn(run(
        state.clone(),
        upstream.clone(),
        Session {
            // The share above is the device's; the identity upstream is per role.
            name: super::identity::for_role(&name, &client.role),
            client,
            rx,
            tx,
            down: down_tx,
            backlog: Backlog::new(super::MAX_DOWNSTREAM_BACKLOG),
            slow: slow_tx,
            in_flight: in_flight.clone(),
            buffered: buffered.clone(),
            state: state_tx,
            _slot: slot,
        },
    ));
    Some(UpstreamHandle {
        to_up,
        down: tokio::sync::Mutex::new(down_rx),
        slow: slow_rx,
        in_flight,
        buffered,
        state: state_rx,
        upstream: upstream.clone(),
        role,
        scopes,
        task,
    })
}

/// What the downstream socket does next with its upstream session ([`UpstreamHandle::next`]).
#[derive(Debug)]
pub enum Down {
    /// Send this upstream frame; drop the [`Reserved`] once it is sent (the backlog's bytes).
    Frame(String, Reserved),
    /// The client is a slow consumer: close it ([`slow_consumer_close`]).
    Slow,
}

/// The close of a slow consumer: 1013 and `slow consumer` (see [`super::backlog`]).
pub fn slow_consumer_close() -> (u16, String) {
    (
        claw_proto::close::CLOSE_TRY_AGAIN_LATER,
        claw_proto::CloseReason::SlowConsumer.to_string(),
    )
}

impl UpstreamHandle {
    /// The next upstream frame for the downstream socket, or [`Down::Slow`] as soon as the
    /// backlog overflowed. Pending forever while neither happens (also after the upstream
    /// session ended). Cancel-safe: the session's loop selects on it.
    pub async fn next(&self) -> Down {
        let mut slow = self.slow.clone();
        let slowed = async move { slow.wait_for(|s| *s).await.map(|_| ()) };
        let mut down = self.down.lock().await;
        tokio::select! {
            biased;
            Ok(()) = slowed => Down::Slow,
            Some((t, r)) = down.recv() => Down::Frame(t, r),
            else => std::future::pending().await,
        }
    }

    /// Resolves once the client became a slow consumer (a send to it that blocks is abandoned
    /// then: the session closes).
    pub async fn slowed(&self) {
        let mut slow = self.slow.clone();
        let gone = slow.wait_for(|s| *s).await.map(|_| ()).is_err();
        if gone {
            std::future::pending::<()>().await;
        }
    }

    /// Routes one downstream request ([`super::route::route`]): claw's own, refused by claw's
    /// scope check, or forwarded as received.
    pub async fn handle(&self, req: &crate::protocol::frames::Request, text: &str) -> Handled {
        use super::route::{route, Route};
        use crate::protocol::frames::response_err;
        match route(&req.method, &req.params, &self.role, &self.scopes) {
            Route::Claw => Handled::Claw,
            Route::Refuse(e) => Handled::Reply(response_err(&req.id, &e)),
            Route::Upstream => match self.forward(&req.id, text).await {
                Ok(()) => Handled::Sent,
                Err(e) => Handled::Reply(response_err(&req.id, &e)),
            },
        }
    }

    /// Sends the downstream request `id` (its frame `text`, as received) upstream. Waits up to
    /// [`CONNECT_WAIT`] while the upstream session (re)connects; an error is the reply to send.
    pub async fn forward(&self, id: &str, text: &str) -> Result<(), ErrorShape> {
        let url = &self.upstream.config.url;
        let mut st = self.state.clone();
        let ready =
            tokio::time::timeout(CONNECT_WAIT, st.wait_for(|s| *s != LinkState::Connecting))
                .await
                .ok()
                .and_then(|r| r.ok().map(|s| s.clone()));
        match ready {
            Some(LinkState::Up) => {}
            Some(LinkState::Down(why)) => return Err(super::unavailable(url, &why)),
            _ => return Err(super::unavailable(url, "still connecting")),
        }
        if id.is_empty() || id.len() > 256 {
            return Err(ErrorShape::new(
                crate::protocol::codes::INVALID_REQUEST,
                "request id must be a string of 1 to 256 characters",
            ));
        }
        let len = text.len();
        if self.buffered.load(Ordering::Relaxed) + len > super::MAX_BUFFERED_BYTES {
            return Err(super::unavailable(
                url,
                "too many bytes queued for the upstream",
            ));
        }
        {
            let mut f = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            if f.len() >= super::MAX_IN_FLIGHT {
                return Err(super::unavailable(url, "too many requests in flight"));
            }
            if !f.insert(id.to_string()) {
                return Err(ErrorShape::new(
                    crate::protocol::codes::INVALID_REQUEST,
                    "a request with this id is already in flight",
                ));
            }
        }
        self.buffered.fetch_add(len, Ordering::Relaxed);
        if self.to_up.try_send(text.to_string()).is_err() {
            self.buffered.fetch_sub(len, Ordering::Relaxed);
            self.in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id);
            return Err(super::unavailable(url, "the upstream session is busy"));
        }
        Ok(())
    }
}

struct Session {
    name: String,
    client: Client,
    rx: mpsc::Receiver<String>,
    tx: mpsc::UnboundedSender<Outbound>,
    /// Upstream frames for the downstream socket, each holding its bytes of `backlog`.
    down: mpsc::UnboundedSender<(String, Reserved)>,
    backlog: Backlog,
    slow: watch::Sender<bool>,
    in_flight: Arc<Mutex<HashSet<String>>>,
    buffered: Arc<AtomicUsize>,
    state: watch::Sender<LinkState>,
    _slot: crate::limits::Slot<String>,
}

struct Counted(Arc<AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn run(state: Arc<GatewayState>, up: Arc<Upstream>, mut s: Session) {
    up.sessions.fetch_add(1, Ordering::Relaxed);
    let _counted = Counted(up.sessions.clone());
    let mut round = 0u32;
    while round < MAX_ROUNDS {
        s.state.send_replace(LinkState::Connecting);
        match connect(&state, &up, &s.name, &s.client).await {
            Ok(ws) => {
                round = 0;
                s.state.send_replace(LinkState::Up);
                let why = pump(ws, &mut s).await;
                let Some(why) = why else { return };
                tracing::info!(upstream = %up.config.url, why = %why, "upstream session lost; reconnecting");
                fail_in_flight(&up, &s, &why);
                s.state.send_replace(LinkState::Down(why));
            }
            Err(why) => {
                fail_in_flight(&up, &s, &why);
                s.state.send_replace(LinkState::Down(why));
            }
        }
        tokio::time::sleep(handshake::backoff(round)).await;
        round += 1;
        // Requests that raced the loss are answered, not sent to a new session blind.
        while let Ok(text) = s.rx.try_recv() {
            s.buffered.fetch_sub(text.len(), Ordering::Relaxed);
        }
        fail_in_flight(&up, &s, "reconnecting");
        if s.tx.is_closed() {
            return;
        }
    }
}

/// Answers every request in flight with a retryable `UNAVAILABLE` naming the upstream.
fn fail_in_flight(up: &Upstream, s: &Session, why: &str) {
    let ids: Vec<String> = s
        .in_flight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .collect();
    let e = super::unavailable(&up.config.url, why);
    for id in ids {
        let _ =
            s.tx.send(Outbound::Text(crate::protocol::frames::response_err(
                &id, &e,
            )));
    }
}

/// Carries frames both ways until the upstream goes (`Some(why)`) or the downstream session
/// ends (`None`).
async fn pump(mut ws: UpWs, s: &mut Session) -> Option<String> {
    loop {
        tokio::select! {
            out = s.rx.recv() => {
                let text = out?;
                s.buffered.fetch_sub(text.len(), Ordering::Relaxed);
                if let Err(e) = ws.send(Message::Text(text.into())).await {
                    return Some(format!("send failed: {e}"));
                }
            }
            msg = ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    // OpenClaw sends text only, and reads any frame as UTF-8 text; a binary frame
                    // holding UTF-8 is carried as that text, anything else dropped.
                    Some(Ok(Message::Binary(b))) => match inbound::binary_text(b) {
                        Some(t) => t,
                        None => continue,
                    },
                    Some(Ok(Message::Close(f))) => {
                        let _ = ws.close(None).await;
                        return Some(match f {
                            Some(f) => format!("closed {} {}", u16::from(f.code), crate::text::escape(&f.reason)),
                            None => "closed".to_string(),
                        });
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Some(format!("read failed: {e}")),
                    None => return Some("connection lost".into()),
                };
                let out = match inbound::classify(&text) {
                    Inbound::Response(id) => {
                        let known = s.in_flight.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                        if !known { continue; }
                        text.to_string()
                    }
                    Inbound::Event(t) => t,
                    Inbound::Shutdown | Inbound::Drop => continue,
                };
                let Some(held) = s.backlog.try_reserve(out.len()) else {
                    tracing::warn!(
                        queued = s.backlog.queued(),
                        frame = out.len(),
                        "downstream client is a slow consumer; closing it"
                    );
                    s.slow.send_replace(true);
                    let _ = ws.close(None).await;
                    return None;
                };
                if s.down.send((out, held)).is_err() {
                    return None;
                }
            }
            _ = s.tx.closed() => return None,
        }
    }
}

/// One (re)connect: the secrets in order ([`handshake::plan`]), single-flight per device, the
/// refusals absorbed (a refused device token forgotten, the shared token re-read) and audited.
async fn connect(
    state: &Arc<GatewayState>,
    up: &Arc<Upstream>,
    name: &str,
    client: &Client,
) -> Result<UpWs, String> {
    let lock = up.device_lock(name);
    let _one = lock.lock().await;
    let key = up
        .identities
        .key(name)
        .map_err(|e| format!("upstream key: {e}"))?;
    let shared = up.config.credential.read();
    // The device token covers the role it was issued for and its scopes; asking more of it
    // would be refused, so the shared token goes first then (it re-pairs with the new scopes).
    let stored = up.identities.token(name).filter(|t| {
        t.role == client.role
            && (shared.is_err() || claw_proto::scopes::is_subset(&client.scopes, &t.scopes))
    });
    let shared_err = shared.as_ref().err().map(|e| e.to_string());
    let plan = handshake::plan(stored.map(|t| t.device_token), shared.ok());
    if plan.is_empty() {
        let why = shared_err.unwrap_or_else(|| "no upstream credential".into());
        up.note_error(false, &why);
        return Err(why);
    }
    let mut refused: Vec<String> = Vec::new();
    for secret in &plan {
        match attempt(up, &key, client, secret).await {
            Ok((ws, hello)) => {
                after_hello(up, name, client, &hello);
                if !refused.is_empty() {
                    up.repairs.fetch_add(1, Ordering::Relaxed);
                    let detail = format!(
                        "re-paired upstream {} after: {}",
                        up.config.url,
                        refused.join("; ")
                    );
                    tracing::info!(device = name, "{detail}");
                    let device = client.device_id.clone();
                    crate::store::off_worker(|| {
                        state.audit(
                            "upstream.repaired",
                            device.as_deref(),
                            Some("upstream"),
                            &detail,
                        )
                    });
                }
                return Ok(ws);
            }
            Err(Attempt::Unreachable(why)) => {
                up.note_error(false, &why);
                return Err(why);
            }
            Err(Attempt::Refused(e)) => {
                let class = handshake::classify(&e, secret);
                let what = match secret {
                    Secret::Shared(_) => "shared token",
                    Secret::DeviceToken(_) => "device token",
                };
                refused.push(format!("{what} refused ({class:?})"));
                match class {
                    Refusal::DeviceToken => up.identities.clear_token(name),
                    Refusal::Busy(d) => {
                        let why = "upstream starting".to_string();
                        up.note_error(true, &why);
                        tokio::time::sleep(d).await;
                        return Err(why);
                    }
                    _ => {}
                }
            }
        }
    }
    let mut why = format!("upstream refused claw: {}", refused.join("; "));
    if let Some(e) = shared_err {
        why.push_str(&format!("; {e}"));
    }
    if up.last_error().as_deref() != Some(why.as_str()) {
        let device = client.device_id.clone();
        crate::store::off_worker(|| {
            state.audit(
                "upstream.refused",
                device.as_deref(),
                Some("upstream"),
                &why,
            )
        });
    }
    up.note_error(true, &why);
    Err(why)
}

enum Attempt {
    Unreachable(String),
    Refused(ErrorShape),
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(super::MAX_UPSTREAM_MESSAGE))
        .max_frame_size(Some(super::MAX_UPSTREAM_MESSAGE))
}

/// One connect with one secret: TCP, upgrade, challenge, signed `connect`, its answer.
async fn attempt(
    up: &Upstream,
    key: &claw_proto::DeviceKey,
    client: &Client,
    secret: &Secret,
) -> Result<(UpWs, Value), Attempt> {
    let url = &up.config.url;
    let go = async {
        let tcp = TcpStream::connect(url.addr)
            .await
            .map_err(|e| Attempt::Unreachable(format!("cannot connect to {url}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(url.to_ws(), tcp, Some(ws_config()))
                .await
                .map_err(|e| {
                    Attempt::Unreachable(format!("{url}: WebSocket upgrade failed: {e}"))
                })?;
        let (nonce, ts) = loop {
            match next_json(&mut ws).await {
                Some(v) if v["type"] == "event" && v["event"] == "connect.challenge" => {
                    let nonce = v["payload"]["nonce"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let ts = v["payload"]["ts"].as_u64().unwrap_or_else(crate::now_ms);
                    break (nonce, ts);
                }
                Some(_) => continue,
                None => return Err(Attempt::Unreachable(format!("{url}: no connect.challenge"))),
            }
        };
        let params = handshake::upstream_connect(
            &client.connect,
            &client.role,
            &client.scopes,
            secret,
            key,
            &nonce,
            ts,
        );
        let req = json!({"type": "req", "id": "claw-upstream-connect", "method": "connect", "params": params});
        ws.send(Message::Text(req.to_string().into()))
            .await
            .map_err(|e| Attempt::Unreachable(format!("{url}: {e}")))?;
        loop {
            match next_json(&mut ws).await {
                Some(v) if v["type"] == "res" && v["id"] == "claw-upstream-connect" => {
                    if v["ok"] == true {
                        return Ok((ws, v["payload"].clone()));
                    }
                    let e = ErrorShape::from_wire(&v["error"]);
                    let _ = ws.close(None).await;
                    return Err(Attempt::Refused(e));
                }
                Some(_) => continue,
                None => {
                    return Err(Attempt::Unreachable(format!(
                        "{url}: closed during connect"
                    )))
                }
            }
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, go).await {
        Ok(r) => r,
        Err(_) => Err(Attempt::Unreachable(format!("{url}: connect timed out"))),
    }
}

/// One round trip to the upstream as a client sees it before it authenticates: TCP, the
/// WebSocket upgrade and OpenClaw's `connect.challenge` (what `claw channels status --probe`
/// times). Bounded by `limit`; the error says what failed.
pub async fn challenge_rtt(url: &super::UpstreamUrl, limit: Duration) -> Result<Duration, String> {
    let t = std::time::Instant::now();
    let go = async {
        let tcp = TcpStream::connect(url.addr)
            .await
            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(url.to_ws(), tcp, Some(ws_config()))
                .await
                .map_err(|e| format!("{url}: WebSocket upgrade failed: {e}"))?;
        let seen = loop {
            match next_json(&mut ws).await {
                Some(v) if v["type"] == "event" && v["event"] == "connect.challenge" => break true,
                Some(_) => continue,
                None => break false,
            }
        };
        let _ = ws.close(None).await;
        if seen {
            Ok(t.elapsed())
        } else {
            Err(format!("{url}: closed before its connect.challenge"))
        }
    };
    match tokio::time::timeout(limit, go).await {
        Ok(r) => r,
        Err(_) => Err(format!("{url}: no connect.challenge within {limit:?}")),
    }
}

/// The next JSON text frame (bounded by the connect timeout around it); `None` when closed.
async fn next_json(ws: &mut UpWs) -> Option<Value> {
    for _ in 0..64 {
        match ws.next().await? {
            Ok(Message::Text(t)) => {
                if let Ok(v) = serde_json::from_str::<Value>(&t) {
                    return Some(v);
                }
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    None
}

/// Keeps what the upstream's `hello-ok` says: the device token it issued, its features.
fn after_hello(up: &Upstream, name: &str, client: &Client, hello: &Value) {
    if let Some(t) = hello["auth"]["deviceToken"].as_str() {
        let stored = StoredToken {
            device_token: t.to_string(),
            role: client.role.clone(),
            scopes: hello["auth"]["scopes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_else(|| client.scopes.clone()),
            issued_at_ms: hello["auth"]["issuedAtMs"]
                .as_u64()
                .unwrap_or_else(crate::now_ms),
        };
        if up.identities.token(name).as_ref() != Some(&stored) {
            if let Err(e) = up.identities.set_token(name, &stored) {
                tracing::warn!(error = %e, "cannot store the upstream device token");
            }
        }
    }
    let list = |k: &str| -> Vec<String> {
        hello["features"][k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .filter(|s| s.len() <= 200)
                    .take(4096)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let features = hello.get("features").map(|_| Features {
        methods: list("methods"),
        events: list("events"),
    });
    up.note_ok(features);
}

/// Connects once as claw's operator identity with `operator.read` to learn the upstream's
/// features and health (at start, so the first clients' `hello-ok` lists them). Bounded retries.
pub async fn probe(state: Arc<GatewayState>, up: Arc<Upstream>) {
    let client = Client {
        connect: json!({"client": {"id": "gateway-client", "version": crate::VERSION,
                        "platform": "linux", "mode": "backend"}}),
        role: "operator".into(),
        scopes: vec![claw_proto::scopes::READ.to_string()],
        device_id: None,
    };
    for round in 0..60u32 {
        match connect(&state, &up, super::identity::OPERATOR, &client).await {
            Ok(mut ws) => {
                let _ = ws.close(None).await;
                return;
            }
            Err(why) => {
                tracing::warn!(upstream = %up.config.url, why = %why, "upstream not serving yet")
            }
        }
        tokio::time::sleep(handshake::backoff(round)).await;
    }
}
