//! `ecobackup daemon`: runs the `[[schedule]]` entries of the configuration.
//!
//! - Each entry fires at its cron times, in its time zone, after its jitter. A run goes
//!   through the same path as the plain command ([`runner`]), so pings, webhooks and the
//!   Prometheus textfile behave exactly as they do from cron.
//! - An entry never overlaps itself: a fire time that comes while its previous run is still
//!   going is skipped and reported (a warning line), never queued. Different entries may run
//!   at the same time; the repository lock keeps prune alone (the one that comes second
//!   fails and is reported), so schedule prune away from the backups.
//! - SIGHUP reloads the file; one that does not load is refused with one line and the old
//!   schedule goes on. Runs in flight keep the settings they started with.
//! - SIGTERM or SIGINT: no new run starts; running jobs get `--grace` seconds to finish, then
//!   are cancelled (uploads aborted, locks released); the daemon exits 0. A second signal
//!   cancels at once.
//! - `--once NAME` runs one entry now through the same path and exits with its status.

mod plan;
mod runner;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::cli::DaemonArgs;
use crate::CliError;
use plan::{Entry, Plan};
use runner::Run;

/// The target of the daemon's own log lines (shown at `info` without `-v`).
pub const LOG_TARGET: &str = "ecobackup::daemon";

/// The longest the scheduler sleeps at once, so that a change of the wall clock (NTP, a
/// suspended machine) is noticed within it.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// The global flags every job inherits from the daemon's command line.
#[derive(Debug, Clone)]
pub struct Globals {
    /// `--json`: the jobs' own output.
    pub json: bool,
    /// `-q`.
    pub quiet: bool,
    /// `--repo` / `ECOBACKUP_REPO`.
    pub repo: Option<String>,
    /// `--config` / `ECOBACKUP_CONFIG`.
    pub config_path: Option<std::path::PathBuf>,
}

/// `ecobackup daemon`.
pub async fn run(globals: Globals, args: DaemonArgs) -> Result<(), CliError> {
    let plan = Plan::load(&globals, args.once.as_deref())?;
    let once = match &args.once {
        Some(name) => Some(plan.entry(name)?.clone()),
        None => None,
    };
    let signals = Signals::listen()?;
    let scheduler = Scheduler {
        globals: Arc::new(globals),
        plan,
        grace: Duration::from_secs(args.grace),
        next: HashMap::new(),
        running: HashMap::new(),
        jobs: JoinSet::new(),
        cancel: CancellationToken::new(),
        stopping: CancellationToken::new(),
        signals,
    };
    // The jobs run on this thread (their heavy work runs in the library's own tasks and
    // threads): a command's future need not be `Send`.
    let jobs = tokio::task::LocalSet::new();
    match once {
        Some(entry) => jobs.run_until(scheduler.once(entry)).await,
        None => jobs.run_until(scheduler.run()).await,
    }
}

/// The signals the daemon acts on.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn listen() -> Result<Signals, CliError> {
        let listen = |kind| {
            signal(kind).map_err(|e| CliError::failure(format!("cannot listen for signals: {e}")))
        };
        Ok(Signals {
            term: listen(SignalKind::terminate())?,
            int: listen(SignalKind::interrupt())?,
            hup: listen(SignalKind::hangup())?,
        })
    }
}

/// The next SIGTERM or SIGINT, by name.
async fn stop_signal(term: &mut Signal, int: &mut Signal) -> &'static str {
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// What the daemon knows while it runs.
struct Scheduler {
    globals: Arc<Globals>,
    plan: Plan,
    grace: Duration,
    /// Each entry's next fire time, by name.
    next: HashMap<String, DateTime<Utc>>,
    /// The runs in flight, by entry name, and which task each is.
    running: HashMap<String, Id>,
    /// The runs' tasks; each returns its entry's name and exit status.
    jobs: JoinSet<(String, Option<u8>)>,
    /// The parent of every run's token: cancelled when the grace period is over.
    cancel: CancellationToken,
    /// Cancelled when the daemon begins to stop.
    stopping: CancellationToken,
    signals: Signals,
}

impl Scheduler {
    /// Fires the entries at their times until SIGTERM or SIGINT, then stops.
    async fn run(mut self) -> Result<(), CliError> {
        tracing::info!(target: LOG_TARGET, schedules = self.plan.entries.len(), "daemon started");
        self.plan_next(Utc::now());
        let signal = loop {
            let wait = self.until_next(Utc::now());
            tokio::select! {
                () = tokio::time::sleep(wait) => self.fire_due(Utc::now()),
                Some(done) = self.jobs.join_next_with_id() => {
                    self.finished(done);
                }
                _ = self.signals.hup.recv() => self.reload(),
                signal = stop_signal(&mut self.signals.term, &mut self.signals.int) => break signal,
            }
        };
        self.stop(signal).await;
        Ok(())
    }

    /// `--once`: runs `entry` now and returns its status; a signal stops it as it stops the
    /// daemon.
    async fn once(mut self, entry: Arc<Entry>) -> Result<(), CliError> {
        self.start(&entry, None);
        let code = tokio::select! {
            Some(done) = self.jobs.join_next_with_id() => self.finished(done),
            signal = stop_signal(&mut self.signals.term, &mut self.signals.int) => self.stop(signal).await,
        };
        match code {
            Some(0) => Ok(()),
            // The job's own end line said why.
            Some(code) => Err(CliError::exit_status(code, "")),
            None => Err(CliError::failure("the job did not start")),
        }
    }

