//! What a repository holds: every backup with a readable manifest, the folders whose manifest
//! cannot be used (beside them, never hiding them), and the debris of interrupted runs.

use crate::error::remedy;
use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use serde::Serialize;

use super::lock::{oldest_live_lock, LockOptions};
use super::{is_backup_id, BackupKind, Manifest, Repository, MANIFEST_VERSION};
use crate::error::{Error, Result};

/// Manifests read at once when listing: `latest` costs about one round trip per 16 backups.
const READ_CONCURRENCY: usize = 16;

/// How old the newest object of a folder without a manifest must be before it is debris, on
/// top of being older than every live lock: longer than any pause between a backup's last
/// artifact and its manifest.
pub const DEBRIS_MARGIN: Duration = Duration::hours(1);

/// A backup folder whose manifest cannot be used: listed beside the good backups, reported by
/// `verify --all`, never chosen as `latest`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BadBackup {
    /// The folder's name (a backup id, or what a stray folder is called).
    pub id: String,
    /// The manifest's key.
    pub key: String,
    /// Why it cannot be used, one line.
    pub reason: String,
    /// Whether it failed the signature check (a forged, re-signed or replayed manifest), as
    /// opposed to being unreadable.
    pub untrusted: bool,
}

impl BadBackup {
    /// The kind named in the folder's id, when it is a backup id.
    pub fn kind(&self) -> Option<BackupKind> {
        is_backup_id(&self.id)
            .then(|| self.id.split('-').nth(1)?.parse().ok())
            .flatten()
    }
}

/// Every backup folder that has a manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupListing {
    /// Backups with a readable manifest, oldest first by `finished_at`.
    pub backups: Vec<Manifest>,
    /// Folders whose manifest is unreadable, or does not belong to its folder, by id.
    pub bad: Vec<BadBackup>,
}

/// A backup folder without a manifest, old enough that no running backup can own it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Debris {
    /// The folder's backup id.
    pub id: String,
    /// Its objects' keys.
    pub keys: Vec<String>,
    /// Their total size.
    pub bytes: u64,
    /// When its newest object was written (the store's time).
    pub last_modified: DateTime<Utc>,
}

/// Parses the manifest stored in the folder `id`; the reason, one line, when it is not usable.
pub(crate) fn decode_manifest(id: &str, bytes: &[u8]) -> std::result::Result<Manifest, String> {
    let manifest: Manifest =
        serde_json::from_slice(bytes).map_err(|e| format!("not a valid manifest: {e}"))?;
    if manifest.manifest_version != MANIFEST_VERSION {
        return Err(format!(
            "manifest_version {} is not {MANIFEST_VERSION}, the version this ecobackup reads",
            manifest.manifest_version
        ));
    }
    if manifest.id != id {
        return Err(format!(
            "its id field says {:?} but it is stored in the folder of {id:?}: it was copied or edited",
            manifest.id
        ));
    }
    Ok(manifest)
}

/// `backups/<id>/manifest.json` → `<id>`.
fn manifest_folder(key: &str) -> Option<&str> {
    let (id, name) = key.strip_prefix("backups/")?.split_once('/')?;
    (name == "manifest.json").then_some(id)
}

/// `backups/<id>/<name>` → `<id>`.
fn folder_of(key: &str) -> Option<&str> {
    let (id, name) = key.strip_prefix("backups/")?.split_once('/')?;
    (!name.is_empty()).then_some(id)
}

