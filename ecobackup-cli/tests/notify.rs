//! `[notify]` and `--prometheus` through the binary: the healthchecks-style pings and the JSON
//! webhook of the long-running commands, against a local recording server, and the textfile a
//! job leaves behind.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use common::{ecobackup, key, one_error_line};
use ecobackup_core::crypto::Signer;
use ecobackup_core::repository::{BackupKind, Repository};
use ecobackup_core::storage::{RepoUrl, Storage, StorageOptions};
use ecobackup_testkit::catalog::synthetic_backup;
use ecobackup_testkit::http_recorder::{Answer, HttpRecorder, HttpRequest};
use ecobackup_testkit::ClosedPort;

/// A file repository (unsigned: the commands run with `--allow-unsigned`) with `backups` daily
/// synthetic logical backups, and the recording server.
struct World {
    runtime: tokio::runtime::Runtime,
    server: HttpRecorder,
    dir: tempfile::TempDir,
}

impl World {
    fn new(answer: Answer, backups: u32) -> World {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let server = runtime.block_on(HttpRecorder::start(answer));
        let dir = tempfile::tempdir().unwrap();
        let world = World {
            runtime,
            server,
            dir,
        };
        world.run(&["init"]).assert().success();
        let storage = Storage::open(
            &RepoUrl::File(world.dir.path().join("repo")),
            &StorageOptions::default(),
        )
        .unwrap();
        world.runtime.block_on(async {
            let repo = Repository::open(storage).await.unwrap();
            for n in 1..=backups {
                let finished = Utc.with_ymd_and_hms(2026, 10, n, 4, 0, 0).unwrap();
                synthetic_backup(&repo, BackupKind::Logical, finished, None).await;
            }
        });
        world
    }

    /// Writes `ecobackup.toml` with a retention policy and `notify` as its `[notify]` table.
    fn configure(&self, notify: &str) -> PathBuf {
        let path = self.dir.path().join("ecobackup.toml");
        std::fs::write(
            &path,
            format!("[retention]\nkeep_last = 2\n\n[notify]\n{notify}\n"),
        )
        .unwrap();
        path
    }

    /// `[notify]` pinging `/ping/abc` and posting to `/hook` on this world's server.
    fn notify_here(&self, extra: &str) -> String {
        format!(
            "ping_url = \"{}\"\nwebhook_url = \"{}\"\n{extra}",
            self.server.url("/ping/abc"),
            self.server.url("/hook")
        )
    }

    fn run(&self, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = ecobackup(self.dir.path());
        let repo = format!("file://{}", self.dir.path().join("repo").display());
        cmd.args(["--repo", &repo]);
        if self.dir.path().join("ecobackup.toml").exists() {
            cmd.args(["--config", "ecobackup.toml"]);
        }
        cmd.args(args);
        cmd
    }

    fn requests(&self) -> Vec<HttpRequest> {
        self.server.requests()
    }
}

fn paths(requests: &[HttpRequest]) -> Vec<(&str, &str)> {
    requests
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect()
}

/// `verify` of `latest` in a repository without backups fails (exit 1): `/start`, then `/fail`
/// with the error line as the body, and the webhook's JSON event.
#[test]
fn a_failing_job_pings_start_and_fail_and_posts_the_event() {
    let world = World::new(Answer::Ok, 0);
    let out = world.run(&["verify", "--allow-unsigned"]).assert().code(1);
    let baseline = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(world.requests().is_empty());

    world.configure(&world.notify_here(""));
    let out = world.run(&["verify", "--allow-unsigned"]).assert().code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert_eq!(stderr, baseline, "notifications changed the output");
    let error = baseline
        .lines()
        .last()
        .unwrap()
        .strip_prefix("error: ")
        .unwrap();
    assert!(error.contains("no backup latest"), "{error}");

    let requests = world.requests();
    let mut seen = paths(&requests);
    // The fail ping and the webhook go out together.
    seen[1..].sort();
    assert_eq!(
        seen,
        [
            ("POST", "/ping/abc/start"),
            ("POST", "/hook"),
            ("POST", "/ping/abc/fail")
        ]
    );
    assert_eq!(requests[0].body, "");
    let fail = requests
        .iter()
        .find(|r| r.path == "/ping/abc/fail")
        .unwrap();
    assert_eq!(fail.body, error);
    assert!(fail.content_type.starts_with("text/plain"), "{fail:?}");

    let hook = requests.iter().find(|r| r.path == "/hook").unwrap();
    assert_eq!(hook.content_type, "application/json");
    let event: serde_json::Value = serde_json::from_str(&hook.body).unwrap();
    let host = event["host"].as_str().unwrap();
    assert!(!host.is_empty(), "{event}");
    assert_eq!(
        event["text"].as_str().unwrap(),
        format!("ecobackup verify failed on {host}: {error}")
    );
    assert_eq!(event["command"], "verify", "{event}");
    assert_eq!(event["ok"], false, "{event}");
    assert_eq!(event["error"], error, "{event}");
    assert!(event.get("backup_id").is_none(), "{event}");
    let finished = event["finished_at"].as_str().unwrap();
    chrono::DateTime::parse_from_rfc3339(finished).unwrap();
}

