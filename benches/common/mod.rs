//! What both benches (`gateway` and `tunnel`) share: the smoke-run switch, child-process and
//! port helpers, the WebSocket client, statistics, and the report's machine line and verdicts.
//! Each bench includes it with `mod common;`; the WebSocket helpers take each bench's own
//! per-step bound as `step`.

use std::fmt::Display;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client WebSocket to the gateway (or the floor), over plain TCP.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
/// A result whose error is a message for the bench's final report.
pub(crate) type Res<T> = Result<T, String>;

/// Any displayable error as a `String`, for `map_err(s)`.
pub(crate) fn s<E: Display>(e: E) -> String {
    e.to_string()
}

/// A smoke run: `CLAW_BENCH_QUICK` set (not empty or `0`), or not run by `cargo bench` at all.
pub(crate) fn quick_mode() -> bool {
    let quick_env = std::env::var("CLAW_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let under_bench = std::env::args().any(|a| a == "--bench");
    quick_env || !under_bench
}

// ---------------------------------------------------------------------------------------------
// Processes and ports

/// Children die with the bench (SIGKILL on parent death).
pub(crate) fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is a single async-signal-safe syscall; nothing is allocated
    // or locked between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

/// A loopback TCP port that was free a moment ago.
pub(crate) fn free_port() -> Res<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(s)?;
    Ok(l.local_addr().map_err(s)?.port())
}

/// Raises the soft open-file limit towards `want` (capped at the hard limit); returns the new one.
pub(crate) fn raise_nofile(want: u64) -> Res<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(s)?;
    if soft >= want {
        return Ok(soft);
    }
    let new = want.min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, new, hard).map_err(s)?;
    Ok(new)
}

// ---------------------------------------------------------------------------------------------
// WebSocket client (each step bounded by `step`)

/// The `connect` params of an operator client (read scope) authenticating with `token`.
pub(crate) fn connect_params(token: &str) -> Value {
    json!({
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "claw-bench", "version": "0", "platform": "linux", "deviceFamily": "Linux", "mode": "cli"},
        "caps": [], "role": "operator", "scopes": ["operator.read"],
        "auth": {"token": token},
    })
}

/// Opens a WebSocket to `url` (TCP_NODELAY), bounded by `step`.
pub(crate) async fn open_ws(url: &str, step: Duration) -> Res<Ws> {
    let (ws, _) = tokio::time::timeout(
        step,
        tokio_tungstenite::connect_async_with_config(url, None, true),
    )
    .await
    .map_err(|_| format!("ws connect to {url} timed out"))?
    .map_err(|e| format!("ws connect to {url}: {e}"))?;
    Ok(ws)
}

/// Next JSON text frame (pings skipped), bounded in frames and, per frame, by `step`.
pub(crate) async fn next_json(ws: &mut Ws, step: Duration) -> Res<Value> {
    for _ in 0..64 {
        let msg = tokio::time::timeout(step, ws.next())
            .await
            .map_err(|_| "timed out waiting for a frame".to_string())?;
        match msg {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).map_err(s),
            Some(Ok(Message::Close(f))) => return Err(format!("closed: {f:?}")),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("connection lost".into()),
        }
    }
    Err("too many non-text frames".into())
}

/// Waits for the successful response to `id`, skipping events (bounded).
pub(crate) async fn response(ws: &mut Ws, id: &str, step: Duration) -> Res<Value> {
    for _ in 0..64 {
        let v = next_json(ws, step).await?;
        if v["type"] == "res" && v["id"] == id {
            if v["ok"] != true {
                return Err(format!("request {id} failed: {}", v["error"]));
            }
            return Ok(v);
        }
    }
    Err(format!("no response to {id}"))
}

/// One `health` request (id `h{n}`) on an authenticated session, waiting for its response.
pub(crate) async fn health(ws: &mut Ws, n: usize, step: Duration) -> Res<()> {
    let id = format!("h{n}");
    let frame = format!(r#"{{"type":"req","id":"{id}","method":"health","params":{{}}}}"#);
    ws.send(Message::Text(frame.into())).await.map_err(s)?;
    response(ws, &id, step).await.map(|_| ())
}

// ---------------------------------------------------------------------------------------------
// Statistics

/// A sorted copy (total order, so NaNs do not panic).
pub(crate) fn sorted(v: &[f64]) -> Vec<f64> {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// Median (mean of the middle two for an even count); NaN when empty.
pub(crate) fn median(v: &[f64]) -> f64 {
    let v = sorted(v);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Nearest-rank percentile (`q` in 0..=1); NaN when empty.
pub(crate) fn percentile(v: &[f64], q: f64) -> f64 {
    let v = sorted(v);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Per-round ratios a/b of paired per-round figures: (min, median, max); NaNs when empty.
pub(crate) fn round_ratios(a: &[f64], b: &[f64]) -> (f64, f64, f64) {
    let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    let s = sorted(&r);
    if s.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    (s[0], median(&r), s[s.len() - 1])
}

// ---------------------------------------------------------------------------------------------
// Report

/// One line describing the machine: cores, CPU model and kernel release.
pub(crate) fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|x| x.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, {cpu}, Linux {}", kernel.trim())
}

/// "met" or "MISSED", for a target column.
pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}
