//! The tunnel's wire messages (pure): every QUIC stream a device opens starts with one header
//! line saying what it is for ([`StreamHeader`]); the control stream then carries JSON lines
//! both ways ([`ClientMsg`], [`ServerMsg`]), and refusals name a [`TunnelCode`].
//!
//! Framing: one JSON object per line, at most [`MAX_LINE`] bytes. Unknown fields are ignored so
//! newer peers can extend messages; an unknown error code is kept as [`TunnelCode::Other`].

use serde::{Deserialize, Serialize};

/// Longest control line accepted.
pub const MAX_LINE: usize = 16 * 1024;

/// The UDP socket buffer (send and receive, bytes) each tunnel endpoint asks for. Here, not in
/// the tunnel crate, because `claw doctor` (`udp.buffers`) compares the kernel's cap against it.
pub const SOCKET_BUFFER: u64 = 4 * 1024 * 1024;

/// Most direct-path candidates one side offers ([`ClientMsg::Candidates`],
/// [`ServerMsg::Candidates`]); a receiver ignores any beyond these.
pub const MAX_CANDIDATES: usize = 8;

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
    /// A byte stream to the gateway's SSH forward (`--ssh`), for `claw tunnel proxy ssh`: an
    /// OpenSSH `ProxyCommand` reaching a gateway that has no reachable port.
    Ssh,
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
    /// Hole punching: the UDP addresses the device may be reached at directly (its local
    /// addresses and what the other side saw), sent in answer to [`ServerMsg::Candidates`] on
    /// a relayed connection. At most [`MAX_CANDIDATES`] are used. Older gateways ignore it.
    Candidates {
        /// `IP:PORT` strings.
        addrs: Vec<std::net::SocketAddr>,
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

/// Why the gateway refused a device (`ServerMsg::Error.code`): stable snake_case strings on the
/// wire. A code this build does not know is kept, as [`TunnelCode::Other`], so a newer gateway's
/// refusal still reaches the user with its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TunnelCode {
    /// The pairing code's secret is wrong.
    CodeWrong,
    /// The pairing code expired.
    CodeExpired,
    /// The pairing code was already redeemed.
    CodeUsed,
    /// Too many wrong tries: the code is burned.
    CodeBurned,
    /// No such pairing code.
    CodeUnknown,
    /// Too many attempts from this source; wait.
    RateLimited,
    /// The key is not paired with the gateway.
    NotPaired,
    /// The device was revoked (or removed): final, re-pairing is needed.
    Revoked,
    /// The operator rejected the pairing request.
    Rejected,
    /// The device broke the protocol.
    BadRequest,
    /// The gateway failed; its log says why.
    ServerError,
    /// A fault (the store); retryable.
    Unavailable,
    /// The device name is not printable text.
    InvalidName,
    /// No service exposed by that name.
    NotExposed,
    /// The exposed service does not answer.
    Unreachable,
    /// A code this build does not know.
    Other(String),
}

impl TunnelCode {
    /// Every known code (not [`TunnelCode::Other`]).
    pub const KNOWN: &'static [TunnelCode] = &[
        TunnelCode::CodeWrong,
        TunnelCode::CodeExpired,
        TunnelCode::CodeUsed,
        TunnelCode::CodeBurned,
        TunnelCode::CodeUnknown,
        TunnelCode::RateLimited,
        TunnelCode::NotPaired,
        TunnelCode::Revoked,
        TunnelCode::Rejected,
        TunnelCode::BadRequest,
        TunnelCode::ServerError,
        TunnelCode::Unavailable,
        TunnelCode::InvalidName,
        TunnelCode::NotExposed,
        TunnelCode::Unreachable,
    ];

    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            TunnelCode::CodeWrong => "code_wrong",
            TunnelCode::CodeExpired => "code_expired",
            TunnelCode::CodeUsed => "code_used",
            TunnelCode::CodeBurned => "code_burned",
            TunnelCode::CodeUnknown => "code_unknown",
            TunnelCode::RateLimited => "rate_limited",
            TunnelCode::NotPaired => "not_paired",
            TunnelCode::Revoked => "revoked",
            TunnelCode::Rejected => "rejected",
            TunnelCode::BadRequest => "bad_request",
            TunnelCode::ServerError => "server_error",
            TunnelCode::Unavailable => "unavailable",
            TunnelCode::InvalidName => "invalid_name",
            TunnelCode::NotExposed => "not_exposed",
            TunnelCode::Unreachable => "unreachable",
            TunnelCode::Other(s) => s,
        }
    }

    /// The code for a wire string (unknown ones kept).
    pub fn parse(s: &str) -> Self {
        Self::KNOWN
            .iter()
            .find(|c| c.as_str() == s)
            .cloned()
            .unwrap_or_else(|| TunnelCode::Other(s.to_string()))
    }

    /// True for the codes after which a tunnel must not reconnect (the device was revoked, or
    /// the gateway forgot it): retrying cannot help.
    pub fn is_final(&self) -> bool {
        matches!(self, TunnelCode::Revoked | TunnelCode::NotPaired)
    }
}

