//! WebSocket close codes and reasons: what a gateway says when it ends a session, as one enum
//! so a renamed reason is a compile error on both sides, not a silent break of re-pairing.
//!
//! [`CloseReason`]'s `Display` is the exact text on the wire and `FromStr` reads it back; a
//! reason this version does not know (another gateway's, a newer claw's) is kept as
//! [`CloseReason::Other`], so `reason.parse::<CloseReason>()?.to_string() == reason` always.

use std::fmt;

use crate::fault::FaultKind;

/// WebSocket close code for policy violations (every auth failure).
pub const CLOSE_POLICY: u16 = 1008;
/// WebSocket close code for protocol errors (version mismatch).
pub const CLOSE_PROTOCOL: u16 = 1002;
/// WebSocket close code sent when the gateway stops or restarts.
pub const CLOSE_SERVICE_RESTART: u16 = 1012;
/// WebSocket close code for a message over the size limit.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Normal closure (non-JSON first frame, silent client).
pub const CLOSE_NORMAL: u16 = 1000;
/// WebSocket close code "try again later" (RFC 6455 registry): the gateway could not serve the
/// connect because of a fault (store full, read-only, locked); the credentials were not judged.
/// Clients treat it as transient (never as 1008's "drop your credentials").
pub const CLOSE_TRY_AGAIN_LATER: u16 = 1013;

/// Longest close reason a WebSocket close frame carries (125 bytes less the 2-byte code).
pub const MAX_CLOSE_REASON: usize = 123;

/// Why a session was closed. The texts of the fixed variants are OpenClaw's where OpenClaw has
/// the reason, claw's own otherwise (rotated, revoked, removed, the fault reasons).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// `device identity required`.
    DeviceIdentityRequired,
    /// `unauthorized: gateway token missing (…)`.
    TokenMissing,
    /// `unauthorized: gateway token mismatch (…)`.
    TokenMismatch,
    /// `unauthorized: gateway token rotated` (claw): the shared token was replaced.
    SharedTokenRotated,
    /// `unauthorized: device token rotated` (claw): re-pairing gets a fresh token.
    DeviceTokenRotated,
    /// `unauthorized: device revoked` (claw): re-pairing will not help.
    DeviceRevoked,
    /// `unauthorized: device removed (pair again)` (claw).
    DeviceRemoved,
    /// `unauthorized: device token scope mismatch (…)`.
    ScopeMismatch,
    /// `device signature invalid`.
    SignatureInvalid,
    /// `device signature expired`.
    SignatureExpired,
    /// `device nonce required`.
    NonceRequired,
    /// `device nonce mismatch`.
    NonceMismatch,
    /// `device identity mismatch`.
    IdentityMismatch,
    /// `pairing required`.
    PairingRequired,
    /// `invalid handshake: first request must be connect`.
    FirstRequestNotConnect,
    /// `protocol mismatch`.
    ProtocolMismatch,
    /// `invalid connect params: <why>` (the text after the colon, as sent: it may be cut to
    /// fit the close frame).
    InvalidParams(String),
    /// `try again later: <what>` (claw): a fault, retryable; `<what>` is
    /// [`FaultKind::describe`] for claw's gateway.
    TryAgainLater(String),
    /// `connect frame too large`.
    ConnectFrameTooLarge,
    /// `message too big`.
    MessageTooBig,
    /// `session dropped`: the gateway dropped the session's outbound queue.
    SessionDropped,
    /// `service restart`: the gateway is stopping (close code 1012).
    ServiceRestart,
    /// `slow consumer` (OpenClaw's text): the client read slower than its events and responses
    /// arrived, past the gateway's outbound backlog. claw sends it with
    /// [`CLOSE_TRY_AGAIN_LATER`] (OpenClaw uses 1008): the credentials are fine, reconnect.
    SlowConsumer,
    /// `device scopes changed` (claw): an operator changed the device's approved scopes; sent
    /// with [`CLOSE_TRY_AGAIN_LATER`] — the credentials still hold, the next connect gets the
    /// new scopes.
    ScopesChanged,
    /// Any other reason, kept as received.
    Other(String),
}

const INVALID_PARAMS: &str = "invalid connect params: ";
const TRY_AGAIN_LATER: &str = "try again later: ";

