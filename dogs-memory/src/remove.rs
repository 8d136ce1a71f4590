//! Removing jobs and records: cancelling jobs (a running one is failed as cancelled), and
//! pruning what has expired.

use std::cmp::Reverse;

use chrono::{DateTime, Utc};
use dogs_core::{
    add_duration, truncate_millis, Error, ErrorKind, JobId, JobKind, LeaseToken, PruneReport,
    Result, CANCELLED_ERROR, CANCELLED_RETENTION,
};

use crate::state::{parse_id, Slot, State};

/// What a cancel found.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Cancelled {
    /// There was such a job.
    pub(crate) found: bool,
    /// It was running: it is failed as cancelled, and its worker is to be told.
    pub(crate) running: bool,
}

impl State {
    /// Removes a job that is not running; a running one is failed as cancelled, its lease
    /// ended for its holder (a new token) but kept until its end, so it counts against its
    /// name's limit and is not retried while its handler may still be stopping. Says whether
    /// there was a job, and whether it was running; a running recurrent job is `Conflict`.
    pub(crate) fn cancel(&mut self, seq: u64, now: DateTime<Utc>) -> Result<Cancelled> {
        let Some(record) = self.jobs.get(&seq) else {
            return Ok(Cancelled::default());
        };
        if record.still_stopping(now) {
            // Cancelled already, its handler maybe still stopping: it keeps its place.
            return Ok(Cancelled {
                found: true,
                running: false,
            });
        }
        if record.is_live(now) {
            if record.kind == JobKind::Recurrent {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("job {seq} is a running recurrent job: pause its name to stop it"),
                ));
            }
            let name = record.name.clone();
            let mut until = now;
            self.update(seq, |record| {
                if let Some(lease) = &mut record.lease {
                    lease.token = LeaseToken::generate();
                    until = lease.until;
                }
                record.last_error = Some(CANCELLED_ERROR.to_owned());
                record.expires_at = Some(truncate_millis(add_duration(now, CANCELLED_RETENTION)));
                record.slot = Slot::Failed;
            });
            self.free_unique(seq);
            self.still_cancelling(&name, now);
            self.cancelling
                .entry(name)
                .or_default()
                .insert((until, seq));
            return Ok(Cancelled {
                found: true,
                running: true,
            });
        }
        self.remove(seq);
        Ok(Cancelled {
            found: true,
            running: false,
        })
    }

    /// How many jobs of `name` cancelled while they ran still have their lease.
    pub(crate) fn still_cancelling(&mut self, name: &str, now: DateTime<Utc>) -> usize {
        let Some(set) = self.cancelling.get_mut(name) else {
            return 0;
        };
        while set.first().is_some_and(|(until, _)| *until <= now) {
            set.pop_first();
        }
        let left = set.len();
        if left == 0 {
            self.cancelling.remove(name);
        }
        left
    }

    pub(crate) fn cancel_id(&mut self, id: &JobId, now: DateTime<Utc>) -> Result<Cancelled> {
        match parse_id(id) {
            Some(seq) => self.cancel(seq, now),
            None => Ok(Cancelled::default()),
        }
    }

    pub(crate) fn cancel_unique(
        &mut self,
        name: &str,
        unique_identifier: &str,
        now: DateTime<Utc>,
    ) -> Result<Cancelled> {
        match self
            .unique
            .get(&(name.to_owned(), unique_identifier.to_owned()))
        {
            Some(&seq) => self.cancel(seq, now),
            None => Ok(Cancelled::default()),
        }
    }

    /// Removes up to `limit` expired failed jobs and `limit` expired execution records.
    pub(crate) fn prune(&mut self, now: DateTime<Utc>, limit: usize) -> PruneReport {
        let before = self.failed.len();
        while let Some(&(expires_at, seq)) = self.failed.first() {
            if expires_at > now || before - self.failed.len() >= limit {
                break;
            }
            self.remove(seq);
        }
        PruneReport {
            jobs: (before - self.failed.len()) as u64,
            executions: self.prune_executions(now, limit),
        }
    }

    /// Removes up to `limit` expired execution records.
    pub(crate) fn prune_executions(&mut self, now: DateTime<Utc>, limit: usize) -> u64 {
        let executions = &mut self.executions;
        let mut removed = 0;
        while let Some((expires_at, id)) = executions.expiry.first().cloned() {
            if expires_at > now || removed >= limit as u64 {
                break;
            }
            executions.expiry.pop_first();
            if let Some((name, started_at)) = executions.by_id.remove(&id) {
                if let Some(records) = executions.by_name.get_mut(&name) {
                    records.remove(&(Reverse(started_at), Reverse(id)));
                    if records.is_empty() {
                        executions.by_name.remove(&name);
                    }
                }
            }
            removed += 1;
        }
        removed
    }
}

impl crate::MemoryStore {
    /// Empties the store: every job, record and name setting. Ids go on from where they were,
    /// so an id read before never names a job scheduled after.
    pub(crate) fn clear(&self) {
        let old = {
            let mut state = self.state();
            let next_seq = state.next_seq;
            let old = std::mem::take(&mut *state);
            state.next_seq = next_seq;
            old
        };
        // Freed outside the lock: a million jobs take a while to drop.
        drop(old);
    }
}
