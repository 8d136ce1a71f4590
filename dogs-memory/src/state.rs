//! The memory store's data: every job once, in exactly one index for where it stands.
//!
//! Claiming never scans: future jobs wait in a set ordered by run time, leased jobs in a set
//! ordered by lease end, and due jobs in one set per name ordered as claims take them. A claim
//! first moves what has become due (amortised O(log n) per job), then takes the first entries of
//! the requested names' sets.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dogs_core::{
    add_duration, truncate_millis, ClaimRequest, ClaimedJob, Completion, Error, ErrorKind,
    Execution, ExecutionQuery, Job, JobCounts, JobId, JobKind, JobQuery, JobState, Lease,
    LeaseToken, NewJob, PruneReport, RecurrentRegistration, Result, Scheduled,
};
use serde_json::Value;

/// Where a job stands, which is also the index that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// In `future`: pending, run time not yet reached when last looked.
    Future,
    /// In `ready`: due, claimable.
    Ready,
    /// In `leases`: leased (the lease may have run out since it was last looked at).
    Leased,
    /// In `failed`: failed for good, waiting for its retention to end.
    Failed,
}

#[derive(Debug, Clone)]
struct LeaseState {
    token: LeaseToken,
    until: DateTime<Utc>,
    by: String,
}

#[derive(Debug, Clone)]
struct Record {
    seq: u64,
    name: String,
    kind: JobKind,
    params: Value,
    priority: i32,
    run_at: DateTime<Utc>,
    unique_identifier: Option<String>,
    tries: u32,
    /// The current or last lease; kept after it runs out so the next claim knows it was stale.
    lease: Option<LeaseState>,
    /// Demoted after a stale execution: claimed after every other due job.
    demoted: bool,
    last_error: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    schedule_key: Option<String>,
    created_at: DateTime<Utc>,
    slot: Slot,
}

/// The claim order of due jobs of one name: not demoted first, then priority (higher first),
/// run time, scheduling order.
type ReadyKey = (bool, Reverse<i32>, DateTime<Utc>, u64);

impl Record {
    fn ready_key(&self) -> ReadyKey {
        (self.demoted, Reverse(self.priority), self.run_at, self.seq)
    }

    fn id(&self) -> JobId {
        JobId::new(self.seq.to_string())
    }

    fn state(&self, now: DateTime<Utc>) -> JobState {
        if self.slot == Slot::Failed {
            JobState::Failed
        } else if self.slot == Slot::Leased && self.lease.as_ref().is_some_and(|l| l.until > now) {
            JobState::Running
        } else {
            JobState::Pending
        }
    }

    fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.state(now) == JobState::Running
    }

    fn view(&self, now: DateTime<Utc>) -> Job {
        Job {
            id: self.id(),
            name: self.name.clone(),
            kind: self.kind,
            params: self.params.clone(),
            priority: self.priority,
            run_at: self.run_at,
            unique_identifier: self.unique_identifier.clone(),
            tries: self.tries,
            state: self.state(now),
            locked_until: self.lease.as_ref().map(|l| l.until),
            locked_by: self.lease.as_ref().map(|l| l.by.clone()),
            last_error: self.last_error.clone(),
            expires_at: self.expires_at,
            schedule_key: self.schedule_key.clone(),
            created_at: self.created_at,
        }
    }
}

/// Orders execution records newest first: start time, then id, both descending.
type NewestFirst = (Reverse<DateTime<Utc>>, Reverse<String>);

/// Execution records, per job name, newest first, with an expiry index.
#[derive(Debug, Default)]
struct Executions {
    by_name: HashMap<String, BTreeMap<NewestFirst, Execution>>,
    by_id: HashMap<String, (String, DateTime<Utc>)>,
    expiry: BTreeSet<(DateTime<Utc>, String)>,
}

/// Everything the memory store holds.
#[derive(Debug, Default)]
pub(crate) struct State {
    next_seq: u64,
    jobs: BTreeMap<u64, Record>,
    future: BTreeSet<(DateTime<Utc>, u64)>,
    leases: BTreeSet<(DateTime<Utc>, u64)>,
    ready: HashMap<String, BTreeSet<ReadyKey>>,
    failed: BTreeSet<(DateTime<Utc>, u64)>,
    unique: HashMap<(String, String), u64>,
    recurrent: HashMap<String, u64>,
    executions: Executions,
}

