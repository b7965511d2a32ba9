//! `claw devices …`: list, approve, reject, revoke, rotate, remove, rotate-token.

use std::io::{BufRead, IsTerminal, Write};

use claw_gateway::home::Home;
use serde_json::{json, Value};

use super::admin_client::admin_call;
use super::{exit, fail};

/// Device verbs.
#[derive(Debug, clap::Subcommand)]
pub enum DevicesCmd {
    /// Paired devices and pending pairing requests.
    List {
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending pairing request (by request id or device id, or the newest with --latest).
    Approve {
        /// Request id or device id (a unique prefix of at least 8 characters), or the device's name.
        #[arg(required_unless_present = "latest")]
        id: Option<String>,
        /// Approve the most recent pending request.
        #[arg(long, conflicts_with = "id")]
        latest: bool,
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Reject a pending pairing request.
    Reject {
        /// Request id or device id (a unique prefix of at least 8 characters), or the device's name.
        id: String,
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a device: its sessions close now and every channel refuses its key from now on.
    Revoke {
        /// Device id, a unique prefix of at least 8 characters, or the device's name.
        id: String,
        /// Do not ask for confirmation on a terminal.
        #[arg(long, short = 'y')]
        yes: bool,
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Give one device a new token; its old token stops working.
    Rotate {
        /// Device id, a unique prefix of at least 8 characters, or the device's name.
        id: String,
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Set a device's approved scopes (exactly these): operator.read, operator.write,
    /// operator.pairing, operator.admin. Its sessions reconnect with them; its token stays.
    SetScopes {
        /// Device id, a unique prefix of at least 8 characters, or the device's name.
        id: String,
        /// The scopes, space- or comma-separated.
        #[arg(required = true, value_delimiter = ',', num_args = 1..)]
        scopes: Vec<String>,
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Forget a device (it may pair again).
    Remove {
        /// Device id, a unique prefix of at least 8 characters, or the device's name.
        id: String,
        /// Do not ask for confirmation on a terminal.
        #[arg(long, short = 'y')]
        yes: bool,
        /// One JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Authorise an existing OpenSSH Ed25519 key as a device (for the built-in SSH forward).
    AddSshKey {
        /// A name for the device.
        name: String,
        /// The public key line: `ssh-ed25519 AAAA… [comment]`.
        key: String,
    },
    /// Rotate the device-token root: every device token stops working and device sessions close.
    RotateToken {
        /// Do not ask, even with live device sessions.
        #[arg(long)]
        force: bool,
        /// Also replace the generated shared gateway token.
        #[arg(long)]
        shared: bool,
        /// Forget every device too: each must pair again.
        #[arg(long)]
        revoke_devices: bool,
    },
}

/// Runs a devices verb.
pub async fn run(home: &Home, cmd: DevicesCmd) -> anyhow::Result<u8> {
    match cmd {
        DevicesCmd::List { json } => list(home, json).await,
        DevicesCmd::Approve { id, latest, json } => {
            let list = admin_call(home, "device.pair.list", json!({})).await?;
            let pending = list["pending"].as_array().cloned().unwrap_or_default();
            let req = if latest {
                pending
                    .iter()
                    .max_by_key(|r| r["createdAtMs"].as_u64())
                    .cloned()
                    .ok_or_else(|| fail(exit::FAILURE, "no pending pairing requests"))?
            } else {
                resolve(
                    &pending,
                    id.as_deref().unwrap_or_default(),
                    &["requestId", "deviceId"],
                    "pending request",
                )?
            };
            let v = admin_call(
                home,
                "device.pair.approve",
                json!({"requestId": req["requestId"]}),
            )
            .await?;
            let d = v["deviceId"].as_str().unwrap_or("");
            report(json, "approved", d, req["requestId"].as_str(), None)?;
            if !json {
                println!("approved device {d}");
            }
            Ok(0)
        }
        DevicesCmd::Reject { id, json } => {
            let list = admin_call(home, "device.pair.list", json!({})).await?;
            let pending = list["pending"].as_array().cloned().unwrap_or_default();
            let req = resolve(&pending, &id, &["requestId", "deviceId"], "pending request")?;
            let v = admin_call(
                home,
                "device.pair.reject",
                json!({"requestId": req["requestId"]}),
            )
            .await?;
            let d = v["deviceId"].as_str().unwrap_or("");
            report(json, "rejected", d, req["requestId"].as_str(), None)?;
            if !json {
                println!("rejected device {d}");
            }
            Ok(0)
        }
        DevicesCmd::Revoke { id, yes, json } => {
            let d = paired(home, &id).await?;
            confirm(yes, &format!("Revoke device {d}? Its sessions close now and it can never connect again with this key."))?;
            let v = admin_call(
                home,
                "device.token.revoke",
                json!({"deviceId": d, "role": "operator"}),
            )
            .await?;
            report(json, "revoked", &d, None, v["closedSessions"].as_u64())?;
            if !json {
                println!(
                    "revoked device {d} ({} session(s) closed)",
                    v["closedSessions"]
                );
            }
            Ok(0)
        }
        DevicesCmd::Rotate { id, json } => {
            let d = paired(home, &id).await?;
            let v = admin_call(
                home,
                "device.token.rotate",
                json!({"deviceId": d, "role": "operator"}),
            )
            .await?;
            report(json, "rotated", &d, None, v["closedSessions"].as_u64())?;
            if !json {
                println!("rotated the token of device {d} ({} session(s) closed); the device gets its new token at its next signed connect", v["closedSessions"]);
            }
            Ok(0)
        }
        DevicesCmd::SetScopes { id, scopes, json } => {
            let d = paired(home, &id).await?;
            let v = admin_call(
                home,
                "device.scopes.set",
                json!({"deviceId": d, "scopes": scopes}),
            )
            .await?;
            if json {
                super::json_out::print(&v)?;
            } else {
                let list = |k: &str| {
                    v[k].as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default()
                };
                println!(
                    "device {d}: scopes {} (were {}; {} session(s) reconnect with them)",
                    list("scopes"),
                    list("previousScopes"),
                    v["closedSessions"]
                );
            }
            Ok(0)
        }
        DevicesCmd::Remove { id, yes, json } => {
            let d = paired(home, &id).await?;
            confirm(
                yes,
                &format!("Remove device {d}? It must pair again to reconnect."),
            )?;
            admin_call(home, "device.pair.remove", json!({"deviceId": d})).await?;
            report(json, "removed", &d, None, None)?;
            if !json {
                println!("removed device {d}");
            }
            Ok(0)
        }
        DevicesCmd::AddSshKey { name, key } => {
            let k = claw_tunnel::russh::keys::PublicKey::from_openssh(key.trim())
                .map_err(|e| fail(2, format!("not an OpenSSH public key: {e}")))?;
            let raw = k
                .key_data()
                .ed25519()
                .ok_or_else(|| fail(2, "only ssh-ed25519 keys can be device keys"))?;
            use base64::Engine;
            let pk = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.0);
            let v = admin_call(
                home,
                "device.key.add",
                json!({"name": name, "publicKey": pk}),
            )
            .await?;
            println!(
                "authorised {} as device {}",
                shown(&name),
                v["deviceId"].as_str().unwrap_or("")
            );
            Ok(0)
        }
        DevicesCmd::RotateToken {
            force,
            shared,
            revoke_devices,
        } => rotate_token(home, force, shared, revoke_devices).await,
    }
}

/// With `--json`, prints what a verb did as one [`super::json_out::DeviceChange`].
fn report(
    as_json: bool,
    action: &str,
    device_id: &str,
    request_id: Option<&str>,
    closed_sessions: Option<u64>,
) -> anyhow::Result<()> {
    if !as_json {
        return Ok(());
    }
    super::json_out::print(&super::json_out::DeviceChange {
        action: action.into(),
        device_id: device_id.into(),
        request_id: request_id.map(String::from),
        closed_sessions,
    })
}

/// Shortest id prefix accepted: a one-character prefix once revoked a device by accident, and 8
/// hex characters (32 bits) keep a prefix unique among any number of devices one person pairs.
pub const MIN_PREFIX: usize = 8;

/// Finds the one item `id` names: a full id, a unique prefix of at least [`MIN_PREFIX`]
/// characters, or an exact device name (`displayName`). Pure: tested below.
fn resolve(items: &[Value], id: &str, keys: &[&str], what: &str) -> anyhow::Result<Value> {
    if id.is_empty() {
        return Err(fail(2, format!("give a {what} id")));
    }
    let exact: Vec<&Value> = items
        .iter()
        .filter(|v| keys.iter().any(|k| v[k] == id))
        .collect();
    let by_name: Vec<&Value> = items.iter().filter(|v| v["displayName"] == id).collect();
    let hits = if !exact.is_empty() {
        exact
    } else if !by_name.is_empty() {
        by_name
    } else if id.chars().count() < MIN_PREFIX {
        return Err(fail(
            exit::FAILURE,
            format!(
                "{id:?} is neither a full id nor a device name, and a prefix needs at least {MIN_PREFIX} characters (see `claw devices list`)"
            ),
        ));
    } else {
        items
            .iter()
            .filter(|v| {
                keys.iter()
                    .any(|k| v[k].as_str().is_some_and(|s| s.starts_with(id)))
            })
            .collect()
    };
    match hits.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(fail(
            exit::FAILURE,
            format!("no {what} matches {id:?} (see `claw devices list`)"),
        )),
        _ => Err(fail(
            exit::FAILURE,
            format!("{id:?} matches {} {what}s; give the full id", hits.len()),
        )),
    }
}

/// Asks `question [y/N]` on a terminal unless `yes`; off a terminal (scripts) it goes ahead, as
/// `--yes` would.
fn confirm(yes: bool, question: &str) -> anyhow::Result<()> {
    if yes || !std::io::stdin().is_terminal() {
        return Ok(());
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(fail(exit::FAILURE, "nothing changed"))
    }
}

async fn paired(home: &Home, id: &str) -> anyhow::Result<String> {
    let list = admin_call(home, "device.pair.list", json!({})).await?;
    let paired = list["paired"].as_array().cloned().unwrap_or_default();
    let d = resolve(&paired, id, &["deviceId"], "paired device")?;
    Ok(d["deviceId"].as_str().unwrap_or_default().to_string())
}

/// A string from the gateway as the operator's terminal may show it: control and format
/// characters escaped (a device chose its own name).
fn shown(s: &str) -> String {
    claw_gateway::text::escape(s).into_owned()
}

async fn list(home: &Home, as_json: bool) -> anyhow::Result<u8> {
    let v = admin_call(home, "device.pair.list", json!({})).await?;
    if as_json {
        println!("{v}");
        return Ok(0);
    }
    let paired = v["paired"].as_array().cloned().unwrap_or_default();
    let pending = v["pending"].as_array().cloned().unwrap_or_default();
    let now = claw_gateway::now_ms();
    println!("paired devices: {}", paired.len());
    for d in &paired {
        println!("  {}", device_line(d, now));
    }
    println!("pending requests: {}", pending.len());
    for r in &pending {
        let id = r["deviceId"].as_str().unwrap_or("");
        println!(
            "  {}  device {}  {}  from {}{}  {}  (approve: claw devices approve {})",
            shown(r["requestId"].as_str().unwrap_or("")),
            &id[..16.min(id.len())],
            shown(r["displayName"].as_str().unwrap_or("(no name)")),
            shown(r["origin"].as_str().unwrap_or("")),
            r["remoteAddr"]
                .as_str()
                .map(|a| format!(" {}", shown(a)))
                .unwrap_or_default(),
            super::ago::ago(now, r["createdAtMs"].as_u64().unwrap_or(now)),
            shown(r["requestId"].as_str().unwrap_or(""))
        );
    }
    Ok(0)
}

/// One paired device as `claw devices list` prints it: id, presence (online / idle / offline /
/// revoked) with its transport, name, last seen or connected since in human time, scopes.
/// Pure (`now` passed in).
fn device_line(d: &Value, now: u64) -> String {
    let id = d["deviceId"].as_str().unwrap_or("");
    let status = if d["revoked"] == true {
        "revoked"
    } else {
        d["status"].as_str().unwrap_or("offline")
    };
    let via = d["transport"]
        .as_str()
        .map(|t| format!("/{t}"))
        .unwrap_or_default();
    let when = match (d["connectedSinceMs"].as_u64(), d["lastSeenAtMs"].as_u64()) {
        (Some(since), _) => format!(
            "connected {}",
            super::ago::ago(now, since).replace(" ago", "")
        ),
        (None, Some(seen)) => format!(
            "last seen {}{}",
            super::ago::ago(now, seen),
            d["lastTransport"]
                .as_str()
                .map(|t| format!(" ({})", shown(t)))
                .unwrap_or_default()
        ),
        (None, None) => "never seen".into(),
    };
    format!(
        "{}  {:<14} {:<14} {:<28} scopes={} via={}",
        &id[..16.min(id.len())],
        format!("{status}{via}"),
        shown(
            d["displayName"]
                .as_str()
                .or(d["clientId"].as_str())
                .unwrap_or("-")
        ),
        when,
        shown(
            &d["scopes"]
                .as_array()
                .map(|s| s
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","))
                .unwrap_or_default()
        ),
        shown(d["approvedVia"].as_str().unwrap_or(""))
    )
}

async fn rotate_token(
    home: &Home,
    force: bool,
    shared: bool,
    revoke_devices: bool,
) -> anyhow::Result<u8> {
    let mut force = force;
    if !force {
        let live = if super::admin_client::running_pid(home).is_some() {
            let s = admin_call(home, "gateway.status", json!({})).await?;
            s["connections"]["deviceToken"].as_u64().unwrap_or(0)
        } else {
            0
        };
        if live > 0 {
            if !std::io::stdin().is_terminal() {
                return Err(fail(
                    exit::FAILURE,
                    format!("refusing to rotate: {live} live device-token session(s) would be closed; re-run with --force"),
                ));
            }
            eprint!("{live} live device-token session(s) will be closed with 1008 `unauthorized: device token rotated`. Rotate? [y/N] ");
            std::io::stderr().flush()?;
            let mut answer = String::new();
            std::io::stdin().lock().read_line(&mut answer)?;
            if !matches!(answer.trim(), "y" | "Y" | "yes") {
                return Err(fail(exit::FAILURE, "not rotated"));
            }
        }
        force = true;
    }
    let v = admin_call(
        home,
        "gateway.token.rotate",
        json!({"force": force, "shared": shared, "revokeDevices": revoke_devices}),
    )
    .await?;
    println!(
        "device-token root rotated: generation {}, {} session(s) closed, {} device(s) removed{}",
        v["generation"],
        v["closedSessions"],
        v["devicesRemoved"],
        if shared {
            ", shared token replaced"
        } else {
            ""
        }
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices() -> Vec<Value> {
        vec![
            json!({"deviceId": "a1b2c3d4e5f60718", "displayName": "phone"}),
            json!({"deviceId": "a1b2c3d4ffff0000", "displayName": "laptop"}),
            json!({"deviceId": "9999999999999999", "displayName": "laptop2"}),
        ]
    }

    fn pick(id: &str) -> Result<String, String> {
        resolve(&devices(), id, &["deviceId"], "paired device")
            .map(|v| v["deviceId"].as_str().unwrap().to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn ids_names_and_long_prefixes_resolve() {
        assert_eq!(pick("a1b2c3d4e5f60718").unwrap(), "a1b2c3d4e5f60718");
        assert_eq!(pick("a1b2c3d4e").unwrap(), "a1b2c3d4e5f60718");
        assert_eq!(pick("phone").unwrap(), "a1b2c3d4e5f60718");
        assert_eq!(pick("laptop").unwrap(), "a1b2c3d4ffff0000");
    }

    #[test]
    fn device_lines_show_presence_in_human_time() {
        let now = 1_000_000_000;
        let online = json!({"deviceId": "a1b2c3d4e5f60718aaaa", "displayName": "phone",
            "status": "online", "transport": "tunnel", "connectedSinceMs": now - 120_000,
            "lastSeenAtMs": now, "scopes": ["operator.read"], "approvedVia": "pairing-code"});
        let l = device_line(&online, now);
        assert!(l.starts_with("a1b2c3d4e5f60718  online/tunnel"), "{l}");
        assert!(l.contains("connected 2 min"), "{l}");
        let offline = json!({"deviceId": "b1", "status": "offline", "lastSeenAtMs": now - 3 * 3_600_000,
            "lastTransport": "ssh", "scopes": []});
        let l = device_line(&offline, now);
        assert!(
            l.contains("offline") && l.contains("last seen 3 h ago (ssh)"),
            "{l}"
        );
        let revoked =
            json!({"deviceId": "c1", "revoked": true, "status": "online", "transport": "ws"});
        assert!(device_line(&revoked, now).contains("revoked/ws"));
        let never = json!({"deviceId": "d1", "displayName": "x\u{1b}[31m"});
        let l = device_line(&never, now);
        assert!(l.contains("never seen") && !l.contains('\u{1b}'), "{l}");
    }

    #[test]
    fn short_and_ambiguous_prefixes_are_refused() {
        for short in ["a", "9", "a1b2c3d"] {
            let e = pick(short).unwrap_err();
            assert!(e.contains("at least 8"), "{short}: {e}");
        }
        assert!(pick("a1b2c3d4").unwrap_err().contains("matches 2"));
        assert!(pick("b1b2c3d4").unwrap_err().contains("no paired device"));
    }
}
