//! Restore drills: "a backup that's never restored is not a backup".
//!
//! A drill restores a backup into a scratch target, runs the checks, measures the recovery time
//! (RTO) and the backup's age at drill time (the RPO you would get), and cleans up. The
//! [`DrillReport`] is the audit record: what was restored, how long each part took, and each
//! check with its expected and actual value.
//!
//! - A logical backup is restored into a throwaway cluster started from the installed server
//!   binaries, or into new databases on a server you name (dropped afterwards).
//! - A physical backup is unpacked into a scratch data directory and recovered, fetching
//!   archived WAL, to its own end or to the plan's target ([`PhysicalDrill`]); the server is
//!   promoted there and the checks run against its databases (`drill/physical.rs`).
//!
//! The scratch cluster listens on a unix socket in a directory only its user can enter, never on
//! TCP: it trusts every connection and holds a copy of production data. It runs with `fsync`,
//! `synchronous_commit` and `full_page_writes` off unless the plan asks for a durable drill
//! ([`DrillPlan::durable`]); the report says which ([`DrillReport::durable`]), since only a
//! durable drill's RTO is a figure a runbook may quote.

mod checks;
mod command;
mod physical;
mod stored;

pub use physical::ROOT_REFUSAL;
pub use stored::{
    drill_history, store_report, DrillHistory, DrillSummary, DRILL_FOLDER, SUMMARY_FORMAT,
};

use crate::error::remedy;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

use checks::Restored;
pub use checks::{CheckResult, Checks, CommandCheck, SqlCheck, TableCheck};

use crate::artifact;
use crate::crypto::Keyring;
use crate::error::{Error, Result};
use crate::physical::RecoveryTarget;
use crate::postgres::binaries::{
    bin_dir_var, find_program, installed_server_dirs, program_major_version,
};
use crate::postgres::cluster::{Cluster, ClusterOptions};
use crate::postgres::{major_of, DbUrl};
use crate::process::{ChildCommand, ChildSink};
use crate::progress::Progress;
use crate::repository::{BackupKind, Manifest, Repository};
use crate::restore::{read_catalog, restore_logical, LogicalRestore};

/// Where the drill restores to.
#[derive(Clone, Debug)]
pub enum DrillTarget {
    /// A throwaway cluster from the installed server binaries (`--pg-bin` to choose them).
    Scratch,
    /// New databases on this server (any database of it in the URL), dropped afterwards. For
    /// logical backups only: a physical backup is a whole cluster.
    Server(DbUrl),
}

/// How a drill recovers a physical backup.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PhysicalDrill {
    /// Where recovery stops and the server is promoted: by default the backup's own end
    /// ([`RecoveryTarget::Immediate`]). With a target time and `latest`, the newest backup
    /// that ended before it is drilled.
    pub target: RecoveryTarget,
    /// The `restore_command` the restored server fetches archived WAL with (`ecobackup … wal-fetch
    /// %f %p`, every path absolute): needed for every physical backup.
    pub restore_command: Option<String>,
    /// How long the WAL replay may take.
    pub timeout: Duration,
    /// Settings for the copy's `postgresql.auto.conf`, after the drill's own (which turn off
    /// `shared_preload_libraries`: give it back here when the checks need a library).
    pub settings: Vec<(String, String)>,
}

impl Default for PhysicalDrill {
    /// To the backup's end, no `restore_command`, one hour.
    fn default() -> Self {
        PhysicalDrill {
            target: RecoveryTarget::Immediate,
            restore_command: None,
            timeout: Duration::from_secs(3600),
            settings: Vec::new(),
        }
    }
}

