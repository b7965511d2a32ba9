//! The wire contract lives in one crate: no close reason and no error code is spelled as a
//! string literal outside `proto/` (code names `claw_proto::CloseReason` and
//! `claw_proto::codes`), so renaming one cannot compile on one side and silently break the
//! other. Walks the workspace's Rust sources; the lists come from claw-proto itself.

use std::path::{Path, PathBuf};

use claw_proto::{codes, CloseReason};

/// Directories not scanned: the contract itself, build output, VCS data.
const SKIP: &[&str] = &["proto", "target", ".git", "node_modules"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            if !SKIP.contains(&name.as_ref()) && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if kind.is_file() && name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// The quoted forms that must not appear: `"<fixed reason>"`, `"<code>"`, and the openings
/// of the reasons that carry data.
fn forbidden() -> Vec<String> {
    let mut v: Vec<String> = CloseReason::fixed_texts()
        .chain(codes::ALL.iter().copied())
        .map(|t| format!("\"{t}\""))
        .collect();
    for with_data in [
        CloseReason::InvalidParams(String::new()),
        CloseReason::TryAgainLater(String::new()),
    ] {
        v.push(format!("\"{with_data}"));
    }
    v
}

#[test]
fn no_close_reason_or_error_code_literal_outside_proto() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(root, &mut files);
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("relay-client/src/state.rs")),
        "the walk found the sources"
    );
    let needles = forbidden();
    let mut hits = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            for needle in &needles {
                if line.contains(needle.as_str()) {
                    let shown = f.strip_prefix(root).unwrap_or(f).display();
                    hits.push(format!("{shown}:{}: {needle}", n + 1));
                }
            }
        }
    }
    assert!(
        hits.is_empty(),
        "string literals of the wire contract outside proto/ (use claw_proto::CloseReason / \
         claw_proto::codes):\n{}",
        hits.join("\n")
    );
}

/// The check itself catches a literal (so an empty result above means something).
#[test]
fn the_check_sees_a_literal() {
    let line = format!("if reason == \"{}\" {{", CloseReason::DeviceRevoked);
    assert!(forbidden().iter().any(|n| line.contains(n.as_str())));
    let line = format!("json!({{\"code\":\"{}\"}})", codes::AUTH_TOKEN_MISMATCH);
    assert!(forbidden().iter().any(|n| line.contains(n.as_str())));
}

/// The tunnel names its refusal codes through `claw_proto::tunnel::TunnelCode`: none of their
/// wire strings is a literal in the tunnel's own sources (words like `"revoked"` are also
/// ordinary text elsewhere, so only `tunnel/` is held to this).
#[test]
fn no_tunnel_code_literal_in_the_tunnel_crate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("tunnel"), &mut files);
    assert!(files.iter().any(|f| f.ends_with("quic/server.rs")));
    let mut hits = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            for c in claw_proto::tunnel::TunnelCode::KNOWN {
                if line.contains(&format!("\"{}\"", c.as_str())) {
                    hits.push(format!("{}:{}: {c}", f.display(), n + 1));
                }
            }
        }
    }
    assert!(hits.is_empty(), "use TunnelCode:\n{}", hits.join("\n"));
}
