//! TLS and QUIC transport settings shared by both ends of the tunnel.
//!
//! quinn's defaults bite a tunnel: no keep-alive and a 30 s idle
//! timeout kill idle tunnels, and a 1.25 MB stream window caps one stream's throughput. The values
//! here are chosen for a long-lived, mostly idle tunnel that must still move bulk data fast.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
#[cfg(feature = "gateway")]
use quinn::crypto::rustls::QuicServerConfig;
use quinn::{IdleTimeout, TransportConfig, VarInt};

use super::TunnelError;
use crate::identity::Identity;
use crate::verify::PinnedServerVerifier;
#[cfg(feature = "gateway")]
use crate::verify::{DeviceClientVerifier, KeyLookup};

/// ALPN of the tunnel protocol.
pub const ALPN: &[u8] = b"claw-tunnel/1";
/// SNI the device sends (the key is pinned; the name is not checked).
pub const SERVER_NAME: &str = "claw";
/// Keep-alive interval (client side): short enough that the gateway shows a silent device offline
/// after three of them ([`crate::quic::liveness::SILENT_AFTER`], ~8 s after a `kill -9`) and the
/// device notices a dead gateway ([`crate::quic::liveness::DEAD_AFTER`]); one small packet (and
/// its acknowledgement) every 2 s on an idle tunnel.
pub const KEEP_ALIVE: Duration = Duration::from_secs(2);
/// Idle timeout (both sides).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Per-stream receive window.
pub const STREAM_WINDOW: u32 = 16 * 1024 * 1024;
/// Per-connection receive window.
pub const CONN_WINDOW: u32 = 64 * 1024 * 1024;
/// Concurrent bidirectional streams a device may open (one per forwarded TCP connection).
pub const MAX_STREAMS: u32 = 4096;

/// Largest UDP payload either end accepts and the ceiling of MTU discovery (quinn's default
/// stops at 1452). Paths with a larger MTU (loopback, jumbo-frame LANs, some VPNs) then carry
/// fewer, larger packets — quinn's cost is per packet — while internet paths still settle at
/// what they allow (quinn probes, and backs off on black holes). 6,000 and not 9,000: quinn
/// sends up to 10 packets in one GSO batch, and a batch must fit a 64 KiB UDP datagram; above
/// ~6,500 bytes every batch fails and discovery falls back to 1,200 (measured; docs/benchmarks-tunnel.md).
pub const MAX_UDP_PAYLOAD: u16 = 6000;
/// UDP socket buffers asked for (the kernel caps them at `net.core.rmem_max`/`wmem_max`). The
/// defaults (~208 KiB) overflow under bulk transfer: on loopback they lost ~4 packets per MB,
/// each one a congestion-window cut; 4 MiB lost none (quic-go asks for 7 MiB for the same reason).
/// `claw doctor` (`udp.buffers`) reports a kernel cap below it.
pub const SOCKET_BUFFER: usize = claw_proto::tunnel::SOCKET_BUFFER as usize;
/// UDP socket buffers taken when the process may exceed the kernel's cap (root, or
/// `CAP_NET_ADMIN`: `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE`). On a 1,500-MTU path a receiver that is
/// short of CPU for a moment still overflowed 4 MiB (72–352 `RcvbufErrors` per bench phase on a
/// loaded machine, each a lost packet and a congestion event); 16 MiB absorbed it
/// (docs/benchmarks-tunnel.md, *Real paths*).
pub const FORCED_SOCKET_BUFFER: usize = 16 * 1024 * 1024;
/// Largest chunk the data path ([`crate::quic::copy`]) reads from TCP or takes from quinn at once
/// (what `copy_bidirectional` used before; larger chunks cost more per allocation and saved
/// nothing measurable).
pub const COPY_CHUNK: usize = 64 * 1024;

/// The endpoint settings.
pub fn endpoint_config() -> quinn::EndpointConfig {
    let mut e = quinn::EndpointConfig::default();
    e.max_udp_payload_size(MAX_UDP_PAYLOAD)
        .expect("within QUIC's limits");
    e
}

