//! Physical backups: `pg_basebackup -D - -Ft -X none` streamed through zstd and age into
//! `<id>/base.tar.zst.age`, PostgreSQL's `backup_manifest` beside it.
//!
//! The base backup alone is not consistent: recovery must replay the WAL from its start LSN to
//! its stop LSN, which the server archives through `ecobackup wal-push`. So before starting,
//! the server's archiving is checked; during the backup, the server itself waits until the stop
//! segment is archived (pg_basebackup's `-X none` asks it to), bounded by `archive_timeout`
//! of silence after the last data file; and at the end ecobackup waits (bounded too) until the
//! stop segment is in *this* repository. Only then is the manifest written: a backup is never
//! listed as good without the WAL that makes it consistent.
//!
//! With `allow_no_archive`, the WAL up to the stop point is fetched into the base artifact
//! instead (`-X fetch`), and the manifest says the backup restores to its end only.

use crate::error::remedy;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures::StreamExt;

use super::label::{control_system_identifier, BackupLabel, BackupManifestFacts};
use super::server::ServerState;
use super::tar_watch::TarWatch;
use crate::artifact::{self, Sealing};
use crate::error::{Error, Result};
use crate::io::ReaderSource;
use crate::pipeline::{ByteStream, Source, SourceInfo};
use crate::postgres::binaries::find_program;
use crate::postgres::DbUrl;
use crate::process::{ChildCommand, ChildSource};
use crate::progress::Progress;
use crate::repository::{
    new_backup_id, ArtifactEntry, BackupKind, Lock, LockMode, LockOptions, Manifest, PhysicalFacts,
    Repository, SourceFacts, MANIFEST_VERSION,
};
use crate::wal::{archive, Segment, WalFile};

/// The base backup's artifact name, before the sealing suffix.
pub const BASE_ARTIFACT: &str = "base.tar";
/// PostgreSQL's manifest's artifact name, before the sealing suffix.
pub const MANIFEST_ARTIFACT: &str = "backup_manifest";
/// The default bound on waiting for the stop segment to be archived.
pub const DEFAULT_ARCHIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Members of the base tar ecobackup reads on the way.
const LABEL: &str = "backup_label";
const CONTROL: &str = "global/pg_control";
const PG_MANIFEST: &str = "backup_manifest";
/// The largest `backup_manifest` kept in memory (about 200 bytes per file: a million files).
const MANIFEST_LIMIT: u64 = 256 << 20;

/// What to back up, and how.
///
/// `#[non_exhaustive]`: build it with `new` and set fields; a field added
/// later is not a breaking change.
#[derive(Clone)]
#[non_exhaustive]
pub struct PhysicalBackup {
    /// The server (the role needs REPLICATION).
    pub url: DbUrl,
    /// Labels for the manifest.
    pub tags: BTreeMap<String, String>,
    /// zstd level and recipients.
    pub sealing: Sealing,
    /// Directory holding pg_basebackup of the server's major version.
    pub pg_bin: Option<PathBuf>,
    /// Take the backup although the server does not archive to this repository: the WAL up to
    /// the stop point goes into the base artifact (`-X fetch`); no point-in-time recovery.
    pub allow_no_archive: bool,
    /// How long the archiving of the stop segment may take.
    pub archive_timeout: Duration,
    /// Cancels the operation: it stops, cleans up what it started (uploads, stored artifacts,
    /// its lock) and returns [`Error::Cancelled`]. Never fires by default.
    pub cancel: crate::cancel::CancellationToken,
}

impl PhysicalBackup {
    /// The server at `url`, sealed with `sealing`; it must archive to the repository.
    pub fn new(url: DbUrl, sealing: Sealing) -> PhysicalBackup {
        PhysicalBackup {
            url,
            tags: BTreeMap::new(),
            sealing,
            pg_bin: None,
            allow_no_archive: false,
            archive_timeout: Duration::from_secs(60),
            cancel: Default::default(),
        }
    }
}

