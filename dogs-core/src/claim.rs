//! Claiming jobs, the lease that fences every write on a claimed job, and how a claimed job ends.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::job::{Job, JobId, RunAt};

/// The token of one lease, handed out by [`JobStore::claim`](crate::JobStore::claim).
///
/// Every write on a claimed job carries it; once the job has been claimed again (or released,
/// finished or removed) the token is no longer current and the write changes nothing.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LeaseToken(String);

impl LeaseToken {
    /// A fresh random token (32 hex digits of [`random_id`](crate::random_id)).
    pub fn generate() -> Self {
        LeaseToken(crate::job::random_id())
    }

    /// Wraps a stored token.
    pub fn new(token: impl Into<String>) -> Self {
        LeaseToken(token.into())
    }

    /// The token as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeaseToken({})", self.0)
    }
}

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A claimed job's id with the token of its lease.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The claimed job.
    pub job_id: JobId,
    /// The lease's token.
    pub token: LeaseToken,
}

/// One job name a claimer runs, with the lease it wants on such jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimName {
    /// The job name.
    pub name: String,
    /// How long a lease on a job of this name lasts.
    pub lock_time: Duration,
    /// At most this many jobs of this name in this claim (a worker set's per-name limit);
    /// `None` for no cap beyond the request's limit.
    pub max: Option<usize>,
}

impl ClaimName {
    /// The most jobs of this name a claim of `limit` may lease: `limit`, cut to `max`.
    pub fn cap(&self, limit: usize) -> usize {
        self.max.map_or(limit, |max| max.min(limit))
    }
}

/// What [`JobStore::claim`](crate::JobStore::claim) looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The job names this claimer runs, each with its lease length.
    pub names: Vec<ClaimName>,
    /// At most this many jobs.
    pub limit: usize,
    /// Recorded as the lease holder.
    pub worker_id: String,
}

impl ClaimRequest {
    /// A claim of up to `limit` jobs of `names`, each leased for `lock_time`.
    pub fn new<I, N>(names: I, lock_time: Duration, limit: usize) -> Self
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        ClaimRequest {
            names: names
                .into_iter()
                .map(|name| ClaimName {
                    name: name.into(),
                    lock_time,
                    max: None,
                })
                .collect(),
            limit,
            worker_id: String::new(),
        }
    }

    /// Sets the worker id recorded with the leases.
    pub fn worker_id(mut self, worker_id: impl Into<String>) -> Self {
        self.worker_id = worker_id.into();
        self
    }

    /// Checks the request as every store does before claiming: each lease longer than zero and
    /// at most [`MAX_DURATION`](crate::MAX_DURATION); anything else is `InvalidInput`.
    pub fn validate(&self) -> crate::Result<()> {
        for name in &self.names {
            crate::validate_lock_time(name.lock_time).map_err(|e| {
                crate::Error::invalid_input(format!("job '{}': {}", name.name, e.message()))
            })?;
        }
        Ok(())
    }

    /// The lease length for jobs of `name`, if it is one of the claimed names.
    pub fn lock_time_of(&self, name: &str) -> Option<Duration> {
        self.names
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.lock_time)
    }
}

/// What a claim returned: the jobs it leased, and when to look again.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Claimed {
    /// The leased jobs, in claim order.
    pub jobs: Vec<ClaimedJob>,
    /// When a job of the requested names that this claim did not return becomes claimable, by
    /// the store's clock: at or before [`now`](Claimed::now) when more are due already (the
    /// limit was reached, or other claimers won some of them), later when the earliest is due
    /// then (a run time, or the end of a lease), `None` when there is no job of those names.
    pub next_due: Option<DateTime<Utc>>,
    /// The store's clock at the claim.
    pub now: DateTime<Utc>,
}

impl Claimed {
    /// A claim that leased `jobs` at `now`, the limit reached: more may be due.
    pub fn full(jobs: Vec<ClaimedJob>, now: DateTime<Utc>) -> Self {
        Claimed {
            jobs,
            next_due: Some(now),
            now,
        }
    }

    /// Whether more jobs are due now than this claim returned.
    pub fn more_due(&self) -> bool {
        self.next_due.is_some_and(|at| at <= self.now)
    }
}

