//! Files backups: directories and files (uploads, keys, `.env`, web server configuration) as one
//! streamed tar archive, through the same pipeline as every artifact (SHA-256, zstd, age) into
//! `backups/<id>/files.tar.zst.age`; and their restore, checked entry by entry before anything
//! lands in the target directory.
//!
//! - [`backup_files`]: walk (each directory before its contents,
//!   names sorted), tar on a blocking thread feeding the pipeline through a bounded channel (a
//!   file is never loaded whole), manifest written last with [`FilesFacts`]. The default
//!   excludes leave out what is regenerated (`node_modules`, `dist`, `.next`, `.astro`) and
//!   PostgreSQL data directories ([`Excludes`]).
//! - [`restore_files`]: staging directory, entry checks ([`entry_path`], [`unpack_checked`]), moves
//!   into place only after the digests passed, all or nothing ([`restore`]).
//! - [`secrets`]: the secrets profile's domain isolation.
//!
//! The archive is a plain tar (GNU long names, pax `mtime` records for sub-second times): with
//! the identity, `age -d -i key files.tar.zst.age | zstd -d | tar -x` restores it without
//! ecobackup (docs/FORMAT.md, "Files backups").
//!
//! [`FilesFacts`]: crate::repository::FilesFacts

mod archive;
mod backup;
pub mod entry_path;
pub(crate) mod excludes;
mod extract;
pub mod restore;
pub(crate) mod roots;
pub mod secrets;
mod walk;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use serde::Serialize;

pub use archive::MAX_WARNINGS;
pub use backup::{backup_files, latest_of_set, FilesBackup, FilesOutcome, FilesReport};
pub use excludes::{Excludes, DEFAULT_EXCLUDED_DIRS, DEFAULT_EXCLUDES_HELP, PG_DATA_MARKER};
pub use restore::{restore_files, FilesRestore, FilesRestoreOutcome};

/// Unpacks the tar stream `archive` into the empty directory `dir` with every check of a
/// restore (docs/FORMAT.md, "Files backups"), reading the stream to its end; returns
/// how many entries were written. This is the first step of [`restore_files`] alone (no
/// digests, no move into place): for tools that already hold an authenticated archive, and for
/// the fuzz target. The first refused entry is an error naming it; what was written before it
/// stays in `dir`.
pub fn unpack_checked(archive: impl std::io::Read, dir: &std::path::Path) -> crate::Result<u64> {
    let done = extract::extract(archive, dir, &extract::Includes::default())?;
    Ok(done.files + done.directories + done.symlinks + done.hard_links)
}

/// The archive artifact's name, before the sealing suffix (`files.tar.zst.age`).
pub const ARCHIVE_ARTIFACT: &str = "files.tar";

/// An entry that was skipped or changed while it was read: reported, never silent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileWarning {
    /// The entry on disk.
    pub path: PathBuf,
    /// What happened (`skipped: it is a socket…`, `changed: it grew while it was read…`).
    pub problem: String,
}

impl std::fmt::Display for FileWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}",
            crate::error::one_line(&self.path.display()),
            self.problem
        )
    }
}
