//! The `Cookie` request header, read for one name only: the control page's session cookie
//! ([`SESSION_COOKIE`]). Pure; bounded; anything odd is "no session".

/// Name of the control page's session cookie.
pub const SESSION_COOKIE: &str = "claw_session";

/// Longest cookie header looked at (longer: no session).
pub const MAX_HEADER: usize = 4096;

/// The value of the session cookie in a `Cookie` header (`a=1; claw_session=V; b=2`), if present
/// exactly once with a value of URL-safe base64 characters (what the gateway mints) of at most
/// 64 characters. A header that is too long, a duplicate (a cookie planted by another path or a
/// subdomain, RFC 6265 §8.4), or a value with other characters is treated as no session.
pub fn session_value(header: &str) -> Option<&str> {
    if header.len() > MAX_HEADER {
        return None;
    }
    let mut found = None;
    for pair in header.split(';') {
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        if name.trim() != SESSION_COOKIE {
            continue;
        }
        if found.is_some() {
            return None;
        }
        let v = value.trim();
        if v.is_empty()
            || v.len() > 64
            || !v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        found = Some(v);
    }
    found
}

/// The `Set-Cookie` value that installs `value`: HttpOnly (no script reads it), SameSite=Strict
/// (no other site's page sends it), Path=/, no `Domain` (host-only: `127.0.0.1:PORT` alone), and
/// a lifetime of `max_age_s`.
pub fn set_session(value: &str, max_age_s: u64) -> String {
    format!("{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age_s}")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_session() -> String {
    format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_the_session_among_others() {
        assert_eq!(session_value("claw_session=abc_-9"), Some("abc_-9"));
        assert_eq!(session_value("a=1; claw_session=XyZ; b=2"), Some("XyZ"));
        assert_eq!(session_value("  claw_session = v1 ;x=y"), Some("v1"));
        assert_eq!(session_value("a=1; b=2"), None);
        assert_eq!(session_value(""), None);
    }

    #[test]
    fn hostile_cookies_are_no_session() {
        for h in [
            "claw_session=",
            "claw_session=a; claw_session=b",
            "claw_session=\"quoted\"",
            "claw_session=a b",
            "claw_session=a%20b",
            "claw_session=\u{1b}[31m",
            "claw_session=ä",
            "xclaw_session=abc",
            "claw_session",
        ] {
            assert_eq!(session_value(h), None, "{h:?}");
        }
        let long = format!("claw_session={}", "a".repeat(65));
        assert_eq!(session_value(&long), None);
        let huge = format!("x={}; claw_session=abc", "a".repeat(MAX_HEADER));
        assert_eq!(session_value(&huge), None);
    }

    #[test]
    fn set_cookie_attributes() {
        let c = set_session("v", 60);
        for a in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=60"] {
            assert!(c.contains(a), "{c}");
        }
        assert!(!c.to_ascii_lowercase().contains("domain"), "host-only: {c}");
        assert!(clear_session().contains("Max-Age=0"));
    }

    proptest! {
        #[test]
        fn never_panics_and_only_returns_safe_values(h in ".{0,300}") {
            if let Some(v) = session_value(&h) {
                prop_assert!(!v.is_empty() && v.len() <= 64);
                prop_assert!(v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            }
        }

        #[test]
        fn a_minted_value_round_trips(v in "[A-Za-z0-9_-]{1,64}", before in "[a-z]{1,8}=[a-z0-9]{0,8}") {
            let header = format!("{before}; {SESSION_COOKIE}={v}");
            prop_assert_eq!(session_value(&header), Some(v.as_str()));
        }
    }
}
