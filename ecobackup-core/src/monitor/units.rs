//! Thresholds as an operator writes them: durations (`"1s"`, `"10m"`, `"26h"`, `"35d"`) and
//! sizes (`"1KB"`, `"10GB"`, `"1GiB"`).
//!
//! Not [`KeepWithin`](crate::retention::KeepWithin): a monitoring threshold needs seconds
//! (`max_wal_lag = "90s"`), which a retention span has no use for, and years make no sense as
//! an alert threshold. The grammar is the same (a whole number and a unit, repeated:
//! `"1h30m"`), so what an operator learnt in `[retention]` holds here.

use std::fmt;
use std::str::FromStr;

use chrono::TimeDelta;
use serde::{Deserialize, Serialize};

/// Duration units and their length in seconds.
const SPAN_UNITS: [(char, i64); 5] = [
    ('s', 1),
    ('m', 60),
    ('h', 3_600),
    ('d', 86_400),
    ('w', 7 * 86_400),
];

const SPAN_GRAMMAR: &str = "expected a whole number and a unit, e.g. \"90s\", \"10m\", \"26h\", \
     \"35d\" or \"1h30m\" (units: s seconds, m minutes, h hours, d days, w weeks)";

/// A duration threshold, keeping the text it was written as (`26h` is shown as `26h`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Span {
    text: String,
    seconds: i64,
}

impl Span {
    /// A span of `seconds`, written in the largest unit that divides it (`93600` → `26h`).
    pub fn from_seconds(seconds: i64) -> Span {
        let (unit, suffix) = [(86_400, 'd'), (3_600, 'h'), (60, 'm')]
            .into_iter()
            .find(|(unit, _)| seconds != 0 && seconds % unit == 0)
            .unwrap_or((1, 's'));
        Span {
            text: format!("{}{suffix}", seconds / unit),
            seconds,
        }
    }

    /// Its length in whole seconds.
    pub fn seconds(&self) -> i64 {
        self.seconds
    }

    /// Its length as a chrono duration.
    pub fn duration(&self) -> TimeDelta {
        TimeDelta::seconds(self.seconds)
    }
}

impl FromStr for Span {
    type Err = String;

    fn from_str(text: &str) -> Result<Span, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err(format!("the duration is empty: {SPAN_GRAMMAR}"));
        }
        let mut seconds: i64 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let (number, after) = split_number(rest);
            if number.is_empty() {
                return Err(format!("invalid duration {text:?}: {SPAN_GRAMMAR}"));
            }
            let Some(unit) = after.chars().next() else {
                return Err(format!(
                    "invalid duration {text:?}: the number {number} has no unit; {SPAN_GRAMMAR}"
                ));
            };
            let Some((_, length)) = SPAN_UNITS.iter().find(|(c, _)| *c == unit) else {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {unit:?}; {SPAN_GRAMMAR}"
                ));
            };
            let too_long = || format!("invalid duration {text:?}: too long");
            seconds = number
                .parse::<i64>()
                .ok()
                .and_then(|n| n.checked_mul(*length))
                .and_then(|s| seconds.checked_add(s))
                .filter(|s| TimeDelta::try_seconds(*s).is_some())
                .ok_or_else(too_long)?;
            rest = &after[unit.len_utf8()..];
        }
        Ok(Span {
            text: text.to_owned(),
            seconds,
        })
    }
}

impl TryFrom<String> for Span {
    type Error = String;
    fn try_from(text: String) -> Result<Span, String> {
        text.parse()
    }
}

impl From<Span> for String {
    fn from(span: Span) -> String {
        span.text
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Size units, lowercase, and their length in bytes: SI multiples of 1000, IEC ones of 1024.
const SIZE_UNITS: [(&str, u64); 9] = [
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
];

const SIZE_GRAMMAR: &str = "expected a whole number and a unit, e.g. \"1KB\", \"10GB\" or \
     \"1GiB\" (B; KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB powers of 1024)";

/// A size threshold, keeping the text it was written as. `KB` is 1000 bytes and `KiB` 1024,
/// as the SI and IEC define them; units are read without regard to case (`1kb` = `1KB`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ByteSize {
    text: String,
    bytes: u64,
}

impl ByteSize {
    /// A size of `bytes`, written as a number of bytes (`1000B`).
    pub fn from_bytes(bytes: u64) -> ByteSize {
        ByteSize {
            text: format!("{bytes}B"),
            bytes,
        }
    }

