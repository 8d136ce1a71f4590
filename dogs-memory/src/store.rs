//! [`MemoryStore`]: the [`JobStore`] implementation.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dogs_core::{
    async_trait, truncate_millis, ClaimRequest, Claimed, Completion, Execution, ExecutionMinute,
    ExecutionQuery, Finish, Job, JobCounts, JobId, JobQuery, JobStore, Lease, NameSettings, NewJob,
    PruneBatch, PruneReport, RecurrentRegistration, Result, RetryBatch, Scheduled, WakeUpSender,
    WakeUps, PRUNE_BATCH,
};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::MemoryStoreBuilder;
use crate::state::{Effects, State};

/// A complete job store in memory: thread safe, shared by every clone, with an injectable clock.
///
/// The reference implementation of the store contract, and the store for unit tests and for
/// single-process services that can lose their queue on restart. Idle workers are woken at once
/// when a job becomes due, whether it was scheduled for now or its run time or a lease end has
/// just been reached.
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("max_params_bytes", &self.shared.max_params_bytes)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) clock: Arc<dyn Clock>,
    max_params_bytes: usize,
    pub(crate) wake: WakeUpSender,
    /// Tells the timer task that an earlier instant may need watching.
    timer_changed: watch::Sender<()>,
    /// The instant (ms since the epoch) the timer task is sleeping until; `i64::MAX` for none.
    pub(crate) armed_until: AtomicI64,
    timer_started: OnceLock<()>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    /// A store on the system clock.
    pub fn new() -> Self {
        MemoryStoreBuilder::default().build()
    }

    /// A builder to set the clock and the params limit.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder::default()
    }

    pub(crate) fn from_builder(builder: MemoryStoreBuilder) -> Self {
        MemoryStore {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                clock: builder.clock,
                max_params_bytes: builder.max_params_bytes,
                wake: WakeUpSender::new(),
                timer_changed: watch::Sender::new(()),
                armed_until: AtomicI64::new(i64::MAX),
                timer_started: OnceLock::new(),
            }),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }

    fn now(&self) -> DateTime<Utc> {
        truncate_millis(self.shared.clock.now())
    }

    fn apply(&self, effects: Effects) {
        if effects.due_now {
            self.shared.wake.notify();
        }
        if let Some(at) = effects.due_at {
            if at.timestamp_millis() < self.shared.armed_until.load(Ordering::Acquire) {
                self.shared.timer_changed.send_replace(());
            }
        }
    }

    /// Starts the task that wakes workers when a run time or a lease end is reached.
    fn start_timer(&self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.shared.timer_started.get_or_init(|| {
            let changed = self.shared.timer_changed.subscribe();
            let jumps = self.shared.clock.jumps();
            tokio::spawn(crate::wakeups::timer(
                Arc::downgrade(&self.shared),
                changed,
                jumps,
            ));
        });
    }
}

