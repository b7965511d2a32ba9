//! Browser origins allowed to open a WebSocket on the gateway port (OpenClaw's
//! `gateway.controlUi.allowedOrigins`). A browser always sends `Origin` on a WebSocket upgrade; a
//! page from an origin not on the list is refused with HTTP 403 before the upgrade. Clients that
//! are not browsers (the CLI, relay-client, openclaw's CLI) send no `Origin` and are not affected.
//!
//! The list: the gateway's own loopback origins (`http://127.0.0.1:PORT`, `http://localhost:PORT`,
//! `http://[::1]:PORT` for each port it listens on), plus `claw gateway run --allow-origin`, plus
//! the persisted list in the home ([`ORIGINS_FILE`], edited with `claw gateway origins`).
//! No wildcard, and `null` (sandboxed frames, `file://` pages) is never allowed. Pure apart from
//! [`load`] and [`save`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The persisted list's file in the home: `{"allowedOrigins": ["https://…", …]}`, mode 0600.
pub const ORIGINS_FILE: &str = "origins.json";
/// Longest origin accepted (scheme, host and port).
pub const MAX_ORIGIN_LEN: usize = 253 + 16;
/// Most origins the persisted list may hold.
pub const MAX_PERSISTED: usize = 256;
/// Distinct refused origins that get an audit row each (later ones only count).
pub const MAX_AUDITED_REFUSALS: usize = 64;

/// Why a string is not an origin claw can allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// Empty, too long, or not `scheme://host[:port]`.
    #[error("not an origin (expected scheme://host[:port], e.g. http://127.0.0.1:5173)")]
    Malformed,
    /// `null`: what sandboxed frames and `file://` pages send; any page can produce it.
    #[error("the origin \"null\" is never allowed (any sandboxed page sends it)")]
    Null,
    /// `*` or a `*.` host: claw allows exact origins only.
    #[error("wildcards are not allowed; name each origin exactly")]
    Wildcard,
    /// Not `http` or `https`.
    #[error("only http:// and https:// origins can be allowed")]
    Scheme,
    /// A path, query, fragment or user info after the host.
    #[error("an origin has no path, query, fragment or user info (scheme://host[:port] only)")]
    HasPath,
    /// A host that is not a DNS name, an IPv4 address or a bracketed IPv6 address.
    #[error("bad host in origin")]
    Host,
    /// A port that is not 1–65535.
    #[error("bad port in origin")]
    Port,
}

/// Parses an origin and returns its canonical form, which is how a browser writes it: scheme
/// and host in lowercase, the port only when it is not the scheme's default
/// (`HTTP://LocalHost:80` → `http://localhost`). Used for `--allow-origin`, the persisted list,
/// and the `Origin` header itself (compared canonical to canonical).
pub fn parse_origin(s: &str) -> Result<String, OriginError> {
    if s.is_empty() || s.len() > MAX_ORIGIN_LEN || !s.is_ascii() {
        return Err(OriginError::Malformed);
    }
    if s.eq_ignore_ascii_case("null") {
        return Err(OriginError::Null);
    }
    if s.contains('*') {
        return Err(OriginError::Wildcard);
    }
    let (scheme, rest) = s.split_once("://").ok_or(OriginError::Malformed)?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(OriginError::Scheme),
    };
    if rest.contains(['/', '?', '#', '@', '\\']) {
        return Err(OriginError::HasPath);
    }
    let (host, port) = split_host_port(rest)?;
    let host = canonical_host(host)?;
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(OriginError::Port);
            }
            match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(OriginError::Port),
                Ok(n) => Some(n),
            }
        }
    };
    Ok(match port {
        Some(p) if p != default_port => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// `host[:port]` or `[v6][:port]`.
fn split_host_port(rest: &str) -> Result<(&str, Option<&str>), OriginError> {
    if let Some(v6) = rest.strip_prefix('[') {
        let (inside, after) = v6.split_once(']').ok_or(OriginError::Host)?;
        let host = &rest[..inside.len() + 2];
        return match after {
            "" => Ok((host, None)),
            a => a
                .strip_prefix(':')
                .map(|p| (host, Some(p)))
                .ok_or(OriginError::Host),
        };
    }
    Ok(match rest.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    })
}

fn canonical_host(host: &str) -> Result<String, OriginError> {
    if let Some(inside) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let ip: std::net::Ipv6Addr = inside.parse().map_err(|_| OriginError::Host)?;
        return Ok(format!("[{ip}]"));
    }
    let host = host.to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(OriginError::Host);
    }
    // All-numeric dotted hosts must be real IPv4 addresses (no `1.2.3`, no `999.1.1.1`).
    if host
        .split('.')
        .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        let ip: std::net::Ipv4Addr = host.parse().map_err(|_| OriginError::Host)?;
        return Ok(ip.to_string());
    }
    Ok(host)
}

