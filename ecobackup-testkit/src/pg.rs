//! A PostgreSQL server for tests: a throwaway cluster, or the server you point it at.
//!
//! [`TestPg::start`] starts a throwaway [`Cluster`] (`fsync` off) of the default major version
//! (15, or `ECOBACKUP_TEST_PG_MAJOR`; see [`crate::majors`]) in a temporary directory that is
//! deleted with the `TestPg`; [`TestPg::start_major`] one of the version it is given. When the
//! environment variable [`EXTERNAL_URL_VAR`] (`ECOBACKUP_TEST_DATABASE_URL`) is set, for
//! example to `postgres://postgres:pw@localhost:5432/postgres` for a server running in Docker,
//! that server is used instead (by `start_major` only when it runs that major version): its
//! user must be allowed to create databases (and the role `shop_reader`, for
//! [`TestPg::shop`]), and the databases tests create there are left behind.
//!
//! ```no_run
//! # async fn demo() {
//! use ecobackup_testkit::TestPg;
//!
//! let pg = TestPg::start().await;
//! let url = pg.shop(1).await; // a fresh database holding the demo shop
//! let client = pg.client("postgres").await;
//! let pg18 = TestPg::start_major(18).await; // fails, saying how to install it, if it is not
//! # }
//! ```

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::fixture::load_shop;
use ecobackup_core::postgres::cluster::{Cluster, ClusterOptions};
use ecobackup_core::postgres::quote_ident;
use ecobackup_core::postgres::{connect, redact_url};

use crate::majors::{default_major, server_bin_dir};

/// The environment variable naming an external server to test against instead of a throwaway
/// cluster: a `postgres://user:password@host:port/database` URL, whose database is used for
/// maintenance (creating databases).
pub const EXTERNAL_URL_VAR: &str = "ECOBACKUP_TEST_DATABASE_URL";

/// A PostgreSQL server for a test. Dropping it stops and deletes a throwaway cluster.
#[derive(Debug)]
pub struct TestPg {
    backend: Backend,
    major: u32,
}

#[derive(Debug)]
enum Backend {
    Local(Cluster),
    /// The URL from [`EXTERNAL_URL_VAR`] (password included).
    External(String),
}

impl TestPg {
    /// Starts a throwaway cluster of the default major version ([`default_major`]) with
    /// `fsync` off, or connects to the server named by [`EXTERNAL_URL_VAR`]. Panics with the
    /// reason when neither works.
    pub async fn start() -> TestPg {
        match external_url() {
            Some(url) => Self::external(url).await,
            None => Self::local(default_major()).await,
        }
    }

    /// Starts a throwaway cluster of PostgreSQL `major` with `fsync` off; or, when
    /// [`EXTERNAL_URL_VAR`] names a server of that major version, connects to it. Panics with
    /// the reason when it cannot, and says how to install `major` when it is missing.
    pub async fn start_major(major: u32) -> TestPg {
        if let Some(url) = external_url() {
            let external = Self::external(url).await;
            if external.major == major {
                return external;
            }
        }
        Self::local(major).await
    }

    async fn local(major: u32) -> TestPg {
        let bin_dir = server_bin_dir(major).await;
        let cluster = Cluster::start(ClusterOptions {
            bin_dir: Some(bin_dir),
            fsync: false,
            ..ClusterOptions::default()
        })
        .await
        .unwrap_or_else(|e| {
            panic!("starting a throwaway PostgreSQL {major} cluster for the test: {e} (or set {EXTERNAL_URL_VAR} to test against a running server)")
        });
        TestPg {
            major: cluster.major_version(),
            backend: Backend::Local(cluster),
        }
    }

    async fn external(url: String) -> TestPg {
        if !url.contains("://") {
            panic!("{EXTERNAL_URL_VAR} must be a postgres://user:password@host:port/database URL");
        }
        let client = connect(&url).await.unwrap_or_else(|e| {
            panic!("{EXTERNAL_URL_VAR}: {e}");
        });
        let version: i32 = client
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await
            .unwrap_or_else(|e| panic!("asking {} for its version: {e}", redact_url(&url)))
            .get(0);
        TestPg {
            backend: Backend::External(url),
            major: u32::try_from(version / 10_000).expect("a positive server version"),
        }
    }

    /// The URL of `database` on this server (with the password, if the external URL has one).
    pub fn url(&self, database: &str) -> String {
        match &self.backend {
            Backend::Local(cluster) => cluster.url(database),
            Backend::External(url) => with_database(url, database),
        }
    }

    /// The URL of the maintenance database (`postgres`, or the external URL's own).
    fn maintenance_url(&self) -> String {
        match &self.backend {
            Backend::Local(cluster) => cluster.url("postgres"),
            Backend::External(url) => url.clone(),
        }
    }

