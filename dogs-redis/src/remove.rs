//! Removing jobs and records: cancelling a job that is not running (`lua/cancel.lua`), and
//! pruning failed jobs and execution records past their retention (`lua/prune.lua`).

use dogs_core::{rest_between_prune_batches, Error, ErrorKind, PruneReport, Result};

use crate::error::redis_error;
use crate::store::RedisStore;

/// How many records one pruning script call removes.
const PRUNE_BATCH: u64 = 1000;

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

    pub(crate) async fn prune_expired(&self) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        loop {
            let started = std::time::Instant::now();
            let (jobs, executions): (u64, u64) = self
                .inner
                .scripts
                .prune
                .key(self.key(&["seq"]))
                .arg(&self.inner.tag)
                .arg(PRUNE_BATCH)
                .invoke_async(&mut self.conn())
                .await
                .map_err(|e| redis_error("pruning", e))?;
            report.jobs += jobs;
            report.executions += executions;
            if jobs < PRUNE_BATCH && executions < PRUNE_BATCH {
                return Ok(report);
            }
            rest_between_prune_batches(started.elapsed()).await;
        }
    }
}
