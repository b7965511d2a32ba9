//! `cargo bench --bench gateway`: the claw gateway against a trivial WebSocket "floor" server,
//! both measured in the same run, in alternating rounds, reporting medians, p99 and ratios.
//!
//! Figures:
//! - cold start: spawn `claw --home <fresh tmp> gateway run --port <free port>` and time until a
//!   WebSocket handshake ending in `hello-ok` succeeds (connect polled every 0.5 ms). The floor's
//!   cold start (spawn this bench binary as a floor server) is measured alongside; OpenClaw's
//!   8.5 s is a figure measured once on a quiet machine of this size, not measured here.
//! - connect + auth handshake: WS open → `connect.challenge` → `connect` with the shared token →
//!   `hello-ok`, sequential, one fresh socket each.
//! - `health` round trip: sequential calls on one authenticated session.
//! - RSS: VmRSS of an idle gateway, then with N authenticated idle sockets held open.
//!
//! The floor is a trivial tokio-tungstenite server compiled into this binary: it sends a
//! challenge, answers any `connect` with a minimal `hello-ok` (no auth, no store) and `health`
//! with `{"ok":true}`. By default it runs in its own process (this binary re-executed), like claw
//! and like the Node `ws` floor in anchors.md; `CLAW_BENCH_FLOOR=thread` runs it in-process on its
//! own multi-thread runtime instead.
//!
//! Environment: `CLAW_BENCH_QUICK=1` (or running without `--bench`, e.g. under
//! `cargo test --benches`) selects a few-second smoke run.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use common::{
    connect_params, die_with_parent, free_port, health, machine, median, next_json, open_ws,
    percentile, quick_mode, raise_nofile, response, round_ratios, s, sorted, verdict, Res, Ws,
};

/// Set in a re-executed copy of this binary: serve the floor on this port.
const FLOOR_ENV: &str = "CLAW_BENCH_FLOOR_SERVE";
/// OpenClaw 2026.9.6 cold start → first accepted connection, median (anchors.md; NOT measured here).
const OPENCLAW_COLD_START_MS: f64 = 8_500.0;
/// Targets from anchors.md.
const TARGET_COLD_START_MS: f64 = 20.0;
const TARGET_IDLE_RSS_MIB: f64 = 15.0;
const TARGET_PER_SOCKET_KIB: f64 = 10.0;
const TARGET_RATIO: f64 = 1.3;
/// Bound on any single network step.
const STEP: Duration = Duration::from_secs(5);
/// Bound on a cold start.
const START_DEADLINE: Duration = Duration::from_secs(15);
/// Interval between connect attempts while waiting for a cold start.
const POLL: Duration = Duration::from_micros(500);

// ---------------------------------------------------------------------------------------------
// Plan

#[derive(Clone, Copy)]
struct Plan {
    quick: bool,
    cold_rounds: usize,
    hs_warmup: usize,
    hs_rounds: usize,
    hs_per_round: usize,
    health_warmup: usize,
    health_rounds: usize,
    health_per_round: usize,
    sockets: usize,
    floor_in_process: bool,
}

