//! `cargo bench --bench real_paths`: claw's QUIC tunnel, claw's SSH forward, OpenSSH `-L` and raw
//! TCP on a real path — two network namespaces joined by a 1,500-MTU veth with its offloads off
//! (tests/common/netns.rs) — lossless and under random loss injected with nftables, all in one
//! run, in alternating rounds.
//!
//! Namespace A holds the sink (a TCP server on 0.0.0.0), the gateway (`claw gateway run --tunnel
//! --ssh --expose sink=127.0.0.1:SINK`) and a private OpenSSH `sshd`; namespace B holds the
//! device (`claw tunnel up --forward`) and the `ssh -N -L` clients. The load generator is a
//! blocking thread of this process whose socket lives in B; it writes 256 KiB chunks for
//! `secs` seconds (or `bytes`), half-closes, and the sink answers with the count it got, which
//! must match. Rate = bytes / (answer received − first write).
//!
//! CPU-s per GB are the forward's own processes, from /proc: the gateway and `claw tunnel up`;
//! the gateway and `ssh`; sshd's per-connection children and `ssh`. UDP receive-buffer errors
//! are read from `/proc/net/snmp` inside both namespaces around every tunnel round.
//!
//! Environment: `CLAW_BENCH_QUICK=1` (or no `--bench`, e.g. `cargo test --benches`) is a smoke
//! run with tiny rounds. `CLAW_BENCH_ROUNDS=N`, `CLAW_BENCH_SECS=S`, `CLAW_BENCH_LOSS=0,1`
//! (percent, one phase each), `CLAW_BENCH_PATHS=tunnel,raw` keeps paths whose name contains a
//! word. `CLAW_BENCH_RTT_MS=20` replaces the veth with a TUN pair joined by a userspace delay
//! line (benches/common/delay_line.rs) that adds that round trip; `CLAW_BENCH_PROFILE=DIR`
//! `perf record`s each path's processes during its lossless rounds (`perf report -i`).
//! Skipped with a message when not root or `ip`/`nft`/`sshd` are missing.
//!
//! Per-byte figures, which other load on the machine moves far less than MB/s: CPU-s per GB
//! (utime + stime) and context switches per MB (every thread of the forward's processes), both
//! also as ratios to OpenSSH `-L` aes128-gcm in the same run.

#[allow(dead_code)]
mod common;
#[path = "common/delay_line.rs"]
mod delay_line;
#[path = "../tests/common/netns.rs"]
mod netns;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{die_with_parent, machine, median, quick_mode, s, sorted, verdict, Res};
use netns::{NetnsPair, Side};

const CLAW: &str = env!("CARGO_BIN_EXE_claw");
const SSHD: &str = "/usr/sbin/sshd";
const AES128: &str = "aes128-gcm@openssh.com";
const CHACHA: &str = "chacha20-poly1305@openssh.com";
/// Write size of the load generator and read size of the sink.
const IO_CHUNK: usize = 256 * 1024;
/// Bound on one blocking step (connect, a read while the sink drains).
const STEP: Duration = Duration::from_secs(30);
/// Goals of the issue (ratios in the same run).
const GOAL_LOSSLESS_VS_OPENSSH: f64 = 1.2;
const GOAL_LOSSY_VS_OPENSSH: f64 = 2.0;
const GOAL_KEPT: f64 = 0.5;

#[derive(Debug, Clone)]
struct Plan {
    rounds: usize,
    secs: f64,
    bytes: u64,
    losses: Vec<u32>,
    filter: Option<String>,
    /// Round-trip time added by the userspace delay line (`CLAW_BENCH_RTT_MS`); `None`: the veth.
    rtt: Option<Duration>,
    /// `CLAW_BENCH_PROFILE=DIR`: `perf record` each path's processes during its lossless rounds.
    profile: Option<PathBuf>,
}

