//! The resilient client: one supervisor task runs the pure [`Machine`](crate::state::Machine)
//! and carries out its actions; each session has a reader task (dispatching responses by id to
//! the waiting callers, events to the host) and a writer task. Calls wait for a session, are
//! sent on it, and fail with a typed error — never hang past their deadline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::backoff::BackoffPolicy;
use crate::credentials::{CredentialChain, CredentialSource};
use crate::error::{AuthFailure, ClientError, RefreshError};
use crate::refresh::{Credential, Refresher};
use crate::session::{self, ConnectOptions, OpenError, Ws};
use crate::state::{self, Action, Input, LogLevel, Machine, Status};
use claw_proto::CloseReason;

use crate::wire::{self, Incoming, RemoteError};

type PersistHook = Arc<dyn Fn(&String) -> Result<(), String> + Send + Sync>;

/// How a [`Client`] connects, refreshes and retries.
#[derive(Clone)]
pub struct ClientConfig {
    /// URL, initial token, device key, role, scopes, client id, per-step handshake timeout.
    pub connect: ConnectOptions,
    /// Default deadline of a call, including any wait for a session.
    pub request_timeout: Duration,
    /// Reconnect backoff (full jitter).
    pub backoff: BackoffPolicy,
    /// A session up this long resets the backoff when it ends.
    pub stable_after: Duration,
    /// Capacity of the event channel (slow receivers lose the oldest events).
    pub event_capacity: usize,
    sources: Vec<Arc<dyn CredentialSource>>,
    on_new_token: Option<PersistHook>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.connect.url)
            .field("device", &self.connect.device)
            .field("sources", &self.sources)
            .field("request_timeout", &self.request_timeout)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Defaults: 30 s calls, 500 ms → 30 s backoff, stable after 30 s, no refresh source
    /// (a static token: on rotation the client goes to `auth_failed`).
    pub fn new(connect: ConnectOptions) -> Self {
        Self {
            connect,
            request_timeout: Duration::from_secs(30),
            backoff: BackoffPolicy::default(),
            stable_after: Duration::from_secs(30),
            event_capacity: 1024,
            sources: Vec::new(),
            on_new_token: None,
        }
    }

    /// Appends a re-pair source; sources are tried in the order added.
    pub fn refresh_source(mut self, s: impl CredentialSource + 'static) -> Self {
        self.sources.push(Arc::new(s));
        self
    }

    /// Appends a shared re-pair source (e.g. one the host also inspects).
    pub fn refresh_source_arc(mut self, s: Arc<dyn CredentialSource>) -> Self {
        self.sources.push(s);
        self
    }

    /// Persists every token obtained by re-pairing (e.g. writes it 0600 to the host's home).
    pub fn on_new_token(
        mut self,
        hook: impl Fn(&String) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.on_new_token = Some(Arc::new(hook));
        self
    }

    /// Sets the default call deadline.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// Sets the backoff policy.
    pub fn backoff(mut self, p: BackoffPolicy) -> Self {
        self.backoff = p;
        self
    }

    /// Sets how long a session must last to reset the backoff.
    pub fn stable_after(mut self, d: Duration) -> Self {
        self.stable_after = d;
        self
    }
}

/// Options of one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// Safe to send twice: if the session dies while it is on the wire, replay it once on the
    /// next session instead of failing with [`ClientError::Interrupted`].
    pub idempotent: bool,
    /// Deadline of this call (default: [`ClientConfig::request_timeout`]).
    pub timeout: Option<Duration>,
}

/// An event the gateway sent (`tick`, `shutdown`, `device.pair.requested`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `event`.
    pub name: String,
    /// `payload`.
    pub payload: Value,
    /// `seq`, for broadcast events.
    pub seq: Option<u64>,
}

/// What callers see of the supervisor's state.
#[derive(Clone)]
enum Link {
    Waiting,
    Up(Arc<Conn>),
    Failed(AuthFailure),
    Closed,
}

enum Command {
    SetToken(String, oneshot::Sender<()>),
    Close(oneshot::Sender<()>),
}

