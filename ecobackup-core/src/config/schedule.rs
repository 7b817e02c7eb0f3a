//! `[[schedule]]`: which job the daemon runs, and when.
//!
//! Plain data and checks that need nothing of the CLI (no clap, no `CliError`), so that they
//! can move to ecobackup-core with the rest of the configuration. An entry becomes the command
//! line of its job ([`ScheduleConfig::argv`]); the daemon parses that as the CLI would, so a
//! scheduled job is exactly the command an operator would type.
//!
//! | key | job | flag |
//! |---|---|---|
//! | `databases` | backup logical (any number), backup physical and check (one) | `--db` each |
//! | `set` | backup files (required) | `--name` |
//! | `kind` | drill | `--kind` |
//! | `prometheus` | every job but check | `--prometheus` |
//! | `args` | every job | appended as written |

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use serde::Deserialize;

/// `[[schedule]]`: one job and when it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ScheduleConfig {
    /// The entry's name, in the daemon's log lines and for `daemon --once NAME`.
    pub name: String,
    /// When: a cron pattern of 5 fields (minute hour day-of-month month day-of-week) or 6
    /// (seconds first), with names (`MON`, `JAN`), ranges, steps, `L`, `W`, `#` and the
    /// nicknames `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    pub cron: String,
    /// The IANA time zone the pattern is read in (`Europe/Berlin`); UTC when absent. A time
    /// that a daylight-saving change skips runs just after the change; one it repeats, once.
    pub timezone: Option<String>,
    /// What: `backup logical`, `backup physical`, `backup files`, `prune`, `verify`, `drill`
    /// or `check`.
    pub job: String,
    /// backup logical: the databases (`--db` each; default every `[[database]]`); backup
    /// physical and check: the server (`--db`).
    #[serde(default)]
    pub databases: Vec<String>,
    /// backup files: the `[[files]]` set (`--name`).
    pub set: Option<String>,
    /// drill: the kind of backup `latest` means, `logical` or `physical` (`--kind`).
    pub kind: Option<String>,
    /// The Prometheus textfile written after the job (`--prometheus`); not for check.
    pub prometheus: Option<PathBuf>,
    /// This job's healthchecks URL (`/start`, success, `/fail`), over `[drill]` and
    /// `[notify]` `ping_url`: each schedule can have a check of its own period.
    pub ping_url: Option<String>,
    /// A random delay in [0, N) seconds before each run, so that many hosts do not hit one
    /// bucket at the same second (default 0).
    #[serde(default)]
    pub jitter_seconds: u64,
    /// More flags of the job's command, as on its command line:
    /// `["--globals", "--tag", "reason=hourly"]`. Relative paths in them are taken from the
    /// daemon's working directory.
    #[serde(default)]
    pub args: Vec<String>,
}

/// The commands a schedule can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// `backup logical`.
    BackupLogical,
    /// `backup physical`.
    BackupPhysical,
    /// `backup files`.
    BackupFiles,
    /// `prune`.
    Prune,
    /// `verify`.
    Verify,
    /// `drill`.
    Drill,
    /// `check`.
    Check,
}

impl JobKind {
    /// Every kind, in the order the documentation lists them.
    pub const ALL: [JobKind; 7] = [
        JobKind::BackupLogical,
        JobKind::BackupPhysical,
        JobKind::BackupFiles,
        JobKind::Prune,
        JobKind::Verify,
        JobKind::Drill,
        JobKind::Check,
    ];

    /// The command's words, as `job` names them.
    pub fn name(self) -> &'static str {
        match self {
            JobKind::BackupLogical => "backup logical",
            JobKind::BackupPhysical => "backup physical",
            JobKind::BackupFiles => "backup files",
            JobKind::Prune => "prune",
            JobKind::Verify => "verify",
            JobKind::Drill => "drill",
            JobKind::Check => "check",
        }
    }

    /// The kind `job` names (spaces between the words do not matter).
    pub fn parse(job: &str) -> Option<JobKind> {
        let words = job.split_whitespace().collect::<Vec<_>>().join(" ");
        JobKind::ALL.into_iter().find(|kind| kind.name() == words)
    }
}

/// When an entry runs: its cron pattern, read in its time zone.
#[derive(Debug, Clone)]
pub struct When {
    cron: Cron,
    zone: Tz,
}

impl When {
    /// Parses `cron` (5 or 6 fields) and `timezone` (UTC when `None`).
    pub fn parse(cron: &str, timezone: Option<&str>) -> Result<When, String> {
        let zone = match timezone {
            None => Tz::UTC,
            Some(name) => name.parse::<Tz>().map_err(|_| {
                format!(
                    "timezone {name:?} is not an IANA time zone (e.g. \"Europe/Berlin\", \"UTC\")"
                )
            })?,
        };
        let parsed = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(cron)
            .map_err(|e| format!("cron {cron:?} is not a cron pattern: {e}"))?;
        Ok(When { cron: parsed, zone })
    }

    /// The first run strictly after `after`, or `None` when the pattern never matches again
    /// (`0 0 30 2 *`).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.zone), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

impl ScheduleConfig {
    /// The job this entry runs.
    pub fn job_kind(&self) -> Result<JobKind, String> {
        JobKind::parse(&self.job).ok_or_else(|| {
            let known: Vec<&str> = JobKind::ALL.iter().map(|k| k.name()).collect();
            format!(
                "job {:?} is not one the daemon runs: {}",
                self.job,
                known.join(", ")
            )
        })
    }

