//! Where the client may send credentials. A `connect` carries the shared token or a device token
//! and `ws://` is cleartext, so by default only loopback URLs are accepted: the gateway itself,
//! `claw tunnel up`'s local port or an `ssh -L` forward — the ways claw reaches a remote gateway,
//! each encrypted on the wire. Anything else is refused before a socket is opened, unless the
//! host opts in with [`crate::session::ConnectOptions::allow_insecure_remote`]. Pure; tested
//! with hostile input.

use std::net::IpAddr;

use tokio_tungstenite::tungstenite::http::Uri;

/// Why a URL is refused (the message is shown to the user as the `auth_failed` reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlRefused(pub String);

/// Checks `url` against the policy; `allow_remote` lifts the loopback-only rule (not the
/// scheme rule).
pub fn check(url: &str, allow_remote: bool) -> Result<(), UrlRefused> {
    let uri: Uri = url
        .parse()
        .map_err(|e| UrlRefused(format!("{url:?} is not a valid URL: {e}")))?;
    match uri.scheme_str() {
        Some("ws") => {}
        Some("wss") => {
            return Err(UrlRefused(format!(
                "{url}: wss:// is not supported; reach a remote gateway through `claw tunnel up` \
                 or `ssh -N -L` and connect to the loopback ws:// URL they give"
            )))
        }
        _ => return Err(UrlRefused(format!("{url}: expected a ws:// URL"))),
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(UrlRefused(format!(
            "{url}: credentials in the URL are not supported; pass the token separately"
        )));
    }
    if let Some(a) = uri.authority() {
        // http::Uri keeps a port it cannot read as u16 as text; refuse it here.
        let after_host = a.as_str().rsplit_once(']').map_or(a.as_str(), |(_, p)| p);
        if after_host.contains(':') && uri.port_u16().is_none() {
            return Err(UrlRefused(format!("{url}: invalid port")));
        }
    }
    let host = uri
        .host()
        .ok_or_else(|| UrlRefused(format!("{url}: no host")))?;
    if allow_remote || is_loopback_host(host) {
        return Ok(());
    }
    Err(UrlRefused(format!(
        "refusing to send credentials in cleartext to {host}: ws:// is only safe on loopback. \
         Run `claw tunnel up` (or `ssh -N -L`) and connect to ws://127.0.0.1:PORT instead"
    )))
}

/// `localhost` or a loopback IP literal (IPv6 in brackets, IPv4-mapped included).
fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>().is_ok_and(claw_proto::is_loopback)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_pass() {
        for u in [
            "ws://127.0.0.1:18789",
            "ws://127.0.0.1:18789/",
            "ws://127.8.9.10:1/path?q=1",
            "ws://localhost:18789",
            "ws://LOCALHOST:1",
            "ws://[::1]:18789",
            "ws://[::ffff:127.0.0.1]:18789",
            "ws://127.0.0.1",
        ] {
            assert_eq!(check(u, false), Ok(()), "{u}");
        }
    }

    #[test]
    fn remote_and_hostile_urls_are_refused_with_a_reason() {
        for u in [
            "ws://10.0.0.5:18789",
            "ws://192.168.1.2:18789",
            "ws://0.0.0.0:18789",
            "ws://[::]:18789",
            "ws://[::ffff:10.0.0.1]:18789",
            "ws://gateway.example.com:18789",
            "ws://localhost.evil.example:18789",
            "ws://127.0.0.1.evil.example:18789",
            "ws://0x7f.1:18789",
            "ws://2130706433:18789",
        ] {
            let e = check(u, false).expect_err(u);
            assert!(e.0.contains("cleartext"), "{u}: {}", e.0);
            assert_eq!(check(u, true), Ok(()), "{u} with the opt-in");
        }
        for u in [
            "wss://127.0.0.1:18789",
            "http://127.0.0.1:18789",
            "127.0.0.1:18789",
            "",
            "ws://",
            "ws://user:pass@127.0.0.1:1",
            "ws://127.0.0.1:99999",
            "ws://[::1:1",
            "ws://\u{0}:1",
            "ws://127.0.0.1:1/\u{7f}",
        ] {
            assert!(check(u, false).is_err(), "{u:?} accepted");
            assert!(check(u, true).is_err(), "{u:?} accepted with the opt-in");
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn never_panics_on_any_input(s in "\\PC{0,80}") {
            let _ = check(&s, false);
            let _ = check(&s, true);
        }

        #[test]
        fn an_ipv4_url_passes_iff_loopback(ip in any::<[u8; 4]>(), port in 1u16.., path in "[a-z/]{0,8}") {
            let addr = std::net::Ipv4Addr::from(ip);
            let url = format!("ws://{addr}:{port}/{path}");
            prop_assert_eq!(check(&url, false).is_ok(), addr.is_loopback(), "{}", url);
        }

        #[test]
        fn an_ipv6_url_passes_iff_loopback(ip in any::<[u8; 16]>(), port in 1u16..) {
            let addr = std::net::Ipv6Addr::from(ip);
            let url = format!("ws://[{addr}]:{port}");
            let loopback = addr.is_loopback()
                || addr.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback());
            prop_assert_eq!(check(&url, false).is_ok(), loopback, "{}", url);
        }
    }
}
