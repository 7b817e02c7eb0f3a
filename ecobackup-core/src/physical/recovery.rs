//! Recovery settings: where recovery stops, what the server does there, and how they are
//! written into a restored data directory (`recovery.signal` + `postgresql.auto.conf`).

use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, FixedOffset, NaiveDateTime};

use crate::error::{Error, Result};
use crate::wal::Lsn;

/// Where recovery stops (PostgreSQL's `recovery_target*` settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// Replay every archived WAL file: the newest state the archive holds.
    EndOfArchive,
    /// Stop as soon as the backup is consistent (`recovery_target = 'immediate'`).
    Immediate,
    /// Stop before the first commit after this time (`recovery_target_time`).
    Time(DateTime<FixedOffset>),
    /// Stop at this LSN (`recovery_target_lsn`).
    Lsn(Lsn),
    /// Stop at the restore point made by `pg_create_restore_point(name)`.
    Name(String),
    /// Stop after this transaction commits (`recovery_target_xid`).
    Xid(u64),
}

impl RecoveryTarget {
    /// Reads a time as PostgreSQL's `recovery_target_time` takes it and `select now()` prints
    /// it: `2026-11-23 08:55:01.123456+00` (a `T` between date and time, and `Z`, `+01`,
    /// `+0100`, `+01:00` for the zone are accepted too). The zone is required: without it
    /// PostgreSQL would read the time in the restored server's `TimeZone`, which ecobackup
    /// cannot know for sure.
    pub fn parse_time(text: &str) -> Result<DateTime<FixedOffset>, String> {
        let mut t = text.trim().to_owned();
        if t.get(10..11) == Some("T") {
            t.replace_range(10..11, " ");
        }
        let t = match t.strip_suffix('Z').or_else(|| t.strip_suffix(" UTC")) {
            Some(rest) => format!("{rest}+00:00"),
            None => t,
        };
        // `+01` → `+01:00`: chrono wants the minutes.
        let t = match t.rfind(['+', '-']) {
            Some(at) if at > 10 && t.len() - at == 3 => format!("{t}:00"),
            _ => t,
        };
        for format in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%z"] {
            if let Ok(time) = DateTime::parse_from_str(&t, format) {
                return Ok(time);
            }
        }
        if NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S%.f").is_ok() {
            return Err(format!(
                "{text:?} has no time zone: add one, e.g. {text}+00 for UTC (PostgreSQL would read it in the restored server's TimeZone)"
            ));
        }
        Err(format!(
            "{text:?} is not a time like 2026-11-23 08:55:01.123456+00 (what `select now()` prints)"
        ))
    }

    /// The `postgresql.auto.conf` lines of this target.
    fn settings(&self) -> Vec<(&'static str, String)> {
        match self {
            RecoveryTarget::EndOfArchive => Vec::new(),
            RecoveryTarget::Immediate => vec![("recovery_target", "immediate".to_owned())],
            RecoveryTarget::Time(t) => vec![(
                "recovery_target_time",
                t.format("%Y-%m-%d %H:%M:%S%.6f%:z").to_string(),
            )],
            RecoveryTarget::Lsn(lsn) => vec![("recovery_target_lsn", lsn.to_string())],
            RecoveryTarget::Name(name) => vec![("recovery_target_name", name.clone())],
            RecoveryTarget::Xid(xid) => vec![("recovery_target_xid", xid.to_string())],
        }
    }
}

/// What the server does once it reaches the target (`recovery_target_action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TargetAction {
    /// End recovery and accept writes on a new timeline.
    #[default]
    Promote,
    /// Stay in recovery, read-only, until `pg_wal_replay_resume()`.
    Pause,
    /// Stop the server.
    Shutdown,
}

impl std::str::FromStr for TargetAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "promote" => Ok(TargetAction::Promote),
            "pause" => Ok(TargetAction::Pause),
            "shutdown" => Ok(TargetAction::Shutdown),
            other => Err(format!(
                "{other:?} is not a target action: promote, pause or shutdown"
            )),
        }
    }
}

