//! From candidates and rules to a plan: which backups to keep, which to delete, and why.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Serialize, Serializer};

use super::duration::{age_against, compact};
use super::{KeepWithin, KindRules, Period, ValidatedPolicy};
use crate::repository::{BackupKind, Manifest};

/// One backup as retention sees it: enough to judge it, nothing to fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Candidate {
    /// The backup id. Only shown, and used to break ties in time: never to order backups.
    pub id: String,
    /// Policies apply separately per kind.
    pub kind: BackupKind,
    /// Policies apply separately per group too: the databases of a logical backup, the cluster
    /// of a physical one (see [`Candidate::from_manifest`]).
    pub group: String,
    /// When the backup finished: the order of backups and the period they fall in.
    pub finished_at: DateTime<Utc>,
    /// The backup's tags, for tag rules.
    pub tags: BTreeMap<String, String>,
    /// Whether its manifest is usable. An invalid backup is not judged: it is never kept by a
    /// rule, never covers a period, never counts as the newest, and is listed in
    /// [`RetentionPlan::invalid`] for the caller to decide about.
    pub valid: bool,
}

impl Candidate {
    /// A valid backup without tags.
    pub fn new(
        id: impl Into<String>,
        kind: BackupKind,
        group: impl Into<String>,
        finished_at: DateTime<Utc>,
    ) -> Self {
        Candidate {
            id: id.into(),
            kind,
            group: group.into(),
            finished_at,
            tags: BTreeMap::new(),
            valid: true,
        }
    }

    /// With the tag `key=value` added.
    pub fn with_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Marked invalid (its manifest failed a check).
    pub fn invalid(mut self) -> Self {
        self.valid = false;
        self
    }

    /// The candidate a manifest describes, valid: a manifest that parsed, belongs to its folder
    /// and passed the signature check is what the repository's listing returns. Its group:
    /// - logical: the databases dumped, joined by `,` in the manifest's order (`shop,crm`), and
    ///   the system identifiers of their servers when recorded (`shop@7437…`), so a backup of
    ///   `shop` alone and one of `shop,crm` are pruned separately, and so are `app` of staging
    ///   and `app` of production;
    /// - physical: the cluster's system identifier (empty when it was not recorded);
    /// - files: the set's name (`uploads`, `keys`), so each set keeps its own backups; empty
    ///   for a files manifest without [`FilesFacts`](crate::repository::FilesFacts).
    pub fn from_manifest(manifest: &Manifest) -> Self {
        let group = match manifest.kind {
            BackupKind::Logical => {
                // Databases of the same name on different servers (every Supabase project's
                // `postgres`, staging's and production's `app`) are different sources.
                let mut servers: Vec<&str> = manifest
                    .source
                    .servers
                    .iter()
                    .filter_map(|s| s.system_identifier.as_deref())
                    .chain(manifest.source.system_identifier.as_deref())
                    .collect();
                servers.sort_unstable();
                servers.dedup();
                let databases = manifest.source.databases.join(",");
                if servers.is_empty() {
                    databases
                } else {
                    format!("{databases}@{}", servers.join("+"))
                }
            }
            BackupKind::Physical => manifest
                .source
                .system_identifier
                .clone()
                .unwrap_or_default(),
            BackupKind::Files => manifest
                .source
                .files
                .as_ref()
                .map(|f| f.set.clone())
                .unwrap_or_default(),
        };
        Candidate {
            id: manifest.id.clone(),
            kind: manifest.kind,
            group,
            finished_at: manifest.finished_at,
            tags: manifest.tags.clone(),
            valid: true,
        }
    }
}

