//! `check` as a specification: each threshold at its severity, at its boundary and one second
//! past it, over hand-made statuses.

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;
use crate::drill::{DrillHistory, DrillSummary, SUMMARY_FORMAT};
use crate::repository::{BackupKind, BadBackup};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 12, 0, 0).unwrap()
}

/// A logical backup of `shop` that finished `age` before [`now`], took `took`, stores `bytes`.
fn group(kind: BackupKind, name: &str, age: Duration, took: Duration, bytes: u64) -> BackupGroup {
    let finished_at = now() - age;
    BackupGroup {
        kind,
        group: name.to_owned(),
        count: 3,
        last: LastBackup {
            id: format!("20261101T120000Z-{kind}-aaaaaa"),
            started_at: finished_at - took,
            finished_at,
            age_seconds: age.num_seconds(),
            stored_bytes: bytes,
            duration_seconds: took.num_seconds(),
        },
    }
}

fn drill(age: Duration, passed: bool) -> DrillSummary {
    DrillSummary {
        format: SUMMARY_FORMAT.into(),
        backup_id: "20261001T040000Z-logical-bbbbbb".into(),
        kind: BackupKind::Logical,
        started_at: now() - age,
        passed,
        rto_seconds: 42.0,
        durable: true,
        backup_age_seconds: 60.0,
        checks: 4,
        checks_failed: if passed { 0 } else { 1 },
        report: "drills/x.json.zst.age".into(),
        written_by: "test".into(),
    }
}

/// A healthy repository: one logical backup an hour old, 10 kB, 1 minute; a drill passed a
/// day ago; WAL archived a minute ago on timeline 1.
fn healthy() -> RepositoryStatus {
    let passed = drill(Duration::days(1), true);
    RepositoryStatus {
        repository: "s3://acme/prod".into(),
        at: now(),
        objects: 10,
        bytes: 20_000,
        backups: vec![group(
            BackupKind::Logical,
            "shop",
            Duration::hours(1),
            Duration::minutes(1),
            10_000,
        )],
        unusable: vec![],
        wal: vec![TimelineWal {
            timeline: 1,
            newest: "000000010000000000000004".into(),
            archived_at: now() - Duration::minutes(1),
            age_seconds: 60,
            segments: 4,
        }],
        drills: DrillHistory {
            count: 1,
            last: Some(passed.clone()),
            last_passed: Some(passed),
            unreadable: vec![],
        },
        server: None,
    }
}

fn the(findings: &[Finding], check: &str) -> Finding {
    let matching: Vec<&Finding> = findings.iter().filter(|f| f.check == check).collect();
    assert_eq!(matching.len(), 1, "one {check} finding in {findings:#?}");
    matching[0].clone()
}

fn severity_of(status: &RepositoryStatus, check: &str) -> Severity {
    the(&super::check(status, &Thresholds::seeds(), now()), check).severity
}

#[test]
fn a_healthy_repository_is_ok_with_one_finding_per_threshold() {
    let findings = check(&healthy(), &Thresholds::seeds(), now());
    assert_eq!(worst(&findings), Severity::Ok, "{findings:#?}");
    let checks: Vec<&str> = findings.iter().map(|f| f.check).collect();
    assert_eq!(
        checks,
        [
            "min_size",
            "max_age",
            "max_duration",
            "max_drill_age",
            "max_wal_lag"
        ]
    );
    assert_eq!(
        the(&findings, "max_age").message,
        "logical shop: last backup 20261101T120000Z-logical-aaaaaa finished 1h ago, within max_age 26h"
    );
    assert_eq!(
        the(&findings, "max_age").perfdata.unwrap().to_string(),
        "'age_logical_shop'=3600s;93600;;0"
    );
    assert_eq!(
        the(&findings, "min_size").perfdata.unwrap().to_string(),
        "'size_logical_shop'=10000B;;1000:;0"
    );
}

