//! `verify --wal`: every archived file downloaded, authenticated and checked, gaps and timeline
//! forks reported, and the WAL each backup needs checked for completeness.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use serde::Serialize;

use super::archive::{cluster_identity, list, read_record, ArchivedWal, ClusterIdentity};
use super::fetch::download;
use super::header::PageHeader;
use super::names::{Lsn, Segment, WalFile, DEFAULT_SEGMENT_SIZE};
use super::timeline::{
    check_requirement, gaps, parse_history, Gap, HistoryEntry, RequirementCheck, WalRequirement,
};
use crate::crypto::{Keyring, TrustedSigners};
use crate::error::{Error, Result};
use crate::pipeline::{ByteStream, Sink, SinkReceipt};
use crate::storage::Storage;
use crate::verify::{classify, Failure};

/// The verdict on one archived file.
#[derive(Clone, Debug, Serialize)]
pub struct WalFileCheck {
    /// Its name.
    pub file: String,
    /// Its object's key.
    pub key: String,
    /// `None` when intact.
    pub failure: Option<Failure>,
    /// The error, one line, when it is not intact.
    pub error: Option<String>,
    /// Raw bytes checked.
    pub raw_bytes: u64,
}

/// A timeline fork, from a history file.
#[derive(Clone, Debug, Serialize)]
pub struct Fork {
    /// The new timeline.
    pub timeline: u32,
    /// Where it came from.
    pub parent: u32,
    /// Where it began.
    pub switchpoint: Lsn,
    /// Why.
    pub reason: String,
}

/// The archive of one timeline.
#[derive(Clone, Debug, Serialize)]
pub struct TimelineSummary {
    /// The timeline.
    pub timeline: u32,
    /// Segments archived.
    pub segments: usize,
    /// The oldest.
    pub first: String,
    /// The newest.
    pub last: String,
}

/// The verdict on the whole archive.
#[derive(Clone, Debug, Serialize)]
pub struct WalCheck {
    /// Intact files, no gaps, every requirement met.
    pub ok: bool,
    /// The cluster the archive belongs to, when recorded.
    pub identity: Option<ClusterIdentity>,
    /// One per archived file.
    pub files: Vec<WalFileCheck>,
    /// Per timeline with segments.
    pub timelines: Vec<TimelineSummary>,
    /// Missing runs between archived segments.
    pub gaps: Vec<Gap>,
    /// Timeline forks.
    pub forks: Vec<Fork>,
    /// The requirements given, checked.
    pub requirements: Vec<RequirementCheck>,
}

/// Checks the whole archive, two files at a time. Only a failure to list it is an `Err`.
pub async fn verify_wal(
    storage: &Storage,
    keyring: Option<Arc<Keyring>>,
    trust: &TrustedSigners,
    requirements: &[WalRequirement],
) -> Result<WalCheck> {
    let identity = cluster_identity(storage).await?;
    let segment_size = identity
        .as_ref()
        .map_or(DEFAULT_SEGMENT_SIZE, |i| i.segment_size);
    let archived = list(storage).await?;
    let checked: Vec<(WalFileCheck, Option<Vec<HistoryEntry>>)> =
        futures::stream::iter(archived.iter())
            .map(|a| check_file(storage, a, keyring.clone(), trust, identity.as_ref()))
            .buffered(2)
            .collect()
            .await;
    let segments: BTreeSet<Segment> = archived
        .iter()
        .filter(|a| a.file.is_segment())
        .filter_map(|a| Segment::parse(&a.file.name(), segment_size))
        .collect();
    let mut histories = BTreeMap::new();
    let mut files = Vec::new();
    for (check, history) in checked {
        if let (Some(history), Some(WalFile::History { timeline })) =
            (history, WalFile::parse(&check.file))
        {
            histories.insert(timeline, history);
        }
        files.push(check);
    }
    let forks = histories
        .iter()
        .filter_map(|(&timeline, h)| {
            h.last().map(|e| Fork {
                timeline,
                parent: e.parent,
                switchpoint: e.switchpoint,
                reason: e.reason.clone(),
            })
        })
        .collect();
    let mut timelines: Vec<TimelineSummary> = Vec::new();
    for segment in &segments {
        let name = segment.file_name(segment_size);
        match timelines.last_mut() {
            Some(t) if t.timeline == segment.timeline => {
                t.segments += 1;
                t.last = name;
            }
            _ => timelines.push(TimelineSummary {
                timeline: segment.timeline,
                segments: 1,
                first: name.clone(),
                last: name,
            }),
        }
    }
    let gaps = gaps(&segments, segment_size);
    let requirements: Vec<RequirementCheck> = requirements
        .iter()
        .map(|r| check_requirement(r, &segments, &histories, segment_size))
        .collect();
    Ok(WalCheck {
        ok: files.iter().all(|f| f.failure.is_none())
            && gaps.is_empty()
            && requirements.iter().all(RequirementCheck::ok),
        identity,
        files,
        timelines,
        gaps,
        forks,
        requirements,
    })
}

