//! The tree as a tar stream, and the same walk without the stream (the first pass of
//! `--if-changed`, and the size estimate).
//!
//! Each file is read once, exactly as many bytes as its size when it was opened: a file that
//! shrinks while it is read is padded with zeros, one that grows is cut at that size, so the
//! archive stays well-formed whatever happens on disk. Such a file — and one whose size,
//! modification time or change time differ after the read, or that was replaced between the
//! walk and the read — is reported as changed (a warning naming it, counted in the manifest).
//! It is not an error: the rest of the tree is good, and failing a nightly backup of a busy
//! upload folder over one file being written would leave no backup at all (restic and
//! pgBackRest warn too).
//!
//! Files are opened with `O_NOFOLLOW | O_NONBLOCK`: a file swapped for a symbolic link (to
//! `/etc/shadow`, say) or a FIFO between the walk and the read is skipped, never followed or
//! waited on.

use crate::error::remedy;
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::sync::Arc;

use nix::fcntl::OFlag;
use sha2::{Digest as _, Sha256};

use super::excludes::Exclusion;
use super::roots::Root;
use super::walk::{Entry, Kind, TreeDigest, Visitor};
use super::FileWarning;
use crate::error::{Error, Result};
use crate::repository::FilesFacts;

/// Warnings kept in a backup's report; beyond, they are only counted.
pub const MAX_WARNINGS: usize = 1000;

/// Called after the first read of each file (tests change files there, deterministically).
pub(crate) type ReadHook = Arc<dyn Fn(&Path) + Send + Sync>;

/// What a walk found: the counts and digest of [`FilesFacts`] (set and paths left empty),
/// and the warnings.
#[derive(Clone, Debug, Default)]
pub(crate) struct WalkReport {
    pub facts: FilesFacts,
    pub warnings: Vec<FileWarning>,
    pub more_warnings: u64,
}

/// Counts, warnings and the tree digest, shared by every way of walking.
pub(crate) struct Tally {
    report: WalkReport,
    digest: TreeDigest,
    hook: Option<ReadHook>,
}

impl Tally {
    pub fn new(hook: Option<ReadHook>) -> Self {
        Tally {
            report: WalkReport::default(),
            digest: TreeDigest::new(),
            hook,
        }
    }

    fn warn(&mut self, path: &Path, problem: String) {
        if self.report.warnings.len() < MAX_WARNINGS {
            self.report.warnings.push(FileWarning {
                path: path.to_owned(),
                problem,
            });
        } else {
            self.report.more_warnings += 1;
        }
    }

    fn count(&mut self, entry: &Entry, contents: Option<&[u8]>) {
        let facts = &mut self.report.facts;
        match entry.kind {
            Kind::File => {
                facts.files += 1;
                facts.bytes += entry.size();
            }
            Kind::Dir => facts.directories += 1,
            Kind::Symlink(_) => facts.symlinks += 1,
        }
        self.digest.entry(entry, contents);
    }

    pub fn finish(self) -> WalkReport {
        let mut report = self.report;
        report.facts.tree_sha256 = self.digest.finish();
        report
    }

    fn root(&mut self, root: &Root) {
        self.digest.root(root);
    }

    fn skipped(&mut self, path: &Path, why: &str) {
        self.report.facts.skipped += 1;
        self.warn(path, format!("skipped: {why}"));
    }

    fn excluded(&mut self) {
        self.report.facts.excluded += 1;
    }
}

/// A file opened for reading, and its `fstat` at that moment.
struct Opened {
    file: File,
    meta: Metadata,
}

