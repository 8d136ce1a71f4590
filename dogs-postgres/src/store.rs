//! [`PostgresStore`]: the [`JobStore`] implementation on PostgreSQL.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use dogs_core::{
    async_trait, ClaimRequest, ClaimedJob, Completion, Error, ErrorKind, Execution, ExecutionQuery,
    ExecutionStatus, Finish, Job, JobCounts, JobId, JobKind, JobQuery, JobState, JobStore, Lease,
    LeaseToken, NewJob, PruneReport, RecurrentRegistration, Result, RunAt, Scheduled, WakeUpSender,
    WakeUps,
};
use serde_json::Value;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::config::PostgresStoreBuilder;
use crate::error::db_error;

/// How many rows one pruning statement removes.
const PRUNE_BATCH: i64 = 1000;

/// A job store on PostgreSQL. Cheap to clone: clones share the pool.
///
/// Claims lease due jobs with `FOR UPDATE SKIP LOCKED` through an index of claimable rows only;
/// every write on a claimed job checks its lease token; every time comparison uses the server's
/// clock; idle workers are woken through LISTEN/NOTIFY.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    schema: String,
    max_params_bytes: usize,
    sql: Sql,
    wake: WakeUpSender,
    listener: OnceLock<()>,
    stop_listener: CancellationToken,
    _stop_on_drop: DropGuard,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema)
            .field("max_params_bytes", &self.inner.max_params_bytes)
            .finish_non_exhaustive()
    }
}

/// The wake-up channel of a schema.
pub(crate) fn channel(schema: &str) -> String {
    format!("{schema}_wake")
}

/// The claim's candidate query with its inputs named (the schema placeholder is left in).
pub(crate) fn claim_candidates(names: &str, lock_ms: &str, limit: &str, now: &str) -> String {
    include_str!("claim_candidates.sql")
        .replace("{names}", names)
        .replace("{lock_ms}", lock_ms)
        .replace("{limit}", limit)
        .replace("{now}", now)
}