/// The gateway's own loopback origins for one listening port.
pub fn loopback_origins(port: u16) -> [String; 3] {
    [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        format!("http://[::1]:{port}"),
    ]
}

/// What an upgrade's `Origin` header means for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No `Origin` header: not a browser.
    NoOrigin,
    /// An allowed browser origin.
    Allowed,
    /// Refuse with 403; carries the header as sent (escape before logging).
    Refused(String),
}

/// The allow-list, in canonical forms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    fixed: BTreeSet<String>,
    persisted: BTreeSet<String>,
}

impl OriginPolicy {
    /// A policy of already canonical origins: `fixed` (loopback seeds and `--allow-origin`) and
    /// `persisted` (the home's list, replaceable by [`OriginPolicy::set_persisted`]).
    pub fn new(
        fixed: impl IntoIterator<Item = String>,
        persisted: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            fixed: fixed.into_iter().collect(),
            persisted: persisted.into_iter().collect(),
        }
    }

    /// Adds fixed origins (the loopback seeds once the ports are bound).
    pub fn add_fixed(&mut self, origins: impl IntoIterator<Item = String>) {
        self.fixed.extend(origins);
    }

    /// Replaces the persisted part (after `claw gateway origins add|remove`).
    pub fn set_persisted(&mut self, origins: impl IntoIterator<Item = String>) {
        self.persisted = origins.into_iter().collect();
    }

    /// Every allowed origin, sorted, without duplicates.
    pub fn all(&self) -> Vec<String> {
        self.fixed.union(&self.persisted).cloned().collect()
    }

    /// Judges an upgrade's `Origin` header (`None` when absent). A header that is not a
    /// canonicalisable origin (`null`, garbage, a path) is refused.
    pub fn check(&self, header: Option<&str>) -> Verdict {
        let Some(h) = header else {
            return Verdict::NoOrigin;
        };
        match parse_origin(h.trim()) {
            Ok(o) if self.fixed.contains(&o) || self.persisted.contains(&o) => Verdict::Allowed,
            _ => Verdict::Refused(h.to_string()),
        }
    }
}

/// Which refusals get an audit row: the first of each distinct origin, up to
/// [`MAX_AUDITED_REFUSALS`] origins; every refusal is counted. A hostile page reconnecting in a
/// loop costs one row, not one per attempt.
#[derive(Debug, Default)]
pub struct RefusalLog {
    seen: BTreeSet<String>,
    /// Refusals so far.
    pub refused: u64,
}

impl RefusalLog {
    /// Records a refusal; true when it deserves an audit row.
    pub fn record(&mut self, origin: &str) -> bool {
        self.refused += 1;
        if self.seen.len() >= MAX_AUDITED_REFUSALS || self.seen.contains(origin) {
            return false;
        }
        let key: String = origin.chars().take(MAX_ORIGIN_LEN).collect();
        self.seen.insert(key)
    }
}

/// The persisted list's path in a home directory.
pub fn origins_path(home_root: &Path) -> PathBuf {
    home_root.join(ORIGINS_FILE)
}

/// Errors reading or writing the persisted list.
#[derive(Debug, thiserror::Error)]
pub enum OriginsFileError {
    /// IO.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not the expected JSON, or an entry is not an allowed origin.
    #[error("{path}: {why}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
}

