//! WAL archiving: the `archive_command` and `restore_command` sides, and the archive's layout.
//!
//! ```text
//! <repo>/wal/cluster.json                 the cluster: system identifier, segment size
//! <repo>/wal/<timeline>/<file>.json       each file's record: raw SHA-256 and size (signed)
//! <repo>/wal/<timeline>/<file>.zst.age    segments, .history, .backup and .partial files
//! ```
//!
//! - `names`: LSNs, segment names and the four archived forms; [`header`]: a segment's page
//!   header; [`archive`]: the layout, the cluster identity, [`find`] and [`list`].
//! - [`push`](push::push): one file in, idempotently; [`fetch`](fetch::fetch): one file out,
//!   telling "not archived" from every failure; `spool`: what prefetching leaves for the next
//!   fetch; [`timeline`] and `check`: history files, gaps, and `verify --wal`.

pub mod archive;
pub(crate) mod check;
pub mod fetch;
pub mod header;
pub(crate) mod names;
pub(crate) mod push;
pub(crate) mod spool;
pub mod timeline;

pub use archive::{
    cluster_identity, find, list, newest_segments, ArchivedWal, ClusterIdentity, WalRecord,
};
pub use check::{verify_wal, WalCheck};
pub use fetch::{fetch, prefetch, FetchOptions, Fetched, PrefetchReport};
pub use names::{Lsn, Segment, WalFile, DEFAULT_SEGMENT_SIZE};
pub use push::{push, PushOptions, PushOutcome};
pub use spool::Spool;
pub use timeline::{HistoryEntry, RequirementCheck, WalRequirement};
