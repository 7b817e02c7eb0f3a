//! Logical restores: a database's dump streamed from the repository through age and zstd into
//! `pg_restore`.
//!
//! With one job the dump goes straight into `pg_restore --single-transaction`: a restore that
//! fails halfway (a tampered artifact, a wrong key, a dropped connection) rolls back and leaves
//! the target as it was. Parallel restore (`jobs > 1`) needs a seekable file, so the dump is
//! first downloaded to a private temporary file; it is not atomic (pg_restore's limitation).
//!
//! `--create` creates the target database itself rather than through pg_restore's `--create`
//! (which would use the archive's name and needs a connection to another database): from the
//! database properties recorded in the backup's encrypted catalog
//! ([`crate::postgres::DatabaseProperties`]: encoding, locale provider and
//! locales, tablespace when it exists here), under the target's name. Once pg_restore succeeded,
//! the connection limit, `ALTER DATABASE … SET` settings, the comment and — unless
//! `no_privileges` — `ALTER ROLE … IN DATABASE … SET` settings and GRANTs follow, in one
//! transaction. A failure anywhere drops the database created for the restore.

use crate::error::remedy;
use std::path::PathBuf;
use std::sync::Arc;

use crate::artifact;
use crate::backup::{Catalog, CATALOG_ARTIFACT};
use crate::crypto::Keyring;
use crate::error::{Error, Result};
use crate::io::FileSink;
use crate::pipeline::PipelineReport;
use crate::postgres::binaries::find_program;
use crate::postgres::{major_of, quote_ident, DatabaseProperties, DbUrl};
use crate::process::{ChildCommand, ChildSink};
use crate::progress::Progress;
use crate::repository::{ArtifactEntry, BackupKind, Manifest, Repository};

/// What to restore, where, and how.
///
/// `#[non_exhaustive]`: build it with `new` and set fields; a field added
/// later is not a breaking change.
#[derive(Clone)]
#[non_exhaustive]
pub struct LogicalRestore {
    /// A backup id, or `latest`.
    pub backup: String,
    /// The target database.
    pub target: DbUrl,
    /// Which database of the backup to restore; needed only when it holds several.
    pub database: Option<String>,
    /// Create the target database first (it must not exist).
    pub create: bool,
    /// Drop the objects of the dump before recreating them (`--clean --if-exists`).
    pub clean: bool,
    /// Parallel pg_restore jobs; above 1 the dump is downloaded to a temporary file first.
    pub jobs: u32,
    /// Terminate other sessions on the target database instead of refusing to restore.
    pub terminate_connections: bool,
    /// Skip GRANTs and REVOKEs (`--no-privileges`): for a target where the backup's roles do not
    /// exist, such as a drill on another server.
    pub no_privileges: bool,
    /// Identities able to decrypt the backup.
    pub keyring: Option<Arc<Keyring>>,
    /// `--pg-bin`.
    pub pg_bin: Option<PathBuf>,
    /// Where the temporary file of a parallel restore goes (default: the system temp dir).
    pub temp_dir: Option<PathBuf>,
    /// Cancels the operation: it stops, cleans up what it started (uploads, stored artifacts,
    /// its lock) and returns [`Error::Cancelled`]. Never fires by default.
    pub cancel: crate::cancel::CancellationToken,
}

impl LogicalRestore {
    /// `backup` (an id or `latest`) into the existing database `target`, in one job.
    pub fn new(backup: impl Into<String>, target: DbUrl) -> LogicalRestore {
        LogicalRestore {
            backup: backup.into(),
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
            cancel: Default::default(),
        }
    }
}

/// What a restore did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RestoreOutcome {
    /// The backup restored.
    pub backup_id: String,
    /// The artifact restored.
    pub artifact: String,
    /// The target database URL, without password.
    pub target: String,
    /// Whether the target database was created.
    pub created: bool,
    /// Sessions terminated before restoring.
    pub terminated_connections: u64,
    /// The download/decrypt/restore pipeline's report.
    pub report: PipelineReport,
}

fn refused(target: &DbUrl, detail: String) -> Error {
    Error::Postgres {
        context: format!("restoring into {}", target.redacted()),
        detail,
    }
}

