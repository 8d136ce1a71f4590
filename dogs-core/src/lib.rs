#![doc = include_str!("../README.md")]

mod batch;
mod cancel;
mod claim;
mod completer;
mod context;
mod definition;
mod dispatch;
mod error;
mod execute;
mod execution;
mod hooks;
mod job;
mod limits;
pub mod metrics;
mod outcome;
mod prefetch;
mod prune;
mod retry;
mod schedule;
mod scheduling;
mod stats;
mod store;
pub mod testing;
mod trace;
mod wakeup;
mod worker;

pub use batch::{readable, Outcomes};
pub use claim::{
    fail_unreadable, ClaimName, ClaimRequest, Claimed, ClaimedJob, Completion, Finish, Lease,
    LeaseToken, UNREADABLE_RETENTION,
};
pub use context::JobContext;
pub use definition::{
    handler_error, ErrorAction, EventJob, ExecutionFailure, HandlerError, JobDefinition,
    JobHandler, JobOptions, OnError, OnStale, RecurrentJob, Snooze, DEFAULT_MAX_TRIES,
    DEFAULT_SAVE_EXECUTIONS_FOR,
};
pub use error::{redact_url, Error, ErrorKind, Result};
pub use execution::{Execution, ExecutionQuery, ExecutionStatus};
pub use job::{
    add_duration, execution_id, params_size, random_id, truncate_millis, validate_name, Job,
    JobCounts, JobId, JobKind, JobQuery, JobState, NameSettings, NewJob, OnDuplicate, PruneReport,
    RecurrentRegistration, RetryBatch, RunAt, Scheduled, CANCELLED_ERROR, CANCELLED_RETENTION,
    DEFAULT_PAGE_SIZE, DEFAULT_PRIORITY, MAX_NAME_BYTES, MAX_UNIQUE_IDENTIFIER_BYTES, RETRY_BATCH,
};
pub use limits::{max_run_at, min_run_at, validate_lock_time, MAX_DURATION, MAX_WORKERS_COUNT};
pub use prune::{
    prune_in_batches, rest_between_prune_batches, PruneBatch, MAX_PRUNE_REST, PRUNE_BATCH,
    PRUNE_REST_FACTOR,
};
pub use retry::RetryBackoff;
pub use schedule::{CronSchedule, NextRunFn, Schedule, MAX_NEXT_RUNS};
pub use scheduling::{schedule_job, schedule_job_by_name, ScheduleOptions};
pub use stats::{minute_of, stats_since, tally_minutes, ExecutionMinute, STATS_WINDOW};
pub use store::{validate_concurrency_limit, validate_progress, JobStore};
pub use trace::MAX_TRACE_CONTEXT_BYTES;
pub use wakeup::{listen_with_reconnect, Notice, WakeUpSender, WakeUps};
pub use worker::{start_workers, OnMaxTries, WorkerOptions, Workers, SHUTDOWN_SAVE_TIME};

/// Re-exported so handlers and stores name the same types as dogs.
pub use async_trait::async_trait;

pub(crate) use hooks::panic_text;
pub use tokio_util::sync::CancellationToken;

/// Everything a job, a handler, a hook, a worker set, a test or a read of the store needs, in
/// one import: `use dogs_core::prelude::*;`.
///
/// It brings the job definitions and their options, the handler's context and error, the hooks'
/// [`ExecutionFailure`] and [`ErrorAction`], the worker options, scheduling, the [`JobStore`]
/// trait with what its reads take and return ([`JobQuery`], [`ExecutionQuery`], [`Job`],
/// [`Execution`], their states and statuses), the crate's [`Error`] and [`ErrorKind`], and the
/// [`testing`] module (`testing::drain(..)`). What a store implementation
/// needs beyond that (claims, leases, outcomes) is at the crate's root.
pub mod prelude {
    pub use crate::testing;
    pub use crate::{
        async_trait, handler_error, schedule_job, schedule_job_by_name, start_workers, Error,
        ErrorAction, ErrorKind, EventJob, Execution, ExecutionFailure, ExecutionQuery,
        ExecutionStatus, HandlerError, Job, JobContext, JobCounts, JobDefinition, JobHandler,
        JobId, JobKind, JobOptions, JobQuery, JobState, JobStore, NewJob, OnDuplicate, OnError,
        OnMaxTries, OnStale, RecurrentJob, RetryBackoff, RunAt, Schedule, ScheduleOptions,
        Scheduled, Snooze, WorkerOptions, Workers,
    };
}
