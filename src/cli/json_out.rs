//! The `--json` shapes of the verbs that report something: one typed struct per shape, so the
//! documented fields (docs/cli.md, "JSON output") are what serde writes, and tests parse each
//! shape back with `deny_unknown_fields` mirrors.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Prints one shape as one JSON line on stdout.
pub fn print<T: Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(v)?);
    Ok(())
}

/// `claw tunnel up --daemon --json`, once the background tunnel runs.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelStarted {
    /// Always `"started"`.
    pub event: String,
    /// The background process.
    pub pid: u32,
    /// Its local listeners (`ws://` of the first reaches the gateway).
    pub listen: Vec<String>,
    /// Its log file.
    pub log: PathBuf,
}

/// `claw gateway start --json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStarted {
    /// The background gateway.
    pub pid: u32,
    /// Its WebSocket URL.
    pub url: String,
    /// Its log file.
    pub log: PathBuf,
    /// The home.
    pub home: PathBuf,
}

/// `claw gateway stop --json` (and `claw tunnel down --json`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stopped {
    /// Something was running and has stopped.
    pub stopped: bool,
    /// Its pid (`null` when nothing was running).
    pub pid: Option<u32>,
}

/// What a `claw devices approve|reject|revoke|rotate|remove --json` did.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceChange {
    /// `approved`, `rejected`, `revoked`, `rotated` or `removed`.
    pub action: String,
    /// The device.
    pub device_id: String,
    /// The pairing request (approve, reject).
    pub request_id: Option<String>,
    /// Sessions the change closed (revoke, rotate).
    pub closed_sessions: Option<u64>,
}

/// `claw tunnel pair --json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelPaired {
    /// The gateway's pinned key id.
    pub gateway_id: String,
    /// This device's id.
    pub device_id: String,
    /// Tunnel addresses it will dial.
    pub addrs: Vec<String>,
    /// The device home holding the credentials.
    pub home: PathBuf,
    /// The gateway's SSH forward, when it runs one (`known_hosts` written in the home).
    pub ssh: Option<SshForward>,
}

/// The gateway's SSH forward as a device knows it after pairing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SshForward {
    /// The `ssh -N -L …` line that reaches the gateway.
    pub command: String,
    /// The known_hosts file with the gateway's pinned host key.
    pub known_hosts: PathBuf,
}

/// One line of `claw tunnel up --json` (JSON lines: one per change).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelEvent {
    /// `up` (listeners bound), `connected`, `disconnected`, `repaired` (another pairing is
    /// used from now on) or `stopped` (for good; the process exits).
    pub event: String,
    /// The `claw tunnel up` process.
    pub pid: u32,
    /// Its local listeners.
    pub listen: Vec<String>,
    /// The gateway it dials.
    pub gateway_id: String,
    /// Why (disconnected, stopped).
    pub error: Option<String>,
    /// When (ms since the epoch).
    pub at_ms: u64,
}

/// `claw gateway status --json`: everything the text shows. Not running: `running: false`, the
/// home, and `null` or empty for the rest.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// A gateway holds the home.
    pub running: bool,
    /// The home.
    pub home: PathBuf,
    /// Its pid.
    pub pid: Option<u32>,
    /// Its WebSocket URL.
    pub url: Option<String>,
    /// Uptime.
    pub uptime_ms: Option<u64>,
    /// Where the shared token comes from (`generated`, `flag`, `env`, `file`).
    pub token_source: Option<String>,
    /// Authenticated sessions.
    pub connections: Option<Connections>,
    /// Device counts.
    pub devices: Option<DeviceCounts>,
    /// The device-token root's generation.
    pub device_token_generation: Option<u64>,
    /// The `--rotate-every` schedule.
    pub rotation: Option<Rotation>,
    /// The QUIC tunnel listener.
    pub tunnel: Option<TunnelListener>,
    /// The SSH forward listener.
    pub ssh: Option<SshListener>,
    /// Upstream mode (`--upstream`): `{url, credential, reachable, authenticated, sessions,
    /// lastError, lastOkAtMs, repairs}`; `null` without an upstream.
    pub upstream: Option<Value>,
    /// Reserved for a relay the gateway is reachable through: `null` (none yet).
    pub relay: Option<Value>,
    /// Sockets open on the WebSocket port.
    pub open_sockets: Option<u64>,
    /// The connection cap in force (`--max-connections`, lowered to what the open-file limit
    /// holds).
    pub max_connections: Option<u64>,
    /// Live sessions as `gateway.status` lists them (see `claw channels status`).
    pub clients: Vec<Value>,
}

/// Session counts.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Connections {
    /// All.
    pub total: u64,
    /// With the shared token.
    pub shared_token: u64,
    /// With a device token or through a device's transport.
    pub device_token: u64,
}

/// Device counts.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeviceCounts {
    /// Paired, not revoked.
    pub paired: u64,
    /// Revoked.
    pub revoked: u64,
    /// Pairing requests waiting for approval.
    pub pending: u64,
}

/// The rotation schedule.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Rotation {
    /// Interval.
    pub every_ms: u64,
    /// Last rotation of the root.
    pub last_rotated_at_ms: u64,
    /// Next one due.
    pub next_at_ms: u64,
}

/// The tunnel listener.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TunnelListener {
    /// UDP address.
    pub addr: String,
    /// The gateway's key id devices pin.
    pub gateway_id: String,
}

/// The SSH listener.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SshListener {
    /// TCP address.
    pub addr: String,
    /// Host key fingerprint (`SHA256:…`).
    pub fingerprint: String,
    /// `known_hosts` lines for the host key.
    pub known_hosts: Vec<String>,
}

/// The parts of the admin `gateway.status` reply the status shows.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct AdminStatus {
    gateway: AdminGateway,
    connections: Option<Connections>,
    devices: Option<DeviceCounts>,
    device_token_generation: Option<u64>,
    rotation: Option<Rotation>,
    open_sockets: Option<u64>,
    max_connections: Option<u64>,
    clients: Vec<Value>,
    upstream: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct AdminGateway {
    url: Option<String>,
    uptime_ms: Option<u64>,
    token_source: Option<String>,
}

/// The listeners in `gateway.json`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Runtime {
    tunnel: Option<TunnelListener>,
    ssh: Option<SshListener>,
}

impl GatewayStatus {
    /// The status of a running gateway from its admin reply and its runtime file.
    pub fn running(home: PathBuf, pid: u32, admin: &Value, runtime: &Value) -> Self {
        let a: AdminStatus = serde_json::from_value(admin.clone()).unwrap_or_default();
        let rt: Runtime = serde_json::from_value(runtime.clone()).unwrap_or_default();
        Self {
            running: true,
            home,
            pid: Some(pid),
            url: a.gateway.url,
            uptime_ms: a.gateway.uptime_ms,
            token_source: a.gateway.token_source,
            connections: a.connections,
            devices: a.devices,
            device_token_generation: a.device_token_generation,
            rotation: a.rotation,
            tunnel: rt.tunnel.filter(|t| !t.addr.is_empty()),
            ssh: rt.ssh.filter(|s| !s.addr.is_empty()),
            upstream: a.upstream.filter(|u| !u.is_null()),
            relay: None,
            open_sockets: a.open_sockets,
            max_connections: a.max_connections,
            clients: a.clients,
        }
    }
}