/// `prune --dry-run` succeeds: `/start`, then the success ping; the webhook only with
/// `webhook_on_success`.
#[test]
fn a_succeeding_job_pings_start_and_success() {
    let world = World::new(Answer::Ok, 3);
    world.configure(&world.notify_here(""));
    world
        .run(&["prune", "--dry-run", "--allow-unsigned"])
        .assert()
        .success();
    assert_eq!(
        paths(&world.requests()),
        [("POST", "/ping/abc/start"), ("POST", "/ping/abc")]
    );

    world.configure(&world.notify_here("webhook_on_success = true"));
    world
        .run(&["prune", "--dry-run", "--allow-unsigned"])
        .assert()
        .success();
    let requests = world.requests();
    let hook = requests.iter().find(|r| r.path == "/hook").unwrap();
    let event: serde_json::Value = serde_json::from_str(&hook.body).unwrap();
    assert_eq!(event["ok"], true, "{event}");
    assert_eq!(event["command"], "prune", "{event}");
    assert!(event["error"].is_null(), "{event}");
    let text = event["text"].as_str().unwrap();
    assert!(text.starts_with("ecobackup prune succeeded on "), "{text}");
}

/// An endpoint that reads the request and never answers costs at most its timeout (the start
/// ping runs during the job, the end ping and the webhook together), a warning, and nothing
/// else: same exit code, same last line.
#[test]
fn a_hanging_endpoint_costs_at_most_its_timeout() {
    let world = World::new(Answer::Hang, 0);
    world.configure(&world.notify_here("timeout_seconds = 2"));
    let started = Instant::now();
    let out = world
        .run(&["verify", "--allow-unsigned"])
        .timeout(Duration::from_secs(60))
        .assert()
        .code(1);
    let elapsed = started.elapsed();
    // Twice the timeout at most (a job shorter than it: start, then fail and webhook
    // together), plus a generous margin for a loaded machine; still under twice the default
    // timeout (10 s), which would mean the setting was ignored.
    assert!(elapsed < Duration::from_secs(2 * 2 + 12), "{elapsed:?}");
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("timed out"), "{stderr}");
    assert!(
        !stderr.contains("/ping/abc"),
        "the URL is a secret: {stderr}"
    );
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .starts_with("error: no backup latest"),
        "{stderr}"
    );
    assert_eq!(paths(&world.requests()).len(), 3, "{:?}", world.requests());
}

/// Nothing listening: a warning per request, the job's result untouched, both ways.
#[test]
fn a_refused_endpoint_changes_nothing() {
    let world = World::new(Answer::Ok, 3);
    let closed = ClosedPort::new();
    world.configure(&format!(
        "ping_url = \"{}\"\nwebhook_url = \"{}\"\nwebhook_on_success = true\n",
        closed.url("/ping/abc"),
        closed.url("/hook")
    ));
    let out = world
        .run(&["prune", "--dry-run", "--allow-unsigned"])
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        stdout.contains("dry run: would delete 1 of 3 backups"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("could not send the ping"), "{stderr}");
    assert!(stderr.contains("could not send the webhook"), "{stderr}");
    assert!(
        !stderr.contains("127.0.0.1"),
        "the URL is a secret: {stderr}"
    );

    let out = world
        .run(&["-q", "verify", "--allow-unsigned", "nonexistent"])
        .assert()
        .code(1);
    one_error_line(&out.get_output().stderr);
}

/// wal-push runs once per WAL segment: it never pings.
#[test]
fn wal_push_never_pings() {
    let world = World::new(Answer::Ok, 0);
    world.configure(&world.notify_here("webhook_on_success = true"));
    world
        .run(&[
            "wal-push",
            "--no-encryption",
            "--no-signing",
            "pg_wal/000000010000000000000001",
        ])
        .assert()
        .failure();
    assert!(world.requests().is_empty(), "{:?}", world.requests());
}

