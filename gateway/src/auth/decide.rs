//! The connect decision: given the parsed `connect`, the challenge, where the socket came from and
//! what the store knows, accept (and how) or reject (and why). No IO: the shell looks the device
//! and the presented token up first and carries out the decision afterwards.

use super::scopes;
use super::secrets::secrets_equal;
use super::signature::verify_device;
use crate::protocol::connect::ConnectParams;
use crate::protocol::errors::Rejection;
use crate::protocol::hello::AuthMethod;

/// Where a WebSocket came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A direct TCP connection on loopback.
    Loopback,
    /// A connection carried by claw's QUIC tunnel or SSH forward; the device id comes from the
    /// transport's own authentication (TLS client key, SSH public key), never from the client.
    /// Both are trusted alike; `via` only says which one (audit, status).
    Tunnel {
        /// The transport-authenticated device id.
        device_id: String,
        /// Which transport carried it.
        via: Via,
    },
}

/// The remote transport a tunnelled socket came by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// claw's QUIC tunnel (directly or through a relay).
    Quic,
    /// The SSH forward.
    Ssh,
}

impl Origin {
    /// A socket of the QUIC tunnel, authenticated as `device_id`.
    pub fn quic(device_id: impl Into<String>) -> Self {
        Origin::Tunnel {
            device_id: device_id.into(),
            via: Via::Quic,
        }
    }

    /// A socket of the SSH forward, authenticated as `device_id`.
    pub fn ssh(device_id: impl Into<String>) -> Self {
        Origin::Tunnel {
            device_id: device_id.into(),
            via: Via::Ssh,
        }
    }

    /// How the audit log and the logs name where a socket came from: `loopback`, `tunnel`
    /// (QUIC) or `ssh`.
    pub fn audit_name(&self) -> &'static str {
        match self {
            Origin::Loopback => "loopback",
            Origin::Tunnel { via: Via::Quic, .. } => "tunnel",
            Origin::Tunnel { via: Via::Ssh, .. } => "ssh",
        }
    }
}

/// A paired device as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Device id.
    pub device_id: String,
    /// Approved scopes.
    pub scopes: Vec<String>,
    /// Revoked devices are refused everywhere.
    pub revoked: bool,
}

/// A device token's record, found by the hash of the presented secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Owner.
    pub device_id: String,
    /// Role it was issued for.
    pub role: String,
    /// Scopes it grants.
    pub scopes: Vec<String>,
    /// Root generation it was minted under.
    pub generation: u64,
    /// Per-device serial it was minted with.
    pub serial: u64,
    /// Replaced by a per-device rotation.
    pub superseded: bool,
    /// When it was issued.
    pub issued_at_ms: u64,
}

/// The inputs of a decision.
#[derive(Debug, Clone)]
pub struct AuthInput<'a> {
    /// Parsed connect params.
    pub params: &'a ConnectParams,
    /// This connection's challenge nonce.
    pub nonce: &'a str,
    /// Where the socket came from.
    pub origin: &'a Origin,
    /// The shared gateway token.
    pub shared_token: &'a str,
    /// The current root generation.
    pub generation: u64,
    /// The store's record for `params.device.id`, or — with no device proof on a tunnelled
    /// socket — for the transport-authenticated device, if any.
    pub device: Option<&'a DeviceRecord>,
    /// The store's record for the hash of the presented secret, if any.
    pub token: Option<&'a TokenRecord>,
    /// The gateway's clock (ms since the epoch): a device's `signedAt` must be near it.
    pub now_ms: u64,
    /// Whether a tunnelled socket's transport identity alone is a credential (the default);
    /// `false` with `claw gateway run --strict-device-auth`.
    pub transport_identity: bool,
}

/// What to do with the device after accepting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceAction {
    /// No device involved, or nothing to record.
    None,
    /// A new device on loopback with the shared token: pair it silently and issue a token.
    PairSilently,
    /// A known device with the shared token: hand it its current token (minting one for the
    /// current generation if it has none), widening its scopes to what it asked for.
    Refresh,
    /// A known device through the tunnel with a stale token: issue a fresh token (re-pair).
    RepairOverTunnel,
    /// A valid device token: hand the same token back.
    Keep,
    /// A client that signed with a key of its own through device D's tunnel or SSH forward
    /// (`openclaw node run`, a CLI with its own identity on the device): a sub-identity of D,
    /// recorded under D (`key_id` is the client's key), with D's scopes at most and no token.
    SubIdentity {
        /// The id of the client's own key (what its proof names).
        key_id: String,
    },
}

