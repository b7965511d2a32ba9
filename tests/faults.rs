//! Faults are never auth failures (docs/reliability.md): each fault injected for real under the
//! real `claw` binary — a full disk (a tmpfs of the test's own, filled mid-run), a home whose
//! file system goes read-only under the running gateway (ext4 on a loop device, aborted), and a
//! store write-locked by another process (an operator's `sqlite3` shell in `BEGIN IMMEDIATE`).
//! In each: a client with the correct shared token and a new device identity is answered with a
//! retryable `UNAVAILABLE` naming the fault and closed with 1013 (never 1008), an existing
//! session keeps working, a paired device still connects, and once the fault clears the same
//! client connects.
//!
//! The mount tests need root (CI runs as root); without it they print why and skip.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use claw_gateway::auth::device_key::DeviceKey;
use common::*;
use relay_client::backoff::BackoffPolicy;
use relay_client::{Client, ClientConfig, ConnectOptions};
use serde_json::{json, Value};

const SCOPES: &[&str] = &["operator.read", "operator.pairing"];

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn run(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A small tmpfs of the test's own, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mnt");
        std::fs::create_dir(&dir).unwrap();
        let opts = format!("size={size},mode=0700");
        assert!(
            run(
                "mount",
                &[
                    "-t",
                    "tmpfs",
                    "-o",
                    &opts,
                    "faults-tmpfs",
                    dir.to_str().unwrap()
                ]
            ),
            "mount tmpfs (as root)"
        );
        Self { dir, _tmp: tmp }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        run("umount", &["-l", self.dir.to_str().unwrap()]);
    }
}

/// An ext4 file system on a loop device of the test's own, detached on drop.
struct Ext4 {
    dir: PathBuf,
    dev: String,
    _tmp: tempfile::TempDir,
}

impl Ext4 {
    fn mount() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let img = tmp.path().join("disk.img");
        let dir = tmp.path().join("mnt");
        std::fs::create_dir(&dir).unwrap();
        std::fs::File::create(&img)
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
        assert!(
            run("mkfs.ext4", &["-q", "-F", img.to_str().unwrap()]),
            "mkfs.ext4"
        );
        let out = Command::new("losetup")
            .args(["-f", "--show", img.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "losetup");
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let me = Self {
            dir,
            dev,
            _tmp: tmp,
        };
        me.mount_again();
        me
    }

    fn mount_again(&self) {
        assert!(
            run(
                "mount",
                &[
                    "-o",
                    "errors=remount-ro",
                    &self.dev,
                    self.dir.to_str().unwrap()
                ]
            ),
            "mount ext4"
        );
    }

    /// The kernel's emergency read-only (what ext4 does after a disk error): every write from
    /// now on fails with EROFS, while files stay open for writing.
    ///
    /// Dirty pages not yet written back are lost, as in a power cut: the store commits without
    /// fsync (WAL, `synchronous=NORMAL`), so the file system is synced first, standing for the
    /// kernel's periodic write-back (5 s on ext4) having run since the last pairing
    /// (docs/reliability.md says what a write-back window can lose).
    fn go_read_only(&self) {
        assert!(run("sync", &["-f", self.dir.to_str().unwrap()]), "sync");
        assert!(
            run(
                "mount",
                &["-o", "remount,abort", self.dir.to_str().unwrap()]
            ),
            "remount,abort"
        );
    }

    /// Unmounts, checks and mounts again read-write (the operator's fix).
    fn repair(&self) {
        assert!(run("umount", &[self.dir.to_str().unwrap()]), "umount");
        let _ = run("e2fsck", &["-f", "-y", &self.dev]);
        self.mount_again();
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        run("umount", &["-l", self.dir.to_str().unwrap()]);
        run("losetup", &["-d", &self.dev]);
    }
}

