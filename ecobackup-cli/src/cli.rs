//! The command tree of DESIGN.md's CLI contract.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Streaming, encrypted backups of PostgreSQL that provably restore.
#[derive(Debug, Parser)]
#[command(name = "ecobackup", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    /// Configuration file (ecobackup.toml).
    #[arg(long, global = true, env = "ECOBACKUP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Repository URL: file:///path, s3://bucket/prefix, memory:// (default ./ecobackup-repo).
    #[arg(long, global = true, env = "ECOBACKUP_REPO", value_name = "URL")]
    pub repo: Option<String>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// More detail on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 success · 1 the operation failed · 2 bad usage or configuration · check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN · wal-fetch: 1 only for a file not in the archive, 255 for every other failure";

const DAEMON_EXIT_CODES: &str = "Exit codes: 0 stopped by SIGTERM or SIGINT · 2 the config or a [[schedule]] entry is invalid (one line says which) · with --once NAME: the job's own exit status (check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN), 2 for a name that no entry has";

const CHECK_EXIT_CODES: &str = "Exit codes (Nagios/Icinga plugin convention): 0 OK · 1 WARNING · 2 CRITICAL · 3 UNKNOWN: the repository cannot be read, or a flag or the configuration is invalid (not 2, which means CRITICAL here)";

/// Every command of the contract.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the repository marker (ecobackup.json) at --repo.
    Init,
    /// Manage age keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Take a backup.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// List backups, oldest first (by when they finished).
    List(ListArgs),
    /// Show one backup's manifest.
    Show(ShowArgs),
    /// Restore a backup.
    #[command(subcommand)]
    Restore(RestoreCommand),
    /// archive_command: archive one WAL file (`archive_command = 'ecobackup wal-push %p'`).
    WalPush(WalPushArgs),
    /// restore_command: restore one WAL file (`restore_command = 'ecobackup wal-fetch %f %p'`).
    ///
    /// Exit 0: restored · 1: not in the archive (PostgreSQL then ends recovery or tries another
    /// timeline) · 255: any other failure (unreachable store, wrong key, tampered file, bad
    /// configuration), which stops recovery with a FATAL instead of ending it early.
    WalFetch(WalFetchArgs),
    /// Downloads the segments after one into the spool (started by wal-fetch in the background).
    #[command(hide = true)]
    WalPrefetch(WalPrefetchArgs),
    /// Read and authenticate every stored byte of backups and check both digests, without restoring.
    Verify(VerifyArgs),
    /// Restore into a scratch cluster, run checks, measure RTO and RPO, clean up, report.
    Drill(DrillArgs),
    /// Apply the retention policy ([retention]): delete the backups, WAL and debris it does not keep.
    Prune(PruneArgs),
    /// The repository's state: the last good backup of each kind and database (age, size,
    /// duration, count), the newest archived WAL per timeline, the last drill, the size.
    Status(StatusArgs),
    /// Monitoring check (Nagios/Icinga plugin): one line per finding, performance data after
    /// `|`; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    ///
    /// Thresholds default to [check] in the configuration; an absent one is not checked. Exit 3
    /// (UNKNOWN) for every failure of the check itself: unreadable repository, bad flag or
    /// configuration, no threshold at all.
    #[command(after_help = CHECK_EXIT_CODES)]
    Check(CheckArgs),
    /// Run the [[schedule]] entries of the config: each job at its cron times, never two runs
    /// of one entry at once; SIGHUP reloads the config, SIGTERM/SIGINT stop it.
    ///
    /// On SIGTERM or SIGINT the daemon starts no more jobs, lets the running ones finish within
    /// --grace seconds, then cancels them (uploads aborted, locks released) and exits 0. A
    /// second signal cancels at once. SIGHUP reloads the config; a config that does not load
    /// is refused with one log line and the old schedule goes on.
    #[command(after_help = DAEMON_EXIT_CODES)]
    Daemon(DaemonArgs),
    /// Throwaway cluster → encrypted backup → restore → every table compared → report.
    Demo(DemoArgs),
    /// Filter stdin to stdout: zstd-compress, then age-encrypt to the recipients (the artifact format).
    Encrypt(EncryptArgs),
    /// Filter stdin to stdout: age-decrypt with the identities, then zstd-decompress if compressed.
    Decrypt(DecryptArgs),
}

