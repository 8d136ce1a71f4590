//! Reading jobs and execution records, each with its state by the server's clock.

use chrono::{DateTime, Utc};
use dogs_core::{
    stats_since, Execution, ExecutionMinute, ExecutionQuery, ExecutionStatus, Job, JobCounts,
    JobId, JobQuery, JobState, JobStore, Result,
};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder};

use crate::decode::{execution_from_row, get, job_from_row, readable, view_state};
use crate::error::db_error;
use crate::sql::{fill, parse_id, EXECUTION_COLUMNS, JOB_COLUMNS, STATE, VISIBLE};
use crate::store::{Conn, PostgresStore};

/// Whether a job's name is paused, as the column `paused`.
const PAUSED: &str =
    "coalesce((SELECT n.paused FROM {s}.names n WHERE n.name = jobs.name), false) AS paused";

/// The reading statements of a schema.
pub(crate) struct Statements {
    get: String,
    counts: String,
    recurrent: String,
    stats: String,
    executions: String,
}

impl Statements {
    pub(crate) fn new(s: &str) -> Self {
        let state = fill(STATE, s);
        let visible = fill(VISIBLE, s);
        Statements {
            get: fill(
                &format!(
                    "SELECT {JOB_COLUMNS}, {state} AS view_state, {PAUSED} FROM {{s}}.jobs WHERE id = $1 AND {visible}"
                ),
                s,
            ),
            counts: fill(
                &format!(
                    "SELECT name,
                            count(*) FILTER (WHERE {state} = 'pending') AS pending,
                            count(*) FILTER (WHERE {state} = 'pending' AND run_at > {{s}}.ms_now())
                                AS scheduled,
                            count(*) FILTER (WHERE {state} = 'running') AS running,
                            count(*) FILTER (WHERE {state} = 'failed') AS failed
                     FROM {{s}}.jobs WHERE {visible} GROUP BY name ORDER BY name COLLATE \"C\""
                ),
                s,
            ),
            recurrent: fill(
                &format!(
                    "SELECT {JOB_COLUMNS}, {state} AS view_state, {PAUSED} FROM {{s}}.jobs
                     WHERE kind = 'recurrent' AND {visible} ORDER BY name COLLATE \"C\""
                ),
                s,
            ),
            stats: fill(
                "SELECT date_trunc('minute', ended_at) AS minute, status, count(*) AS n,
                        coalesce(sum(duration_ms), 0)::bigint AS total_ms,
                        coalesce(max(duration_ms), 0) AS max_ms
                 FROM {s}.executions
                 WHERE ended_at >= $1 AND expires_at > {s}.ms_now()
                 GROUP BY 1, 2 ORDER BY 1, 2",
                s,
            ),
            executions: fill(
                &format!(
                    "SELECT {EXECUTION_COLUMNS} FROM {{s}}.executions
                     WHERE name = $1 AND expires_at > {{s}}.ms_now() AND ($2::text IS NULL OR job_id = $2)
                     ORDER BY started_at DESC, execution_id DESC LIMIT $3 OFFSET $4"
                ),
                s,
            ),
        }
    }
}

impl PostgresStore {
    pub(crate) async fn read_job(&self, id: &JobId) -> Result<Option<Job>> {
        let Some(id) = parse_id(id) else {
            return Ok(None);
        };
        let row = self
            .attempt("reading a job", move |mut conn: Conn| async move {
                let outcome = sqlx::query(&self.inner.sql.read.get)
                    .bind(id)
                    .persistent(self.persistent())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(|e| db_error("reading a job", e));
                (conn, outcome)
            })
            .await?;
        row.map(|row| job_from_row(&row, view_state(&row)?))
            .transpose()
    }