impl Plan {
    fn new(quick: bool, floor_in_process: bool) -> Self {
        if quick {
            Plan {
                quick,
                cold_rounds: 3,
                hs_warmup: 5,
                hs_rounds: 4,
                hs_per_round: 10,
                health_warmup: 20,
                health_rounds: 4,
                health_per_round: 50,
                sockets: 100,
                floor_in_process,
            }
        } else {
            Plan {
                quick,
                cold_rounds: 9,
                hs_warmup: 20,
                hs_rounds: 10,
                hs_per_round: 20,
                health_warmup: 100,
                health_rounds: 10,
                health_per_round: 100,
                sockets: 1000,
                floor_in_process,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The floor server

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn floor_serve(listener: TcpListener) {
    // Runs until the process (or, in thread mode, the bench) exits.
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(floor_conn(stream));
    }
}

/// The same WebSocket buffer settings as claw (4 KiB read buffer, unbuffered writes, 1 MiB
/// messages), so the floor is claw's transport stack minus auth, store and protocol work.
/// (tungstenite's defaults allocate a 128 KiB read buffer per socket, which makes a slower and
/// much larger "floor" than claw itself.)
fn floor_ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
}

async fn floor_conn(stream: TcpStream) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static CONN: AtomicU64 = AtomicU64::new(1);
    let Ok(mut ws) =
        tokio_tungstenite::accept_async_with_config(stream, Some(floor_ws_config())).await
    else {
        return;
    };
    let conn = CONN.fetch_add(1, Ordering::Relaxed);
    let nonce = format!(
        "{:016x}{:016x}",
        conn,
        now_ms().wrapping_mul(0x9e37_79b9_7f4a_7c15)
    );
    let challenge =
        json!({"type":"event","event":"connect.challenge","payload":{"nonce":nonce,"ts":now_ms()}});
    if ws
        .send(Message::Text(challenge.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    while let Some(Ok(msg)) = ws.next().await {
        let text = match msg {
            Message::Text(t) => t,
            Message::Close(_) => break,
            _ => continue,
        };
        let Ok(req) = serde_json::from_str::<Value>(&text) else {
            break;
        };
        let payload = match req["method"].as_str() {
            Some("connect") => json!({
                "type": "hello-ok",
                "protocol": 4,
                "server": {"version": "floor", "connId": conn.to_string()},
                "features": {"methods": ["health"], "events": []},
                "snapshot": {},
                "auth": {"method": "token", "role": "operator", "scopes": []},
                "policy": {"maxPayload": 1_048_576, "maxBufferedBytes": 2_097_152, "tickIntervalMs": 30_000},
            }),
            _ => json!({"ok": true}),
        };
        let res = json!({"type":"res","id":req["id"],"ok":true,"payload":payload});
        if ws
            .send(Message::Text(res.to_string().into()))
            .await
            .is_err()
        {
            break;
        }
    }
}

/// Entry point of a re-executed copy of this binary serving the floor.
fn floor_process_main(port: &str) {
    let port: u16 = port.parse().expect("floor port");
    // Exit when the bench closes our stdin, so a dead bench leaves no server behind.
    std::thread::spawn(|| {
        let mut buf = [0u8; 64];
        for _ in 0..1_000_000 {
            match std::io::stdin().read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let l = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("floor bind");
        floor_serve(l).await
    });
}

/// Starts the floor in-process on its own 2-worker runtime (CLAW_BENCH_FLOOR=thread).
fn floor_thread(port: u16) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let l = TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("floor bind");
            floor_serve(l).await
        });
    });
}

// ---------------------------------------------------------------------------------------------
// Targets (a running server)

struct Target {
    name: &'static str,
    child: Option<Child>,
    url: String,
    /// The complete `connect` request frame (with this target's token).
    frame: String,
    log: Option<PathBuf>,
    _tmp: Option<tempfile::TempDir>,
}

