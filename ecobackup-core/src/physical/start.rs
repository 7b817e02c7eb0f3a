//! Starting a restored data directory and following its recovery to the end.
//!
//! `pg_ctl start` runs the server (as the data directory's owner when ecobackup is root), with
//! its messages in English and on the log file given to pg_ctl (`-c lc_messages=C -c
//! logging_collector=off` for this start only), and the log is followed until recovery reaches
//! its end: promoted and accepting writes, paused at the target, or shut down at the target —
//! or until the server stops with a FATAL (an archive that cannot be read stops recovery; it
//! resumes at the next start). The log is what tells: no connection is needed, so no password
//! or pg_hba.conf line of the restored cluster matters.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::postgres::binaries::find_program;

/// Where recovery ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecoveryEnd {
    /// Promoted: the server accepts writes on a new timeline.
    Promoted,
    /// Paused at the target, read-only (`pg_wal_replay_resume()` promotes it).
    Paused,
    /// Shut down at the target.
    ShutDown,
}

/// What recovery reported.
#[derive(Clone, Debug, Serialize)]
pub struct RecoveryOutcome {
    /// Where it ended.
    pub end: RecoveryEnd,
    /// The timeline the server is on afterwards (a new one after a promotion).
    pub timeline: Option<u32>,
    /// The last LSN replayed (`redo done at`), or where it became consistent.
    pub lsn: Option<String>,
    /// PostgreSQL's line saying where it stopped (`recovery stopping before commit of …`).
    pub stopped: Option<String>,
    /// The server log.
    pub log: PathBuf,
}

