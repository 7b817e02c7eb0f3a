//! Sinks for tests: one that keeps everything in memory, one that only counts.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;

use ecobackup_core::pipeline::{ByteStream, Sink, SinkReceipt};
use ecobackup_core::Result;

/// What happened to a [`MemorySink`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SinkState {
    /// Nothing written yet.
    #[default]
    Empty,
    /// Receiving (a failed run that was not aborted stays here: a bug).
    Writing,
    /// The stream ended cleanly; the data is committed.
    Committed(Vec<u8>),
    /// `abort` was called; nothing is committed.
    Aborted,
}

/// Keeps the stream in memory and commits it only when the stream ended cleanly.
#[derive(Clone, Default)]
pub struct MemorySink {
    state: Arc<Mutex<SinkState>>,
}

impl MemorySink {
    /// An empty sink. Clones share the state, so keep one to inspect after the run.
    pub fn new() -> Self {
        Self::default()
    }

    /// The sink's state.
    pub fn state(&self) -> SinkState {
        self.state.lock().expect("sink state").clone()
    }

    /// The committed bytes, if the write committed.
    pub fn committed(&self) -> Option<Vec<u8>> {
        match self.state() {
            SinkState::Committed(data) => Some(data),
            _ => None,
        }
    }
}

#[async_trait]
impl Sink for MemorySink {
    async fn write(&mut self, mut input: ByteStream) -> Result<SinkReceipt> {
        *self.state.lock().expect("sink state") = SinkState::Writing;
        let mut data = Vec::new();
        while let Some(chunk) = input.next().await {
            data.extend_from_slice(&chunk?);
        }
        let bytes = data.len() as u64;
        *self.state.lock().expect("sink state") = SinkState::Committed(data);
        Ok(SinkReceipt {
            bytes,
            location: Some("memory".into()),
        })
    }

    async fn abort(&mut self) {
        *self.state.lock().expect("sink state") = SinkState::Aborted;
    }
}

/// Counts bytes and chunks, keeping none of them: for streaming gigabytes in tests and benches.
#[derive(Clone, Default)]
pub struct CountingSink {
    counts: Arc<Mutex<(u64, u64, bool)>>,
}

impl CountingSink {
    /// A sink at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes received.
    pub fn bytes(&self) -> u64 {
        self.counts.lock().expect("counts").0
    }

    /// Chunks received.
    pub fn chunks(&self) -> u64 {
        self.counts.lock().expect("counts").1
    }

    /// Whether `abort` was called.
    pub fn aborted(&self) -> bool {
        self.counts.lock().expect("counts").2
    }
}

#[async_trait]
impl Sink for CountingSink {
    async fn write(&mut self, mut input: ByteStream) -> Result<SinkReceipt> {
        while let Some(chunk) = input.next().await {
            let chunk = chunk?;
            let mut counts = self.counts.lock().expect("counts");
            counts.0 += chunk.len() as u64;
            counts.1 += 1;
        }
        Ok(SinkReceipt {
            bytes: self.bytes(),
            location: None,
        })
    }

    async fn abort(&mut self) {
        self.counts.lock().expect("counts").2 = true;
    }
}
