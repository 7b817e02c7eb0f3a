//! Planning: the rules, their reasons and the safety rails, on small catalogs written by hand.

use super::*;
use crate::retention::Reason;

#[test]
fn a_small_catalog_keeps_exactly_the_ids_written_out() {
    // 2026-03-09 is a Monday: ISO week 11 runs 9–15 March, week 10 runs 2–8 March.
    let policy = policy("[retention]\nkeep_last = 2\nkeep_daily = 3\nkeep_weekly = 2\n");
    let catalog = [
        shop("a", "2026-03-12T03:00:00Z"), // Thu, W11
        shop("b", "2026-03-11T22:00:00Z"), // Wed, W11
        shop("c", "2026-03-11T03:00:00Z"), // Wed, W11: day already kept by b
        shop("d", "2026-03-10T03:00:00Z"), // Tue, W11
        shop("e", "2026-03-09T03:00:00Z"), // Mon, W11: daily count used up
        shop("f", "2026-03-08T03:00:00Z"), // Sun, W10
        shop("g", "2026-03-07T03:00:00Z"), // Sat, W10: week already kept by f
        shop("h", "2026-03-01T03:00:00Z"), // Sun, W09: weekly count used up
    ];
    let plan = plan(&policy, &catalog, at("2026-03-12T12:00:00Z"));
    assert_eq!(kept(&plan), ["a", "b", "d", "f"]);
    assert_eq!(deleted(&plan), ["c", "e", "g", "h"]);
    assert!(plan.invalid.is_empty());
    assert_eq!(
        reasons(&plan, "a"),
        ["newest", "last 1/2", "daily 1/3", "weekly 1/2"]
    );
    assert_eq!(reasons(&plan, "b"), ["last 2/2", "daily 2/3"]);
    assert_eq!(reasons(&plan, "d"), ["daily 3/3"]);
    assert_eq!(reasons(&plan, "f"), ["weekly 2/2"]);
    assert!(reasons(&plan, "c").is_empty());
    assert!(!plan.deletes_more_than_half());
}

#[test]
fn the_plan_follows_finish_times_even_when_ids_sort_the_other_way() {
    // A timeline reset (or a clock set back) made every newer backup's id sort before the
    // older ones: WAL-G's `delete retain` kept the oldest here.
    let policy = policy("[retention]\nkeep_last = 2\n");
    let catalog: Vec<Candidate> = (0..6)
        .map(|hour| {
            let id = format!("20300101T{:02}0000Z-physical-aaaaaa", 10 - hour);
            let finished = format!("2026-05-01T{:02}:00:00Z", 10 + hour);
            Candidate::new(id, BackupKind::Physical, "7301", at(&finished))
        })
        .collect();
    let plan = plan(&policy, &catalog, at("2026-05-02T00:00:00Z"));
    assert_eq!(
        kept(&plan),
        [
            "20300101T050000Z-physical-aaaaaa",
            "20300101T060000Z-physical-aaaaaa"
        ]
    );
    assert_eq!(
        reasons(&plan, "20300101T050000Z-physical-aaaaaa"),
        ["newest", "last 1/2"]
    );
    assert_eq!(
        deleted(&plan),
        [
            "20300101T070000Z-physical-aaaaaa",
            "20300101T080000Z-physical-aaaaaa",
            "20300101T090000Z-physical-aaaaaa",
            "20300101T100000Z-physical-aaaaaa"
        ]
    );
    assert!(plan.deletes_more_than_half());
}

#[test]
fn identical_finish_times_are_ordered_by_id_whatever_the_input_order() {
    let policy = policy("[retention]\nkeep_last = 1\nkeep_daily = 2\n");
    let same = "2026-06-02T04:00:00Z";
    let catalog = [
        shop("b", same),
        shop("c", same),
        shop("a", same),
        shop("z", "2026-06-01T04:00:00Z"),
    ];
    let now = at("2026-06-03T00:00:00Z");
    let first = plan(&policy, &catalog, now);
    // The greatest id counts as the newest of the tie.
    assert_eq!(kept(&first), ["c", "z"]);
    assert_eq!(reasons(&first, "c"), ["newest", "last 1/1", "daily 1/2"]);
    assert_eq!(reasons(&first, "z"), ["daily 2/2"]);
    assert_eq!(deleted(&first), ["b", "a"]);
    // Every order of the input gives the same plan.
    let orders = [
        [0, 1, 2, 3],
        [3, 2, 1, 0],
        [2, 0, 3, 1],
        [1, 3, 0, 2],
        [0, 2, 1, 3],
        [3, 0, 2, 1],
    ];
    for order in orders {
        let shuffled: Vec<Candidate> = order.iter().map(|&i| catalog[i].clone()).collect();
        assert_eq!(plan(&policy, &shuffled, now), first, "{order:?}");
    }
}