/// Opens the file of `entry` without following a link or waiting on a FIFO; `Ok(None)` (with
/// the reason) when it vanished or was replaced by something that is not a regular file.
fn open(entry: &Entry) -> Result<std::result::Result<Opened, &'static str>> {
    let flags = (OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits();
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(&entry.fs_path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Err("it vanished while the tree was walked"))
        }
        // ELOOP: it became a symbolic link.
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Ok(Err(
                "it was replaced by a symbolic link while the tree was walked",
            ))
        }
        Err(e) => {
            return Err(Error::io(
                {
                    let path = entry.fs_path.display();
                    remedy!(
                        cli: "opening {path} (make it readable, or exclude it with --exclude)",
                        library: "opening {path} (make it readable, or add it to the excludes)",
                    )
                },
                e,
            ))
        }
    };
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format!("reading {}", entry.fs_path.display()), e))?;
    if !meta.is_file() {
        return Ok(Err(
            "it was replaced by something that is not a regular file while the tree was walked",
        ));
    }
    Ok(Ok(Opened { file, meta }))
}

/// Reads exactly `remaining` bytes of a file: zeros after an early end, nothing past the size.
struct ExactReader<'a> {
    file: &'a mut File,
    remaining: u64,
    short: bool,
    hasher: Sha256,
    first_read: bool,
    hook: Option<&'a ReadHook>,
    path: &'a Path,
}

impl Read for ExactReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let read = if self.short {
            0
        } else {
            self.file.read(&mut buf[..want])?
        };
        let n = if read == 0 {
            self.short = true;
            buf[..want].fill(0);
            want
        } else {
            read
        };
        self.hasher.update(&buf[..n]);
        self.remaining -= n as u64;
        if self.first_read {
            self.first_read = false;
            if let Some(hook) = self.hook {
                hook(self.path);
            }
        }
        Ok(n)
    }
}

