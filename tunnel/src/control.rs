//! Tunnel control messages (pure): every QUIC stream starts with one header line saying what it
//! is for; the control stream then carries JSON lines both ways.
//!
//! Framing: one JSON object per line, at most [`MAX_LINE`] bytes. Unknown fields are ignored so
//! newer peers can extend messages.

use serde::{Deserialize, Serialize};

/// Longest control line accepted.
pub const MAX_LINE: usize = 16 * 1024;

/// First line of every stream opened by a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "open", rename_all = "snake_case")]
pub enum StreamHeader {
    /// The control stream (one per connection).
    Control,
    /// A byte stream to the gateway's WebSocket port.
    Gateway,
    /// A byte stream to a service the gateway exposes by name (`--expose NAME=127.0.0.1:PORT`).
    Expose {
        /// The exposed name.
        name: String,
    },
}

/// Device → gateway on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Redeem a pairing code for this connection's key.
    Pair {
        /// The one-time code.
        code: String,
        /// Device name.
        #[serde(default)]
        name: Option<String>,
        /// Platform (e.g. `linux`).
        #[serde(default)]
        platform: String,
    },
    /// A paired device asks which root generation the gateway is at, without being issued
    /// anything (`claw doctor`'s drift check).
    Probe,
    /// A paired device says hello; the gateway answers with its current token.
    Hello {
        /// The root generation of the token the device holds (0 = none).
        #[serde(default)]
        generation: u64,
    },
}

/// What a device learns about the gateway's SSH forward at pairing, so the `ssh -N -L` line it
/// prints names the real ports and verifies the host key on first use. The host key is the
/// gateway's identity key, so the device checks it against the fingerprint it pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SshHint {
    /// The SSH forward's TCP port.
    pub port: u16,
    /// The gateway's WebSocket port (the `-L` target on the gateway's loopback).
    pub gateway_port: u16,
    /// The host key as an OpenSSH public key line (`ssh-ed25519 AAAA…`).
    pub host_key: String,
}

/// Gateway → device on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// Paired: here is everything the device stores.
    Paired {
        /// The device's id, as the gateway computed it from the TLS key.
        device_id: String,
        /// The device token (a secret).
        device_token: String,
        /// Its root generation.
        generation: u64,
        /// The gateway's SSH forward, when it runs one (absent from older gateways).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ssh: Option<SshHint>,
    },
    /// Waiting for `claw devices approve`.
    Pending {
        /// The pending request id.
        request_id: String,
    },
    /// A (new) device token: sent on hello and pushed after a rotation.
    Token {
        /// The device token (a secret).
        device_token: String,
        /// Its root generation.
        generation: u64,
    },
    /// The answer to [`ClientMsg::Probe`].
    Probe {
        /// The gateway's current device-token root generation.
        generation: u64,
    },
    /// Refused; the connection closes after this.
    Error {
        /// Stable code: `code_wrong`, `code_expired`, `code_used`, `code_burned`, `code_unknown`, `rate_limited`,
        /// `not_paired`, `revoked`, `rejected`, `bad_request`, `server_error`.
        code: String,
        /// Human message.
        message: String,
    },
}

/// Why a control line was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControlError {
    /// Longer than [`MAX_LINE`].
    #[error("control line too long")]
    TooLong,
    /// Not a known message.
    #[error("bad control message: {0}")]
    Bad(String),
}

/// Encodes a message as one line (with the trailing newline).
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut v = serde_json::to_vec(msg).expect("control messages serialize");
    v.push(b'\n');
    v
}

