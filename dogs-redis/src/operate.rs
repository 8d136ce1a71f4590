//! What an operator does to jobs and names: retrying failed jobs or running pending ones now
//! (`lua/retry.lua`), pausing and limiting names (`lua/settings.lua`, read by `lua/claim.lua`),
//! and a running job's progress (`lua/progress.lua`).

use std::collections::{BTreeMap, HashMap, HashSet};

use dogs_core::{Error, ErrorKind, JobId, Lease, NameSettings, Result, RetryBatch};

use crate::error::redis_error;
use crate::store::RedisStore;

impl RedisStore {
    pub(crate) async fn retry_job(&self, id: &JobId) -> Result<bool> {
        if id.as_str().parse::<u64>().is_err() {
            return Ok(false);
        }
        let outcome: i64 = self
            .inner
            .scripts
            .retry
            .key(self.key(&["seq"]))
            .arg(&self.inner.tag)
            .arg("id")
            .arg(id.as_str())
            .run(self, "retrying a job")
            .await?;
        match outcome {
            -1 => Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "job {id} is running (or was cancelled while it ran and may still be stopping)"
                ),
            )),
            -2 => Err(Error::new(
                ErrorKind::Conflict,
                format!("job {id} cannot run again: another live job holds its unique identifier"),
            )),
            n => Ok(n > 0),
        }
    }

    pub(crate) async fn retry_failed_jobs(
        &self,
        name: &str,
        after: Option<&JobId>,
        limit: usize,
    ) -> Result<RetryBatch> {
        // Ids are numbers: one of another format goes on after nothing of this store.
        let after = after.map(|id| match id.as_str().parse::<u64>() {
            Ok(n) => n.to_string(),
            Err(_) => u64::MAX.to_string(),
        });
        let (found, retried, last): (u64, u64, String) = self
            .inner
            .scripts
            .retry
            .key(self.key(&["seq"]))
            .arg(&self.inner.tag)
            .arg("name")
            .arg(name)
            .arg(limit)
            .arg(after.unwrap_or_default())
            .run(self, "retrying failed jobs")
            .await?;
        Ok(RetryBatch {
            retried,
            full: found >= limit as u64,
            last: (!last.is_empty()).then(|| JobId::new(last)),
        })
    }

    pub(crate) async fn change_settings(
        &self,
        name: &str,
        change: &str,
        limit: &str,
    ) -> Result<()> {
        let _: i64 = self
            .inner
            .scripts
            .settings
            .key(self.key(&["seq"]))
            .arg(&self.inner.tag)
            .arg(name)
            .arg(change)
            .arg(limit)
            .run(self, "changing a job name's settings")
            .await?;
        Ok(())
    }

    /// The paused job names.
    pub(crate) async fn paused_names(&self) -> Result<HashSet<String>> {
        redis::cmd("SMEMBERS")
            .arg(self.key(&["paused"]))
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("reading paused job names", e))
    }

    pub(crate) async fn read_settings(&self) -> Result<Vec<NameSettings>> {
        let paused = self.paused_names().await?;
        let limits: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.key(&["limits"]))
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("reading job name limits", e))?;
        let mut settings: BTreeMap<String, NameSettings> = BTreeMap::new();
        let entry = |settings: &mut BTreeMap<String, NameSettings>, name: &String| {
            settings
                .entry(name.clone())
                .or_insert_with(|| NameSettings {
                    name: name.clone(),
                    ..NameSettings::default()
                });
        };
        for name in &paused {
            entry(&mut settings, name);
            if let Some(s) = settings.get_mut(name) {
                s.paused = true;
            }
        }
        for (name, limit) in &limits {
            // A limit written by hand that is not a positive number is no limit.
            let Some(limit) = limit.parse::<u32>().ok().filter(|l| *l > 0) else {
                continue;
            };
            entry(&mut settings, name);
            if let Some(s) = settings.get_mut(name) {
                s.concurrency_limit = Some(limit);
            }
        }
        Ok(settings.into_values().collect())
    }

    pub(crate) async fn store_progress(
        &self,
        lease: &Lease,
        progress: &serde_json::Value,
    ) -> Result<()> {
        dogs_core::validate_progress(progress, self.inner.max_params_bytes)?;
        let applied: i64 = self
            .inner
            .scripts
            .progress
            .key(self.key(&["seq"]))
            .arg(&self.inner.tag)
            .arg(lease.job_id.as_str())
            .arg(lease.token.as_str())
            .arg(progress.to_string())
            .run(self, "storing a job's progress")
            .await?;
        if applied == 0 {
            return Err(Error::lock_lost(&lease.job_id));
        }
        Ok(())
    }
}
