//! `ecobackup status` and `ecobackup check` through the binary, on an S3 repository of signed
//! synthetic backups: what they print, the plugin exit codes and performance data, the
//! Prometheus textfile, and the UNKNOWN of a repository that cannot be read.
//!
//! The binary reads the real clock, so thresholds here sit a minute or more away from the
//! values (a run takes seconds); the exact boundaries (at the threshold OK, one second past it
//! firing) are `ecobackup-core`'s `monitor::tests`.

mod common;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use common::signed_s3::SignedS3;
use common::{ecobackup, one_error_line};
use ecobackup_core::artifact::Sealing;
use ecobackup_core::crypto::generate_identity;
use ecobackup_core::drill::{store_report, DrillReport, RtoParts};
use ecobackup_core::repository::BackupKind;
use ecobackup_testkit::catalog::synthetic_logical_backup;
use ecobackup_testkit::{Fault, FaultRule};

/// [`SignedS3`] with `check` in its configuration.
struct World {
    inner: SignedS3,
    /// When the world was made: the backups' ages are measured from here.
    now: DateTime<Utc>,
}

impl std::ops::Deref for World {
    type Target = SignedS3;
    fn deref(&self) -> &SignedS3 {
        &self.inner
    }
}

impl World {
    fn new(check: &str) -> World {
        World {
            inner: SignedS3::new(check),
            now: Utc::now(),
        }
    }

    /// The seeds' thresholds in `[check]`, and: three backups of `shop` (the newest an hour
    /// old, 2 minutes long, 5000 bytes), one of `crm` (two hours old), WAL on timeline 1 and a
    /// drill that passed two days ago.
    fn seeded() -> World {
        let world = World::new(SEEDS);
        world.backup(&["shop"], Duration::hours(50), Duration::minutes(3), 6_000);
        world.backup(&["shop"], Duration::hours(25), Duration::minutes(2), 5_500);
        world.backup(&["shop"], Duration::hours(1), Duration::minutes(2), 5_000);
        world.backup(&["crm"], Duration::hours(2), Duration::minutes(1), 3_000);
        world.runtime.block_on(async {
            for name in ["000000010000000000000002", "000000010000000000000003"] {
                world
                    .repo
                    .storage()
                    .put(&format!("wal/00000001/{name}.zst.age"), vec![1u8; 64])
                    .await
                    .unwrap();
            }
        });
        world.drill(Duration::days(2), true);
        world
    }

    fn backup(&self, databases: &[&str], age: Duration, took: Duration, bytes: u64) {
        self.runtime.block_on(synthetic_logical_backup(
            &self.repo,
            databases,
            self.now - age,
            took,
            bytes,
        ));
    }

    /// Stores the report of a drill that started `age` ago, as `ecobackup drill` does.
    fn drill(&self, age: Duration, passed: bool) {
        let started_at = self.now - age;
        let report = DrillReport {
            passed,
            backup_id: "20261001T040000Z-logical-aaaaaa".into(),
            kind: BackupKind::Logical,
            backup_finished_at: started_at,
            backup_age_seconds: 60.0,
            started_at,
            rto_seconds: 42.5,
            durable: true,
            rto: RtoParts::default(),
            target: "scratch".into(),
            databases: vec!["shop".into()],
            recovery: None,
            checks: vec![],
            error: (!passed).then(|| "pg_restore failed".into()),
        };
        let sealing = Sealing {
            level: 3,
            recipients: vec![generate_identity().1],
        };
        self.runtime
            .block_on(store_report(&self.repo, &report, &sealing))
            .unwrap();
    }

    fn run(&self, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = ecobackup(self.dir.path());
        cmd.args(["--config", self.config.to_str().unwrap()])
            .args(args);
        cmd
    }

    fn stdout(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args).assert().code(code);
        String::from_utf8_lossy(&out.get_output().stdout).into_owned()
    }
}

const SEEDS: &str = "[check]\nmax_age = \"26h\"\nmin_size = \"1KB\"\nmax_duration = \"1h\"\n\
                     max_drill_age = \"35d\"\nmax_wal_lag = \"10m\"\n";

/// One value of plugin performance data.
#[derive(Debug, PartialEq)]
struct Perf {
    value: f64,
    unit: String,
    warn: String,
    crit: String,
    min: String,
}

