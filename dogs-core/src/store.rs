//! The [`JobStore`] trait: the one thing a backend implements.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::claim::{ClaimRequest, Claimed, Completion, Finish, Lease};
use crate::error::Result;
use crate::execution::{Execution, ExecutionQuery};
use crate::job::{
    Job, JobCounts, JobId, JobQuery, NameSettings, NewJob, PruneReport, RecurrentRegistration,
    RetryBatch, Scheduled,
};
use crate::stats::ExecutionMinute;
use crate::wakeup::WakeUps;

/// Where jobs live: a shared store that any number of worker processes use at once.
///
/// Every time comparison uses the store's own clock, never the caller's. Every operation on a
/// claimed job is fenced by the [`Lease`] handed out by [`claim`](JobStore::claim): with a token that
/// is no longer current it changes nothing and returns [`ErrorKind::LockLost`](crate::ErrorKind).
///
/// Each method's `# Behavior` list is its contract; every bullet is a conformance test (named after
/// the SPEC id in brackets) that runs unchanged against every backend.
///
/// The trait is object safe: workers take any `S: JobStore`, and `Arc<dyn JobStore>` is a store too.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// The store's current time.
    ///
    /// # Behavior
    /// - Returns the clock every comparison of this store uses (the database server's clock).
    async fn now(&self) -> Result<DateTime<Utc>>;

    /// The largest params this store accepts, in bytes of JSON.
    fn max_params_bytes(&self) -> usize;

    /// Stores an event job.
    ///
    /// # Behavior
    /// - The job reads back with its name, params, priority, run time and unique identifier
    ///   unchanged (S-schedule-roundtrip); relative run times count from the store's clock.
    /// - With a (name, unique identifier) pair that a live job already has, stores nothing and
    ///   returns [`Scheduled::Duplicate`] with the existing job's id, whose params and run time are
    ///   kept; of many concurrent calls exactly one creates the job (S-unique-one-winner).
    /// - The same unique identifier under another name is another job (S-unique-per-name).
    /// - A completed or failed job no longer holds its unique identifier (S-unique-freed).
    /// - With [`OnDuplicate::Replace`](crate::OnDuplicate::Replace), a pending duplicate takes the
    ///   new params, run time and priority in place and keeps its id ([`Scheduled::Replaced`]); a
    ///   running one is left alone ([`Scheduled::Duplicate`]) (S-unique-replace).
    /// - Refuses input that [`NewJob::validate`] refuses, with its error kind, storing nothing.
    async fn schedule(&self, job: NewJob) -> Result<Scheduled>;

    /// Stores many event jobs in one call.
    ///
    /// # Behavior
    /// - Returns one outcome per entry, in order: created, duplicate, or that entry's error; a bad
    ///   entry does not lose the others (S-bulk-schedule).
    /// - Duplicates are judged against stored jobs and against earlier entries of the same call.
    async fn schedule_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Result<Scheduled>>>;

    /// Creates or updates the one record of a recurrent job.
    ///
    /// # Behavior
    /// - Concurrent registrations of one name leave exactly one record and all succeed; a new
    ///   record is due at once (S-recurrent-idempotent).
    /// - An existing record keeps its next run time when `schedule_key` is unchanged; otherwise
    ///   its next run becomes `next_run_at` (S-recurrent-keeps-time). The priority is updated.
    /// - Returns the record's id.
    async fn register_recurrent(&self, job: RecurrentRegistration) -> Result<JobId>;

    /// Leases up to `request.limit` due jobs whose names are in the request.
    ///
    /// # Behavior
    /// - Only jobs whose run time has come are returned (S-claim-due-only), only of the requested
    ///   names (S-claim-names), and never failed jobs (S-fail-terminal).
    /// - Never jobs of a paused name (S-pause-resume); at most [`ClaimName::max`](crate::ClaimName)
    ///   jobs of a name per call, and never so many that more executions of a name with a
    ///   concurrency limit would hold live leases than the limit, also when claimers race
    ///   (S-global-concurrency).
    /// - Order: priority (higher first), run time (earlier first), then scheduling order
    ///   (S-claim-order); a demoted job comes after every other due job (S-demote-stale).
    /// - A job with a live lease is never returned; among concurrent claimers every job goes to
    ///   exactly one (S-claim-exclusive), also when several are leased per call (S-claim-batch).
    /// - Each claim adds one to `tries` and returns the new value (S-claim-counts-tries).
    /// - A job whose lease ran out is claimable again, with `was_stale` set (S-lease-expiry); each
    ///   claim hands out a new token, so the previous holder's is no longer current (S-fencing).
    /// - When it returns fewer jobs than asked, it reports when the earliest job of the requested
    ///   names that it did not return becomes claimable: now when more are due (other claimers
    ///   won them), else its run time or lease end, or none when there is no such job; when it
    ///   returns as many as asked, more may be due (S-claim-next-due).
    /// - A leased record that cannot be read (written by hand or by another version) is failed
    ///   for good with [`fail_unreadable`](crate::fail_unreadable) and left out; the claim returns
    ///   the others, also when that write fails (reliability suite: `bad_records`).
    /// - Refuses a request that [`ClaimRequest::validate`] refuses, with its error kind.
    async fn claim(&self, request: &ClaimRequest) -> Result<Claimed>;

    /// Moves the end of a live lease to the store's now + `lock_time`.
    ///
    /// # Behavior
    /// - Returns the new end; until then no claim returns the job (S-extend-lease).
    /// - With a token that is not current, changes nothing: `LockLost` (S-fencing).
    /// - A `lock_time` of zero or over [`MAX_DURATION`](crate::MAX_DURATION) is `InvalidInput`.
    async fn extend_lock(&self, lease: &Lease, lock_time: Duration) -> Result<DateTime<Utc>>;

    /// Ends a claimed job's execution as `completion` says.
    ///
    /// # Behavior
    /// - [`Completion::Remove`] deletes the job (S-complete-event).
    /// - [`Completion::Reschedule`] releases the lease and sets run time, priority and tries
    ///   (S-reschedule).
    /// - [`Completion::Fail`] keeps the job as failed with its error until its retention ends, frees
    ///   its unique identifier, and it is never claimed (S-fail-terminal).
    /// - [`Completion::Demote`] makes the job due now after every other due job; its next claim
    ///   reports `was_stale` and restores its priority (S-demote-stale).
    /// - [`Completion::Release`] releases the lease and gives back the try.
    /// - With a token that is not current, changes nothing: `LockLost` (S-fencing).
    /// - Refuses a completion that [`Completion::validate`] refuses, changing nothing.
    async fn complete(&self, lease: &Lease, completion: Completion) -> Result<()>;

    /// Ends a claimed job's execution and stores its record, as one step where the store can.
    ///
    /// # Behavior
    /// - Applies `completion` as [`complete`](JobStore::complete) does and, when it succeeded,
    ///   stores `execution` as [`record_execution`](JobStore::record_execution) does.
    /// - With a token that is not current, changes nothing and stores no record: `LockLost`
    ///   (S-fencing).
    ///
    /// The provided implementation makes the two calls; a backend that can do both in one round
    /// trip overrides it.
    async fn finish(
        &self,
        lease: &Lease,
        completion: Completion,
        execution: Option<&Execution>,
    ) -> Result<()> {
        self.complete(lease, completion).await?;
        if let Some(execution) = execution {
            self.record_execution(execution).await?;
        }
        Ok(())
    }

    /// Ends many claimed jobs' executions at once: what workers call, so a store can save a
    /// burst of outcomes in one round trip.
    ///
    /// # Behavior
    /// - Returns one outcome per entry, in order, each as [`finish`](JobStore::finish) would
    ///   give it: an entry with a token that is not current is `LockLost` and changes nothing,
    ///   without affecting the others (S-fencing).
    /// - Each entry is judged by its own token: a stale entry stores no record, even when
    ///   another entry of the same call, holding the current token, finishes the same job
    ///   (S-fencing-batch).
    /// - An entry whose job record cannot be read fails alone (`Corrupt`), changing nothing.
    ///
    /// The provided implementation calls `finish` for each entry.
    async fn finish_many(&self, items: Vec<Finish>) -> Result<Vec<Result<()>>> {
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            outcomes.push(
                self.finish(&item.lease, item.completion, item.execution.as_ref())
                    .await,
            );
        }
        Ok(outcomes)
    }

    /// Stores an execution record.
    ///
    /// # Behavior
    /// - Reads back unchanged through [`executions`](JobStore::executions) (S-execution-roundtrip).
    /// - Recording the same `execution_id` again keeps one record (S-execution-idempotent).
    async fn record_execution(&self, execution: &Execution) -> Result<()>;

    /// Reads one job.
    ///
    /// # Behavior
    /// - Returns the job with its state by the store's clock, or `None` when there is none (an
    ///   id of another store's format is simply not found).
    async fn get_job(&self, id: &JobId) -> Result<Option<Job>>;

    /// Lists jobs by name and state, in scheduling order; a listing of failed jobs newest first.
    /// Returns one page: at most `query.limit` jobs (100 unless set; see [`JobQuery`] for paging).
    ///
    /// The page is found at the store, through its indexes: a page of a name and state costs
    /// about the same with a million other jobs stored as with none.
    ///
    /// # Behavior
    /// - Filters by name and by state and pages with limit and offset, in scheduling order, or
    ///   newest first for failed jobs (S-list-and-stats, list-paged).
    /// - A limit of 0 returns no job (list-paged).
    async fn list_jobs(&self, query: &JobQuery) -> Result<Vec<Job>>;

    /// Counts jobs per name and state.
    ///
    /// # Behavior
    /// - One entry per name that has jobs (or is paused), sorted by name; `scheduled` counts the
    ///   pending jobs whose run time is still ahead (S-list-and-stats, list-paged).
    async fn count_jobs(&self) -> Result<Vec<JobCounts>>;

    /// The recurrent jobs, one per name, sorted by name.
    ///
    /// # Behavior
    /// - Returns each recurrent job's record, with its state, next run time and schedule key,
    ///   and no event job (recurrent-listed).
    async fn list_recurrent(&self) -> Result<Vec<Job>>;

    /// Execution records that ended in `since`'s minute or later, summed per minute and status,
    /// in order of minute then status: the figures of a chart of executions per minute and run
    /// time.
    ///
    /// Reads at most [`STATS_WINDOW`](crate::STATS_WINDOW) back (an older `since` is cut), and
    /// only what the store keeps: with `save_executions_for` zero there are no records to sum.
    ///
    /// # Behavior
    /// - Each recorded execution is counted once, in the minute it ended, with its run time;
    ///   records of minutes before `since`'s are left out (execution-stats).
    async fn execution_stats(&self, since: DateTime<Utc>) -> Result<Vec<ExecutionMinute>>;

    /// Reads execution records of one job name, newest first. Returns one page: at most
    /// `query.limit` records (100 unless set; see [`ExecutionQuery`] for paging).
    ///
    /// # Behavior
    /// - Newest first by start time, paged; a limit of 0 returns no record
    ///   (S-execution-roundtrip).
    /// - Records past their expiry are not returned (S-execution-retention).
    async fn executions(&self, query: &ExecutionQuery) -> Result<Vec<Execution>>;

    /// Removes a job that is not running, by id.
    ///
    /// # Behavior
    /// - Removes a pending (or failed) job and returns `true`; `false` when there is no such job
    ///   (S-cancel-pending).
    /// - A job with a live lease is not removed: it is failed at once with
    ///   [`CANCELLED_ERROR`](crate::CANCELLED_ERROR), kept visible for
    ///   [`CANCELLED_RETENTION`](crate::CANCELLED_RETENTION), and its lease holder can no longer
    ///   complete, extend or reschedule it (`LockLost`); workers are told through
    ///   [`wakeups`](JobStore::wakeups) ([`Notice::Cancelled`](crate::Notice)). Until the lease
    ///   it had ends, it still counts against its name's concurrency limit and is not retried
    ///   (its handler may still be stopping) (S-cancel-running).
    /// - A running recurrent job is `Conflict`: its one record carries its schedule (pause its
    ///   name to stop it).
    async fn cancel(&self, id: &JobId) -> Result<bool>;

    /// Removes the live job of `name` with `unique_identifier`.
    ///
    /// # Behavior
    /// - As [`cancel`](JobStore::cancel), finding the job by name and unique identifier
    ///   (S-cancel-pending).
    async fn cancel_unique(&self, name: &str, unique_identifier: &str) -> Result<bool>;

    /// Removes failed jobs and execution records whose retention has ended.
    ///
    /// Removes what had expired when the call began, in batches of up to
    /// [`PRUNE_BATCH`](crate::PRUNE_BATCH) failed jobs and as many records, resting between
    /// batches as long as the batch took, at most a second
    /// ([`prune_in_batches`](crate::prune_in_batches)), so a
    /// large backlog, such as a day of records after pruning was off, takes a while but never
    /// takes the store from the workers. Each batch is whole on its own: dropping the call (the
    /// worker set does when it stops) between or during batches loses nothing and leaves the
    /// rest for the next call.
    ///
    /// # Behavior
    /// - Afterwards, what had expired when the call began is gone from the store, not only
    ///   hidden, unless another call was removing it at the same time (S-execution-retention,
    ///   S-fail-terminal).
    async fn prune(&self) -> Result<PruneReport>;

    /// Removes everything this store holds: every job, execution record, recurrent job and name
    /// setting of its namespace. Nothing outside the namespace is touched.
    ///
    /// - PostgreSQL drops dogs' tables and functions, and the schema when nothing else is left
    ///   in it (never `public`); an application object that depends on them (a view, a foreign
    ///   key) fails the call with `InvalidInput`, and nothing is removed.
    /// - MongoDB deletes the documents of its collections and keeps the collections and their
    ///   indexes; other collections of the database stay.
    /// - Redis removes every key of its prefix (the prefix taken literally, glob characters and
    ///   all).
    /// - SQLite empties its tables and keeps the file, which other processes may have open
    ///   (`dogs_sqlite::remove_database_files` deletes a file nobody has open).
    /// - The memory store empties itself.
    ///
    /// For tests, and for taking a deployment's queue down: stop the workers and schedulers of
    /// every process first, since what one writes meanwhile may stay, and a record written
    /// late by a job removed may show in the history of a later job that got the same id (ids
    /// may start over on PostgreSQL and Redis). Connecting again gives an empty store (with
    /// PostgreSQL's migrations on); what else this value does afterwards is not part of the
    /// contract: on some stores its calls fail (the tables are gone), on others they go on.
    ///
    /// # Behavior
    /// - Afterwards, a store opened on the same namespace has no job, execution record,
    ///   recurrent job or name setting, and a store of another namespace keeps all of its own
    ///   (remove-all).
    async fn remove_all(&self) -> Result<()>;

    /// Puts a failed job back to run now, or makes a pending job due now ("run now").
    ///
    /// # Behavior
    /// - A failed job becomes pending, due now, its tries back at 0 and its error cleared; its
    ///   past execution records stay (S-retry-failed). Returns `true`; `false` when there is no
    ///   such job.
    /// - A pending job becomes due now, keeping its tries.
    /// - A running job (live lease) is `Conflict`, and so is a failed job whose unique
    ///   identifier another live job has taken since, or one cancelled while it ran whose lease
    ///   has not ended yet (its handler may still be stopping).
    async fn retry(&self, id: &JobId) -> Result<bool>;

    /// Puts back up to `limit` failed jobs of `name`, in scheduling order after the job
    /// `after` (from the first when `None`), as [`retry`](JobStore::retry) does.
    ///
    /// # Behavior
    /// - Returns how many it put back, whether it found `limit` failed jobs (more may be left),
    ///   and the last one it looked at, to go on after; a failed job whose unique identifier
    ///   another live job holds, or whose lease from before a cancellation has not ended, is
    ///   left failed and looked past (S-retry-failed).
    async fn retry_failed_batch(
        &self,
        name: &str,
        after: Option<&JobId>,
        limit: usize,
    ) -> Result<RetryBatch>;

    /// Puts back every failed job of `name`, in batches of [`RETRY_BATCH`](crate::RETRY_BATCH),
    /// and returns how many.
    ///
    /// # Behavior
    /// - As [`retry_failed_batch`](JobStore::retry_failed_batch), until a batch is not full
    ///   (S-retry-failed).
    async fn retry_failed(&self, name: &str) -> Result<u64> {
        let mut total = 0;
        let mut after: Option<JobId> = None;
        loop {
            let batch = self
                .retry_failed_batch(name, after.as_ref(), crate::RETRY_BATCH)
                .await?;
            total += batch.retried;
            // Each batch goes on after the last it looked at: jobs failing again meanwhile,
            // or ones that cannot be put back, are not looked at twice.
            match batch.last {
                Some(last) if batch.full && after.as_ref() != Some(&last) => after = Some(last),
                _ => return Ok(total),
            }
        }
    }

    /// Pauses or resumes a job name, for every worker of every process.
    ///
    /// # Behavior
    /// - While paused, no claim returns its jobs; scheduling still works and running jobs
    ///   finish; [`count_jobs`](JobStore::count_jobs), [`get_job`](JobStore::get_job) and
    ///   [`list_jobs`](JobStore::list_jobs) show it as paused; the pause is stored, so it holds
    ///   across worker restarts; resuming wakes idle workers (S-pause-resume).
    /// - A name that [`validate_name`](crate::validate_name) refuses is `InvalidInput`.
    async fn set_paused(&self, name: &str, paused: bool) -> Result<()>;

    /// Pauses a job name: [`set_paused`](JobStore::set_paused) with `true`.
    async fn pause(&self, name: &str) -> Result<()> {
        self.set_paused(name, true).await
    }

    /// Resumes a paused job name: [`set_paused`](JobStore::set_paused) with `false`.
    async fn resume(&self, name: &str) -> Result<()> {
        self.set_paused(name, false).await
    }

    /// Sets (or with `None` removes) a cluster-wide limit on the executions of a job name that
    /// run at once.
    ///
    /// # Behavior
    /// - Claims never let more than `limit` jobs of the name hold live leases, across every
    ///   process, also when claimers race (S-global-concurrency).
    /// - A limit of 0 is `InvalidInput` (pause the name instead), as is a bad name.
    async fn set_concurrency_limit(&self, name: &str, limit: Option<u32>) -> Result<()>;

    /// The stored settings of every job name that has any (paused, or with a limit), by name.
    ///
    /// # Behavior
    /// - Reflects [`set_paused`](JobStore::set_paused) and
    ///   [`set_concurrency_limit`](JobStore::set_concurrency_limit) (S-pause-resume).
    async fn name_settings(&self) -> Result<Vec<NameSettings>>;

    /// Stores a progress value on a running job, read back as [`Job::progress`].
    ///
    /// # Behavior
    /// - Readable through [`get_job`](JobStore::get_job) and [`list_jobs`](JobStore::list_jobs)
    ///   while the job runs (W-progress-visible).
    /// - With a token that is not current, changes nothing: `LockLost` (S-fencing).
    /// - A value over [`max_params_bytes`](JobStore::max_params_bytes) is `TooLarge`, one that
    ///   [`NewJob::validate`] would refuse as params is `InvalidInput`.
    async fn set_progress(&self, lease: &Lease, progress: &serde_json::Value) -> Result<()>;

    /// A signal that fires when a job may have become claimable, for stores that can notify.
    ///
    /// Workers fall back to polling every `poll_interval` where this is `None` (W-wakeup-push).
    fn wakeups(&self) -> Option<WakeUps> {
        None
    }
}

