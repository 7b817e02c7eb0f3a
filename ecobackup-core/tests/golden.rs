//! The on-disk formats, pinned: a fixed manifest, marker and lock object serialize to the
//! committed files under `tests/golden/`, byte for byte, and those files parse back to the
//! same values. A serde rename or a new field cannot change what is written without a diff
//! here (and in docs/FORMAT.md).

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use ecobackup_core::repository::{
    ArtifactEntry, BackupKind, FilesFacts, LockInfo, LockMode, Manifest, PhysicalFacts,
    RepositoryMarker, ServerFacts, SourceFacts, FORMAT, MANIFEST_VERSION,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn golden(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Serializes `value` as the repository writes it and compares with the golden file; parses
/// the golden file back.
fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(name: &str, value: &T) {
    let written = String::from_utf8(serde_json::to_vec_pretty(value).unwrap()).unwrap();
    let expected = golden(name);
    assert_eq!(
        written,
        expected.trim_end(),
        "{name}: the on-disk format changed; if on purpose, update tests/golden/{name} and docs/FORMAT.md"
    );
    let parsed: T = serde_json::from_str(&expected).unwrap();
    assert_eq!(&parsed, value, "{name} does not parse back");
}

#[test]
fn manifest_format() {
    let manifest = Manifest {
        manifest_version: MANIFEST_VERSION,
        id: "20261122T041500Z-logical-k3j5qa".into(),
        kind: BackupKind::Logical,
        tags: BTreeMap::from([
            ("migration".to_owned(), "0042".to_owned()),
            ("reason".to_owned(), "pre-migration".to_owned()),
        ]),
        started_at: at("2026-11-22T04:15:00Z"),
        finished_at: at("2026-11-22T04:17:31.250Z"),
        source: SourceFacts {
            server_version: Some("15.18".into()),
            system_identifier: Some("7437170163312345678".into()),
            databases: vec!["shop".into()],
            timeline: None,
            start_lsn: None,
            stop_lsn: None,
            globals_without_role_passwords: true,
            physical: None,
            files: None,
            servers: vec![ServerFacts {
                server_version: "15.18".into(),
                system_identifier: Some("7437170163312345678".into()),
                databases: vec!["shop".into()],
                globals: Some("globals.sql.zst.age".into()),
                globals_without_role_passwords: true,
            }],
        },
        artifacts: vec![
            ArtifactEntry {
                name: "shop.dump.zst.age".into(),
                stored_size: 1_048_713,
                stored_sha256: "ab".repeat(32),
                raw_size: 9_437_184,
                raw_sha256: "cd".repeat(32),
                compression: "zstd".into(),
                recipients: vec![
                    "sha256:0123456789abcdef".into(),
                    "sha256:fedcba9876543210".into(),
                ],
            },
            ArtifactEntry {
                name: "catalog.json.zst".into(),
                stored_size: 120,
                stored_sha256: "ef".repeat(32),
                raw_size: 300,
                raw_sha256: "01".repeat(32),
                compression: "zstd".into(),
                recipients: vec![],
            },
        ],
        written_by: "ecobackup 0.1.0".into(),
        targets: Vec::new(),
    };
    check("manifest.json", &manifest);

    let physical = Manifest {
        id: "20261122T050000Z-physical-abcdef".into(),
        kind: BackupKind::Physical,
        tags: BTreeMap::new(),
        source: SourceFacts {
            server_version: Some("18.6".into()),
            system_identifier: Some("7437170163312345678".into()),
            timeline: Some(3),
            start_lsn: Some("0/5000028".into()),
            stop_lsn: Some("0/5000100".into()),
            physical: Some(PhysicalFacts {
                wal_segment_size: 16 * 1024 * 1024,
                start_wal: "000000030000000000000005".into(),
                stop_wal: "000000030000000000000005".into(),
                backup_started_at: Some(at("2026-11-22T04:15:00Z")),
                backup_stopped_at: at("2026-11-22T04:17:30Z"),
                wal_archived: true,
                backup_manifest: "backup_manifest.zst.age".into(),
                files: 990,
                superuser: Some("postgres".into()),
            }),
            ..SourceFacts::default()
        },
        artifacts: vec![],
        ..manifest
    };
    check("manifest-physical.json", &physical);

    let files = Manifest {
        id: "20261122T030000Z-files-qwerty".into(),
        kind: BackupKind::Files,
        tags: BTreeMap::new(),
        source: SourceFacts {
            files: Some(FilesFacts {
                set: "uploads".into(),
                paths: vec!["/srv/ecommus/uploads".into()],
                files: 1204,
                directories: 37,
                symlinks: 2,
                skipped: 1,
                excluded: 3,
                changed: 1,
                bytes: 734_003_200,
                tree_sha256: "12".repeat(32),
            }),
            ..SourceFacts::default()
        },
        artifacts: vec![ArtifactEntry {
            name: "files.tar.zst.age".into(),
            stored_size: 700_000_000,
            stored_sha256: "34".repeat(32),
            raw_size: 735_000_000,
            raw_sha256: "56".repeat(32),
            compression: "zstd".into(),
            recipients: vec!["sha256:0123456789abcdef".into()],
        }],
        ..physical
    };
    check("manifest-files.json", &files);
}

#[test]
fn manifests_written_before_files_backups_still_parse() {
    // manifest.json and manifest-physical.json have no `files` key: it defaults to none.
    for name in ["manifest.json", "manifest-physical.json"] {
        let manifest: Manifest = serde_json::from_str(&golden(name)).unwrap();
        assert_eq!(manifest.source.files, None, "{name}");
    }
}

#[test]
fn marker_format() {
    let marker = RepositoryMarker {
        format: FORMAT.to_owned(),
        created_at: at("2026-11-22T04:00:00Z"),
        recipients: vec!["sha256:0123456789abcdef".into()],
    };
    check("ecobackup.json", &marker);
}

#[test]
fn lock_format() {
    for (name, mode, owner) in [
        ("lock-shared.json", LockMode::Shared, "backup logical"),
        ("lock-exclusive.json", LockMode::Exclusive, "prune"),
    ] {
        let lock = LockInfo {
            mode,
            owner: owner.into(),
            host: "db1.internal".into(),
            pid: 4242,
            token: "0123456789abcdef".into(),
            acquired_at: at("2026-11-22T04:15:00.123456Z"),
            expires_at: at("2026-11-22T04:20:00.123456Z"),
        };
        check(name, &lock);
    }
}