/// The major version of the server the dump `entry` came from: that of the server that held its
/// database (a backup may span servers of several versions), else that of the first server.
/// `None` when the manifest does not say.
fn dump_major(manifest: &Manifest, entry: &ArtifactEntry) -> Option<u32> {
    let database = entry.name.split(".dump").next()?;
    let version = manifest
        .source
        .servers
        .iter()
        .find(|server| server.databases.iter().any(|d| d == database))
        .map(|server| server.server_version.as_str())
        .or(manifest.source.server_version.as_deref())?;
    major_of(version)
}

/// Which dump of `manifest` to restore.
fn choose_artifact<'m>(
    manifest: &'m Manifest,
    database: Option<&str>,
) -> Result<&'m ArtifactEntry> {
    let dumps: Vec<&ArtifactEntry> = manifest
        .artifacts
        .iter()
        .filter(|a| a.name.contains(".dump"))
        .collect();
    let problem = |detail: String| Error::Postgres {
        context: format!("restoring backup {}", manifest.id),
        detail,
    };
    let held = manifest.source.databases.join(", ");
    let wanted = match (database, dumps.as_slice()) {
        (Some(name), _) => name.to_owned(),
        (None, [only]) => return Ok(only),
        (None, _) => {
            return Err(problem(remedy!(
                cli: "it holds several databases ({held}): pass --database NAME",
                library: "it holds several databases ({held}): name the one to restore (LogicalRestore::database)",
            )))
        }
    };
    dumps
        .into_iter()
        .find(|a| a.name.split(".dump").next() == Some(wanted.as_str()))
        .ok_or_else(|| problem(format!("it holds no database {wanted:?} (it holds {held})")))
}

/// Reads the encrypted catalog of a logical backup (sizes and row estimates per database).
pub async fn read_catalog(
    repo: &Repository,
    manifest: &Manifest,
    keyring: Option<Arc<Keyring>>,
) -> Result<Catalog> {
    let entry = manifest
        .artifacts
        .iter()
        .find(|a| a.name.starts_with(CATALOG_ARTIFACT))
        .ok_or_else(|| Error::NotFound {
            key: format!("backups/{}/{CATALOG_ARTIFACT}…", manifest.id),
            repo: repo.storage().url().to_owned(),
        })?;
    let sink = crate::io::VecSink::default();
    let bytes = sink.contents();
    artifact::open(
        repo,
        &manifest.id,
        entry,
        keyring,
        sink,
        &crate::progress::NoProgress,
    )
    .await?;
    let bytes = bytes.lock().map(|b| b.clone()).unwrap_or_default();
    serde_json::from_slice(&bytes).map_err(|e| Error::BadManifest {
        key: Repository::artifact_key(&manifest.id, &entry.name),
        detail: e.to_string(),
    })
}

/// The properties recorded in the catalog of `manifest` for the database of `entry`; `None` for
/// a backup made before they were recorded.
async fn recorded_properties(
    repo: &Repository,
    manifest: &Manifest,
    entry: &ArtifactEntry,
    keyring: Option<Arc<Keyring>>,
) -> Result<Option<DatabaseProperties>> {
    let catalog = read_catalog(repo, manifest, keyring).await?;
    let source = entry.name.split(".dump").next().unwrap_or_default();
    Ok(catalog.properties.into_iter().find(|p| p.name == source))
}

/// `CREATE DATABASE` for the target: from the recorded properties, under the target's name.
async fn create_statement(
    admin: &tokio_postgres::Client,
    admin_url: &DbUrl,
    database: &str,
    major: u32,
    properties: Option<&DatabaseProperties>,
    progress: &dyn Progress,
) -> Result<String> {
    let Some(properties) = properties else {
        progress.note("this backup predates recorded database properties: the database is created with the server's defaults (encoding, locale), without its settings, comment and grants");
        return Ok(format!(
            "CREATE DATABASE {} TEMPLATE template0",
            quote_ident(database)
        ));
    };
    let mut properties = properties.clone();
    if let Some(tablespace) = &properties.tablespace {
        let exists = admin
            .query_opt(
                "SELECT 1 FROM pg_tablespace WHERE spcname = $1",
                &[tablespace],
            )
            .await
            .map_err(|e| admin_url.error("looking up tablespaces on", e))?
            .is_some();
        if !exists {
            progress.note(&format!("tablespace {tablespace:?} of the original database does not exist here: the database goes to the default tablespace"));
            properties.tablespace = None;
        }
    }
    Ok(properties.create_statement(database, major))
}

