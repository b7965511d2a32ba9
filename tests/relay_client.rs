//! End-to-end: the resilient relay client against the real `claw` gateway — root rotation with
//! 100 calls in flight (one re-pair), revocation (auth_failed, no further connects, counted by a
//! TCP proxy in front of the gateway), a static shared-token client on shared rotation, the
//! token-file re-pair source, and a gateway restart (shutdown/1012 → backoff → reconnect).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use claw_gateway::auth::device_key::DeviceKey;
use common::*;
use futures_util::future::BoxFuture;
use relay_client::backoff::BackoffPolicy;
use relay_client::{
    Client, ClientConfig, ClientError, ConnectOptions, CredentialSource, RefreshError, Session,
    SharedTokenRepair, Status, TokenFile,
};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

const SCOPES: &[&str] = &["operator.read", "operator.pairing"];

/// A loopback TCP proxy in front of the gateway that counts the connections it accepts: the
/// server-side count of connects.
struct Proxy {
    url: String,
    accepted: Arc<AtomicUsize>,
    target: Arc<AtomicU16>,
}

impl Proxy {
    async fn start(target_port: u16) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let target = Arc::new(AtomicU16::new(target_port));
        let (a, t) = (accepted.clone(), target.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = l.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let port = t.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(("127.0.0.1", port)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        });
        Self {
            url: format!("ws://{addr}"),
            accepted,
            target,
        }
    }

    fn connects(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Counts the re-pairs a source is asked for.
#[derive(Debug)]
struct Counted {
    inner: Arc<dyn CredentialSource>,
    calls: Arc<AtomicUsize>,
}

impl CredentialSource for Counted {
    fn name(&self) -> &str {
        "counted"
    }
    fn refresh<'a>(&'a self, stale: &'a str) -> BoxFuture<'a, Result<String, RefreshError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.refresh(stale)
    }
}

fn fast() -> BackoffPolicy {
    BackoffPolicy {
        base: Duration::from_millis(50),
        cap: Duration::from_millis(500),
    }
}

/// Runs the claw CLI off the async workers.
async fn claw_async(home: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let home = home.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        claw_in(&home, &a)
    })
    .await
    .unwrap()
}

/// Pairs `key` over loopback (signed connect + shared token) and returns its device token.
async fn pair(url: &str, shared: &str, key: &DeviceKey) -> String {
    let s = Session::connect(
        ConnectOptions::new(url)
            .token(shared)
            .device(key.clone())
            .scopes(SCOPES),
    )
    .await
    .unwrap();
    let t = s.device_token().unwrap().to_string();
    s.close().await;
    t
}

