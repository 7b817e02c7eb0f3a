//! The server's side of WAL archiving, from `pg_stat_archiver`: whether completed WAL is
//! waiting to be archived, and since when.
//!
//! The age of the newest archived file is not an archive lag: a server with `archive_timeout`
//! unset that nobody writes to completes no segment for days, archives nothing, and loses
//! nothing. What matters is WAL that is *complete and not archived*. The server knows: its
//! current write position (`pg_current_wal_lsn()`) is in the segment being written, and every
//! segment before it is complete; `pg_stat_archiver.last_archived_wal` says how far the
//! archiver got. Nothing is waiting when the last archived segment is the one just before the
//! current one, however long ago that was ([`ArchiverState::waiting`]).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::Result;
use crate::postgres::DbUrl;
use crate::wal::{Segment, WalFile};

/// What the server says about its archiving, read in one query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArchiverState {
    /// The server (its URL without a password).
    pub server: String,
    /// The server's clock when it was read.
    pub read_at: DateTime<Utc>,
    /// When the server started.
    pub started_at: DateTime<Utc>,
    /// `archive_mode`: `off`, `on` or `always`.
    pub archive_mode: String,
    /// Whether it is a standby (in recovery).
    pub in_recovery: bool,
    /// `wal_segment_size`, in bytes.
    pub segment_size: u64,
    /// The segment being written (holding `pg_current_wal_lsn()`); `None` on a standby.
    pub current_wal: Option<String>,
    /// `pg_stat_archiver.last_archived_wal`.
    pub last_archived_wal: Option<String>,
    /// `pg_stat_archiver.last_archived_time`.
    pub last_archived_time: Option<DateTime<Utc>>,
    /// `pg_stat_archiver.last_failed_wal`.
    pub last_failed_wal: Option<String>,
    /// `pg_stat_archiver.last_failed_time`.
    pub last_failed_time: Option<DateTime<Utc>>,
    /// When the oldest segment waiting in `archive_status/` became ready
    /// (`pg_ls_archive_statusdir()`, which needs `pg_monitor` or a superuser; `None` when the
    /// role may not read it or nothing waits).
    pub oldest_ready: Option<DateTime<Utc>>,
}

/// Whether completed WAL waits to be archived.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Waiting {
    /// Every completed segment is archived: no lag, however old the last archived file is.
    Nothing,
    /// Completed WAL waits since `since` (`pending` segments of it when known).
    Since {
        /// When the oldest waiting segment became ready, or at the latest the archiver's last
        /// success (it archived nothing since).
        since: DateTime<Utc>,
        /// How many completed segments wait, when the names tell.
        pending: Option<u64>,
    },
    /// The server cannot tell (archiving off, a standby).
    Unknown {
        /// Why, and what to do.
        reason: String,
    },
}

impl ArchiverState {
    /// Reads the server's archiver state. Needs only a login (`pg_stat_archiver` and the WAL
    /// functions are readable by every role); with `pg_monitor`, the time the oldest waiting
    /// segment became ready is read too.
    pub async fn read(db: &DbUrl) -> Result<ArchiverState> {
        let client = db.connect().await?;
        let row = client
            .query_one(
                "SELECT extract(epoch FROM now())::float8, \
                        extract(epoch FROM pg_postmaster_start_time())::float8, \
                        current_setting('archive_mode'), pg_is_in_recovery(), \
                        pg_size_bytes(current_setting('wal_segment_size')), \
                        CASE WHEN pg_is_in_recovery() THEN NULL \
                             ELSE (pg_walfile_name_offset(pg_current_wal_lsn())).file_name END, \
                        a.last_archived_wal, extract(epoch FROM a.last_archived_time)::float8, \
                        a.last_failed_wal, extract(epoch FROM a.last_failed_time)::float8 \
                   FROM pg_stat_archiver a",
                &[],
            )
            .await
            .map_err(|e| db.error("reading pg_stat_archiver of", e))?;
        // Needs pg_monitor (or a superuser): without it, the archiver's last success stands in.
        let oldest_ready = client
            .query_one(
                "SELECT extract(epoch FROM min(modification))::float8 \
                   FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'",
                &[],
            )
            .await
            .ok()
            .and_then(|r| epoch(r.get(0)));
        let segment_size: i64 = row.get(4);
        Ok(ArchiverState {
            server: db.redacted(),
            read_at: epoch(row.get(0)).unwrap_or_default(),
            started_at: epoch(row.get(1)).unwrap_or_default(),
            archive_mode: row.get(2),
            in_recovery: row.get(3),
            segment_size: u64::try_from(segment_size).unwrap_or(0),
            current_wal: row.get(5),
            last_archived_wal: row.get(6),
            last_archived_time: epoch(row.get(7)),
            last_failed_wal: row.get(8),
            last_failed_time: epoch(row.get(9)),
            oldest_ready,
        })
    }

