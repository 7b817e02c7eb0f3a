//! The `ecobackup` binary as an operator meets it: help, keys, the encrypt/decrypt filters, and
//! one clear error line with a non-zero exit for every bad input.

use std::os::unix::fs::PermissionsExt;

mod common;

use common::{ecobackup, key, one_error_line};

#[test]
fn help_shows_the_whole_command_tree() {
    let dir = tempfile::tempdir().unwrap();
    let out = ecobackup(dir.path()).arg("--help").assert().success();
    let help = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    for command in [
        "init",
        "key",
        "backup",
        "list",
        "show",
        "restore",
        "wal-push",
        "wal-fetch",
        "verify",
        "drill",
        "prune",
        "status",
        "check",
        "daemon",
        "demo",
        "encrypt",
        "decrypt",
    ] {
        assert!(
            help.contains(&format!("\n  {command} ")),
            "missing {command} in:\n{help}"
        );
    }
    assert!(help.contains("Create the repository marker (ecobackup.json)"));
    assert!(!help.contains("not built yet"), "every command is built");
    let out = ecobackup(dir.path())
        .args(["backup", "--help"])
        .assert()
        .success();
    let backup_help = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        backup_help.contains("logical") && backup_help.contains("files"),
        "{backup_help}"
    );
    assert!(!backup_help.contains("not built yet"), "{backup_help}");
}

#[test]
fn the_daemon_without_a_configuration_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = ecobackup(dir.path()).arg("daemon").assert().code(2);
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.contains("the daemon needs a configuration file with [[schedule]] entries"),
        "{line}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn key_generate_writes_0600_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let (path, recipient) = key(dir.path(), "restore.key");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let before = std::fs::read(&path).unwrap();
    assert!(String::from_utf8_lossy(&before).contains(&recipient));
    let out = ecobackup(dir.path())
        .args(["key", "generate", "--out", "restore.key"])
        .assert()
        .code(2);
    assert!(one_error_line(&out.get_output().stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // Without --out, like age-keygen: the identity on stdout, the public key on stderr.
    let out = ecobackup(dir.path())
        .args(["key", "generate"])
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.contains("AGE-SECRET-KEY-1"));
    assert!(String::from_utf8_lossy(&out.get_output().stderr).starts_with("Public key: age1"));
}

#[test]
fn encrypt_then_decrypt_round_trips_and_stock_age_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let (identity, recipient) = key(dir.path(), "restore.key");
    let data: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("{i}\tpaid\t{{\"qty\": {}}}\n", i % 7).into_bytes())
        .collect();

    let sealed = ecobackup(dir.path())
        .args(["encrypt", "-r", &recipient])
        .write_stdin(data.clone())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(sealed.starts_with(b"age-encryption.org/v1\n"));
    std::fs::write(dir.path().join("x.zst.age"), &sealed).unwrap();

    let plain = ecobackup(dir.path())
        .args(["decrypt"])
        .env("ECOBACKUP_IDENTITY_FILE", &identity)
        .write_stdin(sealed.clone())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(plain == data);

    // --raw keeps the zstd stream; the stock tools read the artifact.
    let raw = ecobackup(dir.path())
        .args(["decrypt", "--raw", "-i"])
        .arg(&identity)
        .arg("x.zst.age")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(raw.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]));
    let stock = std::process::Command::new("age")
        .args(["-d", "-i"])
        .arg(&identity)
        .arg(dir.path().join("x.zst.age"))
        .output()
        .unwrap();
    assert!(stock.status.success());
    assert!(stock.stdout == raw);
}

#[test]
fn recipients_from_the_environment_and_the_config_file_and_no_compress() {
    let dir = tempfile::tempdir().unwrap();
    let (identity, recipient) = key(dir.path(), "a.key");
    let (identity_b, recipient_b) = key(dir.path(), "b.key");
    std::fs::write(
        dir.path().join("ecobackup.toml"),
        format!("[encryption]\nrecipients = [\"{recipient_b}\"]\nidentity_files = [\"b.key\"]\n"),
    )
    .unwrap();

    // The environment wins over the file: only a.key can open it.
    let sealed = ecobackup(dir.path())
        .args(["--config", "ecobackup.toml", "encrypt", "--no-compress"])
        .env("ECOBACKUP_RECIPIENTS", &recipient)
        .write_stdin("plain text, not compressed")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = ecobackup(dir.path())
        .args(["--config", "ecobackup.toml", "decrypt"])
        .write_stdin(sealed.clone())
        .assert()
        .code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.contains("wrong key") && line.contains(&recipient_b),
        "{line}"
    );
    ecobackup(dir.path())
        .args(["decrypt", "-i"])
        .arg(&identity)
        .write_stdin(sealed)
        .assert()
        .success()
        .stdout("plain text, not compressed");

    // The file alone is enough.
    let sealed = ecobackup(dir.path())
        .args(["--config", "ecobackup.toml", "encrypt"])
        .write_stdin("from the file")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    ecobackup(dir.path())
        .args(["decrypt", "-i"])
        .arg(&identity_b)
        .write_stdin(sealed)
        .assert()
        .success()
        .stdout("from the file");
}

