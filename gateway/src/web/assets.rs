//! The control page's files, embedded in the binary: plain HTML, CSS and JavaScript, no
//! external script, font or image.

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Request path.
    pub path: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The bytes.
    pub body: &'static [u8],
}

/// The assets served without a session (code and style only; the data comes over the
/// WebSocket of a page session). `app.js` first (routes test on its index).
pub static ASSETS: &[Asset] = &[
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/app.js"),
    },
    Asset {
        path: "/login.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/login.js"),
    },
    Asset {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/style.css"),
    },
    Asset {
        path: "/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("assets/favicon.svg"),
    },
];

/// The page (`GET /` with a session).
pub const INDEX: &[u8] = include_bytes!("assets/index.html");
/// The login page (`GET /login`).
pub const LOGIN: &[u8] = include_bytes!("assets/login.html");
