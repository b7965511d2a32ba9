//! `claw tunnel pair|up|status`: the device side of the QUIC tunnel.

use std::net::SocketAddr;
use std::time::Duration;

use claw_gateway::home::Home;
use claw_tunnel::device::DeviceHome;
use claw_tunnel::pairing::PairingUri;
use claw_tunnel::quic::client::{self, UpConfig};
use serde_json::Value;

use super::{exit, fail};

/// Tunnel verbs.
#[derive(Debug, clap::Subcommand)]
pub enum TunnelCmd {
    /// Pair this device with a gateway using the URI `claw pair` printed.
    Pair {
        /// The `claw://pair?…` URI.
        uri: String,
        /// Name for this device.
        #[arg(long)]
        name: Option<String>,
    },
    /// Run the tunnel: a local loopback port that reaches the gateway's WebSocket.
    Up {
        /// Local loopback address for the gateway's WebSocket.
        #[arg(long, default_value = "127.0.0.1:18789")]
        listen: SocketAddr,
        /// Extra forward: LOCALADDR=NAME reaches the service the gateway exposes as NAME.
        #[arg(long = "forward", value_name = "LOCALADDR=NAME")]
        forward: Vec<String>,
    },
    /// Write this device's key in OpenSSH format (0600) and print the `ssh -N -L` line for the
    /// gateway's built-in SSH forward.
    ExportSshKey {
        /// Where to write the private key (default: HOME/id_ed25519_claw).
        path: Option<std::path::PathBuf>,
        /// SSH port of the gateway.
        #[arg(long, default_value_t = claw_proto::ports::SSH)]
        port: u16,
    },
    /// Show the running tunnel (exit 0 connected, 1 disconnected, 3 not running).
    Status {
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a tunnel verb.
pub async fn run(home: &Home, cmd: TunnelCmd) -> anyhow::Result<u8> {
    home.ensure()?;
    let dh = DeviceHome::new(home.root());
    match cmd {
        TunnelCmd::Pair { uri, name } => pair(&dh, &uri, name).await,
        TunnelCmd::Up { listen, forward } => up(dh, listen, &forward).await,
        TunnelCmd::Status { json } => status(&dh, json),
        TunnelCmd::ExportSshKey { path, port } => export_ssh_key(home, &dh, path, port),
    }
}

async fn pair(dh: &DeviceHome, uri: &str, name: Option<String>) -> anyhow::Result<u8> {
    let uri = PairingUri::parse(uri).map_err(|e| fail(2, e.to_string()))?;
    let p = client::pair(dh, &uri, name, |request_id| {
        eprintln!("waiting for the gateway operator to approve this device (request {request_id}): on the gateway run `claw devices approve {request_id}`");
    })
    .await
    .map_err(|e| fail(exit::FAILURE, e.to_string()))?;
    println!(
        "paired with gateway {} as device {}; credentials stored in {}. Next: claw tunnel up",
        &p.gateway_id[..16],
        &p.device_id[..16],
        dh.pairing_path()
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default()
    );
    Ok(0)
}

fn loopback_only(addr: &SocketAddr, what: &str) -> anyhow::Result<()> {
    if !claw_gateway::bind_guard::is_loopback(addr.ip()) {
        return Err(fail(
            exit::CONFIG,
            format!(
                "{what} {addr}: the tunnel's local ports are loopback-only (use 127.0.0.1 or ::1)"
            ),
        ));
    }
    Ok(())
}

async fn up(dh: DeviceHome, listen: SocketAddr, forward: &[String]) -> anyhow::Result<u8> {
    loopback_only(&listen, "--listen")?;
    let mut forwards = Vec::new();
    for f in forward {
        let (local, name) = f.split_once('=').ok_or_else(|| {
            fail(
                exit::CONFIG,
                format!("--forward {f:?}: expected LOCALADDR=NAME"),
            )
        })?;
        let local: SocketAddr = local.parse().map_err(|_| {
            fail(
                exit::CONFIG,
                format!("--forward {f:?}: LOCALADDR must be IP:PORT"),
            )
        })?;
        loopback_only(&local, "--forward")?;
        forwards.push((local, name.to_string()));
    }
    let mut t = client::up(dh, UpConfig { listen, forwards })
        .await
        .map_err(|e| fail(exit::FAILURE, e.to_string()))?;
    let s = t.status();
    println!(
        "claw tunnel up: ws://{} -> gateway {} (pid {})",
        t.local_addrs[0],
        &s.gateway_id[..16.min(s.gateway_id.len())],
        std::process::id()
    );
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(0),
            _ = int.recv() => return Ok(0),
            _ = usr1.recv() => match t.rebind() {
                Ok(a) => tracing::info!(local = %a, "tunnel migrated to a new local socket"),
                Err(e) => tracing::warn!(error = %e, "rebind failed"),
            },
            reason = t.stopped() => return Err(fail(exit::FAILURE, format!("tunnel stopped: {reason}"))),
        }
    }
}

