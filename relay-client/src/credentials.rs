//! Where a client gets a fresh token when the gateway says its token went stale (re-pair
//! sources), tried in order:
//!
//! 1. [`TokenFile`]: a token freshly written to a file by another process (`claw tunnel up`
//!    writes the device token it obtained; the gateway host writes `gateway.token`).
//! 2. [`TunnelRepair`]: a reconnect through the tunnel with the device key, which the gateway
//!    answers with a fresh token (the transport already authenticated the key).
//! 3. [`SharedTokenRepair`]: a signed `connect` with the device key and the configured shared
//!    token, which the gateway answers with the device's current token
//!    (`hello-ok.auth.deviceToken`) — works on loopback for a client that holds the shared token.

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::error::{AuthFailure, ClientError, RefreshError};
use crate::refresh::RefreshSource;
use crate::session::{ConnectOptions, Session};

/// A way to obtain a fresh token after the gateway refused the current one.
pub trait CredentialSource: Send + Sync + std::fmt::Debug {
    /// A short name for logs (`token-file`, `tunnel`, `shared-token`).
    fn name(&self) -> &str;

    /// A token to replace `stale`. [`RefreshError::unavailable`] means "nothing to offer, ask
    /// the next source"; [`RefreshError::transient`] "could not reach it, retry later";
    /// a permanent error means the gateway refused and re-pairing cannot help.
    fn refresh<'a>(&'a self, stale: &'a str) -> BoxFuture<'a, Result<String, RefreshError>>;
}

/// Reads a token from a file; offers it when it differs from the stale one.
///
/// Two formats: a JSON object with a string `token` field (the device home's
/// `device-token.json` that `claw tunnel up` rewrites after a rotation), or plain text whose
/// first line is the token (`gateway.token`).
#[derive(Debug, Clone)]
pub struct TokenFile {
    path: PathBuf,
}

impl TokenFile {
    /// A source reading `path` (the first line, trimmed).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

/// Largest token file read.
const MAX_TOKEN_FILE: u64 = 4096;

/// The token in a token file's text (see [`TokenFile`]).
fn token_of_file(text: &str) -> String {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| v.get("token")?.as_str().map(|t| t.trim().to_string()))
            .unwrap_or_default();
    }
    text.lines().next().unwrap_or_default().trim().to_string()
}

impl CredentialSource for TokenFile {
    fn name(&self) -> &str {
        "token-file"
    }

    fn refresh<'a>(&'a self, stale: &'a str) -> BoxFuture<'a, Result<String, RefreshError>> {
        Box::pin(async move {
            let path = self.path.display();
            let meta = tokio::fs::metadata(&self.path)
                .await
                .map_err(|e| RefreshError::unavailable(format!("{path}: {e}")))?;
            if meta.len() > MAX_TOKEN_FILE {
                return Err(RefreshError::unavailable(format!("{path}: too large")));
            }
            let text = tokio::fs::read_to_string(&self.path)
                .await
                .map_err(|e| RefreshError::unavailable(format!("{path}: {e}")))?;
            let token = token_of_file(&text);
            let token = token.as_str();
            if token.is_empty() || token == stale {
                return Err(RefreshError::unavailable(format!(
                    "{path} holds no new token"
                )));
            }
            Ok(token.to_string())
        })
    }
}

/// Re-pairs over a direct (loopback) connection: a `connect` signed with the device key and
/// carrying the shared token; the gateway answers with the device's current token.
#[derive(Debug, Clone)]
pub struct SharedTokenRepair {
    options: ConnectOptions,
}

impl SharedTokenRepair {
    /// `options` must carry the shared token and the device key, and ask for the same role and
    /// scopes as the client (the device is granted the scopes of this connect).
    pub fn new(options: ConnectOptions) -> Self {
        Self { options }
    }
}

/// The [`AuthFailure`] for a gateway's refusal.
pub(crate) fn failure_of_rejection(
    code: &str,
    message: &str,
    details: Option<&serde_json::Value>,
) -> AuthFailure {
    let mut f = AuthFailure::new(message);
    f.code = Some(
        details
            .and_then(|d| d.get("code"))
            .and_then(|c| c.as_str())
            .unwrap_or(code)
            .to_string(),
    );
    f.next_step = details
        .and_then(|d| d.get("recommendedNextStep"))
        .and_then(|c| c.as_str())
        .map(str::to_string);
    f
}

/// Connects with `options` and returns the device token the gateway hands out in `hello-ok`.
async fn token_via_connect(options: ConnectOptions) -> Result<String, RefreshError> {
    match Session::connect(options).await {
        Ok(s) => {
            let token = s.device_token().map(str::to_string);
            s.close().await;
            token.ok_or_else(|| {
                RefreshError::permanent("the gateway accepted but issued no device token")
            })
        }
        Err(ClientError::Rejected {
            code,
            message,
            details,
        }) => Err(RefreshError::refused(failure_of_rejection(
            &code,
            &message,
            details.as_ref(),
        ))),
        Err(ClientError::Closed { code: 1008, reason }) => {
            Err(RefreshError::refused(AuthFailure::new(reason)))
        }
        Err(e) => Err(RefreshError::transient(e.to_string())),
    }
}

impl CredentialSource for SharedTokenRepair {
    fn name(&self) -> &str {
        "shared-token"
    }

    fn refresh<'a>(&'a self, _stale: &'a str) -> BoxFuture<'a, Result<String, RefreshError>> {
        Box::pin(async move {
            if self.options.token.is_none() || self.options.device.is_none() {
                return Err(RefreshError::unavailable(
                    "needs both the shared token and the device key",
                ));
            }
            token_via_connect(self.options.clone()).await
        })
    }
}

