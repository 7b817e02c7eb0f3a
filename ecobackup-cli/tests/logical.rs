//! `backup logical` and `restore logical` on real PostgreSQL clusters, into `file://` and the
//! in-process S3 server: round trips compared with pg_dump, a restore with the stock tools
//! alone, and every failure an operator can meet — each one line, non-zero, nothing lost.

mod common;

use std::path::Path;
use std::process::Command as Std;

use ecobackup_testkit::{Fault, FaultRule, S3TestServer};

use common::world::{flip_middle_byte, walk, World};
use common::{ecobackup, key, one_error_line};

fn round_trip(world: &World) {
    world.init();
    let id = world.backup();
    let out = world.run(&["show", &id]).assert().success();
    let shown = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    for artifact in ["shop", "globals.sql.zst.age", "catalog.json.zst.age"] {
        assert!(shown.contains(artifact), "{shown}");
    }
    assert!(
        !shown.contains("public.orders"),
        "no table names or row data in the plaintext manifest"
    );

    let target = world.database("restored");
    world
        .run(&["restore", "logical", "latest", "--db", &target, "--create"])
        .assert()
        .success();
    world.assert_identical(&world.shop, &target);

    // Again over the restored database: --clean replaces everything, still identical.
    world
        .run(&[
            "restore", "logical", &id, "--db", &target, "--clean", "--jobs", "2",
        ])
        .assert()
        .success();
    world.assert_identical(&world.shop, &target);
}

on_each_major! {
    fn backup_and_restore_over_a_local_repository_are_identical_to_the_source(major) {
        let world = World::with_major(major);
        assert_eq!(world.pg.major_version(), major);
        round_trip(&world);
    }
}

#[test]
fn backup_and_restore_over_s3_are_identical_to_the_source() {
    let mut world = World::new();
    let s3 = world.runtime.block_on(S3TestServer::start());
    world.on_s3(&s3);
    round_trip(&world);
    assert_eq!(s3.pending_multipart_uploads(), 0);
}

on_each_major! {
    fn the_stock_tools_alone_restore_an_artifact(major) {
        stock_tools_restore(&World::with_major(major));
    }
}

fn stock_tools_restore(world: &World) {
    world.init();
    let id = world.backup();
    let name = world.shop_name();
    let artifact = world
        .dir
        .path()
        .join(format!("repo/backups/{id}/{name}.dump.zst.age"));
    assert!(artifact.is_file(), "{}", artifact.display());
    let target = world.database("by_hand");
    world.runtime.block_on(world.pg.create_database("by_hand"));
    let script = format!(
        "set -o pipefail; age -d -i '{}' '{}' | zstd -d | '{}' --no-owner --exit-on-error --dbname='{target}'",
        world.identity.display(),
        artifact.display(),
        world.pg_bin("pg_restore").display()
    );
    let mut cmd = Std::new("bash");
    cmd.arg("-c").arg(script);
    world.run_client(cmd);
    world.assert_identical(&world.shop, &target);
}

