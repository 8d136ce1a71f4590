//! Helpers for testing your own jobs: run what is due inline, wait for a job's execution or its
//! outcome, and look at what was scheduled, with no worker set or timing to manage in the test.
//!
//! ```
//! use std::time::Duration;
//! use dogs_core::prelude::*;
//! use dogs_core::testing::{drain, scheduled_jobs, wait_for_execution};
//! use dogs_memory::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> dogs_core::Result<()> {
//! let store = MemoryStore::new();
//! let welcome = EventJob::new("welcome", |to: String, _ctx: JobContext| async move {
//!     Ok(format!("sent to {to}"))
//! });
//! let id = schedule_job(&store, &welcome, &"ada@example.com".to_owned(), ScheduleOptions::now())
//!     .await?;
//! assert_eq!(scheduled_jobs(&store, "welcome").await?.len(), 1);
//!
//! let ran = drain(&store, [welcome.definition()]).await?;
//! assert_eq!(ran.len(), 1);
//! assert_eq!(ran[0].status, ExecutionStatus::Success);
//!
//! let record = wait_for_execution(&store, "welcome", &id, Duration::from_secs(5)).await?;
//! assert_eq!(record.result, Some(serde_json::json!("sent to ada@example.com")));
//! assert!(scheduled_jobs(&store, "welcome").await?.is_empty());
//! # Ok(())
//! # }
//! ```

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::definition::JobDefinition;
use crate::error::{Error, ErrorKind, Result};
use crate::execution::ExecutionStatus::{Cancelled, Failed, Stale, Success};
use crate::execution::{Execution, ExecutionQuery};
use crate::job::{Job, JobId, JobKind, JobQuery, JobState};
use crate::store::JobStore;
use crate::worker::{start_workers, WorkerOptions};

/// How long [`drain`] runs at most before it gives up with `TimedOut`.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(60);

/// How often the helpers look at the store while they wait.
const LOOK_EVERY: Duration = Duration::from_millis(10);

/// Runs every due job of `jobs` in this process until none is due or running, and returns the
/// execution records of what ran, oldest first.
///
/// Jobs the handlers schedule to run now are run too; a job retried later, snoozed or
/// scheduled ahead is left for later (as its record says). Records are only kept for
/// definitions whose `save_executions_for` is not zero. Gives up with `TimedOut` after
/// [`DRAIN_DEADLINE`] (a job that keeps rescheduling itself at once).
pub async fn drain<S, I>(store: &S, jobs: I) -> Result<Vec<Execution>>
where
    S: JobStore + Clone,
    I: IntoIterator,
    I::Item: Into<JobDefinition>,
{
    let definitions: Vec<JobDefinition> = jobs.into_iter().map(Into::into).collect();
    let names: Vec<String> = definitions.iter().map(|d| d.name().to_owned()).collect();
    let began = store.now().await?;
    let options = WorkerOptions {
        workers_count: 1,
        prefetch: 0,
        poll_interval: Duration::from_millis(20),
        cooldown_period: Duration::ZERO,
        prune_interval: None,
        ..WorkerOptions::default()
    };
    let workers = start_workers(store.clone(), definitions, options).await?;
    let deadline = crate::worker::later(Instant::now(), DRAIN_DEADLINE);
    let drained = loop {
        match nothing_left(store, &names).await {
            Ok(true) => break Ok(()),
            Ok(false) if Instant::now() >= deadline => {
                break Err(Error::new(
                    ErrorKind::TimedOut,
                    format!("jobs were still due after draining for {DRAIN_DEADLINE:?}"),
                ))
            }
            Ok(false) => tokio::time::sleep(LOOK_EVERY).await,
            Err(e) => break Err(e),
        }
    };
    workers.stop().await;
    drained?;
    let mut ran = Vec::new();
    for name in &names {
        ran.extend(records_since(store, name, began).await?);
    }
    ran.sort_by(|a, b| (a.started_at, &a.execution_id).cmp(&(b.started_at, &b.execution_id)));
    Ok(ran)
}

