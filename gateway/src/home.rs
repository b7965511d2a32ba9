//! The claw home directory: where every file claw writes lives, and how it is written.
//!
//! Directories are created 0700 and secret files 0600 *at creation* (no window where they are
//! wider). Writes are atomic: a temporary file in the same directory, fsync, rename, fsync dir.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Suffix of temporary files written by [`write_secret_atomic`]; `claw doctor` removes leftovers.
pub const TMP_SUFFIX: &str = ".claw-tmp";

/// The files inside a claw home.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// A home rooted at `root` (not created yet; see [`Home::ensure`]).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The default home: `$CLAW_HOME` is handled by the CLI; this is `~/.claw`.
    pub fn default_root() -> PathBuf {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"))
            .join(".claw")
    }

    /// Creates the home (0700) if needed and tightens it if it exists wider.
    pub fn ensure(&self) -> io::Result<()> {
        create_private_dir(&self.root)
    }

    /// The home directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The SQLite state store.
    pub fn store_path(&self) -> PathBuf {
        self.root.join("state.db")
    }
    /// The generated shared gateway token (0600).
    pub fn shared_token_path(&self) -> PathBuf {
        self.root.join("gateway.token")
    }
    /// The gateway lock file (holds the pid of the running gateway).
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("gateway.lock")
    }
    /// The Unix admin socket.
    pub fn admin_socket_path(&self) -> PathBuf {
        self.root.join("admin.sock")
    }
    /// The runtime file the running gateway writes: pid, URL, ports (JSON).
    pub fn runtime_path(&self) -> PathBuf {
        self.root.join("gateway.json")
    }
    /// Log file used by `claw gateway start` (background mode).
    pub fn log_path(&self) -> PathBuf {
        self.root.join("gateway.log")
    }
}

/// Creates `dir` and its missing parents with mode 0700 (the final component is chmod-ed to 0700
/// when it already existed with wider bits).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let meta = fs::metadata(dir)?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Writes `data` to `path` atomically with mode 0600: temp file (created 0600), fsync, rename,
/// fsync of the directory. A crash leaves either the old or the new content, never a mix.
pub fn write_secret_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    write_private(path, data, true)
}

/// Like [`write_secret_atomic`] (0600, temp file and rename: readers never see a mix) but
/// without the two fsyncs, for snapshots rewritten every second whose loss in a power cut costs
/// nothing (`claw tunnel up`'s status file): a laptop should not flush its disk once a second.
pub fn write_volatile_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    write_private(path, data, false)
}

fn write_private(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".{}{}", std::process::id(), TMP_SUFFIX));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if durable {
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads a secret file, refusing one that others can read (mode & 0o077 != 0).
pub fn read_secret(path: &Path) -> io::Result<String> {
    let meta = fs::metadata(path)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} has mode {:o}; secrets must be 0600 (run `claw doctor --fix` or `chmod 600 {}`)",
                path.display(),
                mode,
                path.display()
            ),
        ));
    }
    Ok(fs::read_to_string(path)?.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dir_and_secret_modes() {
        let t = tempfile::tempdir().unwrap();
        let home = Home::new(t.path().join("a/b"));
        home.ensure().unwrap();
        let m = fs::metadata(home.root()).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o700);
        fs::set_permissions(home.root(), fs::Permissions::from_mode(0o755)).unwrap();
        home.ensure().unwrap();
        let m = fs::metadata(home.root()).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o700);

        let p = home.shared_token_path();
        write_secret_atomic(&p, b"one").unwrap();
        write_secret_atomic(&p, b"two\n").unwrap();
        assert_eq!(read_secret(&p).unwrap(), "two");
        let m = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o600);
        // No temporary file is left behind.
        let left: Vec<_> = fs::read_dir(home.root())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(TMP_SUFFIX))
            .collect();
        assert!(left.is_empty());
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_secret(&p).unwrap_err().to_string();
        assert!(err.contains("0600"), "{err}");
    }

    #[test]
    fn volatile_writes_are_private_atomic_replacements_too() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("tunnel-status.json");
        write_volatile_atomic(&p, b"{\"n\":1}").unwrap();
        write_volatile_atomic(&p, b"{\"n\":2}").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "{\"n\":2}");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(t.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
