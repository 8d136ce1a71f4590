//! Helpers the cases share: waiting on conditions with a deadline, and common set-ups.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dogs_core::{
    ClaimRequest, ClaimedJob, JobId, JobStore, NewJob, RetryBackoff, Scheduled, WorkerOptions,
};

/// How long a condition may take before the case fails.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// Polls `check` every 10 ms until it holds; fails the case after `deadline`.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(what, deadline, move || {
        let checked = check();
        async move { checked.await.then_some(()) }
    })
    .await
}

/// Polls `check` every 10 ms until it gives a value; fails the case after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Worker options for tests: quick polls and retries, no cooldown, a 5 s lease.
pub fn fast_options() -> WorkerOptions {
    WorkerOptions {
        workers_count: 4,
        lock_time: Duration::from_secs(5),
        poll_interval: Duration::from_millis(100),
        cooldown_period: Duration::ZERO,
        shutdown_grace: Some(Duration::from_secs(5)),
        retry_backoff: RetryBackoff {
            base: Duration::from_millis(20),
            max: Duration::from_secs(1),
            jitter: 0.0,
        },
        ..WorkerOptions::default()
    }
}

/// [`fast_options`] without automatic lease renewal, for cases where an execution is to
/// outlive its lease.
pub fn without_renewal() -> WorkerOptions {
    WorkerOptions {
        auto_extend: false,
        ..fast_options()
    }
}

/// Schedules `job`, which must be new, and returns its id.
pub async fn schedule_new(store: &dyn JobStore, job: NewJob) -> JobId {
    match store.schedule(job).await {
        Ok(Scheduled::Created(id)) => id,
        other => panic!("expected a new job, got {other:?}"),
    }
}

/// Claims up to `limit` jobs of `name` with a lease of `lock_time`.
pub async fn claim(
    store: &dyn JobStore,
    name: &str,
    lock_time: Duration,
    limit: usize,
) -> Vec<ClaimedJob> {
    store
        .claim(&ClaimRequest::new([name], lock_time, limit).worker_id("test"))
        .await
        .unwrap_or_else(|e| panic!("claim failed: {e}"))
        .jobs
}

/// Claims exactly one job of `name`, failing the case if there is none.
pub async fn claim_one(store: &dyn JobStore, name: &str, lock_time: Duration) -> ClaimedJob {
    let mut claimed = claim(store, name, lock_time, 1).await;
    match claimed.pop() {
        Some(job) => job,
        None => panic!("expected a claimable job of '{name}', found none"),
    }
}

/// Waits until a job of `name` is claimable and claims it.
pub async fn claim_when_due(store: &dyn JobStore, name: &str, lock_time: Duration) -> ClaimedJob {
    wait_for(
        &format!("a claimable job of '{name}'"),
        DEADLINE,
        || async { claim(store, name, lock_time, 1).await.pop() },
    )
    .await
}

/// The store's clock.
pub async fn store_now(store: &dyn JobStore) -> DateTime<Utc> {
    store
        .now()
        .await
        .unwrap_or_else(|e| panic!("reading the store's clock failed: {e}"))
}

/// Waits until the store's clock has passed `at`.
pub async fn wait_past(store: &dyn JobStore, at: DateTime<Utc>) {
    wait_until(
        &format!("the store's clock to pass {at}"),
        DEADLINE,
        || async { store_now(store).await > at },
    )
    .await
}

/// Asserts that `a` and `b` are at most `tolerance` apart.
pub fn assert_close(a: DateTime<Utc>, b: DateTime<Utc>, tolerance: Duration, what: &str) {
    let gap = (a - b).abs().to_std().unwrap_or(Duration::MAX);
    assert!(
        gap <= tolerance,
        "{what}: {a} and {b} are {gap:?} apart, more than {tolerance:?}"
    );
}

/// A shared list that handlers append to.
pub type Log<T> = Arc<std::sync::Mutex<Vec<T>>>;

/// An empty [`Log`].
pub fn log<T>() -> Log<T> {
    Arc::new(std::sync::Mutex::new(Vec::new()))
}

/// A copy of what a [`Log`] holds.
pub fn read<T: Clone>(log: &Log<T>) -> Vec<T> {
    log.lock().map(|l| l.clone()).unwrap_or_default()
}

/// Appends to a [`Log`].
pub fn push<T>(log: &Log<T>, value: T) {
    if let Ok(mut l) = log.lock() {
        l.push(value);
    }
}

/// A store whose claims are changed on their way to the store, to put workers in situations a
/// real deployment meets: leases shorter than the worker believes (a worker that stalled past its
/// lease), or claims that win fewer jobs than asked (other claimers won the rest). Every other
/// call goes to the store unchanged.
pub struct AlteredClaims {
    inner: Arc<dyn JobStore>,
    alter: fn(&mut ClaimRequest, Duration),
    value: Duration,
    wakeups: bool,
}

impl AlteredClaims {
    /// Claims lease for `lock_time`, whatever the claimer asks for.
    pub fn short_lease(inner: Arc<dyn JobStore>, lock_time: Duration) -> Self {
        AlteredClaims {
            inner,
            alter: |request, lock_time| {
                for name in &mut request.names {
                    name.lock_time = lock_time;
                }
            },
            value: lock_time,
            wakeups: true,
        }
    }

    /// Claims lease one job at a time, as when other claimers win the rest of every batch.
    pub fn one_at_a_time(inner: Arc<dyn JobStore>) -> Self {
        AlteredClaims {
            inner,
            alter: |request, _| request.limit = request.limit.min(1),
            value: Duration::ZERO,
            wakeups: true,
        }
    }

