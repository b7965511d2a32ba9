//! The single-flight refresher against a real HTTP provider on loopback: a resource that answers
//! 401 to unknown bearer tokens, a refresh endpoint that counts its calls, and a 503 mode.
//! Client and server speak plain HTTP/1.1 over tokio TCP (one request per connection).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use relay_client::refresh::{from_fn, OpError, RefreshStatus, Refresher, RunError};
use relay_client::RefreshError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The provider.
#[derive(Default)]
struct Provider {
    valid: Mutex<HashSet<String>>,
    refresh_calls: AtomicUsize,
    resource_hits: AtomicUsize,
    unavailable: AtomicBool,
    minted: AtomicUsize,
}

const REFRESH_TOKEN: &str = "rt-good";

impl Provider {
    fn answer(&self, method: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, String) {
        match (method, path) {
            ("GET", "/resource") => {
                self.resource_hits.fetch_add(1, Ordering::SeqCst);
                let tok = auth.and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("");
                if self.valid.lock().unwrap().contains(tok) {
                    (200, format!("hello {tok}"))
                } else {
                    (401, "expired".into())
                }
            }
            ("POST", "/token") => {
                self.refresh_calls.fetch_add(1, Ordering::SeqCst);
                if self.unavailable.load(Ordering::SeqCst) {
                    return (503, "try later".into());
                }
                if body.trim() != format!("refresh_token={REFRESH_TOKEN}") {
                    return (400, "invalid_grant".into());
                }
                let n = self.minted.fetch_add(1, Ordering::SeqCst);
                let tok = format!("at-{n}");
                self.valid.lock().unwrap().insert(tok.clone());
                (200, tok)
            }
            _ => (404, "not found".into()),
        }
    }
}

