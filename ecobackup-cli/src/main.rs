//! `ecobackup`: the command-line face of ecobackup-core. It parses flags, loads the
//! configuration, calls the library and prints; it holds no backup logic of its own.

mod cancel;
mod cli;
mod commands;
mod daemon;
mod notify;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use cli::{Cli, Command};
use ecobackup_core::config::{Config, Environment};

/// A failure, printed as one line; `usage` failures exit 2, the others 1, unless a command
/// sets its own status (wal-fetch).
#[derive(Debug)]
pub struct CliError {
    message: String,
    usage: bool,
    code: Option<u8>,
    /// The command printed its own result: `message` only summarises it for the
    /// notifications and the daemon's log, and `main` prints nothing more.
    printed: bool,
}

/// wal-fetch's status for every failure but "not archived": above 125, so that PostgreSQL stops
/// recovery with a FATAL instead of taking the failure for the end of the archive.
pub const WAL_FETCH_FATAL: u8 = 255;

/// check's status for every failure of the check itself (UNKNOWN, by the Nagios plugin
/// convention): 2 would read as CRITICAL.
pub const CHECK_UNKNOWN: u8 = 3;

impl CliError {
    /// Bad usage or configuration (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            usage: true,
            code: None,
            printed: false,
        }
    }

    /// A step that failed at run time (exit 1).
    pub fn failure(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            usage: false,
            code: None,
            printed: false,
        }
    }

    /// wal-fetch's "the file is not in the archive": exit 1, the only failure PostgreSQL may
    /// take for the end of the archive.
    pub fn not_archived(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            usage: false,
            code: Some(1),
            printed: false,
        }
    }

    /// Any other failure of wal-fetch: exit [`WAL_FETCH_FATAL`].
    fn fatal(self) -> Self {
        self.or_code(WAL_FETCH_FATAL)
    }

    /// This failure with exit status `code`, unless the command chose its own.
    fn or_code(self, code: u8) -> Self {
        CliError {
            code: Some(self.code.unwrap_or(code)),
            ..self
        }
    }

    /// Exit with `code` and print nothing more: the command printed its own result (`check`'s
    /// WARNING and CRITICAL), which `summary` says in one line for the notifications and the
    /// daemon's log.
    pub fn exit_status(code: u8, summary: impl Into<String>) -> Self {
        CliError {
            message: summary.into(),
            usage: false,
            code: Some(code),
            printed: true,
        }
    }

    /// The one line printed (or, for [`CliError::exit_status`], the summary of what the
    /// command printed).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The process's exit status for this failure.
    pub fn exit_code(&self) -> u8 {
        self.code.unwrap_or(if self.usage { 2 } else { 1 })
    }
}

impl From<ecobackup_core::Error> for CliError {
    fn from(e: ecobackup_core::Error) -> Self {
        use ecobackup_core::Error as E;
        let usage = matches!(
            e,
            E::NoRecipients
                | E::InvalidUrl { .. }
                | E::NotARepository { .. }
                | E::NoIdentities
                | E::InvalidRecipient { .. }
                | E::InsecureKeyFile { .. }
                | E::InvalidKeyFile { .. }
                | E::PassphraseRequired { .. }
                | E::WrongPassphrase { .. }
                | E::AlreadyExists { .. }
                | E::BinaryNotFound { .. }
                | E::Config { .. }
                | E::ConfigFile { .. }
        );
        CliError {
            message: e.to_string(),
            usage,
            code: None,
            printed: false,
        }
    }
}

/// What every command gets: the parsed global flags and the configuration file.
pub struct Context {
    /// `--json`.
    pub json: bool,
    /// `-q`.
    pub quiet: bool,
    /// `--repo` / `ECOBACKUP_REPO`.
    pub repo: Option<String>,
    /// The loaded configuration (shared: the daemon's jobs read the one loaded when they
    /// started, whatever a reload brings meanwhile).
    pub config: Arc<Config>,
    /// Where it was loaded from (`--config` / `ECOBACKUP_CONFIG`).
    pub config_path: Option<std::path::PathBuf>,
    /// Cancelled when the command should stop: SIGINT or SIGTERM for a plain command, the
    /// daemon's shutdown for its jobs. Long operations take it and stop cleanly (uploads
    /// aborted, locks released); see [`cancel`].
    pub cancel: CancellationToken,
    /// The `[[schedule]]` entry this command runs as, when the daemon runs it.
    pub schedule: Option<ScheduledAs>,
    /// The backup the command made or checked, once known (for the `[notify]` webhook).
    backup_id: std::sync::OnceLock<String>,
    /// What went wrong in a job that still succeeded (a backup target that failed), for the
    /// `[notify]` ping and webhook.
    warnings: std::sync::Mutex<Vec<String>>,
}

