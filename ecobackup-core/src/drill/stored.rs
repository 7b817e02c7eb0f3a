//! Drill reports kept in the repository, so that `status` and `check` know when the last drill
//! ran and whether it passed, wherever it ran.
//!
//! ```text
//! <repo>/drills/<started yyyymmddThhmmssZ>-<backup id>.json.zst.age   the whole report, sealed
//! <repo>/drills/<started yyyymmddThhmmssZ>-<backup id>.json           its summary, plaintext
//! ```
//!
//! Two objects, because the two readers differ. The whole [`DrillReport`] names databases and
//! holds every check's expected and actual value, and an SQL check's actual value is row data
//! (`SELECT email FROM users …`): it is sealed like an artifact (zstd, then age to the
//! repository's recipients), readable only with an identity. `status` and `check` run on
//! monitoring hosts that hold no identity, and need only whether the drill passed, when, of
//! which backup, and its RTO: the [`DrillSummary`] holds that and nothing else, in plaintext
//! like a manifest (no row data, no database names). The report is written first and the
//! summary last: a summary exists only beside its report, as a manifest only beside its
//! artifacts. docs/FORMAT.md ("Drill reports") describes both.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::DrillReport;
use crate::artifact::Sealing;
use crate::error::{Error, Result};
use crate::io::ReaderSource;
use crate::pipeline::Pipeline;
use crate::repository::{BackupKind, Repository};
use crate::storage::Storage;
use crate::transform::{Compress, Encrypt};

/// The folder of drill reports in a repository.
pub const DRILL_FOLDER: &str = "drills/";
/// The `format` of a [`DrillSummary`].
pub const SUMMARY_FORMAT: &str = "ecobackup-drill-v1";

/// What a monitoring host may know about a drill: no row data, no database names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrillSummary {
    /// Always [`SUMMARY_FORMAT`].
    pub format: String,
    /// The backup drilled.
    pub backup_id: String,
    /// Its kind.
    pub kind: BackupKind,
    /// When the drill started (the drilling host's clock).
    pub started_at: DateTime<Utc>,
    /// Every part ran and every check passed.
    pub passed: bool,
    /// Provision + restore (+ replay) + checks, in seconds.
    pub rto_seconds: f64,
    /// Whether the restore target flushed like production (only then is the RTO quotable).
    pub durable: bool,
    /// The backup's age when the drill started (the RPO a restore then would have had).
    pub backup_age_seconds: f64,
    /// How many checks ran.
    pub checks: usize,
    /// How many of them failed.
    pub checks_failed: usize,
    /// The key of the sealed whole report, beside this summary.
    pub report: String,
    /// The ecobackup version that wrote it.
    pub written_by: String,
}

