//! What a [`Cluster`](super::Cluster) needs before it starts: the server's programs, a private
//! directory (owned by the `postgres` user when running as root), a free port.

use super::*;

/// The directory holding `initdb` and `pg_ctl`: the explicit one, or the newest installed.
pub(super) async fn server_bin_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    let dirs = installed_server_dirs(explicit).await;
    let found = dirs
        .into_iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file());
    found.ok_or_else(|| {
        let looked_in = match explicit {
            Some(dir) => dir.display().to_string(),
            None => "/usr/lib/postgresql/*/bin, /usr/pgsql-*/bin and PATH".to_owned(),
        };
        Error::Process {
            program: "initdb".to_owned(),
            status: "not found".to_owned(),
            detail: remedy!(
                cli: "no PostgreSQL server programs (initdb and pg_ctl) in {looked_in}; install the PostgreSQL server (Debian: apt-get install postgresql) or give --pg-bin DIR",
                library: "no PostgreSQL server programs (initdb and pg_ctl) in {looked_in}; install the PostgreSQL server (Debian: apt-get install postgresql) or use another bin directory",
            ),
        }
    })
}

/// A new temporary directory in `base_dir` (default: the system's) holding a `socket/`
/// directory of mode 0700, both handed to the server's user when we are root.
pub(super) fn make_root(
    base_dir: Option<&Path>,
    run_as: Option<(Uid, Gid)>,
) -> Result<(TempDir, PathBuf)> {
    let base_dir = base_dir.map_or_else(std::env::temp_dir, Path::to_owned);
    let dir = tempfile::Builder::new()
        .prefix("ecobackup-pg-")
        .tempdir_in(&base_dir)
        .map_err(|e| {
            Error::io(
                format!("creating a temporary directory in {}", base_dir.display()),
                e,
            )
        })?;
    let socket_dir = dir.path().join("socket");
    // 0700: only the server's user (and root) may connect to a server that trusts everyone.
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&socket_dir)
        .map_err(|e| Error::io(format!("creating {}", socket_dir.display()), e))?;
    if let Some((uid, gid)) = run_as {
        for path in [dir.path(), &socket_dir] {
            std::os::unix::fs::chown(path, Some(uid.as_raw()), Some(gid.as_raw())).map_err(
                |e| {
                    Error::io(
                        format!("handing {} to the postgres user", path.display()),
                        e,
                    )
                },
            )?;
        }
    }
    Ok((dir, socket_dir))
}

/// `Some(postgres user)` when we are root (PostgreSQL refuses to run as root), else `None`.
pub(super) fn server_user() -> Result<Option<(Uid, Gid)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match User::from_name("postgres") {
        Ok(Some(user)) => Ok(Some((user.uid, user.gid))),
        Ok(None) => Err(Error::Process {
            program: "initdb".to_owned(),
            status: "not started".to_owned(),
            detail: "PostgreSQL refuses to run as root and there is no `postgres` user to run it as; create one (`useradd --system postgres`) or run as an ordinary user".to_owned(),
        }),
        Err(e) => Err(Error::io("looking up the postgres user", std::io::Error::from(e))),
    }
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub(super) fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| Error::io("finding a free TCP port on 127.0.0.1", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::io("finding a free TCP port on 127.0.0.1", e))?
        .port();
    Ok(port)
}

/// Percent-encodes a database name for the path of a URL.
pub(super) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}
