//! End-to-end benchmark of `ecobackup backup logical` (docs/BENCHMARKS.md), not a test.
//!
//! Starts a throwaway cluster, loads the demo shop at `--scale` (50 ≈ 400 MB), starts the
//! in-process S3 server, then times, `--runs` times each (the best run counts):
//!
//! 1. `pg_dump -Fc -Z0 > /dev/null` — the floor: what reading the database costs;
//! 2. `ecobackup backup logical` into the S3 server — pg_dump → zstd → age → multipart upload;
//! 3. the seed runbook's pipeline — `pg_dump -Fc` to a file, `gpg --symmetric --cipher-algo
//!    AES256`, then an upload of the file to the same S3 server (curl with SigV4, as rclone would).
//!
//! Run: `cargo build --release --bin ecobackup && cargo run --release -p ecobackup-benches --bin
//! e2e-logical -- --scale 50`. Needs gpg and curl (≥ 7.75) besides PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ecobackup_core::postgres::cluster::{Cluster, ClusterOptions};
use ecobackup_core::postgres::connect;
use ecobackup_testkit::fixture::load_shop;
use ecobackup_testkit::S3TestServer;

struct Options {
    scale: u32,
    runs: u32,
    ecobackup: PathBuf,
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
            _ => usage(&format!("unknown argument {arg}")),
        }
    }
    if !options.ecobackup.is_file() {
        usage(&format!(
            "{} not found: cargo build --release --bin ecobackup first, or give --ecobackup PATH",
            options.ecobackup.display()
        ));
    }
    options
}

fn usage(problem: &str) -> ! {
    eprintln!("error: {problem}\nusage: e2e-logical [--scale N] [--runs N] [--ecobackup PATH]");
    std::process::exit(2)
}

