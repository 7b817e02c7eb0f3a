//! The CLI against a server configured like a managed production database (TLS only, SCRAM
//! only, a least-privilege `backup` role): backup, restore, verify and drill, with the password
//! from a password file, from `PGPASSWORD` and from a `url_file`; `url_command` and
//! `after_command`; and the children (pg_dump, pg_dumpall, pg_restore) reaching the same server
//! as the same user over TLS.

mod common;

use std::path::PathBuf;

use assert_cmd::Command;
use common::{ecobackup, key, one_error_line, signing_key};
use ecobackup_testkit::secure_pg::BACKUP_PASSWORD;
use ecobackup_testkit::SecurePg;

struct Lab {
    runtime: tokio::runtime::Runtime,
    pg: SecurePg,
    dir: tempfile::TempDir,
    identity: PathBuf,
    recipient: String,
    shop: String,
    passfile: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let pg = runtime.block_on(SecurePg::start());
        let shop = runtime.block_on(pg.shop(1));
        let dir = tempfile::tempdir().unwrap();
        let (identity, recipient) = key(dir.path(), "restore.key");
        let passfile = pg.password_file();
        let lab = Lab {
            runtime,
            pg,
            dir,
            identity,
            recipient,
            shop,
            passfile,
        };
        lab.run(&["init"]).assert().success();
        lab
    }

    /// The binary with the repository, keys and the password file; no other PG* variable and
    /// a home without ~/.pgpass, so nothing of the machine leaks in.
    fn run(&self, args: &[&str]) -> Command {
        let mut cmd = ecobackup(self.dir.path());
        for var in [
            "PGHOST",
            "PGPORT",
            "PGUSER",
            "PGDATABASE",
            "PGPASSWORD",
            "PGSSLMODE",
            "PGSSLROOTCERT",
            "PGSERVICE",
            "PGAPPNAME",
        ] {
            cmd.env_remove(var);
        }
        cmd.args(args)
            .env("HOME", self.dir.path())
            .env("PGPASSFILE", &self.passfile)
            .env(
                "ECOBACKUP_REPO",
                format!("file://{}", self.dir.path().join("repo").display()),
            )
            .env("ECOBACKUP_RECIPIENTS", &self.recipient)
            .env("ECOBACKUP_IDENTITY_FILE", &self.identity);
        let (signing_key, signer) = signing_key(self.dir.path());
        cmd.env("ECOBACKUP_SIGNING_KEY_FILE", signing_key)
            .env("ECOBACKUP_TRUSTED_SIGNERS", signer);
        cmd
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.run(args).assert().success();
        serde_json::from_slice(&out.get_output().stdout).unwrap()
    }

    fn count(&self, database: &str) -> i64 {
        self.rows(database, "public.orders")
    }

    fn rows(&self, database: &str, table: &str) -> i64 {
        self.runtime.block_on(async {
            self.pg
                .superuser(database)
                .await
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .unwrap()
                .get(0)
        })
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// A URL with the backup role's password in it, percent-encoded (for a url_file).
    fn url_with_password(&self) -> String {
        let encoded: String = BACKUP_PASSWORD
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        self.pg
            .url("backup", &self.shop)
            .replacen("backup@", &format!("backup:{encoded}@"), 1)
    }
}

