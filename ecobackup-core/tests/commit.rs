//! The end of a backup against the in-process S3 server: a manifest write that failed but
//! landed keeps the backup, one that certainly did not land removes the artifacts, one whose
//! fate is unknown touches nothing, and a holder that lost its lock never writes a manifest.

mod common;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use ecobackup_core::artifact::{self, Sealing};
use ecobackup_core::io::ReaderSource;
use ecobackup_core::progress::NoProgress;
use ecobackup_core::repository::{
    new_backup_id, ArtifactEntry, BackupKind, Clock, InitOutcome, Lock, LockMode, LockOptions,
    Manifest, Repository, SourceFacts, MANIFEST_VERSION,
};
use ecobackup_core::Error;
use ecobackup_testkit::{Fault, FaultRule, S3TestServer};

use common::storage::{s3_options, s3_storage};

/// A repository on a fresh S3 server, with one quick retry per request.
async fn repository(s3: &S3TestServer) -> Repository {
    let mut options = s3_options(s3);
    options.max_retries = 1;
    let storage = s3_storage(s3.bucket(), "prod", &options);
    match Repository::init(storage, vec![]).await.unwrap() {
        InitOutcome::Created(repo) => repo,
        other => panic!("{other:?}"),
    }
}

/// A backup's artifacts, stored as a backup run stores them (not encrypted: no key needed).
async fn store_artifacts(repo: &Repository, id: &str) -> Vec<ArtifactEntry> {
    let sealing = Sealing {
        level: 3,
        recipients: vec![],
    };
    let mut stored = Vec::new();
    for (name, body) in [("shop.dump.zst", "rows"), ("catalog.json.zst", "{}")] {
        let source = ReaderSource::new(name, std::io::Cursor::new(body.as_bytes().to_vec()));
        stored.push(
            artifact::store(repo, id, name, source, &sealing, &NoProgress)
                .await
                .unwrap(),
        );
    }
    stored
}

fn manifest(id: &str, artifacts: Vec<ArtifactEntry>) -> Manifest {
    Manifest {
        manifest_version: MANIFEST_VERSION,
        id: id.to_owned(),
        kind: BackupKind::Logical,
        tags: Default::default(),
        started_at: Utc::now(),
        finished_at: Utc::now(),
        source: SourceFacts::default(),
        artifacts,
        written_by: "ecobackup test".into(),
        targets: Vec::new(),
    }
}

async fn objects_of(repo: &Repository, id: &str) -> Vec<String> {
    let folder = Repository::artifact_key(id, "");
    let keys: Vec<String> = repo
        .storage()
        .list(&folder)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key.trim_start_matches(&folder).to_owned())
        .collect();
    keys
}

