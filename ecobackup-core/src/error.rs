//! Errors that say what failed and what to do about it.
//!
//! Every variant renders as one line meant for an operator reading a cron mail at 3 a.m.:
//! first what failed, then what to do. Secrets (identities, passphrases) never appear in
//! an error, and neither does row data.
//!
//! Text that comes from elsewhere — age, object_store, std::io, tokio-postgres, serde, a child
//! program's stderr, a file name — may hold line breaks ("Unknown age format.\nHave you tried
//! upgrading…"). Every such value enters a message through [`one_line`], which folds line
//! breaks and runs of whitespace into single spaces, so whatever a dependency writes, an error
//! stays one line.

use std::fmt;
use std::path::PathBuf;

mod kind;
mod wording;
pub use kind::{ErrorKind, StorageFault};
pub(crate) use wording::remedy;
pub use wording::{set_wording, wording, Wording};

/// The result type of every fallible operation in ecobackup.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, with enough context to act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed; `context` says which one.
    #[error("{}: {}", one_line(context), one_line(source))]
    Io {
        /// What was being done, e.g. "writing /var/backups/x.zst.age".
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// None of the identities in the keyring can unwrap the artifact's file key.
    #[error(
        "wrong key: this artifact is encrypted to {}; none of the {identities} {} in the keyring \
         matches{}; use the identity file that pairs with the recipient the backup was made to",
        one_line(&describe_recipients(.expected)),
        if *.identities == 1 { "identity" } else { "identities" },
        one_line(&describe_keyring(.keyring))
    )]
    WrongKey {
        /// Recipients the artifact was encrypted to, when known (from a manifest).
        expected: Vec<String>,
        /// How many identities were tried.
        identities: usize,
        /// The public recipients of the identities that were tried.
        keyring: Vec<String>,
    },

    /// The input is not an age v1 file at all.
    #[error("not an age-encrypted artifact ({}); check that you are reading an ecobackup artifact (*.age), {}", one_line(detail), remedy!(
        cli: "or use --raw / --no-encryption for plaintext",
        library: "or read it with encryption off if it was stored as plaintext on purpose",
    ))]
    NotEncrypted {
        /// What the parser found wrong.
        detail: String,
    },

    /// The ciphertext failed authentication: a byte was changed, or the file was cut or extended.
    #[error("artifact failed authentication ({}): it is corrupt, truncated or was tampered with; restore from another copy or an older backup", one_line(detail))]
    Tampered {
        /// What the decryptor reported.
        detail: String,
    },

    /// The ciphertext ended before its final authenticated chunk.
    #[error("artifact is truncated ({}): the object ended before its last authenticated chunk; the upload or download was cut short, restore from another copy", one_line(detail))]
    Truncated {
        /// What the decryptor reported.
        detail: String,
    },

    /// zstd could not decompress the (authenticated) plaintext.
    #[error("decompression failed: {}; the artifact decrypted but is not a complete zstd stream (written by another tool, or truncated before encryption)", one_line(detail))]
    Decompress {
        /// What zstd reported.
        detail: String,
    },

    /// zstd could not compress (bad level, out of memory).
    #[error("compression failed: {}", one_line(detail))]
    Compress {
        /// What zstd reported.
        detail: String,
    },

    /// Encryption could not be set up or written.
    #[error("encryption failed: {}", one_line(detail))]
    Encrypt {
        /// What age reported.
        detail: String,
    },

    /// A recipient string is not an age X25519 public key.
    #[error("invalid recipient {value:?}: expected an age X25519 public key (age1…), as printed by `ecobackup key generate` or `age-keygen -y`")]
    InvalidRecipient {
        /// The offending text (public, safe to show).
        value: String,
    },

    /// Encryption is on (the default) but no recipient is configured.
    #[error("no recipient configured: {}", remedy!(
        cli: "give -r age1…, ECOBACKUP_RECIPIENTS or [encryption] recipients in ecobackup.toml (or --no-encryption to store plaintext on purpose)",
        library: "set [encryption] recipients in the config (age1…; ECOBACKUP_RECIPIENTS when it is read with Config::from_env)",
    ))]
    NoRecipients,

    /// Decryption was asked for but no identity is configured.
    #[error("no identity configured: {}", remedy!(
        cli: "give -i FILE, ECOBACKUP_IDENTITY_FILE or [encryption] identity_files in ecobackup.toml",
        library: "set [encryption] identity_files in the config (ECOBACKUP_IDENTITY_FILE when it is read with Config::from_env)",
    ))]
    NoIdentities,

    /// A key file is readable by group or others.
    #[error("{} has mode {mode:04o}, readable by others: run `chmod 600 {}` (ecobackup refuses key and secret files that other users can read)", one_line(&path.display()), one_line(&path.display()))]
    InsecureKeyFile {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// A key file could not be parsed. The message never includes the file's content.
    #[error("key file {}: {}", one_line(&path.display()), one_line(detail))]
    InvalidKeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong (line numbers, never content).
        detail: String,
    },

    /// The identity file is passphrase-protected and no passphrase was given.
    #[error("identity file {} is passphrase-protected: {}", one_line(&path.display()), remedy!(
        cli: "set ECOBACKUP_IDENTITY_PASSPHRASE_FILE to a file holding the passphrase (or ECOBACKUP_IDENTITY_PASSPHRASE)",
        library: "set [encryption] passphrase_file in the config to a file holding the passphrase (ECOBACKUP_IDENTITY_PASSPHRASE_FILE when it is read with Config::from_env)",
    ))]
    PassphraseRequired {
        /// The identity file.
        path: PathBuf,
    },

    /// The passphrase did not decrypt the identity file.
    #[error("wrong passphrase for identity file {}: {}", one_line(&path.display()), remedy!(
        cli: "check ECOBACKUP_IDENTITY_PASSPHRASE_FILE / ECOBACKUP_IDENTITY_PASSPHRASE",
        library: "check the passphrase file ([encryption] passphrase_file)",
    ))]
    WrongPassphrase {
        /// The identity file.
        path: PathBuf,
    },

    /// Refused to replace an existing file (keys are never overwritten).
    #[error("{} already exists: refusing to overwrite it; choose another path or move the old file away first", one_line(&path.display()))]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },

    /// A request that would destroy or mislead, refused before anything was done.
    #[error("{}: {}", one_line(context), one_line(detail))]
    Refused {
        /// What was asked, e.g. "restoring into /var/lib/postgresql/15/main".
        context: String,
        /// Why it was refused and what to do instead.
        detail: String,
    },

    /// A configuration section is inconsistent or would do harm (a retention policy that keeps
    /// nothing, an unknown time zone).
    #[error("invalid [{}] configuration: {}", one_line(section), one_line(detail))]
    Config {
        /// The section, as in the file: `retention`, `retention.physical`.
        section: String,
        /// What is wrong and what to write instead.
        detail: String,
    },

    /// The configuration file cannot be read, or holds settings that cannot work.
    #[error("configuration file {} is invalid: {}", one_line(&path.display()), one_line(detail))]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the setting.
        detail: String,
    },

    /// A pipeline stage stopped without finishing its output (it panicked or was cancelled).
    #[error("pipeline stage {stage:?} stopped before finishing its output; this is a bug in ecobackup, please report it with the log")]
    StageVanished {
        /// The stage's name.
        stage: String,
    },

    /// A repository URL could not be understood.
    #[error("invalid repository URL {url:?}: {}", one_line(detail))]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        detail: String,
    },

    /// The object store refused or failed an operation (after retries).
    #[error(
        "{op} {} on {} failed: {}",
        one_line(key),
        one_line(repo),
        one_line(detail)
    )]
    Storage {
        /// What was being done (`uploading`, `reading`, `listing`, …).
        op: &'static str,
        /// The object key.
        key: String,
        /// The repository URL.
        repo: String,
        /// What went wrong and what to do.
        detail: String,
        /// What kind of failure it was, as far as it can be told.
        fault: StorageFault,
    },

    /// An object that must exist does not.
    #[error("{} does not exist in {}", one_line(key), one_line(repo))]
    NotFound {
        /// The object key.
        key: String,
        /// The repository URL.
        repo: String,
    },

    /// The URL points at no ecobackup repository.
    #[error("no ecobackup repository at {}: {}", one_line(repo), remedy!(
        cli: "run `ecobackup init` there first (or check --repo / ECOBACKUP_REPO)",
        library: "initialise one there first (`ecobackup init`, or Repository::init), or check the repository URL in the config",
    ))]
    NotARepository {
        /// The repository URL.
        repo: String,
    },

    /// `init` over something that is not an empty place or a repository of this format.
    #[error("refusing to initialise {}: {}", one_line(repo), one_line(detail))]
    RefusedInit {
        /// The repository URL.
        repo: String,
        /// What is there already.
        detail: String,
    },

    /// The repository was written by an incompatible version.
    #[error("repository {} has format {found:?}, this ecobackup reads {expected:?}: use a matching ecobackup version", one_line(repo))]
    IncompatibleRepository {
        /// The repository URL.
        repo: String,
        /// The format found.
        found: String,
        /// The format this version reads.
        expected: String,
    },

    /// Another process holds the lock.
    #[error("{} is locked by {}; wait for it to finish, or remove the lock object {} if that process is gone (it expires at {})", one_line(scope), one_line(holder), one_line(key), one_line(expires_at))]
    Locked {
        /// What is locked (a backup id, `prune`, …).
        scope: String,
        /// Who holds it: owner, host and pid.
        holder: String,
        /// The lock object's key.
        key: String,
        /// When the lock may be taken over.
        expires_at: String,
    },

    /// No backup matches an id or `latest`.
    #[error(
        "no backup {} in {}; `ecobackup list` shows what there is",
        one_line(wanted),
        one_line(repo)
    )]
    BackupNotFound {
        /// The id (or `latest`) asked for.
        wanted: String,
        /// The repository URL.
        repo: String,
    },

    /// A manifest could not be parsed.
    #[error(
        "manifest {} is unreadable ({}); the backup cannot be trusted, run `ecobackup verify`",
        one_line(key),
        one_line(detail)
    )]
    BadManifest {
        /// The manifest's key.
        key: String,
        /// The parse error.
        detail: String,
    },

    /// A signed object (a manifest, the repository marker) failed the signature check.
    #[error(
        "refusing {} in {}: {}",
        one_line(key),
        one_line(repo),
        one_line(detail)
    )]
    Untrusted {
        /// The object's key (`backups/<id>/manifest.json`, `ecobackup.json`).
        key: String,
        /// The repository URL.
        repo: String,
        /// What is wrong and what to do ([`crate::crypto::SignatureFault`]).
        detail: String,
    },

    /// A trusted-signer string is not an ecobackup public signing key.
    #[error("invalid trusted signer {value:?}: expected a public signing key (ecosign1…), {}", remedy!(
        cli: "as printed by `ecobackup key generate --signing`",
        library: "as `ecobackup key generate` prints it for a signing key",
    ))]
    InvalidSigner {
        /// The offending text (public, safe to show).
        value: String,
    },

    /// A PostgreSQL program (or its binaries) could not be found.
    #[error("{} for PostgreSQL {major} not found (looked in {}); install {}, {}", one_line(program), one_line(looked_in), what_to_install(program, *major), remedy!(
        cli: "set ECOBACKUP_PG_BIN_{major}=DIR or give --pg-bin DIR",
        library: "or give the operation its bin directory (pg_bin), or set ECOBACKUP_PG_BIN_{major}=DIR",
    ))]
    BinaryNotFound {
        /// The program (`pg_dump`, `initdb`, …).
        program: String,
        /// The major version wanted.
        major: u32,
        /// Where we looked.
        looked_in: String,
    },

    /// A PostgreSQL operation (connection, query) failed.
    #[error("{}: {}", one_line(context), one_line(detail))]
    Postgres {
        /// What was being done, naming the database (never its password).
        context: String,
        /// What PostgreSQL said, and what to do.
        detail: String,
    },

    /// A child process (pg_dump, pg_restore, initdb, …) failed.
    #[error(
        "{} failed ({}): {}",
        one_line(program),
        one_line(status),
        one_line(detail)
    )]
    Process {
        /// The program.
        program: String,
        /// How it ended (`exit status 1`, `killed by SIGKILL`).
        status: String,
        /// Its last line of stderr, or what to do.
        detail: String,
    },

    /// An artifact's bytes do not match its manifest entry.
    #[error("{} does not match its manifest: {}; it was altered or replaced after the backup, restore from another backup", one_line(artifact), one_line(detail))]
    ArtifactMismatch {
        /// The artifact's key.
        artifact: String,
        /// Which digest or size differs.
        detail: String,
    },

    /// `verify` found damaged artifacts.
    #[error(
        "verify failed: {count} damaged artifact(s), the first is {}: {}",
        one_line(first),
        one_line(reason)
    )]
    VerifyFailed {
        /// How many artifacts are damaged.
        count: usize,
        /// `<backup id>/<artifact>` of the first.
        first: String,
        /// Its error.
        reason: String,
    },

    /// A restore drill did not pass.
    #[error("drill of backup {} failed: {}", one_line(backup), one_line(reason))]
    DrillFailed {
        /// The backup drilled.
        backup: String,
        /// What failed.
        reason: String,
    },

    /// A WAL file was refused, or failed a check (`wal-push`, `wal-fetch`, `verify --wal`).
    #[error("{}: {}", one_line(file), one_line(detail))]
    Wal {
        /// What was being done to which file (`wal-push 000000010000000000000003`).
        file: String,
        /// What is wrong and what to do.
        detail: String,
    },

    /// A backup written to several repositories at once that too few of them took.
    #[error(
        "only {held} of {total} backup targets could take {}, {required} required: {}",
        one_line(what),
        one_line(detail)
    )]
    TooFewTargets {
        /// What could not be stored (an artifact, the manifest, the backup).
        what: String,
        /// Targets that took it.
        held: usize,
        /// Targets of the backup.
        total: usize,
        /// Targets that must take it (`--min-targets`).
        required: usize,
        /// Each failed target and why.
        detail: String,
    },

    /// The operation was cancelled before it finished (nothing was committed).
    #[error("cancelled: {}; nothing was committed", one_line(.0))]
    Cancelled(String),
}