#[test]
fn age_warns_one_second_past_max_age_not_at_it() {
    let mut status = healthy();
    status.backups[0] = group(
        BackupKind::Logical,
        "shop",
        Duration::hours(26),
        Duration::minutes(1),
        10_000,
    );
    assert_eq!(severity_of(&status, "max_age"), Severity::Ok);
    status.backups[0] = group(
        BackupKind::Logical,
        "shop",
        Duration::hours(26) + Duration::seconds(1),
        Duration::minutes(1),
        10_000,
    );
    let finding = the(&check(&status, &Thresholds::seeds(), now()), "max_age");
    assert_eq!(finding.severity, Severity::Warning);
    assert!(
        finding
            .message
            .contains("finished 26h1s ago, more than max_age 26h"),
        "{}",
        finding.message
    );
    assert_eq!(finding.perfdata.unwrap().value, 93_601);
}

#[test]
fn size_is_critical_below_min_size_not_at_it() {
    let mut status = healthy();
    status.backups[0] = group(
        BackupKind::Logical,
        "shop",
        Duration::hours(1),
        Duration::minutes(1),
        1_000,
    );
    assert_eq!(severity_of(&status, "min_size"), Severity::Ok);
    status.backups[0] = group(
        BackupKind::Logical,
        "shop",
        Duration::hours(1),
        Duration::minutes(1),
        999,
    );
    let findings = check(&status, &Thresholds::seeds(), now());
    assert_eq!(the(&findings, "min_size").severity, Severity::Critical);
    assert_eq!(worst(&findings), Severity::Critical);
    assert_eq!(worst(&findings).exit_code(), 2);
    // KiB are 1024 bytes: 1000 bytes are less than 1KiB.
    let kib = Thresholds {
        min_size: Some("1KiB".parse().unwrap()),
        ..Thresholds::default()
    };
    status.backups[0].last.stored_bytes = 1_023;
    assert_eq!(
        the(&check(&status, &kib, now()), "min_size").severity,
        Severity::Critical
    );
    status.backups[0].last.stored_bytes = 1_024;
    assert_eq!(
        the(&check(&status, &kib, now()), "min_size").severity,
        Severity::Ok
    );
}

#[test]
fn duration_warns_one_second_past_max_duration_not_at_it() {
    let mut status = healthy();
    status.backups[0] = group(
        BackupKind::Logical,
        "shop",
        Duration::hours(1),
        Duration::hours(1),
        10_000,
    );
    assert_eq!(severity_of(&status, "max_duration"), Severity::Ok);
    status.backups[0] = group(
        BackupKind::Logical,
        "shop",
        Duration::hours(1),
        Duration::hours(1) + Duration::seconds(1),
        10_000,
    );
    let finding = the(&check(&status, &Thresholds::seeds(), now()), "max_duration");
    assert_eq!(finding.severity, Severity::Warning);
    assert_eq!(
        finding.perfdata.unwrap().to_string(),
        "'duration_logical_shop'=3601s;3600;;0"
    );
}

#[test]
fn drills_warn_when_old_failed_or_missing() {
    let mut status = healthy();
    let at_limit = drill(Duration::days(35), true);
    status.drills.last = Some(at_limit.clone());
    status.drills.last_passed = Some(at_limit);
    assert_eq!(severity_of(&status, "max_drill_age"), Severity::Ok);
    let past = drill(Duration::days(35) + Duration::seconds(1), true);
    status.drills.last = Some(past.clone());
    status.drills.last_passed = Some(past);
    assert_eq!(severity_of(&status, "max_drill_age"), Severity::Warning);

    // The last drill failed: a warning of its own, whatever the age of the last passed one.
    let mut status = healthy();
    status.drills.last = Some(drill(Duration::hours(1), false));
    let findings = check(&status, &Thresholds::seeds(), now());
    assert_eq!(the(&findings, "drill").severity, Severity::Warning);
    assert!(the(&findings, "drill")
        .message
        .contains("1 of 4 checks failed"));
    assert_eq!(the(&findings, "max_drill_age").severity, Severity::Ok);
    // Even without a max_drill_age.
    let none = Thresholds::default();
    assert_eq!(
        the(&check(&status, &none, now()), "drill").severity,
        Severity::Warning
    );

    // Never drilled.
    let mut status = healthy();
    status.drills = DrillHistory::default();
    let finding = the(
        &check(&status, &Thresholds::seeds(), now()),
        "max_drill_age",
    );
    assert_eq!(finding.severity, Severity::Warning);
    assert!(
        finding.message.contains("no passed drill"),
        "{}",
        finding.message
    );
    assert!(check(&status, &none, now())
        .iter()
        .all(|f| f.check != "max_drill_age"));
}