/// `at` for the store: either an instant, or milliseconds after the server's now.
fn run_at_binds(run_at: RunAt) -> (Option<DateTime<Utc>>, i64) {
    match run_at {
        RunAt::Now => (None, 0),
        RunAt::At(at) => (Some(at), 0),
        RunAt::In(delay) => (None, millis(delay)),
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn parse_id(id: &JobId) -> Option<i64> {
    id.as_str().parse().ok()
}

/// The statements, with the schema name filled in once.
struct Sql {
    schedule: String,
    schedule_many: String,
    find_unique: String,
    register: String,
    claim: String,
    extend: String,
    record: String,
    get: String,
    counts: String,
    executions: String,
    cancel: String,
    cancel_unique: String,
    is_running: String,
    prune_jobs: String,
    prune_executions: String,
    remove_many: String,
    schema: String,
}

/// The state a reader sees, by the server's clock: a lease that ran out is pending again, and a
/// failed job past its retention is gone.
const STATE: &str = "CASE WHEN state = 'failed' THEN 'failed' \
     WHEN state = 'running' AND locked_until > {s}.ms_now() THEN 'running' ELSE 'pending' END";
const VISIBLE: &str = "NOT (state = 'failed' AND expires_at <= {s}.ms_now())";
const JOB_COLUMNS: &str = "id, name, kind, params, priority, run_at, unique_identifier, tries, \
     locked_until, locked_by, last_error, expires_at, schedule_key, created_at";
const EXECUTION_COLUMNS: &str = "execution_id, job_id, name, kind, priority, tries, \
     unique_identifier, params, started_at, ended_at, duration_ms, status, error, result, \
     worker_id, expires_at";
/// The state a new or rescheduled job gets from its run time.
const STATE_OF_RUN_AT: &str = "CASE WHEN {at} <= {s}.ms_now() THEN 'pending' ELSE 'scheduled' END";
const UNIQUE_TARGET: &str =
    "(name, unique_identifier) WHERE unique_identifier IS NOT NULL AND state <> 'failed'";

impl Sql {
    fn new(schema: &str) -> Self {
        let s = format!("\"{schema}\"");
        let fill = |text: &str| text.replace("{s}", &s);
        let state = fill(STATE);
        let visible = fill(VISIBLE);
        let new_state = |at: &str| fill(&STATE_OF_RUN_AT.replace("{at}", at));
        Sql {
            schedule: fill(&format!(
                "WITH input AS (
                     SELECT COALESCE($5::timestamptz, {{s}}.ms_now() + $6::bigint * interval '1 millisecond') AS at
                 ), ins AS (
                     INSERT INTO {{s}}.jobs (name, kind, params, priority, run_at, unique_identifier, state)
                     SELECT $1, 'event', $2, $3, input.at, $4, {}
                     FROM input
                     ON CONFLICT {UNIQUE_TARGET} DO NOTHING
                     RETURNING id
                 )
                 SELECT id, true AS created FROM ins
                 UNION ALL
                 SELECT j.id, false FROM {{s}}.jobs j
                 WHERE $4::text IS NOT NULL AND j.name = $1 AND j.unique_identifier = $4
                   AND j.state <> 'failed' AND NOT EXISTS (SELECT 1 FROM ins)",
                new_state("input.at")
            )),
            schedule_many: fill(&format!(
                "WITH input AS (
                     SELECT nextval('{{s}}.jobs_id_seq') AS id, i.ord, i.name, i.params, i.priority, i.uid,
                            COALESCE(i.at, {{s}}.ms_now() + i.in_ms * interval '1 millisecond') AS run_at
                     FROM unnest($1::text[], $2::jsonb[], $3::int[], $4::timestamptz[], $5::bigint[], $6::text[])
                          WITH ORDINALITY AS i(name, params, priority, at, in_ms, uid, ord)
                 ), ins AS (
                     INSERT INTO {{s}}.jobs (id, name, kind, params, priority, run_at, unique_identifier, state)
                     SELECT id, name, 'event', params, priority, run_at, uid, {}
                     FROM input ORDER BY ord
                     ON CONFLICT {UNIQUE_TARGET} DO NOTHING
                     RETURNING id
                 )
                 SELECT input.id, ins.id IS NOT NULL AS created, existing.id AS existing
                 FROM input
                 LEFT JOIN ins ON ins.id = input.id
                 LEFT JOIN {{s}}.jobs existing ON ins.id IS NULL AND input.uid IS NOT NULL
                      AND existing.name = input.name AND existing.unique_identifier = input.uid
                      AND existing.state <> 'failed'
                 ORDER BY input.ord",
                new_state("input.run_at")
            )),
            find_unique: fill(
                "SELECT id FROM {s}.jobs WHERE name = $1 AND unique_identifier = $2 AND state <> 'failed'",
            ),
            register: fill(&format!(
                "INSERT INTO {{s}}.jobs AS j (name, kind, params, priority, run_at, state, schedule_key)
                 VALUES ($1, 'recurrent', 'null', $2, {{s}}.ms_now(), 'pending', $3)
                 ON CONFLICT (name) WHERE kind = 'recurrent' DO UPDATE SET
                     priority = EXCLUDED.priority,
                     run_at = CASE WHEN j.schedule_key IS DISTINCT FROM EXCLUDED.schedule_key
                                   THEN $4 ELSE j.run_at END,
                     state = CASE WHEN j.schedule_key IS DISTINCT FROM EXCLUDED.schedule_key
                                       AND j.state IN ('scheduled', 'pending')
                                  THEN {} ELSE j.state END,
                     schedule_key = EXCLUDED.schedule_key
                 RETURNING id",
                new_state("$4")
            )),
            claim: fill("SELECT * FROM {s}.claim($1, $2, $3, $4)"),
            extend: fill(
                "UPDATE {s}.jobs SET
                     locked_until = {s}.ms_now() + $3 * interval '1 millisecond',
                     state = 'running', demoted = false
                 WHERE id = $1 AND lease_token = $2 AND state IN ('running', 'pending')
                 RETURNING locked_until",
            ),
            record: fill(&format!(
                "INSERT INTO {{s}}.executions ({EXECUTION_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                 ON CONFLICT (execution_id) DO NOTHING"
            )),
            get: fill(&format!(
                "SELECT {JOB_COLUMNS}, {state} AS view_state FROM {{s}}.jobs WHERE id = $1 AND {visible}"
            )),
            counts: fill(&format!(
                "SELECT name,
                        count(*) FILTER (WHERE {state} = 'pending') AS pending,
                        count(*) FILTER (WHERE {state} = 'running') AS running,
                        count(*) FILTER (WHERE {state} = 'failed') AS failed
                 FROM {{s}}.jobs WHERE {visible} GROUP BY name ORDER BY name"
            )),
            executions: fill(&format!(
                "SELECT {EXECUTION_COLUMNS} FROM {{s}}.executions
                 WHERE name = $1 AND expires_at > {{s}}.ms_now() AND ($2::text IS NULL OR job_id = $2)
                 ORDER BY started_at DESC, execution_id DESC LIMIT $3 OFFSET $4"
            )),
            cancel: fill(
                "DELETE FROM {s}.jobs WHERE id = $1
                   AND NOT (state = 'running' AND locked_until > {s}.ms_now())
                 RETURNING id",
            ),
            cancel_unique: fill(
                "DELETE FROM {s}.jobs WHERE name = $1 AND unique_identifier = $2 AND state <> 'failed'
                   AND NOT (state = 'running' AND locked_until > {s}.ms_now())
                 RETURNING id",
            ),
            is_running: fill(
                "SELECT id FROM {s}.jobs WHERE ((id = $1) OR (name = $2 AND unique_identifier = $3 AND state <> 'failed'))
                   AND state = 'running' AND locked_until > {s}.ms_now()",
            ),
            prune_jobs: fill(
                "DELETE FROM {s}.jobs WHERE id IN (
                     SELECT id FROM {s}.jobs WHERE state = 'failed' AND expires_at <= {s}.ms_now()
                     ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)",
            ),
            prune_executions: fill(
                "DELETE FROM {s}.executions WHERE execution_id IN (
                     SELECT execution_id FROM {s}.executions WHERE expires_at <= {s}.ms_now()
                     ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)",
            ),
            remove_many: fill(&format!(
                "WITH input AS (
                     SELECT * FROM unnest($1::bigint[], $2::text[]) AS i(id, token)
                 ), done AS (
                     DELETE FROM {{s}}.jobs j USING input i
                     WHERE j.id = i.id AND j.lease_token = i.token AND j.state IN ('running', 'pending')
                     RETURNING j.id
                 ), recorded AS (
                     INSERT INTO {{s}}.executions ({EXECUTION_COLUMNS})
                     SELECT e.* FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::int[],
                         $8::int[], $9::text[], $10::jsonb[], $11::timestamptz[], $12::timestamptz[],
                         $13::bigint[], $14::text[], $15::text[], $16::jsonb[], $17::text[],
                         $18::timestamptz[])
                         AS e({EXECUTION_COLUMNS})
                     WHERE e.job_id IN (SELECT id::text FROM done)
                     ON CONFLICT (execution_id) DO NOTHING
                 )
                 SELECT id FROM done"
            )),
            schema: s,
        }
    }
}

