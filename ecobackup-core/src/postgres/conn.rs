//! Connection settings that behave as libpq's: every connection string form, the `PG*`
//! environment, the service file, the password file and TLS, resolved once into a [`DbUrl`]
//! that ecobackup's own connections and the programs it starts (pg_dump, pg_restore, psql,
//! pg_basebackup) both use, so that the two halves of one command always reach the same server
//! as the same user.
//!
//! Resolution follows libpq (`conninfo_add_defaults`, `connectOptions2`): explicit settings win,
//! then the service file's (`service=` / `PGSERVICE`), then the `PG*` variables, then the
//! defaults (port 5432, the OS user, the user's name as database, `sslmode=prefer`, the local
//! socket directory). The library reads the environment only when given a [`PgEnv`] built by
//! [`PgEnv::from_process`]; [`DbUrl::parse`] uses none of it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::crypto::SecretString;
use crate::error::{Error, Result};
use crate::postgres::conninfo::{self, quote_value, KEYWORDS, OTHER_ENVIRONMENT};
pub use crate::postgres::env::PgEnv;
use crate::postgres::passfile::{self, Lookup, Wanted};
pub use crate::postgres::redact::redact_url;
use crate::postgres::service;
use crate::postgres::tls::{RootCerts, SslMode, TlsSettings};
use crate::process::ChildCommand;

pub use crate::postgres::connect::{connect, describe_pg_error};

/// The application name ecobackup's connections show in `pg_stat_activity`, unless the
/// connection string sets one.
pub const APPLICATION_NAME: &str = "ecobackup";

/// Where servers put their Unix socket, in the order we look for it when no host is given.
const SOCKET_DIRS: &[&str] = &["/var/run/postgresql", "/run/postgresql", "/tmp"];

/// Settings that reach tokio-postgres and the children unchanged.
const PASSED_THROUGH: &[&str] = &[
    "connect_timeout",
    "options",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
    "sslnegotiation",
    "client_encoding",
];

/// Settings read here and turned into the resolved fields.
const RESOLVED: &[&str] = &[
    "service",
    "user",
    "password",
    "passfile",
    "dbname",
    "host",
    "hostaddr",
    "port",
    "application_name",
    "fallback_application_name",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcompression",
    "gssencmode",
];

/// Every environment variable libpq reads for a connection: children lose the inherited ones and
/// get ours, so they cannot see settings we did not.
pub fn libpq_variables() -> impl Iterator<Item = &'static str> {
    KEYWORDS
        .iter()
        .filter_map(|(_, var)| *var)
        .chain(OTHER_ENVIRONMENT.iter().copied())
}

/// One server to try: a host name, IP address or socket directory, and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name, or socket directory when it starts with `/`; empty with only a `hostaddr`.
    pub host: String,
    /// `hostaddr`: the address to connect to without a name lookup (TLS still checks `host`).
    pub hostaddr: Option<String>,
    /// The port.
    pub port: u16,
}

impl Endpoint {
    /// Whether this is a Unix socket.
    pub fn is_socket(&self) -> bool {
        self.host.starts_with('/') && self.hostaddr.is_none()
    }

    fn password_host(&self) -> &str {
        if self.host.is_empty() {
            self.hostaddr.as_deref().unwrap_or_default()
        } else {
            &self.host
        }
    }
}

/// Where a password came from, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordSource {
    /// The connection string (`user:password@`, `password=`).
    ConnectionString,
    /// The service file's entry (`service=`, `PGSERVICE`).
    ServiceFile,
    /// `PGPASSWORD`.
    Environment,
    /// Given by the caller ([`DbUrl::with_password`]: a `url_file`, a secret store).
    Caller,
}

/// Resolved PostgreSQL connection settings: servers to try, user, database, password sources
/// and TLS. Shown only without the password ([`DbUrl::redacted`], `Debug`).
#[derive(Clone)]
pub struct DbUrl(Box<Resolved>);

#[derive(Clone)]
struct Resolved {
    endpoints: Vec<Endpoint>,
    user: String,
    dbname: String,
    password: Option<(SecretString, PasswordSource)>,
    passfile: Option<PathBuf>,
    tls: TlsSettings,
    application_name: Option<String>,
    passed_through: BTreeMap<String, String>,
    default_socket_dir: PathBuf,
}

impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn parse_error(text: &str, detail: impl Into<String>) -> Error {
    Error::Postgres {
        context: format!("reading the connection string {}", redact_url(text)),
        detail: detail.into(),
    }
}

