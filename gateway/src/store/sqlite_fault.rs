//! Which SQLite result codes are faults ([`FaultKind`]): the store's half of the fault rule
//! (the kinds themselves are wire facts and live in `claw_proto::fault`).

use crate::fault::FaultKind;

/// Classifies an SQLite primary result code (`sqlite3_errcode & 0xff`); `None` for logic errors
/// (a constraint, a misuse), which are not faults.
pub(super) fn fault_from_sqlite_code(code: rusqlite::ErrorCode) -> Option<FaultKind> {
    use rusqlite::ErrorCode as C;
    Some(match code {
        C::DiskFull => FaultKind::DiskFull,
        C::ReadOnly => FaultKind::ReadOnly,
        C::DatabaseBusy | C::DatabaseLocked => FaultKind::Locked,
        C::SystemIoFailure | C::CannotOpen | C::FileLockingProtocolFailed => FaultKind::Io,
        C::DatabaseCorrupt | C::NotADatabase => FaultKind::Corrupt,
        C::OutOfMemory => FaultKind::Internal,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_codes_classified() {
        use rusqlite::ErrorCode as C;
        let table = [
            (C::DiskFull, Some(FaultKind::DiskFull)),
            (C::ReadOnly, Some(FaultKind::ReadOnly)),
            (C::DatabaseBusy, Some(FaultKind::Locked)),
            (C::DatabaseLocked, Some(FaultKind::Locked)),
            (C::SystemIoFailure, Some(FaultKind::Io)),
            (C::NotADatabase, Some(FaultKind::Corrupt)),
            // Logic errors are not faults.
            (C::ConstraintViolation, None),
        ];
        for (code, want) in table {
            assert_eq!(fault_from_sqlite_code(code), want, "{code:?}");
        }
    }
}