/// A shared store is a store: `Arc<S>` and `Arc<dyn JobStore>` work wherever a store is taken.
#[async_trait]
impl<T: JobStore + ?Sized> JobStore for Arc<T> {
    async fn now(&self) -> Result<DateTime<Utc>> {
        (**self).now().await
    }
    fn max_params_bytes(&self) -> usize {
        (**self).max_params_bytes()
    }
    async fn schedule(&self, job: NewJob) -> Result<Scheduled> {
        (**self).schedule(job).await
    }
    async fn schedule_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Result<Scheduled>>> {
        (**self).schedule_many(jobs).await
    }
    async fn register_recurrent(&self, job: RecurrentRegistration) -> Result<JobId> {
        (**self).register_recurrent(job).await
    }
    async fn claim(&self, request: &ClaimRequest) -> Result<Claimed> {
        (**self).claim(request).await
    }
    async fn extend_lock(&self, lease: &Lease, lock_time: Duration) -> Result<DateTime<Utc>> {
        (**self).extend_lock(lease, lock_time).await
    }
    async fn complete(&self, lease: &Lease, completion: Completion) -> Result<()> {
        (**self).complete(lease, completion).await
    }
    async fn finish(
        &self,
        lease: &Lease,
        completion: Completion,
        execution: Option<&Execution>,
    ) -> Result<()> {
        (**self).finish(lease, completion, execution).await
    }
    async fn finish_many(&self, items: Vec<Finish>) -> Result<Vec<Result<()>>> {
        (**self).finish_many(items).await
    }
    async fn record_execution(&self, execution: &Execution) -> Result<()> {
        (**self).record_execution(execution).await
    }
    async fn get_job(&self, id: &JobId) -> Result<Option<Job>> {
        (**self).get_job(id).await
    }
    async fn list_jobs(&self, query: &JobQuery) -> Result<Vec<Job>> {
        (**self).list_jobs(query).await
    }
    async fn count_jobs(&self) -> Result<Vec<JobCounts>> {
        (**self).count_jobs().await
    }
    async fn list_recurrent(&self) -> Result<Vec<Job>> {
        (**self).list_recurrent().await
    }
    async fn execution_stats(&self, since: DateTime<Utc>) -> Result<Vec<ExecutionMinute>> {
        (**self).execution_stats(since).await
    }
    async fn executions(&self, query: &ExecutionQuery) -> Result<Vec<Execution>> {
        (**self).executions(query).await
    }
    async fn cancel(&self, id: &JobId) -> Result<bool> {
        (**self).cancel(id).await
    }
    async fn cancel_unique(&self, name: &str, unique_identifier: &str) -> Result<bool> {
        (**self).cancel_unique(name, unique_identifier).await
    }
    async fn prune(&self) -> Result<PruneReport> {
        (**self).prune().await
    }
    async fn remove_all(&self) -> Result<()> {
        (**self).remove_all().await
    }
    async fn retry(&self, id: &JobId) -> Result<bool> {
        (**self).retry(id).await
    }
    async fn retry_failed_batch(
        &self,
        name: &str,
        after: Option<&JobId>,
        limit: usize,
    ) -> Result<RetryBatch> {
        (**self).retry_failed_batch(name, after, limit).await
    }
    async fn retry_failed(&self, name: &str) -> Result<u64> {
        (**self).retry_failed(name).await
    }
    async fn set_paused(&self, name: &str, paused: bool) -> Result<()> {
        (**self).set_paused(name, paused).await
    }
    async fn set_concurrency_limit(&self, name: &str, limit: Option<u32>) -> Result<()> {
        (**self).set_concurrency_limit(name, limit).await
    }
    async fn name_settings(&self) -> Result<Vec<NameSettings>> {
        (**self).name_settings().await
    }
    async fn set_progress(&self, lease: &Lease, progress: &serde_json::Value) -> Result<()> {
        (**self).set_progress(lease, progress).await
    }
    fn wakeups(&self) -> Option<WakeUps> {
        (**self).wakeups()
    }
}

/// Checks a progress value as every store does before storing it: as params are checked
/// (`InvalidInput`, `TooLarge` over `max_params_bytes`).
pub fn validate_progress(progress: &serde_json::Value, max_params_bytes: usize) -> Result<()> {
    crate::job::validate_params("progress", progress)?;
    let size = crate::params_size(progress);
    if size > max_params_bytes {
        return Err(crate::Error::new(
            crate::ErrorKind::TooLarge,
            format!("a progress value takes {size} bytes, more than the store's limit of {max_params_bytes}"),
        ));
    }
    Ok(())
}

/// Checks a concurrency limit as every store does before storing it.
pub fn validate_concurrency_limit(name: &str, limit: Option<u32>) -> Result<()> {
    crate::validate_name(name)?;
    if limit == Some(0) {
        return Err(crate::Error::invalid_input(format!(
            "job '{name}': a concurrency limit of 0 would never run it; pause the name instead"
        )));
    }
    Ok(())
}