/// A handle on the resilient client. Cheap to clone; the client stops when the last handle is
/// dropped or [`close`](Client::close) is called.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

struct Shared {
    cmd: mpsc::UnboundedSender<Command>,
    link: watch::Receiver<Link>,
    status: watch::Receiver<Status>,
    events: broadcast::Sender<Event>,
    refresher: Refresher<String>,
    request_timeout: Duration,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("status", &*self.shared.status.borrow())
            .finish_non_exhaustive()
    }
}

/// Most sessions one call is tried on (a replay, sends racing a session's death).
const MAX_ROUNDS: usize = 8;

impl Client {
    /// Starts the client (spawns its supervisor on the current tokio runtime) and returns at
    /// once; watch [`status`](Client::status) or call [`wait_connected`](Client::wait_connected).
    ///
    /// # Panics
    /// When called outside a tokio runtime (like `tokio::spawn`).
    pub fn start(cfg: ClientConfig) -> Self {
        let chain = CredentialChain::new(cfg.sources.clone());
        let can_refresh = !chain.is_empty();
        let mut refresher = Refresher::new(cfg.connect.token.clone().unwrap_or_default());
        if can_refresh {
            refresher = refresher.with_source(chain);
        }
        if let Some(hook) = cfg.on_new_token.clone() {
            refresher = refresher.on_refreshed(move |t: &String| hook(t));
        }
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (link_tx, link_rx) = watch::channel(Link::Waiting);
        let (status_tx, status_rx) = watch::channel(Status::Connecting);
        let (events, _) = broadcast::channel(cfg.event_capacity.max(1));
        let machine = Machine::new(
            state::Config {
                backoff: cfg.backoff,
                stable_after: cfg.stable_after,
                can_refresh,
                log_window: Duration::from_secs(60),
            },
            fastrand::u64(..),
        );
        let sup = Supervisor {
            options: cfg.connect.clone(),
            machine,
            refresher: refresher.clone(),
            link: link_tx,
            status: status_tx,
            events: events.clone(),
            internal: mpsc::unbounded_channel(),
            current: None,
            attempt: 0,
            connect_task: None,
            repair_task: None,
            stale_generation: 0,
            close_ack: None,
        };
        tokio::spawn(sup.run(cmd_rx));
        Self {
            shared: Arc::new(Shared {
                cmd: cmd_tx,
                link: link_rx,
                status: status_rx,
                events,
                refresher,
                request_timeout: cfg.request_timeout,
                next_id: AtomicU64::new(0),
            }),
        }
    }

