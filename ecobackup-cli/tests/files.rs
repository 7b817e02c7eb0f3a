//! `ecobackup backup files` and `restore files`: a tree round-trips (nested and empty
//! directories, symbolic links, empty files, unicode names, a sparse gigabyte, modes and
//! nanosecond times); crafted archives sealed into a repository are refused with nothing
//! written outside the target; a tampered artifact leaves the target as it was; existing files
//! are kept unless --overwrite; secrets sets must not share the database recipients;
//! --if-changed skips an unchanged tree; the default excludes are visible and overridable; a
//! file that changes while it is read is reported. No PostgreSQL needed.

mod common;

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::world::flip_middle_byte;
use common::{ecobackup, key, one_error_line, signing_key};

/// A temporary directory with a key, a signing key and an initialised file:// repository.
struct Env {
    dir: tempfile::TempDir,
    vars: Vec<(&'static str, String)>,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let (identity, recipient) = key(dir.path(), "restore.key");
        let (signing, public) = signing_key(dir.path());
        let vars = vec![
            (
                "ECOBACKUP_REPO",
                format!("file://{}", dir.path().join("repo").display()),
            ),
            ("ECOBACKUP_RECIPIENTS", recipient),
            ("ECOBACKUP_IDENTITY_FILE", identity.display().to_string()),
            ("ECOBACKUP_SIGNING_KEY_FILE", signing.display().to_string()),
            ("ECOBACKUP_TRUSTED_SIGNERS", public),
        ];
        let env = Env { dir, vars };
        env.run(&["init"]).assert().success();
        env
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn run(&self, args: &[&str]) -> Command {
        let mut cmd = ecobackup(self.dir.path());
        cmd.args(args).envs(self.vars.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs `args` with `--json`; the parsed output.
    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all).assert().success();
        serde_json::from_slice(&out.get_output().stdout).unwrap()
    }

    /// Backs up `paths` (plus `extra` flags); the manifest.
    fn backup(&self, paths: &[&Path], extra: &[&str]) -> serde_json::Value {
        let mut args = vec!["backup", "files"];
        for p in paths {
            args.extend(["--path", p.to_str().unwrap()]);
        }
        args.extend_from_slice(extra);
        self.json(&args)["manifest"].clone()
    }

    fn backups(&self) -> usize {
        self.json(&["list"]).as_array().unwrap().len()
    }
}

/// What a tree holds: per relative path, its type, mode, modification time (ns), size and
/// link target. Contents are compared separately.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let rel = path.strip_prefix(root).unwrap().to_owned();
        let kind = if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
            "dir".to_owned()
        } else if meta.file_type().is_symlink() {
            format!("link -> {}", std::fs::read_link(&path).unwrap().display())
        } else {
            format!("file of {} bytes", meta.len())
        };
        let line = format!(
            "{kind}, mode {:o}, mtime {}.{:09}",
            meta.mode() & 0o7777,
            meta.mtime(),
            meta.mtime_nsec()
        );
        out.insert(rel, line);
    }
    out
}

/// Whether two files hold the same bytes (read in chunks: one of them is a gigabyte).
fn same_contents(a: &Path, b: &Path) -> bool {
    let (mut a, mut b) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = a.read(&mut x).unwrap();
        let mut m = 0;
        while m < n {
            let k = b.read(&mut y[m..n]).unwrap();
            if k == 0 {
                return false;
            }
            m += k;
        }
        if n == 0 {
            return b.read(&mut y).unwrap() == 0;
        }
        if x[..n] != y[..n] {
            return false;
        }
    }
}

fn assert_same_tree(source: &Path, restored: &Path) {
    let (a, b) = (snapshot(source), snapshot(restored));
    assert_eq!(a, b, "the restored tree differs");
    for (rel, line) in &a {
        if line.starts_with("file") {
            assert!(
                same_contents(&source.join(rel), &restored.join(rel)),
                "{}",
                rel.display()
            );
        }
    }
}

