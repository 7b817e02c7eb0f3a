//! The repository lock: shared for backups (many at once), exclusive for prune.
//!
//! Object stores have no create-if-absent that every provider supports, so a lock is taken
//! optimistically, in one folder for the whole repository (`locks/repository/`):
//!
//! 1. write our own lock object (mode, owner, `acquired_at`, `expires_at`, a random `token`);
//! 2. list the folder and read every other lock object: an expired one (its `expires_at` plus
//!    the clock-skew allowance has passed) is deleted; a live one *conflicts* with ours when
//!    either of the two is exclusive;
//! 3. if a conflicting lock is older than ours or as old — by (`acquired_at`, `token`) — we
//!    lose: delete ours and fail, naming its holder. If only younger conflicting locks are
//!    there, they are contenders that will back off when they see ours, or holders that won
//!    before ours was written: list again until they are gone, for at most `settle`, else lose;
//! 4. we win only on a listing, taken after our object was written, that shows no conflicting
//!    live lock.
//!
//! Rule 4 alone makes two conflicting winners impossible on a store whose listings show every
//! completed write (S3, B2, R2, a directory): of two writers, the one that lists last sees the
//! other's object. Ages decide only who waits and who yields, so that two racing processes do
//! not both give up.
//!
//! While held, a task renews the lease (rewrites `expires_at`) every `renew_every`. A renewal
//! that finds the lease already expired, or the object gone (another process took it over),
//! marks the lock lost. [`Lock::ensure_held`] checks that before a backup commits: the lease
//! must have at least `margin` left and the object must still be ours. Release (or drop) stops
//! the renewal and deletes the object.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::storage::Storage;

/// The folder of the repository lock's objects.
pub const LOCK_FOLDER: &str = "locks/repository/";

/// Whether a lock may be shared with other holders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Backups: any number at once, never beside an exclusive lock.
    Shared,
    /// Prune: alone.
    Exclusive,
}

impl LockMode {
    fn conflicts_with(self, other: LockMode) -> bool {
        self == LockMode::Exclusive || other == LockMode::Exclusive
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LockMode::Shared => "shared",
            LockMode::Exclusive => "exclusive",
        })
    }
}

/// What a lock object holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Shared or exclusive.
    pub mode: LockMode,
    /// Who took it (`backup logical`, `prune`, a service's name).
    pub owner: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// 16 random hex digits: tells this lock from any other, and breaks ties of `acquired_at`.
    pub token: String,
    /// When it was taken (the holder's clock). Never changes while it is held.
    pub acquired_at: DateTime<Utc>,
    /// Until when the lease holds; renewed while the holder works.
    pub expires_at: DateTime<Utc>,
}

impl LockInfo {
    /// `owner (exclusive lock, pid 12 on db1, since …)`, for messages.
    pub fn holder(&self) -> String {
        format!(
            "{} ({} lock, pid {} on {}, since {})",
            self.owner,
            self.mode,
            self.pid,
            self.host,
            self.acquired_at.to_rfc3339()
        )
    }

    /// The order of acquisition: older locks win ties against younger ones.
    fn age_key(&self) -> (DateTime<Utc>, &str) {
        (self.acquired_at, &self.token)
    }

    /// Still live at `now`, allowing for `skew` between the holder's clock and ours.
    pub fn is_live(&self, now: DateTime<Utc>, skew: Duration) -> bool {
        self.expires_at + skew > now
    }
}

/// Where the current time comes from (the system clock; tests inject their own).
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Lease times and the clock. The defaults suit hosts whose clocks agree within 30 s (NTP).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LockOptions {
    /// How long a lease lasts without renewal: a crashed holder blocks others at most this
    /// long (plus `skew`).
    pub lease: Duration,
    /// How often the lease is renewed while held; well below `lease - margin`.
    pub renew_every: std::time::Duration,
    /// How much lease must be left for [`Lock::ensure_held`] to pass: more than a manifest
    /// write takes.
    pub margin: Duration,
    /// The largest difference assumed between two hosts' clocks: a lock is taken over only
    /// when it expired more than this long ago.
    pub skew: Duration,
    /// How long to wait for younger conflicting locks to back off before giving up.
    pub settle: std::time::Duration,
    /// The clock.
    pub clock: Arc<dyn Clock>,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            lease: Duration::minutes(5),
            renew_every: std::time::Duration::from_secs(60),
            margin: Duration::seconds(90),
            skew: Duration::seconds(30),
            settle: std::time::Duration::from_secs(5),
            clock: Arc::new(SystemClock),
        }
    }
}

