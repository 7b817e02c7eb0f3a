//! `ecobackup verify`: intact backups pass; a missing, truncated, tampered or extended artifact,
//! or the wrong key, fails with one line naming the artifact, and the report says which.

mod common;

use common::world::{flip_middle_byte, World};
use common::{key, one_error_line};

fn report(world: &World, args: &[&str]) -> (serde_json::Value, Option<String>) {
    let mut all = vec!["--json", "verify"];
    all.extend_from_slice(args);
    let out = world.run(&all).output().unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap();
    let error = (!out.status.success()).then(|| {
        assert_eq!(out.status.code(), Some(1));
        one_error_line(&out.stderr)
    });
    (report, error)
}

fn failures(report: &serde_json::Value) -> Vec<(String, String)> {
    report
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["artifacts"].as_array().unwrap().clone())
        .filter(|a| !a["failure"].is_null())
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_owned(),
                a["failure"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn intact_backups_pass_and_every_kind_of_damage_is_named() {
    let world = World::new();
    world.init();
    let old = world.backup();
    let new = world.backup();

    let (all, error) = report(&world, &["--all"]);
    assert_eq!(error, None);
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert!(all[0]["ok"] == true && all[1]["ok"] == true, "{all}");
    let dump = &all[1]["artifacts"][0];
    assert!(
        dump["raw_bytes"].as_u64() > dump["stored_bytes"].as_u64(),
        "{dump}"
    );
    let out = world.run(&["verify"]).assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        text.contains(&new) && text.contains("digests match"),
        "{text}"
    );

    // The wrong key.
    let (other, _) = key(world.dir.path(), "other.key");
    let out = world
        .run(&["verify", "latest"])
        .env("ECOBACKUP_IDENTITY_FILE", &other)
        .assert()
        .code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.contains("verify failed") && line.contains("wrong key"),
        "{line}"
    );

    // Damage every artifact of the newest backup a different way.
    flip_middle_byte(&world.artifact(&new, ".dump.zst.age"), 1);
    let globals = world.artifact(&new, "globals.sql.zst.age");
    let bytes = std::fs::read(&globals).unwrap();
    std::fs::write(&globals, &bytes[..bytes.len() - 7]).unwrap();
    std::fs::remove_file(world.artifact(&new, "catalog.json.zst.age")).unwrap();

    let (latest, error) = report(&world, &["latest"]);
    let error = error.expect("verify fails");
    assert!(
        error.contains(&format!("3 damaged artifact(s), the first is {new}/")),
        "{error}"
    );
    let mut found = failures(&latest);
    found.sort();
    let expected = [
        ("catalog.json.zst.age", "missing"),
        ("globals.sql.zst.age", "truncated"),
    ];
    assert_eq!(found.len(), 3, "{found:?}");
    for (name, failure) in expected {
        assert!(
            found.iter().any(|(n, f)| n == name && f == failure),
            "{found:?}"
        );
    }
    assert!(
        found
            .iter()
            .any(|(n, f)| n.ends_with(".dump.zst.age") && f == "tampered"),
        "{found:?}"
    );

    // An extended artifact of the older backup; --all reports both backups.
    let old_dump = world.artifact(&old, ".dump.zst.age");
    let mut bytes = std::fs::read(&old_dump).unwrap();
    bytes.extend_from_slice(b"appended");
    std::fs::write(&old_dump, bytes).unwrap();
    let (all, error) = report(&world, &["--all"]);
    assert!(error.unwrap().contains("4 damaged artifact(s)"));
    assert_eq!(all[0]["ok"], false);
    assert_eq!(all[0]["artifacts"][0]["failure"], "tampered");
    assert_eq!(all[0]["artifacts"][1]["failure"], serde_json::Value::Null);
}

#[test]
fn an_empty_repository_has_nothing_to_verify_backups_or_wal() {
    let world = World::new();
    world.init();
    let out = world.run(&["verify", "--all"]).assert().success();
    assert!(String::from_utf8_lossy(&out.get_output().stdout).contains("nothing to verify"));
    let out = world.run(&["verify", "latest"]).assert().code(1);
    assert!(one_error_line(&out.get_output().stderr).contains("no backup latest"));
    let out = world.run(&["verify", "--wal"]).assert().success();
    assert!(String::from_utf8_lossy(&out.get_output().stdout).contains("no WAL archived"));
}

#[test]
fn bad_manifests_are_listed_and_fail_verify_all_but_never_block_latest() {
    let world = World::new();
    world.init();
    let good = world.backup();
    let backups = world.dir.path().join("repo/backups");
    // A corrupt manifest in a newer backup's folder, and a stray folder with one.
    let corrupt = "20991231T000000Z-logical-zzzzzz";
    for folder in [corrupt, "stray"] {
        std::fs::create_dir_all(backups.join(folder)).unwrap();
        std::fs::write(backups.join(folder).join("manifest.json"), b"{\"id\": ").unwrap();
    }

    // list: the good one and, beside it, each bad one with its reason.
    let out = world.run(&["list"]).assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains(&good), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(corrupt) && l.contains("not a valid manifest")),
        "{text}"
    );
    assert!(
        text.contains("stray") && text.contains("not a backup id"),
        "{text}"
    );
    let out = world.run(&["--json", "list"]).assert().success();
    let listed: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(listed[0]["id"], good.as_str());
    assert_eq!(listed[1]["bad"], true);

    // latest (and restore, drill, verify of it) skip the bad ones.
    let (latest, error) = report(&world, &["latest"]);
    assert_eq!(error, None);
    assert_eq!(latest[0]["id"], good.as_str());

    // verify --all fails, naming a bad manifest; the good backup is still verified.
    let (all, error) = report(&world, &["--all"]);
    let error = error.expect("verify --all must fail");
    assert!(
        error.contains("2 damaged") && error.contains(&format!("{corrupt}/manifest.json")),
        "{error}"
    );
    let checks = all.as_array().unwrap();
    assert_eq!(checks.len(), 3);
    let verified: Vec<_> = checks.iter().filter(|c| c["ok"] == true).collect();
    assert_eq!(verified.len(), 1);
    assert_eq!(verified[0]["id"], good.as_str());
    assert!(checks
        .iter()
        .filter(|c| c["ok"] == false)
        .all(|c| c["manifest_error"].is_string()));
}