/// Downloads and checks one file; a history file's parsed content comes back with it.
async fn check_file(
    storage: &Storage,
    archived: &ArchivedWal,
    keyring: Option<Arc<Keyring>>,
    trust: &TrustedSigners,
    identity: Option<&ClusterIdentity>,
) -> (WalFileCheck, Option<Vec<HistoryEntry>>) {
    let file = &archived.file;
    let keep = match file {
        WalFile::History { .. } => 1 << 20,
        _ => super::header::LONG_HEADER_SIZE,
    };
    let sink = HeadSink::new(keep);
    let head = sink.head.clone();
    let outcome = async {
        let stored = read_record(storage, file)
            .await?
            .ok_or_else(|| Error::Wal {
                file: archived.key.clone(),
                detail: "it has no record, so its digest cannot be checked".into(),
            })?;
        trust
            .check(
                &super::archive::record_key(file),
                &stored.bytes,
                stored.signature.as_deref(),
            )
            .map_err(|fault| Error::Untrusted {
                key: super::archive::record_key(file),
                repo: storage.url().to_owned(),
                detail: fault.to_string(),
            })?;
        if stored.record.object != archived.key {
            return Err(Error::Wal {
                file: archived.key.clone(),
                detail: format!("its record names {} instead", stored.record.object),
            });
        }
        let report = download(storage, &stored.record, keyring, sink).await?;
        let head = head.lock().map(|h| h.clone()).unwrap_or_default();
        let history = content_checks(file, &head, identity).map_err(|detail| Error::Wal {
            file: archived.key.clone(),
            detail,
        })?;
        Ok::<_, Error>((report.receipt.bytes, history))
    }
    .await;
    let name = file.name();
    match outcome {
        Ok((raw_bytes, history)) => (
            WalFileCheck {
                file: name,
                key: archived.key.clone(),
                failure: None,
                error: None,
                raw_bytes,
            },
            history,
        ),
        Err(e) => (
            WalFileCheck {
                file: name,
                key: archived.key.clone(),
                failure: Some(match &e {
                    Error::Wal { .. } | Error::Untrusted { .. } => Failure::Tampered,
                    other => classify(other),
                }),
                error: Some(e.to_string()),
                raw_bytes: 0,
            },
            None,
        ),
    }
}

/// A segment's page header against its name and the cluster; a history file parsed.
fn content_checks(
    file: &WalFile,
    head: &[u8],
    identity: Option<&ClusterIdentity>,
) -> Result<Option<Vec<HistoryEntry>>, String> {
    match file {
        WalFile::Segment { .. } => {
            let header = PageHeader::parse(head)?;
            header.check_name(file)?;
            if let Some(identity) = identity {
                if header.system_identifier != identity.system_identifier {
                    return Err(format!(
                        "its header says system identifier {}, the archive's cluster is {}",
                        header.system_identifier, identity.system_identifier
                    ));
                }
            }
            Ok(None)
        }
        WalFile::History { .. } => {
            let text = std::str::from_utf8(head).map_err(|_| "the history file is not text")?;
            parse_history(text).map(Some)
        }
        _ => Ok(None),
    }
}

/// Counts the plaintext and keeps its first `keep` bytes.
struct HeadSink {
    keep: usize,
    head: Arc<Mutex<Vec<u8>>>,
}

impl HeadSink {
    fn new(keep: usize) -> HeadSink {
        HeadSink {
            keep,
            head: Arc::default(),
        }
    }
}

#[async_trait]
impl Sink for HeadSink {
    async fn write(&mut self, mut input: ByteStream) -> Result<SinkReceipt> {
        let mut bytes = 0u64;
        while let Some(chunk) = input.next().await {
            let chunk = chunk?;
            bytes += chunk.len() as u64;
            if let Ok(mut head) = self.head.lock() {
                let wanted = self.keep.saturating_sub(head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..wanted]);
            }
        }
        Ok(SinkReceipt {
            bytes,
            location: None,
        })
    }

    async fn abort(&mut self) {}
}
