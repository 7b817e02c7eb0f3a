//! Per-stage counters: bytes in, bytes out, busy time.
//!
//! A [`StageMeter`] is cheap to clone and safe to read while the pipeline runs, so a progress
//! bar can poll it; at the end the pipeline turns every meter into a [`StageReport`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

/// Live counters of one pipeline stage.
#[derive(Clone, Debug)]
pub struct StageMeter {
    inner: Arc<Counters>,
}

#[derive(Debug)]
struct Counters {
    name: String,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    busy_nanos: AtomicU64,
}

impl StageMeter {
    /// A meter for the stage called `name`, all counters at zero.
    pub fn new(name: impl Into<String>) -> Self {
        StageMeter {
            inner: Arc::new(Counters {
                name: name.into(),
                bytes_in: AtomicU64::new(0),
                bytes_out: AtomicU64::new(0),
                busy_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// The stage's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Counts bytes the stage consumed.
    pub fn add_in(&self, n: u64) {
        self.inner.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts bytes the stage produced.
    pub fn add_out(&self, n: u64) {
        self.inner.bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds time the stage spent working (not waiting for its neighbours).
    pub fn add_busy(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.inner.busy_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Bytes consumed so far.
    pub fn bytes_in(&self) -> u64 {
        self.inner.bytes_in.load(Ordering::Relaxed)
    }

    /// Bytes produced so far.
    pub fn bytes_out(&self) -> u64 {
        self.inner.bytes_out.load(Ordering::Relaxed)
    }

    /// Busy time so far.
    pub fn busy(&self) -> Duration {
        Duration::from_nanos(self.inner.busy_nanos.load(Ordering::Relaxed))
    }

    /// A snapshot of the counters.
    pub fn report(&self) -> StageReport {
        StageReport {
            name: self.inner.name.clone(),
            bytes_in: self.bytes_in(),
            bytes_out: self.bytes_out(),
            busy: self.busy(),
        }
    }
}

/// What one stage did, as reported at the end of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StageReport {
    /// The stage's name (`source`, `zstd`, `age-encrypt`, `sha256`, `sink`, …).
    pub name: String,
    /// Bytes the stage consumed (0 for a source).
    pub bytes_in: u64,
    /// Bytes the stage produced (for a sink: bytes it stored).
    pub bytes_out: u64,
    /// Time the stage spent working rather than waiting for its neighbours.
    #[serde(with = "duration_secs")]
    pub busy: Duration,
}

/// Serialises a [`Duration`] as fractional seconds, the unit dashboards expect.
pub(crate) mod duration_secs {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}
