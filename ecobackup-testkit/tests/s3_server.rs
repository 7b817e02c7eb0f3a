//! The in-process S3 server works with a real S3 client (`object_store`), and its faults are
//! what the client sees.

use std::time::Duration;

use bytes::Bytes;
use ecobackup_testkit::s3::{Fault, FaultRule, S3TestServer};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};

const MIB: usize = 1024 * 1024;

/// A client for `server`, retrying up to `max_retries` times with short backoff.
fn client(server: &S3TestServer, max_retries: usize) -> AmazonS3 {
    client_with_secret(server, max_retries, server.secret_access_key())
}

fn client_with_secret(server: &S3TestServer, max_retries: usize, secret: &str) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_endpoint(server.endpoint())
        .with_bucket_name(server.bucket())
        .with_region(server.region())
        .with_access_key_id(server.access_key_id())
        .with_secret_access_key(secret)
        .with_allow_http(true)
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(50),
                base: 2.0,
            },
            max_retries,
            retry_timeout: Duration::from_secs(30),
        })
        .build()
        .expect("object_store client")
}

/// Deterministic, incompressible-looking test data.
fn data(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out.into()
}

fn count(server: &S3TestServer, method: &str, path_part: &str) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.method == method && r.path.contains(path_part))
        .count()
}

#[tokio::test]
async fn put_get_list_delete_round_trip() {
    let server = S3TestServer::start().await;
    assert!(server.endpoint().starts_with("http://127.0.0.1:"));
    assert_eq!(server.bucket(), "ecobackup-test");
    assert_eq!(server.region(), "us-east-1");
    let store = client(&server, 0);

    let a = Path::from("backups/2024/a.bin");
    let b = Path::from("b.txt");
    let a_data = data(300 * 1024, 1);
    store.put(&a, a_data.clone().into()).await.unwrap();
    store
        .put(&b, PutPayload::from_static(b"hello"))
        .await
        .unwrap();

    assert_eq!(store.get(&a).await.unwrap().bytes().await.unwrap(), a_data);
    assert_eq!(store.get(&b).await.unwrap().bytes().await.unwrap(), "hello");
    assert_eq!(store.head(&a).await.unwrap().size, a_data.len() as u64);
    let ranged = store.get_range(&a, 1000..2000).await.unwrap();
    assert_eq!(ranged, a_data.slice(1000..2000));

    let mut listed: Vec<(String, u64)> = store
        .list(None)
        .map_ok(|m| (m.location.to_string(), m.size))
        .try_collect()
        .await
        .unwrap();
    listed.sort();
    assert_eq!(
        listed,
        vec![
            ("b.txt".to_string(), 5),
            ("backups/2024/a.bin".to_string(), a_data.len() as u64)
        ]
    );
    let prefixed: Vec<_> = store
        .list(Some(&Path::from("backups")))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(prefixed.len(), 1);
    assert_eq!(server.object_keys(), vec!["b.txt", "backups/2024/a.bin"]);

    store.delete(&a).await.unwrap();
    assert!(matches!(
        store.get(&a).await,
        Err(object_store::Error::NotFound { .. })
    ));
    assert_eq!(server.object_keys(), vec!["b.txt"]);

    // The recorder saw the signed requests, header names lower-case.
    let puts: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 2);
    assert_eq!(puts[0].path, "/ecobackup-test/backups/2024/a.bin");
    assert!(puts[0]
        .header("authorization")
        .unwrap()
        .starts_with("AWS4-HMAC-SHA256 Credential=ecobackup-test/"));
    assert!(puts[0]
        .headers
        .iter()
        .all(|(n, _)| *n == n.to_ascii_lowercase()));
    // object_store deletes through the bulk API: `POST /bucket?delete`.
    let bulk_deletes = server
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.query.starts_with("delete"))
        .count();
    assert_eq!(bulk_deletes, 1);
    assert_eq!(server.pending_multipart_uploads(), 0);
}

