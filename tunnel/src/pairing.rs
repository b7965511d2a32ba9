//! The pairing URI `claw` prints and a device redeems (pure; parsed with the `url` crate):
//!
//! `claw://pair?v=1&gw=<64 hex: gateway key id>&addr=<host:port>[&addr=…]&code=<id.secret>&exp=<unix s>[&name=<name>]`
//!
//! `gw` is the gateway's pinned key fingerprint, `addr` the tunnel address(es) to try in order,
//! `code` the one-time pairing code, `exp` its expiry. The same fields also travel packed as
//! `CLAW://P/<BASE32>` ([`crate::pairing_compact`], what `claw pair` prints and puts in its QR
//! code); [`PairingUri::parse`] takes both.

use std::fmt;

use url::Url;

/// Longest URI accepted (a QR code holds ~2.9 KB; ours are far shorter).
pub const MAX_URI_LEN: usize = 2048;
/// Most addresses in one URI.
pub const MAX_ADDRS: usize = 8;

/// A parsed pairing URI.
#[derive(Clone, PartialEq, Eq)]
pub struct PairingUri {
    /// Gateway key id (lowercase hex SHA-256 of its Ed25519 public key).
    pub gateway_id: String,
    /// Tunnel addresses, `host:port`.
    pub addrs: Vec<String>,
    /// One-time code (a secret).
    pub code: String,
    /// Expiry, seconds since the epoch.
    pub expires_at: u64,
    /// Suggested device name.
    pub name: Option<String>,
}

impl fmt::Debug for PairingUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairingUri")
            .field("gateway_id", &self.gateway_id)
            .field("addrs", &self.addrs)
            .field("code", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("name", &self.name)
            .finish()
    }
}

/// Why a URI was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UriError {
    /// Not a `claw://pair` URI at all.
    #[error("not a claw pairing URI (it must start with claw://pair?)")]
    NotPairing,
    /// Too long.
    #[error("pairing URI is too long")]
    TooLong,
    /// A field is missing or malformed.
    #[error("pairing URI: {0}")]
    Field(&'static str),
    /// Unsupported version.
    #[error("pairing URI version {0} is not supported by this claw")]
    Version(String),
}

fn valid_addr(a: &str) -> bool {
    // host:port or [v6]:port; host is a name or IP literal, port a u16 ≠ 0.
    let Some((host, port)) = a.rsplit_once(':') else {
        return false;
    };
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0);
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && (host.parse::<std::net::IpAddr>().is_ok()
            || host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
    port_ok && host_ok
}

impl PairingUri {
    /// Parses and validates a URI; hostile input gets a clear error, never a panic.
    pub fn parse(s: &str) -> Result<Self, UriError> {
        let s = s.trim();
        if s.len() > MAX_URI_LEN {
            return Err(UriError::TooLong);
        }
        if crate::pairing_compact::is_compact(s) {
            return crate::pairing_compact::decode(s)?.validated();
        }
        let url = Url::parse(s).map_err(|_| UriError::NotPairing)?;
        if url.scheme() != "claw" || url.host_str() != Some("pair") {
            return Err(UriError::NotPairing);
        }
        let (mut v, mut gw, mut code, mut exp, mut name) = (None, None, None, None, None);
        let mut addrs = Vec::new();
        for (k, val) in url.query_pairs() {
            match k.as_ref() {
                "v" => v = Some(val.into_owned()),
                "gw" => gw = Some(val.into_owned()),
                "addr" => addrs.push(val.into_owned()),
                "code" => code = Some(val.into_owned()),
                "exp" => exp = Some(val.into_owned()),
                "name" => name = Some(val.into_owned()),
                _ => {} // unknown keys are ignored: newer gateways may add fields
            }
        }
        match v.as_deref() {
            Some("1") => {}
            Some(other) => return Err(UriError::Version(other.chars().take(16).collect())),
            None => return Err(UriError::Field("missing v")),
        }
        let gateway_id = gw
            .ok_or(UriError::Field("missing gw (gateway fingerprint)"))?
            .to_ascii_lowercase();
        let code = code.ok_or(UriError::Field("missing code"))?;
        let expires_at = exp
            .ok_or(UriError::Field("missing exp"))?
            .parse::<u64>()
            .map_err(|_| UriError::Field("exp must be seconds since the epoch"))?;
        Self {
            gateway_id,
            addrs,
            code,
            expires_at,
            name,
        }
        .validated()
    }