/// Gives a database created for the restore what the original had besides its contents
/// (settings, comment, GRANTs); done after pg_restore, so that no setting of the original
/// (`default_transaction_read_only`, a connection limit) gets in the restore's way.
async fn complete_target(plan: &LogicalRestore, properties: &DatabaseProperties) -> Result<()> {
    let database = plan.target.database();
    let admin_url = plan.target.with_database("postgres");
    let admin = admin_url.connect().await?;
    let owner: String = admin
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
            &[&database],
        )
        .await
        .map_err(|e| admin_url.error("looking up the restored database on", e))?
        .get(0);
    let statements = properties.completing_statements(&database, &owner, !plan.no_privileges);
    if statements.is_empty() {
        return Ok(());
    }
    // One implicit transaction: all of them or none.
    admin
        .batch_execute(&statements.join(";\n"))
        .await
        .map_err(|e| {
            admin_url.error(
                "setting the database properties (settings, comment, grants) on",
                e,
            )
        })
}

/// Prepares the target database: creates it, or checks who else is connected to it.
async fn prepare_target(
    plan: &LogicalRestore,
    major: u32,
    properties: Option<&DatabaseProperties>,
    progress: &dyn Progress,
) -> Result<(bool, u64)> {
    let target = &plan.target;
    let database = target.database();
    let admin_url = target.with_database("postgres");
    let admin = admin_url.connect().await?;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await
        .map_err(|e| admin_url.error("looking up the target database on", e))?
        .is_some();
    if plan.create {
        if exists {
            return Err(refused(
                target,
                remedy!(
                    cli: "database {database:?} already exists: drop --create to restore into it (add --clean to replace its objects)",
                    library: "database {database:?} already exists: restore into it without create (with clean to replace its objects)",
                ),
            ));
        }
        let create =
            create_statement(&admin, &admin_url, &database, major, properties, progress).await?;
        admin
            .batch_execute(&create)
            .await
            .map_err(|e| admin_url.error("creating the target database on", e))?;
        return Ok((true, 0));
    }
    if !exists {
        return Err(refused(
            target,
            remedy!(
                cli: "database {database:?} does not exist: pass --create to create it",
                library: "database {database:?} does not exist: restore with create to create it",
            ),
        ));
    }
    let sessions = admin
        .query(
            "SELECT pid, coalesce(usename, '?'), coalesce(application_name, ''), \
                    coalesce(host(client_addr), 'local') \
             FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&database],
        )
        .await
        .map_err(|e| admin_url.error("listing the sessions on", e))?;
    if sessions.is_empty() {
        return Ok((false, 0));
    }
    if !plan.terminate_connections {
        let who: Vec<String> = sessions
            .iter()
            .take(3)
            .map(|r| {
                let app: String = r.get(2);
                format!(
                    "{}@{}{}",
                    r.get::<_, String>(1),
                    r.get::<_, String>(3),
                    if app.is_empty() {
                        String::new()
                    } else {
                        format!(" ({app})")
                    }
                )
            })
            .collect();
        return Err(refused(target, {
            let count = sessions.len();
            let who = who.join(", ");
            remedy!(
                cli: "database {database:?} has {count} other session(s) ({who}): stop them, or pass --terminate-connections",
                library: "database {database:?} has {count} other session(s) ({who}): stop them, or restore with terminate_connections",
            )
        }));
    }
    let terminated = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&database],
        )
        .await
        .map_err(|e| admin_url.error("terminating the sessions on", e))?;
    Ok((false, terminated.len() as u64))
}

async fn server_major(url: &DbUrl) -> Result<u32> {
    let client = url.with_database("postgres").connect().await?;
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| url.error("asking the server version of", e))?;
    Ok(u32::try_from(row.get::<_, i32>(0) / 10_000).unwrap_or(0))
}

