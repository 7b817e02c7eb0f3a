//! What a physical backup must know about the server before it starts: version, WAL segment
//! size, whether and where it archives WAL, tablespaces, and the role's right to replicate.

use crate::error::remedy;
use crate::error::{Error, Result};
use crate::postgres::DbUrl;

/// The server's answers, read over ecobackup's own connection.
#[derive(Clone, Debug)]
pub struct ServerState {
    /// `server_version` (`15.18`).
    pub server_version: String,
    /// Its major version (15).
    pub major_version: u32,
    /// `wal_segment_size`, bytes.
    pub wal_segment_size: u64,
    /// `archive_mode`: `off`, `on` or `always`.
    pub archive_mode: String,
    /// `archive_command`, when the role may read it.
    pub archive_command: Option<String>,
    /// `archive_library` (PostgreSQL 15+), when set.
    pub archive_library: Option<String>,
    /// `pg_stat_archiver.last_archived_wal`.
    pub last_archived_wal: Option<String>,
    /// The system identifier, when the role may read `pg_control_system()`.
    pub system_identifier: Option<u64>,
    /// Tablespaces beside `pg_default` and `pg_global`.
    pub tablespaces: Vec<String>,
    /// Whether the role may start a base backup (REPLICATION or superuser).
    pub may_replicate: bool,
    /// The sum of the databases' sizes, when the role may read it.
    pub size_estimate: Option<u64>,
    /// The bootstrap superuser (the role `initdb` made, oid 10): the role a restore drill
    /// connects as to the restored copy.
    pub bootstrap_superuser: String,
}

impl ServerState {
    /// Asks the server.
    pub async fn read(client: &tokio_postgres::Client, url: &DbUrl) -> Result<ServerState> {
        let asking = |what: &str| format!("asking {what} of");
        let row = client
            .query_one(
                "SELECT current_setting('server_version'), \
                        current_setting('server_version_num')::int, \
                        (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'), \
                        current_setting('archive_mode'), \
                        current_setting('archive_library', true), \
                        (SELECT last_archived_wal FROM pg_stat_archiver), \
                        ARRAY(SELECT spcname::text FROM pg_tablespace \
                              WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY 1), \
                        (SELECT rolsuper OR rolreplication FROM pg_roles \
                         WHERE rolname = current_user), \
                        (SELECT rolname::text FROM pg_roles WHERE oid = 10)",
                &[],
            )
            .await
            .map_err(|e| url.error(&asking("the WAL settings"), e))?;
        let version_num: i32 = row.get(1);
        // archive_command and pg_control_system() may be closed to a least-privilege role:
        // what cannot be read stays unknown, and the end-of-backup check still proves the
        // archive works.
        let archive_command = client
            .query_one("SELECT current_setting('archive_command')", &[])
            .await
            .ok()
            .map(|r| r.get::<_, String>(0));
        let system_identifier = crate::postgres::facts::system_identifier(client)
            .await
            .and_then(|id| id.parse().ok());
        let size_estimate = client
            .query_one(
                "SELECT sum(pg_database_size(oid))::bigint FROM pg_database WHERE datallowconn",
                &[],
            )
            .await
            .ok()
            .and_then(|r| r.get::<_, Option<i64>>(0))
            .map(|s| s.max(0) as u64);
        Ok(ServerState {
            server_version: row.get(0),
            major_version: (version_num / 10000) as u32,
            wal_segment_size: row.get::<_, i64>(2) as u64,
            archive_mode: row.get(3),
            archive_command,
            archive_library: row.get::<_, Option<String>>(4).filter(|s| !s.is_empty()),
            last_archived_wal: row.get(5),
            system_identifier,
            tablespaces: row.get(6),
            may_replicate: row.get::<_, Option<bool>>(7).unwrap_or(false),
            size_estimate,
            bootstrap_superuser: row.get(8),
        })
    }

    /// Refuses what a streamed base backup cannot do, with what to do instead.
    pub fn check_backup_possible(&self, url: &DbUrl) -> Result<()> {
        let refuse = |detail: String| Error::Postgres {
            context: format!("starting a physical backup of {}", url.redacted()),
            detail,
        };
        if !self.may_replicate {
            return Err(refuse(format!(
                "role {:?} may not take a base backup: it needs the REPLICATION attribute (ALTER ROLE {} REPLICATION) and a `replication` line in pg_hba.conf",
                url.user(),
                crate::postgres::quote_ident(url.user())
            )));
        }
        if !self.tablespaces.is_empty() {
            return Err(refuse(format!(
                "the cluster has tablespaces outside the data directory ({}), which a streamed base backup cannot hold yet; back them up logically (`backup logical`) or move them into pg_default",
                self.tablespaces.join(", ")
            )));
        }
        Ok(())
    }

    /// Checks that the server archives its WAL: `archive_mode` on, no `archive_library`, and
    /// an `archive_command` that is set (when the role may read it; one that does not name
    /// `wal-push` is warned about, as it may be a wrapper script).
    pub fn check_archiving(&self, url: &DbUrl) -> Result<()> {
        let refuse = |detail: String| Error::Postgres {
            context: format!("starting a physical backup of {}", url.redacted()),
            detail: remedy!(
                cli: "{detail}; or give --allow-no-archive for a backup that restores to its end only (no point-in-time recovery)",
                library: "{detail}; or allow a backup without archiving (PhysicalBackup::allow_no_archive), which restores to its end only (no point-in-time recovery)",
            ),
        };
        if self.archive_mode == "off" {
            return Err(refuse(
                "archive_mode is off, so no WAL reaches the repository and the backup could not be restored: set archive_mode = on and archive_command = 'ecobackup … wal-push %p' (restart needed)".to_owned(),
            ));
        }
        if let Some(library) = &self.archive_library {
            return Err(refuse(format!(
                "archive_library is set ({library:?}), so archive_command is not used: ecobackup archives through archive_command = 'ecobackup … wal-push %p'"
            )));
        }
        if let Some(command) = &self.archive_command {
            if command.trim().is_empty() {
                return Err(refuse(
                    "archive_command is empty, so no WAL reaches the repository: set archive_command = 'ecobackup … wal-push %p'".to_owned(),
                ));
            }
            // A wrapper script may call wal-push: not a refusal. What proves the archive is
            // this repository is the server's last archived file being in it (checked next)
            // and the stop segment arriving (waited for at the end).
            if !command.contains("wal-push") {
                tracing::warn!(
                    archive_command = %command,
                    "archive_command does not name `ecobackup wal-push`; if it is a wrapper around it, fine: the backup still waits for its stop segment to reach this repository"
                );
            }
        }
        Ok(())
    }
}
