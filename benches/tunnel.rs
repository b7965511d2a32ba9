//! `cargo bench --bench tunnel`: claw's QUIC tunnel and built-in SSH forward against raw loopback
//! TCP and OpenSSH's own `sshd`, all measured in the same run, in alternating rounds, reporting
//! medians and ratios.
//!
//! Figures:
//! 1. Bulk single-stream throughput, TCP client → TCP sink on loopback, through
//!    (a) raw loopback TCP (the ceiling), (b) the claw QUIC tunnel (`claw gateway run --tunnel
//!    --expose sink=…`, a device home paired in-process, `client::up` with a forward to `sink`),
//!    (c) claw's SSH forward (`--ssh`, the device key authorised with `claw devices add-ssh-key`,
//!    the real OpenSSH client `ssh -N -L`), (d) OpenSSH's `sshd` (a private instance on a loopback
//!    port) doing the same forward. The SSH paths run with OpenSSH's default cipher
//!    (chacha20-poly1305) and with `-c aes128-gcm@openssh.com`. Each round moves up to
//!    `bulk_bytes` or stops sending after `bulk_secs`, whichever comes first; the rate is bytes
//!    received by the sink / (time the sink has the last byte − time the first byte was written).
//! 2. `health` round trip: sequential calls on one authenticated WebSocket session (shared token),
//!    direct to the gateway vs through the tunnel's local port vs through claw's SSH forward vs
//!    through `sshd -L` to the gateway port; medians, p99, added µs.
//! 3. `claw devices rotate-token --force` with N tunnelled devices, each holding a device-token
//!    WebSocket through its own `client::up` tunnel: time from spawning the command until every
//!    device's `device-token.json` has the new generation AND a fresh device-token connect
//!    through its tunnel succeeded.
//!
//! The load generator and the sink are plain blocking threads (the same code for every path).
//! The device side of the tunnel runs in this process on its own 2-worker tokio runtime (like a
//! separate `claw tunnel up`); the gateway, `ssh` and `sshd` are separate processes.
//!
//! Environment: `CLAW_BENCH_QUICK=1` (or running without `--bench`, e.g. `cargo test --benches`)
//! selects a few-second smoke run. `CLAW_BENCH_ONLY=bulk,latency,rotate` runs a subset.
//! `CLAW_BENCH_BULK_ROUNDS=N` overrides the number of bulk rounds;
//! `CLAW_BENCH_DEVICES=N` overrides the number of tunnelled devices for figure 3.
//! `CLAW_BENCH_DEVICE_RT=current` runs the in-process device side on a single-threaded runtime.
//! `CLAW_BENCH_PATHS=tunnel,raw` keeps only the bulk paths whose name contains one of the words.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use claw_gateway::auth::device_key::DeviceKey;
use claw_gateway::protocol::connect::parse_connect;
use claw_tunnel::device::DeviceHome;
use claw_tunnel::pairing::PairingUri;
use claw_tunnel::quic::client::{self, Tunnel, UpConfig};
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use common::{
    connect_params, die_with_parent, free_port, health, machine, median, next_json, open_ws,
    percentile, quick_mode, raise_nofile, response, round_ratios, s, sorted, verdict, Res, Ws,
};

const CLAW: &str = env!("CARGO_BIN_EXE_claw");
const SSHD: &str = "/usr/sbin/sshd";
/// Bound on any single network step.
const STEP: Duration = Duration::from_secs(10);
/// Copy size of the load generator and the sink.
const IO_CHUNK: usize = 256 * 1024;
/// Targets (anchors.md).
const TARGET_TUNNEL_VS_OPENSSH: f64 = 1.2;
const TARGET_SSH_VS_SSHD: f64 = 1.0;
const TARGET_ADDED_US: f64 = 100.0;
const TARGET_ROTATE_MS: f64 = 1000.0;

// ---------------------------------------------------------------------------------------------
// Plan

#[derive(Clone, Copy, Debug)]
struct Plan {
    quick: bool,
    bulk: bool,
    latency: bool,
    rotate: bool,
    bulk_rounds: usize,
    bulk_bytes: u64,
    bulk_secs: f64,
    lat_warmup: usize,
    lat_rounds: usize,
    lat_per_round: usize,
    devices: usize,
    rotations: usize,
}

impl Plan {
    fn from_env() -> Self {
        let quick = quick_mode();
        let only = std::env::var("CLAW_BENCH_ONLY").unwrap_or_default();
        let want = |k: &str| only.is_empty() || only.split(',').any(|x| x.trim() == k);
        let mut p = if quick {
            Plan {
                quick,
                bulk: true,
                latency: true,
                rotate: true,
                bulk_rounds: 2,
                bulk_bytes: 64 << 20,
                bulk_secs: 0.5,
                lat_warmup: 20,
                lat_rounds: 2,
                lat_per_round: 25,
                devices: 10,
                rotations: 1,
            }
        } else {
            Plan {
                quick,
                bulk: true,
                latency: true,
                rotate: true,
                bulk_rounds: 5,
                bulk_bytes: 1 << 30,
                bulk_secs: 3.0,
                lat_warmup: 100,
                lat_rounds: 10,
                lat_per_round: 100,
                devices: 100,
                rotations: 3,
            }
        };
        p.bulk = want("bulk");
        p.latency = want("latency");
        p.rotate = want("rotate");
        if let Some(n) = std::env::var("CLAW_BENCH_BULK_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            p.bulk_rounds = n;
        }
        if let Some(n) = std::env::var("CLAW_BENCH_DEVICES")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            p.devices = n;
        }
        p
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process, SIGKILLed on drop (and when the bench dies).
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, log: &Path) -> Res<Self> {
        let f = std::fs::File::create(log).map_err(s)?;
        cmd.stdin(Stdio::null()).stderr(f);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|e| format!("spawn {name}: {e}"))?;
        Ok(Self {
            name: name.into(),
            child,
            log: log.to_path_buf(),
        })
    }

    fn check_alive(&mut self) -> Res<()> {
        if let Ok(Some(st)) = self.child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: String = log
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            return Err(format!("{} exited ({st}):\n{tail}", self.name));
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when something listens on TCP `port` (any local address), from /proc/net/tcp{,6}:
/// checking by connecting would open a forwarded channel to the sink.
fn listening(port: u16) -> bool {
    let want = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        std::fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() > 3 && cols[1].ends_with(&want) && cols[3] == "0A"
            })
    })
}

