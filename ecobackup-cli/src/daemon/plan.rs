//! What the daemon runs: the configuration file, loaded and checked, with each `[[schedule]]`
//! entry's pattern and command line ready. Loaded at start and on SIGHUP; a file that does not
//! load is refused whole, so the daemon never runs half of a configuration.

use std::path::Path;
use std::sync::Arc;

use clap::Parser;

use super::Globals;
use crate::cli::{
    BackupCommand, Cli, Command, IdentityArgs, RecipientArgs, SigningArgs, TrustArgs,
};
use crate::CliError;
use ecobackup_core::config::schedule::{ScheduleConfig, When};
use ecobackup_core::config::Config;
use ecobackup_core::crypto::{parse_recipients, parse_signers};

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
    /// Loads the configuration file the daemon was given, prepares every entry and checks
    /// that each job has what its command needs ([`preflight`]); the first problem is one line
    /// that names the file and the entry. With `only` (`--once NAME`), the other entries are
    /// parsed but not preflighted: a backup run from a timer is not held back by what a drill
    /// entry of the same file lacks on this host.
    pub fn load(globals: &Globals, only: Option<&str>) -> Result<Plan, CliError> {
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
        let entries: Vec<Arc<Entry>> = config
            .schedule
            .iter()
            .map(|schedule| prepare(path, schedule).map(Arc::new))
            .collect::<Result<_, _>>()?;
        for entry in entries
            .iter()
            .filter(|e| only.is_none_or(|name| e.name() == name))
        {
            entry
                .preflight(&config)
                .map_err(|detail| invalid(path, &entry.schedule, detail))?;
        }
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

/// The refusal of the entry `schedule` of the file at `path`, one line.
fn invalid(path: &Path, schedule: &ScheduleConfig, detail: String) -> CliError {
    CliError::usage(format!(
        "configuration file {}: [[schedule]] {:?}: {detail}",
        path.display(),
        schedule.name
    ))
}

/// The entry `schedule` of the file at `path`, with its command line checked by the CLI's own
/// parser: a typo in a flag is found at start, not at 3 a.m.
fn prepare(path: &Path, schedule: &ScheduleConfig) -> Result<Entry, CliError> {
    let invalid = |detail: String| invalid(path, schedule, detail);
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

impl Entry {
    /// Whether the job has, in `config` (the file with the `ECOBACKUP_*` variables over it)
    /// and its command line (its `args`, and the variables its flags read), what its command
    /// refuses to run without: the check the command itself makes before it touches anything,
    /// made when the daemon starts or reloads instead of at the job's first run. Only the
    /// configuration is checked, not the files it names (a key file may be mounted later).
    fn preflight(&self, config: &Config) -> Result<(), String> {
        let cli = self.command_line().map_err(|e| e.to_string())?;
        let kind = self.schedule.job_kind()?.name();
        let needs = |what: String| Err(format!("{kind} needs {what}"));
        match &cli.command {
            Command::Backup(BackupCommand::Logical(args)) => {
                if args.databases.is_empty() {
                    if config.database.is_empty() {
                        return needs("a database: give `databases = [\"postgres://backup@host/db\"]` in the entry, or add a [[database]] entry".to_owned());
                    }
                    for db in &config.database {
                        let sources = [
                            db.url.is_some(),
                            db.url_file.is_some(),
                            db.url_command.is_some(),
                        ];
                        if sources.iter().filter(|s| **s).count() != 1 {
                            return Err(format!("[[database]] {:?} needs exactly one of url, url_file and url_command", db.name));
                        }
                    }
                }
                sealing(config, &args.recipients, args.no_encryption, kind)?;
                signing(config, &args.signing, kind)
            }
            Command::Backup(BackupCommand::Physical(args)) => {
                if args.database.is_none() {
                    match config.database.first() {
                        None => return needs("a server: give `databases = [\"postgres://replicator@host/postgres\"]` in the entry, or add a [[database]] entry".to_owned()),
                        Some(db) if db.url.is_none() => return needs(format!("a server: [[database]] {:?} has no plain url, so give `databases = [\"postgres://replicator@host/postgres\"]` in the entry", db.name)),
                        Some(_) => {}
                    }
                }
                sealing(config, &args.recipients, args.no_encryption, kind)?;
                signing(config, &args.signing, kind)
            }
            Command::Backup(BackupCommand::Files(args)) => {
                let own = args
                    .name
                    .as_deref()
                    .and_then(|name| config.files_set(name))
                    .is_some_and(|set| !set.recipients.is_empty());
                match (own, args.no_encryption) {
                    (true, true) => return Err(format!("{kind}: --no-encryption in args, but the [[files]] set has recipients: drop one or the other")),
                    (true, false) => {}
                    (false, _) => sealing(config, &args.recipients, args.no_encryption, kind)?,
                }
                signing(config, &args.signing, kind)
            }
            Command::Prune(args) => {
                let Some(policy) = &config.retention else {
                    return needs("a [retention] policy: without one prune deletes nothing and exits 2 (README, \"Retention\")".to_owned());
                };
                policy.validate().map_err(|e| format!("{kind}: {e}"))?;
                trust(config, &args.trust, kind)
            }
            Command::Verify(args) => {
                trust(config, &args.trust, kind)?;
                // `verify --wal` alone checks the archive's records and digests: a host that
                // holds no decryption key (the safer one) may run it.
                let wal_only = args.wal && args.id.is_none() && !args.all;
                match wal_only {
                    true => Ok(()),
                    false => identities(config, &args.identities, kind),
                }
            }
            Command::Drill(args) => {
                trust(config, &args.trust, kind)?;
                identities(config, &args.identities, kind)
            }
            Command::Check(args) => {
                let thresholds = ecobackup_core::monitor::Thresholds {
                    max_age: args.max_age.clone(),
                    min_size: args.min_size.clone(),
                    max_duration: args.max_duration.clone(),
                    max_drill_age: args.max_drill_age.clone(),
                    max_wal_lag: args.max_wal_lag.clone(),
                }
                .or(&config.check);
                if thresholds.is_empty() {
                    return needs("a threshold: give a [check] table (max_age = \"26h\", …), or `--max-age` and the like in args (README, \"Monitoring\")".to_owned());
                }
                trust(config, &args.trust, kind)
            }
            _ => Ok(()),
        }
    }
}

/// A backup's recipients: `-r` / `ECOBACKUP_RECIPIENTS`, else `[encryption] recipients`; none
/// only with `--no-encryption` (as `commands::logical::sealing` decides).
fn sealing(
    config: &Config,
    args: &RecipientArgs,
    no_encryption: bool,
    kind: &str,
) -> Result<(), String> {
    let configured = match args.recipients.is_empty() {
        true => &config.encryption.recipients,
        false => &args.recipients,
    };
    let parsed = parse_recipients(configured).map_err(|e| format!("{kind}: {e}"))?;
    match (parsed.is_empty(), no_encryption) {
        (false, false) | (true, true) => Ok(()),
        (false, true) => Err(format!(
            "{kind}: --no-encryption in args, but recipients are configured: drop one or the other"
        )),
        (true, false) => Err(format!(
            "{kind} needs a recipient to encrypt to: give [encryption] recipients (or ECOBACKUP_RECIPIENTS, or `-r age1…` in args), or `--no-encryption` in args for unencrypted backups"
        )),
    }
}

/// A backup's signing key: `--signing-key` / `ECOBACKUP_SIGNING_KEY_FILE`, else `[encryption]
/// signing_key_file`; none only with `--no-signing` or `allow_unsigned`.
fn signing(config: &Config, args: &SigningArgs, kind: &str) -> Result<(), String> {
    let configured = args.signing_key.is_some() || config.encryption.signing_key_file.is_some();
    match configured || args.no_signing || config.encryption.allow_unsigned {
        true => Ok(()),
        false => Err(format!(
            "{kind} needs a signing key: give [encryption] signing_key_file (or ECOBACKUP_SIGNING_KEY_FILE, or `--signing-key FILE` in args), or `--no-signing` in args for unsigned backups"
        )),
    }
}

/// The signers a reading job trusts: `--trusted-signer` / `ECOBACKUP_TRUSTED_SIGNERS`, else
/// `[encryption] trusted_signers`; none only with `--allow-unsigned` or `allow_unsigned`.
fn trust(config: &Config, args: &TrustArgs, kind: &str) -> Result<(), String> {
    let configured = match args.trusted_signers.is_empty() {
        true => &config.encryption.trusted_signers,
        false => &args.trusted_signers,
    };
    let keys = parse_signers(configured).map_err(|e| format!("{kind}: {e}"))?;
    match !keys.is_empty() || args.allow_unsigned || config.encryption.allow_unsigned {
        true => Ok(()),
        false => Err(format!(
            "{kind} needs a trusted signer: give [encryption] trusted_signers = [\"ecosign1…\"] (or ECOBACKUP_TRUSTED_SIGNERS, or `--trusted-signer` in args), or allow_unsigned for a repository written without signing"
        )),
    }
}

/// The identities that decrypt what a job reads: `-i` / `ECOBACKUP_IDENTITY_FILE`, else
/// `[encryption] identity_files`.
fn identities(config: &Config, args: &IdentityArgs, kind: &str) -> Result<(), String> {
    match args.identities.is_empty() && config.encryption.identity_files.is_empty() {
        false => Ok(()),
        true => Err(format!(
            "{kind} needs an identity to decrypt the backups: give [encryption] identity_files (or ECOBACKUP_IDENTITY_FILE, or `--identity FILE` in args)"
        )),
    }
}

#[cfg(test)]
mod tests;
