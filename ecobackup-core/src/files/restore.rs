//! `restore files`: a files backup unpacked into a directory, all or nothing.
//!
//! 1. The archive is unpacked into a private staging directory (mode 0700) inside the target
//!    directory — the same filesystem, so moving an entry into place is a `rename` — with every
//!    entry checked ([`unpack_checked`](super::unpack_checked)). The artifact pipeline holds back the last chunk until
//!    both digests passed, so a tampered or truncated artifact ends in an error, never in a
//!    complete-looking archive.
//! 2. Only when the whole archive was unpacked and authenticated is the target looked at: every
//!    entry that already exists there is a conflict, and conflicts refuse the restore before
//!    anything moves (with `overwrite`, files and links are replaced; a directory is merged,
//!    never replaced by a file). Existing directories are entered only when they are real
//!    directories, never through a symbolic link.
//! 3. Entries move into place; if a move fails, the moves already made are undone, and
//!    replaced files come back. Then directories get their modes and times.
//!
//! Whatever fails, the staging directory is removed and the target is as it was (a target
//! created for the restore is removed again).

use crate::error::remedy;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};

use serde::Serialize;

use super::backup::latest_of_set;
use super::extract::{set_mtime_nofollow, DirMeta, ExtractSink, Extracted, Includes};
use super::ARCHIVE_ARTIFACT;
use crate::artifact;
use crate::crypto::Keyring;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repository::{ArtifactEntry, BackupKind, Manifest, Repository};

/// What to restore, and where.
#[derive(Clone)]
#[non_exhaustive]
pub struct FilesRestore {
    /// A backup id, or `latest`.
    pub backup: String,
    /// With `latest`: the newest backup of this set (else of any set).
    pub set: Option<String>,
    /// The target directory (created when missing).
    pub to: PathBuf,
    /// Restore only entries whose path, an ancestor's path or name matches one of these
    /// globs; empty: everything.
    pub include: Vec<String>,
    /// Replace existing files and links (directories are merged).
    pub overwrite: bool,
    /// Identities that decrypt the backup.
    pub keyring: Option<Arc<Keyring>>,
    /// Cancels the operation: it stops, cleans up what it started (uploads, stored artifacts,
    /// its lock) and returns [`Error::Cancelled`]. Never fires by default.
    pub cancel: crate::cancel::CancellationToken,
}

impl FilesRestore {
    /// Restores `backup` (an id or `latest`) into `to`, everything, refusing to overwrite.
    pub fn new(backup: impl Into<String>, to: impl Into<PathBuf>) -> FilesRestore {
        FilesRestore {
            backup: backup.into(),
            set: None,
            to: to.into(),
            include: Vec::new(),
            overwrite: false,
            keyring: None,
            cancel: Default::default(),
        }
    }
}

/// What a files restore did.
#[derive(Clone, Debug, Serialize)]
pub struct FilesRestoreOutcome {
    /// The backup restored.
    pub backup_id: String,
    /// Its set.
    pub set: String,
    /// The target directory.
    pub to: PathBuf,
    /// Regular files restored.
    pub files: u64,
    /// Directories restored.
    pub directories: u64,
    /// Symbolic links restored.
    pub symlinks: u64,
    /// Hard links restored.
    pub hard_links: u64,
    /// Bytes of file content restored.
    pub bytes: u64,
    /// Existing files and links replaced (`overwrite`).
    pub replaced: u64,
}

fn refused(to: &Path, detail: String) -> Error {
    Error::Refused {
        context: format!("restoring files into {}", to.display()),
        detail,
    }
}

/// The backup to restore: the id, or the newest files backup (of the set).
async fn choose(repo: &Repository, plan: &FilesRestore) -> Result<Manifest> {
    let manifest = match (plan.backup.as_str(), &plan.set) {
        ("latest", Some(set)) => {
            latest_of_set(repo, set)
                .await?
                .ok_or_else(|| Error::BackupNotFound {
                    wanted: format!("latest (files set {set:?})"),
                    repo: repo.storage().url().to_owned(),
                })?
        }
        (wanted, _) => repo.resolve(wanted, Some(BackupKind::Files)).await?,
    };
    if manifest.kind != BackupKind::Files {
        return Err(refused(
            &plan.to,
            format!(
                "backup {} is a {} backup: restore it with `ecobackup restore {}`",
                manifest.id, manifest.kind, manifest.kind
            ),
        ));
    }
    let set = manifest.source.files.as_ref().map(|f| f.set.as_str());
    if let Some(wanted) = plan.set.as_deref().filter(|w| set != Some(*w)) {
        return Err(refused(
            &plan.to,
            format!(
                "backup {} is of the files set {:?}, not {wanted:?}",
                manifest.id,
                set.unwrap_or_default()
            ),
        ));
    }
    Ok(manifest)
}