impl DbUrl {
    /// Parses a `postgres://`/`postgresql://` URL or a `key=value` connection string with
    /// libpq's defaults but no `PG*` variables (see [`DbUrl::parse_with`]).
    pub fn parse(text: &str) -> Result<DbUrl> {
        DbUrl::parse_with(text, &PgEnv::without_variables())
    }

    /// Parses a connection string and resolves it as libpq would in the environment `env`.
    pub fn parse_with(text: &str, env: &PgEnv) -> Result<DbUrl> {
        let bad = |detail: String| parse_error(text, detail);
        let mut given: BTreeMap<String, String> = BTreeMap::new();
        for (keyword, value) in conninfo::parse(text).map_err(bad)? {
            given.insert(keyword, value);
        }
        given.retain(|_, v| !v.is_empty());
        // The service file fills what the string left unset, before the environment does.
        let mut explicit = given.clone();
        let service_name = explicit
            .get("service")
            .cloned()
            .or_else(|| env.var("PGSERVICE").map(str::to_owned));
        if let Some(name) = service_name {
            for (keyword, value) in service::lookup(&name, env).map_err(bad)? {
                explicit.entry(keyword).or_insert(value);
            }
        }
        let from_env = |keyword: &str| -> Option<String> {
            let var = KEYWORDS.iter().find(|(k, _)| *k == keyword)?.1?;
            env.var(var).map(str::to_owned)
        };
        let mut settings = explicit.clone();
        for (keyword, _) in KEYWORDS {
            if !settings.contains_key(*keyword) {
                if let Some(value) = from_env(keyword) {
                    settings.insert((*keyword).to_owned(), value);
                }
            }
        }
        for keyword in settings.keys() {
            if !RESOLVED.contains(&keyword.as_str()) && !PASSED_THROUGH.contains(&keyword.as_str())
            {
                let origin = if explicit.contains_key(keyword) {
                    "the connection string sets".to_owned()
                } else {
                    format!(
                        "the environment variable {} sets",
                        KEYWORDS
                            .iter()
                            .find(|(k, _)| k == keyword)
                            .and_then(|(_, v)| *v)
                            .unwrap_or("?")
                    )
                };
                return Err(bad(format!(
                    "{origin} {keyword}, which ecobackup does not support: remove it (the libpq options ecobackup follows are listed in the README)"
                )));
            }
        }
        if let Some(mode) = settings.get("gssencmode").filter(|m| *m == "require") {
            return Err(bad(format!(
                "gssencmode={mode}: ecobackup does not support GSSAPI encryption; use TLS (sslmode=verify-full)"
            )));
        }

        let user = settings
            .get("user")
            .cloned()
            .or_else(|| env.os_user.clone())
            .ok_or_else(|| {
                bad("no user given and the OS user name is unknown: set user= or PGUSER".to_owned())
            })?;
        let dbname = settings
            .get("dbname")
            .cloned()
            .unwrap_or_else(|| user.clone());
        let endpoints = endpoints(&settings).map_err(bad)?;
        let tls = tls_settings(&settings, env).map_err(bad)?;
        let password = if let Some(p) = given.get("password") {
            Some((p.clone().into(), PasswordSource::ConnectionString))
        } else if let Some(p) = explicit.get("password") {
            Some((p.clone().into(), PasswordSource::ServiceFile))
        } else {
            env.var("PGPASSWORD")
                .map(|p| (p.to_owned().into(), PasswordSource::Environment))
        };
        let passfile = settings
            .get("passfile")
            .map(PathBuf::from)
            .or_else(|| passfile::default_path(env.home.as_deref()));
        let passed_through = settings
            .iter()
            .filter(|(k, _)| PASSED_THROUGH.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let default_socket_dir = default_socket_dir(endpoints.first().map_or(5432, |e| e.port));
        let endpoints = endpoints
            .into_iter()
            .map(|mut e| {
                if e.host.is_empty() && e.hostaddr.is_none() {
                    e.host = default_socket_dir.display().to_string();
                }
                e
            })
            .collect();
        Ok(DbUrl(Box::new(Resolved {
            endpoints,
            user,
            dbname,
            password,
            passfile,
            tls,
            application_name: settings
                .get("application_name")
                .or_else(|| settings.get("fallback_application_name"))
                .cloned(),
            passed_through,
            default_socket_dir,
        })))
    }

    /// Whether the connection string itself carried a password (`user:password@` or
    /// `password=`): then it was visible wherever the string was.
    pub fn has_password(&self) -> bool {
        matches!(self.0.password, Some((_, PasswordSource::ConnectionString)))
    }

    /// Sets the password (read from a file or a secret store); it wins over every other source.
    pub fn with_password(mut self, password: Option<SecretString>) -> Self {
        if let Some(password) = password {
            self.0.password = Some((password, PasswordSource::Caller));
        }
        self
    }

    /// The database name.
    pub fn database(&self) -> String {
        self.0.dbname.clone()
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.0.user
    }

    /// The servers to try, in order.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.0.endpoints
    }

