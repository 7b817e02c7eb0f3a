//! The operations of an [`Ecobackup`] handle, as builders: set what differs from the
//! defaults, then `run().await`.
//!
//! Cancel safety: every `run` takes the builder's [`CancellationToken`] (none by default).
//! When it fires, `run` stops the work, aborts the uploads it started, deletes what it stored,
//! releases its lock, and then returns [`Error::Cancelled`]. Dropping a `run` future instead
//! never commits anything either, but leaves that clean-up to background tasks
//! ([`crate::cancel`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::{Ecobackup, DEFAULT_LEVEL};
use crate::backup::{backup_logical, DumpTarget, LogicalBackup};
use crate::cancel::{cancellable, CancellationToken};
use crate::drill::{drill, Checks, DrillPlan, DrillReport, DrillTarget, PhysicalDrill};
use crate::error::{Error, Result};
use crate::postgres::DbUrl;
use crate::progress::{NoProgress, Progress};
use crate::repository::{under_shared_lock, BackupKind, Manifest};
use crate::restore::{restore_logical, LogicalRestore, RestoreOutcome};
use crate::retention::{prune, PruneOptions, PruneReport};
use crate::verify::{verify_backup, BackupCheck};

/// Who watches an operation: a caller's observer, or nobody.
#[derive(Clone)]
pub(super) struct Watch {
    pub(super) progress: Option<Arc<dyn Progress>>,
    pub(super) cancel: CancellationToken,
}

impl Default for Watch {
    fn default() -> Self {
        Watch {
            progress: None,
            cancel: CancellationToken::new(),
        }
    }
}

impl Watch {
    pub(super) fn progress(&self) -> &dyn Progress {
        match &self.progress {
            Some(progress) => progress.as_ref(),
            None => &NoProgress,
        }
    }
}

/// The two setters every builder has.
macro_rules! watch_setters {
    () => {
        /// Reports progress to `observer` (pushed from the operation's task).
        pub fn progress(mut self, observer: Arc<dyn Progress>) -> Self {
            self.watch.progress = Some(observer);
            self
        }

        /// Stops the operation cleanly when `token` fires (see the module's cancel safety).
        pub fn cancel_on(mut self, token: CancellationToken) -> Self {
            self.watch.cancel = token;
            self
        }
    };
}
pub(super) use watch_setters;

/// The two setters every backup builder has: its tags and its zstd level.
macro_rules! backup_setters {
    () => {
        /// Labels the backup (`reason=pre-migration`); retention can keep by tag.
        pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
            self.tags.insert(key.into(), value.into());
            self
        }

        /// The zstd level (1–22, default 3).
        pub fn level(mut self, level: i32) -> Self {
            self.level = level;
            self
        }
    };
}
pub(super) use backup_setters;

/// [`Ecobackup::backup_logical`]: `pg_dump` of each database, sealed to `[encryption]
/// recipients`, stored in the repository and its mirrors, the manifest signed.
#[must_use = "an operation does nothing until `.run().await`"]
pub struct BackupLogical<'a> {
    eco: &'a Ecobackup,
    databases: Vec<DumpTarget>,
    tags: BTreeMap<String, String>,
    globals: bool,
    level: i32,
    pg_bin: Option<PathBuf>,
    watch: Watch,
}

impl<'a> BackupLogical<'a> {
    pub(super) fn new(eco: &'a Ecobackup, database: DbUrl) -> Self {
        BackupLogical {
            eco,
            databases: vec![DumpTarget::new(database)],
            tags: BTreeMap::new(),
            globals: false,
            level: DEFAULT_LEVEL,
            pg_bin: None,
            watch: Watch::default(),
        }
    }

    /// Also dumps `database`, in the same backup.
    pub fn database(mut self, database: DbUrl) -> Self {
        self.databases.push(DumpTarget::new(database));
        self
    }

    /// Also dumps `target`, with its name, schemas and excluded table data, in the same
    /// backup: `DumpTarget::new(url).without_data_of(&["audit.*".into()])`.
    pub fn target(mut self, target: DumpTarget) -> Self {
        self.databases.push(target);
        self
    }

