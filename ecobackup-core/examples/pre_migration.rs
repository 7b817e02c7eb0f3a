//! A service's pre-migration snapshot: back up the database, apply a migration in one
//! transaction, and when it fails, say exactly how to go back.
//!
//! ```text
//! cargo run -p ecobackup-core --example pre_migration -- --migration migrations/0042.sql
//! ```
//!
//! `DATABASE_URL` names the database; the repository and keys come from the same `ECOBACKUP_*`
//! variables the `ecobackup` CLI reads (`ECOBACKUP_CONFIG`, `ECOBACKUP_REPO`,
//! `ECOBACKUP_RECIPIENTS`, `ECOBACKUP_SIGNING_KEY_FILE`, `ECOBACKUP_S3_*`), read through the
//! library's explicit `Config::from_env()`.

use std::path::PathBuf;
use std::process::ExitCode;

use ecobackup_core::cancel::CancellationToken;
use ecobackup_core::postgres::DbUrl;
use ecobackup_core::{Config, Ecobackup};

const HELP: &str = "\
pre_migration: take an encrypted snapshot tagged reason=pre-migration, then apply a SQL
migration in one transaction; on failure, print the command that restores the snapshot.

usage: pre_migration --migration FILE

environment:
  DATABASE_URL                 the database to snapshot and migrate (postgres://…)
  ECOBACKUP_CONFIG             an ecobackup.toml ([repository], [encryption])
  ECOBACKUP_REPO               the repository URL (s3://bucket/prefix, /path)
  ECOBACKUP_RECIPIENTS         age recipients the snapshot is encrypted to
  ECOBACKUP_SIGNING_KEY_FILE   the key that signs the snapshot's manifest
  ECOBACKUP_S3_ENDPOINT, ECOBACKUP_S3_REGION, ECOBACKUP_S3_ALLOW_HTTP, AWS_* credentials

exit status: 0 migrated; 1 the snapshot or the migration failed (the line says which); 2 usage";

/// `--migration FILE`, or what to print instead.
fn migration_file() -> Result<PathBuf, (u8, String)> {
    let mut args = std::env::args().skip(1);
    let mut file = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Err((0, HELP.to_owned())),
            "--migration" => file = args.next().map(PathBuf::from),
            other => return Err((2, format!("unknown argument {other:?}\n\n{HELP}"))),
        }
    }
    file.ok_or_else(|| (2, format!("--migration FILE is required\n\n{HELP}")))
}

#[tokio::main]
async fn main() -> ExitCode {
    let file = match migration_file() {
        Ok(file) => file,
        Err((0, help)) => {
            println!("{help}");
            return ExitCode::SUCCESS;
        }
        Err((code, message)) => {
            eprintln!("{message}");
            return ExitCode::from(code);
        }
    };
    match run(&file).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(1)
        }
    }
}

async fn run(file: &std::path::Path) -> Result<(), String> {
    let sql = std::fs::read_to_string(file)
        .map_err(|e| format!("error: cannot read the migration {}: {e}", file.display()))?;
    let url =
        std::env::var("DATABASE_URL").map_err(|_| "error: DATABASE_URL is not set".to_owned())?;
    let db = DbUrl::parse(&url).map_err(|e| format!("error: DATABASE_URL: {e}"))?;

    // Ctrl-C during the snapshot stops it cleanly: no half backup, no lock left behind.
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });

    let eco = Ecobackup::open(Config::from_env().map_err(|e| format!("error: {e}"))?)
        .await
        .map_err(|e| format!("error: opening the repository: {e}"))?;
    let snapshot = eco
        .backup_logical(db.clone())
        .tag("reason", "pre-migration")
        .tag("migration", file.display().to_string())
        .cancel_on(cancel)
        .run()
        .await
        .map_err(|e| format!("error: no snapshot, so no migration: {e}"))?;
    println!("snapshot {} taken", snapshot.id);

    let (client, _) = db
        .connect_pinned()
        .await
        .map_err(|e| format!("error: connecting for the migration: {e}"))?;
    let applied = async {
        client.batch_execute("BEGIN").await?;
        match client.batch_execute(&sql).await {
            Ok(()) => client.batch_execute("COMMIT").await,
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                Err(e)
            }
        }
    }
    .await;
    match applied {
        Ok(()) => {
            println!("migration {} applied", file.display());
            Ok(())
        }
        Err(e) => {
            // The CLI refuses a password in --db (it would show in `ps`): print the URL
            // without it, and say where the password goes.
            let password = if db.has_password() {
                "\n  with the password in PGPASSWORD or a PGPASSFILE (ecobackup refuses one in --db)"
            } else {
                ""
            };
            Err(format!(
                "error: migration {} failed: {}\nthe transaction was rolled back; to return to the snapshot taken before it, run:\n  ecobackup restore logical {} --db '{}' --clean --terminate-connections{password}",
                file.display(),
                e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_owned()),
                snapshot.id,
                db.redacted(),
            ))
        }
    }
}
