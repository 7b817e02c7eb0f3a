//! `wal-push` (archive_command), `wal-fetch` (restore_command) and the background
//! `wal-prefetch` that wal-fetch starts.
//!
//! Both run once per WAL file, so they read the configuration and open the store, and nothing
//! else: no marker, no listing, no database.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use ecobackup_core::crypto::Keyring;
use ecobackup_core::wal::fetch::following_segments;
use ecobackup_core::wal::{
    fetch, prefetch, push, FetchOptions, Fetched, PushOptions, PushOutcome, Spool, WalFile,
};

use super::filter::load_keyring;
use super::logical::sealing;
use super::repo::{load_signer, storage, storage_for_writing, trusted_signers};
use crate::cli::{IdentityArgs, WalFetchArgs, WalPrefetchArgs, WalPushArgs};
use crate::{CliError, Context};

/// Segments downloaded ahead when nothing is configured.
const DEFAULT_PREFETCH: usize = 8;

/// `wal-push PATH`.
pub async fn wal_push(ctx: &Context, args: WalPushArgs) -> Result<(), CliError> {
    let sealing = sealing(
        ctx,
        &args.recipients.recipients,
        args.no_encryption,
        args.level,
    )?;
    if sealing.recipients.is_empty() && !args.no_encryption {
        return Err(ecobackup_core::Error::NoRecipients.into());
    }
    let signer = load_signer(ctx, args.signing.signing_key.as_deref())?;
    if signer.is_none() && !args.signing.no_signing && !ctx.config.encryption.allow_unsigned {
        return Err(CliError::usage(
            "no signing key configured: give --signing-key FILE, ECOBACKUP_SIGNING_KEY_FILE or [encryption] signing_key_file, or --no-signing to archive unsigned WAL on purpose (restore sides that pin trusted signers refuse it)",
        ));
    }
    let storage = storage_for_writing(ctx)?;
    let outcome = push(&storage, &args.path, &PushOptions::new(sealing, signer)).await?;
    if ctx.json {
        println!("{}", serde_json::to_string(&outcome).unwrap_or_default());
    } else if !ctx.quiet {
        match &outcome {
            PushOutcome::Uploaded {
                key, stored_size, ..
            } => tracing::info!(%key, stored_size, "archived"),
            PushOutcome::AlreadyArchived { key, .. } => {
                eprintln!("{key} is already archived with the same content: nothing uploaded")
            }
        }
    }
    Ok(())
}

/// The keyring when identities are configured; `None` otherwise (an unencrypted archive needs
/// none, and an encrypted file then fails with the usual "no identity configured").
async fn optional_keyring(
    ctx: &Context,
    args: &IdentityArgs,
) -> Result<Option<Arc<Keyring>>, CliError> {
    if args.identities.is_empty() && ctx.config.encryption.identity_files.is_empty() {
        return Ok(None);
    }
    Ok(Some(Arc::new(load_keyring(ctx, args).await?)))
}

/// `wal-fetch NAME DEST`. Exit codes are set by the caller: 1 only for "not archived".
pub async fn wal_fetch(ctx: &Context, args: WalFetchArgs) -> Result<(), CliError> {
    let trust = trusted_signers(ctx, &args.trust)?;
    let keyring = optional_keyring(ctx, &args.identities).await?;
    let storage = storage(ctx)?;
    let count = args
        .prefetch
        .or(ctx.config.wal.prefetch)
        .unwrap_or(DEFAULT_PREFETCH);
    let file = WalFile::parse(&args.name);
    let spool_root = args
        .spool_dir
        .clone()
        .or_else(|| ctx.config.wal.spool_dir.clone())
        .or_else(default_spool_root);
    let spool = match (&spool_root, count, &file) {
        (Some(root), 1.., Some(f)) if f.is_segment() => match Spool::open(root, storage.url()) {
            Ok(spool) => Some(spool),
            Err(e) => {
                eprintln!("warning: no prefetch: {e}");
                None
            }
        },
        _ => None,
    };
    let options = FetchOptions::new(keyring, trust, spool.clone());
    match fetch(&storage, &args.name, &args.dest, &options).await? {
        Fetched::NotArchived => Err(CliError::not_archived(format!(
            "{} is not in the archive {}",
            args.name,
            storage.url()
        ))),
        Fetched::Restored { bytes, from_spool } => {
            tracing::info!(file = %args.name, bytes, from_spool, "restored");
            if let (Some(spool), Some(file), Some(root)) = (spool, file, spool_root) {
                let next = following_segments(&file, bytes, count);
                if next.iter().any(|f| !spool.has(f)) {
                    if let Err(e) = start_prefetch(ctx, &args, &file, bytes, count, &root) {
                        eprintln!("warning: prefetch not started: {e}");
                    }
                }
            }
            Ok(())
        }
    }
}

