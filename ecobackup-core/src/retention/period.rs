//! Calendar periods in the policy's time zone: which hour, day, week, month or year a backup
//! finished in.

use std::fmt;

use chrono::{DateTime, Datelike, Offset, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;

/// A period rule's calendar unit: `keep_hourly` … `keep_yearly`.
///
/// Periods are read on the wall clock of the policy's time zone:
/// - an hour is a wall-clock hour *at one UTC offset*: when the clocks fall back, the repeated
///   hour (02:00–03:00 twice in Europe/Berlin) is two periods, one per offset, because two real
///   hours passed; when they spring forward the skipped hour simply has no backups. Zones whose
///   offset is not a whole number of hours (Asia/Kolkata) get their own wall-clock hours;
/// - a day is a calendar date, 23 or 25 hours long on DST days;
/// - a week is an ISO 8601 week, Monday to Sunday, numbered in its ISO year: 2020-12-31 is in
///   2020-W53 and 2021-01-03 still is, 2024-12-30 is in 2025-W01;
/// - a month and a year are calendar ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// `keep_hourly`.
    Hourly,
    /// `keep_daily`.
    Daily,
    /// `keep_weekly`.
    Weekly,
    /// `keep_monthly`.
    Monthly,
    /// `keep_yearly`.
    Yearly,
}

impl Period {
    /// Every period, shortest first: the order their reasons are listed in.
    pub const ALL: [Period; 5] = [
        Period::Hourly,
        Period::Daily,
        Period::Weekly,
        Period::Monthly,
        Period::Yearly,
    ];

    /// The rule's name in reasons: `hourly`, `daily`, `weekly`, `monthly`, `yearly`.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        }
    }

    /// The period `at` falls in, in `zone`, as a label that names it uniquely:
    /// `2024-10-27T02+02:00` (an hour and its offset), `2024-10-27`, `2024-W43`, `2024-10`,
    /// `2024`. Two instants are in the same period exactly when their labels are equal.
    pub fn label(self, at: DateTime<Utc>, zone: Tz) -> String {
        let local = at.with_timezone(&zone);
        match self {
            Period::Hourly => {
                let offset = local.offset().fix().local_minus_utc();
                let sign = if offset < 0 { '-' } else { '+' };
                let offset = offset.unsigned_abs() / 60;
                format!(
                    "{}T{:02}{sign}{:02}:{:02}",
                    local.format("%Y-%m-%d"),
                    local.hour(),
                    offset / 60,
                    offset % 60
                )
            }
            Period::Daily => local.format("%Y-%m-%d").to_string(),
            Period::Weekly => {
                let week = local.iso_week();
                format!("{}-W{:02}", week.year(), week.week())
            }
            Period::Monthly => local.format("%Y-%m").to_string(),
            Period::Yearly => local.year().to_string(),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn labels_follow_the_wall_clock_of_the_zone() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // 23:30 UTC on New Year's Eve is already next year in Berlin.
        let t = at("2023-12-31T23:30:00Z");
        assert_eq!(Period::Hourly.label(t, berlin), "2024-01-01T00+01:00");
        assert_eq!(Period::Daily.label(t, berlin), "2024-01-01");
        assert_eq!(Period::Weekly.label(t, berlin), "2024-W01");
        assert_eq!(Period::Monthly.label(t, berlin), "2024-01");
        assert_eq!(Period::Yearly.label(t, berlin), "2024");
        assert_eq!(Period::Yearly.label(t, Tz::UTC), "2023");
        assert_eq!(Period::Hourly.label(t, Tz::UTC), "2023-12-31T23+00:00");
    }

    #[test]
    fn the_repeated_hour_is_two_periods_and_its_day_one() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // 2024-10-27: 03:00 CEST becomes 02:00 CET, at 01:00 UTC.
        let summer = at("2024-10-27T00:30:00Z"); // 02:30 CEST
        let winter = at("2024-10-27T01:30:00Z"); // 02:30 CET
        assert_eq!(Period::Hourly.label(summer, berlin), "2024-10-27T02+02:00");
        assert_eq!(Period::Hourly.label(winter, berlin), "2024-10-27T02+01:00");
        assert_eq!(
            Period::Daily.label(summer, berlin),
            Period::Daily.label(winter, berlin)
        );
    }

    #[test]
    fn half_hour_zones_and_negative_offsets() {
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        let t = at("2024-03-01T04:29:00Z"); // 09:59 IST
        assert_eq!(Period::Hourly.label(t, kolkata), "2024-03-01T09+05:30");
        let t = at("2024-03-01T04:30:00Z"); // 10:00 IST
        assert_eq!(Period::Hourly.label(t, kolkata), "2024-03-01T10+05:30");
        let new_york: Tz = "America/New_York".parse().unwrap();
        assert_eq!(
            Period::Hourly.label(at("2024-01-01T04:59:00Z"), new_york),
            "2023-12-31T23-05:00"
        );
    }

    #[test]
    fn iso_weeks_straddle_new_year() {
        let utc = Tz::UTC;
        assert_eq!(
            Period::Weekly.label(at("2020-12-31T12:00:00Z"), utc),
            "2020-W53"
        );
        assert_eq!(
            Period::Weekly.label(at("2021-01-03T12:00:00Z"), utc),
            "2020-W53"
        );
        assert_eq!(
            Period::Weekly.label(at("2021-01-04T12:00:00Z"), utc),
            "2021-W01"
        );
        assert_eq!(
            Period::Weekly.label(at("2024-12-30T12:00:00Z"), utc),
            "2025-W01"
        );
    }
}