fn set_mtime(path: &Path, seconds: u64, nanos: u32) {
    let time = std::time::UNIX_EPOCH + std::time::Duration::new(seconds, nanos);
    std::fs::File::options()
        .write(true)
        .open(path)
        .or_else(|_| std::fs::File::open(path))
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_modified(time))
        .unwrap();
}

/// The tree of the round trip, under `dir/site`.
fn build_tree(dir: &Path) -> PathBuf {
    let root = dir.join("site");
    let mode = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    std::fs::create_dir_all(root.join("répertoire")).unwrap();
    std::fs::write(root.join("a/b/c/deep.txt"), b"deep\n").unwrap();
    std::fs::write(root.join("empty.txt"), b"").unwrap();
    std::fs::write(root.join("répertoire/ünïcödé – 日本語.txt"), "ünï\n").unwrap();
    std::fs::write(root.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    mode(&root.join("run.sh"), 0o755).unwrap();
    std::fs::write(root.join("secret.pem"), b"-----BEGIN KEY-----\n").unwrap();
    mode(&root.join("secret.pem"), 0o600).unwrap();
    std::fs::write(root.join("read-only.txt"), b"ro\n").unwrap();
    mode(&root.join("read-only.txt"), 0o444).unwrap();
    std::os::unix::fs::symlink("a/b/c/deep.txt", root.join("relative-link")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("absolute-link")).unwrap();
    std::os::unix::fs::symlink("nowhere", root.join("dangling-link")).unwrap();
    // A gigabyte, mostly holes, with data at its start, middle and end (seeded pattern).
    let mut big = std::fs::File::create(root.join("a/sparse.img")).unwrap();
    big.set_len(1 << 30).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for offset in [0u64, 512 << 20, (1 << 30) - 4096] {
        let block: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        big.seek(SeekFrom::Start(offset)).unwrap();
        big.write_all(&block).unwrap();
    }
    drop(big);
    // Times with nanoseconds, set last (deepest first, since writing into a directory moves
    // its time).
    for (i, rel) in [
        "a/b/c/deep.txt",
        "a/sparse.img",
        "empty.txt",
        "run.sh",
        "secret.pem",
        "read-only.txt",
        "répertoire/ünïcödé – 日本語.txt",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(&root.join(rel), 1_600_000_000 + i as u64, 123_456_789);
    }
    mode(&root.join("a/b"), 0o750).unwrap();
    for (i, rel) in ["a/b/c", "a/b", "a", "empty-dir", "répertoire", ""]
        .iter()
        .enumerate()
    {
        set_mtime(&root.join(rel), 1_650_000_000 + i as u64, 987_654_321);
    }
    root
}

#[test]
fn a_tree_round_trips_with_modes_times_links_and_a_sparse_gigabyte() {
    let env = Env::new();
    let root = build_tree(env.dir.path());
    let expected = snapshot(&root);
    // Left out by default, with a warning for the socket.
    let socket = std::os::unix::net::UnixListener::bind(root.join("app.sock")).unwrap();
    for dir in ["node_modules/x", ".next", "db"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("db/PG_VERSION"), "16\n").unwrap();
    std::fs::create_dir_all(root.join("db/global")).unwrap();
    std::fs::create_dir_all(root.join("db/base")).unwrap();
    std::fs::write(root.join("db/global/pg_control"), "x").unwrap();
    std::fs::write(root.join("node_modules/x/index.js"), "x").unwrap();
    set_mtime(&root, 1_650_000_005, 987_654_321);

    let out = env
        .run(&["backup", "files", "--path", root.to_str().unwrap()])
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("app.sock: skipped: it is a socket"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.contains("set site: 7 files"), "{stdout}");
    let manifest = env.json(&["show", "latest"]);
    let facts = &manifest["source"]["files"];
    assert_eq!(facts["set"], "site");
    assert_eq!(facts["paths"][0], root.to_str().unwrap());
    assert_eq!(facts["files"], 7);
    assert_eq!(facts["symlinks"], 3);
    assert_eq!(facts["skipped"], 1);
    assert_eq!(facts["excluded"], 3, "node_modules, .next, db");
    assert_eq!(facts["changed"], 0);
    // Names below the roots never reach the plaintext manifest.
    let text = manifest.to_string();
    assert!(
        !text.contains("deep.txt") && !text.contains("secret.pem"),
        "{text}"
    );
    let stored = manifest["artifacts"][0]["stored_size"].as_u64().unwrap();
    assert!(stored < 1 << 20, "a sparse gigabyte compresses: {stored}");

    drop(socket);
    std::fs::remove_file(root.join("app.sock")).unwrap();
    for dir in ["node_modules", ".next", "db"] {
        std::fs::remove_dir_all(root.join(dir)).unwrap();
    }
    set_mtime(&root, 1_650_000_005, 987_654_321);
    assert_eq!(snapshot(&root), expected);

    let out_dir = env.path("restored");
    let out = env
        .run(&[
            "restore",
            "files",
            "latest",
            "--to",
            out_dir.to_str().unwrap(),
        ])
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.contains("7 files"), "{stdout}");
    assert_same_tree(&root, &out_dir.join("site"));
    // The gigabyte came back sparse.
    let big = std::fs::metadata(out_dir.join("site/a/sparse.img")).unwrap();
    assert!(big.blocks() * 512 < 64 << 20, "{} blocks", big.blocks());
    assert_eq!(
        std::fs::read_dir(&out_dir).unwrap().count(),
        1,
        "no staging directory left"
    );
    // `list` names the set.
    let out = env.run(&["list"]).assert().success();
    let list = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(list.contains("files") && list.contains("[site]"), "{list}");
}