impl TargetAction {
    fn as_str(self) -> &'static str {
        match self {
            TargetAction::Promote => "promote",
            TargetAction::Pause => "pause",
            TargetAction::Shutdown => "shutdown",
        }
    }
}

/// Which timeline recovery follows (`recovery_target_timeline`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TargetTimeline {
    /// The newest timeline in the archive (PostgreSQL's default).
    #[default]
    Latest,
    /// The backup's own timeline.
    Current,
    /// This timeline.
    Id(u32),
}

impl std::str::FromStr for TargetTimeline {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "latest" => Ok(TargetTimeline::Latest),
            "current" => Ok(TargetTimeline::Current),
            n => n
                .parse()
                .map(TargetTimeline::Id)
                .map_err(|_| format!("{n:?} is not a timeline: latest, current or a number")),
        }
    }
}

impl std::fmt::Display for TargetTimeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetTimeline::Latest => f.write_str("latest"),
            TargetTimeline::Current => f.write_str("current"),
            TargetTimeline::Id(n) => write!(f, "{n}"),
        }
    }
}

/// Everything written into the restored data directory for recovery.
#[derive(Clone, Debug)]
pub struct RecoverySettings {
    /// The `restore_command` (a shell command with `%f` and `%p`), or `None` when the backup
    /// holds its own WAL and nothing is fetched.
    pub restore_command: Option<String>,
    /// Where recovery stops.
    pub target: RecoveryTarget,
    /// What the server does there.
    pub action: TargetAction,
    /// Which timeline it follows.
    pub timeline: TargetTimeline,
    /// Keep the backup's archiving settings. Off by default: a restored copy must not push its
    /// new timeline into the repository it came from, where every later restore to `latest`
    /// would follow it.
    pub keep_archiving: bool,
    /// More settings (`port`, …), written after ecobackup's.
    pub extra: Vec<(String, String)>,
}

/// Settings a restore writes itself: earlier ones (a cluster that was restored before) are
/// commented out, or recovery would see two targets.
const RECOVERY_SETTINGS: [&str; 9] = [
    "restore_command",
    "recovery_target",
    "recovery_target_time",
    "recovery_target_lsn",
    "recovery_target_name",
    "recovery_target_xid",
    "recovery_target_action",
    "recovery_target_timeline",
    "recovery_target_inclusive",
];

impl RecoverySettings {
    /// The lines appended to `postgresql.auto.conf`.
    pub fn conf_text(&self, backup_id: &str) -> String {
        let mut text = format!(
            "\n# Recovery settings written by `ecobackup restore physical {backup_id}`; remove them once the server runs.\n"
        );
        let mut settings: Vec<(String, String)> = Vec::new();
        if let Some(command) = &self.restore_command {
            settings.push(("restore_command".into(), command.clone()));
        }
        for (name, value) in self.target.settings() {
            settings.push((name.into(), value));
        }
        if self.target != RecoveryTarget::EndOfArchive {
            settings.push(("recovery_target_action".into(), self.action.as_str().into()));
        }
        settings.push(("recovery_target_timeline".into(), self.timeline.to_string()));
        if !self.keep_archiving {
            settings.push(("archive_mode".into(), "off".into()));
        }
        settings.extend(self.extra.iter().cloned());
        for (name, value) in settings {
            let _ = writeln!(text, "{name} = {}", conf_string(&value));
        }
        text
    }

