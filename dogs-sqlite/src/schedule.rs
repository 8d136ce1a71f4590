//! Scheduling: event jobs one by one or in bulk, and the one record of each recurrent job.
//!
//! A call is one write transaction. Its entries are judged in order, as the memory store does:
//! the live jobs holding their unique identifiers are read first (one statement for the whole
//! call, through `jobs_unique`), then each entry is a new job, a duplicate of a stored job or of
//! an earlier entry, or replaces a pending one. The new jobs get their ids from the store's
//! sequence (the transaction holds the write lock, so nobody else takes one meanwhile) and go in
//! multi-row `INSERT`s.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use dogs_core::{
    truncate_millis, Error, ErrorKind, JobId, NewJob, OnDuplicate, Outcomes, RecurrentRegistration,
    Result, Scheduled,
};

use tokio::sync::oneshot;

use crate::decode::get;
use crate::error::db_error;
use crate::sql::{
    insert_chunks, job_id, json_list, json_text, ms, pending_state, rows_sql, run_at_ms,
};
use crate::store::{SqliteStore, Write};

/// A new job, as inserted.
struct NewRow {
    id: i64,
    name: String,
    params: String,
    priority: i32,
    run_at: i64,
    unique_identifier: Option<String>,
    trace_context: Option<String>,
}

/// The job that holds a (name, unique identifier) pair.
struct Holder {
    id: i64,
    /// It has a live lease: a duplicate that would replace it is left alone.
    live: bool,
    /// It is a new job of this call, not inserted yet: its place among the new rows.
    new_row: Option<usize>,
}

/// Holders by (name, unique identifier).
type Holders = HashMap<(String, String), Holder>;

/// A job waiting to be scheduled, and where its outcome goes.
type Queued = (NewJob, oneshot::Sender<Result<Scheduled>>);

/// Combines concurrent `schedule` calls: each call queues its job, and one task at a time
/// stores every job queued so far in one transaction (as `schedule_many` does, entry by entry in
/// order, so each call's outcome is what it would have been alone in that order), then the
/// ones queued meanwhile. One writer serves a burst of callers with a few transactions instead
/// of one each; a lone call waits for nothing. The task, not the caller, runs the transaction:
/// a caller that gives up never takes other callers' jobs down with it, and its job is left
/// out when it gave up before its transaction began (it may try again: no duplicate is stored
/// later). A task that ends midway (its runtime shut down) lets the next call start another;
/// a caller waits a bounded time, then its outcome is unknown (`Unavailable`).
#[derive(Debug, Default)]
pub(crate) struct Combiner {
    queue: Mutex<Vec<Queued>>,
    /// A task is storing queued jobs.
    running: AtomicBool,
}

impl Combiner {
    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Queued>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Resets [`Combiner::running`] when the task ends any other way than by finding the queue
/// empty (its runtime shut down, or a panic), and fails the jobs still queued (none of them was
/// taken: none is stored), so the next `schedule` call starts a task of its own.
struct Running<'a> {
    combiner: &'a Combiner,
    done: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.combiner.running.store(false, Ordering::Release);
        let queued = std::mem::take(&mut *self.combiner.queue());
        for (_, sender) in queued {
            let _ = sender.send(Err(Error::unavailable(
                "SQLite: scheduling stopped before the job was taken: it was not stored",
            )));
        }
    }
}

/// The entries whose callers still wait: a caller that gave up (and may have tried again)
/// must not have its job stored later.
fn waited_for(batch: &mut Vec<Queued>) {
    batch.retain(|(_, sender)| !sender.is_closed());
}

