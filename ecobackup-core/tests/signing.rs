//! Manifests and the repository marker are signed by the backup host and checked by the restore
//! side: an attacker who can write to the bucket cannot plant, alter, re-sign or move a backup.

use std::sync::Arc;

use ecobackup_core::crypto::{Signer, TrustedSigners};
use ecobackup_core::repository::{
    new_backup_id, ArtifactEntry, BackupKind, InitOutcome, Manifest, Repository, SourceFacts,
    MANIFEST_VERSION,
};
use ecobackup_core::storage::{RepoUrl, Storage, StorageOptions};
use ecobackup_core::Error;

fn storage(name: &str) -> Storage {
    let unique = format!("signing-{name}-{}", new_id());
    Storage::open(&RepoUrl::Memory(unique), &StorageOptions::default()).unwrap()
}

fn new_id() -> String {
    new_backup_id(BackupKind::Logical, chrono::Utc::now())
}

fn manifest(id: &str) -> Manifest {
    let now = chrono::Utc::now();
    Manifest {
        manifest_version: MANIFEST_VERSION,
        id: id.to_owned(),
        kind: BackupKind::Logical,
        tags: Default::default(),
        started_at: now,
        finished_at: now,
        source: SourceFacts {
            databases: vec!["shop".into()],
            ..SourceFacts::default()
        },
        artifacts: vec![ArtifactEntry {
            name: "shop.dump.zst.age".into(),
            stored_size: 10,
            stored_sha256: "00".repeat(32),
            raw_size: 20,
            raw_sha256: "11".repeat(32),
            compression: "zstd".into(),
            recipients: vec![],
        }],
        written_by: "ecobackup test".into(),
        targets: Vec::new(),
    }
}

fn key(id: &str) -> String {
    Repository::artifact_key(id, "manifest.json")
}

/// A signed repository with one signed backup; returns the storage, the signer and the id.
async fn signed_repository(name: &str) -> (Storage, Arc<Signer>, String) {
    let storage = storage(name);
    let signer = Arc::new(Signer::generate());
    let repo = match Repository::init_signed(storage.clone(), vec![], Some(signer.clone()))
        .await
        .unwrap()
    {
        InitOutcome::Created(repo) => repo,
        other => panic!("{other:?}"),
    };
    let id = new_id();
    repo.write_manifest(&manifest(&id)).await.unwrap();
    (storage, signer, id)
}

async fn restore_side(storage: &Storage, signer: &Signer) -> Repository {
    Repository::open(storage.clone())
        .await
        .unwrap()
        .with_trusted_signers(TrustedSigners::new(vec![signer.public_key()]))
        .await
        .unwrap()
}

