//! `ecobackup status` and `ecobackup check`: the repository's state for people, for Nagios and
//! Icinga (plugin output and exit codes), and for Prometheus (a node-exporter textfile).

use chrono::Utc;
use ecobackup_core::monitor::{
    check as run_check, metrics, status as read_status, worst, ArchiverState, Finding,
    RepositoryStatus, ServerArchive, Severity, Thresholds,
};
use serde::Serialize;

use super::logical::url_from_argv;
use super::repo::{human_bytes, open_trusted_at};
use super::verify::until_cancelled;
use crate::cli::{CheckArgs, StatusArgs, TrustArgs};
use crate::{CliError, Context};

/// How long `--db` may take to answer.
const SERVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The status, with the server's archiver when `--db` names one (its failure is recorded, not
/// fatal: the repository's findings still count).
pub(crate) async fn read(
    ctx: &Context,
    trust: &TrustArgs,
    database: Option<&str>,
) -> Result<RepositoryStatus, CliError> {
    read_at(ctx, trust, database, None).await
}

/// [`read`] of the repository at `repository` (a `[[files]] repository`) instead of the
/// configured one.
pub(crate) async fn read_at(
    ctx: &Context,
    trust: &TrustArgs,
    database: Option<&str>,
    repository: Option<&str>,
) -> Result<RepositoryStatus, CliError> {
    // A bad URL is the operator's mistake, found before anything is read.
    let db = database.map(url_from_argv).transpose()?;
    // Only reads: a signal (or the daemon's shutdown) stops it at once.
    until_cancelled(&ctx.cancel, "reading the repository's status", async {
        let repo = open_trusted_at(ctx, trust, repository).await?;
        let status = read_status(&repo, Utc::now()).await?;
        read_server(status, db).await
    })
    .await
}

/// `status` with the server's archiver, when `db` names one.
async fn read_server(
    mut status: RepositoryStatus,
    db: Option<ecobackup_core::postgres::DbUrl>,
) -> Result<RepositoryStatus, CliError> {
    if let Some(db) = db {
        // A host that drops packets or a stalled server must not hold the check until the
        // monitoring system kills it and loses every other finding: UNKNOWN after 15 s.
        let read = match tokio::time::timeout(SERVER_TIMEOUT, ArchiverState::read(&db)).await {
            Ok(read) => read,
            Err(_) => Err(ecobackup_core::Error::Postgres {
                context: format!("reading the archiver of {}", db.redacted()),
                detail: format!(
                    "no answer within {} s: check that the server is reachable",
                    SERVER_TIMEOUT.as_secs()
                ),
            }),
        };
        status.server = Some(ServerArchive::from_read(read));
    }
    Ok(status)
}

/// `status`.
pub async fn status(ctx: &Context, args: StatusArgs) -> Result<(), CliError> {
    let status = read(ctx, &args.trust, args.database.as_deref()).await?;
    if let Some(path) = &args.prometheus {
        metrics::write_textfile(path, &metrics::render(&status))?;
    }
    if ctx.json {
        println!("{}", serde_json::to_string(&status).unwrap_or_default());
    } else if !ctx.quiet {
        print_status(&status);
    }
    Ok(())
}

/// `3h`, `2.5 days`: an age for people.
fn age(seconds: i64) -> String {
    match seconds {
        s if s < 0 => format!("{} s in the future", -s),
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{:.1} h", s as f64 / 3_600.0),
        s => format!("{:.1} days", s as f64 / 86_400.0),
    }
}

