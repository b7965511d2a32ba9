//! `--upstream URL`: which OpenClaw gateway claw fronts. Loopback only, like `--bind`: claw sends
//! the upstream's credential in the clear (`ws://`), so the upstream must be on this machine.

use std::net::{IpAddr, SocketAddr};

/// The port OpenClaw's gateway listens on by default.
pub const DEFAULT_UPSTREAM_PORT: u16 = 18789;

/// A checked upstream address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The request path (`/` unless given).
    pub path: String,
}

impl UpstreamUrl {
    /// The URL as claw dials it (`ws://127.0.0.1:18789/`).
    pub fn to_ws(&self) -> String {
        format!("ws://{}{}", self.addr, self.path)
    }
}

impl std::fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_ws())
    }
}

/// Why an `--upstream` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    /// Not `ws://…` (claw does not dial `wss://` or anything else yet).
    #[error(
        "--upstream {0:?}: expected ws://127.0.0.1:PORT (an OpenClaw gateway on this machine)"
    )]
    Scheme(String),
    /// The host is not a loopback literal or `localhost`.
    #[error("--upstream {url:?}: refusing a non-loopback upstream ({host}). claw sends the upstream's token in the clear, so the upstream must listen on 127.0.0.1, ::1 or localhost")]
    NotLoopback {
        /// What was given.
        url: String,
        /// The host part.
        host: String,
    },
    /// Malformed (user info, bad port, query, fragment, control characters).
    #[error("--upstream {0:?}: not a valid ws:// URL")]
    Invalid(String),
}

/// Parses `ws://HOST[:PORT][/PATH]` with HOST a loopback IP literal or `localhost` (always
/// `127.0.0.1`, never resolved). No user info, query or fragment.
pub fn parse_upstream_url(s: &str) -> Result<UpstreamUrl, UrlError> {
    let shown: String = s.chars().take(200).collect();
    if s.len() > 2048 || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(UrlError::Invalid(shown));
    }
    let rest = match s.get(..5) {
        Some(p) if p.eq_ignore_ascii_case("ws://") => &s[5..],
        _ => return Err(UrlError::Scheme(shown)),
    };
    if rest.contains(['@', '?', '#', '\\']) {
        return Err(UrlError::Invalid(shown));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) =
        split_host_port(authority).ok_or_else(|| UrlError::Invalid(shown.clone()))?;
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::from([127, 0, 0, 1])
    } else {
        match host.parse() {
            Ok(ip) => ip,
            Err(_) => {
                return Err(UrlError::NotLoopback {
                    url: shown,
                    host: host.to_string(),
                })
            }
        }
    };
    if !claw_proto::is_loopback(ip) {
        return Err(UrlError::NotLoopback {
            url: shown,
            host: host.to_string(),
        });
    }
    Ok(UpstreamUrl {
        addr: SocketAddr::new(ip, port),
        path: path.to_string(),
    })
}

fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    if authority.is_empty() {
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']')?;
        let host = &v6[..end];
        match &v6[end + 1..] {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || (!authority.starts_with('[') && host.contains(':')) {
        return None;
    }
    let port = match port {
        None => DEFAULT_UPSTREAM_PORT,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse().ok().filter(|p| *p != 0)?
        }
        Some(_) => return None,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_accepted() {
        for (s, addr, path) in [
            ("ws://127.0.0.1:18789", "127.0.0.1:18789", "/"),
            ("ws://127.0.0.1:4000/", "127.0.0.1:4000", "/"),
            ("WS://localhost:4000/gw", "127.0.0.1:4000", "/gw"),
            ("ws://[::1]:4000", "[::1]:4000", "/"),
            ("ws://127.0.0.1", "127.0.0.1:18789", "/"),
            ("ws://[::ffff:127.0.0.1]:9", "[::ffff:127.0.0.1]:9", "/"),
        ] {
            let u = parse_upstream_url(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(u.addr.to_string(), addr, "{s}");
            assert_eq!(u.path, path, "{s}");
        }
    }

    #[test]
    fn anything_off_the_machine_is_refused() {
        for s in [
            "ws://10.0.0.1:18789",
            "ws://0.0.0.0:18789",
            "ws://[::]:18789",
            "ws://example.com:18789",
            "ws://127.0.0.1.nip.io:18789",
            "ws://[::ffff:10.0.0.1]:1",
        ] {
            assert!(
                matches!(parse_upstream_url(s), Err(UrlError::NotLoopback { .. })),
                "{s}"
            );
        }
    }

    #[test]
    fn hostile_urls_are_invalid() {
        for s in [
            "",
            "http://127.0.0.1:1",
            "wss://127.0.0.1:1",
            "ws://",
            "ws://:80",
            "ws://user:pw@127.0.0.1:1",
            "ws://127.0.0.1:1?x=1",
            "ws://127.0.0.1:1#f",
            "ws://127.0.0.1:0",
            "ws://127.0.0.1:99999",
            "ws://127.0.0.1:+1",
            "ws://127.0.0.1:1 ",
            "ws://127.0.0.1:1\n",
            "ws://[::1",
            "ws://[::1]x",
            "ws://::1:80",
            "ws://127.0.0.1:1\\x",
        ] {
            assert!(parse_upstream_url(s).is_err(), "{s:?}");
        }
        assert!(parse_upstream_url(&format!("ws://127.0.0.1:1/{}", "a".repeat(5000))).is_err());
    }
}
