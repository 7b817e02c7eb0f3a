//! `restore physical`: a base backup unpacked into a data directory, checked with
//! `pg_verifybackup`, and set up to recover to a target by fetching archived WAL.
//!
//! Order of work, so that nothing is left half-done: choose the backup and check the target
//! against it and the archive (refusing what recovery could not reach), check the directory
//! (empty or missing; `force` empties it), unpack (digests checked before the last bytes land;
//! on failure the directory is emptied again), verify the files against PostgreSQL's own
//! manifest, then write `recovery.signal` and the recovery settings. Starting the server is a
//! separate step ([`start_recovery`](super::start::start_recovery)).

use crate::error::remedy;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::recovery::{RecoverySettings, RecoveryTarget, TargetAction, TargetTimeline};
use super::unpack::{empty_dir, UnpackSink};
use super::{BASE_ARTIFACT, MANIFEST_ARTIFACT};
use crate::artifact;
use crate::crypto::Keyring;
use crate::error::{Error, Result};
use crate::io::FileSink;
use crate::postgres::binaries::find_program;
use crate::process::ChildCommand;
use crate::progress::Progress;
use crate::repository::{BackupKind, Manifest, PhysicalFacts, Repository};
use crate::wal::archive::parse_object_key;
use crate::wal::{Lsn, Segment};

/// What to restore, where, and to which point.
///
/// `#[non_exhaustive]`: build it with `new` and set fields; a field added
/// later is not a breaking change.
#[derive(Clone)]
#[non_exhaustive]
pub struct PhysicalRestore {
    /// A backup id, `latest`, or `None`: the newest backup that ended before the target time
    /// (or the newest, without a time).
    pub backup: Option<String>,
    /// The data directory to create (missing or empty, unless `force`).
    pub pgdata: PathBuf,
    /// Empty a non-empty `pgdata` first.
    pub force: bool,
    /// Where recovery stops.
    pub target: RecoveryTarget,
    /// What the server does there.
    pub action: TargetAction,
    /// Which timeline it follows.
    pub timeline: TargetTimeline,
    /// The `restore_command` to write (`ecobackup … wal-fetch %f %p`).
    pub restore_command: String,
    /// Keep the backup's `archive_mode` (off by default: see
    /// [`RecoverySettings::keep_archiving`](super::recovery::RecoverySettings::keep_archiving)).
    pub keep_archiving: bool,
    /// More settings for `postgresql.auto.conf` (`port`…).
    pub extra_settings: Vec<(String, String)>,
    /// Identities that decrypt the backup.
    pub keyring: Option<Arc<Keyring>>,
    /// Directory holding pg_verifybackup of the backup's major version.
    pub pg_bin: Option<PathBuf>,
    /// Flush the restored files to disk (`syncfs`) before calling them restored: on for a real
    /// restore; a drill's throwaway copy skips it unless durable (it costs a second or more per
    /// 500 MB, and flushes everything else dirty on that filesystem too).
    pub flush: bool,
    /// Cancels the operation: it stops, cleans up what it started (uploads, stored artifacts,
    /// its lock) and returns [`Error::Cancelled`]. Never fires by default.
    pub cancel: crate::cancel::CancellationToken,
}

impl PhysicalRestore {
    /// `backup` (an id, `latest`, or `None`: the newest that reaches the target) into the new
    /// data directory `pgdata`, recovering to the backup's end through `restore_command`,
    /// flushed to disk.
    pub fn new(
        backup: Option<String>,
        pgdata: PathBuf,
        restore_command: String,
    ) -> PhysicalRestore {
        PhysicalRestore {
            backup,
            pgdata,
            force: false,
            target: RecoveryTarget::Immediate,
            action: TargetAction::default(),
            timeline: TargetTimeline::default(),
            restore_command,
            keep_archiving: false,
            extra_settings: Vec::new(),
            keyring: None,
            pg_bin: None,
            flush: true,
            cancel: Default::default(),
        }
    }
}

