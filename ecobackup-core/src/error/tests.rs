use super::wording::tests::names_a_flag;
use super::wording::worded_for;
use super::*;

/// What dependencies write: age's two-line "Unknown age format.\nHave you tried upgrading…",
/// tokio-postgres' DETAIL lines, serde's positions, CRLF, tabs, trailing newlines.
const FOREIGN: &str = "  first line.\nsecond\r\nthird\t\tfourth   fifth\n\n";
const FOLDED: &str = "first line. second third fourth fifth";

/// One of each variant, every text field holding [`FOREIGN`]. The match below has no
/// wildcard: a new variant does not compile until it is added here.
fn one_of_each() -> Vec<Error> {
    let text = || FOREIGN.to_owned();
    let path = || PathBuf::from(format!("/tmp/{FOREIGN}"));
    let all = vec![
        Error::io(text(), std::io::Error::other(FOREIGN)),
        Error::WrongKey {
            expected: vec![text(), text()],
            identities: 2,
            keyring: vec![text()],
        },
        Error::NotEncrypted { detail: text() },
        Error::Tampered { detail: text() },
        Error::Truncated { detail: text() },
        Error::Decompress { detail: text() },
        Error::Compress { detail: text() },
        Error::Encrypt { detail: text() },
        Error::InvalidRecipient { value: text() },
        Error::NoRecipients,
        Error::NoIdentities,
        Error::InsecureKeyFile {
            path: path(),
            mode: 0o644,
        },
        Error::InvalidKeyFile {
            path: path(),
            detail: text(),
        },
        Error::PassphraseRequired { path: path() },
        Error::WrongPassphrase { path: path() },
        Error::AlreadyExists { path: path() },
        Error::StageVanished { stage: text() },
        Error::InvalidUrl {
            url: text(),
            detail: text(),
        },
        Error::Storage {
            op: "uploading",
            key: text(),
            repo: text(),
            detail: text(),
            fault: StorageFault::Unavailable,
        },
        Error::NotFound {
            key: text(),
            repo: text(),
        },
        Error::NotARepository { repo: text() },
        Error::RefusedInit {
            repo: text(),
            detail: text(),
        },
        Error::IncompatibleRepository {
            repo: text(),
            found: text(),
            expected: text(),
        },
        Error::Locked {
            scope: text(),
            holder: text(),
            key: text(),
            expires_at: text(),
        },
        Error::BackupNotFound {
            wanted: text(),
            repo: text(),
        },
        Error::BadManifest {
            key: text(),
            detail: text(),
        },
        Error::Untrusted {
            key: text(),
            repo: text(),
            detail: text(),
        },
        Error::InvalidSigner { value: text() },
        Error::BinaryNotFound {
            program: text(),
            major: 15,
            looked_in: text(),
        },
        Error::Postgres {
            context: text(),
            detail: text(),
        },
        Error::Process {
            program: text(),
            status: text(),
            detail: text(),
        },
        Error::ArtifactMismatch {
            artifact: text(),
            detail: text(),
        },
        Error::VerifyFailed {
            count: 2,
            first: text(),
            reason: text(),
        },
        Error::DrillFailed {
            backup: text(),
            reason: text(),
        },
        Error::Wal {
            file: text(),
            detail: text(),
        },
        Error::Cancelled(text()),
        Error::TooFewTargets {
            what: text(),
            held: 1,
            total: 2,
            required: 2,
            detail: text(),
        },
        Error::Refused {
            context: text(),
            detail: text(),
        },
        Error::Config {
            section: text(),
            detail: text(),
        },
        Error::ConfigFile {
            path: path(),
            detail: text(),
        },
    ];
    for error in &all {
        match error {
            Error::Io { .. }
            | Error::WrongKey { .. }
            | Error::NotEncrypted { .. }
            | Error::Tampered { .. }
            | Error::Truncated { .. }
            | Error::Decompress { .. }
            | Error::Compress { .. }
            | Error::Encrypt { .. }
            | Error::InvalidRecipient { .. }
            | Error::NoRecipients
            | Error::NoIdentities
            | Error::InsecureKeyFile { .. }
            | Error::InvalidKeyFile { .. }
            | Error::PassphraseRequired { .. }
            | Error::WrongPassphrase { .. }
            | Error::AlreadyExists { .. }
            | Error::StageVanished { .. }
            | Error::InvalidUrl { .. }
            | Error::Storage { .. }
            | Error::NotFound { .. }
            | Error::NotARepository { .. }
            | Error::RefusedInit { .. }
            | Error::IncompatibleRepository { .. }
            | Error::Locked { .. }
            | Error::BackupNotFound { .. }
            | Error::BadManifest { .. }
            | Error::Untrusted { .. }
            | Error::InvalidSigner { .. }
            | Error::BinaryNotFound { .. }
            | Error::Postgres { .. }
            | Error::Process { .. }
            | Error::ArtifactMismatch { .. }
            | Error::VerifyFailed { .. }
            | Error::DrillFailed { .. }
            | Error::Refused { .. }
            | Error::Config { .. }
            | Error::ConfigFile { .. }
            | Error::Wal { .. }
            | Error::TooFewTargets { .. }
            | Error::Cancelled(_) => {}
        }
    }
    all
}

