//! Removing jobs and records: cancelling a job (a running one is failed as cancelled), and
//! pruning failed jobs and execution records past their retention, in bounded batches.

use dogs_core::{
    prune_in_batches, Error, ErrorKind, JobId, PruneBatch, PruneReport, Result, CANCELLED_ERROR,
    CANCELLED_RETENTION, PRUNE_BATCH,
};
use sqlx::sqlite::SqliteRow;

use crate::decode::get;
use crate::error::db_error;
use crate::sql::{after, clock_now, ms, parse_id};
use crate::store::{SqliteStore, Write};

/// What a cancel reads of its job: `?1` is the store's now.
pub(crate) const TARGET: &str = "SELECT id, kind,
         (state = 'running' AND locked_until > ?1) AS live,
         coalesce(state = 'failed' AND last_error = ?2 AND locked_until > ?1, 0) AS stopping
     FROM jobs";

impl SqliteStore {
    pub(crate) async fn cancel_by_id(&self, id: &JobId) -> Result<bool> {
        let Some(id) = parse_id(id) else {
            return Ok(false);
        };
        let what = "cancelling a job";
        let mut write = self.begin(what).await?;
        let row = sqlx::query(&format!("{TARGET} WHERE id = ?3"))
            .bind(write.now_ms())
            .bind(CANCELLED_ERROR)
            .bind(id)
            .fetch_optional(write.conn())
            .await
            .map_err(|e| db_error(what, e))?;
        self.cancel_target(write, row).await
    }

    pub(crate) async fn cancel_by_unique(&self, name: &str, unique: &str) -> Result<bool> {
        let what = "cancelling a job";
        let mut write = self.begin(what).await?;
        let row = sqlx::query(&format!(
            "{TARGET} WHERE name = ?3 AND unique_identifier = ?4
               AND unique_identifier IS NOT NULL AND state <> 'failed'"
        ))
        .bind(write.now_ms())
        .bind(CANCELLED_ERROR)
        .bind(name)
        .bind(unique)
        .fetch_optional(write.conn())
        .await
        .map_err(|e| db_error(what, e))?;
        self.cancel_target(write, row).await
    }

    /// Cancels the job `row` describes: removed when it is not running; failed as cancelled
    /// (`CANCELLED_ERROR`) when it is, its token cleared so its holder can no longer end it,
    /// its lease end kept (until then it counts against its name's concurrency limit and is not
    /// retried: its handler may still be stopping), and the workers told. A running recurrent
    /// job is `Conflict`; one cancelled already whose handler may be stopping keeps its place.
    async fn cancel_target(&self, mut write: Write, row: Option<SqliteRow>) -> Result<bool> {
        let what = "cancelling a job";
        let Some(row) = row else {
            return Ok(false);
        };
        let id: i64 = get(&row, "id")?;
        if get::<i64>(&row, "stopping")? != 0 {
            return Ok(true);
        }
        if get::<i64>(&row, "live")? != 0 {
            if get::<String>(&row, "kind")? != "event" {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("job {id} is a running recurrent job: pause its name to stop it"),
                ));
            }
            sqlx::query(
                "UPDATE jobs SET state = 'failed', last_error = ?2, expires_at = ?3, lease_token = NULL
                 WHERE id = ?1",
            )
            .bind(id)
            .bind(CANCELLED_ERROR)
            .bind(after(write.now, CANCELLED_RETENTION))
            .execute(write.conn())
            .await
            .map_err(|e| db_error(what, e))?;
            write.tell_cancelled();
        } else {
            sqlx::query("DELETE FROM jobs WHERE id = ?1")
                .bind(id)
                .execute(write.conn())
                .await
                .map_err(|e| db_error(what, e))?;
        }
        self.commit(write, what).await?;
        Ok(true)
    }

    /// Removes what had expired when it began, in batches ([`prune_in_batches`]), each one
    /// transaction.
    pub(crate) async fn prune_expired(&self) -> Result<PruneReport> {
        let cutoff = ms(clock_now());
        prune_in_batches(|| async move {
            let what = "pruning";
            let mut write = self.begin(what).await?;
            let jobs = delete_batch(
                &mut write,
                "DELETE FROM jobs WHERE id IN (
                     SELECT id FROM jobs WHERE state = 'failed' AND expires_at <= ?1
                     ORDER BY expires_at LIMIT ?2)",
                cutoff,
            )
            .await?;
            let executions = delete_batch(
                &mut write,
                "DELETE FROM executions WHERE rowid IN (
                     SELECT rowid FROM executions WHERE expires_at <= ?1
                     ORDER BY expires_at LIMIT ?2)",
                cutoff,
            )
            .await?;
            self.commit(write, what).await?;
            Ok(PruneBatch::counted(PruneReport { jobs, executions }))
        })
        .await
    }
}

/// Runs one batch of a prune's `statement` (`?1` the cutoff, `?2` the batch size) and counts
/// the rows it removed.
async fn delete_batch(write: &mut Write, statement: &str, cutoff: i64) -> Result<u64> {
    sqlx::query(statement)
        .bind(cutoff)
        .bind(PRUNE_BATCH as i64)
        .execute(write.conn())
        .await
        .map(|done| done.rows_affected())
        .map_err(|e| db_error("pruning", e))
}

impl SqliteStore {
    /// Empties the database's jobs, execution records and name settings in one write
    /// transaction, and keeps the file: other processes may have it open, and a file deleted
    /// under them would take what they write next with it. Ids are not reused
    /// (`AUTOINCREMENT`). Delete the file with [`remove_database_files`] once no process has
    /// it open.
    pub(crate) async fn empty_tables(&self) -> Result<()> {
        let mut write = self.begin("removing every job").await?;
        for table in ["jobs", "executions", "names"] {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(write.conn())
                .await
                .map_err(|e| db_error("removing every job", e))?;
        }
        self.commit(write, "removing every job").await
    }
}

/// Deletes the database file at `path` with its `-wal`, `-shm` and `-journal` files; a file
/// already gone is no error. Only for a database no store, in any process, has open: a process
/// that still has it open would go on writing to the deleted file, and what it wrote would be
/// lost. [`JobStore::remove_all`](dogs_core::JobStore::remove_all) empties a database in use.
pub fn remove_database_files(path: impl AsRef<std::path::Path>) -> Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = path.as_ref().as_os_str().to_owned();
        name.push(suffix);
        match std::fs::remove_file(&name) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::Backend,
                    format!("cannot remove {}", std::path::Path::new(&name).display()),
                )
                .with_source(e))
            }
        }
    }
    Ok(())
}
