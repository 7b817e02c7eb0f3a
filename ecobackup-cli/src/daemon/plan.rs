//! What the daemon runs: the configuration file, loaded and checked, with each `[[schedule]]`
//! entry's pattern and command line ready. Loaded at start and on SIGHUP; a file that does not
//! load is refused whole, so the daemon never runs half of a configuration.

use std::path::Path;
use std::sync::Arc;

use clap::Parser;

use super::schedule::{ScheduleConfig, When};
use super::Globals;
use crate::cli::Cli;
use crate::config::Config;
use crate::CliError;

/// The loaded configuration and its schedules.
pub struct Plan {
    /// The settings every job reads (shared with the jobs that started under them).
    pub config: Arc<Config>,
    /// The entries, in the file's order.
    pub entries: Vec<Arc<Entry>>,
}

/// One `[[schedule]]` entry, ready to run.
#[derive(Debug)]
pub struct Entry {
    /// The entry as written.
    pub schedule: ScheduleConfig,
    /// When it runs.
    pub when: When,
    /// Its job's command line, the program's name first.
    pub argv: Vec<String>,
}

impl Entry {
    /// The entry's name.
    pub fn name(&self) -> &str {
        &self.schedule.name
    }

    /// Parses the job's command line as the CLI does: the flags, and the environment
    /// variables that stand for them (`ECOBACKUP_RECIPIENTS`, `ECOBACKUP_PG_BIN`, …).
    pub fn command_line(&self) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(&self.argv)
    }
}

impl Plan {
    /// Loads the configuration file the daemon was given and prepares every entry; the
    /// first problem is one line that names the file and the entry.
    pub fn load(globals: &Globals) -> Result<Plan, CliError> {
        let Some(path) = globals.config_path.as_deref() else {
            return Err(CliError::usage(
                "the daemon needs a configuration file with [[schedule]] entries: give --config FILE or ECOBACKUP_CONFIG",
            ));
        };
        let config = Config::load(Some(path))?;
        if config.schedule.is_empty() {
            return Err(CliError::usage(format!(
                "configuration file {} has no [[schedule]] entry: nothing to run (README, \"Running on a schedule\")",
                path.display()
            )));
        }
        let entries = config
            .schedule
            .iter()
            .map(|schedule| prepare(path, schedule).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Plan {
            config: Arc::new(config),
            entries,
        })
    }

    /// The entry named `name`, or the refusal that lists the names there are.
    pub fn entry(&self, name: &str) -> Result<&Arc<Entry>, CliError> {
        self.entries
            .iter()
            .find(|entry| entry.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.entries.iter().map(|e| e.name()).collect();
                CliError::usage(format!(
                    "no [[schedule]] entry is named {name:?}; the entries are: {}",
                    names.join(", ")
                ))
            })
    }
}

/// The entry `schedule` of the file at `path`, with its command line checked by the CLI's own
/// parser: a typo in a flag is found at start, not at 3 a.m.
fn prepare(path: &Path, schedule: &ScheduleConfig) -> Result<Entry, CliError> {
    let invalid = |detail: String| {
        CliError::usage(format!(
            "configuration file {}: [[schedule]] {:?}: {detail}",
            path.display(),
            schedule.name
        ))
    };
    let when = schedule.when().map_err(invalid)?;
    let mut argv = vec!["ecobackup".to_owned()];
    argv.extend(schedule.argv().map_err(invalid)?);
    let entry = Entry {
        schedule: schedule.clone(),
        when,
        argv,
    };
    if let Err(e) = entry.command_line() {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("invalid arguments");
        return Err(invalid(format!(
            "`ecobackup {}` does not parse: {}",
            schedule.job_kind().map_or("", |k| k.name()),
            first.trim().trim_start_matches("error: ")
        )));
    }
    Ok(entry)
}
