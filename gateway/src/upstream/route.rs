//! Who answers a request in upstream mode, and whether the caller may make it (pure).
//!
//! claw answers the methods it owns (its device pairing and tokens, its root rotation); every
//! other method goes upstream — but only after claw checked the caller's scopes against the
//! scope OpenClaw itself declares for the method (`method_scopes`), so a device token
//! holding `operator.read` never reaches an upstream admin method, whatever the upstream would
//! allow. Methods OpenClaw does not declare need `operator.admin` (OpenClaw's own default).

use serde_json::Value;

use super::method_scopes::METHOD_SCOPES;
use crate::protocol::frames::ErrorShape;

/// Methods claw answers itself in upstream mode.
pub fn claw_owns(method: &str) -> bool {
    method.starts_with("device.pair.")
        || method.starts_with("device.token.")
        || method == "gateway.token.rotate"
        || method == "device.scopes.set"
}

/// What a method needs from its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// An operator scope.
    Scope(&'static str),
    /// A `role: "node"` client.
    Node,
}

/// The scope `method` (with `params`) requires, as OpenClaw 2026.9.6 resolves it. Methods whose
/// scope depends on the params (`dynamic`) get the params' answer where OpenClaw's rule is
/// simple, else its strictest lower bound for the call (`operator.write`).
pub fn required(method: &str, params: &Value) -> Need {
    let declared = METHOD_SCOPES
        .binary_search_by(|(m, _)| (*m).cmp(method))
        .ok()
        .map(|i| METHOD_SCOPES[i].1);
    match declared {
        None => Need::Scope(claw_proto::scopes::ADMIN),
        Some("node") => Need::Node,
        Some("dynamic") => Need::Scope(dynamic(method, params)),
        Some(s) => Need::Scope(s),
    }
}

fn dynamic(method: &str, params: &Value) -> &'static str {
    use claw_proto::scopes::{ADMIN, PAIRING, READ, WRITE};
    let has = |k: &str| params.get(k).is_some();
    let is_true = |k: &str| params.get(k).and_then(Value::as_bool) == Some(true);
    match method {
        "talk.config" if !is_true("includeSecrets") => READ,
        "talk.config" => ADMIN,
        "environments.list" => match params.get("runtimeId").and_then(Value::as_str) {
            Some(s) if !s.is_empty() => WRITE,
            _ => READ,
        },
        "channels.pairing.approve" if is_true("bootstrapCommandOwner") => ADMIN,
        "channels.pairing.approve" => PAIRING,
        "fs.listDir" if has("nodeId") => ADMIN,
        "agent" => match params.get("message").and_then(Value::as_str) {
            Some(m) if is_reset_command(m) => ADMIN,
            _ => WRITE,
        },
        "sessions.delete" if !is_true("archivedOnly") => ADMIN,
        _ => WRITE,
    }
}

/// `/new` or `/reset` (optionally followed by whitespace and text), case-insensitive: an
/// agent message that resets the session (OpenClaw requires admin for it).
fn is_reset_command(m: &str) -> bool {
    let lower = m.to_ascii_lowercase();
    ["/new", "/reset"].iter().any(|c| {
        lower
            .strip_prefix(c)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace))
    })
}

/// OpenClaw's `operatorScopeSatisfied`: admin satisfies everything; `operator.write` also
/// satisfies read, talk and the session scopes; `operator.read` satisfies `sessions.read`.
pub fn scope_satisfied(required: &str, granted: &[String]) -> bool {
    use claw_proto::scopes::{ADMIN, READ, WRITE};
    if !required.starts_with("operator.") {
        return false;
    }
    let has = |s: &str| granted.iter().any(|g| g == s);
    has(required)
        || has(ADMIN)
        || (matches!(
            required,
            "operator.read"
                | "operator.talk"
                | "operator.sessions.read"
                | "operator.sessions.write"
        ) && has(WRITE))
        || (required == "operator.sessions.read" && (has(READ) || has("operator.sessions.write")))
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// claw's own dispatch table.
    Claw,
    /// The upstream session.
    Upstream,
    /// Refused by claw before anything was forwarded (the socket stays open).
    Refuse(ErrorShape),
}

