//! Restore drills: "a backup that's never restored is not a backup".
//!
//! A drill restores a logical backup into a scratch target — a throwaway cluster started from
//! the installed server binaries, or new databases on a server you name — runs the checks,
//! measures the recovery time (RTO) and the backup's age at drill time (the RPO you would get),
//! and cleans up. The [`DrillReport`] is the audit record: what was restored, how long each
//! part took, and each check with its expected and actual value.
//!
//! The scratch cluster listens on a unix socket in a directory only its user can enter, never on
//! TCP: it trusts every connection and holds a copy of production data. It runs with `fsync`,
//! `synchronous_commit` and `full_page_writes` off unless the plan asks for a durable drill
//! ([`DrillPlan::durable`]); the report says which ([`DrillReport::durable`]), since only a
//! durable drill's RTO is a figure a runbook may quote.

mod command;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::artifact;
use crate::crypto::Keyring;
use crate::error::{Error, Result};
use crate::postgres::binaries::{
    bin_dir_var, find_program, installed_server_dirs, program_major_version,
};
use crate::postgres::cluster::{Cluster, ClusterOptions};
use crate::postgres::{major_of, quote_ident, DbUrl};
use crate::process::{ChildCommand, ChildSink};
use crate::progress::Progress;
use crate::repository::{BackupKind, Manifest, Repository};
use crate::restore::{read_catalog, restore_logical, LogicalRestore};

/// The checks file (TOML): `[[table]]`, `[[sql]]` and an optional `[command]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checks {
    /// Row counts of tables.
    #[serde(default)]
    pub table: Vec<TableCheck>,
    /// SQL assertions that must return true.
    #[serde(default)]
    pub sql: Vec<SqlCheck>,
    /// A command run against the restored database that must exit 0.
    pub command: Option<CommandCheck>,
}

/// A table's row count: at least `min_rows`, and/or within `within_percent` of the source's
/// row estimate recorded at backup time.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableCheck {
    /// `orders` or `public.orders`.
    pub name: String,
    /// The database, when the backup holds several.
    pub database: Option<String>,
    /// The fewest rows that pass.
    pub min_rows: Option<i64>,
    /// Allowed distance from the source's row estimate, in percent.
    pub within_percent: Option<f64>,
}

/// A query that must return one row whose first column is true. `now()` in it means the time
/// the backup finished, so "orders in the last day" asks about the day before the backup.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlCheck {
    /// A name for the report (default: the query).
    pub name: Option<String>,
    /// The database, when the backup holds several.
    pub database: Option<String>,
    /// The query.
    pub query: String,
}

/// A shell command (booting the app and curling /health) that must exit 0. It gets the restored
/// database's URL in `ECOBACKUP_DRILL_DATABASE_URL` and `DATABASE_URL`. The check ends when the
/// shell exits; whatever it started in the background is stopped then.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandCheck {
    /// Run with `sh -c`.
    pub run: String,
    /// Give up after this long (default 300).
    pub timeout_seconds: Option<u64>,
}

/// Where the drill restores to.
#[derive(Clone, Debug)]
pub enum DrillTarget {
    /// A throwaway cluster from the installed server binaries (`--pg-bin` to choose them).
    Scratch,
    /// New databases on this server (any database of it in the URL), dropped afterwards.
    Server(DbUrl),
}

/// What to drill.
#[derive(Clone)]
pub struct DrillPlan {
    /// A backup id, or `latest`.
    pub backup: String,
    /// The checks to run.
    pub checks: Checks,
    /// Where to restore.
    pub target: DrillTarget,
    /// Identities able to decrypt the backup.
    pub keyring: Arc<Keyring>,
    /// Where PostgreSQL's programs are, when not in the usual places.
    pub pg_bin: Option<PathBuf>,
    /// Run the scratch cluster with `fsync`, `synchronous_commit` and `full_page_writes` on, as
    /// a production server would, so the RTO measured is the one a runbook may quote. Off, the
    /// restore is faster than any real recovery.
    pub durable: bool,
}

