//! The repositories one backup is written to: a primary and its mirrors (the Cartly runbook
//! writes its pre-migration dumps to B2 and S3 at once).
//!
//! The source is read once and every artifact is teed to each live target ([`Tee`]). A
//! target that fails (its lock, an upload, its manifest) drops out, with a warning; the backup
//! succeeds when at least `required` targets hold all of it (by default, all of them). Each
//! target that holds it gets the same signed manifest, whose `targets` names them all. When
//! fewer than `required` do, no manifest is left anywhere and the artifacts are removed from
//! every target.

use std::sync::Mutex;

use super::commit::CommitFailure;
use super::{signature_key, ArtifactEntry, Lock, LockMode, LockOptions, Manifest, Repository};
use crate::artifact::{self, Sealing};
use crate::error::{Error, Result};
use crate::pipeline::{Source, Tee};
use crate::progress::Progress;

/// Where one backup goes: see the module documentation.
pub struct Targets {
    repos: Vec<Repository>,
    required: usize,
    /// Per target: why it dropped out, once it has.
    dropped: Mutex<Vec<Option<String>>>,
}

/// The shared locks a backup holds, one per target that could be locked.
pub struct TargetLocks(Vec<Option<Lock>>);

/// What became of one target of a backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetReport {
    /// The target's repository URL (and S3 endpoint: [`crate::storage::Storage::location`]).
    pub url: String,
    /// `None`: it holds the backup; otherwise why it does not.
    pub failure: Option<String>,
}

impl From<Repository> for Targets {
    /// One repository, which must hold the backup.
    fn from(repo: Repository) -> Targets {
        Targets {
            repos: vec![repo],
            required: 1,
            dropped: Mutex::new(vec![None]),
        }
    }
}

impl Targets {
    /// `primary` and `mirrors`; the backup succeeds when `required` of them hold it (`None`:
    /// all of them).
    pub fn new(
        primary: Repository,
        mirrors: Vec<Repository>,
        required: Option<usize>,
    ) -> Result<Targets> {
        let mut repos = vec![primary];
        repos.extend(mirrors);
        let config = |detail: String| Error::Config {
            section: "repository".to_owned(),
            detail,
        };
        for (i, repo) in repos.iter().enumerate() {
            let url = repo.storage().location();
            if repos[..i].iter().any(|r| r.storage().location() == url) {
                return Err(config(format!(
                    "{url} is named twice as a target: each mirror must be another repository"
                )));
            }
        }
        let required = required.unwrap_or(repos.len());
        if required == 0 || required > repos.len() {
            return Err(config(format!(
                "min-targets {required} is impossible with {} targets: give 1 to {}",
                repos.len(),
                repos.len()
            )));
        }
        Ok(Targets {
            dropped: Mutex::new(vec![None; repos.len()]),
            repos,
            required,
        })
    }

    /// The first target: where `list`, `restore` and the others read by default.
    pub fn primary(&self) -> &Repository {
        &self.repos[0]
    }

    /// How many targets there are.
    pub fn len(&self) -> usize {
        self.repos.len()
    }

    /// Never: there is always a primary.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Each target and whether it holds the backup (after [`Targets::finish_backup`]).
    pub fn report(&self) -> Vec<TargetReport> {
        let dropped = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        self.repos
            .iter()
            .zip(dropped.iter())
            .map(|(repo, failure)| TargetReport {
                url: repo.storage().location(),
                failure: failure.clone(),
            })
            .collect()
    }

    fn live(&self) -> Vec<usize> {
        let dropped = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        (0..self.repos.len())
            .filter(|&i| dropped[i].is_none())
            .collect()
    }

    /// Target `i` no longer takes part; an error when too few are left.
    fn drop_out(&self, i: usize, reason: String) -> Result<()> {
        let url = self.repos[i].storage().location();
        self.dropped.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(reason.clone());
        self.check_enough()?;
        // When too few are left, the error says it all; otherwise the backup goes on without it.
        tracing::warn!(target = %url, reason = %reason, "a backup target failed and is left out of this backup");
        Ok(())
    }

    fn check_enough(&self) -> Result<()> {
        let live = self.live().len();
        if live >= self.required {
            return Ok(());
        }
        let reasons: Vec<String> = self
            .report()
            .into_iter()
            .filter_map(|t| t.failure.map(|f| format!("{}: {f}", t.url)))
            .collect();
        Err(Error::Refused {
            context: format!(
                "only {live} of {} backup targets are left, {} required",
                self.repos.len(),
                self.required
            ),
            detail: reasons.join("; "),
        })
    }

    /// Takes the shared lock of every target (prune waits). With one target its failure is
    /// the error; with several, a target that cannot be locked drops out.
    pub(crate) async fn lock(&self, owner: &str) -> Result<TargetLocks> {
        let mut locks = Vec::with_capacity(self.repos.len());
        for (i, repo) in self.repos.iter().enumerate() {
            match Lock::acquire(
                repo.storage(),
                LockMode::Shared,
                owner,
                &LockOptions::default(),
            )
            .await
            {
                Ok(lock) => locks.push(Some(lock)),
                Err(e) if self.repos.len() == 1 => return Err(e),
                Err(e) => {
                    locks.push(None);
                    if let Err(too_few) = self.drop_out(i, e.to_string()) {
                        TargetLocks(locks).release().await;
                        return Err(too_few);
                    }
                }
            }
        }
        Ok(TargetLocks(locks))
    }

