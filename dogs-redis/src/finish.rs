//! Ending claimed jobs' executions, fenced by their lease tokens: a batch of outcomes with their
//! execution records in one script call (`lua/complete.lua`, which checks every entry before it
//! writes anything), extending a lease (`lua/extend.lua`), and a record on its own
//! (`lua/record.lua`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use dogs_core::{Completion, Error, ErrorKind, Execution, Finish, JobId, Lease, Outcomes, Result};

use crate::decode::{from_millis, millis, run_at_args};
use crate::error::bad_reply;
use crate::schedule::SCHEDULE_BATCH;
use crate::store::RedisStore;

impl RedisStore {
    /// The completion script's 13 arguments for one job.
    fn finish_args(item: &Finish) -> Result<Vec<String>> {
        let mut args = vec![
            item.lease.job_id.as_str().to_owned(),
            item.lease.token.as_str().to_owned(),
        ];
        let (name, a1, a2, a3, a4): (&str, String, String, String, String) = match &item.completion
        {
            Completion::Remove => (
                "remove",
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ),
            Completion::Reschedule {
                run_at,
                priority,
                reset_tries,
            } => {
                let (at, delay) = run_at_args(*run_at);
                (
                    "reschedule",
                    at,
                    delay.to_string(),
                    priority.map(|p| p.to_string()).unwrap_or_default(),
                    if *reset_tries { "1" } else { "0" }.to_owned(),
                )
            }
            Completion::Fail { error, retain_for } => (
                "fail",
                error.clone(),
                millis(*retain_for).to_string(),
                String::new(),
                String::new(),
            ),
            Completion::Demote => (
                "demote",
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ),
            Completion::Release => (
                "release",
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ),
            Completion::Snooze { run_at } => {
                let (at, delay) = run_at_args(*run_at);
                (
                    "snooze",
                    at,
                    delay.to_string(),
                    String::new(),
                    String::new(),
                )
            }
        };
        args.extend([name.to_owned(), a1, a2, a3, a4]);
        match &item.execution {
            Some(e) => {
                let json = serde_json::to_string(e).map_err(|err| {
                    Error::serialization("the execution record cannot be serialized", err)
                })?;
                args.extend([
                    e.execution_id.clone(),
                    e.name.clone(),
                    json,
                    e.started_at.timestamp_millis().to_string(),
                    e.expires_at.timestamp_millis().to_string(),
                    figures(e),
                ]);
            }
            None => args.extend(std::iter::repeat_n(String::new(), 6)),
        }
        Ok(args)
    }

    /// Ends many claimed jobs in one script call; per job, what the script answered: 1 applied,
    /// 0 its token was not current, -1 its record cannot be read.
    async fn complete_batch(&self, items: &[Finish]) -> Result<Vec<i64>> {
        let mut invocation = self.inner.scripts.complete.key(self.key(&["seq"]));
        invocation.arg(&self.inner.tag).arg(items.len());
        for item in items {
            invocation.arg(Self::finish_args(item)?);
        }
        let applied: Vec<i64> = invocation.run(self, "saving job outcomes").await?;
        if applied.len() != items.len() {
            return Err(bad_reply("saving job outcomes"));
        }
        Ok(applied)
    }

    pub(crate) async fn fenced(&self, finish: Finish) -> Result<()> {
        finish.completion.validate()?;
        let applied = self.complete_batch(std::slice::from_ref(&finish)).await?;
        outcome(&finish, applied.first().copied().unwrap_or(0))
    }

    pub(crate) async fn extend(&self, lease: &Lease, lock_time: Duration) -> Result<DateTime<Utc>> {
        dogs_core::validate_lock_time(lock_time)?;
        let until: i64 = self
            .inner
            .scripts
            .extend
            .key(self.key(&["seq"]))
            .arg(&self.inner.tag)
            .arg(lease.job_id.as_str())
            .arg(lease.token.as_str())
            .arg(millis(lock_time))
            .run(self, "extending a lease")
            .await?;
        match until {
            -1 => return Err(Error::lock_lost(&lease.job_id)),
            ..=-2 => return Err(corrupt(&lease.job_id)),
            _ => {}
        }
        Ok(from_millis(until))
    }

    pub(crate) async fn finish_all(&self, items: Vec<Finish>) -> Result<Vec<Result<()>>> {
        let (mut outcomes, valid) = Outcomes::check(items, |item| item.completion.validate());
        for chunk in valid.chunks(SCHEDULE_BATCH) {
            let batch: Vec<Finish> = chunk.iter().map(|(_, item)| item.clone()).collect();
            // Each chunk is one script call: its error is its entries' alone.
            match self.complete_batch(&batch).await {
                Ok(applied) => {
                    for ((i, item), applied) in chunk.iter().zip(applied) {
                        outcomes.set(*i, outcome(item, applied));
                    }
                }
                Err(e) => {
                    for (i, _) in chunk {
                        outcomes.set(*i, Err(Error::new(e.kind(), e.message().to_owned())));
                    }
                }
            }
        }
        Ok(outcomes.finish())
    }

    pub(crate) async fn record(&self, e: &Execution) -> Result<()> {
        let json = serde_json::to_string(e).map_err(|err| {
            Error::serialization("the execution record cannot be serialized", err)
        })?;
        let _: i64 = self
            .inner
            .scripts
            .record
            .key(self.key(&["seq"]))
            .arg(&self.inner.tag)
            .arg(&e.execution_id)
            .arg(&e.name)
            .arg(json)
            .arg(e.started_at.timestamp_millis())
            .arg(e.expires_at.timestamp_millis())
            .arg(figures(e))
            .run(self, "recording an execution")
            .await?;
        Ok(())
    }
}

/// What the completion script's answer for `item` means.
fn outcome(item: &Finish, applied: i64) -> Result<()> {
    match applied {
        1 => Ok(()),
        0 => Err(Error::lock_lost(&item.lease.job_id)),
        _ => Err(corrupt(&item.lease.job_id)),
    }
}

/// A claimed job whose record cannot be read any more: nothing was changed.
fn corrupt(id: &JobId) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("Redis: job {id}: its record cannot be read; nothing was changed"),
    )
}

/// An execution's figures for the minute it ended: "<end (ms)> <status> <run time (ms)>"
/// (empty for an end before 1970, which no chart shows).
fn figures(e: &Execution) -> String {
    let ended = e.ended_at.timestamp_millis();
    if ended < 0 {
        return String::new();
    }
    format!(
        "{ended} {} {}",
        e.status.as_str(),
        u64::try_from(e.duration.as_millis()).unwrap_or(u64::MAX)
    )
}