/// `key` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate an age identity; prints its recipient (public key).
    ///
    /// Without --out the identity is printed on stdout, like age-keygen. Give the recipient to
    /// the backup hosts; keep the identity with the restore side (password manager, sealed envelope).
    Generate(KeyGenerateArgs),
}

/// `backup` subcommands.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// pg_dump per database (+ globals) → zstd → age → repository, no temporary files.
    Logical(BackupLogicalArgs),
    /// pg_basebackup streamed → zstd → age → repository; the server must archive its WAL here
    /// (archive_command = 'ecobackup … wal-push %p').
    Physical(BackupPhysicalArgs),
    /// Directories and files (uploads, keys, .env) → tar → zstd → age → repository.
    ///
    /// Left out by default: directories named node_modules, dist, .next or .astro (rebuilt
    /// from git and npm ci) and PostgreSQL data directories (a directory holding PG_VERSION, global/pg_control and base/:
    /// back databases up with `backup logical` or `backup physical`); --no-default-excludes
    /// keeps them. Sockets, FIFOs and devices are skipped with a warning. A file that changes
    /// while it is read is stored as read, with a warning naming it (the backup succeeds).
    Files(BackupFilesArgs),
}

/// `restore` subcommands.
#[derive(Debug, Subcommand)]
pub enum RestoreCommand {
    /// Stream a logical backup from the repository into pg_restore.
    Logical(RestoreLogicalArgs),
    /// Restore a base backup into a data directory, to a point in time by replaying archived WAL.
    Physical(RestorePhysicalArgs),
    /// Restore a files backup into a directory: every entry is checked (no absolute path, no
    /// `..`, nothing through a symbolic link) and unpacked into a staging directory first;
    /// nothing lands in DIR unless the whole backup authenticated, and nothing existing is
    /// replaced without --overwrite.
    Files(RestoreFilesArgs),
}

/// `backup logical`.
#[derive(Debug, Args)]
pub struct BackupLogicalArgs {
    /// A database to dump: a URL (postgresql://user@host:5432/db?sslmode=verify-full) or a
    /// libpq key/value string (host=db dbname=shop user=backup), completed from PGHOST,
    /// PGUSER, PGSSLMODE… as libpq would; no password here (use PGPASSFILE, ~/.pgpass or
    /// PGPASSWORD). Repeat for several. Default: the [[database]] entries of the config.
    #[arg(long = "db", value_name = "URL")]
    pub databases: Vec<String>,
    /// Also dump the roles and tablespaces (pg_dumpall --globals-only; without role passwords
    /// when the role is not a superuser).
    #[arg(long)]
    pub globals: bool,
    /// Dump only schemas matching PATTERN (pg_dump --schema); repeat for several.
    #[arg(long = "schema", value_name = "PATTERN")]
    pub schemas: Vec<String>,
    /// Leave out schemas matching PATTERN (pg_dump --exclude-schema), e.g. a managed service's
    /// own (Supabase: auth, storage, realtime…); repeat for several.
    #[arg(long = "exclude-schema", value_name = "PATTERN")]
    pub exclude_schemas: Vec<String>,
    /// Dump the definition but not the rows of tables matching PATTERN
    /// (pg_dump --exclude-table-data); repeat for several.
    #[arg(long = "exclude-table-data", value_name = "PATTERN")]
    pub exclude_table_data: Vec<String>,
    /// A label for the manifest, e.g. --tag reason=pre-migration; repeat for several.
    #[arg(long = "tag", value_name = "K=V")]
    pub tags: Vec<String>,
    #[command(flatten)]
    pub recipients: RecipientArgs,
    /// Store the backup unencrypted (refused without this flag when no recipient is configured).
    /// Everything is then plaintext in the repository: the dumps, and the catalog
    /// (catalog.json: every table's name and row count), which is otherwise encrypted.
    #[arg(long)]
    pub no_encryption: bool,
    #[command(flatten)]
    pub signing: SigningArgs,
    #[command(flatten)]
    pub targets: TargetArgs,
    /// zstd level (1–19).
    #[arg(long, default_value_t = ecobackup_core::transform::DEFAULT_LEVEL, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
    /// Directory holding pg_dump of the server's major version.
    #[arg(long, value_name = "DIR", env = "ECOBACKUP_PG_BIN")]
    pub pg_bin: Option<PathBuf>,
    #[command(flatten)]
    pub job: JobArgs,
}

