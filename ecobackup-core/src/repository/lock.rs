//! Advisory locks in `locks/<scope>/`: who holds what, until when.
//!
//! Object stores have no atomic create-if-absent that every provider supports, so a lock is
//! taken optimistically: write our own lock object under a unique name, then list the scope.
//! If any other unexpired lock is there, remove ours and refuse, naming the holder. Two racing
//! writers may both refuse; they can never both succeed (S3, B2 and R2 list what was written,
//! strongly consistent). Expired locks (their process died) are taken over and deleted.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::Storage;

/// What a lock object holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Who took it (`backup logical`, `prune`, a service's name).
    pub owner: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// When it was taken.
    pub acquired_at: DateTime<Utc>,
    /// After this, anyone may take it over.
    pub expires_at: DateTime<Utc>,
}

impl LockInfo {
    fn holder(&self) -> String {
        format!(
            "{} (pid {} on {}, since {})",
            self.owner,
            self.pid,
            self.host,
            self.acquired_at.to_rfc3339()
        )
    }
}

/// A held lock. Release it with [`Lock::release`]; a lock that is never released (the
/// process died) expires.
#[derive(Debug)]
pub struct Lock {
    storage: Storage,
    key: String,
    info: LockInfo,
}

impl Lock {
    /// Takes the lock on `scope` (a backup id, `prune`) for `ttl`, or fails with
    /// [`Error::Locked`] naming the current holder.
    pub async fn acquire(
        storage: &Storage,
        scope: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Lock> {
        let now = Utc::now();
        let info = LockInfo {
            owner: owner.to_owned(),
            host: hostname(),
            pid: std::process::id(),
            acquired_at: now,
            expires_at: now + ttl,
        };
        let folder = format!("locks/{scope}/");
        let key = format!(
            "{folder}{}-{:016x}.json",
            now.format("%Y%m%dT%H%M%S%.6fZ"),
            rand::random::<u64>()
        );
        let body =
            serde_json::to_vec_pretty(&info).map_err(|e| Error::io("encoding a lock", e.into()))?;
        storage.put(&key, body).await?;
        let lock = Lock {
            storage: storage.clone(),
            key,
            info,
        };
        for other in storage.list(&folder).await? {
            if other.key == lock.key {
                continue;
            }
            let held = match storage.get(&other.key).await? {
                Some(bytes) => serde_json::from_slice::<LockInfo>(&bytes).ok(),
                None => continue, // released meanwhile
            };
            match held {
                Some(held) if held.expires_at <= now => {
                    tracing::warn!(lock = %other.key, holder = %held.holder(), "taking over an expired lock");
                    storage.delete(&other.key).await?;
                }
                held => {
                    lock.release().await?;
                    let (holder, expires_at) = match held {
                        Some(h) => (h.holder(), h.expires_at.to_rfc3339()),
                        None => ("an unreadable lock object".to_owned(), "unknown".to_owned()),
                    };
                    return Err(Error::Locked {
                        scope: scope.to_owned(),
                        holder,
                        key: other.key,
                        expires_at,
                    });
                }
            }
        }
        Ok(lock)
    }

    /// What this lock says about its holder.
    pub fn info(&self) -> &LockInfo {
        &self.info
    }

    /// Removes the lock object.
    pub async fn release(self) -> Result<()> {
        self.storage.delete(&self.key).await
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_owned())
}
