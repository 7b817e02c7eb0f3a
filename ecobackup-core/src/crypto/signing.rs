//! Signatures over what restore trusts: every backup's `manifest.json` and the repository
//! marker `ecobackup.json`.
//!
//! Backup hosts hold an Ed25519 signing key (a file like an age identity file); the restore
//! side pins the public halves (`ecosign1…`) of the keys it trusts. Each signed object `K` gets a
//! detached signature object `K.sig`, written before `K`, over the message
//!
//! ```text
//! "ecobackup-signature-v1\n" || K || "\n" || the exact bytes of K
//! ```
//!
//! so a signature authenticates both the content and the place: a signed manifest copied into
//! another backup's folder does not verify there. FORMAT.md describes the format and the threat
//! model.

use crate::error::remedy;
use std::path::Path;
use std::str::FromStr;

use bech32::{Bech32, Hrp};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::keys::read_private_file;
use crate::error::{Error, Result};
use crate::storage::write_private_file;

/// The `format` of every signature object, and the first line of every signed message.
pub const SIGNATURE_FORMAT: &str = "ecobackup-signature-v1";
/// The suffix of a signature object's key: `backups/<id>/manifest.json.sig`.
pub const SIGNATURE_SUFFIX: &str = ".sig";
/// The human-readable part of a public signing key (`ecosign1…`).
const PUBLIC_HRP: &str = "ecosign";
/// The human-readable part of a secret signing key (`ECOSIGN-SECRET-KEY-1…`).
const SECRET_HRP: &str = "ECOSIGN-SECRET-KEY-";

/// The message a signature covers: the format, the object's key and its exact bytes.
pub fn signed_message(key: &str, bytes: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNATURE_FORMAT.len() + key.len() + bytes.len() + 2);
    message.extend_from_slice(SIGNATURE_FORMAT.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(key.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(bytes);
    message
}

/// The public half of a signing key, as pinned on the restore side (`ecosign1…`, bech32).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SignerKey(VerifyingKey);

impl SignerKey {
    /// The raw 32-byte Ed25519 public key.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }
}

impl std::fmt::Display for SignerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hrp = Hrp::parse_unchecked(PUBLIC_HRP);
        let text =
            bech32::encode_lower::<Bech32>(hrp, self.0.as_bytes()).map_err(|_| std::fmt::Error)?;
        f.write_str(&text)
    }
}

impl std::fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignerKey({self})")
    }
}

impl FromStr for SignerKey {
    type Err = Error;
    fn from_str(value: &str) -> Result<Self> {
        let value = value.trim();
        let invalid = || Error::InvalidSigner {
            value: value.to_owned(),
        };
        let (hrp, data) = bech32::decode(value).map_err(|_| invalid())?;
        if hrp.to_lowercase() != PUBLIC_HRP {
            return Err(invalid());
        }
        let bytes: [u8; 32] = data.try_into().map_err(|_| invalid())?;
        VerifyingKey::from_bytes(&bytes)
            .map(SignerKey)
            .map_err(|_| invalid())
    }
}

/// Parses trusted signers given as a list whose items may themselves be comma-separated
/// (`ECOBACKUP_TRUSTED_SIGNERS=ecosign1…,ecosign1…`). Empty items are ignored.
pub fn parse_signers<S: AsRef<str>>(values: &[S]) -> Result<Vec<SignerKey>> {
    values
        .iter()
        .flat_map(|v| v.as_ref().split(','))
        .filter(|v| !v.trim().is_empty())
        .map(SignerKey::from_str)
        .collect()
}

/// A backup host's signing key. Its `Debug` shows only the public half.
pub struct Signer {
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.public_key())
    }
}

/// A detached signature object (`K.sig`), as stored.
#[derive(Debug, Serialize, Deserialize)]
struct SignatureObject {
    format: String,
    /// The signer's public key (`ecosign1…`).
    signer: String,
    /// The key the object was signed for (informational: the check uses where it is found).
    object: String,
    /// The 64-byte Ed25519 signature, lowercase hex.
    signature: String,
}

