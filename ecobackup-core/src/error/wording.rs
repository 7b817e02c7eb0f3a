//! Who reads the remedy at the end of a message: a person at the `ecobackup` command line, or
//! the developer of a service that links this library.
//!
//! A message ends with what to do, and what to do depends on who reads it: "pass `--create`"
//! helps at the command line and means nothing to a service calling
//! [`RestoreLogical::create`](crate::handle::RestoreLogical::create). The library speaks to
//! its embedder by default, naming options, config keys and methods, never command-line
//! flags; the `ecobackup` binary calls [`set_wording`] with [`Wording::Cli`] once, at startup.
//!
//! The setting is process-wide on purpose: an error is often built far from the call that
//! returns it (in a pipeline stage, in a blocking thread), and one program has one audience.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// The audience of the remedies in messages. See the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Wording {
    /// A service that links the library: remedies name options, config keys and methods.
    #[default]
    Library,
    /// The `ecobackup` command line: remedies name its flags and subcommands.
    Cli,
}

static CLI: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// A per-thread override, for tests that render both wordings side by side.
    static OVERRIDE: Cell<Option<Wording>> = const { Cell::new(None) };
}

/// Chooses the audience of every message built from now on in this process.
///
/// Only a program with a command line of its own needs this (the `ecobackup` binary calls it
/// with [`Wording::Cli`]); a service that links the library keeps the default,
/// [`Wording::Library`].
pub fn set_wording(wording: Wording) {
    CLI.store(wording == Wording::Cli, Ordering::Relaxed);
}

/// The audience messages are worded for, as [`set_wording`] left it.
pub fn wording() -> Wording {
    OVERRIDE
        .with(Cell::get)
        .unwrap_or(if CLI.load(Ordering::Relaxed) {
            Wording::Cli
        } else {
            Wording::Library
        })
}

/// Runs `render` with messages worded for `wording` on this thread only.
#[cfg(test)]
pub(crate) fn worded_for<R>(wording: Wording, render: impl FnOnce() -> R) -> R {
    let before = OVERRIDE.with(|cell| cell.replace(Some(wording)));
    let result = render();
    OVERRIDE.with(|cell| cell.set(before));
    result
}

