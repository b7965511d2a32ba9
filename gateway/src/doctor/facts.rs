//! What the doctor knows about a home and the machine: plain data, gathered by
//! [`super::gather`] (and, for the network probes, by the CLI), judged by [`super::checks`].
//!
//! Errors met while gathering are kept as text: the checks report them, they never abort a run.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;

/// Mode and owner of one file or directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileFacts {
    /// The path.
    pub path: PathBuf,
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
}

/// The gateway lock file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum LockFacts {
    /// No lock file.
    Absent,
    /// A lock file nobody holds: its owner died without removing it.
    Stale {
        /// The pid it names (0 when unreadable).
        pid: u32,
        /// Whether a process with that pid exists now (pid reuse).
        pid_alive: bool,
    },
    /// Held by a live gateway (or an offline `claw devices …` command).
    Held {
        /// The pid it names.
        pid: u32,
    },
}

impl LockFacts {
    /// The pid of the live holder, if any.
    pub fn holder(&self) -> Option<u32> {
        match self {
            LockFacts::Held { pid } => Some(*pid),
            _ => None,
        }
    }
}

/// The runtime file `gateway.json` a running gateway writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeFacts {
    /// The writer's pid.
    pub pid: Option<u32>,
    /// The WebSocket URL.
    pub url: Option<String>,
    /// The WebSocket port.
    pub port: Option<u16>,
    /// The WebSocket listen addresses, as written.
    pub addrs: Vec<String>,
    /// The QUIC tunnel's UDP address, when the gateway runs one.
    pub tunnel_addr: Option<String>,
    /// The gateway's tunnel identity (fingerprint), when it runs one.
    pub tunnel_id: Option<String>,
    /// The SSH forward's TCP address, when the gateway runs one.
    pub ssh_addr: Option<String>,
    /// The SSH host key fingerprint, when the gateway runs the SSH forward.
    pub ssh_fingerprint: Option<String>,
    /// Why the file could not be parsed, if it could not.
    pub error: Option<String>,
}

/// What connecting to `admin.sock` gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "error", rename_all = "camelCase")]
pub enum SocketFacts {
    /// No socket file.
    Absent,
    /// A listener accepted the connection.
    Answers,
    /// The file exists but nothing listens (ECONNREFUSED, or not a socket).
    Refused,
    /// Connecting failed otherwise.
    Failed(String),
}

/// A pairing request waiting for the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingFacts {
    /// Request id.
    pub request_id: String,
    /// Device id.
    pub device_id: String,
    /// When it was made.
    pub created_at_ms: u64,
}

/// What the opened store reported; each probe keeps its own error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreReport {
    /// `PRAGMA integrity_check` problems (empty = healthy).
    pub integrity: Result<Vec<String>, String>,
    /// The recorded schema version.
    pub schema: Result<i64, String>,
    /// Expired pairing requests still stored.
    pub expired_requests: Result<u64, String>,
    /// Pairing codes that expired unused.
    pub expired_codes: Result<u64, String>,
    /// Unexpired pending requests, oldest first.
    pub pending: Result<Vec<PendingFacts>, String>,
    /// The newest timestamp the store recorded (audit, root rotation).
    pub newest_record_ms: Result<Option<u64>, String>,
}

/// The state store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum StoreFacts {
    /// No `state.db`.
    Absent,
    /// The file would not open.
    Unreadable {
        /// SQLite's message.
        error: String,
    },
    /// Opened and inspected.
    Open(StoreReport),
}

/// A leftover temporary file (`*.claw-tmp`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TempFile {
    /// The path.
    pub path: PathBuf,
    /// The writer's pid, parsed from the name (`NAME.PID.claw-tmp`).
    pub writer_pid: Option<u32>,
    /// True when that pid is alive (the write may be in progress).
    pub writer_alive: bool,
}

/// A process, as `/proc` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcInfo {
    /// Pid.
    pub pid: u32,
    /// Command line, arguments joined by spaces.
    pub cmdline: String,
    /// It is a `claw … gateway run` process.
    pub claw_gateway: bool,
}

