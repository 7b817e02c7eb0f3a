//! Throwaway PostgreSQL clusters, for `ecobackup demo`, restore drills and tests.
//!
//! [`Cluster::start`] runs `initdb` into a fresh temporary directory, picks a port, puts the
//! unix socket in a directory of mode 0700 beside the data and starts the server with `pg_ctl`.
//! The server trusts every local connection, so by default it listens on that socket only
//! (`listen_addresses = ''`): no other local user can reach it, which matters when it holds the
//! restored production data of a drill. [`ClusterOptions::tcp`] adds 127.0.0.1 for tests that
//! need TCP.
//!
//! [`Cluster::shutdown`] stops the server (immediate mode) and deletes the directory. Dropping
//! the [`Cluster`] does the same without waiting on the caller's thread: the stop is started
//! and waited for in the background (on the runtime's blocking pool, or at once outside a
//! runtime). [`Cluster::keep`] leaves both in place instead.
//!
//! PostgreSQL refuses to run as root: when ecobackup runs as root, `initdb` and `pg_ctl` run as
//! the `postgres` system user, which then owns the temporary directory.
//!

mod control;
mod setup;

use control::StartFailure;
use setup::{free_port, make_root, percent_encode, server_bin_dir, server_user};

use crate::error::remedy;
use std::fmt::Write as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::unistd::{Gid, Uid, User};
use tempfile::TempDir;

use crate::error::{Error, Result};
use crate::physical::recovery::conf_string;
use crate::postgres::binaries::{installed_server_dirs, program_major_version};
use crate::postgres::conn::{connect, describe_pg_error, quote_ident, redact_url};
use crate::postgres::server_log::{log_excerpt, read_from};
use crate::process::{describe_status, last_line};

/// How to set up a throwaway cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// The directory holding `initdb` and `pg_ctl`; by default the newest installed PostgreSQL
    /// (see [`installed_server_dirs`]).
    pub bin_dir: Option<PathBuf>,
    /// Extra `postgresql.conf` lines (archive settings, `wal_level`, …), written after ecobackup's
    /// own, so they win.
    pub conf: Vec<String>,
    /// Whether the server flushes to disk. `false` (for tests) turns off `fsync`,
    /// `synchronous_commit` and `full_page_writes`, and runs `initdb --no-sync`.
    pub fsync: bool,
    /// Where the temporary directory is created; by default [`std::env::temp_dir`]. When running
    /// as root, the `postgres` user must be able to reach it (mode 0755 or 0711 on every parent).
    pub base_dir: Option<PathBuf>,
    /// The whole `pg_hba.conf`, replacing initdb's trust-everything one (e.g. `hostssl` with
    /// `scram-sha-256` only, for a cluster that looks like production).
    pub hba: Option<String>,
    /// Files written into the data directory before the server starts, mode 0600 and owned by
    /// the server's user (`server.crt`, `server.key` for `ssl = on`).
    pub files: Vec<(String, Vec<u8>)>,
    /// Whether the server also listens on 127.0.0.1. `false` (the default): the unix socket
    /// only, in a directory of mode 0700 that belongs to the server's user (reachable by it and
    /// by root), and [`Cluster::url`] names that socket.
    pub tcp: bool,
}

impl Default for ClusterOptions {
    /// The newest installed PostgreSQL, no extra settings, `fsync` on, in the system temp dir,
    /// on a unix socket only.
    fn default() -> Self {
        ClusterOptions {
            bin_dir: None,
            conf: Vec::new(),
            fsync: true,
            base_dir: None,
            hba: None,
            files: Vec::new(),
            tcp: false,
        }
    }
}

