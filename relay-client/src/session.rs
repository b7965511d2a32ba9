//! One authenticated WebSocket session with a claw (or OpenClaw) gateway, and the handshake
//! that the resilient [`Client`](crate::Client) shares with it.
//!
//! [`Session`] is the simple, single-task form: one request at a time, no reconnects. Use it for
//! one-shot tools (`claw call`); embed [`Client`](crate::Client) for anything long-lived.

use std::time::Duration;

use claw_proto::DeviceKey;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::ClientError;
use crate::state::Refusal;
use crate::wire::{self, Identity, Incoming};

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `ws://` URL.
    pub url: String,
    /// Shared token or device token.
    pub token: Option<String>,
    /// Device key to sign the connect with.
    pub device: Option<DeviceKey>,
    /// Role.
    pub role: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Client id.
    pub client_id: String,
    /// Client mode.
    pub client_mode: String,
    /// Per-step timeout (TCP + upgrade, challenge, `connect` answer; a [`Session`] call).
    pub timeout: Duration,
    /// Sends credentials to a non-loopback `ws://` URL (cleartext on the network). Off by
    /// default: see [`crate::url_policy`].
    pub allow_insecure_remote: bool,
    /// The gateway's fingerprint (hex SHA-256 of its Ed25519 public key), when known: the
    /// client asks for the gateway's identity proof and sends no `connect` (so no secret) unless
    /// it verifies ([`ClientError::GatewayNotProven`]); see `claw_proto::gateway_proof`.
    pub gateway_fingerprint: Option<String>,
}

impl ConnectOptions {
    /// Defaults: operator with read, pairing and admin scopes, client `claw-cli`/`cli`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: None,
            device: None,
            role: "operator".into(),
            scopes: vec![
                "operator.read".into(),
                "operator.pairing".into(),
                "operator.admin".into(),
            ],
            client_id: "claw-cli".into(),
            client_mode: "cli".into(),
            timeout: Duration::from_secs(10),
            allow_insecure_remote: false,
            gateway_fingerprint: None,
        }
    }
    /// Sends nothing but to the gateway with this fingerprint: it must sign this connection's
    /// challenge (see [`ConnectOptions::gateway_fingerprint`]).
    pub fn expect_gateway(mut self, fingerprint: impl Into<String>) -> Self {
        self.gateway_fingerprint = Some(fingerprint.into());
        self
    }
    /// Allows a non-loopback `ws://` URL, whose token and traffic cross the network in
    /// cleartext. Prefer `claw tunnel up` or `ssh -N -L` and a loopback URL.
    pub fn allow_insecure_remote(mut self) -> Self {
        self.allow_insecure_remote = true;
        self
    }
    /// Sets the token.
    pub fn token(mut self, t: impl Into<String>) -> Self {
        self.token = Some(t.into());
        self
    }
    /// Signs with this device key.
    pub fn device(mut self, k: DeviceKey) -> Self {
        self.device = Some(k);
        self
    }
    /// Sets the scopes.
    pub fn scopes(mut self, s: &[&str]) -> Self {
        self.scopes = s.iter().map(|x| x.to_string()).collect();
        self
    }
    /// Sets the client id and mode.
    pub fn client(mut self, id: impl Into<String>, mode: impl Into<String>) -> Self {
        self.client_id = id.into();
        self.client_mode = mode.into();
        self
    }
    /// Sets the per-step timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    pub(crate) fn identity(&self) -> Identity {
        Identity {
            client_id: self.client_id.clone(),
            client_mode: self.client_mode.clone(),
            role: self.role.clone(),
            scopes: self.scopes.clone(),
        }
    }
}

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Largest message accepted from the gateway (its own requests are capped at 1 MiB; responses
/// such as `device.pair.list` may be larger).
pub(crate) const MAX_INBOUND: usize = 16 * 1024 * 1024;

/// Why a handshake did not produce a session.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The gateway answered `connect` with an error.
    Refused(Refusal),
    /// Anything else (network, close before hello, timeout, not the protocol).
    Other(ClientError),
}

fn close_of(msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) -> ClientError {
    match msg {
        Some(Ok(Message::Close(Some(f)))) => ClientError::Closed {
            code: f.code.into(),
            reason: f.reason.chars().take(123).collect(),
        },
        _ => ClientError::Closed {
            code: 1006,
            reason: "connection lost".into(),
        },
    }
}

