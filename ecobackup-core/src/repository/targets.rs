//! The repositories one backup is written to: a primary and its mirrors (the Cartly runbook
//! writes its pre-migration dumps to B2 and S3 at once).
//!
//! The source is read once and every artifact is teed to each live target ([`Tee`]). A
//! target that fails (its lock, an upload, its manifest) drops out; the backup succeeds when at
//! least `required` targets hold all of it (by default, all of them), and [`Targets::report`]
//! says which failed and why. Each target that holds it gets the same signed manifest, whose
//! `targets` names the targets that held every artifact when the manifests were written. When
//! fewer than `required` hold it, no manifest is left anywhere (or the error names the one that
//! could not be removed) and the artifacts are removed from every target.

use std::sync::Mutex;

use super::commit::CommitFailure;
use super::{
    signature_key, ArtifactEntry, Lock, LockMode, LockOptions, Manifest, Repository, LOCK_FOLDER,
};
use crate::artifact::{self, Sealing};
use crate::error::{Error, Result};
use crate::pipeline::{BranchEnd, Source, Tee};
use crate::progress::Progress;

/// Where one backup goes: see the module documentation.
pub struct Targets {
    repos: Vec<Repository>,
    /// Mirrors that could not even be opened: they take no part, but count.
    unreachable: Vec<TargetReport>,
    required: usize,
    /// Per target of `repos`: why it dropped out of the current backup, once it has.
    dropped: Mutex<Vec<Option<String>>>,
    /// Per target of `repos`: the artifacts of the current backup it committed (what a
    /// cleanup there must remove; a target that received nothing is not bothered).
    received: Mutex<Vec<Vec<String>>>,
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
            unreachable: Vec::new(),
            required: 1,
            dropped: Mutex::new(vec![None]),
            received: Mutex::new(vec![Vec::new()]),
        }
    }
}

impl Targets {
    /// `primary` and `mirrors`, plus the mirrors that could not be opened (`unreachable`,
    /// each with its failure); a backup succeeds when `required` of them all hold it (`None`:
    /// all of them).
    pub fn new(
        primary: Repository,
        mirrors: Vec<Repository>,
        unreachable: Vec<TargetReport>,
        required: Option<usize>,
    ) -> Result<Targets> {
        let mut repos = vec![primary];
        repos.extend(mirrors);
        let total = repos.len() + unreachable.len();
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
        let required = required.unwrap_or(total);
        if required == 0 || required > total {
            return Err(config(format!(
                "min-targets {required} is impossible with {total} targets: give 1 to {total}"
            )));
        }
        let targets = Targets {
            dropped: Mutex::new(vec![None; repos.len()]),
            received: Mutex::new(vec![Vec::new(); repos.len()]),
            repos,
            unreachable,
            required,
        };
        targets.check_enough("the backup")?;
        Ok(targets)
    }

    /// The first target: where `list`, `restore` and the others read by default.
    pub fn primary(&self) -> &Repository {
        &self.repos[0]
    }

    /// How many targets there are, reachable or not.
    pub fn len(&self) -> usize {
        self.repos.len() + self.unreachable.len()
    }

