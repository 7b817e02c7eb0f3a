//! Walking a files set: every root, then everything below it, in one fixed order (each
//! directory before its contents, names sorted bytewise), so that the same tree always gives
//! the same archive and the same digest.
//!
//! Symbolic links below a root are entries of their own, never followed; a root named by a
//! link is followed (the operator named it). Sockets, FIFOs and devices cannot be stored: they
//! are skipped and reported, and so is an entry that vanished between its directory's listing
//! and its own `lstat` (a temporary upload). A directory or file that exists but cannot be
//! read fails the walk: a backup that silently lacks files would be found out at restore.

use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::excludes::{Excludes, Exclusion};
use super::roots::Root;
use crate::error::{Error, Result};

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link, with its target as stored in it.
    Symlink(PathBuf),
}

/// One entry of the tree, as found.
pub(crate) struct Entry {
    /// Its name in the archive: the root's name, then the path below the root.
    pub archive_path: PathBuf,
    /// Where it is on disk.
    pub fs_path: PathBuf,
    /// What it is.
    pub kind: Kind,
    /// Its `lstat` (a root's `stat`) when the walk found it.
    pub meta: Metadata,
}

impl Entry {
    /// Permission bits, including setuid, setgid and sticky.
    pub fn mode(&self) -> u32 {
        self.meta.mode() & 0o7777
    }

    /// The stored size: a file's length, 0 for the others.
    pub fn size(&self) -> u64 {
        match self.kind {
            Kind::File => self.meta.len(),
            _ => 0,
        }
    }

    /// Modification time in nanoseconds since the epoch.
    pub fn mtime_ns(&self) -> i128 {
        i128::from(self.meta.mtime()) * 1_000_000_000 + i128::from(self.meta.mtime_nsec())
    }
}

/// What the walk found, one call per entry, in archive order.
pub(crate) trait Visitor {
    /// A root, before its entries.
    fn root(&mut self, root: &Root) -> Result<()>;
    /// An entry to store.
    fn entry(&mut self, entry: &Entry) -> Result<()>;
    /// An entry that cannot be stored (socket, FIFO, device, vanished), and why.
    fn skipped(&mut self, path: &Path, why: &str);
    /// An entry left out by the excludes (a directory counts once).
    fn excluded(&mut self, path: &Path, why: Exclusion);
}

/// Walks every root of `roots` into `visitor`.
pub(crate) fn walk(roots: &[Root], excludes: &Excludes, visitor: &mut dyn Visitor) -> Result<()> {
    for root in roots {
        visitor.root(root)?;
        let meta = std::fs::metadata(&root.path)
            .map_err(|e| Error::io(format!("reading {}", root.path.display()), e))?;
        let kind = if meta.is_dir() {
            Kind::Dir
        } else if meta.is_file() {
            Kind::File
        } else {
            return Err(Error::Refused {
                context: format!("backing up {}", root.path.display()),
                detail: "it is no longer a directory or a regular file".to_owned(),
            });
        };
        // A root file named by a link is read through its target: files are opened without
        // following a link.
        let is_link = std::fs::symlink_metadata(&root.path).is_ok_and(|m| m.is_symlink());
        let fs_path = match kind {
            Kind::File if is_link => std::fs::canonicalize(&root.path)
                .map_err(|e| Error::io(format!("reading {}", root.path.display()), e))?,
            _ => root.path.clone(),
        };
        let entry = Entry {
            archive_path: PathBuf::from(&root.name),
            fs_path,
            kind,
            meta,
        };
        visitor.entry(&entry)?;
        if entry.kind == Kind::Dir {
            walk_below(&root.path, &root.name, excludes, visitor)?;
        }
    }
    Ok(())
}

