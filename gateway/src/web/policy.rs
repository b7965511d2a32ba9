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

/// Through a paired device's tunnel (or SSH forward), the `Host` the device's browser sends
/// names the device's own loopback port of `claw tunnel up`, which the gateway cannot know: a
/// loopback name (`127.0.0.1`, `localhost`, `[::1]`) with any port is accepted there, and the
/// origin it implies (`http://HOST:PORT`, lower-cased) is returned — the only `Origin` the page's
/// login, logout and WebSocket may then carry. Another name (DNS rebinding) is `None`.
pub fn tunnel_host(host: Option<&str>) -> Option<String> {
    let h = host?.trim();
    let (name, p) = h.rsplit_once(':')?;
    let port: u16 = p.parse().ok().filter(|p| *p != 0)?;
    if p != port.to_string() {
        return None; // `+80`, `080`: not how a browser writes a port
    }
    let name = name.to_ascii_lowercase();
    matches!(name.as_str(), "127.0.0.1" | "localhost" | "[::1]")
        .then(|| format!("http://{name}:{port}"))
}

/// True when an `Origin` header is exactly `own` (the origin [`tunnel_host`] returned).
pub fn same_origin(origin: Option<&str>, own: &str) -> bool {
    origin.is_some_and(|o| o.trim().eq_ignore_ascii_case(own))
}

/// The header `claw tunnel dashboard` sends with `POST /api/tunnel-login`: a browser page can
/// send it only after a CORS preflight, which the gateway never grants, so with no `Origin` it
/// tells a program on the device from a page in the device's browser.
pub const TUNNEL_LOGIN_HEADER: &str = "x-claw-dashboard";

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
    /// `POST /api/tunnel-login`: `claw tunnel dashboard` on a paired admin device mints a code
    /// through its tunnel (never on the loopback listener).
    TunnelLogin,
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
        ("POST", "/api/tunnel-login") => Route::TunnelLogin,
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
    fn through_a_tunnel_any_loopback_port_is_a_host_and_its_origin_the_only_one() {
        assert_eq!(
            tunnel_host(Some("127.0.0.1:40123")).as_deref(),
            Some("http://127.0.0.1:40123")
        );
        assert_eq!(
            tunnel_host(Some("LocalHost:9")).as_deref(),
            Some("http://localhost:9")
        );
        assert_eq!(
            tunnel_host(Some("[::1]:18789")).as_deref(),
            Some("http://[::1]:18789")
        );
        for bad in [
            "127.0.0.1",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:080",
            "127.0.0.1:+80",
            "evil.example:8080",
            "127.0.0.1.nip.io:8080",
            "127.0.0.2:8080",
            "[::2]:1",
            ":1",
            "",
        ] {
            assert_eq!(tunnel_host(Some(bad)), None, "{bad}");
        }
        assert_eq!(tunnel_host(None), None);
        let own = tunnel_host(Some("127.0.0.1:40123")).unwrap();
        assert!(same_origin(Some("http://127.0.0.1:40123"), &own));
        assert!(!same_origin(Some("http://127.0.0.1:40124"), &own));
        assert!(!same_origin(Some("http://localhost:40123"), &own));
        assert!(!same_origin(Some("null"), &own));
        assert!(!same_origin(None, &own));
    }

    #[test]
    fn routes() {
        assert_eq!(route("GET", "/health?x=1"), Route::Health);
        assert_eq!(route("GET", "/"), Route::Page);
        assert_eq!(route("POST", "/"), Route::NotFound);
        assert_eq!(route("GET", "/api/login"), Route::NotFound);
        assert_eq!(route("POST", "/api/login"), Route::Login);
        assert_eq!(route("POST", "/api/tunnel-login"), Route::TunnelLogin);
        assert_eq!(route("GET", "/api/tunnel-login"), Route::NotFound);
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
            let _ = tunnel_host(Some(&h));
            let _ = route("GET", &h);
        }
    }
}
