//! `claw dashboard [--no-open] [--json]`: a one-time login link for the control page.

use claw_gateway::home::Home;
use serde_json::json;

use super::admin_client::admin_call;

/// `claw dashboard` flags.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  claw dashboard            # opens the control page in your browser\n  claw dashboard --no-open  # prints the one-time link only"
)]
pub struct DashboardArgs {
    /// Print the link; do not open a browser.
    #[arg(long)]
    no_open: bool,
    /// One JSON document: `{"url": ..., "expiresAtMs": ...}`.
    #[arg(long)]
    json: bool,
}

/// `claw tunnel dashboard` flags (on a paired device).
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  claw tunnel dashboard            # opens the gateway's control page through this device's tunnel\n  claw tunnel dashboard --no-open  # prints the one-time link only"
)]
pub struct TunnelDashboardArgs {
    /// The local address of `claw tunnel up` (default: the running tunnel's, else 127.0.0.1:18789).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Print the link; do not open a browser.
    #[arg(long)]
    no_open: bool,
    /// One JSON document: `{"url": ..., "expiresAtMs": ...}`.
    #[arg(long)]
    json: bool,
}

/// True when a graphical session can show a browser (X11 or Wayland on Linux; always on macOS).
pub fn display_available(get: impl Fn(&str) -> Option<String>) -> bool {
    cfg!(target_os = "macos")
        || ["DISPLAY", "WAYLAND_DISPLAY"]
            .iter()
            .any(|k| get(k).is_some_and(|v| !v.is_empty()))
}

/// Runs `claw dashboard`: mints a code through the admin socket (the gateway must run), prints
/// the link, and opens it unless `--no-open` or no display.
pub async fn run(home: &Home, a: DashboardArgs) -> anyhow::Result<u8> {
    let v = admin_call(home, "dashboard.login", json!({})).await?;
    let url = v["url"].as_str().unwrap_or_default().to_string();
    show(&url, &v["expiresAtMs"], a.no_open, a.json);
    Ok(0)
}

/// Runs `claw tunnel dashboard` on a paired device: asks the gateway, through the running
/// `claw tunnel up` at `listen`, for a one-time code owned by this device (`POST
/// /api/tunnel-login`; the gateway serves it only to a device holding `operator.admin`), and
/// prints (and opens) the link on that local address — the page is then served through the
/// tunnel, acting as this device.
pub async fn run_tunnel(
    listen: Option<std::net::SocketAddr>,
    a: TunnelDashboardArgs,
) -> anyhow::Result<u8> {
    use super::{exit, fail};
    let listen = listen.unwrap_or_else(|| ([127, 0, 0, 1], 18789).into());
    let (status, body) = tunnel_login(listen).await.map_err(|e| {
        fail(
            exit::UNAVAILABLE,
            format!("cannot reach the tunnel at {listen} ({e}): is `claw tunnel up` running?"),
        )
    })?;
    // The gateway's words, escaped (network text before a terminal).
    let shown: String = body
        .trim()
        .chars()
        .take(200)
        .flat_map(char::escape_debug)
        .collect();
    match status {
        200 => {}
        403 => {
            return Err(fail(
                exit::REVOKED,
                format!("the gateway does not serve its control page to this device: {shown}"),
            ))
        }
        s => {
            return Err(fail(
                exit::FAILURE,
                format!("the gateway answered {s}: {shown}"),
            ))
        }
    }
    let v: serde_json::Value = serde_json::from_str(&body)
        .map_err(|_| fail(exit::FAILURE, "the gateway's answer is not JSON"))?;
    let code = v["code"].as_str().unwrap_or_default();
    if code.is_empty()
        || !code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(fail(
            exit::FAILURE,
            "the gateway's answer has no login code",
        ));
    }
    let url = format!("http://{listen}/login#{code}");
    show(&url, &v["expiresAtMs"], a.no_open, a.json);
    Ok(0)
}

/// One `POST /api/tunnel-login` through the tunnel's local port: (status, body).
async fn tunnel_login(listen: std::net::SocketAddr) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = async {
        let mut s = tokio::net::TcpStream::connect(listen).await?;
        let req = format!(
            "POST /api/tunnel-login HTTP/1.1\r\nHost: {listen}\r\n{}: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            claw_gateway::web::policy::TUNNEL_LOGIN_HEADER
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        (&mut s).take(64 * 1024).read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(std::time::Duration::from_secs(30), io)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 30 s"))??;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// Prints the link (or its JSON) and opens it unless `no_open` or no display.
fn show(url: &str, expires: &serde_json::Value, no_open: bool, as_json: bool) {
    if as_json {
        println!("{}", json!({"url": url, "expiresAtMs": expires}));
    } else {
        println!("Control page login link (works once, expires in 2 minutes):");
        println!();
        println!("  {url}");
        println!();
    }
    let open = !no_open && display_available(|k| std::env::var(k).ok());
    if open {
        let opener = if cfg!(target_os = "macos") {
            "open"
        } else {
            "xdg-open"
        };
        match std::process::Command::new(opener)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(_) => {
                if !as_json {
                    println!("opened in your browser ({opener})");
                }
            }
            Err(e) => eprintln!("could not start {opener} ({e}); open the link yourself"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::display_available;

    #[test]
    fn a_browser_opens_only_with_a_display() {
        if cfg!(target_os = "macos") {
            return;
        }
        assert!(!display_available(|_| None));
        assert!(!display_available(|_| Some(String::new())));
        assert!(display_available(|k| (k == "DISPLAY").then(|| ":0".into())));
        assert!(display_available(
            |k| (k == "WAYLAND_DISPLAY").then(|| "wayland-0".into())
        ));
    }
}
