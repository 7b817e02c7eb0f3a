//! Reading a PostgreSQL server log for the lines that explain why it would not start.

use std::path::Path;

/// The text of `path` from byte `offset` on (empty when unreadable).
pub(crate) fn read_from(path: &Path, offset: u64) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

const SEVERITIES: [&str; 8] = [
    "PANIC:", "FATAL:", "ERROR:", "WARNING:", "LOG:", "DETAIL:", "HINT:", "CONTEXT:",
];

/// Messages every start and stop logs, which never explain a failure.
const ROUTINE: [&str; 14] = [
    "starting PostgreSQL",
    "listening on",
    "database system is",
    "database system was",
    "redirecting log output",
    "received fast shutdown",
    "received immediate shutdown",
    "received smart shutdown",
    "aborting any active transactions",
    "background worker",
    "shutting down",
    "checkpoint starting",
    "checkpoint complete",
    "could not bind IPv6",
];

/// A log line without its `log_line_prefix` (`2024-… UTC [123] `), from its severity on, with
/// the double space after the severity collapsed.
fn log_message(line: &str) -> Option<String> {
    let start = SEVERITIES.iter().filter_map(|s| line.find(s)).min()?;
    let message = &line[start..];
    let (severity, text) = message.split_once(':')?;
    Some(format!("{severity}: {}", text.trim()))
}

fn is_routine(message: &str) -> bool {
    ROUTINE.iter().any(|r| message.contains(r))
}

/// The lines of a server log that explain a failure: the last FATAL or PANIC (else ERROR)
/// message, with up to two meaningful messages just before it and its DETAIL and HINT lines.
/// `None` when the log holds nothing but routine messages.
pub(crate) fn log_excerpt(log: &str) -> Option<String> {
    let messages: Vec<String> = log.lines().filter_map(log_message).collect();
    let worst = messages
        .iter()
        .rposition(|m| m.starts_with("FATAL:") || m.starts_with("PANIC:"))
        .or_else(|| messages.iter().rposition(|m| m.starts_with("ERROR:")));
    let mut picked: Vec<&str> = Vec::new();
    match worst {
        Some(i) => {
            let mut before: Vec<&str> = messages[..i]
                .iter()
                .rev()
                .take(2)
                .take_while(|m| {
                    !is_routine(m) && !m.starts_with("DETAIL:") && !m.starts_with("HINT:")
                })
                .map(String::as_str)
                .collect();
            before.reverse();
            picked.extend(before);
            picked.push(&messages[i]);
            picked.extend(
                messages[i + 1..]
                    .iter()
                    .take_while(|m| m.starts_with("DETAIL:") || m.starts_with("HINT:"))
                    .map(String::as_str),
            );
        }
        None => {
            let last = messages.iter().rev().find(|m| !is_routine(m))?;
            picked.push(last);
        }
    }
    let mut excerpt = picked.join(" / ");
    if excerpt.len() > 1000 {
        let cut = (0..=1000)
            .rev()
            .find(|&i| excerpt.is_char_boundary(i))
            .unwrap_or(0);
        excerpt.truncate(cut);
        excerpt.push('…');
    }
    Some(excerpt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_excerpt_explains_the_failure() {
        let log = "\
2025-01-01 10:00:00.000 UTC [10] LOG:  starting PostgreSQL 15.8 on x86_64
2025-01-01 10:00:00.000 UTC [10] LOG:  invalid value for parameter \"shared_buffers\": \"lots\"
2025-01-01 10:00:00.000 UTC [10] FATAL:  configuration file \"/tmp/x/postgresql.conf\" contains errors
";
        assert_eq!(
            log_excerpt(log).unwrap(),
            "LOG: invalid value for parameter \"shared_buffers\": \"lots\" / FATAL: configuration file \"/tmp/x/postgresql.conf\" contains errors"
        );
        let log = "\
2025-01-01 10:00:00.000 UTC [10] LOG:  starting PostgreSQL 15.8 on x86_64
2025-01-01 10:00:00.000 UTC [10] FATAL:  data directory \"/x\" has invalid permissions
2025-01-01 10:00:00.000 UTC [10] DETAIL:  Permissions should be u=rwx (0700).
2025-01-01 10:00:00.000 UTC [10] LOG:  database system is shut down
";
        assert_eq!(
            log_excerpt(log).unwrap(),
            "FATAL: data directory \"/x\" has invalid permissions / DETAIL: Permissions should be u=rwx (0700)."
        );
        let log = "2025-01-01 10:00:00.000 UTC [10] LOG:  database system is shut down\n";
        assert_eq!(log_excerpt(log), None);
        assert_eq!(log_excerpt(""), None);
    }
}
