//! What a files backup leaves out: the default excludes (directories that are regenerated,
//! never restored) and the operator's glob patterns.
//!
//! A pattern is matched against an entry's path relative to its root (`cache/img/a.tmp` under
//! `/srv/uploads`) and against its name alone (`a.tmp`), with `globset`'s glob syntax (`*`
//! stays inside one component, `**` crosses them, `{a,b}` alternates). A pattern ending in `/`
//! matches directories only (`cache/`). An excluded directory is left out with everything in
//! it. The roots themselves are never excluded: naming one is asking for it.

use std::path::Path;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// Directory names excluded by default: what a build or `npm ci` makes again (the ecommus
/// runbook: "don't back up dist/, node_modules/, apps/*/.next, apps/*/.astro").
pub const DEFAULT_EXCLUDED_DIRS: [&str; 4] = ["node_modules", "dist", ".next", ".astro"];

/// The file that marks a PostgreSQL data directory (a development database, like the runbook's
/// `data/db/` PGlite path): excluded by default, since a copy of a running cluster's files is
/// not a usable backup — back the database up with `backup logical` or `backup physical`.
pub const PG_DATA_MARKER: &str = "PG_VERSION";

/// One line describing the default excludes, for help texts and messages.
pub const DEFAULT_EXCLUDES_HELP: &str = "directories named node_modules, dist, .next or .astro, and PostgreSQL data directories (a directory holding PG_VERSION)";

/// What to leave out of a files backup.
#[derive(Clone, Debug)]
pub struct Excludes {
    defaults: bool,
    any: GlobSet,
    dirs_only: GlobSet,
    patterns: Vec<String>,
}

impl Default for Excludes {
    fn default() -> Self {
        Excludes::new(&[], true).expect("no pattern to get wrong")
    }
}

/// Why an entry is left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exclusion {
    /// One of [`DEFAULT_EXCLUDED_DIRS`].
    Regenerable,
    /// A directory holding [`PG_DATA_MARKER`].
    PostgresData,
    /// An operator's pattern.
    Pattern,
}

impl Excludes {
    /// The operator's `patterns`, plus the default excludes when `defaults` is true. A pattern
    /// that is not a valid glob is an error naming it.
    pub fn new(patterns: &[String], defaults: bool) -> Result<Excludes> {
        let mut any = GlobSetBuilder::new();
        let mut dirs_only = GlobSetBuilder::new();
        for pattern in patterns {
            let (text, builder) = match pattern.strip_suffix('/') {
                Some(dir) => (dir, &mut dirs_only),
                None => (pattern.as_str(), &mut any),
            };
            builder.add(glob(text).map_err(|detail| Error::Config {
                section: "files".to_owned(),
                detail: format!(
                    "exclude pattern {pattern:?} is not a valid glob ({detail}): e.g. '*.tmp', 'cache/', 'logs/**/*.gz'"
                ),
            })?);
        }
        let build = |builder: GlobSetBuilder| {
            builder.build().map_err(|e| Error::Config {
                section: "files".to_owned(),
                detail: format!("the exclude patterns cannot be compiled: {e}"),
            })
        };
        Ok(Excludes {
            defaults,
            any: build(any)?,
            dirs_only: build(dirs_only)?,
            patterns: patterns.to_vec(),
        })
    }

    /// The operator's patterns, as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether the default excludes apply.
    pub fn defaults(&self) -> bool {
        self.defaults
    }