/// Re-pairs through claw's QUIC tunnel or SSH forward: a `connect` signed with the device key
/// and carrying the stale token, sent to the tunnel's local port. The gateway knows the device
/// from the transport and answers with a fresh token instead of 1008 (unless it was revoked).
#[derive(Debug, Clone)]
pub struct TunnelRepair {
    options: ConnectOptions,
}

impl TunnelRepair {
    /// `options` must point at the tunnel's local port and carry the device key.
    pub fn new(options: ConnectOptions) -> Self {
        Self { options }
    }
}

impl CredentialSource for TunnelRepair {
    fn name(&self) -> &str {
        "tunnel"
    }

    fn refresh<'a>(&'a self, stale: &'a str) -> BoxFuture<'a, Result<String, RefreshError>> {
        Box::pin(async move {
            if self.options.device.is_none() {
                return Err(RefreshError::unavailable("needs the device key"));
            }
            let mut o = self.options.clone();
            o.token = (!stale.is_empty()).then(|| stale.to_string());
            token_via_connect(o).await
        })
    }
}

/// Tries sources in order; the first token wins.
#[derive(Debug, Clone, Default)]
pub struct CredentialChain {
    sources: Vec<Arc<dyn CredentialSource>>,
}

impl CredentialChain {
    /// A chain of `sources`, tried in order.
    pub fn new(sources: Vec<Arc<dyn CredentialSource>>) -> Self {
        Self { sources }
    }

    /// Whether the chain has no source.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The first token any source offers. All unavailable → permanent ("nothing could
    /// refresh"); any refusal → that refusal; otherwise a transient error.
    pub async fn refresh(&self, stale: &str) -> Result<String, RefreshError> {
        let mut transient = None;
        let mut reasons = Vec::new();
        for s in &self.sources {
            match s.refresh(stale).await {
                Ok(t) => {
                    tracing::info!(source = s.name(), "obtained a fresh token");
                    return Ok(t);
                }
                Err(e) => {
                    tracing::debug!(source = s.name(), error = %e, "re-pair source did not help");
                    match e.kind {
                        crate::RefreshErrorKind::Permanent => return Err(e),
                        crate::RefreshErrorKind::Transient => transient = Some(e),
                        crate::RefreshErrorKind::Unavailable => {
                            reasons.push(format!("{}: {}", s.name(), e.message))
                        }
                    }
                }
            }
        }
        Err(transient.unwrap_or_else(|| {
            RefreshError::refused(
                AuthFailure::new(format!(
                    "no re-pair source could provide a new token ({})",
                    reasons.join("; ")
                ))
                .with_next_step("update_auth_credentials"),
            )
        }))
    }
}

impl RefreshSource<String> for CredentialChain {
    fn refresh<'a>(&'a self, stale: &'a String) -> BoxFuture<'a, Result<String, RefreshError>> {
        Box::pin(CredentialChain::refresh(self, stale))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RefreshErrorKind;

    #[derive(Debug)]
    struct Fixed(&'static str, Result<&'static str, RefreshError>);
    impl CredentialSource for Fixed {
        fn name(&self) -> &str {
            self.0
        }
        fn refresh<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<String, RefreshError>> {
            let r = self.1.clone().map(str::to_string);
            Box::pin(async move { r })
        }
    }

    #[tokio::test]
    async fn token_file_offers_only_a_new_token() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("tok");
        let src = TokenFile::new(&p);
        assert_eq!(
            src.refresh("old").await.unwrap_err().kind,
            RefreshErrorKind::Unavailable
        );
        std::fs::write(&p, "old\n").unwrap();
        assert_eq!(
            src.refresh("old").await.unwrap_err().kind,
            RefreshErrorKind::Unavailable
        );
        std::fs::write(&p, "  new \nrest").unwrap();
        assert_eq!(src.refresh("old").await.unwrap(), "new");
        std::fs::write(
            &p,
            r#"{"token": "from-json", "generation": 2, "updatedAtMs": 1}"#,
        )
        .unwrap();
        assert_eq!(src.refresh("old").await.unwrap(), "from-json");
        std::fs::write(&p, r#"{"generation": 2}"#).unwrap();
        assert!(src.refresh("old").await.is_err());
        std::fs::write(&p, "x".repeat(10_000)).unwrap();
        assert!(src.refresh("old").await.is_err());
    }

    #[tokio::test]
    async fn chain_order_and_verdicts() {
        let un = || RefreshError::unavailable("none");
        let chain = CredentialChain::new(vec![
            Arc::new(Fixed("a", Err(un()))),
            Arc::new(Fixed("b", Ok("from-b"))),
            Arc::new(Fixed("c", Ok("from-c"))),
        ]);
        assert_eq!(chain.refresh("s").await.unwrap(), "from-b");
        let chain = CredentialChain::new(vec![
            Arc::new(Fixed("a", Err(RefreshError::transient("down")))),
            Arc::new(Fixed("b", Err(un()))),
        ]);
        assert_eq!(
            chain.refresh("s").await.unwrap_err().kind,
            RefreshErrorKind::Transient
        );
        let chain = CredentialChain::new(vec![Arc::new(Fixed("a", Err(un())))]);
        let e = chain.refresh("s").await.unwrap_err();
        assert_eq!(e.kind, RefreshErrorKind::Permanent);
        assert!(e.message.contains("a: none"), "{e}");
        let chain = CredentialChain::new(vec![
            Arc::new(Fixed("a", Err(RefreshError::permanent("revoked")))),
            Arc::new(Fixed("b", Ok("never"))),
        ]);
        assert_eq!(
            chain.refresh("s").await.unwrap_err().kind,
            RefreshErrorKind::Permanent
        );
    }
}