    /// Computes every entry's next fire time after `now`.
    fn plan_next(&mut self, now: DateTime<Utc>) {
        self.next.clear();
        for entry in &self.plan.entries {
            match entry.when.next_after(now) {
                Some(at) => {
                    tracing::info!(target: LOG_TARGET, job = %entry.name(), next = %at.to_rfc3339(), "job scheduled");
                    self.next.insert(entry.name().to_owned(), at);
                }
                None => {
                    tracing::warn!(target: LOG_TARGET, job = %entry.name(), reason = "its cron pattern matches no future time", "job never runs again");
                }
            }
        }
    }

    /// How long to sleep until the earliest fire time (at most [`MAX_SLEEP`]).
    fn until_next(&self, now: DateTime<Utc>) -> Duration {
        self.next
            .values()
            .min()
            .map_or(MAX_SLEEP, |at| {
                (*at - now).to_std().unwrap_or(Duration::ZERO)
            })
            .min(MAX_SLEEP)
    }

    /// Starts the entries whose time has come, or reports them skipped when their previous
    /// run is still going; plans their next time.
    fn fire_due(&mut self, now: DateTime<Utc>) {
        let due: Vec<Arc<Entry>> = self
            .plan
            .entries
            .iter()
            .filter(|e| self.next.get(e.name()).is_some_and(|at| *at <= now))
            .cloned()
            .collect();
        for entry in due {
            let name = entry.name().to_owned();
            let at = self.next[&name];
            if entry.when.next_after(at).is_some_and(|after| after <= now) {
                tracing::warn!(target: LOG_TARGET, job = %name, since = %at.to_rfc3339(), reason = "the runs since were missed (the daemon was not running, or the machine slept); running once now", "job late");
            }
            if self.running.contains_key(&name) {
                tracing::warn!(target: LOG_TARGET, job = %name, due = %at.to_rfc3339(), reason = "its previous run is still going", "job skipped");
            } else {
                self.start(&entry, Some(at));
            }
            match entry.when.next_after(now) {
                Some(next) => self.next.insert(name, next),
                None => self.next.remove(&name),
            };
        }
    }

    /// Starts a run of `entry` in its own task: for its fire time `due` (after its jitter), or
    /// now (`--once`).
    fn start(&mut self, entry: &Arc<Entry>, due: Option<DateTime<Utc>>) {
        let run = Run {
            entry: entry.clone(),
            config: self.plan.config.clone(),
            cancel: self.cancel.child_token(),
            stopping: self.stopping.clone(),
            due,
        };
        let name = entry.name().to_owned();
        let globals = self.globals.clone();
        let task = self.jobs.spawn_local({
            let name = name.clone();
            async move { (name, run.go(globals).await) }
        });
        self.running.insert(name, task.id());
    }

    /// Forgets a run that ended; returns its exit status.
    fn finished(
        &mut self,
        done: Result<(Id, (String, Option<u8>)), tokio::task::JoinError>,
    ) -> Option<u8> {
        match done {
            Ok((_, (name, code))) => {
                self.running.remove(&name);
                code
            }
            Err(e) => {
                let id = e.id();
                self.running.retain(|name, task| {
                    let ended = *task == id;
                    if ended {
                        tracing::error!(target: LOG_TARGET, job = %name, outcome = "failed", error = %e, "job finished");
                    }
                    !ended
                });
                Some(1)
            }
        }
    }

    /// SIGHUP: loads the file again; keeps the old plan if it does not load.
    fn reload(&mut self) {
        match Plan::load(&self.globals, None) {
            Ok(plan) => {
                self.plan = plan;
                tracing::info!(target: LOG_TARGET, schedules = self.plan.entries.len(), "configuration reloaded");
                self.plan_next(Utc::now());
            }
            Err(e) => tracing::error!(
                target: LOG_TARGET,
                error = %e.message(),
                schedules = self.plan.entries.len(),
                "configuration not reloaded; the old schedule goes on"
            ),
        }
    }

    /// Stops: no new run, the running ones get the grace period, then are cancelled; waits
    /// for every one to return. Returns the exit status of the last run that ended.
    async fn stop(&mut self, signal: &str) -> Option<u8> {
        self.stopping.cancel();
        self.next.clear();
        tracing::info!(
            target: LOG_TARGET,
            signal,
            running = self.running.len(),
            grace_seconds = self.grace.as_secs(),
            "daemon stopping"
        );
        let mut code = None;
        let grace = tokio::time::sleep(self.grace);
        tokio::pin!(grace);
        while !self.jobs.is_empty() {
            tokio::select! {
                Some(done) = self.jobs.join_next_with_id() => code = self.finished(done),
                () = &mut grace => break,
                again = stop_signal(&mut self.signals.term, &mut self.signals.int) => {
                    tracing::info!(target: LOG_TARGET, signal = again, "second signal: cancelling the running jobs now");
                    break;
                }
            }
        }
        if !self.jobs.is_empty() {
            let names: Vec<&str> = self.running.keys().map(String::as_str).collect();
            tracing::warn!(target: LOG_TARGET, jobs = %names.join(", "), "cancelling jobs");
        }
        self.cancel.cancel();
        while let Some(done) = self.jobs.join_next_with_id().await {
            code = self.finished(done);
        }
        tracing::info!(target: LOG_TARGET, "daemon stopped");
        code
    }
}
