//! The builders of physical and files backups and their restores: [`Ecobackup::backup_physical`],
//! [`Ecobackup::backup_files`], [`Ecobackup::restore_physical`], [`Ecobackup::restore_files`].
//! Cancel safety as for every builder ([module docs](super::ops)).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::ops::{backup_setters, watch_setters, Watch};
use super::{Ecobackup, DEFAULT_LEVEL};
use crate::cancel::CancellationToken;
use crate::error::Result;
use crate::files::{backup_files, restore_files, FilesBackup, FilesOutcome};
use crate::files::{FilesRestore, FilesRestoreOutcome};
use crate::physical::{backup_physical, restore_physical, PhysicalBackup, PhysicalRestore};
use crate::physical::{PhysicalRestoreOutcome, RecoveryTarget};
use crate::postgres::DbUrl;
use crate::progress::Progress;
use crate::repository::{under_shared_lock, Manifest};

/// [`Ecobackup::backup_physical`]: `pg_basebackup` of the whole cluster, sealed to
/// `[encryption] recipients`, stored in the repository its WAL is archived to (not the
/// mirrors: a base backup restores only with that WAL), the manifest signed.
#[must_use = "an operation does nothing until `.run().await`"]
pub struct BackupPhysical<'a> {
    eco: &'a Ecobackup,
    server: DbUrl,
    tags: BTreeMap<String, String>,
    level: i32,
    allow_no_archive: bool,
    pg_bin: Option<PathBuf>,
    watch: Watch,
}

impl<'a> BackupPhysical<'a> {
    pub(super) fn new(eco: &'a Ecobackup, server: DbUrl) -> Self {
        BackupPhysical {
            eco,
            server,
            tags: BTreeMap::new(),
            level: DEFAULT_LEVEL,
            allow_no_archive: false,
            pg_bin: None,
            watch: Watch::default(),
        }
    }

    /// Takes the backup although the server does not archive its WAL to this repository:
    /// the WAL up to the backup's end goes into it, and it restores to its end only (no
    /// point-in-time recovery).
    pub fn allow_no_archive(mut self, allow: bool) -> Self {
        self.allow_no_archive = allow;
        self
    }

    /// The directory of `pg_basebackup` of the server's major version, instead of looking for
    /// it in `ECOBACKUP_PG_BIN_<major>`, the Debian and RPM layouts and `PATH`.
    pub fn pg_bin(mut self, dir: impl Into<PathBuf>) -> Self {
        self.pg_bin = Some(dir.into());
        self
    }

    backup_setters!();
    watch_setters!();

    /// Takes the backup; returns its manifest once committed.
    ///
    /// Cancel safety: see the module documentation.
    pub async fn run(self) -> Result<Manifest> {
        let repo = self.eco.writer().await?;
        let mut plan = PhysicalBackup::new(self.server, self.eco.sealing(self.level)?);
        plan.tags = self.tags;
        plan.allow_no_archive = self.allow_no_archive;
        plan.pg_bin = self.pg_bin;
        plan.cancel = self.watch.cancel.clone();
        backup_physical(&repo, &plan, self.watch.progress()).await
    }
}

/// [`Ecobackup::backup_files`]: the trees and files as one streamed tar, sealed to
/// `[encryption] recipients`, stored in the repository and its mirrors, the manifest signed.
#[must_use = "an operation does nothing until `.run().await`"]
pub struct BackupFiles<'a> {
    eco: &'a Ecobackup,
    paths: Vec<PathBuf>,
    name: Option<String>,
    tags: BTreeMap<String, String>,
    level: i32,
    if_changed: bool,
    watch: Watch,
}

impl<'a> BackupFiles<'a> {
    pub(super) fn new(eco: &'a Ecobackup, paths: Vec<PathBuf>) -> Self {
        BackupFiles {
            eco,
            paths,
            name: None,
            tags: BTreeMap::new(),
            level: DEFAULT_LEVEL,
            if_changed: false,
            watch: Watch::default(),
        }
    }

    /// The set's name (what retention and `latest` go by); by default the roots' names
    /// joined by `+`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Stores nothing when the trees are what the set's latest backup holds (one more pass
    /// reads them to tell).
    pub fn if_changed(mut self, if_changed: bool) -> Self {
        self.if_changed = if_changed;
        self
    }

    backup_setters!();
    watch_setters!();