#[test]
fn default_excludes_are_in_the_help_and_can_be_turned_off() {
    let env = Env::new();
    let out = env.run(&["backup", "files", "--help"]).assert().success();
    let help = String::from_utf8_lossy(&out.get_output().stdout).replace('\n', " ");
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for shown in [
        "node_modules",
        "dist",
        ".next",
        ".astro",
        "PG_VERSION",
        "--no-default-excludes",
    ] {
        assert!(help.contains(shown), "{shown} in: {help}");
    }
    let root = env.path("app");
    for dir in ["dist", "apps/shop/.astro", "pglite", "cache", "src"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("pglite/PG_VERSION"), "17\n").unwrap();
    std::fs::create_dir_all(root.join("pglite/global")).unwrap();
    std::fs::create_dir_all(root.join("pglite/base")).unwrap();
    std::fs::write(root.join("pglite/global/pg_control"), "x").unwrap();
    std::fs::write(root.join("dist/bundle.js"), "x").unwrap();
    std::fs::write(root.join("src/main.ts"), "x").unwrap();
    std::fs::write(root.join("src/scratch.tmp"), "x").unwrap();
    std::fs::write(root.join("cache/blob"), "x").unwrap();
    std::fs::write(root.join("notes.tmp"), "x").unwrap();

    let restore = |name: &str| {
        let to = env.path(name);
        env.run(&["restore", "files", "latest", "--to", to.to_str().unwrap()])
            .assert()
            .success();
        to.join("app")
    };
    let with_defaults = env.backup(&[&root], &["--exclude", "*.tmp", "--exclude", "cache/"]);
    assert_eq!(with_defaults["source"]["files"]["excluded"], 6);
    let out = restore("defaults");
    assert!(out.join("src/main.ts").exists());
    for gone in [
        "dist",
        "apps/shop/.astro",
        "pglite",
        "cache",
        "src/scratch.tmp",
        "notes.tmp",
    ] {
        assert!(!out.join(gone).exists(), "{gone}");
    }
    assert!(out.join("apps/shop").is_dir());

    let without = env.backup(&[&root], &["--no-default-excludes"]);
    assert_eq!(without["source"]["files"]["excluded"], 0);
    let out = restore("everything");
    for kept in [
        "dist/bundle.js",
        "apps/shop/.astro",
        "pglite/PG_VERSION",
        "cache/blob",
        "notes.tmp",
    ] {
        assert!(out.join(kept).exists(), "{kept}");
    }
}

