//! A flipped byte anywhere, a cut tail, an appended tail, a wrong key: each fails with a clear
//! error, and the sink is aborted: nothing under the final name.

mod common;

use std::sync::Arc;

use ecobackup_core::crypto::Keyring;
use ecobackup_core::io::FileSink;
use ecobackup_core::pipeline::Pipeline;
use ecobackup_core::transform::{Decompress, Decrypt};
use ecobackup_core::Error;
use ecobackup_testkit::{ChunkedSource, RowGenerator, SinkState};

const AGE_CHUNK: usize = 64 * 1024;

async fn artifact(len: usize) -> (Vec<u8>, Vec<u8>, Arc<Keyring>) {
    let (keyring, recipient) = common::keypair();
    // Random-ish rows compress, so use enough input for several age chunks of ciphertext.
    let data = RowGenerator::new(11).bytes(len);
    let sealed = common::seal(
        ChunkedSource::new(data.clone(), vec![100_000]),
        vec![recipient],
    )
    .await;
    (data, sealed, keyring)
}

async fn expect_failure(artifact: Vec<u8>, keyring: Arc<Keyring>) -> Error {
    let (result, sink) = common::open(artifact, 10_000, keyring).await;
    let err = result.expect_err("a damaged artifact must not decrypt");
    assert_eq!(
        sink.state(),
        SinkState::Aborted,
        "sink must be aborted after: {err}"
    );
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intact_artifact_opens() {
    let (data, sealed, keyring) = artifact(2 << 20).await;
    assert!(
        sealed.len() > 3 * AGE_CHUNK,
        "need several age chunks, got {}",
        sealed.len()
    );
    let (plain, _) = common::open(sealed, 10_000, keyring).await;
    assert!(plain.unwrap() == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_anywhere_fails() {
    let (_, sealed, keyring) = artifact(2 << 20).await;
    let header_end = sealed.windows(4).position(|w| w == b"\n---").unwrap();
    let positions = [
        0,                // "age-encryption.org/v1"
        30,               // inside the recipient stanza
        header_end + 6,   // inside the header MAC
        header_end + 60,  // nonce / first payload chunk
        sealed.len() / 2, // a middle chunk
        sealed.len() - 1, // the last tag
    ];
    for pos in positions {
        let mut damaged = sealed.clone();
        damaged[pos] ^= 0x01;
        let err = expect_failure(damaged, keyring.clone()).await;
        assert!(
            matches!(
                err,
                Error::Tampered { .. } | Error::NotEncrypted { .. } | Error::WrongKey { .. }
            ),
            "byte {pos}: unexpected error {err:?}"
        );
        let msg = err.to_string();
        assert!(!msg.contains('\n'), "one line: {msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_tail_fails_even_on_a_chunk_boundary() {
    let (_, sealed, keyring) = artifact(2 << 20).await;
    let header_len = sealed.windows(4).position(|w| w == b"\n---").unwrap();
    let header_len = header_len
        + sealed[header_len + 1..]
            .iter()
            .position(|&b| b == b'\n')
            .unwrap()
        + 2;
    let payload_start = header_len + 16; // the STREAM nonce
    for cut in [
        sealed.len() - 1,
        sealed.len() - 17,
        payload_start + AGE_CHUNK + 16, // exactly after the first full chunk
        payload_start + 2 * (AGE_CHUNK + 16),
        payload_start,
        header_len / 2,
    ] {
        let err = expect_failure(sealed[..cut].to_vec(), keyring.clone()).await;
        assert!(
            matches!(err, Error::Truncated { .. } | Error::Tampered { .. }),
            "cut at {cut}: unexpected error {err:?}"
        );
        assert!(
            err.to_string().contains("truncated") || err.to_string().contains("tampered"),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appended_tail_fails() {
    let (_, sealed, keyring) = artifact(2 << 20).await;
    for extra in [vec![0u8], vec![0x42; 17], vec![7u8; AGE_CHUNK + 16]] {
        let mut longer = sealed.clone();
        longer.extend_from_slice(&extra);
        let err = expect_failure(longer, keyring.clone()).await;
        assert!(
            matches!(err, Error::Tampered { .. } | Error::Truncated { .. }),
            "+{}: {err:?}",
            extra.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrong_key_names_what_is_needed() {
    let (_, sealed, _) = artifact(100_000).await;
    let (other, other_recipient) = common::keypair();
    let err = expect_failure(sealed.clone(), other).await;
    let msg = err.to_string();
    assert!(msg.starts_with("wrong key: "), "{msg}");
    assert!(
        msg.contains("none of the 1 identity in the keyring matches"),
        "{msg}"
    );
    assert!(
        msg.contains(&other_recipient.to_string()),
        "names the keyring's public key: {msg}"
    );
    assert!(!msg.contains("AGE-SECRET-KEY"), "never a secret: {msg}");

    // With the manifest's recipients known, the message names the recipient needed.
    let (other, _) = common::keypair();
    let sink = ecobackup_testkit::MemorySink::new();
    let err = Pipeline::new(ChunkedSource::new(sealed, vec![4096]))
        .then(Decrypt::with(other).expecting(vec!["age1expectedrecipient".into()]))
        .then(Decompress::new())
        .into(sink.clone())
        .run()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("encrypted to age1expectedrecipient"),
        "{err}"
    );
    assert_eq!(sink.state(), SinkState::Aborted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_plaintext_are_not_mistaken_for_artifacts() {
    let (keyring, _) = common::keypair();
    for input in [
        Vec::new(),
        b"hello world\n".to_vec(),
        RowGenerator::new(1).bytes(300_000),
    ] {
        let err = expect_failure(input, keyring.clone()).await;
        assert!(
            matches!(err, Error::NotEncrypted { .. } | Error::Truncated { .. }),
            "{err:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_decryption_leaves_no_file_behind() {
    let (_, mut sealed, keyring) = artifact(2 << 20).await;
    let middle = sealed.len() / 2;
    sealed[middle] ^= 0x80;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("restored.dump");
    let err = Pipeline::new(ChunkedSource::new(sealed, vec![65_536]))
        .then(Decrypt::with(keyring))
        .then(Decompress::new())
        .into(FileSink::new(&target))
        .run()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tampered { .. }), "{err:?}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "nothing under the final name, no temp file: {left:?}"
    );
}
