//! Metrics through the [`metrics`](https://docs.rs/metrics) facade: the application installs the
//! recorder (Prometheus, StatsD, ...) it wants; with none installed they cost next to nothing.
//! Every metric carries the label `job` with the job name; the table is in the crate docs.

use chrono::{DateTime, Utc};

use crate::claim::ClaimedJob;
use crate::execution::ExecutionStatus;

/// Jobs stored by `schedule_job`, `schedule_job_by_name` and `schedule_many` (duplicates not
/// counted).
pub const SCHEDULED: &str = "dogs_jobs_scheduled_total";
/// Executions started.
pub const STARTED: &str = "dogs_executions_started_total";
/// Executions whose handler succeeded.
pub const SUCCEEDED: &str = "dogs_executions_succeeded_total";
/// Executions that failed and are to run again (retried by the policy).
pub const RETRIED: &str = "dogs_executions_retried_total";
/// Executions that failed and failed their job for good.
pub const FAILED: &str = "dogs_executions_failed_total";
/// Executions that outlived their lease or lost it.
pub const STALE: &str = "dogs_executions_stale_total";
/// Executions cancelled (their job was cancelled while it ran, or the workers shut down).
pub const CANCELLED: &str = "dogs_executions_cancelled_total";
/// Executions whose handler asked to run again later ([`Snooze`](crate::Snooze)).
pub const SNOOZED: &str = "dogs_executions_snoozed_total";
/// Histogram: seconds from a job's run time to the start of its execution.
pub const PICKUP_LATENCY: &str = "dogs_pickup_latency_seconds";
/// Histogram: seconds an execution's handler ran.
pub const RUN_TIME: &str = "dogs_run_time_seconds";
/// Gauge: executions running now in this process.
pub const RUNNING: &str = "dogs_executions_running";

/// An execution started at `now` (the store's clock).
pub(crate) fn started(claimed: &ClaimedJob, now: DateTime<Utc>) {
    let job = claimed.job.name.clone();
    metrics::counter!(STARTED, "job" => job.clone()).increment(1);
    let latency = (now - claimed.job.run_at).to_std().unwrap_or_default();
    metrics::histogram!(PICKUP_LATENCY, "job" => job.clone()).record(latency.as_secs_f64());
    metrics::gauge!(RUNNING, "job" => job).increment(1.0);
}

/// An execution of `name` stopped running.
pub(crate) fn stopped(name: &str) {
    metrics::gauge!(RUNNING, "job" => name.to_owned()).decrement(1.0);
}

/// An execution of `name` ended with `status` after `run_time`.
pub(crate) fn ended(name: &str, status: ExecutionStatus, run_time: std::time::Duration) {
    let counter = match status {
        ExecutionStatus::Success => SUCCEEDED,
        ExecutionStatus::Error => RETRIED,
        ExecutionStatus::Failed => FAILED,
        ExecutionStatus::Stale => STALE,
        ExecutionStatus::Cancelled => CANCELLED,
        ExecutionStatus::Snoozed => SNOOZED,
    };
    metrics::counter!(counter, "job" => name.to_owned()).increment(1);
    metrics::histogram!(RUN_TIME, "job" => name.to_owned()).record(run_time.as_secs_f64());
}

/// Counts `n` jobs of `name` stored.
pub(crate) fn scheduled(name: &str, n: u64) {
    if n > 0 {
        metrics::counter!(SCHEDULED, "job" => name.to_owned()).increment(n);
    }
}
