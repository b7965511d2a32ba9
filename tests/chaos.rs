//! Crash consistency: `kill -9` of the gateway at random instants while pairing (silent pairing
//! on loopback, pairing codes redeemed over the QUIC tunnel, codes that need approval, approved
//! or rejected), revocation and root rotation run in a loop against it.
//!
//! After every cycle: `claw doctor --fix` then `claw doctor` is clean, the store opens (the gateway
//! starts again), no device the test saw approved is lost, no revoked device is back, a rotation is
//! either applied or not (the generation is the last confirmed one, or one more when a rotation was
//! in flight at the kill), every token of the surviving generation works and every older one gets
//! `unauthorized: device token rotated`.
//!
//! Cycles: `CLAW_CHAOS_CYCLES` (default 10, the CI size; docs/reliability.md has the 100-cycle
//! run). `CLAW_CHAOS_SEED` replays a run (the seed is printed).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use claw_gateway::auth::device_key::DeviceKey;
use claw_tunnel::device::DeviceHome;
use claw_tunnel::pairing::PairingUri;
use claw_tunnel::quic::client;
use common::*;
use serde_json::{json, Value};

static ROTATED: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| claw_proto::CloseReason::DeviceTokenRotated.to_string());
static REVOKED: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| claw_proto::CloseReason::DeviceRevoked.to_string());

/// xorshift64*: reproducible from the printed seed, no extra dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A device the test knows about.
struct Dev {
    key: DeviceKey,
    /// Every device token the gateway handed this device, with the root generation it was
    /// issued under.
    tokens: Vec<(String, u64)>,
    /// `claw devices revoke` exited 0 for it.
    revoked: bool,
    /// A revoke was in flight when the gateway died: either outcome is correct.
    maybe_revoked: bool,
}

/// What the test has seen confirmed, across cycles.
#[derive(Default)]
struct Model {
    /// Approved devices (hello-ok with a token, a redeemed code, `approve` exit 0).
    devices: BTreeMap<String, Dev>,
    /// Devices whose pairing request was rejected (`reject` exit 0): never paired.
    rejected: BTreeSet<String>,
    /// The root generation last confirmed.
    generation: u64,
    /// A rotation was in flight when the gateway died (generation may be +1).
    rotation_in_flight: bool,
    /// Counters for the report.
    ops: BTreeMap<&'static str, u64>,
    uncertain: BTreeMap<&'static str, u64>,
    /// Cycles whose kill was aimed at an operation: (cycles, of which the kill cut it off).
    aimed: BTreeMap<&'static str, (u64, u64)>,
    /// How operations cut off by a kill turned out: (applied, not applied).
    settled: BTreeMap<&'static str, (u64, u64)>,
}

/// What the worker needs to reach the gateway.
#[derive(Clone)]
struct Target {
    home: PathBuf,
    url: String,
    shared: String,
}

async fn claw_async(home: &Path, args: &[&str], limit: Duration) -> Result<String, String> {
    let child = tokio::process::Command::new(claw_bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into()),
        Ok(Ok(out)) => Err(format!(
            "claw {args:?}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("claw {args:?}: timed out")),
    }
}

/// A signed connect; Ok(hello) or Err(close reason / transport error).
async fn try_connect(url: &str, token: Option<&str>, key: &DeviceKey) -> Result<Value, String> {
    let fut = async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let ch = recv(&mut ws).await.map_err(|c| format!("close {c:?}"))?;
        let params = connect_params(
            &Creds {
                token,
                device: Some(key),
                scopes: &["operator.read"],
            },
            &ch["payload"],
        );
        futures_util::SinkExt::send(
            &mut ws,
            tokio_tungstenite::tungstenite::Message::Text(
                json!({"type":"req","id":"c1","method":"connect","params": params})
                    .to_string()
                    .into(),
            ),
        )
        .await
        .map_err(|e| format!("send: {e}"))?;
        let res = recv(&mut ws).await.map_err(|c| format!("close {c:?}"))?;
        if res["ok"] == true {
            let _ = ws.close(None).await;
            return Ok(res["payload"].clone());
        }
        match recv(&mut ws).await {
            Err((_, reason)) => Err(reason),
            Ok(v) => Err(format!("refused without a close: {v}")),
        }
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

/// One operation's result: what it confirmed, or that its outcome is unknown.
enum Done {
    Paired {
        id: String,
        key: DeviceKey,
        token: (String, u64),
    },
    Token {
        id: String,
        token: (String, u64),
    },
    Rejected {
        id: String,
    },
    Revoked {
        id: String,
    },
    Rotated {
        generation: u64,
    },
    Nothing,
}

/// The operation in flight and the device it is about.
type InFlight = (Op, Option<String>);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    SilentPair,
    Repair,
    TunnelPair,
    ApprovalPair,
    Revoke,
    Rotate,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::SilentPair => "silent pair",
            Op::Repair => "re-pair (signed connect, shared token)",
            Op::TunnelPair => "pairing code over the tunnel",
            Op::ApprovalPair => "pairing code needing approval",
            Op::Revoke => "revoke",
            Op::Rotate => "rotate-token --force",
        }
    }
}

