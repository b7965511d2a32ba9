//! Error codes on the wire, in one place: `error.code` (the upper-case class) and
//! `error.details.code` (the precise reason). Code outside this crate names them through these
//! constants, never as string literals (the workspace's `tests/contracts.rs` checks), so both
//! ends change together.

/// `error.code`: malformed request or refused handshake.
pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
/// `error.code`: the device must pair (or identify) first.
pub const NOT_PAIRED: &str = "NOT_PAIRED";
/// `error.code`: a fault; retryable (`retryAfterMs`).
pub const UNAVAILABLE: &str = "UNAVAILABLE";
/// `error.code`: a scope is missing.
pub const FORBIDDEN: &str = "FORBIDDEN";
/// `error.code`: no such device, request or method.
pub const NOT_FOUND: &str = "NOT_FOUND";
/// `error.code`: the operation does not fit the current state.
pub const CONFLICT: &str = "CONFLICT";
/// `error.code` a client uses when the gateway's error object has none.
pub const UNKNOWN: &str = "UNKNOWN";

/// `details.code`: no secret presented.
pub const AUTH_TOKEN_MISSING: &str = "AUTH_TOKEN_MISSING";
/// `details.code`: wrong shared token or unknown device token.
pub const AUTH_TOKEN_MISMATCH: &str = "AUTH_TOKEN_MISMATCH";
/// `details.code` (claw): the device token was rotated; re-pairing helps.
pub const AUTH_DEVICE_TOKEN_ROTATED: &str = "AUTH_DEVICE_TOKEN_ROTATED";
/// `details.code` (claw): the device was revoked; re-pairing does not help.
pub const AUTH_DEVICE_REVOKED: &str = "AUTH_DEVICE_REVOKED";
/// `details.code`: a device token asked for scopes it was not granted.
pub const AUTH_SCOPE_MISMATCH: &str = "AUTH_SCOPE_MISMATCH";
/// `details.code`: no secret and no device identity.
pub const DEVICE_IDENTITY_REQUIRED: &str = "DEVICE_IDENTITY_REQUIRED";
/// `details.code`: the device signature does not verify.
pub const DEVICE_AUTH_SIGNATURE_INVALID: &str = "DEVICE_AUTH_SIGNATURE_INVALID";
/// `details.code`: `signedAt` too far from the gateway's clock.
pub const DEVICE_AUTH_SIGNATURE_EXPIRED: &str = "DEVICE_AUTH_SIGNATURE_EXPIRED";
/// `details.code`: the proof carries no nonce.
pub const DEVICE_AUTH_NONCE_REQUIRED: &str = "DEVICE_AUTH_NONCE_REQUIRED";
/// `details.code`: the signed nonce is not this connection's challenge.
pub const DEVICE_AUTH_NONCE_MISMATCH: &str = "DEVICE_AUTH_NONCE_MISMATCH";
/// `details.code`: `device.id` is not the SHA-256 of the public key.
pub const DEVICE_AUTH_DEVICE_ID_MISMATCH: &str = "DEVICE_AUTH_DEVICE_ID_MISMATCH";
/// `details.code`: the device waits for approval.
pub const PAIRING_REQUIRED: &str = "PAIRING_REQUIRED";
/// `details.code`: no protocol version in common.
pub const PROTOCOL_MISMATCH: &str = "PROTOCOL_MISMATCH";
/// `details.code` (claw): a fault stopped the request.
pub const GATEWAY_UNAVAILABLE: &str = "GATEWAY_UNAVAILABLE";
/// `details.code`: a request lacks a scope.
pub const MISSING_SCOPE: &str = "MISSING_SCOPE";
/// `details.code` (claw, upstream mode): the OpenClaw gateway behind claw could not serve the
/// call (down, restarting, or refusing claw); retryable.
pub const UPSTREAM_UNAVAILABLE: &str = "UPSTREAM_UNAVAILABLE";

/// Every code above (for tools that check no copy lives elsewhere).
pub const ALL: &[&str] = &[
    INVALID_REQUEST,
    NOT_PAIRED,
    UNAVAILABLE,
    FORBIDDEN,
    NOT_FOUND,
    CONFLICT,
    UNKNOWN,
    AUTH_TOKEN_MISSING,
    AUTH_TOKEN_MISMATCH,
    AUTH_DEVICE_TOKEN_ROTATED,
    AUTH_DEVICE_REVOKED,
    AUTH_SCOPE_MISMATCH,
    DEVICE_IDENTITY_REQUIRED,
    DEVICE_AUTH_SIGNATURE_INVALID,
    DEVICE_AUTH_SIGNATURE_EXPIRED,
    DEVICE_AUTH_NONCE_REQUIRED,
    DEVICE_AUTH_NONCE_MISMATCH,
    DEVICE_AUTH_DEVICE_ID_MISMATCH,
    PAIRING_REQUIRED,
    PROTOCOL_MISMATCH,
    GATEWAY_UNAVAILABLE,
    MISSING_SCOPE,
    UPSTREAM_UNAVAILABLE,
];

#[cfg(test)]
mod tests {
    use crate::errors::Rejection;
    use crate::fault::FaultKind;

    /// Every code a rejection sends is in [`super::ALL`], and every close reason it sends
    /// parses as a known [`crate::CloseReason`].
    #[test]
    fn rejections_use_only_listed_codes_and_reasons() {
        let all = [
            Rejection::DeviceIdentityRequired,
            Rejection::TokenMissing,
            Rejection::TokenMismatch {
                can_retry_with_device_token: true,
            },
            Rejection::DeviceTokenRotated,
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
                client_min: 1,
                client_max: 2,
            },
            Rejection::InvalidParams("x".into()),
            Rejection::Unavailable(FaultKind::Locked),
        ];
        for r in all {
            let f = r.frame();
            assert!(super::ALL.contains(&f.error.code.as_str()), "{r:?}");
            if let Some(d) = f.error.detail_code() {
                assert!(super::ALL.contains(&d), "{r:?}: {d}");
            }
            let reason: crate::CloseReason = f.close_reason.parse().unwrap();
            assert!(
                !matches!(reason, crate::CloseReason::Other(_)),
                "{r:?}: {}",
                f.close_reason
            );
        }
    }
}