    /// The TLS settings.
    pub fn tls(&self) -> &TlsSettings {
        &self.0.tls
    }

    /// These settings with `endpoint` as the only server (see [`DbUrl::connect_pinned`]).
    pub(crate) fn pinned_to(&self, endpoint: &Endpoint) -> DbUrl {
        let mut pinned = (*self.0).clone();
        pinned.endpoints = vec![endpoint.clone()];
        pinned.passed_through.remove("load_balance_hosts");
        DbUrl(Box::new(pinned))
    }

    /// The same server and user, another database.
    pub fn with_database(&self, database: &str) -> DbUrl {
        DbUrl(Box::new(Resolved {
            dbname: database.to_owned(),
            ..(*self.0).clone()
        }))
    }

    /// The settings as a URL for messages, reports and manifests: never a password.
    /// `postgres://backup@db.internal:5432/shop?sslmode=verify-full`.
    pub fn redacted(&self) -> String {
        let hosts: Vec<String> = self
            .0
            .endpoints
            .iter()
            .map(|e| {
                let host = if e.host.contains(':') {
                    format!("[{}]", e.host)
                } else {
                    url_encode(&e.host)
                };
                format!("{host}:{}", e.port)
            })
            .collect();
        let mut query = Vec::new();
        let hostaddrs: Vec<&str> = self
            .0
            .endpoints
            .iter()
            .map(|e| e.hostaddr.as_deref().unwrap_or(""))
            .collect();
        if hostaddrs.iter().any(|a| !a.is_empty()) {
            query.push(format!("hostaddr={}", hostaddrs.join(",")));
        }
        if self.0.tls.mode != SslMode::Prefer {
            query.push(format!("sslmode={}", self.0.tls.mode.as_str()));
        }
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        format!(
            "postgres://{}@{}/{}{query}",
            url_encode(&self.0.user),
            hosts.join(","),
            url_encode(&self.0.dbname)
        )
    }

    /// The password for `endpoint` and where it came from: the caller's, the connection
    /// string's, `PGPASSWORD`, else the password file's matching line.
    pub(crate) fn password_for(&self, endpoint: &Endpoint) -> (Option<SecretString>, String) {
        if let Some((password, source)) = &self.0.password {
            let source = match source {
                PasswordSource::ConnectionString => "the connection string",
                PasswordSource::ServiceFile => "the service file",
                PasswordSource::Environment => "PGPASSWORD",
                PasswordSource::Caller => "the url_file / caller",
            };
            return (Some(password.clone()), source.to_owned());
        }
        let Some(path) = &self.0.passfile else {
            return (
                None,
                "tried: the connection string, PGPASSWORD; no home directory for ~/.pgpass"
                    .to_owned(),
            );
        };
        let port = endpoint.port.to_string();
        let wanted = Wanted {
            host: endpoint.password_host(),
            port: &port,
            database: &self.0.dbname,
            user: &self.0.user,
        };
        let tried = format!(
            "tried: the connection string, PGPASSWORD, the password file {}",
            path.display()
        );
        match passfile::lookup(path, &wanted, &self.0.default_socket_dir) {
            Lookup::Found(password) => (
                Some(password),
                format!("the password file {}", path.display()),
            ),
            Lookup::NoMatch => (
                None,
                format!(
                    "{tried} (no line matches {}:{}:{}:{})",
                    wanted.host, wanted.port, wanted.database, wanted.user
                ),
            ),
            Lookup::Missing => (None, format!("{tried} (it does not exist)")),
            Lookup::Ignored(why) => {
                tracing::warn!(file = %path.display(), "password file ignored: {why}");
                (None, format!("{tried} (ignored: {why})"))
            }
        }
    }

    /// Settings passed to tokio-postgres and children as they are (`connect_timeout`, …).
    pub(crate) fn passed_through(&self) -> &BTreeMap<String, String> {
        &self.0.passed_through
    }