/// Fills the file system holding `dir` with a filler file until the disk is full.
fn fill(dir: &Path) -> PathBuf {
    let p = dir.join("filler");
    let mut f = std::fs::File::create(&p).unwrap();
    for chunk in [1 << 20, 4096, 512] {
        let buf = vec![0u8; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    let _ = f.sync_all();
    p
}

/// A fresh device's first connect with the correct shared token (silent pairing on loopback:
/// a store write).
async fn new_device_connect(url: &str, shared: &str) -> Outcome {
    let key = DeviceKey::generate();
    handshake(
        url,
        &Creds {
            token: Some(shared),
            device: Some(&key),
            scopes: SCOPES,
        },
    )
    .await
}

/// Pairs a device and returns it with its device token.
async fn paired_device(url: &str, shared: &str) -> (DeviceKey, String) {
    let key = DeviceKey::generate();
    let (hello, _ws) = handshake(
        url,
        &Creds {
            token: Some(shared),
            device: Some(&key),
            scopes: SCOPES,
        },
    )
    .await
    .hello();
    let t = hello["auth"]["deviceToken"].as_str().unwrap().to_string();
    (key, t)
}

/// The fault answer: a retryable `UNAVAILABLE` naming the fault and pointing at `claw doctor`,
/// closed with 1013; nothing that tells the client its credentials are wrong.
fn assert_unavailable(out: Outcome, fault: Option<&str>) -> Value {
    let (error, (code, reason)) = out.refused();
    assert_eq!(error["code"], claw_proto::codes::UNAVAILABLE, "{error}");
    assert_eq!(error["retryable"], true, "{error}");
    assert!(error["retryAfterMs"].as_u64().unwrap() > 0, "{error}");
    assert_eq!(error["details"]["recommendedNextStep"], "wait_then_retry");
    if let Some(f) = fault {
        assert_eq!(error["details"]["fault"], f, "{error}");
    }
    let msg = error["message"].as_str().unwrap();
    assert!(msg.contains("claw doctor"), "{msg}");
    assert!(
        !error.to_string().contains("AUTH_") && !msg.contains("unauthorized"),
        "{error}"
    );
    assert_eq!(code, 1013, "close {code} {reason}");
    assert!(reason.starts_with("try again later"), "{reason}");
    error
}

/// The device connects with its device token (the `Keep` path: no write needed).
async fn device_token_connects(url: &str, key: &DeviceKey, token: &str) {
    let (hello, _ws) = handshake(
        url,
        &Creds {
            token: Some(token),
            device: Some(key),
            scopes: SCOPES,
        },
    )
    .await
    .hello();
    assert_eq!(hello["type"], "hello-ok");
}

async fn session_still_serves(ws: &mut Ws) {
    let r = call(ws, "health", json!({})).await;
    assert_eq!(r["ok"], true, "{r}");
    let r = call(ws, "status", json!({})).await;
    assert_eq!(r["ok"], true, "read-only method served: {r}");
}

/// `claw doctor --json`'s `store.writable` finding: (severity, message).
fn doctor_store_writable(home: &Path) -> (String, String) {
    let (_, out, err) = claw_in(home, &["doctor", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "store.writable")
        .unwrap_or_else(|| panic!("no store.writable: {v:#}"))
        .clone();
    (
        f["severity"].as_str().unwrap().to_string(),
        f["message"].as_str().unwrap().to_string(),
    )
}

/// A relay client whose statuses are recorded (every name it ever reported).
fn recorded_client(url: &str, shared: &str) -> (Client, Arc<Mutex<Vec<String>>>) {
    let opts = ConnectOptions::new(url)
        .token(shared)
        .device(DeviceKey::generate())
        .scopes(SCOPES)
        .timeout(Duration::from_secs(10));
    let client = Client::start(ClientConfig::new(opts).backoff(BackoffPolicy {
        base: Duration::from_millis(100),
        cap: Duration::from_millis(800),
    }));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (mut rx, s) = (client.status(), seen.clone());
    tokio::spawn(async move {
        loop {
            s.lock()
                .unwrap()
                .push(rx.borrow_and_update().name().to_string());
            if rx.changed().await.is_err() {
                return;
            }
        }
    });
    (client, seen)
}

/// Waits (bounded) until the client has reported `name`.
async fn wait_seen(seen: &Mutex<Vec<String>>, name: &str) {
    for _ in 0..300 {
        if seen.lock().unwrap().iter().any(|s| s == name) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never {name}: {:?}", seen.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_is_a_retryable_unavailable_not_1008_and_recovers() {
    if !is_root() {
        eprintln!("skipping disk_full_is_a_retryable_unavailable_not_1008_and_recovers: needs root to mount a tmpfs (CI runs as root)");
        return;
    }
    let fs = Tmpfs::mount("8m");
    let g = Gateway::start_in(&fs.dir.join("home"), &[]);
    let shared = g.token();
    let (key, device_token) = paired_device(&g.url, &shared).await;
    let (_, mut existing) = handshake(
        &g.url,
        &Creds {
            token: Some(&shared),
            scopes: SCOPES,
            ..Default::default()
        },
    )
    .await
    .hello();

    let filler = fill(&fs.dir);
    // The correct shared token with a new device identity: the fault, named, not a mismatch.
    assert_unavailable(new_device_connect(&g.url, &shared).await, Some("disk_full"));
    session_still_serves(&mut existing).await;
    device_token_connects(&g.url, &key, &device_token).await;
    // A genuinely wrong token is still refused as one: its audit entry cannot be written, which
    // is counted, and does not change the answer.
    let (error, (code, _)) = handshake(
        &g.url,
        &Creds {
            token: Some("not-the-token"),
            scopes: SCOPES,
            ..Default::default()
        },
    )
    .await
    .refused();
    assert_eq!(
        error["details"]["code"],
        claw_proto::codes::AUTH_TOKEN_MISMATCH,
        "{error}"
    );
    assert_eq!(code, 1008);
    let r = call(&mut existing, "status", json!({})).await;
    let failures = r["payload"]["gateway"]["auditWriteFailures"].as_u64();
    assert!(
        failures.unwrap() > 0,
        "the failed audit write was counted: {r}"
    );
    // A relay client with a new identity backs off and retries; it never goes auth_failed.
    let (client, seen) = recorded_client(&g.url, &shared);
    wait_seen(&seen, "backing_off").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !seen.lock().unwrap().iter().any(|s| s == "auth_failed"),
        "{:?}",
        seen.lock().unwrap()
    );

    // The doctor names the fault and the fix.
    let (sev, msg) = doctor_store_writable(&g.home);
    assert_eq!(sev, "error", "{msg}");
    assert!(msg.starts_with("disk full"), "{msg}");

    std::fs::remove_file(&filler).unwrap();
    // The same client connects by itself once there is space again.
    client
        .wait_connected(Duration::from_secs(30))
        .await
        .unwrap();
    assert!(!seen.lock().unwrap().iter().any(|s| s == "auth_failed"));
    let (hello, _ws) = new_device_connect(&g.url, &shared).await.hello();
    assert_eq!(hello["type"], "hello-ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_home_is_a_retryable_unavailable_and_devices_survive_the_repair() {
    if !is_root() {
        eprintln!("skipping read_only_home_is_a_retryable_unavailable_and_devices_survive_the_repair: needs root for a loop-mounted ext4 (CI runs as root)");
        return;
    }
    let fs = Ext4::mount();
    let home = fs.dir.join("home");
    let mut g = Gateway::start_in(&home, &[]);
    let shared = g.token();
    let (key, device_token) = paired_device(&g.url, &shared).await;
    let (_, mut existing) = handshake(
        &g.url,
        &Creds {
            token: Some(&shared),
            scopes: SCOPES,
            ..Default::default()
        },
    )
    .await
    .hello();

    fs.go_read_only();
    // SQLite only says "disk I/O error"; the gateway's write probe names the read-only disk.
    assert_unavailable(new_device_connect(&g.url, &shared).await, Some("read_only"));
    session_still_serves(&mut existing).await;
    device_token_connects(&g.url, &key, &device_token).await;
    let (sev, msg) = doctor_store_writable(&g.home);
    assert_eq!(sev, "error", "{msg}");
    assert!(msg.starts_with("read-only"), "{msg}");
    // A device method that writes is refused with the same retryable fault.
    let r = call(
        &mut existing,
        "device.token.rotate",
        json!({"deviceId": key.device_id(), "role": "operator"}),
    )
    .await;
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["error"]["code"], claw_proto::codes::UNAVAILABLE, "{r}");
    assert_eq!(r["error"]["retryable"], true, "{r}");
    assert_eq!(r["error"]["details"]["fault"], "read_only", "{r}");

    // The operator's fix: stop, check the disk, mount again, start. Nothing was lost.
    drop(existing);
    g.terminate();
    fs.repair();
    let g = Gateway::start_in(&home, &[]);
    assert_eq!(g.token(), shared);
    device_token_connects(&g.url, &key, &device_token).await;
    let (hello, _ws) = new_device_connect(&g.url, &shared).await.hello();
    assert_eq!(hello["type"], "hello-ok");
}

/// An operator's `sqlite3` shell holding a write transaction open on `state.db`.
struct SqliteShell {
    child: std::process::Child,
}

impl SqliteShell {
    fn lock(db: &Path) -> Self {
        let mut child = Command::new("sqlite3")
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sqlite3 (apt-get install sqlite3)");
        let stdin = child.stdin.as_mut().unwrap();
        stdin
            .write_all(b"BEGIN IMMEDIATE;\nSELECT 'locked';\n")
            .unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked", "sqlite3 took the write lock");
        Self { child }
    }

    fn release(mut self) {
        let mut stdin = self.child.stdin.take().unwrap();
        stdin.write_all(b"COMMIT;\n.quit\n").unwrap();
        drop(stdin);
        let _ = self.child.wait();
    }
}

impl Drop for SqliteShell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_locked_by_another_process_is_a_bounded_retryable_wait() {
    if Command::new("sqlite3").arg("-version").output().is_err() {
        panic!("sqlite3 is not installed (apt-get install sqlite3; .ci/run installs it)");
    }
    let g = Gateway::start(&[]);
    let shared = g.token();
    let (key, device_token) = paired_device(&g.url, &shared).await;
    let (_, mut existing) = handshake(
        &g.url,
        &Creds {
            token: Some(&shared),
            scopes: SCOPES,
            ..Default::default()
        },
    )
    .await
    .hello();

    let shell = SqliteShell::lock(&g.home.join("state.db"));
    // Longer than the store waits: the connect is answered (bounded) with the named fault.
    assert_unavailable(
        new_device_connect(&g.url, &shared).await,
        Some("store_locked"),
    );
    session_still_serves(&mut existing).await;
    device_token_connects(&g.url, &key, &device_token).await;
    let (client, seen) = recorded_client(&g.url, &shared);
    wait_seen(&seen, "backing_off").await;

    let (sev, msg) = doctor_store_writable(&g.home);
    assert_eq!(sev, "warn", "{msg}");
    assert!(
        msg.starts_with("store locked") && msg.contains("sqlite3"),
        "{msg}"
    );

    shell.release();
    client
        .wait_connected(Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        !seen.lock().unwrap().iter().any(|s| s == "auth_failed"),
        "{:?}",
        seen.lock().unwrap()
    );
    let (hello, _ws) = new_device_connect(&g.url, &shared).await.hello();
    assert_eq!(hello["type"], "hello-ok");
}

/// Waits (bounded) until the home has a store snapshot.
fn wait_for_snapshot(home: &Path) {
    for _ in 0..200 {
        let n = std::fs::read_dir(home.join("snapshots"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".db"))
                    .count()
            })
            .unwrap_or(0);
        if n > 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no snapshot in {}", home.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_store_is_restored_from_a_snapshot_and_devices_keep_working() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut g = Gateway::start_in(&home, &[]);
    let shared = g.token();
    let (key, device_token) = paired_device(&g.url, &shared).await;
    g.terminate();
    // The next start snapshots the store, the paired device in it.
    let mut g = Gateway::start_in(&home, &[]);
    wait_for_snapshot(&home);
    g.terminate();

    // Damage everything after the header.
    let db = home.join("state.db");
    let mut bytes = std::fs::read(&db).unwrap();
    for b in bytes.iter_mut().skip(100) {
        *b = 0xA5;
    }
    std::fs::write(&db, &bytes).unwrap();

    let (_, out, _) = claw_in(&home, &["doctor", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "store.snapshots")
        .cloned()
        .unwrap();
    assert_eq!(f["severity"], "error", "{f}");
    assert!(f["hint"].as_str().unwrap().contains("lost"), "{f}");

    let (code, out, err) = claw_in(&home, &["doctor", "--fix"]);
    assert!(out.contains("restored state.db from"), "{code} {out}{err}");
    let g = Gateway::start_in(&home, &[]);
    assert_eq!(g.token(), shared);
    // Same root and generation: the device's token still works.
    device_token_connects(&g.url, &key, &device_token).await;
    let (code, out, err) = g.claw(&["doctor", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e} {code} {err}"));
    let integrity = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "store.integrity")
        .cloned()
        .unwrap();
    assert_eq!(integrity["severity"], "ok", "{integrity}");
    let damaged = std::fs::read_dir(&home).unwrap().flatten().any(|e| {
        e.file_name()
            .to_string_lossy()
            .starts_with("state.db.damaged-")
    });
    assert!(damaged, "the damaged file is kept for salvage");
}