/// One listening socket on the port the doctor checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortHolder {
    /// The local address it listens on.
    pub addr: SocketAddr,
    /// Socket inode.
    pub inode: u64,
    /// Owner uid of the socket (`None` when it is not in our `/proc/net` view).
    pub uid: Option<u32>,
    /// The processes holding it (empty when they are not visible: another user's).
    pub processes: Vec<ProcInfo>,
}

/// Where the checked port number came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PortSource {
    /// `claw doctor --port`.
    Flag,
    /// The running (or last) gateway's `gateway.json`.
    Runtime,
    /// The default, 18789.
    Default,
}

/// The gateway's WebSocket port.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortFacts {
    /// The port.
    pub port: u16,
    /// Where the number came from.
    pub source: PortSource,
    /// Every listening TCP socket on it.
    pub holders: Vec<PortHolder>,
    /// A TCP connect to the running gateway's address: latency in ms, or the error.
    /// `None` when no gateway runs.
    pub connect: Option<Result<f64, String>>,
}

/// A `claw … gateway run` process found in `/proc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayProcess {
    /// Pid.
    pub pid: u32,
    /// Its home, as far as it can be told (`--home`, `CLAW_HOME`, else `~/.claw`).
    pub home: Option<PathBuf>,
    /// Command line.
    pub cmdline: String,
}

/// The result of presenting credentials to the running gateway.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum CredentialProbe {
    /// Not attempted; why.
    NotChecked {
        /// Why.
        why: String,
    },
    /// Accepted (handshake + `health`).
    Accepted {
        /// Round trip in ms.
        latency_ms: f64,
    },
    /// Refused by the gateway.
    Refused {
        /// `error.details.code` (e.g. `AUTH_TOKEN_MISMATCH`), else `error.code`.
        code: String,
        /// The refusal text (the WebSocket close reason).
        reason: String,
    },
    /// The connection failed before the gateway judged the credentials.
    Failed {
        /// Why.
        error: String,
    },
}

/// This home's shared token against the running gateway.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenFacts {
    /// The home has a `gateway.token` file.
    pub home_token_present: bool,
    /// The running gateway's `tokenSource` (`generated` / `pinned`), when known.
    pub gateway_source: Option<String>,
    /// The probe.
    pub probe: CredentialProbe,
}

impl Default for TokenFacts {
    fn default() -> Self {
        Self {
            home_token_present: false,
            gateway_source: None,
            probe: CredentialProbe::NotChecked {
                why: "no probe was run".into(),
            },
        }
    }
}

/// A remote-access listener (the QUIC tunnel, the SSH forward).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum ListenerFacts {
    /// The gateway does not run one.
    NotConfigured,
    /// Configured and a socket is bound on its address by the gateway.
    Up {
        /// Address.
        addr: String,
        /// Key fingerprint.
        fingerprint: Option<String>,
    },
    /// Configured but nothing of the gateway's is bound there.
    Down {
        /// Address.
        addr: String,
        /// Why it is considered down.
        error: String,
    },
}

/// This home's device credentials (a device paired through the tunnel) against its gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum DeviceCredentialFacts {
    /// The home holds no device pairing.
    NotPaired,
    /// The gateway answered a read-only probe over the tunnel.
    Checked {
        /// Generation of the stored device token (0 = unknown).
        stored_generation: u64,
        /// The gateway's current generation.
        gateway_generation: u64,
    },
    /// The gateway refused the device (stable code and message).
    Refused {
        /// Code (`revoked`, `not_paired`, …).
        code: String,
        /// Message.
        reason: String,
    },
    /// The gateway could not be reached.
    Unreachable {
        /// Why.
        error: String,
    },
}

