//! Job records as stored, and what a caller hands the store to schedule one.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// The priority a job gets when none is given.
pub const DEFAULT_PRIORITY: i32 = 1;

/// The longest job name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// The longest unique identifier, in bytes.
pub const MAX_UNIQUE_IDENTIFIER_BYTES: usize = 1024;

/// The id a store gave a job. Opaque: each store chooses its own format.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(String);

impl JobId {
    /// Wraps a store's id.
    pub fn new(id: impl Into<String>) -> Self {
        JobId(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({})", self.0)
    }
}

impl From<&str> for JobId {
    fn from(id: &str) -> Self {
        JobId(id.to_owned())
    }
}

impl From<String> for JobId {
    fn from(id: String) -> Self {
        JobId(id)
    }
}

/// Whether a job is run on demand or on a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Scheduled on demand with params; removed once it succeeds.
    Event,
    /// One record per name, run again and again on its schedule.
    Recurrent,
}

impl JobKind {
    /// `"event"` or `"recurrent"`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Event => "event",
            JobKind::Recurrent => "recurrent",
        }
    }

    /// Parses [`JobKind::as_str`]'s text.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "event" => Some(JobKind::Event),
            "recurrent" => Some(JobKind::Recurrent),
            _ => None,
        }
    }
}

/// Where a job stands, by the store's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its run time, due, or with a lease that ran out.
    Pending,
    /// Leased by a worker whose lease has not ended.
    Running,
    /// Failed for good; kept visible until its retention ends, never claimed.
    Failed,
}

impl JobState {
    /// `"pending"`, `"running"` or `"failed"`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Failed => "failed",
        }
    }
}

/// When a job should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunAt {
    /// As soon as possible: the store's current time.
    #[default]
    Now,
    /// At this instant.
    At(DateTime<Utc>),
    /// This long after the store's current time.
    In(Duration),
}

impl RunAt {
    /// The instant, given the store's current time. Saturates instead of overflowing.
    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            RunAt::Now => now,
            RunAt::At(at) => at,
            RunAt::In(delay) => add_duration(now, delay),
        }
    }
}

/// `at + delay`, saturating at the largest representable instant.
pub fn add_duration(at: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(delay)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

thread_local! {
    /// A fast generator per thread, seeded from the OS's random source when the thread first
    /// draws (from the time and the thread's id, where the OS has none to give).
    static RNG: std::cell::RefCell<fastrand::Rng> = std::cell::RefCell::new(
        getrandom::u64().map_or_else(|_| fastrand::Rng::new(), fastrand::Rng::with_seed),
    );
}

/// 128 random bits from [`RNG`], without a system call per draw.
fn random_bits() -> u128 {
    RNG.with(|rng| rng.borrow_mut().u128(..))
}

/// 128 random bits as 32 hex digits: the tokens of leases. Drawn from a fast generator per
/// thread (not a cryptographic one: a token fences out a stale holder, it is no secret), seeded
/// from the OS's random source.
pub fn random_id() -> String {
    format!("{:032x}", random_bits())
}

/// A new execution id, as the worker gives each execution it records: 32 hex digits, the first
/// 12 the milliseconds since the Unix epoch, the other 20 random.
///
/// Ids made later sort after (to the millisecond, while the clock goes forward), so the stores'
/// indexes of execution ids grow at their end: a random id would land each new record on a
/// random page of an index that outgrows memory as the history deepens. The random part keeps
/// ids made in the same millisecond, on any number of machines, apart.
pub fn execution_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let millis = (millis & 0xffff_ffff_ffff) as u64;
    format!("{millis:012x}{:020x}", random_bits() >> 48)
}

/// `at` cut to whole milliseconds, the precision every store keeps.
pub fn truncate_millis(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at)
}