/// The sorted names in `dir`.
fn names_in(dir: &Path) -> Result<Vec<OsString>> {
    let context = || format!("listing the directory {}", dir.display());
    let mut names = Vec::new();
    for item in std::fs::read_dir(dir).map_err(|e| Error::io(context(), e))? {
        names.push(item.map_err(|e| Error::io(context(), e))?.file_name());
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Everything below the root directory `top`, depth first, each directory before its contents.
fn walk_below(
    top: &Path,
    root_name: &str,
    excludes: &Excludes,
    visitor: &mut dyn Visitor,
) -> Result<()> {
    // Relative paths still to visit, in reverse order (the next one last).
    let mut pending: Vec<PathBuf> = names_in(top)?
        .into_iter()
        .rev()
        .map(PathBuf::from)
        .collect();
    while let Some(relative) = pending.pop() {
        let fs_path = top.join(&relative);
        let meta = match std::fs::symlink_metadata(&fs_path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                visitor.skipped(&fs_path, "it vanished while the tree was walked");
                continue;
            }
            Err(e) => return Err(Error::io(format!("reading {}", fs_path.display()), e)),
        };
        let file_type = meta.file_type();
        if let Some(why) = excludes.check(&relative, &fs_path, file_type.is_dir()) {
            visitor.excluded(&fs_path, why);
            continue;
        }
        let kind = if file_type.is_dir() {
            Kind::Dir
        } else if file_type.is_file() {
            Kind::File
        } else if file_type.is_symlink() {
            match std::fs::read_link(&fs_path) {
                Ok(target) => Kind::Symlink(target),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    visitor.skipped(&fs_path, "it vanished while the tree was walked");
                    continue;
                }
                Err(e) => return Err(Error::io(format!("reading {}", fs_path.display()), e)),
            }
        } else {
            let what = if file_type.is_socket() {
                "a socket"
            } else if file_type.is_fifo() {
                "a FIFO"
            } else {
                "a device"
            };
            visitor.skipped(
                &fs_path,
                &format!("it is {what}, which a backup cannot hold"),
            );
            continue;
        };
        let entry = Entry {
            archive_path: Path::new(root_name).join(&relative),
            fs_path,
            kind,
            meta,
        };
        visitor.entry(&entry)?;
        if entry.kind == Kind::Dir {
            let names = match names_in(&entry.fs_path) {
                Ok(names) => names,
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    visitor.skipped(&entry.fs_path, "it vanished while the tree was walked");
                    continue;
                }
                Err(e) => return Err(e),
            };
            pending.extend(names.into_iter().rev().map(|name| relative.join(name)));
        }
    }
    Ok(())
}

/// SHA-256 over the canonical listing of a tree (docs/FORMAT.md, "Files backups"): for each
/// root its name and path, for each entry its type, archive path, mode, owner, size,
/// modification time in nanoseconds, link target and the SHA-256 of its contents, each field
/// ended by a NUL byte (which no path can hold, so the listing reads one way only).
///
/// The digest is in the plaintext manifest. It covers modification times to the nanosecond and
/// every file's full contents, but a small tree with whole-second times (copied by tar or
/// rsync) is still open to offline guesses of a short secret: the README says so; a digest
/// keyed with a secret of the backup host is the fix.
pub(crate) struct TreeDigest {
    hasher: Sha256,
}

impl TreeDigest {
    /// An empty listing.
    pub fn new() -> Self {
        TreeDigest {
            hasher: Sha256::new(),
        }
    }

    fn field(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.hasher.update([0]);
    }

    /// A root: `R`, its name, its path.
    pub fn root(&mut self, root: &Root) {
        self.field(b"R");
        self.field(root.name.as_bytes());
        self.field(root.path.as_os_str().as_bytes());
    }

    /// An entry, with the SHA-256 of the bytes stored for it (files only).
    pub fn entry(&mut self, entry: &Entry, contents: Option<&[u8]>) {
        let (kind, target): (&[u8], &[u8]) = match &entry.kind {
            Kind::File => (b"f", b""),
            Kind::Dir => (b"d", b""),
            Kind::Symlink(target) => (b"l", target.as_os_str().as_bytes()),
        };
        self.field(kind);
        self.field(entry.archive_path.as_os_str().as_bytes());
        self.field(format!("{:o}", entry.mode()).as_bytes());
        self.field(entry.meta.uid().to_string().as_bytes());
        self.field(entry.meta.gid().to_string().as_bytes());
        self.field(entry.size().to_string().as_bytes());
        self.field(entry.mtime_ns().to_string().as_bytes());
        self.field(target);
        self.field(hex::encode(contents.unwrap_or_default()).as_bytes());
    }

    /// The digest, lowercase hex.
    pub fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}
