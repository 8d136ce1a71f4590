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
