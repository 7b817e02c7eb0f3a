//! Logical backups: `pg_dump -Fc -Z0` of each database (and `pg_dumpall --globals-only`)
//! streamed through zstd and age into the repository, with no temporary file on local disk.
//!
//! A backup is its manifest. Artifacts are stored first, under a shared repository lock (prune
//! waits); the manifest is written only when every artifact is complete and the lock is still
//! held ([`Targets`]). When any step fails, the artifacts already stored are
//! deleted (or, if that fails too, left as debris that `prune` reports), and no manifest is
//! written: the failed backup never shows up in `list` and is never restored.

use crate::error::remedy;
use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::artifact::Sealing;
use crate::cancel::cancellable;
use crate::error::{Error, Result};
use crate::io::ReaderSource;
use crate::postgres::binaries::find_program;
use crate::postgres::{
    database_facts, database_properties, DatabaseFacts, DatabaseProperties, DbUrl,
};

/// Whether the role `client` is connected as is a superuser.
async fn is_superuser(client: &tokio_postgres::Client, url: &DbUrl) -> Result<bool> {
    client
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map(|row| row.get(0))
        .map_err(|e| url.error("asking the role's privileges on", e))
}
use crate::process::{ChildCommand, ChildSource};
use crate::progress::Progress;
use crate::repository::{
    new_backup_id, ArtifactEntry, BackupKind, Manifest, ServerFacts, SourceFacts, Targets,
    MANIFEST_VERSION,
};

/// The encrypted artifact holding what the plaintext manifest must not: per database, its size
/// and per-table row estimates.
pub const CATALOG_ARTIFACT: &str = "catalog.json";

/// One database to dump, and what of it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DumpTarget {
    /// How to reach it.
    pub url: DbUrl,
    /// Its name in the backup (the artifact `<name>.dump…`, `restore --database NAME`);
    /// `None`: the database's own name.
    pub name: Option<String>,
    /// Only these schemas (`pg_dump --schema=PATTERN`); empty: all.
    pub schemas: Vec<String>,
    /// Leave these schemas out (`--exclude-schema=PATTERN`), e.g. a managed service's own.
    pub exclude_schemas: Vec<String>,
    /// Dump these tables' definitions but not their rows (`--exclude-table-data=PATTERN`).
    pub exclude_table_data: Vec<String>,
}

impl DumpTarget {
    /// The whole database at `url`, under its own name.
    pub fn new(url: DbUrl) -> DumpTarget {
        DumpTarget {
            url,
            name: None,
            schemas: Vec::new(),
            exclude_schemas: Vec::new(),
            exclude_table_data: Vec::new(),
        }
    }

    /// The same, named `name` in the backup.
    pub fn named(mut self, name: &str) -> DumpTarget {
        self.name = Some(name.to_owned());
        self
    }

    /// The same, dumping only the schemas matching `include` (all when empty) but none
    /// matching `exclude` (`pg_dump --schema`, `--exclude-schema` patterns).
    pub fn schemas(mut self, include: &[String], exclude: &[String]) -> DumpTarget {
        self.schemas = include.to_vec();
        self.exclude_schemas = exclude.to_vec();
        self
    }

    /// The same, without the rows of the tables matching `patterns` (`--exclude-table-data`).
    pub fn without_data_of(mut self, patterns: &[String]) -> DumpTarget {
        self.exclude_table_data = patterns.to_vec();
        self
    }

    /// Its name in the backup.
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.url.database())
    }

    /// pg_dump's selection flags.
    fn selection_args(&self, mut command: ChildCommand) -> ChildCommand {
        for pattern in &self.schemas {
            command = command.arg(format!("--schema={pattern}"));
        }
        for pattern in &self.exclude_schemas {
            command = command.arg(format!("--exclude-schema={pattern}"));
        }
        for pattern in &self.exclude_table_data {
            command = command.arg(format!("--exclude-table-data={pattern}"));
        }
        command
    }
}

/// What to back up, and how.
///
/// `#[non_exhaustive]`: build it with `new` and set fields; a field added
/// later is not a breaking change.
#[derive(Clone)]
#[non_exhaustive]
pub struct LogicalBackup {
    /// The databases, one `pg_dump` each.
    pub databases: Vec<DumpTarget>,
    /// Also `pg_dumpall --globals-only` (roles, tablespaces), through the first database's server.
    pub globals: bool,
    /// Labels for the manifest (`reason=pre-migration`).
    pub tags: BTreeMap<String, String>,
    /// zstd level and recipients.
    pub sealing: Sealing,
    /// `--pg-bin`: where pg_dump lives, when not in the usual places.
    pub pg_bin: Option<PathBuf>,
    /// Cancels the operation: it stops, cleans up what it started (uploads, stored artifacts,
    /// its lock) and returns [`Error::Cancelled`]. Never fires by default.
    pub cancel: crate::cancel::CancellationToken,
}

