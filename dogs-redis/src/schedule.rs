//! Scheduling: event jobs in batches of one script call each (`lua/schedule.lua`), and the one
//! record of each recurrent job (`lua/register.lua`).

use dogs_core::{
    Error, JobId, NewJob, OnDuplicate, Outcomes, RecurrentRegistration, Result, Scheduled,
};

use crate::decode::run_at_args;
use crate::error::bad_reply;
use crate::store::RedisStore;

/// How many jobs one scheduling script call stores; larger batches are split.
pub(crate) const SCHEDULE_BATCH: usize = 500;

impl RedisStore {
    async fn schedule_batch(&self, jobs: &[NewJob]) -> Result<Vec<Scheduled>> {
        #[cfg(test)]
        if tests::FAIL_AFTER.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            return Err(dogs_core::Error::unavailable("a failure the test injected"));
        }
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
                .arg(job.unique_identifier.as_deref().unwrap_or(""))
                .arg(if job.on_duplicate == OnDuplicate::Replace {
                    "1"
                } else {
                    "0"
                })
                .arg(job.trace_context.as_deref().unwrap_or(""));
        }
        let reply: Vec<i64> = invocation.run(self, "scheduling jobs").await?;
        if reply.len() != jobs.len() * 2 {
            return Err(bad_reply("scheduling jobs"));
        }
        Ok(reply
            .chunks(2)
            .map(|pair| {
                let id = JobId::new(pair[1].to_string());
                match pair[0] {
                    1 => Scheduled::Created(id),
                    2 => Scheduled::Replaced(id),
                    _ => Scheduled::Duplicate(id),
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
        let mut chunks = valid.chunks(SCHEDULE_BATCH);
        let mut stored_some = false;
        while let Some(chunk) = chunks.next() {
            let batch: Vec<NewJob> = chunk.iter().map(|(_, job)| job.clone()).collect();
            match self.schedule_batch(&batch).await {
                Ok(scheduled) => {
                    for ((i, _), outcome) in chunk.iter().zip(scheduled) {
                        outcomes.set(*i, Ok(outcome));
                    }
                    stored_some = true;
                }
                // Nothing is stored yet: the call failed as a whole.
                Err(e) if !stored_some => return Err(e),
                Err(e) => {
                    // Earlier chunks are stored and say so; this one and every later one carry
                    // the error, so a caller retries only what was not stored.
                    for (i, _) in chunk.iter().chain(chunks.flatten()) {
                        outcomes.set(*i, Err(Error::new(e.kind(), e.message().to_owned())));
                    }
                    break;
                }
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
            .run(self, "registering a recurrent job")
            .await?;
        Ok(JobId::new(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use dogs_core::{ErrorKind, JobStore, NewJob, Scheduled};

    use super::SCHEDULE_BATCH;
    use crate::RedisStore;

    /// When above zero, the batch call that brings it to zero fails (1: the next one).
    pub(super) static FAIL_AFTER: AtomicUsize = AtomicUsize::new(usize::MAX / 2);

    #[tokio::test]
    async fn a_call_failing_after_some_chunks_were_stored_says_which_were() {
        let Some(url) = std::env::var("DOGS_REDIS_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            let required = std::env::var("DOGS_REQUIRE").unwrap_or_default();
            assert!(
                !required.split([',', ' ']).any(|b| b.trim() == "redis"),
                "DOGS_REQUIRE names redis but DOGS_REDIS_URL is unset"
            );
            println!("redis: skipped: DOGS_REDIS_URL is unset");
            return;
        };
        let prefix = format!("dogs_t_chunks_{:08x}", fastrand::u32(..));
        let store = RedisStore::builder()
            .url(&url)
            .prefix(&prefix)
            .connect()
            .await
            .unwrap();
        let jobs: Vec<NewJob> = (0..SCHEDULE_BATCH + 10)
            .map(|i| NewJob::new("chunked", serde_json::json!(i)))
            .collect();
        FAIL_AFTER.store(2, Ordering::SeqCst);
        let outcomes = store.schedule_many(jobs).await;
        FAIL_AFTER.store(usize::MAX / 2, Ordering::SeqCst);
        let stored = store.count_jobs().await.unwrap();
        store.remove_all().await.unwrap();
        let outcomes = outcomes.expect("the first chunk was stored: the call says so per entry");
        let created = outcomes
            .iter()
            .filter(|o| matches!(o, Ok(Scheduled::Created(_))))
            .count();
        let failed = outcomes
            .iter()
            .filter(|o| matches!(o, Err(e) if e.kind() == ErrorKind::Unavailable))
            .count();
        assert_eq!((created, failed), (SCHEDULE_BATCH, 10));
        assert!(outcomes[..SCHEDULE_BATCH].iter().all(Result::is_ok));
        let pending: u64 = stored.iter().map(|c| c.pending).sum();
        assert_eq!(
            pending, SCHEDULE_BATCH as u64,
            "what says created is stored"
        );
    }
}
