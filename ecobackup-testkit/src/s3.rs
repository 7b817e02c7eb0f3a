//! An in-process S3 server for tests, with fault injection.
//!
//! [`S3TestServer`] serves the S3 protocol on `127.0.0.1` (a random free port) with
//! [`s3s`] and the file-system backend [`s3s_fs`], storing objects in a temporary directory.
//! Requests must be signed (SigV4) with the server's fixed credentials. Every request is
//! recorded, and [`FaultRule`]s make chosen requests fail: an HTTP error status, a delay, a
//! dropped connection (before or after the request took effect), or a response body cut short. Recording and faults come before
//! authentication, so they also see requests that s3s would refuse.
//!
//! Matching tips for `object_store` clients: part uploads are `PUT …?partNumber=N&uploadId=…`,
//! `CreateMultipartUpload` is `POST …?uploads`, completion is `POST …?uploadId=…`, abort is
//! `DELETE …?uploadId=…`, and `delete` uses the bulk API, `POST /bucket?delete`.
//!
//! ```no_run
//! # async fn demo() {
//! use ecobackup_testkit::s3::{Fault, FaultRule, S3TestServer};
//!
//! let server = S3TestServer::start().await;
//! // The third part upload fails once with 503.
//! server.add_fault(
//!     FaultRule::new(Fault::Status(503))
//!         .method("PUT")
//!         .query_contains("partNumber=3"),
//! );
//! println!("{} {}", server.endpoint(), server.bucket());
//! # }
//! ```
//!
//! Notes on `s3s-fs` 0.14: it keeps its internal files (object metadata, multipart upload
//! records and parts, temporary files) in the storage root, beside the bucket directories,
//! so a bucket directory holds only complete objects. `CompleteMultipartUpload` requires the
//! parts to be numbered 1, 2, … in order, and every part but the last to be at least 5 MiB,
//! like S3.

mod fault;

pub use fault::{Fault, FaultRule};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ecobackup_core::storage::StorageOptions;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use fault::{FaultBody, RuleState};

/// Name of the bucket created when the server starts.
pub const DEFAULT_BUCKET: &str = "ecobackup-test";
/// Region the server reports; any region in a signature is accepted.
pub const DEFAULT_REGION: &str = "us-east-1";
/// Access key id the server accepts.
pub const ACCESS_KEY_ID: &str = "ecobackup-test";
/// Secret access key the server accepts.
pub const SECRET_ACCESS_KEY: &str = "ecobackup-test-secret";

/// One HTTP request as the server received it, before authentication and faults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// HTTP method, upper-case as sent (`"GET"`, `"PUT"`, …).
    pub method: String,
    /// Request path as sent (percent-encoded), e.g. `"/ecobackup-test/dir/key"`.
    pub path: String,
    /// Raw query string without the `?`, empty if none, e.g. `"partNumber=1&uploadId=…"`.
    pub query: String,
    /// Headers in the order received, names lower-case; values that are not UTF-8 are
    /// converted lossily.
    pub headers: Vec<(String, String)>,
}

