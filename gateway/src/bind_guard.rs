//! The loopback-only rule: `claw gateway` never listens on anything but loopback.
//!
//! [`check_bind`] is pure apart from the resolver it is handed, so the rule is tested against a
//! table of addresses without opening a socket.

use std::net::{IpAddr, SocketAddr};

/// Why a bind address was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BindError {
    /// The address (or one the name resolves to) is not loopback.
    #[error("refusing to listen on {addr}: {why}. claw's gateway is loopback-only. To reach it from another machine use the claw tunnel (`claw gateway run --tunnel`, then `claw pair`), the built-in SSH forward (`claw gateway run --ssh`), or your own sshd: `ssh -N -L 18789:127.0.0.1:18789 user@this-host`")]
    NotLoopback {
        /// What the user asked for.
        addr: String,
        /// The offending resolved address, described.
        why: String,
    },
    /// A hostname did not resolve.
    #[error("cannot resolve bind address {addr}: {reason}")]
    Unresolvable {
        /// What the user asked for.
        addr: String,
        /// The resolver's message.
        reason: String,
    },
    /// The string is empty or malformed.
    #[error(
        "invalid bind address {0:?}: give an IP address such as 127.0.0.1 or ::1, or `localhost`"
    )]
    Invalid(String),
}

pub use claw_proto::loopback::is_loopback;

/// Checks `bind` (an IP literal, `[v6]`, or a hostname) and returns the socket addresses to listen
/// on. A hostname is resolved with `resolve`; **every** address it yields must be loopback.
/// `localhost` is always `127.0.0.1` (never resolved: /etc/hosts may say otherwise).
pub fn check_bind<F>(bind: &str, port: u16, resolve: F) -> Result<Vec<SocketAddr>, BindError>
where
    F: FnOnce(&str) -> std::io::Result<Vec<IpAddr>>,
{
    let trimmed = bind.trim();
    if trimmed.is_empty() || trimmed.contains(char::is_whitespace) || trimmed.contains('/') {
        return Err(BindError::Invalid(bind.to_string()));
    }
    if trimmed.eq_ignore_ascii_case("localhost") {
        return Ok(vec![SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port)]);
    }
    let literal = trimmed
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(trimmed);
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return if is_loopback(ip) {
            Ok(vec![SocketAddr::new(ip, port)])
        } else {
            Err(BindError::NotLoopback {
                addr: bind.to_string(),
                why: describe(ip),
            })
        };
    }
    if !trimmed
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(BindError::Invalid(bind.to_string()));
    }
    let ips = resolve(trimmed).map_err(|e| BindError::Unresolvable {
        addr: bind.to_string(),
        reason: e.to_string(),
    })?;
    if ips.is_empty() {
        return Err(BindError::Unresolvable {
            addr: bind.to_string(),
            reason: "no addresses".into(),
        });
    }
    if let Some(bad) = ips.iter().find(|ip| !is_loopback(**ip)) {
        return Err(BindError::NotLoopback {
            addr: bind.to_string(),
            why: format!("it resolves to {}", describe(*bad)),
        });
    }
    let mut out: Vec<SocketAddr> = ips
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    out.dedup();
    Ok(out)
}

fn describe(ip: IpAddr) -> String {
    if ip.is_unspecified() {
        format!("{ip} is the wildcard address (every interface)")
    } else {
        format!("{ip} is not a loopback address")
    }
}

/// Resolves a hostname with the system resolver (used by the CLI; tests pass their own).
pub fn system_resolve(host: &str) -> std::io::Result<Vec<IpAddr>> {
    use std::net::ToSocketAddrs;
    Ok((host, 0u16).to_socket_addrs()?.map(|a| a.ip()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(host: &str) -> std::io::Result<Vec<IpAddr>> {
        match host {
            "loop.test" => Ok(vec!["127.0.0.53".parse().unwrap(), "::1".parse().unwrap()]),
            "mixed.test" => Ok(vec![
                "127.0.0.1".parse().unwrap(),
                "10.1.2.3".parse().unwrap(),
            ]),
            "lan.test" => Ok(vec!["192.168.1.10".parse().unwrap()]),
            "v6pub.test" => Ok(vec!["2001:db8::1".parse().unwrap()]),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such host",
            )),
        }
    }

    #[test]
    fn bind_table() {
        // (input, accepted)
        let table: &[(&str, bool)] = &[
            ("127.0.0.1", true),
            ("127.0.0.2", true),
            ("127.255.255.254", true),
            ("::1", true),
            ("[::1]", true),
            ("localhost", true),
            ("LOCALHOST", true),
            ("::ffff:127.0.0.1", true),
            ("loop.test", true),
            ("0.0.0.0", false),
            ("::", false),
            ("[::]", false),
            ("192.168.1.10", false),
            ("10.0.0.1", false),
            ("172.16.0.1", false),
            ("8.8.8.8", false),
            ("169.254.1.1", false),
            ("fe80::1", false),
            ("2001:db8::1", false),
            ("::ffff:10.0.0.1", false),
            ("::ffff:0.0.0.0", false),
            ("0:0:0:0:0:0:0:1", true),
            ("lan.test", false),
            ("mixed.test", false),
            ("v6pub.test", false),
            ("nosuch.test", false),
            ("", false),
            ("127.0.0.1/8", false),
            ("bad host", false),
            ("127.0.0.1:80", false),
        ];
        for (input, ok) in table {
            let got = check_bind(input, 18789, fake);
            assert_eq!(got.is_ok(), *ok, "{input:?} -> {got:?}");
        }
    }

    #[test]
    fn refusal_names_address_and_alternatives() {
        let err = check_bind("0.0.0.0", 1, fake).unwrap_err().to_string();
        assert!(err.contains("0.0.0.0"));
        assert!(err.contains("--tunnel") && err.contains("--ssh") && err.contains("ssh -N -L"));
        let err = check_bind("mixed.test", 1, fake).unwrap_err().to_string();
        assert!(err.contains("10.1.2.3"), "{err}");
    }

    #[test]
    fn hostname_yields_all_loopback_addresses() {
        let got = check_bind("loop.test", 7, fake).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|a| a.port() == 7 && is_loopback(a.ip())));
    }
}

