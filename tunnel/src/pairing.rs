//! The pairing URI `claw` prints and a device redeems (pure; parsed with the `url` crate):
//!
//! `claw://pair?v=1&gw=<64 hex: gateway key id>[&addr=<host:port>]…[&relay=<url>[&rpin=<64 hex>]]…[&gk=<key>&rt=<sig>]&code=<id.secret>&exp=<unix s>[&name=<name>]`
//!
//! `gw` is the gateway's pinned key fingerprint, `addr` the tunnel address(es) to try in order,
//! `code` the one-time pairing code, `exp` its expiry. A gateway served through relays
//! (`claw gateway run --relay`) adds each `relay` URL, followed by its certificate pin `rpin`
//! when it is self-signed; `gk`, the gateway's raw Ed25519 public key (base64url; its SHA-256 is
//! `gw`, and it is the gateway's address on the relay); and `rt`, the signature of the relay
//! ticket the gateway issued for the pairing key derived from the code
//! ([`claw_mesh::ticket::pairing_ticket`]), so the unpaired device may use the relay until the
//! code expires. Direct addresses are optional when a relay is given. The same fields also travel packed as
//! `CLAW://P/<BASE32>` ([`crate::pairing_compact`], what `claw pair` prints and puts in its QR
//! code); [`PairingUri::parse`] takes both.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use claw_mesh::ticket::{pairing_seed, public_key, DeviceTicket};
use serde::{Deserialize, Serialize};
use url::Url;

/// Longest URI accepted (a QR code holds ~2.9 KB; ours are far shorter).
pub const MAX_URI_LEN: usize = 2048;
/// Most addresses in one URI.
pub const MAX_ADDRS: usize = 8;
/// Most relays in one URI.
pub const MAX_RELAYS: usize = 4;
/// Longest relay URL.
pub const MAX_RELAY_URL: usize = 200;

/// A relay a gateway is reached through, as a pairing URI names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayRef {
    /// `https://host:port/` (`http://` only behind a TLS-terminating proxy).
    pub url: String,
    /// SHA-256 of its self-signed certificate (64 lowercase hex); `None`: a CA-issued one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
}

impl RelayRef {
    /// What the relay client dials.
    pub fn target(&self) -> claw_mesh::client::RelayTarget {
        claw_mesh::client::RelayTarget {
            url: self.url.clone(),
            pin: self.pin.clone(),
        }
    }
}

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
    /// Relays the gateway is reached through, in order.
    pub relays: Vec<RelayRef>,
    /// The gateway's raw Ed25519 public key (required with relays).
    pub gateway_key: Option<[u8; 32]>,
    /// The signature of the pairing relay ticket (required with relays).
    pub relay_sig: Option<[u8; 64]>,
}

impl fmt::Debug for PairingUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairingUri")
            .field("gateway_id", &self.gateway_id)
            .field("addrs", &self.addrs)
            .field("code", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("name", &self.name)
            .field("relays", &self.relays)
            .finish_non_exhaustive()
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

/// A relay URL a pairing URI may carry: `http(s)://host[:port][/path]`, no credentials, query
/// or fragment, printable, bounded.
fn valid_relay_url(s: &str) -> bool {
    if s.len() > MAX_RELAY_URL || s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return false;
    }
    let Ok(u) = Url::parse(s) else { return false };
    matches!(u.scheme(), "https" | "http")
        && u.host_str().is_some_and(|h| !h.is_empty())
        && u.username().is_empty()
        && u.password().is_none()
        && u.query().is_none()
        && u.fragment().is_none()
}

