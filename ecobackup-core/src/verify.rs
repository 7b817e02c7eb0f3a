//! Verification: read every stored byte of a backup, authenticate it, decompress it, and check
//! both digests and sizes against the manifest — without restoring, and without the data
//! touching local disk (the plaintext goes into a sink that only counts it).
//!
//! The archived WAL is checked by [`crate::wal::verify_wal`]; [`wal_requirements`] says which
//! WAL each physical backup needs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use serde::Serialize;

use crate::artifact;
use crate::crypto::Keyring;
use crate::error::{Error, Result};
use crate::pipeline::{ByteStream, Sink, SinkReceipt};
use crate::progress::Progress;
use crate::repository::{BadBackup, Manifest, Repository};

/// What went wrong with an artifact, in the words an operator searches for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The object is not in the repository.
    Missing,
    /// The object ends early.
    Truncated,
    /// A byte was changed (authentication failed, or a digest differs).
    Tampered,
    /// None of the identities can decrypt it.
    WrongKey,
    /// It could not be read for another reason (network, permissions, …).
    Unreadable,
}

/// The verdict on one artifact.
#[derive(Clone, Debug, Serialize)]
pub struct ArtifactCheck {
    /// The artifact's name (`shop.dump.zst.age`).
    pub name: String,
    /// `None` when it is intact.
    pub failure: Option<Failure>,
    /// The error, one line, when it is not intact.
    pub error: Option<String>,
    /// Bytes read from the repository.
    pub stored_bytes: u64,
    /// Bytes after decryption and decompression.
    pub raw_bytes: u64,
}

/// The verdict on one backup.
#[derive(Clone, Debug, Serialize)]
pub struct BackupCheck {
    /// The backup id.
    pub id: String,
    /// Whether the manifest is usable and every artifact is intact.
    pub ok: bool,
    /// Why the manifest cannot be used (then there are no artifact checks).
    pub manifest_error: Option<String>,
    /// One entry per artifact of the manifest.
    pub artifacts: Vec<ArtifactCheck>,
    /// What is intact but worth a look: artifacts encrypted to other keys than the
    /// repository's marker records, or not encrypted at all.
    pub warnings: Vec<String>,
}

impl BackupCheck {
    /// The failed verdict on a backup whose manifest cannot be used.
    pub fn bad_manifest(bad: &BadBackup) -> BackupCheck {
        BackupCheck {
            id: bad.id.clone(),
            ok: false,
            manifest_error: Some(format!("{}: {}", bad.key, bad.reason)),
            artifacts: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// Warnings for artifacts encrypted to another key set than `expected` (the marker's
/// recipients; nothing to compare with when it records none).
pub fn recipient_warnings(manifest: &Manifest, expected: &[String]) -> Vec<String> {
    if expected.is_empty() {
        return Vec::new();
    }
    let expected: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
    let mut by_set: BTreeMap<BTreeSet<&str>, Vec<&str>> = BTreeMap::new();
    for a in &manifest.artifacts {
        let set: BTreeSet<&str> = a.recipients.iter().map(String::as_str).collect();
        if set != expected {
            by_set.entry(set).or_default().push(&a.name);
        }
    }
    let list = |set: &BTreeSet<&str>| set.iter().copied().collect::<Vec<_>>().join(", ");
    by_set
        .iter()
        .map(|(set, names)| {
            let to = if set.is_empty() {
                "is not encrypted".to_owned()
            } else {
                format!("is encrypted to {}", list(set))
            };
            format!(
                "{} {to}, but the repository's ecobackup.json records the recipients {}: if the keys were not rotated on purpose, check [encryption] recipients",
                names.join(", "),
                list(&expected)
            )
        })
        .collect()
}

/// Counts the plaintext and drops it.
#[derive(Default)]
struct Discard;

#[async_trait]
impl Sink for Discard {
    async fn write(&mut self, mut input: ByteStream) -> Result<SinkReceipt> {
        let mut bytes = 0;
        while let Some(chunk) = input.next().await {
            bytes += chunk?.len() as u64;
        }
        Ok(SinkReceipt {
            bytes,
            location: None,
        })
    }

    async fn abort(&mut self) {}
}

/// The [`Failure`] an error means.
pub(crate) fn classify(error: &Error) -> Failure {
    match error {
        Error::NotFound { .. } => Failure::Missing,
        Error::Truncated { .. } => Failure::Truncated,
        Error::Tampered { .. }
        | Error::ArtifactMismatch { .. }
        | Error::NotEncrypted { .. }
        | Error::Decompress { .. } => Failure::Tampered,
        Error::WrongKey { .. } => Failure::WrongKey,
        _ => Failure::Unreadable,
    }
}

/// Verifies every artifact of `manifest`. Only a failure to run at all (no identity for an
/// encrypted backup) is an `Err`; damaged artifacts are reported in the result.
pub async fn verify_backup(
    repo: &Repository,
    manifest: &Manifest,
    keyring: Option<Arc<Keyring>>,
    progress: &dyn Progress,
) -> Result<BackupCheck> {
    let encrypted = manifest.artifacts.iter().any(|a| !a.recipients.is_empty());
    if encrypted && keyring.is_none() {
        return Err(Error::NoIdentities);
    }
    // The stored sizes tell a cut object from a changed one: age cannot, within its last chunk.
    let folder = Repository::artifact_key(&manifest.id, "");
    let sizes: std::collections::HashMap<String, u64> = repo
        .storage()
        .list(&folder)
        .await?
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    let mut artifacts = Vec::new();
    for entry in &manifest.artifacts {
        let key = Repository::artifact_key(&manifest.id, &entry.name);
        let failure_of = |e: &Error| match sizes.get(&key) {
            None => Failure::Missing,
            Some(&size) if size < entry.stored_size => Failure::Truncated,
            Some(&size) if size > entry.stored_size => Failure::Tampered,
            Some(_) => classify(e),
        };
        let outcome = artifact::open(
            repo,
            &manifest.id,
            entry,
            keyring.clone(),
            Discard,
            progress,
        )
        .await;
        artifacts.push(match outcome {
            Ok(report) => ArtifactCheck {
                name: entry.name.clone(),
                failure: None,
                error: None,
                stored_bytes: entry.stored_size,
                raw_bytes: report.receipt.bytes,
            },
            Err(e) => ArtifactCheck {
                name: entry.name.clone(),
                failure: Some(failure_of(&e)),
                error: Some(e.to_string()),
                stored_bytes: 0,
                raw_bytes: 0,
            },
        });
    }
    Ok(BackupCheck {
        id: manifest.id.clone(),
        ok: artifacts.iter().all(|a| a.failure.is_none()),
        manifest_error: None,
        artifacts,
        warnings: recipient_warnings(manifest, &repo.marker().recipients),
    })
}

/// The WAL each physical backup needs, from its manifest's timeline and start LSN (backups
/// without them need none).
pub fn wal_requirements(manifests: &[Manifest]) -> Vec<crate::wal::WalRequirement> {
    manifests
        .iter()
        .filter(|m| m.kind == crate::repository::BackupKind::Physical)
        .filter_map(|m| {
            Some(crate::wal::WalRequirement {
                label: m.id.clone(),
                timeline: m.source.timeline?,
                start: m.source.start_lsn.as_deref()?.parse().ok()?,
            })
        })
        .collect()
}
