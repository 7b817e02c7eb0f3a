//! `ecobackup key generate`.

use std::io::Write;

use std::path::Path;

use ecobackup_core::crypto::{
    generate_identity, read_secret_file, replace_identity_file, write_identity_file, ExposeSecret,
    Signer,
};

use crate::cli::KeyGenerateArgs;
use crate::{CliError, Context};

/// Generates an identity; writes it to `--out` (0600) or stdout; prints the recipient. With
/// `--signing`, a signing key instead; prints its public key.
pub fn generate(ctx: &Context, args: KeyGenerateArgs) -> Result<(), CliError> {
    if args.signing {
        let out = args
            .out
            .as_deref()
            .ok_or_else(|| CliError::usage("key generate --signing needs --out FILE"))?;
        return generate_signing(ctx, out, args.force);
    }
    let (identity, recipient) = generate_identity();
    let Some(out) = args.out else {
        // Like age-keygen: the identity on stdout, the public key on stderr.
        let text = format!(
            "# public key: {recipient}\n{}\n",
            identity.to_string().expose_secret()
        );
        std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| ecobackup_core::Error::io("writing the identity to stdout", e))?;
        if !ctx.quiet {
            eprintln!("Public key: {recipient}");
        }
        return Ok(());
    };
    let passphrase = args
        .passphrase_file
        .as_deref()
        .map(read_secret_file)
        .transpose()?;
    if args.force {
        replace_identity_file(&out, &identity, passphrase.as_ref())?;
    } else {
        write_identity_file(&out, &identity, passphrase.as_ref())?;
    }
    if ctx.json {
        let report = serde_json::json!({
            "recipient": recipient.to_string(),
            "identity_file": out,
            "passphrase_protected": passphrase.is_some(),
        });
        println!("{report}");
    } else {
        println!("{recipient}");
        if !ctx.quiet {
            eprintln!(
                "wrote the identity to {} (mode 0600{}); give its recipient {recipient} to backup \
                 hosts (ECOBACKUP_RECIPIENTS) and keep the identity with the restore side only",
                out.display(),
                if passphrase.is_some() {
                    ", passphrase-protected"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

/// `key generate --signing --out FILE`: a signing key for the backup hosts.
fn generate_signing(ctx: &Context, out: &Path, force: bool) -> Result<(), CliError> {
    let signer = Signer::generate();
    signer.write_file(out, force)?;
    let public = signer.public_key();
    if ctx.json {
        let report = serde_json::json!({
            "signer": public.to_string(),
            "signing_key_file": out,
        });
        println!("{report}");
    } else {
        println!("{public}");
        if !ctx.quiet {
            eprintln!(
                "wrote the signing key to {} (mode 0600); keep it on the backup hosts \
                 (ECOBACKUP_SIGNING_KEY_FILE) and pin its public key {public} on the restore side \
                 (ECOBACKUP_TRUSTED_SIGNERS or [encryption] trusted_signers)",
                out.display()
            );
        }
    }
    Ok(())
}
