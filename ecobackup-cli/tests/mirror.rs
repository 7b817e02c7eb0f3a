//! A logical backup written to two S3 services at once ([[repository.mirror]], --min-targets):
//! both hold the same artifacts and each restores alone; a target failing for good fails the
//! backup with no manifest anywhere, unless --min-targets lets the other carry it.

mod common;

use std::path::{Path, PathBuf};

use ecobackup_testkit::http_recorder::{Answer, HttpRecorder};
use ecobackup_testkit::{Fault, FaultRule, S3TestServer};

use common::one_error_line;
use common::world::World;

/// The shop's world on S3 server `a`, with `b` configured as its mirror; both initialised.
struct Mirrored {
    world: World,
    a: S3TestServer,
    b: S3TestServer,
    config: PathBuf,
}

impl Mirrored {
    fn new() -> Mirrored {
        Self::with_config("")
    }

    /// With `extra` appended to the configuration file.
    fn with_config(extra: &str) -> Mirrored {
        let mut world = World::new();
        let a = world.runtime.block_on(S3TestServer::start());
        let b = world.runtime.block_on(S3TestServer::start());
        world.on_s3(&a);
        let secret = |name: &str, value: &str| {
            use std::os::unix::fs::PermissionsExt as _;
            let path = world.dir.path().join(name);
            std::fs::write(&path, value).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            path
        };
        let id = secret("b.id", b.access_key_id());
        let key = secret("b.secret", b.secret_access_key());
        // The same bucket name at both services, as two providers may have.
        let config = secret(
            "ecobackup.toml",
            &format!(
                "[[repository.mirror]]\nname = \"b\"\nurl = \"s3://{}/prod\"\nendpoint = \"{}\"\nregion = \"{}\"\n\
                 allow_http = true\nmax_retries = 1\naccess_key_id_file = \"{}\"\nsecret_access_key_file = \"{}\"\n\n{extra}",
                b.bucket(),
                b.endpoint(),
                b.region(),
                id.display(),
                key.display()
            ),
        );
        let mirrored = Mirrored {
            world,
            a,
            b,
            config,
        };
        let out = mirrored.run(&["init"]).assert().success();
        let said = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        assert_eq!(said.matches("initialised repository").count(), 2, "{said}");
        mirrored
    }

    fn run(&self, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = self.world.run(&["--config", self.config.to_str().unwrap()]);
        cmd.args(args);
        cmd
    }

    fn backup(&self, extra: &[&str]) -> assert_cmd::assert::Assert {
        let mut args = vec!["--json", "backup", "logical", "--db", &self.world.shop];
        args.extend(extra);
        self.run(&args).assert()
    }
}

fn backup_keys(s3: &S3TestServer) -> Vec<String> {
    s3.object_keys()
        .into_iter()
        .filter(|k| k.contains("backups/"))
        .collect()
}

/// The files under `backups/` in an S3 test server's bucket, by key.
fn backup_objects(s3: &S3TestServer) -> Vec<(String, Vec<u8>)> {
    let bucket = s3.storage_dir().join(s3.bucket());
    s3.object_keys()
        .into_iter()
        .filter(|k| k.contains("backups/"))
        .map(|k| {
            let bytes = std::fs::read(bucket.join(&k)).unwrap();
            (k, bytes)
        })
        .collect()
}

fn manifests(s3: &S3TestServer) -> Vec<String> {
    s3.object_keys()
        .into_iter()
        .filter(|k| k.ends_with("manifest.json"))
        .collect()
}

