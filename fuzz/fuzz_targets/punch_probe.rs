//! Hole-punching probes (`claw_mesh::punch`) from hostile UDP senders: decoding never panics,
//! whatever verifies re-encodes to the same bytes, and the state machine fed the input as a
//! datagram from any address neither panics nor leaves the relay path (a pong it never asked
//! for cannot confirm a direct path).
#![no_main]

use std::time::Instant;

use claw_mesh::punch::{Path, ProbeKey, Punch, Role};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = ProbeKey::new(&[7u8; 32]);
    if let Ok(p) = key.decode(data) {
        assert_eq!(&key.encode(&p)[..], data);
    }
    let now = Instant::now();
    let mut punch = Punch::new(Role::Gateway, key, now);
    punch.set_candidates(&["198.51.100.3:50000".parse().unwrap()], now);
    let from = "198.51.100.3:50000".parse().unwrap();
    let _ = punch.on_datagram(from, data, now);
    assert_eq!(punch.path(), Path::Relay);
});