/// One backup of a PostgreSQL 15 and a PostgreSQL 18 server: each dumped by the pg_dump of its
/// version; each database restores into a server of its version or newer (pg_restore 18 reads
/// 15's archives), the 18 one is refused by 15 before anything is created, and a drill restores
/// both on a scratch cluster of 18, though 15 is installed too.
#[test]
fn a_backup_spanning_15_and_18_restores_each_database_where_it_can() {
    let mut world = World::with_major(15);
    let shop18 = world.add_server(18);
    let name15 = world.shop_name();
    let name18 = ecobackup_core::postgres::DbUrl::parse(&shop18)
        .unwrap()
        .database();
    world.init();
    let out = world
        .run(&[
            "--json",
            "backup",
            "logical",
            "--db",
            &world.shop,
            "--db",
            &shop18,
            "--globals",
        ])
        .assert()
        .success();
    let backup: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let versions: Vec<&str> = backup["manifest"]["source"]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["server_version"].as_str().unwrap())
        .collect();
    assert!(
        versions.len() == 2 && versions[0].starts_with("15.") && versions[1].starts_with("18."),
        "{backup}"
    );

    // 18's dump into 15: refused, naming both versions, and nothing is created.
    let into_15 = world.database("from_18");
    let out = world
        .run(&[
            "restore",
            "logical",
            "latest",
            "--database",
            &name18,
            "--db",
            &into_15,
            "--create",
        ])
        .assert()
        .code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.contains("the backup comes from PostgreSQL 18, the target runs 15"),
        "{line}"
    );
    assert!(!world.database_exists("from_18"));

    // Both into 18.
    let pg18 = &world.others[0];
    for (name, copy) in [(&name15, "from_15"), (&name18, "from_18")] {
        world
            .run(&[
                "restore",
                "logical",
                "latest",
                "--database",
                name,
                "--db",
                &pg18.url(copy),
                "--create",
            ])
            .assert()
            .success();
    }
    world.assert_identical(&world.shop, &pg18.url("from_15"));
    world.assert_identical(&shop18, &pg18.url("from_18"));

    // A drill of both: on 18, the newest source's version.
    let checks = world.dir.path().join("checks.toml");
    std::fs::write(
        &checks,
        format!(
            "[[sql]]\nname = \"runs 18\"\ndatabase = \"{name15}\"\n\
             query = \"SELECT current_setting('server_version_num')::int / 10000 = 18\"\n"
        ),
    )
    .unwrap();
    let checks = checks.display().to_string();
    let out = world
        .run(&["drill", "latest", "--checks", &checks])
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("PASSED"), "{text}");
    // Given only 15's programs, the drill says what it needs.
    let only_15 = world.pg.bin_dir().unwrap().display().to_string();
    let out = world
        .run(&["drill", "latest", "--pg-bin", &only_15])
        .assert()
        .failure();
    let output = String::from_utf8_lossy(&out.get_output().stdout).into_owned()
        + &String::from_utf8_lossy(&out.get_output().stderr);
    assert!(
        output.contains(
            "the backup comes from PostgreSQL 18, and a scratch cluster must run 18 or newer"
        ),
        "{output}"
    );
    assert!(
        output.contains(&format!("{only_15} holds PostgreSQL 15")),
        "{output}"
    );
}

/// A directory with a `pg_dump` that reports the real version but is killed mid-stream.
fn killed_pg_dump(world: &World) -> tempfile::TempDir {
    let bin = tempfile::tempdir().unwrap();
    let script = format!(
        "#!/bin/bash\nif [ \"$1\" = --version ]; then exec '{real}' --version; fi\n'{real}' \"$@\" | head -c 300000\nkill -9 $$\n",
        real = world.pg_bin("pg_dump").display()
    );
    let path = bin.path().join("pg_dump");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn backup_fails(world: &World, extra: &[&str]) -> String {
    let mut args = vec!["backup", "logical", "--db", &world.shop];
    args.extend_from_slice(extra);
    let out = world.run(&args).assert().failure();
    one_error_line(&out.get_output().stderr)
}

fn no_backup_objects(root: &Path) {
    let backups = root.join("repo/backups");
    let left: Vec<_> = walk(&backups);
    assert!(
        left.is_empty(),
        "nothing of a failed backup is left: {left:?}"
    );
}

#[test]
fn a_failing_pg_dump_fails_the_backup_and_leaves_no_manifest() {
    let world = World::new();
    world.init();

    // Killed mid-stream.
    let bin = killed_pg_dump(&world);
    let line = backup_fails(&world, &["--pg-bin", bin.path().to_str().unwrap()]);
    assert!(
        line.contains("pg_dump failed (killed by SIGKILL)"),
        "{line}"
    );
    assert_eq!(world.listed_backups(), 0);
    no_backup_objects(world.dir.path());

    // Permission denied on a table.
    world.runtime.block_on(async {
        let client = world.pg.client(&world.shop_name()).await;
        client
            .batch_execute(
                "DO $$ BEGIN CREATE ROLE limited LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
                 GRANT SELECT ON ALL TABLES IN SCHEMA public TO limited; \
                 GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO limited; \
                 REVOKE SELECT ON payments FROM limited;",
            )
            .await
            .unwrap();
    });
    let limited = world
        .shop
        .replacen("://postgres", "://limited", 1)
        .replacen("user=postgres", "user=limited", 1);
    if limited != world.shop {
        let out = world
            .run(&["backup", "logical", "--db", &limited])
            .assert()
            .code(1);
        let line = one_error_line(&out.get_output().stderr);
        assert!(
            line.contains("permission denied for table payments"),
            "{line}"
        );
        assert_eq!(world.listed_backups(), 0);
        no_backup_objects(world.dir.path());
    }

    // The server is gone.
    let closed = ecobackup_testkit::ClosedPort::new();
    let gone = format!("postgres://postgres@{}/shop", closed.addr());
    let out = world
        .run(&["backup", "logical", "--db", &gone])
        .assert()
        .code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.starts_with("error: connecting to postgres://postgres@127.0.0.1"),
        "{line}"
    );

    // No pg_dump of the server's major version.
    let line = backup_fails(&world, &["--pg-bin", "/nonexistent/bin"]);
    assert!(
        line.contains(&format!(
            "pg_dump for PostgreSQL {} not found",
            world.pg.major_version()
        )),
        "{line}"
    );
    assert_eq!(world.listed_backups(), 0);
}

