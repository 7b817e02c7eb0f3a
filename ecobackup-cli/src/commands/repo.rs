//! `ecobackup init`, `list`, `show`: the repository as an operator sees it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ecobackup_core::crypto::{
    fingerprint, parse_recipients, parse_signers, Signer, TrustedSigners,
};
use ecobackup_core::repository::{BadBackup, InitOutcome, Manifest, Repository};
use ecobackup_core::storage::{ObjectLock, RepoUrl, Storage, DEFAULT_REPOSITORY};

use crate::cli::{ListArgs, ShowArgs, SigningArgs, TrustArgs};
use crate::{CliError, Context};
use ecobackup_core::config::RepositoryConfig;

/// The repository URL: `--repo` / `ECOBACKUP_REPO`, then the file, then `./ecobackup-repo`.
pub fn repo_url(ctx: &Context) -> Result<RepoUrl, CliError> {
    if let Some(mirror) = named_mirror(ctx)? {
        return Ok(RepoUrl::parse(
            mirror.url.as_deref().expect("checked at load"),
        )?);
    }
    let url = ctx
        .repo
        .clone()
        .or_else(|| ctx.config.repository.url.clone())
        .unwrap_or_else(|| DEFAULT_REPOSITORY.to_owned());
    Ok(RepoUrl::parse(&url)?)
}