/// A PostgreSQL server in a temporary directory, listening on a private unix socket (and on
/// 127.0.0.1 with [`ClusterOptions::tcp`]), with the superuser `postgres` and trust
/// authentication. Stopped and deleted by [`Cluster::shutdown`], or on drop.
#[derive(Debug)]
pub struct Cluster {
    /// The temporary directory; `None` once [`Cluster::keep`] took it.
    dir: Option<TempDir>,
    root: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    bin_dir: PathBuf,
    port: u16,
    /// Whether the server listens on 127.0.0.1 too.
    tcp: bool,
    major: u32,
    /// The role [`Cluster::url`] connects as.
    superuser: String,
    /// The user the server runs as when we are root.
    run_as: Option<(Uid, Gid)>,
    running: bool,
}

/// How many times [`Cluster::start`] tries another port when the one it picked was taken.
const PORT_ATTEMPTS: usize = 3;

impl Cluster {
    /// Creates and starts a throwaway cluster: `initdb -U postgres --auth=trust -E UTF8
    /// --locale=C.UTF-8` (or `--locale=C` where C.UTF-8 is missing) in a new temporary
    /// directory, then `pg_ctl start` on a random free port (the socket's name when TCP is off).
    ///
    /// On failure the temporary directory is removed and the error names the step that failed,
    /// quoting `initdb`'s last error line or the last meaningful lines of the server log.
    pub async fn start(options: ClusterOptions) -> Result<Cluster> {
        let bin_dir = server_bin_dir(options.bin_dir.as_deref()).await?;
        let initdb = bin_dir.join("initdb");
        let major = program_major_version(&initdb).await.ok_or_else(|| Error::Process {
            program: initdb.display().to_string(),
            status: "unusable".to_owned(),
            detail: remedy!(
                cli: "`initdb --version` did not report a PostgreSQL version; check the installation or give another --pg-bin DIR",
                library: "initdb did not report its PostgreSQL version; check the installation or use another bin directory",
            ),
        })?;
        let run_as = server_user()?;
        let (dir, socket_dir) = make_root(options.base_dir.as_deref(), run_as)?;
        let root = dir.path().to_owned();

        // From here on, a failure stops whatever was started and removes the directory before
        // it returns.
        let mut cluster = Cluster {
            dir: Some(dir),
            data_dir: root.join("data"),
            root,
            socket_dir,
            bin_dir,
            port: 0,
            tcp: options.tcp,
            major,
            superuser: "postgres".to_owned(),
            run_as,
            running: false,
        };
        if let Err(error) = cluster.bring_up(&options).await {
            if let Err(cleanup) = cluster.shutdown().await {
                tracing::warn!(error = %cleanup, "could not clean up after a failed start");
            }
            return Err(error);
        }
        tracing::debug!(
            dir = %cluster.root.display(),
            port = cluster.port,
            major,
            "throwaway PostgreSQL cluster started"
        );
        Ok(cluster)
    }

    /// A cluster whose data directory is still to be made: a new temporary directory with its
    /// private socket directory and a free port, for a data directory restored from a physical
    /// backup into [`Cluster::data_dir`] (missing until then) and started by the restore
    /// ([`Cluster::started`] tells this handle). Like every cluster here it listens on its
    /// socket only, once its [`Cluster::isolation_settings`] are applied. `superuser` is the
    /// role [`Cluster::url`] connects as: the restored cluster's bootstrap superuser.
    pub fn empty(
        bin_dir: PathBuf,
        major: u32,
        superuser: &str,
        base_dir: Option<&Path>,
    ) -> Result<Cluster> {
        let run_as = server_user()?;
        let (dir, socket_dir) = make_root(base_dir, run_as)?;
        let root = dir.path().to_owned();
        Ok(Cluster {
            dir: Some(dir),
            data_dir: root.join("data"),
            root,
            socket_dir,
            bin_dir,
            port: free_port()?,
            tcp: false,
            major,
            superuser: superuser.to_owned(),
            run_as,
            running: false,
        })
    }