#[test]
fn a_passphrase_protected_identity_reads_its_passphrase_from_a_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "tr0ub4dor&3\n").unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = ecobackup(dir.path())
        .args([
            "key",
            "generate",
            "--out",
            "k.age",
            "--passphrase-file",
            "pass",
        ])
        .assert()
        .success();
    let recipient = String::from_utf8_lossy(&out.get_output().stdout)
        .trim()
        .to_owned();
    let sealed = ecobackup(dir.path())
        .args(["encrypt", "-r", &recipient])
        .write_stdin("secret rows")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();

    let out = ecobackup(dir.path())
        .args(["decrypt", "-i", "k.age"])
        .write_stdin(sealed.clone())
        .assert()
        .code(2);
    assert!(one_error_line(&out.get_output().stderr).contains("passphrase-protected"));
    ecobackup(dir.path())
        .args(["decrypt", "-i", "k.age"])
        .env("ECOBACKUP_IDENTITY_PASSPHRASE_FILE", &pass)
        .write_stdin(sealed.clone())
        .assert()
        .success()
        .stdout("secret rows");
    ecobackup(dir.path())
        .args(["decrypt", "-i", "k.age"])
        .env("ECOBACKUP_IDENTITY_PASSPHRASE", "tr0ub4dor&3")
        .write_stdin(sealed.clone())
        .assert()
        .success()
        .stdout("secret rows");
    let out = ecobackup(dir.path())
        .args(["decrypt", "-i", "k.age"])
        .env("ECOBACKUP_IDENTITY_PASSPHRASE", "wrong")
        .write_stdin(sealed)
        .assert()
        .code(2);
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.contains("wrong passphrase") && !line.contains("tr0ub4dor"),
        "{line}"
    );
}

#[test]
fn bad_inputs_fail_with_one_line_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (identity, recipient) = key(dir.path(), "k.key");
    let sealed = ecobackup(dir.path())
        .args(["encrypt", "-r", &recipient])
        .write_stdin(vec![b'x'; 300_000])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();

    // A flipped byte with -o: exit 1, no output file, no temp file.
    // (The input compresses to a few bytes: the middle of the file can be the age header,
    // whose damage reads differently. 20 bytes from the end is always the last chunk's tag.)
    let mut damaged = sealed.clone();
    let in_the_payload = damaged.len() - 20;
    damaged[in_the_payload] ^= 1;
    let out = ecobackup(dir.path())
        .args(["decrypt", "-o", "out.txt", "-i"])
        .arg(&identity)
        .write_stdin(damaged)
        .assert()
        .code(1);
    assert!(one_error_line(&out.get_output().stderr).contains("failed authentication"));
    // A cut tail.
    let out = ecobackup(dir.path())
        .args(["decrypt", "-o", "out.txt", "-i"])
        .arg(&identity)
        .write_stdin(sealed[..sealed.len() - 5].to_vec())
        .assert()
        .code(1);
    // A cut inside the last chunk leaves a tag that cannot match: age reports it as failed
    // authentication (tamper.rs covers cuts on chunk boundaries, reported as truncated).
    assert!(one_error_line(&out.get_output().stderr).contains("artifact failed authentication"));
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["k.key"], "nothing but the key");

    // No recipient; a malformed recipient; a missing input file; an invalid config.
    let out = ecobackup(dir.path())
        .arg("encrypt")
        .write_stdin("x")
        .assert()
        .code(2);
    assert!(one_error_line(&out.get_output().stderr).contains("no recipient configured"));
    let out = ecobackup(dir.path())
        .args(["encrypt", "-r", "age1bogus"])
        .write_stdin("x")
        .assert()
        .code(2);
    assert!(one_error_line(&out.get_output().stderr).contains("invalid recipient \"age1bogus\""));
    let out = ecobackup(dir.path())
        .args(["encrypt", "-r", &recipient, "missing.txt"])
        .assert()
        .code(1);
    assert!(one_error_line(&out.get_output().stderr).contains("missing.txt"));
    std::fs::write(
        dir.path().join("bad.toml"),
        "[[database]]\nname = \"shop\"\nurl = \"postgres://u:hunter2@db/shop\"\n",
    )
    .unwrap();
    let out = ecobackup(dir.path())
        .args(["--config", "bad.toml", "encrypt", "-r", &recipient])
        .write_stdin("x")
        .assert()
        .code(2);
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.contains("password inline") && !line.contains("hunter2"),
        "{line}"
    );
}
