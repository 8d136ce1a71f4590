//! Job definitions: event jobs with typed params, recurrent jobs, their handlers and options.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::context::JobContext;
use crate::error::{Error, Result};
use crate::job::{JobId, NewJob, DEFAULT_PRIORITY};
use crate::schedule::Schedule;
use crate::scheduling::ScheduleOptions;

/// The error a handler returns: any error, boxed.
///
/// A handler's closure returns `Result<R, HandlerError>`, so `?` and `.into()` need no type
/// written out:
///
/// - `?` on any `std::error::Error + Send + Sync` (I/O, serde, sqlx, reqwest, ...), on an
///   `anyhow::Error` or `eyre::Report`, on a `String` or `&str` error, and on another
///   `HandlerError`; the record keeps the error's chain of causes, joined by `": "`.
/// - `Err("text".into())`, `Err(format!("...").into())`, `Err(Snooze(d).into())`.
/// - Anything else that is only [`Display`](fmt::Display), or a `Box<dyn Error>` that is not
///   `Send + Sync`: `.map_err(handler_error)?` keeps its text ([`handler_error`]).
///
/// ```
/// use dogs_core::prelude::*;
///
/// fn parse(text: &str) -> Result<u32, Box<dyn std::error::Error>> {
///     Ok(text.parse()?)
/// }
///
/// let job = EventJob::new("parse", |text: String, _ctx: JobContext| async move {
///     if text.is_empty() {
///         return Err("nothing to parse".into());
///     }
///     let number = parse(&text).map_err(handler_error)?; // not Send: keep its text
///     let doubled: u64 = serde_json::from_str(&format!("{}", number * 2))?; // any std error
///     Ok(doubled)
/// });
/// # let _ = job;
/// ```
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Turns any error that is only [`Display`](fmt::Display) (or not `Send + Sync`, such as a
/// `Box<dyn Error>`) into a [`HandlerError`] with its text: `.map_err(handler_error)?`.
///
/// The text is `{:#}` of the value, which for an `anyhow::Error` includes its causes.
pub fn handler_error(error: impl fmt::Display) -> HandlerError {
    format!("{error:#}").into()
}

/// The default number of executions before an event job is failed for good.
pub const DEFAULT_MAX_TRIES: u32 = 10;

/// The default time execution records are kept: 7 days.
pub const DEFAULT_SAVE_EXECUTIONS_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// A job handler written as a type: implement this on a struct that holds what the job needs
/// (a connection pool, a client), and define the job with [`EventJob::with_handler`] or
/// [`RecurrentJob::with_handler`].
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// The params, read from the stored JSON. `()` for recurrent jobs.
    type Params: DeserializeOwned + Send + 'static;
    /// The result, stored in the execution record.
    type Output: Serialize + Send + 'static;

    /// Runs one execution.
    async fn run(
        &self,
        params: Self::Params,
        ctx: JobContext,
    ) -> std::result::Result<Self::Output, HandlerError>;
}

/// A failed or stale execution, as shown to `on_error`, `on_stale` and `on_max_tries`.
#[derive(Debug, Clone)]
pub struct ExecutionFailure {
    /// The job's id.
    pub job_id: JobId,
    /// The job's name.
    pub name: String,
    /// Which try failed (1 for the first).
    pub tries: u32,
    /// The job's params.
    pub params: Value,
    /// What went wrong.
    pub error: String,
}

/// What `on_error` decides for a failed execution of an event job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorAction {
    /// Run the job again after this delay.
    RetryIn(Duration),
    /// Fail the job for good now.
    Dismiss,
    /// Apply the default policy: exponential backoff until `max_tries`, then fail for good.
    Default,
}

/// Decides what happens after an execution of an event job fails.
pub type OnError = Arc<dyn Fn(&ExecutionFailure) -> ErrorAction + Send + Sync>;

/// Called once when an execution outlives its lease and is stopped.
pub type OnStale = Arc<dyn Fn(&ExecutionFailure) + Send + Sync>;

