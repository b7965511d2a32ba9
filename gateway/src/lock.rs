//! One gateway per home: an exclusive `flock` on `gateway.lock`, which holds the owner's pid.
//!
//! The kernel drops a flock when its process dies (even by SIGKILL), so a lock file left by a
//! dead gateway is never an obstacle: the next `gateway run` takes it over.
//!
//! A holder that ends normally removes the file (while still holding the flock), so a lock file
//! naming a dead pid is evidence of a crash or `kill -9`; `claw doctor` reports it (`lock.stale`)
//! and `--fix` removes it the same way: take the lock, unlink, release. Because the file can be
//! unlinked under a waiter, [`GatewayLock::acquire`] checks after locking that the path still
//! names the inode it locked, and starts over when it does not.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use std::path::{Path, PathBuf};

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

/// A held gateway lock; released when dropped (or when the process dies). Dropping it also
/// removes the lock file, so only an abnormal death leaves one behind.
#[derive(Debug)]
pub struct GatewayLock {
    lock: Flock<File>,
    path: PathBuf,
}

/// Attempts [`GatewayLock::acquire`] makes when the file keeps being replaced under it.
const ACQUIRE_ATTEMPTS: usize = 64;

/// (device, inode) of an open file and of a path.
fn same_file(f: &File, path: &Path) -> bool {
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
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

/// Opens (creating 0600) the lock file without following a symlink, and only a regular file we
/// own: a planted `gateway.lock` symlink must not make us truncate its target.
fn open(path: &Path) -> Result<File, LockError> {
    crate::home::open_private(
        path,
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600),
    )
    .map_err(|source| LockError::Io {
        path: path.display().to_string(),
        source,
    })
}

impl GatewayLock {
    /// Takes the lock without waiting and records this process's pid in it.
    pub fn acquire(path: &Path) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        for _ in 0..ACQUIRE_ATTEMPTS {
            let file = open(path)?;
            let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(l) => l,
                Err((mut f, _)) => {
                    return Err(LockError::Held {
                        pid: read_pid(&mut f),
                    })
                }
            };
            // The previous holder may have unlinked the file between our open and our flock: a
            // lock on an unlinked inode excludes nobody, so start over on the current file.
            if !same_file(&lock, path) {
                continue;
            }
            lock.set_len(0).map_err(io)?;
            lock.seek(SeekFrom::Start(0)).map_err(io)?;
            writeln!(&mut *lock, "{}", std::process::id()).map_err(io)?;
            lock.sync_all().map_err(io)?;
            return Ok(Self {
                lock,
                path: path.to_path_buf(),
            });
        }
        Err(io(std::io::Error::other(
            "the lock file keeps being replaced; retry",
        )))
    }

    /// Inspects the lock without taking it.
    pub fn inspect(path: &Path) -> LockState {
        let Ok(file) = crate::home::open_private(path, OpenOptions::new().read(true).write(true))
        else {
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

impl Drop for GatewayLock {
    fn drop(&mut self) {
        // Unlink while the flock is still held (it is released when `lock` drops after this), and
        // only the file we locked: a waiter that locked the unlinked inode sees the mismatch in
        // `acquire` and retries on a fresh file.
        if same_file(&self.lock, &self.path) {
            let _ = std::fs::remove_file(&self.path);
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
            LockState::Absent,
            "released cleanly"
        );
        let _again = GatewayLock::acquire(&p).unwrap();
    }

    #[test]
    fn a_file_left_by_a_dead_holder_reads_stale_and_is_taken_over() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("gateway.lock");
        std::fs::write(&p, "4194305\n").unwrap();
        assert_eq!(GatewayLock::inspect(&p), LockState::Stale { pid: 4194305 });
        let l = GatewayLock::acquire(&p).unwrap();
        assert_eq!(
            GatewayLock::inspect(&p),
            LockState::Held {
                pid: std::process::id()
            }
        );
        drop(l);
        assert!(!p.exists());
    }

    #[test]
    fn a_planted_lock_symlink_is_refused_and_its_target_untouched() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, "root-only content").unwrap();
        let p = t.path().join("gateway.lock");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        let err = GatewayLock::acquire(&p).unwrap_err().to_string();
        assert!(err.contains("symlink"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "root-only content"
        );
    }

    #[test]
    fn a_lock_on_an_unlinked_file_is_not_kept() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("gateway.lock");
        // A waiter opened the old file; the holder then unlinked it and released.
        let old = open(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        let waiter = Flock::lock(old, FlockArg::LockExclusiveNonblock).unwrap();
        assert!(!same_file(&waiter, &p));
        // `acquire` itself always ends up on the file at the path.
        let l = GatewayLock::acquire(&p).unwrap();
        assert!(same_file(&l.lock, &p));
    }
}
