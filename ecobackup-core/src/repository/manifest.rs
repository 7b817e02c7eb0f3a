//! The manifest: the plaintext description of one backup, written last.
//!
//! A backup exists exactly when its manifest does. The manifest holds metadata only (sizes,
//! digests, PostgreSQL facts, key fingerprints), never row data: per-table row estimates belong
//! inside an encrypted artifact, and a files backup names its root paths but no file inside them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What kind of backup a manifest describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    /// pg_dump per database (+ globals).
    Logical,
    /// A base backup (+ archived WAL).
    Physical,
    /// Directories of files.
    Files,
}

impl BackupKind {
    /// The kind's name in ids and URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::Logical => "logical",
            BackupKind::Physical => "physical",
            BackupKind::Files => "files",
        }
    }
}

impl std::str::FromStr for BackupKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "logical" => Ok(BackupKind::Logical),
            "physical" => Ok(BackupKind::Physical),
            "files" => Ok(BackupKind::Files),
            other => Err(format!(
                "unknown backup kind {other:?}: expected logical, physical or files"
            )),
        }
    }
}

impl std::fmt::Display for BackupKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The manifest format this version writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// Everything known about one backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version.
    pub manifest_version: u32,
    /// The backup id (`20261122T041500Z-logical-k3j5qa`).
    pub id: String,
    /// Logical, physical or files.
    pub kind: BackupKind,
    /// Free-form labels (`reason=pre-migration`, `migration=0042`).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// When the backup started.
    pub started_at: DateTime<Utc>,
    /// When the last artifact was stored. Backups are ordered by this, never by id.
    pub finished_at: DateTime<Utc>,
    /// Facts about the source.
    #[serde(default)]
    pub source: SourceFacts,
    /// The stored artifacts.
    pub artifacts: Vec<ArtifactEntry>,
    /// The ecobackup version that wrote the backup.
    pub written_by: String,
    /// The repositories holding this backup when it was written to several at once (mirrors):
    /// each holds the same artifacts and this manifest. Empty: written to one repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
}

/// What the source server was, at backup time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFacts {
    /// `server_version`, e.g. `15.18`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// The cluster's system identifier (pg_control).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<String>,
    /// Databases included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<String>,
    /// Timeline at the start of a physical backup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<u32>,
    /// Start LSN of a physical backup (`0/2000028`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_lsn: Option<String>,
    /// Stop LSN of a physical backup: recovery must replay at least this far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_lsn: Option<String>,
    /// Some globals were dumped by a role that is not a superuser, so without role passwords
    /// (`pg_dumpall --no-role-passwords`): restored roles need `ALTER ROLE … PASSWORD`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub globals_without_role_passwords: bool,
    /// Per server, when the databases came from one or more: its facts, its databases and its
    /// globals artifact. The fields above describe the first server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<ServerFacts>,
    /// What a physical backup needs to be restored: its WAL range, in segment names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical: Option<PhysicalFacts>,
    /// What a files backup holds: its set, its root paths, counts and the tree's digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<FilesFacts>,
}

/// What a files backup holds. Names of files below the roots never appear here (plaintext
/// metadata holds no user data): they are inside the encrypted tar only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesFacts {
    /// The set's name (`[[files]] name`, `--name`): retention, `status` and `--if-changed`
    /// group files backups by it.
    pub set: String,
    /// The root paths backed up, absolute, in the order given. Each is stored in the archive
    /// under its last component (`/srv/ecommus/uploads` → `uploads/…`).
    pub paths: Vec<String>,
    /// Regular files stored.
    pub files: u64,
    /// Directories stored (empty ones included).
    pub directories: u64,
    /// Symbolic links stored (as links, never followed).
    pub symlinks: u64,
    /// Entries left out with a warning: sockets, FIFOs, devices, files that vanished while the
    /// tree was walked.
    pub skipped: u64,
    /// Entries left out by an exclude pattern (the default excludes included); an excluded
    /// directory counts once, whatever it holds.
    #[serde(default)]
    pub excluded: u64,
    /// Files that changed while they were read (size, modification or change time differed
    /// before and after, or the file was shorter or longer than its size): stored with a
    /// warning, as much as was read (zero-padded to the size it had when the walk found it).
    pub changed: u64,
    /// Bytes of file content stored (before compression).
    pub bytes: u64,
    /// SHA-256 over the canonical listing of the tree (docs/FORMAT.md, "Files backups"): equal
    /// digests mean nothing changed, which `backup files --if-changed` uses.
    pub tree_sha256: String,
}

/// The WAL a physical backup needs, and whether the archive goes on from there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhysicalFacts {
    /// The server's `wal_segment_size`, in bytes.
    pub wal_segment_size: u64,
    /// The first WAL segment recovery needs (holds the start LSN).
    pub start_wal: String,
    /// The last WAL segment recovery needs to reach consistency (holds the byte before the
    /// stop LSN).
    pub stop_wal: String,
    /// When the server started the backup (`backup_label`'s START TIME).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_started_at: Option<DateTime<Utc>>,
    /// When the server had stopped the backup and the stop segment was archived: the earliest
    /// point in time this backup restores to.
    pub backup_stopped_at: DateTime<Utc>,
    /// Whether the server archives its WAL to this repository, so the backup restores to any
    /// point after its stop up to the newest archived WAL. `false` (`--allow-no-archive`): the
    /// WAL up to the stop point is inside the base artifact and the backup restores to its end
    /// only.
    pub wal_archived: bool,
    /// The artifact holding PostgreSQL's `backup_manifest` (for `pg_verifybackup`).
    pub backup_manifest: String,
    /// How many files the base backup holds.
    pub files: usize,
    /// The cluster's bootstrap superuser (the role `initdb` made): the role a restore drill
    /// connects as to the restored copy. Absent in manifests written before ecobackup 0.1 knew
    /// it (the drill then tries `postgres`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superuser: Option<String>,
}

/// One source server of a backup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerFacts {
    /// `server_version`, e.g. `15.18`.
    pub server_version: String,
    /// The cluster's system identifier, when the role may read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<String>,
    /// The databases dumped from it (their names in the backup).
    pub databases: Vec<String>,
    /// The artifact holding its roles and tablespaces (`pg_dumpall --globals-only`), if taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub globals: Option<String>,
    /// Its globals were dumped without role passwords (the role is not a superuser).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub globals_without_role_passwords: bool,
}

/// One stored artifact: enough to verify it without restoring it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactEntry {
    /// File name under the backup's folder (`shop.dump.zst.age`).
    pub name: String,
    /// Bytes stored.
    pub stored_size: u64,
    /// SHA-256 of the stored bytes (lowercase hex).
    pub stored_sha256: String,
    /// Bytes before compression and encryption.
    pub raw_size: u64,
    /// SHA-256 of the raw bytes.
    pub raw_sha256: String,
    /// `zstd` or `none`.
    pub compression: String,
    /// Fingerprints of the recipients it is encrypted to (empty: not encrypted).
    #[serde(default)]
    pub recipients: Vec<String>,
}
