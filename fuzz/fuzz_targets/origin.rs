//! The browser-origin parser (`--allow-origin`, the persisted list, the upgrade's `Origin`
//! header): never panics; what it accepts is canonical (parsing it again gives it back) and is
//! `http(s)://host[:port]` with no path, query, fragment, user info, wildcard or `null`; the
//! persisted-list parser agrees with it entry by entry.
#![no_main]

use claw_gateway::origin::{parse_origin, parse_origins_file, OriginPolicy, Verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = parse_origin(s) {
        assert_eq!(parse_origin(&c).as_ref(), Ok(&c), "not canonical: {s:?}");
        let (scheme, rest) = c.split_once("://").expect("scheme");
        assert!(scheme == "http" || scheme == "https");
        assert!(!rest.is_empty() && !rest.contains(['/', '?', '#', '@', '*', '\\']));
        assert!(!c.chars().any(|ch| ch.is_control() || ch.is_whitespace()));
        let policy = OriginPolicy::new([c.clone()], []);
        assert_eq!(policy.check(Some(s)), Verdict::Allowed);
    }
    let policy = OriginPolicy::new([], []);
    assert!(matches!(policy.check(Some(s)), Verdict::Refused(_)));
    if let Ok(list) = parse_origins_file(s) {
        for o in &list {
            assert_eq!(parse_origin(o).as_ref(), Ok(o));
        }
    }
});