async fn shared_lock(repo: &Repository, options: &LockOptions) -> Lock {
    Lock::acquire(repo.storage(), LockMode::Shared, "backup logical", options)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_stored_before_the_connection_dropped_commits_the_backup() {
    let s3 = S3TestServer::start().await;
    let repo = repository(&s3).await;
    let id = new_backup_id(BackupKind::Logical, Utc::now());
    let stored = store_artifacts(&repo, &id).await;
    let lock = shared_lock(&repo, &LockOptions::default()).await;
    // Every manifest PUT is executed, and then its answer is lost: retries exhausted.
    s3.add_fault(
        FaultRule::new(Fault::ResetAfterExecuting)
            .method("PUT")
            .path_contains("/manifest.json")
            .forever(),
    );
    let written = repo
        .finish_backup(&id, &lock, Ok(manifest(&id, stored.clone())), &stored)
        .await
        .unwrap();
    lock.release().await.unwrap();
    assert_eq!(written.id, id);
    assert_eq!(
        objects_of(&repo, &id).await,
        ["catalog.json.zst", "manifest.json", "shop.dump.zst"],
        "the artifacts stay beside the manifest"
    );
    let listing = repo.manifests().await.unwrap();
    assert_eq!(listing.backups, [written]);
    assert!(listing.bad.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_that_certainly_was_not_stored_removes_the_artifacts() {
    let s3 = S3TestServer::start().await;
    let repo = repository(&s3).await;
    let id = new_backup_id(BackupKind::Logical, Utc::now());
    let stored = store_artifacts(&repo, &id).await;
    let lock = shared_lock(&repo, &LockOptions::default()).await;
    s3.add_fault(
        FaultRule::new(Fault::ResetConnection)
            .method("PUT")
            .path_contains("/manifest.json")
            .forever(),
    );
    let err = repo
        .finish_backup(&id, &lock, Ok(manifest(&id, stored.clone())), &stored)
        .await
        .unwrap_err();
    lock.release().await.unwrap();
    assert!(matches!(err, Error::Storage { .. }), "{err}");
    assert_eq!(objects_of(&repo, &id).await, Vec::<String>::new());
    assert_eq!(repo.manifests().await.unwrap().backups, []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_it_cannot_be_known_whether_the_manifest_landed_nothing_is_deleted() {
    let s3 = S3TestServer::start().await;
    let repo = repository(&s3).await;
    let id = new_backup_id(BackupKind::Logical, Utc::now());
    let stored = store_artifacts(&repo, &id).await;
    let lock = shared_lock(&repo, &LockOptions::default()).await;
    // The write may have landed, and the store stops answering about the manifest.
    s3.add_fault(
        FaultRule::new(Fault::ResetAfterExecuting)
            .method("PUT")
            .path_contains("/manifest.json")
            .forever(),
    );
    s3.add_fault(
        FaultRule::new(Fault::Status(503))
            .method("GET")
            .path_contains("/manifest.json")
            .forever(),
    );
    let err = repo
        .finish_backup(&id, &lock, Ok(manifest(&id, stored.clone())), &stored)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("nothing was deleted") && msg.contains(&id) && !msg.contains('\n'),
        "{msg}"
    );
    s3.clear_faults();
    lock.release().await.unwrap();
    assert_eq!(
        objects_of(&repo, &id).await,
        ["catalog.json.zst", "manifest.json", "shop.dump.zst"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_backup_removes_what_it_stored() {
    let s3 = S3TestServer::start().await;
    let repo = repository(&s3).await;
    let id = new_backup_id(BackupKind::Logical, Utc::now());
    let stored = store_artifacts(&repo, &id).await;
    let lock = shared_lock(&repo, &LockOptions::default()).await;
    let failed = Err(Error::Cancelled("pg_dump was stopped".into()));
    let err = repo
        .finish_backup(&id, &lock, failed, &stored)
        .await
        .unwrap_err();
    lock.release().await.unwrap();
    assert!(err.to_string().contains("pg_dump was stopped"), "{err}");
    assert_eq!(objects_of(&repo, &id).await, Vec::<String>::new());
}

/// A clock that moves only when told.
#[derive(Debug)]
struct ManualClock(Mutex<DateTime<Utc>>);

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_paused_past_its_lease_aborts_before_writing_the_manifest() {
    let s3 = S3TestServer::start().await;
    let repo = repository(&s3).await;
    let id = new_backup_id(BackupKind::Logical, Utc::now());
    let stored = store_artifacts(&repo, &id).await;
    let clock = Arc::new(ManualClock(Mutex::new(Utc::now())));
    let mut options = LockOptions::default();
    options.clock = clock.clone();
    let lock = shared_lock(&repo, &options).await;
    *clock.0.lock().unwrap() += options.lease + Duration::minutes(10);
    s3.clear_requests();
    let err = repo
        .finish_backup(&id, &lock, Ok(manifest(&id, stored.clone())), &stored)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Cancelled(_)), "{err}");
    assert!(err.to_string().contains("no longer held"), "{err}");
    assert!(
        !s3.requests()
            .iter()
            .any(|r| r.method == "PUT" && r.path.ends_with("/manifest.json")),
        "no manifest write was even tried"
    );
    assert_eq!(objects_of(&repo, &id).await, Vec::<String>::new());
    lock.release().await.unwrap();
}
