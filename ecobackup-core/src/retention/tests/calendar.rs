//! Periods on a real calendar: two years of hourly backups, DST changes, year and ISO week
//! boundaries in zones other than UTC.

use chrono::TimeDelta;
use chrono_tz::Tz;

use super::*;

/// Hourly backups of `shop` from `first` to `last` inclusive, ids in time order.
fn hourly(first: &str, last: &str) -> Vec<Candidate> {
    let (first, last) = (at(first), at(last));
    let hours = (last - first).num_hours();
    (0..=hours)
        .map(|h| {
            let finished = first + TimeDelta::hours(h);
            Candidate::new(format!("h{:05}", h), BackupKind::Logical, "shop", finished)
        })
        .collect()
}

/// Checks a plan's period reasons against [`expected_by_period`] for every rule of `toml`.
fn assert_periods_match_the_slow_way(
    toml: &str,
    catalog: &[Candidate],
    now: DateTime<Utc>,
) -> RetentionPlan {
    let policy = policy(toml);
    let rules = policy.rules(BackupKind::Logical);
    let plan = plan(&policy, catalog, now);
    for &(period, count) in rules.periods() {
        let expected = expected_by_period(catalog, period, count as usize, rules.timezone(), now);
        assert_eq!(covered_by_plan(&plan, period), expected, "{period}");
    }
    plan
}

const GFS: &str =
    "[retention]\nkeep_hourly = 24\nkeep_daily = 30\nkeep_monthly = 12\nkeep_yearly = 4\n";

#[test]
fn two_years_of_hourly_backups_under_24_hourly_30_daily_12_monthly_4_yearly() {
    // 2024 (a leap year) and 2025: 366 * 24 + 365 * 24 backups.
    let catalog = hourly("2024-01-01T00:00:00Z", "2025-12-31T23:00:00Z");
    assert_eq!(catalog.len(), 17_544);
    let now = at("2026-01-01T00:30:00Z");
    let plan = assert_periods_match_the_slow_way(GFS, &catalog, now);

    let count = |period| covered_by_plan(&plan, period).len();
    assert_eq!(count(Period::Hourly), 24);
    assert_eq!(count(Period::Daily), 30);
    assert_eq!(count(Period::Monthly), 12);
    // Only two years have backups: the yearly rule keeps what exists.
    assert_eq!(count(Period::Yearly), 2);

    // By hand: the 24 hours of 31 December; the 23:00 backup of 2–30 December (29 more days);
    // of January–November 2025 (11 more months); of 31 December 2024 (1 more year).
    assert_eq!(plan.keep.len(), 24 + 29 + 11 + 1);
    assert_eq!(plan.delete.len(), 17_544 - 65);
    let daily: BTreeSet<&str> = (2..=31)
        .map(|d| format!("2025-12-{d:02}T23:00:00+00:00"))
        .map(|t| {
            let t = at(&t);
            catalog
                .iter()
                .find(|c| c.finished_at == t)
                .unwrap()
                .id
                .as_str()
        })
        .collect();
    let kept_ids: BTreeSet<&str> = kept(&plan).into_iter().collect();
    assert!(daily.is_subset(&kept_ids));
    let months: Vec<String> = covered_by_plan(&plan, Period::Monthly)
        .into_keys()
        .collect();
    let expected: Vec<String> = (1..=12).map(|m| format!("2025-{m:02}")).collect();
    assert_eq!(months, expected);
    assert_eq!(
        covered_by_plan(&plan, Period::Yearly),
        BTreeMap::from([
            ("2024".to_owned(), "h08783".to_owned()),
            ("2025".to_owned(), "h17543".to_owned()),
        ])
    );
    assert_eq!(
        reasons(&plan, "h17543"),
        [
            "newest",
            "hourly 1/24",
            "daily 1/30",
            "monthly 1/12",
            "yearly 1/4"
        ]
    );
    assert_eq!(reasons(&plan, "h08783"), ["yearly 2/4"]);
    assert!(plan.deletes_more_than_half());

    // Run again on what is left: nothing more is deleted on the same day.
    let left: Vec<Candidate> = catalog
        .iter()
        .filter(|c| kept_ids.contains(c.id.as_str()))
        .cloned()
        .collect();
    let again = crate::retention::plan(&policy(GFS), &left, now);
    assert_eq!(again.keep.len(), 65);
    assert!(again.delete.is_empty());
}

#[test]
fn two_years_of_hourly_backups_in_berlin_cover_each_period_once() {
    let catalog = hourly("2024-01-01T00:00:00Z", "2025-12-31T23:00:00Z");
    let toml = format!("{GFS}keep_weekly = 8\ntimezone = \"Europe/Berlin\"\n");
    let plan = assert_periods_match_the_slow_way(&toml, &catalog, at("2026-01-01T00:30:00Z"));
    // Berlin's new year began at 23:00 UTC: the newest backup of 2025 there is 22:00 UTC.
    let years = covered_by_plan(&plan, Period::Yearly);
    assert_eq!(years.len(), 3, "{years:?}"); // 2026 (the 23:00 UTC backup), 2025, 2024
    assert_eq!(years["2026"], "h17543");
    assert_eq!(years["2025"], "h17542");
    assert_eq!(years["2024"], "h08782");
    // 29 December 2025 is a Monday: ISO week 2026-W01 began in Berlin.
    let weeks = covered_by_plan(&plan, Period::Weekly);
    assert!(weeks.contains_key("2026-W01") && weeks.contains_key("2025-W52"));
}

