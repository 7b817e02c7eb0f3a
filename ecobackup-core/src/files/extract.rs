//! Unpacking a files archive into a private staging directory, every entry checked first.
//!
//! The archive comes from a repository, which anyone with write access to the bucket could
//! fill, so nothing in it is trusted before it is checked: a name must be a relative path of
//! plain components ([`super::entry_path`]); no entry may go through a symbolic link, nor
//! under a file (each directory on its way is `lstat`ed inside the staging directory, where
//! only this archive wrote); a hard link must name a regular file that an earlier entry of the
//! same archive made; an entry may not replace another; only directories, regular files,
//! symbolic links and hard links are restored, anything else (devices, FIFOs, sparse-file
//! entries) is refused. The first refused entry stops the restore with one error naming it.
//!
//! Modes, modification times (to the nanosecond, from pax `mtime` records) and symbolic links
//! are restored; as root, owners too. Directories keep mode 0700 in staging: their own modes
//! and times are set once they are in place ([`super::restore`]). Runs of zeros in a file
//! become holes (a sparse file stays sparse).

use crate::error::remedy;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use globset::{GlobSet, GlobSetBuilder};

use super::archive::parse_pax_time;
use super::entry_path::{entry_path, is_plain, required_entry_path, shown};
use super::excludes::glob;
use crate::error::{Error, Result};
use crate::pipeline::{ByteStream, Sink, SinkReceipt};

/// Which entries to restore: those whose path, an ancestor's path or name matches a pattern.
#[derive(Clone, Debug, Default)]
pub(crate) struct Includes {
    set: Option<GlobSet>,
}

impl Includes {
    /// Every entry when `patterns` is empty.
    pub fn new(patterns: &[String]) -> Result<Includes> {
        if patterns.is_empty() {
            return Ok(Includes { set: None });
        }
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            let pattern = pattern.trim_end_matches('/');
            builder.add(glob(pattern).map_err(|detail| Error::Refused {
                context: "restoring files".to_owned(),
                detail: remedy!(
                    cli: "--include {pattern:?} is not a valid glob ({detail}): e.g. 'uploads/2026/**', '*.pem', 'keys'",
                    library: "include pattern {pattern:?} is not a valid glob ({detail}): e.g. 'uploads/2026/**', '*.pem', 'keys'",
                ),
            })?);
        }
        let set = builder.build().map_err(|e| Error::Refused {
            context: "restoring files".to_owned(),
            detail: format!("the include patterns cannot be compiled: {e}"),
        })?;
        Ok(Includes { set: Some(set) })
    }

    fn matches(&self, path: &Path) -> bool {
        let Some(set) = &self.set else {
            return true;
        };
        path.ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .any(|a| set.is_match(a) || a.file_name().is_some_and(|n| set.is_match(n)))
    }
}

/// A directory's mode, owner and modification time, set once it is in place.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DirMeta {
    pub mode: u32,
    pub mtime_ns: i128,
    pub owner: (u32, u32),
}

/// What was unpacked.
#[derive(Clone, Debug, Default)]
pub(crate) struct Extracted {
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    pub hard_links: u64,
    pub bytes: u64,
    /// Every directory made in staging, parents first, with its recorded metadata (`None`
    /// for a parent the archive has no entry for).
    pub dirs: Vec<(PathBuf, Option<DirMeta>)>,
}

/// Unpacks the archive streamed into it into `staging` (an empty directory).
pub(crate) struct ExtractSink {
    staging: PathBuf,
    includes: Includes,
    report: Arc<Mutex<Option<Extracted>>>,
}

impl ExtractSink {
    pub fn new(staging: &Path, includes: Includes) -> (ExtractSink, Arc<Mutex<Option<Extracted>>>) {
        let report = Arc::new(Mutex::new(None));
        let sink = ExtractSink {
            staging: staging.to_owned(),
            includes,
            report: report.clone(),
        };
        (sink, report)
    }
}

#[async_trait]
impl Sink for ExtractSink {
    async fn write(&mut self, input: ByteStream) -> Result<SinkReceipt> {
        let (staging, includes) = (self.staging.clone(), self.includes.clone());
        let (bytes, unpacked) = crate::io::feed_blocking(
            input,
            "feeding the files unpacker",
            "unpacking the files",
            move |reader| extract(reader, &staging, &includes),
        )
        .await?;
        *self.report.lock().unwrap_or_else(PoisonError::into_inner) = Some(unpacked);
        Ok(SinkReceipt {
            bytes,
            location: Some(self.staging.display().to_string()),
        })
    }

    async fn abort(&mut self) {
        // The restore removes the staging directory whatever failed.
    }
}

fn refused(raw: &[u8], problem: impl std::fmt::Display) -> Error {
    Error::Refused {
        context: "restoring files".to_owned(),
        detail: format!(
            "archive entry {} {problem}: this archive was not written by ecobackup or was altered; nothing was restored",
            shown(raw)
        ),
    }
}