/// Runs one operation against the gateway. `generation` is the confirmed one (no other operation
/// runs concurrently, so a token issued now belongs to it).
async fn run_op(
    t: &Target,
    op: Op,
    generation: u64,
    victim: Option<(String, DeviceKey)>,
    tmp: &Path,
    rng_bit: bool,
) -> Result<Done, String> {
    let limit = Duration::from_secs(5);
    match op {
        Op::SilentPair => {
            let key = DeviceKey::generate();
            let hello = try_connect(&t.url, Some(&t.shared), &key).await?;
            let token = hello["auth"]["deviceToken"]
                .as_str()
                .ok_or_else(|| format!("no device token in {hello}"))?;
            Ok(Done::Paired {
                id: key.device_id(),
                token: (token.to_string(), generation),
                key,
            })
        }
        Op::Repair => {
            let Some((id, key)) = victim else {
                return Ok(Done::Nothing);
            };
            let hello = try_connect(&t.url, Some(&t.shared), &key).await?;
            let token = hello["auth"]["deviceToken"]
                .as_str()
                .ok_or_else(|| format!("no device token in {hello}"))?;
            Ok(Done::Token {
                id,
                token: (token.to_string(), generation),
            })
        }
        Op::TunnelPair | Op::ApprovalPair => {
            let mut args = vec!["pair", "--json", "--no-qr"];
            if op == Op::ApprovalPair {
                args.push("--require-approval");
            }
            let out = claw_async(&t.home, &args, limit).await?;
            let v: Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
            let uri = PairingUri::parse(v["uri"].as_str().unwrap_or_default())
                .map_err(|e| e.to_string())?;
            let dh_root = tmp.join(format!("dev-{}", uuid_ish()));
            let dh = DeviceHome::new(&dh_root);
            let (pending_tx, mut pending_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            let pairing = tokio::spawn(async move {
                client::pair(&dh, &uri, None, move |rid| {
                    let _ = pending_tx.send(rid.to_string());
                })
                .await
                .map(|p| (p, dh.token()))
            });
            // Make sure the task is gone whatever happens below.
            struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
            impl<T> Drop for AbortOnDrop<T> {
                fn drop(&mut self) {
                    self.0.abort();
                }
            }
            let mut pairing = AbortOnDrop(pairing);
            // The key is the one `client::pair` created; read it only once pairing got that far.
            let key = || {
                claw_gateway::auth::device_key::load_or_create(&dh_root.join("identity.key"))
                    .map_err(|e| e.to_string())
            };
            if op == Op::ApprovalPair {
                let rid = tokio::time::timeout(limit, pending_rx.recv())
                    .await
                    .map_err(|_| "no pending answer".to_string())?
                    .ok_or("pairing ended before pending")?;
                if rng_bit {
                    let key = key()?;
                    claw_async(&t.home, &["devices", "reject", &rid], limit).await?;
                    // The device is told; it must not be paired.
                    let r = tokio::time::timeout(limit, &mut pairing.0)
                        .await
                        .map_err(|_| "rejected pairing did not end".to_string())?;
                    if let Ok(Ok(_)) = r {
                        return Err("a rejected device was paired".into());
                    }
                    return Ok(Done::Rejected {
                        id: key.device_id(),
                    });
                }
                let out = claw_async(&t.home, &["devices", "approve", &rid], limit).await?;
                let id = out
                    .trim()
                    .strip_prefix("approved device ")
                    .ok_or_else(|| format!("approve said {out:?}"))?
                    .to_string();
                // Approved (exit 0): from here on the device must never be lost, whether or not
                // the device hears about it before the kill.
                let key = key()?;
                let token = match tokio::time::timeout(limit, &mut pairing.0).await {
                    Ok(Ok(Ok((p, Ok(Some(tok)))))) => {
                        assert_eq!(p.device_id, id);
                        Some((tok.token, tok.generation))
                    }
                    _ => None,
                };
                return match token {
                    Some(token) => Ok(Done::Paired { id, key, token }),
                    None => Ok(Done::Paired {
                        id,
                        key,
                        token: (String::new(), 0),
                    }),
                };
            }
            let r = tokio::time::timeout(limit, &mut pairing.0)
                .await
                .map_err(|_| "pairing timed out".to_string())?
                .map_err(|e| e.to_string())?;
            let (p, tok) = r.map_err(|e| e.to_string())?;
            let tok = tok.map_err(|e| e.to_string())?.ok_or("no token stored")?;
            Ok(Done::Paired {
                id: p.device_id,
                key: key()?,
                token: (tok.token, tok.generation),
            })
        }
        Op::Revoke => {
            let Some((id, _)) = victim else {
                return Ok(Done::Nothing);
            };
            claw_async(&t.home, &["devices", "revoke", &id], limit).await?;
            Ok(Done::Revoked { id })
        }
        Op::Rotate => {
            let out = claw_async(&t.home, &["devices", "rotate-token", "--force"], limit).await?;
            let generation = out
                .split("generation ")
                .nth(1)
                .and_then(|s| s.split(',').next())
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| format!("rotate said {out:?}"))?;
            Ok(Done::Rotated { generation })
        }
    }
}

