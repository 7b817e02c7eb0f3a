//! `ecobackup drill`: the monthly restore drill as one command anyone can run from cron.

use std::path::Path;
use std::sync::Arc;

use ecobackup_core::artifact::Sealing;
use ecobackup_core::crypto::parse_recipients;
use ecobackup_core::drill::{
    drill as run_drill, store_report, Checks, DrillPlan, DrillReport, DrillTarget,
};
use ecobackup_core::physical::RecoveryTarget;
use ecobackup_core::repository::{BackupKind, Repository};

use super::filter::load_keyring;
use super::logical::url_from_argv;
use super::physical::{parse_settings, recovery_target, restore_command};
use super::progress::Bars;
use super::repo::{open_trusted, under_shared_lock};
use super::verify::until_cancelled;
use crate::cli::DrillArgs;
use crate::{CliError, Context};

fn load_checks(path: Option<&Path>) -> Result<Checks, CliError> {
    Ok(path.map(Checks::load).transpose()?.unwrap_or_default())
}

/// Writes the report (mode 0600: it names databases and checks) to a temporary file beside
/// its final name, then renames it: a reader never sees half of it.
fn write_report(path: &Path, report: &DrillReport) -> Result<(), CliError> {
    let text = serde_json::to_vec_pretty(report).unwrap_or_default();
    Ok(ecobackup_core::storage::write_private_file(
        path, &text, true,
    )?)
}

/// Stores the report in the repository for `status` and `check`; a failure is a warning, never
/// the drill's result. Sealed to the configured `[encryption] recipients`, else to the
/// drill's own identities (their public halves): the restore side, who may read row data,
/// can always read it; a drill host needs no recipient configured.
async fn store(ctx: &Context, repo: &Repository, plan: &DrillPlan, report: &DrillReport) {
    let recipients = match parse_recipients(&ctx.config.encryption.recipients) {
        Ok(configured) if !configured.is_empty() => configured,
        Ok(_) => plan.keyring.recipients(),
        Err(e) => {
            tracing::warn!(error = %e, "the drill report is not stored in the repository: the configured recipients are invalid");
            return;
        }
    };
    let sealing = Sealing {
        level: ecobackup_core::transform::DEFAULT_LEVEL,
        recipients,
    };
    if let Err(e) = store_report(repo, report, &sealing).await {
        tracing::warn!(error = %e, "could not store the drill report in the repository; `ecobackup status` and `check` will not see this drill");
    }
}