impl Signer {
    /// A new random signing key.
    pub fn generate() -> Signer {
        let seed: [u8; 32] = rand::random();
        Signer {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// Its public half, to pin on the restore side.
    pub fn public_key(&self) -> SignerKey {
        SignerKey(self.key.verifying_key())
    }

    /// The signature object for the object `key` holding `bytes`.
    pub fn sign(&self, key: &str, bytes: &[u8]) -> Vec<u8> {
        let signature = self.key.sign(&signed_message(key, bytes));
        let object = SignatureObject {
            format: SIGNATURE_FORMAT.to_owned(),
            signer: self.public_key().to_string(),
            object: key.to_owned(),
            signature: hex::encode(signature.to_bytes()),
        };
        let mut text = serde_json::to_vec_pretty(&object).unwrap_or_default();
        text.push(b'\n');
        text
    }

    /// Loads a signing key file. Like identity files it must be a regular file owned by this
    /// user (or root) that neither group nor others can read.
    pub fn from_file(path: &Path) -> Result<Signer> {
        let raw = read_private_file(path, "signing key file")?;
        let invalid = |detail: &str| Error::InvalidKeyFile {
            path: path.to_owned(),
            detail: detail.to_owned(),
        };
        let text = std::str::from_utf8(&raw).map_err(|_| invalid("not UTF-8 text"))?;
        let mut found = None;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if found.is_some() {
                return Err(invalid("it holds more than one signing key"));
            }
            // Never echo the line: it is a secret.
            let (hrp, data) = bech32::decode(line)
                .map_err(|_| invalid("it holds no signing key (ECOSIGN-SECRET-KEY-1…)"))?;
            if hrp.to_lowercase() != SECRET_HRP.to_lowercase() {
                return Err(invalid("it holds no signing key (ECOSIGN-SECRET-KEY-1…); an age identity file is not a signing key"));
            }
            let seed: [u8; 32] = data
                .try_into()
                .map_err(|_| invalid("the signing key has the wrong length"))?;
            found = Some(Signer {
                key: SigningKey::from_bytes(&seed),
            });
        }
        found.ok_or_else(|| invalid("it holds no signing key (ECOSIGN-SECRET-KEY-1…)"))
    }

    /// Writes the key file (mode 0600, through a temporary file and a rename); an existing
    /// file is replaced only with `overwrite`.
    pub fn write_file(&self, path: &Path, overwrite: bool) -> Result<()> {
        let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let hrp = Hrp::parse_unchecked(SECRET_HRP);
        let secret = bech32::encode_upper::<Bech32>(hrp, self.key.as_bytes())
            .map_err(|e| Error::io("encoding the signing key", std::io::Error::other(e)))?;
        let text = format!(
            "# ecobackup signing key: keep it on the backup hosts only\n# created: {created}\n# public key: {}\n{secret}\n",
            self.public_key()
        );
        write_private_file(path, text.as_bytes(), overwrite)
    }
}

/// Which signers the restore side trusts, and whether it accepts unsigned objects (only for
/// repositories written before signing was set up).
#[derive(Clone, Debug, Default)]
pub struct TrustedSigners {
    keys: Vec<SignerKey>,
    allow_unsigned: bool,
}

/// Why a signed object is not trusted. Each renders as what is wrong and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureFault {
    /// There is no signature object.
    Missing,
    /// The signature object cannot be read.
    Malformed(String),
    /// It is signed, but by a key that is not trusted.
    UntrustedSigner(String),
    /// It was signed for another key: a signed object copied elsewhere.
    WrongPlace(String),
    /// The signature does not match the bytes.
    Invalid,
}

impl std::fmt::Display for SignatureFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureFault::Missing => f.write_str(&remedy!(
                cli: "it has no signature, so anyone who can write to the repository could have put it there; use a signed backup, or give --allow-unsigned (allow_unsigned = true) only for a repository written without a signing key",
                library: "it has no signature, so anyone who can write to the repository could have put it there; use a signed backup, or set allow_unsigned = true only for a repository written without a signing key",
            )),
            SignatureFault::Malformed(detail) => write!(
                f,
                "its signature object is unreadable ({detail}); do not trust it, use another backup"
            ),
            SignatureFault::UntrustedSigner(signer) => write!(
                f,
                "it is signed by {signer}, which is not a trusted signer; add that key to [encryption] trusted_signers \
                 (ECOBACKUP_TRUSTED_SIGNERS) only if it is one of your backup hosts' keys"
            ),
            SignatureFault::WrongPlace(signed_for) => write!(
                f,
                "its signature was made for {signed_for}: a signed object copied to another place; do not restore it"
            ),
            SignatureFault::Invalid => f.write_str(
                "its signature does not match its content: it was changed after it was signed; do not restore it, use another backup",
            ),
        }
    }
}

/// How an object passed the check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authenticity {
    /// Signed by this trusted signer.
    Signed(SignerKey),
    /// Not checked: unsigned (or no signer to check against), accepted because unsigned
    /// objects are allowed.
    UnsignedAllowed,
}

