//! Timelines: history files, gaps in an archive, and whether the WAL a backup needs is there.
//!
//! A timeline history file (`00000003.history`) lists the new timeline's ancestors, one line
//! each: `parentTLI<TAB>switchpoint<TAB>reason`, the switch point being the LSN where the parent
//! ended and its child began (blank lines and `#` comments are ignored). The first segment of a
//! new timeline holds the parent's WAL up to the switch point, so recovery reads the segment
//! containing a switch point from the child, and every earlier one from the parent.
//!
//! Everything here is pure: the archive check (`verify --wal`) feeds it an archive's listing.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::names::{Lsn, Segment};

/// One line of a history file: where `parent` ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// The ancestor timeline.
    pub parent: u32,
    /// Where it ended and the next timeline in the file (or the file's own) began.
    pub switchpoint: Lsn,
    /// Why (`no recovery target specified`, `at restore point "x"`, …).
    pub reason: String,
}

/// Parses a history file; the error names the first bad line.
pub fn parse_history(text: &str) -> Result<Vec<HistoryEntry>, String> {
    let mut entries: Vec<HistoryEntry> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || {
            format!(
                "line {} is not `parentTLI<TAB>switchpoint<TAB>reason`",
                number + 1
            )
        };
        let mut fields = line.splitn(3, '\t');
        let parent: u32 = fields
            .next()
            .and_then(|f| f.trim().parse().ok())
            .ok_or_else(bad)?;
        let switchpoint: Lsn = fields
            .next()
            .and_then(|f| f.trim().parse().ok())
            .ok_or_else(bad)?;
        let reason = fields.next().unwrap_or_default().trim().to_owned();
        if let Some(previous) = entries.last() {
            if parent <= previous.parent || switchpoint < previous.switchpoint {
                return Err(format!(
                    "line {}: timelines and switch points must increase",
                    number + 1
                ));
            }
        }
        entries.push(HistoryEntry {
            parent,
            switchpoint,
            reason,
        });
    }
    Ok(entries)
}

/// A run of missing segments on one timeline, between archived ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// The timeline.
    pub timeline: u32,
    /// The first missing segment.
    pub first: String,
    /// The last missing segment.
    pub last: String,
    /// How many are missing.
    pub missing: u64,
}

/// The gaps of each timeline between its oldest and newest archived segment.
pub fn gaps(segments: &BTreeSet<Segment>, segment_size: u64) -> Vec<Gap> {
    let mut gaps = Vec::new();
    let mut previous: Option<Segment> = None;
    for &segment in segments {
        if let Some(before) = previous.filter(|p| p.timeline == segment.timeline) {
            if segment.number > before.number + 1 {
                gaps.push(gap(
                    segment.timeline,
                    before.number + 1,
                    segment.number - 1,
                    segment_size,
                ));
            }
        }
        previous = Some(segment);
    }
    gaps
}

fn gap(timeline: u32, first: u64, last: u64, segment_size: u64) -> Gap {
    let name = |number| Segment { timeline, number }.file_name(segment_size);
    Gap {
        timeline,
        first: name(first),
        last: name(last),
        missing: last - first + 1,
    }
}

/// The WAL a backup needs: from its start segment on, to the newest archived segment of the
/// newest timeline that descends from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WalRequirement {
    /// Who needs it (a backup id).
    pub label: String,
    /// The backup's timeline.
    pub timeline: u32,
    /// The backup's start LSN.
    pub start: Lsn,
}

/// Whether a [`WalRequirement`] is met.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequirementCheck {
    /// The requirement's label.
    pub label: String,
    /// The first segment needed.
    pub from: String,
    /// The newest segment reachable (`None`: nothing archived from the start on).
    pub to: Option<String>,
    /// The timelines followed, oldest first.
    pub timelines: Vec<u32>,
    /// The missing runs.
    pub gaps: Vec<Gap>,
}

impl RequirementCheck {
    /// Whether every needed segment is archived.
    pub fn ok(&self) -> bool {
        self.to.is_some() && self.gaps.is_empty()
    }
}