#[test]
fn an_s3_upload_failing_for_good_leaves_no_backup() {
    let mut world = World::new();
    let s3 = world.runtime.block_on(S3TestServer::start());
    world.on_s3(&s3);
    world.init();
    s3.add_fault(
        FaultRule::new(Fault::Status(500))
            .method("PUT")
            .path_contains(".dump.zst.age")
            .forever(),
    );
    let line = backup_fails(&world, &["--globals"]);
    assert!(
        line.contains("uploading") && line.contains(".dump.zst.age"),
        "{line}"
    );
    s3.clear_faults();
    assert_eq!(world.listed_backups(), 0);
    assert!(
        s3.object_keys().iter().all(|k| !k.contains("/backups/")),
        "nothing under backups/: {:?}",
        s3.object_keys()
    );
    assert_eq!(s3.pending_multipart_uploads(), 0);
}

#[test]
fn restore_failures_leave_the_target_as_it_was() {
    let world = World::new();
    world.init();

    // latest in an empty repository.
    let target = world.database("target");
    let out = world
        .run(&["restore", "logical", "latest", "--db", &target, "--create"])
        .assert()
        .code(1);
    assert!(one_error_line(&out.get_output().stderr).contains("no backup latest (logical)"));
    assert!(!world.database_exists("target"));

    let id = world.backup();

    // A database the backup does not hold.
    let out = world
        .run(&[
            "restore",
            "logical",
            "latest",
            "--db",
            &target,
            "--create",
            "--database",
            "nosuch",
        ])
        .assert()
        .code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(line.contains("holds no database \"nosuch\""), "{line}");
    assert!(!world.database_exists("target"));

    // The wrong identity: nothing created.
    let (other, _) = key(world.dir.path(), "other.key");
    let out = world
        .run(&["restore", "logical", "latest", "--db", &target, "--create"])
        .env("ECOBACKUP_IDENTITY_FILE", &other)
        .assert()
        .code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(line.contains("wrong key"), "{line}");
    assert!(
        !world.database_exists("target"),
        "the database created for the restore is dropped"
    );

    // A target with live sessions is refused, and left untouched.
    let source_name = world.shop_name();
    let orders = world.rows(&world.shop, "orders");
    let live = world.runtime.block_on(world.pg.client(&source_name));
    let out = world
        .run(&[
            "restore",
            "logical",
            "latest",
            "--db",
            &world.shop,
            "--clean",
        ])
        .assert()
        .code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.contains("other session(s)") && line.contains("--terminate-connections"),
        "{line}"
    );
    assert_eq!(world.rows(&world.shop, "orders"), orders);

    // A restore that fails inside pg_restore (objects exist, no --clean) rolls back whole.
    drop(live);
    world.runtime.block_on(async {
        let client = world.pg.client(&source_name).await;
        client
            .batch_execute(
                "DELETE FROM order_items WHERE ctid IN (SELECT ctid FROM order_items LIMIT 1000)",
            )
            .await
            .unwrap();
    });
    let items = world.rows(&world.shop, "order_items");
    let out = world
        .run(&["restore", "logical", "latest", "--db", &world.shop])
        .assert()
        .code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.contains("pg_restore failed") && line.contains("already exists"),
        "{line}"
    );
    assert_eq!(
        world.rows(&world.shop, "order_items"),
        items,
        "nothing half-restored"
    );

    // A tampered artifact: the restore fails, the target keeps its data.
    flip_middle_byte(&world.artifact(&id, ".dump.zst.age"), 0x40);
    let out = world
        .run(&[
            "restore",
            "logical",
            "latest",
            "--db",
            &world.shop,
            "--clean",
        ])
        .assert()
        .code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(line.contains("failed authentication"), "{line}");
    assert_eq!(
        world.rows(&world.shop, "order_items"),
        items,
        "the clean was rolled back"
    );
}

