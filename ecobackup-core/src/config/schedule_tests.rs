use chrono::TimeZone;

use super::*;

fn entry(job: &str) -> ScheduleConfig {
    ScheduleConfig {
        name: "nightly".to_owned(),
        cron: "0 3 * * *".to_owned(),
        job: job.to_owned(),
        ..ScheduleConfig::default()
    }
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

#[test]
fn each_key_becomes_its_flag() {
    let logical = ScheduleConfig {
        databases: vec![
            "postgres://backup@db/shop".into(),
            "host=db dbname=crm".into(),
        ],
        prometheus: Some("/var/lib/node_exporter/ecobackup.prom".into()),
        args: vec!["--globals".into(), "--tag".into(), "reason=hourly".into()],
        ..entry("backup  logical")
    };
    assert_eq!(
        logical.argv().unwrap(),
        [
            "backup",
            "logical",
            "--db",
            "postgres://backup@db/shop",
            "--db",
            "host=db dbname=crm",
            "--prometheus",
            "/var/lib/node_exporter/ecobackup.prom",
            "--globals",
            "--tag",
            "reason=hourly"
        ]
    );
    let files = ScheduleConfig {
        set: Some("uploads".into()),
        ..entry("backup files")
    };
    assert_eq!(
        files.argv().unwrap(),
        ["backup", "files", "--name", "uploads"]
    );
    let drill = ScheduleConfig {
        kind: Some("physical".into()),
        ..entry("drill")
    };
    assert_eq!(drill.argv().unwrap(), ["drill", "--kind", "physical"]);
    assert_eq!(entry("prune").argv().unwrap(), ["prune"]);
    let check = ScheduleConfig {
        databases: vec!["postgres://monitor@db/postgres".into()],
        ..entry("check")
    };
    assert_eq!(
        check.argv().unwrap(),
        ["check", "--db", "postgres://monitor@db/postgres"]
    );
}

#[test]
fn entries_that_cannot_run_are_refused_with_their_name() {
    let refused = |e: ScheduleConfig| validate(&[e], &["uploads"]).unwrap_err();
    for (e, wanted) in [
        (entry("backup logicl"), "job \"backup logicl\" is not one the daemon runs: backup logical, backup physical, backup files, prune, verify, drill, check"),
        (ScheduleConfig { cron: "0 3 * *".into(), ..entry("prune") }, "cron \"0 3 * *\" is not a cron pattern"),
        (ScheduleConfig { cron: "0 0 30 2 *".into(), ..entry("prune") }, "never matches"),
        (ScheduleConfig { timezone: Some("Berlin".into()), ..entry("prune") }, "timezone \"Berlin\" is not an IANA time zone"),
        (ScheduleConfig { name: "every hour".into(), ..entry("prune") }, "the name must be made of"),
        (ScheduleConfig { databases: vec!["postgres://db/x".into()], ..entry("prune") }, "prune takes no databases"),
        (ScheduleConfig { databases: vec!["postgres://db/a".into(), "postgres://db/b".into()], ..entry("backup physical") }, "takes one database, not several"),
        (ScheduleConfig { databases: vec!["postgres://backup:s3cret@db/shop".into()], ..entry("backup logical") }, "databases[0] has a password inline"),
        (entry("backup files"), "backup files needs `set`"),
        (ScheduleConfig { set: Some("keys".into()), ..entry("backup files") }, "set \"keys\" is not a [[files]] entry"),
        (ScheduleConfig { set: Some("uploads".into()), ..entry("prune") }, "prune takes no set"),
        (ScheduleConfig { kind: Some("files".into()), ..entry("drill") }, "drill takes logical or physical"),
        (ScheduleConfig { kind: Some("logical".into()), ..entry("verify") }, "verify takes no kind"),
        (ScheduleConfig { prometheus: Some("x.prom".into()), ..entry("check") }, "check writes no textfile"),
        (ScheduleConfig { args: vec!["--repo=s3://other/x".into()], ..entry("prune") }, "args: --repo=s3://other/x is a flag of the daemon itself"),
        (ScheduleConfig { args: vec!["-vq".into()], ..entry("prune") }, "args: -vq is a flag of the daemon itself"),
    ] {
        let error = refused(e);
        assert!(error.starts_with("[[schedule]] "), "{error}");
        assert!(error.contains(wanted), "{error}\nwanted: {wanted}");
        assert!(!error.contains("s3cret"), "{error}");
    }
    let twice = validate(&[entry("prune"), entry("verify")], &[]).unwrap_err();
    assert_eq!(twice, "[[schedule]] \"nightly\" is defined twice");
    let fine = ScheduleConfig {
        args: vec!["-r".into(), "age1xyz".into(), "--dry-run".into()],
        ..entry("prune")
    };
    validate(&[fine], &[]).unwrap();
}

#[test]
fn patterns_are_read_in_their_time_zone() {
    // 03:00 in Berlin is 02:00 UTC in winter (CET) and 01:00 UTC in summer (CEST).
    let berlin = When::parse("0 3 * * *", Some("Europe/Berlin")).unwrap();
    assert_eq!(
        berlin.next_after(utc(2026, 1, 10, 12, 0, 0)),
        Some(utc(2026, 1, 11, 2, 0, 0))
    );
    assert_eq!(
        berlin.next_after(utc(2026, 7, 10, 12, 0, 0)),
        Some(utc(2026, 7, 11, 1, 0, 0))
    );
    // UTC by default; strictly after.
    let hourly = When::parse("0 * * * *", None).unwrap();
    assert_eq!(
        hourly.next_after(utc(2026, 1, 1, 10, 0, 0)),
        Some(utc(2026, 1, 1, 11, 0, 0))
    );
    // Six fields: seconds first.
    let every_two = When::parse("*/2 * * * * *", None).unwrap();
    assert_eq!(
        every_two.next_after(utc(2026, 1, 1, 10, 0, 1)),
        Some(utc(2026, 1, 1, 10, 0, 2))
    );
    // The first of the month, the seeds' drill.
    let monthly = When::parse("0 4 1 * *", None).unwrap();
    assert_eq!(
        monthly.next_after(utc(2026, 2, 1, 4, 0, 0)),
        Some(utc(2026, 3, 1, 4, 0, 0))
    );
}

#[test]
fn a_daily_run_in_a_skipped_hour_runs_once_after_the_change() {
    // Berlin skips 02:00–03:00 on 2026-03-29: a 02:30 job runs at 03:00 local (01:00 UTC),
    // once, and the next day at 02:30 local again.
    let when = When::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
    let first = when.next_after(utc(2026, 3, 28, 12, 0, 0)).unwrap();
    assert_eq!(first, utc(2026, 3, 29, 1, 0, 0));
    assert_eq!(when.next_after(first).unwrap(), utc(2026, 3, 30, 0, 30, 0));
}

#[test]
fn relative_textfile_paths_are_taken_from_the_file_directory() {
    let mut entries = [
        ScheduleConfig {
            prometheus: Some("metrics/ecobackup.prom".into()),
            ..entry("prune")
        },
        ScheduleConfig {
            prometheus: Some("/abs/x.prom".into()),
            ..entry("verify")
        },
    ];
    anchor_paths(&mut entries, Path::new("/etc/ecobackup"));
    assert_eq!(
        entries[0].prometheus.as_deref(),
        Some(Path::new("/etc/ecobackup/metrics/ecobackup.prom"))
    );
    assert_eq!(
        entries[1].prometheus.as_deref(),
        Some(Path::new("/abs/x.prom"))
    );
}
