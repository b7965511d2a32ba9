//! The HTTP request head of the gateway port (`server::parse_head`): what every TCP connection
//! sends first, before any authentication.
#![no_main]

use claw_gateway::server::{parse_head, Head, MAX_HEAD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // read_head gives up past MAX_HEAD plus one read (1 KiB).
    let data = &data[..data.len().min(MAX_HEAD + 1024)];
    let Ok(Some((head, n))) = parse_head(data) else {
        return;
    };
    assert!(n > 0 && n <= data.len());
    match &head {
        Head::Upgrade {
            key, proof_nonce, ..
        } => {
            assert!(!key.is_empty() && key.len() <= 64);
            assert!(proof_nonce
                .as_deref()
                .is_none_or(claw_gateway::auth::gateway_proof::valid_nonce));
        }
        Head::Get { path } => assert!(!path.contains('?')),
        Head::Other => {}
    }
    // The head is decided by its own bytes: what follows it does not change it.
    assert_eq!(parse_head(&data[..n]), Ok(Some((head, n))));
});
