//! Errors that say what failed and what to do about it.
//!
//! Every variant renders as one line meant for an operator reading a cron mail at 3 a.m.:
//! first what failed, then what to do. Secrets (identities, passphrases) never appear in
//! an error, and neither does row data.

use std::path::PathBuf;

/// The result type of every fallible operation in ecobackup.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, with enough context to act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed; `context` says which one.
    #[error("{context}: {source}")]
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
        describe_recipients(.expected),
        if *.identities == 1 { "identity" } else { "identities" },
        describe_keyring(.keyring)
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
    #[error("not an age-encrypted artifact ({detail}); check that you are reading an ecobackup artifact (*.age), or use --raw / --no-encryption for plaintext")]
    NotEncrypted {
        /// What the parser found wrong.
        detail: String,
    },

    /// The ciphertext failed authentication: a byte was changed, or the file was cut or extended.
    #[error("artifact failed authentication ({detail}): it is corrupt, truncated or was tampered with; restore from another copy or an older backup")]
    Tampered {
        /// What the decryptor reported.
        detail: String,
    },

    /// The ciphertext ended before its final authenticated chunk.
    #[error("artifact is truncated ({detail}): the object ended before its last authenticated chunk; the upload or download was cut short, restore from another copy")]
    Truncated {
        /// What the decryptor reported.
        detail: String,
    },

    /// zstd could not decompress the (authenticated) plaintext.
    #[error("decompression failed: {detail}; the artifact decrypted but is not a complete zstd stream (written by another tool, or truncated before encryption)")]
    Decompress {
        /// What zstd reported.
        detail: String,
    },

    /// zstd could not compress (bad level, out of memory).
    #[error("compression failed: {detail}")]
    Compress {
        /// What zstd reported.
        detail: String,
    },

    /// Encryption could not be set up or written.
    #[error("encryption failed: {detail}")]
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
    #[error("no recipient configured: give -r age1…, ECOBACKUP_RECIPIENTS or [encryption] recipients in ecobackup.toml (or --no-encryption to store plaintext on purpose)")]
    NoRecipients,

    /// Decryption was asked for but no identity is configured.
    #[error("no identity configured: give -i FILE, ECOBACKUP_IDENTITY_FILE or [encryption] identity_files in ecobackup.toml")]
    NoIdentities,

    /// A key file is readable by group or others.
    #[error("{} has mode {mode:04o}, readable by others: run `chmod 600 {}` (ecobackup refuses key and secret files that other users can read)", path.display(), path.display())]
    InsecureKeyFile {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// A key file could not be parsed. The message never includes the file's content.
    #[error("key file {}: {detail}", path.display())]
    InvalidKeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong (line numbers, never content).
        detail: String,
    },

    /// The identity file is passphrase-protected and no passphrase was given.
    #[error("identity file {} is passphrase-protected: set ECOBACKUP_IDENTITY_PASSPHRASE_FILE to a file holding the passphrase (or ECOBACKUP_IDENTITY_PASSPHRASE)", path.display())]
    PassphraseRequired {
        /// The identity file.
        path: PathBuf,
    },

    /// The passphrase did not decrypt the identity file.
    #[error("wrong passphrase for identity file {}: check ECOBACKUP_IDENTITY_PASSPHRASE_FILE / ECOBACKUP_IDENTITY_PASSPHRASE", path.display())]
    WrongPassphrase {
        /// The identity file.
        path: PathBuf,
    },

    /// Refused to replace an existing file (keys are never overwritten).
    #[error("{} already exists: refusing to overwrite it; choose another path or move the old file away first", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },

    /// A pipeline stage stopped without finishing its output (it panicked or was cancelled).
    #[error("pipeline stage {stage:?} stopped before finishing its output; this is a bug in ecobackup, please report it with the log")]
    StageVanished {
        /// The stage's name.
        stage: String,
    },

    /// A repository URL could not be understood.
    #[error("invalid repository URL {url:?}: {detail}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        detail: String,
    },

    /// The object store refused or failed an operation (after retries).
    #[error("{op} {key} on {repo} failed: {detail}")]
    Storage {
        /// What was being done (`uploading`, `reading`, `listing`, …).
        op: &'static str,
        /// The object key.
        key: String,
        /// The repository URL.
        repo: String,
        /// What went wrong and what to do.
        detail: String,
    },

    /// An object that must exist does not.
    #[error("{key} does not exist in {repo}")]
    NotFound {
        /// The object key.
        key: String,
        /// The repository URL.
        repo: String,
    },

    /// The URL points at no ecobackup repository.
    #[error("no ecobackup repository at {repo}: run `ecobackup init` there first (or check --repo / ECOBACKUP_REPO)")]
    NotARepository {
        /// The repository URL.
        repo: String,
    },

    /// `init` over something that is not an empty place or a repository of this format.
    #[error("refusing to initialise {repo}: {detail}")]
    RefusedInit {
        /// The repository URL.
        repo: String,
        /// What is there already.
        detail: String,
    },

    /// The repository was written by an incompatible version.
    #[error("repository {repo} has format {found:?}, this ecobackup reads {expected:?}: use a matching ecobackup version")]
    IncompatibleRepository {
        /// The repository URL.
        repo: String,
        /// The format found.
        found: String,
        /// The format this version reads.
        expected: String,
    },

    /// Another process holds the lock.
    #[error("{scope} is locked by {holder}; wait for it to finish, or remove the lock object {key} if that process is gone (it expires at {expires_at})")]
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
    #[error("no backup {wanted} in {repo}; `ecobackup list` shows what there is")]
    BackupNotFound {
        /// The id (or `latest`) asked for.
        wanted: String,
        /// The repository URL.
        repo: String,
    },

    /// A manifest could not be parsed.
    #[error("manifest {key} is unreadable ({detail}); the backup cannot be trusted, run `ecobackup verify`")]
    BadManifest {
        /// The manifest's key.
        key: String,
        /// The parse error.
        detail: String,
    },

    /// A signed object (a manifest, the repository marker) failed the signature check.
    #[error("refusing {key} in {repo}: {detail}")]
    Untrusted {
        /// The object's key (`backups/<id>/manifest.json`, `ecobackup.json`).
        key: String,
        /// The repository URL.
        repo: String,
        /// What is wrong and what to do ([`crate::crypto::SignatureFault`]).
        detail: String,
    },

    /// A trusted-signer string is not an ecobackup public signing key.
    #[error("invalid trusted signer {value:?}: expected a public signing key (ecosign1…), as printed by `ecobackup key generate --signing`")]
    InvalidSigner {
        /// The offending text (public, safe to show).
        value: String,
    },

    /// A PostgreSQL program (or its binaries) could not be found.
    #[error("{program} for PostgreSQL {major} not found (looked in {looked_in}); install the PostgreSQL {major} client (Debian: apt-get install postgresql-client-{major}) or give --pg-bin DIR")]
    BinaryNotFound {
        /// The program (`pg_dump`, `initdb`, …).
        program: String,
        /// The major version wanted.
        major: u32,
        /// Where we looked.
        looked_in: String,
    },

    /// A PostgreSQL operation (connection, query) failed.
    #[error("{context}: {detail}")]
    Postgres {
        /// What was being done, naming the database (never its password).
        context: String,
        /// What PostgreSQL said, and what to do.
        detail: String,
    },

    /// A child process (pg_dump, pg_restore, initdb, …) failed.
    #[error("{program} failed ({status}): {detail}")]
    Process {
        /// The program.
        program: String,
        /// How it ended (`exit status 1`, `killed by SIGKILL`).
        status: String,
        /// Its last line of stderr, or what to do.
        detail: String,
    },

    /// An artifact's bytes do not match its manifest entry.
    #[error("{artifact} does not match its manifest: {detail}; it was altered or replaced after the backup, restore from another backup")]
    ArtifactMismatch {
        /// The artifact's key.
        artifact: String,
        /// Which digest or size differs.
        detail: String,
    },

    /// `verify` found damaged artifacts.
    #[error("verify failed: {count} damaged artifact(s), the first is {first}: {reason}")]
    VerifyFailed {
        /// How many artifacts are damaged.
        count: usize,
        /// `<backup id>/<artifact>` of the first.
        first: String,
        /// Its error.
        reason: String,
    },

    /// A restore drill did not pass.
    #[error("drill of backup {backup} failed: {reason}")]
    DrillFailed {
        /// The backup drilled.
        backup: String,
        /// What failed.
        reason: String,
    },

    /// The operation was cancelled before it finished (nothing was committed).
    #[error("cancelled: {0}; nothing was committed")]
    Cancelled(String),
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