/// Starts the provider on 127.0.0.1:0. The refresh endpoint takes 100 ms, so concurrent 401s
/// really overlap with the refresh in flight.
async fn serve(p: Arc<Provider>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let p = p.clone();
            tokio::spawn(async move {
                let Some((method, path, auth, body)) = read_request(&mut s).await else {
                    return;
                };
                if path == "/token" {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let (code, body) = p.answer(&method, &path, auth.as_deref(), &body);
                let resp = format!(
                    "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// Reads one request: (method, path, authorization, body). Bounded to 64 KiB.
async fn read_request(s: &mut TcpStream) -> Option<(String, String, Option<String>, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 65536 {
            return None;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let mut first = lines.next()?.split_whitespace();
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let mut auth = None;
    let mut len = 0usize;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "authorization" => auth = Some(v.trim().to_string()),
                "content-length" => len = v.trim().parse().ok()?,
                _ => {}
            }
        }
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < len.min(65536) {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((
        method,
        path,
        auth,
        String::from_utf8_lossy(&body).to_string(),
    ))
}

/// One HTTP/1.1 exchange: (status, body).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).await?;
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::Error::other("timeout"))??;
    let text = String::from_utf8_lossy(&out);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    Ok((code, body.to_string()))
}

/// The GET a user of the library makes, mapped to the refresher's outcome.
async fn get_resource(addr: SocketAddr, tok: String) -> Result<String, OpError<String>> {
    match http(addr, "GET", "/resource", Some(&tok), "").await {
        Ok((200, body)) => Ok(body),
        Ok((401, _)) => Err(OpError::Unauthorized),
        Ok((code, body)) => Err(OpError::Other(format!("{code} {body}"))),
        Err(e) => Err(OpError::Other(e.to_string())),
    }
}

/// The OAuth-style refresher: POST /token with the refresh token; persisted through the hook.
fn oauth(addr: SocketAddr, access: &str, persisted: Arc<Mutex<Vec<String>>>) -> Refresher<String> {
    Refresher::new(access.to_string())
        .with_source(from_fn(move |_stale: String| async move {
            match http(
                addr,
                "POST",
                "/token",
                None,
                &format!("refresh_token={REFRESH_TOKEN}"),
            )
            .await
            {
                Ok((200, tok)) => Ok(tok),
                Ok((code, body)) => Err(RefreshError::permanent(format!(
                    "token endpoint answered {code} {body}"
                ))),
                Err(e) => Err(RefreshError::permanent(e.to_string())),
            }
        }))
        .on_refreshed(move |t: &String| {
            persisted.lock().unwrap().push(t.clone());
            Ok(())
        })
}

async fn concurrent_401s_make_one_refresh(n: usize) {
    let p = Arc::new(Provider::default());
    let addr = serve(p.clone()).await;
    let persisted = Arc::new(Mutex::new(Vec::new()));
    let r = oauth(addr, "at-expired", persisted.clone());
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let r = r.clone();
            tokio::spawn(async move { r.run(|tok| get_resource(addr, tok)).await })
        })
        .collect();
    for t in tasks {
        let body = tokio::time::timeout(Duration::from_secs(20), t)
            .await
            .expect("no call hangs")
            .expect("no panic")
            .expect("replayed with the new token");
        assert_eq!(body, "hello at-0");
    }
    assert_eq!(
        p.refresh_calls.load(Ordering::SeqCst),
        1,
        "exactly one refresh"
    );
    assert_eq!(*persisted.lock().unwrap(), ["at-0"], "persisted once");
    assert_eq!(*r.status().borrow(), RefreshStatus::Valid);
    // Every caller hit the resource once with the old token and once with the new one.
    assert_eq!(p.resource_hits.load(Ordering::SeqCst), 2 * n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_401s_make_one_refresh() {
    concurrent_401s_make_one_refresh(10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_401s_make_one_refresh() {
    concurrent_401s_make_one_refresh(100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_503_is_auth_failed_and_other_users_are_unaffected() {
    let p = Arc::new(Provider::default());
    p.valid.lock().unwrap().insert("at-b".into());
    p.unavailable.store(true, Ordering::SeqCst);
    let addr = serve(p.clone()).await;
    let a = oauth(addr, "at-expired", Arc::default());
    let b = oauth(addr, "at-b", Arc::default());
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (a, b) = (a.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                (true, a.run(|tok| get_resource(addr, tok)).await)
            } else {
                (false, b.run(|tok| get_resource(addr, tok)).await)
            }
        }));
    }
    for t in tasks {
        let (is_a, res) = tokio::time::timeout(Duration::from_secs(20), t)
            .await
            .expect("no call hangs")
            .expect("no panic");
        if is_a {
            match res {
                Err(RunError::AuthFailed(f)) => assert!(f.to_string().contains("503"), "{f}"),
                other => panic!("user A: {other:?}"),
            }
        } else {
            assert_eq!(res.unwrap(), "hello at-b", "user B is unaffected");
        }
    }
    assert_eq!(
        p.refresh_calls.load(Ordering::SeqCst),
        1,
        "one refresh, no retry storm"
    );
    assert!(matches!(*a.status().borrow(), RefreshStatus::AuthFailed(_)));
    assert_eq!(*b.status().borrow(), RefreshStatus::Valid);
    // auth_failed fails fast: no more traffic for A, even after the provider recovers…
    let hits = p.resource_hits.load(Ordering::SeqCst);
    p.unavailable.store(false, Ordering::SeqCst);
    assert!(matches!(
        a.run(|tok| get_resource(addr, tok)).await,
        Err(RunError::AuthFailed(_))
    ));
    assert_eq!(p.resource_hits.load(Ordering::SeqCst), hits);
    assert_eq!(p.refresh_calls.load(Ordering::SeqCst), 1);
    // …until the host supplies new credentials.
    a.replace("at-b".into());
    assert_eq!(
        a.run(|tok| get_resource(addr, tok)).await.unwrap(),
        "hello at-b"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_refresh_credentials_the_token_is_static() {
    let p = Arc::new(Provider::default());
    p.valid.lock().unwrap().insert("at-static".into());
    let addr = serve(p.clone()).await;
    // A good static token just works, and nothing ever calls the refresh endpoint.
    let good = Refresher::new("at-static".to_string());
    assert!(!good.can_refresh());
    for _ in 0..5 {
        assert_eq!(
            good.run(|tok| get_resource(addr, tok)).await.unwrap(),
            "hello at-static"
        );
    }
    // A refused static token: auth_failed with a clear message; no refresh, no replay loop.
    let bad = Refresher::new("at-revoked".to_string());
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let bad = bad.clone();
            tokio::spawn(async move { bad.run(|tok| get_resource(addr, tok)).await })
        })
        .collect();
    for t in tasks {
        match t.await.unwrap() {
            Err(RunError::AuthFailed(f)) => {
                assert!(f.to_string().contains("no refresh credentials"), "{f}")
            }
            other => panic!("{other:?}"),
        }
    }
    let hits = p.resource_hits.load(Ordering::SeqCst);
    assert!(bad.run(|tok| get_resource(addr, tok)).await.is_err());
    assert_eq!(p.resource_hits.load(Ordering::SeqCst), hits, "fails fast");
    assert_eq!(p.refresh_calls.load(Ordering::SeqCst), 0);
}
