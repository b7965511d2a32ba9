//! The connect handshake as the session runs it: the first frame (`parse_request`), its params
//! (`parse_connect`), protocol negotiation, then the decision (`auth::decide::decide`, which
//! verifies the device signature) against a fixed fake store.
//!
//! The first input byte steers: bit 0 re-signs the params with a fixed device key (so the fuzzer
//! reaches the paths after a *valid* signature, which it cannot forge), bits 1–2 pick the origin
//! (loopback, the tunnel as the fixed key, as OpenClaw's captured device1, as someone else),
//! bits 3–4 the stored state of the devices (absent, paired, revoked, paired with admin scope),
//! bits 5–6 the state of the stored device token (current, old generation, superseded, owned by
//! the other device), bit 7 the gateway clock (at the capture's `signedAt`, or one millisecond
//! past the two-minute skew, when no device proof may be accepted) and, with it, strict device
//! auth (no transport identity without a token or signature; transport identity involves no
//! clock, so pairing the two loses no path). The rest is the frame. The fake store's devices are the fixed key and the
//! device of the real OpenClaw capture (`openclaw-wire.txt`), so the captured signed connects
//! verify against the captured nonce.
#![no_main]

use std::sync::LazyLock;

use claw_gateway::auth::decide::{
    decide, Accept, AuthInput, Decision, DeviceAction, DeviceRecord, Origin, TokenRecord,
};
use claw_gateway::auth::device_key::DeviceKey;
use claw_gateway::auth::scopes::is_subset;
use claw_gateway::auth::secrets::{mint_device_token, secrets_equal, token_hash};
use claw_gateway::auth::signature::{verify_device, SIGNATURE_SKEW_MS};
use claw_gateway::protocol::connect::{negotiate_protocol, parse_connect, MAX_FIELD_LEN};
use claw_gateway::protocol::frames::{parse_request, MAX_PREAUTH_PAYLOAD};
use claw_gateway::protocol::hello::AuthMethod;
use libfuzzer_sys::fuzz_target;

/// The shared token and challenge of the real capture.
const SHARED: &str = "tok-A-123456";
const NONCE: &str = "84a3b6c4-a85c-439f-9de1-ddac63a9f12c";
const SIGNED_AT: u64 = 1_795_560_005_454;
/// OpenClaw's device1 (scripts/device-identity.json in the capture).
const DEVICE1: &str = "0b86ae56826c65c8e50f8dfcfdd3cf6deff41e77f06e7c80838c52aa3d59e1c9";
const GENERATION: u64 = 2;

static KEY: LazyLock<DeviceKey> = LazyLock::new(|| DeviceKey::from_seed([7; 32]));
/// The one device token in the fake store (also in the seed corpus).
static DEV_TOKEN: LazyLock<String> =
    LazyLock::new(|| mint_device_token(&[9; 32], &KEY.device_id(), "operator", 1, b"salt"));

