//! The policy engine as a specification: each test a catalog, a policy, a `now`, and what must
//! be kept. Nothing here reads a clock or a random source.

mod calendar;
mod planning;
mod policy;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{plan, Candidate, Period, RetentionPlan, RetentionPolicy, ValidatedPolicy};
use crate::repository::BackupKind;

/// An instant from RFC 3339 text.
fn at(text: &str) -> DateTime<Utc> {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
}

/// `ecobackup.toml` holding only what retention reads.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    retention: RetentionPolicy,
}

/// The `[retention]` table of `toml` (a whole file), as written.
fn parse(toml: &str) -> Result<RetentionPolicy, String> {
    toml::from_str::<ConfigFile>(toml)
        .map(|file| file.retention)
        .map_err(|e| e.to_string())
}

/// The `[retention]` table of `toml`, validated.
fn policy(toml: &str) -> ValidatedPolicy {
    parse(toml)
        .unwrap()
        .validate()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A valid logical backup of `shop`.
fn shop(id: &str, finished_at: &str) -> Candidate {
    Candidate::new(id, BackupKind::Logical, "shop", at(finished_at))
}

/// The ids kept, in plan order.
fn kept(plan: &RetentionPlan) -> Vec<&str> {
    plan.keep.iter().map(|d| d.id.as_str()).collect()
}

/// The ids deleted, in plan order.
fn deleted(plan: &RetentionPlan) -> Vec<&str> {
    plan.delete.iter().map(|d| d.id.as_str()).collect()
}

/// The reasons of backup `id`, as printed.
fn reasons(plan: &RetentionPlan, id: &str) -> Vec<String> {
    plan.keep
        .iter()
        .chain(&plan.delete)
        .chain(&plan.invalid)
        .find(|d| d.id == id)
        .unwrap_or_else(|| panic!("{id} is not in the plan"))
        .reasons
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// What a correct plan keeps for one period rule, computed the slow, obvious way: group the
/// valid backups by period, order the periods by their newest backup, take the first `count`
/// and the newest backup of each. Returns period label → id.
fn expected_by_period(
    candidates: &[Candidate],
    period: Period,
    count: usize,
    zone: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> BTreeMap<String, String> {
    let mut newest: BTreeMap<String, &Candidate> = BTreeMap::new();
    for c in candidates
        .iter()
        .filter(|c| c.valid && c.finished_at <= now)
    {
        let entry = newest.entry(period.label(c.finished_at, zone)).or_insert(c);
        if (c.finished_at, &c.id) > (entry.finished_at, &entry.id) {
            *entry = c;
        }
    }
    let mut periods: Vec<(String, &Candidate)> = newest.into_iter().collect();
    periods.sort_by(|a, b| (b.1.finished_at, &b.1.id).cmp(&(a.1.finished_at, &a.1.id)));
    periods
        .into_iter()
        .take(count)
        .map(|(label, c)| (label, c.id.clone()))
        .collect()
}

/// The period labels the plan kept for `period`, with the id keeping each; panics when a
/// period is covered twice or a rank is skipped.
fn covered_by_plan(plan: &RetentionPlan, period: Period) -> BTreeMap<String, String> {
    let mut covered = BTreeMap::new();
    let mut ranks = BTreeSet::new();
    for decision in &plan.keep {
        for reason in &decision.reasons {
            if let super::Reason::Period {
                period: p,
                n,
                label,
                ..
            } = reason
            {
                if *p == period {
                    let before = covered.insert(label.clone(), decision.id.clone());
                    assert!(before.is_none(), "{period} {label} covered twice");
                    assert!(ranks.insert(*n), "{period} rank {n} given twice");
                }
            }
        }
    }
    assert_eq!(
        ranks,
        (1..=covered.len() as u32).collect(),
        "{period} ranks are not 1..=N"
    );
    covered
}
