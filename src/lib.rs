//! claw as a library: the daemon that the `claw` binary runs, startable in-process
//! ([`daemon::Daemon::start`]) by tests and embedders. The CLI (flags, signals, output) stays in
//! the binary.
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod daemon;
pub mod hosts;
