//! The kernel's `sock_diag` answer as `peer_uid::parse_reply` reads it (the uid that a loopback
//! socket's budgets are charged to), and the request builder for every address pair. The first
//! four input bytes are the sequence number; the rest is the reply.
#![no_main]

use claw_gateway::peer_uid::{build_request, parse_reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((seq, reply)) = data.split_first_chunk::<4>() else {
        return;
    };
    let seq = u32::from_ne_bytes(*seq);
    if let Some(_uid) = parse_reply(reply, seq) {
        // Only a complete message of this request's sequence number yields a uid.
        assert!(reply.len() >= 84);
        assert_eq!(reply[8..12], seq.to_ne_bytes());
    }
    // Requests: any 4-tuple built from the input is 72 bytes or refused (mixed families).
    if reply.len() >= 36 {
        let ip = |b: &[u8]| -> std::net::IpAddr {
            if b[0] & 1 == 0 {
                std::net::IpAddr::from([b[1], b[2], b[3], b[4]])
            } else {
                let mut a = [0u8; 16];
                a.copy_from_slice(&b[1..17]);
                std::net::IpAddr::from(a)
            }
        };
        let a = std::net::SocketAddr::new(ip(&reply[0..17]), u16::from_ne_bytes([reply[17], 0]));
        let b = std::net::SocketAddr::new(ip(&reply[18..35]), u16::from(reply[35]));
        match build_request(a, b, seq) {
            Some(m) => assert_eq!(m.len(), 72),
            None => assert_ne!(a.is_ipv4(), b.is_ipv4()),
        }
    }
});
