//! One suite, three backends: the same behaviour from `file://`, `memory://` and S3 (the
//! in-process S3 server of the testkit).

mod common;

use common::storage::{download, s3_options, s3_storage, upload};

use ecobackup_core::pipeline::Pipeline;
use ecobackup_core::repository::{
    new_backup_id, ArtifactEntry, BackupKind, InitOutcome, Lock, LockMode, LockOptions, Manifest,
    Repository, SourceFacts, DEBRIS_MARGIN, MANIFEST_VERSION,
};
use ecobackup_core::storage::{RepoUrl, Storage, StorageOptions};
use ecobackup_core::Error;
use ecobackup_testkit::{RowGenerator, S3TestServer};

/// A fresh, empty storage of each kind. The S3 server (and temp dir) must outlive the storage.
struct Backends {
    _dir: tempfile::TempDir,
    s3: S3TestServer,
    all: Vec<(&'static str, Storage)>,
}

async fn backends() -> Backends {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3TestServer::start().await;
    let file = Storage::open(
        &RepoUrl::File(dir.path().join("repo")),
        &StorageOptions::default(),
    )
    .unwrap();
    let memory = Storage::open(
        &RepoUrl::Memory(format!("suite-{}", rand_suffix())),
        &StorageOptions::default(),
    )
    .unwrap();
    let s3_storage = s3_storage(s3.bucket(), "prod/db", &s3_options(&s3));
    Backends {
        _dir: dir,
        s3,
        all: vec![("file", file), ("memory", memory), ("s3", s3_storage)],
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_objects_put_get_list_delete() {
    let backends = backends().await;
    for (name, storage) in &backends.all {
        assert_eq!(storage.get("a/missing.json").await.unwrap(), None, "{name}");
        storage.put("a/one.json", b"1".to_vec()).await.unwrap();
        storage.put("a/two.json", b"22".to_vec()).await.unwrap();
        storage.put("b/three.json", b"333".to_vec()).await.unwrap();
        assert_eq!(
            storage.get("a/two.json").await.unwrap().unwrap(),
            &b"22"[..],
            "{name}"
        );
        let keys: Vec<_> = storage
            .list("a/")
            .await
            .unwrap()
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect();
        assert_eq!(
            keys,
            [("a/one.json".to_owned(), 1), ("a/two.json".to_owned(), 2)],
            "{name}"
        );
        assert_eq!(storage.list("").await.unwrap().len(), 3, "{name}");
        storage.delete("a/one.json").await.unwrap();
        storage.delete("a/one.json").await.unwrap();
        assert_eq!(storage.list("a/").await.unwrap().len(), 1, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_every_size_round_trip() {
    let backends = backends().await;
    for (name, storage) in &backends.all {
        for (len, hint) in [
            (0usize, None),
            (1, None),
            (3 << 20, Some(3 << 20)),
            (21 << 20, Some(1 << 20)),
        ] {
            let data = RowGenerator::new(len as u64).bytes(len);
            let key = format!("backups/x/{len}.bin");
            let stored = upload(storage, &key, data.clone(), hint).await.unwrap();
            assert_eq!(stored, len as u64, "{name} {len}");
            assert!(
                download(storage, &key).await.unwrap() == data,
                "{name} {len} differs"
            );
        }
        let err = download(storage, "backups/x/missing.bin")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{name}: {err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upload_leaves_nothing_under_the_final_key() {
    let backends = backends().await;
    for (name, storage) in &backends.all {
        // 20 MiB then the source dies: past the first part, so a multipart upload was started.
        let err = Pipeline::new(ecobackup_testkit::FailingSource::new(20 << 20))
            .into(storage.sink("backups/y/partial.bin", Some(1 << 20)))
            .run()
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("killed mid-stream"),
            "{name}: {err}"
        );
        assert!(
            storage.list("backups/").await.unwrap().is_empty(),
            "{name}: nothing stored"
        );
    }
    // On S3 the failure came after a multipart upload had begun: it was aborted, not left
    // pending (where it would cost money and hide from `list`).
    let requests = backends.s3.requests();
    let sent = |method: &str, query: &str| {
        requests
            .iter()
            .filter(|r| {
                r.method == method && r.path.ends_with("partial.bin") && r.query.contains(query)
            })
            .count()
    };
    assert_eq!(sent("POST", "uploads"), 1, "one multipart upload began");
    assert_eq!(sent("DELETE", "uploadId="), 1, "and it was aborted");
    assert_eq!(backends.s3.pending_multipart_uploads(), 0);
}

fn manifest(id: &str, finished: &str) -> Manifest {
    let at = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    Manifest {
        manifest_version: MANIFEST_VERSION,
        id: id.to_owned(),
        kind: BackupKind::Logical,
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
            stored_size: 10,
            stored_sha256: "00".repeat(32),
            raw_size: 20,
            raw_sha256: "11".repeat(32),
            compression: "zstd".into(),
            recipients: vec!["sha256:0123456789abcdef".into()],
        }],
        written_by: "ecobackup test".into(),
        targets: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repositories_init_list_latest_and_debris() {
    let backends = backends().await;
    for (name, storage) in &backends.all {
        let err = Repository::open(storage.clone()).await.unwrap_err();
        assert!(
            err.to_string().contains("initialise one there first"),
            "{name}: {err}"
        );
        let repo = match Repository::init(storage.clone(), vec!["sha256:0123456789abcdef".into()])
            .await
            .unwrap()
        {
            InitOutcome::Created(repo) => repo,
            other => panic!("{name}: {other:?}"),
        };
        assert!(matches!(
            Repository::init(storage.clone(), vec![]).await.unwrap(),
            InitOutcome::AlreadyInitialized(_)
        ));
        assert!(matches!(
            repo.resolve("latest", None).await.unwrap_err(),
            Error::BackupNotFound { .. }
        ));

        // The newest by finished_at wins even when its id sorts first (a clock or timeline reset).
        let old = new_backup_id(BackupKind::Logical, chrono::Utc::now());
        let new = format!("20000101T000000Z-logical-{}", &old[old.len() - 6..]);
        repo.write_manifest(&manifest(&old, "2026-11-01T01:00:00Z"))
            .await
            .unwrap();
        repo.write_manifest(&manifest(&new, "2026-11-02T01:00:00Z"))
            .await
            .unwrap();
        // An interrupted backup: an artifact, no manifest.
        storage
            .put(
                "backups/20261103T000000Z-logical-aaaaaa/shop.dump.zst.age",
                vec![0u8; 5],
            )
            .await
            .unwrap();

        let ids: Vec<_> = repo
            .manifests()
            .await
            .unwrap()
            .backups
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(
            ids,
            [old.clone(), new.clone()],
            "{name}: invisible without a manifest, ordered by finished_at"
        );
        assert_eq!(
            repo.resolve("latest", Some(BackupKind::Logical))
                .await
                .unwrap()
                .id,
            new,
            "{name}"
        );
        assert!(repo
            .resolve("latest", Some(BackupKind::Physical))
            .await
            .is_err());
        assert_eq!(
            repo.manifest(&old).await.unwrap(),
            manifest(&old, "2026-11-01T01:00:00Z")
        );
        // Fresh leftovers may belong to a running backup: debris only after the safety margin.
        assert_eq!(repo.debris().await.unwrap(), [], "{name}");
        let later = chrono::Utc::now() + chrono::Duration::hours(2);
        let debris = repo.debris_at(later, DEBRIS_MARGIN).await.unwrap();
        assert_eq!(debris.len(), 1, "{name}");
        assert_eq!(
            (debris[0].id.as_str(), debris[0].bytes),
            ("20261103T000000Z-logical-aaaaaa", 5)
        );
        assert!(matches!(
            repo.manifest("../../ecobackup.json").await.unwrap_err(),
            Error::BackupNotFound { .. }
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_refuses_foreign_places() {
    let backends = backends().await;
    for (name, storage) in &backends.all {
        storage
            .put(
                "ecobackup.json",
                br#"{"format":"ecobackup-repository-v9"}"#.to_vec(),
            )
            .await
            .unwrap();
        let err = Repository::init(storage.clone(), vec![]).await.unwrap_err();
        assert!(
            matches!(err, Error::IncompatibleRepository { .. }),
            "{name}: {err:?}"
        );
        storage.delete("ecobackup.json").await.unwrap();
        storage
            .put("someone-elses/file.txt", b"x".to_vec())
            .await
            .unwrap();
        let err = Repository::init(storage.clone(), vec![]).await.unwrap_err();
        assert!(err.to_string().contains("not empty"), "{name}: {err}");
        assert_eq!(
            storage.get("ecobackup.json").await.unwrap(),
            None,
            "{name}: nothing written"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_modes_on_every_backend() {
    let backends = backends().await;
    let options = LockOptions::default();
    for (name, storage) in &backends.all {
        let a = Lock::acquire(storage, LockMode::Shared, "backup logical", &options)
            .await
            .unwrap();
        let b = Lock::acquire(storage, LockMode::Shared, "backup files", &options)
            .await
            .unwrap();
        let err = Lock::acquire(storage, LockMode::Exclusive, "prune", &options)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Locked { .. }) && err.to_string().contains("(shared lock, pid"),
            "{name}: {err}"
        );
        a.release().await.unwrap();
        b.release().await.unwrap();
        let prune = Lock::acquire(storage, LockMode::Exclusive, "prune", &options)
            .await
            .unwrap();
        let err = Lock::acquire(storage, LockMode::Shared, "backup logical", &options)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("is locked by prune (exclusive lock, pid")
                && err.to_string().contains(&prune.info().host),
            "{name}: {err}"
        );
        prune.release().await.unwrap();
        assert_eq!(storage.list("locks/").await.unwrap(), [], "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_lockers_never_hold_conflicting_locks() {
    let backends = backends().await;
    let mut options = LockOptions::default();
    options.settle = std::time::Duration::from_millis(300);
    for (name, storage) in &backends.all {
        for round in 0..4 {
            // Two exclusives, then an exclusive against a shared.
            let second = if round % 2 == 0 {
                LockMode::Exclusive
            } else {
                LockMode::Shared
            };
            let (a, b) = tokio::join!(
                Lock::acquire(storage, LockMode::Exclusive, "prune a", &options),
                Lock::acquire(storage, second, "writer b", &options),
            );
            assert!(
                !(a.is_ok() && b.is_ok()),
                "{name} round {round}: both got the lock"
            );
            for lock in [a, b].into_iter().flatten() {
                lock.release().await.unwrap();
            }
        }
    }
}
