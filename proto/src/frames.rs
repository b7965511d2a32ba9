//! JSON frames: `{"type":"req"|"res"|"event", ...}` carried in WebSocket text messages.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest WebSocket message accepted after authentication (advertised as `policy.maxPayload`).
pub const MAX_PAYLOAD: usize = 1024 * 1024;
/// Largest message accepted before authentication; the `connect` request is small.
pub const MAX_PREAUTH_PAYLOAD: usize = 64 * 1024;
/// Longest request id accepted.
pub const MAX_ID_LEN: usize = 256;
/// Longest method name accepted.
pub const MAX_METHOD_LEN: usize = 128;

/// A request frame from the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The client's id, echoed in the response (a string on the wire).
    pub id: String,
    /// Method name, e.g. `health`.
    pub method: String,
    /// Parameters (`null` when absent).
    pub params: Value,
}

/// Why an incoming text message is not a usable request.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// Not JSON at all.
    #[error("frame is not JSON")]
    NotJson,
    /// JSON, but not a request frame.
    #[error("invalid frame: {0}")]
    Invalid(&'static str),
    /// Too large.
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
}

#[derive(Deserialize)]
struct RawFrame {
    #[serde(rename = "type")]
    kind: Option<String>,
    id: Option<Value>,
    method: Option<Value>,
    #[serde(default)]
    params: Value,
}

/// Parses a text message as a request frame. Numeric ids are accepted and turned into strings.
pub fn parse_request(text: &str, limit: usize) -> Result<Request, FrameError> {
    if text.len() > limit {
        return Err(FrameError::TooLarge(text.len()));
    }
    // serde would fill a struct from a JSON array by position; frames are objects only.
    if !text.trim_start().starts_with('{') {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => FrameError::Invalid("not an object frame"),
            Err(_) => FrameError::NotJson,
        });
    }
    let raw: RawFrame = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) if e.is_data() => return Err(FrameError::Invalid("not an object frame")),
        Err(_) => return Err(FrameError::NotJson),
    };
    if raw.kind.as_deref() != Some("req") {
        return Err(FrameError::Invalid("type must be \"req\""));
    }
    let id = match raw.id {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_LEN => s,
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(FrameError::Invalid("id must be a non-empty string")),
    };
    let method = match raw.method {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_METHOD_LEN => s,
        _ => return Err(FrameError::Invalid("method must be a non-empty string")),
    };
    Ok(Request {
        id,
        method,
        params: raw.params,
    })
}

/// An error object as OpenClaw sends it in a failed response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorShape {
    /// Upper-case error code (`INVALID_REQUEST`, `FORBIDDEN`, `NOT_PAIRED`, `UNAVAILABLE`, …).
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// Structured details (`details.code`, `recommendedNextStep`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// Whether retrying the same request may succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// Suggested wait before retrying.
    #[serde(rename = "retryAfterMs", skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ErrorShape {
    /// An error with a code and message only.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_string(),
            message: message.into(),
            details: None,
            retryable: None,
            retry_after_ms: None,
        }
    }
    /// Adds details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Reads the `error` of a failed response as a client must: any JSON gives an answer
    /// (code `UNKNOWN` and an empty message when absent, texts cut to [`MAX_ERROR_TEXT`]
    /// characters, a `retryAfterMs` kept only when it is a number).
    pub fn from_wire(e: &Value) -> Self {
        let text = |k: &str, default: &str| -> String {
            e.get(k)
                .and_then(Value::as_str)
                .unwrap_or(default)
                .chars()
                .take(MAX_ERROR_TEXT)
                .collect()
        };
        Self {
            code: text("code", "UNKNOWN"),
            message: text("message", ""),
            details: e.get("details").filter(|d| !d.is_null()).cloned(),
            retryable: e.get("retryable").and_then(Value::as_bool),
            retry_after_ms: e.get("retryAfterMs").and_then(Value::as_u64),
        }
    }

    /// `details.code`, if a string.
    pub fn detail_code(&self) -> Option<&str> {
        self.details.as_ref()?.get("code")?.as_str()
    }

    /// `details.recommendedNextStep`, if a string.
    pub fn next_step(&self) -> Option<&str> {
        self.details.as_ref()?.get("recommendedNextStep")?.as_str()
    }
}

/// Longest text a client keeps from a gateway's error object (for messages and logs).
pub const MAX_ERROR_TEXT: usize = 512;

