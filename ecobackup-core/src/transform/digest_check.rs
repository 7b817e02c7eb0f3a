//! SHA-256 and length check that fails *before* the end of the stream reaches the sink.
//!
//! A sink commits when its input ends cleanly: `pg_restore --single-transaction` commits once it
//! has read its archive. A check made after the pipeline finished would come after that commit,
//! so a valid age file that is not the manifest's artifact (copied over from another backup)
//! would be restored first and reported afterwards. This stage forwards every chunk unchanged
//! except the last one, which it holds back until its input has ended; only when the length and
//! the SHA-256 of everything match the expected values does it forward that last chunk and end
//! cleanly. Otherwise it ends with [`Error::ArtifactMismatch`] and the last chunk is never sent,
//! so the sink sees an error, not an end: a [`ChildSink`](crate::process::ChildSink) then kills
//! its program before closing its stdin.
//!
//! Holding back only the *end* of the stream would not do: reading a custom-format archive from
//! a pipe, pg_restore commits as soon as it has read the last data block, before it reads EOF
//! (seen with PostgreSQL 15: the restored rows are visible while it still waits for the end of
//! its input). Holding back one chunk — at least the last byte — is enough: the archive is the header,
//! the table of contents, then the data blocks in TOC order, and nothing after the last block
//! (pg_dump writes its offsets back only into a seekable file). Restoring the whole archive from
//! a pipe, pg_restore reads every data block in file order up to its end marker (a zero length,
//! or a zero blob OID for large objects); an archive without data ends with its TOC, which it
//! reads whole before anything else. The last byte of the archive is therefore the last byte
//! pg_restore needs before it can COMMIT, and it cannot get it before this check passed. This
//! holds as long as restores select no subset of the archive (`-L`, `-t`, `-n`, `--section`): a
//! restore that skipped the last data block could commit without the last byte.

use bytes::Bytes;
use sha2::Digest as _;

use crate::error::{Error, Result};
use crate::pipeline::{blocking_stage, ByteStream, StageMeter, Transform};
use crate::transform::DigestResult;

/// A pass-through stage that checks length and SHA-256 against expected values and holds back
/// the last chunk until they match. See the module docs of `transform::digest_check`.
pub struct DigestCheck {
    artifact: String,
    what: &'static str,
    expected: DigestResult,
}

impl DigestCheck {
    /// Checks the bytes flowing through against `expected`. `artifact` (its key) and `what`
    /// (`the stored object`, `the decrypted content`) name them in the error.
    pub fn expecting(
        artifact: impl Into<String>,
        what: &'static str,
        expected: DigestResult,
    ) -> Self {
        DigestCheck {
            artifact: artifact.into(),
            what,
            expected,
        }
    }

    fn mismatch(&self, found: String) -> Error {
        Error::ArtifactMismatch {
            artifact: self.artifact.clone(),
            detail: format!(
                "{} is {found}, the manifest says {} bytes, sha256 {}",
                self.what, self.expected.bytes, self.expected.sha256
            ),
        }
    }

    fn check(&self, found: &DigestResult) -> Result<()> {
        if found.bytes == self.expected.bytes
            && found.sha256.eq_ignore_ascii_case(&self.expected.sha256)
        {
            Ok(())
        } else {
            Err(self.mismatch(format!("{} bytes, sha256 {}", found.bytes, found.sha256)))
        }
    }
}