/// An event job to store, as handed to [`JobStore::schedule`](crate::JobStore::schedule).
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// The job's name: which definition runs it.
    pub name: String,
    /// The params, as JSON.
    pub params: Value,
    /// Higher runs first.
    pub priority: i32,
    /// When it becomes due.
    pub run_at: RunAt,
    /// With the name, identifies the job among live jobs: a second job with the same pair is a
    /// duplicate.
    pub unique_identifier: Option<String>,
    /// What a duplicate does: keep the live job as it is (the default), or replace a pending
    /// one's params, run time and priority.
    pub on_duplicate: OnDuplicate,
    /// The scheduler's trace context (a W3C `traceparent`), so the execution's span is a child
    /// of the span that scheduled the job; set by [`schedule_job`](crate::schedule_job) with
    /// the `opentelemetry` feature.
    pub trace_context: Option<String>,
}

/// What scheduling a job whose (name, unique identifier) a live job already has does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum OnDuplicate {
    /// The live job is kept unchanged: [`Scheduled::Duplicate`].
    #[default]
    Keep,
    /// A pending live job takes the new params, run time and priority and keeps its id
    /// ([`Scheduled::Replaced`]); with a run time ahead, this debounces. A running job is left
    /// alone ([`Scheduled::Duplicate`]).
    Replace,
}

impl NewJob {
    /// A job of `name` with `params`, due now, with the default priority and no unique identifier.
    pub fn new(name: impl Into<String>, params: Value) -> Self {
        NewJob {
            name: name.into(),
            params,
            priority: DEFAULT_PRIORITY,
            run_at: RunAt::Now,
            unique_identifier: None,
            on_duplicate: OnDuplicate::Keep,
            trace_context: None,
        }
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the run time.
    pub fn run_at(mut self, run_at: RunAt) -> Self {
        self.run_at = run_at;
        self
    }

    /// Sets the unique identifier.
    pub fn unique_identifier(mut self, unique_identifier: impl Into<String>) -> Self {
        self.unique_identifier = Some(unique_identifier.into());
        self
    }

    /// Sets what a duplicate does (see [`OnDuplicate`]).
    pub fn on_duplicate(mut self, on_duplicate: OnDuplicate) -> Self {
        self.on_duplicate = on_duplicate;
        self
    }

    /// Checks the job against the limits every store shares and the store's params limit.
    ///
    /// Stores call this first in `schedule` and `schedule_many`, so every backend refuses the same
    /// input with the same [`ErrorKind`](crate::ErrorKind): `InvalidInput` for a bad name or unique
    /// identifier, a run time outside years 1 to 9999 or a delay over
    /// [`MAX_DURATION`](crate::MAX_DURATION), or params that some store cannot keep exactly (a NUL character, which
    /// PostgreSQL's `jsonb` refuses; an integer above `i64::MAX`, which BSON cannot hold),
    /// `TooLarge` for params over `max_params_bytes` once serialized.
    pub fn validate(&self, max_params_bytes: usize) -> Result<()> {
        validate_name(&self.name)?;
        crate::limits::check_run_at(self.run_at)?;
        if let Some(unique) = &self.unique_identifier {
            validate_text("unique identifier", unique, MAX_UNIQUE_IDENTIFIER_BYTES)?;
        }
        if let Some(trace_context) = &self.trace_context {
            crate::trace::validate(trace_context)?;
        }
        validate_params(&self.name, &self.params)?;
        let size = params_size(&self.params);
        if size > max_params_bytes {
            return Err(Error::new(
                crate::ErrorKind::TooLarge,
                format!(
                    "params of job '{}' take {size} bytes, more than the store's limit of {max_params_bytes}",
                    self.name
                ),
            ));
        }
        Ok(())
    }
}

/// Refuses params that not every store keeps exactly, so every backend takes the same params.
pub(crate) fn validate_params(name: &str, params: &Value) -> Result<()> {
    let refuse = |what: String| {
        Err(Error::invalid_input(format!(
            "params of job '{name}' contain {what}, which not every store can keep"
        )))
    };
    match params {
        Value::String(s) if s.contains('\0') => refuse("a NUL character in a string".into()),
        Value::Number(n) if n.is_u64() && n.as_i64().is_none() => refuse(format!(
            "the integer {n}, above the largest 64-bit signed integer"
        )),
        Value::Array(items) => items.iter().try_for_each(|v| validate_params(name, v)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            if k.contains('\0') {
                return refuse("a NUL character in a key".into());
            }
            validate_params(name, v)
        }),
        _ => Ok(()),
    }
}