fn scopes(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok(req) = parse_request(text, MAX_PREAUTH_PAYLOAD) else {
        return;
    };
    let Ok(mut p) = parse_connect(&req.params) else {
        return;
    };
    // parse_connect's bounds.
    assert!(p.scopes.len() <= 32);
    assert!(p.role.len() <= MAX_FIELD_LEN && !p.role.is_empty());
    if let Some(v) = negotiate_protocol(p.min_protocol, p.max_protocol, &p.client.mode) {
        assert!(p.min_protocol <= v && v <= p.max_protocol && (v == 4 || v == 3));
    }

    let now_ms = if ctl & 0x80 != 0 {
        SIGNED_AT + SIGNATURE_SKEW_MS + 1
    } else {
        SIGNED_AT
    };
    if ctl & 1 != 0 {
        let proof = KEY.prove(&p, NONCE, SIGNED_AT);
        assert_eq!(
            verify_device(&p, &proof, NONCE, SIGNED_AT),
            Ok(KEY.public_key().to_vec()),
            "a proof made by the key does not verify"
        );
        p.device = Some(proof);
    }
    let key_id = KEY.device_id();
    let origin = match (ctl >> 1) & 3 {
        0 => Origin::Loopback,
        1 => Origin::quic(key_id.clone()),
        2 => Origin::quic(DEVICE1),
        _ => Origin::quic("ee".repeat(32)),
    };
    // The store: the device record found by the presented device id.
    // The device record the gateway looks up: on a tunnelled socket the transport-authenticated
    // one (a key of the client's own is a sub-identity of it), else the one a proof names.
    let presented_id = match &origin {
        Origin::Tunnel { device_id, .. } => Some(device_id.clone()),
        Origin::Loopback => p.device.as_ref().map(|d| d.id.clone()),
    };
    let device_state = (ctl >> 3) & 3;
    let device = match (&presented_id, device_state) {
        (_, 0) | (None, _) => None,
        (Some(id), s) if *id == key_id || id == DEVICE1 => Some(DeviceRecord {
            device_id: id.clone(),
            scopes: if s == 3 {
                scopes(&["operator.admin"])
            } else {
                scopes(&["operator.read", "operator.pairing"])
            },
            revoked: s == 2,
        }),
        _ => None,
    };
    // The token record found by the hash of the presented secret.
    let token_state = (ctl >> 5) & 3;
    let token = p
        .secret()
        .filter(|s| token_hash(s) == token_hash(&DEV_TOKEN))
        .map(|_| TokenRecord {
            device_id: if token_state == 3 {
                DEVICE1.to_string()
            } else {
                key_id.clone()
            },
            role: "operator".into(),
            scopes: scopes(&["operator.read", "operator.pairing"]),
            generation: if token_state == 1 {
                GENERATION - 1
            } else {
                GENERATION
            },
            serial: 1,
            superseded: token_state == 2,
            issued_at_ms: 0,
        });

    let d = decide(&AuthInput {
        params: &p,
        nonce: NONCE,
        origin: &origin,
        shared_token: SHARED,
        generation: GENERATION,
        device: device.as_ref(),
        token: token.as_ref(),
        now_ms,
        transport_identity: ctl & 0x80 == 0,
    });

    // Invariants of every decision.
    let verified = |id: &str| {
        p.device.as_ref().is_some_and(|proof| {
            proof.id == id
                && proof.signed_at.abs_diff(now_ms) <= SIGNATURE_SKEW_MS
                && verify_device(&p, proof, NONCE, now_ms).is_ok()
        })
    };
    let tunnel_id = match &origin {
        Origin::Tunnel { device_id, .. } => Some(device_id.as_str()),
        Origin::Loopback => None,
    };
    match &d {
        Decision::Accept(Accept {
            method,
            role,
            scopes: granted,
            device_id,
            action,
        }) => {
            assert_eq!(role, &p.role);
            if *method == AuthMethod::Transport {
                // Transport identity: a tunnelled socket of a known, unrevoked device, granted no
                // more than that device holds; never in strict mode. Without a device proof it
                // presented no shared token; with a proof of another key, that key is a verified
                // sub-identity of the device (whatever secret it sent).
                let id = device_id
                    .as_deref()
                    .expect("transport auth without a device");
                assert_eq!(tunnel_id, Some(id));
                assert!(ctl & 0x80 == 0, "transport auth in strict mode");
                let r = device
                    .as_ref()
                    .filter(|r| r.device_id == id)
                    .expect("unknown device");
                assert!(!r.revoked, "accepted a revoked device");
                assert!(is_subset(granted, &r.scopes) && is_subset(granted, &p.scopes));
                match (&p.device, action) {
                    (None, DeviceAction::None) => {
                        assert!(!secrets_equal(p.secret().unwrap_or(""), SHARED));
                    }
                    (Some(proof), DeviceAction::SubIdentity { key_id }) => {
                        assert_eq!(&proof.id, key_id);
                        assert_ne!(key_id, id, "a device as its own sub-identity");
                        assert!(verified(key_id), "an unverified sub-identity");
                    }
                    (proof, other) => {
                        panic!(
                            "transport auth with action {other:?} (proof: {})",
                            proof.is_some()
                        )
                    }
                }
                return;
            }
            assert_eq!(granted, &p.scopes);
            if let Some(id) = device_id {
                assert!(verified(id), "accepted an unverified device");
                assert!(
                    tunnel_id.is_none_or(|t| t == id),
                    "tunnel identity mismatch"
                );
                let rec = device.as_ref().filter(|r| &r.device_id == id);
                assert!(!rec.is_some_and(|r| r.revoked), "accepted a revoked device");
            } else {
                assert!(p.device.is_none());
            }
            match method {
                AuthMethod::Token => {
                    assert!(secrets_equal(p.secret().unwrap_or(""), SHARED));
                }
                AuthMethod::Transport => unreachable!("checked above"),
                AuthMethod::DeviceToken => {
                    let id = device_id
                        .as_deref()
                        .expect("device-token auth without a device");
                    let rec = device.as_ref().filter(|r| r.device_id == id);
                    match action {
                        DeviceAction::Keep => {
                            let t = token.as_ref().expect("kept a token that is not stored");
                            assert_eq!(t.device_id, id);
                            assert!(!t.superseded && t.generation == GENERATION);
                            assert!(is_subset(&p.scopes, &t.scopes));
                            assert!(rec.is_some());
                        }
                        DeviceAction::RepairOverTunnel => {
                            assert_eq!(tunnel_id, Some(id), "re-paired off the tunnel");
                            let r = rec.expect("re-paired an unknown device");
                            assert!(is_subset(&p.scopes, &r.scopes), "re-pair widened scopes");
                        }
                        other => panic!("device-token auth with action {other:?}"),
                    }
                }
            }
        }
        Decision::NeedsApproval { device_id } => {
            assert!(verified(device_id));
            assert_eq!(tunnel_id, Some(device_id.as_str()));
            assert!(secrets_equal(p.secret().unwrap_or(""), SHARED));
        }
        Decision::Reject(_) => {}
    }
});
