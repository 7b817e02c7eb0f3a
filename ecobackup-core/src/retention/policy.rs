//! The `[retention]` table as written, and the rules each backup kind ends up with.

use std::collections::BTreeMap;
use std::fmt;

use chrono::TimeDelta;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::{KeepWithin, Period};
use crate::error::{Error, Result};
use crate::repository::BackupKind;
use crate::storage::{ObjectLock, ObjectLockMode};

/// `[retention]` in `ecobackup.toml`, as written: what `prune` keeps.
///
/// ```toml
/// [retention]
/// keep_last = 3
/// keep_hourly = 24
/// keep_daily = 30
/// keep_monthly = 12
/// keep_yearly = 4
/// keep_within = "7d"
/// timezone = "Europe/Berlin"
/// [[retention.tag]]
/// tag = "reason=pre-migration"
/// keep_within = "90d"
/// [retention.physical]
/// keep_hourly = 0
/// keep_weekly = 12
/// ```
///
/// A backup is kept when any rule keeps it (see [`plan`](super::plan)). Counts of zero and a
/// `keep_within` of zero are off. Call [`validate`](Self::validate) to get the rules `plan`
/// takes: it refuses a policy that keeps nothing and unknown time zones.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RetentionPolicy {
    /// Keep the N newest backups.
    pub keep_last: Option<u32>,
    /// Keep the newest backup of each of the N newest hours that have one.
    pub keep_hourly: Option<u32>,
    /// Keep the newest backup of each of the N newest days that have one.
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the N newest ISO weeks that have one.
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the N newest months that have one.
    pub keep_monthly: Option<u32>,
    /// Keep the newest backup of each of the N newest years that have one.
    pub keep_yearly: Option<u32>,
    /// Keep every backup that finished less than this long before now.
    pub keep_within: Option<KeepWithin>,
    /// The IANA time zone periods are read in (`Europe/Berlin`); UTC when absent.
    pub timezone: Option<String>,
    /// `[[retention.tag]]`: backups with a tag kept for a while, whatever the other rules say.
    #[serde(default, rename = "tag", skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<TagRule>,
    /// `[retention.logical]`: overrides for logical backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical: Option<KindPolicy>,
    /// `[retention.physical]`: overrides for physical backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub physical: Option<KindPolicy>,
    /// `[retention.files]`: overrides for file backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<KindPolicy>,
    /// S3 Object Lock for everything backups and `wal-push` write: `governance` or
    /// `compliance` (the bucket must have Object Lock enabled). Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<ObjectLockMode>,
    /// How long written objects stay locked; by default `keep_within` (every backup is kept
    /// at least that long anyway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_for: Option<KeepWithin>,
}

/// `[retention.logical]`, `[retention.physical]` or `[retention.files]`: the base policy's keys,
/// for one kind of backup.
///
/// Key by key: a key set here replaces the base's value for this kind, a key left out is
/// inherited from `[retention]`. So `[retention.physical] keep_daily = 7` changes the daily
/// count and nothing else, and a base rule is switched off for one kind by setting it to zero
/// (`keep_hourly = 0`, `keep_within = "0d"`). Tag rules listed here are added to the base's.
/// Inheriting rather than replacing the whole table errs on keeping: a table holding only
/// `timezone` does not silently switch every count off.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct KindPolicy {
    /// Replaces [`RetentionPolicy::keep_last`].
    pub keep_last: Option<u32>,
    /// Replaces [`RetentionPolicy::keep_hourly`].
    pub keep_hourly: Option<u32>,
    /// Replaces [`RetentionPolicy::keep_daily`].
    pub keep_daily: Option<u32>,
    /// Replaces [`RetentionPolicy::keep_weekly`].
    pub keep_weekly: Option<u32>,
    /// Replaces [`RetentionPolicy::keep_monthly`].
    pub keep_monthly: Option<u32>,
    /// Replaces [`RetentionPolicy::keep_yearly`].
    pub keep_yearly: Option<u32>,
    /// Replaces [`RetentionPolicy::keep_within`].
    pub keep_within: Option<KeepWithin>,
    /// Replaces [`RetentionPolicy::timezone`].
    pub timezone: Option<String>,
    /// Added to [`RetentionPolicy::tags`].
    #[serde(default, rename = "tag", skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<TagRule>,
}

/// `[[retention.tag]]`: keep backups carrying a tag for a while (`reason=pre-migration` kept 90
/// days), regardless of the period rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagRule {
    /// `key=value` matches backups whose tag `key` is `value`; a bare `key` matches any value.
    pub tag: String,
    /// How long after it finished a matching backup is kept.
    pub keep_within: KeepWithin,
}

impl TagRule {
    /// A rule keeping backups tagged `tag` for `keep_within`.
    pub fn new(tag: impl Into<String>, keep_within: KeepWithin) -> Self {
        TagRule {
            tag: tag.into(),
            keep_within,
        }
    }