async fn wait_status(c: &Client, name: &str) -> Status {
    let mut rx = c.status();
    let r = tokio::time::timeout(Duration::from_secs(15), rx.wait_for(|s| s.name() == name)).await;
    match r {
        Ok(Ok(s)) => s.clone(),
        _ => panic!("status {name} never came; now {:?}", *c.status().borrow()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn root_rotation_with_100_calls_in_flight_makes_exactly_one_re_pair() {
    let g = Gateway::start(&[]);
    let shared = g.token();
    let key = DeviceKey::generate();
    let t0 = pair(&g.url, &shared, &key).await;
    let base = ConnectOptions::new(g.url.clone())
        .device(key.clone())
        .scopes(SCOPES)
        .timeout(Duration::from_secs(5));
    let repairs = Arc::new(AtomicUsize::new(0));
    let persisted = Arc::new(Mutex::new(Vec::<String>::new()));
    let p = persisted.clone();
    let client = Client::start(
        ClientConfig::new(base.clone().token(&t0))
            .refresh_source(Counted {
                inner: Arc::new(SharedTokenRepair::new(base.clone().token(&shared))),
                calls: repairs.clone(),
            })
            .on_new_token(move |t| {
                p.lock().unwrap().push(t.clone());
                Ok(())
            })
            .backoff(fast())
            .request_timeout(Duration::from_secs(15)),
    );
    client
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(client.hello().unwrap()["auth"]["method"], "device-token");

    // Record every status the host sees.
    let seen = Arc::new(Mutex::new(vec!["connected"]));
    {
        let (mut rx, seen) = (client.status(), seen.clone());
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let s = rx.borrow_and_update().name();
                seen.lock().unwrap().push(s);
            }
        });
    }

    // 100 workers, each always with one call on the wire; half mark theirs idempotent.
    let resumed = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..100)
        .map(|i| {
            let (c, resumed) = (client.clone(), resumed.clone());
            tokio::spawn(async move {
                let idempotent = i % 2 == 0;
                let (mut ok, mut retryable, mut other) = (0u32, 0u32, Vec::new());
                let mut ok_after = false;
                let start = std::time::Instant::now();
                // Bounded: at most 5000 calls or 40 s per worker.
                for _ in 0..5000 {
                    if ok_after || start.elapsed() > Duration::from_secs(40) {
                        break;
                    }
                    let after = resumed.load(Ordering::SeqCst);
                    let r = if idempotent {
                        c.call_idempotent("health", json!({})).await
                    } else {
                        c.call("health", json!({})).await
                    };
                    match r {
                        Ok(_) => {
                            ok += 1;
                            ok_after = after;
                        }
                        Err(e) if e.is_retryable() => retryable += 1,
                        Err(e) => other.push(e.to_string()),
                    }
                }
                (idempotent, ok, retryable, other, ok_after)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, out, err) = claw_async(&g.home, &["devices", "rotate-token", "--force"]).await;
    assert_eq!(code, 0, "{out}{err}");
    // The client re-pairs on its own and is back on a new-generation token.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !(client.token().as_deref() != Some(t0.as_str())
        && matches!(*client.status().borrow(), Status::Connected))
    {
        assert!(std::time::Instant::now() < deadline, "never re-paired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    resumed.store(true, Ordering::SeqCst);

    let (mut total_ok, mut total_retryable) = (0, 0);
    for w in workers {
        let (idempotent, ok, retryable, other, ok_after) =
            tokio::time::timeout(Duration::from_secs(60), w)
                .await
                .expect("no worker hangs")
                .expect("no panic");
        assert!(
            other.is_empty(),
            "only success or the retryable error: {other:?}"
        );
        assert!(ok_after, "every worker got through on the new session");
        if idempotent {
            assert_eq!(retryable, 0, "idempotent calls are replayed, not failed");
        }
        total_ok += ok;
        total_retryable += retryable;
    }
    eprintln!("rotation: {total_ok} calls succeeded, {total_retryable} failed retryable");
    assert_eq!(repairs.load(Ordering::SeqCst), 1, "exactly one re-pair");
    let new_token = client.token().unwrap();
    assert_ne!(new_token, t0);
    assert_eq!(*persisted.lock().unwrap(), [new_token.as_str()]);
    assert!(
        total_retryable > 0,
        "calls were on the wire when the session died (ok {total_ok})"
    );
    let seen = seen.lock().unwrap().clone();
    assert!(seen.contains(&"re-pairing"), "{seen:?}");
    assert_eq!(seen.last(), Some(&"connected"), "{seen:?}");
    assert!(!seen.contains(&"auth_failed"), "{seen:?}");
    // The new session authenticated with the new device token.
    assert_eq!(client.hello().unwrap()["auth"]["method"], "device-token");
    let st = client.call("status", json!({})).await.unwrap();
    assert_eq!(st["deviceTokenGeneration"], 2);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_is_auth_failed_with_zero_further_connects() {
    let g = Gateway::start(&[]);
    let shared = g.token();
    let key = DeviceKey::generate();
    let t0 = pair(&g.url, &shared, &key).await;
    let proxy = Proxy::start(g.port).await;
    let base = ConnectOptions::new(proxy.url.clone())
        .device(key.clone())
        .scopes(SCOPES)
        .timeout(Duration::from_secs(5));
    let repairs = Arc::new(AtomicUsize::new(0));
    let config = ClientConfig::new(base.clone().token(&t0))
        // The re-pair source goes through the proxy too, so its connects would be counted.
        .refresh_source(Counted {
            inner: Arc::new(SharedTokenRepair::new(base.clone().token(&shared))),
            calls: repairs.clone(),
        })
        .backoff(fast());
    let client = Client::start(config.clone());
    client
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(proxy.connects(), 1);

    let (code, out, err) = claw_async(&g.home, &["devices", "revoke", &key.device_id()]).await;
    assert_eq!(code, 0, "{out}{err}");
    let Status::AuthFailed(why) = wait_status(&client, "auth_failed").await else {
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
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(proxy.connects(), 1, "zero further connects");
    assert_eq!(
        repairs.load(Ordering::SeqCst),
        0,
        "no re-pair for a revoked device"
    );
    assert!(matches!(
        client.call("health", json!({})).await,
        Err(ClientError::AuthFailed(_))
    ));
    assert_eq!(proxy.connects(), 1);

    // A client starting with the revoked device: auth_failed on its first and only attempt,
    // with the gateway's details.
    let late = Client::start(config);
    let e = late
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap_err();
    let ClientError::AuthFailed(why) = e else {
        panic!("{e:?}")
    };
    assert_eq!(
        why.code.as_deref(),
        Some(claw_proto::codes::AUTH_DEVICE_REVOKED)
    );
    assert_eq!(why.next_step.as_deref(), Some("review_auth_configuration"));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(proxy.connects(), 2, "one attempt, no loop");
    assert_eq!(repairs.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_shared_token_client_goes_auth_failed_on_shared_rotation() {
    let g = Gateway::start(&[]);
    let old = g.token();
    let proxy = Proxy::start(g.port).await;
    // Backward compatible: only a static shared token — no device key, no refresh path.
    let client = Client::start(
        ClientConfig::new(
            ConnectOptions::new(proxy.url.clone())
                .token(&old)
                .scopes(&["operator.read"]),
        )
        .backoff(fast()),
    );
    client
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(client.hello().unwrap()["auth"]["method"], "token");
    assert!(client.call("health", json!({})).await.is_ok());

    let (code, _, err) =
        claw_async(&g.home, &["devices", "rotate-token", "--force", "--shared"]).await;
    assert_eq!(code, 0, "{err}");
    let Status::AuthFailed(why) = wait_status(&client, "auth_failed").await else {
        unreachable!()
    };
    assert_eq!(
        why.reason,
        claw_proto::CloseReason::SharedTokenRotated.to_string()
    );
    let msg = why.to_string();
    assert!(
        msg.contains("static token") && msg.contains("supply a new token"),
        "a clear message: {msg}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(proxy.connects(), 1, "no reconnect loop");
    let e = client.call("health", json!({})).await.unwrap_err();
    assert!(e.to_string().contains("gateway token rotated"), "{e}");

    // The host supplies the new shared token: back in business.
    client.set_token(g.token()).await;
    client
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();
    assert!(client.call("health", json!({})).await.is_ok());
    assert_eq!(proxy.connects(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_file_source_follows_a_shared_rotation() {
    let g = Gateway::start(&[]);
    let old = g.token();
    let repairs = Arc::new(AtomicUsize::new(0));
    let client = Client::start(
        ClientConfig::new(
            ConnectOptions::new(g.url.clone())
                .token(&old)
                .scopes(&["operator.read"]),
        )
        .refresh_source(Counted {
            inner: Arc::new(TokenFile::new(g.home.join("gateway.token"))),
            calls: repairs.clone(),
        })
        .backoff(fast()),
    );
    client
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();
    let (code, _, err) =
        claw_async(&g.home, &["devices", "rotate-token", "--force", "--shared"]).await;
    assert_eq!(code, 0, "{err}");
    // A call made now waits for the re-pair and succeeds with the token read from the file.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        match client.call_idempotent("health", json!({})).await {
            Ok(_) if client.token().as_deref() == Some(g.token().as_str()) => break,
            Ok(_) | Err(ClientError::Interrupted { .. }) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never followed the rotation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(repairs.load(Ordering::SeqCst), 1);
    assert_eq!(client.status().borrow().name(), "connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_restart_is_a_shutdown_1012_then_backoff_and_reconnect() {
    let mut g = Gateway::start(&[]);
    let shared = g.token();
    let home = g.home.clone();
    let proxy = Proxy::start(g.port).await;
    let client = Client::start(
        ClientConfig::new(
            ConnectOptions::new(proxy.url.clone())
                .token(&shared)
                .scopes(&["operator.read"]),
        )
        .backoff(fast())
        .request_timeout(Duration::from_secs(20)),
    );
    let mut events = client.events();
    client
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();

    // Keep the stopped gateway (it owns the temporary home) until the end.
    let _stopped = tokio::task::spawn_blocking(move || {
        g.terminate();
        g
    })
    .await
    .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("shutdown event")
        .unwrap();
    assert_eq!(ev.name, "shutdown");
    wait_status(&client, "backing_off").await;

    // A call made while the gateway is down waits; the gateway comes back (new port, same
    // home and token) and the call goes through on the new session.
    let pending = {
        let c = client.clone();
        tokio::spawn(async move { c.call_idempotent("health", json!({})).await })
    };
    let g2 = tokio::task::spawn_blocking(move || Gateway::start_in(&home, &[]))
        .await
        .unwrap();
    proxy.target.store(g2.port, Ordering::SeqCst);
    let r = tokio::time::timeout(Duration::from_secs(20), pending)
        .await
        .expect("no hang")
        .unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(client.status().borrow().name(), "connected");
    assert!(proxy.connects() >= 2);
}

#[test]
fn claw_call_refuses_a_url_that_would_carry_the_token_insecurely() {
    let g = Gateway::start(&[]);
    let t = g.token();
    // The gateway itself, over loopback: fine.
    let url = g.url.clone();
    let (code, out, err) = g.claw(&["call", "health", "--url", &url, "--token", &t, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    // The same gateway as wss:// (unsupported: claw reaches remote gateways through the tunnel
    // or SSH): refused before any connection, exit 78, with what to do instead.
    let wss = url.replacen("ws://", "wss://", 1);
    let (code, _, err) = g.claw(&["call", "health", "--url", &wss, "--token", &t]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("claw tunnel up"), "{err}");
    assert!(!err.contains(&t), "the token is not echoed");
}
