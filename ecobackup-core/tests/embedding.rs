//! The embedder's path, end to end, against a real cluster and the in-process S3 server: the
//! `pre_migration` example (built by `cargo test` with the other examples), the snapshot it
//! printed restored through the library's handle, a backup cancelled in the middle of its
//! upload, a prune that a planted manifest cannot steer, Object Lock dates counted from each
//! backup of a long-lived handle, and the handle against a TLS-only SCRAM server.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use chrono::TimeDelta;
use ecobackup_core::cancel::CancellationToken;
use ecobackup_core::config::RepositoryConfig;
use ecobackup_core::crypto::{fingerprint, generate_identity, write_identity_file, Signer};
use ecobackup_core::postgres::DbUrl;
use ecobackup_core::repository::{BackupKind, Manifest, Repository};
use ecobackup_core::storage::RepoUrl;
use ecobackup_core::{Config, Ecobackup, ErrorKind};
use ecobackup_testkit::catalog::synthetic_backup;
use ecobackup_testkit::fixture::table_fingerprints;
use ecobackup_testkit::s3::{Fault, FaultRule};
use ecobackup_testkit::{S3TestServer, SecurePg, TestPg};
use tokio::task::JoinHandle;

/// Keys, an initialised repository on the S3 server, and the variables that reach it.
struct Lab {
    dir: tempfile::TempDir,
    recipient: String,
    signer_public: String,
    s3: S3TestServer,
    prefix: String,
}