/// What to drill.
///
/// `#[non_exhaustive]`: build it with `new` and set fields; a field added
/// later is not a breaking change.
#[derive(Clone)]
#[non_exhaustive]
pub struct DrillPlan {
    /// A backup id, or `latest`.
    pub backup: String,
    /// The kind of backup `latest` means; `None`: the newest of any kind (physical when the
    /// plan has a recovery target).
    pub kind: Option<BackupKind>,
    /// The checks to run.
    pub checks: Checks,
    /// Where to restore.
    pub target: DrillTarget,
    /// Identities able to decrypt the backup.
    pub keyring: Arc<Keyring>,
    /// Where PostgreSQL's programs are, when not in the usual places.
    pub pg_bin: Option<PathBuf>,
    /// Run the scratch cluster with `fsync`, `synchronous_commit` and `full_page_writes` on, as
    /// a production server would, so the RTO measured is the one a runbook may quote. Off, the
    /// restore is faster than any real recovery.
    pub durable: bool,
    /// How a physical backup is recovered.
    pub physical: PhysicalDrill,
    /// Where the scratch cluster's temporary directory goes; `None`: the system's (TMPDIR).
    pub scratch_dir: Option<PathBuf>,
    /// Cancels the operation: it stops, cleans up what it started (uploads, stored artifacts,
    /// its lock) and returns [`Error::Cancelled`]. Never fires by default.
    pub cancel: crate::cancel::CancellationToken,
}

impl DrillPlan {
    /// `backup` (an id or `latest`, of any kind) restored into a scratch cluster with `keyring`,
    /// no checks but the restore itself.
    pub fn new(backup: impl Into<String>, keyring: Arc<Keyring>) -> DrillPlan {
        DrillPlan {
            backup: backup.into(),
            kind: None,
            checks: Checks::default(),
            target: DrillTarget::Scratch,
            keyring,
            pg_bin: None,
            durable: false,
            physical: PhysicalDrill::default(),
            scratch_dir: None,
            cancel: Default::default(),
        }
    }
}

/// How long each part of the recovery took.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RtoParts {
    /// Starting the scratch cluster, or connecting to the target server.
    pub provision_seconds: f64,
    /// Downloading, decrypting, decompressing and restoring (streamed: they overlap); for a
    /// physical backup, unpacking and checking the files with `pg_verifybackup`.
    pub restore_seconds: f64,
    /// A physical backup's recovery: starting the server, fetching and replaying WAL up to the
    /// target, promotion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_seconds: Option<f64>,
    /// Running the checks.
    pub checks_seconds: f64,
}

/// The audit record of a drill.
#[derive(Clone, Debug, Serialize)]
pub struct DrillReport {
    /// Every part ran and every check passed.
    pub passed: bool,
    /// The backup drilled.
    pub backup_id: String,
    /// Its kind.
    pub kind: BackupKind,
    /// When it finished.
    pub backup_finished_at: DateTime<Utc>,
    /// Its age when the drill started: the data a restore now would lose (RPO).
    pub backup_age_seconds: f64,
    /// When the drill started.
    pub started_at: DateTime<Utc>,
    /// Provision + restore (+ replay) + checks.
    pub rto_seconds: f64,
    /// Whether the server restored into flushed to disk like a production server: `fsync` and
    /// `full_page_writes` on, `synchronous_commit` not off, as read from the server itself.
    /// `false` for a scratch cluster unless the drill was durable (`drill --durable`); then the
    /// RTO is shorter than a real recovery's, and not a figure to quote.
    pub durable: bool,
    /// The parts of the RTO.
    pub rto: RtoParts,
    /// Where it was restored (no password).
    pub target: String,
    /// The databases restored.
    pub databases: Vec<String>,
    /// Where a physical backup's recovery ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery: Option<DrillRecovery>,
    /// Every check, in order.
    pub checks: Vec<CheckResult>,
    /// What stopped the drill, when something did before the checks.
    pub error: Option<String>,
}