/// Streams the opened file through `consume` (which reads the [`ExactReader`] to its end);
/// returns the SHA-256 of the bytes stored and, when the file changed, how.
fn read_exactly(
    opened: &mut Opened,
    entry: &Entry,
    hook: Option<&ReadHook>,
    consume: impl FnOnce(&mut ExactReader<'_>) -> io::Result<()>,
) -> Result<([u8; 32], Option<String>)> {
    let size = opened.meta.len();
    let mut reader = ExactReader {
        file: &mut opened.file,
        remaining: size,
        short: false,
        hasher: Sha256::new(),
        first_read: true,
        hook,
        path: &entry.fs_path,
    };
    consume(&mut reader)
        .map_err(|e| Error::io(format!("reading {}", entry.fs_path.display()), e))?;
    let short = reader.short;
    let contents: [u8; 32] = reader.hasher.finalize().into();
    let mut probe = [0u8; 1];
    let grew = !short
        && opened
            .file
            .read(&mut probe)
            .map_err(|e| Error::io(format!("reading {}", entry.fs_path.display()), e))?
            > 0;
    let after = opened
        .file
        .metadata()
        .map_err(|e| Error::io(format!("reading {}", entry.fs_path.display()), e))?;
    let before = &opened.meta;
    let changed = if short {
        Some(format!(
            "it shrank while it was read (stored zero-padded to its {size} bytes)"
        ))
    } else if grew {
        Some(format!(
            "it grew while it was read (stored cut at its {size} bytes)"
        ))
    } else if after.len() != size
        || after.mtime() != before.mtime()
        || after.mtime_nsec() != before.mtime_nsec()
        || after.ctime() != before.ctime()
        || after.ctime_nsec() != before.ctime_nsec()
    {
        Some("it was modified while it was read (its contents may mix old and new)".to_owned())
    } else if before.ino() != entry.meta.ino() || before.dev() != entry.meta.dev() {
        Some("it was replaced by another file while the tree was walked".to_owned())
    } else {
        None
    };
    Ok((contents, changed))
}

/// The entry as it is stored: a file with the `fstat` it had when opened.
fn as_opened(entry: &Entry, opened: &Opened) -> Entry {
    Entry {
        archive_path: entry.archive_path.clone(),
        fs_path: entry.fs_path.clone(),
        kind: entry.kind.clone(),
        meta: opened.meta.clone(),
    }
}

/// Walks without writing an archive: the digest pass of `--if-changed` (`read_contents`), or
/// a listing that only sizes the tree.
pub(crate) struct Scan {
    tally: Tally,
    read_contents: bool,
}

impl Scan {
    pub fn new(read_contents: bool, hook: Option<ReadHook>) -> Self {
        Scan {
            tally: Tally::new(hook),
            read_contents,
        }
    }

    pub fn finish(self) -> WalkReport {
        self.tally.finish()
    }
}

impl Visitor for Scan {
    fn root(&mut self, root: &Root) -> Result<()> {
        self.tally.root(root);
        Ok(())
    }

    fn entry(&mut self, entry: &Entry) -> Result<()> {
        if entry.kind != Kind::File || !self.read_contents {
            self.tally.count(entry, None);
            return Ok(());
        }
        let mut opened = match open(entry)? {
            Ok(opened) => opened,
            Err(why) => {
                self.tally.skipped(&entry.fs_path, why);
                return Ok(());
            }
        };
        let hook = self.tally.hook.clone();
        let (contents, _) = read_exactly(&mut opened, entry, hook.as_ref(), |reader| {
            io::copy(reader, &mut io::sink()).map(drop)
        })?;
        self.tally
            .count(&as_opened(entry, &opened), Some(&contents));
        Ok(())
    }

    fn skipped(&mut self, path: &Path, why: &str) {
        self.tally.skipped(path, why);
    }

    fn excluded(&mut self, _path: &Path, _why: Exclusion) {
        self.tally.excluded();
    }
}

/// Walks into a tar archive written to `W`.
pub(crate) struct TarWriter<W: Write> {
    builder: tar::Builder<W>,
    tally: Tally,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W, hook: Option<ReadHook>) -> Self {
        TarWriter {
            builder: tar::Builder::new(out),
            tally: Tally::new(hook),
        }
    }

    /// Ends the archive (two zero blocks); returns the writer and what was stored.
    pub fn finish(self) -> Result<(W, WalkReport)> {
        let out = self
            .builder
            .into_inner()
            .map_err(|e| Error::io("ending the files archive", e))?;
        Ok((out, self.tally.finish()))
    }

    fn header(entry: &Entry, kind: tar::EntryType, size: u64) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(entry.mode());
        header.set_uid(u64::from(entry.meta.uid()));
        header.set_gid(u64::from(entry.meta.gid()));
        header.set_mtime(u64::try_from(entry.meta.mtime()).unwrap_or(0));
        header.set_size(size);
        header
    }

    /// A pax `mtime` record before the entry when whole seconds would lose something.
    fn precise_mtime(&mut self, entry: &Entry) -> io::Result<()> {
        if entry.meta.mtime_nsec() == 0 && entry.meta.mtime() >= 0 {
            return Ok(());
        }
        let record = pax_record("mtime", &pax_time(entry.mtime_ns()));
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::XHeader);
        header.set_mode(0o644);
        header.set_size(record.len() as u64);
        self.builder
            .append_data(&mut header, "././@PaxHeader", record.as_slice())
    }

    fn write_entry(&mut self, entry: &Entry) -> Result<()> {
        let context = || format!("adding {} to the archive", entry.fs_path.display());
        match &entry.kind {
            Kind::Dir => {
                self.precise_mtime(entry)
                    .map_err(|e| Error::io(context(), e))?;
                let mut header = Self::header(entry, tar::EntryType::Directory, 0);
                self.builder
                    .append_data(&mut header, &entry.archive_path, io::empty())
                    .map_err(|e| Error::io(context(), e))?;
                self.tally.count(entry, None);
            }
            Kind::Symlink(target) => {
                self.precise_mtime(entry)
                    .map_err(|e| Error::io(context(), e))?;
                let mut header = Self::header(entry, tar::EntryType::Symlink, 0);
                self.builder
                    .append_link(&mut header, &entry.archive_path, target)
                    .map_err(|e| Error::io(context(), e))?;
                self.tally.count(entry, None);
            }
            Kind::File => {
                let mut opened = match open(entry)? {
                    Ok(opened) => opened,
                    Err(why) => {
                        self.tally.skipped(&entry.fs_path, why);
                        return Ok(());
                    }
                };
                let stored = as_opened(entry, &opened);
                self.precise_mtime(&stored)
                    .map_err(|e| Error::io(context(), e))?;
                let mut header = Self::header(&stored, tar::EntryType::Regular, stored.size());
                let hook = self.tally.hook.clone();
                let builder = &mut self.builder;
                let (contents, changed) =
                    read_exactly(&mut opened, entry, hook.as_ref(), |reader| {
                        builder.append_data(&mut header, &stored.archive_path, reader)
                    })?;
                if let Some(how) = changed {
                    self.tally.report.facts.changed += 1;
                    self.tally.warn(&entry.fs_path, format!("changed: {how}"));
                }
                self.tally.count(&stored, Some(&contents));
            }
        }
        Ok(())
    }
}

