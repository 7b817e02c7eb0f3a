//! The `ECOBACKUP_*` variables, read only when the caller asks ([`Config::from_env`],
//! [`Config::apply_env`]): a service that links the library keeps its own environment to itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Config;
use crate::error::{Error, Result};

/// The variables a configuration may be read from: the process's own
/// ([`Environment::process`]) or a fixed set (tests, a service's own settings).
#[derive(Clone, Debug, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    /// The `ECOBACKUP_*` variables of this process.
    pub fn process() -> Environment {
        Environment {
            vars: std::env::vars()
                .filter(|(name, _)| name.starts_with("ECOBACKUP_"))
                .collect(),
        }
    }

    /// Exactly these variables.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Environment {
        Environment {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `name`, when set and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn flag(&self, name: &str) -> Result<Option<bool>> {
        match self.get(name) {
            None => Ok(None),
            Some("1" | "true" | "yes") => Ok(Some(true)),
            Some("0" | "false" | "no") => Ok(Some(false)),
            Some(other) => Err(invalid(
                name,
                format!("{other:?} is not a yes/no value: use true or false"),
            )),
        }
    }

    fn number(&self, name: &str) -> Result<Option<usize>> {
        self.get(name)
            .map(|text| {
                text.parse()
                    .map_err(|_| invalid(name, format!("{text:?} is not a whole number")))
            })
            .transpose()
    }

    /// A comma-separated list (`ECOBACKUP_RECIPIENTS=age1…,age1…`).
    fn list(&self, name: &str) -> Option<Vec<String>> {
        self.get(name).map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
    }
}

fn invalid(name: &str, detail: String) -> Error {
    Error::Config {
        section: format!("environment {name}"),
        detail,
    }
}

impl Config {
    /// The configuration the CLI would use with no flags: the file named by `ECOBACKUP_CONFIG`
    /// (none: the defaults), with the process's `ECOBACKUP_*` variables laid over it
    /// ([`Config::apply_env`]). The only call in the library that reads the environment for
    /// the repository and keys.
    pub fn from_env() -> Result<Config> {
        Config::from_environment(&Environment::process())
    }

    /// [`Config::from_env`] with the variables of `env`.
    pub fn from_environment(env: &Environment) -> Result<Config> {
        let mut config = Config::load(env.get("ECOBACKUP_CONFIG").map(Path::new))?;
        config.apply_env(env)?;
        Ok(config)
    }

    /// Lays the variables of `env` over these settings (a variable wins over the file), and
    /// lets the repository's S3 client read the `AWS_*` variables for what is not set:
    ///
    /// | variable | setting |
    /// |---|---|
    /// | `ECOBACKUP_REPO` | `[repository] url` |
    /// | `ECOBACKUP_S3_ENDPOINT`, `_REGION`, `_ALLOW_HTTP`, `_VIRTUAL_HOSTED_STYLE`, `_MAX_RETRIES`, `_PART_CONCURRENCY` | the `[repository]` keys of those names |
    /// | `ECOBACKUP_RECIPIENTS` (comma-separated) | `[encryption] recipients` |
    /// | `ECOBACKUP_IDENTITY_FILE` (comma-separated) | `[encryption] identity_files` |
    /// | `ECOBACKUP_IDENTITY_PASSPHRASE_FILE` | `[encryption] passphrase_file` |
    /// | `ECOBACKUP_SIGNING_KEY_FILE` | `[encryption] signing_key_file` |
    /// | `ECOBACKUP_TRUSTED_SIGNERS` (comma-separated) | `[encryption] trusted_signers` |
    ///
    /// Mirrors keep their own settings; one without key files of its own may also read the
    /// `AWS_*` variables. The result is checked again (a variable can make it invalid).
    pub fn apply_env(&mut self, env: &Environment) -> Result<()> {
        let repo = &mut self.repository;
        if let Some(url) = env.get("ECOBACKUP_REPO") {
            repo.url = Some(url.to_owned());
        }
        if let Some(endpoint) = env.get("ECOBACKUP_S3_ENDPOINT") {
            repo.endpoint = Some(endpoint.to_owned());
        }
        if let Some(region) = env.get("ECOBACKUP_S3_REGION") {
            repo.region = Some(region.to_owned());
        }
        if let Some(allow) = env.flag("ECOBACKUP_S3_ALLOW_HTTP")? {
            repo.allow_http = allow;
        }
        if let Some(virtual_hosted) = env.flag("ECOBACKUP_S3_VIRTUAL_HOSTED_STYLE")? {
            repo.virtual_hosted_style = virtual_hosted;
        }
        if let Some(retries) = env.number("ECOBACKUP_S3_MAX_RETRIES")? {
            repo.max_retries = Some(retries);
        }
        if let Some(parts) = env.number("ECOBACKUP_S3_PART_CONCURRENCY")? {
            repo.part_concurrency = Some(parts);
        }
        repo.aws_environment = true;
        for mirror in &mut repo.mirror {
            mirror.aws_environment = true;
        }
        let keys = &mut self.encryption;
        if let Some(recipients) = env.list("ECOBACKUP_RECIPIENTS") {
            keys.recipients = recipients;
        }
        if let Some(files) = env.list("ECOBACKUP_IDENTITY_FILE") {
            keys.identity_files = files.into_iter().map(PathBuf::from).collect();
        }
        if let Some(file) = env.get("ECOBACKUP_IDENTITY_PASSPHRASE_FILE") {
            keys.passphrase_file = Some(PathBuf::from(file));
        }
        if let Some(file) = env.get("ECOBACKUP_SIGNING_KEY_FILE") {
            keys.signing_key_file = Some(PathBuf::from(file));
        }
        if let Some(signers) = env.list("ECOBACKUP_TRUSTED_SIGNERS") {
            keys.trusted_signers = signers;
        }
        self.check().map_err(|detail| Error::Config {
            section: "environment".to_owned(),
            detail,
        })
    }
}
