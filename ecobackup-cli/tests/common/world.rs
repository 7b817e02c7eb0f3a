//! A test's world for the commands that need PostgreSQL: a server with the demo shop, a key,
//! a repository, and the binary with the environment to reach them.

use std::path::{Path, PathBuf};
use std::process::Command as Std;

use assert_cmd::Command;
use ecobackup_core::postgres::binaries::{bin_dir_var, find_program};
use ecobackup_testkit::{S3TestServer, TestPg};

use super::key;

/// A test's world: a server with the demo shop, a key, a repository, a runtime.
pub struct World {
    pub runtime: tokio::runtime::Runtime,
    pub pg: TestPg,
    pub dir: tempfile::TempDir,
    pub identity: PathBuf,
    pub recipient: String,
    pub shop: String,
    pub password: Option<String>,
    pub env: Vec<(&'static str, String)>,
    /// More servers, of other versions (see [`World::add_server`]).
    pub others: Vec<TestPg>,
}

/// `postgres://u:pw@h/db` → (`postgres://u@h/db`, `pw`): passwords never go on our argv.
pub fn split_password(url: &str) -> (String, Option<String>) {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return (url.to_owned(), None);
    };
    let Some(at) = url[start..].find('@').map(|i| start + i) else {
        return (url.to_owned(), None);
    };
    match url[start..at].split_once(':') {
        Some((user, password)) => (
            format!("{}{user}{}", &url[..start], &url[at..]),
            Some(password.to_owned()),
        ),
        None => (url.to_owned(), None),
    }
}

impl World {
    /// A world on the default PostgreSQL (15, or `ECOBACKUP_TEST_PG_MAJOR`).
    pub fn new() -> World {
        Self::on(TestPg::start)
    }

    /// A world on PostgreSQL `major` (fails, saying how to install it, when it is missing).
    pub fn with_major(major: u32) -> World {
        Self::on(|| TestPg::start_major(major))
    }

    fn on<F: std::future::Future<Output = TestPg>>(start: impl FnOnce() -> F) -> World {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let pg = runtime.block_on(start());
        let (shop, password) = split_password(&runtime.block_on(pg.shop(1)));
        let dir = tempfile::tempdir().unwrap();
        let (identity, recipient) = key(dir.path(), "restore.key");
        let repo = format!("file://{}", dir.path().join("repo").display());
        World {
            runtime,
            pg,
            identity,
            recipient,
            shop,
            password,
            env: vec![("ECOBACKUP_REPO", repo)],
            dir,
            others: Vec::new(),
        }
    }

    /// Starts another throwaway server, of PostgreSQL `major`, with the demo shop; returns the
    /// shop's URL. ecobackup is told where its programs are, like the first server's.
    pub fn add_server(&mut self, major: u32) -> String {
        let pg = self.runtime.block_on(TestPg::start_major(major));
        assert!(!pg.is_external(), "a second server must be a throwaway one");
        let shop = self.runtime.block_on(pg.shop(1));
        self.others.push(pg);
        shop
    }

    /// Every server of this world: the first, then [`World::add_server`]'s.
    fn servers(&self) -> Vec<&TestPg> {
        std::iter::once(&self.pg).chain(&self.others).collect()
    }

    /// `ECOBACKUP_PG_BIN_<major>` for the programs of every server in `servers`: the testkit
    /// may have found them where ecobackup does not look (PostgreSQL 18 in CI).
    pub fn bin_dir_vars(servers: &[&TestPg]) -> Vec<(String, PathBuf)> {
        servers
            .iter()
            .filter_map(|pg| {
                let dir = pg.bin_dir()?;
                Some((bin_dir_var(pg.major_version()), dir.to_owned()))
            })
            .collect()
    }

    pub fn on_s3(&mut self, s3: &S3TestServer) {
        self.env = super::s3_env(s3, format!("s3://{}/prod", s3.bucket()));
        self.env.push(("ECOBACKUP_S3_MAX_RETRIES", "2".to_owned()));
    }

    pub fn run(&self, args: &[&str]) -> Command {
        Command::from_std(self.std_command(args))
    }

    /// [`World::run`] as a plain process, for a test that runs it in the background.
    pub fn std_command(&self, args: &[&str]) -> Std {
        let mut cmd = super::ecobackup_std(self.dir.path());
        cmd.args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(Self::bin_dir_vars(&self.servers()))
            .env("ECOBACKUP_RECIPIENTS", &self.recipient)
            .env("ECOBACKUP_IDENTITY_FILE", &self.identity);
        // Backups are signed and restores check it, as in production.
        let (signing_key, signer) = super::signing_key(self.dir.path());
        cmd.env("ECOBACKUP_SIGNING_KEY_FILE", signing_key)
            .env("ECOBACKUP_TRUSTED_SIGNERS", signer);
        if let Some(password) = &self.password {
            cmd.env("PGPASSWORD", password);
        }
        cmd
    }

    pub fn init(&self) {
        self.run(&["init"]).assert().success();
    }

