//! `ecobackup backup physical` and `ecobackup restore physical`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ecobackup_core::physical::recovery::{command_word, shell_word};
use ecobackup_core::physical::restore::describe;
use ecobackup_core::physical::{
    backup_physical, restore_physical, start_recovery, PhysicalBackup, PhysicalRestore,
    PhysicalRestoreOutcome, RecoveryEnd, RecoveryOutcome, RecoveryTarget,
};
use ecobackup_core::storage::RepoUrl;
use ecobackup_core::wal::Lsn;

use super::filter::load_keyring;
use super::logical::{print_backup, sealing, tags, url_from_argv};
use super::progress::Bars;
use super::repo::{open_for_backup, open_trusted, repo_url, under_shared_lock};
use crate::cli::{
    BackupPhysicalArgs, IdentityArgs, RecoveryTargetArgs, RestorePhysicalArgs, TrustArgs,
};
use crate::{CliError, Context};

/// `backup physical`.
pub async fn backup(ctx: &Context, args: BackupPhysicalArgs) -> Result<(), CliError> {
    let tags = tags(&args.tags)?;
    let sealing = sealing(
        ctx,
        &args.recipients.recipients,
        args.no_encryption,
        args.level,
    )?;
    let url = match &args.database {
        Some(text) => url_from_argv(text)?,
        None => configured_url(ctx)?,
    };
    let repo = open_for_backup(ctx, &args.signing).await?;
    if !ctx.config.repository.mirror.is_empty() && !ctx.quiet {
        eprintln!("note: [[repository.mirror]] is not written by physical backups: a base backup is restorable only beside its archived WAL, which wal-push writes to the repository alone");
    }
    let mut plan = PhysicalBackup::new(url, sealing);
    plan.tags = tags;
    plan.pg_bin = args.pg_bin.clone();
    plan.allow_no_archive = args.allow_no_archive;
    plan.archive_timeout = Duration::from_secs(args.archive_timeout);
    plan.cancel = ctx.cancel.clone();
    let started = std::time::Instant::now();
    let manifest = backup_physical(&repo, &plan, &Bars::new(ctx)).await?;
    print_backup(ctx, &manifest, started.elapsed().as_secs_f64());
    if !ctx.json && !ctx.quiet {
        if let Some(p) = &manifest.source.physical {
            println!(
                "  WAL {} … {} ({}){}",
                p.start_wal,
                p.stop_wal,
                manifest.source.stop_lsn.as_deref().unwrap_or("?"),
                if p.wal_archived {
                    ""
                } else {
                    " inside the base artifact: restores to its end only"
                }
            );
        }
    }
    Ok(())
}

/// The first `[[database]]` with a plain `url` (a physical backup is of the whole server).
fn configured_url(ctx: &Context) -> Result<ecobackup_core::postgres::DbUrl, CliError> {
    let first = ctx.config.database.first().ok_or_else(|| {
        CliError::usage("no server to back up: pass --db postgres://replicator@host/postgres, or add a [[database]] entry to ecobackup.toml")
    })?;
    match &first.url {
        Some(url) => Ok(ecobackup_core::postgres::DbUrl::parse_with(
            url,
            &ecobackup_core::postgres::PgEnv::from_process(),
        )?),
        None => Err(CliError::usage(format!(
            "[[database]] {:?} has no plain url: give the server with --db for a physical backup",
            first.name
        ))),
    }
}

