//! Reading rows into dogs' types: a column that is missing or of the wrong type is a `Corrupt`
//! error, so a record written by hand or by another version is skipped or failed, never a crash.

use std::time::Duration;

use dogs_core::{
    ClaimedJob, Error, ErrorKind, Execution, ExecutionStatus, Job, JobId, JobKind, JobState, Lease,
    LeaseToken, Result,
};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row};

/// Reads `tries`, which a record written by hand may have negative.
pub(crate) fn read_tries(row: &PgRow) -> Result<u32> {
    let tries = get::<i32>(row, "tries")?;
    u32::try_from(tries)
        .map_err(|_| Error::new(ErrorKind::Corrupt, format!("tries is negative ({tries})")))
}

/// Reads a column, turning a missing or mistyped one into a `Corrupt` error.
pub(crate) fn get<'r, T>(row: &'r PgRow, column: &str) -> Result<T>
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

pub(crate) fn job_from_row(row: &PgRow, state: JobState) -> Result<Job> {
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
        // Not returned by claims; `NULL` or missing is none.
        progress: row.try_get("progress").unwrap_or(None),
        paused: row.try_get("paused").unwrap_or(false),
        trace_context: row.try_get("trace_context").unwrap_or(None),
    })
}

pub(crate) fn view_state(row: &PgRow) -> Result<JobState> {
    let state: String = get(row, "view_state")?;
    Ok(match state.as_str() {
        "running" => JobState::Running,
        "failed" => JobState::Failed,
        _ => JobState::Pending,
    })
}

pub(crate) fn execution_from_row(row: &PgRow) -> Result<Execution> {
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
        status: ExecutionStatus::parse_stored(&status)?,
        error: get(row, "error")?,
        result: get(row, "result")?,
        worker_id: get(row, "worker_id")?,
        expires_at: get(row, "expires_at")?,
    })
}

pub(crate) fn claimed_from_row(row: &PgRow) -> Result<ClaimedJob> {
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
pub(crate) fn readable<T>(rows: Vec<PgRow>, read: impl Fn(&PgRow) -> Result<T>) -> Vec<T> {
    dogs_core::readable(rows.iter().map(|row| read(row).map(Some)))
}
