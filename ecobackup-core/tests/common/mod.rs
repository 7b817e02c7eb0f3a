#![allow(dead_code)]

use std::sync::Arc;

use age::x25519;
use ecobackup_core::crypto::{generate_identity, Keyring};
use ecobackup_core::pipeline::{Pipeline, Source};
use ecobackup_core::transform::{Compress, Decompress, Decrypt, Encrypt};
use ecobackup_core::Result;
use ecobackup_testkit::{ChunkedSource, MemorySink};

pub fn keypair() -> (Arc<Keyring>, x25519::Recipient) {
    let (identity, recipient) = generate_identity();
    (
        Arc::new(Keyring::from_identities(vec![identity])),
        recipient,
    )
}

/// compress → encrypt into memory; the artifact's bytes.
pub async fn seal(source: impl Source + 'static, recipients: Vec<x25519::Recipient>) -> Vec<u8> {
    let sink = MemorySink::new();
    Pipeline::new(source)
        .then(Compress::new(3))
        .then(Encrypt::to(recipients).unwrap())
        .into(sink.clone())
        .run()
        .await
        .expect("seal");
    sink.committed().expect("committed")
}

/// decrypt → decompress into a memory sink; returns the run's result and the sink.
pub async fn open(
    artifact: Vec<u8>,
    chunk: usize,
    keyring: Arc<Keyring>,
) -> (Result<Vec<u8>>, MemorySink) {
    let sink = MemorySink::new();
    let run = Pipeline::new(ChunkedSource::new(artifact, vec![chunk]))
        .then(Decrypt::with(keyring))
        .then(Decompress::new())
        .into(sink.clone())
        .run()
        .await;
    (
        run.map(|_| sink.committed().expect("committed after Ok")),
        sink,
    )
}
pub mod storage;
