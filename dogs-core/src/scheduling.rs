//! Scheduling event jobs: typed through a definition, or by name with JSON params.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::definition::EventJob;
use crate::error::{Error, ErrorKind, Result};
use crate::job::{NewJob, OnDuplicate, RunAt, Scheduled, DEFAULT_PRIORITY};
use crate::store::JobStore;

/// When and how a job is scheduled. Every field has a default: due now, the definition's
/// priority, no unique identifier.
///
/// ```
/// use std::time::Duration;
/// use dogs_core::{RunAt, ScheduleOptions};
///
/// let options = ScheduleOptions {
///     run_at: RunAt::In(Duration::from_secs(60)),
///     unique_identifier: Some("invoice-42".into()),
///     ..Default::default()
/// };
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleOptions {
    /// When the job becomes due (default: now).
    pub run_at: RunAt,
    /// Overrides the definition's priority.
    pub priority: Option<i32>,
    /// With the name, identifies the job among live jobs: scheduling it again while the first is
    /// pending or running returns [`Scheduled::Duplicate`].
    pub unique_identifier: Option<String>,
    /// What a duplicate does: keep the live job (default), or replace a pending one's params,
    /// run time and priority ([`OnDuplicate::Replace`]: with a run time ahead, a debounce).
    pub on_duplicate: OnDuplicate,
}

impl ScheduleOptions {
    /// Due at once.
    pub fn now() -> Self {
        ScheduleOptions::default()
    }

    /// Due `delay` from now (by the store's clock).
    pub fn run_in(delay: std::time::Duration) -> Self {
        ScheduleOptions {
            run_at: RunAt::In(delay),
            ..ScheduleOptions::default()
        }
    }

    /// Due at `at`.
    pub fn run_at(at: chrono::DateTime<chrono::Utc>) -> Self {
        ScheduleOptions {
            run_at: RunAt::At(at),
            ..ScheduleOptions::default()
        }
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Sets the unique identifier.
    pub fn unique_identifier(mut self, unique_identifier: impl Into<String>) -> Self {
        self.unique_identifier = Some(unique_identifier.into());
        self
    }

    /// Replaces a pending duplicate's params, run time and priority instead of keeping it
    /// ([`OnDuplicate::Replace`]).
    pub fn replace_duplicate(mut self) -> Self {
        self.on_duplicate = OnDuplicate::Replace;
        self
    }

    pub(crate) fn into_new_job(self, name: String, params: Value, default_priority: i32) -> NewJob {
        NewJob {
            name,
            params,
            priority: self.priority.unwrap_or(default_priority),
            run_at: self.run_at,
            unique_identifier: self.unique_identifier,
            on_duplicate: self.on_duplicate,
            trace_context: None,
        }
    }
}

/// Schedules an event job with typed params, through its definition.
///
/// Works from any process, also one that runs no workers. Returns the new job's id, or
/// [`Scheduled::Duplicate`] with the existing job's id when a live job has the same name and unique
/// identifier.
pub async fn schedule_job<S, P>(
    store: &S,
    job: &EventJob<P>,
    params: &P,
    options: ScheduleOptions,
) -> Result<Scheduled>
where
    S: JobStore + ?Sized,
    P: Serialize + DeserializeOwned + Send + 'static,
{
    scheduled(store, job.new_job(params, options)?).await
}

/// Stores one job, in a span of its own, and counts it.
async fn scheduled<S: JobStore + ?Sized>(store: &S, mut job: NewJob) -> Result<Scheduled> {
    let span = tracing::info_span!("dogs.schedule", job.name = %job.name);
    if job.trace_context.is_none() {
        job.trace_context = span.in_scope(crate::trace::current);
    }
    let name = job.name.clone();
    let outcome = tracing::Instrument::instrument(store.schedule(job), span).await?;
    if matches!(outcome, Scheduled::Created(_)) {
        crate::metrics::scheduled(&name, 1);
    }
    Ok(outcome)
}

/// Schedules an event job by name, with params of any serializable type (stored as JSON).
///
/// For a process that does not have the job's definition. Without a priority in `options` the job
/// gets the default priority (1).
pub async fn schedule_job_by_name<S, P>(
    store: &S,
    name: &str,
    params: &P,
    options: ScheduleOptions,
) -> Result<Scheduled>
where
    S: JobStore + ?Sized,
    P: Serialize + ?Sized,
{
    let params = params_to_json(name, params)?;
    scheduled(
        store,
        options.into_new_job(name.to_owned(), params, DEFAULT_PRIORITY),
    )
    .await
}

/// Serializes params to JSON; a failure is a `Serialization` error naming the job.
pub(crate) fn params_to_json<P: Serialize + ?Sized>(name: &str, params: &P) -> Result<Value> {
    serde_json::to_value(params).map_err(|e| {
        Error::new(
            ErrorKind::Serialization,
            format!("params of job '{name}' cannot be serialized"),
        )
        .with_source(e)
    })
}
