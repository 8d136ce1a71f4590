//! What an operator does to jobs and names: retrying failed jobs (or running pending ones now),
//! pausing names, and limiting how many of a name run at once (the `names` table, which
//! `claim_capped` reads).

use dogs_core::{Error, ErrorKind, JobId, NameSettings, Result, RetryBatch, CANCELLED_ERROR};

use crate::decode::get;
use crate::error::db_error;
use crate::sql::{fill, parse_id, VISIBLE};
use crate::store::{Conn, PostgresStore};

/// A failed job whose unique identifier a live job of its name holds now.
const UNIQUE_TAKEN: &str = "j.unique_identifier IS NOT NULL AND EXISTS (
     SELECT 1 FROM {s}.jobs o WHERE o.name = j.name AND o.unique_identifier = j.unique_identifier
       AND o.state <> 'failed' AND o.id <> j.id)";

/// What a failed job put back gets: due now, tries reset, its error and lease forgotten.
const PUT_BACK: &str = "state = 'pending', run_at = least(j.run_at, {s}.ms_now()), tries = 0, \
     last_error = NULL, expires_at = NULL, lease_token = NULL, locked_until = NULL, \
     locked_by = NULL, demoted = false, progress = NULL";

/// The operating statements of a schema.
pub(crate) struct Statements {
    retry: String,
    retry_failed: String,
    set_paused: String,
    set_limit: String,
    forget_name: String,
    settings: String,
}

impl Statements {
    pub(crate) fn new(s: &str) -> Self {
        let visible = fill(VISIBLE, s);
        Statements {
            retry: fill(
                &format!(
                    "WITH target AS (
                         SELECT j.id, j.state,
                                ((j.state = 'running' OR (j.state = 'failed' AND j.last_error = $2))
                                 AND j.locked_until > {{s}}.ms_now()) AS live,
                                (j.state = 'failed' AND {UNIQUE_TAKEN}) AS taken
                         FROM {{s}}.jobs j WHERE j.id = $1 AND {visible} FOR UPDATE
                     ), failed AS (
                         UPDATE {{s}}.jobs j SET {PUT_BACK}
                         FROM target t WHERE j.id = t.id AND t.state = 'failed' AND NOT t.taken
                           AND NOT t.live
                         RETURNING j.id
                     ), pending AS (
                         UPDATE {{s}}.jobs j SET run_at = least(j.run_at, {{s}}.ms_now()), state = 'pending'
                         FROM target t WHERE j.id = t.id AND t.state <> 'failed' AND NOT t.live
                         RETURNING j.id
                     )
                     SELECT t.live, t.taken, (SELECT count(*) FROM failed) + (SELECT count(*) FROM pending) AS done
                     FROM target t"
                ),
                s,
            ),
            retry_failed: fill(
                &format!(
                    "WITH picked AS (
                         SELECT j.id FROM {{s}}.jobs j
                         WHERE j.name = $1 AND j.state = 'failed' AND j.expires_at > {{s}}.ms_now()
                           AND ($3::bigint IS NULL OR j.id > $3)
                         ORDER BY j.id LIMIT $2 FOR UPDATE SKIP LOCKED
                     ), chosen AS (
                         -- Of failed jobs sharing a unique identifier, one; none whose identifier
                         -- is taken, nor one cancelled while it ran whose lease has not ended.
                         SELECT DISTINCT ON (coalesce(j.unique_identifier, j.id::text)) j.id
                         FROM picked p JOIN {{s}}.jobs j ON j.id = p.id
                         WHERE NOT ({UNIQUE_TAKEN})
                           AND NOT (j.last_error = $4 AND j.locked_until > {{s}}.ms_now())
                         ORDER BY coalesce(j.unique_identifier, j.id::text), j.id DESC
                     ), done AS (
                         UPDATE {{s}}.jobs j SET {PUT_BACK} FROM chosen c WHERE j.id = c.id RETURNING j.id
                     )
                     SELECT (SELECT count(*) FROM picked) AS found, (SELECT count(*) FROM done) AS retried,
                            (SELECT max(id) FROM picked) AS last"
                ),
                s,
            ),
            set_paused: fill(
                "WITH up AS (
                     INSERT INTO {s}.names (name, paused) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused
                     RETURNING name
                 )
                 SELECT pg_notify($3, '') FROM up WHERE NOT $2",
                s,
            ),
            set_limit: fill(
                "WITH up AS (
                     INSERT INTO {s}.names (name, concurrency_limit) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET concurrency_limit = EXCLUDED.concurrency_limit
                     RETURNING name
                 )
                 SELECT pg_notify($3, '') FROM up",
                s,
            ),
            forget_name: fill(
                "DELETE FROM {s}.names WHERE name = $1 AND NOT paused AND concurrency_limit IS NULL",
                s,
            ),
            settings: fill(
                "SELECT name, paused, concurrency_limit FROM {s}.names
                 WHERE paused OR concurrency_limit IS NOT NULL ORDER BY name COLLATE \"C\"",
                s,
            ),
        }
    }
}

