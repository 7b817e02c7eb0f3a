//! Retention: which backups `prune` keeps, and why. Pure: no storage, no clock.
//!
//! A [`RetentionPolicy`] is the `[retention]` table of `ecobackup.toml` (grandfather-father-son
//! counts, `keep_within`, tag rules, per-kind overrides). [`RetentionPolicy::validate`] checks it
//! and resolves the rules of each backup kind into a [`ValidatedPolicy`]. [`plan`] applies them
//! to a list of [`Candidate`]s at a given `now` and returns a [`RetentionPlan`]: each backup
//! kept (with its reasons: `newest`, `last 2/5`, `daily 3/30`, `within 7d`,
//! `tag reason=pre-migration: 12d < 90d`) or deleted, and the invalid ones apart.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use ecobackup_core::repository::BackupKind;
//! use ecobackup_core::retention::{plan, Candidate, RetentionPolicy};
//!
//! let mut policy = RetentionPolicy::default();
//! policy.keep_daily = Some(2);
//! let policy = policy.validate()?;
//! let at = |day, hour| Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0).unwrap();
//! let backups = [
//!     Candidate::new("a", BackupKind::Logical, "shop", at(1, 4)),
//!     Candidate::new("b", BackupKind::Logical, "shop", at(2, 4)),
//!     Candidate::new("c", BackupKind::Logical, "shop", at(2, 16)),
//! ];
//! let plan = plan(&policy, &backups, at(3, 0));
//! let kept: Vec<&str> = plan.keep.iter().map(|d| d.id.as_str()).collect();
//! assert_eq!(kept, ["c", "a"]); // the newest of 2 March, the newest of 1 March
//! assert_eq!(plan.delete[0].id, "b");
//! assert_eq!(plan.keep[0].reasons[1].to_string(), "daily 1/2");
//! # Ok::<(), ecobackup_core::Error>(())
//! ```
//!
//! The rules chosen where restic and borg differ or the issue is silent are documented on
//! [`plan`] (order, ties, backups from the future) and [`Period`] (hours across DST changes,
//! ISO weeks).

mod duration;
mod period;
mod plan;
mod policy;
pub mod prune;

#[cfg(test)]
mod tests;

pub use duration::KeepWithin;
pub use period::Period;
pub use plan::{plan, Candidate, Decision, Reason, RetentionPlan};
pub use policy::{KindPolicy, KindRules, RetentionPolicy, TagRule, ValidatedPolicy};
pub use prune::{prune, PruneOptions, PruneReport};
