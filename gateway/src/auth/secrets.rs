//! Secret material: random tokens, device-token minting from the root secret, hashing and
//! constant-time comparison. Nothing here logs or formats a secret.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use subtle::ConstantTimeEq;

pub use claw_proto::device_id::hex;
pub use claw_proto::device_key::random_bytes;

/// A fresh random token: 32 bytes, base64url without padding (43 characters, like OpenClaw's).
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes())
}

/// SHA-256 of a token: what the store keeps instead of the token.
pub fn token_hash(token: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Constant-time equality of two secrets (length is not hidden; tokens have a fixed length).
pub fn secrets_equal(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Mints a device token from the root secret: HMAC-SHA256(root, domain ‖ device ‖ role ‖ serial ‖
/// salt), base64url, where `salt` is random per pairing of the device. The same inputs give the same token, so the store keeps only its hash and the
/// gateway can hand a paired device its current token again; a new root (rotation) or a new
/// serial (per-device rotation) gives an unrelated token.
pub fn mint_device_token(
    root: &[u8],
    device_id: &str,
    role: &str,
    serial: u64,
    salt: &[u8],
) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, root);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(b"claw/device-token/v1\0");
    ctx.update(device_id.as_bytes());
    ctx.update(b"\0");
    ctx.update(role.as_bytes());
    ctx.update(b"\0");
    ctx.update(&serial.to_be_bytes());
    ctx.update(salt);
    URL_SAFE_NO_PAD.encode(ctx.sign().as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_openclaw_shape_and_differ() {
        let a = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token());
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn minting_is_deterministic_and_bound_to_every_input() {
        let root = [7u8; 32];
        let t = mint_device_token(&root, "dev", "operator", 1, b"s");
        assert_eq!(t, mint_device_token(&root, "dev", "operator", 1, b"s"));
        assert_eq!(t.len(), 43);
        assert_ne!(t, mint_device_token(&[8u8; 32], "dev", "operator", 1, b"s"));
        assert_ne!(t, mint_device_token(&root, "dev2", "operator", 1, b"s"));
        assert_ne!(t, mint_device_token(&root, "dev", "node", 1, b"s"));
        assert_ne!(t, mint_device_token(&root, "dev", "operator", 2, b"s"));
        assert_ne!(t, mint_device_token(&root, "dev", "operator", 1, b"t"));
        // No ambiguity from concatenation.
        assert_ne!(
            mint_device_token(&root, "ab", "c", 1, b"s"),
            mint_device_token(&root, "a", "bc", 1, b"s")
        );
    }

    #[test]
    fn constant_time_compare() {
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
        assert!(!secrets_equal("abc", "abcd"));
        assert!(!secrets_equal("", "a"));
        assert_eq!(hex(&token_hash("x"))[..8], *"2d711642");
    }
}

/// Properties (proptest): a device token with any change is a different secret — its hash (what
/// the store looks tokens up by) differs and the constant-time comparison refuses it.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::Index;

    /// One edit of a token: replace, delete or insert a character, flip a bit of a byte, cut or
    /// extend.
    #[derive(Debug, Clone)]
    enum Edit {
        Replace(Index, char),
        Delete(Index),
        Insert(Index, char),
        FlipBit(Index, u8),
        Truncate(Index),
        Append(String),
    }

    fn edit() -> impl Strategy<Value = Edit> {
        prop_oneof![
            (any::<Index>(), any::<char>()).prop_map(|(i, c)| Edit::Replace(i, c)),
            any::<Index>().prop_map(Edit::Delete),
            (any::<Index>(), any::<char>()).prop_map(|(i, c)| Edit::Insert(i, c)),
            (any::<Index>(), 0u8..8).prop_map(|(i, b)| Edit::FlipBit(i, b)),
            any::<Index>().prop_map(Edit::Truncate),
            ".{1,8}".prop_map(Edit::Append),
        ]
    }

    /// Applies `e` to `t` (an ASCII token, as minted tokens are); `None` when the edit happens to
    /// leave it unchanged (replacing a character by itself).
    fn apply(t: &str, e: &Edit) -> Option<String> {
        let mut chars: Vec<char> = t.chars().collect();
        match e {
            Edit::Replace(i, c) => {
                let i = i.index(chars.len());
                if chars[i] == *c {
                    return None;
                }
                chars[i] = *c;
            }
            Edit::Delete(i) => {
                chars.remove(i.index(chars.len()));
            }
            Edit::Insert(i, c) => chars.insert(i.index(chars.len() + 1), *c),
            Edit::FlipBit(i, bit) => {
                let mut bytes = t.as_bytes().to_vec();
                let i = i.index(bytes.len());
                bytes[i] ^= 1 << bit;
                return Some(String::from_utf8_lossy(&bytes).into_owned());
            }
            Edit::Truncate(i) => chars.truncate(i.index(chars.len())),
            Edit::Append(s) => chars.extend(s.chars()),
        }
        Some(chars.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn a_modified_device_token_never_matches(
            root in any::<[u8; 32]>(),
            device in "[0-9a-f]{64}",
            role in prop::sample::select(&["operator", "node"][..]),
            serial in any::<u64>(),
            salt in any::<[u8; 16]>(),
            e in edit(),
        ) {
            let token = mint_device_token(&root, &device, role, serial, &salt);
            prop_assert!(secrets_equal(&token, &token));
            let Some(modified) = apply(&token, &e) else {
                return Ok(());
            };
            prop_assert_ne!(&modified, &token);
            prop_assert_ne!(token_hash(&modified), token_hash(&token));
            prop_assert!(!secrets_equal(&modified, &token));
            prop_assert!(!secrets_equal(&token, &modified));
        }

        /// Every minting input is bound: change any one and the token is unrelated.
        #[test]
        fn every_minting_input_is_bound(
            root in any::<[u8; 32]>(),
            device in "[0-9a-f]{64}",
            serial in any::<u64>(),
            salt in any::<[u8; 16]>(),
            which in 0u8..5,
            flip in any::<Index>(),
        ) {
            let t = mint_device_token(&root, &device, "operator", serial, &salt);
            let (mut root2, mut device2, mut role2, mut serial2, mut salt2) =
                (root, device.clone(), "operator", serial, salt);
            match which {
                0 => root2[flip.index(32)] ^= 1,
                1 => device2 = format!("{}{}", &device[..63], if device.ends_with('0') { '1' } else { '0' }),
                2 => role2 = "node",
                3 => serial2 = serial.wrapping_add(1),
                _ => salt2[flip.index(16)] ^= 1,
            }
            let t2 = mint_device_token(&root2, &device2, role2, serial2, &salt2);
            prop_assert_ne!(&t, &t2);
            prop_assert!(!secrets_equal(&t, &t2));
        }

        #[test]
        fn secrets_equal_is_string_equality(a in ".{0,48}", b in ".{0,48}") {
            prop_assert_eq!(secrets_equal(&a, &b), a == b);
            prop_assert!(secrets_equal(&a, &a.clone()));
        }
    }
}
