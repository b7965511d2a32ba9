//! The bytes of upstream frames queued for one downstream socket, bounded (no IO).
//!
//! claw reads the upstream as fast as it sends, so a downstream client that reads slower than
//! its upstream session writes would grow claw's memory without bound. Each upstream frame
//! reserves its length here before it is queued and gives it back once the downstream socket
//! took it ([`Reserved`] drops). A frame that does not fit makes the client a slow consumer:
//! like OpenClaw (which closes a client whose send buffer passes its `MAX_BUFFERED_BYTES`,
//! reason `slow consumer`), claw ends that downstream session — with close code 1013 (try again
//! later) and [`claw_proto::CloseReason::SlowConsumer`], never 1008, which clients read as
//! "drop your credentials". Back-pressuring the upstream read instead would only move the
//! backlog into OpenClaw, which then closes claw's upstream socket the same way and loses the
//! client's events silently.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A session's downstream backlog budget.
#[derive(Debug, Clone)]
pub struct Backlog {
    room: Arc<Semaphore>,
    cap: usize,
}

/// Bytes of the backlog held by one queued frame; given back on drop.
#[derive(Debug)]
pub struct Reserved(#[allow(dead_code)] OwnedSemaphorePermit);

impl Backlog {
    /// A backlog of at most `cap` bytes (at most `u32::MAX`).
    pub fn new(cap: usize) -> Self {
        let cap = cap.min(u32::MAX as usize);
        Self {
            room: Arc::new(Semaphore::new(cap)),
            cap,
        }
    }

    /// Reserves `len` bytes (an empty frame counts as one), or `None` when they do not fit: the
    /// downstream reader is too slow.
    pub fn try_reserve(&self, len: usize) -> Option<Reserved> {
        let n = u32::try_from(len.max(1)).ok()?;
        if n as usize > self.cap {
            return None;
        }
        self.room
            .clone()
            .try_acquire_many_owned(n)
            .ok()
            .map(Reserved)
    }

    /// Bytes queued now.
    pub fn queued(&self) -> usize {
        self.cap - self.room.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_fit_until_the_cap_and_give_back_on_drop() {
        let b = Backlog::new(100);
        let a = b.try_reserve(60).unwrap();
        assert_eq!(b.queued(), 60);
        assert!(b.try_reserve(41).is_none(), "past the cap: a slow consumer");
        let c = b.try_reserve(40).unwrap();
        assert_eq!(b.queued(), 100);
        drop(a);
        assert_eq!(b.queued(), 40);
        assert!(b.try_reserve(60).is_some());
        drop(c);
        assert_eq!(b.queued(), 0);
    }

    #[test]
    fn empty_and_oversized_frames() {
        let b = Backlog::new(2);
        let e1 = b.try_reserve(0).unwrap();
        let _e2 = b.try_reserve(0).unwrap();
        assert!(b.try_reserve(0).is_none(), "an empty frame still counts");
        drop(e1);
        assert!(b.try_reserve(3).is_none(), "larger than the whole budget");
        assert!(b.try_reserve(usize::MAX).is_none());
        let huge = Backlog::new(usize::MAX);
        assert!(huge.try_reserve(u32::MAX as usize).is_some());
    }

    #[test]
    fn the_upstream_limits_fit_openclaws() {
        // One message of OpenClaw's largest size always fits an empty backlog.
        const { assert!(super::super::MAX_UPSTREAM_MESSAGE <= super::super::MAX_DOWNSTREAM_BACKLOG) };
        assert_eq!(super::super::MAX_UPSTREAM_MESSAGE, 26_214_400);
        assert_eq!(super::super::MAX_DOWNSTREAM_BACKLOG, 52_428_800);
    }
}