/// An accepted connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accept {
    /// How it authenticated (`hello-ok.auth.method`).
    pub method: AuthMethod,
    /// Role.
    pub role: String,
    /// Effective scopes.
    pub scopes: Vec<String>,
    /// The verified device id, if a device proof was presented.
    pub device_id: Option<String>,
    /// What to do with the device record.
    pub action: DeviceAction,
}

/// The outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let it in.
    Accept(Accept),
    /// Refuse with this reason.
    Reject(Rejection),
    /// An unknown device from outside loopback: record a pending pairing request, then refuse
    /// with [`Rejection::PairingRequired`].
    NeedsApproval {
        /// The verified device id.
        device_id: String,
    },
}

/// Decides a connect. Checks run in OpenClaw's order: device proof, then the secret.
pub fn decide(input: &AuthInput<'_>) -> Decision {
    let p = input.params;
    let device_id = match &p.device {
        Some(proof) => match verify_device(p, proof, input.nonce, input.now_ms) {
            Ok(_) => Some(proof.id.clone()),
            Err(r) => return Decision::Reject(r),
        },
        None => None,
    };
    // A tunnelled socket is the device the transport authenticated, and nobody else: a key of
    // the client's own is a sub-identity of that device (strict mode: refused).
    if let Origin::Tunnel {
        device_id: tunnel_id,
        ..
    } = input.origin
    {
        if let Some(key_id) = device_id.as_deref().filter(|d| *d != tunnel_id) {
            return sub_identity(input, tunnel_id, key_id);
        }
    }
    let known = input
        .device
        .filter(|d| Some(&d.device_id) == device_id.as_ref());
    if known.is_some_and(|d| d.revoked) {
        return Decision::Reject(Rejection::DeviceRevoked);
    }
    if let Some(accept) = transport_identity(input, device_id.as_deref()) {
        return accept;
    }
    if let Some(reject) = strict_tunnel(input, device_id.as_deref()) {
        return reject;
    }

    let Some(secret) = p.secret() else {
        // Through the tunnel or SSH forward the transport already proved the key; a paired
        // device that signs with it gets its token without presenting one (first contact of a
        // device paired by `claw devices add-ssh-key`, or one that lost its token).
        if let (Origin::Tunnel { .. }, Some(id), Some(d)) = (input.origin, &device_id, known) {
            if scopes::is_subset(&p.scopes, &d.scopes) {
                return Decision::Accept(Accept {
                    method: AuthMethod::DeviceToken,
                    role: p.role.clone(),
                    scopes: p.scopes.clone(),
                    device_id: Some(id.clone()),
                    action: DeviceAction::RepairOverTunnel,
                });
            }
        }
        return Decision::Reject(if device_id.is_some() {
            Rejection::TokenMissing
        } else {
            Rejection::DeviceIdentityRequired
        });
    };

    if secrets_equal(secret, input.shared_token) {
        let action = match (&device_id, known, input.origin) {
            (None, _, _) => DeviceAction::None,
            (Some(_), Some(_), _) => DeviceAction::Refresh,
            (Some(_), None, Origin::Loopback) => DeviceAction::PairSilently,
            (Some(id), None, Origin::Tunnel { .. }) => {
                return Decision::NeedsApproval {
                    device_id: id.clone(),
                }
            }
        };
        return Decision::Accept(Accept {
            method: AuthMethod::Token,
            role: p.role.clone(),
            scopes: p.scopes.clone(),
            device_id,
            action,
        });
    }

    // Not the shared token: it must be this device's token.
    let Some(rec) = input.token else {
        return Decision::Reject(Rejection::TokenMismatch {
            can_retry_with_device_token: known.is_some(),
        });
    };
    let Some(id) = device_id else {
        // OpenClaw refuses a device token presented without the device's signature.
        return Decision::Reject(Rejection::TokenMismatch {
            can_retry_with_device_token: false,
        });
    };
    if rec.device_id != id || rec.role != p.role {
        return Decision::Reject(Rejection::TokenMismatch {
            can_retry_with_device_token: known.is_some(),
        });
    }
    let Some(device) = known else {
        // The token's device was removed.
        return Decision::Reject(Rejection::TokenMismatch {
            can_retry_with_device_token: false,
        });
    };
    let stale = rec.superseded || rec.generation != input.generation;
    if stale {
        return match input.origin {
            Origin::Tunnel { .. } if scopes::is_subset(&p.scopes, &device.scopes) => {
                Decision::Accept(Accept {
                    method: AuthMethod::DeviceToken,
                    role: p.role.clone(),
                    scopes: p.scopes.clone(),
                    device_id: Some(id),
                    action: DeviceAction::RepairOverTunnel,
                })
            }
            _ => Decision::Reject(Rejection::DeviceTokenRotated),
        };
    }
    if !scopes::is_subset(&p.scopes, &rec.scopes) {
        return Decision::Reject(Rejection::ScopeMismatch);
    }
    Decision::Accept(Accept {
        method: AuthMethod::DeviceToken,
        role: p.role.clone(),
        scopes: p.scopes.clone(),
        device_id: Some(id),
        action: DeviceAction::Keep,
    })
}