    /// Creates database `name` and returns its URL. Panics if it exists (choosing unique names
    /// is the caller's job; see [`TestPg::fresh_database`]).
    pub async fn create_database(&self, name: &str) -> String {
        let maintenance = self.maintenance_url();
        let client = connect(&maintenance)
            .await
            .unwrap_or_else(|e| panic!("creating database {name:?}: {e}"));
        client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(name)))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "creating database {name:?} on {}: {}",
                    redact_url(&maintenance),
                    ecobackup_core::postgres::describe_pg_error(&e)
                )
            });
        self.url(name)
    }

    /// Creates a database named `prefix` plus a random suffix (`shop_1f0c…`) and returns its
    /// URL.
    pub async fn fresh_database(&self, prefix: &str) -> String {
        self.create_database(&unique_name(prefix)).await
    }

    /// A connection to `database`. Panics when it cannot connect.
    pub async fn client(&self, database: &str) -> tokio_postgres::Client {
        connect(&self.url(database))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Creates a fresh database holding the demo shop at `scale` (see
    /// [`load_shop`]) and returns its URL.
    pub async fn shop(&self, scale: u32) -> String {
        let url = self.fresh_database("shop").await;
        let client = connect(&url).await.unwrap_or_else(|e| panic!("{e}"));
        load_shop(&client, scale)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        url
    }

    /// The throwaway cluster, to stop, crash or restart it; `None` for an external server.
    pub fn cluster(&self) -> Option<&Cluster> {
        match &self.backend {
            Backend::Local(cluster) => Some(cluster),
            Backend::External(_) => None,
        }
    }

    /// The throwaway cluster, mutably; `None` for an external server.
    pub fn cluster_mut(&mut self) -> Option<&mut Cluster> {
        match &mut self.backend {
            Backend::Local(cluster) => Some(cluster),
            Backend::External(_) => None,
        }
    }

    /// Whether this is an external server (from [`EXTERNAL_URL_VAR`]).
    pub fn is_external(&self) -> bool {
        matches!(self.backend, Backend::External(_))
    }

    /// The server's major version (15 for PostgreSQL 15.x).
    pub fn major_version(&self) -> u32 {
        self.major
    }

    /// The directory of the throwaway cluster's programs (`initdb`, `pg_dump`, `psql` …, of
    /// its major version); `None` for an external server. Give it to ecobackup as `--pg-bin`,
    /// `pg_bin` or `ECOBACKUP_PG_BIN_<major>`: the testkit may have found it where ecobackup
    /// does not look.
    pub fn bin_dir(&self) -> Option<&Path> {
        self.cluster().map(Cluster::bin_dir)
    }
}

/// [`EXTERNAL_URL_VAR`], when set and not blank.
fn external_url() -> Option<String> {
    std::env::var(EXTERNAL_URL_VAR)
        .ok()
        .map(|url| url.trim().to_owned())
        .filter(|url| !url.is_empty())
}

/// `prefix_` plus 16 random hex digits, at most 63 bytes (PostgreSQL's identifier limit).
fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    let mut prefix = prefix;
    while prefix.len() > 45 {
        let mut end = 45;
        while !prefix.is_char_boundary(end) {
            end -= 1;
        }
        prefix = &prefix[..end];
    }
    format!("{prefix}_{:016x}", hasher.finish())
}

/// `url` with its database (the path) replaced by `database`; the query string is kept.
fn with_database(url: &str, database: &str) -> String {
    let rest_start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[rest_start..];
    let query_start = rest.find('?').unwrap_or(rest.len());
    // The host part ends at the first `/` after the user info (which may hold a raw `/`).
    let host_start = rest[..query_start].rfind('@').map_or(0, |at| at + 1);
    let path_start = rest[host_start..query_start]
        .find('/')
        .map_or(query_start, |i| host_start + i);
    let mut encoded = String::new();
    for byte in database.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!(
        "{}{}/{encoded}{}",
        &url[..rest_start],
        &rest[..path_start],
        &rest[query_start..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_urls_get_another_database() {
        assert_eq!(
            with_database("postgres://postgres:pw@localhost:5432/postgres", "shop"),
            "postgres://postgres:pw@localhost:5432/shop"
        );
        assert_eq!(
            with_database("postgresql://u:p/w@h?sslmode=disable", "my db"),
            "postgresql://u:p/w@h/my%20db?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h/a/b", "c"), "postgres://h/c");
    }

    #[test]
    fn fresh_names_are_unique_and_short() {
        let a = unique_name("shop");
        let b = unique_name("shop");
        assert_ne!(a, b);
        assert!(a.starts_with("shop_") && a.len() == 21, "{a}");
        assert!(unique_name(&"é".repeat(40)).len() <= 63);
    }
}
