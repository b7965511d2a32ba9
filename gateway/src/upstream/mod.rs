//! Upstream mode (`claw gateway run --upstream ws://127.0.0.1:PORT`): claw in front of a real
//! OpenClaw gateway. Devices authenticate to claw as always; after a client's `hello-ok` claw
//! opens an upstream session for it and carries its traffic both ways, answering only the
//! methods it owns (its device pairing and tokens, root rotation) itself.
//!
//! Pure protocol logic first, the IO shell last:
//! - [`url`]: the loopback-only `--upstream` URL.
//! - [`credential`]: where the upstream's shared token comes from, read afresh at every connect.
//! - [`route`] + `method_scopes`: who answers a method, and claw's scope check before anything
//!   is forwarded (OpenClaw's own per-method scopes).
//! - [`handshake`]: the upstream `connect` claw signs for a client, refusal classes, the order of
//!   secrets to try, backoff.
//! - [`inbound`]: what happens to each upstream frame.
//! - [`backlog`]: the bound on upstream bytes queued for a slow downstream reader.
//! - [`identity`]: claw's upstream key per downstream device and the device token it was given.
//! - [`link`]: the IO shell — one upstream WebSocket per downstream session.

pub mod backlog;
pub mod credential;
pub mod handshake;
pub mod identity;
pub mod inbound;
pub mod link;
pub(crate) mod method_scopes;
pub mod route;
pub mod url;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

pub use credential::{CredentialError, CredentialSource};
pub use link::UpstreamHandle;
pub use url::{parse_upstream_url, UpstreamUrl, UrlError};

/// Upstream sessions one downstream device may hold at once.
pub const MAX_SESSIONS_PER_DEVICE: usize = 32;
/// Requests one session may have in flight upstream.
pub const MAX_IN_FLIGHT: usize = 256;
/// Bytes one session may have queued towards the upstream (OpenClaw's `maxBufferedBytes`).
pub const MAX_BUFFERED_BYTES: usize = 50 * 1024 * 1024;
/// Largest upstream message claw forwards: OpenClaw's own `MAX_PAYLOAD_BYTES` (25 MiB, its
/// `server-constants`); the downstream socket's write buffer holds one.
pub const MAX_UPSTREAM_MESSAGE: usize = 25 * 1024 * 1024;
/// Bytes of upstream frames one downstream socket may have queued (OpenClaw's
/// `MAX_BUFFERED_BYTES`, 50 MiB); past it the client is a slow consumer ([`backlog`]).
pub const MAX_DOWNSTREAM_BACKLOG: usize = 50 * 1024 * 1024;

/// `--upstream` and its credential.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// The OpenClaw gateway.
    pub url: UpstreamUrl,
    /// Its shared token's source.
    pub credential: CredentialSource,
}

/// What `gateway status` shows about the upstream.
#[derive(Debug, Default, Clone)]
struct Health {
    reachable: bool,
    authenticated: bool,
    last_error: Option<String>,
    last_ok_ms: u64,
}

/// The upstream's methods and events, from its latest `hello-ok`.
#[derive(Debug, Default, Clone)]
struct Features {
    methods: Vec<String>,
    events: Vec<String>,
}

/// Upstream mode's shared state (one per gateway).
#[derive(Debug)]
pub struct Upstream {
    /// Configuration.
    pub config: UpstreamConfig,
    identities: identity::Identities,
    health: Mutex<Health>,
    features: Mutex<Option<Features>>,
    sessions: Arc<AtomicUsize>,
    per_device: crate::limits::PerKeyLimit<String>,
    device_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Re-pairs carried out (a refused secret replaced without the client noticing).
    pub repairs: AtomicU64,
}

impl Upstream {
    /// Upstream mode for a gateway whose home is `home_root`.
    pub fn new(config: UpstreamConfig, home_root: &std::path::Path) -> Arc<Self> {
        Arc::new(Self {
            config,
            identities: identity::Identities::new(home_root),
            health: Mutex::default(),
            features: Mutex::default(),
            sessions: Arc::default(),
            per_device: crate::limits::PerKeyLimit::new(MAX_SESSIONS_PER_DEVICE),
            device_locks: Mutex::default(),
            repairs: AtomicU64::new(0),
        })
    }

