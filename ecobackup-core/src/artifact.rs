//! One artifact in and out of a repository: the pipelines every backup kind shares.
//!
//! In: source → SHA-256 (raw) → zstd → age → SHA-256 (stored) → object. Out: object → check of
//! SHA-256 and size (stored) → age → zstd → check (raw) → sink; each check holds back the last
//! chunk until it passed, so a sink never sees the end of an artifact that differs from its
//! manifest entry.

use std::sync::Arc;

use age::x25519;

use crate::crypto::{fingerprint, Keyring};
use crate::error::{Error, Result};
use crate::pipeline::{Pipeline, PipelineReport, Sink, Source};
use crate::progress::{observed, Progress};
use crate::repository::{ArtifactEntry, Repository};
use crate::transform::{
    Compress, Decompress, Decrypt, Digest, DigestCheck, DigestHandle, DigestResult, Encrypt,
};

/// How artifacts are sealed: the zstd level and the age recipients.
#[derive(Clone)]
pub struct Sealing {
    /// zstd level (1–22).
    pub level: i32,
    /// Recipients; empty only when the operator asked for no encryption.
    pub recipients: Vec<x25519::Recipient>,
}

impl Sealing {
    /// The file name suffix of an artifact sealed this way: `.zst.age` (or `.zst`).
    pub fn suffix(&self) -> &'static str {
        if self.recipients.is_empty() {
            ".zst"
        } else {
            ".zst.age"
        }
    }
}

fn digest_of(handle: &DigestHandle, what: &str) -> Result<crate::transform::DigestResult> {
    handle.result().ok_or_else(|| Error::StageVanished {
        stage: format!("sha256 of the {what} bytes"),
    })
}

/// Streams `source` into the artifact `name` of backup `id`; returns its manifest entry.
pub async fn store(
    repo: &Repository,
    id: &str,
    name: &str,
    source: impl Source + 'static,
    sealing: &Sealing,
    progress: &dyn Progress,
) -> Result<ArtifactEntry> {
    let sink = |key: &str, size_hint| repo.storage().sink(key, size_hint).deleting_if_abandoned();
    store_into(sink, id, name, source, sealing, progress).await
}

/// [`store`] into the sink `sink(key, size_hint)` makes: one repository's object, or a
/// [`crate::pipeline::Tee`] of several.
pub async fn store_into<S: Sink>(
    sink: impl FnOnce(&str, Option<u64>) -> S,
    id: &str,
    name: &str,
    source: impl Source + 'static,
    sealing: &Sealing,
    progress: &dyn Progress,
) -> Result<ArtifactEntry> {
    let size_hint = source.describe().size_hint;
    let (raw, raw_digest) = Digest::new();
    let (stored, stored_digest) = Digest::new();
    // The size hint is an estimate: never pledge it to zstd.
    let mut pipeline = Pipeline::new(source)
        .then(raw)
        .then(Compress::new(sealing.level));
    if !sealing.recipients.is_empty() {
        pipeline = pipeline.then(Encrypt::to(sealing.recipients.clone())?);
    }
    let key = Repository::artifact_key(id, name);
    let mut runnable = pipeline.then(stored).into(sink(&key, size_hint));
    let meter = runnable.meters()[0].clone();
    observed(progress, name, size_hint, meter, runnable.run()).await?;
    let raw = digest_of(&raw_digest, "raw")?;
    let stored = digest_of(&stored_digest, "stored")?;
    Ok(ArtifactEntry {
        name: name.to_owned(),
        stored_size: stored.bytes,
        stored_sha256: stored.sha256,
        raw_size: raw.bytes,
        raw_sha256: raw.sha256,
        compression: "zstd".to_owned(),
        recipients: sealing.recipients.iter().map(fingerprint).collect(),
    })
}

/// Streams the artifact `entry` of backup `id` into `sink`, decrypted and decompressed, and
/// checks both digests and sizes against the entry. The checks are stages of the pipeline that
/// hold back the last chunk until they pass ([`DigestCheck`]): on a mismatch the sink sees an
/// error instead of an end, so it never commits (pg_restore is killed before its transaction
/// can). A mismatch is an error naming the artifact.
pub async fn open<S: Sink>(
    repo: &Repository,
    id: &str,
    entry: &ArtifactEntry,
    keyring: Option<Arc<Keyring>>,
    sink: S,
    progress: &dyn Progress,
) -> Result<PipelineReport> {
    let key = Repository::artifact_key(id, &entry.name);
    let stored = DigestCheck::expecting(
        &key,
        "the stored object",
        DigestResult {
            sha256: entry.stored_sha256.clone(),
            bytes: entry.stored_size,
        },
    );
    let raw = DigestCheck::expecting(
        &key,
        "the decrypted content",
        DigestResult {
            sha256: entry.raw_sha256.clone(),
            bytes: entry.raw_size,
        },
    );
    let mut pipeline = Pipeline::new(repo.storage().source(&key)).then(stored);
    if !entry.recipients.is_empty() {
        let keyring = keyring.ok_or(Error::NoIdentities)?;
        pipeline = pipeline.then(Decrypt::with(keyring).expecting(entry.recipients.clone()));
    }
    if entry.compression == "zstd" {
        pipeline = pipeline.then(Decompress::new());
    }
    let mut runnable = pipeline.then(raw).into(sink);
    let meter = runnable.meters()[0].clone();
    observed(
        progress,
        &entry.name,
        Some(entry.stored_size),
        meter,
        runnable.run(),
    )
    .await
}
