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
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Run the tunnel: a local loopback port that reaches the gateway's WebSocket.
    Up {
        /// Local loopback address for the gateway's WebSocket.
        #[arg(long, default_value = "127.0.0.1:18789")]
        listen: SocketAddr,
        /// Extra forward: LOCALADDR=NAME reaches the service the gateway exposes as NAME.
        #[arg(long = "forward", value_name = "LOCALADDR=NAME")]
        forward: Vec<String>,
        /// Run in the background (log: HOME/tunnel.log); returns once it is up.
        #[arg(long)]
        daemon: bool,
        /// Status lines as JSON lines (one object per line).
        #[arg(long)]
        json: bool,
    },
    /// Stop the `claw tunnel up` running on this home.
    Down {
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Install `claw tunnel up` as a service (systemd user unit by default) and start it.
    Install(super::service::InstallArgs),
    /// Stop and remove the installed tunnel service.
    Uninstall(super::service::ScopeArgs),
    /// Write this device's key in OpenSSH format (0600) and print the `ssh -N -L` line for the
    /// gateway's built-in SSH forward.
    ExportSshKey {
        /// Where to write the private key (default: HOME/id_ed25519_claw).
        path: Option<std::path::PathBuf>,
        /// SSH port of the gateway (default: the one learnt at pairing, else 18722).
        #[arg(long)]
        port: Option<u16>,
    },
    /// A one-time login link for the gateway's control page on this device's own tunnel port
    /// (the device must hold operator.admin); opened in the browser unless --no-open.
    Dashboard(super::dashboard::TunnelDashboardArgs),
    /// Carry a connection over the tunnel on stdin/stdout (`proxy ssh`: an OpenSSH
    /// `ProxyCommand` to the gateway's SSH forward; exit 69 unreachable, 77 refused).
    Proxy {
        /// What to carry.
        #[command(subcommand)]
        what: super::tunnel_proxy::ProxyCmd,
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
        TunnelCmd::Pair { uri, name, json } => pair(&dh, &uri, name, json).await,
        TunnelCmd::Up {
            listen,
            forward,
            daemon,
            json,
        } => {
            if daemon {
                super::tunnel_service::daemon(&dh, json).await
            } else {
                up(dh, listen, &forward, json).await
            }
        }
        TunnelCmd::Down { json } => super::tunnel_service::down(&dh, home.root(), json).await,
        TunnelCmd::Install(a) => {
            super::service::install_kind(super::service::Kind::Tunnel, home, a)
        }
        TunnelCmd::Uninstall(a) => super::service::uninstall_kind(super::service::Kind::Tunnel, a),
        TunnelCmd::Status { json } => status(&dh, json),
        TunnelCmd::Dashboard(a) => {
            let listen = a.listen.or_else(|| running_listen(&dh));
            super::dashboard::run_tunnel(listen, a).await
        }
        TunnelCmd::Proxy { what } => super::tunnel_proxy::run(&dh, what).await,
        TunnelCmd::ExportSshKey { path, port } => export_ssh_key(home, &dh, path, port),
    }
}

async fn pair(
    dh: &DeviceHome,
    uri: &str,
    name: Option<String>,
    as_json: bool,
) -> anyhow::Result<u8> {
    let uri = PairingUri::parse(uri).map_err(|e| fail(2, e.to_string()))?;
    let p = client::pair(dh, &uri, name, |request_id| {
        eprintln!("waiting for the gateway operator to approve this device (request {request_id}): on the gateway run `claw devices approve {request_id}`");
    })
    .await
    .map_err(|e| fail(exit::FAILURE, e.to_string()))?;
    if as_json {
        super::json_out::print(&super::json_out::TunnelPaired {
            gateway_id: p.gateway_id.clone(),
            device_id: p.device_id.clone(),
            addrs: p.addrs.clone(),
            home: dh
                .pairing_path()
                .parent()
                .map(|d| d.to_path_buf())
                .unwrap_or_default(),
            ssh: ssh_forward(dh, &p),
        })?;
        return Ok(0);
    }
    println!(
        "paired with gateway {} as device {}; credentials stored in {}. Next: claw tunnel up",
        &p.gateway_id[..16],
        &p.device_id[..16],
        dh.pairing_path()
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default()
    );
    if let Some(f) = ssh_forward(dh, &p) {
        println!(
            "the gateway's SSH host key is pinned in {}; for stock ssh: `claw tunnel export-ssh-key`, then\n  {}",
            f.known_hosts.display(),
            f.command
        );
    }
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

async fn up(
    dh: DeviceHome,
    listen: SocketAddr,
    forward: &[String],
    as_json: bool,
) -> anyhow::Result<u8> {
    loopback_only(&listen, "--listen")?;
    // One tunnel per home; held until this process ends.
    let _lock = super::tunnel_service::take_lock(&dh)?;
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
        .map_err(|e| {
            // Refused for who the device is: restarting cannot help (the unit stops on 77).
            let code = match &e {
                claw_tunnel::quic::TunnelError::Refused { code, .. } if code.is_final() => {
                    exit::REVOKED
                }
                _ => exit::FAILURE,
            };
            fail(code, e.to_string())
        })?;
    // Handlers first: a SIGTERM right after the ready line still closes the tunnel politely.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let s = t.status();
    let mut events = Events::new(as_json, &s);
    if as_json {
        events.emit("up", &s)?;
    } else {
        println!(
            "claw tunnel up: ws://{} -> gateway {} (pid {})",
            t.local_addrs[0],
            &s.gateway_id[..16.min(s.gateway_id.len())],
            std::process::id()
        );
    }
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = term.recv() => { t.close().await; return Ok(0) }
            _ = int.recv() => { t.close().await; return Ok(0) }
            _ = usr1.recv() => match t.rebind() {
                Ok(a) => tracing::info!(local = %a, "tunnel migrated to a new local socket"),
                Err(e) => tracing::warn!(error = %e, "rebind failed"),
            },
            _ = tick.tick() => events.changed(&t.status())?,
            reason = t.stopped() => {
                let mut s = t.status();
                s.last_error = Some(reason.clone());
                events.emit("stopped", &s)?;
                return Err(fail(exit::REVOKED, format!("tunnel stopped: {reason}")));
            }
        }
    }
}

