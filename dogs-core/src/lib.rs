#![doc = include_str!("../README.md")]

mod claim;
mod completer;
mod context;
mod definition;
mod error;
mod execution;
mod job;
mod retry;
mod schedule;
mod scheduling;
mod store;
mod wakeup;
mod worker;

pub use claim::{
    fail_unreadable, ClaimName, ClaimRequest, ClaimedJob, Completion, Finish, Lease, LeaseToken,
    UNREADABLE_RETENTION,
};
pub use context::JobContext;
pub use definition::{
    ErrorAction, EventJob, ExecutionFailure, HandlerError, JobDefinition, JobHandler, JobOptions,
    OnError, OnStale, RecurrentJob, DEFAULT_MAX_TRIES, DEFAULT_SAVE_EXECUTIONS_FOR,
};
pub use error::{redact_url, Error, ErrorKind, Result};
pub use execution::{Execution, ExecutionQuery, ExecutionStatus};
pub use job::{
    add_duration, params_size, random_id, truncate_millis, validate_name, Job, JobCounts, JobId,
    JobKind, JobQuery, JobState, NewJob, PruneReport, RecurrentRegistration, RunAt, Scheduled,
    DEFAULT_PRIORITY, MAX_NAME_BYTES, MAX_UNIQUE_IDENTIFIER_BYTES,
};
pub use retry::RetryBackoff;
pub use schedule::{CronSchedule, NextRunFn, Schedule};
pub use scheduling::{schedule_job, schedule_job_by_name, ScheduleOptions};
pub use store::JobStore;
pub use wakeup::{listen_with_reconnect, WakeUpSender, WakeUps};
pub use worker::{start_workers, OnMaxTries, WorkerOptions, Workers};

/// Re-exported so handlers and stores name the same types as dogs.
pub use async_trait::async_trait;
pub use tokio_util::sync::CancellationToken;

/// What writing and scheduling jobs needs, in one import: `use dogs_core::prelude::*;`.
pub mod prelude {
    pub use crate::{
        schedule_job, schedule_job_by_name, start_workers, ErrorAction, EventJob, HandlerError,
        JobContext, JobHandler, JobOptions, JobStore, RecurrentJob, RunAt, ScheduleOptions,
        Scheduled, WorkerOptions, Workers,
    };
}