fn uuid_ish() -> String {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn pick_op(rng: &mut Rng) -> Op {
    match rng.below(100) {
        0..=24 => Op::SilentPair,
        25..=39 => Op::Repair,
        40..=57 => Op::TunnelPair,
        58..=69 => Op::ApprovalPair,
        70..=84 => Op::Revoke,
        _ => Op::Rotate,
    }
}

/// Applies a confirmed result to the model.
fn apply(m: &mut Model, done: Done) {
    match done {
        Done::Paired { id, key, token } => {
            let d = m.devices.entry(id).or_insert(Dev {
                key,
                tokens: vec![],
                revoked: false,
                maybe_revoked: false,
            });
            if !token.0.is_empty() && !d.tokens.contains(&token) {
                d.tokens.push(token);
            }
        }
        Done::Token { id, token } => {
            if let Some(d) = m.devices.get_mut(&id) {
                if !d.tokens.contains(&token) {
                    d.tokens.push(token);
                }
            }
        }
        Done::Rejected { id } => {
            m.rejected.insert(id);
        }
        Done::Revoked { id } => {
            if let Some(d) = m.devices.get_mut(&id) {
                d.revoked = true;
            }
        }
        Done::Rotated { generation } => {
            assert_eq!(
                generation,
                m.generation + 1,
                "a confirmed rotation moves the generation by one"
            );
            m.generation = generation;
        }
        Done::Nothing => {}
    }
}

/// A victim for revoke / re-pair: a confirmed, not (maybe) revoked device.
fn victim(m: &Model, rng: &mut Rng) -> Option<(String, DeviceKey)> {
    let live: Vec<(&String, &Dev)> = m
        .devices
        .iter()
        .filter(|(_, d)| !d.revoked && !d.maybe_revoked)
        .collect();
    if live.is_empty() {
        return None;
    }
    let (id, d) = live[rng.below(live.len() as u64) as usize];
    Some((id.clone(), d.key.clone()))
}

/// The generation the running gateway serves (shared-token `status`).
async fn served_generation(url: &str, shared: &str) -> u64 {
    let (_, mut ws) = handshake(
        url,
        &Creds {
            token: Some(shared),
            scopes: &["operator.read"],
            ..Default::default()
        },
    )
    .await
    .hello();
    let r = call(&mut ws, "status", json!({})).await;
    r["payload"]["deviceTokenGeneration"]
        .as_u64()
        .unwrap_or_else(|| panic!("no generation in {r}"))
}

fn doctor_clean(home: &Path, args: &[&str], cycle: usize, when: &str) {
    let mut all = vec!["doctor"];
    all.extend_from_slice(args);
    let (code, out, err) = claw_in(home, &all);
    assert_eq!(
        code, 0,
        "cycle {cycle}: `claw {all:?}` {when} is not clean:\n{out}{err}"
    );
}

/// Checks every invariant against the (restarted) gateway; updates the confirmed generation.
async fn check(m: &mut Model, g: &Gateway, cycle: usize) {
    let shared = g.token();
    let served = served_generation(&g.url, &shared).await;
    let want = m.generation;
    assert!(
        served == want || (m.rotation_in_flight && served == want + 1),
        "cycle {cycle}: generation {served} after restart; confirmed {want}, rotation in flight: {}",
        m.rotation_in_flight
    );
    if m.rotation_in_flight {
        let e = m.settled.entry(Op::Rotate.name()).or_default();
        if served == want + 1 {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    m.generation = served;
    m.rotation_in_flight = false;

    let (code, out, err) = g.claw(&["devices", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    let paired: BTreeMap<String, bool> = list["paired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["deviceId"].as_str().unwrap().to_string(),
                d["revoked"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    for (id, d) in &m.devices {
        let Some(&revoked) = paired.get(id) else {
            panic!("cycle {cycle}: approved device {id} is lost");
        };
        if d.revoked {
            assert!(revoked, "cycle {cycle}: revoked device {id} is back");
        } else if !d.maybe_revoked {
            assert!(
                !revoked,
                "cycle {cycle}: device {id} is revoked; nobody revoked it"
            );
        }
    }
    for id in &m.rejected {
        assert!(
            !paired.contains_key(id),
            "cycle {cycle}: rejected device {id} is paired"
        );
    }
    // A revoke in flight settled one way or the other; learn which.
    for (id, d) in &mut m.devices {
        if d.maybe_revoked {
            d.maybe_revoked = false;
            d.revoked = paired[id];
            let e = m.settled.entry(Op::Revoke.name()).or_default();
            if d.revoked {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
    }

    // Tokens: the surviving generation's work, older ones are refused as rotated, a revoked
    // device's are refused as revoked; a revoked device cannot come back with the shared token.
    let mut checks = Vec::new();
    for (id, d) in &m.devices {
        for (tok, generation) in &d.tokens {
            let expect: Result<(), &str> = if d.revoked {
                Err(REVOKED.as_str())
            } else if *generation == m.generation {
                Ok(())
            } else {
                assert!(*generation < m.generation, "token from the future");
                Err(ROTATED.as_str())
            };
            checks.push((id.clone(), d.key.clone(), Some(tok.clone()), expect));
        }
        if d.revoked {
            checks.push((
                id.clone(),
                d.key.clone(),
                Some(shared.clone()),
                Err(REVOKED.as_str()),
            ));
        }
    }
    let url = g.url.clone();
    let mut set = tokio::task::JoinSet::new();
    let total = checks.len();
    let checks = Arc::new(Mutex::new(checks));
    for _ in 0..8 {
        let checks = checks.clone();
        let url = url.clone();
        set.spawn(async move {
            let mut failures = Vec::new();
            loop {
                let Some((id, key, tok, expect)) = checks.lock().unwrap().pop() else {
                    return failures;
                };
                let got = try_connect(&url, tok.as_deref(), &key).await;
                let ok = match (&got, expect) {
                    (Ok(h), Ok(())) => h["auth"]["method"] == "device-token",
                    (Err(reason), Err(want)) => reason == want,
                    _ => false,
                };
                if !ok {
                    failures.push(format!("{id}: expected {expect:?}, got {got:?}"));
                }
            }
        });
    }
    let mut failures = Vec::new();
    while let Some(r) = set.join_next().await {
        failures.extend(r.unwrap());
    }
    assert!(
        failures.is_empty(),
        "cycle {cycle}: {} of {total} token checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_instants_never_loses_or_resurrects_state() {
    let cycles: usize = std::env::var("CLAW_CHAOS_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let seed: u64 = std::env::var("CLAW_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("chaos: {cycles} cycles, CLAW_CHAOS_SEED={seed}");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("gateway");
    let devs = tmp.path().join("devices");
    let gw_args = [
        "--tunnel",
        "127.0.0.1:0",
        "--pair-attempts-per-min",
        "100000",
    ];
    let started = Instant::now();
    let mut g = Gateway::start_in(&home, &gw_args);
    let shared = g.token();
    let mut m = Model {
        generation: served_generation(&g.url, &shared).await,
        ..Default::default()
    };
    let mut kills_during_startup = 0;
    let mut ops_total = 0u64;
    let mut max_cycle = Duration::ZERO;

    for cycle in 0..cycles {
        let cycle_start = Instant::now();
        let ops_before: u64 = m.ops.values().sum();
        let target = Target {
            home: home.clone(),
            url: g.url.clone(),
            shared: g.token(),
        };
        // The worker: one operation at a time until told to stop; returns what it confirmed and
        // the operation whose outcome is unknown (in flight at the kill), with when it failed.
        let stop = Arc::new(AtomicBool::new(false));
        let model = Arc::new(Mutex::new(std::mem::take(&mut m)));
        // The operation in flight (its outcome is unknown if the kill interrupts it).
        let current: Arc<Mutex<Option<InFlight>>> = Arc::new(Mutex::new(None));
        // Half the cycles kill at a random instant; the others aim at a write: a rotation, a
        // revocation or a silent pairing, killed 0-25 ms after it starts (the CLI's process
        // start, its admin call and the gateway's transaction fall in that window).
        let aim = match rng.below(6) {
            0 => Some(Op::Rotate),
            1 => Some(Op::Revoke),
            2 => Some(Op::SilentPair),
            _ => None,
        };
        let started_target = Arc::new(tokio::sync::Notify::new());
        let worker = {
            let stop = stop.clone();
            let model = model.clone();
            let current = current.clone();
            let devs = devs.clone();
            let mut wrng = Rng(rng.next() | 1);
            let started = started_target.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) && n < 200 {
                    let op = match aim {
                        // A targeted cycle: the third operation is the target, announced as it
                        // starts so the kill can land inside it.
                        Some(t) if n == 2 => {
                            started.notify_one();
                            t
                        }
                        _ => pick_op(&mut wrng),
                    };
                    let (generation, v) = {
                        let m = model.lock().unwrap();
                        (m.generation, victim(&m, &mut wrng))
                    };
                    let vid = v.as_ref().map(|(id, _)| id.clone());
                    *current.lock().unwrap() = Some((op, vid));
                    let bit = wrng.below(3) == 0;
                    match run_op(&target, op, generation, v, &devs, bit).await {
                        Ok(done) => {
                            let mut m = model.lock().unwrap();
                            *m.ops.entry(op.name()).or_default() += 1;
                            apply(&mut m, done);
                            *current.lock().unwrap() = None;
                        }
                        Err(e) => return (n, Some((e, Instant::now()))),
                    }
                    n += 1;
                }
                (n, None)
            })
        };
        // SIGKILL at a random instant of the cycle, or just after the aimed-at operation starts.
        let delay = match aim {
            None => Duration::from_millis(rng.below(1500)),
            Some(_) => {
                let t = Instant::now();
                let _ =
                    tokio::time::timeout(Duration::from_secs(10), started_target.notified()).await;
                // `claw devices rotate-token` takes ~20 ms, its process start most of it: a
                // rotation is aimed at its second half, where the admin call and the commit are.
                let from = if aim == Some(Op::Rotate) { 8 } else { 0 };
                t.elapsed() + Duration::from_millis(from + rng.below(25 - from))
            }
        };
        tokio::time::sleep_until(tokio::time::Instant::from_std(cycle_start + delay)).await;
        let killed_at = Instant::now();
        g.kill9();
        stop.store(true, Ordering::SeqCst);
        // An operation cut off by the kill may wait for a timeout (a QUIC peer that vanished);
        // give it a moment, then abandon it (killing a CLI still running: more chaos).
        let mut worker = worker;
        let (_, failed) = match tokio::time::timeout(Duration::from_millis(1500), &mut worker).await
        {
            Ok(r) => r.unwrap(),
            Err(_) => {
                worker.abort();
                let _ = worker.await;
                (
                    u64::MAX,
                    Some(("abandoned after the kill".into(), Instant::now())),
                )
            }
        };
        let in_flight = current.lock().unwrap().take();
        m = Arc::try_unwrap(model)
            .ok()
            .expect("worker done")
            .into_inner()
            .unwrap();
        if let Some((err, at)) = failed {
            let (op, _) = in_flight.clone().expect("a failed operation is in flight");
            assert!(
                at >= killed_at,
                "cycle {cycle}: {} failed before the kill: {err}",
                op.name()
            );
        }
        if let Some(a) = aim {
            let e = m.aimed.entry(a.name()).or_default();
            e.0 += 1;
            if in_flight.as_ref().is_some_and(|(op, _)| *op == a) {
                e.1 += 1;
            }
        }
        if let Some((op, vid)) = in_flight {
            *m.uncertain.entry(op.name()).or_default() += 1;
            match op {
                Op::Rotate => m.rotation_in_flight = true,
                Op::Revoke => {
                    if let Some(d) = vid.and_then(|id| m.devices.get_mut(&id)) {
                        d.maybe_revoked = true;
                    }
                }
                _ => {}
            }
        }

        // Sometimes also kill a gateway while it opens the store and binds.
        if rng.below(4) == 0 {
            let mut child = std::process::Command::new(claw_bin())
                .args(["--home", home.to_str().unwrap(), "gateway", "run"])
                .args(["--port", "0"])
                .args(gw_args)
                .env("RUST_LOG", "error")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(rng.below(60)));
            let _ = child.kill();
            let _ = child.wait();
            kills_during_startup += 1;
        }

        // The dead gateway's leftovers are repaired, and the home is then clean.
        let port = g.port.to_string();
        let (_, out, err) = claw_in(&home, &["doctor", "--fix", "--port", &port]);
        assert!(
            !out.contains("fix failed"),
            "cycle {cycle}: doctor --fix failed:\n{out}{err}"
        );
        doctor_clean(&home, &["--port", &port], cycle, "after --fix (stopped)");

        // The store opens: the gateway starts again, and nothing confirmed was lost.
        g = Gateway::start_in(&home, &gw_args);
        assert_eq!(g.token(), shared, "cycle {cycle}: the shared token drifted");
        check(&mut m, &g, cycle).await;
        doctor_clean(&home, &[], cycle, "with the gateway running");
        let took = cycle_start.elapsed();
        let n = m.ops.values().sum::<u64>() - ops_before;
        ops_total += n;
        max_cycle = max_cycle.max(took);
        eprintln!(
            "chaos: cycle {cycle}: killed after {delay:?}{}, {n} ops, generation {}, {} devices, {:.1}s",
            aim.map(|a| format!(" (aimed at {})", a.name())).unwrap_or_default(),
            m.generation,
            m.devices.len(),
            took.as_secs_f64()
        );
    }
    let revoked = m.devices.values().filter(|d| d.revoked).count();
    let tokens: usize = m.devices.values().map(|d| d.tokens.len()).sum();
    eprintln!(
        "chaos: {cycles} cycles in {:.1}s (longest {:.1}s), {ops_total} operations confirmed {:?}, \
         in flight at the kill {:?}; aimed kills (cycles, cut off) {:?}; cut-off operations settled (applied, not) {:?}; {} kills during startup; end state: generation {}, {} devices \
         ({} revoked, {} rejected requests), {} tokens checked; all invariants held",
        started.elapsed().as_secs_f64(),
        max_cycle.as_secs_f64(),
        m.ops,
        m.uncertain,
        m.aimed,
        m.settled,
        kills_during_startup,
        m.generation,
        m.devices.len(),
        revoked,
        m.rejected.len(),
        tokens
    );
}