/// The lease as the holder knows it; shared with the renewal task.
#[derive(Debug)]
struct Lease {
    expires_at: DateTime<Utc>,
    /// Why the lock is no longer ours, once that is known.
    lost: Option<String>,
}

fn lease_state(lease: &Mutex<Lease>) -> MutexGuard<'_, Lease> {
    lease.lock().unwrap_or_else(|p| p.into_inner())
}

/// A held repository lock. Release it with [`Lock::release`]; dropping it stops the renewal
/// and deletes its object in the background (best effort: if that cannot run, the lease
/// expires).
#[derive(Debug)]
pub struct Lock {
    storage: Storage,
    key: String,
    info: LockInfo,
    options: LockOptions,
    lease: Arc<Mutex<Lease>>,
    stop: watch::Sender<bool>,
    renewal: Option<JoinHandle<()>>,
    released: bool,
}

/// Deletes a lock object when dropped before it is disarmed: a cancelled acquisition leaves
/// nothing behind.
struct Pending {
    storage: Storage,
    key: Option<String>,
}

impl Pending {
    fn disarm(mut self) -> String {
        self.key.take().unwrap_or_default()
    }

    async fn delete_now(mut self) {
        if let Some(key) = self.key.take() {
            if let Err(e) = self.storage.delete(&key).await {
                tracing::warn!(lock = %key, error = %e, "could not delete our lock object; it expires by itself");
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            delete_in_background(self.storage.clone(), key, None);
        }
    }
}

/// Deletes `key` in a background task, after `renewal` (if any) has stopped.
fn delete_in_background(storage: Storage, key: String, renewal: Option<JoinHandle<()>>) {
    // Inside a cancelled operation, it waits for this delete before it returns.
    crate::cancel::Cleanup::spawn(None, async move {
        if let Some(renewal) = renewal {
            let _ = renewal.await;
        }
        if let Err(e) = storage.delete(&key).await {
            tracing::warn!(lock = %key, error = %e, "could not delete a dropped lock object; it expires by itself");
        }
    });
}

/// What one look at the lock folder decided.
enum Verdict {
    Won,
    /// A conflicting lock at least as old as ours holds (or an unreadable lock object).
    Lost(Error),
    /// Only younger conflicting locks: wait for them to back off.
    Wait(Error),
}

impl Lock {
    /// Takes the repository lock in `mode` for `owner`, or fails with [`Error::Locked`]
    /// naming a conflicting holder. The lease is renewed in the background until release.
    pub async fn acquire(
        storage: &Storage,
        mode: LockMode,
        owner: &str,
        options: &LockOptions,
    ) -> Result<Lock> {
        let now = options.clock.now();
        let token = format!("{:016x}", rand::random::<u64>());
        let info = LockInfo {
            mode,
            owner: owner.to_owned(),
            host: hostname(),
            pid: std::process::id(),
            token: token.clone(),
            acquired_at: now,
            expires_at: now + options.lease,
        };
        let key = format!(
            "{LOCK_FOLDER}{}-{token}.json",
            now.format("%Y%m%dT%H%M%S%.6fZ")
        );
        let pending = Pending {
            storage: storage.clone(),
            key: Some(key.clone()),
        };
        storage.put(&key, encode(&info)?).await?;
        let deadline = tokio::time::Instant::now() + options.settle;
        loop {
            match contest(storage, &key, &info, options).await {
                Ok(Verdict::Won) => break,
                Ok(Verdict::Wait(e)) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "waiting for a younger lock to back off");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Ok(Verdict::Lost(e) | Verdict::Wait(e)) | Err(e) => {
                    pending.delete_now().await;
                    return Err(e);
                }
            }
        }
        let key = pending.disarm();
        let lease = Arc::new(Mutex::new(Lease {
            expires_at: info.expires_at,
            lost: None,
        }));
        let (stop, stopped) = watch::channel(false);
        let renewal = tokio::spawn(renew(
            storage.clone(),
            key.clone(),
            info.clone(),
            options.clone(),
            Arc::clone(&lease),
            stopped,
        ));
        Ok(Lock {
            storage: storage.clone(),
            key,
            info,
            options: options.clone(),
            lease,
            stop,
            renewal: Some(renewal),
            released: false,
        })
    }

