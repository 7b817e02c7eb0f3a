//! # ecobackup-core
//!
//! The library behind the `ecobackup` CLI: PostgreSQL backups as streaming pipelines
//! (source → zstd → age → storage), with nothing written to local disk in between.
//!
//! A Rust service links this crate to take the same backups the CLI takes, for example a
//! snapshot before every schema migration. Everything the CLI does is here; the CLI only
//! parses flags and prints.
//!
//! ```no_run
//! use ecobackup_core::{postgres::DbUrl, Config, Ecobackup};
//!
//! # async fn snapshot() -> ecobackup_core::Result<()> {
//! // The repository and keys from ecobackup.toml and the ECOBACKUP_* variables, as the CLI
//! // reads them; or build a `Config` in code: the library reads no variable unless asked.
//! let eco = Ecobackup::open(Config::from_env()?).await?;
//! let db = DbUrl::parse("postgres://backup@db.internal/shop")?;
//! let snapshot = eco.backup_logical(db).tag("reason", "pre-migration").run().await?;
//! println!("snapshot {} taken", snapshot.id);
//! # Ok(()) }
//! ```
//!
//! [`Ecobackup`] is the entry point: opened from a [`Config`], it runs each operation as a
//! builder (`backup_logical`, `restore_logical`, `verify`, `drill`, `prune`, `status`) that
//! takes a [`cancel::CancellationToken`] and a [`progress::Progress`] observer, and fails with
//! an [`Error`] whose [`kind`](Error::kind) says what a caller can do ([`Error::is_retryable`]).
//! `ecobackup-core/examples/pre_migration.rs` is a whole service-like program. The modules
//! below are the lower layer the handle and the CLI are built from:
//!
//! - [`pipeline`]: the [`Source`](pipeline::Source) / [`Transform`](pipeline::Transform) /
//!   [`Sink`](pipeline::Sink) traits and the [`Pipeline`](pipeline::Pipeline) that runs them.
//! - [`transform`]: zstd, age encryption and decryption, SHA-256 digests.
//! - [`crypto`]: recipients, identity files, keyrings.
//! - [`io`]: sources and sinks over files, pipes and any `AsyncRead`/`AsyncWrite`;
//!   [`process`]: child programs (pg_dump, pg_restore) as sources and sinks.
//! - [`storage`]: directories, S3-compatible services and memory through `object_store`;
//!   [`repository`]: the layout, manifests, backup ids and locks on top of it.
//! - [`artifact`]: one artifact into and out of a repository, digests checked.
//! - [`backup`], [`restore`]: logical backups and restores; [`verify`]: every stored byte
//!   checked; [`drill`]: restore drills with checks, RTO and RPO.
//! - [`monitor`]: `status` and `check` (Nagios/Icinga findings, Prometheus metrics).
//! - [`retention`]: which backups `prune` keeps (grandfather-father-son, tags) as a pure plan,
//!   and [`retention::prune()`], which carries it out under the repository lock.
//! - [`physical`]: base backups and point-in-time restores.
//! - [`files`]: directories and files (uploads, keys, `.env`) as a streamed tar, and their
//!   checked restore; the secrets profile's domain isolation.
//! - [`wal`]: WAL archiving (`wal-push`, `wal-fetch`), segment and timeline names.
//! - [`postgres`]: connections, server facts, programs of the right version, throwaway clusters
//!   (for drills); [`progress`]: progress for whoever watches.
//!
//! Artifacts are standard age v1 files holding a zstd stream (docs/FORMAT.md), so a backup
//! restores with stock tools when ecobackup is not at hand.

#![warn(missing_docs)]

pub mod artifact;
pub mod backup;
pub mod cancel;
pub mod config;
pub mod crypto;
pub mod drill;
pub mod error;
pub mod files;
pub mod handle;
pub mod io;
pub mod monitor;
pub mod physical;
pub mod pipeline;
pub mod postgres;
pub mod process;
pub mod progress;
pub mod repository;
pub mod restore;
pub mod retention;
pub mod storage;
pub mod transform;
pub mod verify;
pub mod wal;

pub use config::Config;
pub use error::{Error, ErrorKind, Result};
pub use handle::Ecobackup;