#[test]
fn the_repeated_hour_of_autumn_is_two_hourly_periods() {
    // Europe/Berlin, 27 October 2024: at 01:00 UTC, 03:00 CEST becomes 02:00 CET.
    let catalog = [
        shop("cest-0210", "2024-10-27T00:10:00Z"),
        shop("cest-0250", "2024-10-27T00:50:00Z"),
        shop("cet-0210", "2024-10-27T01:10:00Z"),
        shop("cet-0250", "2024-10-27T01:50:00Z"),
        shop("cet-0310", "2024-10-27T02:10:00Z"),
    ];
    let toml = "[retention]\nkeep_hourly = 3\ntimezone = \"Europe/Berlin\"\n";
    let plan = assert_periods_match_the_slow_way(toml, &catalog, at("2024-10-27T03:00:00Z"));
    assert_eq!(kept(&plan), ["cet-0310", "cet-0250", "cest-0250"]);
    assert_eq!(deleted(&plan), ["cet-0210", "cest-0210"]);
    assert_eq!(
        covered_by_plan(&plan, Period::Hourly),
        BTreeMap::from([
            ("2024-10-27T02+01:00".to_owned(), "cet-0250".to_owned()),
            ("2024-10-27T02+02:00".to_owned(), "cest-0250".to_owned()),
            ("2024-10-27T03+01:00".to_owned(), "cet-0310".to_owned()),
        ])
    );
}

#[test]
fn dst_days_have_23_and_25_hours_and_are_one_day_each() {
    let toml = "[retention]\nkeep_hourly = 100\nkeep_daily = 100\ntimezone = \"Europe/Berlin\"\n";
    // 31 March 2024 in Berlin: 23:00 UTC on the 30th to 22:00 UTC on the 31st.
    let spring = hourly("2024-03-30T23:00:00Z", "2024-03-31T21:00:00Z");
    assert_eq!(spring.len(), 23);
    let plan = assert_periods_match_the_slow_way(toml, &spring, at("2024-04-01T00:00:00Z"));
    let hours = covered_by_plan(&plan, Period::Hourly);
    assert_eq!(hours.len(), 23);
    assert!(hours.contains_key("2024-03-31T01+01:00"));
    assert!(
        !hours.keys().any(|h| h.starts_with("2024-03-31T02")),
        "{hours:?}"
    );
    assert!(hours.contains_key("2024-03-31T03+02:00"));
    assert_eq!(
        covered_by_plan(&plan, Period::Daily)
            .into_keys()
            .collect::<Vec<_>>(),
        ["2024-03-31"]
    );
    // 27 October 2024: 22:00 UTC on the 26th to 23:00 UTC on the 27th.
    let autumn = hourly("2024-10-26T22:00:00Z", "2024-10-27T22:00:00Z");
    assert_eq!(autumn.len(), 25);
    let plan = assert_periods_match_the_slow_way(toml, &autumn, at("2024-10-28T00:00:00Z"));
    assert_eq!(covered_by_plan(&plan, Period::Hourly).len(), 25);
    assert_eq!(covered_by_plan(&plan, Period::Daily).len(), 1);
    assert_eq!(plan.keep.len(), 25);
}

#[test]
fn the_repeated_hour_at_midnight_is_one_day_and_two_hours() {
    // America/Havana ends DST at 01:00 local (CDT → CST): 00:30 CDT and 00:30 CST are both
    // on 3 November 2024.
    let catalog = hourly("2024-11-02T12:00:00Z", "2024-11-04T12:00:00Z");
    let toml = "[retention]\nkeep_daily = 3\nkeep_hourly = 60\ntimezone = \"America/Havana\"\n";
    let plan = assert_periods_match_the_slow_way(toml, &catalog, at("2024-11-05T00:00:00Z"));
    let days: Vec<String> = covered_by_plan(&plan, Period::Daily).into_keys().collect();
    assert_eq!(days, ["2024-11-02", "2024-11-03", "2024-11-04"]);
    let hours = covered_by_plan(&plan, Period::Hourly);
    assert!(hours.contains_key("2024-11-03T00-04:00") && hours.contains_key("2024-11-03T00-05:00"));
}

