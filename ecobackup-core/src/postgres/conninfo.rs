//! libpq connection strings, parsed exactly as libpq parses them: the URI form
//! (`postgresql://user@host:5432/db?sslmode=verify-full`) and the key/value form
//! (`host=db port=5432 dbname=shop`).
//!
//! The result is the list of `keyword = value` settings in the order given (a later one wins, as
//! in libpq), with keywords checked against libpq's. What the settings mean (defaults, the
//! environment, password files, TLS) is [`DbUrl`](super::DbUrl)'s business.
//!
//! tokio-postgres parses both forms too, but it rejects libpq keywords it does not implement
//! (`sslrootcert`, `sslcert`, `passfile`, `service`, `sslmode=verify-full`) and its URI parser
//! takes user credentials up to the first `@` anywhere in the string, where libpq stops at the
//! first `/`. Connection strings are what users copy from libpq's documentation and their cloud
//! console, so we follow libpq (src/interfaces/libpq/fe-connect.c, `conninfo_uri_parse_options`
//! and `conninfo_parse`) and hand tokio-postgres the parsed values. A differential test checks that
//! both agree wherever tokio-postgres accepts a string.

/// The libpq connection keywords (PostgreSQL 18), with the environment variable that supplies
/// each one's default. [`DbUrl`](super::DbUrl) supports a subset; the others are recognised so
/// that the error can say "not supported" rather than "unknown".
pub const KEYWORDS: &[(&str, Option<&str>)] = &[
    ("service", Some("PGSERVICE")),
    ("user", Some("PGUSER")),
    ("password", Some("PGPASSWORD")),
    ("passfile", Some("PGPASSFILE")),
    ("require_auth", Some("PGREQUIREAUTH")),
    ("channel_binding", Some("PGCHANNELBINDING")),
    ("connect_timeout", Some("PGCONNECT_TIMEOUT")),
    ("dbname", Some("PGDATABASE")),
    ("host", Some("PGHOST")),
    ("hostaddr", Some("PGHOSTADDR")),
    ("port", Some("PGPORT")),
    ("client_encoding", Some("PGCLIENTENCODING")),
    ("options", Some("PGOPTIONS")),
    ("application_name", Some("PGAPPNAME")),
    ("fallback_application_name", None),
    ("keepalives", None),
    ("keepalives_idle", None),
    ("keepalives_interval", None),
    ("keepalives_count", None),
    ("tcp_user_timeout", None),
    ("sslmode", Some("PGSSLMODE")),
    ("sslnegotiation", Some("PGSSLNEGOTIATION")),
    ("sslcompression", Some("PGSSLCOMPRESSION")),
    ("sslcert", Some("PGSSLCERT")),
    ("sslkey", Some("PGSSLKEY")),
    ("sslcertmode", Some("PGSSLCERTMODE")),
    ("sslpassword", None),
    ("sslkeylogfile", Some("PGSSLKEYLOGFILE")),
    ("sslrootcert", Some("PGSSLROOTCERT")),
    ("sslcrl", Some("PGSSLCRL")),
    ("sslcrldir", Some("PGSSLCRLDIR")),
    ("sslsni", Some("PGSSLSNI")),
    ("requirepeer", Some("PGREQUIREPEER")),
    ("ssl_min_protocol_version", Some("PGSSLMINPROTOCOLVERSION")),
    ("ssl_max_protocol_version", Some("PGSSLMAXPROTOCOLVERSION")),
    ("min_protocol_version", Some("PGMINPROTOCOLVERSION")),
    ("max_protocol_version", Some("PGMAXPROTOCOLVERSION")),
    ("gssencmode", Some("PGGSSENCMODE")),
    ("krbsrvname", Some("PGKRBSRVNAME")),
    ("gsslib", Some("PGGSSLIB")),
    ("gssdelegation", Some("PGGSSDELEGATION")),
    ("replication", None),
    ("target_session_attrs", Some("PGTARGETSESSIONATTRS")),
    ("load_balance_hosts", Some("PGLOADBALANCEHOSTS")),
    ("scram_client_key", None),
    ("scram_server_key", None),
    ("oauth_issuer", None),
    ("oauth_client_id", None),
    ("oauth_client_secret", None),
    ("oauth_scope", None),
];

/// The environment variables libpq reads for connection settings, beyond [`KEYWORDS`]' own:
/// where the service file and system configuration live.
pub const OTHER_ENVIRONMENT: &[&str] = &["PGSERVICEFILE", "PGSYSCONFDIR", "PGREQUIRESSL"];

/// One parsed setting.
pub type Setting = (String, String);

