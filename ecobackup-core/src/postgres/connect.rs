//! Opening ecobackup's own connections from a [`DbUrl`]: each server in turn, with TLS as
//! `sslmode` says, and errors that say what to do (a TLS-only server reached without TLS, a
//! certificate that does not verify, a password that was not found, a connection pooler in
//! transaction mode).

use std::error::Error as _;
use std::fmt::Write as _;

use rand::seq::SliceRandom as _;

use crate::crypto::{ExposeSecret, SecretString};
use crate::error::{Error, Result};
use crate::postgres::conn::{DbUrl, Endpoint};
use crate::postgres::tls::SslMode;

/// tokio-postgres's names for libpq settings it understands, where they differ.
const TOKIO_NAMES: &[(&str, &str)] = &[("keepalives_count", "keepalives_retries")];

/// Settings tokio-postgres does not take: `client_encoding` (it always speaks UTF-8; the setting
/// reaches the children) and `load_balance_hosts` (the loop below does it).
const NOT_FOR_TOKIO: &[&str] = &["client_encoding", "load_balance_hosts"];

/// Connects to the connection string `url` (libpq's defaults, no `PG*` variables), as
/// [`DbUrl::connect`] does. The error names the URL with its password removed.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    DbUrl::parse(url)?.connect().await
}

impl DbUrl {
    /// Connects with tokio-postgres, trying each server in turn (in random order with
    /// `load_balance_hosts=random`), TLS as `sslmode` says; the connection runs on its own task.
    /// Cancel safe: dropping the future drops the attempt.
    pub async fn connect(&self) -> Result<tokio_postgres::Client> {
        Ok(self.connect_pinned().await?.0)
    }

    /// Connects as [`DbUrl::connect`] does, and returns with the client these settings narrowed
    /// to the server that answered (no other host, no load balancing): hand that to the
    /// programs started next, so that they reach the server ecobackup asked its questions of
    /// (the pg_dump of its major version, its facts), not another host of the list.
    pub async fn connect_pinned(&self) -> Result<(tokio_postgres::Client, DbUrl)> {
        let mut order: Vec<&Endpoint> = self.endpoints().iter().collect();
        if self
            .passed_through()
            .get("load_balance_hosts")
            .is_some_and(|v| v == "random")
        {
            order.shuffle(&mut rand::thread_rng());
        }
        let several = order.len() > 1;
        let mut failures = Vec::new();
        for endpoint in order {
            match self.connect_endpoint(endpoint).await {
                Ok(client) => return Ok((client, self.pinned_to(endpoint))),
                Err(detail) if several => {
                    failures.push(format!("{}: {detail}", describe_endpoint(endpoint)))
                }
                Err(detail) => failures.push(detail),
            }
        }
        Err(Error::Postgres {
            context: format!("connecting to {}", self.redacted()),
            detail: failures.join("; "),
        })
    }

