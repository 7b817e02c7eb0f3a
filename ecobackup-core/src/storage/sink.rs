//! Streaming an artifact into one object.
//!
//! Parts are all the same size (Cloudflare R2 requires it), chosen from the source's size
//! estimate so that [`MAX_PARTS`] always suffice. Input smaller than one part is written with a
//! single PUT. On any failure the multipart upload is aborted, so no parts are left billed and
//! nothing appears under the final key.

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use object_store::{MultipartUpload, ObjectStoreExt, PutPayload};

use super::Storage;
use crate::error::{Error, Result};
use crate::pipeline::{ByteStream, Sink, SinkReceipt};

/// S3's limit on parts per upload.
pub const MAX_PARTS: u64 = 10_000;
const MIB: u64 = 1 << 20;
/// The smallest part: S3 requires 5 MiB for every part but the last.
const MIN_PART: u64 = 8 * MIB;
/// The part size when nothing is known about the size: 10,000 × 16 MiB = 156 GiB.
const UNKNOWN_SIZE_PART: u64 = 16 * MIB;
/// S3's largest part.
const MAX_PART: u64 = 5 * 1024 * MIB;
/// Parts in flight are held in memory: with big parts, fewer run at once.
const MAX_IN_FLIGHT_BYTES: u64 = 256 * MIB;

/// The part size for an upload of about `size_hint` bytes: twice the estimate must fit in
/// [`MAX_PARTS`] parts (estimates are rough; compressed output is usually far smaller), rounded
/// up to whole MiB, at least 8 MiB. A 2 TB source gets 400 MiB parts.
pub fn part_size_for(size_hint: Option<u64>) -> u64 {
    let Some(size) = size_hint else {
        return UNKNOWN_SIZE_PART;
    };
    let needed = size.saturating_mul(2).div_ceil(MAX_PARTS);
    needed
        .div_ceil(MIB)
        .saturating_mul(MIB)
        .clamp(MIN_PART, MAX_PART)
}

/// A [`Sink`] that writes one object.
pub struct ObjectSink {
    storage: Storage,
    key: String,
    part_size: u64,
    concurrency: usize,
    /// The clean-up of the operation that made this sink: a cancelled operation waits for
    /// the abort of an upload its sink left unfinished.
    cleanup: Option<crate::cancel::Cleanup>,
    /// Whether an object whose last request was in flight when the sink went away is deleted
    /// ([`ObjectSink::deleting_if_abandoned`]).
    delete_if_abandoned: bool,
}

impl ObjectSink {
    pub(crate) fn new(
        storage: Storage,
        key: &str,
        size_hint: Option<u64>,
        concurrency: usize,
    ) -> Self {
        let part_size = part_size_for(size_hint);
        let memory_bound = usize::try_from(MAX_IN_FLIGHT_BYTES / part_size)
            .unwrap_or(1)
            .max(1);
        ObjectSink {
            storage,
            key: key.to_owned(),
            part_size,
            concurrency: concurrency.clamp(1, memory_bound),
            cleanup: crate::cancel::Cleanup::current(),
            delete_if_abandoned: false,
        }
    }

    /// Deletes the object if the sink goes away (a cancelled or dropped operation) while the
    /// request that commits it — the single PUT, or the multipart upload's completion — is in
    /// flight: the store may still commit it after the caller has moved on. For a backup's
    /// artifacts, whose keys are the backup's own and which are useless without a manifest.
    pub(crate) fn deleting_if_abandoned(mut self) -> Self {
        self.delete_if_abandoned = true;
        self
    }

    /// A guard over a committing request, for [`ObjectSink::deleting_if_abandoned`].
    fn committing(&self) -> Committing {
        Committing {
            armed: self
                .delete_if_abandoned
                .then(|| (self.storage.clone(), self.key.clone())),
            cleanup: self.cleanup.clone(),
        }
    }

    /// The part size this sink uses.
    pub fn part_size(&self) -> u64 {
        self.part_size
    }

    async fn single_put(&self, chunks: Vec<Bytes>) -> Result<u64> {
        let payload: PutPayload = chunks.into_iter().collect();
        let bytes = payload.content_length() as u64;
        let path = self.storage.path(&self.key);
        self.storage.before_local_write(&self.key)?;
        let committing = self.committing();
        self.storage
            .write_store()
            .put(&path, payload)
            .await
            .map_err(|e| self.storage.error("uploading", &self.key, e))?;
        committing.done();
        self.storage.after_local_write(&self.key)?;
        Ok(bytes)
    }

