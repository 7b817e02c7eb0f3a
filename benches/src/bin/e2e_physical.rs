//! End-to-end benchmark of the physical path (docs/BENCHMARKS.md, issue 11), not a test.
//!
//! One throwaway PostgreSQL cluster (wal_level replica, archive_mode on, `archive_command` =
//! `ecobackup wal-push %p` into a `file://` repository on local disk), loaded with the demo shop
//! at `--scale` (50 ≈ 420 MB, the database of e2e-logical). Then, in one run:
//!
//! 1. **Base backups** of the whole cluster, `--runs` times each, interleaved (best run counts):
//!    `ecobackup backup physical` (zstd 3 + age, signed, waits for its stop segment in its
//!    archive); `pgbackrest backup --type=full` (posix repository, zst level 3, aes-256-cbc,
//!    process-max 2, start-fast, archive-check on: it waits for its stop segment in *its*
//!    archive); `pg_basebackup -Ft -D - -X none --checkpoint=fast | zstd -3 -T2 | age -r`.
//!    pgBackRest needs its own archive: during its runs `archive_command` is the chain
//!    `pgbackrest archive-push %p && ecobackup wal-push %p` (pgBackRest first, so that it waits
//!    for its own push only, and ecobackup's archive keeps every segment); during the others it
//!    is `ecobackup wal-push %p` alone.
//! 2. **wal-push latency**: 32 real 16 MiB segments of the load (copied out by the
//!    archive_command while loading), one process per segment, into a fresh repository of each
//!    tool (ecobackup: `init`, then one push of an extra segment records `wal/cluster.json`, as
//!    a server's first push would; pgBackRest: `stanza-create`, then the same extra segment).
//!    The mean per segment; the best of `--runs` rounds, each into fresh repositories.
//! 3. **Restores**: `ecobackup restore physical latest --target-immediate --start` (unpack,
//!    pg_verifybackup, replay to consistency, promote; the server is stopped afterwards, outside
//!    the timing) against `ecobackup restore logical --create` of a logical backup of the shop
//!    and plain `pg_restore` of a local `pg_dump -Fc` file (the same flags ecobackup gives:
//!    `--no-owner --exit-on-error --single-transaction`), both into a second throwaway cluster
//!    without archiving (so that the restored rows' WAL is not archived by the same two cores
//!    during the measurement). Then the logical restore with session settings in `PGOPTIONS`.
//!
//! Every figure is printed with the 1-minute load average before and after it: the machine is
//! shared, and other builds may run meanwhile.
//!
//! Run (as root: the servers, ecobackup and pgBackRest run as the `postgres` user, as on a
//! database host): `cargo build --release --bin ecobackup && cargo run --release -p
//! ecobackup-benches --bin e2e-physical -- --scale 50`. Needs PostgreSQL 15
//! (`/usr/lib/postgresql/15/bin`, or `--pg-bin`), pgbackrest (Debian's 2.45), zstd and age.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ecobackup_core::physical::recovery::{conf_string, shell_word};
use ecobackup_core::postgres::cluster::{Cluster, ClusterOptions};
use ecobackup_core::postgres::connect;
use ecobackup_testkit::fixture::load_shop;
use ecobackup_testkit::server_user::{as_server_user, give_to_server_user};

/// How many segments the wal-push comparison pushes (issue 11: 32).
const SEGMENTS: usize = 32;
/// The segment size of the throwaway clusters (initdb's default).
const SEGMENT_SIZE: u64 = 16 << 20;
/// pgBackRest's stanza.
const STANZA: &str = "bench";

struct Options {
    scale: u32,
    runs: u32,
    ecobackup: PathBuf,
    pg_bin: PathBuf,
}

