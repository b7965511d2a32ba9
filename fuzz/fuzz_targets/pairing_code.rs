//! Pairing codes as the control stream receives them: `split` into id and secret, then `judge`
//! against a stored code. Only the exact code is ever accepted.
#![no_main]

use claw_gateway::auth::pairing_code::{judge, split, CodeRecord, Verdict, MAX_ATTEMPTS};
use claw_gateway::auth::secrets::token_hash;
use libfuzzer_sys::fuzz_target;

const ID: &str = "AbCdEf-_";
const SECRET: &str = "0123456789abcdefghijKL";

fuzz_target!(|data: &[u8]| {
    let Some((&attempts, rest)) = data.split_first() else {
        return;
    };
    let Ok(code) = std::str::from_utf8(rest) else {
        return;
    };
    let rec = CodeRecord {
        secret_hash: token_hash(SECRET),
        minted_at_ms: 0,
        expires_at_ms: 1_000,
        attempts: u32::from(attempts % (MAX_ATTEMPTS as u8 + 2)),
        used: false,
    };
    let Some((id, secret)) = split(code) else {
        return;
    };
    assert_eq!(format!("{id}.{secret}"), code);
    assert_eq!((id.len(), secret.len()), (8, 22));
    assert!(code
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'));
    let found = (id == ID).then_some(&rec);
    let v = judge(found, secret, 10);
    if v == Verdict::Accept {
        assert_eq!(code, format!("{ID}.{SECRET}"), "accepted another code");
        assert!(rec.attempts < MAX_ATTEMPTS);
    }
    assert_ne!(
        judge(found, secret, 1_000),
        Verdict::Accept,
        "accepted when expired"
    );
});