/// `backup files`.
#[derive(Debug, Args)]
pub struct BackupFilesArgs {
    /// A directory or file to back up, stored under its last component (/srv/app/uploads →
    /// uploads/…); repeat for several. Without --name the set is named after them
    /// (uploads, .env+Caddyfile).
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// The set: a [[files]] entry of the configuration (its paths, excludes, recipients and
    /// repository), or the name of an ad-hoc --path set.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Leave out entries whose path below its root, or whose name, matches GLOB ('*.tmp',
    /// 'cache/' for directories only, 'logs/**/*.gz'); repeat for several.
    #[arg(long = "exclude", value_name = "GLOB")]
    pub excludes: Vec<String>,
    /// Also back up what is left out by default: directories named node_modules, dist, .next
    /// or .astro, and PostgreSQL data directories (a directory holding PG_VERSION, global/pg_control and base/).
    #[arg(long)]
    pub no_default_excludes: bool,
    /// Store nothing when nothing changed since the set's latest backup (same paths, names,
    /// modes, times to the nanosecond and contents): for cron jobs that run often. Reads
    /// the tree twice when it changed.
    #[arg(long)]
    pub if_changed: bool,
    /// A label for the manifest, e.g. --tag reason=rotation; repeat for several.
    #[arg(long = "tag", value_name = "K=V")]
    pub tags: Vec<String>,
    #[command(flatten)]
    pub recipients: RecipientArgs,
    /// Store the backup unencrypted (refused without this flag when no recipient is configured,
    /// and for a secrets set).
    #[arg(long)]
    pub no_encryption: bool,
    #[command(flatten)]
    pub signing: SigningArgs,
    #[command(flatten)]
    pub targets: TargetArgs,
    /// zstd level (1–19).
    #[arg(long, default_value_t = ecobackup_core::transform::DEFAULT_LEVEL, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
    #[command(flatten)]
    pub job: JobArgs,
}

