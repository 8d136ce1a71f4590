//! Removing jobs and records: cancelling a job, a running one failed as cancelled
//! (`lua/cancel.lua`), and
//! pruning failed jobs and execution records past their retention (`lua/prune.lua`).

use dogs_core::{
    prune_in_batches, JobStore, PruneBatch, PruneReport, Result, CANCELLED_ERROR,
    CANCELLED_RETENTION, PRUNE_BATCH,
};

use crate::decode::millis;
use crate::store::RedisStore;

impl RedisStore {
    pub(crate) async fn cancel_where(&self, mode: &str, a: &str, b: &str) -> Result<bool> {
        let outcome: i64 = self
            .inner
            .scripts
            .cancel
            .key(self.key(&["seq"]))
            .arg(&self.inner.tag)
            .arg(CANCELLED_ERROR)
            .arg(millis(CANCELLED_RETENTION))
            .arg(mode)
            .arg(a)
            .arg(b)
            .run(self, "cancelling a job")
            .await?;
        if outcome < 0 {
            return Err(dogs_core::Error::new(
                dogs_core::ErrorKind::Conflict,
                "the job is a running recurrent job: pause its name to stop it",
            ));
        }
        Ok(outcome > 0)
    }

    /// Removes what had expired when it began, in batches ([`prune_in_batches`]).
    pub(crate) async fn prune_expired(&self) -> Result<PruneReport> {
        let cutoff = JobStore::now(self).await?.timestamp_millis();
        prune_in_batches(|| async move {
            let (jobs, executions): (u64, u64) = self
                .inner
                .scripts
                .prune
                .key(self.key(&["seq"]))
                .arg(&self.inner.tag)
                .arg(PRUNE_BATCH)
                .arg(cutoff)
                .run(self, "pruning")
                .await?;
            Ok(PruneBatch::counted(PruneReport { jobs, executions }))
        })
        .await
    }
}