#[test]
fn repository_wal_lag_warns_one_second_past_max_wal_lag_on_the_newest_timeline_only() {
    let mut status = healthy();
    status.wal[0].archived_at = now() - Duration::minutes(10);
    assert_eq!(severity_of(&status, "max_wal_lag"), Severity::Ok);
    status.wal[0].archived_at = now() - Duration::minutes(10) - Duration::seconds(1);
    let finding = the(&check(&status, &Thresholds::seeds(), now()), "max_wal_lag");
    assert_eq!(finding.severity, Severity::Warning);
    assert_eq!(finding.subject, "timeline 1");
    assert!(
        finding.message.contains("without a database to ask"),
        "{}",
        finding.message
    );
    // Timeline 1 ended at a promotion a week ago; timeline 2 is current and fresh.
    status.wal.push(TimelineWal {
        timeline: 2,
        newest: "000000020000000000000009".into(),
        archived_at: now() - Duration::seconds(5),
        age_seconds: 5,
        segments: 3,
    });
    let finding = the(&check(&status, &Thresholds::seeds(), now()), "max_wal_lag");
    assert_eq!(
        (finding.severity, finding.subject.as_str()),
        (Severity::Ok, "timeline 2")
    );
    // No archived WAL (logical backups only): no WAL finding.
    status.wal.clear();
    assert!(check(&status, &Thresholds::seeds(), now())
        .iter()
        .all(|f| f.check != "max_wal_lag"));
}

fn server(waiting_since: Option<DateTime<Utc>>, current: &str) -> ServerArchive {
    let state = ArchiverState {
        server: "postgresql://monitor@db/postgres".into(),
        read_at: now(),
        started_at: now() - Duration::days(30),
        archive_mode: "on".into(),
        in_recovery: false,
        segment_size: 16 << 20,
        current_wal: Some(current.into()),
        last_archived_wal: Some("000000010000000000000004".into()),
        last_archived_time: waiting_since.or(Some(now() - Duration::days(3))),
        last_failed_wal: None,
        last_failed_time: None,
        oldest_ready: None,
    };
    ServerArchive::from_read(Ok(state))
}

#[test]
fn with_the_server_an_idle_database_raises_no_false_wal_alarm() {
    let mut status = healthy();
    // The repository's newest segment is three days old: alone, that would warn.
    status.wal[0].archived_at = now() - Duration::days(3);
    assert_eq!(severity_of(&status, "max_wal_lag"), Severity::Warning);
    // The server says only the segment being written is unarchived.
    status.server = Some(server(None, "000000010000000000000005"));
    let finding = the(&check(&status, &Thresholds::seeds(), now()), "max_wal_lag");
    assert_eq!(finding.severity, Severity::Ok, "{}", finding.message);
    assert_eq!(finding.perfdata.unwrap().to_string(), "'wal_lag'=0s;600;;0");

    // Completed segments wait: since the archiver's last success, boundary exact.
    status.server = Some(server(
        Some(now() - Duration::minutes(10)),
        "000000010000000000000007",
    ));
    assert_eq!(severity_of(&status, "max_wal_lag"), Severity::Ok);
    status.server = Some(server(
        Some(now() - Duration::minutes(10) - Duration::seconds(1)),
        "000000010000000000000007",
    ));
    let finding = the(&check(&status, &Thresholds::seeds(), now()), "max_wal_lag");
    assert_eq!(finding.severity, Severity::Warning);
    assert!(
        finding.message.contains("2 segments"),
        "{}",
        finding.message
    );
}

#[test]
fn a_server_that_cannot_be_read_is_unknown_and_the_rest_still_checked() {
    let mut status = healthy();
    status.server = Some(ServerArchive::from_read(Err(crate::Error::Postgres {
        context: "connecting to postgresql://monitor@db/postgres".into(),
        detail: "connection refused".into(),
    })));
    let findings = check(&status, &Thresholds::seeds(), now());
    assert_eq!(the(&findings, "server").severity, Severity::Unknown);
    assert_eq!(worst(&findings), Severity::Unknown);
    assert_eq!(worst(&findings).exit_code(), 3);
    // A warning elsewhere outranks the unknown.
    status.backups[0].last.finished_at = now() - Duration::days(2);
    assert_eq!(
        worst(&check(&status, &Thresholds::seeds(), now())),
        Severity::Warning
    );
}