/// A job leased to the caller by [`JobStore::claim`](crate::JobStore::claim).
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    /// The job as it is after the claim (`tries` already counts this claim).
    pub job: Job,
    /// The lease to hand back with every write on the job.
    pub lease: Lease,
    /// When the lease ends, by the store's clock.
    pub locked_until: DateTime<Utc>,
    /// The store's clock at the claim.
    pub claimed_at: DateTime<Utc>,
    /// Whether the previous execution's lease ran out instead of being released.
    pub was_stale: bool,
}

/// How a claimed job ends, handed to [`JobStore::complete`](crate::JobStore::complete).
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// Removes the job (an event job that succeeded, or one that is dismissed without a trace).
    Remove,
    /// Releases the lease and sets the next run.
    Reschedule {
        /// The next run time (relative times count from the store's clock).
        run_at: RunAt,
        /// The priority from now on; `None` keeps the current one.
        priority: Option<i32>,
        /// Whether `tries` goes back to 0.
        reset_tries: bool,
    },
    /// Fails the job for good: never claimed again, kept visible with its error, then removed.
    Fail {
        /// Why it failed.
        error: String,
        /// How long it stays visible.
        retain_for: Duration,
    },
    /// The execution went stale: release the lease and make the job due now, after every other
    /// due job; the next claim reports `was_stale` and restores the job's own priority.
    Demote,
    /// The execution was cancelled (the workers shut down): release the lease so another worker
    /// can claim the job at once, and give back the try this claim counted.
    Release,
    /// The handler asked to run again later without counting a failure: release the lease,
    /// set the run time, and give back the try this claim counted.
    Snooze {
        /// The next run time (relative times count from the store's clock).
        run_at: RunAt,
    },
}

impl Completion {
    /// Checks the completion as every store does before writing it: a run time within years 1
    /// to 9999 (a delay of at most [`MAX_DURATION`](crate::MAX_DURATION)), a retention of at most
    /// `MAX_DURATION`; anything else is `InvalidInput`.
    pub fn validate(&self) -> crate::Result<()> {
        match self {
            Completion::Reschedule { run_at, .. } | Completion::Snooze { run_at } => {
                crate::limits::check_run_at(*run_at)
            }
            Completion::Fail { retain_for, .. } if *retain_for > crate::MAX_DURATION => {
                Err(crate::Error::invalid_input(format!(
                    "a failed job's retention is {retain_for:?}, longer than 100 years"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// One claimed job's end, as handed to [`JobStore::finish_many`](crate::JobStore::finish_many).
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    /// The job's lease.
    pub lease: Lease,
    /// How it ends.
    pub completion: Completion,
    /// Its execution record, if one is kept.
    pub execution: Option<crate::Execution>,
}

/// How long a claimed job whose record cannot be read stays visible as failed (7 days, the
/// default failed-job retention).
pub const UNREADABLE_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// What a store does with a job it claimed but cannot read (missing or wrongly typed fields,
/// written by another version or by hand): logs the error and fails the job for good through
/// [`complete`](crate::JobStore::complete), with the reason as its error, so it is never claimed
/// again and stays visible for [`UNREADABLE_RETENTION`]. The claim goes on with the other jobs
/// whatever happens here: when failing the record meets an error too, that is logged, and the
/// record is failed by the claim that takes it once its lease ends.
pub async fn fail_unreadable<S: crate::JobStore + ?Sized>(
    store: &S,
    lease: &Lease,
    error: &crate::Error,
) {
    tracing::error!(
        job.id = %lease.job_id,
        error = %error,
        "a claimed job record cannot be read; it is failed for good"
    );
    let completion = Completion::Fail {
        error: format!("unreadable record: {error}"),
        retain_for: UNREADABLE_RETENTION,
    };
    match store.complete(lease, completion).await {
        Ok(()) => {}
        Err(e) if e.kind() == crate::ErrorKind::LockLost => {}
        Err(e) => tracing::error!(
            job.id = %lease.job_id,
            error = %e,
            "failing an unreadable record failed; it is tried again when its lease ends"
        ),
    }
}
