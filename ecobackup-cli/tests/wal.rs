//! `wal-push` and `wal-fetch` against the in-process S3 server, with real segments of a
//! throwaway cluster, run as the server's user like archive_command and restore_command.

mod common;

use std::path::Path;

use common::archive::{file_names, wait_until, WalWorld};
use common::one_error_line;
use ecobackup_testkit::{Fault, FaultRule};

fn name_of(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn key_of(name: &str, suffix: &str) -> String {
    format!("wal/{}/{name}{suffix}", &name[..8])
}

#[test]
fn pushing_is_idempotent_checks_the_cluster_and_never_overwrites() {
    let world = WalWorld::new();
    let segments = world.real_segments("pg_wal", 2);
    let (first, second) = (name_of(&segments[0]), name_of(&segments[1]));

    // The first push records the cluster; a new segment then costs four reads and three writes.
    world
        .run(&["wal-push", &format!("pg_wal/{first}")])
        .assert()
        .success();
    world.s3.clear_requests();
    world
        .run(&["wal-push", &format!("pg_wal/{second}")])
        .assert()
        .success();
    let requests = world.s3.requests();
    let methods: Vec<&str> = requests.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods.len(), 7, "{requests:#?}");
    assert_eq!(
        methods.iter().filter(|m| **m == "PUT").count(),
        3,
        "{methods:?}"
    );
    assert!(
        requests.iter().all(|r| !r.query.contains("list-type")),
        "no listing: {requests:#?}"
    );
    let object = world.object_path(&key_of(&first, ".zst.age"));
    let stored = std::fs::read(&object).unwrap();
    assert!(stored.starts_with(b"age-encryption.org/v1\n"));

    // Again, as PostgreSQL does after a crash: success, nothing written.
    world.s3.clear_requests();
    let out = world
        .run(&["wal-push", &format!("pg_wal/{first}")])
        .assert()
        .success();
    let said = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        said.contains("already archived with the same content"),
        "{said}"
    );
    let writes: Vec<_> = world
        .s3
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET" && r.method != "HEAD")
        .collect();
    assert!(
        writes.is_empty(),
        "no upload on a repeated push: {writes:#?}"
    );

    // Other bytes under the same name: refused with both digests, the object unchanged.
    let other = world.dir.subdir("other").join(&first);
    let mut bytes = std::fs::read(&segments[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&other, &bytes).unwrap();
    ecobackup_testkit::server_user::give_to_server_user(&other);
    let out = world
        .run(&["wal-push", other.to_str().unwrap()])
        .assert()
        .code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.contains("already holds a different file") && line.matches("sha256 ").count() == 2,
        "{line}"
    );
    assert_eq!(
        std::fs::read(&object).unwrap(),
        stored,
        "the stored object is unchanged"
    );

    // A segment of another cluster (another system identifier in its page header).
    let third = segments[1].with_file_name("000000010000000000000042");
    let mut foreign = std::fs::read(&segments[1]).unwrap();
    foreign[8..16].copy_from_slice(&(0x42u64 << 24).to_le_bytes());
    foreign[24..32].copy_from_slice(&12345u64.to_le_bytes());
    std::fs::write(&third, foreign).unwrap();
    ecobackup_testkit::server_user::give_to_server_user(&third);
    let out = world
        .run(&["wal-push", third.to_str().unwrap()])
        .assert()
        .code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(line.contains("system identifier 12345"), "{line}");
    assert!(!world
        .object_path(&key_of("000000010000000000000042", ".zst.age"))
        .exists());

    // A segment whose header does not match its name, and a name that is no WAL file.
    let renamed = segments[1].with_file_name("000000010000000000000043");
    std::fs::copy(&segments[1], &renamed).unwrap();
    ecobackup_testkit::server_user::give_to_server_user(&renamed);
    let out = world
        .run(&["wal-push", renamed.to_str().unwrap()])
        .assert()
        .code(1);
    assert!(one_error_line(&out.get_output().stderr).contains("its name says 0/43000000"));
    let out = world.run(&["wal-push", "ecobackup.toml"]).assert().code(1);
    assert!(one_error_line(&out.get_output().stderr).contains("not the name of a file"));

    // History files are archived too, without a page header.
    let history = world.dir.write(
        "00000002.history",
        b"1\t0/3000000\tno recovery target specified\n",
    );
    world
        .run(&["wal-push", history.to_str().unwrap()])
        .assert()
        .success();
    assert!(world
        .object_path("wal/00000002/00000002.history.zst.age")
        .exists());
    // Unencrypted on purpose: a `.zst` object (a zstd frame, no age header), fetched back.
    let plain = world
        .dir
        .write("00000003.history", b"2\t0/5000000\tpromoted\n");
    let config = std::fs::read_to_string(&world.config).unwrap();
    let without_recipients: String = config
        .lines()
        .filter(|l| !l.starts_with("recipients"))
        .map(|l| format!("{l}\n"))
        .collect();
    let plain_config = world.dir.write("plain.toml", without_recipients.as_bytes());
    world
        .run(&["wal-push", plain.to_str().unwrap()])
        .env("ECOBACKUP_CONFIG", &plain_config)
        .assert()
        .code(2);
    world
        .run(&["wal-push", plain.to_str().unwrap(), "--no-encryption"])
        .env("ECOBACKUP_CONFIG", &plain_config)
        .assert()
        .success();
    let object = world.object_path("wal/00000003/00000003.history.zst");
    assert!(std::fs::read(object)
        .unwrap()
        .starts_with(&[0x28, 0xB5, 0x2F, 0xFD]));
    world
        .run(&["wal-fetch", "00000003.history", "restored.history"])
        .assert()
        .success();
    assert_eq!(
        std::fs::read(world.dir.path().join("restored.history")).unwrap(),
        b"2\t0/5000000\tpromoted\n"
    );
    world.run(&["verify", "--wal"]).assert().success();
}

