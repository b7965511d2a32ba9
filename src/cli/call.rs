//! `claw call` and `claw health`: a thin WebSocket client for any method.

use anyhow::Context;
use claw_gateway::home::Home;
use relay_client::{ClientError, ConnectOptions, Session};
use serde_json::Value;

use super::admin_client::{live_call, running_pid};
use super::{exit, fail};

/// `claw call <method>`.
#[derive(Debug, clap::Args)]
pub struct CallArgs {
    /// Method name, e.g. `health`, `device.pair.list`.
    method: String,
    /// Parameters as a JSON object.
    #[arg(long, default_value = "{}")]
    params: String,
    #[command(flatten)]
    conn: ConnArgs,
}

/// `claw health`.
#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    #[command(flatten)]
    conn: ConnArgs,
}

/// Where and how to connect.
#[derive(Debug, clap::Args)]
pub struct ConnArgs {
    /// Gateway URL (default: the running gateway's, else ws://127.0.0.1:18789).
    #[arg(long)]
    url: Option<String>,
    /// Token to present (default: this home's shared gateway token).
    #[arg(long, env = "CLAW_GATEWAY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the raw JSON payload.
    #[arg(long)]
    json: bool,
}

/// The URL of the gateway running on this home. `gateway.json` is believed only while the
/// gateway lock is held by the pid it names: a file left by a dead gateway (`kill -9`) names a
/// port anyone may have taken since.
fn running_url(home: &Home) -> Option<String> {
    let pid = running_pid(home)?;
    claw_gateway::runtime_file::RuntimeFile::of_running(home, pid).map(|r| r.url)
}

fn default_url(home: &Home) -> String {
    running_url(home).unwrap_or_else(|| format!("ws://127.0.0.1:{}", claw_proto::ports::GATEWAY))
}

/// The fingerprint of the gateway whose home this is (its `identity.key`), never creating one.
pub(super) fn home_gateway_fingerprint(home: &Home) -> anyhow::Result<Option<String>> {
    let path = home.root().join("identity.key");
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        _ => Ok(Some(
            claw_gateway::auth::device_key::load_or_create(&path)?.device_id(),
        )),
    }
}

/// Credentials for `claw call`, in order: `--token`; a paired device home (its key signs, its
/// stored device token authenticates — through `claw tunnel up` a stale token is answered with a
/// fresh one); the gateway home's shared token. Whenever the gateway's key is known (the
/// pairing's pinned fingerprint, or this home's `identity.key`) the gateway must prove it holds
/// it before anything is sent; the home's own shared token is never sent to an unproven server.
fn connect_options(home: &Home, url: &str, c: &ConnArgs) -> anyhow::Result<Option<ConnectOptions>> {
    let dh = claw_tunnel::device::DeviceHome::new(home.root());
    if c.token.is_none() {
        if let Ok(pairing) = dh.pairing() {
            let key = claw_gateway::auth::device_key::load_or_create(&dh.identity_path())?;
            let mut o = ConnectOptions::new(url)
                .device(key)
                .scopes(&["operator.read", "operator.write"])
                .expect_gateway(pairing.gateway_id);
            if let Some(t) = dh.token()? {
                o = o.token(t.token);
            }
            return Ok(Some(o));
        }
    }
    let fingerprint = home_gateway_fingerprint(home)?;
    let with_proof = |o: ConnectOptions| match &fingerprint {
        Some(fp) => o.expect_gateway(fp.clone()),
        None => o,
    };
    if let Some(t) = &c.token {
        return Ok(Some(with_proof(ConnectOptions::new(url).token(t.clone()))));
    }
    match claw_gateway::home::read_secret(&home.shared_token_path()) {
        Ok(t) => {
            if fingerprint.is_none() {
                return Err(fail(
                    exit::FAILURE,
                    format!(
                        "cannot verify the server at {url}: {} has no identity.key to check it against, and this home's shared token is only sent to a server that proves it is this home's gateway (pass --token to send one anyway)",
                        home.root().display()
                    ),
                ));
            }
            Ok(Some(with_proof(ConnectOptions::new(url).token(t))))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("{}", home.shared_token_path().display())),
    }
}

/// Prints a method's payload as `claw call` does.
fn print_payload(v: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{v}");
    } else {
        println!("{}", serde_json::to_string_pretty(v)?);
    }
    Ok(())
}

/// `claw call` on the gateway's own home: through the uid-checked admin socket, so no secret
/// crosses a TCP port at all. When no gateway holds this home's lock nothing is sent anywhere.
async fn call_on_home(home: &Home, method: &str, params: Value, json: bool) -> anyhow::Result<u8> {
    if running_pid(home).is_none() {
        return Err(fail(
            exit::UNAVAILABLE,
            format!(
                "no claw gateway runs on {} (nothing was sent); start one with `claw gateway start`, or pass --url and --token to reach another gateway",
                home.root().display()
            ),
        ));
    }
    match live_call(home, method, params).await {
        Ok(Ok(v)) => {
            print_payload(&v, json)?;
            Ok(0)
        }
        Ok(Err(e)) => Err(fail(exit::FAILURE, format!("{}: {}", e.code, e.message))),
        Err(e) => Err(fail(
            exit::UNAVAILABLE,
            format!(
                "the gateway on {} does not answer: {e:#}",
                home.root().display()
            ),
        )),
    }
}

