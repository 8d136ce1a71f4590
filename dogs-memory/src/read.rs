//! Reading jobs and execution records, each with its state by the store's clock.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use dogs_core::{
    stats_since, tally_minutes, Execution, ExecutionMinute, ExecutionQuery, Job, JobCounts, JobId,
    JobKind, JobQuery,
};

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

    /// Walks the jobs in scheduling order (or newest first) and stops at the end of the page.
    pub(crate) fn list_jobs(&self, query: &JobQuery, now: DateTime<Utc>) -> Vec<Job> {
        let wanted = |r: &&Record| {
            !(r.slot == Slot::Failed && r.expires_at.is_some_and(|at| at <= now))
                && query.name.as_ref().is_none_or(|n| &r.name == n)
                && query.state.is_none_or(|s| r.state(now) == s)
        };
        let page = |records: &mut dyn Iterator<Item = &Record>| -> Vec<Job> {
            records
                .filter(wanted)
                .skip(query.offset)
                .take(query.limit)
                .map(|r| self.view(r, now))
                .collect()
        };
        if query.newest_first() {
            page(&mut self.jobs.values().rev())
        } else {
            page(&mut self.jobs.values())
        }
    }

    /// A record as read, with its name's pause.
    fn view(&self, record: &Record, now: DateTime<Utc>) -> Job {
        let mut job = record.view(now);
        job.paused = self.settings.get(&job.name).is_some_and(|s| s.paused);
        job
    }

    pub(crate) fn list_recurrent(&self, now: DateTime<Utc>) -> Vec<Job> {
        let mut jobs: Vec<Job> = self
            .visible(now)
            .filter(|r| r.kind == JobKind::Recurrent)
            .map(|r| self.view(r, now))
            .collect();
        jobs.sort_by(|a, b| a.name.cmp(&b.name));
        jobs
    }

    pub(crate) fn execution_stats(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Vec<ExecutionMinute> {
        let since = stats_since(since, now);
        tally_minutes(
            self.executions
                .by_name
                .values()
                .flat_map(|records| records.values())
                .filter(|e| e.expires_at > now),
            since,
        )
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
            entry.add(record.state(now), record.run_at > now);
        }
        let mut counts = counts.into_values().collect();
        JobCounts::mark_paused(&mut counts, &self.name_settings());
        counts
    }
}
