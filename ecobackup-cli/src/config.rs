//! `ecobackup.toml`: the settings every command shares. Flags win over environment variables
//! (clap reads both), which win over the file. Secrets are never inline: only paths to them.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::CliError;

/// The configuration file, as written by the user.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[repository]`.
    #[serde(default)]
    pub repository: RepositoryConfig,
    /// `[encryption]`.
    #[serde(default)]
    pub encryption: EncryptionConfig,
    /// `[[database]]`.
    #[serde(default)]
    pub database: Vec<DatabaseConfig>,
    /// `[drill]`.
    #[serde(default)]
    pub drill: DrillConfig,
    /// `[wal]`.
    #[serde(default)]
    pub wal: WalConfig,
    /// `[retention]`: what `prune` keeps; absent, prune deletes nothing.
    pub retention: Option<ecobackup_core::retention::RetentionPolicy>,
    /// `[check]`: the thresholds `check` applies when no flag says otherwise.
    #[serde(default)]
    pub check: ecobackup_core::monitor::Thresholds,
    /// `[notify]`: pings and webhooks of the long-running commands.
    #[serde(default)]
    pub notify: NotifyConfig,
    /// `[[files]]`: the files sets `backup files --name NAME` runs.
    #[serde(default)]
    pub files: Vec<FilesConfig>,
    /// `[[schedule]]`: the jobs `ecobackup daemon` runs.
    #[serde(default)]
    pub schedule: Vec<crate::daemon::schedule::ScheduleConfig>,
}

/// `[[files]]`: a files set (uploads, keys, `.env`…).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// The set's name: `backup files --name NAME`, and how retention and `status` group it.
    pub name: String,
    /// Directories and files to back up (relative paths are taken from the file's directory).
    pub paths: Vec<PathBuf>,
    /// Glob patterns to leave out, besides the default excludes.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Keys and other secrets: then `recipients` are required and may not include any of
    /// `[encryption] recipients` (domain isolation).
    #[serde(default)]
    pub secrets: bool,
    /// Recipients for this set instead of `[encryption] recipients`.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Another repository URL for this set, opened with the `[repository]` settings
    /// (endpoint, region, credentials).
    pub repository: Option<String>,
}

/// `[notify]`: what `backup`, `prune`, `verify` and `drill` tell the outside world.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// A healthchecks-style URL: `<url>/start` when a job begins, `<url>` when it succeeds,
    /// `<url>/fail` (with the error line as the body) when it fails.
    pub ping_url: Option<String>,
    /// A URL that gets a JSON event (with a Slack-compatible `text`) when a job fails.
    pub webhook_url: Option<String>,
    /// Also post the event when a job succeeds.
    #[serde(default)]
    pub webhook_on_success: bool,
    /// How long one request may take, in seconds (default 10).
    pub timeout_seconds: Option<u64>,
}

/// `[wal]`: `wal-fetch`'s prefetch.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalConfig {
    /// Segments downloaded ahead of recovery (default 8; 0 disables).
    pub prefetch: Option<usize>,
    /// Where they wait (default: `ecobackup-spool/<name>` beside the data directory).
    pub spool_dir: Option<PathBuf>,
}

/// `[drill]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillConfig {
    /// The checks file.
    pub checks: Option<PathBuf>,
    /// A healthchecks-style URL for the drill (`<url>/start`, `<url>`, `<url>/fail`), instead
    /// of `[notify] ping_url`.
    pub ping_url: Option<String>,
    /// Restore into a scratch cluster that flushes to disk like production (`drill --durable`).
    #[serde(default)]
    pub durable: bool,
    /// Where scratch clusters go (`drill --scratch-dir`); TMPDIR when absent.
    pub scratch_dir: Option<PathBuf>,
}

