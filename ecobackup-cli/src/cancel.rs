//! How a command stops before its end.
//!
//! SIGINT or SIGTERM cancels the command's token ([`crate::Context::cancel`]); the daemon
//! cancels its jobs' tokens when its grace period is over. Long operations take the token and
//! stop cleanly: uploads aborted, locks released, nothing committed. A second signal ends a
//! plain command at once.
//!
//! A command that has not returned [`ABANDON_AFTER`] after its token was cancelled (an
//! operation that does not take the token yet) is dropped. The library is cancel safe on drop:
//! a multipart upload is aborted and a lock deleted by background tasks, a child program
//! killed, a scratch cluster stopped; [`CLEANUP_TIME`] is left for those tasks before the
//! command returns, since they end with the runtime.

use std::future::Future;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::cli::Command;
use crate::CliError;

/// How long a cancelled command may take to return by itself before it is dropped.
pub const ABANDON_AFTER: Duration = Duration::from_secs(10);

/// How long a dropped command's background clean-up gets before the command returns.
pub const CLEANUP_TIME: Duration = Duration::from_secs(3);

/// Whether `command` stops through its token on SIGINT and SIGTERM. `wal-push`, `wal-fetch`
/// and `wal-prefetch` keep the default dispositions: PostgreSQL signals them as part of its
/// own shutdown and expects them to end at once. The daemon handles its signals itself.
pub fn on_signals(command: &Command) -> bool {
    !matches!(
        command,
        Command::WalPush(_) | Command::WalFetch(_) | Command::WalPrefetch(_) | Command::Daemon(_)
    )
}

/// Cancels `token` on the first SIGINT or SIGTERM and ends the process on the second (exit 130
/// for SIGINT, 143 for SIGTERM, as a shell reports them).
pub fn cancel_on_signals(token: CancellationToken) -> Result<(), CliError> {
    let listen = |kind| {
        signal(kind).map_err(|e| CliError::failure(format!("cannot listen for signals: {e}")))
    };
    let (mut int, mut term) = (
        listen(SignalKind::interrupt())?,
        listen(SignalKind::terminate())?,
    );
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        eprintln!(
            "stopping: the command is being cancelled cleanly (signal again to stop at once)"
        );
        token.cancel();
        let code = tokio::select! {
            _ = int.recv() => 130,
            _ = term.recv() => 143,
        };
        std::process::exit(code);
    });
    Ok(())
}

/// Runs `work` to its end, unless `cancel` is cancelled and `work` has not returned
/// [`ABANDON_AFTER`] later: then `work` is dropped, its clean-up gets [`CLEANUP_TIME`], and
/// the result is a "cancelled" failure.
pub async fn abandon_when_cancelled<F>(cancel: &CancellationToken, work: F) -> Result<(), CliError>
where
    F: Future<Output = Result<(), CliError>>,
{
    abandon_after(cancel, work, ABANDON_AFTER, CLEANUP_TIME).await
}

/// [`abandon_when_cancelled`] with its two times.
async fn abandon_after<F>(
    cancel: &CancellationToken,
    work: F,
    abandon_after: Duration,
    cleanup_time: Duration,
) -> Result<(), CliError>
where
    F: Future<Output = Result<(), CliError>>,
{
    let mut work = Box::pin(work);
    tokio::select! {
        result = &mut work => return result,
        () = cancel.cancelled() => {}
    }
    tokio::select! {
        result = &mut work => return result,
        () = tokio::time::sleep(abandon_after) => {}
    }
    drop(work);
    tracing::warn!(
        "the command did not stop within {} s of being cancelled: it was dropped; its uploads are aborted and its lock deleted in the background",
        abandon_after.as_secs()
    );
    tokio::time::sleep(cleanup_time).await;
    Err(CliError::failure(
        "cancelled before the end (a signal, or the daemon's shutdown); nothing was committed",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn a_command_that_ignores_its_token_is_dropped_after_the_wait() {
        let cancel = CancellationToken::new();
        let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel::<()>();
        let work = async move {
            let _guard = dropped_tx;
            std::future::pending::<()>().await;
            Ok(())
        };
        cancel.cancel();
        let error = abandon_after(&cancel, work, SHORT, SHORT)
            .await
            .unwrap_err();
        assert!(
            error.message().starts_with("cancelled"),
            "{}",
            error.message()
        );
        assert!(dropped_rx.await.is_err(), "the work was dropped");
    }

    #[tokio::test]
    async fn a_command_that_honours_its_token_returns_its_own_result() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let token = cancel.clone();
        let work = async move {
            token.cancelled().await;
            Err(CliError::failure("cancelled by the library"))
        };
        let error = abandon_after(&cancel, work, Duration::from_secs(60), SHORT)
            .await
            .unwrap_err();
        assert_eq!(error.message(), "cancelled by the library");
    }

    #[tokio::test]
    async fn an_uncancelled_command_runs_to_its_end() {
        let cancel = CancellationToken::new();
        let work = async {
            tokio::time::sleep(SHORT).await;
            Ok(())
        };
        abandon_after(&cancel, work, SHORT, SHORT).await.unwrap();
    }
}