impl MemoryStore {
    /// What a cancel returns, once the workers of a job cancelled while it ran are told.
    fn cancelled(&self, cancelled: crate::remove::Cancelled) -> bool {
        if cancelled.running {
            self.shared.wake.notify_cancelled();
        }
        cancelled.found
    }
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl JobStore for MemoryStore {
    async fn now(&self) -> Result<DateTime<Utc>> {
        Ok(MemoryStore::now(self))
    }

    fn max_params_bytes(&self) -> usize {
        self.shared.max_params_bytes
    }

    async fn schedule(&self, job: NewJob) -> Result<Scheduled> {
        job.validate(self.shared.max_params_bytes)?;
        let now = MemoryStore::now(self);
        let (scheduled, effects) = self.state().schedule(job, now);
        self.apply(effects);
        Ok(scheduled)
    }

    async fn schedule_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Result<Scheduled>>> {
        let now = MemoryStore::now(self);
        let mut all = Effects::default();
        let outcomes = {
            let mut state = self.state();
            jobs.into_iter()
                .map(|job| {
                    job.validate(self.shared.max_params_bytes)?;
                    let (scheduled, effects) = state.schedule(job, now);
                    all.merge(effects);
                    Ok(scheduled)
                })
                .collect()
        };
        self.apply(all);
        Ok(outcomes)
    }

    async fn register_recurrent(&self, job: RecurrentRegistration) -> Result<JobId> {
        job.validate()?;
        let now = MemoryStore::now(self);
        let (id, effects) = self.state().register_recurrent(job, now);
        self.apply(effects);
        Ok(id)
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Claimed> {
        request.validate()?;
        let now = MemoryStore::now(self);
        let (claimed, effects) = self.state().claim(request, now);
        self.apply(effects);
        Ok(claimed)
    }

    async fn extend_lock(&self, lease: &Lease, lock_time: Duration) -> Result<DateTime<Utc>> {
        dogs_core::validate_lock_time(lock_time)?;
        let now = MemoryStore::now(self);
        let (until, effects) = self.state().extend_lock(lease, lock_time, now)?;
        self.apply(effects);
        Ok(until)
    }

    async fn complete(&self, lease: &Lease, completion: Completion) -> Result<()> {
        completion.validate()?;
        let now = MemoryStore::now(self);
        let effects = self.state().complete(lease, completion, now)?;
        self.apply(effects);
        Ok(())
    }

    async fn finish(
        &self,
        lease: &Lease,
        completion: Completion,
        execution: Option<&Execution>,
    ) -> Result<()> {
        completion.validate()?;
        let now = MemoryStore::now(self);
        let effects = {
            let mut state = self.state();
            let effects = state.complete(lease, completion, now)?;
            if let Some(execution) = execution {
                state.record_execution(execution, now);
            }
            effects
        };
        self.apply(effects);
        Ok(())
    }

    async fn finish_many(&self, items: Vec<Finish>) -> Result<Vec<Result<()>>> {
        let now = MemoryStore::now(self);
        let mut all = Effects::default();
        let outcomes = {
            let mut state = self.state();
            items
                .into_iter()
                .map(|item| {
                    item.completion.validate()?;
                    let effects = state.complete(&item.lease, item.completion, now)?;
                    if let Some(execution) = &item.execution {
                        state.record_execution(execution, now);
                    }
                    all.merge(effects);
                    Ok(())
                })
                .collect()
        };
        self.apply(all);
        Ok(outcomes)
    }

    async fn record_execution(&self, execution: &Execution) -> Result<()> {
        let now = MemoryStore::now(self);
        self.state().record_execution(execution, now);
        Ok(())
    }

    async fn get_job(&self, id: &JobId) -> Result<Option<Job>> {
        Ok(self.state().get_job(id, MemoryStore::now(self)))
    }

    async fn list_jobs(&self, query: &JobQuery) -> Result<Vec<Job>> {
        Ok(self.state().list_jobs(query, MemoryStore::now(self)))
    }

    async fn count_jobs(&self) -> Result<Vec<JobCounts>> {
        Ok(self.state().count_jobs(MemoryStore::now(self)))
    }

    async fn list_recurrent(&self) -> Result<Vec<Job>> {
        Ok(self.state().list_recurrent(MemoryStore::now(self)))
    }

    async fn execution_stats(&self, since: DateTime<Utc>) -> Result<Vec<ExecutionMinute>> {
        Ok(self.state().execution_stats(since, MemoryStore::now(self)))
    }

    async fn executions(&self, query: &ExecutionQuery) -> Result<Vec<Execution>> {
        Ok(self.state().executions(query, MemoryStore::now(self)))
    }

    async fn cancel(&self, id: &JobId) -> Result<bool> {
        let cancelled = self.state().cancel_id(id, MemoryStore::now(self))?;
        Ok(self.cancelled(cancelled))
    }

    async fn cancel_unique(&self, name: &str, unique_identifier: &str) -> Result<bool> {
        let cancelled =
            self.state()
                .cancel_unique(name, unique_identifier, MemoryStore::now(self))?;
        Ok(self.cancelled(cancelled))
    }

    async fn retry(&self, id: &JobId) -> Result<bool> {
        let (found, effects) = self.state().retry(id, MemoryStore::now(self))?;
        self.apply(effects);
        Ok(found)
    }

    async fn retry_failed_batch(
        &self,
        name: &str,
        after: Option<&JobId>,
        limit: usize,
    ) -> Result<RetryBatch> {
        let (batch, effects) =
            self.state()
                .retry_failed_batch(name, after, limit, MemoryStore::now(self));
        self.apply(effects);
        Ok(batch)
    }

    async fn set_paused(&self, name: &str, paused: bool) -> Result<()> {
        dogs_core::validate_name(name)?;
        let effects = self.state().set_paused(name, paused);
        self.apply(effects);
        Ok(())
    }

    async fn set_concurrency_limit(&self, name: &str, limit: Option<u32>) -> Result<()> {
        dogs_core::validate_concurrency_limit(name, limit)?;
        self.state().set_concurrency_limit(name, limit);
        // A higher limit may let due jobs run.
        self.shared.wake.notify();
        Ok(())
    }

    async fn name_settings(&self) -> Result<Vec<NameSettings>> {
        Ok(self.state().name_settings())
    }

    async fn set_progress(&self, lease: &Lease, progress: &serde_json::Value) -> Result<()> {
        dogs_core::validate_progress(progress, self.shared.max_params_bytes)?;
        self.state().set_progress(lease, progress)
    }

    async fn remove_all(&self) -> Result<()> {
        self.clear();
        Ok(())
    }

    async fn prune(&self) -> Result<PruneReport> {
        // In batches, the lock released between them so workers keep claiming meanwhile; no
        // rest, as there is no server to share.
        let now = MemoryStore::now(self);
        let mut report = PruneReport::default();
        loop {
            let batch = PruneBatch::counted(self.state().prune(now, PRUNE_BATCH as usize));
            report.jobs += batch.removed.jobs;
            report.executions += batch.removed.executions;
            if !batch.full {
                return Ok(report);
            }
            tokio::task::yield_now().await;
        }
    }

    fn wakeups(&self) -> Option<WakeUps> {
        self.start_timer();
        Some(self.shared.wake.subscribe())
    }
}
