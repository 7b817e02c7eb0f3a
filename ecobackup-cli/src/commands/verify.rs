//! `ecobackup verify`: every stored byte read, authenticated, decompressed and checked against
//! the manifest; exit 1 naming the first damaged artifact.

use std::sync::Arc;

use ecobackup_core::repository::Manifest;
use ecobackup_core::verify::{verify_backup, BackupCheck};

use super::filter::load_keyring;
use super::progress::Bars;
use super::repo::{human_bytes, open_trusted};
use crate::cli::VerifyArgs;
use crate::{CliError, Context};

/// `verify`.
pub async fn verify(ctx: &Context, args: VerifyArgs) -> Result<(), CliError> {
    if args.wal {
        return Err(CliError::usage(
            "`verify --wal` is not built yet: WAL archiving and physical backups come in a later version; nothing was done",
        ));
    }
    let repo = open_trusted(ctx, &args.trust).await?;
    let manifests: Vec<Manifest> = if args.all {
        repo.manifests().await?
    } else {
        vec![
            repo.resolve(args.id.as_deref().unwrap_or("latest"), None)
                .await?,
        ]
    };
    if manifests.is_empty() {
        if !ctx.quiet && !ctx.json {
            println!("no backups in {}: nothing to verify", repo.storage().url());
        }
        if ctx.json {
            println!("[]");
        }
        return Ok(());
    }
    let keyring = Some(Arc::new(load_keyring(ctx, &args.identities).await?));
    let bars = Bars::new(ctx);
    let mut checks = Vec::new();
    for manifest in &manifests {
        let check = verify_backup(&repo, manifest, keyring.clone(), &bars).await?;
        print_check(ctx, &check);
        checks.push(check);
    }
    if ctx.json {
        println!("{}", serde_json::to_string(&checks).unwrap_or_default());
    }
    let damaged: Vec<String> = checks
        .iter()
        .flat_map(|c| {
            c.artifacts
                .iter()
                .filter(|a| a.failure.is_some())
                .map(move |a| format!("{}/{}", c.id, a.name))
        })
        .collect();
    match damaged.first() {
        None => Ok(()),
        Some(first) => {
            let reason = checks
                .iter()
                .flat_map(|c| &c.artifacts)
                .find_map(|a| a.error.clone())
                .unwrap_or_default();
            Err(CliError::from(ecobackup_core::Error::VerifyFailed {
                count: damaged.len(),
                first: first.clone(),
                reason,
            }))
        }
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
}
