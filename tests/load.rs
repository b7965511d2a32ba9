//! Load (loopback only, bounded in count and time), against the real `claw` binary:
//!
//! (a) hold `CLAW_LOAD_SESSIONS` (default 10,000) authenticated idle WebSocket sessions through
//!     several tick and ping cycles: every one stays open and answers `health` at the end, the
//!     gateway's `status` counts them all, a fresh client keeps being served, and the gateway's
//!     RSS per session stays small (printed; bounded generously so a per-session leak fails).
//! (b) connect + auth churn for `CLAW_CHURN_SECS` (default 5; docs/reliability.md uses 60) at the
//!     highest rate the machine sustains: the number of concurrent clients is picked by a short
//!     ramp in the same run, then every handshake must succeed (errors printed and asserted 0),
//!     p50/p99 printed, and no session may be left behind once the clients are gone.
//!
//! Half of the churn clients use the shared token, half a paired device's token with a signed
//! device identity (the path a phone or relay takes). Clients connect from many 127.0.0.x source
//! addresses so neither ephemeral ports nor the per-source pre-auth cap are the bottleneck.
//!
//! Figures for the docs: `CLAW_LOAD_SESSIONS=10000 CLAW_CHURN_SECS=60 cargo test --release
//! --test load -- --nocapture --test-threads=1`.

mod common;

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use claw_gateway::auth::device_key::DeviceKey;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

/// Bound on one network step (connect, upgrade, one frame).
const STEP: Duration = Duration::from_secs(30);
/// The two tests saturate the machine; they take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `i`-th client source address: 127.0.1.0 – 127.0.4.255 (1,024 of them).
fn source(i: u64) -> Ipv4Addr {
    let n = 256 + (i % 1024) as u32;
    Ipv4Addr::new(127, 0, (n >> 8) as u8, n as u8)
}

/// A small-buffer client config: 10,000 clients in this process should not cost gigabytes.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// The next JSON text frame (pings are answered by tungstenite while reading), or why not.
async fn next_json(ws: &mut Ws) -> Result<Value, String> {
    loop {
        match tokio::time::timeout(STEP, ws.next()).await {
            Err(_) => return Err("timed out waiting for a frame".into()),
            Ok(Some(Ok(Message::Text(t)))) => {
                return serde_json::from_str(&t).map_err(|e| format!("bad JSON: {e}"))
            }
            Ok(Some(Ok(Message::Close(f)))) => return Err(format!("closed: {f:?}")),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return Err(format!("read: {e}")),
            Ok(None) => return Err("EOF".into()),
        }
    }
}