/// The archive artifact of a files backup.
fn archive_entry(manifest: &Manifest) -> Result<&ArtifactEntry> {
    manifest
        .artifacts
        .iter()
        .find(|a| {
            a.name
                .strip_prefix(ARCHIVE_ARTIFACT)
                .is_some_and(|rest| rest.starts_with(".zst"))
        })
        .ok_or_else(|| Error::BadManifest {
            key: Repository::artifact_key(&manifest.id, "manifest.json"),
            detail: format!("the files backup has no {ARCHIVE_ARTIFACT} artifact"),
        })
}

/// Restores a files backup into `plan.to`.
///
/// Cancel safety: `plan.cancel` stops it cleanly (see [`crate::cancel`]); dropping the future
/// commits nothing, its clean-up then runs in background tasks.
pub async fn restore_files(
    repo: &Repository,
    plan: &FilesRestore,
    progress: &dyn Progress,
) -> Result<FilesRestoreOutcome> {
    let manifest = choose(repo, plan).await?;
    let entry = archive_entry(&manifest)?;
    let includes = Includes::new(&plan.include)?;
    let to = plan.to.clone();
    let created = match std::fs::metadata(&to) {
        Ok(meta) if meta.is_dir() => false,
        Ok(_) => return Err(refused(&to, "it exists and is not a directory".to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&to)
                .map_err(|e| Error::io(format!("creating {}", to.display()), e))?;
            true
        }
        Err(e) => return Err(Error::io(format!("reading {}", to.display()), e)),
    };
    // The staging directory comes and goes inside `to`: a failed restore puts its time back.
    let to_mtime = std::fs::metadata(&to).and_then(|m| m.modified()).ok();
    let result = async {
        let staging = tempfile::Builder::new()
            .prefix(".ecobackup-restore-")
            .tempdir_in(&to)
            .map_err(|e| {
                Error::io(
                    format!("creating a staging directory in {}", to.display()),
                    e,
                )
            })?;
        let (sink, report) = ExtractSink::new(staging.path(), includes);
        // Cancellable until the first move: the staging directory is all there is to undo.
        crate::cancel::cancellable(
            &plan.cancel,
            "restore files",
            artifact::open(
                repo,
                &manifest.id,
                entry,
                plan.keyring.clone(),
                sink,
                progress,
            ),
        )
        .await?;
        let extracted = report
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or_default();
        if !plan.include.is_empty() && extracted.files + extracted.symlinks + extracted.hard_links + extracted.directories == 0 {
            return Err(refused(
                &to,
                {
                    let id = &manifest.id;
                    let flags: Vec<String> = plan.include.iter().map(|p| format!("--include {p}")).collect();
                    let flags = flags.join(" ");
                    let patterns = plan.include.join(", ");
                    remedy!(
                        cli: "no entry of backup {id} matches {flags}: `ecobackup show {id}` lists its roots",
                        library: "no entry of backup {id} matches the include patterns {patterns}: its manifest lists its roots",
                    )
                },
            ));
        }
        let (to, overwrite) = (to.clone(), plan.overwrite);
        let staging_path = staging.path().to_owned();
        let replaced = tokio::task::spawn_blocking(move || {
            put_in_place(&staging_path, &to, overwrite, &extracted).map(|r| (r, extracted))
        })
        .await
        .map_err(|e| Error::io("moving the restored files into place", std::io::Error::other(e)))?;
        match &replaced {
            // A move could not be undone: the staging directory holds files (and the originals
            // moved aside) that are nowhere else. It stays; the error names it.
            Err(Error::Io { context, .. }) if context.contains(UNDO_FAILED) => {
                let _ = staging.keep();
            }
            _ => drop(staging),
        }
        replaced
    }
    .await;
    let (replaced, extracted) = match result {
        Ok(done) => done,
        Err(e) => {
            if created {
                let _ = std::fs::remove_dir(&to);
            } else if let Some(mtime) = to_mtime {
                let _ = std::fs::File::open(&to)
                    .and_then(|dir| dir.set_times(std::fs::FileTimes::new().set_modified(mtime)));
            }
            return Err(e);
        }
    };
    Ok(FilesRestoreOutcome {
        backup_id: manifest.id.clone(),
        set: manifest
            .source
            .files
            .as_ref()
            .map(|f| f.set.clone())
            .unwrap_or_default(),
        to: plan.to.clone(),
        files: extracted.files,
        directories: extracted.directories,
        symlinks: extracted.symlinks,
        hard_links: extracted.hard_links,
        bytes: extracted.bytes,
        replaced,
    })
}

/// One move into the target.
enum Step {
    /// `from` goes where nothing is.
    Place { from: PathBuf, to: PathBuf },
    /// `from` replaces the file or link at `to` (`overwrite`).
    Replace { from: PathBuf, to: PathBuf },
}

/// Said by the error of a restore whose failed moves could not all be undone.
const UNDO_FAILED: &str = "some moves could not be undone";

