//! WAL positions and file names, as PostgreSQL spells them.
//!
//! - An [`Lsn`] is a byte position in the WAL stream, written `16/B374D848` (two hex halves).
//! - A segment file is named `TTTTTTTTXXXXXXXXYYYYYYYY`: the timeline, then the segment number
//!   split into "log" and "seg" parts at `0x1_0000_0000 / wal_segment_size` segments per log.
//! - Beside segments, archives hold timeline history files (`00000002.history`), backup history
//!   files (`000000010000000000000002.00000028.backup`) and partial segments left at a promotion
//!   (`000000010000000000000005.partial`).
//!
//! Names come from PostgreSQL (`%p`, `%f`) and from listings of a repository that anyone with
//! write access may have filled: [`WalFile::parse`] accepts exactly the four forms above and
//! nothing else (no path separators, no lowercase hex that PostgreSQL never writes).

use std::fmt;
use std::str::FromStr;

/// The default `wal_segment_size`: 16 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

/// A position in the WAL (a log sequence number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The number of the segment that holds this position.
    pub fn segment_number(self, segment_size: u64) -> u64 {
        self.0 / segment_size
    }

    /// The number of the segment holding the last byte before this position: the segment a
    /// backup or a recovery that ends here needs last (a stop LSN on a segment boundary needs
    /// the segment before it, as PostgreSQL's `XLByteToPrevSeg`).
    pub fn previous_byte_segment_number(self, segment_size: u64) -> u64 {
        self.0.saturating_sub(1) / segment_size
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = String;
    /// `16/B374D848`: one to eight hex digits on each side of the slash (pg_lsn's input form).
    fn from_str(text: &str) -> Result<Lsn, String> {
        let bad = || format!("{text:?} is not an LSN (expected two hex numbers like 16/B374D848)");
        let (high, low) = text.split_once('/').ok_or_else(bad)?;
        let half = |s: &str| {
            if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            u32::from_str_radix(s, 16).map_err(|_| bad())
        };
        Ok(Lsn((u64::from(half(high)?) << 32) | u64::from(half(low)?)))
    }
}

impl serde::Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Lsn, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A WAL segment: its timeline and its number in the WAL stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Segment {
    /// The timeline (1 for a cluster never promoted).
    pub timeline: u32,
    /// The segment number: the LSN of its first byte divided by the segment size.
    pub number: u64,
}

impl Segment {
    /// The segment of timeline `timeline` that holds `lsn`.
    pub fn containing(timeline: u32, lsn: Lsn, segment_size: u64) -> Segment {
        Segment {
            timeline,
            number: lsn.segment_number(segment_size),
        }
    }

    /// The 24-character file name (`000000010000000A000000FF`) for a `segment_size`.
    pub fn file_name(self, segment_size: u64) -> String {
        let per_log = segments_per_log(segment_size);
        format!(
            "{:08X}{:08X}{:08X}",
            self.timeline,
            self.number / per_log,
            self.number % per_log
        )
    }

    /// Parses a 24-character segment file name for a `segment_size`. `None` for anything
    /// else, including a "seg" part too large for that segment size.
    pub fn parse(name: &str, segment_size: u64) -> Option<Segment> {
        let (timeline, log, seg) = split_segment_name(name)?;
        let per_log = segments_per_log(segment_size);
        if u64::from(seg) >= per_log || timeline == 0 {
            return None;
        }
        Some(Segment {
            timeline,
            number: u64::from(log) * per_log + u64::from(seg),
        })
    }

    /// The LSN of the segment's first byte.
    pub fn start_lsn(self, segment_size: u64) -> Lsn {
        Lsn(self.number * segment_size)
    }

    /// The next segment on the same timeline.
    pub fn next(self) -> Segment {
        Segment {
            timeline: self.timeline,
            number: self.number + 1,
        }
    }
}

/// How many segments one "log" (4 GiB of WAL) holds.
fn segments_per_log(segment_size: u64) -> u64 {
    (1u64 << 32) / segment_size.max(1)
}

/// `TTTTTTTTXXXXXXXXYYYYYYYY` → its three parts, or `None` unless the name is exactly 24
/// uppercase hex digits.
fn split_segment_name(name: &str) -> Option<(u32, u32, u32)> {
    if name.len() != 24 || !name.bytes().all(is_upper_hex) {
        return None;
    }
    let part = |range: std::ops::Range<usize>| u32::from_str_radix(&name[range], 16).ok();
    Some((part(0..8)?, part(8..16)?, part(16..24)?))
}

fn is_upper_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'A'..=b'F').contains(&b)
}

/// A file PostgreSQL archives, by the form of its name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WalFile {
    /// A WAL segment (`000000010000000000000002`): its name's timeline and the name.
    Segment {
        /// The timeline in the name.
        timeline: u32,
        /// The 24-character name.
        name: String,
    },
    /// A timeline history file (`00000002.history`), written when timeline `timeline` began.
    History {
        /// The new timeline.
        timeline: u32,
    },
    /// A backup history file (`000000010000000000000002.00000028.backup`).
    BackupHistory {
        /// The timeline of the segment it names.
        timeline: u32,
        /// The whole file name.
        name: String,
    },
    /// A partial segment left by a promotion (`000000010000000000000005.partial`).
    Partial {
        /// The timeline of the segment it names.
        timeline: u32,
        /// The whole file name.
        name: String,
    },
}

