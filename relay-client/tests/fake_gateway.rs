//! The client's IO shell against a scriptable fake gateway on loopback: correlation of many
//! concurrent calls, `tick` liveness, `shutdown`/1012 reconnects, in-flight calls on a dying
//! session, terminal closes, a re-pair that does not help, hostile frames.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{SinkExt, StreamExt};
use relay_client::backoff::BackoffPolicy;
use relay_client::{
    Client, ClientConfig, ClientError, ConnectOptions, CredentialSource, RefreshError, Status,
};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// What the fake does; shared with the test.
struct Fake {
    url: String,
    /// Connections accepted.
    conns: AtomicUsize,
    /// Whether `tick` events are sent.
    ticks: AtomicBool,
    tick_ms: u64,
    /// When set, `connect` is refused with this error object and close.
    refuse: Mutex<Option<(Value, u16, String)>>,
    /// Closes every live session: (optional event before, code, reason).
    kill: broadcast::Sender<(Option<Value>, u16, String)>,
    /// Tokens seen in `connect`.
    tokens: Mutex<Vec<Option<String>>>,
}

impl Fake {
    async fn start(tick_ms: u64) -> Arc<Self> {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Arc::new(Fake {
            url: format!("ws://{}", l.local_addr().unwrap()),
            conns: AtomicUsize::new(0),
            ticks: AtomicBool::new(true),
            tick_ms,
            refuse: Mutex::new(None),
            kill: broadcast::channel(16).0,
            tokens: Mutex::new(Vec::new()),
        });
        let f = fake.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let n = f.conns.fetch_add(1, Ordering::SeqCst) + 1;
                let f = f.clone();
                tokio::spawn(async move {
                    if let Ok(ws) = tokio_tungstenite::accept_async(s).await {
                        let _ = serve(f, ws, n).await;
                    }
                });
            }
        });
        fake
    }

    fn kill_all(&self, event: Option<Value>, code: u16, reason: &str) {
        let _ = self.kill.send((event, code, reason.into()));
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_string().into(),
    }))
}

/// One session: challenge, connect, then requests. `n` is the connection's number (1-based).
async fn serve(f: Arc<Fake>, mut ws: Ws, n: usize) -> Option<()> {
    let mut kill = f.kill.subscribe();
    let ch = json!({"type":"event","event":"connect.challenge","payload":{"nonce":format!("nonce-{n}"),"ts":1}});
    ws.send(Message::Text(ch.to_string().into())).await.ok()?;
    let connect: Value = loop {
        match ws.next().await?.ok()? {
            Message::Text(t) => break serde_json::from_str(&t).ok()?,
            _ => continue,
        }
    };
    let cid = connect["id"].clone();
    f.tokens.lock().unwrap().push(
        connect["params"]["auth"]["token"]
            .as_str()
            .map(str::to_string),
    );
    let refusal = f.refuse.lock().unwrap().clone();
    if let Some((error, code, reason)) = refusal {
        let res = json!({"type":"res","id":cid,"ok":false,"error":error});
        ws.send(Message::Text(res.to_string().into())).await.ok()?;
        ws.send(close(code, &reason)).await.ok()?;
        return Some(());
    }
    let hello = json!({"type":"res","id":cid,"ok":true,"payload":{
        "type":"hello-ok","protocol":4,"auth":{"method":"token"},
        "policy":{"tickIntervalMs": f.tick_ms}}});
    ws.send(Message::Text(hello.to_string().into()))
        .await
        .ok()?;
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Message>();
    let period = Duration::from_millis(f.tick_ms);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            m = stream.next() => {
                let Some(Ok(Message::Text(t))) = m else { return Some(()) };
                let req: Value = serde_json::from_str(&t).ok()?;
                let (id, method, params) = (req["id"].clone(), req["method"].as_str()?.to_string(), req["params"].clone());
                let delay = params["ms"].as_u64().unwrap_or(0);
                let answer = match method.as_str() {
                    "echo" => Some(json!({"type":"res","id":id,"ok":true,"payload":params})),
                    "hold" if n >= 2 => Some(json!({"type":"res","id":id,"ok":true,"payload":{"conn":n}})),
                    "hold" => None,
                    _ => Some(json!({"type":"res","id":id,"ok":false,"error":{"code":claw_proto::codes::INVALID_REQUEST,"message":"unknown method"}})),
                };
                if let Some(a) = answer {
                    let tx = out_tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                        // Hostile noise around every answer: the client must ignore it.
                        let _ = tx.send(Message::Text("not json".into()));
                        let _ = tx.send(Message::Binary(vec![0u8; 16].into()));
                        let _ = tx.send(Message::Text(r#"{"type":"res","id":"nobody","ok":true}"#.into()));
                        let _ = tx.send(Message::Text(r#"{"type":"res","id":{},"ok":true}"#.into()));
                        let _ = tx.send(Message::Text("[1,2,3]".into()));
                        let _ = tx.send(Message::Text(a.to_string().into()));
                    });
                }
            }
            Some(m) = out_rx.recv() => { sink.send(m).await.ok()?; }
            _ = tick.tick() => {
                if f.ticks.load(Ordering::SeqCst) {
                    let t = json!({"type":"event","event":"tick","payload":{"ts":2},"seq":1});
                    sink.send(Message::Text(t.to_string().into())).await.ok()?;
                }
            }
            k = kill.recv() => {
                let (event, code, reason) = k.ok()?;
                if let Some(e) = event {
                    sink.send(Message::Text(e.to_string().into())).await.ok()?;
                }
                sink.send(close(code, &reason)).await.ok()?;
                return Some(());
            }
        }
    }
}