    /// Why the entry at `relative` (below its root; `absolute` on disk) is left out, if it is.
    /// `is_dir` says whether it is a directory (not following a symbolic link).
    pub fn check(&self, relative: &Path, absolute: &Path, is_dir: bool) -> Option<Exclusion> {
        let name = relative.file_name().map(Path::new);
        let matches =
            |set: &GlobSet| set.is_match(relative) || name.is_some_and(|name| set.is_match(name));
        if matches(&self.any) || (is_dir && matches(&self.dirs_only)) {
            return Some(Exclusion::Pattern);
        }
        if self.defaults && is_dir {
            let regenerable = name
                .and_then(|n| n.to_str())
                .is_some_and(|n| DEFAULT_EXCLUDED_DIRS.contains(&n));
            if regenerable {
                return Some(Exclusion::Regenerable);
            }
            // A data directory has PG_VERSION, global/pg_control and base/: an uploaded file
            // named PG_VERSION alone must not drop its folder.
            let is = |p: &str, dir: bool| {
                std::fs::symlink_metadata(absolute.join(p)).is_ok_and(|m| {
                    if dir {
                        m.is_dir()
                    } else {
                        m.is_file()
                    }
                })
            };
            if is(PG_DATA_MARKER, false) && is("global/pg_control", false) && is("base", true) {
                return Some(Exclusion::PostgresData);
            }
        }
        None
    }
}

/// A glob with the separator kept literal (`*` does not cross `/`).
pub(crate) fn glob(pattern: &str) -> std::result::Result<Glob, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| e.kind().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_the_relative_path_or_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let excludes = Excludes::new(
            &["*.tmp".into(), "cache/".into(), "logs/**/*.gz".into()],
            false,
        )
        .unwrap();
        let check = |rel: &str, is_dir: bool| excludes.check(Path::new(rel), dir.path(), is_dir);
        assert_eq!(check("a/b/c.tmp", false), Some(Exclusion::Pattern));
        assert_eq!(check("c.tmp", false), Some(Exclusion::Pattern));
        assert_eq!(check("a/cache", true), Some(Exclusion::Pattern));
        assert_eq!(
            check("a/cache", false),
            None,
            "cache/ means directories only"
        );
        assert_eq!(check("logs/2026/11/x.gz", false), Some(Exclusion::Pattern));
        assert_eq!(check("old/logs/x.gz", false), None);
        assert_eq!(check("node_modules", true), None, "defaults are off");
        assert_eq!(check("a/b.tmpx", false), None);
    }

    #[test]
    fn defaults_leave_out_regenerable_and_database_directories() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data/db");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join(PG_DATA_MARKER), "16\n").unwrap();
        // A file named PG_VERSION alone (an upload) does not make a data directory.
        let upload = root.path().join("uploads/user1");
        std::fs::create_dir_all(&upload).unwrap();
        std::fs::write(upload.join(PG_DATA_MARKER), "16\n").unwrap();
        assert_eq!(
            Excludes::default().check(Path::new("uploads/user1"), &upload, true),
            None
        );
        assert_eq!(
            Excludes::default().check(Path::new("data/db"), &data, true),
            None,
            "no global/pg_control yet"
        );
        std::fs::create_dir_all(data.join("global")).unwrap();
        std::fs::create_dir_all(data.join("base")).unwrap();
        std::fs::write(data.join("global/pg_control"), "x").unwrap();
        let excludes = Excludes::default();
        for name in DEFAULT_EXCLUDED_DIRS {
            let rel = Path::new("apps/web").join(name);
            assert_eq!(
                excludes.check(&rel, &root.path().join(&rel), true),
                Some(Exclusion::Regenerable),
                "{name}"
            );
            assert_eq!(excludes.check(&rel, &root.path().join(&rel), false), None);
        }
        assert_eq!(
            excludes.check(Path::new("data/db"), &data, true),
            Some(Exclusion::PostgresData)
        );
        assert_eq!(
            excludes.check(Path::new("data"), &root.path().join("data"), true),
            None
        );
        let off = Excludes::new(&[], false).unwrap();
        assert_eq!(off.check(Path::new("data/db"), &data, true), None);
        assert_eq!(
            off.check(Path::new("node_modules"), root.path(), true),
            None
        );
    }

    #[test]
    fn a_bad_pattern_is_one_clear_error() {
        let err = Excludes::new(&["a[".into()], true).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "invalid [files] configuration: exclude pattern \"a[\" is not a valid glob"
            ),
            "{err}"
        );
    }
}
