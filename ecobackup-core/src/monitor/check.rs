//! Thresholds applied to a [`RepositoryStatus`]: findings with a severity, as a Nagios/Icinga
//! plugin reports them. Pure: no storage, no clock.

use crate::error::remedy;
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::archiver::Waiting;
use super::status::{BackupGroup, RepositoryStatus};
use super::units::{ByteSize, Span};

/// The `[check]` table of `ecobackup.toml`, and `check`'s flags. An absent threshold is not
/// checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// The newest good backup of each kind and database may be this old (WARNING past it).
    pub max_age: Option<Span>,
    /// The newest good backup of each kind and database must store at least this much
    /// (CRITICAL below it: an empty dump is the worst backup there is).
    pub min_size: Option<ByteSize>,
    /// The newest good backup of each kind and database may take this long (WARNING past it).
    pub max_duration: Option<Span>,
    /// The newest drill that passed may be this old (WARNING past it, or when none is stored).
    pub max_drill_age: Option<Span>,
    /// Completed WAL may wait this long to be archived (WARNING past it).
    pub max_wal_lag: Option<Span>,
}

impl Thresholds {
    /// The seeds' alert table: 26 h, 1 KB, 1 h, 35 days, 10 minutes (the README's example).
    pub fn seeds() -> Thresholds {
        let span = |s: &str| s.parse().ok();
        Thresholds {
            max_age: span("26h"),
            min_size: "1KB".parse().ok(),
            max_duration: span("1h"),
            max_drill_age: span("35d"),
            max_wal_lag: span("10m"),
        }
    }

    /// Each threshold of `self`, else of `fallback` (flags over the configuration).
    pub fn or(self, fallback: &Thresholds) -> Thresholds {
        Thresholds {
            max_age: self.max_age.or_else(|| fallback.max_age.clone()),
            min_size: self.min_size.or_else(|| fallback.min_size.clone()),
            max_duration: self.max_duration.or_else(|| fallback.max_duration.clone()),
            max_drill_age: self
                .max_drill_age
                .or_else(|| fallback.max_drill_age.clone()),
            max_wal_lag: self.max_wal_lag.or_else(|| fallback.max_wal_lag.clone()),
        }
    }

    /// Whether no threshold is set (a check would then test almost nothing).
    pub fn is_empty(&self) -> bool {
        *self == Thresholds::default()
    }
}

/// How bad a finding is, ordered from best to worst as a plugin combines them: the worst
/// finding is the check's state (CRITICAL over WARNING over UNKNOWN over OK).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    /// Within its threshold.
    Ok,
    /// Could not be measured (a server that could not be asked).
    Unknown,
    /// Past a threshold the seeds alert on as SEV-2.
    Warning,
    /// Past a threshold the seeds alert on as SEV-1, or no usable backup at all.
    Critical,
}

impl Severity {
    /// The plugin exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub fn exit_code(self) -> u8 {
        match self {
            Severity::Ok => 0,
            Severity::Warning => 1,
            Severity::Critical => 2,
            Severity::Unknown => 3,
        }
    }

    /// `OK`, `WARNING`, `CRITICAL`, `UNKNOWN`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Ok => "OK",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
            Severity::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// What rule: a threshold's name (`max_age`, `min_size`, `max_duration`, `max_drill_age`,
    /// `max_wal_lag`), or `backups`, `manifests`, `drill`, `server`.
    pub check: &'static str,
    /// What it is about: `logical shop`, `physical 7437…`, `timeline 1`, `drill`, the server.
    pub subject: String,
    /// One line for an operator.
    pub message: String,
    /// The measured value as plugin performance data, when there is one.
    pub perfdata: Option<PerfData>,
}

/// One value of plugin performance data: `'label'=value[unit];[warn];[crit];[min];[max]`
/// (the Nagios plugin development guidelines).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PerfData {
    /// The label (`age_logical_shop`).
    pub label: String,
    /// The value, in whole units.
    pub value: i64,
    /// `s` or `B`.
    pub unit: &'static str,
    /// The warning range (`93600`: alert above it).
    pub warn: Option<String>,
    /// The critical range (`1000:`: alert below it).
    pub crit: Option<String>,
    /// The smallest possible value.
    pub min: Option<i64>,
}

impl fmt::Display for PerfData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Labels may hold anything but `=`; a quote is doubled inside the quotes.
        let label = self.label.replace('=', "_").replace('\'', "''");
        write!(
            f,
            "'{label}'={}{};{};{};{}",
            self.value,
            self.unit,
            self.warn.as_deref().unwrap_or(""),
            self.crit.as_deref().unwrap_or(""),
            self.min.map(|m| m.to_string()).unwrap_or_default()
        )
    }
}

/// The worst severity among `findings` (OK for none).
pub fn worst(findings: &[Finding]) -> Severity {
    findings
        .iter()
        .map(|f| f.severity)
        .max()
        .unwrap_or(Severity::Ok)
}

