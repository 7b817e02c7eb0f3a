//! The process environment as libpq reads it, captured once: the library reads no environment
//! variable unless the caller builds a [`PgEnv`] with [`PgEnv::from_process`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::postgres::conn::libpq_variables;

/// The process environment as libpq sees it: the `PG*` variables, the home directory (for
/// `~/.pgpass`, `~/.pg_service.conf` and `~/.postgresql/`) and the OS user name. `Debug` shows
/// `PGPASSWORD` as `<redacted>`.
#[derive(Clone, Default)]
pub struct PgEnv {
    pub(crate) vars: BTreeMap<String, String>,
    pub(crate) home: Option<PathBuf>,
    pub(crate) os_user: Option<String>,
}

impl std::fmt::Debug for PgEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let vars: BTreeMap<&str, &str> = self
            .vars
            .iter()
            .map(|(k, v)| {
                let shown = if k == "PGPASSWORD" { "<redacted>" } else { v };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("PgEnv")
            .field("vars", &vars)
            .field("home", &self.home)
            .field("os_user", &self.os_user)
            .finish()
    }
}

impl PgEnv {
    /// No `PG*` variables; the home directory and user name of the effective user from the
    /// password database (what libpq falls back to).
    pub fn without_variables() -> PgEnv {
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten();
        PgEnv {
            vars: BTreeMap::new(),
            home: user.as_ref().map(|u| u.dir.clone()),
            os_user: user.map(|u| u.name),
        }
    }

    /// The `PG*` variables of this process, `HOME`, and the effective user's name.
    pub fn from_process() -> PgEnv {
        let mut env = PgEnv::without_variables();
        for name in libpq_variables() {
            if let Ok(value) = std::env::var(name) {
                env.vars.insert(name.to_owned(), value);
            }
        }
        if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            env.home = Some(PathBuf::from(home));
        }
        env
    }

    /// The same, with `name` set to `value` (for tests and embedders).
    pub fn with_var(mut self, name: &str, value: impl Into<String>) -> PgEnv {
        self.vars.insert(name.to_owned(), value.into());
        self
    }

    /// The same, with another home directory.
    pub fn with_home(mut self, home: impl Into<PathBuf>) -> PgEnv {
        self.home = Some(home.into());
        self
    }

    /// The home directory (`~/.pgpass`, `~/.postgresql/`).
    pub(crate) fn home_dir(&self) -> Option<&Path> {
        self.home.as_deref()
    }

    /// A variable's value; an empty one counts as unset.
    pub(crate) fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}