impl PostgresStore {
    pub(crate) async fn retry_job(&self, id: &JobId) -> Result<bool> {
        let Some(numeric) = parse_id(id) else {
            return Ok(false);
        };
        let sql = &self.inner.sql.operate.retry;
        let row = self
            .attempt("retrying a job", move |mut conn: Conn| async move {
                let outcome = sqlx::query(sql)
                    .bind(numeric)
                    .bind(CANCELLED_ERROR)
                    .persistent(self.persistent())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(|e| db_error("retrying a job", e));
                (conn, outcome)
            })
            .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        if get::<bool>(&row, "live")? {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("job {id} is running; cancel it first to run it again"),
            ));
        }
        if get::<Option<bool>>(&row, "taken")?.unwrap_or(false) {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("job {id} cannot run again: another live job holds its unique identifier"),
            ));
        }
        Ok(get::<i64>(&row, "done")? > 0)
    }

    pub(crate) async fn retry_failed_jobs(
        &self,
        name: &str,
        after: Option<&JobId>,
        limit: usize,
    ) -> Result<RetryBatch> {
        let sql = &self.inner.sql.operate.retry_failed;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // An id of another format goes on after every id of this store.
        let after = after.map(|id| parse_id(id).unwrap_or(i64::MAX));
        let row = self
            .attempt("retrying failed jobs", move |mut conn: Conn| async move {
                let outcome = sqlx::query(sql)
                    .bind(name)
                    .bind(limit)
                    .bind(after)
                    .bind(CANCELLED_ERROR)
                    .persistent(self.persistent())
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| db_error("retrying failed jobs", e));
                (conn, outcome)
            })
            .await?;
        let found = get::<i64>(&row, "found")?;
        Ok(RetryBatch {
            retried: u64::try_from(get::<i64>(&row, "retried")?).unwrap_or(0),
            full: found >= limit,
            last: get::<Option<i64>>(&row, "last")?.map(|id| JobId::new(id.to_string())),
        })
    }

    pub(crate) async fn set_name_paused(&self, name: &str, paused: bool) -> Result<()> {
        dogs_core::validate_name(name)?;
        let sql = &self.inner.sql.operate.set_paused;
        let channel = &crate::store::channel(&self.inner.schema);
        self.attempt("pausing a job name", move |mut conn: Conn| async move {
            let outcome = sqlx::query(sql)
                .bind(name)
                .bind(paused)
                .bind(channel)
                .persistent(self.persistent())
                .execute(&mut *conn)
                .await
                .map_err(|e| db_error("pausing a job name", e));
            (conn, outcome)
        })
        .await?;
        self.forget_name(name).await
    }

    pub(crate) async fn set_name_limit(&self, name: &str, limit: Option<u32>) -> Result<()> {
        dogs_core::validate_concurrency_limit(name, limit)?;
        let sql = &self.inner.sql.operate.set_limit;
        let channel = &crate::store::channel(&self.inner.schema);
        let limit = limit.map(|l| i32::try_from(l).unwrap_or(i32::MAX));
        self.attempt("limiting a job name", move |mut conn: Conn| async move {
            let outcome = sqlx::query(sql)
                .bind(name)
                .bind(limit)
                .bind(channel)
                .persistent(self.persistent())
                .execute(&mut *conn)
                .await
                .map_err(|e| db_error("limiting a job name", e));
            (conn, outcome)
        })
        .await?;
        self.forget_name(name).await
    }

    /// Removes a name's row once it holds no setting, so claims of it skip the settings.
    async fn forget_name(&self, name: &str) -> Result<()> {
        let sql = &self.inner.sql.operate.forget_name;
        self.attempt("updating a job name", move |mut conn: Conn| async move {
            let outcome = sqlx::query(sql)
                .bind(name)
                .persistent(self.persistent())
                .execute(&mut *conn)
                .await
                .map_err(|e| db_error("updating a job name", e));
            (conn, outcome)
        })
        .await?;
        Ok(())
    }

    pub(crate) async fn read_settings(&self) -> Result<Vec<NameSettings>> {
        let sql = &self.inner.sql.operate.settings;
        let rows = self
            .attempt(
                "reading job name settings",
                move |mut conn: Conn| async move {
                    let outcome = sqlx::query(sql)
                        .persistent(self.persistent())
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(|e| db_error("reading job name settings", e));
                    (conn, outcome)
                },
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(NameSettings {
                    name: get(row, "name")?,
                    paused: get(row, "paused")?,
                    concurrency_limit: get::<Option<i32>>(row, "concurrency_limit")?
                        .and_then(|l| u32::try_from(l).ok()),
                })
            })
            .collect()
    }
}