/// Stores what is queued, in batches, until the queue is empty.
async fn combine(store: SqliteStore) {
    let combiner = &store.inner.combiner;
    let mut running = Running {
        combiner,
        done: false,
    };
    let what = "scheduling jobs";
    loop {
        let mut batch = std::mem::take(&mut *combiner.queue());
        waited_for(&mut batch);
        if batch.is_empty() {
            combiner.running.store(false, Ordering::Release);
            // A job queued since, by a caller that saw this task running, is taken on.
            if combiner.queue().is_empty() || combiner.running.swap(true, Ordering::AcqRel) {
                running.done = true;
                return;
            }
            continue;
        }
        let write = match store.begin(what).await {
            Ok(write) => write,
            Err(e) => {
                fail(batch, &e);
                continue;
            }
        };
        // Callers may have given up while the lock was waited for.
        waited_for(&mut batch);
        if batch.is_empty() {
            continue;
        }
        let (jobs, senders): (Vec<NewJob>, Vec<_>) = batch.into_iter().unzip();
        match store.schedule_within(write, jobs).await {
            Ok(outcomes) => {
                for (sender, outcome) in senders.into_iter().zip(outcomes) {
                    let _ = sender.send(outcome);
                }
            }
            Err(e) => {
                for sender in senders {
                    let _ = sender.send(Err(copy(&e)));
                }
            }
        }
    }
}

/// A copy of `e`, for each caller of a batch.
fn copy(e: &Error) -> Error {
    Error::new(e.kind(), e.message()).with_source(e.to_string())
}

/// Tells every caller of `batch` that it failed with `e`.
fn fail(batch: Vec<Queued>, e: &Error) {
    for (_, sender) in batch {
        let _ = sender.send(Err(copy(e)));
    }
}

/// The values one new row binds.
const ROW: &str = "(?, ?, 'event', ?, ?, ?, ?, ?, ?, ?)";

