//! `ecobackup prune` through the binary, on an S3 repository of signed synthetic backups: the
//! plan it prints, the configuration it refuses, and a kill -9 in the middle of deletions.

mod common;

use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::signed_s3::SignedS3;
use common::{ecobackup, one_error_line};
use ecobackup_core::repository::BackupKind;
use ecobackup_testkit::catalog::{assert_no_manifest_without_artifacts, synthetic_backup};
use ecobackup_testkit::{Fault, FaultRule};

/// [`SignedS3`] with `retention` in its configuration and `n` daily logical backups.
struct World(SignedS3);

impl std::ops::Deref for World {
    type Target = SignedS3;
    fn deref(&self) -> &SignedS3 {
        &self.0
    }
}

impl World {
    fn new(retention: &str, backups: u32) -> World {
        let world = World(SignedS3::new(retention));
        world.runtime.block_on(async {
            for n in 1..=backups {
                let finished = Utc.with_ymd_and_hms(2026, 10, n, 4, 0, 0).unwrap();
                synthetic_backup(&world.repo, BackupKind::Logical, finished, None).await;
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
            self.repo
                .storage()
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
