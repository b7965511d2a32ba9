//! End-to-end: hostile input against the real binary — malformed and oversized frames, slow and
//! stalled handshakes, a flood of unauthenticated sockets, garbage HTTP, invalid requests after
//! authentication. After every case the gateway must still serve a normal shared-token handshake.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

/// A normal shared-token client still gets in and is served.
async fn assert_serves(g: &Gateway) {
    let t = g.token();
    let (hello, mut ws) = handshake(
        &g.url,
        &Creds {
            token: Some(&t),
            scopes: &["operator.read"],
            ..Default::default()
        },
    )
    .await
    .hello();
    assert_eq!(hello["auth"]["method"], "token");
    let r = call(&mut ws, "health", json!({})).await;
    assert_eq!(r["ok"], true, "{r}");
}

/// Reads frames until the close (bounded).
async fn expect_close(ws: &mut Ws) -> (u16, String) {
    for _ in 0..100 {
        match recv(ws).await {
            Ok(_) => continue,
            Err(c) => return c,
        }
    }
    panic!("no close after 100 frames");
}

/// Sends a message, ignoring a send error (the server may already be closing).
async fn send_raw(ws: &mut Ws, m: Message) {
    let _ = ws.send(m).await;
}

/// A TCP connection to the gateway from a chosen loopback source address.
async fn tcp_from(src: Ipv4Addr, port: u16) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(IpAddr::V4(src), 0)).unwrap();
    s.connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

/// A WebSocket from a chosen loopback source address (Err: the upgrade was refused).
async fn ws_from(src: Ipv4Addr, port: u16) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let tcp = tcp_from(src, port).await;
    let url = format!("ws://127.0.0.1:{port}");
    tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp))
        .await
        .map(|(ws, _)| ws)
}

/// The shared-token handshake on an already open socket; returns the hello and the session.
async fn handshake_on(mut ws: Ws, token: &str) -> (Value, Ws) {
    let ch = recv(&mut ws).await.expect("challenge");
    assert_eq!(ch["event"], "connect.challenge");
    let c = Creds {
        token: Some(token),
        scopes: &["operator.read"],
        ..Default::default()
    };
    send(&mut ws, &json!({"type":"req","id":"c1","method":"connect","params": connect_params(&c, &ch["payload"])})).await;
    let res = recv(&mut ws).await.expect("connect response");
    assert_eq!(res["ok"], true, "{res}");
    (res["payload"].clone(), ws)
}