#[test]
fn a_backup_from_the_future_is_kept_and_takes_no_place_from_the_others() {
    let policy = policy("[retention]\nkeep_last = 1\nkeep_daily = 1\nkeep_yearly = 1\n");
    let now = at("2026-12-31T20:00:00Z");
    let catalog = [
        // A server whose clock ran 3h15m ahead: "finished" next year.
        shop("skewed", "2026-12-31T23:15:00Z").with_tag("reason", "pre-migration"),
        shop("real-newest", "2026-12-31T19:00:00Z"),
        shop("older", "2026-12-30T19:00:00Z"),
    ];
    let plan = plan(&policy, &catalog, now);
    assert_eq!(kept(&plan), ["skewed", "real-newest"]);
    assert_eq!(
        reasons(&plan, "skewed"),
        ["from the future: finished 3h after now (clock skew?)"]
    );
    // The real newest backup is still the newest, the last, today's and this year's.
    assert_eq!(
        reasons(&plan, "real-newest"),
        ["newest", "last 1/1", "daily 1/1", "yearly 1/1"]
    );
    assert_eq!(deleted(&plan), ["older"]);

    // Alone, it is kept, and no past backup is deleted to make room.
    let alone = plan_of("[retention]\nkeep_last = 1\n", &catalog[..1], now);
    assert_eq!(kept(&alone), ["skewed"]);
    assert!(alone.delete.is_empty());
}

/// Plans `catalog` under the policy `toml`.
fn plan_of(toml: &str, catalog: &[Candidate], now: DateTime<Utc>) -> RetentionPlan {
    plan(&policy(toml), catalog, now)
}

#[test]
fn invalid_backups_are_never_judged_and_never_cover_a_period() {
    let catalog = [
        shop("broken-newest", "2026-04-04T05:00:00Z").invalid(),
        shop("good-3", "2026-04-03T05:00:00Z"),
        shop("broken-2", "2026-04-02T23:00:00Z").invalid(),
        shop("good-2", "2026-04-02T05:00:00Z"),
        shop("good-1", "2026-04-01T05:00:00Z"),
    ];
    let plan = plan_of(
        "[retention]\nkeep_daily = 3\nkeep_within = \"30d\"\n",
        &catalog,
        at("2026-04-05T00:00:00Z"),
    );
    assert_eq!(kept(&plan), ["good-3", "good-2", "good-1"]);
    // 2 April is covered by the good backup, not by the newer broken one.
    assert_eq!(
        reasons(&plan, "good-3"),
        ["newest", "daily 1/3", "within 30d"]
    );
    assert_eq!(reasons(&plan, "good-2"), ["daily 2/3", "within 30d"]);
    assert_eq!(reasons(&plan, "good-1"), ["daily 3/3", "within 30d"]);
    // Reported apart, unjudged: the caller decides.
    let invalid: Vec<&str> = plan.invalid.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(invalid, ["broken-newest", "broken-2"]);
    assert!(plan.invalid.iter().all(|d| d.reasons.is_empty()));
    assert!(plan.delete.is_empty());
}

#[test]
fn a_group_of_invalid_backups_only_keeps_nothing_and_deletes_nothing() {
    let catalog = [shop("x", "2026-04-04T05:00:00Z").invalid()];
    let plan = plan_of(
        "[retention]\nkeep_last = 1\n",
        &catalog,
        at("2026-04-05T00:00:00Z"),
    );
    assert!(plan.keep.is_empty() && plan.delete.is_empty());
    assert_eq!(plan.invalid.len(), 1);
    assert!(!plan.deletes_more_than_half());
}

#[test]
fn the_newest_valid_backup_is_kept_whatever_the_policy() {
    // Only a tag rule: nothing untagged would be kept but the newest.
    let catalog = [
        shop("old", "2025-01-01T00:00:00Z"),
        shop("newest", "2025-02-01T00:00:00Z"),
    ];
    let plan = plan_of(
        "[retention]\n[[retention.tag]]\ntag = \"pinned\"\nkeep_within = \"7d\"\n",
        &catalog,
        at("2026-01-01T00:00:00Z"),
    );
    assert_eq!(kept(&plan), ["newest"]);
    assert_eq!(reasons(&plan, "newest"), ["newest"]);
    assert_eq!(deleted(&plan), ["old"]);
}

