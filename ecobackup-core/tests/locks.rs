//! The repository lock: shared for backups, exclusive for prune, leases renewed while held,
//! and what a holder must notice before it commits (a lease that ran out, an object taken
//! over). Most tests run on a `memory://` store with an injected clock; the cancelled
//! acquisition runs against the in-process S3 server, whose fault layer holds a listing back.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use ecobackup_core::repository::{
    Clock, InitOutcome, Lock, LockMode, LockOptions, Repository, LOCK_FOLDER,
};
use ecobackup_core::storage::{RepoUrl, Storage, StorageOptions};
use ecobackup_core::Error;
use ecobackup_testkit::{Fault, FaultRule, S3TestServer};

use common::storage::{s3_options, s3_storage};

/// A clock that moves only when told: a process paused for an hour is one `advance`.
#[derive(Debug)]
struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock(Mutex::new(Utc::now())))
    }
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

fn memory(name: &str) -> Storage {
    let unique = format!("locks-{name}-{}", rand_suffix());
    Storage::open(&RepoUrl::Memory(unique), &StorageOptions::default()).unwrap()
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn with_clock(clock: &Arc<ManualClock>) -> LockOptions {
    let mut options = LockOptions::default();
    options.clock = clock.clone();
    options
}

async fn lock_objects(storage: &Storage) -> usize {
    storage.list(LOCK_FOLDER).await.unwrap().len()
}

/// Polls until the lock folder is empty; false if it is not within `limit`.
async fn lock_folder_empties(storage: &Storage, limit: StdDuration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if lock_objects(storage).await == 0 {
            return true;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn shared_holders_coexist_and_exclusive_is_refused_naming_the_holder() {
    let storage = memory("modes");
    let options = LockOptions::default();
    let a = Lock::acquire(&storage, LockMode::Shared, "backup logical", &options)
        .await
        .unwrap();
    let b = Lock::acquire(&storage, LockMode::Shared, "backup physical", &options)
        .await
        .unwrap();
    assert_eq!(lock_objects(&storage).await, 2);
    let err = Lock::acquire(&storage, LockMode::Exclusive, "prune", &options)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Locked { .. })
            && msg.contains("is locked by backup")
            && msg.contains("(shared lock, pid"),
        "{msg}"
    );
    assert_eq!(
        lock_objects(&storage).await,
        2,
        "the refused lock removed its object"
    );
    a.release().await.unwrap();
    b.release().await.unwrap();

    let prune = Lock::acquire(&storage, LockMode::Exclusive, "prune", &options)
        .await
        .unwrap();
    let msg = Lock::acquire(&storage, LockMode::Shared, "backup logical", &options)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("is locked by prune (exclusive lock, pid") && msg.contains(prune.key()),
        "{msg}"
    );
    let msg = Lock::acquire(&storage, LockMode::Exclusive, "prune again", &options)
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("is locked by prune (exclusive lock"), "{msg}");
    prune.release().await.unwrap();
    assert_eq!(lock_objects(&storage).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_keeps_a_lock_alive_past_its_first_lease() {
    let storage = memory("renewal");
    let mut options = LockOptions::default();
    // Renewed four times a second, with seconds to spare: a loaded machine that stalls the
    // renewal task for a second still renews in time.
    options.lease = Duration::seconds(6);
    options.renew_every = StdDuration::from_millis(250);
    options.margin = Duration::seconds(1);
    options.skew = Duration::zero();
    let lock = Lock::acquire(&storage, LockMode::Shared, "backup logical", &options)
        .await
        .unwrap();
    let first_expiry = lock.info().expires_at;
    // Wait (without asserting on how long anything took) until the first lease has ended.
    while Utc::now() < first_expiry + Duration::seconds(1) {
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    assert!(lock.expires_at() > first_expiry, "the lease was renewed");
    lock.ensure_held().await.unwrap();
    // The renewed object, not the first lease, is what others see.
    let err = Lock::acquire(&storage, LockMode::Exclusive, "prune", &options)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    lock.release().await.unwrap();
    assert_eq!(lock_objects(&storage).await, 0);
}

#[tokio::test]
async fn a_lock_whose_object_was_taken_fails_ensure_held() {
    let storage = memory("stolen");
    let lock = Lock::acquire(
        &storage,
        LockMode::Shared,
        "backup logical",
        &LockOptions::default(),
    )
    .await
    .unwrap();
    lock.ensure_held().await.unwrap();
    storage.delete(lock.key()).await.unwrap();
    let msg = lock.ensure_held().await.unwrap_err().to_string();
    assert!(
        msg.contains("no longer held") && msg.contains("removed") && msg.contains(lock.key()),
        "{msg}"
    );
}

#[tokio::test]
async fn a_paused_holder_notices_its_expired_lease_and_loses_it_to_a_taker() {
    let storage = memory("paused");
    let clock = ManualClock::new();
    let options = with_clock(&clock);
    let backup = Lock::acquire(&storage, LockMode::Shared, "backup logical", &options)
        .await
        .unwrap();
    // Within its lease (and margin) the holder may commit.
    clock.advance(options.lease - options.margin - Duration::seconds(1));
    backup.ensure_held().await.unwrap();
    // The process sleeps past its lease (and the skew allowance): prune takes it over.
    clock.advance(options.margin + options.skew + Duration::seconds(2));
    let prune = Lock::acquire(&storage, LockMode::Exclusive, "prune", &options)
        .await
        .unwrap();
    assert_eq!(
        lock_objects(&storage).await,
        1,
        "the expired lock was deleted"
    );
    let msg = backup.ensure_held().await.unwrap_err().to_string();
    assert!(msg.contains("no longer held"), "{msg}");
    prune.release().await.unwrap();
    drop(backup);
}

#[tokio::test]
async fn a_lease_within_its_margin_is_not_enough_to_commit() {
    let storage = memory("margin");
    let clock = ManualClock::new();
    let options = with_clock(&clock);
    let lock = Lock::acquire(&storage, LockMode::Shared, "backup logical", &options)
        .await
        .unwrap();
    clock.advance(options.lease - options.margin);
    let msg = lock.ensure_held().await.unwrap_err().to_string();
    assert!(msg.contains("paused or could not renew"), "{msg}");
    lock.release().await.unwrap();
}

#[tokio::test]
async fn a_running_backups_folder_is_not_debris() {
    let storage = memory("debris");
    let repo = match Repository::init(storage.clone(), vec![]).await.unwrap() {
        InitOutcome::Created(repo) => repo,
        other => panic!("{other:?}"),
    };
    let lock = Lock::acquire(
        &storage,
        LockMode::Shared,
        "backup logical",
        &LockOptions::default(),
    )
    .await
    .unwrap();
    let key = Repository::artifact_key("20261122T000000Z-logical-runnin", "shop.dump.zst.age");
    storage.put(&key, vec![1u8; 7]).await.unwrap();
    // Even with no safety margin at all, the live lock keeps the folder.
    let now = Utc::now() + Duration::seconds(1);
    assert_eq!(repo.debris_at(now, Duration::zero()).await.unwrap(), []);
    lock.release().await.unwrap();
    let debris = repo.debris_at(now, Duration::zero()).await.unwrap();
    assert_eq!(debris.len(), 1);
    assert_eq!(debris[0].keys, [key]);
    // And with the default margin, a folder written a moment ago is never debris.
    assert_eq!(repo.debris().await.unwrap(), []);
}

#[tokio::test]
async fn a_dropped_lock_removes_its_object() {
    let storage = memory("dropped");
    let lock = Lock::acquire(
        &storage,
        LockMode::Exclusive,
        "prune",
        &LockOptions::default(),
    )
    .await
    .unwrap();
    drop(lock);
    assert!(lock_folder_empties(&storage, StdDuration::from_secs(10)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_acquisition_leaves_no_lock_behind() {
    let s3 = S3TestServer::start().await;
    let storage = s3_storage(s3.bucket(), "repo", &s3_options(&s3));
    // The lock object is written, then the listing hangs: the caller gives up mid-acquire,
    // once the listing has been asked for (the lock object written before it).
    s3.add_fault(
        FaultRule::new(Fault::Delay(StdDuration::from_secs(600)))
            .method("GET")
            .query_contains("list-type"),
    );
    let attempt = tokio::spawn({
        let storage = storage.clone();
        async move {
            Lock::acquire(
                &storage,
                LockMode::Shared,
                "backup logical",
                &LockOptions::default(),
            )
            .await
        }
    });
    let listing = || {
        s3.requests()
            .iter()
            .any(|r| r.method == "GET" && r.query.contains("list-type"))
    };
    let started = std::time::Instant::now();
    while !listing() {
        assert!(
            started.elapsed() < StdDuration::from_secs(45),
            "the acquisition never listed the locks"
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    assert!(
        !attempt.is_finished(),
        "the acquisition should still be waiting"
    );
    attempt.abort();
    assert!(attempt.await.unwrap_err().is_cancelled());
    assert!(
        s3.requests()
            .iter()
            .any(|r| r.method == "PUT" && r.path.contains("/locks/repository/")),
        "the lock object was written before the cancel"
    );
    assert!(lock_folder_empties(&storage, StdDuration::from_secs(20)).await);
}
