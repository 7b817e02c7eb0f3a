//! Tests of the files walk, archive and unpacker, below the pipeline: the digest of both
//! passes, files changing while they are read (made to change deterministically by the read
//! hook), and crafted archives that try to write outside the restore directory.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::archive::{ReadHook, Scan, TarWriter, WalkReport};
use super::excludes::Excludes;
use super::extract::{extract, Includes};
use super::roots::resolve_roots;
use super::walk::walk;

/// A small tree: nested directories, an empty one, an empty file, a symbolic link.
fn tree(dir: &Path) -> PathBuf {
    let root = dir.join("site");
    std::fs::create_dir_all(root.join("a/b/empty")).unwrap();
    std::fs::write(root.join("a/b/data.bin"), vec![7u8; 300_000]).unwrap();
    std::fs::write(root.join("a/empty.txt"), b"").unwrap();
    std::fs::write(root.join("grows.log"), vec![1u8; 100_000]).unwrap();
    std::fs::write(root.join("shrinks.log"), vec![2u8; 100_000]).unwrap();
    std::fs::write(root.join("rewritten.txt"), vec![3u8; 100_000]).unwrap();
    // Written long ago: a rewrite in the same clock tick (kernels before 6.13 stamp files from
    // a coarse clock) still shows as a new modification time.
    std::fs::File::options()
        .write(true)
        .open(root.join("rewritten.txt"))
        .unwrap()
        .set_times(
            std::fs::FileTimes::new().set_modified(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000),
            ),
        )
        .unwrap();
    std::os::unix::fs::symlink("a/b/data.bin", root.join("link")).unwrap();
    root
}

fn tar_of(root: &Path, hook: Option<ReadHook>) -> (Vec<u8>, WalkReport) {
    let roots = resolve_roots(&[root.to_owned()]).unwrap();
    let mut tar = TarWriter::new(Vec::new(), hook);
    walk(&roots, &Excludes::default(), &mut tar).unwrap();
    tar.finish().unwrap()
}

fn scan_of(root: &Path) -> WalkReport {
    let roots = resolve_roots(&[root.to_owned()]).unwrap();
    let mut scan = Scan::new(true, None);
    walk(&roots, &Excludes::default(), &mut scan).unwrap();
    scan.finish()
}

/// Every entry of an archive: (path, size in the header, bytes actually in it).
fn entries(archive: &[u8]) -> Vec<(String, u64, u64)> {
    let mut archive = tar::Archive::new(archive);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            let size = e.header().size().unwrap();
            let mut body = Vec::new();
            e.read_to_end(&mut body).unwrap();
            (path, size, body.len() as u64)
        })
        .collect()
}

#[test]
fn both_passes_give_the_same_digest_and_it_follows_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let root = tree(dir.path());
    let (archive, streamed) = tar_of(&root, None);
    let scanned = scan_of(&root);
    assert_eq!(streamed.facts.tree_sha256, scanned.facts.tree_sha256);
    assert_eq!(streamed.facts.files, 5);
    assert_eq!(streamed.facts.directories, 4);
    assert_eq!(streamed.facts.symlinks, 1);
    assert_eq!(streamed.facts.changed, 0);
    assert_eq!(streamed.facts.bytes, 600_000);
    let names: Vec<String> = entries(&archive).into_iter().map(|e| e.0).collect();
    assert_eq!(
        names,
        [
            "site",
            "site/a",
            "site/a/b",
            "site/a/b/data.bin",
            "site/a/b/empty",
            "site/a/empty.txt",
            "site/grows.log",
            "site/link",
            "site/rewritten.txt",
            "site/shrinks.log"
        ]
    );

    // Same size and time, other contents: another digest.
    let file = root.join("a/b/data.bin");
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::write(&file, vec![8u8; 300_000]).unwrap();
    let handle = std::fs::File::options().write(true).open(&file).unwrap();
    handle
        .set_times(std::fs::FileTimes::new().set_modified(mtime))
        .unwrap();
    let after_content = scan_of(&root).facts.tree_sha256;
    assert_ne!(after_content, scanned.facts.tree_sha256);
    // Only the time, by a nanosecond: another digest.
    handle
        .set_times(
            std::fs::FileTimes::new().set_modified(mtime + std::time::Duration::from_nanos(1)),
        )
        .unwrap();
    assert_ne!(scan_of(&root).facts.tree_sha256, after_content);
    // Only a mode.
    let before_mode = scan_of(&root).facts.tree_sha256;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_ne!(scan_of(&root).facts.tree_sha256, before_mode);
}