    /// Never: there is always a primary.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn mirrored(&self) -> bool {
        self.len() > 1
    }

    /// Each target and whether it holds the last backup (after it finished).
    pub fn report(&self) -> Vec<TargetReport> {
        let dropped = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        self.repos
            .iter()
            .zip(dropped.iter())
            .map(|(repo, failure)| TargetReport {
                url: repo.storage().location(),
                failure: failure.clone(),
            })
            .chain(self.unreachable.iter().cloned())
            .collect()
    }

    fn live(&self) -> Vec<usize> {
        let dropped = self.dropped.lock().unwrap_or_else(|e| e.into_inner());
        (0..self.repos.len())
            .filter(|&i| dropped[i].is_none())
            .collect()
    }

    /// Target `i` no longer takes part; an error when too few are left to hold `what`.
    fn drop_out(&self, i: usize, reason: String, what: &str) -> Result<()> {
        tracing::debug!(target = %self.repos[i].storage().location(), reason = %reason, "a backup target dropped out");
        self.dropped.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(reason);
        self.check_enough(what)
    }

    fn check_enough(&self, what: &str) -> Result<()> {
        let held = self.live().len();
        if held >= self.required {
            return Ok(());
        }
        Err(self.too_few(what, held, Vec::new()))
    }

    fn too_few(&self, what: &str, held: usize, mut notes: Vec<String>) -> Error {
        let mut reasons: Vec<String> = self
            .report()
            .into_iter()
            .filter_map(|t| t.failure.map(|f| format!("{}: {f}", t.url)))
            .collect();
        reasons.append(&mut notes);
        Error::TooFewTargets {
            what: what.to_owned(),
            held,
            total: self.len(),
            required: self.required,
            detail: reasons.join("; "),
        }
    }

    /// Takes the shared lock of every target (prune waits), starting a new backup. With one
    /// target its failure is the error; with several, a target that cannot be locked drops
    /// out. Refuses two targets that are the same place under two names (each would see the
    /// other's lock): one copy would be counted twice.
    pub(crate) async fn lock(&self, owner: &str) -> Result<TargetLocks> {
        *self.dropped.lock().unwrap_or_else(|e| e.into_inner()) = vec![None; self.repos.len()];
        *self.received.lock().unwrap_or_else(|e| e.into_inner()) =
            vec![Vec::new(); self.repos.len()];
        let mut locks = Vec::with_capacity(self.repos.len());
        for (i, repo) in self.repos.iter().enumerate() {
            let taken = Lock::acquire(
                repo.storage(),
                LockMode::Shared,
                owner,
                &LockOptions::default(),
            )
            .await;
            match taken {
                Ok(lock) => locks.push(Some(lock)),
                Err(e) if !self.mirrored() => return Err(e),
                Err(e) => {
                    locks.push(None);
                    if let Err(too_few) = self.drop_out(i, e.to_string(), "the backup") {
                        TargetLocks(locks).release().await;
                        return Err(too_few);
                    }
                }
            }
        }
        let locks = TargetLocks(locks);
        if self.mirrored() {
            if let Err(e) = self.check_distinct(&locks).await {
                locks.release().await;
                return Err(e);
            }
        }
        Ok(locks)
    }

    /// Fails when a target's lock folder shows another target's lock.
    async fn check_distinct(&self, locks: &TargetLocks) -> Result<()> {
        for (i, repo) in self.repos.iter().enumerate() {
            if locks.0[i].is_none() {
                continue;
            }
            let seen = match repo.storage().list(LOCK_FOLDER).await {
                Ok(seen) => seen,
                Err(e) => {
                    self.drop_out(i, e.to_string(), "the backup")?;
                    continue;
                }
            };
            for (j, other) in locks.0.iter().enumerate() {
                let Some(other) = other.as_ref().filter(|_| j != i) else {
                    continue;
                };
                if seen.iter().any(|o| o.key == other.key()) {
                    return Err(Error::Config {
                        section: "repository".to_owned(),
                        detail: format!(
                            "{} and {} are the same repository under two names: a mirror must be another place, or the backup would be counted twice",
                            self.repos[j].storage().location(),
                            repo.storage().location()
                        ),
                    });
                }
            }
        }
        Ok(())
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
        if !self.mirrored() {
            return artifact::store(&self.repos[0], id, name, source, sealing, progress).await;
        }
        let live = self.live();
        let mut outcome = None;
        let sink = |key: &str, size_hint| {
            let tee = live.iter().fold(Tee::new(name, self.required), |tee, &i| {
                let storage = self.repos[i].storage();
                let sink = storage.sink(key, size_hint).deleting_if_abandoned();
                tee.branch(storage.location(), sink)
            });
            outcome = Some(tee.outcome());
            tee
        };
        let stored = artifact::store_into(sink, id, name, source, sealing, progress).await;
        let branches = outcome.map(|o| o.branches()).unwrap_or_default();
        for (branch, &i) in branches.iter().zip(&live) {
            match &branch.end {
                BranchEnd::Committed => {
                    self.received.lock().unwrap_or_else(|e| e.into_inner())[i].push(name.to_owned())
                }
                // Too few left is the tee's own error, returned below.
                BranchEnd::Failed(why) => {
                    let _ = self.drop_out(i, format!("storing {name}: {why}"), name);
                }
                BranchEnd::Stopped => {}
            }
        }
        // A failed tee may still have committed on some targets (a single PUT is sent at the
        // end of the stream, after another target failed): those are in `received`, and go
        // with the failed backup.
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
        let outcome = if self.mirrored() {
            self.finish_mirrored(id, &locks, work).await
        } else {
            let lock = locks.0[0]
                .as_ref()
                .expect("a single target is locked or failed");
            self.repos[0].finish_backup(id, lock, work, stored).await
        };
        locks.release().await;
        outcome
    }

    async fn finish_mirrored(
        &self,
        id: &str,
        locks: &TargetLocks,
        work: Result<Manifest>,
    ) -> Result<Manifest> {
        let what = format!("backup {id}");
        let mut manifest = match work {
            Ok(manifest) => manifest,
            Err(e) => {
                self.remove_artifacts(id, &[]).await;
                return Err(e);
            }
        };
        for i in self.live() {
            let held = match &locks.0[i] {
                Some(lock) => lock.ensure_held().await,
                None => Ok(()),
            };
            if let Err(e) = held {
                let _ = self.drop_out(i, e.to_string(), &what);
            }
        }
        // The signed manifest names the targets that hold every artifact now; one whose
        // manifest write fails below is reported, its copy removed, and the manifests already
        // written are left as they are (rewriting a signed object is not atomic).
        let holders = self.live();
        manifest.targets = holders
            .iter()
            .map(|&i| self.repos[i].storage().location())
            .collect();
        let mut committed = Vec::new();
        // Targets where the manifest may or may not have landed: nothing there is touched.
        let mut unknown = Vec::new();
        if holders.len() >= self.required {
            for &i in &holders {
                match self.repos[i].commit_manifest(&manifest).await {
                    Ok(()) => committed.push(i),
                    Err(CommitFailure::NotStored(e)) => {
                        let _ = self.drop_out(i, format!("writing the manifest: {e}"), &what);
                    }
                    Err(CommitFailure::Unknown(e)) => {
                        unknown.push(i);
                        let _ = self.drop_out(
                            i,
                            format!("whether its manifest was stored is unknown, nothing there was removed: {e}"),
                            &what,
                        );
                    }
                }
            }
        }
        if committed.len() >= self.required {
            let mut keep = committed.clone();
            keep.extend(&unknown);
            self.remove_artifacts(id, &keep).await;
            return Ok(manifest);
        }
        // Too few: no manifest may stay anywhere.
        let key = Repository::artifact_key(id, "manifest.json");
        let mut notes = Vec::new();
        for &i in &committed {
            let storage = self.repos[i].storage();
            let removed = async {
                storage.delete(&key).await?;
                storage.delete(&signature_key(&key)).await
            };
            if let Err(e) = removed.await {
                notes.push(format!(
                    "its manifest remains on {} ({e}): delete {key} there by hand",
                    storage.location()
                ));
                unknown.push(i);
            }
        }
        self.remove_artifacts(id, &unknown).await;
        Err(self.too_few(&what, committed.len(), notes))
    }

    /// Removes the artifacts each target but `keep` received in this backup (what cannot be
    /// removed is left as debris for `prune`).
    async fn remove_artifacts(&self, id: &str, keep: &[usize]) {
        let received = self
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for ((i, repo), names) in self.repos.iter().enumerate().zip(received) {
            if keep.contains(&i) {
                continue;
            }
            for name in names {
                let key = Repository::artifact_key(id, &name);
                if let Err(e) = repo.storage().delete(&key).await {
                    tracing::warn!(target = %repo.storage().location(), key = %key, error = %e, "could not delete an artifact of a failed backup; `prune` will report it as debris");
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

/// Opens the mirror at `url` for a backup, with the S3 settings of `settings` and the Object
/// Lock of `object_lock` (dropped on a directory: Object Lock is an S3 feature), signing with
/// `signer`. A mirror that cannot be reached is `Ok(Err(report))`: it takes no part and is
/// reported; one that is reachable but holds no repository is an error (initialise it first).
pub async fn open_mirror(
    settings: &crate::config::RepositoryConfig,
    url: &crate::storage::RepoUrl,
    object_lock: Option<crate::storage::ObjectLock>,
    signer: Option<&std::sync::Arc<crate::crypto::Signer>>,
) -> Result<std::result::Result<Repository, TargetReport>> {
    let object_lock = match url {
        crate::storage::RepoUrl::S3 { .. } => object_lock,
        _ => None,
    };
    let storage = settings.open_storage(url, object_lock)?;
    match Repository::open(storage).await {
        Ok(repo) => Ok(Ok(match signer {
            Some(signer) => repo.with_signer(std::sync::Arc::clone(signer)),
            None => repo,
        })),
        Err(e @ Error::NotARepository { .. }) => Err(e),
        Err(e) => Ok(Err(TargetReport {
            url: url.to_string(),
            failure: Some(e.to_string()),
        })),
    }
}
