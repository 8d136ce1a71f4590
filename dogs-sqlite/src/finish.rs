//! Ending claimed jobs' executions, every write fenced by the lease token
//! (`… WHERE id = ? AND lease_token = ?`): extending a lease, storing progress, completing one
//! job with its execution record in one transaction, completing a batch, and storing a record
//! on its own.
//!
//! A batch (`finish_many`) is one transaction: its entries are applied in order, as the memory
//! store applies them; a run of removals of distinct jobs (every successful event job) goes in
//! one statement, and the records of the entries that applied in multi-row `INSERT`s.

use std::time::Duration;

use chrono::{DateTime, Utc};
use dogs_core::{Completion, Error, Execution, Finish, Lease, Outcomes, Result};
use serde_json::Value;

use crate::decode::get;
use crate::error::db_error;
use crate::sql::{
    after, insert_chunks, json_list, json_text, millis, ms, parse_id, pending_state, rows_sql,
    run_at_ms, EXECUTION_BINDS, EXECUTION_COLUMNS,
};
use crate::store::{SqliteStore, Write};

/// A current lease: the job's token, in any state but failed (as in the memory store: once a
/// claim reclaimed a lease that ran out, its holder may still end the job until another claim
/// takes it).
const FENCE: &str = "id = ?1 AND lease_token = ?2 AND state <> 'failed'";

/// Removes the jobs of `?1`, a JSON list of `[id, token]` pairs of distinct jobs, whose token is
/// current.
const REMOVE_MANY: &str = "DELETE FROM jobs WHERE id IN (
         SELECT j.id FROM json_each(?1) AS v CROSS JOIN jobs AS j
         WHERE j.id = v.value ->> 0 AND j.lease_token = v.value ->> 1
           AND j.state <> 'failed')
     RETURNING id";

impl SqliteStore {
    pub(crate) async fn extend(&self, lease: &Lease, lock_time: Duration) -> Result<DateTime<Utc>> {
        dogs_core::validate_lock_time(lock_time)?;
        let Some(id) = parse_id(&lease.job_id) else {
            return Err(Error::lock_lost(&lease.job_id));
        };
        let what = "extending a lease";
        let mut write = self.begin(what).await?;
        let until = after(write.now, lock_time);
        let extended: Option<i64> = sqlx::query_scalar(&format!(
            "UPDATE jobs SET locked_until = ?3, state = 'running', demoted = 0 WHERE {FENCE}
             RETURNING locked_until"
        ))
        .bind(id)
        .bind(lease.token.as_str())
        .bind(until)
        .fetch_optional(write.conn())
        .await
        .map_err(|e| db_error(what, e))?;
        let Some(until) = extended else {
            return Err(Error::lock_lost(&lease.job_id));
        };
        self.commit(write, what).await?;
        crate::decode::instant(until, "locked_until")
    }

    pub(crate) async fn store_progress(&self, lease: &Lease, progress: &Value) -> Result<()> {
        dogs_core::validate_progress(progress, self.inner.max_params_bytes)?;
        let Some(id) = parse_id(&lease.job_id) else {
            return Err(Error::lock_lost(&lease.job_id));
        };
        let what = "storing a job's progress";
        let mut write = self.begin(what).await?;
        let done = sqlx::query(&format!("UPDATE jobs SET progress = ?3 WHERE {FENCE}"))
            .bind(id)
            .bind(lease.token.as_str())
            .bind(json_text(progress))
            .execute(write.conn())
            .await
            .map_err(|e| db_error(what, e))?;
        if done.rows_affected() == 0 {
            return Err(Error::lock_lost(&lease.job_id));
        }
        self.commit(write, what).await
    }

    /// Ends a claimed job as `completion` says, fenced by its token, and when that applied,
    /// stores `execution` in the same transaction: both or neither.
    pub(crate) async fn fenced(
        &self,
        lease: &Lease,
        completion: Completion,
        execution: Option<&Execution>,
    ) -> Result<()> {
        completion.validate()?;
        let Some(id) = parse_id(&lease.job_id) else {
            return Err(Error::lock_lost(&lease.job_id));
        };
        let what = "saving a job's outcome";
        let mut write = self.begin(what).await?;
        if !apply(&mut write, id, lease, &completion).await? {
            return Err(Error::lock_lost(&lease.job_id));
        }
        if let Some(execution) = execution {
            insert_records(&mut write, &[execution]).await?;
        }
        self.commit(write, what).await
    }