impl PostgresStore {
    /// Connects to `url`, with the default schema `dogs`, and applies the migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        PostgresStoreBuilder::default().url(url).connect().await
    }

    /// A builder for the schema, the pool and the limits.
    pub fn builder() -> PostgresStoreBuilder {
        PostgresStoreBuilder::default()
    }

    pub(crate) fn new(pool: PgPool, schema: String, max_params_bytes: usize) -> Self {
        let stop_listener = CancellationToken::new();
        PostgresStore {
            inner: Arc::new(Inner {
                sql: Sql::new(&schema),
                pool,
                schema,
                max_params_bytes,
                wake: WakeUpSender::new(),
                listener: OnceLock::new(),
                _stop_on_drop: stop_listener.clone().drop_guard(),
                stop_listener,
            }),
        }
    }

    /// Applies the migrations the schema lacks. Idempotent, and safe when many processes start
    /// at once (they are serialised by an advisory lock).
    pub async fn migrate(&self) -> Result<()> {
        crate::migrate::migrate(&self.inner.pool, &self.inner.schema).await
    }

    /// The pool, to share with the rest of the service.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The schema that holds dogs' tables.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The plan PostgreSQL chooses now for the claim's candidate query (`EXPLAIN`), to check on
    /// real data that claims read the `jobs_claim` index of due jobs only.
    pub async fn explain_claim(&self, names: &[&str], limit: usize) -> Result<String> {
        let query = claim_candidates("$1", "$2", "$3::int", "\"{schema}\".ms_now()")
            .replace("{schema}", &self.inner.schema);
        let lock_ms: Vec<i64> = vec![0; names.len()];
        let mut conn = self.conn().await?;
        let lines: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {query}"))
            .bind(names)
            .bind(lock_ms)
            .bind(i32::try_from(limit).unwrap_or(i32::MAX))
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| db_error("explaining the claim", e))?;
        Ok(lines.join("\n"))
    }

    /// Schedules an event job inside the caller's transaction: the job exists if and only if the
    /// transaction commits, and idle workers are woken when it does.
    ///
    /// ```no_run
    /// # async fn example(store: dogs_postgres::PostgresStore) -> Result<(), Box<dyn std::error::Error>> {
    /// use dogs_core::NewJob;
    ///
    /// let mut tx = store.pool().begin().await?;
    /// sqlx::query("INSERT INTO orders (id) VALUES (42)").execute(&mut *tx).await?;
    /// store.schedule_in(&mut tx, NewJob::new("ship-order", serde_json::json!({"order": 42}))).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    pub async fn schedule_in(&self, conn: &mut PgConnection, job: NewJob) -> Result<Scheduled> {
        job.validate(self.inner.max_params_bytes)?;
        self.schedule_on(conn, &job).await
    }

    async fn schedule_on(&self, conn: &mut PgConnection, job: &NewJob) -> Result<Scheduled> {
        let (at, in_ms) = run_at_binds(job.run_at);
        // A conflict with a row another transaction inserts at the same moment is invisible to
        // this statement's snapshot; the next attempt sees it.
        for _ in 0..5 {
            let row = sqlx::query(&self.inner.sql.schedule)
                .bind(&job.name)
                .bind(&job.params)
                .bind(job.priority)
                .bind(&job.unique_identifier)
                .bind(at)
                .bind(in_ms)
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| db_error("scheduling a job", e))?;
            if let Some(row) = row {
                let id = JobId::new(get::<i64>(&row, "id")?.to_string());
                return Ok(if get::<bool>(&row, "created")? {
                    Scheduled::Created(id)
                } else {
                    Scheduled::Duplicate(id)
                });
            }
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "job '{}' with unique identifier {:?} kept conflicting with a job being removed",
                job.name, job.unique_identifier
            ),
        ))
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<Postgres>> {
        self.inner
            .pool
            .acquire()
            .await
            .map_err(|e| db_error("getting a connection", e))
    }

    /// Runs a fenced write built by `write` (a statement that returns the job's id when the
    /// token was current) and, when it applied, stores `execution` in the same statement.
    async fn fenced(
        &self,
        lease: &Lease,
        completion: Completion,
        execution: Option<&Execution>,
    ) -> Result<()> {
        let Some(id) = parse_id(&lease.job_id) else {
            return Err(Error::lock_lost(&lease.job_id));
        };
        let s = &self.inner.sql.schema;
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new("WITH done AS (");
        match completion {
            Completion::Remove => {
                q.push(format!("DELETE FROM {s}.jobs"));
            }
            Completion::Reschedule {
                run_at,
                priority,
                reset_tries,
            } => {
                let (at, in_ms) = run_at_binds(run_at);
                q.push(format!("UPDATE {s}.jobs SET run_at = COALESCE("))
                    .push_bind(at)
                    .push(format!(
                        "::timestamptz, {s}.ms_now() + interval '1 millisecond' * "
                    ))
                    .push_bind(in_ms)
                    .push("::bigint), priority = COALESCE(")
                    .push_bind(priority)
                    .push("::int, priority), tries = CASE WHEN ")
                    .push_bind(reset_tries)
                    .push(
                        " THEN 0 ELSE tries END, lease_token = NULL, locked_until = NULL, \
                         locked_by = NULL, demoted = false, state = CASE WHEN COALESCE(",
                    )
                    .push_bind(at)
                    .push(format!(
                        "::timestamptz, {s}.ms_now() + interval '1 millisecond' * "
                    ))
                    .push_bind(in_ms)
                    .push(format!(
                        "::bigint) <= {s}.ms_now() THEN 'pending' ELSE 'scheduled' END"
                    ));
            }
            Completion::Fail { error, retain_for } => {
                q.push(format!(
                    "UPDATE {s}.jobs SET state = 'failed', last_error = "
                ))
                .push_bind(error)
                .push(format!(
                    ", expires_at = {s}.ms_now() + interval '1 millisecond' * "
                ))
                .push_bind(millis(retain_for))
                .push(
                    ", lease_token = NULL, locked_until = NULL, locked_by = NULL, demoted = false",
                );
            }
            Completion::Demote => {
                q.push(format!(
                    "UPDATE {s}.jobs SET state = 'pending', demoted = true, run_at = {s}.ms_now(), \
                     lease_token = NULL, locked_until = NULL, locked_by = NULL"
                ));
            }
            Completion::Release => {
                q.push(format!(
                    "UPDATE {s}.jobs SET tries = greatest(tries - 1, 0), lease_token = NULL, \
                     locked_until = NULL, locked_by = NULL, \
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
        let mut conn = self.conn().await?;
        let applied: i64 = q
            .build_query_scalar()
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| db_error("saving a job's outcome", e))?;
        if applied == 0 {
            return Err(Error::lock_lost(&lease.job_id));
        }
        Ok(())
    }

    /// Removes many finished jobs, fenced by their tokens, and stores their execution records,
    /// in one statement. Returns the ids that were removed.
    async fn remove_many(&self, removals: &[(usize, i64, Finish)]) -> Result<Vec<i64>> {
        let ids: Vec<i64> = removals.iter().map(|(_, id, _)| *id).collect();
        let tokens: Vec<&str> = removals
            .iter()
            .map(|(_, _, f)| f.lease.token.as_str())
            .collect();
        let records: Vec<&Execution> = removals
            .iter()
            .filter_map(|(_, _, f)| f.execution.as_ref())
            .collect();
        let column = |get: &dyn Fn(&Execution) -> Option<String>| -> Vec<Option<String>> {
            records.iter().map(|e| get(e)).collect()
        };
        let mut conn = self.conn().await?;
        sqlx::query_scalar(&self.inner.sql.remove_many)
            .bind(ids)
            .bind(tokens)
            .bind(column(&|e| Some(e.execution_id.clone())))
            .bind(column(&|e| Some(e.job_id.as_str().to_owned())))
            .bind(column(&|e| Some(e.name.clone())))
            .bind(column(&|e| Some(e.kind.as_str().to_owned())))
            .bind(records.iter().map(|e| e.priority).collect::<Vec<i32>>())
            .bind(
                records
                    .iter()
                    .map(|e| tries_i32(e.tries))
                    .collect::<Vec<i32>>(),
            )
            .bind(column(&|e| e.unique_identifier.clone()))
            .bind(
                records
                    .iter()
                    .map(|e| e.params.clone())
                    .collect::<Vec<Value>>(),
            )
            .bind(
                records
                    .iter()
                    .map(|e| e.started_at)
                    .collect::<Vec<DateTime<Utc>>>(),
            )
            .bind(
                records
                    .iter()
                    .map(|e| e.ended_at)
                    .collect::<Vec<DateTime<Utc>>>(),
            )
            .bind(
                records
                    .iter()
                    .map(|e| millis(e.duration))
                    .collect::<Vec<i64>>(),
            )
            .bind(column(&|e| Some(e.status.as_str().to_owned())))
            .bind(column(&|e| e.error.clone()))
            .bind(
                records
                    .iter()
                    .map(|e| e.result.clone())
                    .collect::<Vec<Option<Value>>>(),
            )
            .bind(column(&|e| Some(e.worker_id.clone())))
            .bind(
                records
                    .iter()
                    .map(|e| e.expires_at)
                    .collect::<Vec<DateTime<Utc>>>(),
            )
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| db_error("saving job outcomes", e))
    }

    /// Starts the LISTEN connection once, from within a runtime (workers ask for wake-ups from
    /// one).
    fn start_listener(&self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.inner.listener.get_or_init(|| {
            tokio::spawn(crate::listener::listen(
                self.inner.pool.clone(),
                channel(&self.inner.schema),
                self.inner.wake.clone(),
                self.inner.stop_listener.clone(),
            ));
        });
    }
}

impl PostgresStore {
    /// Removes a job that is not running, found by id or by name and unique identifier.
    async fn cancel_where(
        &self,
        sql: &str,
        id: Option<i64>,
        unique: Option<(&str, &str)>,
    ) -> Result<bool> {
        let mut conn = self.conn().await?;
        let query = match (id, unique) {
            (Some(id), _) => sqlx::query(sql).bind(id),
            (None, Some((name, unique))) => sqlx::query(sql).bind(name).bind(unique),
            (None, None) => return Ok(false),
        };
        let removed = query
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| db_error("cancelling a job", e))?;
        if removed.is_some() {
            return Ok(true);
        }
        let (name, unique) = unique.unwrap_or_default();
        let running: Option<i64> = sqlx::query_scalar(&self.inner.sql.is_running)
            .bind(id.unwrap_or(-1))
            .bind(name)
            .bind(unique)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| db_error("cancelling a job", e))?;
        match running {
            Some(id) => Err(Error::new(
                ErrorKind::Conflict,
                format!("job {id} is running and cannot be cancelled"),
            )),
            None => Ok(false),
        }
    }
}