fn refusal(err: Error) -> String {
    match err {
        Error::Untrusted { .. } => err.to_string(),
        other => panic!("expected a signature refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_signed_manifest_is_accepted() {
    let (storage, signer, id) = signed_repository("good").await;
    assert!(storage
        .get(&format!("{}.sig", key(&id)))
        .await
        .unwrap()
        .is_some());
    assert!(storage.get("ecobackup.json.sig").await.unwrap().is_some());
    let repo = restore_side(&storage, &signer).await;
    assert_eq!(repo.manifest(&id).await.unwrap().id, id);
    assert_eq!(repo.resolve("latest", None).await.unwrap().id, id);
    // The manifest's JSON format is unchanged: no signature field inside it.
    let bytes = storage.get(&key(&id)).await.unwrap().unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert!(parsed.get("signature").is_none());
}

#[tokio::test]
async fn a_forged_unsigned_manifest_is_refused() {
    let (storage, signer, genuine) = signed_repository("forged").await;
    // The attacker knows the layout and writes a manifest of their own, without a signature.
    let forged = new_id();
    let body = serde_json::to_vec_pretty(&manifest(&forged)).unwrap();
    storage.put(&key(&forged), body).await.unwrap();
    let repo = restore_side(&storage, &signer).await;
    let msg = refusal(repo.manifest(&forged).await.unwrap_err());
    assert!(
        msg.contains(&key(&forged)) && msg.contains("no signature"),
        "{msg}"
    );
    // It is the newest: `latest` never picks it, but the genuine backup before it (with a
    // warning), and the listing reports it as untrusted.
    assert_eq!(repo.resolve("latest", None).await.unwrap().id, genuine);
    let listing = repo.manifests().await.unwrap();
    assert!(
        listing
            .bad
            .iter()
            .any(|b| b.id == forged && b.untrusted && b.reason.contains("no signature")),
        "{:?}",
        listing.bad
    );
}

#[tokio::test]
async fn a_manifest_changed_after_signing_is_refused() {
    let (storage, signer, id) = signed_repository("modified").await;
    let bytes = storage.get(&key(&id)).await.unwrap().unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let changed = text.replace("\"stored_size\": 10", "\"stored_size\": 11");
    assert_ne!(text, changed);
    storage.put(&key(&id), changed.into_bytes()).await.unwrap();
    let repo = restore_side(&storage, &signer).await;
    let msg = refusal(repo.manifest(&id).await.unwrap_err());
    assert!(msg.contains("does not match its content"), "{msg}");
}

#[tokio::test]
async fn a_manifest_re_signed_with_another_key_is_refused() {
    let (storage, signer, id) = signed_repository("resigned").await;
    let attacker = Signer::generate();
    let bytes = storage.get(&key(&id)).await.unwrap().unwrap();
    storage
        .put(
            &format!("{}.sig", key(&id)),
            attacker.sign(&key(&id), &bytes),
        )
        .await
        .unwrap();
    let repo = restore_side(&storage, &signer).await;
    let msg = refusal(repo.manifest(&id).await.unwrap_err());
    assert!(
        msg.contains("not a trusted signer") && msg.contains(&attacker.public_key().to_string()),
        "{msg}"
    );
}

#[tokio::test]
async fn a_signed_manifest_replayed_into_another_folder_is_refused() {
    let (storage, signer, id) = signed_repository("replayed").await;
    let other = new_id();
    for suffix in ["", ".sig"] {
        let bytes = storage
            .get(&format!("{}{suffix}", key(&id)))
            .await
            .unwrap()
            .unwrap();
        storage
            .put(&format!("{}{suffix}", key(&other)), bytes)
            .await
            .unwrap();
    }
    let repo = restore_side(&storage, &signer).await;
    let msg = refusal(repo.manifest(&other).await.unwrap_err());
    assert!(msg.contains("copied to another place"), "{msg}");
    // Without any signature check the copy is still refused: its id names another folder.
    let unchecked = Repository::open(storage.clone()).await.unwrap();
    let err = unchecked.manifest(&other).await.unwrap_err();
    assert!(matches!(err, Error::BadManifest { .. }), "{err:?}");
    assert!(
        err.to_string().contains("copied to another folder"),
        "{err}"
    );
    assert_eq!(unchecked.manifest(&id).await.unwrap().id, id);
}

#[tokio::test]
async fn an_unsigned_repository_needs_allow_unsigned() {
    let storage = storage("unsigned");
    let repo = match Repository::init(storage.clone(), vec![]).await.unwrap() {
        InitOutcome::Created(repo) => repo,
        other => panic!("{other:?}"),
    };
    let id = new_id();
    repo.write_manifest(&manifest(&id)).await.unwrap();
    assert!(storage
        .get(&format!("{}.sig", key(&id)))
        .await
        .unwrap()
        .is_none());

    let signer = Signer::generate();
    let trusted = TrustedSigners::new(vec![signer.public_key()]);
    let err = Repository::open(storage.clone())
        .await
        .unwrap()
        .with_trusted_signers(trusted.clone())
        .await
        .unwrap_err();
    let msg = refusal(err);
    assert!(
        msg.contains("ecobackup.json") && msg.contains("allow_unsigned = true"),
        "{msg}"
    );

    let lenient = Repository::open(storage.clone())
        .await
        .unwrap()
        .with_trusted_signers(trusted.clone().allowing_unsigned(true))
        .await
        .unwrap();
    assert_eq!(lenient.manifest(&id).await.unwrap().id, id);

    // A signed backup signs the marker too; its manifest is then checked even when unsigned
    // ones are allowed, and the repository opens without allow_unsigned.
    let repo = Repository::open(storage.clone())
        .await
        .unwrap()
        .with_signer(Arc::new(signer));
    let signed = new_id();
    repo.write_manifest(&manifest(&signed)).await.unwrap();
    let strict = Repository::open(storage.clone())
        .await
        .unwrap()
        .with_trusted_signers(trusted.clone())
        .await
        .unwrap();
    assert_eq!(strict.manifest(&signed).await.unwrap().id, signed);
    let msg = refusal(strict.manifest(&id).await.unwrap_err());
    assert!(msg.contains("no signature"), "{msg}");
    let bytes = storage.get(&key(&signed)).await.unwrap().unwrap();
    let mut changed = bytes.to_vec();
    changed.push(b' ');
    storage.put(&key(&signed), changed).await.unwrap();
    let lenient = Repository::open(storage.clone())
        .await
        .unwrap()
        .with_trusted_signers(trusted.allowing_unsigned(true))
        .await
        .unwrap();
    let msg = refusal(lenient.manifest(&signed).await.unwrap_err());
    assert!(msg.contains("does not match its content"), "{msg}");
}

#[tokio::test]
async fn a_replaced_marker_is_refused() {
    let (storage, signer, _) = signed_repository("marker").await;
    let bytes = storage.get("ecobackup.json").await.unwrap().unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let changed = text.replace(
        "\"recipients\": []",
        "\"recipients\": [\"sha256:0000000000000000\"]",
    );
    assert_ne!(text, changed);
    storage
        .put("ecobackup.json", changed.into_bytes())
        .await
        .unwrap();
    let err = Repository::open(storage.clone())
        .await
        .unwrap()
        .with_trusted_signers(TrustedSigners::new(vec![signer.public_key()]))
        .await
        .unwrap_err();
    let msg = refusal(err);
    assert!(
        msg.contains("ecobackup.json") && msg.contains("does not match"),
        "{msg}"
    );
}