/// `kind group` as a subject: `logical shop`, `files`.
fn subject(group: &BackupGroup) -> String {
    match group.group.as_str() {
        "" => group.kind.to_string(),
        name => format!("{} {name}", group.kind),
    }
}

/// `metric_kind_group`: `age_logical_shop`.
fn label(metric: &str, group: &BackupGroup) -> String {
    [metric, group.kind.as_str(), &group.group]
        .iter()
        .filter(|part| !part.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("_")
}

/// `span` in the unit its threshold is written in, the rest in seconds: `27h`, `26h1s`
/// against `26h`; `90s` against `1m30s`.
fn shown(span: TimeDelta, like: &Span) -> String {
    let seconds = span.num_seconds();
    let (unit, suffix) = [(86_400, 'd'), (3_600, 'h'), (60, 'm')]
        .into_iter()
        .find(|(unit, _)| like.seconds() > 0 && like.seconds() % unit == 0)
        .unwrap_or((1, 's'));
    if unit == 1 || seconds < unit {
        return format!("{seconds}s");
    }
    match seconds % unit {
        0 => format!("{}{suffix}", seconds / unit),
        rest => format!("{}{suffix}{rest}s", seconds / unit),
    }
}

/// A finding about a span measured against an upper limit: past it (strictly: at the limit
/// is still within) it has `over`, else OK. `what` says what was measured, `{}` standing for
/// the span.
fn over_limit(
    measured: TimeDelta,
    limit: &Span,
    over: Severity,
    check: &'static str,
    subject: String,
    what: &str,
    perf_label: String,
) -> Finding {
    let past = measured > limit.duration();
    let severity = if past { over } else { Severity::Ok };
    let relation = if past { "more than" } else { "within" };
    Finding {
        severity,
        check,
        message: format!(
            "{subject}: {}, {relation} {check} {limit}",
            what.replace("{}", &shown(measured, limit))
        ),
        subject,
        perfdata: Some(PerfData {
            label: perf_label,
            value: measured.num_seconds().max(0),
            unit: "s",
            warn: (over == Severity::Warning).then(|| limit.seconds().to_string()),
            crit: (over == Severity::Critical).then(|| limit.seconds().to_string()),
            min: Some(0),
        }),
    }
}

/// Applies `thresholds` to `status` at `now`. Severities (the seeds' SEV-1 is CRITICAL, SEV-2
/// WARNING):
///
/// | rule | fires when | severity |
/// |---|---|---|
/// | `backups` | the repository holds no good backup | CRITICAL |
/// | `manifests` | a manifest fails the signature check / is unreadable | CRITICAL / WARNING |
/// | `min_size` | the newest backup of a group stores less | CRITICAL |
/// | `max_age` | the newest backup of a group finished longer ago | WARNING |
/// | `max_duration` | the newest backup of a group took longer | WARNING |
/// | `drill` | the last stored drill failed | WARNING |
/// | `max_drill_age` | the last passed drill started longer ago, or none is stored | WARNING |
/// | `max_wal_lag` | completed WAL waits longer (see below) | WARNING |
/// | `server` | `--db` given and the server's archiver cannot be read or cannot tell | UNKNOWN |
///
/// Every limit is strict: a value exactly at its threshold is OK, one second past it fires.
/// WAL lag: with the server's archiver ([`RepositoryStatus::server`]), the time completed WAL
/// has been waiting, on the server's clock (zero on an idle server, however old its last
/// archived segment); without it, the age of the newest archived segment of the newest
/// timeline, which also grows on an idle server with `archive_timeout` unset. A repository
/// without archived WAL has no WAL finding.
pub fn check(
    status: &RepositoryStatus,
    thresholds: &Thresholds,
    now: DateTime<Utc>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    if status.backups.is_empty() {
        findings.push(Finding {
            severity: Severity::Critical,
            check: "backups",
            subject: "repository".to_owned(),
            message: format!("{} holds no usable backup", status.repository),
            perfdata: None,
        });
    }
    for bad in &status.unusable {
        let (severity, what) = if bad.untrusted {
            (Severity::Critical, "fails the signature check (a forgery?)")
        } else {
            (Severity::Warning, "cannot be used")
        };
        findings.push(Finding {
            severity,
            check: "manifests",
            subject: bad.id.clone(),
            message: {
                let (id, reason) = (&bad.id, &bad.reason);
                remedy!(
                    cli: "backup {id}: its manifest {what}: {reason}; run `ecobackup verify --all`",
                    library: "backup {id}: its manifest {what}: {reason}; verify every backup",
                )
            },
            perfdata: None,
        });
    }
    for group in &status.backups {
        let last = &group.last;
        if let Some(min) = &thresholds.min_size {
            let small = last.stored_bytes < min.bytes();
            findings.push(Finding {
                severity: if small {
                    Severity::Critical
                } else {
                    Severity::Ok
                },
                check: "min_size",
                subject: subject(group),
                message: format!(
                    "{}: last backup {} stores {} bytes, {} min_size {min}",
                    subject(group),
                    last.id,
                    last.stored_bytes,
                    if small { "less than" } else { "at least" }
                ),
                perfdata: Some(PerfData {
                    label: label("size", group),
                    value: i64::try_from(last.stored_bytes).unwrap_or(i64::MAX),
                    unit: "B",
                    warn: None,
                    crit: Some(format!("{}:", min.bytes())),
                    min: Some(0),
                }),
            });
        }
        if let Some(max) = &thresholds.max_age {
            findings.push(over_limit(
                now - last.finished_at,
                max,
                Severity::Warning,
                "max_age",
                subject(group),
                &format!("last backup {} finished {{}} ago", last.id),
                label("age", group),
            ));
        }
        if let Some(max) = &thresholds.max_duration {
            findings.push(over_limit(
                last.finished_at - last.started_at,
                max,
                Severity::Warning,
                "max_duration",
                subject(group),
                &format!("last backup {} took {{}}", last.id),
                label("duration", group),
            ));
        }
    }
    check_drills(status, thresholds, now, &mut findings);
    if let Some(max) = &thresholds.max_wal_lag {
        check_wal(status, max, now, &mut findings);
    }
    findings
}

fn check_drills(
    status: &RepositoryStatus,
    thresholds: &Thresholds,
    now: DateTime<Utc>,
    findings: &mut Vec<Finding>,
) {
    let drills = &status.drills;
    if let Some(last) = drills.last.as_ref().filter(|d| !d.passed) {
        findings.push(Finding {
            severity: Severity::Warning,
            check: "drill",
            subject: "drill".to_owned(),
            message: format!(
                "drill: the last drill (of backup {}, started {}) failed: {} of {} checks failed; see its report",
                last.backup_id,
                last.started_at.format("%Y-%m-%d %H:%M UTC"),
                last.checks_failed,
                last.checks
            ),
            perfdata: None,
        });
    }
    let Some(max) = &thresholds.max_drill_age else {
        return;
    };
    match &drills.last_passed {
        Some(passed) => findings.push(over_limit(
            now - passed.started_at,
            max,
            Severity::Warning,
            "max_drill_age",
            "drill".to_owned(),
            &format!(
                "the last passed drill (of backup {}) started {{}} ago",
                passed.backup_id
            ),
            "drill_age".to_owned(),
        )),
        None => findings.push(Finding {
            severity: Severity::Warning,
            check: "max_drill_age",
            subject: "drill".to_owned(),
            message: format!(
                "drill: no passed drill is stored in the repository ({} drills); run `ecobackup drill`",
                drills.count
            ),
            perfdata: None,
        }),
    }
}

fn check_wal(
    status: &RepositoryStatus,
    max: &Span,
    now: DateTime<Utc>,
    findings: &mut Vec<Finding>,
) {
    let Some(server) = &status.server else {
        if let Some(current) = status.current_timeline() {
            findings.push(over_limit(
                now - current.archived_at,
                max,
                Severity::Warning,
                "max_wal_lag",
                format!("timeline {}", current.timeline),
                &{
                    let newest = &current.newest;
                    remedy!(
                        cli: "the newest archived segment {newest} was archived {{}} ago (without --db an idle server ages it too)",
                        library: "the newest archived segment {newest} was archived {{}} ago (without a database to ask, an idle server ages it too)",
                    )
                },
                "wal_lag".to_owned(),
            ));
        }
        return;
    };
    let unknown = |message: String| Finding {
        severity: Severity::Unknown,
        check: "server",
        subject: "server".to_owned(),
        message,
        perfdata: None,
    };
    let (Some(state), Some(waiting)) = (&server.state, &server.waiting) else {
        let error = server.error.as_deref().unwrap_or("not read");
        findings.push(unknown(format!(
            "server: cannot read its archiver: {error}"
        )));
        return;
    };
    let subject = format!("server {}", state.server);
    match waiting {
        Waiting::Unknown { reason } => findings.push(unknown(format!("server: {reason}"))),
        Waiting::Nothing => findings.push(Finding {
            severity: Severity::Ok,
            check: "max_wal_lag",
            message: format!(
                "{subject}: no completed WAL waits to be archived (last archived: {})",
                state.last_archived_wal.as_deref().unwrap_or("none")
            ),
            subject,
            perfdata: Some(PerfData {
                label: "wal_lag".to_owned(),
                value: 0,
                unit: "s",
                warn: Some(max.seconds().to_string()),
                crit: None,
                min: Some(0),
            }),
        }),
        Waiting::Since { since, pending } => findings.push(over_limit(
            state.read_at - *since,
            max,
            Severity::Warning,
            "max_wal_lag",
            subject,
            &format!(
                "completed WAL ({}) has waited {{}} to be archived",
                pending.map_or_else(|| "segments".to_owned(), |n| format!("{n} segments"))
            ),
            "wal_lag".to_owned(),
        )),
    }
}
