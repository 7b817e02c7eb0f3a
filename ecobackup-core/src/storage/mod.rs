//! Object storage for repositories: local directories, S3-compatible services and memory, all
//! through the `object_store` crate.
//!
//! [`Storage`] is a store plus the URL it came from (for messages). Small objects (manifests,
//! markers, locks) are written whole and atomically; artifacts stream through an
//! [`ObjectSink`] (multipart, equal parts) and back through an [`ObjectSource`] (resumes a
//! dropped download with a ranged GET).

mod object_lock;
mod private;
mod sink;
mod source;
mod url;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};

pub use object_lock::{ObjectLock, ObjectLockMode};
pub use private::{
    create_private_dir_all, make_private, write_private_file, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE,
};
pub use sink::{part_size_for, ObjectSink, MAX_PARTS};
pub use source::ObjectSource;
pub use url::{RepoUrl, DEFAULT_REPOSITORY};

use crate::crypto::{ExposeSecret, SecretString};
use crate::error::{Error, Result, StorageFault};

/// How to reach an S3-compatible service, and how hard to try.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StorageOptions {
    /// Endpoint URL (`https://s3.eu-central-003.backblazeb2.com`); `None` for AWS.
    pub endpoint: Option<String>,
    /// Region; `None` reads `AWS_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Allow `http://` endpoints (test servers on loopback only).
    pub allow_http: bool,
    /// Bucket-in-hostname addressing instead of path style.
    pub virtual_hosted_style: bool,
    /// Access key id; `None` reads `AWS_ACCESS_KEY_ID` or instance metadata.
    pub access_key_id: Option<SecretString>,
    /// Secret access key; `None` reads `AWS_SECRET_ACCESS_KEY` or instance metadata.
    pub secret_access_key: Option<SecretString>,
    /// Retries of a failed request (5xx, timeout, reset) before giving up.
    pub max_retries: usize,
    /// First backoff between retries (doubling up to 15 s).
    pub initial_backoff: Duration,
    /// Give up on one request after this long, retries included.
    pub retry_timeout: Duration,
    /// Multipart parts uploaded at once.
    pub part_concurrency: usize,
    /// Lock every object written (S3 only; the bucket must have Object Lock enabled).
    pub object_lock: Option<ObjectLock>,
    /// Read the `AWS_*` environment variables (credentials, session token, endpoint, region)
    /// and fall back to them for what is not set here. `false`: only what is set here, and
    /// the instance's own role when no key is given.
    pub environment: bool,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            endpoint: None,
            region: None,
            allow_http: false,
            virtual_hosted_style: false,
            access_key_id: None,
            secret_access_key: None,
            max_retries: 10,
            initial_backoff: Duration::from_millis(200),
            retry_timeout: Duration::from_secs(300),
            part_concurrency: 4,
            object_lock: None,
            environment: false,
        }
    }
}

/// An object store and the URL it was opened from.
#[derive(Clone, Debug)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// The store objects are written through when they are locked (S3 Object Lock); reads,
    /// listings and deletions go through `store`.
    writer: Option<Arc<dyn ObjectStore>>,
    url: String,
    /// The S3 endpoint, when not AWS's.
    endpoint: Option<String>,
    prefix: String,
    part_concurrency: usize,
    /// The directory of a `file://` repository: its objects are made private (0700/0600).
    local_root: Option<std::path::PathBuf>,
}

/// One object in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the repository root.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was last written.
    pub modified: DateTime<Utc>,
}

fn memory_stores() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    STORES.get_or_init(|| Mutex::new(HashMap::new()))
}

