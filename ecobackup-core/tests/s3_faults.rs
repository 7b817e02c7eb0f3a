//! The S3 backend against the in-process S3 server: big multipart uploads, injected faults,
//! dropped downloads, the headers we must never send, and bad credentials, buckets and endpoints.

mod common;

use std::time::Duration;

use common::storage::{download, s3_options, s3_storage, upload};
use ecobackup_core::repository::Repository;
use ecobackup_core::storage::Storage;
use ecobackup_core::Error;
use ecobackup_testkit::{Fault, FaultRule, S3TestServer};

const MIB: usize = 1 << 20;

fn storage(s3: &S3TestServer) -> Storage {
    s3_storage(s3.bucket(), "repo", &s3_options(s3))
}

/// Bytes that do not repeat at any part boundary, so a misplaced part shows.
fn data(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Content lengths of the part uploads the server saw, in part order.
fn part_lengths(s3: &S3TestServer) -> Vec<u64> {
    let mut parts: Vec<(u32, u64)> = s3
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.query.contains("partNumber="))
        .map(|r| {
            let number = r
                .query
                .split('&')
                .find_map(|kv| kv.strip_prefix("partNumber="))
                .unwrap()
                .parse()
                .unwrap();
            let length = r.header("content-length").unwrap().parse().unwrap();
            (number, length)
        })
        .collect();
    parts.sort();
    parts.dedup();
    parts.into_iter().map(|(_, len)| len).collect()
}