impl LogicalBackup {
    /// `databases`, sealed with `sealing`; no globals, no tags.
    pub fn new(databases: Vec<DumpTarget>, sealing: Sealing) -> LogicalBackup {
        LogicalBackup {
            databases,
            globals: false,
            tags: BTreeMap::new(),
            sealing,
            pg_bin: None,
            cancel: Default::default(),
        }
    }
}

/// The contents of the encrypted [`CATALOG_ARTIFACT`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// Per database: size and row estimates at backup time.
    pub databases: Vec<DatabaseFacts>,
    /// Per database: what `restore --create` recreates (encoding, locale, settings, comment,
    /// GRANTs). Absent in backups made before it was recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<DatabaseProperties>,
}

/// The artifact name of a database's dump: `<database>.dump` plus the sealing suffix.
pub fn dump_artifact_name(database: &str, sealing: &Sealing) -> String {
    format!("{database}.dump{}", sealing.suffix())
}

/// Runs a logical backup into `targets` (a [`crate::repository::Repository`] converts into one target with
/// `.into()`); returns the manifest that was written.
///
/// Cancel safety: `plan.cancel` stops it cleanly (see [`crate::cancel`]); dropping the future
/// commits nothing, its clean-up then runs in background tasks.
pub async fn backup_logical(
    targets: &Targets,
    plan: &LogicalBackup,
    progress: &dyn Progress,
) -> Result<Manifest> {
    if plan.databases.is_empty() {
        return Err(Error::Postgres {
            context: "starting a logical backup".to_owned(),
            detail: remedy!(
                cli: "no database given: pass --db URL (or [[database]] in ecobackup.toml)",
                library: "no database given: add a DumpTarget to the plan (LogicalBackup::new)",
            ),
        });
    }
    let mut names: Vec<String> = plan.databases.iter().map(DumpTarget::name).collect();
    if let Some(bad) = names
        .iter()
        .find(|n| n.is_empty() || n.contains('/') || n.starts_with('.'))
    {
        return Err(Error::Postgres {
            context: "starting a logical backup".to_owned(),
            detail: format!(
                "{bad:?} cannot name a database in a backup (artifact names hold no '/' and do not start with '.'): set [[database]] name"
            ),
        });
    }
    names.sort();
    if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::Postgres {
            context: "starting a logical backup".to_owned(),
            detail: format!("database {:?} is given twice", pair[0]),
        });
    }

    // Everything that can fail before any byte is stored: connections, facts, programs.
    let mut facts = Vec::new();
    let mut superuser = Vec::new();
    let mut properties = Vec::new();
    // Each target narrowed to the server that answered, so that pg_dump reaches it too.
    let mut pinned: Vec<DumpTarget> = Vec::with_capacity(plan.databases.len());
    for target in &plan.databases {
        let (client, url) = target.url.connect_pinned().await?;
        let target = DumpTarget {
            url,
            ..target.clone()
        };
        let mut f = database_facts(&client, &target.url).await?;
        f.name = target.name();
        facts.push(f);
        superuser.push(is_superuser(&client, &target.url).await?);
        let mut p = database_properties(&client, &target.url).await?;
        p.name = target.name();
        properties.push(p);
        pinned.push(target);
    }
    // Each server gets the pg_dump of its own major version (databases may be on several).
    let mut pg_dumps = Vec::new();
    for f in &facts {
        pg_dumps.push(find_program("pg_dump", f.major_version, plan.pg_bin.as_deref()).await?);
    }
    // The databases' servers, in order of first appearance: facts and globals are per server.
    let mut servers: Vec<(String, usize, ServerFacts)> = Vec::new();
    for (i, (target, f)) in pinned.iter().zip(&facts).enumerate() {
        let key = f
            .system_identifier
            .clone()
            .unwrap_or_else(|| format!("{:?}", target.url.endpoints()));
        match servers.iter_mut().find(|(k, _, _)| *k == key) {
            Some((_, _, server)) => server.databases.push(f.name.clone()),
            None => servers.push((
                key,
                i,
                ServerFacts {
                    server_version: f.server_version.clone(),
                    system_identifier: f.system_identifier.clone(),
                    databases: vec![f.name.clone()],
                    globals: None,
                    globals_without_role_passwords: false,
                },
            )),
        }
    }
    let mut pg_dumpalls = Vec::new();
    if plan.globals {
        for (_, first, _) in &servers {
            pg_dumpalls.push(
                find_program(
                    "pg_dumpall",
                    facts[*first].major_version,
                    plan.pg_bin.as_deref(),
                )
                .await?,
            );
        }
    }

    let started_at = Utc::now();
    let id = new_backup_id(BackupKind::Logical, started_at);
    if plan.cancel.is_cancelled() {
        return Err(Error::Cancelled("backup logical".to_owned()));
    }
    let locks = targets.lock("backup logical").await?;
    let mut stored: Vec<ArtifactEntry> = Vec::new();
    let outcome = cancellable(&plan.cancel, "backup logical", async {
        for ((target, facts), pg_dump) in pinned.iter().zip(&facts).zip(&pg_dumps) {
            let command = target.url.apply(
                target.selection_args(
                    ChildCommand::new(pg_dump)
                        .arg("--format=custom")
                        .arg("--compress=0")
                        .arg("--no-password"),
                ),
            );
            let source = ChildSource::new(command, format!("pg_dump {}", facts.name))
                .with_size_hint(Some(facts.size_bytes));
            let name = dump_artifact_name(&facts.name, &plan.sealing);
            stored.push(
                targets
                    .store(&id, &name, source, &plan.sealing, progress)
                    .await?,
            );
        }
        for (n, ((_, first, server), pg_dumpall)) in
            servers.iter_mut().zip(&pg_dumpalls).enumerate()
        {
            // pg_dumpall would connect to `postgres` (or template1); the database we checked
            // is one the role may reach (pg_hba, password file lines).
            let mut command = ChildCommand::new(pg_dumpall)
                .arg("--globals-only")
                .arg("--no-password")
                .arg(format!("--database={}", pinned[*first].url.database()));
            // Role passwords live in pg_authid, which only a superuser may read: a
            // least-privilege backup role dumps the roles without them.
            if !superuser[*first] {
                command = command.arg("--no-role-passwords");
                server.globals_without_role_passwords = true;
            }
            let command = pinned[*first].url.apply(command);
            let source = ChildSource::new(command, "pg_dumpall --globals-only");
            // The first server's are `globals.sql`; another's are named after its first database.
            let name = match n {
                0 => format!("globals.sql{}", plan.sealing.suffix()),
                _ => format!(
                    "globals.{}.sql{}",
                    facts[*first].name,
                    plan.sealing.suffix()
                ),
            };
            server.globals = Some(name.clone());
            stored.push(
                targets
                    .store(&id, &name, source, &plan.sealing, progress)
                    .await?,
            );
        }
        let catalog = serde_json::to_vec_pretty(&Catalog {
            databases: facts.clone(),
            properties: properties.clone(),
        })
        .map_err(|e| Error::io("encoding the catalog", e.into()))?;
        let size = catalog.len() as u64;
        let source =
            ReaderSource::new(CATALOG_ARTIFACT, std::io::Cursor::new(catalog)).with_size_hint(size);
        let name = format!("{CATALOG_ARTIFACT}{}", plan.sealing.suffix());
        stored.push(
            targets
                .store(&id, &name, source, &plan.sealing, progress)
                .await?,
        );

        let manifest = Manifest {
            manifest_version: MANIFEST_VERSION,
            id: id.clone(),
            kind: BackupKind::Logical,
            tags: plan.tags.clone(),
            started_at,
            finished_at: Utc::now(),
            source: SourceFacts {
                globals_without_role_passwords: servers
                    .iter()
                    .any(|(_, _, s)| s.globals_without_role_passwords),
                servers: servers.iter().map(|(_, _, s)| s.clone()).collect(),
                server_version: Some(facts[0].server_version.clone()),
                system_identifier: facts[0].system_identifier.clone(),
                databases: facts.iter().map(|f| f.name.clone()).collect(),
                ..SourceFacts::default()
            },
            artifacts: stored.clone(),
            written_by: format!("ecobackup {}", env!("CARGO_PKG_VERSION")),
            targets: Vec::new(),
        };
        Ok(manifest)
    })
    .await;
    // Checks the locks, commits the manifest, or removes the artifacts where it is not stored.
    targets.finish_backup(&id, locks, outcome, &stored).await
}
