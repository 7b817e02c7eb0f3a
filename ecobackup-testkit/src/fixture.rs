//! The demo database: a small multi-tenant shop, for `ecobackup demo`, restore drills and tests.
//!
//! [`load_shop`] creates it (schema `public`, plus the view `reporting.daily_revenue`) in an
//! empty database: tenants, products, customers, orders (a nested `jsonb` column, an enum
//! status, timestamps over the last 90 days up to the last hour), order items, payments (random
//! "encrypted" `bytea`), invoices numbered by a sequence, an identity column, primary and foreign
//! keys, unique, expression, partial and GIN indexes, a PL/pgSQL function and the role
//! `shop_reader` with read grants. The SQL is `fixture.sql`, next to this file.
//!
//! [`table_fingerprints`] summarises every table's content on the server, so a restore can be
//! compared with its origin without reading rows into the client.

use std::collections::BTreeMap;

use ecobackup_core::postgres::{describe_pg_error, quote_ident};
use ecobackup_core::{Error, Result};

const SHOP_SQL: &str = include_str!("fixture.sql");

/// The tables [`load_shop`] creates, in load order.
const SHOP_TABLES: [&str; 7] = [
    "tenants",
    "products",
    "customers",
    "orders",
    "order_items",
    "payments",
    "invoices",
];

/// What [`load_shop`] created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixtureSummary {
    /// Each table (`public.orders`) and its number of rows, in load order.
    pub tables: Vec<(String, i64)>,
}

impl FixtureSummary {
    /// The rows of `table` (`orders` or `public.orders`), if the fixture has it.
    pub fn rows(&self, table: &str) -> Option<i64> {
        let qualified = if table.contains('.') {
            table.to_owned()
        } else {
            format!("public.{table}")
        };
        self.tables
            .iter()
            .find(|(name, _)| *name == qualified)
            .map(|&(_, rows)| rows)
    }

    /// The rows of all tables together.
    pub fn total_rows(&self) -> i64 {
        self.tables.iter().map(|(_, rows)| rows).sum()
    }
}

/// The content of one table, summarised: equal fingerprints mean equal multisets of rows (as
/// far as an MD5-based sum can tell).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableFingerprint {
    /// The number of rows.
    pub rows: i64,
    /// MD5 (hex) over the row count and the sums of each row's MD5 (see [`table_fingerprints`]).
    pub md5: String,
}

