//! Removing jobs and records: cancelling a job (a running one is failed as cancelled), and
//! pruning failed jobs and execution records past their retention, in bounded batches.

use chrono::{DateTime, Utc};
use dogs_core::{
    prune_in_batches, Error, ErrorKind, JobId, JobStore, PruneBatch, PruneReport, Result,
    CANCELLED_ERROR, CANCELLED_RETENTION, PRUNE_BATCH,
};

use crate::error::db_error;
use crate::sql::{fill, parse_id};
use crate::store::{Conn, PostgresStore};

/// The removing statements of a schema.
pub(crate) struct Statements {
    cancel: String,
    cancel_unique: String,
    prune_jobs: String,
    prune_executions: String,
}

/// Cancels the job `target` finds: removed when it is not running; failed as cancelled, its
/// lease ended and its workers told, when it is.
///
/// The cancelled job keeps `locked_until`: until then its handler may still be stopping, so it
/// counts against its name's concurrency limit and is not retried. A running recurrent job is
/// left as it is, and reported (`recurrent`); one cancelled already whose lease has not ended is
/// left as it is (`stopping`).
const CANCEL: &str = "WITH target AS ({target}), removed AS (
         DELETE FROM {s}.jobs j USING target t WHERE j.id = t.id AND NOT t.live AND NOT t.stopping
         RETURNING j.id
     ), cancelled AS (
         UPDATE {s}.jobs j SET state = 'failed', last_error = $3,
             expires_at = {s}.ms_now() + $4 * interval '1 millisecond',
             lease_token = NULL, demoted = false
         FROM target t WHERE j.id = t.id AND t.live AND t.kind = 'event' RETURNING j.id
     ), told AS (
         SELECT pg_notify($5, $6) FROM cancelled
     )
     SELECT (SELECT count(*) FROM removed) + (SELECT count(*) FROM cancelled)
                + (SELECT count(*) FROM target t WHERE t.stopping) AS found,
            (SELECT count(*) FROM told) AS told,
            (SELECT count(*) FROM target t WHERE t.live AND t.kind <> 'event') AS recurrent";

impl Statements {
    pub(crate) fn new(s: &str) -> Self {
        // Cancelled already, its handler maybe still stopping: it keeps its place.
        let live = "(j.state = 'running' AND j.locked_until > {s}.ms_now()) AS live, \
             (j.state = 'failed' AND j.last_error = $3 AND j.locked_until > {s}.ms_now()) AS stopping";
        Statements {
            cancel: fill(
                &CANCEL.replace(
                    "{target}",
                    &format!(
                        "SELECT j.id, j.kind, {live} FROM {{s}}.jobs j WHERE j.id = $1 AND $2::text IS NULL
                           AND NOT (j.state = 'failed' AND j.expires_at <= {{s}}.ms_now()) FOR UPDATE"
                    ),
                ),
                s,
            ),
            cancel_unique: fill(
                &CANCEL.replace(
                    "{target}",
                    &format!(
                        "SELECT j.id, j.kind, {live} FROM {{s}}.jobs j WHERE j.name = $1 AND j.unique_identifier = $2
                           AND j.state <> 'failed' FOR UPDATE"
                    ),
                ),
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
        self.cancel_where(&self.inner.sql.remove.cancel, numeric.to_string(), None)
            .await
    }

    pub(crate) async fn cancel_by_unique(&self, name: &str, unique: &str) -> Result<bool> {
        self.cancel_where(
            &self.inner.sql.remove.cancel_unique,
            name.to_owned(),
            Some(unique),
        )
        .await
    }

    /// Cancels the job `sql` finds with `first` and `second`: removes it when it is not running;
    /// fails it as cancelled (`CANCELLED_ERROR`) and tells its workers when it is.
    async fn cancel_where(&self, sql: &str, first: String, second: Option<&str>) -> Result<bool> {
        let channel = &crate::store::channel(&self.inner.schema);
        let first = &first;
        let row = self
            .attempt("cancelling a job", move |mut conn: Conn| async move {
                let query = sqlx::query(sql);
                let query = match first.parse::<i64>() {
                    Ok(id) if second.is_none() => query.bind(id),
                    _ => query.bind(first.as_str()),
                };
                let outcome = query
                    .bind(second)
                    .bind(CANCELLED_ERROR)
                    .bind(crate::sql::millis(CANCELLED_RETENTION))
                    .bind(channel)
                    .bind(crate::wakeups::CANCELLED)
                    .persistent(self.persistent())
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| db_error("cancelling a job", e));
                (conn, outcome)
            })
            .await?;
        if crate::decode::get::<i64>(&row, "recurrent")? > 0 {
            return Err(Error::new(
                ErrorKind::Conflict,
                "the job is a running recurrent job: pause its name to stop it",
            ));
        }
        Ok(crate::decode::get::<i64>(&row, "found")? > 0)
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
            .attempt("pruning", move |mut conn: Conn| async move {
                let outcome = sqlx::query(sql)
                    .bind(PRUNE_BATCH as i64)
                    .bind(cutoff)
                    .persistent(self.persistent())
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| db_error("pruning", e));
                (conn, outcome)
            })
            .await?;
        Ok(removed.rows_affected())
    }
}

/// The tables dogs' migrations create in its schema.
const OWN_TABLES: [&str; 4] = ["jobs", "executions", "names", "migrations"];

impl PostgresStore {
    /// Drops the store's schema, with everything in it. Refuses (`InvalidInput`, nothing
    /// dropped) a schema that also holds tables that are not dogs', such as `public` with an
    /// application's tables in it.
    pub(crate) async fn drop_schema(&self) -> Result<()> {
        self.timed("dropping the schema", self.drop_schema_once())
            .await
    }

    /// Lists the schema's other tables and drops it in one transaction, which also keeps both
    /// statements on one server connection behind a transaction pooler.
    async fn drop_schema_once(&self) -> Result<()> {
        let mut tx = self
            .inner
            .pool
            .begin()
            .await
            .map_err(|e| db_error("beginning a transaction", e))?;
        let others: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = $1 AND NOT (table_name = ANY($2)) ORDER BY table_name LIMIT 5",
        )
        .persistent(self.persistent())
        .bind(&self.inner.schema)
        .bind(&OWN_TABLES[..])
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| db_error("listing the schema's tables", e))?;
        if !others.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "schema '{}' also holds tables that are not dogs' ({}); nothing was dropped",
                    self.inner.schema,
                    others.join(", ")
                ),
            ));
        }
        sqlx::query(&format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            self.inner.quoted
        ))
        .persistent(self.persistent())
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error("dropping the schema", e))?;
        tx.commit()
            .await
            .map_err(|e| db_error("committing a transaction", e))
    }
}
