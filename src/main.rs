//! `claw`: a loopback-only remote-access gateway for local AI agents.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    quiet_broken_pipe();
    let args = cli::Cli::parse();
    init_logging();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(cli::run(args)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = e.downcast_ref::<cli::Exit>().map(|x| x.code).unwrap_or(1);
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}

/// Rust ignores SIGPIPE, so `println!` to a closed pipe panics (exit 101 with a panic message).
/// Restoring the signal's default needs `unsafe`, and would also let a closed socket kill the
/// gateway; instead a failed print to a closed pipe ends the process quietly with
/// `cli::exit::BROKEN_PIPE`. Every other panic keeps the default report. Test: tests/lifecycle.rs
/// `a_closed_stdout_pipe_ends_claw_quietly`.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to std") && msg.contains("Broken pipe") {
            std::process::exit(i32::from(cli::exit::BROKEN_PIPE));
        }
        default(info);
    }));
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`). tungstenite's TRACE events dump every
/// WebSocket frame's payload — `connect` params with the shared or device token, `hello-ok` with a
/// fresh device token — so they are dropped whatever `RUST_LOG` asks for; its DEBUG events (close
/// frames, handshake steps) stay. Test: tests/security.rs
/// `no_secret_appears_in_any_log_even_at_trace_level`. Colours only when stderr is a terminal, so
/// `gateway.log` and piped stderr carry no ANSI escapes.
fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::{filter_fn, FilterExt};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let env = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let no_payloads = filter_fn(|meta| {
        !(*meta.level() == tracing::Level::TRACE
            && (meta.target().starts_with("tungstenite")
                || meta.target().starts_with("tokio_tungstenite")))
    });
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .with_filter(env.and(no_payloads)),
        )
        .init();
}
