//! The connection service file (`pg_service.conf`), read as libpq reads it.
//!
//! `service=name` (or `PGSERVICE`) names a section; its `keyword=value` lines fill in the
//! settings the connection string left unset. The user's file (`PGSERVICEFILE`, else
//! `~/.pg_service.conf`) is searched first, then the system's (`PGSYSCONFDIR/pg_service.conf`,
//! else `/etc/postgresql-common/pg_service.conf` as on Debian, then `/etc/pg_service.conf`).

use std::path::PathBuf;

use crate::postgres::conn::PgEnv;
use crate::postgres::conninfo::{Setting, KEYWORDS};

/// The settings of service `name`, or why there are none.
pub fn lookup(name: &str, env: &PgEnv) -> Result<Vec<Setting>, String> {
    let mut searched = Vec::new();
    for path in service_files(env) {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                searched.push(path.display().to_string());
                continue;
            }
            Err(e) => {
                return Err(format!(
                    "cannot read the service file {}: {e}",
                    path.display()
                ))
            }
        };
        searched.push(path.display().to_string());
        if let Some(settings) =
            section(&text, name).map_err(|e| format!("service file {}: {e}", path.display()))?
        {
            return Ok(settings);
        }
    }
    Err(format!(
        "definition of service \"{name}\" not found (searched {})",
        if searched.is_empty() {
            "no file: set PGSERVICEFILE".to_owned()
        } else {
            searched.join(", ")
        }
    ))
}

fn service_files(env: &PgEnv) -> Vec<PathBuf> {
    let mut files = Vec::new();
    match env.var("PGSERVICEFILE") {
        Some(file) => files.push(PathBuf::from(file)),
        None => files.extend(env.home_dir().map(|h| h.join(".pg_service.conf"))),
    }
    match env.var("PGSYSCONFDIR") {
        Some(dir) => files.push(PathBuf::from(dir).join("pg_service.conf")),
        None => {
            files.push(PathBuf::from("/etc/postgresql-common/pg_service.conf"));
            files.push(PathBuf::from("/etc/pg_service.conf"));
        }
    }
    files
}

/// The `keyword=value` lines of section `[name]` in `text`, if there is one.
pub fn section(text: &str, name: &str) -> Result<Option<Vec<Setting>>, String> {
    let mut in_section = false;
    let mut found = None;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            if in_section {
                break;
            }
            let header = header
                .strip_suffix(']')
                .ok_or_else(|| format!("syntax error in line {}", number + 1))?;
            in_section = header == name;
            if in_section {
                found = Some(Vec::new());
            }
            continue;
        }
        if !in_section {
            continue;
        }
        let (keyword, value) = line
            .split_once('=')
            .ok_or_else(|| format!("syntax error in line {}", number + 1))?;
        let keyword = keyword.trim();
        if keyword == "service" {
            return Err(format!(
                "nested service specifications not supported (line {})",
                number + 1
            ));
        }
        if !KEYWORDS.iter().any(|(k, _)| *k == keyword) {
            return Err(format!(
                "invalid connection option \"{keyword}\" in line {}",
                number + 1
            ));
        }
        if let Some(settings) = found.as_mut() {
            let settings: &mut Vec<Setting> = settings;
            settings.push((keyword.to_owned(), value.trim().to_owned()));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_gives_its_settings() {
        let text = "\
# comment
[other]
host=elsewhere

[shop]
host = db.internal
port=6432
dbname=ecommus_prod
[after]
host=no
";
        let settings = section(text, "shop").unwrap().unwrap();
        assert_eq!(
            settings,
            [
                ("host".to_owned(), "db.internal".to_owned()),
                ("port".to_owned(), "6432".to_owned()),
                ("dbname".to_owned(), "ecommus_prod".to_owned()),
            ]
        );
        assert!(section(text, "absent").unwrap().is_none());
        assert!(section("[s]\nnonsense=1\n", "s")
            .unwrap_err()
            .contains("invalid connection option"));
        assert!(section("[s]\nservice=t\n", "s")
            .unwrap_err()
            .contains("nested"));
    }

    #[test]
    fn the_user_file_is_searched_first_and_a_missing_service_says_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("user.conf");
        let sys = dir.path().join("sys");
        std::fs::create_dir(&sys).unwrap();
        std::fs::write(&user, "[a]\nport=1\n").unwrap();
        std::fs::write(sys.join("pg_service.conf"), "[a]\nport=2\n[b]\nport=3\n").unwrap();
        let env = PgEnv::default()
            .with_var("PGSERVICEFILE", user.display().to_string())
            .with_var("PGSYSCONFDIR", sys.display().to_string());
        assert_eq!(lookup("a", &env).unwrap()[0].1, "1");
        assert_eq!(lookup("b", &env).unwrap()[0].1, "3");
        let err = lookup("c", &env).unwrap_err();
        assert!(
            err.contains("\"c\" not found") && err.contains("user.conf"),
            "{err}"
        );
    }
}