/// Decodes one line (without its newline).
pub fn decode<'a, T: Deserialize<'a>>(line: &'a [u8]) -> Result<T, ControlError> {
    if line.len() > MAX_LINE {
        return Err(ControlError::TooLong);
    }
    serde_json::from_slice(line)
        .map_err(|e| ControlError::Bad(e.to_string().chars().take(120).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for h in [
            StreamHeader::Control,
            StreamHeader::Gateway,
            StreamHeader::Expose { name: "oc".into() },
        ] {
            let line = encode(&h);
            assert_eq!(*line.last().unwrap(), b'\n');
            assert_eq!(decode::<StreamHeader>(&line[..line.len() - 1]).unwrap(), h);
        }
        let m = ClientMsg::Pair {
            code: "c".into(),
            name: Some("n".into()),
            platform: "linux".into(),
        };
        let line = encode(&m);
        assert_eq!(decode::<ClientMsg>(&line[..line.len() - 1]).unwrap(), m);
        let s = ServerMsg::Token {
            device_token: "t".into(),
            generation: 3,
        };
        let line = encode(&s);
        assert_eq!(decode::<ServerMsg>(&line[..line.len() - 1]).unwrap(), s);
        // Unknown fields are tolerated.
        assert_eq!(
            decode::<ClientMsg>(br#"{"type":"hello","generation":2,"x":1}"#).unwrap(),
            ClientMsg::Hello { generation: 2 }
        );
    }

    #[test]
    fn hostile_lines() {
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            b"null",
            br#"{"type":"nope"}"#,
            br#"{"open":"shell"}"#,
            b"\xff\xfe",
            br#"{"type":"pair"}"#,
        ] {
            assert!(
                decode::<ClientMsg>(bad).is_err() || decode::<StreamHeader>(bad).is_err(),
                "{bad:?}"
            );
        }
        assert!(decode::<StreamHeader>(br#"{"open":"shell"}"#).is_err());
        let big = vec![b' '; MAX_LINE + 1];
        assert_eq!(decode::<ClientMsg>(&big), Err(ControlError::TooLong));
    }
}

/// Properties (proptest): decode ∘ encode is the identity for every control message and stream
/// header, and decoding arbitrary bytes never panics.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        ".{0,48}"
    }

    fn header() -> impl Strategy<Value = StreamHeader> {
        prop_oneof![
            Just(StreamHeader::Control),
            Just(StreamHeader::Gateway),
            text().prop_map(|name| StreamHeader::Expose { name }),
        ]
    }

    fn client_msg() -> impl Strategy<Value = ClientMsg> {
        prop_oneof![
            (text(), prop::option::of(text()), text()).prop_map(|(code, name, platform)| {
                ClientMsg::Pair {
                    code,
                    name,
                    platform,
                }
            }),
            any::<u64>().prop_map(|generation| ClientMsg::Hello { generation }),
            Just(ClientMsg::Probe),
        ]
    }

    fn server_msg() -> impl Strategy<Value = ServerMsg> {
        prop_oneof![
            (
                text(),
                text(),
                any::<u64>(),
                proptest::option::of((any::<u16>(), any::<u16>(), text()))
            )
                .prop_map(|(device_id, device_token, generation, ssh)| {
                    ServerMsg::Paired {
                        device_id,
                        device_token,
                        generation,
                        ssh: ssh.map(|(port, gateway_port, host_key)| SshHint {
                            port,
                            gateway_port,
                            host_key,
                        }),
                    }
                }),
            text().prop_map(|request_id| ServerMsg::Pending { request_id }),
            (text(), any::<u64>()).prop_map(|(device_token, generation)| ServerMsg::Token {
                device_token,
                generation
            }),
            any::<u64>().prop_map(|generation| ServerMsg::Probe { generation }),
            (text(), text()).prop_map(|(code, message)| ServerMsg::Error { code, message }),
        ]
    }

    /// Encodes one line and decodes it back, checking the framing on the way.
    fn round_trip<T>(m: &T) -> Result<T, TestCaseError>
    where
        T: Serialize + for<'a> Deserialize<'a>,
    {
        let line = encode(m);
        prop_assert_eq!(line.last(), Some(&b'\n'));
        let body = &line[..line.len() - 1];
        prop_assert!(!body.contains(&b'\n'), "a message spans lines");
        decode::<T>(body).map_err(|e| TestCaseError::fail(e.to_string()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn stream_headers_round_trip(h in header()) {
            prop_assert_eq!(round_trip(&h)?, h);
        }

        #[test]
        fn client_messages_round_trip(m in client_msg()) {
            prop_assert_eq!(round_trip(&m)?, m);
        }

        #[test]
        fn server_messages_round_trip(m in server_msg()) {
            prop_assert_eq!(round_trip(&m)?, m);
        }

        #[test]
        fn decoding_anything_never_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..256),
            s in r#"\{"(type|open)":"[a-z_]{0,8}"(,"[a-z_]{1,12}":("[^"]{0,8}"|[0-9]{1,21}|null|true))*\}"#,
        ) {
            for line in [&bytes[..], s.as_bytes()] {
                let _ = decode::<ClientMsg>(line);
                let _ = decode::<ServerMsg>(line);
                let _ = decode::<StreamHeader>(line);
            }
        }
    }
}
