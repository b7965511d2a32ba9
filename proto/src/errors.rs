//! Every handshake rejection claw sends, with OpenClaw's error object and the WebSocket close.
//!
//! The texts and codes are OpenClaw's (as the real 2026.9.6 gateway sends them; see docs/protocol.md); claw adds
//! two reasons OpenClaw lacks — [`Rejection::DeviceTokenRotated`] and [`Rejection::DeviceRevoked`] —
//! so a client can tell whether re-pairing can help.

use serde_json::{json, Value};

use crate::fault::FaultKind;
use crate::frames::ErrorShape;
use crate::{MIN_PROBE_PROTOCOL, PROTOCOL_VERSION};

use crate::close::CloseReason;
pub use crate::close::{
    CLOSE_NORMAL, CLOSE_POLICY, CLOSE_PROTOCOL, CLOSE_SERVICE_RESTART, CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN_LATER,
};

/// A refused `connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No secret and no device identity.
    DeviceIdentityRequired,
    /// A signed device but no secret.
    TokenMissing,
    /// Wrong shared token or unknown device token.
    TokenMismatch {
        /// True when a paired device could retry with its device token.
        can_retry_with_device_token: bool,
    },
    /// A device token of an old generation, or one superseded by a per-device rotation (claw).
    DeviceTokenRotated,
    /// `--strict-device-auth`: a paired device's client through the tunnel with neither the
    /// device's token or signature nor the shared token (claw).
    StrictDeviceAuth {
        /// It sent some other secret (answered after the failure delay, like a wrong token).
        secret_presented: bool,
    },
    /// The device was revoked (claw).
    DeviceRevoked,
    /// A device token asking for scopes it was not granted.
    ScopeMismatch,
    /// Signature does not verify.
    SignatureInvalid,
    /// `signedAt` is more than two minutes from the gateway's clock.
    SignatureExpired,
    /// The proof carries no nonce.
    NonceRequired,
    /// The signed nonce is not this connection's challenge.
    NonceMismatch,
    /// `device.id` is not the SHA-256 of the public key.
    IdentityMismatch,
    /// The device must be approved first; a pending request exists.
    PairingRequired {
        /// The pending request's id.
        request_id: String,
    },
    /// The first request was not `connect`.
    FirstRequestNotConnect,
    /// No protocol version in common.
    ProtocolMismatch {
        /// The client's `minProtocol`.
        client_min: u32,
        /// The client's `maxProtocol`.
        client_max: u32,
    },
    /// Malformed `connect` params.
    InvalidParams(String),
    /// The gateway could not decide or carry out the connect because of a fault (claw): the
    /// credentials were not judged. Retryable, closed with 1013.
    Unavailable(FaultKind),
}

/// What to send for a rejection: the error object, then a close with this code and reason.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectionFrame {
    /// The `error` of the failed response.
    pub error: ErrorShape,
    /// WebSocket close code.
    pub close_code: u16,
    /// WebSocket close reason (≤ 123 bytes).
    pub close_reason: String,
}

fn auth_details(code: &str, reason: &str, can_retry: bool, next: &str) -> Value {
    json!({
        "code": code,
        "authReason": reason,
        "canRetryWithDeviceToken": can_retry,
        "recommendedNextStep": next,
    })
}

/// A device-proof rejection in OpenClaw's shape: `INVALID_REQUEST`, details `{code, reason}`,
/// close 1008 with the message.
fn device_auth(close: CloseReason, code: &str, reason: &str) -> (ErrorShape, u16, String) {
    let message = close.to_string();
    (
        ErrorShape::new("INVALID_REQUEST", &message)
            .with_details(json!({"code": code, "reason": reason})),
        CLOSE_POLICY,
        message,
    )
}

impl Rejection {
    /// True for failures that present a wrong secret; these are answered after a growing delay.
    pub fn is_bad_secret(&self) -> bool {
        matches!(
            self,
            Rejection::TokenMismatch { .. }
                | Rejection::ScopeMismatch
                | Rejection::StrictDeviceAuth {
                    secret_presented: true
                }
        )
    }