fn read_error(e: io::Error) -> Error {
    Error::io("reading the files archive", e)
}

/// Unpacks the tar stream `reader` into `staging`; reads the stream to its end.
pub(crate) fn extract(reader: impl Read, staging: &Path, includes: &Includes) -> Result<Extracted> {
    let mut unpacker = Unpacker {
        staging: staging.to_owned(),
        verified: PathBuf::new(),
        as_root: nix::unistd::geteuid().is_root(),
        report: Extracted::default(),
        dir_meta: HashMap::new(),
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        unpacker.entry(&mut entry, includes)?;
    }
    // Whatever follows the end of the archive is read too: the digests cover every byte.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(read_error)?;
    let Unpacker {
        mut report,
        dir_meta,
        ..
    } = unpacker;
    for (path, meta) in &mut report.dirs {
        *meta = dir_meta.get(path).copied();
    }
    Ok(report)
}

struct Unpacker {
    staging: PathBuf,
    /// The last directory (relative) known to be a real directory in staging: a cache of the
    /// ancestor check, since entries come depth first.
    verified: PathBuf,
    as_root: bool,
    report: Extracted,
    dir_meta: HashMap<PathBuf, DirMeta>,
}

impl Unpacker {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, includes: &Includes) -> Result<()> {
        use tar::EntryType as T;
        let raw = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        if matches!(kind, T::XGlobalHeader) {
            return Ok(());
        }
        let path = match kind {
            T::Directory => match entry_path(&raw).map_err(|p| refused(&raw, p))? {
                Some(path) => path,
                None => return Ok(()),
            },
            _ => required_entry_path(&raw).map_err(|p| refused(&raw, p))?,
        };
        debug_assert!(is_plain(&path));
        let header = entry.header();
        let mode = header.mode().map_err(read_error)? & 0o7777;
        let owner = (
            u32::try_from(header.uid().map_err(read_error)?).unwrap_or(u32::MAX),
            u32::try_from(header.gid().map_err(read_error)?).unwrap_or(u32::MAX),
        );
        let mut mtime_ns = i128::from(header.mtime().map_err(read_error)?) * 1_000_000_000;
        if let Some(extensions) = entry.pax_extensions().map_err(read_error)? {
            for extension in extensions {
                let extension = extension.map_err(read_error)?;
                if extension.key_bytes() == b"mtime" {
                    mtime_ns = parse_pax_time(extension.value_bytes())
                        .ok_or_else(|| refused(&raw, "has an unreadable pax mtime"))?;
                }
            }
        }
        if kind == T::Directory {
            self.dir_meta.insert(
                path.clone(),
                DirMeta {
                    mode,
                    mtime_ns,
                    owner,
                },
            );
        }
        if !includes.matches(&path) {
            return Ok(());
        }
        self.parent_dirs(&raw, &path)?;
        let dest = self.staging.join(&path);
        let exists = |e: io::Error| match e.kind() {
            io::ErrorKind::AlreadyExists => refused(&raw, "appears twice in the archive"),
            _ => Error::io(format!("restoring {}", path.display()), e),
        };
        match kind {
            T::Directory => {
                match std::fs::symlink_metadata(&dest) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => return Err(refused(&raw, "appears twice in the archive")),
                    Err(_) => {
                        self.make_dir(&path)
                            .map_err(|e| Error::io(format!("restoring {}", path.display()), e))?;
                    }
                }
                self.report.directories += 1;
            }
            T::Regular | T::Continuous => {
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&dest)
                    .map_err(exists)?;
                let written = write_sparse(entry, &mut file)
                    .map_err(|e| Error::io(format!("restoring {}", path.display()), e))?;
                self.finish_file(&file, mode, mtime_ns, owner)
                    .map_err(|e| Error::io(format!("restoring {}", path.display()), e))?;
                self.report.files += 1;
                self.report.bytes += written;
            }
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .filter(|t| !t.is_empty() && !t.contains(&0))
                    .ok_or_else(|| refused(&raw, "is a symbolic link without a target"))?
                    .into_owned();
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), &dest)
                    .map_err(exists)?;
                self.finish_link(&dest, mtime_ns, owner)
                    .map_err(|e| Error::io(format!("restoring {}", path.display()), e))?;
                self.report.symlinks += 1;
            }
            T::Link => {
                let target_raw = entry
                    .link_name_bytes()
                    .ok_or_else(|| refused(&raw, "is a hard link without a target"))?
                    .into_owned();
                let target = required_entry_path(&target_raw)
                    .map_err(|p| refused(&raw, format!("is a hard link whose target {p}")))?;
                if !self.is_extracted_file(&target) {
                    return Err(refused(
                        &raw,
                        format!(
                            "is a hard link to {}, which is not a regular file restored before it from this archive",
                            shown(&target_raw)
                        ),
                    ));
                }
                std::fs::hard_link(self.staging.join(&target), &dest).map_err(exists)?;
                self.report.hard_links += 1;
            }
            other => {
                return Err(refused(
                    &raw,
                    format!("is of type {other:?}, which ecobackup does not restore"),
                ))
            }
        }
        Ok(())
    }

    /// Makes sure every directory above `path` exists in staging as a real directory (not a
    /// symbolic link, not a file), creating the missing ones.
    fn parent_dirs(&mut self, raw: &[u8], path: &Path) -> Result<()> {
        let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
            return Ok(());
        };
        if self.verified.starts_with(parent) {
            return Ok(());
        }
        let mut prefix = PathBuf::new();
        for component in parent.components() {
            prefix.push(component);
            match std::fs::symlink_metadata(self.staging.join(&prefix)) {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(refused(
                        raw,
                        format!(
                            "goes through {:?}, a symbolic link made by an earlier entry",
                            prefix.display().to_string()
                        ),
                    ))
                }
                Ok(_) => {
                    return Err(refused(
                        raw,
                        format!(
                            "is below {:?}, which is not a directory",
                            prefix.display().to_string()
                        ),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.make_dir(&prefix)
                        .map_err(|e| Error::io(format!("restoring {}", prefix.display()), e))?;
                }
                Err(e) => return Err(Error::io(format!("restoring {}", prefix.display()), e)),
            }
        }
        self.verified = parent.to_owned();
        Ok(())
    }

    fn make_dir(&mut self, path: &Path) -> io::Result<()> {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(self.staging.join(path))?;
        self.report.dirs.push((path.to_owned(), None));
        Ok(())
    }

    /// Whether `target` is a regular file in staging, reached through real directories only.
    fn is_extracted_file(&self, target: &Path) -> bool {
        let mut prefix = PathBuf::new();
        let mut components = target.components().peekable();
        while let Some(component) = components.next() {
            prefix.push(component);
            let Ok(meta) = std::fs::symlink_metadata(self.staging.join(&prefix)) else {
                return false;
            };
            let wanted = if components.peek().is_some() {
                meta.is_dir()
            } else {
                meta.is_file()
            };
            if !wanted {
                return false;
            }
        }
        true
    }

    fn finish_file(
        &self,
        file: &File,
        mode: u32,
        mtime_ns: i128,
        owner: (u32, u32),
    ) -> io::Result<()> {
        if self.as_root {
            std::os::unix::fs::fchown(file, Some(owner.0), Some(owner.1))?;
        }
        // After the owner: chown clears the setuid and setgid bits.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.set_times(std::fs::FileTimes::new().set_modified(system_time(mtime_ns)))
    }

    fn finish_link(&self, dest: &Path, mtime_ns: i128, owner: (u32, u32)) -> io::Result<()> {
        if self.as_root {
            std::os::unix::fs::lchown(dest, Some(owner.0), Some(owner.1))?;
        }
        set_mtime_nofollow(dest, mtime_ns)
    }
}