/// Seals `archive` into the repository as a files backup (signed, like a real one); its id.
fn seal_crafted(env: &Env, archive: Vec<u8>) -> String {
    use ecobackup_core::artifact::{store, Sealing};
    use ecobackup_core::crypto::{parse_recipients, Signer};
    use ecobackup_core::io::ReaderSource;
    use ecobackup_core::repository::*;
    use ecobackup_core::storage::{RepoUrl, Storage, StorageOptions};
    let var = |name: &str| env.vars.iter().find(|(k, _)| *k == name).unwrap().1.clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let url = RepoUrl::parse(&var("ECOBACKUP_REPO")).unwrap();
        let storage = Storage::open(&url, &StorageOptions::default()).unwrap();
        let signer = Signer::from_file(Path::new(&var("ECOBACKUP_SIGNING_KEY_FILE"))).unwrap();
        let repo = Repository::open(storage)
            .await
            .unwrap()
            .with_signer(std::sync::Arc::new(signer));
        let sealing = Sealing {
            level: 3,
            recipients: parse_recipients(&[var("ECOBACKUP_RECIPIENTS")]).unwrap(),
        };
        let now = chrono::Utc::now();
        let id = new_backup_id(BackupKind::Files, now);
        let source = ReaderSource::new("crafted", std::io::Cursor::new(archive));
        let entry = store(
            &repo,
            &id,
            "files.tar.zst.age",
            source,
            &sealing,
            &ecobackup_core::progress::NoProgress,
        )
        .await
        .unwrap();
        let manifest = Manifest {
            manifest_version: MANIFEST_VERSION,
            id: id.clone(),
            kind: BackupKind::Files,
            tags: Default::default(),
            started_at: now,
            finished_at: chrono::Utc::now(),
            source: SourceFacts {
                files: Some(FilesFacts {
                    set: "crafted".into(),
                    paths: vec!["/srv/crafted".into()],
                    ..Default::default()
                }),
                ..Default::default()
            },
            artifacts: vec![entry],
            written_by: "a test".into(),
            targets: Vec::new(),
        };
        repo.write_manifest(&manifest).await.unwrap();
        id
    })
}

/// A tar of raw entries (name, type, link target, contents): names written as bytes, as an
/// attacker would, past the checks of the tar crate's builder.
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
fn crafted_archives_are_refused_and_nothing_lands_outside_the_directory() {
    use tar::EntryType as T;
    let env = Env::new();
    let passwd = std::fs::read("/etc/passwd").unwrap();
    // The target is env/x/y/to: `../../sentinel` would be env/x/sentinel.
    let to = env.path("x/y/to");
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let outside = env.path("outside");
    std::fs::create_dir(&outside).unwrap();
    let link_target = outside.to_str().unwrap().as_bytes();
    let harmless: RawEntry<'_> = (b"fine.txt", T::Regular, b"", b"fine");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            crafted(&[harmless, (b"../../etc/passwd", T::Regular, b"", b"pwned::0:0::/:/bin/sh\n")]),
            "archive entry \"../../etc/passwd\" climbs out of the restore directory with '..'",
        ),
        (
            crafted(&[(b"/etc/passwd", T::Regular, b"", b"pwned::0:0::/:/bin/sh\n")]),
            "archive entry \"/etc/passwd\" is an absolute path",
        ),
        (
            crafted(&[(b"../../sentinel", T::Regular, b"", b"pwned")]),
            "archive entry \"../../sentinel\" climbs out",
        ),
        (
            crafted(&[
                harmless,
                (b"link", T::Symlink, link_target, b""),
                (b"link/planted", T::Regular, b"", b"pwned"),
            ]),
            "archive entry \"link/planted\" goes through \"link\", a symbolic link made by an earlier entry",
        ),
        (
            crafted(&[(b"hard", T::Link, b"../../sentinel", b"")]),
            "archive entry \"hard\" is a hard link whose target climbs out",
        ),
    ];
    for (archive, expected) in cases {
        let id = seal_crafted(&env, archive);
        let out = env
            .run(&["restore", "files", &id, "--to", to.to_str().unwrap()])
            .assert()
            .code(1);
        let line = one_error_line(&out.get_output().stderr);
        assert!(line.contains(expected), "{expected}: {line}");
        assert!(line.contains("nothing was restored"), "{line}");
        assert!(
            !to.exists(),
            "the target, created for the restore, is gone again"
        );
        assert!(!env.path("x/sentinel").exists());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd);
    }
    // The same checks with the target already there: it is left as it was.
    std::fs::create_dir_all(&to).unwrap();
    std::fs::write(to.join("kept.txt"), "kept").unwrap();
    let id = seal_crafted(
        &env,
        crafted(&[harmless, (b"../../etc/passwd", T::Regular, b"", b"x")]),
    );
    env.run(&["restore", "files", &id, "--to", to.to_str().unwrap()])
        .assert()
        .code(1);
    let left: Vec<_> = std::fs::read_dir(&to)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["kept.txt"]);
}

