//! The archive's layout in a repository, the cluster it belongs to, and how an archived file is
//! found.
//!
//! ```text
//! wal/cluster.json (+ .sig)            the cluster identity: system identifier, segment size
//! wal/<timeline>/<file>.json (+ .sig)  the file's record: raw SHA-256 and size, sealing
//! wal/<timeline>/<file>.zst.age        the file: age (zstd (raw bytes)); `.zst` unencrypted
//! ```
//!
//! The record is a small plaintext object written *before* the file's object, so that the raw
//! digest can be read without the decryption key (a backup host only has the public
//! recipient) and is signed with the backup host's key like a manifest. A file is archived
//! exactly when its object exists; a record without its object is what a push cut short leaves,
//! and the next push of that name replaces it. docs/FORMAT.md explains the choice.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::names::WalFile;
use crate::crypto::SIGNATURE_SUFFIX;
use crate::error::{Error, Result};
use crate::storage::{ObjectInfo, Storage};

/// The folder of the archive in a repository.
pub const WAL_FOLDER: &str = "wal/";
/// The key of the cluster identity.
pub const IDENTITY_KEY: &str = "wal/cluster.json";
/// The `format` of the cluster identity.
pub const IDENTITY_FORMAT: &str = "ecobackup-wal-cluster-v1";
/// The `format` of a file's record.
pub const RECORD_FORMAT: &str = "ecobackup-wal-v1";
/// The suffixes an archived file's object may have: encrypted, or written with
/// `--no-encryption`.
pub const OBJECT_SUFFIXES: [&str; 2] = [".zst.age", ".zst"];

/// The cluster whose WAL a repository archives, recorded by the first push.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIdentity {
    /// Always [`IDENTITY_FORMAT`].
    pub format: String,
    /// The cluster's system identifier (pg_control; in every segment's first page header).
    #[serde(with = "decimal")]
    pub system_identifier: u64,
    /// `wal_segment_size` in bytes.
    pub segment_size: u64,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// The ecobackup version that recorded it.
    pub written_by: String,
}

/// What the archive knows about one file without decrypting it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalRecord {
    /// Always [`RECORD_FORMAT`].
    pub format: String,
    /// The file name (`000000010000000000000002`).
    pub file: String,
    /// The key of the file's object (`wal/00000001/000000010000000000000002.zst.age`).
    pub object: String,
    /// Size of the raw file.
    pub raw_size: u64,
    /// SHA-256 of the raw file, lowercase hex.
    pub raw_sha256: String,
    /// `zstd`.
    pub compression: String,
    /// Fingerprints of the recipients the object is encrypted to (empty: not encrypted).
    #[serde(default)]
    pub recipients: Vec<String>,
    /// The system identifier in a segment's page header (segments only).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_decimal"
    )]
    pub system_identifier: Option<u64>,
    /// When it was pushed.
    pub pushed_at: DateTime<Utc>,
    /// The ecobackup version that pushed it.
    pub written_by: String,
}

/// An archived file: its object is in the repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArchivedWal {
    /// The file.
    pub file: WalFile,
    /// Its object's key.
    pub key: String,
    /// Bytes stored.
    pub stored_size: u64,
    /// When the object was written.
    pub modified: DateTime<Utc>,
    /// Whether its record is there (without it, its digest cannot be checked).
    pub recorded: bool,
}

/// A record as stored, with its signature object when there is one.
#[derive(Clone, Debug)]
pub struct StoredRecord {
    /// The parsed record.
    pub record: WalRecord,
    /// Its exact bytes (what the signature covers).
    pub bytes: bytes::Bytes,
    /// The signature object's bytes, if any.
    pub signature: Option<bytes::Bytes>,
}

/// The key of `file`'s record: `wal/<timeline>/<name>.json`.
pub fn record_key(file: &WalFile) -> String {
    file.key(".json")
}

/// The key of an object's detached signature.
pub fn signature_key(key: &str) -> String {
    format!("{key}{SIGNATURE_SUFFIX}")
}