#[test]
fn files_changing_while_read_are_reported_and_the_archive_stays_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let root = tree(dir.path());
    // After the first read of each file, change three of them.
    let hook: ReadHook = Arc::new(|path: &Path| {
        let name = path.file_name().unwrap().to_str().unwrap();
        match name {
            "grows.log" => {
                let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
                f.write_all(&[9u8; 5000]).unwrap();
            }
            "shrinks.log" => std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_len(10_000)
                .unwrap(),
            "rewritten.txt" => {
                let mut f = std::fs::File::options().write(true).open(path).unwrap();
                f.write_all(&[4u8; 10]).unwrap();
            }
            _ => {}
        }
    });
    let (archive, report) = tar_of(&root, Some(hook));
    assert_eq!(report.facts.changed, 3, "{:?}", report.warnings);
    let warned: Vec<String> = report.warnings.iter().map(|w| w.to_string()).collect();
    for (name, how) in [
        ("grows.log", "grew while it was read"),
        ("shrinks.log", "shrank while it was read"),
        ("rewritten.txt", "modified while it was read"),
    ] {
        assert!(
            warned
                .iter()
                .any(|w| w.contains(&format!("site/{name}: changed: it {how}"))
                    || w.contains(&format!("site/{name}: changed: it was {how}"))),
            "{name}: {warned:?}"
        );
    }
    // Every entry holds exactly the size its header says, the archive reads to its end.
    for (path, size, body) in entries(&archive) {
        assert_eq!(size, body, "{path}");
    }
    let sizes: Vec<(String, u64)> = entries(&archive)
        .into_iter()
        .map(|(p, s, _)| (p, s))
        .collect();
    assert!(sizes.contains(&("site/grows.log".into(), 100_000)));
    assert!(sizes.contains(&("site/shrinks.log".into(), 100_000)));
    // The shrunk file's missing end is zeros, never garbage.
    let mut archive = tar::Archive::new(archive.as_slice());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path_bytes().ends_with(b"shrinks.log") {
            let mut body = Vec::new();
            entry.read_to_end(&mut body).unwrap();
            assert!(body[..10_000].iter().all(|b| *b == 2));
            assert!(body[10_000..].iter().all(|b| *b == 0));
        }
    }
}