/// `claw --home H args…` → (status, stdout, stderr).
fn claw_in(home: &Path, args: &[&str]) -> Res<(i32, String, String)> {
    let out = Command::new(CLAW)
        .arg("--home")
        .arg(home)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .map_err(s)?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn claw_ok(home: &Path, args: &[&str]) -> Res<String> {
    let (code, out, err) = claw_in(home, args)?;
    if code != 0 {
        return Err(format!("claw {args:?} exited {code}: {out}{err}"));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The gateway

struct Gateway {
    proc: Proc,
    home: PathBuf,
    port: u16,
    url: String,
    token: String,
    ssh_port: u16,
    ssh_known_hosts: String,
}

fn start_gateway(dir: &Path, sink: SocketAddr) -> Res<Gateway> {
    let home = dir.join("gateway-home");
    let expose = format!("sink={sink}");
    let mut cmd = Command::new(CLAW);
    cmd.arg("--home").arg(&home).args([
        "gateway",
        "run",
        "--port",
        "0",
        "--auth-fail-delay-ms",
        "0",
        "--tunnel",
        "127.0.0.1:0",
        "--ssh",
        "127.0.0.1:0",
        "--expose",
        &expose,
        "--pair-attempts-per-min",
        "1000",
        // The default pre-auth cap (32) applies per device to tunnelled sockets, so 100 devices
        // re-authenticating at once from one address need no special flag.
    ]);
    cmd.env("RUST_LOG", "warn").stdout(Stdio::piped());
    let mut proc = Proc::spawn("claw gateway", cmd, &dir.join("gateway.log"))?;
    let stdout = proc.child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        let _ = tx.send(line);
        // Keep draining so the gateway never blocks on a full pipe.
        let _ = std::io::copy(&mut r, &mut std::io::sink());
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .map_err(|_| "the gateway printed no ready line in 20 s".to_string())?;
    proc.check_alive()?;
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("ws://"))
        .ok_or_else(|| format!("no ready line, got {line:?}"))?
        .to_string();
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .ok_or("bad url")?;
    let rt: Value = {
        let mut v = Value::Null;
        for _ in 0..200 {
            if let Ok(t) = std::fs::read_to_string(home.join("gateway.json")) {
                v = serde_json::from_str(&t).unwrap_or(Value::Null);
                if v["ssh"]["addr"].is_string() && v["tunnel"]["addr"].is_string() {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        v
    };
    let ssh_addr: SocketAddr = rt["ssh"]["addr"]
        .as_str()
        .ok_or_else(|| format!("no ssh address in gateway.json: {rt}"))?
        .parse()
        .map_err(s)?;
    let ssh_known_hosts = rt["ssh"]["knownHosts"][0]
        .as_str()
        .ok_or("no knownHosts")?
        .to_string();
    let token = std::fs::read_to_string(home.join("gateway.token"))
        .map_err(s)?
        .trim()
        .to_string();
    Ok(Gateway {
        proc,
        home,
        port,
        url,
        token,
        ssh_port: ssh_addr.port(),
        ssh_known_hosts,
    })
}

// ---------------------------------------------------------------------------------------------
// Devices (in-process, like `claw tunnel pair` / `claw tunnel up`)

async fn pair_device(gw: &Gateway, home: &Path, name: &str) -> Res<()> {
    std::fs::create_dir_all(home).map_err(s)?;
    let out = claw_ok(&gw.home, &["pair", "--json", "--no-qr", "--name", name])?;
    let v: Value = serde_json::from_str(&out).map_err(s)?;
    let uri = PairingUri::parse(v["uri"].as_str().ok_or("no uri")?).map_err(s)?;
    // The gateway admits 50 QUIC handshakes per second per source address; all bench devices
    // share 127.0.0.1, so a refused handshake (the code is not spent) is retried.
    for attempt in 0..40 {
        match client::pair(&DeviceHome::new(home), &uri, Some(name.into()), |_| {}).await {
            Ok(_) => return Ok(()),
            Err(e) if attempt < 39 && e.to_string().contains("refused to accept") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(format!("pair {name}: {e}")),
        }
    }
    Err(format!("pair {name}: refused 40 times"))
}

/// `client::up` on the device runtime; returns once it is connected.
async fn tunnel_up(
    dev: &tokio::runtime::Handle,
    home: &Path,
    forwards: Vec<(SocketAddr, String)>,
) -> Res<Tunnel> {
    let t = start_tunnel(dev, home, forwards).await?;
    wait_connected(&t, Duration::from_secs(30)).await?;
    Ok(t)
}

async fn start_tunnel(
    dev: &tokio::runtime::Handle,
    home: &Path,
    forwards: Vec<(SocketAddr, String)>,
) -> Res<Tunnel> {
    let dh = DeviceHome::new(home);
    dev.spawn(async move {
        client::up(
            dh,
            UpConfig {
                listen: "127.0.0.1:0".parse().expect("addr"),
                forwards,
            },
        )
        .await
    })
    .await
    .map_err(s)?
    .map_err(s)
}

async fn wait_connected(t: &Tunnel, limit: Duration) -> Res<()> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if t.status().connected {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(format!(
        "tunnel never connected: {:?}",
        t.status().last_error
    ))
}

// ---------------------------------------------------------------------------------------------
// SSH: claw's forward and a private OpenSSH sshd

struct SshServer {
    name: &'static str,
    port: u16,
    user: String,
    known_hosts: PathBuf,
    _proc: Option<Proc>,
}

/// An OpenSSH key for the device, authorised on claw's SSH forward; returns (key path, public line).
fn ssh_device_key(gw: &Gateway, dir: &Path) -> Res<(PathBuf, String)> {
    let home = dir.join("ssh-device");
    let key = home.join("id_ed25519");
    let port = gw.ssh_port.to_string();
    let out = claw_ok(
        &home,
        &[
            "tunnel",
            "export-ssh-key",
            key.to_str().ok_or("path")?,
            "--port",
            &port,
        ],
    )?;
    let public = out
        .lines()
        .next()
        .and_then(|l| l.split("public key: ").nth(1))
        .ok_or_else(|| format!("no public key in {out:?}"))?
        .trim()
        .to_string();
    claw_ok(&gw.home, &["devices", "add-ssh-key", "ssh-bench", &public])?;
    Ok((key, public))
}

fn claw_ssh(gw: &Gateway, dir: &Path) -> Res<SshServer> {
    let kh = dir.join("known_hosts_claw");
    std::fs::write(&kh, format!("{}\n", gw.ssh_known_hosts)).map_err(s)?;
    Ok(SshServer {
        name: "claw --ssh",
        port: gw.ssh_port,
        user: "claw".into(),
        known_hosts: kh,
        _proc: None,
    })
}

/// A private sshd on a loopback port, its own config, host key and authorized_keys.
async fn start_sshd(dir: &Path, public: &str) -> Res<SshServer> {
    if !Path::new(SSHD).exists() {
        return Err(format!(
            "{SSHD} is missing (apt-get install -y openssh-server)"
        ));
    }
    let d = dir.join("sshd");
    std::fs::create_dir_all(&d).map_err(s)?;
    // sshd refuses to start without its privilege separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let hostkey = d.join("ssh_host_ed25519_key");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&hostkey)
        .stdin(Stdio::null())
        .status()
        .map_err(s)?;
    if !st.success() {
        return Err("ssh-keygen failed".into());
    }
    let auth = d.join("authorized_keys");
    std::fs::write(&auth, format!("{public}\n")).map_err(s)?;
    let port = free_port()?;
    let cfg = d.join("sshd_config");
    std::fs::write(
        &cfg,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\n\
             UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nAllowTcpForwarding yes\n\
             UseDNS no\nLogLevel ERROR\n",
            hostkey.display(),
            auth.display(),
            d.join("sshd.pid").display()
        ),
    )
    .map_err(s)?;
    let mut cmd = Command::new(SSHD);
    cmd.arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&cfg)
        .stdout(Stdio::null());
    let mut proc = Proc::spawn("sshd", cmd, &d.join("sshd.log"))?;
    let t0 = Instant::now();
    while !listening(port) {
        proc.check_alive()?;
        if t0.elapsed() > STEP {
            return Err("sshd never listened".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pubkey = std::fs::read_to_string(hostkey.with_extension("pub")).map_err(s)?;
    let kh = d.join("known_hosts");
    let key: Vec<&str> = pubkey.split_whitespace().take(2).collect();
    std::fs::write(&kh, format!("[127.0.0.1]:{port} {}\n", key.join(" "))).map_err(s)?;
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "root".into());
    Ok(SshServer {
        name: "OpenSSH sshd",
        port,
        user,
        known_hosts: kh,
        _proc: Some(proc),
    })
}

/// `ssh -N -L LOCAL:127.0.0.1:TARGET` (the real OpenSSH client); returns it with LOCAL once the
/// local port listens.
async fn ssh_forward(
    srv: &SshServer,
    key: &Path,
    cipher: Option<&str>,
    target: u16,
    log: &Path,
) -> Res<(Proc, u16)> {
    let local = free_port()?;
    let mut cmd = Command::new("ssh");
    cmd.args(["-p", &srv.port.to_string(), "-i"])
        .arg(key)
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            &format!("UserKnownHostsFile={}", srv.known_hosts.display()),
        ])
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "ConnectTimeout=10",
            "-F",
            "/dev/null",
        ]);
    if let Some(c) = cipher {
        cmd.args(["-c", c]);
    }
    cmd.args([
        "-N",
        "-L",
        &format!("{local}:127.0.0.1:{target}"),
        &format!("{}@127.0.0.1", srv.user),
    ])
    .stdout(Stdio::null());
    let name = format!("ssh -L via {}", srv.name);
    let mut proc = Proc::spawn(&name, cmd, log)?;
    let t0 = Instant::now();
    while !listening(local) {
        proc.check_alive()?;
        if t0.elapsed() > STEP {
            return Err(format!("{name}: the local port never listened"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((proc, local))
}

// ---------------------------------------------------------------------------------------------
// Figure 1: bulk throughput

/// The sink: every accepted connection first sends an 8-byte id, then the stream is handed to
/// the round waiting for that id.
struct Sink {
    addr: SocketAddr,
    rx: Mutex<mpsc::Receiver<(u64, StdStream)>>,
}

fn start_sink() -> Res<Sink> {
    let l = StdListener::bind("127.0.0.1:0").map_err(s)?;
    let addr = l.local_addr().map_err(s)?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = c.set_read_timeout(Some(STEP));
                let mut id = [0u8; 8];
                if c.read_exact(&mut id).is_ok() {
                    let _ = tx.send((u64::from_le_bytes(id), c));
                }
            });
        }
    });
    Ok(Sink {
        addr,
        rx: Mutex::new(rx),
    })
}