    /// The current timeline (of the segment being written), when known.
    pub fn timeline(&self) -> Option<u32> {
        let current = self.current_wal.as_deref()?;
        Some(Segment::parse(current, self.segment_size)?.timeline)
    }

    /// Whether completed WAL waits to be archived, and since when:
    ///
    /// - `archive_mode = off`, or a standby: [`Waiting::Unknown`];
    /// - the archiver's last attempt failed (`last_failed_time` after `last_archived_time`):
    ///   waiting since the last success (or the server's start);
    /// - completed segments after the last archived one: waiting since the oldest became
    ///   ready when `pg_ls_archive_statusdir()` was readable, else since the last success;
    /// - otherwise nothing waits: only the segment being written is unarchived, as on an idle
    ///   server with `archive_timeout` unset.
    ///
    /// The last archived file may be a `.partial` or `.backup` file (after a promotion or a
    /// base backup): both stand for the segment before the one they name. After a `.history`
    /// file (a promotion) the segments cannot be counted, and only a failure or a ready
    /// segment counts as waiting.
    pub fn waiting(&self) -> Waiting {
        if self.archive_mode == "off" {
            return Waiting::Unknown {
                reason: format!(
                    "{} has archive_mode = off: it archives no WAL, so point-in-time recovery stops at the last base backup",
                    self.server
                ),
            };
        }
        let Some(current) = self
            .current_wal
            .as_deref()
            .and_then(|c| Segment::parse(c, self.segment_size))
            .filter(|_| !self.in_recovery)
        else {
            return Waiting::Unknown {
                reason: format!(
                    "{} is a standby: give the primary's URL to measure its archive lag",
                    self.server
                ),
            };
        };
        let last_success = self.last_archived_time.unwrap_or(self.started_at);
        let failing = match (self.last_failed_time, self.last_archived_time) {
            (Some(failed), Some(archived)) => failed > archived,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let pending = self.archived_up_to().map(|upto| match upto {
            Some(n) => current.number.saturating_sub(1).saturating_sub(n),
            // Nothing archived yet: every completed segment waits.
            None => current.number,
        });
        if failing {
            return Waiting::Since {
                since: last_success,
                pending,
            };
        }
        match (pending, self.oldest_ready) {
            (_, Some(ready)) => Waiting::Since {
                since: ready,
                pending,
            },
            (Some(0), None) | (None, None) => Waiting::Nothing,
            (Some(n), None) => Waiting::Since {
                since: last_success,
                pending: Some(n),
            },
        }
    }

    /// The number of the newest segment known archived: `Some(None)` when nothing was ever
    /// archived, `None` when the last archived file does not tell (a `.history` file).
    fn archived_up_to(&self) -> Option<Option<u64>> {
        let Some(name) = self.last_archived_wal.as_deref() else {
            return Some(None);
        };
        let number = |segment: &str| Some(Segment::parse(segment, self.segment_size)?.number);
        match WalFile::parse(name)? {
            WalFile::Segment { name, .. } => Some(number(&name)),
            WalFile::Partial { name, .. } | WalFile::BackupHistory { name, .. } => {
                Some(number(name.get(..24)?).map(|n| n.saturating_sub(1)))
            }
            WalFile::History { .. } => None,
        }
    }
}

/// Seconds since the Unix epoch (as `extract(epoch FROM …)` gives them) → a time.
fn epoch(seconds: Option<f64>) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros((seconds? * 1e6).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    const SIZE: u64 = 16 << 20;

    fn t(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 12, minute, 0).unwrap()
    }

