//! The device side kept running: one `claw tunnel up` per home (`tunnel.lock`), `--daemon`
//! (detached, logging to `HOME/tunnel.log`), `claw tunnel down`, and `claw tunnel
//! install|uninstall` (a systemd unit built by [`super::service`], with no secret in it).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use claw_gateway::lock::{GatewayLock, LockError, LockState};
use claw_tunnel::device::DeviceHome;

use super::json_out::{Stopped, TunnelStarted};

use super::{exit, fail};

/// `HOME/tunnel.lock`: held (flock, with the pid in it) by the running `claw tunnel up`.
pub fn lock_path(dh: &DeviceHome) -> PathBuf {
    dh.pairing_path().with_file_name("tunnel.lock")
}

/// `HOME/tunnel.log`: where `claw tunnel up --daemon` writes its log.
pub fn log_path(dh: &DeviceHome) -> PathBuf {
    dh.pairing_path().with_file_name("tunnel.log")
}

/// When the lock file was last written: the holder writes its pid when it takes the lock.
fn since(path: &Path) -> String {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map(|t| humantime::format_rfc3339_seconds(t).to_string())
        .unwrap_or_else(|_| "an unknown time".into())
}

/// The refusal of a second `tunnel up` on one home: names the first.
fn already_running(dh: &DeviceHome, pid: u32) -> anyhow::Error {
    fail(
        exit::LOCKED,
        format!(
            "another `claw tunnel up` is already running on this home (pid {pid}, since {}); stop it with `claw tunnel down` or use another --home",
            since(&lock_path(dh))
        ),
    )
}

/// Takes the home's tunnel lock for this process (released when it ends, even by `kill -9`).
pub fn take_lock(dh: &DeviceHome) -> anyhow::Result<GatewayLock> {
    match GatewayLock::acquire(&lock_path(dh)) {
        Ok(l) => Ok(l),
        Err(LockError::Held { pid }) => Err(already_running(dh, pid)),
        Err(e) => Err(fail(exit::FAILURE, e.to_string())),
    }
}

/// The pid of the running `claw tunnel up` on this home.
pub fn running_pid(dh: &DeviceHome) -> Option<u32> {
    match GatewayLock::inspect(&lock_path(dh)) {
        LockState::Held { pid } => Some(pid),
        _ => None,
    }
}

/// `claw tunnel up --daemon`: runs this same command line (minus `--daemon`) detached, with its
/// output appended to `HOME/tunnel.log`, and returns once it is up (its status file names its
/// pid) — or fails with the log lines of this run when it exits first.
pub async fn daemon(dh: &DeviceHome, as_json: bool) -> anyhow::Result<u8> {
    if let Some(pid) = running_pid(dh) {
        return Err(already_running(dh, pid));
    }
    dh.pairing()
        .map_err(|e| fail(exit::FAILURE, e.to_string()))?;
    let exe = std::env::current_exe().context("cannot find the claw executable")?;
    let log_file = log_path(dh);
    let args: Vec<std::ffi::OsString> = std::env::args_os()
        .skip(1)
        .filter(|a| a != "--daemon")
        .collect();
    let mut cmd = std::process::Command::new(exe);
    cmd.args(args);
    let child = super::detached::Detached::spawn(cmd, &log_file, "tunnel")?;
    let pid = child.pid;
    let listen = child
        .wait_ready(|pid| {
            let status: Option<serde_json::Value> =
                claw_gateway::home::read_private(&dh.status_path())
                    .and_then(|s| serde_json::from_str(&s).ok());
            status.filter(|v| v["pid"] == pid).map(|v| {
                v["listen"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(String::from))
                            .collect::<Vec<String>>()
                    })
                    .unwrap_or_default()
            })
        })
        .await?;
    if as_json {
        let s = TunnelStarted {
            event: "started".into(),
            pid,
            listen,
            log: log_file,
        };
        println!("{}", serde_json::to_string(&s)?);
    } else {
        println!(
            "claw tunnel started: pid {pid}, ws://{} (log {})",
            listen.first().map(String::as_str).unwrap_or(""),
            log_file.display()
        );
    }
    Ok(0)
}

/// `claw tunnel down`: SIGTERM to the running `tunnel up` and wait (10 s) until it let go of the
/// home. Nothing running is not an error.
pub async fn down(dh: &DeviceHome, home: &Path, as_json: bool) -> anyhow::Result<u8> {
    let print = |s: &Stopped, text: String| -> anyhow::Result<()> {
        if as_json {
            println!("{}", serde_json::to_string(s)?);
        } else {
            println!("{text}");
        }
        Ok(())
    };
    let Some(pid) = running_pid(dh).filter(|p| *p > 0) else {
        print(
            &Stopped {
                stopped: false,
                pid: None,
            },
            format!("no claw tunnel is running on {}", home.display()),
        )?;
        return Ok(0);
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .map_err(|e| fail(exit::FAILURE, format!("cannot stop pid {pid}: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if running_pid(dh).is_none() {
            print(
                &Stopped {
                    stopped: true,
                    pid: Some(pid),
                },
                format!("claw tunnel stopped (pid {pid})"),
            )?;
            return Ok(0);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(fail(
        exit::FAILURE,
        format!("the tunnel (pid {pid}) did not stop within 10 s"),
    ))
}