/// Whether no job of `names` is due or running.
async fn nothing_left<S: JobStore + ?Sized>(store: &S, names: &[String]) -> Result<bool> {
    let now = store.now().await?;
    for name in names {
        for job in all_jobs(store, name, None).await? {
            match job.state {
                JobState::Running => return Ok(false),
                JobState::Pending if job.run_at <= now && !job.paused => return Ok(false),
                _ => {}
            }
        }
    }
    Ok(true)
}

/// Every execution record of `name` that started at `since` or later.
async fn records_since<S: JobStore + ?Sized>(
    store: &S,
    name: &str,
    since: DateTime<Utc>,
) -> Result<Vec<Execution>> {
    let mut records = Vec::new();
    let mut offset = 0;
    loop {
        let page = store
            .executions(&ExecutionQuery::name(name).limit(500).offset(offset))
            .await?;
        let full = page.len() == 500;
        offset += page.len();
        let older = page.iter().any(|r| r.started_at < since);
        records.extend(page.into_iter().filter(|r| r.started_at >= since));
        if !full || older {
            return Ok(records);
        }
    }
}

/// Every job of `name`, in `state` when given, in listing order.
async fn all_jobs<S: JobStore + ?Sized>(
    store: &S,
    name: &str,
    state: Option<JobState>,
) -> Result<Vec<Job>> {
    let mut jobs = Vec::new();
    loop {
        let mut query = JobQuery::name(name).limit(500).offset(jobs.len());
        query.state = state;
        let page = store.list_jobs(&query).await?;
        let full = page.len() == 500;
        jobs.extend(page);
        if !full {
            return Ok(jobs);
        }
    }
}

/// Waits until job `id` of `name` has an execution record and is not running, and returns the
/// record of its latest execution; `TimedOut` after `deadline`. `id` is what
/// [`schedule_job`](crate::schedule_job) returned (a [`Scheduled`](crate::Scheduled)) or a
/// [`JobId`]: `wait_for_execution(&store, "welcome", &scheduled, deadline)`.
///
/// This is how a test awaits a job that workers run (in this process or another): no polling
/// of `get_job` in the test. A job that only [`drain`] runs needs no wait: `drain` returns
/// its records.
///
/// A job retried at once may run again after the record is returned: the record is of one
/// execution, the job's outcome so far; [`wait_for_outcome`] waits through the retries.
pub async fn wait_for_execution<S: JobStore + ?Sized>(
    store: &S,
    name: &str,
    id: impl AsRef<JobId>,
    deadline: Duration,
) -> Result<Execution> {
    let id = id.as_ref();
    let timed_out = || format!("job {id} of '{name}' had no execution within {deadline:?}");
    wait_until(deadline, timed_out, || async move {
        let running = store
            .get_job(id)
            .await?
            .is_some_and(|job| job.state == JobState::Running);
        if running {
            return Ok(None);
        }
        latest_record(store, name, id).await
    })
    .await
}