impl Lab {
    async fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let (identity, recipient) = generate_identity();
        write_identity_file(&dir.path().join("restore.key"), &identity, None).unwrap();
        let signer = Signer::generate();
        signer
            .write_file(&dir.path().join("signing.key"), false)
            .unwrap();
        let s3 = S3TestServer::start().await;
        let lab = Lab {
            recipient: recipient.to_string(),
            signer_public: signer.public_key().to_string(),
            dir,
            s3,
            prefix: "service".to_owned(),
        };
        let url = lab.repo_url();
        let storage = lab.repository_config().open_storage(&url, None).unwrap();
        Repository::init_signed(
            storage,
            vec![fingerprint(&recipient)],
            Some(Arc::new(signer)),
        )
        .await
        .unwrap();
        lab
    }

    fn repo_url(&self) -> RepoUrl {
        RepoUrl::parse(&format!("s3://{}/{}", self.s3.bucket(), self.prefix)).unwrap()
    }

    /// `[repository]` as a service would build it in code (credentials in files, 0600).
    fn repository_config(&self) -> RepositoryConfig {
        let (id, secret) = (self.path("s3.id"), self.path("s3.secret"));
        for (path, value) in [
            (&id, self.s3.access_key_id()),
            (&secret, self.s3.secret_access_key()),
        ] {
            ecobackup_core::storage::write_private_file(path, value.as_bytes(), true).unwrap();
        }
        let mut repository = RepositoryConfig::default();
        repository.url = Some(self.repo_url().to_string());
        repository.endpoint = Some(self.s3.endpoint());
        repository.region = Some(self.s3.region().to_owned());
        repository.allow_http = true;
        repository.access_key_id_file = Some(id);
        repository.secret_access_key_file = Some(secret);
        repository
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs the example with `--migration FILE`, given only the variables a deployment would set.
    fn run_example(&self, database_url: &str, migration: &Path) -> Output {
        std::process::Command::new(example("pre_migration"))
            .arg("--migration")
            .arg(migration)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", database_url)
            .env("ECOBACKUP_REPO", self.repo_url().to_string())
            .env("ECOBACKUP_S3_ENDPOINT", self.s3.endpoint())
            .env("ECOBACKUP_S3_REGION", self.s3.region())
            .env("ECOBACKUP_S3_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", self.s3.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", self.s3.secret_access_key())
            .env("ECOBACKUP_RECIPIENTS", &self.recipient)
            .env("ECOBACKUP_SIGNING_KEY_FILE", self.path("signing.key"))
            .output()
            .unwrap()
    }

    /// The handle a service would open, from a configuration built in code.
    async fn handle(&self) -> Ecobackup {
        self.handle_with(Config::default()).await
    }

    /// [`Lab::handle`] with the settings `config` has beyond the repository and keys.
    async fn handle_with(&self, mut config: Config) -> Ecobackup {
        config.repository = self.repository_config();
        config.encryption.recipients = vec![self.recipient.clone()];
        config.encryption.identity_files = vec![self.path("restore.key")];
        config.encryption.signing_key_file = Some(self.path("signing.key"));
        config.encryption.trusted_signers = vec![self.signer_public.clone()];
        Ecobackup::open(config).await.unwrap()
    }

    /// The repository as this host opens it (signing), and as an intruder with write access
    /// to the bucket but not the signing key does.
    async fn repositories(&self) -> (Repository, Repository) {
        let storage = self
            .repository_config()
            .open_storage(&self.repo_url(), None)
            .unwrap();
        let intruder = Repository::open(storage).await.unwrap();
        let signer = Signer::from_file(&self.path("signing.key")).unwrap();
        (intruder.clone().with_signer(Arc::new(signer)), intruder)
    }
}

/// A logical backup of `url` through a new handle, in a task of its own, until the token
/// fires.
async fn spawn_backup(
    lab: &Lab,
    url: &str,
) -> (
    Arc<Ecobackup>,
    CancellationToken,
    JoinHandle<ecobackup_core::Result<Manifest>>,
) {
    let eco = Arc::new(lab.handle().await);
    let cancel = CancellationToken::new();
    let backup = tokio::spawn({
        let (eco, cancel) = (eco.clone(), cancel.clone());
        let db = DbUrl::parse(url).unwrap();
        async move { eco.backup_logical(db).cancel_on(cancel).run().await }
    });
    (eco, cancel, backup)
}

/// Waits until `happened`, failing after two minutes with what never did.
async fn wait_for(what: &str, happened: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    while !happened() {
        assert!(started.elapsed().as_secs() < 120, "waited 120 s for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// An example binary beside this test's own (`target/debug/examples/NAME`).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples")
        .join(name)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn orders(pg: &TestPg, database: &str) -> i64 {
    pg.client(database)
        .await
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_migration_prints_the_restore_of_its_snapshot_and_the_snapshot_restores() {
    let lab = Lab::new().await;
    let pg = TestPg::start().await;
    let plain = pg.fresh_database("service").await;
    // A service's DATABASE_URL carries its password (the lab's server trusts local
    // connections, so any password does): the printed command must not.
    let url = match plain.contains('?') {
        true => format!("{plain}&password=s3cret-pw"),
        false => plain.replacen('@', ":s3cret-pw@", 1),
    };
    let database = DbUrl::parse(&url).unwrap().database();
    assert!(DbUrl::parse(&url).unwrap().has_password(), "{url}");
    pg.client(&database)
        .await
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, total numeric NOT NULL);
             INSERT INTO orders SELECT g, g * 1.5 FROM generate_series(1, 500) g;",
        )
        .await
        .unwrap();

    // A good migration: snapshot, then applied.
    let good = lab.path("0001.sql");
    std::fs::write(&good, "ALTER TABLE orders ADD COLUMN note text;").unwrap();
    let out = lab.run_example(&url, &good);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("migration") && stdout.contains("applied"),
        "{stdout}"
    );

    // A bad one: it deletes rows, then fails; the transaction rolls back, and the command to
    // return to the snapshot is printed.
    let bad = lab.path("0002.sql");
    std::fs::write(
        &bad,
        "DELETE FROM orders WHERE id > 100; ALTER TABLE orders ADD COLUMN note text;",
    )
    .unwrap();
    let out = lab.run_example(&url, &bad);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let id = stderr
        .split("ecobackup restore logical ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no restore command in: {stderr}"))
        .to_owned();
    assert!(
        stderr.contains("already exists"),
        "PostgreSQL's reason: {stderr}"
    );
    // The command as printed is one the CLI takes: the URL without its password (the CLI
    // refuses one in --db), and where the password goes instead.
    let redacted = DbUrl::parse(&url).unwrap().redacted();
    assert!(
        stderr.contains(&format!(
            "--db '{redacted}' --clean --terminate-connections"
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("s3cret-pw"),
        "the password is not printed: {stderr}"
    );
    assert!(stderr.contains("PGPASSWORD"), "{stderr}");
    assert_eq!(orders(&pg, &database).await, 500, "rolled back");

    // The snapshot is in the repository, signed, tagged, and restores.
    let eco = lab.handle().await;
    let listed = eco.list().await.unwrap();
    let snapshot = listed
        .iter()
        .find(|m| m.id == id)
        .expect("the printed id is a backup");
    assert_eq!(
        snapshot.tags.get("reason").map(String::as_str),
        Some("pre-migration")
    );
    assert_eq!(listed.len(), 2, "one snapshot per migration run");
    let check = eco.verify(&id).run().await.unwrap();
    assert!(check.ok, "{check:?}");
    let copy = format!("{database}_restored");
    let target = DbUrl::parse(&pg.url(&copy)).unwrap();
    let restored = eco
        .restore_logical(&id, target)
        .create(true)
        .run()
        .await
        .unwrap();
    assert_eq!(restored.backup_id, id);
    assert_eq!(orders(&pg, &copy).await, 500);

    // The library's errors carry a kind a service can act on.
    let missing = eco
        .verify("20000101T000000Z-logical-0000")
        .run()
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
}

#[test]
fn the_example_documents_itself() {
    let out = std::process::Command::new(example("pre_migration"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = text(&out.stdout);
    for needed in [
        "--migration FILE",
        "DATABASE_URL",
        "ECOBACKUP_REPO",
        "exit status",
    ] {
        assert!(help.contains(needed), "{needed} in {help}");
    }
    let out = std::process::Command::new(example("pre_migration"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_backup_has_cleaned_up_when_run_returns() {
    let lab = Lab::new().await;
    let pg = TestPg::start().await;
    let url = pg.fresh_database("noisy").await;
    let database = DbUrl::parse(&url).unwrap().database();
    // About 20 MiB of random hex: more than one 8 MiB part once compressed, so the dump goes
    // up as a multipart upload.
    pg.client(&database)
        .await
        .batch_execute(
            "CREATE TABLE noise AS SELECT g AS id,
                 (SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, 32) i) AS hex
             FROM generate_series(1, 20000) g;",
        )
        .await
        .unwrap();
    // Every part hangs: the backup is in the middle of its upload for as long as needed.
    lab.s3.add_fault(
        FaultRule::new(Fault::Delay(std::time::Duration::from_secs(600)))
            .method("PUT")
            .query_contains("partNumber=")
            .forever(),
    );
    let (eco, cancel, backup) = spawn_backup(&lab, &url).await;
    wait_for("the upload to begin", || {
        lab.s3
            .requests()
            .iter()
            .any(|r| r.method == "PUT" && r.query.contains("partNumber="))
    })
    .await;
    assert_eq!(
        lab.s3.pending_multipart_uploads(),
        1,
        "a multipart upload is under way"
    );
    let held = lab.s3.object_keys();
    assert!(
        held.iter().any(|k| k.contains("/locks/")),
        "the backup holds its lock: {held:?}"
    );
    cancel.cancel();
    let error = backup.await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Cancelled, "{error}");

    // Checked the moment `run` returned: nothing is left to a background task.
    assert_eq!(
        lab.s3.pending_multipart_uploads(),
        0,
        "the upload was aborted"
    );
    let keys = lab.s3.object_keys();
    assert!(
        !keys.iter().any(|k| k.contains("/locks/")),
        "no lock: {keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.contains("backups/")),
        "nothing stored: {keys:?}"
    );
    assert!(eco.list().await.unwrap().is_empty());
}

/// A manifest planted by someone who can write to the bucket (unsigned, and newer than every
/// real backup) must not count toward `keep_last` and get the real backup pruned.
#[tokio::test(flavor = "multi_thread")]
async fn a_planted_backup_does_not_steer_the_handles_prune() {
    let lab = Lab::new().await;
    let (host, intruder) = lab.repositories().await;
    let now = chrono::Utc::now();
    let real = synthetic_backup(&host, BackupKind::Logical, now - TimeDelta::days(2), None).await;
    let planted = synthetic_backup(
        &intruder,
        BackupKind::Logical,
        now - TimeDelta::days(1),
        None,
    )
    .await;
    let config = Config::parse("[retention]\nkeep_last = 1\n", lab.dir.path()).unwrap();
    let eco = lab.handle_with(config).await;

    let report = eco.prune().run().await.unwrap();
    assert!(report.applied, "{report:?}");
    assert!(report.deleted.is_empty(), "{:?}", report.deleted);
    assert!(
        report.unusable.iter().any(|bad| bad.id == planted),
        "the planted backup is reported: {:?}",
        report.unusable
    );
    let kept: Vec<String> = eco
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert!(kept.contains(&real), "the real backup is kept: {kept:?}");
}

/// A service keeps its handle open for weeks: each backup's objects are locked for the policy's
/// length from when they are written, not from when the handle was opened.
#[tokio::test(flavor = "multi_thread")]
async fn object_lock_dates_count_from_each_backup_not_from_open() {
    let lab = Lab::new().await;
    let pg = TestPg::start().await;
    let url = pg.fresh_database("locked").await;
    let text = "[retention]\nkeep_last = 3\nlock = \"governance\"\nlock_for = \"1d\"\n";
    let opened = chrono::Utc::now();
    let eco = lab
        .handle_with(Config::parse(text, lab.dir.path()).unwrap())
        .await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let started = lab.s3.requests().len();
    let manifest = eco
        .backup_logical(DbUrl::parse(&url).unwrap())
        .run()
        .await
        .unwrap();
    let dates: Vec<chrono::DateTime<chrono::Utc>> = lab.s3.requests()[started..]
        .iter()
        .filter(|r| r.method == "PUT" || r.method == "POST")
        .flat_map(|r| r.headers.iter())
        .filter(|(name, _)| name == "x-amz-object-lock-retain-until-date")
        .map(|(_, value)| value.parse().unwrap())
        .collect();
    assert!(
        !dates.is_empty(),
        "backup {} sent no lock headers",
        manifest.id
    );
    // Dates are whole seconds: the open was at least 3 s before the backup.
    let earliest = opened + TimeDelta::days(1) + TimeDelta::seconds(2);
    for date in dates {
        assert!(
            date >= earliest,
            "locked until {date}, counted from the open ({opened})"
        );
    }
    // A verify's repository lock object is written under the same rule.
    let before_verify = lab.s3.requests().len();
    assert!(eco.verify(&manifest.id).run().await.unwrap().ok);
    let lock_dates: Vec<chrono::DateTime<chrono::Utc>> = lab.s3.requests()[before_verify..]
        .iter()
        .filter(|r| r.method == "PUT" && r.path.contains("/locks/"))
        .flat_map(|r| r.headers.iter())
        .filter(|(name, _)| name == "x-amz-object-lock-retain-until-date")
        .map(|(_, value)| value.parse().unwrap())
        .collect();
    assert!(
        !lock_dates.is_empty(),
        "the verify's lock carries the retention"
    );
    for date in lock_dates {
        assert!(
            date >= earliest,
            "lock kept until {date}, counted from the open ({opened})"
        );
    }
}

/// A backup cancelled while its artifact's single PUT is in flight, after the store has
/// already stored it: the object is deleted before `run` returns, not left under the backup's
/// id with no manifest.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_cancelled_while_its_artifact_commits_leaves_no_object() {
    let lab = Lab::new().await;
    let pg = TestPg::start().await;
    let url = pg.fresh_database("small").await;
    // The store takes the artifact, then keeps the client waiting for its answer.
    lab.s3.add_fault(
        FaultRule::new(Fault::DelayAfterExecuting(std::time::Duration::from_secs(
            600,
        )))
        .method("PUT")
        .path_contains("/backups/")
        .forever(),
    );
    let (_eco, cancel, backup) = spawn_backup(&lab, &url).await;
    wait_for("the artifact to be stored", || {
        lab.s3.object_keys().iter().any(|k| k.contains("backups/"))
    })
    .await;
    assert_eq!(
        lab.s3.pending_multipart_uploads(),
        0,
        "a single PUT, not a multipart upload"
    );
    cancel.cancel();
    let error = backup.await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Cancelled, "{error}");

    let keys = lab.s3.object_keys();
    assert!(
        !keys
            .iter()
            .any(|k| k.contains("backups/") || k.contains("/locks/")),
        "nothing of the backup is left: {keys:?}"
    );
}

/// The other two kinds through the handle: a physical backup of the whole cluster (without
/// WAL archiving here: it restores to its end) and a files backup, both signed and verified.
#[tokio::test(flavor = "multi_thread")]
async fn the_handle_takes_physical_and_files_backups() {
    let lab = Lab::new().await;
    let pg = TestPg::start().await;
    let eco = lab.handle().await;

    // `pg_bin` is where the programs are looked for, and the only place.
    let empty = lab.path("no-programs");
    std::fs::create_dir_all(&empty).unwrap();
    let server = DbUrl::parse(&pg.url("postgres")).unwrap();
    let missing = eco
        .backup_logical(server.clone())
        .pg_bin(&empty)
        .run()
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::Configuration, "{missing}");
    assert!(
        missing.to_string().contains(&empty.display().to_string()),
        "{missing}"
    );
    let base = eco
        .backup_physical(server)
        .allow_no_archive(true)
        .tag("reason", "before-upgrade")
        .run()
        .await
        .unwrap();
    assert_eq!(base.kind, BackupKind::Physical);
    assert_eq!(
        base.tags.get("reason").map(String::as_str),
        Some("before-upgrade")
    );

    let uploads = lab.path("uploads");
    std::fs::create_dir_all(uploads.join("2026")).unwrap();
    std::fs::write(uploads.join("2026/invoice.pdf"), b"%PDF-1.7 not really").unwrap();
    let stored = match eco
        .backup_files(vec![uploads.clone()])
        .name("uploads")
        .run()
        .await
        .unwrap()
    {
        ecobackup_core::files::FilesOutcome::Stored(report) => report.manifest,
        other => panic!("a first backup is stored: {other:?}"),
    };
    let unchanged = eco
        .backup_files(vec![uploads])
        .name("uploads")
        .if_changed(true)
        .run()
        .await
        .unwrap();
    assert!(
        matches!(
            unchanged,
            ecobackup_core::files::FilesOutcome::Unchanged { .. }
        ),
        "{unchanged:?}"
    );

    for id in [&base.id, &stored.id] {
        let check = eco.verify(id.as_str()).run().await.unwrap();
        assert!(check.ok, "{check:?}");
    }

    // And back: the files into an empty directory (refused over existing ones), the base
    // backup into a new data directory.
    let back = lab.path("restored");
    let outcome = eco
        .restore_files(&stored.id, &back)
        .include("uploads/2026/**")
        .run()
        .await
        .unwrap();
    assert_eq!(outcome.files, 1, "{outcome:?}");
    let restored = std::fs::read_dir(&back)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::read(restored.join("2026/invoice.pdf")).unwrap(),
        b"%PDF-1.7 not really"
    );
    let again = eco
        .restore_files(&stored.id, &back)
        .run()
        .await
        .unwrap_err();
    assert!(again.to_string().contains("with overwrite"), "{again}");

    let pgdata = lab.path("pgdata");
    let outcome = eco
        .restore_physical(&base.id, &pgdata, "false")
        .run()
        .await
        .unwrap();
    assert_eq!(outcome.backup_id, base.id);
    assert!(pgdata.join("PG_VERSION").is_file());
}

/// The handle against a server configured like a managed one: TLS only (`verify-full`), SCRAM
/// passwords from a password file the URL names (no `PG*` variable), a least-privilege
/// `backup` role for the snapshot and a `restorer` role that may only create databases.
#[tokio::test(flavor = "multi_thread")]
async fn the_handle_works_against_a_tls_only_scram_server_with_least_privilege_roles() {
    let lab = Lab::new().await;
    let pg = SecurePg::start().await;
    let shop = pg.shop(1).await;
    let passfile = pg.password_file();
    let url = |user: &str, database: &str| {
        let url = format!("{}&passfile={}", pg.url(user, database), passfile.display());
        DbUrl::parse(&url).unwrap()
    };
    let eco = lab.handle().await;

    // Without its password the role is refused, and the error says so.
    let refused = eco
        .backup_logical(DbUrl::parse(&pg.url("backup", &shop)).unwrap())
        .run()
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("password"), "{refused}");

    let snapshot = eco
        .backup_logical(url("backup", &shop))
        .tag("reason", "pre-migration")
        .run()
        .await
        .unwrap();
    let copy = format!("{shop}_copy");
    eco.restore_logical(&snapshot.id, url("restorer", &copy))
        .create(true)
        .run()
        .await
        .unwrap();
    let original = table_fingerprints(&pg.superuser(&shop).await)
        .await
        .unwrap();
    let restored = table_fingerprints(&pg.superuser(&copy).await)
        .await
        .unwrap();
    assert_eq!(original, restored);

    // Every connection of the roles, ours and pg_dump's and pg_restore's, was over TLS.
    let lines = pg.connections();
    let roles: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("user=backup") || l.contains("user=restorer"))
        .collect();
    assert!(!roles.is_empty());
    assert!(
        roles.iter().all(|l| l.contains("SSL enabled")),
        "{roles:#?}"
    );
}
