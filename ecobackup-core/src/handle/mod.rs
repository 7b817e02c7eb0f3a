//! [`Ecobackup`]: one repository, its mirrors and its keys, opened from a [`Config`], and the
//! operations on it as builders.

mod backups;
mod ops;

use std::sync::Arc;

use tokio::sync::OnceCell;

pub use backups::{BackupFiles, BackupPhysical, RestoreFiles, RestorePhysical};
pub use ops::{BackupLogical, DrillLogical, Prune, RestoreLogical, Verify};

use crate::artifact::Sealing;
use crate::config::Config;
use crate::crypto::{parse_recipients, parse_signers, read_secret_file, Keyring};
use crate::crypto::{Signer, TrustedSigners};
use crate::error::{Error, Result};
use crate::monitor::RepositoryStatus;
use crate::postgres::DbUrl;
use crate::repository::{open_mirror, Manifest, Repository, Targets};

/// The zstd level of backups taken through the handle (the CLI's default too).
const DEFAULT_LEVEL: i32 = 3;

/// A repository opened for backups, restores and checks, with the keys its configuration
/// names. Cheap to share: clone the `Arc` you keep it in, or call it from several tasks.
///
/// Cancel safety: [`Ecobackup::open`], [`Ecobackup::list`] and [`Ecobackup::status`] only
/// read, so dropping their futures is safe; the operations' `run` futures take a token
/// (see [`ops`](crate::handle::BackupLogical::cancel_on)). Every future is `Send`.
///
/// ```no_run
/// # async fn snapshot() -> ecobackup_core::Result<()> {
/// use ecobackup_core::{postgres::DbUrl, Config, Ecobackup};
///
/// let eco = Ecobackup::open(Config::from_env()?).await?;
/// let db = DbUrl::parse("postgres://backup@db.internal/shop")?;
/// let manifest = eco.backup_logical(db).tag("reason", "pre-migration").run().await?;
/// println!("restore with: ecobackup restore logical {} --db URL", manifest.id);
/// # Ok(()) }
/// ```
pub struct Ecobackup {
    config: Config,
    /// The repository as opened: it writes (signing when a key is configured) and lists.
    repo: Repository,
    /// The same repository checked against the trusted signers, made on the first read.
    trusted: OnceCell<Repository>,
    /// The identities, loaded on the first restore, verify or drill.
    keyring: OnceCell<Arc<Keyring>>,
    signer: Option<Arc<Signer>>,
}

impl Ecobackup {
    /// Opens the repository `config` names (`[repository]`; `./ecobackup-repo` without a url)
    /// and loads its signing key, after the checks [`Config::load`] makes of a file. It must
    /// exist (`ecobackup init`). Identities are read only
    /// when an operation needs them. Reads no environment variable: build `config` with
    /// [`Config::from_env`] for the CLI's `ECOBACKUP_*` variables.
    ///
    /// One exception, where the library looks for programs as a shell would: an operation
    /// that runs `pg_dump`, `pg_restore` or `initdb` without a `pg_bin` directory (the
    /// builders' `pg_bin`) looks for the server's major version in `ECOBACKUP_PG_BIN_<major>`,
    /// the Debian and RPM layouts, then `PATH`. Set `pg_bin` to rule that out.
    pub async fn open(config: Config) -> Result<Ecobackup> {
        config.check_working().map_err(|detail| Error::Config {
            section: "configuration".to_owned(),
            detail,
        })?;
        let signer = config
            .encryption
            .signing_key_file
            .as_deref()
            .map(Signer::from_file)
            .transpose()?
            .map(Arc::new);
        let repo = open_primary(&config, signer.as_ref()).await?;
        Ok(Ecobackup {
            config,
            repo,
            trusted: OnceCell::new(),
            keyring: OnceCell::new(),
            signer,
        })
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The repository underneath, for the lower-level functions of [`crate::repository`].
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// Every backup's manifest, oldest first (signatures not checked: for display).
    pub async fn list(&self) -> Result<Vec<Manifest>> {
        Ok(self.repo.manifests().await?.backups)
    }

    /// What the repository holds, per kind and set, and how old the newest of each is.
    pub async fn status(&self) -> Result<RepositoryStatus> {
        crate::monitor::status(&self.repo, chrono::Utc::now()).await
    }

    /// A logical backup of `database` (add more with [`BackupLogical::database`]).
    pub fn backup_logical(&self, database: DbUrl) -> BackupLogical<'_> {
        BackupLogical::new(self, database)
    }

