//! S3 Object Lock: objects written with a retention date before which nobody — not the
//! credentials that wrote them, not ransomware holding those credentials — can delete or
//! overwrite them (COMPLIANCE), or only a principal with `s3:BypassGovernanceRetention` can
//! (GOVERNANCE).
//!
//! The bucket must have Object Lock enabled (which turns versioning on). Every request of a
//! store opened with an [`ObjectLock`] carries `x-amz-object-lock-mode` and
//! `x-amz-object-lock-retain-until-date`, which S3 applies to the objects a PUT or a multipart
//! upload creates, and a SHA-256 checksum of each body, which S3 requires on such PUTs. A
//! DELETE of a locked object without a version id only adds a delete marker: the locked
//! version stays (and is billed) until its date, after which a lifecycle rule on noncurrent
//! versions removes it.

use chrono::{DateTime, SecondsFormat, Utc};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How strictly a locked object is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectLockMode {
    /// Deletable before its date only with `s3:BypassGovernanceRetention`.
    Governance,
    /// Deletable by nobody before its date, the account's root user included.
    Compliance,
}

impl ObjectLockMode {
    /// The value of `x-amz-object-lock-mode`.
    pub fn header_value(self) -> &'static str {
        match self {
            ObjectLockMode::Governance => "GOVERNANCE",
            ObjectLockMode::Compliance => "COMPLIANCE",
        }
    }
}

/// The retention every object written through a store gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectLock {
    /// Governance or compliance.
    pub mode: ObjectLockMode,
    /// Until when.
    pub retain_until: DateTime<Utc>,
}

impl ObjectLock {
    /// The request headers that ask S3 to lock what a request writes.
    pub fn headers(&self) -> Result<HeaderMap> {
        let mut headers = HeaderMap::new();
        let until = self.retain_until.to_rfc3339_opts(SecondsFormat::Secs, true);
        for (name, value) in [
            (
                "x-amz-object-lock-mode",
                self.mode.header_value().to_owned(),
            ),
            ("x-amz-object-lock-retain-until-date", until),
        ] {
            let value = HeaderValue::from_str(&value).map_err(|e| Error::InvalidUrl {
                url: String::new(),
                detail: format!("the Object Lock header {name}: {e}"),
            })?;
            headers.insert(HeaderName::from_static(name), value);
        }
        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn headers_name_the_mode_and_the_date_in_utc() {
        let lock = ObjectLock {
            mode: ObjectLockMode::Compliance,
            retain_until: Utc.with_ymd_and_hms(2026, 12, 23, 4, 5, 6).unwrap(),
        };
        let headers = lock.headers().unwrap();
        assert_eq!(headers["x-amz-object-lock-mode"], "COMPLIANCE");
        assert_eq!(
            headers["x-amz-object-lock-retain-until-date"],
            "2026-12-23T04:05:06Z"
        );
    }
}
