//! What the long-running commands (`backup logical|physical|files`, `prune`, `verify`, `drill`,
//! and `check` when the daemon runs it) tell the outside world: healthchecks-style pings (`/start`, success, `/fail`), a JSON webhook
//! with a Slack-compatible `text`, and the Prometheus textfile of `--prometheus`.
//!
//! None of it is the job's result: an endpoint that is unreachable, refuses or hangs costs at
//! most its timeout per request and a warning on stderr, never the exit code or the output.
//! wal-push and wal-fetch never notify: PostgreSQL runs them once per segment.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde::Serialize;

use crate::cli::{BackupCommand, Command, SigningArgs, TrustArgs};
use crate::commands::repo::load_signer;
use crate::{CliError, Context};

/// The longest body a ping or the `error` of an event carries (healthchecks.io keeps 10 KB).
const MAX_BODY: usize = 10_000;

/// The default of `[notify] timeout_seconds`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One run of a long-running command, and whom to tell about it.
pub struct Job {
    command: &'static str,
    ping_url: Option<String>,
    webhook_url: Option<String>,
    webhook_on_success: bool,
    timeout: Duration,
    prometheus: Option<PathBuf>,
    trust: TrustArgs,
    /// The repository the job writes to, when not the configured one (a `[[files]]` set's).
    repository: Option<String>,
}

/// The JSON event the webhook gets.
#[derive(Debug, Serialize)]
struct Event<'a> {
    /// One line for Slack (and for any chat that reads `text`).
    text: String,
    command: &'a str,
    ok: bool,
    host: &'a str,
    error: Option<String>,
    /// What went wrong in a job that still succeeded (a backup target that failed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backup_id: Option<String>,
    finished_at: String,
}

impl Job {
    /// The job `command` runs, or `None` for the commands that never notify.
    pub fn of(ctx: &Context, command: &Command) -> Option<Job> {
        let notify = &ctx.config.notify;
        let (name, prometheus, trust, ping) = match command {
            Command::Backup(BackupCommand::Logical(a)) => (
                "backup logical",
                a.job.prometheus.clone(),
                backup_trust(ctx, &a.signing),
                None,
            ),
            Command::Backup(BackupCommand::Physical(a)) => (
                "backup physical",
                a.job.prometheus.clone(),
                backup_trust(ctx, &a.signing),
                None,
            ),
            Command::Backup(BackupCommand::Files(a)) => (
                "backup files",
                a.job.prometheus.clone(),
                backup_trust(ctx, &a.signing),
                None,
            ),
            Command::Prune(a) => ("prune", a.job.prometheus.clone(), a.trust.clone(), None),
            Command::Verify(a) => ("verify", a.job.prometheus.clone(), a.trust.clone(), None),
            // The drill's own URL (flag, then [drill]) wins over [notify]'s.
            Command::Drill(a) => (
                "drill",
                a.job.prometheus.clone(),
                a.trust.clone(),
                a.ping.clone().or(ctx.config.drill.ping_url.clone()),
            ),
            // A check run by the daemon has no monitoring system reading its exit status: it
            // tells the outside world like the other jobs. Run by Nagios, it does not.
            Command::Check(a) if ctx.schedule.is_some() => ("check", None, a.trust.clone(), None),
            _ => return None,
        };
        // A [[schedule]] entry's own URL wins over every other.
        let ping = ctx
            .schedule
            .as_ref()
            .and_then(|s| s.ping_url.clone())
            .or(ping);
        // A [[files]] set with a repository of its own: the textfile describes that one.
        let repository = match command {
            Command::Backup(BackupCommand::Files(a)) => a
                .name
                .as_deref()
                .and_then(|name| ctx.config.files_set(name))
                .and_then(|set| set.repository.clone()),
            _ => None,
        };
        Some(Job {
            repository,
            command: name,
            ping_url: ping.or(notify.ping_url.clone()),
            webhook_url: notify.webhook_url.clone(),
            webhook_on_success: notify.webhook_on_success,
            timeout: notify
                .timeout_seconds
                .map_or(DEFAULT_TIMEOUT, Duration::from_secs),
            prometheus,
            trust,
        })
    }

    /// Runs `job` between the pings, then writes the textfile and tells the webhook; returns
    /// the job's own result, untouched.
    pub async fn run(
        self,
        ctx: &Context,
        job: impl Future<Output = Result<(), CliError>>,
    ) -> Result<(), CliError> {
        let client = match (&self.ping_url, &self.webhook_url) {
            (None, None) => None,
            _ => client(self.timeout),
        };
        // The start ping runs while the job does: a slow endpoint does not hold the job back.
        let start = match (&client, &self.ping_url) {
            (Some(client), Some(url)) => Some(tokio::spawn(post(
                client.clone(),
                ping_url(url, "/start"),
                String::new(),
                "text/plain; charset=utf-8",
                "start ping",
            ))),
            _ => None,
        };
        let result = job.await;
        if let Some(path) = &self.prometheus {
            write_prometheus(ctx, &self.trust, self.repository.as_deref(), path).await;
        }
        // The start ping must not land after the end's (healthchecks would read the job as
        // running again); it took at most the timeout, most of it spent during the job.
        if let Some(start) = start {
            let _ = start.await;
        }
        let Some(client) = client else {
            return result;
        };
        let error = result.as_ref().err().map(error_line);
        let warnings = ctx.warnings();
        let host = hostname();
        let finish = async {
            if let Some(url) = &self.ping_url {
                // A success with warnings is a success: healthchecks shows the body.
                let (suffix, body) = match &error {
                    Some(line) => ("/fail", line.clone()),
                    None => ("", truncate(warnings.join("\n"), MAX_BODY)),
                };
                post(
                    client.clone(),
                    ping_url(url, suffix),
                    body,
                    "text/plain; charset=utf-8",
                    "ping",
                )
                .await;
            }
        };
        let webhook = async {
            match &self.webhook_url {
                Some(url) if error.is_some() || !warnings.is_empty() || self.webhook_on_success => {
                    let mut event = self.event(&host, error.as_deref(), ctx.backup_id());
                    if error.is_none() && !warnings.is_empty() {
                        event.text = slack_escape(&format!(
                            "ecobackup {} succeeded with warnings on {host}: {}",
                            self.command,
                            warnings.join("; ")
                        ));
                        event.warnings = warnings.clone();
                    }
                    let body = serde_json::to_string(&event).unwrap_or_default();
                    post(
                        client.clone(),
                        url.clone(),
                        body,
                        "application/json",
                        "webhook ([notify] webhook_url)",
                    )
                    .await;
                }
                _ => {}
            }
        };
        tokio::join!(finish, webhook);
        result
    }

