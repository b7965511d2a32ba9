//! One authenticated WebSocket session with a claw (or OpenClaw) gateway.

use std::time::Duration;

use claw_gateway::auth::device_key::DeviceKey;
use claw_gateway::protocol::connect::{AuthParams, ClientInfo, ConnectParams};
use claw_gateway::protocol::PROTOCOL_VERSION;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

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
    /// The peer did not answer in time.
    #[error("timed out waiting for the gateway")]
    Timeout,
    /// The peer sent something that is not the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

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
    /// Per-step timeout.
    pub timeout: Duration,
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
        }
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
}

/// An authenticated session.
#[derive(Debug)]
pub struct Session {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    timeout: Duration,
    /// The `hello-ok` payload.
    pub hello: Value,
}

fn close_of(msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>) -> ClientError {
    match msg {
        Some(Ok(Message::Close(Some(f)))) => ClientError::Closed {
            code: f.code.into(),
            reason: f.reason.to_string(),
        },
        _ => ClientError::Closed {
            code: 1006,
            reason: "connection lost".into(),
        },
    }
}

impl Session {
    /// Connects and completes the handshake.
    pub async fn connect(o: ConnectOptions) -> Result<Self, ClientError> {
        let t = o.timeout;
        let (mut ws, _) = tokio::time::timeout(t, tokio_tungstenite::connect_async(o.url.as_str()))
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(|e| ClientError::Connect {
                url: o.url.clone(),
                reason: e.to_string(),
            })?;
        // The challenge.
        let challenge = loop {
            let msg = tokio::time::timeout(t, ws.next())
                .await
                .map_err(|_| ClientError::Timeout)?;
            match msg {
                Some(Ok(Message::Text(txt))) => {
                    let v: Value = serde_json::from_str(&txt)
                        .map_err(|e| ClientError::Protocol(e.to_string()))?;
                    if v["event"] == "connect.challenge" {
                        break v["payload"].clone();
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => return Err(close_of(other)),
            }
        };
        let nonce = challenge["nonce"].as_str().unwrap_or_default().to_string();
        let ts = challenge["ts"].as_u64().unwrap_or(0);
        let mut params = ConnectParams {
            min_protocol: PROTOCOL_VERSION,
            max_protocol: PROTOCOL_VERSION,
            client: ClientInfo {
                id: o.client_id.clone(),
                version: claw_gateway::VERSION.into(),
                platform: std::env::consts::OS.into(),
                device_family: "Linux".into(),
                mode: o.client_mode.clone(),
                instance_id: None,
                display_name: None,
            },
            role: o.role.clone(),
            scopes: o.scopes.clone(),
            auth: AuthParams {
                token: o.token.clone(),
                password: None,
                ..Default::default()
            },
            device: None,
        };
        let device = o.device.as_ref().map(|k| k.prove(&params, &nonce, ts));
        params.device = device.clone();
        let mut p = json!({
            "minProtocol": params.min_protocol,
            "maxProtocol": params.max_protocol,
            "client": {
                "id": params.client.id, "version": params.client.version,
                "platform": params.client.platform, "deviceFamily": params.client.device_family,
                "mode": params.client.mode,
            },
            "caps": [],
            "role": params.role,
            "scopes": params.scopes,
        });
        if let Some(tok) = &o.token {
            p["auth"] = json!({"token": tok});
        }
        if let Some(d) = device {
            p["device"] = json!({"id": d.id, "publicKey": d.public_key, "signature": d.signature, "signedAt": d.signed_at, "nonce": d.nonce});
        }
        let mut s = Self {
            ws,
            next_id: 0,
            timeout: t,
            hello: Value::Null,
        };
        s.hello = s.request("connect", p).await?;
        Ok(s)
    }

    /// The device token the gateway handed out, if any.
    pub fn device_token(&self) -> Option<&str> {
        self.hello["auth"]["deviceToken"].as_str()
    }

    /// Calls a method and waits for its response (events in between are skipped).
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        self.request(method, params).await
    }

    async fn request(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        self.next_id += 1;
        let id = format!("{}:{}", self.next_id, uuid::Uuid::new_v4());
        let frame = json!({"type":"req","id":id,"method":method,"params":params}).to_string();
        self.ws
            .send(Message::Text(frame.into()))
            .await
            .map_err(|_| close_of(None))?;
        loop {
            let msg = tokio::time::timeout(self.timeout, self.ws.next())
                .await
                .map_err(|_| ClientError::Timeout)?;
            let txt = match msg {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(
                    Message::Ping(_) | Message::Pong(_) | Message::Binary(_) | Message::Frame(_),
                )) => continue,
                other => return Err(close_of(other)),
            };
            let v: Value =
                serde_json::from_str(&txt).map_err(|e| ClientError::Protocol(e.to_string()))?;
            if v["type"] != "res" || v["id"] != id.as_str() {
                continue;
            }
            if v["ok"] == true {
                return Ok(v["payload"].clone());
            }
            let e = &v["error"];
            return Err(ClientError::Rejected {
                code: e["code"].as_str().unwrap_or("UNKNOWN").into(),
                message: e["message"].as_str().unwrap_or_default().into(),
                details: e.get("details").cloned(),
            });
        }
    }

    /// Closes the session normally.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
