//! Physical backups and point-in-time recovery against real clusters that archive through the
//! built binary (`archive_command = 'ecobackup … wal-push %p'`) into the in-process S3 server,
//! and restore through it (`restore_command = 'ecobackup … wal-fetch %f %p'`).
//!
//! The servers run as the `postgres` user when the tests run as root: the configuration, the
//! keys and the S3 credential files are handed to that user, as they would be on a database
//! host.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use ecobackup_core::physical::recovery::{conf_string, shell_word};
use ecobackup_core::postgres::cluster::{Cluster, ClusterOptions};
use ecobackup_core::postgres::connect;
use ecobackup_testkit::{ClusterHooks as _, S3TestServer};

use common::{key, signing_key};
use ecobackup_testkit::server_user::{give_to_server_user as hand_over, server_user};

/// A cluster archiving into an S3 repository through the binary, and everything the binary
/// needs to reach that repository.
struct Lab {
    runtime: tokio::runtime::Runtime,
    s3: S3TestServer,
    source: Source,
    dir: tempfile::TempDir,
    config: PathBuf,
    signing: PathBuf,
}

/// The server's user as raw ids, when we are root.
fn server_owner() -> Option<(u32, u32)> {
    server_user().map(|(u, g)| (u.as_raw(), g.as_raw()))
}

/// The binary, run as the database server's user (as a backup host runs it: ecobackup refuses
/// key files another user owns), with a clean environment.
fn as_server_user(dir: &Path) -> Command {
    Command::from_std(server_user_command(dir))
}

/// [`as_server_user`] as a plain command, for a child to spawn and signal.
fn server_user_command(dir: &Path) -> std::process::Command {
    let mut std = std::process::Command::new(env!("CARGO_BIN_EXE_ecobackup"));
    std.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("PGPASSFILE", dir.join("pgpass"));
    ecobackup_testkit::server_user::as_server_user(&mut std);
    std
}

impl Lab {
    fn start(major: Option<u32>) -> Lab {
        Self::start_on(major, false)
    }

    /// A TLS-only, SCRAM-only server whose backups are taken by the `replicator` role (not a
    /// superuser) with its password in a password file.
    fn start_secure() -> Lab {
        Self::start_on(Some(15), true)
    }