    /// When this entry runs.
    pub fn when(&self) -> Result<When, String> {
        When::parse(&self.cron, self.timezone.as_deref())
    }

    /// The command line of this entry's job, without the program's name:
    /// `["backup", "logical", "--db", URL, …args]`.
    pub fn argv(&self) -> Result<Vec<String>, String> {
        let kind = self.job_kind()?;
        let mut argv: Vec<String> = kind.name().split(' ').map(str::to_owned).collect();
        let mut flag = |name: &str, value: &str| {
            argv.push(name.to_owned());
            argv.push(value.to_owned());
        };
        for db in &self.databases {
            flag("--db", db);
        }
        if let Some(set) = &self.set {
            flag("--name", set);
        }
        if let Some(kind) = &self.kind {
            flag("--kind", kind);
        }
        if let Some(path) = &self.prometheus {
            flag("--prometheus", &path.to_string_lossy());
        }
        argv.extend(self.args.iter().cloned());
        Ok(argv)
    }

    /// Refuses what cannot run: a bad name, pattern or time zone, a pattern that never
    /// matches, an unknown job, a key that its job does not take, an unknown files set, a
    /// database URL with a password, a global flag in `args`.
    fn check(&self, files_sets: &[&str]) -> Result<(), String> {
        let valid_name = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_name {
            return Err("the name must be made of letters, digits, -, _ and .".to_owned());
        }
        if self.when()?.next_after(Utc::now()).is_none() {
            return Err(format!("cron {:?} never matches a future time", self.cron));
        }
        let kind = self.job_kind()?;
        use JobKind as J;
        let takes_db = matches!(kind, J::BackupLogical | J::BackupPhysical | J::Check);
        if !takes_db && !self.databases.is_empty() {
            return Err(format!("{} takes no databases", kind.name()));
        }
        if kind != J::BackupLogical && self.databases.len() > 1 {
            return Err(format!("{} takes one database, not several", kind.name()));
        }
        self.check_databases()?;
        match (&self.set, kind) {
            (None, J::BackupFiles) => {
                return Err("backup files needs `set`, the name of a [[files]] entry".to_owned())
            }
            (Some(set), J::BackupFiles) if !files_sets.contains(&set.as_str()) => {
                return Err(format!("set {set:?} is not a [[files]] entry"))
            }
            (Some(_), J::BackupFiles) | (None, _) => {}
            (Some(_), _) => return Err(format!("{} takes no set", kind.name())),
        }
        match (&self.kind, kind) {
            (Some(k), J::Drill) if k != "logical" && k != "physical" => {
                return Err(format!("kind {k:?}: drill takes logical or physical"))
            }
            (Some(_), J::Drill) | (None, _) => {}
            (Some(_), _) => return Err(format!("{} takes no kind", kind.name())),
        }
        if kind == J::Check && self.prometheus.is_some() {
            return Err("check writes no textfile: give prometheus to the backup jobs".to_owned());
        }
        if let Some(flag) = self.args.iter().find(|a| is_global_flag(a)) {
            return Err(format!(
                "args: {flag} is a flag of the daemon itself (--config, --repo, --json, -v, -q apply to every job): give it on the daemon's command line"
            ));
        }
        Ok(())
    }

    /// Database URLs must parse and carry no password (never quoted in the error: it may hold
    /// one).
    fn check_databases(&self) -> Result<(), String> {
        for (i, url) in self.databases.iter().enumerate() {
            let settings = crate::postgres::conninfo::parse(url)
                .map_err(|e| format!("databases[{i}] is not a connection string: {e}"))?;
            if settings.iter().any(|(k, _)| k == "password") {
                return Err(format!(
                    "databases[{i}] has a password inline: move it to PGPASSFILE, or name the database in a [[database]] entry with url_file and leave databases out"
                ));
            }
        }
        Ok(())
    }
}

/// Whether `arg` is one of the global flags, which the daemon's own command line sets for
/// every job.
fn is_global_flag(arg: &str) -> bool {
    let long = ["--config", "--repo", "--json", "--verbose", "--quiet"];
    let name = arg.split('=').next().unwrap_or(arg);
    long.contains(&name)
        || (arg.starts_with('-')
            && !arg.starts_with("--")
            && matches!(arg.chars().nth(1), Some('v' | 'q')))
}

/// Checks every entry (as `ScheduleConfig::check` does) and that no two share a name;
/// `files_sets` are the names of the `[[files]]` entries. The error names the entry.
pub fn validate(entries: &[ScheduleConfig], files_sets: &[&str]) -> Result<(), String> {
    for (i, entry) in entries.iter().enumerate() {
        entry
            .check(files_sets)
            .map_err(|detail| format!("[[schedule]] {:?}: {detail}", entry.name))?;
        if entries[..i].iter().any(|other| other.name == entry.name) {
            return Err(format!("[[schedule]] {:?} is defined twice", entry.name));
        }
    }
    Ok(())
}

/// Makes the entries' relative `prometheus` paths relative to `dir`, the configuration
/// file's directory, like the file's other paths.
pub fn anchor_paths(entries: &mut [ScheduleConfig], dir: &Path) {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    for path in entries.iter_mut().filter_map(|e| e.prometheus.as_mut()) {
        if path.is_relative() {
            *path = dir.join(&*path);
        }
    }
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
