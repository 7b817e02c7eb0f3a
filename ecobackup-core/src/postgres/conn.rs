//! Database URLs: parsed once, shown without their password, handed to child programs with the
//! password in `PGPASSWORD` rather than on the command line.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::crypto::{ExposeSecret, SecretString};
use crate::error::{Error, Result};
use crate::process::ChildCommand;

/// A PostgreSQL connection URL (`postgres://user@host:5432/shop?sslmode=require`).
#[derive(Clone, Debug)]
pub struct DbUrl {
    /// The URL without its password.
    url: Url,
    password: Option<SecretString>,
}

impl DbUrl {
    /// Parses a `postgres://` or `postgresql://` URL. The database name is required.
    pub fn parse(text: &str) -> Result<DbUrl> {
        let bad = |detail: &str| Error::Postgres {
            context: format!("reading the database URL {}", redact_url(text)),
            detail: detail.to_owned(),
        };
        let mut url = Url::parse(text.trim())
            .map_err(|e| bad(&format!("{e}; expected postgres://user@host:5432/database")))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(bad("expected a postgres:// or postgresql:// URL"));
        }
        let password = url.password().map(|p| percent_decode(p).into());
        let _ = url.set_password(None);
        let parsed = DbUrl { url, password };
        if parsed.database().is_empty() {
            return Err(bad("it names no database: add /dbname at the end"));
        }
        Ok(parsed)
    }

    /// Whether the URL carried a password.
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// Sets the password (read from a file or the environment).
    pub fn with_password(mut self, password: Option<SecretString>) -> Self {
        self.password = password;
        self
    }

    /// The database name.
    pub fn database(&self) -> String {
        percent_decode(self.url.path().trim_start_matches('/'))
    }

    /// The same server and user, another database.
    pub fn with_database(&self, database: &str) -> DbUrl {
        let mut url = self.url.clone();
        let encoded: String = url::form_urlencoded::byte_serialize(database.as_bytes()).collect();
        url.set_path(&format!("/{}", encoded.replace('+', "%20")));
        DbUrl {
            url,
            password: self.password.clone(),
        }
    }

    /// The URL for messages and manifests: never the password.
    pub fn redacted(&self) -> String {
        self.url.to_string()
    }

    /// Connects with tokio-postgres; the connection runs on its own task.
    pub async fn connect(&self) -> Result<tokio_postgres::Client> {
        let mut config: tokio_postgres::Config = self
            .url
            .as_str()
            .parse()
            .map_err(|e: tokio_postgres::Error| self.error("reading", e))?;
        if let Some(password) = &self.password {
            config.password(password.expose_secret());
        } else if let Ok(password) = std::env::var("PGPASSWORD") {
            config.password(password);
        }
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| Error::Postgres {
                context: format!("connecting to {}", self.redacted()),
                detail: format!(
                    "{}; check that the server is running and reachable and that the URL, user and password are right",
                    describe_pg_error(&e)
                ),
            })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("PostgreSQL connection ended: {}", describe_pg_error(&e));
            }
        });
        Ok(client)
    }

    /// Drops the database this URL names (`WITH (FORCE)`: its sessions are ended), connected
    /// to the server's `postgres` database. A database that does not exist is not an error.
    pub async fn drop_database(&self) -> Result<()> {
        let admin = self.with_database("postgres");
        let sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&self.database())
        );
        admin
            .connect()
            .await?
            .batch_execute(&sql)
            .await
            .map_err(|e| admin.error("dropping a database on", e))
    }

    /// Gives a program this URL's password in `PGPASSWORD` (when it has one), nothing else.
    pub fn apply_env(&self, command: ChildCommand) -> ChildCommand {
        match &self.password {
            Some(password) => command.env("PGPASSWORD", password.clone()),
            None => command,
        }
    }

    /// Points a client program (`pg_dump`, `pg_restore`) at this database: `--dbname` without
    /// the password, the password in the child's `PGPASSWORD`.
    pub fn apply(&self, command: ChildCommand) -> ChildCommand {
        self.apply_env(command.arg(format!("--dbname={}", self.url)))
    }

    /// An error about a query on this database: what PostgreSQL said, in one line.
    pub fn error(&self, doing: &str, e: tokio_postgres::Error) -> Error {
        Error::Postgres {
            context: format!("{doing} {}", self.redacted()),
            detail: describe_pg_error(&e),
        }
    }
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// A connection string fit for messages and logs: the password removed from a URL
/// (`postgres://user:secret@host/db` → `postgres://user@host/db`, and `?password=`) or from a
/// `key=value` string (`password=secret`).
pub fn redact_url(url: &str) -> String {
    match url.find("://") {
        Some(scheme_end) => redact_uri(url, scheme_end + 3),
        None => redact_key_values(url),
    }
}

