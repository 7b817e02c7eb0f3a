//! The password file (`~/.pgpass`, `PGPASSFILE`, `passfile=`), read as libpq reads it.
//!
//! Each line is `hostname:port:database:username:password`; `*` matches anything, `\` escapes `:`
//! and `\` (a `:` in a password must be escaped: libpq stops at the next one), lines starting with `#` are comments, and the first matching line wins. A socket
//! connection to the default socket directory matches `localhost`. The file is ignored (with a
//! warning) when it is not a regular file or when group or others may read it: libpq's rule,
//! so that a password readable by others is never used.

use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use crate::crypto::SecretString;

/// What looking in the password file found.
#[derive(Debug)]
pub enum Lookup {
    /// A line matched.
    Found(SecretString),
    /// The file was read; no line matched.
    NoMatch,
    /// There is no such file.
    Missing,
    /// The file was not used, and why (permissions, not a regular file, unreadable).
    Ignored(String),
}

/// The connection a password is wanted for.
pub struct Wanted<'a> {
    /// Host name, socket directory or address.
    pub host: &'a str,
    /// Port, as text.
    pub port: &'a str,
    /// Database name.
    pub database: &'a str,
    /// User name.
    pub user: &'a str,
}

/// Looks for the password of `wanted` in the file at `path`. `default_socket_dir` is the socket
/// directory that counts as `localhost`.
pub fn lookup(path: &Path, wanted: &Wanted<'_>, default_socket_dir: &Path) -> Lookup {
    // Open first, then check what was opened: no window between the check and the read.
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Missing,
        Err(e) => return Lookup::Ignored(format!("it cannot be read: {e}")),
    };
    let metadata = match file.metadata() {
        Ok(m) => m,
        Err(e) => return Lookup::Ignored(format!("it cannot be read: {e}")),
    };
    if !metadata.is_file() {
        return Lookup::Ignored("it is not a plain file".to_owned());
    }
    if metadata.mode() & 0o077 != 0 {
        return Lookup::Ignored(format!(
            "it has group or world access (mode {:04o}); permissions should be u=rw (0600) or less: chmod 0600 {}",
            metadata.mode() & 0o7777,
            path.display()
        ));
    }
    let mut text = String::new();
    if let Err(e) = file.read_to_string(&mut text) {
        return Lookup::Ignored(format!("it cannot be read: {e}"));
    }
    match find(&text, wanted, default_socket_dir) {
        Some(password) => Lookup::Found(password.into()),
        None => Lookup::NoMatch,
    }
}

/// The password of the first line of `text` matching `wanted`.
pub fn find(text: &str, wanted: &Wanted<'_>, default_socket_dir: &Path) -> Option<String> {
    let host = if wanted.host.is_empty()
        || (wanted.host.starts_with('/') && Path::new(wanted.host) == default_socket_dir)
    {
        "localhost"
    } else {
        wanted.host
    };
    let want = [host, wanted.port, wanted.database, wanted.user];
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = split_fields(line);
        if fields.len() < 5 {
            continue;
        }
        let matches = want
            .iter()
            .zip(&fields)
            .all(|(want, field)| field == "*" || field == want);
        if matches {
            // libpq ends the password at the next unescaped `:` too.
            return Some(fields[4].clone());
        }
    }
    None
}

/// Splits a line at unescaped `:`, removing the `\` escapes.
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("one field at least").push(next);
                }
            }
            ':' => fields.push(String::new()),
            c => fields.last_mut().expect("one field at least").push(c),
        }
    }
    fields
}

/// The password file libpq would read: `passfile=`, else `PGPASSFILE`, else `~/.pgpass`.
pub fn default_path(home: Option<&Path>) -> Option<PathBuf> {
    home.map(|home| home.join(".pgpass"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want<'a>(host: &'a str, port: &'a str, database: &'a str, user: &'a str) -> Wanted<'a> {
        Wanted {
            host,
            port,
            database,
            user,
        }
    }

    #[test]
    fn the_first_matching_line_wins_with_wildcards_and_escapes() {
        let text = "\
# comment line: a:b:c:d:e
db.internal:5432:shop:backup:first
*:*:shop:backup:second
*:*:*:backup:third
db\\:odd:5432:*:*:with\\:colon\\\\x
other:*:*:*:pass:unescaped
";
        let socket = Path::new("/var/run/postgresql");
        assert_eq!(
            find(text, &want("db.internal", "5432", "shop", "backup"), socket).as_deref(),
            Some("first")
        );
        assert_eq!(
            find(text, &want("db.internal", "6432", "shop", "backup"), socket).as_deref(),
            Some("second")
        );
        assert_eq!(
            find(text, &want("x", "1", "crm", "backup"), socket).as_deref(),
            Some("third")
        );
        assert_eq!(
            find(text, &want("db:odd", "5432", "crm", "app"), socket).as_deref(),
            Some("with:colon\\x")
        );
        assert_eq!(
            find(text, &want("other", "1", "d", "u"), socket).as_deref(),
            Some("pass")
        );
        assert_eq!(find(text, &want("x", "1", "crm", "app"), socket), None);
    }

    #[test]
    fn the_default_socket_directory_counts_as_localhost() {
        let text = "localhost:5432:*:postgres:pw\n";
        let socket = Path::new("/var/run/postgresql");
        for host in ["/var/run/postgresql", "localhost", ""] {
            assert_eq!(
                find(text, &want(host, "5432", "x", "postgres"), socket).as_deref(),
                Some("pw"),
                "{host:?}"
            );
        }
        assert_eq!(
            find(text, &want("/tmp", "5432", "x", "postgres"), socket),
            None
        );
    }

    #[test]
    fn a_file_others_can_read_is_ignored() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(&path, "*:*:*:*:secret\n").unwrap();
        let wanted = want("h", "5432", "d", "u");
        let socket = Path::new("/tmp");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        match lookup(&path, &wanted, socket) {
            Lookup::Ignored(why) => assert!(why.contains("0644"), "{why}"),
            other => panic!("{other:?}"),
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(lookup(&path, &wanted, socket), Lookup::Found(_)));
        assert!(matches!(
            lookup(&dir.path().join("absent"), &wanted, socket),
            Lookup::Missing
        ));
        assert!(matches!(
            lookup(dir.path(), &wanted, socket),
            Lookup::Ignored(_)
        ));
    }
}