    /// A stable short name for logs and the audit trail.
    pub fn audit_name(&self) -> &'static str {
        match self {
            Rejection::DeviceIdentityRequired => "device_identity_required",
            Rejection::TokenMissing => "token_missing",
            Rejection::TokenMismatch { .. } => "token_mismatch",
            Rejection::DeviceTokenRotated => "device_token_rotated",
            Rejection::StrictDeviceAuth { .. } => "strict_device_auth",
            Rejection::DeviceRevoked => "device_revoked",
            Rejection::ScopeMismatch => "scope_mismatch",
            Rejection::SignatureInvalid => "signature_invalid",
            Rejection::SignatureExpired => "signature_expired",
            Rejection::NonceRequired => "nonce_required",
            Rejection::NonceMismatch => "nonce_mismatch",
            Rejection::IdentityMismatch => "identity_mismatch",
            Rejection::PairingRequired { .. } => "pairing_required",
            Rejection::FirstRequestNotConnect => "first_request_not_connect",
            Rejection::ProtocolMismatch { .. } => "protocol_mismatch",
            Rejection::InvalidParams(_) => "invalid_params",
            Rejection::Unavailable(_) => "unavailable",
        }
    }

    /// The error object and close for this rejection.
    pub fn frame(&self) -> RejectionFrame {
        let (error, code, reason) = match self {
            Rejection::DeviceIdentityRequired => {
                let m = CloseReason::DeviceIdentityRequired.to_string();
                (
                    ErrorShape::new("NOT_PAIRED", &m)
                        .with_details(json!({"code":"DEVICE_IDENTITY_REQUIRED"})),
                    CLOSE_POLICY,
                    m,
                )
            }
            Rejection::TokenMissing => {
                let m = CloseReason::TokenMissing.to_string();
                (
                    ErrorShape::new("INVALID_REQUEST", &m).with_details(auth_details(
                        "AUTH_TOKEN_MISSING",
                        "token_missing",
                        false,
                        "update_auth_configuration",
                    )),
                    CLOSE_POLICY,
                    m,
                )
            }
            Rejection::TokenMismatch {
                can_retry_with_device_token,
            } => {
                let m = CloseReason::TokenMismatch.to_string();
                let next = if *can_retry_with_device_token {
                    "retry_with_device_token"
                } else {
                    "update_auth_credentials"
                };
                (
                    ErrorShape::new("INVALID_REQUEST", &m).with_details(auth_details(
                        "AUTH_TOKEN_MISMATCH",
                        "token_mismatch",
                        *can_retry_with_device_token,
                        next,
                    )),
                    CLOSE_POLICY,
                    m,
                )
            }
            Rejection::StrictDeviceAuth { secret_presented } => {
                let m = format!(
                    "unauthorized: gateway token {} (strict device auth: send this paired device's token or signature)",
                    if *secret_presented { "mismatch" } else { "missing" }
                );
                (
                    ErrorShape::new("INVALID_REQUEST", &m).with_details(auth_details(
                        if *secret_presented {
                            "AUTH_TOKEN_MISMATCH"
                        } else {
                            "AUTH_TOKEN_MISSING"
                        },
                        if *secret_presented {
                            "token_mismatch"
                        } else {
                            "token_missing"
                        },
                        true,
                        "retry_with_device_token",
                    )),
                    CLOSE_POLICY,
                    m,
                )
            }
            Rejection::DeviceTokenRotated => {
                let m = CloseReason::DeviceTokenRotated.to_string();
                let mut d = auth_details(
                    "AUTH_DEVICE_TOKEN_ROTATED",
                    "device_token_rotated",
                    false,
                    "update_auth_credentials",
                );
                d["hint"] = json!("the gateway rotated its device tokens; reconnect through the claw tunnel or SSH forward (a fresh token is issued automatically), or connect once with the shared gateway token and your device key");
                d["canRepair"] = json!(true);
                (
                    ErrorShape::new("INVALID_REQUEST", &m).with_details(d),
                    CLOSE_POLICY,
                    m,
                )
            }
            Rejection::DeviceRevoked => {
                let m = CloseReason::DeviceRevoked.to_string();
                let mut d = auth_details(
                    "AUTH_DEVICE_REVOKED",
                    "device_revoked",
                    false,
                    "review_auth_configuration",
                );
                d["hint"] = json!("this device was revoked by the gateway operator; re-pairing will not help until the operator removes the revocation (`claw devices remove <id>`) and pairs it again");
                d["canRepair"] = json!(false);
                (
                    ErrorShape::new("INVALID_REQUEST", &m).with_details(d),
                    CLOSE_POLICY,
                    m,
                )
            }
            Rejection::ScopeMismatch => {
                let m = CloseReason::ScopeMismatch.to_string();
                (
                    ErrorShape::new("INVALID_REQUEST", &m).with_details(auth_details(
                        "AUTH_SCOPE_MISMATCH",
                        "scope_mismatch",
                        false,
                        "review_auth_configuration",
                    )),
                    CLOSE_POLICY,
                    m,
                )
            }
            Rejection::SignatureInvalid => {
                let m = CloseReason::SignatureInvalid.to_string();
                (
                    ErrorShape::new("INVALID_REQUEST", &m).with_details(
                        json!({"code":"DEVICE_AUTH_SIGNATURE_INVALID","reason":"device-signature"}),
                    ),
                    CLOSE_POLICY,
                    m,
                )
            }
            Rejection::SignatureExpired => device_auth(
                CloseReason::SignatureExpired,
                "DEVICE_AUTH_SIGNATURE_EXPIRED",
                "device-signature-stale",
            ),
            Rejection::NonceRequired => device_auth(
                CloseReason::NonceRequired,
                "DEVICE_AUTH_NONCE_REQUIRED",
                "device-nonce-missing",
            ),
            Rejection::NonceMismatch => {
                let m = CloseReason::NonceMismatch.to_string();
                (
                    ErrorShape::new("INVALID_REQUEST", &m).with_details(
                        json!({"code":"DEVICE_AUTH_NONCE_MISMATCH","reason":"device-nonce"}),
                    ),
                    CLOSE_POLICY,
                    m,
                )
            }
            Rejection::IdentityMismatch => {
                let m = CloseReason::IdentityMismatch.to_string();
                (
                    ErrorShape::new("INVALID_REQUEST", &m).with_details(
                        json!({"code":"DEVICE_AUTH_DEVICE_ID_MISMATCH","reason":"device-id-mismatch"}),
                    ),
                    CLOSE_POLICY,
                    m,
                )
            }
            Rejection::PairingRequired { request_id } => {
                let m = CloseReason::PairingRequired.to_string();
                let mut e = ErrorShape::new("NOT_PAIRED", &m).with_details(json!({
                    "code": "PAIRING_REQUIRED",
                    "requestId": request_id,
                    "recommendedNextStep": "wait_then_retry",
                    "pauseReconnect": false,
                }));
                e.retryable = Some(true);
                (e, CLOSE_POLICY, m)
            }
            Rejection::FirstRequestNotConnect => {
                let m = CloseReason::FirstRequestNotConnect.to_string();
                (ErrorShape::new("INVALID_REQUEST", &m), CLOSE_POLICY, m)
            }
            Rejection::ProtocolMismatch {
                client_min,
                client_max,
            } => (
                ErrorShape::new("INVALID_REQUEST", CloseReason::ProtocolMismatch.to_string())
                    .with_details(json!({
                        "code": "PROTOCOL_MISMATCH",
                        "clientMinProtocol": client_min,
                        "clientMaxProtocol": client_max,
                        "expectedProtocol": PROTOCOL_VERSION,
                        "minimumProbeProtocol": MIN_PROBE_PROTOCOL,
                    })),
                CLOSE_PROTOCOL,
                CloseReason::ProtocolMismatch.to_string(),
            ),
            Rejection::InvalidParams(why) => {
                let m = CloseReason::InvalidParams(why.clone()).to_string();
                let reason: String = m.chars().take(120).collect();
                (ErrorShape::new("INVALID_REQUEST", &m), CLOSE_POLICY, reason)
            }
            Rejection::Unavailable(fault) => {
                let reason = CloseReason::fault(*fault).to_string();
                (unavailable(*fault), CLOSE_TRY_AGAIN_LATER, reason)
            }
        };
        RejectionFrame {
            error,
            close_code: code,
            close_reason: reason,
        }
    }
}

