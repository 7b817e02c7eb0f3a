//! age v1 encryption to X25519 recipients, and decryption with a [`Keyring`].
//!
//! The output is a standard age file: `age -d -i key.txt` decrypts it. age authenticates every
//! 64 KiB chunk and marks the last one, so a flipped byte, a cut tail or an appended tail all
//! fail decryption; the stage fails and the pipeline aborts its sink.

use std::io::{self, BufRead, Read, Write};
use std::sync::Arc;

use age::x25519;

use crate::crypto::Keyring;
use crate::error::{Error, Result};
use crate::pipeline::{blocking_stage, ByteStream, StageMeter, Transform};

/// Encrypts to one or more recipients (for example an ops key and an offline recovery key).
pub struct Encrypt {
    recipients: Vec<x25519::Recipient>,
}

impl Encrypt {
    /// Encrypts to `recipients`; at least one is required.
    pub fn to(recipients: Vec<x25519::Recipient>) -> Result<Self> {
        if recipients.is_empty() {
            return Err(Error::NoRecipients);
        }
        Ok(Encrypt { recipients })
    }
}

impl Transform for Encrypt {
    fn name(&self) -> &'static str {
        "age-encrypt"
    }

    fn apply(self: Box<Self>, input: ByteStream, meter: StageMeter) -> ByteStream {
        blocking_stage(input, meter, move |reader, writer| {
            let failed = |e: io::Error| Error::Encrypt {
                detail: e.to_string(),
            };
            let encryptor = age::Encryptor::with_recipients(
                self.recipients.iter().map(|r| r as &dyn age::Recipient),
            )
            .map_err(|e| Error::Encrypt {
                detail: e.to_string(),
            })?;
            let mut stream = encryptor.wrap_output(writer).map_err(failed)?;
            while let Some(chunk) = reader.next_chunk().map_err(failed)? {
                stream.write_all(&chunk).map_err(failed)?;
            }
            stream.finish().map_err(failed)?;
            Ok(())
        })
    }
}

/// Decrypts with any identity of a keyring.
pub struct Decrypt {
    keyring: Arc<Keyring>,
    expected: Vec<String>,
}

impl Decrypt {
    /// Decrypts with the identities of `keyring`.
    pub fn with(keyring: Arc<Keyring>) -> Self {
        Decrypt {
            keyring,
            expected: Vec::new(),
        }
    }

    /// Names the recipients the artifact was encrypted to (from its manifest), so that a wrong
    /// key error can say which key is needed.
    pub fn expecting(mut self, recipients: Vec<String>) -> Self {
        self.expected = recipients;
        self
    }
}

impl Transform for Decrypt {
    fn name(&self) -> &'static str {
        "age-decrypt"
    }

    fn apply(self: Box<Self>, input: ByteStream, meter: StageMeter) -> ByteStream {
        blocking_stage(input, meter, move |reader, writer| {
            let mut plaintext = decrypt_reader(reader, &self.keyring)
                .map_err(|e| with_expected(e, &self.expected))?;
            let mut buffer = vec![0u8; 256 * 1024];
            loop {
                let n = plaintext.read(&mut buffer).map_err(stream_error)?;
                if n == 0 {
                    return Ok(());
                }
                writer
                    .write_all(&buffer[..n])
                    .map_err(|e| Error::io("handing plaintext to the next stage", e))?;
            }
        })
    }
}

fn with_expected(error: Error, expected: &[String]) -> Error {
    match error {
        Error::WrongKey {
            identities,
            keyring,
            ..
        } => Error::WrongKey {
            expected: expected.to_vec(),
            identities,
            keyring,
        },
        other => other,
    }
}

/// Opens an age file for reading with the identities of `keyring`: parses and authenticates
/// the header, unwraps the file key, and returns a reader of the plaintext that fails (with an
/// [`io::Error`] whose inner error is an [`Error`]) on any damaged, missing or extra chunk.
///
/// This is the synchronous core of [`Decrypt`], usable on any [`BufRead`].
pub fn decrypt_reader<R: BufRead>(input: R, keyring: &Keyring) -> Result<impl Read> {
    let decryptor = age::Decryptor::new_buffered(input).map_err(header_error)?;
    if decryptor.is_scrypt() {
        return Err(Error::NotEncrypted {
            detail: "it is encrypted with a passphrase, not to a recipient".into(),
        });
    }
    let reader = decryptor
        .decrypt(keyring.identities())
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => Error::WrongKey {
                expected: Vec::new(),
                identities: keyring.len(),
                keyring: keyring
                    .recipients()
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            },
            other => header_error(other),
        })?;
    Ok(StreamErrors { inner: reader })
}

/// Maps the errors of the age payload stream to ecobackup's, keeping them inside `io::Error`
/// so the reader stays a plain [`Read`].
struct StreamErrors<R> {
    inner: R,
}

impl<R: Read> Read for StreamErrors<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .read(buf)
            .map_err(|e| io::Error::other(classify_stream_error(e)))
    }
}

fn classify_stream_error(e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => Error::Truncated {
            detail: e.to_string(),
        },
        io::ErrorKind::InvalidData if e.to_string().contains("truncated") => Error::Truncated {
            detail: e.to_string(),
        },
        io::ErrorKind::InvalidData => Error::Tampered {
            detail: e.to_string(),
        },
        _ => Error::io("reading the encrypted artifact", e),
    }
}

/// Unwraps an [`Error`] carried inside an `io::Error` by [`decrypt_reader`]'s reader.
fn stream_error(e: io::Error) -> Error {
    match e.into_inner() {
        Some(inner) => match inner.downcast::<Error>() {
            Ok(error) => *error,
            Err(other) => Error::io("reading the encrypted artifact", io::Error::other(other)),
        },
        None => Error::io(
            "reading the encrypted artifact",
            io::Error::other("unknown error"),
        ),
    }
}

fn header_error(e: age::DecryptError) -> Error {
    match e {
        age::DecryptError::InvalidMac | age::DecryptError::DecryptionFailed => Error::Tampered {
            detail: format!("header: {e}"),
        },
        age::DecryptError::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
            Error::Truncated {
                detail: "the age header is incomplete".into(),
            }
        }
        age::DecryptError::Io(io) => Error::io("reading the age header", io),
        other => Error::NotEncrypted {
            detail: other.to_string(),
        },
    }
}