/// Parses the performance data of a plugin's first line (after `|`), by the Nagios plugin
/// guidelines: space-separated `'label'=value[UOM];[warn];[crit];[min];[max]`, labels quoted
/// when they hold spaces, a quote inside written twice.
fn perfdata(first_line: &str) -> BTreeMap<String, Perf> {
    let (_, data) = first_line
        .split_once(" | ")
        .expect("performance data after |");
    let mut out = BTreeMap::new();
    let mut rest = data.trim();
    while !rest.is_empty() {
        let (label, after) = if let Some(quoted) = rest.strip_prefix('\'') {
            let mut label = String::new();
            let mut chars = quoted.char_indices().peekable();
            let end = loop {
                let (i, c) = chars.next().expect("closing quote");
                if c == '\'' {
                    if quoted[i + 1..].starts_with('\'') {
                        label.push('\'');
                        chars.next();
                        continue;
                    }
                    break i + 1;
                }
                label.push(c);
            };
            (label, &quoted[end..])
        } else {
            let eq = rest.find('=').expect("label=");
            (rest[..eq].to_owned(), &rest[eq..])
        };
        let after = after.strip_prefix('=').expect("= after the label");
        let end = after.find(' ').unwrap_or(after.len());
        let fields: Vec<&str> = after[..end].split(';').collect();
        assert!((1..=5).contains(&fields.len()), "{after}");
        let number_end = fields[0]
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
            .unwrap_or(fields[0].len());
        let unit = &fields[0][number_end..];
        assert!(
            ["", "s", "B", "%", "KB", "MB", "TB", "c"].contains(&unit),
            "{unit}"
        );
        let field = |i: usize| fields.get(i).copied().unwrap_or("").to_owned();
        out.insert(
            label,
            Perf {
                value: fields[0][..number_end].parse().expect("a number"),
                unit: unit.to_owned(),
                warn: field(1),
                crit: field(2),
                min: field(3),
            },
        );
        rest = after[end..].trim_start();
    }
    out
}

#[test]
fn status_shows_each_group_the_wal_and_the_last_drill() {
    let world = World::seeded();
    let out = world.run(&["--json", "status"]).assert().success();
    let status: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let backups = status["backups"].as_array().unwrap();
    let groups: Vec<(&str, &str, u64)> = backups
        .iter()
        .map(|g| {
            (
                g["kind"].as_str().unwrap(),
                g["group"].as_str().unwrap(),
                g["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(groups, [("logical", "crm", 1), ("logical", "shop", 3)]);
    let shop = &backups[1]["last"];
    assert_eq!(shop["stored_bytes"], 5_000);
    assert_eq!(shop["duration_seconds"], 120);
    let age = shop["age_seconds"].as_i64().unwrap();
    assert!((3_600..3_700).contains(&age), "{age}");
    assert_eq!(status["wal"][0]["timeline"], 1);
    assert_eq!(status["wal"][0]["newest"], "000000010000000000000003");
    assert_eq!(status["wal"][0]["segments"], 2);
    assert_eq!(status["drills"]["count"], 1);
    assert_eq!(status["drills"]["last"]["passed"], true);
    assert_eq!(status["drills"]["last"]["rto_seconds"], 42.5);
    assert!(status["objects"].as_u64().unwrap() > 10, "{status}");
    assert!(status["bytes"].as_u64().unwrap() > 24_500, "{status}");

    let text = world.stdout(&["status"], 0);
    assert!(text.contains("logical   shop"), "{text}");
    assert!(
        text.contains("WAL timeline 1: 2 segments, newest 000000010000000000000003"),
        "{text}"
    );
    assert!(text.contains("drill: last PASSED"), "{text}");
}

#[test]
fn the_prometheus_textfile_parses_and_is_replaced_whole() {
    let world = World::seeded();
    let dir = world.dir.path().join("textfiles");
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("ecobackup.prom");
    std::fs::write(&path, "stale").unwrap();
    world
        .run(&["-q", "status", "--prometheus", path.to_str().unwrap()])
        .assert()
        .success()
        .stdout("");
    let text = std::fs::read_to_string(&path).unwrap();
    // Nothing left beside it; readable by node-exporter's user.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["ecobackup.prom"]);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o644
    );

    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {name}{labels:?} in\n{text}"));
        match sample.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name} is {other:?}"),
        }
    };
    let shop = [("kind", "logical"), ("database", "shop")];
    assert_eq!(value("ecobackup_backup_size_bytes", &shop), 5_000.0);
    assert_eq!(value("ecobackup_backup_duration_seconds", &shop), 120.0);
    assert_eq!(value("ecobackup_backups", &shop), 3.0);
    let finished = value("ecobackup_last_success_timestamp_seconds", &shop);
    let expected = (world.now - Duration::hours(1)).timestamp_millis() as f64 / 1000.0;
    assert!((finished - expected).abs() < 0.01, "{finished} {expected}");
    assert_eq!(value("ecobackup_drill_success", &[]), 1.0);
    assert_eq!(value("ecobackup_drill_rto_seconds", &[]), 42.5);
    let lag = value(
        "ecobackup_wal_archive_lag_seconds",
        &[("timeline", "00000001")],
    );
    assert!((0.0..60.0).contains(&lag), "{lag}");
    assert!(value("ecobackup_repository_bytes", &[]) > 24_500.0);
    // The exposition format's own rules: each family's HELP and TYPE once, before its samples.
    let mut typed = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(typed.insert(name.to_owned()), "{name} typed twice");
            assert_eq!(rest, format!("{name} gauge"));
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(typed.contains(name), "{name} sampled before its TYPE");
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{name}"
            );
        }
    }
}

