//! Signed manifests through the CLI: `key generate --signing`, backups that refuse to run
//! unsigned, and restore / verify / drill refusing planted, altered, re-signed and moved
//! manifests with one clear line each.

mod common;

use std::path::{Path, PathBuf};

use common::world::World;
use common::{ecobackup, one_error_line, signing_key};
use ecobackup_core::crypto::Signer;

fn manifest_path(world: &World, id: &str) -> PathBuf {
    world
        .dir
        .path()
        .join("repo/backups")
        .join(id)
        .join("manifest.json")
}

fn signature_path(world: &World, id: &str) -> PathBuf {
    let mut path = manifest_path(world, id).into_os_string();
    path.push(".sig");
    PathBuf::from(path)
}

/// Another well-formed backup id (same time, other random part).
fn other_id(id: &str) -> String {
    let (head, _) = id.rsplit_once('-').unwrap();
    let other = format!("{head}-zzzzzz");
    assert_ne!(other, id);
    other
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn refused(cmd: &mut assert_cmd::Command, code: i32) -> String {
    let out = cmd.assert().code(code);
    one_error_line(&out.get_output().stderr)
}

#[test]
fn key_generate_signing_writes_a_private_key_and_never_overwrites_it() {
    let dir = tempfile::tempdir().unwrap();
    let (path, public) = signing_key(dir.path());
    assert_eq!(mode(&path), 0o600);
    let signer = Signer::from_file(&path).unwrap();
    assert_eq!(signer.public_key().to_string(), public);
    let line = refused(
        ecobackup(dir.path()).args(["key", "generate", "--signing", "--out", "signing.key"]),
        2,
    );
    assert!(line.contains("already exists"), "{line}");
    assert_eq!(
        Signer::from_file(&path).unwrap().public_key().to_string(),
        public
    );
    ecobackup(dir.path())
        .args([
            "key",
            "generate",
            "--signing",
            "--force",
            "--out",
            "signing.key",
        ])
        .assert()
        .success();
    assert_ne!(
        Signer::from_file(&path).unwrap().public_key().to_string(),
        public
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["signing.key"], "no temporary file left behind");
}

#[test]
fn restore_verify_and_drill_refuse_untrusted_manifests() {
    let world = World::new();
    world.init();
    let id = world.backup();
    assert!(signature_path(&world, &id).is_file());
    world.run(&["verify", &id]).assert().success();

    // Planted: a manifest without a signature, in a folder of its own.
    let planted = other_id(&id);
    let text = std::fs::read_to_string(manifest_path(&world, &id)).unwrap();
    std::fs::create_dir_all(manifest_path(&world, &planted).parent().unwrap()).unwrap();
    std::fs::write(manifest_path(&world, &planted), text.replace(&id, &planted)).unwrap();
    let line = refused(&mut world.run(&["verify", &planted]), 1);
    assert!(
        line.contains(&planted) && line.contains("no signature"),
        "{line}"
    );
    // `latest` restores the genuine backup, never the planted one, and says so on stderr.
    let target = world.database("around_the_plant");
    let out = world
        .run(&[
            "--json", "restore", "logical", "latest", "--db", &target, "--create",
        ])
        .assert()
        .success();
    let restored: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(restored["restore"]["backup_id"], id.as_str());
    let warned = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        warned.contains(&planted) && warned.contains("signature"),
        "{warned}"
    );
    // Asked for by id, it is refused.
    let never = world.database("never_restored");
    let line = refused(
        &mut world.run(&["restore", "logical", &planted, "--db", &never, "--create"]),
        1,
    );
    assert!(line.contains("no signature"), "{line}");
    assert!(!world.database_exists("never_restored"));
    std::fs::remove_dir_all(manifest_path(&world, &planted).parent().unwrap()).unwrap();

    // Replayed: the signed manifest and its signature copied into another folder.
    std::fs::create_dir_all(manifest_path(&world, &planted).parent().unwrap()).unwrap();
    std::fs::copy(manifest_path(&world, &id), manifest_path(&world, &planted)).unwrap();
    std::fs::copy(
        signature_path(&world, &id),
        signature_path(&world, &planted),
    )
    .unwrap();
    let line = refused(&mut world.run(&["verify", &planted]), 1);
    assert!(line.contains("copied to another place"), "{line}");
    std::fs::remove_dir_all(manifest_path(&world, &planted).parent().unwrap()).unwrap();

    // Altered after signing.
    let signed = std::fs::read(manifest_path(&world, &id)).unwrap();
    let altered = text.replace("\"reason\": \"test\"", "\"reason\": \"forged\"");
    assert_ne!(altered, text);
    std::fs::write(manifest_path(&world, &id), &altered).unwrap();
    let line = refused(&mut world.run(&["drill", &id]), 1);
    assert!(line.contains("does not match its content"), "{line}");

    // Re-signed with the attacker's own key.
    let attacker = Signer::generate();
    let key = format!("backups/{id}/manifest.json");
    std::fs::write(
        signature_path(&world, &id),
        attacker.sign(&key, altered.as_bytes()),
    )
    .unwrap();
    let line = refused(
        &mut world.run(&["restore", "logical", &id, "--db", &never, "--create"]),
        1,
    );
    assert!(
        line.contains("not a trusted signer") && line.contains(&attacker.public_key().to_string()),
        "{line}"
    );
    assert!(!world.database_exists("never_restored"));

    // Put back (and signed again by the backup host's key), it verifies again; without any
    // trusted signer configured, nothing is trusted.
    std::fs::write(manifest_path(&world, &id), &signed).unwrap();
    let (signing, public) = signing_key(world.dir.path());
    let host = Signer::from_file(&signing).unwrap();
    std::fs::write(signature_path(&world, &id), host.sign(&key, &signed)).unwrap();
    world
        .run(&["verify", &id, "--trusted-signer", &public])
        .assert()
        .success();
    let line = refused(
        world
            .run(&["verify", &id])
            .env_remove("ECOBACKUP_TRUSTED_SIGNERS"),
        2,
    );
    assert!(line.contains("no trusted signer configured"), "{line}");
    let line = refused(
        &mut world.run(&["verify", &id, "--trusted-signer", "ecosign1nope"]),
        2,
    );
    assert!(line.contains("invalid trusted signer"), "{line}");
}

