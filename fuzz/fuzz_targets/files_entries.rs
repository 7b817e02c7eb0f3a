//! The names and entries of a files archive, as `restore files` reads them from a repository
//! that someone else may have filled: the name check never panics and accepts only relative
//! paths of plain components, and the checked unpacker, given any tar stream, writes nothing
//! outside the directory it unpacks into.
//!
//! The first byte picks the target: 0 a name alone, 1 a whole archive unpacked into a fresh
//! directory beside an empty sentinel directory. Archives whose links point outside their own
//! tree (absolute targets, `..`) are passed over before unpacking, so that a bug can at worst
//! write below the temporary directory through a name; still, run it in a throwaway container
//! or as an unprivileged user. Seeds in `fuzz/seeds/files_entries` (`../../etc/passwd`,
//! `/etc/passwd`, a link followed by a file through it, a hard link out).
//!
//! Run (from fuzz/): cargo +nightly fuzz run files_entries corpus/files_entries seeds/files_entries
#![no_main]

use std::path::Component;

use ecobackup_core::files::entry_path::{entry_path, is_plain};
use ecobackup_core::files::unpack_checked;
use libfuzzer_sys::fuzz_target;

/// Whether every link of the archive points inside its own tree (or the archive is unreadable).
fn links_stay_inside(archive: &[u8]) -> bool {
    let mut archive = tar::Archive::new(archive);
    let Ok(entries) = archive.entries() else {
        return true;
    };
    for entry in entries {
        let Ok(entry) = entry else {
            return true;
        };
        if let Some(target) = entry.link_name_bytes() {
            if target.first() == Some(&b'/') || target.split(|b| *b == b'/').any(|c| c == b"..") {
                return false;
            }
        }
    }
    true
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if selector % 2 == 0 {
        if let Ok(Some(path)) = entry_path(rest) {
            assert!(is_plain(&path), "{path:?}");
            assert!(path
                .components()
                .all(|c| matches!(c, Component::Normal(n) if n != "..")));
        }
        return;
    }
    if !links_stay_inside(rest) {
        return;
    }
    let base = tempfile::tempdir().unwrap();
    let inside = base.path().join("a/b/to");
    let sentinel = base.path().join("a/sentinel");
    std::fs::create_dir_all(&inside).unwrap();
    std::fs::create_dir_all(&sentinel).unwrap();
    let _ = unpack_checked(rest, &inside);
    let names = |dir: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(names(base.path()), ["a"]);
    assert_eq!(names(&base.path().join("a")), ["b", "sentinel"]);
    assert_eq!(names(&base.path().join("a/b")), ["to"]);
    assert!(names(&sentinel).is_empty());
});