/// Whether `file` is archived: its object exists (under either suffix). Three requests at once
/// (the record and both possible objects); cancel safe (it only reads). An object without its
/// record counts as archived (`recorded: false`): `verify --wal` reports it.
pub async fn find(storage: &Storage, file: &WalFile) -> Result<Option<ArchivedWal>> {
    Ok(lookup(storage, file).await?.object)
}

/// The repository's cluster identity, `None` before the first push of a segment.
pub async fn cluster_identity(storage: &Storage) -> Result<Option<ClusterIdentity>> {
    let Some(bytes) = storage.get(IDENTITY_KEY).await? else {
        return Ok(None);
    };
    let identity: ClusterIdentity = serde_json::from_slice(&bytes).map_err(|e| Error::Wal {
        file: IDENTITY_KEY.to_owned(),
        detail: format!("unreadable ({e}); it is written by wal-push, restore it or remove it so the next push records it again"),
    })?;
    if identity.format != IDENTITY_FORMAT {
        return Err(Error::Wal {
            file: IDENTITY_KEY.to_owned(),
            detail: format!(
                "format {:?}, this ecobackup reads {IDENTITY_FORMAT:?}: use a matching ecobackup version",
                identity.format
            ),
        });
    }
    Ok(Some(identity))
}

/// Every archived file, sorted by timeline, then name. One listing of `wal/`; records are not
/// read (see [`read_record`]). Objects whose key is not one this version writes are left out.
pub async fn list(storage: &Storage) -> Result<Vec<ArchivedWal>> {
    Ok(archived(&storage.list(WAL_FOLDER).await?))
}

/// The archived files among `objects` (a listing of `wal/`, or of the whole repository), sorted
/// by timeline, then name; each marked recorded when its record is in the listing too.
pub fn archived(objects: &[ObjectInfo]) -> Vec<ArchivedWal> {
    let keys: std::collections::BTreeSet<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    let mut files: Vec<ArchivedWal> = objects
        .iter()
        .filter_map(|o| {
            let file = parse_object_key(&o.key)?;
            Some(ArchivedWal {
                recorded: keys.contains(record_key(&file).as_str()),
                file,
                key: o.key.clone(),
                stored_size: o.size,
                modified: o.modified,
            })
        })
        .collect();
    files.sort_by(|a, b| {
        (a.file.timeline(), a.file.name(), &a.key).cmp(&(b.file.timeline(), b.file.name(), &b.key))
    });
    files
}

/// The newest archived segment of each timeline (by segment number), from a [`list`].
pub fn newest_segments(files: &[ArchivedWal]) -> std::collections::BTreeMap<u32, &ArchivedWal> {
    let mut newest = std::collections::BTreeMap::new();
    for archived in files.iter().filter(|a| a.file.is_segment()) {
        // Names of one timeline sort as their segment numbers do (fixed-width hex).
        newest.insert(archived.file.timeline(), archived);
    }
    newest
}

/// The file an object key holds, when it is `wal/<timeline>/<name><suffix>` exactly.
pub fn parse_object_key(key: &str) -> Option<WalFile> {
    let rest = key.strip_prefix(WAL_FOLDER)?;
    let (_, name) = rest.split_once('/')?;
    OBJECT_SUFFIXES.iter().find_map(|suffix| {
        let file = WalFile::parse(name.strip_suffix(suffix)?)?;
        (file.key(suffix) == key).then_some(file)
    })
}

/// Reads `file`'s record and its signature (two requests at once); `None` without a record.
pub async fn read_record(storage: &Storage, file: &WalFile) -> Result<Option<StoredRecord>> {
    let key = record_key(file);
    let sig_key = signature_key(&key);
    let (bytes, signature) = futures::try_join!(storage.get(&key), storage.get(&sig_key))?;
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    let record = decode_record(file, &key, &bytes)?;
    Ok(Some(StoredRecord {
        record,
        bytes,
        signature,
    }))
}

