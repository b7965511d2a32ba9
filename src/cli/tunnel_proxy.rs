//! `claw tunnel proxy ssh`: stdin/stdout ⇄ the paired gateway's SSH forward over the tunnel, for
//! `ssh -o ProxyCommand='claw --home DIR tunnel proxy ssh' …` when the gateway has no reachable
//! port (behind NAT, reached through a relay). stdout carries SSH bytes only; every message goes
//! to stderr.

use claw_tunnel::device::DeviceHome;
use claw_tunnel::quic::TunnelError;

use super::{exit, fail};

/// What `claw tunnel proxy` carries.
#[derive(Debug, clap::Subcommand)]
pub enum ProxyCmd {
    /// Carry one SSH connection (an OpenSSH `ProxyCommand`) to the gateway's SSH forward:
    /// `ssh -o ProxyCommand='claw tunnel proxy ssh' -N -L 18789:127.0.0.1:PORT claw@gateway`.
    Ssh,
}

/// The exit status for a failed proxy: 69 no path to the gateway answered, 77 the gateway
/// refused this device for who it is (revoked, not paired), 1 anything else. Pure.
pub fn exit_code(e: &TunnelError) -> u8 {
    match e {
        TunnelError::Unreachable { .. } => exit::UNAVAILABLE,
        TunnelError::Refused { code, .. } if code.is_final() => exit::REVOKED,
        TunnelError::Device(_) => exit::CONFIG,
        _ => exit::FAILURE,
    }
}

/// Runs `claw tunnel proxy …`.
pub async fn run(dh: &DeviceHome, cmd: ProxyCmd) -> anyhow::Result<u8> {
    match cmd {
        ProxyCmd::Ssh => {
            if !dh.pairing_path().exists() {
                return Err(fail(
                    exit::CONFIG,
                    "this home is not paired with a gateway: run `claw tunnel pair URI` first",
                ));
            }
            claw_tunnel::quic::proxy::proxy_ssh(dh, tokio::io::stdin(), tokio::io::stdout())
                .await
                .map_err(|e| fail(exit_code(&e), format!("claw tunnel proxy ssh: {e}")))?;
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use claw_tunnel::control::TunnelCode;

    #[test]
    fn exit_codes_say_unreachable_refused_or_other() {
        let unreachable = TunnelError::Unreachable {
            addrs: "a".into(),
            reason: "timed out".into(),
        };
        assert_eq!(exit_code(&unreachable), 69);
        let revoked = TunnelError::Refused {
            code: TunnelCode::Revoked,
            message: "m".into(),
        };
        assert_eq!(exit_code(&revoked), 77);
        let no_ssh = TunnelError::Refused {
            code: TunnelCode::NotExposed,
            message: "m".into(),
        };
        assert_eq!(exit_code(&no_ssh), 1);
        assert_eq!(exit_code(&TunnelError::Connection("x".into())), 1);
    }
}
