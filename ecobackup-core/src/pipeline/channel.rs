//! The plumbing between stages: bounded channels that cannot be mistaken for a clean end, and
//! the synchronous reader/writer pair that lets CPU-heavy stages run on blocking threads.
//!
//! A channel carries [`Frame`]s. A stream built from one ends cleanly only after an explicit
//! [`Frame::End`]; if the sending task vanishes (panic, cancellation) the receiver yields
//! [`Error::StageVanished`] instead, so a sink can never commit a silently truncated artifact.

use std::io::{self, BufRead, Read, Write};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::{ByteStream, StageMeter, CHUNK_SIZE};
use crate::error::{Error, Result};

/// How many chunks may wait between two stages. With ~1 MiB chunks this bounds the memory of
/// one link to a few MiB whatever the size of the data.
pub(crate) const CHANNEL_DEPTH: usize = 1;

/// One message between stages.
pub(crate) enum Frame {
    /// A chunk, or the error that ends the stream.
    Item(Result<Bytes>),
    /// The sender finished: everything was sent.
    End,
}

/// Turns the receiving half of a frame channel into a [`ByteStream`] that ends cleanly only on
/// [`Frame::End`] and stops after the first error.
pub(crate) fn frames_into_stream(rx: mpsc::Receiver<Frame>, stage: String) -> ByteStream {
    let state = Some((rx, stage));
    Box::pin(futures::stream::unfold(state, |state| async move {
        let (mut rx, stage) = state?;
        match rx.recv().await {
            Some(Frame::Item(Ok(chunk))) => Some((Ok(chunk), Some((rx, stage)))),
            Some(Frame::Item(Err(e))) => Some((Err(e), None)),
            Some(Frame::End) => None,
            None => Some((Err(Error::StageVanished { stage }), None)),
        }
    }))
}

/// Runs `input` in a task of its own, forwarding into a bounded channel; returns the receiving
/// end. This is what makes every stage run concurrently with its neighbours.
pub(crate) fn pump(
    mut input: ByteStream,
    stage: String,
    tasks: &mut tokio::task::JoinSet<()>,
) -> ByteStream {
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    tasks.spawn(async move {
        while let Some(item) = input.next().await {
            let failed = item.is_err();
            if tx.send(Frame::Item(item)).await.is_err() || failed {
                return;
            }
        }
        let _ = tx.send(Frame::End).await;
    });
    frames_into_stream(rx, stage)
}

/// Runs `work` on a blocking thread, reading the input through a [`StageReader`] and writing
/// through a [`StageWriter`], so that CPU-heavy stages (zstd, age, SHA-256) never stall the
/// async executor and overlap with I/O. Busy time excludes the time spent waiting on either
/// neighbour.
///
/// If the input fails, its error is forwarded unchanged (not wrapped in this stage's error);
/// if the output is dropped (the pipeline was cancelled), the work stops quietly.
pub fn blocking_stage<F>(input: ByteStream, meter: StageMeter, work: F) -> ByteStream
where
    F: FnOnce(&mut StageReader, &mut StageWriter) -> Result<()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let stage = meter.name().to_owned();
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut reader = StageReader::new(input, handle);
        let mut writer = StageWriter::new(tx.clone());
        let started = Instant::now();
        let result = work(&mut reader, &mut writer).and_then(|()| writer.flush_chunk());
        meter.add_busy(
            started
                .elapsed()
                .saturating_sub(reader.waited + writer.waited),
        );
        let frame = match (result, reader.upstream_error.take()) {
            (_, Some(upstream)) => Frame::Item(Err(upstream)),
            (Err(_), None) if writer.closed => return,
            (Err(e), None) => Frame::Item(Err(e)),
            (Ok(()), None) => Frame::End,
        };
        let _ = tx.blocking_send(frame);
    });
    frames_into_stream(rx, stage)
}

/// Runs `work` on a blocking thread writing through a [`StageWriter`]: a source whose bytes
/// synchronous code makes (a tar of a directory tree). Its stream ends cleanly only when `work`
/// returned `Ok`; an error of `work` ends it with that error; if the pipeline stops reading
/// (it failed elsewhere), the writer's next write fails and the work stops quietly.
pub fn blocking_source<F>(name: impl Into<String>, work: F) -> ByteStream
where
    F: FnOnce(&mut StageWriter) -> Result<()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    tokio::task::spawn_blocking(move || {
        let mut writer = StageWriter::new(tx.clone());
        let frame = match work(&mut writer).and_then(|()| writer.flush_chunk()) {
            Err(_) if writer.closed => return,
            Err(e) => Frame::Item(Err(e)),
            Ok(()) => Frame::End,
        };
        let _ = tx.blocking_send(frame);
    });
    frames_into_stream(rx, name.into())
}

