//! Removing jobs and records: cancelling pending jobs, and pruning what has expired.

use std::cmp::Reverse;

use chrono::{DateTime, Utc};
use dogs_core::{Error, ErrorKind, JobId, PruneReport, Result};

use crate::state::{parse_id, State};

impl State {
    pub(crate) fn cancel(&mut self, seq: u64, now: DateTime<Utc>) -> Result<bool> {
        let Some(record) = self.jobs.get(&seq) else {
            return Ok(false);
        };
        if record.is_live(now) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("job {seq} is running and cannot be cancelled"),
            ));
        }
        self.remove(seq);
        Ok(true)
    }

    pub(crate) fn cancel_id(&mut self, id: &JobId, now: DateTime<Utc>) -> Result<bool> {
        match parse_id(id) {
            Some(seq) => self.cancel(seq, now),
            None => Ok(false),
        }
    }

    pub(crate) fn cancel_unique(
        &mut self,
        name: &str,
        unique_identifier: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        match self
            .unique
            .get(&(name.to_owned(), unique_identifier.to_owned()))
        {
            Some(&seq) => self.cancel(seq, now),
            None => Ok(false),
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