/// The `[[repository.mirror]]` that `--repo mirror:NAME` names, if it names one: restore,
/// list or verify the second provider's copy, with that mirror's own settings, when the first
/// is down.
fn named_mirror(ctx: &Context) -> Result<Option<&RepositoryConfig>, CliError> {
    let Some(name) = ctx.repo.as_deref().and_then(|r| r.strip_prefix("mirror:")) else {
        return Ok(None);
    };
    let mirrors = &ctx.config.repository.mirror;
    match mirrors.iter().find(|m| m.name.as_deref() == Some(name)) {
        Some(mirror) => Ok(Some(mirror)),
        None => Err(CliError::usage(format!(
            "--repo mirror:{name}: no [[repository.mirror]] has name = {name:?} (named: {})",
            mirrors
                .iter()
                .filter_map(|m| m.name.as_deref())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Storage settings: `ECOBACKUP_S3_*` variables, then `[repository]`; credentials from the
/// `*_file` keys, else the standard `AWS_*` variables or instance metadata.
pub fn storage(ctx: &Context) -> Result<Storage, CliError> {
    storage_with(ctx, None, None)
}

/// [`storage`] for commands that write backups or WAL: with `[retention] lock`, every object
/// they write is locked until now + `lock_for` (S3 Object Lock).
pub fn storage_for_writing(ctx: &Context) -> Result<Storage, CliError> {
    storage_for_writing_at(ctx, None)
}

/// [`storage_for_writing`] of the repository at `url` (a `[[files]] repository`) instead of
/// the configured one, with the `[repository]` section's other settings.
pub fn storage_for_writing_at(ctx: &Context, url: Option<&str>) -> Result<Storage, CliError> {
    storage_with(ctx, url, object_lock(ctx)?)
}

/// The Object Lock every object written now gets, from `[retention] lock`.
pub fn object_lock(ctx: &Context) -> Result<Option<ObjectLock>, CliError> {
    Ok(ctx.config.object_lock()?)
}

/// The storage of the configured repository (or the mirror `--repo mirror:NAME` names), or
/// of the repository at `url` (a `[[files]] repository`) with the `[repository]` section's
/// other settings.
fn storage_with(
    ctx: &Context,
    url: Option<&str>,
    object_lock: Option<ObjectLock>,
) -> Result<Storage, CliError> {
    if let Some(url) = url {
        return storage_from(&ctx.config.repository, &RepoUrl::parse(url)?, object_lock);
    }
    let url = repo_url(ctx)?;
    match named_mirror(ctx)? {
        Some(mirror) => storage_from(mirror, &url, object_lock),
        None => storage_from(&ctx.config.repository, &url, object_lock),
    }
}

/// The storage of the repository at `url` with the S3 settings of `repo` (`[repository]`,
/// with the `ECOBACKUP_S3_*` variables laid over it at load, or a mirror's section).
pub fn storage_from(
    repo: &RepositoryConfig,
    url: &RepoUrl,
    object_lock: Option<ObjectLock>,
) -> Result<Storage, CliError> {
    Ok(repo.open_storage(url, object_lock)?)
}

/// Opens the configured repository, checking no signature (`list`, `show`: they only display;
/// restore, verify and drill use [`open_trusted`]).
pub async fn open(ctx: &Context) -> Result<Repository, CliError> {
    Ok(Repository::open(storage(ctx)?).await?)
}

/// The signing key: `--signing-key` / `ECOBACKUP_SIGNING_KEY_FILE`, else `[encryption]
/// signing_key_file`.
pub fn load_signer(ctx: &Context, flag: Option<&Path>) -> Result<Option<Arc<Signer>>, CliError> {
    let path: Option<PathBuf> = flag
        .map(Path::to_owned)
        .or_else(|| ctx.config.encryption.signing_key_file.clone());
    Ok(path
        .map(|p| Signer::from_file(&p))
        .transpose()?
        .map(Arc::new))
}

/// Opens the repository for a backup: every manifest written is signed. Without a signing
/// key the backup is refused, unless `--no-signing` or `[encryption] allow_unsigned` says
/// unsigned backups are wanted.
pub async fn open_for_backup(ctx: &Context, args: &SigningArgs) -> Result<Repository, CliError> {
    open_for_backup_at(ctx, args, None).await
}

/// [`open_for_backup`] of the repository at `url` instead of the configured one.
pub async fn open_for_backup_at(
    ctx: &Context,
    args: &SigningArgs,
    url: Option<&str>,
) -> Result<Repository, CliError> {
    let signer = load_signer(ctx, args.signing_key.as_deref())?;
    let repo = Repository::open(storage_for_writing_at(ctx, url)?).await?;
    match signer {
        Some(signer) => Ok(repo.with_signer(signer)),
        None if args.no_signing || ctx.config.encryption.allow_unsigned => {
            tracing::warn!("writing an unsigned backup: restore sides that pin trusted signers will refuse it");
            Ok(repo)
        }
        None => Err(CliError::usage(
            "no signing key configured: give --signing-key FILE, ECOBACKUP_SIGNING_KEY_FILE or [encryption] signing_key_file (make one with `ecobackup key generate --signing --out FILE`), or --no-signing to write an unsigned backup on purpose",
        )),
    }
}

/// Opens the repository for restore, verify and drill: the marker and every manifest must be
/// signed by a trusted signer (`--trusted-signer` / `ECOBACKUP_TRUSTED_SIGNERS`, else
/// `[encryption] trusted_signers`), unless `--allow-unsigned` / `allow_unsigned` accepts a
/// repository written without signing.
pub async fn open_trusted(ctx: &Context, args: &TrustArgs) -> Result<Repository, CliError> {
    open_trusted_at(ctx, args, None).await
}

/// [`open_trusted`] of the repository at `url` instead of the configured one.
pub async fn open_trusted_at(
    ctx: &Context,
    args: &TrustArgs,
    url: Option<&str>,
) -> Result<Repository, CliError> {
    let trust = trusted_signers(ctx, args)?;
    Ok(Repository::open(storage_with(ctx, url, None)?)
        .await?
        .with_trusted_signers(trust)
        .await?)
}

/// Runs `work` under the repository's shared lock ([`ecobackup_core::repository::under_shared_lock`]).
pub async fn under_shared_lock<T>(
    repo: &Repository,
    owner: &str,
    work: impl std::future::Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    ecobackup_core::repository::under_shared_lock(repo.storage(), owner, work).await
}

/// Which signers are trusted: `--trusted-signer` / `ECOBACKUP_TRUSTED_SIGNERS`, else
/// `[encryption] trusted_signers`; none is refused unless `--allow-unsigned` / `allow_unsigned`.
pub fn trusted_signers(ctx: &Context, args: &TrustArgs) -> Result<TrustedSigners, CliError> {
    let configured = if args.trusted_signers.is_empty() {
        &ctx.config.encryption.trusted_signers
    } else {
        &args.trusted_signers
    };
    let keys = parse_signers(configured).map_err(|e| CliError::usage(e.to_string()))?;
    let allow_unsigned = args.allow_unsigned || ctx.config.encryption.allow_unsigned;
    if keys.is_empty() && !allow_unsigned {
        return Err(CliError::usage(
            "no trusted signer configured: give --trusted-signer ecosign1…, ECOBACKUP_TRUSTED_SIGNERS or [encryption] trusted_signers (the public keys of your backup hosts' signing keys), or --allow-unsigned for a repository written without signing",
        ));
    }
    Ok(TrustedSigners::new(keys).allowing_unsigned(allow_unsigned))
}

/// `init`: creates `ecobackup.json`, recording the configured recipients' fingerprints; signs
/// it when a signing key is configured (`ECOBACKUP_SIGNING_KEY_FILE` or the file).
pub async fn init(ctx: &Context) -> Result<(), CliError> {
    let signing_key = std::env::var_os("ECOBACKUP_SIGNING_KEY_FILE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let signer = load_signer(ctx, signing_key.as_deref())?;
    let recipients = match std::env::var("ECOBACKUP_RECIPIENTS") {
        Ok(list) => vec![list],
        Err(_) => ctx.config.encryption.recipients.clone(),
    };
    let fingerprints: Vec<String> = parse_recipients(&recipients)?
        .iter()
        .map(fingerprint)
        .collect();
    let mut stores = vec![storage(ctx)?];
    for mirror in &ctx.config.repository.mirror {
        let url = RepoUrl::parse(mirror.url.as_deref().expect("checked at load"))?;
        stores.push(storage_from(mirror, &url, None)?);
    }
    for store in stores {
        init_one(ctx, store, fingerprints.clone(), signer.clone()).await?;
    }
    Ok(())
}

/// `init` of one repository (the configured one, or a mirror).
async fn init_one(
    ctx: &Context,
    storage: Storage,
    fingerprints: Vec<String>,
    signer: Option<Arc<Signer>>,
) -> Result<(), CliError> {
    let (created, repo) = match Repository::init_signed(storage, fingerprints, signer).await? {
        InitOutcome::Created(repo) => (true, repo),
        InitOutcome::AlreadyInitialized(repo) => (false, repo),
    };
    if ctx.json {
        let report = serde_json::json!({
            "repository": repo.storage().url(),
            "created": created,
            "marker": repo.marker(),
            "signed_by": repo.signer().map(|s| s.public_key().to_string()),
        });
        println!("{report}");
    } else if !ctx.quiet {
        let what = if created {
            "initialised"
        } else {
            "already initialised, left unchanged:"
        };
        println!("{what} repository {}", repo.storage().url());
        match repo.signer() {
            Some(signer) => eprintln!("the marker is signed by {}", signer.public_key()),
            None => eprintln!(
                "note: the marker is unsigned (no signing key configured); it is signed by the first backup made with a signing key"
            ),
        }
    }
    Ok(())
}

/// `list`: one line per backup, oldest first, then the folders whose manifest cannot be used.
/// In `--json`, an array of manifests followed by `{"id", "key", "bad": true, "reason"}` objects.
pub async fn list(ctx: &Context, args: ListArgs) -> Result<(), CliError> {
    let repo = open(ctx).await?;
    let listing = repo.manifests().await?;
    let manifests: Vec<Manifest> = listing
        .backups
        .into_iter()
        .filter(|m| args.kind.is_none_or(|k| m.kind == k))
        .collect();
    // A bad folder's kind is what its id says; a stray folder is shown whatever the filter.
    let bad: Vec<BadBackup> = listing
        .bad
        .into_iter()
        .filter(|b| args.kind.is_none_or(|k| b.kind().is_none_or(|bk| bk == k)))
        .collect();
    for b in &bad {
        tracing::warn!(backup = %b.id, reason = %b.reason, "a backup's manifest cannot be used");
    }
    if ctx.json {
        let mut entries: Vec<serde_json::Value> = manifests
            .iter()
            .filter_map(|m| serde_json::to_value(m).ok())
            .collect();
        entries.extend(bad.iter().map(
            |b| serde_json::json!({"id": b.id, "key": b.key, "bad": true, "reason": b.reason}),
        ));
        println!("{}", serde_json::Value::Array(entries));
        return Ok(());
    }
    if manifests.is_empty() && bad.is_empty() {
        if !ctx.quiet {
            println!("no backups in {}", repo.storage().url());
        }
        return Ok(());
    }
    println!(
        "{:<34} {:<9} {:<21} {:>10} {:>9}  tags",
        "id", "kind", "finished (UTC)", "stored", "took"
    );
    for m in &manifests {
        let stored: u64 = m.artifacts.iter().map(|a| a.stored_size).sum();
        let took = (m.finished_at - m.started_at)
            .to_std()
            .unwrap_or(Duration::ZERO);
        let mut tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        // A files backup's set, in front of its tags.
        if let Some(files) = &m.source.files {
            tags.insert(0, format!("[{}]", files.set));
        }
        println!(
            "{:<34} {:<9} {:<21} {:>10} {:>8.1}s  {}",
            m.id,
            m.kind.as_str(),
            m.finished_at.format("%Y-%m-%d %H:%M:%S"),
            human_bytes(stored),
            took.as_secs_f64(),
            tags.join(",")
        );
    }
    for b in &bad {
        println!(
            "{:<34} {:<9} UNUSABLE: {} (run `ecobackup verify --all`)",
            b.id, "bad", b.reason
        );
    }
    Ok(())
}

/// `show`: a backup's manifest.
pub async fn show(ctx: &Context, args: ShowArgs) -> Result<(), CliError> {
    let repo = open(ctx).await?;
    let manifest = repo.resolve(&args.id, None).await?;
    if ctx.json {
        println!("{}", serde_json::to_string(&manifest).unwrap_or_default());
        return Ok(());
    }
    println!("backup   {}", manifest.id);
    println!("kind     {}", manifest.kind.as_str());
    println!("started  {}", manifest.started_at.to_rfc3339());
    println!("finished {}", manifest.finished_at.to_rfc3339());
    for (k, v) in &manifest.tags {
        println!("tag      {k}={v}");
    }
    if let Some(version) = &manifest.source.server_version {
        println!("server   PostgreSQL {version}");
    }
    if !manifest.source.databases.is_empty() {
        println!("databases {}", manifest.source.databases.join(", "));
    }
    if let Some(id) = &manifest.source.system_identifier {
        println!("system   {id}");
    }
    if let Some(p) = &manifest.source.physical {
        println!(
            "timeline {}  LSN {} … {}",
            manifest.source.timeline.unwrap_or_default(),
            manifest.source.start_lsn.as_deref().unwrap_or("?"),
            manifest.source.stop_lsn.as_deref().unwrap_or("?")
        );
        println!("wal      {} … {}", p.start_wal, p.stop_wal);
        println!(
            "restores to any point from {}{}",
            p.backup_stopped_at.to_rfc3339(),
            if p.wal_archived {
                " to the newest archived WAL"
            } else {
                " only (taken with --allow-no-archive: its WAL is inside the base artifact)"
            }
        );
    }
    if let Some(f) = &manifest.source.files {
        println!("set      {}", f.set);
        println!("paths    {}", f.paths.join(", "));
        println!(
            "files    {} files, {} directories, {} symlinks, {} of file content",
            f.files,
            f.directories,
            f.symlinks,
            human_bytes(f.bytes)
        );
        println!(
            "left out {} skipped (sockets, FIFOs, devices, vanished), {} excluded; {} changed while read",
            f.skipped, f.excluded, f.changed
        );
        println!("tree     sha256 {}", f.tree_sha256);
    }
    for a in &manifest.artifacts {
        println!(
            "artifact {}  {} stored ({} raw, {})  sha256 {}  to {}",
            a.name,
            human_bytes(a.stored_size),
            human_bytes(a.raw_size),
            a.compression,
            a.stored_sha256,
            if a.recipients.is_empty() {
                "nobody (not encrypted)".to_owned()
            } else {
                a.recipients.join(", ")
            }
        );
    }
    Ok(())
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