/// Routes `method` for a caller with `role` and `scopes`.
pub fn route(method: &str, params: &Value, role: &str, scopes: &[String]) -> Route {
    if claw_owns(method) {
        return Route::Claw;
    }
    match required(method, params) {
        Need::Node if role == "node" => Route::Upstream,
        Need::Node => Route::Refuse(
            ErrorShape::new(
                crate::protocol::codes::FORBIDDEN,
                format!("{method} is for node clients (role: node)"),
            )
            .with_details(serde_json::json!({"code": crate::protocol::codes::MISSING_SCOPE})),
        ),
        Need::Scope(s) if scope_satisfied(s, scopes) => Route::Upstream,
        Need::Scope(s) => Route::Refuse(crate::protocol::errors::missing_scope(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn the_table_is_sorted_and_unique() {
        for w in METHOD_SCOPES.windows(2) {
            assert!(w[0].0 < w[1].0, "{} before {}", w[0].0, w[1].0);
        }
        assert!(METHOD_SCOPES.len() > 400);
    }

    #[test]
    fn claw_keeps_pairing_and_rotation() {
        for m in [
            "device.pair.list",
            "device.pair.approve",
            "device.token.rotate",
            "gateway.token.rotate",
            "device.scopes.set",
        ] {
            assert_eq!(
                route(m, &json!({}), "operator", &s(&["operator.read"])),
                Route::Claw,
                "{m}"
            );
        }
    }

    #[test]
    fn a_read_token_reaches_reads_and_nothing_more() {
        let read = s(&["operator.read"]);
        for m in [
            "health",
            "status",
            "cron.list",
            "config.get",
            "sessions.list",
            "chat.history",
        ] {
            assert_eq!(
                route(m, &json!({}), "operator", &read),
                Route::Upstream,
                "{m}"
            );
        }
        for (m, scope) in [
            ("config.set", "operator.admin"),
            ("config.apply", "operator.admin"),
            ("cron.add", "operator.admin"),
            ("chat.send", "operator.write"),
            ("no.such.method", "operator.admin"),
            ("", "operator.admin"),
        ] {
            let Route::Refuse(e) = route(m, &json!({}), "operator", &read) else {
                panic!("{m} was not refused");
            };
            assert_eq!(e.code, crate::protocol::codes::FORBIDDEN, "{m}");
            assert_eq!(e.detail_code(), Some(crate::protocol::codes::MISSING_SCOPE));
            assert!(e.message.contains(scope), "{m}: {}", e.message);
        }
    }

    #[test]
    fn admin_reaches_everything_but_node_methods() {
        let admin = s(&["operator.admin"]);
        assert_eq!(
            route("config.set", &json!({}), "operator", &admin),
            Route::Upstream
        );
        assert_eq!(
            route("whatever.plugin", &json!({}), "operator", &admin),
            Route::Upstream
        );
        let node_method = METHOD_SCOPES.iter().find(|(_, s)| *s == "node").unwrap().0;
        assert!(matches!(
            route(node_method, &json!({}), "operator", &admin),
            Route::Refuse(_)
        ));
        assert_eq!(route(node_method, &json!({}), "node", &[]), Route::Upstream);
        // A node holds no operator scope.
        assert!(matches!(
            route("config.get", &json!({}), "node", &[]),
            Route::Refuse(_)
        ));
    }

    #[test]
    fn dynamic_methods_follow_their_params() {
        let write = s(&["operator.write"]);
        assert_eq!(
            route("agent", &json!({"message": "hi"}), "operator", &write),
            Route::Upstream
        );
        for m in ["/reset", "/NEW now", "/new\tx"] {
            assert!(
                matches!(
                    route("agent", &json!({"message": m}), "operator", &write),
                    Route::Refuse(_)
                ),
                "{m}"
            );
        }
        assert_eq!(
            route("agent", &json!({"message": "/newbie"}), "operator", &write),
            Route::Upstream
        );
        let read = s(&["operator.read"]);
        assert_eq!(
            route("talk.config", &json!({}), "operator", &read),
            Route::Upstream
        );
        assert!(matches!(
            route(
                "talk.config",
                &json!({"includeSecrets": true}),
                "operator",
                &read
            ),
            Route::Refuse(_)
        ));
        assert!(matches!(
            route("sessions.delete", &json!({}), "operator", &write),
            Route::Refuse(_)
        ));
        assert_eq!(
            route(
                "sessions.delete",
                &json!({"archivedOnly": true}),
                "operator",
                &write
            ),
            Route::Upstream
        );
        // Hostile params shapes do not panic and fall back to the lower bound.
        for p in [json!(null), json!([1]), json!("x"), json!({"message": 5})] {
            let _ = route("agent", &p, "operator", &write);
            let _ = route("environments.list", &p, "operator", &read);
        }
    }

    #[test]
    fn scope_implications_match_openclaw() {
        assert!(scope_satisfied("operator.read", &s(&["operator.write"])));
        assert!(scope_satisfied(
            "operator.sessions.read",
            &s(&["operator.read"])
        ));
        assert!(!scope_satisfied("operator.write", &s(&["operator.read"])));
        assert!(!scope_satisfied(
            "operator.pairing",
            &s(&["operator.write"])
        ));
        assert!(!scope_satisfied("node", &s(&["operator.admin"])));
        assert!(scope_satisfied(
            "operator.approvals",
            &s(&["operator.admin"])
        ));
    }
}
