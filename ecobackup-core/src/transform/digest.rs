//! SHA-256 pass-through: forwards every chunk unchanged and reports its digest and length.
//!
//! Put one before compression (digest of the raw bytes) and one after encryption (digest of the
//! stored bytes): the manifest records both, so `verify` can check an artifact end to end.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use sha2::Digest as _;

use crate::error::Error;
use crate::pipeline::{blocking_stage, ByteStream, StageMeter, Transform};

/// A SHA-256 pass-through stage. Create it with [`Digest::new`], keep the handle.
pub struct Digest {
    result: Arc<Mutex<Option<DigestResult>>>,
}

/// Where a [`Digest`] stage leaves its result once its input has ended cleanly.
#[derive(Clone, Debug)]
pub struct DigestHandle {
    result: Arc<Mutex<Option<DigestResult>>>,
}

/// The digest and length of a complete stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DigestResult {
    /// SHA-256 of every byte, lowercase hex.
    pub sha256: String,
    /// Number of bytes.
    pub bytes: u64,
}

impl Digest {
    /// A new stage and the handle to read its result from.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> (Digest, DigestHandle) {
        let result = Arc::new(Mutex::new(None));
        (
            Digest {
                result: result.clone(),
            },
            DigestHandle { result },
        )
    }
}

impl DigestHandle {
    /// The result, or `None` if the stream did not end cleanly.
    pub fn result(&self) -> Option<DigestResult> {
        self.result.lock().map(|r| r.clone()).unwrap_or(None)
    }
}

impl Transform for Digest {
    fn name(&self) -> &'static str {
        "sha256"
    }

    fn apply(self: Box<Self>, input: ByteStream, meter: StageMeter) -> ByteStream {
        blocking_stage(input, meter, move |reader, writer| {
            let mut hasher = sha2::Sha256::new();
            let mut bytes = 0u64;
            let io = |e| Error::io("computing SHA-256", e);
            while let Some(chunk) = reader.next_chunk().map_err(io)? {
                hasher.update(&chunk);
                bytes += chunk.len() as u64;
                writer.send_chunk(chunk).map_err(io)?;
            }
            let digest = DigestResult {
                sha256: hex::encode(hasher.finalize()),
                bytes,
            };
            if let Ok(mut slot) = self.result.lock() {
                *slot = Some(digest);
            }
            Ok(())
        })
    }
}