    async fn connect_endpoint(
        &self,
        endpoint: &Endpoint,
    ) -> std::result::Result<tokio_postgres::Client, String> {
        let (password, password_source) = self.password_for(endpoint);
        let mut config = self.tokio_config(endpoint, password.as_ref())?;
        // Never TLS over a Unix socket, whatever sslmode says (libpq).
        let mode = if endpoint.is_socket() {
            SslMode::Disable
        } else {
            self.tls().mode
        };
        let explain = |e: tokio_postgres::Error| {
            self.explain(&e, endpoint, mode, &password_source, password.is_some())
        };
        match mode {
            SslMode::Disable => connect_plain(config).await.map_err(explain),
            SslMode::Allow => match connect_plain(config.clone()).await {
                Ok(client) => Ok(client),
                Err(plain) => {
                    tracing::debug!(
                        "sslmode=allow: a plain connection failed ({}), trying TLS",
                        describe_pg_error(&plain)
                    );
                    config.ssl_mode(tokio_postgres::config::SslMode::Require);
                    self.connect_tls(config).await?.map_err(explain)
                }
            },
            SslMode::Prefer => {
                config.ssl_mode(tokio_postgres::config::SslMode::Prefer);
                self.connect_tls(config).await?.map_err(explain)
            }
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                self.connect_tls(config).await?.map_err(explain)
            }
        }
    }

    async fn connect_tls(
        &self,
        config: tokio_postgres::Config,
    ) -> std::result::Result<
        std::result::Result<tokio_postgres::Client, tokio_postgres::Error>,
        String,
    > {
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.tls().client_config()?);
        Ok(config
            .connect(tls)
            .await
            .map(|(client, connection)| run_connection(client, connection)))
    }

    /// tokio-postgres's configuration for one server. The settings tokio-postgres parses
    /// itself go through its own parser, so that it validates their values.
    fn tokio_config(
        &self,
        endpoint: &Endpoint,
        password: Option<&SecretString>,
    ) -> std::result::Result<tokio_postgres::Config, String> {
        let mut text = String::new();
        for (keyword, value) in self.passed_through() {
            if NOT_FOR_TOKIO.contains(&keyword.as_str()) {
                continue;
            }
            let name = TOKIO_NAMES
                .iter()
                .find(|(libpq, _)| libpq == keyword)
                .map_or(keyword.as_str(), |(_, tokio)| tokio);
            let _ = write!(
                text,
                "{name}={} ",
                crate::postgres::conninfo::quote_value(value)
            );
        }
        let mut config: tokio_postgres::Config =
            text.parse().map_err(|e: tokio_postgres::Error| {
                format!("invalid setting: {}", describe_pg_error(&e))
            })?;
        config
            .user(self.user())
            .dbname(self.database())
            .application_name(self.application_name(None))
            .port(endpoint.port);
        if endpoint.is_socket() {
            config.host_path(&endpoint.host);
        } else {
            // With only a hostaddr, TLS checks the address (libpq does the same).
            let name = match (&endpoint.hostaddr, endpoint.host.is_empty()) {
                (Some(addr), true) => addr.as_str(),
                _ => endpoint.host.as_str(),
            };
            if !name.is_empty() {
                config.host(name);
            }
            if let Some(addr) = &endpoint.hostaddr {
                let addr = addr
                    .parse()
                    .map_err(|_| format!("could not parse network address \"{addr}\""))?;
                config.hostaddr(addr);
            }
        }
        if let Some(password) = password {
            config.password(password.expose_secret());
        }
        Ok(config)
    }

    /// One line: what failed and what to do.
    fn explain(
        &self,
        error: &tokio_postgres::Error,
        endpoint: &Endpoint,
        mode: SslMode,
        password_source: &str,
        had_password: bool,
    ) -> String {
        let text = describe_pg_error(error);
        if let Some(db) = error.as_db_error() {
            let code = db.code().code();
            let hba = db.message().contains("no pg_hba.conf entry")
                || db.message().contains("pg_hba.conf rejects");
            if code == "28000" && hba {
                if db.message().contains("no encryption") && mode != SslMode::Disable {
                    return format!("{text}; the server accepts only TLS connections here, but this connection was not encrypted");
                }
                if db.message().contains("no encryption") {
                    return format!("{text}; the server accepts only TLS connections here: drop sslmode=disable (the default, prefer, uses TLS when the server offers it) or set sslmode=verify-full");
                }
                return format!("{text}; the server's pg_hba.conf lets no such connection in: ask its administrator, or check user, database and sslmode");
            }
            if code == "28P01" {
                return format!("{text} (the password came from {password_source}): check it");
            }
            return match pooler_hint(&text) {
                Some(hint) => format!("{text}; {hint}"),
                None => text,
            };
        }
        let lower = text.to_ascii_lowercase();
        if lower.contains("password missing") && !had_password {
            return format!(
                "the server asks for a password and none was found ({password_source}): put it in the password file (PGPASSFILE, ~/.pgpass, mode 0600), PGPASSWORD or a [[database]] url_file"
            );
        }
        if lower.contains("notvalidforname") || lower.contains("not valid for name") {
            return format!(
                "{text}; the server's certificate is not valid for host {:?} ({}): connect with a host name the certificate lists (keep sslmode=verify-full), or use sslmode=verify-ca to check the CA but not the name",
                endpoint.host,
                self.tls().describe_check()
            );
        }
        if lower.contains("invalid peer certificate")
            || lower.contains("certificate") && lower.contains("unknownissuer")
        {
            return format!(
                "{text}; the server's certificate does not verify ({}): set sslrootcert to the CA that signed it (sslmode=require would encrypt without checking who answers — not recommended)",
                self.tls().describe_check()
            );
        }
        if lower.contains("server does not support tls") {
            return format!(
                "{text}; sslmode={} requires TLS and this server does not offer it: enable ssl on the server, or lower sslmode if the network is trusted",
                mode.as_str()
            );
        }
        if let Some(hint) = pooler_hint(&text) {
            return format!("{text}; {hint}");
        }
        format!(
            "{text}; check that the server is running and reachable at {} and that the URL, user and password are right",
            describe_endpoint(endpoint)
        )
    }
}

