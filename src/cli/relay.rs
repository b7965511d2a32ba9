//! `claw relay serve`: a relay users host themselves (iroh-relay's server, claw's admission),
//! so a gateway behind NAT with no inbound port and its devices can meet.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use anyhow::Context;
use claw_gateway::home::{create_private_dir, write_secret_atomic, Home};
use claw_mesh::admission::{parse_allow_file, parse_gateway_id, Admission};
use claw_mesh::server::{spawn, RelayServeConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use super::{exit, fail};

/// Relay verbs.
#[derive(Debug, clap::Subcommand)]
pub enum RelayCmd {
    /// Run a relay: the one component with a public address; it carries end-to-end encrypted
    /// tunnel packets between listed gateways and their devices.
    Serve(ServeArgs),
}

/// `claw relay serve` flags.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TCP address to serve on (HTTPS).
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// A gateway this relay serves, by the id `claw pair --json` prints as `gatewayId`
    /// (repeatable). With none (and no file) the relay admits no one.
    #[arg(long = "allow-gateway", value_name = "ID")]
    allow_gateway: Vec<String>,
    /// A file of gateway ids, one per line (`#` comments).
    #[arg(long, value_name = "FILE")]
    allow_gateway_file: Option<PathBuf>,
    /// Certificate chain (PEM) of a CA-issued certificate; default: a self-signed one kept in
    /// the home, whose SHA-256 is the pin printed at start.
    #[arg(long, requires = "key", value_name = "FILE")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of `--cert`.
    #[arg(long, requires = "cert", value_name = "FILE")]
    key: Option<PathBuf>,
    /// Bytes per second the relay reads from one client (gateway or device).
    #[arg(long, default_value_t = 32 * 1024 * 1024, value_name = "BYTES")]
    client_bytes_per_sec: u32,
    /// Print the ready line as one JSON object (`url`, `pin`, `gateways`, `pid`).
    #[arg(long)]
    json: bool,
}

/// Runs a relay verb.
pub async fn run(home: &Home, cmd: RelayCmd) -> anyhow::Result<u8> {
    match cmd {
        RelayCmd::Serve(a) => serve(home, a).await,
    }
}

fn gateway_ids(a: &ServeArgs) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for s in &a.allow_gateway {
        ids.push(parse_gateway_id(s).map_err(|e| fail(exit::CONFIG, e.to_string()))?);
    }
    if let Some(f) = &a.allow_gateway_file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| fail(exit::CONFIG, format!("{}: {e}", f.display())))?;
        ids.extend(
            parse_allow_file(&text)
                .map_err(|e| fail(exit::CONFIG, format!("{}: {e}", f.display())))?,
        );
    }
    Ok(ids)
}

/// The host part of the relay's URL: the listen address, or this host's name when it listens
/// on every interface.
fn url_host(listen: &SocketAddr) -> String {
    match listen.ip() {
        ip if ip.is_unspecified() => nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into()),
        IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    }
}

type Credentials = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn load_pem(cert: &Path, key: &Path) -> anyhow::Result<Credentials> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| fail(exit::CONFIG, format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(fail(
            exit::CONFIG,
            format!("{}: no certificate", cert.display()),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| fail(exit::CONFIG, format!("{}: {e}", key.display())))?;
    Ok((chain, key))
}

/// The relay's self-signed certificate, made on first start and kept (0600) in `HOME/relay/`
/// so its pin stays the same across restarts.
fn self_signed(home: &Home, names: Vec<String>) -> anyhow::Result<Credentials> {
    let dir = home.root().join("relay");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if !cert.exists() || !key.exists() {
        create_private_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let s = claw_mesh::pin::generate_self_signed(names)?;
        write_secret_atomic(&key, s.key_pem.as_bytes())?;
        write_secret_atomic(&cert, s.cert_pem.as_bytes())?;
    }
    load_pem(&cert, &key)
}

async fn serve(home: &Home, a: ServeArgs) -> anyhow::Result<u8> {
    let ids = gateway_ids(&a)?;
    if ids.is_empty() {
        tracing::warn!("no --allow-gateway: this relay admits no one");
    }
    home.ensure()
        .with_context(|| format!("cannot create {}", home.root().display()))?;
    let host = url_host(&a.listen);
    let (tls, pin) = match (&a.cert, &a.key) {
        (Some(c), Some(k)) => (load_pem(c, k)?, None),
        _ => {
            let mut names = vec![
                host.trim_matches(['[', ']']).to_string(),
                "localhost".into(),
            ];
            if !a.listen.ip().is_unspecified() {
                names.push(a.listen.ip().to_string());
            }
            names.dedup();
            let creds = self_signed(home, names)?;
            let pin = claw_mesh::pin::fingerprint(&creds.0[0]);
            (creds, Some(pin))
        }
    };
    let relay = spawn(RelayServeConfig {
        listen: a.listen,
        admission: Admission::new(ids.clone()),
        tls: Some(tls),
        client_rx_bytes_per_sec: NonZeroU32::new(a.client_bytes_per_sec),
    })
    .await
    .map_err(|e| fail(exit::FAILURE, e.to_string()))?;
    // Installed before the ready line: a SIGTERM right after it is a clean stop.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let url = format!("https://{host}:{}", relay.addr.port());
    if a.json {
        println!(
            "{}",
            json!({"url": url, "pin": pin, "gateways": ids, "listen": relay.addr.to_string(), "pid": std::process::id()})
        );
    } else {
        println!(
            "claw relay ready on {url} (listening on {}; {}; {} gateway(s) admitted)",
            relay.addr,
            pin.as_deref()
                .map(|p| format!("self-signed, pin {p}"))
                .unwrap_or_else(|| "certificate from --cert".into()),
            ids.len()
        );
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    relay.shutdown().await;
    Ok(0)
}