impl std::fmt::Display for TunnelCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TunnelCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TunnelCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(Self::parse(&s))
    }
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
        /// A relay ticket for the device's key, when the gateway serves through relays (absent
        /// otherwise and from older gateways).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        relay_ticket: Option<String>,
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
    /// A fresh relay ticket for this device's key (`claw1.…`): sent after the token on hello
    /// and again well before the last one expires, by a gateway that serves through relays.
    /// Older devices ignore it.
    RelayTicket {
        /// The ticket (bound to the device's key: worthless without it).
        ticket: String,
        /// Its expiry, unix seconds.
        expires_at: u64,
    },
    /// Hole punching: the UDP addresses the gateway may be reached at directly, sent after
    /// hello on a relayed connection by a gateway that punches; the device answers with its own
    /// ([`ClientMsg::Candidates`]) and both then probe. Older devices ignore it.
    Candidates {
        /// `IP:PORT` strings.
        addrs: Vec<std::net::SocketAddr>,
    },
    /// The answer to [`ClientMsg::Probe`].
    Probe {
        /// The gateway's current device-token root generation.
        generation: u64,
    },
    /// Refused; the connection closes after this.
    Error {
        /// Why.
        code: TunnelCode,
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
            StreamHeader::Ssh,
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
    fn error_codes_keep_unknown_ones_and_known_ones_are_distinct() {
        for c in TunnelCode::KNOWN {
            assert_eq!(&TunnelCode::parse(c.as_str()), c);
            let m = ServerMsg::Error {
                code: c.clone(),
                message: "m".into(),
            };
            let line = encode(&m);
            assert_eq!(decode::<ServerMsg>(&line[..line.len() - 1]).unwrap(), m);
        }
        let mut all: Vec<&str> = TunnelCode::KNOWN.iter().map(TunnelCode::as_str).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), TunnelCode::KNOWN.len());
        let newer =
            decode::<ServerMsg>(br#"{"type":"error","code":"quota_exceeded","message":"m"}"#)
                .unwrap();
        assert_eq!(
            newer,
            ServerMsg::Error {
                code: TunnelCode::Other("quota_exceeded".into()),
                message: "m".into()
            }
        );
        assert!(TunnelCode::Revoked.is_final() && !TunnelCode::Unavailable.is_final());
        // An older gateway's `paired` (no relay ticket) still reads.
        let old = br#"{"type":"paired","device_id":"d","device_token":"t","generation":1}"#;
        assert!(matches!(
            decode::<ServerMsg>(old).unwrap(),
            ServerMsg::Paired {
                relay_ticket: None,
                ..
            }
        ));
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
        // Candidates are typed addresses: anything else is refused whole.
        for bad in [
            &br#"{"type":"candidates"}"#[..],
            br#"{"type":"candidates","addrs":"1.2.3.4:5"}"#,
            br#"{"type":"candidates","addrs":["1.2.3.4"]}"#,
            br#"{"type":"candidates","addrs":["1.2.3.4:70000"]}"#,
            br#"{"type":"candidates","addrs":["host.example:80"]}"#,
            br#"{"type":"candidates","addrs":[12345]}"#,
        ] {
            assert!(decode::<ClientMsg>(bad).is_err(), "{bad:?}");
            assert!(decode::<ServerMsg>(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            decode::<ServerMsg>(br#"{"type":"candidates","addrs":["[::1]:9","10.0.0.1:4433"]}"#),
            Ok(ServerMsg::Candidates {
                addrs: vec!["[::1]:9".parse().unwrap(), "10.0.0.1:4433".parse().unwrap()]
            })
        );
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

    fn addrs() -> impl Strategy<Value = Vec<std::net::SocketAddr>> {
        // IP and port only: the text form carries no IPv6 flow label.
        let addr = (any::<std::net::IpAddr>(), any::<u16>())
            .prop_map(|(ip, port)| std::net::SocketAddr::new(ip, port));
        prop::collection::vec(addr, 0..=MAX_CANDIDATES)
    }

    fn header() -> impl Strategy<Value = StreamHeader> {
        prop_oneof![
            Just(StreamHeader::Control),
            Just(StreamHeader::Gateway),
            Just(StreamHeader::Ssh),
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
            addrs().prop_map(|addrs| ClientMsg::Candidates { addrs }),
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
                        relay_ticket: None,
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
            (text(), text()).prop_map(|(code, message)| ServerMsg::Error {
                code: TunnelCode::parse(&code),
                message
            }),
            (text(), any::<u64>())
                .prop_map(|(ticket, expires_at)| ServerMsg::RelayTicket { ticket, expires_at }),
            addrs().prop_map(|addrs| ServerMsg::Candidates { addrs }),
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
