//! `[retention]` as written: parsing, overrides, validation.

use super::*;
use crate::error::Error;
use crate::retention::{KeepWithin, TagRule};

/// The example of DESIGN.md, with every key.
const DESIGN: &str = r#"
[retention]
keep_last = 3
keep_hourly = 24
keep_daily = 30
keep_monthly = 12
keep_yearly = 4
keep_within = "7d"
[[retention.tag]]
tag = "reason=pre-migration"
keep_within = "90d"
"#;

/// The validation error of `toml`, as printed.
fn refused(toml: &str) -> (String, String) {
    match parse(toml).unwrap().validate() {
        Err(Error::Config { section, detail }) => {
            let message = Error::Config {
                section: section.clone(),
                detail,
            }
            .to_string();
            assert!(!message.contains('\n'), "{message}");
            (section, message)
        }
        Err(other) => panic!("not a configuration error: {other}"),
        Ok(rules) => panic!("accepted: {rules:?}"),
    }
}

#[test]
fn the_design_example_parses_into_one_set_of_rules_for_every_kind() {
    let policy = policy(DESIGN);
    let rules = policy.rules(BackupKind::Logical);
    assert_eq!(
        rules.to_string(),
        "[retention] last 3, hourly 24, daily 30, monthly 12, yearly 4, within 7d, \
         tag reason=pre-migration 90d, time zone UTC"
    );
    assert_eq!(rules.keep_last(), 3);
    assert_eq!(rules.keep_periods(Period::Weekly), 0);
    assert_eq!(rules.keep_periods(Period::Yearly), 4);
    assert_eq!(rules.keep_within().map(KeepWithin::as_str), Some("7d"));
    assert_eq!(policy.rules(BackupKind::Physical), rules);
    assert_eq!(policy.rules(BackupKind::Files), rules);
}

#[test]
fn the_seeds_policies_are_valid() {
    // ecommus: 24 hourly locally; 30 daily, 12 monthly, 4 yearly off-site.
    policy("[retention]\nkeep_hourly = 24\nkeep_daily = 30\nkeep_monthly = 12\nkeep_yearly = 4\n");
    // Cartly: weekly backups for 12 weeks, pre-migration snapshots for 90 days.
    let cartly = policy(
        r#"
        [retention]
        keep_weekly = 12
        timezone = "Europe/Berlin"
        [[retention.tag]]
        tag = "reason=pre-migration"
        keep_within = "90d"
        "#,
    );
    let rules = cartly.rules(BackupKind::Logical);
    assert_eq!(rules.timezone(), chrono_tz::Europe::Berlin);
    assert_eq!(
        rules.tags(),
        [TagRule::new("reason=pre-migration", "90d".parse().unwrap())]
    );
}

#[test]
fn a_kind_table_replaces_the_keys_it_sets_and_inherits_the_rest() {
    let policy = policy(
        r#"
        [retention]
        keep_last = 3
        keep_daily = 30
        keep_within = "7d"
        timezone = "Europe/Berlin"
        [[retention.tag]]
        tag = "reason=pre-migration"
        keep_within = "90d"
        [retention.physical]
        keep_daily = 7
        keep_weekly = 4
        keep_within = "0d"
        [[retention.physical.tag]]
        tag = "pinned"
        keep_within = "1y"
        [retention.files]
        timezone = "UTC"
        "#,
    );
    assert_eq!(
        policy.rules(BackupKind::Logical).to_string(),
        "[retention] last 3, daily 30, within 7d, tag reason=pre-migration 90d, \
         time zone Europe/Berlin"
    );
    assert_eq!(
        policy.rules(BackupKind::Physical).to_string(),
        "[retention.physical] last 3, daily 7, weekly 4, tag reason=pre-migration 90d, \
         tag pinned 1y, time zone Europe/Berlin"
    );
    assert_eq!(
        policy.rules(BackupKind::Files).to_string(),
        "[retention.files] last 3, daily 30, within 7d, tag reason=pre-migration 90d, \
         time zone UTC"
    );
    assert_eq!(
        policy.rules(BackupKind::Physical).table(),
        "retention.physical"
    );
}

#[test]
fn a_policy_that_keeps_nothing_is_a_configuration_error() {
    for toml in [
        "[retention]\n",
        "[retention]\nkeep_last = 0\nkeep_hourly = 0\nkeep_daily = 0\nkeep_weekly = 0\n\
         keep_monthly = 0\nkeep_yearly = 0\n",
        "[retention]\nkeep_within = \"0d\"\n",
        "[retention]\ntimezone = \"Europe/Berlin\"\n",
        // The base is used by the kinds without a table of their own.
        "[retention]\n[retention.physical]\nkeep_daily = 7\n",
    ] {
        let (section, message) = refused(toml);
        assert_eq!(section, "retention", "{toml}");
        assert!(
            message.starts_with("invalid [retention] configuration: this policy keeps nothing"),
            "{message}"
        );
        assert!(message.contains("keep_daily = 30"), "{message}");
    }
    // A kind table that switches every inherited rule off.
    let (section, message) = refused(
        "[retention]\nkeep_last = 3\nkeep_within = \"7d\"\n\
         [retention.physical]\nkeep_last = 0\nkeep_within = \"0d\"\n",
    );
    assert_eq!(section, "retention.physical");
    assert!(
        message.contains("this policy (with what it inherits from [retention]) keeps nothing"),
        "{message}"
    );
}