/// Opens a WebSocket from `src` and completes the OpenClaw handshake with `creds`; any failure
/// is returned (counted by the caller), never panics.
async fn session(port: u16, src: Ipv4Addr, creds: &Creds<'_>) -> Result<(Ws, Value), String> {
    let tcp = tokio::time::timeout(STEP, tcp_from(src, port))
        .await
        .map_err(|_| "TCP connect timed out".to_string())?
        .map_err(|e| format!("TCP connect from {src}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let url = format!("ws://127.0.0.1:{port}/");
    let (mut ws, _) = tokio::time::timeout(
        STEP,
        tokio_tungstenite::client_async_with_config(
            url,
            MaybeTlsStream::Plain(tcp),
            Some(client_config()),
        ),
    )
    .await
    .map_err(|_| "upgrade timed out".to_string())?
    .map_err(|e| format!("upgrade: {e}"))?;
    let ch = next_json(&mut ws).await?;
    if ch["event"] != "connect.challenge" {
        return Err(format!("expected the challenge, got {ch}"));
    }
    let connect = json!({"type":"req","id":"c1","method":"connect",
        "params": connect_params(creds, &ch["payload"])});
    ws.send(Message::Text(connect.to_string().into()))
        .await
        .map_err(|e| format!("send connect: {e}"))?;
    let res = next_json(&mut ws).await?;
    if res["ok"] != true {
        return Err(format!("connect refused: {}", res["error"]));
    }
    Ok((ws, res["payload"].clone()))
}

/// Sends `health` and waits for its response, skipping events.
async fn health(ws: &mut Ws, id: &str) -> Result<(), String> {
    let req = json!({"type":"req","id":id,"method":"health","params":{}});
    ws.send(Message::Text(req.to_string().into()))
        .await
        .map_err(|e| format!("send health: {e}"))?;
    loop {
        let v = next_json(ws).await?;
        if v["type"] == "res" && v["id"] == id {
            return if v["ok"] == true {
                Ok(())
            } else {
                Err(format!("health failed: {v}"))
            };
        }
    }
}

/// `status` over a fresh shared-token session: the number of open sessions (this one included).
async fn open_sessions(g: &Gateway, token: &str) -> u64 {
    let creds = Creds {
        token: Some(token),
        scopes: &["operator.read"],
        ..Default::default()
    };
    let (_, mut ws) = handshake(&g.url, &creds).await.hello();
    let st = call(&mut ws, "status", json!({})).await;
    st["payload"]["connections"]["total"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_idle_sessions_are_held_through_ping_and_tick_cycles() {
    let _turn = SERIAL.lock().await;
    let asked = std::env::var("CLAW_LOAD_SESSIONS").is_ok();
    let mut n = env_num("CLAW_LOAD_SESSIONS", 10_000);
    let nofile = raise_nofile(n + 2_000);
    if nofile < n + 1_000 {
        // This process holds n client sockets (the gateway, a separate process, holds n more).
        assert!(
            !asked,
            "RLIMIT_NOFILE hard limit {nofile} is too low for {n} sessions; raise it (ulimit -Hn) or lower CLAW_LOAD_SESSIONS"
        );
        n = nofile.saturating_sub(1_000).max(100);
        eprintln!("NOTE: the hard RLIMIT_NOFILE ({nofile}) allows {n} sessions here, not 10,000");
    }
    // Pings and ticks every 5 s (a peer silent for 15 s is reaped), so the liveness machinery
    // runs over every session several times while they are held.
    let g = Gateway::start(&["--ping-interval-ms", "5000", "--tick-interval-ms", "5000"]);
    let pid = g.child.id();
    let token = g.token();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_kib = rss_kib(pid);

    // Open n sessions, 16 handshakes in flight at a time; each task then holds its socket,
    // reading (and so answering pings) until told to check in with a `health` call.
    let (check_tx, check_rx) = tokio::sync::watch::channel(false);
    let gate = Arc::new(Semaphore::new(16));
    let opened = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (gate, opened, token, mut check) = (
            gate.clone(),
            opened.clone(),
            token.clone(),
            check_rx.clone(),
        );
        let port = g.port;
        tasks.spawn(async move {
            let permit = gate.acquire_owned().await.unwrap();
            let creds = Creds {
                token: Some(&token),
                scopes: &["operator.read"],
                ..Default::default()
            };
            let (mut ws, _) = session(port, source(i), &creds)
                .await
                .map_err(|e| format!("session {i}: {e}"))?;
            drop(permit);
            opened.fetch_add(1, Ordering::Relaxed);
            let mut ticks = 0u64;
            loop {
                tokio::select! {
                    msg = ws.next() => match msg {
                        Some(Ok(Message::Text(t))) => {
                            if t.contains("\"tick\"") { ticks += 1; }
                        }
                        Some(Ok(Message::Close(f))) => return Err(format!("session {i} closed by the gateway: {f:?}")),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(format!("session {i}: {e}")),
                        None => return Err(format!("session {i}: EOF")),
                    },
                    _ = check.wait_for(|c| *c) => break,
                }
            }
            health(&mut ws, &format!("h{i}"))
                .await
                .map_err(|e| format!("session {i} at check-in: {e}"))?;
            Ok::<_, String>((ticks, ws))
        });
    }
    // Wait (bounded) until all are open, failing fast if any task already failed.
    let deadline = Instant::now() + Duration::from_secs(600);
    while opened.load(Ordering::Relaxed) < n {
        match tasks.try_join_next() {
            Some(Ok(Err(e))) => panic!("{e}"),
            Some(Err(e)) => panic!("holder task: {e}"),
            Some(Ok(Ok(_))) => unreachable!("a holder finished before the check-in"),
            None => {}
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} sessions opened in 600 s",
            opened.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open_time = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loaded_kib = rss_kib(pid);

    // Hold through ≥ 2 ping and tick cycles while a fresh client keeps being served.
    let mut rtt = Vec::new();
    let hold_until = Instant::now() + Duration::from_secs(12);
    let creds = Creds {
        token: Some(&token),
        scopes: &["operator.read"],
        ..Default::default()
    };
    let (_, mut probe) = handshake(&g.url, &creds).await.hello();
    while Instant::now() < hold_until {
        let t = Instant::now();
        health(&mut probe, "p").await.expect("the fresh client");
        rtt.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(probe);
    let counted = open_sessions(&g, &token).await;
    let held_kib = rss_kib(pid);

    // Every held session must still be open and answer.
    check_tx.send(true).unwrap();
    let mut ticks_min = u64::MAX;
    let mut held = Vec::with_capacity(n as usize);
    while let Some(r) = tasks.join_next().await {
        let (ticks, ws) = r
            .expect("holder task panicked")
            .unwrap_or_else(|e| panic!("{e}"));
        ticks_min = ticks_min.min(ticks);
        held.push(ws);
    }
    let per_session_kib = (loaded_kib.saturating_sub(idle_kib)) as f64 / n as f64;
    eprintln!(
        "load: {n} authenticated idle sessions opened in {:.1} s ({:.0}/s, 16 in flight); \
         gateway RSS idle {:.1} MiB, with {n} sessions {:.1} MiB ({per_session_kib:.1} KiB/session), \
         after 12 s of pings/ticks {:.1} MiB; every session got ≥ {ticks_min} ticks and answered health; \
         a fresh client's health p50 {:?} p99 {:?} ({} calls); RLIMIT_NOFILE {nofile}",
        open_time.as_secs_f64(),
        n as f64 / open_time.as_secs_f64(),
        idle_kib as f64 / 1024.0,
        loaded_kib as f64 / 1024.0,
        held_kib as f64 / 1024.0,
        pct(&mut rtt, 0.5),
        pct(&mut rtt, 0.99),
        rtt.len(),
    );
    assert_eq!(held.len() as u64, n, "every session was held");
    assert_eq!(
        counted,
        n + 1,
        "status counts every held session and its own"
    );
    assert!(ticks_min >= 1, "every held session received tick events");
    // Generous: the release build measures ~8 KiB; a leaked per-session buffer would blow this.
    assert!(
        per_session_kib < 64.0,
        "{per_session_kib:.1} KiB of gateway RSS per idle session"
    );
    assert!(
        held_kib < loaded_kib + loaded_kib / 2,
        "gateway RSS grew from {loaded_kib} to {held_kib} KiB while sessions sat idle"
    );
}

/// CPU time (user + system, in clock ticks) a process has used so far (/proc/PID/stat).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// One churn client's loop: connect + auth + close until `until`; returns latencies and errors.
async fn churn_worker(
    port: u16,
    worker: u64,
    creds: Creds<'static>,
    until: Instant,
) -> (Vec<Duration>, Vec<String>) {
    let (mut lat, mut errors) = (Vec::new(), Vec::new());
    let mut k = 0u64;
    while Instant::now() < until {
        let t = Instant::now();
        match session(port, source(worker * 7919 + k), &creds).await {
            Ok((mut ws, _)) => {
                lat.push(t.elapsed());
                let _ = ws.close(None).await;
                // Read until the gateway's close (bounded), so its side is gone too.
                let _ =
                    tokio::time::timeout(STEP, async { while ws.next().await.is_some() {} }).await;
            }
            Err(e) => errors.push(e),
        }
        k += 1;
    }
    (lat, errors)
}

/// Runs `clients` churn workers for `secs`; returns (handshakes/s, latencies, errors).
async fn churn(
    port: u16,
    creds: &[Creds<'static>],
    clients: usize,
    dur: Duration,
) -> (f64, Vec<Duration>, Vec<String>) {
    let until = Instant::now() + dur;
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for w in 0..clients {
        let c = creds[w % creds.len()].clone();
        set.spawn(churn_worker(port, w as u64, c, until));
    }
    let (mut lat, mut errors) = (Vec::new(), Vec::new());
    while let Some(r) = set.join_next().await {
        let (l, e) = r.expect("churn worker panicked");
        lat.extend(l);
        errors.extend(e);
    }
    let rate = lat.len() as f64 / started.elapsed().as_secs_f64();
    (rate, lat, errors)
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_and_auth_churn_at_the_highest_sustainable_rate_has_no_errors() {
    let _turn = SERIAL.lock().await;
    let secs = env_num("CLAW_CHURN_SECS", 5);
    raise_nofile(8_000);
    let g = Gateway::start(&[]);
    let pid = g.child.id();
    let token: &'static str = Box::leak(g.token().into_boxed_str());

    // Pair devices silently (signed connect with the shared token on loopback) and keep their
    // device tokens: the odd churn clients present those with a fresh signature each time.
    let mut creds: Vec<Creds<'static>> = Vec::new();
    for _ in 0..8 {
        let key: &'static DeviceKey = Box::leak(Box::new(DeviceKey::generate()));
        let pair = Creds {
            token: Some(token),
            device: Some(key),
            scopes: &["operator.read"],
        };
        let (hello, _) = handshake(&g.url, &pair).await.hello();
        let device_token: &'static str = Box::leak(
            hello["auth"]["deviceToken"]
                .as_str()
                .expect("a device token at pairing")
                .to_string()
                .into_boxed_str(),
        );
        creds.push(Creds {
            token: Some(token),
            scopes: &["operator.read"],
            ..Default::default()
        });
        creds.push(Creds {
            token: Some(device_token),
            device: Some(key),
            scopes: &["operator.read"],
        });
    }
    let rss_before = rss_kib(pid);

    // Ramp: 2, 4, 8, 16, 32 concurrent clients for 1 s each; keep the best rate (stop once a
    // doubling gains < 5 %). Errors during the ramp count too.
    let mut all_errors = Vec::new();
    let (mut best, mut best_rate) = (1usize, 0.0f64);
    for clients in [2usize, 4, 8, 16, 32] {
        let (rate, _, errors) = churn(g.port, &creds, clients, Duration::from_secs(1)).await;
        eprintln!("churn ramp: {clients} clients → {rate:.0} handshakes/s");
        all_errors.extend(errors);
        if rate > best_rate * 1.05 {
            (best, best_rate) = (clients, rate);
        } else {
            break;
        }
    }

    let cpu_before = cpu_ticks(pid);
    let (rate, mut lat, errors) = churn(g.port, &creds, best, Duration::from_secs(secs)).await;
    let cpu = cpu_ticks(pid) - cpu_before;
    all_errors.extend(errors);
    let total = lat.len();
    let tick_hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    eprintln!(
        "churn: {secs} s at {best} concurrent clients: {total} connect+auth handshakes \
         ({rate:.0}/s; half shared token, half device token + signature), {} errors; \
         latency p50 {:?} p99 {:?} max {:?}; gateway CPU {:.0} µs per handshake \
         (the clients share the machine)",
        all_errors.len(),
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        pct(&mut lat, 1.0),
        cpu as f64 / tick_hz * 1e6 / total.max(1) as f64,
    );
    assert!(
        all_errors.is_empty(),
        "{} handshakes failed, first: {:?}",
        all_errors.len(),
        &all_errors[..all_errors.len().min(5)]
    );
    assert!(total as u64 >= secs, "only {total} handshakes in {secs} s");

    // Nothing is left behind: only the observer's own session remains, memory settles.
    let mut left = u64::MAX;
    for _ in 0..50 {
        left = open_sessions(&g, token).await;
        if left == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 1, "sessions left behind after the churn");
    let rss_after = rss_kib(pid);
    eprintln!(
        "churn: gateway RSS {:.1} MiB before, {:.1} MiB after",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    assert!(
        rss_after < rss_before * 3 + 16 * 1024,
        "gateway RSS grew from {rss_before} to {rss_after} KiB over the churn"
    );
}

/// A gateway whose open-file limit is 256, soft and hard (it cannot raise it): it caps its
/// connections below the descriptor limit and says so in `gateway status` (`maxConnections`);
/// every socket past the cap is answered `503` at once — no client hangs in the accept backlog —
/// while the admin socket and the store keep working; and once the sessions go, new ones are
/// served again. (Before, the cap stayed at 20,000: the gateway ran into EMFILE, which also
/// failed its admin socket and store.)
#[tokio::test(flavor = "multi_thread")]
async fn a_low_open_file_limit_caps_connections_with_clear_refusals_and_recovers() {
    use std::os::unix::process::CommandExt;
    let _turn = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let g = Gateway::start_in_cmd(&tmp.path().join("home"), &[], |c| {
        // SAFETY: setrlimit is a single async-signal-safe system call.
        unsafe {
            c.pre_exec(|| {
                use nix::sys::resource::{setrlimit, Resource};
                setrlimit(Resource::RLIMIT_NOFILE, 256, 256).map_err(std::io::Error::from)
            });
        }
    });
    let status = |g: &Gateway| {
        let (code, out, err) = g.claw(&["gateway", "status", "--json"]);
        assert_eq!(code, 0, "the admin socket answers: {err}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let cap = status(&g)["maxConnections"].as_u64().unwrap();
    assert!(
        (16..=128).contains(&cap),
        "capped below 256 descriptors: {cap}"
    );

    let token = g.token();
    let creds = Creds {
        token: Some(&token),
        scopes: &["operator.read"],
        ..Default::default()
    };
    let attempts = 3 * cap;
    let (mut held, mut refused) = (Vec::new(), 0u64);
    for i in 0..attempts {
        match tokio::time::timeout(STEP, session(g.port, source(i), &creds)).await {
            Err(_) => panic!("attempt {i} hung"),
            Ok(Ok((ws, _))) => held.push(ws),
            Ok(Err(e)) => {
                assert!(e.contains("503"), "attempt {i}: {e}");
                refused += 1;
            }
        }
    }
    assert!(
        held.len() as u64 <= cap,
        "{} held over a cap of {cap}",
        held.len()
    );
    assert!(
        held.len() as u64 >= cap / 2,
        "only {} held (cap {cap})",
        held.len()
    );
    assert!(refused >= cap, "{refused} refused");
    // Full, and still administrable: the admin socket answers and the store is read.
    assert!(status(&g)["openSockets"].as_u64().unwrap() >= held.len() as u64);
    let (code, _, err) = g.claw(&["devices", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    for (i, ws) in held.iter_mut().enumerate().take(4) {
        health(ws, &format!("h{i}"))
            .await
            .expect("held sessions serve");
    }

    drop(held);
    let t0 = Instant::now();
    while status(&g)["openSockets"].as_u64().unwrap() > 0 && t0.elapsed() < STEP {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut ws, _) = session(g.port, source(0), &creds)
        .await
        .expect("served again after the sessions went");
    health(&mut ws, "after").await.unwrap();
}