/// Properties (proptest): for any IPv4 or IPv6 address, written plainly or (v6) in brackets,
/// `check_bind` accepts exactly the loopback addresses — 127.0.0.0/8, `::1` and IPv4-mapped
/// `::ffff:127.x.y.z` — and never asks the resolver about a literal. The oracle below is written
/// from the RFCs, not from `std`'s helpers.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn loopback_by_rfc(ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => v4.octets()[0] == 127,
            IpAddr::V6(v6) => {
                let s = v6.segments();
                s == [0, 0, 0, 0, 0, 0, 0, 1]
                    || (s[..5] == [0; 5] && s[5] == 0xffff && s[6] >> 8 == 127)
            }
        }
    }

    fn v4() -> impl Strategy<Value = Ipv4Addr> {
        prop_oneof![
            any::<u32>().prop_map(Ipv4Addr::from),
            any::<[u8; 3]>().prop_map(|b| Ipv4Addr::new(127, b[0], b[1], b[2])),
            (any::<u8>(), any::<[u8; 3]>()).prop_map(|(a, b)| Ipv4Addr::new(a, b[0], b[1], b[2])),
            prop::sample::select(&[126u8, 128, 0, 255][..]).prop_map(|a| Ipv4Addr::new(a, 0, 0, 1)),
        ]
    }

    fn v6() -> impl Strategy<Value = Ipv6Addr> {
        prop_oneof![
            any::<u128>().prop_map(Ipv6Addr::from),
            v4().prop_map(|a| a.to_ipv6_mapped()),
            v4().prop_map(|a| a.to_ipv6_compatible()),
            any::<u16>().prop_map(|x| Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, x)),
            (0usize..8, any::<u16>()).prop_map(|(i, x)| {
                let mut s = Ipv6Addr::LOCALHOST.segments();
                s[i] = x;
                Ipv6Addr::from(s)
            }),
            (0usize..8, any::<u16>(), v4()).prop_map(|(i, x, a)| {
                let mut s = a.to_ipv6_mapped().segments();
                s[i] = x;
                Ipv6Addr::from(s)
            }),
        ]
    }

    fn ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![v4().prop_map(IpAddr::V4), v6().prop_map(IpAddr::V6)]
    }

    fn no_resolver(host: &str) -> std::io::Result<Vec<IpAddr>> {
        panic!("the resolver was asked about the literal {host:?}")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn a_literal_is_accepted_iff_loopback(ip in ip(), port in any::<u16>()) {
            let want = loopback_by_rfc(ip);
            prop_assert_eq!(is_loopback(ip), want, "{}", ip);
            let mut spellings = vec![ip.to_string()];
            if let IpAddr::V6(v6) = ip {
                spellings.push(format!("[{v6}]"));
                let s = v6.segments();
                spellings.push(format!(
                    "{:x}:{:x}:{:x}:{:x}:{:x}:{:x}:{:x}:{:x}",
                    s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]
                ));
            }
            for s in spellings {
                match check_bind(&s, port, no_resolver) {
                    Ok(addrs) => {
                        prop_assert!(want, "accepted {}", s);
                        prop_assert_eq!(addrs, vec![SocketAddr::new(ip, port)]);
                    }
                    Err(e) => {
                        prop_assert!(!want, "refused {}: {}", s, e);
                        let is_not_loopback = matches!(e, BindError::NotLoopback { .. });
                        prop_assert!(is_not_loopback, "{}", e);
                    }
                }
            }
        }

        /// A name is accepted iff it resolves to at least one address and every one is loopback.
        #[test]
        fn a_name_is_accepted_iff_every_address_is_loopback(
            ips in prop::collection::vec(ip(), 0..5),
            port in any::<u16>(),
        ) {
            let want = !ips.is_empty() && ips.iter().all(|ip| loopback_by_rfc(*ip));
            let got = check_bind("gw.test", port, |_| Ok(ips.clone()));
            prop_assert_eq!(got.is_ok(), want, "{:?} -> {:?}", ips, got);
            if let Ok(addrs) = got {
                prop_assert!(addrs.iter().all(|a| a.port() == port && loopback_by_rfc(a.ip())));
            }
        }

        /// Arbitrary text is refused or accepted, never a panic; whatever is accepted is loopback.
        #[test]
        fn arbitrary_text_never_panics(s in ".{0,48}|[0-9a-fA-F:.\\[\\]]{0,48}") {
            if let Ok(addrs) = check_bind(&s, 1, |_| Ok(vec![IpAddr::from([10, 0, 0, 1])])) {
                prop_assert!(addrs.iter().all(|a| loopback_by_rfc(a.ip())), "{} -> {:?}", s, addrs);
            }
        }
    }
}