/// `restore files`.
#[derive(Debug, Args)]
pub struct RestoreFilesArgs {
    /// A backup id, or `latest` (with --name: the set's latest).
    #[arg(value_name = "ID|latest")]
    pub id: String,
    /// The directory to restore into (created when missing); each root lands under its name
    /// (DIR/uploads/…).
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// The set: `latest` means its latest backup, read from its [[files]] repository when it
    /// has one.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Restore only entries whose archive path (uploads/2026/a.jpg), an ancestor's, or whose
    /// name matches GLOB ('uploads/2026', '*.pem'); repeat for several.
    #[arg(long = "include", value_name = "GLOB")]
    pub includes: Vec<String>,
    /// Replace existing files and links in DIR (directories are merged, never replaced).
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub identities: IdentityArgs,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// `wal-push`.
#[derive(Debug, Args)]
pub struct WalPushArgs {
    /// The file to archive: %p (relative to the data directory, where PostgreSQL runs the command).
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    #[command(flatten)]
    pub recipients: RecipientArgs,
    /// Archive unencrypted (`.zst` objects; refused without this flag when no recipient is configured).
    #[arg(long)]
    pub no_encryption: bool,
    #[command(flatten)]
    pub signing: SigningArgs,
    /// zstd level (1–19). 1 by default for WAL: on real segments it stores about what level 3
    /// does (measured: 77.7 MB against 77.9 MB for 16 segments) in 30% less time, and
    /// archive_command runs once per segment.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
}

/// `wal-fetch`.
#[derive(Debug, Args)]
pub struct WalFetchArgs {
    /// The file's name in the archive: %f.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Where PostgreSQL wants it: %p (relative to the data directory).
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
    #[command(flatten)]
    pub identities: IdentityArgs,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Segments to download ahead in the background (0: none; default [wal] prefetch, else 8).
    #[arg(long, value_name = "N", env = "ECOBACKUP_WAL_PREFETCH")]
    pub prefetch: Option<usize>,
    /// Where prefetched segments wait (default [wal] spool_dir, else `ecobackup-spool/<name>`
    /// beside the data directory `<name>`). Never inside the data directory.
    #[arg(long, value_name = "DIR", env = "ECOBACKUP_WAL_SPOOL_DIR")]
    pub spool_dir: Option<PathBuf>,
}

/// `wal-prefetch` (internal).
#[derive(Debug, Args)]
pub struct WalPrefetchArgs {
    /// The segment whose followers are downloaded.
    pub after: String,
    /// The segment size.
    #[arg(long)]
    pub segment_size: u64,
    /// How many.
    #[arg(long)]
    pub count: usize,
    /// The spool's root.
    #[arg(long)]
    pub spool_dir: PathBuf,
    #[command(flatten)]
    pub identities: IdentityArgs,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// `backup physical`.
#[derive(Debug, Args)]
pub struct BackupPhysicalArgs {
    /// The server, as a role with the REPLICATION attribute: a URL or key/value string as for
    /// `backup logical` (no password here). Default: the first [[database]] of the config.
    #[arg(long = "db", value_name = "URL")]
    pub database: Option<String>,
    /// A label for the manifest, e.g. --tag reason=pre-upgrade; repeat for several.
    #[arg(long = "tag", value_name = "K=V")]
    pub tags: Vec<String>,
    /// Back up a server that does not archive its WAL to this repository: the WAL up to the
    /// backup's end goes into the base artifact, and the backup restores to its end only (no
    /// point-in-time recovery).
    #[arg(long)]
    pub allow_no_archive: bool,
    /// How long the server may take to archive the backup's last WAL segment, in seconds;
    /// past it the backup fails and is not recorded.
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub archive_timeout: u64,
    #[command(flatten)]
    pub recipients: RecipientArgs,
    /// Store the backup unencrypted (refused without this flag when no recipient is configured).
    #[arg(long)]
    pub no_encryption: bool,
    #[command(flatten)]
    pub signing: SigningArgs,
    /// zstd level (1–19).
    #[arg(long, default_value_t = ecobackup_core::transform::DEFAULT_LEVEL, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
    /// Directory holding pg_basebackup of the server's major version.
    #[arg(long, value_name = "DIR", env = "ECOBACKUP_PG_BIN")]
    pub pg_bin: Option<PathBuf>,
    #[command(flatten)]
    pub job: JobArgs,
}

/// Where recovery of a physical backup stops: at most one of these.
#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct RecoveryTargetArgs {
    /// Recover up to this time, as `select now()` prints it: '2026-11-23 08:55:01.123456+00'.
    #[arg(long, value_name = "TIME")]
    pub target_time: Option<String>,
    /// Recover up to this LSN (16/B374D848).
    #[arg(long, value_name = "LSN")]
    pub target_lsn: Option<String>,
    /// Recover up to the restore point made with pg_create_restore_point(NAME).
    #[arg(long, value_name = "NAME")]
    pub target_name: Option<String>,
    /// Recover up to and including this transaction's commit.
    #[arg(long, value_name = "XID")]
    pub target_xid: Option<u64>,
    /// Stop as soon as the backup is consistent (its own end).
    #[arg(long)]
    pub target_immediate: bool,
}

/// `restore physical`.
#[derive(Debug, Args)]
pub struct RestorePhysicalArgs {
    /// A backup id, or `latest`. Default: with --target-time, the newest physical backup that
    /// ended before it; otherwise the newest.
    #[arg(value_name = "ID|latest")]
    pub id: Option<String>,
    /// The data directory to restore into: missing or empty (see --force).
    #[arg(long, value_name = "DIR")]
    pub pgdata: PathBuf,
    /// Delete the contents of a non-empty --pgdata first (never one with a postmaster.pid).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub target: RecoveryTargetArgs,
    /// What the server does at the target: promote, pause or shutdown.
    #[arg(long, value_name = "ACTION", default_value = "promote")]
    pub target_action: ecobackup_core::physical::TargetAction,
    /// Which timeline to follow: latest, current or a number.
    #[arg(long, value_name = "TIMELINE", default_value = "latest")]
    pub target_timeline: ecobackup_core::physical::TargetTimeline,
    /// Keep the backup's archive_mode: the restored server then archives its new timeline into
    /// the repository its archive_command names (by default archive_mode is set off, so that a
    /// restored copy never pushes WAL into the production archive).
    #[arg(long)]
    pub keep_archiving: bool,
    /// A setting for the restored server's postgresql.auto.conf, e.g. --set port=5433;
    /// repeat for several.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub settings: Vec<String>,
    /// Start the server (pg_ctl) and wait until recovery reaches the target; report where.
    #[arg(long)]
    pub start: bool,
    /// How long --start waits for recovery, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub start_timeout: u64,
    #[command(flatten)]
    pub identities: IdentityArgs,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Directory holding pg_verifybackup and pg_ctl of the backup's major version.
    #[arg(long, value_name = "DIR", env = "ECOBACKUP_PG_BIN")]
    pub pg_bin: Option<PathBuf>,
}

/// `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A backup id, or `latest` (the default).
    #[arg(value_name = "ID|latest", conflicts_with = "all")]
    pub id: Option<String>,
    /// Every backup in the repository.
    #[arg(long)]
    pub all: bool,
    /// Check the WAL archive: every file downloaded, authenticated and checked, gaps and timeline
    /// forks reported, and each physical backup's WAL from its start on. Alone, only the WAL;
    /// with an ID or --all, the backups too.
    #[arg(long)]
    pub wal: bool,
    #[command(flatten)]
    pub identities: IdentityArgs,
    #[command(flatten)]
    pub trust: TrustArgs,
    #[command(flatten)]
    pub job: JobArgs,
}

