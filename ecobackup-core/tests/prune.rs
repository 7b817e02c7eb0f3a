//! `prune` against the in-process S3 server, on backups whose manifests carry synthetic times:
//! exactly the planned objects and WAL go, a failure halfway leaves every kept backup whole and
//! a rerun finishes, the more-than-half rail holds, and a running backup's lock stops prune.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::storage::{s3_options, s3_storage};
use ecobackup_core::progress::NoProgress;
use ecobackup_core::repository::{BackupKind, Clock, Lock, LockMode, LockOptions, Repository};
use ecobackup_core::retention::{prune, PruneOptions, RetentionPolicy, ValidatedPolicy};
use ecobackup_core::storage::Storage;
use ecobackup_core::verify::verify_backup;
use ecobackup_core::Error;
use ecobackup_testkit::catalog::{
    assert_no_manifest_without_artifacts, synthetic_backup as backup, wal_name,
};
use ecobackup_testkit::{Fault, FaultRule, S3TestServer};

/// A clock this many hours ahead: prune's own lock is then younger than the debris written
/// now, and a later run sees the lease of an earlier one expired.
#[derive(Debug)]
struct Ahead(i64);

impl Clock for Ahead {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::hours(self.0)
    }
}

fn options_at(allow_large: bool, hours_ahead: i64) -> PruneOptions {
    let mut options = PruneOptions::default();
    options.allow_large = allow_large;
    options.now = Utc::now() + Duration::hours(hours_ahead);
    options.lock.clock = Arc::new(Ahead(hours_ahead));
    options
}

fn options(allow_large: bool) -> PruneOptions {
    options_at(allow_large, 2)
}

fn policy() -> ValidatedPolicy {
    toml::from_str::<RetentionPolicy>("keep_last = 3\n[physical]\nkeep_last = 2\n")
        .unwrap()
        .validate()
        .unwrap()
}

fn day(n: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, n, 4, 0, 0).unwrap()
}