const UPGRADE: &str = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Sends a raw upgrade and reads the response head (and whatever came with it).
async fn raw_upgrade(src: Ipv4Addr, port: u16) -> (String, TcpStream) {
    let mut s = tcp_from(src, port).await;
    s.write_all(UPGRADE.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let read = async {
        for _ in 0..1000 {
            let mut chunk = [0u8; 1024];
            let n = s.read(&mut chunk).await.unwrap_or(0);
            buf.extend_from_slice(&chunk[..n]);
            if n == 0 || buf.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("no answer to the upgrade");
    (String::from_utf8_lossy(&buf).into_owned(), s)
}

/// Reads until the server closes the connection; panics if it stays open for `limit`.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut got = Vec::new();
    let r = tokio::time::timeout(limit, async {
        loop {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "the server kept the connection open for {limit:?}; got {:?}",
        String::from_utf8_lossy(&got)
    );
    got
}

/// Deterministic pseudo-random bytes (xorshift), no extra dependency.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn non_json_and_binary_first_frames_close_1000() {
    let g = Gateway::start(&[]);

    let (mut ws, _) = open(&g.url).await;
    send_raw(&mut ws, Message::Text("this is not json {".into())).await;
    assert_eq!(expect_close(&mut ws).await.0, 1000);
    assert_serves(&g).await;

    let (mut ws, _) = open(&g.url).await;
    send_raw(
        &mut ws,
        Message::Binary(b"{\"type\":\"req\"}".to_vec().into()),
    )
    .await;
    assert_eq!(expect_close(&mut ws).await.0, 1000);
    assert_serves(&g).await;

    // Random binary noise as the first text frame's content (lossy UTF-8).
    let (mut ws, _) = open(&g.url).await;
    send_raw(
        &mut ws,
        Message::Text(String::from_utf8_lossy(&noise(512, 7)).into_owned().into()),
    )
    .await;
    assert_eq!(expect_close(&mut ws).await.0, 1000);
    assert_serves(&g).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_frames_close_1009() {
    let g = Gateway::start(&[]);
    let t = g.token();

    // Before auth: more than 64 KiB in the first frame.
    let (mut ws, ch) = open(&g.url).await;
    let mut params = connect_params(
        &Creds {
            token: Some(&t),
            ..Default::default()
        },
        &ch,
    );
    params["pad"] = json!("x".repeat(70 * 1024));
    send_raw(
        &mut ws,
        Message::Text(
            json!({"type":"req","id":"c1","method":"connect","params":params})
                .to_string()
                .into(),
        ),
    )
    .await;
    assert_eq!(expect_close(&mut ws).await.0, 1009);
    assert_serves(&g).await;

    // After auth: more than 1 MiB in one message.
    let (_, mut ws) = handshake(
        &g.url,
        &Creds {
            token: Some(&t),
            scopes: &["operator.read"],
            ..Default::default()
        },
    )
    .await
    .hello();
    let big = json!({"type":"req","id":"big","method":"health","params":{"pad":"y".repeat(1024 * 1024 + 1024)}});
    send_raw(&mut ws, Message::Text(big.to_string().into())).await;
    assert_eq!(expect_close(&mut ws).await.0, 1009);
    assert_serves(&g).await;

    // Just under the limit after auth is served.
    let (_, mut ws) = handshake(
        &g.url,
        &Creds {
            token: Some(&t),
            scopes: &["operator.read"],
            ..Default::default()
        },
    )
    .await
    .hello();
    let r = call(&mut ws, "health", json!({"pad": "z".repeat(900 * 1024)})).await;
    assert_eq!(r["ok"], true, "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn json_that_is_not_a_request_as_first_frame_closes_1008() {
    let g = Gateway::start(&[]);
    for text in [
        "[]",
        r#"{"type":"res"}"#,
        r#"{"type":"event","event":"connect"}"#,
        "null",
        "42",
        r#""connect""#,
        r#"{"type":"req","method":"connect"}"#,
    ] {
        let (mut ws, _) = open(&g.url).await;
        send_raw(&mut ws, Message::Text(text.into())).await;
        let close = expect_close(&mut ws).await;
        assert_eq!(close.0, 1008, "{text}: {close:?}");
        assert_serves(&g).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_and_stalled_handshakes_are_cut_off() {
    let g = Gateway::start(&["--handshake-timeout", "1"]);

    // Upgraded, got the challenge, never sends connect.
    let (mut ws, _) = open(&g.url).await;
    assert_eq!(expect_close(&mut ws).await.0, 1000);
    assert_serves(&g).await;

    // Half an HTTP request head, then silence.
    let mut s = TcpStream::connect(("127.0.0.1", g.port)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut s, Duration::from_secs(15)).await;
    assert!(
        !got.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert_serves(&g).await;

    // Connected, nothing at all.
    let mut s = TcpStream::connect(("127.0.0.1", g.port)).await.unwrap();
    read_until_closed(&mut s, Duration::from_secs(15)).await;
    assert_serves(&g).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_unauthenticated_sockets_gets_503_but_others_still_get_in() {
    let g = Gateway::start(&["--max-preauth", "8", "--handshake-timeout", "120"]);
    let t = g.token();
    let local = Ipv4Addr::new(127, 0, 0, 1);

    let mut flood = Vec::new();
    for i in 0..8 {
        let (head, s) = raw_upgrade(local, g.port).await;
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "flood socket {i}: {head:?}"
        );
        flood.push(s);
    }
    let (answer, mut s) = raw_upgrade(local, g.port).await;
    let rest = read_until_closed(&mut s, Duration::from_secs(10)).await;
    let answer = answer + &String::from_utf8_lossy(&rest);
    assert!(
        answer.starts_with("HTTP/1.1 503"),
        "9th upgrade: {answer:?}"
    );
    assert!(
        answer.ends_with("Too many unauthenticated sockets"),
        "{answer:?}"
    );
    // A real WebSocket client from the same source is refused the same way.
    match ws_from(local, g.port).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 503)
        }
        Err(e) => panic!("expected HTTP 503, got {e}"),
        Ok(_) => panic!("a 10th unauthenticated socket from 127.0.0.1 was accepted"),
    }

    // Another loopback source is not affected.
    let ws = ws_from(Ipv4Addr::new(127, 0, 0, 2), g.port)
        .await
        .expect("upgrade from 127.0.0.2");
    let (hello, mut ws) = handshake_on(ws, &t).await;
    assert_eq!(hello["auth"]["method"], "token");
    let r = call(&mut ws, "health", json!({})).await;
    assert_eq!(r["ok"], true, "{r}");

    // The flood sockets go away: 127.0.0.1 gets in again (eventually: the server notices the
    // closes asynchronously).
    drop(flood);
    let mut admitted = None;
    for _ in 0..100 {
        match ws_from(local, g.port).await {
            Ok(ws) => {
                admitted = Some(ws);
                break;
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(resp))
                if resp.status().as_u16() == 503 =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let ws = admitted.expect("127.0.0.1 still refused 10 s after the flood sockets closed");
    let (hello, _ws) = handshake_on(ws, &t).await;
    assert_eq!(hello["auth"]["method"], "token");
    assert_serves(&g).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_http_is_disconnected_and_the_gateway_stays_up() {
    let g = Gateway::start(&["--handshake-timeout", "2"]);

    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", noise(4096, 0x9e37_79b9_7f4a_7c15)),
        ("random bytes ending in a blank line", {
            let mut v = noise(2048, 42);
            v.extend_from_slice(b"\r\n\r\n");
            v
        }),
        ("NUL bytes", vec![0u8; 1024]),
        (
            "a TLS ClientHello",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
                .iter()
                .copied()
                .chain(noise(500, 3))
                .collect(),
        ),
        (
            "a bogus request line",
            b"\xff\xfe GARBAGE /\x01 HTTP/9.9\r\n\r\n".to_vec(),
        ),
    ];
    let mut long = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 20 * 1024));
    long.extend_from_slice(b"\r\n\r\n");
    cases.push(("a 20 KiB header line", long));
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    cases.push(("200 headers", many));

    for (what, bytes) in cases {
        let mut s = TcpStream::connect(("127.0.0.1", g.port)).await.unwrap();
        // The server may hang up before it has read everything.
        let _ = s.write_all(&bytes).await;
        let got = read_until_closed(&mut s, Duration::from_secs(15)).await;
        assert!(
            !got.starts_with(b"HTTP/1.1 101"),
            "{what}: upgraded: {:?}",
            String::from_utf8_lossy(&got)
        );
        assert!(!got.starts_with(b"HTTP/1.1 200"), "{what}: answered 200");
        assert_serves(&g).await;
    }

    // A valid upgrade followed by bytes that are not WebSocket frames.
    let (head, mut s) = raw_upgrade(Ipv4Addr::new(127, 0, 0, 1), g.port).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let _ = s.write_all(&noise(4096, 99)).await;
    read_until_closed(&mut s, Duration::from_secs(15)).await;
    assert_serves(&g).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_requests_after_auth_get_invalid_request_and_the_socket_stays_open() {
    let g = Gateway::start(&[]);
    let t = g.token();
    let (_, mut ws) = handshake(
        &g.url,
        &Creds {
            token: Some(&t),
            scopes: &["operator.read"],
            ..Default::default()
        },
    )
    .await
    .hello();

    let cases: &[(&str, &str)] = &[
        ("{", ""),
        ("not json", ""),
        ("[]", ""),
        ("null", ""),
        ("42", ""),
        (r#""health""#, ""),
        (r#"{"type":"res","id":"r1","ok":true}"#, "r1"),
        (r#"{"type":"event","id":"e1","event":"tick"}"#, "e1"),
        (r#"{"type":"req","id":"b1"}"#, "b1"),
        (r#"{"type":"req","method":"health"}"#, ""),
        (r#"{"type":"req","id":"","method":"health"}"#, ""),
        (r#"{"type":"req","id":"b2","method":""}"#, "b2"),
        (r#"{"type":"req","id":"b3","method":42}"#, "b3"),
    ];
    for (text, id) in cases {
        ws.send(Message::Text((*text).into())).await.unwrap();
        let r = recv(&mut ws)
            .await
            .unwrap_or_else(|c| panic!("closed after {text}: {c:?}"));
        assert_eq!(r["type"], "res", "{text}: {r}");
        assert_eq!(r["ok"], false, "{text}: {r}");
        assert_eq!(
            r["error"]["code"],
            claw_proto::codes::INVALID_REQUEST,
            "{text}: {r}"
        );
        assert_eq!(r["id"], *id, "{text}: {r}");
    }

    // Binary frames are refused the same way.
    ws.send(Message::Binary(b"\x00\x01\x02".to_vec().into()))
        .await
        .unwrap();
    let r = recv(&mut ws)
        .await
        .unwrap_or_else(|c| panic!("closed after a binary frame: {c:?}"));
    assert_eq!(
        r["error"]["code"],
        claw_proto::codes::INVALID_REQUEST,
        "{r}"
    );

    // The session is still open and serving.
    let r = call(&mut ws, "health", json!({})).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_serves(&g).await;
}

/// Regression: serde fills a derived struct from a JSON *array* by position, so
/// `["req","a1","health",{}]` was once dispatched and `["req","c1","connect",{...}]` authenticated.
/// Frames must be JSON objects.
#[tokio::test(flavor = "multi_thread")]
async fn array_frames_are_not_requests() {
    let g = Gateway::start(&[]);
    let t = g.token();

    // After auth: an array frame must get INVALID_REQUEST, not be dispatched.
    let (_, mut ws) = handshake(
        &g.url,
        &Creds {
            token: Some(&t),
            scopes: &["operator.read"],
            ..Default::default()
        },
    )
    .await
    .hello();
    ws.send(Message::Text(r#"["req","a1","health",{}]"#.into()))
        .await
        .unwrap();
    let after_auth = recv(&mut ws)
        .await
        .unwrap_or_else(|c| panic!("closed: {c:?}"));

    // Before auth: an array frame must not be accepted as `connect` (close 1008, like `[]`).
    let (mut ws, ch) = open(&g.url).await;
    let p = connect_params(
        &Creds {
            token: Some(&t),
            ..Default::default()
        },
        &ch,
    );
    ws.send(Message::Text(
        json!(["req", "c1", "connect", p]).to_string().into(),
    ))
    .await
    .unwrap();
    let first = recv(&mut ws).await;
    assert_serves(&g).await;

    let dispatched = after_auth["error"]["code"] != claw_proto::codes::INVALID_REQUEST;
    let authenticated = !matches!(first, Err((1008, _)));
    assert!(
        !dispatched && !authenticated,
        "array frames are treated as requests:\n  after auth, [\"req\",\"a1\",\"health\",{{}}] -> {after_auth}\n  as first frame, [\"req\",\"c1\",\"connect\",{{..}}] -> {first:?}"
    );
}