/// `drill`.
#[derive(Debug, Args)]
pub struct DrillArgs {
    /// A backup id, or `latest` (the default).
    #[arg(value_name = "ID|latest", default_value = "latest")]
    pub id: String,
    /// The checks (TOML: [[table]], [[sql]], [command]); default [drill] checks in the config.
    #[arg(long, value_name = "FILE")]
    pub checks: Option<PathBuf>,
    /// Also write the report as JSON to FILE (for the audit trail).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Restore into new databases on this server (dropped afterwards) instead of a scratch cluster.
    #[arg(long, value_name = "URL")]
    pub target_db: Option<String>,
    /// Run the scratch cluster with fsync, synchronous_commit and full_page_writes on, like a
    /// production server, so the RTO is one a runbook may quote (default: [drill] durable).
    #[arg(long)]
    pub durable: bool,
    /// The kind of backup `latest` means: logical or physical (default: the newest of any
    /// kind; physical with a --target-* option).
    #[arg(long, value_name = "KIND")]
    pub kind: Option<ecobackup_core::repository::BackupKind>,
    /// For a physical backup: recover to this point and promote there (default: the backup's
    /// own end, as --target-immediate).
    #[command(flatten)]
    pub target: RecoveryTargetArgs,
    /// For a physical backup: how long the WAL replay may take, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub replay_timeout: u64,
    /// For a physical backup: a setting for the copy's postgresql.auto.conf, after the drill's
    /// own (e.g. --set shared_preload_libraries=timescaledb); repeat for several.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub settings: Vec<String>,
    /// Where the scratch cluster goes (default: [drill] scratch_dir, else TMPDIR). A physical
    /// copy is as large as the cluster: pick a filesystem with room, not a tmpfs.
    #[arg(long, value_name = "DIR")]
    pub scratch_dir: Option<PathBuf>,
    /// Ping URL/start when the drill begins, URL when it passes, URL/fail when it fails
    /// (healthchecks.io style; default: [drill] ping_url, else [notify] ping_url).
    #[arg(long, value_name = "URL", env = "ECOBACKUP_DRILL_PING")]
    pub ping: Option<String>,
    #[command(flatten)]
    pub identities: IdentityArgs,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Directory holding the PostgreSQL server and client programs.
    #[arg(long, value_name = "DIR", env = "ECOBACKUP_PG_BIN")]
    pub pg_bin: Option<PathBuf>,
    #[command(flatten)]
    pub job: JobArgs,
}

/// `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the repository and the demo key go.
    #[arg(long, value_name = "DIR", default_value = "ecobackup-demo")]
    pub dir: PathBuf,
    /// Size of the demo shop: 1 is about 16 MB, 50 about 400 MB.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub scale: u32,
    /// Directory holding initdb, pg_ctl, pg_dump and pg_restore (default: the newest installed).
    #[arg(long, value_name = "DIR", env = "ECOBACKUP_PG_BIN")]
    pub pg_bin: Option<PathBuf>,
}

