//! Local files that hold backup data, keys or reports: directories 0700, files 0600, whatever
//! the process's umask, and never half-written under their final name.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// The mode of every directory ecobackup creates for backup data, keys and reports.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// The mode of every file ecobackup writes with backup data, keys or reports.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Creates `path` and its missing parents with mode 0700 (parents that already exist are left
/// as they are).
pub fn create_private_dir_all(path: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut current = Some(path);
    while let Some(dir) = current {
        if dir.as_os_str().is_empty() || dir.exists() {
            break;
        }
        missing.push(dir.to_owned());
        current = dir.parent();
    }
    for dir in missing.iter().rev() {
        match fs::DirBuilder::new().mode(PRIVATE_DIR_MODE).create(dir) {
            Ok(()) => {
                // The umask may have removed owner bits; set the mode exactly.
                fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR_MODE))
                    .with_context(|| format!("setting the mode of {}", dir.display()))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(format!("creating {}", dir.display()), e)),
        }
    }
    Ok(())
}

/// Sets a file's mode to 0600.
pub fn make_private(path: &Path) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(PRIVATE_FILE_MODE))
        .with_context(|| format!("setting the mode of {}", path.display()))
}

/// Writes `content` to `path` with mode 0600: first to a temporary file in the same
/// directory (fsynced), then renamed into place, so that a reader or a crash never sees half
/// a file. Without `overwrite`, an existing `path` is never replaced ([`Error::AlreadyExists`]).
pub fn write_private_file(path: &Path, content: &[u8], overwrite: bool) -> Result<()> {
    if !overwrite && fs::symlink_metadata(path).is_ok() {
        return Err(Error::AlreadyExists {
            path: path.to_owned(),
        });
    }
    let temp = temp_beside(path);
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE_MODE)
            .open(&temp)?;
        file.set_permissions(fs::Permissions::from_mode(PRIVATE_FILE_MODE))?;
        file.write_all(content)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(Error::io(format!("writing {}", path.display()), e));
    }
    let placed = if overwrite {
        fs::rename(&temp, path)
    } else {
        // A hard link fails when the name exists, even if it appeared a moment ago.
        let linked = fs::hard_link(&temp, path);
        let _ = fs::remove_file(&temp);
        linked
    };
    if let Err(e) = placed {
        let _ = fs::remove_file(&temp);
        return Err(match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::AlreadyExists {
                path: path.to_owned(),
            },
            _ => Error::io(format!("writing {}", path.display()), e),
        });
    }
    sync_dir(path)
}

/// A hidden temporary name in the same directory as `path`.
fn temp_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "ecobackup".into(), |n| n.to_string_lossy().into_owned());
    let suffix: u64 = rand::random();
    path.with_file_name(format!(".{name}.tmp-{suffix:016x}"))
}

fn sync_dir(path: &Path) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", parent.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_replaces_without_overwrite_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/report.json");
        create_private_dir_all(path.parent().unwrap()).unwrap();
        write_private_file(&path, b"one", false).unwrap();
        let err = write_private_file(&path, b"two", false).unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"one");
        write_private_file(&path, b"three", true).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"three");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["report.json"]);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);
    }
}