#[test]
fn a_tampered_artifact_leaves_the_directory_as_it_was() {
    let env = Env::new();
    let root = env.path("uploads");
    std::fs::create_dir(&root).unwrap();
    // Incompressible enough that the artifact has a middle to damage (seeded).
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let bytes: Vec<u8> = (0..3 << 20)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 56) as u8
        })
        .collect();
    std::fs::write(root.join("photo.jpg"), &bytes).unwrap();
    let manifest = env.backup(&[&root], &[]);
    let id = manifest["id"].as_str().unwrap();
    let artifact = env.path(&format!("repo/backups/{id}/files.tar.zst.age"));
    flip_middle_byte(&artifact, 1);

    let to = env.path("restore-here");
    std::fs::create_dir(&to).unwrap();
    std::fs::write(to.join("existing.txt"), "as it was").unwrap();
    let before = snapshot(&to);
    let out = env
        .run(&["restore", "files", id, "--to", to.to_str().unwrap()])
        .assert()
        .code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.contains("files.tar.zst.age") || line.contains("authentication"),
        "{line}"
    );
    assert_eq!(snapshot(&to), before, "nothing added, nothing left behind");
    assert_eq!(
        std::fs::read_to_string(to.join("existing.txt")).unwrap(),
        "as it was"
    );
}

#[test]
fn existing_files_are_kept_unless_overwrite_and_include_selects() {
    let env = Env::new();
    let root = env.path("conf");
    std::fs::create_dir_all(root.join("sites")).unwrap();
    std::fs::write(root.join("Caddyfile"), "new config").unwrap();
    std::fs::write(root.join("sites/shop.conf"), "shop").unwrap();
    std::fs::write(root.join("sites/blog.conf"), "blog").unwrap();
    env.backup(&[&root], &[]);

    let to = env.path("etc");
    std::fs::create_dir_all(to.join("conf")).unwrap();
    std::fs::write(to.join("conf/Caddyfile"), "old config").unwrap();
    let to_arg = to.to_str().unwrap();
    let out = env
        .run(&["restore", "files", "latest", "--to", to_arg])
        .assert()
        .code(1);
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.contains("1 of the backup's entries already exist")
            && line.contains("conf/Caddyfile exists")
            && line.contains("--overwrite"),
        "{line}"
    );
    assert!(!to.join("conf/sites").exists(), "nothing was moved");
    assert_eq!(
        std::fs::read_to_string(to.join("conf/Caddyfile")).unwrap(),
        "old config"
    );
    assert_eq!(
        std::fs::read_dir(&to).unwrap().count(),
        1,
        "no staging left"
    );

    // --include: only the matching entries (and the directories above them).
    env.run(&[
        "restore",
        "files",
        "latest",
        "--to",
        to_arg,
        "--include",
        "**/shop.conf",
    ])
    .assert()
    .success();
    assert!(to.join("conf/sites/shop.conf").exists());
    assert!(!to.join("conf/sites/blog.conf").exists());

    env.run(&["restore", "files", "latest", "--to", to_arg, "--overwrite"])
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(to.join("conf/Caddyfile")).unwrap(),
        "new config"
    );
    assert_same_tree(&root, &to.join("conf"));
    // A pattern that matches nothing is an error, not a silent no-op.
    let out = env
        .run(&[
            "restore",
            "files",
            "latest",
            "--to",
            to_arg,
            "--include",
            "nothing*",
        ])
        .assert()
        .code(1);
    assert!(one_error_line(&out.get_output().stderr).contains("no entry of backup"));
}