/// Parses a connection string in either of libpq's forms. Errors are libpq's messages, one line,
/// never quoting a password.
pub fn parse(text: &str) -> Result<Vec<Setting>, String> {
    let text = text.trim();
    let settings = match uri_body(text) {
        Some(body) => parse_uri(body)?,
        None => parse_key_values(text)?,
    };
    let mut out = Vec::with_capacity(settings.len());
    for (keyword, value) in settings {
        let (keyword, value) = legacy_keyword(keyword, value);
        if !KEYWORDS.iter().any(|(k, _)| *k == keyword) {
            return Err(format!("invalid connection option \"{keyword}\""));
        }
        out.push((keyword, value));
    }
    Ok(out)
}

fn uri_body(text: &str) -> Option<&str> {
    text.strip_prefix("postgresql://")
        .or_else(|| text.strip_prefix("postgres://"))
}

/// `requiressl=1` is `sslmode=require` (libpq's backward compatibility).
fn legacy_keyword(keyword: String, value: String) -> (String, String) {
    if keyword == "requiressl" {
        let mode = if value.starts_with('1') {
            "require"
        } else {
            "prefer"
        };
        return ("sslmode".to_owned(), mode.to_owned());
    }
    (keyword, value)
}

/// `scheme://[user[:password]@][netloc][:port][,...][/dbname][?param1=value1&...]`.
fn parse_uri(body: &str) -> Result<Vec<Setting>, String> {
    let mut settings = Vec::new();
    let bytes = body.as_bytes();
    // Credentials: an `@` before the first `/` (libpq does not stop at `?`).
    let mut p = 0;
    let credentials_end = bytes.iter().position(|&b| b == b'@' || b == b'/');
    if let Some(at) = credentials_end.filter(|&i| bytes[i] == b'@') {
        let credentials = &body[..at];
        let (user, password) = match credentials.find(':') {
            Some(colon) => (&credentials[..colon], Some(&credentials[colon + 1..])),
            None => (credentials, None),
        };
        if !user.is_empty() {
            settings.push(("user".to_owned(), decode(user)?));
        }
        if let Some(password) = password.filter(|p| !p.is_empty()) {
            settings.push(("password".to_owned(), decode(password)?));
        }
        p = at + 1;
    }

    // One or more netloc[:port], separated by commas.
    let mut hosts = String::new();
    let mut ports = String::new();
    let mut terminator;
    loop {
        if bytes.get(p) == Some(&b'[') {
            let start = p + 1;
            let close = body[start..].find(']').map(|i| start + i).ok_or(
                "end of string reached when looking for matching \"]\" in IPv6 host address in URI",
            )?;
            if close == start {
                return Err("IPv6 host address may not be empty in URI".to_owned());
            }
            hosts.push_str(&body[start..close]);
            p = close + 1;
            if let Some(&c) = bytes.get(p) {
                if !matches!(c, b':' | b'/' | b'?' | b',') {
                    return Err(format!(
                        "unexpected character \"{}\" at position {} in URI (expected \":\" or \"/\")",
                        c as char,
                        p + 1
                    ));
                }
            }
        } else {
            let start = p;
            while p < bytes.len() && !matches!(bytes[p], b':' | b'/' | b'?' | b',') {
                p += 1;
            }
            hosts.push_str(&body[start..p]);
        }
        terminator = bytes.get(p).copied();
        if terminator == Some(b':') {
            let start = p + 1;
            p = start;
            while p < bytes.len() && !matches!(bytes[p], b'/' | b'?' | b',') {
                p += 1;
            }
            ports.push_str(&body[start..p]);
            terminator = bytes.get(p).copied();
        }
        if terminator != Some(b',') {
            break;
        }
        p += 1;
        hosts.push(',');
        ports.push(',');
    }
    if !hosts.is_empty() {
        settings.push(("host".to_owned(), decode(&hosts)?));
    }
    if !ports.is_empty() {
        settings.push(("port".to_owned(), decode(&ports)?));
    }

    // /dbname
    if terminator == Some(b'/') {
        let start = p + 1;
        let end = body[start..].find('?').map_or(body.len(), |i| start + i);
        let dbname = &body[start..end];
        if !dbname.is_empty() {
            settings.push(("dbname".to_owned(), decode(dbname)?));
        }
        p = end;
        terminator = bytes.get(p).copied();
    }

    // ?key=value&...
    if terminator == Some(b'?') {
        for param in body[p + 1..].split('&') {
            let (keyword, value) = match param.split_once('=') {
                Some((_, value)) if value.contains('=') => {
                    return Err(format!(
                        "extra key/value separator \"=\" in URI query parameter: \"{}\"",
                        param.split('=').next().unwrap_or_default()
                    ))
                }
                Some(kv) => kv,
                None => {
                    return Err(
                        "missing key/value separator \"=\" in a URI query parameter".to_owned()
                    )
                }
            };
            let keyword = decode(keyword)?;
            let value = decode(value)?;
            // JDBC's `ssl=true`.
            if keyword == "ssl" && value == "true" {
                settings.push(("sslmode".to_owned(), "require".to_owned()));
                continue;
            }
            if !KEYWORDS.iter().any(|(k, _)| *k == keyword) && keyword != "requiressl" {
                return Err(format!("invalid URI query parameter: \"{keyword}\""));
            }
            settings.push((keyword, value));
        }
    }
    Ok(settings)
}

