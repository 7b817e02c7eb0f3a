//! Synthetic backups for retention tests: a manifest with the finish time a test needs and two
//! small artifacts, written straight into a repository (no database involved).

use chrono::{DateTime, Duration, Utc};
use ecobackup_core::repository::{
    new_backup_id, BackupKind, Manifest, PhysicalFacts, Repository, SourceFacts, MANIFEST_VERSION,
};

/// The WAL segment size the synthetic physical backups record.
pub const SEGMENT_SIZE: u64 = 16 << 20;

/// The artifacts every synthetic backup holds.
pub const ARTIFACTS: [&str; 2] = ["one.zst.age", "two.zst.age"];

/// The name of WAL segment `number` on `timeline` (16 MiB segments).
pub fn wal_name(timeline: u32, number: u64) -> String {
    format!("{timeline:08X}{:08X}{:08X}", number / 256, number % 256)
}

/// Writes a backup of `kind` that finished at `finished_at`, with the [`ARTIFACTS`] (100 bytes
/// each) and an unsigned manifest; a physical one (database `shop` for a logical one) starts
/// at WAL segment `start` = (timeline, number) and has its WAL archived. Returns its id.
pub async fn synthetic_backup(
    repo: &Repository,
    kind: BackupKind,
    finished_at: DateTime<Utc>,
    start: Option<(u32, u64)>,
) -> String {
    let id = new_backup_id(kind, finished_at);
    for name in ARTIFACTS {
        repo.storage()
            .put(&Repository::artifact_key(&id, name), vec![7u8; 100])
            .await
            .expect("writing a synthetic artifact");
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
        artifacts: vec![],
        written_by: "ecobackup-testkit".into(),
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