fn options() -> Options {
    let mut args = std::env::args().skip(1);
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_owned))
        .unwrap_or_default();
    let mut options = Options {
        scale: 50,
        runs: 2,
        ecobackup: exe_dir.join("ecobackup"),
        pg_bin: PathBuf::from("/usr/lib/postgresql/15/bin"),
    };
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--scale" => options.scale = value().parse().unwrap_or_else(|_| usage("--scale N")),
            "--runs" => options.runs = value().parse().unwrap_or_else(|_| usage("--runs N")),
            "--ecobackup" => options.ecobackup = PathBuf::from(value()),
            "--pg-bin" => options.pg_bin = PathBuf::from(value()),
            _ => usage(&format!("unknown argument {arg}")),
        }
    }
    if !options.ecobackup.is_file() {
        usage(&format!(
            "{} not found: cargo build --release --bin ecobackup first, or give --ecobackup PATH",
            options.ecobackup.display()
        ));
    }
    for program in ["pgbackrest", "zstd", "age"] {
        let found = Command::new(program)
            .arg(if program == "pgbackrest" {
                "version"
            } else {
                "--version"
            })
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            usage(&format!(
                "{program} not found (apt-get install -y {program})"
            ));
        }
    }
    options
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "error: {problem}\nusage: e2e-physical [--scale N] [--runs N] [--ecobackup PATH] [--pg-bin DIR]"
    );
    std::process::exit(2)
}

/// The 1-minute load average (what `uptime` prints first).
fn load() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// A measurement: its best wall time, and the load averages around all its runs.
#[derive(Clone, Copy)]
struct Figure {
    best: Duration,
    load_before: f64,
    load_after: f64,
}

impl Figure {
    fn secs(&self) -> f64 {
        self.best.as_secs_f64()
    }

    fn load(&self) -> String {
        format!("{:.2} → {:.2}", self.load_before, self.load_after)
    }
}

/// Collects the runs of one measurement.
struct Runs {
    what: String,
    best: Duration,
    load_before: f64,
}

impl Runs {
    fn new(what: &str) -> Runs {
        Runs {
            what: what.to_owned(),
            best: Duration::MAX,
            load_before: load(),
        }
    }

    /// Runs `command` once, timed; stops the benchmark when it fails. Returns its stdout.
    fn time(&mut self, mut command: Command) -> String {
        let started = Instant::now();
        let output = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("spawn");
        let took = started.elapsed();
        check(&self.what, &output);
        eprintln!(
            "  {}: {:.2} s (load {:.2})",
            self.what,
            took.as_secs_f64(),
            load()
        );
        self.best = self.best.min(took);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn done(&self) -> Figure {
        Figure {
            best: self.best,
            load_before: self.load_before,
            load_after: load(),
        }
    }
}

/// Stops the benchmark when `output` is a failure. A panic, not `exit`: unwinding drops the
/// clusters, which stops their servers and removes their directories.
fn check(what: &str, output: &std::process::Output) {
    if !output.status.success() {
        panic!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Runs `command` untimed; stops the benchmark when it fails. Returns its stdout.
fn run(what: &str, command: &mut Command) -> String {
    let output = command.stdin(Stdio::null()).output().expect("spawn");
    check(what, &output);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `program` as the server's user (when we are root), with a clean environment: nothing of the
/// caller's ECOBACKUP_*, PG* or AWS_* leaks in.
fn as_postgres(program: impl AsRef<std::ffi::OsStr>, home: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .current_dir(home);
    as_server_user(&mut command);
    command
}

/// Runs SQL on `url`, returning the first column of the first row (empty when none).
async fn sql(url: &str, statements: &str) -> String {
    let client = connect(url).await.expect("connect");
    client
        .simple_query(statements)
        .await
        .unwrap_or_else(|e| panic!("{statements}: {e}"))
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => {
                Some(row.get(0).unwrap_or_default().to_owned())
            }
            _ => None,
        })
        .unwrap_or_default()
}

/// Sets `archive_command` and waits until the archiver has nothing left to do, so that every
/// backup starts from the same idle state.
async fn set_archive_command(url: &str, command: &str) {
    sql(
        url,
        &format!(
            "ALTER SYSTEM SET archive_command = {}",
            conf_string(command)
        ),
    )
    .await;
    sql(url, "SELECT pg_reload_conf()").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_archive_idle(url).await;
}

/// Waits until no WAL file is ready for archiving and the archiver has not failed since it
/// last succeeded.
async fn wait_archive_idle(url: &str) {
    for _ in 0..1200 {
        let ready = sql(
            url,
            "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'",
        )
        .await;
        if ready == "0" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let archiver = sql(
        url,
        "SELECT format('last archived %s, last failed %s, %s failures', last_archived_wal, last_failed_wal, failed_count) FROM pg_stat_archiver",
    )
    .await;
    panic!("the archiver did not catch up within two minutes: {archiver}");
}

fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![path.to_owned()];
    while let Some(p) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            for entry in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                pending.push(entry.path());
            }
        } else {
            total += meta.len();
        }
    }
    total
}

fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

/// A new directory owned by the server's user.
fn server_dir(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).expect("create dir");
    give_to_server_user(path);
    path.to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Everything the benchmark's programs need: the configurations, the keys, the repositories.
struct Lab {
    work: PathBuf,
    ecobackup: PathBuf,
    /// ecobackup's configuration for the main repository (backups and the server's archive).
    config: PathBuf,
    /// pgBackRest's configuration for the main repository.
    pgbackrest_conf: PathBuf,
    recipient: String,
}

impl Lab {
    fn ecobackup(&self, config: &Path) -> Command {
        let mut command = as_postgres(&self.ecobackup, &self.work);
        command.arg("--config").arg(config);
        command
    }

    fn pgbackrest(&self, repo: Option<&Path>) -> Command {
        let mut command = as_postgres("pgbackrest", &self.work);
        command
            .arg(format!("--config={}", self.pgbackrest_conf.display()))
            .arg(format!("--stanza={STANZA}"));
        if let Some(repo) = repo {
            command.arg(format!("--repo1-path={}", repo.display()));
        }
        command
    }

    /// An ecobackup configuration for a `file://` repository at `repo`: encrypted to the
    /// recipient, signed, and with the identity and trusted signer a restore needs.
    fn write_config(&self, name: &str, repo: &Path, keys: &Keys) -> PathBuf {
        let path = self.work.join(name);
        std::fs::write(
            &path,
            format!(
                "[repository]\nurl = \"file://{}\"\n\n\
                 [encryption]\nrecipients = [\"{}\"]\nidentity_files = [\"{}\"]\ntrusted_signers = [\"{}\"]\nsigning_key_file = \"{}\"\n",
                repo.display(),
                self.recipient,
                keys.identity.display(),
                keys.signer,
                keys.signing.display()
            ),
        )
        .expect("write config");
        give_to_server_user(&path);
        run(
            "ecobackup init",
            self.ecobackup(&path).arg("init").stdout(Stdio::null()),
        );
        path
    }

    /// `ecobackup … wal-push %p` for an archive_command.
    fn wal_push_command(&self) -> String {
        format!(
            "{} --config {} wal-push %p",
            shell_word(&self.ecobackup.to_string_lossy()),
            shell_word(&self.config.to_string_lossy())
        )
    }

    /// `pgbackrest … archive-push %p` for an archive_command.
    fn archive_push_command(&self) -> String {
        format!(
            "pgbackrest --config={} --stanza={STANZA} archive-push %p",
            shell_word(&self.pgbackrest_conf.to_string_lossy())
        )
    }
}

struct Keys {
    identity: PathBuf,
    signing: PathBuf,
    signer: String,
}

/// What the wal-push comparison measured.
struct PushFigures {
    ecobackup: Figure,
    ecobackup_spread: (f64, f64),
    ecobackup_stored: u64,
    pgbackrest: Figure,
    pgbackrest_spread: (f64, f64),
    pgbackrest_stored: u64,
}

