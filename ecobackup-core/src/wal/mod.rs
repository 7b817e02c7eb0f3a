//! WAL archiving: the `archive_command` and `restore_command` sides, and the archive's layout.
//!
//! ```text
//! <repo>/wal/<timeline>/<file>.zst.age   segments, .history, .backup and .partial files
//! ```

pub mod archive;
pub mod names;

pub use names::{Lsn, Segment, WalFile, DEFAULT_SEGMENT_SIZE};
