//! One gateway per home: an exclusive `flock` on `gateway.lock`, which holds the owner's pid.
//!
//! The kernel drops a flock when its process dies (even by SIGKILL), so a lock file left by a
//! dead gateway is never an obstacle: the next `gateway run` takes it over.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

/// Errors taking the gateway lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds the lock.
    #[error("another claw gateway is already running on this home (pid {pid}); stop it with `claw gateway stop` or use another --home")]
    Held {
        /// The pid written in the lock file (0 when unreadable).
        pid: u32,
    },
    /// IO error on the lock file.
    #[error("gateway lock {path}: {source}")]
    Io {
        /// The lock file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A held gateway lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct GatewayLock {
    _lock: Flock<File>,
}

/// What the lock file says about its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    /// No lock file.
    Absent,
    /// A lock file nobody holds (left by a dead process); `pid` is what it records.
    Stale {
        /// Recorded pid (0 when unreadable).
        pid: u32,
    },
    /// Held by a live process.
    Held {
        /// Recorded pid (0 when unreadable).
        pid: u32,
    },
}

fn read_pid(f: &mut File) -> u32 {
    let mut s = String::new();
    let _ = f.seek(SeekFrom::Start(0));
    let _ = f.read_to_string(&mut s);
    s.trim().parse().unwrap_or(0)
}

fn open(path: &Path) -> Result<File, LockError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|source| LockError::Io {
            path: path.display().to_string(),
            source,
        })
}

impl GatewayLock {
    /// Takes the lock without waiting and records this process's pid in it.
    pub fn acquire(path: &Path) -> Result<Self, LockError> {
        let file = open(path)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((mut f, _)) => {
                return Err(LockError::Held {
                    pid: read_pid(&mut f),
                })
            }
        };
        let io = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        lock.set_len(0).map_err(io)?;
        lock.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(&mut *lock, "{}", std::process::id()).map_err(io)?;
        lock.sync_all().map_err(io)?;
        Ok(Self { _lock: lock })
    }

    /// Inspects the lock without taking it.
    pub fn inspect(path: &Path) -> LockState {
        let Ok(file) = OpenOptions::new().read(true).write(true).open(path) else {
            return LockState::Absent;
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut l) => LockState::Stale {
                pid: read_pid(&mut l),
            },
            Err((mut f, _)) => LockState::Held {
                pid: read_pid(&mut f),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_names_the_owner_and_release_frees_it() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("gateway.lock");
        assert_eq!(GatewayLock::inspect(&p), LockState::Absent);
        let l = GatewayLock::acquire(&p).unwrap();
        match GatewayLock::acquire(&p) {
            Err(LockError::Held { pid }) => assert_eq!(pid, std::process::id()),
            other => panic!("expected Held, got {other:?}"),
        }
        assert_eq!(
            GatewayLock::inspect(&p),
            LockState::Held {
                pid: std::process::id()
            }
        );
        drop(l);
        assert_eq!(
            GatewayLock::inspect(&p),
            LockState::Stale {
                pid: std::process::id()
            }
        );
        let _again = GatewayLock::acquire(&p).unwrap();
    }
}