    /// Takes the backup (with the default excludes); says what was stored, or that nothing
    /// changed.
    ///
    /// Cancel safety: see the module documentation.
    pub async fn run(self) -> Result<FilesOutcome> {
        let targets = self.eco.targets().await?;
        let mut plan = FilesBackup::new(self.paths, self.eco.sealing(self.level)?);
        plan.name = self.name;
        plan.tags = self.tags;
        plan.if_changed = self.if_changed;
        plan.cancel = self.watch.cancel.clone();
        backup_files(&targets, &plan, self.watch.progress()).await
    }
}

/// [`Ecobackup::restore_files`]: a files backup's entries written into a directory, each
/// file checked against the manifest's digests.
#[must_use = "an operation does nothing until `.run().await`"]
pub struct RestoreFiles<'a> {
    eco: &'a Ecobackup,
    plan: FilesRestore,
    watch: Watch,
}

impl<'a> RestoreFiles<'a> {
    pub(super) fn new(eco: &'a Ecobackup, backup: String, to: PathBuf) -> Self {
        RestoreFiles {
            eco,
            plan: FilesRestore::new(backup, to),
            watch: Watch::default(),
        }
    }

    /// With `latest`: the newest backup of this set (else of any set).
    pub fn set(mut self, name: impl Into<String>) -> Self {
        self.plan.set = Some(name.into());
        self
    }

    /// Restores only the entries whose path, an ancestor's path or name matches this glob
    /// (`uploads/2026/**`, `*.pem`); call again for more.
    pub fn include(mut self, pattern: impl Into<String>) -> Self {
        self.plan.include.push(pattern.into());
        self
    }

    /// Replaces existing files and links (directories are merged); refused by default.
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.plan.overwrite = overwrite;
        self
    }

    watch_setters!();

    /// Restores; refuses before writing anything when an entry exists (unless `overwrite`).
    ///
    /// Cancel safety: see the module documentation.
    pub async fn run(mut self) -> Result<FilesRestoreOutcome> {
        let repo = &self.eco.trusted().await?;
        self.plan.keyring = Some(self.eco.keyring().await?);
        self.plan.cancel = self.watch.cancel.clone();
        under_shared_lock(repo.storage(), "restore files", async {
            restore_files(repo, &self.plan, self.watch.progress()).await
        })
        .await
    }
}

/// [`Ecobackup::restore_physical`]: a base backup unpacked into a new data directory, checked
/// with `pg_verifybackup`, and set up to recover (the server is not started).
#[must_use = "an operation does nothing until `.run().await`"]
pub struct RestorePhysical<'a> {
    eco: &'a Ecobackup,
    plan: PhysicalRestore,
    watch: Watch,
}

impl<'a> RestorePhysical<'a> {
    pub(super) fn new(
        eco: &'a Ecobackup,
        backup: String,
        pgdata: PathBuf,
        restore_command: String,
    ) -> Self {
        RestorePhysical {
            eco,
            plan: PhysicalRestore::new(Some(backup), pgdata, restore_command),
            watch: Watch::default(),
        }
    }

    /// Where recovery stops: the backup's end by default ([`RecoveryTarget::Immediate`]).
    pub fn target(mut self, target: RecoveryTarget) -> Self {
        self.plan.target = target;
        self
    }

    /// Empties a non-empty data directory first (only one that holds `PG_VERSION`).
    pub fn force(mut self, force: bool) -> Self {
        self.plan.force = force;
        self
    }

    /// The directory of `pg_verifybackup` of the backup's major version, instead of looking
    /// for it in `ECOBACKUP_PG_BIN_<major>`, the Debian and RPM layouts and `PATH`.
    pub fn pg_bin(mut self, dir: impl Into<PathBuf>) -> Self {
        self.plan.pg_bin = Some(dir.into());
        self
    }

    watch_setters!();

    /// Restores; the data directory is complete and flushed when it returns, and recovers
    /// when the server starts.
    ///
    /// Cancel safety: see the module documentation.
    pub async fn run(mut self) -> Result<PhysicalRestoreOutcome> {
        let repo = &self.eco.trusted().await?;
        self.plan.keyring = Some(self.eco.keyring().await?);
        self.plan.cancel = self.watch.cancel.clone();
        under_shared_lock(repo.storage(), "restore physical", async {
            restore_physical(repo, &self.plan, self.watch.progress()).await
        })
        .await
    }
}
