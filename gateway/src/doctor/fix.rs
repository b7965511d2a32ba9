//! Applying the safe repairs (IO). Nothing here mints, rotates or revokes a credential.
//!
//! Repairs that remove a gateway's leftovers (stale lock, runtime file, orphan socket) run while
//! holding the gateway lock, so no gateway can start halfway through; the lock is taken once and
//! released at the end, which also removes the lock file — that *is* the stale-lock repair.
//! Pruning pairing state goes through the running gateway's admin socket when one runs.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::{DoctorError, Finding, FixAction};
use crate::home::Home;
use crate::lock::{GatewayLock, LockError, LockState};
use crate::store::Store;

/// The outcome of one repair: what was done, or why not.
pub type FixOutcome = Result<String, DoctorError>;

fn order(a: &FixAction) -> u8 {
    match a {
        FixAction::Chmod { .. } => 0,
        FixAction::RemoveTempFiles { .. } => 1,
        FixAction::RestoreSnapshot { .. } => 2,
        FixAction::PruneExpiredPairing => 3,
        FixAction::RemoveOrphanSocket { .. } => 4,
        FixAction::RemoveStaleRuntime { .. } => 5,
        FixAction::RemoveStaleLock { .. } => 6,
    }
}

/// Applies the repair of every finding that has one; the result is aligned with `findings`
/// (`None` where there was nothing to do).
pub fn apply(home: &Home, findings: &[Finding]) -> Vec<Option<FixOutcome>> {
    let mut out: Vec<Option<FixOutcome>> = findings.iter().map(|_| None).collect();
    let mut todo: Vec<(usize, &FixAction)> = findings
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.fix.as_ref().map(|a| (i, a)))
        .collect();
    todo.sort_by_key(|(i, a)| (order(a), *i));
    let mut lock: Option<GatewayLock> = None;
    let mut stale_lock: Vec<usize> = Vec::new();
    for (i, action) in todo {
        let r = match action {
            FixAction::Chmod { path, mode } => chmod(path, *mode),
            FixAction::RemoveTempFiles { paths } => remove_temp(paths),
            FixAction::PruneExpiredPairing => prune(home, &mut lock),
            FixAction::RestoreSnapshot {
                snapshot,
                taken_at_ms,
            } => offline(home, &mut lock).and_then(|()| restore(home, snapshot, *taken_at_ms)),
            FixAction::RemoveOrphanSocket { path } => {
                offline(home, &mut lock).and_then(|()| remove_orphan_socket(path))
            }
            FixAction::RemoveStaleRuntime { path } => {
                offline(home, &mut lock).and_then(|()| remove(path))
            }
            FixAction::RemoveStaleLock { .. } => match offline(home, &mut lock) {
                Ok(()) => {
                    stale_lock.push(i);
                    continue;
                }
                Err(e) => Err(e),
            },
        };
        out[i] = Some(r);
    }
    // Releasing the lock unlinks the lock file (see `GatewayLock`'s Drop).
    drop(lock);
    let path = home.lock_path();
    for i in stale_lock {
        out[i] = Some(match GatewayLock::inspect(&path) {
            LockState::Absent => Ok(format!("removed {}", path.display())),
            LockState::Held { pid } => Err(DoctorError::Changed(format!(
                "a gateway (pid {pid}) took the lock meanwhile"
            ))),
            LockState::Stale { .. } => Err(DoctorError::Changed(format!(
                "{} is still there",
                path.display()
            ))),
        });
    }
    out
}

/// Takes the gateway lock for repairs that need no gateway running (once).
fn offline(home: &Home, slot: &mut Option<GatewayLock>) -> Result<(), DoctorError> {
    if slot.is_none() {
        *slot = Some(
            GatewayLock::acquire(&home.lock_path()).map_err(|e| match e {
                LockError::Held { pid } => {
                    DoctorError::Changed(format!("a gateway (pid {pid}) runs on this home now"))
                }
                other => other.into(),
            })?,
        );
    }
    Ok(())
}