fn fast_backoff() -> BackoffPolicy {
    BackoffPolicy {
        base: Duration::from_millis(20),
        cap: Duration::from_millis(200),
    }
}

fn client(f: &Fake, token: &str) -> ClientConfig {
    ClientConfig::new(
        ConnectOptions::new(f.url.clone())
            .token(token)
            .timeout(Duration::from_secs(5)),
    )
    .backoff(fast_backoff())
    .request_timeout(Duration::from_secs(10))
}

async fn wait_status(c: &Client, name: &str) -> Status {
    let mut rx = c.status();
    let s = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| s.name() == name))
        .await
        .unwrap_or_else(|_| panic!("status {name} never came; now {:?}", *c.status().borrow()))
        .unwrap()
        .clone();
    s
}

/// Waits (up to 10 s) until `cond` holds.
async fn eventually(cond: impl Fn() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition never held");
}

/// Counts re-pair calls and answers with a fixed token.
#[derive(Debug)]
struct Counting(Arc<AtomicUsize>, &'static str);

impl CredentialSource for Counting {
    fn name(&self) -> &str {
        "counting"
    }
    fn refresh<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<String, RefreshError>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        let t = self.1.to_string();
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(t)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_on_one_socket_are_correlated() {
    let f = Fake::start(10_000).await;
    let c = Client::start(client(&f, "t"));
    c.wait_connected(Duration::from_secs(5)).await.unwrap();
    let calls: Vec<_> = (0..200u64)
        .map(|i| {
            let c = c.clone();
            // Answers come back out of order (random delays), wrapped in garbage frames.
            tokio::spawn(async move {
                let ms = (i * 7919) % 50;
                (i, c.call("echo", json!({"i": i, "ms": ms})).await)
            })
        })
        .collect();
    for t in calls {
        let (i, r) = t.await.unwrap();
        assert_eq!(r.unwrap()["i"], i);
    }
    let e = c.call("nope", json!({})).await.unwrap_err();
    assert!(
        matches!(e, ClientError::Rejected { ref code, .. } if code == claw_proto::codes::INVALID_REQUEST)
    );
    assert_eq!(f.conns.load(Ordering::SeqCst), 1);
    assert_eq!(c.status().borrow().name(), "connected");
    c.close().await;
    assert_eq!(c.status().borrow().name(), "closed");
    assert!(matches!(
        c.call("echo", json!({})).await,
        Err(ClientError::ClientClosed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_stops_ticking_is_left_after_two_intervals() {
    let f = Fake::start(250).await;
    let c = Client::start(client(&f, "t"));
    c.wait_connected(Duration::from_secs(5)).await.unwrap();
    // Ticking: no reconnect over 6 intervals.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(f.conns.load(Ordering::SeqCst), 1, "ticks keep the session");
    // Silent (the socket stays open): the client leaves after 2 × 250 ms (+ slack) and reconnects.
    f.ticks.store(false, Ordering::SeqCst);
    let t0 = std::time::Instant::now();
    wait_status(&c, "backing_off").await;
    let silent_for = t0.elapsed();
    assert!(silent_for < Duration::from_secs(2), "{silent_for:?}");
    f.ticks.store(true, Ordering::SeqCst);
    wait_status(&c, "connected").await;
    assert!(f.conns.load(Ordering::SeqCst) >= 2);
    assert_eq!(c.call("echo", json!({"x":1})).await.unwrap()["x"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_1012_backs_off_and_reconnects_and_calls_wait_for_it() {
    let f = Fake::start(10_000).await;
    let c = Client::start(client(&f, "t"));
    let mut events = c.events();
    let mut status = c.status();
    c.wait_connected(Duration::from_secs(5)).await.unwrap();
    f.kill_all(
        Some(json!({"type":"event","event":"shutdown","payload":{"reason":"gateway stopping"},"seq":9})),
        1012,
        &claw_proto::CloseReason::ServiceRestart.to_string(),
    );
    let ev = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((ev.name.as_str(), ev.seq), ("shutdown", Some(9)));
    // A call made meanwhile waits for the next session and succeeds on it.
    assert_eq!(c.call("echo", json!({"y":2})).await.unwrap()["y"], 2);
    assert_eq!(f.conns.load(Ordering::SeqCst), 2);
    // The status went through backing_off (the watch may coalesce the steps in between).
    assert!(status.has_changed().unwrap());
    assert_eq!(status.borrow_and_update().name(), "connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_on_the_wire_when_the_session_dies_fail_retryable_or_replay_once() {
    let f = Fake::start(10_000).await;
    let c = Client::start(client(&f, "t"));
    c.wait_connected(Duration::from_secs(5)).await.unwrap();
    // `hold` is answered only from the second session on.
    let plain = {
        let c = c.clone();
        tokio::spawn(async move { c.call("hold", json!({})).await })
    };
    let idem = {
        let c = c.clone();
        tokio::spawn(async move { c.call_idempotent("hold", json!({})).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    f.kill_all(
        None,
        1012,
        &claw_proto::CloseReason::ServiceRestart.to_string(),
    );
    let e = plain.await.unwrap().unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(
        matches!(e, ClientError::Interrupted { code: 1012, .. }),
        "{e:?}"
    );
    assert_eq!(idem.await.unwrap().unwrap()["conn"], 2, "replayed once");
    // Bounded: a call on a session that never answers times out at its deadline.
    let o = relay_client::CallOptions {
        idempotent: false,
        timeout: Some(Duration::from_millis(300)),
    };
    f.kill_all(None, 1012, "again");
    eventually(|| f.conns.load(Ordering::SeqCst) == 3 && c.hello().is_some()).await;
    assert!(matches!(
        c.call_with("nope-never", json!({"ms": 5000}), o).await,
        Err(ClientError::Rejected { .. }) | Err(ClientError::Timeout)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_is_auth_failed_with_no_reconnect_until_new_credentials() {
    let f = Fake::start(10_000).await;
    let repairs = Arc::new(AtomicUsize::new(0));
    let c = Client::start(client(&f, "t").refresh_source(Counting(repairs.clone(), "fresh")));
    c.wait_connected(Duration::from_secs(5)).await.unwrap();
    f.kill_all(
        None,
        1008,
        &claw_proto::CloseReason::DeviceRevoked.to_string(),
    );
    let Status::AuthFailed(why) = wait_status(&c, "auth_failed").await else {
        unreachable!()
    };
    assert_eq!(
        why.reason,
        claw_proto::CloseReason::DeviceRevoked.to_string()
    );
    assert_eq!(
        why.code.as_deref(),
        Some(claw_proto::codes::AUTH_DEVICE_REVOKED)
    );
    assert_eq!(why.next_step.as_deref(), Some("review_auth_configuration"));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(f.conns.load(Ordering::SeqCst), 1, "no reconnect");
    assert_eq!(repairs.load(Ordering::SeqCst), 0, "no re-pair");
    let t0 = std::time::Instant::now();
    assert!(matches!(
        c.call("echo", json!({})).await,
        Err(ClientError::AuthFailed(_))
    ));
    assert!(t0.elapsed() < Duration::from_millis(100), "fails fast");
    // The host supplies new credentials: connected again.
    c.set_token("new").await;
    c.wait_connected(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        f.tokens.lock().unwrap().last().unwrap().as_deref(),
        Some("new")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_pair_whose_token_is_refused_too_ends_in_auth_failed_not_a_loop() {
    let f = Fake::start(10_000).await;
    let repairs = Arc::new(AtomicUsize::new(0));
    let persisted = Arc::new(Mutex::new(Vec::new()));
    let p = persisted.clone();
    let c = Client::start(
        client(&f, "old")
            .refresh_source(Counting(repairs.clone(), "fresh"))
            .on_new_token(move |t| {
                p.lock().unwrap().push(t.clone());
                Ok(())
            }),
    );
    c.wait_connected(Duration::from_secs(5)).await.unwrap();
    *f.refuse.lock().unwrap() = Some((
        json!({"code":claw_proto::codes::INVALID_REQUEST,"message":claw_proto::CloseReason::DeviceTokenRotated.to_string(),
               "details":{"code":claw_proto::codes::AUTH_DEVICE_TOKEN_ROTATED,"recommendedNextStep":"update_auth_credentials"}}),
        1008,
        claw_proto::CloseReason::DeviceTokenRotated.to_string(),
    ));
    f.kill_all(
        None,
        1008,
        &claw_proto::CloseReason::DeviceTokenRotated.to_string(),
    );
    let Status::AuthFailed(why) = wait_status(&c, "auth_failed").await else {
        unreachable!()
    };
    assert!(why.reason.contains("re-pairing"), "{why}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(repairs.load(Ordering::SeqCst), 1);
    assert_eq!(
        f.conns.load(Ordering::SeqCst),
        2,
        "one connect with the new token, no loop"
    );
    assert_eq!(
        *f.tokens.lock().unwrap(),
        [Some("old".to_string()), Some("fresh".to_string())]
    );
    assert_eq!(*persisted.lock().unwrap(), ["fresh"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_gateway_is_retried_with_backoff_not_hammered() {
    // Bind then drop: the port refuses connections.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = ClientConfig::new(
        ConnectOptions::new(format!("ws://127.0.0.1:{port}")).timeout(Duration::from_secs(1)),
    )
    .backoff(BackoffPolicy {
        base: Duration::from_millis(50),
        cap: Duration::from_millis(400),
    });
    let c = Client::start(cfg);
    let mut rx = c.status();
    let mut backoffs = 0;
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_millis(1500) {
        if tokio::time::timeout(Duration::from_millis(100), rx.changed())
            .await
            .is_ok()
        {
            if let Status::BackingOff { retry_in, .. } = *rx.borrow_and_update() {
                assert!(retry_in <= Duration::from_millis(400));
                backoffs += 1;
            }
        }
    }
    // 50 ms doubling to 400 ms with full jitter: a handful of attempts in 1.5 s, not hundreds.
    assert!((2..60).contains(&backoffs), "{backoffs}");
    let o = relay_client::CallOptions {
        idempotent: true,
        timeout: Some(Duration::from_millis(200)),
    };
    assert!(matches!(
        c.call_with("health", json!({}), o).await,
        Err(ClientError::Timeout)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_that_would_send_credentials_insecurely_is_auth_failed_before_any_socket() {
    let f = Fake::start(10_000).await;
    // The fake listens on loopback; wss:// to it is refused by the client's URL policy (the
    // same path refuses non-loopback ws:// hosts, unit-tested in url_policy without sending
    // anything off the machine).
    let url = f.url.replacen("ws://", "wss://", 1);
    let c = Client::start(
        ClientConfig::new(ConnectOptions::new(url).token("t"))
            .backoff(fast_backoff())
            .request_timeout(Duration::from_secs(2)),
    );
    let Status::AuthFailed(why) = wait_status(&c, "auth_failed").await else {
        unreachable!()
    };
    assert_eq!(why.code.as_deref(), Some("INSECURE_URL"));
    assert!(why.reason.contains("claw tunnel up"), "{}", why.reason);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(f.conns.load(Ordering::SeqCst), 0, "no socket was opened");
    assert!(matches!(
        c.call("echo", json!({})).await,
        Err(ClientError::AuthFailed(_))
    ));
    // `Session::connect` (one-shot clients such as `claw call`) refuses the same way.
    let Err(e) = relay_client::Session::connect(
        ConnectOptions::new(f.url.replacen("ws://", "wss://", 1)).token("t"),
    )
    .await
    else {
        panic!("a wss:// URL was accepted");
    };
    assert!(e.to_string().contains("INSECURE_URL"), "{e}");
    assert_eq!(f.conns.load(Ordering::SeqCst), 0);
}

/// A server that cannot sign the challenge with the expected gateway key (a squatter on a freed
/// port, here the fake) gets no `connect` — so no token — from a client that knows the key; the
/// long-running client keeps retrying with backoff (the real gateway may come back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unproven_server_never_receives_the_token() {
    let f = Fake::start(10_000).await;
    let fingerprint = "ab".repeat(32);
    let Err(e) = relay_client::Session::connect(
        ConnectOptions::new(f.url.clone())
            .token("secret-token")
            .expect_gateway(fingerprint.clone()),
    )
    .await
    else {
        panic!("an unproven server was accepted");
    };
    assert!(
        matches!(&e, ClientError::GatewayNotProven { reason, .. } if reason.contains("no gateway proof")),
        "{e}"
    );
    assert!(e.to_string().contains("no credentials were sent"), "{e}");
    let c = Client::start(
        ClientConfig::new(
            ConnectOptions::new(f.url.clone())
                .token("secret-token")
                .expect_gateway(fingerprint),
        )
        .backoff(fast_backoff()),
    );
    eventually(|| f.conns.load(Ordering::SeqCst) >= 3).await;
    drop(c);
    assert!(
        f.tokens.lock().unwrap().is_empty(),
        "the fake received a connect: {:?}",
        f.tokens.lock().unwrap()
    );
}