impl RecordedRequest {
    /// The value of the first header with this name (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// State shared by the server task and the handle.
#[derive(Debug, Default)]
struct Shared {
    rules: Mutex<Vec<RuleState>>,
    requests: Mutex<Vec<RecordedRequest>>,
}

/// Locks a mutex, ignoring poisoning: a panicking test must not hide the server's state.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An S3 server running in the current Tokio runtime, for tests.
///
/// Dropping it stops the server (the accept loop and every open connection) and removes its
/// storage directory.
#[derive(Debug)]
pub struct S3TestServer {
    task: JoinHandle<()>,
    addr: SocketAddr,
    shared: Arc<Shared>,
    bucket: String,
    dir: TempDir,
}

impl S3TestServer {
    /// Starts a server with an empty bucket named [`DEFAULT_BUCKET`].
    ///
    /// # Panics
    ///
    /// If called outside a Tokio runtime, or if the temporary directory, the bucket or the
    /// listening socket cannot be created.
    pub async fn start() -> S3TestServer {
        let dir = tempfile::Builder::new()
            .prefix("ecobackup-s3-")
            .tempdir()
            .unwrap_or_else(|e| panic!("S3TestServer: cannot create a temporary directory: {e}"));
        let bucket = DEFAULT_BUCKET.to_string();
        std::fs::create_dir(dir.path().join(&bucket)).unwrap_or_else(|e| {
            panic!(
                "S3TestServer: cannot create the bucket directory in {}: {e}",
                dir.path().display()
            )
        });
        let fs = s3s_fs::FileSystem::new(dir.path())
            .unwrap_or_else(|e| panic!("S3TestServer: cannot open the s3s-fs storage: {e:?}"));
        let service = {
            let mut b = S3ServiceBuilder::new(fs);
            b.set_auth(SimpleAuth::from_single(ACCESS_KEY_ID, SECRET_ACCESS_KEY));
            b.build()
        };

        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap_or_else(|e| panic!("S3TestServer: cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("S3TestServer: cannot read the bound address: {e}"));

        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(accept_loop(listener, service, Arc::clone(&shared)));
        S3TestServer {
            task,
            addr,
            shared,
            bucket,
            dir,
        }
    }

    /// Base URL of the server, `http://127.0.0.1:PORT`. Use path-style requests.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Settings that reach this server: its endpoint, region and credentials, plain HTTP;
    /// everything else as [`StorageOptions::default`].
    pub fn storage_options(&self) -> StorageOptions {
        let mut options = StorageOptions::default();
        options.endpoint = Some(self.endpoint());
        options.region = Some(self.region().to_owned());
        options.allow_http = true;
        options.access_key_id = Some(self.access_key_id().to_owned().into());
        options.secret_access_key = Some(self.secret_access_key().to_owned().into());
        options
    }

    /// Name of the bucket created at start.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Region to sign requests for: `"us-east-1"`.
    pub fn region(&self) -> &str {
        DEFAULT_REGION
    }

    /// Access key id the server accepts.
    pub fn access_key_id(&self) -> &str {
        ACCESS_KEY_ID
    }

    /// Secret access key the server accepts.
    pub fn secret_access_key(&self) -> &str {
        SECRET_ACCESS_KEY
    }

    /// Adds a fault rule after the existing ones. It applies to requests that arrive from now
    /// on.
    pub fn add_fault(&self, rule: FaultRule) {
        lock(&self.shared.rules).push(RuleState::new(rule));
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        lock(&self.shared.rules).clear();
    }

    /// Every request received so far, in arrival order, including refused and faulted ones.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Keys of the complete objects in the bucket, sorted.
    ///
    /// Read from the storage directory: in-progress multipart uploads and `s3s-fs`'s metadata
    /// live outside the bucket directory and are not listed. Keys are the object files' paths
    /// relative to the bucket directory, with `/` separators; "directory" marker objects
    /// (keys ending in `/`) are not listed.
    pub fn object_keys(&self) -> Vec<String> {
        let root = self.bucket_dir();
        let mut keys = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
                panic!("S3TestServer: cannot read {}: {e}", dir.display());
            });
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(file_type) = entry.file_type() else {
                    continue;
                };
                if file_type.is_dir() {
                    dirs.push(path);
                } else if file_type.is_file() {
                    if let Ok(rel) = path.strip_prefix(&root) {
                        let parts: Vec<_> = rel
                            .components()
                            .map(|c| c.as_os_str().to_string_lossy().into_owned())
                            .collect();
                        keys.push(parts.join("/"));
                    }
                }
            }
        }
        keys.sort();
        keys
    }

    /// Number of multipart uploads that were created and neither completed nor aborted.
    ///
    /// Counted from `s3s-fs`'s upload records (`.upload-<id>.json` in the storage root),
    /// which it writes on `CreateMultipartUpload` and removes on `CompleteMultipartUpload` or
    /// `AbortMultipartUpload`. This reflects what the server actually did, also when a
    /// completion was refused or faulted.
    pub fn pending_multipart_uploads(&self) -> usize {
        let entries = std::fs::read_dir(self.dir.path()).unwrap_or_else(|e| {
            panic!(
                "S3TestServer: cannot read {}: {e}",
                self.dir.path().display()
            );
        });
        entries
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with(".upload-") && name.ends_with(".json")
            })
            .count()
    }

    /// The storage root (`s3s-fs`'s root directory); the bucket is a directory in it.
    pub fn storage_dir(&self) -> &Path {
        self.dir.path()
    }

    fn bucket_dir(&self) -> PathBuf {
        self.dir.path().join(&self.bucket)
    }
}

impl Drop for S3TestServer {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, service: S3Service, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let service = service.clone();
                let shared = Arc::clone(&shared);
                connections.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        handle(service.clone(), Arc::clone(&shared), req)
                    });
                    // Errors here are client disconnects or injected resets.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves one request: record it, apply a fault if a rule picks it, else pass it to s3s.
async fn handle(
    service: S3Service,
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<FaultBody>, s3s::StdError> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let fault = fault::pick_fault(&mut lock(&shared.rules), &method, &path, &query);
    lock(&shared.requests).push(RecordedRequest {
        method,
        path: path.clone(),
        query,
        headers,
    });

    let mut limit = None;
    match fault {
        None => {}
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::ResetAfterBytes(n)) => limit = Some(n),
        // An error from the service makes hyper close the connection without a response.
        Some(Fault::ResetConnection) => return Err("injected fault: connection reset".into()),
        Some(Fault::DelayAfterExecuting(pause)) => {
            let executed = service
                .call(req.map(s3s::Body::from))
                .await
                .map_err(s3s::StdError::from)?;
            tokio::time::sleep(pause).await;
            return Ok(executed.map(|body| FaultBody::new(body, None)));
        }
        Some(Fault::ResetAfterExecuting) => {
            let executed = service.call(req.map(s3s::Body::from)).await;
            let status = executed.map(|r| r.status().as_u16()).unwrap_or(0);
            return Err(format!(
                "injected fault: connection reset after the request was executed (status {status})"
            )
            .into());
        }
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code)
                .map_err(|e| format!("injected fault: bad HTTP status {code}: {e}"))?;
            let mut body = req.into_body();
            while let Some(frame) = body.frame().await {
                if frame.is_err() {
                    break;
                }
            }
            let xml = fault::error_body(code, &path);
            let resp = Response::builder()
                .status(status)
                .header(http::header::CONTENT_TYPE, "application/xml")
                .header(http::header::CONTENT_LENGTH, xml.len())
                .header("x-amz-request-id", "ecobackup-testkit-fault")
                .body(FaultBody::new(s3s::Body::from(xml), None))?;
            return Ok(resp);
        }
    }

    let resp = service
        .call(req.map(s3s::Body::from))
        .await
        .map_err(s3s::StdError::from)?;
    Ok(resp.map(|body| FaultBody::new(body, limit)))
}