/// Where a physical backup's recovery ended, as PostgreSQL reported it.
#[derive(Clone, Debug, Serialize)]
pub struct DrillRecovery {
    /// The target, in words.
    pub target: String,
    /// The timeline the promoted server started.
    pub timeline: Option<u32>,
    /// The last LSN replayed.
    pub lsn: Option<String>,
    /// PostgreSQL's line saying where it stopped, for a target it reached.
    pub stopped: Option<String>,
    /// The time `now()` means in SQL checks: the target time; else the time of the commit
    /// recovery stopped at, as PostgreSQL logged it; else the backup's end for a drill to its
    /// end, or the drill's start.
    pub data_as_of: DateTime<Utc>,
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The server binaries for a backup whose newest source server ran PostgreSQL `major`: the same
/// major if installed, else the oldest newer one (pg_restore reads archives of older servers,
/// never of newer ones). `None` (no version known): the newest installed, chosen by
/// [`Cluster::start`]. An error when every installed version is older than `major`.
async fn scratch_bin_dir(
    major: Option<u32>,
    explicit: Option<&std::path::Path>,
) -> Result<Option<PathBuf>> {
    let Some(major) = major else {
        return Ok(None);
    };
    let mut candidates: Vec<(u32, PathBuf)> = Vec::new();
    let mut older: Vec<u32> = Vec::new();
    for dir in installed_server_dirs(explicit).await {
        match program_major_version(&dir.join("initdb")).await {
            Some(found) if found >= major => candidates.push((found, dir)),
            Some(found) => older.push(found),
            None => {}
        }
    }
    candidates.sort_by_key(|(m, _)| *m);
    if let Some((_, dir)) = candidates.into_iter().next() {
        return Ok(Some(dir));
    }
    older.sort_unstable();
    older.dedup();
    let found = match (explicit, older.as_slice()) {
        (Some(dir), [found]) => format!("{} holds PostgreSQL {found}", dir.display()),
        (Some(dir), _) => format!("{} holds no PostgreSQL server programs", dir.display()),
        (None, []) => "no PostgreSQL server programs are installed".to_owned(),
        (None, found) => format!(
            "only PostgreSQL {} installed",
            found
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Err(Error::Process {
        program: "initdb".to_owned(),
        status: "not found".to_owned(),
        detail: {
            let variable = bin_dir_var(major);
            remedy!(
                cli: "the backup comes from PostgreSQL {major}, and a scratch cluster must run {major} or newer to restore it, but {found}; install PostgreSQL {major} (Debian: apt-get install postgresql-{major}), set {variable} to its bin directory, or give --pg-bin DIR (or drill into a server with --target-db URL)",
                library: "the backup comes from PostgreSQL {major}, and a scratch cluster must run {major} or newer to restore it, but {found}; install PostgreSQL {major} (Debian: apt-get install postgresql-{major}) and give the drill its bin directory (pg_bin, or {variable}), or drill into a server instead",
            )
        },
    })
}

/// Runs a drill. An `Err` means the drill could not start (no such backup, no identity); a
/// drill that started always returns its report, passed or not.
///
/// Cancel safety: `plan.cancel` stops it cleanly (see [`crate::cancel`]); dropping the future
/// commits nothing, its clean-up then runs in background tasks.
pub async fn drill(
    repo: &Repository,
    plan: &DrillPlan,
    progress: &dyn Progress,
) -> Result<DrillReport> {
    let manifest = choose(repo, plan).await?;
    let started_at = Utc::now();
    let mut report = DrillReport {
        passed: false,
        backup_id: manifest.id.clone(),
        kind: manifest.kind,
        backup_finished_at: manifest.finished_at,
        backup_age_seconds: (started_at - manifest.finished_at).num_milliseconds() as f64 / 1000.0,
        started_at,
        rto_seconds: 0.0,
        durable: false,
        rto: RtoParts::default(),
        target: String::new(),
        databases: manifest.source.databases.clone(),
        recovery: None,
        checks: Vec::new(),
        error: None,
    };
    let mut scratch: Option<Cluster> = None;
    let mut created: Vec<DbUrl> = Vec::new();
    let mut clock = Instant::now();
    let outcome = crate::cancel::cancellable(&plan.cancel, "drill", async {
        let restored = match manifest.kind {
            BackupKind::Physical => {
                physical::restore(repo, plan, &manifest, &mut report, &mut scratch, progress)
                    .await?
            }
            _ => {
                restore(
                    repo,
                    plan,
                    &manifest,
                    &mut report,
                    &mut scratch,
                    &mut created,
                    progress,
                )
                .await?
            }
        };
        clock = Instant::now();
        restored.run(&plan.checks).await
    })
    .await;
    let cancelled = matches!(outcome, Err(Error::Cancelled(_)));
    match outcome {
        Ok(checks) => {
            report.checks = checks;
            report.rto.checks_seconds = seconds(clock.elapsed());
        }
        Err(e) => report.error = Some(e.to_string()),
    }
    if matches!(plan.target, DrillTarget::Server(_)) {
        for url in &created {
            if let Err(e) = url.drop_database().await {
                tracing::warn!(error = %e, database = %url.redacted(), "could not drop a drill database; drop it by hand");
            }
        }
    }
    if let Some(cluster) = scratch {
        if let Err(e) = cluster.shutdown().await {
            tracing::warn!(error = %e, "could not remove the drill's scratch cluster");
        }
    }
    // A cancelled drill proved nothing either way: it is no failed drill.
    if cancelled {
        return Err(Error::Cancelled("drill".to_owned()));
    }
    report.rto_seconds = report.rto.provision_seconds
        + report.rto.restore_seconds
        + report.rto.replay_seconds.unwrap_or(0.0)
        + report.rto.checks_seconds;
    report.passed = report.error.is_none() && report.checks.iter().all(|c| c.passed);
    Ok(report)
}

/// The backup to drill: the one named, or the newest of the plan's kind (without a kind, the
/// newest logical or physical backup). A recovery target
/// means a physical backup; with a target time, `latest` is the newest physical backup that
/// ended before it.
async fn choose(repo: &Repository, plan: &DrillPlan) -> Result<Manifest> {
    let targeted = plan.physical.target != RecoveryTarget::Immediate;
    let kind = plan.kind.or(targeted.then_some(BackupKind::Physical));
    let manifest = if kind == Some(BackupKind::Physical) {
        crate::physical::restore::choose_backup(repo, Some(&plan.backup), &plan.physical.target)
            .await?
    } else if kind.is_none() && plan.backup == "latest" {
        // Files backups are not drilled: `latest` alone is the newest database backup, even
        // when an upload folder was backed up after it.
        repo.manifests()
            .await?
            .backups
            .into_iter()
            .rev()
            .find(|m| m.kind != BackupKind::Files)
            .ok_or_else(|| Error::BackupNotFound {
                wanted: "latest (logical or physical)".to_owned(),
                repo: repo.storage().url().to_owned(),
            })?
    } else {
        repo.resolve(&plan.backup, kind).await?
    };
    let refuse = |detail: String| Error::Refused {
        context: format!("drilling backup {}", manifest.id),
        detail,
    };
    if let Some(kind) = kind.filter(|k| *k != manifest.kind) {
        return Err(refuse(format!(
            "it is a {} backup, not a {kind} one",
            manifest.kind
        )));
    }
    match manifest.kind {
        BackupKind::Logical | BackupKind::Physical => Ok(manifest),
        other => Err(refuse(format!(
            "drills restore logical and physical backups, and this one is a {other} backup: check it with `ecobackup verify {}`",
            manifest.id
        ))),
    }
}

/// Restores a logical backup into a scratch cluster or new databases on the target server.
async fn restore(
    repo: &Repository,
    plan: &DrillPlan,
    manifest: &Manifest,
    report: &mut DrillReport,
    scratch: &mut Option<Cluster>,
    created: &mut Vec<DbUrl>,
    progress: &dyn Progress,
) -> Result<Restored> {
    let catalog = read_catalog(repo, manifest, Some(plan.keyring.clone())).await?;
    // The databases may come from servers of several versions: the scratch cluster must be
    // able to restore the newest.
    let source_major = catalog
        .databases
        .iter()
        .map(|d| d.major_version)
        .filter(|&m| m > 0)
        .max()
        .or_else(|| {
            manifest
                .source
                .servers
                .iter()
                .filter_map(|s| major_of(&s.server_version))
                .chain(manifest.source.server_version.as_deref().and_then(major_of))
                .max()
        });

    let clock = Instant::now();
    let (admin, on_scratch) = match &plan.target {
        DrillTarget::Scratch => {
            progress.note("starting a scratch cluster");
            let bin_dir = scratch_bin_dir(source_major, plan.pg_bin.as_deref()).await?;
            // A unix socket in a 0700 directory, no TCP (the default): the restored data stays
            // out of reach of the machine's other users.
            let cluster = Cluster::start(ClusterOptions {
                bin_dir,
                fsync: plan.durable,
                base_dir: plan.scratch_dir.clone(),
                ..ClusterOptions::default()
            })
            .await?;
            let admin = DbUrl::parse(&cluster.url("postgres"))?;
            *scratch = Some(cluster);
            (admin, true)
        }
        DrillTarget::Server(url) => {
            url.connect().await?;
            (url.with_database("postgres"), false)
        }
    };
    report.target = admin.redacted();
    report.rto.provision_seconds = seconds(clock.elapsed());
    report.durable = flushes_like_production(&admin).await?;

    let clock = Instant::now();
    let bin_dir = scratch
        .as_ref()
        .map(|c| c.bin_dir().to_owned())
        .or(plan.pg_bin.clone());
    // Roles first, so the dump's GRANTs find them; only on a scratch cluster, never on a server
    // that is somebody's.
    let globals = manifest
        .artifacts
        .iter()
        .find(|a| a.name.starts_with("globals.sql"));
    let restore_globals = on_scratch && globals.is_some();
    if let (Some(cluster), true, Some(globals)) = (scratch.as_ref(), restore_globals, globals) {
        let psql = find_program("psql", cluster.major_version(), bin_dir.as_deref()).await?;
        // Without ON_ERROR_STOP psql goes on past `CREATE ROLE postgres` (it exists already).
        let command = admin.apply(ChildCommand::new(psql).arg("-X").arg("-q").arg("--file=-"));
        artifact::open(
            repo,
            &manifest.id,
            globals,
            Some(plan.keyring.clone()),
            ChildSink::new(command),
            progress,
        )
        .await?;
    }
    let mut restored = BTreeMap::new();
    for database in &manifest.source.databases {
        let name = if on_scratch {
            database.clone()
        } else {
            format!("ecobackup_drill_{}_{:08x}", database, rand::random::<u32>())
        };
        let target = admin.with_database(&name);
        let restore = LogicalRestore {
            backup: manifest.id.clone(),
            target: target.clone(),
            database: Some(database.clone()),
            create: true,
            clean: false,
            jobs: 1,
            terminate_connections: false,
            no_privileges: !restore_globals,
            keyring: Some(plan.keyring.clone()),
            pg_bin: bin_dir.clone(),
            temp_dir: None,
            cancel: plan.cancel.clone(),
        };
        created.push(target.clone());
        restore_logical(repo, &restore, progress).await?;
        restored.insert(database.clone(), target);
    }
    report.rto.restore_seconds = seconds(clock.elapsed());

    Ok(Restored {
        databases: restored,
        estimates: Some(
            catalog
                .databases
                .into_iter()
                .map(|d| (d.name, d.row_estimates))
                .collect(),
        ),
        now: manifest.finished_at,
    })
}

/// Whether the server commits durably: what its settings say, not what we asked for.
async fn flushes_like_production(admin: &DbUrl) -> Result<bool> {
    admin
        .connect()
        .await?
        .query_one(
            "SELECT current_setting('fsync') = 'on' \
               AND current_setting('full_page_writes') = 'on' \
               AND current_setting('synchronous_commit') <> 'off'",
            &[],
        )
        .await
        .map(|row| row.get(0))
        .map_err(|e| admin.error("reading the durability settings of", e))
}
