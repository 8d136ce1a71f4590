//! What an operator does to jobs and names: retrying failed jobs (or running pending ones now),
//! pausing names, and limiting how many of a name run at once (the `names` table, which claims
//! read).

use dogs_core::{Error, ErrorKind, JobId, NameSettings, Result, RetryBatch, CANCELLED_ERROR};
use sqlx::SqliteConnection;

use crate::decode::get;
use crate::error::db_error;
use crate::sql::{job_id, parse_id};
use crate::store::{SqliteStore, Write};

/// What a failed job put back gets: due now, tries reset, its error and lease forgotten.
const PUT_BACK: &str = "UPDATE jobs SET state = 'pending', run_at = min(run_at, ?2), tries = 0,
         last_error = NULL, expires_at = NULL, lease_token = NULL, locked_until = NULL,
         locked_by = NULL, demoted = 0, progress = NULL
     WHERE id = ?1";

/// What a pending job made due now gets.
const RUN_NOW: &str = "UPDATE jobs SET state = 'pending', run_at = min(run_at, ?2) WHERE id = ?1";

/// The stored settings of every name that has any, by name.
const SETTINGS: &str = "SELECT name, paused, concurrency_limit FROM names
     WHERE paused <> 0 OR concurrency_limit IS NOT NULL ORDER BY name";

/// What retrying one job did.
enum Retried {
    /// There is no such job (or it is past its retention).
    Missing,
    /// It was put back (or made due now).
    Done,
    /// It cannot be: why.
    Refused(Error),
}

impl SqliteStore {
    pub(crate) async fn retry_job(&self, id: &JobId) -> Result<bool> {
        let Some(id) = parse_id(id) else {
            return Ok(false);
        };
        let what = "retrying a job";
        let mut write = self.begin(what).await?;
        match retry_one(&mut write, id).await? {
            Retried::Missing => Ok(false),
            Retried::Refused(e) => Err(e),
            Retried::Done => {
                write.wake();
                self.commit(write, what).await?;
                Ok(true)
            }
        }
    }

    pub(crate) async fn retry_failed_jobs(
        &self,
        name: &str,
        after: Option<&JobId>,
        limit: usize,
    ) -> Result<RetryBatch> {
        let what = "retrying failed jobs";
        // An id of another format starts from the first, as the memory store does.
        let after = after.and_then(parse_id).unwrap_or(0);
        let mut write = self.begin(what).await?;
        let failed: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs INDEXED BY jobs_failed_by_name
         WHERE state = 'failed' AND name = ?1 AND id > ?2
               AND (expires_at IS NULL OR expires_at > ?3)
             ORDER BY id LIMIT ?4",
        )
        .bind(name)
        .bind(after)
        .bind(write.now_ms())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(write.conn())
        .await
        .map_err(|e| db_error(what, e))?;
        let mut batch = RetryBatch {
            retried: 0,
            full: failed.len() >= limit,
            last: failed.last().map(|id| job_id(*id)),
        };
        // One by one, in order: of failed jobs sharing a unique identifier, the first takes it.
        for id in failed {
            if let Retried::Done = retry_one(&mut write, id).await? {
                batch.retried += 1;
            }
        }
        if batch.retried > 0 {
            write.wake();
        }
        self.commit(write, what).await?;
        Ok(batch)
    }

    pub(crate) async fn set_name_paused(&self, name: &str, paused: bool) -> Result<()> {
        dogs_core::validate_name(name)?;
        let what = "pausing a job name";
        let mut write = self.begin(what).await?;
        sqlx::query(
            "INSERT INTO names (name, paused) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET paused = excluded.paused",
        )
        .bind(name)
        .bind(paused)
        .execute(write.conn())
        .await
        .map_err(|e| db_error(what, e))?;
        forget_name(&mut write, name).await?;
        if !paused {
            // Resuming wakes idle workers.
            write.wake();
        }
        self.commit(write, what).await
    }

    pub(crate) async fn set_name_limit(&self, name: &str, limit: Option<u32>) -> Result<()> {
        dogs_core::validate_concurrency_limit(name, limit)?;
        let what = "limiting a job name";
        let mut write = self.begin(what).await?;
        sqlx::query(
            "INSERT INTO names (name, concurrency_limit) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET concurrency_limit = excluded.concurrency_limit",
        )
        .bind(name)
        .bind(limit.map(i64::from))
        .execute(write.conn())
        .await
        .map_err(|e| db_error(what, e))?;
        forget_name(&mut write, name).await?;
        // A higher limit may let due jobs run.
        write.wake();
        self.commit(write, what).await
    }

    pub(crate) async fn read_settings(&self) -> Result<Vec<NameSettings>> {
        self.read("reading job name settings", |mut conn| async move {
            settings_on(&mut conn).await
        })
        .await
    }
}

/// The stored settings, read on `conn`.
pub(crate) async fn settings_on(conn: &mut SqliteConnection) -> Result<Vec<NameSettings>> {
    let what = "reading job name settings";
    let rows = sqlx::query(SETTINGS)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| db_error(what, e))?;
    rows.iter()
        .map(|row| {
            Ok(NameSettings {
                name: get(row, "name")?,
                paused: get::<i64>(row, "paused")? != 0,
                concurrency_limit: get::<Option<i64>>(row, "concurrency_limit")?
                    .and_then(|l| u32::try_from(l).ok()),
            })
        })
        .collect()
}

