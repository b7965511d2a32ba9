//! Per-key concurrency caps: "at most N unauthenticated connections per source". Used by the
//! WebSocket pre-auth cap (per address on loopback, per device through the tunnel or SSH) and by
//! the SSH server's per-address cap on connections that have not authenticated yet.
//!
//! A slot is held by a [`Slot`] guard and released when the guard drops (or on
//! [`Slot::release`]), so no code path can leak one. No IO; tested directly.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes one socket may send before it authenticates: the largest pre-auth message
/// ([`crate::protocol::frames::MAX_PREAUTH_PAYLOAD`]) plus room for frame headers, pings and a
/// close. Enforced while reading (see `server::metered`), so a 1 MiB pre-auth message is cut
/// after this many bytes instead of being buffered whole.
pub const PREAUTH_READ_PER_SOCKET: usize = crate::protocol::frames::MAX_PREAUTH_PAYLOAD + 4096;

/// Bytes all unauthenticated sockets together may have sent and not yet authenticated: the
/// gateway's pre-auth memory budget. A legitimate handshake reads about 1 KiB, so this admits
/// tens of thousands of concurrent handshakes, while a flood of large pre-auth messages is
/// refused past it (each socket's reads beyond it fail and the socket closes).
pub const PREAUTH_READ_GLOBAL: usize = 64 * 1024 * 1024;

/// Descriptors kept back from connections: the store and its WAL, snapshots, the log, the admin
/// socket and its clients, the tunnel's UDP socket, `gateway.json` writes, SSH host keys.
pub const RESERVED_FDS: u64 = 128;

/// Fewest connections a gateway is capped at, whatever the open-file limit says.
pub const MIN_CONNECTIONS: usize = 16;

/// The connection cap the open-file limit allows (pure): `requested`, or less when the soft
/// limit `nofile` cannot hold it. A WebSocket session costs one descriptor (tunnelled and
/// SSH-forwarded sessions reach the gateway in-process and cost none); besides
/// [`RESERVED_FDS`], an eighth of the limit is kept for what the cap does not count — SSH
/// connections and the TCP connections of exposed-service forwards. Hitting the cap refuses a
/// socket cleanly; hitting the descriptor limit instead (EMFILE) would fail the store, the admin
/// socket and the log too.
pub fn connection_cap(requested: usize, nofile: u64) -> usize {
    let room = nofile
        .saturating_sub(RESERVED_FDS)
        .saturating_sub(nofile / 8);
    requested.min(
        usize::try_from(room)
            .unwrap_or(usize::MAX)
            .max(MIN_CONNECTIONS),
    )
}

/// Who a socket's pre-auth budget is charged to. Tunnelled and SSH-forwarded sockets: their
/// device (the transport authenticated its key, and devices behind one NAT must not share a
/// budget). Loopback sockets of the gateway's own uid (`own_uid`): their address, as before.
/// Loopback sockets of another local user: that uid, whatever 127.x address it uses — so another
/// user's sockets never count against the operator's budget, and rotating addresses gains it
/// nothing. Unknown owner (no `sock_diag`): the address.
pub fn preauth_key(
    source: std::net::IpAddr,
    tunnel_device: Option<&str>,
    peer_uid: Option<u32>,
    own_uid: u32,
) -> String {
    match (tunnel_device, peer_uid) {
        (Some(d), _) => format!("device:{d}"),
        (None, Some(uid)) if uid != own_uid => format!("uid:{uid}"),
        (None, _) => source.to_string(),
    }
}

/// Who a socket's wrong secrets are charged to (the failure delay): the device through the
/// tunnel or SSH; on loopback the peer's uid, or all of loopback as one source when the owner is
/// unknown — never the address, which a local attacker can rotate through 127.0.0.0/8.
pub fn failure_key(tunnel_device: Option<&str>, peer_uid: Option<u32>) -> String {
    match (tunnel_device, peer_uid) {
        (Some(d), _) => format!("device:{d}"),
        (None, Some(uid)) => format!("uid:{uid}"),
        (None, None) => "loopback".to_string(),
    }
}

/// Connects with a secret that one failure key may have in flight while it has recent failures
/// (being evaluated, or sleeping off their delay), and all keys together: the wrong-secret rate
/// is then at most this many per delay, however many sockets or addresses the guesser uses.
pub const FAILING_IN_FLIGHT_PER_KEY: usize = 32;
/// All failure keys together (the global cap).
pub const FAILING_IN_FLIGHT_ALL: usize = 256;

/// A byte budget shared by many holders (the pre-auth bytes of every socket together).
#[derive(Debug)]
pub struct SharedBudget {
    cap: usize,
    used: AtomicUsize,
}

