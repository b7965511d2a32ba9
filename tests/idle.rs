//! End-to-end: idle sockets get `tick` events and WebSocket pings; a peer that stops answering
//! is reaped while a live one stays.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread")]
async fn ticks_pings_and_reaping() {
    let g = Gateway::start(&["--tick-interval-ms", "200", "--ping-interval-ms", "150"]);
    let t = g.token();
    let creds = Creds {
        token: Some(&t),
        scopes: &["operator.read"],
        ..Default::default()
    };
    let (hello, mut live) = handshake(&g.url, &creds).await.hello();
    assert_eq!(hello["policy"]["tickIntervalMs"], 200);
    let (_, mut dead) = handshake(&g.url, &creds).await.hello();

    // The live client reads for ~1.5 s (answering pings as tungstenite does) and sees ticks
    // with increasing `seq` and pings. The dead one is not polled at all: it never answers.
    let mut seqs = Vec::new();
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(until, live.next()).await {
        match msg {
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["event"] == "tick" {
                    seqs.push(v["seq"].as_u64().unwrap());
                    assert!(v["payload"]["ts"].as_u64().is_some());
                }
            }
            Message::Ping(_) => pings += 1,
            _ => {}
        }
    }
    assert!(seqs.len() >= 3, "ticks: {seqs:?}");
    assert!(
        seqs.windows(2).all(|w| w[1] > w[0]),
        "seq increases: {seqs:?}"
    );
    assert!(pings >= 3, "pings: {pings}");

    // The silent peer was reaped: its stream ends with close 1001 "ping timeout".
    let close = loop {
        match recv(&mut dead).await {
            Ok(_) => continue,
            Err(c) => break c,
        }
    };
    assert_eq!(close, (1001, "ping timeout".into()));

    // The live client still works and the gateway counts one connection.
    let r = call(&mut live, "status", json!({})).await;
    assert_eq!(r["payload"]["connections"]["total"], 1, "{r}");
}