    pub(crate) async fn read_jobs(&self, query: &JobQuery) -> Result<Vec<Job>> {
        let rows = self
            .attempt("listing jobs", move |mut conn: Conn| async move {
                let mut q = self.list_statement(query);
                let outcome = q
                    .build()
                    .persistent(self.persistent())
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| db_error("listing jobs", e));
                (conn, outcome)
            })
            .await?;
        Ok(readable(rows, |row| job_from_row(row, view_state(row)?)))
    }

    fn list_statement<'a>(&self, query: &'a JobQuery) -> QueryBuilder<'a, Postgres> {
        let s = &self.inner.quoted;
        let mut q: QueryBuilder<'a, Postgres> = QueryBuilder::new(format!(
            "SELECT {JOB_COLUMNS}, {} AS view_state, {} FROM {s}.jobs WHERE {}",
            fill(STATE, s),
            fill(PAUSED, s),
            fill(VISIBLE, s)
        ));
        if let Some(name) = &query.name {
            q.push(" AND name = ").push_bind(name.as_str());
        }
        let live = format!("(state = 'running' AND locked_until > {s}.ms_now())");
        match query.state {
            None => {}
            Some(JobState::Failed) => {
                q.push(" AND state = 'failed'");
            }
            Some(JobState::Running) => {
                q.push(format!(" AND {live}"));
            }
            Some(JobState::Pending) => {
                q.push(format!(" AND state <> 'failed' AND NOT {live}"));
            }
        }
        q.push(if query.newest_first() {
            " ORDER BY id DESC LIMIT "
        } else {
            " ORDER BY id LIMIT "
        })
        .push_bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
        .push(" OFFSET ")
        .push_bind(i64::try_from(query.offset).unwrap_or(i64::MAX));
        q
    }

    pub(crate) async fn read_recurrent(&self) -> Result<Vec<Job>> {
        let rows = self
            .attempt("listing recurrent jobs", move |mut conn: Conn| async move {
                let outcome = sqlx::query(&self.inner.sql.read.recurrent)
                    .persistent(self.persistent())
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| db_error("listing recurrent jobs", e));
                (conn, outcome)
            })
            .await?;
        Ok(readable(rows, |row| job_from_row(row, view_state(row)?)))
    }

    pub(crate) async fn read_stats(&self, since: DateTime<Utc>) -> Result<Vec<ExecutionMinute>> {
        let since = stats_since(since, JobStore::now(self).await?);
        let rows = self
            .attempt("summing executions", move |mut conn: Conn| async move {
                let outcome = sqlx::query(&self.inner.sql.read.stats)
                    .bind(since)
                    .persistent(self.persistent())
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| db_error("summing executions", e));
                (conn, outcome)
            })
            .await?;
        let number = |row: &PgRow, column: &str| -> Result<u64> {
            Ok(u64::try_from(get::<i64>(row, column)?).unwrap_or(0))
        };
        Ok(readable(rows, |row| {
            let status: String = get(row, "status")?;
            Ok(ExecutionMinute {
                minute: get(row, "minute")?,
                status: ExecutionStatus::parse_stored(&status)?,
                count: number(row, "n")?,
                total_ms: number(row, "total_ms")?,
                max_ms: number(row, "max_ms")?,
            })
        }))
    }

    pub(crate) async fn read_counts(&self) -> Result<Vec<JobCounts>> {
        let rows = self
            .attempt("counting jobs", move |mut conn: Conn| async move {
                let outcome = sqlx::query(&self.inner.sql.read.counts)
                    .persistent(self.persistent())
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| db_error("counting jobs", e));
                (conn, outcome)
            })
            .await?;
        let count = |row: &PgRow, column: &str| -> Result<u64> {
            Ok(u64::try_from(get::<i64>(row, column)?).unwrap_or(0))
        };
        let mut counts = rows
            .iter()
            .map(|row| {
                Ok(JobCounts {
                    name: get(row, "name")?,
                    pending: count(row, "pending")?,
                    scheduled: count(row, "scheduled")?,
                    running: count(row, "running")?,
                    failed: count(row, "failed")?,
                    paused: false,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        JobCounts::mark_paused(&mut counts, &self.read_settings().await?);
        Ok(counts)
    }

    pub(crate) async fn read_executions(&self, query: &ExecutionQuery) -> Result<Vec<Execution>> {
        let rows = self
            .attempt("reading executions", move |mut conn: Conn| async move {
                let outcome = sqlx::query(&self.inner.sql.read.executions)
                    .bind(&query.name)
                    .bind(query.job_id.as_ref().map(JobId::as_str))
                    .bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
                    .bind(i64::try_from(query.offset).unwrap_or(i64::MAX))
                    .persistent(self.persistent())
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| db_error("reading executions", e));
                (conn, outcome)
            })
            .await?;
        Ok(readable(rows, execution_from_row))
    }
}
