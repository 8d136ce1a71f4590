//! The worker set: `start_workers`, its options, and the handle that stops it. The claim loop
//! is in `dispatch`, one execution in `execute`, saving its outcome in `outcome`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, warn};

use crate::claim::{ClaimName, ClaimRequest};
use crate::completer::Completer;
use crate::definition::{ExecutionFailure, JobDefinition};
use crate::error::{Error, Result};
use crate::job::{truncate_millis, RecurrentRegistration};
use crate::limits::{check_duration, check_positive};
use crate::retry::RetryBackoff;
use crate::store::JobStore;

/// How long [`Workers::stop`] waits, after the shutdown grace and the cancellation of what
/// still runs, for the outcomes to be saved; then it returns whatever is left (those jobs run
/// again once their leases end).
pub const SHUTDOWN_SAVE_TIME: Duration = Duration::from_secs(5);

/// How many outcomes may wait to be saved at once, slots freed meanwhile (at least
/// `workers_count`).
const SAVING_AT_ONCE: usize = 512;

/// How long [`Workers::stop`] gives the claim loop, even with a shorter shutdown grace, to give
/// back the jobs it claimed ahead of free slots.
const GIVE_BACK_TIME: Duration = Duration::from_secs(1);

/// Called once when an event job has failed `max_tries` times and is failed for good.
pub type OnMaxTries = Arc<dyn Fn(&ExecutionFailure) + Send + Sync>;

/// How a worker set runs. Every field has the default of the original library; set the ones you
/// need with the builder methods, named after the fields, in the style of the job definitions'
/// `.on_error(..)` (or as a struct with `..Default::default()`).
///
/// ```
/// use std::time::Duration;
/// use dogs_core::prelude::*;
///
/// let options = WorkerOptions::new()
///     .workers_count(16)
///     .poll_interval(Duration::from_secs(1))
///     .on_max_tries(|failure| eprintln!("{} failed for good: {}", failure.name, failure.error));
///
/// let same_count = WorkerOptions { workers_count: 16, ..Default::default() };
/// # let _ = (options, same_count);
/// ```
#[derive(Clone)]
pub struct WorkerOptions {
    /// Executions this worker set runs at once (default 4).
    pub workers_count: usize,
    /// The most jobs claimed ahead of free slots (default 1,024; 0 claims only for free slots).
    ///
    /// While jobs run quickly, each claim also takes the jobs the set runs through in the next
    /// 50 ms at the pace its executions have been ending, so a claim's cost is spread over many
    /// jobs; jobs that take long hold nothing ahead. A job claimed ahead waits for a slot with its lease running: it
    /// waits at most a tenth of its lease (at most 1 s) and is given back unrun past that, its
    /// try with it, so its handler keeps nearly all of its lease. When the set stops, what
    /// waits is given back at once.
    pub prefetch: usize,
    /// The lease on a claimed job (default 30 s); a job still running when it ends is stale.
    /// A definition's own `lock_time` overrides it.
    pub lock_time: Duration,
    /// Wait after a look that found nothing (default 3 s); a store's wake-up ends it sooner.
    pub poll_interval: Duration,
    /// Pause of a slot after an execution before it claims again (default 100 ms).
    pub cooldown_period: Duration,
    /// How long [`Workers::stop`] waits for running executions (default: `lock_time`); then
    /// it cancels them and waits at most [`SHUTDOWN_SAVE_TIME`] more for their outcomes.
    pub shutdown_grace: Option<Duration>,
    /// Retry delays for failed event jobs without `on_error`.
    pub retry_backoff: RetryBackoff,
    /// How long a failed event job stays visible before it is removed (default 7 days).
    pub failed_retention: Duration,
    /// Recorded as the lease holder and in execution records (default: process id and a random
    /// suffix).
    pub worker_id: Option<String>,
    /// Called once when an event job is failed for good after `max_tries` claims; set it with
    /// [`WorkerOptions::on_max_tries`](WorkerOptions::on_max_tries()), which says when it runs.
    pub on_max_tries: Option<OnMaxTries>,
    /// How often this worker set asks the store to remove expired failed jobs and execution
    /// records (default every minute); `None` leaves pruning to the store or to you.
    pub prune_interval: Option<Duration>,
    /// Whether leases renew themselves while handlers run, every third of `lock_time` (default
    /// on); a definition's own `auto_extend` overrides it. See the crate docs for why it is on.
    pub auto_extend: bool,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            workers_count: 4,
            prefetch: 1024,
            lock_time: Duration::from_secs(30),
            poll_interval: Duration::from_secs(3),
            cooldown_period: Duration::from_millis(100),
            shutdown_grace: None,
            retry_backoff: RetryBackoff::default(),
            failed_retention: Duration::from_secs(7 * 24 * 3600),
            worker_id: None,
            on_max_tries: None,
            prune_interval: Some(Duration::from_secs(60)),
            auto_extend: true,
        }
    }
}