/// What a restore did.
#[derive(Clone, Debug, Serialize)]
pub struct PhysicalRestoreOutcome {
    /// The backup restored.
    pub backup_id: String,
    /// The data directory.
    pub pgdata: PathBuf,
    /// The server's major version (its programs start it).
    pub major_version: u32,
    /// Whether `pg_verifybackup` checked the files.
    pub verified: bool,
    /// The uid and gid that own the data directory (the server must run as them).
    pub owner: (u32, u32),
    /// The name of the user with uid `owner.0`, when it has one.
    pub owner_name: Option<String>,
    /// Where the backup's WAL range ends: recovery replays at least this far.
    pub consistent_at: String,
}

/// Restores a physical backup into `plan.pgdata`, ready for recovery.
///
/// Cancel safety: `plan.cancel` stops it cleanly (see [`crate::cancel`]); dropping the future
/// commits nothing, its clean-up then runs in background tasks.
pub async fn restore_physical(
    repo: &Repository,
    plan: &PhysicalRestore,
    progress: &dyn Progress,
) -> Result<PhysicalRestoreOutcome> {
    let manifest = choose_backup(repo, plan.backup.as_deref(), &plan.target).await?;
    let physical = physical_facts(&manifest)?;
    check_target(repo, &manifest, physical, &plan.target).await?;
    let major = major_of(&manifest)?;
    let pg_verifybackup = find_program("pg_verifybackup", major, plan.pg_bin.as_deref()).await?;

    let entry = |name: &str| {
        manifest
            .artifacts
            .iter()
            .find(|a| a.name.starts_with(name) && a.name[name.len()..].starts_with(".zst"))
            .ok_or_else(|| Error::BadManifest {
                key: Repository::artifact_key(&manifest.id, "manifest.json"),
                detail: format!("the physical backup has no {name} artifact"),
            })
    };
    let base = entry(BASE_ARTIFACT)?;
    let pg_manifest = entry(MANIFEST_ARTIFACT)?;
    // PostgreSQL's manifest first, from its own artifact (digest-checked), outside the data
    // directory: a wrong key or an unreachable store shows before a directory is touched.
    let scratch =
        tempfile::tempdir().map_err(|e| Error::io("creating a temporary directory", e))?;
    let manifest_path = scratch.path().join("backup_manifest");
    artifact::open(
        repo,
        &manifest.id,
        pg_manifest,
        plan.keyring.clone(),
        FileSink::new(&manifest_path),
        progress,
    )
    .await?;
    let owner = prepare_dir(&plan.pgdata, plan.force)?;
    let run_as = nix::unistd::geteuid().is_root().then_some(owner);
    let work = crate::cancel::cancellable(&plan.cancel, "restore physical", async {
        artifact::open(
            repo,
            &manifest.id,
            base,
            plan.keyring.clone(),
            UnpackSink::new(&plan.pgdata, run_as),
            progress,
        )
        .await?;
        // What was unpacked reaches the disk before it is checked and called restored.
        if plan.flush {
            let dir = std::fs::File::open(&plan.pgdata)
                .map_err(|e| Error::io(format!("opening {}", plan.pgdata.display()), e))?;
            nix::unistd::syncfs(&dir)
                .map_err(|e| Error::io(format!("flushing {}", plan.pgdata.display()), e.into()))?;
        }
        verify_files(&pg_verifybackup, &manifest_path, &plan.pgdata).await?;
        let settings = RecoverySettings {
            restore_command: Some(plan.restore_command.clone()),
            target: plan.target.clone(),
            action: plan.action,
            timeline: plan.timeline,
            keep_archiving: plan.keep_archiving,
            extra: plan.extra_settings.clone(),
        };
        settings.write(&plan.pgdata, &manifest.id)?;
        // `log/` for `pg_ctl -l <dir>/log/…` (PostgreSQL's default log directory too).
        let log = plan.pgdata.join("log");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&log)
            .map_err(|e| Error::io(format!("creating {}", log.display()), e))?;
        if let Some((uid, gid)) = run_as {
            for name in ["postgresql.auto.conf", "recovery.signal", "log"] {
                let path = plan.pgdata.join(name);
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .map_err(|e| Error::io(format!("giving {} to uid {uid}", path.display()), e))?;
            }
        }
        Ok(())
    })
    .await;
    if let Err(e) = work {
        if let Err(cleanup) = empty_dir(&plan.pgdata) {
            tracing::warn!(error = %cleanup, dir = %plan.pgdata.display(), "could not empty the data directory after a failed restore");
        }
        return Err(e);
    }
    Ok(PhysicalRestoreOutcome {
        backup_id: manifest.id.clone(),
        pgdata: plan.pgdata.clone(),
        major_version: major,
        verified: true,
        owner,
        owner_name: nix::unistd::User::from_uid(owner.0.into())
            .ok()
            .flatten()
            .map(|u| u.name),
        consistent_at: manifest.source.stop_lsn.clone().unwrap_or_default(),
    })
}

