//! The claw home directory: where every file claw writes lives, and how it is written.
//!
//! Directories are created 0700 and secret files 0600 *at creation* (no window where they are
//! wider). Writes are atomic: a temporary file in the same directory, fsync, rename, fsync dir.
//!
//! A home is trusted only when it is ours: [`Home::ensure`] refuses a home that is a symlink or
//! is owned by another uid (another user could have planted files in it — a `gateway.lock`
//! symlink to a root-only file, a `gateway.token` of their choosing), and every file in it is
//! opened without following a symlink (`O_NOFOLLOW`) and checked to be a regular file we own.
//!
//! Its own crate so that the device side (`claw-tunnel` without its `gateway` feature) keeps
//! files the same way as the gateway without linking the gateway.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod device_key;

/// Milliseconds since the Unix epoch, the clock unit of the OpenClaw protocol and of every
/// timestamp claw writes into its files.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

use std::fs::{self, DirBuilder, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
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

    /// Creates the home (0700) if needed and tightens it if it exists wider. Refuses a home
    /// that is a symlink or belongs to another uid (`PermissionDenied`, naming the owner).
    pub fn ensure(&self) -> io::Result<()> {
        create_private_dir(&self.root)
    }

    /// Checks an existing home the way [`Home::ensure`] does, without creating it
    /// (`NotFound` when absent).
    pub fn check_owned(&self) -> io::Result<()> {
        check_private_dir(&self.root)
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
/// The final component must be a real directory (not a symlink) owned by the effective uid,
/// else `PermissionDenied`: claw never adopts a directory another user prepared.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    check_private_dir(dir)?;
    // Tighten through a descriptor opened without following symlinks, so the chmod lands on the
    // directory just checked.
    let d = open_dir_nofollow(dir)?;
    let meta = d.metadata()?;
    check_owner(&meta, dir)?;
    if meta.permissions().mode() & 0o077 != 0 {
        d.set_permissions(fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn open_dir_nofollow(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_DIRECTORY | nix::libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| symlink_refusal(dir, e))
}

/// `dir` exists, is a directory and no symlink, and belongs to the effective uid.
fn check_private_dir(dir: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        return Err(refused(format!(
            "{} is a symlink; claw refuses a home (or a file in it) that is a symlink",
            dir.display()
        )));
    }
    if !meta.is_dir() {
        return Err(refused(format!("{} is not a directory", dir.display())));
    }
    check_owner(&meta, dir)
}

fn refused(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, msg)
}

/// ELOOP from `O_NOFOLLOW` means the last component is a symlink: say so.
fn symlink_refusal(path: &Path, e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(nix::libc::ELOOP) {
        refused(format!(
            "{} is a symlink; claw never follows a symlink in its home",
            path.display()
        ))
    } else {
        e
    }
}

/// Refuses a file or directory not owned by the effective uid.
pub fn check_owner(meta: &Metadata, path: &Path) -> io::Result<()> {
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(refused(format!(
            "{} is owned by uid {}, not by you (uid {me}); claw refuses files another user could have planted (use a home of your own)",
            path.display(),
            meta.uid()
        )));
    }
    Ok(())
}

/// Opens a file in a home without following a symlink in its last component (`O_NOFOLLOW`),
/// then checks through the descriptor that it is a regular file owned by the effective uid.
/// `options` says how (read, write, create with a mode...); `O_NOFOLLOW | O_CLOEXEC` are added.
pub fn open_private(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    let f = options
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| symlink_refusal(path, e))?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(refused(format!("{} is not a regular file", path.display())));
    }
    check_owner(&meta, path)?;
    Ok(f)
}

/// Opens (creating 0600, appending) a private log file: never through a symlink, never one
/// owned by another uid, and tightened to 0600 when it exists wider.
pub fn open_private_log(path: &Path) -> io::Result<File> {
    let f = open_private(
        path,
        OpenOptions::new().create(true).append(true).mode(0o600),
    )?;
    if f.metadata()?.permissions().mode() & 0o077 != 0 {
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok(f)
}

/// Reads a non-secret file of the home (runtime snapshot, status) without following symlinks;
/// `None` when absent, unreadable or not ours.
pub fn read_private(path: &Path) -> Option<String> {
    let mut f = open_private(path, OpenOptions::new().read(true)).ok()?;
    let mut s = String::new();
    f.read_to_string(&mut s).ok()?;
    Some(s)
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
        // `create_new` is O_EXCL: it never follows or reuses a planted file or symlink.
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        if durable {
            if let Ok(d) = open_dir_nofollow(dir) {
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

/// Reads a secret file, refusing one that others can read (mode & 0o077 != 0), a symlink, and
/// one owned by another uid.
pub fn read_secret(path: &Path) -> io::Result<String> {
    let mut f = open_private(path, OpenOptions::new().read(true))?;
    let meta = f.metadata()?;
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
    let mut s = String::new();
    f.read_to_string(&mut s)?;
    Ok(s.trim().to_string())
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

    #[test]
    fn a_symlinked_home_or_file_is_refused_and_its_target_untouched() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        fs::create_dir(&real).unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o755)).unwrap();
        let link = t.path().join("home");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = Home::new(&link).ensure().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("symlink"), "{err}");
        assert_eq!(mode_of(&real), 0o755, "the symlink's target was chmod-ed");

        let home = Home::new(t.path().join("h"));
        home.ensure().unwrap();
        let target = t.path().join("victim");
        fs::write(&target, "precious").unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&target, home.shared_token_path()).unwrap();
        let err = read_secret(&home.shared_token_path()).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        std::os::unix::fs::symlink(&target, home.log_path()).unwrap();
        let err = open_private_log(&home.log_path()).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert_eq!(read_private(&home.log_path()), None);
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
    }

    #[test]
    fn the_log_is_created_0600_and_tightened() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("gateway.log");
        drop(open_private_log(&p).unwrap());
        assert_eq!(mode_of(&p), 0o600);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        drop(open_private_log(&p).unwrap());
        assert_eq!(mode_of(&p), 0o600);
    }

    /// Needs root (to give files away); skipped otherwise.
    #[test]
    fn a_home_or_secret_owned_by_another_uid_is_refused() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: needs root to chown");
            return;
        }
        let other = Some(nix::unistd::Uid::from_raw(65534));
        let t = tempfile::tempdir().unwrap();
        let theirs = t.path().join("theirs");
        fs::create_dir(&theirs).unwrap();
        nix::unistd::chown(&theirs, other, None).unwrap();
        let err = Home::new(&theirs).ensure().unwrap_err();
        assert!(err.to_string().contains("owned by uid 65534"), "{err}");

        let home = Home::new(t.path().join("mine"));
        home.ensure().unwrap();
        write_secret_atomic(&home.shared_token_path(), b"planted").unwrap();
        nix::unistd::chown(&home.shared_token_path(), other, None).unwrap();
        let err = read_secret(&home.shared_token_path()).unwrap_err();
        assert!(err.to_string().contains("owned by uid 65534"), "{err}");
    }

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }
}