/// Removes a name's row once it holds no setting, so claims of it skip the settings.
async fn forget_name(write: &mut Write, name: &str) -> Result<()> {
    sqlx::query("DELETE FROM names WHERE name = ?1 AND paused = 0 AND concurrency_limit IS NULL")
        .bind(name)
        .execute(write.conn())
        .await
        .map_err(|e| db_error("updating a job name", e))?;
    Ok(())
}

/// What a retry reads of its job `?1`, at `?2`: `?3` is `CANCELLED_ERROR`. `stopping` is 0,
/// not `NULL`, for a failed job whose lease is gone (`locked_until` `NULL`).
pub(crate) const RETRY_TARGET: &str = "SELECT id, name, state, unique_identifier,
         (state = 'failed' AND expires_at IS NOT NULL AND expires_at <= ?2) AS expired,
         (state = 'running' AND locked_until > ?2) AS live,
         coalesce(state = 'failed' AND last_error = ?3 AND locked_until > ?2, 0) AS stopping
     FROM jobs WHERE id = ?1";

/// Puts the job `id` back to run now, as `retry` does, within `write`.
async fn retry_one(write: &mut Write, id: i64) -> Result<Retried> {
    let what = "retrying a job";
    let now = write.now_ms();
    let row = sqlx::query(RETRY_TARGET)
        .bind(id)
        .bind(now)
        .bind(CANCELLED_ERROR)
        .fetch_optional(write.conn())
        .await
        .map_err(|e| db_error(what, e))?;
    let Some(row) = row else {
        return Ok(Retried::Missing);
    };
    if get::<i64>(&row, "expired")? != 0 {
        return Ok(Retried::Missing);
    }
    if get::<i64>(&row, "live")? != 0 {
        return Ok(Retried::Refused(Error::new(
            ErrorKind::Conflict,
            format!("job {id} is running; cancel it first to run it again"),
        )));
    }
    if get::<i64>(&row, "stopping")? != 0 {
        return Ok(Retried::Refused(Error::new(
            ErrorKind::Conflict,
            format!("job {id} was cancelled while it ran and may still be stopping; retry it once its lease ends"),
        )));
    }
    let state: String = get(&row, "state")?;
    if state != "failed" {
        sqlx::query(RUN_NOW)
            .bind(id)
            .bind(now)
            .execute(write.conn())
            .await
            .map_err(|e| db_error(what, e))?;
        return Ok(Retried::Done);
    }
    let unique: Option<String> = get(&row, "unique_identifier")?;
    if let Some(unique) = unique {
        let name: String = get(&row, "name")?;
        let holder: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE name = ?1 AND unique_identifier = ?2
               AND unique_identifier IS NOT NULL AND state <> 'failed' AND id <> ?3",
        )
        .bind(&name)
        .bind(&unique)
        .bind(id)
        .fetch_optional(write.conn())
        .await
        .map_err(|e| db_error(what, e))?;
        if let Some(other) = holder {
            return Ok(Retried::Refused(Error::new(
                ErrorKind::Conflict,
                format!("job {id} cannot run again: job {other} holds its unique identifier"),
            )));
        }
    }
    sqlx::query(PUT_BACK)
        .bind(id)
        .bind(now)
        .execute(write.conn())
        .await
        .map_err(|e| db_error(what, e))?;
    Ok(Retried::Done)
}

#[cfg(test)]
mod tests {
    use dogs_core::CANCELLED_ERROR;
    use sqlx::{Connection, Row, SqliteConnection};

    /// A job failed for good whose handler's own error is `CANCELLED_ERROR` has no lease
    /// (`locked_until` `NULL`): the retry's and the cancel's reads say it is not stopping (0),
    /// not `NULL`, which is no answer.
    #[tokio::test]
    async fn a_failure_named_cancelled_is_not_stopping() {
        let mut conn = SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let jobs = format!(
            "WITH jobs(id, name, kind, state, unique_identifier, last_error, expires_at,
                       locked_until) AS
                 (VALUES (1, 'n', 'event', 'failed', NULL, '{}', 9999999999999, NULL)) ",
            CANCELLED_ERROR.replace('\'', "''")
        );
        let now = 1000_i64;
        let retry = format!("{jobs}{}", super::RETRY_TARGET);
        let retry = sqlx::query(&retry)
            .bind(1_i64)
            .bind(now)
            .bind(CANCELLED_ERROR);
        let cancel = format!("{jobs}{} WHERE id = ?3", crate::remove::TARGET);
        let cancel = sqlx::query(&cancel)
            .bind(now)
            .bind(CANCELLED_ERROR)
            .bind(1_i64);
        for (what, query) in [("retry", retry), ("cancel", cancel)] {
            let row = query
                .fetch_one(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let stopping: Option<i64> = row.try_get("stopping").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(stopping, Some(0), "{what}");
        }
    }
}
