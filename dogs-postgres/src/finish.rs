//! Ending claimed jobs' executions, every write fenced by the lease token
//! (`… WHERE id = $1 AND lease_token = $2`): extending a lease, completing one job with its
//! execution record in one statement, completing a batch, and storing a record on its own.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dogs_core::{Completion, Error, ErrorKind, Execution, Finish, Lease, Outcomes, Result};
use serde_json::Value;
use sqlx::{Postgres, QueryBuilder};

use crate::error::db_error;
use crate::sql::{fill, millis, parse_id, run_at_binds, tries_i32, EXECUTION_COLUMNS};
use crate::store::{Conn, PostgresStore};

/// The statements of a schema that end executions.
pub(crate) struct Statements {
    extend: String,
    progress: String,
    record: String,
    remove_many: String,
}

impl Statements {
    pub(crate) fn new(s: &str) -> Self {
        Statements {
            extend: fill(
                "UPDATE {s}.jobs SET
                     locked_until = {s}.ms_now() + $3 * interval '1 millisecond',
                     state = 'running', demoted = false
                 WHERE id = $1 AND lease_token = $2 AND state IN ('running', 'pending')
                 RETURNING locked_until",
                s,
            ),
            progress: fill(
                "UPDATE {s}.jobs SET progress = $3
                 WHERE id = $1 AND lease_token = $2 AND state = 'running'",
                s,
            ),
            record: fill(
                &format!(
                    "INSERT INTO {{s}}.executions ({EXECUTION_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                     ON CONFLICT (execution_id) DO NOTHING"
                ),
                s,
            ),
            // Each removal and each record is judged by its own (id, token) pair: a stale entry
            // stores no record even when a current entry of the same batch removes the job.
            remove_many: fill(
                &format!(
                    "WITH input AS (
                         SELECT * FROM unnest($1::bigint[], $2::text[]) AS i(id, token)
                     ), done AS (
                         DELETE FROM {{s}}.jobs j USING input i
                         WHERE j.id = i.id AND j.lease_token = i.token AND j.state IN ('running', 'pending')
                         RETURNING j.id, i.token
                     ), recorded AS (
                         INSERT INTO {{s}}.executions ({EXECUTION_COLUMNS})
                         SELECT {EXECUTION_COLUMNS} FROM unnest($3::text[], $4::text[], $5::text[],
                             $6::text[], $7::int[], $8::int[], $9::text[], $10::jsonb[],
                             $11::timestamptz[], $12::timestamptz[], $13::bigint[], $14::text[],
                             $15::text[], $16::jsonb[], $17::text[], $18::timestamptz[], $19::text[])
                             AS e({EXECUTION_COLUMNS}, lease_token)
                         WHERE (e.job_id, e.lease_token) IN (SELECT id::text, token FROM done)
                         ON CONFLICT (execution_id) DO NOTHING
                     )
                     SELECT id, token FROM done"
                ),
                s,
            ),
        }
    }
}

/// A removal of a batch: its place in the batch, its job id, and the entry.
type Removal = (usize, i64, Finish);

impl PostgresStore {
    pub(crate) async fn extend(&self, lease: &Lease, lock_time: Duration) -> Result<DateTime<Utc>> {
        dogs_core::validate_lock_time(lock_time)?;
        let Some(id) = parse_id(&lease.job_id) else {
            return Err(Error::lock_lost(&lease.job_id));
        };
        let until: Option<DateTime<Utc>> = self
            .attempt("extending a lease", move |mut conn: Conn| async move {
                let outcome = sqlx::query_scalar(&self.inner.sql.finish.extend)
                    .bind(id)
                    .bind(lease.token.as_str())
                    .bind(millis(lock_time))
                    .persistent(self.persistent())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(|e| db_error("extending a lease", e));
                (conn, outcome)
            })
            .await?;
        until.ok_or_else(|| Error::lock_lost(&lease.job_id))
    }