    /// Its size in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<ByteSize, String> {
        let text = text.trim();
        let (number, unit) = split_number(text);
        if number.is_empty() {
            return Err(format!("invalid size {text:?}: {SIZE_GRAMMAR}"));
        }
        let unit = unit.trim_start().to_ascii_lowercase();
        if unit.is_empty() {
            return Err(format!(
                "invalid size {text:?}: the number {number} has no unit; {SIZE_GRAMMAR}"
            ));
        }
        let Some((_, length)) = SIZE_UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(format!(
                "invalid size {text:?}: unknown unit {unit:?}; {SIZE_GRAMMAR}"
            ));
        };
        let bytes = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(*length))
            .ok_or_else(|| format!("invalid size {text:?}: too large"))?;
        Ok(ByteSize {
            text: text.to_owned(),
            bytes,
        })
    }
}

impl TryFrom<String> for ByteSize {
    type Error = String;
    fn try_from(text: String) -> Result<ByteSize, String> {
        text.parse()
    }
}

impl From<ByteSize> for String {
    fn from(size: ByteSize) -> String {
        size.text
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `"26h"` → (`"26"`, `"h"`).
fn split_number(text: &str) -> (&str, &str) {
    let digits = text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    text.split_at(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(text: &str) -> i64 {
        text.parse::<Span>().unwrap().seconds()
    }

    fn bytes(text: &str) -> u64 {
        text.parse::<ByteSize>().unwrap().bytes()
    }

    #[test]
    fn the_seeds_durations() {
        assert_eq!(seconds("1s"), 1);
        assert_eq!(seconds("10m"), 600);
        assert_eq!(seconds("26h"), 93_600);
        assert_eq!(seconds("35d"), 35 * 86_400);
        assert_eq!(seconds("1h"), 3_600);
        assert_eq!(seconds("2w"), 14 * 86_400);
        assert_eq!(seconds("1h30m"), 5_400);
        assert_eq!(seconds(" 90s "), 90);
        assert_eq!("26h".parse::<Span>().unwrap().to_string(), "26h");
    }

    #[test]
    fn spans_from_seconds_are_written_in_their_largest_unit() {
        assert_eq!(Span::from_seconds(93_600).to_string(), "26h");
        assert_eq!(Span::from_seconds(600).to_string(), "10m");
        assert_eq!(Span::from_seconds(86_400 * 35).to_string(), "35d");
        assert_eq!(Span::from_seconds(61).to_string(), "61s");
        assert_eq!(Span::from_seconds(0).to_string(), "0s");
    }

    #[test]
    fn bad_durations_are_refused_with_the_grammar() {
        for (text, says) in [
            ("", "empty"),
            ("26", "has no unit"),
            ("h", "invalid duration"),
            ("1y", "unknown unit 'y'"),
            ("1.5h", "unknown unit '.'"),
            ("-1h", "invalid duration"),
            ("26 h", "unknown unit ' '"),
            ("99999999999999999999s", "too long"),
        ] {
            let error = text.parse::<Span>().unwrap_err();
            assert!(error.contains(says), "{text:?}: {error}");
        }
    }

    #[test]
    fn sizes_are_si_or_iec() {
        assert_eq!(bytes("1KB"), 1_000);
        assert_eq!(bytes("1kB"), 1_000);
        assert_eq!(bytes("1KiB"), 1_024);
        assert_eq!(bytes("10GB"), 10_000_000_000);
        assert_eq!(bytes("1GiB"), 1 << 30);
        assert_eq!(bytes("512B"), 512);
        assert_eq!(bytes("3 MB"), 3_000_000);
        assert_eq!(bytes("2TiB"), 2 << 40);
        assert_eq!("1KB".parse::<ByteSize>().unwrap().to_string(), "1KB");
    }

    #[test]
    fn bad_sizes_are_refused_with_the_grammar() {
        for (text, says) in [
            ("", "invalid size"),
            ("KB", "invalid size"),
            ("1000", "has no unit"),
            ("1.5GB", "unknown unit \".5gb\""),
            ("1kbit", "unknown unit"),
            ("99999999999TB", "too large"),
        ] {
            let error = text.parse::<ByteSize>().unwrap_err();
            assert!(error.contains(says), "{text:?}: {error}");
        }
    }
}
