//! `ecobackup`: the command-line face of ecobackup-core. It parses flags, loads the
//! configuration, calls the library and prints; it holds no backup logic of its own.

mod cli;
mod commands;
mod notify;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use ecobackup_core::config::{Config, Environment};

/// A failure, printed as one line; `usage` failures exit 2, the others 1, unless a command
/// sets its own status (wal-fetch).
#[derive(Debug)]
pub struct CliError {
    message: String,
    usage: bool,
    code: Option<u8>,
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
        }
    }

    /// A step that failed at run time (exit 1).
    pub fn failure(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            usage: false,
            code: None,
        }
    }

    /// wal-fetch's "the file is not in the archive": exit 1, the only failure PostgreSQL may
    /// take for the end of the archive.
    pub fn not_archived(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            usage: false,
            code: Some(1),
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
    /// WARNING and CRITICAL).
    pub fn exit_status(code: u8) -> Self {
        CliError {
            message: String::new(),
            usage: false,
            code: Some(code),
        }
    }

    /// The one line printed.
    pub fn message(&self) -> &str {
        &self.message
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
    /// The loaded configuration.
    pub config: Config,
    /// Where it was loaded from (`--config` / `ECOBACKUP_CONFIG`).
    pub config_path: Option<std::path::PathBuf>,
    /// The backup the command made or checked, once known (for the `[notify]` webhook).
    backup_id: std::sync::OnceLock<String>,
    /// What went wrong in a job that still succeeded (a backup target that failed), for the
    /// `[notify]` ping and webhook.
    warnings: std::sync::Mutex<Vec<String>>,
    /// Fires when the command must stop (SIGINT, SIGTERM, the daemon's shutdown): the
    /// library then aborts what it started and releases its locks before returning.
    pub cancel: ecobackup_core::cancel::CancellationToken,
}

impl Context {
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
    init_logging(cli.verbose, cli.quiet);
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
    if !e.message.is_empty() {
        let line = e.message.replace('\n', " ");
        eprintln!("error: {line}");
    }
    ExitCode::from(e.code.unwrap_or(if e.usage { 2 } else { 1 }))
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

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ECOBACKUP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

async fn run(cli: Cli) -> Result<(), CliError> {
    if let Command::WalFetch(_) = cli.command {
        return Box::pin(run_command(cli)).await.map_err(CliError::fatal);
    }
    if let Command::Check(_) = cli.command {
        // The check's own failures (repository, configuration) are UNKNOWN, never CRITICAL,
        // and a monitoring system reads the first line of stdout.
        let json = cli.json;
        return Box::pin(run_command(cli)).await.map_err(|e| {
            if e.code.is_none() {
                commands::monitor::print_unknown(json, e.message());
            }
            e.or_code(CHECK_UNKNOWN)
        });
    }
    run_command(cli).await
}

async fn run_command(cli: Cli) -> Result<(), CliError> {
    let ctx = Context {
        json: cli.json,
        quiet: cli.quiet,
        repo: cli.repo,
        config: load_config(cli.config.as_deref())?,
        config_path: cli.config,
        backup_id: std::sync::OnceLock::new(),
        warnings: std::sync::Mutex::new(Vec::new()),
        cancel: ecobackup_core::cancel::CancellationToken::new(),
    };
    match notify::Job::of(&ctx, &cli.command) {
        Some(job) => job.run(&ctx, dispatch(&ctx, cli.command)).await,
        None => dispatch(&ctx, cli.command).await,
    }
}

/// The configuration file (`--config` / `ECOBACKUP_CONFIG`), with the `ECOBACKUP_*`
/// variables laid over it (flags, read by clap, win over both).
fn load_config(path: Option<&std::path::Path>) -> Result<Config, CliError> {
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
        other => Err(not_built(&other)),
    }
}

/// The refusal of a command that is not built yet.
fn not_built(command: &Command) -> CliError {
    use cli::{BackupCommand as B, RestoreCommand as R};
    let name = match command {
        Command::Daemon(_) => "daemon",
        Command::Backup(B::Logical(_) | B::Physical(_) | B::Files(_))
        | Command::Restore(R::Logical(_) | R::Physical(_) | R::Files(_))
        | Command::Demo(_)
        | Command::Verify(_)
        | Command::Drill(_)
        | Command::Prune(_)
        | Command::Status(_)
        | Command::Check(_)
        | Command::Init
        | Command::List(_)
        | Command::Show(_)
        | Command::Key(_)
        | Command::Encrypt(_)
        | Command::Decrypt(_)
        | Command::WalPush(_)
        | Command::WalFetch(_)
        | Command::WalPrefetch(_) => "this command",
    };
    CliError::usage(format!(
        "`ecobackup {name}` is not built yet in this version; nothing was done (working today: init, list, show, backup logical|physical|files, restore logical|physical|files, wal-push, wal-fetch, verify, drill, prune, status, check, demo, key generate, encrypt, decrypt)"
    ))
}
