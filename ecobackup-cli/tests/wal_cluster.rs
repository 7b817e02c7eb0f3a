//! A real cluster archiving through `archive_command = 'ecobackup … wal-push %p'` into the S3
//! test server; `verify --wal` over what it archived; and the documented stock-tools
//! restore_command (age and zstd only) restoring the same bytes as `wal-fetch`.

mod common;

use std::process::Command as Std;

use common::archive::{wait_until, WalWorld};
use ecobackup_core::postgres::cluster::{Cluster, ClusterOptions};
use ecobackup_core::postgres::connect;

/// FORMAT.md's restore_command for a repository in a directory, with `%f`/`%p` replaced as
/// PostgreSQL does; run through `sh -c` as PostgreSQL does.
fn stock_restore(repo: &std::path::Path, key: &std::path::Path, f: &str, p: &str) -> Std {
    let line = format!(
        r#"f=%f; o={repo}/wal/$(printf %.8s "$f")/$f.zst.age; [ -e "$o" ] || exit 1; age -d -i {key} -o "%p.zst" "$o" && zstd -d -q -f --rm -o "%p" "%p.zst" || exit 255"#,
        repo = repo.display(),
        key = key.display()
    );
    let mut cmd = Std::new("sh");
    cmd.arg("-c").arg(line.replace("%f", f).replace("%p", p));
    cmd
}

#[test]
fn a_cluster_archives_through_wal_push_and_the_archive_verifies() {
    let world = WalWorld::new();
    let archive_command = format!(
        "archive_command = '{} --config {} wal-push %p'",
        env!("CARGO_BIN_EXE_ecobackup"),
        world.config.display()
    );
    let cluster = world
        .runtime
        .block_on(Cluster::start(ClusterOptions {
            fsync: false,
            conf: vec!["archive_mode = on".into(), archive_command],
            ..ClusterOptions::default()
        }))
        .unwrap();
    let url = cluster.url("postgres");
    let query = |sql: &str| -> String {
        world.runtime.block_on(async {
            let client = connect(&url).await.unwrap();
            client.query_one(sql, &[]).await.unwrap().get(0)
        })
    };
    world.runtime.block_on(async {
        let client = connect(&url).await.unwrap();
        client
            .batch_execute("CREATE TABLE orders AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 50000) g")
            .await
            .unwrap();
    });
    let last = query("SELECT pg_walfile_name(pg_switch_wal())");
    let archived = |name: &str| {
        query("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver").as_str() >= name
    };
    wait_until("the archiver to push the switched segment", || {
        archived(&last)
    });
    assert_eq!(
        query("SELECT failed_count::text FROM pg_stat_archiver"),
        "0",
        "every archive_command succeeded the first time"
    );
    let key = format!("wal/{}/{last}.zst.age", &last[..8]);
    assert!(world.object_path(&key).exists(), "{key}");

    // Everything the server archived verifies: digests, page headers, no gap.
    let out = world.run(&["--json", "verify", "--wal"]).assert().success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["timelines"][0]["last"], last.as_str(), "{report}");
    assert!(report["gaps"].as_array().unwrap().is_empty());
    let system_identifier = query("SELECT system_identifier::text FROM pg_control_system()");
    assert_eq!(
        report["identity"]["system_identifier"],
        system_identifier.as_str()
    );
    world.runtime.block_on(cluster.shutdown()).unwrap();

    // The stock tools restore what wal-fetch restores; a missing file exits 1, a wrong key 255.
    world.dir.subdir("pg_wal");
    world
        .run(&["wal-fetch", &last, "pg_wal/RECOVERYXLOG", "--prefetch", "0"])
        .assert()
        .success();
    let ours = std::fs::read(world.dir.path().join("pg_wal/RECOVERYXLOG")).unwrap();
    assert_eq!(ours.len(), 16 << 20);
    let repo = world
        .object_path("")
        .parent()
        .unwrap()
        .to_owned()
        .join("prod");
    let target = world.dir.path().join("stock");
    let status = stock_restore(&repo, &world.identity, &last, target.to_str().unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(std::fs::read(&target).unwrap() == ours, "same bytes");
    let missing = world.dir.path().join("missing");
    let status = stock_restore(
        &repo,
        &world.identity,
        "000000010000000000000099",
        missing.to_str().unwrap(),
    )
    .status()
    .unwrap();
    assert_eq!(status.code(), Some(1));
    let other_key = world.dir.path().join("other.key");
    world
        .run(&["key", "generate", "--out", "other.key"])
        .assert()
        .success();
    let status = stock_restore(&repo, &other_key, &last, missing.to_str().unwrap())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(255));
    assert!(!missing.exists());
}
