//! Drilling a physical backup: a scratch data directory restored from it, recovered by fetching
//! archived WAL to the plan's target, promoted, and handed to the checks.
//!
//! The restore is the one `restore physical` does (the backup's files checked with
//! `pg_verifybackup` before the first start), into a new temporary directory. What differs is
//! isolation: the restored `postgresql.auto.conf` gets the scratch cluster's settings, which
//! override the production ones — no TCP, a private socket directory, a `pg_hba.conf` of its
//! own trusting local connections (the production one names production networks), no TLS,
//! `archive_mode` off (a drill never pushes WAL into the production archive), no
//! `recovery_end_command`, no logical replication workers, no `shared_preload_libraries`, no
//! synchronous standbys, and `fsync` off unless the drill is durable; the plan's own settings
//! come last. The checks connect as the cluster's bootstrap superuser, whose
//! name the backup recorded.

use crate::error::remedy;
use std::time::Instant;

use chrono::Utc;

use super::checks::Restored;
use super::{seconds, DrillPlan, DrillRecovery, DrillReport, DrillTarget};
use crate::error::{Error, Result};
use crate::physical::recovery::RecoveryTarget;
use crate::physical::restore::describe;
use crate::physical::{
    restore_physical, start_recovery, PhysicalRestore, RecoveryEnd, TargetAction, TargetTimeline,
};
use crate::postgres::binaries::find_program;
use crate::postgres::cluster::Cluster;
use crate::postgres::{major_of, DbUrl};
use crate::progress::Progress;
use crate::repository::{Manifest, Repository};

/// Why a restored server is not started by root: it runs as another user, and so does its
/// `restore_command`.
pub const ROOT_REFUSAL: &str = "the restored server runs as the postgres user, and so does its restore_command (`ecobackup wal-fetch`), which refuses key files another user owns: run this as the postgres user (e.g. `sudo -u postgres ecobackup …`), with the config, identity and credential files owned by it";

