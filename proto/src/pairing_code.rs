//! The pairing code's format: `<id>.<secret>`, an 8-character public id and a 22-character
//! secret (6 and 16 random bytes, base64url without padding). Minting and judging codes is the
//! gateway's; both sides check the shape with [`split`].

/// Characters in the public id part.
pub const ID_LEN: usize = 8;
/// Characters in the secret part (128 bits).
pub const SECRET_LEN: usize = 22;

/// Splits `<id>.<secret>`; `None` when malformed.
pub fn split(code: &str) -> Option<(&str, &str)> {
    let (id, secret) = code.split_once('.')?;
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (ok(id, ID_LEN) && ok(secret, SECRET_LEN)).then_some((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_shape_splits() {
        let good = "AbCdEf_-.0123456789abcdefABCD-_";
        assert_eq!(split(good), Some(("AbCdEf_-", "0123456789abcdefABCD-_")));
        for bad in [
            "",
            ".",
            "AbCdEf_-",
            "AbCdEf_-.",
            "AbCdEf_.0123456789abcdefABCD-_",
            "AbCdEf_-.0123456789abcdefABCD-",
            "AbCdEf_-.0123456789abcdefABCD-_x",
            "AbCdEf_+.0123456789abcdefABCD-_",
            "AbCdEf_-.0123456789abcdefABCD-_.",
            "AbCdEf_-.0123456789abcdéfABCD-_",
        ] {
            assert_eq!(split(bad), None, "{bad:?}");
        }
    }
}