#[test]
fn no_backup_or_a_forged_manifest_is_critical() {
    let mut status = healthy();
    status.backups.clear();
    let findings = check(&status, &Thresholds::seeds(), now());
    assert_eq!(the(&findings, "backups").severity, Severity::Critical);

    let mut status = healthy();
    let bad = |untrusted| BadBackup {
        id: "20261101T000000Z-logical-cccccc".into(),
        key: "backups/20261101T000000Z-logical-cccccc/manifest.json".into(),
        reason: "signature".into(),
        untrusted,
    };
    status.unusable = vec![bad(false)];
    assert_eq!(severity_of(&status, "manifests"), Severity::Warning);
    status.unusable = vec![bad(true)];
    assert_eq!(severity_of(&status, "manifests"), Severity::Critical);
}

#[test]
fn each_group_is_checked_on_its_own_and_labelled() {
    let mut status = healthy();
    status.backups.push(group(
        BackupKind::Physical,
        "7437170163312345678",
        Duration::hours(30),
        Duration::minutes(5),
        5_000_000,
    ));
    let findings = check(&status, &Thresholds::seeds(), now());
    let ages: Vec<(Severity, String)> = findings
        .iter()
        .filter(|f| f.check == "max_age")
        .map(|f| (f.severity, f.perfdata.as_ref().unwrap().label.clone()))
        .collect();
    assert_eq!(
        ages,
        [
            (Severity::Ok, "age_logical_shop".to_owned()),
            (
                Severity::Warning,
                "age_physical_7437170163312345678".to_owned()
            )
        ]
    );
}

#[test]
fn absent_thresholds_are_not_checked_and_flags_win_over_the_file() {
    let findings = check(&healthy(), &Thresholds::default(), now());
    assert!(findings.is_empty(), "{findings:#?}");
    let flags = Thresholds {
        max_age: Some("1h".parse().unwrap()),
        ..Thresholds::default()
    };
    let merged = flags.or(&Thresholds::seeds());
    assert_eq!(merged.max_age.unwrap().to_string(), "1h");
    assert_eq!(merged.min_size.unwrap().to_string(), "1KB");
    assert!(Thresholds::default().is_empty());
    assert!(!Thresholds::seeds().is_empty());
}

#[test]
fn perfdata_labels_are_quoted_as_the_plugin_guidelines_say() {
    let perf = PerfData {
        label: "age_logical_o'brien=x".into(),
        value: 5,
        unit: "s",
        warn: Some("10".into()),
        crit: None,
        min: Some(0),
    };
    assert_eq!(perf.to_string(), "'age_logical_o''brien_x'=5s;10;;0");
}

#[test]
fn metrics_name_every_group_and_escape_labels() {
    let mut status = healthy();
    status.backups[0].group = "sh\"op\\x\ny".into();
    let text = metrics::render(&status);
    assert!(
        text.contains("# TYPE ecobackup_last_success_timestamp_seconds gauge"),
        "{text}"
    );
    assert!(
        text.contains(
            r#"ecobackup_backup_size_bytes{kind="logical",database="sh\"op\\x\ny"} 10000"#
        ),
        "{text}"
    );
    assert!(
        text.contains("ecobackup_wal_archive_lag_seconds{timeline=\"00000001\"} 60\n"),
        "{text}"
    );
    assert!(text.contains("ecobackup_drill_success 1\n"), "{text}");
    assert!(text.contains("ecobackup_drill_rto_seconds 42\n"), "{text}");
    assert!(
        text.contains("ecobackup_repository_bytes 20000\n"),
        "{text}"
    );
    // Every family's HELP and TYPE come once, before its samples.
    let types = text.lines().filter(|l| l.starts_with("# TYPE")).count();
    let helps = text.lines().filter(|l| l.starts_with("# HELP")).count();
    assert_eq!(types, helps);
}
