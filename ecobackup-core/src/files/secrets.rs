//! The secrets profile: a files set holding keys (`*.pem`, `.env`, the master data key) must be
//! encrypted to recipients of its own.
//!
//! The runbooks' rule is domain isolation: "don't back the keys up to the same target as the
//! database; compromise of one shouldn't compromise the other". Whoever holds the identity that
//! opens database backups (an operator, a drill host, a restore script) must not thereby be able
//! to open the keys — with the data key, a leaked database dump would be readable in full, its
//! encrypted columns included. So a set with `secrets = true` must name its own recipients,
//! none of them a recipient of the database backups. Sharing the repository is allowed (the
//! issue says a secrets set *may* use another one), with a warning: the runbook still advises
//! a separate bucket, so that one leaked bucket credential cannot delete both.

use crate::crypto::{fingerprint, parse_recipients};
use crate::error::{Error, Result};

/// Why the secrets isolation is broken, as one line for `[[files]] <set>`.
fn broken(set: &str, detail: String) -> Error {
    Error::Config {
        section: "files".to_owned(),
        detail: format!("[[files]] {set:?} has secrets = true, but {detail}"),
    }
}

/// Checks a secrets set's recipients against the database backups' recipients: the set needs
/// recipients of its own, and none may be a database recipient. Recipients are compared as
/// keys (their fingerprints), not as text.
pub fn check_secrets_recipients(
    set: &str,
    secrets_recipients: &[String],
    database_recipients: &[String],
) -> Result<()> {
    let own = parse_recipients(secrets_recipients)?;
    if own.is_empty() {
        return Err(broken(
            set,
            "it has no recipients of its own: add `recipients = [\"age1…\"]` with a key that cannot open the database backups (`ecobackup key generate`), so that whoever can read database backups cannot read the keys".to_owned(),
        ));
    }
    let database: Vec<String> = parse_recipients(database_recipients)?
        .iter()
        .map(fingerprint)
        .collect();
    if let Some(shared) = own.iter().find(|r| database.contains(&fingerprint(r))) {
        return Err(broken(
            set,
            format!(
                "its recipient {shared} is also a recipient of the database backups ([encryption] recipients): domain isolation requires that keys are not readable by whoever can read database backups (the runbook: compromise of one must not compromise the other); give the set a key of its own"
            ),
        ));
    }
    Ok(())
}

/// The warning for a secrets set stored in the database backups' repository, or `None`.
pub fn shared_repository_warning(
    set: &str,
    set_repository: &str,
    database_repository: &str,
) -> Option<String> {
    (set_repository.trim_end_matches('/') == database_repository.trim_end_matches('/')).then(|| {
        format!(
            "[[files]] {set:?} (secrets) is stored in the repository of the database backups ({set_repository}): its encryption is separate, but one leaked bucket credential could delete both; the runbook advises a separate target (`repository = \"s3://…\"` in the set)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::generate_identity;

    fn recipient() -> String {
        generate_identity().1.to_string()
    }

    #[test]
    fn own_recipients_pass_and_shared_ones_are_refused() {
        let (db, keys) = (recipient(), recipient());
        check_secrets_recipients(
            "keys",
            std::slice::from_ref(&keys),
            std::slice::from_ref(&db),
        )
        .unwrap();
        let err = check_secrets_recipients("keys", &[keys, db.clone()], std::slice::from_ref(&db))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid [files] configuration: [[files]] \"keys\" has secrets = true, but its recipient age1"),
            "{err}"
        );
        assert!(err.contains("domain isolation"), "{err}");
        assert!(!err.contains('\n'));
        let err = check_secrets_recipients("keys", &[], &[db])
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no recipients of its own"), "{err}");
    }

    #[test]
    fn a_shared_repository_is_a_warning() {
        assert!(shared_repository_warning("keys", "s3://a/prod/", "s3://a/prod").is_some());
        assert!(shared_repository_warning("keys", "s3://secrets/prod", "s3://a/prod").is_none());
    }
}
