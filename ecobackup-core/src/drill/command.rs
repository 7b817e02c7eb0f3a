//! The drill's `[command]` check: a shell command (boot the app, curl its health endpoint) that
//! must exit 0.
//!
//! The command runs in a process group of its own. The check ends when the shell exits, not
//! when its output pipes close: `./start-app.sh &` leaves a background process that holds them
//! open, and waiting for their end would wait for the timeout. When the shell has exited, or
//! the timeout struck, the whole group is killed, so nothing the check started outlives the
//! drill. Output is read as it comes, keeping only its tail, so a chatty command neither
//! blocks on a full pipe nor fills memory.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::process::{describe_status, last_line, ChildCommand};

/// How much of each output stream is kept (its end), for the report.
const KEPT_OUTPUT: usize = 64 * 1024;

/// How long the output readers may take to see the end of their pipes once the group is
/// killed. A process that left the group (`setsid`) may hold a pipe open for ever; its output
/// is then cut off here instead.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// Runs `command` in a process group of its own and waits for it to exit, at most `timeout`;
/// then kills whatever is left of the group. `Ok` when it exited with status 0; otherwise the
/// error says how it ended, with the last line it wrote on stderr (or stdout).
pub(super) async fn run_check(command: ChildCommand, timeout: Duration) -> Result<()> {
    let name = command.name();
    let mut child = command
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| Error::io(format!("starting the check command ({name})"), e))?;
    let group = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    let (stdout, stdout_reader) = keep_tail(child.stdout.take());
    let (stderr, stderr_reader) = keep_tail(child.stderr.take());

    let waited = tokio::time::timeout(timeout, child.wait()).await;
    // The shell is gone (or is about to be): so is everything it started.
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGKILL);
    }
    let _ = child.kill().await; // after a timeout: the shell itself, and reap it
    for reader in [stdout_reader, stderr_reader] {
        let abort = reader.abort_handle();
        if tokio::time::timeout(OUTPUT_GRACE, reader).await.is_err() {
            abort.abort();
        }
    }

    let status =
        match waited {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => {
                return Err(Error::io(
                    format!("waiting for the check command ({name})"),
                    e,
                ))
            }
            Err(_) => return Err(Error::Process {
                program: name,
                status: format!("still running after {} s", timeout.as_secs()),
                detail:
                    "stopped it and everything it started; raise timeout_seconds if it needs longer"
                        .to_owned(),
            }),
        };
    if status.success() {
        return Ok(());
    }
    let said = |tail: &Arc<Mutex<Vec<u8>>>| {
        let bytes = tail.lock().map(|t| t.clone()).unwrap_or_default();
        last_line(&String::from_utf8_lossy(&bytes))
    };
    Err(Error::Process {
        program: name,
        status: describe_status(status),
        detail: said(&stderr)
            .or_else(|| said(&stdout))
            .unwrap_or_else(|| "it printed nothing".to_owned()),
    })
}

/// Reads `pipe` to its end on a task of its own, keeping the last [`KEPT_OUTPUT`] bytes in the
/// returned buffer (readable even if the task is aborted).
fn keep_tail<R: AsyncRead + Unpin + Send + 'static>(
    pipe: Option<R>,
) -> (Arc<Mutex<Vec<u8>>>, JoinHandle<()>) {
    let tail = Arc::new(Mutex::new(Vec::new()));
    let kept = tail.clone();
    let reader = tokio::spawn(async move {
        let Some(mut pipe) = pipe else {
            return;
        };
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let Ok(mut kept) = kept.lock() else {
                break;
            };
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > KEPT_OUTPUT {
                let excess = kept.len() - KEPT_OUTPUT;
                kept.drain(..excess);
            }
        }
    });
    (tail, reader)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn sh(script: &str) -> ChildCommand {
        ChildCommand::new("/bin/sh").arg("-c").arg(script)
    }

    /// Whether process `pid` still runs (a zombie waiting for its parent does not).
    fn running(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !matches!(
                stat.rsplit_once(") ")
                    .and_then(|(_, rest)| rest.chars().next()),
                Some('Z' | 'X')
            ),
            Err(_) => false,
        }
    }

    async fn gone(pid: i32) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while running(pid) {
            assert!(Instant::now() < deadline, "process {pid} is still running");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn pid_in(file: &std::path::Path) -> i32 {
        std::fs::read_to_string(file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// The README's shape: `./start-app.sh & sleep 10; curl …` leaves the app running in the
    /// background, holding stdout and stderr. The check passes when the shell exits (long
    /// before the background process would end, and before the timeout), and the background
    /// process is stopped with it.
    #[tokio::test]
    async fn a_command_that_leaves_a_background_process_passes_and_takes_it_along() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("app.pid");
        let script = format!("sleep 600 & echo $! > '{}'; exit 0", pid_file.display());
        run_check(sh(&script), Duration::from_secs(300))
            .await
            .unwrap();
        gone(pid_in(&pid_file)).await;
    }

    #[tokio::test]
    async fn a_command_that_outlives_its_timeout_is_stopped_with_all_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("app.pid");
        let script = format!("sleep 600 & echo $! > '{}'; sleep 600", pid_file.display());
        // Seconds for the shell to start its background process, even on a loaded machine.
        let err = run_check(sh(&script), Duration::from_secs(5))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("still running after 5 s"), "{err}");
        gone(pid_in(&pid_file)).await;
    }

    #[tokio::test]
    async fn a_failure_says_how_it_ended_and_what_it_said_last() {
        // A megabyte on each pipe: read as it comes, so the command never blocks on a full pipe.
        let script = "head -c 1000000 /dev/zero; head -c 1000000 /dev/zero >&2; \
                      echo >&2; echo 'health check: connection refused' >&2; exit 3";
        let err = run_check(sh(script), Duration::from_secs(300))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("failed (exit status 3): health check: connection refused"),
            "{err}"
        );
        let err = run_check(sh("echo only on stdout; exit 4"), Duration::from_secs(300))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("(exit status 4): only on stdout"), "{err}");
    }
}