    /// Status changes: `connecting`, `connected`, `re-pairing`, `backing_off`, `auth_failed`,
    /// `closed`.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.shared.status.clone()
    }

    /// Gateway events from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// The token the client presents now (after any re-pair), if it has one and is not in
    /// `auth_failed`.
    pub fn token(&self) -> Option<String> {
        self.shared
            .refresher
            .current()
            .ok()
            .map(|c| c.token)
            .filter(|t| !t.is_empty())
    }

    /// The current session's `hello-ok` payload, when connected.
    pub fn hello(&self) -> Option<Value> {
        match &*self.shared.link.borrow() {
            Link::Up(c) => Some(c.hello.clone()),
            _ => None,
        }
    }

    /// The host supplies a new token: leaves `auth_failed` (or cuts a backoff short) and
    /// connects with it. Returns once the client has taken it (the status has left
    /// `auth_failed`).
    pub async fn set_token(&self, token: impl Into<String>) {
        let (tx, rx) = oneshot::channel();
        if self
            .shared
            .cmd
            .send(Command::SetToken(token.into(), tx))
            .is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
    }

    /// Waits until the client is connected (`Ok`), in `auth_failed` or closed (`Err`), or
    /// `timeout` passes ([`ClientError::Timeout`]).
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), ClientError> {
        let mut rx = self.status();
        let r = tokio::time::timeout(
            timeout,
            rx.wait_for(|s| {
                matches!(
                    s,
                    Status::Connected | Status::AuthFailed(_) | Status::Closed
                )
            }),
        )
        .await;
        match r {
            Err(_) => Err(ClientError::Timeout),
            Ok(Err(_)) => Err(ClientError::ClientClosed),
            Ok(Ok(s)) => match &*s {
                Status::Connected => Ok(()),
                Status::AuthFailed(f) => Err(ClientError::AuthFailed(f.clone())),
                _ => Err(ClientError::ClientClosed),
            },
        }
    }

    /// Calls `method` (not idempotent: if the session dies while it is on the wire, the call
    /// fails with the retryable [`ClientError::Interrupted`]).
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        self.call_with(method, params, CallOptions::default()).await
    }

    /// Calls an idempotent `method`: replayed once on the next session if its session dies
    /// while it is on the wire.
    pub async fn call_idempotent(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let o = CallOptions {
            idempotent: true,
            timeout: None,
        };
        self.call_with(method, params, o).await
    }

    /// Calls `method` with options. Waits for a session (through reconnects and a re-pair) until
    /// the deadline; fails at once in `auth_failed` or after `close`.
    pub async fn call_with(
        &self,
        method: &str,
        params: Value,
        o: CallOptions,
    ) -> Result<Value, ClientError> {
        let deadline =
            tokio::time::Instant::now() + o.timeout.unwrap_or(self.shared.request_timeout);
        let mut link = self.shared.link.clone();
        let mut replayed = false;
        for _ in 0..MAX_ROUNDS {
            let conn = wait_link(&mut link, deadline).await?;
            let n = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
            let id = format!("{n}:{}", uuid::Uuid::new_v4().simple());
            match conn.request(&id, method, &params, deadline).await {
                Ok(v) => return Ok(v),
                Err(SendError::Remote(e)) => {
                    return Err(ClientError::Rejected {
                        code: e.code,
                        message: e.message,
                        details: e.details,
                    })
                }
                Err(SendError::Timeout) => return Err(ClientError::Timeout),
                // Never reached the socket: send it on the next session.
                Err(SendError::NotSent) => continue,
                Err(SendError::Lost(code, reason)) => {
                    if o.idempotent && !replayed {
                        replayed = true;
                        continue;
                    }
                    return Err(ClientError::Interrupted { code, reason });
                }
            }
        }
        Err(ClientError::Timeout)
    }

    /// Closes the client: the session is closed normally, waiting calls fail with
    /// [`ClientError::ClientClosed`], the status becomes `closed`.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.shared.cmd.send(Command::Close(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
        }
    }
}

/// Waits (until `deadline`) for a live session, or a terminal state.
async fn wait_link(
    link: &mut watch::Receiver<Link>,
    deadline: tokio::time::Instant,
) -> Result<Arc<Conn>, ClientError> {
    loop {
        let l = link.borrow_and_update().clone();
        match l {
            Link::Up(c) if c.alive() => return Ok(c),
            Link::Up(_) | Link::Waiting => {}
            Link::Failed(f) => return Err(ClientError::AuthFailed(f)),
            Link::Closed => return Err(ClientError::ClientClosed),
        }
        match tokio::time::timeout_at(deadline, link.changed()).await {
            Err(_) => return Err(ClientError::Timeout),
            Ok(Err(_)) => return Err(ClientError::ClientClosed),
            Ok(Ok(())) => {}
        }
    }
}

// ----------------------------------------------------------------------------------------------
// One session.

enum Reply {
    Ok(Value),
    Remote(RemoteError),
    Lost(u16, String),
}

enum SendError {
    NotSent,
    Lost(u16, String),
    Remote(RemoteError),
    Timeout,
}

#[derive(Default)]
struct Pending {
    dead: bool,
    /// The gateway announced `shutdown`: no new requests on this session.
    draining: bool,
    waiting: HashMap<String, oneshot::Sender<Reply>>,
}