static ROUND_ID: AtomicU64 = AtomicU64::new(1);

/// One bulk transfer through `entry` (a local port that leads to the sink). Returns (bytes, s).
fn bulk_once(sink: &Sink, entry: SocketAddr, budget: u64, secs: f64) -> Res<(u64, f64)> {
    let id = ROUND_ID.fetch_add(1, Ordering::Relaxed);
    let mut out = StdStream::connect_timeout(&entry, STEP).map_err(s)?;
    out.write_all(&id.to_le_bytes()).map_err(s)?;
    let rx = sink.rx.lock().map_err(s)?;
    let t0 = Instant::now();
    let mut inc = loop {
        let left = STEP
            .checked_sub(t0.elapsed())
            .ok_or("the sink never saw the connection")?;
        match rx.recv_timeout(left) {
            Ok((got, c)) if got == id => break c,
            Ok(_) => continue, // a stale connection from an earlier round
            Err(_) => return Err("the sink never saw the connection".into()),
        }
    };
    drop(rx);
    let total = Arc::new(AtomicU64::new(u64::MAX));
    let start = Instant::now();
    let reader = {
        let total = total.clone();
        std::thread::spawn(move || -> Res<(u64, Instant)> {
            let _ = inc.set_read_timeout(Some(Duration::from_millis(100)));
            let mut buf = vec![0u8; IO_CHUNK];
            let mut got = 0u64;
            loop {
                match inc.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        got += n as u64;
                        if got >= total.load(Ordering::Acquire) {
                            break;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        if got >= total.load(Ordering::Acquire) {
                            break;
                        }
                        if start.elapsed() > Duration::from_secs(60) {
                            return Err(format!("sink stalled after {got} bytes"));
                        }
                    }
                    Err(e) => return Err(format!("sink: {e}")),
                }
            }
            Ok((got, Instant::now()))
        })
    };
    let buf: Vec<u8> = (0..IO_CHUNK).map(|i| (i * 31 % 251) as u8).collect();
    let limit = Duration::from_secs_f64(secs);
    let mut sent = 0u64;
    let send_result = (|| -> Res<()> {
        while sent < budget && start.elapsed() < limit {
            let n = (budget - sent).min(IO_CHUNK as u64) as usize;
            out.write_all(&buf[..n]).map_err(s)?;
            sent += n as u64;
        }
        Ok(())
    })();
    total.store(sent, Ordering::Release);
    let _ = out.shutdown(Shutdown::Write);
    let (got, end) = reader.join().map_err(|_| "sink thread panicked")??;
    send_result?;
    if got != sent {
        return Err(format!("sent {sent} bytes, the sink got {got}"));
    }
    Ok((got, (end - start).as_secs_f64()))
}