    /// The application name: the connection string's, else `ecobackup`, with `program` after
    /// it for a child (`ecobackup/pg_dump`).
    pub(crate) fn application_name(&self, program: Option<&str>) -> String {
        match (&self.0.application_name, program) {
            (Some(name), _) => name.clone(),
            (None, Some(program)) => format!("{APPLICATION_NAME}/{program}"),
            (None, None) => APPLICATION_NAME.to_owned(),
        }
    }

    /// Gives a program these settings through its environment (`PGHOST`, `PGPORT`, `PGUSER`,
    /// `PGDATABASE`, `PGSSLMODE`, …, the password in `PGPASSWORD`) after removing every libpq
    /// variable it would have inherited, so it sees exactly what ecobackup's own connections
    /// use. For programs that take no `--dbname` (drill check commands, scripts).
    pub fn apply_env(&self, command: ChildCommand) -> ChildCommand {
        let program = command.name();
        let mut command = command;
        for name in libpq_variables() {
            command = command.env_remove(name);
        }
        let join = |f: &dyn Fn(&Endpoint) -> String| {
            self.0.endpoints.iter().map(f).collect::<Vec<_>>().join(",")
        };
        let mut vars: Vec<(&str, String)> = vec![
            ("PGHOST", join(&|e| e.host.clone())),
            ("PGPORT", join(&|e| e.port.to_string())),
            ("PGUSER", self.0.user.clone()),
            ("PGDATABASE", self.0.dbname.clone()),
            ("PGSSLMODE", self.0.tls.mode.as_str().to_owned()),
            ("PGAPPNAME", self.application_name(Some(&program))),
        ];
        if self.0.endpoints.iter().any(|e| e.hostaddr.is_some()) {
            vars.push((
                "PGHOSTADDR",
                join(&|e| e.hostaddr.clone().unwrap_or_default()),
            ));
        }
        match &self.0.tls.root_certs {
            Some(RootCerts::File(path)) => vars.push(("PGSSLROOTCERT", path.display().to_string())),
            // libpq before 16 reads `system` as a file name: give it the system's bundle.
            Some(RootCerts::System) => vars.push((
                "PGSSLROOTCERT",
                system_bundle().map_or_else(|| "system".to_owned(), |p| p.display().to_string()),
            )),
            None => {}
        }
        // We do not speak GSSAPI; libpq's default (prefer) would use it with a Kerberos ticket.
        vars.push(("PGGSSENCMODE", "disable".to_owned()));
        if let Some(cert) = &self.0.tls.client_cert {
            vars.push(("PGSSLCERT", cert.display().to_string()));
        }
        if let Some(key) = &self.0.tls.client_key {
            vars.push(("PGSSLKEY", key.display().to_string()));
        }
        if let Some(passfile) = &self.0.passfile {
            vars.push(("PGPASSFILE", passfile.display().to_string()));
        }
        for (keyword, value) in &self.0.passed_through {
            if let Some(var) = KEYWORDS
                .iter()
                .find(|(k, _)| k == keyword)
                .and_then(|(_, v)| *v)
            {
                vars.push((var, value.clone()));
            }
        }
        for (name, value) in vars {
            command = command.env(name, value.into());
        }
        // One server: its password, from wherever it came. Several: the password file does it
        // per host, as for us.
        let password = match self.0.endpoints.as_slice() {
            [only] => self.password_for(only).0,
            _ => self.0.password.as_ref().map(|(p, _)| p.clone()),
        };
        match password {
            Some(password) => command.env("PGPASSWORD", password),
            None => command,
        }
    }

    /// Points a client program (pg_dump, pg_restore, psql) at this database: the settings in
    /// its environment ([`DbUrl::apply_env`]) and `--dbname=dbname='…'`, so that a database
    /// name holding `=` or looking like a URL is taken as a name. Keepalive and timeout
    /// settings without an environment variable go into the same connection string.
    pub fn apply(&self, command: ChildCommand) -> ChildCommand {
        let mut conninfo = format!("dbname={}", quote_value(&self.0.dbname));
        for (keyword, value) in &self.0.passed_through {
            let has_var = KEYWORDS.iter().any(|(k, v)| k == keyword && v.is_some());
            if !has_var {
                conninfo.push_str(&format!(" {keyword}={}", quote_value(value)));
            }
        }
        self.apply_env(command).arg(format!("--dbname={conninfo}"))
    }

