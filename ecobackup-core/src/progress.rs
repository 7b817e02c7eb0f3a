//! Progress of long steps, for whoever is watching: a terminal's progress bars, a service's
//! metrics, or nobody.

use crate::pipeline::StageMeter;

/// Told when a long step (one artifact's pipeline, a download) starts and ends. The meter
/// counts the step's input bytes while it runs; `total` is the expected count, when known.
pub trait Progress: Send + Sync {
    /// A step started.
    fn begin(&self, step: &str, total: Option<u64>, meter: StageMeter);
    /// The step ended (well or not).
    fn end(&self, step: &str);
    /// A one-line note about what is happening (`downloading to a temporary file for --jobs 4`).
    fn note(&self, message: &str);
}

/// Progress that nobody watches.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _step: &str, _total: Option<u64>, _meter: StageMeter) {}
    fn end(&self, _step: &str) {}
    fn note(&self, message: &str) {
        tracing::info!("{message}");
    }
}