impl WalFile {
    /// Classifies a file name PostgreSQL gave (`%f`, or the last component of `%p`). `None`
    /// for anything that is not one of the four archived forms.
    pub fn parse(name: &str) -> Option<WalFile> {
        if let Some(timeline) = name.strip_suffix(".history") {
            if timeline.len() != 8 || !timeline.bytes().all(is_upper_hex) {
                return None;
            }
            let timeline = u32::from_str_radix(timeline, 16).ok()?;
            return (timeline > 0).then_some(WalFile::History { timeline });
        }
        if let Some(segment) = name.strip_suffix(".partial") {
            let (timeline, _, _) = split_segment_name(segment)?;
            return (timeline > 0).then(|| WalFile::Partial {
                timeline,
                name: name.to_owned(),
            });
        }
        if let Some(rest) = name.strip_suffix(".backup") {
            let (segment, offset) = rest.split_once('.')?;
            let (timeline, _, _) = split_segment_name(segment)?;
            if offset.len() != 8 || !offset.bytes().all(is_upper_hex) || timeline == 0 {
                return None;
            }
            return Some(WalFile::BackupHistory {
                timeline,
                name: name.to_owned(),
            });
        }
        let (timeline, _, _) = split_segment_name(name)?;
        (timeline > 0).then(|| WalFile::Segment {
            timeline,
            name: name.to_owned(),
        })
    }

    /// The file name PostgreSQL knows it by.
    pub fn name(&self) -> String {
        match self {
            WalFile::History { timeline } => format!("{timeline:08X}.history"),
            WalFile::Segment { name, .. }
            | WalFile::BackupHistory { name, .. }
            | WalFile::Partial { name, .. } => name.clone(),
        }
    }

    /// The timeline whose folder of the archive holds it.
    pub fn timeline(&self) -> u32 {
        match self {
            WalFile::Segment { timeline, .. }
            | WalFile::History { timeline }
            | WalFile::BackupHistory { timeline, .. }
            | WalFile::Partial { timeline, .. } => *timeline,
        }
    }

    /// Whether it is a whole WAL segment (whose page headers carry the system identifier).
    pub fn is_segment(&self) -> bool {
        matches!(self, WalFile::Segment { .. })
    }

    /// Its object key in a repository: `wal/<timeline>/<name><suffix>`, the suffix being the
    /// sealing's (`.zst.age`, or `.zst` for an unencrypted repository).
    pub fn key(&self, suffix: &str) -> String {
        format!("wal/{:08X}/{}{suffix}", self.timeline(), self.name())
    }
}

/// A file serializes as its name.
impl serde::Serialize for WalFile {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for WalFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_read_and_print_as_postgresql_does() {
        let lsn: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<Lsn>().unwrap(), Lsn(0));
        assert_eq!(Lsn(0x1_0000_0028).to_string(), "1/28");
        for bad in [
            "",
            "16",
            "/1",
            "1/",
            "1/2/3",
            "g/1",
            "123456789/0",
            "-1/0",
            " 1/0",
        ] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn segment_names_follow_the_segment_size() {
        let seg = Segment::containing(1, "0/2000028".parse().unwrap(), DEFAULT_SEGMENT_SIZE);
        assert_eq!(seg.number, 2);
        assert_eq!(
            seg.file_name(DEFAULT_SEGMENT_SIZE),
            "000000010000000000000002"
        );
        // 16 MiB segments: 256 per log, so segment 0x1FF is log 1, seg 0xFF.
        let seg = Segment {
            timeline: 2,
            number: 0x1FF,
        };
        assert_eq!(
            seg.file_name(DEFAULT_SEGMENT_SIZE),
            "0000000200000001000000FF"
        );
        assert_eq!(
            Segment::parse("0000000200000001000000FF", DEFAULT_SEGMENT_SIZE),
            Some(seg)
        );
        // 1 GiB segments: 4 per log; seg 0x04 does not exist.
        let gib = 1 << 30;
        assert_eq!(Segment::parse("000000010000000100000004", gib), None);
        assert_eq!(
            Segment::parse("000000010000000100000003", gib)
                .unwrap()
                .number,
            7
        );
        assert_eq!(seg.next().number, 0x200);
        assert_eq!(
            seg.start_lsn(DEFAULT_SEGMENT_SIZE).to_string(),
            "1/FF000000"
        );
    }

    #[test]
    fn a_stop_lsn_on_a_boundary_needs_the_segment_before() {
        let size = DEFAULT_SEGMENT_SIZE;
        assert_eq!(Lsn(3 * size).previous_byte_segment_number(size), 2);
        assert_eq!(Lsn(3 * size + 1).previous_byte_segment_number(size), 3);
    }

    #[test]
    fn the_four_archived_forms_and_nothing_else() {
        assert_eq!(
            WalFile::parse("00000002.history"),
            Some(WalFile::History { timeline: 2 })
        );
        let f = WalFile::parse("000000010000000000000002.00000028.backup").unwrap();
        assert!(matches!(f, WalFile::BackupHistory { timeline: 1, .. }));
        assert_eq!(
            f.key(".zst.age"),
            "wal/00000001/000000010000000000000002.00000028.backup.zst.age"
        );
        let f = WalFile::parse("000000030000000000000005.partial").unwrap();
        assert_eq!(f.timeline(), 3);
        assert!(!f.is_segment());
        let f = WalFile::parse("0000000A0000000000000005").unwrap();
        assert!(f.is_segment());
        assert_eq!(f.key(".zst"), "wal/0000000A/0000000A0000000000000005.zst");
        for bad in [
            "",
            "00000001000000000000002",
            "0000000100000000000000020",
            "000000010000000000000002.backup",
            "00000001000000000000000a",
            "00000000.history",
            "000000000000000000000001",
            "0000002.history",
            "../../../../etc/passwd.history",
            "00000001/0000000000000002",
            "000000010000000000000002.0000002G.backup",
            "000000010000000000000002.partial.partial",
            "archive_status",
        ] {
            assert_eq!(WalFile::parse(bad), None, "{bad:?}");
        }
    }
}
