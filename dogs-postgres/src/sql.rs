//! SQL the operations share: the columns of a job and of an execution record, and the state a
//! reader sees by the server's clock. `{s}` stands for the quoted schema name.

/// The state a reader sees, by the server's clock: a lease that ran out is pending again, and a
/// failed job past its retention is gone.
pub(crate) const STATE: &str = "CASE WHEN state = 'failed' THEN 'failed' \
     WHEN state = 'running' AND locked_until > {s}.ms_now() THEN 'running' ELSE 'pending' END";
/// The rows a reader sees: not a failed job past its retention.
pub(crate) const VISIBLE: &str = "NOT (state = 'failed' AND expires_at <= {s}.ms_now())";
/// The columns of a job, as `decode` reads them.
pub(crate) const JOB_COLUMNS: &str =
    "id, name, kind, params, priority, run_at, unique_identifier, \
     tries, locked_until, locked_by, last_error, expires_at, schedule_key, created_at, progress, trace_context";
/// The columns of an execution record, in the order they are bound.
pub(crate) const EXECUTION_COLUMNS: &str = "execution_id, job_id, name, kind, priority, tries, \
     unique_identifier, params, started_at, ended_at, duration_ms, status, error, result, \
     worker_id, expires_at";
/// The state a new or rescheduled job gets from its run time `{at}`.
pub(crate) const STATE_OF_RUN_AT: &str =
    "CASE WHEN {at} <= {s}.ms_now() THEN 'pending' ELSE 'scheduled' END";

/// `text` with `{s}` replaced by the quoted schema.
pub(crate) fn fill(text: &str, schema: &str) -> String {
    text.replace("{s}", schema)
}

/// Milliseconds of `d`, as PostgreSQL's `bigint`.
pub(crate) fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `run_at` for the store: either an instant, or milliseconds after the server's now.
pub(crate) fn run_at_binds(
    run_at: dogs_core::RunAt,
) -> (Option<chrono::DateTime<chrono::Utc>>, i64) {
    match run_at {
        dogs_core::RunAt::Now => (None, 0),
        dogs_core::RunAt::At(at) => (Some(at), 0),
        dogs_core::RunAt::In(delay) => (None, millis(delay)),
    }
}

/// A job id of this store's format (`bigserial`).
pub(crate) fn parse_id(id: &dogs_core::JobId) -> Option<i64> {
    id.as_str().parse().ok()
}

/// `tries` as PostgreSQL's `integer`.
pub(crate) fn tries_i32(tries: u32) -> i32 {
    i32::try_from(tries).unwrap_or(i32::MAX)
}
