//! `store.writable`: the faults under which the gateway answers a retryable `UNAVAILABLE`
//! instead of serving writes (docs/reliability.md), each named with its fix.

use std::path::Path;

use super::super::facts::{SnapshotFacts, StorageFacts, StoreFacts, WriteLockProbe};
use super::super::{ids, Finding, FixAction};
use super::human_duration;
use crate::store::BUSY_TIMEOUT;

/// Below this many free bytes the store's next write is likely to fail (`SQLITE_FULL`).
pub(super) const DISK_FULL_BYTES: u64 = 1 << 20;

const WHAT_CLIENTS_SEE: &str = "existing sessions and read-only methods keep working; connects and methods that must write (new devices, refreshes, pairing, rotations) are answered with a retryable UNAVAILABLE, never an auth error";

/// Judges the store's file system and write lock. `gw` is the running gateway's pid (its own
/// brief write transactions are not someone else's lock).
pub(super) fn store_writable(home: &Path, s: &StorageFacts, gw: Option<u32>) -> Finding {
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

/// What a restore gives back and what it loses.
const RESTORE_LOSES: &str = "same root and generation, so paired devices keep their tokens; lost: every change after the snapshot (devices paired since pair again; a device revoked since is paired again: revoke it again; a root rotation since is undone: rotate again); the damaged file is kept beside it as state.db.damaged-<time>";

/// `store.snapshots`: the snapshots there are, and over a damaged store, the restore of the
/// newest intact one.
pub(super) fn snapshots(store: &StoreFacts, snaps: &[SnapshotFacts], now_ms: u64) -> Finding {
    let id = ids::STORE_SNAPSHOTS;
    let damaged = match store {
        StoreFacts::Absent => return Finding::info(id, "no state.db yet, so no snapshots"),
        StoreFacts::Unreadable { .. } => true,
        StoreFacts::Open(r) => !matches!(&r.integrity, Ok(p) if p.is_empty()),
    };
    let describe = |s: &SnapshotFacts| {
        format!(
            "{} (taken {} ago, generation {}, {} paired devices)",
            s.path.display(),
            human_duration(now_ms.saturating_sub(s.taken_at_ms)),
            s.generation.unwrap_or(0),
            s.devices.unwrap_or(0)
        )
    };
    let good = snaps.iter().find(|s| s.intact);
    if damaged {
        return match good {
            Some(s) => Finding::error(
                id,
                format!(
                    "state.db is damaged; the newest intact snapshot can replace it: {}",
                    describe(s)
                ),
            )
            .with_fix(FixAction::RestoreSnapshot {
                snapshot: s.path.clone(),
                taken_at_ms: s.taken_at_ms,
            })
            .with_hint(format!(
                "`claw doctor --fix` (with the gateway stopped) restores it: {RESTORE_LOSES}"
            )),
            None => Finding::error(
                id,
                "state.db is damaged and there is no intact snapshot to restore",
            )
            .with_hint("see store.integrity for the salvage"),
        };
    }
    match (snaps.first(), good) {
        (None, _) => Finding::info(
            id,
            "no snapshot yet (a running gateway takes one at start, before every root rotation, and hourly)",
        ),
        (Some(newest), Some(g)) if newest == g => Finding::ok(
            id,
            format!("{} snapshot(s); newest {}", snaps.len(), describe(g)),
        ),
        (Some(newest), _) => Finding::warn(
            id,
            format!("the newest snapshot {} is not intact", newest.path.display()),
        )
        .with_hint("it is replaced by the next one the gateway takes (restart it to take one now); check the disk"),
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
        assert!(f.message.contains(crate::protocol::codes::UNAVAILABLE));

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

    #[test]
    fn a_damaged_store_gets_the_newest_intact_snapshot() {
        let snap = |ms: u64, intact: bool| SnapshotFacts {
            path: format!("/h/snapshots/state-{ms}.db").into(),
            taken_at_ms: ms,
            intact,
            generation: Some(3),
            devices: Some(2),
        };
        let snaps = [snap(3000, false), snap(2000, true), snap(1000, true)];
        let damaged = StoreFacts::Unreadable {
            error: "file is not a database".into(),
        };
        let f = snapshots(&damaged, &snaps, 62_000);
        assert_eq!(f.severity, Severity::Error);
        assert_eq!(
            f.fix,
            Some(FixAction::RestoreSnapshot {
                snapshot: "/h/snapshots/state-2000.db".into(),
                taken_at_ms: 2000
            })
        );
        assert!(f.message.contains("generation 3"), "{}", f.message);
        assert!(f.hint.as_deref().unwrap().contains("revoked since"));

        let f = snapshots(&damaged, &[snap(1, false)], 10);
        assert_eq!((f.severity, f.fix.is_none()), (Severity::Error, true));

        // A healthy store: no fix, whatever the snapshots.
        let healthy = StoreFacts::Open(crate::doctor::facts::StoreReport {
            integrity: Ok(vec![]),
            schema: Ok(1),
            expired_requests: Ok(0),
            expired_codes: Ok(0),
            pending: Ok(vec![]),
            newest_record_ms: Ok(None),
        });
        let f = snapshots(&healthy, &snaps[1..], 5000);
        assert_eq!((f.severity, f.fix.is_none()), (Severity::Ok, true));
        assert_eq!(snapshots(&healthy, &[], 0).severity, Severity::Info);
        assert_eq!(snapshots(&healthy, &snaps, 5000).severity, Severity::Warn);
    }
}
