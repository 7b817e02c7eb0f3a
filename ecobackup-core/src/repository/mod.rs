//! A repository: backups (artifacts + manifest) and archived WAL under one URL.
//!
//! ```text
//! <repo>/ecobackup.json                  format, version, created_at, key fingerprints
//! <repo>/ecobackup.json.sig              its signature (signed repositories)
//! <repo>/backups/<id>/manifest.json.sig  the manifest's signature, written just before it
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
mod targets;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use commit::CommitFailure;
pub use id::{is_backup_id, new_backup_id};
pub use listing::{BackupListing, BadBackup, Debris, DEBRIS_MARGIN};
pub use lock::{
    under_shared_lock, Clock, Lock, LockInfo, LockMode, LockOptions, SystemClock, LOCK_FOLDER,
};
pub use manifest::{
    ArtifactEntry, BackupKind, FilesFacts, Manifest, PhysicalFacts, ServerFacts, SourceFacts,
    MANIFEST_VERSION,
};
pub use targets::{open_mirror, TargetLocks, TargetReport, Targets};

use crate::crypto::{Signer, TrustedSigners, SIGNATURE_SUFFIX};
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
    /// Signs the manifests (and the marker) this repository writes.
    signer: Option<Arc<Signer>>,
    /// When set, every manifest read must pass this check.
    trust: Option<Arc<TrustedSigners>>,
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
        Self::init_signed(storage, recipient_fingerprints, None).await
    }

    /// [`Repository::init`], signing the marker with `signer` (its signature is written first).
    /// An existing unsigned repository of this format gets its marker signed.
    pub async fn init_signed(
        storage: Storage,
        recipient_fingerprints: Vec<String>,
        signer: Option<Arc<Signer>>,
    ) -> Result<InitOutcome> {
        if let Some(existing) = storage.get(MARKER).await? {
            let mut repo = Self::from_marker(storage, &existing)?;
            repo.signer = signer;
            repo.sign_marker_if_unsigned().await?;
            return Ok(InitOutcome::AlreadyInitialized(repo));
        }
        let objects: Vec<_> = storage
            .list("")
            .await?
            .into_iter()
            .filter(|o| o.key != signature_key(MARKER))
            .collect();
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
        let repo = Repository {
            storage,
            marker,
            signer,
            trust: None,
        };
        repo.put_signed(MARKER, body).await?;
        Ok(InitOutcome::Created(repo))
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
        Ok(Repository {
            storage,
            marker,
            signer: None,
            trust: None,
        })
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

    /// Writes a backup's manifest: the last step of a backup, which makes it exist. With a
    /// signer, its signature is written just before it (and an unsigned marker gets signed).
    pub async fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let body = serde_json::to_vec_pretty(manifest)
            .map_err(|e| Error::io("encoding the manifest", e.into()))?;
        self.sign_marker_if_unsigned().await?;
        self.put_signed(&Self::artifact_key(&manifest.id, "manifest.json"), body)
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
        self.decode_manifest(id, key, &bytes).await
    }
}

/// Signing and checking what restore trusts (FORMAT.md: signatures and threat model).
impl Repository {
    /// Signs the manifests and the marker this repository writes from now on.
    pub fn with_signer(mut self, signer: Arc<Signer>) -> Repository {
        self.signer = Some(signer);
        self
    }

    /// Checks every manifest read from now on against `trust`, and checks the marker's
    /// signature now: an unsigned repository is refused unless `trust` allows unsigned objects.
    pub async fn with_trusted_signers(mut self, trust: TrustedSigners) -> Result<Repository> {
        let marker = self
            .storage
            .get(MARKER)
            .await?
            .ok_or_else(|| Error::NotARepository {
                repo: self.storage.url().to_owned(),
            })?;
        self.check_signature(MARKER, &marker, &trust).await?;
        self.trust = Some(Arc::new(trust));
        Ok(self)
    }

    /// The signer, when this repository signs what it writes.
    pub fn signer(&self) -> Option<&Signer> {
        self.signer.as_deref()
    }

    /// The trusted signers, when this repository checks what it reads.
    pub fn trusted_signers(&self) -> Option<&TrustedSigners> {
        self.trust.as_deref()
    }

    /// Writes `key`: with a signer, its signature object first, so that the object never
    /// exists unsigned.
    async fn put_signed(&self, key: &str, body: Vec<u8>) -> Result<()> {
        if let Some(signer) = &self.signer {
            self.storage
                .put(&signature_key(key), signer.sign(key, &body))
                .await?;
        }
        self.storage.put(key, body).await
    }

    /// Signs the marker of a repository created without a signing key (or whose `init` was cut
    /// short between the signature and the marker), once a signer writes to it.
    async fn sign_marker_if_unsigned(&self) -> Result<()> {
        let Some(signer) = &self.signer else {
            return Ok(());
        };
        if self.storage.get(&signature_key(MARKER)).await?.is_some() {
            return Ok(());
        }
        if let Some(marker) = self.storage.get(MARKER).await? {
            self.storage
                .put(&signature_key(MARKER), signer.sign(MARKER, &marker))
                .await?;
        }
        Ok(())
    }

    async fn check_signature(&self, key: &str, bytes: &[u8], trust: &TrustedSigners) -> Result<()> {
        let signature = self.storage.get(&signature_key(key)).await?;
        trust
            .check(key, bytes, signature.as_deref())
            .map(drop)
            .map_err(|fault| Error::Untrusted {
                key: key.to_owned(),
                repo: self.storage.url().to_owned(),
                detail: fault.to_string(),
            })
    }

    /// A manifest's bytes → the manifest: its signature checked (when signers are trusted),
    /// then its format and its id (equal to its folder's: a manifest copied into another folder
    /// is refused).
    pub(crate) async fn decode_manifest(
        &self,
        id: &str,
        key: String,
        bytes: &[u8],
    ) -> Result<Manifest> {
        if let Some(trust) = &self.trust {
            self.check_signature(&key, bytes, trust).await?;
        }
        // A manifest in another backup's folder (a replay, or an edit) is refused whether or
        // not signatures are checked.
        if let Ok(manifest) = serde_json::from_slice::<Manifest>(bytes) {
            if manifest.id != id {
                let detail = format!(
                    "its id field says {:?} but it is stored in the folder of {id:?}: a manifest copied to another folder; do not restore it",
                    manifest.id
                );
                // With signatures checked it is a forgery; without, a damaged repository.
                return Err(match self.trust {
                    Some(_) => Error::Untrusted {
                        key,
                        repo: self.storage.url().to_owned(),
                        detail,
                    },
                    None => Error::BadManifest { key, detail },
                });
            }
        }
        listing::decode_manifest(id, bytes).map_err(|detail| Error::BadManifest { key, detail })
    }
}

/// The key of the signature object of `key`.
fn signature_key(key: &str) -> String {
    format!("{key}{SIGNATURE_SUFFIX}")
}
