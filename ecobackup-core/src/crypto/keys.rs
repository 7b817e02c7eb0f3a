use std::fs;
use std::io::{BufRead, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};
use age::x25519;
use sha2::Digest as _;

use crate::error::{Error, IoContext, Result};
use crate::storage::write_private_file;

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

/// Writes an identity file in age-keygen's format, mode 0600, through a temporary file in the
/// same directory and a rename (never a half-written key), and never over an existing file.
/// With a passphrase, the file is itself an age file encrypted with it (scrypt), exactly as
/// `age -p` writes one, so `age -d -i` can use it too.
pub fn write_identity_file(
    path: &Path,
    identity: &x25519::Identity,
    passphrase: Option<&SecretString>,
) -> Result<()> {
    write_private_file(path, &identity_file_content(identity, passphrase)?, false)
}

/// Like [`write_identity_file`], but replaces an existing file (`key generate --force`).
pub fn replace_identity_file(
    path: &Path,
    identity: &x25519::Identity,
    passphrase: Option<&SecretString>,
) -> Result<()> {
    write_private_file(path, &identity_file_content(identity, passphrase)?, true)
}

fn identity_file_content(
    identity: &x25519::Identity,
    passphrase: Option<&SecretString>,
) -> Result<Vec<u8>> {
    let recipient = identity.to_public();
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let text = format!(
        "# created: {created}\n# public key: {recipient}\n{}\n",
        identity.to_string().expose_secret()
    );
    Ok(match passphrase {
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
    })
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

    /// Loads identity files on a blocking thread: a passphrase-protected file costs about a
    /// second of scrypt, which must not stall the async runtime. See [`Keyring::from_files`].
    pub async fn load(paths: Vec<PathBuf>, passphrase: Option<SecretString>) -> Result<Self> {
        tokio::task::spawn_blocking(move || Keyring::from_files(&paths, passphrase.as_ref()))
            .await
            .map_err(|e| Error::io("loading the identity files", std::io::Error::other(e)))?
    }

    /// Loads identity files (blocking; async callers use [`Keyring::load`]). Each must be a
    /// regular file owned by this user or root and readable by its owner only (mode 0600 or
    /// stricter). A passphrase-protected file (an age file encrypted with a passphrase) needs
    /// `passphrase`.
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

/// Opens a file once and checks the opened file itself (not its path, which could be swapped
/// between a check and a read): a regular file, owned by this user or root, that neither
/// group nor others can read. Then reads it through the same handle.
pub(crate) fn read_private_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    let context = || format!("reading {what} {}", path.display());
    let mut file = fs::File::open(path).with_context(context)?;
    let meta = file.metadata().with_context(context)?;
    if !meta.is_file() {
        return Err(Error::InvalidKeyFile {
            path: path.to_owned(),
            detail: "not a regular file".into(),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::InsecureKeyFile {
            path: path.to_owned(),
            mode,
        });
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(Error::InvalidKeyFile {
            path: path.to_owned(),
            detail: format!(
                "it is owned by user id {}, not by this user ({me}) or root: another user could have replaced it; `chown` it to the user that runs ecobackup",
                meta.uid()
            ),
        });
    }
    let mut raw = Vec::new();
    file.read_to_end(&mut raw).with_context(context)?;
    Ok(raw)
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
            // The scrypt stanza's AEAD failed: the passphrase is not the one it was made with.
            age::DecryptError::DecryptionFailed
            | age::DecryptError::KeyDecryptionFailed
            | age::DecryptError::NoMatchingKeys => Error::WrongPassphrase {
                path: path.to_owned(),
            },
            age::DecryptError::ExcessiveWork { .. } => invalid(format!("{e}")),
            age::DecryptError::InvalidMac | age::DecryptError::InvalidHeader => invalid(format!(
                "the file is damaged ({e}): the passphrase was not the problem; restore the key file from its backup copy"
            )),
            other => invalid(format!("it could not be decrypted ({other})")),
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
