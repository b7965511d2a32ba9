//! Relay device tickets (`claw_mesh::ticket`) and the relay's admission decision on hostile
//! bearer tokens: nothing panics, and no input the fuzzer makes is admitted (it cannot forge the
//! listed gateway's signature); the one ticket the gateway really signed, rebuilt from the input's
//! bytes when they spell it, is admitted only for its device and before its expiry.
#![no_main]

use claw_mesh::admission::{key_id, Admission, Admitted};
use claw_mesh::ticket::DeviceTicket;
use libfuzzer_sys::fuzz_target;

const GATEWAY_SEED: [u8; 32] = [7; 32];
const DEVICE: [u8; 32] = [9; 32];
const NOW: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let genuine = DeviceTicket::issue(&GATEWAY_SEED, DEVICE, NOW + 60);
    let gateway_key = genuine.gateway_key;
    let a = Admission::new([key_id(&gateway_key)]);
    if let Ok(t) = DeviceTicket::parse(text) {
        // Whatever parses re-encodes to the same ticket.
        assert_eq!(DeviceTicket::parse(&t.encode()).as_ref(), Ok(&t));
    }
    for key in [DEVICE, [1u8; 32], gateway_key] {
        match a.decide(&key, Some(text), NOW) {
            Ok(Admitted::Device { .. }) => {
                assert_eq!(key, DEVICE);
                assert_eq!(DeviceTicket::parse(text).ok(), Some(genuine.clone()));
            }
            Ok(Admitted::Gateway { .. }) => panic!("a bearer token admitted as a gateway"),
            Err(_) => {}
        }
    }
});