fn manifest_json(s3: &S3TestServer, id: &str) -> serde_json::Value {
    let path = Path::new(s3.storage_dir())
        .join(s3.bucket())
        .join(format!("prod/backups/{id}/manifest.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn both_targets_hold_the_same_backup_and_each_restores_alone() {
    let m = Mirrored::new();
    let out = m.backup(&["--globals"]).success();
    let result: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let id = result["manifest"]["id"].as_str().unwrap().to_owned();

    let (on_a, on_b) = (backup_objects(&m.a), backup_objects(&m.b));
    let keys =
        |objects: &[(String, Vec<u8>)]| objects.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert!(
        on_a.len() >= 5,
        "dump, globals, catalog, manifest, signature: {:?}",
        keys(&on_a)
    );
    assert_eq!(keys(&on_a), keys(&on_b));
    assert!(
        on_a == on_b,
        "both targets hold byte-identical artifacts and manifests"
    );
    let targets = manifest_json(&m.a, &id)["targets"].clone();
    let targets: Vec<&str> = targets
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(targets.len(), 2, "{targets:?}");
    assert!(
        targets[0].ends_with(&format!("at {}", m.a.endpoint())),
        "{targets:?}"
    );
    assert!(
        targets[1].ends_with(&format!("at {}", m.b.endpoint())),
        "{targets:?}"
    );
    assert_eq!(
        m.a.pending_multipart_uploads() + m.b.pending_multipart_uploads(),
        0
    );

    // The mirror alone restores it, as if the first provider were gone: `--repo mirror:b`
    // reaches it with the mirror's own settings (the environment points at a).
    let target = m.world.database("from_mirror");
    m.a.add_fault(FaultRule::new(Fault::Status(503)).forever());
    m.run(&[
        "--repo", "mirror:b", "restore", "logical", &id, "--db", &target, "--create",
    ])
    .assert()
    .success();
    m.a.clear_faults();
    m.world.assert_identical(&m.world.shop, &target);
}

/// Every upload to the mirror of an object whose key contains `what` fails.
fn mirror_fails_for_good(m: &Mirrored, what: &str) {
    m.b.add_fault(
        FaultRule::new(Fault::Status(500))
            .method("PUT")
            .path_contains(what)
            .forever(),
    );
}

#[test]
fn a_target_failing_for_good_fails_the_backup_with_no_manifest_anywhere() {
    let m = Mirrored::new();
    mirror_fails_for_good(&m, ".dump.zst.age");
    let out = m.backup(&["--globals"]).failure();
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.contains("1 of 2") && line.contains(&m.b.endpoint()),
        "names the count and the failed target: {line}"
    );
    m.b.clear_faults();
    assert_eq!(manifests(&m.a), Vec::<String>::new());
    assert_eq!(manifests(&m.b), Vec::<String>::new());
    assert_eq!(
        backup_keys(&m.a),
        Vec::<String>::new(),
        "the healthy target's artifacts are removed too"
    );
    assert_eq!(
        m.a.pending_multipart_uploads() + m.b.pending_multipart_uploads(),
        0
    );
}

#[test]
fn with_min_targets_1_the_healthy_target_carries_the_backup_and_the_failure_is_loud() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let hook = runtime.block_on(HttpRecorder::start(Answer::Ok));
    let m = Mirrored::with_config(&format!(
        "[notify]\nwebhook_url = \"{}\"\n",
        hook.url("/hook")
    ));
    // The catalog is stored last: the dump and the globals reached the mirror before it failed.
    mirror_fails_for_good(&m, "catalog.json");
    let out = m.backup(&["--globals", "--min-targets", "1"]).success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("FAILED") && stderr.contains(&m.b.endpoint()),
        "{stderr}"
    );
    let result: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let id = result["manifest"]["id"].as_str().unwrap();
    assert!(
        result["warnings"].to_string().contains("FAILED"),
        "--json carries the warning: {result}"
    );
    assert_eq!(
        result["manifest"]["targets"],
        serde_json::json!([format!("s3://{}/prod at {}", m.a.bucket(), m.a.endpoint())]),
        "the manifest names only the target that holds the backup"
    );
    m.b.clear_faults();
    assert_eq!(manifests(&m.a).len(), 1);
    assert_eq!(manifests(&m.b), Vec::<String>::new());
    assert_eq!(
        backup_keys(&m.b),
        Vec::<String>::new(),
        "what reached the failed target is removed"
    );
    m.world.run(&["--json", "show", id]).assert().success();

    // The webhook hears of it although webhook_on_success is off: someone must look.
    let events = hook.requests();
    assert_eq!(events.len(), 1, "{events:?}");
    let event: serde_json::Value = serde_json::from_str(&events[0].body).unwrap();
    assert_eq!(event["ok"], true);
    let warnings = event["warnings"].to_string();
    assert!(
        warnings.contains("FAILED") && warnings.contains(&m.b.endpoint()),
        "{event}"
    );
    assert!(
        event["text"]
            .as_str()
            .unwrap()
            .contains("succeeded with warnings"),
        "{event}"
    );
}

#[test]
fn impossible_min_targets_and_an_uninitialised_mirror_are_refused_before_any_dump() {
    let m = Mirrored::new();
    let out = m.backup(&["--min-targets", "3"]).failure();
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.contains("--min-targets 3") && line.contains("2 targets"),
        "{line}"
    );

    // An ad-hoc mirror takes the repository's settings: here, another prefix at server a.
    let out = m
        .backup(&["--mirror", &format!("s3://{}/other", m.a.bucket())])
        .failure();
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.contains("not a repository yet") && line.contains("ecobackup init"),
        "{line}"
    );
    assert_eq!(manifests(&m.a), Vec::<String>::new());
}