/// Why a backup is kept. Displays as the reasons `prune` prints, and serializes as the same
/// text.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// `newest`: the newest valid backup of its kind and group, which is never deleted.
    Newest,
    /// `from the future: finished 3h after now (clock skew?)`: kept and left out of the rules.
    Future {
        /// How far after `now` it finished.
        ahead: TimeDelta,
    },
    /// `last 2/5`: the 2nd newest, with `keep_last = 5`.
    Last {
        /// Its rank, newest first, from 1.
        n: u32,
        /// `keep_last`.
        of: u32,
    },
    /// `daily 3/30`: the newest backup of the 3rd newest day that has one, with
    /// `keep_daily = 30`.
    Period {
        /// The rule.
        period: Period,
        /// The period's rank, newest first, from 1.
        n: u32,
        /// The rule's count.
        of: u32,
        /// The period kept ([`Period::label`]): `2024-10-27`.
        label: String,
    },
    /// `within 7d`: it finished less than `keep_within` before now.
    Within {
        /// `keep_within`.
        limit: KeepWithin,
    },
    /// `tag reason=pre-migration: 12d < 90d`: a tag rule matched and its duration has not run
    /// out.
    Tag {
        /// The rule's tag, as written.
        tag: String,
        /// How long ago the backup finished.
        age: TimeDelta,
        /// The rule's `keep_within`.
        limit: KeepWithin,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Newest => f.write_str("newest"),
            Reason::Future { ahead } => write!(
                f,
                "from the future: finished {} after now (clock skew?)",
                compact(*ahead)
            ),
            Reason::Last { n, of } => write!(f, "last {n}/{of}"),
            Reason::Period { period, n, of, .. } => write!(f, "{period} {n}/{of}"),
            Reason::Within { limit } => write!(f, "within {limit}"),
            Reason::Tag { tag, age, limit } => {
                write!(f, "tag {tag}: {} < {limit}", age_against(*age, limit))
            }
        }
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What happens to one backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The backup id.
    pub id: String,
    /// Its kind.
    pub kind: BackupKind,
    /// Its group ([`Candidate::group`]).
    pub group: String,
    /// When it finished.
    pub finished_at: DateTime<Utc>,
    /// Why it is kept, in the order the rules are applied (newest, future, last, hourly …
    /// yearly, within, tags). Empty for the backups to delete and the invalid ones.
    pub reasons: Vec<Reason>,
}

/// The outcome of [`plan`]: every candidate once, in exactly one list. Each list is ordered by
/// kind (logical, physical, files), then group, then newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RetentionPlan {
    /// The time the plan was made for.
    pub now: DateTime<Utc>,
    /// Backups a rule keeps, with the reasons.
    pub keep: Vec<Decision>,
    /// Valid backups no rule keeps.
    pub delete: Vec<Decision>,
    /// Backups whose manifest is not valid: not judged by the policy, left to the caller.
    pub invalid: Vec<Decision>,
}

impl RetentionPlan {
    /// Whether the plan deletes more than half of the backups it judged (kept plus deleted,
    /// over all kinds and groups; invalid ones are not counted). `prune` then plans but does
    /// not delete without `--yes`: a mistyped count should not empty a repository.
    pub fn deletes_more_than_half(&self) -> bool {
        self.delete.len() * 2 > self.keep.len() + self.delete.len()
    }
}

/// Decides which backups `policy` keeps at time `now`.
///
/// Candidates are judged per kind and per group, newest first by `finished_at`; backups that
/// finished at the same instant are ordered by id, the greater id counting as the newer, so
/// the plan does not depend on the order of `candidates`. Ids are otherwise never looked at:
/// after a timeline reset or a clock change they may sort in any order.
///
/// Within a kind and group, a valid backup is kept when:
/// - it is the newest (`newest`): whatever the policy, prune never deletes the newest good
///   backup;
/// - it finished after `now` (`from the future…`): a clock was wrong, so its time means
///   nothing; it is kept, and it takes no part in the rules below: it is not the newest, does
///   not take a `keep_last` place, does not cover a period, is not "within";
/// - it is among the `keep_last` newest (`last 2/5`);
/// - for each period rule, walking from the newest backup to the oldest, it is the newest
///   backup of its period and fewer than the rule's count of periods were kept so far
///   (`daily 3/30`): as in restic and borg, periods without a backup do not count, so 30 daily
///   keeps 30 days that have a backup even when backups stopped for a week;
/// - it finished less than `keep_within` before `now` (`within 7d`);
/// - a tag rule matches it and it finished less than the rule's `keep_within` before `now`
///   (`tag reason=pre-migration: 12d < 90d`).
///
/// Every other valid backup is deleted. Invalid backups are listed apart ([`Candidate::valid`]).
/// Ids are expected to be unique; a duplicated candidate is judged twice.
pub fn plan(
    policy: &ValidatedPolicy,
    candidates: &[Candidate],
    now: DateTime<Utc>,
) -> RetentionPlan {
    let mut groups: BTreeMap<(u8, &str), Vec<&Candidate>> = BTreeMap::new();
    for candidate in candidates {
        groups
            .entry((kind_rank(candidate.kind), &candidate.group))
            .or_default()
            .push(candidate);
    }
    let mut plan = RetentionPlan {
        now,
        keep: Vec::new(),
        delete: Vec::new(),
        invalid: Vec::new(),
    };
    for mut group in groups.into_values() {
        group.sort_by(|a, b| (b.finished_at, &b.id).cmp(&(a.finished_at, &a.id)));
        let rules = policy.rules(group[0].kind);
        judge_group(rules, &group, now, &mut plan);
    }
    plan
}

