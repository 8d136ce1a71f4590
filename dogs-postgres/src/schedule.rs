//! Scheduling: event jobs one by one or in bulk (`INSERT … ON CONFLICT DO NOTHING` on the unique
//! index of live jobs), and the upsert of each recurrent job's one record.

use dogs_core::{
    Error, ErrorKind, JobId, NewJob, OnDuplicate, Outcomes, RecurrentRegistration, Result,
    Scheduled,
};
use sqlx::PgConnection;

use crate::decode::get;
use crate::error::db_error;
use crate::sql::{fill, run_at_binds, STATE_OF_RUN_AT};
use crate::store::{Conn, PostgresStore};

const UNIQUE_TARGET: &str =
    "(name, unique_identifier) WHERE unique_identifier IS NOT NULL AND state <> 'failed'";

/// The scheduling statements of a schema.
pub(crate) struct Statements {
    schedule: String,
    schedule_many: String,
    find_unique: String,
    replace: String,
    register: String,
}

impl Statements {
    pub(crate) fn new(s: &str) -> Self {
        let new_state = |at: &str| fill(&STATE_OF_RUN_AT.replace("{at}", at), s);
        Statements {
            schedule: fill(
                &format!(
                    "WITH input AS (
                         SELECT COALESCE($5::timestamptz, {{s}}.ms_now() + $6::bigint * interval '1 millisecond') AS at
                     ), ins AS (
                         INSERT INTO {{s}}.jobs (name, kind, params, priority, run_at, unique_identifier, state, trace_context)
                         SELECT $1, 'event', $2, $3, input.at, $4, {}, $7
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
                ),
                s,
            ),
            schedule_many: fill(
                &format!(
                    "WITH input AS (
                         SELECT nextval('{{s}}.jobs_id_seq') AS id, i.ord, i.name, i.params, i.priority, i.uid, i.trace,
                                COALESCE(i.at, {{s}}.ms_now() + i.in_ms * interval '1 millisecond') AS run_at
                         FROM unnest($1::text[], $2::jsonb[], $3::int[], $4::timestamptz[], $5::bigint[], $6::text[], $7::text[])
                              WITH ORDINALITY AS i(name, params, priority, at, in_ms, uid, trace, ord)
                     ), ins AS (
                         INSERT INTO {{s}}.jobs (id, name, kind, params, priority, run_at, unique_identifier, state, trace_context)
                         SELECT id, name, 'event', params, priority, run_at, uid, {}, trace
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
                ),
                s,
            ),
            find_unique: fill(
                "SELECT id FROM {s}.jobs WHERE name = $1 AND unique_identifier = $2 AND state <> 'failed'",
                s,
            ),
            // A pending duplicate (one whose lease ran out too) takes the new params, priority
            // and run time, its lease forgotten; a running one is left alone; a gone one
            // (removed meanwhile) is reported as such.
            replace: fill(
                &format!(
                    "WITH input AS (
                         SELECT COALESCE($4::timestamptz, {{s}}.ms_now() + $5::bigint * interval '1 millisecond') AS at
                     ), upd AS (
                         UPDATE {{s}}.jobs j SET params = $2, priority = $3, run_at = input.at,
                             lease_token = NULL, locked_until = NULL, locked_by = NULL,
                             progress = NULL, state = {}
                         FROM input
                         WHERE j.id = $1 AND (j.state IN ('scheduled', 'pending')
                             OR (j.state = 'running' AND j.locked_until <= {{s}}.ms_now()))
                         RETURNING j.id
                     )
                     SELECT (SELECT count(*) FROM upd) AS replaced,
                            EXISTS (SELECT 1 FROM {{s}}.jobs j WHERE j.id = $1 AND j.state <> 'failed') AS live",
                    new_state("input.at")
                ),
                s,
            ),
            register: fill(
                &format!(
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
                ),
                s,
            ),
        }
    }
}

