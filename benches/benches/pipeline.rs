//! Throughput of each stage and of the whole compress → encrypt pipeline, in MB/s, on
//! COPY-text-like rows (what pg_dump emits), not on zeros or random bytes.
//!
//! The goal (docs/BENCHMARKS.md): the full pipeline reaches at least 90% of zstd-alone
//! throughput at the same level: encryption and plumbing nearly free.

use std::io::Write;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ecobackup_core::crypto::generate_identity;
use ecobackup_core::pipeline::{Pipeline, CHUNK_SIZE};
use ecobackup_core::transform::{Compress, Digest, Encrypt};
use ecobackup_testkit::{ChunkedSource, CountingSink, RowGenerator};

const INPUT: usize = 128 << 20;

fn rows() -> Vec<u8> {
    RowGenerator::new(1).bytes(INPUT)
}

fn cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// zstd alone, the way `zstd -T0` runs it: the baseline the pipeline is measured against.
fn zstd_alone(c: &mut Criterion) {
    let data = rows();
    let mut group = c.benchmark_group("zstd-alone");
    group
        .throughput(Throughput::Bytes(data.len() as u64))
        .sample_size(10);
    for level in [1, 3] {
        group.bench_with_input(BenchmarkId::new("level", level), &level, |b, &level| {
            b.iter(|| {
                let mut encoder =
                    zstd::stream::write::Encoder::new(std::io::sink(), level).unwrap();
                encoder.multithread(cores()).unwrap();
                for chunk in data.chunks(CHUNK_SIZE) {
                    encoder.write_all(chunk).unwrap();
                }
                encoder.finish().unwrap();
            })
        });
    }
    group.finish();
}

/// age alone: encryption and decryption of already-compressed bytes.
fn age_alone(c: &mut Criterion) {
    let data = zstd::encode_all(&rows()[..], 1).unwrap();
    let (identity, recipient) = generate_identity();
    let mut sealed = Vec::new();
    let mut group = c.benchmark_group("age");
    group
        .throughput(Throughput::Bytes(data.len() as u64))
        .sample_size(10);
    group.bench_function("encrypt", |b| {
        b.iter(|| {
            sealed.clear();
            let encryptor =
                age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                    .unwrap();
            let mut writer = encryptor.wrap_output(&mut sealed).unwrap();
            writer.write_all(&data).unwrap();
            writer.finish().unwrap();
        })
    });
    group.bench_function("decrypt", |b| {
        b.iter(|| {
            let decryptor = age::Decryptor::new_buffered(&sealed[..]).unwrap();
            let mut reader = decryptor
                .decrypt(std::iter::once(&identity as &dyn age::Identity))
                .unwrap();
            std::io::copy(&mut reader, &mut std::io::sink()).unwrap();
        })
    });
    group.finish();
}

/// The pipeline: zstd stage only, then zstd + age, then with both digests (what a backup runs).
fn pipeline(c: &mut Criterion) {
    let data = bytes::Bytes::from(rows());
    let (_, recipient) = generate_identity();
    let rt = runtime();
    let mut group = c.benchmark_group("pipeline");
    group
        .throughput(Throughput::Bytes(data.len() as u64))
        .sample_size(10);
    for level in [1, 3] {
        group.bench_with_input(BenchmarkId::new("zstd", level), &level, |b, &level| {
            b.to_async(&rt).iter(|| async {
                Pipeline::new(ChunkedSource::new(data.clone(), vec![CHUNK_SIZE]))
                    .then(Compress::new(level))
                    .into(CountingSink::new())
                    .run()
                    .await
                    .unwrap()
            })
        });
        group.bench_with_input(BenchmarkId::new("zstd+age", level), &level, |b, &level| {
            b.to_async(&rt).iter(|| async {
                Pipeline::new(ChunkedSource::new(data.clone(), vec![CHUNK_SIZE]))
                    .then(Compress::new(level))
                    .then(Encrypt::to(vec![recipient.clone()]).unwrap())
                    .into(CountingSink::new())
                    .run()
                    .await
                    .unwrap()
            })
        });
        group.bench_with_input(
            BenchmarkId::new("sha256+zstd+age+sha256", level),
            &level,
            |b, &level| {
                b.to_async(&rt).iter(|| async {
                    Pipeline::new(ChunkedSource::new(data.clone(), vec![CHUNK_SIZE]))
                        .then(Digest::new().0)
                        .then(Compress::new(level))
                        .then(Encrypt::to(vec![recipient.clone()]).unwrap())
                        .then(Digest::new().0)
                        .into(CountingSink::new())
                        .run()
                        .await
                        .unwrap()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, zstd_alone, age_alone, pipeline);
criterion_main!(benches);