impl<W: Write> Visitor for TarWriter<W> {
    fn root(&mut self, root: &Root) -> Result<()> {
        self.tally.root(root);
        Ok(())
    }

    fn entry(&mut self, entry: &Entry) -> Result<()> {
        self.write_entry(entry)
    }

    fn skipped(&mut self, path: &Path, why: &str) {
        self.tally.skipped(path, why);
    }

    fn excluded(&mut self, _path: &Path, _why: Exclusion) {
        self.tally.excluded();
    }
}

/// `<length> <key>=<value>\n`, the length counting itself.
pub(crate) fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut length = body.len() + 1;
    while (length.to_string().len() + body.len()) != length {
        length = length.to_string().len() + body.len();
    }
    format!("{length}{body}").into_bytes()
}

/// Nanoseconds since the epoch as pax writes times: `1700000000.123456789`, `-1.500000000`.
pub(crate) fn pax_time(ns: i128) -> String {
    let sign = if ns < 0 { "-" } else { "" };
    let abs = ns.unsigned_abs();
    format!("{sign}{}.{:09}", abs / 1_000_000_000, abs % 1_000_000_000)
}

/// A pax time (`1700000000.5`, `-1.25`, `12`) as nanoseconds since the epoch.
pub(crate) fn parse_pax_time(text: &[u8]) -> Option<i128> {
    let text = std::str::from_utf8(text).ok()?;
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty()
        || whole.len() > 18
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let seconds: i128 = whole.parse().ok()?;
    let mut nanos: i128 = 0;
    for (i, digit) in fraction.bytes().take(9).enumerate() {
        nanos += i128::from(digit - b'0') * 10i128.pow(8 - i as u32);
    }
    let total = seconds * 1_000_000_000 + nanos;
    Some(if negative { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_count_their_own_length() {
        let record = pax_record("mtime", "1700000000.123456789");
        let text = String::from_utf8(record.clone()).unwrap();
        let (length, _) = text.split_once(' ').unwrap();
        assert_eq!(length.parse::<usize>().unwrap(), record.len(), "{text}");
        for value in ["", "1", &"9".repeat(95), &"9".repeat(200)] {
            let record = pax_record("k", value);
            let text = String::from_utf8(record.clone()).unwrap();
            let (length, _) = text.split_once(' ').unwrap();
            assert_eq!(length.parse::<usize>().unwrap(), record.len(), "{text}");
        }
    }

    #[test]
    fn pax_times_round_trip() {
        for ns in [
            0i128,
            1_700_000_000_123_456_789,
            -1_500_000_000,
            -1,
            1_000_000_000,
        ] {
            assert_eq!(parse_pax_time(pax_time(ns).as_bytes()), Some(ns), "{ns}");
        }
        assert_eq!(parse_pax_time(b"12"), Some(12_000_000_000));
        assert_eq!(parse_pax_time(b"1.5"), Some(1_500_000_000));
        assert_eq!(parse_pax_time(b"1.1234567891"), Some(1_123_456_789));
        for bad in ["", "-", ".5", "a", "1.x", "1e9", "99999999999999999999"] {
            assert_eq!(parse_pax_time(bad.as_bytes()), None, "{bad}");
        }
    }
}
