//! WebSocket request frames (`protocol::frames::parse_request`) at both limits the gateway uses —
//! 64 KiB before authentication, 1 MiB after — and the admin socket's JSON lines, which are the
//! same frames at the 1 MiB limit, one per line.
#![no_main]

use claw_gateway::protocol::frames::{
    parse_request, FrameError, MAX_ID_LEN, MAX_METHOD_LEN, MAX_PAYLOAD, MAX_PREAUTH_PAYLOAD,
};
use libfuzzer_sys::fuzz_target;

fn check(text: &str, limit: usize) {
    match parse_request(text, limit) {
        Ok(r) => {
            assert!(text.len() <= limit);
            assert!(
                !r.id.is_empty() && r.id.len() <= MAX_ID_LEN,
                "id {:?}",
                r.id
            );
            assert!(!r.method.is_empty() && r.method.len() <= MAX_METHOD_LEN);
        }
        Err(FrameError::TooLarge(n)) => assert!(n > limit && n == text.len()),
        Err(_) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    // WebSocket text messages are UTF-8 (tungstenite refuses anything else before we see it), and
    // so are the admin socket's lines (a non-UTF-8 line ends the connection).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Inputs are far below both limits, so one parse stands for both; a limit below the length
    // takes the size path.
    check(text, MAX_PREAUTH_PAYLOAD.min(MAX_PAYLOAD));
    check(text, text.len() / 2);
    // The admin socket: tokio's `lines()` splits on '\n' and drops a trailing '\r' (a single
    // line without either is the check above).
    if text.contains('\n') || text.ends_with('\r') {
        for line in text.split('\n') {
            check(line.strip_suffix('\r').unwrap_or(line), MAX_PAYLOAD);
        }
    }
});
