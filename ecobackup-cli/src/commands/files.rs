//! `ecobackup backup files` and `ecobackup restore files`.

use std::path::PathBuf;
use std::sync::Arc;

use ecobackup_core::artifact::Sealing;
use ecobackup_core::crypto::parse_recipients;
use ecobackup_core::files::secrets::{check_secrets_recipients, shared_repository_warning};
use ecobackup_core::files::{
    backup_files, restore_files, Excludes, FilesBackup, FilesOutcome, FilesReport, FilesRestore,
    FilesRestoreOutcome,
};
use ecobackup_core::repository::{Manifest, Targets};

use super::filter::load_keyring;
use super::logical::{sealing, tags};
use super::progress::Bars;
use super::repo::{human_bytes, open_for_backup_at, open_trusted_at, repo_url, under_shared_lock};
use super::targets::{open_targets, print_held, warn_failed_targets};
use crate::cli::{BackupFilesArgs, RestoreFilesArgs};
use crate::{CliError, Context};

/// What `backup files` runs: a `[[files]]` entry, or an ad-hoc `--path` set.
struct Set {
    /// `None`: named after its roots.
    name: Option<String>,
    paths: Vec<PathBuf>,
    excludes: Vec<String>,
    secrets: bool,
    /// The set's own recipients (empty: the usual ones).
    recipients: Vec<String>,
    repository: Option<String>,
}

/// The set `args` name: `--name` of a `[[files]]` entry, or `--path`s.
fn chosen_set(ctx: &Context, args: &BackupFilesArgs) -> Result<Set, CliError> {
    let configured: Vec<&str> = ctx.config.files.iter().map(|s| s.name.as_str()).collect();
    let listed = || match configured.as_slice() {
        [] => "no [[files]] entry is configured".to_owned(),
        names => format!("[[files]] entries: {}", names.join(", ")),
    };
    match (
        &args.name,
        ctx.config
            .files_set(args.name.as_deref().unwrap_or_default()),
    ) {
        (Some(name), Some(set)) => {
            if !args.paths.is_empty() {
                return Err(CliError::usage(format!(
                    "[[files]] {name:?} names its own paths: drop --path, or give the ad-hoc set another --name"
                )));
            }
            Ok(Set {
                name: Some(set.name.clone()),
                paths: set.paths.clone(),
                excludes: set.exclude.clone(),
                secrets: set.secrets,
                recipients: set.recipients.clone(),
                repository: set.repository.clone(),
            })
        }
        (name, _) if !args.paths.is_empty() => Ok(Set {
            name: name.clone(),
            paths: args.paths.clone(),
            excludes: Vec::new(),
            secrets: false,
            recipients: Vec::new(),
            repository: None,
        }),
        (Some(name), None) => Err(CliError::usage(format!(
            "no [[files]] entry named {name:?} ({}), and no --path for an ad-hoc set",
            listed()
        ))),
        (None, _) => Err(CliError::usage(format!(
            "nothing to back up: give --path DIR (repeat for several) or --name NAME ({})",
            listed()
        ))),
    }
}

