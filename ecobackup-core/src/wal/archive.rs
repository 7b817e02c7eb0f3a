//! The archive's layout in a repository, and looking files up in it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use object_store::ObjectStoreExt as _;

use super::WalFile;
use crate::error::{Error, Result};
use crate::storage::Storage;

/// The object recording which cluster's WAL the archive holds.
pub const CLUSTER_KEY: &str = "wal/cluster.json";

/// The sealing suffixes an archived file may carry: encrypted, or (repositories written with
/// `--no-encryption`) compressed only.
const SUFFIXES: [&str; 2] = [".zst.age", ".zst"];

/// One archived file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedWal {
    /// What PostgreSQL calls it.
    pub file: WalFile,
    /// Its object key.
    pub key: String,
    /// Bytes stored.
    pub size: u64,
    /// When it was stored.
    pub modified: DateTime<Utc>,
}

/// The cluster whose WAL an archive holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIdentity {
    /// pg_control's system identifier.
    pub system_identifier: u64,
    /// `wal_segment_size`, bytes.
    pub segment_size: u64,
}

/// Looks `file` up in the archive, whatever its sealing suffix.
pub async fn find(storage: &Storage, file: &WalFile) -> Result<Option<ArchivedWal>> {
    for suffix in SUFFIXES {
        let key = file.key(suffix);
        match storage.store().head(&storage.path(&key)).await {
            Ok(meta) => {
                return Ok(Some(ArchivedWal {
                    file: file.clone(),
                    key,
                    size: meta.size,
                    modified: meta.last_modified,
                }))
            }
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(storage.error("looking up", &key, e)),
        }
    }
    Ok(None)
}

/// The identity recorded by the first push, if any.
pub async fn cluster_identity(storage: &Storage) -> Result<Option<ClusterIdentity>> {
    let Some(bytes) = storage.get(CLUSTER_KEY).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::BadManifest {
            key: CLUSTER_KEY.to_owned(),
            detail: e.to_string(),
        })
}
