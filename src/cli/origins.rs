//! `claw gateway origins add|remove|list`: the browser origins persisted in the home
//! (`origins.json`, OpenClaw's `gateway.controlUi.allowedOrigins`). A running gateway reloads the
//! list at once; the gateway's own loopback origins and `--allow-origin` are always allowed too.

use claw_gateway::home::Home;
use claw_gateway::origin::{load, parse_origin, save};
use serde_json::json;

use super::admin_client::{live_call, running_pid};
use super::{exit, fail};

/// `gateway origins` verbs.
#[derive(Debug, clap::Subcommand)]
pub enum OriginsCmd {
    /// Allow a browser origin (`scheme://host[:port]`; no path, no wildcard, never `null`).
    Add {
        /// The origin, e.g. `http://127.0.0.1:5173` or `https://control.example.com`.
        origin: String,
    },
    /// Stop allowing a persisted origin.
    Remove {
        /// The origin as added (compared in canonical form).
        origin: String,
    },
    /// The persisted origins; with a running gateway, every origin it allows.
    List {
        /// One JSON document: `{"allowedOrigins": [...], "running": bool}`.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an `origins` verb.
pub async fn run(home: &Home, cmd: OriginsCmd) -> anyhow::Result<u8> {
    let bad = |e: claw_gateway::origin::OriginsFileError| fail(exit::CONFIG, e.to_string());
    match cmd {
        OriginsCmd::Add { origin } => {
            let o = parse_origin(&origin)
                .map_err(|e| fail(exit::CONFIG, format!("{}: {e}", origin.escape_debug())))?;
            home.ensure()?;
            let mut list = load(home.root()).map_err(bad)?;
            if !list.contains(&o) {
                list.push(o.clone());
                list.sort();
                save(home.root(), &list).map_err(bad)?;
            }
            println!("allowed browser origin {o}{}", reload(home).await?);
            Ok(0)
        }
        OriginsCmd::Remove { origin } => {
            let o = parse_origin(&origin).unwrap_or_else(|_| origin.clone());
            let mut list = load(home.root()).map_err(bad)?;
            let before = list.len();
            list.retain(|x| x != &o);
            if list.len() == before {
                return Err(fail(
                    exit::FAILURE,
                    format!("{} is not in the persisted list", o.escape_debug()),
                ));
            }
            save(home.root(), &list).map_err(bad)?;
            println!("removed browser origin {o}{}", reload(home).await?);
            Ok(0)
        }
        OriginsCmd::List { json: as_json } => {
            let persisted = load(home.root()).map_err(bad)?;
            let live = if running_pid(home).is_some() {
                match live_call(home, "gateway.origins.reload", json!({})).await {
                    Ok(Ok(v)) => Some(v["allowedOrigins"].clone()),
                    _ => None,
                }
            } else {
                None
            };
            if as_json {
                let all = live.clone().unwrap_or_else(|| json!(persisted));
                println!(
                    "{}",
                    json!({"allowedOrigins": all, "persisted": persisted, "running": live.is_some()})
                );
                return Ok(0);
            }
            match live.as_ref().and_then(|v| v.as_array()) {
                Some(all) => {
                    println!("allowed by the running gateway:");
                    for o in all.iter().filter_map(|o| o.as_str()) {
                        let tag = if persisted.iter().any(|p| p == o) {
                            " (persisted)"
                        } else {
                            ""
                        };
                        println!("  {}{tag}", o.escape_debug());
                    }
                }
                None => {
                    println!("persisted (plus the gateway's own loopback origins and --allow-origin when it runs):");
                    for o in &persisted {
                        println!("  {o}");
                    }
                }
            }
            Ok(0)
        }
    }
}

/// Tells a running gateway to reload the list; the note to print after the verb's line.
async fn reload(home: &Home) -> anyhow::Result<String> {
    if running_pid(home).is_none() {
        return Ok(" (applies when the gateway starts)".into());
    }
    match live_call(home, "gateway.origins.reload", json!({})).await {
        Ok(Ok(_)) => Ok(" (the running gateway applied it)".into()),
        Ok(Err(e)) => Err(fail(exit::FAILURE, format!("{}: {}", e.code, e.message))),
        Err(e) => Err(fail(
            exit::FAILURE,
            format!("saved, but the running gateway did not reload it: {e:#}"),
        )),
    }
}
