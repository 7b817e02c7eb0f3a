//! Files ecobackup writes locally are private whatever the umask (directories 0700, files
//! 0600), key files are written whole or not at all, and identity files are checked as opened.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ecobackup_core::crypto::{
    generate_identity, write_identity_file, Keyring, SecretString, Signer,
};
use ecobackup_core::pipeline::Pipeline;
use ecobackup_core::repository::{InitOutcome, Repository};
use ecobackup_core::storage::{RepoUrl, Storage, StorageOptions};
use ecobackup_core::Error;
use ecobackup_testkit::ChunkedSource;

/// The usual umask of a login shell, which makes new files 0644 and directories 0755.
fn loose_umask() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every directory and file under `root`, with its mode.
fn modes(root: &Path) -> Vec<(String, u32)> {
    let mut found = vec![(root.display().to_string(), mode(root))];
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(modes(&path));
        } else {
            found.push((path.display().to_string(), mode(&path)));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_repository_is_private_whatever_the_umask() {
    loose_umask();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("var/backups/eco");
    let storage = Storage::open(&RepoUrl::File(root.clone()), &StorageOptions::default()).unwrap();
    let repo = match Repository::init(storage.clone(), vec![]).await.unwrap() {
        InitOutcome::Created(repo) => repo,
        other => panic!("{other:?}"),
    };
    repo.storage()
        .put("locks/prune/1-a.json", b"{}".to_vec())
        .await
        .unwrap();
    // A small artifact (one PUT) and a large one (a multipart upload of 8 MiB parts).
    let small = vec![7u8; 1000];
    let large = vec![9u8; 9 << 20];
    for (name, data) in [("small.zst.age", small), ("large.zst.age", large)] {
        let size = data.len() as u64;
        Pipeline::new(ChunkedSource::new(data, vec![1 << 20]))
            .into(storage.sink(
                &format!("backups/20261122T041500Z-logical-aaaaaa/{name}"),
                Some(size),
            ))
            .run()
            .await
            .unwrap();
    }
    let all = modes(&root);
    assert!(all.len() >= 8, "{all:?}");
    for (path, mode) in &all {
        let wanted = if Path::new(path).is_dir() {
            0o700
        } else {
            0o600
        };
        assert_eq!(*mode, wanted, "{path} has mode {mode:o}: {all:?}");
    }
}

#[test]
fn key_files_are_private_and_written_whole() {
    loose_umask();
    let dir = tempfile::tempdir().unwrap();
    let (identity, _) = generate_identity();
    let identity_path = dir.path().join("restore.key");
    write_identity_file(&identity_path, &identity, None).unwrap();
    let signing_path = dir.path().join("signing.key");
    Signer::generate().write_file(&signing_path, false).unwrap();
    assert_eq!(mode(&identity_path), 0o600);
    assert_eq!(mode(&signing_path), 0o600);
    let err = Signer::generate()
        .write_file(&signing_path, false)
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "no temporary file left behind: {names:?}");
}

#[test]
fn an_identity_file_owned_by_another_user_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restore.key");
    let (identity, _) = generate_identity();
    write_identity_file(&path, &identity, None).unwrap();
    Keyring::from_files(&[&path], None).unwrap();
    let nobody = nix::unistd::Uid::from_raw(65534);
    if nix::unistd::geteuid().is_root() {
        nix::unistd::chown(&path, Some(nobody), None).unwrap();
        let err = Keyring::from_files(&[&path], None).err().unwrap();
        let msg = err.to_string();
        assert!(
            msg.contains("owned by user id 65534") && msg.contains("chown"),
            "{msg}"
        );
        let signing = dir.path().join("signing.key");
        Signer::generate().write_file(&signing, false).unwrap();
        nix::unistd::chown(&signing, Some(nobody), None).unwrap();
        let msg = Signer::from_file(&signing).unwrap_err().to_string();
        assert!(msg.contains("owned by user id 65534"), "{msg}");
    } else {
        // Not root: another user's file cannot be made here; a file of ours must still load.
        eprintln!("not root: the other-owner case needs root to chown");
    }
}

#[test]
fn a_damaged_identity_file_is_not_reported_as_a_wrong_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restore.key.age");
    let (identity, _) = generate_identity();
    let passphrase = SecretString::from("correct horse battery staple".to_owned());
    write_identity_file(&path, &identity, Some(&passphrase)).unwrap();
    // Change the header's MAC: the passphrase is right, the file is not.
    let mut raw = std::fs::read(&path).unwrap();
    let mac = raw.windows(4).position(|w| w == b"--- ").unwrap() + 4;
    raw[mac] = if raw[mac] == b'A' { b'B' } else { b'A' };
    std::fs::write(&path, &raw).unwrap();
    let err = Keyring::from_files(&[&path], Some(&passphrase))
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(
        !msg.contains("wrong passphrase") && msg.contains("damaged"),
        "{msg}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn loading_a_keyring_does_not_block_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restore.key.age");
    let (identity, recipient) = generate_identity();
    let passphrase = SecretString::from("correct horse battery staple".to_owned());
    write_identity_file(&path, &identity, Some(&passphrase)).unwrap();
    // On a single-threaded runtime another task runs during the load only if the load yields,
    // i.e. if scrypt runs on a blocking thread instead of this one.
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = ran.clone();
    let other = tokio::spawn(async move {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let keyring = Keyring::load(vec![path], Some(passphrase)).await.unwrap();
    assert_eq!(
        ran.load(Ordering::SeqCst),
        1,
        "the other task ran while scrypt worked"
    );
    assert_eq!(keyring.recipients(), vec![recipient]);
    other.await.unwrap();
}
