//! `archive_command`: one WAL file into the archive, idempotently.
//!
//! PostgreSQL may call the archive command again for a file it already archived (after a crash
//! between the upload and its bookkeeping), and expects success when the archive holds the same
//! bytes; it must fail when it holds different ones. So a push
//!
//! 1. reads the file once for its SHA-256 (and, for a segment, its page header), while it asks
//!    the repository, all at once, for the cluster identity (segments only), the file's record
//!    and its object under both suffixes;
//! 2. for a segment, checks the header against the name, the file size and the repository's
//!    cluster (its system identifier and segment size; the first push records them);
//! 3. if the object exists: the same raw SHA-256 and size in its record is success without an
//!    upload, anything else a refusal naming both digests (never an overwrite);
//! 4. otherwise writes the record (and its signature), then streams file → zstd → age into the
//!    object, checking that the bytes uploaded are the bytes hashed in step 1.
//!
//! No listing, no database connection: a new segment costs four reads at once (the identity,
//! the record, both possible objects) and three writes (two without a signing key).

use crate::error::remedy;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;
use sha2::Digest as _;

use super::archive::{
    cluster_identity, lookup, record_key, signature_key, ClusterIdentity, Lookup, WalRecord,
    IDENTITY_FORMAT, IDENTITY_KEY, RECORD_FORMAT,
};
use super::header::{PageHeader, LONG_HEADER_SIZE};
use super::names::WalFile;
use crate::artifact::Sealing;
use crate::crypto::{fingerprint, Signer};
use crate::error::{Error, IoContext, Result};
use crate::io::FileSource;
use crate::pipeline::Pipeline;
use crate::repository::Repository;
use crate::storage::Storage;
use crate::transform::{Compress, Digest, Encrypt};

/// How files are pushed.
#[derive(Clone)]
#[non_exhaustive]
pub struct PushOptions {
    /// The zstd level and the age recipients (none: `.zst` objects, on purpose only).
    pub sealing: Sealing,
    /// Signs each record and the cluster identity; `None` writes them unsigned.
    pub signer: Option<Arc<Signer>>,
}

impl PushOptions {
    /// Pushes sealed as `sealing`, signed by `signer`.
    pub fn new(sealing: Sealing, signer: Option<Arc<Signer>>) -> PushOptions {
        PushOptions { sealing, signer }
    }
}

/// What a push did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PushOutcome {
    /// The file was uploaded.
    Uploaded {
        /// The object's key.
        key: String,
        /// Raw bytes.
        raw_size: u64,
        /// SHA-256 of the raw bytes.
        raw_sha256: String,
        /// Bytes stored.
        stored_size: u64,
    },
    /// The archive already held exactly this file: nothing was uploaded.
    AlreadyArchived {
        /// The object's key.
        key: String,
        /// SHA-256 of the raw bytes.
        raw_sha256: String,
    },
}

/// The file as read from disk.
struct LocalFile {
    size: u64,
    sha256: String,
    head: Vec<u8>,
}