/// `ecobackup-spool/<name>` beside the current directory when it is a data directory
/// (PostgreSQL runs restore_command there); `None` elsewhere (a fetch by hand prefetches only
/// into a spool given explicitly).
fn default_spool_root() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    if !cwd.join("PG_VERSION").is_file() {
        return None;
    }
    let name = cwd.file_name()?.to_owned();
    Some(cwd.parent()?.join("ecobackup-spool").join(name))
}

/// Starts `ecobackup wal-prefetch` detached: its own process group, no terminal, no pipes of
/// ours (PostgreSQL and a caller reading our output must not wait for it). It ends by itself
/// once its downloads are done; the next wal-fetch finds them in the spool.
fn start_prefetch(
    ctx: &Context,
    args: &WalFetchArgs,
    after: &WalFile,
    segment_size: u64,
    count: usize,
    root: &Path,
) -> std::io::Result<()> {
    let mut command = std::process::Command::new(std::env::current_exe()?);
    if let Some(config) = &ctx.config_path {
        command.arg("--config").arg(config);
    }
    if let Some(repo) = &ctx.repo {
        command.arg("--repo").arg(repo);
    }
    command
        .arg("wal-prefetch")
        .arg(after.name())
        .arg("--segment-size")
        .arg(segment_size.to_string())
        .arg("--count")
        .arg(count.to_string())
        .arg("--spool-dir")
        .arg(root);
    for identity in &args.identities.identities {
        command.arg("--identity").arg(identity);
    }
    if let Some(file) = &args.identities.passphrase_file {
        command.arg("--passphrase-file").arg(file);
    }
    for signer in &args.trust.trusted_signers {
        command.arg("--trusted-signer").arg(signer);
    }
    if args.trust.allow_unsigned {
        command.arg("--allow-unsigned");
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map(drop)
}

/// `wal-prefetch AFTER`: downloads the segments after AFTER into the spool. Failures are only
/// reported (with --json): the fetch that needs a segment downloads it itself.
pub async fn wal_prefetch(ctx: &Context, args: WalPrefetchArgs) -> Result<(), CliError> {
    let file = WalFile::parse(&args.after)
        .filter(WalFile::is_segment)
        .ok_or_else(|| CliError::usage(format!("{} is not a segment name", args.after)))?;
    let trust = trusted_signers(ctx, &args.trust)?;
    let keyring = optional_keyring(ctx, &args.identities).await?;
    let storage = storage(ctx)?;
    let spool = Spool::open(&args.spool_dir, storage.url())?;
    let files = following_segments(&file, args.segment_size, args.count);
    let options = FetchOptions::new(keyring, trust, None);
    let report = prefetch(&storage, &spool, &files, &options).await;
    if ctx.json {
        let json = serde_json::json!({
            "fetched": report.fetched,
            "skipped": report.skipped,
            "not_archived": report.not_archived,
            "failed": report.failed,
        });
        println!("{json}");
    }
    Ok(())
}