#[test]
fn a_day_that_comes_back_after_midnight_is_not_counted_twice() {
    // America/St_Johns fell back at 00:01 until 2011: on 7 November 2010 at 00:01 NDT (-2:30)
    // the clocks went back to 23:01 NST (-3:30) on the 6th, so the 6th came back after the 7th
    // had begun. Walking newest first, a rule that only compared with the previous backup's
    // day would count the 7th twice and lose the 5th.
    let zone: Tz = "America/St_Johns".parse().unwrap();
    let catalog = [
        shop("nst-7th-0030", "2010-11-07T04:00:00Z"),
        shop("nst-6th-2330", "2010-11-07T03:00:00Z"),
        shop("ndt-7th-0000", "2010-11-07T02:30:30Z"),
        shop("ndt-6th-2330", "2010-11-07T02:00:00Z"),
        shop("5th", "2010-11-05T12:00:00Z"),
    ];
    let day = |id: &str| {
        let c = catalog.iter().find(|c| c.id == id).unwrap();
        Period::Daily.label(c.finished_at, zone)
    };
    assert_eq!(day("ndt-7th-0000"), "2010-11-07");
    assert_eq!(day("nst-6th-2330"), "2010-11-06");
    let toml = "[retention]\nkeep_daily = 3\ntimezone = \"America/St_Johns\"\n";
    let plan = assert_periods_match_the_slow_way(toml, &catalog, at("2010-11-08T00:00:00Z"));
    assert_eq!(kept(&plan), ["nst-7th-0030", "nst-6th-2330", "5th"]);
    assert_eq!(reasons(&plan, "5th"), ["daily 3/3"]);
    assert_eq!(deleted(&plan), ["ndt-7th-0000", "ndt-6th-2330"]);
}

#[test]
fn year_and_month_boundaries_follow_the_zone_not_utc() {
    // Pacific/Auckland is UTC+13 on New Year's Eve: 11:00 UTC is already 2025 there.
    let catalog = [
        shop("nz-2025-b", "2024-12-31T12:00:00Z"), // 2025-01-01 01:00 NZDT
        shop("nz-2025-a", "2024-12-31T11:30:00Z"), // 2025-01-01 00:30 NZDT
        shop("nz-2024", "2024-12-31T10:00:00Z"),   // 2024-12-31 23:00 NZDT
    ];
    let now = at("2025-01-02T00:00:00Z");
    for period in ["yearly", "monthly", "daily"] {
        let auckland = format!("[retention]\nkeep_{period} = 2\ntimezone = \"Pacific/Auckland\"\n");
        let plan = assert_periods_match_the_slow_way(&auckland, &catalog, now);
        assert_eq!(kept(&plan), ["nz-2025-b", "nz-2024"], "{period}");
        assert_eq!(deleted(&plan), ["nz-2025-a"], "{period}");
        // In UTC the three are in one year, month and day.
        let utc = format!("[retention]\nkeep_{period} = 2\n");
        let plan = assert_periods_match_the_slow_way(&utc, &catalog, now);
        assert_eq!(kept(&plan), ["nz-2025-b"], "{period}");
    }
}

#[test]
fn iso_week_53_and_week_1_in_berlin() {
    // 2020 has an ISO week 53 (28 Dec 2020 – 3 Jan 2021). 23:30 UTC on Sunday 3 January is
    // already Monday in Berlin: 2021-W01 there, still 2020-W53 in UTC.
    let catalog = [
        shop("mon-early", "2021-01-03T23:30:00Z"),
        shop("sun", "2021-01-03T12:00:00Z"),
        shop("thu", "2020-12-31T12:00:00Z"),
        shop("w52", "2020-12-27T12:00:00Z"),
    ];
    let now = at("2021-01-05T00:00:00Z");
    let berlin = "[retention]\nkeep_weekly = 3\ntimezone = \"Europe/Berlin\"\n";
    let plan = assert_periods_match_the_slow_way(berlin, &catalog, now);
    assert_eq!(kept(&plan), ["mon-early", "sun", "w52"]);
    assert_eq!(reasons(&plan, "mon-early"), ["newest", "weekly 1/3"]);
    assert_eq!(reasons(&plan, "sun"), ["weekly 2/3"]);
    assert_eq!(reasons(&plan, "w52"), ["weekly 3/3"]);
    assert_eq!(
        covered_by_plan(&plan, Period::Weekly)
            .into_keys()
            .collect::<Vec<_>>(),
        ["2020-W52", "2020-W53", "2021-W01"]
    );
    let utc = "[retention]\nkeep_weekly = 3\n";
    let plan = assert_periods_match_the_slow_way(utc, &catalog, now);
    assert_eq!(kept(&plan), ["mon-early", "w52"]);
    assert_eq!(deleted(&plan), ["sun", "thu"]);
}

#[test]
fn gaps_do_not_use_up_periods() {
    // Backups stopped for ten days: 3 daily still keeps three days that have a backup.
    let catalog = [
        shop("after", "2026-02-20T05:00:00Z"),
        shop("before-1", "2026-02-09T05:00:00Z"),
        shop("before-2", "2026-02-08T05:00:00Z"),
        shop("before-3", "2026-02-07T05:00:00Z"),
    ];
    let plan = plan(
        &policy("[retention]\nkeep_daily = 3\n"),
        &catalog,
        at("2026-02-21T00:00:00Z"),
    );
    assert_eq!(kept(&plan), ["after", "before-1", "before-2"]);
    assert_eq!(deleted(&plan), ["before-3"]);
}
