//! Ending claimed jobs' executions, fenced by their lease tokens: extending a lease, completing
//! a job, and storing execution records.

use std::cmp::Reverse;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dogs_core::{add_duration, truncate_millis, Completion, Execution, Lease, Result};

use crate::state::{lock_lost, parse_id, Effects, Slot, State};

impl State {
    /// The job `lease` names, if the lease's token is current.
    fn leased(&self, lease: &Lease) -> Result<u64> {
        let seq = parse_id(&lease.job_id).ok_or_else(|| lock_lost(lease))?;
        let record = self.jobs.get(&seq).ok_or_else(|| lock_lost(lease))?;
        match &record.lease {
            Some(current) if current.token == lease.token && record.slot != Slot::Failed => Ok(seq),
            _ => Err(lock_lost(lease)),
        }
    }

    pub(crate) fn extend_lock(
        &mut self,
        lease: &Lease,
        lock_time: Duration,
        now: DateTime<Utc>,
    ) -> Result<(DateTime<Utc>, Effects)> {
        let seq = self.leased(lease)?;
        let until = truncate_millis(add_duration(now, lock_time));
        let effects = self.update(seq, |record| {
            if let Some(current) = &mut record.lease {
                current.until = until;
            }
            record.demoted = false;
            record.slot = Slot::Leased;
        });
        Ok((until, effects))
    }

    pub(crate) fn complete(
        &mut self,
        lease: &Lease,
        completion: Completion,
        now: DateTime<Utc>,
    ) -> Result<Effects> {
        let seq = self.leased(lease)?;
        let effects = match completion {
            Completion::Remove => {
                self.remove(seq);
                Effects::default()
            }
            Completion::Reschedule {
                run_at,
                priority,
                reset_tries,
            } => self.update(seq, |record| {
                record.lease = None;
                record.run_at = truncate_millis(run_at.resolve(now));
                if let Some(priority) = priority {
                    record.priority = priority;
                }
                if reset_tries {
                    record.tries = 0;
                }
                record.progress = None;
                record.slot = Self::pending_slot(record.run_at, now);
            }),
            Completion::Fail { error, retain_for } => {
                let effects = self.update(seq, |record| {
                    record.lease = None;
                    record.last_error = Some(error);
                    record.expires_at = Some(truncate_millis(add_duration(now, retain_for)));
                    record.slot = Slot::Failed;
                });
                self.free_unique(seq);
                effects
            }
            Completion::Demote => self.update(seq, |record| {
                record.lease = None;
                record.progress = None;
                record.demoted = true;
                record.run_at = now;
                record.slot = Slot::Ready;
            }),
            Completion::Release => self.update(seq, |record| {
                record.lease = None;
                record.tries = record.tries.saturating_sub(1);
                record.progress = None;
                record.slot = Self::pending_slot(record.run_at, now);
            }),
            Completion::Snooze { run_at } => self.update(seq, |record| {
                record.lease = None;
                record.tries = record.tries.saturating_sub(1);
                record.progress = None;
                record.run_at = truncate_millis(run_at.resolve(now));
                record.slot = Self::pending_slot(record.run_at, now);
            }),
        };
        Ok(effects)
    }

    pub(crate) fn set_progress(
        &mut self,
        lease: &Lease,
        progress: &serde_json::Value,
    ) -> Result<()> {
        let seq = self.leased(lease)?;
        if let Some(record) = self.jobs.get_mut(&seq) {
            record.progress = Some(progress.clone());
        }
        Ok(())
    }

    pub(crate) fn record_execution(&mut self, execution: &Execution, now: DateTime<Utc>) {
        // Two for each one stored, so expired records never pile up, and no record waits on a
        // long prune.
        self.prune_executions(now, 2);
        let executions = &mut self.executions;
        if executions.by_id.contains_key(&execution.execution_id) {
            return;
        }
        executions.by_id.insert(
            execution.execution_id.clone(),
            (execution.name.clone(), execution.started_at),
        );
        executions
            .expiry
            .insert((execution.expires_at, execution.execution_id.clone()));
        executions
            .by_name
            .entry(execution.name.clone())
            .or_default()
            .insert(
                (
                    Reverse(execution.started_at),
                    Reverse(execution.execution_id.clone()),
                ),
                execution.clone(),
            );
    }
}