impl Target {
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Fails if the child exited, with its stderr.
    fn check_alive(&mut self) -> Res<()> {
        let Some(c) = self.child.as_mut() else {
            return Ok(());
        };
        if let Ok(Some(st)) = c.try_wait() {
            let log = self
                .log
                .as_ref()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default();
            return Err(format!("{} exited ({st}): {}", self.name, log.trim()));
        }
        Ok(())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn connect_frame(token: &str) -> String {
    json!({"type": "req", "id": "c1", "method": "connect", "params": connect_params(token)})
        .to_string()
}

enum Token {
    Fixed(String),
    File(PathBuf),
}

/// Spawns claw in a fresh home; returns it once a handshake succeeded, with the time from spawn
/// to `hello-ok`.
async fn start_claw() -> Res<(Target, Duration)> {
    let tmp = tempfile::tempdir().map_err(s)?;
    let home = tmp.path().join("home");
    let log = tmp.path().join("claw.stderr");
    start_claw_in(home, log, Some(tmp)).await
}

/// Spawns claw on `home` (fresh or existing).
async fn start_claw_in(
    home: PathBuf,
    log: PathBuf,
    tmp: Option<tempfile::TempDir>,
) -> Res<(Target, Duration)> {
    let port = free_port()?;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_claw"));
    cmd.arg("--home")
        .arg(&home)
        .args(["gateway", "run", "--port", &port.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).map_err(s)?);
    die_with_parent(&mut cmd);
    let t0 = Instant::now();
    let child = cmd.spawn().map_err(|e| format!("spawn claw: {e}"))?;
    let mut t = Target {
        name: "claw",
        child: Some(child),
        url: format!("ws://127.0.0.1:{port}/"),
        frame: String::new(),
        log: Some(log),
        _tmp: tmp,
    };
    let took = first_hello(&mut t, t0, Token::File(home.join("gateway.token"))).await?;
    Ok((t, took))
}

/// SIGTERM and a bounded wait for a graceful exit (then `Drop` kills whatever is left).
fn stop_gracefully(mut t: Target) {
    if let Some(c) = t.child.as_mut() {
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..500 {
            if !matches!(c.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Spawns the floor (a process, or a thread with CLAW_BENCH_FLOOR=thread).
async fn start_floor(in_process: bool) -> Res<(Target, Duration)> {
    let port = free_port()?;
    let t0;
    let child = if in_process {
        t0 = Instant::now();
        floor_thread(port);
        None
    } else {
        let mut cmd = Command::new(std::env::current_exe().map_err(s)?);
        cmd.env(FLOOR_ENV, port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        die_with_parent(&mut cmd);
        t0 = Instant::now();
        Some(cmd.spawn().map_err(|e| format!("spawn floor: {e}"))?)
    };
    let mut t = Target {
        name: "floor",
        child,
        url: format!("ws://127.0.0.1:{port}/"),
        frame: String::new(),
        log: None,
        _tmp: None,
    };
    let took = first_hello(&mut t, t0, Token::Fixed("floor-token".into())).await?;
    Ok((t, took))
}

/// Polls until a full handshake succeeds; sets the target's connect frame.
async fn first_hello(t: &mut Target, t0: Instant, token: Token) -> Res<Duration> {
    let deadline = t0 + START_DEADLINE;
    for _ in 0..100_000 {
        t.check_alive()?;
        if Instant::now() > deadline {
            return Err(format!(
                "{} did not accept a connection within {START_DEADLINE:?}",
                t.name
            ));
        }
        let ws = match open_ws(&t.url, STEP).await {
            Ok(ws) => ws,
            Err(_) => {
                // A blocking sleep: tokio's timer has 1 ms granularity and nothing else runs here.
                std::thread::sleep(POLL);
                continue;
            }
        };
        let tok = match &token {
            Token::Fixed(x) => x.clone(),
            Token::File(p) => read_token(p)?,
        };
        t.frame = connect_frame(&tok);
        let ws = finish_handshake(ws, &t.frame)
            .await
            .map_err(|e| format!("{}: {e}", t.name))?;
        let took = t0.elapsed();
        close_ws(ws).await;
        return Ok(took);
    }
    Err(format!("{} never accepted a connection", t.name))
}

fn read_token(p: &Path) -> Res<String> {
    let t = std::fs::read_to_string(p).map_err(|e| format!("read {}: {e}", p.display()))?;
    Ok(t.trim().to_string())
}

// ---------------------------------------------------------------------------------------------
// The client (the same code for both targets)

async fn finish_handshake(mut ws: Ws, frame: &str) -> Res<Ws> {
    let ch = next_json(&mut ws, STEP).await?;
    if ch["event"] != "connect.challenge" {
        return Err(format!("expected connect.challenge, got {ch}"));
    }
    ws.send(Message::Text(frame.to_owned().into()))
        .await
        .map_err(s)?;
    let res = response(&mut ws, "c1", STEP).await?;
    if res["payload"]["type"] != "hello-ok" {
        return Err(format!("expected hello-ok, got {res}"));
    }
    Ok(ws)
}

async fn handshake(t: &Target) -> Res<Ws> {
    let ws = open_ws(&t.url, STEP).await?;
    finish_handshake(ws, &t.frame)
        .await
        .map_err(|e| format!("{}: {e}", t.name))
}

/// Closes politely and waits (bounded) for the server's close, outside any timing.
async fn close_ws(mut ws: Ws) {
    let _ = tokio::time::timeout(STEP, async {
        let _ = ws.close(None).await;
        for _ in 0..64 {
            match ws.next().await {
                Some(Ok(_)) => continue,
                _ => break,
            }
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Statistics

#[derive(Default)]
struct Samples {
    all: Vec<f64>,         // microseconds
    rounds: Vec<Vec<f64>>, // per round
}

impl Samples {
    fn round(&mut self) {
        self.rounds.push(Vec::new());
    }
    fn push(&mut self, d: Duration) {
        let us = d.as_secs_f64() * 1e6;
        self.all.push(us);
        if let Some(r) = self.rounds.last_mut() {
            r.push(us);
        }
    }
    fn median(&self) -> f64 {
        median(&self.all)
    }
    fn p99(&self) -> f64 {
        percentile(&self.all, 0.99)
    }
    /// The median of each round, in round order.
    fn round_medians(&self) -> Vec<f64> {
        self.rounds.iter().map(|r| median(r)).collect()
    }
}

fn ms(us: f64) -> String {
    format!("{:.3} ms", us / 1000.0)
}

// ---------------------------------------------------------------------------------------------
// Phases

struct ColdStart {
    claw: Samples,
    /// claw restarted on a home that already has its token and store.
    restart: Samples,
    floor: Samples,
}

async fn cold_start(p: &Plan) -> Res<ColdStart> {
    // One discarded start each, so the binaries and libraries are in the page cache; the first
    // also creates the home that the restart series reuses.
    let persist = tempfile::tempdir().map_err(s)?;
    let home = persist.path().join("home");
    let log = persist.path().join("claw.stderr");
    stop_gracefully(start_claw_in(home.clone(), log.clone(), None).await?.0);
    drop(start_claw().await?);
    drop(start_floor(false).await?);
    let mut out = ColdStart {
        claw: Samples::default(),
        restart: Samples::default(),
        floor: Samples::default(),
    };
    for r in 0..p.cold_rounds {
        // Rotate the order so no series always runs right after another.
        for k in 0..3 {
            match (r + k) % 3 {
                0 => {
                    let (t, d) = start_claw().await?;
                    out.claw.push(d);
                    drop(t);
                }
                1 => {
                    let (t, d) = start_claw_in(home.clone(), log.clone(), None).await?;
                    out.restart.push(d);
                    stop_gracefully(t);
                }
                _ => {
                    let (t, d) = start_floor(false).await?;
                    out.floor.push(d);
                    drop(t);
                }
            }
        }
    }
    Ok(out)
}

/// ABBA ordering: claw first in even rounds, floor first in odd rounds.
fn order(round: usize) -> [usize; 2] {
    if round.is_multiple_of(2) {
        [0, 1]
    } else {
        [1, 0]
    }
}

struct Latency {
    hs: [Samples; 2],
    health: [Samples; 2],
}

async fn latency(p: &Plan) -> Res<Latency> {
    let (claw, _) = start_claw().await?;
    let (floor, _) = start_floor(p.floor_in_process).await?;
    let targets = [&claw, &floor];
    // Warm-up, not recorded.
    for t in targets {
        for _ in 0..p.hs_warmup {
            close_ws(handshake(t).await?).await;
        }
    }
    let mut hs = [Samples::default(), Samples::default()];
    for r in 0..p.hs_rounds {
        for which in order(r) {
            hs[which].round();
            for _ in 0..p.hs_per_round {
                let t0 = Instant::now();
                let ws = handshake(targets[which]).await?;
                hs[which].push(t0.elapsed());
                close_ws(ws).await;
            }
        }
    }
    let mut sessions = [handshake(&claw).await?, handshake(&floor).await?];
    let mut n = 0;
    for ws in sessions.iter_mut() {
        for _ in 0..p.health_warmup {
            n += 1;
            health(ws, n, STEP).await?;
        }
    }
    let mut he = [Samples::default(), Samples::default()];
    for r in 0..p.health_rounds {
        for which in order(r) {
            he[which].round();
            for _ in 0..p.health_per_round {
                n += 1;
                let t0 = Instant::now();
                health(&mut sessions[which], n, STEP).await?;
                he[which].push(t0.elapsed());
            }
        }
    }
    for ws in sessions {
        close_ws(ws).await;
    }
    Ok(Latency { hs, health: he })
}

fn rss_kib(pid: u32) -> Res<u64> {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(s)?;
    st.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS".to_string())
}

struct Memory {
    idle_kib: u64,
    loaded_kib: u64,
    sockets: usize,
}

impl Memory {
    fn per_socket_kib(&self) -> f64 {
        (self.loaded_kib as f64 - self.idle_kib as f64) / self.sockets as f64
    }
}

async fn memory(mut t: Target, sockets: usize) -> Res<Memory> {
    let pid = t.pid().ok_or("no child process")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_kib = rss_kib(pid)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut held = Vec::with_capacity(sockets);
    for i in 0..sockets {
        if Instant::now() > deadline {
            return Err(format!("{}: only {i} sockets opened in 120 s", t.name));
        }
        held.push(
            handshake(&t)
                .await
                .map_err(|e| format!("socket {i}: {e}"))?,
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    t.check_alive()?;
    let loaded_kib = rss_kib(pid)?;
    drop(held);
    Ok(Memory {
        idle_kib,
        loaded_kib,
        sockets,
    })
}

// ---------------------------------------------------------------------------------------------
// Report

fn row(fig: &str, claw: &str, floor: &str, ratio: &str, target: &str) {
    println!("| {fig:<44} | {claw:>12} | {floor:>12} | {ratio:>7} | {target:<40} |");
}

async fn run(p: Plan) -> Res<()> {
    let floor_kind = if p.floor_in_process {
        "in-process thread (CLAW_BENCH_FLOOR=thread)"
    } else {
        "separate process (this binary re-executed)"
    };
    println!(
        "claw gateway benchmark — {} mode",
        if p.quick { "QUICK" } else { "full" }
    );
    println!("machine: {}", machine());
    println!("claw binary: {}", env!("CARGO_BIN_EXE_claw"));
    println!("floor: trivial tokio-tungstenite server, {floor_kind}");
    // Room for N client sockets plus the gateway's (a child inherits the raised limit).
    let limit = raise_nofile(p.sockets as u64 * 2 + 512)?;
    let sockets = p
        .sockets
        .min((limit as usize).saturating_sub(512) / 2)
        .max(1);
    println!("RLIMIT_NOFILE soft limit: {limit}");
    println!();

    eprintln!(
        "[1/3] cold start, {} rounds each (+1 discarded warm-up)…",
        p.cold_rounds
    );
    let cold = cold_start(&p).await?;
    eprintln!(
        "[2/3] handshake {}×{} and health {}×{} per target, alternating rounds…",
        p.hs_rounds, p.hs_per_round, p.health_rounds, p.health_per_round
    );
    let lat = latency(&p).await?;
    eprintln!("[3/3] RSS: idle, then {sockets} authenticated idle sockets…");
    let claw_mem = memory(start_claw().await?.0, sockets).await?;
    let floor_mem = if p.floor_in_process {
        None
    } else {
        Some(memory(start_floor(false).await?.0, sockets).await?)
    };

    let cold_claw = cold.claw.median();
    let cold_floor = cold.floor.median();
    let [hs_c, hs_f] = &lat.hs;
    let [he_c, he_f] = &lat.health;
    let hs_ratio = hs_c.median() / hs_f.median();
    let he_ratio = he_c.median() / he_f.median();
    let (hs_lo, hs_mid, hs_hi) = round_ratios(&hs_c.round_medians(), &hs_f.round_medians());
    let (he_lo, he_mid, he_hi) = round_ratios(&he_c.round_medians(), &he_f.round_medians());

    row("figure", "claw", "floor", "ratio", "target (anchors.md)");
    println!(
        "|{:-<46}|{:-<14}|{:-<14}|{:-<9}|{:-<42}|",
        "", "", "", "", ""
    );
    row(
        &format!("cold start → hello-ok, median (n={})", cold.claw.all.len()),
        &ms(cold_claw),
        &ms(cold_floor),
        &format!("{:.2}×", cold_claw / cold_floor),
        &format!(
            "< {TARGET_COLD_START_MS} ms: {}",
            verdict(cold_claw / 1000.0 < TARGET_COLD_START_MS)
        ),
    );
    let range = |v: &[f64]| format!("{:.1}…{:.1}", sorted(v)[0] / 1e3, percentile(v, 1.0) / 1e3);
    row(
        "cold start, min … max (ms)",
        &range(&cold.claw.all),
        &range(&cold.floor.all),
        "",
        "",
    );
    let restart = cold.restart.median();
    row(
        &format!(
            "restart on existing home, median (n={})",
            cold.restart.all.len()
        ),
        &ms(restart),
        &ms(cold_floor),
        &format!("{:.2}×", restart / cold_floor),
        &format!("min … max {} ms", range(&cold.restart.all)),
    );
    row(
        "cold start, OpenClaw (NOT measured here)",
        &ms(OPENCLAW_COLD_START_MS * 1000.0),
        "",
        &format!("{:.4}×", cold_claw / 1000.0 / OPENCLAW_COLD_START_MS),
        "reference constant from anchors.md",
    );
    row(
        &format!("handshake median (n={})", hs_c.all.len()),
        &ms(hs_c.median()),
        &ms(hs_f.median()),
        &format!("{hs_ratio:.2}×"),
        &format!(
            "≤ {TARGET_RATIO}× floor: {}",
            verdict(hs_ratio <= TARGET_RATIO)
        ),
    );
    row(
        "handshake p99",
        &ms(hs_c.p99()),
        &ms(hs_f.p99()),
        &format!("{:.2}×", hs_c.p99() / hs_f.p99()),
        "(OpenClaw: median 2.5–4.2 ms, p99 6–8 ms)",
    );
    row(
        &format!("health round trip median (n={})", he_c.all.len()),
        &ms(he_c.median()),
        &ms(he_f.median()),
        &format!("{he_ratio:.2}×"),
        &format!(
            "≤ {TARGET_RATIO}× floor: {}",
            verdict(he_ratio <= TARGET_RATIO)
        ),
    );
    row(
        "health round trip p99",
        &ms(he_c.p99()),
        &ms(he_f.p99()),
        &format!("{:.2}×", he_c.p99() / he_f.p99()),
        "(OpenClaw: median 1.6–2.4 ms, p99 5–10 ms)",
    );
    let mib = |k: u64| format!("{:.2} MiB", k as f64 / 1024.0);
    let idle_mib = claw_mem.idle_kib as f64 / 1024.0;
    row(
        "RSS idle",
        &mib(claw_mem.idle_kib),
        &floor_mem
            .as_ref()
            .map(|m| mib(m.idle_kib))
            .unwrap_or_else(|| "n/a".into()),
        "",
        &format!(
            "< {TARGET_IDLE_RSS_MIB} MiB: {}",
            verdict(idle_mib < TARGET_IDLE_RSS_MIB)
        ),
    );
    row(
        &format!("RSS with {sockets} authenticated idle sockets"),
        &mib(claw_mem.loaded_kib),
        &floor_mem
            .as_ref()
            .map(|m| mib(m.loaded_kib))
            .unwrap_or_else(|| "n/a".into()),
        "",
        "",
    );
    let per = claw_mem.per_socket_kib();
    row(
        "RSS delta per socket",
        &format!("{per:.2} KiB"),
        &floor_mem
            .as_ref()
            .map(|m| format!("{:.2} KiB", m.per_socket_kib()))
            .unwrap_or_else(|| "n/a".into()),
        &floor_mem
            .as_ref()
            .map(|m| format!("{:.2}×", per / m.per_socket_kib()))
            .unwrap_or_default(),
        &format!(
            "< {TARGET_PER_SOCKET_KIB} KiB: {}",
            verdict(per < TARGET_PER_SOCKET_KIB)
        ),
    );
    println!();
    println!(
        "per-round claw/floor ratio of medians — handshake: min {hs_lo:.2}×, median {hs_mid:.2}×, max {hs_hi:.2}× ({} rounds of {}); health: min {he_lo:.2}×, median {he_mid:.2}×, max {he_hi:.2}× ({} rounds of {})",
        p.hs_rounds, p.hs_per_round, p.health_rounds, p.health_per_round
    );
    println!(
        "claw minus floor, medians — handshake: {:+.1} µs; health: {:+.1} µs",
        hs_c.median() - hs_f.median(),
        he_c.median() - he_f.median()
    );
    Ok(())
}

fn main() {
    if let Ok(port) = std::env::var(FLOOR_ENV) {
        floor_process_main(&port);
        return;
    }
    let quick = quick_mode();
    let in_process = std::env::var("CLAW_BENCH_FLOOR")
        .map(|v| v == "thread")
        .unwrap_or(false);
    let plan = Plan::new(quick, in_process);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = rt.block_on(run(plan)) {
        eprintln!("benchmark failed: {e}");
        std::process::exit(1);
    }
}