/// `restore logical`.
#[derive(Debug, Args)]
pub struct RestoreLogicalArgs {
    /// A backup id, or `latest`.
    #[arg(value_name = "ID|latest")]
    pub id: String,
    /// The target database (postgres://user@host:5432/db, no password: use PGPASSFILE or PGPASSWORD).
    #[arg(long = "db", value_name = "URL")]
    pub target: String,
    /// Which database of the backup to restore (needed when it holds several).
    #[arg(long, value_name = "NAME")]
    pub database: Option<String>,
    /// Create the target database (it must not exist yet).
    #[arg(long)]
    pub create: bool,
    /// Drop the dump's objects in the target before recreating them.
    #[arg(long)]
    pub clean: bool,
    /// Parallel pg_restore jobs; above 1 the dump is downloaded to a temporary file first,
    /// and the restore is no longer a single transaction.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: u32,
    /// Terminate other sessions on the target database (otherwise the restore refuses).
    #[arg(long)]
    pub terminate_connections: bool,
    #[command(flatten)]
    pub identities: IdentityArgs,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Directory holding pg_restore of the target server's major version.
    #[arg(long, value_name = "DIR", env = "ECOBACKUP_PG_BIN")]
    pub pg_bin: Option<PathBuf>,
}

/// `prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Print the plan (every backup, kept or deleted, and why) and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Delete even when the plan deletes more than half of the backups (without it, prune
    /// plans such a deletion and exits 1).
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub trust: TrustArgs,
    #[command(flatten)]
    pub job: JobArgs,
}

/// `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Also write the state as Prometheus metrics to FILE (a node-exporter textfile: written
    /// to a temporary file, then renamed; mode 0644).
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,
    /// Read the WAL archive lag from this server's pg_stat_archiver (URL or key/value string,
    /// no password here) instead of the newest archived segment's age.
    #[arg(long = "db", value_name = "URL")]
    pub database: Option<String>,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// WARNING when the newest good backup of a kind and database finished longer ago (26h).
    #[arg(long, value_name = "D")]
    pub max_age: Option<ecobackup_core::monitor::Span>,
    /// CRITICAL when the newest good backup of a kind and database stores less (1KB; KB = 1000
    /// bytes, KiB = 1024).
    #[arg(long, value_name = "S")]
    pub min_size: Option<ecobackup_core::monitor::ByteSize>,
    /// WARNING when the newest good backup of a kind and database took longer (1h).
    #[arg(long, value_name = "D")]
    pub max_duration: Option<ecobackup_core::monitor::Span>,
    /// WARNING when the last drill that passed started longer ago, or none is stored (35d).
    #[arg(long, value_name = "D")]
    pub max_drill_age: Option<ecobackup_core::monitor::Span>,
    /// WARNING when completed WAL has waited longer to be archived (10m). Without --db, the
    /// age of the newest archived segment, which an idle server also ages.
    #[arg(long, value_name = "D")]
    pub max_wal_lag: Option<ecobackup_core::monitor::Span>,
    /// Measure the WAL lag on this server (pg_stat_archiver; any role can read it): an idle
    /// database then raises no alarm.
    #[arg(long = "db", value_name = "URL")]
    pub database: Option<String>,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// `daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Run the [[schedule]] entry NAME now, once, without jitter, and exit with its status (for
    /// cron, systemd timers and Kubernetes CronJobs).
    #[arg(long, value_name = "NAME")]
    pub once: Option<String>,
    /// The job lines (one when a job starts, one when it ends) and every other log line: text,
    /// or one JSON object a line.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// How long running jobs may take to finish after SIGTERM or SIGINT, in seconds, before
    /// they are cancelled.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub grace: u64,
}

/// How the daemon writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text each.
    Text,
    /// One JSON object a line: timestamp, level, message and the fields.
    Json,
}

/// `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only backups of this kind: logical, physical or files.
    #[arg(long, value_name = "K")]
    pub kind: Option<ecobackup_core::repository::BackupKind>,
}

/// `show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A backup id, or `latest`.
    #[arg(value_name = "ID|latest")]
    pub id: String,
}

/// `key generate`.
#[derive(Debug, Args)]
pub struct KeyGenerateArgs {
    /// Write the key to FILE (mode 0600, through a temporary file; never over an existing file
    /// unless --force).
    #[arg(short, long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Protect the identity file with the passphrase held in FILE (age's scrypt, as `age -p`).
    #[arg(
        long,
        value_name = "FILE",
        requires = "out",
        conflicts_with = "signing"
    )]
    pub passphrase_file: Option<PathBuf>,
    /// Generate a signing key for the backup hosts instead of an age identity; prints its
    /// public key (ecosign1…) for the restore side's trusted_signers.
    #[arg(long, requires = "out")]
    pub signing: bool,
    /// Replace an existing FILE.
    #[arg(long, requires = "out")]
    pub force: bool,
}