#[test]
fn tag_rules_or_a_table_per_kind_are_enough() {
    policy("[retention]\n[[retention.tag]]\ntag = \"pinned\"\nkeep_within = \"30d\"\n");
    policy(
        "[retention]\n[retention.logical]\nkeep_last = 1\n[retention.physical]\nkeep_last = 1\n\
         [retention.files]\nkeep_within = \"1d\"\n",
    );
}

#[test]
fn unknown_time_zones_are_refused_naming_their_table() {
    let (section, message) = refused("[retention]\nkeep_last = 1\ntimezone = \"Europe/Berlinn\"\n");
    assert_eq!(section, "retention");
    assert!(
        message.contains("unknown time zone \"Europe/Berlinn\": give an IANA name"),
        "{message}"
    );
    // A bad base zone is reported once, on the base, even where a kind inherits it.
    let (section, _) = refused(
        "[retention]\nkeep_last = 1\ntimezone = \"CEST\"\n[retention.logical]\nkeep_last = 2\n",
    );
    assert_eq!(section, "retention");
    let (section, message) =
        refused("[retention]\nkeep_last = 1\n[retention.logical]\ntimezone = \"europe/berlin\"\n");
    assert_eq!(section, "retention.logical");
    assert!(message.contains("\"europe/berlin\""), "{message}");
}

#[test]
fn tag_rules_need_a_tag_name_and_a_duration() {
    let (_, message) =
        refused("[retention]\n[[retention.tag]]\ntag = \"=pre-migration\"\nkeep_within = \"9d\"\n");
    assert!(message.contains("has no tag name"), "{message}");
    let (_, message) =
        refused("[retention]\n[[retention.tag]]\ntag = \"x\"\nkeep_within = \"0d\"\n");
    assert!(message.contains("keeps nothing"), "{message}");
    let error = parse("[retention]\n[[retention.tag]]\ntag = \"x\"\n").unwrap_err();
    assert!(error.contains("missing field `keep_within`"), "{error}");
}

#[test]
fn unknown_keys_and_garbage_values_are_refused_while_parsing() {
    for (toml, says) in [
        (
            "[retention]\nkeep_dialy = 30\n",
            "unknown field `keep_dialy`",
        ),
        ("[retention]\nkeep_daily = -1\n", "keep_daily"),
        ("[retention]\nkeep_daily = \"30\"\n", "keep_daily"),
        (
            "[retention]\nkeep_within = \"7 days\"\n",
            "invalid duration \"7 days\"",
        ),
        (
            "[retention]\nkeep_within = \"1mo\"\n",
            "months have no fixed length",
        ),
        (
            "[retention]\n[retention.physical]\nkeep_houry = 1\n",
            "unknown field `keep_houry`",
        ),
        // Kind tables do not nest.
        (
            "[retention]\n[retention.physical.logical]\nkeep_last = 1\n",
            "unknown field `logical`",
        ),
        (
            "[retention]\n[[retention.tag]]\ntag = \"x\"\nkeep_within = \"1d\"\nkeep_last = 1\n",
            "unknown field `keep_last`",
        ),
        (
            "[retention.weekly]\nkeep_last = 1\n",
            "unknown field `weekly`",
        ),
    ] {
        let error = parse(toml).unwrap_err();
        assert!(error.contains(says), "{toml}: {error}");
    }
}

#[test]
fn tag_rules_match_key_and_value_or_the_key_alone() {
    let tags = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let day: KeepWithin = "1d".parse().unwrap();
    let exact = TagRule::new("reason=pre-migration", day.clone());
    assert!(exact.matches(&tags(&[("reason", "pre-migration"), ("by", "ci")])));
    assert!(!exact.matches(&tags(&[("reason", "pre-migration-2")])));
    assert!(!exact.matches(&tags(&[("by", "pre-migration")])));
    assert!(!exact.matches(&tags(&[])));
    let key = TagRule::new("pinned", day.clone());
    assert!(key.matches(&tags(&[("pinned", "")])));
    assert!(key.matches(&tags(&[("pinned", "yes")])));
    assert!(!key.matches(&tags(&[("pin", "yes")])));
    // Split at the first `=`, as --tag does.
    let equals = TagRule::new("expr=a=b", day);
    assert!(equals.matches(&tags(&[("expr", "a=b")])));
}

#[test]
fn a_policy_round_trips_through_serde() {
    let written = parse(DESIGN).unwrap();
    let json = serde_json::to_string(&written).unwrap();
    let read: RetentionPolicy = serde_json::from_str(&json).unwrap();
    assert_eq!(read, written);
    assert!(json.contains(r#""keep_within":"7d""#), "{json}");
}
