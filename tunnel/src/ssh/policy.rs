//! Which `direct-tcpip` destinations the SSH forward serves (pure).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// Where an accepted forward goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The gateway's own WebSocket port (served in-process).
    Gateway,
    /// An exposed loopback service.
    Exposed(SocketAddr),
}

/// The gateway's ports and exposed services.
#[derive(Debug, Clone)]
pub struct TargetPolicy {
    gateway: Vec<SocketAddr>,
    exposes: Vec<SocketAddr>,
}

fn loopback_host(host: &str) -> Option<Vec<IpAddr>> {
    if host.eq_ignore_ascii_case("localhost") {
        return Some(vec![
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
        ]);
    }
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip: IpAddr = h.parse().ok()?;
    claw_proto::is_loopback(ip).then(|| vec![ip])
}

impl TargetPolicy {
    /// A policy for the gateway listening on `gateway` with `exposes`.
    pub fn new(gateway: Vec<SocketAddr>, exposes: HashMap<String, SocketAddr>) -> Self {
        Self {
            gateway,
            exposes: exposes.into_values().collect(),
        }
    }

    /// The target for a `direct-tcpip` request, or `None` when it is not allowed. Only loopback
    /// hosts (127.0.0.0/8, ::1, `localhost`) are considered: a forward never resolves names.
    pub fn resolve(&self, host: &str, port: u32) -> Option<Target> {
        let port = u16::try_from(port).ok()?;
        let ips = loopback_host(host)?;
        let gw_port = self.gateway.iter().any(|a| a.port() == port);
        if gw_port {
            return Some(Target::Gateway);
        }
        self.exposes
            .iter()
            .find(|e| e.port() == port && ips.iter().any(|ip| ip.is_loopback() || e.ip() == *ip))
            .map(|e| Target::Exposed(*e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_gateway_and_exposed_ports() {
        let mut ex = HashMap::new();
        ex.insert("oc".to_string(), "127.0.0.1:18800".parse().unwrap());
        let p = TargetPolicy::new(vec!["127.0.0.1:18789".parse().unwrap()], ex);
        assert_eq!(p.resolve("127.0.0.1", 18789), Some(Target::Gateway));
        assert_eq!(p.resolve("localhost", 18789), Some(Target::Gateway));
        assert_eq!(p.resolve("::1", 18789), Some(Target::Gateway));
        assert_eq!(p.resolve("[::1]", 18789), Some(Target::Gateway));
        assert_eq!(
            p.resolve("127.0.0.1", 18800),
            Some(Target::Exposed("127.0.0.1:18800".parse().unwrap()))
        );
        for (h, port) in [
            ("127.0.0.1", 22),
            ("127.0.0.1", 18790),
            ("10.0.0.1", 18789),
            ("example.com", 18789),
            ("0.0.0.0", 18789),
            ("169.254.169.254", 80),
            ("127.0.0.1", 70_000),
            ("", 18789),
            ("::ffff:10.0.0.1", 18789),
        ] {
            assert_eq!(p.resolve(h, port), None, "{h}:{port}");
        }
    }
}
