//! The SSH line a paired device prints names the real ports, and the gateway's host key pinned at
//! pairing lets the stock OpenSSH client verify the gateway on first use
//! (`StrictHostKeyChecking=yes`, no `known_hosts` copied by hand).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

#[test]
fn the_printed_ssh_line_has_the_real_ports_and_verifies_the_pinned_host_key() {
    let g = Gateway::start(&["--tunnel", "127.0.0.1:0", "--ssh", "127.0.0.1:0"]);
    let rt: Value =
        serde_json::from_str(&std::fs::read_to_string(g.home.join("gateway.json")).unwrap())
            .unwrap();
    let ssh_port: u16 = rt["ssh"]["addr"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(ssh_port, 18722, "the test needs a non-default SSH port");
    let (code, out, err) = g.claw(&[
        "pair",
        "--json",
        "--addr",
        rt["tunnel"]["addr"].as_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let uri = serde_json::from_str::<Value>(&out).unwrap()["uri"]
        .as_str()
        .unwrap()
        .to_string();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("dev");
    std::fs::create_dir_all(&d).unwrap();

    let (code, out, err) = claw_in(&d, &["tunnel", "pair", &uri, "--json"]);
    assert_eq!(code, 0, "{err}");
    let paired: Value = serde_json::from_str(out.trim()).unwrap();
    let command = paired["ssh"]["command"].as_str().expect(&out).to_string();
    let known_hosts = d.join("known_hosts");
    assert_eq!(paired["ssh"]["knownHosts"], known_hosts.to_str().unwrap());
    let expected = format!(
        "ssh -N -L 18789:127.0.0.1:{} -p {ssh_port} -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes claw@127.0.0.1",
        g.port,
        d.join("id_ed25519_claw").display(),
        known_hosts.display()
    );
    assert_eq!(command, expected);
    let pinned = std::fs::read_to_string(&known_hosts).unwrap();
    assert!(
        pinned.starts_with(&format!("[127.0.0.1]:{ssh_port} ssh-ed25519 ")),
        "{pinned}"
    );

    // `export-ssh-key` writes the key and prints the same line (no --port needed).
    let (code, out, err) = claw_in(&d, &["tunnel", "export-ssh-key"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().nth(1), Some(expected.as_str()), "{out}");

    // The printed line, as printed, with only the local port made free for the test and batch
    // options so it can never prompt.
    let local = free_port();
    let args: Vec<String> = command
        .split_whitespace()
        .skip(1)
        .map(|a| a.replace("18789:127.0.0.1:", &format!("{local}:127.0.0.1:")))
        .collect();
    let mut ssh = Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .args(["-o", "ExitOnForwardFailure=yes", "-o", "ConnectTimeout=10"])
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let ok = loop {
        if let Ok(Some(status)) = ssh.try_wait() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut ssh.stderr.take().unwrap(), &mut err).unwrap();
            panic!("ssh exited ({status}): {err}");
        }
        if std::net::TcpStream::connect(("127.0.0.1", local)).is_ok() {
            let (code, _, _) = claw_in(
                &d,
                &[
                    "call",
                    "health",
                    "--url",
                    &format!("ws://127.0.0.1:{local}"),
                    "--json",
                ],
            );
            if code == 0 {
                break true;
            }
        }
        if t0.elapsed() > Duration::from_secs(60) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = ssh.kill();
    let _ = ssh.wait();
    assert!(ok, "no health through the printed ssh forward");

    // A tampered pin is caught by the same line: the host key check is real.
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{ssh_port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx9d1IeaL1fB6h5kYQ7o0Pj0L8yR6h3pHq1Fvvx5k2T\n"),
    )
    .unwrap();
    let out = Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .args(["-o", "ConnectTimeout=10"])
        .args(args.iter().filter(|a| *a != "-N"))
        .arg("true")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HOST IDENTIFICATION HAS CHANGED")
            || err.contains("Host key verification failed"),
        "{err}"
    );
}
