//! How a pipeline behaves: reports, digests, cancellation, and aborts on every kind of failure.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ecobackup_core::io::{FileSink, FileSource};
use ecobackup_core::pipeline::{ByteStream, Pipeline, Sink, SinkReceipt};
use ecobackup_core::transform::{Compress, Decompress, Digest, Encrypt};
use ecobackup_core::{Error, Result};
use ecobackup_testkit::{
    ChunkedSource, CountingSink, FailingSource, GeneratedSource, MemorySink, RowGenerator,
    SinkState,
};
use futures::StreamExt;
use sha2::Digest as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_every_stage_and_the_digests_of_raw_and_stored_bytes() {
    let data = RowGenerator::new(5).bytes(5 << 20);
    let (_, recipient) = common::keypair();
    let (raw, raw_digest) = Digest::new();
    let (stored, stored_digest) = Digest::new();
    let sink = MemorySink::new();
    let report = Pipeline::new(ChunkedSource::new(data.clone(), vec![8192]))
        .then(raw)
        .then(Compress::new(3))
        .then(Encrypt::to(vec![recipient]).unwrap())
        .then(stored)
        .into(sink.clone())
        .run()
        .await
        .unwrap();
    let artifact = sink.committed().unwrap();

    let names: Vec<_> = report.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["source", "sha256", "zstd", "age-encrypt", "sha256", "sink"]
    );
    assert_eq!(report.stages[0].bytes_out, data.len() as u64);
    assert_eq!(report.stages[1].bytes_in, data.len() as u64);
    assert_eq!(report.stages[2].bytes_in, data.len() as u64);
    assert_eq!(report.stages[2].bytes_out, report.stages[3].bytes_in);
    assert_eq!(report.stages[3].bytes_out, artifact.len() as u64);
    assert_eq!(report.stages[5].bytes_in, artifact.len() as u64);
    assert_eq!(report.receipt.bytes, artifact.len() as u64);
    assert!(report.stages[2].busy > Duration::ZERO, "zstd did work");

    let raw = raw_digest.result().unwrap();
    assert_eq!(raw.bytes, data.len() as u64);
    assert_eq!(raw.sha256, hex::encode(sha2::Sha256::digest(&data)));
    let stored = stored_digest.result().unwrap();
    assert_eq!(stored.bytes, artifact.len() as u64);
    assert_eq!(stored.sha256, hex::encode(sha2::Sha256::digest(&artifact)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_chunks_are_coalesced_to_about_one_mib() {
    let sink = CountingSink::new();
    Pipeline::new(GeneratedSource::new(16 << 20, 100))
        .into(sink.clone())
        .run()
        .await
        .unwrap();
    assert_eq!(sink.bytes(), 16 << 20);
    assert!(!sink.aborted(), "a run that succeeded is not aborted");
    assert!(
        sink.chunks() <= 17,
        "{} chunks for 16 MiB sent in 100-byte pieces",
        sink.chunks()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_failing_mid_stream_aborts_the_sink_with_the_sources_error() {
    let (_, recipient) = common::keypair();
    let (digest, handle) = Digest::new();
    let sink = MemorySink::new();
    let err = Pipeline::new(FailingSource::new(3 << 20))
        .then(Compress::new(3))
        .then(Encrypt::to(vec![recipient]).unwrap())
        .then(digest)
        .into(sink.clone())
        .run()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("source killed mid-stream"),
        "the source's own error: {err}"
    );
    assert_eq!(sink.state(), SinkState::Aborted);
    assert!(
        handle.result().is_none(),
        "no digest for an incomplete stream"
    );
}

/// A sink that fails after some bytes, like an upload whose endpoint went away. `aborted` is
/// shared with the test, which keeps a clone while the pipeline owns the sink.
struct BrokenSink {
    after: u64,
    aborted: Arc<AtomicBool>,
}

#[async_trait]
impl Sink for BrokenSink {
    async fn write(&mut self, mut input: ByteStream) -> Result<SinkReceipt> {
        let mut seen = 0;
        while let Some(chunk) = input.next().await {
            seen += chunk?.len() as u64;
            if seen >= self.after {
                return Err(Error::io(
                    "uploading",
                    std::io::Error::other("endpoint went away"),
                ));
            }
        }
        Ok(SinkReceipt::default())
    }
    async fn abort(&mut self) {
        self.aborted.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_cancels_the_source_and_every_stage() {
    let (_, recipient) = common::keypair();
    let source = GeneratedSource::new(u64::MAX, 1 << 20); // endless unless cancelled
    let dropped = source.dropped_flag();
    let aborted = Arc::new(AtomicBool::new(false));
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        Pipeline::new(source)
            .then(Compress::new(1))
            .then(Encrypt::to(vec![recipient]).unwrap())
            .into(BrokenSink {
                after: 1 << 20,
                aborted: aborted.clone(),
            })
            .run(),
    )
    .await
    .expect("the pipeline stops instead of running forever")
    .unwrap_err();
    assert!(err.to_string().contains("endpoint went away"), "{err}");
    assert!(
        aborted.load(Ordering::SeqCst),
        "the failed sink was aborted, so an upload it began is not left behind"
    );
    // The source is dropped shortly after: every stage between was torn down.
    for _ in 0..200 {
        if dropped.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the source kept running after the sink failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_input_round_trips_to_empty_output() {
    let (keyring, recipient) = common::keypair();
    let artifact = common::seal(ChunkedSource::new(Vec::new(), vec![1]), vec![recipient]).await;
    assert!(
        !artifact.is_empty(),
        "an empty plaintext still makes an age file"
    );
    let (plain, _) = common::open(artifact, 7, keyring).await;
    assert!(plain.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sink_commits_atomically_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.txt");
    std::fs::write(&input, RowGenerator::new(2).bytes(3 << 20)).unwrap();
    let output = dir.path().join("copy.txt");
    let report = Pipeline::new(FileSource::new(&input))
        .into(FileSink::new(&output))
        .run()
        .await
        .unwrap();
    assert_eq!(report.source.size_hint, Some(3 << 20));
    assert_eq!(
        std::fs::read(&output).unwrap(),
        std::fs::read(&input).unwrap()
    );
    assert_eq!(
        std::fs::metadata(&output).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "no temp file left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sink_aborted_by_a_failing_source_leaves_an_existing_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("precious.dump");
    std::fs::write(&output, b"the previous good copy").unwrap();
    Pipeline::new(FailingSource::new(2 << 20))
        .into(FileSink::new(&output))
        .run()
        .await
        .unwrap_err();
    assert_eq!(std::fs::read(&output).unwrap(), b"the previous good copy");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_decompress_passes_plaintext_through_and_strict_mode_refuses_it() {
    let text = b"COPY public.orders (id) FROM stdin;\n1\n\\.\n".to_vec();
    let sink = MemorySink::new();
    Pipeline::new(ChunkedSource::new(text.clone(), vec![1]))
        .then(Decompress::auto())
        .into(sink.clone())
        .run()
        .await
        .unwrap();
    assert_eq!(sink.committed().unwrap(), text);

    let err = Pipeline::new(ChunkedSource::new(text, vec![3]))
        .then(Decompress::new())
        .into(MemorySink::new())
        .run()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decompress { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_zstd_stream_is_refused() {
    let data = RowGenerator::new(8).bytes(1 << 20);
    let compressed = zstd::encode_all(&data[..], 3).unwrap();
    let err = Pipeline::new(ChunkedSource::new(
        compressed[..compressed.len() - 10].to_vec(),
        vec![4096],
    ))
    .then(Decompress::new())
    .into(MemorySink::new())
    .run()
    .await
    .unwrap_err();
    assert!(err.to_string().contains("decompression failed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pledged_size_fails_instead_of_storing_an_undecodable_frame() {
    for (actual, pledged) in [(3 << 20, 5 << 20), (5 << 20, 3 << 20)] {
        let sink = MemorySink::new();
        let err = Pipeline::new(ChunkedSource::new(vec![7u8; actual], vec![1 << 20]))
            .then(Compress::new(3).pledged_size(pledged as u64))
            .into(sink.clone())
            .run()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("pledged"), "{err}");
        assert_eq!(sink.committed(), None, "nothing committed");
    }
    // The right size compresses and decompresses.
    let data = vec![7u8; 3 << 20];
    let sink = MemorySink::new();
    Pipeline::new(ChunkedSource::new(data.clone(), vec![1 << 20]))
        .then(Compress::new(3).pledged_size(data.len() as u64))
        .then(Decompress::new())
        .into(sink.clone())
        .run()
        .await
        .unwrap();
    assert_eq!(sink.committed().unwrap(), data);
}
