//! The state store: the only code that touches the SQLite database (`state.db`, 0600).
//!
//! SQLite in WAL mode with `synchronous=NORMAL`: every write is one transaction, a `kill -9` at any
//! instant leaves the last committed state (WAL replay on open), and commits need no fsync on the
//! hot path. See docs/architecture.md for why SQLite rather than redb.

mod audit;
mod codes;
mod devices;
mod pairing;
mod root;
pub mod snapshot;
mod sqlite_fault;
mod sub_identities;
mod tokens;

pub use audit::AuditEntry;
pub use codes::{CodeInfo, Redeemed};
pub use devices::{DeviceInfo, NewDevice};
pub use pairing::PendingRequest;
pub use sub_identities::{SubIdentity, SubIdentityInfo, MAX_SUB_IDENTITIES};
pub use tokens::IssuedToken;

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::fault::FaultKind;

/// Schema version this build writes.
pub const SCHEMA_VERSION: i64 = 1;

/// How long a store call waits for another process's write lock on `state.db` (an operator's
/// `sqlite3` shell, a backup) before it fails with [`FaultKind::Locked`]. Bounded so a held
/// lock turns into a retryable `UNAVAILABLE` within seconds instead of a stalled handshake.
pub const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Store errors: a [`StoreError::Fault`] is the disk's, the file system's or another process's
/// doing (answered with a retryable `UNAVAILABLE`); every other variant is a logic outcome.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not read or write for a reason outside the request (disk full,
    /// read-only, locked, IO error, corruption).
    #[error("state store unavailable ({}): {source}", kind.name())]
    Fault {
        /// What went wrong.
        kind: FaultKind,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// SQLite failed for another reason (a constraint, a bad row: a bug).
    #[error("state store: {0}")]
    Sql(rusqlite::Error),
    /// Creating the file failed.
    #[error("state store {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The database was written by a newer claw.
    #[error("state store schema version {found} is newer than this claw understands ({SCHEMA_VERSION}); upgrade claw")]
    TooNew {
        /// The version found.
        found: i64,
    },
    /// No such device / request.
    #[error("{0}")]
    NotFound(String),
    /// The operation is not allowed in the current state.
    #[error("{0}")]
    Conflict(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e
            .sqlite_error_code()
            .and_then(sqlite_fault::fault_from_sqlite_code)
        {
            Some(kind) => StoreError::Fault { kind, source: e },
            None => StoreError::Sql(e),
        }
    }
}

impl StoreError {
    /// The fault, when this error is one (disk full, read-only, locked, IO, corrupt); `None` for
    /// logic outcomes ([`StoreError::NotFound`], [`StoreError::Conflict`], [`StoreError::TooNew`]).
    pub fn fault(&self) -> Option<FaultKind> {
        match self {
            StoreError::Fault { kind, .. } => Some(*kind),
            StoreError::Io { source, .. } => Some(FaultKind::from_io(source)),
            _ => None,
        }
    }

    /// The fault to report for an error on a path where no store error is the caller's doing
    /// (the connect path): a logic error counts as [`FaultKind::Internal`].
    pub fn fault_or_internal(&self) -> FaultKind {
        self.fault().unwrap_or(FaultKind::Internal)
    }
}

/// Runs a store call without stalling an async worker: on a multi-threaded runtime the worker
/// hands its other tasks to another thread while `f` waits for the store (a held lock can take
/// up to [`BUSY_TIMEOUT`]); elsewhere `f` simply runs.
pub fn off_worker<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Writes one page to an unnamed `O_TMPFILE` in `dir` and syncs it: nothing is left behind.
/// Tells a read-only (`EROFS`) or full (`ENOSPC`) file system apart where SQLite only says "disk
/// I/O error", and where the mount flags do not show it (ext4's emergency read-only).
pub fn probe_write(dir: &Path) -> std::result::Result<(), nix::errno::Errno> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let fd = open(
        dir,
        OFlag::O_TMPFILE | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::S_IRUSR | Mode::S_IWUSR,
    )?;
    let mut f = std::fs::File::from(fd);
    std::io::Write::write_all(&mut f, &[0u8; 4096])
        .and_then(|()| f.sync_data())
        .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)))
}

/// Result alias.
pub type Result<T> = std::result::Result<T, StoreError>;