fn status(dh: &DeviceHome, as_json: bool) -> anyhow::Result<u8> {
    let v: Option<Value> = claw_gateway::home::read_private(&dh.status_path())
        .and_then(|s| serde_json::from_str(&s).ok());
    let alive = v.as_ref().is_some_and(|v| {
        let pid = v["pid"].as_u64().unwrap_or(0) as i32;
        let fresh = claw_gateway::now_ms().saturating_sub(v["updatedAtMs"].as_u64().unwrap_or(0))
            < Duration::from_secs(5).as_millis() as u64;
        pid > 0 && fresh && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
    });
    let Some(v) = v.filter(|_| alive) else {
        if as_json {
            println!("{}", serde_json::json!({"running": false}));
        } else {
            println!("claw tunnel: not running");
        }
        return Ok(exit::NOT_RUNNING);
    };
    let connected = v["connected"] == true;
    if as_json {
        let mut v = v;
        v["running"] = Value::Bool(true);
        println!("{v}");
    } else {
        println!(
            "claw tunnel: {} (pid {})",
            if connected {
                "connected"
            } else {
                "disconnected"
            },
            v["pid"]
        );
        println!("  gateway:   {}", v["gatewayId"].as_str().unwrap_or(""));
        println!("  device:    {}", v["deviceId"].as_str().unwrap_or(""));
        println!(
            "  listen:    {}",
            v["listen"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        );
        println!(
            "  rtt:       {}",
            v["rttMs"]
                .as_f64()
                .map(|r| format!("{r:.2} ms"))
                .unwrap_or_else(|| "-".into())
        );
        if let Some(p) = v["path"].as_object() {
            println!(
                "  path:      mtu {}  cwnd {} KiB  lost {} of {} packets  congestion events {}",
                p["mtu"],
                p["cwnd"].as_u64().unwrap_or(0) / 1024,
                p["lostPackets"],
                p["sentPackets"],
                p["congestionEvents"]
            );
        }
        println!(
            "  streams:   {}  bytes up {}  down {}",
            v["streams"], v["bytesUp"], v["bytesDown"]
        );
        println!(
            "  token gen: {}  reconnects {}",
            v["tokenGeneration"], v["reconnects"]
        );
        if let Some(e) = v["lastError"].as_str() {
            println!("  last error: {e}");
        }
    }
    Ok(if connected { 0 } else { exit::FAILURE })
}

fn export_ssh_key(
    home: &Home,
    dh: &DeviceHome,
    path: Option<std::path::PathBuf>,
    port: u16,
) -> anyhow::Result<u8> {
    let identity = claw_tunnel::identity::Identity::load_or_create(&dh.identity_path())?;
    let path = path.unwrap_or_else(|| home.root().join("id_ed25519_claw"));
    let pem = identity.ssh_private_openssh()?;
    claw_gateway::home::write_secret_atomic(&path, pem.as_bytes())
        .map_err(|e| fail(exit::FAILURE, format!("{}: {e}", path.display())))?;
    let host = dh
        .pairing()
        .ok()
        .and_then(|p| p.addrs.first().cloned())
        .and_then(|a| {
            a.rsplit_once(':')
                .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']').to_string())
        })
        .unwrap_or_else(|| "GATEWAY-HOST".into());
    println!(
        "wrote {} (0600); public key: {}",
        path.display(),
        identity.ssh_public_openssh()
    );
    println!(
        "ssh -N -L 18789:127.0.0.1:18789 -p {port} -i {} claw@{host}",
        path.display()
    );
    Ok(0)
}