#[test]
fn tag_rules_keep_matching_backups_for_their_duration() {
    let now = at("2026-09-01T12:00:00Z");
    let day = chrono::TimeDelta::days(1);
    let ago = |d: chrono::TimeDelta| (now - d).to_rfc3339();
    let catalog = [
        shop("latest", &ago(chrono::TimeDelta::hours(1))),
        shop("manual", &ago(day * 5)).with_tag("reason", "manual"),
        shop("pinned", &ago(day * 9 + chrono::TimeDelta::hours(23))).with_tag("pinned", "yes"),
        shop("migration", &ago(day * 12)).with_tag("reason", "pre-migration"),
        shop("migration-edge", &ago(day * 90)).with_tag("reason", "pre-migration"),
        shop("migration-old", &ago(day * 91)).with_tag("reason", "pre-migration"),
    ];
    let plan = plan_of(
        r#"
        [retention]
        keep_last = 1
        [[retention.tag]]
        tag = "reason=pre-migration"
        keep_within = "90d"
        [[retention.tag]]
        tag = "pinned"
        keep_within = "10d"
        "#,
        &catalog,
        now,
    );
    assert_eq!(kept(&plan), ["latest", "pinned", "migration"]);
    assert_eq!(reasons(&plan, "pinned"), ["tag pinned: 9d < 10d"]);
    assert_eq!(
        reasons(&plan, "migration"),
        ["tag reason=pre-migration: 12d < 90d"]
    );
    // Exactly 90 days old: the duration has run out.
    assert_eq!(
        deleted(&plan),
        ["manual", "migration-edge", "migration-old"]
    );
}

#[test]
fn keep_within_counts_back_from_now_and_excludes_its_edge() {
    let now = at("2026-09-08T00:00:00Z");
    let catalog = [
        shop("inside", "2026-09-01T00:00:01Z"),
        shop("edge", "2026-09-01T00:00:00Z"),
        shop("outside", "2026-08-31T23:59:59Z"),
    ];
    let plan = plan_of("[retention]\nkeep_within = \"7d\"\n", &catalog, now);
    assert_eq!(kept(&plan), ["inside"]);
    assert_eq!(reasons(&plan, "inside"), ["newest", "within 7d"]);
    assert_eq!(deleted(&plan), ["edge", "outside"]);
    let plan = plan_of(
        "[retention]\nkeep_within = \"36h\"\n",
        &catalog,
        at("2026-09-02T11:00:00Z"),
    );
    assert_eq!(kept(&plan), ["inside", "edge", "outside"]);
    assert_eq!(reasons(&plan, "edge"), ["within 36h"]);
}

#[test]
fn kinds_and_groups_are_pruned_separately_each_with_its_rules() {
    let now = at("2026-07-10T12:00:00Z");
    let day = |kind, group: &str, d: u32, id: &str| {
        Candidate::new(id, kind, group, at(&format!("2026-07-{d:02}T02:00:00Z")))
    };
    let mut catalog = Vec::new();
    for d in 1..=9 {
        catalog.push(day(BackupKind::Logical, "shop", d, &format!("shop-{d}")));
        catalog.push(day(BackupKind::Logical, "crm", d, &format!("crm-{d}")));
        catalog.push(day(BackupKind::Physical, "7301", d, &format!("base-{d}")));
    }
    // One crm backup, with the newest time of all, is broken: crm keeps its own newest good one.
    catalog.push(day(BackupKind::Logical, "crm", 10, "crm-broken").invalid());
    let plan = plan_of(
        "[retention]\nkeep_daily = 2\n[retention.physical]\nkeep_daily = 4\n",
        &catalog,
        now,
    );
    assert_eq!(
        kept(&plan),
        ["crm-9", "crm-8", "shop-9", "shop-8", "base-9", "base-8", "base-7", "base-6"]
    );
    assert_eq!(reasons(&plan, "crm-9"), ["newest", "daily 1/2"]);
    assert_eq!(reasons(&plan, "base-6"), ["daily 4/4"]);
    assert_eq!(plan.delete.len(), 7 + 7 + 5);
    assert_eq!(plan.delete[0].id, "crm-7");
    assert_eq!(plan.invalid[0].id, "crm-broken");
    // The group is carried into the decisions.
    assert!(plan
        .keep
        .iter()
        .all(|d| d.id.starts_with(match d.group.as_str() {
            "crm" => "crm",
            "shop" => "shop",
            _ => "base",
        })));
}

