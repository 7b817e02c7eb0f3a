//! What kind of failure an [`Error`] is, for a caller that decides by kind (retry, alert,
//! page someone) rather than by message.

use super::Error;

/// The broad kind of an [`Error`]: what a caller can do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Settings that cannot work: a bad URL, no recipients, an invalid key file, a missing
    /// program. Retrying the same call fails the same way.
    Configuration,
    /// A key or credential was refused: the wrong identity, a wrong passphrase, storage
    /// access denied, an untrusted signature.
    Auth,
    /// What was asked for does not exist: a backup, an object, a repository, a bucket.
    NotFound,
    /// Stored bytes are not what was written: tampered, truncated, not matching the manifest.
    /// Never retry: restore from another copy.
    Integrity,
    /// A service could not be reached or gave up after its own retries (storage, the
    /// network). Retrying later may succeed.
    Unavailable,
    /// Another process holds the repository lock. Retrying later may succeed.
    Busy,
    /// The caller cancelled the operation.
    Cancelled,
    /// PostgreSQL or one of its programs failed (a query, pg_dump, pg_restore, recovery).
    Database,
    /// A local file or device failed (disk full, permission denied).
    Io,
    /// A check the caller asked for did not pass (verify, drill), or anything else.
    Other,
}

/// What went wrong with an object store request, as far as it can be told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StorageFault {
    /// The endpoint could not be reached, timed out, or failed after every retry.
    Unavailable,
    /// The credentials or the bucket policy refused the request.
    AccessDenied,
    /// The bucket does not exist.
    NoBucket,
    /// Anything else: a store that does not behave as S3 must, an artifact that outgrew it.
    Other,
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        use ErrorKind as K;
        match self {
            Error::Io { .. } => K::Io,
            Error::WrongKey { .. }
            | Error::WrongPassphrase { .. }
            | Error::PassphraseRequired { .. }
            | Error::Untrusted { .. } => K::Auth,
            Error::NotEncrypted { .. }
            | Error::Tampered { .. }
            | Error::Truncated { .. }
            | Error::Decompress { .. }
            | Error::ArtifactMismatch { .. }
            | Error::BadManifest { .. } => K::Integrity,
            Error::Compress { .. }
            | Error::Encrypt { .. }
            | Error::StageVanished { .. }
            | Error::Refused { .. }
            | Error::AlreadyExists { .. }
            | Error::VerifyFailed { .. }
            | Error::DrillFailed { .. }
            | Error::Wal { .. } => K::Other,
            Error::InvalidRecipient { .. }
            | Error::NoRecipients
            | Error::NoIdentities
            | Error::InsecureKeyFile { .. }
            | Error::InvalidKeyFile { .. }
            | Error::Config { .. }
            | Error::ConfigFile { .. }
            | Error::InvalidUrl { .. }
            | Error::InvalidSigner { .. }
            | Error::BinaryNotFound { .. }
            | Error::RefusedInit { .. }
            | Error::IncompatibleRepository { .. } => K::Configuration,
            Error::Storage { fault, .. } => match fault {
                StorageFault::Unavailable => K::Unavailable,
                StorageFault::AccessDenied => K::Auth,
                StorageFault::NoBucket => K::NotFound,
                StorageFault::Other => K::Other,
            },
            Error::NotFound { .. }
            | Error::NotARepository { .. }
            | Error::BackupNotFound { .. } => K::NotFound,
            Error::Locked { .. } => K::Busy,
            Error::Postgres { .. } | Error::Process { .. } => K::Database,
            // Some targets failed: each one's own error said why; storage is the usual cause.
            Error::TooFewTargets { .. } => K::Unavailable,
            Error::Cancelled(_) => K::Cancelled,
        }
    }

    /// Whether the same call may succeed if made again later, unchanged: storage that was
    /// unreachable, a repository another process had locked. A backup that failed this way
    /// left nothing behind (no manifest), so retrying it is safe.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind(), ErrorKind::Unavailable | ErrorKind::Busy)
    }
}
