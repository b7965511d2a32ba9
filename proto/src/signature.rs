//! Device identity checks as OpenClaw's gateway makes them, in its order: `device.id` is the
//! SHA-256 of the public key, `signedAt` is within [`SIGNATURE_SKEW_MS`] of the gateway's clock,
//! the nonce is this connection's challenge, and the Ed25519 signature verifies over the v3
//! payload or, failing that, the legacy v2 payload.

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::signature::{UnparsedPublicKey, ED25519};

use crate::connect::{signature_payload, signature_payload_v2, ConnectParams, DeviceProof};
use crate::errors::Rejection;

/// How far `signedAt` may be from the gateway's clock, either way (OpenClaw's
/// `DEVICE_SIGNATURE_SKEW_MS`).
pub const SIGNATURE_SKEW_MS: u64 = 120_000;

/// Which payload a device signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadVersion {
    /// `v3|…|platform|deviceFamily` (current OpenClaw clients).
    V3,
    /// `v2|…|nonce` (legacy clients: no platform or device family).
    V2,
}

pub use crate::device_id::device_id_for_key;

fn b64url(s: &str) -> Option<Vec<u8>> {
    let t = s.trim_end_matches('=');
    URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .or_else(|| URL_SAFE.decode(s).ok())
}

/// Verifies a device proof against this connection's challenge nonce at gateway time `now_ms`.
/// Returns the raw public key.
pub fn verify_device(
    params: &ConnectParams,
    device: &DeviceProof,
    challenge_nonce: &str,
    now_ms: u64,
) -> Result<Vec<u8>, Rejection> {
    verify_device_version(params, device, challenge_nonce, now_ms).map(|(key, _)| key)
}