#[test]
fn check_is_ok_with_the_seeds_and_its_performance_data_parses() {
    let world = World::seeded();
    let text = world.stdout(&["check"], 0);
    let first = text.lines().next().unwrap();
    assert!(first.starts_with("ECOBACKUP OK - "), "{text}");
    let perf = perfdata(first);
    assert_eq!(
        perf["size_logical_shop"],
        Perf {
            value: 5_000.0,
            unit: "B".into(),
            warn: String::new(),
            crit: "1000:".into(),
            min: "0".into()
        }
    );
    let age = &perf["age_logical_shop"];
    assert_eq!((age.unit.as_str(), age.warn.as_str()), ("s", "93600"));
    assert!((3_600.0..3_700.0).contains(&age.value), "{age:?}");
    assert_eq!(perf["duration_logical_crm"].value, 60.0);
    assert_eq!(perf["drill_age"].warn, "3024000");
    assert!(perf.contains_key("wal_lag"), "{perf:?}");
    // One line per finding after the first: 3 per group, the drill, the WAL.
    assert_eq!(text.lines().count(), 1 + 2 * 3 + 2, "{text}");
    assert!(
        text.lines().skip(1).all(|l| l.starts_with("OK: ")),
        "{text}"
    );
}

#[test]
fn each_threshold_fires_at_its_severity_and_flags_win_over_the_file() {
    let world = World::seeded();
    let first_line = |args: &[&str], code: i32| {
        let text = world.stdout(args, code);
        text.lines().next().unwrap().to_owned()
    };
    // Age (WARNING): shop's newest is an hour old, crm's two hours (plus the run's seconds).
    first_line(&["check", "--max-age", "2h2m"], 0);
    let line = first_line(&["check", "--max-age", "1h59m"], 1);
    assert!(
        line.starts_with("ECOBACKUP WARNING - logical crm: last backup"),
        "{line}"
    );
    assert!(line.contains("more than max_age 1h59m"), "{line}");
    assert!(!line.contains("more problems"), "{line}");
    let line = first_line(&["check", "--max-age", "59m"], 1);
    assert!(line.contains("(and 1 more problems)"), "{line}");

    // Size (CRITICAL): crm stores 3000 bytes: 3KB, and less than 3KiB.
    first_line(&["check", "--min-size", "3KB"], 0);
    first_line(&["check", "--min-size", "2KiB"], 0);
    let line = first_line(&["check", "--min-size", "3KiB"], 2);
    assert!(
        line.starts_with("ECOBACKUP CRITICAL - logical crm: last backup"),
        "{line}"
    );
    assert_eq!(perfdata(&line)["size_logical_crm"].crit, "3072:", "{line}");
    first_line(&["check", "--min-size", "3001B"], 2);

    // Duration (WARNING): shop's newest took exactly 2 minutes, from its manifest.
    first_line(&["check", "--max-duration", "2m"], 0);
    let line = first_line(&["check", "--max-duration", "119s"], 1);
    assert!(
        line.contains("logical shop: last backup") && line.contains("took 120s"),
        "{line}"
    );

    // Drill age (WARNING): the last drill passed two days ago.
    first_line(&["check", "--max-drill-age", "2d1m"], 0);
    let line = first_line(&["check", "--max-drill-age", "1d"], 1);
    assert!(line.contains("the last passed drill"), "{line}");

    // WAL lag (WARNING): the segments were archived seconds ago.
    first_line(&["check", "--max-wal-lag", "5m"], 0);
}

