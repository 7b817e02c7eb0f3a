//! Sources and sinks over local files, pipes and any `AsyncRead` / `AsyncWrite`.
//!
//! [`FileSink`] is atomic: it writes a hidden temporary file beside the target, fsyncs it and
//! renames it into place only after the whole stream ended cleanly; on abort (or drop) the
//! temporary file is removed. [`WriterSink`] streams into a writer it cannot take back (stdout,
//! a child's stdin): use it only where partial output is acceptable or detected downstream.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use crate::error::{Error, IoContext, Result};
use crate::pipeline::{ByteStream, Sink, SinkReceipt, Source, SourceInfo, CHUNK_SIZE};

/// Reads from any `AsyncRead`: stdin, a child's stdout, a socket.
pub struct ReaderSource<R> {
    name: String,
    reader: Option<R>,
    size_hint: Option<u64>,
}

impl<R: AsyncRead + Send + Unpin + 'static> ReaderSource<R> {
    /// A source called `name` reading `reader` to its end.
    pub fn new(name: impl Into<String>, reader: R) -> Self {
        ReaderSource {
            name: name.into(),
            reader: Some(reader),
            size_hint: None,
        }
    }

    /// Records the expected size (for multipart sizing and progress).
    pub fn with_size_hint(mut self, size: u64) -> Self {
        self.size_hint = Some(size);
        self
    }
}

#[async_trait]
impl<R: AsyncRead + Send + Unpin + 'static> Source for ReaderSource<R> {
    async fn open(&mut self) -> Result<ByteStream> {
        let reader = self.reader.take().ok_or_else(|| {
            Error::io(
                format!("opening {}", self.name),
                std::io::Error::other("source already opened"),
            )
        })?;
        let name = self.name.clone();
        Ok(Box::pin(
            ReaderStream::with_capacity(reader, CHUNK_SIZE)
                .map(move |r| r.with_context(|| format!("reading {name}"))),
        ))
    }

    fn describe(&self) -> SourceInfo {
        SourceInfo {
            name: self.name.clone(),
            size_hint: self.size_hint,
        }
    }
}

/// Reads a local file; its size is the size hint.
pub struct FileSource {
    path: PathBuf,
    size: Option<u64>,
}

impl FileSource {
    /// A source reading `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let size = std::fs::metadata(&path).ok().map(|m| m.len());
        FileSource { path, size }
    }
}

#[async_trait]
impl Source for FileSource {
    async fn open(&mut self) -> Result<ByteStream> {
        let file = tokio::fs::File::open(&self.path)
            .await
            .with_context(|| format!("opening {}", self.path.display()))?;
        ReaderSource::new(self.path.display().to_string(), file)
            .open()
            .await
    }

    fn describe(&self) -> SourceInfo {
        SourceInfo {
            name: self.path.display().to_string(),
            size_hint: self.size,
        }
    }
}

/// Writes into any `AsyncWrite`, then flushes and shuts it down. Cannot take back what it wrote.
pub struct WriterSink<W> {
    name: String,
    writer: W,
}

impl<W: AsyncWrite + Send + Unpin> WriterSink<W> {
    /// A sink called `name` writing into `writer`.
    pub fn new(name: impl Into<String>, writer: W) -> Self {
        WriterSink {
            name: name.into(),
            writer,
        }
    }
}

#[async_trait]
impl<W: AsyncWrite + Send + Unpin> Sink for WriterSink<W> {
    async fn write(&mut self, input: ByteStream) -> Result<SinkReceipt> {
        let bytes = copy_into(input, &mut self.writer, &self.name).await?;
        self.writer
            .shutdown()
            .await
            .with_context(|| format!("closing {}", self.name))?;
        Ok(SinkReceipt {
            bytes,
            location: Some(self.name.clone()),
        })
    }

    async fn abort(&mut self) {
        // Whatever was written stays written; the caller sees the error.
        let _ = self.writer.flush().await;
    }
}

async fn copy_into<W: AsyncWrite + Unpin>(
    mut input: ByteStream,
    writer: &mut W,
    name: &str,
) -> Result<u64> {
    let mut bytes = 0u64;
    while let Some(chunk) = input.next().await {
        let chunk = chunk?;
        writer
            .write_all(&chunk)
            .await
            .with_context(|| format!("writing {name}"))?;
        bytes += chunk.len() as u64;
    }
    writer
        .flush()
        .await
        .with_context(|| format!("writing {name}"))?;
    Ok(bytes)
}

/// Writes a local file atomically: temp file, fsync, rename, fsync of the directory.
/// The file is created with mode 0600 (it may hold decrypted data).
pub struct FileSink {
    path: PathBuf,
    temp: Option<PathBuf>,
}

