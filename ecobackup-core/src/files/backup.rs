//! `backup files`: a set's roots walked into one tar stream, through the artifact pipeline
//! (SHA-256, zstd, age) into `backups/<id>/files.tar.zst.age`, under the repository's shared
//! lock, the manifest written last — as for every backup, a failure leaves no backup behind.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::Utc;

use super::archive::{ReadHook, Scan, TarWriter, WalkReport};
use super::excludes::Excludes;
use super::roots::{check_set_name, default_set_name, resolve_roots, Root};
use super::walk::walk;
use super::{FileWarning, ARCHIVE_ARTIFACT};
use crate::artifact::Sealing;
use crate::crypto::fingerprint;
use crate::error::{Error, Result};
use crate::pipeline::{blocking_source, ByteStream, Source, SourceInfo};
use crate::progress::Progress;
use crate::repository::{
    new_backup_id, ArtifactEntry, BackupKind, FilesFacts, Manifest, Repository, SourceFacts,
    Targets, MANIFEST_VERSION,
};

/// What to back up, and how.
#[derive(Clone)]
#[non_exhaustive]
pub struct FilesBackup {
    /// The set's name; `None`: its roots' archive names joined by `+`
    /// (`roots::default_set_name`).
    pub name: Option<String>,
    /// The roots: directories or files.
    pub paths: Vec<PathBuf>,
    /// What to leave out.
    pub excludes: Excludes,
    /// Labels for the manifest.
    pub tags: BTreeMap<String, String>,
    /// zstd level and recipients.
    pub sealing: Sealing,
    /// Store nothing when the tree's digest equals that of the set's latest backup (a first
    /// pass reads the tree to compute it).
    pub if_changed: bool,
    /// Called after each file's first read (tests change files there).
    pub(crate) hook: Option<ReadHook>,
    /// Cancels the operation: it stops, cleans up what it started (uploads, stored artifacts,
    /// its lock) and returns [`Error::Cancelled`](crate::Error::Cancelled). Never fires by default.
    pub cancel: crate::cancel::CancellationToken,
}

impl FilesBackup {
    /// A backup of `paths`, sealed with `sealing`, with the default excludes and no tags.
    pub fn new(paths: Vec<PathBuf>, sealing: Sealing) -> FilesBackup {
        FilesBackup {
            name: None,
            paths,
            excludes: Excludes::default(),
            tags: BTreeMap::new(),
            sealing,
            if_changed: false,
            hook: None,
            cancel: Default::default(),
        }
    }
}

/// What a files backup did.
#[derive(Clone, Debug)]
pub enum FilesOutcome {
    /// A backup was stored.
    Stored(Box<FilesReport>),
    /// `if_changed`, and nothing changed since `latest`: nothing was stored.
    Unchanged {
        /// The set's latest backup, whose tree digest equals the tree's.
        latest: Box<Manifest>,
    },
}

/// A stored files backup.
#[derive(Clone, Debug)]
pub struct FilesReport {
    /// The manifest written.
    pub manifest: Manifest,
    /// Entries skipped or changed while read, the first [`MAX_WARNINGS`](super::MAX_WARNINGS).
    pub warnings: Vec<FileWarning>,
    /// Warnings beyond those.
    pub more_warnings: u64,
}

/// The newest good files backup of the set `name`, if any.
pub async fn latest_of_set(repo: &Repository, name: &str) -> Result<Option<Manifest>> {
    Ok(repo.manifests().await?.backups.into_iter().rev().find(|m| {
        m.kind == BackupKind::Files && m.source.files.as_ref().is_some_and(|f| f.set == name)
    }))
}

/// The tar stream of a set, made on a blocking thread as the pipeline reads it.
struct TarSource {
    roots: Vec<Root>,
    excludes: Excludes,
    hook: Option<ReadHook>,
    size_hint: u64,
    report: Arc<Mutex<Option<WalkReport>>>,
}

#[async_trait]
impl Source for TarSource {
    async fn open(&mut self) -> Result<ByteStream> {
        let roots = self.roots.clone();
        let excludes = self.excludes.clone();
        let hook = self.hook.clone();
        let report = self.report.clone();
        Ok(blocking_source(ARCHIVE_ARTIFACT, move |writer| {
            let mut tar = TarWriter::new(writer, hook);
            walk(&roots, &excludes, &mut tar)?;
            let (_, walked) = tar.finish()?;
            *report.lock().unwrap_or_else(PoisonError::into_inner) = Some(walked);
            Ok(())
        }))
    }