#[test]
fn more_than_half_is_strictly_more() {
    let now = at("2026-01-10T00:00:00Z");
    let days = |n: u32| -> Vec<Candidate> {
        (1..=n)
            .map(|d| shop(&format!("d{d}"), &format!("2026-01-{d:02}T00:00:00Z")))
            .collect()
    };
    let half = plan_of("[retention]\nkeep_last = 3\n", &days(6), now);
    assert_eq!((half.keep.len(), half.delete.len()), (3, 3));
    assert!(!half.deletes_more_than_half());
    let more = plan_of("[retention]\nkeep_last = 2\n", &days(5), now);
    assert_eq!((more.keep.len(), more.delete.len()), (2, 3));
    assert!(more.deletes_more_than_half());
    let empty = plan_of("[retention]\nkeep_last = 2\n", &[], now);
    assert!(!empty.deletes_more_than_half());
    // Invalid backups do not make a plan look milder.
    let mut catalog = days(5);
    catalog.extend((0..10).map(|i| shop(&format!("bad{i}"), "2026-01-01T00:00:00Z").invalid()));
    assert!(plan_of("[retention]\nkeep_last = 2\n", &catalog, now).deletes_more_than_half());
}

#[test]
fn the_plan_serializes_with_reasons_as_printed() {
    let catalog = [
        shop("a", "2026-03-12T03:00:00Z").with_tag("reason", "pre-migration"),
        shop("b", "2026-03-01T03:00:00Z"),
        shop("c", "2026-03-01T02:00:00Z").invalid(),
    ];
    let plan = plan_of(
        "[retention]\nkeep_daily = 1\n[[retention.tag]]\ntag = \"reason=pre-migration\"\n\
         keep_within = \"90d\"\n",
        &catalog,
        at("2026-03-24T12:00:00Z"),
    );
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "now": "2026-03-24T12:00:00Z",
            "keep": [{
                "id": "a",
                "kind": "logical",
                "group": "shop",
                "finished_at": "2026-03-12T03:00:00Z",
                "reasons": ["newest", "daily 1/1", "tag reason=pre-migration: 12d < 90d"],
            }],
            "delete": [{
                "id": "b",
                "kind": "logical",
                "group": "shop",
                "finished_at": "2026-03-01T03:00:00Z",
                "reasons": [],
            }],
            "invalid": [{
                "id": "c",
                "kind": "logical",
                "group": "shop",
                "finished_at": "2026-03-01T02:00:00Z",
                "reasons": [],
            }],
        })
    );
    // Reasons keep their structure for a library user.
    assert!(matches!(
        &plan.keep[0].reasons[1],
        Reason::Period { label, .. } if label == "2026-03-12"
    ));
}

#[test]
fn candidates_come_from_manifests_grouped_by_database_or_cluster() {
    let manifest: crate::repository::Manifest = serde_json::from_value(serde_json::json!({
        "manifest_version": 1,
        "id": "20260312T030000Z-logical-abcdef",
        "kind": "logical",
        "tags": {"reason": "pre-migration"},
        "started_at": "2026-03-12T03:00:00Z",
        "finished_at": "2026-03-12T03:04:00Z",
        "source": {"databases": ["shop", "crm"], "system_identifier": "7301"},
        "artifacts": [],
        "written_by": "ecobackup test",
    }))
    .unwrap();
    let candidate = Candidate::from_manifest(&manifest);
    assert_eq!(candidate.id, manifest.id);
    assert_eq!(candidate.kind, BackupKind::Logical);
    assert_eq!(candidate.group, "shop,crm@7301");
    // The same database name on another server is another source.
    let mut staging = manifest.clone();
    staging.source.system_identifier = Some("9999".into());
    assert_eq!(Candidate::from_manifest(&staging).group, "shop,crm@9999");
    let mut unknown = manifest.clone();
    unknown.source.system_identifier = None;
    assert_eq!(Candidate::from_manifest(&unknown).group, "shop,crm");
    assert_eq!(candidate.finished_at, at("2026-03-12T03:04:00Z"));
    assert_eq!(candidate.tags["reason"], "pre-migration");
    assert!(candidate.valid);

    let mut physical = manifest.clone();
    physical.kind = BackupKind::Physical;
    assert_eq!(Candidate::from_manifest(&physical).group, "7301");
    physical.source.system_identifier = None;
    assert_eq!(Candidate::from_manifest(&physical).group, "");
    let mut files = manifest;
    files.kind = BackupKind::Files;
    files.source = Default::default();
    assert_eq!(Candidate::from_manifest(&files).group, "");
    files.source.files = Some(crate::repository::FilesFacts {
        set: "uploads".into(),
        paths: vec!["/srv/ecommus/uploads".into()],
        ..Default::default()
    });
    assert_eq!(
        Candidate::from_manifest(&files).group,
        "uploads",
        "files backups are grouped by set"
    );
}