/// A stock client through the tunnel or SSH forward (the real `openclaw` CLI, a node host, any
/// WebSocket client on a paired device): the transport authenticated the device's key, so that
/// identity is the credential — no token to send, none to go stale after a rotation, none to copy
/// onto the device. Applies to a socket with no device proof (a signing client takes the signed
/// path) that does not present the shared token; whatever other secret it sends (none, a stale or
/// a wrong token) is ignored. It gets the scopes it asked for that the device was approved for.
/// Off with `--strict-device-auth`, where a tunnelled client needs the device's token or
/// signature as on loopback.
fn transport_identity(input: &AuthInput<'_>, proof_id: Option<&str>) -> Option<Decision> {
    let Origin::Tunnel { device_id, .. } = input.origin else {
        return None;
    };
    let shared = input
        .params
        .secret()
        .is_some_and(|s| secrets_equal(s, input.shared_token));
    if !input.transport_identity || proof_id.is_some() || shared {
        return None;
    }
    let d = input.device.filter(|d| &d.device_id == device_id)?;
    if d.revoked {
        return Some(Decision::Reject(Rejection::DeviceRevoked));
    }
    Some(Decision::Accept(Accept {
        method: AuthMethod::Transport,
        role: input.params.role.clone(),
        scopes: scopes::granted(&input.params.scopes, &d.scopes),
        device_id: Some(device_id.clone()),
        action: DeviceAction::None,
    }))
}

/// A client key through device D's transport that is not D's key. With the transport identity
/// as the credential (the default) it is a sub-identity of D: whoever runs it got onto D's
/// tunnel port, which D's owner handed out like an `ssh -L` port, so it acts as D — D's
/// approved scopes at most whatever it asks for or presents (the shared token included: a
/// foreign key never widens D), a refusal once D is revoked or unknown, and no token of its
/// own (the transport is re-checked on every connect, so nothing can go stale). Strict mode
/// keeps OpenClaw's rule: one key per connection, the transport's ([`Rejection::IdentityMismatch`]).
fn sub_identity(input: &AuthInput<'_>, tunnel_id: &str, key_id: &str) -> Decision {
    if !input.transport_identity {
        return Decision::Reject(Rejection::IdentityMismatch);
    }
    let Some(d) = input.device.filter(|d| d.device_id == tunnel_id) else {
        return Decision::Reject(Rejection::IdentityMismatch);
    };
    if d.revoked {
        return Decision::Reject(Rejection::DeviceRevoked);
    }
    Decision::Accept(Accept {
        method: AuthMethod::Transport,
        role: input.params.role.clone(),
        scopes: scopes::granted(&input.params.scopes, &d.scopes),
        device_id: Some(tunnel_id.to_string()),
        action: DeviceAction::SubIdentity {
            key_id: key_id.to_string(),
        },
    })
}