impl Transform for DigestCheck {
    fn name(&self) -> &'static str {
        "sha256-check"
    }

    fn apply(self: Box<Self>, input: ByteStream, meter: StageMeter) -> ByteStream {
        blocking_stage(input, meter, move |reader, writer| {
            let io = |e| Error::io("checking SHA-256", e);
            let mut hasher = sha2::Sha256::new();
            let mut bytes = 0u64;
            let mut held: Option<Bytes> = None;
            while let Some(chunk) = reader.next_chunk().map_err(io)? {
                hasher.update(&chunk);
                bytes += chunk.len() as u64;
                if bytes > self.expected.bytes {
                    // Longer than it should be: no need to read the rest to know.
                    return Err(self.mismatch(format!("more than {} bytes", self.expected.bytes)));
                }
                if let Some(previous) = held.replace(chunk) {
                    writer.send_chunk(previous).map_err(io)?;
                }
            }
            self.check(&DigestResult {
                sha256: hex::encode(hasher.finalize()),
                bytes,
            })?;
            if let Some(last) = held {
                writer.send_chunk(last).map_err(io)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn chunks() -> Vec<Bytes> {
        (0u8..5)
            .map(|i| Bytes::from(vec![i; 1000 + usize::from(i) * 7]))
            .collect()
    }

    fn digest_of(chunks: &[Bytes]) -> DigestResult {
        let mut hasher = sha2::Sha256::new();
        for chunk in chunks {
            hasher.update(chunk);
        }
        DigestResult {
            sha256: hex::encode(hasher.finalize()),
            bytes: chunks.iter().map(|c| c.len() as u64).sum(),
        }
    }

    /// Runs `input` through a check expecting `expected`; every item it yields.
    async fn run(input: Vec<Bytes>, expected: DigestResult) -> Vec<Result<Bytes>> {
        let stream: ByteStream = Box::pin(futures::stream::iter(input.into_iter().map(Ok)));
        let check = Box::new(DigestCheck::expecting("b/x.dump", "the content", expected));
        check
            .apply(stream, StageMeter::new("check"))
            .collect()
            .await
    }

    fn passed(items: &[Result<Bytes>]) -> Vec<Bytes> {
        items
            .iter()
            .filter_map(|i| i.as_ref().ok().cloned())
            .collect()
    }

    fn error_of(items: &[Result<Bytes>]) -> String {
        let last = items.last().expect("at least the error");
        last.as_ref().expect_err("ends in an error").to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_matching_stream_passes_unchanged() {
        let input = chunks();
        let items = run(input.clone(), digest_of(&input)).await;
        assert!(items.iter().all(Result::is_ok));
        assert_eq!(passed(&items), input);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_empty_stream_that_should_be_empty_passes() {
        let items = run(Vec::new(), digest_of(&[])).await;
        assert!(items.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_different_digest_fails_without_its_last_chunk() {
        let input = chunks();
        let mut other = input.clone();
        other[2] = Bytes::from(vec![9u8; other[2].len()]);
        let items = run(other.clone(), digest_of(&input)).await;
        assert_eq!(passed(&items), other[..other.len() - 1]);
        let error = error_of(&items);
        assert!(
            error.starts_with("b/x.dump does not match its manifest: the content is"),
            "{error}"
        );
        assert!(error.contains(&digest_of(&other).sha256), "{error}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shorter_stream_fails_without_its_last_chunk() {
        let input = chunks();
        let short = input[..3].to_vec();
        let items = run(short.clone(), digest_of(&input)).await;
        assert_eq!(passed(&items), short[..2]);
        let expected = digest_of(&input);
        assert!(
            error_of(&items).contains(&format!(
                "is {} bytes, sha256 {}, the manifest says {} bytes",
                digest_of(&short).bytes,
                digest_of(&short).sha256,
                expected.bytes
            )),
            "{}",
            error_of(&items)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_longer_stream_fails_without_its_last_chunk() {
        let input = chunks();
        let mut long = input.clone();
        long.push(Bytes::from_static(b"appended"));
        let items = run(long, digest_of(&input)).await;
        // The appended chunk is where it went over; the chunk before it is the one held back.
        assert_eq!(passed(&items), input[..input.len() - 1]);
        assert!(
            error_of(&items).contains("is more than"),
            "{}",
            error_of(&items)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_one_chunk_stream_with_a_wrong_digest_yields_nothing() {
        let input = vec![Bytes::from_static(b"a whole small artifact")];
        let mut expected = digest_of(&input);
        expected.sha256 = "00".repeat(32);
        let items = run(input, expected).await;
        assert!(passed(&items).is_empty());
        assert_eq!(items.len(), 1);
    }
}