/// `drill`.
pub async fn drill(ctx: &Context, args: DrillArgs) -> Result<(), CliError> {
    let checks_file = args.checks.clone().or(ctx.config.drill.checks.clone());
    let target = recovery_target(&args.target)?;
    if target.is_some() && args.kind == Some(BackupKind::Logical) {
        return Err(CliError::usage(
            "--target-* options recover a physical backup: a logical backup restores as it was dumped",
        ));
    }
    // A target (even --target-immediate) means a physical backup.
    let kind = args
        .kind
        .or(target.is_some().then_some(BackupKind::Physical));
    // The restored server fetches WAL with this same binary and settings; a logical drill
    // never uses it (nor warns about it).
    let physical = kind == Some(BackupKind::Physical);
    let restore_command = match kind {
        Some(BackupKind::Logical) => None,
        // No prefetch: detached prefetchers would outlive the drill and write into the
        // scratch directory while it is removed.
        _ => Some(
            restore_command(ctx, &args.identities, &args.trust, physical)?.replacen(
                " wal-fetch ",
                " wal-fetch --prefetch 0 ",
                1,
            ),
        ),
    };
    let mut plan = DrillPlan::new(
        args.id.clone(),
        Arc::new(load_keyring(ctx, &args.identities).await?),
    );
    plan.kind = kind;
    plan.checks = load_checks(checks_file.as_deref())?;
    plan.target = match &args.target_db {
        Some(url) => DrillTarget::Server(url_from_argv(url)?),
        None => DrillTarget::Scratch,
    };
    plan.pg_bin = args.pg_bin.clone();
    plan.durable = args.durable || ctx.config.drill.durable;
    plan.physical.target = target.unwrap_or(RecoveryTarget::Immediate);
    plan.physical.restore_command = restore_command;
    plan.physical.timeout = std::time::Duration::from_secs(args.replay_timeout);
    plan.physical.settings = parse_settings(&args.settings)?;
    plan.scratch_dir = args
        .scratch_dir
        .clone()
        .or(ctx.config.drill.scratch_dir.clone());
    // Stopped by cron's `timeout`, systemd, Ctrl-C or the daemon's shutdown (`ctx.cancel`):
    // the drill stops on its plan's token, stops its scratch server and removes the copy of
    // production data, then returns "cancelled"; the shared lock is released after that.
    // Never race the drill against the token here: both react to it, and dropping the drill
    // in the middle of that clean-up would leave the lock to a task that dies with the runtime.
    plan.cancel = ctx.cancel.clone();
    let started = async {
        // Opening only reads: it may be cut short.
        let opening = open_trusted(ctx, &args.trust);
        let repo = until_cancelled(&ctx.cancel, "drill", opening).await?;
        let report = under_shared_lock(&repo, "drill", async {
            Ok(run_drill(&repo, &plan, &Bars::new(ctx)).await?)
        })
        .await?;
        Ok::<_, CliError>((repo, report))
    }
    .await;
    // A drill that cannot even start (no backup, no repository) is a failed drill: its error
    // reaches the `[notify]` ping like any other.
    let (repo, report) = started?;
    ctx.set_backup_id(&report.backup_id);
    store(ctx, &repo, &plan, &report).await;
    if let Some(path) = &args.report {
        write_report(path, &report)?;
    }
    print_report(ctx, &report);
    if report.passed {
        return Ok(());
    }
    let reason = match (&report.error, report.checks.iter().find(|c| !c.passed)) {
        (Some(error), _) => error.clone(),
        (None, Some(check)) => format!(
            "{} of {} checks failed, first {} {}: expected {}, got {}",
            report.checks.iter().filter(|c| !c.passed).count(),
            report.checks.len(),
            check.kind,
            check.name,
            check.expected,
            check.actual
        ),
        (None, None) => "it did not complete".to_owned(),
    };
    Err(CliError::from(ecobackup_core::Error::DrillFailed {
        backup: report.backup_id.clone(),
        reason,
    }))
}

fn print_report(ctx: &Context, report: &DrillReport) {
    if ctx.json {
        println!("{}", serde_json::to_string(report).unwrap_or_default());
        return;
    }
    if ctx.quiet {
        return;
    }
    let age = report.backup_age_seconds;
    println!(
        "drill of backup {} (finished {}, {} old at drill time)",
        report.backup_id,
        report.backup_finished_at.format("%Y-%m-%d %H:%M:%S UTC"),
        human_duration(age)
    );
    println!(
        "  restored {} backup ({}) into {}",
        report.kind,
        report.databases.join(", "),
        report.target
    );
    if let Some(recovery) = &report.recovery {
        println!(
            "  recovered to {}: timeline {}, LSN {}, data as of {}",
            recovery.target,
            recovery
                .timeline
                .map_or_else(|| "unchanged".to_owned(), |t| t.to_string()),
            recovery.lsn.as_deref().unwrap_or("?"),
            recovery.data_as_of.format("%Y-%m-%d %H:%M:%S UTC")
        );
    }
    let replay = report
        .rto
        .replay_seconds
        .map(|s| format!(" + replay {s:.1} s"))
        .unwrap_or_default();
    println!(
        "  RTO {:.1} s = provision {:.1} s + restore {:.1} s{replay} + checks {:.1} s",
        report.rto_seconds,
        report.rto.provision_seconds,
        report.rto.restore_seconds,
        report.rto.checks_seconds
    );
    if !report.durable {
        println!(
            "  not durable: the server ran with fsync, synchronous_commit or full_page_writes off, so a real recovery takes longer; quote the RTO of `ecobackup drill --durable`"
        );
    }
    for c in &report.checks {
        println!(
            "  {:<5} {:<7} {}: expected {}, got {}",
            if c.passed { "ok" } else { "FAIL" },
            c.kind,
            c.name,
            c.expected,
            c.actual
        );
    }
    if let Some(error) = &report.error {
        println!("  stopped: {error}");
    }
    println!("{}", if report.passed { "PASSED" } else { "FAILED" });
}

fn human_duration(seconds: f64) -> String {
    match seconds {
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.0} min", s / 60.0),
        s if s < 172_800.0 => format!("{:.1} h", s / 3600.0),
        s => format!("{:.1} days", s / 86_400.0),
    }
}
