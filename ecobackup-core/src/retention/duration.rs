//! `keep_within` durations: `"7d"`, `"36h"`, `"2w"`, `"1y"`, `"1d12h"`.
//!
//! Parsed here rather than with humantime: humantime reads `"1y"` as 365.25 days and `"1M"` as
//! 30.44 days, and accepts prose (`"1 hour 3 min"`); a retention policy wants a few fixed units
//! that an operator can add up by hand, and an error that lists them.

use std::fmt;
use std::str::FromStr;

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};

/// The units a duration may use, with their length in seconds. A year is 365 days and a week 7:
/// fixed lengths, so `"1y"` means the same span whatever the calendar does.
/// Minutes are `min`: a bare `m` is refused, since restic and borg read it as months.
const UNITS: [(&str, &str, i64); 5] = [
    ("min", "minutes", 60),
    ("h", "hours", 3_600),
    ("d", "days", 86_400),
    ("w", "weeks", 7 * 86_400),
    ("y", "years of 365 days", 365 * 86_400),
];

/// What every parse error ends with: the grammar.
const EXPECTED: &str =
    "expected a number and a unit, e.g. \"7d\", \"36h\", \"2w\", \"1y\" or \"1d12h\" \
     (units: min minutes, h hours, d days, w weeks, y years of 365 days)";

/// How long a rule keeps a backup after it finished, as written in the configuration.
///
/// It keeps the text it was parsed from, so reasons show what the operator wrote
/// (`within 36h`, not `within 1d12h`). Zero (`"0d"`) is allowed and means "off", as a count of
/// zero does: a per-kind table uses it to switch off the base policy's `keep_within`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeepWithin {
    text: String,
    seconds: i64,
}

impl KeepWithin {
    /// The span, as a chrono duration.
    pub fn duration(&self) -> TimeDelta {
        TimeDelta::seconds(self.seconds)
    }

    /// Whether it is zero, i.e. the rule is off.
    pub fn is_zero(&self) -> bool {
        self.seconds == 0
    }

    /// The text it was parsed from (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The unit an age compared with this duration is best shown in, in seconds and as a
    /// suffix: the largest unit of minutes, hours or days that divides it (weeks and years are
    /// shown in days: `12d < 2w`). An age below the limit, rounded down in that unit, then
    /// always shows below the limit.
    pub(crate) fn age_unit(&self) -> (i64, &'static str) {
        [(86_400, "d"), (3_600, "h"), (60, "min")]
            .into_iter()
            .find(|(unit, _)| self.seconds % unit == 0)
            .unwrap_or((60, "min"))
    }
}

impl FromStr for KeepWithin {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err(format!("the duration is empty: {EXPECTED}"));
        }
        let mut seconds: i64 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            if digits == 0 {
                return Err(format!("invalid duration {text:?}: {EXPECTED}"));
            }
            let (number, after) = rest.split_at(digits);
            let Some(unit_char) = after.chars().next() else {
                return Err(format!(
                    "invalid duration {text:?}: the number {number} has no unit; {EXPECTED}"
                ));
            };
            if after.starts_with("mo") || unit_char == 'M' {
                return Err(format!(
                    "invalid duration {text:?}: months have no fixed length, give days instead \
                     (e.g. \"30d\") or years (\"1y\" is 365 days)"
                ));
            }
            let Some((name, _, unit)) = UNITS.iter().find(|(name, _, _)| after.starts_with(name))
            else {
                if unit_char == 'm' {
                    return Err(format!(
                        "invalid duration {text:?}: \"m\" is ambiguous (restic and borg read it as months): write \"min\" for minutes, or days (\"30d\") for a month"
                    ));
                }
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {unit_char:?}; {EXPECTED}"
                ));
            };
            let too_long = || format!("invalid duration {text:?}: too long");
            let number: i64 = number.parse().map_err(|_| too_long())?;
            seconds = number
                .checked_mul(*unit)
                .and_then(|s| seconds.checked_add(s))
                .filter(|s| TimeDelta::try_seconds(*s).is_some())
                .ok_or_else(too_long)?;
            rest = &after[name.len()..];
        }
        Ok(KeepWithin {
            text: text.to_owned(),
            seconds,
        })
    }
}