/// Runs a physical backup into `repo`; returns the manifest that was written.
///
/// Cancel safety: `plan.cancel` stops it cleanly (see [`crate::cancel`]); dropping the future
/// commits nothing, its clean-up then runs in background tasks.
pub async fn backup_physical(
    repo: &Repository,
    plan: &PhysicalBackup,
    progress: &dyn Progress,
) -> Result<Manifest> {
    let (client, url) = plan.url.connect_pinned().await?;
    let client = &client;
    let server = ServerState::read(client, &url).await?;
    server.check_backup_possible(&url)?;
    if !plan.allow_no_archive {
        server.check_archiving(&url)?;
        check_archive_identity(repo, &server, &url).await?;
    }
    let pg_basebackup = find_program(
        "pg_basebackup",
        server.major_version,
        plan.pg_bin.as_deref(),
    )
    .await?;

    let started_at = Utc::now();
    let id = new_backup_id(BackupKind::Physical, started_at);
    let lock = Lock::acquire(
        repo.storage(),
        LockMode::Shared,
        "backup physical",
        &LockOptions::default(),
    )
    .await?;
    let mut stored: Vec<ArtifactEntry> = Vec::new();
    let outcome = crate::cancel::cancellable(&plan.cancel, "backup physical", async {
        Ok(take(
            repo,
            plan,
            client,
            &url,
            &server,
            &pg_basebackup,
            &id,
            &mut stored,
            progress,
        )
        .await)
    })
    .await;
    let outcome = match outcome {
        Ok(Err(Taking::ArchiveTimeout(error))) => Err(explain_archive_failure(client, error).await),
        Ok(Err(Taking::Failed(error))) => Err(error),
        Ok(Ok(manifest)) => Ok(manifest),
        Err(cancelled) => Err(cancelled),
    };
    let outcome = repo.finish_backup(&id, &lock, outcome, &stored).await;
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "could not release the backup lock; it expires by itself");
    }
    outcome
}

/// Why taking the backup failed.
enum Taking {
    /// The WAL archive did not receive the stop segment in time.
    ArchiveTimeout(Error),
    /// Anything else.
    Failed(Error),
}

impl From<Error> for Taking {
    fn from(e: Error) -> Self {
        Taking::Failed(e)
    }
}

/// Streams the base backup and its manifest into the repository, waits for the stop segment,
/// and returns the manifest to commit.
#[allow(clippy::too_many_arguments)]
async fn take(
    repo: &Repository,
    plan: &PhysicalBackup,
    client: &tokio_postgres::Client,
    url: &DbUrl,
    server: &ServerState,
    pg_basebackup: &std::path::Path,
    id: &str,
    stored: &mut Vec<ArtifactEntry>,
    progress: &dyn Progress,
) -> std::result::Result<Manifest, Taking> {
    let wal_method = if plan.allow_no_archive {
        "fetch"
    } else {
        "none"
    };
    let command = url.apply(
        ChildCommand::new(pg_basebackup)
            .arg("--pgdata=-")
            .arg("--format=tar")
            .arg(format!("--wal-method={wal_method}"))
            .arg("--checkpoint=fast")
            .arg("--manifest-checksums=SHA256")
            .arg(format!("--label=ecobackup {id}"))
            .arg("--no-password"),
    );
    let watch = Arc::new(Mutex::new(TarWatch::new(
        &[LABEL, CONTROL, PG_MANIFEST],
        MANIFEST_LIMIT,
    )));
    let source = WatchedSource {
        inner: ChildSource::new(command, "pg_basebackup").with_size_hint(server.size_estimate),
        watch: watch.clone(),
    };
    let name = format!("{BASE_ARTIFACT}{}", plan.sealing.suffix());
    // pg_basebackup's stdout is buffered: the end of the data does not show in the stream
    // until the server stopped the backup. The server says it is waiting for its archive in
    // pg_stat_activity (the walsender's wait event), which the watchdog reads.
    tokio::select! {
        stored_base = artifact::store(repo, id, &name, source, &plan.sealing, progress) => {
            stored.push(stored_base?);
        }
        stuck = archive_watchdog(client, plan.archive_timeout) => return Err(stuck),
    }
    let stopped_at = Utc::now();

    let (label, control, pg_manifest) = {
        let mut watch = watch.lock().expect("the tar watch is not poisoned");
        (
            watch.take_member(LABEL),
            watch.take_member(CONTROL),
            watch.take_member(PG_MANIFEST),
        )
    };
    let broken = |detail: String| Error::Postgres {
        context: format!("reading the base backup of {}", url.redacted()),
        detail,
    };
    let label = label.ok_or_else(|| broken("pg_basebackup sent no backup_label".to_owned()))?;
    let label = BackupLabel::parse(&String::from_utf8_lossy(&label)).map_err(broken)?;
    let pg_manifest = pg_manifest.ok_or_else(|| {
        broken(
            "pg_basebackup sent no backup_manifest (manifests need PostgreSQL 13 or newer)"
                .to_owned(),
        )
    })?;
    let facts = BackupManifestFacts::parse(&pg_manifest).map_err(broken)?;
    let system_identifier = facts
        .system_identifier
        .or_else(|| control.as_deref().and_then(control_system_identifier))
        .or(server.system_identifier);

    let manifest_name = format!("{MANIFEST_ARTIFACT}{}", plan.sealing.suffix());
    let size = pg_manifest.len() as u64;
    let source = ReaderSource::new(MANIFEST_ARTIFACT, std::io::Cursor::new(pg_manifest))
        .with_size_hint(size);
    stored.push(artifact::store(repo, id, &manifest_name, source, &plan.sealing, progress).await?);

    let segment_size = server.wal_segment_size;
    let start = Segment::containing(label.timeline, facts.start_lsn, segment_size);
    let stop = Segment {
        timeline: facts.timeline,
        number: facts.end_lsn.previous_byte_segment_number(segment_size),
    };
    let stop_file =
        WalFile::parse(&stop.file_name(segment_size)).expect("a segment's own name parses");
    if !plan.allow_no_archive {
        wait_for_segment(repo, &stop_file, plan.archive_timeout).await?;
        check_wal_recipients(repo, &stop_file, &plan.sealing).await?;
    }

    Ok(Manifest {
        manifest_version: MANIFEST_VERSION,
        id: id.to_owned(),
        kind: BackupKind::Physical,
        tags: plan.tags.clone(),
        started_at: label.start_time.unwrap_or(stopped_at),
        finished_at: Utc::now(),
        source: SourceFacts {
            server_version: Some(server.server_version.clone()),
            system_identifier: system_identifier.map(|s| s.to_string()),
            timeline: Some(facts.timeline),
            start_lsn: Some(facts.start_lsn.to_string()),
            stop_lsn: Some(facts.end_lsn.to_string()),
            physical: Some(PhysicalFacts {
                wal_segment_size: segment_size,
                start_wal: start.file_name(segment_size),
                stop_wal: stop.file_name(segment_size),
                backup_started_at: label.start_time,
                backup_stopped_at: stopped_at,
                wal_archived: !plan.allow_no_archive,
                backup_manifest: manifest_name,
                files: facts.files,
                superuser: Some(server.bootstrap_superuser.clone()),
            }),
            ..SourceFacts::default()
        },
        artifacts: stored.clone(),
        written_by: format!("ecobackup {}", env!("CARGO_PKG_VERSION")),
        targets: Vec::new(),
    })
}