async fn connect_plain(
    mut config: tokio_postgres::Config,
) -> std::result::Result<tokio_postgres::Client, tokio_postgres::Error> {
    config.ssl_mode(tokio_postgres::config::SslMode::Disable);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    Ok(run_connection(client, connection))
}

/// Runs a connection on its own task (plain or TLS alike); returns its client.
fn run_connection<S, T>(
    client: tokio_postgres::Client,
    connection: tokio_postgres::Connection<S, T>,
) -> tokio_postgres::Client
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("PostgreSQL connection ended: {}", describe_pg_error(&e));
        }
    });
    client
}

fn describe_endpoint(endpoint: &Endpoint) -> String {
    match &endpoint.hostaddr {
        Some(addr) if endpoint.host.is_empty() => format!("{addr}:{}", endpoint.port),
        Some(addr) => format!("{} ({addr}):{}", endpoint.host, endpoint.port),
        None => format!("{}:{}", endpoint.host, endpoint.port),
    }
}

/// A hint when `message` looks like a connection pooler in transaction mode, which pg_dump
/// (one long transaction on one session) cannot work through.
pub fn pooler_hint(message: &str) -> Option<&'static str> {
    let lower = message.to_ascii_lowercase();
    let prepared = lower.contains("prepared statement")
        && (lower.contains("does not exist") || lower.contains("already exists"));
    let signs = [
        "unsupported startup parameter",
        "(enotsup)",
        "transaction pooling",
        "pool_mode",
    ];
    (prepared || signs.iter().any(|s| lower.contains(s))).then_some(
        "this looks like a connection pooler in transaction mode (PgBouncer, Supavisor on port 6543): pg_dump needs a session of its own — connect to the database's direct port (5432) or the pooler's session mode",
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooler_errors_get_the_session_mode_hint_and_others_do_not() {
        for said in [
            "pg_dump: error: query failed: ERROR:  prepared statement \"s0\" does not exist",
            "FATAL: unsupported startup parameter: extra_float_digits",
            "ERROR: (ENOTSUP) Supavisor in transaction mode",
        ] {
            assert!(pooler_hint(said).unwrap().contains("port (5432)"), "{said}");
        }
        for said in [
            "FATAL: password authentication failed for user \"backup\"",
            "pg_dump: error: connection to server failed: Connection refused",
            "pg_dump: error: connection to server at \"pgbouncer.internal\" failed: password authentication failed",
        ] {
            assert!(pooler_hint(said).is_none(), "{said}");
        }
    }

    #[tokio::test]
    async fn a_child_failing_through_a_pooler_says_so() {
        use crate::pipeline::Source as _;
        let mut source = crate::process::ChildSource::new(
            crate::process::ChildCommand::new("/bin/sh").arg("-c").arg(
                "echo 'pg_dump: error: query failed: ERROR:  prepared statement \"s1\" does not exist' >&2; exit 1",
            ),
            "pg_dump shop",
        );
        let mut stream = source.open().await.unwrap();
        let mut error = None;
        while let Some(item) = futures::StreamExt::next(&mut stream).await {
            if let Err(e) = item {
                error = Some(e.to_string());
            }
        }
        let error = error.expect("the failure reaches the stream");
        assert!(
            error.contains("connection pooler in transaction mode"),
            "{error}"
        );
    }
}
