//! compress → encrypt → decrypt → decompress is the identity, whatever the size and chunking.

mod common;

use ecobackup_testkit::{ChunkedSource, RowGenerator};
use proptest::prelude::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Rows mixed with incompressible runs, so both zstd paths (matches and raw blocks) are hit.
fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut data = RowGenerator::new(seed).bytes(len);
    let mut x = seed | 1;
    for block in data.chunks_mut(300_000).skip(1).step_by(3) {
        for b in block.iter_mut().take(70_000) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    data
}

fn sizes() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => 0usize..=2,
        3 => 0usize..70_000,
        3 => 0usize..3 << 20,
        1 => (40usize << 20)..=(50 << 20),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_is_identity(
        len in sizes(),
        seed in any::<u64>(),
        write_chunks in prop::collection::vec(1usize..200_000, 1..6),
        read_chunk in 1usize..300_000,
    ) {
        runtime().block_on(async {
            let data = payload(len, seed);
            let (keyring, recipient) = common::keypair();
            let artifact = common::seal(ChunkedSource::new(data.clone(), write_chunks), vec![recipient]).await;
            let (plain, _) = common::open(artifact, read_chunk, keyring).await;
            let plain = plain.expect("open");
            prop_assert_eq!(plain.len(), data.len());
            prop_assert!(plain == data, "plaintext differs from the input");
            Ok(())
        })?;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_fifty_mib_in_one_byte_and_odd_chunks() {
    let data = payload(50 << 20, 9);
    let (keyring, recipient) = common::keypair();
    let artifact = common::seal(
        ChunkedSource::new(data.clone(), vec![1, 65_535, 65_537, 1 << 21]),
        vec![recipient],
    )
    .await;
    assert!(
        artifact.len() < data.len() / 2,
        "rows should compress: {} of {}",
        artifact.len(),
        data.len()
    );
    let (plain, _) = common::open(artifact, 64 * 1024 + 16, keyring).await;
    assert!(plain.unwrap() == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recipient_can_decrypt() {
    let (ops, ops_recipient) = common::keypair();
    let (offline, offline_recipient) = common::keypair();
    let data = payload(1 << 20, 3);
    let artifact = common::seal(
        ChunkedSource::new(data.clone(), vec![4096]),
        vec![ops_recipient, offline_recipient],
    )
    .await;
    for keyring in [ops, offline] {
        let (plain, _) = common::open(artifact.clone(), 1 << 20, keyring).await;
        assert!(plain.unwrap() == data);
    }
}