impl Storage {
    /// Opens the store behind `url`. Nothing is contacted yet: a bad credential or an
    /// unreachable endpoint shows at the first operation.
    pub fn open(url: &RepoUrl, options: &StorageOptions) -> Result<Storage> {
        let display = url.to_string();
        let invalid = |detail: String| Error::InvalidUrl {
            url: display.clone(),
            detail,
        };
        let mut writer: Option<Arc<dyn ObjectStore>> = None;
        let (store, prefix): (Arc<dyn ObjectStore>, String) = match url {
            RepoUrl::File(_) | RepoUrl::Memory(_) if options.object_lock.is_some() => {
                return Err(invalid(
                    "Object Lock ([retention] lock) needs an S3 repository whose bucket has Object Lock enabled".to_owned(),
                ));
            }
            RepoUrl::File(path) => {
                create_private_dir_all(path)?;
                let store = LocalFileSystem::new_with_prefix(path)
                    .map_err(|e| invalid(e.to_string()))?
                    .with_fsync(true);
                (Arc::new(store), String::new())
            }
            RepoUrl::Memory(name) => {
                let mut stores = memory_stores().lock().unwrap_or_else(|p| p.into_inner());
                let store = stores
                    .entry(name.clone())
                    .or_insert_with(|| Arc::new(InMemory::new()));
                (store.clone(), String::new())
            }
            RepoUrl::S3 { bucket, prefix } => {
                let builder = match options.environment {
                    true => AmazonS3Builder::from_env(),
                    false => AmazonS3Builder::new(),
                };
                let mut builder = builder
                    .with_bucket_name(bucket)
                    .with_allow_http(options.allow_http)
                    .with_virtual_hosted_style_request(options.virtual_hosted_style)
                    // Bulk DeleteObjects must carry a checksum header, which Backblaze B2 and
                    // Cloudflare R2 reject; plain DELETEs work on every S3-compatible service.
                    .with_disable_bulk_delete(true)
                    // Parts are not hashed for the signature: TLS protects them in transit, and
                    // every artifact carries its own SHA-256 (manifest) and age authentication.
                    // Hashing each part again cost about a tenth of a 2-core backup's CPU.
                    .with_unsigned_payload(true)
                    .with_retry(RetryConfig {
                        backoff: object_store::BackoffConfig {
                            init_backoff: options.initial_backoff,
                            max_backoff: Duration::from_secs(15),
                            base: 2.0,
                        },
                        max_retries: options.max_retries,
                        retry_timeout: options.retry_timeout,
                    });
                let client = ClientOptions::new()
                    .with_allow_http(options.allow_http)
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_timeout(Duration::from_secs(300));

                if let Some(endpoint) = &options.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                let region = options
                    .region
                    .clone()
                    .or_else(|| {
                        options
                            .environment
                            .then(|| std::env::var("AWS_REGION").ok())
                            .flatten()
                    })
                    .unwrap_or_else(|| "us-east-1".to_owned());
                builder = builder.with_region(region);
                if let Some(key) = &options.access_key_id {
                    builder = builder.with_access_key_id(key.expose_secret());
                }
                if let Some(secret) = &options.secret_access_key {
                    builder = builder.with_secret_access_key(secret.expose_secret());
                }
                // Object Lock headers go only on the store that writes: object_store signs
                // default headers on writes, not on listings, and S3 refuses a request with
                // unsigned x-amz-* headers.
                if let Some(lock) = &options.object_lock {
                    let locking = builder
                        .clone()
                        .with_client_options(client.clone().with_default_headers(lock.headers()?))
                        // S3 refuses a PUT with Object Lock headers that carries no checksum.
                        .with_checksum_algorithm(object_store::aws::Checksum::SHA256)
                        .build()
                        .map_err(|e| invalid(e.to_string()))?;
                    writer = Some(Arc::new(locking));
                }
                let store = builder
                    .with_client_options(client)
                    .build()
                    .map_err(|e| invalid(e.to_string()))?;
                (Arc::new(store), prefix.clone())
            }
        };
        Ok(Storage {
            store,
            writer,
            url: display,
            endpoint: match url {
                RepoUrl::S3 { .. } => options.endpoint.clone(),
                _ => None,
            },
            prefix,
            part_concurrency: options.part_concurrency.max(1),
            local_root: match url {
                RepoUrl::File(path) => Some(path.clone()),
                _ => None,
            },
        })
    }

