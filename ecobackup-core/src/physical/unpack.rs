//! A [`Sink`] that unpacks a tar stream into a directory (the `tar` crate, on a blocking
//! thread fed through a pipe), keeping modes and modification times, and handing every entry
//! to the data directory's owner when ecobackup runs as root.
//!
//! The directory is one the restore found empty (or created): when anything fails, `abort`
//! empties it again, so a failed restore never leaves a data directory that looks usable.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::pipeline::{ByteStream, Sink, SinkReceipt};

/// Unpacks into `dir`.
pub struct UnpackSink {
    dir: PathBuf,
    owner: Option<(u32, u32)>,
}

impl UnpackSink {
    /// Unpacks into `dir`, which must exist; with `owner`, every entry is given to that
    /// uid/gid afterwards.
    pub fn new(dir: impl Into<PathBuf>, owner: Option<(u32, u32)>) -> UnpackSink {
        UnpackSink {
            dir: dir.into(),
            owner,
        }
    }
}

#[async_trait]
impl Sink for UnpackSink {
    async fn write(&mut self, input: ByteStream) -> Result<SinkReceipt> {
        let dir = self.dir.clone();
        let (bytes, ()) = crate::io::feed_blocking(
            input,
            "feeding the tar unpacker",
            "unpacking the base backup",
            move |reader| {
                let mut archive = tar::Archive::new(reader);
                archive.set_preserve_permissions(true);
                archive.set_preserve_mtime(true);
                archive.set_overwrite(false);
                archive.unpack(&dir).map_err(|e| {
                    Error::io(
                        format!("unpacking the base backup into {}", dir.display()),
                        e,
                    )
                })
            },
        )
        .await?;
        if let Some((uid, gid)) = self.owner {
            let dir = self.dir.clone();
            tokio::task::spawn_blocking(move || chown_tree(&dir, uid, gid))
                .await
                .map_err(|e| {
                    Error::io("handing the data directory over", std::io::Error::other(e))
                })??;
        }
        Ok(SinkReceipt {
            bytes,
            location: Some(self.dir.display().to_string()),
        })
    }

    async fn abort(&mut self) {
        let dir = self.dir.clone();
        let emptied = tokio::task::spawn_blocking(move || empty_dir(&dir)).await;
        if !matches!(emptied, Ok(Ok(()))) {
            tracing::warn!(dir = %self.dir.display(), "could not empty the data directory after a failed restore; remove its contents before the next try");
        }
    }
}

/// Gives `dir` and everything under it (not following links) to `uid:gid`.
pub fn chown_tree(dir: &Path, uid: u32, gid: u32) -> Result<()> {
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
            .map_err(|e| Error::io(format!("giving {} to uid {uid}", path.display()), e))?;
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
            {
                let entry =
                    entry.map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                stack.push(entry.path());
            }
        }
    }
    Ok(())
}

/// Removes everything inside `dir`, keeping `dir`.
pub fn empty_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if std::fs::symlink_metadata(&path)?.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn stream(data: Vec<u8>, fail_at_end: bool) -> ByteStream {
        let mut items: Vec<Result<bytes::Bytes>> = data
            .chunks(1000)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        if fail_at_end {
            items.pop();
            items.push(Err(Error::Cancelled("the digest did not match".into())));
        }
        Box::pin(futures::stream::iter(items))
    }

    fn archive() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o700);
        header.set_size(0);
        builder.append_data(&mut header, "base/", &[][..]).unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_mode(0o600);
        header.set_size(5000);
        builder
            .append_data(&mut header, "base/1259", &[9u8; 5000][..])
            .unwrap();
        builder.into_inner().unwrap()
    }

    #[tokio::test]
    async fn modes_are_kept_and_a_failed_stream_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = UnpackSink::new(dir.path(), None);
        let receipt = sink.write(stream(archive(), false)).await.unwrap();
        assert_eq!(receipt.bytes, archive().len() as u64);
        let file = dir.path().join("base/1259");
        assert_eq!(std::fs::read(&file).unwrap(), vec![9u8; 5000]);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&dir.path().join("base")), 0o700);

        let dir = tempfile::tempdir().unwrap();
        let mut sink = UnpackSink::new(dir.path(), None);
        let err = sink.write(stream(archive(), true)).await.unwrap_err();
        assert!(err.to_string().contains("digest"), "{err}");
        sink.abort().await;
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