/// What a handler returns (as its error) to run again after a delay without counting a
/// failure: the job is rescheduled then, the try this run counted is given back, and the
/// execution is recorded as `snoozed`.
///
/// ```
/// use std::time::Duration;
/// use dogs_core::prelude::*;
///
/// let poll = EventJob::new("poll-export", |_: (), _ctx: JobContext| async move {
///     let ready = false;
///     if !ready {
///         return Err(Snooze(Duration::from_secs(30)).into());
///     }
///     Ok(())
/// });
/// # let _ = poll;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snooze(pub Duration);

impl fmt::Display for Snooze {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "snoozed for {:?}", self.0)
    }
}

impl std::error::Error for Snooze {}

/// What a handler's run produced, with params and result as JSON.
pub(crate) enum RunOutcome {
    Success(Value),
    Error(String),
    BadParams(String),
    Snooze(Duration),
}

pub(crate) type RunFuture = Pin<Box<dyn Future<Output = RunOutcome> + Send>>;

/// A handler with its params and result types erased to JSON.
pub(crate) trait ErasedHandler: Send + Sync {
    fn run(&self, params: Value, ctx: JobContext) -> RunFuture;
}

struct Typed<H>(Arc<H>);

impl<H: JobHandler> ErasedHandler for Typed<H> {
    fn run(&self, params: Value, ctx: JobContext) -> RunFuture {
        let handler = Arc::clone(&self.0);
        Box::pin(async move {
            let params = match serde_json::from_value::<H::Params>(params) {
                Ok(params) => params,
                Err(e) => {
                    return RunOutcome::BadParams(format!(
                        "stored params do not match the params type of job '{}': {e}",
                        ctx.name()
                    ))
                }
            };
            match handler.run(params, ctx).await {
                Ok(output) => match serde_json::to_value(output) {
                    Ok(value) => RunOutcome::Success(value),
                    Err(e) => RunOutcome::Error(format!("the result could not be serialized: {e}")),
                },
                Err(e) => match e.downcast_ref::<Snooze>() {
                    Some(Snooze(delay)) => RunOutcome::Snooze(*delay),
                    None => RunOutcome::Error(error_text(&*e)),
                },
            }
        })
    }
}

/// An error with its chain of causes, on one line.
fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

struct FnHandler<F, P, R> {
    f: F,
    _types: PhantomData<fn(P) -> R>,
}

#[async_trait]
impl<F, Fut, P, R> JobHandler for FnHandler<F, P, R>
where
    F: Fn(P, JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<R, HandlerError>> + Send + 'static,
    P: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
{
    type Params = P;
    type Output = R;

    async fn run(&self, params: P, ctx: JobContext) -> std::result::Result<R, HandlerError> {
        (self.f)(params, ctx).await
    }
}

/// Whether a definition is an event or a recurrent job, with what only that kind has.
#[derive(Clone)]
pub(crate) enum DefinitionKind {
    Event { max_tries: u32 },
    Recurrent { schedules: Vec<Schedule> },
}

/// A job definition with its types erased: what [`start_workers`](crate::start_workers) and
/// [`testing::drain`](crate::testing::drain) take.
///
/// Made from an [`EventJob`] or a [`RecurrentJob`] the same way: `job.definition()` (the job
/// stays usable, to schedule it) or `job.into()` (also from `&job`), so one list holds both:
/// `[send_invoice.definition(), cleanup.definition()]`.
#[derive(Clone)]
pub struct JobDefinition {
    pub(crate) name: String,
    pub(crate) kind: DefinitionKind,
    pub(crate) handler: Arc<dyn ErasedHandler>,
    pub(crate) priority: i32,
    pub(crate) lock_time: Option<Duration>,
    pub(crate) on_error: Option<OnError>,
    pub(crate) on_stale: Option<OnStale>,
    pub(crate) save_executions_for: Duration,
    pub(crate) timeout: Option<Duration>,
    pub(crate) auto_extend: Option<bool>,
    pub(crate) max_parallel: Option<usize>,
}

impl fmt::Debug for JobDefinition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("JobDefinition");
        d.field("name", &self.name);
        match &self.kind {
            DefinitionKind::Event { max_tries } => d.field("max_tries", max_tries),
            DefinitionKind::Recurrent { schedules } => d.field("schedules", schedules),
        };
        d.field("priority", &self.priority)
            .field("lock_time", &self.lock_time)
            .field("on_error", &self.on_error.is_some())
            .field("on_stale", &self.on_stale.is_some())
            .field("save_executions_for", &self.save_executions_for)
            .field("timeout", &self.timeout)
            .field("auto_extend", &self.auto_extend)
            .field("max_parallel", &self.max_parallel)
            .finish()
    }
}