    /// The settings that keep a restored data directory's server to itself: no TCP, this
    /// cluster's socket directory and port, `pg_hba.conf` and `pg_ident.conf` of its own (local
    /// connections trusted, in the 0700 directory beside the data, written here), no TLS (no
    /// TCP, and the production certificate paths do not exist here). Names and raw values, for
    /// `postgresql.auto.conf` (which quotes them), where they override the restored
    /// `postgresql.conf`.
    pub fn isolation_settings(&self) -> Result<Vec<(String, String)>> {
        let hba = self.root.join("pg_hba.conf");
        let ident = self.root.join("pg_ident.conf");
        for (path, text) in [
            (&hba, "# ecobackup scratch cluster: its socket directory is private\nlocal all all trust\n"),
            (&ident, ""),
        ] {
            crate::storage::write_private_file(path, text.as_bytes(), true)?;
            if let Some((uid, gid)) = self.run_as {
                std::os::unix::fs::chown(path, Some(uid.as_raw()), Some(gid.as_raw()))
                    .map_err(|e| Error::io(format!("handing {} to the postgres user", path.display()), e))?;
            }
        }
        let path = |p: &Path| p.to_string_lossy().into_owned();
        Ok(vec![
            ("listen_addresses".into(), String::new()),
            ("port".into(), self.port.to_string()),
            ("unix_socket_directories".into(), path(&self.socket_dir)),
            ("unix_socket_permissions".into(), "0700".into()),
            ("hba_file".into(), path(&hba)),
            ("ident_file".into(), path(&ident)),
            ("ssl".into(), "off".into()),
        ])
    }

    /// Tells this handle that the server on [`Cluster::data_dir`] was started (by a restore),
    /// so that [`Cluster::shutdown`] and `Drop` stop it.
    pub fn started(&mut self) {
        self.running = true;
    }

    /// The uid and gid the server runs as: the `postgres` user when ecobackup runs as root,
    /// else ecobackup's own.
    pub fn server_owner(&self) -> (u32, u32) {
        match self.run_as {
            Some((uid, gid)) => (uid.as_raw(), gid.as_raw()),
            None => (
                nix::unistd::geteuid().as_raw(),
                nix::unistd::getegid().as_raw(),
            ),
        }
    }

    /// The server's port: its TCP port on 127.0.0.1 with [`ClusterOptions::tcp`], and in any
    /// case the number in its socket's name (`.s.PGSQL.<port>`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory holding the server's unix socket (`host=` for libpq).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The directory of the server programs (`initdb`, `pg_ctl`, `postgres`) this cluster uses.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The server's major version (15 for PostgreSQL 15.x).
    pub fn major_version(&self) -> u32 {
        self.major
    }

    /// The server log (`pg_ctl -l`).
    pub fn log_file(&self) -> PathBuf {
        self.root.join("log")
    }

    /// Whether the server was started and not stopped since (as far as this handle knows).
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// A connection URL for `database` as the superuser (`postgres`, or the one given to
    /// [`Cluster::empty`]): the unix socket,
    /// `postgresql:///{database}?host={socket dir}&port={port}&user=postgres`, or with
    /// [`ClusterOptions::tcp`] `postgres://postgres@127.0.0.1:{port}/{database}`.
    pub fn url(&self, database: &str) -> String {
        if self.tcp {
            return format!(
                "postgres://{}@127.0.0.1:{}/{}",
                percent_encode(&self.superuser),
                self.port,
                percent_encode(database)
            );
        }
        format!(
            "postgresql:///{}?host={}&port={}&user={}",
            percent_encode(database),
            percent_encode(&self.socket_dir.to_string_lossy()),
            self.port,
            percent_encode(&self.superuser)
        )
    }

    /// Stops the server (`pg_ctl stop -m immediate`: the data is thrown away) and deletes the
    /// directory, waiting for both. Prefer this to dropping the cluster in async code: `Drop`
    /// cannot wait, so it leaves the stop and the removal to a background thread.
    pub async fn shutdown(mut self) -> Result<()> {
        self.pg_ctl_stop("immediate").await?;
        if let Some(dir) = self.dir.take() {
            let root = self.root.clone();
            tokio::task::spawn_blocking(move || dir.close())
                .await
                .map_err(|e| Error::io(format!("removing {}", root.display()), e.into()))?
                .map_err(|e| Error::io(format!("removing {}", root.display()), e))?;
        }
        Ok(())
    }