    /// An idle primary: the last archived segment is the one before the current, an hour ago.
    fn idle() -> ArchiverState {
        ArchiverState {
            server: "postgresql://monitor@db/postgres".into(),
            read_at: t(59),
            started_at: t(0) - Duration::days(3),
            archive_mode: "on".into(),
            in_recovery: false,
            segment_size: SIZE,
            current_wal: Some("000000010000000000000005".into()),
            last_archived_wal: Some("000000010000000000000004".into()),
            last_archived_time: Some(t(0)),
            last_failed_wal: None,
            last_failed_time: None,
            oldest_ready: None,
        }
    }

    #[test]
    fn an_idle_server_waits_for_nothing_however_old_its_last_archive() {
        assert_eq!(idle().waiting(), Waiting::Nothing);
        assert_eq!(idle().timeline(), Some(1));
        // Right after a promotion, or a base backup, the same.
        for last in [
            "000000010000000000000005.partial",
            "000000010000000000000005.00000028.backup",
        ] {
            let state = ArchiverState {
                last_archived_wal: Some(last.into()),
                ..idle()
            };
            assert_eq!(state.waiting(), Waiting::Nothing, "{last}");
        }
        let state = ArchiverState {
            last_archived_wal: Some("00000002.history".into()),
            current_wal: Some("000000020000000000000005".into()),
            ..idle()
        };
        assert_eq!(state.waiting(), Waiting::Nothing);
    }

    #[test]
    fn completed_segments_wait_since_the_archivers_last_success() {
        let state = ArchiverState {
            current_wal: Some("000000010000000000000008".into()),
            ..idle()
        };
        assert_eq!(
            state.waiting(),
            Waiting::Since {
                since: t(0),
                pending: Some(3)
            }
        );
        // With pg_monitor, since the oldest became ready.
        let state = ArchiverState {
            oldest_ready: Some(t(50)),
            ..state
        };
        assert_eq!(
            state.waiting(),
            Waiting::Since {
                since: t(50),
                pending: Some(3)
            }
        );
    }

    #[test]
    fn a_failing_archiver_waits_even_without_a_complete_segment() {
        let state = ArchiverState {
            last_failed_wal: Some("000000010000000000000005".into()),
            last_failed_time: Some(t(30)),
            ..idle()
        };
        assert!(matches!(state.waiting(), Waiting::Since { since, .. } if since == t(0)));
        // A failure before the last success is history.
        let state = ArchiverState {
            last_failed_time: Some(t(0) - Duration::minutes(1)),
            ..state
        };
        assert_eq!(state.waiting(), Waiting::Nothing);
        // Never archived and failing: since the server started.
        let state = ArchiverState {
            last_archived_wal: None,
            last_archived_time: None,
            last_failed_time: Some(t(30)),
            ..idle()
        };
        assert_eq!(
            state.waiting(),
            Waiting::Since {
                since: idle().started_at,
                pending: Some(5)
            }
        );
    }

    #[test]
    fn off_or_standby_cannot_tell() {
        let off = ArchiverState {
            archive_mode: "off".into(),
            ..idle()
        };
        assert!(
            matches!(off.waiting(), Waiting::Unknown { reason } if reason.contains("archive_mode = off"))
        );
        let standby = ArchiverState {
            in_recovery: true,
            current_wal: None,
            ..idle()
        };
        assert!(
            matches!(standby.waiting(), Waiting::Unknown { reason } if reason.contains("standby"))
        );
    }
}