impl SqliteStore {
    /// Schedules one job: with the jobs of the calls under way at the same time, in one
    /// transaction (see [`Combiner`]).
    pub(crate) async fn schedule_one(&self, job: NewJob) -> Result<Scheduled> {
        job.validate(self.inner.max_params_bytes)?;
        if tokio::runtime::Handle::try_current().is_err() {
            return self.schedule_alone(job).await;
        }
        let combiner = &self.inner.combiner;
        let (sender, outcome) = oneshot::channel();
        combiner.queue().push((job, sender));
        if !combiner.running.swap(true, Ordering::AcqRel) {
            tokio::spawn(combine(self.clone()));
        }
        // The task answers within about two request timeouts (the lock, then the writing);
        // the wait is bounded all the same, so that no call can hang.
        let bound = self
            .inner
            .request_timeout
            .saturating_mul(2)
            .saturating_add(Duration::from_secs(1));
        match tokio::time::timeout(bound, outcome).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(Error::unavailable(
                "SQLite: scheduling stopped before it answered: the outcome is unknown \
                 (the job may have been stored, if its commit was sent)",
            )),
            Err(_) => Err(Error::unavailable(format!(
                "SQLite: scheduling got no answer within {bound:?}: the outcome is unknown \
                 (the job may be stored)"
            ))),
        }
    }

    /// Schedules one job in a transaction of its own.
    async fn schedule_alone(&self, job: NewJob) -> Result<Scheduled> {
        self.schedule_all(vec![job])
            .await?
            .pop()
            .unwrap_or_else(|| {
                Err(Error::new(
                    ErrorKind::Backend,
                    "scheduling gave the job no outcome",
                ))
            })
    }

    /// Stores many jobs in one transaction; each entry's outcome is its own.
    pub(crate) async fn schedule_all(&self, jobs: Vec<NewJob>) -> Result<Vec<Result<Scheduled>>> {
        let (outcomes, valid) =
            Outcomes::check(jobs, |job| job.validate(self.inner.max_params_bytes));
        if valid.is_empty() {
            return Ok(outcomes.finish());
        }
        let what = "scheduling jobs";
        let write = self.begin(what).await?;
        self.store_valid(write, outcomes, valid).await
    }

    /// Stores many jobs in the transaction `write`, begun already; each entry's outcome is its
    /// own.
    async fn schedule_within(
        &self,
        write: Write,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<Result<Scheduled>>> {
        let (outcomes, valid) =
            Outcomes::check(jobs, |job| job.validate(self.inner.max_params_bytes));
        if valid.is_empty() {
            return Ok(outcomes.finish());
        }
        self.store_valid(write, outcomes, valid).await
    }

    /// Stores the `valid` entries in `write`, and commits.
    async fn store_valid(
        &self,
        mut write: Write,
        mut outcomes: Outcomes<Scheduled>,
        valid: Vec<(usize, NewJob)>,
    ) -> Result<Vec<Result<Scheduled>>> {
        let what = "scheduling jobs";
        let now = write.now;
        let mut holders = holders(&mut write, &valid).await?;
        // The id the next new row takes; `None` once the largest id is taken.
        let mut next_free = next_id(&mut write).await?;
        let ran_out = || {
            Error::new(
                ErrorKind::Backend,
                "SQLite: job ids ran out (the largest id is taken); nothing was stored",
            )
        };
        let mut rows: Vec<NewRow> = Vec::new();
        let mut replaced = false;
        for (i, job) in valid {
            let run_at = run_at_ms(job.run_at, now);
            if let Some(unique) = &job.unique_identifier {
                let key = (job.name.clone(), unique.clone());
                if let Some(holder) = holders.get(&key) {
                    let id = holder.id;
                    let outcome = if job.on_duplicate == OnDuplicate::Keep || holder.live {
                        Scheduled::Duplicate(job_id(id))
                    } else {
                        match holder.new_row {
                            Some(at) => {
                                if let Some(row) = rows.get_mut(at) {
                                    row.params = json_text(&job.params);
                                    row.priority = job.priority;
                                    row.run_at = run_at;
                                }
                            }
                            None => replace(&mut write, id, &job, run_at).await?,
                        }
                        replaced = true;
                        Scheduled::Replaced(job_id(id))
                    };
                    outcomes.set(i, Ok(outcome));
                    continue;
                }
                holders.insert(
                    key,
                    Holder {
                        id: next_free.ok_or_else(ran_out)?,
                        live: false,
                        new_row: Some(rows.len()),
                    },
                );
            }
            let id = next_free.ok_or_else(ran_out)?;
            outcomes.set(i, Ok(Scheduled::Created(job_id(id))));
            rows.push(NewRow {
                id,
                params: json_text(&job.params),
                name: job.name,
                priority: job.priority,
                run_at,
                unique_identifier: job.unique_identifier,
                trace_context: job.trace_context,
            });
            next_free = id.checked_add(1);
        }
        insert(&mut write, &rows).await?;
        if replaced || !rows.is_empty() {
            write.wake();
        }
        self.commit(write, what).await?;
        Ok(outcomes.finish())
    }

    pub(crate) async fn register(&self, job: RecurrentRegistration) -> Result<JobId> {
        job.validate()?;
        let what = "registering a recurrent job";
        let mut write = self.begin(what).await?;
        let now = write.now_ms();
        let existing = sqlx::query(
            "SELECT id, schedule_key, state FROM jobs WHERE kind = 'recurrent' AND name = ?1",
        )
        .bind(&job.name)
        .fetch_optional(write.conn())
        .await
        .map_err(|e| db_error(what, e))?;
        let id = match existing {
            None => {
                // A new record is due at once.
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO jobs (name, kind, params, priority, run_at, state, schedule_key, created_at)
                     VALUES (?1, 'recurrent', 'null', ?2, ?3, 'pending', ?4, ?3) RETURNING id",
                )
                .bind(&job.name)
                .bind(job.priority)
                .bind(now)
                .bind(&job.schedule_key)
                .fetch_one(write.conn())
                .await
                .map_err(|e| db_error(what, e))?;
                write.wake();
                id
            }
            Some(row) => {
                let id: i64 = get(&row, "id")?;
                let key: Option<String> = get(&row, "schedule_key")?;
                let state: String = get(&row, "state")?;
                if key.as_deref() == Some(job.schedule_key.as_str()) {
                    // The same schedule: its next run time is kept.
                    sqlx::query("UPDATE jobs SET priority = ?2 WHERE id = ?1")
                        .bind(id)
                        .bind(job.priority)
                        .execute(write.conn())
                        .await
                        .map_err(|e| db_error(what, e))?;
                    if state == "pending" {
                        write.wake();
                    }
                } else {
                    // Another schedule: the next run is recomputed, and the record waits for
                    // it (a failed one too, as the memory store does); a running execution
                    // keeps its lease.
                    let run_at = ms(truncate_millis(job.next_run_at));
                    sqlx::query(
                        "UPDATE jobs SET priority = ?2, schedule_key = ?3, run_at = ?4,
                             state = CASE WHEN state = 'running' THEN state ELSE ?5 END
                         WHERE id = ?1",
                    )
                    .bind(id)
                    .bind(job.priority)
                    .bind(&job.schedule_key)
                    .bind(run_at)
                    .bind(pending_state(run_at, now))
                    .execute(write.conn())
                    .await
                    .map_err(|e| db_error(what, e))?;
                    write.wake();
                }
                id
            }
        };
        self.commit(write, what).await?;
        Ok(job_id(id))
    }
}