/// The order kinds are listed in.
fn kind_rank(kind: BackupKind) -> u8 {
    match kind {
        BackupKind::Logical => 0,
        BackupKind::Physical => 1,
        BackupKind::Files => 2,
    }
}

/// Judges one kind and group, `group` newest first, into `plan`.
fn judge_group(
    rules: &KindRules,
    group: &[&Candidate],
    now: DateTime<Utc>,
    plan: &mut RetentionPlan,
) {
    // The backups the rules walk: valid and not from the future, newest first.
    let judged: Vec<&Candidate> = group
        .iter()
        .copied()
        .filter(|c| c.valid && c.finished_at <= now)
        .collect();
    let mut reasons: Vec<Vec<Reason>> = vec![Vec::new(); judged.len()];

    if let Some(first) = reasons.first_mut() {
        first.push(Reason::Newest);
    }
    let keep_last = rules.keep_last();
    for (n, reasons) in (1..=keep_last).zip(reasons.iter_mut()) {
        reasons.push(Reason::Last { n, of: keep_last });
    }
    for &(period, of) in rules.periods() {
        // A set, not just the last period seen: where a zone's clocks went back across midnight
        // (America/St_Johns at 00:01 until 2011), a day comes back after the next one began and
        // must not count twice.
        let mut covered = BTreeSet::new();
        for (backup, reasons) in judged.iter().zip(reasons.iter_mut()) {
            if covered.len() as u32 == of {
                break;
            }
            let label = period.label(backup.finished_at, rules.timezone());
            if covered.insert(label.clone()) {
                reasons.push(Reason::Period {
                    period,
                    n: covered.len() as u32,
                    of,
                    label,
                });
            }
        }
    }
    for (backup, reasons) in judged.iter().zip(reasons.iter_mut()) {
        let age = now - backup.finished_at;
        if let Some(limit) = rules.keep_within() {
            if age < limit.duration() {
                reasons.push(Reason::Within {
                    limit: limit.clone(),
                });
            }
        }
        for rule in rules.tags() {
            if rule.matches(&backup.tags) && age < rule.keep_within.duration() {
                reasons.push(Reason::Tag {
                    tag: rule.tag.clone(),
                    age,
                    limit: rule.keep_within.clone(),
                });
            }
        }
    }

    let mut judged = judged.into_iter().zip(reasons);
    for backup in group {
        let decision = |reasons| Decision {
            id: backup.id.clone(),
            kind: backup.kind,
            group: backup.group.clone(),
            finished_at: backup.finished_at,
            reasons,
        };
        if !backup.valid {
            plan.invalid.push(decision(Vec::new()));
        } else if backup.finished_at > now {
            let ahead = backup.finished_at - now;
            plan.keep.push(decision(vec![Reason::Future { ahead }]));
        } else {
            let (_, reasons) = judged.next().expect("every valid past backup was judged");
            if reasons.is_empty() {
                plan.delete.push(decision(reasons));
            } else {
                plan.keep.push(decision(reasons));
            }
        }
    }
}