    /// Claims unchanged, and no wake-ups: workers only poll, and hear of nothing the store
    /// would tell them.
    pub fn polling_only(inner: Arc<dyn JobStore>) -> Self {
        AlteredClaims {
            inner,
            alter: |_, _| {},
            value: Duration::ZERO,
            wakeups: false,
        }
    }
}

#[async_trait::async_trait]
impl JobStore for AlteredClaims {
    async fn now(&self) -> dogs_core::Result<DateTime<Utc>> {
        self.inner.now().await
    }
    fn max_params_bytes(&self) -> usize {
        self.inner.max_params_bytes()
    }
    async fn schedule(&self, job: NewJob) -> dogs_core::Result<Scheduled> {
        self.inner.schedule(job).await
    }
    async fn schedule_many(
        &self,
        jobs: Vec<NewJob>,
    ) -> dogs_core::Result<Vec<dogs_core::Result<Scheduled>>> {
        self.inner.schedule_many(jobs).await
    }
    async fn register_recurrent(
        &self,
        job: dogs_core::RecurrentRegistration,
    ) -> dogs_core::Result<JobId> {
        self.inner.register_recurrent(job).await
    }
    async fn claim(&self, request: &ClaimRequest) -> dogs_core::Result<dogs_core::Claimed> {
        let mut request = request.clone();
        (self.alter)(&mut request, self.value);
        self.inner.claim(&request).await
    }
    async fn extend_lock(
        &self,
        lease: &dogs_core::Lease,
        lock_time: Duration,
    ) -> dogs_core::Result<DateTime<Utc>> {
        self.inner.extend_lock(lease, lock_time).await
    }
    async fn complete(
        &self,
        lease: &dogs_core::Lease,
        completion: dogs_core::Completion,
    ) -> dogs_core::Result<()> {
        self.inner.complete(lease, completion).await
    }
    async fn finish(
        &self,
        lease: &dogs_core::Lease,
        completion: dogs_core::Completion,
        execution: Option<&dogs_core::Execution>,
    ) -> dogs_core::Result<()> {
        self.inner.finish(lease, completion, execution).await
    }
    async fn finish_many(
        &self,
        items: Vec<dogs_core::Finish>,
    ) -> dogs_core::Result<Vec<dogs_core::Result<()>>> {
        self.inner.finish_many(items).await
    }
    async fn record_execution(&self, execution: &dogs_core::Execution) -> dogs_core::Result<()> {
        self.inner.record_execution(execution).await
    }
    async fn get_job(&self, id: &JobId) -> dogs_core::Result<Option<dogs_core::Job>> {
        self.inner.get_job(id).await
    }
    async fn list_jobs(
        &self,
        query: &dogs_core::JobQuery,
    ) -> dogs_core::Result<Vec<dogs_core::Job>> {
        self.inner.list_jobs(query).await
    }
    async fn count_jobs(&self) -> dogs_core::Result<Vec<dogs_core::JobCounts>> {
        self.inner.count_jobs().await
    }
    async fn list_recurrent(&self) -> dogs_core::Result<Vec<dogs_core::Job>> {
        self.inner.list_recurrent().await
    }
    async fn execution_stats(
        &self,
        since: DateTime<Utc>,
    ) -> dogs_core::Result<Vec<dogs_core::ExecutionMinute>> {
        self.inner.execution_stats(since).await
    }
    async fn executions(
        &self,
        query: &dogs_core::ExecutionQuery,
    ) -> dogs_core::Result<Vec<dogs_core::Execution>> {
        self.inner.executions(query).await
    }
    async fn cancel(&self, id: &JobId) -> dogs_core::Result<bool> {
        self.inner.cancel(id).await
    }
    async fn cancel_unique(&self, name: &str, unique_identifier: &str) -> dogs_core::Result<bool> {
        self.inner.cancel_unique(name, unique_identifier).await
    }
    async fn retry(&self, id: &JobId) -> dogs_core::Result<bool> {
        self.inner.retry(id).await
    }
    async fn retry_failed_batch(
        &self,
        name: &str,
        after: Option<&dogs_core::JobId>,
        limit: usize,
    ) -> dogs_core::Result<dogs_core::RetryBatch> {
        self.inner.retry_failed_batch(name, after, limit).await
    }
    async fn set_paused(&self, name: &str, paused: bool) -> dogs_core::Result<()> {
        self.inner.set_paused(name, paused).await
    }
    async fn set_concurrency_limit(&self, name: &str, limit: Option<u32>) -> dogs_core::Result<()> {
        self.inner.set_concurrency_limit(name, limit).await
    }
    async fn name_settings(&self) -> dogs_core::Result<Vec<dogs_core::NameSettings>> {
        self.inner.name_settings().await
    }
    async fn set_progress(
        &self,
        lease: &dogs_core::Lease,
        progress: &serde_json::Value,
    ) -> dogs_core::Result<()> {
        self.inner.set_progress(lease, progress).await
    }
    async fn prune(&self) -> dogs_core::Result<dogs_core::PruneReport> {
        self.inner.prune().await
    }
    async fn remove_all(&self) -> dogs_core::Result<()> {
        self.inner.remove_all().await
    }
    fn wakeups(&self) -> Option<dogs_core::WakeUps> {
        if self.wakeups {
            self.inner.wakeups()
        } else {
            None
        }
    }
}
