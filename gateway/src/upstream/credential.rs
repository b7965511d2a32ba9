//! The upstream's shared credential: where it comes from and reading it. Read afresh at every
//! upstream (re)connect, so OpenClaw's own config stays the one source of truth: change
//! `gateway.auth.token` there and claw's next connect uses the new value.
//!
//! Order (first given wins): `--upstream-token-file F`, `CLAW_UPSTREAM_TOKEN`,
//! `CLAW_UPSTREAM_TOKEN_FILE`, OpenClaw's config (`--upstream-openclaw-config PATH`, default
//! `~/.openclaw/openclaw.json`, key `gateway.auth.token`).

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Longest credential accepted (OpenClaw's tokens are 48 hex characters or a user's string).
pub const MAX_TOKEN_LEN: usize = 4096;

/// Where the upstream credential is read from.
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// `--upstream-token-file` or `CLAW_UPSTREAM_TOKEN_FILE`: a file holding the token (0600).
    File(PathBuf),
    /// `CLAW_UPSTREAM_TOKEN`: the token itself (a secret: never printed).
    Value(String),
    /// OpenClaw's `openclaw.json`, `gateway.auth.token`.
    OpenclawConfig(PathBuf),
}

impl std::fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl CredentialSource {
    /// Picks the source in the documented order. `home` is the user's home directory (for the
    /// default OpenClaw config path).
    pub fn pick(
        flag_file: Option<PathBuf>,
        env_token: Option<String>,
        env_file: Option<PathBuf>,
        openclaw_config: Option<PathBuf>,
        home: Option<&Path>,
    ) -> Self {
        if let Some(f) = flag_file {
            return Self::File(f);
        }
        if let Some(t) = env_token.filter(|t| !t.trim().is_empty()) {
            return Self::Value(t.trim().to_string());
        }
        if let Some(f) = env_file {
            return Self::File(f);
        }
        Self::OpenclawConfig(openclaw_config.unwrap_or_else(|| {
            home.unwrap_or(Path::new("/"))
                .join(".openclaw")
                .join("openclaw.json")
        }))
    }

    /// Where the credential comes from, for status and logs (never the secret).
    pub fn describe(&self) -> String {
        match self {
            Self::File(p) => format!("file {}", p.display()),
            Self::Value(_) => "CLAW_UPSTREAM_TOKEN".to_string(),
            Self::OpenclawConfig(p) => {
                format!("openclaw config {} (gateway.auth.token)", p.display())
            }
        }
    }

    /// Reads the credential now.
    pub fn read(&self) -> Result<String, CredentialError> {
        match self {
            Self::Value(t) => check_token(t.clone(), "CLAW_UPSTREAM_TOKEN"),
            Self::File(p) => {
                let text =
                    crate::home::read_secret(p).map_err(|e| CredentialError::Unreadable {
                        path: p.display().to_string(),
                        why: e.to_string(),
                    })?;
                check_token(text.trim().to_string(), &p.display().to_string())
            }
            Self::OpenclawConfig(p) => {
                let meta = std::fs::metadata(p).map_err(|e| CredentialError::Unreadable {
                    path: p.display().to_string(),
                    why: e.to_string(),
                })?;
                if meta.len() > 4 * 1024 * 1024 {
                    return Err(CredentialError::Invalid {
                        path: p.display().to_string(),
                        why: "larger than 4 MiB".into(),
                    });
                }
                let text = std::fs::read_to_string(p).map_err(|e| CredentialError::Unreadable {
                    path: p.display().to_string(),
                    why: e.to_string(),
                })?;
                token_from_openclaw_config(&text, &p.display().to_string())
            }
        }
    }
}

/// Why the credential could not be had.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    /// The file could not be read.
    #[error("cannot read the upstream credential from {path}: {why}")]
    Unreadable {
        /// Which file.
        path: String,
        /// The OS error.
        why: String,
    },
    /// The file is not what it should be.
    #[error("the upstream credential in {path} is unusable: {why}")]
    Invalid {
        /// Which file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// OpenClaw's config pins no token: the upstream runs with a per-boot runtime token that is
    /// written nowhere, and a restart strands every client.
    #[error("{path} sets no gateway.auth.token: the OpenClaw gateway runs with a per-boot runtime token claw cannot read (and every restart changes it). Pin one: `openclaw config set gateway.auth.token \"$(openssl rand -hex 24)\"`, then restart OpenClaw")]
    RuntimeToken {
        /// The config file.
        path: String,
    },
}

fn check_token(t: String, from: &str) -> Result<String, CredentialError> {
    let invalid = |why: &str| CredentialError::Invalid {
        path: from.to_string(),
        why: why.to_string(),
    };
    if t.is_empty() {
        return Err(invalid("empty"));
    }
    if t.len() > MAX_TOKEN_LEN {
        return Err(invalid("longer than 4096 bytes"));
    }
    if t.chars().any(char::is_control) {
        return Err(invalid("contains control characters"));
    }
    Ok(t)
}