struct Conn {
    id: u64,
    out: mpsc::Sender<Message>,
    pending: Mutex<Pending>,
    hello: Value,
    last_heard: Mutex<Instant>,
}

impl Conn {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Usable for new requests.
    fn alive(&self) -> bool {
        let p = self.lock();
        !p.dead && !p.draining
    }

    fn drain(&self) {
        self.lock().draining = true;
    }

    fn heard(&self) {
        *self.last_heard.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn last_heard(&self) -> Instant {
        *self.last_heard.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn forget(&self, id: &str) {
        self.lock().waiting.remove(id);
    }

    async fn request(
        &self,
        id: &str,
        method: &str,
        params: &Value,
        deadline: tokio::time::Instant,
    ) -> Result<Value, SendError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.lock();
            if p.dead || p.draining {
                return Err(SendError::NotSent);
            }
            p.waiting.insert(id.to_string(), tx);
        }
        let frame = Message::Text(wire::request(id, method, params).into());
        match tokio::time::timeout_at(deadline, self.out.send(frame)).await {
            Err(_) => {
                self.forget(id);
                return Err(SendError::Timeout);
            }
            Ok(Err(_)) => {
                self.forget(id);
                return Err(SendError::NotSent);
            }
            Ok(Ok(())) => {}
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Err(_) => {
                self.forget(id);
                Err(SendError::Timeout)
            }
            Ok(Err(_)) => Err(SendError::Lost(
                1006,
                claw_proto::CloseReason::SessionDropped.to_string(),
            )),
            Ok(Ok(Reply::Ok(v))) => Ok(v),
            Ok(Ok(Reply::Remote(e))) => Err(SendError::Remote(e)),
            Ok(Ok(Reply::Lost(c, r))) => Err(SendError::Lost(c, r)),
        }
    }

    fn answer(&self, id: &str, result: Result<Value, RemoteError>) {
        let tx = self.lock().waiting.remove(id);
        if let Some(tx) = tx {
            let _ = tx.send(match result {
                Ok(v) => Reply::Ok(v),
                Err(e) => Reply::Remote(e),
            });
        }
    }

    /// Marks the session dead and fails every request on the wire.
    fn kill(&self, code: u16, reason: &str) {
        let drained: Vec<_> = {
            let mut p = self.lock();
            p.dead = true;
            p.waiting.drain().collect()
        };
        for (_, tx) in drained {
            let _ = tx.send(Reply::Lost(code, reason.to_string()));
        }
    }
}

async fn writer(mut sink: SplitSink<Ws, Message>, mut rx: mpsc::Receiver<Message>) {
    while let Some(m) = rx.recv().await {
        if sink.send(m).await.is_err() {
            return;
        }
    }
    // Every sender is gone: the session is being dropped; close it normally.
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}

async fn reader(
    conn: Arc<Conn>,
    mut stream: SplitStream<Ws>,
    internal: mpsc::UnboundedSender<Internal>,
    events: broadcast::Sender<Event>,
) {
    let (code, reason) = loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) => {
                conn.heard();
                match wire::parse_incoming(&t) {
                    Incoming::Response { id, result } => conn.answer(&id, result),
                    Incoming::Event { name, payload, seq } => {
                        if name == "shutdown" {
                            // Requests already sent may still be answered; new ones wait for
                            // the next session.
                            conn.drain();
                            tracing::info!(payload = %payload, "gateway is shutting down; will reconnect");
                        }
                        let _ = events.send(Event { name, payload, seq });
                    }
                    Incoming::Other => {}
                }
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => conn.heard(),
            Some(Ok(Message::Binary(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Close(f))) => {
                break match f {
                    Some(f) => (f.code.into(), f.reason.chars().take(123).collect()),
                    None => (1005, "closed without a status".into()),
                }
            }
            Some(Err(e)) => break (1006, format!("connection lost: {e}")),
            None => break (1006, "connection lost".into()),
        }
    };
    conn.kill(code, &reason);
    let _ = internal.send(Internal::Closed {
        conn: conn.id,
        code,
        reason,
    });
}