/// `restore physical`.
pub async fn restore(ctx: &Context, args: RestorePhysicalArgs) -> Result<(), CliError> {
    let target = target(&args)?;
    if args.start && nix::unistd::geteuid().is_root() {
        return Err(CliError::usage(format!(
            "--start as root: {}; or restore without --start and start the server as its owner",
            ecobackup_core::drill::ROOT_REFUSAL
        )));
    }
    let settings = parse_settings(&args.settings)?;
    let pgdata = absolute(&args.pgdata)?;
    let mut plan = PhysicalRestore::new(
        args.id.clone(),
        pgdata.clone(),
        restore_command(ctx, &args.identities, &args.trust, true)?,
    );
    plan.force = args.force;
    plan.target = target.clone();
    plan.action = args.target_action;
    plan.timeline = args.target_timeline;
    plan.keep_archiving = args.keep_archiving;
    plan.extra_settings = settings;
    plan.keyring = Some(Arc::new(load_keyring(ctx, &args.identities).await?));
    plan.pg_bin = args.pg_bin.clone();
    plan.flush = true;
    plan.cancel = ctx.cancel.clone();
    let repo = open_trusted(ctx, &args.trust).await?;
    // Held through recovery with --start: prune must not expire the WAL being replayed.
    under_shared_lock(&repo, "restore physical", async {
        let outcome = restore_physical(&repo, &plan, &Bars::new(ctx)).await?;
        if !args.start {
            print_restored(ctx, &outcome, &target, None);
            return Ok(());
        }
        let recovery = start_recovery(
            &outcome.pgdata,
            outcome.major_version,
            args.pg_bin.as_deref(),
            outcome.owner,
            Duration::from_secs(args.start_timeout),
        )
        .await?;
        print_restored(ctx, &outcome, &target, Some(&recovery));
        Ok(())
    })
    .await
}

/// `--set NAME=VALUE` options as pairs.
pub(crate) fn parse_settings(settings: &[String]) -> Result<Vec<(String, String)>, CliError> {
    settings
        .iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
            _ => Err(CliError::usage(format!(
                "--set {s:?} is not NAME=VALUE (e.g. --set port=5433)"
            ))),
        })
        .collect()
}

/// The target the options name, `None` when none is given.
pub(crate) fn recovery_target(
    args: &RecoveryTargetArgs,
) -> Result<Option<RecoveryTarget>, CliError> {
    Ok(Some(if let Some(time) = &args.target_time {
        RecoveryTarget::Time(
            RecoveryTarget::parse_time(time)
                .map_err(|e| CliError::usage(format!("--target-time: {e}")))?,
        )
    } else if let Some(lsn) = &args.target_lsn {
        RecoveryTarget::Lsn(
            lsn.parse::<Lsn>()
                .map_err(|e| CliError::usage(format!("--target-lsn: {e}")))?,
        )
    } else if let Some(name) = &args.target_name {
        RecoveryTarget::Name(name.clone())
    } else if let Some(xid) = args.target_xid {
        RecoveryTarget::Xid(xid)
    } else if args.target_immediate {
        RecoveryTarget::Immediate
    } else {
        return Ok(None);
    }))
}

/// `restore physical`'s target: the end of the archive when none is given.
fn target(args: &RestorePhysicalArgs) -> Result<RecoveryTarget, CliError> {
    if let Some(target) = recovery_target(&args.target)? {
        return Ok(target);
    }
    if args.target_action != ecobackup_core::physical::TargetAction::Promote {
        return Err(CliError::usage(
            "--target-action needs a target (--target-time, --target-lsn, --target-name, --target-xid or --target-immediate): at the end of the archive the server always promotes",
        ));
    }
    Ok(RecoveryTarget::EndOfArchive)
}

fn absolute(path: &Path) -> Result<PathBuf, CliError> {
    std::path::absolute(path).map_err(|e| CliError::usage(format!("{}: {e}", path.display())))
}