    /// Whether a backup with these tags matches. The rule's text splits at its first `=`, as
    /// `--tag` does.
    pub fn matches(&self, tags: &BTreeMap<String, String>) -> bool {
        match self.tag.split_once('=') {
            Some((key, value)) => tags.get(key).is_some_and(|v| v == value),
            None => tags.contains_key(&self.tag),
        }
    }
}

impl RetentionPolicy {
    /// Checks the policy and resolves each kind's rules (overrides applied, time zone looked
    /// up): the form [`plan`](super::plan) takes.
    ///
    /// Refused with [`Error::Config`]: a kind whose rules keep nothing (every count zero or
    /// absent, no `keep_within`, no tag rule: prune would delete all but the newest backup),
    /// an unknown time zone, a tag rule with an empty key or a zero `keep_within`.
    pub fn validate(&self) -> Result<ValidatedPolicy> {
        let base = self.base();
        // The base's own keys first, so that an error in them names [retention].
        let base_rules = KindRules::try_from(base.clone())?;
        let kind = |kind: BackupKind, over: &Option<KindPolicy>| match over {
            Some(over) => KindRules::try_from(base.with(over, kind)),
            None => Ok(base_rules.clone()),
        };
        let validated = ValidatedPolicy {
            lock: None,
            logical: kind(BackupKind::Logical, &self.logical)?,
            physical: kind(BackupKind::Physical, &self.physical)?,
            files: kind(BackupKind::Files, &self.files)?,
        };
        for rules in [&validated.logical, &validated.physical, &validated.files] {
            rules.check()?;
        }
        Ok(ValidatedPolicy {
            lock: self.object_lock()?,
            ..validated
        })
    }

    /// The Object Lock mode and how long it lasts (`lock_for`, else `keep_within`), checked
    /// on its own: what writers need, without the rest of the policy (a mistake elsewhere in
    /// `[retention]` must not stop `wal-push`).
    pub fn object_lock(&self) -> Result<Option<(ObjectLockMode, TimeDelta)>> {
        let refuse = |detail: &str| Error::Config {
            section: "retention".to_owned(),
            detail: detail.to_owned(),
        };
        let length = self
            .lock_for
            .as_ref()
            .or(self.keep_within.as_ref())
            .filter(|d| !d.is_zero());
        match (self.lock, length) {
            (None, _) if self.lock_for.is_some() => Err(refuse(
                "lock_for is set but lock is not: add lock = \"governance\" or \"compliance\", or remove lock_for",
            )),
            (None, _) => Ok(None),
            (Some(_), None) => Err(refuse(
                "lock needs a length: lock_for = \"30d\" (or a keep_within, which it defaults to)",
            )),
            (Some(mode), Some(length)) => Ok(Some((mode, length.duration()))),
        }
    }

    /// The base table's keys, unchecked.
    fn base(&self) -> Draft {
        Draft {
            table: "retention".to_owned(),
            counts: [
                self.keep_last,
                self.keep_hourly,
                self.keep_daily,
                self.keep_weekly,
                self.keep_monthly,
                self.keep_yearly,
            ],
            keep_within: self.keep_within.clone(),
            timezone: self.timezone.clone(),
            tags: self.tags.clone(),
        }
    }
}

/// Keys as merged, before the time zone is looked up and the whole is checked.
#[derive(Clone)]
struct Draft {
    table: String,
    /// `keep_last` then the periods in [`Period::ALL`] order.
    counts: [Option<u32>; 6],
    keep_within: Option<KeepWithin>,
    timezone: Option<String>,
    tags: Vec<TagRule>,
}

impl Draft {
    /// `over` applied on top of the base for `kind`.
    fn with(&self, over: &KindPolicy, kind: BackupKind) -> Draft {
        let over_counts = [
            over.keep_last,
            over.keep_hourly,
            over.keep_daily,
            over.keep_weekly,
            over.keep_monthly,
            over.keep_yearly,
        ];
        let mut counts = self.counts;
        for (count, over) in counts.iter_mut().zip(over_counts) {
            *count = over.or(*count);
        }
        Draft {
            table: format!("retention.{kind}"),
            counts,
            keep_within: over.keep_within.clone().or(self.keep_within.clone()),
            timezone: over.timezone.clone().or(self.timezone.clone()),
            tags: self.tags.iter().chain(&over.tags).cloned().collect(),
        }
    }
}

