//! The control page's request parsing (`web::cookie`, `web::policy`): the `Cookie` and `Host`
//! headers and the route of any request on the loopback port, before any authentication.
#![no_main]

use claw_gateway::web::{cookie, policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(v) = cookie::session_value(s) {
        assert!(!v.is_empty() && v.len() <= 64);
        assert!(v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }
    if policy::host_allowed(Some(s), 18789) {
        assert!(s.trim().ends_with(":18789"));
    }
    let _ = policy::own_origin(Some(s), 18789);
    for m in ["GET", "POST", "HEAD", s] {
        let _ = policy::route(m, s);
    }
});
