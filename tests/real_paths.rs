//! The QUIC tunnel on a real path: the gateway (`claw gateway run --tunnel`) in one network
//! namespace, the device (`claw tunnel pair`, `claw tunnel up --forward`) in another, joined by a
//! 1,500-MTU veth (tests/common/netns.rs), with random loss and a link that goes down injected
//! for real. Bytes go from a client in the device's namespace through the tunnel's local forward
//! to a sink in the gateway's namespace, which answers with the count and SHA-256 of what it got.
//!
//! Needs root, `ip` and `nft`; skipped with a printed message otherwise. No timing assertions:
//! every wait is bounded generously (a loaded 2-core machine, debug binaries, 5 % loss).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::claw_bin;
use common::netns::{unavailable, NetnsPair, Side};
use ring::digest::{Context, SHA256};
use serde_json::Value;

const MIB: u64 = 1 << 20;
/// Bound on one blocking read or write on the client and the sink: long enough for QUIC to
/// recover from a 10 s outage (its probe timeout backs off exponentially meanwhile).
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// True (after printing why) when this machine cannot run the test.
fn skip(test: &str) -> bool {
    match unavailable(true) {
        Some(why) => {
            eprintln!("SKIPPED {test}: {why}");
            true
        }
        None => false,
    }
}

/// A child process, SIGKILLed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `claw --home H args…` in `side`'s namespace, to completion: (status, stdout, stderr).
fn claw_in_ns(net: &NetnsPair, side: Side, home: &Path, args: &[&str]) -> (i32, String, String) {
    let out = net
        .command(side, claw_bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run claw");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Spawns `claw --home H args…` in `side` and waits (bounded) for its first stdout line.
fn spawn_ready(net: &NetnsPair, side: Side, home: &Path, args: &[&str]) -> (Proc, String) {
    let mut child = net
        .command(side, claw_bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn claw");
    let stdout = child.stdout.take().unwrap();
    let proc = Proc(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        let _ = tx.send(line);
        let _ = std::io::copy(&mut r, &mut std::io::sink());
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("claw {args:?} printed no ready line in 60 s"));
    (proc, line)
}

/// How a connection ended at the sink: a clean end after this many bytes, or a read error.
type SinkEnd = Result<u64, std::io::ErrorKind>;

/// The sink in namespace A on 127.0.0.1: for every connection, reads to EOF, then answers
/// `"<bytes> <sha256 hex>"`; how each connection ended is also sent to `ends`.
fn start_sink(net: &NetnsPair, ends: mpsc::Sender<SinkEnd>) -> SocketAddr {
    let l = net
        .run_in(Side::A, || TcpListener::bind("127.0.0.1:0"))
        .unwrap()
        .unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            let ends = ends.clone();
            std::thread::spawn(move || {
                let _ = c.set_read_timeout(Some(IO_TIMEOUT));
                let mut h = Context::new(&SHA256);
                let mut buf = vec![0u8; 256 * 1024];
                let mut n = 0u64;
                loop {
                    match c.read(&mut buf) {
                        Ok(0) => break,
                        Ok(k) => {
                            n += k as u64;
                            h.update(&buf[..k]);
                        }
                        Err(e) => {
                            let _ = ends.send(Err(e.kind()));
                            return;
                        }
                    }
                }
                let _ = ends.send(Ok(n));
                let _ = c.write_all(format!("{n} {}", hex(h.finish().as_ref())).as_bytes());
            });
        }
    });
    addr
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A gateway in A and a device in B, paired, `claw tunnel up` running with a forward to the sink.
struct RealPath {
    net: NetnsPair,
    _gateway: Proc,
    tunnel: Proc,
    device: PathBuf,
    /// The tunnel's local forward to `sink` (in namespace B).
    forward: SocketAddr,
    /// How each connection ended at the sink.
    sink_ends: mpsc::Receiver<SinkEnd>,
    _tmp: tempfile::TempDir,
}

impl RealPath {
    fn start() -> Self {
        let net = NetnsPair::create("paths").expect("create the namespaces");
        if let Some(note) = &net.offload_note {
            eprintln!("note: {note}");
        }
        let tmp = tempfile::tempdir().unwrap();
        let gw_home = tmp.path().join("gateway");
        let device = tmp.path().join("device");
        std::fs::create_dir_all(&device).unwrap();
        let (ends_tx, sink_ends) = mpsc::channel();
        let sink = start_sink(&net, ends_tx);
        let tunnel_listen = format!("{}:0", net.addr(Side::A));
        let expose = format!("sink={sink}");
        let (gateway, line) = spawn_ready(
            &net,
            Side::A,
            &gw_home,
            &[
                "gateway",
                "run",
                "--port",
                "0",
                "--auth-fail-delay-ms",
                "0",
                "--tunnel",
                &tunnel_listen,
                "--expose",
                &expose,
            ],
        );
        assert!(line.contains("ready"), "gateway: {line:?}");
        // Paired before any fault is injected: the test is about the data path.
        let (code, out, err) = claw_in_ns(&net, Side::A, &gw_home, &["pair", "--json", "--no-qr"]);
        assert_eq!(code, 0, "claw pair: {out}{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        let uri = v["uri"].as_str().unwrap().to_string();
        assert!(
            v["addrs"][0]
                .as_str()
                .unwrap()
                .starts_with(&net.addr(Side::A).to_string()),
            "the URI names the veth address: {v}"
        );
        let (code, out, err) = claw_in_ns(&net, Side::B, &device, &["tunnel", "pair", &uri]);
        assert_eq!(code, 0, "claw tunnel pair: {out}{err}");
        let (tunnel, line) = spawn_ready(
            &net,
            Side::B,
            &device,
            &[
                "tunnel",
                "up",
                "--listen",
                "127.0.0.1:0",
                "--forward",
                "127.0.0.1:0=sink",
            ],
        );
        assert!(line.contains("claw tunnel up"), "tunnel up: {line:?}");
        let mut rp = Self {
            net,
            _gateway: gateway,
            tunnel,
            device,
            forward: SocketAddr::from(([127, 0, 0, 1], 0)),
            sink_ends,
            _tmp: tmp,
        };
        let status = rp.wait_connected(Duration::from_secs(60));
        rp.forward = status["listen"][1]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no forward in the status: {status}"));
        rp
    }

    /// `claw tunnel status --json` on the device.
    fn status(&self) -> Value {
        let (_, out, _) = claw_in_ns(
            &self.net,
            Side::B,
            &self.device,
            &["tunnel", "status", "--json"],
        );
        serde_json::from_str(&out).unwrap_or(Value::Null)
    }

    /// Polls `tunnel status` until it says connected (bounded); returns that status.
    fn wait_connected(&mut self, limit: Duration) -> Value {
        let t0 = Instant::now();
        loop {
            let s = self.status();
            if s["connected"] == true {
                return s;
            }
            if let Ok(Some(st)) = self.tunnel.0.try_wait() {
                panic!("claw tunnel up exited ({st}); last status {s}");
            }
            assert!(
                t0.elapsed() < limit,
                "the tunnel did not (re)connect within {limit:?}: {s}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Opens a connection to the forward from inside namespace B.
    fn connect(&self) -> TcpStream {
        let fwd = self.forward;
        let s = self
            .net
            .run_in(Side::B, move || {
                TcpStream::connect_timeout(&fwd, Duration::from_secs(30))
            })
            .unwrap()
            .expect("connect to the tunnel's local forward");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        s
    }
}

/// A deterministic, non-repeating byte stream (xorshift64).
struct Pattern(u64);

impl Pattern {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// Sends `total` bytes over `s` in 64 KiB writes (calling `after_write` with the bytes sent so
/// far after each), half-closes, and returns what the sink answered and what it should be.
fn transfer(
    mut s: TcpStream,
    total: u64,
    mut after_write: impl FnMut(u64),
) -> std::io::Result<(String, String)> {
    let mut h = Context::new(&SHA256);
    let mut pat = Pattern(0x9e37_79b9_7f4a_7c15);
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(buf.len() as u64) as usize;
        pat.fill(&mut buf[..n]);
        s.write_all(&buf[..n])?;
        h.update(&buf[..n]);
        sent += n as u64;
        after_write(sent);
    }
    s.shutdown(Shutdown::Write)?;
    let mut verdict = String::new();
    s.read_to_string(&mut verdict)?;
    Ok((verdict, format!("{sent} {}", hex(h.finish().as_ref()))))
}

#[test]
fn a_64_mib_transfer_under_5_percent_loss_arrives_byte_exact() {
    if skip("a_64_mib_transfer_under_5_percent_loss_arrives_byte_exact") {
        return;
    }
    let rp = RealPath::start();
    rp.net.set_loss(5).expect("nftables loss");
    let t0 = Instant::now();
    let (got, want) = transfer(rp.connect(), 64 * MIB, |_| {}).expect("the transfer completes");
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(got, want, "bytes lost or corrupted under 5 % loss");
    let path = &rp.status()["path"];
    eprintln!(
        "64 MiB under 5 % loss in {secs:.1} s ({:.1} MB/s); path {path}",
        64.0 * 1.048_576 / secs
    );
    // The loss was real: QUIC saw it and recovered from it.
    assert!(
        path["lostPackets"].as_u64().unwrap_or(0) > 0,
        "no packet was lost, so the loss rule did nothing: {path}"
    );
}

#[test]
fn a_link_down_for_10_s_mid_stream_and_the_tunnel_recovers_by_itself() {
    if skip("a_link_down_for_10_s_mid_stream_and_the_tunnel_recovers_by_itself") {
        return;
    }
    let mut rp = RealPath::start();
    let before = rp.status();
    // A 32 MiB stream; the link goes down after its first 4 MiB, for 10 s.
    let s = rp.connect();
    let (tx, rx) = mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        let mut told = false;
        transfer(s, 32 * MIB, |sent| {
            if !told && sent >= 4 * MIB {
                told = true;
                let _ = tx.send(());
            }
        })
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("the first 4 MiB went through");
    rp.net.set_link(false).expect("link down");
    std::thread::sleep(Duration::from_secs(10));
    rp.net.set_link(true).expect("link up");
    // Either the stream survived (byte-exact) or it failed with an error; never a wrong answer.
    match writer.join().expect("writer thread") {
        Ok((got, want)) => {
            assert_eq!(got, want, "a surviving stream must be byte-exact");
            eprintln!("the stream survived the 10 s outage");
        }
        Err(e) => eprintln!("the stream failed across the outage: {e}"),
    }
    // The device is connected again without anyone touching it, and a fresh transfer works.
    let after = rp.wait_connected(Duration::from_secs(120));
    eprintln!(
        "reconnects: {} before, {} after; last error {}",
        before["reconnects"], after["reconnects"], after["lastError"]
    );
    let (got, want) = transfer(rp.connect(), 4 * MIB, |_| {}).expect("a fresh transfer");
    assert_eq!(got, want, "a fresh transfer after the outage is byte-exact");
}

/// A forwarded connection that breaks on one side is broken on the other too: the sink sees a
/// reset, not a clean end it would take for a complete upload. (Before the tunnel's own copy
/// loop, the device finished the QUIC stream when its TCP read failed, so the gateway closed the
/// sink's connection with a FIN and a truncated upload looked complete.)
#[test]
fn a_connection_reset_on_the_device_side_reaches_the_service_as_a_reset() {
    if skip("a_connection_reset_on_the_device_side_reaches_the_service_as_a_reset") {
        return;
    }
    let rp = RealPath::start();
    let mut s = rp.connect();
    let mut buf = vec![0u8; 64 * 1024];
    Pattern(7).fill(&mut buf);
    for _ in 0..16 {
        s.write_all(&buf).unwrap();
    }
    // Give the bytes time to cross, then reset (SO_LINGER 0 and close) instead of a clean FIN.
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::socket::setsockopt(
        &s,
        nix::sys::socket::sockopt::Linger,
        &nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )
    .unwrap();
    drop(s);
    let end = rp
        .sink_ends
        .recv_timeout(Duration::from_secs(60))
        .expect("the sink's connection ended");
    assert!(
        end.is_err(),
        "the service saw a clean end ({end:?}) of a connection its client reset"
    );
    // And the tunnel carries on.
    let (got, want) = transfer(rp.connect(), MIB, |_| {}).expect("a fresh transfer");
    assert_eq!(got, want);
}