/// What a change did that the store must tell others about.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Effects {
    /// A job became claimable now: wake idle workers.
    pub(crate) due_now: bool,
    /// A job will become claimable at this instant (a future run time or a lease end).
    pub(crate) due_at: Option<DateTime<Utc>>,
}

impl Effects {
    pub(crate) fn merge(&mut self, other: Effects) {
        self.due_now |= other.due_now;
        self.due_at = match (self.due_at, other.due_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

fn parse_id(id: &JobId) -> Option<u64> {
    id.as_str().parse().ok()
}

fn lock_lost(lease: &Lease) -> Error {
    Error::lock_lost(&lease.job_id)
}

impl State {
    /// Puts a record into the index its slot names.
    fn index(&mut self, seq: u64) -> Effects {
        let Some(record) = self.jobs.get(&seq) else {
            return Effects::default();
        };
        let mut effects = Effects::default();
        match record.slot {
            Slot::Future => {
                self.future.insert((record.run_at, seq));
                effects.due_at = Some(record.run_at);
            }
            Slot::Ready => {
                self.ready
                    .entry(record.name.clone())
                    .or_default()
                    .insert(record.ready_key());
                effects.due_now = true;
            }
            Slot::Leased => {
                if let Some(lease) = &record.lease {
                    self.leases.insert((lease.until, seq));
                    effects.due_at = Some(lease.until);
                }
            }
            Slot::Failed => {
                if let Some(expires_at) = record.expires_at {
                    self.failed.insert((expires_at, seq));
                }
            }
        }
        effects
    }

    /// Takes a record out of the index its slot names.
    fn unindex(&mut self, seq: u64) {
        let Some(record) = self.jobs.get(&seq) else {
            return;
        };
        match record.slot {
            Slot::Future => {
                self.future.remove(&(record.run_at, seq));
            }
            Slot::Ready => {
                let key = record.ready_key();
                if let Some(set) = self.ready.get_mut(&record.name) {
                    set.remove(&key);
                    if set.is_empty() {
                        let name = record.name.clone();
                        self.ready.remove(&name);
                    }
                }
            }
            Slot::Leased => {
                if let Some(lease) = &record.lease {
                    self.leases.remove(&(lease.until, seq));
                }
            }
            Slot::Failed => {
                if let Some(expires_at) = record.expires_at {
                    self.failed.remove(&(expires_at, seq));
                }
            }
        }
    }

    /// Re-files a record after `change`, keeping every index right.
    fn update(&mut self, seq: u64, change: impl FnOnce(&mut Record)) -> Effects {
        self.unindex(seq);
        if let Some(record) = self.jobs.get_mut(&seq) {
            change(record);
        }
        self.index(seq)
    }

    fn remove(&mut self, seq: u64) {
        self.unindex(seq);
        if let Some(record) = self.jobs.remove(&seq) {
            if let Some(unique) = record.unique_identifier {
                let key = (record.name.clone(), unique);
                if self.unique.get(&key) == Some(&seq) {
                    self.unique.remove(&key);
                }
            }
            if self.recurrent.get(&record.name) == Some(&seq) {
                self.recurrent.remove(&record.name);
            }
        }
    }

    /// The slot for a pending job due at `run_at`.
    fn pending_slot(run_at: DateTime<Utc>, now: DateTime<Utc>) -> Slot {
        if run_at <= now {
            Slot::Ready
        } else {
            Slot::Future
        }
    }

    /// Moves jobs that have become due or whose lease ran out to the ready sets (the latter
    /// demoted), and drops failed jobs past their retention.
    fn promote(&mut self, now: DateTime<Utc>) {
        while let Some(&(run_at, seq)) = self.future.first() {
            if run_at > now {
                break;
            }
            self.update(seq, |r| r.slot = Slot::Ready);
        }
        while let Some(&(until, seq)) = self.leases.first() {
            if until > now {
                break;
            }
            // Its execution went stale: it waits behind every other due job.
            self.update(seq, |r| {
                r.slot = Slot::Ready;
                r.demoted = true;
            });
        }
        while let Some(&(expires_at, seq)) = self.failed.first() {
            if expires_at > now {
                break;
            }
            self.remove(seq);
        }
    }

    pub(crate) fn schedule(&mut self, job: NewJob, now: DateTime<Utc>) -> (Scheduled, Effects) {
        if let Some(unique) = &job.unique_identifier {
            if let Some(&seq) = self.unique.get(&(job.name.clone(), unique.clone())) {
                return (
                    Scheduled::Duplicate(JobId::new(seq.to_string())),
                    Effects::default(),
                );
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
                slot: Slot::Ready,
            },
        );
        (JobId::new(seq.to_string()), self.index(seq))
    }

    pub(crate) fn claim(
        &mut self,
        request: &ClaimRequest,
        now: DateTime<Utc>,
    ) -> (Vec<ClaimedJob>, Effects) {
        self.promote(now);
        let mut claimed = Vec::new();
        let mut effects = Effects::default();
        while claimed.len() < request.limit {
            let best = request
                .names
                .iter()
                .filter_map(|n| {
                    let key = self.ready.get(&n.name)?.first()?;
                    Some((*key, n.lock_time))
                })
                .min_by_key(|(key, _)| *key);
            let Some(((_, _, _, seq), lock_time)) = best else {
                break;
            };
            let until = truncate_millis(add_duration(now, lock_time));
            let mut was_stale = false;
            effects.merge(self.update(seq, |record| {
                was_stale = record.lease.is_some() || record.demoted;
                record.demoted = false;
                record.tries = record.tries.saturating_add(1);
                record.lease = Some(LeaseState {
                    token: LeaseToken::generate(),
                    until,
                    by: request.worker_id.clone(),
                });
                record.slot = Slot::Leased;
            }));
            if let Some(record) = self.jobs.get(&seq) {
                if let Some(lease) = &record.lease {
                    claimed.push(ClaimedJob {
                        job: record.view(now),
                        lease: Lease {
                            job_id: record.id(),
                            token: lease.token.clone(),
                        },
                        locked_until: until,
                        claimed_at: now,
                        was_stale,
                    });
                }
            }
        }
        (claimed, effects)
    }

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
                record.demoted = true;
                record.run_at = now;
                record.slot = Slot::Ready;
            }),
            Completion::Release => self.update(seq, |record| {
                record.lease = None;
                record.tries = record.tries.saturating_sub(1);
                record.slot = Self::pending_slot(record.run_at, now);
            }),
        };
        Ok(effects)
    }

    fn free_unique(&mut self, seq: u64) {
        if let Some(record) = self.jobs.get(&seq) {
            if let Some(unique) = &record.unique_identifier {
                let key = (record.name.clone(), unique.clone());
                if self.unique.get(&key) == Some(&seq) {
                    self.unique.remove(&key);
                }
            }
        }
    }

    pub(crate) fn record_execution(&mut self, execution: &Execution, now: DateTime<Utc>) {
        self.prune_executions(now);
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

    fn prune_executions(&mut self, now: DateTime<Utc>) -> u64 {
        let executions = &mut self.executions;
        let mut removed = 0;
        while let Some((expires_at, id)) = executions.expiry.first().cloned() {
            if expires_at > now {
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
        Some(record.view(now))
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
            .map(|r| r.view(now))
            .collect()
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
        counts.into_values().collect()
    }

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

    pub(crate) fn prune(&mut self, now: DateTime<Utc>) -> PruneReport {
        let before = self.failed.len();
        while let Some(&(expires_at, seq)) = self.failed.first() {
            if expires_at > now {
                break;
            }
            self.remove(seq);
        }
        PruneReport {
            jobs: (before - self.failed.len()) as u64,
            executions: self.prune_executions(now),
        }
    }

    /// The first instant after `after` at which a future job becomes due or a lease ends.
    pub(crate) fn next_due_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let range = (Bound::Excluded((after, u64::MAX)), Bound::Unbounded);
        let future = self.future.range(range).next().map(|(at, _)| *at);
        let lease = self.leases.range(range).next().map(|(at, _)| *at);
        match (future, lease) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