    /// A physical backup (`pg_basebackup`) of the server at `server`, whose `archive_command`
    /// pushes its WAL to this repository.
    pub fn backup_physical(&self, server: DbUrl) -> BackupPhysical<'_> {
        BackupPhysical::new(self, server)
    }

    /// A backup of the directories and files `paths` (uploads, keys, `.env`) as one set.
    pub fn backup_files(&self, paths: Vec<std::path::PathBuf>) -> BackupFiles<'_> {
        BackupFiles::new(self, paths)
    }

    /// A files backup `backup` (an id or `latest`) restored into the directory `to`.
    pub fn restore_files(
        &self,
        backup: impl Into<String>,
        to: impl Into<std::path::PathBuf>,
    ) -> RestoreFiles<'_> {
        RestoreFiles::new(self, backup.into(), to.into())
    }

    /// The physical backup `backup` (an id or `latest`) restored into the new data directory
    /// `pgdata`, to recover through `restore_command` (`ecobackup --config … wal-fetch %f %p`,
    /// which the server runs) when it starts.
    pub fn restore_physical(
        &self,
        backup: impl Into<String>,
        pgdata: impl Into<std::path::PathBuf>,
        restore_command: impl Into<String>,
    ) -> RestorePhysical<'_> {
        RestorePhysical::new(self, backup.into(), pgdata.into(), restore_command.into())
    }

    /// A logical restore of `backup` (an id or `latest`) into the database `target`.
    pub fn restore_logical(&self, backup: impl Into<String>, target: DbUrl) -> RestoreLogical<'_> {
        RestoreLogical::new(self, backup.into(), target)
    }

    /// Reads back every artifact of `backup` (an id or `latest`) and checks its digests.
    pub fn verify(&self, backup: impl Into<String>) -> Verify<'_> {
        Verify::new(self, backup.into())
    }

    /// Restores the logical backup `backup` into a throwaway cluster and runs the checks of
    /// `[drill] checks`.
    pub fn drill(&self, backup: impl Into<String>) -> DrillLogical<'_> {
        DrillLogical::new(self, backup.into())
    }

    /// Deletes what `[retention]` does not keep, under the exclusive lock.
    pub fn prune(&self) -> Prune<'_> {
        Prune::new(self)
    }

    /// How backups are sealed: `[encryption] recipients`, which must not be empty.
    fn sealing(&self, level: i32) -> Result<Sealing> {
        let recipients = parse_recipients(&self.config.encryption.recipients)?;
        if recipients.is_empty() {
            return Err(Error::NoRecipients);
        }
        Ok(Sealing { level, recipients })
    }

    /// The repository a backup writes to (a physical backup writes there only: its WAL is
    /// archived there). Without a signing key, the backup is refused unless `[encryption]
    /// allow_unsigned`.
    async fn writer(&self) -> Result<Repository> {
        if self.signer.is_none() && !self.config.encryption.allow_unsigned {
            return Err(Error::Config {
                section: "encryption".to_owned(),
                detail: "no signing_key_file: restore sides cannot tell this host's backups from planted ones; give one (`ecobackup key generate` makes signing keys too), or set allow_unsigned = true".to_owned(),
            });
        }
        // An Object Lock's retain-until date counts from each backup, not from `open`: a
        // handle kept for weeks would lock its backups for less, and once the period has
        // passed S3 refuses a date in the past. Mirrors are opened per backup for the same
        // reason.
        match self.config.object_lock()?.is_some() {
            true => open_primary(&self.config, self.signer.as_ref()).await,
            false => Ok(self.repo.clone()),
        }
    }

    /// The repository and the configured mirrors, for a logical or files backup.
    async fn targets(&self) -> Result<Targets> {
        let primary = self.writer().await?;
        let repository = &self.config.repository;
        if repository.mirror.is_empty() && repository.min_targets.unwrap_or(1) == 1 {
            return Ok(primary.into());
        }
        let (mut opened, mut unreachable) = (Vec::new(), Vec::new());
        for mirror in &repository.mirror {
            let url = mirror.repo_url()?;
            match open_mirror(
                mirror,
                &url,
                self.config.object_lock()?,
                self.signer.as_ref(),
            )
            .await?
            {
                Ok(repo) => opened.push(repo),
                Err(report) => unreachable.push(report),
            }
        }
        Targets::new(primary, opened, unreachable, repository.min_targets)
    }

    /// The repository for reads: its marker and every manifest signed by a trusted signer
    /// (`[encryption] trusted_signers`), unless `allow_unsigned`. With an Object Lock, opened
    /// afresh for each operation, as for backups: its lock object is written with a
    /// retain-until date counted from now.
    async fn trusted(&self) -> Result<Repository> {
        if self.config.object_lock()?.is_some() {
            let repo = open_primary(&self.config, self.signer.as_ref()).await?;
            return self.trusting(repo).await;
        }
        self.trusted
            .get_or_try_init(|| self.trusting(self.repo.clone()))
            .await
            .cloned()
    }

    /// `repo`, checked against the trusted signers.
    async fn trusting(&self, repo: Repository) -> Result<Repository> {
        let keys = &self.config.encryption;
        let signers = parse_signers(&keys.trusted_signers)?;
        if signers.is_empty() && !keys.allow_unsigned {
            return Err(Error::Config {
                section: "encryption".to_owned(),
                detail: "no trusted_signers: give the public keys (ecosign1…) of the hosts whose backups may be restored, or allow_unsigned = true for a repository written without signing".to_owned(),
            });
        }
        let trust = TrustedSigners::new(signers).allowing_unsigned(keys.allow_unsigned);
        repo.with_trusted_signers(trust).await
    }

    /// The identities of `[encryption] identity_files` (with `passphrase_file`).
    async fn keyring(&self) -> Result<Arc<Keyring>> {
        self.keyring
            .get_or_try_init(|| async {
                let keys = &self.config.encryption;
                if keys.identity_files.is_empty() {
                    return Err(Error::NoIdentities);
                }
                let passphrase = keys
                    .passphrase_file
                    .as_deref()
                    .map(read_secret_file)
                    .transpose()?;
                Ok(Arc::new(
                    Keyring::load(keys.identity_files.clone(), passphrase).await?,
                ))
            })
            .await
            .cloned()
    }
}