impl DrillSummary {
    /// The summary of `report`, whose sealed copy is stored under `report_key`.
    pub fn of(report: &DrillReport, report_key: String) -> DrillSummary {
        DrillSummary {
            format: SUMMARY_FORMAT.to_owned(),
            backup_id: report.backup_id.clone(),
            kind: report.kind,
            started_at: report.started_at,
            passed: report.passed,
            rto_seconds: report.rto_seconds,
            durable: report.durable,
            backup_age_seconds: report.backup_age_seconds,
            checks: report.checks.len(),
            checks_failed: report.checks.iter().filter(|c| !c.passed).count(),
            report: report_key,
            written_by: concat!("ecobackup ", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// The drills a repository records: how many, the newest, and the newest that passed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DrillHistory {
    /// How many drill summaries are stored.
    pub count: usize,
    /// The newest drill, by its start.
    pub last: Option<DrillSummary>,
    /// The newest drill that passed (the same as `last` when that one passed).
    pub last_passed: Option<DrillSummary>,
    /// Summaries that could not be read (skipped), by key.
    pub unreadable: Vec<String>,
}

/// The common stem of a drill's two objects: `drills/<started>-<backup id>`.
fn stem(report: &DrillReport) -> String {
    format!(
        "{DRILL_FOLDER}{}-{}",
        report.started_at.format("%Y%m%dT%H%M%SZ"),
        report.backup_id
    )
}

/// Stores `report` in `repo`: the whole report sealed with `sealing` (zstd, age), then its
/// summary. Returns the summary. A drill that passed or failed is stored alike.
pub async fn store_report(
    repo: &Repository,
    report: &DrillReport,
    sealing: &Sealing,
) -> Result<DrillSummary> {
    let stem = stem(report);
    let report_key = format!("{stem}.json{}", sealing.suffix());
    let body = serde_json::to_vec_pretty(report)
        .map_err(|e| Error::io("encoding the drill report", e.into()))?;
    let size = body.len() as u64;
    let source = ReaderSource::new("drill report", std::io::Cursor::new(body)).with_size_hint(size);
    let mut pipeline = Pipeline::new(source).then(Compress::new(sealing.level));
    if !sealing.recipients.is_empty() {
        pipeline = pipeline.then(Encrypt::to(sealing.recipients.clone())?);
    }
    pipeline
        .into(repo.storage().sink(&report_key, Some(size)))
        .run()
        .await?;
    let summary = DrillSummary::of(report, report_key);
    let body = serde_json::to_vec_pretty(&summary)
        .map_err(|e| Error::io("encoding the drill summary", e.into()))?;
    repo.storage().put(&format!("{stem}.json"), body).await?;
    Ok(summary)
}

/// Reads the drill summaries of a repository: all are counted, the newest are read until one
/// that passed is found (one read for a repository whose last drill passed). Unreadable
/// summaries are skipped and listed; only a store that cannot be listed or read fails.
pub async fn drill_history(storage: &Storage) -> Result<DrillHistory> {
    let mut keys: Vec<String> = storage
        .list(DRILL_FOLDER)
        .await?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.ends_with(".json"))
        .collect();
    // `<started>-<id>`: the names sort by start time (the host's clock; ties by backup id).
    keys.sort();
    let mut history = DrillHistory {
        count: keys.len(),
        ..DrillHistory::default()
    };
    for key in keys.iter().rev() {
        let Some(bytes) = storage.get(key).await? else {
            continue; // removed since the listing
        };
        let summary = match serde_json::from_slice::<DrillSummary>(&bytes) {
            Ok(s) if s.format == SUMMARY_FORMAT => s,
            Ok(s) => {
                tracing::warn!(key, format = %s.format, "skipping a drill summary of another format");
                history.unreadable.push(key.clone());
                continue;
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "skipping an unreadable drill summary");
                history.unreadable.push(key.clone());
                continue;
            }
        };
        let passed = summary.passed;
        if history.last.is_none() {
            history.last = Some(summary.clone());
        }
        if passed {
            history.last_passed = Some(summary);
            break;
        }
    }
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{generate_identity, Keyring};
    use crate::drill::RtoParts;
    use crate::storage::{RepoUrl, StorageOptions};
    use chrono::TimeZone;

    fn report(started: DateTime<Utc>, passed: bool) -> DrillReport {
        DrillReport {
            passed,
            backup_id: "20261001T040000Z-logical-aaaaaa".into(),
            kind: BackupKind::Logical,
            backup_finished_at: started,
            backup_age_seconds: 60.0,
            started_at: started,
            rto_seconds: 12.5,
            durable: false,
            rto: RtoParts::default(),
            target: "scratch".into(),
            databases: vec!["shop".into()],
            recovery: None,
            checks: vec![],
            error: (!passed).then(|| "the secret row value 4242".into()),
        }
    }

    async fn repo() -> Repository {
        let url = format!("memory://drills-{}", rand::random::<u64>());
        let storage =
            Storage::open(&RepoUrl::parse(&url).unwrap(), &StorageOptions::default()).unwrap();
        match Repository::init(storage, vec![]).await.unwrap() {
            crate::repository::InitOutcome::Created(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn the_report_is_sealed_and_the_newest_drills_are_found() {
        let repo = repo().await;
        let (identity, recipient) = generate_identity();
        let sealing = Sealing {
            level: 3,
            recipients: vec![recipient],
        };
        let at = |day| Utc.with_ymd_and_hms(2026, 10, day, 4, 0, 0).unwrap();
        store_report(&repo, &report(at(1), true), &sealing)
            .await
            .unwrap();
        let failed = store_report(&repo, &report(at(3), false), &sealing)
            .await
            .unwrap();
        assert_eq!(
            failed.report,
            "drills/20261003T040000Z-20261001T040000Z-logical-aaaaaa.json.zst.age"
        );

        let history = drill_history(repo.storage()).await.unwrap();
        assert_eq!(history.count, 2);
        assert!(!history.last.as_ref().unwrap().passed);
        assert_eq!(history.last.as_ref().unwrap().started_at, at(3));
        assert_eq!(history.last_passed.as_ref().unwrap().started_at, at(1));

        // The summary holds no row data; the sealed report does, and only a key opens it.
        let summary = repo
            .storage()
            .get("drills/20261003T040000Z-20261001T040000Z-logical-aaaaaa.json")
            .await
            .unwrap()
            .unwrap();
        assert!(!String::from_utf8_lossy(&summary).contains("4242"));
        let sealed = repo.storage().get(&failed.report).await.unwrap().unwrap();
        assert!(sealed.starts_with(b"age-encryption.org/v1"));
        let keyring = std::sync::Arc::new(Keyring::from_identities(vec![identity]));
        let sink = crate::io::VecSink::default();
        let contents = sink.contents();
        Pipeline::new(repo.storage().source(&failed.report))
            .then(crate::transform::Decrypt::with(keyring))
            .then(crate::transform::Decompress::new())
            .into(sink)
            .run()
            .await
            .unwrap();
        let text = String::from_utf8(contents.lock().unwrap().clone()).unwrap();
        assert!(text.contains("4242"), "{text}");
    }

    #[tokio::test]
    async fn garbage_summaries_are_skipped_not_fatal() {
        let repo = repo().await;
        repo.storage()
            .put("drills/20991231T000000Z-x.json", b"{not json".to_vec())
            .await
            .unwrap();
        let history = drill_history(repo.storage()).await.unwrap();
        assert_eq!(history.count, 1);
        assert_eq!(history.last, None);
        assert_eq!(history.unreadable, ["drills/20991231T000000Z-x.json"]);
    }
}