    /// Wraps any object store (for library users with their own, and for tests).
    pub fn from_store(store: Arc<dyn ObjectStore>, url: impl Into<String>) -> Storage {
        Storage {
            store,
            writer: None,
            url: url.into(),
            endpoint: None,
            prefix: String::new(),
            part_concurrency: 4,
            local_root: None,
        }
    }

    /// The URL, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL and, for an S3 service other than AWS, its endpoint (`s3://b/prod at
    /// https://s3.eu-central-003.backblazeb2.com`): two providers may have buckets of the same
    /// name.
    pub fn location(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => format!("{} at {endpoint}", self.url),
            None => self.url.clone(),
        }
    }

    pub(crate) fn path(&self, key: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.prefix))
        }
    }

    fn key_of(&self, path: &ObjectPath) -> String {
        let full = path.as_ref();
        if self.prefix.is_empty() {
            full.to_owned()
        } else {
            full.strip_prefix(&self.prefix)
                .map(|k| k.trim_start_matches('/').to_owned())
                .unwrap_or_else(|| full.to_owned())
        }
    }

    pub(crate) fn error(&self, op: &'static str, key: &str, e: object_store::Error) -> Error {
        match e {
            object_store::Error::NotFound { .. } => Error::NotFound {
                key: key.to_owned(),
                repo: self.url.clone(),
            },
            other => {
                let (fault, detail) = explain(&other);
                Error::Storage {
                    op,
                    key: key.to_owned(),
                    repo: self.url.clone(),
                    detail,
                    fault,
                }
            }
        }
    }

    /// Writes a small object whole; readers see the old object or the new one, never a part.
    pub async fn put(&self, key: &str, data: impl Into<Bytes>) -> Result<()> {
        self.before_local_write(key)?;
        self.write_store()
            .put(&self.path(key), PutPayload::from_bytes(data.into()))
            .await
            .map(drop)
            .map_err(|e| self.error("writing", key, e))?;
        self.after_local_write(key)
    }

    /// On `file://`, creates the object's missing folders with mode 0700 before the object
    /// store writes into them (it would create them 0777 less the umask).
    pub(crate) fn before_local_write(&self, key: &str) -> Result<()> {
        match (&self.local_root, std::path::Path::new(key).parent()) {
            (Some(root), Some(folder)) => create_private_dir_all(&root.join(folder)),
            _ => Ok(()),
        }
    }

    /// On `file://`, sets a written object's mode to 0600. Until then it sat in folders only
    /// the owner can enter.
    pub(crate) fn after_local_write(&self, key: &str) -> Result<()> {
        match &self.local_root {
            Some(root) => make_private(&root.join(key)),
            None => Ok(()),
        }
    }

    /// Reads a small object whole; `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let result = async { self.store.get(&self.path(key)).await?.bytes().await }.await;
        match result {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("reading", key, e)),
        }
    }

    /// The size and last-modified time of the object `key`; `None` when it does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
        match self.store.head(&self.path(key)).await {
            Ok(meta) => Ok(Some(ObjectInfo {
                key: key.to_owned(),
                size: meta.size,
                modified: meta.last_modified,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("reading", key, e)),
        }
    }

    /// Deletes an object; deleting one that does not exist is not an error.
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("deleting", key, e)),
        }
    }

    /// Every object whose key starts with the folder `prefix` (`backups/`, `locks/x/`), sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let folder = prefix.trim_end_matches('/');
        let path = if folder.is_empty() && self.prefix.is_empty() {
            None
        } else {
            Some(self.path(folder))
        };
        let metas: Vec<_> = self
            .store
            .list(path.as_ref())
            .try_collect()
            .await
            .map_err(|e| self.error("listing", prefix, e))?;
        let mut objects: Vec<ObjectInfo> = metas
            .into_iter()
            .map(|m| ObjectInfo {
                key: self.key_of(&m.location),
                size: m.size,
                modified: m.last_modified,
            })
            .collect();
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// A sink that streams into the object `key`, sized for about `size_hint` bytes.
    pub fn sink(&self, key: &str, size_hint: Option<u64>) -> ObjectSink {
        ObjectSink::new(self.clone(), key, size_hint, self.part_concurrency)
    }

    /// A source that streams the object `key` back.
    pub fn source(&self, key: &str) -> ObjectSource {
        ObjectSource::new(self.clone(), key)
    }

    pub(crate) fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The store that writes (with the Object Lock headers, when locked).
    pub(crate) fn write_store(&self) -> &Arc<dyn ObjectStore> {
        self.writer.as_ref().unwrap_or(&self.store)
    }
}