/// Pushes `segments` one process each; returns the mean, min and max seconds per segment.
fn push_each(
    what: &str,
    segments: &[PathBuf],
    mut command: impl FnMut(&Path) -> Command,
) -> (f64, f64, f64) {
    let mut times = Vec::with_capacity(segments.len());
    for segment in segments {
        let started = Instant::now();
        let output = command(segment)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("spawn");
        times.push(started.elapsed().as_secs_f64());
        check(what, &output);
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let min = times.iter().copied().fold(f64::MAX, f64::min);
    let max = times.iter().copied().fold(0.0, f64::max);
    (mean, min, max)
}

fn measure_wal_push(
    lab: &Lab,
    keys: &Keys,
    runs: u32,
    warm_up: &Path,
    segments: &[PathBuf],
) -> PushFigures {
    let load_before = load();
    let mut ours: Option<(f64, f64, f64)> = None;
    let mut theirs: Option<(f64, f64, f64)> = None;
    let mut ours_stored = 0;
    let mut theirs_stored = 0;
    for round in 1..=runs {
        // ecobackup: a fresh repository whose cluster identity the warm-up push records.
        let repo = server_dir(&lab.work.join(format!("walpush-eco-{round}")));
        let config = lab.write_config(&format!("walpush-{round}.toml"), &repo, keys);
        run(
            "ecobackup wal-push (warm-up)",
            lab.ecobackup(&config).arg("wal-push").arg(warm_up),
        );
        let before = dir_size(&repo);
        let figure = push_each("ecobackup wal-push", segments, |segment| {
            let mut c = lab.ecobackup(&config);
            c.arg("wal-push").arg(segment);
            c
        });
        ours_stored = dir_size(&repo) - before;
        eprintln!(
            "  ecobackup wal-push round {round}: mean {:.0} ms (min {:.0}, max {:.0}; load {:.2})",
            figure.0 * 1e3,
            figure.1 * 1e3,
            figure.2 * 1e3,
            load()
        );
        if ours.is_none_or(|best| figure.0 < best.0) {
            ours = Some(figure);
        }

        // pgBackRest: a fresh repository for the same stanza (archive-push does not re-send a
        // segment its archive already holds), set up by stanza-create and the same warm-up.
        let repo = server_dir(&lab.work.join(format!("walpush-pgbr-{round}")));
        run(
            "pgbackrest stanza-create",
            lab.pgbackrest(Some(&repo)).arg("stanza-create"),
        );
        run(
            "pgbackrest archive-push (warm-up)",
            lab.pgbackrest(Some(&repo)).arg("archive-push").arg(warm_up),
        );
        let before = dir_size(&repo);
        let figure = push_each("pgbackrest archive-push", segments, |segment| {
            let mut c = lab.pgbackrest(Some(&repo));
            c.arg("archive-push").arg(segment);
            c
        });
        theirs_stored = dir_size(&repo) - before;
        eprintln!(
            "  pgbackrest archive-push round {round}: mean {:.0} ms (min {:.0}, max {:.0}; load {:.2})",
            figure.0 * 1e3,
            figure.1 * 1e3,
            figure.2 * 1e3,
            load()
        );
        if theirs.is_none_or(|best| figure.0 < best.0) {
            theirs = Some(figure);
        }
    }
    let load_after = load();
    let figure = |f: (f64, f64, f64)| Figure {
        best: Duration::from_secs_f64(f.0),
        load_before,
        load_after,
    };
    let (ours, theirs) = (ours.expect("a round"), theirs.expect("a round"));
    PushFigures {
        ecobackup: figure(ours),
        ecobackup_spread: (ours.1, ours.2),
        ecobackup_stored: ours_stored,
        pgbackrest: figure(theirs),
        pgbackrest_spread: (theirs.1, theirs.2),
        pgbackrest_stored: theirs_stored,
    }
}

#[tokio::main]
async fn main() {
    let options = options();
    let work_dir = tempfile::Builder::new()
        .prefix("ecobackup-e2e-physical-")
        .tempdir()
        .expect("temp dir");
    let work = work_dir.path().to_owned();
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    give_to_server_user(&work);

    // Keys: an age identity (its recipient encrypts) and a signing key, as a backup host has.
    let identity = work.join("restore.key");
    let recipient = run(
        "key generate",
        as_postgres(&options.ecobackup, &work)
            .args(["key", "generate", "--out"])
            .arg(&identity),
    )
    .trim()
    .to_owned();
    let signing = work.join("signing.key");
    run(
        "key generate --signing",
        as_postgres(&options.ecobackup, &work)
            .args(["key", "generate", "--signing", "--out"])
            .arg(&signing),
    );
    let signer = std::fs::read_to_string(&signing)
        .expect("signing key")
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("public key line")
        .to_owned();
    let keys = Keys {
        identity,
        signing,
        signer,
    };
    let segs = server_dir(&work.join("segments"));
    let mut lab = Lab {
        work: work.clone(),
        ecobackup: options.ecobackup.clone(),
        config: PathBuf::new(),
        pgbackrest_conf: work.join("pgbackrest.conf"),
        recipient,
    };
    let repo = server_dir(&work.join("repo"));
    lab.config = lab.write_config("ecobackup.toml", &repo, &keys);

    // While loading, the archive_command also copies each segment out: real segments of the
    // shop's rows and indexes for the wal-push comparison.
    let loading_archive_command = format!(
        "{} && cp %p {}/%f",
        lab.wal_push_command(),
        shell_word(&segs.to_string_lossy())
    );
    eprintln!(
        "starting a cluster (archiving into {}) and loading the demo shop at scale {}",
        repo.display(),
        options.scale
    );
    let cluster = Cluster::start(ClusterOptions {
        bin_dir: Some(options.pg_bin.clone()),
        fsync: false,
        conf: vec![
            "wal_level = replica".into(),
            "archive_mode = on".into(),
            format!(
                "archive_command = {}",
                conf_string(&loading_archive_command)
            ),
        ],
        ..ClusterOptions::default()
    })
    .await
    .expect("cluster");
    let server = cluster.url("postgres");
    cluster
        .create_database("shop")
        .await
        .expect("create database");
    let shop = cluster.url("shop");
    let started = Instant::now();
    load_shop(&connect(&shop).await.expect("connect"), options.scale)
        .await
        .expect("load");
    let db_size: u64 = sql(&shop, "SELECT pg_database_size('shop')")
        .await
        .parse()
        .expect("size");
    let cluster_size: u64 = sql(
        &server,
        "SELECT sum(pg_database_size(datname)) FROM pg_database",
    )
    .await
    .parse()
    .expect("size");
    eprintln!(
        "loaded {} (cluster {}) in {:.1} s",
        mb(db_size),
        mb(cluster_size),
        started.elapsed().as_secs_f64()
    );
    sql(&server, "SELECT pg_switch_wal()").await;
    wait_archive_idle(&server).await;

    // pgBackRest: its repository and stanza on the same cluster, run as the server's user.
    let pgbr_repo = server_dir(&work.join("pgbackrest-repo"));
    let pgbr_logs = server_dir(&work.join("pgbackrest-log"));
    std::fs::write(
        &lab.pgbackrest_conf,
        format!(
            "[global]\n\
             repo1-path={}\n\
             repo1-type=posix\n\
             repo1-cipher-type=aes-256-cbc\n\
             repo1-cipher-pass=correct-horse-battery-staple-0123456789\n\
             repo1-retention-full=100\n\
             compress-type=zst\n\
             compress-level=3\n\
             process-max=2\n\
             start-fast=y\n\
             archive-async=n\n\
             log-path={logs}\n\
             lock-path={logs}\n\
             spool-path={logs}\n\
             log-level-console=warn\n\n\
             [{STANZA}]\n\
             pg1-path={}\n\
             pg1-socket-path={}\n\
             pg1-port={}\n\
             pg1-user=postgres\n",
            pgbr_repo.display(),
            cluster.data_dir().display(),
            cluster.socket_dir().display(),
            cluster.port(),
            logs = pgbr_logs.display(),
        ),
    )
    .expect("pgbackrest.conf");
    std::fs::set_permissions(&lab.pgbackrest_conf, std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    give_to_server_user(&lab.pgbackrest_conf);
    run(
        "pgbackrest stanza-create",
        lab.pgbackrest(None).arg("stanza-create"),
    );

    // The segments for the wal-push comparison: 32 consecutive full segments of the load, and
    // the one before them for the warm-up push that sets each fresh repository up. More WAL
    // is written first if the load did not fill enough (small scales).
    let mut segments = full_segments(&segs);
    while segments.len() < SEGMENTS + 2 {
        // (In the postgres database: the shop stays the database the restores compare.)
        sql(
            &server,
            "CREATE TABLE IF NOT EXISTS wal_filler (id bigint, note text, payload jsonb); \
             INSERT INTO wal_filler SELECT g, md5(g::text), \
             jsonb_build_object('n', g, 'h', md5((g * 7)::text)) FROM generate_series(1, 500000) g",
        )
        .await;
        sql(&server, "SELECT pg_switch_wal()").await;
        wait_archive_idle(&server).await;
        segments = full_segments(&segs);
    }
    // The last one may be a switched, mostly empty segment: leave it out.
    let chosen = &segments[segments.len() - SEGMENTS - 2..segments.len() - 1];
    let (warm_up, pushed) = (chosen[0].clone(), chosen[1..].to_vec());
    eprintln!(
        "wal-push: {} segments of {} archived ({} … {}), one process each",
        pushed.len(),
        segments.len(),
        pushed[0].file_name().unwrap().to_string_lossy(),
        pushed[pushed.len() - 1]
            .file_name()
            .unwrap()
            .to_string_lossy()
    );
    let push = measure_wal_push(&lab, &keys, options.runs, &warm_up, &pushed);

    // Base backups, interleaved so that a drift of the machine's load touches all three.
    let ours_only = lab.wal_push_command();
    let chain = format!(
        "{} && {}",
        lab.archive_push_command(),
        lab.wal_push_command()
    );
    let stock_out = work.join("stock-base.tar.zst.age");
    let stock_script = format!(
        "set -euo pipefail\n\
         {pg_basebackup} -h {socket} -p {port} -U postgres -Ft -D - -X none --checkpoint=fast \
         | zstd -3 -T2 -q | age -r {recipient} > {out}\n",
        pg_basebackup = shell_word(&options.pg_bin.join("pg_basebackup").to_string_lossy()),
        socket = shell_word(&cluster.socket_dir().to_string_lossy()),
        port = cluster.port(),
        recipient = lab.recipient,
        out = shell_word(&stock_out.to_string_lossy()),
    );
    let mut ours = Runs::new("ecobackup backup physical");
    let mut theirs = Runs::new("pgbackrest backup --type=full");
    let mut stock = Runs::new("pg_basebackup | zstd | age");
    let mut ours_stored = 0;
    for _ in 0..options.runs {
        set_archive_command(&server, &ours_only).await;
        let report = ours.time({
            let mut c = lab.ecobackup(&lab.config);
            c.args(["--json", "backup", "physical", "--db", &server, "--pg-bin"])
                .arg(&options.pg_bin);
            c
        });
        let report: serde_json::Value = serde_json::from_str(&report).expect("json report");
        ours_stored = report["manifest"]["artifacts"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x["stored_size"].as_u64()).sum())
            .unwrap_or(0);

        set_archive_command(&server, &chain).await;
        theirs.time({
            let mut c = lab.pgbackrest(None);
            c.args(["--type=full", "backup"]);
            c
        });

        set_archive_command(&server, &ours_only).await;
        stock.time({
            let mut c = as_postgres("bash", &work);
            c.arg("-c").arg(&stock_script);
            c
        });
    }
    let (ours, theirs, stock) = (ours.done(), theirs.done(), stock.done());
    let info = run(
        "pgbackrest info",
        lab.pgbackrest(None).args(["info", "--output=json"]),
    );
    let info: serde_json::Value = serde_json::from_str(&info).expect("pgbackrest info json");
    let theirs_stored = info[0]["backup"]
        .as_array()
        .and_then(|b| b.last())
        .and_then(|b| b["info"]["repository"]["size"].as_u64())
        .unwrap_or(0);
    let stock_stored = std::fs::metadata(&stock_out).map(|m| m.len()).unwrap_or(0);

    // Restores.
    let restore_cluster = Cluster::start(ClusterOptions {
        bin_dir: Some(options.pg_bin.clone()),
        fsync: false,
        ..ClusterOptions::default()
    })
    .await
    .expect("restore cluster");
    let restore_server = restore_cluster.url("postgres");
    // The shop grants to this role; a logical backup of one database does not carry roles.
    sql(&restore_server, "CREATE ROLE shop_reader").await;
    run(
        "ecobackup backup logical",
        lab.ecobackup(&lab.config)
            .args(["-q", "backup", "logical", "--db", &shop, "--pg-bin"])
            .arg(&options.pg_bin),
    );
    let listing = run(
        "ecobackup list",
        lab.ecobackup(&lab.config)
            .args(["--json", "list", "--kind", "logical"]),
    );
    let listing: serde_json::Value = serde_json::from_str(&listing).expect("list json");
    let logical_id = listing
        .as_array()
        .and_then(|a| a.last())
        .and_then(|m| m["id"].as_str())
        .expect("a logical backup")
        .to_owned();
    let dump = work.join("shop.dump");
    run(
        "pg_dump -Fc",
        as_postgres(options.pg_bin.join("pg_dump"), &work)
            .args(["-Fc", "-f"])
            .arg(&dump)
            .arg(format!("--dbname={shop}")),
    );

    eprintln!("restore physical latest --target-immediate --start");
    let mut physical = Runs::new("ecobackup restore physical");
    let mut physical_report = String::new();
    for run_number in 1..=options.runs {
        let pgdata = server_dir(&work.join(format!("restored-{run_number}")));
        let socket = server_dir(&work.join(format!("restored-{run_number}-socket")));
        let report = physical.time({
            let mut c = lab.ecobackup(&lab.config);
            c.args([
                "restore",
                "physical",
                "latest",
                "--target-immediate",
                "--start",
            ])
            .arg("--pgdata")
            .arg(&pgdata)
            .arg("--pg-bin")
            .arg(&options.pg_bin)
            .args(["--set", &format!("port={}", free_port())])
            .args([
                "--set",
                &format!("unix_socket_directories={}", socket.display()),
            ])
            .args(["--set", "listen_addresses="]);
            c
        });
        if physical_report.is_empty() {
            physical_report = report;
        }
        // Stopping the promoted server and removing it are not part of the figure.
        run(
            "pg_ctl stop",
            as_postgres(options.pg_bin.join("pg_ctl"), &work)
                .arg("-D")
                .arg(&pgdata)
                .args(["-m", "fast", "-w", "stop"])
                .stdout(Stdio::null()),
        );
        std::fs::remove_dir_all(&pgdata).expect("remove restored pgdata");
    }
    let physical = physical.done();

    // Logical restores into the second cluster, each into a new database dropped afterwards.
    let mut database_number = 0;
    let mut next_database = || {
        database_number += 1;
        format!("restored_{database_number}")
    };
    let drop_database = |name: String| {
        let server = restore_server.clone();
        async move {
            sql(&server, &format!("DROP DATABASE {name}")).await;
            sql(&server, "CHECKPOINT").await;
        }
    };
    let logical_variants: [(&str, Option<&str>, u32); 5] = [
        ("ecobackup restore logical", None, 1),
        (
            "ecobackup restore logical, PGOPTIONS maintenance_work_mem=512MB",
            Some("-c maintenance_work_mem=512MB"),
            1,
        ),
        (
            "ecobackup restore logical, PGOPTIONS maintenance_work_mem=512MB max_parallel_maintenance_workers=2",
            Some("-c maintenance_work_mem=512MB -c max_parallel_maintenance_workers=2"),
            1,
        ),
        (
            "ecobackup restore logical, PGOPTIONS maintenance_work_mem=1GB max_parallel_maintenance_workers=4",
            Some("-c maintenance_work_mem=1GB -c max_parallel_maintenance_workers=4"),
            1,
        ),
        ("ecobackup restore logical --jobs 2", None, 2),
    ];
    let mut logical: Vec<(String, Figure)> = Vec::new();
    for (what, pgoptions, jobs) in logical_variants {
        eprintln!("{what}");
        let mut runs = Runs::new(what);
        for _ in 0..options.runs {
            let name = next_database();
            runs.time({
                let mut c = lab.ecobackup(&lab.config);
                c.args(["-q", "restore", "logical", &logical_id, "--create"])
                    .args(["--jobs", &jobs.to_string()])
                    .args(["--db", &restore_cluster.url(&name)])
                    .arg("--pg-bin")
                    .arg(&options.pg_bin);
                if let Some(pgoptions) = pgoptions {
                    c.env("PGOPTIONS", pgoptions);
                }
                c
            });
            drop_database(name).await;
        }
        logical.push((what.to_owned(), runs.done()));
    }

    let pg_restore_variants: [(&str, Option<&str>); 2] = [
        ("pg_restore of a local pg_dump -Fc file", None),
        (
            "pg_restore of a local pg_dump -Fc file, PGOPTIONS maintenance_work_mem=512MB",
            Some("-c maintenance_work_mem=512MB"),
        ),
    ];
    for (what, pgoptions) in pg_restore_variants {
        eprintln!("{what}");
        let mut runs = Runs::new(what);
        for _ in 0..options.runs {
            let name = next_database();
            sql(&restore_server, &format!("CREATE DATABASE {name}")).await;
            runs.time({
                let mut c = as_postgres(options.pg_bin.join("pg_restore"), &work);
                c.args([
                    "--no-owner",
                    "--exit-on-error",
                    "--no-password",
                    "--single-transaction",
                ])
                .arg(format!("--dbname={}", restore_cluster.url(&name)))
                .arg(&dump);
                if let Some(pgoptions) = pgoptions {
                    c.env("PGOPTIONS", pgoptions);
                }
                c
            });
            drop_database(name).await;
        }
        logical.push((what.to_owned(), runs.done()));
    }

    // The report: markdown tables for docs/BENCHMARKS.md.
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\ndatabase: demo shop at scale {} — shop {} (pg_database_size), whole cluster {}; {} runs each, best kept",
        options.scale,
        mb(db_size),
        mb(cluster_size),
        options.runs
    );
    let _ = writeln!(
        out,
        "\n| base backup of the cluster | best | stored | load avg before → after |"
    );
    let _ = writeln!(out, "|---|---:|---:|---|");
    for (name, figure, stored) in [
        (
            "`ecobackup backup physical` (zstd 3, age, signed; waits for its stop segment)",
            ours,
            ours_stored,
        ),
        (
            "`pgbackrest backup --type=full` (zst 3, aes-256-cbc, process-max 2)",
            theirs,
            theirs_stored,
        ),
        (
            "`pg_basebackup -Ft -D - -X none \\| zstd -3 -T2 \\| age`",
            stock,
            stock_stored,
        ),
    ] {
        let _ = writeln!(
            out,
            "| {name} | {:.2} s | {} | {} |",
            figure.secs(),
            mb(stored),
            figure.load()
        );
    }
    let _ = writeln!(
        out,
        "\n| wal-push, {} segments of {} MiB, one process each | mean per segment | min … max | stored ({} MiB raw) | load avg before → after |",
        SEGMENTS,
        SEGMENT_SIZE >> 20,
        SEGMENTS as u64 * (SEGMENT_SIZE >> 20)
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---|");
    for (name, figure, spread, stored) in [
        (
            "`ecobackup wal-push` (file://, zstd 3, age, signed)",
            push.ecobackup,
            push.ecobackup_spread,
            push.ecobackup_stored,
        ),
        (
            "`pgbackrest archive-push` (posix, zst 3, aes-256-cbc, async off)",
            push.pgbackrest,
            push.pgbackrest_spread,
            push.pgbackrest_stored,
        ),
    ] {
        let _ = writeln!(
            out,
            "| {name} | {:.0} ms | {:.0} … {:.0} ms | {} | {} |",
            figure.secs() * 1e3,
            spread.0 * 1e3,
            spread.1 * 1e3,
            mb(stored),
            figure.load()
        );
    }
    let _ = writeln!(out, "\n| restore | best | load avg before → after |");
    let _ = writeln!(out, "|---|---:|---|");
    let _ = writeln!(
        out,
        "| `ecobackup restore physical latest --target-immediate --start` | {:.2} s | {} |",
        physical.secs(),
        physical.load()
    );
    for (name, figure) in &logical {
        let _ = writeln!(
            out,
            "| {name} | {:.2} s | {} |",
            figure.secs(),
            figure.load()
        );
    }
    let logical_default = logical[0].1.secs();
    let _ = writeln!(
        out,
        "\nbackup: ecobackup / pgBackRest {:.2} (goal < 1); wal-push: ecobackup / pgBackRest {:.2} (goal < 0.5); restore: physical / logical {:.2} (goal ≤ 0.25)",
        ours.secs() / theirs.secs(),
        push.ecobackup.secs() / push.pgbackrest.secs(),
        physical.secs() / logical_default
    );
    let _ = writeln!(
        out,
        "\nrestore physical's report (first run):\n{physical_report}"
    );
    println!("{out}");
    drop(restore_cluster);
    drop(cluster);
}

/// The segment files (24 hexadecimal digits) in `dir`, in order.
fn full_segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read segments")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                n.len() == 24 && n.to_string_lossy().bytes().all(|b| b.is_ascii_hexdigit())
            }) && std::fs::metadata(p).is_ok_and(|m| m.len() == SEGMENT_SIZE)
        })
        .collect();
    found.sort();
    found
}
