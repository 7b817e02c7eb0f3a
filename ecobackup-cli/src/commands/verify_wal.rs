//! `ecobackup verify --wal`: the WAL archive checked file by file, its gaps and timeline forks,
//! and the WAL each physical backup needs.

use std::sync::Arc;

use ecobackup_core::verify::wal_requirements;
use ecobackup_core::wal::{verify_wal as check_archive, WalCheck};

use super::filter::load_keyring;
use super::repo::{open_trusted, trusted_signers};
use crate::cli::VerifyArgs;
use crate::{CliError, Context};

/// Checks the archive and prints the verdict; `Ok(Some(error))` when it is not intact (the
/// caller may still verify backups before failing).
pub async fn verify_wal(ctx: &Context, args: &VerifyArgs) -> Result<Option<CliError>, CliError> {
    let repo = open_trusted(ctx, &args.trust).await?;
    let trust = trusted_signers(ctx, &args.trust)?;
    let listing = repo.manifests().await?;
    let requirements = wal_requirements(&listing.backups);
    let configured =
        !args.identities.identities.is_empty() || !ctx.config.encryption.identity_files.is_empty();
    let keyring = match configured {
        true => Some(Arc::new(load_keyring(ctx, &args.identities).await?)),
        false => None,
    };
    let check = check_archive(repo.storage(), keyring, &trust, &requirements).await?;
    print(ctx, &check);
    Ok(failure(&check))
}

fn failure(check: &WalCheck) -> Option<CliError> {
    let mut problems: Vec<(String, String)> = check
        .files
        .iter()
        .filter(|f| f.failure.is_some())
        .map(|f| (f.key.clone(), f.error.clone().unwrap_or_default()))
        .collect();
    problems.extend(check.gaps.iter().map(|g| {
        (
            format!("timeline {}", g.timeline),
            format!(
                "{} segment(s) missing, {} to {}",
                g.missing, g.first, g.last
            ),
        )
    }));
    problems.extend(check.requirements.iter().filter(|r| !r.ok()).map(|r| {
        (
            format!("the WAL of backup {}", r.label),
            match r.gaps.first() {
                Some(g) => format!("missing from {} to {}", g.first, g.last),
                None => format!("nothing archived from {} on", r.from),
            },
        )
    }));
    let (first, reason) = problems.first()?.clone();
    Some(CliError::from(ecobackup_core::Error::VerifyFailed {
        count: problems.len(),
        first,
        reason,
    }))
}

fn print(ctx: &Context, check: &WalCheck) {
    if ctx.json {
        println!("{}", serde_json::to_string(check).unwrap_or_default());
        return;
    }
    if ctx.quiet {
        return;
    }
    if check.files.is_empty() && check.requirements.is_empty() {
        println!("no WAL archived: nothing to verify");
        return;
    }
    println!("{} WAL archive", if check.ok { "ok    " } else { "FAILED" });
    if let Some(identity) = &check.identity {
        println!(
            "  cluster {} ({} MiB segments)",
            identity.system_identifier,
            identity.segment_size >> 20
        );
    }
    for t in &check.timelines {
        println!(
            "  timeline {}: {} segment(s), {} to {}",
            t.timeline, t.segments, t.first, t.last
        );
    }
    for fork in &check.forks {
        println!(
            "  fork: timeline {} began at {} on timeline {} ({})",
            fork.timeline, fork.switchpoint, fork.parent, fork.reason
        );
    }
    for gap in &check.gaps {
        println!(
            "  GAP   timeline {}: {} segment(s) missing, {} to {}",
            gap.timeline, gap.missing, gap.first, gap.last
        );
    }
    for file in check.files.iter().filter(|f| f.failure.is_some()) {
        println!(
            "  {:<7} {} {}",
            format!(
                "{:?}",
                file.failure
                    .unwrap_or(ecobackup_core::verify::Failure::Unreadable)
            )
            .to_lowercase(),
            file.file,
            file.error.as_deref().unwrap_or_default()
        );
    }
    for r in &check.requirements {
        match (r.ok(), &r.to) {
            (true, Some(to)) => {
                println!("  backup {}: WAL complete from {} to {to}", r.label, r.from)
            }
            _ => println!("  backup {}: WAL INCOMPLETE from {}", r.label, r.from),
        }
    }
    let intact = check.files.iter().filter(|f| f.failure.is_none()).count();
    println!(
        "  {intact} of {} file(s) intact: authenticated, digests and page headers match",
        check.files.len()
    );
}