/// chmod without following a symlink: through a descriptor opened `O_NOFOLLOW` (a planted
/// symlink must not make `--fix` loosen or tighten its target); a socket, which cannot be
/// opened, is chmod-ed by path after checking it is no symlink.
fn chmod_nofollow(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "is a symlink; not following it",
        ));
    }
    crate::home::check_owner(&meta, path)?;
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f.set_permissions(std::fs::Permissions::from_mode(mode)),
        Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        }
        Err(e) => Err(e),
    }
}

fn chmod(path: &Path, mode: u32) -> FixOutcome {
    match chmod_nofollow(path, mode) {
        Ok(()) => Ok(format!("chmod {mode:o} {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(format!("{} is gone", path.display()))
        }
        Err(e) => Err(DoctorError::io(path, e)),
    }
}

fn remove(path: &Path) -> FixOutcome {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(format!("removed {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(format!("{} was already gone", path.display()))
        }
        Err(e) => Err(DoctorError::io(path, e)),
    }
}

fn remove_temp(paths: &[std::path::PathBuf]) -> FixOutcome {
    for p in paths {
        remove(p)?;
    }
    Ok(match paths {
        [one] => format!("removed {}", one.display()),
        many => format!("removed {} temporary files", many.len()),
    })
}

fn remove_orphan_socket(path: &Path) -> FixOutcome {
    // Checked again under the lock: only a socket nothing listens on goes.
    if UnixStream::connect(path).is_ok() {
        return Err(DoctorError::Changed(format!(
            "something listens on {} now",
            path.display()
        )));
    }
    remove(path)
}

/// Restores `snapshot` over the damaged store (under the lock; the snapshot is checked again).
fn restore(home: &Home, snapshot: &Path, taken_at_ms: u64) -> FixOutcome {
    use crate::store::snapshot;
    if !snapshot::check(snapshot).intact {
        return Err(DoctorError::Changed(format!(
            "{} is no longer intact",
            snapshot.display()
        )));
    }
    let snap = snapshot::SnapshotFile {
        path: snapshot.to_path_buf(),
        taken_at_ms,
    };
    let aside = snapshot::restore(&home.store_path(), &snap, crate::now_ms())?;
    Ok(format!(
        "restored state.db from {} (the damaged file is {})",
        snapshot.display(),
        aside.display()
    ))
}

fn prune(home: &Home, slot: &mut Option<GatewayLock>) -> FixOutcome {
    if slot.is_none() {
        if let LockState::Held { pid } = GatewayLock::inspect(&home.lock_path()) {
            let v = admin_call(&home.admin_socket_path(), "pairing.prune", json!({}))?;
            return Ok(format!(
                "pruned {} expired pairing request(s) and {} pairing code(s) through the running gateway (pid {pid})",
                v["requests"], v["codes"]
            ));
        }
    }
    offline(home, slot)?;
    let mut store = Store::open(&home.store_path())?;
    let requests = store.prune_expired_requests()?;
    let codes = store.prune_codes()?;
    Ok(format!(
        "pruned {requests} expired pairing request(s) and {codes} pairing code(s)"
    ))
}

/// Calls `method` on a gateway's admin socket (JSON lines, one request, one response) and
/// returns the payload.
pub fn admin_call(path: &Path, method: &str, params: Value) -> Result<Value, DoctorError> {
    let admin = |e: std::io::Error| DoctorError::Admin(format!("{}: {e}", path.display()));
    let mut s = UnixStream::connect(path).map_err(admin)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(admin)?;
    s.set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(admin)?;
    let req = json!({"type": "req", "id": "doctor", "method": method, "params": params});
    writeln!(s, "{req}").map_err(admin)?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).map_err(admin)?;
    let v: Value = serde_json::from_str(&line)
        .map_err(|e| DoctorError::Admin(format!("bad reply to {method}: {e}")))?;
    if v["ok"] == true {
        Ok(v["payload"].clone())
    } else {
        Err(DoctorError::Admin(format!(
            "{}: {}",
            v["error"]["code"].as_str().unwrap_or("ERROR"),
            v["error"]["message"].as_str().unwrap_or("refused")
        )))
    }
}