    fn describe(&self) -> SourceInfo {
        SourceInfo {
            name: ARCHIVE_ARTIFACT.to_owned(),
            size_hint: Some(self.size_hint),
        }
    }
}

/// Walks the roots without storing anything: with `read_contents`, the digest pass.
async fn scan(
    roots: &[Root],
    excludes: &Excludes,
    read_contents: bool,
    hook: Option<ReadHook>,
) -> Result<WalkReport> {
    let (roots, excludes) = (roots.to_vec(), excludes.clone());
    tokio::task::spawn_blocking(move || {
        let mut scan = Scan::new(read_contents, hook);
        walk(&roots, &excludes, &mut scan)?;
        Ok(scan.finish())
    })
    .await
    .map_err(|e| Error::io("walking the files", std::io::Error::other(e)))?
}

/// Backs up a files set into `targets` (a [`Repository`] converts into one target with
/// `.into()`).
///
/// Cancel safety: `plan.cancel` stops it cleanly (see [`crate::cancel`]); dropping the future
/// commits nothing, its clean-up then runs in background tasks.
pub async fn backup_files(
    targets: &Targets,
    plan: &FilesBackup,
    progress: &dyn Progress,
) -> Result<FilesOutcome> {
    let roots = resolve_roots(&plan.paths)?;
    let name = plan
        .name
        .clone()
        .unwrap_or_else(|| default_set_name(&roots));
    check_set_name(&name)?;
    // The first pass: the digest with --if-changed, else only the size (for the upload's part
    // size and the progress bar's ETA), from metadata alone.
    let scanned = scan(&roots, &plan.excludes, plan.if_changed, plan.hook.clone()).await?;
    if plan.if_changed {
        if let Some(latest) = latest_of_set(targets.primary(), &name).await? {
            let digest = &scanned.facts.tree_sha256;
            let same_tree = latest
                .source
                .files
                .as_ref()
                .is_some_and(|f| &f.tree_sha256 == digest);
            // New recipients (a rotated key) make a new backup even of the same tree.
            let keys: Vec<String> = plan.sealing.recipients.iter().map(fingerprint).collect();
            let same_keys = latest.artifacts.iter().all(|a| a.recipients == keys);
            if same_tree && same_keys {
                return Ok(FilesOutcome::Unchanged {
                    latest: Box::new(latest),
                });
            }
        }
    }
    let facts = &scanned.facts;
    let entries = facts.files + facts.directories + facts.symlinks;
    let size_hint = facts.bytes + entries * 1536 + 1024;

    let started_at = Utc::now();
    let id = new_backup_id(BackupKind::Files, started_at);
    if plan.cancel.is_cancelled() {
        return Err(Error::Cancelled("backup files".to_owned()));
    }
    let locks = targets.lock("backup files").await?;
    let walked = Arc::new(Mutex::new(None));
    let source = TarSource {
        roots: roots.clone(),
        excludes: plan.excludes.clone(),
        hook: plan.hook.clone(),
        size_hint,
        report: walked.clone(),
    };
    let mut stored: Vec<ArtifactEntry> = Vec::new();
    let mut warnings = (Vec::new(), 0);
    let outcome = crate::cancel::cancellable(&plan.cancel, "backup files", async {
        let artifact = format!("{ARCHIVE_ARTIFACT}{}", plan.sealing.suffix());
        stored.push(
            targets
                .store(&id, &artifact, source, &plan.sealing, progress)
                .await?,
        );
        let report = walked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| Error::StageVanished {
                stage: "the files walk".to_owned(),
            })?;
        warnings = (report.warnings, report.more_warnings);
        let files = FilesFacts {
            set: name.clone(),
            paths: roots
                .iter()
                .map(|r| r.path.to_string_lossy().into_owned())
                .collect(),
            ..report.facts
        };
        Ok(Manifest {
            manifest_version: MANIFEST_VERSION,
            id: id.clone(),
            kind: BackupKind::Files,
            tags: plan.tags.clone(),
            started_at,
            finished_at: Utc::now(),
            source: SourceFacts {
                files: Some(files),
                ..SourceFacts::default()
            },
            artifacts: stored.clone(),
            written_by: format!("ecobackup {}", env!("CARGO_PKG_VERSION")),
            // Set when the backup goes to several repositories.
            targets: Vec::new(),
        })
    })
    .await;
    let outcome = targets.finish_backup(&id, locks, outcome, &stored).await;
    let (warnings, more_warnings) = warnings;
    Ok(FilesOutcome::Stored(Box::new(FilesReport {
        manifest: outcome?,
        warnings,
        more_warnings,
    })))
}