impl TryFrom<Draft> for KindRules {
    type Error = Error;
    fn try_from(draft: Draft) -> Result<KindRules> {
        let config = |detail: String| Error::Config {
            section: draft.table.clone(),
            detail,
        };
        let timezone = match &draft.timezone {
            None => Tz::UTC,
            Some(name) => name.parse::<Tz>().map_err(|_| {
                config(format!(
                    "unknown time zone {name:?}: give an IANA name as spelled in the tz \
                     database, such as \"UTC\", \"Europe/Berlin\" or \"America/New_York\""
                ))
            })?,
        };
        for rule in &draft.tags {
            let key = rule.tag.split('=').next().unwrap_or_default();
            if key.trim().is_empty() {
                return Err(config(format!(
                    "tag rule {:?} has no tag name: write key=value (e.g. \
                     \"reason=pre-migration\") or a bare key",
                    rule.tag
                )));
            }
            if rule.keep_within.is_zero() {
                return Err(config(format!(
                    "tag rule {:?} has keep_within = {:?}, which keeps nothing: give a \
                     duration such as \"90d\" or remove the rule",
                    rule.tag,
                    rule.keep_within.as_str()
                )));
            }
        }
        let [last, periods @ ..] = draft.counts.map(Option::unwrap_or_default);
        Ok(KindRules {
            table: draft.table,
            keep_last: last,
            periods: Period::ALL
                .into_iter()
                .zip(periods)
                .filter(|(_, count)| *count > 0)
                .collect(),
            keep_within: draft.keep_within.filter(|w| !w.is_zero()),
            timezone,
            tags: draft.tags,
        })
    }
}

/// A [`RetentionPolicy`] that passed [`RetentionPolicy::validate`]: the rules of each kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatedPolicy {
    logical: KindRules,
    physical: KindRules,
    files: KindRules,
    lock: Option<(ObjectLockMode, TimeDelta)>,
}

impl ValidatedPolicy {
    /// The Object Lock mode, and how long each object written stays locked.
    pub fn object_lock(&self) -> Option<(ObjectLockMode, TimeDelta)> {
        self.lock
    }

    /// The lock for objects written now: its mode and `now` + its length.
    pub fn object_lock_at(&self, now: chrono::DateTime<chrono::Utc>) -> Option<ObjectLock> {
        self.lock.map(|(mode, length)| ObjectLock {
            mode,
            retain_until: now + length,
        })
    }

    /// The rules for backups of `kind`.
    pub fn rules(&self, kind: BackupKind) -> &KindRules {
        match kind {
            BackupKind::Logical => &self.logical,
            BackupKind::Physical => &self.physical,
            BackupKind::Files => &self.files,
        }
    }
}

/// The rules one kind of backup is pruned by: its table's keys over the base's, checked.
///
/// Displays as a one-line summary: `[retention.physical] last 3, daily 7, weekly 12, within 7d,
/// tag reason=pre-migration 90d, time zone Europe/Berlin`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindRules {
    table: String,
    keep_last: u32,
    periods: Vec<(Period, u32)>,
    keep_within: Option<KeepWithin>,
    timezone: Tz,
    tags: Vec<TagRule>,
}

impl KindRules {
    /// The table these rules come from: `retention` or `retention.physical`.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// How many of the newest backups are kept whatever their time (0: off).
    pub fn keep_last(&self) -> u32 {
        self.keep_last
    }

    /// How many periods of `period` keep their newest backup (0: off).
    pub fn keep_periods(&self, period: Period) -> u32 {
        self.periods
            .iter()
            .find(|(p, _)| *p == period)
            .map_or(0, |(_, count)| *count)
    }

    /// The period rules in use, shortest period first, with their counts (never zero).
    pub fn periods(&self) -> &[(Period, u32)] {
        &self.periods
    }

    /// `keep_within`, when set and not zero.
    pub fn keep_within(&self) -> Option<&KeepWithin> {
        self.keep_within.as_ref()
    }

    /// The zone periods are read in.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The tag rules: the base's, then the kind's own.
    pub fn tags(&self) -> &[TagRule] {
        &self.tags
    }

    /// Refuses rules that keep nothing but the newest backup.
    fn check(&self) -> Result<()> {
        if self.keep_last == 0
            && self.periods.is_empty()
            && self.keep_within.is_none()
            && self.tags.is_empty()
        {
            let inherited = if self.table == "retention" {
                String::new()
            } else {
                " (with what it inherits from [retention])".to_owned()
            };
            return Err(Error::Config {
                section: self.table.clone(),
                detail: format!(
                    "this policy{inherited} keeps nothing: every keep_* count is zero or \
                     absent and there is no keep_within or tag rule, so prune would delete \
                     every backup but the newest; set a count (e.g. keep_daily = 30) or \
                     keep_within (e.g. \"7d\"), or remove [retention] to prune nothing"
                ),
            });
        }
        Ok(())
    }
}

impl fmt::Display for KindRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.keep_last > 0 {
            parts.push(format!("last {}", self.keep_last));
        }
        parts.extend(self.periods.iter().map(|(p, n)| format!("{p} {n}")));
        if let Some(within) = &self.keep_within {
            parts.push(format!("within {within}"));
        }
        parts.extend(
            self.tags
                .iter()
                .map(|t| format!("tag {} {}", t.tag, t.keep_within)),
        );
        parts.push(format!("time zone {}", self.timezone.name()));
        write!(f, "[{}] {}", self.table, parts.join(", "))
    }
}