/// The error for anything a fault stopped (a connect, a method, an admin call): retryable
/// `UNAVAILABLE` with `retryAfterMs`, the fault named in the message and in `details.fault`.
pub fn unavailable(fault: FaultKind) -> ErrorShape {
    let mut e = ErrorShape::new("UNAVAILABLE", fault.message()).with_details(json!({
        "code": "GATEWAY_UNAVAILABLE",
        "fault": fault.name(),
        "recommendedNextStep": "wait_then_retry",
        "pauseReconnect": false,
    }));
    e.retryable = Some(true);
    e.retry_after_ms = Some(fault.retry_after_ms());
    e
}

/// The error for a request that lacks a scope; the socket stays open.
pub fn missing_scope(scope: &str) -> ErrorShape {
    ErrorShape::new("FORBIDDEN", format!("missing scope: {scope}")).with_details(json!({
        "code": "MISSING_SCOPE",
        "missingScope": scope,
        "requiredScopes": [scope],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Close reasons must fit a WebSocket close frame (123 bytes of UTF-8).
    #[test]
    fn every_close_reason_fits() {
        let all = [
            Rejection::DeviceIdentityRequired,
            Rejection::TokenMissing,
            Rejection::TokenMismatch {
                can_retry_with_device_token: true,
            },
            Rejection::DeviceTokenRotated,
            Rejection::StrictDeviceAuth {
                secret_presented: true,
            },
            Rejection::StrictDeviceAuth {
                secret_presented: false,
            },
            Rejection::DeviceRevoked,
            Rejection::ScopeMismatch,
            Rejection::SignatureInvalid,
            Rejection::SignatureExpired,
            Rejection::NonceRequired,
            Rejection::NonceMismatch,
            Rejection::IdentityMismatch,
            Rejection::PairingRequired {
                request_id: "r".into(),
            },
            Rejection::FirstRequestNotConnect,
            Rejection::ProtocolMismatch {
                client_min: 99,
                client_max: 99,
            },
            Rejection::InvalidParams("x".repeat(500)),
        ];
        for r in all {
            let f = r.frame();
            assert!(f.close_reason.len() <= 123, "{r:?}");
            assert!(f.close_code == CLOSE_POLICY || f.close_code == CLOSE_PROTOCOL);
        }
    }

    /// A fault is never an auth answer: retryable `UNAVAILABLE` naming the fault, close 1013,
    /// nothing that tells a client to drop its credentials.
    #[test]
    fn faults_are_retryable_not_auth() {
        for k in [
            FaultKind::DiskFull,
            FaultKind::ReadOnly,
            FaultKind::Locked,
            FaultKind::Io,
            FaultKind::Corrupt,
            FaultKind::Internal,
        ] {
            let r = Rejection::Unavailable(k);
            assert!(!r.is_bad_secret());
            let f = r.frame();
            assert_eq!(f.close_code, CLOSE_TRY_AGAIN_LATER);
            assert!(f.close_reason.len() <= 123, "{k:?}");
            assert!(f.close_reason.contains(k.describe()));
            let v = serde_json::to_value(&f.error).unwrap();
            assert_eq!(v["code"], "UNAVAILABLE");
            assert_eq!(v["retryable"], true);
            assert_eq!(v["retryAfterMs"], k.retry_after_ms());
            assert_eq!(v["details"]["fault"], k.name());
            assert_eq!(v["details"]["recommendedNextStep"], "wait_then_retry");
            let text = v.to_string();
            assert!(
                !text.contains("AUTH_") && !text.contains("unauthorized"),
                "{text}"
            );
            assert!(text.contains("claw doctor"));
        }
    }

    /// The frames match the real gateway's transcripts byte for byte where OpenClaw defines them.
    #[test]
    fn matches_openclaw_transcripts() {
        let f = Rejection::TokenMismatch {
            can_retry_with_device_token: false,
        }
        .frame();
        let got = serde_json::to_value(&f.error).unwrap();
        let want: Value = serde_json::from_str(r#"{"code":"INVALID_REQUEST","message":"unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)","details":{"code":"AUTH_TOKEN_MISMATCH","authReason":"token_mismatch","canRetryWithDeviceToken":false,"recommendedNextStep":"update_auth_credentials"}}"#).unwrap();
        assert_eq!(got, want);
        assert_eq!(f.close_reason, "unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)");

        let f = Rejection::DeviceIdentityRequired.frame();
        let want: Value = serde_json::from_str(r#"{"code":"NOT_PAIRED","message":"device identity required","details":{"code":"DEVICE_IDENTITY_REQUIRED"}}"#).unwrap();
        assert_eq!(serde_json::to_value(&f.error).unwrap(), want);

        let f = Rejection::ProtocolMismatch {
            client_min: 99,
            client_max: 99,
        }
        .frame();
        let want: Value = serde_json::from_str(r#"{"code":"INVALID_REQUEST","message":"protocol mismatch","details":{"code":"PROTOCOL_MISMATCH","clientMinProtocol":99,"clientMaxProtocol":99,"expectedProtocol":4,"minimumProbeProtocol":3}}"#).unwrap();
        assert_eq!(serde_json::to_value(&f.error).unwrap(), want);
        assert_eq!(
            (f.close_code, f.close_reason.as_str()),
            (1002, "protocol mismatch")
        );

        let f = Rejection::ScopeMismatch.frame();
        let want: Value = serde_json::from_str(r#"{"code":"INVALID_REQUEST","message":"unauthorized: device token scope mismatch (re-pair or approve scope upgrade)","details":{"code":"AUTH_SCOPE_MISMATCH","authReason":"scope_mismatch","canRetryWithDeviceToken":false,"recommendedNextStep":"review_auth_configuration"}}"#).unwrap();
        assert_eq!(serde_json::to_value(&f.error).unwrap(), want);

        let want: Value = serde_json::from_str(r#"{"code":"FORBIDDEN","message":"missing scope: operator.pairing","details":{"code":"MISSING_SCOPE","missingScope":"operator.pairing","requiredScopes":["operator.pairing"]}}"#).unwrap();
        assert_eq!(
            serde_json::to_value(missing_scope("operator.pairing")).unwrap(),
            want
        );
    }

    #[test]
    fn claw_reasons_are_distinct() {
        assert_eq!(
            Rejection::DeviceTokenRotated.frame().close_reason,
            "unauthorized: device token rotated"
        );
        assert_eq!(
            Rejection::DeviceRevoked.frame().close_reason,
            "unauthorized: device revoked"
        );
    }

    /// The skew and nonce rejections as OpenClaw 2026.9.6's gateway sends them
    /// (`connect-device-proof`: reason `device-signature-stale` / `device-nonce-missing`).
    #[test]
    fn device_proof_rejections_match_openclaw() {
        let f = Rejection::SignatureExpired.frame();
        let want: Value = serde_json::from_str(r#"{"code":"INVALID_REQUEST","message":"device signature expired","details":{"code":"DEVICE_AUTH_SIGNATURE_EXPIRED","reason":"device-signature-stale"}}"#).unwrap();
        assert_eq!(serde_json::to_value(&f.error).unwrap(), want);
        assert_eq!(
            (f.close_code, f.close_reason.as_str()),
            (1008, "device signature expired")
        );
        let f = Rejection::NonceRequired.frame();
        let want: Value = serde_json::from_str(r#"{"code":"INVALID_REQUEST","message":"device nonce required","details":{"code":"DEVICE_AUTH_NONCE_REQUIRED","reason":"device-nonce-missing"}}"#).unwrap();
        assert_eq!(serde_json::to_value(&f.error).unwrap(), want);
    }
}