impl TrustedSigners {
    /// Trust these signers' keys.
    pub fn new(keys: Vec<SignerKey>) -> TrustedSigners {
        TrustedSigners {
            keys,
            allow_unsigned: false,
        }
    }

    /// Also accept objects without a signature (repositories written without a signing key).
    /// Signed objects are still checked whenever trusted signers are given.
    pub fn allowing_unsigned(mut self, allow: bool) -> TrustedSigners {
        self.allow_unsigned = allow;
        self
    }

    /// The trusted keys.
    pub fn keys(&self) -> &[SignerKey] {
        &self.keys
    }

    /// True when unsigned objects are accepted.
    pub fn allows_unsigned(&self) -> bool {
        self.allow_unsigned
    }

    /// Checks the object `key` holding `bytes` against its signature object, if any.
    pub fn check(
        &self,
        key: &str,
        bytes: &[u8],
        signature: Option<&[u8]>,
    ) -> std::result::Result<Authenticity, SignatureFault> {
        let Some(signature) = signature else {
            return if self.allow_unsigned {
                Ok(Authenticity::UnsignedAllowed)
            } else {
                Err(SignatureFault::Missing)
            };
        };
        if self.keys.is_empty() && self.allow_unsigned {
            return Ok(Authenticity::UnsignedAllowed);
        }
        let object: SignatureObject = serde_json::from_slice(signature)
            .map_err(|e| SignatureFault::Malformed(e.to_string()))?;
        if object.format != SIGNATURE_FORMAT {
            return Err(SignatureFault::Malformed(format!(
                "format {:?}, expected {SIGNATURE_FORMAT:?}",
                object.format
            )));
        }
        let signer = SignerKey::from_str(&object.signer)
            .map_err(|_| SignatureFault::Malformed("the signer is not an ecosign1… key".into()))?;
        if !self.keys.contains(&signer) {
            return Err(SignatureFault::UntrustedSigner(signer.to_string()));
        }
        let raw: [u8; 64] = hex::decode(&object.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                SignatureFault::Malformed("the signature is not 64 bytes of hex".into())
            })?;
        let signature = Signature::from_bytes(&raw);
        if signer
            .0
            .verify_strict(&signed_message(key, bytes), &signature)
            .is_ok()
        {
            return Ok(Authenticity::Signed(signer));
        }
        if object.object != key {
            return Err(SignatureFault::WrongPlace(object.object));
        }
        Err(SignatureFault::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_text_forms() {
        let signer = Signer::generate();
        let public = signer.public_key().to_string();
        assert!(public.starts_with("ecosign1"), "{public}");
        assert_eq!(SignerKey::from_str(&public).unwrap(), signer.public_key());
        assert_eq!(
            SignerKey::from_str(&public.to_uppercase()).unwrap(),
            signer.public_key()
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        signer.write_file(&path, false).unwrap();
        let loaded = Signer::from_file(&path).unwrap();
        assert_eq!(loaded.public_key(), signer.public_key());
        assert!(parse_signers(&["ecosign1nope"]).is_err());
        assert!(
            parse_signers(&["age1zvf8qwh2ml0chfuu0w5fnx2u6vgxhf9vtvtxuj4qqs9axe4ez30ssflg32"])
                .is_err()
        );
    }

    #[test]
    fn a_signature_binds_content_place_and_signer() {
        let signer = Signer::generate();
        let other = Signer::generate();
        let trust = TrustedSigners::new(vec![signer.public_key()]);
        let key = "backups/a/manifest.json";
        let sig = signer.sign(key, b"{}");
        assert_eq!(
            trust.check(key, b"{}", Some(&sig)),
            Ok(Authenticity::Signed(signer.public_key()))
        );
        assert_eq!(
            trust.check(key, b"{ }", Some(&sig)),
            Err(SignatureFault::Invalid)
        );
        assert_eq!(
            trust.check("backups/b/manifest.json", b"{}", Some(&sig)),
            Err(SignatureFault::WrongPlace(key.to_owned()))
        );
        assert_eq!(trust.check(key, b"{}", None), Err(SignatureFault::Missing));
        assert!(matches!(
            trust.check(key, b"{}", Some(&other.sign(key, b"{}"))),
            Err(SignatureFault::UntrustedSigner(_))
        ));
        let lenient = trust.clone().allowing_unsigned(true);
        assert_eq!(
            lenient.check(key, b"{}", None),
            Ok(Authenticity::UnsignedAllowed)
        );
        assert_eq!(
            lenient.check(key, b"{ }", Some(&sig)),
            Err(SignatureFault::Invalid)
        );
    }
}
