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
        // Every job has what its command needs: none exits 2 at its first run.
        assert_eq!(preflight(&config), Ok(()));
        // The drill's checks file is shipped, and it loads as the drill loads it.
        let checks = config.drill.checks.as_deref().expect("[drill] checks");
        let shipped = root.join(checks.strip_prefix("/etc/ecobackup").unwrap());
        let checks =
            ecobackup_core::drill::Checks::load(&shipped).unwrap_or_else(|e| panic!("{e}"));
        assert!(!checks.table.is_empty() || !checks.sql.is_empty());
        // The scratch directory is one systemd creates for the daemon and the timers' service.
        let scratch = config
            .drill
            .scratch_dir
            .as_deref()
            .expect("[drill] scratch_dir");
        let state = scratch
            .strip_prefix("/var/lib/")
            .expect("under /var/lib")
            .to_str()
            .unwrap();
        for unit in ["ecobackup-daemon.service", "ecobackup@.service"] {
            let text = std::fs::read_to_string(root.join("systemd").join(unit)).unwrap();
            let line = text
                .lines()
                .find_map(|l| l.strip_prefix("StateDirectory="))
                .unwrap();
            assert!(
                line.split_whitespace().any(|d| d == state),
                "{unit}: {line}"
            );
        }
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
        assert_eq!(preflight(&config), Ok(()));
        assert!(
            yaml.contains(r#"args: ["daemon", "--once", "hourly""#),
            "{yaml}"
        );

        // The pod's grace: the daemon's --grace, 10 s for a cancelled job to return, 3 s for
        // its clean-up, and the /fail ping and the webhook at [notify] timeout_seconds each.
        let grace: u64 = yaml
            .split(r#""--grace", ""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .parse()
            .unwrap();
        let notify = config.notify.timeout_seconds.unwrap_or(10);
        let pod: u64 = yaml
            .lines()
            .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            pod > grace + 10 + 3 + 2 * notify,
            "{pod} s for --grace {grace}"
        );
        let service =
            std::fs::read_to_string(root.join("systemd/ecobackup-daemon.service")).unwrap();
        let stop: u64 = service
            .lines()
            .find_map(|l| l.strip_prefix("TimeoutStopSec="))
            .unwrap()
            .parse()
            .unwrap();
        let grace: u64 = service
            .split("--grace ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            stop > grace + 10 + 3 + 2 * notify,
            "{stop} s for --grace {grace}"
        );
    }

    /// Every entry of `config` prepared and preflighted as the daemon does; the first refusal.
    fn preflight(config: &Config) -> Result<(), String> {
        for schedule in &config.schedule {
            let entry =
                prepare(Path::new("example.toml"), schedule).map_err(|e| e.message().to_owned())?;
            entry.preflight(config)?;
        }
        Ok(())
    }

    /// The configuration `text`, parsed and checked as a file is.
    fn config(text: &str) -> Config {
        Config::parse(text, Path::new("/etc/ecobackup")).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// One entry running `job` with `args`, after `settings`.
    fn entry(settings: &str, job: &str, args: &[&str]) -> Config {
        let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
        config(&format!(
            "{settings}\n[[schedule]]\nname = \"job\"\ncron = \"0 * * * *\"\njob = \"{job}\"\nargs = [{}]\n",
            args.join(", ")
        ))
    }

    fn signer() -> String {
        ecobackup_core::crypto::Signer::generate()
            .public_key()
            .to_string()
    }

    const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    /// Asserts that `config`'s entry is refused with `wanted` in its line.
    #[track_caller]
    fn refused(config: &Config, wanted: &str) {
        match preflight(config) {
            Ok(()) => panic!("accepted, but it should need {wanted}"),
            Err(line) => {
                assert!(line.contains(wanted), "{line}");
                assert!(!line.contains('\n'), "{line}");
            }
        }
    }

    #[test]
    fn a_prune_without_retention_or_trusted_signer_is_refused() {
        let signers = format!("[encryption]\ntrusted_signers = [\"{}\"]\n", signer());
        refused(
            &entry(&signers, "prune", &[]),
            "prune needs a [retention] policy",
        );
        let retention = "[retention]\nkeep_last = 2\n";
        refused(
            &entry(retention, "prune", &[]),
            "prune needs a trusted signer",
        );
        let both = format!("{retention}{signers}");
        assert_eq!(preflight(&entry(&both, "prune", &[])), Ok(()));
        assert_eq!(
            preflight(&entry(retention, "prune", &["--allow-unsigned"])),
            Ok(())
        );
        let unsigned = format!("{retention}[encryption]\nallow_unsigned = true\n");
        assert_eq!(preflight(&entry(&unsigned, "prune", &[])), Ok(()));
        let signer = signer();
        let flag = ["--trusted-signer", signer.as_str()];
        assert_eq!(preflight(&entry(retention, "prune", &flag)), Ok(()));
        refused(
            &entry(retention, "prune", &["--trusted-signer", "ecosign1nope"]),
            "prune: invalid trusted signer",
        );
    }

    #[test]
    fn a_backup_without_database_recipient_or_signing_key_is_refused() {
        let keys = format!(
            "[encryption]\nrecipients = [\"{RECIPIENT}\"]\nsigning_key_file = \"signing.key\"\n"
        );
        let shop = "[[database]]\nname = \"shop\"\nurl = \"postgres://backup@db/shop\"\n";
        refused(
            &entry(&keys, "backup logical", &[]),
            "backup logical needs a database",
        );
        let both = format!("{keys}{shop}");
        assert_eq!(
            preflight(&entry(&both, "backup logical", &["--globals"])),
            Ok(())
        );
        let db = ["--db", "postgres://backup@db/shop"];
        assert_eq!(preflight(&entry(&keys, "backup logical", &db)), Ok(()));

        let signing = "[encryption]\nsigning_key_file = \"signing.key\"\n";
        let unencrypted = format!("{signing}{shop}");
        refused(
            &entry(&unencrypted, "backup logical", &[]),
            "backup logical needs a recipient",
        );
        refused(
            &entry(&unencrypted, "backup physical", &[]),
            "backup physical needs a recipient",
        );
        for ok in [&["--no-encryption"][..], &["-r", RECIPIENT]] {
            assert_eq!(
                preflight(&entry(&unencrypted, "backup logical", ok)),
                Ok(()),
                "{ok:?}"
            );
        }
        refused(
            &entry(&both, "backup logical", &["--no-encryption"]),
            "--no-encryption in args, but recipients are configured",
        );

        let unsigned = format!("[encryption]\nrecipients = [\"{RECIPIENT}\"]\n{shop}");
        refused(
            &entry(&unsigned, "backup logical", &[]),
            "backup logical needs a signing key",
        );
        assert_eq!(
            preflight(&entry(&unsigned, "backup logical", &["--no-signing"])),
            Ok(())
        );

        // A physical backup needs a server with a plain url.
        refused(
            &entry(&keys, "backup physical", &[]),
            "backup physical needs a server",
        );
        let url_file = format!("{keys}[[database]]\nname = \"shop\"\nurl_file = \"shop.url\"\n");
        refused(
            &entry(&url_file, "backup physical", &[]),
            "has no plain url",
        );
        assert_eq!(preflight(&entry(&both, "backup physical", &[])), Ok(()));
    }

    #[test]
    fn a_drill_or_verify_without_identity_or_trusted_signer_is_refused() {
        let signers = format!("[encryption]\ntrusted_signers = [\"{}\"]\n", signer());
        for job in ["drill", "verify"] {
            refused(
                &entry(&signers, job, &[]),
                &format!("{job} needs an identity"),
            );
            refused(
                &entry(
                    "[encryption]\nidentity_files = [\"restore.key\"]\n",
                    job,
                    &[],
                ),
                &format!("{job} needs a trusted signer"),
            );
            let both = format!("{signers}identity_files = [\"restore.key\"]\n");
            assert_eq!(preflight(&entry(&both, job, &[])), Ok(()));
            let flags = ["--allow-unsigned", "--identity", "restore.key"];
            assert_eq!(preflight(&entry("", job, &flags)), Ok(()));
        }
        let wal_only = ["--wal"];
        assert_eq!(preflight(&entry(&signers, "verify", &wal_only)), Ok(()));
        refused(
            &entry(&signers, "verify", &["--wal", "--all"]),
            "verify needs an identity",
        );
        let thresholds = "[check]\nmax_age = \"26h\"\n";
        refused(
            &entry(thresholds, "check", &[]),
            "check needs a trusted signer",
        );
        let unsigned = ["--allow-unsigned"];
        refused(&entry("", "check", &unsigned), "check needs a threshold");
        assert_eq!(preflight(&entry(thresholds, "check", &unsigned)), Ok(()));
        let flags = ["--allow-unsigned", "--max-age", "26h"];
        assert_eq!(preflight(&entry("", "check", &flags)), Ok(()));
    }

    #[test]
    fn the_refusal_names_the_file_and_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ecobackup.toml");
        std::fs::write(
            &path,
            "[[schedule]]\nname = \"daily-prune\"\ncron = \"30 3 * * *\"\njob = \"prune\"\nargs = [\"--allow-unsigned\"]\n\n\
             [[schedule]]\nname = \"hourly\"\ncron = \"0 * * * *\"\njob = \"check\"\nargs = [\"--allow-unsigned\", \"--max-age\", \"26h\"]\n",
        )
        .unwrap();
        let globals = Globals {
            json: false,
            quiet: false,
            repo: None,
            config_path: Some(path.clone()),
        };
        let error = Plan::load(&globals, None).err().unwrap();
        assert_eq!(
            error.message(),
            format!(
                "configuration file {}: [[schedule]] \"daily-prune\": prune needs a [retention] policy: without one prune deletes nothing and exits 2 (README, \"Retention\")",
                path.display()
            )
        );
        // `--once hourly` is not held back by the other entry.
        let plan =
            Plan::load(&globals, Some("hourly")).unwrap_or_else(|e| panic!("{}", e.message()));
        assert_eq!(plan.entries.len(), 2);
    }
}
