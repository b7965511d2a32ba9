//! The gateway URL a client is given (`claw call --url`, relay-client's `ConnectOptions`): the
//! policy never panics, and whatever it accepts without the opt-in names a loopback host.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_client::url_policy::check;

fuzz_target!(|data: &[u8]| {
    let Ok(url) = std::str::from_utf8(data) else {
        return;
    };
    let strict = check(url, false);
    let lax = check(url, true);
    // The opt-in only widens the host rule: what passes strictly passes with it.
    if strict.is_ok() {
        assert!(lax.is_ok(), "{url:?}");
        let uri: tokio_tungstenite::tungstenite::http::Uri =
            url.parse().expect("accepted URLs parse");
        assert_eq!(uri.scheme_str(), Some("ws"));
        let host = uri.host().expect("a host");
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host.eq_ignore_ascii_case("localhost")
            || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| match ip {
                std::net::IpAddr::V4(v4) => v4.is_loopback(),
                std::net::IpAddr::V6(v6) => {
                    v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
                }
            });
        assert!(loopback, "{url:?} accepted with host {host:?}");
    }
});
