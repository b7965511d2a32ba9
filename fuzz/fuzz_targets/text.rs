//! Operator-visible text: `escape` always yields one printable line without any forbidden
//! character, is the identity on clean text, and `check_label` accepts only what needs no
//! escaping (but backslashes).
#![no_main]

use claw_gateway::text::{check_label, escape, is_forbidden};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let e = escape(&s);
    assert!(!e.chars().any(is_forbidden));
    assert!(!e.contains('\n') && !e.contains('\r') && !e.contains('\u{1b}'));
    if !s.chars().any(|c| c == '\\' || is_forbidden(c)) {
        assert_eq!(e, s);
    }
    if check_label("fuzz", &s, 64).is_ok() {
        assert!(!s.is_empty() && s.len() <= 64);
        assert!(!s.chars().any(is_forbidden));
    }
});
