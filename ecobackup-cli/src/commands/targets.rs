//! The targets of a logical or files backup: the repository, and its mirrors
//! (`[[repository.mirror]]`, `--mirror URL`), all written from one read of the source.

use std::sync::Arc;

use ecobackup_core::error::Error;
use ecobackup_core::repository::{Repository, Targets};
use ecobackup_core::storage::RepoUrl;

use super::repo::{load_signer, object_lock, open_for_backup, storage_from};
use crate::cli::{SigningArgs, TargetArgs};
use crate::config::RepositoryConfig;
use crate::{CliError, Context};

/// A mirror's URL and settings, and whether the `ECOBACKUP_S3_*` variables apply to it.
type Mirror<'a> = (RepoUrl, &'a RepositoryConfig, bool);

/// The configured mirrors, then the `--mirror` URLs that name no configured one (with the
/// repository's own settings: `ECOBACKUP_S3_*`, then `[repository]`).
fn mirrors<'a>(ctx: &'a Context, args: &TargetArgs) -> Result<Vec<Mirror<'a>>, CliError> {
    let configured = &ctx.config.repository.mirror;
    let mut mirrors = Vec::new();
    for mirror in configured {
        let url = mirror
            .url
            .as_deref()
            .expect("checked when the config was loaded");
        mirrors.push((RepoUrl::parse(url)?, mirror, false));
    }
    for url in &args.mirrors {
        let url = RepoUrl::parse(url)?;
        if !mirrors
            .iter()
            .any(|(known, _, _)| known.to_string() == url.to_string())
        {
            mirrors.push((url, &ctx.config.repository, true));
        }
    }
    Ok(mirrors)
}

/// The targets of one backup, and the mirrors that could not even be opened.
pub struct BackupTargets {
    /// The targets written to.
    pub targets: Targets,
    /// `URL: why` of each mirror left out before the backup started.
    pub left_out: Vec<String>,
}

/// Opens the repository for a backup ([`open_for_backup`]) and every mirror, each signing with
/// the same key. A mirror that cannot be opened is left out when `min_targets` allows it, and
/// reported; one that is reachable but not initialised is an error (run `ecobackup init`).
pub async fn open_targets(
    ctx: &Context,
    signing: &SigningArgs,
    args: &TargetArgs,
) -> Result<BackupTargets, CliError> {
    let primary = open_for_backup(ctx, signing).await?;
    let mirrors = mirrors(ctx, args)?;
    if mirrors.is_empty() {
        return Ok(BackupTargets {
            targets: primary.into(),
            left_out: Vec::new(),
        });
    }
    // open_for_backup checked that signing is configured or waived.
    let signer = load_signer(ctx, signing.signing_key.as_deref())?;
    let total = 1 + mirrors.len();
    let required = args
        .min_targets
        .map(usize::from)
        .or(ctx.config.repository.min_targets);
    if let Some(n) = required.filter(|&n| n > total) {
        return Err(CliError::usage(format!(
            "--min-targets {n} with {total} targets (the repository and {} mirrors): give at most {total}",
            total - 1
        )));
    }
    let mut opened = Vec::new();
    let mut failures = Vec::new();
    for (url, settings, from_env) in mirrors {
        let storage = storage_from(settings, &url, from_env, object_lock(ctx)?)?;
        match Repository::open(storage).await {
            Ok(repo) => opened.push(match &signer {
                Some(signer) => repo.with_signer(Arc::clone(signer)),
                None => repo,
            }),
            Err(e @ Error::NotARepository { .. }) => {
                return Err(CliError::usage(format!(
                    "mirror {url} is not a repository yet: run `ecobackup init`, which initialises the configured mirrors too ({e})"
                )))
            }
            Err(e) => failures.push(format!("{url}: {e}")),
        }
    }
    let required = required.unwrap_or(total);
    if 1 + opened.len() < required {
        return Err(CliError::failure(format!(
            "only {} of {total} backup targets can be reached, {required} required: {}",
            1 + opened.len(),
            failures.join("; ")
        )));
    }
    Ok(BackupTargets {
        targets: Targets::new(primary, opened, Some(required))?,
        left_out: failures,
    })
}

/// After a backup to several targets: which hold it, and loudly, which failed.
pub fn report_targets(ctx: &Context, targets: &BackupTargets) {
    let report = targets.targets.report();
    if report.len() + targets.left_out.len() < 2 {
        return;
    }
    let held = report.iter().filter(|t| t.failure.is_none()).count();
    for failure in &targets.left_out {
        ctx.warn(format!(
            "backup target FAILED and does not hold this backup: {failure}"
        ));
    }
    for target in &report {
        if let Some(failure) = &target.failure {
            ctx.warn(format!(
                "backup target {} FAILED and does not hold this backup: {failure}",
                target.url
            ));
        }
    }
    if !ctx.quiet && !ctx.json {
        println!(
            "  held by {held} of {} targets",
            report.len() + targets.left_out.len()
        );
    }
}
