//! `ecobackup backup logical` and `ecobackup restore logical`.

use std::collections::BTreeMap;
use std::sync::Arc;

use ecobackup_core::artifact::Sealing;
use ecobackup_core::backup::{backup_logical, DumpTarget, LogicalBackup};
use ecobackup_core::crypto::{parse_recipients, read_secret_file, ExposeSecret};
use ecobackup_core::postgres::{DbUrl, PgEnv};
use ecobackup_core::process::ChildCommand;
use ecobackup_core::repository::Manifest;
use ecobackup_core::restore::{restore_logical, LogicalRestore, RestoreOutcome};

use super::filter::load_keyring;
use super::progress::Bars;
use super::repo::{human_bytes, open_trusted, under_shared_lock};
use super::targets::{open_targets, print_held, warn_failed_targets};
use crate::cli::{BackupLogicalArgs, RestoreLogicalArgs};
use crate::{CliError, Context};

/// How long a `url_command` or `after_command` may run.
const HOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// A connection string from the command line, completed from the `PG*` environment as libpq
/// would. A password in it (`user:password@`, `?password=`, `password=`) would be visible to
/// every user of the machine (`ps`), so it is refused.
pub fn url_from_argv(text: &str) -> Result<DbUrl, CliError> {
    let url = DbUrl::parse_with(text, &PgEnv::from_process())?;
    if url.has_password() {
        return Err(CliError::usage(format!(
            "the connection string {} carries a password on the command line, where every user of this machine can read it: use PGPASSFILE (or ~/.pgpass), PGPASSWORD or a [[database]] url_file instead",
            url.redacted()
        )));
    }
    Ok(url)
}

/// The databases to dump, and the `after_command`s to run when the backup is over.
struct Databases {
    targets: Vec<DumpTarget>,
    after: Vec<(String, String)>,
}

/// Runs a `[[database]]` hook through `sh -c`; its standard output, or one line saying what
/// failed (never the output: a `url_command` prints a password).
async fn run_hook(
    database: &str,
    hook: &str,
    command: &str,
    env: &[(&str, String)],
) -> Result<String, CliError> {
    let mut child = ChildCommand::new("/bin/sh").arg("-c").arg(command);
    for (name, value) in env {
        child = child.env(*name, value.clone().into());
    }
    let failed = |detail: String| {
        CliError::failure(format!(
            "the {hook} of [[database]] {database:?} failed: {detail}"
        ))
    };
    match tokio::time::timeout(HOOK_TIMEOUT, child.output()).await {
        Ok(Ok(stdout)) => Ok(stdout),
        Ok(Err(e)) => Err(failed(e.to_string())),
        Err(_) => Err(failed(format!(
            "it ran for more than {} s and was stopped",
            HOOK_TIMEOUT.as_secs()
        ))),
    }
}

/// `--db` URLs as dump targets, with the selection flags.
fn argv_targets(args: &BackupLogicalArgs) -> Result<Vec<DumpTarget>, CliError> {
    args.databases
        .iter()
        .map(|u| Ok(select(args, DumpTarget::new(url_from_argv(u)?))))
        .collect()
}

/// Adds the selection flags to a target's own.
fn select(args: &BackupLogicalArgs, mut target: DumpTarget) -> DumpTarget {
    target.schemas.extend(args.schemas.iter().cloned());
    target
        .exclude_schemas
        .extend(args.exclude_schemas.iter().cloned());
    target
        .exclude_table_data
        .extend(args.exclude_table_data.iter().cloned());
    target
}

/// The configuration's `[[database]]` entries, running their `url_command`s (when one fails,
/// the `after_command`s of the entries before it still run).
async fn configured_targets(
    ctx: &Context,
    args: &BackupLogicalArgs,
) -> Result<Databases, CliError> {
    // Every entry is checked before any hook runs.
    for db in &ctx.config.database {
        let sources = [
            db.url.is_some(),
            db.url_file.is_some(),
            db.url_command.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            return Err(CliError::usage(format!(
                "[[database]] {:?} needs exactly one of url, url_file and url_command",
                db.name
            )));
        }
    }
    if ctx.config.database.is_empty() {
        return Err(CliError::usage(
            "no database to back up: pass --db postgres://user@host/db, or add [[database]] entries to ecobackup.toml",
        ));
    }
    let env = PgEnv::from_process();
    let mut planned = Databases {
        targets: Vec::new(),
        after: Vec::new(),
    };
    for db in &ctx.config.database {
        // Queued before its url_command runs: a command that made a branch and then failed
        // still gets it deleted.
        if let Some(after) = &db.after_command {
            planned.after.push((db.name.clone(), after.clone()));
        }
        match target_of(db, &env).await {
            Ok(url) => planned.targets.push(select(
                args,
                DumpTarget::new(url)
                    .named(&db.name)
                    .schemas(&db.schemas, &db.exclude_schemas)
                    .without_data_of(&db.exclude_table_data),
            )),
            Err(e) => return Err(run_after(planned.after, None, e).await),
        }
    }
    Ok(planned)
}