    /// Writes `recovery.signal` and appends the settings to `postgresql.auto.conf` in `dir`.
    pub fn write(&self, dir: &Path, backup_id: &str) -> Result<()> {
        let auto = dir.join("postgresql.auto.conf");
        let old = match std::fs::read_to_string(&auto) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(format!("reading {}", auto.display()), e)),
        };
        let mut text = without_recovery_settings(&old);
        text.push_str(&self.conf_text(backup_id));
        write_synced(&auto, text.as_bytes())?;
        // A backup of a standby carries standby.signal, which would win over recovery.signal.
        let standby = dir.join("standby.signal");
        if standby.exists() {
            std::fs::remove_file(&standby)
                .map_err(|e| Error::io(format!("removing {}", standby.display()), e))?;
        }
        write_synced(&dir.join("recovery.signal"), b"")
    }
}

/// `text` with every earlier recovery setting commented out.
fn without_recovery_settings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let name = line
            .split(['=', ' ', '\t'])
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if RECOVERY_SETTINGS.contains(&name.as_str()) {
            out.push_str("# replaced by ecobackup restore physical: ");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Writes `path` whole and flushes it to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// A `postgresql.conf` string literal: single quotes, with `'` doubled and `\` escaped.
pub fn conf_string(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// A word of a `restore_command`/`archive_command`: for `sh -c` (single-quoted, `'` written as
/// `'\''`), with `%` doubled, since PostgreSQL replaces `%f`, `%p`, `%r` and `%%` in the command.
pub fn command_word(word: &str) -> String {
    shell_word(&word.replace('%', "%%"))
}

/// A word for `sh -c`: single-quoted, with `'` written as `'\''`.
pub fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:,@%+".contains(&b))
    {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_select_now_prints_them() {
        let t = RecoveryTarget::parse_time("2026-11-23 08:55:01.123456+00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-23T08:55:01.123456+00:00");
        for text in [
            "2026-11-23T09:55:01.123456+01:00",
            "2026-11-23 09:55:01.123456+0100",
            "2026-11-23 09:55:01.123456+01",
            "2026-11-23 08:55:01.123456Z",
            "2026-11-23 08:55:01.123456 UTC",
        ] {
            assert_eq!(RecoveryTarget::parse_time(text).unwrap(), t, "{text}");
        }
        let t = RecoveryTarget::parse_time("2026-11-23 08:55:01-05").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-23T08:55:01-05:00");
        let err = RecoveryTarget::parse_time("2026-11-23 08:55:01").unwrap_err();
        assert!(err.contains("no time zone"), "{err}");
        assert!(RecoveryTarget::parse_time("yesterday").is_err());
    }

    #[test]
    fn settings_are_quoted_for_the_conf_file_and_the_shell() {
        let settings = RecoverySettings {
            restore_command: Some(format!(
                "{} wal-fetch %f %p",
                shell_word("/opt/it's here/ecobackup")
            )),
            target: RecoveryTarget::Name("before 'b'".into()),
            action: TargetAction::Pause,
            timeline: TargetTimeline::Latest,
            keep_archiving: false,
            extra: vec![("port".into(), "5433".into())],
        };
        let text = settings.conf_text("x");
        assert!(text.contains("archive_mode = 'off'"), "{text}");
        assert_eq!(command_word("/srv/100%/x"), "/srv/100%%/x");
        let old = "port = 5432\nrestore_command = 'cp %p x'\nRecovery_Target_Time = '2026-01-01'\n";
        let kept = without_recovery_settings(old);
        assert!(kept.contains("port = 5432\n# replaced"), "{kept}");
        assert_eq!(kept.matches("# replaced by ecobackup").count(), 2, "{kept}");
        assert!(
            // The conf file reads `\\` as one backslash and `''` as one quote.
            text.contains(
                r"restore_command = '''/opt/it''\\''''s here/ecobackup'' wal-fetch %f %p'"
            ),
            "{text}"
        );
        assert!(
            text.contains("recovery_target_name = 'before ''b'''"),
            "{text}"
        );
        assert!(text.contains("recovery_target_action = 'pause'"), "{text}");
        assert!(text.contains("port = '5433'"), "{text}");
        assert_eq!(shell_word("/usr/bin/ecobackup"), "/usr/bin/ecobackup");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word(""), "''");
    }
}