#[test]
fn unsigned_backups_need_an_explicit_flag_on_both_sides() {
    let world = World::new();
    // A repository made before signing was set up: unsigned marker and manifest.
    world
        .run(&["init"])
        .env_remove("ECOBACKUP_SIGNING_KEY_FILE")
        .assert()
        .success();
    let line = refused(
        world
            .run(&["backup", "logical", "--db", &world.shop])
            .env_remove("ECOBACKUP_SIGNING_KEY_FILE"),
        2,
    );
    assert!(
        line.contains("no signing key configured") && line.contains("--no-signing"),
        "{line}"
    );
    assert_eq!(world.listed_backups(), 0);
    let out = world
        .run(&[
            "--json",
            "backup",
            "logical",
            "--db",
            &world.shop,
            "--no-signing",
        ])
        .env_remove("ECOBACKUP_SIGNING_KEY_FILE")
        .assert()
        .success();
    let result: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let id = result["manifest"]["id"].as_str().unwrap().to_owned();
    assert!(!signature_path(&world, &id).exists());

    let line = refused(&mut world.run(&["verify", &id]), 1);
    assert!(
        line.contains("ecobackup.json") && line.contains("--allow-unsigned"),
        "{line}"
    );
    world
        .run(&["verify", &id, "--allow-unsigned"])
        .assert()
        .success();

    // The first signed backup signs the marker: the repository is then trusted as such, and
    // only its unsigned manifests need the flag.
    let signed = world.backup();
    world.run(&["verify", &signed]).assert().success();
    let line = refused(&mut world.run(&["verify", &id]), 1);
    assert!(
        line.contains(&id) && line.contains("no signature"),
        "{line}"
    );
    world
        .run(&["verify", &id, "--allow-unsigned"])
        .assert()
        .success();
}