    /// Also dumps roles and tablespaces (`pg_dumpall --globals-only`).
    pub fn globals(mut self, globals: bool) -> Self {
        self.globals = globals;
        self
    }

    /// The directory of the PostgreSQL programs to run (`pg_dump`, `pg_restore`, `initdb`…),
    /// instead of looking for the server's major version in `ECOBACKUP_PG_BIN_<major>`, the
    /// Debian and RPM layouts and `PATH`.
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
        let targets = self.eco.targets().await?;
        let plan = LogicalBackup {
            databases: self.databases,
            globals: self.globals,
            tags: self.tags,
            sealing: self.eco.sealing(self.level)?,
            pg_bin: self.pg_bin,
            cancel: self.watch.cancel.clone(),
        };
        backup_logical(&targets, &plan, self.watch.progress()).await
    }
}

/// [`Ecobackup::restore_logical`]: the backup's dump into a database through `pg_restore` in
/// one transaction, committed only after both digests passed.
#[must_use = "an operation does nothing until `.run().await`"]
pub struct RestoreLogical<'a> {
    eco: &'a Ecobackup,
    plan: LogicalRestore,
    watch: Watch,
}

impl<'a> RestoreLogical<'a> {
    pub(super) fn new(eco: &'a Ecobackup, backup: String, target: DbUrl) -> Self {
        RestoreLogical {
            eco,
            plan: LogicalRestore {
                backup,
                target,
                database: None,
                create: false,
                clean: false,
                jobs: 1,
                terminate_connections: false,
                no_privileges: false,
                keyring: None,
                pg_bin: None,
                temp_dir: None,
                cancel: CancellationToken::new(),
            },
            watch: Watch::default(),
        }
    }

    /// Which database of a backup of several (its name in the backup).
    pub fn database(mut self, name: impl Into<String>) -> Self {
        self.plan.database = Some(name.into());
        self
    }

    /// Creates the target database (with the recorded encoding, locale and settings); it must
    /// not exist.
    pub fn create(mut self, create: bool) -> Self {
        self.plan.create = create;
        self
    }

    /// Drops the objects the dump holds before recreating them (`pg_restore --clean`).
    pub fn clean(mut self, clean: bool) -> Self {
        self.plan.clean = clean;
        self
    }

    /// Ends other sessions on the target first (they would block `--clean`).
    pub fn terminate_connections(mut self, terminate: bool) -> Self {
        self.plan.terminate_connections = terminate;
        self
    }

    /// The directory of the PostgreSQL programs to run (`pg_dump`, `pg_restore`, `initdb`…),
    /// instead of looking for the server's major version in `ECOBACKUP_PG_BIN_<major>`, the
    /// Debian and RPM layouts and `PATH`.
    pub fn pg_bin(mut self, dir: impl Into<PathBuf>) -> Self {
        self.plan.pg_bin = Some(dir.into());
        self
    }

    watch_setters!();

    /// Restores; nothing is committed unless every byte matched the manifest.
    ///
    /// Cancel safety: see the module documentation.
    pub async fn run(mut self) -> Result<RestoreOutcome> {
        let repo = &self.eco.trusted().await?;
        self.plan.keyring = Some(self.eco.keyring().await?);
        self.plan.cancel = self.watch.cancel.clone();
        under_shared_lock(repo.storage(), "restore logical", async {
            restore_logical(repo, &self.plan, self.watch.progress()).await
        })
        .await
    }
}

/// [`Ecobackup::verify`]: every artifact of a backup read back, decrypted and checked.
#[must_use = "an operation does nothing until `.run().await`"]
pub struct Verify<'a> {
    eco: &'a Ecobackup,
    backup: String,
    watch: Watch,
}

impl<'a> Verify<'a> {
    pub(super) fn new(eco: &'a Ecobackup, backup: String) -> Self {
        Verify {
            eco,
            backup,
            watch: Watch::default(),
        }
    }

    watch_setters!();

    /// Verifies; a damaged artifact is reported in the result (`ok: false`), not as an error.
    ///
    /// Cancel safety: see the module documentation.
    pub async fn run(self) -> Result<BackupCheck> {
        let repo = &self.eco.trusted().await?;
        let keyring = self.eco.keyring().await?;
        under_shared_lock(repo.storage(), "verify", async {
            cancellable(&self.watch.cancel, "verify", async {
                let manifest = repo.resolve(&self.backup, None).await?;
                verify_backup(repo, &manifest, Some(keyring), self.watch.progress()).await
            })
            .await
        })
        .await
    }
}

