//! `ecobackup prune` through the binary, on an S3 repository of signed synthetic backups: the
//! plan it prints, the configuration it refuses, and a kill -9 in the middle of deletions.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::{ecobackup, key, one_error_line};
use ecobackup_core::crypto::Signer;
use ecobackup_core::repository::{BackupKind, Repository};
use ecobackup_core::storage::{RepoUrl, Storage, StorageOptions};
use ecobackup_testkit::catalog::{assert_no_manifest_without_artifacts, synthetic_backup};
use ecobackup_testkit::{Fault, FaultRule, S3TestServer};

/// The S3 server, a configuration (with `retention`) trusting the signer of `n` daily logical
/// backups already in the repository.
struct World {
    runtime: tokio::runtime::Runtime,
    s3: S3TestServer,
    dir: tempfile::TempDir,
    config: PathBuf,
    storage: Storage,
}

impl World {
    fn new(retention: &str, backups: u32) -> World {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let s3 = runtime.block_on(S3TestServer::start());
        let dir = tempfile::tempdir().unwrap();
        let (_, recipient) = key(dir.path(), "restore.key");
        let signer = Signer::generate();
        signer
            .write_file(&dir.path().join("signing.key"), false)
            .unwrap();
        let secret = |name: &str, value: &str| {
            use std::os::unix::fs::PermissionsExt as _;
            let path = dir.path().join(name);
            std::fs::write(&path, value).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            path
        };
        let id_file = secret("s3.id", s3.access_key_id());
        let secret_file = secret("s3.secret", s3.secret_access_key());
        let config = secret(
            "ecobackup.toml",
            &format!(
                "[repository]\nurl = \"s3://{}/prod\"\nendpoint = \"{}\"\nregion = \"{}\"\nallow_http = true\n\
                 max_retries = 1\naccess_key_id_file = \"{}\"\nsecret_access_key_file = \"{}\"\n\n\
                 [encryption]\nrecipients = [\"{recipient}\"]\nsigning_key_file = \"signing.key\"\n\
                 trusted_signers = [\"{}\"]\n\n{retention}",
                s3.bucket(),
                s3.endpoint(),
                s3.region(),
                id_file.display(),
                secret_file.display(),
                signer.public_key()
            ),
        );
        let world_storage = Storage::open(
            &RepoUrl::S3 {
                bucket: s3.bucket().to_owned(),
                prefix: "prod".to_owned(),
            },
            &StorageOptions {
                endpoint: Some(s3.endpoint()),
                region: Some(s3.region().to_owned()),
                allow_http: true,
                access_key_id: Some(s3.access_key_id().to_owned().into()),
                secret_access_key: Some(s3.secret_access_key().to_owned().into()),
                ..StorageOptions::default()
            },
        )
        .unwrap();
        let world = World {
            runtime,
            s3,
            dir,
            config,
            storage: world_storage,
        };
        world.run(&["init"]).assert().success();
        world.runtime.block_on(async {
            let repo = Repository::open(world.storage.clone())
                .await
                .unwrap()
                .with_signer(Arc::new(signer));
            for n in 1..=backups {
                let finished = Utc.with_ymd_and_hms(2026, 10, n, 4, 0, 0).unwrap();
                synthetic_backup(&repo, BackupKind::Logical, finished, None).await;
            }
        });
        world
    }

    fn run(&self, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = ecobackup(self.dir.path());
        cmd.args(["--config", self.config.to_str().unwrap()])
            .args(args);
        cmd
    }

    fn keys(&self) -> Vec<String> {
        self.runtime.block_on(async {
            self.storage
                .list("")
                .await
                .unwrap()
                .into_iter()
                .map(|o| o.key)
                .collect()
        })
    }

    fn manifests(&self) -> usize {
        self.keys()
            .iter()
            .filter(|k| k.ends_with("/manifest.json"))
            .count()
    }
}

#[test]
fn prune_prints_its_plan_and_holds_back_a_large_deletion() {
    let world = World::new("[retention]\nkeep_last = 2\n", 5);
    let before = world.keys();

    let out = world.run(&["prune", "--dry-run"]).assert().success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let starting = |word: &str| stdout.lines().filter(|l| l.starts_with(word)).count();
    assert_eq!(starting("keep "), 2, "{stdout}");
    assert_eq!(starting("delete "), 3, "{stdout}");
    assert!(stdout.contains("no rule keeps it"), "{stdout}");
    assert!(stdout.contains("newest, last 1/2"), "{stdout}");
    assert!(
        stdout.contains("dry run: would delete 3 of 5 backups"),
        "{stdout}"
    );
    assert_eq!(world.keys(), before);

    // 3 of 5: more than half, so not without --yes.
    let out = world.run(&["prune"]).assert().code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.contains("nothing deleted") && line.contains("--yes"),
        "{line}"
    );
    assert_eq!(world.keys(), before);

    let out = world.run(&["--json", "prune", "--yes"]).assert().success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(report["applied"], true, "{report}");
    assert_eq!(report["deleted"].as_array().unwrap().len(), 3, "{report}");
    assert_eq!(world.manifests(), 2);
    assert_no_manifest_without_artifacts(&world.keys());
    let out = world.run(&["--json", "list"]).assert().success();
    let listed: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
}

#[test]
fn prune_without_a_usable_policy_deletes_nothing() {
    for (retention, says) in [
        ("", "no [retention] policy"),
        (
            "[retention]\nkeep_daily = 0\n",
            "invalid [retention] configuration",
        ),
        (
            "[retention]\nkeep_daily = 3\ntimezone = \"Mars/Olympus\"\n",
            "Mars/Olympus",
        ),
    ] {
        let world = World::new(retention, 3);
        let before = world.keys();
        let out = world.run(&["prune", "--yes"]).assert().code(2);
        let line = one_error_line(&out.get_output().stderr);
        assert!(line.contains(says), "{retention:?}: {line}");
        assert_eq!(world.keys(), before);
    }
}

/// A prune killed with SIGKILL while it deletes (each deletion slowed down by the store) never
/// leaves a manifest whose artifacts are gone, wherever it stopped.
#[test]
fn a_prune_killed_midway_leaves_no_manifest_without_its_artifacts() {
    let world = World::new("[retention]\nkeep_last = 1\n", 12);
    world.s3.add_fault(
        FaultRule::new(Fault::Delay(Duration::from_millis(60)))
            .method("DELETE")
            .forever(),
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ecobackup"))
        .current_dir(world.dir.path())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args([
            "--config",
            world.config.to_str().unwrap(),
            "-q",
            "prune",
            "--yes",
        ])
        .spawn()
        .unwrap();
    // Twelve backups of three objects each take about two seconds to delete: stop it as soon
    // as the first manifests are gone, in the middle of the deletions.
    let started = std::time::Instant::now();
    while world.manifests() > 10 && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    world.s3.clear_faults();
    let keys = world.keys();
    assert!(world.manifests() < 12, "the kill came after some deletions");
    assert_no_manifest_without_artifacts(&keys);
    // What is listed is whole; the killed run's folders without a manifest are debris.
    let out = world.run(&["--json", "list"]).assert().success();
    let listed: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), world.manifests());
}
