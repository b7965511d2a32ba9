//! The tunnel's control lines (`control::decode`): the stream header every QUIC stream starts
//! with, device → gateway messages, gateway → device messages. Whatever decodes re-encodes as one
//! line and decodes back to itself.
#![no_main]

use claw_tunnel::control::{decode, encode, ClientMsg, ServerMsg, StreamHeader, MAX_LINE};
use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Serialize};

fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(line: &[u8]) {
    let Ok(m) = decode::<T>(line) else {
        return;
    };
    assert!(line.len() <= MAX_LINE);
    let out = encode(&m);
    assert_eq!(out.last(), Some(&b'\n'));
    let body = &out[..out.len() - 1];
    assert!(!body.contains(&b'\n'), "an encoded message spans lines");
    if body.len() <= MAX_LINE {
        assert_eq!(decode::<T>(body), Ok(m));
    }
}

fuzz_target!(|data: &[u8]| {
    check::<StreamHeader>(data);
    check::<ClientMsg>(data);
    check::<ServerMsg>(data);
});