    fn event<'a>(
        &'a self,
        host: &'a str,
        error: Option<&str>,
        backup_id: Option<String>,
    ) -> Event<'a> {
        let text = match (error, &backup_id) {
            (Some(e), _) => format!("ecobackup {} failed on {host}: {e}", self.command),
            (None, Some(id)) => format!(
                "ecobackup {} succeeded on {host}: backup {id}",
                self.command
            ),
            (None, None) => format!("ecobackup {} succeeded on {host}", self.command),
        };
        Event {
            text: slack_escape(&text),
            command: self.command,
            ok: error.is_none(),
            host,
            error: error.map(str::to_owned),
            warnings: Vec::new(),
            backup_id,
            finished_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        }
    }
}

/// Whom a backup host trusts when it reads the repository's state for `--prometheus`: the
/// configured signers, else its own signing key (a backup host often has no
/// `trusted_signers`), and unsigned manifests when it writes them itself (`--no-signing`).
fn backup_trust(ctx: &Context, signing: &SigningArgs) -> TrustArgs {
    let mut trust = TrustArgs {
        allow_unsigned: signing.no_signing,
        ..TrustArgs::default()
    };
    if ctx.config.encryption.trusted_signers.is_empty() {
        if let Ok(Some(signer)) = load_signer(ctx, signing.signing_key.as_deref()) {
            trust.trusted_signers.push(signer.public_key().to_string());
        }
    }
    trust
}

/// The HTTP client of the notifications, or `None` (with a warning) when none can be built.
fn client(timeout: Duration) -> Option<reqwest::Client> {
    match reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("ecobackup/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(client) => Some(client),
        Err(e) => {
            tracing::warn!(error = %e.without_url(), "no ping or webhook sent: cannot build an HTTP client");
            None
        }
    }
}

/// `<url>/start`, `<url>/fail`, `<url>`.
fn ping_url(url: &str, suffix: &str) -> String {
    match suffix {
        "" => url.to_owned(),
        suffix => format!("{}{suffix}", url.trim_end_matches('/')),
    }
}

/// POSTs `body`; any failure is a warning that never names the URL (a ping URL or a Slack
/// webhook URL is itself a credential).
async fn post(client: reqwest::Client, url: String, body: String, content_type: &str, what: &str) {
    let sent = client
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status);
    if let Err(e) = sent {
        let reason = if e.is_timeout() {
            "timed out".to_owned()
        } else {
            e.without_url().to_string()
        };
        tracing::warn!("could not send the {what}: {reason}; the job's result is unchanged");
    }
}

/// The error line `main` prints (already free of secrets), on one line, at most [`MAX_BODY`]
/// bytes.
fn error_line(e: &CliError) -> String {
    let line = match e.message() {
        "" => "failed".to_owned(),
        m => m.replace('\n', " "),
    };
    truncate(line, MAX_BODY)
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max - 3;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

/// Slack reads `&`, `<` and `>` as markup.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// This machine's name, for the event.
fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown host".to_owned())
}

/// The textfile of `status --prometheus`, read after the job; a failure is a warning.
async fn write_prometheus(
    ctx: &Context,
    trust: &TrustArgs,
    repository: Option<&str>,
    path: &std::path::Path,
) {
    let written = async {
        let status = crate::commands::monitor::read_at(ctx, trust, None, repository).await?;
        ecobackup_core::monitor::metrics::write_textfile(
            path,
            &ecobackup_core::monitor::metrics::render(&status),
        )?;
        Ok::<_, CliError>(())
    }
    .await;
    if let Err(e) = written {
        tracing::warn!(
            "could not write the Prometheus textfile {}: {}",
            path.display(),
            e.message()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_urls_get_their_suffix_once() {
        assert_eq!(
            ping_url("https://hc-ping.com/abc", "/start"),
            "https://hc-ping.com/abc/start"
        );
        assert_eq!(
            ping_url("https://hc-ping.com/abc/", "/fail"),
            "https://hc-ping.com/abc/fail"
        );
        assert_eq!(
            ping_url("https://hc-ping.com/abc", ""),
            "https://hc-ping.com/abc"
        );
    }

    #[test]
    fn long_bodies_are_cut_on_a_character_boundary() {
        let cut = truncate("é".repeat(MAX_BODY), MAX_BODY);
        assert!(
            cut.len() <= MAX_BODY && cut.ends_with("..."),
            "{}",
            cut.len()
        );
        assert_eq!(truncate("short".to_owned(), MAX_BODY), "short");
    }

    #[test]
    fn slack_markup_is_escaped() {
        assert_eq!(slack_escape("a <b> & c"), "a &lt;b&gt; &amp; c");
    }
}
