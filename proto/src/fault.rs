//! Faults: the state store could not do its job for a reason that has nothing to do with the
//! caller's credentials (the disk is full, the file system is read-only, another process holds
//! the write lock, an IO error, a damaged file). Pure: no IO.
//!
//! The rule (docs/reliability.md): a fault is answered with a retryable `UNAVAILABLE` that names
//! it, never with an auth error, a 1008 or anything that tells a client to drop its credentials.

/// Why the store could not serve a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// `SQLITE_FULL`: no space left on the file system holding the home.
    DiskFull,
    /// `SQLITE_READONLY` / `EROFS`: the home is on a read-only file system (or the file is).
    ReadOnly,
    /// `SQLITE_BUSY` / `SQLITE_LOCKED`: another process held the database's write lock longer
    /// than the store waits (the gateway store's busy timeout).
    Locked,
    /// `SQLITE_IOERR`, `SQLITE_CANTOPEN` or a file-system error.
    Io,
    /// `SQLITE_CORRUPT` / `SQLITE_NOTADB`: the file is damaged (`claw doctor --fix` restores the
    /// last snapshot).
    Corrupt,
    /// A store error that is not one of the above (a bug or an unexpected state): still not the
    /// client's fault.
    Internal,
}

impl FaultKind {
    /// A stable short name for logs, the audit trail and `details.fault`.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::DiskFull => "disk_full",
            FaultKind::ReadOnly => "read_only",
            FaultKind::Locked => "store_locked",
            FaultKind::Io => "io_error",
            FaultKind::Corrupt => "store_corrupt",
            FaultKind::Internal => "store_error",
        }
    }

    /// What is wrong, in words an operator acts on.
    pub fn describe(self) -> &'static str {
        match self {
            FaultKind::DiskFull => "the disk holding the claw home is full",
            FaultKind::ReadOnly => "the claw home is on a read-only file system",
            FaultKind::Locked => "another process holds the write lock on state.db",
            FaultKind::Io => "an IO error on state.db (a failing or read-only disk)",
            FaultKind::Corrupt => "state.db is damaged",
            FaultKind::Internal => "the state store failed",
        }
    }

    /// How long a client should wait before retrying (`retryAfterMs`): a lock clears in
    /// seconds, a full or read-only disk needs an operator.
    pub fn retry_after_ms(self) -> u64 {
        match self {
            FaultKind::Locked => 1_000,
            FaultKind::Internal | FaultKind::Io => 2_000,
            FaultKind::DiskFull | FaultKind::ReadOnly | FaultKind::Corrupt => 5_000,
        }
    }

    /// The one-line message clients see (`error.message`): the fault, that it is retryable and
    /// where to look.
    pub fn message(self) -> String {
        format!(
            "gateway unavailable: {}; your credentials are fine, retry shortly (operator: run `claw doctor` on the gateway host)",
            self.describe()
        )
    }

    /// Narrows an [`FaultKind::Io`] with what a write probe of the home's directory met
    /// (`probe_errno`: its OS error, `None` when it succeeded): SQLite reports a write refused
    /// with `EROFS` or `ENOSPC` only as "disk I/O error". Other kinds are kept.
    pub fn refine_io(self, probe_errno: Option<i32>) -> Self {
        match (self, probe_errno) {
            (FaultKind::Io, Some(e)) => {
                match FaultKind::from_io(&std::io::Error::from_raw_os_error(e)) {
                    FaultKind::Io => FaultKind::Io,
                    narrower => narrower,
                }
            }
            (k, _) => k,
        }
    }

    /// Classifies an OS error (`ENOSPC`, `EROFS`, …) from a file the store or home writes.
    pub fn from_io(e: &std::io::Error) -> Self {
        match e.raw_os_error() {
            Some(28) | Some(122) => FaultKind::DiskFull, // ENOSPC, EDQUOT
            Some(30) => FaultKind::ReadOnly,             // EROFS
            _ => FaultKind::Io,
        }
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [FaultKind; 6] = [
        FaultKind::DiskFull,
        FaultKind::ReadOnly,
        FaultKind::Locked,
        FaultKind::Io,
        FaultKind::Corrupt,
        FaultKind::Internal,
    ];

    #[test]
    fn io_errors_classified() {
        let e = |n| std::io::Error::from_raw_os_error(n);
        assert_eq!(FaultKind::from_io(&e(28)), FaultKind::DiskFull);
        assert_eq!(FaultKind::from_io(&e(30)), FaultKind::ReadOnly);
        assert_eq!(FaultKind::from_io(&e(5)), FaultKind::Io);
    }

    #[test]
    fn io_is_narrowed_by_the_probe() {
        assert_eq!(FaultKind::Io.refine_io(Some(30)), FaultKind::ReadOnly);
        assert_eq!(FaultKind::Io.refine_io(Some(28)), FaultKind::DiskFull);
        assert_eq!(FaultKind::Io.refine_io(Some(5)), FaultKind::Io);
        assert_eq!(FaultKind::Io.refine_io(None), FaultKind::Io);
        assert_eq!(FaultKind::Locked.refine_io(Some(30)), FaultKind::Locked);
    }

    /// Every message names the fault, says the credentials are fine and points at doctor.
    #[test]
    fn messages_name_fault_and_doctor() {
        for k in ALL {
            let m = k.message();
            assert!(m.contains(k.describe()), "{m}");
            assert!(m.contains("claw doctor"), "{m}");
            assert!(!m.contains("unauthorized"), "{m}");
            assert!(k.retry_after_ms() > 0);
        }
    }
}
