//! `ecobackup encrypt` and `ecobackup decrypt`: stdin → stdout filters that read and write
//! exactly the artifact format, for emergencies and for scripts.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use ecobackup_core::crypto::{parse_recipients, read_secret_file, Keyring, SecretString};
use ecobackup_core::io::{FileSink, FileSource, ReaderSource, WriterSink};
use ecobackup_core::pipeline::{Pipeline, PipelineReport};
use ecobackup_core::transform::{Compress, Decompress, Decrypt, Encrypt};

use crate::cli::{DecryptArgs, EncryptArgs, IdentityArgs};
use crate::{CliError, Context};

/// Compresses (unless `--no-compress`) and encrypts to the configured recipients.
pub async fn encrypt(ctx: &Context, args: EncryptArgs) -> Result<(), CliError> {
    let mut recipients = args.recipients.recipients;
    if recipients.is_empty() {
        recipients = ctx.config.encryption.recipients.clone();
    }
    let recipients = parse_recipients(&recipients)?;
    let encrypt = Encrypt::to(recipients)?;
    if args.output.is_none() && std::io::stdout().is_terminal() {
        return Err(CliError::usage(
            "refusing to write an encrypted artifact to a terminal: redirect stdout or give -o FILE",
        ));
    }
    let mut pipeline = source(args.input.as_deref());
    if !args.no_compress {
        pipeline = pipeline.then(Compress::new(args.level));
    }
    let report = sink_and_run(pipeline.then(encrypt), args.output.as_deref()).await?;
    print_report(ctx, &report, args.output.is_some());
    Ok(())
}

/// Decrypts with the configured identities and decompresses when the plaintext is zstd.
pub async fn decrypt(ctx: &Context, args: DecryptArgs) -> Result<(), CliError> {
    let keyring = Arc::new(load_keyring(ctx, &args.identities).await?);
    let mut pipeline = source(args.input.as_deref()).then(Decrypt::with(keyring));
    if !args.raw {
        pipeline = pipeline.then(Decompress::auto());
    }
    let report = sink_and_run(pipeline, args.output.as_deref()).await?;
    print_report(ctx, &report, args.output.is_some());
    Ok(())
}

/// The keyring from `-i` / `ECOBACKUP_IDENTITY_FILE`, else the configuration file; the
/// passphrase from `--passphrase-file` / `ECOBACKUP_IDENTITY_PASSPHRASE_FILE`, else
/// `ECOBACKUP_IDENTITY_PASSPHRASE`, else the configuration file. The files are read on a
/// blocking thread (a passphrase costs about a second of scrypt).
pub async fn load_keyring(ctx: &Context, args: &IdentityArgs) -> Result<Keyring, CliError> {
    let files = if args.identities.is_empty() {
        ctx.config.encryption.identity_files.clone()
    } else {
        args.identities.clone()
    };
    if files.is_empty() {
        return Err(ecobackup_core::Error::NoIdentities.into());
    }
    let passphrase = match (
        &args.passphrase_file,
        std::env::var("ECOBACKUP_IDENTITY_PASSPHRASE"),
    ) {
        (Some(file), _) => Some(read_secret_file(file)?),
        (None, Ok(value)) => Some(SecretString::from(value)),
        (None, Err(_)) => ctx
            .config
            .encryption
            .passphrase_file
            .as_deref()
            .map(read_secret_file)
            .transpose()?,
    };
    Ok(Keyring::load(files, passphrase).await?)
}

fn source(input: Option<&Path>) -> Pipeline {
    match input {
        Some(path) => Pipeline::new(FileSource::new(path)),
        None => Pipeline::new(ReaderSource::new("stdin", tokio::io::stdin())),
    }
}

async fn sink_and_run(
    pipeline: Pipeline,
    output: Option<&Path>,
) -> Result<PipelineReport, CliError> {
    let report = match output {
        Some(path) => pipeline.into(FileSink::new(path)).run().await?,
        None => {
            pipeline
                .into(WriterSink::new("stdout", tokio::io::stdout()))
                .run()
                .await?
        }
    };
    Ok(report)
}

/// With `-o`, a summary on stdout; when stdout carries the data, only `--json` prints one, on stderr.
fn print_report(ctx: &Context, report: &PipelineReport, stdout_free: bool) {
    if ctx.json {
        let json = serde_json::to_string(report).unwrap_or_default();
        if stdout_free {
            println!("{json}");
        } else {
            eprintln!("{json}");
        }
    } else if stdout_free && !ctx.quiet {
        let read = report.stages.first().map_or(0, |s| s.bytes_out);
        println!(
            "{} bytes in, {} bytes written to {} in {:.2}s",
            read,
            report.receipt.bytes,
            report.receipt.location.as_deref().unwrap_or("?"),
            report.elapsed.as_secs_f64()
        );
    }
}
