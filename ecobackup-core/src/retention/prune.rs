//! `prune`: a retention plan carried out on a repository.
//!
//! Under the repository's exclusive lock (no backup runs meanwhile: backups hold the shared
//! lock), prune lists the backups, plans with [`plan`], and deletes, in an order that leaves
//! the repository consistent wherever it stops (a failed request, a kill -9):
//!
//! 1. each planned backup: its `manifest.json` first, then the manifest's signature, then the
//!    artifacts. A backup without its manifest does not exist, so a backup is never listed
//!    whose artifacts are gone; what a stop leaves is a folder without a manifest — debris,
//!    removed by the next run (its objects are as old as the backup);
//! 2. the WAL no kept physical backup needs: on each timeline, the files (segments, `.backup`,
//!    `.partial`, with their records and signatures) before the start segment of the oldest
//!    kept backup on that timeline or an earlier one. `.history` files stay. Without a kept
//!    physical backup whose WAL is archived, no WAL is touched;
//! 3. debris: folders without a manifest older than the margin and every live lock.
//!
//! Backups whose manifest is unreadable or fails the signature check are never judged and
//! never deleted: they are reported (`verify --all` says why).
//!
//! Incomplete multipart uploads are not listed here (the object store client has no call for
//! it): a bucket lifecycle rule aborts them (README, "Retention").

use crate::error::remedy;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt as _, TryStreamExt as _};
use serde::Serialize;

use super::{plan, Candidate, RetentionPlan, ValidatedPolicy};
use crate::error::Result;
use crate::progress::Progress;
use crate::repository::{
    is_backup_id, BackupKind, BadBackup, Debris, Lock, LockMode, LockOptions, Manifest, Repository,
    DEBRIS_MARGIN,
};
use crate::storage::Storage;
use crate::wal::Segment;

/// WAL files deleted at once.
const WAL_DELETE_CONCURRENCY: usize = 16;

/// WAL files deleted between two checks of the lock's lease.
const WAL_BATCH: usize = 1000;

/// How to prune.
#[derive(Clone)]
#[non_exhaustive]
pub struct PruneOptions {
    /// Plan and report only; delete nothing (and take no lock).
    pub dry_run: bool,
    /// Delete even when the plan deletes more than half of the backups.
    pub allow_large: bool,
    /// The time the policy is applied at.
    pub now: DateTime<Utc>,
    /// How old a folder without a manifest must be to be debris.
    pub debris_margin: Duration,
    /// The repository lock's timings.
    pub lock: LockOptions,
    /// Cancels the operation: it stops, cleans up what it started (uploads, stored artifacts,
    /// its lock) and returns [`Error::Cancelled`](crate::Error::Cancelled). Never fires by default.
    pub cancel: crate::cancel::CancellationToken,
}

impl Default for PruneOptions {
    /// Deletes, refuses large plans, [`DEBRIS_MARGIN`], the default lock, and `now` read when
    /// this is built: build one per run (a long-lived value would apply the policy at a time
    /// long past).
    fn default() -> Self {
        PruneOptions {
            dry_run: false,
            allow_large: false,
            now: Utc::now(),
            debris_margin: DEBRIS_MARGIN,
            lock: LockOptions::default(),
            cancel: Default::default(),
        }
    }
}

/// What prune decided and did.
#[derive(Clone, Debug, Serialize)]
pub struct PruneReport {
    /// Every judged backup, kept or deleted, with its reasons.
    pub plan: RetentionPlan,
    /// Nothing was deleted because of this (a plan deleting more than half without
    /// `allow_large`); `None` when prune went ahead (or only planned, with `dry_run`).
    pub held_back: Option<String>,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Whether the deletions below were carried out (not in a dry run, nor when held back).
    pub applied: bool,
    /// The backups deleted (or that would be, when not applied).
    pub deleted: Vec<String>,
    /// Backups the plan deletes that are still under S3 Object Lock (`[retention] lock`):
    /// left for a later run.
    pub locked: Vec<LockedBackup>,
    /// Backups whose manifest cannot be used: left alone.
    pub unusable: Vec<BadBackup>,
    /// The WAL expired.
    pub wal: WalExpiry,
    /// The debris removed.
    pub debris: Vec<DebrisRemoved>,
}

