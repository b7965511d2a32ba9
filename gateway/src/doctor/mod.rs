//! `claw doctor`: find drifted or orphaned state, repair what is safe, say what the human must do.
//!
//! Shaped like the rest of the gateway: pure decisions between thin IO layers.
//! - [`facts`]: plain data about the home and the machine.
//! - [`gather`] (IO): reads files, the lock, the store, `/proc`, and fills [`facts::Facts`]. The
//!   network probes that need the client library (a shared-token connect) are done by the CLI,
//!   which fills [`facts::Facts::token`].
//! - [`checks`] (pure): [`checks::evaluate`] turns facts into [`Finding`]s, one function per check.
//! - [`fix`] (IO): applies the safe [`FixAction`]s — never a credential.
//! - [`report`] (pure): the summary, the exit status and the human form.
//!
//! Every finding has a stable id ([`ids`]); docs/doctor.md lists them with what `--fix` does.

pub mod checks;
pub mod facts;
pub mod fix;
pub mod gather;
pub mod procfs;
pub mod report;

use std::path::PathBuf;

use serde::Serialize;

pub use report::{Entry, Report, Summary};

/// The stable ids of the checks (each check reports under its id, healthy or not).
pub mod ids {
    /// The home directory is 0700 and the caller's.
    pub const HOME_PERMISSIONS: &str = "home.permissions";
    /// Secret files are 0600 and the caller's.
    pub const SECRET_PERMISSIONS: &str = "secret.permissions";
    /// A lock file left by a gateway that died.
    pub const LOCK_STALE: &str = "lock.stale";
    /// A `gateway.json` left by a gateway that died.
    pub const RUNTIME_STALE: &str = "runtime.stale";
    /// `admin.sock` present with nothing listening.
    pub const ADMIN_SOCKET_ORPHAN: &str = "admin_socket.orphan";
    /// SQLite's integrity check of `state.db`.
    pub const STORE_INTEGRITY: &str = "store.integrity";
    /// The store's schema version.
    pub const STORE_SCHEMA: &str = "store.schema";
    /// Temporary files left by interrupted writes.
    pub const FILES_TEMPORARY: &str = "files.temporary";
    /// Expired pairing requests and codes still stored.
    pub const PAIRING_EXPIRED: &str = "pairing.expired";
    /// Pairing requests waiting for the operator.
    pub const PAIRING_PENDING: &str = "pairing.pending";
    /// The gateway's listen addresses are loopback.
    pub const BIND_NON_LOOPBACK: &str = "bind.non_loopback";
    /// The WebSocket port: served by this gateway, free, or held by someone else.
    pub const PORT_RIVAL: &str = "port.rival";
    /// Other claw gateways on this machine.
    pub const GATEWAY_MULTIPLE: &str = "gateway.multiple";
    /// This home's credentials against the running gateway.
    pub const TOKEN_DRIFT: &str = "token.drift";
    /// This home's device token against the gateway it paired with (over the tunnel).
    pub const DEVICE_DRIFT: &str = "token.drift.device";
    /// The system clock against the store's newest record.
    pub const CLOCK_SKEW: &str = "clock.skew";
    /// The QUIC tunnel listener.
    pub const TUNNEL_LISTENER: &str = "tunnel.listener";
    /// The SSH forward listener.
    pub const SSH_LISTENER: &str = "ssh.listener";
    /// The kernel caps UDP socket buffers below what the tunnel asks for.
    pub const UDP_BUFFERS: &str = "udp.buffers";
    /// The store cannot take writes: disk full, read-only file system, write lock held.
    pub const STORE_WRITABLE: &str = "store.writable";
    /// The store's snapshots, and restoring the newest intact one over a damaged store.
    pub const STORE_SNAPSHOTS: &str = "store.snapshots";
    /// Upstream mode: the OpenClaw gateway behind claw accepts claw (`--upstream`).
    pub const UPSTREAM: &str = "upstream";
    /// A relay the gateway dials out to answers (`--relay`).
    pub const RELAY_REACHABLE: &str = "relay.reachable";
    /// The relay's certificate is the one `--relay-pin` names.
    pub const RELAY_PIN: &str = "relay.pin";
    /// The relay admits this gateway (its id is on `--allow-gateway`).
    pub const RELAY_ADMITTED: &str = "relay.admitted";
    /// The device's relay ticket is present and fresh.
    pub const RELAY_TICKET: &str = "relay.ticket";
}

