//! What claw does with a frame from the upstream (pure): responses go back to the downstream
//! client verbatim (byte for byte), events are forwarded, and the upstream's own housekeeping
//! (its `tick`s, `connect.challenge`, its `shutdown` notice) stays with claw.

use serde::Deserialize;
use serde_json::Value;
use tokio_tungstenite::tungstenite::{Bytes, Utf8Bytes};

/// A binary WebSocket frame as the text OpenClaw would read from it (its `rawDataToString`:
/// every frame is UTF-8 JSON, whatever its opcode), without a copy; `None` when the bytes are
/// not UTF-8 (no OpenClaw frame can be).
pub fn binary_text(b: Bytes) -> Option<Utf8Bytes> {
    Utf8Bytes::try_from(b).ok()
}

/// What to do with one upstream text frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A response to the downstream request `id`: forward the frame as received.
    Response(String),
    /// An event to forward (the text to send; see [`classify`] for `seq`).
    Event(String),
    /// The upstream says it is stopping (`shutdown`): claw reconnects, the client is not told.
    Shutdown,
    /// Upstream housekeeping or junk: dropped.
    Drop,
}

#[derive(Deserialize)]
struct Peek {
    #[serde(rename = "type")]
    kind: Option<String>,
    id: Option<Value>,
    event: Option<String>,
    seq: Option<Value>,
}

/// Classifies an upstream frame. An event's `seq` is removed: downstream, the sequence belongs to
/// claw (its ticks and pairing events), so a client's gap detection never sees two sequences
/// interleaved, nor the upstream's restart from 1 after a reconnect. Events without `seq` are
/// forwarded as received.
pub fn classify(text: &str) -> Inbound {
    let Ok(p) = serde_json::from_str::<Peek>(text) else {
        return Inbound::Drop;
    };
    match p.kind.as_deref() {
        Some("res") => match p.id {
            Some(Value::String(id)) => Inbound::Response(id),
            _ => Inbound::Drop,
        },
        Some("event") => match p.event.as_deref() {
            Some("tick") | Some("connect.challenge") | None => Inbound::Drop,
            Some("shutdown") => Inbound::Shutdown,
            Some(_) if p.seq.is_none() => Inbound::Event(text.to_string()),
            Some(_) => {
                let Ok(mut v) = serde_json::from_str::<Value>(text) else {
                    return Inbound::Drop;
                };
                if let Some(o) = v.as_object_mut() {
                    o.remove("seq");
                }
                Inbound::Event(v.to_string())
            }
        },
        _ => Inbound::Drop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_forwarded_byte_for_byte() {
        let t = r#"{"type":"res","id":"7:abc","ok":true,"payload":{"x":"\u00e9 \ud83d\ude00","n":1.50}}"#;
        assert_eq!(classify(t), Inbound::Response("7:abc".into()));
    }

    #[test]
    fn events_lose_their_seq_and_housekeeping_stays() {
        let Inbound::Event(e) =
            classify(r#"{"type":"event","event":"presence","payload":{"a":1},"seq":9}"#)
        else {
            panic!()
        };
        let v: Value = serde_json::from_str(&e).unwrap();
        assert!(v.get("seq").is_none());
        assert_eq!(v["payload"]["a"], 1);
        let raw = r#"{"type":"event","event":"chat","payload":{}}"#;
        assert_eq!(classify(raw), Inbound::Event(raw.into()));
        assert_eq!(
            classify(r#"{"type":"event","event":"tick","payload":{},"seq":1}"#),
            Inbound::Drop
        );
        assert_eq!(
            classify(
                r#"{"type":"event","event":"shutdown","payload":{"reason":"gateway stopping"}}"#
            ),
            Inbound::Shutdown
        );
    }

    #[test]
    fn binary_frames_are_read_as_text_when_utf8() {
        let t = r#"{"type":"res","id":"1","ok":true,"payload":{"x":"é"}}"#;
        let got = binary_text(Bytes::from(t.as_bytes().to_vec())).unwrap();
        assert_eq!(got.as_str(), t);
        assert_eq!(classify(&got), Inbound::Response("1".into()));
        for bad in [vec![0xff, 0xfe], vec![b'{', 0xc3], vec![0xed, 0xa0, 0x80]] {
            assert!(binary_text(Bytes::from(bad.clone())).is_none(), "{bad:?}");
        }
        assert_eq!(binary_text(Bytes::new()).unwrap().as_str(), "");
    }

    #[test]
    fn hostile_frames_are_dropped() {
        for t in [
            "",
            "x",
            "[]",
            "null",
            r#"{"type":"res","id":5}"#,
            r#"{"type":"res"}"#,
            r#"{"type":"req","id":"1","method":"x"}"#,
            r#"{"type":"event"}"#,
            r#"{"type":7}"#,
            &"[".repeat(10_000),
        ] {
            assert_eq!(classify(t), Inbound::Drop, "{t:?}");
        }
    }
}
