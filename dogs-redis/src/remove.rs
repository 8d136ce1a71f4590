//! Removing jobs and records: cancelling a job that is not running (`lua/cancel.lua`), and
//! pruning failed jobs and execution records past their retention (`lua/prune.lua`).

use dogs_core::{
    prune_in_batches, Error, ErrorKind, JobStore, PruneBatch, PruneReport, Result, PRUNE_BATCH,
};

use crate::error::redis_error;
use crate::store::RedisStore;

impl RedisStore {
    pub(crate) async fn cancel_where(&self, mode: &str, a: &str, b: &str) -> Result<bool> {
        let outcome: i64 = self
            .inner
            .scripts
            .cancel
            .key(self.key(&["seq"]))
            .arg(&self.inner.tag)
            .arg(mode)
            .arg(a)
            .arg(b)
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("cancelling a job", e))?;
        match outcome {
            1 => Ok(true),
            -1 => Err(Error::new(
                ErrorKind::Conflict,
                "the job is running and cannot be cancelled",
            )),
            _ => Ok(false),
        }
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
                .invoke_async(&mut self.conn())
                .await
                .map_err(|e| redis_error("pruning", e))?;
            Ok(PruneBatch::counted(PruneReport { jobs, executions }))
        })
        .await
    }
}