#[tokio::test]
async fn multipart_upload_reads_back_identical() {
    let server = S3TestServer::start().await;
    let store = client(&server, 0);
    let path = Path::from("multi/part.bin");
    let payload = data(3 * 5 * MIB + 123_456, 2);

    let upload = store.put_multipart(&path).await.unwrap();
    assert_eq!(server.pending_multipart_uploads(), 1);
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 5 * MIB);
    for chunk in payload.chunks(MIB) {
        writer.wait_for_capacity(4).await.unwrap();
        writer.write(chunk);
    }
    writer.finish().await.unwrap();

    assert_eq!(server.pending_multipart_uploads(), 0);
    assert_eq!(server.object_keys(), vec!["multi/part.bin"]);
    assert_eq!(
        store.get(&path).await.unwrap().bytes().await.unwrap(),
        payload
    );
    let parts = server
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.query.contains("partNumber="))
        .count();
    assert_eq!(parts, 4);
}

#[tokio::test]
async fn multipart_upload_survives_a_failed_part() {
    let server = S3TestServer::start().await;
    server.add_fault(
        FaultRule::new(Fault::Status(500))
            .method("PUT")
            .query_contains("partNumber=2"),
    );
    let store = client(&server, 3);
    let path = Path::from("retried.bin");
    let payload = data(2 * 5 * MIB + 10, 3);

    let mut writer =
        WriteMultipart::new_with_chunk_size(store.put_multipart(&path).await.unwrap(), 5 * MIB);
    writer.put(payload.clone());
    writer.finish().await.unwrap();

    assert_eq!(
        store.get(&path).await.unwrap().bytes().await.unwrap(),
        payload
    );
    let part2 = server
        .requests()
        .iter()
        .filter(|r| r.method == "PUT" && r.query.contains("partNumber=2"))
        .count();
    assert_eq!(part2, 2, "part 2 failed once and was retried");
    assert_eq!(server.pending_multipart_uploads(), 0);
}

#[tokio::test]
async fn aborted_multipart_upload_leaves_nothing() {
    let server = S3TestServer::start().await;
    let store = client(&server, 0);
    let path = Path::from("aborted.bin");

    let mut upload = store.put_multipart(&path).await.unwrap();
    upload.put_part(data(5 * MIB, 4).into()).await.unwrap();
    assert_eq!(server.pending_multipart_uploads(), 1);
    upload.abort().await.unwrap();

    assert_eq!(server.pending_multipart_uploads(), 0);
    assert!(server.object_keys().is_empty());
    assert!(matches!(
        store.get(&path).await,
        Err(object_store::Error::NotFound { .. })
    ));
    assert_eq!(count(&server, "DELETE", "aborted.bin"), 1);
}