/// Refuses a server whose WAL this repository does not (or cannot) hold: another cluster's
/// archive, or an archive_command that pushes somewhere else.
async fn check_archive_identity(
    repo: &Repository,
    server: &ServerState,
    url: &DbUrl,
) -> Result<()> {
    let refuse = |detail: String| Error::Postgres {
        context: format!("starting a physical backup of {}", url.redacted()),
        detail,
    };
    if let (Some(ours), Some(archived)) = (
        server.system_identifier,
        archive::cluster_identity(repo.storage()).await?,
    ) {
        if archived.system_identifier != ours {
            return Err(refuse(format!(
                "this repository archives the WAL of another cluster (system identifier {}, the server's is {ours}): use one repository per cluster",
                archived.system_identifier
            )));
        }
    }
    if let Some(last) = server.last_archived_wal.as_deref().and_then(WalFile::parse) {
        if archive::find(repo.storage(), &last).await?.is_none() {
            let url = repo.storage().url();
            return Err(refuse(remedy!(
                cli: "the server's last archived WAL file ({last}) is not in {url}: its archive_command pushes to another repository; point it (or --repo) at the same one",
                library: "the server's last archived WAL file ({last}) is not in {url}: its archive_command pushes to another repository; point it (or this backup) at the same one",
            )));
        }
    }
    Ok(())
}

/// Waits until `file` is in the repository's archive, at most `limit`.
async fn wait_for_segment(
    repo: &Repository,
    file: &WalFile,
    limit: Duration,
) -> std::result::Result<(), Taking> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut pause = Duration::from_millis(100);
    loop {
        if archive::find(repo.storage(), file).await?.is_some() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Taking::ArchiveTimeout(Error::Postgres {
                context: "waiting for the backup's WAL".to_owned(),
                detail: format!(
                    "the stop segment {file} did not reach {} within {} s",
                    repo.storage().url(),
                    limit.as_secs()
                ),
            }));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// Refuses a backup whose WAL nobody holding the backup's keys could read: the stop segment's
