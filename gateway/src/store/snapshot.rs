//! Snapshots of the store: SQLite online backups (consistent while the gateway writes), kept in
//! `snapshots/` next to `state.db` (0700), each 0600 and written atomically (temp file, fsync,
//! rename, fsync of the directory), the newest [`KEEP`] kept. Taken when the gateway starts,
//! before every root rotation and every [`INTERVAL`]. `claw doctor --fix` restores the newest
//! good one over a damaged `state.db`: same root and generation, so paired devices keep working;
//! what changed after the snapshot is lost (docs/reliability.md).

use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{Result, Store, StoreError};
use crate::home::TMP_SUFFIX;

/// Snapshots kept.
pub const KEEP: usize = 3;

/// How often a running gateway takes one.
pub const INTERVAL: Duration = Duration::from_secs(3600);

const PREFIX: &str = "state-";
const SUFFIX: &str = ".db";

/// The snapshot directory of the store at `db`.
pub fn dir_for(db: &Path) -> PathBuf {
    db.parent().unwrap_or(Path::new(".")).join("snapshots")
}

/// One snapshot file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// The file.
    pub path: PathBuf,
    /// When it was taken (ms since the epoch, from its name).
    pub taken_at_ms: u64,
}

/// What a snapshot holds, as far as a restore needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotCheck {
    /// SQLite's integrity check passed.
    pub intact: bool,
    /// The root generation it holds (`None`: unreadable).
    pub generation: Option<u64>,
    /// Paired devices (not revoked) it holds.
    pub devices: Option<u64>,
}

/// The time in a snapshot's file name (`state-<ms>.db`), if it is one.
pub fn parse_name(name: &str) -> Option<u64> {
    let ms = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if ms.is_empty() || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ms.parse().ok()
}

/// The snapshots in `dir`, newest first.
pub fn list(dir: &Path) -> Vec<SnapshotFile> {
    let mut out: Vec<SnapshotFile> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some(SnapshotFile {
                taken_at_ms: parse_name(&name)?,
                path: e.path(),
            })
        })
        .collect();
    out.sort_by_key(|s| std::cmp::Reverse(s.taken_at_ms));
    out
}

