//! Scheduling: event jobs, and the one record of each recurrent job.

use chrono::{DateTime, Utc};
use dogs_core::{
    truncate_millis, JobId, JobKind, NewJob, OnDuplicate, RecurrentRegistration, Scheduled,
};
use serde_json::Value;

use crate::state::{Effects, Record, Slot, State};

impl State {
    pub(crate) fn schedule(&mut self, job: NewJob, now: DateTime<Utc>) -> (Scheduled, Effects) {
        if let Some(unique) = &job.unique_identifier {
            if let Some(&seq) = self.unique.get(&(job.name.clone(), unique.clone())) {
                let id = JobId::new(seq.to_string());
                let running = self.jobs.get(&seq).is_some_and(|r| r.is_live(now));
                if job.on_duplicate == OnDuplicate::Keep || running {
                    return (Scheduled::Duplicate(id), Effects::default());
                }
                let run_at = truncate_millis(job.run_at.resolve(now));
                let effects = self.update(seq, |record| {
                    // A lease that ran out is no longer its holder's: the job is another now.
                    record.lease = None;
                    record.progress = None;
                    record.params = job.params;
                    record.priority = job.priority;
                    record.run_at = run_at;
                    record.slot = Self::pending_slot(run_at, now);
                });
                return (Scheduled::Replaced(id), effects);
            }
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        let run_at = truncate_millis(job.run_at.resolve(now));
        if let Some(unique) = &job.unique_identifier {
            self.unique.insert((job.name.clone(), unique.clone()), seq);
        }
        self.jobs.insert(
            seq,
            Record {
                seq,
                name: job.name,
                kind: JobKind::Event,
                params: job.params,
                priority: job.priority,
                run_at,
                unique_identifier: job.unique_identifier,
                tries: 0,
                lease: None,
                demoted: false,
                last_error: None,
                expires_at: None,
                schedule_key: None,
                created_at: now,
                progress: None,
                trace_context: job.trace_context,
                slot: Self::pending_slot(run_at, now),
            },
        );
        (
            Scheduled::Created(JobId::new(seq.to_string())),
            self.index(seq),
        )
    }

    pub(crate) fn register_recurrent(
        &mut self,
        job: RecurrentRegistration,
        now: DateTime<Utc>,
    ) -> (JobId, Effects) {
        if let Some(&seq) = self.recurrent.get(&job.name) {
            let effects = self.update(seq, |record| {
                record.priority = job.priority;
                if record.schedule_key.as_deref() != Some(job.schedule_key.as_str()) {
                    record.schedule_key = Some(job.schedule_key);
                    record.run_at = truncate_millis(job.next_run_at);
                    if record.slot != Slot::Leased {
                        record.slot = Self::pending_slot(record.run_at, now);
                    }
                }
            });
            return (JobId::new(seq.to_string()), effects);
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        self.recurrent.insert(job.name.clone(), seq);
        self.jobs.insert(
            seq,
            Record {
                seq,
                name: job.name,
                kind: JobKind::Recurrent,
                params: Value::Null,
                priority: job.priority,
                run_at: now,
                unique_identifier: None,
                tries: 0,
                lease: None,
                demoted: false,
                last_error: None,
                expires_at: None,
                schedule_key: Some(job.schedule_key),
                created_at: now,
                progress: None,
                trace_context: None,
                slot: Slot::Ready,
            },
        );
        (JobId::new(seq.to_string()), self.index(seq))
    }
}