/// record must exist (without it, wal-fetch cannot check the segment's digest) and be
/// encrypted to at least one of the backup's recipients (an archive_command using another
/// configuration would make the base restorable and its WAL not). Recipients that differ
/// without being disjoint are a warning: the restore side then needs keys for both.
async fn check_wal_recipients(
    repo: &Repository,
    file: &WalFile,
    sealing: &Sealing,
) -> std::result::Result<(), Taking> {
    let refuse = |detail: String| {
        Taking::Failed(Error::Refused {
            context: format!("checking the backup's stop segment {file} in the archive"),
            detail,
        })
    };
    let Some(stored) = archive::read_record(repo.storage(), file).await? else {
        return Err(refuse(
            "its object is there but not its record, so wal-fetch could not check it: the archive_command is not a complete `ecobackup wal-push`; fix it and take the backup again".to_owned(),
        ));
    };
    let ours: BTreeSet<String> = sealing
        .recipients
        .iter()
        .map(crate::crypto::fingerprint)
        .collect();
    let theirs: BTreeSet<String> = stored.record.recipients.iter().cloned().collect();
    if ours == theirs {
        return Ok(());
    }
    if ours.is_disjoint(&theirs) {
        return Err(refuse(format!(
            "the WAL is encrypted to recipients {} and this backup to {}: no key opens both, so the backup could not be recovered; make archive_command use the same [encryption] recipients",
            describe_set(&theirs),
            describe_set(&ours)
        )));
    }
    tracing::warn!(
        wal = %describe_set(&theirs),
        backup = %describe_set(&ours),
        "the WAL and the backup are encrypted to different recipients: a restore needs keys for both"
    );
    Ok(())
}

fn describe_set(set: &BTreeSet<String>) -> String {
    if set.is_empty() {
        "none (not encrypted)".to_owned()
    } else {
        set.iter().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// Resolves (with the error to report) once the server has been waiting longer than `limit`
/// for its archive to take the backup's stop segment; pends forever otherwise.
async fn archive_watchdog(client: &tokio_postgres::Client, limit: Duration) -> Taking {
    let mut waiting_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let waiting = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE backend_type = 'walsender' AND wait_event = 'BackupWaitWalArchive'",
                &[],
            )
            .await
            .map(|row| row.get::<_, i64>(0) > 0)
            .unwrap_or(false);
        match (waiting, waiting_since) {
            (false, _) => waiting_since = None,
            (true, None) => waiting_since = Some(tokio::time::Instant::now()),
            (true, Some(since)) if since.elapsed() >= limit => {
                return Taking::ArchiveTimeout(Error::Postgres {
                    context: "taking a base backup".to_owned(),
                    detail: format!(
                        "every data file was sent, but the server has been waiting more than {} s for its WAL archive to take the stop segment",
                        limit.as_secs()
                    ),
                });
            }
            (true, Some(_)) => {}
        }
    }
}

/// The archive did not take the stop segment in time: says what the server reports about its
/// archiver, so the operator knows where to look.
async fn explain_archive_failure(client: &tokio_postgres::Client, error: Error) -> Error {
    let archiver = client
        .query_one(
            "SELECT last_archived_wal, last_failed_wal, failed_count FROM pg_stat_archiver",
            &[],
        )
        .await
        .ok()
        .map(|row| {
            format!(
                "pg_stat_archiver says: last archived {}, last failed {}, {} failures",
                row.get::<_, Option<String>>(0)
                    .unwrap_or_else(|| "none".into()),
                row.get::<_, Option<String>>(1)
                    .unwrap_or_else(|| "none".into()),
                row.get::<_, i64>(2)
            )
        })
        .unwrap_or_else(|| "pg_stat_archiver could not be read".to_owned());
    Error::Postgres {
        context: "taking a physical backup".to_owned(),
        detail: format!(
            "{} — the WAL that makes the backup consistent was not archived in time ({archiver}); check the server log for archive_command errors, fix archiving, and run the backup again (no backup was recorded)",
            crate::error::one_line(&error)
        ),
    }
}

/// pg_basebackup's output, watched: the tar members ecobackup needs are kept on the way.
struct WatchedSource {
    inner: ChildSource,
    watch: Arc<Mutex<TarWatch>>,
}

#[async_trait]
impl Source for WatchedSource {
    async fn open(&mut self) -> Result<ByteStream> {
        let inner = self.inner.open().await?;
        let watch = self.watch.clone();
        let watched = inner.map(move |chunk| {
            let bytes = chunk?;
            let mut watch = watch.lock().expect("the tar watch is not poisoned");
            watch.feed(&bytes).map_err(|e| Error::Postgres {
                context: "reading pg_basebackup's output".to_owned(),
                detail: format!("{e}; the base backup stream is not a valid tar archive"),
            })?;
            Ok(bytes)
        });
        Ok(Box::pin(watched))
    }

    fn describe(&self) -> SourceInfo {
        self.inner.describe()
    }
}