/// The upgrade request: the URL, plus our proof nonce header when we expect a known gateway.
fn build_request(
    o: &ConnectOptions,
    proof_nonce: Option<&str>,
) -> Result<
    tokio_tungstenite::tungstenite::handshake::client::Request,
    tokio_tungstenite::tungstenite::Error,
> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = o.url.as_str().into_client_request()?;
    if let Some(n) = proof_nonce {
        if let Ok(v) = n.parse() {
            request
                .headers_mut()
                .insert(claw_proto::gateway_proof::NONCE_HEADER, v);
        }
    }
    Ok(request)
}

/// Opens a socket and completes the handshake with `token` (not `o.token`, so the client can
/// present a refreshed one). Returns the socket and the `hello-ok` payload.
pub(crate) async fn open(
    o: &ConnectOptions,
    token: Option<&str>,
) -> Result<(Ws, Value), OpenError> {
    // Before any socket: a refused URL ends in `auth_failed` with the reason (not a reconnect
    // loop), since no retry can make it safe.
    if let Err(crate::url_policy::UrlRefused(message)) =
        crate::url_policy::check(&o.url, o.allow_insecure_remote)
    {
        let details = serde_json::json!({
            "code": "INSECURE_URL",
            "recommendedNextStep": "review_auth_configuration",
        });
        return Err(OpenError::Refused(Refusal {
            error: wire::RemoteError::new("INSECURE_URL", message).with_details(details),
            close: None,
        }));
    }
    let t = o.timeout;
    let other = OpenError::Other;
    // A fresh nonce of ours for the gateway to sign, when we know which gateway to expect.
    let proof_nonce = o
        .gateway_fingerprint
        .as_ref()
        .map(|_| uuid::Uuid::new_v4().to_string());
    let cfg = WebSocketConfig::default()
        .max_message_size(Some(MAX_INBOUND))
        .max_frame_size(Some(MAX_INBOUND));
    let request = build_request(o, proof_nonce.as_deref()).map_err(|e| {
        other(ClientError::Connect {
            url: o.url.clone(),
            reason: e.to_string(),
        })
    })?;
    let (mut ws, _) = tokio::time::timeout(
        t,
        tokio_tungstenite::connect_async_with_config(request, Some(cfg), true),
    )
    .await
    .map_err(|_| other(ClientError::Timeout))?
    .map_err(|e| {
        other(ClientError::Connect {
            url: o.url.clone(),
            reason: refusal_reason(&e),
        })
    })?;
    // The challenge; the gateway sends it first, so a bounded number of frames suffices.
    let mut challenge = None;
    for _ in 0..16 {
        let msg = tokio::time::timeout(t, ws.next())
            .await
            .map_err(|_| other(ClientError::Timeout))?;
        match msg {
            Some(Ok(Message::Text(txt))) => {
                if let Incoming::Event { name, payload, .. } = wire::parse_incoming(&txt) {
                    if name == "connect.challenge" {
                        challenge = Some(wire::challenge(&payload).ok_or_else(|| {
                            other(ClientError::Protocol("malformed connect.challenge".into()))
                        })?);
                        if let (Some(fp), Some(cn)) = (&o.gateway_fingerprint, &proof_nonce) {
                            let peer = match ws.get_ref() {
                                MaybeTlsStream::Plain(tcp) => tcp.peer_addr().ok(),
                                _ => None,
                            };
                            claw_proto::gateway_proof::verify(&payload, fp, cn, peer).map_err(
                                |e| {
                                    other(ClientError::GatewayNotProven {
                                        url: o.url.clone(),
                                        reason: e.to_string(),
                                    })
                                },
                            )?;
                        }
                        break;
                    }
                }
            }
            Some(Ok(Message::Close(_)) | Err(_)) | None => return Err(other(close_of(msg))),
            Some(Ok(_)) => {}
        }
    }
    let Some((nonce, ts)) = challenge else {
        return Err(other(ClientError::Protocol(
            "no connect.challenge from the gateway".into(),
        )));
    };
    let params = wire::connect_params(&o.identity(), token, o.device.as_ref(), &nonce, ts);
    let id = format!("connect-{}", uuid::Uuid::new_v4());
    tokio::time::timeout(
        t,
        ws.send(Message::Text(wire::request(&id, "connect", &params).into())),
    )
    .await
    .map_err(|_| other(ClientError::Timeout))?
    .map_err(|_| other(close_of(None)))?;
    // The answer; events before it (none are expected) are skipped, a bounded number of them.
    for _ in 0..64 {
        let msg = tokio::time::timeout(t, ws.next())
            .await
            .map_err(|_| other(ClientError::Timeout))?;
        let txt = match msg {
            Some(Ok(Message::Text(txt))) => txt,
            Some(Ok(Message::Close(_)) | Err(_)) | None => return Err(other(close_of(msg))),
            Some(Ok(_)) => continue,
        };
        match wire::parse_incoming(&txt) {
            Incoming::Response { id: rid, result } if rid == id => match result {
                Ok(hello) => return Ok((ws, hello)),
                Err(error) => {
                    // The close follows the refusal; wait briefly for its code and reason.
                    let close = read_close(&mut ws, Duration::from_secs(2).min(t)).await;
                    return Err(OpenError::Refused(Refusal { error, close }));
                }
            },
            _ => continue,
        }
    }
    Err(other(ClientError::Protocol(
        "no answer to connect from the gateway".into(),
    )))
}