/// The backup to restore to `target`: the one named, or for `latest` (or `None`) the newest
/// physical backup that can reach it — one with archived WAL behind it (unless only its own
/// end is wanted) that ended before a target time.
pub async fn choose_backup(
    repo: &Repository,
    wanted: Option<&str>,
    target: &RecoveryTarget,
) -> Result<Manifest> {
    let wanted = wanted.unwrap_or("latest");
    if wanted != "latest" {
        return repo.manifest(wanted).await;
    }
    let time = match target {
        RecoveryTarget::Time(time) => Some(time.with_timezone(&Utc)),
        _ => None,
    };
    let needs_archive = *target != RecoveryTarget::Immediate;
    let listing = repo.manifests().await?;
    listing
        .backups
        .into_iter()
        .rev()
        .filter(|m| m.kind == BackupKind::Physical)
        .find(|m| {
            m.source.physical.as_ref().is_some_and(|p| {
                (p.wal_archived || !needs_archive) && time.is_none_or(|t| p.backup_stopped_at <= t)
            })
        })
        .ok_or_else(|| Error::BackupNotFound {
            wanted: match time {
                Some(time) => {
                    format!("latest (a physical backup with archived WAL that ended before {time})")
                }
                None if needs_archive => "latest (a physical backup with archived WAL)".to_owned(),
                None => "latest (physical)".to_owned(),
            },
            repo: repo.storage().url().to_owned(),
        })
}

fn physical_facts(manifest: &Manifest) -> Result<&PhysicalFacts> {
    if manifest.kind != BackupKind::Physical {
        return Err(Error::BadManifest {
            key: Repository::artifact_key(&manifest.id, "manifest.json"),
            detail: format!(
                "backup {} is a {} backup: restore it with `restore {}`",
                manifest.id, manifest.kind, manifest.kind
            ),
        });
    }
    manifest
        .source
        .physical
        .as_ref()
        .ok_or_else(|| Error::BadManifest {
            key: Repository::artifact_key(&manifest.id, "manifest.json"),
            detail: "the physical backup's manifest has no WAL range".to_owned(),
        })
}

fn major_of(manifest: &Manifest) -> Result<u32> {
    manifest
        .source
        .server_version
        .as_deref()
        .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| Error::BadManifest {
            key: Repository::artifact_key(&manifest.id, "manifest.json"),
            detail: "the manifest does not say which PostgreSQL version made the backup".to_owned(),
        })
}