impl Repository {
    /// Every backup folder with a manifest: the usable backups, oldest first by
    /// `finished_at`, and beside them the ones whose manifest is unreadable or belongs to
    /// another folder. Manifests are read 16 at a time. Fails only when the store cannot be
    /// listed or read (an unreachable store must not make an older backup look like the latest).
    pub async fn manifests(&self) -> Result<BackupListing> {
        let ids: BTreeSet<String> = self
            .storage
            .list("backups/")
            .await?
            .iter()
            .filter_map(|o| manifest_folder(&o.key))
            .map(str::to_owned)
            .collect();
        let mut listing = BackupListing::default();
        let mut reads = futures::stream::iter(ids)
            .map(|id| async move {
                let key = Self::artifact_key(&id, "manifest.json");
                let read = if is_backup_id(&id) {
                    self.storage.get(&key).await.map(Some)
                } else {
                    Ok(None)
                };
                (id, key, read)
            })
            .buffer_unordered(READ_CONCURRENCY);
        while let Some((id, key, read)) = reads.next().await {
            match read? {
                // Not read: a stray folder.
                None => listing.bad.push(BadBackup {
                    reason: format!(
                        "the folder name {id:?} is not a backup id (yyyymmddThhmmssZ-kind-xxxxxx)"
                    ),
                    id,
                    key,
                    untrusted: false,
                }),
                Some(None) => {} // deleted since the listing (prune)
                // Unreadable, of another folder, or (with trusted signers) not signed by
                // one of them: listed as bad, never chosen. A store that fails fails the call.
                Some(Some(bytes)) => match self.decode_manifest(&id, key.clone(), &bytes).await {
                    Ok(manifest) => listing.backups.push(manifest),
                    Err(Error::BadManifest { detail, .. }) => listing.bad.push(BadBackup {
                        id,
                        key,
                        reason: detail,
                        untrusted: false,
                    }),
                    // Without trusted signers, a manifest in the wrong folder is only bad.
                    Err(Error::Untrusted { detail, .. }) => listing.bad.push(BadBackup {
                        id,
                        key,
                        reason: detail,
                        untrusted: self.trusted_signers().is_some(),
                    }),
                    Err(e) => return Err(e),
                },
            }
        }
        listing.backups.sort_by(|a, b| {
            a.finished_at
                .cmp(&b.finished_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        listing.bad.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(listing)
    }

    /// `id`, or the newest usable backup (by `finished_at`) of `kind` when `id` is `latest`.
    /// Folders with an unusable manifest are skipped (and logged), never chosen.
    pub async fn resolve(&self, id: &str, kind: Option<BackupKind>) -> Result<Manifest> {
        if id != "latest" {
            return self.manifest(id).await;
        }
        let listing = self.manifests().await?;
        // Never chosen, and never silently: a manifest that fails the signature check may be
        // a forgery planted as the newest (it is also a failure in `verify --all`).
        for bad in &listing.bad {
            if bad.untrusted {
                let remedy =
                    remedy!(cli: "run `ecobackup verify --all`", library: "verify every backup");
                tracing::warn!(backup = %bad.id, reason = %bad.reason, "`latest` skips a backup whose manifest fails the signature check: someone who can write to the repository may have planted it; {remedy}");
            } else {
                tracing::warn!(backup = %bad.id, reason = %bad.reason, "skipping a backup whose manifest cannot be used");
            }
        }
        listing
            .backups
            .into_iter()
            .rev()
            .find(|m| kind.is_none_or(|k| m.kind == k))
            .ok_or_else(|| Error::BackupNotFound {
                wanted: match kind {
                    Some(k) => format!("latest ({k})"),
                    None => "latest".to_owned(),
                },
                repo: self.storage.url().to_owned(),
            })
    }

    /// Backup folders without a manifest that are debris now (`prune` removes them): see
    /// [`Repository::debris_at`], with the system clock and [`DEBRIS_MARGIN`].
    pub async fn debris(&self) -> Result<Vec<Debris>> {
        self.debris_at(Utc::now(), DEBRIS_MARGIN).await
    }

    /// Backup folders without a manifest whose newest object was written before `now -
    /// margin` and before the acquisition of the oldest live repository lock (less the
    /// clock-skew allowance). A running backup holds a live shared lock taken before it wrote
    /// anything, so its folder is never debris.
    pub async fn debris_at(&self, now: DateTime<Utc>, margin: Duration) -> Result<Vec<Debris>> {
        let objects = self.storage.list("backups/").await?;
        let complete: BTreeSet<&str> = objects
            .iter()
            .filter_map(|o| manifest_folder(&o.key))
            .collect();
        let mut folders: BTreeMap<&str, Debris> = BTreeMap::new();
        for object in &objects {
            let Some(id) = folder_of(&object.key).filter(|id| !complete.contains(id)) else {
                continue;
            };
            let d = folders.entry(id).or_insert_with(|| Debris {
                id: id.to_owned(),
                keys: Vec::new(),
                bytes: 0,
                last_modified: object.modified,
            });
            d.keys.push(object.key.clone());
            d.bytes += object.size;
            d.last_modified = d.last_modified.max(object.modified);
        }
        let skew = LockOptions::default().skew;
        let mut cutoff = now - margin;
        if let Some(oldest) = oldest_live_lock(&self.storage, now, skew).await? {
            cutoff = cutoff.min(oldest - skew);
        }
        Ok(folders
            .into_values()
            .filter(|d| d.last_modified < cutoff)
            .collect())
    }
}
