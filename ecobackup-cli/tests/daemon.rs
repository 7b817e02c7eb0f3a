//! `ecobackup daemon` through the binary, with schedules every second: jobs run on time and
//! notify as the plain commands do, a slow job is never overlapped, a failing job does not
//! stop the others, SIGHUP reloads (and a broken file keeps the old schedule), SIGTERM in the
//! middle of a backup leaves nothing behind, and `--once` runs one entry.
//!
//! The daemon writes its log as JSON (`--log-format json`); the tests read the job lines
//! (`job started`, `job finished`, `job skipped`) and assert counts and order, never exact
//! times.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::world::World;
use common::{ecobackup, ecobackup_std, one_error_line, s3_env};
use ecobackup_testkit::http_recorder::{Answer, HttpRecorder};
use ecobackup_testkit::{Fault, FaultRule, S3TestServer};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// How long a test waits for what should come within a few seconds.
const PATIENCE: Duration = Duration::from_secs(45);

/// A daemon running in the background, and the lines of its log.
struct Daemon {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// The thread reading the log; it ends at the end of the pipe.
    reader: std::thread::JoinHandle<()>,
}

impl Daemon {
    /// Starts `cmd` (`ecobackup … daemon`) with `--log-format json`, reading its stderr.
    fn start(mut cmd: std::process::Command) -> Daemon {
        cmd.args(["--log-format", "json"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
            }
        });
        Daemon {
            child,
            lines,
            reader,
        }
    }

    /// The log lines that are JSON events, in order.
    fn events(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Waits until `done` holds for the events; panics with the whole log otherwise.
    fn wait_for(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let events = self.events();
            if done(&events) {
                return events;
            }
            if started.elapsed() > PATIENCE {
                panic!("waited {PATIENCE:?} for {what}; the log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `happened` (outside the daemon: requests to the S3 server), failing after
    /// [`PATIENCE`] with the log.
    fn wait_until(&self, what: &str, happened: impl Fn() -> bool) {
        let started = Instant::now();
        while !happened() {
            if started.elapsed() > PATIENCE {
                panic!("waited {PATIENCE:?} for {what}; the log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The whole log, for a failure's message.
    fn log(&self) -> String {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        lines.join("\n")
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits for the process to end and for its last log line to be read (at most
    /// [`PATIENCE`]): the process may end before the reader has reached the end of the pipe.
    fn exit(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                if self.reader.is_finished() {
                    return status;
                }
            }
            if started.elapsed() > PATIENCE {
                panic!(
                    "the daemon did not exit, or a program it started still holds its log open; the log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM while `jobs` run and waits for the exit: the daemon exits 0, and each
    /// job ended once, cancelled on its token (the fallback that drops a job ignoring its
    /// token never ran). Returns the log.
    fn terminate_cancelling(&mut self, jobs: &[&str]) -> Vec<Value> {
        self.signal(Signal::SIGTERM);
        let status = self.exit();
        let events = self.events();
        assert!(status.success(), "{status:?}: {events:?}");
        for job in jobs {
            let end = named(&events, "job finished", Some(job));
            assert_eq!(end.len(), 1, "{events:?}");
            assert_eq!(end[0]["outcome"], "cancelled", "{}", end[0]);
        }
        assert!(
            !events
                .iter()
                .any(|e| e.to_string().contains("did not stop within")),
            "{events:?}"
        );
        events
    }
}

/// Makes every `method` request whose path holds `path_part` hang for longer than any test:
/// a job that sends one stays in the middle of it.
fn hang(s3: &S3TestServer, method: &str, path_part: &str) {
    s3.add_fault(
        FaultRule::new(Fault::Delay(Duration::from_secs(600)))
            .method(method)
            .path_contains(path_part)
            .forever(),
    );
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The events with this message (and, when given, for this job).
fn named<'a>(events: &'a [Value], message: &str, job: Option<&str>) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["message"] == message && job.is_none_or(|job| e["job"] == job))
        .collect()
}

/// The time `key` of the event `e` (`timestamp`, or a start's `due`: the cron time it runs for).
fn time(e: &Value, key: &str) -> chrono::DateTime<chrono::Utc> {
    e[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {e}"))
        .parse()
        .unwrap()
}

/// A file repository (unsigned: the jobs run with `--allow-unsigned`) and a recorder of pings.
struct Lab {
    /// Serves the recorder.
    _runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    pings: HttpRecorder,
}

impl Lab {
    fn new() -> Lab {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let pings = runtime.block_on(HttpRecorder::start(Answer::Ok));
        let lab = Lab {
            _runtime: runtime,
            dir: tempfile::tempdir().unwrap(),
            pings,
        };
        ecobackup(lab.dir.path())
            .args(["--repo", &lab.repo(), "init"])
            .assert()
            .success();
        lab
    }

    fn repo(&self) -> String {
        format!("file://{}", self.dir.path().join("repo").display())
    }

    /// Writes `ecobackup.toml`: the repository, a retention policy, `[check]`, and `schedules`.
    fn configure(&self, schedules: &str) -> PathBuf {
        let path = self.dir.path().join("ecobackup.toml");
        std::fs::write(
            &path,
            format!(
                "[repository]\nurl = \"{}\"\n\n[retention]\nkeep_last = 2\n\n[check]\nmax_age = \"26h\"\n\n{schedules}",
                self.repo()
            ),
        )
        .unwrap();
        path
    }

    fn daemon(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = ecobackup_std(self.dir.path());
        cmd.args(["--config", "ecobackup.toml", "daemon"])
            .args(args);
        cmd
    }

    fn ping_paths(&self) -> Vec<String> {
        self.pings.requests().into_iter().map(|r| r.path).collect()
    }
}

/// A prune that succeeds (a dry run of an empty repository) and a verify that fails (no
/// backup: its identity, which the daemon requires of a verify job, is never read), both every
/// second.
fn succeeding_and_failing(lab: &Lab) -> String {
    format!(
        r#"[[schedule]]
name = "prune"
cron = "* * * * * *"
job = "prune"
args = ["--dry-run", "--allow-unsigned"]
prometheus = "metrics/ecobackup.prom"
ping_url = "{}"

[[schedule]]
name = "verify"
cron = "* * * * * *"
timezone = "Europe/Berlin"
job = "verify"
args = ["--allow-unsigned", "--identity", "restore.key"]
ping_url = "{}"
"#,
        lab.pings.url("/ping/prune"),
        lab.pings.url("/ping/verify")
    )
}

#[test]
fn jobs_run_on_time_and_a_failing_job_does_not_stop_the_others() {
    let lab = Lab::new();
    lab.configure(&succeeding_and_failing(&lab));
    std::fs::create_dir(lab.dir.path().join("metrics")).unwrap();
    let mut daemon = Daemon::start(lab.daemon(&[]));
    let events = daemon.wait_for("three runs of each job", |events| {
        ["prune", "verify"]
            .iter()
            .all(|job| named(events, "job finished", Some(job)).len() >= 3)
    });
    daemon.signal(Signal::SIGTERM);
    assert!(daemon.exit().success());

    for end in named(&events, "job finished", Some("prune")) {
        assert_eq!(end["outcome"], "ok", "{end}");
        assert_eq!(end["exit_code"], 0, "{end}");
        assert_eq!(end["command"], "prune", "{end}");
    }
    for end in named(&events, "job finished", Some("verify")) {
        assert_eq!(end["outcome"], "failed", "{end}");
        assert_eq!(end["exit_code"], 1, "{end}");
        assert!(
            end["error"].as_str().unwrap().contains("no backup latest"),
            "{end}"
        );
    }
    // Once a second, not in bursts: at most one start per scheduled second, none before its
    // second, and each after the previous run ended. (Not how far apart the starts are: a
    // loaded machine wakes up late, and a late start is followed by one on time.)
    for job in ["prune", "verify"] {
        let lines: Vec<&Value> = events
            .iter()
            .filter(|e| e["job"] == job)
            .filter(|e| e["message"] == "job started" || e["message"] == "job finished")
            .collect();
        let starts = named(&events, "job started", Some(job));
        let dues: Vec<_> = starts.iter().map(|e| time(e, "due")).collect();
        for pair in dues.windows(2) {
            assert!(
                pair[0] < pair[1],
                "one start per scheduled second: {dues:?}"
            );
        }
        for start in &starts {
            assert!(time(start, "due") <= time(start, "timestamp"), "{start}");
            assert_eq!(time(start, "due").timestamp_subsec_nanos(), 0, "{start}");
        }
        for pair in lines.windows(2) {
            assert_ne!(pair[0]["message"], pair[1]["message"], "{lines:?}");
            assert!(
                time(pair[0], "timestamp") <= time(pair[1], "timestamp"),
                "{lines:?}"
            );
        }
        assert_eq!(lines[0]["message"], "job started");
    }
    // Each start and end line belongs to one run id.
    let runs: Vec<&str> = named(&events, "job started", None)
        .iter()
        .map(|e| e["run"].as_str().unwrap())
        .collect();
    for end in named(&events, "job finished", None) {
        assert!(runs.contains(&end["run"].as_str().unwrap()), "{end}");
    }
    // Pings as the plain commands send them, each job to its own URL; the textfile written.
    let pings = lab.ping_paths();
    for path in [
        "/ping/prune/start",
        "/ping/prune",
        "/ping/verify/start",
        "/ping/verify/fail",
    ] {
        assert!(pings.iter().any(|p| p == path), "{path} in {pings:?}");
    }
    assert!(!pings.iter().any(|p| p == "/ping/prune/fail"), "{pings:?}");
    let textfile = std::fs::read_to_string(lab.dir.path().join("metrics/ecobackup.prom")).unwrap();
    assert!(textfile.contains("ecobackup_"), "{textfile}");
    let last = daemon.events();
    assert_eq!(last.last().unwrap()["message"], "daemon stopped");
}

#[test]
fn a_slow_job_is_never_overlapped() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let s3 = runtime.block_on(S3TestServer::start());
    let dir = tempfile::tempdir().unwrap();
    let env = s3_env(&s3, format!("s3://{}/prod", s3.bucket()));
    ecobackup(dir.path())
        .envs(env.clone())
        .arg("init")
        .assert()
        .success();
    std::fs::write(
        dir.path().join("ecobackup.toml"),
        "[retention]\nkeep_last = 2\n\n[[schedule]]\nname = \"slow\"\ncron = \"* * * * * *\"\njob = \"prune\"\nargs = [\"--dry-run\", \"--allow-unsigned\"]\n",
    )
    .unwrap();
    // Reading the repository's marker takes 2.5 s: a run takes longer than the schedule's
    // second.
    s3.add_fault(
        FaultRule::new(Fault::Delay(Duration::from_millis(2500)))
            .method("GET")
            .path_contains("ecobackup.json")
            .forever(),
    );
    let mut cmd = ecobackup_std(dir.path());
    cmd.envs(env).args(["--config", "ecobackup.toml", "daemon"]);
    let mut daemon = Daemon::start(cmd);
    let events = daemon.wait_for("two slow runs and skipped fire times", |events| {
        named(events, "job finished", Some("slow")).len() >= 2
            && named(events, "job skipped", Some("slow")).len() >= 2
    });
    daemon.signal(Signal::SIGTERM);
    assert!(daemon.exit().success());

    // Start, end, start, end: never two runs at once.
    let sequence: Vec<&str> = events
        .iter()
        .filter(|e| e["job"] == "slow")
        .filter_map(|e| match e["message"].as_str().unwrap() {
            "job started" => Some("start"),
            "job finished" => Some("end"),
            _ => None,
        })
        .collect();
    for pair in sequence.windows(2) {
        assert_ne!(pair[0], pair[1], "{sequence:?}");
    }
    assert_eq!(sequence[0], "start");
    for end in named(&events, "job finished", Some("slow")) {
        assert_eq!(end["outcome"], "ok", "{end}");
        assert!(end["duration_seconds"].as_f64().unwrap() > 2.0, "{end}");
    }
    let skipped = named(&events, "job skipped", Some("slow"));
    assert_eq!(skipped[0]["level"], "WARN", "{}", skipped[0]);
}

const NOT_RELOADED: &str = "configuration not reloaded; the old schedule goes on";

#[test]
fn sighup_reloads_and_a_broken_file_keeps_the_old_schedule() {
    let lab = Lab::new();
    let entry = |name: &str| {
        format!(
            "[[schedule]]\nname = \"{name}\"\ncron = \"* * * * * *\"\njob = \"prune\"\nargs = [\"--dry-run\", \"--allow-unsigned\"]\n"
        )
    };
    lab.configure(&entry("before"));
    let mut daemon = Daemon::start(lab.daemon(&[]));
    daemon.wait_for("a run of the first schedule", |events| {
        !named(events, "job finished", Some("before")).is_empty()
    });

    lab.configure(&entry("after"));
    daemon.signal(Signal::SIGHUP);
    let events = daemon.wait_for("a run of the reloaded schedule", |events| {
        !named(events, "job finished", Some("after")).is_empty()
    });
    let reloaded = events
        .iter()
        .position(|e| e["message"] == "configuration reloaded")
        .unwrap();
    let first_after = events
        .iter()
        .position(|e| e["message"] == "job started" && e["job"] == "after")
        .unwrap();
    assert!(reloaded < first_after);
    // A run of the old entry may have been under way (its start line may even come just after
    // the reload's); none is due after the reload.
    let reloaded_at = time(&events[reloaded], "timestamp");
    for start in named(&events[reloaded..], "job started", Some("before")) {
        assert!(
            time(start, "due") <= reloaded_at,
            "{start} after {reloaded_at}"
        );
    }

    // A broken file: refused with its reason, and the schedule in force goes on.
    lab.configure(&format!("{}job_typo = 1\n", entry("broken")));
    daemon.signal(Signal::SIGHUP);
    let events = daemon.wait_for("the refusal, then another run", |events| {
        events
            .iter()
            .position(|e| e["message"] == NOT_RELOADED)
            .is_some_and(|at| {
                events[at..]
                    .iter()
                    .any(|e| e["message"] == "job finished" && e["job"] == "after")
            })
    });
    let refusal = named(&events, NOT_RELOADED, None)[0];
    assert_eq!(refusal["level"], "ERROR");
    let reason = refusal["error"].as_str().unwrap();
    assert!(
        reason.contains("ecobackup.toml is invalid") && reason.contains("job_typo"),
        "{reason}"
    );
    assert!(named(&events, "job started", Some("broken")).is_empty());

    // A file that loads, with an entry whose command would refuse to run: refused too.
    lab.configure(&format!(
        "{}\n[[schedule]]\nname = \"drill\"\ncron = \"* * * * * *\"\njob = \"drill\"\nargs = [\"--allow-unsigned\"]\n",
        entry("broken")
    ));
    daemon.signal(Signal::SIGHUP);
    let events = daemon.wait_for("the second refusal, then another run", |events| {
        let refusals: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e["message"] == NOT_RELOADED)
            .map(|(at, _)| at)
            .collect();
        refusals.get(1).is_some_and(|at| {
            events[*at..]
                .iter()
                .any(|e| e["message"] == "job finished" && e["job"] == "after")
        })
    });
    let reason = named(&events, NOT_RELOADED, None)[1]["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.contains("[[schedule]] \"drill\": drill needs an identity"),
        "{reason}"
    );
    assert!(named(&events, "job started", Some("broken")).is_empty());
    assert!(named(&events, "job started", Some("drill")).is_empty());
    daemon.signal(Signal::SIGTERM);
    assert!(daemon.exit().success());
}

#[test]
fn once_runs_one_entry_and_exits_with_its_status() {
    let lab = Lab::new();
    let check = format!(
        "\n[[schedule]]\nname = \"check\"\ncron = \"*/5 * * * *\"\njob = \"check\"\nargs = [\"--allow-unsigned\"]\nping_url = \"{}\"\n",
        lab.pings.url("/ping/check")
    );
    lab.configure(&(succeeding_and_failing(&lab) + &check));
    std::fs::create_dir(lab.dir.path().join("metrics")).unwrap();
    let once = |name: &str| {
        let mut cmd = lab.daemon(&["--once", name]);
        cmd.arg("--log-format=json");
        cmd.output().unwrap()
    };

    let out = once("prune");
    assert_eq!(out.status.code(), Some(0));
    assert!(lab.ping_paths().contains(&"/ping/prune".to_owned()));

    let out = once("verify");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let end: Value = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["message"] == "job finished")
        .unwrap();
    assert!(
        end["error"].as_str().unwrap().contains("no backup latest"),
        "{end}"
    );

    // check: the plugin's exit status, as from Nagios; run by the daemon it also pings.
    let plain = ecobackup(lab.dir.path())
        .args(["--config", "ecobackup.toml", "check", "--allow-unsigned"])
        .output()
        .unwrap();
    let out = once("check");
    assert!(matches!(out.status.code(), Some(1 | 2)), "{out:?}");
    assert_eq!(out.status.code(), plain.status.code());
    assert_eq!(out.stdout, plain.stdout, "the same plugin output");
    let fail = lab
        .pings
        .requests()
        .into_iter()
        .find(|r| r.path == "/ping/check/fail")
        .unwrap();
    assert!(fail.body.starts_with("ECOBACKUP "), "{}", fail.body);

    let out = once("nope");
    assert_eq!(out.status.code(), Some(2));
    let line = one_error_line(&out.stderr);
    assert!(
        line.contains(
            "no [[schedule]] entry is named \"nope\"; the entries are: prune, verify, check"
        ),
        "{line}"
    );
}

#[test]
fn an_entry_that_cannot_run_is_refused_at_start() {
    let lab = Lab::new();
    for (entry, wanted) in [
        (
            "[[schedule]]\nname = \"hourly\"\ncron = \"0 * * * *\"\njob = \"prune\"\nargs = [\"--dry-rnu\"]\n",
            "[[schedule]] \"hourly\": `ecobackup prune` does not parse: unexpected argument '--dry-rnu' found",
        ),
        (
            "[[schedule]]\nname = \"hourly\"\ncron = \"0 * * *\"\njob = \"prune\"\n",
            "[[schedule]] \"hourly\": cron \"0 * * *\" is not a cron pattern",
        ),
        ("", "has no [[schedule]] entry"),
        // It parses, but its command would refuse to run: found now, not at its first run.
        (
            "[[schedule]]\nname = \"monthly-drill\"\ncron = \"0 4 1 * *\"\njob = \"drill\"\nargs = [\"--allow-unsigned\"]\n",
            "[[schedule]] \"monthly-drill\": drill needs an identity to decrypt the backups",
        ),
    ] {
        lab.configure(entry);
        let out = lab.daemon(&[]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let line = one_error_line(&out.stderr);
        assert!(line.contains(wanted), "{line}");
    }
}

/// SIGTERM while a backup uploads: the daemon waits out its grace, cancels the backup and exits
/// 0, leaving no manifest, no lock and no pending multipart upload.
#[test]
fn sigterm_in_the_middle_of_a_backup_leaves_nothing_behind() {
    let mut world = World::new();
    let s3 = world.runtime.block_on(S3TestServer::start());
    world.on_s3(&s3);
    world.init();
    let config = world.dir.path().join("ecobackup.toml");
    std::fs::write(
        &config,
        format!(
            "[[schedule]]\nname = \"hourly\"\ncron = \"* * * * * *\"\njob = \"backup logical\"\ndatabases = [\"{}\"]\nargs = [\"--globals\"]\n",
            world.shop
        ),
    )
    .unwrap();
    // The dump's upload hangs: the backup is in the middle for as long as the test needs.
    hang(&s3, "PUT", ".dump.zst.age");
    let cmd = world.std_command(&[
        "--config",
        config.to_str().unwrap(),
        "daemon",
        "--grace",
        "1",
    ]);
    let mut daemon = Daemon::start(cmd);
    daemon.wait_for("the backup to start", |events| {
        !named(events, "job started", Some("hourly")).is_empty()
    });
    let uploading = || {
        s3.requests()
            .iter()
            .any(|r| r.method == "PUT" && r.path.contains(".dump.zst.age"))
    };
    daemon.wait_until("the dump's upload to begin", uploading);
    // The library stops on the token: the daemon's fallback (dropping a job that ignores it)
    // never runs.
    let events = daemon.terminate_cancelling(&["hourly"]);
    assert_eq!(
        named(&events, "job started", None).len(),
        1,
        "no run after the signal"
    );

    s3.clear_faults();
    let keys = s3.object_keys();
    assert!(
        !keys.iter().any(|k| k.ends_with("manifest.json")),
        "no manifest: {keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.contains("/locks/")),
        "no lock: {keys:?}"
    );
    assert_eq!(s3.pending_multipart_uploads(), 0);
    assert_eq!(world.listed_backups(), 0);
    assert!(
        !keys.iter().any(|k| k.contains("backups/")),
        "nothing of the cancelled backup is left: {keys:?}"
    );
}

/// SIGTERM while a drill restores: the drill stops on its token, stops and removes its scratch
/// cluster, and only then releases the repository's shared lock (a lock left behind would hold
/// prune off for minutes); the daemon exits 0.
#[test]
fn sigterm_in_the_middle_of_a_drill_releases_the_lock() {
    let mut world = World::new();
    let s3 = world.runtime.block_on(S3TestServer::start());
    world.on_s3(&s3);
    world.init();
    world.backup();
    let scratch = world.dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let config = world.dir.path().join("ecobackup.toml");
    std::fs::write(
        &config,
        "[drill]\nscratch_dir = \"scratch\"\n\n[[schedule]]\nname = \"drill\"\ncron = \"* * * * * *\"\njob = \"drill\"\nkind = \"logical\"\n",
    )
    .unwrap();
    // The dump's download hangs: the drill is in the middle for as long as the test needs.
    hang(&s3, "GET", ".dump.zst.age");
    let cmd = world.std_command(&[
        "--config",
        config.to_str().unwrap(),
        "daemon",
        "--grace",
        "1",
    ]);
    let mut daemon = Daemon::start(cmd);
    daemon.wait_for("the drill to start", |events| {
        !named(events, "job started", Some("drill")).is_empty()
    });
    let downloading = || {
        s3.requests()
            .iter()
            .any(|r| r.method == "GET" && r.path.contains(".dump.zst.age"))
    };
    daemon.wait_until("the dump's download to begin", downloading);
    let locked = s3.object_keys().iter().any(|k| k.contains("locks/"));
    assert!(locked, "the drill holds the shared lock while it restores");
    // Releasing the lock takes 2 s: the daemon must wait for it before it exits, not leave it
    // to a background task that ends with the process.
    s3.add_fault(
        FaultRule::new(Fault::Delay(Duration::from_secs(2)))
            .method("DELETE")
            .path_contains("locks/")
            .forever(),
    );
    // The drill stops on its token: the fallback that drops a job ignoring it never runs.
    daemon.terminate_cancelling(&["drill"]);

    s3.clear_faults();
    let keys = s3.object_keys();
    assert!(
        !keys.iter().any(|k| k.contains("locks/")),
        "the shared lock is released: {keys:?}"
    );
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "the scratch cluster is removed"
    );
}

/// SIGTERM while check (or verify) waits for the repository: the read stops on the token at
/// once, not when the fallback that drops a job ignoring its token runs out.
#[test]
fn sigterm_stops_a_check_and_a_verify_on_their_token() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let s3 = runtime.block_on(S3TestServer::start());
    let dir = tempfile::tempdir().unwrap();
    let env = s3_env(&s3, format!("s3://{}/prod", s3.bucket()));
    ecobackup(dir.path())
        .envs(env.clone())
        .arg("init")
        .assert()
        .success();
    std::fs::write(
        dir.path().join("ecobackup.toml"),
        "[check]\nmax_age = \"26h\"\n\n[[schedule]]\nname = \"check\"\ncron = \"* * * * * *\"\njob = \"check\"\nargs = [\"--allow-unsigned\"]\n\n\
         [[schedule]]\nname = \"verify\"\ncron = \"* * * * * *\"\njob = \"verify\"\nargs = [\"--allow-unsigned\", \"--identity\", \"restore.key\"]\n",
    )
    .unwrap();
    // Reading the repository's marker hangs: both jobs wait in the middle of their read.
    let read_before = s3
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("ecobackup.json"))
        .count();
    hang(&s3, "GET", "ecobackup.json");
    let mut cmd = ecobackup_std(dir.path());
    cmd.envs(env)
        .args(["--config", "ecobackup.toml", "daemon", "--grace", "1"]);
    let mut daemon = Daemon::start(cmd);
    daemon.wait_for("both jobs to start", |events| {
        ["check", "verify"]
            .iter()
            .all(|job| !named(events, "job started", Some(job)).is_empty())
    });
    let reading = || {
        s3.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.contains("ecobackup.json"))
            .count()
    };
    daemon.wait_until("the reads to begin", || reading() >= read_before + 2);
    daemon.terminate_cancelling(&["check", "verify"]);
}
