//! Metrics through the [`metrics`](https://docs.rs/metrics) facade: the application installs the
//! recorder (Prometheus, StatsD, ...) it wants; with none installed they cost next to nothing.
//! Every metric carries the label `job` with the job name; the table is in the crate docs. A
//! worker set registers its names' metrics when it starts: install the recorder before.

use chrono::{DateTime, Utc};
use metrics::{Counter, Gauge, Histogram};

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

/// The metrics of one job name, registered once when a worker set starts (so a recorder must
/// be installed before `start_workers` to see them).
pub(crate) struct NameMetrics {
    started: Counter,
    succeeded: Counter,
    retried: Counter,
    failed: Counter,
    stale: Counter,
    cancelled: Counter,
    snoozed: Counter,
    pickup_latency: Histogram,
    run_time: Histogram,
    running: Gauge,
}

impl NameMetrics {
    pub(crate) fn new(name: &str) -> Self {
        let job = || name.to_owned();
        NameMetrics {
            started: metrics::counter!(STARTED, "job" => job()),
            succeeded: metrics::counter!(SUCCEEDED, "job" => job()),
            retried: metrics::counter!(RETRIED, "job" => job()),
            failed: metrics::counter!(FAILED, "job" => job()),
            stale: metrics::counter!(STALE, "job" => job()),
            cancelled: metrics::counter!(CANCELLED, "job" => job()),
            snoozed: metrics::counter!(SNOOZED, "job" => job()),
            pickup_latency: metrics::histogram!(PICKUP_LATENCY, "job" => job()),
            run_time: metrics::histogram!(RUN_TIME, "job" => job()),
            running: metrics::gauge!(RUNNING, "job" => job()),
        }
    }

    /// An execution started at `now` (the store's clock).
    pub(crate) fn started(&self, claimed: &ClaimedJob, now: DateTime<Utc>) {
        self.started.increment(1);
        let latency = (now - claimed.job.run_at).to_std().unwrap_or_default();
        self.pickup_latency.record(latency.as_secs_f64());
        self.running.increment(1.0);
    }

    /// An execution stopped running.
    pub(crate) fn stopped(&self) {
        self.running.decrement(1.0);
    }

    /// An execution ended with `status` after `run_time`.
    pub(crate) fn ended(&self, status: ExecutionStatus, run_time: std::time::Duration) {
        match status {
            ExecutionStatus::Success => &self.succeeded,
            ExecutionStatus::Error => &self.retried,
            ExecutionStatus::Failed => &self.failed,
            ExecutionStatus::Stale => &self.stale,
            ExecutionStatus::Cancelled => &self.cancelled,
            ExecutionStatus::Snoozed => &self.snoozed,
        }
        .increment(1);
        self.run_time.record(run_time.as_secs_f64());
    }
}

/// Counts `n` jobs of `name` stored.
pub(crate) fn scheduled(name: &str, n: u64) {
    if n > 0 {
        metrics::counter!(SCHEDULED, "job" => name.to_owned()).increment(n);
    }
}