/// A successful response frame.
pub fn response_ok(id: &str, payload: &Value) -> String {
    serde_json::json!({"type":"res","id":id,"ok":true,"payload":payload}).to_string()
}

/// A failed response frame.
pub fn response_err(id: &str, error: &ErrorShape) -> String {
    serde_json::json!({"type":"res","id":id,"ok":false,"error":error}).to_string()
}

/// An event frame; `seq` is present for broadcast events (`tick`, `shutdown`, …).
pub fn event(name: &str, payload: &Value, seq: Option<u64>) -> String {
    match seq {
        Some(seq) => {
            serde_json::json!({"type":"event","event":name,"payload":payload,"seq":seq}).to_string()
        }
        None => serde_json::json!({"type":"event","event":name,"payload":payload}).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_cli_request() {
        let r = parse_request(
            r#"{"type":"req","id":"1:9ab81e59","method":"health","params":{}}"#,
            MAX_PAYLOAD,
        )
        .unwrap();
        assert_eq!(r.id, "1:9ab81e59");
        assert_eq!(r.method, "health");
        let r = parse_request(r#"{"type":"req","id":7,"method":"status"}"#, MAX_PAYLOAD).unwrap();
        assert_eq!(r.id, "7");
        assert_eq!(r.params, Value::Null);
    }

    #[test]
    fn hostile_frames_are_refused() {
        let cases: &[(&str, FrameError)] = &[
            ("this is not json", FrameError::NotJson),
            ("{", FrameError::NotJson),
            ("", FrameError::NotJson),
            ("[]", FrameError::Invalid("not an object frame")),
            ("42", FrameError::Invalid("not an object frame")),
            ("null", FrameError::Invalid("not an object frame")),
            (
                r#"["req","a1","health",{}]"#,
                FrameError::Invalid("not an object frame"),
            ),
            (
                r#"  ["req","c1","connect",{"minProtocol":4}]"#,
                FrameError::Invalid("not an object frame"),
            ),
            (
                r#"{"type":"res","id":"1","method":"x"}"#,
                FrameError::Invalid("type must be \"req\""),
            ),
            (
                r#"{"type":"req","method":"x"}"#,
                FrameError::Invalid("id must be a non-empty string"),
            ),
            (
                r#"{"type":"req","id":"","method":"x"}"#,
                FrameError::Invalid("id must be a non-empty string"),
            ),
            (
                r#"{"type":"req","id":{},"method":"x"}"#,
                FrameError::Invalid("id must be a non-empty string"),
            ),
            (
                r#"{"type":"req","id":"1","method":5}"#,
                FrameError::Invalid("method must be a non-empty string"),
            ),
            (
                r#"{"type":"req","id":"1"}"#,
                FrameError::Invalid("method must be a non-empty string"),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_request(text, MAX_PAYLOAD).unwrap_err(),
                *want,
                "{text}"
            );
        }
        let big = format!(
            r#"{{"type":"req","id":"1","method":"x","params":"{}"}}"#,
            "a".repeat(100)
        );
        assert_eq!(
            parse_request(&big, 50).unwrap_err(),
            FrameError::TooLarge(big.len())
        );
        let long_id = format!(
            r#"{{"type":"req","id":"{}","method":"x"}}"#,
            "i".repeat(MAX_ID_LEN + 1)
        );
        assert!(parse_request(&long_id, MAX_PAYLOAD).is_err());
        // Deep nesting is refused by serde_json's recursion limit, not a stack overflow.
        let deep = format!(
            r#"{{"type":"req","id":"1","method":"x","params":{}{}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert!(parse_request(&deep, usize::MAX).is_err());
    }

    #[test]
    fn frames_serialize_like_openclaw() {
        assert_eq!(
            response_ok("r0", &serde_json::json!({"ok":true})),
            r#"{"id":"r0","ok":true,"payload":{"ok":true},"type":"res"}"#
        );
        let e = ErrorShape::new("FORBIDDEN", "missing scope: operator.admin");
        let v: Value = serde_json::from_str(&response_err("x", &e)).unwrap();
        assert_eq!(v["error"]["code"], "FORBIDDEN");
        assert!(v["error"].get("details").is_none());
        let v: Value =
            serde_json::from_str(&event("tick", &serde_json::json!({"ts":1}), Some(3))).unwrap();
        assert_eq!(v["seq"], 3);
        assert_eq!(v["type"], "event");
    }
}

/// Properties (proptest): the decoder never panics, accepts exactly the frames the rules allow,
/// and a request serialized by anyone parses back to itself.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Map};

    /// JSON values without floats (serde_json does not promise that a float prints and parses
    /// back to the same bits), a few levels deep.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            ".{0,16}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(".{0,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A value for a frame key: mostly plausible, sometimes anything.
    fn field(plausible: &'static [&'static str]) -> impl Strategy<Value = Option<Value>> {
        prop::option::of(prop_oneof![
            prop::sample::select(plausible).prop_map(|s| Value::String(s.to_string())),
            ".{0,300}".prop_map(Value::String),
            any::<i64>().prop_map(Value::from),
            json_value(),
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn parse_never_panics(text in ".{0,512}") {
            let _ = parse_request(&text, MAX_PREAUTH_PAYLOAD);
            let _ = parse_request(&text, 8);
        }

        #[test]
        fn parse_never_panics_on_cut_or_spliced_frames(
            frame in json_value(),
            cut in any::<prop::sample::Index>(),
            junk in ".{0,8}",
        ) {
            let text = json!({"type":"req","id":"1","method":"m","params":frame}).to_string();
            let mut at = cut.index(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let _ = parse_request(&text[..at], MAX_PAYLOAD);
            let spliced = format!("{}{junk}{}", &text[..at], &text[at..]);
            let _ = parse_request(&spliced, MAX_PAYLOAD);
        }

        /// Any JSON object is accepted exactly when `type` is "req", `id` a non-empty string of at
        /// most MAX_ID_LEN bytes or a number, and `method` a non-empty string of at most
        /// MAX_METHOD_LEN bytes.
        #[test]
        fn object_frames_follow_the_rules(
            kind in field(&["req", "res", "event"]),
            id in field(&["1", "c1", ""]),
            method in field(&["connect", "health", ""]),
            params in prop::option::of(json_value()),
            extra in prop::collection::btree_map(".{0,8}", json_value(), 0..3),
        ) {
            let mut m: Map<String, Value> = extra.into_iter().collect();
            for (k, v) in [("type", &kind), ("id", &id), ("method", &method), ("params", &params)] {
                match v {
                    Some(v) => m.insert(k.to_string(), v.clone()),
                    None => m.remove(k),
                };
            }
            let text = Value::Object(m).to_string();
            let want_id = match &id {
                Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_LEN => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            let want_method = match &method {
                Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_METHOD_LEN => Some(s.clone()),
                _ => None,
            };
            let ok = kind == Some(json!("req")) && want_id.is_some() && want_method.is_some();
            match parse_request(&text, MAX_PAYLOAD) {
                Ok(r) => {
                    prop_assert!(ok, "accepted {text}");
                    prop_assert_eq!(Some(r.id), want_id);
                    prop_assert_eq!(Some(r.method), want_method);
                    prop_assert_eq!(r.params, params.unwrap_or(Value::Null));
                }
                Err(e) => prop_assert!(!ok, "refused {text}: {e}"),
            }
        }

        /// parse ∘ serialize: a request written by any JSON encoder parses back to itself.
        #[test]
        fn a_serialized_request_parses_back(
            id in ".{1,64}",
            method in ".{1,32}",
            params in json_value(),
            pretty in any::<bool>(),
        ) {
            let frame = json!({"type":"req","id":id,"method":method,"params":params});
            let text = if pretty {
                serde_json::to_string_pretty(&frame).unwrap()
            } else {
                frame.to_string()
            };
            let r = parse_request(&text, MAX_PAYLOAD).unwrap();
            prop_assert_eq!(r, Request { id, method, params });
        }

        #[test]
        fn numeric_ids_become_strings(id in any::<i64>(), method in "[a-z.]{1,20}") {
            let text = json!({"type":"req","id":id,"method":method}).to_string();
            let r = parse_request(&text, MAX_PAYLOAD).unwrap();
            prop_assert_eq!(r.id, id.to_string());
            prop_assert_eq!(r.params, Value::Null);
        }

        #[test]
        fn over_the_limit_is_too_large(pad in 0usize..64, limit in 0usize..64) {
            let text = format!(r#"{{"type":"req","id":"1","method":"m","params":"{}"}}"#, "a".repeat(pad));
            let r = parse_request(&text, limit);
            if text.len() > limit {
                prop_assert_eq!(r, Err(FrameError::TooLarge(text.len())));
            } else {
                prop_assert!(r.is_ok());
            }
        }
    }
}
