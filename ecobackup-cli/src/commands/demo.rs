//! `ecobackup demo`: everything ecobackup does for a logical backup, on a fresh machine, with
//! nothing configured. A throwaway cluster with a demo shop → a key → an encrypted backup in a
//! local repository → a restore into a new database → every table compared → a report.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use ecobackup_core::artifact::Sealing;
use ecobackup_core::backup::{backup_logical, DumpTarget, LogicalBackup};
use ecobackup_core::crypto::{
    generate_identity, write_identity_file, Keyring, Signer, TrustedSigners,
};
use ecobackup_core::postgres::cluster::{Cluster, ClusterOptions};
use ecobackup_core::postgres::DbUrl;
use ecobackup_core::repository::{InitOutcome, Repository};
use ecobackup_core::restore::{restore_logical, LogicalRestore};
use ecobackup_core::storage::{RepoUrl, Storage, StorageOptions};
use ecobackup_testkit::fixture::{load_shop, table_fingerprints};
use serde_json::json;

use super::progress::Bars;
use super::repo::human_bytes;
use crate::cli::DemoArgs;
use crate::{CliError, Context};

/// One timed step of the demo, for the report.
struct Steps {
    quiet: bool,
    times: Vec<(&'static str, f64)>,
}

impl Steps {
    fn say(&self, text: &str) {
        if !self.quiet {
            eprintln!("· {text}");
        }
    }

