//! The names inside a files archive, checked before anything is written: a parser of input
//! ecobackup does not control (a repository anyone with write access could fill), fuzzed in
//! `fuzz/fuzz_targets/files_entries.rs`.
//!
//! An entry name is accepted only as a relative path of plain components: no leading `/`, no
//! `..`, no NUL. `.` components and repeated or trailing slashes are dropped (`./a//b/` is
//! `a/b`). What such a name may still do — go through a symbolic link that an earlier entry
//! of the same archive made — is checked against the directory being written
//! (the unpacker, [`unpack_checked`](super::unpack_checked)), since only the filesystem knows
//! what exists.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

/// Why an archive entry's name is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathProblem {
    /// The name is empty (or only `.` and slashes) for an entry that is not a directory.
    #[error("has an empty name")]
    Empty,
    /// The name starts with `/`.
    #[error("is an absolute path")]
    Absolute,
    /// A component is `..`.
    #[error("climbs out of the restore directory with '..'")]
    ParentDir,
    /// The name holds a NUL byte.
    #[error("holds a NUL byte")]
    Nul,
}

/// The entry name `raw` as a relative path of plain components; `Ok(None)` for a name that is
/// only `.` and slashes (the archive's own root, which GNU tar writes as `./`).
pub fn entry_path(raw: &[u8]) -> Result<Option<PathBuf>, PathProblem> {
    if raw.contains(&0) {
        return Err(PathProblem::Nul);
    }
    if raw.first() == Some(&b'/') {
        return Err(PathProblem::Absolute);
    }
    let mut path = PathBuf::new();
    for component in raw.split(|b| *b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err(PathProblem::ParentDir),
            name => path.push(OsStr::from_bytes(name)),
        }
    }
    Ok((!path.as_os_str().is_empty()).then_some(path))
}

/// `entry_path` for a name that must not be empty (files, links).
pub fn required_entry_path(raw: &[u8]) -> Result<PathBuf, PathProblem> {
    entry_path(raw)?.ok_or(PathProblem::Empty)
}

/// Whether `path` is made of plain components only (what [`entry_path`] returns): the
/// invariant the extractor relies on before joining it to a directory.
pub fn is_plain(path: &Path) -> bool {
    !path.as_os_str().is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// A name for messages: the raw bytes, lossily decoded and quoted.
pub fn shown(raw: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_and_are_normalised() {
        let ok = |raw: &str, want: &str| {
            assert_eq!(
                entry_path(raw.as_bytes()),
                Ok(Some(PathBuf::from(want))),
                "{raw}"
            );
        };
        ok("uploads/a.jpg", "uploads/a.jpg");
        ok("./uploads//a.jpg", "uploads/a.jpg");
        ok("uploads/dir/", "uploads/dir");
        ok("résumé – 日本/ünï.txt", "résumé – 日本/ünï.txt");
        ok("a/.../b", "a/.../b");
        ok("a/..b/c..", "a/..b/c..");
        assert_eq!(entry_path(b"./"), Ok(None));
        assert_eq!(entry_path(b""), Ok(None));
        assert_eq!(required_entry_path(b"."), Err(PathProblem::Empty));
        assert!(is_plain(&required_entry_path(b"a/b/c").unwrap()));
    }

    #[test]
    fn traversal_and_absolute_names_are_refused() {
        for (raw, problem) in [
            ("../../etc/passwd", PathProblem::ParentDir),
            ("uploads/../../etc/passwd", PathProblem::ParentDir),
            ("uploads/..", PathProblem::ParentDir),
            ("..", PathProblem::ParentDir),
            ("./../x", PathProblem::ParentDir),
            ("/etc/passwd", PathProblem::Absolute),
            ("//etc/passwd", PathProblem::Absolute),
            ("/", PathProblem::Absolute),
        ] {
            assert_eq!(entry_path(raw.as_bytes()), Err(problem), "{raw}");
        }
        assert_eq!(entry_path(b"a\0b"), Err(PathProblem::Nul));
        assert!(!is_plain(Path::new("/etc")));
        assert!(!is_plain(Path::new("a/../b")));
        assert!(!is_plain(Path::new("")));
    }
}