#[tokio::test]
async fn status_503_fires_once_then_requests_succeed() {
    let server = S3TestServer::start().await;
    let path = Path::from("flaky.txt");

    // Without retries the client sees the raw 503.
    let raw = client(&server, 0);
    server.add_fault(FaultRule::new(Fault::Status(503)).method("PUT"));
    let err = raw
        .put(&path, PutPayload::from_static(b"one"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    assert!(server.object_keys().is_empty());
    raw.put(&path, PutPayload::from_static(b"two"))
        .await
        .unwrap();
    assert_eq!(count(&server, "PUT", "flaky.txt"), 2);

    // With retries the fault is invisible: one failed attempt, one good one.
    let retrying = client(&server, 3);
    server.add_fault(FaultRule::new(Fault::Status(503)).method("PUT"));
    retrying
        .put(&path, PutPayload::from_static(b"three"))
        .await
        .unwrap();
    assert_eq!(count(&server, "PUT", "flaky.txt"), 4);
    let got = retrying.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(got, "three");
}

#[tokio::test]
async fn skip_lets_requests_through_first() {
    let server = S3TestServer::start().await;
    let store = client(&server, 0);
    server.add_fault(FaultRule::new(Fault::Status(500)).method("PUT").skip(2));
    for i in 0..2 {
        let path = Path::from(format!("ok-{i}"));
        store
            .put(&path, PutPayload::from_static(b"x"))
            .await
            .unwrap();
    }
    let third = store
        .put(&Path::from("bad"), PutPayload::from_static(b"x"))
        .await;
    assert!(third.is_err());
    store
        .put(&Path::from("ok-3"), PutPayload::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(server.object_keys(), vec!["ok-0", "ok-1", "ok-3"]);
}

#[tokio::test]
async fn permanent_500_makes_the_operation_fail() {
    let server = S3TestServer::start().await;
    let store = client(&server, 2);
    let path = Path::from("broken.txt");
    store
        .put(&path, PutPayload::from_static(b"data"))
        .await
        .unwrap();

    server.add_fault(
        FaultRule::new(Fault::Status(500))
            .method("GET")
            .path_contains("broken")
            .forever(),
    );
    let err = store.get(&path).await.unwrap_err();
    assert!(err.to_string().contains("500"), "{err}");
    assert_eq!(count(&server, "GET", "broken.txt"), 3, "1 try + 2 retries");

    server.clear_faults();
    assert_eq!(
        store.get(&path).await.unwrap().bytes().await.unwrap(),
        "data"
    );
}

#[tokio::test]
async fn wrong_credentials_are_refused() {
    let server = S3TestServer::start().await;
    let bad = client_with_secret(&server, 0, "not-the-secret");
    let err = bad
        .put(&Path::from("x"), PutPayload::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, object_store::Error::PermissionDenied { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("403"), "{err}");

    let unknown_key = AmazonS3Builder::new()
        .with_endpoint(server.endpoint())
        .with_bucket_name(server.bucket())
        .with_region(server.region())
        .with_access_key_id("someone-else")
        .with_secret_access_key(server.secret_access_key())
        .with_allow_http(true)
        .with_retry(RetryConfig {
            max_retries: 0,
            ..Default::default()
        })
        .build()
        .unwrap();
    let err = unknown_key.get(&Path::from("x")).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    assert!(server.object_keys().is_empty());
}

#[tokio::test]
async fn reset_after_bytes_cuts_a_get_short() {
    let server = S3TestServer::start().await;
    let path = Path::from("big.bin");
    let payload = data(MIB, 5);
    client(&server, 0)
        .put(&path, payload.clone().into())
        .await
        .unwrap();
    const CUT: usize = 100_000;

    // Without retries: the client gets exactly CUT bytes, then an error.
    server.add_fault(FaultRule::new(Fault::ResetAfterBytes(CUT as u64)).method("GET"));
    let result = client(&server, 0).get(&path).await.unwrap();
    let mut stream = result.into_stream();
    let mut received = Vec::new();
    let mut failed = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => received.extend_from_slice(&bytes),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the body must end in an error");
    assert_eq!(received.len(), CUT);
    assert_eq!(received[..], payload[..CUT]);

    // With retries: object_store resumes with a ranged GET and gets the whole object.
    server.clear_requests();
    server.add_fault(FaultRule::new(Fault::ResetAfterBytes(CUT as u64)).method("GET"));
    let got = client(&server, 3)
        .get(&path)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got, payload);
    let gets: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(gets.len(), 2);
    let range = gets[1].header("range").expect("resumed GET has a Range");
    assert_eq!(range, format!("bytes={CUT}-{}", MIB - 1));

    // A body no longer than the limit is served whole.
    server.add_fault(FaultRule::new(Fault::ResetAfterBytes(MIB as u64)).method("GET"));
    let whole = client(&server, 0).get(&path).await.unwrap().bytes().await;
    assert_eq!(whole.unwrap(), payload);
}

#[tokio::test]
async fn reset_connection_drops_the_request() {
    let server = S3TestServer::start().await;
    let path = Path::from("r.txt");
    client(&server, 0)
        .put(&path, PutPayload::from_static(b"data"))
        .await
        .unwrap();

    server.add_fault(FaultRule::new(Fault::ResetConnection).method("GET"));
    let err = client(&server, 0).get(&path).await.unwrap_err();
    assert!(!err.to_string().contains("status"), "no HTTP status: {err}");

    server.add_fault(FaultRule::new(Fault::ResetConnection).method("GET"));
    let got = client(&server, 3).get(&path).await.unwrap().bytes().await;
    assert_eq!(got.unwrap(), "data");
    assert_eq!(count(&server, "GET", "r.txt"), 3);
}

#[tokio::test]
async fn a_delay_holds_the_answer_back_then_answers_in_full() {
    let server = S3TestServer::start().await;
    let store = client(&server, 0);
    let path = Path::from("slow.txt");
    store
        .put(&path, PutPayload::from_static(b"x"))
        .await
        .unwrap();

    // Held back for an hour: a client that waits 5 s gives up on the answer, which the server
    // received and has not sent.
    server.add_fault(
        FaultRule::new(Fault::Delay(Duration::from_secs(3600)))
            .method("HEAD")
            .times(1),
    );
    let impatient = AmazonS3Builder::new()
        .with_endpoint(server.endpoint())
        .with_bucket_name(server.bucket())
        .with_region(server.region())
        .with_access_key_id(server.access_key_id())
        .with_secret_access_key(server.secret_access_key())
        .with_client_options(
            ClientOptions::new()
                .with_allow_http(true)
                .with_timeout(Duration::from_secs(5)),
        )
        .with_retry(RetryConfig {
            max_retries: 0,
            ..RetryConfig::default()
        })
        .build()
        .unwrap();
    let err = impatient.head(&path).await.unwrap_err();
    assert!(
        !matches!(err, object_store::Error::NotFound { .. }),
        "held back, not refused: {err}"
    );
    assert_eq!(
        count(&server, "HEAD", "slow.txt"),
        1,
        "the server got it: {err}"
    );

    // A short delay: the answer comes, complete and right.
    server.add_fault(
        FaultRule::new(Fault::Delay(Duration::from_millis(50)))
            .method("HEAD")
            .times(1),
    );
    assert_eq!(store.head(&path).await.unwrap().size, 1);
    assert_eq!(count(&server, "HEAD", "slow.txt"), 2);
}

#[tokio::test]
async fn dropping_the_server_stops_it_and_removes_its_files() {
    let server = S3TestServer::start().await;
    let endpoint = server.endpoint();
    let dir = server.storage_dir().to_path_buf();
    assert!(dir.join(server.bucket()).is_dir());
    drop(server);
    assert!(!dir.exists());
    // Let the aborted accept loop finish, then the port refuses connections.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let addr = endpoint.trim_start_matches("http://");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// Sends one raw, unsigned HTTP/1.1 request and reads until the server closes.
async fn raw_request(server: &S3TestServer, method: &str) -> (Vec<u8>, std::io::Result<usize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.endpoint().trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req = format!(
        "{method} /{}/k HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n",
        server.bucket()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let result = stream.read_to_end(&mut buf).await;
    (buf, result)
}

#[tokio::test]
async fn faults_apply_before_authentication_on_the_wire() {
    let server = S3TestServer::start().await;

    // Unsigned requests are refused by s3s...
    let (resp, _) = raw_request(&server, "GET").await;
    assert!(
        resp.starts_with(b"HTTP/1.1 403"),
        "{}",
        String::from_utf8_lossy(&resp)
    );

    // ...but a Status fault answers first, with an S3-style XML error.
    server.add_fault(FaultRule::new(Fault::Status(503)));
    let (resp, _) = raw_request(&server, "GET").await;
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("<Code>SlowDown</Code>"), "{text}");

    // ResetConnection: not a single byte of response.
    server.add_fault(FaultRule::new(Fault::ResetConnection));
    let (resp, _) = raw_request(&server, "GET").await;
    assert!(resp.is_empty(), "{}", String::from_utf8_lossy(&resp));
    assert_eq!(server.requests().len(), 3);
}
