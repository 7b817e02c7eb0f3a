//! `ecobackup prune`: the `[retention]` policy applied, every decision printed with its reasons.

use ecobackup_core::retention::{prune as run_prune, Decision, PruneOptions, PruneReport};

use super::progress::Bars;
use super::repo::{human_bytes, open_trusted};
use crate::cli::PruneArgs;
use crate::{CliError, Context};

/// `prune`.
pub async fn prune(ctx: &Context, args: PruneArgs) -> Result<(), CliError> {
    let Some(policy) = &ctx.config.retention else {
        return Err(CliError::usage(
            "no [retention] policy in the configuration (--config / ECOBACKUP_CONFIG), so prune deletes nothing; add one (README, \"Retention\")",
        ));
    };
    let policy = policy.validate()?;
    let repo = open_trusted(ctx, &args.trust).await?;
    let mut options = PruneOptions::default();
    options.dry_run = args.dry_run;
    options.allow_large = args.yes;
    options.cancel = ctx.cancel.clone();
    let report = run_prune(&repo, &policy, &options, &Bars::new(ctx)).await?;
    print_report(ctx, &report);
    match &report.held_back {
        // A dry run deletes nothing anyway: the rail is news for the real run.
        Some(why) if report.dry_run => {
            if !ctx.quiet && !ctx.json {
                println!("a real run would stop here: {why}");
            }
            Ok(())
        }
        Some(why) => Err(CliError::failure(format!("nothing deleted: {why}"))),
        None => Ok(()),
    }
}

fn print_report(ctx: &Context, report: &PruneReport) {
    if ctx.json {
        println!("{}", serde_json::to_string(report).unwrap_or_default());
        return;
    }
    if ctx.quiet {
        return;
    }
    let mut decisions: Vec<(&str, &Decision)> = report
        .plan
        .keep
        .iter()
        .map(|d| ("keep", d))
        .chain(report.plan.delete.iter().map(|d| ("delete", d)))
        .collect();
    decisions.sort_by(|a, b| {
        (a.1.kind.as_str(), &a.1.group, b.1.finished_at).cmp(&(
            b.1.kind.as_str(),
            &b.1.group,
            a.1.finished_at,
        ))
    });
    for (verdict, d) in decisions {
        let mut reasons: Vec<String> = d.reasons.iter().map(ToString::to_string).collect();
        if reasons.is_empty() {
            reasons.push("no rule keeps it".to_owned());
        }
        println!(
            "{verdict:<6} {}  {}  {}",
            d.id,
            d.finished_at.format("%Y-%m-%d %H:%M UTC"),
            reasons.join(", ")
        );
    }
    for bad in &report.unusable {
        println!(
            "left   {}  its manifest cannot be used ({}): never pruned; see `ecobackup verify --all`",
            bad.id, bad.reason
        );
    }
    let wal = &report.wal;
    match &wal.untouched {
        Some(why) => println!("WAL: {why}"),
        None => {
            let kept: Vec<String> = wal
                .kept_from
                .iter()
                .map(|(timeline, first)| format!("timeline {timeline} from {first}"))
                .collect();
            println!(
                "WAL: {} files ({}) no kept backup needs; kept: {}",
                wal.files.len(),
                human_bytes(wal.bytes),
                if kept.is_empty() {
                    "none".to_owned()
                } else {
                    kept.join(", ")
                }
            );
        }
    }
    for debris in &report.debris {
        println!(
            "debris {}  {} objects ({}) without a manifest",
            debris.id,
            debris.objects,
            human_bytes(debris.bytes)
        );
    }
    let what = format!(
        "{} of {} backups, {} WAL files, {} debris folders",
        report.deleted.len(),
        report.plan.keep.len() + report.plan.delete.len(),
        wal.files.len(),
        report.debris.len()
    );
    if report.applied {
        println!("deleted {what}");
    } else if report.dry_run {
        println!("dry run: would delete {what}; nothing was deleted");
    }
}