/// The WAL prune removes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WalExpiry {
    /// Per timeline (`00000001`) of the archive, the first segment kept; a timeline not named
    /// here loses every segment (no kept backup needs it).
    pub kept_from: BTreeMap<String, String>,
    /// The WAL files removed (or that would be), by name.
    pub files: Vec<String>,
    /// Their stored size.
    pub bytes: u64,
    /// Why no WAL is expired, when none is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub untouched: Option<String>,
}

/// A backup the plan deletes whose objects are still locked.
#[derive(Clone, Debug, Serialize)]
pub struct LockedBackup {
    /// The backup.
    pub id: String,
    /// When its lock ends (at the latest: its finish time plus the lock's length).
    pub until: DateTime<Utc>,
}

/// One removed folder without a manifest.
#[derive(Clone, Debug, Serialize)]
pub struct DebrisRemoved {
    /// The folder's backup id.
    pub id: String,
    /// How many objects it held.
    pub objects: usize,
    /// Their size.
    pub bytes: u64,
}

/// Applies `policy` to `repo` under the repository's exclusive lock ([`Error::Locked`](crate::Error::Locked)
/// while a backup, restore, drill or verify holds the shared one); a dry run takes no lock and
/// deletes nothing. Deletions stop at the first failed request, leaving the repository
/// consistent: run it again to finish.
///
/// Cancel safety: `options.cancel` stops it cleanly (see [`crate::cancel`]); dropping the future
/// commits nothing, its clean-up then runs in background tasks.
pub async fn prune(
    repo: &Repository,
    policy: &ValidatedPolicy,
    options: &PruneOptions,
    progress: &dyn Progress,
) -> Result<PruneReport> {
    let lock = if options.dry_run {
        None
    } else {
        Some(Lock::acquire(repo.storage(), LockMode::Exclusive, "prune", &options.lock).await?)
    };
    let outcome = crate::cancel::cancellable(
        &options.cancel,
        "prune",
        run(repo, policy, options, lock.as_ref(), progress),
    )
    .await;
    if let Some(lock) = lock {
        if let Err(e) = lock.release().await {
            tracing::warn!(error = %e, "could not release the prune lock; it expires by itself");
        }
    }
    outcome
}