impl JobDefinition {
    fn new(name: String, kind: DefinitionKind, handler: Arc<dyn ErasedHandler>) -> Self {
        JobDefinition {
            name,
            kind,
            handler,
            priority: DEFAULT_PRIORITY,
            lock_time: None,
            on_error: None,
            on_stale: None,
            save_executions_for: DEFAULT_SAVE_EXECUTIONS_FOR,
            timeout: None,
            auto_extend: None,
            max_parallel: None,
        }
    }

    /// The job name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it is a recurrent job.
    pub fn is_recurrent(&self) -> bool {
        matches!(self.kind, DefinitionKind::Recurrent { .. })
    }

    /// Checks the definition as `start_workers` does; every problem is a `Config` error.
    pub fn validate(&self) -> Result<()> {
        crate::job::validate_name(&self.name).map_err(|e| {
            Error::config(format!("invalid job name '{}': {}", self.name, e.message()))
        })?;
        let in_job = |e: Error| Error::config(format!("job '{}': {}", self.name, e.message()));
        if let Some(lock_time) = self.lock_time {
            crate::limits::check_positive("lock_time", lock_time).map_err(in_job)?;
        }
        crate::limits::check_duration("save_executions_for", self.save_executions_for)
            .map_err(in_job)?;
        if let Some(timeout) = self.timeout {
            crate::limits::check_positive("timeout", timeout).map_err(in_job)?;
        }
        if self.max_parallel == Some(0) {
            return Err(Error::config(format!(
                "job '{}': max_parallel must be at least 1",
                self.name
            )));
        }
        match &self.kind {
            DefinitionKind::Event { max_tries } if *max_tries == 0 => Err(Error::config(format!(
                "job '{}': max_tries must be at least 1",
                self.name
            ))),
            DefinitionKind::Event { .. } => Ok(()),
            DefinitionKind::Recurrent { schedules } => match schedules.as_slice() {
                [schedule] => schedule
                    .validate()
                    .map_err(|e| Error::config(format!("job '{}': {}", self.name, e.message()))),
                [] => Err(Error::config(format!(
                    "recurrent job '{}' has no schedule: give it one of run_every, get_next_run or cron",
                    self.name
                ))),
                _ => Err(Error::config(format!(
                    "recurrent job '{}' has {} schedules: give it exactly one of run_every, get_next_run or cron",
                    self.name,
                    schedules.len()
                ))),
            },
        }
    }

    /// How many claims in a row may end without a finished execution (stale, or a worker that
    /// died) before the job stops being run again at once: `max_tries` for an event job, the
    /// default for a recurrent one, which then goes back to its normal schedule.
    pub(crate) fn max_tries(&self) -> u32 {
        match self.kind {
            DefinitionKind::Event { max_tries } => max_tries,
            DefinitionKind::Recurrent { .. } => DEFAULT_MAX_TRIES,
        }
    }

    /// The schedule of a valid recurrent definition.
    pub(crate) fn schedule(&self) -> Option<&Schedule> {
        match &self.kind {
            DefinitionKind::Recurrent { schedules } => schedules.first(),
            DefinitionKind::Event { .. } => None,
        }
    }
}

/// The options every job definition takes, as builder methods.
///
/// Implemented by [`EventJob`] and [`RecurrentJob`]; in scope through `dogs_core::prelude`.
pub trait JobOptions: Sized {
    /// The definition being built.
    fn definition_mut(&mut self) -> &mut JobDefinition;

    /// Higher runs first (default 1).
    fn priority(mut self, priority: i32) -> Self {
        self.definition_mut().priority = priority;
        self
    }

