//! One artifact in and out of a repository: the pipelines every backup kind shares.
//!
//! In: source → SHA-256 (raw) → zstd → age → SHA-256 (stored) → object. Out: object → SHA-256
//! (stored) → age → zstd → SHA-256 (raw) → sink, and both digests and sizes are checked against
//! the manifest's entry before the caller trusts what it got.

use std::sync::Arc;

use age::x25519;

use crate::crypto::{fingerprint, Keyring};
use crate::error::{Error, Result};
use crate::pipeline::{Pipeline, PipelineReport, Sink, Source};
use crate::progress::Progress;
use crate::repository::{ArtifactEntry, Repository};
use crate::transform::{Compress, Decompress, Decrypt, Digest, DigestHandle, Encrypt};

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
    let mut runnable = pipeline
        .then(stored)
        .into(repo.storage().sink(&key, size_hint));
    progress.begin(name, size_hint, runnable.meters()[0].clone());
    let result = runnable.run().await;
    progress.end(name);
    result?;
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
/// checks both digests and sizes against the entry. A mismatch is an error naming the artifact.
pub async fn open<S: Sink>(
    repo: &Repository,
    id: &str,
    entry: &ArtifactEntry,
    keyring: Option<Arc<Keyring>>,
    sink: S,
    progress: &dyn Progress,
) -> Result<PipelineReport> {
    let key = Repository::artifact_key(id, &entry.name);
    let (stored, stored_digest) = Digest::new();
    let (raw, raw_digest) = Digest::new();
    let mut pipeline = Pipeline::new(repo.storage().source(&key)).then(stored);
    if !entry.recipients.is_empty() {
        let keyring = keyring.ok_or(Error::NoIdentities)?;
        pipeline = pipeline.then(Decrypt::with(keyring).expecting(entry.recipients.clone()));
    }
    if entry.compression == "zstd" {
        pipeline = pipeline.then(Decompress::new());
    }
    let mut runnable = pipeline.then(raw).into(sink);
    progress.begin(
        &entry.name,
        Some(entry.stored_size),
        runnable.meters()[0].clone(),
    );
    let result = runnable.run().await;
    progress.end(&entry.name);
    let report = result?;
    let stored = digest_of(&stored_digest, "stored")?;
    let raw = digest_of(&raw_digest, "raw")?;
    let mismatch = |what: &str, expected: String, found: String| Error::ArtifactMismatch {
        artifact: key.clone(),
        detail: format!("{what} is {found}, the manifest says {expected}"),
    };
    if stored.bytes != entry.stored_size || stored.sha256 != entry.stored_sha256 {
        return Err(mismatch(
            "the stored object",
            format!(
                "{} bytes, sha256 {}",
                entry.stored_size, entry.stored_sha256
            ),
            format!("{} bytes, sha256 {}", stored.bytes, stored.sha256),
        ));
    }
    if raw.bytes != entry.raw_size || raw.sha256 != entry.raw_sha256 {
        return Err(mismatch(
            "the decrypted content",
            format!("{} bytes, sha256 {}", entry.raw_size, entry.raw_sha256),
            format!("{} bytes, sha256 {}", raw.bytes, raw.sha256),
        ));
    }
    Ok(report)
}
