//! Which `direct-tcpip` destinations the SSH forward serves (`ssh::policy::TargetPolicy::resolve`):
//! the host and port come from the SSH client. Only loopback literals (or `localhost`) on the
//! gateway's or an exposed port may ever resolve.
#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::LazyLock;

use claw_tunnel::ssh::policy::{Target, TargetPolicy};
use libfuzzer_sys::fuzz_target;

const GATEWAY_PORT: u16 = 18789;

static POLICY: LazyLock<(TargetPolicy, Vec<SocketAddr>)> = LazyLock::new(|| {
    let exposes: HashMap<String, SocketAddr> = [
        ("oc", "127.0.0.1:18800"),
        ("web", "[::1]:18801"),
        ("alt", "127.0.0.2:18802"),
    ]
    .into_iter()
    .map(|(n, a)| (n.to_string(), a.parse().unwrap()))
    .collect();
    let list = exposes.values().copied().collect();
    let policy = TargetPolicy::new(
        vec![
            SocketAddr::from(([127, 0, 0, 1], GATEWAY_PORT)),
            "[::1]:18789".parse().unwrap(),
        ],
        exposes,
    );
    (policy, list)
});

/// Loopback by the RFCs: 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104.
fn loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 127,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            s == [0, 0, 0, 0, 0, 0, 0, 1]
                || (s[..5] == [0; 5] && s[5] == 0xffff && s[6] >> 8 == 127)
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let port = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let Ok(host) = std::str::from_utf8(&data[4..]) else {
        return;
    };
    let (policy, exposes) = &*POLICY;
    let Some(target) = policy.resolve(host, port) else {
        return;
    };
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host_ok =
        host.eq_ignore_ascii_case("localhost") || literal.parse::<IpAddr>().is_ok_and(loopback);
    assert!(host_ok, "forwarded to non-loopback host {host:?}");
    match target {
        Target::Gateway => assert_eq!(port, u32::from(GATEWAY_PORT)),
        Target::Exposed(a) => {
            assert!(exposes.contains(&a), "{a} is not exposed");
            assert_eq!(u32::from(a.port()), port);
            assert!(loopback(a.ip()));
        }
    }
});
