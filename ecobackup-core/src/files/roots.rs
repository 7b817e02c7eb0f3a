//! The roots of a files set and the names they get in the archive.
//!
//! Each root is stored under its last component: `/srv/ecommus/uploads` becomes `uploads/…`,
//! `/opt/ecommus/.env` becomes `.env`. Two roots with the same last component would mix in one
//! archive folder, so such a set is refused (split it into two sets, or back up a common
//! parent) rather than renamed into something the operator would not recognise at restore.

use crate::error::remedy;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One root of a files set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Root {
    /// The path as backed up: absolute, as given (not canonicalised: a symbolic link named as
    /// a root is followed, and recorded under the name the operator used).
    pub path: PathBuf,
    /// Its name in the archive: the path's last component.
    pub name: String,
}

fn refused(detail: String) -> Error {
    Error::Refused {
        context: "starting a files backup".to_owned(),
        detail,
    }
}

/// The roots for `paths`: absolute, existing, each with a distinct archive name.
pub fn resolve_roots(paths: &[PathBuf]) -> Result<Vec<Root>> {
    if paths.is_empty() {
        return Err(refused(remedy!(
            cli: "no path given: pass --path DIR (or name a [[files]] entry with --name)",
            library: "no path given: name the directories or files to back up",
        )));
    }
    let mut roots: Vec<Root> = Vec::with_capacity(paths.len());
    for given in paths {
        let path = std::path::absolute(given)
            .map_err(|e| Error::io(format!("resolving {}", given.display()), e))?;
        // `a/b/..` would be named `..`: normalise the lexical `.` and `..` first.
        let path = normalise(&path);
        let name = match path.file_name() {
            Some(name) => String::from_utf8_lossy(name.as_bytes()).into_owned(),
            None => {
                return Err(refused(format!(
                    "{} has no name to store it under: back up the directories below it instead",
                    path.display()
                )))
            }
        };
        let meta = std::fs::metadata(&path).map_err(|e| {
            Error::io(
                format!("reading {} (a path of the files set)", path.display()),
                e,
            )
        })?;
        if !meta.is_dir() && !meta.is_file() {
            return Err(refused(format!(
                "{} is neither a directory nor a regular file (a socket, FIFO or device): ecobackup backs up files and directories",
                path.display()
            )));
        }
        if let Some(other) = roots.iter().find(|r| r.name == name) {
            let (other, path) = (other.path.display(), path.display());
            return Err(refused(remedy!(
                cli: "{other} and {path} would both be stored as {name:?} in the archive: back them up as two sets (--name), or back up a common parent directory",
                library: "{other} and {path} would both be stored as {name:?} in the archive: back them up as two sets, or back up a common parent directory",
            )));
        }
        roots.push(Root { path, name });
    }
    Ok(roots)
}

/// `path` without `.` components and with each `..` removing the component before it (as the
/// operator reads the path, not as the filesystem would resolve symbolic links).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Refuses a set name that cannot name a set: empty, longer than 100 bytes, or holding
/// anything but letters, digits and `.`, `_`, `-`, `+`, `@` (it appears in metric labels and
/// in `check` findings).
pub fn check_set_name(name: &str) -> Result<()> {
    let allowed = |c: char| c.is_alphanumeric() || ".-_+@".contains(c);
    if name.is_empty() || name.len() > 100 || !name.chars().all(allowed) {
        return Err(Error::Config {
            section: "files".to_owned(),
            detail: format!(
                "{name:?} cannot name a files set: use 1 to 100 letters, digits, '.', '_', '-', '+' or '@' (e.g. uploads, keys, app-config)"
            ),
        });
    }
    Ok(())
}

/// The name of an ad-hoc set (`backup files --path …` without `--name`): its roots' archive
/// names joined by `+` (`uploads`, `.env+Caddyfile`), so the same paths always make the same
/// set (for retention, `status` and `--if-changed`).
pub fn default_set_name(roots: &[Root]) -> String {
    let joined: Vec<String> = roots
        .iter()
        .map(|r| {
            r.name
                .chars()
                .map(|c| {
                    if c.is_alphanumeric() || ".-_@".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        })
        .collect();
    let mut name = joined.join("+");
    if name.len() > 100 {
        let mut end = 100;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_are_named_after_their_last_component() {
        let dir = tempfile::tempdir().unwrap();
        let uploads = dir.path().join("srv/uploads");
        std::fs::create_dir_all(&uploads).unwrap();
        let env = dir.path().join("app/.env");
        std::fs::create_dir_all(env.parent().unwrap()).unwrap();
        std::fs::write(&env, "KEY=1\n").unwrap();
        let roots = resolve_roots(&[uploads.join("."), env.clone()]).unwrap();
        assert_eq!(roots[0].name, "uploads");
        assert_eq!(roots[0].path, uploads);
        assert_eq!(roots[1].name, ".env");
        assert_eq!(default_set_name(&roots), "uploads+.env");
        check_set_name(&default_set_name(&roots)).unwrap();
    }

    #[test]
    fn colliding_missing_and_nameless_roots_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["a/config", "b/config"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let err = resolve_roots(&[dir.path().join("a/config"), dir.path().join("b/config")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("would both be stored as \"config\""), "{err}");
        let err = resolve_roots(&[dir.path().join("missing")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing (a path of the files set)"), "{err}");
        let err = resolve_roots(&[PathBuf::from("/")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no name"), "{err}");
        assert!(resolve_roots(&[]).is_err());
    }

    #[test]
    fn set_names_are_checked() {
        for good in ["uploads", "keys", "app-config", ".env+Caddyfile", "ünï"] {
            check_set_name(good).unwrap();
        }
        for bad in ["", "a/b", "a b", "x\n", &"a".repeat(101)] {
            assert!(check_set_name(bad).is_err(), "{bad:?}");
        }
    }
}
