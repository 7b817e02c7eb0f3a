//! `ecobackup.toml` as a typed value: the settings the CLI reads from its file, and what an
//! embedder builds in code (`Config::default()` and fields) or loads with [`Config::load`].
//!
//! Nothing here reads the environment unless asked: [`Config::from_env`] loads the file named
//! by `ECOBACKUP_CONFIG` and lays the `ECOBACKUP_*` variables over it, as the CLI does.
//! Secrets are never inline: only paths to files holding them.

mod env;
mod load;
pub mod schedule;
mod storage;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use serde::Deserialize;

pub use env::Environment;

/// The configuration file, as written by the user.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
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
    pub retention: Option<crate::retention::RetentionPolicy>,
    /// `[check]`: the thresholds `check` applies when no flag says otherwise.
    #[serde(default)]
    pub check: crate::monitor::Thresholds,
    /// `[notify]`: pings and webhooks of the long-running commands.
    #[serde(default)]
    pub notify: NotifyConfig,
    /// `[[files]]`: the files sets `backup files --name NAME` runs.
    #[serde(default)]
    pub files: Vec<FilesConfig>,
    /// `[[schedule]]`: the jobs `ecobackup daemon` runs.
    #[serde(default)]
    pub schedule: Vec<schedule::ScheduleConfig>,
}

/// `[[files]]`: a files set (uploads, keys, `.env`…).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
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
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
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
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WalConfig {
    /// Segments downloaded ahead of recovery (default 8; 0 disables).
    pub prefetch: Option<usize>,
    /// Where they wait (default: `ecobackup-spool/<name>` beside the data directory).
    pub spool_dir: Option<PathBuf>,
}

/// `[drill]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
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
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
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
    /// Whether the `AWS_*` variables (credentials, session token, region) may fill in what
    /// this section does not set. Never read from the file: [`Config::from_env`] and
    /// [`Config::apply_env`] turn it on, as the CLI does; a mirror with its own key files
    /// never reads them.
    #[serde(skip)]
    pub aws_environment: bool,
}

/// `[encryption]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
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
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
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
