//! Reading rows into dogs' types: a column that is missing, of the wrong type or out of range is
//! a `Corrupt` error, so a record written by hand or by another version is skipped or failed,
//! never a crash.

use std::time::Duration;

use chrono::{DateTime, Utc};
use dogs_core::{
    ClaimedJob, Error, ErrorKind, Execution, ExecutionStatus, Job, JobKind, JobState, Lease,
    LeaseToken, Result,
};
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite};

use crate::sql::job_id;

/// Reads a column, turning a missing or mistyped one into a `Corrupt` error.
pub(crate) fn get<'r, T>(row: &'r SqliteRow, column: &str) -> Result<T>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(column).map_err(|e| {
        Error::new(
            ErrorKind::Corrupt,
            format!("SQLite: column '{column}' cannot be read"),
        )
        .with_source(e)
    })
}

fn corrupt(message: String) -> Error {
    Error::new(ErrorKind::Corrupt, message)
}

/// An instant stored as milliseconds since the epoch.
pub(crate) fn instant(ms: i64, column: &str) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| corrupt(format!("{column} ({ms} ms) is not a time dogs can hold")))
}

/// Reads a time column.
pub(crate) fn time(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>> {
    instant(get::<i64>(row, column)?, column)
}

/// Reads a time column that may be `NULL`.
pub(crate) fn opt_time(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>> {
    get::<Option<i64>>(row, column)?
        .map(|ms| instant(ms, column))
        .transpose()
}

/// Reads a JSON column.
pub(crate) fn json(row: &SqliteRow, column: &str) -> Result<Value> {
    let text: String = get(row, column)?;
    serde_json::from_str(&text).map_err(|e| {
        Error::new(
            ErrorKind::Corrupt,
            format!("SQLite: column '{column}' is not JSON"),
        )
        .with_source(e)
    })
}

/// Reads a JSON column that may be `NULL`.
pub(crate) fn opt_json(row: &SqliteRow, column: &str) -> Result<Option<Value>> {
    match get::<Option<String>>(row, column)? {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            Error::new(
                ErrorKind::Corrupt,
                format!("SQLite: column '{column}' is not JSON"),
            )
            .with_source(e)
        }),
    }
}

/// Reads a count (`tries`), which a record written by hand may have negative or too large.
pub(crate) fn count(row: &SqliteRow, column: &str) -> Result<u32> {
    let value = get::<i64>(row, column)?;
    u32::try_from(value).map_err(|_| corrupt(format!("{column} is out of range ({value})")))
}

/// Reads a priority.
fn priority(row: &SqliteRow) -> Result<i32> {
    let value = get::<i64>(row, "priority")?;
    i32::try_from(value).map_err(|_| corrupt(format!("priority is out of range ({value})")))
}

fn kind(row: &SqliteRow) -> Result<JobKind> {
    let kind: String = get(row, "kind")?;
    JobKind::parse(&kind).ok_or_else(|| corrupt(format!("unknown job kind '{kind}'")))
}

/// A job as stored, in `state`.
pub(crate) fn job_from_row(row: &SqliteRow, state: JobState) -> Result<Job> {
    Ok(Job {
        id: job_id(get::<i64>(row, "id")?),
        name: get(row, "name")?,
        kind: kind(row)?,
        params: json(row, "params")?,
        priority: priority(row)?,
        run_at: time(row, "run_at")?,
        unique_identifier: get(row, "unique_identifier")?,
        tries: count(row, "tries")?,
        state,
        locked_until: opt_time(row, "locked_until")?,
        locked_by: get(row, "locked_by")?,
        last_error: get(row, "last_error")?,
        expires_at: opt_time(row, "expires_at")?,
        schedule_key: get(row, "schedule_key")?,
        created_at: time(row, "created_at")?,
        progress: opt_json(row, "progress")?,
        paused: row.try_get::<i64, _>("paused").is_ok_and(|p| p != 0),
        trace_context: get(row, "trace_context")?,
    })
}

/// The state a reader sees (column `view_state`).
pub(crate) fn view_state(row: &SqliteRow) -> Result<JobState> {
    let state: String = get(row, "view_state")?;
    Ok(match state.as_str() {
        "running" => JobState::Running,
        "failed" => JobState::Failed,
        _ => JobState::Pending,
    })
}

/// A job as a reader sees it.
pub(crate) fn viewed_job(row: &SqliteRow) -> Result<Job> {
    job_from_row(row, view_state(row)?)
}

/// An execution record.
pub(crate) fn execution_from_row(row: &SqliteRow) -> Result<Execution> {
    let status: String = get(row, "status")?;
    Ok(Execution {
        job_id: dogs_core::JobId::new(get::<String>(row, "job_id")?),
        execution_id: get(row, "execution_id")?,
        name: get(row, "name")?,
        kind: kind(row)?,
        priority: priority(row)?,
        tries: count(row, "tries")?,
        unique_identifier: get(row, "unique_identifier")?,
        params: json(row, "params")?,
        started_at: time(row, "started_at")?,
        ended_at: time(row, "ended_at")?,
        duration: Duration::from_millis(
            u64::try_from(get::<i64>(row, "duration_ms")?).unwrap_or(0),
        ),
        status: ExecutionStatus::parse_stored(&status)?,
        error: get(row, "error")?,
        result: opt_json(row, "result")?,
        worker_id: get(row, "worker_id")?,
        expires_at: time(row, "expires_at")?,
    })
}

/// A job a claim leased, at `now`.
pub(crate) fn claimed_from_row(
    row: &SqliteRow,
    now: DateTime<Utc>,
    was_stale: bool,
) -> Result<ClaimedJob> {
    let job = job_from_row(row, JobState::Running)?;
    let locked_until = job
        .locked_until
        .ok_or_else(|| corrupt("a claimed job has no lease end".to_owned()))?;
    Ok(ClaimedJob {
        lease: Lease {
            job_id: job.id.clone(),
            token: LeaseToken::new(get::<String>(row, "lease_token")?),
        },
        locked_until,
        claimed_at: now,
        was_stale,
        job,
    })
}

/// The lease of a claimed row, even one whose other columns cannot be read.
pub(crate) fn lease_of(row: &SqliteRow) -> Option<Lease> {
    Some(Lease {
        job_id: job_id(row.try_get::<i64, _>("id").ok()?),
        token: LeaseToken::new(row.try_get::<String, _>("lease_token").ok()?),
    })
}

/// Keeps the rows that read, logging and skipping the ones that do not.
pub(crate) fn readable<T>(rows: Vec<SqliteRow>, read: impl Fn(&SqliteRow) -> Result<T>) -> Vec<T> {
    dogs_core::readable(rows.iter().map(|row| read(row).map(Some)))
}