    /// [`artifact::store`] into every live target at once; a target whose upload fails drops
    /// out.
    pub(crate) async fn store(
        &self,
        id: &str,
        name: &str,
        source: impl Source + 'static,
        sealing: &Sealing,
        progress: &dyn Progress,
    ) -> Result<ArtifactEntry> {
        if self.repos.len() == 1 {
            return artifact::store(&self.repos[0], id, name, source, sealing, progress).await;
        }
        let live = self.live();
        let mut outcome = None;
        let sink = |key: &str, size_hint| {
            let tee = live.iter().fold(Tee::new(self.required), |tee, &i| {
                let storage = self.repos[i].storage();
                tee.branch(storage.location(), storage.sink(key, size_hint))
            });
            outcome = Some(tee.outcome());
            tee
        };
        let stored = artifact::store_into(sink, id, name, source, sealing, progress).await;
        let branches = outcome.map(|o| o.branches()).unwrap_or_default();
        for (branch, &i) in branches.iter().zip(&live) {
            if let Some(failure) = &branch.failure {
                // Too few left is the tee's own error, returned below.
                let _ = self.drop_out(i, format!("storing {name}: {failure}"));
            }
        }
        if stored.is_err() {
            // A target may have committed the object before another failed in its last step
            // (a single PUT is sent at the end of the stream): the backup's cleanup only knows
            // the artifacts that were stored everywhere.
            let key = Repository::artifact_key(id, name);
            for &i in &live {
                let storage = self.repos[i].storage();
                if let Err(e) = storage.delete(&key).await {
                    tracing::warn!(target = %storage.location(), key = %key, error = %e, "could not delete an artifact of a failed backup; `prune` will report it as debris");
                }
            }
        }
        stored
    }

    /// Ends backup `id` on every target: see the module documentation. Releases `locks`.
    pub(crate) async fn finish_backup(
        &self,
        id: &str,
        locks: TargetLocks,
        work: Result<Manifest>,
        stored: &[ArtifactEntry],
    ) -> Result<Manifest> {
        let outcome = if self.repos.len() == 1 {
            let lock = locks.0[0]
                .as_ref()
                .expect("a single target is locked or failed");
            self.repos[0].finish_backup(id, lock, work, stored).await
        } else {
            self.finish_mirrored(id, &locks, work, stored).await
        };
        locks.release().await;
        outcome
    }

    async fn finish_mirrored(
        &self,
        id: &str,
        locks: &TargetLocks,
        work: Result<Manifest>,
        stored: &[ArtifactEntry],
    ) -> Result<Manifest> {
        let mut manifest = match work {
            Ok(manifest) => manifest,
            Err(e) => {
                self.remove_artifacts(id, stored, &[]).await;
                return Err(e);
            }
        };
        for i in self.live() {
            let held = match &locks.0[i] {
                Some(lock) => lock.ensure_held().await,
                None => Ok(()),
            };
            if let Err(e) = held {
                let _ = self.drop_out(i, e.to_string());
            }
        }
        let holders = self.live();
        manifest.targets = self.urls(&holders);
        let mut committed = Vec::new();
        // Targets where the manifest may or may not have landed: nothing there is touched.
        let mut unknown = Vec::new();
        if holders.len() >= self.required {
            for &i in &holders {
                match self.repos[i].commit_manifest(&manifest).await {
                    Ok(()) => committed.push(i),
                    Err(CommitFailure::NotStored(e)) => {
                        let _ = self.drop_out(i, format!("writing the manifest: {e}"));
                    }
                    Err(CommitFailure::Unknown(e)) => {
                        unknown.push(i);
                        let _ = self.drop_out(i, format!("writing the manifest: {e}"));
                    }
                }
            }
        }
        if committed.len() >= self.required {
            if committed.len() < holders.len() {
                // The manifests written first name a target that failed after them.
                manifest.targets = self.urls(&committed);
                for &i in &committed {
                    if let Err(e) = self.repos[i].write_manifest(&manifest).await {
                        tracing::warn!(target = %self.repos[i].storage().url(), error = %e, "could not correct the manifest's list of targets; it names a target that does not hold the backup");
                    }
                }
            }
            let mut keep = committed.clone();
            keep.extend(&unknown);
            self.remove_artifacts(id, stored, &keep).await;
            return Ok(manifest);
        }
        // Too few: no manifest may stay anywhere.
        let key = Repository::artifact_key(id, "manifest.json");
        for &i in &committed {
            let storage = self.repos[i].storage();
            let removed = async {
                storage.delete(&key).await?;
                storage.delete(&signature_key(&key)).await
            };
            if let Err(e) = removed.await {
                tracing::warn!(target = %storage.url(), error = %e, "could not remove the manifest of a backup that reached too few targets; delete it by hand");
                unknown.push(i);
            }
        }
        self.remove_artifacts(id, stored, &unknown).await;
        Err(self
            .check_enough()
            .err()
            .unwrap_or_else(|| Error::Cancelled("too few targets hold the backup".to_owned())))
    }

    fn urls(&self, targets: &[usize]) -> Vec<String> {
        targets
            .iter()
            .map(|&i| self.repos[i].storage().location())
            .collect()
    }

    /// Removes the backup's artifacts from every target but `keep` (what cannot be removed is
    /// left as debris for `prune`).
    async fn remove_artifacts(&self, id: &str, stored: &[ArtifactEntry], keep: &[usize]) {
        for (i, repo) in self.repos.iter().enumerate() {
            if keep.contains(&i) {
                continue;
            }
            for entry in stored {
                let key = Repository::artifact_key(id, &entry.name);
                if let Err(e) = repo.storage().delete(&key).await {
                    tracing::warn!(target = %repo.storage().url(), key = %key, error = %e, "could not delete an artifact of a failed backup; `prune` will report it as debris");
                }
            }
        }
    }
}

impl TargetLocks {
    async fn release(self) {
        for lock in self.0.into_iter().flatten() {
            if let Err(e) = lock.release().await {
                tracing::warn!(error = %e, "could not release the backup lock; it expires by itself");
            }
        }
    }
}