    async fn multipart(&self, first: Vec<Bytes>, input: ByteStream) -> Result<u64> {
        let path = self.storage.path(&self.key);
        self.storage.before_local_write(&self.key)?;
        let upload = self
            .storage
            .write_store()
            .put_multipart(&path)
            .await
            .map_err(|e| self.storage.error("starting the upload of", &self.key, e))?;
        // The guard owns the upload until it is complete: whatever ends this function early —
        // an error, or the caller dropping the future — the upload is aborted.
        let mut guard = AbortOnDrop {
            upload: Some(upload),
            key: self.key.clone(),
            cleanup: self.cleanup.clone(),
        };
        let outcome = self.send_parts(&mut guard, first, input).await;
        let mut upload = guard.upload.take().expect("held until here");
        match outcome {
            Ok(bytes) => {
                self.storage.after_local_write(&self.key)?;
                Ok(bytes)
            }
            Err(e) => {
                if let Err(abort) = upload.abort().await {
                    tracing::warn!(key = %self.key, error = %abort, "could not abort the multipart upload; the bucket's lifecycle rule for incomplete uploads will remove it");
                }
                Err(e)
            }
        }
    }

    /// Cuts the stream into equal parts, uploads at most `concurrency` at once, and completes
    /// the upload.
    async fn send_parts(
        &self,
        guard: &mut AbortOnDrop,
        first: Vec<Bytes>,
        mut input: ByteStream,
    ) -> Result<u64> {
        let part_size = usize::try_from(self.part_size).unwrap_or(usize::MAX);
        let part_error = |e| self.storage.error("uploading a part of", &self.key, e);
        let mut parts = PartCutter::new(part_size);
        let mut in_flight = tokio::task::JoinSet::new();
        let mut bytes = 0u64;
        let mut pending: Vec<Bytes> = first;
        loop {
            for chunk in pending.drain(..) {
                bytes += chunk.len() as u64;
                parts.push(chunk);
            }
            if bytes.div_ceil(self.part_size) > MAX_PARTS {
                return Err(Error::Storage {
                    op: "uploading",
                    key: self.key.clone(),
                    repo: self.storage.url().to_owned(),
                    detail: format!(
                        "the artifact outgrew {MAX_PARTS} parts of {} MiB: the source's size estimate was far too low",
                        self.part_size / MIB
                    ),
                    fault: crate::error::StorageFault::Other,
                });
            }
            let last = match input.next().await {
                Some(chunk) => {
                    pending.push(chunk?);
                    false
                }
                None => true,
            };
            while let Some(part) = parts.next_part(last) {
                while in_flight.len() >= self.concurrency {
                    join_one(&mut in_flight).await.map_err(part_error)?;
                }
                let upload = guard.upload.as_mut().expect("held");
                in_flight.spawn(upload.put_part(part));
            }
            if last {
                break;
            }
        }
        while !in_flight.is_empty() {
            join_one(&mut in_flight).await.map_err(part_error)?;
        }
        let committing = self.committing();
        guard
            .upload
            .as_mut()
            .expect("held")
            .complete()
            .await
            .map_err(|e| self.storage.error("completing the upload of", &self.key, e))?;
        committing.done();
        Ok(bytes)
    }
}

/// Waits for one part upload; a panicked or cancelled task counts as a failed part.
async fn join_one(
    tasks: &mut tokio::task::JoinSet<object_store::Result<()>>,
) -> object_store::Result<()> {
    match tasks.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(e)) => Err(object_store::Error::Generic {
            store: "ecobackup",
            source: Box::new(e),
        }),
        None => Ok(()),
    }
}

/// Cuts a stream of chunks into parts of exactly `size` bytes (the last may be shorter),
/// without copying: chunks are split where a part ends.
struct PartCutter {
    size: usize,
    chunks: Vec<Bytes>,
    buffered: usize,
}

impl PartCutter {
    fn new(size: usize) -> Self {
        PartCutter {
            size,
            chunks: Vec::new(),
            buffered: 0,
        }
    }

    fn push(&mut self, chunk: Bytes) {
        self.buffered += chunk.len();
        self.chunks.push(chunk);
    }

    /// The next full part; with `last`, also the remainder.
    fn next_part(&mut self, last: bool) -> Option<PutPayload> {
        if self.buffered == 0 || (self.buffered < self.size && !last) {
            return None;
        }
        let mut part = Vec::new();
        let mut wanted = self.size.min(self.buffered);
        self.buffered -= wanted;
        let mut rest = std::mem::take(&mut self.chunks).into_iter();
        while wanted > 0 {
            let mut chunk = rest.next().expect("buffered bytes are in the chunks");
            if chunk.len() > wanted {
                let tail = chunk.split_off(wanted);
                self.chunks.push(tail);
            }
            wanted -= chunk.len();
            part.push(chunk);
        }
        self.chunks.extend(rest);
        Some(part.into_iter().collect())
    }
}