struct BulkPath {
    name: String,
    entry: SocketAddr,
    /// Whose CPU time is the forward's: both ends (not the load generator or the sink).
    cpu: Vec<Cpu>,
    mbps: Vec<f64>, // per round, MB/s (10^6 bytes)
    /// Per round: MB moved per CPU-second spent by the forward (both ends). Much steadier than
    /// MB/s on a shared machine, where the forward gets whatever share of the cores is left.
    mb_per_cpu_s: Vec<f64>,
}

/// A CPU-time source, read from /proc (clock ticks, USER_HZ = 100).
#[derive(Clone, Copy)]
enum Cpu {
    /// One process (all its threads).
    Process(u32),
    /// Every descendant of a process (sshd's per-connection children), not the process itself.
    Descendants(u32),
    /// This process's threads named `device` (the in-process tunnel client's runtime).
    DeviceThreads,
}

fn stat_ticks(path: &str) -> Option<(u64, u32)> {
    let st = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command: state ppid … utime(14) stime(15).
    let rest = &st[st.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some((ticks, ppid))
}

fn cpu_ticks(sources: &[Cpu]) -> u64 {
    let mut total = 0;
    for c in sources {
        match *c {
            Cpu::Process(pid) => {
                total += stat_ticks(&format!("/proc/{pid}/stat")).map_or(0, |x| x.0);
            }
            Cpu::Descendants(root) => {
                let mut procs: Vec<(u32, u32, u64)> = Vec::new();
                if let Ok(rd) = std::fs::read_dir("/proc") {
                    for e in rd.flatten() {
                        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse().ok()) else {
                            continue;
                        };
                        if let Some((t, pp)) = stat_ticks(&format!("/proc/{pid}/stat")) {
                            procs.push((pid, pp, t));
                        }
                    }
                }
                let mut set = vec![root];
                let mut grew = true;
                while grew {
                    grew = false;
                    for (pid, pp, _) in &procs {
                        if set.contains(pp) && !set.contains(pid) {
                            set.push(*pid);
                            grew = true;
                        }
                    }
                }
                total += procs
                    .iter()
                    .filter(|(pid, _, _)| *pid != root && set.contains(pid))
                    .map(|x| x.2)
                    .sum::<u64>();
            }
            Cpu::DeviceThreads => {
                if let Ok(rd) = std::fs::read_dir("/proc/self/task") {
                    for e in rd.flatten() {
                        let dir = e.path();
                        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
                        if comm.trim() == "device" {
                            total += stat_ticks(&dir.join("stat").display().to_string())
                                .map_or(0, |x| x.0);
                        }
                    }
                }
            }
        }
    }
    total
}