/// The size of params once serialized as JSON.
pub fn params_size(params: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a `Value` into a counter cannot fail.
    let _ = serde_json::to_writer(&mut counter, params);
    counter.0
}

/// Checks a job name: not empty, at most [`MAX_NAME_BYTES`], no NUL byte.
pub fn validate_name(name: &str) -> Result<()> {
    validate_text("job name", name, MAX_NAME_BYTES)
}

fn validate_text(what: &str, text: &str, max: usize) -> Result<()> {
    if text.is_empty() {
        return Err(Error::invalid_input(format!("{what} is empty")));
    }
    if text.len() > max {
        return Err(Error::invalid_input(format!(
            "{what} is {} bytes long, more than {max}",
            text.len()
        )));
    }
    if text.contains('\0') {
        return Err(Error::invalid_input(format!("{what} contains a NUL byte")));
    }
    Ok(())
}

/// What scheduling an event job did.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scheduled {
    /// A new job was stored with this id.
    Created(JobId),
    /// A live job with the same name and unique identifier exists already; it is kept unchanged
    /// (also with [`OnDuplicate::Replace`] when it is running).
    Duplicate(JobId),
    /// A pending job with the same name and unique identifier took the new params, run time
    /// and priority ([`OnDuplicate::Replace`]); it keeps its id.
    Replaced(JobId),
}

impl AsRef<JobId> for Scheduled {
    fn as_ref(&self) -> &JobId {
        self.id()
    }
}

impl AsRef<JobId> for JobId {
    fn as_ref(&self) -> &JobId {
        self
    }
}

impl Scheduled {
    /// The id of the new or existing job.
    pub fn id(&self) -> &JobId {
        match self {
            Scheduled::Created(id) | Scheduled::Duplicate(id) | Scheduled::Replaced(id) => id,
        }
    }

    /// Whether the call found an existing job instead of storing one (kept or replaced).
    pub fn is_duplicate(&self) -> bool {
        matches!(self, Scheduled::Duplicate(_) | Scheduled::Replaced(_))
    }
}

/// A recurrent job to create or update, as handed to
/// [`JobStore::register_recurrent`](crate::JobStore::register_recurrent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecurrentRegistration {
    /// The job's name; one record per name in the whole store.
    pub name: String,
    /// Text that changes whenever the schedule changes (see [`Schedule::key`](crate::Schedule::key)).
    pub schedule_key: String,
    /// The job's priority.
    pub priority: i32,
    /// The next run, used only when the stored schedule key differs from this one.
    pub next_run_at: DateTime<Utc>,
}

impl RecurrentRegistration {
    /// Checks the registration as every store does: a valid name, a next run within years 1 to
    /// 9999; anything else is `InvalidInput`.
    pub fn validate(&self) -> Result<()> {
        validate_name(&self.name)?;
        crate::limits::check_run_at(RunAt::At(self.next_run_at))
    }
}