#[test]
fn if_changed_skips_an_unchanged_tree_and_backs_up_a_changed_one() {
    let env = Env::new();
    let env_file = env.path("app/.env");
    std::fs::create_dir_all(env_file.parent().unwrap()).unwrap();
    std::fs::write(&env_file, "SECRET=1\n").unwrap();
    let caddy = env.path("caddy/Caddyfile");
    std::fs::create_dir_all(caddy.parent().unwrap()).unwrap();
    std::fs::write(&caddy, "shop.example {}\n").unwrap();
    let args = [
        "backup",
        "files",
        "--path",
        env_file.to_str().unwrap(),
        "--path",
        caddy.to_str().unwrap(),
        "--if-changed",
    ];
    env.run(&args).assert().success();
    assert_eq!(env.backups(), 1, "the first run backs up");
    let first = env.json(&["show", "latest"]);
    assert_eq!(first["source"]["files"]["set"], ".env+Caddyfile");

    let out = env.run(&args).assert().success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert_eq!(
        stdout.trim(),
        format!(
            "files set .env+Caddyfile unchanged since backup {}: nothing stored",
            first["id"].as_str().unwrap()
        )
    );
    assert_eq!(env.backups(), 1, "no manifest written");

    // The same size, another byte.
    std::fs::write(&env_file, "SECRET=2\n").unwrap();
    env.run(&args).assert().success();
    assert_eq!(env.backups(), 2);
    let second = env.json(&["show", "latest"]);
    assert_ne!(
        first["source"]["files"]["tree_sha256"],
        second["source"]["files"]["tree_sha256"]
    );
    // Without --if-changed, a backup is always stored, with the same digest as the first pass.
    let third = env.backup(&[&env_file, &caddy], &[]);
    assert_eq!(
        third["source"]["files"]["tree_sha256"],
        second["source"]["files"]["tree_sha256"]
    );
    // Another set is another group for status (and retention).
    env.backup(&[&caddy], &[]);
    let status = env.json(&["status"]);
    let groups: Vec<&str> = status["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    assert_eq!(groups, [".env+Caddyfile", "Caddyfile"], "{status}");
    // `drill latest` means the newest database backup: files backups are not drilled.
    let out = env.run(&["drill"]).assert().failure();
    let line = one_error_line(&out.get_output().stderr);
    assert!(
        line.contains("no backup latest (logical or physical)"),
        "{line}"
    );
}

#[test]
fn a_file_changing_while_read_is_reported_and_the_backup_kept() {
    let env = Env::new();
    // A file whose size says 0 and which yields bytes when read, every time: it "grew" while
    // it was read, deterministically (procfs reports no size for it).
    let out = env
        .run(&["backup", "files", "--path", "/proc/self/stat"])
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("/proc/self/stat: changed: it grew while it was read"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(stdout.contains("1 changed while read"), "{stdout}");
    let manifest = env.json(&["show", "latest"]);
    assert_eq!(manifest["source"]["files"]["changed"], 1);
    // The archive stays well-formed: it restores (the file as it was stored, empty).
    let to = env.path("out");
    env.run(&["restore", "files", "latest", "--to", to.to_str().unwrap()])
        .assert()
        .success();
    assert_eq!(std::fs::metadata(to.join("stat")).unwrap().len(), 0);
}

#[test]
fn secrets_sets_must_not_share_the_database_recipients() {
    let env = Env::new();
    let database = env.vars[1].1.clone();
    let (keys_identity, keys_recipient) = key(env.dir.path(), "keys.key");
    let keys_dir = env.path("keys");
    std::fs::create_dir(&keys_dir).unwrap();
    std::fs::write(keys_dir.join("jwt.pem"), "-----BEGIN PRIVATE KEY-----\n").unwrap();
    std::fs::write(keys_dir.join("notes.txt"), "not a key").unwrap();
    let write_config = |recipients: &str, extra: &str| {
        let path = env.path("ecobackup.toml");
        std::fs::write(
            &path,
            format!(
                "[encryption]\nrecipients = [\"{database}\"]\n\n\
                 [[files]]\nname = \"keys\"\npaths = [\"keys\"]\nexclude = [\"*.txt\"]\n\
                 secrets = true\n{recipients}{extra}"
            ),
        )
        .unwrap();
        path
    };
    let config = write_config(
        &format!("recipients = [\"{keys_recipient}\", \"{database}\"]\n"),
        "",
    );
    for args in [vec!["list"], vec!["backup", "files", "--name", "keys"]] {
        let out = env
            .run(&args)
            .arg("--config")
            .arg(&config)
            .env_remove("ECOBACKUP_RECIPIENTS")
            .assert()
            .code(2);
        let line = one_error_line(&out.get_output().stderr);
        assert!(
            line.contains("[[files]] \"keys\" has secrets = true, but its recipient")
                && line.contains("is also a recipient of the database backups")
                && line.contains("domain isolation"),
            "{line}"
        );
    }
    let config = write_config("", "");
    let out = env
        .run(&["list", "--config", config.to_str().unwrap()])
        .assert()
        .code(2);
    assert!(one_error_line(&out.get_output().stderr).contains("has no recipients of its own"));

    // Its own key and its own repository: stored there, readable with its key only.
    let secrets_repo = env.path("secrets-repo");
    let config = write_config(
        &format!("recipients = [\"{keys_recipient}\"]\n"),
        &format!("repository = \"file://{}\"\n", secrets_repo.display()),
    );
    let with_config = |args: &[&str]| {
        let mut cmd = env.run(args);
        cmd.arg("--config").arg(&config);
        cmd
    };
    with_config(&[
        "--repo",
        &format!("file://{}", secrets_repo.display()),
        "init",
    ])
    .assert()
    .success();
    with_config(&["backup", "files", "--name", "keys"])
        .assert()
        .success();
    assert_eq!(
        env.backups(),
        0,
        "nothing in the database backups' repository"
    );
    // The keys, or a folder holding them, as an ad-hoc set: refused, it would be sealed to the
    // database backups' recipients.
    for path in [keys_dir.clone(), keys_dir.parent().unwrap().to_owned()] {
        let out = with_config(&["backup", "files", "--path", path.to_str().unwrap()])
            .assert()
            .code(2);
        let line = one_error_line(&out.get_output().stderr);
        assert!(
            line.contains("overlaps") && line.contains("secrets set \"keys\""),
            "{line}"
        );
    }
    assert_eq!(env.backups(), 0);
    // The database key cannot open it; the set's key can.
    let to = env.path("restored-keys");
    let out = with_config(&[
        "restore",
        "files",
        "latest",
        "--name",
        "keys",
        "--to",
        to.to_str().unwrap(),
    ])
    .assert()
    .code(1);
    assert!(one_error_line(&out.get_output().stderr).contains("wrong key"));
    assert!(!to.exists());
    with_config(&[
        "restore",
        "files",
        "latest",
        "--name",
        "keys",
        "--to",
        to.to_str().unwrap(),
    ])
    .env("ECOBACKUP_IDENTITY_FILE", &keys_identity)
    .assert()
    .success();
    assert!(to.join("keys/jwt.pem").exists());
    assert!(
        !to.join("keys/notes.txt").exists(),
        "the set's exclude applies"
    );
    // In the database backups' own repository it is stored too, with a warning.
    let config = write_config(&format!("recipients = [\"{keys_recipient}\"]\n"), "");
    let out = env
        .run(&[
            "backup",
            "files",
            "--name",
            "keys",
            "--config",
            config.to_str().unwrap(),
        ])
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("one leaked bucket credential could delete both"),
        "{stderr}"
    );
    assert_eq!(env.backups(), 1);
}

/// `backup files` tells `[notify]` like the other backups, and `--prometheus` describes the
/// repository the set was stored in (its own, here), not the configured one.
#[test]
fn backup_files_notifies_and_writes_the_textfile_of_its_repository() {
    use ecobackup_testkit::http_recorder::{Answer, HttpRecorder};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(HttpRecorder::start(Answer::Ok));
    let env = Env::new();
    let uploads = env.path("uploads");
    std::fs::create_dir(&uploads).unwrap();
    std::fs::write(uploads.join("a.jpg"), "jpeg").unwrap();
    let own_repo = format!("file://{}", env.path("uploads-repo").display());
    let config = env.path("ecobackup.toml");
    std::fs::write(
        &config,
        format!(
            "[[files]]\nname = \"uploads\"\npaths = [\"uploads\"]\nrepository = \"{own_repo}\"\n\n\
             [notify]\nping_url = \"{}\"\nwebhook_url = \"{}\"\nwebhook_on_success = true\n",
            server.url("/ping/abc"),
            server.url("/hook")
        ),
    )
    .unwrap();
    env.run(&["--repo", &own_repo, "init"]).assert().success();
    let prom = env.path("uploads.prom");
    env.run(&["backup", "files", "--name", "uploads", "--prometheus"])
        .arg(&prom)
        .arg("--config")
        .arg(&config)
        .assert()
        .success();
    let requests = server.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert!(
        paths.contains(&"/ping/abc/start") && paths.contains(&"/ping/abc"),
        "{paths:?}"
    );
    let event = requests.iter().find(|r| r.path == "/hook").unwrap();
    let event: serde_json::Value = serde_json::from_str(&event.body).unwrap();
    assert_eq!(event["command"], "backup files");
    assert_eq!(event["ok"], true);
    assert!(
        event["backup_id"].as_str().unwrap().contains("-files-"),
        "{event}"
    );
    let textfile = std::fs::read_to_string(&prom).unwrap();
    assert!(
        textfile.contains("ecobackup_backups{kind=\"files\",database=\"uploads\"} 1"),
        "{textfile}"
    );
    assert_eq!(env.backups(), 0, "the configured repository holds nothing");
}

/// The archive restores with stock tools alone (age, zstd, GNU tar), times to the nanosecond
/// included (pax records).
#[test]
fn stock_age_zstd_and_tar_restore_a_files_backup() {
    let env = Env::new();
    let root = env.path("conf");
    std::fs::create_dir_all(root.join("sites")).unwrap();
    std::fs::write(root.join("sites/shop.conf"), "shop").unwrap();
    std::fs::write(root.join(".env"), "SECRET=1\n").unwrap();
    std::fs::set_permissions(root.join(".env"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("sites/shop.conf", root.join("current")).unwrap();
    set_mtime(&root.join(".env"), 1_700_000_000, 5);
    set_mtime(&root.join("sites"), 1_700_000_001, 999_999_999);
    set_mtime(&root, 1_700_000_002, 1);
    let manifest = env.backup(&[&root], &[]);
    let id = manifest["id"].as_str().unwrap();
    let artifact = env.path(&format!("repo/backups/{id}/files.tar.zst.age"));
    let out = env.path("stock");
    std::fs::create_dir(&out).unwrap();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg("age -d -i \"$1\" \"$2\" | zstd -d | tar -xpf - -C \"$3\"")
        .arg("sh")
        .arg(env.path("restore.key"))
        .arg(&artifact)
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    assert_same_tree(&root, &out.join("conf"));
}
