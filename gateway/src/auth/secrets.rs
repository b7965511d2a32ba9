//! Secret material: random tokens, device-token minting from the root secret, hashing and
//! constant-time comparison. Nothing here logs or formats a secret.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// 32 random bytes from the OS.
pub fn random_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the OS random source failed");
    b
}

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

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