impl fmt::Debug for WorkerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerOptions")
            .field("workers_count", &self.workers_count)
            .field("prefetch", &self.prefetch)
            .field("lock_time", &self.lock_time)
            .field("poll_interval", &self.poll_interval)
            .field("cooldown_period", &self.cooldown_period)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("retry_backoff", &self.retry_backoff)
            .field("failed_retention", &self.failed_retention)
            .field("worker_id", &self.worker_id)
            .field("on_max_tries", &self.on_max_tries.is_some())
            .field("prune_interval", &self.prune_interval)
            .field("auto_extend", &self.auto_extend)
            .finish()
    }
}

impl WorkerOptions {
    /// The defaults, to set options on with the builder methods.
    pub fn new() -> Self {
        WorkerOptions::default()
    }

    /// Executions this worker set runs at once (default 4).
    pub fn workers_count(mut self, workers_count: usize) -> Self {
        self.workers_count = workers_count;
        self
    }

    /// The most jobs claimed ahead of free slots (default 1,024; 0 claims only for free
    /// slots); see the field [`WorkerOptions::prefetch`].
    pub fn prefetch(mut self, prefetch: usize) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// The lease on a claimed job (default 30 s), unless a definition sets its own.
    pub fn lock_time(mut self, lock_time: Duration) -> Self {
        self.lock_time = lock_time;
        self
    }

    /// Wait after a look that found nothing (default 3 s).
    pub fn poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }

    /// Pause of a slot after an execution before it claims again (default 100 ms).
    pub fn cooldown_period(mut self, cooldown_period: Duration) -> Self {
        self.cooldown_period = cooldown_period;
        self
    }

    /// How long [`Workers::stop`] waits for running executions (default: `lock_time`).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = Some(grace);
        self
    }

    /// Retry delays for failed event jobs without `on_error`.
    pub fn retry_backoff(mut self, retry_backoff: RetryBackoff) -> Self {
        self.retry_backoff = retry_backoff;
        self
    }

    /// How long a failed event job stays visible before it is removed (default 7 days).
    pub fn failed_retention(mut self, failed_retention: Duration) -> Self {
        self.failed_retention = failed_retention;
        self
    }

    /// Recorded as the lease holder and in execution records.
    pub fn worker_id(mut self, worker_id: impl Into<String>) -> Self {
        self.worker_id = Some(worker_id.into());
        self
    }

    /// Called once when an event job is failed for good: its claims reached `max_tries`
    /// (after errors the default policy retried, or executions that went stale or whose
    /// worker died). Not called for [`ErrorAction::Dismiss`](crate::ErrorAction), nor when
    /// `on_error`'s `RetryIn` keeps retrying: `RetryIn` is not capped by `max_tries`. It runs
    /// on the worker that saved the failure and must not block; a hook that panics is logged
    /// and ignored.
    pub fn on_max_tries(
        mut self,
        on_max_tries: impl Fn(&ExecutionFailure) + Send + Sync + 'static,
    ) -> Self {
        self.on_max_tries = Some(Arc::new(on_max_tries));
        self
    }

    /// How often this worker set removes expired failed jobs and execution records (default
    /// every minute); `None` leaves pruning to the store or to you.
    pub fn prune_interval(mut self, prune_interval: Option<Duration>) -> Self {
        self.prune_interval = prune_interval;
        self
    }

    /// Whether leases renew themselves while handlers run (default on).
    pub fn auto_extend(mut self, auto_extend: bool) -> Self {
        self.auto_extend = auto_extend;
        self
    }

    /// Checks the options as `start_workers` does; every problem is a `Config` error naming the
    /// field: a `workers_count` of zero or over [`MAX_WORKERS_COUNT`](crate::MAX_WORKERS_COUNT),
    /// a zero `lock_time`, `poll_interval` or `prune_interval`, a duration over
    /// [`MAX_DURATION`](crate::MAX_DURATION), a `retry_backoff` that
    /// [`RetryBackoff::validate`] refuses.
    pub fn validate(&self) -> Result<()> {
        if self.workers_count == 0 || self.workers_count > crate::MAX_WORKERS_COUNT {
            return Err(Error::config(format!(
                "workers_count is {}; it must be from 1 to {}",
                self.workers_count,
                crate::MAX_WORKERS_COUNT
            )));
        }
        if self.prefetch > crate::MAX_WORKERS_COUNT {
            return Err(Error::config(format!(
                "prefetch is {}; it must be at most {}",
                self.prefetch,
                crate::MAX_WORKERS_COUNT
            )));
        }
        check_positive("lock_time", self.lock_time)?;
        check_positive("poll_interval", self.poll_interval)?;
        check_duration("cooldown_period", self.cooldown_period)?;
        if let Some(grace) = self.shutdown_grace {
            check_duration("shutdown_grace", grace)?;
        }
        check_duration("failed_retention", self.failed_retention)?;
        if let Some(interval) = self.prune_interval {
            check_positive("prune_interval", interval)?;
        }
        self.retry_backoff.validate()
    }

    /// How long `stop` waits for running executions.
    pub(crate) fn grace(&self) -> Duration {
        self.shutdown_grace.unwrap_or(self.lock_time)
    }
}

