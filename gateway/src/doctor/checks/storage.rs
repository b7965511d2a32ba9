//! `store.writable`: the faults under which the gateway answers a retryable `UNAVAILABLE`
//! instead of serving writes (docs/reliability.md), each named with its fix.

use std::path::Path;

use super::super::facts::{StorageFacts, WriteLockProbe};
use super::super::{ids, Finding};
use crate::store::BUSY_TIMEOUT;

/// Below this many free bytes the store's next write is likely to fail (`SQLITE_FULL`).
pub const DISK_FULL_BYTES: u64 = 1 << 20;

const WHAT_CLIENTS_SEE: &str = "existing sessions and read-only methods keep working; connects and methods that must write (new devices, refreshes, pairing, rotations) are answered with a retryable UNAVAILABLE, never an auth error";

/// Judges the store's file system and write lock. `gw` is the running gateway's pid (its own
/// brief write transactions are not someone else's lock).
pub fn store_writable(home: &Path, s: &StorageFacts, gw: Option<u32>) -> Finding {
    let id = ids::STORE_WRITABLE;
    if s.read_only {
        return Finding::error(
            id,
            format!("read-only: the file system holding {} is mounted read-only; {WHAT_CLIENTS_SEE}", home.display()),
        )
        .with_hint("look for the disk error that caused it (`dmesg`), then unmount, check (`fsck`) and mount it read-write again, and restart the gateway; committed state is kept");
    }
    if let Some(free) = s.free_bytes.filter(|f| *f < DISK_FULL_BYTES) {
        return Finding::error(
            id,
            format!(
                "disk full: {free} bytes free on the file system holding {}; {WHAT_CLIENTS_SEE}",
                home.display()
            ),
        )
        .with_hint(format!(
            "free space there (`df -h {}`); the gateway resumes by itself, nothing to restart",
            home.display()
        ));
    }
    match &s.write_lock {
        WriteLockProbe::Held { holders } => {
            let others: Vec<String> = holders
                .iter()
                .filter(|p| Some(p.pid) != gw)
                .map(|p| format!("pid {} ({})", p.pid, p.cmdline))
                .collect();
            if others.is_empty() {
                return Finding::info(
                    id,
                    "state.db was busy with a write of the gateway's own (normal)",
                );
            }
            Finding::warn(
                id,
                format!(
                    "store locked: another process holds the write lock on state.db: {}; writes wait {} s for it, then {WHAT_CLIENTS_SEE}",
                    others.join(", "),
                    BUSY_TIMEOUT.as_secs()
                ),
            )
            .with_hint("end that transaction (COMMIT or ROLLBACK in the sqlite3 shell, or quit it); read the store with `sqlite3 -readonly` instead")
        }
        WriteLockProbe::Failed { error } => Finding::warn(
            id,
            format!("could not probe the write lock on state.db: {error}"),
        ),
        WriteLockProbe::NotChecked | WriteLockProbe::Free => {
            let free = s
                .free_bytes
                .map(|f| format!(" ({} MiB free)", f >> 20))
                .unwrap_or_default();
            Finding::ok(id, format!("state.db can take writes{free}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::facts::ProcInfo;
    use crate::doctor::Severity;

    fn facts(read_only: bool, free: u64, lock: WriteLockProbe) -> StorageFacts {
        StorageFacts {
            read_only,
            free_bytes: Some(free),
            write_lock: lock,
        }
    }

    #[test]
    fn each_fault_is_named_with_its_fix() {
        let h = Path::new("/h");
        let f = store_writable(h, &facts(false, 10 << 30, WriteLockProbe::Free), Some(1));
        assert_eq!(f.severity, Severity::Ok);

        let f = store_writable(h, &facts(true, 10 << 30, WriteLockProbe::Free), Some(1));
        assert_eq!(f.severity, Severity::Error);
        assert!(f.message.starts_with("read-only"), "{}", f.message);
        assert!(f.message.contains("UNAVAILABLE"));

        let f = store_writable(h, &facts(false, 4096, WriteLockProbe::Free), Some(1));
        assert_eq!(f.severity, Severity::Error);
        assert!(
            f.message.starts_with("disk full: 4096 bytes"),
            "{}",
            f.message
        );
        assert!(f.hint.as_deref().unwrap().contains("df -h /h"));

        let shell = ProcInfo {
            pid: 77,
            cmdline: "sqlite3 /h/state.db".into(),
            claw_gateway: false,
        };
        let gateway = ProcInfo {
            pid: 1,
            cmdline: "claw gateway run".into(),
            claw_gateway: true,
        };
        let held = WriteLockProbe::Held {
            holders: vec![gateway.clone(), shell],
        };
        let f = store_writable(h, &facts(false, 10 << 30, held), Some(1));
        assert_eq!(f.severity, Severity::Warn);
        assert!(f.message.starts_with("store locked"), "{}", f.message);
        assert!(
            f.message.contains("pid 77 (sqlite3 /h/state.db)"),
            "{}",
            f.message
        );
        assert!(!f.message.contains("pid 1 "), "{}", f.message);

        // The gateway's own write in flight is not a fault.
        let own = WriteLockProbe::Held {
            holders: vec![gateway],
        };
        let f = store_writable(h, &facts(false, 10 << 30, own), Some(1));
        assert_eq!(f.severity, Severity::Info);
    }
}
