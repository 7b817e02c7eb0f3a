//! Logical backups: `pg_dump -Fc -Z0` of each database (and `pg_dumpall --globals-only`)
//! streamed through zstd and age into the repository, with no temporary file on local disk.
//!
//! A backup is its manifest. Artifacts are stored first, under a lock on the backup id; the
//! manifest is written only when every artifact is complete. When any step fails, the artifacts
//! already stored are deleted (or, if that fails too, left as debris that `prune` reports), and
//! no manifest is written: the failed backup never shows up in `list` and is never restored.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::artifact::{self, Sealing};
use crate::error::{Error, Result};
use crate::io::ReaderSource;
use crate::postgres::binaries::find_program;
use crate::postgres::{database_facts, DatabaseFacts, DbUrl};
use crate::process::{ChildCommand, ChildSource};
use crate::progress::Progress;
use crate::repository::{
    new_backup_id, ArtifactEntry, BackupKind, Lock, Manifest, Repository, SourceFacts,
    MANIFEST_VERSION,
};

/// The encrypted artifact holding what the plaintext manifest must not: per database, its size
/// and per-table row estimates.
pub const CATALOG_ARTIFACT: &str = "catalog.json";

/// How long a backup's lock holds if the process dies without releasing it.
const LOCK_TTL: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// What to back up, and how.
#[derive(Clone)]
pub struct LogicalBackup {
    /// The databases, one `pg_dump` each.
    pub databases: Vec<DbUrl>,
    /// Also `pg_dumpall --globals-only` (roles, tablespaces), through the first database's server.
    pub globals: bool,
    /// Labels for the manifest (`reason=pre-migration`).
    pub tags: BTreeMap<String, String>,
    /// zstd level and recipients.
    pub sealing: Sealing,
    /// `--pg-bin`: where pg_dump lives, when not in the usual places.
    pub pg_bin: Option<PathBuf>,
}

/// The contents of the encrypted [`CATALOG_ARTIFACT`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Per database: size and row estimates at backup time.
    pub databases: Vec<DatabaseFacts>,
}

/// The artifact name of a database's dump: `<database>.dump` plus the sealing suffix.
pub fn dump_artifact_name(database: &str, sealing: &Sealing) -> String {
    format!("{database}.dump{}", sealing.suffix())
}

/// Runs a logical backup into `repo`; returns the manifest that was written.
pub async fn backup_logical(
    repo: &Repository,
    plan: &LogicalBackup,
    progress: &dyn Progress,
) -> Result<Manifest> {
    if plan.databases.is_empty() {
        return Err(Error::Postgres {
            context: "starting a logical backup".to_owned(),
            detail: "no database given: pass --db URL (or [[database]] in ecobackup.toml)"
                .to_owned(),
        });
    }
    let mut names: Vec<String> = plan.databases.iter().map(DbUrl::database).collect();
    names.sort();
    if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::Postgres {
            context: "starting a logical backup".to_owned(),
            detail: format!("database {:?} is given twice", pair[0]),
        });
    }

    // Everything that can fail before any byte is stored: connections, facts, programs.
    let mut facts = Vec::new();
    for url in &plan.databases {
        let client = url.connect().await?;
        facts.push(database_facts(&client, url).await?);
    }
    // Each server gets the pg_dump of its own major version (databases may be on several).
    let mut pg_dumps = Vec::new();
    for f in &facts {
        pg_dumps.push(find_program("pg_dump", f.major_version, plan.pg_bin.as_deref()).await?);
    }
    let pg_dumpall = if plan.globals {
        Some(find_program("pg_dumpall", facts[0].major_version, plan.pg_bin.as_deref()).await?)
    } else {
        None
    };

    let started_at = Utc::now();
    let id = new_backup_id(BackupKind::Logical, started_at);
    let lock = Lock::acquire(repo.storage(), &id, "backup logical", LOCK_TTL).await?;
    let mut stored: Vec<ArtifactEntry> = Vec::new();
    let outcome = async {
        for ((url, facts), pg_dump) in plan.databases.iter().zip(&facts).zip(&pg_dumps) {
            let command = url.apply(
                ChildCommand::new(pg_dump)
                    .arg("--format=custom")
                    .arg("--compress=0")
                    .arg("--no-password"),
            );
            let source = ChildSource::new(command, format!("pg_dump {}", facts.name))
                .with_size_hint(Some(facts.size_bytes));
            let name = dump_artifact_name(&facts.name, &plan.sealing);
            stored.push(artifact::store(repo, &id, &name, source, &plan.sealing, progress).await?);
        }
        if let Some(pg_dumpall) = &pg_dumpall {
            let first = &plan.databases[0];
            let command = first.apply(
                ChildCommand::new(pg_dumpall)
                    .arg("--globals-only")
                    .arg("--no-password"),
            );
            let source = ChildSource::new(command, "pg_dumpall --globals-only");
            let name = format!("globals.sql{}", plan.sealing.suffix());
            stored.push(artifact::store(repo, &id, &name, source, &plan.sealing, progress).await?);
        }
        let catalog = serde_json::to_vec_pretty(&Catalog {
            databases: facts.clone(),
        })
        .map_err(|e| Error::io("encoding the catalog", e.into()))?;
        let size = catalog.len() as u64;
        let source =
            ReaderSource::new(CATALOG_ARTIFACT, std::io::Cursor::new(catalog)).with_size_hint(size);
        let name = format!("{CATALOG_ARTIFACT}{}", plan.sealing.suffix());
        stored.push(artifact::store(repo, &id, &name, source, &plan.sealing, progress).await?);

        let manifest = Manifest {
            manifest_version: MANIFEST_VERSION,
            id: id.clone(),
            kind: BackupKind::Logical,
            tags: plan.tags.clone(),
            started_at,
            finished_at: Utc::now(),
            source: SourceFacts {
                server_version: Some(facts[0].server_version.clone()),
                system_identifier: facts[0].system_identifier.clone(),
                databases: facts.iter().map(|f| f.name.clone()).collect(),
                ..SourceFacts::default()
            },
            artifacts: stored.clone(),
            written_by: format!("ecobackup {}", env!("CARGO_PKG_VERSION")),
        };
        repo.write_manifest(&manifest).await?;
        Ok(manifest)
    }
    .await;

    if outcome.is_err() {
        for entry in &stored {
            let key = Repository::artifact_key(&id, &entry.name);
            if let Err(e) = repo.storage().delete(&key).await {
                tracing::warn!(key = %key, error = %e, "could not delete an artifact of the failed backup; `prune` will report it as debris");
            }
        }
    }
    if let Err(e) = lock.release().await {
        tracing::warn!(error = %e, "could not release the backup lock; it expires by itself");
    }
    outcome
}