/// `[repository]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// Repository URL.
    pub url: Option<String>,
    /// S3 endpoint (omit for AWS).
    pub endpoint: Option<String>,
    /// S3 region.
    pub region: Option<String>,
    /// Allow plain HTTP (test servers on loopback only).
    #[serde(default)]
    pub allow_http: bool,
    /// File holding the S3 access key id.
    pub access_key_id_file: Option<PathBuf>,
    /// File holding the S3 secret access key.
    pub secret_access_key_file: Option<PathBuf>,
    /// Bucket in the host name (`bucket.s3.example.com`) instead of the path.
    #[serde(default)]
    pub virtual_hosted_style: bool,
    /// Retries of a failed request before giving up (default 10).
    pub max_retries: Option<usize>,
    /// Multipart parts uploaded at once (default 4).
    pub part_concurrency: Option<usize>,
    /// A mirror's name, for `--repo mirror:NAME` (letters, digits, `-` and `_`).
    pub name: Option<String>,
    /// `[[repository.mirror]]`: other repositories every logical and files backup (but
    /// secrets sets and sets with their own repository) is also
    /// written to (same keys as `[repository]`, but not `mirror` or `min_targets`; nothing is
    /// taken from `[repository]` or the `ECOBACKUP_S3_*` variables).
    #[serde(default)]
    pub mirror: Vec<RepositoryConfig>,
    /// How many of the targets (this repository and its mirrors) must hold a backup for it to
    /// succeed; default: all of them.
    pub min_targets: Option<usize>,
}

/// `[encryption]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// Public recipients (`age1…`): enough to back up.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Identity files: needed to restore, verify and drill.
    #[serde(default)]
    pub identity_files: Vec<PathBuf>,
    /// File holding the passphrase of passphrase-protected identity files.
    pub passphrase_file: Option<PathBuf>,
    /// The backup hosts' signing key file (`key generate --signing`): signs every manifest.
    pub signing_key_file: Option<PathBuf>,
    /// Public signing keys (`ecosign1…`) whose manifests restore, verify and drill trust.
    #[serde(default)]
    pub trusted_signers: Vec<String>,
    /// Accept unsigned manifests and repositories (written before signing was set up), and
    /// back up without a signing key.
    #[serde(default)]
    pub allow_unsigned: bool,
}

/// `[[database]]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// The database's name in backups (artifact `<name>.dump…`, `restore --database NAME`).
    pub name: String,
    /// Connection URL or key/value string without a password (use PGPASSFILE or url_file).
    pub url: Option<String>,
    /// File holding the connection URL (when it must carry a password).
    pub url_file: Option<PathBuf>,
    /// A shell command whose standard output is the connection URL, run just before the dump
    /// (e.g. one that creates a Neon branch through its API).
    pub url_command: Option<String>,
    /// A shell command run after the backup whatever happened (e.g. deleting that branch); it
    /// gets `ECOBACKUP_BACKUP_OK` (1 or 0) and `ECOBACKUP_BACKUP_ID` in its environment.
    pub after_command: Option<String>,
    /// Only these schemas (`pg_dump --schema`).
    #[serde(default)]
    pub schemas: Vec<String>,
    /// Leave these schemas out (`pg_dump --exclude-schema`), e.g. Supabase's own.
    #[serde(default)]
    pub exclude_schemas: Vec<String>,
    /// Tables whose rows are not dumped (`pg_dump --exclude-table-data`).
    #[serde(default)]
    pub exclude_table_data: Vec<String>,
}

