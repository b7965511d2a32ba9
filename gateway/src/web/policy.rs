//! What the control page's HTTP side allows, pure: the `Host` header (DNS rebinding), the
//! security headers of every answer, and the routes.

/// The Content-Security-Policy of every page answer: nothing but the gateway's own scripts,
/// styles and WebSocket; never framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Headers on every answer of the web side (no `Access-Control-*`: no CORS).
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("content-security-policy", CSP),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
];

/// True when `host` (the `Host` header) names the gateway's loopback listener on `port`:
/// `127.0.0.1:PORT`, `localhost:PORT` or `[::1]:PORT` (ASCII case-insensitive). Anything else —
/// another name that resolves to 127.0.0.1 (DNS rebinding), a missing port, another port — is
/// refused, so a page served from another origin cannot read the control page even when its
/// name points at loopback.
pub fn host_allowed(host: Option<&str>, port: u16) -> bool {
    let Some(h) = host else {
        return false;
    };
    let h = h.trim();
    let Some((name, p)) = h.rsplit_once(':') else {
        return false;
    };
    if p != port.to_string() {
        return false;
    }
    name.eq_ignore_ascii_case("127.0.0.1")
        || name.eq_ignore_ascii_case("localhost")
        || name == "[::1]"
}

/// True when an `Origin` header is the gateway's own loopback origin on `port` (what a state
/// changing request — login, logout — and the page's WebSocket must carry).
pub fn own_origin(origin: Option<&str>, port: u16) -> bool {
    origin.is_some_and(|o| {
        crate::origin::loopback_origins(port)
            .iter()
            .any(|own| own.eq_ignore_ascii_case(o.trim()))
    })
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/health`, `/healthz`.
    Health,
    /// `/ready`, `/readyz`.
    Ready,
    /// `/startupz`, `/startup` (OpenClaw clients ask before connecting).
    Startup,
    /// `GET /`: the page (a session is needed).
    Page,
    /// `GET /login`: the page that exchanges the code in its fragment.
    LoginPage,
    /// `POST /api/login`: code in the body → session cookie.
    Login,
    /// `POST /api/logout`.
    Logout,
    /// `GET` of an embedded asset (its index in [`super::assets::ASSETS`]).
    Asset(usize),
    /// Anything else: 404.
    NotFound,
}

/// Routes `method` and `path` (query already stripped or not: it is ignored).
pub fn route(method: &str, path: &str) -> Route {
    let path = path.split(['?', '#']).next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/health" | "/healthz") => Route::Health,
        ("GET" | "HEAD", "/ready" | "/readyz") => Route::Ready,
        ("GET" | "HEAD", "/startupz" | "/startup") => Route::Startup,
        ("GET", "/") => Route::Page,
        ("GET", "/login") => Route::LoginPage,
        ("POST", "/api/login") => Route::Login,
        ("POST", "/api/logout") => Route::Logout,
        ("GET", p) => match super::assets::ASSETS.iter().position(|a| a.path == p) {
            Some(i) => Route::Asset(i),
            None => Route::NotFound,
        },
        _ => Route::NotFound,
    }
}

/// True for routes that are part of the control page (Host-checked, loopback listener only);
/// the probes answer whatever the Host, on every path (a tunnelled device probes them too).
pub fn is_page(r: Route) -> bool {
    !matches!(
        r,
        Route::Health | Route::Ready | Route::Startup | Route::NotFound
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_the_loopback_names_with_the_right_port_are_hosts() {
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
        ] {
            assert!(host_allowed(Some(ok), 8080), "{ok}");
        }
        for bad in [
            "127.0.0.1",
            "127.0.0.1:80",
            "evil.example:8080",
            "127.0.0.1.nip.io:8080",
            "localhost.evil:8080",
            "127.0.0.2:8080",
            "[::1]:8081",
            ":8080",
            "",
            "127.0.0.1:8080:8080",
            "127.0.0.1 :8080x",
        ] {
            assert!(!host_allowed(Some(bad), 8080), "{bad}");
        }
        assert!(!host_allowed(None, 8080));
    }

    #[test]
    fn own_origin_is_the_listener_s_loopback_origin() {
        assert!(own_origin(Some("http://127.0.0.1:9"), 9));
        assert!(own_origin(Some("http://localhost:9"), 9));
        assert!(!own_origin(Some("http://127.0.0.1:10"), 9));
        assert!(!own_origin(Some("null"), 9));
        assert!(!own_origin(Some("https://127.0.0.1:9"), 9));
        assert!(!own_origin(None, 9));
    }

    #[test]
    fn routes() {
        assert_eq!(route("GET", "/health?x=1"), Route::Health);
        assert_eq!(route("GET", "/"), Route::Page);
        assert_eq!(route("POST", "/"), Route::NotFound);
        assert_eq!(route("GET", "/api/login"), Route::NotFound);
        assert_eq!(route("POST", "/api/login"), Route::Login);
        assert_eq!(route("GET", "/app.js"), Route::Asset(0));
        assert_eq!(route("GET", "/../etc/passwd"), Route::NotFound);
        assert_eq!(route("DELETE", "/"), Route::NotFound);
        assert!(!is_page(Route::Health));
        assert!(is_page(Route::Login));
    }

    #[test]
    fn the_csp_is_the_strict_one() {
        for part in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(CSP.contains(part), "{part}");
        }
        assert!(!CSP.contains("unsafe"));
    }

    proptest! {
        #[test]
        fn host_check_never_panics(h in ".{0,80}", port in any::<u16>()) {
            let _ = host_allowed(Some(&h), port);
            let _ = route("GET", &h);
        }
    }
}
