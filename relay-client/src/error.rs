//! Typed errors: what a call, a connect or a refresh can fail with.

use serde_json::Value;

/// Why a client (or a [`Refresher`](crate::refresh::Refresher)) stopped trying: the server
/// refused the credentials and retrying with the same ones cannot help.
///
/// Terminal until the host supplies new credentials
/// ([`Client::set_token`](crate::Client::set_token),
/// [`Refresher::replace`](crate::refresh::Refresher::replace)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// The server's reason (close reason or error message), or ours when no server spoke.
    pub reason: String,
    /// The machine-readable code (`details.code`, e.g. `AUTH_DEVICE_REVOKED`), when known.
    pub code: Option<String>,
    /// The server's `recommendedNextStep` (e.g. `review_auth_configuration`), when known.
    pub next_step: Option<String>,
    /// The client's own explanation (e.g. that it has no way to refresh a static token).
    pub hint: Option<String>,
}

impl AuthFailure {
    /// A failure with a reason only.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            code: None,
            next_step: None,
            hint: None,
        }
    }

    /// Sets the code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Sets the recommended next step.
    pub fn with_next_step(mut self, step: impl Into<String>) -> Self {
        self.next_step = Some(step.into());
        self
    }

    /// Sets the client's explanation.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl std::fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)?;
        if let Some(c) = &self.code {
            write!(f, " [{c}]")?;
        }
        if let Some(s) = &self.next_step {
            write!(f, " (next step: {s})")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "; {h}")?;
        }
        Ok(())
    }
}

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The gateway answered a request with an error (the socket may stay open).
    #[error("{code}: {message}")]
    Rejected {
        /// `error.code`.
        code: String,
        /// `error.message`.
        message: String,
        /// `error.details`.
        details: Option<Value>,
    },
    /// The socket closed; carries the close code and reason if any.
    #[error("gateway closed ({code}): {reason}")]
    Closed {
        /// Close code (1006 when none was received).
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// Could not connect.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The peer did not answer in time (or no session came up before the call's deadline).
    #[error("timed out waiting for the gateway")]
    Timeout,
    /// The peer sent something that is not the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The request was on the wire when the session died: it may or may not have been
    /// applied. Retryable; mark a call idempotent to have the client replay it once instead.
    #[error("connection lost while the request was in flight ({code}: {reason}); retry if safe")]
    Interrupted {
        /// Close code of the session that died (1006 when none was received).
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// The client is in `auth_failed`: the credentials were refused and no refresh helped.
    #[error("authentication failed: {0}")]
    AuthFailed(AuthFailure),
    /// The client was closed by its host.
    #[error("client closed")]
    ClientClosed,
    /// The server at the URL did not prove it is the expected gateway (see
    /// `ConnectOptions::expect_gateway`): nothing, no secret, was sent to it.
    #[error("{url} did not prove it is the expected gateway ({reason}); no credentials were sent")]
    GatewayNotProven {
        /// URL.
        url: String,
        /// Why the proof failed.
        reason: String,
    },
}

impl ClientError {
    /// True when retrying the same call later may succeed ([`ClientError::Interrupted`]).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ClientError::Interrupted { .. })
    }
}

/// Why a refresh step (a [`CredentialSource`](crate::CredentialSource) or the source of a
/// [`Refresher`](crate::refresh::Refresher)) did not produce a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RefreshError {
    /// What happened.
    pub message: String,
    /// How the caller should treat it.
    pub kind: RefreshErrorKind,
    /// The refusal behind a permanent failure, when a server gave one.
    pub failure: Option<Box<AuthFailure>>,
}

/// How a [`RefreshError`] is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshErrorKind {
    /// This source has nothing to offer (no fresh token file, no tunnel); try the next one.
    Unavailable,
    /// The provider could not be reached; retry the refresh later (with backoff).
    Transient,
    /// The provider refused: degrade to `auth_failed`.
    Permanent,
}

impl RefreshError {
    /// This source cannot help; the next one is tried.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: RefreshErrorKind::Unavailable,
            failure: None,
        }
    }
    /// A network-level failure; the refresh may be retried later.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: RefreshErrorKind::Transient,
            failure: None,
        }
    }
    /// A refusal; the credential holder goes to `auth_failed`.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            kind: RefreshErrorKind::Permanent,
            failure: None,
        }
    }
    /// A refusal with the server's reason, code and next step.
    pub fn refused(failure: AuthFailure) -> Self {
        Self {
            message: failure.to_string(),
            kind: RefreshErrorKind::Permanent,
            failure: Some(Box::new(failure)),
        }
    }
    /// The [`AuthFailure`] to report for this error.
    pub fn to_failure(&self) -> AuthFailure {
        self.failure
            .as_deref()
            .cloned()
            .unwrap_or_else(|| AuthFailure::new(format!("refresh failed: {}", self.message)))
    }
}

impl From<String> for RefreshError {
    /// A plain message is a permanent failure.
    fn from(s: String) -> Self {
        RefreshError::permanent(s)
    }
}

impl From<&str> for RefreshError {
    /// A plain message is a permanent failure.
    fn from(s: &str) -> Self {
        RefreshError::permanent(s)
    }
}