#[test]
fn backup_restore_verify_and_drill_against_a_tls_only_server() {
    let lab = Lab::new();

    // 1. The password from the password file, sslmode=verify-full, a non-superuser role.
    let url = lab.pg.url("backup", &lab.shop);
    let first = lab.json(&["--json", "backup", "logical", "--db", &url, "--globals"]);
    assert_eq!(
        first["manifest"]["source"]["globals_without_role_passwords"], true,
        "{first}"
    );

    // 2. The password from PGPASSWORD, everything else from PG* variables.
    let second = lab
        .run(&[
            "--json",
            "backup",
            "logical",
            "--db",
            &format!("dbname={}", lab.shop),
        ])
        .env("PGPASSFILE", lab.dir.path().join("absent"))
        .env("PGPASSWORD", BACKUP_PASSWORD)
        .env("PGHOST", "localhost")
        .env("PGPORT", lab.pg.port().to_string())
        .env("PGUSER", "backup")
        .env("PGSSLMODE", "verify-full")
        .env("PGSSLROOTCERT", lab.pg.ca_file())
        .assert()
        .success();
    let second: serde_json::Value = serde_json::from_slice(&second.get_output().stdout).unwrap();
    assert_eq!(
        second["manifest"]["source"]["databases"][0],
        lab.shop.as_str()
    );

    // 3. The password in a url_file; the [[database]] name names the artifact.
    let url_file = lab.write("shop.url", &lab.url_with_password());
    let config = lab.write(
        "ecobackup.toml",
        &format!(
            "[[database]]\nname = \"storefront\"\nurl_file = \"{}\"\n",
            url_file.display()
        ),
    );
    let third = lab.json(&[
        "--config",
        config.to_str().unwrap(),
        "--json",
        "backup",
        "logical",
    ]);
    let names: Vec<&str> = third["manifest"]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"storefront.dump.zst.age"), "{names:?}");

    // Restore as the restorer role (password file), into a new database, over TLS.
    let restored = lab.pg.url("restorer", "restored");
    lab.run(&[
        "restore",
        "logical",
        first["manifest"]["id"].as_str().unwrap(),
        "--db",
        &restored,
        "--create",
    ])
    .assert()
    .success();
    assert_eq!(lab.count("restored"), lab.count(&lab.shop));
    lab.run(&[
        "restore",
        "logical",
        "latest",
        "--db",
        &lab.pg.url("restorer", "restored2"),
        "--create",
        "--database",
        "storefront",
    ])
    .assert()
    .success();
    assert_eq!(lab.count("restored2"), lab.count(&lab.shop));

    lab.run(&["verify", "--all"]).assert().success();
    let drill = lab.json(&[
        "--json",
        "drill",
        "latest",
        "--target-db",
        &lab.pg.url("restorer", "postgres"),
    ]);
    assert_eq!(drill["passed"], true, "{drill}");

    // Both halves of every command reached the server as the same user, over TLS: ecobackup's
    // own connections and pg_dump's, pg_dumpall's and pg_restore's.
    let lines = lab.pg.connections();
    let tcp: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("user=backup") || l.contains("user=restorer"))
        .collect();
    assert!(tcp.iter().all(|l| l.contains("SSL enabled")), "{tcp:#?}");
    for (user, app) in [
        ("backup", "application_name=ecobackup "),
        ("backup", "application_name=ecobackup/pg_dump "),
        ("backup", "application_name=ecobackup/pg_dumpall "),
        ("restorer", "application_name=ecobackup "),
        ("restorer", "application_name=ecobackup/pg_restore "),
    ] {
        assert!(
            tcp.iter()
                .any(|l| l.contains(&format!("user={user} ")) && l.contains(app)),
            "no {user} connection with {app}: {tcp:#?}"
        );
    }
    // Only the test's own setup connections (through the socket) are the superuser's.
    assert!(
        lines
            .iter()
            .filter(|l| l.contains("user=postgres"))
            .all(|l| l.contains("application_name=ecobackup-testkit")),
        "ecobackup connected as the OS user or postgres: {lines:#?}"
    );
}

