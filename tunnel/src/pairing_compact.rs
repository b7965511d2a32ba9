//! The compact pairing URI: the same facts as `claw://pair?v=1&…`, packed into bytes and printed
//! as `CLAW://P/<BASE32>` (pure).
//!
//! Why: a QR code stores upper-case letters, digits and `:/` in its alphanumeric mode at 5.5 bits
//! a character against 8 for the long URI's bytes, and the binary form drops the field names and
//! the hex of the fingerprint. One tunnel address makes a 115-character URI — a version 5 QR code
//! (37 modules) at error-correction level M instead of the long form's version 9 (53 modules), so
//! the code and the URI fit an 80×24 terminal together.
//!
//! Layout (all integers big-endian): `0x02` (format) ‖ gateway key id (32 bytes) ‖ code id
//! (6 bytes) ‖ code secret (16 bytes) ‖ expiry (u32, seconds since the epoch), then items, each a
//! tag byte and its value:
//! `0x04` IPv4 address (4 bytes) and port (2), `0x06` IPv6 address (16) and port (2), `0x0e` host
//! name: length (1), the name, port (2) — tunnel addresses, in order; `0x10` relay URL: length
//! (1), the URL; `0x11` the certificate pin (32 bytes) of the relay just before it; `0x12` the
//! gateway's raw public key (32); `0x13` the pairing relay ticket's signature (64).
//!
//! The suggested device name stays out: the gateway recorded it with the code and gives it to the
//! device that redeems the code, so the QR code does not grow with it.
//!
//! Unknown tags end parsing with an error (an item's length is not known to an older claw).
//! URIs that cannot be packed (an expiry past 2106) are printed in the long form.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use data_encoding::BASE32_NOPAD;

use crate::pairing::{PairingUri, RelayRef, UriError};

/// The compact URI's prefix, as printed (parsing ignores case).
pub const PREFIX: &str = "CLAW://P/";

const FORMAT: u8 = 2;
const TAG_V4: u8 = 0x04;
const TAG_V6: u8 = 0x06;
const TAG_NAME_ADDR: u8 = 0x0e;
const TAG_RELAY: u8 = 0x10;
const TAG_RELAY_PIN: u8 = 0x11;
const TAG_GATEWAY_KEY: u8 = 0x12;
const TAG_RELAY_SIG: u8 = 0x13;

/// Packs `u` (all but its `name`); `None` when it cannot be packed (then print
/// [`PairingUri::to_uri`]).
pub fn encode(u: &PairingUri) -> Option<String> {
    let mut b = Vec::with_capacity(96);
    b.push(FORMAT);
    b.extend(hex32(&u.gateway_id)?);
    let (id, secret) = claw_proto::pairing_code::split(&u.code)?;
    b.extend(URL_SAFE_NO_PAD.decode(id).ok().filter(|v| v.len() == 6)?);
    b.extend(
        URL_SAFE_NO_PAD
            .decode(secret)
            .ok()
            .filter(|v| v.len() == 16)?,
    );
    b.extend(u32::try_from(u.expires_at).ok()?.to_be_bytes());
    for a in &u.addrs {
        let (host, port) = a.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match bare.parse::<IpAddr>() {
            // Only the canonical spelling packs: the long form keeps any other byte-exact.
            Ok(IpAddr::V4(ip)) if a == &format!("{ip}:{port}") => {
                b.push(TAG_V4);
                b.extend(ip.octets());
            }
            Ok(IpAddr::V6(ip)) if a == &format!("[{ip}]:{port}") => {
                b.push(TAG_V6);
                b.extend(ip.octets());
            }
            Ok(_) => return None,
            Err(_) => {
                b.push(TAG_NAME_ADDR);
                b.push(u8::try_from(host.len()).ok()?);
                b.extend(host.as_bytes());
            }
        }
        b.extend(port.to_be_bytes());
    }
    for r in &u.relays {
        b.push(TAG_RELAY);
        b.push(u8::try_from(r.url.len()).ok()?);
        b.extend(r.url.as_bytes());
        if let Some(p) = &r.pin {
            b.push(TAG_RELAY_PIN);
            b.extend(hex32(p)?);
        }
    }
    if let Some(k) = &u.gateway_key {
        b.push(TAG_GATEWAY_KEY);
        b.extend(k);
    }
    if let Some(sig) = &u.relay_sig {
        b.push(TAG_RELAY_SIG);
        b.extend(sig);
    }
    Some(format!("{PREFIX}{}", BASE32_NOPAD.encode(&b)))
}