/// Opens a snapshot read-only and checks it.
pub fn check(path: &Path) -> SnapshotCheck {
    let Ok(conn) = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return SnapshotCheck {
            intact: false,
            generation: None,
            devices: None,
        };
    };
    let intact = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
        .is_ok_and(|v| v == "ok");
    let generation = conn
        .query_row("SELECT generation FROM root WHERE id = 1", [], |r| {
            r.get::<_, i64>(0)
        })
        .ok()
        .map(|g| g as u64);
    let devices = conn
        .query_row(
            "SELECT COUNT(*) FROM devices WHERE revoked_at_ms IS NULL",
            [],
            |r| r.get::<_, i64>(0),
        )
        .ok()
        .map(|n| n as u64);
    SnapshotCheck {
        intact: intact && generation.is_some(),
        generation,
        devices,
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Store {
    /// Takes a snapshot into `dir` (created 0700) and keeps the newest [`KEEP`]; returns its
    /// path. Online: the gateway's own connection is the source, so no other writer is blocked
    /// for longer than a page copy.
    pub fn snapshot(&self, dir: &Path, now_ms: u64) -> Result<PathBuf> {
        crate::home::create_private_dir(dir).map_err(io(dir))?;
        let path = dir.join(format!("{PREFIX}{now_ms}{SUFFIX}"));
        let tmp = dir.join(format!(
            "{PREFIX}{now_ms}{SUFFIX}.{}{TMP_SUFFIX}",
            std::process::id()
        ));
        let result: Result<()> = (|| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io(&tmp))?;
            {
                let mut dst = Connection::open(&tmp)?;
                let backup = rusqlite::backup::Backup::new(&self.conn, &mut dst)?;
                backup.run_to_completion(256, Duration::ZERO, None)?;
            }
            fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(io(&tmp))?;
            fs::rename(&tmp, &path).map_err(io(&path))?;
            sync_dir(dir);
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        for old in list(dir).into_iter().skip(KEEP) {
            let _ = fs::remove_file(old.path);
        }
        Ok(path)
    }
}

/// Replaces the store at `db` with the snapshot `snap` (no gateway may have it open: the caller
/// holds the gateway lock). The damaged file and its `-wal`/`-shm` are moved aside to
/// `state.db.damaged-<ms>` (kept for salvage), the snapshot is copied in atomically (0600), and
/// the restore is audited (`store.restored`). Returns the moved-aside path.
pub fn restore(db: &Path, snap: &SnapshotFile, now_ms: u64) -> Result<PathBuf> {
    let dir = db.parent().unwrap_or(Path::new("."));
    let name = db
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state.db".into());
    let aside = dir.join(format!("{name}.damaged-{now_ms}"));
    let tmp = dir.join(format!("{name}.restore.{}{TMP_SUFFIX}", std::process::id()));
    let data = fs::read(&snap.path).map_err(io(&snap.path))?;
    let result: Result<()> = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        std::io::Write::write_all(&mut f, &data).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        if db.exists() {
            fs::rename(db, &aside).map_err(io(db))?;
        }
        for ext in ["-wal", "-shm"] {
            let side = dir.join(format!("{name}{ext}"));
            if side.exists() {
                let _ = fs::rename(&side, dir.join(format!("{name}.damaged-{now_ms}{ext}")));
            }
        }
        fs::rename(&tmp, db).map_err(io(db))?;
        sync_dir(dir);
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    let mut store = Store::open(db)?;
    let generation = store.root()?.0;
    store.audit(
        "store.restored",
        None,
        Some("doctor"),
        &format!(
            "snapshot={} taken_at_ms={} generation={generation} damaged_moved_to={}",
            snap.path.display(),
            snap.taken_at_ms,
            aside.display()
        ),
    )?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewDevice;
    use std::os::unix::fs::PermissionsExt;

    fn dev(id: &str) -> NewDevice {
        NewDevice {
            device_id: id.into(),
            public_key: "pk".into(),
            role: "operator".into(),
            scopes: vec!["operator.read".into()],
            ..Default::default()
        }
    }

    #[test]
    fn names_parse_and_hostile_names_do_not() {
        assert_eq!(
            parse_name("state-1700000000000.db"),
            Some(1_700_000_000_000)
        );
        for bad in [
            "state-.db",
            "state-12.db.1.claw-tmp",
            "state-x.db",
            "other-12.db",
            "state-99999999999999999999999.db",
            "state--1.db",
            "state-+1.db",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn snapshots_are_private_rotated_and_restore_the_same_root() {
        let t = tempfile::tempdir().unwrap();
        let db = t.path().join("state.db");
        let dir = dir_for(&db);
        let mut s = Store::open(&db).unwrap();
        s.pair_device(&dev("d1"), "silent", "loopback").unwrap();
        let token = s.current_token("d1", "operator", "loopback").unwrap();
        let (generation, secret) = s.root().unwrap();
        for i in 0..5 {
            s.snapshot(&dir, 1000 + i).unwrap();
        }
        let kept = list(&dir);
        assert_eq!(
            kept.iter().map(|k| k.taken_at_ms).collect::<Vec<_>>(),
            vec![1004, 1003, 1002]
        );
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&kept[0].path), 0o600);
        let c = check(&kept[0].path);
        assert_eq!(
            (c.intact, c.generation, c.devices),
            (true, Some(1), Some(1))
        );

        // A change after the snapshot, then the file is destroyed.
        s.pair_device(&dev("d2"), "silent", "loopback").unwrap();
        drop(s);
        fs::write(&db, b"this is not a database").unwrap();
        assert!(Store::open(&db).is_err());

        let aside = restore(&db, &kept[0], 2000).unwrap();
        assert!(aside.exists());
        assert_eq!(mode(&db), 0o600);
        let s = Store::open(&db).unwrap();
        assert_eq!(s.root().unwrap(), (generation, secret));
        let rec = s.token_record(&token.token).unwrap().unwrap();
        assert_eq!(rec.generation, generation);
        assert!(s.device("d1").unwrap().is_some());
        // What came after the snapshot is gone.
        assert!(s.device("d2").unwrap().is_none());
        assert_eq!(s.audit_tail(1).unwrap()[0].event, "store.restored");
    }

    #[test]
    fn a_damaged_snapshot_is_not_intact() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("state-1.db");
        fs::write(&p, vec![0u8; 8192]).unwrap();
        assert!(!check(&p).intact);
        assert!(!check(&t.path().join("missing.db")).intact);
    }
}
