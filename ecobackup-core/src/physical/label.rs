//! What a base backup says about itself: `backup_label`, `backup_manifest` and `pg_control`.
//!
//! - `backup_label` (text, written by the server at the start): `START WAL LOCATION: 0/2000028
//!   (file 000000010000000000000002)`, `START TIME: 2026-11-23 13:27:03 UTC`, `START TIMELINE: 1`.
//! - `backup_manifest` (JSON, PostgreSQL 13+): `WAL-Ranges` gives the timeline and the start and
//!   end LSN of the WAL the backup needs; PostgreSQL 17+ also writes `System-Identifier`.
//! - `global/pg_control` begins with the cluster's 64-bit system identifier, in the server's
//!   byte order (a physical backup restores only on the same architecture anyway).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;

use super::super::wal::Lsn;

/// The facts of `backup_label`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupLabel {
    /// `START WAL LOCATION`.
    pub start_lsn: Lsn,
    /// `START TIMELINE`.
    pub timeline: u32,
    /// `START TIME` (the server writes it in its log time zone; UTC when it says so).
    pub start_time: Option<DateTime<Utc>>,
}

impl BackupLabel {
    /// Parses a `backup_label`; `Err` says which line is missing or unreadable.
    pub fn parse(text: &str) -> Result<BackupLabel, String> {
        let field = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key).map(str::trim))
                .ok_or_else(|| format!("backup_label has no {key:?} line"))
        };
        let start = field("START WAL LOCATION:")?;
        let start_lsn = start
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .parse::<Lsn>()
            .map_err(|e| format!("backup_label START WAL LOCATION: {e}"))?;
        let timeline = field("START TIMELINE:")?
            .parse::<u32>()
            .map_err(|_| "backup_label START TIMELINE is not a number".to_owned())?;
        let start_time = field("START TIME:").ok().and_then(parse_label_time);
        Ok(BackupLabel {
            start_lsn,
            timeline,
            start_time,
        })
    }
}

/// `2026-11-23 13:27:03 UTC` (other zone abbreviations are not interpreted).
fn parse_label_time(text: &str) -> Option<DateTime<Utc>> {
    let time = text
        .strip_suffix(" UTC")
        .or_else(|| text.strip_suffix(" GMT"))?;
    NaiveDateTime::parse_from_str(time, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

/// The part of `backup_manifest` ecobackup reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupManifestFacts {
    /// Timeline of the end of the WAL range the backup needs (the newest, after a standby
    /// followed a timeline switch during the backup).
    pub timeline: u32,
    /// Start of the WAL the backup needs.
    pub start_lsn: Lsn,
    /// End of the WAL the backup needs: recovery must replay at least this far.
    pub end_lsn: Lsn,
    /// `System-Identifier` (PostgreSQL 17+).
    pub system_identifier: Option<u64>,
    /// How many files the manifest lists.
    pub files: usize,
}

impl BackupManifestFacts {
    /// Parses PostgreSQL's `backup_manifest`.
    pub fn parse(bytes: &[u8]) -> Result<BackupManifestFacts, String> {
        #[derive(Deserialize)]
        struct Manifest {
            #[serde(rename = "System-Identifier")]
            system_identifier: Option<u64>,
            #[serde(rename = "Files", default)]
            files: Vec<serde::de::IgnoredAny>,
            #[serde(rename = "WAL-Ranges")]
            wal_ranges: Vec<Range>,
        }
        #[derive(Deserialize)]
        struct Range {
            #[serde(rename = "Timeline")]
            timeline: u32,
            #[serde(rename = "Start-LSN")]
            start: Lsn,
            #[serde(rename = "End-LSN")]
            end: Lsn,
        }
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| format!("backup_manifest is not readable: {e}"))?;
        // PostgreSQL lists the ranges newest timeline first: the first range holds the end,
        // the last the start (several ranges: a standby that followed a timeline switch).
        let end = manifest
            .wal_ranges
            .first()
            .ok_or("backup_manifest has no WAL-Ranges")?;
        let start = manifest.wal_ranges.last().unwrap_or(end);
        if end.end < start.start {
            return Err("backup_manifest's WAL range ends before it starts".to_owned());
        }
        Ok(BackupManifestFacts {
            timeline: end.timeline,
            start_lsn: start.start,
            end_lsn: end.end,
            system_identifier: manifest.system_identifier,
            files: manifest.files.len(),
        })
    }
}

/// The system identifier at the start of `pg_control`.
pub fn control_system_identifier(pg_control: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = pg_control.get(..8)?.try_into().ok()?;
    Some(u64::from_ne_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_as_postgresql_15_writes_it() {
        let label = BackupLabel::parse(
            "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
             CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n\
             START TIME: 2026-11-23 13:27:03 UTC\nLABEL: pg_basebackup base backup\n\
             START TIMELINE: 1\n",
        )
        .unwrap();
        assert_eq!(label.start_lsn.to_string(), "0/2000028");
        assert_eq!(label.timeline, 1);
        assert_eq!(
            label.start_time.unwrap().to_rfc3339(),
            "2026-11-23T13:27:03+00:00"
        );
        let err = BackupLabel::parse("START TIMELINE: 1\n").unwrap_err();
        assert!(err.contains("START WAL LOCATION"), "{err}");
        assert!(BackupLabel::parse("START WAL LOCATION: zz\nSTART TIMELINE: 1").is_err());
    }

    #[test]
    fn the_manifest_gives_the_wal_range() {
        let facts = BackupManifestFacts::parse(
            br#"{ "PostgreSQL-Backup-Manifest-Version": 2, "System-Identifier": 7440000000000000001,
            "Files": [ { "Path": "backup_label", "Size": 1 }, { "Path": "global/pg_control", "Size": 8192 } ],
            "WAL-Ranges": [ { "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" } ],
            "Manifest-Checksum": "ab" }"#,
        )
        .unwrap();
        assert_eq!(facts.timeline, 1);
        assert_eq!(facts.end_lsn.to_string(), "0/2000100");
        assert_eq!(facts.system_identifier, Some(7_440_000_000_000_000_001));
        assert_eq!(facts.files, 2);
        // Two ranges, newest timeline first (a standby promoted upstream during the backup).
        let facts = BackupManifestFacts::parse(
            br#"{ "WAL-Ranges": [
              { "Timeline": 2, "Start-LSN": "0/3000000", "End-LSN": "0/4000100" },
              { "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/3000000" } ] }"#,
        )
        .unwrap();
        assert_eq!(facts.timeline, 2);
        assert_eq!(facts.start_lsn.to_string(), "0/2000028");
        assert_eq!(facts.end_lsn.to_string(), "0/4000100");
        for bad in [
            &b"{}"[..],
            br#"{"WAL-Ranges": []}"#,
            br#"{"WAL-Ranges": [{"Timeline": 1, "Start-LSN": "0/3", "End-LSN": "0/2"}]}"#,
            b"not json",
        ] {
            assert!(BackupManifestFacts::parse(bad).is_err());
        }
    }

    #[test]
    fn the_system_identifier_leads_pg_control() {
        let mut control = vec![0u8; 8192];
        control[..8].copy_from_slice(&42u64.to_ne_bytes());
        assert_eq!(control_system_identifier(&control), Some(42));
        assert_eq!(control_system_identifier(&[1, 2]), None);
    }
}
