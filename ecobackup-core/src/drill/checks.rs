//! The drill's checks: row counts, SQL assertions and a command, run against the restored
//! databases, each giving a [`CheckResult`] with what was expected and what was found.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::command;
use crate::error::{Error, Result};
use crate::postgres::{quote_ident, DbUrl};
use crate::process::ChildCommand;

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

impl Checks {
    /// Reads the checks file at `path` (TOML: `[[table]]`, `[[sql]]`, `[command]`).
    pub fn load(path: &std::path::Path) -> crate::Result<Checks> {
        let invalid = |detail: String| crate::Error::ConfigFile {
            path: path.to_owned(),
            detail: format!("(a drill checks file) {detail}"),
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| invalid(format!("cannot be read: {e}")))?;
        toml::from_str(&text).map_err(|e| invalid(e.message().to_owned()))
    }
}

/// A table's row count: at least `min_rows`, and/or within `within_percent` of the source's
/// row estimate recorded at backup time (for a physical backup, the restored copy's own
/// planner statistics, which are the source's as of the recovery point).
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
/// the restored data stands at — when a logical backup finished; for a physical backup its
/// recovery target time, or when the backup ended — so "orders in the last day" asks about the
/// day before the backup.
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

fn qualified(table: &str) -> String {
    if table.contains('.') {
        table.to_owned()
    } else {
        format!("public.{table}")
    }
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

/// The restored databases, by their name in the source.
pub(super) struct Restored {
    /// Name in the source → where it was restored.
    pub databases: BTreeMap<String, DbUrl>,
    /// Row estimates recorded at backup time (database → table → rows); `None` for a physical
    /// copy, whose own statistics are the source's as of the recovery point.
    pub estimates: Option<BTreeMap<String, BTreeMap<String, i64>>>,
    /// The time `now()` means in SQL checks.
    pub now: DateTime<Utc>,
}

impl Restored {
    /// The database a check means: the one it names, else the only one restored, else the only
    /// one besides `postgres` (a physical copy holds the whole cluster).
    fn pick(&self, wanted: &Option<String>) -> Result<(String, DbUrl)> {
        let refuse = |detail: String| Error::Postgres {
            context: "running the drill checks".to_owned(),
            detail,
        };
        let name = match wanted {
            Some(name) => name.clone(),
            None => {
                let mut names: Vec<&String> = self.databases.keys().collect();
                if names.len() > 1 {
                    names.retain(|n| *n != "postgres");
                }
                match names.as_slice() {
                    [only] => (*only).clone(),
                    _ => {
                        return Err(refuse(format!(
                            "the backup holds several databases ({}): give `database = \"…\"` in each check",
                            self.databases.keys().cloned().collect::<Vec<_>>().join(", ")
                        )))
                    }
                }
            }
        };
        let url = self.databases.get(&name).cloned().ok_or_else(|| {
            refuse(format!(
                "a check names database {name:?}, which is not in the backup"
            ))
        })?;
        Ok((name, url))
    }

    /// Runs every check, in the file's order: tables, SQL, then the command.
    pub async fn run(&self, checks: &Checks) -> Result<Vec<CheckResult>> {
        let mut results = Vec::new();
        for check in &checks.table {
            let (database, url) = self.pick(&check.database)?;
            let table = qualified(&check.name);
            let estimate = match &self.estimates {
                Some(recorded) => recorded.get(&database).and_then(|e| e.get(&table)).copied(),
                None => restored_estimate(&url, &table).await,
            };
            results.push(table_check(check, &url, estimate).await);
        }
        for check in &checks.sql {
            let (_, url) = self.pick(&check.database)?;
            results.push(sql_check(check, &url, self.now).await);
        }
        if let Some(check) = &checks.command {
            let (_, url) = self.pick(&None)?;
            results.push(command_check(check, &url).await);
        }
        Ok(results)
    }
}

/// The planner's row estimate (`pg_class.reltuples`) in the restored copy: for a physical
/// backup, the source's statistics as of the recovery point. `None` when the table was never
/// analyzed or cannot be found.
async fn restored_estimate(url: &DbUrl, table: &str) -> Option<i64> {
    let client = url.connect().await.ok()?;
    let row = client
        .query_one(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass($1)",
            &[&table],
        )
        .await
        .ok()?;
    let rows: i64 = row.get(0);
    (rows >= 0).then_some(rows)
}