    /// What this lock says about its holder (as acquired; see [`Lock::expires_at`]).
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// The lock object's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Until when the lease holds, as last renewed.
    pub fn expires_at(&self) -> DateTime<Utc> {
        lease_state(&self.lease).expires_at
    }

    /// Checks, right before committing, that the lock is still ours: the lease has at least
    /// `margin` left (a process paused past its lease fails here) and the lock object still
    /// exists with our token (one taken over as expired fails here). An error means: do not
    /// commit.
    pub async fn ensure_held(&self) -> Result<()> {
        let lost = |why: String| {
            Error::Cancelled(format!(
                "the repository lock {} is no longer held ({why}); prune may already treat this run's files as debris, run it again",
                self.key
            ))
        };
        let (expires_at, reason) = {
            let lease = lease_state(&self.lease);
            (lease.expires_at, lease.lost.clone())
        };
        if let Some(reason) = reason {
            return Err(lost(reason));
        }
        let now = self.options.clock.now();
        if now + self.options.margin >= expires_at {
            return Err(lost(format!(
                "its lease ends at {}, less than {} s from now: the process was paused or could not renew it",
                expires_at.to_rfc3339(),
                self.options.margin.num_seconds()
            )));
        }
        match self.storage.get(&self.key).await? {
            None => Err(lost(
                "its object was removed: another process took it over as expired".to_owned(),
            )),
            Some(bytes) => match serde_json::from_slice::<LockInfo>(&bytes) {
                Ok(found) if found.token == self.info.token => Ok(()),
                _ => Err(lost(
                    "its object was replaced by another process".to_owned(),
                )),
            },
        }
    }

    /// Stops the renewal and removes the lock object.
    pub async fn release(mut self) -> Result<()> {
        self.released = true;
        let _ = self.stop.send(true);
        if let Some(renewal) = self.renewal.take() {
            // A renewal in flight finishes first: none can rewrite the object after the delete.
            let _ = renewal.await;
        }
        self.storage.delete(&self.key).await
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if !self.released {
            delete_in_background(self.storage.clone(), self.key.clone(), self.renewal.take());
        }
    }
}

fn encode(info: &LockInfo) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(info).map_err(|e| Error::io("encoding a lock", e.into()))
}

fn locked(storage: &Storage, held: &LockInfo, key: &str) -> Error {
    Error::Locked {
        scope: format!("repository {}", storage.url()),
        holder: held.holder(),
        key: key.to_owned(),
        expires_at: held.expires_at.to_rfc3339(),
    }
}

/// One look at the lock folder, after our object was written.
async fn contest(
    storage: &Storage,
    own_key: &str,
    own: &LockInfo,
    options: &LockOptions,
) -> Result<Verdict> {
    let objects = storage.list(LOCK_FOLDER).await?;
    if !objects.iter().any(|o| o.key == own_key) {
        return Ok(Verdict::Lost(Error::Storage {
            op: "locking",
            key: own_key.to_owned(),
            repo: storage.url().to_owned(),
            detail: "our own lock object is missing from the listing right after it was written; the store does not list what it stored (not strongly consistent), locks cannot work on it".to_owned(),
            fault: crate::error::StorageFault::Other,
        }));
    }
    let now = options.clock.now();
    let mut younger = None;
    for other in objects.iter().filter(|o| o.key != own_key) {
        let Some(bytes) = storage.get(&other.key).await? else {
            continue; // released meanwhile
        };
        let Ok(held) = serde_json::from_slice::<LockInfo>(&bytes) else {
            return Ok(Verdict::Lost(Error::Locked {
                scope: format!("repository {}", storage.url()),
                holder: "an unreadable lock object".to_owned(),
                key: other.key.clone(),
                expires_at: "unknown".to_owned(),
            }));
        };
        if !held.is_live(now, options.skew) {
            tracing::warn!(lock = %other.key, holder = %held.holder(), "taking over an expired lock");
            storage.delete(&other.key).await?;
            continue;
        }
        if !own.mode.conflicts_with(held.mode) {
            continue;
        }
        if held.age_key() <= own.age_key() {
            return Ok(Verdict::Lost(locked(storage, &held, &other.key)));
        }
        younger.get_or_insert_with(|| locked(storage, &held, &other.key));
    }
    Ok(match younger {
        Some(e) => Verdict::Wait(e),
        None => Verdict::Won,
    })
}