/// What the long-running commands (`backup`, `prune`, `verify`, `drill`) leave for monitoring
/// besides their `[notify]` pings and webhooks.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// After the job, whatever its result, write the repository's state as Prometheus metrics
    /// to FILE, as `status --prometheus` does (a node-exporter textfile, written to a temporary
    /// file, then renamed). A failure to write it is a warning.
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,
}

/// Where a logical or files backup goes besides the repository.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// Also write the backup to the repository at URL, streaming once (e.g. B2 and S3 at
    /// once); repeat for several. A URL that a [[repository.mirror]] names uses that entry's
    /// settings, any other the [repository] ones. The configured mirrors are always written.
    #[arg(long = "mirror", value_name = "URL")]
    pub mirrors: Vec<String>,
    /// Succeed when N of the targets (the repository and its mirrors) hold the backup; the
    /// targets that failed are reported, and the manifest names those that hold it. Default:
    /// [repository] min_targets, else all of them.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub min_targets: Option<u16>,
}

/// Signing settings of the commands that write backups.
#[derive(Debug, Args)]
pub struct SigningArgs {
    /// Sign the manifest with the signing key in FILE (mode 0600; `key generate --signing`).
    #[arg(long, value_name = "FILE", env = "ECOBACKUP_SIGNING_KEY_FILE")]
    pub signing_key: Option<PathBuf>,
    /// Write an unsigned backup (refused without this flag, or [encryption] allow_unsigned,
    /// when no signing key is configured). Restore sides that pin trusted signers refuse it.
    #[arg(long, conflicts_with = "signing_key")]
    pub no_signing: bool,
}

/// Which manifests the commands that read backups trust.
#[derive(Debug, Clone, Default, Args)]
pub struct TrustArgs {
    /// Trust manifests signed by this public signing key (ecosign1…); repeat for several.
    /// Overrides [encryption] trusted_signers.
    #[arg(
        long = "trusted-signer",
        value_name = "ECOSIGN1…",
        env = "ECOBACKUP_TRUSTED_SIGNERS",
        value_delimiter = ','
    )]
    pub trusted_signers: Vec<String>,
    /// Accept unsigned manifests and an unsigned repository (one written without a signing
    /// key). Anyone who can write to the repository can then plant a backup.
    #[arg(long)]
    pub allow_unsigned: bool,
}

/// Encryption settings shared by the commands that write artifacts.
#[derive(Debug, Args)]
pub struct RecipientArgs {
    /// Encrypt to this age recipient (age1…); repeat for several. Overrides ECOBACKUP_RECIPIENTS.
    #[arg(
        short,
        long = "recipient",
        value_name = "AGE1…",
        env = "ECOBACKUP_RECIPIENTS",
        value_delimiter = ','
    )]
    pub recipients: Vec<String>,
}

/// Decryption settings shared by the commands that read artifacts.
#[derive(Debug, Args)]
pub struct IdentityArgs {
    /// Decrypt with the identities in FILE (mode 0600); repeat for several.
    #[arg(
        short,
        long = "identity",
        value_name = "FILE",
        env = "ECOBACKUP_IDENTITY_FILE",
        value_delimiter = ','
    )]
    pub identities: Vec<PathBuf>,
    /// File holding the passphrase of a passphrase-protected identity file.
    #[arg(long, value_name = "FILE", env = "ECOBACKUP_IDENTITY_PASSPHRASE_FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// `encrypt`.
#[derive(Debug, Args)]
pub struct EncryptArgs {
    #[command(flatten)]
    pub recipients: RecipientArgs,
    /// Skip zstd: encrypt the input as is (for input that is already compressed).
    #[arg(long)]
    pub no_compress: bool,
    /// zstd level (1–19).
    #[arg(long, default_value_t = ecobackup_core::transform::DEFAULT_LEVEL, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
    /// Write to FILE atomically instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Read FILE instead of stdin.
    #[arg(value_name = "INPUT")]
    pub input: Option<PathBuf>,
}

/// `decrypt`.
#[derive(Debug, Args)]
pub struct DecryptArgs {
    #[command(flatten)]
    pub identities: IdentityArgs,
    /// Do not decompress: output the decrypted bytes as stored.
    #[arg(long)]
    pub raw: bool,
    /// Write to FILE atomically (only after the whole input authenticated) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Read FILE instead of stdin.
    #[arg(value_name = "INPUT")]
    pub input: Option<PathBuf>,
}
