//! Reading jobs and execution records, each with its state by the store's clock.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use dogs_core::{Execution, ExecutionQuery, Job, JobCounts, JobId, JobQuery, JobState};

use crate::state::{parse_id, Record, Slot, State};

impl State {
    pub(crate) fn executions(&self, query: &ExecutionQuery, now: DateTime<Utc>) -> Vec<Execution> {
        let Some(records) = self.executions.by_name.get(&query.name) else {
            return Vec::new();
        };
        records
            .values()
            .filter(|e| e.expires_at > now)
            .filter(|e| query.job_id.as_ref().is_none_or(|id| &e.job_id == id))
            .skip(query.offset)
            .take(query.limit)
            .cloned()
            .collect()
    }

    pub(crate) fn get_job(&self, id: &JobId, now: DateTime<Utc>) -> Option<Job> {
        let record = self.jobs.get(&parse_id(id)?)?;
        if record.slot == Slot::Failed && record.expires_at.is_some_and(|at| at <= now) {
            return None;
        }
        Some(self.view(record, now))
    }

    fn visible(&self, now: DateTime<Utc>) -> impl Iterator<Item = &Record> {
        self.jobs
            .values()
            .filter(move |r| !(r.slot == Slot::Failed && r.expires_at.is_some_and(|at| at <= now)))
    }

    pub(crate) fn list_jobs(&self, query: &JobQuery, now: DateTime<Utc>) -> Vec<Job> {
        let mut records: Vec<&Record> = self
            .visible(now)
            .filter(|r| query.name.as_ref().is_none_or(|n| &r.name == n))
            .filter(|r| query.state.is_none_or(|s| r.state(now) == s))
            .collect();
        records.sort_by_key(|r| match r.state(now) {
            JobState::Failed => (1, Reverse(0), DateTime::<Utc>::MIN_UTC, Reverse(r.seq)),
            _ => (0, Reverse(r.priority), r.run_at, Reverse(u64::MAX - r.seq)),
        });
        records
            .into_iter()
            .skip(query.offset)
            .take(query.limit)
            .map(|r| self.view(r, now))
            .collect()
    }

    /// A record as read, with its name's pause.
    fn view(&self, record: &Record, now: DateTime<Utc>) -> Job {
        let mut job = record.view(now);
        job.paused = self.settings.get(&job.name).is_some_and(|s| s.paused);
        job
    }

    pub(crate) fn count_jobs(&self, now: DateTime<Utc>) -> Vec<JobCounts> {
        let mut counts: BTreeMap<&str, JobCounts> = BTreeMap::new();
        for record in self.visible(now) {
            let entry = counts
                .entry(record.name.as_str())
                .or_insert_with(|| JobCounts {
                    name: record.name.clone(),
                    ..JobCounts::default()
                });
            match record.state(now) {
                JobState::Pending => entry.pending += 1,
                JobState::Running => entry.running += 1,
                JobState::Failed => entry.failed += 1,
            }
        }
        let mut counts = counts.into_values().collect();
        JobCounts::mark_paused(&mut counts, &self.name_settings());
        counts
    }
}