/// What a `[[schedule]]` entry adds to the command it runs.
#[derive(Debug, Clone, Default)]
pub struct ScheduledAs {
    /// The entry's name.
    pub name: String,
    /// The entry's own healthchecks URL, over `[drill]` and `[notify]` `ping_url`.
    pub ping_url: Option<String>,
}

impl Context {
    /// The context of one command: `--json`, `-q`, `--repo`, the configuration and where it
    /// came from, and the token that stops it.
    pub fn new(
        json: bool,
        quiet: bool,
        repo: Option<String>,
        config: Arc<Config>,
        config_path: Option<std::path::PathBuf>,
        cancel: CancellationToken,
    ) -> Context {
        Context {
            json,
            quiet,
            repo,
            config,
            config_path,
            cancel,
            schedule: None,
            backup_id: std::sync::OnceLock::new(),
            warnings: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Records the backup the command made or checked, for the notifications (the first one
    /// recorded stays).
    pub fn set_backup_id(&self, id: &str) {
        let _ = self.backup_id.set(id.to_owned());
    }

    /// The backup recorded by [`Context::set_backup_id`].
    pub fn backup_id(&self) -> Option<String> {
        self.backup_id.get().cloned()
    }

    /// Prints `line` on stderr as a warning and keeps it for the notifications: the job
    /// succeeded, but someone should look.
    pub fn warn(&self, line: String) {
        eprintln!("warning: {line}");
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }

    /// The warnings given with [`Context::warn`].
    pub fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn main() -> ExitCode {
    // The library's messages name config keys and methods; ours name flags.
    ecobackup_core::error::set_wording(ecobackup_core::error::Wording::Cli);
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A restore_command with a bad flag must stop recovery, not end it (clap exits 2).
        Err(e) if is_wal_fetch() && e.use_stderr() => {
            let line = e.to_string();
            let line = line.lines().next().unwrap_or("invalid arguments");
            eprintln!("{} (wal-fetch)", line.trim());
            return ExitCode::from(WAL_FETCH_FATAL);
        }
        // A monitoring system reads 2 as CRITICAL: check's bad flags are UNKNOWN.
        Err(e) if subcommand().as_deref() == Some("check") && e.use_stderr() => {
            let line = e.to_string();
            let line = line.lines().next().unwrap_or("invalid arguments");
            println!(
                "ECOBACKUP UNKNOWN - {}",
                line.trim().trim_start_matches("error: ")
            );
            return ExitCode::from(CHECK_UNKNOWN);
        }
        Err(e) => e.exit(),
    };
    if matches!(cli.command, Command::WalFetch(_)) {
        // A panic exits 101, which PostgreSQL would take for "not archived".
        std::panic::set_hook(Box::new(|info| {
            eprintln!(
                "error: wal-fetch failed: {}",
                info.to_string().replace('\n', " ")
            );
            std::process::exit(i32::from(WAL_FETCH_FATAL));
        }));
    }
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let error = CliError::from(ecobackup_core::Error::io("starting the runtime", e));
            return fail(&match is_wal_fetch() {
                true => error.fatal(),
                false => error,
            });
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &CliError) -> ExitCode {
    if !e.message.is_empty() && !e.printed {
        let line = e.message.replace('\n', " ");
        eprintln!("error: {line}");
    }
    ExitCode::from(e.exit_code())
}

/// The subcommand named by the arguments, read before they could be parsed: the first word
/// that is neither a flag nor the value of a global flag that takes one.
fn subcommand() -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--config" || arg == "--repo" {
            args.next();
        } else if !arg.starts_with('-') {
            return Some(arg);
        }
    }
    None
}

/// Whether the arguments name the wal-fetch command (read before they could be parsed).
fn is_wal_fetch() -> bool {
    std::env::args().skip(1).any(|a| a == "wal-fetch")
}

/// Logs on stderr: warnings and errors by default, more with `-v`, errors only with `-q`,
/// `ECOBACKUP_LOG` (a tracing filter) over all of it. The daemon also shows its job lines
/// (`info`), as text or as one JSON object a line (`--log-format json`).
fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let format = match &cli.command {
        Command::Daemon(args) => {
            let directives = match (cli.quiet, cli.verbose) {
                (false, 0) => format!("{level},{}=info", daemon::LOG_TARGET),
                _ => level.to_owned(),
            };
            Some((args.log_format, directives))
        }
        _ => None,
    };
    let directives = format.as_ref().map_or(level, |(_, d)| d.as_str());
    let filter = tracing_subscriber::EnvFilter::try_from_env("ECOBACKUP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(directives));
    // Colours only on a terminal: not in cron mails or the journal.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    match format {
        Some((cli::LogFormat::Json, _)) => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
        _ => builder.init(),
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    if let Command::WalFetch(_) = cli.command {
        return Box::pin(run_command(cli)).await.map_err(CliError::fatal);
    }
    if let Command::Check(_) = cli.command {
        let json = cli.json;
        return check_status(json, Box::pin(run_command(cli)).await);
    }
    run_command(cli).await
}