/// Refuses a set that is not a secrets set but whose roots are, hold or lie inside a secrets
/// set's paths (`--path /srv/app` when `/srv/app/keys` is a secrets set): it would store the
/// keys with the database backups' recipients, the very thing the secrets profile prevents.
fn check_outside_secrets(ctx: &Context, set: &Set) -> Result<(), CliError> {
    if set.secrets {
        return Ok(());
    }
    let resolved = |p: &std::path::Path| {
        std::fs::canonicalize(p)
            .or_else(|_| std::path::absolute(p))
            .unwrap_or_else(|_| p.to_owned())
    };
    for secrets in ctx.config.files.iter().filter(|s| s.secrets) {
        for secret in secrets.paths.iter().map(|p| resolved(p)) {
            for root in set.paths.iter().map(|p| resolved(p)) {
                if secret.starts_with(&root) || root.starts_with(&secret) {
                    return Err(CliError::usage(format!(
                        "{} overlaps {} of the secrets set {:?}: it would be stored with the database backups' recipients; back the secrets with --name {} and the rest with --path for each of its other folders",
                        root.display(),
                        secret.display(),
                        secrets.name,
                        secrets.name
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The set's sealing: its own recipients, else `-r` / `ECOBACKUP_RECIPIENTS` / `[encryption]`.
/// A secrets set is checked again against the database recipients in force (the environment's
/// too), and may not be stored unencrypted.
fn set_sealing(ctx: &Context, args: &BackupFilesArgs, set: &Set) -> Result<Sealing, CliError> {
    let name = set.name.as_deref().unwrap_or("files");
    if set.secrets {
        if args.no_encryption {
            return Err(CliError::usage(format!(
                "[[files]] {name:?} holds secrets: it is never stored unencrypted; drop --no-encryption"
            )));
        }
        let database = if args.recipients.recipients.is_empty() {
            &ctx.config.encryption.recipients
        } else {
            &args.recipients.recipients
        };
        check_secrets_recipients(name, &set.recipients, database)
            .map_err(|e| CliError::usage(e.to_string()))?;
    }
    if set.recipients.is_empty() {
        return sealing(
            ctx,
            &args.recipients.recipients,
            args.no_encryption,
            args.level,
        );
    }
    if args.no_encryption {
        return Err(CliError::usage(format!(
            "--no-encryption given, but [[files]] {name:?} has recipients: drop one or the other"
        )));
    }
    Ok(Sealing {
        level: args.level,
        recipients: parse_recipients(&set.recipients)?,
    })
}

/// `backup files`.
pub async fn backup(ctx: &Context, args: BackupFilesArgs) -> Result<(), CliError> {
    let tags = tags(&args.tags)?;
    let set = chosen_set(ctx, &args)?;
    check_outside_secrets(ctx, &set)?;
    let sealing = set_sealing(ctx, &args, &set)?;
    let patterns = [set.excludes.clone(), args.excludes.clone()].concat();
    let excludes = Excludes::new(&patterns, !args.no_default_excludes)
        .map_err(|e| CliError::usage(e.to_string()))?;
    if set.secrets {
        let database = repo_url(ctx)?.to_string();
        let here = set.repository.clone().unwrap_or_else(|| database.clone());
        let name = set.name.as_deref().unwrap_or_default();
        if let Some(warning) = shared_repository_warning(name, &here, &database) {
            tracing::warn!("{warning}");
        }
    }
    // A set in the repository goes to its mirrors too; a set with its own repository, and every
    // secrets set, goes there alone: keys never share a target with the database backups.
    let to: Targets = if set.repository.is_none() && !set.secrets {
        open_targets(ctx, &args.signing, &args.targets).await?
    } else {
        if !args.targets.mirrors.is_empty() || args.targets.min_targets.is_some() {
            return Err(CliError::usage(
                "--mirror and --min-targets are for sets stored in [repository]: a secrets set, or a set with its own repository, is written there alone",
            ));
        }
        open_for_backup_at(ctx, &args.signing, set.repository.as_deref())
            .await?
            .into()
    };
    let mut plan = FilesBackup::new(set.paths, sealing);
    plan.name = set.name;
    plan.cancel = ctx.cancel.clone();
    plan.excludes = excludes;
    plan.tags = tags;
    plan.if_changed = args.if_changed;
    let started = std::time::Instant::now();
    match backup_files(&to, &plan, &Bars::new(ctx)).await? {
        FilesOutcome::Unchanged { latest } => print_unchanged(ctx, &latest),
        FilesOutcome::Stored(report) => {
            warn_failed_targets(ctx, &to);
            print_stored(ctx, &report, started.elapsed().as_secs_f64());
            print_held(ctx, &to);
        }
    }
    Ok(())
}

fn set_of(manifest: &Manifest) -> &str {
    manifest
        .source
        .files
        .as_ref()
        .map_or("", |f| f.set.as_str())
}

fn print_unchanged(ctx: &Context, latest: &Manifest) {
    if ctx.json {
        let out = serde_json::json!({
            "ok": true, "skipped": true, "set": set_of(latest), "unchanged_since": latest.id,
        });
        println!("{out}");
    } else if !ctx.quiet {
        println!(
            "files set {} unchanged since backup {}: nothing stored",
            set_of(latest),
            latest.id
        );
    }
}

fn print_stored(ctx: &Context, report: &FilesReport, seconds: f64) {
    let manifest = &report.manifest;
    ctx.set_backup_id(&manifest.id);
    for warning in &report.warnings {
        tracing::warn!("{warning}");
    }
    if report.more_warnings > 0 {
        tracing::warn!(
            "… and {} more entries skipped or changed while read",
            report.more_warnings
        );
    }
    // A count that reaches cron's mail under -q and the [notify] ping and webhook; the names
    // stay in the log (a secrets set's file names are not for a chat channel).
    let count = report.warnings.len() as u64 + report.more_warnings;
    if count > 0 {
        ctx.warn(format!(
            "backup {}: {count} entries were skipped or changed while read (the log names them; run without -q)",
            manifest.id
        ));
    }
    if ctx.json {
        let out = serde_json::json!({
            "ok": true, "seconds": seconds, "manifest": manifest,
            "warnings": report.warnings, "more_warnings": report.more_warnings,
        });
        println!("{out}");
        return;
    }
    if ctx.quiet {
        return;
    }
    println!("backup {} stored in {seconds:.1} s", manifest.id);
    if let Some(f) = &manifest.source.files {
        println!(
            "  set {}: {} files, {} directories, {} symlinks, {} of file content",
            f.set,
            f.files,
            f.directories,
            f.symlinks,
            human_bytes(f.bytes)
        );
        if f.skipped + f.changed + f.excluded > 0 {
            println!(
                "  {} skipped (sockets, FIFOs, devices, vanished), {} changed while read, {} excluded",
                f.skipped, f.changed, f.excluded
            );
        }
    }
    for a in &manifest.artifacts {
        println!(
            "  {:<32} {:>10} stored  ({} before compression and encryption)",
            a.name,
            human_bytes(a.stored_size),
            human_bytes(a.raw_size)
        );
    }
}

/// `restore files`.
pub async fn restore(ctx: &Context, args: RestoreFilesArgs) -> Result<(), CliError> {
    let repository = args
        .name
        .as_deref()
        .and_then(|name| ctx.config.files_set(name))
        .and_then(|set| set.repository.clone());
    let keyring = Arc::new(load_keyring(ctx, &args.identities).await?);
    let repo = open_trusted_at(ctx, &args.trust, repository.as_deref()).await?;
    let mut plan = FilesRestore::new(args.id.clone(), args.to.clone());
    plan.set = args.name.clone();
    plan.cancel = ctx.cancel.clone();
    plan.include = args.includes.clone();
    plan.overwrite = args.overwrite;
    plan.keyring = Some(keyring);
    let outcome = under_shared_lock(&repo, "restore files", async {
        Ok(restore_files(&repo, &plan, &Bars::new(ctx)).await?)
    })
    .await?;
    print_restore(ctx, &outcome);
    Ok(())
}

fn print_restore(ctx: &Context, outcome: &FilesRestoreOutcome) {
    if ctx.json {
        println!("{}", serde_json::json!({ "ok": true, "restore": outcome }));
        return;
    }
    if ctx.quiet {
        return;
    }
    println!(
        "restored backup {} (set {}) into {}: {} files, {} directories, {} symlinks, {}",
        outcome.backup_id,
        outcome.set,
        outcome.to.display(),
        outcome.files,
        outcome.directories,
        outcome.symlinks,
        human_bytes(outcome.bytes)
    );
    if outcome.hard_links > 0 {
        println!("  {} hard links", outcome.hard_links);
    }
    if outcome.replaced > 0 {
        println!(
            "  replaced {} existing files and links (--overwrite)",
            outcome.replaced
        );
    }
}
