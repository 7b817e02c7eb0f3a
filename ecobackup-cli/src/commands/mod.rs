//! One module per user-facing command; each maps flags to library calls and prints the result.

pub mod demo;
pub mod drill;
pub mod files;
pub mod filter;
pub mod key;
pub mod logical;
pub mod monitor;
pub mod physical;
pub mod progress;
pub mod prune;
pub mod repo;
pub mod targets;
pub mod verify;
pub mod verify_wal;
pub mod wal;