/// libpq's `conninfo_uri_decode`: `%XX` sequences; a bad sequence or `%00` is an error.
fn decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
        match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (Some(hi), Some(lo)) => {
                let byte = (hi * 16 + lo) as u8;
                if byte == 0 {
                    return Err(
                        "forbidden value %00 in a percent-encoded part of the URI".to_owned()
                    );
                }
                out.push(byte);
                i += 3;
            }
            // The part is not quoted: it may be the password.
            _ => {
                return Err(
                    "invalid percent-encoded token in the URI (write % as %25; a password with % @ / ? & needs percent-encoding)".to_owned(),
                )
            }
        }
    }
    String::from_utf8(out).map_err(|_| "a percent-encoded value is not UTF-8".to_owned())
}

/// `keyword = value` pairs separated by whitespace; values may be single-quoted, `\` escapes the
/// next character.
fn parse_key_values(text: &str) -> Result<Vec<Setting>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut settings = Vec::new();
    let mut i = 0;
    let skip_spaces = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_spaces(&mut i);
        if i >= chars.len() {
            break;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '=' {
            i += 1;
        }
        let keyword: String = chars[start..i].iter().collect();
        skip_spaces(&mut i);
        if chars.get(i) != Some(&'=') {
            return Err(format!(
                "missing \"=\" after \"{}\" in connection info string",
                super::conn::redact_url(&keyword)
            ));
        }
        i += 1;
        skip_spaces(&mut i);
        let mut value = String::new();
        if chars.get(i) == Some(&'\'') {
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(
                            "unterminated quoted string in connection info string".to_owned()
                        )
                    }
                    Some('\\') => {
                        if let Some(&c) = chars.get(i + 1) {
                            value.push(c);
                        }
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while let Some(&c) = chars.get(i) {
                if c.is_whitespace() {
                    break;
                }
                if c == '\\' {
                    i += 1;
                    if let Some(&escaped) = chars.get(i) {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
                i += 1;
            }
        }
        settings.push((keyword, value));
    }
    Ok(settings)
}

/// Quotes a value for a key/value connection string (`'it\'s'`).
pub fn quote_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(settings: &'a [Setting], key: &str) -> Option<&'a str> {
        settings
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn every_uri_form_of_the_libpq_documentation() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("postgresql://", &[]),
            ("postgresql://localhost", &[("host", "localhost")]),
            (
                "postgresql://localhost:5433",
                &[("host", "localhost"), ("port", "5433")],
            ),
            (
                "postgresql://localhost/mydb",
                &[("host", "localhost"), ("dbname", "mydb")],
            ),
            (
                "postgresql://user@localhost",
                &[("user", "user"), ("host", "localhost")],
            ),
            (
                "postgresql://user:secret@localhost",
                &[("user", "user"), ("password", "secret"), ("host", "localhost")],
            ),
            (
                "postgresql://other@localhost/otherdb?connect_timeout=10&application_name=myapp",
                &[
                    ("user", "other"),
                    ("host", "localhost"),
                    ("dbname", "otherdb"),
                    ("connect_timeout", "10"),
                    ("application_name", "myapp"),
                ],
            ),
            (
                "postgresql://host1:123,host2:456/somedb?target_session_attrs=any&application_name=myapp",
                &[
                    ("host", "host1,host2"),
                    ("port", "123,456"),
                    ("dbname", "somedb"),
                    ("target_session_attrs", "any"),
                ],
            ),
            (
                "postgresql:///mydb?host=localhost&port=5433",
                &[("dbname", "mydb"), ("host", "localhost"), ("port", "5433")],
            ),
            (
                "postgresql://[2001:db8::1234]/database",
                &[("host", "2001:db8::1234"), ("dbname", "database")],
            ),
            (
                "postgresql://[::1]:5433,db2/x",
                &[("host", "::1,db2"), ("port", "5433,")],
            ),
            (
                "postgresql:///dbname?host=/var/lib/postgresql",
                &[("dbname", "dbname"), ("host", "/var/lib/postgresql")],
            ),
            (
                "postgresql://%2Fvar%2Flib%2Fpostgresql/dbname",
                &[("host", "/var/lib/postgresql"), ("dbname", "dbname")],
            ),
            // The form of the issue: a user and a socket directory in the query.
            (
                "postgresql://postgres@/shop?host=/var/run/postgresql&port=5432",
                &[
                    ("user", "postgres"),
                    ("dbname", "shop"),
                    ("host", "/var/run/postgresql"),
                    ("port", "5432"),
                ],
            ),
            (
                "postgres://u:p%40ss@h/db?sslmode=verify-full&sslrootcert=/etc/ca.pem",
                &[
                    ("password", "p@ss"),
                    ("sslmode", "verify-full"),
                    ("sslrootcert", "/etc/ca.pem"),
                ],
            ),
            ("postgres://h/db?ssl=true", &[("sslmode", "require")]),
            ("postgres://h/db?requiressl=1", &[("sslmode", "require")]),
            ("postgres://h/my%20db", &[("dbname", "my db")]),
        ];
        for (text, expected) in cases {
            let settings = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            for (key, value) in *expected {
                assert_eq!(get(&settings, key), Some(*value), "{text}: {key}");
            }
        }
        assert!(parse("postgresql://").unwrap().is_empty());
    }

    #[test]
    fn key_value_strings_as_libpq_reads_them() {
        let settings =
            parse("host=db port=5432 dbname=shop user=backup password='a b\\'c' sslmode = require")
                .unwrap();
        assert_eq!(get(&settings, "host"), Some("db"));
        assert_eq!(get(&settings, "port"), Some("5432"));
        assert_eq!(get(&settings, "dbname"), Some("shop"));
        assert_eq!(get(&settings, "user"), Some("backup"));
        assert_eq!(get(&settings, "password"), Some("a b'c"));
        assert_eq!(get(&settings, "sslmode"), Some("require"));
        assert_eq!(get(&parse("dbname=a\\ b").unwrap(), "dbname"), Some("a b"));
        assert_eq!(
            get(&parse("dbname=x dbname=y").unwrap(), "dbname"),
            Some("y")
        );
        assert!(parse("").unwrap().is_empty());
        assert!(parse("   ").unwrap().is_empty());
    }

    #[test]
    fn bad_strings_get_libpq_messages_without_secrets() {
        for (text, why) in [
            (
                "host=db nonsense=1",
                "invalid connection option \"nonsense\"",
            ),
            ("host", "missing \"=\" after \"host\""),
            ("password='hunter2", "unterminated quoted string"),
            ("postgres://h/db?nonsense=1", "invalid URI query parameter"),
            ("postgres://h/db?sslmode", "missing key/value separator"),
            ("postgres://h/db?a=b=c", "extra key/value separator"),
            ("postgres://[::1/db", "matching \"]\""),
            ("postgres://[]/db", "may not be empty"),
            ("postgres://[::1]x/db", "unexpected character \"x\""),
            (
                "postgres://u:hunter2@h/d%zz",
                "invalid percent-encoded token",
            ),
            ("postgres://u:hunter2@h/d%00", "forbidden value %00"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn quoted_values_read_back() {
        for value in ["plain", "a b", "it's", "back\\slash", "", "=;'\\'"] {
            let text = format!("dbname={}", quote_value(value));
            assert_eq!(get(&parse(&text).unwrap(), "dbname"), Some(value), "{text}");
        }
    }

    /// Wherever tokio-postgres accepts a string, it reads the same user, database, hosts and
    /// ports from it as we do.
    #[test]
    fn we_agree_with_tokio_postgres_where_it_parses() {
        for text in [
            "postgresql://localhost",
            "postgresql://user@localhost:5433/mydb",
            "postgresql://u:pw@host1:123,host2:456/somedb?application_name=myapp",
            "postgresql:///mydb?host=localhost&port=5433&user=me",
            "postgresql://%2Fvar%2Flib%2Fpostgresql/dbname",
            "postgresql://[2001:db8::1234]:99/database",
            "host=db port=5432 dbname=shop user=backup",
            "host=/tmp,db port=1,2 dbname='my db' user=x\\ y",
        ] {
            let ours = parse(text).unwrap();
            let theirs: tokio_postgres::Config = text.parse().unwrap();
            assert_eq!(get(&ours, "user"), theirs.get_user(), "{text}");
            assert_eq!(get(&ours, "dbname"), theirs.get_dbname(), "{text}");
            let hosts: Vec<String> = theirs
                .get_hosts()
                .iter()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(name) => name.clone(),
                    tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .collect();
            let our_hosts: Vec<String> = get(&ours, "host")
                .map(|h| h.split(',').map(str::to_owned).collect())
                .unwrap_or_default();
            assert_eq!(our_hosts, hosts, "{text}");
            let our_ports: Vec<u16> = get(&ours, "port")
                .map(|p| {
                    p.split(',')
                        .map(|p| {
                            if p.is_empty() {
                                5432
                            } else {
                                p.parse().unwrap()
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            if !our_ports.is_empty() {
                assert_eq!(our_ports, theirs.get_ports(), "{text}");
            }
        }
    }
}