impl PostgresStore {
    /// Schedules one job on `conn` (the caller's transaction, or a pooled connection).
    pub(crate) async fn schedule_on(
        &self,
        conn: &mut PgConnection,
        job: &NewJob,
    ) -> Result<Scheduled> {
        let (at, in_ms) = run_at_binds(job.run_at);
        // A conflict with a row another transaction inserts at the same moment is invisible to
        // this statement's snapshot; the next attempt sees it.
        for _ in 0..5 {
            let row = sqlx::query(&self.inner.sql.schedule.schedule)
                .bind(&job.name)
                .bind(&job.params)
                .bind(job.priority)
                .bind(&job.unique_identifier)
                .bind(at)
                .bind(in_ms)
                .bind(&job.trace_context)
                .persistent(self.persistent())
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| db_error("scheduling a job", e))?;
            if let Some(row) = row {
                let numeric = get::<i64>(&row, "id")?;
                let id = JobId::new(numeric.to_string());
                if get::<bool>(&row, "created")? {
                    return Ok(Scheduled::Created(id));
                }
                if job.on_duplicate == OnDuplicate::Keep {
                    return Ok(Scheduled::Duplicate(id));
                }
                let row = sqlx::query(&self.inner.sql.schedule.replace)
                    .bind(numeric)
                    .bind(&job.params)
                    .bind(job.priority)
                    .bind(at)
                    .bind(in_ms)
                    .persistent(self.persistent())
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| db_error("replacing a job", e))?;
                if get::<i64>(&row, "replaced")? > 0 {
                    return Ok(Scheduled::Replaced(id));
                }
                if get::<bool>(&row, "live")? {
                    return Ok(Scheduled::Duplicate(id));
                }
                // Removed meanwhile: schedule it anew.
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

    pub(crate) async fn schedule_one(&self, job: NewJob) -> Result<Scheduled> {
        job.validate(self.inner.max_params_bytes)?;
        let job = &job;
        self.attempt("scheduling a job", move |mut conn: Conn| async move {
            let outcome = self.schedule_on(&mut conn, job).await;
            (conn, outcome)
        })
        .await
    }

    /// Stores many jobs in one statement; each entry's outcome is its own.
    pub(crate) async fn schedule_all(&self, jobs: Vec<NewJob>) -> Result<Vec<Result<Scheduled>>> {
        if jobs.iter().any(|j| j.on_duplicate == OnDuplicate::Replace) {
            // Replacing is judged entry by entry, in order, against what earlier ones did.
            let mut outcomes = Vec::with_capacity(jobs.len());
            for job in jobs {
                outcomes.push(self.schedule_one(job).await);
            }
            return Ok(outcomes);
        }
        let (mut outcomes, valid) =
            Outcomes::check(jobs, |job| job.validate(self.inner.max_params_bytes));
        if !valid.is_empty() {
            let mut names = Vec::with_capacity(valid.len());
            let mut params = Vec::with_capacity(valid.len());
            let mut priorities = Vec::with_capacity(valid.len());
            let mut ats = Vec::with_capacity(valid.len());
            let mut delays = Vec::with_capacity(valid.len());
            let mut uniques = Vec::with_capacity(valid.len());
            let mut traces = Vec::with_capacity(valid.len());
            for (_, job) in &valid {
                let (at, in_ms) = run_at_binds(job.run_at);
                names.push(job.name.as_str());
                params.push(&job.params);
                priorities.push(job.priority);
                ats.push(at);
                delays.push(in_ms);
                uniques.push(job.unique_identifier.as_deref());
                traces.push(job.trace_context.as_deref());
            }
            let columns = (
                &names,
                &params,
                &priorities,
                &ats,
                &delays,
                &uniques,
                &traces,
            );
            let rows = self
                .attempt("scheduling jobs", move |mut conn: Conn| async move {
                    let outcome = sqlx::query(&self.inner.sql.schedule.schedule_many)
                        .bind(columns.0)
                        .bind(columns.1)
                        .bind(columns.2)
                        .bind(columns.3)
                        .bind(columns.4)
                        .bind(columns.5)
                        .bind(columns.6)
                        .persistent(self.persistent())
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(|e| db_error("scheduling jobs", e));
                    (conn, outcome)
                })
                .await?;
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
                    self.schedule_again(job).await
                };
                outcomes.set(*i, outcome);
            }
        }
        Ok(outcomes.finish())
    }

    /// An entry of a bulk insert that met a conflict with a job committed meanwhile: the live
    /// job's id, or a new job when that one is gone already.
    async fn schedule_again(&self, job: &NewJob) -> Result<Scheduled> {
        let existing: Option<i64> = self
            .attempt(
                "finding a duplicate job",
                move |mut conn: Conn| async move {
                    let outcome = sqlx::query_scalar(&self.inner.sql.schedule.find_unique)
                        .bind(&job.name)
                        .bind(&job.unique_identifier)
                        .persistent(self.persistent())
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(|e| db_error("finding a duplicate job", e));
                    (conn, outcome)
                },
            )
            .await?;
        match existing {
            Some(existing) => Ok(Scheduled::Duplicate(JobId::new(existing.to_string()))),
            None => {
                self.attempt("scheduling a job", move |mut conn: Conn| async move {
                    let outcome = self.schedule_on(&mut conn, job).await;
                    (conn, outcome)
                })
                .await
            }
        }
    }

    pub(crate) async fn register(&self, job: RecurrentRegistration) -> Result<JobId> {
        job.validate()?;
        let job = &job;
        let id: i64 = self
            .attempt(
                "registering a recurrent job",
                move |mut conn: Conn| async move {
                    let outcome = sqlx::query_scalar(&self.inner.sql.schedule.register)
                        .bind(&job.name)
                        .bind(job.priority)
                        .bind(&job.schedule_key)
                        .bind(job.next_run_at)
                        .persistent(self.persistent())
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(|e| db_error("registering a recurrent job", e));
                    (conn, outcome)
                },
            )
            .await?;
        Ok(JobId::new(id.to_string()))
    }
}
