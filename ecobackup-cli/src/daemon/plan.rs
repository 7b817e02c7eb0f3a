//! What the daemon runs: the configuration file, loaded and checked, with each `[[schedule]]`
//! entry's pattern and command line ready. Loaded at start and on SIGHUP; a file that does not
//! load is refused whole, so the daemon never runs half of a configuration.

use std::path::Path;
use std::sync::Arc;

use clap::Parser;

use super::Globals;
use crate::cli::Cli;
use crate::CliError;
use ecobackup_core::config::schedule::{ScheduleConfig, When};
use ecobackup_core::config::Config;

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
        let config = crate::load_config(Some(path))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use ecobackup_core::config::schedule::{validate, JobKind};

    /// The seeds' four schedules, as the README and `deploy/` name them.
    const SEEDS: [(&str, JobKind); 4] = [
        ("hourly", JobKind::BackupLogical),
        ("daily-physical", JobKind::BackupPhysical),
        ("daily-prune", JobKind::Prune),
        ("monthly-drill", JobKind::Drill),
    ];

    /// Every entry of `config` checked and parsed as the daemon does; returns (name, job).
    fn entries(config: &Config) -> Vec<(String, JobKind)> {
        validate(&config.schedule, &[]).unwrap();
        config
            .schedule
            .iter()
            .map(|s| {
                prepare(Path::new("example.toml"), s).unwrap_or_else(|e| panic!("{}", e.message()));
                (s.name.clone(), s.job_kind().unwrap())
            })
            .collect()
    }

    fn seeds() -> Vec<(String, JobKind)> {
        SEEDS.iter().map(|(n, k)| ((*n).to_owned(), *k)).collect()
    }

    #[test]
    fn the_readme_schedule_example_is_the_seeds_schedules() {
        let readme = include_str!("../../../README.md");
        let block = readme
            .split("```toml\n")
            .skip(1)
            .filter_map(|rest| rest.split("```").next())
            .find(|block| block.contains("[[schedule]]"))
            .expect("a [[schedule]] example in the README");
        let config: Config = toml::from_str(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
        assert_eq!(entries(&config), seeds());
        let drill = &config.schedule[3];
        assert_eq!(drill.jitter_seconds, 300);
        assert_eq!(
            prepare(Path::new("x"), drill).unwrap().argv,
            ["ecobackup", "drill", "--kind", "logical"]
        );
    }

    #[test]
    fn the_deploy_examples_run_the_entries_of_the_shipped_configuration() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        let config =
            Config::load(Some(&root.join("ecobackup.toml"))).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(entries(&config), seeds());
        let names: Vec<&str> = SEEDS.iter().map(|(n, _)| *n).collect();

        // Each crontab line runs an entry, under flock.
        let crontab = std::fs::read_to_string(root.join("cron/ecobackup")).unwrap();
        let once: Vec<&str> = crontab
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains("--once"))
            .map(|l| {
                assert!(l.contains("flock -n"), "{l}");
                l.rsplit(' ').next().unwrap()
            })
            .collect();
        assert_eq!(once, names);

        // Each timer starts the template service for an entry.
        let mut timed: Vec<String> = std::fs::read_dir(root.join("systemd"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "timer"))
            .map(|e| {
                let text = std::fs::read_to_string(e.path()).unwrap();
                let unit = text.lines().find_map(|l| l.strip_prefix("Unit=")).unwrap();
                let name = unit.strip_prefix("ecobackup@").unwrap();
                name.strip_suffix(".service").unwrap().to_owned()
            })
            .collect();
        timed.sort();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(timed, sorted);
        let service = std::fs::read_to_string(root.join("systemd/ecobackup@.service")).unwrap();
        assert!(service.contains("daemon --once %i"), "{service}");

        // The CronJob's configuration has the entry it runs.
        let yaml = std::fs::read_to_string(root.join("kubernetes/cronjob.yaml")).unwrap();
        let embedded: String = yaml
            .split("ecobackup.toml: |\n")
            .nth(1)
            .and_then(|rest| rest.split("\n---").next())
            .unwrap()
            .lines()
            .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
            .collect();
        let config: Config = toml::from_str(&embedded).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            entries(&config),
            [("hourly".to_owned(), JobKind::BackupLogical)]
        );
        assert!(
            yaml.contains(r#"args: ["daemon", "--once", "hourly""#),
            "{yaml}"
        );
    }
}
