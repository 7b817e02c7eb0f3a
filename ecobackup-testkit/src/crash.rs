//! Test-only hooks on a throwaway cluster: a crash, as a power cut would cause one.

use ecobackup_core::postgres::cluster::Cluster;
use ecobackup_core::Result;

/// What tests do to a cluster that production code never does.
#[allow(async_fn_in_trait)]
pub trait ClusterHooks {
    /// Kills the server the way a power cut would: no shutdown checkpoint, the next
    /// [`Cluster::start_again`] runs crash recovery.
    ///
    /// With `fsync: false`, `synchronous_commit` is off: commits of the last few hundred
    /// milliseconds may be lost. A test that needs them to survive runs
    /// `SET synchronous_commit = on` in its session (cheap without fsync) or a `CHECKPOINT`.
    async fn crash(&mut self) -> Result<()>;
}

impl ClusterHooks for Cluster {
    async fn crash(&mut self) -> Result<()> {
        self.stop_immediately().await
    }
}