    /// Stops the server cleanly (`pg_ctl stop -m fast`). Does nothing when it is not running.
    pub async fn stop(&mut self) -> Result<()> {
        self.pg_ctl_stop("fast").await
    }

    /// Starts the server again after [`Cluster::stop`] or [`Cluster::stop_immediately`] (after a crash,
    /// PostgreSQL runs crash recovery first). Does nothing when it is running.
    pub async fn start_again(&mut self) -> Result<()> {
        if self.running {
            return Ok(());
        }
        self.pg_ctl_start(true).await.map_err(|f| f.error)
    }

    /// Stops the server cleanly and starts it again (`pg_ctl stop -m fast`, then `pg_ctl
    /// start`), for settings that need a restart.
    pub async fn restart(&mut self) -> Result<()> {
        self.pg_ctl_stop("fast").await?;
        self.pg_ctl_start(true).await.map_err(|f| f.error)
    }

    /// Stops the server without a shutdown checkpoint (`pg_ctl stop -m immediate`): the next
    /// start runs crash recovery, as after a power cut. For a cluster that must go now (a
    /// drill's scratch cluster on its way out; the testkit's crash tests). Does nothing when
    /// it is not running.
    pub async fn stop_immediately(&mut self) -> Result<()> {
        self.pg_ctl_stop("immediate").await
    }

    /// Creates database `name` (any name: it is quoted).
    pub async fn create_database(&self, name: &str) -> Result<()> {
        let url = self.url("postgres");
        let client = connect(&url).await?;
        client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
            .await
            .map_err(|e| Error::Postgres {
                context: format!("creating database {name:?} on {}", redact_url(&url)),
                detail: describe_pg_error(&e),
            })
    }

    /// Keeps the directory and leaves the server running (for `ecobackup demo` to show where it
    /// is); returns the directory, which holds `data/`, `socket/` and `log`. Stop the server
    /// later with `pg_ctl -D <dir>/data stop`.
    pub fn keep(mut self) -> PathBuf {
        self.running = false;
        match self.dir.take() {
            Some(dir) => dir.keep(),
            None => self.root.clone(),
        }
    }

