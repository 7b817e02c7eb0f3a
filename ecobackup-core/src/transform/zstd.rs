//! zstd compression and decompression.
//!
//! Compression uses zstd's multithreaded mode (one worker per core by default) and writes a
//! content checksum into each frame, so `zstd -d` alone can also tell a damaged plaintext.

use std::io::{Read, Write};

use ::zstd::stream::raw::CParameter;

use crate::error::Error;
use crate::pipeline::{blocking_stage, ByteStream, StageMeter, Transform};

/// The default compression level: fast, and within a few percent of the best ratio for dumps.
pub const DEFAULT_LEVEL: i32 = 3;

/// Multithreaded zstd cuts its input into jobs of 4× the window (8 MiB at level 3) and keeps
/// several jobs' input and output buffers alive per worker: ~90 MiB at level 3 on two cores.
/// 2 MiB jobs that overlap by half a window keep the ratio of the default (measured: 523 vs
/// 524 MiB for 2 GiB of rows) at about half the memory. Higher levels have bigger windows, where
/// small jobs would cost ratio, so they keep zstd's own job size.
const SMALL_JOB_SIZE: u32 = 2 << 20;
const SMALL_JOB_MAX_LEVEL: i32 = 6;

/// The four bytes every zstd frame starts with.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// True when `prefix` starts with a zstd frame's magic number.
pub fn is_zstd_frame(prefix: &[u8]) -> bool {
    prefix.starts_with(&ZSTD_MAGIC)
}

/// zstd compression at a given level.
#[derive(Clone, Debug)]
pub struct Compress {
    level: i32,
    workers: u32,
    size_hint: Option<u64>,
}

impl Compress {
    /// Compresses at `level` (1–22; 3 is the default) with one worker per core, plus one.
    ///
    /// The extra worker matters: zstd hands out jobs in order, so when the encryption thread
    /// preempts a worker, the others idle until that job finishes. With one job more than
    /// cores there is always work queued; measured on 2 cores, compress + encrypt went from
    /// 83% to 92–100% of zstd-alone throughput (docs/BENCHMARKS.md).
    pub fn new(level: i32) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Compress {
            level,
            workers: u32::try_from(cores + 1).unwrap_or(2),
            size_hint: None,
        }
    }

    /// Sets the number of zstd worker threads (0: compress on the stage's own thread).
    pub fn workers(mut self, workers: u32) -> Self {
        self.workers = workers;
        self
    }

    /// Tells zstd the exact input size, which it records in the frame header.
    /// Only set it when exact: a wrong size makes compression fail.
    pub fn pledged_size(mut self, size: u64) -> Self {
        self.size_hint = Some(size);
        self
    }
}

impl Transform for Compress {
    fn name(&self) -> &'static str {
        "zstd"
    }

    fn apply(self: Box<Self>, input: ByteStream, meter: StageMeter) -> ByteStream {
        blocking_stage(input, meter, move |reader, writer| {
            let failed = |e: std::io::Error| Error::Compress {
                detail: e.to_string(),
            };
            let mut encoder =
                ::zstd::stream::write::Encoder::new(writer, self.level).map_err(failed)?;
            encoder.include_checksum(true).map_err(failed)?;
            if self.workers > 0 {
                encoder.multithread(self.workers).map_err(failed)?;
                if self.level <= SMALL_JOB_MAX_LEVEL {
                    encoder
                        .set_parameter(CParameter::JobSize(SMALL_JOB_SIZE))
                        .map_err(failed)?;
                    encoder
                        .set_parameter(CParameter::OverlapSizeLog(8))
                        .map_err(failed)?;
                }
            }
            if let Some(size) = self.size_hint {
                encoder.set_pledged_src_size(Some(size)).map_err(failed)?;
            }
            let mut consumed = 0u64;
            while let Some(chunk) = reader.next_chunk().map_err(failed)? {
                consumed += chunk.len() as u64;
                encoder.write_all(&chunk).map_err(failed)?;
            }
            // The multithreaded encoder does not always enforce the pledge, and a frame whose
            // header states the wrong size does not decompress: never let one be stored.
            if let Some(pledged) = self.size_hint.filter(|&p| p != consumed) {
                return Err(Error::Compress {
                    detail: format!("the input was {consumed} bytes, {pledged} were pledged"),
                });
            }
            encoder.finish().map_err(failed)?;
            Ok(())
        })
    }
}

/// zstd decompression of one or more concatenated frames.
#[derive(Clone, Debug, Default)]
pub struct Decompress {
    auto: bool,
}

impl Decompress {
    /// Decompresses; input that is not zstd fails with [`Error::Decompress`].
    pub fn new() -> Self {
        Decompress { auto: false }
    }

    /// Decompresses when the input starts with a zstd frame, passes it through unchanged
    /// otherwise (for `ecobackup decrypt` on artifacts stored with `--no-compress`).
    pub fn auto() -> Self {
        Decompress { auto: true }
    }
}

impl Transform for Decompress {
    fn name(&self) -> &'static str {
        "unzstd"
    }

    fn apply(self: Box<Self>, input: ByteStream, meter: StageMeter) -> ByteStream {
        blocking_stage(input, meter, move |reader, writer| {
            let failed = |e: std::io::Error| Error::Decompress {
                detail: e.to_string(),
            };
            let prefix = reader.peek(ZSTD_MAGIC.len()).map_err(failed)?;
            if self.auto && !is_zstd_frame(prefix) {
                while let Some(chunk) = reader.next_chunk().map_err(failed)? {
                    writer.send_chunk(chunk).map_err(failed)?;
                }
                return Ok(());
            }
            if prefix.is_empty() {
                return Err(Error::Decompress {
                    detail: "the input is empty, not even one zstd frame".into(),
                });
            }
            let mut decoder = ::zstd::stream::read::Decoder::with_buffer(reader).map_err(failed)?;
            let mut buffer = vec![0u8; 256 * 1024];
            loop {
                let n = decoder.read(&mut buffer).map_err(failed)?;
                if n == 0 {
                    return Ok(());
                }
                writer.write_all(&buffer[..n]).map_err(failed)?;
            }
        })
    }
}
