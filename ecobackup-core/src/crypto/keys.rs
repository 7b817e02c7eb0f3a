use std::fs;
use std::io::{BufRead, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};
use age::x25519;
use sha2::Digest as _;

use crate::error::{Error, IoContext, Result};

/// The first line of every age v1 file, used to recognise passphrase-protected identity files.
const AGE_HEADER: &[u8] = b"age-encryption.org/v1";

/// Parses one age X25519 recipient (`age1…`).
pub fn parse_recipient(value: &str) -> Result<x25519::Recipient> {
    x25519::Recipient::from_str(value.trim()).map_err(|_| Error::InvalidRecipient {
        value: value.trim().to_owned(),
    })
}

/// Parses recipients given as a list whose items may themselves be comma-separated
/// (`ECOBACKUP_RECIPIENTS=age1…,age1…`). Empty items are ignored.
pub fn parse_recipients<S: AsRef<str>>(values: &[S]) -> Result<Vec<x25519::Recipient>> {
    values
        .iter()
        .flat_map(|v| v.as_ref().split(','))
        .filter(|v| !v.trim().is_empty())
        .map(parse_recipient)
        .collect()
}

/// A short, stable fingerprint of a recipient for manifests and `ecobackup.json`:
/// `sha256:` and the first 16 hex digits of the SHA-256 of its `age1…` form.
pub fn fingerprint(recipient: &x25519::Recipient) -> String {
    let digest = sha2::Sha256::digest(recipient.to_string().as_bytes());
    format!("sha256:{}", hex::encode(&digest[..8]))
}

/// A new X25519 identity and its recipient.
pub fn generate_identity() -> (x25519::Identity, x25519::Recipient) {
    let identity = x25519::Identity::generate();
    let recipient = identity.to_public();
    (identity, recipient)
}

/// Writes an identity file in age-keygen's format, created with mode 0600 and never over an
/// existing file. With a passphrase, the file is itself an age file encrypted with it (scrypt),
/// exactly as `age -p` writes one, so `age -d -i` can use it too.
pub fn write_identity_file(
    path: &Path,
    identity: &x25519::Identity,
    passphrase: Option<&SecretString>,
) -> Result<()> {
    let recipient = identity.to_public();
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let text = format!(
        "# created: {created}\n# public key: {recipient}\n{}\n",
        identity.to_string().expose_secret()
    );
    let content = match passphrase {
        None => text.into_bytes(),
        Some(passphrase) => {
            let encryptor = age::Encryptor::with_user_passphrase(passphrase.clone());
            let mut out = Vec::new();
            let mut writer = encryptor
                .wrap_output(&mut out)
                .context("encrypting the identity")?;
            writer
                .write_all(text.as_bytes())
                .and_then(|()| writer.finish().map(drop))
                .context("encrypting the identity")?;
            out
        }
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::AlreadyExists {
                path: path.to_owned(),
            },
            _ => Error::io(format!("creating {}", path.display()), e),
        })?;
    file.write_all(&content)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// The identities that may decrypt artifacts: every X25519 identity of every identity file
/// given. Several files make key rotation painless: old and new keys side by side.
pub struct Keyring {
    entries: Vec<(x25519::Identity, PathBuf)>,
}

impl Keyring {
    /// A keyring holding the given identities (for library users who keep keys elsewhere).
    pub fn from_identities(identities: Vec<x25519::Identity>) -> Self {
        Keyring {
            entries: identities
                .into_iter()
                .map(|i| (i, PathBuf::from("<memory>")))
                .collect(),
        }
    }

    /// Loads identity files. Each must be readable by its owner only (mode 0600 or stricter).
    /// A passphrase-protected file (an age file encrypted with a passphrase) needs `passphrase`.
    pub fn from_files<P: AsRef<Path>>(
        paths: &[P],
        passphrase: Option<&SecretString>,
    ) -> Result<Self> {
        let mut entries = Vec::new();
        for path in paths {
            let path = path.as_ref();
            for identity in load_identity_file(path, passphrase)? {
                entries.push((identity, path.to_owned()));
            }
        }
        if entries.is_empty() {
            return Err(Error::NoIdentities);
        }
        Ok(Keyring { entries })
    }