#[test]
fn a_failed_drill_and_a_missing_backup_are_reported() {
    let world = World::seeded();
    world.drill(Duration::hours(1), false);
    let text = world.stdout(&["check"], 1);
    assert!(
        text.starts_with("ECOBACKUP WARNING - drill: the last drill"),
        "{text}"
    );
    assert!(text.contains("failed"), "{text}");

    let out = world.run(&["--json", "check"]).assert().code(1);
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(json["status"], "WARNING");
    assert_eq!(json["exit_code"], 1);
    assert_eq!(json["thresholds"]["max_age"], "26h");
    let drill = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "drill")
        .unwrap();
    assert_eq!(drill["severity"], "WARNING");

    // An empty repository holds no backup: CRITICAL.
    let empty = World::new(SEEDS);
    let text = empty.stdout(&["check"], 2);
    assert!(text.starts_with("ECOBACKUP CRITICAL - "), "{text}");
    assert!(text.contains("holds no usable backup"), "{text}");
}

#[test]
fn what_keeps_the_check_from_running_is_unknown_not_critical() {
    let world = World::seeded();
    // The store fails every request.
    world
        .s3
        .add_fault(FaultRule::new(Fault::Status(503)).forever());
    let out = world.run(&["check"]).assert().code(3);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.starts_with("ECOBACKUP UNKNOWN - "), "{stdout}");
    let line = one_error_line(&out.get_output().stderr);
    assert!(!line.is_empty());
    let out = world.run(&["--json", "check"]).assert().code(3);
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(json["status"], "UNKNOWN");
    world.s3.clear_faults();

    // A bad flag (clap would exit 2, CRITICAL to a monitoring system).
    let stdout = world.stdout(&["check", "--max-age", "26x"], 3);
    assert!(stdout.starts_with("ECOBACKUP UNKNOWN - "), "{stdout}");
    assert!(stdout.contains("unknown unit 'x'"), "{stdout}");
    // No threshold at all: a check that checks nothing is not OK.
    let bare = World::new("");
    let stdout = bare.stdout(&["check"], 3);
    assert!(stdout.contains("no threshold"), "{stdout}");
    // Not a repository.
    let stdout = ecobackup(world.dir.path())
        .args([
            "--repo",
            "file:///nonexistent/repo",
            "check",
            "--max-age",
            "1h",
            "--allow-unsigned",
        ])
        .assert()
        .code(3)
        .get_output()
        .stdout
        .clone();
    assert!(String::from_utf8_lossy(&stdout).starts_with("ECOBACKUP UNKNOWN - "));
    // The same repository with the run-of-the-mill status command: its own codes.
    world.run(&["status", "--bogus"]).assert().code(2);
}

/// `--db` against a real server: its archiver is read. The test server does not archive
/// (`archive_mode = off`), which check reports as UNKNOWN (it cannot tell the lag) while the
/// repository's findings still count; status shows the server's answer.
#[test]
fn the_servers_archiver_is_read_with_db() {
    let world = World::seeded();
    let pg = world.runtime.block_on(ecobackup_testkit::TestPg::start());
    let url = pg.url("postgres");
    let out = world
        .run(&["--json", "status", "--db", &url])
        .assert()
        .success();
    let status: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let state = &status["server"]["state"];
    assert_eq!(state["archive_mode"], "off", "{status}");
    assert_eq!(state["in_recovery"], false, "{status}");
    assert_eq!(state["segment_size"], 16 << 20, "{status}");
    assert!(
        state["current_wal"]
            .as_str()
            .unwrap()
            .starts_with("00000001"),
        "{status}"
    );
    assert_eq!(status["server"]["waiting"]["state"], "unknown", "{status}");

    let text = world.stdout(&["check", "--max-wal-lag", "10m", "--db", &url], 3);
    assert!(text.starts_with("ECOBACKUP UNKNOWN - server: "), "{text}");
    assert!(text.contains("archive_mode = off"), "{text}");
    // A warning elsewhere outranks it.
    let text = world.stdout(&["check", "--max-age", "1m", "--db", &url], 1);
    assert!(text.starts_with("ECOBACKUP WARNING - "), "{text}");
}
