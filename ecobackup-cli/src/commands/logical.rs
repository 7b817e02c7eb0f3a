//! `ecobackup backup logical` and `ecobackup restore logical`.

use std::collections::BTreeMap;
use std::sync::Arc;

use ecobackup_core::artifact::Sealing;
use ecobackup_core::backup::{backup_logical, LogicalBackup};
use ecobackup_core::crypto::{parse_recipients, read_secret_file, ExposeSecret};
use ecobackup_core::postgres::DbUrl;
use ecobackup_core::repository::Manifest;
use ecobackup_core::restore::{restore_logical, LogicalRestore, RestoreOutcome};

use super::filter::load_keyring;
use super::progress::Bars;
use super::repo::{human_bytes, open_for_backup, open_trusted};
use crate::cli::{BackupLogicalArgs, RestoreLogicalArgs};
use crate::{CliError, Context};

/// A database URL from the command line: a password in it would be visible to every user of
/// the machine (`ps`), so it is refused.
pub fn url_from_argv(text: &str) -> Result<DbUrl, CliError> {
    let url = DbUrl::parse(text)?;
    if url.has_password() {
        return Err(CliError::usage(format!(
            "the URL {} carries a password on the command line, where every user of this machine can read it: use PGPASSFILE, PGPASSWORD or a [[database]] url_file instead",
            url.redacted()
        )));
    }
    Ok(url)
}

/// The databases to dump: `--db`, else the configuration's `[[database]]` entries.
fn databases(ctx: &Context, args: &BackupLogicalArgs) -> Result<Vec<DbUrl>, CliError> {
    if !args.databases.is_empty() {
        return args.databases.iter().map(|u| url_from_argv(u)).collect();
    }
    let mut urls = Vec::new();
    for db in &ctx.config.database {
        let url = match (&db.url, &db.url_file) {
            (Some(url), _) => DbUrl::parse(url)?,
            (None, Some(file)) => DbUrl::parse(read_secret_file(file)?.expose_secret())?,
            (None, None) => {
                return Err(CliError::usage(format!(
                    "[[database]] {:?} has neither url nor url_file",
                    db.name
                )))
            }
        };
        urls.push(url);
    }
    if urls.is_empty() {
        return Err(CliError::usage(
            "no database to back up: pass --db postgres://user@host/db, or add [[database]] entries to ecobackup.toml",
        ));
    }
    Ok(urls)
}

/// `K=V` labels.
fn tags(args: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    args.iter()
        .map(|t| match t.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(CliError::usage(format!(
                "--tag {t:?} is not K=V (e.g. --tag reason=pre-migration)"
            ))),
        })
        .collect()
}

/// Compression level and recipients: `-r` / `ECOBACKUP_RECIPIENTS`, else the file; none only
/// with `--no-encryption`.
pub fn sealing(
    ctx: &Context,
    recipients: &[String],
    no_encryption: bool,
    level: i32,
) -> Result<Sealing, CliError> {
    let configured = if recipients.is_empty() {
        ctx.config.encryption.recipients.clone()
    } else {
        recipients.to_vec()
    };
    let recipients = if no_encryption {
        if !configured.is_empty() {
            return Err(CliError::usage(
                "--no-encryption given, but recipients are configured: drop one or the other",
            ));
        }
        Vec::new()
    } else {
        parse_recipients(&configured)?
    };
    Ok(Sealing { level, recipients })
}

/// `backup logical`.
pub async fn backup(ctx: &Context, args: BackupLogicalArgs) -> Result<(), CliError> {
    let plan = LogicalBackup {
        databases: databases(ctx, &args)?,
        globals: args.globals,
        tags: tags(&args.tags)?,
        sealing: sealing(
            ctx,
            &args.recipients.recipients,
            args.no_encryption,
            args.level,
        )?,
        pg_bin: args.pg_bin.clone(),
    };
    let repo = open_for_backup(ctx, &args.signing).await?;
    let started = std::time::Instant::now();
    let manifest = backup_logical(&repo, &plan, &Bars::new(ctx)).await?;
    print_backup(ctx, &manifest, started.elapsed().as_secs_f64());
    Ok(())
}

fn print_backup(ctx: &Context, manifest: &Manifest, seconds: f64) {
    if ctx.json {
        let out = serde_json::json!({ "ok": true, "seconds": seconds, "manifest": manifest });
        println!("{out}");
        return;
    }
    if ctx.quiet {
        return;
    }
    println!("backup {} stored in {seconds:.1} s", manifest.id);
    for a in &manifest.artifacts {
        println!(
            "  {:<32} {:>10} stored  ({} before compression and encryption)",
            a.name,
            human_bytes(a.stored_size),
            human_bytes(a.raw_size)
        );
    }
}

/// `restore logical`.
pub async fn restore(ctx: &Context, args: RestoreLogicalArgs) -> Result<(), CliError> {
    let plan = LogicalRestore {
        backup: args.id.clone(),
        target: url_from_argv(&args.target)?,
        database: args.database.clone(),
        create: args.create,
        clean: args.clean,
        jobs: args.jobs,
        terminate_connections: args.terminate_connections,
        no_privileges: false,
        keyring: Some(Arc::new(load_keyring(ctx, &args.identities).await?)),
        pg_bin: args.pg_bin.clone(),
        temp_dir: None,
    };
    let repo = open_trusted(ctx, &args.trust).await?;
    let outcome = restore_logical(&repo, &plan, &Bars::new(ctx)).await?;
    print_restore(ctx, &outcome);
    Ok(())
}

fn print_restore(ctx: &Context, outcome: &RestoreOutcome) {
    if ctx.json {
        let out = serde_json::json!({ "ok": true, "restore": outcome });
        println!("{out}");
        return;
    }
    if ctx.quiet {
        return;
    }
    let created = if outcome.created { " (created)" } else { "" };
    println!(
        "restored {} of backup {} into {}{created} in {:.1} s",
        outcome.artifact,
        outcome.backup_id,
        outcome.target,
        outcome.report.elapsed.as_secs_f64()
    );
    if outcome.terminated_connections > 0 {
        println!(
            "  terminated {} other session(s) first",
            outcome.terminated_connections
        );
    }
}
