//! Removing jobs and records: cancelling a job that is not running, and pruning failed jobs
//! and execution records past their retention, in bounded batches.

use chrono::{DateTime, Utc};
use dogs_core::{
    prune_in_batches, Error, ErrorKind, JobId, JobStore, PruneBatch, PruneReport, Result,
    PRUNE_BATCH,
};

use crate::error::db_error;
use crate::sql::{fill, parse_id};
use crate::store::PostgresStore;

/// The removing statements of a schema.
pub(crate) struct Statements {
    cancel: String,
    cancel_unique: String,
    is_running: String,
    prune_jobs: String,
    prune_executions: String,
}

impl Statements {
    pub(crate) fn new(s: &str) -> Self {
        Statements {
            cancel: fill(
                "DELETE FROM {s}.jobs WHERE id = $1
                   AND NOT (state = 'running' AND locked_until > {s}.ms_now())
                 RETURNING id",
                s,
            ),
            cancel_unique: fill(
                "DELETE FROM {s}.jobs WHERE name = $1 AND unique_identifier = $2 AND state <> 'failed'
                   AND NOT (state = 'running' AND locked_until > {s}.ms_now())
                 RETURNING id",
                s,
            ),
            is_running: fill(
                "SELECT id FROM {s}.jobs WHERE ((id = $1) OR (name = $2 AND unique_identifier = $3 AND state <> 'failed'))
                   AND state = 'running' AND locked_until > {s}.ms_now()",
                s,
            ),
            prune_jobs: fill(
                "DELETE FROM {s}.jobs WHERE id IN (
                     SELECT id FROM {s}.jobs WHERE state = 'failed' AND expires_at <= $2
                     ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)",
                s,
            ),
            prune_executions: fill(
                "DELETE FROM {s}.executions WHERE execution_id IN (
                     SELECT execution_id FROM {s}.executions WHERE expires_at <= $2
                     ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)",
                s,
            ),
        }
    }
}

impl PostgresStore {
    pub(crate) async fn cancel_by_id(&self, id: &JobId) -> Result<bool> {
        let Some(numeric) = parse_id(id) else {
            return Ok(false);
        };
        self.cancel_where(Some(numeric), None).await
    }

    pub(crate) async fn cancel_by_unique(&self, name: &str, unique: &str) -> Result<bool> {
        self.cancel_where(None, Some((name, unique))).await
    }

    /// Removes a job that is not running, found by id or by name and unique identifier; a
    /// running one is `Conflict`.
    async fn cancel_where(&self, id: Option<i64>, unique: Option<(&str, &str)>) -> Result<bool> {
        let statements = &self.inner.sql.remove;
        let removed = self
            .attempt("cancelling a job", move || async move {
                let mut conn = self.conn().await?;
                let query = match (id, unique) {
                    (Some(id), _) => sqlx::query(&statements.cancel).bind(id),
                    (None, Some((name, unique))) => sqlx::query(&statements.cancel_unique)
                        .bind(name)
                        .bind(unique),
                    (None, None) => return Ok(None),
                };
                query
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(|e| db_error("cancelling a job", e))
            })
            .await?;
        if removed.is_some() {
            return Ok(true);
        }
        let (name, unique) = unique.unwrap_or_default();
        let running: Option<i64> = self
            .attempt("cancelling a job", move || async move {
                let mut conn = self.conn().await?;
                sqlx::query_scalar(&statements.is_running)
                    .bind(id.unwrap_or(-1))
                    .bind(name)
                    .bind(unique)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(|e| db_error("cancelling a job", e))
            })
            .await?;
        match running {
            Some(id) => Err(Error::new(
                ErrorKind::Conflict,
                format!("job {id} is running and cannot be cancelled"),
            )),
            None => Ok(false),
        }
    }

    /// Removes what had expired when it began, in batches ([`prune_in_batches`]).
    pub(crate) async fn prune_expired(&self) -> Result<PruneReport> {
        let cutoff = JobStore::now(self).await?;
        let statements = &self.inner.sql.remove;
        prune_in_batches(|| async move {
            Ok(PruneBatch::counted(PruneReport {
                jobs: self.prune_batch(&statements.prune_jobs, cutoff).await?,
                executions: self
                    .prune_batch(&statements.prune_executions, cutoff)
                    .await?,
            }))
        })
        .await
    }

    /// Runs one pruning statement: up to [`PRUNE_BATCH`] rows expired at `cutoff`.
    async fn prune_batch(&self, sql: &str, cutoff: DateTime<Utc>) -> Result<u64> {
        let removed = self
            .attempt("pruning", move || async move {
                let mut conn = self.conn().await?;
                sqlx::query(sql)
                    .bind(PRUNE_BATCH as i64)
                    .bind(cutoff)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| db_error("pruning", e))
            })
            .await?;
        Ok(removed.rows_affected())
    }
}