impl SharedBudget {
    /// A budget of `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            used: AtomicUsize::new(0),
        }
    }

    /// Charges `n` bytes; `false` (and nothing charged) when that would exceed the cap.
    pub fn try_charge(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|t| *t <= self.cap)
            })
            .is_ok()
    }

    /// Gives `n` charged bytes back.
    pub fn refund(&self, n: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            });
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// At most `cap` live slots per key.
#[derive(Debug)]
pub struct PerKeyLimit<K: Hash + Eq + Clone> {
    cap: usize,
    held: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Hash + Eq + Clone> PerKeyLimit<K> {
    /// A limit of `cap` per key (at least 1).
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            held: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Takes a slot for `key`, or `None` when `key` already holds `cap` of them.
    pub fn try_take(&self, key: K) -> Option<Slot<K>> {
        let mut map = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key.clone()).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(Slot {
            held: Some(self.held.clone()),
            key,
        })
    }

    /// Live slots of `key`.
    pub fn held(&self, key: &K) -> usize {
        let map = self.held.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key).copied().unwrap_or(0)
    }

    /// Keys holding at least one slot (the map never keeps a key with none).
    pub fn keys(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// One slot of a [`PerKeyLimit`]; released on drop.
pub struct Slot<K: Hash + Eq + Clone> {
    held: Option<Arc<Mutex<HashMap<K, usize>>>>,
    key: K,
}

impl<K: Hash + Eq + Clone> Slot<K> {
    /// The key this slot counts against.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// Gives the slot back now (idempotent; dropping does the same).
    pub fn release(&mut self) {
        let Some(held) = self.held.take() else {
            return;
        };
        let mut map = held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

impl<K: Hash + Eq + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_follows_the_open_file_limit() {
        assert_eq!(connection_cap(20_000, 1 << 20), 20_000);
        assert_eq!(connection_cap(20_000, 20_000), 17_372);
        assert_eq!(connection_cap(20_000, 1_024), 768);
        assert_eq!(connection_cap(20_000, 256), 96);
        assert_eq!(connection_cap(100, 256), 96);
        assert_eq!(connection_cap(10, 256), 10);
        // A limit below the reserve still leaves a few connections rather than none.
        assert_eq!(connection_cap(20_000, 64), MIN_CONNECTIONS);
        assert_eq!(connection_cap(20_000, 0), MIN_CONNECTIONS);
        assert_eq!(connection_cap(1, 0), 1);
    }

    #[test]
    fn caps_each_key_separately_and_frees_on_drop_or_release() {
        let l = PerKeyLimit::new(2);
        let a1 = l.try_take("a").unwrap();
        let mut a2 = l.try_take("a").unwrap();
        assert!(l.try_take("a").is_none(), "a third slot for one key");
        let b = l.try_take("b").expect("another key has its own budget");
        assert_eq!((l.held(&"a"), l.held(&"b"), l.keys()), (2, 1, 2));
        a2.release();
        a2.release(); // idempotent
        drop(a2); // and dropping after a release frees nothing twice
        assert_eq!(l.held(&"a"), 1);
        let _a3 = l.try_take("a").expect("a released slot is reusable");
        drop((a1, b));
        assert_eq!((l.held(&"a"), l.held(&"b"), l.keys()), (1, 0, 1));
    }

    #[test]
    fn keys_charge_other_users_by_uid_and_never_by_a_rotatable_address() {
        let a: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let b: std::net::IpAddr = "127.0.0.9".parse().unwrap();
        // Another user: one budget whatever the address.
        assert_eq!(preauth_key(a, None, Some(1000), 0), "uid:1000");
        assert_eq!(preauth_key(b, None, Some(1000), 0), "uid:1000");
        // The operator's own uid, or an unknown owner: per address.
        assert_eq!(preauth_key(a, None, Some(0), 0), "127.0.0.1");
        assert_eq!(preauth_key(b, None, None, 0), "127.0.0.9");
        assert_eq!(preauth_key(a, Some("d1"), Some(5), 0), "device:d1");
        assert_eq!(failure_key(None, Some(0)), "uid:0");
        assert_eq!(failure_key(None, None), "loopback");
        assert_eq!(failure_key(Some("d1"), None), "device:d1");
    }

    #[test]
    fn a_shared_budget_refuses_past_its_cap_and_refunds() {
        let b = SharedBudget::new(100);
        assert!(b.try_charge(60));
        assert!(!b.try_charge(41), "over the cap: refused, nothing charged");
        assert_eq!(b.used(), 60);
        assert!(b.try_charge(40));
        b.refund(70);
        assert_eq!(b.used(), 30);
        b.refund(1000);
        assert_eq!(b.used(), 0, "never below zero");
        assert!(!b.try_charge(usize::MAX), "no overflow");
    }

    #[test]
    fn a_zero_cap_still_admits_one() {
        let l = PerKeyLimit::new(0);
        let _s = l.try_take(1u8).unwrap();
        assert!(l.try_take(1u8).is_none());
    }
}