    /// The field checks both spellings of the URI pass through.
    pub(crate) fn validated(self) -> Result<Self, UriError> {
        let gid = &self.gateway_id;
        if gid.len() != 64 || !gid.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(UriError::Field("gw must be 64 hex characters"));
        }
        if self.addrs.is_empty() {
            return Err(UriError::Field("missing addr"));
        }
        if self.addrs.len() > MAX_ADDRS {
            return Err(UriError::Field("too many addr"));
        }
        if !self.addrs.iter().all(|a| valid_addr(a)) {
            return Err(UriError::Field("addr must be host:port"));
        }
        if claw_gateway::auth::pairing_code::split(&self.code).is_none() {
            return Err(UriError::Field("malformed code"));
        }
        if let Some(n) = &self.name {
            if n.len() > 64 || n.chars().any(char::is_control) {
                return Err(UriError::Field("name must be ≤ 64 printable characters"));
            }
        }
        Ok(self)
    }

    /// The URI to show a person and put in a QR code: the compact `CLAW://P/…` form when the
    /// fields pack ([`crate::pairing_compact`]), else the long form. Both parse to `self`.
    pub fn to_display_uri(&self) -> String {
        crate::pairing_compact::encode(self).unwrap_or_else(|| self.to_uri())
    }

    /// Prints the URI (inverse of [`PairingUri::parse`]).
    pub fn to_uri(&self) -> String {
        let mut url = Url::parse("claw://pair").expect("static URL");
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("v", "1");
            q.append_pair("gw", &self.gateway_id);
            for a in &self.addrs {
                q.append_pair("addr", a);
            }
            q.append_pair("code", &self.code);
            q.append_pair("exp", &self.expires_at.to_string());
            if let Some(n) = &self.name {
                q.append_pair("name", n);
            }
        }
        url.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PairingUri {
        PairingUri {
            gateway_id: "ab".repeat(32),
            addrs: vec![
                "127.0.0.1:18790".into(),
                "[::1]:18790".into(),
                "gw.example:443".into(),
            ],
            code: claw_gateway::auth::pairing_code::mint().code,
            expires_at: 1_800_000_000,
            name: Some("my phone & co".into()),
        }
    }

    #[test]
    fn round_trip() {
        let u = sample();
        let s = u.to_uri();
        assert!(s.starts_with("claw://pair?v=1&gw="));
        assert_eq!(PairingUri::parse(&s).unwrap(), u);
        let mut u2 = sample();
        u2.name = None;
        assert_eq!(PairingUri::parse(&u2.to_uri()).unwrap(), u2);
        assert!(!format!("{u:?}").contains(&u.code), "Debug hides the code");
    }

    #[test]
    fn hostile_uris() {
        let good = sample().to_uri();
        let cases: Vec<String> = vec![
            "".into(),
            "claw://pair".into(),
            "http://pair?v=1".into(),
            "claw://other?v=1".into(),
            good.replace("v=1", "v=2"),
            good.replace("gw=", "gw=zz"),
            good.replace(&"ab".repeat(32), &"ab".repeat(31)),
            good.replace("addr=127.0.0.1%3A18790", "addr=127.0.0.1"),
            good.replace("addr=127.0.0.1%3A18790", "addr=127.0.0.1%3A0"),
            good.replace("addr=127.0.0.1%3A18790", "addr=%3A80"),
            good.replace("addr=127.0.0.1%3A18790", "addr=a%20b%3A80"),
            good.replace("exp=1800000000", "exp=-1"),
            good.replace("exp=1800000000", "exp=soon"),
            good.replace("code=", "code=x"),
            format!("{good}&name={}", "n".repeat(65)),
            format!("{good}{}", "&addr=1.2.3.4%3A5".repeat(8)),
            format!("claw://pair?{}", "x".repeat(MAX_URI_LEN)),
            "claw://pair?v=1&gw=%00".into(),
            "claw://pair?%ff%fe=1".into(),
        ];
        for c in cases {
            assert!(PairingUri::parse(&c).is_err(), "accepted {c:?}");
        }
        // Unknown keys are tolerated.
        assert!(PairingUri::parse(&format!("{good}&future=1")).is_ok());
    }
}