/// A stored job, as read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The store's id.
    pub id: JobId,
    /// The name of its definition.
    pub name: String,
    /// Event or recurrent.
    pub kind: JobKind,
    /// The params, as JSON (`null` for recurrent jobs).
    pub params: Value,
    /// Higher runs first.
    pub priority: i32,
    /// When it is or was due.
    pub run_at: DateTime<Utc>,
    /// The unique identifier, if it was scheduled with one.
    pub unique_identifier: Option<String>,
    /// How many times it has been claimed since it was scheduled or last reset.
    pub tries: u32,
    /// Pending, running or failed, by the store's clock when it was read.
    pub state: JobState,
    /// The end of the current or last lease.
    pub locked_until: Option<DateTime<Utc>>,
    /// The worker that holds or held the lease.
    pub locked_by: Option<String>,
    /// The error it failed with, when failed.
    pub last_error: Option<String>,
    /// When a failed job is removed.
    pub expires_at: Option<DateTime<Utc>>,
    /// For recurrent jobs, the key of the schedule it was registered with.
    pub schedule_key: Option<String>,
    /// When it was first stored.
    pub created_at: DateTime<Utc>,
    /// The progress its running handler last reported
    /// ([`JobContext::set_progress`](crate::JobContext::set_progress)); cleared when it is
    /// rescheduled or retried.
    #[serde(default)]
    pub progress: Option<Value>,
    /// Whether its name is paused ([`JobStore::pause`](crate::JobStore::pause)): no worker
    /// claims it until the name is resumed.
    #[serde(default)]
    pub paused: bool,
    /// The trace context it was scheduled with ([`NewJob::trace_context`]).
    #[serde(default)]
    pub trace_context: Option<String>,
}

/// The page size of a [`JobQuery`] or an [`ExecutionQuery`](crate::ExecutionQuery) that sets
/// none: 100. Set one with `.limit(n)`; a read returns at most that many rows.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// Which jobs [`JobStore::list_jobs`](crate::JobStore::list_jobs) returns: **one page**, of at
/// most `limit` jobs ([`DEFAULT_PAGE_SIZE`], 100, unless `.limit(n)` says otherwise).
///
/// A page shorter than its limit (or empty: a limit of 0 reads nothing) is the last;
/// [`JobQuery::next_page`] gives the query of the page after it:
///
/// ```
/// use dogs_core::prelude::*;
/// use dogs_memory::MemoryStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error> {
/// let store = MemoryStore::new();
/// let mut query = JobQuery::name("send-invoice").state(JobState::Failed).limit(500);
/// let mut failed = Vec::new();
/// loop {
///     let page = store.list_jobs(&query).await?;
///     let last = page.len() < query.limit || page.is_empty();
///     failed.extend(page);
///     if last {
///         break;
///     }
///     query = query.next_page();
/// }
/// # assert!(failed.is_empty());
/// # Ok(())
/// # }
/// ```
///
/// Offsets page a listing that does not change meanwhile; jobs that start, end or are
/// scheduled between two pages move the rows under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobQuery {
    /// Only jobs of this name, or every name.
    pub name: Option<String>,
    /// Only jobs in this state, or every state.
    pub state: Option<JobState>,
    /// At most this many (0: none).
    pub limit: usize,
    /// Skipping this many first.
    pub offset: usize,
}

impl Default for JobQuery {
    fn default() -> Self {
        JobQuery {
            name: None,
            state: None,
            limit: DEFAULT_PAGE_SIZE,
            offset: 0,
        }
    }
}

impl JobQuery {
    /// Whether this query lists newest first: a listing of failed jobs is; every other
    /// listing is in scheduling order ([`JobStore::list_jobs`](crate::JobStore::list_jobs)).
    pub fn newest_first(&self) -> bool {
        self.state == Some(JobState::Failed)
    }

    /// The first page (of 100: set `.limit(n)`) of jobs of `name` in any state.
    pub fn name(name: impl Into<String>) -> Self {
        JobQuery {
            name: Some(name.into()),
            ..JobQuery::default()
        }
    }

    /// Narrows to one state.
    pub fn state(mut self, state: JobState) -> Self {
        self.state = Some(state);
        self
    }

    /// Sets the page size: the read returns at most `limit` jobs (default 100).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Sets how many to skip.
    pub fn offset(mut self, offset: usize) -> Self {
        self.offset = offset;
        self
    }

    /// The query of the page after this one: the same filters and limit, `limit` more skipped.
    pub fn next_page(mut self) -> Self {
        self.offset = self.offset.saturating_add(self.limit);
        self
    }
}

