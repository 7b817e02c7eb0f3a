//! Everything the CLI writes with backup data or reports is private whatever the umask: a
//! `--no-encryption` backup in a file:// repository (otherwise world-readable dumps), key files
//! and drill reports.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::world::{walk, World};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn backups_keys_and_reports_are_private_whatever_the_umask() {
    // The usual umask of a login shell; the binary inherits it.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let world = World::new();
    assert_eq!(mode(&world.identity), 0o600);
    world.init();
    world
        .run(&[
            "backup",
            "logical",
            "--db",
            &world.shop,
            "--globals",
            "--no-encryption",
        ])
        .env_remove("ECOBACKUP_RECIPIENTS")
        .assert()
        .success();
    let repo = world.dir.path().join("repo");
    let files = walk(&repo);
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().ends_with(".dump.zst")),
        "{files:?}"
    );
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
        let mut dir = file.parent().unwrap();
        while dir.starts_with(&repo) {
            assert_eq!(mode(dir), 0o700, "{}", dir.display());
            dir = dir.parent().unwrap();
        }
    }
    world
        .run(&["drill", "latest", "--report", "report.json"])
        .assert()
        .success();
    assert_eq!(mode(&world.dir.path().join("report.json")), 0o600);
}
