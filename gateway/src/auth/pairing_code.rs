//! One-time pairing codes: `<id>.<secret>`, 128 random bits of secret, single use, expiring,
//! burned after [`MAX_ATTEMPTS`] wrong secrets. The store keeps only the secret's SHA-256.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use subtle::ConstantTimeEq;

use super::secrets::{random_bytes, token_hash};

/// Wrong secrets tolerated for one code id before it is burned.
pub const MAX_ATTEMPTS: u32 = 3;

/// A freshly minted code.
#[derive(Clone, PartialEq, Eq)]
pub struct NewCode {
    /// The full code to hand the device (secret: never log it).
    pub code: String,
    /// The public id part (safe to log).
    pub id: String,
    /// SHA-256 of the secret part.
    pub secret_hash: [u8; 32],
}

impl std::fmt::Debug for NewCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCode")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Mints a code: 6 random bytes of id, 16 random bytes (128 bits) of secret.
pub fn mint() -> NewCode {
    let r = random_bytes();
    let id = URL_SAFE_NO_PAD.encode(&r[..6]);
    let secret = URL_SAFE_NO_PAD.encode(&r[6..22]);
    NewCode {
        code: format!("{id}.{secret}"),
        secret_hash: token_hash(&secret),
        id,
    }
}

/// Splits `<id>.<secret>`; `None` when malformed.
pub fn split(code: &str) -> Option<(&str, &str)> {
    let (id, secret) = code.split_once('.')?;
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (ok(id, 8) && ok(secret, 22)).then_some((id, secret))
}

/// A stored code, as the verdict needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    /// SHA-256 of the secret.
    pub secret_hash: [u8; 32],
    /// Expiry.
    pub expires_at_ms: u64,
    /// Wrong secrets so far.
    pub attempts: u32,
    /// Already redeemed (or burned).
    pub used: bool,
}

/// The verdict on a presented code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Good: redeem it.
    Accept,
    /// Wrong secret; `burned` when this attempt used up the last try.
    Wrong {
        /// The code can no longer be used.
        burned: bool,
    },
    /// Past its expiry.
    Expired,
    /// Redeemed or burned before.
    Used,
    /// No such code (or malformed).
    Unknown,
}

impl Verdict {
    /// A message for the device.
    pub fn message(self) -> &'static str {
        match self {
            Verdict::Accept => "accepted",
            Verdict::Wrong { burned: false } => "pairing code is wrong",
            Verdict::Wrong { burned: true } => {
                "pairing code is wrong and now burned; ask for a new `claw pair` code"
            }
            Verdict::Expired => "pairing code expired; ask for a new `claw pair` code",
            Verdict::Used => "pairing code was already used; ask for a new `claw pair` code",
            Verdict::Unknown => "unknown pairing code",
        }
    }
}

/// Judges `secret` against the stored record at `now_ms`.
pub fn judge(rec: Option<&CodeRecord>, secret: &str, now_ms: u64) -> Verdict {
    let Some(rec) = rec else {
        return Verdict::Unknown;
    };
    if rec.used || rec.attempts >= MAX_ATTEMPTS {
        return Verdict::Used;
    }
    if now_ms >= rec.expires_at_ms {
        return Verdict::Expired;
    }
    if bool::from(token_hash(secret).ct_eq(&rec.secret_hash)) {
        Verdict::Accept
    } else {
        Verdict::Wrong {
            burned: rec.attempts + 1 >= MAX_ATTEMPTS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_128_bits_and_parse() {
        let c = mint();
        let (id, secret) = split(&c.code).unwrap();
        assert_eq!(id, c.id);
        assert_eq!(URL_SAFE_NO_PAD.decode(secret).unwrap().len(), 16);
        assert_ne!(mint().code, c.code);
        for bad in [
            "",
            ".",
            "abc",
            "abcdefgh.",
            "abcdefgh.short",
            "abcdefg!.aaaaaaaaaaaaaaaaaaaaaa",
            "abcdefgh.aaaaaaaaaaaaaaaaaaaaaa.x",
            "abcdefghaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert!(split(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn verdicts() {
        let c = mint();
        let (_, secret) = split(&c.code).unwrap();
        let rec = CodeRecord {
            secret_hash: c.secret_hash,
            expires_at_ms: 1000,
            attempts: 0,
            used: false,
        };
        assert_eq!(judge(Some(&rec), secret, 10), Verdict::Accept);
        assert_eq!(
            judge(Some(&rec), "aaaaaaaaaaaaaaaaaaaaaa", 10),
            Verdict::Wrong { burned: false }
        );
        assert_eq!(judge(Some(&rec), secret, 1000), Verdict::Expired);
        assert_eq!(judge(None, secret, 10), Verdict::Unknown);
        let used = CodeRecord {
            used: true,
            ..rec.clone()
        };
        assert_eq!(judge(Some(&used), secret, 10), Verdict::Used);
        let two = CodeRecord {
            attempts: 2,
            ..rec.clone()
        };
        assert_eq!(judge(Some(&two), "x", 10), Verdict::Wrong { burned: true });
        let burned = CodeRecord { attempts: 3, ..rec };
        assert_eq!(
            judge(Some(&burned), secret, 10),
            Verdict::Used,
            "the right secret after the burn fails too"
        );
    }
}