/// Starts the server on `dir` with the PostgreSQL `major` programs and waits (at most
/// `limit`) until recovery ended; `owner` runs it when ecobackup runs as root.
pub async fn start_recovery(
    dir: &Path,
    major: u32,
    pg_bin: Option<&Path>,
    owner: (u32, u32),
    limit: Duration,
) -> Result<RecoveryOutcome> {
    let pg_ctl = find_program("pg_ctl", major, pg_bin).await?;
    let log_dir = dir.join("log");
    std::fs::create_dir_all(&log_dir)
        .map_err(|e| Error::io(format!("creating {}", log_dir.display()), e))?;
    let log = log_dir.join("ecobackup-recovery.log");
    // Only what this start writes counts: an earlier start's FATAL is history.
    let log_start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let mut command = std::process::Command::new(&pg_ctl);
    command
        .arg("-D")
        .arg(dir)
        .arg("-l")
        .arg(&log)
        .args([
            "-o",
            "-c lc_messages=C -c logging_collector=off -c log_destination=stderr",
            "-W",
            "start",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for name in ["PGDATA", "PGPORT", "PGHOST", "PGOPTIONS"] {
        command.env_remove(name);
    }
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(&log_dir, Some(owner.0), Some(owner.1))
            .map_err(|e| Error::io(format!("handing over {}", log_dir.display()), e))?;
        command.uid(owner.0).gid(owner.1);
    }
    let output = tokio::process::Command::from(command)
        .output()
        .await
        .map_err(|e| Error::io(format!("running {}", pg_ctl.display()), e))?;
    if !output.status.success() {
        return Err(Error::Process {
            program: "pg_ctl start".to_owned(),
            status: crate::process::describe_status(output.status),
            detail: format!(
                "starting the restored server in {}: {}",
                dir.display(),
                crate::process::last_line(&String::from_utf8_lossy(&output.stderr))
                    .unwrap_or_default()
            ),
        });
    }
    follow(dir, &log, log_start, limit).await
}

/// Follows the server log until recovery ends.
async fn follow(dir: &Path, log: &Path, from: u64, limit: Duration) -> Result<RecoveryOutcome> {
    let started = tokio::time::Instant::now();
    let deadline = started + limit;
    loop {
        // Read before looking at the server: a server that ended wrote its last words first.
        let alive = server_alive(dir);
        let bytes = std::fs::read(log).unwrap_or_default();
        let text = String::from_utf8_lossy(bytes.get(from as usize..).unwrap_or_default());
        if let Some(outcome) = read_log(&text, log)? {
            return Ok(outcome);
        }
        // Gone without a word the log parser knows (killed, a missing postgresql.conf): say so
        // now rather than at the deadline. The postmaster needs a moment to write its pid file.
        if !alive && started.elapsed() > Duration::from_secs(5) {
            return Err(Error::Refused {
                context: "recovering the restored server".to_owned(),
                detail: format!(
                    "the server is not running and recovery did not finish; its log {} says: {}",
                    log.display(),
                    text.lines()
                        .rev()
                        .take(3)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<Vec<_>>()
                        .join(" / ")
                ),
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Refused {
                context: "waiting for recovery".to_owned(),
                detail: format!(
                    "it has not ended after {} s; the server is still running: follow it in {}",
                    limit.as_secs(),
                    log.display()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether the postmaster of `dir` is running (its pid file names a live process).
fn server_alive(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("postmaster.pid")) else {
        return false;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
    else {
        return true; // being written
    };
    // Signal 0: only asks whether the process exists.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// What the log says so far: `Ok(None)` while recovery runs.
fn read_log(text: &str, log: &Path) -> Result<Option<RecoveryOutcome>> {
    let mut outcome = RecoveryOutcome {
        end: RecoveryEnd::Promoted,
        timeline: None,
        lsn: None,
        stopped: None,
        log: log.to_owned(),
    };
    let mut end = None;
    let mut shutdown_at_target = false;
    let mut last_fatal: Option<&str> = None;
    for line in text.lines() {
        if let Some(rest) = after(line, "selected new timeline ID: ") {
            outcome.timeline = rest.split_whitespace().next().and_then(|n| n.parse().ok());
        } else if let Some(rest) = after(line, "redo done at ") {
            outcome.lsn = rest.split_whitespace().next().map(str::to_owned);
        } else if let Some(rest) = after(line, "consistent recovery state reached at ") {
            if outcome.lsn.is_none() {
                outcome.lsn = rest.split_whitespace().next().map(str::to_owned);
            }
        } else if line.contains("recovery stopping ") {
            outcome.stopped = line
                .find("recovery stopping ")
                .map(|at| line[at..].trim().to_owned());
        } else if line.contains("pausing at the end of recovery") {
            end = Some(RecoveryEnd::Paused);
        } else if line.contains("shutdown at recovery target") {
            shutdown_at_target = true;
        } else if line.contains("database system is shut down") && shutdown_at_target {
            end = Some(RecoveryEnd::ShutDown);
        } else if line.contains("aborting startup due to startup process failure")
            || (line.contains("database system is shut down") && end.is_none())
        {
            // The startup process (recovery) failed: its FATAL says why.
            let why = last_fatal.unwrap_or(line).trim();
            return Err(Error::Refused {
                context: "recovering the restored server".to_owned(),
                detail: format!(
                    "the server stopped: {why}; fix the cause and start it again (pg_ctl -D <dir> start): recovery resumes where it stopped (log: {})",
                    log.display()
                ),
            });
        } else if line.contains("database system is ready to accept connections") {
            end = Some(RecoveryEnd::Promoted);
        } else if line.contains("FATAL:") || line.contains("PANIC:") {
            // A client's FATAL (a role that does not exist, too many clients) is no failure
            // of recovery: only the startup process's, followed by the abort, is.
            last_fatal = Some(line);
        }
    }
    Ok(end.map(|end| RecoveryOutcome { end, ..outcome }))
}

/// The text after `marker` in `line`.
fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|at| &line[at + marker.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_tells_how_recovery_ended() {
        let log = Path::new("/x/log");
        let running = "LOG:  starting archive recovery\nLOG:  restored log file \"000000010000000000000002\" from archive\n\
                       LOG:  consistent recovery state reached at 0/2000100\n";
        assert!(read_log(running, log).unwrap().is_none());
        let promoted = format!(
            "{running}LOG:  recovery stopping before commit of transaction 745, time 2026-11-23 08:55:02.1+00\n\
             LOG:  redo done at 0/3000150 system usage: CPU\nLOG:  selected new timeline ID: 2\n\
             LOG:  archive recovery complete\nLOG:  database system is ready to accept connections\n"
        );
        let outcome = read_log(&promoted, log).unwrap().unwrap();
        assert_eq!(outcome.end, RecoveryEnd::Promoted);
        assert_eq!(outcome.timeline, Some(2));
        assert_eq!(outcome.lsn.as_deref(), Some("0/3000150"));
        assert!(outcome
            .stopped
            .unwrap()
            .starts_with("recovery stopping before commit"));
        let paused = format!("{running}LOG:  recovery stopping at restore point \"b\"\nLOG:  pausing at the end of recovery\n");
        assert_eq!(
            read_log(&paused, log).unwrap().unwrap().end,
            RecoveryEnd::Paused
        );
        let client =
            format!("{running}FATAL:  the database system is not yet accepting connections\n");
        assert!(read_log(&client, log).unwrap().is_none());
        let client = format!("{running}FATAL:  role \"app\" does not exist\n");
        assert!(read_log(&client, log).unwrap().is_none());
        let failed = format!("{running}FATAL:  could not restore file \"000000010000000000000003\" from archive: child process exited with exit code 255\n\
                              LOG:  startup process (PID 7) exited with exit code 1\n\
                              LOG:  aborting startup due to startup process failure\nLOG:  database system is shut down\n");
        let err = read_log(&failed, log).unwrap_err().to_string();
        assert!(err.contains("exit code 255"), "{err}");
        assert!(err.contains("recovery resumes"), "{err}");
    }
}