fn bulk(p: &Plan, sink: &Sink, paths: &mut [BulkPath]) -> Res<()> {
    // Warm-up: one short transfer per path (connection setup, windows, caches).
    for path in paths.iter() {
        bulk_once(sink, path.entry, 16 << 20, 0.3).map_err(|e| format!("{}: {e}", path.name))?;
    }
    let n = paths.len();
    for round in 0..p.bulk_rounds {
        // Alternate: each round starts at a different path.
        for k in 0..n {
            let i = (round + k) % n;
            let path = &mut paths[i];
            let c0 = cpu_ticks(&path.cpu);
            let (bytes, secs) = bulk_once(sink, path.entry, p.bulk_bytes, p.bulk_secs)
                .map_err(|e| format!("{}: {e}", path.name))?;
            let cpu_s = (cpu_ticks(&path.cpu) - c0) as f64 / 100.0;
            let mbps = bytes as f64 / 1e6 / secs;
            let eff = if path.cpu.is_empty() || cpu_s <= 0.0 {
                f64::NAN
            } else {
                bytes as f64 / 1e6 / cpu_s
            };
            eprintln!(
                "  bulk round {}/{}: {:<44} {:>6.0} MB/s ({} MiB in {:.2} s; forward CPU {:.2} s, {:.0} MB per CPU-s)",
                round + 1,
                p.bulk_rounds,
                path.name,
                mbps,
                bytes >> 20,
                secs,
                cpu_s,
                eff
            );
            path.mbps.push(mbps);
            path.mb_per_cpu_s.push(eff);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// WebSocket client

/// Opens a session: shared token, or a device token signed by `device`.
async fn session(url: &str, token: &str, device: Option<&DeviceKey>) -> Res<(Value, Ws)> {
    let mut ws = open_ws(url, STEP).await?;
    let ch = next_json(&mut ws, STEP).await?;
    if ch["event"] != "connect.challenge" {
        return Err(format!("expected connect.challenge, got {ch}"));
    }
    let mut params = connect_params(token);
    if let Some(k) = device {
        let parsed = parse_connect(&params)?;
        let nonce = ch["payload"]["nonce"].as_str().ok_or("no nonce")?;
        let ts = ch["payload"]["ts"].as_u64().ok_or("no ts")?;
        let d = k.prove(&parsed, nonce, ts);
        params["device"] = json!({"id": d.id, "publicKey": d.public_key, "signature": d.signature, "signedAt": d.signed_at, "nonce": d.nonce});
    }
    let frame = json!({"type": "req", "id": "c1", "method": "connect", "params": params});
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .map_err(s)?;
    let res = response(&mut ws, "c1", STEP).await?;
    if res["payload"]["type"] != "hello-ok" {
        return Err(format!("expected hello-ok, got {res}"));
    }
    Ok((res["payload"].clone(), ws))
}

// ---------------------------------------------------------------------------------------------
// Figure 2: health round trip

struct LatPath {
    name: String,
    ws: Ws,
    us: Vec<f64>,
}

async fn latency(p: &Plan, paths: &mut [LatPath]) -> Res<()> {
    let mut n = 0usize;
    for path in paths.iter_mut() {
        for _ in 0..p.lat_warmup {
            n += 1;
            health(&mut path.ws, n, STEP)
                .await
                .map_err(|e| format!("{}: {e}", path.name))?;
        }
    }
    let k = paths.len();
    for round in 0..p.lat_rounds {
        for j in 0..k {
            let path = &mut paths[(round + j) % k];
            for _ in 0..p.lat_per_round {
                n += 1;
                let t = Instant::now();
                health(&mut path.ws, n, STEP)
                    .await
                    .map_err(|e| format!("{}: {e}", path.name))?;
                path.us.push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Figure 3: rotation with N tunnelled devices

struct Dev {
    home: PathBuf,
    key: DeviceKey,
    tunnel: Tunnel,
    url: String,
}

struct Rotation {
    generation: u64,
    total_ms: f64,
    cmd_ms: f64,
    tokens_ms: f64,
    first_token_ms: f64,
    median_token_ms: f64,
    closed_1008: usize,
}

fn drain_session(mut ws: Ws, closed: Arc<AtomicUsize>) {
    tokio::spawn(async move {
        for _ in 0..1000 {
            match tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
                Ok(Some(Ok(Message::Close(Some(f))))) => {
                    if u16::from(f.code) == 1008 {
                        closed.fetch_add(1, Ordering::Relaxed);
                    }
                    return;
                }
                Ok(Some(Ok(_))) => continue,
                _ => return,
            }
        }
    });
}

async fn setup_devices(
    p: &Plan,
    gw: &Gateway,
    dev_rt: &tokio::runtime::Handle,
    dir: &Path,
) -> Res<(Vec<Dev>, Vec<Ws>)> {
    let t0 = Instant::now();
    let mut homes = Vec::new();
    for i in 0..p.devices {
        let h = dir.join(format!("dev{i:03}"));
        pair_device(gw, &h, &format!("dev{i:03}")).await?;
        homes.push(h);
    }
    eprintln!(
        "  paired {} devices in {:.1} s",
        p.devices,
        t0.elapsed().as_secs_f64()
    );
    let t0 = Instant::now();
    let mut devs = Vec::new();
    // Batches: the gateway rate-limits QUIC handshakes per source (50/s).
    for chunk in homes.chunks(20) {
        let mut batch = Vec::new();
        for h in chunk {
            batch.push((h.clone(), start_tunnel(dev_rt, h, vec![]).await?));
        }
        for (h, t) in batch {
            wait_connected(&t, Duration::from_secs(60)).await?;
            let key = claw_gateway::auth::device_key::load_or_create(&h.join("identity.key"))
                .map_err(s)?;
            let url = format!("ws://{}", t.local_addrs[0]);
            devs.push(Dev {
                home: h,
                key,
                tunnel: t,
                url,
            });
        }
    }
    let mut sessions = Vec::new();
    for d in &devs {
        let tok = DeviceHome::new(&d.home)
            .token()
            .map_err(s)?
            .ok_or("no stored token")?;
        let (hello, ws) = session(&d.url, &tok.token, Some(&d.key)).await?;
        if hello["auth"]["method"] != "device-token" {
            return Err(format!("not a device-token session: {hello}"));
        }
        sessions.push(ws);
    }
    eprintln!(
        "  {} tunnels up with a device-token session each in {:.1} s",
        devs.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok((devs, sessions))
}

/// One `rotate-token --force`; `sessions` are replaced by the fresh sessions.
async fn rotate_once(gw: &Gateway, devs: &[Dev], sessions: &mut Vec<Ws>) -> Res<Rotation> {
    let before = DeviceHome::new(&devs[0].home)
        .token()
        .map_err(s)?
        .map(|t| t.generation)
        .unwrap_or(0);
    let want = before + 1;
    let closed = Arc::new(AtomicUsize::new(0));
    for ws in sessions.drain(..) {
        drain_session(ws, closed.clone());
    }
    let n = devs.len();
    let mut done: Vec<Option<Ws>> = (0..n).map(|_| None).collect();
    let mut connecting = vec![false; n];
    let mut token_at = vec![0f64; n];
    let mut finished = 0usize;
    let mut futs = FuturesUnordered::new();

    let t0 = Instant::now();
    let mut child = tokio::process::Command::new(CLAW)
        .arg("--home")
        .arg(&gw.home)
        .args(["devices", "rotate-token", "--force"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(s)?;
    let mut cmd_ms: Option<f64> = None;
    let deadline = Duration::from_secs(30);
    let mut tick = tokio::time::interval(Duration::from_micros(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while finished < n {
        if t0.elapsed() > deadline {
            return Err(format!(
                "only {finished}/{n} devices re-authenticated within {deadline:?}"
            ));
        }
        tokio::select! {
            biased;
            Some((i, r)) = futs.next(), if !futs.is_empty() => {
                let r: Res<(Value, Ws, String)> = r;
                let (hello, ws, tok) = r.map_err(|e| format!("device {i}: {e}"))?;
                if hello["auth"]["method"] != "device-token" {
                    return Err(format!("device {i}: not a device-token session: {hello}"));
                }
                if let Some(t) = hello["auth"]["deviceToken"].as_str() {
                    if t != tok {
                        return Err(format!("device {i}: the new token was not accepted as is"));
                    }
                }
                done[i] = Some(ws);
                finished += 1;
            }
            st = child.wait(), if cmd_ms.is_none() => {
                let st = st.map_err(s)?;
                cmd_ms = Some(t0.elapsed().as_secs_f64() * 1e3);
                if !st.success() {
                    let mut err = String::new();
                    if let Some(mut e) = child.stderr.take() {
                        let _ = tokio::io::AsyncReadExt::read_to_string(&mut e, &mut err).await;
                    }
                    return Err(format!("rotate-token exited {st}: {err}"));
                }
            }
            _ = tick.tick() => {
                for (i, d) in devs.iter().enumerate() {
                    if connecting[i] || d.tunnel.status().token_generation < want {
                        continue;
                    }
                    // The file itself, as local clients read it.
                    let stored = DeviceHome::new(&d.home).token().map_err(s)?.ok_or("no token")?;
                    if stored.generation != want {
                        continue;
                    }
                    token_at[i] = t0.elapsed().as_secs_f64() * 1e3;
                    connecting[i] = true;
                    let url = d.url.clone();
                    let key = &d.key;
                    futs.push(async move {
                        let r = session(&url, &stored.token, Some(key)).await
                            .map(|(h, ws)| (h, ws, stored.token.clone()));
                        (i, r)
                    });
                }
            }
        }
    }
    let total_ms = t0.elapsed().as_secs_f64() * 1e3;
    drop(futs);
    if cmd_ms.is_none() {
        let _ = tokio::time::timeout(STEP, child.wait()).await;
        cmd_ms = Some(t0.elapsed().as_secs_f64() * 1e3);
    }
    // Give the drained sessions a moment to report their close.
    for _ in 0..100 {
        if closed.load(Ordering::Relaxed) >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    *sessions = done.into_iter().map(|w| w.expect("finished")).collect();
    Ok(Rotation {
        generation: want,
        total_ms,
        cmd_ms: cmd_ms.unwrap_or(f64::NAN),
        tokens_ms: token_at.iter().cloned().fold(0.0, f64::max),
        first_token_ms: token_at.iter().cloned().fold(f64::INFINITY, f64::min),
        median_token_ms: median(&token_at),
        closed_1008: closed.load(Ordering::Relaxed),
    })
}

// ---------------------------------------------------------------------------------------------
// Report

fn report_bulk(paths: &[BulkPath]) {
    let find = |n: &str| paths.iter().find(|p| p.name.starts_with(n));
    let raw = find("raw");
    println!(
        "\n## 1. Bulk single-stream throughput (MB/s = 10^6 bytes/s; per round ≤ budget or time)\n"
    );
    println!(
        "| {:<44} | {:>9} | {:>17} | {:>9} | {:>14} |",
        "path", "MB/s med", "min – max", "÷ raw TCP", "MB per CPU-s"
    );
    println!(
        "|{:-<46}|{:->11}|{:->19}|{:->11}|{:->16}|",
        "", "", "", "", ""
    );
    for p in paths {
        let m = median(&p.mbps);
        let sv = sorted(&p.mbps);
        let vs_raw = raw.map(|r| m / median(&r.mbps)).unwrap_or(f64::NAN);
        let eff = median(&p.mb_per_cpu_s);
        println!(
            "| {:<44} | {:>9.0} | {:>7.0} – {:>7.0} | {:>8.2}× | {:>14} |",
            p.name,
            m,
            sv.first().copied().unwrap_or(f64::NAN),
            sv.last().copied().unwrap_or(f64::NAN),
            vs_raw,
            if eff.is_nan() {
                "—".to_string()
            } else {
                format!("{eff:.0}")
            }
        );
    }
    println!(
        "\nMB per CPU-s: bytes moved per CPU-second spent by both ends of the forward (tunnel: the \
         in-process device runtime + the gateway process; SSH: the ssh client + the server process(es)), \
         per-round median."
    );
    println!("\nRatios (ratio of medians; per-round ratios min/median/max in brackets):\n");
    let pairs: [(&str, &str, Option<f64>); 8] = [
        (
            "claw QUIC tunnel",
            "OpenSSH sshd -L (default",
            Some(TARGET_TUNNEL_VS_OPENSSH),
        ),
        ("claw QUIC tunnel", "OpenSSH sshd -L (aes128", None),
        ("claw QUIC tunnel", "OpenSSH sshd -L (aes256", None),
        (
            "claw --ssh -L (default",
            "OpenSSH sshd -L (default",
            Some(TARGET_SSH_VS_SSHD),
        ),
        (
            "claw --ssh -L (aes128",
            "OpenSSH sshd -L (aes128",
            Some(TARGET_SSH_VS_SSHD),
        ),
        (
            "claw --ssh -L (aes256",
            "OpenSSH sshd -L (aes256",
            Some(TARGET_SSH_VS_SSHD),
        ),
        ("claw QUIC tunnel", "claw --ssh -L (default", None),
        ("claw QUIC tunnel", "raw", None),
    ];
    for (a, b, target) in pairs {
        let (Some(pa), Some(pb)) = (find(a), find(b)) else {
            continue;
        };
        let r = median(&pa.mbps) / median(&pb.mbps);
        let (lo, mid, hi) = round_ratios(&pa.mbps, &pb.mbps);
        let t = match target {
            Some(t) => format!(" target ≥ {t:.1}× → {}", verdict(r >= t)),
            None => String::new(),
        };
        let eff = median(&pa.mb_per_cpu_s) / median(&pb.mb_per_cpu_s);
        let eff = if eff.is_nan() {
            String::new()
        } else {
            format!("; per CPU-second {eff:.2}×")
        };
        println!(
            "- {} / {}: **{r:.2}×** [{lo:.2} / {mid:.2} / {hi:.2}]{eff}{t}",
            pa.name, pb.name
        );
    }
}

fn report_latency(paths: &[LatPath]) {
    println!("\n## 2. `health` round trip, sequential on one authenticated session\n");
    let direct = median(&paths[0].us);
    println!(
        "| {:<40} | {:>6} | {:>10} | {:>10} | {:>12} | {:<28} |",
        "path", "calls", "median µs", "p99 µs", "added µs", "target"
    );
    println!(
        "|{:-<42}|{:->8}|{:->12}|{:->12}|{:->14}|{:-<30}|",
        "", "", "", "", "", ""
    );
    for (i, p) in paths.iter().enumerate() {
        let m = median(&p.us);
        let added = m - direct;
        let target = if p.name.contains("tunnel") {
            format!(
                "≤ {TARGET_ADDED_US:.0} µs added → {}",
                verdict(added <= TARGET_ADDED_US)
            )
        } else if p.name.contains("OpenSSH") {
            "(anchor: OpenSSH adds ~150 µs)".into()
        } else {
            String::new()
        };
        println!(
            "| {:<40} | {:>6} | {:>10.1} | {:>10.1} | {:>12} | {:<28} |",
            p.name,
            p.us.len(),
            m,
            percentile(&p.us, 0.99),
            if i == 0 {
                "—".to_string()
            } else {
                format!("{added:+.1}")
            },
            target
        );
    }
}

/// Echoes what `r` yields back to `w` until either side ends (the floors' far end).
async fn echo<R, W>(mut r: R, mut w: W)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut b = [0u8; 64];
    while let Ok(n) = r.read(&mut b).await {
        if n == 0 || w.write_all(&b[..n]).await.is_err() {
            return;
        }
    }
}

/// `round_trips` sequential 19-byte echoes through `w` → far end → `r`; the median in µs.
async fn echo_round_trips<R, W>(mut r: R, mut w: W, round_trips: usize) -> Res<f64>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const PING: &[u8] = b"ping-ping-ping-ping";
    let mut b = [0u8; 64];
    let mut us = Vec::with_capacity(round_trips);
    for _ in 0..round_trips {
        let t = Instant::now();
        w.write_all(PING).await.map_err(s)?;
        let mut got = 0;
        while got < PING.len() {
            let n = tokio::time::timeout(STEP, r.read(&mut b))
                .await
                .map_err(s)?
                .map_err(s)?;
            if n == 0 {
                return Err("the echo closed".to_string());
            }
            got += n;
        }
        us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(median(&us))
}

/// The transports under the tunnel's latency, measured in the same run: a 19-byte echo over
/// loopback TCP, and over one quinn stream between two in-process endpoints with claw's own
/// configs (`claw_tunnel::quic::config`). The far end runs on this runtime, the near end on the
/// device runtime (two runtimes, like two processes). Returns the median round trips in µs
/// (TCP, quinn).
async fn transport_floors(round_trips: usize, dev_rt: &tokio::runtime::Handle) -> Res<(f64, f64)> {
    use claw_tunnel::identity::Identity;
    use claw_tunnel::quic::config;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(s)?;
    let addr = l.local_addr().map_err(s)?;
    tokio::spawn(async move {
        if let Ok((c, _)) = l.accept().await {
            let _ = c.set_nodelay(true);
            let (r, w) = c.into_split();
            echo(r, w).await;
        }
    });
    let tcp = dev_rt
        .spawn(async move {
            let c = tokio::net::TcpStream::connect(addr).await.map_err(s)?;
            c.set_nodelay(true).map_err(s)?;
            let (r, w) = c.into_split();
            echo_round_trips(r, w, round_trips).await
        })
        .await
        .map_err(s)??;
    let server_id = Identity::generate().map_err(s)?;
    let client_id = Identity::generate().map_err(s)?;
    let lookup: claw_tunnel::verify::KeyLookup =
        Arc::new(|_: &str| claw_tunnel::verify::KeyStatus::Paired);
    let server = config::endpoint(
        "127.0.0.1:0".parse().map_err(s)?,
        Some(config::server_config(&server_id, lookup).map_err(s)?),
    )
    .map_err(s)?;
    let server_addr = server.local_addr().map_err(s)?;
    tokio::spawn(async move {
        let Some(incoming) = server.accept().await else {
            return;
        };
        let Ok(conn) = incoming.await else { return };
        if let Ok((tx, rx)) = conn.accept_bi().await {
            echo(rx, tx).await;
        }
    });
    let gateway_id = server_id.id();
    let quinn = dev_rt
        .spawn(async move {
            let mut ep = config::endpoint("127.0.0.1:0".parse().map_err(s)?, None).map_err(s)?;
            let (cfg, _) = config::client_config(&client_id, &gateway_id).map_err(s)?;
            ep.set_default_client_config(cfg);
            let conn = ep
                .connect(server_addr, config::SERVER_NAME)
                .map_err(s)?
                .await
                .map_err(s)?;
            let (tx, rx) = conn.open_bi().await.map_err(s)?;
            let median = echo_round_trips(rx, tx, round_trips).await;
            conn.close(0u32.into(), b"done");
            median
        })
        .await
        .map_err(s)??;
    Ok((tcp, quinn))
}

fn report_rotation(n: usize, rs: &[Rotation]) {
    println!(
        "\n## 3. `claw devices rotate-token --force` → {n} tunnelled devices re-authenticated\n"
    );
    println!(
        "| {:>10} | {:>10} | {:>13} | {:>29} | {:>11} |",
        "generation", "total ms", "rotate cmd ms", "token stored ms first/med/all", "1008 closes"
    );
    println!(
        "|{:->12}|{:->12}|{:->15}|{:->31}|{:->13}|",
        "", "", "", "", ""
    );
    for r in rs {
        println!(
            "| {:>10} | {:>10.1} | {:>13.1} | {:>7.1} / {:>7.1} / {:>9.1} | {:>7}/{n:<3} |",
            r.generation,
            r.total_ms,
            r.cmd_ms,
            r.first_token_ms,
            r.median_token_ms,
            r.tokens_ms,
            r.closed_1008
        );
    }
    let totals: Vec<f64> = rs.iter().map(|r| r.total_ms).collect();
    let first = rs.first().map(|r| r.total_ms).unwrap_or(f64::NAN);
    println!(
        "\nFirst rotation (generation 2): {first:.1} ms; median over {} rotations: {:.1} ms; target < {TARGET_ROTATE_MS:.0} ms → {}",
        rs.len(),
        median(&totals),
        verdict(first < TARGET_ROTATE_MS && median(&totals) < TARGET_ROTATE_MS)
    );
}

// ---------------------------------------------------------------------------------------------

async fn run(p: Plan, dev_rt: tokio::runtime::Handle) -> Res<()> {
    let nofile = raise_nofile(65_536)?;
    println!("# claw tunnel benchmark");
    println!(
        "\n{}; {} mode; RLIMIT_NOFILE {nofile}; {}",
        machine(),
        if p.quick {
            "QUICK (smoke sizes, figures not meaningful)"
        } else {
            "full"
        },
        format_args!(
            "bulk {} rounds × ≤ {} MiB / ≤ {:.1} s, health {} rounds × {} calls per path, {} devices × {} rotations",
            p.bulk_rounds,
            p.bulk_bytes >> 20,
            p.bulk_secs,
            p.lat_rounds,
            p.lat_per_round,
            p.devices,
            p.rotations
        )
    );
    let tmp = tempfile::Builder::new()
        .prefix("claw-bench-tunnel")
        .tempdir()
        .map_err(s)?;
    let dir = tmp.path();
    let sink = start_sink()?;
    let mut gw = start_gateway(dir, sink.addr)?;
    eprintln!("gateway at {} (ssh port {})", gw.url, gw.ssh_port);

    // The bench device: paired in-process, tunnel up with a forward to the exposed sink.
    let dev0 = dir.join("bench-device");
    pair_device(&gw, &dev0, "bench-device").await?;
    let t0 = tunnel_up(
        &dev_rt,
        &dev0,
        vec![("127.0.0.1:0".parse().expect("addr"), "sink".into())],
    )
    .await?;

    // SSH: claw's forward and OpenSSH's sshd, the same device key for both.
    let (key, public) = ssh_device_key(&gw, dir)?;
    let claw_srv = claw_ssh(&gw, dir)?;
    let sshd = match start_sshd(dir, &public).await {
        Ok(sv) => Some(sv),
        Err(e) => {
            println!("\n**OpenSSH sshd rows skipped: {e}**");
            None
        }
    };
    const AES128: &str = "aes128-gcm@openssh.com";
    const AES256: &str = "aes256-gcm@openssh.com";
    let mut procs: Vec<Proc> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    if p.bulk {
        let mut paths = vec![
            BulkPath {
                name: "raw loopback TCP".into(),
                entry: sink.addr,
                cpu: vec![],
                mbps: vec![],
                mb_per_cpu_s: vec![],
            },
            BulkPath {
                name: "claw QUIC tunnel (--expose / forward)".into(),
                entry: t0.local_addrs[1],
                cpu: vec![Cpu::DeviceThreads, Cpu::Process(gw.proc.child.id())],
                mbps: vec![],
                mb_per_cpu_s: vec![],
            },
        ];
        let mut servers = vec![(&claw_srv, "claw --ssh -L")];
        if let Some(sv) = &sshd {
            servers.push((sv, "OpenSSH sshd -L"));
        }
        for (srv, label) in servers {
            let ciphers = [
                (None, "default: chacha20-poly1305"),
                (Some(AES128), "aes128-gcm"),
                (Some(AES256), "aes256-gcm"),
            ];
            for (j, (cipher, cname)) in ciphers.into_iter().enumerate() {
                let log = dir.join(format!("ssh-bulk-{}-{j}.log", srv.port));
                let name = format!("{label} ({cname})");
                match ssh_forward(srv, &key, cipher, sink.addr.port(), &log).await {
                    Ok((proc, local)) => {
                        let server_cpu = match &srv._proc {
                            Some(sshd) => Cpu::Descendants(sshd.child.id()),
                            None => Cpu::Process(gw.proc.child.id()),
                        };
                        paths.push(BulkPath {
                            name,
                            entry: SocketAddr::from(([127, 0, 0, 1], local)),
                            cpu: vec![Cpu::Process(proc.child.id()), server_cpu],
                            mbps: vec![],
                            mb_per_cpu_s: vec![],
                        });
                        procs.push(proc);
                    }
                    // A cipher the server does not offer is a finding, not a failure.
                    Err(e) if cipher.is_some() && e.contains("no matching cipher") => {
                        notes.push(format!(
                            "{name}: not offered by the server ({})",
                            e.lines().last().unwrap_or("")
                        ));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        // CLAW_BENCH_PATHS=a,b keeps only the bulk paths whose name contains one of the words
        // (for profiling one path; the report then lacks the other ratios).
        if let Ok(f) = std::env::var("CLAW_BENCH_PATHS") {
            paths.retain(|p| {
                f.split(',')
                    .any(|w| !w.is_empty() && p.name.contains(w.trim()))
            });
        }
        eprintln!("figure 1: bulk throughput");
        // Plain blocking threads; nothing on this runtime needs to run meanwhile.
        bulk(&p, &sink, &mut paths)?;
        for pr in procs.iter_mut() {
            pr.check_alive()?;
        }
        gw.proc.check_alive()?;
        report_bulk(&paths);
        for n in &notes {
            println!("- note: {n}");
        }
    }

    if p.latency {
        eprintln!("figure 2: health round trip");
        let (claw_fwd, claw_local) = ssh_forward(
            &claw_srv,
            &key,
            None,
            gw.port,
            &dir.join("ssh-lat-claw.log"),
        )
        .await?;
        procs.push(claw_fwd);
        let mut urls = vec![
            (
                "direct to the gateway (loopback)".to_string(),
                gw.url.clone(),
            ),
            (
                "claw QUIC tunnel (local port)".into(),
                format!("ws://{}", t0.local_addrs[0]),
            ),
            (
                "claw --ssh -L (chacha20-poly1305)".into(),
                format!("ws://127.0.0.1:{claw_local}"),
            ),
        ];
        if let Some(sv) = &sshd {
            let (fwd, local) =
                ssh_forward(sv, &key, None, gw.port, &dir.join("ssh-lat-sshd.log")).await?;
            procs.push(fwd);
            urls.push((
                "OpenSSH sshd -L (chacha20-poly1305)".into(),
                format!("ws://127.0.0.1:{local}"),
            ));
        }
        let mut paths = Vec::new();
        for (name, url) in urls {
            let (_, ws) = session(&url, &gw.token, None)
                .await
                .map_err(|e| format!("{name}: {e}"))?;
            paths.push(LatPath {
                name,
                ws,
                us: vec![],
            });
        }
        latency(&p, &mut paths).await?;
        report_latency(&paths);
        let n = p.lat_rounds * p.lat_per_round;
        let (tcp, quinn) = transport_floors(n.max(100), &dev_rt).await?;
        let added = median(&paths[1].us) - median(&paths[0].us);
        println!(
            "\nTransport floors, same run ({} round trips of a 19-byte echo, medians): loopback TCP \
             {tcp:.1} µs; one quinn stream with claw's configs {quinn:.1} µs. The tunnel adds \
             {added:.1} µs against one TCP hop + one quinn round trip = {:.1} µs ({:.2}×).",
            n.max(100),
            tcp + quinn,
            added / (tcp + quinn)
        );
    }

    if p.rotate {
        eprintln!("figure 3: rotation with {} tunnelled devices", p.devices);
        let (devs, mut sessions) = setup_devices(&p, &gw, &dev_rt, dir).await?;
        let mut rs = Vec::new();
        for _ in 0..p.rotations {
            // Let the previous rotation's tail (closes, status writes) settle.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let r = rotate_once(&gw, &devs, &mut sessions).await?;
            eprintln!(
                "  rotation to generation {}: {:.1} ms",
                r.generation, r.total_ms
            );
            rs.push(r);
        }
        report_rotation(devs.len(), &rs);
    }
    gw.proc.check_alive()?;
    drop(procs);
    Ok(())
}

fn main() {
    let plan = Plan::from_env();
    // The device side of every tunnel (like a separate `claw tunnel up` process, whose runtime is
    // tokio's default multi-thread one: a worker per core, 2 here). CLAW_BENCH_DEVICE_RT=current
    // runs it on one thread instead (an experiment: fewer cross-thread wake-ups).
    let current = std::env::var("CLAW_BENCH_DEVICE_RT").is_ok_and(|v| v == "current");
    let (dev_handle, dev_rt, dev_stop) = if current {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("device runtime");
        let handle = rt.handle().clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let th = std::thread::Builder::new()
            .name("device".into())
            .spawn(move || {
                rt.block_on(async {
                    let _ = stop_rx.await;
                });
            })
            .expect("device thread");
        (handle, None, Some((stop_tx, th)))
    } else {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("device")
            .enable_all()
            .build()
            .expect("device runtime");
        (rt.handle().clone(), Some(rt), None)
    };
    // The bench's own client side (the WebSocket client; the bulk load is plain threads).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let r = rt.block_on(run(plan, dev_handle));
    if let Some(dev_rt) = dev_rt {
        dev_rt.shutdown_timeout(Duration::from_secs(1));
    }
    if let Some((stop, th)) = dev_stop {
        let _ = stop.send(());
        let _ = th.join();
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    if let Err(e) = r {
        eprintln!("benchmark failed: {e}");
        std::process::exit(1);
    }
}