impl Plan {
    fn from_env() -> Self {
        let quick = quick_mode();
        let num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok());
        Plan {
            rounds: num("CLAW_BENCH_ROUNDS").map_or(if quick { 1 } else { 3 }, |n| n as usize),
            secs: num("CLAW_BENCH_SECS").unwrap_or(if quick { 0.3 } else { 2.5 }),
            bytes: if quick { 16 << 20 } else { 2 << 30 },
            losses: std::env::var("CLAW_BENCH_LOSS")
                .ok()
                .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
                .unwrap_or_else(|| vec![0, 1]),
            filter: std::env::var("CLAW_BENCH_PATHS").ok(),
            rtt: num("CLAW_BENCH_RTT_MS")
                .filter(|ms| *ms > 0.0)
                .map(|ms| Duration::from_secs_f64(ms / 1e3)),
            profile: std::env::var_os("CLAW_BENCH_PROFILE").map(PathBuf::from),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child, SIGKILLed on drop and when the bench dies.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` (stderr to `log`, stdout piped) and returns it with its first stdout line
    /// when `ready` is set.
    fn spawn(name: &str, mut cmd: Command, log: &Path, ready: bool) -> Res<(Self, String)> {
        let f = std::fs::File::create(log).map_err(s)?;
        cmd.stdin(Stdio::null()).stderr(f);
        cmd.stdout(if ready { Stdio::piped() } else { Stdio::null() });
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| format!("spawn {name}: {e}"))?;
        let mut line = String::new();
        if ready {
            let out = child.stdout.take().ok_or("no stdout")?;
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let mut r = BufReader::new(out);
                let mut l = String::new();
                let _ = r.read_line(&mut l);
                let _ = tx.send(l);
                let _ = std::io::copy(&mut r, &mut std::io::sink());
            });
            line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        }
        let mut p = Self {
            name: name.into(),
            child,
            log: log.to_path_buf(),
        };
        p.check_alive()?;
        if ready && line.is_empty() {
            return Err(format!("{name} printed no ready line"));
        }
        Ok((p, line))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn check_alive(&mut self) -> Res<()> {
        if let Ok(Some(st)) = self.child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(12).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!("{} exited ({st}):\n{}", self.name, tail.join("\n")));
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

/// `claw --home H args…` in `side`, to completion; stdout on success.
fn claw(net: &NetnsPair, side: Side, home: &Path, args: &[&str]) -> Res<String> {
    let out = net
        .command(side, CLAW)
        .arg("--home")
        .arg(home)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .map_err(s)?;
    if !out.status.success() {
        return Err(format!(
            "claw {args:?} exited {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True when a TCP socket listens on `port` in the namespace of process `pid`.
fn listening_in(pid: u32, port: u16) -> bool {
    let want = format!(":{port:04X}");
    ["tcp", "tcp6"].iter().any(|f| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{f}"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                let c: Vec<&str> = l.split_whitespace().collect();
                c.len() > 3 && c[1].ends_with(&want) && c[3] == "0A"
            })
    })
}

fn wait_listening(p: &mut Proc, pid_ns: u32, port: u16) -> Res<()> {
    let t0 = Instant::now();
    while !listening_in(pid_ns, port) {
        p.check_alive()?;
        if t0.elapsed() > STEP {
            return Err(format!("{}: port {port} never listened", p.name));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// CPU time from /proc (USER_HZ = 100)

#[derive(Clone, Copy)]
enum Cpu {
    Process(u32),
    /// Every descendant of a process (sshd's per-connection children), not the process.
    Descendants(u32),
}

fn stat_ticks(pid: u32) -> Option<(u64, u32)> {
    let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &st[st.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    Some((
        f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?,
        ppid,
    ))
}

/// The processes `sources` stand for, now (sshd's children come and go with connections).
fn pids(sources: &[Cpu]) -> Vec<u32> {
    let mut out = Vec::new();
    for c in sources {
        match *c {
            Cpu::Process(pid) => out.push(pid),
            Cpu::Descendants(root) => out.extend(descendants(root)),
        }
    }
    out
}

fn descendants(root: u32) -> Vec<u32> {
    let procs: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| stat_ticks(pid).map(|(_, pp)| (pid, pp)))
        .collect();
    let mut set = vec![root];
    let mut grew = true;
    while grew {
        grew = false;
        for (pid, pp) in &procs {
            if set.contains(pp) && !set.contains(pid) {
                set.push(*pid);
                grew = true;
            }
        }
    }
    set.retain(|p| *p != root);
    set
}

/// Context switches (voluntary + involuntary) of every live thread of `pids`: a wake-up count,
/// which unlike CPU time does not grow when other work slows the machine down.
fn context_switches(pids: &[u32]) -> u64 {
    let mut total = 0;
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let st = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            total += st
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    total
}

fn cpu_ticks(sources: &[Cpu]) -> u64 {
    let mut total = 0;
    for c in sources {
        match *c {
            Cpu::Process(pid) => total += stat_ticks(pid).map_or(0, |x| x.0),
            Cpu::Descendants(root) => {
                total += descendants(root)
                    .into_iter()
                    .filter_map(stat_ticks)
                    .map(|x| x.0)
                    .sum::<u64>();
            }
        }
    }
    total
}

// ---------------------------------------------------------------------------------------------
// The sink and the load generator

/// Sink in A: every connection reads to EOF and answers with the 8-byte count.
fn start_sink(net: &NetnsPair) -> Res<u16> {
    let l = net
        .run_in(Side::A, || TcpListener::bind("0.0.0.0:0"))?
        .map_err(s)?;
    let port = l.local_addr().map_err(s)?.port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            std::thread::spawn(move || {
                let _ = c.set_read_timeout(Some(Duration::from_secs(120)));
                let mut buf = vec![0u8; IO_CHUNK];
                let mut n = 0u64;
                loop {
                    match c.read(&mut buf) {
                        Ok(0) => break,
                        Ok(k) => n += k as u64,
                        Err(_) => return,
                    }
                }
                let _ = c.write_all(&n.to_le_bytes());
            });
        }
    });
    Ok(port)
}

/// One transfer from B through `entry`: (bytes, seconds).
fn transfer(net: &NetnsPair, entry: SocketAddr, budget: u64, secs: f64) -> Res<(u64, f64)> {
    let mut out = net
        .run_in(Side::B, move || TcpStream::connect_timeout(&entry, STEP))?
        .map_err(|e| format!("connect {entry}: {e}"))?;
    let _ = out.set_write_timeout(Some(Duration::from_secs(60)));
    let _ = out.set_read_timeout(Some(Duration::from_secs(120)));
    let buf: Vec<u8> = (0..IO_CHUNK).map(|i| (i * 31 % 251) as u8).collect();
    let limit = Duration::from_secs_f64(secs);
    let mut sent = 0u64;
    let start = Instant::now();
    while sent < budget && start.elapsed() < limit {
        let n = (budget - sent).min(IO_CHUNK as u64) as usize;
        out.write_all(&buf[..n])
            .map_err(|e| format!("write: {e}"))?;
        sent += n as u64;
    }
    out.shutdown(Shutdown::Write).map_err(s)?;
    let mut got = [0u8; 8];
    out.read_exact(&mut got)
        .map_err(|e| format!("no answer from the sink: {e}"))?;
    let secs = start.elapsed().as_secs_f64();
    let got = u64::from_le_bytes(got);
    if got != sent {
        return Err(format!("sent {sent} bytes, the sink got {got}"));
    }
    Ok((got, secs))
}

// ---------------------------------------------------------------------------------------------
// The paths

struct PathUnderTest {
    name: &'static str,
    entry: SocketAddr,
    cpu: Vec<Cpu>,
    /// Per loss phase: MB/s, CPU-s per GB and context switches per MB, per round.
    mbps: Vec<Vec<f64>>,
    cpu_per_gb: Vec<Vec<f64>>,
    switches_per_mb: Vec<Vec<f64>>,
    /// The tunnel only: UDP RcvbufErrors (both namespaces) and QUIC congestion events per round.
    rcvbuf: Vec<u64>,
    congestion: Vec<u64>,
}

struct Setup {
    /// Dropped (stopped) before the namespaces are deleted.
    line: Option<delay_line::DelayLine>,
    net: NetnsPair,
    gateway: Proc,
    tunnel: Proc,
    device: PathBuf,
    procs: Vec<Proc>,
    paths: Vec<PathUnderTest>,
    _tmp: tempfile::TempDir,
}

fn path(name: &'static str, entry: SocketAddr, cpu: Vec<Cpu>, phases: usize) -> PathUnderTest {
    PathUnderTest {
        name,
        entry,
        cpu,
        mbps: vec![vec![]; phases],
        cpu_per_gb: vec![vec![]; phases],
        switches_per_mb: vec![vec![]; phases],
        rcvbuf: vec![0; phases],
        congestion: vec![0; phases],
    }
}

fn tunnel_status(net: &NetnsPair, device: &Path) -> Value {
    claw(net, Side::B, device, &["tunnel", "status", "--json"])
        .ok()
        .and_then(|o| serde_json::from_str(&o).ok())
        .unwrap_or(Value::Null)
}

fn setup(plan: &Plan) -> Res<Setup> {
    let net = match plan.rtt {
        Some(_) => NetnsPair::create_tun("paths")?,
        None => NetnsPair::create("paths")?,
    };
    let line = match plan.rtt {
        Some(rtt) => Some(delay_line::DelayLine::start(&net, rtt / 2)?),
        None => None,
    };
    let tmp = tempfile::tempdir().map_err(s)?;
    let dir = tmp.path().to_path_buf();
    let phases = plan.losses.len();
    let sink = start_sink(&net)?;
    let a = net.addr(Side::A);
    if let Some(rtt) = plan.rtt {
        // A TCP handshake is one round trip: proof that the line delays as asked.
        let to = SocketAddr::from((a, sink));
        let t = Instant::now();
        let c = net
            .run_in(Side::B, move || TcpStream::connect_timeout(&to, STEP))?
            .map_err(|e| format!("connect through the delay line: {e}"))?;
        eprintln!(
            "delay line: TCP connect took {:.1} ms (asked for a {:.1} ms round trip)",
            t.elapsed().as_secs_f64() * 1e3,
            rtt.as_secs_f64() * 1e3
        );
        drop(c);
    }

    // The gateway in A.
    let gw_home = dir.join("gateway");
    let mut cmd = net.command(Side::A, CLAW);
    let (tunnel_at, ssh_at, expose) = (
        format!("{a}:0"),
        format!("{a}:0"),
        format!("sink=127.0.0.1:{sink}"),
    );
    cmd.arg("--home").arg(&gw_home).args([
        "gateway", "run", "--port", "0", "--tunnel", &tunnel_at, "--ssh", &ssh_at, "--expose",
        &expose,
    ]);
    cmd.env("RUST_LOG", "warn");
    let (gateway, _) = Proc::spawn("claw gateway", cmd, &dir.join("gateway.log"), true)?;
    let rt: Value =
        serde_json::from_str(&std::fs::read_to_string(gw_home.join("gateway.json")).map_err(s)?)
            .map_err(s)?;
    let ssh_port: u16 = rt["ssh"]["addr"]
        .as_str()
        .and_then(|x| x.parse::<SocketAddr>().ok())
        .ok_or("no ssh address in gateway.json")?
        .port();
    let known_claw = dir.join("known_hosts_claw");
    std::fs::write(
        &known_claw,
        format!("{}\n", rt["ssh"]["knownHosts"][0].as_str().unwrap_or("")),
    )
    .map_err(s)?;

    // The device in B, paired, with a forward to the sink.
    let device = dir.join("device");
    std::fs::create_dir_all(&device).map_err(s)?;
    let v: Value = serde_json::from_str(&claw(
        &net,
        Side::A,
        &gw_home,
        &["pair", "--json", "--no-qr"],
    )?)
    .map_err(s)?;
    let uri = v["uri"].as_str().ok_or("no uri")?;
    claw(&net, Side::B, &device, &["tunnel", "pair", uri])?;
    let mut cmd = net.command(Side::B, CLAW);
    cmd.arg("--home").arg(&device).args([
        "tunnel",
        "up",
        "--listen",
        "127.0.0.1:0",
        "--forward",
        "127.0.0.1:0=sink",
    ]);
    cmd.env("RUST_LOG", "warn");
    let (tunnel, _) = Proc::spawn("claw tunnel up", cmd, &dir.join("tunnel.log"), true)?;
    let t0 = Instant::now();
    let forward = loop {
        let st = tunnel_status(&net, &device);
        if st["connected"] == true {
            break st["listen"][1]
                .as_str()
                .and_then(|x| x.parse::<SocketAddr>().ok())
                .ok_or("no forward in tunnel status")?;
        }
        if t0.elapsed() > STEP {
            return Err(format!("the tunnel never connected: {st}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    };

    // One OpenSSH key for the device: authorised on claw's SSH forward and on sshd.
    let key_home = dir.join("ssh-device");
    let key = key_home.join("id_ed25519");
    let out = claw(
        &net,
        Side::B,
        &key_home,
        &[
            "tunnel",
            "export-ssh-key",
            key.to_str().ok_or("path")?,
            "--port",
            &ssh_port.to_string(),
        ],
    )?;
    let public = out
        .lines()
        .next()
        .and_then(|l| l.split("public key: ").nth(1))
        .ok_or_else(|| format!("no public key in {out:?}"))?
        .trim()
        .to_string();
    claw(
        &net,
        Side::A,
        &gw_home,
        &["devices", "add-ssh-key", "ssh-bench", &public],
    )?;
    let sshd_proc = start_sshd(&net, &dir, &public)?;
    let known_sshd = dir.join("sshd").join("known_hosts");

    let mut procs = Vec::new();
    let mut paths = vec![path(
        "claw QUIC tunnel",
        forward,
        vec![Cpu::Process(gateway.pid()), Cpu::Process(tunnel.pid())],
        phases,
    )];
    let forwards = [
        SshPath {
            name: "claw SSH forward (aes128-gcm)",
            port: ssh_port,
            user: "claw",
            known: &known_claw,
            sshd: None,
            local: 41001,
        },
        SshPath {
            name: "OpenSSH -L aes128-gcm",
            port: 22,
            user: "root",
            known: &known_sshd,
            sshd: Some(sshd_proc.pid()),
            local: 41002,
        },
        SshPath {
            name: "OpenSSH -L chacha20",
            port: 22,
            user: "root",
            known: &known_sshd,
            sshd: Some(sshd_proc.pid()),
            local: 41003,
        },
    ];
    for (i, f) in forwards.into_iter().enumerate() {
        let SshPath {
            name,
            port,
            user,
            known,
            sshd: sshd_pid,
            local,
        } = f;
        let cipher = if name.contains("chacha20") {
            CHACHA
        } else {
            AES128
        };
        let mut cmd = net.command(Side::B, "ssh");
        cmd.args(["-p", &port.to_string(), "-i"])
            .arg(&key)
            .args(["-o", "StrictHostKeyChecking=yes", "-o"])
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .args(["-o", "ExitOnForwardFailure=yes", "-o", "ConnectTimeout=10"])
            .args(["-F", "/dev/null", "-c", cipher, "-N", "-L"])
            .arg(format!("127.0.0.1:{local}:127.0.0.1:{sink}"))
            .arg(format!("{user}@{a}"));
        let (mut p, _) = Proc::spawn(name, cmd, &dir.join(format!("ssh-{i}.log")), false)?;
        let pid = p.pid();
        wait_listening(&mut p, pid, local)?;
        let server = match sshd_pid {
            Some(sshd) => Cpu::Descendants(sshd),
            None => Cpu::Process(gateway.pid()),
        };
        paths.push(path(
            name,
            SocketAddr::from(([127, 0, 0, 1], local)),
            vec![Cpu::Process(pid), server],
            phases,
        ));
        procs.push(p);
    }
    procs.push(sshd_proc);
    paths.push(path("raw TCP", SocketAddr::from((a, sink)), vec![], phases));
    if let Some(f) = &plan.filter {
        paths.retain(|p| {
            f.split(',')
                .any(|w| !w.is_empty() && p.name.contains(w.trim()))
        });
    }
    Ok(Setup {
        line,
        net,
        gateway,
        tunnel,
        device,
        procs,
        paths,
        _tmp: tmp,
    })
}

/// An `ssh -N -L` path: which server, as whom, and the local port in B.
struct SshPath<'a> {
    name: &'static str,
    port: u16,
    user: &'static str,
    known: &'a Path,
    /// sshd's pid (its per-connection children are the server's CPU); `None` for claw's.
    sshd: Option<u32>,
    local: u16,
}

/// A private sshd in A on port 22 of the veth address, with its own host key and the device key.
fn start_sshd(net: &NetnsPair, dir: &Path, public: &str) -> Res<Proc> {
    let d = dir.join("sshd");
    std::fs::create_dir_all(&d).map_err(s)?;
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
    let cfg = d.join("sshd_config");
    std::fs::write(
        &cfg,
        format!(
            "Port 22\nListenAddress {}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\n\
             UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nAllowTcpForwarding yes\n\
             UseDNS no\nLogLevel ERROR\n",
            net.addr(Side::A),
            hostkey.display(),
            auth.display(),
            d.join("sshd.pid").display()
        ),
    )
    .map_err(s)?;
    let mut cmd = net.command(Side::A, SSHD);
    cmd.args(["-D", "-e", "-f"]).arg(&cfg);
    let (mut p, _) = Proc::spawn("sshd", cmd, &d.join("sshd.log"), false)?;
    let pid = p.pid();
    wait_listening(&mut p, pid, 22)?;
    let pubkey = std::fs::read_to_string(hostkey.with_extension("pub")).map_err(s)?;
    let k: Vec<&str> = pubkey.split_whitespace().take(2).collect();
    std::fs::write(
        d.join("known_hosts"),
        format!("{} {}\n", net.addr(Side::A), k.join(" ")),
    )
    .map_err(s)?;
    Ok(p)
}

// ---------------------------------------------------------------------------------------------
// Profiles

/// A `perf record` of some processes, stopped (SIGINT, so it writes its file) by [`Perf::stop`].
struct Perf(Child);

/// Starts `perf record` (999 Hz, user and kernel, no call graphs: flat profiles are what the
/// docs quote) on `pids` into `DIR/<path>-<round>.data`.
fn profile(dir: &Path, name: &str, round: usize, pids: &[u32]) -> Res<Perf> {
    std::fs::create_dir_all(dir).map_err(s)?;
    let slug: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let list: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
    let mut cmd = Command::new("perf");
    cmd.args(["record", "-q", "-F", "999", "-o"])
        .arg(dir.join(format!("{slug}-{round}.data")))
        .args(["-p", &list.join(",")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    die_with_parent(&mut cmd);
    let child = cmd.spawn().map_err(|e| format!("perf record: {e}"))?;
    // perf attaches within milliseconds; a short head start keeps the first packets in view.
    std::thread::sleep(Duration::from_millis(200));
    Ok(Perf(child))
}

impl Perf {
    fn stop(mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let t0 = Instant::now();
        while t0.elapsed() < STEP {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Rounds

fn rcvbuf_errors(net: &NetnsPair) -> u64 {
    [Side::A, Side::B]
        .iter()
        .map(|&sd| net.udp_rcvbuf_errors(sd).unwrap_or(0))
        .sum()
}

fn run_phase(plan: &Plan, su: &mut Setup, phase: usize) -> Res<()> {
    let loss = plan.losses[phase];
    su.net.set_loss(loss)?;
    eprintln!("phase: {loss} % random loss each way");
    for p in su.paths.iter() {
        transfer(&su.net, p.entry, 32 << 20, 0.3).map_err(|e| format!("{}: {e}", p.name))?;
    }
    let n = su.paths.len();
    for round in 0..plan.rounds {
        for k in 0..n {
            let i = (round + k) % n;
            let is_tunnel = su.paths[i].name.contains("tunnel");
            let ev0 = if is_tunnel {
                tunnel_status(&su.net, &su.device)["path"]["congestionEvents"]
                    .as_u64()
                    .unwrap_or(0)
            } else {
                0
            };
            let rb0 = rcvbuf_errors(&su.net);
            let p = &mut su.paths[i];
            let procs = pids(&p.cpu);
            let perf = match &plan.profile {
                Some(dir) if phase == 0 && !procs.is_empty() => {
                    Some(profile(dir, p.name, round, &procs)?)
                }
                _ => None,
            };
            let (c0, x0) = (cpu_ticks(&p.cpu), context_switches(&procs));
            let (bytes, secs) = transfer(&su.net, p.entry, plan.bytes, plan.secs)
                .map_err(|e| format!("{}: {e}", p.name))?;
            let cpu_s = (cpu_ticks(&p.cpu) - c0) as f64 / 100.0;
            let switches = context_switches(&procs).saturating_sub(x0);
            if let Some(perf) = perf {
                perf.stop();
            }
            let sw_per_mb = if procs.is_empty() {
                f64::NAN
            } else {
                switches as f64 / (bytes as f64 / 1e6)
            };
            p.switches_per_mb[phase].push(sw_per_mb);
            let mbps = bytes as f64 / 1e6 / secs;
            let per_gb = if p.cpu.is_empty() {
                f64::NAN
            } else {
                cpu_s / (bytes as f64 / 1e9)
            };
            p.mbps[phase].push(mbps);
            p.cpu_per_gb[phase].push(per_gb);
            let rb = rcvbuf_errors(&su.net) - rb0;
            let mut extra = String::new();
            if is_tunnel {
                // A short pause lets `claw tunnel up` write its status (once a second).
                std::thread::sleep(Duration::from_millis(1100));
                let ev = tunnel_status(&su.net, &su.device)["path"]["congestionEvents"]
                    .as_u64()
                    .unwrap_or(0)
                    .saturating_sub(ev0);
                p.rcvbuf[phase] += rb;
                p.congestion[phase] += ev;
                extra = format!("; {rb} UDP rcvbuf errors, {ev} congestion events");
            }
            eprintln!(
                "  {loss} % loss, round {}/{}: {:<30} {:>7.1} MB/s ({} MiB in {secs:.2} s; {per_gb:.2} CPU-s/GB, {sw_per_mb:.1} context switches/MB{extra})",
                round + 1,
                plan.rounds,
                p.name,
                mbps,
                bytes >> 20,
            );
        }
        su.gateway.check_alive()?;
        su.tunnel.check_alive()?;
        for pr in su.procs.iter_mut() {
            pr.check_alive()?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Report

fn range(v: &[f64]) -> String {
    let s = sorted(v);
    match (s.first(), s.last()) {
        (Some(a), Some(b)) => format!("{:.0} ({a:.0}–{b:.0})", median(v)),
        _ => "—".into(),
    }
}

fn report(plan: &Plan, su: &Setup) {
    match plan.rtt {
        Some(rtt) => println!(
            "\n## Real path: two namespaces, 1,500-MTU TUN link through a userspace delay line, {:.1} ms round trip ({})",
            rtt.as_secs_f64() * 1e3,
            machine()
        ),
        None => println!(
            "\n## Real path: two namespaces, 1,500-MTU veth, offloads off ({})",
            machine()
        ),
    }
    if let Some(l) = &su.line {
        println!(
            "delay line: {} packets forwarded, {} dropped at a full queue ({} packets each way)",
            l.counters
                .iter()
                .map(|c| c.forwarded.load(std::sync::atomic::Ordering::Relaxed))
                .sum::<u64>(),
            l.queue_drops(),
            delay_line::QUEUE_PACKETS
        );
    }
    if let Some(n) = &su.net.offload_note {
        println!("note: {n}");
    }
    println!(
        "{} rounds per phase, {:.1} s of sending per round, paths alternating; load average at the end: {}",
        plan.rounds,
        plan.secs,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let base = su
        .paths
        .iter()
        .position(|p| p.name == "OpenSSH -L aes128-gcm");
    let med = |p: &PathUnderTest, ph: usize| median(&p.mbps[ph]);
    let mut header = String::from("| path |");
    let mut rule = String::from("|---|");
    for (ph, loss) in plan.losses.iter().enumerate() {
        header.push_str(&format!(
            " {loss} % loss MB/s median (min–max) | vs OpenSSH aes128-gcm | CPU-s per GB | CPU vs OpenSSH | switches per MB |"
        ));
        rule.push_str("---|---|---|---|---|");
        if ph > 0 {
            header.push_str(&format!(" kept at {loss} % |"));
            rule.push_str("---|");
        }
    }
    println!("\n{header}\n{rule}");
    for p in &su.paths {
        let mut row = format!("| {} |", p.name);
        for ph in 0..plan.losses.len() {
            let ratio = base.map_or(f64::NAN, |b| med(p, ph) / med(&su.paths[b], ph));
            let cpu = median(&p.cpu_per_gb[ph]);
            let cpu_ratio = base.map_or(f64::NAN, |b| cpu / median(&su.paths[b].cpu_per_gb[ph]));
            let sw = median(&p.switches_per_mb[ph]);
            let or_dash = |x: f64, f: &dyn Fn(f64) -> String| {
                if x.is_nan() {
                    "—".to_string()
                } else {
                    f(x)
                }
            };
            row.push_str(&format!(
                " {} | {ratio:.2}× | {} | {} | {} |",
                range(&p.mbps[ph]),
                or_dash(cpu, &|x| format!("{x:.2}")),
                or_dash(cpu_ratio, &|x| format!("{x:.2}×")),
                or_dash(sw, &|x| format!("{x:.0}")),
            ));
            if ph > 0 {
                row.push_str(&format!(" {:.0} % |", 100.0 * med(p, ph) / med(p, 0)));
            }
        }
        println!("{row}");
    }
    if let Some(t) = su.paths.iter().find(|p| p.name.contains("tunnel")) {
        println!();
        for (ph, loss) in plan.losses.iter().enumerate() {
            println!(
                "- tunnel at {loss} % loss: {} UDP receive-buffer errors (RcvbufErrors, both namespaces) and {} QUIC congestion events over {} rounds",
                t.rcvbuf[ph], t.congestion[ph], plan.rounds
            );
        }
        if let Some(b) = base {
            let ssh = &su.paths[b];
            let lossless = med(t, 0) / med(ssh, 0);
            let cpu = median(&t.cpu_per_gb[0]) / median(&ssh.cpu_per_gb[0]);
            println!(
                "- goal lossless ≥ {GOAL_LOSSLESS_VS_OPENSSH}× OpenSSH aes128-gcm: {lossless:.2}× ({}); CPU per GB ≤ 1.0×: {cpu:.2}× ({}); no rcvbuf drops lossless: {} ({})",
                verdict(lossless >= GOAL_LOSSLESS_VS_OPENSSH),
                verdict(cpu <= 1.0),
                t.rcvbuf[0],
                verdict(t.rcvbuf[0] == 0)
            );
            for ph in 1..plan.losses.len() {
                let r = med(t, ph) / med(ssh, ph);
                let kept = med(t, ph) / med(t, 0);
                println!(
                    "- goal at {} % loss ≥ {GOAL_LOSSY_VS_OPENSSH}× OpenSSH: {r:.2}× ({}); keeps ≥ half its lossless rate: {:.0} % ({})",
                    plan.losses[ph],
                    verdict(r >= GOAL_LOSSY_VS_OPENSSH),
                    kept * 100.0,
                    verdict(kept >= GOAL_KEPT)
                );
            }
        }
    }
}

fn main() {
    if let Some(why) = netns::unavailable(true) {
        println!("real_paths bench skipped: {why}");
        return;
    }
    if !Path::new(SSHD).exists() {
        println!("real_paths bench skipped: {SSHD} is missing (apt-get install -y openssh-server)");
        return;
    }
    let plan = Plan::from_env();
    let t0 = Instant::now();
    let r = (|| -> Res<()> {
        let mut su = setup(&plan)?;
        eprintln!("setup done in {:.1} s", t0.elapsed().as_secs_f64());
        for ph in 0..plan.losses.len() {
            run_phase(&plan, &mut su, ph)?;
        }
        su.net.set_loss(0)?;
        report(&plan, &su);
        Ok(())
    })();
    eprintln!("bench took {:.0} s", t0.elapsed().as_secs_f64());
    if let Err(e) = r {
        eprintln!("benchmark failed: {e}");
        std::process::exit(1);
    }
}