struct ConnHandle {
    conn: Arc<Conn>,
    reader: JoinHandle<()>,
}

// ----------------------------------------------------------------------------------------------
// The supervisor.

enum Internal {
    Opened {
        attempt: u64,
        generation: u64,
        result: Result<(Box<Ws>, Value), OpenError>,
    },
    Closed {
        conn: u64,
        code: u16,
        reason: String,
    },
    Repaired(Result<Credential<String>, RefreshError>),
}

struct Supervisor {
    options: ConnectOptions,
    machine: Machine,
    refresher: Refresher<String>,
    link: watch::Sender<Link>,
    status: watch::Sender<Status>,
    events: broadcast::Sender<Event>,
    internal: (
        mpsc::UnboundedSender<Internal>,
        mpsc::UnboundedReceiver<Internal>,
    ),
    current: Option<ConnHandle>,
    /// Id of the connect attempt whose result is awaited; older results are discarded.
    attempt: u64,
    connect_task: Option<JoinHandle<()>>,
    repair_task: Option<JoinHandle<()>>,
    /// Credential generation of the last connect (what a re-pair replaces).
    stale_generation: u64,
    close_ack: Option<oneshot::Sender<()>>,
}

impl Supervisor {
    async fn run(mut self, mut cmd: mpsc::UnboundedReceiver<Command>) {
        let mut inputs = std::collections::VecDeque::from([Input::Start]);
        loop {
            // Feed everything queued. Only a failed Connect queues a follow-up input, and that
            // one leads to `auth_failed`, so this ends after a few rounds.
            while let Some(input) = inputs.pop_front() {
                let actions = self.machine.handle(Instant::now(), input);
                for a in actions {
                    if let Some(more) = self.apply(a) {
                        inputs.push_back(more);
                    }
                }
            }
            if matches!(self.machine.status(), Status::Closed) {
                break;
            }
            let deadline = self.machine.poll_timeout();
            let input = tokio::select! {
                c = cmd.recv() => match c {
                    None => Input::HostClosed,
                    Some(Command::Close(ack)) => {
                        self.close_ack = Some(ack);
                        Input::HostClosed
                    }
                    Some(Command::SetToken(t, ack)) => {
                        self.refresher.replace(t);
                        let actions = self.machine.handle(Instant::now(), Input::HostSuppliedCredentials);
                        for a in actions {
                            if let Some(more) = self.apply(a) {
                                inputs.push_back(more);
                            }
                        }
                        let _ = ack.send(());
                        continue;
                    }
                },
                Some(ev) = self.internal.1.recv() => match self.internal_input(ev) {
                    Some(i) => i,
                    None => continue,
                },
                _ = sleep_until(deadline) => {
                    // Liveness: tell the machine when the session last heard from the gateway.
                    if let Some(h) = &self.current {
                        let _ = self.machine.handle(h.conn.last_heard(), Input::Heard);
                    }
                    Input::Tick
                }
            };
            inputs.push_back(input);
        }
        self.drop_session();
        if let Some(t) = self.connect_task.take() {
            t.abort();
        }
        if let Some(t) = self.repair_task.take() {
            t.abort();
        }
        if let Some(ack) = self.close_ack.take() {
            let _ = ack.send(());
        }
    }

    fn internal_input(&mut self, ev: Internal) -> Option<Input> {
        match ev {
            Internal::Opened {
                attempt,
                generation,
                result,
            } => {
                if attempt != self.attempt {
                    return None; // a connect we no longer wait for; its socket drops here
                }
                self.connect_task = None;
                self.stale_generation = generation;
                match result {
                    Ok((ws, hello)) => {
                        let tick = wire::tick_interval_ms(&hello).map(Duration::from_millis);
                        self.install(*ws, hello);
                        Some(Input::Connected {
                            tick_interval: tick,
                        })
                    }
                    Err(OpenError::Refused(r)) => Some(Input::Refused(r)),
                    Err(OpenError::Other(ClientError::Closed { code, reason })) => {
                        Some(Input::Closed {
                            code,
                            reason: reason.as_str().into(),
                        })
                    }
                    Err(OpenError::Other(e)) => Some(Input::Closed {
                        code: 1006,
                        reason: CloseReason::Other(e.to_string()),
                    }),
                }
            }
            Internal::Closed { conn, code, reason } => {
                if self.current.as_ref().map(|h| h.conn.id) != Some(conn) {
                    return None;
                }
                self.current = None;
                Some(Input::Closed {
                    code,
                    reason: reason.as_str().into(),
                })
            }
            Internal::Repaired(r) => {
                self.repair_task = None;
                Some(match r {
                    Ok(_) => Input::RepairSucceeded,
                    Err(e) => Input::RepairFailed(e),
                })
            }
        }
    }