/// Copies an entry's contents into `file`, leaving holes for runs of zeros; returns its size.
fn write_sparse(entry: &mut impl Read, file: &mut File) -> io::Result<u64> {
    const BLOCK: usize = 128 << 10;
    let mut buffer = vec![0u8; BLOCK];
    let mut size = 0u64;
    loop {
        let mut filled = 0;
        while filled < BLOCK {
            match entry.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            break;
        }
        let block = &buffer[..filled];
        if block.iter().all(|b| *b == 0) {
            file.seek(SeekFrom::Current(filled as i64))?;
        } else {
            file.write_all(block)?;
        }
        size += filled as u64;
    }
    file.set_len(size)?;
    Ok(size)
}

/// Nanoseconds since the epoch as a `SystemTime`.
pub(crate) fn system_time(ns: i128) -> std::time::SystemTime {
    let magnitude = std::time::Duration::new(
        u64::try_from(ns.unsigned_abs() / 1_000_000_000).unwrap_or(u64::MAX),
        u32::try_from(ns.unsigned_abs() % 1_000_000_000).unwrap_or(0),
    );
    if ns < 0 {
        std::time::UNIX_EPOCH - magnitude
    } else {
        std::time::UNIX_EPOCH + magnitude
    }
}

/// Sets the modification time of `path` itself (a link is not followed), leaving its access
/// time alone.
pub(crate) fn set_mtime_nofollow(path: &Path, mtime_ns: i128) -> io::Result<()> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let seconds = mtime_ns.div_euclid(1_000_000_000);
    let nanos = mtime_ns.rem_euclid(1_000_000_000);
    let mtime = TimeSpec::new(
        i64::try_from(seconds).unwrap_or(i64::MAX),
        i64::try_from(nanos).unwrap_or(0),
    );
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &TimeSpec::UTIME_OMIT,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}