/// Refuses a target recovery cannot reach from this backup and this archive: before the
/// backup's end (recovery must replay the backup's whole WAL range first), after the newest
/// archived WAL (recovery would stop early and promote, as if that were the target), or any
/// target but the backup's end when the backup has no archive behind it.
async fn check_target(
    repo: &Repository,
    manifest: &Manifest,
    physical: &PhysicalFacts,
    target: &RecoveryTarget,
) -> Result<()> {
    let refuse = |detail: String| Error::Refused {
        context: format!("restoring backup {} to {}", manifest.id, describe(target)),
        detail,
    };
    if !physical.wal_archived && *target != RecoveryTarget::Immediate {
        return Err(refuse(remedy!(
            cli: "the backup was taken with --allow-no-archive: it restores to its end only (use --target-immediate)",
            library: "the backup was taken without WAL archiving: it restores to its end only (RecoveryTarget::Immediate)",
        )));
    }
    if *target != RecoveryTarget::Immediate {
        check_no_gap(repo, physical).await.map_err(|e| match e {
            Error::Refused { detail, .. } => refuse(detail),
            other => other,
        })?;
    }
    let stop_lsn: Option<Lsn> = manifest
        .source
        .stop_lsn
        .as_deref()
        .and_then(|s| s.parse().ok());
    match target {
        RecoveryTarget::Time(time) => {
            if time.with_timezone(&Utc) < physical.backup_stopped_at {
                return Err(refuse(format!(
                    "the backup ended at {}, after the target: recovery cannot stop before the end of the backup's WAL range; choose an older backup (or leave out the id: the newest backup that ended before the target is chosen)",
                    physical.backup_stopped_at
                )));
            }
            if let Some(newest) = newest_archived(repo).await? {
                if time.with_timezone(&Utc) > newest.1 {
                    return Err(refuse(format!(
                        "the newest archived WAL file ({}) was stored at {}, before the target: recovery would end there and promote as if it had reached the target; wait until the WAL is archived (pg_switch_wal(), archive_timeout) or choose an earlier target",
                        newest.0, newest.1
                    )));
                }
            }
        }
        RecoveryTarget::Lsn(lsn) => {
            if let Some(stop) = stop_lsn {
                if *lsn < stop {
                    return Err(refuse(format!(
                        "the backup's WAL range ends at {stop}: recovery cannot stop before it; choose an older backup"
                    )));
                }
            }
            if let Some(end) = archive_end(repo, physical.wal_segment_size).await? {
                if *lsn > end {
                    return Err(refuse(format!(
                        "the archived WAL ends at {end}: recovery would end there and promote as if it had reached the target"
                    )));
                }
            }
        }
        RecoveryTarget::EndOfArchive
        | RecoveryTarget::Immediate
        | RecoveryTarget::Name(_)
        | RecoveryTarget::Xid(_) => {}
    }
    Ok(())
}

/// Refuses an archive with a hole between the backup's first segment and the newest one of its
/// timeline: `wal-fetch` reports a missing file as the end of the archive, so recovery would
/// stop at the hole and promote, dropping everything after it.
async fn check_no_gap(repo: &Repository, physical: &PhysicalFacts) -> Result<()> {
    let size = physical.wal_segment_size;
    let Some(start) = Segment::parse(&physical.start_wal, size) else {
        return Ok(());
    };
    let folder = format!("wal/{:08X}/", start.timeline);
    let mut numbers: Vec<u64> = repo
        .storage()
        .list(&folder)
        .await?
        .iter()
        .filter_map(|o| parse_object_key(&o.key))
        .filter_map(|f| Segment::parse(&f.name(), size))
        .map(|s| s.number)
        .filter(|n| *n >= start.number)
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    for (expected, n) in (start.number..).zip(numbers) {
        if n != expected {
            let missing = Segment {
                timeline: start.timeline,
                number: expected,
            };
            return Err(Error::Refused {
                context: "checking the archived WAL".to_owned(),
                detail: {
                    let (segment, lsn) = (missing.file_name(size), missing.start_lsn(size));
                    remedy!(
                        cli: "segment {segment} is missing from the archive while later ones are there: recovery would stop at it and promote, dropping everything after it; run `ecobackup verify --wal`, and restore to a target before it (--target-lsn {lsn}) if it is lost",
                        library: "segment {segment} is missing from the archive while later ones are there: recovery would stop at it and promote, dropping everything after it; verify the WAL archive, and restore to a target before it (an LSN before {lsn}) if it is lost",
                    )
                },
            });
        }
    }
    Ok(())
}

/// The newest archived WAL file and when it was stored.
async fn newest_archived(repo: &Repository) -> Result<Option<(String, DateTime<Utc>)>> {
    let objects = repo.storage().list("wal/").await?;
    Ok(objects
        .into_iter()
        .filter(|o| parse_object_key(&o.key).is_some())
        .max_by_key(|o| o.modified)
        .map(|o| (o.key, o.modified)))
}

