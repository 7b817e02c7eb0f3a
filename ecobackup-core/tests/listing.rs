//! Listing a repository where some objects are bad: every good backup is still listed and
//! `latest` still resolves; the bad ones are reported beside them, each with its reason. And
//! `verify` warns about backups encrypted to other keys than the repository records.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ecobackup_core::artifact::{self, Sealing};
use ecobackup_core::crypto::{fingerprint, generate_identity, Keyring};
use ecobackup_core::io::ReaderSource;
use ecobackup_core::progress::NoProgress;
use ecobackup_core::repository::{
    ArtifactEntry, BackupKind, InitOutcome, Manifest, Repository, SourceFacts, MANIFEST_VERSION,
};
use ecobackup_core::storage::{RepoUrl, Storage, StorageOptions};
use ecobackup_core::verify::{verify_backup, BackupCheck};
use ecobackup_core::Error;

const OLD: &str = "20261101T000000Z-logical-aaaaaa";
const NEW: &str = "20261102T000000Z-logical-bbbbbb";
const CORRUPT: &str = "20261103T000000Z-logical-cccccc";
const MOVED: &str = "20261104T000000Z-physical-dddddd";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn manifest(id: &str, finished: &str, artifacts: Vec<ArtifactEntry>) -> Manifest {
    Manifest {
        manifest_version: MANIFEST_VERSION,
        id: id.to_owned(),
        kind: BackupKind::Logical,
        tags: Default::default(),
        started_at: at("2026-11-01T00:00:00Z"),
        finished_at: at(finished),
        source: SourceFacts::default(),
        artifacts,
        written_by: "ecobackup test".into(),
        targets: Vec::new(),
    }
}

async fn repository(name: &str, recipients: Vec<String>) -> Repository {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let url = RepoUrl::Memory(format!("listing-{name}-{nanos}"));
    let storage = Storage::open(&url, &StorageOptions::default()).unwrap();
    match Repository::init(storage, recipients).await.unwrap() {
        InitOutcome::Created(repo) => repo,
        other => panic!("{other:?}"),
    }
}

/// Two good backups, then newer folders that are bad in every way a folder can be.
async fn repository_with_bad_objects() -> Repository {
    let repo = repository("bad", vec![]).await;
    let storage = repo.storage().clone();
    repo.write_manifest(&manifest(OLD, "2026-11-01T01:00:00Z", vec![]))
        .await
        .unwrap();
    repo.write_manifest(&manifest(NEW, "2026-11-02T01:00:00Z", vec![]))
        .await
        .unwrap();
    // Not JSON at all, in a backup's folder and in a stray folder.
    for folder in [CORRUPT, "stray"] {
        storage
            .put(
                &format!("backups/{folder}/manifest.json"),
                b"{\"manifest_version\": 1, \"id\": ".to_vec(),
            )
            .await
            .unwrap();
    }
    // A valid, newer manifest copied into another backup's folder.
    let copied = manifest(NEW, "2026-11-05T01:00:00Z", vec![]);
    storage
        .put(
            &format!("backups/{MOVED}/manifest.json"),
            serde_json::to_vec(&copied).unwrap(),
        )
        .await
        .unwrap();
    repo
}

#[tokio::test]
async fn latest_skips_a_corrupt_or_misplaced_manifest() {
    let repo = repository_with_bad_objects().await;
    assert_eq!(repo.resolve("latest", None).await.unwrap().id, NEW);
    assert_eq!(
        repo.resolve("latest", Some(BackupKind::Logical))
            .await
            .unwrap()
            .id,
        NEW
    );
    // Asked for by id, a bad manifest is an error naming it.
    for id in [CORRUPT, MOVED] {
        let err = repo.manifest(id).await.unwrap_err();
        assert!(
            matches!(&err, Error::BadManifest { key, .. } if key.contains(id)),
            "{err}"
        );
    }
    assert!(repo
        .manifest(MOVED)
        .await
        .unwrap_err()
        .to_string()
        .contains("its id field says"));
}