fn object_key(s3: &S3TestServer, key: &str) -> bool {
    s3.object_keys().iter().any(|k| k.ends_with(key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_mib_stream_uploads_in_equal_parts_and_reads_back_identical() {
    let s3 = S3TestServer::start().await;
    let storage = storage(&s3);
    let input = data(300 * MIB);
    let written = upload(&storage, "backups/big.age", input.clone(), None)
        .await
        .unwrap();
    assert_eq!(written, input.len() as u64);

    // FORMAT.md: parts of 16 MiB when the size is not known in advance; 300 MiB is 18 of them
    // and 12 MiB left for the last.
    let parts = part_lengths(&s3);
    let mut expected = vec![16 * MIB as u64; 18];
    expected.push(12 * MIB as u64);
    assert_eq!(parts, expected, "equal 16 MiB parts, then the rest");
    assert_eq!(s3.pending_multipart_uploads(), 0);

    let back = download(&storage, "backups/big.age").await.unwrap();
    assert!(back == input, "300 MiB read back differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_503_on_part_3_is_retried() {
    let s3 = S3TestServer::start().await;
    let storage = storage(&s3);
    s3.add_fault(
        FaultRule::new(Fault::Status(503))
            .method("PUT")
            .query_contains("partNumber=3")
            .times(1),
    );
    let input = data(40 * MIB);
    upload(&storage, "backups/retried.age", input.clone(), None)
        .await
        .unwrap();
    let tries = s3
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.query.contains("partNumber=3"))
        .count();
    assert_eq!(tries, 2, "part 3 failed once and was sent again");
    assert_eq!(
        download(&storage, "backups/retried.age").await.unwrap(),
        input
    );
    assert_eq!(s3.pending_multipart_uploads(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_aborts_the_multipart_upload() {
    let s3 = S3TestServer::start().await;
    let storage = storage(&s3);
    s3.add_fault(
        FaultRule::new(Fault::Status(500))
            .method("PUT")
            .query_contains("partNumber=2")
            .forever(),
    );
    let err = upload(&storage, "backups/doomed.age", data(60 * MIB), None)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Storage { .. }), "{err:?}");
    assert!(message.contains("backups/doomed.age"), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(
        s3.requests()
            .iter()
            .any(|r| r.method == "DELETE" && r.query.contains("uploadId=")),
        "the upload was aborted"
    );
    assert_eq!(s3.pending_multipart_uploads(), 0, "no upload left pending");
    assert!(
        !object_key(&s3, "backups/doomed.age"),
        "nothing under the final name"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_mid_download_resumes_with_a_ranged_get() {
    let s3 = S3TestServer::start().await;
    let storage = storage(&s3);
    let input = data(21 * MIB);
    upload(&storage, "backups/resumed.age", input.clone(), None)
        .await
        .unwrap();
    s3.clear_requests();
    s3.add_fault(
        FaultRule::new(Fault::ResetAfterBytes(5 * MIB as u64))
            .method("GET")
            .times(2),
    );
    let back = download(&storage, "backups/resumed.age").await.unwrap();
    assert!(back == input, "bytes after resuming differ");
    let gets: Vec<_> = s3
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert!(gets.len() >= 3, "two resets, two resumes: {}", gets.len());
    assert!(
        gets[1..]
            .iter()
            .all(|r| r.header("range").is_some_and(|v| v.starts_with("bytes="))),
        "resumed with ranged GETs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_checksum_or_aws_chunked_headers_are_ever_sent() {
    let s3 = S3TestServer::start().await;
    let storage = storage(&s3);
    storage.put("small.json", b"{}".to_vec()).await.unwrap();
    upload(&storage, "backups/multi.age", data(20 * MIB), None)
        .await
        .unwrap();
    download(&storage, "backups/multi.age").await.unwrap();
    storage.delete("small.json").await.unwrap();
    let requests = s3.requests();
    assert!(requests.len() > 5);
    for r in &requests {
        for (name, value) in &r.headers {
            let name = name.to_ascii_lowercase();
            let value = value.to_ascii_lowercase();
            assert!(
                !name.starts_with("x-amz-checksum-"),
                "{} {}: {name}",
                r.method,
                r.path
            );
            assert_ne!(
                name, "x-amz-sdk-checksum-algorithm",
                "{} {}",
                r.method, r.path
            );
            assert_ne!(name, "x-amz-trailer", "{} {}", r.method, r.path);
            assert!(
                !value.contains("aws-chunked") && !value.starts_with("streaming-"),
                "{} {}: {name}: {value}",
                r.method,
                r.path
            );
        }
    }
}

async fn init_error(storage: &Storage) -> String {
    let err = Repository::init(storage.clone(), Vec::new())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(!message.contains('\n'), "one line: {message}");
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_say_access_denied_and_write_nothing() {
    let s3 = S3TestServer::start().await;
    let mut bad = s3_options(&s3);
    bad.secret_access_key = Some("not-the-secret".to_owned().into());
    let message = init_error(&s3_storage(s3.bucket(), "repo", &bad)).await;
    assert!(message.contains("check the credentials"), "{message}");
    assert!(
        !message.contains("not-the-secret"),
        "secret leaked: {message}"
    );
    assert!(s3.object_keys().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_says_so() {
    let s3 = S3TestServer::start().await;
    let message = init_error(&s3_storage("no-such-bucket", "repo", &s3_options(&s3))).await;
    assert!(message.contains("bucket does not exist"), "{message}");
    assert!(s3.object_keys().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_says_so() {
    let s3 = S3TestServer::start().await;
    let closed = ecobackup_testkit::ClosedPort::new();
    let mut options = s3_options(&s3);
    options.endpoint = Some(closed.url(""));
    options.max_retries = 1;
    let message = init_error(&s3_storage(s3.bucket(), "repo", &options)).await;
    assert!(message.contains("cannot reach the endpoint"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_upload_is_aborted_in_the_background() {
    let s3 = S3TestServer::start().await;
    let storage = storage(&s3);
    s3.add_fault(
        FaultRule::new(Fault::Delay(Duration::from_secs(30)))
            .method("PUT")
            .query_contains("partNumber=2")
            .forever(),
    );
    // The caller gives up once part 2 has reached the server (where it hangs): the upload
    // future is dropped mid-way, and the sink never sees an error. The uploads begun are
    // counted then, before the drop: its abort may run at once on the other worker.
    let part_2_arrived = async {
        while !s3
            .requests()
            .iter()
            .any(|r| r.method == "PUT" && r.query.contains("partNumber=2"))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        s3.pending_multipart_uploads()
    };
    let begun = tokio::select! {
        done = upload(&storage, "backups/cancelled.age", data(40 * MIB), None) => {
            panic!("the upload finished although part 2 hangs: {done:?}")
        }
        begun = part_2_arrived => begun,
    };
    assert_eq!(
        begun, 1,
        "a multipart upload had begun before the caller gave up"
    );
    let mut pending = usize::MAX;
    for _ in 0..100 {
        pending = s3.pending_multipart_uploads();
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pending, 0, "the dropped upload was aborted");
    assert!(!object_key(&s3, "backups/cancelled.age"));
}
