//! A repository: backups (artifacts + manifest) and archived WAL under one URL.
//!
//! ```text
//! <repo>/ecobackup.json                  format, version, created_at, key fingerprints
//! <repo>/backups/<id>/manifest.json      written last; a backup without it does not exist
//! <repo>/backups/<id>/<artifact>.zst.age
//! <repo>/wal/<timeline>/<segment>.zst.age
//! <repo>/locks/repository/<lock>.json  shared (backups) and exclusive (prune) leases
//! ```

mod commit;
mod id;
mod listing;
mod lock;
mod manifest;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use commit::CommitFailure;
pub use id::{is_backup_id, new_backup_id};
pub use listing::{BackupListing, BadBackup, Debris, DEBRIS_MARGIN};
pub use lock::{Clock, Lock, LockInfo, LockMode, LockOptions, SystemClock, LOCK_FOLDER};
pub use manifest::{ArtifactEntry, BackupKind, Manifest, SourceFacts, MANIFEST_VERSION};

use crate::error::{Error, Result};
use crate::storage::Storage;

/// The marker object at the root of every repository.
pub const MARKER: &str = "ecobackup.json";
/// The repository format this version writes and reads.
pub const FORMAT: &str = "ecobackup-repository-v1";

/// What `ecobackup.json` holds. No secrets: only public key fingerprints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryMarker {
    /// Always [`FORMAT`] for repositories this version can use.
    pub format: String,
    /// When `init` ran.
    pub created_at: DateTime<Utc>,
    /// Fingerprints of the recipients backups are encrypted to, as configured at `init`.
    #[serde(default)]
    pub recipients: Vec<String>,
}

/// An opened repository.
#[derive(Clone, Debug)]
pub struct Repository {
    storage: Storage,
    marker: RepositoryMarker,
}

/// What `init` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitOutcome {
    /// A new repository was created.
    Created(Repository),
    /// A repository of this format was already there; nothing changed.
    AlreadyInitialized(Repository),
}

impl PartialEq for Repository {
    fn eq(&self, other: &Self) -> bool {
        self.storage.url() == other.storage.url() && self.marker == other.marker
    }
}
impl Eq for Repository {}

impl Repository {
    /// Creates the repository marker. Refuses a place that holds anything else, or a
    /// repository of another format; a repository of this format is left as it is.
    pub async fn init(
        storage: Storage,
        recipient_fingerprints: Vec<String>,
    ) -> Result<InitOutcome> {
        if let Some(existing) = storage.get(MARKER).await? {
            let repo = Self::from_marker(storage, &existing)?;
            return Ok(InitOutcome::AlreadyInitialized(repo));
        }
        let objects = storage.list("").await?;
        if let Some(first) = objects.first() {
            return Err(Error::RefusedInit {
                repo: storage.url().to_owned(),
                detail: format!(
                    "it is not empty ({} objects, e.g. {}) and has no {MARKER}; choose an empty location",
                    objects.len(),
                    first.key
                ),
            });
        }
        let marker = RepositoryMarker {
            format: FORMAT.to_owned(),
            created_at: Utc::now(),
            recipients: recipient_fingerprints,
        };
        let body = serde_json::to_vec_pretty(&marker)
            .map_err(|e| Error::io("encoding the marker", e.into()))?;
        storage.put(MARKER, body).await?;
        Ok(InitOutcome::Created(Repository { storage, marker }))
    }

    /// Opens an existing repository.
    pub async fn open(storage: Storage) -> Result<Repository> {
        match storage.get(MARKER).await? {
            Some(bytes) => Self::from_marker(storage, &bytes),
            None => Err(Error::NotARepository {
                repo: storage.url().to_owned(),
            }),
        }
    }

    fn from_marker(storage: Storage, bytes: &[u8]) -> Result<Repository> {
        #[derive(Deserialize)]
        struct FormatOnly {
            format: Option<String>,
        }
        let found = serde_json::from_slice::<FormatOnly>(bytes)
            .ok()
            .and_then(|f| f.format)
            .unwrap_or_else(|| "unreadable".to_owned());
        if found != FORMAT {
            return Err(Error::IncompatibleRepository {
                repo: storage.url().to_owned(),
                found,
                expected: FORMAT.to_owned(),
            });
        }
        let marker = serde_json::from_slice(bytes).map_err(|e| Error::BadManifest {
            key: MARKER.to_owned(),
            detail: e.to_string(),
        })?;
        Ok(Repository { storage, marker })
    }

    /// The storage underneath.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The marker's content.
    pub fn marker(&self) -> &RepositoryMarker {
        &self.marker
    }

    /// The key of an artifact of a backup.
    pub fn artifact_key(id: &str, name: &str) -> String {
        format!("backups/{id}/{name}")
    }

    /// Writes a backup's manifest: the last step of a backup, which makes it exist.
    pub async fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let body = serde_json::to_vec_pretty(manifest)
            .map_err(|e| Error::io("encoding the manifest", e.into()))?;
        self.storage
            .put(&Self::artifact_key(&manifest.id, "manifest.json"), body)
            .await
    }

    /// The manifest of backup `id`.
    pub async fn manifest(&self, id: &str) -> Result<Manifest> {
        let key = Self::artifact_key(id, "manifest.json");
        let not_found = || Error::BackupNotFound {
            wanted: id.to_owned(),
            repo: self.storage.url().to_owned(),
        };
        if !is_backup_id(id) {
            return Err(not_found());
        }
        let bytes = self.storage.get(&key).await?.ok_or_else(not_found)?;
        listing::decode_manifest(id, &bytes).map_err(|detail| Error::BadManifest { key, detail })
    }
}