/// `gateway.auth.token` of an `openclaw.json` (plain JSON, as `openclaw config set` writes it).
/// A missing token is [`CredentialError::RuntimeToken`]; a secret reference or `${VAR}`
/// placeholder is refused with the fix (`--upstream-token-file`).
pub fn token_from_openclaw_config(text: &str, path: &str) -> Result<String, CredentialError> {
    let invalid = |why: String| CredentialError::Invalid {
        path: path.to_string(),
        why,
    };
    let v: Value = serde_json::from_str(text).map_err(|e| {
        invalid(format!(
            "not plain JSON ({e}); give the token with --upstream-token-file instead"
        ))
    })?;
    let token = v
        .get("gateway")
        .and_then(|g| g.get("auth"))
        .and_then(|a| a.get("token"));
    match token {
        None | Some(Value::Null) => Err(CredentialError::RuntimeToken {
            path: path.to_string(),
        }),
        Some(Value::String(s)) if s.trim().is_empty() => Err(CredentialError::RuntimeToken {
            path: path.to_string(),
        }),
        Some(Value::String(s)) if s.contains("${") => Err(invalid(
            "gateway.auth.token is an environment placeholder; give the token with --upstream-token-file or CLAW_UPSTREAM_TOKEN".into(),
        )),
        Some(Value::String(s)) => check_token(s.trim().to_string(), path),
        Some(_) => Err(invalid(
            "gateway.auth.token is a secret reference, not a string; give the token with --upstream-token-file or CLAW_UPSTREAM_TOKEN".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_of_sources() {
        let home = Path::new("/home/u");
        let f = || Some(PathBuf::from("/f"));
        let t = || Some("tok".to_string());
        assert_eq!(
            CredentialSource::pick(f(), t(), f(), None, Some(home)),
            CredentialSource::File("/f".into())
        );
        assert_eq!(
            CredentialSource::pick(None, t(), Some("/e".into()), None, Some(home)),
            CredentialSource::Value("tok".into())
        );
        assert_eq!(
            CredentialSource::pick(None, Some(" ".into()), Some("/e".into()), None, Some(home)),
            CredentialSource::File("/e".into())
        );
        assert_eq!(
            CredentialSource::pick(None, None, None, None, Some(home)),
            CredentialSource::OpenclawConfig("/home/u/.openclaw/openclaw.json".into())
        );
        assert_eq!(
            CredentialSource::pick(None, None, None, Some("/c.json".into()), Some(home)),
            CredentialSource::OpenclawConfig("/c.json".into())
        );
    }

    #[test]
    fn the_secret_never_shows_in_debug() {
        let s = CredentialSource::Value("hunter2-secret".into());
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!s.describe().contains("hunter2"));
    }

    #[test]
    fn openclaw_config_token() {
        let ok = r#"{"gateway":{"mode":"local","auth":{"mode":"token","token":" abc123 "}}}"#;
        assert_eq!(token_from_openclaw_config(ok, "p").unwrap(), "abc123");
    }

    #[test]
    fn a_config_without_a_token_names_the_runtime_token_and_the_fix() {
        for text in [
            r#"{}"#,
            r#"{"gateway":{"mode":"local"}}"#,
            r#"{"gateway":{"auth":{"token":null}}}"#,
            r#"{"gateway":{"auth":{"token":""}}}"#,
        ] {
            let e = token_from_openclaw_config(text, "p").unwrap_err();
            assert_eq!(
                e,
                CredentialError::RuntimeToken { path: "p".into() },
                "{text}"
            );
            assert!(e
                .to_string()
                .contains("openclaw config set gateway.auth.token"));
        }
    }

    #[test]
    fn hostile_configs_are_refused_not_panicked_on() {
        for text in [
            "",
            "{",
            "[]",
            "null",
            "// comment\n{}",
            r#"{"gateway":{"auth":{"token":{"source":"env","id":"X"}}}}"#,
            r#"{"gateway":{"auth":{"token":"${OPENCLAW_TOKEN}"}}}"#,
            r#"{"gateway":{"auth":{"token":"a\u0000b"}}}"#,
            r#"{"gateway":{"auth":{"token":"a\nb"}}}"#,
            r#"{"gateway":{"auth":{"token":42}}}"#,
            r#"{"gateway":"x"}"#,
        ] {
            assert!(token_from_openclaw_config(text, "p").is_err(), "{text:?}");
        }
        let long = format!(
            r#"{{"gateway":{{"auth":{{"token":"{}"}}}}}}"#,
            "a".repeat(5000)
        );
        assert!(token_from_openclaw_config(&long, "p").is_err());
        let deep = "[".repeat(100_000);
        assert!(token_from_openclaw_config(&deep, "p").is_err());
    }

    #[test]
    fn token_file_is_read_fresh_and_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, "one\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let src = CredentialSource::File(p.clone());
        assert_eq!(src.read().unwrap(), "one");
        std::fs::write(&p, "two").unwrap();
        assert_eq!(src.read().unwrap(), "two");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(src.read().is_err());
    }
}