/// Turns an object_store error into its kind and one line that says what to do.
fn explain(e: &object_store::Error) -> (StorageFault, String) {
    let text = e.to_string().replace('\n', " ");
    let lower = text.to_ascii_lowercase();
    // Numbers appear in URLs and ports too: look for statuses and S3 error codes as words.
    let (fault, hint) = if lower.contains("error sending request")
        || lower.contains("connection refused")
        || lower.contains("dns error")
        || lower.contains("timed out")
        || lower.contains("tcp connect")
    {
        (
            StorageFault::Unavailable,
            "cannot reach the endpoint: check the endpoint URL, the network and any firewall",
        )
    } else if lower.contains("nosuchbucket") {
        (
            StorageFault::NoBucket,
            "the bucket does not exist: create it, or fix the bucket name in the repository URL",
        )
    } else if lower.contains("status 403")
        || lower.contains("forbidden")
        || lower.contains("signaturedoesnotmatch")
        || lower.contains("accessdenied")
        || lower.contains("invalidaccesskeyid")
    {
        (
            StorageFault::AccessDenied,
            "access denied: check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the *_file keys) and the bucket's permissions",
        )
    } else if refused_as_invalid(&lower) {
        (
            StorageFault::Other,
            "the store refused the request itself (a client error, not an outage): retrying will not help; check the bucket's settings (Object Lock needs a bucket created with it) and the endpoint",
        )
    } else {
        (
            StorageFault::Unavailable,
            "retries exhausted or the request was refused",
        )
    };
    (fault, format!("{hint} ({text})"))
}

/// A 4xx status other than a timeout (408) or throttling (429), as object_store words it
/// ("…status code: 400 Bad Request…"), or an S3 error code for a request that is wrong.
fn refused_as_invalid(lower: &str) -> bool {
    let status = lower
        .split("status code: ")
        .skip(1)
        .filter_map(|rest| rest.get(..3)?.parse::<u16>().ok())
        .next();
    // S3 answers some passing conditions with a 4xx too: a slow upload (RequestTimeout, 400),
    // a conflicting operation in progress (OperationAborted, 409), throttling (SlowDown).
    let passing = ["requesttimeout", "operationaborted", "slowdown"]
        .iter()
        .any(|code| lower.contains(code));
    if passing {
        return false;
    }
    matches!(status, Some(400..=499) if status != Some(408) && status != Some(429))
        || lower.contains("invalidrequest")
        || lower.contains("invalidargument")
        || lower.contains("malformedxml")
}

#[cfg(test)]
mod tests {
    use super::refused_as_invalid;

    #[test]
    fn client_errors_are_permanent_and_timeouts_and_throttling_are_not() {
        let said = |status: &str| format!("server returned non-2xx status code: {status}: <error>");
        assert!(refused_as_invalid(&said("400 bad request")));
        assert!(refused_as_invalid(&said("409 conflict")));
        assert!(!refused_as_invalid(&said("408 request timeout")));
        assert!(!refused_as_invalid(&said("429 too many requests")));
        assert!(!refused_as_invalid(&said("503 service unavailable")));
        assert!(refused_as_invalid("response: <code>invalidrequest</code>"));
        assert!(!refused_as_invalid(
            "error sending request for url (http://127.0.0.1:9/b/k)"
        ));
        let timeout = said("400 bad request: <code>requesttimeout</code>");
        assert!(!refused_as_invalid(&timeout));
        assert!(!refused_as_invalid(&said(
            "409 conflict: <code>operationaborted</code>"
        )));
    }
}
