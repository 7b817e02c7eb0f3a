//! Repository URLs: `file:///var/backups/eco`, `s3://bucket/prefix`, `memory://name`.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The repository used when none is configured.
pub const DEFAULT_REPOSITORY: &str = "./ecobackup-repo";

/// Where a repository lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepoUrl {
    /// A local directory.
    File(PathBuf),
    /// A bucket and a key prefix (possibly empty) on an S3-compatible service.
    S3 {
        /// The bucket.
        bucket: String,
        /// Key prefix without leading or trailing slash.
        prefix: String,
    },
    /// Process memory, for tests; the same name in one process is the same store.
    Memory(String),
}

impl RepoUrl {
    /// Parses a repository URL. A bare path (no scheme) is a local directory.
    pub fn parse(url: &str) -> Result<RepoUrl> {
        let bad = |why: &str| Error::InvalidUrl {
            url: redacted(url),
            detail: why.to_owned(),
        };
        let url_trimmed = url.trim();
        if url_trimmed.is_empty() {
            return Err(bad("it is empty"));
        }
        let Some((scheme, rest)) = url_trimmed.split_once("://") else {
            if url_trimmed.contains(':') && !url_trimmed.starts_with(['.', '/']) {
                return Err(bad(
                    "expected file:///path, s3://bucket/prefix or memory://name",
                ));
            }
            return Ok(RepoUrl::File(PathBuf::from(url_trimmed)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "file" => {
                if rest.is_empty() {
                    return Err(bad("file:// needs a path, e.g. file:///var/backups/eco"));
                }
                if !rest.starts_with('/') {
                    return Err(bad(
                        "file:// needs an absolute path (three slashes: file:///var/backups/eco)",
                    ));
                }
                Ok(RepoUrl::File(PathBuf::from(rest)))
            }
            "s3" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(bad("s3:// needs a bucket, e.g. s3://acme-backups/prod"));
                }
                if !valid_bucket(bucket) {
                    return Err(bad(
                        "the bucket name must be 3–63 lowercase letters, digits, dots or hyphens",
                    ));
                }
                Ok(RepoUrl::S3 {
                    bucket: bucket.to_owned(),
                    prefix: prefix.trim_matches('/').to_owned(),
                })
            }
            "memory" => Ok(RepoUrl::Memory(rest.trim_matches('/').to_owned())),
            other => Err(bad(&format!(
                "unknown scheme {other:?}; expected file://, s3:// or memory://"
            ))),
        }
    }
}

/// The URL with any `user:password@` part masked: URLs end up in error messages and logs.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(start), Some(at)) if at > start => format!("{}://***{}", &url[..start], &url[at..]),
        _ => url.to_owned(),
    }
}

fn valid_bucket(bucket: &str) -> bool {
    (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.'])
}

impl std::fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RepoUrl::File(path) if path.is_absolute() => write!(f, "file://{}", path.display()),
            RepoUrl::File(path) => write!(f, "{}", path.display()),
            RepoUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            RepoUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            RepoUrl::Memory(name) => write!(f, "memory://{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            RepoUrl::parse("file:///var/backups/eco").unwrap(),
            RepoUrl::File("/var/backups/eco".into())
        );
        assert_eq!(
            RepoUrl::parse("./ecobackup-repo").unwrap(),
            RepoUrl::File("./ecobackup-repo".into())
        );
        assert_eq!(
            RepoUrl::parse("s3://acme-backups/prod/db/").unwrap(),
            RepoUrl::S3 {
                bucket: "acme-backups".into(),
                prefix: "prod/db".into()
            }
        );
        assert_eq!(
            RepoUrl::parse("s3://acme-backups").unwrap(),
            RepoUrl::S3 {
                bucket: "acme-backups".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            RepoUrl::parse("memory://t1").unwrap(),
            RepoUrl::Memory("t1".into())
        );
        assert_eq!(
            RepoUrl::parse("s3://acme-backups/prod")
                .unwrap()
                .to_string(),
            "s3://acme-backups/prod"
        );
    }

    #[test]
    fn refuses_malformed_urls_with_a_reason() {
        for (url, reason) in [
            ("", "empty"),
            ("s3://", "needs a bucket"),
            ("s3:///prefix", "needs a bucket"),
            ("s3://Bad_Bucket/x", "bucket name"),
            ("gs://bucket", "unknown scheme \"gs\""),
            ("file://", "needs a path"),
            ("file://relative/path", "absolute path"),
            ("ftp:bucket", "expected file://"),
        ] {
            let err = RepoUrl::parse(url).unwrap_err().to_string();
            assert!(err.contains(reason), "{url}: {err}");
        }
    }

    #[test]
    fn credentials_in_a_url_never_reach_the_message() {
        let err = RepoUrl::parse("s3://AKIA:hunter2@Bad_Bucket/x")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2") && !err.contains("AKIA"), "{err}");
        assert!(err.contains("s3://***@Bad_Bucket/x"), "{err}");
    }
}