    fn install(&mut self, ws: Ws, hello: Value) {
        self.drop_session();
        let (sink, stream) = ws.split();
        let (out, rx) = mpsc::channel(1024);
        let conn = Arc::new(Conn {
            id: self.attempt,
            out,
            pending: Mutex::new(Pending::default()),
            hello,
            last_heard: Mutex::new(Instant::now()),
        });
        tokio::spawn(writer(sink, rx));
        let reader = tokio::spawn(reader(
            conn.clone(),
            stream,
            self.internal.0.clone(),
            self.events.clone(),
        ));
        self.current = Some(ConnHandle { conn, reader });
    }

    fn drop_session(&mut self) {
        if let Some(h) = self.current.take() {
            h.reader.abort();
            h.conn.kill(1006, "session dropped by the client");
            // Dropping the last `out` sender makes the writer close the socket normally.
        }
    }

    /// Carries out one action; returns an input to feed at once, if any.
    fn apply(&mut self, a: Action) -> Option<Input> {
        match a {
            Action::Connect => {
                self.attempt += 1;
                if let Some(t) = self.connect_task.take() {
                    t.abort();
                }
                let cred = match self.refresher.current() {
                    Ok(c) => c,
                    Err(f) => return Some(Input::RepairFailed(RefreshError::refused(f))),
                };
                let (attempt, opts, tx) =
                    (self.attempt, self.options.clone(), self.internal.0.clone());
                self.connect_task = Some(tokio::spawn(async move {
                    let token = Some(cred.token.as_str()).filter(|t| !t.is_empty());
                    let result = session::open(&opts, token)
                        .await
                        .map(|(ws, h)| (Box::new(ws), h));
                    let _ = tx.send(Internal::Opened {
                        attempt,
                        generation: cred.generation,
                        result,
                    });
                }));
                None
            }
            Action::StartRepair => {
                let (r, stale, tx) = (
                    self.refresher.clone(),
                    self.stale_generation,
                    self.internal.0.clone(),
                );
                if let Some(t) = self.repair_task.take() {
                    t.abort();
                }
                self.repair_task = Some(tokio::spawn(async move {
                    let res = r.refresh_after(stale).await;
                    let _ = tx.send(Internal::Repaired(res));
                }));
                None
            }
            Action::Backoff(_) => None, // the deadline is the machine's poll_timeout
            Action::Disconnect => {
                self.attempt += 1; // discard a connect in progress
                if let Some(t) = self.connect_task.take() {
                    t.abort();
                }
                self.drop_session();
                None
            }
            Action::EmitStatus(s) => {
                let link = match &s {
                    Status::Connected => match &self.current {
                        Some(h) => Link::Up(h.conn.clone()),
                        None => Link::Waiting,
                    },
                    Status::AuthFailed(f) => Link::Failed(f.clone()),
                    Status::Closed => Link::Closed,
                    _ => Link::Waiting,
                };
                self.link.send_replace(link);
                self.status.send_replace(s);
                None
            }
            Action::Log(LogLevel::Warn, m) => {
                tracing::warn!(url = %self.options.url, "{m}");
                None
            }
            Action::Log(LogLevel::Info, m) => {
                tracing::info!(url = %self.options.url, "{m}");
                None
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