/// A remedy in both wordings: `remedy!(cli: "pass --create", library: "set create")`.
///
/// Each arm is a `format!` string, with the same implicit captures; the one for the current
/// [`wording`] is formatted.
macro_rules! remedy {
    (cli: $cli:literal, library: $library:literal $(,)?) => {
        match $crate::error::wording() {
            $crate::error::Wording::Cli => format!($cli),
            _ => format!($library),
        }
    };
}
pub(crate) use remedy;

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Programs of others whose flags a message may quote: `useradd --system postgres`.
    const OTHER_PROGRAMS: &[&str] = &[
        "initdb",
        "pg_ctl",
        "pg_dump",
        "pg_dumpall",
        "pg_restore",
        "psql",
        "pg_basebackup",
        "pg_verifybackup",
        "postgres",
        "sudo",
        "useradd",
        "chmod",
        "age-keygen",
    ];

    /// A flag of our command line in running text: ` --create`, `(--db`, `` `ecobackup verify
    /// --all` ``, ` -r `. A literal that starts with a flag is a child program's argument, and
    /// a flag in a command of another program (the literal's or the backquoted span's first
    /// word is one of [`OTHER_PROGRAMS`]) is that program's.
    pub(in crate::error) fn names_a_flag(text: &str) -> Option<&str> {
        if text.starts_with('-') {
            return None;
        }
        let first_word = |s: &str| s.split([' ', '`']).next().unwrap_or("").to_owned();
        let mut command = first_word(text);
        let mut in_quote = false;
        let mut before = None;
        for (at, c) in text.char_indices() {
            let rest = &text[at..];
            if c == '`' {
                in_quote = !in_quote;
                command = if in_quote {
                    first_word(&rest[1..])
                } else {
                    first_word(text)
                };
            }
            let gap = matches!(before, Some(' ' | '(' | '`' | '/'));
            before = Some(c);
            let mut chars = rest.chars();
            let (dash, second, third) = (chars.next(), chars.next(), chars.next());
            let long = rest.starts_with("--") && third.is_some_and(|c| c.is_ascii_lowercase());
            let short = dash == Some('-')
                && second.is_some_and(|c| c.is_ascii_lowercase())
                && matches!(third, Some(' ' | ',' | ')'));
            if gap && (long || short) && !OTHER_PROGRAMS.contains(&command.as_str()) {
                return rest.split([' ', ',', ')', '`']).next();
            }
        }
        None
    }

    #[test]
    fn the_finder_sees_flags_and_not_prose() {
        assert_eq!(names_a_flag("pass --create to create it"), Some("--create"));
        assert_eq!(names_a_flag("give -r age1… or"), Some("-r"));
        assert_eq!(names_a_flag("check (--repo / X)"), Some("--repo"));
        assert_eq!(names_a_flag("run `ecobackup verify --all`"), Some("--all"));
        assert_eq!(
            names_a_flag("a well-kept crate, pg_dump's -- separator, x -> y"),
            None
        );
        assert_eq!(names_a_flag("point-in-time; re-run"), None);
        assert_eq!(names_a_flag("--no-owner"), None);
        assert_eq!(
            names_a_flag("create one (`useradd --system postgres`) or"),
            None
        );
        assert_eq!(names_a_flag("pg_ctl stop -m fast"), None);
        assert_eq!(
            names_a_flag("`sudo -u postgres x`, or --force"),
            Some("--force")
        );
    }

    #[test]
    fn the_library_is_the_default_and_an_override_is_per_thread() {
        assert_eq!(Wording::default(), Wording::Library);
        let message = || remedy!(cli: "pass --create", library: "set create");
        assert_eq!(worded_for(Wording::Cli, message), "pass --create");
        assert_eq!(worded_for(Wording::Library, message), "set create");
        let elsewhere = std::thread::spawn(move || worded_for(Wording::Library, message));
        assert_eq!(
            worded_for(Wording::Cli, || elsewhere.join().unwrap()),
            "set create"
        );
    }

    /// Every message literal in this crate's source, outside tests: a `--flag` or `-x` in one
    /// must sit in the `cli:` arm of a [`remedy!`]. A child program's arguments (`"--no-owner"`)
    /// start their literal and are not running text; the daemon's schedule entries are command
    /// lines by definition (`config/schedule.rs`).
    #[test]
    fn no_library_message_names_a_command_line_flag() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut offenders = Vec::new();
        let mut pending = vec![root.clone()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                let name = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let exempt = name.ends_with("tests.rs")
                    || name.contains("/tests/")
                    || name == "config/schedule.rs"
                    || name == "error/wording.rs";
                if exempt || !name.ends_with(".rs") {
                    continue;
                }
                let source = std::fs::read_to_string(&path).unwrap();
                let code = source.split("\n#[cfg(test)]\nmod tests").next().unwrap();
                let mut in_cli_arm = false;
                for (number, line) in code.lines().enumerate() {
                    let trimmed = line.trim_start();
                    if trimmed.starts_with("//") {
                        continue;
                    }
                    // The `cli:` arm is exempt up to its `library:`, on this line or a later one.
                    let checked = match (line.find("cli:"), line.find("library:")) {
                        (_, Some(at)) => {
                            in_cli_arm = false;
                            &line[at..]
                        }
                        (Some(_), None) => {
                            in_cli_arm = true;
                            ""
                        }
                        (None, None) if in_cli_arm => "",
                        (None, None) => line,
                    };
                    for literal in checked.split('"').skip(1).step_by(2) {
                        if let Some(flag) = names_a_flag(literal) {
                            offenders
                                .push(format!("src/{name}:{}: {flag} in {literal:?}", number + 1));
                        }
                    }
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "library messages name command-line flags; word them with remedy!(cli: …, library: …):\n{}",
            offenders.join("\n")
        );
    }
}