    /// How many identities the keyring holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the keyring holds no identity.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The public recipients matching the keyring's identities.
    pub fn recipients(&self) -> Vec<x25519::Recipient> {
        self.entries.iter().map(|(i, _)| i.to_public()).collect()
    }

    /// The identities, in the form age's decryptor takes.
    pub fn identities(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.entries.iter().map(|(i, _)| i as &dyn age::Identity)
    }
}

/// Reads a secret (a passphrase) from a file readable by its owner only; one trailing newline
/// is dropped, as editors and `echo` add one.
pub fn read_secret_file(path: &Path) -> Result<SecretString> {
    let raw = read_private_file(path, "secret file")?;
    let text = String::from_utf8(raw).map_err(|_| Error::InvalidKeyFile {
        path: path.to_owned(),
        detail: "not UTF-8 text".into(),
    })?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    Ok(SecretString::from(text.to_owned()))
}

/// Reads a file after checking that neither group nor others can read it.
fn read_private_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    let meta = fs::metadata(path).with_context(|| format!("reading {what} {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::InsecureKeyFile {
            path: path.to_owned(),
            mode,
        });
    }
    fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

fn load_identity_file(
    path: &Path,
    passphrase: Option<&SecretString>,
) -> Result<Vec<x25519::Identity>> {
    let raw = read_private_file(path, "identity file")?;
    let text = if raw.starts_with(AGE_HEADER) {
        decrypt_identity_file(path, &raw, passphrase)?
    } else {
        raw
    };
    parse_identities(path, &text)
}

fn decrypt_identity_file(
    path: &Path,
    raw: &[u8],
    passphrase: Option<&SecretString>,
) -> Result<Vec<u8>> {
    let passphrase = passphrase.ok_or_else(|| Error::PassphraseRequired {
        path: path.to_owned(),
    })?;
    let invalid = |detail: String| Error::InvalidKeyFile {
        path: path.to_owned(),
        detail,
    };
    let decryptor = age::Decryptor::new_buffered(raw)
        .map_err(|e| invalid(format!("not a valid age file: {e}")))?;
    if !decryptor.is_scrypt() {
        return Err(invalid(
            "it is age-encrypted to a key, not a passphrase; decrypt it first with age -d".into(),
        ));
    }
    let identity = age::scrypt::Identity::new(passphrase.clone());
    let mut reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::ExcessiveWork { .. } => invalid(format!("{e}")),
            _ => Error::WrongPassphrase {
                path: path.to_owned(),
            },
        })?;
    let mut text = Vec::new();
    reader
        .read_to_end(&mut text)
        .map_err(|_| invalid("the encrypted identity is damaged".into()))?;
    Ok(text)
}

fn parse_identities(path: &Path, text: &[u8]) -> Result<Vec<x25519::Identity>> {
    let mut identities = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.map_err(|_| Error::InvalidKeyFile {
            path: path.to_owned(),
            detail: "not UTF-8 text".into(),
        })?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // Never echo the line: it may hold a secret key.
        let identity = x25519::Identity::from_str(line).map_err(|_| Error::InvalidKeyFile {
            path: path.to_owned(),
            detail: format!(
                "line {} is not an age X25519 identity (AGE-SECRET-KEY-1…); plugin and SSH identities are not supported",
                n + 1
            ),
        })?;
        identities.push(identity);
    }
    if identities.is_empty() {
        return Err(Error::InvalidKeyFile {
            path: path.to_owned(),
            detail: "it holds no identity (AGE-SECRET-KEY-1…)".into(),
        });
    }
    Ok(identities)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_split_on_commas_and_reject_junk() {
        let (_, r1) = generate_identity();
        let (_, r2) = generate_identity();
        let list = format!("{r1}, {r2},");
        assert_eq!(parse_recipients(&[list]).unwrap().len(), 2);
        let err = parse_recipients(&["age1nope"]).unwrap_err().to_string();
        assert!(err.contains("invalid recipient \"age1nope\""), "{err}");
    }

    #[test]
    fn fingerprint_is_stable_and_short() {
        let (_, r) = generate_identity();
        let f = fingerprint(&r);
        assert_eq!(f, fingerprint(&r));
        assert_eq!(f.len(), "sha256:".len() + 16);
    }
}
