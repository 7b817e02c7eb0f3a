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

/// The audience of the remedies in messages. The library wording is the default; see [`set_wording`].
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
    /// --all` ``, ` -r `. A flag that starts the text is not in running text, and a flag in a
    /// command of another program (the literal's or the backquoted span's first
    /// word is one of [`OTHER_PROGRAMS`]) is that program's.
    pub(in crate::error) fn names_a_flag(text: &str) -> Option<&str> {
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
        assert_eq!(names_a_flag("x --no-owner"), Some("--no-owner"));
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
        // Another thread, with no override of its own, sees the process-wide default even
        // while this one is overridden (no test in this crate changes the default).
        let seen = worded_for(Wording::Cli, || {
            let elsewhere = std::thread::spawn(message).join().unwrap();
            (message(), elsewhere)
        });
        assert_eq!(seen, ("pass --create".to_owned(), "set create".to_owned()));
    }

    /// A string literal of Rust source: where it starts, its text (escapes resolved as far
    /// as flags go: `\"` is a quote, a `\` line continuation joins the lines), and the code
    /// just before it.
    struct Literal {
        line: usize,
        text: String,
        before: String,
    }

    /// The string literals of `code`, outside comments; char literals and lifetimes are
    /// skipped so that `'"'` opens nothing.
    fn literals(code: &str) -> Vec<Literal> {
        let chars: Vec<char> = code.chars().collect();
        let (mut found, mut before, mut line, mut at) = (Vec::new(), String::new(), 1, 0);
        let starts = |at: usize, text: &str| {
            text.chars()
                .enumerate()
                .all(|(k, c)| chars.get(at + k) == Some(&c))
        };
        while at < chars.len() {
            let c = chars[at];
            if starts(at, "//") {
                while at < chars.len() && chars[at] != '\n' {
                    at += 1;
                }
            } else if starts(at, "/*") {
                while at < chars.len() && !starts(at, "*/") {
                    line += usize::from(chars[at] == '\n');
                    at += 1;
                }
                at += 2;
            } else if c == '\'' {
                // '\'' and '\\' and 'x' are chars; 'a in <'a> is a lifetime.
                at += match (chars.get(at + 1), chars.get(at + 2)) {
                    (Some('\\'), _) => (at + 2..chars.len())
                        .find(|&k| chars[k] == '\'')
                        .map_or(1, |k| k - at + 1),
                    (Some(_), Some('\'')) => 3,
                    _ => 1,
                };
            } else if c == '"'
                || (c == 'r'
                    && matches!(chars.get(at + 1), Some('"' | '#'))
                    && !before.ends_with(|p: char| p.is_alphanumeric() || p == '_'))
            {
                let raw = c == 'r';
                let mut hashes = 0;
                at += 1;
                while raw && chars.get(at) == Some(&'#') {
                    hashes += 1;
                    at += 1;
                }
                if raw && chars.get(at) != Some(&'"') {
                    before.push('r');
                    continue; // an identifier starting with r
                }
                at += usize::from(raw);
                let (start, mut text) = (line, String::new());
                while at < chars.len() {
                    let c = chars[at];
                    if raw && c == '"' && (1..=hashes).all(|k| chars.get(at + k) == Some(&'#')) {
                        at += 1 + hashes;
                        break;
                    }
                    if !raw && c == '"' {
                        at += 1;
                        break;
                    }
                    if !raw && c == '\\' {
                        match chars.get(at + 1) {
                            Some('\n') => {
                                at += 2;
                                line += 1;
                                while chars.get(at).is_some_and(|c| c.is_whitespace()) {
                                    line += usize::from(chars[at] == '\n');
                                    at += 1;
                                }
                            }
                            Some(&escaped) => {
                                text.push(if escaped == 'n' { ' ' } else { escaped });
                                at += 2;
                            }
                            None => at += 1,
                        }
                        continue;
                    }
                    line += usize::from(c == '\n');
                    text.push(c);
                    at += 1;
                }
                found.push(Literal {
                    line: start,
                    text,
                    before: std::mem::take(&mut before),
                });
                continue;
            } else {
                line += usize::from(c == '\n');
                before.push(c);
                at += 1;
            }
        }
        found
    }

    #[test]
    fn the_lexer_reads_continued_and_escaped_literals_and_skips_chars_and_comments() {
        let code = "let a = '\"'; // \"--not\"\n/* \"--nor\" */ f(cli: \"one \\\"two\\\"\", x: \"a \\\n    b\");\nr#\"raw \"q\"\"#";
        let found: Vec<(usize, String, String)> = literals(code)
            .into_iter()
            .map(|l| {
                let last = l.before.split_whitespace().last().unwrap_or("").to_owned();
                (l.line, l.text, last)
            })
            .collect();
        assert_eq!(
            found,
            [
                (2, "one \"two\"".to_owned(), "f(cli:".to_owned()),
                (2, "a b".to_owned(), "x:".to_owned()),
                (4, "raw \"q\"".to_owned(), ");".to_owned()),
            ]
        );
    }

    /// Every message literal in this crate's source, outside tests: a `--flag` or `-x` in one
    /// must be the `cli:` arm of a [`remedy!`]. A child program's argument starts with its flag
    /// and is one word (`"--no-owner"`, `"--dbname={conninfo}"`) or is passed by `.arg(` (or is
    /// the server options after `pg_ctl -o`); the
    /// daemon's schedule entries are command lines by definition (`config/schedule.rs`).
    #[test]
    fn no_library_message_names_a_command_line_flag() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let (mut offenders, mut scanned) = (Vec::new(), 0);
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
                    || name == "config/schedule.rs"
                    || name == "error/wording.rs";
                if exempt || !name.ends_with(".rs") {
                    continue;
                }
                let source = std::fs::read_to_string(&path).unwrap();
                let code = source.split("\n#[cfg(test)]\nmod tests").next().unwrap();
                let mut previous = String::new();
                for literal in literals(code) {
                    scanned += 1;
                    let previous = std::mem::replace(&mut previous, literal.text.clone());
                    let before = literal.before.trim_end();
                    let argument = literal.text.starts_with('-')
                        && (!literal.text.contains(char::is_whitespace)
                            || before.ends_with(".arg(")
                            || (previous == "-o" && before.trim() == ","));
                    if before.ends_with("cli:") || argument {
                        continue;
                    }
                    if let Some(flag) = names_a_flag(&literal.text) {
                        offenders.push(format!(
                            "src/{name}:{}: {flag} in {:?}",
                            literal.line, literal.text
                        ));
                    }
                }
            }
        }
        assert!(
            scanned > 500,
            "only {scanned} literals found: is the lexer lost?"
        );
        assert!(
            offenders.is_empty(),
            "library messages name command-line flags; word them with remedy!(cli: …, library: …):\n{}",
            offenders.join("\n")
        );
    }
}