/// [`verify_device`], also saying which payload version verified.
pub fn verify_device_version(
    params: &ConnectParams,
    device: &DeviceProof,
    challenge_nonce: &str,
    now_ms: u64,
) -> Result<(Vec<u8>, PayloadVersion), Rejection> {
    let key = b64url(&device.public_key)
        .filter(|k| k.len() == 32)
        .ok_or(Rejection::IdentityMismatch)?;
    if device_id_for_key(&key) != device.id {
        return Err(Rejection::IdentityMismatch);
    }
    if device.signed_at.abs_diff(now_ms) > SIGNATURE_SKEW_MS {
        return Err(Rejection::SignatureExpired);
    }
    // OpenClaw trims the presented nonce, compares it and uses the trimmed nonce in the payload.
    let nonce = crate::connect::js_trim(&device.nonce);
    if nonce.is_empty() {
        return Err(Rejection::NonceRequired);
    }
    if nonce != challenge_nonce {
        return Err(Rejection::NonceMismatch);
    }
    let sig = b64url(&device.signature)
        .filter(|s| s.len() == 64)
        .ok_or(Rejection::SignatureInvalid)?;
    let signed = DeviceProof {
        nonce: nonce.to_string(),
        ..device.clone()
    };
    let key_ref = UnparsedPublicKey::new(&ED25519, &key);
    let verifies = |msg: String| key_ref.verify(msg.as_bytes(), &sig).is_ok();
    let version = if verifies(signature_payload(params, &signed)) {
        PayloadVersion::V3
    } else if verifies(signature_payload_v2(params, &signed)) {
        PayloadVersion::V2
    } else {
        return Err(Rejection::SignatureInvalid);
    };
    Ok((key, version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::parse_connect;

    /// A signed connect captured from the real OpenClaw exchange (device1, scenario `device`).
    const REAL: &str = r#"{"minProtocol":4,"maxProtocol":4,"client":{"id":"cli","version":"0.0.1-probe","platform":"linux","deviceFamily":"Linux","mode":"cli"},"caps":[],"role":"operator","scopes":["operator.read","operator.admin","operator.pairing"],"auth":{"token":"tok-A-123456"},"device":{"id":"0b86ae56826c65c8e50f8dfcfdd3cf6deff41e77f06e7c80838c52aa3d59e1c9","publicKey":"yBixz1XxfNTSsDyS5wFtXftdMf_oaFSNrSySb_6OBmw","signature":"3_T_N07lGoWXxUGb0nBquGgmOe96iccAaPFSs14IChMu2cS394AZxLGHahb6OTDm3LEek-ckeurFKh-eJtQ-DA","signedAt":1795560005454,"nonce":"84a3b6c4-a85c-439f-9de1-ddac63a9f12c"}}"#;
    const REAL_NONCE: &str = "84a3b6c4-a85c-439f-9de1-ddac63a9f12c";
    const REAL_SIGNED_AT: u64 = 1_795_560_005_454;

    /// Vectors made with OpenClaw 2026.9.6's own payload builders (`buildDeviceAuthPayload`,
    /// `buildDeviceAuthPayloadV3` from its `dist/device-auth-*.mjs`) and Node's Ed25519, key seed
    /// 32 × 0x05: (payload version, client.platform, client.deviceFamily, signature). The v3 one
    /// signs platform `"  Linux x86_64 "` as `linux x86_64` and a missing family as "".
    const NODE_KEY: &str = "bnoc3Smwt4_ROvTFWY_v9O8qlxZuPKby5Pv8zYBQW_E";
    const NODE_ID: &str = "7599776c3085e3f9da0d13071eb0b4ab50fd2bf64c06dd92c2365af3a328eca3";
    const NODE_VECTORS: &[(PayloadVersion, &str, Option<&str>, &str)] = &[
        (
            PayloadVersion::V2,
            "",
            None,
            "IVCFiv8MksKqBHVlIsmx4RQWC6fM0H0iBpD7Nu1BPx1M9NoI3TwntksZ9jzNXhwFBUGmJkq0Y7p8670HMXhsDw",
        ),
        (
            PayloadVersion::V3,
            "  Linux x86_64 ",
            None,
            "bSkhctro_JDKY62ZpzlNqz1pnS7IIHoNQeS8mZV8b9Y7C7zVJmFlptYh1yoZZa-k45HXkgDxl1gPZXVrHj3iDQ",
        ),
    ];

    /// The first `connect` of OpenClaw's Control UI (openclaw 2026.9.6, headless Chromium 156,
    /// a WebCrypto Ed25519 identity), captured by `tests/ui/control-ui.mjs` (`UI_CAPTURE=`) against
    /// claw on loopback. Its token is a throwaway gateway's.
    const CONTROL_UI: &str = r#"{"minProtocol":4,"maxProtocol":4,"client":{"id":"openclaw-control-ui","version":"2026.9.6","buildId":"2026.9.6-release-eb377ac59e6c-2026-09-23T16-33-12.144Z","platform":"Linux x86_64","mode":"webchat","instanceId":"8a83f6c8-df95-45c2-b4ed-03d449980275","timeZone":"UTC"},"role":"operator","scopes":["operator.admin","operator.read","operator.write","operator.approvals","operator.questions","operator.pairing"],"device":{"id":"27d3fc32479a8cc6675c36db7e65db268463c9618889b13959dbd469875e0fd1","publicKey":"iQfkCH6SbFfM6FjD2NWbJ0IUdey5bQ4t-i0tcvmm1SY","signature":"h4openVZ7N9GLSczHJ2Y3BtiFkfmF11b0M7vHcS7ncR-3jBbfBQQmw2DrvS1lfvPeCC45J_qq2XyezV3jB_mBw","signedAt":1796165612756,"nonce":"46b790ab-09b7-4f88-a5e5-92916edb4df3"},"caps":["agent-kind","approvals","task-suggestions","terminal-offset-seq","terminal-session-metadata","terminal-upload-path-style","tool-events","inline-widgets","model-selection-policy","ui-commands","usage-refreshing"],"auth":{"token":"HKINP567eRn7njc1X2pD0YRFWfbaCsrCcAmxIhmm9v0","password":"HKINP567eRn7njc1X2pD0YRFWfbaCsrCcAmxIhmm9v0"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36","locale":"en-US"}"#;
    const CONTROL_UI_NONCE: &str = "46b790ab-09b7-4f88-a5e5-92916edb4df3";
    const CONTROL_UI_SIGNED_AT: u64 = 1796165612756;

    fn node_connect(platform: &str, family: Option<&str>, signature: &str) -> ConnectParams {
        let mut client =
            serde_json::json!({"id":"openclaw-control-ui","mode":"webchat","platform":platform});
        if let Some(f) = family {
            client["deviceFamily"] = f.into();
        }
        let v = serde_json::json!({"minProtocol":4,"maxProtocol":4,"client":client,"role":"operator",
            "scopes":["operator.admin","operator.read"],"auth":{"token":"tok-A-123456","password":"tok-A-123456"},
            "device":{"id":NODE_ID,"publicKey":NODE_KEY,"signature":signature,"signedAt":REAL_SIGNED_AT,"nonce":REAL_NONCE}});
        parse_connect(&v).unwrap()
    }

    fn check(p: &ConnectParams, nonce: &str, now: u64) -> Result<PayloadVersion, Rejection> {
        verify_device_version(p, p.device.as_ref().unwrap(), nonce, now).map(|(_, v)| v)
    }

    #[test]
    fn real_openclaw_signature_verifies() {
        let p = parse_connect(&serde_json::from_str(REAL).unwrap()).unwrap();
        assert_eq!(
            check(&p, REAL_NONCE, REAL_SIGNED_AT),
            Ok(PayloadVersion::V3)
        );
    }

    /// The browser client's real frame verifies — as the legacy v2 payload, which is why a
    /// v3-only check refused the Control UI (`DEVICE_AUTH_SIGNATURE_INVALID`) — and only within
    /// the skew of the gateway's clock.
    #[test]
    fn control_ui_connect_verifies_as_v2() {
        let p = parse_connect(&serde_json::from_str(CONTROL_UI).unwrap()).unwrap();
        assert_eq!(p.client.device_family, "");
        let t = CONTROL_UI_SIGNED_AT;
        for now in [t, t - 119_000, t + 119_000] {
            assert_eq!(check(&p, CONTROL_UI_NONCE, now), Ok(PayloadVersion::V2));
        }
        assert_eq!(
            check(&p, CONTROL_UI_NONCE, t + 121_000),
            Err(Rejection::SignatureExpired)
        );
        // v2 signs neither platform nor family, but everything else.
        let mut q = p.clone();
        q.client.platform = "Linux aarch64".into();
        assert_eq!(check(&q, CONTROL_UI_NONCE, t), Ok(PayloadVersion::V2));
        q.client.mode = "cli".into();
        assert_eq!(
            check(&q, CONTROL_UI_NONCE, t),
            Err(Rejection::SignatureInvalid)
        );
        let mut q = p.clone();
        q.scopes.retain(|s| s != "operator.admin");
        assert_eq!(
            check(&q, CONTROL_UI_NONCE, t),
            Err(Rejection::SignatureInvalid)
        );
        assert_eq!(
            check(&p, "another-challenge", t),
            Err(Rejection::NonceMismatch)
        );
    }

    /// Both payload versions verify, each only as itself: a v2 signature is not read as v3 with
    /// other metadata, and the v3 normalisation (trim, ASCII lowercase, missing = "") is the one
    /// OpenClaw signs.
    #[test]
    fn openclaw_v2_and_v3_vectors() {
        for &(version, platform, family, sig) in NODE_VECTORS {
            let p = node_connect(platform, family, sig);
            assert_eq!(
                check(&p, REAL_NONCE, REAL_SIGNED_AT),
                Ok(version),
                "{version:?}"
            );
            // v2 does not sign the platform, so any platform verifies; v3 does.
            let other = node_connect("Windows", family, sig);
            let want = match version {
                PayloadVersion::V2 => Ok(PayloadVersion::V2),
                PayloadVersion::V3 => Err(Rejection::SignatureInvalid),
            };
            assert_eq!(check(&other, REAL_NONCE, REAL_SIGNED_AT), want);
            // The signed token is auth.token; a password is not signed.
            let mut q = p.clone();
            q.auth.password = Some("other".into());
            assert_eq!(check(&q, REAL_NONCE, REAL_SIGNED_AT), Ok(version));
            q.auth.token = Some("tok-B".into());
            assert_eq!(
                check(&q, REAL_NONCE, REAL_SIGNED_AT),
                Err(Rejection::SignatureInvalid)
            );
        }
        // OpenClaw's JavaScript trim() also strips a BOM or a tab, but claw refuses control and
        // format characters in client fields before any signature is checked.
        for platform in ["\u{feff}Linux x86_64", "Linux x86_64\t"] {
            let mut v = serde_json::json!({"minProtocol":4,"maxProtocol":4,
                "client":{"id":"cli","mode":"cli","platform":platform},"role":"operator","scopes":[]});
            v["auth"] = serde_json::json!({"token": "t"});
            assert!(parse_connect(&v).is_err(), "{platform:?}");
        }
        // Case and surrounding space of the v3 metadata do not matter; inner text does.
        let (_, _, _, sig3) = NODE_VECTORS[1];
        for platform in [
            "linux x86_64",
            "LINUX X86_64",
            "   Linux x86_64  ",
            "Linux x86_64",
        ] {
            for family in [None, Some(""), Some("  ")] {
                let p = node_connect(platform, family, sig3);
                assert_eq!(
                    check(&p, REAL_NONCE, REAL_SIGNED_AT),
                    Ok(PayloadVersion::V3)
                );
            }
        }
        for (platform, family) in [("linux  x86_64", None), ("linux x86_64", Some("Linux"))] {
            let p = node_connect(platform, family, sig3);
            assert_eq!(
                check(&p, REAL_NONCE, REAL_SIGNED_AT),
                Err(Rejection::SignatureInvalid)
            );
        }
    }

    /// The signed token is `auth.token ?? auth.deviceToken ?? auth.bootstrapToken ?? ""`.
    #[test]
    fn signed_token_precedence() {
        let p = |auth: serde_json::Value| {
            parse_connect(&serde_json::json!({"minProtocol":4,"maxProtocol":4,"auth":auth}))
                .unwrap()
        };
        let cases = [
            (
                serde_json::json!({"token":"t","deviceToken":"d","bootstrapToken":"b"}),
                "t",
            ),
            (
                serde_json::json!({"deviceToken":"d","bootstrapToken":"b"}),
                "d",
            ),
            (
                serde_json::json!({"bootstrapToken":"b","password":"pw"}),
                "b",
            ),
            (serde_json::json!({"password":"pw"}), ""),
            (serde_json::json!({"token":"","deviceToken":"d"}), ""),
            (serde_json::json!({"token":null,"deviceToken":"d"}), "d"),
        ];
        for (auth, want) in cases {
            assert_eq!(p(auth.clone()).signed_token(), want, "{auth}");
        }
    }

    /// (case, connect, challenge nonce, gateway clock, expected outcome)
    type Row = (
        &'static str,
        ConnectParams,
        &'static str,
        u64,
        Result<PayloadVersion, Rejection>,
    );

    /// Each rejection, in OpenClaw's order: identity, then time, then nonce, then signature.
    #[test]
    fn rejections_table() {
        let p = parse_connect(&serde_json::from_str(REAL).unwrap()).unwrap();
        let d = p.device.clone().unwrap();
        let with = |f: &dyn Fn(&mut DeviceProof)| {
            let mut q = p.clone();
            f(q.device.as_mut().unwrap());
            q
        };
        let bad_sig = "A3mQdh1x4QZqtMtjhRnf8cA8CcQy7KH-UKi44PFVgGFT6G-Rz0eSSZMXk-GGsolHt9bjW1JwtF48L9u2v0oSBg";
        let mut scope_dropped = p.clone();
        scope_dropped.scopes.pop();
        let mut token_changed = p.clone();
        token_changed.auth.token = Some("tok-B".into());
        let t = REAL_SIGNED_AT;
        let table: Vec<Row> = vec![
            (
                "as signed",
                p.clone(),
                REAL_NONCE,
                t,
                Ok(PayloadVersion::V3),
            ),
            (
                "2 min early",
                p.clone(),
                REAL_NONCE,
                t - 120_000,
                Ok(PayloadVersion::V3),
            ),
            (
                "2 min late",
                p.clone(),
                REAL_NONCE,
                t + 120_000,
                Ok(PayloadVersion::V3),
            ),
            (
                "nonce padded",
                with(&|d| d.nonce = format!(" {REAL_NONCE}\n")),
                REAL_NONCE,
                t,
                Ok(PayloadVersion::V3),
            ),
            (
                "other challenge",
                p.clone(),
                "other-nonce",
                t,
                Err(Rejection::NonceMismatch),
            ),
            (
                "empty nonce",
                with(&|d| d.nonce = " ".into()),
                REAL_NONCE,
                t,
                Err(Rejection::NonceRequired),
            ),
            (
                "stale",
                p.clone(),
                REAL_NONCE,
                t + 120_001,
                Err(Rejection::SignatureExpired),
            ),
            (
                "from the future",
                p.clone(),
                REAL_NONCE,
                t - 120_001,
                Err(Rejection::SignatureExpired),
            ),
            (
                "stale beats nonce",
                p.clone(),
                "other-nonce",
                t + 999_999,
                Err(Rejection::SignatureExpired),
            ),
            (
                "id beats stale",
                with(&|d| d.id = format!("00{}", &d.id[2..])),
                REAL_NONCE,
                0,
                Err(Rejection::IdentityMismatch),
            ),
            (
                "bad key",
                with(&|d| d.public_key = "!!!".into()),
                REAL_NONCE,
                t,
                Err(Rejection::IdentityMismatch),
            ),
            (
                "scope dropped",
                scope_dropped,
                REAL_NONCE,
                t,
                Err(Rejection::SignatureInvalid),
            ),
            (
                "token changed",
                token_changed,
                REAL_NONCE,
                t,
                Err(Rejection::SignatureInvalid),
            ),
            (
                "signedAt changed",
                with(&|d| d.signed_at += 1),
                REAL_NONCE,
                t,
                Err(Rejection::SignatureInvalid),
            ),
            (
                "other signature",
                with(&|d| d.signature = bad_sig.into()),
                REAL_NONCE,
                t,
                Err(Rejection::SignatureInvalid),
            ),
            (
                "short signature",
                with(&|d| d.signature = "short".into()),
                REAL_NONCE,
                t,
                Err(Rejection::SignatureInvalid),
            ),
        ];
        for (name, q, nonce, now, want) in table {
            assert_eq!(check(&q, nonce, now), want, "{name}");
        }
        assert_eq!(
            verify_device(&p, &d, REAL_NONCE, t).map(|k| k.len()),
            Ok(32)
        );
    }
}

/// Properties (proptest): a device signature verifies for exactly what was signed. Change any
/// signed field of the connect, the nonce, the timestamp, the id, the key or the signature and
/// it no longer verifies.
///
/// The signed fields are OpenClaw's v3 payload: device id, `client.id`, `client.mode`, role,
/// scopes, `signedAt`, the signed token, nonce, platform and device family (the last two
/// trimmed and ASCII-lowercased, so a change of case or surrounding space alone is not a
/// change). The legacy v2 fallback must not open a way around any of them. `client.version`, instance id,
/// display name, `auth.password` and the protocol range are not signed by OpenClaw clients, so
/// they are not mutated here.
#[cfg(test)]
mod proptests {
    use super::*;
    use crate::connect::signature_payload_v2;
    use crate::connect::{js_trim, normalize_metadata, AuthParams, ClientInfo};
    use crate::device_key::DeviceKey;
    use proptest::prelude::*;
    use proptest::sample::Index;

    fn params() -> impl Strategy<Value = ConnectParams> {
        (
            ("[a-z-]{1,12}", "[a-z]{1,8}", "[a-z]{1,8}", "[A-Za-z]{1,8}"),
            "[a-z]{1,10}",
            prop::collection::vec("[a-z.]{1,20}", 0..4),
            prop::option::of("[A-Za-z0-9_-]{1,43}"),
        )
            .prop_map(|((id, mode, platform, family), role, scopes, token)| {
                ConnectParams {
                    min_protocol: 4,
                    max_protocol: 4,
                    client: ClientInfo {
                        id,
                        mode,
                        platform,
                        device_family: family,
                        ..ClientInfo::default()
                    },
                    role,
                    scopes,
                    auth: AuthParams {
                        token,
                        ..AuthParams::default()
                    },
                    device: None,
                }
            })
    }

    /// One change to a signed connect.
    #[derive(Debug, Clone)]
    enum Change {
        ClientId(String),
        Mode(String),
        Role(String),
        ReplaceScope(Index, String),
        AddScope(String),
        DropScope(Index),
        Token(String),
        Platform(String),
        DeviceFamily(String),
        /// The attacker rewrites the proof's nonce to the new challenge.
        Replay(String),
        /// The proof is presented on a connection with another challenge.
        Challenge(String),
        SignedAt(u64),
        DeviceId(Index),
        OtherKey([u8; 32]),
        SignatureBit(Index, u8),
    }

    fn change() -> impl Strategy<Value = Change> {
        let s = || ".{0,24}";
        prop_oneof![
            s().prop_map(Change::ClientId),
            s().prop_map(Change::Mode),
            s().prop_map(Change::Role),
            (any::<Index>(), s()).prop_map(|(i, v)| Change::ReplaceScope(i, v)),
            ".{1,24}".prop_map(Change::AddScope),
            any::<Index>().prop_map(Change::DropScope),
            ".{1,43}".prop_map(Change::Token),
            s().prop_map(Change::Platform),
            s().prop_map(Change::DeviceFamily),
            s().prop_map(Change::Replay),
            s().prop_map(Change::Challenge),
            any::<u64>().prop_map(Change::SignedAt),
            any::<Index>().prop_map(Change::DeviceId),
            any::<[u8; 32]>().prop_map(Change::OtherKey),
            (any::<Index>(), 0u8..8).prop_map(|(i, b)| Change::SignatureBit(i, b)),
        ]
    }

    /// Applies `c`; returns the challenge the proof is then checked against, or `None` when the
    /// change happens to be no change (a value equal to the old one).
    fn apply(
        c: &Change,
        p: &mut ConnectParams,
        d: &mut DeviceProof,
        challenge: &str,
    ) -> Option<String> {
        fn set(field: &mut String, v: &str) -> Option<()> {
            (field != v).then(|| *field = v.to_string())
        }
        match c {
            Change::ClientId(v) => set(&mut p.client.id, v)?,
            Change::Mode(v) => set(&mut p.client.mode, v)?,
            Change::Role(v) => set(&mut p.role, v)?,
            Change::ReplaceScope(i, v) => {
                if p.scopes.is_empty() {
                    return None;
                }
                let i = i.index(p.scopes.len());
                set(&mut p.scopes[i], v)?
            }
            Change::AddScope(v) => p.scopes.push(v.clone()),
            Change::DropScope(i) => {
                if p.scopes.is_empty() {
                    return None;
                }
                p.scopes.remove(i.index(p.scopes.len()));
            }
            Change::Token(v) => {
                if p.signed_token() == v {
                    return None;
                }
                p.auth.token = Some(v.clone());
            }
            Change::Platform(v) => {
                if normalize_metadata(&p.client.platform) == normalize_metadata(v) {
                    return None;
                }
                p.client.platform = v.clone();
            }
            Change::DeviceFamily(v) => {
                if normalize_metadata(&p.client.device_family) == normalize_metadata(v) {
                    return None;
                }
                p.client.device_family = v.clone();
            }
            Change::Replay(v) => {
                if js_trim(v) == js_trim(&d.nonce) {
                    return None;
                }
                d.nonce = v.clone();
                return Some(v.clone());
            }
            Change::Challenge(v) => {
                if v == challenge {
                    return None;
                }
                return Some(v.clone());
            }
            Change::SignedAt(v) => {
                if d.signed_at == *v {
                    return None;
                }
                d.signed_at = *v;
            }
            Change::DeviceId(i) => {
                let mut id = d.id.clone().into_bytes();
                let i = i.index(id.len());
                id[i] = if id[i] == b'0' { b'1' } else { b'0' };
                d.id = String::from_utf8(id).expect("hex");
            }
            Change::OtherKey(seed) => {
                // Another key, with its own matching id: the signature is not that key's.
                let other = DeviceKey::from_seed(*seed);
                if other.public_key_b64() == d.public_key {
                    return None;
                }
                d.public_key = other.public_key_b64();
                d.id = other.device_id();
            }
            Change::SignatureBit(i, bit) => {
                let mut sig = b64url(&d.signature).expect("signature is base64url");
                let i = i.index(sig.len());
                sig[i] ^= 1 << bit;
                d.signature = URL_SAFE_NO_PAD.encode(sig);
            }
        }
        Some(challenge.to_string())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn a_signature_over_any_other_payload_never_verifies(
            seed in any::<[u8; 32]>(),
            p in params(),
            nonce in "[0-9a-f-]{36}",
            ts in any::<u64>(),
            c in change(),
            legacy in any::<bool>(),
        ) {
            let key = DeviceKey::from_seed(seed);
            let mut proof = key.prove(&p, &nonce, ts);
            // A legacy client signs the v2 payload instead.
            let payload = |p: &ConnectParams, d: &DeviceProof| {
                if legacy { signature_payload_v2(p, d) } else { signature_payload(p, d) }
            };
            if legacy {
                proof.signature = URL_SAFE_NO_PAD.encode(key.sign(payload(&p, &proof).as_bytes()));
            }
            let version = if legacy { PayloadVersion::V2 } else { PayloadVersion::V3 };
            prop_assert_eq!(
                verify_device_version(&p, &proof, &nonce, ts),
                Ok((key.public_key().to_vec(), version))
            );
            // v2 does not sign the platform or device family.
            if legacy && matches!(c, Change::Platform(_) | Change::DeviceFamily(_)) {
                return Ok(());
            }
            let (mut p2, mut d2) = (p.clone(), proof.clone());
            let Some(challenge) = apply(&c, &mut p2, &mut d2, &nonce) else {
                return Ok(());
            };
            let what_was_signed = payload(&p, &proof);
            prop_assert!(
                payload(&p2, &d2) != what_was_signed || d2 != proof || challenge != nonce,
                "the change left everything as signed"
            );
            let r = verify_device(&p2, &d2, &challenge, ts);
            prop_assert!(r.is_err(), "{:?} verified after {:?}", r, c);
        }

        /// Hostile proofs (any strings) are refused with an error, never a panic.
        #[test]
        fn hostile_proofs_never_verify(
            p in params(),
            id in ".{0,70}",
            public_key in ".{0,50}|[A-Za-z0-9_-]{43}",
            signature in ".{0,90}|[A-Za-z0-9_-]{86}",
            nonce in ".{0,40}",
        ) {
            let d = DeviceProof { id, public_key, signature, signed_at: 1, nonce: nonce.clone() };
            prop_assert!(verify_device(&p, &d, &nonce, 1).is_err());
        }
    }
}
