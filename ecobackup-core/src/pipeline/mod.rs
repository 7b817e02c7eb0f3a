//! Streaming pipelines: a [`Source`], any number of [`Transform`]s, one [`Sink`].
//!
//! ```no_run
//! # use ecobackup_core::pipeline::*;
//! # use ecobackup_core::transform::{Compress, Encrypt};
//! # use ecobackup_core::io::{ReaderSource, FileSink};
//! # async fn demo(recipients: Vec<age::x25519::Recipient>) -> ecobackup_core::Result<()> {
//! let report = Pipeline::new(ReaderSource::new("stdin", tokio::io::stdin()))
//!     .then(Compress::new(3))
//!     .then(Encrypt::to(recipients)?)
//!     .into(FileSink::new("out.zst.age"))
//!     .run()
//!     .await?;
//! println!("stored {} bytes in {:?}", report.receipt.bytes, report.elapsed);
//! # Ok(()) }
//! ```
//!
//! Each stage runs as its own task (CPU-heavy ones on blocking threads) and stages are joined by
//! bounded channels, so zstd and age overlap with I/O and memory stays bounded whatever the size
//! of the data. The first error ends every stage and the sink is aborted: nothing is ever left
//! half-written under a final name.

mod channel;
mod meter;
mod tee;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use serde::Serialize;

pub use channel::{blocking_source, blocking_stage, StageReader, StageWriter};
pub use meter::{StageMeter, StageReport};
pub use tee::{BranchEnd, BranchOutcome, Tee, TeeOutcome, BRANCH_DEPTH, BRANCH_STALL};

use crate::error::Result;

/// The size chunks are coalesced to between stages: large enough to amortise per-chunk costs,
/// small enough that a handful in flight per stage keeps memory in the low MiB.
pub const CHUNK_SIZE: usize = 1 << 20;

/// A stream of byte chunks; the first `Err` ends it.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// What a source knows about itself before it starts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SourceInfo {
    /// A short name for reports and progress bars (`stdin`, `shop.dump`, …).
    pub name: String,
    /// The expected number of bytes, when known (used to size multipart uploads and ETAs).
    pub size_hint: Option<u64>,
}

/// Where a pipeline's bytes come from: a file, a child process's stdout, an object.
#[async_trait]
pub trait Source: Send {
    /// Starts producing bytes. Called once.
    async fn open(&mut self) -> Result<ByteStream>;
    /// Name and size estimate.
    fn describe(&self) -> SourceInfo;
}

/// A stage that turns one byte stream into another (compression, encryption, digests).
pub trait Transform: Send {
    /// A short name for reports (`zstd`, `age-encrypt`, `sha256`).
    fn name(&self) -> &'static str;
    /// Wires the stage onto `input`. `meter` is this stage's; the pipeline counts bytes in and
    /// out, the stage adds its busy time (see [`blocking_stage`], which does it for you).
    fn apply(self: Box<Self>, input: ByteStream, meter: StageMeter) -> ByteStream;
}

/// Where a pipeline's bytes end up. A sink commits only after its input ended cleanly.
#[async_trait]
pub trait Sink: Send {
    /// Consumes the whole stream and commits it; returns the first error of the stream as is.
    async fn write(&mut self, input: ByteStream) -> Result<SinkReceipt>;
    /// Undoes whatever `write` left behind (temp file, multipart upload). Called by the pipeline
    /// after any failure; must be safe to call when nothing was written.
    async fn abort(&mut self);
}

/// What a sink stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SinkReceipt {
    /// Bytes committed.
    pub bytes: u64,
    /// Where they went (a path, an object key), when that means something.
    pub location: Option<String>,
}

/// A source, its transforms, and (once [`Pipeline::into`] is called) a sink.
pub struct Pipeline {
    source: Box<dyn Source>,
    transforms: Vec<Box<dyn Transform>>,
}

impl Pipeline {
    /// Starts a pipeline reading from `source`.
    pub fn new(source: impl Source + 'static) -> Self {
        Pipeline {
            source: Box::new(source),
            transforms: Vec::new(),
        }
    }

    /// Appends a transform.
    #[allow(clippy::should_implement_trait)]
    pub fn then(mut self, transform: impl Transform + 'static) -> Self {
        self.transforms.push(Box::new(transform));
        self
    }

    /// Appends a boxed transform (for stages chosen at run time).
    pub fn then_boxed(mut self, transform: Box<dyn Transform>) -> Self {
        self.transforms.push(transform);
        self
    }

