//! `ecobackup drill`: restore into a scratch cluster or a named server, run the checks, report
//! RTO and RPO, clean up; exit 0 only when everything passed; ping a monitoring URL (`/start`, then the
//! result).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, Mutex};

use common::one_error_line;
use common::world::{flip_middle_byte, World};

/// A monitoring endpoint that records the paths it was asked for.
fn ping_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/ping/abc", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut line = String::new();
            let mut reader = BufReader::new(&stream);
            if reader.read_line(&mut line).is_ok() {
                let path = line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                record.lock().unwrap().push(path);
            }
            let _ = (&stream)
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, seen)
}

fn checks(world: &World, name: &str, text: &str) -> String {
    let path = world.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn read_report(world: &World, name: &str) -> serde_json::Value {
    let text = std::fs::read(world.dir.path().join(name)).unwrap();
    serde_json::from_slice(&text).unwrap()
}

on_each_major! {
    /// The scratch cluster runs the backup's version, though both are installed (and visible
    /// to ecobackup: Debian's 15, and 18 through `ECOBACKUP_PG_BIN_18`).
    fn a_drill_on_a_scratch_cluster_passes_reports_and_pings(major) {
        scratch_drill(&World::with_major(major));
    }
}

fn scratch_drill(world: &World) {
    let major = world.pg.major_version();
    world.init();
    let out = world
        .run(&[
            "--json",
            "backup",
            "logical",
            "--db",
            &world.shop,
            "--globals",
        ])
        .assert()
        .success();
    let backup: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let finished = backup["manifest"]["finished_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let file = checks(
        world,
        "checks.toml",
        &format!(
            r#"
[[table]]
name = "orders"
min_rows = 7000
within_percent = 1

[[table]]
name = "public.order_items"
within_percent = 0.5

[[sql]]
name = "orders in the day before the backup"
query = "SELECT count(*) > 0 FROM orders WHERE created_at >= now() - interval '1 day'"

[[sql]]
name = "now() is the backup's time"
query = "SELECT now() = '{finished}'::timestamptz"

[[sql]]
name = "the scratch cluster runs the backup's major version"
query = "SELECT current_setting('server_version_num')::int / 10000 = {major}"

[command]
run = "test -n \"$DATABASE_URL\" && psql -X -tA \"$ECOBACKUP_DRILL_DATABASE_URL\" -c 'select count(*) from payments' | grep -qv '^0$'"
"#
        ),
    );
    let (ping, seen) = ping_server();
    let out = world
        .run(&[
            "drill",
            "latest",
            "--checks",
            &file,
            "--report",
            "report.json",
            "--ping",
            &ping,
        ])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("PASSED") && text.contains("RTO"), "{text}");
    assert!(text.contains("not durable"), "{text}");

    let report = read_report(world, "report.json");
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["durable"], false, "{report}");
    assert_eq!(report["backup_id"], backup["manifest"]["id"]);
    assert!(report["backup_age_seconds"].as_f64().unwrap() >= 0.0);
    let rto = report["rto_seconds"].as_f64().unwrap();
    let parts: f64 = ["provision_seconds", "restore_seconds", "checks_seconds"]
        .iter()
        .map(|k| report["rto"][k].as_f64().unwrap())
        .sum();
    assert!(rto > 0.0 && (rto - parts).abs() < 1e-6, "{report}");
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 6);
    assert!(checks.iter().all(|c| c["passed"] == true), "{report}");
    assert_eq!(checks[0]["actual"], "7000 rows");
    assert!(checks[0]["expected"]
        .as_str()
        .unwrap()
        .contains(">= 7000 rows"));
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["/ping/abc/start", "/ping/abc"]
    );
}

#[test]
fn failing_checks_fail_the_drill_with_the_evidence() {
    let world = World::new();
    world.init();
    world.backup();
    let file = checks(
        &world,
        "checks.toml",
        r#"
[[table]]
name = "orders"
min_rows = 1000000

[[sql]]
query = "SELECT count(*) = 0 FROM orders"

[command]
run = "exit 3"
"#,
    );
    let (ping, seen) = ping_server();
    let out = world
        .run(&[
            "drill",
            "--checks",
            &file,
            "--report",
            "report.json",
            "--ping",
            &ping,
        ])
        .assert()
        .code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.contains("3 of 3 checks failed, first table public.orders: expected >= 1000000 rows, got 7000 rows"),
        "{line}"
    );
    let report = read_report(&world, "report.json");
    assert_eq!(report["passed"], false);
    assert_eq!(report["checks"][1]["actual"], "false");
    assert!(report["checks"][2]["actual"]
        .as_str()
        .unwrap()
        .contains("exit status 3"));
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["/ping/abc/start", "/ping/abc/fail"]
    );

    // The drill is stored in the repository: status sees it failed, and check warns.
    let out = world.run(&["--json", "status"]).assert().success();
    let status: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let last = &status["drills"]["last"];
    assert_eq!(last["passed"], false, "{status}");
    assert_eq!(last["checks_failed"], 3, "{status}");
    assert_eq!(last["backup_id"], report["backup_id"], "{status}");
    let sealed = last["report"].as_str().unwrap();
    assert!(
        sealed.starts_with("drills/") && sealed.ends_with(".json.zst.age"),
        "{sealed}"
    );
    let out = world.run(&["check", "--max-age", "1d"]).assert().code(1);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        stdout.starts_with("ECOBACKUP WARNING - drill: the last drill"),
        "{stdout}"
    );
}