/// Runs pg_restore: streamed with one job, from a temporary file with several.
async fn run_pg_restore(
    repo: &Repository,
    plan: &LogicalRestore,
    manifest: &Manifest,
    entry: &ArtifactEntry,
    pg_restore: &std::path::Path,
    progress: &dyn Progress,
) -> Result<PipelineReport> {
    let mut command = ChildCommand::new(pg_restore)
        .arg("--no-owner")
        .arg("--exit-on-error")
        .arg("--no-password");
    if plan.clean {
        command = command.arg("--clean").arg("--if-exists");
    }
    if plan.no_privileges {
        command = command.arg("--no-privileges");
    }
    let command_for = |command: ChildCommand| plan.target.apply(command);
    if plan.jobs <= 1 {
        let command = command_for(command.arg("--single-transaction"));
        artifact::open(
            repo,
            &manifest.id,
            entry,
            plan.keyring.clone(),
            ChildSink::new(command),
            progress,
        )
        .await
    } else {
        let dir = tempfile::Builder::new()
            .prefix("ecobackup-restore-")
            .tempdir_in(plan.temp_dir.clone().unwrap_or_else(std::env::temp_dir))
            .map_err(|e| Error::io("creating a temporary directory for the parallel restore", e))?;
        let file = dir.path().join("dump");
        let (jobs, file_shown) = (plan.jobs, file.display());
        progress.note(&remedy!(
            cli: "--jobs {jobs}: downloading the dump to {file_shown} first (pg_restore needs a seekable file for a parallel restore; it is deleted afterwards)",
            library: "{jobs} jobs: downloading the dump to {file_shown} first (pg_restore needs a seekable file for a parallel restore; it is deleted afterwards)",
        ));
        let report = artifact::open(
            repo,
            &manifest.id,
            entry,
            plan.keyring.clone(),
            FileSink::new(&file),
            progress,
        )
        .await?;
        let command = command_for(command.arg(format!("--jobs={}", plan.jobs))).arg(&file);
        command.output().await?;
        Ok(report)
    }
}

/// Restores one database of a logical backup.
///
/// Cancel safety: `plan.cancel` stops it cleanly (see [`crate::cancel`]); dropping the future
/// commits nothing, its clean-up then runs in background tasks.
pub async fn restore_logical(
    repo: &Repository,
    plan: &LogicalRestore,
    progress: &dyn Progress,
) -> Result<RestoreOutcome> {
    let manifest = repo
        .resolve(&plan.backup, Some(BackupKind::Logical))
        .await?;
    // Every step (the target's version, its preparation, pg_restore) goes to the server that
    // answered first, not to another host of a list.
    let (_, pinned) = plan
        .target
        .with_database("postgres")
        .connect_pinned()
        .await?;
    let plan = &LogicalRestore {
        target: pinned.with_database(&plan.target.database()),
        ..plan.clone()
    };
    if manifest.kind != BackupKind::Logical {
        return Err(Error::BackupNotFound {
            wanted: format!(
                "{} as a logical backup (it is {})",
                manifest.id, manifest.kind
            ),
            repo: repo.storage().url().to_owned(),
        });
    }
    let entry = choose_artifact(&manifest, plan.database.as_deref())?;
    if !entry.recipients.is_empty() && plan.keyring.is_none() {
        return Err(Error::NoIdentities);
    }
    let major = server_major(&plan.target).await?;
    if let Some(source_major) = dump_major(&manifest, entry).filter(|&s| s > major) {
        return Err(refused(
            &plan.target,
            format!("the backup comes from PostgreSQL {source_major}, the target runs {major}: restore into a server of version {source_major} or newer"),
        ));
    }
    let pg_restore = find_program("pg_restore", major, plan.pg_bin.as_deref()).await?;
    let properties = if plan.create {
        recorded_properties(repo, &manifest, entry, plan.keyring.clone()).await?
    } else {
        None
    };
    let (created, terminated) = prepare_target(plan, major, properties.as_ref(), progress).await?;

    let restored = crate::cancel::cancellable(
        &plan.cancel,
        "restore logical",
        run_pg_restore(repo, plan, &manifest, entry, &pg_restore, progress),
    )
    .await;
    let outcome = match restored {
        Ok(report) => match properties.as_ref().filter(|_| created) {
            Some(properties) => complete_target(plan, properties).await.map(|()| report),
            None => Ok(report),
        },
        Err(e) => Err(e),
    };
    let report = match outcome {
        Ok(report) => report,
        Err(e) => {
            if created {
                // The target is left as it was found: absent.
                if let Err(drop) = plan.target.drop_database().await {
                    tracing::warn!(error = %drop, "could not drop the database created for the failed restore");
                }
            }
            return Err(e);
        }
    };
    Ok(RestoreOutcome {
        backup_id: manifest.id.clone(),
        artifact: entry.name.clone(),
        target: plan.target.redacted(),
        created,
        terminated_connections: terminated,
        report,
    })
}
