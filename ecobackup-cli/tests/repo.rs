//! `ecobackup init`, `list` and `show` against a local directory and the in-process S3 server,
//! and the repository errors an operator can meet: each one line, non-zero, nothing written.

mod common;

use std::path::Path;

use assert_cmd::Command;
use chrono::{DateTime, Utc};
use ecobackup_core::repository::{
    ArtifactEntry, BackupKind, Manifest, Repository, SourceFacts, MANIFEST_VERSION,
};
use ecobackup_core::storage::{RepoUrl, Storage, StorageOptions};
use ecobackup_testkit::S3TestServer;

use common::{ecobackup, one_error_line, s3_env};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn manifest(id: &str, kind: BackupKind, finished: &str) -> Manifest {
    Manifest {
        manifest_version: MANIFEST_VERSION,
        id: id.to_owned(),
        kind,
        tags: [("reason".to_owned(), "pre-migration".to_owned())].into(),
        started_at: at("2026-11-01T00:00:00Z"),
        finished_at: at(finished),
        source: SourceFacts {
            server_version: Some("15.18".into()),
            databases: vec!["shop".into()],
            ..SourceFacts::default()
        },
        artifacts: vec![ArtifactEntry {
            name: "shop.dump.zst.age".into(),
            stored_size: 3 << 20,
            stored_sha256: "ab".repeat(32),
            raw_size: 9 << 20,
            raw_sha256: "cd".repeat(32),
            compression: "zstd".into(),
            recipients: vec!["sha256:0123456789abcdef".into()],
        }],
        written_by: "ecobackup test".into(),
        targets: Vec::new(),
    }
}

const OLD: &str = "20261101T000000Z-logical-aaaaaa";
const NEW: &str = "20261101T000100Z-files-bbbbbb";

/// Writes two manifests into the repository behind `storage`, as a backup run would.
fn add_backups(runtime: &tokio::runtime::Runtime, storage: Storage) {
    runtime.block_on(async {
        let repo = Repository::open(storage).await.unwrap();
        repo.write_manifest(&manifest(OLD, BackupKind::Logical, "2026-11-01T00:00:30Z"))
            .await
            .unwrap();
        repo.write_manifest(&manifest(NEW, BackupKind::Files, "2026-11-01T00:01:30Z"))
            .await
            .unwrap();
    });
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(cmd.assert().success().get_output().stdout.clone()).unwrap()
}

/// init → list (empty) → two backups → list, list --kind, list --json, show latest, show --json.
fn walk_through(
    dir: &Path,
    runtime: &tokio::runtime::Runtime,
    env: &[(&str, String)],
    storage: Storage,
) {
    let run = |args: &[&str]| {
        let mut cmd = ecobackup(dir);
        cmd.args(args).envs(env.iter().map(|(k, v)| (k, v)));
        cmd
    };
    let out = stdout(&mut run(&["init"]));
    assert!(out.starts_with("initialised repository "), "{out}");
    let out = stdout(&mut run(&["init"]));
    assert!(out.contains("already initialised"), "{out}");
    assert!(stdout(&mut run(&["list"])).starts_with("no backups in"));

    add_backups(runtime, storage);
    let out = stdout(&mut run(&["list"]));
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[1].starts_with(OLD) && lines[2].starts_with(NEW),
        "oldest first: {out}"
    );
    assert!(
        lines[1].contains("3.0 MiB") && lines[1].contains("reason=pre-migration"),
        "{out}"
    );
    let out = stdout(&mut run(&["list", "--kind", "logical"]));
    assert!(out.contains(OLD) && !out.contains(NEW), "{out}");
    let listed: serde_json::Value =
        serde_json::from_str(&stdout(&mut run(&["list", "--json"]))).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[1]["id"], NEW);

    let out = stdout(&mut run(&["show", "latest"]));
    assert!(out.contains(NEW) && out.contains("kind     files"), "{out}");
    let shown: serde_json::Value =
        serde_json::from_str(&stdout(&mut run(&["show", OLD, "--json"]))).unwrap();
    assert_eq!(shown["id"], OLD);
    assert_eq!(shown["artifacts"][0]["raw_sha256"], "cd".repeat(32));

    let out = run(&["show", "20261101T000000Z-logical-zzzzzz"])
        .assert()
        .code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.contains("no backup") && line.contains("ecobackup list"),
        "{line}"
    );
}

#[test]
fn init_list_show_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let repo = dir.path().join("repo");
    let storage = Storage::open(&RepoUrl::File(repo.clone()), &StorageOptions::default()).unwrap();
    let url = format!("file://{}", repo.display());
    walk_through(dir.path(), &runtime, &[("ECOBACKUP_REPO", url)], storage);
    assert!(repo.join("ecobackup.json").is_file());
}

#[test]
fn the_default_repository_is_ecobackup_repo_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = stdout(ecobackup(dir.path()).arg("init"));
    assert!(out.contains("ecobackup-repo"), "{out}");
    assert!(dir.path().join("ecobackup-repo/ecobackup.json").is_file());
}

#[test]
fn init_list_show_on_s3() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let s3 = runtime.block_on(S3TestServer::start());
    let url = format!("s3://{}/prod/db", s3.bucket());
    let storage = Storage::open(&RepoUrl::parse(&url).unwrap(), &s3.storage_options()).unwrap();
    walk_through(dir.path(), &runtime, &s3_env(&s3, url), storage);
    assert!(s3
        .object_keys()
        .iter()
        .any(|k| k.ends_with("prod/db/ecobackup.json")));
}

#[test]
fn repository_errors_are_one_line_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let s3 = runtime.block_on(S3TestServer::start());

    let usage = [
        ("s3:/acme", "expected file://"),
        ("gs://acme/prod", "unknown scheme \"gs\""),
        ("s3://Acme_Backups", "bucket name"),
        ("file://relative", "absolute path"),
    ];
    for (url, reason) in usage {
        let out = ecobackup(dir.path())
            .args(["init", "--repo", url])
            .assert()
            .code(2);
        let line = one_error_line(&out.get_output().stderr);
        assert!(line.contains(reason), "{url}: {line}");
    }

    let out = ecobackup(dir.path())
        .args(["list", "--repo", "file:///nonexistent-ecobackup-test/repo"])
        .assert()
        .code(2);
    assert!(one_error_line(&out.get_output().stderr).contains("run `ecobackup init`"));

    let mut wrong_secret = s3_env(&s3, format!("s3://{}/x", s3.bucket()));
    wrong_secret[5].1 = "wrong-secret-value".to_owned();
    let mut missing_bucket = s3_env(&s3, "s3://no-such-bucket/x".to_owned());
    missing_bucket.truncate(6);
    let mut unreachable = s3_env(&s3, format!("s3://{}/x", s3.bucket()));
    let closed = ecobackup_testkit::ClosedPort::new();
    unreachable[1].1 = closed.url("");
    for (env, reason) in [
        (wrong_secret, "check the credentials"),
        (missing_bucket, "bucket does not exist"),
        (unreachable, "cannot reach the endpoint"),
    ] {
        let out = ecobackup(dir.path())
            .arg("init")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("ECOBACKUP_S3_MAX_RETRIES", "1")
            .assert()
            .code(1);
        let line = one_error_line(&out.get_output().stderr);
        assert!(line.contains(reason), "{line}");
        assert!(!line.contains("wrong-secret-value"), "{line}");
    }
    assert!(s3.object_keys().is_empty(), "nothing written");
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(names.is_empty(), "nothing written locally");
}