/// Runs `command` `runs` times; the best wall time.
fn best_of(runs: u32, what: &str, mut command: impl FnMut() -> Command) -> Duration {
    let mut best = Duration::MAX;
    for run in 1..=runs {
        let started = Instant::now();
        let output = command()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("spawn");
        let took = started.elapsed();
        if !output.status.success() {
            eprintln!("{what} failed: {}", String::from_utf8_lossy(&output.stderr));
            std::process::exit(1);
        }
        eprintln!("  {what} run {run}: {:.2} s", took.as_secs_f64());
        best = best.min(took);
    }
    best
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let options = options();
    eprintln!(
        "starting a cluster and loading the demo shop at scale {}",
        options.scale
    );
    let cluster = Cluster::start(ClusterOptions {
        fsync: false,
        ..ClusterOptions::default()
    })
    .await
    .expect("cluster");
    cluster
        .create_database("shop")
        .await
        .expect("create database");
    let url = cluster.url("shop");
    let client = connect(&url).await.expect("connect");
    let started = Instant::now();
    load_shop(&client, options.scale).await.expect("load");
    let db_size: i64 = client
        .query_one("SELECT pg_database_size('shop')", &[])
        .await
        .expect("size")
        .get(0);
    eprintln!(
        "loaded {:.0} MB in {:.1} s",
        db_size as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    let s3 = S3TestServer::start().await;
    let work = tempfile::tempdir().expect("temp dir");
    let bin = cluster.bin_dir().to_owned();
    let key = work.path().join("restore.key");
    let recipient = Command::new(&options.ecobackup)
        .args(["key", "generate", "--out"])
        .arg(&key)
        .output()
        .expect("key generate");
    let recipient = String::from_utf8_lossy(&recipient.stdout).trim().to_owned();
    let ecobackup = |args: &[&str]| {
        let mut command = Command::new(&options.ecobackup);
        command
            .args(args)
            .env("ECOBACKUP_REPO", format!("s3://{}/bench", s3.bucket()))
            .env("ECOBACKUP_S3_ENDPOINT", s3.endpoint())
            .env("ECOBACKUP_S3_REGION", s3.region())
            .env("ECOBACKUP_S3_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", s3.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", s3.secret_access_key())
            .env("ECOBACKUP_RECIPIENTS", &recipient);
        command
    };
    let init = ecobackup(&["init"]).output().expect("init");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );

    eprintln!("pg_dump -Fc -Z0 > /dev/null");
    let floor = best_of(options.runs, "pg_dump -Z0", || {
        let mut c = Command::new(bin.join("pg_dump"));
        c.args(["-Fc", "-Z0"]).arg(format!("--dbname={url}"));
        c
    });

    eprintln!("ecobackup backup logical → S3, zstd level 1");
    let ours_level1 = best_of(options.runs, "ecobackup --level 1", || {
        let mut c = ecobackup(&[
            "-q", "backup", "logical", "--level", "1", "--db", &url, "--pg-bin",
        ]);
        c.arg(&bin);
        c
    });
    let listing = ecobackup(&["--json", "list"]).output().expect("list");
    let manifests: serde_json::Value = serde_json::from_slice(&listing.stdout).expect("json");
    let stored_level1 = manifests[0]["artifacts"][0]["stored_size"]
        .as_u64()
        .unwrap_or(0);

    eprintln!("ecobackup backup logical → S3, zstd level 3 (the default)");
    let ours = best_of(options.runs, "ecobackup", || {
        let mut c = ecobackup(&["-q", "backup", "logical", "--db", &url, "--pg-bin"]);
        c.arg(&bin);
        c
    });
    let listing = ecobackup(&["--json", "list"]).output().expect("list");
    let manifests: serde_json::Value = serde_json::from_slice(&listing.stdout).expect("json");
    let stored = manifests[0]["artifacts"][0]["stored_size"]
        .as_u64()
        .unwrap_or(0);
    let raw = manifests[0]["artifacts"][0]["raw_size"]
        .as_u64()
        .unwrap_or(0);

    eprintln!("seed runbook: pg_dump -Fc to a file → gpg AES256 → upload");
    let pass = work.path().join("passphrase");
    std::fs::write(&pass, "correct horse battery staple").expect("passphrase");
    let dump = work.path().join("db.dump");
    let script = format!(
        "set -euo pipefail\n\
         '{pg_dump}' -Fc --dbname='{url}' -f '{dump}'\n\
         gpg --batch --yes --pinentry-mode loopback --symmetric --cipher-algo AES256 --passphrase-file '{pass}' '{dump}'\n\
         rm '{dump}'\n\
         curl -fsS --aws-sigv4 'aws:amz:{region}:s3' --user '{key}:{secret}' -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -T '{dump}.gpg' '{endpoint}/{bucket}/seed/db.dump.gpg'\n",
        pg_dump = bin.join("pg_dump").display(),
        dump = dump.display(),
        pass = pass.display(),
        region = s3.region(),
        key = s3.access_key_id(),
        secret = s3.secret_access_key(),
        endpoint = s3.endpoint(),
        bucket = s3.bucket(),
    );
    let seed = best_of(options.runs, "seed pipeline", || {
        let mut c = Command::new("bash");
        c.arg("-c").arg(&script);
        c
    });
    let seed_size = file_size(&work.path().join("db.dump.gpg"));

    println!();
    println!(
        "database: demo shop at scale {} — pg_database_size {:.0} MB, pg_dump -Z0 output {:.0} MB",
        options.scale,
        db_size as f64 / 1e6,
        raw as f64 / 1e6
    );
    println!(
        "| pipeline | best of {} | vs pg_dump -Z0 > /dev/null | stored |",
        options.runs
    );
    println!("|---|---:|---:|---:|");
    let row = |name: &str, took: Duration, size: String| {
        println!(
            "| {name} | {:.2} s | {:.2}× | {size} |",
            took.as_secs_f64(),
            took.as_secs_f64() / floor.as_secs_f64()
        );
    };
    row("pg_dump -Fc -Z0 > /dev/null", floor, "—".to_owned());
    row(
        "ecobackup backup logical --level 1 → S3 (zstd 1, age)",
        ours_level1,
        format!("{:.0} MB", stored_level1 as f64 / 1e6),
    );
    row(
        "ecobackup backup logical → S3 (zstd 3, age)",
        ours,
        format!("{:.0} MB", stored as f64 / 1e6),
    );
    row(
        "seed runbook: pg_dump -Fc → file → gpg AES256 → upload",
        seed,
        format!("{:.0} MB", seed_size as f64 / 1e6),
    );
    println!();
    println!(
        "ecobackup / pg_dump floor: {:.2} at level 3, {:.2} at level 1 (goal ≤ 1.2); ecobackup / seed pipeline: {:.2} (goal < 0.5)",
        ours.as_secs_f64() / floor.as_secs_f64(),
        ours_level1.as_secs_f64() / floor.as_secs_f64(),
        ours.as_secs_f64() / seed.as_secs_f64()
    );
}
