//! Scheduling: event jobs in batches of one script call each (`lua/schedule.lua`), and the one
//! record of each recurrent job (`lua/register.lua`).

use dogs_core::{JobId, NewJob, Outcomes, RecurrentRegistration, Result, Scheduled};

use crate::decode::run_at_args;
use crate::error::{bad_reply, redis_error};
use crate::store::RedisStore;

/// How many jobs one scheduling script call stores; larger batches are split.
pub(crate) const SCHEDULE_BATCH: usize = 500;

impl RedisStore {
    async fn schedule_batch(&self, jobs: &[NewJob]) -> Result<Vec<Scheduled>> {
        let mut invocation = self.inner.scripts.schedule.key(self.key(&["seq"]));
        invocation.arg(&self.inner.tag).arg(jobs.len());
        for job in jobs {
            let (at, delay) = run_at_args(job.run_at);
            invocation
                .arg(&job.name)
                .arg(job.params.to_string())
                .arg(job.priority)
                .arg(at)
                .arg(delay)
                .arg(job.unique_identifier.as_deref().unwrap_or(""));
        }
        let reply: Vec<i64> = invocation
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("scheduling jobs", e))?;
        if reply.len() != jobs.len() * 2 {
            return Err(bad_reply("scheduling jobs"));
        }
        Ok(reply
            .chunks(2)
            .map(|pair| {
                let id = JobId::new(pair[1].to_string());
                if pair[0] == 1 {
                    Scheduled::Created(id)
                } else {
                    Scheduled::Duplicate(id)
                }
            })
            .collect())
    }

    pub(crate) async fn schedule_one(&self, job: NewJob) -> Result<Scheduled> {
        job.validate(self.inner.max_params_bytes)?;
        let mut outcomes = self.schedule_batch(std::slice::from_ref(&job)).await?;
        outcomes.pop().ok_or_else(|| bad_reply("scheduling a job"))
    }

    pub(crate) async fn schedule_all(&self, jobs: Vec<NewJob>) -> Result<Vec<Result<Scheduled>>> {
        let (mut outcomes, valid) =
            Outcomes::check(jobs, |job| job.validate(self.inner.max_params_bytes));
        for chunk in valid.chunks(SCHEDULE_BATCH) {
            let batch: Vec<NewJob> = chunk.iter().map(|(_, job)| job.clone()).collect();
            let scheduled = self.schedule_batch(&batch).await?;
            for ((i, _), outcome) in chunk.iter().zip(scheduled) {
                outcomes.set(*i, Ok(outcome));
            }
        }
        Ok(outcomes.finish())
    }

    pub(crate) async fn register(&self, job: RecurrentRegistration) -> Result<JobId> {
        job.validate()?;
        let id: i64 = self
            .inner
            .scripts
            .register
            .key(self.key(&["seq"]))
            .arg(&self.inner.tag)
            .arg(&job.name)
            .arg(job.priority)
            .arg(&job.schedule_key)
            .arg(job.next_run_at.timestamp_millis())
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| redis_error("registering a recurrent job", e))?;
        Ok(JobId::new(id.to_string()))
    }
}