/// The `restore_command` the restored server runs: this binary, with the same configuration
/// file, repository and identity files, every path absolute (the server runs it in its data
/// directory) and every word quoted for the shell. Settings that live only in this process's
/// environment do not reach the server: they are named in a warning when `warn`.
pub(crate) fn restore_command(
    ctx: &Context,
    identities: &IdentityArgs,
    trust: &TrustArgs,
    warn: bool,
) -> Result<String, CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::failure(format!("finding ecobackup's own path: {e}")))?;
    let mut words = vec![exe.display().to_string()];
    if let Some(config) = &ctx.config_path {
        words.push("--config".into());
        words.push(absolute(config)?.display().to_string());
    }
    words.push("--repo".into());
    // The server runs the command in its data directory: a relative path would point there.
    words.push(match repo_url(ctx)? {
        RepoUrl::File(path) => format!("file://{}", absolute(&path)?.display()),
        other => other.to_string(),
    });
    words.push("wal-fetch".into());
    let files = if identities.identities.is_empty() {
        ctx.config.encryption.identity_files.clone()
    } else {
        identities.identities.clone()
    };
    for file in files {
        words.push("--identity".into());
        words.push(absolute(&file)?.display().to_string());
    }
    if let Some(file) = &identities.passphrase_file {
        words.push("--passphrase-file".into());
        words.push(absolute(file)?.display().to_string());
    }
    // The WAL records are checked against the same signers as the manifests.
    for signer in &trust.trusted_signers {
        words.push("--trusted-signer".into());
        words.push(signer.clone());
    }
    if trust.allow_unsigned {
        words.push("--allow-unsigned".into());
    }
    let environment_only: Vec<&str> = [
        "ECOBACKUP_S3_ENDPOINT",
        "ECOBACKUP_S3_REGION",
        "ECOBACKUP_S3_ALLOW_HTTP",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "ECOBACKUP_IDENTITY_PASSPHRASE",
    ]
    .into_iter()
    .filter(|name| std::env::var_os(name).is_some())
    .collect();
    if warn && !environment_only.is_empty() {
        tracing::warn!(
            "{} are set in this environment only: the restored server's restore_command will not see them unless the server's own environment has them; prefer the config file's [repository] keys and *_file settings",
            environment_only.join(", ")
        );
    }
    let mut command: Vec<String> = words.iter().map(|w| command_word(w)).collect();
    command.push("%f".into());
    command.push("%p".into());
    Ok(command.join(" "))
}

fn print_restored(
    ctx: &Context,
    outcome: &PhysicalRestoreOutcome,
    target: &RecoveryTarget,
    recovery: Option<&RecoveryOutcome>,
) {
    if ctx.json {
        let out = serde_json::json!({ "ok": true, "restore": outcome, "recovery": recovery });
        println!("{out}");
        return;
    }
    if ctx.quiet {
        return;
    }
    let dir = outcome.pgdata.display();
    println!(
        "restored backup {} into {dir} (files checked by pg_verifybackup); recovery replays archived WAL to {}",
        outcome.backup_id,
        describe(target)
    );
    match recovery {
        None => {
            let user = outcome
                .owner_name
                .clone()
                .unwrap_or_else(|| format!("uid {}", outcome.owner.0));
            println!(
                "start it as {user} with PostgreSQL {}'s pg_ctl: pg_ctl -D {} -l {}/log/recovery.log start",
                outcome.major_version,
                shell_word(&dir.to_string()),
                shell_word(&dir.to_string())
            );
            println!(
                "  (or run this restore again with --start to start it and wait for the target)"
            );
        }
        Some(r) => {
            let end = match r.end {
                RecoveryEnd::Promoted => "promoted: it accepts writes",
                RecoveryEnd::Paused => {
                    "paused at the target (read-only; SELECT pg_wal_replay_resume() promotes it)"
                }
                RecoveryEnd::ShutDown => "shut down at the target",
            };
            println!(
                "recovery ended: {end}; timeline {}, LSN {}",
                r.timeline
                    .map_or_else(|| "unchanged".to_owned(), |t| t.to_string()),
                r.lsn.as_deref().unwrap_or("?")
            );
            if let Some(stopped) = &r.stopped {
                println!("  {stopped}");
            }
            println!("  server log: {}", r.log.display());
        }
    }
}