async fn run(
    repo: &Repository,
    policy: &ValidatedPolicy,
    options: &PruneOptions,
    lock: Option<&Lock>,
    progress: &dyn Progress,
) -> Result<PruneReport> {
    let listing = repo.manifests().await?;
    let candidates: Vec<Candidate> = listing
        .backups
        .iter()
        .map(Candidate::from_manifest)
        .collect();
    let plan = plan(policy, &candidates, options.now);
    let held_back = (plan.deletes_more_than_half() && !options.allow_large).then(|| {
        let (deletes, total) = (plan.delete.len(), plan.delete.len() + plan.keep.len());
        remedy!(
            cli: "the policy deletes {deletes} of {total} backups, more than half: check the plan (prune --dry-run) and run prune --yes if it is right",
            library: "the policy deletes {deletes} of {total} backups, more than half: check the plan (a dry run) and prune with allow_large if it is right",
        )
    });
    // Objects written with Object Lock cannot be deleted before their date: an object written
    // at `t` is locked until `t` + the lock's length at most (the date was set when the
    // writing command opened the store, before `t`).
    let lock_length = policy.object_lock().map(|(_, length)| length);
    let locked_until = |written: DateTime<Utc>| {
        lock_length
            .map(|length| written + length)
            .filter(|until| *until > options.now)
    };
    // Backups still under lock stay listed this run: their WAL stays too.
    let kept: BTreeSet<&str> = plan
        .keep
        .iter()
        .chain(
            plan.delete
                .iter()
                .filter(|d| locked_until(d.finished_at).is_some()),
        )
        .map(|d| d.id.as_str())
        .collect();
    let kept_physical: Vec<&Manifest> = listing
        .backups
        .iter()
        .filter(|m| m.kind == BackupKind::Physical && kept.contains(m.id.as_str()))
        .collect();
    // A physical backup prune cannot judge still needs its WAL: fail closed.
    let unjudged: Vec<&str> = listing
        .bad
        .iter()
        .filter(|b| !matches!(b.kind(), Some(BackupKind::Logical | BackupKind::Files)))
        .map(|b| b.id.as_str())
        .collect();
    let (wal, wal_keys) = if unjudged.is_empty() {
        expire_wal(repo.storage(), &kept_physical, &locked_until).await?
    } else {
        let unjudged = unjudged.join(", ");
        let untouched = remedy!(
            cli: "the manifests of {unjudged} cannot be used, and such a physical backup may need any archived WAL: no WAL is expired until `ecobackup verify --all` is clean",
            library: "the manifests of {unjudged} cannot be used, and such a physical backup may need any archived WAL: no WAL is expired until every backup verifies",
        );
        (
            WalExpiry {
                untouched: Some(untouched),
                ..WalExpiry::default()
            },
            Vec::new(),
        )
    };
    let debris: Vec<Debris> = repo
        .debris_at(options.now, options.debris_margin)
        .await?
        .into_iter()
        .filter(|d| is_backup_id(&d.id) && locked_until(d.last_modified).is_none())
        .collect();
    let applied = lock.is_some() && held_back.is_none();
    let (locked, deleted): (Vec<_>, Vec<_>) = plan
        .delete
        .iter()
        .partition(|d| locked_until(d.finished_at).is_some());
    let report = PruneReport {
        deleted: deleted.iter().map(|d| d.id.clone()).collect(),
        locked: locked
            .iter()
            .map(|d| LockedBackup {
                id: d.id.clone(),
                until: locked_until(d.finished_at).unwrap_or(options.now),
            })
            .collect(),
        plan,
        held_back,
        dry_run: options.dry_run,
        applied,
        unusable: listing.bad.clone(),
        wal,
        debris: debris
            .iter()
            .map(|d| DebrisRemoved {
                id: d.id.clone(),
                objects: d.keys.len(),
                bytes: d.bytes,
            })
            .collect(),
    };
    let Some(lock) = lock.filter(|_| applied) else {
        return Ok(report);
    };

    for id in &report.deleted {
        lock.ensure_held().await?;
        progress.note(&format!("deleting backup {id}"));
        delete_backup(repo, id).await?;
    }
    // Files at once (a first prune of months of WAL is many thousands of requests, during
    // which backups wait); each file's own keys in order. The lease is checked between batches.
    for batch in wal_keys.chunks(WAL_BATCH) {
        lock.ensure_held().await?;
        progress.note(&format!("deleting {} expired WAL files", batch.len()));
        // Collected first: a stream holding the closure would make the future not `Send`.
        let deletes: Vec<_> = batch
            .iter()
            .map(|keys| delete_in_order(repo.storage(), keys))
            .collect();
        futures::stream::iter(deletes)
            .buffer_unordered(WAL_DELETE_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
    }
    for folder in &debris {
        lock.ensure_held().await?;
        for key in &folder.keys {
            repo.storage().delete(key).await?;
        }
    }
    Ok(report)
}

/// Deletes `keys` one after the other (a WAL file's own objects: the record last).
async fn delete_in_order(storage: &crate::storage::Storage, keys: &[String]) -> Result<()> {
    for key in keys {
        storage.delete(key).await?;
    }
    Ok(())
}

/// Deletes a backup: its manifest first, then the manifest's signature, then the artifacts.
/// The manifest is what makes a backup exist: once it is gone the folder is debris, which the
/// next run removes if this one stops; the other order would leave, after a stop, a listed
/// backup whose artifacts are gone, one that `latest` could choose and fail to restore.
async fn delete_backup(repo: &Repository, id: &str) -> Result<()> {
    let manifest = Repository::artifact_key(id, "manifest.json");
    let signature = format!("{manifest}.sig");
    let mut keys: Vec<String> = repo
        .storage()
        .list(&format!("backups/{id}/"))
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    keys.sort_by_key(|key| match key {
        k if *k == manifest => 0,
        k if *k == signature => 1,
        _ => 2,
    });
    for key in keys {
        repo.storage().delete(&key).await?;
    }
    Ok(())
}

/// The WAL no kept physical backup needs, and the keys to delete in order (each file's object
/// before its record, the record before its signature).
async fn expire_wal(
    storage: &Storage,
    kept: &[&Manifest],
    locked_until: &(dyn Fn(DateTime<Utc>) -> Option<DateTime<Utc>> + Sync),
) -> Result<(WalExpiry, Vec<Vec<String>>)> {
    let untouched = |why: String| {
        Ok((
            WalExpiry {
                untouched: Some(why),
                ..WalExpiry::default()
            },
            Vec::new(),
        ))
    };
    let mut starts: Vec<(Segment, u64)> = Vec::new();
    for manifest in kept {
        let Some(physical) = &manifest.source.physical else {
            return untouched(format!(
                "kept backup {} has no WAL facts in its manifest: no WAL is expired",
                manifest.id
            ));
        };
        if !physical.wal_archived {
            continue;
        }
        let Some(start) = Segment::parse(&physical.start_wal, physical.wal_segment_size) else {
            return untouched(format!(
                "kept backup {} names a start segment that does not parse ({:?}): no WAL is expired",
                manifest.id, physical.start_wal
            ));
        };
        starts.push((start, physical.wal_segment_size));
    }
    let Some(&(_, segment_size)) = starts.first() else {
        return Ok((
            WalExpiry {
                untouched: Some(
                    "no kept physical backup has archived WAL: the WAL archive is left as it is"
                        .to_owned(),
                ),
                ..WalExpiry::default()
            },
            Vec::new(),
        ));
    };
    // On timeline T, a backup on T or an earlier timeline may need T's segments from its start
    // on (recovery follows the timeline history forward); later timelines never need T's.
    let cutoff = |timeline: u32| {
        starts
            .iter()
            .filter(|(s, _)| s.timeline <= timeline)
            .map(|(s, _)| s.number)
            .min()
    };
    let mut expiry = WalExpiry::default();
    let mut doomed: BTreeMap<String, Vec<(u8, String)>> = BTreeMap::new();
    let mut bytes = 0;
    for object in storage.list("wal/").await? {
        let Some((_, rest)) = object
            .key
            .strip_prefix("wal/")
            .and_then(|r| r.split_once('/'))
        else {
            continue; // wal/cluster.json
        };
        // Segments, .backup and .partial files and their records all begin with the segment's
        // name; .history files do not, and stay.
        let Some(segment) = rest
            .get(..24)
            .and_then(|name| Segment::parse(name, segment_size))
        else {
            continue;
        };
        if locked_until(object.modified).is_some() {
            continue;
        }
        if let Some(number) = cutoff(segment.timeline) {
            let first = Segment {
                timeline: segment.timeline,
                number,
            };
            expiry.kept_from.insert(
                format!("{:08X}", segment.timeline),
                first.file_name(segment_size),
            );
            if segment.number >= number {
                continue;
            }
        }
        let file = rest
            .strip_suffix(".sig")
            .unwrap_or(rest)
            .trim_end_matches(".json")
            .trim_end_matches(".zst.age")
            .trim_end_matches(".zst")
            .to_owned();
        let rank = if rest.ends_with(".sig") {
            2
        } else if rest.ends_with(".json") {
            1
        } else {
            bytes += object.size;
            0
        };
        doomed.entry(file).or_default().push((rank, object.key));
    }
    let mut keys = Vec::new();
    for (file, mut objects) in doomed {
        objects.sort();
        keys.push(objects.into_iter().map(|(_, key)| key).collect());
        expiry.files.push(file);
    }
    expiry.bytes = bytes;
    Ok((expiry, keys))
}
