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

pub use claw_proto::pairing_code::split;

/// A stored code, as the verdict needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    /// SHA-256 of the secret.
    pub secret_hash: [u8; 32],
    /// When it was minted (gateway clock).
    pub minted_at_ms: u64,
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
    /// The gateway's clock is now more than [`CLOCK_BACK_SLACK_MS`] before the code's minting: the
    /// clock was set back, and the code would otherwise live that much longer than it was given.
    ClockMovedBack,
    /// Redeemed before (a device paired with it).
    Used,
    /// Burned before by [`MAX_ATTEMPTS`] wrong secrets; it was never redeemed.
    Burned,
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
            Verdict::ClockMovedBack => {
                "the gateway's clock was set back since this pairing code was made; ask for a new `claw pair` code"
            }
            Verdict::Used => "pairing code was already used (a device paired with it); ask for a new `claw pair` code",
            Verdict::Burned => "pairing code was burned by too many wrong tries (it was never used); ask for a new `claw pair` code",
            Verdict::Unknown => "unknown pairing code",
        }
    }
}

/// How far the gateway's clock may stand before a code's minting and the code still count
/// (small NTP steps); beyond it the verdict is [`Verdict::ClockMovedBack`].
pub const CLOCK_BACK_SLACK_MS: u64 = 5 * 60_000;

/// Judges `secret` against the stored record at `now_ms`.
pub fn judge(rec: Option<&CodeRecord>, secret: &str, now_ms: u64) -> Verdict {
    let Some(rec) = rec else {
        return Verdict::Unknown;
    };
    // What the store knows decides the words: wrong tries used it up, or a device redeemed it.
    if rec.attempts >= MAX_ATTEMPTS {
        return Verdict::Burned;
    }
    if rec.used {
        return Verdict::Used;
    }
    if now_ms >= rec.expires_at_ms {
        return Verdict::Expired;
    }
    if now_ms.saturating_add(CLOCK_BACK_SLACK_MS) < rec.minted_at_ms {
        return Verdict::ClockMovedBack;
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
            minted_at_ms: 0,
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
            Verdict::Burned,
            "the right secret after the burn fails too, and says burned, not used"
        );
        let both = CodeRecord {
            used: true,
            ..burned
        };
        assert_eq!(judge(Some(&both), secret, 10), Verdict::Burned);
        assert!(Verdict::Burned.message().contains("never used"));
    }

    /// The wall clock jumping: the verdict is a comparison with the stored expiry, so a jump
    /// never panics or wraps. Forward past the expiry: `Expired` (the code is not burned, no
    /// attempt is counted). Backward by a small step (within the slack): still valid, one use
    /// and three tries. Backward further: `ClockMovedBack`, counting no attempt — a code must not
    /// outlive the lifetime it was given because the clock was set back days.
    #[test]
    fn clock_jumps_forward_and_back() {
        let c = mint();
        let (_, secret) = split(&c.code).unwrap();
        let minted_at = 1_700_000_000_000;
        let rec = CodeRecord {
            secret_hash: c.secret_hash,
            minted_at_ms: minted_at,
            expires_at_ms: minted_at + 600_000,
            attempts: 0,
            used: false,
        };
        for forward in [
            600_000,
            86_400_000,
            10 * 365 * 86_400_000,
            u64::MAX - minted_at,
        ] {
            assert_eq!(
                judge(Some(&rec), secret, minted_at + forward),
                Verdict::Expired
            );
            assert_eq!(
                judge(Some(&rec), "wrong", minted_at + forward),
                Verdict::Expired,
                "an expired code counts no attempt"
            );
        }
        for back in [1, CLOCK_BACK_SLACK_MS] {
            assert_eq!(judge(Some(&rec), secret, minted_at - back), Verdict::Accept);
        }
        for back in [
            CLOCK_BACK_SLACK_MS + 1,
            3_600_000,
            4 * 86_400_000,
            minted_at,
        ] {
            assert_eq!(
                judge(Some(&rec), secret, minted_at - back),
                Verdict::ClockMovedBack
            );
            assert_eq!(
                judge(Some(&rec), "wrong", minted_at - back),
                Verdict::ClockMovedBack,
                "no attempt is counted while the clock is behind"
            );
        }
    }
}

/// Properties (proptest): a pairing code with any changed character is never accepted — it is
/// malformed or names another id (unknown), or it is the right id with a wrong secret.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;

    /// What the redeeming side does with a presented code: split it, look the id up (the store
    /// holds exactly one live code, `minted`), judge the secret.
    fn redeem(minted: &NewCode, rec: &CodeRecord, presented: &str, now_ms: u64) -> Verdict {
        match split(presented) {
            None => Verdict::Unknown,
            Some((id, secret)) => judge((id == minted.id).then_some(rec), secret, now_ms),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn a_code_with_any_changed_character_is_refused(
            at in any::<Index>(),
            with in any::<char>(),
            edit in 0u8..3,
            attempts in 0..MAX_ATTEMPTS,
        ) {
            let c = mint();
            let rec = CodeRecord {
                secret_hash: c.secret_hash,
                minted_at_ms: 0,
                expires_at_ms: u64::MAX,
                attempts,
                used: false,
            };
            prop_assert_eq!(redeem(&c, &rec, &c.code, 0), Verdict::Accept);
            let mut chars: Vec<char> = c.code.chars().collect();
            match edit {
                0 => {
                    let i = at.index(chars.len());
                    if chars[i] == with {
                        return Ok(());
                    }
                    chars[i] = with;
                }
                1 => {
                    chars.remove(at.index(chars.len()));
                }
                _ => chars.insert(at.index(chars.len() + 1), with),
            }
            let modified: String = chars.into_iter().collect();
            let v = redeem(&c, &rec, &modified, 0);
            prop_assert!(
                matches!(v, Verdict::Wrong { .. } | Verdict::Unknown),
                "{:?} for a modified code",
                v
            );
        }

        #[test]
        fn split_accepts_exactly_the_code_shape(
            s in "[A-Za-z0-9_!-]{7,9}[.:][A-Za-z0-9_!-]{21,23}(\\.[a-z]{0,2})?|.{0,40}",
        ) {
            if let Some((id, secret)) = split(&s) {
                prop_assert_eq!(format!("{id}.{secret}"), s.as_str());
                prop_assert_eq!((id.len(), secret.len()), (8, 22));
                prop_assert!(id.bytes().chain(secret.bytes()).all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            }
        }

        /// No secret but the minted one is accepted, and wrong guesses burn the code.
        #[test]
        fn only_the_minted_secret_is_accepted(guess in "[A-Za-z0-9_-]{22}", attempts in 0u32..6, now in any::<u64>()) {
            let c = mint();
            let rec = CodeRecord { secret_hash: c.secret_hash, minted_at_ms: 0, expires_at_ms: u64::MAX, attempts, used: false };
            let v = judge(Some(&rec), &guess, now.min(u64::MAX - 1));
            let real = split(&c.code).unwrap().1;
            if attempts >= MAX_ATTEMPTS {
                prop_assert_eq!(v, Verdict::Burned);
            } else if guess == real {
                prop_assert_eq!(v, Verdict::Accept);
            } else {
                prop_assert_eq!(v, Verdict::Wrong { burned: attempts + 1 >= MAX_ATTEMPTS });
            }
        }
    }
}