impl FileSink {
    /// A sink that will create `path` once the stream ended cleanly.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSink {
            path: path.into(),
            temp: None,
        }
    }

    fn temp_path(&self) -> PathBuf {
        let name = self
            .path
            .file_name()
            .map_or_else(|| "ecobackup".into(), |n| n.to_string_lossy().into_owned());
        let suffix: u64 = rand::random();
        self.path
            .with_file_name(format!(".{name}.tmp-{suffix:016x}"))
    }
}

#[async_trait]
impl Sink for FileSink {
    async fn write(&mut self, input: ByteStream) -> Result<SinkReceipt> {
        let temp = self.temp_path();
        let display = self.path.display().to_string();
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .await
            .with_context(|| format!("creating a temporary file beside {display}"))?;
        self.temp = Some(temp.clone());
        let bytes = copy_into(input, &mut file, &display).await?;
        file.sync_all()
            .await
            .with_context(|| format!("syncing {display}"))?;
        drop(file);
        tokio::fs::rename(&temp, &self.path)
            .await
            .with_context(|| format!("renaming the temporary file to {display}"))?;
        self.temp = None;
        sync_parent(&self.path).await?;
        Ok(SinkReceipt {
            bytes,
            location: Some(display),
        })
    }

    async fn abort(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = tokio::fs::remove_file(temp).await;
        }
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = std::fs::remove_file(temp);
        }
    }
}

async fn sync_parent(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let dir = tokio::fs::File::open(&parent)
        .await
        .with_context(|| format!("opening {}", parent.display()))?;
    dir.sync_all()
        .await
        .with_context(|| format!("syncing {}", parent.display()))
}

/// Collects a (small) stream in memory: catalogs, manifests, test data. Refuses more than
/// `limit` bytes, so a wrong object cannot exhaust memory.
#[derive(Clone, Debug)]
pub struct VecSink {
    contents: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    limit: usize,
}

impl Default for VecSink {
    fn default() -> Self {
        VecSink {
            contents: Default::default(),
            limit: 64 << 20,
        }
    }
}

impl VecSink {
    /// Where the bytes end up, once `write` returned.
    pub fn contents(&self) -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
        self.contents.clone()
    }
}

#[async_trait]
impl Sink for VecSink {
    async fn write(&mut self, mut input: ByteStream) -> Result<SinkReceipt> {
        let mut buffer = Vec::new();
        while let Some(chunk) = input.next().await {
            let chunk = chunk?;
            if buffer.len() + chunk.len() > self.limit {
                return Err(Error::io(
                    "reading a small object into memory",
                    std::io::Error::other(format!("it is larger than {} bytes", self.limit)),
                ));
            }
            buffer.extend_from_slice(&chunk);
        }
        let bytes = buffer.len() as u64;
        if let Ok(mut contents) = self.contents.lock() {
            *contents = buffer;
        }
        Ok(SinkReceipt {
            bytes,
            location: None,
        })
    }

    async fn abort(&mut self) {}
}

/// Streams `input` into `consume`, a blocking reader of the whole stream (a tar unpacker) run
/// on a blocking thread; returns the bytes fed and what `consume` returned. `feeding` names a
/// failure to write to it, `running` a panic of its thread. The stream's own error (a digest
/// mismatch, a download failure) comes first, unless it is only `consume` having stopped
/// reading: then `consume`'s own error says why.
pub async fn feed_blocking<T: Send + 'static>(
    mut input: ByteStream,
    feeding: &str,
    running: &str,
    consume: impl FnOnce(tokio_util::io::SyncIoBridge<tokio::io::DuplexStream>) -> Result<T>
        + Send
        + 'static,
) -> Result<(u64, T)> {
    let (mut writer, reader) = tokio::io::duplex(1 << 20);
    let consuming =
        tokio::task::spawn_blocking(move || consume(tokio_util::io::SyncIoBridge::new(reader)));
    let mut bytes = 0u64;
    let mut failure = None;
    while let Some(chunk) = input.next().await {
        match chunk {
            Ok(chunk) => {
                bytes += chunk.len() as u64;
                if let Err(e) = writer.write_all(&chunk).await {
                    failure = Some(Error::io(feeding, e));
                    break;
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    drop(writer);
    let consumed = consuming
        .await
        .map_err(|e| Error::io(running, std::io::Error::other(e)))?;
    if let Some(e) = failure {
        return Err(match (e, consumed) {
            (Error::Io { .. }, Err(consume_error)) => consume_error,
            (e, _) => e,
        });
    }
    Ok((bytes, consumed?))
}