fn tries_i32(tries: u32) -> i32 {
    i32::try_from(tries).unwrap_or(i32::MAX)
}

/// Reads `tries`, which a record written by hand may have negative.
fn read_tries(row: &PgRow) -> Result<u32> {
    let tries = get::<i32>(row, "tries")?;
    u32::try_from(tries)
        .map_err(|_| Error::new(ErrorKind::Corrupt, format!("tries is negative ({tries})")))
}

/// Reads a column, turning a missing or mistyped one into a `Corrupt` error.
fn get<'r, T>(row: &'r PgRow, column: &str) -> Result<T>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(column).map_err(|e| {
        Error::new(
            ErrorKind::Corrupt,
            format!("PostgreSQL: column '{column}' cannot be read"),
        )
        .with_source(e)
    })
}

fn job_from_row(row: &PgRow, state: JobState) -> Result<Job> {
    let kind: String = get(row, "kind")?;
    Ok(Job {
        id: JobId::new(get::<i64>(row, "id")?.to_string()),
        name: get(row, "name")?,
        kind: JobKind::parse(&kind)
            .ok_or_else(|| Error::new(ErrorKind::Corrupt, format!("unknown job kind '{kind}'")))?,
        params: get::<Value>(row, "params")?,
        priority: get(row, "priority")?,
        run_at: get(row, "run_at")?,
        unique_identifier: get(row, "unique_identifier")?,
        tries: read_tries(row)?,
        state,
        locked_until: get(row, "locked_until")?,
        locked_by: get(row, "locked_by")?,
        last_error: row.try_get("last_error").unwrap_or(None),
        expires_at: row.try_get("expires_at").unwrap_or(None),
        schedule_key: get(row, "schedule_key")?,
        created_at: get(row, "created_at")?,
    })
}