/// `claw tunnel up --json`: one [`super::json_out::TunnelEvent`] line per change of the
/// connection (connected, disconnected, re-paired), so a supervisor can follow it.
struct Events {
    json: bool,
    connected: bool,
    repairs: u64,
}

impl Events {
    fn new(json: bool, s: &client::TunnelStatus) -> Self {
        Self {
            json,
            connected: s.connected,
            repairs: s.repairs,
        }
    }

    fn emit(&self, event: &str, s: &client::TunnelStatus) -> anyhow::Result<()> {
        if !self.json {
            return Ok(());
        }
        super::json_out::print(&super::json_out::TunnelEvent {
            event: event.into(),
            pid: std::process::id(),
            listen: s.listen.clone(),
            gateway_id: s.gateway_id.clone(),
            error: s.last_error.clone(),
            at_ms: claw_gateway::now_ms(),
        })
    }

    fn changed(&mut self, s: &client::TunnelStatus) -> anyhow::Result<()> {
        // Any re-pair followed: another gateway, or the same one at a new address.
        if s.repairs != self.repairs {
            self.repairs = s.repairs;
            self.emit("repaired", s)?;
        }
        if s.connected != self.connected {
            self.connected = s.connected;
            self.emit(
                if s.connected {
                    "connected"
                } else {
                    "disconnected"
                },
                s,
            )?;
        }
        Ok(())
    }
}

/// The local address of the `claw tunnel up` running on this home (from its status file).
fn running_listen(dh: &DeviceHome) -> Option<SocketAddr> {
    let v: Value = claw_gateway::home::read_private(&dh.status_path())
        .and_then(|s| serde_json::from_str(&s).ok())?;
    let listen = &v["listen"];
    let first = listen.as_str().or_else(|| listen[0].as_str())?;
    first.trim_start_matches("ws://").parse().ok()
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
        if let Some(via) = v["via"].as_str() {
            let since = v["viaSinceMs"]
                .as_u64()
                .map(|ms| format!(" since {}", super::ago::ago(claw_gateway::now_ms(), ms)))
                .unwrap_or_default();
            match v["relay"].as_str() {
                Some(r) => println!("  via:       relay {}{since}", r.escape_debug()),
                None => println!("  via:       {via}{since}"),
            }
        }
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

/// Where `export-ssh-key` writes the device's OpenSSH key by default.
fn default_key_path(dh: &DeviceHome) -> std::path::PathBuf {
    dh.pairing_path().with_file_name("id_ed25519_claw")
}

/// The `ssh -N -L` line for the gateway's SSH forward with the real ports: the SSH port and the
/// gateway's WebSocket port learnt at pairing (else `port_flag` or 18722, and 18789), host-key
/// checking against the `known_hosts` pinned at pairing when there is one.
fn ssh_line(dh: &DeviceHome, key: &std::path::Path, port_flag: Option<u16>) -> String {
    let pairing = dh.pairing().ok();
    let hint = pairing.as_ref().and_then(|p| p.ssh.clone());
    let host = pairing
        .as_ref()
        .and_then(|p| p.addrs.first())
        .map(|a| claw_tunnel::device::host_of(a).to_string())
        .unwrap_or_else(|| "GATEWAY-HOST".into());
    let port = port_flag
        .or(hint.as_ref().map(|h| h.port))
        .unwrap_or(claw_proto::ports::SSH);
    let gw_port = hint
        .as_ref()
        .map(|h| h.gateway_port)
        .unwrap_or(claw_proto::ports::GATEWAY);
    let verify = if hint.is_some() {
        format!(
            " -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
            dh.known_hosts_path().display()
        )
    } else {
        String::new()
    };
    format!(
        "ssh -N -L 18789:127.0.0.1:{gw_port} -p {port} -i {}{verify} claw@{host}",
        key.display()
    )
}

/// The SSH forward as `tunnel pair --json` reports it.
fn ssh_forward(
    dh: &DeviceHome,
    p: &claw_tunnel::device::Pairing,
) -> Option<super::json_out::SshForward> {
    p.ssh.as_ref()?;
    Some(super::json_out::SshForward {
        command: ssh_line(dh, &default_key_path(dh), None),
        known_hosts: dh.known_hosts_path(),
    })
}

fn export_ssh_key(
    _home: &Home,
    dh: &DeviceHome,
    path: Option<std::path::PathBuf>,
    port: Option<u16>,
) -> anyhow::Result<u8> {
    let identity = claw_tunnel::identity::Identity::load_or_create(&dh.identity_path())?;
    let path = path.unwrap_or_else(|| default_key_path(dh));
    let pem = identity.ssh_private_openssh()?;
    claw_gateway::home::write_secret_atomic(&path, pem.as_bytes())
        .map_err(|e| fail(exit::FAILURE, format!("{}: {e}", path.display())))?;
    println!(
        "wrote {} (0600); public key: {}",
        path.display(),
        identity.ssh_public_openssh()
    );
    println!("{}", ssh_line(dh, &path, port));
    Ok(0)
}