#[test]
fn fetching_exits_1_only_for_a_file_that_is_not_archived() {
    let world = WalWorld::new();
    let segments = world.real_segments("source", 1);
    let name = name_of(&segments[0]);
    world
        .run(&["wal-push", segments[0].to_str().unwrap()])
        .assert()
        .success();
    let dest_dir = world.dir.subdir("pg_wal");
    let fetch = |name: &str| {
        let mut cmd = world.run(&["wal-fetch", name, "pg_wal/RECOVERYXLOG", "--prefetch", "0"]);
        cmd.env("ECOBACKUP_S3_MAX_RETRIES", "1");
        cmd
    };

    let out = fetch("000000010000000000000099").assert().code(1);
    assert!(one_error_line(&out.get_output().stderr).contains("is not in the archive"));
    fetch("00000009.history").assert().code(1);
    // Missing before an archived segment of its timeline: a hole, not the end of the WAL.
    let out = fetch("000000010000000000000000").assert().code(255);
    let line = one_error_line(&out.get_output().stderr);
    assert!(line.contains("a hole") && line.contains(&name), "{line}");

    // A spool that cannot be used costs the prefetch, never the fetch.
    let not_a_dir = world.dir.write("not-a-dir", b"");
    let out = world
        .run(&["wal-fetch", &name, "pg_wal/RECOVERYXLOG", "--prefetch", "2"])
        .arg("--spool-dir")
        .arg(&not_a_dir)
        .assert()
        .success();
    let said = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(said.starts_with("warning: no prefetch:"), "{said}");
    let restored = dest_dir.join("RECOVERYXLOG");
    assert_eq!(
        std::fs::read(&restored).unwrap(),
        std::fs::read(&segments[0]).unwrap()
    );
    std::fs::remove_file(&restored).unwrap();

    // The store failing every request: not "missing", and nothing left behind.
    world
        .s3
        .add_fault(FaultRule::new(Fault::Status(503)).forever());
    let out = fetch(&name).assert().code(255);
    assert!(one_error_line(&out.get_output().stderr).contains("503"));
    let out = fetch("000000010000000000000099").assert().code(255);
    one_error_line(&out.get_output().stderr);
    world.s3.clear_faults();
    assert!(
        file_names(&dest_dir).is_empty(),
        "{:?}",
        file_names(&dest_dir)
    );

    // A changed byte in the stored object: fatal, and %p is never written.
    let object = world.object_path(&key_of(&name, ".zst.age"));
    let original = std::fs::read(&object).unwrap();
    let mut tampered = original.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 1;
    std::fs::write(&object, &tampered).unwrap();
    let out = fetch(&name).assert().code(255);
    assert!(one_error_line(&out.get_output().stderr).contains("authentication"));
    assert!(
        file_names(&dest_dir).is_empty(),
        "{:?}",
        file_names(&dest_dir)
    );
    let out = world.run(&["verify", "--wal"]).assert().code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.contains("verify failed: 1 damaged") && line.contains(&name),
        "{line}"
    );
    std::fs::write(&object, &original).unwrap();
    world.run(&["verify", "--wal"]).assert().success();

    // The wrong key, an unsigned record, a bad flag: all fatal.
    world
        .run(&["key", "generate", "--out", "other.key"])
        .assert()
        .success();
    let mut cmd = fetch(&name);
    cmd.env(
        "ECOBACKUP_IDENTITY_FILE",
        world.dir.path().join("other.key"),
    );
    assert!(one_error_line(&cmd.assert().code(255).get_output().stderr).contains("wrong key"));
    let signature = world.object_path(&key_of(&name, ".json.sig"));
    let saved = std::fs::read(&signature).unwrap();
    std::fs::remove_file(&signature).unwrap();
    let out = fetch(&name).assert().code(255);
    assert!(one_error_line(&out.get_output().stderr).contains("no signature"));
    std::fs::write(&signature, saved).unwrap();
    world
        .run(&["wal-fetch", &name, "pg_wal/RECOVERYXLOG", "--no-such-flag"])
        .assert()
        .code(255);
    assert!(
        file_names(&dest_dir).is_empty(),
        "{:?}",
        file_names(&dest_dir)
    );
    fetch(&name).assert().success();
}