/// Checks definitions and options, registers the recurrent jobs, and starts a worker set.
///
/// Every invalid definition or option is a `Config` error returned before anything is written:
/// an empty or duplicate job name, a recurrent job with zero or several schedules, a zero
/// `run_every`, an invalid cron expression or timezone, a zero `workers_count` or `lock_time`,
/// a duration over [`MAX_DURATION`](crate::MAX_DURATION).
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
            max: None,
        })
        .collect();
    names.sort_by(|a, b| a.name.cmp(&b.name));

    let name_caps = definitions
        .values()
        .filter_map(|d| {
            let cap = d.max_parallel?;
            Some((d.name.clone(), NameCap::new(cap)))
        })
        .collect();
    let metrics = definitions
        .keys()
        .map(|name| (name.clone(), crate::metrics::NameMetrics::new(name)))
        .collect();
    let shared = Arc::new(Shared {
        completer: Completer::start(Arc::clone(&store)),
        claim: ClaimRequest {
            names,
            limit: options.workers_count,
            worker_id: worker_id.clone(),
        },
        store,
        definitions,
        slots: Arc::new(Semaphore::new(options.workers_count)),
        saving: Arc::new(Semaphore::new(options.workers_count.max(SAVING_AT_ONCE))),
        ended: std::sync::atomic::AtomicU64::new(0),
        stop_claiming: CancellationToken::new(),
        cancel_running: CancellationToken::new(),
        give_up_saving: CancellationToken::new(),
        executions: TaskTracker::new(),
        warned: Mutex::new(HashSet::new()),
        running: Mutex::new(HashMap::new()),
        name_caps,
        name_freed: tokio::sync::Notify::new(),
        metrics,
        worker_id,
        options,
    });
    tokio::spawn(crate::cancel::watch(Arc::clone(&shared)));
    if let Some(interval) = shared.options.prune_interval {
        tokio::spawn(crate::prune::prune(Arc::clone(&shared), interval));
    }
    let dispatcher = tokio::spawn(crate::dispatch::dispatch(Arc::clone(&shared)));
    Ok(Workers {
        shared,
        dispatcher: Some(dispatcher),
    })
}

