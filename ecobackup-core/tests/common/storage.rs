//! Storage helpers shared by the storage suites: S3 settings for the test server, and whole
//! streams up to and down from an object.

use ecobackup_core::pipeline::Pipeline;
use ecobackup_core::storage::{RepoUrl, Storage, StorageOptions};
use ecobackup_testkit::{ChunkedSource, MemorySink, S3TestServer};

/// Settings that reach the test server, with quick retries.
pub fn s3_options(s3: &S3TestServer) -> StorageOptions {
    let mut options = s3.storage_options();
    options.max_retries = 3;
    options.initial_backoff = std::time::Duration::from_millis(10);
    options
}

/// `s3://bucket/prefix` with `options`.
pub fn s3_storage(bucket: &str, prefix: &str, options: &StorageOptions) -> Storage {
    let url = RepoUrl::S3 {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
    };
    Storage::open(&url, options).unwrap()
}

/// Streams `data` (in uneven chunks) into the object `key`; the bytes stored.
pub async fn upload(
    storage: &Storage,
    key: &str,
    data: Vec<u8>,
    size_hint: Option<u64>,
) -> ecobackup_core::Result<u64> {
    let report = Pipeline::new(ChunkedSource::new(data, vec![1 << 20, 333_333]))
        .into(storage.sink(key, size_hint))
        .run()
        .await?;
    Ok(report.receipt.bytes)
}

/// Streams the object `key` back.
pub async fn download(storage: &Storage, key: &str) -> ecobackup_core::Result<Vec<u8>> {
    let sink = MemorySink::new();
    Pipeline::new(storage.source(key))
        .into(sink.clone())
        .run()
        .await?;
    Ok(sink.committed().unwrap())
}
