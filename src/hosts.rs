//! The addresses a listener is reachable at, as told to devices (pairing URIs, `known_hosts`).

use std::net::{IpAddr, SocketAddr};

/// Addresses of this machine's interfaces, non-loopback first.
pub fn interface_addrs(port: u16) -> Vec<String> {
    let mut out: Vec<IpAddr> = Vec::new();
    if let Ok(ifs) = nix::ifaddrs::getifaddrs() {
        for i in ifs {
            if let Some(ip) = i.address.and_then(|a| {
                a.as_sockaddr_in()
                    .map(|v4| IpAddr::V4(v4.ip()))
                    .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
            }) {
                let link_local =
                    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
                if !link_local && !out.contains(&ip) {
                    out.push(ip);
                }
            }
        }
    }
    out.sort_by_key(|ip| ip.is_loopback());
    out.into_iter()
        .map(|ip| SocketAddr::new(ip, port).to_string())
        .collect()
}

/// The hosts a listener on `addr` is reachable at: itself, or every interface address when it
/// listens on the wildcard address.
pub fn advertised_hosts(addr: SocketAddr) -> Vec<String> {
    if addr.ip().is_unspecified() {
        interface_addrs(0)
            .into_iter()
            .filter_map(|a| a.parse::<SocketAddr>().ok())
            .map(|a| a.ip().to_string())
            .collect()
    } else {
        vec![addr.ip().to_string()]
    }
}