fn decode_record(file: &WalFile, key: &str, bytes: &[u8]) -> Result<WalRecord> {
    let bad = |detail: String| Error::Wal {
        file: key.to_owned(),
        detail,
    };
    let record: WalRecord = serde_json::from_slice(bytes).map_err(|e| {
        bad(format!(
            "the record is unreadable ({e}); do not trust this file"
        ))
    })?;
    if record.format != RECORD_FORMAT {
        return Err(bad(format!(
            "format {:?}, this ecobackup reads {RECORD_FORMAT:?}",
            record.format
        )));
    }
    let expected_object = OBJECT_SUFFIXES
        .iter()
        .any(|suffix| record.object == file.key(suffix));
    if record.file != file.name() || !expected_object {
        return Err(bad(format!(
            "the record describes {} ({}), not {file}: a record copied from another file; do not trust it",
            record.file, record.object
        )));
    }
    Ok(record)
}

/// What the repository holds under one name.
#[derive(Debug)]
pub(crate) struct Lookup {
    /// The record, if any.
    pub record: Option<StoredRecord>,
    /// The object, if any (the record's, else whichever suffix exists).
    pub object: Option<ArchivedWal>,
}

/// Reads the record (not its signature) and looks for both possible objects, all at once.
pub(crate) async fn lookup(storage: &Storage, file: &WalFile) -> Result<Lookup> {
    let encrypted = file.key(OBJECT_SUFFIXES[0]);
    let plain = file.key(OBJECT_SUFFIXES[1]);
    let key = record_key(file);
    let (record, a, b) = futures::try_join!(
        storage.get(&key),
        storage.head(&encrypted),
        storage.head(&plain)
    )?;
    let record = match record {
        Some(bytes) => Some(StoredRecord {
            record: decode_record(file, &key, &bytes)?,
            bytes,
            signature: None,
        }),
        None => None,
    };
    let named = record.as_ref().map(|r| r.record.object.clone());
    let object = [a, b]
        .into_iter()
        .flatten()
        .find(|o| named.as_ref().is_none_or(|k| *k == o.key))
        .map(|o| ArchivedWal {
            file: file.clone(),
            key: o.key,
            stored_size: o.size,
            modified: o.modified,
            recorded: record.is_some(),
        });
    Ok(Lookup { record, object })
}

/// `u64` as a decimal string, as PostgreSQL prints system identifiers (and as manifests hold
/// them): JSON tools that read numbers as doubles would round a 64-bit identifier.
mod decimal {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

mod optional_decimal {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| text.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_are_recognised_only_in_their_own_folder() {
        let f = parse_object_key("wal/00000001/000000010000000000000002.zst.age").unwrap();
        assert_eq!(f.name(), "000000010000000000000002");
        assert!(parse_object_key("wal/00000001/000000010000000000000002.zst").is_some());
        assert!(parse_object_key("wal/00000002.history.zst.age").is_none());
        for bad in [
            "wal/00000002/000000010000000000000002.zst.age",
            "wal/00000001/000000010000000000000002.json",
            "wal/00000001/000000010000000000000002.json.sig",
            "wal/00000001/000000010000000000000002",
            "wal/cluster.json",
            "backups/x/000000010000000000000002.zst.age",
        ] {
            assert_eq!(parse_object_key(bad), None, "{bad}");
        }
        assert_eq!(
            record_key(&WalFile::parse("00000002.history").unwrap()),
            "wal/00000002/00000002.history.json"
        );
    }

    #[test]
    fn identifiers_are_decimal_strings() {
        let identity = ClusterIdentity {
            format: IDENTITY_FORMAT.into(),
            system_identifier: 7_311_234_567_890_123_456,
            segment_size: 16 << 20,
            created_at: Utc::now(),
            written_by: "test".into(),
        };
        let json = serde_json::to_string(&identity).unwrap();
        assert!(json.contains("\"7311234567890123456\""), "{json}");
        assert_eq!(
            serde_json::from_str::<ClusterIdentity>(&json).unwrap(),
            identity
        );
    }
}