async fn read_close(ws: &mut Ws, within: Duration) -> Option<(u16, String)> {
    let deadline = tokio::time::Instant::now() + within;
    for _ in 0..16 {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => {
                return Some((f.code.into(), f.reason.chars().take(123).collect()))
            }
            Ok(Some(Ok(Message::Close(None)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => {
                return None
            }
            Ok(Some(Ok(_))) => continue,
        }
    }
    None
}

/// An authenticated session.
#[derive(Debug)]
pub struct Session {
    ws: Ws,
    next_id: u64,
    timeout: Duration,
    /// The `hello-ok` payload.
    pub hello: Value,
}

impl Session {
    /// Connects and completes the handshake. A refusal is [`ClientError::Rejected`].
    pub async fn connect(o: ConnectOptions) -> Result<Self, ClientError> {
        match open(&o, o.token.as_deref()).await {
            Ok((ws, hello)) => Ok(Self {
                ws,
                next_id: 0,
                timeout: o.timeout,
                hello,
            }),
            Err(OpenError::Refused(r)) => Err(ClientError::Rejected {
                code: r.error.code,
                message: r.error.message,
                details: r.error.details,
            }),
            Err(OpenError::Other(e)) => Err(e),
        }
    }

    /// The device token the gateway handed out, if any.
    pub fn device_token(&self) -> Option<&str> {
        wire::device_token(&self.hello)
    }

    /// Calls a method and waits for its response (events in between are skipped).
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        self.next_id += 1;
        let id = format!("{}:{}", self.next_id, uuid::Uuid::new_v4());
        self.ws
            .send(Message::Text(wire::request(&id, method, &params).into()))
            .await
            .map_err(|_| close_of(None))?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| ClientError::Timeout)?;
            let txt = match msg {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(_)) | Err(_)) | None => return Err(close_of(msg)),
                Some(Ok(_)) => continue,
            };
            match wire::parse_incoming(&txt) {
                Incoming::Response { id: rid, result } if rid == id => {
                    return result.map_err(|e| ClientError::Rejected {
                        code: e.code,
                        message: e.message,
                        details: e.details,
                    })
                }
                _ => continue,
            }
        }
    }

    /// Closes the session normally.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }
}

/// Why the upgrade failed: for an HTTP refusal, its status and (escaped, bounded) body — the
/// gateway's 503 says "Too many unauthenticated sockets", which is what the user must read, not
/// a generic connection failure.
fn refusal_reason(e: &tokio_tungstenite::tungstenite::Error) -> String {
    match e {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            let body = resp
                .body()
                .as_deref()
                .map(|b| {
                    String::from_utf8_lossy(&b[..b.len().min(200)])
                        .escape_debug()
                        .to_string()
                })
                .unwrap_or_default();
            format!("HTTP {}: {body}", resp.status())
        }
        other => other.to_string(),
    }
}
