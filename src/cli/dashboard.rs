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
    if a.json {
        println!("{}", json!({"url": url, "expiresAtMs": v["expiresAtMs"]}));
    } else {
        println!("Control page login link (works once, expires in 2 minutes):");
        println!();
        println!("  {url}");
        println!();
    }
    let open = !a.no_open && display_available(|k| std::env::var(k).ok());
    if open {
        let opener = if cfg!(target_os = "macos") {
            "open"
        } else {
            "xdg-open"
        };
        match std::process::Command::new(opener)
            .arg(&url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok(_) => {
                if !a.json {
                    println!("opened in your browser ({opener})");
                }
            }
            Err(e) => eprintln!("could not start {opener} ({e}); open the link yourself"),
        }
    }
    Ok(0)
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
