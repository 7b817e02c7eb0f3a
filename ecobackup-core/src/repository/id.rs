//! Backup ids: `<UTC yyyymmddThhmmssZ>-<kind>-<6 random base32>`.
//!
//! Readable and sortable by start time at a glance, unique thanks to the random suffix. Never
//! used for ordering: that is the manifest's `finished_at`.

use chrono::{DateTime, Utc};
use rand::Rng;

use super::BackupKind;

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A new id for a backup of `kind` started at `started`.
pub fn new_backup_id(kind: BackupKind, started: DateTime<Utc>) -> String {
    let mut rng = rand::thread_rng();
    let suffix: String = (0..6)
        .map(|_| BASE32[rng.gen_range(0..32)] as char)
        .collect();
    format!("{}-{kind}-{suffix}", started.format("%Y%m%dT%H%M%SZ"))
}

/// True when `id` has the shape of a backup id (it is safe to use as a key segment).
pub fn is_backup_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    matches!(parts.as_slice(), [time, kind, suffix]
        if time.len() == 16
            && time.as_bytes()[8] == b'T'
            && time.ends_with('Z')
            && kind.parse::<BackupKind>().is_ok()
            && suffix.len() == 6
            && suffix.bytes().all(|b| BASE32.contains(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_documented_shape() {
        let at = DateTime::parse_from_rfc3339("2026-11-22T04:15:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let id = new_backup_id(BackupKind::Logical, at);
        assert!(id.starts_with("20261122T041500Z-logical-"), "{id}");
        assert!(is_backup_id(&id), "{id}");
        assert_ne!(id, new_backup_id(BackupKind::Logical, at));
        for bad in [
            "",
            "../../etc",
            "20261122T041500Z-logical-ABCDEF",
            "20261122T041500Z-weird-abcdef",
            "x-logical-abcdef",
        ] {
            assert!(!is_backup_id(bad), "{bad}");
        }
    }
}