    fn record(&mut self, step: &'static str, started: Instant) {
        self.times.push((step, started.elapsed().as_secs_f64()));
    }
}

/// The demo key: reused when a previous demo left one, so its backups stay readable.
fn demo_key(
    path: &Path,
) -> Result<(Keyring, ecobackup_core::crypto::age::x25519::Recipient), CliError> {
    if path.exists() {
        let keyring = Keyring::from_files(&[path], None)?;
        let recipient = keyring.recipients().into_iter().next().ok_or_else(|| {
            CliError::usage(format!(
                "{} holds no identity: move it away and rerun the demo",
                path.display()
            ))
        })?;
        return Ok((keyring, recipient));
    }
    let (identity, recipient) = generate_identity();
    write_identity_file(path, &identity, None)?;
    Ok((Keyring::from_identities(vec![identity]), recipient))
}

/// The demo's signing key, beside its age key: reused like it, so earlier demo backups stay
/// trusted.
fn demo_signer(path: &Path) -> Result<Signer, CliError> {
    if path.exists() {
        return Ok(Signer::from_file(path)?);
    }
    let signer = Signer::generate();
    signer.write_file(path, false)?;
    Ok(signer)
}

/// `demo`.
pub async fn demo(ctx: &Context, args: DemoArgs) -> Result<(), CliError> {
    let dir = absolute(&args.dir)?;
    ecobackup_core::storage::create_private_dir_all(&dir)?;
    let mut steps = Steps {
        quiet: ctx.quiet || ctx.json,
        times: Vec::new(),
    };
    let total = Instant::now();

    let started = Instant::now();
    steps.say("starting a throwaway PostgreSQL cluster");
    // On a unix socket in a 0700 directory, no TCP (the default): it trusts every connection.
    let cluster = Cluster::start(ClusterOptions {
        fsync: false,
        bin_dir: args.pg_bin.clone(),
        ..ClusterOptions::default()
    })
    .await?;
    steps.record("start cluster", started);

    let started = Instant::now();
    steps.say(&format!(
        "loading the demo shop (scale {}) into database shop",
        args.scale
    ));
    cluster.create_database("shop").await?;
    let source = DbUrl::parse(&cluster.url("shop"))?;
    let summary = load_shop(&source.connect().await?, args.scale).await?;
    steps.record("load demo data", started);

    let key_path = dir.join("demo.key");
    let (keyring, recipient) = demo_key(&key_path)?;
    let signer = Arc::new(demo_signer(&dir.join("demo-signing.key"))?);
    let trust = TrustedSigners::new(vec![signer.public_key()]);
    let repo_path = dir.join("repo");
    let storage = Storage::open(
        &RepoUrl::File(repo_path.clone()),
        &StorageOptions::default(),
    )?;
    let repo = match Repository::init_signed(
        storage,
        vec![ecobackup_core::crypto::fingerprint(&recipient)],
        Some(signer.clone()),
    )
    .await?
    {
        InitOutcome::Created(repo) | InitOutcome::AlreadyInitialized(repo) => repo,
    };
    // The restore below reads the backup as a restore side would: signature checked.
    let repo = repo.with_trusted_signers(trust).await?;

    let started = Instant::now();
    steps.say(&format!(
        "backing up shop (+ globals) to {}, encrypted to {recipient}",
        repo_path.display()
    ));
    let bars = Bars::new(ctx);
    let mut plan = LogicalBackup::new(
        vec![DumpTarget::new(source.clone())],
        Sealing {
            level: ecobackup_core::transform::DEFAULT_LEVEL,
            recipients: vec![recipient.clone()],
        },
    );
    plan.globals = true;
    plan.tags = [("reason".to_owned(), "demo".to_owned())].into();
    plan.pg_bin = Some(cluster.bin_dir().to_owned());
    plan.cancel = ctx.cancel.clone();
    let manifest = backup_logical(&repo.clone().into(), &plan, &bars).await?;
    steps.record("backup", started);

    let started = Instant::now();
    steps.say(&format!(
        "restoring {} into a new database shop_restored",
        manifest.id
    ));
    let target = source.with_database("shop_restored");
    let mut restore = LogicalRestore::new(manifest.id.clone(), target.clone());
    restore.database = Some("shop".to_owned());
    restore.create = true;
    restore.clean = false;
    restore.jobs = 1;
    restore.terminate_connections = false;
    restore.no_privileges = false;
    restore.keyring = Some(Arc::new(keyring));
    restore.pg_bin = Some(cluster.bin_dir().to_owned());
    restore.temp_dir = None;
    restore.cancel = ctx.cancel.clone();
    restore_logical(&repo, &restore, &bars).await?;
    steps.record("restore", started);

    let started = Instant::now();
    steps.say("comparing row counts and checksums of every table");
    let before = table_fingerprints(&source.connect().await?).await?;
    let after = table_fingerprints(&target.connect().await?).await?;
    steps.record("compare", started);
    let tables: Vec<_> = before
        .iter()
        .map(|(table, fp)| {
            let restored = after.get(table);
            json!({
                "table": table,
                "rows": fp.rows,
                "md5": fp.md5,
                "restored_rows": restored.map(|r| r.rows),
                "match": restored == Some(fp),
            })
        })
        .collect();
    let passed = before == after && !before.is_empty();
    if let Err(e) = cluster.shutdown().await {
        tracing::warn!(error = %e, "could not remove the demo's throwaway cluster");
    }

    let stored: u64 = manifest.artifacts.iter().map(|a| a.stored_size).sum();
    let raw: u64 = manifest.artifacts.iter().map(|a| a.raw_size).sum();
    let dump = manifest
        .artifacts
        .iter()
        .find(|a| a.name.starts_with("shop.dump"));
    if ctx.json {
        let out = json!({
            "passed": passed,
            "backup_id": manifest.id,
            "repository": repo_path,
            "key": key_path,
            "recipient": recipient.to_string(),
            "signer": signer.public_key().to_string(),
            "rows_loaded": summary.total_rows(),
            "raw_bytes": raw,
            "stored_bytes": stored,
            "seconds": steps.times.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "total_seconds": total.elapsed().as_secs_f64(),
            "tables": tables,
        });
        println!("{out}");
    } else if !ctx.quiet {
        println!();
        println!(
            "{} demo {}",
            if passed { "✔" } else { "✘" },
            if passed {
                "passed: the restored database is identical to the source"
            } else {
                "FAILED: the restored database differs from the source"
            }
        );
        println!();
        println!("tables compared (rows, md5 of every row):");
        for (table, fp) in &before {
            let mark = if after.get(table) == Some(fp) {
                "ok"
            } else {
                "DIFFERS"
            };
            println!("  {table:<28} {:>9} rows  {mark}", fp.rows);
        }
        println!();
        println!(
            "backup {}: {} stored, {} before zstd and age",
            manifest.id,
            human_bytes(stored),
            human_bytes(raw)
        );
        for a in &manifest.artifacts {
            println!(
                "  {:<28} {:>10}  sha256 {}…",
                a.name,
                human_bytes(a.stored_size),
                &a.stored_sha256[..16]
            );
        }
        println!();
        println!("time:");
        for (step, seconds) in &steps.times {
            println!("  {step:<16} {seconds:>6.1} s");
        }
        println!("  {:<16} {:>6.1} s", "total", total.elapsed().as_secs_f64());
        println!();
        println!("where everything is:");
        println!(
            "  repository   {}   (ecobackup list --repo {})",
            repo_path.display(),
            repo_path.display()
        );
        println!(
            "  key          {}   (the identity: keep it apart from the backups)",
            key_path.display()
        );
        println!("  recipient    {recipient}");
        println!(
            "  signing key  {}   (signs every manifest; its public key {} is what restore trusts)",
            dir.join("demo-signing.key").display(),
            signer.public_key()
        );
        println!("  the cluster was temporary and is gone; the repository and the key stay.");
        if let Some(dump) = dump {
            println!();
            println!("restore by hand, without ecobackup (stock age, zstd and pg_restore):");
            println!(
                "  age -d -i {} {}/backups/{}/{} | zstd -d | pg_restore --no-owner -d <target database>",
                key_path.display(),
                repo_path.display(),
                manifest.id,
                dump.name
            );
        }
    }
    if passed {
        Ok(())
    } else {
        Err(CliError::from(ecobackup_core::Error::ArtifactMismatch {
            artifact: format!("backup {}", manifest.id),
            detail: "the restored database differs from the source (see the table list)".to_owned(),
        }))
    }
}

fn absolute(path: &Path) -> Result<PathBuf, CliError> {
    if path.is_absolute() {
        return Ok(path.to_owned());
    }
    let cwd = std::env::current_dir()
        .map_err(|e| ecobackup_core::Error::io("reading the working directory", e))?;
    Ok(cwd.join(path))
}
