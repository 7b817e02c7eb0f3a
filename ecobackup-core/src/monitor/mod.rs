//! Monitoring: what a repository holds now ([`status`]), whether that is good enough
//! ([`check`], against [`Thresholds`]), and the same as Prometheus metrics ([`metrics`]).
//!
//! ```
//! use chrono::{Duration, Utc};
//! use ecobackup_core::monitor::{check, worst, RepositoryStatus, Severity, Thresholds};
//!
//! # fn status() -> RepositoryStatus { unimplemented!() }
//! # fn run() {
//! let status: RepositoryStatus = status(); // monitor::status(&repo, Utc::now()).await?
//! let findings = check(&status, &Thresholds::seeds(), Utc::now());
//! std::process::exit(worst(&findings).exit_code().into());
//! # }
//! ```
//!
//! - [`status()`] reads: per kind and database the newest good backup (its age, stored size and
//!   duration) and how many there are; per timeline the newest archived segment and its age;
//!   the stored drill summaries ([`crate::drill::drill_history`]); the repository's size and
//!   object count. Only manifests and listings are read: no identity is needed.
//! - [`check()`] is pure: the same status and `now` always give the same findings, each with a
//!   [`Severity`] (the seeds' SEV-1 is CRITICAL, SEV-2 WARNING) and plugin performance data.
//! - WAL lag: the age of the newest archived segment is what the repository alone can tell,
//!   and it also grows on an idle server with `archive_timeout` unset. With the server's
//!   archiver ([`ArchiverState::read`], `check --db`), the lag is how long *completed* WAL has
//!   waited to be archived: zero on an idle server ([`ArchiverState::waiting`]).

pub(crate) mod archiver;
mod check;
pub mod metrics;
mod status;
mod units;

pub use archiver::{ArchiverState, Waiting};
pub use check::{check, worst, Finding, PerfData, Severity, Thresholds};
pub use status::{status, BackupGroup, LastBackup, RepositoryStatus, ServerArchive, TimelineWal};
pub use units::{ByteSize, Span};

#[cfg(test)]
mod tests;
