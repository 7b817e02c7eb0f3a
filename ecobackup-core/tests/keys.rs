//! Identity files: age-keygen format, 0600 enforced, optional passphrase, errors without secrets.

use std::os::unix::fs::PermissionsExt;

use ecobackup_core::crypto::{generate_identity, write_identity_file, Keyring, SecretString};
use ecobackup_core::Error;

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

#[test]
fn a_generated_identity_file_is_0600_and_loads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restore.key");
    let (identity, recipient) = generate_identity();
    write_identity_file(&path, &identity, None).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&format!("# public key: {recipient}")));
    let keyring = Keyring::from_files(&[&path], None).unwrap();
    assert_eq!(keyring.recipients(), vec![recipient]);
}

#[test]
fn an_existing_key_file_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restore.key");
    let (first, _) = generate_identity();
    write_identity_file(&path, &first, None).unwrap();
    let before = std::fs::read(&path).unwrap();
    let (second, _) = generate_identity();
    let err = write_identity_file(&path, &second, None).unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_key_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restore.key");
    let (identity, _) = generate_identity();
    write_identity_file(&path, &identity, None).unwrap();
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = Keyring::from_files(&[&path], None).err().unwrap();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("mode {mode:04o}")) && msg.contains("chmod 600"),
            "{msg}"
        );
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    Keyring::from_files(&[&path], None).unwrap();
}

#[test]
fn a_passphrase_protected_identity_needs_the_right_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restore.key.age");
    let (identity, recipient) = generate_identity();
    write_identity_file(
        &path,
        &identity,
        Some(&secret("correct horse battery staple")),
    )
    .unwrap();
    let raw = std::fs::read(&path).unwrap();
    assert!(
        raw.starts_with(b"age-encryption.org/v1\n-> scrypt "),
        "an age -p file"
    );
    assert!(!String::from_utf8_lossy(&raw).contains("AGE-SECRET-KEY"));

    let err = Keyring::from_files(&[&path], None).err().unwrap();
    assert!(matches!(err, Error::PassphraseRequired { .. }), "{err:?}");
    let err = Keyring::from_files(&[&path], Some(&secret("wrong")))
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .starts_with("wrong passphrase for identity file"),
        "{err}"
    );
    let keyring =
        Keyring::from_files(&[&path], Some(&secret("correct horse battery staple"))).unwrap();
    assert_eq!(keyring.recipients(), vec![recipient]);
}

#[test]
fn several_files_make_one_keyring_for_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let (old, old_r) = generate_identity();
    let (new, new_r) = generate_identity();
    let (old_path, new_path) = (dir.path().join("old.key"), dir.path().join("new.key"));
    write_identity_file(&old_path, &old, None).unwrap();
    write_identity_file(&new_path, &new, None).unwrap();
    let keyring = Keyring::from_files(&[old_path, new_path], None).unwrap();
    assert_eq!(keyring.recipients(), vec![old_r, new_r]);
}

#[test]
fn a_malformed_key_file_is_refused_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.key");
    std::fs::write(
        &path,
        "# comment\nAGE-SECRET-KEY-1NOTAVALIDKEYBUTSECRETLOOKING\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let msg = Keyring::from_files(&[&path], None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("line 2 is not an age X25519 identity"),
        "{msg}"
    );
    assert!(
        !msg.contains("NOTAVALIDKEY"),
        "never echo key material: {msg}"
    );

    std::fs::write(&path, "# only comments\n").unwrap();
    let msg = Keyring::from_files(&[&path], None)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("holds no identity"), "{msg}");

    let missing = dir.path().join("missing.key");
    let msg = Keyring::from_files(&[&missing], None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("missing.key") && msg.contains("No such file"),
        "{msg}"
    );
}