async fn run_call(home: &Home, method: &str, params: Value, c: &ConnArgs) -> anyhow::Result<u8> {
    if c.token.is_some() {
        super::gateway::warn_token_in_argv();
    }
    let paired = claw_tunnel::device::DeviceHome::new(home.root())
        .pairing()
        .is_ok();
    if c.url.is_none() && c.token.is_none() && !paired {
        return call_on_home(home, method, params, c.json).await;
    }
    let url = c.url.clone().unwrap_or_else(|| default_url(home));
    let options = match connect_options(home, &url, c)? {
        Some(o) => o,
        None => {
            return Err(fail(
                exit::FAILURE,
                format!(
                    "no credentials: pass --token (or CLAW_GATEWAY_TOKEN), run on the gateway's home, or pair this home with `claw tunnel pair` ({})",
                    home.root().display()
                ),
            ))
        }
    };
    let device_home = claw_tunnel::device::DeviceHome::new(home.root());
    let result = async {
        let mut s = Session::connect(options).await?;
        // A device connecting through the tunnel may be handed a fresh token (after a rotation):
        // keep it where local clients read it.
        if c.token.is_none() {
            if let (Some(fresh), Ok(Some(stored))) = (s.device_token(), device_home.token()) {
                if fresh != stored.token {
                    // hello-ok does not say which generation; 0 = unknown until `tunnel up`
                    // next hears from the gateway.
                    if let Err(e) = device_home.save_token(fresh, 0) {
                        tracing::warn!(error = %e, "could not store the fresh device token");
                    }
                }
            }
        }
        let v = s.call(method, params).await;
        s.close().await;
        v
    }
    .await;
    match result {
        Ok(v) => {
            print_payload(&v, c.json)?;
            Ok(0)
        }
        Err(ClientError::Connect { reason, .. })
            if reason.contains("Too many unauthenticated sockets") =>
        {
            Err(fail(
                exit::UNAVAILABLE,
                format!(
                    "the gateway at {url} refused a new socket: too many unauthenticated sockets \
                     (HTTP 503; someone is holding many sockets open before authenticating)"
                ),
            ))
        }
        Err(e @ ClientError::GatewayNotProven { .. }) => Err(fail(exit::FAILURE, e.to_string())),
        Err(ClientError::Connect { .. }) => Err(fail(
            exit::UNAVAILABLE,
            format!("no gateway answers at {url} (is `claw gateway run` up?)"),
        )),
        // The URL policy refused before any socket (non-loopback ws://, wss://): like a refused
        // --bind, a configuration error (78).
        Err(ClientError::Rejected { code, message, .. }) if code == "INSECURE_URL" => {
            Err(fail(exit::CONFIG, message))
        }
        // A fault on the gateway (disk full, read-only or locked store): retryable, and not
        // the caller's credentials. 69 like "no gateway answers", so scripts retry.
        Err(ClientError::Rejected { code, message, .. })
            if code == claw_proto::codes::UNAVAILABLE =>
        {
            Err(fail(exit::UNAVAILABLE, format!("{code}: {message}")))
        }
        Err(ClientError::Rejected {
            code,
            message,
            details,
        }) => {
            let next = details
                .as_ref()
                .and_then(|d| d.get("recommendedNextStep"))
                .and_then(Value::as_str)
                .map(|s| format!("; next step: {}", next_step_text(s)))
                .unwrap_or_default();
            Err(fail(
                exit::FAILURE,
                format!("{code}: {}{next}", user_message(&message)),
            ))
        }
        Err(e) => Err(fail(exit::FAILURE, e.to_string())),
    }
}

/// Runs `claw call`.
pub async fn call(home: &Home, a: CallArgs) -> anyhow::Result<u8> {
    let params: Value = serde_json::from_str(&a.params)
        .map_err(|e| fail(2, format!("--params is not valid JSON: {e}")))?;
    if !params.is_object() {
        return Err(fail(2, "--params must be a JSON object"));
    }
    run_call(home, &a.method, params, &a.conn).await
}

/// Runs `claw health`.
pub async fn health(home: &Home, a: HealthArgs) -> anyhow::Result<u8> {
    run_call(home, "health", serde_json::json!({}), &a.conn).await
}

/// The wire's refusal text as a claw user should read it: OpenClaw's hint names its own config
/// key (`gateway.auth.token`), which means nothing here. Pure.
pub fn user_message(wire: &str) -> String {
    wire.replace(
        "(use this gateway's gateway.auth.token or pair the device)",
        "(give the gateway's shared token — `claw gateway token --show` on its host — or pair this device with `claw pair` / `claw tunnel pair`)",
    )
}

/// A `recommendedNextStep` code in words. Pure.
pub fn next_step_text(code: &str) -> String {
    match code {
        "update_auth_credentials" => {
            "use current credentials (the shared token, or re-pair this device)".into()
        }
        "update_auth_configuration" => {
            "give a token (`CLAW_GATEWAY_TOKEN`, `--token-file`) or use a paired device".into()
        }
        "retry_with_device_token" => {
            "retry with this device's token or signature (`claw call` on the device home does)"
                .into()
        }
        "review_auth_configuration" => {
            "check the scopes this device was approved for (`claw devices list`)".into()
        }
        "wait_then_retry" => "wait, then retry".into(),
        other => other.replace('_', " "),
    }
}

#[cfg(test)]
mod message_tests {
    use super::*;

    #[test]
    fn refusals_name_no_openclaw_internals() {
        let m = user_message(&claw_proto::CloseReason::TokenMismatch.to_string());
        assert!(!m.contains("gateway.auth.token"), "{m}");
        assert!(m.contains("claw gateway token --show"), "{m}");
        for code in [
            "update_auth_credentials",
            "update_auth_configuration",
            "retry_with_device_token",
            "review_auth_configuration",
            "wait_then_retry",
            "some_new_step",
        ] {
            let t = next_step_text(code);
            assert!(!t.contains('_') || t.contains('`'), "{code}: {t}");
            assert!(!t.contains(code), "{code}: {t}");
        }
    }
}
