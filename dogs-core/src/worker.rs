//! The worker loop: `start_workers`, its options, and the handle that stops it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info_span, warn, Instrument};

use crate::claim::{ClaimName, ClaimRequest, ClaimedJob, Completion, Finish};
use crate::completer::Completer;
use crate::context::{JobContext, LeaseKeeper};
use crate::definition::{DefinitionKind, ErrorAction, ExecutionFailure, JobDefinition, RunOutcome};
use crate::error::{Error, ErrorKind, Result};
use crate::execution::{Execution, ExecutionStatus};
use crate::job::{add_duration, truncate_millis, JobKind, RecurrentRegistration, RunAt};
use crate::retry::RetryBackoff;
use crate::store::JobStore;

/// How long a cancelled handler may take to stop on its own before it is aborted.
const CANCEL_GRACE: Duration = Duration::from_millis(100);

/// Called once when an event job has failed `max_tries` times and is failed for good.
pub type OnMaxTries = Arc<dyn Fn(&ExecutionFailure) + Send + Sync>;

/// How a worker set runs. Every field has the default of the original library; set the ones you
/// need and take the rest with `..Default::default()`.
///
/// ```
/// use std::time::Duration;
/// use dogs_core::WorkerOptions;
///
/// let options = WorkerOptions {
///     workers_count: 16,
///     poll_interval: Duration::from_secs(1),
///     ..Default::default()
/// };
/// # let _ = options;
/// ```
#[derive(Clone)]
pub struct WorkerOptions {
    /// Executions this worker set runs at once (default 4).
    pub workers_count: usize,
    /// The lease on a claimed job (default 30 s); a job still running when it ends is stale.
    /// A definition's own `lock_time` overrides it.
    pub lock_time: Duration,
    /// Wait after a look that found nothing (default 3 s); a store's wake-up ends it sooner.
    pub poll_interval: Duration,
    /// Pause of a slot after an execution before it claims again (default 100 ms).
    pub cooldown_period: Duration,
    /// How long [`Workers::stop`] waits for running executions (default: `lock_time`).
    pub shutdown_grace: Option<Duration>,
    /// Retry delays for failed event jobs without `on_error`.
    pub retry_backoff: RetryBackoff,
    /// How long a failed event job stays visible before it is removed (default 7 days).
    pub failed_retention: Duration,
    /// Recorded as the lease holder and in execution records (default: process id and a random
    /// suffix).
    pub worker_id: Option<String>,
    /// Called once when an event job is failed for good after `max_tries` executions.
    pub on_max_tries: Option<OnMaxTries>,
    /// How often this worker set asks the store to remove expired failed jobs and execution
    /// records (default every minute); `None` leaves pruning to the store or to you.
    pub prune_interval: Option<Duration>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            workers_count: 4,
            lock_time: Duration::from_secs(30),
            poll_interval: Duration::from_secs(3),
            cooldown_period: Duration::from_millis(100),
            shutdown_grace: None,
            retry_backoff: RetryBackoff::default(),
            failed_retention: Duration::from_secs(7 * 24 * 3600),
            worker_id: None,
            on_max_tries: None,
            prune_interval: Some(Duration::from_secs(60)),
        }
    }
}

impl fmt::Debug for WorkerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerOptions")
            .field("workers_count", &self.workers_count)
            .field("lock_time", &self.lock_time)
            .field("poll_interval", &self.poll_interval)
            .field("cooldown_period", &self.cooldown_period)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("retry_backoff", &self.retry_backoff)
            .field("failed_retention", &self.failed_retention)
            .field("worker_id", &self.worker_id)
            .field("on_max_tries", &self.on_max_tries.is_some())
            .field("prune_interval", &self.prune_interval)
            .finish()
    }
}

impl WorkerOptions {
    /// Checks the options as `start_workers` does; every problem is a `Config` error.
    pub fn validate(&self) -> Result<()> {
        if self.workers_count == 0 {
            return Err(Error::config("workers_count must be at least 1"));
        }
        if self.lock_time.is_zero() {
            return Err(Error::config("lock_time must be longer than zero"));
        }
        if self.poll_interval.is_zero() {
            return Err(Error::config("poll_interval must be longer than zero"));
        }
        if self.prune_interval.is_some_and(|d| d.is_zero()) {
            return Err(Error::config("prune_interval must be longer than zero"));
        }
        Ok(())
    }
}