/// The open store.
pub struct Store {
    conn: Connection,
    /// Collapses floods of refusal rows (see `audit::RefusalGate`).
    refusals: audit::RefusalGate,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS root (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL,
    secret BLOB NOT NULL,
    rotated_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    public_key TEXT NOT NULL,
    display_name TEXT,
    platform TEXT NOT NULL DEFAULT '',
    device_family TEXT NOT NULL DEFAULT '',
    client_id TEXT NOT NULL DEFAULT '',
    client_mode TEXT NOT NULL DEFAULT '',
    role TEXT NOT NULL,
    scopes TEXT NOT NULL,
    approved_via TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    approved_at_ms INTEGER NOT NULL,
    last_seen_at_ms INTEGER,
    revoked_at_ms INTEGER,
    token_salt BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS device_tokens (
    token_hash BLOB PRIMARY KEY,
    device_id TEXT NOT NULL,
    role TEXT NOT NULL,
    scopes TEXT NOT NULL,
    generation INTEGER NOT NULL,
    serial INTEGER NOT NULL,
    issued_at_ms INTEGER NOT NULL,
    superseded_at_ms INTEGER
);
CREATE INDEX IF NOT EXISTS device_tokens_by_device ON device_tokens(device_id, role);
CREATE TABLE IF NOT EXISTS pairing_requests (
    request_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    display_name TEXT,
    platform TEXT NOT NULL DEFAULT '',
    device_family TEXT NOT NULL DEFAULT '',
    client_id TEXT NOT NULL DEFAULT '',
    client_mode TEXT NOT NULL DEFAULT '',
    role TEXT NOT NULL,
    scopes TEXT NOT NULL,
    origin TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pairing_codes (
    code_id TEXT PRIMARY KEY,
    secret_hash BLOB NOT NULL,
    name TEXT,
    require_approval INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    used_at_ms INTEGER,
    device_id TEXT
);
CREATE TABLE IF NOT EXISTS sub_identities (
    device_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    client TEXT NOT NULL,
    display_name TEXT,
    role TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    PRIMARY KEY (device_id, key_id)
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms INTEGER NOT NULL,
    event TEXT NOT NULL,
    device_id TEXT,
    origin TEXT,
    detail TEXT
);
"#;

impl Store {
    /// Opens (creating 0600 if needed) and migrates the store; generates the device-token root on
    /// first open.
    pub fn open(path: &Path) -> Result<Self> {
        // Created 0600 if absent; never a symlink or a file another uid planted.
        crate::home::open_private(
            path,
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600),
        )
        .map_err(|source| StoreError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // A store written by a newer claw is refused before anything (even the journal mode)
        // is written to it: it stays byte for byte what the newer claw left.
        if let Some(found) = recorded_version(&conn).filter(|v| *v > SCHEMA_VERSION) {
            return Err(StoreError::TooNew { found });
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let mut store = Self {
            conn,
            refusals: Default::default(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Opens an existing store for inspection (`claw doctor`): never creates the file, never
    /// migrates or writes. Safe while a gateway has the store open (SQLite WAL readers).
    pub fn open_existing(path: &Path) -> Result<Self> {
        use rusqlite::OpenFlags;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(Self {
            conn,
            refusals: Default::default(),
        })
    }

    /// The newest timestamp the store recorded (audit entries and the root's rotation), if any;
    /// a system clock earlier than this has gone backwards (`claw doctor`'s `clock.skew`).
    pub fn newest_record_ms(&self) -> Result<Option<u64>> {
        let v: Option<i64> = self.conn.query_row(
            "SELECT MAX(ts) FROM (SELECT MAX(ts_ms) AS ts FROM audit UNION ALL SELECT MAX(rotated_at_ms) FROM root)",
            [],
            |r| r.get(0),
        )?;
        Ok(v.map(|v| v.max(0) as u64))
    }

    /// A write transaction that takes the write lock at `BEGIN` (`IMMEDIATE`), so a lock held
    /// elsewhere is waited for ([`BUSY_TIMEOUT`]) instead of failing half-way through.
    fn write_tx(&mut self) -> rusqlite::Result<Transaction<'_>> {
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
    }

    fn migrate(&mut self) -> Result<()> {
        let tx = self.write_tx()?;
        tx.execute_batch(SCHEMA)?;
        let found: Option<String> = tx
            .query_row(
                "SELECT value FROM meta WHERE key='schema_version'",
                [],
                |r| r.get(0),
            )
            .ok();
        match found.and_then(|v| v.parse::<i64>().ok()) {
            Some(v) if v > SCHEMA_VERSION => return Err(StoreError::TooNew { found: v }),
            Some(_) => {}
            None => {
                tx.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?1)",
                    [SCHEMA_VERSION.to_string()],
                )?;
            }
        }
        add_columns(&tx)?;
        root::ensure(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// Probes the write lock without waiting and without writing (`BEGIN IMMEDIATE; ROLLBACK`):
    /// `Ok(true)` free, `Ok(false)` held by another connection (`claw doctor`'s
    /// `store.writable`).
    pub fn write_lock_free(&self) -> Result<bool> {
        self.conn.busy_timeout(std::time::Duration::ZERO)?;
        let r = self.conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;");
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        match r.map_err(StoreError::from) {
            Ok(()) => Ok(true),
            Err(e) if e.fault() == Some(FaultKind::Locked) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The schema version recorded in the file.
    pub fn schema_version(&self) -> Result<i64> {
        let v: String = self.conn.query_row(
            "SELECT value FROM meta WHERE key='schema_version'",
            [],
            |r| r.get(0),
        )?;
        Ok(v.parse().unwrap_or(0))
    }

    /// Runs SQLite's own `PRAGMA integrity_check`; `Ok(vec![])` means healthy.
    pub fn integrity_problems(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
        let rows: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<std::result::Result<_, _>>()?;
        Ok(rows.into_iter().filter(|r| r != "ok").collect())
    }
}

/// Columns added after schema version 1 was released, each optional, so an older claw reading
/// the file (it names its columns) is unaffected: added when missing.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("devices", "last_transport", "TEXT"),
    ("pairing_requests", "remote_addr", "TEXT"),
];

fn add_columns(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    for (table, column, ty) in ADDED_COLUMNS {
        let present: i64 = tx.query_row(
            &format!("SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = ?1"),
            [column],
            |r| r.get(0),
        )?;
        if present == 0 {
            tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))?;
        }
    }
    Ok(())
}

/// The schema version a store records, read without writing (`None`: none recorded yet).
fn recorded_version(conn: &Connection) -> Option<i64> {
    conn.query_row(
        "SELECT value FROM meta WHERE key='schema_version'",
        [],
        |r| r.get::<_, String>(0),
    )
    .ok()
    .and_then(|v| v.parse().ok())
}

fn scopes_to_json(scopes: &[String]) -> String {
    serde_json::to_string(scopes).unwrap_or_else(|_| "[]".into())
}

fn scopes_from_json(s: &str) -> Vec<String> {
    serde_json::from_str(s).unwrap_or_default()
}

#[cfg(test)]
mod tests;