/// Pushes the file at `path` (relative paths are relative to the current directory, which is
/// the data directory when PostgreSQL runs the archive command). Cancel safe up to the object
/// upload, which is aborted if cancelled; a record left without its object is replaced by the
/// next push of the name.
pub async fn push(storage: &Storage, path: &Path, options: &PushOptions) -> Result<PushOutcome> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    let refuse = |detail: String| Error::Wal {
        file: format!("wal-push {}", path.display()),
        detail,
    };
    let file = WalFile::parse(&name).ok_or_else(|| {
        refuse("not the name of a file PostgreSQL archives (a segment, NNNNNNNN.history, a .backup or a .partial file); give the path %p".into())
    })?;
    let refuse = |detail: String| Error::Wal {
        file: format!("wal-push {name}"),
        detail,
    };
    let identity = async {
        match file.is_segment() {
            true => cluster_identity(storage).await,
            false => Ok(None),
        }
    };
    let (local, identity, found) = futures::try_join!(
        read_local(path.to_owned()),
        identity,
        lookup(storage, &file)
    )?;

    let mut system_identifier = None;
    if file.is_segment() {
        let header = PageHeader::parse(&local.head).map_err(|e| refuse(e.clone()))?;
        header.check_name(&file).map_err(refuse)?;
        if local.size != u64::from(header.segment_size) {
            return Err(refuse(format!(
                "it is {} bytes, its header says segments are {} bytes: a cut or padded copy, not a segment PostgreSQL finished",
                local.size, header.segment_size
            )));
        }
        match &identity {
            Some(id) => check_identity(id, &header).map_err(refuse)?,
            None => record_identity(storage, &header, options).await?,
        }
        system_identifier = Some(header.system_identifier);
    }

    if let Some(done) = already_archived(&found, &local).map_err(refuse)? {
        return Ok(done);
    }
    // A record left by a push cut short is replaced; so is its signature, or removed when this
    // push signs nothing (a stale one would not match the new record).
    if options.signer.is_none() && found.record.is_some() {
        storage.delete(&signature_key(&record_key(&file))).await?;
    }
    upload(storage, &file, path, local, system_identifier, options)
        .await
        .map_err(|e| match e {
            Error::Wal { detail, .. } => refuse(detail),
            other => other,
        })
}

/// Reads the file for its size, SHA-256 and first bytes, on a blocking thread.
async fn read_local(path: PathBuf) -> Result<LocalFile> {
    tokio::task::spawn_blocking(move || {
        let display = path.display().to_string();
        let mut file = std::fs::File::open(&path).with_context(|| format!("opening {display}"))?;
        let mut hasher = sha2::Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        let mut head = Vec::with_capacity(LONG_HEADER_SIZE);
        let mut size = 0u64;
        loop {
            let n = file
                .read(&mut buffer)
                .with_context(|| format!("reading {display}"))?;
            if n == 0 {
                break;
            }
            if head.len() < LONG_HEADER_SIZE {
                let wanted = (LONG_HEADER_SIZE - head.len()).min(n);
                head.extend_from_slice(&buffer[..wanted]);
            }
            hasher.update(&buffer[..n]);
            size += n as u64;
        }
        Ok(LocalFile {
            size,
            sha256: hex::encode(hasher.finalize()),
            head,
        })
    })
    .await
    .map_err(|e| Error::io("reading the WAL file", e.into()))?
}

fn check_identity(identity: &ClusterIdentity, header: &PageHeader) -> Result<(), String> {
    if identity.system_identifier != header.system_identifier {
        return Err(format!(
            "it belongs to the cluster with system identifier {}, but this repository archives the cluster {}: give each cluster a repository of its own (a new cluster after initdb or pg_upgrade has a new identifier)",
            header.system_identifier, identity.system_identifier
        ));
    }
    if identity.segment_size != u64::from(header.segment_size) {
        return Err(format!(
            "its segments are {} bytes, this repository's are {}",
            header.segment_size, identity.segment_size
        ));
    }
    Ok(())
}

/// The first push of a segment records the cluster: only into a repository (`ecobackup
/// init`), and read back afterwards, so that of two clusters racing to be first, the one whose
/// identity lost refuses.
async fn record_identity(
    storage: &Storage,
    header: &PageHeader,
    options: &PushOptions,
) -> Result<()> {
    Repository::open(storage.clone()).await?;
    let identity = ClusterIdentity {
        format: IDENTITY_FORMAT.to_owned(),
        system_identifier: header.system_identifier,
        segment_size: u64::from(header.segment_size),
        created_at: Utc::now(),
        written_by: format!("ecobackup {}", env!("CARGO_PKG_VERSION")),
    };
    let body = serde_json::to_vec_pretty(&identity)
        .map_err(|e| Error::io("encoding the cluster identity", e.into()))?;
    if let Some(signer) = &options.signer {
        storage
            .put(
                &signature_key(IDENTITY_KEY),
                signer.sign(IDENTITY_KEY, &body),
            )
            .await?;
    }
    storage.put(IDENTITY_KEY, body).await?;
    let stored = cluster_identity(storage).await?.ok_or_else(|| Error::Wal {
        file: IDENTITY_KEY.to_owned(),
        detail: "vanished right after it was written: is something else deleting the archive?"
            .into(),
    })?;
    check_identity(&stored, header).map_err(|detail| Error::Wal {
        file: IDENTITY_KEY.to_owned(),
        detail,
    })
}

