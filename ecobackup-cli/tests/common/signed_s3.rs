//! A repository on the in-process S3 server with a configuration file that trusts one signer,
//! for tests that fill it with signed synthetic backups (prune, status, check).

use std::path::PathBuf;
use std::sync::Arc;

use ecobackup_core::crypto::Signer;
use ecobackup_core::repository::Repository;
use ecobackup_core::storage::{RepoUrl, Storage};
use ecobackup_testkit::S3TestServer;

use super::{ecobackup, key};

/// The S3 server, a directory with `ecobackup.toml` (S3 credentials in 0600 files, a recipient,
/// `signing.key`, that key's public half trusted, then `extra`), the repository initialised.
pub struct SignedS3 {
    pub runtime: tokio::runtime::Runtime,
    pub s3: S3TestServer,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// The repository, writing manifests signed by the trusted key.
    pub repo: Repository,
}

impl SignedS3 {
    pub fn new(extra: &str) -> SignedS3 {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let s3 = runtime.block_on(S3TestServer::start());
        let dir = tempfile::tempdir().unwrap();
        let (_, recipient) = key(dir.path(), "restore.key");
        let signer = Signer::generate();
        signer
            .write_file(&dir.path().join("signing.key"), false)
            .unwrap();
        let secret = |name: &str, value: &str| {
            use std::os::unix::fs::PermissionsExt as _;
            let path = dir.path().join(name);
            std::fs::write(&path, value).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            path
        };
        let id_file = secret("s3.id", s3.access_key_id());
        let secret_file = secret("s3.secret", s3.secret_access_key());
        let config = secret(
            "ecobackup.toml",
            &format!(
                "[repository]\nurl = \"s3://{}/prod\"\nendpoint = \"{}\"\nregion = \"{}\"\nallow_http = true\n\
                 max_retries = 1\naccess_key_id_file = \"{}\"\nsecret_access_key_file = \"{}\"\n\n\
                 [encryption]\nrecipients = [\"{recipient}\"]\nsigning_key_file = \"signing.key\"\n\
                 trusted_signers = [\"{}\"]\n\n{extra}",
                s3.bucket(),
                s3.endpoint(),
                s3.region(),
                id_file.display(),
                secret_file.display(),
                signer.public_key()
            ),
        );
        let storage = Storage::open(
            &RepoUrl::S3 {
                bucket: s3.bucket().to_owned(),
                prefix: "prod".to_owned(),
            },
            &s3.storage_options(),
        )
        .unwrap();
        ecobackup(dir.path())
            .args(["--config", config.to_str().unwrap(), "init"])
            .assert()
            .success();
        let repo = runtime
            .block_on(Repository::open(storage))
            .unwrap()
            .with_signer(Arc::new(signer));
        SignedS3 {
            runtime,
            s3,
            dir,
            config,
            repo,
        }
    }
}