/// Everything the checks judge.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Facts {
    /// The home directory.
    pub home: PathBuf,
    /// The caller's uid.
    pub uid: u32,
    /// The system clock, ms since the epoch.
    pub now_ms: u64,
    /// The home directory's mode and owner (`None`: it does not exist).
    pub home_dir: Option<FileFacts>,
    /// Secret files present in the home.
    pub secrets: Vec<FileFacts>,
    /// The gateway lock.
    pub lock: LockFacts,
    /// `gateway.json`, if present.
    pub runtime: Option<RuntimeFacts>,
    /// `admin.sock`.
    pub admin_socket: SocketFacts,
    /// `state.db`.
    pub store: StoreFacts,
    /// `*.claw-tmp` files.
    pub temp_files: Vec<TempFile>,
    /// The WebSocket port.
    pub port: PortFacts,
    /// Other claw gateways on this machine (not this home's).
    pub other_gateways: Vec<GatewayProcess>,
    /// Token drift.
    pub token: TokenFacts,
    /// The QUIC tunnel listener.
    pub tunnel: ListenerFacts,
    /// The SSH forward listener.
    pub ssh: ListenerFacts,
    /// Device credentials held by this home.
    pub device: DeviceCredentialFacts,
    /// The kernel's caps on socket buffers, bytes (`net.core.rmem_max`, `net.core.wmem_max`);
    /// `None` when unreadable.
    pub socket_buffer_max: Option<(u64, u64)>,
    /// Whether the store can be written: the file system's state and the write lock.
    pub storage: StorageFacts,
    /// The store's snapshots (`snapshots/`), newest first.
    pub snapshots: Vec<SnapshotFacts>,
    /// Upstream mode: the running gateway's `upstream` status (`None`: no upstream, or no
    /// gateway running). Filled by the CLI from the admin socket.
    pub upstream: Option<UpstreamFacts>,
    /// The relays the running gateway dials out to, each probed end to end (filled by the CLI).
    #[serde(default)]
    pub relays: Vec<RelayFacts>,
    /// The device side of this home's relay pairing (`None`: not paired through relays).
    #[serde(default)]
    pub device_relay: Option<DeviceRelayFacts>,
}

/// A relay the running gateway dials out to (`--relay`), with the CLI's probe through it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayFacts {
    /// The relay's URL.
    pub url: String,
    /// Whether the gateway pins its certificate (`--relay-pin`).
    pub pinned: bool,
    /// A QUIC handshake with this gateway through the relay, as a device makes it (a ticket
    /// the gateway signs for a throwaway key): the latency, or the error.
    pub probe: Result<f64, String>,
}

/// This home's relay pairing as a device: how many relays it names, and its relay ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRelayFacts {
    /// Relays the pairing names.
    pub relays: usize,
    /// When the stored relay ticket expires (unix seconds); `None`: no ticket stored.
    pub ticket_expires_at: Option<u64>,
}

/// What the running gateway says about its upstream (`gateway.status`'s `upstream`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamFacts {
    /// The upstream's URL.
    pub url: String,
    /// Where the credential comes from.
    pub credential: String,
    /// Its last connect was answered.
    pub reachable: bool,
    /// Its last connect was accepted.
    pub authenticated: bool,
    /// Why not, if not.
    pub last_error: Option<String>,
}

/// One snapshot of the store, checked read-only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotFacts {
    /// The file.
    pub path: PathBuf,
    /// When it was taken (ms since the epoch).
    pub taken_at_ms: u64,
    /// It passes SQLite's integrity check and holds a root.
    pub intact: bool,
    /// The root generation it holds.
    pub generation: Option<u64>,
    /// Paired (not revoked) devices it holds.
    pub devices: Option<u64>,
}

/// Whether `state.db` can take a write now (`store.writable`): the faults that make the gateway
/// answer a retryable `UNAVAILABLE` (disk full, read-only, a write lock held elsewhere).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageFacts {
    /// The file system holding the home is mounted read-only (`statvfs` `ST_RDONLY`).
    pub read_only: bool,
    /// Bytes available to this user on that file system (`None`: `statvfs` failed).
    pub free_bytes: Option<u64>,
    /// The write-lock probe on `state.db`.
    pub write_lock: WriteLockProbe,
}

/// A zero-wait `BEGIN IMMEDIATE; ROLLBACK` on `state.db` (writes nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum WriteLockProbe {
    /// Not probed (no store, or it would not open).
    #[default]
    NotChecked,
    /// The write lock was free.
    Free,
    /// Another connection held the write lock; the processes other than the gateway that have
    /// `state.db` open (the likely holders: an operator's `sqlite3` shell, a backup).
    Held {
        /// Those processes.
        holders: Vec<ProcInfo>,
    },
    /// The probe failed otherwise.
    Failed {
        /// SQLite's message.
        error: String,
    },
}