#[test]
fn passwords_on_the_command_line_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = ecobackup(dir.path())
        .args([
            "backup",
            "logical",
            "--db",
            "postgres://app:hunter2@db/shop",
            "-r",
        ])
        .arg("age1zvf8qwh2ml0chfuu0w5fnx2u6vgxhf9vtvtxuj4qqs9axe4ez30ssflg32")
        .assert()
        .code(2);
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.contains("PGPASSFILE") && !line.contains("hunter2"),
        "{line}"
    );
}

#[test]
fn the_demo_backs_up_restores_and_compares_every_table() {
    let dir = tempfile::tempdir().unwrap();
    let run_demo = || {
        let out = ecobackup(dir.path())
            .args(["--json", "demo", "--dir", "demo"])
            .assert()
            .success();
        serde_json::from_slice::<serde_json::Value>(&out.get_output().stdout).unwrap()
    };
    let first = run_demo();
    assert_eq!(first["passed"], true, "{first}");
    let tables = first["tables"].as_array().unwrap();
    assert!(tables.len() >= 7, "{first}");
    assert!(tables
        .iter()
        .all(|t| t["match"] == true && t["rows"].as_i64() > Some(0)));
    use std::os::unix::fs::PermissionsExt;
    let key = dir.path().join("demo/demo.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A second run reuses the key and the repository: both backups stay readable.
    let second = run_demo();
    assert_eq!(second["passed"], true);
    assert_eq!(first["recipient"], second["recipient"]);
    let out = ecobackup(dir.path())
        .args(["--json", "list", "--repo", "demo/repo"])
        .assert()
        .success();
    let list: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
}

on_each_major! {
    /// The digest is checked before pg_restore may commit: this relies on how each pg_restore
    /// version reads its input.
    fn an_artifact_of_another_backup_is_refused_before_the_restore_commits(major) {
        another_backups_artifact_is_refused(&World::with_major(major));
    }
}

fn another_backups_artifact_is_refused(world: &World) {
    world.init();
    let source_name = world.shop_name();
    let delete_items = |database: &str, count: u32| {
        world.runtime.block_on(async {
            let sql = format!(
                "DELETE FROM order_items WHERE ctid IN (SELECT ctid FROM order_items LIMIT {count})"
            );
            world
                .pg
                .client(database)
                .await
                .batch_execute(&sql)
                .await
                .unwrap();
        })
    };
    let a = world.backup();
    delete_items(&source_name, 700);
    let b = world.backup();

    // A target with rows of its own: B, less a few more.
    let target = world.database("target");
    world
        .run(&["restore", "logical", &b, "--db", &target, "--create"])
        .assert()
        .success();
    delete_items("target", 300);
    let before = world.rows(&target, "order_items");
    assert_ne!(before, world.rows(&world.shop, "order_items"));

    // A's dump over B's: a valid age file to the same recipient, not the artifact B lists.
    let b_dump = world.artifact(&b, ".dump.zst.age");
    std::fs::copy(world.artifact(&a, ".dump.zst.age"), &b_dump).unwrap();
    let out = world
        .run(&["restore", "logical", &b, "--db", &target, "--clean"])
        .assert()
        .code(1);
    let line = one_error_line(&out.get_output().stderr);
    let name = b_dump.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        line.contains(&format!("backups/{b}/{name} does not match its manifest")),
        "{line}"
    );
    assert_eq!(
        world.rows(&target, "order_items"),
        before,
        "nothing of A was committed, and the --clean was rolled back"
    );
}