/// Checks a requirement against the archived segments and the parsed history files (by the
/// timeline they describe).
pub fn check_requirement(
    requirement: &WalRequirement,
    segments: &BTreeSet<Segment>,
    histories: &BTreeMap<u32, Vec<HistoryEntry>>,
    segment_size: u64,
) -> RequirementCheck {
    let start = Segment::containing(requirement.timeline, requirement.start, segment_size);
    // The newest timeline with archived segments whose history passes through the start.
    let newest = |timeline: u32| {
        segments
            .range(
                Segment {
                    timeline,
                    number: 0,
                }..=Segment {
                    timeline,
                    number: u64::MAX,
                },
            )
            .next_back()
            .copied()
    };
    let descends = |timeline: u32| {
        timeline == requirement.timeline
            || histories.get(&timeline).is_some_and(|h| {
                h.iter()
                    .any(|e| e.parent == requirement.timeline && e.switchpoint >= requirement.start)
            })
    };
    let target = segments
        .iter()
        .map(|s| s.timeline)
        .rev()
        .find(|&t| t >= requirement.timeline && descends(t))
        .unwrap_or(requirement.timeline);
    // The stretch of each timeline on the way: [begin, end) as segment numbers.
    let mut path: Vec<(u32, u64, Option<u64>)> = Vec::new();
    let mut begin = start.number;
    if target != requirement.timeline {
        let history = &histories[&target];
        let first = history
            .iter()
            .position(|e| e.parent == requirement.timeline)
            .expect("descends() found it");
        let mut timeline = requirement.timeline;
        for (index, entry) in history.iter().enumerate().skip(first) {
            let end = entry.switchpoint.segment_number(segment_size);
            path.push((timeline, begin, Some(end)));
            begin = begin.max(end);
            timeline = history.get(index + 1).map_or(target, |next| next.parent);
        }
    }
    let last = newest(target).filter(|s| s.number >= begin);
    path.push((target, begin, last.map(|s| s.number + 1)));

    let mut gaps = Vec::new();
    for &(timeline, from, until) in &path {
        let until = until.unwrap_or(from + 1);
        let mut run: Option<(u64, u64)> = None;
        for number in from..until {
            if segments.contains(&Segment { timeline, number }) {
                if let Some((a, b)) = run.take() {
                    gaps.push(gap(timeline, a, b, segment_size));
                }
            } else {
                run = Some(run.map_or((number, number), |(a, _)| (a, number)));
            }
        }
        if let Some((a, b)) = run {
            gaps.push(gap(timeline, a, b, segment_size));
        }
    }
    RequirementCheck {
        label: requirement.label.clone(),
        from: start.file_name(segment_size),
        to: last.map(|s| s.file_name(segment_size)),
        timelines: path.iter().map(|p| p.0).collect(),
        gaps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: u64 = 16 << 20;

    fn segs(list: &[(u32, u64)]) -> BTreeSet<Segment> {
        list.iter()
            .map(|&(timeline, number)| Segment { timeline, number })
            .collect()
    }

    fn lsn(segment: u64, offset: u64) -> Lsn {
        Lsn(segment * SIZE + offset)
    }

    #[test]
    fn history_files_parse_as_postgresql_writes_them() {
        let text = "1\t0/3000000\tno recovery target specified\n\n# comment\n2\t0/5000A28\tat restore point \"before-b\"\n";
        let entries = parse_history(text).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].parent, 2);
        assert_eq!(entries[1].switchpoint, lsn(5, 0xA28));
        assert_eq!(entries[1].reason, "at restore point \"before-b\"");
        assert!(parse_history("1 0/3000000").unwrap_err().contains("line 1"));
        assert!(parse_history("2\t0/3\tx\n1\t0/4\ty")
            .unwrap_err()
            .contains("line 2"));
    }

    #[test]
    fn gaps_are_runs_per_timeline() {
        let found = gaps(
            &segs(&[(1, 1), (1, 2), (1, 5), (1, 9), (2, 7), (2, 8)]),
            SIZE,
        );
        assert_eq!(found.len(), 2);
        assert_eq!(
            (
                found[0].first.as_str(),
                found[0].last.as_str(),
                found[0].missing
            ),
            ("000000010000000000000003", "000000010000000000000004", 2)
        );
        assert_eq!(found[1].missing, 3);
    }

    #[test]
    fn a_backup_needs_its_timeline_up_to_the_fork_and_the_child_after_it() {
        let req = WalRequirement {
            label: "b1".into(),
            timeline: 1,
            start: lsn(2, 0x28),
        };
        let mut histories = BTreeMap::new();
        histories.insert(2, parse_history("1\t0/5000A28\tpromoted\n").unwrap());
        // TL1 2..4, TL2 from 5 (the switch segment) to 7: complete.
        let archive = segs(&[
            (1, 1),
            (1, 2),
            (1, 3),
            (1, 4),
            (1, 5),
            (2, 5),
            (2, 6),
            (2, 7),
        ]);
        let check = check_requirement(&req, &archive, &histories, SIZE);
        assert!(check.ok(), "{check:?}");
        assert_eq!(check.timelines, [1, 2]);
        assert_eq!(check.to.as_deref(), Some("000000020000000000000007"));
        // TL1's 3 missing, and TL2's switch segment: both reported, on their timelines.
        let holes = segs(&[(1, 2), (1, 4), (2, 6), (2, 7)]);
        let check = check_requirement(&req, &holes, &histories, SIZE);
        let gaps: Vec<_> = check
            .gaps
            .iter()
            .map(|g| (g.timeline, g.first.clone()))
            .collect();
        assert_eq!(
            gaps,
            [
                (1, "000000010000000000000003".into()),
                (2, "000000020000000000000005".into())
            ]
        );
        // A backup taken on TL1 after the fork does not follow TL2.
        let late = WalRequirement {
            start: lsn(6, 0),
            ..req.clone()
        };
        let check = check_requirement(&late, &segs(&[(1, 6), (1, 7), (2, 8)]), &histories, SIZE);
        assert_eq!(check.timelines, [1]);
        assert!(check.ok());
        // Nothing archived from the start on.
        let check = check_requirement(&req, &segs(&[(1, 1)]), &BTreeMap::new(), SIZE);
        assert!(!check.ok());
        assert_eq!(check.gaps[0].first, "000000010000000000000002");
    }

    #[test]
    fn grandchildren_are_followed_through_every_fork() {
        let req = WalRequirement {
            label: "b".into(),
            timeline: 1,
            start: lsn(1, 0),
        };
        let mut histories = BTreeMap::new();
        histories.insert(2, parse_history("1\t0/3000000\tx\n").unwrap());
        histories.insert(
            3,
            parse_history("1\t0/3000000\tx\n2\t0/5000100\ty\n").unwrap(),
        );
        let archive = segs(&[(1, 1), (1, 2), (2, 3), (2, 4), (3, 5), (3, 6)]);
        let check = check_requirement(&req, &archive, &histories, SIZE);
        assert_eq!(check.timelines, [1, 2, 3]);
        assert!(check.ok(), "{check:?}");
        let missing = segs(&[(1, 1), (1, 2), (2, 3), (3, 5), (3, 6)]);
        let check = check_requirement(&req, &missing, &histories, SIZE);
        assert_eq!(check.gaps.len(), 1);
        assert_eq!(check.gaps[0].first, "000000020000000000000004");
    }
}
