//! `claw tunnel proxy ssh`: an OpenSSH `ProxyCommand` that carries one SSH connection over the
//! tunnel — stdin/stdout ⇄ a [`StreamHeader::Ssh`] stream to the gateway's SSH forward — along
//! the same paths as `claw tunnel up` (addresses, then relays; [`super::paths`]), with the
//! device's paired identity and the same pinning. The gateway's SSH server then authenticates
//! the device's SSH key as it does for a direct `ssh -N -L`.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::client::{first_bytes, refusal_of};
use super::paths::Paths;
use super::TunnelError;
use crate::control::{self, StreamHeader};
use crate::device::DeviceHome;
use crate::identity::Identity;

/// Bytes carried by one proxied SSH connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Carried {
    /// From the SSH client (stdin) to the gateway.
    pub up: u64,
    /// From the gateway to the SSH client (stdout).
    pub down: u64,
}

/// Connects to the paired gateway and splices `input`/`output` to its SSH forward until the
/// gateway's side ends. A gateway without an SSH forward (or one refusing this device) answers
/// with a refusal line, returned as [`TunnelError::Refused`] — never written to `output`.
pub async fn proxy_ssh<R, W>(
    home: &DeviceHome,
    mut input: R,
    mut output: W,
) -> Result<Carried, TunnelError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let pairing = home.pairing()?;
    let identity = Identity::load_or_create(&home.identity_path())?;
    let ticket = home.relay_ticket().ok().flatten().map(|t| t.ticket);
    let paths = Paths::for_pairing(&identity, &pairing, watch::channel(ticket).1)?;
    let conn = paths.connect().await?;
    let result = async {
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| TunnelError::Connection(e.to_string()))?;
        send.write_all(&control::encode(&StreamHeader::Ssh))
            .await
            .map_err(|e| TunnelError::Connection(e.to_string()))?;
        // The SSH server speaks first (its banner): a refusal line is all a refusing gateway
        // sends.
        let (first, ended) = first_bytes(&mut recv).await;
        if let Some((code, message)) = refusal_of(&first, ended) {
            return Err(TunnelError::Refused { code, message });
        }
        let io = |e: std::io::Error| TunnelError::Connection(e.to_string());
        output.write_all(&first).await.map_err(io)?;
        output.flush().await.map_err(io)?;
        let mut carried = Carried {
            up: 0,
            down: first.len() as u64,
        };
        let down = async {
            let n = tokio::io::copy(&mut recv, &mut output).await?;
            output.flush().await?;
            Ok::<u64, std::io::Error>(n)
        };
        let up = async {
            let n = tokio::io::copy(&mut input, &mut send).await?;
            let _ = send.finish();
            Ok::<u64, std::io::Error>(n)
        };
        tokio::pin!(down);
        tokio::pin!(up);
        // The gateway's end decides when the session is over; the client's EOF only half-closes.
        tokio::select! {
            d = &mut down => carried.down += d.map_err(io)?,
            u = &mut up => {
                carried.up = u.map_err(io)?;
                carried.down += down.await.map_err(io)?;
            }
        }
        Ok(carried)
    }
    .await;
    conn.close(0u32.into(), b"ssh proxy done");
    paths.close().await;
    result
}
