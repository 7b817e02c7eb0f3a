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

    async fn initdb(&self, fsync: bool) -> Result<()> {
        let mut last_error = None;
        for locale in ["C.UTF-8", "C"] {
            let data = self.data_dir.as_os_str();
            let locale_arg = format!("--locale={locale}");
            let mut args: Vec<&std::ffi::OsStr> = vec![
                "-D".as_ref(),
                data,
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                locale_arg.as_ref(),
            ];
            if !fsync {
                args.push("--no-sync".as_ref());
            }
            let output = self.run("initdb", &args).await?;
            if output.status.success() {
                return Ok(());
            }
            let stderr = String::from_utf8_lossy(&output.stderr);
            let line =
                last_line(&stderr).unwrap_or_else(|| "it printed nothing on stderr".to_owned());
            let mut detail = format!(
                "creating a throwaway cluster in {}: {line}",
                self.data_dir.display()
            );
            if stderr.contains("ermission denied") {
                if let Some((uid, _)) = self.run_as {
                    let _ = write!(
                        detail,
                        "; the server runs as user postgres (uid {uid}), which must be able to reach {} (give every parent directory mode 0711 or 0755, or pick another base directory)",
                        self.root.display()
                    );
                }
            } else {
                let _ = write!(
                    detail,
                    "; check free space and permissions in {}",
                    self.root.display()
                );
            }
            last_error = Some(Error::Process {
                program: "initdb".to_owned(),
                status: describe_status(output.status),
                detail,
            });
            if !stderr.to_ascii_lowercase().contains("locale") {
                break;
            }
            // initdb removes a data directory it created, but make sure before the retry.
            if self.data_dir.exists() {
                std::fs::remove_dir_all(&self.data_dir)
                    .map_err(|e| Error::io(format!("removing {}", self.data_dir.display()), e))?;
            }
            tracing::debug!("initdb --locale={locale} failed, trying the next locale: {line}");
        }
        Err(last_error.expect("initdb was run at least once"))
    }

    /// `log_kept`: whether the log outlives a failure (not in [`Cluster::start`], whose
    /// directory is removed), so the error may point at it.
    async fn pg_ctl_start(&mut self, log_kept: bool) -> std::result::Result<(), StartFailure> {
        let log = self.log_file();
        let log_start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let args: [&std::ffi::OsStr; 8] = [
            "-D".as_ref(),
            self.data_dir.as_os_str(),
            "-l".as_ref(),
            log.as_os_str(),
            "-w".as_ref(),
            "-t".as_ref(),
            "60".as_ref(),
            "start".as_ref(),
        ];
        let output = self
            .run("pg_ctl", &args)
            .await
            .map_err(|error| StartFailure {
                error,
                port_taken: false,
            })?;
        if output.status.success() {
            self.running = true;
            return Ok(());
        }
        let log_text = read_from(&log, log_start);
        let port_taken = log_text.contains("could not bind")
            || log_text.contains("Address already in use")
            || log_text.contains("could not create any TCP/IP sockets");
        let said = match log_excerpt(&log_text) {
            Some(excerpt) => format!("the server log says: {excerpt}"),
            None => match last_line(&String::from_utf8_lossy(&output.stderr)) {
                Some(line) => format!("pg_ctl says: {line}; the server log is empty"),
                None => "neither pg_ctl nor the server said why".to_owned(),
            },
        };
        // A server that did not come up in time may still be running: the pid file tells
        // `shutdown` (and `Drop`) to stop it.
        Err(StartFailure {
            error: Error::Process {
                program: "pg_ctl start".to_owned(),
                status: describe_status(output.status),
                detail: format!(
                    "starting PostgreSQL {} in {} on port {}: {said}; fix what it names and try again{}",
                    self.major,
                    self.data_dir.display(),
                    self.port,
                    if log_kept {
                        format!(" (full log: {})", log.display())
                    } else {
                        String::new()
                    }
                ),
            },
            port_taken,
        })
    }

    async fn pg_ctl_stop(&mut self, mode: &str) -> Result<()> {
        if !self.running && !self.pid_file_exists() {
            return Ok(());
        }
        let args: [&std::ffi::OsStr; 8] = [
            "-D".as_ref(),
            self.data_dir.as_os_str(),
            "-m".as_ref(),
            mode.as_ref(),
            "-w".as_ref(),
            "-t".as_ref(),
            "60".as_ref(),
            "stop".as_ref(),
        ];
        let output = self.run("pg_ctl", &args).await?;
        if output.status.success() {
            self.running = false;
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !self.pid_file_exists() {
            // It was not running after all (stopped behind our back, or crashed).
            self.running = false;
            return Ok(());
        }
        Err(Error::Process {
            program: format!("pg_ctl stop -m {mode}"),
            status: describe_status(output.status),
            detail: format!(
                "stopping the server in {}: {}; see the server log {}",
                self.data_dir.display(),
                last_line(&stderr).unwrap_or_else(|| "it printed nothing on stderr".to_owned()),
                self.log_file().display()
            ),
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

/// Why `pg_ctl start` failed, and whether another port may help.
struct StartFailure {
    error: Error,
    port_taken: bool,
}

/// The directory holding `initdb` and `pg_ctl`: the explicit one, or the newest installed.
async fn server_bin_dir(explicit: Option<&Path>) -> Result<PathBuf> {
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
fn make_root(base_dir: Option<&Path>, run_as: Option<(Uid, Gid)>) -> Result<(TempDir, PathBuf)> {
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
fn server_user() -> Result<Option<(Uid, Gid)>> {
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
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| Error::io("finding a free TCP port on 127.0.0.1", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::io("finding a free TCP port on 127.0.0.1", e))?
        .port();
    Ok(port)
}

/// Percent-encodes a database name for the path of a URL.
fn percent_encode(text: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_urls_are_quoted() {
        assert_eq!(percent_encode("a b/ü"), "a%20b%2F%C3%BC");
        assert_eq!(conf_string("/tmp/it's"), "'/tmp/it''s'");
    }

    #[tokio::test]
    async fn a_cluster_starts_serves_and_vanishes() {
        let cluster = Cluster::start(ClusterOptions {
            fsync: false,
            ..ClusterOptions::default()
        })
        .await
        .unwrap();
        cluster
            .create_database("with \"quotes\" and spaces")
            .await
            .unwrap();
        let client = connect(&cluster.url("with \"quotes\" and spaces"))
            .await
            .unwrap();
        let row = client
            .query_one(
                "SELECT current_database(), current_setting('server_version_num')::int",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "with \"quotes\" and spaces");
        assert_eq!(row.get::<_, i32>(1) as u32 / 10000, cluster.major_version());
        let root = cluster.data_dir().parent().unwrap().to_owned();
        drop(client);
        cluster.shutdown().await.unwrap();
        assert!(!root.exists());
    }

    #[tokio::test]
    async fn connection_errors_name_the_url_without_its_password() {
        let port = free_port().unwrap();
        let err = connect(&format!("postgres://me:hunter2@127.0.0.1:{port}/db"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("connecting to postgres://me@127.0.0.1:{port}/db")),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("refused"), "{err}");
    }
}
