//! Sources for tests: given bytes in chosen chunks, generated rows of any size, and a source
//! that fails after N bytes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use ecobackup_core::pipeline::{ByteStream, Source, SourceInfo};
use ecobackup_core::{Error, Result};

use crate::data::RowGenerator;

/// Yields `data` cut into the given chunk sizes (cycled), to exercise chunk boundaries.
pub struct ChunkedSource {
    data: Bytes,
    sizes: Vec<usize>,
}

impl ChunkedSource {
    /// `data` in chunks of `sizes[0]`, `sizes[1]`, …, cycling; a size of 0 counts as 1.
    pub fn new(data: impl Into<Bytes>, sizes: Vec<usize>) -> Self {
        ChunkedSource {
            data: data.into(),
            sizes: if sizes.is_empty() {
                vec![64 * 1024]
            } else {
                sizes
            },
        }
    }
}

#[async_trait]
impl Source for ChunkedSource {
    async fn open(&mut self) -> Result<ByteStream> {
        let (data, sizes) = (self.data.clone(), self.sizes.clone());
        let mut chunks = Vec::new();
        let mut offset = 0;
        for size in sizes.iter().cycle() {
            if offset >= data.len() {
                break;
            }
            let end = (offset + (*size).max(1)).min(data.len());
            chunks.push(Ok(data.slice(offset..end)));
            offset = end;
        }
        Ok(Box::pin(futures::stream::iter(chunks)))
    }

    fn describe(&self) -> SourceInfo {
        SourceInfo {
            name: "chunked".into(),
            size_hint: Some(self.data.len() as u64),
        }
    }
}

/// Streams `total` bytes of COPY-text rows without holding more than a pool of 8 MiB: chunks
/// are slices of the pool at pseudo-random offsets, so the data is realistic but cheap to make.
pub struct GeneratedSource {
    total: u64,
    chunk: usize,
    dropped: Arc<AtomicBool>,
}

impl GeneratedSource {
    /// `total` bytes in chunks of `chunk` bytes.
    pub fn new(total: u64, chunk: usize) -> Self {
        GeneratedSource {
            total,
            chunk: chunk.max(1),
            dropped: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Becomes true once the stream was dropped (finished or cancelled).
    pub fn dropped_flag(&self) -> Arc<AtomicBool> {
        self.dropped.clone()
    }
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl Source for GeneratedSource {
    async fn open(&mut self) -> Result<ByteStream> {
        const POOL: usize = 8 << 20;
        let pool = Bytes::from(RowGenerator::new(42).bytes(POOL + self.chunk));
        let (total, chunk) = (self.total, self.chunk);
        let guard = SetOnDrop(self.dropped.clone());
        let state = (0u64, 0x2545_F491_4F6C_DD1Du64, guard);
        Ok(Box::pin(futures::stream::unfold(
            state,
            move |(sent, mut rng, guard)| {
                let pool = pool.clone();
                async move {
                    if sent >= total {
                        return None;
                    }
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let len = chunk.min(usize::try_from(total - sent).unwrap_or(chunk));
                    let offset = (rng % POOL as u64) as usize;
                    let piece = pool.slice(offset..offset + len);
                    Some((Ok(piece), (sent + len as u64, rng, guard)))
                }
            },
        )))
    }

    fn describe(&self) -> SourceInfo {
        SourceInfo {
            name: "generated".into(),
            size_hint: Some(self.total),
        }
    }
}

/// Yields generated rows and then fails after `fail_after` bytes, like a pg_dump killed
/// mid-stream.
pub struct FailingSource {
    fail_after: usize,
}

impl FailingSource {
    /// Fails after `fail_after` bytes.
    pub fn new(fail_after: usize) -> Self {
        FailingSource { fail_after }
    }
}

#[async_trait]
impl Source for FailingSource {
    async fn open(&mut self) -> Result<ByteStream> {
        let data = Bytes::from(RowGenerator::new(7).bytes(self.fail_after));
        let items: Vec<Result<Bytes>> = vec![
            Ok(data),
            Err(Error::io(
                "reading the test source",
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "source killed mid-stream"),
            )),
        ];
        Ok(Box::pin(futures::stream::iter(items)))
    }

    fn describe(&self) -> SourceInfo {
        SourceInfo {
            name: "failing".into(),
            size_hint: None,
        }
    }
}