/// [`Ecobackup::drill`]: a logical backup restored into a throwaway cluster of the installed
/// PostgreSQL, checked, timed, and thrown away.
#[must_use = "an operation does nothing until `.run().await`"]
pub struct DrillLogical<'a> {
    eco: &'a Ecobackup,
    backup: String,
    checks: Option<Checks>,
    pg_bin: Option<PathBuf>,
    watch: Watch,
}

impl<'a> DrillLogical<'a> {
    pub(super) fn new(eco: &'a Ecobackup, backup: String) -> Self {
        DrillLogical {
            eco,
            backup,
            checks: None,
            pg_bin: None,
            watch: Watch::default(),
        }
    }

    /// These checks instead of the file `[drill] checks` names.
    pub fn checks(mut self, checks: Checks) -> Self {
        self.checks = Some(checks);
        self
    }

    /// The directory of the PostgreSQL programs to run (`pg_dump`, `pg_restore`, `initdb`…),
    /// instead of looking for the server's major version in `ECOBACKUP_PG_BIN_<major>`, the
    /// Debian and RPM layouts and `PATH`.
    pub fn pg_bin(mut self, dir: impl Into<PathBuf>) -> Self {
        self.pg_bin = Some(dir.into());
        self
    }

    watch_setters!();

    /// Drills; a failed check is in the report (`passed: false`), not an error.
    ///
    /// Cancel safety: see the module documentation.
    pub async fn run(self) -> Result<DrillReport> {
        let settings = &self.eco.config.drill;
        let checks = match (self.checks, &settings.checks) {
            (Some(checks), _) => checks,
            (None, Some(path)) => Checks::load(path)?,
            (None, None) => Checks::default(),
        };
        let repo = &self.eco.trusted().await?;
        let plan = DrillPlan {
            backup: self.backup,
            kind: Some(BackupKind::Logical),
            checks,
            target: DrillTarget::Scratch,
            keyring: self.eco.keyring().await?,
            pg_bin: self.pg_bin,
            durable: settings.durable,
            physical: PhysicalDrill::default(),
            scratch_dir: settings.scratch_dir.clone(),
            cancel: self.watch.cancel.clone(),
        };
        under_shared_lock(repo.storage(), "drill", async {
            drill(repo, &plan, self.watch.progress()).await
        })
        .await
    }
}

/// [`Ecobackup::prune`]: the `[retention]` policy carried out under the exclusive lock.
#[must_use = "an operation does nothing until `.run().await`"]
pub struct Prune<'a> {
    eco: &'a Ecobackup,
    options: PruneOptions,
    watch: Watch,
}

impl<'a> Prune<'a> {
    pub(super) fn new(eco: &'a Ecobackup) -> Self {
        Prune {
            eco,
            options: PruneOptions::default(),
            watch: Watch::default(),
        }
    }

    /// Plans and reports, deletes nothing.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.options.dry_run = dry_run;
        self
    }

    /// Carries out a plan that deletes more than the safety rail allows.
    pub fn allow_large(mut self, allow: bool) -> Self {
        self.options.allow_large = allow;
        self
    }

    watch_setters!();

    /// Prunes. Without `[retention]`, refuses: a policy must say what is kept.
    ///
    /// Cancel safety: see the module documentation.
    pub async fn run(mut self) -> Result<PruneReport> {
        let policy = self
            .eco
            .config
            .retention
            .as_ref()
            .ok_or_else(|| Error::Config {
                section: "retention".to_owned(),
                detail: "no [retention] policy: prune deletes only what a policy does not keep"
                    .to_owned(),
            })?
            .validate()?;
        self.options.cancel = self.watch.cancel.clone();
        self.options.now = chrono::Utc::now();
        // Only signed manifests count as backups a policy keeps: one planted by whoever can
        // write to the bucket must not make the real ones look expendable.
        let repo = &self.eco.trusted().await?;
        prune(repo, &policy, &self.options, self.watch.progress()).await
    }
}
