//! Upgrades: a home written by an earlier release opens under this one with every device, token
//! and generation intact; a store written by a newer claw is refused with a clear message and
//! never rewritten.
//!
//! `tests/fixtures/home-v<schema>/` is a home made by the release of that schema version, with
//! the paired device's key and the tokens it was given (test-only secrets) in `fixture.json`.
//! `tests/fixtures/make-home.sh` makes one with the current build (run it once per new schema
//! version, with the release that introduces it, and commit the result).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use claw_gateway::auth::device_key::DeviceKey;
use common::*;
use serde_json::{json, Value};

const SCOPES: &[&str] = &["operator.read", "operator.pairing"];

fn fixture(schema: i64) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("home-v{schema}"))
}

/// Copies a fixture home into a fresh temporary directory with the modes claw requires (git
/// keeps none of them).
fn copy_home(from: &Path) -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let to = home.join(e.file_name());
        std::fs::copy(e.path(), &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    (tmp, home)
}

async fn connect_with(url: &str, key: &DeviceKey, token: &str) -> Outcome {
    handshake(
        url,
        &Creds {
            token: Some(token),
            device: Some(key),
            scopes: SCOPES,
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_from_schema_v1_opens_with_every_device_token_and_generation() {
    let (_tmp, home) = copy_home(&fixture(1));
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("fixture.json")).unwrap()).unwrap();
    let key = claw_gateway::auth::device_key::load_or_create(&home.join("device.key")).unwrap();
    assert_eq!(meta["deviceId"], key.device_id().as_str());
    let shared = std::fs::read_to_string(home.join("gateway.token")).unwrap();

    let g = Gateway::start_in(&home, &[]);
    assert_eq!(g.token(), shared.trim(), "the shared token is kept");
    let (hello, mut ws) = connect_with(&g.url, &key, meta["deviceToken"].as_str().unwrap())
        .await
        .hello();
    assert_eq!(hello["auth"]["deviceToken"], meta["deviceToken"], "{hello}");
    let r = call(&mut ws, "status", json!({})).await;
    assert_eq!(
        r["payload"]["deviceTokenGeneration"], meta["generation"],
        "{r}"
    );
    assert_eq!(r["payload"]["devices"]["paired"], 1, "{r}");
    // The token of the generation before the fixture's rotation is still told apart.
    let (error, (code, _)) = connect_with(&g.url, &key, meta["oldDeviceToken"].as_str().unwrap())
        .await
        .refused();
    assert_eq!(
        error["details"]["code"],
        claw_proto::codes::AUTH_DEVICE_TOKEN_ROTATED,
        "{error}"
    );
    assert_eq!(code, 1008);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_from_a_newer_schema_is_refused_and_never_rewritten() {
    let (_tmp, home) = copy_home(&fixture(1));
    let db = home.join("state.db");
    let ok = Command::new("sqlite3")
        .arg(&db)
        .arg("UPDATE meta SET value = '99' WHERE key = 'schema_version';")
        .status()
        .expect("sqlite3 (apt-get install sqlite3)");
    assert!(ok.success());
    let before = std::fs::read(&db).unwrap();

    let (code, out, err) = claw_in(&home, &["gateway", "run", "--port", "0"]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("schema version 99 is newer than this claw understands"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the store was rewritten"
    );
}

/// Makes `tests/fixtures/home-v<SCHEMA_VERSION>/` with the current build (see
/// `tests/fixtures/make-home.sh`): a device paired, the root rotated once, the device's current
/// token of the new generation and its old one recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "makes the fixture: tests/fixtures/make-home.sh"]
async fn make_fixture_home() {
    let out = fixture(claw_gateway::store::SCHEMA_VERSION);
    let _ = std::fs::remove_dir_all(&out);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut g = Gateway::start_in(&home, &[]);
    let shared = g.token();
    let key = claw_gateway::auth::device_key::load_or_create(&home.join("device.key")).unwrap();
    let (hello, _ws) = connect_with(&g.url, &key, &shared).await.hello();
    let old = hello["auth"]["deviceToken"].as_str().unwrap().to_string();
    let (code, o, e) = g.claw(&["devices", "rotate-token", "--force"]);
    assert_eq!(code, 0, "{o}{e}");
    let (hello, mut ws) = connect_with(&g.url, &key, &shared).await.hello();
    let current = hello["auth"]["deviceToken"].as_str().unwrap().to_string();
    let r = call(&mut ws, "status", json!({})).await;
    let generation = r["payload"]["deviceTokenGeneration"].clone();
    drop(ws);
    assert_eq!(g.terminate(), Some(0));

    std::fs::create_dir_all(&out).unwrap();
    for f in ["state.db", "gateway.token", "device.key"] {
        std::fs::copy(home.join(f), out.join(f)).unwrap();
    }
    let meta = json!({
        "schemaVersion": claw_gateway::store::SCHEMA_VERSION,
        "clawVersion": claw_gateway::VERSION,
        "deviceId": key.device_id(),
        "deviceToken": current,
        "oldDeviceToken": old,
        "generation": generation,
        "note": "test-only secrets of a throwaway home",
    });
    std::fs::write(
        out.join("fixture.json"),
        serde_json::to_string_pretty(&meta).unwrap() + "\n",
    )
    .unwrap();
}