/// True when `s` looks like a compact URI (any case).
pub fn is_compact(s: &str) -> bool {
    s.len() >= PREFIX.len()
        && s.is_char_boundary(PREFIX.len())
        && s[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
}

/// Unpacks a compact URI into its fields; [`PairingUri::parse`] validates them as it validates the
/// long form.
pub(crate) fn decode(s: &str) -> Result<PairingUri, UriError> {
    let body = s[PREFIX.len()..].to_ascii_uppercase();
    let bytes = BASE32_NOPAD
        .decode(body.as_bytes())
        .map_err(|_| UriError::Field("compact URI is not base32"))?;
    let mut r = Reader(&bytes);
    match r.u8()? {
        FORMAT => {}
        other => return Err(UriError::Version(other.to_string())),
    }
    let gateway_id: String = r.take(32)?.iter().map(|x| format!("{x:02x}")).collect();
    let id = URL_SAFE_NO_PAD.encode(r.take(6)?);
    let secret = URL_SAFE_NO_PAD.encode(r.take(16)?);
    let expires_at = u64::from(u32::from_be_bytes(r.array()?));
    let mut addrs = Vec::new();
    let mut relays: Vec<RelayRef> = Vec::new();
    let (mut gateway_key, mut relay_sig) = (None, None);
    while !r.0.is_empty() {
        match r.u8()? {
            TAG_V4 => {
                let ip = Ipv4Addr::from(r.array::<4>()?);
                addrs.push(format!("{ip}:{}", r.port()?));
            }
            TAG_V6 => {
                let ip = Ipv6Addr::from(r.array::<16>()?);
                addrs.push(format!("[{ip}]:{}", r.port()?));
            }
            TAG_NAME_ADDR => {
                let n = usize::from(r.u8()?);
                let host = std::str::from_utf8(r.take(n)?)
                    .map_err(|_| UriError::Field("addr must be host:port"))?
                    .to_string();
                addrs.push(format!("{host}:{}", r.port()?));
            }
            TAG_RELAY => {
                let n = usize::from(r.u8()?);
                let url = std::str::from_utf8(r.take(n)?)
                    .map_err(|_| UriError::Field("relay must be an http(s)://host[:port] URL"))?
                    .to_string();
                relays.push(RelayRef { url, pin: None });
            }
            TAG_RELAY_PIN => {
                let pin: String = r.take(32)?.iter().map(|x| format!("{x:02x}")).collect();
                match relays.last_mut() {
                    Some(rel) if rel.pin.is_none() => rel.pin = Some(pin),
                    _ => return Err(UriError::Field("rpin must follow its relay")),
                }
            }
            TAG_GATEWAY_KEY if gateway_key.is_none() => gateway_key = Some(r.array::<32>()?),
            TAG_RELAY_SIG if relay_sig.is_none() => relay_sig = Some(r.array::<64>()?),
            TAG_GATEWAY_KEY | TAG_RELAY_SIG => {
                return Err(UriError::Field("compact URI repeats an item"))
            }
            _ => return Err(UriError::Field("compact URI has an unknown item")),
        }
    }
    Ok(PairingUri {
        gateway_id,
        addrs,
        code: format!("{id}.{secret}"),
        expires_at,
        name: None,
        relays,
        gateway_key,
        relay_sig,
    })
}

fn hex32(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    (0..32)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// A cursor over the packed bytes; running out is a malformed URI, never a panic.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], UriError> {
        if self.0.len() < n {
            return Err(UriError::Field("compact URI is truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], UriError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, UriError> {
        Ok(self.take(1)?[0])
    }
    fn port(&mut self) -> Result<u16, UriError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(addrs: &[&str], name: Option<&str>) -> PairingUri {
        PairingUri {
            gateway_id: "0b86ae56826c65c8e50f8dfcfdd3cf6deff41e77f06e7c80838c52aa3d59e1c9".into(),
            addrs: addrs.iter().map(|s| s.to_string()).collect(),
            code: claw_gateway::auth::pairing_code::mint().code,
            expires_at: 1_800_000_000,
            name: name.map(str::to_string),
            relays: Vec::new(),
            gateway_key: None,
            relay_sig: None,
        }
    }

    /// A relay-only URI, signed by the gateway seed 7s.
    fn relayed(pin: bool) -> PairingUri {
        let seed = [7u8; 32];
        let gk = claw_mesh::ticket::public_key(&seed);
        let mut u = sample(&[], None);
        u.gateway_id = claw_proto::signature::device_id_for_key(&gk);
        u.gateway_key = Some(gk);
        u.relays = vec![RelayRef {
            url: "https://relay.example:8443".into(),
            pin: pin.then(|| "3f".repeat(32)),
        }];
        u.relay_sig =
            Some(claw_mesh::ticket::pairing_ticket(&seed, &u.code, u.expires_at).signature());
        u
    }

    #[test]
    fn a_relay_only_uri_round_trips_in_both_forms() {
        for u in [relayed(true), relayed(false)] {
            let text = encode(&u).unwrap();
            assert_eq!(PairingUri::parse(&text).unwrap(), u);
            assert_eq!(PairingUri::parse(&u.to_uri()).unwrap(), u);
            let (ticket, seed) = u.pairing_relay_credentials().unwrap();
            let t = claw_mesh::ticket::DeviceTicket::parse(&ticket).unwrap();
            t.verify(&claw_mesh::ticket::public_key(&seed), u.expires_at - 600)
                .unwrap();
        }
        // What it costs the QR code: a relay with its pin, the key and the signature.
        let text = encode(&relayed(true)).unwrap();
        assert!(text.len() < 400, "{} characters", text.len());
    }

    #[test]
    fn hostile_relay_items_get_an_error() {
        let u = relayed(true);
        let raw = BASE32_NOPAD
            .decode(&encode(&u).unwrap().as_bytes()[PREFIX.len()..])
            .unwrap();
        let head = &raw[..59];
        let gk = u.gateway_key.unwrap();
        let sig = u.relay_sig.unwrap();
        let relay = |url: &[u8]| {
            let mut v = vec![TAG_RELAY, url.len() as u8];
            v.extend(url);
            v
        };
        let key_and_sig = || {
            let mut v = vec![TAG_GATEWAY_KEY];
            v.extend(gk);
            v.push(TAG_RELAY_SIG);
            v.extend(sig);
            v
        };
        let mut bad_sig = sig;
        bad_sig[0] ^= 1;
        let cases: Vec<Vec<u8>> = vec![
            // A pin with no relay before it; two pins for one relay.
            [vec![TAG_RELAY_PIN], vec![1; 32], key_and_sig()].concat(),
            [
                relay(b"https://r:1"),
                vec![TAG_RELAY_PIN],
                vec![1; 32],
                vec![TAG_RELAY_PIN],
                vec![1; 32],
                key_and_sig(),
            ]
            .concat(),
            // Not a relay URL.
            [relay(b"ftp://r:1"), key_and_sig()].concat(),
            [relay(b"https://user:pw@r:1"), key_and_sig()].concat(),
            [relay(b"https://r:1/?q=1"), key_and_sig()].concat(),
            [relay(b"https://r :1"), key_and_sig()].concat(),
            [relay(b"https://\x1b[2J"), key_and_sig()].concat(),
            [relay(&[0xff, 0xfe]), key_and_sig()].concat(),
            // Truncated items.
            [relay(b"https://r:1"), vec![TAG_GATEWAY_KEY, 1, 2]].concat(),
            [relay(b"https://r:1"), vec![TAG_RELAY, 40, b'h']].concat(),
            // A relay without the key or the signature; a repeated key.
            relay(b"https://r:1"),
            [relay(b"https://r:1"), vec![TAG_GATEWAY_KEY], gk.to_vec()].concat(),
            [
                relay(b"https://r:1"),
                vec![TAG_GATEWAY_KEY],
                gk.to_vec(),
                key_and_sig(),
            ]
            .concat(),
            // Another key than gw's; a signature that does not verify.
            [
                relay(b"https://r:1"),
                vec![TAG_GATEWAY_KEY],
                vec![3; 32],
                vec![TAG_RELAY_SIG],
                sig.to_vec(),
            ]
            .concat(),
            [
                relay(b"https://r:1"),
                vec![TAG_GATEWAY_KEY],
                gk.to_vec(),
                vec![TAG_RELAY_SIG],
                bad_sig.to_vec(),
            ]
            .concat(),
            // Five relays.
            [
                relay(b"https://a:1"),
                relay(b"https://b:1"),
                relay(b"https://c:1"),
                relay(b"https://d:1"),
                relay(b"https://e:1"),
                key_and_sig(),
            ]
            .concat(),
        ];
        for (i, items) in cases.into_iter().enumerate() {
            let text = format!(
                "{PREFIX}{}",
                BASE32_NOPAD.encode(&[head, &items[..]].concat())
            );
            assert!(PairingUri::parse(&text).is_err(), "case {i} accepted");
        }
        // The head with a good relay item parses (so the cases above fail for their item).
        let good = [relay(b"https://r:1"), key_and_sig()].concat();
        let text = format!(
            "{PREFIX}{}",
            BASE32_NOPAD.encode(&[head, &good[..]].concat())
        );
        assert!(PairingUri::parse(&text).is_ok());
    }

    #[test]
    fn round_trips_through_parse_in_any_case() {
        for u in [
            sample(&["127.0.0.1:18790"], None),
            sample(&["127.0.0.1:18790", "[::1]:18790", "gw.example:443"], None),
        ] {
            let text = encode(&u).unwrap();
            assert!(text.starts_with(PREFIX));
            assert!(text[PREFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
            assert_eq!(PairingUri::parse(&text).unwrap(), u);
            assert_eq!(PairingUri::parse(&text.to_ascii_lowercase()).unwrap(), u);
        }
    }

    #[test]
    fn one_address_fits_a_version_5_qr_code() {
        let text = encode(&sample(&["127.0.0.1:18790"], None)).unwrap();
        assert_eq!(text.len(), 115, "{text}");
    }

    #[test]
    fn the_name_is_left_to_the_gateway() {
        let named = sample(&["127.0.0.1:18790"], Some("my phone"));
        let back = PairingUri::parse(&encode(&named).unwrap()).unwrap();
        assert_eq!(back.name, None);
        assert_eq!(back.code, named.code);
    }

    #[test]
    fn what_cannot_be_packed_is_left_to_the_long_form() {
        let mut u = sample(&["127.0.0.1:18790"], None);
        u.expires_at = u64::from(u32::MAX) + 1;
        assert_eq!(encode(&u), None);
        // A non-canonical spelling of an address would not survive packing byte for byte.
        assert!(encode(&sample(&["[::ffff:1.2.3.4]:1"], None)).is_some());
        assert_eq!(encode(&sample(&["::1:18790"], None)), None);
    }

    #[test]
    fn hostile_compact_uris_get_an_error() {
        let good = encode(&sample(&["127.0.0.1:18790"], None)).unwrap();
        let mut cases: Vec<String> = vec![
            PREFIX.into(),
            format!("{PREFIX}!!!!"),
            format!("{PREFIX}A"),
            format!("{PREFIX}{}", BASE32_NOPAD.encode(&[3u8; 60])),
            format!("{PREFIX}{}", BASE32_NOPAD.encode(&[2u8; 10])),
            format!("{good}AAAA"),
        ];
        for cut in [10, 50, 100, good.len() - 2] {
            cases.push(good[..cut].to_string());
        }
        // Valid base32 whose items are bad: zero port, empty host, control characters.
        let mut raw = BASE32_NOPAD
            .decode(&good.as_bytes()[PREFIX.len()..])
            .unwrap();
        raw.truncate(59);
        for item in [
            vec![TAG_V4, 1, 2, 3, 4, 0, 0],
            vec![TAG_NAME_ADDR, 0, 0, 80],
            vec![TAG_NAME_ADDR, 3, b'a', b' ', b'b', 0, 80],
            vec![TAG_NAME_ADDR, 2, 0x1b, b'[', 0, 80],
            vec![0x7f, 1, 2],
        ] {
            let mut b = raw.clone();
            b.extend([TAG_V4, 127, 0, 0, 1, 0x49, 0x26]);
            b.extend(item);
            cases.push(format!("{PREFIX}{}", BASE32_NOPAD.encode(&b)));
        }
        // No address at all.
        cases.push(format!("{PREFIX}{}", BASE32_NOPAD.encode(&raw)));
        for c in cases {
            assert!(PairingUri::parse(&c).is_err(), "accepted {c:?}");
        }
    }
}