/// How many jobs of one name are in each state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounts {
    /// The job name.
    pub name: String,
    /// Jobs waiting or due.
    pub pending: u64,
    /// Of `pending`, those whose run time is still ahead (the rest are due).
    #[serde(default)]
    pub scheduled: u64,
    /// Jobs with a live lease.
    pub running: u64,
    /// Jobs failed for good and not yet removed.
    pub failed: u64,
    /// Whether the name is paused: no worker claims its jobs until it is resumed. A paused name
    /// is counted even when it has no jobs.
    #[serde(default)]
    pub paused: bool,
}

impl JobCounts {
    /// Counts one job in `state`; `ahead` when its run time is still ahead.
    pub fn add(&mut self, state: JobState, ahead: bool) {
        match state {
            JobState::Pending => {
                self.pending += 1;
                self.scheduled += u64::from(ahead);
            }
            JobState::Running => self.running += 1,
            JobState::Failed => self.failed += 1,
        }
    }
}

/// What is stored about a job name itself, apart from its jobs: set by
/// [`JobStore::pause`](crate::JobStore::pause) and
/// [`JobStore::set_concurrency_limit`](crate::JobStore::set_concurrency_limit).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameSettings {
    /// The job name.
    pub name: String,
    /// No worker of any process claims its jobs.
    pub paused: bool,
    /// At most this many of its executions run at once across every process.
    pub concurrency_limit: Option<u32>,
}

impl JobCounts {
    /// Marks the paused names of `settings` in `counts`, adding an entry (with no jobs) for a
    /// paused name that has none; keeps `counts` sorted by name.
    pub fn mark_paused(counts: &mut Vec<JobCounts>, settings: &[NameSettings]) {
        for setting in settings.iter().filter(|s| s.paused) {
            match counts.binary_search_by(|c| c.name.as_str().cmp(&setting.name)) {
                Ok(i) => counts[i].paused = true,
                Err(i) => counts.insert(
                    i,
                    JobCounts {
                        name: setting.name.clone(),
                        paused: true,
                        ..JobCounts::default()
                    },
                ),
            }
        }
    }
}

impl Job {
    /// Marks the jobs of `settings`' paused names as paused.
    pub fn mark_paused(jobs: &mut [Job], settings: &[NameSettings]) {
        for job in jobs {
            job.paused = settings.iter().any(|s| s.paused && s.name == job.name);
        }
    }
}

/// The error a job cancelled while it ran is failed with: it stays visible as failed (and can
/// be retried) for [`CANCELLED_RETENTION`], and the worker that ran it records its execution as
/// `cancelled`.
pub const CANCELLED_ERROR: &str = "cancelled while running";

/// How long a job cancelled while it ran stays visible as failed: 7 days.
pub const CANCELLED_RETENTION: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The most failed jobs one batch of [`JobStore::retry_failed`](crate::JobStore::retry_failed)
/// puts back.
pub const RETRY_BATCH: usize = 1000;

/// What one batch of [`JobStore::retry_failed_batch`](crate::JobStore::retry_failed_batch) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryBatch {
    /// How many failed jobs it put back.
    pub retried: u64,
    /// Whether it found as many failed jobs as it was allowed, so more may be left.
    pub full: bool,
    /// The last failed job it looked at (put back or not): the next batch goes on after it.
    pub last: Option<JobId>,
}

/// What a pruning pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Failed jobs past their retention.
    pub jobs: u64,
    /// Execution records past their expiry.
    pub executions: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_ids_are_32_hex_digits_unique_and_ordered_by_time() {
        let first = execution_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let ids: Vec<String> = (0..10_000).map(|_| execution_id()).collect();
        for id in &ids {
            assert_eq!(id.len(), 32);
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(*id > first, "{id} was made after {first}");
        }
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let stamped = u64::from_str_radix(&ids[0][..12], 16).unwrap_or(0);
        assert!(
            now.abs_diff(stamped) < 60_000,
            "{stamped} is the time in ms, {now} now"
        );
    }
}
