//! A world for the WAL tests: the in-process S3 server, a configuration file as an
//! archive_command would use it (keys and S3 credentials in files of the server's user), and
//! real segments of a throwaway cluster.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use ecobackup_core::postgres::cluster::{Cluster, ClusterOptions};
use ecobackup_core::postgres::connect;
use ecobackup_testkit::server_user::{as_server_user, give_to_server_user, ServerUserDir};
use ecobackup_testkit::S3TestServer;

/// The S3 server, the server user's directory with the config and keys, a runtime.
pub struct WalWorld {
    pub runtime: tokio::runtime::Runtime,
    pub s3: S3TestServer,
    pub dir: ServerUserDir,
    pub config: PathBuf,
    pub identity: PathBuf,
    pub signer: String,
}

impl WalWorld {
    /// Everything set up, the repository initialised (its marker signed).
    pub fn new() -> WalWorld {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let s3 = runtime.block_on(S3TestServer::start());
        let dir = ServerUserDir::new();
        let key_id = dir.write("s3-key-id", s3.access_key_id().as_bytes());
        let secret = dir.write("s3-secret", s3.secret_access_key().as_bytes());
        let mut world = WalWorld {
            runtime,
            dir,
            config: PathBuf::new(),
            identity: PathBuf::new(),
            signer: String::new(),
            s3,
        };
        world.config = world.dir.write("ecobackup.toml", b"");
        let out = world
            .run(&["key", "generate", "--out", "restore.key"])
            .assert()
            .success();
        let recipient = String::from_utf8_lossy(&out.get_output().stdout)
            .trim()
            .to_owned();
        world
            .run(&["key", "generate", "--signing", "--out", "signing.key"])
            .assert()
            .success();
        world.identity = world.dir.path().join("restore.key");
        let signing = std::fs::read_to_string(world.dir.path().join("signing.key")).unwrap();
        world.signer = signing
            .lines()
            .find_map(|l| l.strip_prefix("# public key: "))
            .unwrap()
            .to_owned();
        let config = format!(
            r#"[repository]
url = "s3://{bucket}/prod"
endpoint = "{endpoint}"
region = "us-east-1"
allow_http = true
access_key_id_file = "{key_id}"
secret_access_key_file = "{secret}"
max_retries = 2

[encryption]
recipients = ["{recipient}"]
identity_files = ["{identity}"]
signing_key_file = "{dir}/signing.key"
trusted_signers = ["{signer}"]
"#,
            bucket = world.s3.bucket(),
            endpoint = world.s3.endpoint(),
            key_id = key_id.display(),
            secret = secret.display(),
            identity = world.identity.display(),
            dir = world.dir.path().display(),
            signer = world.signer,
        );
        world.config = world.dir.write("ecobackup.toml", config.as_bytes());
        world.run(&["init"]).assert().success();
        world
    }

    /// The binary as the server's user, in the world's directory, with the config.
    pub fn run(&self, args: &[&str]) -> Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ecobackup"));
        as_server_user(&mut cmd);
        cmd.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ECOBACKUP_CONFIG", &self.config)
            .args(args);
        Command::from_std(cmd)
    }

    /// The stored bytes of an object of the repository (`wal/…`).
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.s3
            .storage_dir()
            .join(self.s3.bucket())
            .join("prod")
            .join(key)
    }

    /// Requests received whose path ends with `key` (relative to the repository).
    pub fn requests_for(&self, method: &str, key: &str) -> usize {
        self.s3
            .requests()
            .iter()
            .filter(|r| r.method == method && r.path.ends_with(&format!("/prod/{key}")))
            .count()
    }

    /// Copies `n` finished segments of a fresh throwaway cluster into `folder` of the world's
    /// directory; returns their paths, oldest first.
    pub fn real_segments(&self, folder: &str, n: usize) -> Vec<PathBuf> {
        let into = self.dir.subdir(folder);
        self.runtime.block_on(async {
            let cluster = Cluster::start(ClusterOptions {
                fsync: false,
                ..ClusterOptions::default()
            })
            .await
            .unwrap();
            let client = connect(&cluster.url("postgres")).await.unwrap();
            client
                .batch_execute("CREATE TABLE t (id int, body text)")
                .await
                .unwrap();
            // A write, then a switch, until `n` segments are finished (the first switch after
            // initdb may find nothing to switch when the server is quick), and a write after the
            // last switch: the current segment is then the one being written (pg_walfile_name
            // of a segment boundary names the segment before it).
            let mut current = String::new();
            for i in 0..3 * n + 3 {
                client
                    .batch_execute(&format!(
                        "INSERT INTO t SELECT g, repeat('row {i} ', 20) FROM generate_series(1, 2000) g"
                    ))
                    .await
                    .unwrap();
                current = client
                    .query_one("SELECT pg_walfile_name(pg_current_wal_lsn())", &[])
                    .await
                    .unwrap()
                    .get(0);
                if u64::from_str_radix(&current[16..], 16).unwrap() > n as u64 {
                    break;
                }
                client.query_one("SELECT pg_switch_wal()::text", &[]).await.unwrap();
            }
            let all: Vec<String> = std::fs::read_dir(cluster.data_dir().join("pg_wal"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            let mut names: Vec<String> = all
                .iter()
                .filter(|n| n.len() == 24 && **n < current)
                .cloned()
                .collect();
            names.sort();
            assert!(names.len() >= n, "{n} finished segments before {current} in {all:?}");
            let names = names.split_off(names.len() - n);
            let paths: Vec<PathBuf> = names
                .iter()
                .map(|name| {
                    let to = into.join(name);
                    std::fs::copy(cluster.data_dir().join("pg_wal").join(name), &to).unwrap();
                    to
                })
                .collect();
            cluster.shutdown().await.unwrap();
            give_to_server_user(&into);
            paths
        })
    }
}

/// Waits until `done` holds, at most a minute (a background process or the server's archiver
/// is working); panics with `what` otherwise. No assertion depends on how long it took.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "gave up waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The names of the files in `dir`.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