/// Aborts a multipart upload that was not completed when its sink went away (a caller's
/// timeout, a cancelled task): the abort runs in the background, so no parts stay billed.
struct AbortOnDrop {
    upload: Option<Box<dyn MultipartUpload>>,
    key: String,
    cleanup: Option<crate::cancel::Cleanup>,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(mut upload) = self.upload.take() else {
            return;
        };
        let key = std::mem::take(&mut self.key);
        let warn_key = key.clone();
        let spawned = crate::cancel::Cleanup::spawn(self.cleanup.as_ref(), async move {
            if let Err(e) = upload.abort().await {
                tracing::warn!(key = %key, error = %e, "could not abort a cancelled multipart upload");
            }
        });
        if !spawned {
            tracing::warn!(key = %warn_key, "a cancelled multipart upload is left pending (no runtime to abort it)");
        }
    }
}

/// Deletes an object whose committing request was dropped in flight: the store may have
/// received it whole and commit it anyway. The delete is sent twice, the second time after
/// [`LATE_COMMIT`], for a commit that lands after the first.
struct Committing {
    armed: Option<(Storage, String)>,
    cleanup: Option<crate::cancel::Cleanup>,
}

/// How long after a dropped request its object is deleted a second time.
const LATE_COMMIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Committing {
    /// The request succeeded: the object is the caller's to keep. (A request that failed
    /// drops the guard without this, and its object is deleted too: the store may have
    /// committed it before the failure reached us, and nothing will reference it.)
    fn done(mut self) {
        self.armed = None;
    }
}

impl Drop for Committing {
    fn drop(&mut self) {
        let Some((storage, key)) = self.armed.take() else {
            return;
        };
        let warn_key = key.clone();
        let spawned = crate::cancel::Cleanup::spawn(self.cleanup.as_ref(), async move {
            for pause in [std::time::Duration::ZERO, LATE_COMMIT] {
                tokio::time::sleep(pause).await;
                if let Err(e) = storage.delete(&key).await {
                    tracing::warn!(key = %key, error = %e, "could not delete the object of a cancelled upload; `prune` reports it as debris");
                    return;
                }
            }
        });
        if !spawned {
            tracing::warn!(key = %warn_key, "the object of a cancelled upload may be stored (no runtime to delete it); `prune` reports it as debris");
        }
    }
}

#[async_trait]
impl Sink for ObjectSink {
    async fn write(&mut self, mut input: ByteStream) -> Result<SinkReceipt> {
        // Buffer up to one part: what fits in one part needs no multipart upload.
        let mut first = Vec::new();
        let mut buffered = 0u64;
        while buffered < self.part_size {
            match input.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    buffered += chunk.len() as u64;
                    first.push(chunk);
                }
                None => {
                    let bytes = self.single_put(first).await?;
                    return Ok(self.receipt(bytes));
                }
            }
        }
        let bytes = self.multipart(first, input).await?;
        Ok(self.receipt(bytes))
    }

    async fn abort(&mut self) {
        // `write` aborts its own multipart upload on every failure path, and a single PUT
        // either happened whole or not at all: nothing is left to undo here.
    }
}

impl ObjectSink {
    fn receipt(&self, bytes: u64) -> SinkReceipt {
        SinkReceipt {
            bytes,
            location: Some(format!(
                "{}/{}",
                self.storage.url().trim_end_matches('/'),
                self.key
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_cut_exactly_at_the_part_size() {
        let mut cutter = PartCutter::new(10);
        for chunk in [&b"abcdefg"[..], b"hijklmnopqrstuvwxy", b"z"] {
            cutter.push(Bytes::copy_from_slice(chunk));
        }
        let sizes = |p: PutPayload| p.content_length();
        assert_eq!(cutter.next_part(false).map(sizes), Some(10));
        assert_eq!(cutter.next_part(false).map(sizes), Some(10));
        assert_eq!(
            cutter.next_part(false).map(sizes),
            None,
            "6 bytes wait for more"
        );
        let rest: Vec<u8> = cutter
            .next_part(true)
            .unwrap()
            .iter()
            .flat_map(|b| b.to_vec())
            .collect();
        assert_eq!(rest, b"uvwxyz");
        assert!(cutter.next_part(true).is_none());
    }

    #[test]
    fn parts_always_suffice() {
        assert_eq!(part_size_for(None), 16 * MIB);
        assert_eq!(part_size_for(Some(0)), MIN_PART);
        assert_eq!(part_size_for(Some(300 * MIB)), MIN_PART);
        let two_tb = 2_000_000_000_000u64;
        let part = part_size_for(Some(two_tb));
        assert_eq!(part % MIB, 0, "whole MiB");
        assert!(
            two_tb.div_ceil(part) * 2 <= MAX_PARTS,
            "2 TB in {} parts",
            two_tb.div_ceil(part)
        );
        assert_eq!(part_size_for(Some(u64::MAX)), MAX_PART);
    }
}
