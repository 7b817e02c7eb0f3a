//! Loading `ecobackup.toml` and refusing settings that parse but cannot work.

use std::path::{Path, PathBuf};

use super::{Config, FilesConfig};
use crate::error::{Error, Result};

impl Config {
    /// Loads and checks the file at `path`, or the empty configuration when no file is given.
    /// Relative paths in it are taken from the file's directory. No environment variable is
    /// read: [`Config::from_env`] does that, on request.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|e| Error::ConfigFile {
            path: path.to_owned(),
            detail: format!("cannot be read: {e}"),
        })?;
        Config::parse(&text, path.parent().unwrap_or(Path::new(""))).map_err(|detail| {
            Error::ConfigFile {
                path: path.to_owned(),
                detail,
            }
        })
    }

    /// Parses and checks configuration text (what `ecobackup.toml` holds); relative paths in
    /// it are taken from `base_dir`. The error is one line naming the setting.
    pub fn parse(text: &str, base_dir: &Path) -> std::result::Result<Config, String> {
        let mut config: Config = toml::from_str(text).map_err(|e| located(text, &e))?;
        config.check()?;
        config.anchor_paths(base_dir);
        Ok(config)
    }

    /// Every check of settings that parse but cannot work.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        self.check_no_inline_secrets()?;
        self.check_working()
    }

    /// The checks of settings that cannot work, without the file's hygiene rule (no password
    /// written into it): for a configuration built in code, whose values came from anywhere.
    pub(crate) fn check_working(&self) -> std::result::Result<(), String> {
        self.check_settings()?;
        self.check_files_sets()?;
        let sets: Vec<&str> = self.files.iter().map(|set| set.name.as_str()).collect();
        super::schedule::validate(&self.schedule, &sets)
    }

    /// Makes the file's relative paths relative to its own directory, not to wherever
    /// ecobackup runs: a server runs `archive_command` and `restore_command` in its data
    /// directory, cron in a home directory.
    fn anchor_paths(&mut self, dir: &Path) {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
        let anchor = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        };
        let repository = &mut self.repository;
        let encryption = &mut self.encryption;
        for path in [
            &mut self.wal.spool_dir,
            &mut self.drill.checks,
            &mut self.drill.scratch_dir,
            &mut repository.access_key_id_file,
            &mut repository.secret_access_key_file,
            &mut encryption.passphrase_file,
            &mut encryption.signing_key_file,
        ]
        .into_iter()
        .flatten()
        {
            anchor(path);
        }
        for mirror in &mut repository.mirror {
            for path in [
                &mut mirror.access_key_id_file,
                &mut mirror.secret_access_key_file,
            ]
            .into_iter()
            .flatten()
            {
                anchor(path);
            }
        }
        encryption.identity_files.iter_mut().for_each(anchor);
        for db in &mut self.database {
            if let Some(path) = &mut db.url_file {
                anchor(path);
            }
        }
        for set in &mut self.files {
            set.paths.iter_mut().for_each(anchor);
        }
        super::schedule::anchor_paths(&mut self.schedule, &dir);
    }

    /// The `[[files]]` entry `name`.
    pub fn files_set(&self, name: &str) -> Option<&FilesConfig> {
        self.files.iter().find(|set| set.name == name)
    }

    /// Refuses `[[files]]` entries that cannot run: a bad or repeated name, no paths, bad
    /// recipients, and a secrets set whose recipients are missing or shared with the database
    /// backups (domain isolation).
    fn check_files_sets(&self) -> std::result::Result<(), String> {
        let invalid = |detail: String| detail;
        for (i, set) in self.files.iter().enumerate() {
            crate::files::roots::check_set_name(&set.name).map_err(|e| invalid(e.to_string()))?;
            if self.files[..i].iter().any(|other| other.name == set.name) {
                return Err(invalid(format!(
                    "[[files]] {:?} is defined twice",
                    set.name
                )));
            }
            if set.paths.is_empty() {
                return Err(invalid(format!(
                    "[[files]] {:?} has no paths: add `paths = [\"/srv/app/uploads\"]`",
                    set.name
                )));
            }
            crate::crypto::parse_recipients(&set.recipients)
                .map_err(|e| invalid(format!("[[files]] {:?}: {e}", set.name)))?;
            if set.secrets {
                crate::files::secrets::check_secrets_recipients(
                    &set.name,
                    &set.recipients,
                    &self.encryption.recipients,
                )
                .map_err(|e| invalid(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Settings that parse but cannot work.
    fn check_settings(&self) -> std::result::Result<(), String> {
        let invalid = |detail: &str| Err(format!("[[repository.mirror]] {detail}"));
        if self.notify.timeout_seconds == Some(0) {
            return Err("[notify] timeout_seconds = 0 would fail every ping and webhook: give at least 1 (default 10)".to_owned());
        }
        if self.repository.name.is_some() {
            return Err("[repository] name: only a [[repository.mirror]] has a name".to_owned());
        }
        let mut names = Vec::new();
        for mirror in &self.repository.mirror {
            if mirror.url.is_none() {
                return invalid("needs a url");
            }
            if mirror.access_key_id_file.is_some() != mirror.secret_access_key_file.is_some() {
                return invalid("has only one of access_key_id_file and secret_access_key_file: give both (the other half would come from the environment, maybe another provider's)");
            }
            if let Some(name) = &mirror.name {
                let valid = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !valid || names.contains(name) {
                    return invalid(&format!(
                        "name {name:?} must be unique and made of letters, digits, - and _"
                    ));
                }
                names.push(name.clone());
            }
            if !mirror.mirror.is_empty() || mirror.min_targets.is_some() {
                return invalid(
                    "cannot have mirrors or min_targets of its own: set them in [repository]",
                );
            }
        }
        Ok(())
    }

    fn check_no_inline_secrets(&self) -> std::result::Result<(), String> {
        for db in &self.database {
            if let Some(url) = &db.url {
                // Parse errors never quote the string: it may hold a password.
                if let Err(e) = crate::postgres::conninfo::parse(url) {
                    return Err(format!(
                        "database {:?} has a url that is not a connection string: {e}",
                        db.name
                    ));
                }
                if url_has_password(url) {
                    return Err(format!(
                        "database {:?} has a password inline in its url; \
                         move it to PGPASSFILE or put the whole url in a file named by url_file",
                        db.name
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The toml error `e` of `text` as one line that says where: `line 12, column 1: missing
/// field `cron``. Without a location (none is known), the message alone.
fn located(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim();
    match e.span() {
        Some(span) => {
            let (line, column) = line_and_column(text, span.start);
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_owned(),
    }
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
pub(crate) fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |at| at + 1);
    (line, before[start..].chars().count() + 1)
}

/// True when a connection string carries a password (`user:password@`, `?password=`,
/// `password=`).
pub(crate) fn url_has_password(url: &str) -> bool {
    crate::postgres::conninfo::parse(url)
        .is_ok_and(|settings| settings.iter().any(|(k, _)| k == "password"))
}
