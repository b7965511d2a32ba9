//! Strings an attacker controls (device names, client fields, SSH destinations...) on their way
//! to an operator's eyes: [`check_label`] refuses them at the server when they carry control or
//! format characters, and [`escape`] / [`Escaped`] make any string safe for a terminal or a log
//! line (a name with ESC sequences, a newline forging a log line, bidi overrides reordering what
//! the operator reads before approving).
//!
//! Forbidden ([`is_forbidden`]): C0 controls and DEL, C1 controls, bidi embeddings, overrides,
//! isolates and marks, zero-width characters and joiners, invisible operators, the BOM, line and
//! paragraph separators, interlinear annotations, tag characters and the other invisible format
//! characters (soft hyphen, Mongolian vowel separator, Hangul fillers).

use std::borrow::Cow;
use std::fmt;

/// Why a label is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// Empty.
    #[error("{what} is empty")]
    Empty {
        /// What the string is (`device name`...).
        what: &'static str,
    },
    /// Longer than allowed (bytes).
    #[error("{what} is longer than {max} bytes")]
    TooLong {
        /// What the string is.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// Carries a control or format character.
    #[error("{what} contains the control or format character U+{code:04X} at byte {at}; only printable text is accepted")]
    Forbidden {
        /// What the string is.
        what: &'static str,
        /// The code point.
        code: u32,
        /// Its byte offset.
        at: usize,
    },
}

/// True for characters that must never reach a terminal or a log line raw.
pub fn is_forbidden(c: char) -> bool {
    matches!(c as u32,
        0x00..=0x1F | 0x7F..=0x9F          // C0, DEL, C1
        | 0xAD                             // soft hyphen
        | 0x061C                           // Arabic letter mark
        | 0x115F | 0x1160 | 0x3164 | 0xFFA0 // Hangul fillers
        | 0x180E                           // Mongolian vowel separator
        | 0x200B..=0x200F                  // zero-width space/joiners, LRM, RLM
        | 0x2028..=0x202E                  // line/paragraph separators, bidi embeddings/overrides
        | 0x2060..=0x206F                  // word joiner, invisible operators, isolates, deprecated formats
        | 0xFEFF                           // BOM / zero-width no-break space
        | 0xFFF9..=0xFFFB                  // interlinear annotations
        | 0xE0000..=0xE007F                // tags
    )
}

/// Checks an operator-visible label: non-empty, at most `max` bytes, no forbidden character.
pub fn check_label(what: &'static str, s: &str, max: usize) -> Result<(), LabelError> {
    if s.is_empty() {
        return Err(LabelError::Empty { what });
    }
    if s.len() > max {
        return Err(LabelError::TooLong { what, max });
    }
    match s.char_indices().find(|(_, c)| is_forbidden(*c)) {
        Some((at, c)) => Err(LabelError::Forbidden {
            what,
            code: c as u32,
            at,
        }),
        None => Ok(()),
    }
}

/// `s` with every forbidden character written `\u{XXXX}` and every backslash doubled, so the
/// result is one printable line and no escape in it can be forged by the input. Borrowed when
/// there is nothing to escape.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c == '\\' || is_forbidden(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if is_forbidden(c) {
            out.push_str(&format!("\\u{{{:04x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Displays (and debugs) a string escaped with [`escape`]: for tracing fields
/// (`name = %Escaped(&name)`) and CLI output.
#[derive(Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(self.0))
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", escape(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_labels_are_refused_with_the_character_named() {
        for (s, code) in [
            ("evil\u{1b}[2Jname", 0x1b),
            ("line\nforged", 0x0a),
            ("cr\rback", 0x0d),
            ("nul\0", 0),
            ("c1\u{9b}31m", 0x9b),
            ("bidi\u{202e}gnp.exe", 0x202e),
            ("iso\u{2066}late", 0x2066),
            ("zw\u{200b}sp", 0x200b),
            ("bom\u{feff}", 0xfeff),
            ("ls\u{2028}", 0x2028),
            ("tag\u{e0041}", 0xe0041),
            ("del\u{7f}", 0x7f),
        ] {
            match check_label("device name", s, 64) {
                Err(LabelError::Forbidden { code: c, .. }) => assert_eq!(c, code, "{s:?}"),
                other => panic!("{s:?}: {other:?}"),
            }
        }
        assert!(check_label("device name", "Ana's phone — 📱 Ünïcödé", 64).is_ok());
        assert_eq!(
            check_label("device name", "", 64),
            Err(LabelError::Empty {
                what: "device name"
            })
        );
        assert!(matches!(
            check_label("device name", &"x".repeat(65), 64),
            Err(LabelError::TooLong { .. })
        ));
        let e = check_label("device name", "a\u{1b}b", 64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("U+001B") && e.contains("byte 1"), "{e}");
    }

    #[test]
    fn escaping_leaves_one_printable_line_and_cannot_be_forged() {
        assert!(matches!(escape("plain name"), Cow::Borrowed(_)));
        assert_eq!(escape("a\nINFO approved"), "a\\u{000a}INFO approved");
        assert_eq!(escape("\u{1b}[31m"), "\\u{001b}[31m");
        assert_eq!(escape("\u{202e}"), "\\u{202e}");
        // A literal `\u{000a}` in the input is not confused with an escaped newline.
        assert_eq!(escape("\\u{000a}"), "\\\\u{000a}");
        assert_eq!(format!("{}", Escaped("x\ty")), "x\\u{0009}y");
        assert_eq!(format!("{:?}", Escaped("x\ny")), "\"x\\u{000a}y\"");
    }
}

/// Properties: escaping always yields forbidden-free text, is the identity on clean text, and is
/// injective (two different inputs never print the same).
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// Unescapes [`escape`]'s output (test-only inverse).
    fn unescape(s: &str) -> String {
        let mut out = String::new();
        let mut it = s.chars().peekable();
        while let Some(c) = it.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match it.next() {
                Some('\\') => out.push('\\'),
                Some('u') => {
                    assert_eq!(it.next(), Some('{'));
                    let hex: String = it.by_ref().take_while(|c| *c != '}').collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
                }
                other => panic!("stray escape {other:?} in {s:?}"),
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn escaped_text_is_clean_and_reversible(s in any::<String>()) {
            let e = escape(&s);
            prop_assert!(!e.chars().any(is_forbidden));
            prop_assert_eq!(unescape(&e), s.clone());
            if !s.chars().any(|c| c == '\\' || is_forbidden(c)) {
                prop_assert_eq!(e.as_ref(), s.as_str());
            }
        }

        #[test]
        fn a_checked_label_needs_no_escaping_but_backslashes(s in any::<String>()) {
            if check_label("x", &s, 1 << 20).is_ok() {
                prop_assert!(!s.is_empty());
                prop_assert!(!s.chars().any(is_forbidden));
            }
        }
    }
}