    /// Writes `options.hba` and `options.files` into the data directory.
    fn install_files(&self, options: &ClusterOptions) -> Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let hba = options
            .hba
            .as_ref()
            .map(|text| ("pg_hba.conf".to_owned(), text.clone().into_bytes()));
        for (name, contents) in options.files.iter().cloned().chain(hba) {
            let path = self.data_dir.join(&name);
            let _ = std::fs::remove_file(&path);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .and_then(|mut f| f.write_all(&contents).map(|()| f))
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            file.flush()
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            if let Some((uid, gid)) = self.run_as {
                std::os::unix::fs::chown(&path, Some(uid.as_raw()), Some(gid.as_raw())).map_err(
                    |e| {
                        Error::io(
                            format!("handing {} to the postgres user", path.display()),
                            e,
                        )
                    },
                )?;
            }
        }
        Ok(())
    }

    /// `initdb`, `postgresql.conf`, `pg_ctl start` (on another port if the one picked was
    /// taken meanwhile).
    async fn bring_up(&mut self, options: &ClusterOptions) -> Result<()> {
        self.initdb(options.fsync).await?;
        self.install_files(options)?;
        let original_conf = std::fs::read_to_string(self.conf_file())
            .map_err(|e| Error::io(format!("reading {}", self.conf_file().display()), e))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.port = free_port()?;
            let conf = self.conf_text(&original_conf, options);
            std::fs::write(self.conf_file(), conf)
                .map_err(|e| Error::io(format!("writing {}", self.conf_file().display()), e))?;
            match self.pg_ctl_start(false).await {
                Ok(()) => return Ok(()),
                Err(StartFailure { error, port_taken }) => {
                    if !port_taken || attempt >= PORT_ATTEMPTS {
                        return Err(error);
                    }
                    tracing::debug!(
                        port = self.port,
                        "port taken meanwhile, trying another: {error}"
                    );
                }
            }
        }
    }

    fn conf_file(&self) -> PathBuf {
        self.data_dir.join("postgresql.conf")
    }

    fn conf_text(&self, original: &str, options: &ClusterOptions) -> String {
        let mut conf = original.to_owned();
        if !conf.ends_with('\n') {
            conf.push('\n');
        }
        conf.push_str("\n# ecobackup throwaway cluster\n");
        let listen = if self.tcp { "127.0.0.1" } else { "" };
        let _ = writeln!(conf, "listen_addresses = '{listen}'");
        let _ = writeln!(conf, "port = {}", self.port);
        let _ = writeln!(
            conf,
            "unix_socket_directories = {}",
            conf_string(&self.socket_dir.to_string_lossy())
        );
        let _ = writeln!(conf, "unix_socket_permissions = 0700");
        let _ = writeln!(conf, "max_connections = 50");
        if !options.fsync {
            conf.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
        }
        if !options.conf.is_empty() {
            conf.push_str("\n# given by the caller\n");
            for line in &options.conf {
                conf.push_str(line);
                conf.push('\n');
            }
        }
        conf
    }

    /// A command for one of the server programs, run as the server's user, in the cluster's
    /// directory, with no PostgreSQL environment variables inherited.
    fn command(&self, program: &str) -> std::process::Command {
        let mut command = std::process::Command::new(self.bin_dir.join(program));
        command.current_dir(&self.root).stdin(Stdio::null());
        for name in [
            "PGDATA",
            "PGPORT",
            "PGHOST",
            "PGHOSTADDR",
            "PGUSER",
            "PGDATABASE",
            "PGOPTIONS",
            "PGPASSWORD",
            "PGPASSFILE",
            "PGSERVICE",
            "PGSERVICEFILE",
            "PGTZ",
            "PGCLIENTENCODING",
            "PGCTLTIMEOUT",
        ] {
            command.env_remove(name);
        }
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        command
    }

    async fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Result<std::process::Output> {
        let mut command = tokio::process::Command::from(self.command(program));
        command.args(args);
        command.output().await.map_err(|e| {
            Error::io(
                format!("running {}", self.bin_dir.join(program).display()),
                e,
            )
        })
    }

    fn pid_file_exists(&self) -> bool {
        self.data_dir.join("postmaster.pid").exists()
    }
}

impl Drop for Cluster {
    /// Stops the server (immediate mode) if it may be running, then deletes the directory,
    /// without blocking an async caller: `pg_ctl stop` is started here and waited for on the
    /// runtime's blocking pool (at once, when not inside a runtime), and the directory is
    /// removed once the server is gone. Use [`Cluster::shutdown`] to wait for it.
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else {
            return; // kept, or shut down already
        };
        let mut stopping = None;
        if self.running || self.pid_file_exists() {
            let started = self
                .command("pg_ctl")
                .arg("-D")
                .arg(&self.data_dir)
                .args(["-m", "immediate", "-w", "-t", "30", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            match started {
                Ok(pg_ctl) => stopping = Some(pg_ctl),
                Err(e) => {
                    tracing::warn!(error = %e, "could not run pg_ctl to stop the throwaway PostgreSQL server")
                }
            }
        }
        let data_dir = self.data_dir.clone();
        let finish = move || {
            if let Some(mut pg_ctl) = stopping {
                let stopped = matches!(pg_ctl.wait(), Ok(status) if status.success());
                if !stopped && data_dir.join("postmaster.pid").exists() {
                    tracing::warn!(
                        dir = %data_dir.display(),
                        "could not stop the throwaway PostgreSQL server; it stops by itself within a minute of its directory being removed"
                    );
                }
            }
            drop(dir);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(finish);
            }
            Err(_) => finish(),
        }
    }
}

#[cfg(test)]
mod tests;
