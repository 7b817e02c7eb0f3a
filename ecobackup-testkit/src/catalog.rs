//! Synthetic backups for retention and monitoring tests: a manifest with the finish time (and,
//! for monitoring, the duration and stored size) a test needs and small artifacts, written
//! straight into a repository (no database involved).

use chrono::{DateTime, Duration, Utc};
use ecobackup_core::artifact::{self, Sealing};
use ecobackup_core::progress::NoProgress;
use ecobackup_core::repository::{
    new_backup_id, ArtifactEntry, BackupKind, Manifest, PhysicalFacts, Repository, SourceFacts,
    MANIFEST_VERSION,
};

/// The WAL segment size the synthetic physical backups record.
pub const SEGMENT_SIZE: u64 = 16 << 20;

/// The artifacts every synthetic backup holds.
pub const ARTIFACTS: [&str; 2] = ["one.zst", "two.zst"];

/// The name of WAL segment `number` on `timeline` (16 MiB segments).
pub fn wal_name(timeline: u32, number: u64) -> String {
    format!("{timeline:08X}{:08X}{:08X}", number / 256, number % 256)
}

/// Writes a backup of `kind` that finished at `finished_at`, with the [`ARTIFACTS`] (100 bytes
/// each, zstd-compressed and not encrypted, in the manifest with their digests: `verify` checks
/// them) and an unsigned manifest (signed when `repo` has a signer); a physical one (database `shop` for a logical one) starts
/// at WAL segment `start` = (timeline, number) and has its WAL archived. Returns its id.
pub async fn synthetic_backup(
    repo: &Repository,
    kind: BackupKind,
    finished_at: DateTime<Utc>,
    start: Option<(u32, u64)>,
) -> String {
    let id = new_backup_id(kind, finished_at);
    let sealing = Sealing {
        level: 1,
        recipients: Vec::new(),
    };
    let mut artifacts = Vec::new();
    for name in ARTIFACTS {
        let source = crate::sources::ChunkedSource::new(vec![7u8; 100], vec![100]);
        artifacts.push(
            artifact::store(repo, &id, name, source, &sealing, &NoProgress)
                .await
                .expect("writing a synthetic artifact"),
        );
    }
    let physical = start.map(|(timeline, number)| PhysicalFacts {
        wal_segment_size: SEGMENT_SIZE,
        start_wal: wal_name(timeline, number),
        stop_wal: wal_name(timeline, number),
        backup_started_at: None,
        backup_stopped_at: finished_at,
        wal_archived: true,
        backup_manifest: "backup_manifest.zst.age".into(),
        files: 1,
        superuser: None,
    });
    let manifest = Manifest {
        manifest_version: MANIFEST_VERSION,
        id: id.clone(),
        kind,
        tags: Default::default(),
        started_at: finished_at - Duration::minutes(1),
        finished_at,
        source: SourceFacts {
            databases: if start.is_some() {
                vec![]
            } else {
                vec!["shop".into()]
            },
            system_identifier: start.map(|_| "7437170163312345678".into()),
            timeline: start.map(|(t, _)| t),
            physical,
            ..SourceFacts::default()
        },
        artifacts,
        written_by: "ecobackup-testkit".into(),
        targets: Vec::new(),
    };
    repo.write_manifest(&manifest)
        .await
        .expect("writing a synthetic manifest");
    id
}

/// Writes a logical backup of `databases` that ran from `finished_at - took` to `finished_at`
/// and stores `stored_bytes` in one artifact (`data.zst.age`, listed in its manifest with that
/// size), with an unsigned manifest (signed when `repo` has a signer). Returns its id.
pub async fn synthetic_logical_backup(
    repo: &Repository,
    databases: &[&str],
    finished_at: DateTime<Utc>,
    took: Duration,
    stored_bytes: u64,
) -> String {
    let id = new_backup_id(BackupKind::Logical, finished_at);
    let name = "data.zst.age";
    repo.storage()
        .put(
            &Repository::artifact_key(&id, name),
            vec![7u8; stored_bytes as usize],
        )
        .await
        .expect("writing a synthetic artifact");
    let manifest = Manifest {
        manifest_version: MANIFEST_VERSION,
        id: id.clone(),
        kind: BackupKind::Logical,
        tags: Default::default(),
        started_at: finished_at - took,
        finished_at,
        source: SourceFacts {
            databases: databases.iter().map(|d| (*d).to_owned()).collect(),
            ..SourceFacts::default()
        },
        artifacts: vec![ArtifactEntry {
            name: name.to_owned(),
            stored_size: stored_bytes,
            stored_sha256: "0".repeat(64),
            raw_size: stored_bytes,
            raw_sha256: "0".repeat(64),
            compression: "zstd".into(),
            recipients: vec![],
        }],
        written_by: "ecobackup-testkit".into(),
        targets: Vec::new(),
    };
    repo.write_manifest(&manifest)
        .await
        .expect("writing a synthetic manifest");
    id
}

/// Panics when a stored `manifest.json` (among `keys`, relative to the repository) lacks one
/// of its [`ARTIFACTS`]: a listed backup whose data is gone.
pub fn assert_no_manifest_without_artifacts<'a>(keys: impl IntoIterator<Item = &'a String>) {
    let keys: std::collections::BTreeSet<&String> = keys.into_iter().collect();
    for key in keys.iter().filter(|k| k.ends_with("/manifest.json")) {
        let folder = key.trim_end_matches("manifest.json");
        for name in ARTIFACTS {
            assert!(
                keys.contains(&format!("{folder}{name}")),
                "{key} is stored without its {name}"
            );
        }
    }
}
