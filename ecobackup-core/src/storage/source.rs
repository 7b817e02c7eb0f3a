//! Streaming an object back, resuming with a ranged GET when a connection drops mid-download.

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::{GetOptions, GetRange, ObjectStoreExt};

use super::Storage;
use crate::error::{Error, Result};
use crate::pipeline::{ByteStream, Source, SourceInfo};

/// How many times one download may resume after a dropped connection.
const MAX_RESUMES: u32 = 10;

/// A [`Source`] reading one object.
pub struct ObjectSource {
    storage: Storage,
    key: String,
    size: Option<u64>,
}

impl ObjectSource {
    pub(crate) fn new(storage: Storage, key: &str) -> Self {
        ObjectSource {
            storage,
            key: key.to_owned(),
            size: None,
        }
    }
}

struct Download {
    storage: Storage,
    key: String,
    size: u64,
    etag: Option<String>,
    offset: u64,
    resumes: u32,
    body: Option<BoxStream<'static, object_store::Result<bytes::Bytes>>>,
}

impl Download {
    async fn next(&mut self) -> Option<Result<bytes::Bytes>> {
        loop {
            if self.offset >= self.size {
                return None;
            }
            if self.body.is_none() {
                let request = request(
                    self.storage.clone(),
                    self.key.clone(),
                    self.offset,
                    self.etag.clone(),
                );
                match request.await {
                    Ok(body) => self.body = Some(body),
                    Err(e) => return Some(Err(e)),
                }
            }
            match self.body.as_mut()?.next().await {
                Some(Ok(chunk)) => {
                    self.offset += chunk.len() as u64;
                    return Some(Ok(chunk));
                }
                Some(Err(e)) if self.resumes < MAX_RESUMES => {
                    self.resumes += 1;
                    tracing::info!(key = %self.key, offset = self.offset, error = %e, "download interrupted, resuming with a ranged GET");
                    self.body = None;
                }
                Some(Err(e)) => return Some(Err(self.storage.error("downloading", &self.key, e))),
                None if self.offset < self.size => {
                    if self.resumes >= MAX_RESUMES {
                        return Some(Err(Error::Storage {
                            op: "downloading",
                            key: self.key.clone(),
                            repo: self.storage.url().to_owned(),
                            detail: format!(
                                "the object ended at byte {} of {}",
                                self.offset, self.size
                            ),
                            fault: crate::error::StorageFault::Unavailable,
                        }));
                    }
                    self.resumes += 1;
                    self.body = None;
                }
                None => return None,
            }
        }
    }
}

/// GETs the object from `offset` on; a resumed read must continue the same object (its etag),
/// not a newer one written under the same key meanwhile.
async fn request(
    storage: Storage,
    key: String,
    offset: u64,
    etag: Option<String>,
) -> Result<BoxStream<'static, object_store::Result<bytes::Bytes>>> {
    let options = GetOptions {
        range: (offset > 0).then_some(GetRange::Offset(offset)),
        if_match: etag.filter(|_| offset > 0),
        ..GetOptions::default()
    };
    let result = storage
        .store()
        .get_opts(&storage.path(&key), options)
        .await
        .map_err(|e| storage.error("downloading", &key, e))?;
    Ok(result.into_stream())
}

#[async_trait]
impl Source for ObjectSource {
    async fn open(&mut self) -> Result<ByteStream> {
        let meta = self
            .storage
            .store()
            .head(&self.storage.path(&self.key))
            .await
            .map_err(|e| self.storage.error("reading", &self.key, e))?;
        self.size = Some(meta.size);
        let download = Download {
            storage: self.storage.clone(),
            key: self.key.clone(),
            size: meta.size,
            etag: meta.e_tag,
            offset: 0,
            resumes: 0,
            body: None,
        };
        Ok(Box::pin(futures::stream::unfold(
            download,
            |mut d| async move { d.next().await.map(|item| (item, d)) },
        )))
    }

    fn describe(&self) -> SourceInfo {
        SourceInfo {
            name: self.key.clone(),
            size_hint: self.size,
        }
    }
}