/// A tokio UDP endpoint on `addr` with [`endpoint_config`] and enlarged socket buffers.
pub fn endpoint(
    addr: std::net::SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(addr)?;
    enlarge_buffers(&socket);
    quinn::Endpoint::new(
        endpoint_config(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// Takes [`FORCED_SOCKET_BUFFER`]-sized socket buffers when the process may exceed the kernel's
/// cap (root), else asks for [`SOCKET_BUFFER`]-sized ones, which the cap may shrink. A lower
/// cap is logged at debug level only (every CLI command that opens an endpoint would repeat
/// it); `claw doctor` reports it with the command that raises it.
pub(crate) fn enlarge_buffers(socket: &std::net::UdpSocket) {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    if setsockopt(socket, sockopt::RcvBufForce, &FORCED_SOCKET_BUFFER).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &SOCKET_BUFFER);
    }
    if setsockopt(socket, sockopt::SndBufForce, &FORCED_SOCKET_BUFFER).is_err() {
        let _ = setsockopt(socket, sockopt::SndBuf, &SOCKET_BUFFER);
    }
    // Linux reports twice the usable size.
    let got = getsockopt(socket, sockopt::RcvBuf).unwrap_or(0) / 2;
    tracing::debug!(
        receive_buffer_kib = got / 1024,
        wanted_kib = SOCKET_BUFFER / 1024,
        "UDP socket buffers (see `claw doctor`, udp.buffers)"
    );
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The transport settings. The congestion controller is BBR, not quinn's default Cubic: on a
/// 1,500-MTU path with a 20 ms round trip and 1 % random loss, Cubic took every loss as
/// congestion and the tunnel fell to 0.7 MB/s (0.03× OpenSSH, whose kernel TCP runs BBR on this
/// machine); BBR kept 52–75 MB/s, 2.3× OpenSSH, and its own lossless rate, and was 1.5× OpenSSH
/// lossless (docs/benchmarks-tunnel.md, *A real round trip*). quinn calls its BBR experimental;
/// on a 0.1 ms veth it measured the same as Cubic (session 3).
pub fn transport(keep_alive: bool) -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.max_idle_timeout(Some(IdleTimeout::try_from(IDLE_TIMEOUT).expect("fits")));
    if keep_alive {
        t.keep_alive_interval(Some(KEEP_ALIVE));
    }
    t.stream_receive_window(VarInt::from_u32(STREAM_WINDOW));
    t.receive_window(VarInt::from_u32(CONN_WINDOW));
    t.send_window(CONN_WINDOW as u64);
    t.max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD);
    t.mtu_discovery_config(Some(mtu));
    t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    Arc::new(t)
}

/// Connection-level receive window a key gets at the handshake, before the gateway knows whether
/// it is paired: an unpaired key can make the gateway buffer at most this much, however many
/// streams it opens and however little the gateway reads. Raised to [`CONN_WINDOW`] for a paired
/// key (quinn's `set_receive_window`), with the stream limit.
pub const HANDSHAKE_WINDOW: u32 = 256 * 1024;

/// The server's transport settings: [`transport`] with the small pre-pairing limits
/// ([`HANDSHAKE_WINDOW`], [`crate::quic::server::UNPAIRED_STREAMS`]) that a paired key is raised
/// from once its connection is up. (A QUIC peer keeps any credit it was granted, so the limits
/// must start small: lowering them after the handshake would not take anything back.)
#[cfg(feature = "gateway")]
pub fn server_transport() -> Arc<TransportConfig> {
    let mut t = Arc::try_unwrap(transport(false)).unwrap_or_else(|_| unreachable!("fresh Arc"));
    t.receive_window(VarInt::from_u32(HANDSHAKE_WINDOW));
    t.max_concurrent_bidi_streams(VarInt::from_u32(crate::quic::server::UNPAIRED_STREAMS));
    Arc::new(t)
}

/// The gateway's QUIC server config: its identity, client keys checked by `lookup`.
#[cfg(feature = "gateway")]
pub fn server_config(
    identity: &Identity,
    lookup: KeyLookup,
) -> Result<quinn::ServerConfig, TunnelError> {
    let (cert, key) = identity.tls_credentials()?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TunnelError::Config(e.to_string()))?
        .with_client_cert_verifier(Arc::new(DeviceClientVerifier::new(lookup)))
        .with_single_cert(vec![cert], key)
        .map_err(|e| TunnelError::Config(e.to_string()))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let quic = QuicServerConfig::try_from(tls).map_err(|e| TunnelError::Config(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    cfg.transport_config(server_transport());
    Ok(cfg)
}

/// The device's QUIC client config: its identity, the gateway pinned to `gateway_id`.
/// Returns the verifier too, so a mismatch can be reported with the key actually seen.
pub fn client_config(
    identity: &Identity,
    gateway_id: &str,
) -> Result<(quinn::ClientConfig, Arc<PinnedServerVerifier>), TunnelError> {
    let (cert, key) = identity.tls_credentials()?;
    let verifier = Arc::new(PinnedServerVerifier::new(gateway_id));
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TunnelError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_client_auth_cert(vec![cert], key)
        .map_err(|e| TunnelError::Config(e.to_string()))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(|e| TunnelError::Config(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(transport(true));
    Ok((cfg, verifier))
}