    fn start_on(major: Option<u32>, secure: bool) -> Lab {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let s3 = runtime.block_on(S3TestServer::start());
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let (identity, recipient) = key(dir.path(), "restore.key");
        let (signing, public) = signing_key(dir.path());
        let secret = |name: &str, value: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, value).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            hand_over(&path);
            path
        };
        let id_file = secret("s3.id", s3.access_key_id());
        let secret_file = secret("s3.secret", s3.secret_access_key());
        hand_over(&identity);
        hand_over(&signing);
        let config = dir.path().join("ecobackup.toml");
        std::fs::write(
            &config,
            format!(
                "[repository]\nurl = \"s3://{}/prod\"\nendpoint = \"{}\"\nregion = \"{}\"\nallow_http = true\nmax_retries = 2\n\
                 access_key_id_file = \"{}\"\nsecret_access_key_file = \"{}\"\n\n\
                 [encryption]\nrecipients = [\"{recipient}\"]\nidentity_files = [\"{}\"]\ntrusted_signers = [\"{public}\"]\nsigning_key_file = \"{}\"\n",
                s3.bucket(),
                s3.endpoint(),
                s3.region(),
                id_file.display(),
                secret_file.display(),
                identity.display(),
                signing.display()
            ),
        )
        .unwrap();
        hand_over(&config);
        as_server_user(dir.path())
            .args(["--config", config.to_str().unwrap(), "init"])
            .assert()
            .success();
        let archive_command = format!(
            "{} --config {} wal-push %p",
            shell_word(env!("CARGO_BIN_EXE_ecobackup")),
            shell_word(config.to_str().unwrap())
        );
        let bin_dir = major.map(|m| runtime.block_on(ecobackup_testkit::majors::server_bin_dir(m)));
        let conf = vec![
            "wal_level = replica".into(),
            "archive_mode = on".into(),
            format!("archive_command = {}", conf_string(&archive_command)),
        ];
        if secure {
            let pg = runtime.block_on(ecobackup_testkit::SecurePg::start_with(
                ecobackup_testkit::secure_pg::SecureOptions { major, conf },
            ));
            // What the backup host needs, readable by the user that runs ecobackup.
            let ca = dir.path().join("ca.pem");
            std::fs::copy(pg.ca_file(), &ca).unwrap();
            let pgpass = dir.path().join("pgpass");
            std::fs::copy(pg.password_file(), &pgpass).unwrap();
            hand_over(&ca);
            hand_over(&pgpass);
            let url = format!(
                "postgresql://replicator@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
                pg.port(),
                ca.display()
            );
            return Lab {
                runtime,
                s3,
                source: Source::Secure(pg, url),
                dir,
                config,
                signing,
            };
        }
        let cluster = runtime
            .block_on(Cluster::start(ClusterOptions {
                bin_dir,
                fsync: false,
                conf,
                ..ClusterOptions::default()
            }))
            .unwrap();
        Lab {
            runtime,
            s3,
            source: Source::Plain(cluster),
            dir,
            config,
            signing,
        }
    }

    fn run(&self, args: &[&str]) -> Command {
        let mut cmd = as_server_user(self.dir.path());
        cmd.args(["--config", self.config.to_str().unwrap()])
            .args(args);
        // The programs of the cluster's own version (PostgreSQL 18 lives outside PATH in CI).
        if args
            .iter()
            .any(|a| *a == "backup" || *a == "restore" || *a == "drill")
        {
            cmd.args(["--pg-bin", self.cluster().bin_dir().to_str().unwrap()]);
        }
        cmd
    }

    fn sql(&self, url: &str, statements: &str) -> Vec<tokio_postgres::SimpleQueryMessage> {
        self.runtime.block_on(async {
            let client = connect(url).await.unwrap();
            client.simple_query(statements).await.unwrap()
        })
    }

    /// The first column of the first row of `query`.
    fn value(&self, url: &str, query: &str) -> String {
        self.sql(url, query)
            .into_iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => {
                    Some(row.get(0).unwrap_or_default().to_owned())
                }
                _ => None,
            })
            .unwrap()
    }

    /// The URL backups are taken from: the superuser on the plain server's socket, or the
    /// `replicator` role over verified TLS on the secure one.
    fn source(&self) -> String {
        match &self.source {
            Source::Plain(cluster) => cluster.url("postgres"),
            Source::Secure(_, url) => url.clone(),
        }
    }

    fn cluster(&self) -> &Cluster {
        match &self.source {
            Source::Plain(cluster) => cluster,
            Source::Secure(pg, _) => pg.cluster(),
        }
    }

    fn cluster_mut(&mut self) -> &mut Cluster {
        match &mut self.source {
            Source::Plain(cluster) => cluster,
            Source::Secure(pg, _) => pg.cluster_mut(),
        }
    }

    fn backup(&self, extra: &[&str]) -> String {
        let out = self
            .run(&["--json", "backup", "physical", "--db", &self.source()])
            .args(["--signing-key", self.signing.to_str().unwrap()])
            .args(extra)
            .assert()
            .success();
        let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        report["manifest"]["id"].as_str().unwrap().to_owned()
    }

    /// Switches to a new WAL segment and waits until the server archived the old one.
    fn switch_and_archive(&self) {
        let url = self.source();
        let switched = self.value(&url, "SELECT pg_walfile_name(pg_switch_wal())");
        for _ in 0..600 {
            let archived = self.value(
                &url,
                "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
            );
            if archived >= switched {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{switched} was not archived within a minute");
    }

    /// An empty data directory for a restore, owned by the server's user.
    fn empty_pgdata(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir(&path).unwrap();
        hand_over(&path);
        path
    }

    /// Restores and starts a server on its own port and socket (archiving nothing: the default).
    fn restore(&self, name: &str, args: &[&str]) -> Restored {
        let pgdata = self.empty_pgdata(name);
        let socket = self.empty_pgdata(&format!("{name}-socket"));
        let port = free_port();
        let out = self
            .run(&["restore", "physical"])
            .args(args)
            .args(["--pgdata", pgdata.to_str().unwrap(), "--start"])
            .args(["--set", &format!("port={port}")])
            .args([
                "--set",
                &format!("unix_socket_directories={}", socket.display()),
            ])
            .args(["--set", "listen_addresses="])
            .assert();
        let output = out.get_output().clone();
        let restored = Restored {
            pgdata,
            bin_dir: self.cluster().bin_dir().to_owned(),
            url: format!(
                "postgresql:///postgres?host={}&port={port}&user=postgres",
                socket.display()
            ),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        };
        assert!(
            output.status.success(),
            "restore failed: {}{}\nserver log: {}",
            restored.stdout,
            String::from_utf8_lossy(&output.stderr),
            restored.log()
        );
        restored
    }
}

/// Where backups come from.
enum Source {
    /// A throwaway cluster; the superuser over its private socket.
    Plain(Cluster),
    /// TLS only and SCRAM only; backups by the `replicator` role; its URL.
    Secure(ecobackup_testkit::SecurePg, String),
}

/// A restored, started server; stopped when dropped.
struct Restored {
    pgdata: PathBuf,
    bin_dir: PathBuf,
    url: String,
    stdout: String,
}

impl Restored {
    fn log(&self) -> String {
        std::fs::read_to_string(self.pgdata.join("log/ecobackup-recovery.log")).unwrap_or_default()
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        let mut stop = std::process::Command::new(self.bin_dir.join("pg_ctl"));
        stop.args([
            "-D",
            self.pgdata.to_str().unwrap(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]);
        if let Some((uid, gid)) = server_owner() {
            use std::os::unix::process::CommandExt as _;
            stop.uid(uid).gid(gid);
        }
        let _ = stop.output();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn batches(lab: &Lab, url: &str) -> Vec<String> {
    lab.sql(url, "SELECT DISTINCT batch FROM t ORDER BY 1")
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap().to_owned()),
            _ => None,
        })
        .collect()
}

/// Base backup; batch A; time T and restore point `before-b`; batch B; restores to T, to the
/// name and to the end of the archive each find exactly what was committed before them, and
/// accept writes after the promotion.
fn point_in_time_recovery(major: Option<u32>) {
    let lab = Lab::start(major);
    let url = lab.source();
    lab.sql(&url, "CREATE TABLE t (batch text, n int)");
    let id = lab.backup(&[]);
    lab.sql(
        &url,
        "INSERT INTO t SELECT 'A', g FROM generate_series(1, 1000) g",
    );
    let t = lab.value(&url, "SELECT now()::text");
    lab.sql(&url, "SELECT pg_create_restore_point('before-b')");
    lab.sql(
        &url,
        "INSERT INTO t SELECT 'B', g FROM generate_series(1, 1000) g",
    );
    lab.switch_and_archive();

    let out = lab.run(&["show", &id]).assert().success();
    let shown = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(shown.contains("wal      000000010000000000000"), "{shown}");
    assert!(shown.contains("timeline 1  LSN 0/"), "{shown}");
    let out = lab
        .run(&["--json", "list", "--kind", "physical"])
        .assert()
        .success();
    let listed: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(
        listed[0]["source"]["physical"]["wal_archived"], true,
        "{listed}"
    );
    // Every archived file authenticates, and the backup's WAL is complete.
    lab.run(&["verify", "--all", "--wal"]).assert().success();

    let to_time = lab.restore("to-time", &["--target-time", &t]);
    assert_eq!(batches(&lab, &to_time.url), ["A"], "{}", to_time.stdout);
    assert!(
        to_time.stdout.contains(&id),
        "the backup that ended before T: {}",
        to_time.stdout
    );
    assert!(to_time.stdout.contains("promoted"), "{}", to_time.stdout);
    lab.sql(&to_time.url, "INSERT INTO t VALUES ('after', 1)");
    drop(to_time);

    let to_name = lab.restore("to-name", &[&id, "--target-name", "before-b"]);
    assert_eq!(batches(&lab, &to_name.url), ["A"]);
    drop(to_name);

    let to_end = lab.restore("to-end", &["latest"]);
    assert_eq!(batches(&lab, &to_end.url), ["A", "B"]);
    assert_eq!(lab.value(&to_end.url, "SELECT count(*) FROM t"), "2000");
    lab.sql(&to_end.url, "INSERT INTO t VALUES ('after', 1)");
    lab.sql(&to_end.url, "SELECT pg_switch_wal()");
    drop(to_end);

    drills(&lab, &id, &t);
    // The restored copies and the drills promoted to new timelines but archived nothing into
    // the source's repository (archive_mode is off in a restore unless --keep-archiving, and
    // always in a drill).
    let foreign: Vec<String> = lab
        .s3
        .object_keys()
        .into_iter()
        .filter(|k| k.contains("/wal/0000000") && !k.contains("/wal/00000001/"))
        .collect();
    assert!(foreign.is_empty(), "{foreign:?}");
}

/// Drills of the physical backup `id`: to time `t` (batch A only) the checks pass; to the
/// backup's own end (the default) table t is still empty, and a check that wants rows fails
/// the drill with the numbers in its report.
fn drills(lab: &Lab, id: &str, t: &str) {
    let checks = lab.dir.path().join("checks.toml");
    std::fs::write(
        &checks,
        format!(
            "[[table]]\nname = \"t\"\nmin_rows = 1000\n\n\
             [[sql]]\nname = \"batch A only\"\n\
             query = \"SELECT count(*) = 1000 AND count(*) FILTER (WHERE batch = 'B') = 0 FROM t\"\n\n\
             [[sql]]\nname = \"now() is the target time\"\nquery = \"SELECT now() = '{t}'::timestamptz\"\n"
        ),
    )
    .unwrap();
    hand_over(&checks);
    let report = lab.empty_pgdata("reports").join("drill.json");
    let out = lab
        .run(&["drill", "--target-time", t])
        .args(["--checks", checks.to_str().unwrap()])
        .args(["--report", report.to_str().unwrap()])
        .assert();
    let output = out.get_output();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("PASSED"), "{stdout}");
    assert!(stdout.contains("+ replay "), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["backup_id"], id, "{report}");
    assert_eq!(report["kind"], "physical", "{report}");
    assert_eq!(report["checks"].as_array().unwrap().len(), 3, "{report}");
    assert!(report["rto"]["replay_seconds"].as_f64().unwrap() > 0.0);
    assert!(
        report["recovery"]["stopped"]
            .as_str()
            .unwrap()
            .starts_with("recovery stopping before commit"),
        "{report}"
    );
    let databases: Vec<&str> = report["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(databases, ["postgres"], "{report}");
    // The scratch cluster is gone, and its server with it.
    let target = report["target"].as_str().unwrap();
    let data_dir = target.rsplit(" in ").next().unwrap();
    assert!(!Path::new(data_dir).exists(), "{target}");

    let wants_rows = lab.dir.path().join("wants-rows.toml");
    std::fs::write(&wants_rows, "[[table]]\nname = \"t\"\nmin_rows = 1\n").unwrap();
    hand_over(&wants_rows);
    let out = lab
        .run(&["--json", "drill", "latest", "--kind", "physical"])
        .args(["--checks", wants_rows.to_str().unwrap()])
        .assert()
        .failure();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(report["passed"], false, "{report}");
    assert_eq!(
        report["recovery"]["target"], "the end of the backup",
        "{report}"
    );
    assert_eq!(report["checks"][0]["actual"], "0 rows", "{report}");

    // SIGTERM during the checks (cron's `timeout`, systemd): the scratch server is stopped and
    // its copy of the data removed before the process ends.
    let scratch = lab.empty_pgdata("scratch");
    let slow = lab.dir.path().join("slow.toml");
    std::fs::write(&slow, "[command]\nrun = \"sleep 60\"\n").unwrap();
    hand_over(&slow);
    let mut child = server_user_command(lab.dir.path())
        .args(["--config", lab.config.to_str().unwrap()])
        .args(["drill", "latest", "--kind", "physical"])
        .args(["--pg-bin", lab.cluster().bin_dir().to_str().unwrap()])
        .args(["--checks", slow.to_str().unwrap()])
        .args(["--scratch-dir", scratch.to_str().unwrap()])
        .spawn()
        .unwrap();
    let running = || {
        std::fs::read_dir(&scratch)
            .unwrap()
            .flatten()
            .any(|e| e.path().join("data/postmaster.pid").exists())
    };
    let started = std::time::Instant::now();
    while !running() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(running(), "the drill's server never started");
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let left: Vec<_> = std::fs::read_dir(&scratch).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(
        String::from_utf8_lossy(&out.get_output().stderr)
            .contains("expected >= 1 rows, got 0 rows"),
        "{}",
        String::from_utf8_lossy(&out.get_output().stderr)
    );
}

#[test]
fn point_in_time_recovery_on_15() {
    point_in_time_recovery(Some(15));
}

#[test]
fn point_in_time_recovery_on_18() {
    point_in_time_recovery(Some(18));
}

/// The archive unreachable while the restored server recovers: wal-fetch exits above 125, the
/// server stops with a FATAL instead of promoting early; with the archive back, starting it
/// again completes recovery to the same target with the same data.
#[test]
fn an_unreachable_archive_stops_recovery_instead_of_ending_it() {
    use ecobackup_core::physical::{start_recovery, RecoveryEnd};
    use ecobackup_testkit::s3::{Fault, FaultRule};
    let lab = Lab::start(Some(15));
    let url = lab.source();
    lab.sql(&url, "CREATE TABLE t (batch text, n int)");
    lab.backup(&[]);
    lab.sql(
        &url,
        "INSERT INTO t SELECT 'A', g FROM generate_series(1, 1000) g",
    );
    let t = lab.value(&url, "SELECT now()::text");
    lab.sql(
        &url,
        "INSERT INTO t SELECT 'B', g FROM generate_series(1, 1000) g",
    );
    lab.switch_and_archive();

    let pgdata = lab.empty_pgdata("interrupted");
    let socket = lab.empty_pgdata("interrupted-socket");
    let port = free_port();
    lab.run(&["restore", "physical", "--target-time", &t])
        .args(["--pgdata", pgdata.to_str().unwrap()])
        .args(["--set", &format!("port={port}")])
        .args([
            "--set",
            &format!("unix_socket_directories={}", socket.display()),
        ])
        .args(["--set", "listen_addresses=", "--set", "archive_mode=off"])
        .assert()
        .success();
    let restored = Restored {
        pgdata: pgdata.clone(),
        bin_dir: lab.cluster().bin_dir().to_owned(),
        url: format!(
            "postgresql:///postgres?host={}&port={port}&user=postgres",
            socket.display()
        ),
        stdout: String::new(),
    };
    let owner = server_owner().unwrap_or((
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    ));
    let start = || {
        lab.runtime.block_on(start_recovery(
            &pgdata,
            15,
            Some(lab.cluster().bin_dir()),
            owner,
            Duration::from_secs(120),
        ))
    };

    lab.s3
        .add_fault(FaultRule::new(Fault::Status(503)).forever());
    let err = start().unwrap_err().to_string();
    assert!(err.contains("could not restore file"), "{err}");
    let log = restored.log();
    assert!(
        !log.contains("selected new timeline"),
        "promoted early: {log}"
    );
    assert!(!log.contains("ready to accept connections"), "{log}");

    lab.s3.clear_faults();
    let outcome = start().unwrap();
    assert_eq!(outcome.end, RecoveryEnd::Promoted, "{}", restored.log());
    assert_eq!(batches(&lab, &restored.url), ["A"]);
}

/// The target checks happen before anything is written: a time before the backup's end, and a
/// non-empty data directory, are refused with one line, the directory untouched.
#[test]
fn unreachable_targets_and_used_directories_are_refused() {
    let lab = Lab::start(Some(15));
    let url = lab.source();
    let before = lab.value(&url, "SELECT (now() - interval '1 hour')::text");
    let id = lab.backup(&[]);
    let pgdata = lab.empty_pgdata("refused");
    let out = lab
        .run(&["restore", "physical", &id, "--target-time", &before])
        .args(["--pgdata", pgdata.to_str().unwrap()])
        .assert()
        .failure();
    let line = common::one_error_line(&out.get_output().stderr);
    assert!(line.contains("after the target"), "{line}");
    assert_eq!(std::fs::read_dir(&pgdata).unwrap().count(), 0);

    std::fs::write(pgdata.join("precious"), b"x").unwrap();
    let out = lab
        .run(&["restore", "physical", &id, "--target-immediate"])
        .args(["--pgdata", pgdata.to_str().unwrap()])
        .assert()
        .failure();
    let line = common::one_error_line(&out.get_output().stderr);
    assert!(line.contains("not empty"), "{line}");
    // --force empties only a data directory.
    let out = lab
        .run(&["restore", "physical", &id, "--target-immediate", "--force"])
        .args(["--pgdata", pgdata.to_str().unwrap()])
        .assert()
        .failure();
    let line = common::one_error_line(&out.get_output().stderr);
    assert!(line.contains("PG_VERSION"), "{line}");
    assert_eq!(std::fs::read(pgdata.join("precious")).unwrap(), b"x");

    // A backup encrypted to other recipients than the WAL its archive_command pushes: no key
    // would open both, so it is refused and not listed.
    let (_, other) = key(&lab.empty_pgdata("other-key"), "other.key");
    let out = lab
        .run(&["backup", "physical", "--db", &url, "--recipient", &other])
        .args(["--signing-key", lab.signing.to_str().unwrap()])
        .assert()
        .failure();
    let line = common::one_error_line(&out.get_output().stderr);
    assert!(line.contains("no key opens both"), "{line}");
    let out = lab.run(&["--json", "list"]).assert().success();
    let listed: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
}

/// A base backup whose stop segment never reaches the archive (archive_command failing) fails
/// within its bound and is not listed.
#[test]
fn a_backup_whose_wal_is_not_archived_is_not_listed() {
    let lab = Lab::start(Some(15));
    let url = lab.source();
    // Still `ecobackup wal-push`, so the backup starts; but every push fails.
    lab.sql(
        &url,
        &format!(
            "ALTER SYSTEM SET archive_command = {}",
            conf_string(&format!(
                "{} --config /nonexistent/ecobackup.toml wal-push %p",
                env!("CARGO_BIN_EXE_ecobackup")
            ))
        ),
    );
    lab.sql(&url, "SELECT pg_reload_conf()");
    let out = lab
        .run(&["backup", "physical", "--db", &url, "--archive-timeout", "3"])
        .args(["--signing-key", lab.signing.to_str().unwrap()])
        .assert()
        .failure();
    let line = common::one_error_line(&out.get_output().stderr);
    assert!(line.contains("archive"), "{line}");
    let out = lab
        .run(&["--json", "list", "--kind", "physical"])
        .assert()
        .success();
    let listed: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");
    drop(lab.s3);
}

/// The source killed (`pg_ctl stop -m immediate`) while it archives under pgbench load: after
/// the restart the archive has no gap, and `verify --wal` passes.
#[test]
fn an_immediate_stop_under_load_leaves_no_gap_in_the_archive() {
    let mut lab = Lab::start(Some(15));
    let url = lab.source();
    let pgbench = lab.cluster().bin_dir().join("pgbench");
    let socket = lab.cluster().socket_dir().to_owned();
    let port = lab.cluster().port().to_string();
    let bench = |args: &[&str]| {
        let mut command = std::process::Command::new(&pgbench);
        command
            .args([
                "-h",
                socket.to_str().unwrap(),
                "-p",
                &port,
                "-U",
                "postgres",
            ])
            .args(args)
            .arg("postgres")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        command
    };
    assert!(bench(&["-i", "-s", "5", "-q"]).status().unwrap().success());
    lab.backup(&[]);
    // Small segments fill fast: switch often so that many segments are archived under load.
    lab.sql(&url, "ALTER SYSTEM SET archive_timeout = '1s'");
    lab.sql(&url, "SELECT pg_reload_conf()");
    let mut load = bench(&["-c", "4", "-T", "30", "-n"]).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(15));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(lab.cluster_mut().crash()).unwrap();
    let _ = load.wait();
    runtime.block_on(lab.cluster_mut().start_again()).unwrap();
    lab.switch_and_archive();
    let out = lab
        .run(&["--json", "verify", "--all", "--wal"])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(!text.contains("\"gaps\":[{"), "{text}");
    // (pg_stat_archiver starts again from zero after a crash: count the archive's objects.)
    let archived = lab
        .s3
        .object_keys()
        .iter()
        .filter(|k| {
            k.rsplit('/')
                .next()
                .is_some_and(|n| n.len() == 24 + ".zst.age".len() && n.ends_with(".zst.age"))
        })
        .count();
    assert!(archived > 3, "only {archived} segments archived under load");
}

