//! `restore_command`: one archived file back to where PostgreSQL asks for it, and the prefetch
//! of the segments after it.
//!
//! PostgreSQL ends recovery when the restore command fails normally, taking that for the end of
//! the archive; so a fetch tells apart [`Fetched::NotArchived`] (the file truly is not in the
//! archive) from every error (unreachable store, wrong key, tampered object, digest mismatch),
//! which the CLI turns into an exit status above 125 that stops recovery instead.
//!
//! A fetch reads the file's record and its signature (checked against the trusted signers:
//! forged WAL replayed into a restore could change any data), then takes the file from the
//! spool when a prefetch left it there, or downloads it: object → age → zstd → SHA-256 and size
//! checked against the record → a temporary file beside the destination, fsynced, renamed.

use crate::error::remedy;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::archive::{lookup, parse_object_key, read_record, record_key, StoredRecord, WalRecord};
use super::names::{Segment, WalFile};
use super::spool::{Spool, WAIT_FOR_DOWNLOAD};
use crate::crypto::{Keyring, TrustedSigners};
use crate::error::{Error, Result};
use crate::io::FileSink;
use crate::pipeline::{Pipeline, PipelineReport, Sink};
use crate::storage::Storage;
use crate::transform::{Decompress, Decrypt, DigestCheck, DigestResult};

/// How files are fetched.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct FetchOptions {
    /// Identities for encrypted files.
    pub keyring: Option<Arc<Keyring>>,
    /// Whose signatures on records are trusted (or that unsigned records are accepted).
    pub trust: TrustedSigners,
    /// Where prefetched segments are; `None`: no spool.
    pub spool: Option<Spool>,
}

impl FetchOptions {
    /// Fetches with `keyring`, trusting `trust`, using `spool` when given.
    pub fn new(
        keyring: Option<Arc<Keyring>>,
        trust: TrustedSigners,
        spool: Option<Spool>,
    ) -> FetchOptions {
        FetchOptions {
            keyring,
            trust,
            spool,
        }
    }
}

/// What a fetch did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fetched {
    /// The file was written to the destination.
    Restored {
        /// Its size (for a segment: the segment size).
        bytes: u64,
        /// Whether it came from the spool (prefetched) rather than the repository.
        from_spool: bool,
    },
    /// The archive does not hold it: no object under its name (a record whose object never
    /// arrived is a push cut short, and counts as not archived).
    NotArchived,
}

/// Fetches the archived file `name` into `dest` (relative paths are relative to the current
/// directory: the data directory under PostgreSQL). Nothing is left at `dest` unless the whole
/// file arrived and matched its record. Cancel safe: a cancelled fetch leaves no file.
pub async fn fetch(
    storage: &Storage,
    name: &str,
    dest: &Path,
    options: &FetchOptions,
) -> Result<Fetched> {
    let file = WalFile::parse(name).ok_or_else(|| Error::Wal {
        file: format!("wal-fetch {name}"),
        detail: "not the name of a file PostgreSQL archives; give %f".into(),
    })?;
    let Some(stored) = read_record(storage, &file).await? else {
        return not_archived_or_orphan(storage, &file).await;
    };
    let record = trusted(&file, &stored, &options.trust)?;
    if let Some(spool) = options.spool.as_ref().filter(|_| file.is_segment()) {
        spool.clean(&file);
        spool.wait_for_download(&file, WAIT_FOR_DOWNLOAD).await;
        if let Some(bytes) = spool.take(&record, &file, dest).await {
            return Ok(Fetched::Restored {
                bytes,
                from_spool: true,
            });
        }
    }
    match download(
        storage,
        &record,
        options.keyring.clone(),
        FileSink::new(dest),
    )
    .await
    {
        Ok(report) => Ok(Fetched::Restored {
            bytes: report.receipt.bytes,
            from_spool: false,
        }),
        Err(Error::NotFound { key, .. }) if key == record.object => Ok(Fetched::NotArchived),
        Err(e) => Err(e),
    }
}

/// No record: not archived, unless an object is there without it (then it cannot be checked).
async fn not_archived_or_orphan(storage: &Storage, file: &WalFile) -> Result<Fetched> {
    match lookup(storage, file).await?.object {
        None => hole_or_end(storage, file).await,
        Some(object) => Err(Error::Wal {
            file: format!("wal-fetch {file}"),
            detail: {
                let (key, record) = (&object.key, record_key(file));
                remedy!(
                    cli: "{key} exists without its record {record}: it cannot be authenticated, so it is not restored; check the repository with `ecobackup verify --wal`",
                    library: "{key} exists without its record {record}: it cannot be authenticated, so it is not restored; verify the WAL archive",
                )
            },
        }),
    }
}

/// A segment missing while later segments of its timeline are archived is a hole (a pruned or
/// lost file), not the end of the archive: exiting 1 would make PostgreSQL end recovery there
/// and promote, dropping everything after it. Anything else missing is the end.
async fn hole_or_end(storage: &Storage, file: &WalFile) -> Result<Fetched> {
    let WalFile::Segment { timeline, name } = file else {
        return Ok(Fetched::NotArchived);
    };
    let later = storage
        .list(&format!("wal/{timeline:08X}/"))
        .await?
        .into_iter()
        .filter_map(|o| parse_object_key(&o.key))
        .filter(|f| f.is_segment())
        .map(|f| f.name())
        .filter(|other| other.as_str() > name.as_str())
        .min();
    match later {
        None => Ok(Fetched::NotArchived),
        Some(later) => Err(Error::Wal {
            file: format!("wal-fetch {file}"),
            detail: remedy!(
                cli: "it is missing from the archive while {later} is there: a hole, not the end of the WAL, so recovery stops here instead of promoting; restore to a target before it, or from a backup that does not need it (`ecobackup verify --wal` lists the holes)",
                library: "it is missing from the archive while {later} is there: a hole, not the end of the WAL, so recovery stops here instead of promoting; restore to a target before it, or from a backup that does not need it (verifying the WAL archive lists the holes)",
            ),
        }),
    }
}

