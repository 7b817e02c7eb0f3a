//! One run of a `[[schedule]]` entry: the job's command, parsed and run through the same path
//! as a plain command ([`crate::execute`]: pings, webhook, Prometheus textfile, cancellation),
//! between two log lines.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::plan::Entry;
use super::{Globals, LOG_TARGET};
use crate::cli::Command;
use crate::{CliError, Context, ScheduledAs};
use ecobackup_core::config::Config;

/// A run about to start.
pub struct Run {
    /// The entry.
    pub entry: Arc<Entry>,
    /// The settings it runs under: those loaded when it started.
    pub config: Arc<Config>,
    /// Cancelled when the daemon's grace period is over.
    pub cancel: CancellationToken,
    /// Cancelled when the daemon begins to stop: a run still waiting out its jitter does not
    /// start.
    pub stopping: CancellationToken,
    /// The fire time this run is for, in the `job started` line; it waits the entry's jitter
    /// first. `None` for `--once`: no jitter.
    pub due: Option<DateTime<Utc>>,
}

impl Run {
    /// Runs the job; returns its exit status (what the plain command would exit with), or
    /// `None` when it never started (the daemon stopped during its jitter).
    pub async fn go(self, globals: Arc<Globals>) -> Option<u8> {
        let name = self.entry.name().to_owned();
        if self.due.is_some() && self.entry.schedule.jitter_seconds > 0 {
            let millis = self.entry.schedule.jitter_seconds.saturating_mul(1000);
            let delay = Duration::from_millis(rand::thread_rng().gen_range(0..millis));
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.stopping.cancelled() => {
                    tracing::info!(target: LOG_TARGET, job = %name, reason = "the daemon is stopping", "job not started");
                    return None;
                }
            }
        }
        let run = format!("{:08x}", rand::random::<u32>());
        let command = self.entry.schedule.job_kind().map_or("?", |k| k.name());
        let due = self.due.map(|at| at.to_rfc3339());
        let due = due.as_deref();
        tracing::info!(target: LOG_TARGET, job = %name, run = %run, command, due, "job started");
        let started = Instant::now();
        let ctx = Context {
            schedule: Some(ScheduledAs {
                name: name.clone(),
                ping_url: self.entry.schedule.ping_url.clone(),
            }),
            ..Context::new(
                globals.json,
                globals.quiet,
                globals.repo.clone(),
                self.config.clone(),
                globals.config_path.clone(),
                self.cancel.clone(),
            )
        };
        let result = self.execute(&ctx, globals.json).await;
        let duration_seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
        let backup_id = ctx.backup_id();
        let backup_id = backup_id.as_deref();
        match &result {
            Ok(()) => tracing::info!(
                target: LOG_TARGET,
                job = %name, run = %run, command, outcome = "ok", exit_code = 0u8,
                duration_seconds, backup_id, "job finished"
            ),
            Err(e) => {
                let outcome = match self.cancel.is_cancelled() {
                    true => "cancelled",
                    false => "failed",
                };
                let error = e.message().replace('\n', " ");
                tracing::error!(
                    target: LOG_TARGET,
                    job = %name, run = %run, command, outcome, exit_code = e.exit_code(),
                    duration_seconds, backup_id, error = %error, "job finished"
                );
            }
        }
        Some(result.err().map_or(0, |e| e.exit_code()))
    }

    /// Parses the entry's command line again (it was checked when the file was loaded; the
    /// environment is read now, as a plain command reads it) and runs it.
    async fn execute(&self, ctx: &Context, json: bool) -> Result<(), CliError> {
        let cli = self.entry.command_line().map_err(|e| {
            let text = e.to_string();
            CliError::usage(
                text.lines()
                    .next()
                    .unwrap_or("invalid arguments")
                    .to_owned(),
            )
        })?;
        let is_check = matches!(cli.command, Command::Check(_));
        let result = crate::execute(ctx, cli.command).await;
        match is_check {
            true => crate::check_status(json, result),
            false => result,
        }
    }
}