impl TryFrom<String> for KeepWithin {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<KeepWithin> for String {
    fn from(within: KeepWithin) -> String {
        within.text
    }
}

impl fmt::Display for KeepWithin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `span` rounded down to its largest whole unit among days, hours, minutes and seconds
/// (`"3h"`, `"2d"`): for spans that have no limit to be compared with, such as how far in the
/// future a backup's clock was.
pub(crate) fn compact(span: TimeDelta) -> String {
    let seconds = span.num_seconds();
    [(86_400, "d"), (3_600, "h"), (60, "min")]
        .into_iter()
        .find(|(unit, _)| seconds >= *unit)
        .map(|(unit, suffix)| format!("{}{suffix}", seconds / unit))
        .unwrap_or_else(|| format!("{seconds}s"))
}

/// `age` in `limit`'s unit ([`KeepWithin::age_unit`]), rounded down: `"12d"` against `"90d"`.
pub(crate) fn age_against(age: TimeDelta, limit: &KeepWithin) -> String {
    let (unit, suffix) = limit.age_unit();
    format!("{}{suffix}", age.num_seconds() / unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(text: &str) -> i64 {
        text.parse::<KeepWithin>().unwrap().duration().num_seconds()
    }

    #[test]
    fn units_add_up_by_hand() {
        assert_eq!(seconds("90min"), 90 * 60);
        assert!("6m"
            .parse::<KeepWithin>()
            .unwrap_err()
            .contains("ambiguous"));
        assert_eq!(seconds("36h"), 36 * 3_600);
        assert_eq!(seconds("7d"), 7 * 86_400);
        assert_eq!(seconds("2w"), 14 * 86_400);
        assert_eq!(seconds("1y"), 365 * 86_400);
        assert_eq!(seconds("1d12h"), 36 * 3_600);
        assert_eq!(seconds(" 7d "), 7 * 86_400);
        assert!("0d".parse::<KeepWithin>().unwrap().is_zero());
    }

    #[test]
    fn it_shows_what_was_written() {
        let within: KeepWithin = "1d12h".parse().unwrap();
        assert_eq!(within.to_string(), "1d12h");
        assert_eq!(String::from(within), "1d12h");
    }

    #[test]
    fn garbage_is_refused_with_the_grammar() {
        for (text, says) in [
            ("", "empty"),
            ("7", "has no unit"),
            ("d", "invalid duration"),
            ("7x", "unknown unit 'x'"),
            ("7 d", "unknown unit ' '"),
            ("-7d", "invalid duration"),
            ("7.5d", "unknown unit '.'"),
            ("1mo", "months have no fixed length"),
            ("1M", "months have no fixed length"),
            ("7days", "invalid duration \"7days\""),
            ("99999999999999999999d", "too long"),
            ("999999999999y", "too long"),
        ] {
            let error = text.parse::<KeepWithin>().unwrap_err();
            assert!(error.contains(says), "{text:?}: {error}");
            if !says.contains("months") && !says.contains("too long") {
                assert!(error.contains("e.g. \"7d\""), "{text:?}: {error}");
            }
        }
    }

    #[test]
    fn ages_are_shown_in_the_unit_of_their_limit() {
        let age = TimeDelta::hours(12 * 24 + 5);
        assert_eq!(age_against(age, &"90d".parse().unwrap()), "12d");
        assert_eq!(age_against(age, &"2w".parse().unwrap()), "12d");
        assert_eq!(age_against(age, &"300h".parse().unwrap()), "293h");
        assert_eq!(age_against(age, &"36h".parse().unwrap()), "293h");
        assert_eq!(age_against(age, &"90min".parse().unwrap()), "17580min");
        assert_eq!(compact(TimeDelta::minutes(150)), "2h");
        assert_eq!(compact(TimeDelta::days(3)), "3d");
        assert_eq!(compact(TimeDelta::seconds(42)), "42s");
    }
}