/// Parses the persisted list's content (canonical forms, sorted, deduplicated).
pub fn parse_origins_file(text: &str) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct File {
        allowed_origins: Vec<String>,
    }
    let f: File = serde_json::from_str(text).map_err(|e| {
        let m = e.to_string();
        m.chars().take(200).collect::<String>()
    })?;
    if f.allowed_origins.len() > MAX_PERSISTED {
        return Err(format!("more than {MAX_PERSISTED} origins"));
    }
    let mut out = BTreeSet::new();
    for o in &f.allowed_origins {
        let c = parse_origin(o).map_err(|e| format!("{:?}: {e}", o.escape_debug().to_string()))?;
        out.insert(c);
    }
    Ok(out.into_iter().collect())
}

/// Reads the persisted list; a missing file is an empty list.
pub fn load(home_root: &Path) -> Result<Vec<String>, OriginsFileError> {
    let path = origins_path(home_root);
    let shown = path.display().to_string();
    let text = match std::fs::read(&path) {
        Ok(b) if b.len() > 64 * 1024 => {
            return Err(OriginsFileError::Invalid {
                path: shown,
                why: "larger than 64 KiB".into(),
            })
        }
        Ok(b) => String::from_utf8(b).map_err(|_| OriginsFileError::Invalid {
            path: shown.clone(),
            why: "not UTF-8".into(),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(OriginsFileError::Io {
                path: shown,
                source,
            })
        }
    };
    parse_origins_file(&text).map_err(|why| OriginsFileError::Invalid { path: shown, why })
}

/// Writes the persisted list (0600, atomic).
pub fn save(home_root: &Path, origins: &[String]) -> Result<(), OriginsFileError> {
    let path = origins_path(home_root);
    let body = serde_json::json!({ "allowedOrigins": origins });
    let text = serde_json::to_string_pretty(&body).unwrap_or_default() + "\n";
    crate::home::write_secret_atomic(&path, text.as_bytes()).map_err(|source| {
        OriginsFileError::Io {
            path: path.display().to_string(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        for (input, want) in [
            ("http://127.0.0.1:5173", "http://127.0.0.1:5173"),
            ("HTTP://LocalHost:80", "http://localhost"),
            (
                "https://Control.Example.com:443",
                "https://control.example.com",
            ),
            (
                "https://control.example.com:8443",
                "https://control.example.com:8443",
            ),
            ("http://[::1]:18789", "http://[::1]:18789"),
            ("http://[0:0:0:0:0:0:0:1]:18789", "http://[::1]:18789"),
            (
                "http://xn--bcher-kva.example",
                "http://xn--bcher-kva.example",
            ),
        ] {
            assert_eq!(parse_origin(input).as_deref(), Ok(want), "{input}");
        }
    }

    /// Hostile and malformed origins: each refused with its reason, none panics.
    #[test]
    fn hostile_origins() {
        use OriginError::*;
        let long = format!("http://{}.example", "a".repeat(300));
        for (input, want) in [
            ("", Malformed),
            ("null", Null),
            ("NULL", Null),
            ("*", Wildcard),
            ("https://*.example.com", Wildcard),
            ("http://127.0.0.1:*", Wildcard),
            ("127.0.0.1:5173", Malformed),
            ("file://", Scheme),
            ("ws://127.0.0.1:1", Scheme),
            ("javascript://x", Scheme),
            ("chrome-extension://abc", Scheme),
            ("http://a/", HasPath),
            ("http://a/path", HasPath),
            ("http://a?x", HasPath),
            ("http://a#f", HasPath),
            ("http://user@a", HasPath),
            ("http://a\\b", HasPath),
            ("http://", Host),
            ("http://:80", Host),
            ("http://a..b", Host),
            ("http://-a.b", Host),
            ("http://a_b", Host),
            ("http://a b", Host),
            ("http://a\r\nb", Host),
            ("http://1.2.3", Host),
            ("http://999.1.1.1", Host),
            ("http://[::1", Host),
            ("http://[zz::1]", Host),
            ("http://[::1]x", Host),
            ("http://a:0", Port),
            ("http://a:65536", Port),
            ("http://a:", Port),
            ("http://a:+1", Port),
            ("http://a:1:2", Port),
            ("http://a:0080000", Port),
            ("http://bücher.example", Malformed),
            (long.as_str(), Malformed),
        ] {
            assert_eq!(parse_origin(input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn policy_checks_the_header() {
        let mut p = OriginPolicy::new(["http://127.0.0.1:5173".to_string()], []);
        p.add_fixed(loopback_origins(18789));
        assert_eq!(p.check(None), Verdict::NoOrigin);
        for ok in [
            "http://127.0.0.1:5173",
            "http://localhost:18789",
            "http://[::1]:18789",
            " http://LOCALHOST:18789 ",
        ] {
            assert_eq!(p.check(Some(ok)), Verdict::Allowed, "{ok}");
        }
        for bad in [
            "https://evil.example",
            "null",
            "http://127.0.0.1:5174",
            "https://127.0.0.1:5173",
            "http://127.0.0.1:5173/",
            "",
        ] {
            assert_eq!(p.check(Some(bad)), Verdict::Refused(bad.into()), "{bad}");
        }
        p.set_persisted(["https://ui.example".to_string()]);
        assert_eq!(p.check(Some("https://ui.example")), Verdict::Allowed);
        p.set_persisted([]);
        assert!(matches!(
            p.check(Some("https://ui.example")),
            Verdict::Refused(_)
        ));
    }

    #[test]
    fn refusals_are_audited_once_per_origin_and_bounded() {
        let mut log = RefusalLog::default();
        assert!(log.record("https://evil.example"));
        assert!(!log.record("https://evil.example"));
        for i in 0..200 {
            log.record(&format!("https://e{i}.example"));
        }
        assert!(!log.record("https://late.example"));
        assert_eq!(log.refused, 203);
    }

    #[test]
    fn origins_file_round_trips_and_refuses_bad_entries() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(load(t.path()).unwrap(), Vec::<String>::new());
        save(t.path(), &["https://ui.example".to_string()]).unwrap();
        assert_eq!(load(t.path()).unwrap(), vec!["https://ui.example"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(origins_path(t.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        for bad in [
            r#"{"allowedOrigins":["*"]}"#,
            r#"{"allowedOrigins":["null"]}"#,
            r#"{"allowedOrigins":"https://a"}"#,
            r#"{"allowedOrigins":[],"x":1}"#,
            r#"[]"#,
            "",
        ] {
            assert!(parse_origins_file(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_origins_file(
                r#"{"allowedOrigins":["HTTPS://A.example:443","https://a.example"]}"#
            ),
            Ok(vec!["https://a.example".to_string()])
        );
    }
}

/// Properties: canonicalisation is idempotent, and what is accepted has no path, wildcard or
/// `null` in it.
#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn canonical_is_a_fixed_point(s in ".{0,40}|(https?|HTTP)://[a-zA-Z0-9.\\-\\[\\]:]{0,30}") {
            if let Ok(c) = parse_origin(&s) {
                prop_assert_eq!(parse_origin(&c), Ok(c.clone()));
                prop_assert!(c.starts_with("http://") || c.starts_with("https://"));
                let rest = c.split_once("://").unwrap().1;
                prop_assert!(!rest.contains(['/', '?', '#', '@', '*']));
                prop_assert!(c != "null");
            }
        }

        #[test]
        fn generated_origins_parse(
            scheme in "https?",
            host in "[a-z][a-z0-9]{0,10}(\\.[a-z][a-z0-9]{0,10}){0,3}",
            port in proptest::option::of(1u16..),
        ) {
            let s = match port { Some(p) => format!("{scheme}://{host}:{p}"), None => format!("{scheme}://{host}") };
            let c = parse_origin(&s).unwrap();
            let policy = OriginPolicy::new([c], []);
            prop_assert_eq!(policy.check(Some(&s.to_uppercase())), Verdict::Allowed);
        }
    }
}