/// Creates or updates the record of every recurrent job of the set. A `get_next_run` that
/// panics here is logged, and the record, if its schedule changed, is due at once.
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
        let next_run_at = match schedule.next_run_after(now) {
            Ok(run_at) => crate::limits::clamp_run_at(run_at.resolve(now)),
            Err(e) => {
                error!(job.name = %definition.name, error = %e, "the recurrent job has no next run; it is due at once");
                now
            }
        };
        store
            .register_recurrent(RecurrentRegistration {
                name: definition.name.clone(),
                schedule_key: schedule.key(),
                priority: definition.priority,
                next_run_at: truncate_millis(next_run_at),
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

    /// How many executions are running now (handlers, and outcomes being saved), with the calls
    /// under way that give back jobs claimed but not run: up to `workers_count` handlers, plus
    /// the outcomes still being saved after their slots were freed.
    pub fn running(&self) -> usize {
        self.shared.executions.len()
    }

    /// Stops gracefully: claims nothing more, waits up to the shutdown grace for running
    /// executions, then cancels the rest and releases their leases so another worker can claim
    /// them at once.
    ///
    /// It returns within the shutdown grace plus [`SHUTDOWN_SAVE_TIME`], whatever the store
    /// does: an outcome that could not be saved by then is given up (its job runs again once its
    /// lease ends), and a handler that blocks its thread is left to return on its own.
    pub async fn stop(mut self) {
        let shared = Arc::clone(&self.shared);
        shared.stop_claiming.cancel();
        let stopped_at = Instant::now();
        let grace_ends = later(stopped_at, shared.options.grace());
        let save_ends = later(grace_ends, SHUTDOWN_SAVE_TIME);
        if let Some(mut dispatcher) = self.dispatcher.take() {
            // The dispatcher ends at its next await, once it has given back the jobs it claimed
            // ahead of free slots; a claim under way is bounded by the store's request timeout.
            // It has the grace, and at least `GIVE_BACK_TIME` even with a short grace.
            let dispatcher_ends = grace_ends
                .max(later(stopped_at, GIVE_BACK_TIME))
                .min(save_ends);
            if tokio::time::timeout_at(dispatcher_ends, &mut dispatcher)
                .await
                .is_err()
            {
                dispatcher.abort();
            }
        }
        shared.executions.close();
        if tokio::time::timeout_at(grace_ends, shared.executions.wait())
            .await
            .is_ok()
        {
            return;
        }
        warn!(
            running = shared.executions.len(),
            "shutdown grace ended; cancelling running executions"
        );
        shared.cancel_running.cancel();
        if tokio::time::timeout_at(save_ends, shared.executions.wait())
            .await
            .is_err()
        {
            shared.give_up_saving.cancel();
            error!(
                left = shared.executions.len(),
                "executions did not end within the shutdown grace and the save time; their jobs run again once their leases end"
            );
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        if self.dispatcher.is_some() {
            self.shared.stop_claiming.cancel();
            self.shared.cancel_running.cancel();
            self.shared.give_up_saving.cancel();
        }
    }
}

/// What the dispatcher, the executions and the handle share.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn JobStore>,
    pub(crate) completer: Completer,
    pub(crate) definitions: HashMap<String, Arc<JobDefinition>>,
    pub(crate) claim: ClaimRequest,
    pub(crate) slots: Arc<Semaphore>,
    /// Outcomes being saved: a slot is freed before its outcome is saved while one is free.
    pub(crate) saving: Arc<Semaphore>,
    /// Executions ended so far (their slots freed): the pace that sizes the prefetch queue.
    pub(crate) ended: std::sync::atomic::AtomicU64,
    /// Fires when the set stops: claim nothing more.
    pub(crate) stop_claiming: CancellationToken,
    /// Fires when the shutdown grace ends: cancel what still runs.
    pub(crate) cancel_running: CancellationToken,
    /// Fires when the save time after the grace ends: stop retrying outcomes.
    pub(crate) give_up_saving: CancellationToken,
    pub(crate) executions: TaskTracker,
    /// Job names whose `get_next_run` already had a warning.
    pub(crate) warned: Mutex<HashSet<String>>,
    /// The executions running now, by lease token: their job, and their signal for a
    /// cancellation by an operator.
    pub(crate) running: Mutex<HashMap<crate::LeaseToken, (crate::JobId, CancellationToken)>>,
    /// Per-name limits of this set (`max_parallel`), with what each name holds now.
    pub(crate) name_caps: HashMap<String, NameCap>,
    /// Fires when an execution of a name with a limit ends: claim again.
    pub(crate) name_freed: tokio::sync::Notify,
    /// Each job name's metrics.
    pub(crate) metrics: HashMap<String, crate::metrics::NameMetrics>,
    pub(crate) worker_id: String,
    pub(crate) options: WorkerOptions,
}

/// A job name's `max_parallel` in one worker set, and how many of its jobs the set holds now
/// (running, or claimed and waiting for a slot).
pub(crate) struct NameCap {
    pub(crate) max: usize,
    pub(crate) held: std::sync::atomic::AtomicUsize,
}

impl NameCap {
    fn new(max: usize) -> Self {
        NameCap {
            max,
            held: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

impl Shared {
    /// The claim to make for `limit` jobs: names at their `max_parallel` are left out, the
    /// others capped at what they have left. `None` when every name is at its limit.
    pub(crate) fn claim_request(&self, limit: usize) -> Option<ClaimRequest> {
        let mut request = ClaimRequest {
            limit,
            ..self.claim.clone()
        };
        if self.name_caps.is_empty() {
            return Some(request);
        }
        request
            .names
            .retain_mut(|n| match self.name_caps.get(&n.name) {
                Some(cap) => {
                    let held = cap.held.load(std::sync::atomic::Ordering::SeqCst);
                    let left = cap.max.saturating_sub(held);
                    n.max = Some(left);
                    left > 0
                }
                None => true,
            });
        (!request.names.is_empty()).then_some(request)
    }

    /// Counts a claimed job against its name's limit, always: `false` when that takes the
    /// name past its `max_parallel` (the job is to be given back, which releases the hold).
    pub(crate) fn hold(&self, name: &str) -> bool {
        match self.name_caps.get(name) {
            Some(cap) => cap.held.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < cap.max,
            None => true,
        }
    }

    /// A claimed job of `name` has ended (run, or given back): its name may claim again.
    pub(crate) fn unhold(&self, name: &str) {
        if let Some(cap) = self.name_caps.get(name) {
            let _ = cap.held.fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |h| Some(h.saturating_sub(1)),
            );
            self.name_freed.notify_one();
        }
    }

    /// Whether this is the first warning of `what` for job `name`.
    pub(crate) fn first_warning(&self, name: &str) -> bool {
        self.warned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned())
    }
}

/// `at + d`, or as far as the clock goes.
pub(crate) fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(crate::MAX_DURATION))
        .unwrap_or(at)
}