#[test]
fn a_mirror_failing_in_the_middle_of_a_multipart_upload_leaves_no_part_anywhere() {
    let m = Mirrored::new();
    // About 13 MB of incompressible-enough rows: the dump goes up in several 8 MiB parts.
    m.world.runtime.block_on(async {
        let client = m.world.pg.client(&m.world.shop_name()).await;
        client
            .batch_execute(
                "SELECT setseed(0.42); CREATE TABLE noise AS SELECT md5(random()::text) || md5(random()::text) AS v FROM generate_series(1, 400000)",
            )
            .await
            .unwrap();
    });
    m.b.add_fault(
        FaultRule::new(Fault::Status(500))
            .method("PUT")
            .query_contains("partNumber=2")
            .forever(),
    );
    let out = m.backup(&[]).failure();
    let line = one_error_line(&out.get_output().stderr);
    assert!(line.contains("only 1 of 2"), "{line}");
    m.b.clear_faults();
    assert!(
        m.a.requests()
            .iter()
            .any(|r| r.query.contains("partNumber=2")),
        "the healthy target did upload in parts"
    );
    assert_eq!(
        m.a.pending_multipart_uploads(),
        0,
        "aborted on the healthy target"
    );
    assert_eq!(
        m.b.pending_multipart_uploads(),
        0,
        "aborted on the failed one"
    );
    assert_eq!(manifests(&m.a).len() + manifests(&m.b).len(), 0);
    assert_eq!(backup_keys(&m.a), Vec::<String>::new());
}

#[test]
fn a_manifest_that_one_target_refuses_leaves_that_target_empty_and_says_so() {
    let m = Mirrored::new();
    mirror_fails_for_good(&m, "manifest.json");
    let out = m.backup(&["--min-targets", "1"]).success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("FAILED") && stderr.contains("writing the manifest"),
        "{stderr}"
    );
    m.b.clear_faults();
    assert_eq!(manifests(&m.a).len(), 1);
    assert_eq!(
        backup_keys(&m.b),
        Vec::<String>::new(),
        "the artifacts that reached the mirror are removed with its failed manifest"
    );
}

#[test]
fn the_same_repository_under_two_names_is_refused() {
    let world = World::new();
    world.init();
    let repo = world
        .env
        .iter()
        .find(|(k, _)| *k == "ECOBACKUP_REPO")
        .map(|(_, v)| v.clone())
        .unwrap();
    // A symlink to the repository: another name, the same place.
    let alias = world.dir.path().join("alias");
    std::os::unix::fs::symlink(repo.trim_start_matches("file://"), &alias).unwrap();
    let out = world
        .run(&[
            "backup",
            "logical",
            "--db",
            &world.shop,
            "--mirror",
            &format!("file://{}", alias.display()),
        ])
        .assert()
        .failure();
    let line = one_error_line(&out.get_output().stderr);
    assert!(line.contains("same repository under two names"), "{line}");
    assert_eq!(world.listed_backups(), 0);
}

#[test]
fn a_files_backup_goes_to_the_mirror_too_and_restores_from_it() {
    let m = Mirrored::new();
    let tree = m.world.dir.path().join("uploads");
    std::fs::create_dir_all(tree.join("2026")).unwrap();
    std::fs::write(tree.join("2026/logo.png"), b"not really a png").unwrap();
    let out = m
        .run(&[
            "--json",
            "backup",
            "files",
            "--path",
            tree.to_str().unwrap(),
        ])
        .assert()
        .success();
    let result: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let id = result["manifest"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        result["manifest"]["targets"].as_array().map(Vec::len),
        Some(2),
        "{result}"
    );
    let (on_a, on_b) = (backup_objects(&m.a), backup_objects(&m.b));
    assert!(
        !on_a.is_empty() && on_a == on_b,
        "identical on both targets"
    );

    let restored = m.world.dir.path().join("restored");
    m.a.add_fault(FaultRule::new(Fault::Status(503)).forever());
    m.run(&[
        "--repo",
        "mirror:b",
        "restore",
        "files",
        &id,
        "--to",
        restored.to_str().unwrap(),
    ])
    .assert()
    .success();
    m.a.clear_faults();
    assert_eq!(
        std::fs::read(restored.join("uploads/2026/logo.png")).unwrap(),
        b"not really a png"
    );
}