/// How bad a finding is. Warnings and errors that are not fixed make `claw doctor` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Healthy.
    Ok,
    /// Worth knowing; nothing to do.
    Info,
    /// Something drifted; the gateway may still work.
    Warn,
    /// Something is broken or unsafe.
    Error,
}

impl Severity {
    /// The tag of the human form (`ok`, `info`, `warn`, `error`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Error => "error",
        }
    }
}

/// A repair `claw doctor --fix` may apply. None of them touches a credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum FixAction {
    /// Remove a lock file nobody holds (done while holding the lock: take, unlink, release).
    RemoveStaleLock {
        /// The lock file.
        path: PathBuf,
    },
    /// Remove `gateway.json` left by a dead gateway (under the lock, so none starts meanwhile).
    RemoveStaleRuntime {
        /// The runtime file.
        path: PathBuf,
    },
    /// Remove a socket file nothing listens on (under the lock, re-checked first).
    RemoveOrphanSocket {
        /// The socket file.
        path: PathBuf,
    },
    /// Remove temporary files whose writer is dead.
    RemoveTempFiles {
        /// The files.
        paths: Vec<PathBuf>,
    },
    /// Tighten permissions.
    Chmod {
        /// The file or directory.
        path: PathBuf,
        /// The new mode (0600 or 0700).
        mode: u32,
    },
    /// Delete expired pairing requests and expired or used pairing codes (through the running
    /// gateway's admin socket, or under the lock when none runs).
    PruneExpiredPairing,
    /// Replace a damaged `state.db` with an intact snapshot (no gateway running; the damaged
    /// file is moved aside, not deleted; audited `store.restored`).
    RestoreSnapshot {
        /// The snapshot.
        snapshot: PathBuf,
        /// When it was taken.
        taken_at_ms: u64,
    },
}

impl FixAction {
    /// What applying it does, for the human form (`remove /x/gateway.lock`).
    pub fn describe(&self) -> String {
        match self {
            FixAction::RemoveStaleLock { path }
            | FixAction::RemoveStaleRuntime { path }
            | FixAction::RemoveOrphanSocket { path } => format!("remove {}", path.display()),
            FixAction::RemoveTempFiles { paths } => match paths.as_slice() {
                [one] => format!("remove {}", one.display()),
                many => format!("remove {} temporary files", many.len()),
            },
            FixAction::Chmod { path, mode } => format!("chmod {mode:o} {}", path.display()),
            FixAction::PruneExpiredPairing => {
                "prune expired pairing requests and codes".to_string()
            }
            FixAction::RestoreSnapshot { snapshot, .. } => {
                format!("restore state.db from {}", snapshot.display())
            }
        }
    }
}

/// One result of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable check id (see [`ids`]).
    pub id: &'static str,
    /// Severity.
    pub severity: Severity,
    /// One line saying what was found.
    pub message: String,
    /// The safe repair `--fix` applies, if there is one.
    pub fix: Option<FixAction>,
    /// What the human should do (an exact command when there is one).
    pub hint: Option<String>,
}

impl Finding {
    fn new(id: &'static str, severity: Severity, message: impl Into<String>) -> Self {
        Self {
            id,
            severity,
            message: message.into(),
            fix: None,
            hint: None,
        }
    }
    /// A healthy finding.
    pub fn ok(id: &'static str, message: impl Into<String>) -> Self {
        Self::new(id, Severity::Ok, message)
    }
    /// An informational finding.
    pub fn info(id: &'static str, message: impl Into<String>) -> Self {
        Self::new(id, Severity::Info, message)
    }
    /// A warning.
    pub fn warn(id: &'static str, message: impl Into<String>) -> Self {
        Self::new(id, Severity::Warn, message)
    }
    /// An error.
    pub fn error(id: &'static str, message: impl Into<String>) -> Self {
        Self::new(id, Severity::Error, message)
    }
    /// With a safe repair.
    pub fn with_fix(mut self, fix: FixAction) -> Self {
        self.fix = Some(fix);
        self
    }
    /// With advice for the human.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Errors applying a repair.
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The gateway lock could not be taken.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The running gateway's admin socket failed or refused.
    #[error("admin socket: {0}")]
    Admin(String),
    /// The state changed since it was inspected; the repair was not applied.
    #[error("not applied: {0}")]
    Changed(String),
}

impl DoctorError {
    fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        DoctorError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