fn print_status(status: &RepositoryStatus) {
    println!(
        "{}: {} objects, {}",
        status.repository,
        status.objects,
        human_bytes(status.bytes)
    );
    if status.backups.is_empty() {
        println!("no usable backup");
    } else {
        println!(
            "{:<9} {:<22} {:>5}  {:<34} {:<17} {:>10} {:>10} {:>9}",
            "KIND",
            "DATABASE",
            "COUNT",
            "LAST GOOD BACKUP",
            "FINISHED (UTC)",
            "AGE",
            "SIZE",
            "DURATION"
        );
        for g in &status.backups {
            println!(
                "{:<9} {:<22} {:>5}  {:<34} {:<17} {:>10} {:>10} {:>9}",
                g.kind.as_str(),
                if g.group.is_empty() { "-" } else { &g.group },
                g.count,
                g.last.id,
                g.last.finished_at.format("%Y-%m-%d %H:%M"),
                age(g.last.age_seconds),
                human_bytes(g.last.stored_bytes),
                age(g.last.duration_seconds)
            );
        }
    }
    for bad in &status.unusable {
        println!(
            "unusable {}: {}{}",
            bad.id,
            bad.reason,
            if bad.untrusted {
                " (fails the signature check)"
            } else {
                ""
            }
        );
    }
    if status.wal.is_empty() {
        println!("WAL: none archived");
    }
    for t in &status.wal {
        println!(
            "WAL timeline {}: {} segments, newest {} archived {} ago",
            t.timeline,
            t.segments,
            t.newest,
            age(t.age_seconds)
        );
    }
    if let Some(server) = &status.server {
        match (&server.state, &server.error) {
            (Some(state), _) => println!(
                "server {}: last archived {} at {}, {}",
                state.server,
                state.last_archived_wal.as_deref().unwrap_or("nothing"),
                state.last_archived_time.map_or_else(
                    || "-".to_owned(),
                    |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
                ),
                match &server.waiting {
                    Some(ecobackup_core::monitor::Waiting::Nothing) =>
                        "no completed WAL waits".to_owned(),
                    Some(ecobackup_core::monitor::Waiting::Since { since, .. }) =>
                        format!("completed WAL waits since {}", since.format("%H:%M:%S UTC")),
                    Some(ecobackup_core::monitor::Waiting::Unknown { reason }) => reason.clone(),
                    None => "unknown".to_owned(),
                }
            ),
            (None, Some(error)) => println!("server: cannot read its archiver: {error}"),
            (None, None) => {}
        }
    }
    let drills = &status.drills;
    match &drills.last {
        None => println!(
            "drill: none stored ({} unreadable)",
            drills.unreadable.len()
        ),
        Some(last) => {
            println!(
                "drill: last {} of backup {}, started {} ({} ago), RTO {:.1} s{}; {} stored",
                if last.passed { "PASSED" } else { "FAILED" },
                last.backup_id,
                last.started_at.format("%Y-%m-%d %H:%M UTC"),
                age((status.at - last.started_at).num_seconds()),
                last.rto_seconds,
                if last.durable { "" } else { " (not durable)" },
                drills.count
            );
            if let Some(passed) = drills.last_passed.as_ref().filter(|_| !last.passed) {
                println!(
                    "drill: last passed {} ago (backup {})",
                    age((status.at - passed.started_at).num_seconds()),
                    passed.backup_id
                );
            }
        }
    }
}

/// What `check --json` prints.
#[derive(Serialize)]
struct CheckOutput<'a> {
    status: Severity,
    exit_code: u8,
    thresholds: &'a Thresholds,
    findings: &'a [Finding],
}

/// `check`: exit 0, 1 or 2 by the worst finding; every failure of its own is UNKNOWN (3, mapped
/// in `main`).
pub async fn check(ctx: &Context, args: CheckArgs) -> Result<(), CliError> {
    let thresholds = Thresholds {
        max_age: args.max_age,
        min_size: args.min_size,
        max_duration: args.max_duration,
        max_drill_age: args.max_drill_age,
        max_wal_lag: args.max_wal_lag,
    }
    .or(&ctx.config.check);
    if thresholds.is_empty() {
        return Err(CliError::usage(
            "no threshold: give --max-age, --min-size, --max-duration, --max-drill-age or --max-wal-lag, or a [check] table in the configuration (README, \"Monitoring\")",
        ));
    }
    let status = read(ctx, &args.trust, args.database.as_deref()).await?;
    let findings = run_check(&status, &thresholds, Utc::now());
    let state = worst(&findings);
    let output = plugin_output(state, &findings);
    if ctx.json {
        let out = CheckOutput {
            status: state,
            exit_code: state.exit_code(),
            thresholds: &thresholds,
            findings: &findings,
        };
        println!("{}", serde_json::to_string(&out).unwrap_or_default());
    } else if !ctx.quiet {
        print!("{output}");
    }
    match state.exit_code() {
        0 => Ok(()),
        // The first line, without its performance data, for [notify] and the daemon's log.
        code => {
            let first = output.lines().next().unwrap_or_default();
            let summary = first.split(" | ").next().unwrap_or(first);
            Err(CliError::exit_status(code, summary))
        }
    }
}

/// The plugin output: a first line `ECOBACKUP <STATE> - <summary> | <perfdata>`, then one line
/// per finding, worst first.
fn plugin_output(state: Severity, findings: &[Finding]) -> String {
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let problems = findings
        .iter()
        .filter(|f| f.severity != Severity::Ok)
        .count();
    let summary = match sorted.first() {
        Some(first) if problems > 0 => format!(
            "{}{}",
            first.message,
            match problems {
                1 => String::new(),
                n => format!(" (and {} more problems)", n - 1),
            }
        ),
        _ => format!("{} checks OK", findings.len()),
    };
    let perfdata: Vec<String> = findings
        .iter()
        .filter_map(|f| f.perfdata.as_ref().map(ToString::to_string))
        .collect();
    let mut out = format!("ECOBACKUP {state} - {}", summary.replace('|', "/"));
    if !perfdata.is_empty() {
        out.push_str(" | ");
        out.push_str(&perfdata.join(" "));
    }
    out.push('\n');
    for f in sorted {
        // `|` would start performance data in the long output.
        out.push_str(&format!(
            "{}: {}\n",
            f.severity,
            f.message.replace('|', "/")
        ));
    }
    out
}

/// The first line a monitoring system reads when the check could not run (exit 3).
pub fn print_unknown(json: bool, message: &str) {
    if json {
        let out = serde_json::json!({ "status": "UNKNOWN", "exit_code": 3, "error": message });
        println!("{out}");
    } else {
        println!("ECOBACKUP UNKNOWN - {}", message.replace('|', "/"));
    }
}