/// The repository `[repository]` names, with the Object Lock retention counted from now and
/// the signing key, if any.
async fn open_primary(config: &Config, signer: Option<&Arc<Signer>>) -> Result<Repository> {
    let url = config.repository.repo_url()?;
    let storage = config
        .repository
        .open_storage(&url, config.object_lock()?)?;
    let repo = Repository::open(storage).await?;
    Ok(match signer {
        Some(signer) => repo.with_signer(Arc::clone(signer)),
        None => repo,
    })
}

/// A service spawns operations on its runtime (`tokio::spawn`): every `run` future is `Send`.
#[cfg(test)]
mod send {
    use super::*;

    fn spawnable<T: Send>(_: &T) {}

    #[allow(dead_code, clippy::diverging_sub_expression)]
    async fn every_operation_is_send(eco: &Ecobackup, db: DbUrl) {
        spawnable(&eco.backup_logical(db.clone()).run());
        spawnable(&eco.restore_logical("latest", db).run());
        spawnable(&eco.verify("latest").run());
        spawnable(&eco.drill("latest").run());
        spawnable(&eco.prune().run());
        spawnable(&eco.status());
        spawnable(&eco.list());
        spawnable(&Ecobackup::open(Config::default()));
    }

    #[allow(dead_code)]
    async fn the_lower_layer_is_send(
        targets: &Targets,
        repo: &Repository,
        files: &crate::files::FilesBackup,
        files_restore: &crate::files::FilesRestore,
        physical: &crate::physical::PhysicalBackup,
        physical_restore: &crate::physical::PhysicalRestore,
    ) {
        let progress = crate::progress::NoProgress;
        spawnable(&crate::files::backup_files(targets, files, &progress));
        spawnable(&crate::files::restore_files(repo, files_restore, &progress));
        spawnable(&crate::physical::backup_physical(repo, physical, &progress));
        spawnable(&crate::physical::restore_physical(
            repo,
            physical_restore,
            &progress,
        ));
    }
}