/// Checks definitions and options, registers the recurrent jobs, and starts a worker set.
///
/// Every invalid definition or option is a `Config` error returned before anything is written:
/// an empty or duplicate job name, a recurrent job with zero or several schedules, a zero
/// `run_every`, an invalid cron expression or timezone, a zero `workers_count` or `lock_time`.
///
/// The returned [`Workers`] runs until [`Workers::stop`] (or until it is dropped, which cancels
/// running executions at once).
pub async fn start_workers<S, I>(store: S, jobs: I, options: WorkerOptions) -> Result<Workers>
where
    S: JobStore,
    I: IntoIterator,
    I::Item: Into<JobDefinition>,
{
    options.validate()?;
    let mut definitions: HashMap<String, Arc<JobDefinition>> = HashMap::new();
    for job in jobs {
        let definition: JobDefinition = job.into();
        definition.validate()?;
        if definitions.contains_key(&definition.name) {
            return Err(Error::config(format!(
                "job name '{}' is defined twice in one worker set",
                definition.name
            )));
        }
        definitions.insert(definition.name.clone(), Arc::new(definition));
    }
    if definitions.is_empty() {
        return Err(Error::config(
            "start_workers needs at least one job definition",
        ));
    }

    let store: Arc<dyn JobStore> = Arc::new(store);
    register_recurrent_jobs(store.as_ref(), &definitions).await?;

    let worker_id = options
        .worker_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", std::process::id(), &crate::job::random_id()[..8]));
    let mut names: Vec<ClaimName> = definitions
        .values()
        .map(|d| ClaimName {
            name: d.name.clone(),
            lock_time: d.lock_time.unwrap_or(options.lock_time),
        })
        .collect();
    names.sort_by(|a, b| a.name.cmp(&b.name));

    let shared = Arc::new(Shared {
        completer: Completer::start(Arc::clone(&store)),
        due_soon: DueSoon::default(),
        claim: ClaimRequest {
            names,
            limit: options.workers_count,
            worker_id: worker_id.clone(),
        },
        store,
        definitions,
        slots: Arc::new(Semaphore::new(options.workers_count)),
        stop_claiming: CancellationToken::new(),
        cancel_running: CancellationToken::new(),
        executions: TaskTracker::new(),
        worker_id,
        options,
    });
    if let Some(interval) = shared.options.prune_interval {
        tokio::spawn(prune(Arc::clone(&shared), interval));
    }
    let dispatcher = tokio::spawn(dispatch(Arc::clone(&shared)));
    Ok(Workers {
        shared,
        dispatcher: Some(dispatcher),
    })
}

async fn register_recurrent_jobs(
    store: &dyn JobStore,
    definitions: &HashMap<String, Arc<JobDefinition>>,
) -> Result<()> {
    let recurrent: Vec<&Arc<JobDefinition>> =
        definitions.values().filter(|d| d.is_recurrent()).collect();
    if recurrent.is_empty() {
        return Ok(());
    }
    let now = store.now().await?;
    for definition in recurrent {
        let Some(schedule) = definition.schedule() else {
            continue;
        };
        let next_run_at = truncate_millis(schedule.next_run_after(now)?.resolve(now));
        store
            .register_recurrent(RecurrentRegistration {
                name: definition.name.clone(),
                schedule_key: schedule.key(),
                priority: definition.priority,
                next_run_at,
            })
            .await?;
    }
    Ok(())
}

/// A running worker set. Stop it with [`stop`](Workers::stop).
pub struct Workers {
    shared: Arc<Shared>,
    dispatcher: Option<JoinHandle<()>>,
}

impl fmt::Debug for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workers")
            .field("worker_id", &self.shared.worker_id)
            .field("jobs", &self.shared.claim.names)
            .finish()
    }
}

impl Workers {
    /// This worker set's id, as recorded on leases and execution records.
    pub fn worker_id(&self) -> &str {
        &self.shared.worker_id
    }

    /// How many executions are running now.
    pub fn running(&self) -> usize {
        self.shared.executions.len()
    }