/// `--prometheus` after a job writes the textfile `status --prometheus` writes, whatever the
/// job's result; a textfile that cannot be written is a warning.
#[test]
fn prometheus_after_a_job_writes_the_status_textfile() {
    let world = World::new(Answer::Ok, 3);
    world.configure("");
    world
        .run(&[
            "prune",
            "--dry-run",
            "--allow-unsigned",
            "--prometheus",
            "after-prune.prom",
        ])
        .assert()
        .success();
    world
        .run(&["status", "--allow-unsigned", "--prometheus", "status.prom"])
        .assert()
        .success();
    let text = std::fs::read_to_string(world.dir.path().join("after-prune.prom")).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let value = |name: &str| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name)
            .map(|s| s.value.clone())
    };
    // The dry run deleted nothing: the three backups are counted.
    assert!(
        matches!(value("ecobackup_backups"), Some(prometheus_parse::Value::Gauge(n)) if n == 3.0),
        "{text}"
    );
    assert!(
        value("ecobackup_last_success_timestamp_seconds").is_some(),
        "{text}"
    );
    let status = std::fs::read_to_string(world.dir.path().join("status.prom")).unwrap();
    let names = |t: &str| {
        t.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split([' ', '{']).next().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&text), names(&status));

    // A failing job still writes it.
    std::fs::remove_file(world.dir.path().join("after-prune.prom")).unwrap();
    world
        .run(&[
            "verify",
            "--allow-unsigned",
            "nonexistent",
            "--prometheus",
            "after-prune.prom",
        ])
        .assert()
        .code(1);
    assert!(world.dir.path().join("after-prune.prom").exists());

    let out = world
        .run(&[
            "prune",
            "--dry-run",
            "--allow-unsigned",
            "--prometheus",
            "no/such/dir/x.prom",
        ])
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("could not write the Prometheus textfile"),
        "{stderr}"
    );
}

/// A backup host with a signing key but no `trusted_signers` (the usual case): a backup that
/// cannot reach its server pings `/fail` with the connection error and posts the event, and
/// `--prometheus` still writes the textfile, trusting the host's own key.
#[test]
fn a_failed_backup_notifies_and_still_writes_the_textfile() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(HttpRecorder::start(Answer::Ok));
    let dir = tempfile::tempdir().unwrap();
    let (_, recipient) = key(dir.path(), "restore.key");
    let signer = Signer::generate();
    signer
        .write_file(&dir.path().join("signing.key"), false)
        .unwrap();
    std::fs::write(
        dir.path().join("ecobackup.toml"),
        format!(
            "[repository]\nurl = \"file://{}/repo\"\n\n[encryption]\nrecipients = [\"{recipient}\"]\n\
             signing_key_file = \"signing.key\"\n\n[notify]\nping_url = \"{}\"\nwebhook_url = \"{}\"\n",
            dir.path().display(),
            server.url("/ping/abc"),
            server.url("/hook")
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut cmd = ecobackup(dir.path());
        cmd.args(["--config", "ecobackup.toml"]).args(args);
        cmd
    };
    run(&["init"])
        .env("ECOBACKUP_SIGNING_KEY_FILE", "signing.key")
        .assert()
        .success();
    let storage = Storage::open(
        &RepoUrl::File(dir.path().join("repo")),
        &StorageOptions::default(),
    )
    .unwrap();
    runtime.block_on(async {
        let repo = Repository::open(storage)
            .await
            .unwrap()
            .with_signer(Arc::new(signer));
        for n in 1..=2 {
            let finished = Utc.with_ymd_and_hms(2026, 10, n, 4, 0, 0).unwrap();
            synthetic_backup(&repo, BackupKind::Logical, finished, None).await;
        }
    });
    // Nothing listens on port 1.
    let out = run(&[
        "backup",
        "logical",
        "--db",
        "postgres://backup@127.0.0.1:1/shop",
        "--prometheus",
        "ecobackup.prom",
    ])
    .assert()
    .code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let error = stderr
        .lines()
        .last()
        .unwrap()
        .strip_prefix("error: ")
        .unwrap();
    assert!(error.contains("connecting to"), "{stderr}");
    assert!(!stderr.contains("could not write"), "{stderr}");

    let requests = server.requests();
    let fail = requests
        .iter()
        .find(|r| r.path == "/ping/abc/fail")
        .unwrap();
    assert_eq!(fail.body, error);
    assert_eq!(requests[0].path, "/ping/abc/start");
    let hook = requests.iter().find(|r| r.path == "/hook").unwrap();
    let event: serde_json::Value = serde_json::from_str(&hook.body).unwrap();
    assert_eq!(event["command"], "backup logical", "{event}");
    assert!(
        event["text"]
            .as_str()
            .unwrap()
            .starts_with("ecobackup backup logical failed on "),
        "{event}"
    );

    let text = std::fs::read_to_string(dir.path().join("ecobackup.prom")).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let backups = scrape
        .samples
        .iter()
        .find(|s| s.metric == "ecobackup_backups")
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(backups.value, prometheus_parse::Value::Gauge(2.0), "{text}");
}
