//! A [`RepositoryStatus`] as Prometheus metrics, in the text exposition format, written as a
//! node-exporter textfile (`--collector.textfile.directory`).
//!
//! Names follow Prometheus conventions: an `ecobackup_` prefix, base units (`_seconds`,
//! `_bytes`), `_timestamp_seconds` for points in time, gauges throughout (every value is read
//! from the repository, none is counted by this process). Alert on ages with
//! `time() - ecobackup_last_success_timestamp_seconds > 93600` rather than on a stored age,
//! which is only as fresh as the file.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use super::archiver::Waiting;
use super::status::{BackupGroup, RepositoryStatus};
use crate::error::{IoContext, Result};

/// One metric family being written: its HELP and TYPE lines come first, once.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, help: &str) -> Family<'a> {
        // HELP text escapes backslashes and line breaks.
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        Family { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.out, "{name}");
        if !labels.is_empty() {
            let body: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            let _ = write!(self.out, "{{{}}}", body.join(","));
        }
        let _ = writeln!(self.out, " {}", number(value));
    }
}

/// A label value as the exposition format wants it: `\`, `"` and line feeds escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Integers without a fraction, others as Rust prints them (never in exponent form).
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// Seconds since the Unix epoch, with milliseconds.
fn timestamp(t: chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// The metrics of `status`:
///
/// - per kind and database (`{kind="logical",database="shop"}`; a physical backup's
///   `database` is its cluster's system identifier): `ecobackup_last_success_timestamp_seconds`,
///   `ecobackup_backup_size_bytes`, `ecobackup_backup_duration_seconds` (of the newest good
///   backup), `ecobackup_backups` (how many good backups);
/// - `ecobackup_wal_archive_lag_seconds{timeline}`: with the server's archiver, how long
///   completed WAL has waited (0 when none waits); without it, the age of the newest archived
///   segment of the newest timeline. `ecobackup_wal_last_archived_timestamp_seconds{timeline}`
///   for every timeline;
/// - `ecobackup_drill_success` (1 or 0, the last drill), `ecobackup_drill_rto_seconds`,
///   `ecobackup_drill_timestamp_seconds`, `ecobackup_drill_last_success_timestamp_seconds`;
/// - `ecobackup_repository_bytes`, `ecobackup_repository_objects`,
///   `ecobackup_unusable_backups`, `ecobackup_status_timestamp_seconds` (when it was read).
pub fn render(status: &RepositoryStatus) -> String {
    let mut out = String::new();
    let groups = &status.backups;
    per_group(
        &mut out,
        groups,
        "ecobackup_last_success_timestamp_seconds",
        "When the newest good backup of this kind and database finished.",
        |g| timestamp(g.last.finished_at),
    );
    per_group(
        &mut out,
        groups,
        "ecobackup_backup_size_bytes",
        "Stored size of the newest good backup (sum of its artifacts).",
        |g| g.last.stored_bytes as f64,
    );
    per_group(
        &mut out,
        groups,
        "ecobackup_backup_duration_seconds",
        "How long the newest good backup took, from start to manifest.",
        |g| g.last.duration_seconds as f64,
    );
    per_group(
        &mut out,
        groups,
        "ecobackup_backups",
        "How many good backups of this kind and database the repository holds.",
        |g| g.count as f64,
    );

    if let Some(lag) = wal_lag(status) {
        let mut family = Family::new(
            &mut out,
            "ecobackup_wal_archive_lag_seconds",
            "How long completed WAL has waited to be archived (when the server is asked), else the age of the newest archived segment.",
        );
        family.sample(
            "ecobackup_wal_archive_lag_seconds",
            &[("timeline", &lag.0)],
            lag.1,
        );
    }
    if !status.wal.is_empty() {
        let name = "ecobackup_wal_last_archived_timestamp_seconds";
        let mut family = Family::new(
            &mut out,
            name,
            "When the newest segment of the timeline was archived.",
        );
        for t in &status.wal {
            family.sample(
                name,
                &[("timeline", &format!("{:08X}", t.timeline))],
                timestamp(t.archived_at),
            );
        }
    }

    if let Some(last) = &status.drills.last {
        let mut one = |name: &str, help: &str, value: f64| {
            Family::new(&mut out, name, help).sample(name, &[], value);
        };
        one(
            "ecobackup_drill_success",
            "Whether the last restore drill passed (1) or failed (0).",
            if last.passed { 1.0 } else { 0.0 },
        );
        one(
            "ecobackup_drill_rto_seconds",
            "The recovery time the last restore drill measured.",
            last.rto_seconds,
        );
        one(
            "ecobackup_drill_timestamp_seconds",
            "When the last restore drill started.",
            timestamp(last.started_at),
        );
    }
    if let Some(passed) = &status.drills.last_passed {
        let name = "ecobackup_drill_last_success_timestamp_seconds";
        Family::new(
            &mut out,
            name,
            "When the last restore drill that passed started.",
        )
        .sample(name, &[], timestamp(passed.started_at));
    }
    let mut one = |name: &str, help: &str, value: f64| {
        Family::new(&mut out, name, help).sample(name, &[], value);
    };
    one(
        "ecobackup_repository_bytes",
        "Stored size of every object in the repository.",
        status.bytes as f64,
    );
    one(
        "ecobackup_repository_objects",
        "How many objects the repository holds.",
        status.objects as f64,
    );
    one(
        "ecobackup_unusable_backups",
        "Backup folders whose manifest is unreadable or fails the signature check.",
        status.unusable.len() as f64,
    );
    one(
        "ecobackup_status_timestamp_seconds",
        "When these values were read from the repository.",
        timestamp(status.at),
    );
    out
}

/// One family with a sample per kind and database (none when there is no backup).
fn per_group(
    out: &mut String,
    groups: &[BackupGroup],
    name: &str,
    help: &str,
    value: impl Fn(&BackupGroup) -> f64,
) {
    if groups.is_empty() {
        return;
    }
    let mut family = Family::new(out, name, help);
    for g in groups {
        family.sample(
            name,
            &[("kind", g.kind.as_str()), ("database", &g.group)],
            value(g),
        );
    }
}

/// The lag exported: the server's when asked and known, else the newest timeline's age.
fn wal_lag(status: &RepositoryStatus) -> Option<(String, f64)> {
    if let Some(server) = &status.server {
        let state = server.state.as_ref()?;
        let timeline = format!("{:08X}", state.timeline()?);
        return match server.waiting.as_ref()? {
            Waiting::Nothing => Some((timeline, 0.0)),
            Waiting::Since { since, .. } => Some((
                timeline,
                (state.read_at - *since).num_milliseconds() as f64 / 1000.0,
            )),
            Waiting::Unknown { .. } => None,
        };
    }
    let current = status.current_timeline()?;
    Some((
        format!("{:08X}", current.timeline),
        (status.at - current.archived_at).num_milliseconds() as f64 / 1000.0,
    ))
}

/// Writes `text` to `path` as node-exporter wants a textfile: to a temporary file in the same
/// directory, flushed, then renamed over `path`, so that the exporter never reads half of it.
/// Mode 0644: metrics hold no secret, and the exporter often runs as another user.
pub fn write_textfile(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // node-exporter reads only `*.prom`: a temporary name without that suffix is never read.
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&temp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.with_context(|| format!("writing the metrics file {}", path.display()))
}