    fn device_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.device_locks.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() > 4096 {
            m.retain(|_, l| Arc::strong_count(l) > 1);
        }
        m.entry(name.to_string()).or_default().clone()
    }

    fn note_ok(&self, features: Option<Features>) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        h.reachable = true;
        h.authenticated = true;
        h.last_error = None;
        h.last_ok_ms = crate::now_ms();
        drop(h);
        if let Some(f) = features {
            *self.features.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
        }
    }

    fn note_error(&self, reachable: bool, why: &str) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        h.reachable = reachable;
        h.authenticated = false;
        h.last_error = Some(why.to_string());
    }

    /// The last error, if the upstream is not serving.
    pub fn last_error(&self) -> Option<String> {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_error
            .clone()
    }

    /// `hello-ok.features.methods` for a downstream client: the upstream's methods (from its
    /// latest `hello-ok`) and claw's, without duplicates.
    pub fn advertised_methods(&self, claw: &[&'static str]) -> Vec<String> {
        let mut out: Vec<String> = self
            .features
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|f| f.methods.clone())
            .unwrap_or_default();
        for m in claw {
            if !out.iter().any(|x| x == m) {
                out.push(m.to_string());
            }
        }
        out
    }

    /// `hello-ok.features.events` for a downstream client: claw's [`claw_proto::hello::EVENTS`]
    /// then the upstream's (from its latest `hello-ok`; forwarded by [`inbound`]), without
    /// duplicates. Before the upstream ever answered (its first connect is under way at start,
    /// [`link::probe`]) this is claw's list alone: claw advertises only what it knows is sent.
    pub fn advertised_events(&self) -> Vec<String> {
        let theirs = self
            .features
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|f| f.events.clone())
            .unwrap_or_default();
        claw_proto::hello::union(claw_proto::hello::EVENTS, &theirs)
    }

    /// The `upstream` object of `gateway.status`.
    pub fn status_json(&self) -> Value {
        let h = self
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let f = self
            .features
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (methods, events) = f.map_or((0, 0), |f| (f.methods.len(), f.events.len()));
        json!({
            "methods": methods,
            "events": events,
            "url": self.config.url.to_ws(),
            "credential": self.config.credential.describe(),
            "reachable": h.reachable,
            "authenticated": h.authenticated,
            "sessions": self.sessions.load(Ordering::Relaxed),
            "lastError": h.last_error,
            "lastOkAtMs": if h.last_ok_ms == 0 { Value::Null } else { json!(h.last_ok_ms) },
            "repairs": self.repairs.load(Ordering::Relaxed),
        })
    }
}

/// Upstream mode's error for a call claw could not carry: retryable `UNAVAILABLE` naming the
/// upstream and why (never an auth close: the client's credentials for claw are fine).
pub fn unavailable(url: &UpstreamUrl, why: &str) -> crate::protocol::frames::ErrorShape {
    use crate::protocol::codes;
    let mut e = crate::protocol::frames::ErrorShape::new(
        codes::UNAVAILABLE,
        format!("upstream {url} unavailable: {why}"),
    )
    .with_details(json!({
        "code": codes::UPSTREAM_UNAVAILABLE,
        "upstream": url.to_ws(),
        "recommendedNextStep": "wait_then_retry",
        "pauseReconnect": false,
    }));
    e.retryable = Some(true);
    e.retry_after_ms = Some(1_000);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_is_retryable_and_names_the_upstream() {
        let url = parse_upstream_url("ws://127.0.0.1:4000").unwrap();
        let e = unavailable(&url, "connection refused");
        assert_eq!(e.code, crate::protocol::codes::UNAVAILABLE);
        assert_eq!(e.retryable, Some(true));
        assert!(e.message.contains("ws://127.0.0.1:4000/"));
        assert!(e.message.contains("connection refused"));
        assert_eq!(
            e.detail_code(),
            Some(crate::protocol::codes::UPSTREAM_UNAVAILABLE)
        );
    }

    #[test]
    fn advertised_events_are_claws_then_the_upstreams() {
        let cfg = UpstreamConfig {
            url: parse_upstream_url("ws://127.0.0.1:4000").unwrap(),
            credential: CredentialSource::Value("t".into()),
        };
        let dir = tempfile::tempdir().unwrap();
        let up = Upstream::new(cfg, dir.path());
        let claw: Vec<String> = claw_proto::hello::EVENTS
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(up.advertised_events(), claw, "before the upstream answered");
        up.note_ok(Some(Features {
            methods: vec![],
            events: vec!["tick".into(), "chat".into(), "node.invoke.request".into()],
        }));
        let got = up.advertised_events();
        assert_eq!(&got[..claw.len()], &claw[..]);
        assert_eq!(&got[claw.len()..], &["chat", "node.invoke.request"]);
        assert_eq!(up.status_json()["events"], 3);
    }

    #[test]
    fn advertised_methods_are_a_union() {
        let cfg = UpstreamConfig {
            url: parse_upstream_url("ws://127.0.0.1:4000").unwrap(),
            credential: CredentialSource::Value("t".into()),
        };
        let dir = tempfile::tempdir().unwrap();
        let up = Upstream::new(cfg, dir.path());
        assert_eq!(up.advertised_methods(&["health"]), vec!["health"]);
        up.note_ok(Some(Features {
            methods: vec!["health".into(), "cron.list".into()],
            events: vec![],
        }));
        assert_eq!(
            up.advertised_methods(&["health", "device.pair.list"]),
            vec!["health", "cron.list", "device.pair.list"]
        );
        let s = up.status_json();
        assert_eq!(s["authenticated"], true);
        assert_eq!(s["events"], 0);
        assert!(!s.to_string().contains("\"t\""));
    }
}
