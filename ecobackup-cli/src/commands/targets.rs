//! The targets of a logical or files backup: the repository, and its mirrors
//! (`[[repository.mirror]]`, `--mirror URL`), all written from one read of the source.

use ecobackup_core::repository::{open_mirror, Targets};
use ecobackup_core::storage::RepoUrl;

use super::repo::{load_signer, object_lock, open_for_backup};
use crate::cli::{SigningArgs, TargetArgs};
use crate::{CliError, Context};
use ecobackup_core::config::RepositoryConfig;

/// A mirror's URL and settings, whether the `ECOBACKUP_S3_*` variables apply to it, and
/// whether it is configured (else given with `--mirror`).
struct Mirror<'a> {
    url: RepoUrl,
    settings: &'a RepositoryConfig,
    configured: bool,
}

/// The configured mirrors, then the `--mirror` URLs that name no configured one (with the
/// repository's own settings: `ECOBACKUP_S3_*`, then `[repository]`).
fn mirrors<'a>(ctx: &'a Context, args: &TargetArgs) -> Result<Vec<Mirror<'a>>, CliError> {
    let mut mirrors = Vec::new();
    for settings in &ctx.config.repository.mirror {
        let url = settings
            .url
            .as_deref()
            .expect("checked when the config was loaded");
        mirrors.push(Mirror {
            url: RepoUrl::parse(url)?,
            settings,
            configured: true,
        });
    }
    for url in &args.mirrors {
        let url = RepoUrl::parse(url)?;
        if !mirrors.iter().any(|m| m.url.to_string() == url.to_string()) {
            mirrors.push(Mirror {
                url,
                settings: &ctx.config.repository,
                configured: false,
            });
        }
    }
    Ok(mirrors)
}

/// Opens the repository for a backup ([`open_for_backup`]: it must be reachable) and every
/// mirror, each signing with the same key. A mirror that cannot be reached takes no part and
/// is reported (the backup fails when that leaves fewer than `--min-targets`); one that is
/// reachable but not initialised is an error.
pub async fn open_targets(
    ctx: &Context,
    signing: &SigningArgs,
    args: &TargetArgs,
) -> Result<Targets, CliError> {
    let primary = open_for_backup(ctx, signing).await?;
    let mirrors = mirrors(ctx, args)?;
    let required = args
        .min_targets
        .map(usize::from)
        .or(ctx.config.repository.min_targets);
    if mirrors.is_empty() && required.unwrap_or(1) == 1 {
        return Ok(primary.into());
    }
    let total = 1 + mirrors.len();
    if let Some(n) = required.filter(|&n| n > total) {
        return Err(CliError::usage(format!(
            "--min-targets {n} with {total} targets (the repository and {} mirrors): give at most {total}",
            total - 1
        )));
    }
    // open_for_backup checked that signing is configured or waived.
    let signer = load_signer(ctx, signing.signing_key.as_deref())?;
    let mut opened = Vec::new();
    let mut unreachable = Vec::new();
    for mirror in mirrors {
        match open_mirror(
            mirror.settings,
            &mirror.url,
            object_lock(ctx)?,
            signer.as_ref(),
        )
        .await
        {
            Ok(Ok(repo)) => opened.push(repo),
            Ok(Err(report)) => unreachable.push(report),
            Err(e) => {
                let how = match mirror.configured {
                    true => "run `ecobackup init`, which initialises the configured mirrors too",
                    false => "run `ecobackup --repo URL init` for it",
                };
                return Err(CliError::usage(format!(
                    "mirror {} is not a repository yet: {how} ({e})",
                    mirror.url
                )));
            }
        }
    }
    Ok(Targets::new(primary, opened, unreachable, required)?)
}

/// After a backup to several targets: loudly, which failed (on stderr, in `--json` and in the
/// notifications).
pub fn warn_failed_targets(ctx: &Context, targets: &Targets) {
    for target in &targets.report() {
        if let Some(failure) = &target.failure {
            ctx.warn(format!(
                "backup target {} FAILED and does not hold this backup: {failure}",
                target.url
            ));
        }
    }
}

/// The line saying how many targets hold the backup, when there are several.
pub fn print_held(ctx: &Context, targets: &Targets) {
    let report = targets.report();
    if report.len() < 2 || ctx.quiet || ctx.json {
        return;
    }
    let held = report.iter().filter(|t| t.failure.is_none()).count();
    println!("  held by {held} of {} targets", report.len());
}