    pub(crate) async fn store_progress(&self, lease: &Lease, progress: &Value) -> Result<()> {
        dogs_core::validate_progress(progress, self.inner.max_params_bytes)?;
        let Some(id) = parse_id(&lease.job_id) else {
            return Err(Error::lock_lost(&lease.job_id));
        };
        let done = self
            .attempt(
                "storing a job's progress",
                move |mut conn: Conn| async move {
                    let outcome = sqlx::query(&self.inner.sql.finish.progress)
                        .bind(id)
                        .bind(lease.token.as_str())
                        .bind(progress)
                        .persistent(self.persistent())
                        .execute(&mut *conn)
                        .await
                        .map_err(|e| db_error("storing a job's progress", e));
                    (conn, outcome)
                },
            )
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::lock_lost(&lease.job_id));
        }
        Ok(())
    }

    /// Ends a claimed job as `completion` says, fenced by its token, and when that applied,
    /// stores `execution` in the same statement: both or neither.
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
        let completion = &completion;
        let applied: i64 = self
            .attempt("saving a job's outcome", move |mut conn: Conn| async move {
                let mut q = self.fenced_statement(id, lease, completion, execution);
                let outcome = q
                    .build_query_scalar()
                    .persistent(self.persistent())
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| db_error("saving a job's outcome", e));
                (conn, outcome)
            })
            .await?;
        if applied == 0 {
            return Err(Error::lock_lost(&lease.job_id));
        }
        Ok(())
    }

    /// The statement of [`fenced`](Self::fenced): `WITH done AS (<the write> WHERE id AND
    /// token RETURNING id) [, recorded AS (INSERT the record FROM done)] SELECT count(*)`.
    fn fenced_statement<'a>(
        &self,
        id: i64,
        lease: &'a Lease,
        completion: &'a Completion,
        execution: Option<&'a Execution>,
    ) -> QueryBuilder<'a, Postgres> {
        let s = &self.inner.quoted;
        let mut q: QueryBuilder<'a, Postgres> = QueryBuilder::new("WITH done AS (");
        match completion {
            Completion::Remove => {
                q.push(format!("DELETE FROM {s}.jobs"));
            }
            Completion::Reschedule { run_at, .. } | Completion::Snooze { run_at } => {
                // A snooze is a reschedule that gives the try back and keeps the priority.
                let (priority, tries) = match completion {
                    Completion::Reschedule {
                        priority,
                        reset_tries,
                        ..
                    } => (*priority, if *reset_tries { "0" } else { "tries" }),
                    _ => (None, "greatest(tries - 1, 0)"),
                };
                let (at, in_ms) = run_at_binds(*run_at);
                let when = |q: &mut QueryBuilder<'a, Postgres>| {
                    q.push("COALESCE(")
                        .push_bind(at)
                        .push(format!(
                            "::timestamptz, {s}.ms_now() + interval '1 millisecond' * "
                        ))
                        .push_bind(in_ms)
                        .push("::bigint)");
                };
                q.push(format!("UPDATE {s}.jobs SET run_at = "));
                when(&mut q);
                q.push(", priority = COALESCE(")
                    .push_bind(priority)
                    .push(format!(
                    "::int, priority), tries = {tries}, lease_token = NULL, locked_until = NULL, \
                         locked_by = NULL, demoted = false, progress = NULL, state = CASE WHEN "
                ));
                when(&mut q);
                q.push(format!(
                    " <= {s}.ms_now() THEN 'pending' ELSE 'scheduled' END"
                ));
            }
            Completion::Fail { error, retain_for } => {
                q.push(format!(
                    "UPDATE {s}.jobs SET state = 'failed', last_error = "
                ))
                .push_bind(error.as_str())
                .push(format!(
                    ", expires_at = {s}.ms_now() + interval '1 millisecond' * "
                ))
                .push_bind(millis(*retain_for))
                .push(
                    ", lease_token = NULL, locked_until = NULL, locked_by = NULL, demoted = false",
                );
            }
            Completion::Demote => {
                q.push(format!(
                    "UPDATE {s}.jobs SET state = 'pending', demoted = true, run_at = {s}.ms_now(), \
                     lease_token = NULL, locked_until = NULL, locked_by = NULL, progress = NULL"
                ));
            }
            Completion::Release => {
                q.push(format!(
                    "UPDATE {s}.jobs SET tries = greatest(tries - 1, 0), lease_token = NULL, \
                     locked_until = NULL, locked_by = NULL, progress = NULL, \
                     state = CASE WHEN run_at <= {s}.ms_now() THEN 'pending' ELSE 'scheduled' END"
                ));
            }
        }
        q.push(" WHERE id = ")
            .push_bind(id)
            .push(" AND lease_token = ")
            .push_bind(lease.token.as_str())
            .push(" AND state IN ('running', 'pending') RETURNING id)");
        if let Some(e) = execution {
            q.push(format!(
                ", recorded AS (INSERT INTO {s}.executions ({EXECUTION_COLUMNS}) SELECT "
            ));
            let mut values = q.separated(", ");
            values
                .push_bind(e.execution_id.as_str())
                .push_bind(e.job_id.as_str())
                .push_bind(e.name.as_str())
                .push_bind(e.kind.as_str())
                .push_bind(e.priority)
                .push_bind(tries_i32(e.tries))
                .push_bind(e.unique_identifier.as_deref())
                .push_bind(&e.params)
                .push_bind(e.started_at)
                .push_bind(e.ended_at)
                .push_bind(millis(e.duration))
                .push_bind(e.status.as_str())
                .push_bind(e.error.as_deref())
                .push_bind(e.result.as_ref())
                .push_bind(e.worker_id.as_str())
                .push_bind(e.expires_at);
            q.push(" FROM done ON CONFLICT (execution_id) DO NOTHING)");
        }
        q.push(" SELECT count(*) AS applied FROM done");
        q
    }

    /// Ends a batch: the removals (every successful event job) in one statement, the rest one
    /// by one; each entry is judged by its own token.
    pub(crate) async fn finish_all(&self, items: Vec<Finish>) -> Result<Vec<Result<()>>> {
        let (mut outcomes, valid) = Outcomes::check(items, |item| item.completion.validate());
        let mut removals: Vec<Removal> = Vec::new();
        let mut others: Vec<(usize, Finish)> = Vec::new();
        let mut seen: HashSet<(i64, String)> = HashSet::new();
        for (i, item) in valid {
            match (&item.completion, parse_id(&item.lease.job_id)) {
                (Completion::Remove, Some(id)) => {
                    // The same lease twice in one batch: only the first can apply.
                    if seen.insert((id, item.lease.token.as_str().to_owned())) {
                        removals.push((i, id, item));
                    } else {
                        outcomes.set(i, Err(Error::lock_lost(&item.lease.job_id)));
                    }
                }
                _ => others.push((i, item)),
            }
        }
        if !removals.is_empty() {
            match self.remove_many(&removals).await {
                Ok(removed) => {
                    for (i, id, item) in &removals {
                        let applied =
                            removed.contains(&(*id, item.lease.token.as_str().to_owned()));
                        outcomes.set(
                            *i,
                            if applied {
                                Ok(())
                            } else {
                                Err(Error::lock_lost(&item.lease.job_id))
                            },
                        );
                    }
                }
                Err(e) if e.kind() == ErrorKind::Unavailable => return Err(e),
                // One entry the server refuses (a value past a limit) fails the statement:
                // each entry alone, so its error is its own.
                Err(_) => others.extend(removals.into_iter().map(|(i, _, item)| (i, item))),
            }
        }
        // One statement each, under way together (each on a connection of its own).
        let alone = others.into_iter().map(|(i, item)| async move {
            let outcome = self
                .fenced(&item.lease, item.completion, item.execution.as_ref())
                .await;
            (i, outcome)
        });
        for (i, outcome) in futures::future::join_all(alone).await {
            outcomes.set(i, outcome);
        }
        Ok(outcomes.finish())
    }

    /// Removes many finished jobs, fenced by their tokens, and stores the records of those that
    /// applied, in one statement. Returns the (id, token) pairs that were removed.
    async fn remove_many(&self, removals: &[Removal]) -> Result<HashSet<(i64, String)>> {
        let ids: Vec<i64> = removals.iter().map(|(_, id, _)| *id).collect();
        let tokens: Vec<&str> = removals
            .iter()
            .map(|(_, _, f)| f.lease.token.as_str())
            .collect();
        let records: Vec<(&Execution, &str)> = removals
            .iter()
            .filter_map(|(_, _, f)| f.execution.as_ref().map(|e| (e, f.lease.token.as_str())))
            .collect();
        let text = |get: &dyn Fn(&Execution) -> Option<&str>| -> Vec<Option<&str>> {
            records.iter().map(|(e, _)| get(e)).collect()
        };
        let columns = RecordColumns {
            execution_id: text(&|e| Some(e.execution_id.as_str())),
            job_id: text(&|e| Some(e.job_id.as_str())),
            name: text(&|e| Some(e.name.as_str())),
            kind: text(&|e| Some(e.kind.as_str())),
            priority: records.iter().map(|(e, _)| e.priority).collect(),
            tries: records.iter().map(|(e, _)| tries_i32(e.tries)).collect(),
            unique_identifier: text(&|e| e.unique_identifier.as_deref()),
            params: records.iter().map(|(e, _)| &e.params).collect(),
            started_at: records.iter().map(|(e, _)| e.started_at).collect(),
            ended_at: records.iter().map(|(e, _)| e.ended_at).collect(),
            duration: records.iter().map(|(e, _)| millis(e.duration)).collect(),
            status: text(&|e| Some(e.status.as_str())),
            error: text(&|e| e.error.as_deref()),
            result: records.iter().map(|(e, _)| e.result.as_ref()).collect(),
            worker_id: text(&|e| Some(e.worker_id.as_str())),
            expires_at: records.iter().map(|(e, _)| e.expires_at).collect(),
            lease_token: records.iter().map(|(_, token)| *token).collect(),
        };
        let (ids, tokens, columns) = (&ids, &tokens, &columns);
        let rows: Vec<(i64, String)> = self
            .attempt("saving job outcomes", move |mut conn: Conn| async move {
                let outcome = sqlx::query_as(&self.inner.sql.finish.remove_many)
                    .bind(ids)
                    .bind(tokens)
                    .bind(&columns.execution_id)
                    .bind(&columns.job_id)
                    .bind(&columns.name)
                    .bind(&columns.kind)
                    .bind(&columns.priority)
                    .bind(&columns.tries)
                    .bind(&columns.unique_identifier)
                    .bind(&columns.params)
                    .bind(&columns.started_at)
                    .bind(&columns.ended_at)
                    .bind(&columns.duration)
                    .bind(&columns.status)
                    .bind(&columns.error)
                    .bind(&columns.result)
                    .bind(&columns.worker_id)
                    .bind(&columns.expires_at)
                    .bind(&columns.lease_token)
                    .persistent(self.persistent())
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| db_error("saving job outcomes", e));
                (conn, outcome)
            })
            .await?;
        Ok(rows.into_iter().collect())
    }

    pub(crate) async fn record(&self, e: &Execution) -> Result<()> {
        self.attempt("recording an execution", move |mut conn: Conn| async move {
            let outcome = sqlx::query(&self.inner.sql.finish.record)
                .bind(&e.execution_id)
                .bind(e.job_id.as_str())
                .bind(&e.name)
                .bind(e.kind.as_str())
                .bind(e.priority)
                .bind(tries_i32(e.tries))
                .bind(&e.unique_identifier)
                .bind(&e.params)
                .bind(e.started_at)
                .bind(e.ended_at)
                .bind(millis(e.duration))
                .bind(e.status.as_str())
                .bind(&e.error)
                .bind(&e.result)
                .bind(&e.worker_id)
                .bind(e.expires_at)
                .persistent(self.persistent())
                .execute(&mut *conn)
                .await
                .map_err(|e| db_error("recording an execution", e));
            (conn, outcome)
        })
        .await?;
        Ok(())
    }
}

/// The execution records of a batch, column by column, each with the lease token of its entry.
struct RecordColumns<'a> {
    execution_id: Vec<Option<&'a str>>,
    job_id: Vec<Option<&'a str>>,
    name: Vec<Option<&'a str>>,
    kind: Vec<Option<&'a str>>,
    priority: Vec<i32>,
    tries: Vec<i32>,
    unique_identifier: Vec<Option<&'a str>>,
    params: Vec<&'a Value>,
    started_at: Vec<DateTime<Utc>>,
    ended_at: Vec<DateTime<Utc>>,
    duration: Vec<i64>,
    status: Vec<Option<&'a str>>,
    error: Vec<Option<&'a str>>,
    result: Vec<Option<&'a Value>>,
    worker_id: Vec<Option<&'a str>>,
    expires_at: Vec<DateTime<Utc>>,
    lease_token: Vec<&'a str>,
}
