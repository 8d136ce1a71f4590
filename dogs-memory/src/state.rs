//! The memory store's data: every job once, in exactly one index for where it stands. The
//! operations are in the files named after them (`schedule`, `claim`, `finish`, `read`,
//! `remove`), each an `impl State` block.
//!
//! Claiming never scans: per name, future jobs wait in a set ordered by run time, leased jobs in
//! a set ordered by lease end, and due jobs in a set ordered as claims take them. A claim first
//! moves what has become due (amortised O(log n) per job), then takes the first entries of the
//! requested names' sets.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use dogs_core::{Error, Execution, Job, JobId, JobKind, JobState, Lease, LeaseToken, NameSettings};
use serde_json::Value;

/// Where a job stands, which is also the index that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
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
pub(crate) struct LeaseState {
    pub(crate) token: LeaseToken,
    pub(crate) until: DateTime<Utc>,
    pub(crate) by: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) seq: u64,
    pub(crate) name: String,
    pub(crate) kind: JobKind,
    pub(crate) params: Value,
    pub(crate) priority: i32,
    pub(crate) run_at: DateTime<Utc>,
    pub(crate) unique_identifier: Option<String>,
    pub(crate) tries: u32,
    /// The current or last lease; kept after it runs out so the next claim knows it was stale.
    pub(crate) lease: Option<LeaseState>,
    /// Demoted after a stale execution: claimed after every other due job.
    pub(crate) demoted: bool,
    pub(crate) last_error: Option<String>,
    pub(crate) expires_at: Option<DateTime<Utc>>,
    pub(crate) schedule_key: Option<String>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) progress: Option<Value>,
    pub(crate) trace_context: Option<String>,
    pub(crate) slot: Slot,
}

/// The claim order of due jobs of one name: not demoted first, then priority (higher first),
/// run time, scheduling order.
pub(crate) type ReadyKey = (bool, Reverse<i32>, DateTime<Utc>, u64);

impl Record {
    pub(crate) fn ready_key(&self) -> ReadyKey {
        (self.demoted, Reverse(self.priority), self.run_at, self.seq)
    }

    pub(crate) fn id(&self) -> JobId {
        JobId::new(self.seq.to_string())
    }

    pub(crate) fn state(&self, now: DateTime<Utc>) -> JobState {
        if self.slot == Slot::Failed {
            JobState::Failed
        } else if self.slot == Slot::Leased && self.lease.as_ref().is_some_and(|l| l.until > now) {
            JobState::Running
        } else {
            JobState::Pending
        }
    }

    pub(crate) fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.state(now) == JobState::Running
    }

    /// Whether it was cancelled while it ran and the lease it had has not ended: its handler
    /// may still be stopping.
    pub(crate) fn still_stopping(&self, now: DateTime<Utc>) -> bool {
        self.slot == Slot::Failed
            && self.last_error.as_deref() == Some(dogs_core::CANCELLED_ERROR)
            && self.lease.as_ref().is_some_and(|l| l.until > now)
    }

    pub(crate) fn view(&self, now: DateTime<Utc>) -> Job {
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
            progress: self.progress.clone(),
            paused: false,
            trace_context: self.trace_context.clone(),
        }
    }
}

/// Orders execution records newest first: start time, then id, both descending.
pub(crate) type NewestFirst = (Reverse<DateTime<Utc>>, Reverse<String>);

/// Execution records, per job name, newest first, with an expiry index.
#[derive(Debug, Default)]
pub(crate) struct Executions {
    pub(crate) by_name: HashMap<String, BTreeMap<NewestFirst, Execution>>,
    pub(crate) by_id: HashMap<String, (String, DateTime<Utc>)>,
    pub(crate) expiry: BTreeSet<(DateTime<Utc>, String)>,
}

/// Everything the memory store holds.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) next_seq: u64,
    pub(crate) jobs: BTreeMap<u64, Record>,
    /// Per name, pending jobs whose run time had not come when last looked, by run time.
    pub(crate) future: HashMap<String, BTreeSet<(DateTime<Utc>, u64)>>,
    /// Per name, leased jobs by lease end (a lease may have run out since).
    pub(crate) leases: HashMap<String, BTreeSet<(DateTime<Utc>, u64)>>,
    /// Per name, due jobs in claim order.
    pub(crate) ready: HashMap<String, BTreeSet<ReadyKey>>,
    pub(crate) failed: BTreeSet<(DateTime<Utc>, u64)>,
    pub(crate) unique: HashMap<(String, String), u64>,
    pub(crate) recurrent: HashMap<String, u64>,
    pub(crate) executions: Executions,
    /// What is stored about names: paused, concurrency limits.
    pub(crate) settings: BTreeMap<String, NameSettings>,
    /// Per name, jobs cancelled while they ran, by the end of the lease they had: they count
    /// against the name's concurrency limit until then.
    pub(crate) cancelling: HashMap<String, BTreeSet<(DateTime<Utc>, u64)>>,
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

pub(crate) fn parse_id(id: &JobId) -> Option<u64> {
    id.as_str().parse().ok()
}

pub(crate) fn lock_lost(lease: &Lease) -> Error {
    Error::lock_lost(&lease.job_id)
}

impl State {
    /// Puts a record into the index its slot names.
    pub(crate) fn index(&mut self, seq: u64) -> Effects {
        let Some(record) = self.jobs.get(&seq) else {
            return Effects::default();
        };
        let mut effects = Effects::default();
        match record.slot {
            Slot::Future => {
                self.future
                    .entry(record.name.clone())
                    .or_default()
                    .insert((record.run_at, seq));
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
                    self.leases
                        .entry(record.name.clone())
                        .or_default()
                        .insert((lease.until, seq));
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
    pub(crate) fn unindex(&mut self, seq: u64) {
        let Some(record) = self.jobs.get(&seq) else {
            return;
        };
        match record.slot {
            Slot::Future => {
                remove_entry(&mut self.future, &record.name, &(record.run_at, seq));
            }
            Slot::Ready => {
                remove_entry(&mut self.ready, &record.name, &record.ready_key());
            }
            Slot::Leased => {
                if let Some(lease) = &record.lease {
                    remove_entry(&mut self.leases, &record.name, &(lease.until, seq));
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
    pub(crate) fn update(&mut self, seq: u64, change: impl FnOnce(&mut Record)) -> Effects {
        self.unindex(seq);
        if let Some(record) = self.jobs.get_mut(&seq) {
            change(record);
        }
        self.index(seq)
    }

    pub(crate) fn remove(&mut self, seq: u64) {
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
    pub(crate) fn pending_slot(run_at: DateTime<Utc>, now: DateTime<Utc>) -> Slot {
        if run_at <= now {
            Slot::Ready
        } else {
            Slot::Future
        }
    }

    pub(crate) fn free_unique(&mut self, seq: u64) {
        if let Some(record) = self.jobs.get(&seq) {
            if let Some(unique) = &record.unique_identifier {
                let key = (record.name.clone(), unique.clone());
                if self.unique.get(&key) == Some(&seq) {
                    self.unique.remove(&key);
                }
            }
        }
    }
}

/// Removes `entry` from `name`'s set of `sets`, and the set when it is left empty.
fn remove_entry<K: Ord>(sets: &mut HashMap<String, BTreeSet<K>>, name: &str, entry: &K) {
    if let Some(set) = sets.get_mut(name) {
        set.remove(entry);
        if set.is_empty() {
            sets.remove(name);
        }
    }
}
