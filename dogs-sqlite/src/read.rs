//! Reading jobs and execution records on the reading connections, each with its state by the
//! store's clock.

use chrono::{DateTime, Utc};
use dogs_core::{
    stats_since, Execution, ExecutionMinute, ExecutionQuery, ExecutionStatus, Job, JobCounts,
    JobId, JobQuery, JobState, Result,
};
use sqlx::sqlite::SqliteRow;

use crate::decode::{execution_from_row, get, instant, readable, viewed_job};
use crate::error::db_error;
use crate::sql::{
    clock_now, ms, parse_id, EXECUTION_COLUMNS, JOB_COLUMNS, PAUSED, VIEW_STATE, VISIBLE,
};
use crate::store::SqliteStore;

/// A job live by the store's clock (`?1`).
const LIVE: &str = "(state = 'running' AND locked_until > ?1)";

/// A count as dogs shows it.
fn count(row: &SqliteRow, column: &str) -> Result<u64> {
    Ok(u64::try_from(get::<i64>(row, column)?).unwrap_or(0))
}

/// A page bound as SQLite takes it.
fn page(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl SqliteStore {
    pub(crate) async fn read_job(&self, id: &JobId) -> Result<Option<Job>> {
        let Some(id) = parse_id(id) else {
            return Ok(None);
        };
        let sql = &format!(
            "SELECT {JOB_COLUMNS}, {VIEW_STATE} AS view_state, {PAUSED} FROM jobs
             WHERE id = ?2 AND {VISIBLE}"
        );
        self.read("reading a job", move |mut conn| async move {
            let row = sqlx::query(sql)
                .bind(ms(clock_now()))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| db_error("reading a job", e))?;
            row.map(|row| viewed_job(&row)).transpose()
        })
        .await
    }

    pub(crate) async fn read_jobs(&self, query: &JobQuery) -> Result<Vec<Job>> {
        // A name's failed jobs are read through their own index, not all of the name's jobs.
        let indexed = if query.name.is_some() && query.state == Some(JobState::Failed) {
            " INDEXED BY jobs_failed_by_name"
        } else {
            ""
        };
        let mut sql = format!(
            "SELECT {JOB_COLUMNS}, {VIEW_STATE} AS view_state, {PAUSED} FROM jobs{indexed} WHERE {VISIBLE}"
        );
        if query.name.is_some() {
            sql.push_str(" AND name = ?2");
        }
        match query.state {
            None => {}
            Some(JobState::Failed) => sql.push_str(" AND state = 'failed'"),
            Some(JobState::Running) => sql.push_str(&format!(" AND {LIVE}")),
            Some(JobState::Pending) => {
                sql.push_str(&format!(" AND state <> 'failed' AND NOT {LIVE}"))
            }
        }
        sql.push_str(if query.newest_first() {
            " ORDER BY id DESC LIMIT ?3 OFFSET ?4"
        } else {
            " ORDER BY id LIMIT ?3 OFFSET ?4"
        });
        let sql = &sql;
        let rows = self
            .read("listing jobs", move |mut conn| async move {
                sqlx::query(sql)
                    .bind(ms(clock_now()))
                    .bind(query.name.as_deref())
                    .bind(page(query.limit))
                    .bind(page(query.offset))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| db_error("listing jobs", e))
            })
            .await?;
        Ok(readable(rows, viewed_job))
    }

    pub(crate) async fn read_recurrent(&self) -> Result<Vec<Job>> {
        let sql = &format!(
            "SELECT {JOB_COLUMNS}, {VIEW_STATE} AS view_state, {PAUSED} FROM jobs
             WHERE kind = 'recurrent' AND {VISIBLE} ORDER BY name"
        );
        let rows = self
            .read("listing recurrent jobs", move |mut conn| async move {
                sqlx::query(sql)
                    .bind(ms(clock_now()))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| db_error("listing recurrent jobs", e))
            })
            .await?;
        Ok(readable(rows, viewed_job))
    }

    pub(crate) async fn read_counts(&self) -> Result<Vec<JobCounts>> {
        let pending = format!("state <> 'failed' AND NOT {LIVE}");
        let sql = &format!(
            "SELECT name,
                    sum(CASE WHEN {pending} THEN 1 ELSE 0 END) AS pending,
                    sum(CASE WHEN {pending} AND run_at > ?1 THEN 1 ELSE 0 END) AS scheduled,
                    sum(CASE WHEN {LIVE} THEN 1 ELSE 0 END) AS running,
                    sum(CASE WHEN state = 'failed' THEN 1 ELSE 0 END) AS failed
             FROM jobs WHERE {VISIBLE} GROUP BY name ORDER BY name"
        );
        let (rows, settings) = self
            .read("counting jobs", move |mut conn| async move {
                let rows = sqlx::query(sql)
                    .bind(ms(clock_now()))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| db_error("counting jobs", e))?;
                let settings = crate::operate::settings_on(&mut conn).await?;
                Ok((rows, settings))
            })
            .await?;
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
        JobCounts::mark_paused(&mut counts, &settings);
        Ok(counts)
    }

    pub(crate) async fn read_stats(&self, since: DateTime<Utc>) -> Result<Vec<ExecutionMinute>> {
        let now = clock_now();
        let since = ms(stats_since(since, now));
        // Run times are summed as floating point (`total`), which cannot overflow; exact up to
        // 2^53 ms.
        let sql = "SELECT ended_at - (((ended_at % 60000) + 60000) % 60000) AS minute, status,
                          count(*) AS n, total(duration_ms) AS total_ms,
                          coalesce(max(duration_ms), 0) AS max_ms
                   FROM executions
                   WHERE ended_at >= ?1 AND expires_at > ?2
                   GROUP BY 1, 2 ORDER BY 1, 2";
        let rows = self
            .read("summing executions", move |mut conn| async move {
                sqlx::query(sql)
                    .bind(since)
                    .bind(ms(now))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| db_error("summing executions", e))
            })
            .await?;
        Ok(readable(rows, |row| {
            let status: String = get(row, "status")?;
            let total: f64 = get(row, "total_ms")?;
            Ok(ExecutionMinute {
                minute: instant(get(row, "minute")?, "minute")?,
                status: ExecutionStatus::parse_stored(&status)?,
                count: count(row, "n")?,
                // Saturating: a float past u64's range becomes its largest value.
                total_ms: total.max(0.0) as u64,
                max_ms: count(row, "max_ms")?,
            })
        }))
    }

    pub(crate) async fn read_executions(&self, query: &ExecutionQuery) -> Result<Vec<Execution>> {
        let sql = &format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions
             WHERE name = ?1 AND expires_at > ?2 AND (?3 IS NULL OR job_id = ?3)
             ORDER BY started_at DESC, execution_id DESC LIMIT ?4 OFFSET ?5"
        );
        let rows = self
            .read("reading executions", move |mut conn| async move {
                sqlx::query(sql)
                    .bind(query.name.as_str())
                    .bind(ms(clock_now()))
                    .bind(query.job_id.as_ref().map(JobId::as_str))
                    .bind(page(query.limit))
                    .bind(page(query.offset))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| db_error("reading executions", e))
            })
            .await?;
        Ok(readable(rows, execution_from_row))
    }
}