/// The end of the newest archived segment, over all timelines.
async fn archive_end(repo: &Repository, segment_size: u64) -> Result<Option<Lsn>> {
    let objects = repo.storage().list("wal/").await?;
    Ok(objects
        .iter()
        .filter_map(|o| parse_object_key(&o.key))
        .filter_map(|f| Segment::parse(&f.name(), segment_size))
        .map(|s| s.next().start_lsn(segment_size))
        .max())
}

/// The target in words, for messages.
pub fn describe(target: &RecoveryTarget) -> String {
    match target {
        RecoveryTarget::EndOfArchive => "the end of the archived WAL".to_owned(),
        RecoveryTarget::Immediate => "the end of the backup".to_owned(),
        RecoveryTarget::Time(t) => format!("time {t}"),
        RecoveryTarget::Lsn(l) => format!("LSN {l}"),
        RecoveryTarget::Name(n) => format!("restore point {n:?}"),
        RecoveryTarget::Xid(x) => format!("transaction {x}"),
    }
}

/// Creates `dir` (0700) or checks it is empty (emptying it with `force`); returns the uid and
/// gid the restored files will belong to: `dir`'s owner (its parent's, when it is created).
fn prepare_dir(dir: &Path, force: bool) -> Result<(u32, u32)> {
    let io = |what: &str, e| Error::io(format!("{what} {}", dir.display()), e);
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                if dir.join("postmaster.pid").exists() {
                    return Err(Error::Refused {
                        context: format!("restoring into {}", dir.display()),
                        detail: "it holds a postmaster.pid: a server may be running on it; stop it first".to_owned(),
                    });
                }
                if force && !dir.join("PG_VERSION").exists() {
                    return Err(Error::Refused {
                        context: format!("restoring into {}", dir.display()),
                        detail: remedy!(
                            cli: "--force empties only a PostgreSQL data directory (one with PG_VERSION), and this one is not: choose an empty or missing directory",
                            library: "force empties only a PostgreSQL data directory (one with PG_VERSION), and this one is not: choose an empty or missing directory",
                        ),
                    });
                }
                if !force {
                    return Err(Error::Refused {
                        context: format!("restoring into {}", dir.display()),
                        detail: remedy!(
                            cli: "the directory is not empty: restore into an empty or missing directory, or give --force to delete its contents first",
                            library: "the directory is not empty: restore into an empty or missing directory, or with force to delete its contents first",
                        ),
                    });
                }
                empty_dir(dir).map_err(|e| io("emptying", e))?;
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io("creating", e))?;
            if let Some(parent) = dir.parent() {
                let meta = std::fs::metadata(parent).map_err(|e| io("reading the parent of", e))?;
                if nix::unistd::geteuid().is_root() {
                    std::os::unix::fs::chown(dir, Some(meta.uid()), Some(meta.gid()))
                        .map_err(|e| io("handing over", e))?;
                }
            }
        }
        Err(e) => return Err(io("reading", e)),
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io("setting mode 0700 on", e))?;
    let meta = std::fs::metadata(dir).map_err(|e| io("reading", e))?;
    Ok((meta.uid(), meta.gid()))
}

/// `pg_verifybackup -n -m MANIFEST DIR`: every file's size and checksum against PostgreSQL's
/// manifest (the WAL is fetched and checked during recovery instead: `-n`).
async fn verify_files(program: &Path, manifest: &Path, dir: &Path) -> Result<()> {
    let output = ChildCommand::new(program)
        .arg("--no-parse-wal")
        .arg("--quiet")
        .arg(format!("--manifest-path={}", manifest.display()))
        // Files ecobackup itself adds are not in PostgreSQL's manifest.
        .arg("--ignore=recovery.signal")
        .arg(dir.as_os_str())
        .output()
        .await;
    output.map(drop).map_err(|e| Error::Process {
        program: "pg_verifybackup".to_owned(),
        status: "failed".to_owned(),
        detail: format!(
            "the restored files in {} do not match the backup's manifest ({}); do not start this server: restore again, or from another backup",
            dir.display(),
            crate::error::one_line(&e)
        ),
    })
}
