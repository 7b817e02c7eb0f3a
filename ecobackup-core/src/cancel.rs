//! Cancelling a long operation, and the clean-up it owes before it returns.
//!
//! Every long operation (backups, restores, verify, drill, prune) takes a
//! [`CancellationToken`] in its options. When the token fires, the operation stops reading its
//! source, kills its child programs, aborts the multipart uploads it started, deletes what it
//! stored under its backup id, releases its repository lock, and only then returns
//! [`Error::Cancelled`]: nothing is committed and nothing is left pending.
//!
//! Dropping an operation's future instead is safe too (no manifest is ever written by a
//! dropped future), but its clean-up then runs in background tasks that the caller cannot wait
//! for, and ends with the runtime if that ends first: the lock expires by itself and an
//! unfinished upload is left to the bucket's lifecycle rule. Prefer the token.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
pub use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// The longest an operation waits, after it was cancelled, for the clean-up it left to finish
/// (aborting uploads, deleting its lock): a store that hangs must not hang the caller too.
const CLEANUP_LIMIT: Duration = Duration::from_secs(60);

tokio::task_local! {
    static CLEANUP: Cleanup;
}

/// The clean-up an operation owes: tasks that aborts and deletes left behind when their owners
/// were dropped. Owners capture it when they are made ([`Cleanup::current`]), so a drop in
/// any task (a pipeline stage the runtime aborts later) still reports here.
#[derive(Clone, Debug, Default)]
pub(crate) struct Cleanup {
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Cleanup {
    /// The clean-up of the operation running in this task, if any.
    pub(crate) fn current() -> Option<Cleanup> {
        CLEANUP.try_with(Cleanup::clone).ok()
    }

    /// Runs `work` in the background; the operation that owns this clean-up waits for it
    /// before it returns. Returns false when there is no runtime to run it on.
    pub(crate) fn spawn(
        owner: Option<&Cleanup>,
        work: impl Future<Output = ()> + Send + 'static,
    ) -> bool {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let handle = runtime.spawn(work);
        if let Some(cleanup) = owner.cloned().or_else(Cleanup::current) {
            cleanup
                .tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(handle);
        }
        true
    }

    /// Waits until no owner is left alive and every clean-up task has ended (at most
    /// [`CLEANUP_LIMIT`]).
    async fn wait(self) {
        let deadline = tokio::time::Instant::now() + CLEANUP_LIMIT;
        loop {
            // Owners first: one dropped on another thread pushes its task before it lets go
            // of the list, so once none is left, the list below holds every task.
            let owners_gone = Arc::strong_count(&self.tasks) == 1;
            let pending: Vec<JoinHandle<()>> =
                std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
            let idle = owners_gone && pending.is_empty();
            for task in pending {
                if tokio::time::timeout_at(deadline, task).await.is_err() {
                    tracing::warn!("clean-up after a cancelled operation is still running after {CLEANUP_LIMIT:?}; its lock expires by itself");
                    return;
                }
            }
            if idle {
                return;
            }
            // Owners still alive: pipeline stages that were told to stop and have not been
            // dropped yet.
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    "an owner of clean-up outlived its cancelled operation by {CLEANUP_LIMIT:?}"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Runs `work` until it ends or `cancel` fires. Then `work` is dropped (its child programs are
/// killed, its pipeline stops), the aborts and deletes its parts left behind are awaited, and
/// [`Error::Cancelled`] naming `what` is returned.
///
/// Every long operation of this crate already runs in it; wrap your own composition of the
/// lower-level functions (a verify, a status listing, a lock held across several steps) to
/// give it the same promise: nothing the clean-up owes is left running when this returns.
///
/// Cancel safety: dropping this future instead leaves the clean-up to background tasks, as
/// the [module documentation](self) says.
pub async fn cancellable<T>(
    cancel: &CancellationToken,
    what: &str,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    let cleanup = Cleanup::default();
    let result = CLEANUP
        .scope(cleanup.clone(), async {
            tokio::select! {
                biased;
                () = cancel.cancelled() => Err(Error::Cancelled(what.to_owned())),
                result = work => result,
            }
        })
        .await;
    cleanup.wait().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Something that leaves clean-up behind when dropped, from whatever task drops it.
    struct Owner {
        cleanup: Option<Cleanup>,
        done: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Drop for Owner {
        fn drop(&mut self) {
            let done = self.done.clone();
            Cleanup::spawn(self.cleanup.as_ref(), async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                done.store(true, std::sync::atomic::Ordering::SeqCst);
            });
        }
    }

    #[tokio::test]
    async fn a_cancelled_operation_returns_after_the_cleanup_its_parts_left() {
        let cancel = CancellationToken::new();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let canceller = cancel.clone();
        let result: Result<()> = cancellable(&cancel, "a test", async move {
            let owner = Owner {
                cleanup: Cleanup::current(),
                done: flag,
            };
            // Dropped by a task of its own, outside the operation's task.
            let mut stages = tokio::task::JoinSet::new();
            stages.spawn(async move {
                let _owner = owner;
                std::future::pending::<()>().await;
            });
            canceller.cancel();
            std::future::pending::<()>().await;
            drop(stages);
            Ok(())
        })
        .await;
        assert!(matches!(result, Err(Error::Cancelled(_))), "{result:?}");
        assert!(
            done.load(std::sync::atomic::Ordering::SeqCst),
            "the clean-up finished before the operation returned"
        );
    }

    #[tokio::test]
    async fn work_that_ends_first_is_not_cancelled() {
        let cancel = CancellationToken::new();
        let value = cancellable(&cancel, "a test", async { Ok(7) }).await;
        assert_eq!(value.unwrap(), 7);
    }
}