/// The production-like lab: a TLS-only, SCRAM-only server, the backup taken by a role with
/// REPLICATION but not a superuser, its password in a password file; the restore recovers to
/// the backup's end with the superuser's data in it.
#[test]
fn a_replication_role_backs_up_a_tls_only_server() {
    let lab = Lab::start_secure();
    let Source::Secure(pg, _) = &lab.source else {
        unreachable!()
    };
    lab.runtime.block_on(async {
        let client = pg.superuser("postgres").await;
        client
            .batch_execute("CREATE TABLE t (batch text, n int); INSERT INTO t VALUES ('A', 1)")
            .await
            .unwrap();
    });
    let id = lab.backup(&[]);
    let restored = lab.restore("from-tls", &[&id, "--target-immediate"]);
    assert_eq!(batches(&lab, &restored.url), ["A"]);
    drop(restored);
    // The drill's copy drops the production pg_hba.conf (hostssl only) and TLS (its
    // certificate files are the source's) for a private socket it trusts, and connects as the
    // bootstrap superuser the backup recorded, not as the replicator that took it.
    let checks = lab.dir.path().join("tls-checks.toml");
    std::fs::write(&checks, "[[table]]\nname = \"t\"\nmin_rows = 1\n").unwrap();
    hand_over(&checks);
    let out = lab
        .run(&["--json", "drill", &id])
        .args(["--checks", checks.to_str().unwrap()])
        .assert();
    let output = out.get_output();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["checks"][0]["actual"], "1 rows", "{report}");
}

/// Root may restore, but not start the restored server or drill a physical backup: the server
/// and its restore_command would run as the postgres user, which cannot use root's key files.
#[test]
fn root_is_told_to_start_restored_servers_as_their_user() {
    if server_owner().is_none() {
        return; // not root: nothing to refuse
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("ecobackup")
        .unwrap()
        .current_dir(dir.path())
        .args(["--repo", "file:///nonexistent", "restore", "physical"])
        .args(["--pgdata", "restored", "--start"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("sudo -u postgres ecobackup"), "{stderr}");
    assert!(!dir.path().join("restored").exists());
}
