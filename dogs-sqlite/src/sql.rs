//! SQL the operations share: the columns of a job and of an execution record, the state a
//! reader sees by the store's clock, and the conversions between dogs' values and SQLite's.
//!
//! Times are stored as INTEGER milliseconds since the Unix epoch; params, results and progress
//! as JSON text; ids are the `jobs` table's rowid (`AUTOINCREMENT`, so never reused).

use std::time::Duration;

use chrono::{DateTime, Utc};
use dogs_core::{truncate_millis, Error, JobId, RunAt};
use serde_json::Value;

/// The columns of a job, as `decode` reads them.
pub(crate) const JOB_COLUMNS: &str =
    "id, name, kind, params, priority, run_at, unique_identifier, tries, locked_until, \
     locked_by, last_error, expires_at, schedule_key, created_at, progress, trace_context";

/// The columns of an execution record, in the order they are bound.
pub(crate) const EXECUTION_COLUMNS: &str = "execution_id, job_id, name, kind, priority, tries, \
     unique_identifier, params, started_at, ended_at, duration_ms, status, error, result, \
     worker_id, expires_at";

/// How many values one execution record binds.
pub(crate) const EXECUTION_BINDS: usize = 16;

/// The state a reader sees, with the store's now as `?1`: a lease that ran out is pending again.
pub(crate) const VIEW_STATE: &str = "CASE WHEN state = 'failed' THEN 'failed' \
     WHEN state = 'running' AND locked_until > ?1 THEN 'running' ELSE 'pending' END";

/// The rows a reader sees, with the store's now as `?1`: not a failed job past its retention.
pub(crate) const VISIBLE: &str = "NOT (state = 'failed' AND expires_at <= ?1)";

/// Whether a job's name is paused, as the column `paused`.
pub(crate) const PAUSED: &str =
    "coalesce((SELECT n.paused FROM names n WHERE n.name = jobs.name), 0) AS paused";

/// The most rows one multi-row `INSERT` carries; a batch is cut into statements of 512, 256,
/// ... 1 rows, so only a handful of statement texts are ever prepared and cached.
pub(crate) const MAX_ROWS_PER_INSERT: usize = 512;

/// The store's clock: the machine's, to the millisecond.
pub(crate) fn clock_now() -> DateTime<Utc> {
    truncate_millis(Utc::now())
}

/// Milliseconds since the epoch of `at`.
pub(crate) fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// Milliseconds of `d`, saturating.
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `now + d` in milliseconds, saturating at the largest instant dogs can hold.
pub(crate) fn after(now: DateTime<Utc>, d: Duration) -> i64 {
    ms(truncate_millis(dogs_core::add_duration(now, d)))
}

/// A run time resolved against the store's clock, in milliseconds.
pub(crate) fn run_at_ms(run_at: RunAt, now: DateTime<Utc>) -> i64 {
    ms(truncate_millis(run_at.resolve(now)))
}

/// The state a pending job due at `run_at` is stored in.
pub(crate) fn pending_state(run_at: i64, now: i64) -> &'static str {
    if run_at <= now {
        "pending"
    } else {
        "scheduled"
    }
}

/// A job id of this store's format (the rowid).
pub(crate) fn parse_id(id: &JobId) -> Option<i64> {
    id.as_str().parse().ok()
}

/// A job id as dogs shows it.
pub(crate) fn job_id(id: i64) -> JobId {
    JobId::new(id.to_string())
}

/// A JSON value as stored.
pub(crate) fn json_text(value: &Value) -> String {
    // Serializing a `Value` cannot fail: its keys are strings.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// A JSON array of `items`, bound as one value and read back with `json_each`.
pub(crate) fn json_list<T: serde::Serialize>(items: &[T]) -> Result<String, Error> {
    serde_json::to_string(items)
        .map_err(|e| Error::serialization("a list of values for SQLite cannot be written", e))
}

/// `count` row groups of `row` (such as `(?, ?)`), separated by commas.
pub(crate) fn rows_sql(row: &str, count: usize) -> String {
    let mut sql = String::with_capacity((row.len() + 2) * count);
    for i in 0..count {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(row);
    }
    sql
}

/// How `total` rows are cut into statements of at most [`MAX_ROWS_PER_INSERT`] rows, each a
/// power of two.
pub(crate) fn insert_chunks(total: usize) -> Vec<usize> {
    let mut chunks = Vec::new();
    let mut left = total;
    let mut size = MAX_ROWS_PER_INSERT;
    while left > 0 {
        while size > left {
            size /= 2;
        }
        chunks.push(size);
        left -= size;
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_add_up_and_are_powers_of_two() {
        for total in [0, 1, 2, 3, 511, 512, 513, 1000, 100_000] {
            let chunks = insert_chunks(total);
            assert_eq!(chunks.iter().sum::<usize>(), total);
            assert!(chunks
                .iter()
                .all(|c| c.is_power_of_two() && *c <= MAX_ROWS_PER_INSERT));
        }
    }
}