/// The connection settings of one `[[database]]`: its url, the contents of its url_file, or
/// the last line its url_command printed.
async fn target_of(
    db: &ecobackup_core::config::DatabaseConfig,
    env: &PgEnv,
) -> Result<DbUrl, CliError> {
    let text = match (&db.url, &db.url_file, &db.url_command) {
        (Some(url), _, _) => url.clone(),
        (_, Some(file), _) => read_secret_file(file)?.expose_secret().trim().to_owned(),
        (_, _, Some(command)) => {
            let output = run_hook(&db.name, "url_command", command, &[]).await?;
            output
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(|l| l.trim().to_owned())
                .ok_or_else(|| {
                    CliError::failure(format!(
                        "the url_command of [[database]] {:?} printed no connection string",
                        db.name
                    ))
                })?
        }
        (None, None, None) => unreachable!("checked before any hook runs"),
    };
    Ok(DbUrl::parse_with(&text, env)?)
}

/// Runs every `after_command`, whatever happened; returns the backup's error, else the first
/// hook's failure.
async fn run_after(
    after: Vec<(String, String)>,
    backup_id: Option<&str>,
    error: CliError,
) -> CliError {
    run_after_commands(after, backup_id).await.err();
    error
}

async fn run_after_commands(
    after: Vec<(String, String)>,
    backup_id: Option<&str>,
) -> Result<(), CliError> {
    let env = [
        (
            "ECOBACKUP_BACKUP_OK",
            if backup_id.is_some() { "1" } else { "0" }.to_owned(),
        ),
        (
            "ECOBACKUP_BACKUP_ID",
            backup_id.unwrap_or_default().to_owned(),
        ),
    ];
    let mut first_failure = None;
    for (database, command) in after {
        if let Err(e) = run_hook(&database, "after_command", &command, &env).await {
            tracing::error!("{}", e.message());
            first_failure.get_or_insert(e);
        }
    }
    first_failure.map_or(Ok(()), Err)
}

/// `K=V` labels (shared by every backup command).
pub fn tags(args: &[String]) -> Result<BTreeMap<String, String>, CliError> {
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
    let tags = tags(&args.tags)?;
    let sealing = sealing(
        ctx,
        &args.recipients.recipients,
        args.no_encryption,
        args.level,
    )?;
    // Command-line URLs are checked before anything else; url_commands (which may create a
    // database branch) run only once the repository is known to be usable.
    let argv = argv_targets(&args)?;
    let to = open_targets(ctx, &args.signing, &args.targets).await?;
    let Databases { targets, after } = if argv.is_empty() {
        configured_targets(ctx, &args).await?
    } else {
        Databases {
            targets: argv,
            after: Vec::new(),
        }
    };
    let mut plan = LogicalBackup::new(targets, sealing);
    plan.globals = args.globals;
    plan.tags = tags;
    plan.pg_bin = args.pg_bin.clone();
    plan.cancel = ctx.cancel.clone();
    let started = std::time::Instant::now();
    let manifest = match backup_logical(&to, &plan, &Bars::new(ctx)).await {
        Ok(manifest) => manifest,
        Err(e) => return Err(run_after(after, None, e.into()).await),
    };
    warn_failed_targets(ctx, &to);
    print_backup(ctx, &manifest, started.elapsed().as_secs_f64());
    print_held(ctx, &to);
    run_after_commands(after, Some(&manifest.id))
        .await
        .map_err(|e| {
            CliError::failure(format!(
                "backup {} is stored, but {}",
                manifest.id,
                e.message()
            ))
        })
}

pub fn print_backup(ctx: &Context, manifest: &Manifest, seconds: f64) {
    ctx.set_backup_id(&manifest.id);
    if ctx.json {
        let mut out = serde_json::json!({ "ok": true, "seconds": seconds, "manifest": manifest });
        let warnings = ctx.warnings();
        if !warnings.is_empty() {
            out["warnings"] = serde_json::json!(warnings);
        }
        println!("{out}");
        return;
    }
    if ctx.quiet {
        return;
    }
    println!("backup {} stored in {seconds:.1} s", manifest.id);
    if manifest.source.globals_without_role_passwords {
        println!("  globals dumped without role passwords: the backup role is not a superuser (set them again with ALTER ROLE … PASSWORD after a restore)");
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

/// `restore logical`.
pub async fn restore(ctx: &Context, args: RestoreLogicalArgs) -> Result<(), CliError> {
    let mut plan = LogicalRestore::new(args.id.clone(), url_from_argv(&args.target)?);
    plan.database = args.database.clone();
    plan.create = args.create;
    plan.clean = args.clean;
    plan.jobs = args.jobs;
    plan.terminate_connections = args.terminate_connections;
    plan.no_privileges = false;
    plan.keyring = Some(Arc::new(load_keyring(ctx, &args.identities).await?));
    plan.pg_bin = args.pg_bin.clone();
    plan.temp_dir = None;
    plan.cancel = ctx.cancel.clone();
    let repo = open_trusted(ctx, &args.trust).await?;
    let outcome = under_shared_lock(&repo, "restore logical", async {
        Ok(restore_logical(&repo, &plan, &Bars::new(ctx)).await?)
    })
    .await?;
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