#[tokio::test]
async fn manifests_lists_every_good_backup_and_each_bad_one_with_its_reason() {
    let repo = repository_with_bad_objects().await;
    let listing = repo.manifests().await.unwrap();
    let good: Vec<&str> = listing.backups.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(good, [OLD, NEW]);
    let bad: Vec<(&str, &str)> = listing
        .bad
        .iter()
        .map(|b| (b.id.as_str(), b.reason.as_str()))
        .collect();
    assert_eq!(bad.len(), 3, "{bad:?}");
    assert_eq!(bad[0].0, CORRUPT);
    assert!(bad[0].1.starts_with("not a valid manifest"), "{bad:?}");
    assert_eq!(bad[1].0, MOVED);
    assert!(bad[1].1.contains(NEW), "{bad:?}");
    assert_eq!(bad[2].0, "stray");
    assert!(bad[2].1.contains("not a backup id"), "{bad:?}");
    assert_eq!(listing.bad[1].kind(), Some(BackupKind::Physical));
    assert_eq!(listing.bad[2].kind(), None);
    // verify --all turns each into a failed check.
    let check = BackupCheck::bad_manifest(&listing.bad[0]);
    assert!(!check.ok);
    assert!(check.manifest_error.unwrap().contains("manifest.json"));
}

#[tokio::test]
async fn many_backups_are_all_listed() {
    let repo = repository("many", vec![]).await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let id = format!("20261101T0000{:02}Z-files-aaaaa{}", i, ['a', 'b'][i % 2]);
        let finished = format!("2026-11-01T01:00:{i:02}Z");
        repo.write_manifest(&manifest(&id, &finished, vec![]))
            .await
            .unwrap();
        ids.push(id);
    }
    let listed: Vec<String> = repo
        .manifests()
        .await
        .unwrap()
        .backups
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(listed, ids, "every backup, oldest first");
}

/// Stores one artifact sealed to `to`, and its manifest.
async fn backup_to(repo: &Repository, id: &str, to: &[age::x25519::Recipient]) -> Manifest {
    let sealing = Sealing {
        level: 3,
        recipients: to.to_vec(),
    };
    let name = format!("shop.dump{}", sealing.suffix());
    let source = ReaderSource::new("shop", std::io::Cursor::new(b"some rows".to_vec()));
    let entry = artifact::store(repo, id, &name, source, &sealing, &NoProgress)
        .await
        .unwrap();
    let manifest = manifest(id, "2026-11-01T01:00:00Z", vec![entry]);
    repo.write_manifest(&manifest).await.unwrap();
    manifest
}

#[tokio::test]
async fn verify_warns_about_backups_encrypted_to_other_keys_than_the_marker_records() {
    let (ops, ops_recipient) = generate_identity();
    let (other, other_recipient) = generate_identity();
    let repo = repository("keys", vec![fingerprint(&ops_recipient)]).await;
    let keyring = Some(Arc::new(Keyring::from_identities(vec![ops, other])));

    let usual = backup_to(&repo, OLD, std::slice::from_ref(&ops_recipient)).await;
    assert_eq!(
        usual.artifacts[0].recipients,
        [fingerprint(&ops_recipient)],
        "the manifest records the recipients' fingerprints"
    );
    let check = verify_backup(&repo, &usual, keyring.clone(), &NoProgress)
        .await
        .unwrap();
    assert!(check.ok && check.warnings.is_empty(), "{check:?}");

    let rotated = backup_to(&repo, NEW, std::slice::from_ref(&other_recipient)).await;
    let check = verify_backup(&repo, &rotated, keyring, &NoProgress)
        .await
        .unwrap();
    assert!(check.ok, "intact, only a warning: {check:?}");
    assert_eq!(check.warnings.len(), 1, "{check:?}");
    let warning = &check.warnings[0];
    assert!(
        warning.contains(&fingerprint(&other_recipient))
            && warning.contains(&fingerprint(&ops_recipient))
            && warning.contains("shop.dump.zst.age"),
        "{warning}"
    );

    let plain = backup_to(&repo, CORRUPT, &[]).await;
    let check = verify_backup(&repo, &plain, None, &NoProgress)
        .await
        .unwrap();
    assert!(check.warnings[0].contains("is not encrypted"), "{check:?}");
}