/// Plans the moves of everything under `staging/relative` into `to/relative`.
fn plan_moves(
    staging: &Path,
    to: &Path,
    relative: &Path,
    overwrite: bool,
    steps: &mut Vec<Step>,
    conflicts: &mut Vec<String>,
) -> std::io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(staging.join(relative))?
        .map(|item| item.map(|i| i.file_name()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    for name in names {
        let rel = relative.join(&name);
        let (from, dest) = (staging.join(&rel), to.join(&rel));
        let from_is_dir = std::fs::symlink_metadata(&from)?.is_dir();
        match std::fs::symlink_metadata(&dest) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                steps.push(Step::Place { from, to: dest });
            }
            Err(e) => return Err(e),
            Ok(existing) if existing.is_dir() && from_is_dir => {
                plan_moves(staging, to, &rel, overwrite, steps, conflicts)?;
            }
            Ok(existing) if existing.is_dir() => conflicts.push(format!(
                "{} is a directory, and a file in the backup (remove it first)",
                dest.display()
            )),
            Ok(_) if !overwrite => conflicts.push(format!("{} exists", dest.display())),
            Ok(_) => steps.push(Step::Replace { from, to: dest }),
        }
    }
    Ok(())
}

/// Moves the staged entries into `to` (undoing every move if one fails), then sets the
/// directories' modes and times; returns how many entries were replaced.
fn put_in_place(staging: &Path, to: &Path, overwrite: bool, extracted: &Extracted) -> Result<u64> {
    let io = |what: &str, e| Error::io(format!("{what} in {}", to.display()), e);
    let mut steps = Vec::new();
    let mut conflicts = Vec::new();
    plan_moves(
        staging,
        to,
        Path::new(""),
        overwrite,
        &mut steps,
        &mut conflicts,
    )
    .map_err(|e| io("comparing the restored files with what is", e))?;
    if let Some(first) = conflicts.first() {
        return Err(refused(to, {
            let count = conflicts.len();
            let more = if count > 1 { ", …" } else { "" };
            remedy!(
                cli: "{count} of the backup's entries already exist ({first}{more}): nothing was restored; restore into an empty directory, or pass --overwrite to replace files and links",
                library: "{count} of the backup's entries already exist ({first}{more}): nothing was restored; restore into an empty directory, or with overwrite to replace files and links",
            )
        }));
    }
    let aside = staging.join(".replaced");
    let mut journal: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut replaced = 0u64;
    let moved = (|| -> std::io::Result<()> {
        for step in &steps {
            match step {
                Step::Place { from, to } => {
                    std::fs::rename(from, to)?;
                    journal.push((to.clone(), from.clone()));
                }
                Step::Replace { from, to } => {
                    if replaced == 0 {
                        std::fs::create_dir(&aside)?;
                    }
                    let old = aside.join(replaced.to_string());
                    std::fs::rename(to, &old)?;
                    journal.push((old, to.clone()));
                    std::fs::rename(from, to)?;
                    journal.push((to.clone(), from.clone()));
                    replaced += 1;
                }
            }
        }
        Ok(())
    })();
    if let Err(e) = moved {
        let mut undone = true;
        for (now, was) in journal.iter().rev() {
            if let Err(undo) = std::fs::rename(now, was) {
                undone = false;
                tracing::error!(path = %now.display(), error = %undo, "could not undo a move of the failed restore");
            }
        }
        return Err(match undone {
            true => io(
                "moving the restored files into place (every move was undone)",
                e,
            ),
            false => io(
                &format!(
                    "moving the restored files into place ({UNDO_FAILED}: what could not be put back, and the originals moved aside under .replaced/, are kept in {})",
                    staging.display()
                ),
                e,
            ),
        });
    }
    // Modes, owners and times of the directories this restore created; an existing directory
    // it merged into keeps its own unless --overwrite asked for the backup's.
    let created: Vec<&PathBuf> = steps
        .iter()
        .filter_map(|step| match step {
            Step::Place { to, .. } => Some(to),
            Step::Replace { .. } => None,
        })
        .collect();
    for (path, meta) in extracted.dirs.iter().rev() {
        let Some(meta) = meta else { continue };
        let dest = to.join(path);
        if !overwrite && !created.iter().any(|c| dest.starts_with(c)) {
            continue;
        }
        // The files are in place: a mode that cannot be set is a warning, not a failure.
        if let Err(e) = set_dir_meta(&dest, meta) {
            tracing::warn!(path = %dest.display(), error = %e, "restored, but could not set the directory's mode, owner or time");
        }
    }
    Ok(replaced)
}

/// A restored directory's owner (as root), mode and modification time.
fn set_dir_meta(path: &Path, meta: &DirMeta) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if !std::fs::symlink_metadata(path)?.is_dir() {
        return Ok(());
    }
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::lchown(path, Some(meta.owner.0), Some(meta.owner.1))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode))?;
    set_mtime_nofollow(path, meta.mtime_ns)
}
