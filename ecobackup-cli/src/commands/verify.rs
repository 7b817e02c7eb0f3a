//! `ecobackup verify`: every stored byte read, authenticated, decompressed and checked against
//! the manifest; exit 1 naming the first damaged artifact.

use std::sync::Arc;

use ecobackup_core::cancel::CancellationToken;
use ecobackup_core::repository::{BadBackup, Manifest};
use ecobackup_core::verify::{verify_backup, BackupCheck};

use super::filter::load_keyring;
use super::progress::Bars;
use super::repo::{human_bytes, open_trusted, under_shared_lock};
use crate::cli::VerifyArgs;
use crate::{CliError, Context};

/// `verify`, under the repository's shared lock: prune does not delete what it reads. On
/// `ctx.cancel` (a signal, the daemon's shutdown) the reading stops at once and the lock is
/// released before it returns.
pub async fn verify(ctx: &Context, args: VerifyArgs) -> Result<(), CliError> {
    let repo = until_cancelled(&ctx.cancel, "verify", open_trusted(ctx, &args.trust)).await?;
    under_shared_lock(
        &repo,
        "verify",
        until_cancelled(&ctx.cancel, "verify", verify_unlocked(ctx, args)),
    )
    .await
}

/// Runs `work`, a command's part that only reads (verify, status, check), until it ends or
/// `cancel` fires; then drops it and returns "cancelled" naming `what`. Reading leaves nothing
/// to clean up, so the command returns at once instead of when the fallback that drops a
/// command ignoring its token runs out ([`crate::cancel::ABANDON_AFTER`]). Operations that
/// write take the token in their plan instead.
pub(crate) async fn until_cancelled<T>(
    cancel: &CancellationToken,
    what: &str,
    work: impl std::future::Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(ecobackup_core::Error::Cancelled(what.to_owned()).into()),
        result = work => result,
    }
}

async fn verify_unlocked(ctx: &Context, args: VerifyArgs) -> Result<(), CliError> {
    let wal_failure = match args.wal {
        true => super::verify_wal::verify_wal(ctx, &args).await?,
        false => None,
    };
    if args.wal && args.id.is_none() && !args.all {
        return wal_failure.map_or(Ok(()), Err);
    }
    let repo = open_trusted(ctx, &args.trust).await?;
    let (manifests, bad): (Vec<Manifest>, Vec<BadBackup>) = if args.all {
        let listing = repo.manifests().await?;
        (listing.backups, listing.bad)
    } else {
        let wanted = args.id.as_deref().unwrap_or("latest");
        (vec![repo.resolve(wanted, None).await?], Vec::new())
    };
    if manifests.is_empty() && bad.is_empty() {
        if !ctx.quiet && !ctx.json {
            println!("no backups in {}: nothing to verify", repo.storage().url());
        }
        if ctx.json {
            println!("[]");
        }
        return Ok(());
    }
    let mut checks = Vec::new();
    // A backup whose manifest cannot be used is a failure of its own: nothing of it is checkable.
    for bad in &bad {
        let check = BackupCheck::bad_manifest(bad);
        print_check(ctx, &check);
        checks.push(check);
    }
    let keyring = if manifests.is_empty() {
        None
    } else {
        Some(Arc::new(load_keyring(ctx, &args.identities).await?))
    };
    let bars = Bars::new(ctx);
    for manifest in &manifests {
        let check = verify_backup(&repo, manifest, keyring.clone(), &bars).await?;
        print_check(ctx, &check);
        checks.push(check);
    }
    if ctx.json {
        println!("{}", serde_json::to_string(&checks).unwrap_or_default());
    }
    let damaged: Vec<(String, String)> = checks
        .iter()
        .flat_map(|c| {
            let manifest = c
                .manifest_error
                .iter()
                .map(|e| (format!("{}/manifest.json", c.id), e.clone()));
            let artifacts = c.artifacts.iter().filter(|a| a.failure.is_some()).map(|a| {
                (
                    format!("{}/{}", c.id, a.name),
                    a.error.clone().unwrap_or_default(),
                )
            });
            manifest.chain(artifacts).collect::<Vec<_>>()
        })
        .collect();
    match damaged.first() {
        None => wal_failure.map_or(Ok(()), Err),
        Some((first, reason)) => Err(CliError::from(ecobackup_core::Error::VerifyFailed {
            count: damaged.len(),
            first: first.clone(),
            reason: reason.clone(),
        })),
    }
}

fn print_check(ctx: &Context, check: &BackupCheck) {
    if ctx.json || ctx.quiet {
        return;
    }
    println!(
        "{} {}",
        if check.ok { "ok    " } else { "FAILED" },
        check.id
    );
    if let Some(error) = &check.manifest_error {
        println!("  {:<7} {:<32} {error}", "bad", "manifest.json");
    }
    for a in &check.artifacts {
        match (&a.failure, &a.error) {
            (None, _) => println!(
                "  ok      {:<32} {:>10} stored, {:>10} raw, digests match",
                a.name,
                human_bytes(a.stored_bytes),
                human_bytes(a.raw_bytes)
            ),
            (Some(failure), error) => println!(
                "  {:<7} {:<32} {}",
                format!("{failure:?}").to_lowercase(),
                a.name,
                error.as_deref().unwrap_or_default()
            ),
        }
    }
    for warning in &check.warnings {
        println!("  warning {warning}");
    }
}
