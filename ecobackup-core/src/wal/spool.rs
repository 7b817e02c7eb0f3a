//! The prefetch spool: segments downloaded ahead of recovery, for the next `wal-fetch` process
//! to find ready.
//!
//! A spool is a private directory (0700) per repository, `<root>/<16 hex digits of the
//! SHA-256 of the repository URL>/`, outside the data directory. It holds
//!
//! - `<segment>.<raw sha256>`: a segment, downloaded, authenticated and checked against its
//!   (signed) record, then renamed into place: an entry's name says which content it holds;
//! - `<segment>.lock`: held (`flock`) by the process downloading that segment, so that two
//!   prefetchers never download one segment twice, and a `wal-fetch` waits for a download in
//!   progress instead of starting another;
//! - `.<entry>.tmp-<random>`: a download in progress (a killed one leaves it; cleaned up).
//!
//! An entry is used only when its name carries the digest in the file's record read from the
//! repository for this very fetch, and the bytes copied out hash to it: an entry from another
//! archive that reused the URL, a damaged one or a half-written one is never used. Entries
//! behind the segment being fetched, of another timeline or not of this form are removed.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::fcntl::{Flock, FlockArg};
use sha2::Digest as _;

use super::archive::WalRecord;
use super::names::{Segment, WalFile};
use crate::error::{Error, IoContext, Result};
use crate::io::{FileSink, FileSource};
use crate::pipeline::Pipeline;
use crate::storage::create_private_dir_all;
use crate::transform::{DigestCheck, DigestResult};

/// How long a `wal-fetch` waits for another process's download of its segment.
pub const WAIT_FOR_DOWNLOAD: Duration = Duration::from_secs(60);
/// Temporary files older than this are debris of a killed download.
const STALE_TEMP: Duration = Duration::from_secs(3600);
/// Spools of other repositories untouched this long are removed.
const STALE_SPOOL: Duration = Duration::from_secs(24 * 3600);

/// The spool of one repository.
#[derive(Clone, Debug)]
pub struct Spool {
    root: PathBuf,
    dir: PathBuf,
}

/// A segment claimed for download: the lock is held until this is dropped.
#[derive(Debug)]
pub struct Claim {
    path: PathBuf,
    _lock: Flock<fs::File>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        // Removed before it is unlocked: a waiter then sees no lock, or an unlocked one.
        let _ = fs::remove_file(&self.path);
    }
}

impl Spool {
    /// Opens the spool of the repository `repo_url` under `root`, creating both with mode 0700.
    /// Refuses a directory that belongs to another user (someone else could plant entries).
    pub fn open(root: &Path, repo_url: &str) -> Result<Spool> {
        let digest = hex::encode(sha2::Sha256::digest(repo_url.as_bytes()));
        let dir = root.join(&digest[..16]);
        create_private_dir_all(&dir)?;
        for path in [root, dir.as_path()] {
            let meta = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
            let me = nix::unistd::geteuid().as_raw();
            use std::os::unix::fs::MetadataExt as _;
            if meta.uid() != me || meta.mode() & 0o077 != 0 {
                return Err(Error::Wal {
                    file: format!("spool {}", path.display()),
                    detail: format!(
                        "it belongs to uid {} with mode {:04o}; the spool must be a directory of this user (uid {me}) that others cannot enter: choose another [wal] spool_dir",
                        meta.uid(),
                        meta.mode() & 0o7777
                    ),
                });
            }
        }
        Ok(Spool {
            root: root.to_owned(),
            dir,
        })
    }