async fn keys(storage: &Storage) -> BTreeSet<String> {
    storage
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// Ten daily logical backups, four physical ones (three on timeline 1, the newest on 2), the WAL
/// of both timelines with records and signatures, a `.backup` and a `.history` file, and a
/// folder without a manifest. Returns the repository and the keys prune must delete.
async fn fixture(s3: &S3TestServer) -> (Repository, BTreeSet<String>) {
    let storage = s3_storage(s3.bucket(), "repo", &s3_options(s3));
    Repository::init(storage.clone(), vec![]).await.unwrap();
    let repo = Repository::open(storage.clone()).await.unwrap();
    let mut doomed = BTreeSet::new();
    let before = keys(&storage).await;
    let mut logical = Vec::new();
    for n in 1..=10 {
        logical.push(backup(&repo, BackupKind::Logical, day(n), None).await);
    }
    let mut physical = Vec::new();
    for (n, start) in [(11, (1, 3)), (12, (1, 5)), (13, (1, 7)), (14, (2, 9))] {
        physical.push(backup(&repo, BackupKind::Physical, day(n), Some(start)).await);
    }
    let after = keys(&storage).await;
    // The 7 oldest logical and the 2 oldest physical backups go, whole.
    for id in logical[..7].iter().chain(&physical[..2]) {
        doomed.extend(
            after
                .difference(&before)
                .filter(|k| k.starts_with(&format!("backups/{id}/")))
                .cloned(),
        );
    }
    // Timeline 1 from segment 1 to 9, timeline 2 (branched at 8) from 8 to 10.
    let segments = (1..=9u64).map(|n| (1, n)).chain((8..=10).map(|n| (2, n)));
    for (timeline, number) in segments {
        let name = wal_name(timeline, number);
        for suffix in [".zst.age", ".json", ".json.sig"] {
            let key = format!("wal/{timeline:08X}/{name}{suffix}");
            storage.put(&key, vec![1u8; 64]).await.unwrap();
            // The oldest kept backup on timelines <= 1 starts at 1/7: before it, everything
            // goes; timeline 2 is needed whole (the backup on 1 recovers into it).
            if timeline == 1 && number < 7 {
                doomed.insert(key);
            }
        }
    }
    let backup_history = format!("wal/00000001/{}.00000028.backup.zst.age", wal_name(1, 3));
    storage.put(&backup_history, vec![1u8; 10]).await.unwrap();
    doomed.insert(backup_history);
    storage
        .put("wal/00000002/00000002.history.zst.age", vec![1u8; 10])
        .await
        .unwrap();
    storage
        .put("wal/cluster.json", vec![1u8; 10])
        .await
        .unwrap();
    let debris = "backups/20261101T000000Z-logical-debris/one.zst.age".to_owned();
    storage.put(&debris, vec![1u8; 10]).await.unwrap();
    doomed.insert(debris);
    (repo, doomed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_exactly_the_plan_and_survives_a_failure_halfway() {
    let s3 = S3TestServer::start().await;
    let (repo, doomed) = fixture(&s3).await;
    let storage = repo.storage().clone();
    let all = keys(&storage).await;

    // 9 of 14 backups: more than half, so without --yes only a plan.
    let report = prune(&repo, &policy(), &options(false), &NoProgress)
        .await
        .unwrap();
    assert!(report.held_back.is_some(), "{report:?}");
    assert!(!report.applied);
    assert_eq!(report.deleted.len(), 9);
    assert_eq!(
        keys(&storage).await,
        all,
        "a held-back plan deletes nothing"
    );

    // The store fails every deletion after the fifth: prune stops with the error.
    s3.add_fault(
        FaultRule::new(Fault::Status(503))
            .method("DELETE")
            .skip(5)
            .forever(),
    );
    let err = prune(&repo, &policy(), &options(true), &NoProgress)
        .await
        .unwrap_err();
    s3.clear_faults();
    let halfway = keys(&storage).await;
    assert!(halfway.len() < all.len(), "some deletions happened: {err}");
    let kept: BTreeSet<&String> = all.difference(&doomed).collect();
    for key in &kept {
        assert!(halfway.contains(*key), "kept {key} was deleted: {err}");
    }
    assert_no_manifest_without_artifacts(&halfway);
    // Every backup still listed verifies: all its bytes read back and match their digests.
    let listing = repo.manifests().await.unwrap();
    assert!(listing.bad.is_empty(), "{:?}", listing.bad);
    for manifest in &listing.backups {
        let check = verify_backup(&repo, manifest, None, &NoProgress)
            .await
            .unwrap();
        assert!(check.ok && check.artifacts.len() == 2, "{check:?}");
    }

    // The failed run could not release its lock either (the store refused the deletion): the
    // rerun comes after its lease expired, and finishes the job: exactly the planned objects
    // are gone.
    let report = prune(&repo, &policy(), &options_at(true, 3), &NoProgress)
        .await
        .unwrap();
    assert!(report.applied);
    let left = keys(&storage).await;
    let expected: BTreeSet<String> = all.difference(&doomed).cloned().collect();
    let lock_free: BTreeSet<String> = left
        .iter()
        .filter(|k| !k.starts_with("locks/"))
        .cloned()
        .collect();
    assert_eq!(lock_free, expected);
    assert_eq!(
        report.wal.kept_from.get("00000001").map(String::as_str),
        Some("000000010000000000000007")
    );
    assert_eq!(
        report.wal.kept_from.get("00000002").map(String::as_str),
        Some("000000020000000000000007")
    );

    // A second run finds nothing more to do.
    let again = prune(&repo, &policy(), &options_at(true, 3), &NoProgress)
        .await
        .unwrap();
    assert!(again.deleted.is_empty() && again.wal.files.is_empty() && again.debris.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_backup_stops_prune_before_it_touches_anything() {
    let s3 = S3TestServer::start().await;
    let (repo, _) = fixture(&s3).await;
    let all = keys(repo.storage()).await;
    let backup = Lock::acquire(
        repo.storage(),
        LockMode::Shared,
        "backup logical",
        &LockOptions::default(),
    )
    .await
    .unwrap();
    // The real clock: with prune's clock ahead, the backup's lease would look expired.
    let mut plain = options(true);
    plain.lock = LockOptions::default();
    let err = prune(&repo, &policy(), &plain, &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    backup.release().await.unwrap();
    assert_eq!(keys(repo.storage()).await, all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_deletes_nothing_and_no_physical_backup_leaves_wal_alone() {
    let s3 = S3TestServer::start().await;
    let storage = s3_storage(s3.bucket(), "repo", &s3_options(&s3));
    Repository::init(storage.clone(), vec![]).await.unwrap();
    let repo = Repository::open(storage.clone()).await.unwrap();
    for n in 1..=4 {
        backup(&repo, BackupKind::Logical, day(n), None).await;
    }
    storage
        .put(
            &format!("wal/00000001/{}.zst.age", wal_name(1, 1)),
            vec![1u8; 8],
        )
        .await
        .unwrap();
    let all = keys(&storage).await;
    let mut dry_run = options(true);
    dry_run.dry_run = true;
    let report = prune(&repo, &policy(), &dry_run, &NoProgress)
        .await
        .unwrap();
    assert_eq!(report.deleted.len(), 1);
    assert!(!report.applied);
    assert!(report.wal.untouched.is_some());
    assert_eq!(keys(&storage).await, all);
}

/// With `[retention] lock`, every object written carries S3 Object Lock headers and a SHA-256
/// checksum (single PUTs and multipart uploads alike), and prune leaves what is still locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_lock_is_requested_on_writes_and_respected_by_prune() {
    let s3 = S3TestServer::start().await;
    let policy: ValidatedPolicy = toml::from_str::<RetentionPolicy>(
        "keep_last = 1\nlock = \"compliance\"\nlock_for = \"30d\"\n",
    )
    .unwrap()
    .validate()
    .unwrap();
    let now = Utc::now();
    let lock = policy.object_lock_at(now).unwrap();
    let mut options = s3_options(&s3);
    options.object_lock = Some(lock);
    let locked = s3_storage(s3.bucket(), "repo", &options);
    locked.put("small", vec![1u8; 1000]).await.unwrap();
    common::storage::upload(&locked, "large", vec![2u8; 40 << 20], None)
        .await
        .unwrap();
    let until = (now + Duration::days(30)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let writes: Vec<_> = s3
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT" || (r.method == "POST" && r.query.contains("uploads")))
        .collect();
    assert!(
        writes.len() >= 3,
        "a PUT, a multipart start and parts: {writes:?}"
    );
    for request in &writes {
        assert_eq!(request.header("x-amz-object-lock-mode"), Some("COMPLIANCE"));
        assert_eq!(
            request.header("x-amz-object-lock-retain-until-date"),
            Some(until.as_str())
        );
    }
    let single = writes.iter().find(|r| r.path.ends_with("/small")).unwrap();
    assert!(
        single.header("x-amz-checksum-sha256").is_some(),
        "{single:?}"
    );
    // Reads and listings go without them: S3 refuses unsigned x-amz-* headers, and object_store
    // signs default headers on writes only.
    s3.clear_requests();
    locked.list("").await.unwrap();
    locked.get("small").await.unwrap();
    let reads = s3.requests();
    assert_eq!(reads.len(), 2, "{reads:?}");
    for request in &reads {
        assert_eq!(
            request.header("x-amz-object-lock-mode"),
            None,
            "{request:?}"
        );
    }

    // Two backups older than the lock and three within it; keep_last = 1.
    let storage = s3_storage(s3.bucket(), "prune", &s3_options(&s3));
    Repository::init(storage.clone(), vec![]).await.unwrap();
    let repo = Repository::open(storage.clone()).await.unwrap();
    let mut old = Vec::new();
    for days_ago in [90, 60] {
        old.push(
            backup(
                &repo,
                BackupKind::Logical,
                now - Duration::days(days_ago),
                None,
            )
            .await,
        );
    }
    let mut recent = Vec::new();
    for days_ago in [20, 10, 1] {
        recent.push(
            backup(
                &repo,
                BackupKind::Logical,
                now - Duration::days(days_ago),
                None,
            )
            .await,
        );
    }
    let mut large = PruneOptions::default();
    large.allow_large = true;
    let report = prune(&repo, &policy, &large, &NoProgress).await.unwrap();
    assert_eq!(report.deleted, vec![old[1].clone(), old[0].clone()]);
    let locked: Vec<&str> = report.locked.iter().map(|l| l.id.as_str()).collect();
    assert_eq!(locked, [recent[1].as_str(), recent[0].as_str()]);
    let left = keys(&storage).await;
    for id in &recent {
        assert!(
            left.contains(&format!("backups/{id}/manifest.json")),
            "{id}"
        );
    }
    for id in &old {
        assert!(
            !left.contains(&format!("backups/{id}/manifest.json")),
            "{id}"
        );
    }
}

/// A physical backup whose manifest cannot be read may still need any WAL: none is expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_physical_manifest_keeps_all_wal() {
    let s3 = S3TestServer::start().await;
    let (repo, _) = fixture(&s3).await;
    let storage = repo.storage().clone();
    storage
        .put(
            "backups/20261015T040000Z-physical-broken/manifest.json",
            b"{ not json".to_vec(),
        )
        .await
        .unwrap();
    let wal_before: Vec<String> = keys(&storage)
        .await
        .into_iter()
        .filter(|k| k.starts_with("wal/"))
        .collect();
    let report = prune(&repo, &policy(), &options(true), &NoProgress)
        .await
        .unwrap();
    assert!(
        report
            .wal
            .untouched
            .as_deref()
            .is_some_and(|why| why.contains("20261015T040000Z-physical-broken")),
        "{:?}",
        report.wal
    );
    assert_eq!(report.deleted.len(), 9, "backups are still pruned");
    let wal_after: Vec<String> = keys(&storage)
        .await
        .into_iter()
        .filter(|k| k.starts_with("wal/"))
        .collect();
    assert_eq!(wal_after, wal_before);
}
