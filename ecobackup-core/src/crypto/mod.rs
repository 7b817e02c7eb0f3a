//! Keys: age X25519 recipients (public, enough to back up) and identities (private, needed to
//! restore), identity files with permission checks and optional passphrase protection, and the
//! Ed25519 signatures that authenticate manifests and the repository marker.

mod keys;
mod signing;

pub use keys::{
    fingerprint, generate_identity, parse_recipient, parse_recipients, read_secret_file,
    replace_identity_file, write_identity_file, Keyring,
};
pub use signing::{
    parse_signers, signed_message, Authenticity, SignatureFault, Signer, SignerKey, TrustedSigners,
    SIGNATURE_FORMAT, SIGNATURE_SUFFIX,
};

/// The age crate, re-exported so callers use the same recipient and identity types.
pub use age;

/// Re-exported so callers can hold passphrases without another dependency.
pub use age::secrecy::{ExposeSecret, SecretString};