fn view_state(row: &PgRow) -> Result<JobState> {
    let state: String = get(row, "view_state")?;
    Ok(match state.as_str() {
        "running" => JobState::Running,
        "failed" => JobState::Failed,
        _ => JobState::Pending,
    })
}

fn execution_from_row(row: &PgRow) -> Result<Execution> {
    let kind: String = get(row, "kind")?;
    let status: String = get(row, "status")?;
    Ok(Execution {
        job_id: JobId::new(get::<String>(row, "job_id")?),
        execution_id: get(row, "execution_id")?,
        name: get(row, "name")?,
        kind: JobKind::parse(&kind)
            .ok_or_else(|| Error::new(ErrorKind::Corrupt, format!("unknown job kind '{kind}'")))?,
        priority: get(row, "priority")?,
        tries: read_tries(row)?,
        unique_identifier: get(row, "unique_identifier")?,
        params: get(row, "params")?,
        started_at: get(row, "started_at")?,
        ended_at: get(row, "ended_at")?,
        duration: Duration::from_millis(
            u64::try_from(get::<i64>(row, "duration_ms")?).unwrap_or(0),
        ),
        status: ExecutionStatus::parse(&status).ok_or_else(|| {
            Error::new(
                ErrorKind::Corrupt,
                format!("unknown execution status '{status}'"),
            )
        })?,
        error: get(row, "error")?,
        result: get(row, "result")?,
        worker_id: get(row, "worker_id")?,
        expires_at: get(row, "expires_at")?,
    })
}