/// With `--strict-device-auth`, a paired device's client through the tunnel that neither signs
/// nor presents the shared token nor a token of this device: refused, with a text that says what
/// strict mode wants (the device is paired; "pair the device" would point at a step already done).
fn strict_tunnel(input: &AuthInput<'_>, proof_id: Option<&str>) -> Option<Decision> {
    let Origin::Tunnel { device_id, .. } = input.origin else {
        return None;
    };
    if input.transport_identity || proof_id.is_some() {
        return None;
    }
    let secret = input.params.secret();
    if secret.is_some_and(|s| secrets_equal(s, input.shared_token))
        || input.token.is_some_and(|t| &t.device_id == device_id)
    {
        return None;
    }
    input.device.filter(|d| &d.device_id == device_id)?;
    Some(Decision::Reject(Rejection::StrictDeviceAuth {
        secret_presented: secret.is_some(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::device_key::DeviceKey;
    use crate::protocol::connect::parse_connect;

    const SHARED: &str = "shared-secret-token";
    const NONCE: &str = "nonce-1";

    fn params(token: Option<&str>, scopes: &[&str]) -> ConnectParams {
        let mut v = serde_json::json!({"minProtocol":4,"maxProtocol":4,"client":{"id":"cli","mode":"cli","platform":"linux","deviceFamily":"Linux"},"role":"operator","scopes":scopes});
        if let Some(t) = token {
            v["auth"] = serde_json::json!({"token": t});
        }
        parse_connect(&v).unwrap()
    }

    fn signed(key: &DeviceKey, token: Option<&str>, scopes: &[&str]) -> ConnectParams {
        let mut p = params(token, scopes);
        p.device = Some(key.prove(&p, NONCE, 1));
        p
    }

    fn run(
        p: &ConnectParams,
        origin: &Origin,
        dev: Option<&DeviceRecord>,
        tok: Option<&TokenRecord>,
    ) -> Decision {
        decide(&AuthInput {
            params: p,
            nonce: NONCE,
            origin,
            shared_token: SHARED,
            generation: 2,
            device: dev,
            token: tok,
            now_ms: 1,
            transport_identity: true,
        })
    }

    fn rec(key: &DeviceKey, revoked: bool) -> DeviceRecord {
        DeviceRecord {
            device_id: key.device_id(),
            scopes: vec!["operator.read".into(), "operator.pairing".into()],
            revoked,
        }
    }

    fn tok(key: &DeviceKey, generation: u64, superseded: bool) -> TokenRecord {
        TokenRecord {
            device_id: key.device_id(),
            role: "operator".into(),
            scopes: vec!["operator.read".into(), "operator.pairing".into()],
            generation,
            serial: 1,
            superseded,
            issued_at_ms: 0,
        }
    }

    fn rejected(d: Decision) -> Rejection {
        match d {
            Decision::Reject(r) => r,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    fn accepted(d: Decision) -> Accept {
        match d {
            Decision::Accept(a) => a,
            other => panic!("expected accept, got {other:?}"),
        }
    }

    #[test]
    fn shared_token_paths() {
        let l = Origin::Loopback;
        let a = accepted(run(
            &params(Some(SHARED), &["operator.read"]),
            &l,
            None,
            None,
        ));
        assert_eq!(
            (a.method, a.action),
            (AuthMethod::Token, DeviceAction::None)
        );
        assert_eq!(
            rejected(run(&params(Some("nope"), &[]), &l, None, None)),
            Rejection::TokenMismatch {
                can_retry_with_device_token: false
            }
        );
        assert_eq!(
            rejected(run(&params(None, &[]), &l, None, None)),
            Rejection::DeviceIdentityRequired
        );
        assert_eq!(
            rejected(run(&params(Some(""), &[]), &l, None, None)),
            Rejection::DeviceIdentityRequired
        );
    }

    #[test]
    fn device_paths_on_loopback() {
        let l = Origin::Loopback;
        let k = DeviceKey::generate();
        let a = accepted(run(
            &signed(&k, Some(SHARED), &["operator.read"]),
            &l,
            None,
            None,
        ));
        assert_eq!(a.action, DeviceAction::PairSilently);
        assert_eq!(a.device_id, Some(k.device_id()));
        let a = accepted(run(
            &signed(&k, Some(SHARED), &["operator.read"]),
            &l,
            Some(&rec(&k, false)),
            None,
        ));
        assert_eq!(a.action, DeviceAction::Refresh);
        assert_eq!(
            rejected(run(&signed(&k, None, &[]), &l, None, None)),
            Rejection::TokenMissing
        );
        let r = rec(&k, false);
        let t = tok(&k, 2, false);
        let a = accepted(run(
            &signed(&k, Some("dev-tok"), &["operator.read"]),
            &l,
            Some(&r),
            Some(&t),
        ));
        assert_eq!(
            (a.method, a.action),
            (AuthMethod::DeviceToken, DeviceAction::Keep)
        );
        assert_eq!(
            rejected(run(
                &signed(&k, Some("dev-tok"), &["operator.admin"]),
                &l,
                Some(&r),
                Some(&t)
            )),
            Rejection::ScopeMismatch
        );
        // Old generation or superseded: rotated, never a silent refresh on loopback.
        for stale in [tok(&k, 1, false), tok(&k, 2, true)] {
            assert_eq!(
                rejected(run(
                    &signed(&k, Some("dev-tok"), &["operator.read"]),
                    &l,
                    Some(&r),
                    Some(&stale)
                )),
                Rejection::DeviceTokenRotated
            );
        }
        // Revoked beats everything, even the shared token.
        let rv = rec(&k, true);
        assert_eq!(
            rejected(run(
                &signed(&k, Some("dev-tok"), &[]),
                &l,
                Some(&rv),
                Some(&t)
            )),
            Rejection::DeviceRevoked
        );
        assert_eq!(
            rejected(run(&signed(&k, Some(SHARED), &[]), &l, Some(&rv), None)),
            Rejection::DeviceRevoked
        );
        // Unknown token from a paired device: can retry with its device token.
        assert_eq!(
            rejected(run(&signed(&k, Some("bogus"), &[]), &l, Some(&r), None)),
            Rejection::TokenMismatch {
                can_retry_with_device_token: true
            }
        );
        // A device token without the device's signature is refused like OpenClaw does.
        assert_eq!(
            rejected(run(&params(Some("dev-tok"), &[]), &l, None, Some(&t))),
            Rejection::TokenMismatch {
                can_retry_with_device_token: false
            }
        );
        // Another device's token.
        let k2 = DeviceKey::generate();
        let r2 = rec(&k2, false);
        assert_eq!(
            rejected(run(
                &signed(&k2, Some("dev-tok"), &[]),
                &l,
                Some(&r2),
                Some(&t)
            )),
            Rejection::TokenMismatch {
                can_retry_with_device_token: true
            }
        );
    }

    #[test]
    fn tunnel_repairs_stale_tokens_only_for_its_own_device() {
        let k = DeviceKey::generate();
        let o = Origin::quic(k.device_id());
        let r = rec(&k, false);
        let stale = tok(&k, 1, false);
        let a = accepted(run(
            &signed(&k, Some("old"), &["operator.read"]),
            &o,
            Some(&r),
            Some(&stale),
        ));
        assert_eq!(a.action, DeviceAction::RepairOverTunnel);
        // Revoked devices are not re-paired.
        assert_eq!(
            rejected(run(
                &signed(&k, Some("old"), &[]),
                &o,
                Some(&rec(&k, true)),
                Some(&stale)
            )),
            Rejection::DeviceRevoked
        );
        // A re-pair never widens scopes.
        assert_eq!(
            rejected(run(
                &signed(&k, Some("old"), &["operator.admin"]),
                &o,
                Some(&r),
                Some(&stale)
            )),
            Rejection::DeviceTokenRotated
        );
        // The signed identity must be the tunnel's, or a sub-identity of a device the store knows.
        let other = Origin::quic("ff".repeat(32));
        assert_eq!(
            rejected(run(
                &signed(&k, Some("old"), &[]),
                &other,
                Some(&r),
                Some(&stale)
            )),
            Rejection::IdentityMismatch
        );
        // A paired device through the tunnel with no token at all gets one; on loopback it does not.
        let a = accepted(run(
            &signed(&k, None, &["operator.read"]),
            &o,
            Some(&r),
            None,
        ));
        assert_eq!(a.action, DeviceAction::RepairOverTunnel);
        assert_eq!(
            rejected(run(
                &signed(&k, None, &["operator.read"]),
                &Origin::Loopback,
                Some(&r),
                None
            )),
            Rejection::TokenMissing
        );
        assert_eq!(
            rejected(run(
                &signed(&k, None, &["operator.admin"]),
                &o,
                Some(&r),
                None
            )),
            Rejection::TokenMissing
        );
        // Unknown device through the tunnel with the shared token: needs approval.
        let k3 = DeviceKey::generate();
        let o3 = Origin::quic(k3.device_id());
        assert_eq!(
            run(&signed(&k3, Some(SHARED), &[]), &o3, None, None),
            Decision::NeedsApproval {
                device_id: k3.device_id()
            }
        );
    }

    /// A client signing with a key of its own through device D's tunnel (`openclaw node run`,
    /// a CLI with its own identity) is a sub-identity of D: accepted as D with D's scopes at
    /// most, whatever secret it sends; refused once D is revoked or unknown; and in strict mode
    /// refused as OpenClaw does (one key per connection).
    #[test]
    fn a_foreign_key_through_the_tunnel_is_a_sub_identity_of_the_device() {
        let d = DeviceKey::generate();
        let client = DeviceKey::generate();
        let o = Origin::quic(d.device_id());
        let r = rec(&d, false);
        let sub = DeviceAction::SubIdentity {
            key_id: client.device_id(),
        };
        // No secret, a stale or wrong token, the shared token: the same answer, D's scopes at most.
        for secret in [None, Some("stale-token"), Some(SHARED)] {
            let p = signed(&client, secret, &["operator.read", "operator.admin"]);
            let a = accepted(run(&p, &o, Some(&r), None));
            assert_eq!(a.method, AuthMethod::Transport, "{secret:?}");
            assert_eq!(a.device_id, Some(d.device_id()), "{secret:?}");
            assert_eq!(a.scopes, vec!["operator.read".to_string()], "{secret:?}");
            assert_eq!(a.action, sub, "{secret:?}");
        }
        // A token of another device presented by the foreign key changes nothing either.
        let p = signed(&client, Some("dev-tok"), &["operator.read"]);
        let a = accepted(run(&p, &o, Some(&r), Some(&tok(&client, 2, false))));
        assert_eq!((a.device_id, a.action), (Some(d.device_id()), sub.clone()));
        // D revoked: its sub-identities are refused with it.
        let p = signed(&client, None, &["operator.read"]);
        assert_eq!(
            rejected(run(&p, &o, Some(&rec(&d, true)), None)),
            Rejection::DeviceRevoked
        );
        // D unknown to the store (forgotten): nothing to be a sub-identity of.
        assert_eq!(
            rejected(run(&p, &o, None, None)),
            Rejection::IdentityMismatch
        );
        // A record of another device is not D's.
        assert_eq!(
            rejected(run(&p, &o, Some(&rec(&client, false)), None)),
            Rejection::IdentityMismatch
        );
        // Strict mode: one key per connection, the transport's.
        let strict = decide(&AuthInput {
            params: &p,
            nonce: NONCE,
            origin: &o,
            shared_token: SHARED,
            generation: 2,
            device: Some(&r),
            token: None,
            now_ms: 1,
            transport_identity: false,
        });
        assert_eq!(rejected(strict), Rejection::IdentityMismatch);
        // A bad proof is refused before anything else.
        let mut bad = signed(&client, None, &[]);
        bad.device.as_mut().unwrap().nonce = "replayed".into();
        assert_eq!(
            rejected(run(&bad, &o, Some(&r), None)),
            Rejection::NonceMismatch
        );
        // On loopback a foreign key is just an unpaired device.
        assert_eq!(
            rejected(run(&p, &Origin::Loopback, None, None)),
            Rejection::TokenMissing
        );
    }

    #[test]
    fn proof_is_checked_before_the_secret() {
        let k = DeviceKey::generate();
        let mut p = signed(&k, Some(SHARED), &[]);
        p.device.as_mut().unwrap().nonce = "replayed".into();
        assert_eq!(
            rejected(run(&p, &Origin::Loopback, None, None)),
            Rejection::NonceMismatch
        );
    }

    /// The clock is an input: the same signed connect is accepted within two minutes of its
    /// `signedAt` either way and refused (`SignatureExpired`) beyond, before the secret counts.
    #[test]
    fn signed_at_must_be_near_the_gateway_clock() {
        let k = DeviceKey::generate();
        let mut p = params(Some(SHARED), &[]);
        let signed_at = 1_795_560_005_454;
        p.device = Some(k.prove(&p, NONCE, signed_at));
        let at = |now_ms| {
            decide(&AuthInput {
                params: &p,
                nonce: NONCE,
                origin: &Origin::Loopback,
                shared_token: SHARED,
                generation: 2,
                device: None,
                token: None,
                now_ms,
                transport_identity: true,
            })
        };
        for now in [signed_at, signed_at - 120_000, signed_at + 120_000] {
            assert_eq!(accepted(at(now)).action, DeviceAction::PairSilently);
        }
        for now in [signed_at - 120_001, signed_at + 120_001, 0, u64::MAX] {
            assert_eq!(rejected(at(now)), Rejection::SignatureExpired, "{now}");
        }
    }
}