    /// An error about a query on this database: what PostgreSQL said, in one line.
    pub fn error(&self, doing: &str, e: tokio_postgres::Error) -> Error {
        Error::Postgres {
            context: format!("{doing} {}", self.redacted()),
            detail: describe_pg_error(&e),
        }
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
}

/// `host`, `hostaddr` and `port` lists, matched up as libpq does.
fn endpoints(settings: &BTreeMap<String, String>) -> std::result::Result<Vec<Endpoint>, String> {
    let split = |key: &str| -> Vec<String> {
        settings
            .get(key)
            .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
            .unwrap_or_default()
    };
    let hosts = split("host");
    let hostaddrs = split("hostaddr");
    let ports = split("port");
    let count = hosts.len().max(hostaddrs.len()).max(1);
    if !hosts.is_empty() && !hostaddrs.is_empty() && hosts.len() != hostaddrs.len() {
        return Err(format!(
            "could not match {} host names to {} hostaddr values",
            hosts.len(),
            hostaddrs.len()
        ));
    }
    if ports.len() > 1 && ports.len() != count {
        return Err(format!(
            "could not match {} port numbers to {count} hosts",
            ports.len()
        ));
    }
    (0..count)
        .map(|i| {
            let port_text = ports.get(i).or(ports.first()).map_or("", String::as_str);
            let port = if port_text.is_empty() {
                5432
            } else {
                port_text
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("invalid port number: \"{port_text}\""))?
            };
            let hostaddr = hostaddrs.get(i).filter(|a| !a.is_empty()).cloned();
            if let Some(addr) = &hostaddr {
                addr.parse::<std::net::IpAddr>()
                    .map_err(|_| format!("could not parse network address \"{addr}\""))?;
            }
            Ok(Endpoint {
                host: hosts.get(i).cloned().unwrap_or_default(),
                hostaddr,
                port,
            })
        })
        .collect()
}

/// The TLS settings with libpq's defaults from `~/.postgresql/`.
fn tls_settings(
    settings: &BTreeMap<String, String>,
    env: &PgEnv,
) -> std::result::Result<TlsSettings, String> {
    let dot_postgresql = env.home.as_ref().map(|h| h.join(".postgresql"));
    let existing = |name: &str| {
        dot_postgresql
            .as_ref()
            .map(|d| d.join(name))
            .filter(|p| p.exists())
    };
    let verify = matches!(
        settings.get("sslmode").map(String::as_str),
        Some("verify-ca" | "verify-full")
    );
    // As libpq: a root file that does not exist is ignored unless the mode verifies.
    let root_certs = match settings.get("sslrootcert").map(String::as_str) {
        Some("system") => Some(RootCerts::System),
        Some(path) if verify || Path::new(path).exists() => {
            Some(RootCerts::File(PathBuf::from(path)))
        }
        Some(_) => None,
        None => existing("root.crt").map(RootCerts::File),
    };
    let mode = match settings.get("sslmode") {
        Some(text) => SslMode::parse(text).ok_or_else(|| {
            format!("invalid sslmode value: \"{text}\" (expected disable, allow, prefer, require, verify-ca or verify-full)")
        })?,
        None if root_certs == Some(RootCerts::System) => SslMode::VerifyFull,
        None => SslMode::Prefer,
    };
    if root_certs == Some(RootCerts::System) && mode != SslMode::VerifyFull {
        return Err(format!(
            "weak sslmode \"{}\" may not be used with sslrootcert=system (use \"verify-full\")",
            mode.as_str()
        ));
    }
    // A client certificate file that does not exist means none (libpq).
    let client_cert = match settings.get("sslcert") {
        Some(path) => Some(PathBuf::from(path)).filter(|p| p.exists()),
        None => existing("postgresql.crt"),
    };
    let client_key = settings.get("sslkey").map(PathBuf::from).or_else(|| {
        client_cert.as_ref()?;
        dot_postgresql.as_ref().map(|d| d.join("postgresql.key"))
    });
    Ok(TlsSettings {
        mode,
        root_certs,
        client_cert,
        client_key,
    })
}

/// The system's CA bundle, where the usual distributions keep it.
fn system_bundle() -> Option<PathBuf> {
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// The socket directory used when no host is given: the first of the usual places holding this
/// port's socket, else the first that exists.
fn default_socket_dir(port: u16) -> PathBuf {
    let socket = format!(".s.PGSQL.{port}");
    SOCKET_DIRS
        .iter()
        .map(Path::new)
        .find(|dir| dir.join(&socket).exists())
        .or_else(|| SOCKET_DIRS.iter().map(Path::new).find(|d| d.is_dir()))
        .unwrap_or(Path::new("/tmp"))
        .to_owned()
}

/// Percent-encodes what a URL component cannot hold as it is.
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$'()*+;".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Quotes an identifier for SQL (`"my ""odd"" db"`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests;
