//! Our artifacts are plain age + zstd: the stock `age` and `zstd` CLIs read them, and we read
//! what `age -r` writes. These tests need both CLIs installed (`.ci/run` installs them).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use ecobackup_core::crypto::{generate_identity, write_identity_file, Keyring};
use ecobackup_core::io::{FileSink, FileSource};
use ecobackup_core::pipeline::Pipeline;
use ecobackup_core::transform::{Compress, Decompress, Decrypt, Encrypt};
use ecobackup_testkit::RowGenerator;

fn tool(name: &str) -> Command {
    let found = Command::new(name).arg("--version").output();
    assert!(
        found.is_ok(),
        "the stock `{name}` CLI is required for interop tests: apt-get install {name} (bash .ci/run does it)"
    );
    Command::new(name)
}

fn run_with_stdin(mut cmd: Command, input: &[u8]) -> Vec<u8> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_age_and_zstd_restore_our_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("restore.key");
    let (identity, recipient) = generate_identity();
    write_identity_file(&key, &identity, None).unwrap();
    let (_, second_recipient) = generate_identity();

    let data = RowGenerator::new(21).bytes(7 << 20);
    let input = dir.path().join("shop.dump");
    std::fs::write(&input, &data).unwrap();
    let artifact = dir.path().join("shop.dump.zst.age");
    Pipeline::new(FileSource::new(&input))
        .then(Compress::new(3))
        .then(Encrypt::to(vec![second_recipient, recipient]).unwrap())
        .into(FileSink::new(&artifact))
        .run()
        .await
        .unwrap();

    let out = tool("age")
        .args(["-d", "-i"])
        .arg(&key)
        .arg(&artifact)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "age -d: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain = run_with_stdin(
        {
            let mut c = tool("zstd");
            c.args(["-d", "-c"]);
            c
        },
        &out.stdout,
    );
    assert!(plain == data, "age -d | zstd -d gives back the input");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn we_read_what_stock_age_and_zstd_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("restore.key");
    let (identity, recipient) = generate_identity();
    write_identity_file(&key, &identity, None).unwrap();
    let data = RowGenerator::new(22).bytes(3 << 20);
    let keyring = std::sync::Arc::new(Keyring::from_files(&[&key], None).unwrap());

    // age alone (an artifact stored with --no-compress), and zstd then age.
    let mut age = tool("age");
    age.args(["-r", &recipient.to_string()]);
    let plain_age = run_with_stdin(age, &data);
    let mut zstd = tool("zstd");
    zstd.args(["-c", "-19", "--no-check"]);
    let compressed = run_with_stdin(zstd, &data);
    let mut age = tool("age");
    age.args(["-r", &recipient.to_string()]);
    let zstd_age = run_with_stdin(age, &compressed);

    for (name, artifact) in [("age", plain_age), ("zstd+age", zstd_age)] {
        let path = dir.path().join(name);
        std::fs::write(&path, artifact).unwrap();
        let out = dir.path().join(format!("{name}.out"));
        Pipeline::new(FileSource::new(&path))
            .then(Decrypt::with(keyring.clone()))
            .then(Decompress::auto())
            .into(FileSink::new(&out))
            .run()
            .await
            .unwrap();
        assert!(std::fs::read(&out).unwrap() == data, "{name}");
    }
}