#[test]
fn a_fetch_prefetches_the_next_segments_for_the_next_fetch() {
    let world = WalWorld::new();
    let segments = world.real_segments("source", 3);
    for segment in &segments {
        world
            .run(&["wal-push", segment.to_str().unwrap()])
            .assert()
            .success();
    }
    let names: Vec<String> = segments.iter().map(|s| name_of(s)).collect();
    world.dir.subdir("pg_wal");
    let spool = world.dir.path().join("spool");
    let fetch = |name: &str| {
        world.run(&[
            "wal-fetch",
            name,
            "pg_wal/RECOVERYXLOG",
            "--prefetch",
            "2",
            "--spool-dir",
            spool.to_str().unwrap(),
        ])
    };
    fetch(&names[0]).assert().success();
    // The spool of this repository is its only folder; the background process fills it.
    let spooled = |name: &str| {
        let folders = file_names(&spool);
        folders.len() == 1
            && file_names(&spool.join(&folders[0]))
                .iter()
                .any(|f| f.len() == 24 + 1 + 64 && f.starts_with(name))
    };
    wait_until("the prefetch of the next two segments", || {
        spooled(&names[1]) && spooled(&names[2])
    });
    world.s3.clear_requests();
    fetch(&names[1]).assert().success();
    let restored = world.dir.path().join("pg_wal/RECOVERYXLOG");
    assert_eq!(
        std::fs::read(&restored).unwrap(),
        std::fs::read(&segments[1]).unwrap()
    );
    assert_eq!(
        world.requests_for("GET", &key_of(&names[1], ".zst.age")),
        0,
        "the prefetched segment is not downloaded again"
    );
    assert_eq!(world.requests_for("GET", &key_of(&names[1], ".json")), 1);
    assert!(!spooled(&names[1]), "a spooled segment is used once");

    // A damaged spool entry is not used: the segment is downloaded instead.
    let folder = spool.join(&file_names(&spool)[0]);
    let entry = file_names(&folder)
        .into_iter()
        .find(|f| f.starts_with(&names[2]) && f.len() == 89)
        .unwrap();
    let path = folder.join(entry);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    world.s3.clear_requests();
    fetch(&names[2]).assert().success();
    assert_eq!(
        std::fs::read(&restored).unwrap(),
        std::fs::read(&segments[2]).unwrap()
    );
    assert!(world.requests_for("GET", &key_of(&names[2], ".zst.age")) >= 1);
}
