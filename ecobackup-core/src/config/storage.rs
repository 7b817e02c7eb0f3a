//! From `[repository]` (or a mirror's section) to an opened [`Storage`].

use super::{Config, RepositoryConfig};
use crate::crypto::read_secret_file;
use crate::error::Result;
use crate::storage::{ObjectLock, RepoUrl, Storage, StorageOptions, DEFAULT_REPOSITORY};

impl RepositoryConfig {
    /// The repository URL: `url`, else `./ecobackup-repo`.
    pub fn repo_url(&self) -> Result<RepoUrl> {
        RepoUrl::parse(self.url.as_deref().unwrap_or(DEFAULT_REPOSITORY))
    }

    /// The S3 client's settings: these keys, the credentials read from the `*_file` keys
    /// (0600, checked), and `object_lock` on every object written.
    pub fn storage_options(&self, object_lock: Option<ObjectLock>) -> Result<StorageOptions> {
        let defaults = StorageOptions::default();
        let own_keys = self.access_key_id_file.is_some() || self.secret_access_key_file.is_some();
        Ok(StorageOptions {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            allow_http: self.allow_http,
            virtual_hosted_style: self.virtual_hosted_style,
            max_retries: self.max_retries.unwrap_or(defaults.max_retries),
            part_concurrency: self.part_concurrency.unwrap_or(defaults.part_concurrency),
            access_key_id: self
                .access_key_id_file
                .as_deref()
                .map(read_secret_file)
                .transpose()?,
            secret_access_key: self
                .secret_access_key_file
                .as_deref()
                .map(read_secret_file)
                .transpose()?,
            object_lock,
            // Keys of its own: nothing of the environment (no AWS_SESSION_TOKEN or
            // AWS_ENDPOINT meant for another provider).
            environment: self.aws_environment && !own_keys,
            ..defaults
        })
    }

    /// Opens the store at `url` (this section's own, a `--mirror` URL or a `[[files]]`
    /// set's) with these settings.
    pub fn open_storage(&self, url: &RepoUrl, object_lock: Option<ObjectLock>) -> Result<Storage> {
        Storage::open(url, &self.storage_options(object_lock)?)
    }
}

impl Config {
    /// The Object Lock every object written now gets, from `[retention] lock`.
    pub fn object_lock(&self) -> Result<Option<ObjectLock>> {
        Ok(match &self.retention {
            Some(policy) => policy.object_lock()?.map(|(mode, length)| ObjectLock {
                mode,
                retain_until: chrono::Utc::now() + length,
            }),
            None => None,
        })
    }
}