/// `N` bytes from base64url (no padding), exactly.
fn decode_fixed<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() > N * 2 {
        return None;
    }
    URL_SAFE_NO_PAD.decode(s).ok()?.try_into().ok()
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
        let (mut gk, mut rt) = (None, None);
        let mut addrs = Vec::new();
        let mut relays: Vec<RelayRef> = Vec::new();
        for (k, val) in url.query_pairs() {
            match k.as_ref() {
                "v" => v = Some(val.into_owned()),
                "gw" => gw = Some(val.into_owned()),
                "addr" => addrs.push(val.into_owned()),
                "relay" => relays.push(RelayRef {
                    url: val.into_owned(),
                    pin: None,
                }),
                // A pin belongs to the relay just before it.
                "rpin" => match relays.last_mut() {
                    Some(r) if r.pin.is_none() => r.pin = Some(val.to_ascii_lowercase()),
                    _ => return Err(UriError::Field("rpin must follow its relay")),
                },
                "gk" => {
                    gk = Some(
                        decode_fixed::<32>(&val)
                            .ok_or(UriError::Field("gk must be a base64url Ed25519 key"))?,
                    )
                }
                "rt" => {
                    rt = Some(
                        decode_fixed::<64>(&val)
                            .ok_or(UriError::Field("rt must be a base64url signature"))?,
                    )
                }
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
            relays,
            gateway_key: gk,
            relay_sig: rt,
        }
        .validated()
    }

    /// The field checks both spellings of the URI pass through.
    pub(crate) fn validated(self) -> Result<Self, UriError> {
        let gid = &self.gateway_id;
        if gid.len() != 64 || !gid.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(UriError::Field("gw must be 64 hex characters"));
        }
        if self.addrs.is_empty() && self.relays.is_empty() {
            return Err(UriError::Field("missing addr (or relay)"));
        }
        if self.relays.len() > MAX_RELAYS {
            return Err(UriError::Field("too many relay"));
        }
        if !self.relays.iter().all(|r| valid_relay_url(&r.url)) {
            return Err(UriError::Field(
                "relay must be an http(s)://host[:port] URL",
            ));
        }
        if !self
            .relays
            .iter()
            .filter_map(|r| r.pin.as_deref())
            .all(|p| p.len() == 64 && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        {
            return Err(UriError::Field("rpin must be 64 hex characters"));
        }
        if let Some(gk) = &self.gateway_key {
            if claw_proto::signature::device_id_for_key(gk) != self.gateway_id {
                return Err(UriError::Field("gk is not the key of gw"));
            }
        }
        if !self.relays.is_empty() {
            let gk = self
                .gateway_key
                .ok_or(UriError::Field("a relay needs gk (the gateway key)"))?;
            let sig = self
                .relay_sig
                .ok_or(UriError::Field("a relay needs rt (the relay ticket)"))?;
            if !self.pairing_ticket_of(gk, sig).signature_is_valid() {
                return Err(UriError::Field("rt is not the gateway's signature"));
            }
        }
        if self.addrs.len() > MAX_ADDRS {
            return Err(UriError::Field("too many addr"));
        }
        if !self.addrs.iter().all(|a| valid_addr(a)) {
            return Err(UriError::Field("addr must be host:port"));
        }
        if claw_proto::pairing_code::split(&self.code).is_none() {
            return Err(UriError::Field("malformed code"));
        }
        if let Some(n) = &self.name {
            if n.len() > 64 || n.chars().any(char::is_control) {
                return Err(UriError::Field("name must be ≤ 64 printable characters"));
            }
        }
        Ok(self)
    }

    fn pairing_ticket_of(&self, gk: [u8; 32], sig: [u8; 64]) -> DeviceTicket {
        DeviceTicket::from_parts(
            gk,
            public_key(&pairing_seed(&self.code)),
            self.expires_at,
            sig,
        )
    }

    /// The relay ticket and relay key (Ed25519 seed) an unpaired device uses to reach the
    /// gateway through a relay while it redeems the code; `None` without relays.
    pub fn pairing_relay_credentials(&self) -> Option<(String, [u8; 32])> {
        let t = self.pairing_ticket_of(self.gateway_key?, self.relay_sig?);
        Some((t.encode(), pairing_seed(&self.code)))
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
            for r in &self.relays {
                q.append_pair("relay", &r.url);
                if let Some(p) = &r.pin {
                    q.append_pair("rpin", p);
                }
            }
            if let Some(k) = &self.gateway_key {
                q.append_pair("gk", &URL_SAFE_NO_PAD.encode(k));
            }
            if let Some(sig) = &self.relay_sig {
                q.append_pair("rt", &URL_SAFE_NO_PAD.encode(sig));
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
            relays: Vec::new(),
            gateway_key: None,
            relay_sig: None,
        }
    }

    /// A URI with relays, signed by gateway seed 7s.
    fn relayed() -> PairingUri {
        let seed = [7u8; 32];
        let gk = public_key(&seed);
        let mut u = sample();
        u.gateway_id = claw_proto::signature::device_id_for_key(&gk);
        u.addrs.clear();
        u.relays = vec![
            RelayRef {
                url: "https://relay.example:8443".into(),
                pin: Some("3f".repeat(32)),
            },
            RelayRef {
                url: "https://relay2.example/".into(),
                pin: None,
            },
        ];
        u.gateway_key = Some(gk);
        u.relay_sig =
            Some(claw_mesh::ticket::pairing_ticket(&seed, &u.code, u.expires_at).signature());
        u
    }

    #[test]
    fn relay_fields_round_trip_and_need_no_address() {
        let u = relayed();
        let s = u.to_uri();
        assert!(
            s.contains("&relay=https%3A%2F%2Frelay.example%3A8443&rpin="),
            "{s}"
        );
        assert!(s.contains("&gk=") && s.contains("&rt="), "{s}");
        assert_eq!(PairingUri::parse(&s).unwrap(), u);
        let mut both = u.clone();
        both.addrs = vec!["127.0.0.1:18790".into()];
        assert_eq!(PairingUri::parse(&both.to_uri()).unwrap(), both);
    }

    #[test]
    fn hostile_relay_fields() {
        let u = relayed();
        let good = u.to_uri();
        let gk = URL_SAFE_NO_PAD.encode(u.gateway_key.unwrap());
        let rt = URL_SAFE_NO_PAD.encode(u.relay_sig.unwrap());
        let pin = "3f".repeat(32);
        let mut other_sig = u.relay_sig.unwrap();
        other_sig[63] ^= 0x80;
        let cases: Vec<String> = vec![
            // The relay fields without their key or ticket.
            good.replace(&format!("&gk={gk}"), ""),
            good.replace(&format!("&rt={rt}"), ""),
            // A key that is not gw's; a ticket signed for another code or by another key.
            good.replace(&gk, &URL_SAFE_NO_PAD.encode([9u8; 32])),
            good.replace(&rt, &URL_SAFE_NO_PAD.encode(other_sig)),
            good.replace(&rt, &URL_SAFE_NO_PAD.encode([0u8; 64])),
            // Malformed key and signature.
            good.replace(&gk, "AAAA"),
            good.replace(&gk, &"A".repeat(4000)),
            good.replace(&rt, "%00"),
            good.replace(&rt, &rt[..40]),
            // A pin before any relay, two pins for one relay, a short pin.
            good.replace("v=1&", &format!("v=1&rpin={pin}&")),
            good.replace(&format!("rpin={pin}"), &format!("rpin={pin}&rpin={pin}")),
            good.replace(&pin, &pin[..62]),
            good.replace(&pin, &"zz".repeat(32)),
            // Not a relay URL.
            good.replace("https%3A%2F%2Frelay.example%3A8443", "ftp%3A%2F%2Fr"),
            good.replace(
                "https%3A%2F%2Frelay.example%3A8443",
                "https%3A%2F%2Fu%3Ap%40r",
            ),
            good.replace(
                "https%3A%2F%2Frelay.example%3A8443",
                "https%3A%2F%2Fr%2F%3Fx%3D1",
            ),
            good.replace("https%3A%2F%2Frelay.example%3A8443", "https%3A%2F%2Fr%23f"),
            good.replace("https%3A%2F%2Frelay.example%3A8443", "https%3A%2F%2Fr%0A"),
            good.replace("https%3A%2F%2Frelay.example%3A8443", "relay.example%3A8443"),
            good.replace(
                "https%3A%2F%2Frelay.example%3A8443",
                &format!("https%3A%2F%2F{}", "r".repeat(200)),
            ),
            // Too many relays; neither an address nor a relay.
            format!("{good}{}", "&relay=https%3A%2F%2Fx".repeat(3)),
            sample().to_uri().replace(
                "&addr=127.0.0.1%3A18790&addr=%5B%3A%3A1%5D%3A18790&addr=gw.example%3A443",
                "",
            ),
        ];
        for c in cases {
            assert!(PairingUri::parse(&c).is_err(), "accepted {c:?}");
        }
        // The code is part of what is signed: the same fields with another code fail.
        let mut swapped = u.clone();
        swapped.code = claw_gateway::auth::pairing_code::mint().code;
        assert!(PairingUri::parse(&swapped.to_uri()).is_err());
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

    fn relay() -> impl Strategy<Value = RelayRef> {
        (
            prop_oneof![Just("https"), Just("http")],
            "[a-z][a-z0-9]{0,29}(\\.[a-z][a-z0-9]{0,19}){0,2}",
            prop::option::of(1u16..=u16::MAX),
            prop_oneof![Just(""), Just("/"), Just("/relay")],
            prop::option::of("[0-9a-f]{64}"),
        )
            .prop_map(|(scheme, host, port, path, pin)| RelayRef {
                url: match port {
                    Some(p) => format!("{scheme}://{host}:{p}{path}"),
                    None => format!("{scheme}://{host}{path}"),
                },
                pin,
            })
    }

    fn uri() -> impl Strategy<Value = PairingUri> {
        (
            any::<[u8; 32]>(),
            prop::collection::vec(addr(), 0..=MAX_ADDRS),
            prop::collection::vec(relay(), 0..=MAX_RELAYS),
            "[A-Za-z0-9_-]{8}\\.[A-Za-z0-9_-]{22}",
            any::<u64>(),
            prop::option::of(name()),
        )
            .prop_filter("an address or a relay", |(_, a, r, ..)| {
                !a.is_empty() || !r.is_empty()
            })
            .prop_map(|(seed, addrs, relays, code, expires_at, name)| {
                let gk = public_key(&seed);
                let signed = !relays.is_empty();
                PairingUri {
                    gateway_id: claw_proto::signature::device_id_for_key(&gk),
                    relay_sig: signed.then(|| {
                        claw_mesh::ticket::pairing_ticket(&seed, &code, expires_at).signature()
                    }),
                    gateway_key: signed.then_some(gk),
                    addrs,
                    relays,
                    code,
                    expires_at,
                    name,
                }
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