    /// Stops gracefully: claims nothing more, waits up to the shutdown grace for running
    /// executions, then cancels the rest and releases their leases so another worker can claim
    /// them at once.
    pub async fn stop(mut self) {
        let shared = Arc::clone(&self.shared);
        shared.stop_claiming.cancel();
        if let Some(dispatcher) = self.dispatcher.take() {
            // The dispatcher ends at its next await; a panic in it is already logged.
            let _ = dispatcher.await;
        }
        shared.executions.close();
        let grace = shared
            .options
            .shutdown_grace
            .unwrap_or(shared.options.lock_time);
        if tokio::time::timeout(grace, shared.executions.wait())
            .await
            .is_err()
        {
            warn!(
                running = shared.executions.len(),
                "shutdown grace ended; cancelling running executions"
            );
            shared.cancel_running.cancel();
            shared.executions.wait().await;
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        if self.dispatcher.is_some() {
            self.shared.stop_claiming.cancel();
            self.shared.cancel_running.cancel();
        }
    }
}

struct Shared {
    store: Arc<dyn JobStore>,
    completer: Completer,
    due_soon: DueSoon,
    definitions: HashMap<String, Arc<JobDefinition>>,
    claim: ClaimRequest,
    slots: Arc<Semaphore>,
    stop_claiming: CancellationToken,
    cancel_running: CancellationToken,
    executions: TaskTracker,
    worker_id: String,
    options: WorkerOptions,
}

/// Claims jobs for free slots and starts their executions, until the worker set stops.
async fn dispatch(shared: Arc<Shared>) {
    let mut wakeups = shared.store.wakeups();
    let mut store_errors = 0u32;
    loop {
        let first = tokio::select! {
            biased;
            _ = shared.stop_claiming.cancelled() => return,
            permit = Arc::clone(&shared.slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let mut permits = vec![first];
        while let Ok(permit) = Arc::clone(&shared.slots).try_acquire_owned() {
            permits.push(permit);
        }
        if let Some(wakeups) = &mut wakeups {
            wakeups.mark_seen();
        }
        let request = ClaimRequest {
            limit: permits.len(),
            ..shared.claim.clone()
        };
        let asked_at = Instant::now();
        let claimed = match shared.store.claim(&request).await {
            Ok(claimed) => {
                store_errors = 0;
                claimed
            }
            Err(e) => {
                store_errors = store_errors.saturating_add(1);
                let pause = store_error_pause(store_errors, shared.options.poll_interval);
                warn!(error = %e, retry_in = ?pause, "claiming jobs failed");
                drop(permits);
                tokio::select! {
                    _ = shared.stop_claiming.cancelled() => return,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        let timing = ClaimTiming {
            asked_at,
            answered_at: Instant::now(),
        };
        let drained = claimed.len() < permits.len();
        for job in claimed {
            let Some(permit) = permits.pop() else { break };
            let shared_for_task = Arc::clone(&shared);
            shared
                .executions
                .spawn(execute(shared_for_task, job, timing, permit));
        }
        drop(permits);
        if drained {
            let poll_at = Instant::now() + shared.options.poll_interval;
            loop {
                let until = shared
                    .due_soon
                    .next()
                    .map_or(poll_at, |due| due.min(poll_at));
                let wait_for_wakeup = async {
                    match &mut wakeups {
                        Some(wakeups) => wakeups.wait().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = shared.stop_claiming.cancelled() => return,
                    _ = tokio::time::sleep_until(until) => {
                        shared.due_soon.forget_until(Instant::now());
                        break;
                    }
                    _ = wait_for_wakeup => break,
                    _ = shared.due_soon.changed.notified() => {}
                }
            }
        }
    }
}

/// Removes expired failed jobs and execution records every `interval`, until the set stops.
async fn prune(shared: Arc<Shared>, interval: Duration) {
    loop {
        tokio::select! {
            _ = shared.stop_claiming.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match shared.store.prune().await {
            Ok(report) if report.jobs + report.executions > 0 => {
                debug!(
                    jobs = report.jobs,
                    executions = report.executions,
                    "pruned expired records"
                );
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "pruning expired records failed"),
        }
    }
}

/// The instants at which jobs this worker set rescheduled (recurrent runs, retries) become due:
/// an idle dispatcher looks for work then, instead of at its next poll, on stores that cannot
/// wake it at a future time.
#[derive(Default)]
struct DueSoon {
    at: std::sync::Mutex<std::collections::BinaryHeap<std::cmp::Reverse<Instant>>>,
    changed: tokio::sync::Notify,
}

impl DueSoon {
    /// The most instants kept; beyond it the poll interval covers the rest.
    const LIMIT: usize = 10_000;

    fn note(&self, at: Instant) {
        let mut heap = self
            .at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if heap.len() >= Self::LIMIT {
            return;
        }
        let earliest = heap.peek().is_none_or(|first| at < first.0);
        heap.push(std::cmp::Reverse(at));
        drop(heap);
        if earliest {
            self.changed.notify_one();
        }
    }

    fn next(&self) -> Option<Instant> {
        let heap = self
            .at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        heap.peek().map(|first| first.0)
    }

    fn forget_until(&self, now: Instant) {
        let mut heap = self
            .at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while heap.peek().is_some_and(|first| first.0 <= now) {
            heap.pop();
        }
    }
}

/// The pause after `errors` store failures in a row: 100 ms doubling, at most the larger of the
/// poll interval and 5 s.
fn store_error_pause(errors: u32, poll_interval: Duration) -> Duration {
    let cap = poll_interval.max(Duration::from_secs(5));
    Duration::from_millis(100)
        .saturating_mul(2u32.saturating_pow(errors.saturating_sub(1).min(16)))
        .min(cap)
}

/// How an execution ended, before it is saved.
enum Ending {
    Ran(RunOutcome),
    Panicked(String),
    Stale,
    Cancelled,
}

/// Runs one claimed job to its end, saves the outcome, then keeps its slot for the cooldown.
async fn execute(
    shared: Arc<Shared>,
    claimed: ClaimedJob,
    timing: ClaimTiming,
    permit: OwnedSemaphorePermit,
) {
    let span = info_span!(
        "dogs.job",
        job.name = %claimed.job.name,
        job.id = %claimed.job.id,
        job.tries = claimed.job.tries,
    );
    async {
        match shared.definitions.get(&claimed.job.name) {
            Some(definition) => run_claimed(&shared, definition, claimed, timing).await,
            None => {
                // Only names of this worker set are claimed; release anything else untouched.
                warn!("claimed a job this worker set does not define; releasing it");
                let _ = shared
                    .store
                    .complete(&claimed.lease, Completion::Release)
                    .await;
            }
        }
        if !shared.options.cooldown_period.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(shared.options.cooldown_period) => {}
                _ = shared.stop_claiming.cancelled() => {}
            }
        }
        drop(permit);
    }
    .instrument(span)
    .await
}

async fn run_claimed(
    shared: &Shared,
    definition: &JobDefinition,
    claimed: ClaimedJob,
    timing: ClaimTiming,
) {
    let lock_time = definition.lock_time.unwrap_or(shared.options.lock_time);
    // The lease started no earlier than the claim was asked for: a deadline from then ends
    // no later than the store's.
    let (deadline_tx, deadline_rx) = watch::channel(timing.asked_at + lock_time);
    let cancel = CancellationToken::new();
    let job = &claimed.job;
    let ctx = JobContext::new(
        job.id.clone(),
        job.name.clone(),
        job.params.clone(),
        job.tries,
        claimed.was_stale,
        cancel.clone(),
        Some(LeaseKeeper {
            store: Arc::clone(&shared.store),
            lease: claimed.lease.clone(),
            deadline: deadline_tx,
        }),
    );
    let clock = StoreClock {
        at: claimed.claimed_at,
        instant: timing.answered_at,
    };
    let started_at = clock.now();
    let started = Instant::now();
    debug!(was_stale = claimed.was_stale, "execution started");

    let mut handler = tokio::spawn(definition.handler.run(job.params.clone(), ctx.clone()));
    let ending = tokio::select! {
        joined = &mut handler => match joined {
            Ok(outcome) => Ending::Ran(outcome),
            Err(e) if e.is_panic() => Ending::Panicked(panic_text(e.into_panic())),
            Err(_) => Ending::Cancelled,
        },
        _ = lease_ends(deadline_rx) => Ending::Stale,
        _ = shared.cancel_running.cancelled() => Ending::Cancelled,
    };
    if matches!(ending, Ending::Stale | Ending::Cancelled) {
        // Its outcome no longer counts; a handler that watches its cancellation gets a moment
        // to stop on its own, then it is stopped.
        cancel.cancel();
        if tokio::time::timeout(CANCEL_GRACE, &mut handler)
            .await
            .is_err()
        {
            handler.abort();
        }
    }
    drop(ctx);

    let outcome = Finisher {
        shared,
        definition,
        claimed: &claimed,
        started_at,
        duration: started.elapsed(),
        clock,
    };
    outcome.finish(ending).await;
}

/// When a claim was asked for and when it was answered, by the local monotonic clock.
#[derive(Clone, Copy)]
struct ClaimTiming {
    asked_at: Instant,
    answered_at: Instant,
}

/// The store's clock, estimated from the time it reported at the claim (counting from the
/// answer, so a slow claim does not push the estimate ahead of the store).
#[derive(Clone, Copy)]
struct StoreClock {
    at: DateTime<Utc>,
    instant: Instant,
}

impl StoreClock {
    fn now(&self) -> DateTime<Utc> {
        truncate_millis(add_duration(self.at, self.instant.elapsed()))
    }
}

/// Completes when the lease deadline passes without being moved by `extend_lock_time`.
async fn lease_ends(mut deadline: watch::Receiver<Instant>) {
    loop {
        let at = *deadline.borrow_and_update();
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {
                if !deadline.has_changed().unwrap_or(false) {
                    return;
                }
            }
            changed = deadline.changed() => {
                if changed.is_err() {
                    tokio::time::sleep_until(at).await;
                    return;
                }
            }
        }
    }
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".to_owned());
    format!("the handler panicked: {message}")
}

/// What to save for an execution that ended.
struct Decision {
    status: ExecutionStatus,
    error: Option<String>,
    result: Option<serde_json::Value>,
    completion: Completion,
    max_tries_reached: bool,
}

/// Saves how an execution ended: its record and the job's next state.
struct Finisher<'a> {
    shared: &'a Shared,
    definition: &'a JobDefinition,
    claimed: &'a ClaimedJob,
    started_at: DateTime<Utc>,
    duration: Duration,
    clock: StoreClock,
}

impl Finisher<'_> {
    async fn finish(&self, ending: Ending) {
        let decision = match ending {
            Ending::Ran(RunOutcome::Success(value)) => Decision {
                status: ExecutionStatus::Success,
                error: None,
                result: Some(value),
                completion: self.after_success(),
                max_tries_reached: false,
            },
            Ending::Ran(RunOutcome::BadParams(message))
                if self.claimed.job.kind == JobKind::Event =>
            {
                self.fail_for_good(message, false)
            }
            Ending::Ran(RunOutcome::Error(message) | RunOutcome::BadParams(message))
            | Ending::Panicked(message) => self.after_error(message),
            Ending::Stale => {
                let message = format!(
                    "the execution outlived its lease of {:?} and was stopped",
                    self.definition
                        .lock_time
                        .unwrap_or(self.shared.options.lock_time)
                );
                if let Some(on_stale) = &self.definition.on_stale {
                    on_stale(&self.failure(&message));
                }
                Decision {
                    status: ExecutionStatus::Stale,
                    error: Some(message),
                    result: None,
                    completion: Completion::Demote,
                    max_tries_reached: false,
                }
            }
            Ending::Cancelled => Decision {
                status: ExecutionStatus::Cancelled,
                error: Some("the workers shut down before the execution ended".to_owned()),
                result: None,
                completion: Completion::Release,
                max_tries_reached: false,
            },
        };
        let mut record = self.record(decision.status, decision.error.clone(), decision.result);
        match self.save(&decision.completion, record.as_ref()).await {
            Ok(()) => {
                if let Completion::Reschedule { run_at, .. } = &decision.completion {
                    self.shared.due_soon.note(self.local_instant(*run_at));
                }
                if decision.max_tries_reached {
                    if let Some(on_max_tries) = &self.shared.options.on_max_tries {
                        on_max_tries(&self.failure(decision.error.as_deref().unwrap_or_default()));
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::LockLost => {
                warn!("the lease was lost before the outcome was saved; the job runs again");
                if let Some(record) = &mut record {
                    record.error = Some(format!(
                        "the lease was lost before the outcome ({}) was saved",
                        record.status.as_str()
                    ));
                    record.status = ExecutionStatus::Stale;
                    record.result = None;
                    if let Err(e) = self.shared.store.record_execution(record).await {
                        error!(error = %e, "saving the execution record failed");
                    }
                }
            }
            Err(e) => {
                error!(error = %e, "saving the outcome failed; the job runs again once its lease ends");
            }
        }
    }

    /// Saves the outcome, retrying a store that is briefly unavailable a few times; after that
    /// the lease runs out and the job runs again.
    async fn save(&self, completion: &Completion, record: Option<&Execution>) -> Result<()> {
        let finish = || Finish {
            lease: self.claimed.lease.clone(),
            completion: completion.clone(),
            execution: record.cloned(),
        };
        let mut pause = Duration::from_millis(100);
        for _ in 0..3 {
            match self.shared.completer.finish(finish()).await {
                Err(e) if e.kind() == ErrorKind::Unavailable => {
                    warn!(error = %e, retry_in = ?pause, "saving the outcome failed");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                outcome => return outcome,
            }
        }
        self.shared.completer.finish(finish()).await
    }

    fn after_success(&self) -> Completion {
        match self.definition.schedule() {
            Some(_) => Completion::Reschedule {
                run_at: self.next_normal_run(),
                priority: None,
                reset_tries: true,
            },
            None => Completion::Remove,
        }
    }

    fn after_error(&self, message: String) -> Decision {
        let retry = |message: String, run_at| Decision {
            status: ExecutionStatus::Error,
            error: Some(message),
            result: None,
            completion: Completion::Reschedule {
                run_at,
                priority: None,
                reset_tries: false,
            },
            max_tries_reached: false,
        };
        let max_tries = match &self.definition.kind {
            DefinitionKind::Recurrent { .. } => return retry(message, self.next_normal_run()),
            DefinitionKind::Event { max_tries } => *max_tries,
        };
        let action = match &self.definition.on_error {
            Some(on_error) => on_error(&self.failure(&message)),
            None => ErrorAction::Default,
        };
        let tries = self.claimed.job.tries;
        match action {
            ErrorAction::RetryIn(delay) => retry(message, RunAt::In(delay)),
            ErrorAction::Dismiss => self.fail_for_good(message, false),
            ErrorAction::Default if tries < max_tries => retry(
                message,
                RunAt::In(self.shared.options.retry_backoff.delay(tries)),
            ),
            ErrorAction::Default => self.fail_for_good(message, true),
        }
    }

    fn fail_for_good(&self, message: String, max_tries_reached: bool) -> Decision {
        Decision {
            status: ExecutionStatus::Failed,
            error: Some(message.clone()),
            result: None,
            completion: self.fail(message),
            max_tries_reached,
        }
    }

    fn fail(&self, error: String) -> Completion {
        Completion::Fail {
            error,
            retain_for: self.shared.options.failed_retention,
        }
    }

    /// When `run_at` comes, by the local monotonic clock.
    fn local_instant(&self, run_at: RunAt) -> Instant {
        let now = Instant::now();
        match run_at {
            RunAt::Now => now,
            RunAt::In(delay) => now + delay,
            RunAt::At(at) => now + (at - self.clock.now()).to_std().unwrap_or_default(),
        }
    }

    fn next_normal_run(&self) -> RunAt {
        let Some(schedule) = self.definition.schedule() else {
            return RunAt::Now;
        };
        match schedule.next_run_after(self.clock.now()) {
            Ok(run_at) => run_at,
            Err(e) => {
                error!(error = %e, "the recurrent job has no next run; retrying in an hour");
                RunAt::In(Duration::from_secs(3600))
            }
        }
    }

    fn failure(&self, error: &str) -> ExecutionFailure {
        let job = &self.claimed.job;
        ExecutionFailure {
            job_id: job.id.clone(),
            name: job.name.clone(),
            tries: job.tries,
            params: job.params.clone(),
            error: error.to_owned(),
        }
    }

    fn record(
        &self,
        status: ExecutionStatus,
        error: Option<String>,
        result: Option<serde_json::Value>,
    ) -> Option<Execution> {
        let keep = self.definition.save_executions_for;
        if keep.is_zero() {
            return None;
        }
        let job = &self.claimed.job;
        let ended_at = self.clock.now();
        Some(Execution {
            job_id: job.id.clone(),
            execution_id: crate::job::random_id(),
            name: job.name.clone(),
            kind: job.kind,
            priority: job.priority,
            tries: job.tries,
            unique_identifier: job.unique_identifier.clone(),
            params: job.params.clone(),
            started_at: self.started_at,
            ended_at,
            duration: Duration::from_millis(
                u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
            ),
            status,
            error,
            result,
            worker_id: self.shared.worker_id.clone(),
            expires_at: truncate_millis(add_duration(ended_at, keep)),
        })
    }
}
