//! Progress of long steps, pushed to whoever watches: a terminal's progress bars, a service's
//! metrics or logs, or nobody. The watcher implements [`Progress`]; every method has a default
//! that does nothing, so it implements only what it shows.

use std::future::Future;
use std::time::Duration;

use crate::pipeline::StageMeter;

/// How often a running step reports its bytes.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// Told when a long step (one artifact's pipeline, a download) starts, how far it got (every
/// [`PROGRESS_INTERVAL`] while it runs, and once at its end), and when it ends. Calls come from
/// the operation's own task: keep them short (set a number, send on a channel), never block.
pub trait Progress: Send + Sync {
    /// A step started; `total` is the expected count of bytes it reads, when known (an
    /// estimate for a dump: the database's size).
    fn started(&self, _step: &str, _total: Option<u64>) {}
    /// The step has read `done` bytes so far.
    fn advanced(&self, _step: &str, _done: u64, _total: Option<u64>) {}
    /// The step ended (well or not).
    fn finished(&self, _step: &str) {}
    /// A one-line note about what is happening (`downloading to a temporary file for --jobs 4`).
    fn note(&self, _message: &str) {}
}

/// Progress that nobody watches (notes go to the `tracing` log at info level).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn note(&self, message: &str) {
        tracing::info!("{message}");
    }
}

/// Runs `work` as the step `step`, telling `progress` when it starts, the bytes `meter` has
/// counted every [`PROGRESS_INTERVAL`] and at the end, and when it ends.
pub(crate) async fn observed<T>(
    progress: &dyn Progress,
    step: &str,
    total: Option<u64>,
    meter: StageMeter,
    work: impl Future<Output = T>,
) -> T {
    progress.started(step, total);
    // `finished` is owed even when the operation is cancelled or its future dropped here.
    let _finished = Finished { progress, step };
    let mut ticks = tokio::time::interval(PROGRESS_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut work = std::pin::pin!(work);
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            _ = ticks.tick() => progress.advanced(step, meter.bytes_out(), total),
        }
    };
    progress.advanced(step, meter.bytes_out(), total);
    result
}

/// Tells `progress` that `step` finished when it goes out of scope, however that happens.
struct Finished<'a> {
    progress: &'a dyn Progress,
    step: &'a str,
}

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.progress.finished(self.step);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Progress for Recorder {
        fn started(&self, step: &str, total: Option<u64>) {
            self.0
                .lock()
                .unwrap()
                .push(format!("started {step} {total:?}"));
        }
        fn advanced(&self, step: &str, done: u64, _total: Option<u64>) {
            self.0
                .lock()
                .unwrap()
                .push(format!("advanced {step} {done}"));
        }
        fn finished(&self, step: &str) {
            self.0.lock().unwrap().push(format!("finished {step}"));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_pushes_its_bytes_while_it_runs_and_at_its_end() {
        let recorder = Recorder::default();
        let meter = StageMeter::new("source");
        let counted = meter.clone();
        let value = observed(&recorder, "shop.dump", Some(10), meter, async move {
            for _ in 0..5 {
                counted.add_out(2);
                tokio::time::sleep(PROGRESS_INTERVAL).await;
            }
            "done"
        })
        .await;
        assert_eq!(value, "done");
        let events = recorder.0.into_inner().unwrap();
        assert_eq!(events.first().unwrap(), "started shop.dump Some(10)");
        assert_eq!(events.last().unwrap(), "finished shop.dump");
        assert_eq!(events[events.len() - 2], "advanced shop.dump 10");
        let advances = events.iter().filter(|e| e.starts_with("advanced")).count();
        assert!(advances >= 5, "pushed while running: {events:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_dropped_before_its_end_is_still_finished() {
        let recorder = Recorder::default();
        let meter = StageMeter::new("source");
        let step = observed(
            &recorder,
            "shop.dump",
            None,
            meter,
            std::future::pending::<()>(),
        );
        let cut = tokio::time::timeout(PROGRESS_INTERVAL * 3, step).await;
        assert!(cut.is_err(), "the step never ends by itself");
        let events = recorder.0.into_inner().unwrap();
        assert_eq!(events.first().unwrap(), "started shop.dump None");
        assert_eq!(events.last().unwrap(), "finished shop.dump", "{events:?}");
    }
}