/// Shows `value` on one line: every run of whitespace (line breaks, tabs, repeated spaces)
/// becomes one space, and whitespace at either end is dropped. Used by every message of
/// [`Error`] for each value it did not write itself.
pub fn one_line<T: fmt::Display + ?Sized>(value: &T) -> OneLine<'_, T> {
    OneLine(value)
}

/// The package that brings `program` of PostgreSQL `major`: the server's for the server programs
/// (`initdb`, `pg_ctl`, `postgres`), else the client's.
fn what_to_install(program: &str, major: u32) -> String {
    let server = ["initdb", "pg_ctl", "postgres"]
        .iter()
        .any(|p| program.split_whitespace().any(|word| word == *p));
    if server {
        format!("the PostgreSQL {major} server (Debian: apt-get install postgresql-{major})")
    } else {
        format!("the PostgreSQL {major} client (Debian: apt-get install postgresql-client-{major})")
    }
}

/// A value shown on one line; see [`one_line`].
pub struct OneLine<'a, T: ?Sized>(&'a T);

impl<T: fmt::Display + ?Sized> fmt::Display for OneLine<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write as _;
        let mut folding = Folding {
            out: f,
            started: false,
            pending_space: false,
        };
        write!(folding, "{}", self.0)
    }
}

/// Writes through to `out`, folding whitespace as [`one_line`] describes.
struct Folding<'a, 'b> {
    out: &'a mut fmt::Formatter<'b>,
    /// Whether anything but whitespace was written yet.
    started: bool,
    /// Whitespace seen since the last visible character: one space, if more text follows.
    pending_space: bool,
}