/// The fixed reasons and their texts (for `Display`, `FromStr` and the literal check).
const FIXED: &[(CloseReason, &str)] = &[
    (CloseReason::DeviceIdentityRequired, "device identity required"),
    (
        CloseReason::TokenMissing,
        "unauthorized: gateway token missing (use this gateway's gateway.auth.token or pair the device)",
    ),
    (
        CloseReason::TokenMismatch,
        "unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)",
    ),
    (CloseReason::SharedTokenRotated, "unauthorized: gateway token rotated"),
    (CloseReason::DeviceTokenRotated, "unauthorized: device token rotated"),
    (CloseReason::DeviceRevoked, "unauthorized: device revoked"),
    (CloseReason::DeviceRemoved, "unauthorized: device removed (pair again)"),
    (
        CloseReason::ScopeMismatch,
        "unauthorized: device token scope mismatch (re-pair or approve scope upgrade)",
    ),
    (CloseReason::SignatureInvalid, "device signature invalid"),
    (CloseReason::SignatureExpired, "device signature expired"),
    (CloseReason::NonceRequired, "device nonce required"),
    (CloseReason::NonceMismatch, "device nonce mismatch"),
    (CloseReason::IdentityMismatch, "device identity mismatch"),
    (CloseReason::PairingRequired, "pairing required"),
    (
        CloseReason::FirstRequestNotConnect,
        "invalid handshake: first request must be connect",
    ),
    (CloseReason::ProtocolMismatch, "protocol mismatch"),
    (CloseReason::ConnectFrameTooLarge, "connect frame too large"),
    (CloseReason::MessageTooBig, "message too big"),
    (CloseReason::SessionDropped, "session dropped"),
    (CloseReason::ServiceRestart, "service restart"),
    (CloseReason::SlowConsumer, "slow consumer"),
    (CloseReason::ScopesChanged, "device scopes changed"),
];

impl CloseReason {
    /// Every fixed reason's wire text (the variants without data). Tools that check no copy of
    /// a reason lives outside this crate read the list from here.
    pub fn fixed_texts() -> impl Iterator<Item = &'static str> {
        FIXED.iter().map(|(_, t)| *t)
    }

    /// The reason for a fault: `try again later: <describe>`.
    pub fn fault(kind: FaultKind) -> Self {
        CloseReason::TryAgainLater(kind.describe().to_string())
    }

    /// The wire text cut to [`MAX_CLOSE_REASON`] bytes at a character boundary.
    pub fn to_wire(&self) -> String {
        let mut s = self.to_string();
        if s.len() > MAX_CLOSE_REASON {
            let mut at = MAX_CLOSE_REASON;
            while !s.is_char_boundary(at) {
                at -= 1;
            }
            s.truncate(at);
        }
        s
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::InvalidParams(why) => write!(f, "{INVALID_PARAMS}{why}"),
            CloseReason::TryAgainLater(what) => write!(f, "{TRY_AGAIN_LATER}{what}"),
            CloseReason::Other(s) => f.write_str(s),
            fixed => {
                let text = FIXED
                    .iter()
                    .find(|(r, _)| r == fixed)
                    .map(|(_, t)| *t)
                    .unwrap_or_default();
                f.write_str(text)
            }
        }
    }
}

impl std::str::FromStr for CloseReason {
    type Err = std::convert::Infallible;
    /// Never fails: an unknown reason is [`CloseReason::Other`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some((r, _)) = FIXED.iter().find(|(_, t)| *t == s) {
            return Ok(r.clone());
        }
        Ok(if let Some(why) = s.strip_prefix(INVALID_PARAMS) {
            CloseReason::InvalidParams(why.to_string())
        } else if let Some(what) = s.strip_prefix(TRY_AGAIN_LATER) {
            CloseReason::TryAgainLater(what.to_string())
        } else {
            CloseReason::Other(s.to_string())
        })
    }
}

impl From<&str> for CloseReason {
    fn from(s: &str) -> Self {
        match s.parse() {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fixed_reasons_round_trip_and_fit() {
        for (r, t) in FIXED {
            assert_eq!(r.to_string(), *t);
            assert_eq!(CloseReason::from(*t), *r);
            assert!(t.len() <= MAX_CLOSE_REASON, "{t}");
        }
        let texts: std::collections::HashSet<_> = CloseReason::fixed_texts().collect();
        assert_eq!(texts.len(), FIXED.len(), "texts are distinct");
    }

    #[test]
    fn reasons_with_data_and_unknown_ones_are_kept() {
        let r = CloseReason::from("try again later: state.db is damaged");
        assert_eq!(r, CloseReason::fault(FaultKind::Corrupt));
        let r = CloseReason::from("invalid connect params: at most 32 scopes");
        assert_eq!(r, CloseReason::InvalidParams("at most 32 scopes".into()));
        let r = CloseReason::from("unauthorized: gateway token mismatch");
        assert_eq!(
            r,
            CloseReason::Other("unauthorized: gateway token mismatch".into())
        );
        assert_eq!(CloseReason::from(""), CloseReason::Other(String::new()));
    }

    #[test]
    fn to_wire_cuts_at_a_char_boundary() {
        let r = CloseReason::InvalidParams("é".repeat(100));
        let w = r.to_wire();
        assert!(w.len() <= MAX_CLOSE_REASON && w.len() >= MAX_CLOSE_REASON - 1);
        assert!(r.to_string().starts_with(&w));
    }

    proptest! {
        /// Any text parses, and prints back to itself.
        #[test]
        fn any_reason_round_trips(s in ".{0,130}") {
            let r: CloseReason = s.parse().unwrap();
            prop_assert_eq!(r.to_string(), s);
        }
    }
}