/// Properties (proptest): parse ∘ print is the identity on every valid URI, and parsing anything
/// at all returns a value or an error, never a panic.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn addr() -> impl Strategy<Value = String> {
        let port = 1u16..=u16::MAX;
        prop_oneof![
            (any::<std::net::Ipv4Addr>(), port.clone()).prop_map(|(ip, p)| format!("{ip}:{p}")),
            (any::<std::net::Ipv6Addr>(), port.clone()).prop_map(|(ip, p)| format!("[{ip}]:{p}")),
            (any::<std::net::Ipv6Addr>(), port.clone()).prop_map(|(ip, p)| format!("{ip}:{p}")),
            ("[A-Za-z0-9.-]{1,40}", port.clone()).prop_map(|(h, p)| format!("{h}:{p}")),
            ("[a-z0-9-]{1,63}(\\.[a-z0-9-]{1,63}){0,2}", port.clone())
                .prop_map(|(h, p)| format!("{h}:{p}")),
            // The longest host names the parser takes (253 bytes): eight of them print a URI
            // over the size limit.
            ("[a-z]{200,253}", port).prop_map(|(h, p)| format!("{h}:{p}")),
        ]
    }

    /// A name the parser accepts: at most 64 bytes, no control characters (anything else goes,
    /// `&`, `=`, `%`, `+`, `#`, spaces and non-ASCII included).
    fn name() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                any::<char>().prop_filter("printable", |c| !c.is_control()),
                prop::sample::select(&['&', '=', '%', '+', '#', ' ', '?', '/'][..]),
            ],
            0..24,
        )
        .prop_map(|v| v.into_iter().collect::<String>())
        .prop_filter("at most 64 bytes", |s| s.len() <= 64)
    }

    fn uri() -> impl Strategy<Value = PairingUri> {
        (
            "[0-9a-f]{64}",
            prop::collection::vec(addr(), 1..=MAX_ADDRS),
            "[A-Za-z0-9_-]{8}\\.[A-Za-z0-9_-]{22}",
            any::<u64>(),
            prop::option::of(name()),
        )
            .prop_map(|(gateway_id, addrs, code, expires_at, name)| PairingUri {
                gateway_id,
                addrs,
                code,
                expires_at,
                name,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Every valid URI prints and parses back to itself — when the print fits the size
        /// limit; one that does not (possible only with several host names of hundreds of bytes)
        /// is refused as too long, never misread.
        #[test]
        fn parse_print_round_trip(u in uri()) {
            let text = u.to_uri();
            if text.len() <= MAX_URI_LEN {
                prop_assert_eq!(PairingUri::parse(&text), Ok(u));
            } else {
                prop_assert_eq!(PairingUri::parse(&text), Err(UriError::TooLong));
            }
        }

        /// The compact form carries the same value (less the name, which the gateway keeps):
        /// whatever packs parses back to itself.
        #[test]
        fn compact_round_trip(u in uri()) {
            if let Some(text) = crate::pairing_compact::encode(&u) {
                prop_assert!(text.len() <= MAX_URI_LEN || u.addrs.len() > 1);
                if text.len() <= MAX_URI_LEN {
                    let nameless = PairingUri { name: None, ..u };
                    prop_assert_eq!(PairingUri::parse(&text), Ok(nameless));
                }
            }
        }

        #[test]
        fn parse_never_panics(s in ".{0,300}") {
            let _ = PairingUri::parse(&s);
        }

        /// Damaged and extended valid URIs: never a panic, and whatever parses prints and parses
        /// back to the same value.
        #[test]
        fn damaged_uris_never_panic_and_what_parses_round_trips(
            u in uri(),
            at in any::<prop::sample::Index>(),
            cut in any::<bool>(),
            junk in "[&=%?#:/\\[\\]a-z0-9]{0,12}|.{0,12}",
        ) {
            let text = u.to_uri();
            let mut i = at.index(text.len() + 1);
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            let damaged = if cut {
                format!("{}{junk}", &text[..i])
            } else {
                format!("{}{junk}{}", &text[..i], &text[i..])
            };
            if let Ok(p) = PairingUri::parse(&damaged) {
                let again = p.to_uri();
                if again.len() <= MAX_URI_LEN {
                    prop_assert_eq!(PairingUri::parse(&again), Ok(p));
                }
            }
        }
    }
}