impl fmt::Write for Folding<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for piece in text.split_inclusive(char::is_whitespace) {
            let (word, ends_in_space) = match piece.strip_suffix(char::is_whitespace) {
                Some(word) => (word, true),
                None => (piece, false),
            };
            if !word.is_empty() {
                if self.pending_space && self.started {
                    self.out.write_char(' ')?;
                }
                self.out.write_str(word)?;
                self.started = true;
                self.pending_space = false;
            }
            self.pending_space |= ends_in_space;
        }
        Ok(())
    }
}

fn describe_recipients(expected: &[String]) -> String {
    match expected {
        [] => "recipients that are not in your keyring".to_owned(),
        _ => expected.join(", "),
    }
}

fn describe_keyring(keyring: &[String]) -> String {
    match keyring {
        [] => String::new(),
        _ => format!(" (it holds the keys of {})", keyring.join(", ")),
    }
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Adds context to I/O results: `file.read(..).context("reading x")?`.
pub trait IoContext<T> {
    /// Converts an I/O error into [`Error::Io`] with the given context.
    fn context(self, context: impl Into<String>) -> Result<T>;
    /// Like [`IoContext::context`], with the context built only on error.
    fn with_context<S: Into<String>>(self, context: impl FnOnce() -> S) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| Error::io(context, e))
    }
    fn with_context<S: Into<String>>(self, context: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}

#[cfg(test)]
mod tests;
