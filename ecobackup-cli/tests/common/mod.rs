//! Helpers shared by the CLI tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// The variables of the machine that must not leak into a test's configuration.
const MACHINE_VARS: [&str; 18] = [
    "ECOBACKUP_CONFIG",
    "ECOBACKUP_REPO",
    "ECOBACKUP_RECIPIENTS",
    "ECOBACKUP_IDENTITY_FILE",
    "ECOBACKUP_IDENTITY_PASSPHRASE",
    "ECOBACKUP_IDENTITY_PASSPHRASE_FILE",
    "ECOBACKUP_SIGNING_KEY_FILE",
    "ECOBACKUP_TRUSTED_SIGNERS",
    "ECOBACKUP_S3_ENDPOINT",
    "ECOBACKUP_S3_REGION",
    "ECOBACKUP_S3_ALLOW_HTTP",
    "ECOBACKUP_PG_BIN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_ENDPOINT",
    "AWS_PROFILE",
];

/// The variables that point the binary at the repository `url` on `s3`, with its credentials
/// (plain HTTP allowed).
pub fn s3_env(s3: &ecobackup_testkit::S3TestServer, url: String) -> Vec<(&'static str, String)> {
    vec![
        ("ECOBACKUP_REPO", url),
        ("ECOBACKUP_S3_ENDPOINT", s3.endpoint()),
        ("ECOBACKUP_S3_REGION", s3.region().to_owned()),
        ("ECOBACKUP_S3_ALLOW_HTTP", "true".to_owned()),
        ("AWS_ACCESS_KEY_ID", s3.access_key_id().to_owned()),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_access_key().to_owned()),
    ]
}

/// The binary with a clean environment: no configuration leaks in from the machine.
pub fn ecobackup(dir: &Path) -> Command {
    Command::from_std(ecobackup_std(dir))
}

/// [`ecobackup`] as a plain process, for a test that runs it in the background (the daemon).
pub fn ecobackup_std(dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ecobackup"));
    cmd.current_dir(dir);
    for var in MACHINE_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// Generates a key in `dir`; returns (identity file, recipient).
pub fn key(dir: &Path, name: &str) -> (PathBuf, String) {
    let out = ecobackup(dir)
        .args(["key", "generate", "--out", name])
        .assert()
        .success();
    let recipient = String::from_utf8(out.get_output().stdout.clone())
        .unwrap()
        .trim()
        .to_owned();
    assert!(recipient.starts_with("age1"), "{recipient}");
    (dir.join(name), recipient)
}

/// The signing key `signing.key` in `dir`, made by `key generate --signing` on first use;
/// returns (key file, public key).
pub fn signing_key(dir: &Path) -> (PathBuf, String) {
    let path = dir.join("signing.key");
    if !path.exists() {
        ecobackup(dir)
            .args(["key", "generate", "--signing", "--out", "signing.key"])
            .assert()
            .success();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_owned();
    assert!(public.starts_with("ecosign1"), "{public}");
    (path, public)
}

pub fn one_error_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr).into_owned();
    assert_eq!(
        text.lines().count(),
        1,
        "exactly one line on stderr: {text:?}"
    );
    assert!(text.starts_with("error: "), "{text}");
    text
}
pub mod archive;
pub mod signed_s3;
pub mod world;

/// A test run once on each PostgreSQL version CI installs ([`ecobackup_testkit::TESTED_MAJORS`]):
/// `on_each_major! { fn name(major) { … } }` defines the module `name` with the tests
/// `name::pg15` and `name::pg18`, each calling the body with its version. Each runs on its own
/// server, so they run in parallel like any other tests.
#[macro_export]
macro_rules! on_each_major {
    ($(#[$attr:meta])* fn $name:ident($major:ident) $body:block) => {
        $(#[$attr])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            // The tests below name each tested version.
            const _: () = assert!(
                ecobackup_testkit::TESTED_MAJORS.len() == 2
                    && ecobackup_testkit::TESTED_MAJORS[0] == 15
                    && ecobackup_testkit::TESTED_MAJORS[1] == 18
            );

            fn run($major: u32) $body

            #[test]
            fn pg15() {
                run(15)
            }

            #[test]
            fn pg18() {
                run(18)
            }
        }
    };
}