on_each_major! {
    fn restore_create_recreates_the_database_properties_under_a_new_name(major) {
        database_properties_round_trip(&World::with_major(major));
    }
}

/// The locale clause of the source database, and a collation of its provider. PostgreSQL 18
/// is tested with the builtin provider (17+, read from `datlocale`), also because the wheel's
/// build has no ICU.
fn locale_provider(major: u32) -> (&'static str, &'static str, &'static str) {
    if major >= 17 {
        (
            "LOCALE_PROVIDER builtin BUILTIN_LOCALE 'C.UTF-8' LC_COLLATE 'C' LC_CTYPE 'C.UTF-8'",
            "LOCALE_PROVIDER = builtin LC_COLLATE = 'C' LC_CTYPE = 'C.UTF-8' BUILTIN_LOCALE = 'C.UTF-8'",
            "pg_c_utf8",
        )
    } else {
        (
            "LOCALE_PROVIDER icu ICU_LOCALE 'de-DE' LC_COLLATE 'C' LC_CTYPE 'C.UTF-8'",
            "LOCALE_PROVIDER = icu LC_COLLATE = 'C' LC_CTYPE = 'C.UTF-8' ICU_LOCALE = 'de-DE'",
            "de-x-icu",
        )
    }
}

fn database_properties_round_trip(world: &World) {
    let (create_locale, dumped_locale, collation) = locale_provider(world.pg.major_version());
    world.init();
    world.runtime.block_on(async {
        let admin = world.pg.client("postgres").await;
        admin
            .batch_execute(&format!(
                "CREATE DATABASE props_source TEMPLATE template0 ENCODING 'UTF8' \
                 {create_locale} CONNECTION LIMIT 7"
            ))
            .await
            .unwrap();
        admin
            .batch_execute(
                "DO $$ BEGIN CREATE ROLE props_app; EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
                 ALTER DATABASE props_source SET work_mem = '7MB'; \
                 ALTER DATABASE props_source SET search_path = public, \"odd schema\"; \
                 ALTER ROLE props_app IN DATABASE props_source SET statement_timeout = '5s'; \
                 COMMENT ON DATABASE props_source IS 'the shop''s notes'; \
                 REVOKE TEMPORARY ON DATABASE props_source FROM PUBLIC; \
                 GRANT CONNECT ON DATABASE props_source TO props_app; \
                 GRANT CREATE ON DATABASE props_source TO props_app WITH GRANT OPTION;",
            )
            .await
            .unwrap();
        world
            .pg
            .client("props_source")
            .await
            .batch_execute(&format!(
                "CREATE SCHEMA \"odd schema\"; \
                 CREATE TABLE \"odd schema\".notes (id int PRIMARY KEY, body text COLLATE \"{collation}\"); \
                 INSERT INTO \"odd schema\".notes VALUES (1, 'Straße'), (2, 'Strasse');"
            ))
            .await
            .unwrap();
    });
    let source = world.database("props_source");
    let out = world
        .run(&["--json", "backup", "logical", "--db", &source])
        .assert()
        .success();
    let result: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let id = result["manifest"]["id"].as_str().unwrap().to_owned();

    let target = world.database("props_copy");
    world
        .run(&["restore", "logical", &id, "--db", &target, "--create"])
        .assert()
        .success();
    let flags = ["--create", "--schema-only"];
    let original = world.dump_with(&source, &flags);
    for expected in [
        dumped_locale,
        "CONNECTION LIMIT = 7",
        "work_mem",
        "odd schema",
        "statement_timeout",
        "the shop''s notes",
        "GRANT CONNECT ON DATABASE props_source TO props_app",
    ] {
        assert!(original.contains(expected), "{expected}: {original}");
    }
    let copy = world.dump_with(&target, &flags);
    let original = original.replace("props_source", "props_copy");
    assert!(
        original == copy,
        "the copy differs:\n--- original\n{original}\n--- copy\n{copy}"
    );
    assert_eq!(world.rows(&target, "\"odd schema\".notes"), 2);
}