/// One check's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    /// `table`, `sql` or `command`.
    pub kind: &'static str,
    /// What was checked.
    pub name: String,
    /// What passes.
    pub expected: String,
    /// What was found.
    pub actual: String,
    /// Whether it passed.
    pub passed: bool,
}

/// How long each part of the recovery took.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RtoParts {
    /// Starting the scratch cluster, or connecting to the target server.
    pub provision_seconds: f64,
    /// Downloading, decrypting, decompressing and restoring (streamed: they overlap).
    pub restore_seconds: f64,
    /// Running the checks.
    pub checks_seconds: f64,
}

/// The audit record of a drill.
#[derive(Clone, Debug, Serialize)]
pub struct DrillReport {
    /// Every part ran and every check passed.
    pub passed: bool,
    /// The backup drilled.
    pub backup_id: String,
    /// When it finished.
    pub backup_finished_at: DateTime<Utc>,
    /// Its age when the drill started: the data a restore now would lose (RPO).
    pub backup_age_seconds: f64,
    /// When the drill started.
    pub started_at: DateTime<Utc>,
    /// Provision + restore + checks.
    pub rto_seconds: f64,
    /// Whether the server restored into flushed to disk like a production server: `fsync` and
    /// `full_page_writes` on, `synchronous_commit` not off, as read from the server itself.
    /// `false` for a scratch cluster unless the drill was durable (`drill --durable`); then the
    /// RTO is shorter than a real recovery's, and not a figure to quote.
    pub durable: bool,
    /// The parts of the RTO.
    pub rto: RtoParts,
    /// Where it was restored (no password).
    pub target: String,
    /// The databases restored.
    pub databases: Vec<String>,
    /// Every check, in order.
    pub checks: Vec<CheckResult>,
    /// What stopped the drill, when something did before the checks.
    pub error: Option<String>,
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The server binaries for a backup whose newest source server ran PostgreSQL `major`: the same
/// major if installed, else the oldest newer one (pg_restore reads archives of older servers,
/// never of newer ones). `None` (no version known): the newest installed, chosen by
/// [`Cluster::start`]. An error when every installed version is older than `major`.
async fn scratch_bin_dir(
    major: Option<u32>,
    explicit: Option<&std::path::Path>,
) -> Result<Option<PathBuf>> {
    let Some(major) = major else {
        return Ok(None);
    };
    let mut candidates: Vec<(u32, PathBuf)> = Vec::new();
    let mut older: Vec<u32> = Vec::new();
    for dir in installed_server_dirs(explicit).await {
        match program_major_version(&dir.join("initdb")).await {
            Some(found) if found >= major => candidates.push((found, dir)),
            Some(found) => older.push(found),
            None => {}
        }
    }
    candidates.sort_by_key(|(m, _)| *m);
    if let Some((_, dir)) = candidates.into_iter().next() {
        return Ok(Some(dir));
    }
    older.sort_unstable();
    older.dedup();
    let found = match (explicit, older.as_slice()) {
        (Some(dir), [found]) => format!("{} holds PostgreSQL {found}", dir.display()),
        (Some(dir), _) => format!("{} holds no PostgreSQL server programs", dir.display()),
        (None, []) => "no PostgreSQL server programs are installed".to_owned(),
        (None, found) => format!(
            "only PostgreSQL {} installed",
            found
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Err(Error::Process {
        program: "initdb".to_owned(),
        status: "not found".to_owned(),
        detail: format!(
            "the backup comes from PostgreSQL {major}, and a scratch cluster must run {major} or newer to restore it, but {found}; install PostgreSQL {major} (Debian: apt-get install postgresql-{major}), set {} to its bin directory, or give --pg-bin DIR (or drill into a server with --target-db URL)",
            bin_dir_var(major)
        ),
    })
}

fn qualified(table: &str) -> String {
    if table.contains('.') {
        table.to_owned()
    } else {
        format!("public.{table}")
    }
}

/// Runs a drill. An `Err` means the drill could not start (no such backup, no identity); a
/// drill that started always returns its report, passed or not.
pub async fn drill(
    repo: &Repository,
    plan: &DrillPlan,
    progress: &dyn Progress,
) -> Result<DrillReport> {
    let manifest = repo
        .resolve(&plan.backup, Some(BackupKind::Logical))
        .await?;
    let started_at = Utc::now();
    let mut report = DrillReport {
        passed: false,
        backup_id: manifest.id.clone(),
        backup_finished_at: manifest.finished_at,
        backup_age_seconds: (started_at - manifest.finished_at).num_milliseconds() as f64 / 1000.0,
        started_at,
        rto_seconds: 0.0,
        durable: false,
        rto: RtoParts::default(),
        target: String::new(),
        databases: manifest.source.databases.clone(),
        checks: Vec::new(),
        error: None,
    };
    let mut scratch: Option<Cluster> = None;
    let mut created: Vec<DbUrl> = Vec::new();
    let outcome = run(
        repo,
        plan,
        &manifest,
        &mut report,
        &mut scratch,
        &mut created,
        progress,
    )
    .await;
    if let Err(e) = outcome {
        report.error = Some(e.to_string());
    }
    if matches!(plan.target, DrillTarget::Server(_)) {
        for url in &created {
            if let Err(e) = url.drop_database().await {
                tracing::warn!(error = %e, database = %url.redacted(), "could not drop a drill database; drop it by hand");
            }
        }
    }
    if let Some(cluster) = scratch {
        if let Err(e) = cluster.shutdown().await {
            tracing::warn!(error = %e, "could not remove the drill's scratch cluster");
        }
    }
    report.rto_seconds =
        report.rto.provision_seconds + report.rto.restore_seconds + report.rto.checks_seconds;
    report.passed = report.error.is_none() && report.checks.iter().all(|c| c.passed);
    Ok(report)
}

async fn run(
    repo: &Repository,
    plan: &DrillPlan,
    manifest: &Manifest,
    report: &mut DrillReport,
    scratch: &mut Option<Cluster>,
    created: &mut Vec<DbUrl>,
    progress: &dyn Progress,
) -> Result<()> {
    let catalog = read_catalog(repo, manifest, Some(plan.keyring.clone())).await?;
    // The databases may come from servers of several versions: the scratch cluster must be
    // able to restore the newest.
    let source_major = catalog
        .databases
        .iter()
        .map(|d| d.major_version)
        .filter(|&m| m > 0)
        .max()
        .or_else(|| {
            manifest
                .source
                .servers
                .iter()
                .filter_map(|s| major_of(&s.server_version))
                .chain(manifest.source.server_version.as_deref().and_then(major_of))
                .max()
        });

    let clock = Instant::now();
    let (admin, on_scratch) = match &plan.target {
        DrillTarget::Scratch => {
            progress.note("starting a scratch cluster");
            let bin_dir = scratch_bin_dir(source_major, plan.pg_bin.as_deref()).await?;
            // A unix socket in a 0700 directory, no TCP (the default): the restored data stays
            // out of reach of the machine's other users.
            let cluster = Cluster::start(ClusterOptions {
                bin_dir,
                fsync: plan.durable,
                ..ClusterOptions::default()
            })
            .await?;
            let admin = DbUrl::parse(&cluster.url("postgres"))?;
            *scratch = Some(cluster);
            (admin, true)
        }
        DrillTarget::Server(url) => {
            url.connect().await?;
            (url.with_database("postgres"), false)
        }
    };
    report.target = admin.redacted();
    report.rto.provision_seconds = seconds(clock.elapsed());
    report.durable = flushes_like_production(&admin).await?;

    let clock = Instant::now();
    let bin_dir = scratch
        .as_ref()
        .map(|c| c.bin_dir().to_owned())
        .or(plan.pg_bin.clone());
    // Roles first, so the dump's GRANTs find them; only on a scratch cluster, never on a server
    // that is somebody's.
    let globals = manifest
        .artifacts
        .iter()
        .find(|a| a.name.starts_with("globals.sql"));
    let restore_globals = on_scratch && globals.is_some();
    if let (Some(cluster), true, Some(globals)) = (scratch.as_ref(), restore_globals, globals) {
        let psql = find_program("psql", cluster.major_version(), bin_dir.as_deref()).await?;
        // Without ON_ERROR_STOP psql goes on past `CREATE ROLE postgres` (it exists already).
        let command = admin.apply(ChildCommand::new(psql).arg("-X").arg("-q").arg("--file=-"));
        artifact::open(
            repo,
            &manifest.id,
            globals,
            Some(plan.keyring.clone()),
            ChildSink::new(command),
            progress,
        )
        .await?;
    }
    let mut restored = BTreeMap::new();
    for database in &manifest.source.databases {
        let name = if on_scratch {
            database.clone()
        } else {
            format!("ecobackup_drill_{}_{:08x}", database, rand::random::<u32>())
        };
        let target = admin.with_database(&name);
        let restore = LogicalRestore {
            backup: manifest.id.clone(),
            target: target.clone(),
            database: Some(database.clone()),
            create: true,
            clean: false,
            jobs: 1,
            terminate_connections: false,
            no_privileges: !restore_globals,
            keyring: Some(plan.keyring.clone()),
            pg_bin: bin_dir.clone(),
            temp_dir: None,
        };
        created.push(target.clone());
        restore_logical(repo, &restore, progress).await?;
        restored.insert(database.clone(), target);
    }
    report.rto.restore_seconds = seconds(clock.elapsed());

    let clock = Instant::now();
    let estimates: BTreeMap<String, &BTreeMap<String, i64>> = catalog
        .databases
        .iter()
        .map(|d| (d.name.clone(), &d.row_estimates))
        .collect();
    let pick = |wanted: &Option<String>| -> Result<(String, DbUrl)> {
        let name = match wanted {
            Some(name) => name.clone(),
            None if restored.len() == 1 => restored.keys().next().cloned().unwrap_or_default(),
            None => {
                return Err(Error::Postgres {
                    context: "running the drill checks".to_owned(),
                    detail: format!(
                        "the backup holds several databases ({}): give `database = \"…\"` in each check",
                        restored.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                })
            }
        };
        let url = restored
            .get(&name)
            .cloned()
            .ok_or_else(|| Error::Postgres {
                context: "running the drill checks".to_owned(),
                detail: format!("a check names database {name:?}, which is not in the backup"),
            })?;
        Ok((name, url))
    };
    for check in &plan.checks.table {
        let (database, url) = pick(&check.database)?;
        let estimate = estimates
            .get(&database)
            .and_then(|e| e.get(&qualified(&check.name)))
            .copied();
        report.checks.push(table_check(check, &url, estimate).await);
    }
    for check in &plan.checks.sql {
        let (_, url) = pick(&check.database)?;
        report
            .checks
            .push(sql_check(check, &url, manifest.finished_at).await);
    }
    if let Some(check) = &plan.checks.command {
        let (_, url) = pick(&None)?;
        report.checks.push(command_check(check, &url).await);
    }
    report.rto.checks_seconds = seconds(clock.elapsed());
    Ok(())
}

/// Whether the server commits durably: what its settings say, not what we asked for.
async fn flushes_like_production(admin: &DbUrl) -> Result<bool> {
    admin
        .connect()
        .await?
        .query_one(
            "SELECT current_setting('fsync') = 'on' \
               AND current_setting('full_page_writes') = 'on' \
               AND current_setting('synchronous_commit') <> 'off'",
            &[],
        )
        .await
        .map(|row| row.get(0))
        .map_err(|e| admin.error("reading the durability settings of", e))
}

async fn table_check(check: &TableCheck, url: &DbUrl, estimate: Option<i64>) -> CheckResult {
    let table = qualified(&check.name);
    let mut expected = Vec::new();
    if let Some(min) = check.min_rows {
        expected.push(format!(">= {min} rows"));
    }
    if let Some(pct) = check.within_percent {
        match estimate {
            Some(e) => expected.push(format!("within {pct}% of the source's {e} rows")),
            None => expected.push(format!(
                "within {pct}% of the source (no estimate recorded for {table})"
            )),
        }
    }
    let quoted: Vec<String> = table.split('.').map(quote_ident).collect();
    let counted = async {
        let client = url.connect().await?;
        let row = client
            .query_one(&format!("SELECT count(*) FROM {}", quoted.join(".")), &[])
            .await
            .map_err(|e| url.error(&format!("counting the rows of {table} in"), e))?;
        Ok::<i64, Error>(row.get(0))
    }
    .await;
    let (actual, passed) = match counted {
        Ok(rows) => {
            let min_ok = check.min_rows.is_none_or(|min| rows >= min);
            let pct_ok = match (check.within_percent, estimate) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(pct), Some(e)) => ((rows - e).abs() as f64) <= (e as f64) * pct / 100.0,
            };
            (format!("{rows} rows"), min_ok && pct_ok)
        }
        Err(e) => (e.to_string(), false),
    };
    CheckResult {
        kind: "table",
        name: table,
        expected: if expected.is_empty() {
            "readable".to_owned()
        } else {
            expected.join(" and ")
        },
        actual,
        passed,
    }
}

async fn sql_check(check: &SqlCheck, url: &DbUrl, backup_time: DateTime<Utc>) -> CheckResult {
    let name = check.name.clone().unwrap_or_else(|| check.query.clone());
    // `now()` means the backup's time: a function in a schema searched before pg_catalog.
    let setup = format!(
        "CREATE SCHEMA IF NOT EXISTS ecobackup_drill; \
         CREATE OR REPLACE FUNCTION ecobackup_drill.now() RETURNS timestamptz \
           LANGUAGE sql IMMUTABLE AS $$ SELECT '{}'::timestamptz $$; \
         SET search_path = ecobackup_drill, pg_catalog, \"$user\", public;",
        backup_time.to_rfc3339()
    );
    let outcome = async {
        let client = url.connect().await?;
        client
            .batch_execute(&setup)
            .await
            .map_err(|e| url.error("preparing the SQL checks on", e))?;
        let rows = client
            .simple_query(&check.query)
            .await
            .map_err(|e| url.error("running a SQL check on", e))?;
        let value = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => {
                Some(row.get(0).unwrap_or("NULL").to_owned())
            }
            _ => None,
        });
        Ok::<String, Error>(value.unwrap_or_else(|| "no row".to_owned()))
    }
    .await;
    let (actual, passed) = match outcome {
        Ok(value) => {
            let passed = value == "t";
            (
                if passed {
                    "true".to_owned()
                } else if value == "f" {
                    "false".to_owned()
                } else {
                    value
                },
                passed,
            )
        }
        Err(e) => (e.to_string(), false),
    };
    CheckResult {
        kind: "sql",
        name,
        expected: "true".to_owned(),
        actual,
        passed,
    }
}

async fn command_check(check: &CommandCheck, url: &DbUrl) -> CheckResult {
    let timeout = Duration::from_secs(check.timeout_seconds.unwrap_or(300));
    let command = ChildCommand::new("/bin/sh")
        .arg("-c")
        .arg(&check.run)
        .env("ECOBACKUP_DRILL_DATABASE_URL", url.redacted().into())
        .env("DATABASE_URL", url.redacted().into());
    let (actual, passed) = match command::run_check(url.apply_env(command), timeout).await {
        Ok(()) => ("exit status 0".to_owned(), true),
        Err(e) => (e.to_string(), false),
    };
    CheckResult {
        kind: "command",
        name: check.run.clone(),
        expected: "exit status 0".to_owned(),
        actual,
        passed,
    }
}