fn claimed_from_row(row: &PgRow) -> Result<ClaimedJob> {
    let job = job_from_row(row, JobState::Running)?;
    Ok(ClaimedJob {
        lease: Lease {
            job_id: job.id.clone(),
            token: LeaseToken::new(get::<String>(row, "lease_token")?),
        },
        locked_until: get(row, "locked_until")?,
        claimed_at: get(row, "claimed_at")?,
        was_stale: get(row, "was_stale")?,
        job,
    })
}

/// Keeps the rows that read, logging and skipping the ones that do not.
fn readable<T>(rows: Vec<PgRow>, read: impl Fn(&PgRow) -> Result<T>) -> Vec<T> {
    rows.iter()
        .filter_map(|row| match read(row) {
            Ok(value) => Some(value),
            Err(e) => {
                tracing::error!(error = %e, "skipping a record that cannot be read");
                None
            }
        })
        .collect()
}

#[async_trait]
impl JobStore for PostgresStore {
    async fn now(&self) -> Result<DateTime<Utc>> {
        let mut conn = self.conn().await?;
        sqlx::query_scalar(&format!("SELECT {}.ms_now()", self.inner.sql.schema))
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| db_error("reading the server's clock", e))
    }

    fn max_params_bytes(&self) -> usize {
        self.inner.max_params_bytes
    }

    async fn schedule(&self, job: NewJob) -> Result<Scheduled> {
        job.validate(self.inner.max_params_bytes)?;
        let mut conn = self.conn().await?;
        self.schedule_on(&mut conn, &job).await
    }

    async fn schedule_many(&self, jobs: Vec<NewJob>) -> Result<Vec<Result<Scheduled>>> {
        let mut outcomes: Vec<Option<Result<Scheduled>>> = Vec::with_capacity(jobs.len());
        let mut valid: Vec<(usize, NewJob)> = Vec::new();
        for (i, job) in jobs.into_iter().enumerate() {
            match job.validate(self.inner.max_params_bytes) {
                Ok(()) => {
                    outcomes.push(None);
                    valid.push((i, job));
                }
                Err(e) => outcomes.push(Some(Err(e))),
            }
        }
        if !valid.is_empty() {
            let mut names = Vec::with_capacity(valid.len());
            let mut params = Vec::with_capacity(valid.len());
            let mut priorities = Vec::with_capacity(valid.len());
            let mut ats = Vec::with_capacity(valid.len());
            let mut delays = Vec::with_capacity(valid.len());
            let mut uniques = Vec::with_capacity(valid.len());
            for (_, job) in &valid {
                let (at, in_ms) = run_at_binds(job.run_at);
                names.push(job.name.clone());
                params.push(job.params.clone());
                priorities.push(job.priority);
                ats.push(at);
                delays.push(in_ms);
                uniques.push(job.unique_identifier.clone());
            }
            let mut conn = self.conn().await?;
            let rows = sqlx::query(&self.inner.sql.schedule_many)
                .bind(names)
                .bind(params)
                .bind(priorities)
                .bind(ats)
                .bind(delays)
                .bind(uniques)
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| db_error("scheduling jobs", e))?;
            let mut created_here: Vec<(String, String, JobId)> = Vec::new();
            for ((i, job), row) in valid.iter().zip(rows.iter()) {
                let id = JobId::new(get::<i64>(row, "id")?.to_string());
                let outcome = if get::<bool>(row, "created")? {
                    if let Some(unique) = &job.unique_identifier {
                        created_here.push((job.name.clone(), unique.clone(), id.clone()));
                    }
                    Ok(Scheduled::Created(id))
                } else if let Some(existing) = get::<Option<i64>>(row, "existing")? {
                    Ok(Scheduled::Duplicate(JobId::new(existing.to_string())))
                } else if let Some((_, _, first)) = created_here.iter().find(|(name, unique, _)| {
                    Some(unique) == job.unique_identifier.as_ref() && name == &job.name
                }) {
                    Ok(Scheduled::Duplicate(first.clone()))
                } else {
                    // A job another transaction committed during this statement.
                    let existing: Option<i64> = sqlx::query_scalar(&self.inner.sql.find_unique)
                        .bind(&job.name)
                        .bind(&job.unique_identifier)
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(|e| db_error("finding a duplicate job", e))?;
                    match existing {
                        Some(existing) => {
                            Ok(Scheduled::Duplicate(JobId::new(existing.to_string())))
                        }
                        None => self.schedule_on(&mut conn, job).await,
                    }
                };
                if let Some(slot) = outcomes.get_mut(*i) {
                    *slot = Some(outcome);
                }
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Err(Error::new(ErrorKind::Backend, "no outcome for this entry"))
                })
            })
            .collect())
    }

    async fn register_recurrent(&self, job: RecurrentRegistration) -> Result<JobId> {
        dogs_core::validate_name(&job.name)?;
        let mut conn = self.conn().await?;
        let id: i64 = sqlx::query_scalar(&self.inner.sql.register)
            .bind(&job.name)
            .bind(job.priority)
            .bind(&job.schedule_key)
            .bind(job.next_run_at)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| db_error("registering a recurrent job", e))?;
        Ok(JobId::new(id.to_string()))
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedJob>> {
        if request.limit == 0 || request.names.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<&str> = request.names.iter().map(|n| n.name.as_str()).collect();
        let lock_ms: Vec<i64> = request.names.iter().map(|n| millis(n.lock_time)).collect();
        let limit = i32::try_from(request.limit).unwrap_or(i32::MAX);
        let mut conn = self.conn().await?;
        let rows = sqlx::query(&self.inner.sql.claim)
            .bind(names)
            .bind(lock_ms)
            .bind(limit)
            .bind(&request.worker_id)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| db_error("claiming jobs", e))?;
        drop(conn);
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            match claimed_from_row(row) {
                Ok(job) => claimed.push(job),
                Err(e) => {
                    let lease = Lease {
                        job_id: JobId::new(get::<i64>(row, "id")?.to_string()),
                        token: LeaseToken::new(get::<String>(row, "lease_token")?),
                    };
                    dogs_core::fail_unreadable(self, &lease, &e).await?;
                }
            }
        }
        claimed.sort_by_key(|c| {
            (
                c.was_stale,
                std::cmp::Reverse(c.job.priority),
                c.job.run_at,
                parse_id(&c.job.id),
            )
        });
        Ok(claimed)
    }

    async fn extend_lock(&self, lease: &Lease, lock_time: Duration) -> Result<DateTime<Utc>> {
        let Some(id) = parse_id(&lease.job_id) else {
            return Err(Error::lock_lost(&lease.job_id));
        };
        let mut conn = self.conn().await?;
        let until: Option<DateTime<Utc>> = sqlx::query_scalar(&self.inner.sql.extend)
            .bind(id)
            .bind(lease.token.as_str())
            .bind(millis(lock_time))
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| db_error("extending a lease", e))?;
        until.ok_or_else(|| Error::lock_lost(&lease.job_id))
    }

    async fn complete(&self, lease: &Lease, completion: Completion) -> Result<()> {
        self.fenced(lease, completion, None).await
    }

    async fn finish(
        &self,
        lease: &Lease,
        completion: Completion,
        execution: Option<&Execution>,
    ) -> Result<()> {
        self.fenced(lease, completion, execution).await
    }

    async fn finish_many(&self, items: Vec<Finish>) -> Result<Vec<Result<()>>> {
        // Removals (the outcome of every successful event job) go in one statement; the rest
        // one by one.
        let mut outcomes: Vec<Option<Result<()>>> = Vec::with_capacity(items.len());
        let mut removals: Vec<(usize, i64, Finish)> = Vec::new();
        let mut others: Vec<(usize, Finish)> = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            outcomes.push(None);
            match (&item.completion, parse_id(&item.lease.job_id)) {
                (Completion::Remove, Some(id)) => removals.push((i, id, item)),
                _ => others.push((i, item)),
            }
        }
        if !removals.is_empty() {
            let removed = self.remove_many(&removals).await?;
            for (i, id, item) in &removals {
                outcomes[*i] = Some(if removed.contains(id) {
                    Ok(())
                } else {
                    Err(Error::lock_lost(&item.lease.job_id))
                });
            }
        }
        for (i, item) in others {
            outcomes[i] = Some(
                self.fenced(&item.lease, item.completion, item.execution.as_ref())
                    .await,
            );
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(Error::new(ErrorKind::Backend, "no outcome"))))
            .collect())
    }

    async fn record_execution(&self, e: &Execution) -> Result<()> {
        let mut conn = self.conn().await?;
        sqlx::query(&self.inner.sql.record)
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
            .execute(&mut *conn)
            .await
            .map_err(|e| db_error("recording an execution", e))?;
        Ok(())
    }

    async fn get_job(&self, id: &JobId) -> Result<Option<Job>> {
        let Some(id) = parse_id(id) else {
            return Ok(None);
        };
        let mut conn = self.conn().await?;
        let row = sqlx::query(&self.inner.sql.get)
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| db_error("reading a job", e))?;
        row.map(|row| job_from_row(&row, view_state(&row)?))
            .transpose()
    }

    async fn list_jobs(&self, query: &JobQuery) -> Result<Vec<Job>> {
        let s = &self.inner.sql.schema;
        let state = STATE.replace("{s}", s);
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
            "SELECT * FROM (SELECT {JOB_COLUMNS}, {state} AS view_state FROM {s}.jobs WHERE {}",
            VISIBLE.replace("{s}", s)
        ));
        if let Some(name) = &query.name {
            q.push(" AND name = ").push_bind(name.as_str());
        }
        q.push(") j");
        if let Some(state) = query.state {
            q.push(" WHERE view_state = ").push_bind(state.as_str());
        }
        q.push(
            " ORDER BY (view_state = 'failed'), \
             CASE WHEN view_state <> 'failed' THEN priority END DESC, \
             CASE WHEN view_state <> 'failed' THEN run_at END, \
             CASE WHEN view_state = 'failed' THEN -id ELSE id END LIMIT ",
        )
        .push_bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
        .push(" OFFSET ")
        .push_bind(i64::try_from(query.offset).unwrap_or(i64::MAX));
        let mut conn = self.conn().await?;
        let rows = q
            .build()
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| db_error("listing jobs", e))?;
        Ok(readable(rows, |row| job_from_row(row, view_state(row)?)))
    }

    async fn count_jobs(&self) -> Result<Vec<JobCounts>> {
        let mut conn = self.conn().await?;
        let rows = sqlx::query(&self.inner.sql.counts)
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| db_error("counting jobs", e))?;
        let count = |row: &PgRow, column: &str| -> Result<u64> {
            Ok(u64::try_from(get::<i64>(row, column)?).unwrap_or(0))
        };
        rows.iter()
            .map(|row| {
                Ok(JobCounts {
                    name: get(row, "name")?,
                    pending: count(row, "pending")?,
                    running: count(row, "running")?,
                    failed: count(row, "failed")?,
                })
            })
            .collect()
    }

    async fn executions(&self, query: &ExecutionQuery) -> Result<Vec<Execution>> {
        let mut conn = self.conn().await?;
        let rows = sqlx::query(&self.inner.sql.executions)
            .bind(&query.name)
            .bind(query.job_id.as_ref().map(JobId::as_str))
            .bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
            .bind(i64::try_from(query.offset).unwrap_or(i64::MAX))
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| db_error("reading executions", e))?;
        Ok(readable(rows, execution_from_row))
    }

    async fn cancel(&self, id: &JobId) -> Result<bool> {
        let Some(numeric) = parse_id(id) else {
            return Ok(false);
        };
        self.cancel_where(&self.inner.sql.cancel, Some(numeric), None)
            .await
    }

    async fn cancel_unique(&self, name: &str, unique_identifier: &str) -> Result<bool> {
        self.cancel_where(
            &self.inner.sql.cancel_unique,
            None,
            Some((name, unique_identifier)),
        )
        .await
    }

    async fn prune(&self) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        let mut conn = self.conn().await?;
        for (sql, count) in [
            (&self.inner.sql.prune_jobs, &mut report.jobs),
            (&self.inner.sql.prune_executions, &mut report.executions),
        ] {
            loop {
                let removed = sqlx::query(sql)
                    .bind(PRUNE_BATCH)
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| db_error("pruning", e))?
                    .rows_affected();
                *count += removed;
                if removed < PRUNE_BATCH as u64 {
                    break;
                }
            }
        }
        Ok(report)
    }

    fn wakeups(&self) -> Option<WakeUps> {
        self.start_listener();
        Some(self.inner.wake.subscribe())
    }
}
