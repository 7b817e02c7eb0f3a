//! The end of every backup: commit the manifest, or clean up — and never clean up a backup
//! whose manifest may have been stored.
//!
//! A manifest PUT can fail after the store committed it (the connection dropped before the
//! answer, the retries then gave up). Deleting the artifacts then would leave a manifest that
//! `list` shows and nothing can restore. So after a failed write the manifest is looked for:
//! there → the backup succeeded; absent → its artifacts are removed; unknown → nothing is
//! touched and the error says so.

use std::time::Duration;

use super::{ArtifactEntry, Lock, Manifest, Repository};
use crate::error::{Error, Result};

/// Looks at the store this many times after a failed manifest write.
const PROBE_ATTEMPTS: u32 = 3;
/// The pause before the second look; doubled for each later one.
const PROBE_BACKOFF: Duration = Duration::from_millis(500);

/// Why a manifest is not known to be stored.
#[derive(Debug)]
pub enum CommitFailure {
    /// The manifest is not in the repository (or was never written): the backup does not
    /// exist, and its artifacts may be removed.
    NotStored(Error),
    /// The write failed and whether the manifest landed could not be found out: leave
    /// everything as it is.
    Unknown(Error),
}

impl CommitFailure {
    /// The error to report.
    pub fn into_error(self) -> Error {
        match self {
            CommitFailure::NotStored(e) | CommitFailure::Unknown(e) => e,
        }
    }
}

impl Repository {
    /// Writes `manifest`, the step that makes a backup exist. When the write reports an error,
    /// looks for the manifest (with retries): if it is there, the backup is committed (`Ok`,
    /// with a warning in the log).
    pub async fn commit_manifest(&self, manifest: &Manifest) -> Result<(), CommitFailure> {
        let write_error = match self.write_manifest(manifest).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let key = Self::artifact_key(&manifest.id, "manifest.json");
        let mut probe_error = None;
        for attempt in 0..PROBE_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(PROBE_BACKOFF * 2u32.pow(attempt - 1)).await;
            }
            // The backup's id is unique and its lock held, and a PUT is atomic: an object
            // under this key is the manifest just written, whole.
            match self.storage.get(&key).await {
                Ok(Some(_)) => {
                    tracing::warn!(manifest = %key, error = %write_error, "the manifest write reported an error, but the manifest is stored: the backup is complete");
                    return Ok(());
                }
                Ok(None) => return Err(CommitFailure::NotStored(write_error)),
                Err(e) => probe_error = Some(e),
            }
        }
        let probe_error = probe_error.map(|e| e.to_string()).unwrap_or_default();
        Err(CommitFailure::Unknown(Error::Storage {
            op: "writing",
            key,
            repo: self.storage.url().to_owned(),
            detail: format!(
                "the write failed ({write_error}) and whether it was stored anyway cannot be found out ({probe_error}); nothing was deleted: run `ecobackup list` when the store is reachable: if backup {} is not listed, `prune` removes its files",
                manifest.id
            ),
            fault: crate::error::StorageFault::Other,
        }))
    }

    /// Ends backup `id`: when `work` produced its manifest, checks that `lock` is still held
    /// and commits the manifest. When the work failed or the manifest is certainly not stored,
    /// removes the `stored` artifacts (what cannot be removed stays as debris for `prune`);
    /// when it is unknown whether the manifest is stored, removes nothing.
    pub async fn finish_backup(
        &self,
        id: &str,
        lock: &Lock,
        work: Result<Manifest>,
        stored: &[ArtifactEntry],
    ) -> Result<Manifest> {
        let failure = match work {
            Ok(manifest) => {
                let committed = match lock.ensure_held().await {
                    Ok(()) => self.commit_manifest(&manifest).await,
                    Err(e) => Err(CommitFailure::NotStored(e)),
                };
                match committed {
                    Ok(()) => return Ok(manifest),
                    Err(failure) => failure,
                }
            }
            Err(e) => CommitFailure::NotStored(e),
        };
        if let CommitFailure::NotStored(_) = failure {
            for entry in stored {
                let key = Self::artifact_key(id, &entry.name);
                if let Err(e) = self.storage.delete(&key).await {
                    tracing::warn!(key = %key, error = %e, "could not delete an artifact of the failed backup; `prune` will report it as debris");
                }
            }
        }
        Err(failure.into_error())
    }
}