/// Blocking, buffered reader over a [`ByteStream`], for use inside [`blocking_stage`].
pub struct StageReader {
    input: ByteStream,
    handle: Handle,
    current: Bytes,
    eof: bool,
    upstream_error: Option<Error>,
    waited: Duration,
}

impl StageReader {
    fn new(input: ByteStream, handle: Handle) -> Self {
        StageReader {
            input,
            handle,
            current: Bytes::new(),
            eof: false,
            upstream_error: None,
            waited: Duration::ZERO,
        }
    }

    /// Fetches the next chunk from upstream into `current`; false at the end of the input.
    fn refill(&mut self) -> io::Result<bool> {
        while self.current.is_empty() && !self.eof {
            let started = Instant::now();
            let next = self.handle.block_on(self.input.next());
            self.waited += started.elapsed();
            match next {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => {
                    self.upstream_error = Some(e);
                    self.eof = true;
                    return Err(io::Error::other("the previous pipeline stage failed"));
                }
                None => self.eof = true,
            }
        }
        Ok(!self.current.is_empty())
    }

    /// The next whole chunk, without copying; `None` at the end of the input.
    pub fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        if self.refill()? {
            Ok(Some(std::mem::take(&mut self.current)))
        } else {
            Ok(None)
        }
    }

    /// Up to `n` bytes from the front of the input without consuming them (fewer only at the end).
    pub fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        self.refill()?;
        while self.current.len() < n && !self.eof {
            let mut joined = BytesMut::from(&self.current[..]);
            self.current = Bytes::new();
            if self.refill()? {
                joined.extend_from_slice(&self.current);
            }
            self.current = joined.freeze();
        }
        Ok(&self.current[..n.min(self.current.len())])
    }
}

impl Read for StageReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for StageReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.refill()?;
        Ok(&self.current)
    }

    fn consume(&mut self, amt: usize) {
        let _ = self.current.split_to(amt);
    }
}

/// Blocking writer that coalesces output into ~1 MiB chunks and sends them downstream, for use
/// inside [`blocking_stage`].
pub struct StageWriter {
    tx: mpsc::Sender<Frame>,
    buffer: BytesMut,
    closed: bool,
    waited: Duration,
}

impl StageWriter {
    fn new(tx: mpsc::Sender<Frame>) -> Self {
        StageWriter {
            tx,
            buffer: BytesMut::new(),
            closed: false,
            waited: Duration::ZERO,
        }
    }

    /// Sends a whole chunk downstream without copying it (after anything buffered).
    pub fn send_chunk(&mut self, chunk: Bytes) -> io::Result<()> {
        self.flush_buffer()?;
        self.send(chunk)
    }

    fn send(&mut self, chunk: Bytes) -> io::Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let sent = self.tx.blocking_send(Frame::Item(Ok(chunk)));
        self.waited += started.elapsed();
        if sent.is_err() {
            self.closed = true;
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the next pipeline stage stopped",
            ));
        }
        Ok(())
    }

    fn flush_buffer(&mut self) -> io::Result<()> {
        let chunk = self.buffer.split().freeze();
        self.send(chunk)
    }

    fn flush_chunk(&mut self) -> Result<()> {
        self.flush_buffer()
            .map_err(|e| Error::io("handing data to the next stage", e))
    }
}

impl Write for StageWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.buffer.capacity() == 0 {
            self.buffer.reserve(CHUNK_SIZE);
        }
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= CHUNK_SIZE {
            self.flush_buffer()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Coalesces a stream of small chunks (a pipe yields 64 KiB, COPY yields a row) into chunks of
/// at least [`CHUNK_SIZE`], passing large chunks through untouched.
pub(crate) fn coalesce(input: ByteStream) -> ByteStream {
    let state = Some((input, BytesMut::new()));
    Box::pin(futures::stream::unfold(state, |state| async move {
        let (mut input, mut buffer) = state?;
        loop {
            match input.next().await {
                Some(Ok(chunk)) if buffer.is_empty() && chunk.len() >= CHUNK_SIZE => {
                    return Some((Ok(chunk), Some((input, buffer))));
                }
                Some(Ok(chunk)) => {
                    buffer.extend_from_slice(&chunk);
                    if buffer.len() >= CHUNK_SIZE {
                        let out = buffer.split().freeze();
                        return Some((Ok(out), Some((input, buffer))));
                    }
                }
                Some(Err(e)) => return Some((Err(e), None)),
                None if buffer.is_empty() => return None,
                None => return Some((Ok(buffer.split().freeze()), None)),
            }
        }
    }))
}