fn redact_uri(url: &str, rest_start: usize) -> String {
    let rest = &url[rest_start..];
    let query_start = rest.find('?').unwrap_or(rest.len());
    let (before_query, query) = rest.split_at(query_start);
    // The user info ends at the last `@` before the query: a raw `/` or `@` in a password
    // must not make us print it.
    let host_part = match before_query.rfind('@') {
        Some(at) => {
            let user = before_query[..at].split(':').next().unwrap_or_default();
            format!("{user}@{}", &before_query[at + 1..])
        }
        None => before_query.to_owned(),
    };
    let query = match query.strip_prefix('?') {
        Some(params) => {
            let kept: Vec<&str> = params
                .split('&')
                .filter(|kv| !kv.to_ascii_lowercase().starts_with("password="))
                .collect();
            if kept.is_empty() {
                String::new()
            } else {
                format!("?{}", kept.join("&"))
            }
        }
        None => String::new(),
    };
    format!("{}{host_part}{query}", &url[..rest_start])
}

fn redact_key_values(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        // At the start of a key?
        let at_key_start = i == 0 || chars[i - 1].is_whitespace();
        if at_key_start
            && chars[i..]
                .iter()
                .take(8)
                .collect::<String>()
                .eq_ignore_ascii_case("password")
        {
            let mut j = i + 8;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            if j < chars.len() && chars[j] == '=' {
                j += 1;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                if j < chars.len() && chars[j] == '\'' {
                    j += 1;
                    while j < chars.len() && chars[j] != '\'' {
                        if chars[j] == '\\' {
                            j += 1;
                        }
                        j += 1;
                    }
                    j += 1;
                } else {
                    while j < chars.len() && !chars[j].is_whitespace() {
                        j += 1;
                    }
                }
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                i = j.min(chars.len());
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out.trim_end().to_owned()
}

/// One line saying what PostgreSQL (or the connection) reported: `FATAL: database "x" does not
/// exist`, with DETAIL and HINT when there are any. The DETAIL of a constraint violation is left
/// out: it quotes row data.
pub fn describe_pg_error(error: &tokio_postgres::Error) -> String {
    let text = match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{}: {}", db.severity(), db.message());
            let integrity_violation = db.code().code().starts_with("23");
            if let Some(detail) = db.detail().filter(|_| !integrity_violation) {
                let _ = write!(text, " ({detail})");
            }
            if let Some(hint) = db.hint() {
                let _ = write!(text, "; hint: {hint}");
            }
            text
        }
        None => {
            let mut text = error.to_string();
            let mut source = error.source();
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    let _ = write!(text, ": {cause_text}");
                }
                source = cause.source();
            }
            text
        }
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Connects to the database URL `url` (without TLS), as [`DbUrl::connect`] does.
///
/// The error names the URL with its password removed.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    DbUrl::parse(url)?.connect().await
}

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
    let system_identifier = client
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .await
        .ok()
        .map(|r| r.get::<_, String>(0));
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

/// Quotes an identifier for SQL (`"my ""odd"" db"`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_leaves_the_url_and_goes_to_the_environment() {
        let url =
            DbUrl::parse("postgres://app:s%40cret@db.internal:6432/shop?sslmode=require").unwrap();
        assert_eq!(url.database(), "shop");
        assert_eq!(
            url.redacted(),
            "postgres://app@db.internal:6432/shop?sslmode=require"
        );
        assert!(url.has_password());
        let other = url.with_database("my db");
        assert_eq!(other.database(), "my db");
        assert!(!other.redacted().contains("cret"));
    }

    #[test]
    fn passwords_never_survive_redaction() {
        assert_eq!(
            redact_url("postgres://postgres:pw@localhost:5432/postgres"),
            "postgres://postgres@localhost:5432/postgres"
        );
        assert_eq!(
            redact_url("postgresql://u:p/w@d@h/db?sslmode=require&password=x"),
            "postgresql://u@h/db?sslmode=require"
        );
        assert_eq!(redact_url("postgres://h/db?password=x"), "postgres://h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("host=h password='a b\\' c' user=u"),
            "host=h user=u"
        );
        assert_eq!(
            redact_url("host=h PASSWORD = s3cret dbname=x"),
            "host=h dbname=x"
        );
        assert_eq!(redact_url("host=h dbname=x password=s"), "host=h dbname=x");
        assert_eq!(redact_url("host=h mypassword=x"), "host=h mypassword=x");
    }

    #[test]
    fn bad_urls_say_why_without_the_password() {
        for (text, why) in [
            ("mysql://u:hunter2@h/db", "postgres://"),
            ("postgres://u:hunter2@h", "names no database"),
            ("host=h dbname=x password=hunter2", "expected postgres://"),
        ] {
            let err = DbUrl::parse(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
