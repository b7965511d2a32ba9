//! End-to-end: the control page's HTTP side and its WebSocket session against the real binary —
//! the one-time login link, the cookie, the Host and Origin checks, the security headers, logout
//! and rotation ending page sessions. (The page itself in Chromium: tests/ui/dashboard.mjs.)

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Sends a raw HTTP request; returns (status, lower-cased head, body).
async fn http(port: u16, request: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf))
        .await
        .expect("no answer")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn login_code(g: &Gateway) -> String {
    let (code, out, err) = g.claw(&["dashboard", "--json", "--no-open"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let url = v["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("http://127.0.0.1:{}/login#", g.port)),
        "{url}"
    );
    url.split_once('#').unwrap().1.to_string()
}

async fn post_login(g: &Gateway, code: &str, origin: Option<&str>) -> (u16, String, String) {
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    http(
        g.port,
        &format!(
            "POST /api/login HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{origin}Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n{code}",
            g.port,
            code.len()
        ),
    )
    .await
}

fn cookie_of(head: &str) -> String {
    let line = head
        .lines()
        .find(|l| l.starts_with("set-cookie: claw_session="))
        .unwrap_or_else(|| panic!("no session cookie in {head}"));
    for attr in ["httponly", "samesite=strict", "path=/"] {
        assert!(line.contains(attr), "{line}");
    }
    assert!(!line.contains("domain"), "host-only: {line}");
    line["set-cookie: ".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// Logs in (a fresh code) and returns the `claw_session=…` pair. The cookie's value was
/// lower-cased with the head: take it from the raw answer instead.
async fn login(g: &Gateway) -> String {
    let code = login_code(g);
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", g.port))
        .await
        .unwrap();
    let req = format!(
        "POST /api/login HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nOrigin: http://127.0.0.1:{p}\r\nContent-Length: {}\r\n\r\n{code}",
        code.len(),
        p = g.port
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 204"), "{text}");
    let line = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap();
    line.split_once(':')
        .unwrap()
        .1
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// A WebSocket to the gateway with `cookie` and `origin`; returns the socket after the
/// challenge, or the HTTP status of a refused upgrade.
async fn page_ws(g: &Gateway, cookie: &str, origin: &str) -> Result<Ws, u16> {
    let mut req = format!("ws://127.0.0.1:{}/", g.port)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    req.headers_mut().insert("origin", origin.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((mut ws, _)) => {
            let ch = recv(&mut ws).await.expect("challenge");
            assert_eq!(ch["event"], "connect.challenge");
            Ok(ws)
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

/// The page's connect: no secret, no device.
async fn page_connect(ws: &mut Ws) -> Value {
    send(
        ws,
        &json!({"type": "req", "id": "c", "method": "connect", "params": {
            "minProtocol": 3, "maxProtocol": 4,
            "client": {"id": "claw-dashboard", "version": "1", "platform": "web", "mode": "webchat"},
            "role": "operator", "scopes": ["operator.admin"], "auth": {}}}),
    )
    .await;
    recv(ws).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_login_link_works_once_and_wrong_or_foreign_logins_are_refused() {
    let g = Gateway::start(&[]);
    let own = format!("http://127.0.0.1:{}", g.port);
    let code = login_code(&g);
    // Without the page's own Origin (a cross-site form, curl without it): refused, code kept.
    let (status, _, _) = post_login(&g, &code, None).await;
    assert_eq!(status, 403);
    let (status, _, _) = post_login(&g, &code, Some("http://evil.example")).await;
    assert_eq!(status, 403);
    let (status, head, _) = post_login(&g, &code, Some(&own)).await;
    assert_eq!(status, 204, "{head}");
    cookie_of(&head);
    // Second use, a wrong code: refused alike.
    let (status, _, body) = post_login(&g, &code, Some(&own)).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("already used"), "{body}");
    let (status, _, _) = post_login(&g, "not-a-code", Some(&own)).await;
    assert_eq!(status, 401);
    // The code never reaches a server log: it rides in the fragment, and the gateway writes
    // no request line anywhere.
    let audit = g.claw(&["gateway", "audit", "--json", "--limit", "100"]).1;
    assert!(!audit.contains(&code), "code in the audit log");
    assert!(audit.contains("dashboard.login"), "{audit}");
}

#[tokio::test(flavor = "multi_thread")]
async fn page_answers_carry_the_strict_headers_and_need_the_loopback_host() {
    let g = Gateway::start(&[]);
    let p = g.port;
    let (status, head, body) = http(
        p,
        &format!("GET /login HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("/login.js"), "{body}");
    for h in [
        "content-security-policy: default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
        "x-frame-options: deny",
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
    ] {
        assert!(head.contains(h), "{h} missing in {head}");
    }
    assert!(!head.contains("access-control-"), "no CORS: {head}");
    // DNS rebinding: a name that resolves to loopback is not the loopback origin.
    for host in [
        format!("evil.example:{p}"),
        format!("127.0.0.1.nip.io:{p}"),
        "127.0.0.1".to_string(),
    ] {
        let (status, _, body) =
            http(p, &format!("GET /login HTTP/1.1\r\nHost: {host}\r\n\r\n")).await;
        assert_eq!(status, 421, "{host}: {body}");
    }
    // Without a session the page redirects to the login page; with one it is served.
    let (status, head, _) =
        http(p, &format!("GET / HTTP/1.1\r\nHost: localhost:{p}\r\n\r\n")).await;
    assert_eq!(status, 303, "{head}");
    assert!(head.contains("location: /login"));
    let cookie = login(&g).await;
    let (status, _, body) = http(
        p,
        &format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nCookie: {cookie}\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("/app.js"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_session_is_an_operator_only_from_its_own_origin_until_logout() {
    let g = Gateway::start(&[]);
    let own = format!("http://127.0.0.1:{}", g.port);
    let cookie = login(&g).await;

    let mut ws = page_ws(&g, &cookie, &own).await.unwrap();
    let hello = page_connect(&mut ws).await;
    assert_eq!(hello["ok"], true, "{hello}");
    let s = call(&mut ws, "gateway.status", json!({})).await;
    assert_eq!(s["ok"], true, "{s}");
    let t = call(&mut ws, "gateway.token.show", json!({})).await;
    assert_eq!(t["ok"], false, "the shared token never reaches a page: {t}");
    assert!(!t.to_string().contains(&g.token()));

    // Another local origin cannot open the WebSocket at all, cookie or not.
    assert_eq!(
        page_ws(&g, &cookie, "http://127.0.0.1:1").await.err(),
        Some(403)
    );
    // A made-up cookie from the own origin: no secret, no session: refused.
    let mut fake = page_ws(&g, "claw_session=forged", &own).await.unwrap();
    let r = page_connect(&mut fake).await;
    assert_eq!(r["ok"], false, "{r}");

    // Logout ends the session and its open socket.
    let (status, head, _) = http(
        g.port,
        &format!(
            "POST /api/logout HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nOrigin: {own}\r\nCookie: {cookie}\r\nContent-Length: 0\r\n\r\n",
            p = g.port
        ),
    )
    .await;
    assert_eq!(status, 204, "{head}");
    assert!(head.contains("max-age=0"), "{head}");
    loop {
        match recv(&mut ws).await {
            Ok(_) => continue,
            Err((code, reason)) => {
                assert_eq!(code, 1008, "{reason}");
                assert!(reason.contains("dashboard session ended"), "{reason}");
                break;
            }
        }
    }
    let mut again = page_ws(&g, &cookie, &own).await.unwrap();
    assert_eq!(page_connect(&mut again).await["ok"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotation_ends_other_page_sessions_but_the_rotating_page_follows_it() {
    let g = Gateway::start(&[]);
    let own = format!("http://127.0.0.1:{}", g.port);
    let mine = login(&g).await;
    let other = login(&g).await;
    let mut ws = page_ws(&g, &mine, &own).await.unwrap();
    assert_eq!(page_connect(&mut ws).await["ok"], true);
    let mut ows = page_ws(&g, &other, &own).await.unwrap();
    assert_eq!(page_connect(&mut ows).await["ok"], true);

    let r = call(&mut ws, "gateway.token.rotate", json!({"force": true})).await;
    assert_eq!(r["ok"], true, "{r}");
    let s = call(&mut ws, "gateway.status", json!({})).await;
    assert_eq!(s["ok"], true, "the rotating page stays logged in: {s}");
    loop {
        match recv(&mut ows).await {
            Ok(_) => continue,
            Err((code, reason)) => {
                assert_eq!(code, 1008, "{reason}");
                break;
            }
        }
    }
    // A rotation from the CLI ends the remaining page session too.
    let (code, _, err) = g.claw(&["devices", "rotate-token", "--force"]);
    assert_eq!(code, 0, "{err}");
    loop {
        match recv(&mut ws).await {
            Ok(_) => continue,
            Err((code, _)) => {
                assert_eq!(code, 1008);
                break;
            }
        }
    }
}

/// The page's status panel and doctor: `gateway.status.listeners` names the tunnel and SSH
/// listeners the gateway really bound (relays none, upstream null); `doctor.run` reports a secret
/// file with loose permissions with its safe fix, and `doctor.run {fix: true}` applies it.
#[tokio::test(flavor = "multi_thread")]
async fn the_page_shows_listeners_and_doctor_findings_and_applies_the_safe_fix() {
    use std::os::unix::fs::PermissionsExt;
    let g = Gateway::start(&["--tunnel", "127.0.0.1:0", "--ssh", "127.0.0.1:0"]);
    let own = format!("http://127.0.0.1:{}", g.port);
    let cookie = login(&g).await;
    let mut ws = page_ws(&g, &cookie, &own).await.unwrap();
    assert_eq!(page_connect(&mut ws).await["ok"], true);

    let rt: Value =
        serde_json::from_str(&std::fs::read_to_string(g.home.join("gateway.json")).unwrap())
            .unwrap();
    let s = call(&mut ws, "gateway.status", json!({})).await;
    let l = &s["payload"]["listeners"];
    assert_eq!(l["ws"], json!([format!("127.0.0.1:{}", g.port)]), "{l}");
    assert_eq!(l["tunnel"]["addr"], rt["tunnel"]["addr"], "{l}");
    assert_eq!(l["tunnel"]["gatewayId"], rt["tunnel"]["gatewayId"], "{l}");
    assert_eq!(l["ssh"]["addr"], rt["ssh"]["addr"], "{l}");
    assert_eq!(l["ssh"]["fingerprint"], rt["ssh"]["fingerprint"], "{l}");
    assert_eq!(l["relays"], json!([]), "{l}");
    assert_eq!(l["upstream"], Value::Null, "{l}");

    let token = g.home.join("gateway.token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = call(&mut ws, "doctor.run", json!({})).await;
    assert_eq!(r["ok"], true, "{r}");
    let finding = |r: &Value| {
        r["payload"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == "secret.permissions" && f["severity"] != "ok")
            .cloned()
    };
    let f = finding(&r).unwrap_or_else(|| panic!("no secret.permissions finding: {r}"));
    assert_eq!(f["fix"]["kind"], "chmod", "{f}");
    assert!(f.get("fixed").is_none(), "{f}");
    assert_eq!(
        std::fs::metadata(&token).unwrap().permissions().mode() & 0o777,
        0o644,
        "looking fixed nothing"
    );
    let r = call(&mut ws, "doctor.run", json!({"fix": true})).await;
    assert_eq!(r["ok"], true, "{r}");
    let f = finding(&r).unwrap_or_else(|| panic!("no secret.permissions finding: {r}"));
    assert!(f["fixed"].is_string(), "{f}");
    assert_eq!(
        std::fs::metadata(&token).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let r = call(&mut ws, "doctor.run", json!({})).await;
    assert!(finding(&r).is_none(), "still reported after the fix: {r}");
}

/// A `claw tunnel up`, killed when dropped (a failed assertion leaves no process behind).
struct Up(std::process::Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `claw tunnel up --listen 127.0.0.1:0` on device home `dev`; returns it and its local port.
fn tunnel_up(dev: &std::path::Path) -> (Up, u16) {
    use std::process::{Command, Stdio};
    let mut child = Command::new(claw_bin())
        .args(["--home", dev.to_str().unwrap(), "tunnel", "up"])
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let child = Up(child);
    let port = line
        .split("ws://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no ready line: {line:?}"));
    (child, port)
}

/// Pairs a new device home under `root` as `name` through the tunnel; returns its home and id.
fn pair_device(g: &InProcess, root: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    let (code, out, err) = g.claw(&["pair", "--json", "--name", name]);
    assert_eq!(code, 0, "{err}");
    let uri = serde_json::from_str::<Value>(&out).unwrap()["uri"]
        .as_str()
        .unwrap()
        .to_string();
    let dev = root.join(name);
    std::fs::create_dir_all(&dev).unwrap();
    let (code, out, err) = claw_in(&dev, &["tunnel", "pair", &uri, "--json"]);
    assert_eq!(code, 0, "{err}");
    let id = serde_json::from_str::<Value>(&out).unwrap()["deviceId"]
        .as_str()
        .unwrap()
        .to_string();
    (dev, id)
}

/// Gives a paired device `operator.admin` the way an operator does:
/// `claw devices set-scopes ID operator.read,operator.write operator.admin --json`.
fn grant_admin(g: &InProcess, id: &str) {
    let (code, out, err) = g.claw(&[
        "devices",
        "set-scopes",
        id,
        "operator.read,operator.write",
        "operator.admin",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["scopes"],
        serde_json::json!(["operator.admin", "operator.read", "operator.write"]),
        "{v}"
    );
    assert_eq!(
        v["previousScopes"],
        serde_json::json!(["operator.read", "operator.write"]),
        "{v}"
    );
    let (code, out, _) = g.claw(&["devices", "list", "--json"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("operator.admin"),
        "the device list shows the new scope: {out}"
    );
}

/// `POST /api/login` through `port` with `host` and `origin`.
async fn post_login_at(port: u16, host: &str, origin: &str, code: &str) -> (u16, String, String) {
    http(
        port,
        &format!(
            "POST /api/login HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nContent-Length: {}\r\n\r\n{code}",
            code.len()
        ),
    )
    .await
}

/// A code through `claw tunnel dashboard --json` on device `dev` (its link names `port`).
fn tunnel_code(dev: &std::path::Path, port: u16) -> String {
    let (code, out, err) = claw_in(dev, &["tunnel", "dashboard", "--no-open", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let url = v["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("http://127.0.0.1:{port}/login#")),
        "the link names the device's own tunnel port: {url}"
    );
    assert!(v["expiresAtMs"].as_u64().is_some(), "{v}");
    url.split_once('#').unwrap().1.to_string()
}

/// A page WebSocket through `port` with `cookie` and `origin` (after the challenge), or the
/// refused upgrade's status.
async fn page_ws_at(port: u16, cookie: &str, origin: &str) -> Result<Ws, u16> {
    let mut req = format!("ws://127.0.0.1:{port}/")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    req.headers_mut().insert("origin", origin.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((mut ws, _)) => {
            let ch = recv(&mut ws).await.expect("challenge");
            assert_eq!(ch["event"], "connect.challenge");
            Ok(ws)
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

/// Issue 16: a paired device holding `operator.admin` opens the control page through its own
/// `claw tunnel up` port — the link names that port, the Host and Origin rules take the
/// device's loopback origin there, and the page acts as the device (its scopes), not as the
/// gateway's operator. A device without admin is refused, a foreign Host or Origin is refused,
/// a device's code and cookie are no loopback login, and revoking the device ends its page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_device_gets_the_page_through_its_tunnel_as_itself_until_revoked() {
    let tmp = tempfile::tempdir().unwrap();
    let g = InProcess::start_with(|c| c.tunnel = Some("127.0.0.1:0".parse().unwrap())).await;
    let (laptop, laptop_id) = pair_device(&g, tmp.path(), "laptop");
    let (phone, _) = pair_device(&g, tmp.path(), "phone");
    grant_admin(&g, &laptop_id);
    let (mut laptop_up, lp) = tunnel_up(&laptop);
    let (phone_up, pp) = tunnel_up(&phone);
    assert_ne!(lp, g.port);

    // Without operator.admin: no code, no page.
    let (code, _, err) = claw_in(&phone, &["tunnel", "dashboard", "--no-open", "--json"]);
    assert_eq!(code, 77, "{err}");
    assert!(err.contains("operator.admin"), "{err}");
    let (status, _, _) = http(
        pp,
        &format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{pp}\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 403);
    // The probes still answer through any tunnel.
    let (status, _, _) = http(pp, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 200);

    // A browser page cannot mint a code through the tunnel (it sends an Origin; the header
    // needs a CORS preflight the gateway never grants).
    let (status, _, _) = http(
        lp,
        &format!("POST /api/tunnel-login HTTP/1.1\r\nHost: 127.0.0.1:{lp}\r\nOrigin: http://127.0.0.1:{lp}\r\nX-Claw-Dashboard: 1\r\nContent-Length: 0\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = http(
        lp,
        &format!(
            "POST /api/tunnel-login HTTP/1.1\r\nHost: 127.0.0.1:{lp}\r\nContent-Length: 0\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(status, 403);
    // Not on the gateway's own loopback listener either.
    let (status, _, _) = http(
        g.port,
        &format!("POST /api/tunnel-login HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nX-Claw-Dashboard: 1\r\nContent-Length: 0\r\n\r\n", g.port),
    )
    .await;
    assert_eq!(status, 404);

    // The device's code is no login on the gateway's loopback listener.
    let code = tunnel_code(&laptop, lp);
    let own_gw = format!("http://127.0.0.1:{}", g.port);
    let (status, _, _) =
        post_login_at(g.port, &format!("127.0.0.1:{}", g.port), &own_gw, &code).await;
    assert_eq!(status, 401);

    // Foreign Host (DNS rebinding) and foreign Origin through the tunnel: refused.
    let own = format!("http://127.0.0.1:{lp}");
    let code = tunnel_code(&laptop, lp);
    let (status, _, _) = post_login_at(lp, &format!("evil.example:{lp}"), &own, &code).await;
    assert_eq!(status, 421);
    let (status, _, _) = post_login_at(lp, &format!("127.0.0.1:{lp}"), &own_gw, &code).await;
    assert_eq!(status, 403);
    let (status, _, _) = http(
        lp,
        &format!("GET / HTTP/1.1\r\nHost: laptop.attacker.example:{lp}\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 421);

    // The right Host and Origin: a session cookie, and the page.
    let code = tunnel_code(&laptop, lp);
    let (status, head, _) = post_login_at(lp, &format!("127.0.0.1:{lp}"), &own, &code).await;
    assert_eq!(status, 204, "{head}");
    cookie_of(&head); // HttpOnly, SameSite=Strict, host-only
                      // The cookie's value was lower-cased with the head: take the pair from a fresh login.
    let code = tunnel_code(&laptop, lp);
    let raw = {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", lp))
            .await
            .unwrap();
        let req = format!(
            "POST /api/login HTTP/1.1\r\nHost: 127.0.0.1:{lp}\r\nOrigin: {own}\r\nContent-Length: {}\r\n\r\n{code}",
            code.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf).into_owned()
    };
    let cookie2 = raw
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().split(';').next().unwrap().to_string())
        .expect("cookie");
    let (status, _, body) = http(
        lp,
        &format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{lp}\r\nCookie: {cookie2}\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        body.contains("<html") || body.contains("<!doctype"),
        "{body}"
    );
    // The device's session is no session on the gateway's loopback listener.
    let (status, _, _) = http(
        g.port,
        &format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nCookie: {cookie2}\r\n\r\n",
            g.port
        ),
    )
    .await;
    assert_eq!(status, 303);

    // The page's WebSocket through the tunnel: only from the device's own origin, and as the
    // device.
    let other = format!("http://localhost:{lp}");
    assert_eq!(page_ws_at(lp, &cookie2, &other).await.err(), Some(403));
    assert_eq!(
        page_ws_at(lp, &cookie2, "http://127.0.0.1:1").await.err(),
        Some(403)
    );
    let mut ws = page_ws_at(lp, &cookie2, &own).await.unwrap();
    let hello = page_connect(&mut ws).await;
    assert_eq!(hello["ok"], true, "{hello}");
    let list = call(&mut ws, "device.pair.list", json!({})).await;
    assert_eq!(list["ok"], true, "{list}");
    let names: Vec<&str> = list["payload"]["paired"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["displayName"].as_str())
        .collect();
    assert!(
        names.contains(&"laptop") && names.contains(&"phone"),
        "{list}"
    );
    let status = call(&mut ws, "gateway.status", json!({})).await;
    assert_eq!(status["ok"], true, "{status}");
    let me: Vec<&Value> = status["payload"]["clients"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter(|c| c["client"] == "claw-dashboard/page")
                .collect()
        })
        .unwrap_or_default();
    assert!(
        me.iter().any(|c| c["deviceId"] == laptop_id.as_str()),
        "the page is the device's session: {status}"
    );
    for denied in ["gateway.token.show", "gateway.stop", "dashboard.login"] {
        let r = call(&mut ws, denied, json!({})).await;
        assert_eq!(r["ok"], false, "{denied}: {r}");
    }

    // Revoking the device ends its page session (and its tunnel).
    let (code, _, err) = g.claw(&["devices", "revoke", &laptop_id]);
    assert_eq!(code, 0, "{err}");
    let mut ended = false;
    for _ in 0..100 {
        match tokio::time::timeout(Duration::from_secs(30), recv(&mut ws)).await {
            Ok(Ok(_)) => continue,
            Ok(Err(_)) => {
                ended = true;
                break;
            }
            Err(_) => break,
        }
    }
    assert!(ended, "the revoked device's page socket stayed open");
    // The session itself ended, not only its socket.
    let gen = g.state().store().root().unwrap().0;
    let value = cookie2.split_once('=').unwrap().1;
    assert!(g
        .state()
        .web
        .session(value, gen, Some(&laptop_id))
        .is_none());
    let _ = laptop_up.0.wait();
    drop(phone_up);
}

/// Issue 16 with `--relay` (no `--tunnel`): the page's "pair a device" URI is the one `claw pair`
/// prints in that configuration — the relay with its pin, the gateway's key and a relay
/// ticket signature, no direct address — and a device pairs with it over the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_pairs_by_relay_with_the_uri_claw_pair_prints() {
    use claw_tunnel::pairing::PairingUri;
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().unwrap();
    let gw_home = tmp.path().join("gateway");
    std::fs::create_dir_all(&gw_home).unwrap();
    std::fs::set_permissions(
        &gw_home,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let id = claw_tunnel::identity::Identity::load_or_create(&gw_home.join("identity.key"))
        .unwrap()
        .id();
    let relay_home = tmp.path().join("relay");
    let mut relay = Up(Command::new(claw_bin())
        .arg("--home")
        .arg(&relay_home)
        .args(["relay", "serve", "--listen", "127.0.0.1:0", "--json"])
        .args(["--allow-gateway", &id])
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let mut line = String::new();
    std::io::BufReader::new(relay.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    let (url, pin) = (
        ready["url"].as_str().unwrap().to_string(),
        ready["pin"].as_str().unwrap().to_string(),
    );
    let g = Gateway::start_in(&gw_home, &["--relay", &url, "--relay-pin", &pin]);

    let cookie = login(&g).await;
    let own = format!("http://127.0.0.1:{}", g.port);
    let mut ws = page_ws(&g, &cookie, &own).await.unwrap();
    assert_eq!(page_connect(&mut ws).await["ok"], true);
    let r = call(&mut ws, "dashboard.pair", json!({"name": "tablet"})).await;
    assert_eq!(r["ok"], true, "{r}");
    let page_uri = r["payload"]["uri"].as_str().unwrap().to_string();
    assert!(page_uri.starts_with("CLAW://P/"), "{page_uri}");

    let (code, out, err) = g.claw(&["pair", "--json", "--no-qr", "--name", "tablet"]);
    assert_eq!(code, 0, "{err}");
    let cli: Value = serde_json::from_str(&out).unwrap();
    let cli = PairingUri::parse(cli["uri"].as_str().unwrap()).unwrap();
    let page = PairingUri::parse(&page_uri).unwrap();
    assert_eq!(page.gateway_id, cli.gateway_id);
    assert_eq!(page.addrs, cli.addrs);
    assert!(
        page.addrs.is_empty(),
        "no --addr without --tunnel: {page_uri}"
    );
    assert_eq!(page.relays, cli.relays);
    assert_eq!(page.relays[0].url, url);
    assert_eq!(page.relays[0].pin.as_deref(), Some(pin.as_str()));
    assert_eq!(page.gateway_key, cli.gateway_key);
    assert!(
        page.gateway_key.is_some() && page.relay_sig.is_some(),
        "{page_uri}"
    );
    assert_eq!(page.name, cli.name);

    // The page's URI pairs a device over the relay (its ticket signature is the gateway's).
    let dev = tmp.path().join("tablet");
    std::fs::create_dir_all(&dev).unwrap();
    let (code, out, err) = claw_in(&dev, &["tunnel", "pair", &page_uri]);
    assert_eq!(code, 0, "{out}{err}");
    drop(relay);
}

/// With `--strict-device-auth` every tunnelled client must show the device's token or
/// signature, which a browser page has not: the page stays on the gateway host, even for an
/// admin device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_device_auth_keeps_the_page_on_the_gateway_host() {
    let tmp = tempfile::tempdir().unwrap();
    let g = InProcess::start_with(|c| {
        c.tunnel = Some("127.0.0.1:0".parse().unwrap());
        c.gateway.strict_device_auth = true;
    })
    .await;
    let (laptop, laptop_id) = pair_device(&g, tmp.path(), "laptop");
    grant_admin(&g, &laptop_id);
    let (_up, lp) = tunnel_up(&laptop);
    let (code, _, err) = claw_in(&laptop, &["tunnel", "dashboard", "--no-open", "--json"]);
    assert_eq!(code, 77, "{err}");
    assert!(err.contains("strict-device-auth"), "{err}");
    let (status, _, _) = http(
        lp,
        &format!("GET /login HTTP/1.1\r\nHost: 127.0.0.1:{lp}\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 403);
}