    pub fn backup(&self) -> String {
        let out = self
            .run(&[
                "--json",
                "backup",
                "logical",
                "--db",
                &self.shop,
                "--globals",
                "--tag",
                "reason=test",
            ])
            .assert()
            .success();
        let result: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        result["manifest"]["id"].as_str().unwrap().to_owned()
    }

    /// The name of the shop database.
    pub fn shop_name(&self) -> String {
        ecobackup_core::postgres::DbUrl::parse(&self.shop)
            .unwrap()
            .database()
    }

    /// The URL of a database name on the same server (not created).
    pub fn database(&self, name: &str) -> String {
        split_password(&self.pg.url(name)).0
    }

    /// `program` of the server's major version.
    pub fn pg_bin(&self, program: &str) -> PathBuf {
        self.runtime
            .block_on(find_program(
                program,
                self.pg.major_version(),
                self.pg.bin_dir(),
            ))
            .unwrap()
    }

    /// Runs a program that talks to the server (pg_dump, a shell pipeline), with the server's
    /// password in its environment; asserts it succeeded and returns its stdout.
    pub fn run_client(&self, mut cmd: Std) -> Vec<u8> {
        if let Some(password) = &self.password {
            cmd.env("PGPASSWORD", password);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// The artifact of backup `id` whose name ends with `suffix`, in the file:// repository.
    pub fn artifact(&self, id: &str, suffix: &str) -> PathBuf {
        walk(&self.dir.path().join("repo/backups").join(id))
            .into_iter()
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap_or_else(|| panic!("no {suffix} in {id}"))
    }

    /// `pg_dump` of one database in plain SQL with extra flags.
    pub fn dump(&self, url: &str, flag: &str) -> String {
        self.dump_with(url, &[flag, "--no-owner"])
    }

    /// `pg_dump` of one database in plain SQL with `flags`, without its random `\restrict` lines.
    /// It is the pg_dump of the newest server of this world, which dumps every other.
    pub fn dump_with(&self, url: &str, flags: &[&str]) -> String {
        let newest = self
            .servers()
            .into_iter()
            .max_by_key(|pg| pg.major_version())
            .unwrap();
        let pg_dump = self
            .runtime
            .block_on(find_program(
                "pg_dump",
                newest.major_version(),
                newest.bin_dir(),
            ))
            .unwrap();
        let mut cmd = Std::new(pg_dump);
        cmd.args(flags).arg(format!("--dbname={url}"));
        // pg_dump ≥ 15.14 brackets its output with a random \restrict key, and names the
        // server's version: not content.
        String::from_utf8(self.run_client(cmd))
            .unwrap()
            .lines()
            .filter(|l| {
                !l.starts_with("\\restrict ")
                    && !l.starts_with("\\unrestrict ")
                    && !l.starts_with("-- Dumped from database version ")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn assert_identical(&self, source: &str, target: &str) {
        let data = (
            self.dump(source, "--data-only"),
            self.dump(target, "--data-only"),
        );
        assert!(
            data.0.contains("COPY public.orders"),
            "the fixture has data"
        );
        assert!(
            data.0 == data.1,
            "data differs between {source} and {target}: {}",
            first_difference(&data.0, &data.1)
        );
        let schema = (
            self.dump(source, "--schema-only"),
            self.dump(target, "--schema-only"),
        );
        assert!(
            schema.0 == schema.1,
            "schema differs between {source} and {target}: {}",
            first_difference(&schema.0, &schema.1)
        );
    }

    pub fn rows(&self, url: &str, table: &str) -> i64 {
        let url = match &self.password {
            Some(p) => url.replacen("@", &format!(":{p}@"), 1),
            None => url.to_owned(),
        };
        self.runtime.block_on(async {
            let client = ecobackup_core::postgres::connect(&url).await.unwrap();
            client
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .unwrap()
                .get(0)
        })
    }

    pub fn database_exists(&self, name: &str) -> bool {
        self.runtime.block_on(async {
            let client = self.pg.client("postgres").await;
            client
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                .await
                .unwrap()
                .is_some()
        })
    }

    pub fn listed_backups(&self) -> usize {
        let out = self.run(&["--json", "list"]).assert().success();
        let list: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
        list.as_array().unwrap().len()
    }
}

/// The first line where two dumps differ, with its number (not a whole dump of row data).
fn first_difference(a: &str, b: &str) -> String {
    let (mut a_lines, mut b_lines) = (a.lines(), b.lines());
    let mut number = 1;
    loop {
        match (a_lines.next(), b_lines.next()) {
            (Some(x), Some(y)) if x == y => number += 1,
            (None, None) => return "no line differs".to_owned(),
            (x, y) => {
                let cut = |l: Option<&str>| {
                    l.map_or("<end>".to_owned(), |l| l.chars().take(200).collect())
                };
                return format!("line {number}: {:?} vs {:?}", cut(x), cut(y));
            }
        }
    }
}

/// XORs the byte in the middle of a file with `mask`: tampering an artifact.
pub fn flip_middle_byte(path: &Path, mask: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= mask;
    std::fs::write(path, bytes).unwrap();
}

/// Every file under `dir`, recursively.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}