/// Restores `manifest` (a physical backup) into a scratch cluster, recovers and promotes it,
/// and returns its databases for the checks. Fills the report's target, RTO parts, recovery
/// and databases on the way; the cluster is left in `scratch` for the caller to remove, also
/// after a failure.
pub(super) async fn restore(
    repo: &Repository,
    plan: &DrillPlan,
    manifest: &Manifest,
    report: &mut DrillReport,
    scratch: &mut Option<Cluster>,
    progress: &dyn Progress,
) -> Result<Restored> {
    let refuse = |detail: String| Error::Refused {
        context: format!("drilling physical backup {}", manifest.id),
        detail,
    };
    if let DrillTarget::Server(_) = plan.target {
        return Err(refuse(remedy!(
            cli: "a physical backup is a whole cluster: it is drilled in a scratch cluster only; leave out --target-db",
            library: "a physical backup is a whole cluster: it is drilled in a scratch cluster only, not in a server",
        )));
    }
    if nix::unistd::geteuid().is_root() {
        return Err(refuse(ROOT_REFUSAL.to_owned()));
    }
    let restore_command = plan.physical.restore_command.clone().ok_or_else(|| {
        refuse("recovery fetches the backup's WAL from the archive, and the plan gives no restore_command (`ecobackup … wal-fetch %f %p`)".to_owned())
    })?;
    let facts = manifest.source.physical.as_ref().ok_or_else(|| {
        refuse(
            "its manifest has no WAL range (source.physical); run `ecobackup verify` on it"
                .to_owned(),
        )
    })?;
    let major = manifest
        .source
        .server_version
        .as_deref()
        .and_then(major_of)
        .ok_or_else(|| {
            refuse("its manifest does not say which PostgreSQL version made it".to_owned())
        })?;

    let clock = Instant::now();
    progress.note("preparing a scratch data directory");
    // A physical copy runs only on the programs of its own major version.
    let pg_ctl = find_program("pg_ctl", major, plan.pg_bin.as_deref()).await?;
    let bin_dir = pg_ctl
        .parent()
        .map(std::path::Path::to_owned)
        .unwrap_or_default();
    let superuser = facts.superuser.as_deref().unwrap_or("postgres");
    let cluster = scratch.insert(Cluster::empty(
        bin_dir.clone(),
        major,
        superuser,
        plan.scratch_dir.as_deref(),
    )?);
    let mut settings = cluster.isolation_settings()?;
    // Nothing of production's runs in the copy: no command at the end of recovery, no
    // subscription's apply worker pulling from (and advancing the slot of) the production
    // publisher, no preloaded library's background jobs (pg_cron, pg_net calling out), no
    // commit waiting for production's synchronous standbys.
    for (name, value) in [
        ("recovery_end_command", ""),
        ("max_logical_replication_workers", "0"),
        ("shared_preload_libraries", ""),
        ("synchronous_standby_names", ""),
    ] {
        settings.push((name.to_owned(), value.to_owned()));
    }
    if !plan.durable {
        for name in ["fsync", "synchronous_commit", "full_page_writes"] {
            settings.push((name.to_owned(), "off".to_owned()));
        }
    }
    // The operator's own last (e.g. a library the schema cannot work without).
    settings.extend(plan.physical.settings.iter().cloned());
    let data_dir = cluster.data_dir().to_owned();
    check_room(manifest, &data_dir)?;
    report.target = format!(
        "a scratch cluster (PostgreSQL {major}) in {}",
        data_dir.display()
    );
    report.rto.provision_seconds = seconds(clock.elapsed());

    let clock = Instant::now();
    let restored = restore_physical(
        repo,
        &PhysicalRestore {
            backup: Some(manifest.id.clone()),
            pgdata: data_dir.clone(),
            force: false,
            target: plan.physical.target.clone(),
            action: TargetAction::Promote,
            timeline: TargetTimeline::Latest,
            restore_command,
            keep_archiving: false,
            extra_settings: settings,
            keyring: Some(plan.keyring.clone()),
            pg_bin: Some(bin_dir.clone()),
            flush: plan.durable,
            cancel: plan.cancel.clone(),
        },
        progress,
    )
    .await?;
    ensure_conf_file(&data_dir, restored.owner)?;
    report.rto.restore_seconds = seconds(clock.elapsed());

    let clock = Instant::now();
    progress.note("replaying WAL");
    let recovery = start_recovery(
        &data_dir,
        major,
        Some(&bin_dir),
        restored.owner,
        plan.physical.timeout,
    )
    .await;
    cluster.started();
    // The log is in the scratch directory, which goes with the drill: its last lines go into
    // the report instead.
    let recovery = recovery.map_err(|e| {
        let log = data_dir.join("log/ecobackup-recovery.log");
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        let last: Vec<&str> = tail.lines().rev().take(5).collect();
        let last: Vec<&str> = last.into_iter().rev().collect();
        refuse(format!(
            "recovery failed: {}; the server log's last lines: {}",
            crate::error::one_line(&e),
            last.join(" / ")
        ))
    })?;
    report.rto.replay_seconds = Some(seconds(clock.elapsed()));
    if recovery.end != RecoveryEnd::Promoted {
        return Err(refuse(format!(
            "recovery ended ({}) instead of promoting: the drill asked for promotion, so the copy's settings override it (check recovery_target_action in its postgresql.auto.conf)",
            match recovery.end {
                RecoveryEnd::Paused => "paused at the target",
                RecoveryEnd::ShutDown => "shut down at the target",
                RecoveryEnd::Promoted => "promoted",
            }
        )));
    }
    // PostgreSQL names the time of the commit it stopped at (`recovery stopping before commit
    // of transaction 745, time 2026-11-23 08:55:02.1+00`): the best answer for any target.
    let stopped_at = recovery
        .stopped
        .as_deref()
        .and_then(|line| line.rsplit_once(", time "))
        .and_then(|(_, time)| RecoveryTarget::parse_time(time).ok())
        .map(|time| time.with_timezone(&Utc));
    let data_as_of = match (&plan.physical.target, stopped_at) {
        (RecoveryTarget::Time(time), _) => time.with_timezone(&Utc),
        (_, Some(time)) => time,
        (RecoveryTarget::Immediate, None) => facts.backup_stopped_at,
        (_, None) => report.started_at,
    };
    report.recovery = Some(DrillRecovery {
        target: describe(&plan.physical.target),
        timeline: recovery.timeline,
        lsn: recovery.lsn,
        stopped: recovery.stopped,
        data_as_of,
    });

    // template1 exists in every cluster; `postgres` may have been dropped.
    let admin = DbUrl::parse(&cluster.url("template1"))?;
    report.durable = super::flushes_like_production(&admin).await?;
    let names: Vec<String> = admin
        .connect()
        .await?
        .query(
            "SELECT datname::text FROM pg_database \
             WHERE datallowconn AND NOT datistemplate ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| admin.error("listing the databases of", e))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    report.databases = names.clone();
    Ok(Restored {
        databases: names
            .into_iter()
            .map(|name| {
                let url = admin.with_database(&name);
                (name, url)
            })
            .collect(),
        estimates: None,
        now: data_as_of,
    })
}

/// Refuses to unpack a base backup that does not fit: the data directory holds the base's raw
/// bytes (and replayed WAL adds more), so a full disk would fail the drill halfway — or fill
/// the filesystem something else needs.
fn check_room(manifest: &Manifest, data_dir: &std::path::Path) -> Result<()> {
    let Some(root) = data_dir.parent() else {
        return Ok(());
    };
    let needed: u64 = manifest
        .artifacts
        .iter()
        .filter(|a| a.name.starts_with(crate::physical::BASE_ARTIFACT))
        .map(|a| a.raw_size)
        .sum();
    let stat = nix::sys::statvfs::statvfs(root).map_err(|e| {
        Error::io(
            format!("reading the free space of {}", root.display()),
            e.into(),
        )
    })?;
    let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
    // A tenth more for the WAL replayed and the server's own files.
    if free < needed + needed / 10 {
        return Err(Error::Refused {
            context: format!("drilling physical backup {}", manifest.id),
            detail: {
                let (needed, root, free) = (needed >> 20, root.display(), free >> 20);
                remedy!(
                    cli: "its base backup is {needed} MiB unpacked and {root} has {free} MiB free: give --scratch-dir (or [drill] scratch_dir) on a filesystem with room",
                    library: "its base backup is {needed} MiB unpacked and {root} has {free} MiB free: put the scratch cluster on a filesystem with room ([drill] scratch_dir, DrillPlan::scratch_dir)",
                )
            },
        });
    }
    Ok(())
}

/// Writes an empty `postgresql.conf` when the backup has none: distributions that keep it
/// outside the data directory (Debian's `/etc/postgresql`) back up a data directory without
/// it, and the server refuses to start without one. The copy then runs on PostgreSQL's
/// defaults and its `postgresql.auto.conf`.
fn ensure_conf_file(data_dir: &std::path::Path, owner: (u32, u32)) -> Result<()> {
    let path = data_dir.join("postgresql.conf");
    if path.exists() {
        return Ok(());
    }
    tracing::info!(
        "the backup has no postgresql.conf (it lives outside the data directory on the source): the drill runs on PostgreSQL's defaults and postgresql.auto.conf"
    );
    crate::storage::write_private_file(&path, b"", false)?;
    std::os::unix::fs::chown(&path, Some(owner.0), Some(owner.1))
        .map_err(|e| Error::io(format!("giving {} to uid {}", path.display(), owner.0), e))
}