impl Config {
    /// Loads `path`, or the empty configuration when no file is given.
    pub fn load(path: Option<&Path>) -> Result<Config, CliError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::usage(format!(
                "cannot read the configuration file {}: {e}; check --config / ECOBACKUP_CONFIG",
                path.display()
            ))
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| {
            let detail = e.message().to_owned();
            CliError::usage(format!(
                "configuration file {} is invalid: {detail}",
                path.display()
            ))
        })?;
        config.check_no_inline_secrets(path)?;
        config.check_settings(path)?;
        config.check_files_sets(path)?;
        let mut config = config;
        config.anchor_paths(path.parent().unwrap_or(Path::new("")));
        config.check_schedules(path)?;
        Ok(config)
    }

    /// Makes the file's relative paths relative to its own directory, not to wherever
    /// ecobackup runs: a server runs `archive_command` and `restore_command` in its data
    /// directory, cron in a home directory.
    fn anchor_paths(&mut self, dir: &Path) {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
        let anchor = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        };
        let repository = &mut self.repository;
        let encryption = &mut self.encryption;
        for path in [
            &mut self.wal.spool_dir,
            &mut self.drill.checks,
            &mut self.drill.scratch_dir,
            &mut repository.access_key_id_file,
            &mut repository.secret_access_key_file,
            &mut encryption.passphrase_file,
            &mut encryption.signing_key_file,
        ]
        .into_iter()
        .flatten()
        {
            anchor(path);
        }
        for mirror in &mut repository.mirror {
            for path in [
                &mut mirror.access_key_id_file,
                &mut mirror.secret_access_key_file,
            ]
            .into_iter()
            .flatten()
            {
                anchor(path);
            }
        }
        encryption.identity_files.iter_mut().for_each(anchor);
        for db in &mut self.database {
            if let Some(path) = &mut db.url_file {
                anchor(path);
            }
        }
        for set in &mut self.files {
            set.paths.iter_mut().for_each(anchor);
        }
    }

    /// Refuses `[[schedule]]` entries that cannot run and anchors their paths
    /// (`daemon::schedule`).
    fn check_schedules(&mut self, path: &Path) -> Result<(), CliError> {
        use crate::daemon::schedule;
        let sets: Vec<&str> = self.files.iter().map(|set| set.name.as_str()).collect();
        schedule::validate(&self.schedule, &sets).map_err(|detail| {
            CliError::usage(format!(
                "configuration file {} is invalid: {detail}",
                path.display()
            ))
        })?;
        schedule::anchor_paths(&mut self.schedule, path.parent().unwrap_or(Path::new("")));
        Ok(())
    }

    /// The `[[files]]` entry `name`.
    pub fn files_set(&self, name: &str) -> Option<&FilesConfig> {
        self.files.iter().find(|set| set.name == name)
    }

    /// Refuses `[[files]]` entries that cannot run: a bad or repeated name, no paths, bad
    /// recipients, and a secrets set whose recipients are missing or shared with the database
    /// backups (domain isolation).
    fn check_files_sets(&self, path: &Path) -> Result<(), CliError> {
        let invalid = |detail: String| {
            CliError::usage(format!(
                "configuration file {} is invalid: {detail}",
                path.display()
            ))
        };
        for (i, set) in self.files.iter().enumerate() {
            ecobackup_core::files::roots::check_set_name(&set.name)
                .map_err(|e| invalid(e.to_string()))?;
            if self.files[..i].iter().any(|other| other.name == set.name) {
                return Err(invalid(format!(
                    "[[files]] {:?} is defined twice",
                    set.name
                )));
            }
            if set.paths.is_empty() {
                return Err(invalid(format!(
                    "[[files]] {:?} has no paths: add `paths = [\"/srv/app/uploads\"]`",
                    set.name
                )));
            }
            ecobackup_core::crypto::parse_recipients(&set.recipients)
                .map_err(|e| invalid(format!("[[files]] {:?}: {e}", set.name)))?;
            if set.secrets {
                ecobackup_core::files::secrets::check_secrets_recipients(
                    &set.name,
                    &set.recipients,
                    &self.encryption.recipients,
                )
                .map_err(|e| invalid(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Settings that parse but cannot work.
    fn check_settings(&self, path: &Path) -> Result<(), CliError> {
        let invalid = |detail: &str| {
            Err(CliError::usage(format!(
                "configuration file {}: [[repository.mirror]] {detail}",
                path.display()
            )))
        };
        if self.notify.timeout_seconds == Some(0) {
            return Err(CliError::usage(format!(
                "configuration file {}: [notify] timeout_seconds = 0 would fail every ping and webhook: give at least 1 (default 10)",
                path.display()
            )));
        }
        if self.repository.name.is_some() {
            return Err(CliError::usage(format!(
                "configuration file {}: [repository] name: only a [[repository.mirror]] has a name",
                path.display()
            )));
        }
        let mut names = Vec::new();
        for mirror in &self.repository.mirror {
            if mirror.url.is_none() {
                return invalid("needs a url");
            }
            if mirror.access_key_id_file.is_some() != mirror.secret_access_key_file.is_some() {
                return invalid("has only one of access_key_id_file and secret_access_key_file: give both (the other half would come from the environment, maybe another provider's)");
            }
            if let Some(name) = &mirror.name {
                let valid = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !valid || names.contains(name) {
                    return invalid(&format!(
                        "name {name:?} must be unique and made of letters, digits, - and _"
                    ));
                }
                names.push(name.clone());
            }
            if !mirror.mirror.is_empty() || mirror.min_targets.is_some() {
                return invalid(
                    "cannot have mirrors or min_targets of its own: set them in [repository]",
                );
            }
        }
        Ok(())
    }

    fn check_no_inline_secrets(&self, path: &Path) -> Result<(), CliError> {
        for db in &self.database {
            if let Some(url) = &db.url {
                // Parse errors never quote the string: it may hold a password.
                if let Err(e) = ecobackup_core::postgres::conninfo::parse(url) {
                    return Err(CliError::usage(format!(
                        "configuration file {}: database {:?} has a url that is not a connection string: {e}",
                        path.display(),
                        db.name
                    )));
                }
                if url_has_password(url) {
                    return Err(CliError::usage(format!(
                        "configuration file {}: database {:?} has a password inline in its url; \
                         move it to PGPASSFILE or put the whole url in a file named by url_file",
                        path.display(),
                        db.name
                    )));
                }
            }
        }
        Ok(())
    }
}

/// True when a connection string carries a password (`user:password@`, `?password=`,
/// `password=`).
fn url_has_password(url: &str) -> bool {
    ecobackup_core::postgres::conninfo::parse(url)
        .is_ok_and(|settings| settings.iter().any(|(k, _)| k == "password"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_notify_timeout_and_a_mirror_without_url_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ecobackup.toml");
        for (text, wanted) in [
            ("[notify]\ntimeout_seconds = 0\n", "timeout_seconds = 0"),
            ("[[repository.mirror]]\nregion = \"x\"\n", "needs a url"),
            (
                "[[repository.mirror]]\nurl = \"s3://b/p\"\nmin_targets = 1\n",
                "cannot have mirrors or min_targets",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let error = Config::load(Some(&path)).unwrap_err();
            assert!(error.message().contains(wanted), "{}", error.message());
        }
    }

    #[test]
    fn passwords_in_urls_are_spotted() {
        assert!(url_has_password("postgres://backup:s3cret@db/shop"));
        assert!(!url_has_password("postgres://backup@db/shop"));
        assert!(!url_has_password("postgres://db:5432/shop"));
        assert!(!url_has_password("postgresql:///shop?host=/run/postgresql"));
        assert!(url_has_password("postgres://backup@db/shop?password=x"));
        assert!(url_has_password("host=db password=x dbname=shop"));
        assert!(!url_has_password("host=db dbname=shop"));
    }

    #[test]
    fn the_design_example_parses() {
        let config: Config = toml::from_str(
            r#"
            [repository]
            url = "s3://acme-backups/prod"
            endpoint = "https://s3.eu-central-003.backblazeb2.com"
            region = "eu-central-003"
            allow_http = false

            [encryption]
            recipients = ["age1abc"]
            identity_files = ["/etc/ecobackup/restore.key"]

            [[database]]
            name = "shop"
            url = "postgres://backup@db.internal/ecommus_prod"
            "#,
        )
        .unwrap();
        assert_eq!(config.encryption.recipients, ["age1abc"]);
        assert_eq!(config.database[0].name, "shop");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<Config>("[encryption]\npassphrase = \"inline\"\n").unwrap_err();
        assert!(
            err.message().contains("unknown field `passphrase`"),
            "{err}"
        );
    }

    #[test]
    fn relative_paths_are_taken_from_the_file_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ecobackup.toml");
        std::fs::write(
            &path,
            "[encryption]\nidentity_files = [\"keys/restore.key\", \"/etc/abs.key\"]\n\
             signing_key_file = \"sign.key\"\n[repository]\nsecret_access_key_file = \"s3.secret\"\n\
             [wal]\nspool_dir = \"spool\"\n[[database]]\nname = \"shop\"\nurl_file = \"shop.url\"\n",
        )
        .unwrap();
        let config = Config::load(Some(&path)).unwrap();
        let dir = dir.path();
        assert_eq!(
            config.encryption.identity_files,
            [dir.join("keys/restore.key"), PathBuf::from("/etc/abs.key")]
        );
        assert_eq!(
            config.encryption.signing_key_file,
            Some(dir.join("sign.key"))
        );
        assert_eq!(
            config.repository.secret_access_key_file,
            Some(dir.join("s3.secret"))
        );
        assert_eq!(config.wal.spool_dir, Some(dir.join("spool")));
        assert_eq!(config.database[0].url_file, Some(dir.join("shop.url")));
    }

    #[test]
    fn the_readme_check_example_is_the_seeds_thresholds() {
        let readme = include_str!("../../README.md");
        let block = readme
            .split("```toml\n")
            .skip(1)
            .filter_map(|rest| rest.split("```").next())
            .find(|block| block.contains("[check]"))
            .expect("a [check] example in the README");
        let config: Config = toml::from_str(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
        assert_eq!(config.check, ecobackup_core::monitor::Thresholds::seeds());
        let bad = toml::from_str::<Config>("[check]\nmax_age = \"26 hours\"\n").unwrap_err();
        assert!(bad.message().contains("invalid duration"), "{bad}");
        let bad = toml::from_str::<Config>("[check]\nmax_size = \"1KB\"\n").unwrap_err();
        assert!(bad.message().contains("unknown field `max_size`"), "{bad}");
    }

    #[test]
    fn the_readme_notify_example_parses() {
        let readme = include_str!("../../README.md");
        let block = readme
            .split("```toml\n")
            .skip(1)
            .filter_map(|rest| rest.split("```").next())
            .find(|block| block.contains("[notify]"))
            .expect("a [notify] example in the README");
        let config: Config = toml::from_str(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
        let notify = config.notify;
        assert!(notify.ping_url.unwrap().starts_with("https://hc-ping.com/"));
        assert!(notify
            .webhook_url
            .unwrap()
            .starts_with("https://hooks.slack.com/"));
        assert!(!notify.webhook_on_success);
        assert_eq!(notify.timeout_seconds, Some(10));
        let bad = toml::from_str::<Config>(
            "[notify]
ping = \"x\"\n",
        )
        .unwrap_err();
        assert!(bad.message().contains("unknown field `ping`"), "{bad}");
    }

    #[test]
    fn the_readme_files_example_is_the_runbooks_table() {
        let readme = include_str!("../../README.md");
        let block = readme
            .split("```toml\n")
            .skip(1)
            .filter_map(|rest| rest.split("```").next())
            .find(|block| block.contains("[[files]]") && !block.contains("[repository]"))
            .expect("a [[files]] example in the README");
        let config: Config = toml::from_str(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
        let sets: Vec<(&str, bool, bool)> = config
            .files
            .iter()
            .map(|s| (s.name.as_str(), s.secrets, s.repository.is_some()))
            .collect();
        assert_eq!(
            sets,
            [
                ("uploads", false, false),
                ("keys", true, true),
                ("config", true, true)
            ]
        );
    }

    #[test]
    fn files_sets_are_checked_when_the_file_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ecobackup.toml");
        let database = ecobackup_core::crypto::generate_identity().1.to_string();
        let keys = ecobackup_core::crypto::generate_identity().1.to_string();
        let load = |sets: &str| {
            std::fs::write(
                &path,
                format!("[encryption]\nrecipients = [\"{database}\"]\n{sets}"),
            )
            .unwrap();
            Config::load(Some(&path)).map_err(|e| e.message().to_owned())
        };
        let config = load(&format!(
            "[[files]]\nname = \"keys\"\npaths = [\"keys\"]\nsecrets = true\nrecipients = [\"{keys}\"]\n"
        ))
        .unwrap();
        assert_eq!(config.files[0].paths, [dir.path().join("keys")], "anchored");
        let shared = load(&format!(
            "[[files]]\nname = \"keys\"\npaths = [\"k\"]\nsecrets = true\nrecipients = [\"{database}\"]\n"
        ))
        .unwrap_err();
        assert!(shared.contains("domain isolation"), "{shared}");
        let twice = load(
            "[[files]]\nname = \"a\"\npaths = [\"x\"]\n[[files]]\nname = \"a\"\npaths = [\"y\"]\n",
        )
        .unwrap_err();
        assert!(
            twice.contains("[[files]] \"a\" is defined twice"),
            "{twice}"
        );
        let empty = load("[[files]]\nname = \"a\"\npaths = []\n").unwrap_err();
        assert!(empty.contains("has no paths"), "{empty}");
        let bad_name = load("[[files]]\nname = \"a b\"\npaths = [\"x\"]\n").unwrap_err();
        assert!(bad_name.contains("cannot name a files set"), "{bad_name}");
    }

    #[test]
    fn the_readme_retention_examples_are_valid_policies() {
        let readme = include_str!("../../README.md");
        let blocks: Vec<&str> = readme
            .split("```toml\n")
            .skip(1)
            .filter_map(|rest| rest.split("```").next())
            .filter(|block| block.contains("[retention]"))
            .collect();
        assert!(blocks.len() >= 2, "the seeds' two policies");
        for block in blocks {
            let config: Config = toml::from_str(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
            config
                .retention
                .expect("a [retention] table")
                .validate()
                .unwrap_or_else(|e| panic!("{e}\n{block}"));
        }
    }
}