/// The record, once its signature passed.
fn trusted(file: &WalFile, stored: &StoredRecord, trust: &TrustedSigners) -> Result<WalRecord> {
    let key = record_key(file);
    trust
        .check(&key, &stored.bytes, stored.signature.as_deref())
        .map_err(|fault| Error::Untrusted {
            key,
            repo: String::from("the WAL archive"),
            detail: fault.to_string(),
        })?;
    Ok(stored.record.clone())
}

/// Streams `record`'s object into `sink`: decrypted, decompressed, its SHA-256 and size checked
/// (the last chunk is held back until they match, so the sink never completes a wrong file).
pub async fn download<S: Sink>(
    storage: &Storage,
    record: &WalRecord,
    keyring: Option<Arc<Keyring>>,
    sink: S,
) -> Result<PipelineReport> {
    let mut pipeline = Pipeline::new(storage.source(&record.object));
    if !record.recipients.is_empty() {
        let keyring = keyring.ok_or(Error::NoIdentities)?;
        pipeline = pipeline.then(Decrypt::with(keyring).expecting(record.recipients.clone()));
    }
    let check = DigestCheck::expecting(
        record.object.clone(),
        "the decrypted content",
        DigestResult {
            sha256: record.raw_sha256.clone(),
            bytes: record.raw_size,
        },
    );
    pipeline
        .then(Decompress::new())
        .then(check)
        .into(sink)
        .run()
        .await
}

/// The `count` segments after `file` on its timeline, for segments of `segment_size` bytes.
pub fn following_segments(file: &WalFile, segment_size: u64, count: usize) -> Vec<WalFile> {
    let Some(mut segment) =
        Segment::parse(&file.name(), segment_size).filter(|_| file.is_segment())
    else {
        return Vec::new();
    };
    let mut next = Vec::with_capacity(count);
    for _ in 0..count {
        segment = segment.next();
        if let Some(f) = WalFile::parse(&segment.file_name(segment_size)) {
            next.push(f);
        }
    }
    next
}

/// What a prefetch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefetchReport {
    /// Segments downloaded into the spool.
    pub fetched: Vec<String>,
    /// Segments not (yet) archived.
    pub not_archived: Vec<String>,
    /// Segments skipped: already spooled, or being downloaded by another process.
    pub skipped: Vec<String>,
    /// Segments that failed, with the error (the fetch that needs them downloads them itself).
    pub failed: Vec<(String, String)>,
}

/// Downloads `files` into `spool` (two at a time), each authenticated and checked like a
/// fetch, each claimed so that no other process downloads it at the same time. Failures are
/// reported, never raised: the fetch that needs a segment downloads it itself.
pub async fn prefetch(
    storage: &Storage,
    spool: &Spool,
    files: &[WalFile],
    options: &FetchOptions,
) -> PrefetchReport {
    let outcomes: Vec<(String, Result<Option<bool>>)> = futures::stream::iter(files.iter())
        .map(|file| async move {
            (
                file.name(),
                prefetch_one(storage, spool, file, options).await,
            )
        })
        .buffer_unordered(2)
        .collect()
        .await;
    let mut report = PrefetchReport::default();
    for (name, outcome) in outcomes {
        match outcome {
            Ok(Some(true)) => report.fetched.push(name),
            Ok(Some(false)) => report.skipped.push(name),
            Ok(None) => report.not_archived.push(name),
            Err(e) => report.failed.push((name, e.to_string())),
        }
    }
    for list in [
        &mut report.fetched,
        &mut report.skipped,
        &mut report.not_archived,
    ] {
        list.sort();
    }
    report
}

/// `Some(true)` fetched, `Some(false)` skipped, `None` not archived.
async fn prefetch_one(
    storage: &Storage,
    spool: &Spool,
    file: &WalFile,
    options: &FetchOptions,
) -> Result<Option<bool>> {
    if spool.has(file) {
        return Ok(Some(false));
    }
    let Some(_claim) = spool.claim(file) else {
        return Ok(Some(false));
    };
    let Some(stored) = read_record(storage, file).await? else {
        return Ok(None);
    };
    let record = trusted(file, &stored, &options.trust)?;
    let entry = spool.entry_for(file, &record);
    if entry.exists() {
        return Ok(Some(false));
    }
    let downloaded = tokio::time::timeout(
        Duration::from_secs(600),
        download(
            storage,
            &record,
            options.keyring.clone(),
            FileSink::new(&entry),
        ),
    )
    .await;
    match downloaded {
        Ok(Ok(_)) => Ok(Some(true)),
        Ok(Err(Error::NotFound { key, .. })) if key == record.object => Ok(None),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::Wal {
            file: file.name(),
            detail: "the prefetch took more than 10 minutes; left to the fetch that needs it"
                .into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_following_segments_cross_log_boundaries_and_skip_other_files() {
        let file = WalFile::parse("0000000200000001000000FE").unwrap();
        let next: Vec<String> = following_segments(&file, 16 << 20, 3)
            .iter()
            .map(WalFile::name)
            .collect();
        assert_eq!(
            next,
            [
                "0000000200000001000000FF",
                "000000020000000200000000",
                "000000020000000200000001"
            ]
        );
        assert!(following_segments(&file, 16 << 20, 0).is_empty());
        let history = WalFile::parse("00000002.history").unwrap();
        assert!(following_segments(&history, 16 << 20, 8).is_empty());
    }
}