/// Waits until event job `id` of `name` is done, and returns the record of its last
/// execution: it succeeded (and is gone), or it failed for good (dismissed, cancelled, or out
/// of tries). Retries in between are waited through: this is the job's outcome, where
/// [`wait_for_execution`] returns as soon as one try has ended. `TimedOut` after `deadline`,
/// also for a job that keeps being retried or snoozed past it, a pending job cancelled (it
/// leaves no record), and a job whose records are not kept (`save_executions_for` zero); a
/// recurrent job, which has no outcome, is `InvalidInput`.
///
/// ```
/// use std::time::Duration;
/// use dogs_core::prelude::*;
/// use dogs_memory::MemoryStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error> {
/// let store = MemoryStore::new();
/// let flaky = EventJob::new("flaky", |_: (), ctx: JobContext| async move {
///     if ctx.tries() == 1 {
///         return Err("busy".into());
///     }
///     Ok("done")
/// })
/// .on_error(|_| ErrorAction::RetryIn(Duration::from_millis(10)));
/// let options = WorkerOptions::new().poll_interval(Duration::from_millis(10));
/// let workers = start_workers(store.clone(), [flaky.definition()], options).await?;
/// let id = schedule_job(&store, &flaky, &(), ScheduleOptions::now()).await?;
///
/// let record = testing::wait_for_outcome(&store, "flaky", &id, Duration::from_secs(5)).await?;
/// assert_eq!((record.status, record.tries), (ExecutionStatus::Success, 2));
/// workers.stop().await;
/// # Ok(())
/// # }
/// ```
pub async fn wait_for_outcome<S: JobStore + ?Sized>(
    store: &S,
    name: &str,
    id: impl AsRef<JobId>,
    deadline: Duration,
) -> Result<Execution> {
    let id = id.as_ref();
    let timed_out =
        || format!("job {id} of '{name}' had no final execution record within {deadline:?}");
    // The latest record seen while the job was pending: an earlier try's or round's (before
    // a retry), never the outcome to come.
    let before_pending: Mutex<Option<String>> = Mutex::new(None);
    let before_pending = &before_pending;
    wait_until(deadline, timed_out, || async move {
        let job = store.get_job(id).await?;
        if job
            .as_ref()
            .is_some_and(|job| job.kind == JobKind::Recurrent)
        {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "job {id} of '{name}' is a recurrent job, which has no outcome: \
                     wait_for_execution waits for one run"
                ),
            ));
        }
        let latest = latest_record(store, name, id).await?;
        let seen = |record: &Execution| {
            let before = before_pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            before.as_deref() == Some(record.execution_id.as_str())
        };
        // A store may write the last record just after the job's end: until it shows, the
        // latest record is of an earlier try, which these checks leave out.
        Ok(match job {
            None => latest.filter(|record| {
                matches!(record.status, Success | Failed | Cancelled) && !seen(record)
            }),
            // Failing or cancelling a job keeps its tries: the last record is of that try.
            Some(job) if job.state == JobState::Failed => latest.filter(|record| {
                record.tries == job.tries && matches!(record.status, Failed | Cancelled | Stale)
            }),
            Some(job) => {
                if job.state == JobState::Pending {
                    *before_pending
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) =
                        latest.map(|record| record.execution_id);
                }
                None
            }
        })
    })
    .await
}

/// The record of job `id`'s latest execution, if it has one.
async fn latest_record<S: JobStore + ?Sized>(
    store: &S,
    name: &str,
    id: &JobId,
) -> Result<Option<Execution>> {
    let query = ExecutionQuery::name(name).job_id(id.clone()).limit(1);
    Ok(store.executions(&query).await?.into_iter().next())
}

/// Looks (`look`) every [`LOOK_EVERY`] until it finds something; `TimedOut` with
/// `timed_out()`'s text after `deadline`.
async fn wait_until<T, F, Fut>(
    deadline: Duration,
    timed_out: impl Fn() -> String,
    mut look: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let ends = crate::worker::later(Instant::now(), deadline);
    loop {
        // A look that hangs (a store that stopped answering) ends at the deadline too.
        let remaining = ends.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining.max(LOOK_EVERY), look()).await {
            Ok(found) => {
                if let Some(found) = found? {
                    return Ok(found);
                }
            }
            Err(_) => return Err(Error::new(ErrorKind::TimedOut, timed_out())),
        }
        let remaining = ends.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Error::new(ErrorKind::TimedOut, timed_out()));
        }
        tokio::time::sleep(LOOK_EVERY.min(remaining)).await;
    }
}

/// The pending jobs of `name` (due or scheduled for later), in claim order: what a test
/// checks it scheduled.
pub async fn scheduled_jobs<S: JobStore + ?Sized>(store: &S, name: &str) -> Result<Vec<Job>> {
    all_jobs(store, name, Some(JobState::Pending)).await
}