#[test]
fn every_error_is_one_line_whatever_a_dependency_wrote() {
    for error in one_of_each() {
        let message = error.to_string();
        assert!(
            !message.chars().any(char::is_control),
            "{error:?} renders on several lines: {message}"
        );
        assert_eq!(message, message.trim(), "{error:?}");
        // Each value is folded, or quoted ({:?}) where the exact text matters.
        let fieldless = matches!(error, Error::NoRecipients | Error::NoIdentities);
        assert!(
            fieldless || message.contains(FOLDED) || message.contains(&format!("{FOREIGN:?}")),
            "{error:?}: {message}"
        );
    }
}

#[test]
fn foreign_text_keeps_its_words_in_order() {
    let error = Error::NotEncrypted {
        detail: "Unknown age format.\nHave you tried upgrading to the latest version?".into(),
    };
    assert!(
        error.to_string().starts_with(
            "not an age-encrypted artifact (Unknown age format. Have you tried upgrading to the latest version?); "
        ),
        "{error}"
    );
    let error = Error::io(FOREIGN, std::io::Error::other(FOREIGN));
    assert_eq!(error.to_string(), format!("{FOLDED}: {FOLDED}"));
    assert_eq!(one_line("").to_string(), "");
    assert_eq!(one_line(" \n\t ").to_string(), "");
    assert_eq!(one_line("a\u{a0}\u{2028}b").to_string(), "a b");
    assert_eq!(one_line("ready").to_string(), "ready");
}

/// The library's wording names no flag of the command line, and the command line's still
/// does where a flag is the remedy.
#[test]
fn library_messages_name_options_and_cli_messages_name_flags() {
    let mut cli_flags = 0;
    for error in one_of_each() {
        let library = worded_for(Wording::Library, || error.to_string());
        assert_eq!(names_a_flag(&library), None, "{error:?}: {library}");
        let cli = worded_for(Wording::Cli, || error.to_string());
        cli_flags += usize::from(names_a_flag(&cli).is_some());
    }
    let cli = |error: Error| worded_for(Wording::Cli, || error.to_string());
    assert!(cli(Error::NoRecipients).contains("give -r age1…"));
    assert!(cli(Error::NotARepository {
        repo: "file:///r".into()
    })
    .contains("check --repo"));
    let library = worded_for(Wording::Library, || Error::NoRecipients.to_string());
    assert!(library.contains("[encryption] recipients"), "{library}");
    assert!(cli_flags >= 5, "only {cli_flags} CLI messages name a flag");
}
