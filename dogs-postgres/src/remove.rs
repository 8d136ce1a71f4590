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

/// Removes what dogs' migrations created in the schema (`{s}`), in one transaction that holds
/// the migration lock, so a store connecting meanwhile migrates before or after it, never
/// half-way. `RESTRICT`: an object of the application that depends on dogs' tables or functions
/// (a view, a foreign key) fails the whole removal, and nothing is removed. The schema itself
/// goes too when nothing else is left in it, unless it is `public`.
const REMOVE_ALL: &str = r#"
SET LOCAL lock_timeout = '{lock_timeout}';
SELECT pg_advisory_xact_lock(hashtext('dogs migrations {schema}'));
DO $check$ BEGIN
    -- A `migrations` table of the application (in a shared schema) is not for dogs to drop:
    -- dogs' holds its first migration, and no row of a version dogs knows by another name.
    IF to_regclass('{s}.migrations') IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM {s}.migrations WHERE version = 1 AND name = 'schema')
            OR EXISTS (SELECT 1 FROM {s}.migrations
                       WHERE version <= {last_version} AND (version, name) NOT IN ({known}))
        THEN
            RAISE EXCEPTION 'table {schema}.migrations is not the one dogs created'
                USING ERRCODE = 'P0001';
        END IF;
    END IF;
END $check$;
DROP TABLE IF EXISTS {s}.jobs, {s}.executions, {s}.names, {s}.migrations RESTRICT;
DROP FUNCTION IF EXISTS {s}.ms_now(),
    {s}.claim(text[], bigint[], integer, text),
    {s}.claim_next(text[], bigint[], integer, text),
    {s}.claim_capped(text[], bigint[], integer[], integer, text),
    {s}.notify_due(), {s}.notify_due_row() RESTRICT;
DO $remove$ BEGIN
    IF '{schema}' <> 'public' THEN
        BEGIN
            DROP SCHEMA IF EXISTS {s} RESTRICT;
        EXCEPTION WHEN dependent_objects_still_exist OR insufficient_privilege THEN
            NULL; -- the application's objects are in it, or it is not ours to drop: it stays
        END;
    END IF;
END $remove$;
"#;

impl PostgresStore {
    /// Removes dogs' tables and functions from the store's schema, and the schema when nothing
    /// else is in it (never `public`): an application's own tables in the same schema stay.
    pub(crate) async fn remove_own_objects(&self) -> Result<()> {
        self.timed("removing the store", self.remove_own_objects_once())
            .await
    }

    /// [`REMOVE_ALL`] as one simple query (no prepared statement, so a transaction pooler may
    /// run it), in a transaction begun as every statement of the store is.
    async fn remove_own_objects_once(&self) -> Result<()> {
        let begun = match &self.inner.begin {
            Some(begin) => self.inner.pool.begin_with(begin.clone()).await,
            None => self.inner.pool.begin().await,
        };
        let mut tx = begun.map_err(|e| db_error("beginning a transaction", e))?;
        // While the drop waits for its lock (a transaction of the application holding a row
        // of `jobs`), every claim and schedule queues behind it: it waits 5 s at most (a
        // quarter of the request timeout when that is shorter), well within the statement
        // timeout, and then fails with nothing removed.
        let lock_timeout = format!(
            "{}ms",
            (self.inner.request_timeout / 4)
                .min(std::time::Duration::from_secs(5))
                .as_millis()
                .max(1)
        );
        let known: Vec<String> = crate::migrate::MIGRATIONS
            .iter()
            .map(|(version, name, _)| format!("({version}, '{}')", name.replace('\'', "''")))
            .collect();
        let last_version = crate::migrate::MIGRATIONS
            .last()
            .map_or(0, |(version, _, _)| *version);
        let sql = REMOVE_ALL
            .replace("{known}", &known.join(", "))
            .replace("{last_version}", &last_version.to_string())
            .replace("{lock_timeout}", &lock_timeout)
            .replace("{schema}", &self.inner.schema)
            .replace("{s}", &self.inner.quoted);
        sqlx::Executor::execute(&mut *tx, sql.as_str())
            .await
            .map_err(|e| self.removal_error(e))?;
        tx.commit()
            .await
            .map_err(|e| db_error("committing a transaction", e))
    }

    fn removal_error(&self, error: sqlx::Error) -> Error {
        let code = match &error {
            sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
            _ => None,
        };
        match code.as_deref() {
            // dependent_objects_still_exist
            Some("2BP01") => Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "PostgreSQL: objects of schema '{}' or elsewhere depend on dogs' tables or \
                     functions; nothing was removed",
                    self.inner.schema
                ),
            )
            .with_source(error),
            // lock_not_available, query_canceled (the statement timeout)
            Some("55P03" | "57014") => Error::unavailable(
                "PostgreSQL: removing the store waited too long for a lock another \
                 transaction holds; nothing was removed",
            )
            .with_source(error),
            // raise_exception: the check of the `migrations` table
            Some("P0001") => Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "PostgreSQL: schema '{}' holds a `migrations` table dogs did not create; \
                     nothing was removed",
                    self.inner.schema
                ),
            )
            .with_source(error),
            _ => db_error("removing the store", error),
        }
    }
}
