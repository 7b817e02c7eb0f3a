//! What a server says about itself and a database at backup time: version, size, row estimates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::postgres::DbUrl;

/// What a server told us about itself and one database, at backup time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DatabaseFacts {
    /// The database name.
    pub name: String,
    /// `server_version` (`15.18`).
    pub server_version: String,
    /// `server_version_num / 10000` (15).
    pub major_version: u32,
    /// `pg_database_size`, bytes.
    pub size_bytes: u64,
    /// Row estimates per table (`schema.table`), from the planner statistics.
    pub row_estimates: BTreeMap<String, i64>,
    /// The cluster's system identifier, when the role may read it.
    pub system_identifier: Option<String>,
}

/// The cluster's system identifier, when the role may call `pg_control_system()` (a
/// least-privilege role may not: then `None`).
pub async fn system_identifier(client: &tokio_postgres::Client) -> Option<String> {
    client
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .await
        .ok()
        .map(|r| r.get::<_, String>(0))
}

/// Asks the server about the database `client` is connected to.
pub async fn database_facts(client: &tokio_postgres::Client, url: &DbUrl) -> Result<DatabaseFacts> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int, \
             pg_database_size(current_database())",
            &[],
        )
        .await
        .map_err(|e| url.error("asking the server version of", e))?;
    let version_num: i32 = row.get(1);
    let size: i64 = row.get(2);
    let system_identifier = system_identifier(client).await;
    // reltuples is -1 for a table never vacuumed or analyzed: then the statistics collector's
    // live-tuple count is the better estimate.
    let rows = client
        .query(
            "SELECT n.nspname || '.' || c.relname, \
                    CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint \
                         ELSE coalesce(s.n_live_tup, 0) END \
             FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
             WHERE c.relkind IN ('r', 'p') \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'",
            &[],
        )
        .await
        .map_err(|e| url.error("reading the table statistics of", e))?;
    Ok(DatabaseFacts {
        name: url.database(),
        server_version: row.get(0),
        major_version: u32::try_from(version_num / 10_000).unwrap_or(0),
        size_bytes: u64::try_from(size).unwrap_or(0),
        row_estimates: rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
        system_identifier,
    })
}

/// The major version in a `server_version` string: `15.18` → 15, `18.1` → 18, `18beta1` → 18,
/// `15.18 (Debian 15.18-0+deb12u1)` → 15, `9.6.24` → 9 (as `server_version_num / 10000`).
pub fn major_of(server_version: &str) -> Option<u32> {
    let digits: String = server_version
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_versions_come_from_every_form_of_server_version() {
        for (version, major) in [
            ("15.18", 15),
            ("18.1", 18),
            ("18.6", 18),
            ("18beta1", 18),
            ("19devel", 19),
            ("18rc1", 18),
            ("15.18 (Debian 15.18-0+deb12u1)", 15),
            ("9.6.24", 9),
        ] {
            assert_eq!(major_of(version), Some(major), "{version}");
        }
        assert_eq!(major_of(""), None);
        assert_eq!(major_of("devel"), None);
    }
}
