//! Fake socket addresses for relay peers: quinn addresses every peer by a `SocketAddr`, a relay
//! by an Ed25519 public key. Each peer key gets one address from a private IPv6 range (never
//! routed: only the relay socket ever sees them). Pure bookkeeping, no IO.

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr};

/// Prefix of the fake addresses (`fd63:6c61:7721::/96`, a unique-local range: "claw!").
const PREFIX: [u16; 6] = [0xfd63, 0x6c61, 0x7721, 0, 0, 0];
/// Most peers one socket keeps addresses for (a gateway's devices); more are refused.
pub const MAX_PEERS: usize = 65_536;

/// The address of peer number `n`.
fn fake_addr(n: u32) -> SocketAddr {
    let p = PREFIX;
    let ip = Ipv6Addr::new(
        p[0],
        p[1],
        p[2],
        p[3],
        p[4],
        p[5],
        (n >> 16) as u16,
        n as u16,
    );
    SocketAddr::new(ip.into(), 1)
}

/// The address the relay socket itself reports as local.
pub fn local_addr() -> SocketAddr {
    fake_addr(0)
}

/// Whether `addr` is one of the fake relay addresses.
pub fn is_relay_addr(addr: &SocketAddr) -> bool {
    match addr.ip() {
        std::net::IpAddr::V6(ip) => ip.segments()[..6] == PREFIX,
        std::net::IpAddr::V4(_) => false,
    }
}

/// Peer keys ↔ fake addresses.
#[derive(Debug, Default)]
pub struct PeerMap {
    by_key: HashMap<[u8; 32], SocketAddr>,
    by_addr: HashMap<SocketAddr, [u8; 32]>,
    next: u32,
}

impl PeerMap {
    /// The address of `key`, allocated on first sight; `None` when [`MAX_PEERS`] are known.
    pub fn addr_of(&mut self, key: &[u8; 32]) -> Option<SocketAddr> {
        if let Some(a) = self.by_key.get(key) {
            return Some(*a);
        }
        if self.by_key.len() >= MAX_PEERS {
            return None;
        }
        self.next += 1;
        let a = fake_addr(self.next);
        self.by_key.insert(*key, a);
        self.by_addr.insert(a, *key);
        Some(a)
    }

    /// The address of `key` if it has one.
    pub fn known(&self, key: &[u8; 32]) -> Option<SocketAddr> {
        self.by_key.get(key).copied()
    }

    /// The key behind `addr`.
    pub fn key_of(&self, addr: &SocketAddr) -> Option<[u8; 32]> {
        self.by_addr.get(addr).copied()
    }

    /// Peers known.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// No peer known.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_keeps_one_distinct_address() {
        let mut m = PeerMap::default();
        let a = m.addr_of(&[1; 32]).unwrap();
        let b = m.addr_of(&[2; 32]).unwrap();
        assert_ne!(a, b);
        assert_eq!(m.addr_of(&[1; 32]), Some(a));
        assert_eq!(m.key_of(&b), Some([2; 32]));
        assert_eq!(m.known(&[3; 32]), None);
        assert!(is_relay_addr(&a) && is_relay_addr(&local_addr()));
        assert!(!is_relay_addr(&"127.0.0.1:1".parse().unwrap()));
        assert!(!is_relay_addr(&"[fd63:6c61:7722::1]:1".parse().unwrap()));
        assert_ne!(a, local_addr());
    }

    #[test]
    fn the_map_is_bounded() {
        let mut m = PeerMap::default();
        for i in 0..MAX_PEERS as u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            assert!(m.addr_of(&k).is_some());
        }
        assert_eq!(m.addr_of(&[0xff; 32]), None);
        // Known peers still resolve.
        assert!(m.addr_of(&[0; 32]).is_some());
        assert_eq!(m.len(), MAX_PEERS);
    }
}