/// The live jobs that hold the unique identifiers of `jobs`, read in one statement.
async fn holders(write: &mut Write, jobs: &[(usize, NewJob)]) -> Result<Holders> {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    for (_, job) in jobs {
        if let Some(unique) = &job.unique_identifier {
            let pair = (job.name.as_str(), unique.as_str());
            if seen.insert(pair) {
                pairs.push(pair);
            }
        }
    }
    let mut holders = Holders::new();
    if pairs.is_empty() {
        return Ok(holders);
    }
    let now = write.now_ms();
    let rows = sqlx::query(
        "SELECT j.id, j.name, j.unique_identifier,
                (j.state = 'running' AND j.locked_until > ?2) AS live
         FROM json_each(?1) AS v
         CROSS JOIN jobs AS j
         WHERE j.name = v.value ->> 0 AND j.unique_identifier = v.value ->> 1
           AND j.unique_identifier IS NOT NULL AND j.state <> 'failed'",
    )
    .bind(json_list(&pairs)?)
    .bind(now)
    .fetch_all(write.conn())
    .await
    .map_err(|e| db_error("finding duplicate jobs", e))?;
    for row in &rows {
        let unique: Option<String> = get(row, "unique_identifier")?;
        if let Some(unique) = unique {
            holders.insert(
                (get(row, "name")?, unique),
                Holder {
                    id: get(row, "id")?,
                    live: get::<i64>(row, "live")? != 0,
                    new_row: None,
                },
            );
        }
    }
    Ok(holders)
}

/// The id the next new job gets: after every id the sequence has given; `None` when the
/// largest id is taken.
async fn next_id(write: &mut Write) -> Result<Option<i64>> {
    let last: i64 = sqlx::query_scalar(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'jobs'), 0),
                    coalesce((SELECT max(id) FROM jobs), 0))",
    )
    .fetch_one(write.conn())
    .await
    .map_err(|e| db_error("reading the job sequence", e))?;
    Ok(last.checked_add(1))
}

/// A pending duplicate takes the new params, priority and run time in place; a lease that ran
/// out is forgotten (the job is another now).
async fn replace(write: &mut Write, id: i64, job: &NewJob, run_at: i64) -> Result<()> {
    let now = write.now_ms();
    sqlx::query(
        "UPDATE jobs SET params = ?2, priority = ?3, run_at = ?4, state = ?5,
             lease_token = NULL, locked_until = NULL, locked_by = NULL, progress = NULL
         WHERE id = ?1",
    )
    .bind(id)
    .bind(json_text(&job.params))
    .bind(job.priority)
    .bind(run_at)
    .bind(pending_state(run_at, now))
    .execute(write.conn())
    .await
    .map_err(|e| db_error("replacing a job", e))?;
    Ok(())
}

/// Inserts the new rows, in statements of up to 512 rows.
async fn insert(write: &mut Write, rows: &[NewRow]) -> Result<()> {
    let now = write.now_ms();
    let mut rest = rows;
    for size in insert_chunks(rows.len()) {
        let (chunk, after) = rest.split_at(size.min(rest.len()));
        rest = after;
        let sql = format!(
            "INSERT INTO jobs (id, name, kind, params, priority, run_at, unique_identifier, state, created_at, trace_context) VALUES {}",
            rows_sql(ROW, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            query = query
                .bind(row.id)
                .bind(row.name.as_str())
                .bind(row.params.as_str())
                .bind(row.priority)
                .bind(row.run_at)
                .bind(row.unique_identifier.as_deref())
                .bind(pending_state(row.run_at, now))
                .bind(now)
                .bind(row.trace_context.as_deref());
        }
        query
            .execute(write.conn())
            .await
            .map_err(|e| db_error("scheduling jobs", e))?;
    }
    Ok(())
}
