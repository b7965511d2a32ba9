//! Starting a long-running claw command in the background (`gateway start`,
//! `tunnel up --daemon`): detached in its own process group, stdin `/dev/null`, output appended
//! to its 0600 log; the caller waits until it reports ready, or fails with this run's log lines
//! when it exits first, or after 15 s.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{exit, fail};

/// How long a background start may take to report ready.
const READY_WITHIN: Duration = Duration::from_secs(15);

/// A command started in the background.
pub struct Detached {
    child: Child,
    /// Its pid.
    pub pid: u32,
    log: PathBuf,
    offset: u64,
    what: &'static str,
}

impl Detached {
    /// Starts `cmd` detached with its output appended to `log` (opened 0600, never through a
    /// symlink, never a file another uid planted). `what` names it in errors ("gateway").
    pub fn spawn(mut cmd: Command, log: &Path, what: &'static str) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt;
        let file = claw_gateway::home::open_private_log(log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        // Lines before this offset are earlier runs': a failure shows only this run's.
        let offset = file.metadata().map(|m| m.len()).unwrap_or(0);
        cmd.stdin(std::process::Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start the {what}"))?;
        Ok(Self {
            pid: child.id(),
            child,
            log: log.to_path_buf(),
            offset,
            what,
        })
    }

    /// Polls `ready(pid)` every 20 ms until it answers; fails with the child's exit code and
    /// this run's log when it exits first, or after [`READY_WITHIN`].
    pub async fn wait_ready<T>(
        mut self,
        mut ready: impl FnMut(u32) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = self.child.try_wait()? {
                let code = status.code().unwrap_or(1) as u8;
                return Err(fail(
                    code.max(1),
                    format!(
                        "the {} exited ({status}); its log from this start:\n{}",
                        self.what,
                        log_since(&self.log, self.offset)
                    ),
                ));
            }
            if let Some(t) = ready(self.pid) {
                return Ok(t);
            }
            if Instant::now() > deadline {
                return Err(fail(
                    exit::FAILURE,
                    format!(
                        "the {} (pid {}) did not become ready in {} s; see {}",
                        self.what,
                        self.pid,
                        READY_WITHIN.as_secs(),
                        self.log.display()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The lines a log file gained after `offset` (this run's, not an earlier run's), the last 20.
fn log_since(path: &Path, offset: u64) -> String {
    let all = claw_gateway::home::read_private(path).unwrap_or_default();
    let mine = all.get(offset as usize..).unwrap_or("");
    let lines: Vec<&str> = mine.lines().collect();
    let skip = lines.len().saturating_sub(20);
    let tail = lines[skip..].join("\n");
    if tail.is_empty() {
        "(nothing was logged)".into()
    } else {
        tail
    }
}