/// `Some` when the archive holds exactly this file; an error when it holds another one.
fn already_archived(found: &Lookup, local: &LocalFile) -> Result<Option<PushOutcome>, String> {
    let Some(object) = &found.object else {
        return Ok(None);
    };
    let Some(stored) = &found.record else {
        let (key, record) = (&object.key, record_key(&object.file));
        return Err(remedy!(
            cli: "{key} exists without its record {record}: its digest cannot be compared, so it is not overwritten; check it with `ecobackup verify --wal`, then remove it if it is not this file",
            library: "{key} exists without its record {record}: its digest cannot be compared, so it is not overwritten; verify the WAL archive, then remove it if it is not this file",
        ));
    };
    let record = &stored.record;
    if record.raw_sha256.eq_ignore_ascii_case(&local.sha256) && record.raw_size == local.size {
        return Ok(Some(PushOutcome::AlreadyArchived {
            key: object.key.clone(),
            raw_sha256: local.sha256.clone(),
        }));
    }
    Err(format!(
        "the archive already holds a different file under this name ({}: sha256 {}, {} bytes; this file: sha256 {}, {} bytes); it is not overwritten. Two clusters may be archiving into one repository, or this server was restored without a new timeline: check archive_command and the repository",
        object.key, record.raw_sha256, record.raw_size, local.sha256, local.size
    ))
}

/// Writes the record (signature first), then the object.
async fn upload(
    storage: &Storage,
    file: &WalFile,
    path: &Path,
    local: LocalFile,
    system_identifier: Option<u64>,
    options: &PushOptions,
) -> Result<PushOutcome> {
    let sealing = &options.sealing;
    let key = file.key(sealing.suffix());
    let record = WalRecord {
        format: RECORD_FORMAT.to_owned(),
        file: file.name(),
        object: key.clone(),
        raw_size: local.size,
        raw_sha256: local.sha256.clone(),
        compression: "zstd".to_owned(),
        recipients: sealing.recipients.iter().map(fingerprint).collect(),
        system_identifier,
        pushed_at: Utc::now(),
        written_by: format!("ecobackup {}", env!("CARGO_PKG_VERSION")),
    };
    let body = serde_json::to_vec_pretty(&record)
        .map_err(|e| Error::io("encoding the WAL record", e.into()))?;
    let record_key = record_key(file);
    let signature = async {
        match &options.signer {
            Some(signer) => {
                let signed = signer.sign(&record_key, &body);
                storage.put(&signature_key(&record_key), signed).await
            }
            None => Ok(()),
        }
    };
    futures::try_join!(signature, storage.put(&record_key, body.clone()))?;

    let (raw, raw_digest) = Digest::new();
    let mut pipeline = Pipeline::new(FileSource::new(path))
        .then(raw)
        .then(Compress::new(sealing.level));
    if !sealing.recipients.is_empty() {
        pipeline = pipeline.then(Encrypt::to(sealing.recipients.clone())?);
    }
    let report = pipeline
        .into(storage.sink(&key, Some(local.size)))
        .run()
        .await?;
    let uploaded = raw_digest.result();
    if uploaded.as_ref().map(|d| (&d.sha256, d.bytes)) != Some((&local.sha256, local.size)) {
        // The file changed between the two reads: what was uploaded does not match its record.
        storage.delete(&key).await?;
        storage.delete(&record_key).await?;
        return Err(Error::Wal {
            file: file.name(),
            detail: "the file changed while it was being pushed; nothing was archived, the next attempt pushes it again".into(),
        });
    }
    Ok(PushOutcome::Uploaded {
        key,
        raw_size: local.size,
        raw_sha256: local.sha256,
        stored_size: report.receipt.bytes,
    })
}
