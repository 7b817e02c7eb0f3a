//! Files for programs the PostgreSQL server runs (`archive_command`, `restore_command`).
//!
//! Throwaway clusters run as the `postgres` user when the tests run as root, and so do the
//! commands the server starts: their configuration, key and credential files must belong to
//! that user (ecobackup refuses key files that another user owns, and the server cannot read
//! root's 0600 files). [`ServerUserDir`] is a private temporary directory owned by the server's
//! user, [`as_server_user`] runs a command as that user, so a test drives ecobackup exactly as
//! the server does.
//!
//! ```no_run
//! use ecobackup_testkit::server_user::{as_server_user, ServerUserDir};
//!
//! let dir = ServerUserDir::new();
//! let config = dir.write("ecobackup.toml", b"[repository]\nurl = \"file:///tmp/x\"\n");
//! let mut cmd = std::process::Command::new("ecobackup");
//! as_server_user(&mut cmd).arg("--config").arg(&config);
//! ```

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, User};
use tempfile::TempDir;

/// The user the throwaway clusters' servers run as: `postgres` when we are root, else `None`
/// (they run as ourselves).
pub fn server_user() -> Option<(Uid, Gid)> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let user = User::from_name("postgres")
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("running as root needs a `postgres` user for the test servers"));
    Some((user.uid, user.gid))
}

/// Runs `command` as the server's user (no change when we are not root).
pub fn as_server_user(command: &mut std::process::Command) -> &mut std::process::Command {
    if let Some((uid, gid)) = server_user() {
        command.uid(uid.as_raw()).gid(gid.as_raw());
        if let Some(home) = User::from_uid(uid).ok().flatten().map(|u| u.dir) {
            command.env("HOME", home);
        }
    }
    command
}

/// Gives `path` (and everything below it) to the server's user.
pub fn give_to_server_user(path: &Path) {
    let Some((uid, gid)) = server_user() else {
        return;
    };
    let mut pending = vec![path.to_owned()];
    while let Some(p) = pending.pop() {
        std::os::unix::fs::lchown(&p, Some(uid.as_raw()), Some(gid.as_raw()))
            .unwrap_or_else(|e| panic!("handing {} to the server user: {e}", p.display()));
        if p.is_dir() && !p.is_symlink() {
            for entry in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                pending.push(entry.path());
            }
        }
    }
}

/// A temporary directory (mode 0700) owned by the server's user; deleted on drop.
#[derive(Debug)]
pub struct ServerUserDir {
    dir: TempDir,
}

impl Default for ServerUserDir {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerUserDir {
    /// Creates it in the system's temporary directory, which the server's user can traverse.
    pub fn new() -> ServerUserDir {
        let dir = tempfile::Builder::new()
            .prefix("ecobackup-server-user-")
            .tempdir()
            .unwrap_or_else(|e| panic!("creating a temporary directory: {e}"));
        give_to_server_user(dir.path());
        ServerUserDir { dir }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `name` (mode 0600, owned by the server's user); returns its path.
    pub fn write(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content)
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("setting the mode of {}: {e}", path.display()));
        give_to_server_user(&path);
        path
    }

    /// Creates the directory `name` in it, owned by the server's user; returns its path.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        give_to_server_user(&path);
        path
    }
}