    /// The lease on a claimed job of this name, overriding the workers' `lock_time`. A handler
    /// that neither returns nor extends its lease is stopped a margin before the lease ends
    /// (at most 1.1 s: 28.9 s of a 30 s lease); see the crate docs.
    fn lock_time(mut self, lock_time: Duration) -> Self {
        self.definition_mut().lock_time = Some(lock_time);
        self
    }

    /// Decides what happens after a failed execution (event jobs; a recurrent job always runs
    /// again at its next normal time).
    ///
    /// [`ErrorAction::RetryIn`] is not capped by `max_tries`: the hook decides, and can look at
    /// [`ExecutionFailure::tries`] to stop. [`ErrorAction::Default`] applies the backoff and
    /// `max_tries`. A hook that panics counts as `Default`; a delay over
    /// [`MAX_DURATION`](crate::MAX_DURATION) is cut to it.
    fn on_error(
        mut self,
        on_error: impl Fn(&ExecutionFailure) -> ErrorAction + Send + Sync + 'static,
    ) -> Self {
        self.definition_mut().on_error = Some(Arc::new(on_error));
        self
    }

    /// Called once when an execution outlives its lease: it is stopped, or its handler returns
    /// only after the lease ended, too late for its outcome to count.
    ///
    /// **When it runs, relative to the re-run:** on the worker that ran the execution, after
    /// the handler has stopped and before the job is released to run again, so it is always
    /// called before the next execution starts, on whatever worker; that execution sees
    /// [`JobContext::was_stale`]. It must not block. A hook that panics is logged and ignored.
    /// A worker that died runs no hook: its job runs again once its lease ends.
    fn on_stale(mut self, on_stale: impl Fn(&ExecutionFailure) + Send + Sync + 'static) -> Self {
        self.definition_mut().on_stale = Some(Arc::new(on_stale));
        self
    }

    /// How long execution records are kept (default 7 days); zero keeps none.
    fn save_executions_for(mut self, keep: Duration) -> Self {
        self.definition_mut().save_executions_for = keep;
        self
    }

    /// The longest an execution may run, apart from its lease: one that runs longer is
    /// stopped (its cancellation signal fires, then it is aborted) and counts as an error
    /// `"timed out"`, retried by the usual policy. None by default.
    fn timeout(mut self, timeout: Duration) -> Self {
        self.definition_mut().timeout = Some(timeout);
        self
    }

    /// Whether the lease renews itself while the handler runs, every third of `lock_time`,
    /// overriding [`WorkerOptions::auto_extend`](crate::WorkerOptions) (on by default).
    fn auto_extend(mut self, auto_extend: bool) -> Self {
        self.definition_mut().auto_extend = Some(auto_extend);
        self
    }

    /// At most this many executions of this job at once in one worker set, beside
    /// `workers_count` (the original library's `maxParallelExecutionsPerServer`). For a limit
    /// across every process, see [`JobStore::set_concurrency_limit`](crate::JobStore).
    fn max_parallel(mut self, max_parallel: usize) -> Self {
        self.definition_mut().max_parallel = Some(max_parallel);
        self
    }
}

/// An event job whose params are `P`: defined once, scheduled on demand.
///
/// ```
/// use dogs_core::prelude::*;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Welcome { email: String }
///
/// let welcome = EventJob::new("welcome-email", |params: Welcome, _ctx: JobContext| async move {
///     println!("sending to {}", params.email);
///     Ok(())
/// })
/// .priority(5)
/// .max_tries(3);
/// # let _ = welcome;
/// ```
pub struct EventJob<P> {
    definition: JobDefinition,
    _params: PhantomData<fn(P) -> P>,
}

impl<P> Clone for EventJob<P> {
    fn clone(&self) -> Self {
        EventJob {
            definition: self.definition.clone(),
            _params: PhantomData,
        }
    }
}

impl<P> fmt::Debug for EventJob<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.definition.fmt(f)
    }
}