    /// Ends the pipeline in `sink`.
    #[allow(clippy::should_implement_trait)]
    pub fn into<S: Sink>(self, sink: S) -> RunnablePipeline<S> {
        RunnablePipeline {
            pipeline: self,
            sink,
            meters: Vec::new(),
        }
    }
}

/// A complete pipeline, ready to [`run`](RunnablePipeline::run).
pub struct RunnablePipeline<S> {
    pipeline: Pipeline,
    sink: S,
    meters: Vec<StageMeter>,
}

/// What a pipeline run did.
#[derive(Clone, Debug, Serialize)]
pub struct PipelineReport {
    /// The source's description.
    pub source: SourceInfo,
    /// One entry per stage, source first and sink last.
    pub stages: Vec<StageReport>,
    /// Wall-clock time of the whole run.
    #[serde(with = "meter::duration_secs")]
    pub elapsed: Duration,
    /// What the sink committed.
    pub receipt: SinkReceipt,
}

impl<S: Sink> RunnablePipeline<S> {
    /// The live meters of every stage, source first and sink last, for progress reporting.
    /// Call before [`run`](Self::run); the meters keep counting while it runs.
    pub fn meters(&mut self) -> Vec<StageMeter> {
        if self.meters.is_empty() {
            self.meters.push(StageMeter::new("source"));
            for t in &self.pipeline.transforms {
                self.meters.push(StageMeter::new(t.name()));
            }
            self.meters.push(StageMeter::new("sink"));
        }
        self.meters.clone()
    }

    /// Runs every stage to completion. On any failure the sink is aborted and the first error
    /// is returned; nothing is committed.
    pub async fn run(mut self) -> Result<PipelineReport> {
        let started = Instant::now();
        let meters = self.meters();
        let (source_meter, sink_meter) = (&meters[0], &meters[meters.len() - 1]);
        let Pipeline {
            mut source,
            transforms,
        } = self.pipeline;
        let info = source.describe();
        let mut tasks = tokio::task::JoinSet::new();

        let result = async {
            let opened = source.open().await?;
            let mut stream = channel::pump(
                channel::coalesce(Metered::output(
                    opened,
                    source_meter.clone(),
                    Some(source_meter.clone()),
                )),
                info.name.clone(),
                &mut tasks,
            );
            for (transform, meter) in transforms.into_iter().zip(&meters[1..]) {
                let input = Metered::input(stream, meter.clone(), None);
                let output =
                    Metered::output(transform.apply(input, meter.clone()), meter.clone(), None);
                stream = channel::pump(output, meter.name().to_owned(), &mut tasks);
            }
            // The sink's busy time is its wall time minus the time it waited for input.
            let waiting = StageMeter::new("sink-wait");
            let sink_started = Instant::now();
            let receipt = self
                .sink
                .write(Metered::input(
                    stream,
                    sink_meter.clone(),
                    Some(waiting.clone()),
                ))
                .await;
            sink_meter.add_busy(sink_started.elapsed().saturating_sub(waiting.busy()));
            receipt
        }
        .await;

        tasks.abort_all();
        match result {
            Ok(receipt) => {
                sink_meter.add_out(receipt.bytes);
                Ok(PipelineReport {
                    source: info,
                    stages: meters.iter().map(StageMeter::report).collect(),
                    elapsed: started.elapsed(),
                    receipt,
                })
            }
            Err(e) => {
                self.sink.abort().await;
                Err(e)
            }
        }
    }
}

/// Counts the bytes flowing through a stream into a meter, and optionally adds the time spent
/// inside `poll_next` to `poll_time`'s busy counter (a source's work; a sink's waiting).
struct Metered {
    inner: ByteStream,
    meter: StageMeter,
    count_as_input: bool,
    poll_time: Option<StageMeter>,
}

impl Metered {
    fn input(inner: ByteStream, meter: StageMeter, poll_time: Option<StageMeter>) -> ByteStream {
        Box::pin(Metered {
            inner,
            meter,
            count_as_input: true,
            poll_time,
        })
    }

    fn output(inner: ByteStream, meter: StageMeter, poll_time: Option<StageMeter>) -> ByteStream {
        Box::pin(Metered {
            inner,
            meter,
            count_as_input: false,
            poll_time,
        })
    }
}

impl Stream for Metered {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let started = Instant::now();
        let polled = self.inner.as_mut().poll_next(cx);
        if let Some(poll_time) = &self.poll_time {
            poll_time.add_busy(started.elapsed());
        }
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            let n = chunk.len() as u64;
            if self.count_as_input {
                self.meter.add_in(n);
            } else {
                self.meter.add_out(n);
            }
        }
        polled
    }
}