/// check's result as its exit status says it: its own failures (repository, configuration) are
/// UNKNOWN, never CRITICAL, and a monitoring system reads the first line of stdout.
fn check_status(json: bool, result: Result<(), CliError>) -> Result<(), CliError> {
    result.map_err(|e| {
        if e.code.is_none() {
            commands::monitor::print_unknown(json, e.message());
        }
        e.or_code(CHECK_UNKNOWN)
    })
}

async fn run_command(cli: Cli) -> Result<(), CliError> {
    if let Command::Daemon(args) = cli.command {
        let globals = daemon::Globals {
            json: cli.json,
            quiet: cli.quiet,
            repo: cli.repo,
            config_path: cli.config,
        };
        return daemon::run(globals, args).await;
    }
    let config = Arc::new(load_config(cli.config.as_deref())?);
    let cancel = CancellationToken::new();
    if cancel::on_signals(&cli.command) {
        cancel::cancel_on_signals(cancel.clone())?;
    }
    let ctx = Context::new(cli.json, cli.quiet, cli.repo, config, cli.config, cancel);
    execute(&ctx, cli.command).await
}

/// Runs `command` between its notifications ([`notify::Job`]), stopping it when
/// `ctx.cancel` is cancelled: the one path of a plain command and of a daemon's job.
async fn execute(ctx: &Context, command: Command) -> Result<(), CliError> {
    let job = notify::Job::of(ctx, &command);
    let work = cancel::abandon_when_cancelled(&ctx.cancel, dispatch(ctx, command));
    match job {
        Some(job) => job.run(ctx, work).await,
        None => work.await,
    }
}

/// The configuration file (`--config` / `ECOBACKUP_CONFIG`), with the `ECOBACKUP_*`
/// variables laid over it (flags, read by clap, win over both).
pub(crate) fn load_config(path: Option<&std::path::Path>) -> Result<Config, CliError> {
    let mut config = Config::load(path)?;
    config.apply_env(&Environment::process())?;
    Ok(config)
}

async fn dispatch(ctx: &Context, command: Command) -> Result<(), CliError> {
    match command {
        Command::Key(cli::KeyCommand::Generate(args)) => commands::key::generate(ctx, args),
        Command::Init => commands::repo::init(ctx).await,
        Command::List(args) => commands::repo::list(ctx, args).await,
        Command::Show(args) => commands::repo::show(ctx, args).await,
        Command::Encrypt(args) => commands::filter::encrypt(ctx, args).await,
        Command::Decrypt(args) => commands::filter::decrypt(ctx, args).await,
        Command::Demo(args) => commands::demo::demo(ctx, args).await,
        Command::Verify(args) => commands::verify::verify(ctx, args).await,
        Command::Drill(args) => commands::drill::drill(ctx, args).await,
        Command::Prune(args) => commands::prune::prune(ctx, args).await,
        Command::Status(args) => commands::monitor::status(ctx, args).await,
        Command::Check(args) => commands::monitor::check(ctx, args).await,
        Command::Backup(cli::BackupCommand::Logical(args)) => {
            commands::logical::backup(ctx, args).await
        }
        Command::Restore(cli::RestoreCommand::Logical(args)) => {
            commands::logical::restore(ctx, args).await
        }
        Command::Backup(cli::BackupCommand::Physical(args)) => {
            commands::physical::backup(ctx, args).await
        }
        Command::Restore(cli::RestoreCommand::Physical(args)) => {
            commands::physical::restore(ctx, args).await
        }
        Command::Backup(cli::BackupCommand::Files(args)) => {
            commands::files::backup(ctx, args).await
        }
        Command::Restore(cli::RestoreCommand::Files(args)) => {
            commands::files::restore(ctx, args).await
        }
        Command::WalPush(args) => commands::wal::wal_push(ctx, args).await,
        Command::WalFetch(args) => commands::wal::wal_fetch(ctx, args).await,
        Command::WalPrefetch(args) => commands::wal::wal_prefetch(ctx, args).await,
        // main runs the daemon before any context exists.
        Command::Daemon(_) => Err(CliError::usage("the daemon cannot run as a job of itself")),
    }
}