impl<P> EventJob<P>
where
    P: Serialize + DeserializeOwned + Send + 'static,
{
    /// An event job run by an async closure `handler(params, ctx)`.
    pub fn new<F, Fut, R>(name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(P, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<R, HandlerError>> + Send + 'static,
        R: Serialize + Send + 'static,
    {
        Self::with_handler(
            name,
            FnHandler {
                f: handler,
                _types: PhantomData,
            },
        )
    }

    /// An event job run by a [`JobHandler`].
    pub fn with_handler<H: JobHandler<Params = P>>(name: impl Into<String>, handler: H) -> Self {
        EventJob {
            definition: JobDefinition::new(
                name.into(),
                DefinitionKind::Event {
                    max_tries: DEFAULT_MAX_TRIES,
                },
                Arc::new(Typed(Arc::new(handler))),
            ),
            _params: PhantomData,
        }
    }

    /// An event job run by an async closure `handler(state, params, ctx)`, handed a clone of
    /// `state` at every execution, as axum hands `State` to its handlers: no
    /// clone-then-`async move` in the closure. Share what is not `Clone` through an `Arc`.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use dogs_core::prelude::*;
    ///
    /// #[derive(Clone, Default)]
    /// struct App { sent: Arc<AtomicU64> }
    ///
    /// let app = App::default();
    /// let send = EventJob::with_state("send", app.clone(), |app: App, to: String, _ctx: JobContext| async move {
    ///     app.sent.fetch_add(1, Ordering::Relaxed);
    ///     Ok(format!("sent to {to}"))
    /// });
    /// # let _ = send;
    /// ```
    pub fn with_state<S, F, Fut, R>(name: impl Into<String>, state: S, handler: F) -> Self
    where
        S: Clone + Send + Sync + 'static,
        F: Fn(S, P, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<R, HandlerError>> + Send + 'static,
        R: Serialize + Send + 'static,
    {
        Self::new(name, move |params, ctx| handler(state.clone(), params, ctx))
    }

    /// Claims before the job is failed for good (default 10): after an error when `on_error` does
    /// not decide, and whenever an execution ends without finishing (it went stale, or its
    /// worker died), since every claim counts as a try.
    pub fn max_tries(mut self, max_tries: u32) -> Self {
        self.definition.kind = DefinitionKind::Event { max_tries };
        self
    }

    /// The job name.
    pub fn name(&self) -> &str {
        &self.definition.name
    }

    /// The type-erased definition, for `start_workers`.
    pub fn definition(&self) -> JobDefinition {
        self.definition.clone()
    }

    /// The job to store for `params`: the definition's priority unless `options` sets one.
    ///
    /// Fails with `Serialization` when the params cannot be turned into JSON.
    pub fn new_job(&self, params: &P, options: ScheduleOptions) -> Result<NewJob> {
        let params = crate::scheduling::params_to_json(&self.definition.name, params)?;
        Ok(options.into_new_job(
            self.definition.name.clone(),
            params,
            self.definition.priority,
        ))
    }
}

impl<P> JobOptions for EventJob<P> {
    fn definition_mut(&mut self) -> &mut JobDefinition {
        &mut self.definition
    }
}

impl<P> From<EventJob<P>> for JobDefinition {
    fn from(job: EventJob<P>) -> Self {
        job.definition
    }
}

impl<P> From<&EventJob<P>> for JobDefinition {
    fn from(job: &EventJob<P>) -> Self {
        job.definition.clone()
    }
}

/// A recurrent job: one record per name in the whole store, run on its schedule.
///
/// Give it exactly one of [`run_every`](RecurrentJob::run_every),
/// [`get_next_run`](RecurrentJob::get_next_run) or [`cron`](RecurrentJob::cron).
///
/// ```
/// use std::time::Duration;
/// use dogs_core::prelude::*;
///
/// let report = RecurrentJob::new("nightly-report", |_ctx: JobContext| async move {
///     Ok("report sent")
/// })
/// .cron("0 3 * * *", "Europe/Paris");
///
/// let heartbeat = RecurrentJob::new("heartbeat", |_ctx: JobContext| async move { Ok(()) })
///     .run_every(Duration::from_secs(30));
/// # let _ = (report, heartbeat);
/// ```
#[derive(Clone, Debug)]
pub struct RecurrentJob {
    definition: JobDefinition,
}

impl RecurrentJob {
    /// A recurrent job run by an async closure `handler(ctx)`.
    pub fn new<F, Fut, R>(name: impl Into<String>, handler: F) -> Self
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<R, HandlerError>> + Send + 'static,
        R: Serialize + Send + 'static,
    {
        Self::with_handler(
            name,
            FnHandler {
                f: move |_: (), ctx| handler(ctx),
                _types: PhantomData,
            },
        )
    }

    /// A recurrent job run by a [`JobHandler`] whose params are `()`.
    pub fn with_handler<H: JobHandler<Params = ()>>(name: impl Into<String>, handler: H) -> Self {
        RecurrentJob {
            definition: JobDefinition::new(
                name.into(),
                DefinitionKind::Recurrent {
                    schedules: Vec::new(),
                },
                Arc::new(Typed(Arc::new(handler))),
            ),
        }
    }

    /// A recurrent job run by an async closure `handler(state, ctx)`, handed a clone of `state`
    /// at every execution (see [`EventJob::with_state`]).
    pub fn with_state<S, F, Fut, R>(name: impl Into<String>, state: S, handler: F) -> Self
    where
        S: Clone + Send + Sync + 'static,
        F: Fn(S, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<R, HandlerError>> + Send + 'static,
        R: Serialize + Send + 'static,
    {
        Self::new(name, move |ctx| handler(state.clone(), ctx))
    }

    fn add(mut self, schedule: Schedule) -> Self {
        if let DefinitionKind::Recurrent { schedules } = &mut self.definition.kind {
            schedules.push(schedule);
        }
        self
    }

    /// Runs again `interval` after each run has finished.
    pub fn run_every(self, interval: Duration) -> Self {
        self.add(Schedule::every(interval))
    }

    /// Runs at the time `next_run` returns, given the store's current time.
    pub fn get_next_run(
        self,
        next_run: impl Fn(chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.add(Schedule::next_run(next_run))
    }

    /// Runs when the cron `expression` matches in the IANA `timezone`.
    pub fn cron(self, expression: impl Into<String>, timezone: impl Into<String>) -> Self {
        self.add(Schedule::cron(expression, timezone))
    }

    /// The job name.
    pub fn name(&self) -> &str {
        &self.definition.name
    }

    /// The type-erased definition, for `start_workers`, spelled as for an [`EventJob`].
    pub fn definition(&self) -> JobDefinition {
        self.definition.clone()
    }

    /// Its schedule, when it has exactly one (as `start_workers` requires).
    pub fn schedule(&self) -> Option<&Schedule> {
        match &self.definition.kind {
            DefinitionKind::Recurrent { schedules } if schedules.len() == 1 => schedules.first(),
            _ => None,
        }
    }

    /// The next `count` run times after `after`, to check a schedule before deploying it; see
    /// [`Schedule::next_runs`]. A job without exactly one schedule is a `Config` error, as at
    /// `start_workers`.
    ///
    /// ```
    /// use dogs_core::prelude::*;
    ///
    /// let report = RecurrentJob::new("report", |_ctx: JobContext| async move { Ok(()) })
    ///     .cron("0 3 * * *", "Europe/Paris");
    /// for run in report.next_runs(chrono::Utc::now(), 5)? {
    ///     println!("next run: {run}");
    /// }
    /// # Ok::<(), dogs_core::Error>(())
    /// ```
    pub fn next_runs(
        &self,
        after: chrono::DateTime<chrono::Utc>,
        count: usize,
    ) -> Result<Vec<chrono::DateTime<chrono::Utc>>> {
        self.definition.validate()?;
        match self.schedule() {
            Some(schedule) => schedule.next_runs(after, count),
            None => Err(Error::config(format!(
                "recurrent job '{}' has no single schedule",
                self.definition.name
            ))),
        }
    }
}

impl JobOptions for RecurrentJob {
    fn definition_mut(&mut self) -> &mut JobDefinition {
        &mut self.definition
    }
}

impl From<RecurrentJob> for JobDefinition {
    fn from(job: RecurrentJob) -> Self {
        job.definition
    }
}

impl From<&RecurrentJob> for JobDefinition {
    fn from(job: &RecurrentJob) -> Self {
        job.definition.clone()
    }
}
