//! The Unix admin socket (`admin.sock`, 0600, peer uid checked): JSON lines carrying the same
//! request/response frames as the WebSocket, with every scope, plus admin-only methods.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::methods::{self, Ctx};
use crate::protocol::frames::{self, ErrorShape, MAX_PAYLOAD};
use crate::state::GatewayState;

/// Binds the admin socket (replacing an orphan left by a dead gateway; the caller holds the lock).
pub fn bind(state: &GatewayState) -> std::io::Result<UnixListener> {
    let path = state.home.admin_socket_path();
    let _ = std::fs::remove_file(&path);
    let l = bind_private(&path)?;
    // Already 0600 on Linux (see `bind_private`); kept for kernels that ignore the socket's mode.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// A listening Unix socket whose file is created 0600. `bind` creates the file with the mode of
/// the socket's inode minus the umask (0755 under the usual umask), so the mode is set on the
/// socket *before* `bind`: there is no window in which the file is wider (tests/security.rs
/// checks this with strace).
fn bind_private(path: &std::path::Path) -> std::io::Result<UnixListener> {
    use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
    use nix::sys::stat::{fchmod, Mode};
    use std::os::fd::AsRawFd;
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )?;
    fchmod(&fd, Mode::from_bits_truncate(0o600))?;
    socket::bind(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    socket::listen(&fd, Backlog::new(1024)?)?;
    UnixListener::from_std(std::os::unix::net::UnixListener::from(fd))
}

/// Accepts admin connections.
pub async fn serve(state: Arc<GatewayState>, listener: UnixListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "admin socket: accept failed");
                tokio::time::sleep(super::ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let uid = nix::unistd::getuid().as_raw();
        match stream.peer_cred() {
            Ok(c) if c.uid() == uid => {}
            other => {
                tracing::warn!(peer = ?other.map(|c| c.uid()).ok(), "admin socket: refused a different uid");
                continue;
            }
        }
        tokio::spawn(connection(state.clone(), stream));
    }
}

async fn connection(state: Arc<GatewayState>, stream: UnixStream) {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    let ctx = Ctx::admin("admin");
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = answer(&state, &ctx, &line).await;
        if w.write_all(reply.as_bytes()).await.is_err() || w.write_all(b"\n").await.is_err() {
            return;
        }
    }
}

/// Answers one admin line (pure apart from the methods it runs, which [`methods::dispatch`]
/// keeps off the async workers).
pub async fn answer(state: &Arc<GatewayState>, ctx: &Ctx, line: &str) -> String {
    match frames::parse_request(line, MAX_PAYLOAD) {
        Ok(req) => match methods::dispatch(state, ctx, &req.method, &req.params, false).await {
            Ok(p) => frames::response_ok(&req.id, &p),
            Err(e) => frames::response_err(&req.id, &e),
        },
        Err(e) => frames::response_err(
            "",
            &ErrorShape::new(crate::protocol::codes::INVALID_REQUEST, e.to_string()),
        ),
    }
}
