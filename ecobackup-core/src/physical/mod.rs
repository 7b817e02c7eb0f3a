//! Physical backups and restores: a base backup of the whole cluster (`pg_basebackup`), and
//! restores of it to a point in time by replaying the archived WAL (see [`crate::wal`]).
//!
//! - [`backup`]: `pg_basebackup` streamed into the repository, with the checks that make sure
//!   its WAL reaches the archive; [`server`]: what the server says before a backup;
//!   [`tar_watch`] and [`label`]: what the base backup says about itself.
//! - [`restore`]: unpack, `pg_verifybackup`, recovery settings ([`recovery`]); `start`: start
//!   the restored server and follow recovery to its end.

pub mod backup;
pub mod label;
pub mod recovery;
pub mod restore;
pub mod server;
pub(crate) mod start;
pub mod tar_watch;
pub(crate) mod unpack;

pub use backup::{backup_physical, PhysicalBackup, BASE_ARTIFACT, MANIFEST_ARTIFACT};
pub use recovery::{RecoveryTarget, TargetAction, TargetTimeline};
pub use restore::{restore_physical, PhysicalRestore, PhysicalRestoreOutcome};
pub use start::{start_recovery, RecoveryEnd, RecoveryOutcome};
