//! The HTTP side of the gateway port: read one request head (bounded in size and time), answer
//! `/health`, `/ready`, 404, 503, or accept a WebSocket upgrade on `/`.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest request head accepted.
pub const MAX_HEAD: usize = 8 * 1024;

/// What the request asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// A WebSocket upgrade on `/`; carries `Sec-WebSocket-Key` and the `Origin` header.
    Upgrade {
        /// The client's key.
        key: String,
        /// The `Origin` header as sent (browsers always send one; other clients none). Not
        /// UTF-8 counts as present and unparsable (`Some("")`), so it is refused.
        origin: Option<String>,
        /// The client's nonce for the gateway's identity proof (header
        /// `X-Claw-Proof-Nonce`, see `auth::gateway_proof`); `None` when absent or invalid.
        proof_nonce: Option<String>,
        /// The control page's session cookie (`web::cookie`), when the upgrade carries one.
        cookie: Option<String>,
        /// The `Host` header (a page's socket through a device's tunnel must match its `Origin`).
        host: Option<String>,
    },
    /// A plain GET.
    Get {
        /// The path (query stripped).
        path: String,
    },
    /// Anything else.
    Other,
}

/// Parses a complete request head. `Ok(None)` means more bytes are needed.
#[allow(clippy::result_unit_err)] // public for fuzz/ (`server::parse_head`); `()` = bad head
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    };
    if req.method != Some("GET") {
        return Ok(Some((Head::Other, n)));
    }
    let path = req
        .path
        .unwrap_or("/")
        .split('?')
        .next()
        .unwrap_or("/")
        .to_string();
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let upgrade = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let conn_upgrade = header("connection").is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    });
    let version_ok = header("sec-websocket-version") == Some("13");
    let origin = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("origin"))
        .map(|h| {
            std::str::from_utf8(h.value)
                .unwrap_or("")
                .trim()
                .to_string()
        });
    match (
        upgrade && conn_upgrade && version_ok,
        header("sec-websocket-key"),
    ) {
        (true, Some(key)) if path == "/" && !key.is_empty() && key.len() <= 64 => Ok(Some((
            Head::Upgrade {
                key: key.to_string(),
                origin,
                proof_nonce: header(crate::auth::gateway_proof::NONCE_HEADER)
                    .filter(|n| crate::auth::gateway_proof::valid_nonce(n))
                    .map(str::to_string),
                cookie: header("cookie")
                    .and_then(crate::web::cookie::session_value)
                    .map(str::to_string),
                host: header("host").map(str::to_string),
            },
            n,
        ))),
        _ => Ok(Some((Head::Get { path }, n))),
    }
}

/// Reads a request head; returns it, every byte read (head and past it) and the head's length.
pub(super) async fn read_head<S: AsyncRead + Unpin>(
    s: &mut S,
    timeout: Duration,
) -> Option<(Head, Vec<u8>, usize)> {
    let mut buf = Vec::with_capacity(1024);
    let fut = async {
        loop {
            let mut chunk = [0u8; 1024];
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            match parse_head(&buf) {
                Ok(Some((head, used))) => return Some((head, std::mem::take(&mut buf), used)),
                Ok(None) if buf.len() < MAX_HEAD => continue,
                _ => return None,
            }
        }
    };
    tokio::time::timeout(timeout, fut).await.ok().flatten()
}

/// Writes a small HTTP response and closes.
pub(super) async fn respond<S: AsyncWrite + Unpin>(
    s: &mut S,
    status: &str,
    ctype: &str,
    body: &str,
) {
    let msg = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(msg.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// Writes the 101 response for an accepted upgrade.
pub(super) async fn accept_upgrade<S: AsyncWrite + Unpin>(
    s: &mut S,
    key: &str,
) -> std::io::Result<()> {
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let msg = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    s.write_all(msg.as_bytes()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let up = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nEXTRA";
        let (h, n) = parse_head(up).unwrap().unwrap();
        assert_eq!(
            h,
            Head::Upgrade {
                key: "dGhlIHNhbXBsZSBub25jZQ==".into(),
                origin: None,
                proof_nonce: None,
                cookie: None,
                host: Some("x".into()),
            }
        );
        let browser = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nOrigin: https://evil.example\r\nSec-WebSocket-Key: a\r\nSec-WebSocket-Version: 13\r\n\r\n";
        assert_eq!(
            parse_head(browser).unwrap().unwrap().0,
            Head::Upgrade {
                key: "a".into(),
                origin: Some("https://evil.example".into()),
                proof_nonce: None,
                cookie: None,
                host: None,
            }
        );
        let not_utf8 = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nOrigin: \xff\r\nSec-WebSocket-Key: a\r\nSec-WebSocket-Version: 13\r\n\r\n";
        assert!(matches!(
            parse_head(not_utf8).unwrap().unwrap().0,
            Head::Upgrade { origin: Some(o), .. } if o.is_empty()
        ));
        assert_eq!(&up[n..], b"EXTRA");
        let with_nonce = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\nX-Claw-Proof-Nonce: abc-123\r\n\r\n";
        assert!(matches!(
            parse_head(with_nonce).unwrap().unwrap().0,
            Head::Upgrade { proof_nonce: Some(n), .. } if n == "abc-123"
        ));
        let bad_nonce = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\nX-Claw-Proof-Nonce: a b\r\n\r\n";
        assert!(matches!(
            parse_head(bad_nonce).unwrap().unwrap().0,
            Head::Upgrade {
                proof_nonce: None,
                ..
            }
        ));
        let (h, _) = parse_head(b"GET /health?x=1 HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            h,
            Head::Get {
                path: "/health".into()
            }
        );
        let (h, _) = parse_head(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h, Head::Other);
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost"), Ok(None));
        assert!(parse_head(b"\x00\x01garbage\r\n\r\n").is_err());
        // Upgrade elsewhere than `/` is a plain GET (404).
        let other = b"GET /x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: a\r\nSec-WebSocket-Version: 13\r\n\r\n";
        assert_eq!(
            parse_head(other).unwrap().unwrap().0,
            Head::Get { path: "/x".into() }
        );
        // Too many headers is an error, not a panic.
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..100 {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(parse_head(&many).is_err());
    }
}
