//! Memory stays bounded whatever the size: 2 GiB through compress + encrypt grows the peak RSS
//! by less than 64 MiB. Alone in its own test binary so no other test shares the process.

mod common;

use ecobackup_core::pipeline::Pipeline;
use ecobackup_core::transform::{Compress, Digest, Encrypt};
use ecobackup_testkit::{CountingSink, GeneratedSource};

/// (current RSS, peak RSS) of this process in KiB, from /proc/self/status.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gib_through_compress_and_encrypt_in_bounded_memory() {
    const TOTAL: u64 = 2 << 30;
    let (_, recipient) = common::keypair();
    let (before, _) = rss_kib();
    let sink = CountingSink::new();
    let (digest, handle) = Digest::new();
    let report = Pipeline::new(GeneratedSource::new(TOTAL, 64 * 1024))
        .then(digest)
        .then(Compress::new(3))
        .then(Encrypt::to(vec![recipient]).unwrap())
        .into(sink.clone())
        .run()
        .await
        .unwrap();
    let (_, peak) = rss_kib();
    let growth_mib = peak.saturating_sub(before) / 1024;
    eprintln!(
        "2 GiB → {} MiB stored in {:.1?}; peak RSS grew by {growth_mib} MiB",
        sink.bytes() >> 20,
        report.elapsed
    );
    assert_eq!(handle.result().unwrap().bytes, TOTAL);
    assert_eq!(report.stages[0].bytes_out, TOTAL);
    assert!(
        growth_mib < 64,
        "peak RSS grew by {growth_mib} MiB streaming 2 GiB"
    );
}