/// Rewrites the lock object's `expires_at` every `renew_every`, until aborted or lost.
async fn renew(
    storage: Storage,
    key: String,
    mut info: LockInfo,
    options: LockOptions,
    lease: Arc<Mutex<Lease>>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(options.renew_every) => {}
            _ = stopped.changed() => return,
        }
        let now = options.clock.now();
        let expires_at = lease_state(&lease).expires_at;
        let lost = if now >= expires_at {
            // Another process may have taken it over already: never resurrect it.
            Some(format!(
                "its lease ended at {} before it could be renewed",
                expires_at.to_rfc3339()
            ))
        } else {
            match storage.get(&key).await {
                Ok(None) => Some("its object was removed by another process".to_owned()),
                Ok(Some(bytes)) => match serde_json::from_slice::<LockInfo>(&bytes) {
                    Ok(found) if found.token == info.token => None,
                    _ => Some("its object was replaced by another process".to_owned()),
                },
                Err(e) => {
                    tracing::warn!(lock = %key, error = %e, "could not renew the repository lock; retrying");
                    continue;
                }
            }
        };
        if let Some(reason) = lost {
            tracing::warn!(lock = %key, reason = %reason, "the repository lock was lost");
            lease_state(&lease).lost = Some(reason);
            return;
        }
        info.expires_at = now + options.lease;
        let written = match encode(&info) {
            Ok(body) => storage.put(&key, body).await,
            Err(e) => Err(e),
        };
        match written {
            Ok(()) => lease_state(&lease).expires_at = info.expires_at,
            Err(e) => {
                tracing::warn!(lock = %key, error = %e, "could not renew the repository lock; retrying")
            }
        }
    }
}

/// The acquisition time of the oldest lock that may still be live at `now` (unreadable lock
/// objects count as live since their listing time): nothing written after it is debris.
pub(crate) async fn oldest_live_lock(
    storage: &Storage,
    now: DateTime<Utc>,
    skew: Duration,
) -> Result<Option<DateTime<Utc>>> {
    let mut oldest: Option<DateTime<Utc>> = None;
    for object in storage.list(LOCK_FOLDER).await? {
        let Some(bytes) = storage.get(&object.key).await? else {
            continue;
        };
        let acquired = match serde_json::from_slice::<LockInfo>(&bytes) {
            Ok(held) if held.is_live(now, skew) => held.acquired_at,
            Ok(_) => continue,
            Err(_) => object.modified,
        };
        oldest = Some(oldest.map_or(acquired, |o| o.min(acquired)));
    }
    Ok(oldest)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// Runs `work` under the repository's shared lock, named `owner`: prune (which takes the
/// exclusive lock) cannot delete a backup or WAL while a restore, drill or verify reads it.
/// The lock is released whatever `work` returns. A running prune stops the caller; a lock the
/// store refuses to write (access denied: a restore host with read-only credentials) is a
/// warning, and the work goes on unprotected; any other failure to take it is returned.
pub async fn under_shared_lock<T, E: From<Error>>(
    storage: &Storage,
    owner: &str,
    work: impl std::future::Future<Output = std::result::Result<T, E>>,
) -> std::result::Result<T, E> {
    let lock = match Lock::acquire(storage, LockMode::Shared, owner, &LockOptions::default()).await
    {
        Ok(lock) => Some(lock),
        Err(e @ Error::Storage { .. }) if e.kind() == crate::error::ErrorKind::Auth => {
            tracing::warn!(error = %e, "could not take the repository's shared lock (read-only credentials?): a prune running meanwhile could delete what this reads");
            None
        }
        Err(e) => return Err(e.into()),
    };
    let outcome = work.await;
    if let Some(lock) = lock {
        if let Err(e) = lock.release().await {
            tracing::warn!(error = %e, "could not release the repository lock; it expires by itself");
        }
    }
    outcome
}
