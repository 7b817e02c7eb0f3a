//! `ecobackup key generate`.

use std::io::Write;

use ecobackup_core::crypto::{
    generate_identity, read_secret_file, write_identity_file, ExposeSecret,
};

use crate::cli::KeyGenerateArgs;
use crate::{CliError, Context};

/// Generates an identity; writes it to `--out` (0600) or stdout; prints the recipient.
pub fn generate(ctx: &Context, args: KeyGenerateArgs) -> Result<(), CliError> {
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
    write_identity_file(&out, &identity, passphrase.as_ref())?;
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