#[test]
fn a_drill_on_a_named_server_uses_new_databases_and_drops_them() {
    let world = World::new();
    world.init();
    world.backup();
    let file = checks(
        &world,
        "checks.toml",
        "[[table]]\nname = \"orders\"\nmin_rows = 1\n",
    );
    let target = world.database("postgres");
    let out = world
        .run(&["--json", "drill", "--checks", &file, "--target-db", &target])
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(report["passed"], true, "{report}");
    let left: i64 = world.runtime.block_on(async {
        let client = world.pg.client("postgres").await;
        client
            .query_one(
                "SELECT count(*) FROM pg_database WHERE datname LIKE 'ecobackup_drill_%'",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    });
    assert_eq!(left, 0, "drill databases are dropped");
}

#[test]
fn a_damaged_backup_or_a_bad_checks_file_fails_the_drill() {
    let world = World::new();
    world.init();
    let id = world.backup();
    let bad = checks(
        &world,
        "bad.toml",
        "[[table]]\nname = \"orders\"\nminimum = 3\n",
    );
    let out = world.run(&["drill", "--checks", &bad]).assert().code(2);
    assert!(one_error_line(&out.get_output().stderr).contains("bad.toml is invalid"));

    flip_middle_byte(&world.artifact(&id, ".dump.zst.age"), 1);
    let out = world
        .run(&["drill", "--report", "report.json"])
        .assert()
        .code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.contains(&format!("drill of backup {id} failed"))
            && line.contains("failed authentication"),
        "{line}"
    );
    let report = read_report(&world, "report.json");
    assert_eq!(report["passed"], false);
    assert!(report["error"]
        .as_str()
        .unwrap()
        .contains("failed authentication"));
}

/// The scratch cluster holds production data and trusts every connection: it is reachable only
/// through its socket, in a directory of mode 0700, never over TCP. `--durable` runs it with
/// fsync on, and the report says so. The `[command]` leaves a process in the background (the
/// README's `./start-app.sh &`): the check still passes, and the process is gone afterwards.
#[test]
fn a_durable_drill_runs_on_a_private_socket_and_says_so() {
    let world = World::new();
    world.init();
    world.backup();
    let facts = world.dir.path().join("facts.txt");
    let file = checks(
        &world,
        "checks.toml",
        &format!(
            r#"
[command]
run = """
set -e
psql -X -tA -F ' ' "$DATABASE_URL" -c "select current_setting('unix_socket_directories'), current_setting('port'), current_setting('fsync')" > '{facts}'
read dir port fsync < '{facts}'
stat -c %a "$dir" >> '{facts}'
if psql -X -h 127.0.0.1 -p "$port" -U postgres -c 'select 1' postgres >/dev/null 2>&1; then echo tcp-open; else echo tcp-refused; fi >> '{facts}'
sleep 600 &
echo $! >> '{facts}'
"""
timeout_seconds = 120
"#,
            facts = facts.display()
        ),
    );
    let out = world
        .run(&["--json", "drill", "--durable", "--checks", &file])
        .assert()
        .success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["durable"], true, "{report}");
    let target = report["target"].as_str().unwrap();
    // A socket directory as the host: no TCP address.
    assert!(
        target.starts_with("postgres://postgres@%2F") && !target.contains("127.0.0.1"),
        "{target}"
    );

    let text = std::fs::read_to_string(&facts).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].ends_with(" on"), "fsync on: {text}");
    assert_eq!(lines[1], "700", "socket directory mode: {text}");
    assert_eq!(lines[2], "tcp-refused", "{text}");
    let pid = lines[3];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = state
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with(['Z', 'X']));
        if !alive {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the check's background process {pid} outlived the drill"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