/// Loads the demo shop into the (empty) database `client` is connected to, in one transaction,
/// and analyses it. The data is generated on the server (`generate_series`, `random()` after
/// `setseed`): two loads of the same scale within the same clock hour are identical.
///
/// `scale` multiplies the row counts (0 counts as 1). Per unit: 2 tenants, 250 products, 1500
/// customers, 7000 orders (about 80 of them from the last 24 hours), 21 000 order items, about
/// 6200 payments and 6000 invoices: about 9 MB of tables and indexes. Measured with PostgreSQL
/// 15 on 2 cores, `fsync` off (an empty database is 7.3 MB):
///
/// | scale | `pg_database_size` | load time |
/// |------:|-------------------:|----------:|
/// |     1 |  17 235 303 (16 MB) |     0.7 s |
/// |    10 |  93 191 527 (89 MB) |     4.0 s |
/// |    50 | 422 010 215 (402 MB) |    19 s |
///
/// The role `shop_reader` is created unless it exists (roles are cluster-wide; concurrent loads
/// into several databases of one server are fine).
pub async fn load_shop(client: &tokio_postgres::Client, scale: u32) -> Result<FixtureSummary> {
    let scale = scale.max(1);
    let context = || format!("loading the demo shop (scale {scale})");
    let script = format!("BEGIN;\nSET LOCAL ecobackup.scale = {scale};\n{SHOP_SQL}\nCOMMIT;");
    if let Err(e) = client.batch_execute(&script).await {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(Error::Postgres {
            context: context(),
            detail: format!(
                "{}; load the shop into a new, empty database",
                describe_pg_error(&e)
            ),
        });
    }
    let analyze = SHOP_TABLES
        .iter()
        .map(|t| format!("public.{t}"))
        .collect::<Vec<_>>()
        .join(", ");
    client
        .batch_execute(&format!("ANALYZE {analyze}"))
        .await
        .map_err(|e| Error::Postgres {
            context: context(),
            detail: describe_pg_error(&e),
        })?;

    let counts = SHOP_TABLES
        .iter()
        .map(|t| format!("SELECT 'public.{t}', count(*) FROM public.{t}"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let rows = client
        .query(&counts, &[])
        .await
        .map_err(|e| Error::Postgres {
            context: format!("counting the rows of the demo shop (scale {scale})"),
            detail: describe_pg_error(&e),
        })?;
    let mut tables: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    tables.sort_by_key(|(name, _)| {
        SHOP_TABLES
            .iter()
            .position(|t| name.strip_prefix("public.") == Some(t))
    });
    Ok(FixtureSummary { tables })
}

/// Lists the tables to fingerprint: ordinary, non-temporary tables outside the system schemas.
const LIST_TABLES: &str = "\
SELECT n.nspname::text, c.relname::text
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%'
  AND n.nspname NOT LIKE 'pg\\_temp\\_%'
ORDER BY 1, 2";

/// A fingerprint of every ordinary table outside the system schemas, keyed `schema.table`
/// (unquoted): the row count and an MD5 over the multiset of rows.
///
/// Each row's text form (`row::text`) is hashed with MD5 on the server; the two 64-bit halves
/// of those hashes are summed over the table, and `md5` is the MD5 of `rows:sum1:sum2`. So the
/// fingerprint does not depend on row order (no sort, constant memory on the server, nothing
/// but one row per table sent to the client) and changes when any row changes, appears or
/// disappears. All tables are read in one repeatable-read snapshot, with the output settings
/// pinned (`TimeZone` UTC, ISO dates, hex bytea): identical for a faithful restore into
/// another database or server of the same major version.
pub async fn table_fingerprints(
    client: &tokio_postgres::Client,
) -> Result<BTreeMap<String, TableFingerprint>> {
    let failed = |context: String| {
        move |e: tokio_postgres::Error| Error::Postgres {
            context,
            detail: describe_pg_error(&e),
        }
    };
    client
        .batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
             SET LOCAL TimeZone = 'UTC';
             SET LOCAL DateStyle = 'ISO, YMD';
             SET LOCAL IntervalStyle = 'postgres';
             SET LOCAL extra_float_digits = 1;
             SET LOCAL bytea_output = 'hex';",
        )
        .await
        .map_err(failed(
            "starting a snapshot to fingerprint tables".to_owned(),
        ))?;
    let result = async {
        let tables = client
            .query(LIST_TABLES, &[])
            .await
            .map_err(failed("listing the tables to fingerprint".to_owned()))?;
        let mut fingerprints = BTreeMap::new();
        for table in tables {
            let schema: String = table.get(0);
            let name: String = table.get(1);
            let sql = format!(
                "SELECT count(*),
                        md5(count(*)::text || ':' || coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0)
                            || ':' || coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0))
                 FROM (SELECT md5(ecobackup_row::text) AS h FROM {}.{} AS ecobackup_row) AS hashes",
                quote_ident(&schema),
                quote_ident(&name)
            );
            let row = client
                .query_one(&sql, &[])
                .await
                .map_err(failed(format!("fingerprinting table {schema}.{name}")))?;
            fingerprints.insert(
                format!("{schema}.{name}"),
                TableFingerprint {
                    rows: row.get(0),
                    md5: row.get(1),
                },
            );
        }
        Ok(fingerprints)
    }
    .await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = client
        .batch_execute(end)
        .await
        .map_err(failed("ending the fingerprint snapshot".to_owned()));
    let fingerprints = result?;
    ended?;
    Ok(fingerprints)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecobackup_core::postgres::cluster::{Cluster, ClusterOptions};
    use ecobackup_core::postgres::connect;

    #[test]
    fn summaries_answer_by_table_name() {
        let summary = FixtureSummary {
            tables: vec![
                ("public.orders".to_owned(), 3),
                ("public.tenants".to_owned(), 1),
            ],
        };
        assert_eq!(summary.rows("orders"), Some(3));
        assert_eq!(summary.rows("public.tenants"), Some(1));
        assert_eq!(summary.rows("nope"), None);
        assert_eq!(summary.total_rows(), 4);
    }

    #[tokio::test]
    async fn two_loads_of_the_same_scale_are_identical() {
        let cluster = Cluster::start(ClusterOptions {
            fsync: false,
            ..ClusterOptions::default()
        })
        .await
        .unwrap();
        let hour = "SELECT date_trunc('hour', now())::text";
        let mut loads = Vec::new();
        for db in ["one", "two"] {
            cluster.create_database(db).await.unwrap();
            let client = connect(&cluster.url(db)).await.unwrap();
            let before: String = client.query_one(hour, &[]).await.unwrap().get(0);
            let summary = load_shop(&client, 1).await.unwrap();
            let after: String = client.query_one(hour, &[]).await.unwrap().get(0);
            loads.push((
                summary,
                table_fingerprints(&client).await.unwrap(),
                before,
                after,
            ));
        }
        let (one, two) = (&loads[0], &loads[1]);
        assert_eq!(one.0, two.0);
        assert_eq!(one.1.len(), 7, "{:?}", one.1);
        // Timestamps are relative to the current hour: compare only loads within one hour.
        if one.2 == two.3 {
            assert_eq!(one.1, two.1);
        }
    }
}