    /// Ends a batch in one transaction; each entry is judged by its own token, in order.
    pub(crate) async fn finish_all(&self, items: Vec<Finish>) -> Result<Vec<Result<()>>> {
        let (mut outcomes, valid) = Outcomes::check(items, |item| item.completion.validate());
        if valid.is_empty() {
            return Ok(outcomes.finish());
        }
        let what = "saving job outcomes";
        let mut write = self.begin(what).await?;
        let mut records: Vec<&Execution> = Vec::new();
        // Consecutive removals of distinct jobs, not applied yet: (place, id, entry).
        let mut run: Vec<(usize, i64, &Finish)> = Vec::new();
        for (i, item) in &valid {
            let Some(id) = parse_id(&item.lease.job_id) else {
                outcomes.set(*i, Err(Error::lock_lost(&item.lease.job_id)));
                continue;
            };
            if item.completion == Completion::Remove {
                if run.iter().any(|(_, other, _)| *other == id) {
                    remove_run(&mut write, &mut run, &mut outcomes, &mut records).await?;
                }
                run.push((*i, id, item));
                continue;
            }
            remove_run(&mut write, &mut run, &mut outcomes, &mut records).await?;
            if apply(&mut write, id, &item.lease, &item.completion).await? {
                outcomes.set(*i, Ok(()));
                records.extend(item.execution.as_ref());
            } else {
                outcomes.set(*i, Err(Error::lock_lost(&item.lease.job_id)));
            }
        }
        remove_run(&mut write, &mut run, &mut outcomes, &mut records).await?;
        insert_records(&mut write, &records).await?;
        self.commit(write, what).await?;
        Ok(outcomes.finish())
    }

    pub(crate) async fn record(&self, execution: &Execution) -> Result<()> {
        let what = "recording an execution";
        let mut write = self.begin(what).await?;
        insert_records(&mut write, &[execution]).await?;
        self.commit(write, what).await
    }
}

/// Applies one completion to the job `id` if `lease` is current; says whether it did.
async fn apply(write: &mut Write, id: i64, lease: &Lease, completion: &Completion) -> Result<bool> {
    let now = write.now_ms();
    let token = lease.token.as_str();
    let what = "saving a job's outcome";
    let query = match completion {
        Completion::Remove => {
            sqlx::query("DELETE FROM jobs WHERE id = ?1 AND lease_token = ?2 AND state <> 'failed'")
                .bind(id)
                .bind(token)
        }
        Completion::Reschedule {
            run_at,
            priority,
            reset_tries,
        } => {
            let at = run_at_ms(*run_at, write.now);
            sqlx::query(
                "UPDATE jobs SET run_at = ?3, priority = coalesce(?4, priority),
                     tries = CASE WHEN ?5 THEN 0 ELSE tries END, state = ?6,
                     lease_token = NULL, locked_until = NULL, locked_by = NULL, progress = NULL
                 WHERE id = ?1 AND lease_token = ?2 AND state <> 'failed'",
            )
            .bind(id)
            .bind(token)
            .bind(at)
            .bind(*priority)
            .bind(*reset_tries)
            .bind(pending_state(at, now))
        }
        Completion::Snooze { run_at } => {
            let at = run_at_ms(*run_at, write.now);
            sqlx::query(
                "UPDATE jobs SET run_at = ?3, tries = max(tries - 1, 0), state = ?4,
                     lease_token = NULL, locked_until = NULL, locked_by = NULL, progress = NULL
                 WHERE id = ?1 AND lease_token = ?2 AND state <> 'failed'",
            )
            .bind(id)
            .bind(token)
            .bind(at)
            .bind(pending_state(at, now))
        }
        Completion::Fail { error, retain_for } => sqlx::query(
            "UPDATE jobs SET state = 'failed', last_error = ?3, expires_at = ?4,
                 lease_token = NULL, locked_until = NULL, locked_by = NULL
             WHERE id = ?1 AND lease_token = ?2 AND state <> 'failed'",
        )
        .bind(id)
        .bind(token)
        .bind(error.as_str())
        .bind(after(write.now, *retain_for)),
        // Due now, after every other due job; its next claim reports `was_stale`.
        Completion::Demote => sqlx::query(
            "UPDATE jobs SET state = 'pending', demoted = 1, run_at = ?3,
                 lease_token = NULL, locked_until = NULL, locked_by = NULL, progress = NULL
             WHERE id = ?1 AND lease_token = ?2 AND state <> 'failed'",
        )
        .bind(id)
        .bind(token)
        .bind(now),
        // The try is given back; the job is due again at its run time.
        Completion::Release => sqlx::query(
            "UPDATE jobs SET tries = max(tries - 1, 0),
                 state = CASE WHEN run_at <= ?3 THEN 'pending' ELSE 'scheduled' END,
                 lease_token = NULL, locked_until = NULL, locked_by = NULL, progress = NULL
             WHERE id = ?1 AND lease_token = ?2 AND state <> 'failed'",
        )
        .bind(id)
        .bind(token)
        .bind(now),
    };
    let done = query
        .execute(write.conn())
        .await
        .map_err(|e| db_error(what, e))?;
    let applied = done.rows_affected() > 0;
    if applied && !matches!(completion, Completion::Remove | Completion::Fail { .. }) {
        write.wake();
    }
    Ok(applied)
}