#[test]
fn url_command_and_after_command_run_around_the_backup() {
    let lab = Lab::new();
    let url_file = lab.write("branch.url", &lab.url_with_password());
    let after = lab.dir.path().join("after.txt");
    let config = lab.write(
        "ecobackup.toml",
        &format!(
            "[[database]]\nname = \"shop\"\nurl_command = \"cat {}\"\nafter_command = \"echo $ECOBACKUP_BACKUP_OK $ECOBACKUP_BACKUP_ID >> {}\"\nexclude_table_data = [\"public.invoices\"]\n",
            url_file.display(),
            after.display()
        ),
    );
    let out = lab.json(&[
        "--config",
        config.to_str().unwrap(),
        "--json",
        "backup",
        "logical",
    ]);
    let id = out["manifest"]["id"].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(&after).unwrap(),
        format!("1 {id}\n")
    );
    // exclude_table_data: the invoices table is there, its rows are not.
    lab.run(&[
        "restore",
        "logical",
        id,
        "--db",
        &lab.pg.url("restorer", "no_orders"),
        "--create",
    ])
    .assert()
    .success();
    assert_eq!(lab.rows("no_orders", "public.invoices"), 0);
    assert!(lab.rows(&lab.shop, "public.invoices") > 0);
    assert_eq!(lab.count("no_orders"), lab.count(&lab.shop));

    // A backup that fails still runs the after_command, told it failed.
    std::fs::remove_file(&after).unwrap();
    let bad_url = lab.write(
        "bad.url",
        &lab.url_with_password().replace(&lab.shop, "no_such_db"),
    );
    let config = lab.write(
        "bad.toml",
        &format!(
            "[[database]]\nname = \"shop\"\nurl_command = \"cat {}\"\nafter_command = \"echo $ECOBACKUP_BACKUP_OK >> {}\"\n",
            bad_url.display(),
            after.display()
        ),
    );
    let out = lab
        .run(&["--config", config.to_str().unwrap(), "backup", "logical"])
        .assert()
        .failure();
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.contains("no_such_db") && !line.contains(BACKUP_PASSWORD),
        "{line}"
    );
    assert_eq!(std::fs::read_to_string(&after).unwrap(), "0\n");

    // A url_command that fails is named, with what it said.
    let config = lab.write(
        "failing.toml",
        &format!(
            "[[database]]\nname = \"shop\"\nurl_command = \"echo neon api said 401 >&2; exit 3\"\nafter_command = \"echo cleaned $ECOBACKUP_BACKUP_OK >> {}\"\n",
            after.display()
        ),
    );
    let out = lab
        .run(&["--config", config.to_str().unwrap(), "backup", "logical"])
        .assert()
        .code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.contains("url_command") && line.contains("\"shop\"") && line.contains("401"),
        "{line}"
    );
    // The after_command of an entry whose url_command failed still runs (it may have made a
    // branch before failing).
    assert_eq!(std::fs::read_to_string(&after).unwrap(), "0\ncleaned 0\n");
}

#[test]
fn passwords_on_the_command_line_are_refused_in_every_form() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "postgres://backup:hunter2@localhost/shop",
        "postgres://backup@localhost/shop?password=hunter2",
        "host=localhost dbname=shop user=backup password=hunter2",
    ] {
        let out = ecobackup(dir.path())
            .args(["backup", "logical", "--no-encryption", "--db", url])
            .assert()
            .code(2);
        let line = one_error_line(&out.get_output().stderr);
        assert!(line.contains("password on the command line"), "{line}");
        assert!(!line.contains("hunter2"), "{line}");
    }
}

#[test]
fn databases_on_two_servers_get_their_own_facts_and_globals() {
    let lab = Lab::new();
    // A second server, reached as its superuser through its socket.
    let other = lab.runtime.block_on(ecobackup_testkit::TestPg::start());
    let other_url = lab.runtime.block_on(other.shop(1));
    let other_name = ecobackup_core::postgres::DbUrl::parse(&other_url)
        .unwrap()
        .database();
    let out = lab.json(&[
        "--json",
        "backup",
        "logical",
        "--db",
        &lab.pg.url("backup", &lab.shop),
        "--db",
        &other_url,
        "--globals",
    ]);
    let source = &out["manifest"]["source"];
    let servers = source["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2, "{source}");
    assert_eq!(servers[0]["databases"][0], lab.shop.as_str());
    assert_eq!(servers[0]["globals"], "globals.sql.zst.age");
    assert_eq!(servers[0]["globals_without_role_passwords"], true);
    assert_eq!(servers[1]["databases"][0], other_name.as_str());
    assert_eq!(
        servers[1]["globals"],
        format!("globals.{other_name}.sql.zst.age").as_str()
    );
    // The second server's role is a superuser: its roles keep their passwords.
    assert!(
        servers[1].get("globals_without_role_passwords").is_none(),
        "{source}"
    );
    assert_ne!(
        servers[0]["system_identifier"],
        servers[1]["system_identifier"]
    );
    assert_eq!(source["globals_without_role_passwords"], true);
    let names: Vec<&str> = out["manifest"]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"globals.sql.zst.age"), "{names:?}");
    assert!(
        names.contains(&format!("globals.{other_name}.sql.zst.age").as_str()),
        "{names:?}"
    );
}
