//! Finding PostgreSQL programs whose major version matches the server's.
//!
//! pg_dump refuses to dump a server newer than itself, and a pg_dump much newer than the
//! server writes archives an old pg_restore cannot read: ecobackup uses the programs of the
//! server's own major version. They are looked for in an explicit directory (`--pg-bin`), then
//! in `/usr/lib/postgresql/<major>/bin` (Debian, Ubuntu), `/usr/pgsql-<major>/bin` (RHEL), then
//! on `PATH`, where a program is used only if `--version` reports the right major version.
//!
//! Asking a program its version starts it: these functions are `async` and run it with
//! `tokio::process`, so they never hold up the other tasks of a runtime.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use crate::error::{Error, Result};

/// The directories searched for the programs of PostgreSQL `major`, most specific first.
fn candidate_dirs(major: u32, explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(dir) = explicit {
        return vec![dir.to_owned()];
    }
    let mut dirs = vec![
        PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")),
        PathBuf::from(format!("/usr/pgsql-{major}/bin")),
        PathBuf::from(format!("/opt/homebrew/opt/postgresql@{major}/bin")),
        PathBuf::from(format!("/usr/local/opt/postgresql@{major}/bin")),
    ];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs
}

/// The major version a program reports with `--version` (`pg_dump (PostgreSQL) 15.18` → 15).
pub async fn program_major_version(program: &Path) -> Option<u32> {
    let output = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.split_whitespace().last()?;
    version
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The path of `program` for PostgreSQL `major`, or [`Error::BinaryNotFound`] naming where we
/// looked. With `explicit` (`--pg-bin`), only that directory is searched.
pub async fn find_program(program: &str, major: u32, explicit: Option<&Path>) -> Result<PathBuf> {
    let dirs = candidate_dirs(major, explicit);
    for dir in &dirs {
        let candidate = dir.join(program);
        if candidate.is_file() && program_major_version(&candidate).await == Some(major) {
            return Ok(candidate);
        }
    }
    let looked_in = if explicit.is_some() {
        dirs[0].display().to_string()
    } else {
        format!("/usr/lib/postgresql/{major}/bin, /usr/pgsql-{major}/bin and PATH")
    };
    Err(Error::BinaryNotFound {
        program: program.to_owned(),
        major,
        looked_in,
    })
}

/// The server binaries (`initdb`, `pg_ctl`) installed here, newest major version first: for
/// throwaway clusters (demo, drills, tests). `explicit` (`--pg-bin`) wins.
pub async fn installed_server_dirs(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(dir) = explicit {
        return vec![dir.to_owned()];
    }
    let mut found: Vec<(u32, PathBuf)> = Vec::new();
    for root in ["/usr/lib/postgresql", "/usr"] {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let major = name.strip_prefix("pgsql-").unwrap_or(&name);
            let Ok(major) = major.parse::<u32>() else {
                continue;
            };
            let bin = entry.path().join("bin");
            if bin.join("initdb").is_file() && bin.join("pg_ctl").is_file() {
                found.push((major, bin));
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if initdb.is_file() && dir.join("pg_ctl").is_file() {
                if let Some(major) = program_major_version(&initdb).await {
                    found.push((major, dir));
                }
            }
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found.dedup_by(|a, b| a.1 == b.1);
    found.into_iter().map(|(_, dir)| dir).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_program_names_the_version_and_the_fix() {
        let err = find_program("pg_dump", 7, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("pg_dump for PostgreSQL 7 not found"), "{err}");
        assert!(err.contains("postgresql-client-7"), "{err}");
        let err = find_program("pg_dump", 15, Some(Path::new("/nonexistent")))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent"), "{err}");
    }

    /// `--version` runs as a child the runtime waits for, not on its thread: a program that
    /// answers only once another task of a single-threaded runtime has run still answers.
    #[tokio::test(flavor = "current_thread")]
    async fn asking_a_version_leaves_the_runtime_free() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let go = dir.path().join("go");
        let program = dir.path().join("pg_dump");
        std::fs::write(
            &program,
            format!(
                "#!/bin/sh\nfor i in $(seq 300); do [ -e '{go}' ] && break; sleep 0.1; done\n\
                 [ -e '{go}' ] && echo 'pg_dump (PostgreSQL) 15.4'\n",
                go = go.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (found, ()) = tokio::join!(find_program("pg_dump", 15, Some(dir.path())), async {
            std::fs::write(&go, b"").unwrap();
        });
        assert_eq!(found.unwrap(), program);
    }
}