#[test]
fn an_archive_unpacks_to_the_same_tree() {
    let dir = tempfile::tempdir().unwrap();
    let root = tree(dir.path());
    std::fs::set_permissions(
        root.join("a/empty.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let (archive, _) = tar_of(&root, None);
    let staging = tempfile::tempdir().unwrap();
    let extracted = extract(archive.as_slice(), staging.path(), &Includes::default()).unwrap();
    assert_eq!((extracted.files, extracted.symlinks), (5, 1));
    assert_eq!(extracted.directories, 4);
    let out = staging.path().join("site");
    assert_eq!(
        std::fs::read(out.join("a/b/data.bin")).unwrap(),
        vec![7u8; 300_000]
    );
    assert_eq!(
        std::fs::read_link(out.join("link")).unwrap(),
        Path::new("a/b/data.bin")
    );
    let meta = |p: &Path| std::fs::symlink_metadata(p).unwrap();
    assert_eq!(meta(&out.join("a/empty.txt")).mode() & 0o777, 0o640);
    let (a, b) = (
        meta(&root.join("a/b/data.bin")),
        meta(&out.join("a/b/data.bin")),
    );
    assert_eq!(
        (a.mtime(), a.mtime_nsec()),
        (b.mtime(), b.mtime_nsec()),
        "nanoseconds kept"
    );
    let (a, b) = (meta(&root.join("link")), meta(&out.join("link")));
    assert_eq!((a.mtime(), a.mtime_nsec()), (b.mtime(), b.mtime_nsec()));

    // --include: only what matches, with the directories above it.
    let staging = tempfile::tempdir().unwrap();
    let includes = Includes::new(&["site/a/b".into()]).unwrap();
    let extracted = extract(archive.as_slice(), staging.path(), &includes).unwrap();
    assert_eq!(extracted.files, 1);
    assert!(staging.path().join("site/a/b/empty").is_dir());
    assert!(!staging.path().join("site/a/empty.txt").exists());
}

/// An archive of raw entries: (name, type, link target, contents); names are written as
/// bytes, bypassing the checks of the tar crate's builder.
/// One raw entry: name, type, link target, contents.
type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

fn crafted(entries: &[RawEntry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, link, body) in entries {
        let mut header = tar::Header::new_gnu();
        let gnu = header.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name);
        gnu.linkname[..link.len()].copy_from_slice(link);
        header.set_entry_type(*kind);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mode(0o644);
        header.set_size(body.len() as u64);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder.append(&header, *body).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn crafted_archives_are_refused_and_write_nothing_outside() {
    use tar::EntryType as T;
    let dir = tempfile::tempdir().unwrap();
    // staging = dir/a/b/staging; `../../sentinel` would be dir/a/sentinel.
    let staging = dir.path().join("a/b/staging");
    std::fs::create_dir_all(&staging).unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let outside_text = outside.to_str().unwrap().as_bytes().to_vec();
    let absolute = [outside_text.as_slice(), b"/abs"].concat();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            crafted(&[(b"../../sentinel", T::Regular, b"", b"pwned")]),
            "\"../../sentinel\" climbs out of the restore directory",
        ),
        (
            crafted(&[(
                b"../../etc/passwd",
                T::Regular,
                b"",
                b"root::0:0::/:/bin/sh\n",
            )]),
            "\"../../etc/passwd\" climbs out",
        ),
        (
            crafted(&[(&absolute, T::Regular, b"", b"pwned")]),
            "is an absolute path",
        ),
        (
            crafted(&[(b"/etc/passwd", T::Regular, b"", b"root::0:0::/:/bin/sh\n")]),
            "\"/etc/passwd\" is an absolute path",
        ),
        (
            crafted(&[
                (b"link", T::Symlink, &outside_text, b""),
                (b"link/evil", T::Regular, b"", b"pwned"),
            ]),
            "\"link/evil\" goes through \"link\", a symbolic link made by an earlier entry",
        ),
        (
            crafted(&[
                (b"d", T::Directory, b"", b""),
                (b"d/up", T::Symlink, b"../..", b""),
                (b"d/up/sentinel", T::Regular, b"", b"pwned"),
            ]),
            "goes through \"d/up\"",
        ),
        (
            crafted(&[(b"hard", T::Link, b"../../sentinel", b"")]),
            "is a hard link whose target climbs out",
        ),
        (
            crafted(&[(b"hard", T::Link, b"/etc/passwd", b"")]),
            "is a hard link whose target is an absolute path",
        ),
        (
            crafted(&[
                (b"link", T::Symlink, b"/etc/passwd", b""),
                (b"hard", T::Link, b"link", b""),
            ]),
            "is a hard link to \"link\", which is not a regular file",
        ),
        (crafted(&[(b"dev", T::Char, b"", b"")]), "is of type Char"),
        (
            crafted(&[
                (b"twice", T::Regular, b"", b"one"),
                (b"twice", T::Regular, b"", b"two"),
            ]),
            "appears twice",
        ),
        (
            crafted(&[
                (b"file", T::Regular, b"", b"x"),
                (b"file/below", T::Regular, b"", b"x"),
            ]),
            "is below \"file\", which is not a directory",
        ),
    ];
    for (archive, expected) in cases {
        let err = extract(archive.as_slice(), &staging, &Includes::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(expected) && err.contains("nothing was restored"),
            "{expected}: {err}"
        );
        assert!(!dir.path().join("a/sentinel").exists());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        // Each case starts from an empty staging directory, as a restore does.
        super::super::physical::unpack::empty_dir(&staging).unwrap();
    }
}

#[test]
fn a_root_named_by_a_link_is_followed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Caddyfile.real"), b"shop.example {}\n").unwrap();
    std::os::unix::fs::symlink("Caddyfile.real", dir.path().join("Caddyfile")).unwrap();
    std::fs::create_dir(dir.path().join("real-dir")).unwrap();
    std::fs::write(dir.path().join("real-dir/a"), b"a").unwrap();
    std::os::unix::fs::symlink("real-dir", dir.path().join("linked-dir")).unwrap();
    let roots =
        resolve_roots(&[dir.path().join("Caddyfile"), dir.path().join("linked-dir")]).unwrap();
    let mut tar = TarWriter::new(Vec::new(), None);
    walk(&roots, &Excludes::default(), &mut tar).unwrap();
    let (archive, report) = tar.finish().unwrap();
    assert_eq!(
        (report.facts.files, report.facts.skipped),
        (2, 0),
        "{report:?}"
    );
    let found: Vec<(String, u64, u64)> = entries(&archive);
    assert_eq!(
        found,
        [
            ("Caddyfile".to_owned(), 16, 16),
            ("linked-dir".to_owned(), 0, 0),
            ("linked-dir/a".to_owned(), 1, 1)
        ]
    );
}

#[test]
fn the_fuzz_seeds_are_refused_but_the_good_one() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/files_entries");
    let mut seen = 0;
    for entry in std::fs::read_dir(&seeds).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let bytes = std::fs::read(&path).unwrap();
        let (selector, rest) = bytes.split_first().unwrap();
        if *selector % 2 == 0 {
            let checked = super::entry_path::entry_path(rest);
            assert_eq!(checked.is_ok(), name == "name-plain", "{name}: {checked:?}");
            seen += 1;
            continue;
        }
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a/b/to");
        std::fs::create_dir_all(&dir).unwrap();
        let unpacked = super::unpack_checked(rest, &dir);
        assert_eq!(
            unpacked.is_ok(),
            name == "archive-good",
            "{name}: {unpacked:?}"
        );
        assert_eq!(std::fs::read_dir(base.path().join("a")).unwrap().count(), 1);
        seen += 1;
    }
    assert_eq!(seen, 9);
}