    /// The directory of this repository's entries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry(&self, file: &WalFile, sha256: &str) -> PathBuf {
        self.dir.join(format!("{}.{sha256}", file.name()))
    }

    fn lock_path(&self, file: &WalFile) -> PathBuf {
        self.dir.join(format!("{}.lock", file.name()))
    }

    /// Whether an entry of `file` is there, or being downloaded.
    pub fn has(&self, file: &WalFile) -> bool {
        self.ready_any(file) || self.is_claimed(file)
    }

    fn ready_any(&self, file: &WalFile) -> bool {
        let prefix = format!("{}.", file.name());
        fs::read_dir(&self.dir).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .strip_prefix(&prefix)
                    .is_some_and(is_sha256)
            })
        })
    }

    /// Claims `file` for download; `None` when another process holds it.
    pub fn claim(&self, file: &WalFile) -> Option<Claim> {
        let path = self.lock_path(file);
        let handle = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ok()?;
        let lock = Flock::lock(handle, FlockArg::LockExclusiveNonblock).ok()?;
        Some(Claim { path, _lock: lock })
    }

    fn is_claimed(&self, file: &WalFile) -> bool {
        let Ok(handle) = fs::File::open(self.lock_path(file)) else {
            return false;
        };
        Flock::lock(handle, FlockArg::LockSharedNonblock).is_err()
    }

    /// Waits while another process downloads `file`, at most `bound`.
    pub async fn wait_for_download(&self, file: &WalFile, bound: Duration) {
        let started = std::time::Instant::now();
        while self.is_claimed(file) && started.elapsed() < bound {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Downloads nothing: moves the entry holding `record`'s content to `dest` (atomically:
    /// temporary file, fsync, rename), checking its digest on the way; the bytes written. `None` when there is
    /// no such entry, or it was damaged (then it is removed). The entry is removed once used.
    pub async fn take(&self, record: &WalRecord, file: &WalFile, dest: &Path) -> Option<u64> {
        let entry = self.entry(file, &record.raw_sha256);
        if !entry.is_file() {
            return None;
        }
        let check = DigestCheck::expecting(
            entry.display().to_string(),
            "the spooled copy",
            DigestResult {
                sha256: record.raw_sha256.clone(),
                bytes: record.raw_size,
            },
        );
        let outcome = Pipeline::new(FileSource::new(&entry))
            .then(check)
            .into(FileSink::new(dest))
            .run()
            .await;
        let _ = fs::remove_file(&entry);
        match outcome {
            Ok(report) => Some(report.receipt.bytes),
            Err(e) => {
                tracing::warn!(error = %e, "a spooled segment was unusable; downloading it again");
                None
            }
        }
    }

    /// Where a download of `record`'s content goes (a [`FileSink`] writes it atomically).
    pub fn entry_for(&self, file: &WalFile, record: &WalRecord) -> PathBuf {
        self.entry(file, &record.raw_sha256)
    }

    /// Removes what recovery will not ask for any more, now that it asks for `current`: entries
    /// and locks of earlier segments or other timelines, unknown files, temporary files of
    /// killed downloads; and spools of other repositories untouched for a day. Errors are
    /// ignored: a spool that cannot be cleaned only costs disk space.
    pub fn clean(&self, current: &WalFile) {
        let now = SystemTime::now();
        let older_than = |meta: &fs::Metadata, age: Duration| {
            meta.modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|d| d > age)
        };
        let current = Segment::parse(&current.name(), 1 << 20).filter(|_| current.is_segment());
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Ok(meta) = entry.metadata() else { continue };
                let remove = if name.starts_with('.') {
                    older_than(&meta, STALE_TEMP)
                } else {
                    match name.split_once('.') {
                        Some((segment, rest)) if rest == "lock" || is_sha256(rest) => {
                            behind(segment, current)
                                && !(rest == "lock" && self.is_locked_path(&entry.path()))
                        }
                        _ => true,
                    }
                };
                if remove {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        if let Ok(spools) = fs::read_dir(&self.root) {
            for spool in spools.flatten() {
                let name = spool.file_name().to_string_lossy().into_owned();
                let ours = spool.path() == self.dir;
                let looks_like_one =
                    name.len() == 16 && name.bytes().all(|b| b.is_ascii_hexdigit());
                if !ours
                    && looks_like_one
                    && spool.metadata().is_ok_and(|m| older_than(&m, STALE_SPOOL))
                {
                    let _ = fs::remove_dir_all(spool.path());
                }
            }
        }
    }

    fn is_locked_path(&self, path: &Path) -> bool {
        fs::File::open(path)
            .ok()
            .is_some_and(|h| Flock::lock(h, FlockArg::LockSharedNonblock).is_err())
    }
}

/// Whether the spooled `segment` is of no more use once recovery asks for `current`: another
/// timeline, or before it (`current` itself is about to be taken). Segment numbers are compared as the 16 hex digits after the
/// timeline, which order like the numbers whatever the segment size.
fn behind(segment: &str, current: Option<Segment>) -> bool {
    let Some(current) = current else {
        return false;
    };
    if segment.len() != 24 || !segment.bytes().all(|b| b.is_ascii_hexdigit()) {
        return true;
    }
    let current_name = current.file_name(1 << 20);
    segment[..8] != current_name[..8] || segment[8..] < current_name[8..]
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_behind_the_current_segment_or_on_another_timeline_are_stale() {
        let current = Segment::parse("000000010000000200000010", 1 << 20);
        assert!(!behind("000000010000000200000010", current));
        assert!(behind("00000001000000020000000F", current));
        assert!(behind("000000010000000100000FFF", current));
        assert!(!behind("000000010000000200000011", current));
        assert!(!behind("000000010000000300000000", current));
        assert!(behind("000000020000000200000011", current));
        assert!(behind("garbage", current));
        assert!(!behind("000000010000000200000001", None));
    }

    #[tokio::test]
    async fn an_entry_is_used_once_only_when_its_digest_matches() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::open(&root.path().join("spool"), "s3://b/p").unwrap();
        let file = WalFile::parse("000000010000000000000005").unwrap();
        let content = b"segment bytes".to_vec();
        let record = WalRecord {
            format: super::super::archive::RECORD_FORMAT.into(),
            file: file.name(),
            object: file.key(".zst.age"),
            raw_size: content.len() as u64,
            raw_sha256: hex::encode(sha2::Sha256::digest(&content)),
            compression: "zstd".into(),
            recipients: Vec::new(),
            system_identifier: None,
            pushed_at: chrono::Utc::now(),
            written_by: "test".into(),
        };
        let dest = root.path().join("RECOVERYXLOG");
        assert_eq!(spool.take(&record, &file, &dest).await, None);
        // Damaged: right name, wrong bytes. Not used, removed, nothing written.
        fs::write(spool.entry_for(&file, &record), b"segment bytez").unwrap();
        assert!(spool.has(&file));
        assert_eq!(spool.take(&record, &file, &dest).await, None);
        assert!(!dest.exists() && !spool.has(&file));
        fs::write(spool.entry_for(&file, &record), &content).unwrap();
        assert_eq!(spool.take(&record, &file, &dest).await, Some(13));
        assert_eq!(fs::read(&dest).unwrap(), content);
        assert!(!spool.has(&file), "used once");

        // A claim keeps others off until it is dropped.
        let claim = spool.claim(&file).unwrap();
        assert!(spool.claim(&file).is_none());
        assert!(spool.has(&file));
        drop(claim);
        assert!(!spool.has(&file));

        // Cleaning at segment 6 removes 5 and strays, keeps 7 (and 6, which is being taken).
        let seven = WalFile::parse("000000010000000000000007").unwrap();
        fs::write(spool.entry_for(&file, &record), &content).unwrap();
        fs::write(
            spool
                .dir()
                .join(format!("{}.{}", seven.name(), "a".repeat(64))),
            b"x",
        )
        .unwrap();
        fs::write(spool.dir().join("stray"), b"x").unwrap();
        spool.clean(&WalFile::parse("000000010000000000000006").unwrap());
        let mut left: Vec<String> = fs::read_dir(spool.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [format!("{}.{}", seven.name(), "a".repeat(64))]);
    }
}