/// Removes the jobs of a run of removals in one statement, fenced entry by entry, and notes
/// each entry's outcome and the records of those that applied. Leaves `run` empty.
async fn remove_run<'a>(
    write: &mut Write,
    run: &mut Vec<(usize, i64, &'a Finish)>,
    outcomes: &mut Outcomes<()>,
    records: &mut Vec<&'a Execution>,
) -> Result<()> {
    if run.is_empty() {
        return Ok(());
    }
    let pairs: Vec<(i64, &str)> = run
        .iter()
        .map(|(_, id, item)| (*id, item.lease.token.as_str()))
        .collect();
    let rows = sqlx::query(REMOVE_MANY)
        .bind(json_list(&pairs)?)
        .fetch_all(write.conn())
        .await
        .map_err(|e| db_error("saving job outcomes", e))?;
    let mut removed = std::collections::HashSet::with_capacity(rows.len());
    for row in &rows {
        removed.insert(get::<i64>(row, "id")?);
    }
    for (i, id, item) in run.drain(..) {
        if removed.contains(&id) {
            outcomes.set(i, Ok(()));
            records.extend(item.execution.as_ref());
        } else {
            outcomes.set(i, Err(Error::lock_lost(&item.lease.job_id)));
        }
    }
    Ok(())
}

/// Stores execution records; one whose id is stored already is left as it is.
async fn insert_records(write: &mut Write, records: &[&Execution]) -> Result<()> {
    let row = format!("({})", vec!["?"; EXECUTION_BINDS].join(", "));
    let mut rest = records;
    for size in insert_chunks(records.len()) {
        let (chunk, after) = rest.split_at(size.min(rest.len()));
        rest = after;
        let sql = format!(
            "INSERT INTO executions ({EXECUTION_COLUMNS}) VALUES {}
             ON CONFLICT (execution_id) DO NOTHING",
            rows_sql(&row, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for e in chunk {
            query = query
                .bind(e.execution_id.as_str())
                .bind(e.job_id.as_str())
                .bind(e.name.as_str())
                .bind(e.kind.as_str())
                .bind(e.priority)
                .bind(i64::from(e.tries))
                .bind(e.unique_identifier.as_deref())
                .bind(json_text(&e.params))
                .bind(ms(e.started_at))
                .bind(ms(e.ended_at))
                .bind(millis(e.duration))
                .bind(e.status.as_str())
                .bind(e.error.as_deref())
                .bind(e.result.as_ref().map(json_text))
                .bind(e.worker_id.as_str())
                .bind(ms(e.expires_at));
        }
        query
            .execute(write.conn())
            .await
            .map_err(|e| db_error("recording executions", e))?;
    }
    Ok(())
}
